package schema

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/uptrace/bun"
)

// ImportRow is one CI to upsert by name. Row is its 1-based position in
// the source (a CSV's header is row 1).
type ImportRow struct {
	Row        int
	Name       string
	Labels     map[string]string
	Attributes map[string]json.RawMessage
}

// RowError says what is wrong with one row.
type RowError struct {
	Row    int    `json:"row"`
	Column string `json:"column"`
	Reason string `json:"reason"`
}

// ImportReport is what an import did, or would do on a dry run.
type ImportReport struct {
	Type      string     `json:"type"`
	DryRun    bool       `json:"dry_run"`
	Rows      int        `json:"rows"`
	Created   int        `json:"created"`
	Updated   int        `json:"updated"`
	Unchanged int        `json:"unchanged"`
	Written   bool       `json:"written"`
	Errors    []RowError `json:"errors"`
}

const importChunk = 1000

// Import upserts rows as CIs of type typ, matched by name. Every row is
// checked first; if any fails nothing is written and the report lists each
// failure with its row and column. A dry run stops before writing. Writes
// are batched in one transaction.
func (s *Store) Import(ctx context.Context, typ string, rows []ImportRow, dryRun bool, ch Change) (*ImportReport, error) {
	rep := &ImportReport{Type: typ, DryRun: dryRun, Rows: len(rows), Errors: []RowError{}}
	t, err := s.Type(ctx, typ)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, invalid("invalid import", map[string]string{"type": "unknown CI type " + strconv.Quote(typ)})
		}
		return nil, err
	}
	type planned struct {
		row   *ImportRow
		attrs map[string]any
		old   *CI
	}
	plans := make([]planned, len(rows))
	seen := map[string]int{}
	uniqSeen := map[string]int{} // attr\x00value -> index of the row holding it
	for i := range rows {
		r := &rows[i]
		plans[i].row = r
		bad := map[string]string{}
		if !ValidCIName(r.Name) {
			bad["name"] = "must be 1-253 characters: letters, digits and . _ : / @ + -, starting with a letter or digit"
		} else if prev, ok := seen[r.Name]; ok {
			bad["name"] = fmt.Sprintf("duplicate of row %d", prev)
		}
		seen[r.Name] = r.Row
		ValidateLabels(r.Labels, bad)
		attrs, abad := normalizeAll(t, r.Attributes, false)
		for k, v := range abad {
			bad[k] = v
		}
		canonicalHostAddress(t, attrs, bad)
		for k, v := range attrs {
			if d, _ := t.Attr(k); d != nil && d.Unique {
				raw, _ := json.Marshal(v)
				_, idx, _ := d.Normalize(raw)
				key := k + "\x00" + idx
				if prev, ok := uniqSeen[key]; ok {
					bad["attributes."+k] = fmt.Sprintf("must be unique: %q is also in row %d", idx, rows[prev].Row)
				}
				uniqSeen[key] = i
			}
		}
		plans[i].attrs = attrs
		for k, v := range bad {
			col := strings.TrimPrefix(k, "attributes.")
			if strings.HasPrefix(k, "labels.") {
				col = "labels"
			}
			rep.Errors = append(rep.Errors, RowError{Row: r.Row, Column: col, Reason: v})
		}
	}

	// Existing CIs by name, in chunks.
	existing := map[string]*CI{}
	names := make([]string, 0, len(rows))
	for i := range rows {
		names = append(names, rows[i].Name)
	}
	for start := 0; start < len(names); start += importChunk {
		chunk := names[start:min(start+importChunk, len(names))]
		var cis []CI
		if err := s.DB.NewSelect().Model(&cis).Where("type = ? AND name IN (?)", typ, bun.In(chunk)).Scan(ctx); err != nil {
			return nil, fmt.Errorf("store: import: %w", err)
		}
		ptrs := make([]*CI, len(cis))
		for i := range cis {
			ptrs[i] = &cis[i]
			existing[cis[i].Name] = &cis[i]
		}
		if err := loadLabels(ctx, s.DB, ptrs); err != nil {
			return nil, err
		}
	}
	// Unique values held by CIs other than the row's own.
	for k := range uniqSeen {
		attr, val, _ := strings.Cut(k, "\x00")
		var holders []struct {
			CIID int64  `bun:"ci_id"`
			Name string `bun:"name"`
		}
		if err := s.DB.NewSelect().TableExpr("ci_unique_values AS u").ColumnExpr("u.ci_id, c.name").
			Join("JOIN cis AS c ON c.id = u.ci_id").
			Where("u.type = ? AND u.name = ? AND u.value = ?", typ, attr, val).Scan(ctx, &holders); err != nil {
			return nil, fmt.Errorf("store: import: %w", err)
		}
		for _, h := range holders {
			if r := rows[uniqSeen[k]]; r.Name != h.Name {
				rep.Errors = append(rep.Errors, RowError{Row: r.Row, Column: attr, Reason: fmt.Sprintf("must be unique: %q is used by CI %d (%s)", val, h.CIID, h.Name)})
			}
		}
	}
	sort.Slice(rep.Errors, func(i, j int) bool {
		if rep.Errors[i].Row != rep.Errors[j].Row {
			return rep.Errors[i].Row < rep.Errors[j].Row
		}
		return rep.Errors[i].Column < rep.Errors[j].Column
	})

	now := time.Now().UTC()
	var creates []*CI
	type update struct {
		cur  *CI
		diff Diff
	}
	var updates []update
	for i := range plans {
		p := &plans[i]
		labels := p.row.Labels
		if labels == nil {
			labels = map[string]string{}
		}
		if old, ok := existing[p.row.Name]; ok {
			cur := *old
			cur.Attributes, cur.Labels = p.attrs, labels
			d := diffCI(old, &cur)
			if len(d) == 0 {
				rep.Unchanged++
				continue
			}
			cur.Version++
			cur.UpdatedAt, cur.UpdatedBy = now, ch.Actor
			updates = append(updates, update{&cur, d})
			rep.Updated++
			continue
		}
		creates = append(creates, &CI{Type: typ, Name: p.row.Name, Attributes: p.attrs, Labels: labels, Version: 1,
			CreatedAt: now, CreatedBy: ch.Actor, UpdatedAt: now, UpdatedBy: ch.Actor})
		rep.Created++
	}
	if len(rep.Errors) > 0 || dryRun {
		return rep, nil
	}

	err = s.DB.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		for start := 0; start < len(creates); start += importChunk {
			chunk := creates[start:min(start+importChunk, len(creates))]
			if _, err := tx.NewInsert().Model(&chunk).Returning("id").Exec(ctx); err != nil {
				return err
			}
		}
		for _, u := range updates {
			if _, err := tx.NewUpdate().Model(u.cur).Column("attributes", "version", "updated_at", "updated_by").WherePK().Exec(ctx); err != nil {
				return err
			}
		}
		all := make([]*CI, 0, len(creates)+len(updates))
		all = append(all, creates...)
		for _, u := range updates {
			all = append(all, u.cur)
		}
		if err := writeIndexBatch(ctx, tx, t, all, len(updates) > 0); err != nil {
			return err
		}
		hist := make([]CIHistory, 0, len(all))
		evs := make([]CMDBEvent, 0, len(all))
		for _, c := range creates {
			hist = append(hist, CIHistory{CIID: c.ID, CIType: typ, CIName: c.Name, Version: 1, Op: "create", ChangedAt: now, ChangedBy: ch.Actor, RunID: ch.RunID, Diff: diffCI(nil, c)})
		}
		for _, u := range updates {
			hist = append(hist, CIHistory{CIID: u.cur.ID, CIType: typ, CIName: u.cur.Name, Version: u.cur.Version, Op: "update", ChangedAt: now, ChangedBy: ch.Actor, RunID: ch.RunID, Diff: u.diff})
		}
		for i := range hist {
			op := hist[i].Op
			data, _ := json.Marshal(all[i])
			evs = append(evs, CMDBEvent{At: now, Kind: "ci", Op: op, ObjectID: hist[i].CIID, CIType: typ, Actor: ch.Actor, RunID: ch.RunID, Data: data})
		}
		// Every CI the import changes is in the audit log too, as the
		// change of one CI would be.
		audit := make([]AuditEntry, len(hist))
		for i, h := range hist {
			audit[i] = AuditEntry{At: now, Actor: ch.Actor, Action: "cmdb.ci." + h.Op, Target: "ci:" + strconv.FormatInt(h.CIID, 10),
				SourceIP: ch.SourceIP, RequestID: ch.RequestID, Status: 200, Detail: "import"}
			if ch.RunID != "" {
				audit[i].Detail = "import by run " + ch.RunID
			}
		}
		for start := 0; start < len(hist); start += importChunk {
			chunk := hist[start:min(start+importChunk, len(hist))]
			if _, err := tx.NewInsert().Model(&chunk).Exec(ctx); err != nil {
				return err
			}
			achunk := audit[start:min(start+importChunk, len(audit))]
			if _, err := tx.NewInsert().Model(&achunk).Exec(ctx); err != nil {
				return err
			}
		}
		if s.Engine == Postgres && len(evs) > 0 {
			if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(?)", eventLockKey); err != nil {
				return err
			}
		}
		for start := 0; start < len(evs); start += importChunk {
			chunk := evs[start:min(start+importChunk, len(evs))]
			if _, err := tx.NewInsert().Model(&chunk).Exec(ctx); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: import: %w", err)
	}
	rep.Written = true
	return rep, nil
}

// writeIndexBatch rewrites labels, attribute index and unique values of
// many CIs of type t with a few multi-row statements (clear: delete their
// old rows first). Uniqueness is the caller's check.
func writeIndexBatch(ctx context.Context, tx bun.IDB, t *CIType, cis []*CI, clear bool) error {
	type labelRow struct {
		bun.BaseModel `bun:"table:ci_labels"`
		CIID          int64  `bun:"ci_id"`
		Key           string `bun:"key"`
		Value         string `bun:"value"`
	}
	type attrRow struct {
		bun.BaseModel `bun:"table:ci_attrs"`
		CIID          int64  `bun:"ci_id"`
		Type          string `bun:"type"`
		Name          string `bun:"name"`
		Value         string `bun:"value"`
	}
	type uniqRow struct {
		bun.BaseModel `bun:"table:ci_unique_values"`
		Type          string `bun:"type"`
		Name          string `bun:"name"`
		Value         string `bun:"value"`
		CIID          int64  `bun:"ci_id"`
	}
	for start := 0; start < len(cis); start += importChunk {
		chunk := cis[start:min(start+importChunk, len(cis))]
		if clear {
			ids := make([]int64, len(chunk))
			for i, c := range chunk {
				ids[i] = c.ID
			}
			for _, table := range []string{"ci_labels", "ci_attrs", "ci_unique_values"} {
				if _, err := tx.NewDelete().Table(table).Where("ci_id IN (?)", bun.In(ids)).Exec(ctx); err != nil {
					return err
				}
			}
		}
		var labels []labelRow
		var attrs []attrRow
		var uniq []uniqRow
		for _, c := range chunk {
			for k, v := range c.Labels {
				labels = append(labels, labelRow{CIID: c.ID, Key: k, Value: v})
			}
			for k, v := range c.Attributes {
				d, ok := t.Attr(k)
				if !ok {
					continue
				}
				raw, _ := json.Marshal(v)
				_, idx, err := d.Normalize(raw)
				if err != nil {
					return fmt.Errorf("ci %s attribute %s: %w", c.Name, k, err)
				}
				if d.Type != AttrJSON {
					attrs = append(attrs, attrRow{CIID: c.ID, Type: t.Name, Name: k, Value: idx})
				}
				if d.Unique {
					uniq = append(uniq, uniqRow{Type: t.Name, Name: k, Value: idx, CIID: c.ID})
				}
			}
		}
		if len(labels) > 0 {
			if _, err := tx.NewInsert().Model(&labels).Exec(ctx); err != nil {
				return err
			}
		}
		if len(attrs) > 0 {
			if _, err := tx.NewInsert().Model(&attrs).Exec(ctx); err != nil {
				return err
			}
		}
		if len(uniq) > 0 {
			if _, err := tx.NewInsert().Model(&uniq).Exec(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// ExportCIs returns every CI matching q (all pages), for export.
func (s *Store) ExportCIs(ctx context.Context, q CIQuery) ([]CI, error) {
	var out []CI
	q.Limit = 500
	for {
		page, next, err := s.CIs(ctx, q)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if next == "" {
			return out, nil
		}
		q.Cursor = next
	}
}
