package schema

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
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

// ImportReader yields an import's rows in source order. Next returns a
// row and the errors that kept it from parsing (then it is only counted),
// or just the errors of a header, and io.EOF after the last; any other
// error ends the import.
type ImportReader interface {
	Next() (*ImportRow, []RowError, error)
}

// RowError says what is wrong with one row.
type RowError struct {
	Row    int    `json:"row"`
	Column string `json:"column"`
	Reason string `json:"reason"`
}

// ImportReport is what an import did, or would do on a dry run. Errors
// lists the first MaxReportErrors row errors, by row; ErrorCount counts
// them all.
type ImportReport struct {
	Type       string     `json:"type"`
	DryRun     bool       `json:"dry_run"`
	Rows       int        `json:"rows"`
	Created    int        `json:"created"`
	Updated    int        `json:"updated"`
	Unchanged  int        `json:"unchanged"`
	Written    bool       `json:"written"`
	ErrorCount int        `json:"error_count"`
	Errors     []RowError `json:"errors"`
}

// MaxReportErrors caps the row errors an import report lists.
const MaxReportErrors = 100

// MaxImportRows caps the rows of one import, and with them the memory its
// checks across rows (duplicate names, unique values) hold: a few dozen
// bytes a row.
const MaxImportRows = 1_000_000

const importChunk = 1000

// errImportFailed rolls the writing pass back when it finds a row error.
var errImportFailed = errors.New("import has row errors")

// Import upserts the rows open yields as CIs of type typ, matched by name.
// A first pass reads every row, checks it and counts what would change,
// holding one chunk of rows at a time; a dry run, or an import with any
// row error, stops there and writes nothing. Otherwise a second pass over
// a fresh reader checks and writes chunk by chunk in one transaction,
// rolled back if a row has gone bad in between (a concurrent change).
func (s *Store) Import(ctx context.Context, typ string, open func() (ImportReader, error), dryRun bool, ch Change) (*ImportReport, error) {
	t, err := s.Type(ctx, typ)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, invalid("invalid import", map[string]string{"type": "unknown CI type " + strconv.Quote(typ)})
		}
		return nil, err
	}
	rep, err := s.importPass(ctx, s.DB, t, open, ch, false)
	if err != nil {
		return nil, err
	}
	rep.DryRun = dryRun
	if dryRun || rep.ErrorCount > 0 {
		return rep, nil
	}
	err = s.DB.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		rep, err = s.importPass(ctx, tx, t, open, ch, true)
		if err == nil && rep.ErrorCount > 0 {
			return errImportFailed
		}
		return err
	})
	if errors.Is(err, errImportFailed) {
		return rep, nil
	}
	if err != nil {
		return nil, err
	}
	rep.Written = true
	return rep, nil
}

// importKey stands for a name or a unique value seen earlier in an import:
// 128 bits of two seeded hashes, so a false match is out of reach and the
// set costs the same whatever the strings' length.
type importKey [2]uint64

// importPass is one pass over an import's rows.
type importPass struct {
	db     bun.IDB
	eng    Engine
	t      *CIType
	ch     Change
	write  bool // write each chunk while no row has failed
	now    time.Time
	rep    *ImportReport
	seeds  [2]maphash.Seed
	names  map[importKey]int // the row of each name
	uniq   map[importKey]int // the first row holding each unique value
	rows   []ImportRow       // the chunk being read
	errs   []RowError        // the chunk's row errors
	locked bool              // holds the event feed lock
}

func (s *Store) importPass(ctx context.Context, db bun.IDB, t *CIType, open func() (ImportReader, error), ch Change, write bool) (*ImportReport, error) {
	src, err := open()
	if err != nil {
		return nil, fmt.Errorf("store: import: %w", err)
	}
	p := &importPass{db: db, eng: s.Engine, t: t, ch: ch, write: write, now: time.Now().UTC(),
		rep:   &ImportReport{Type: t.Name, Errors: []RowError{}},
		seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()},
		names: map[importKey]int{}, uniq: map[importKey]int{}}
	for {
		row, errs, err := src.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if row != nil && p.rep.Rows == MaxImportRows {
			p.errs = append(p.errs, RowError{Row: row.Row, Reason: fmt.Sprintf("an import holds at most %d rows", MaxImportRows)})
			break
		}
		p.errs = append(p.errs, errs...)
		if row != nil {
			p.rep.Rows++
			if len(errs) == 0 {
				p.rows = append(p.rows, *row)
			}
		}
		if len(p.rows)+len(p.errs) >= importChunk {
			if err := p.flush(ctx); err != nil {
				return nil, err
			}
		}
	}
	if err := p.flush(ctx); err != nil {
		return nil, err
	}
	return p.rep, nil
}

func (p *importPass) key(s string) importKey {
	return importKey{maphash.String(p.seeds[0], s), maphash.String(p.seeds[1], s)}
}

type importUpdate struct {
	cur  *CI
	diff Diff
}

// flush checks the chunk of rows read, counts what it changes and, when
// writing and no row so far has failed, writes it.
func (p *importPass) flush(ctx context.Context) error {
	rows := p.rows
	attrs := make([]map[string]any, len(rows))
	type uniqueValue struct {
		attr, value string
		row         int // index in rows
	}
	var uniques []uniqueValue
	names := make([]string, len(rows))
	for i := range rows {
		r := &rows[i]
		names[i] = r.Name
		bad := map[string]string{}
		if !ValidCIName(r.Name) {
			bad["name"] = "must be 1-253 characters: letters, digits and . _ : / @ + -, starting with a letter or digit"
		} else if prev, ok := p.names[p.key(r.Name)]; ok {
			bad["name"] = fmt.Sprintf("duplicate of row %d", prev)
		} else {
			p.names[p.key(r.Name)] = r.Row
		}
		ValidateLabels(r.Labels, bad)
		a, abad := normalizeAll(p.t, r.Attributes, false)
		for k, v := range abad {
			bad[k] = v
		}
		canonicalHostAddress(p.t, a, bad)
		for k, v := range a {
			if d, _ := p.t.Attr(k); d != nil && d.Unique {
				raw, _ := json.Marshal(v)
				_, idx, _ := d.Normalize(raw)
				key := p.key(k + "\x00" + idx)
				if prev, ok := p.uniq[key]; ok {
					bad["attributes."+k] = fmt.Sprintf("must be unique: %q is also in row %d", idx, prev)
					continue
				}
				p.uniq[key] = r.Row
				uniques = append(uniques, uniqueValue{k, idx, i})
			}
		}
		attrs[i] = a
		for k, v := range bad {
			col := strings.TrimPrefix(k, "attributes.")
			if strings.HasPrefix(k, "labels.") {
				col = "labels"
			}
			p.errs = append(p.errs, RowError{Row: r.Row, Column: col, Reason: v})
		}
	}

	existing := map[string]*CI{}
	if len(names) > 0 {
		var cis []CI
		if err := p.db.NewSelect().Model(&cis).Where("type = ? AND name IN (?)", p.t.Name, bun.In(names)).Scan(ctx); err != nil {
			return fmt.Errorf("store: import: %w", err)
		}
		ptrs := make([]*CI, len(cis))
		for i := range cis {
			ptrs[i] = &cis[i]
			existing[cis[i].Name] = &cis[i]
		}
		if err := loadLabels(ctx, p.db, ptrs); err != nil {
			return err
		}
	}
	// Unique values held by CIs other than the row's own, one query per
	// attribute.
	byAttr := map[string][]uniqueValue{}
	for _, u := range uniques {
		byAttr[u.attr] = append(byAttr[u.attr], u)
	}
	for attr, us := range byAttr {
		values := make([]string, len(us))
		for i, u := range us {
			values[i] = u.value
		}
		var holders []struct {
			CIID  int64  `bun:"ci_id"`
			Name  string `bun:"name"`
			Value string `bun:"value"`
		}
		if err := p.db.NewSelect().TableExpr("ci_unique_values AS u").ColumnExpr("u.ci_id, c.name, u.value").
			Join("JOIN cis AS c ON c.id = u.ci_id").
			Where("u.type = ? AND u.name = ? AND u.value IN (?)", p.t.Name, attr, bun.In(values)).Scan(ctx, &holders); err != nil {
			return fmt.Errorf("store: import: %w", err)
		}
		rowOf := make(map[string]*ImportRow, len(us))
		for _, u := range us {
			rowOf[u.value] = &rows[u.row]
		}
		for _, h := range holders {
			if r := rowOf[h.Value]; r != nil && r.Name != h.Name {
				p.errs = append(p.errs, RowError{Row: r.Row, Column: attr, Reason: fmt.Sprintf("must be unique: %q is used by CI %d (%s)", h.Value, h.CIID, h.Name)})
			}
		}
	}
	sort.Slice(p.errs, func(i, j int) bool {
		if p.errs[i].Row != p.errs[j].Row {
			return p.errs[i].Row < p.errs[j].Row
		}
		return p.errs[i].Column < p.errs[j].Column
	})
	p.rep.ErrorCount += len(p.errs)
	p.rep.Errors = append(p.rep.Errors, p.errs[:min(len(p.errs), MaxReportErrors-len(p.rep.Errors))]...)

	var creates []*CI
	var updates []importUpdate
	for i := range rows {
		r := &rows[i]
		labels := r.Labels
		if labels == nil {
			labels = map[string]string{}
		}
		if old, ok := existing[r.Name]; ok {
			cur := *old
			cur.Attributes, cur.Labels = attrs[i], labels
			d := diffCI(old, &cur)
			if len(d) == 0 {
				p.rep.Unchanged++
				continue
			}
			cur.Version++
			cur.UpdatedAt, cur.UpdatedBy = p.now, p.ch.Actor
			updates = append(updates, importUpdate{&cur, d})
			p.rep.Updated++
			continue
		}
		creates = append(creates, &CI{Type: p.t.Name, Name: r.Name, Attributes: attrs[i], Labels: labels, Version: 1,
			CreatedAt: p.now, CreatedBy: p.ch.Actor, UpdatedAt: p.now, UpdatedBy: p.ch.Actor})
		p.rep.Created++
	}
	clear(p.rows)
	p.rows, p.errs = p.rows[:0], p.errs[:0]
	if !p.write || p.rep.ErrorCount > 0 {
		return nil
	}
	if err := p.writeChunk(ctx, creates, updates); err != nil {
		return fmt.Errorf("store: import: %w", err)
	}
	return nil
}

// writeChunk writes one chunk's creates and updates with their index
// rows, history, audit entries and feed events.
func (p *importPass) writeChunk(ctx context.Context, creates []*CI, updates []importUpdate) error {
	ch, now, typ := p.ch, p.now, p.t.Name
	if len(creates) > 0 {
		if _, err := p.db.NewInsert().Model(&creates).Returning("id").Exec(ctx); err != nil {
			return err
		}
	}
	for _, u := range updates {
		if _, err := p.db.NewUpdate().Model(u.cur).Column("attributes", "version", "updated_at", "updated_by").WherePK().Exec(ctx); err != nil {
			return err
		}
	}
	all := make([]*CI, 0, len(creates)+len(updates))
	all = append(all, creates...)
	for _, u := range updates {
		all = append(all, u.cur)
	}
	if len(all) == 0 {
		return nil
	}
	if err := writeIndexBatch(ctx, p.db, p.t, all, len(updates) > 0); err != nil {
		return err
	}
	hist := make([]CIHistory, 0, len(all))
	for _, c := range creates {
		hist = append(hist, CIHistory{CIID: c.ID, CIType: typ, CIName: c.Name, Version: 1, Op: "create", ChangedAt: now, ChangedBy: ch.Actor, RunID: ch.RunID, Diff: diffCI(nil, c)})
	}
	for _, u := range updates {
		hist = append(hist, CIHistory{CIID: u.cur.ID, CIType: typ, CIName: u.cur.Name, Version: u.cur.Version, Op: "update", ChangedAt: now, ChangedBy: ch.Actor, RunID: ch.RunID, Diff: u.diff})
	}
	evs := make([]CMDBEvent, len(hist))
	// Every CI the import changes is in the audit log too, as the change
	// of one CI would be.
	audit := make([]AuditEntry, len(hist))
	for i, h := range hist {
		data, _ := json.Marshal(all[i])
		evs[i] = CMDBEvent{At: now, Kind: "ci", Op: h.Op, ObjectID: h.CIID, CIType: typ, Actor: ch.Actor, RunID: ch.RunID, Data: data}
		audit[i] = AuditEntry{At: now, Actor: ch.Actor, Action: "cmdb.ci." + h.Op, Target: "ci:" + strconv.FormatInt(h.CIID, 10),
			SourceIP: ch.SourceIP, RequestID: ch.RequestID, Status: 200, Detail: "import"}
		if ch.RunID != "" {
			audit[i].Detail = "import by run " + ch.RunID
		}
	}
	if _, err := p.db.NewInsert().Model(&hist).Exec(ctx); err != nil {
		return err
	}
	if _, err := p.db.NewInsert().Model(&audit).Exec(ctx); err != nil {
		return err
	}
	// The feed lock, once taken, is held to the commit: other CMDB writers
	// on Postgres wait for the rest of the import.
	if p.eng == Postgres && !p.locked {
		if _, err := p.db.ExecContext(ctx, "SELECT pg_advisory_xact_lock(?)", eventLockKey); err != nil {
			return err
		}
		p.locked = true
	}
	if _, err := p.db.NewInsert().Model(&evs).Exec(ctx); err != nil {
		return err
	}
	return nil
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

// ImportRows opens rows already in memory for Import: imports made by
// code rather than from a request body.
func ImportRows(rows []ImportRow) func() (ImportReader, error) {
	return func() (ImportReader, error) { return &rowsReader{rows: rows}, nil }
}

type rowsReader struct {
	rows []ImportRow
	next int
}

func (r *rowsReader) Next() (*ImportRow, []RowError, error) {
	if r.next >= len(r.rows) {
		return nil, nil, io.EOF
	}
	r.next++
	return &r.rows[r.next-1], nil, nil
}
