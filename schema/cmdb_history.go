package schema

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/uptrace/bun"
)

// CIHistory is one change of a CI.
type CIHistory struct {
	bun.BaseModel `bun:"table:ci_history"`

	ID        int64     `bun:"id,pk,autoincrement" json:"id"`
	CIID      int64     `bun:"ci_id" json:"ci_id"`
	CIType    string    `bun:"ci_type" json:"ci_type"`
	CIName    string    `bun:"ci_name" json:"ci_name"`
	Version   int64     `bun:"version" json:"version"`
	Op        string    `bun:"op" json:"op"`
	ChangedAt time.Time `bun:"changed_at" json:"changed_at"`
	ChangedBy string    `bun:"changed_by" json:"changed_by"`
	RunID     string    `bun:"run_id" json:"run_id,omitempty"`
	Diff      Diff      `bun:"diff,type:text" json:"diff"`
}

// CMDBEvent is one entry of the ordered change feed.
type CMDBEvent struct {
	bun.BaseModel `bun:"table:cmdb_events"`

	ID       int64           `bun:"id,pk,autoincrement" json:"id"`
	At       time.Time       `bun:"at" json:"at"`
	Kind     string          `bun:"kind" json:"kind"` // ci or relation
	Op       string          `bun:"op" json:"op"`     // create, update, delete
	ObjectID int64           `bun:"object_id" json:"object_id"`
	CIType   string          `bun:"ci_type" json:"ci_type,omitempty"`
	Actor    string          `bun:"actor" json:"actor"`
	RunID    string          `bun:"run_id" json:"run_id,omitempty"`
	Data     json.RawMessage `bun:"data,type:text" json:"data"`
}

// eventLockKey serializes feed writers on Postgres, so event IDs become
// visible in commit order and a reader's cursor never skips one.
const eventLockKey = 727274001

func (s *Store) recordCIChange(ctx context.Context, tx bun.Tx, op string, old, cur *CI, ch Change) error {
	c := cur
	if c == nil {
		c = old
	}
	return s.recordCIChangeDiff(ctx, tx, op, c, diffCI(old, cur), ch)
}

func (s *Store) recordCIChangeDiff(ctx context.Context, tx bun.Tx, op string, c *CI, d Diff, ch Change) error {
	h := &CIHistory{CIID: c.ID, CIType: c.Type, CIName: c.Name, Version: c.Version, Op: op,
		ChangedAt: time.Now().UTC(), ChangedBy: ch.Actor, RunID: ch.RunID, Diff: d}
	if _, err := tx.NewInsert().Model(h).Exec(ctx); err != nil {
		return fmt.Errorf("ci history: %w", err)
	}
	data := any(c)
	if op == "delete" {
		data = map[string]any{"id": c.ID, "type": c.Type, "name": c.Name}
	}
	return s.appendEvent(ctx, tx, &CMDBEvent{Kind: "ci", Op: op, ObjectID: c.ID, CIType: c.Type, Actor: ch.Actor, RunID: ch.RunID}, data)
}

func (s *Store) appendEvent(ctx context.Context, tx bun.Tx, e *CMDBEvent, data any) error {
	if s.Engine == Postgres {
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(?)", eventLockKey); err != nil {
			return fmt.Errorf("cmdb event lock: %w", err)
		}
	}
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	e.Data, e.At = b, time.Now().UTC()
	if _, err := tx.NewInsert().Model(e).Returning("id").Exec(ctx); err != nil {
		return fmt.Errorf("cmdb event: %w", err)
	}
	return nil
}

// History lists a CI's changes, newest first (also after it was deleted).
func (s *Store) History(ctx context.Context, ciID int64, before int64, limit int) ([]CIHistory, error) {
	var hs []CIHistory
	q := s.DB.NewSelect().Model(&hs).Where("ci_id = ?", ciID).OrderExpr("id DESC").Limit(int64(clampLimit(limit)))
	if before > 0 {
		q = q.Where("id < ?", before)
	}
	if err := q.Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: ci history: %w", err)
	}
	return hs, nil
}

// Events lists feed entries after the cursor, oldest first.
func (s *Store) Events(ctx context.Context, after int64, limit int) ([]CMDBEvent, error) {
	var es []CMDBEvent
	if err := s.DB.NewSelect().Model(&es).Where("id > ?", after).OrderExpr("id ASC").Limit(int64(clampLimit(limit))).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: cmdb events: %w", err)
	}
	return es, nil
}

// PruneEvents deletes feed entries older than keep; the feed keeps at
// least 7 days.
func (s *Store) PruneEvents(ctx context.Context, keep time.Duration, now time.Time) (int64, error) {
	if keep < 7*24*time.Hour {
		keep = 7 * 24 * time.Hour
	}
	res, err := s.DB.NewDelete().Model((*CMDBEvent)(nil)).Where("at < ?", now.Add(-keep).UTC()).Exec(ctx)
	if err != nil {
		return 0, fmt.Errorf("store: prune cmdb events: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// CIRef names a CI that may since have been deleted.
type CIRef struct {
	ID      int64
	Type    string
	Name    string
	Deleted bool
}

// CIRefs names the CIs ids, for pages that show history by name: a CI
// deleted since is named by the last name its history recorded.
func (s *Store) CIRefs(ctx context.Context, ids []int64) (map[int64]CIRef, error) {
	out := map[int64]CIRef{}
	if len(ids) == 0 {
		return out, nil
	}
	var live []CI
	if err := s.DB.NewSelect().Model(&live).Column("id", "type", "name").Where("id IN (?)", bun.In(ids)).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: ci refs: %w", err)
	}
	for _, c := range live {
		out[c.ID] = CIRef{ID: c.ID, Type: c.Type, Name: c.Name}
	}
	var gone []int64
	for _, id := range ids {
		if _, ok := out[id]; !ok {
			gone = append(gone, id)
		}
	}
	if len(gone) == 0 {
		return out, nil
	}
	var hs []CIHistory
	if err := s.DB.NewSelect().Model(&hs).Column("ci_id", "ci_type", "ci_name").Where("ci_id IN (?)", bun.In(gone)).Order("id").Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: ci refs: %w", err)
	}
	for _, h := range hs {
		out[h.CIID] = CIRef{ID: h.CIID, Type: h.CIType, Name: h.CIName, Deleted: true}
	}
	return out, nil
}
