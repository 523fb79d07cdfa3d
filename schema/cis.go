package schema

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/uptrace/bun"
	"k8s.io/apimachinery/pkg/util/validation"
)

// CI is a configuration item: a typed, labelled thing that operations
// target.
type CI struct {
	bun.BaseModel `bun:"table:cis"`

	ID         int64             `bun:"id,pk,autoincrement" json:"id"`
	Type       string            `bun:"type" json:"type"`
	Name       string            `bun:"name" json:"name"`
	Attributes map[string]any    `bun:"attributes,type:text" json:"attributes"`
	Labels     map[string]string `bun:"-" json:"labels"`
	Version    int64             `bun:"version" json:"version"`
	CreatedAt  time.Time         `bun:"created_at" json:"created_at"`
	CreatedBy  string            `bun:"created_by" json:"created_by"`
	UpdatedAt  time.Time         `bun:"updated_at" json:"updated_at"`
	UpdatedBy  string            `bun:"updated_by" json:"updated_by"`
}

// Change says who makes a CMDB change: a user, or a workflow run acting
// for one. RunID links the change to the run in history and the feed.
type Change struct {
	Actor string
	RunID string
	// Where the request came from, for audit entries the store writes
	// itself (bulk imports audit every CI they change).
	RequestID string
	SourceIP  string
}

// CIInput creates a CI. Attribute values are raw JSON, checked against the
// type.
type CIInput struct {
	Type       string                     `json:"type"`
	Name       string                     `json:"name"`
	Attributes map[string]json.RawMessage `json:"attributes"`
	Labels     map[string]string          `json:"labels"`
}

// CIPatch changes a CI: a JSON null attribute or a nil label removes it.
type CIPatch struct {
	Name       *string                    `json:"name"`
	Attributes map[string]json.RawMessage `json:"attributes"`
	Labels     map[string]*string         `json:"labels"`
}

// VersionMismatch is returned when an update names a stale version.
type VersionMismatch struct{ Current int64 }

func (e *VersionMismatch) Error() string {
	return fmt.Sprintf("version mismatch: the CI is at version %d", e.Current)
}

// ciNameRE takes letters and digits of any script (订单-api-01), combining
// marks after the first, and . _ : / @ + -; never spaces, separators or
// control characters.
var ciNameRE = regexp.MustCompile(`^[\p{L}\p{N}][\p{L}\p{N}\p{M}._:/@+-]{0,252}$`)

// ValidCIName reports whether s may name a CI.
func ValidCIName(s string) bool { return ciNameRE.MatchString(s) }

// ValidateLabels checks Kubernetes label syntax, keyed "labels.<key>".
func ValidateLabels(labels map[string]string, bad map[string]string) {
	for k, v := range labels {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			bad["labels."+k] = "invalid key: " + errs[0]
		} else if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			bad["labels."+k] = "invalid value: " + errs[0]
		}
	}
}

// Diff is a field-level change: "attributes.cpu": {from: 2, to: 4}.
type Diff map[string]DiffEntry

// DiffEntry is one field's old and new value; absent means unset.
type DiffEntry struct {
	From any `json:"from,omitempty"`
	To   any `json:"to,omitempty"`
}

func diffCI(old, cur *CI) Diff {
	d := Diff{}
	if old == nil {
		old = &CI{}
	}
	if cur == nil {
		cur = &CI{}
	}
	if old.Name != cur.Name {
		d["name"] = DiffEntry{From: nilIfEmpty(old.Name), To: nilIfEmpty(cur.Name)}
	}
	for k, v := range cur.Attributes {
		if ov, ok := old.Attributes[k]; !ok || !jsonEqual(ov, v) {
			d["attributes."+k] = DiffEntry{From: ov, To: v}
		}
	}
	for k, v := range old.Attributes {
		if _, ok := cur.Attributes[k]; !ok {
			d["attributes."+k] = DiffEntry{From: v}
		}
	}
	for k, v := range cur.Labels {
		if ov, ok := old.Labels[k]; !ok || ov != v {
			e := DiffEntry{To: v}
			if ok {
				e.From = ov
			}
			d["labels."+k] = e
		}
	}
	for k, v := range old.Labels {
		if _, ok := cur.Labels[k]; !ok {
			d["labels."+k] = DiffEntry{From: v}
		}
	}
	return d
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func jsonEqual(a, b any) bool {
	ab, _ := json.Marshal(a)
	bb, _ := json.Marshal(b)
	var av, bv any
	_ = json.Unmarshal(ab, &av)
	_ = json.Unmarshal(bb, &bv)
	return reflect.DeepEqual(av, bv)
}

// CreateCI validates and inserts a CI with its labels.
func (s *Store) CreateCI(ctx context.Context, in CIInput, ch Change) (*CI, error) {
	var out *CI
	err := s.DB.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		c, err := s.createCI(ctx, tx, in, ch, nil)
		out = c
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: create ci: %w", err)
	}
	return out, nil
}

// typeCache memoizes types within one transaction (bulk import).
type typeCache map[string]*CIType

func (tc typeCache) get(ctx context.Context, db bun.IDB, name string) (*CIType, error) {
	if t, ok := tc[name]; ok && tc != nil {
		return t, nil
	}
	t, err := typeIn(ctx, db, name)
	if err == nil && tc != nil {
		tc[name] = t
	}
	return t, err
}

func (s *Store) createCI(ctx context.Context, tx bun.Tx, in CIInput, ch Change, tc typeCache) (*CI, error) {
	bad := map[string]string{}
	t, err := tc.get(ctx, tx, in.Type)
	if errors.Is(err, ErrNotFound) {
		bad["type"] = "unknown CI type " + strconv.Quote(in.Type)
		return nil, invalid("invalid CI", bad)
	} else if err != nil {
		return nil, err
	}
	if !ValidCIName(in.Name) {
		bad["name"] = "must be 1-253 characters: letters, digits and . _ : / @ + -, starting with a letter or digit"
	}
	ValidateLabels(in.Labels, bad)
	attrs, abad := normalizeAll(t, in.Attributes, false)
	for k, v := range abad {
		bad[k] = v
	}
	canonicalHostAddress(t, attrs, bad)
	if len(bad) > 0 {
		return nil, invalid("invalid CI", bad)
	}
	now := time.Now().UTC()
	c := &CI{Type: t.Name, Name: in.Name, Attributes: attrs, Labels: in.Labels, Version: 1,
		CreatedAt: now, CreatedBy: ch.Actor, UpdatedAt: now, UpdatedBy: ch.Actor}
	if c.Labels == nil {
		c.Labels = map[string]string{}
	}
	if _, err := tx.NewInsert().Model(c).Returning("id").Exec(ctx); err != nil {
		if isUniqueViolation(err) {
			return nil, &ConflictError{Message: fmt.Sprintf("a %s named %q already exists", t.Name, in.Name), Fields: map[string]string{"name": "already exists"}}
		}
		return nil, err
	}
	if err := reindex(ctx, tx, t, c); err != nil {
		return nil, err
	}
	if err := s.recordCIChange(ctx, tx, "create", nil, c, ch); err != nil {
		return nil, err
	}
	return c, nil
}

// canonicalHostAddress writes a host's address in its one spelling (see
// CanonicalAddress), so that gates, scopes and pinned keys match it
// exactly; an address that is none is refused.
func canonicalHostAddress(t *CIType, attrs map[string]any, bad map[string]string) {
	a, ok := attrs["address"].(string)
	if t.Name != "host" || !ok {
		return
	}
	c, err := CanonicalAddress(a)
	if err != nil {
		bad["attributes.address"] = err.Error()
		return
	}
	attrs["address"] = c
}

// ConflictError is a uniqueness conflict naming the fields; the API
// answers 409.
type ConflictError struct {
	Message string
	Fields  map[string]string
}

func (e *ConflictError) Error() string { return e.Message }

// reindex rewrites a CI's labels, attribute index and unique values. A
// unique value another CI holds is a ConflictError naming the attribute.
func reindex(ctx context.Context, tx bun.IDB, t *CIType, c *CI) error {
	for k, v := range c.Attributes {
		d, ok := t.Attr(k)
		if !ok || !d.Unique {
			continue
		}
		raw, _ := json.Marshal(v)
		_, idx, err := d.Normalize(raw)
		if err != nil {
			return fmt.Errorf("attribute %s: %w", k, err)
		}
		var holder int64
		err = tx.NewSelect().Table("ci_unique_values").Column("ci_id").
			Where("type = ? AND name = ? AND value = ? AND ci_id <> ?", t.Name, k, idx, c.ID).Scan(ctx, &holder)
		if err == nil {
			return &ConflictError{Message: fmt.Sprintf("attribute %s must be unique: %q is used by CI %d", k, idx, holder),
				Fields: map[string]string{"attributes." + k: fmt.Sprintf("%q is already used by CI %d", idx, holder)}}
		}
	}
	return writeIndexBatch(ctx, tx, t, []*CI{c}, true)
}

// CI returns the CI id with its labels.
func (s *Store) CI(ctx context.Context, id int64) (*CI, error) {
	return s.ciIn(ctx, s.DB, id)
}

func (s *Store) ciIn(ctx context.Context, db bun.IDB, id int64) (*CI, error) {
	c := new(CI)
	if err := db.NewSelect().Model(c).Where("id = ?", id).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: ci %d: %w", id, notFound(err))
	}
	if err := loadLabels(ctx, db, []*CI{c}); err != nil {
		return nil, err
	}
	return c, nil
}

// CIByName returns the CI of type named name.
func (s *Store) CIByName(ctx context.Context, typ, name string) (*CI, error) {
	c := new(CI)
	if err := s.DB.NewSelect().Model(c).Where("type = ? AND name = ?", typ, name).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: ci %s/%s: %w", typ, name, notFound(err))
	}
	if err := loadLabels(ctx, s.DB, []*CI{c}); err != nil {
		return nil, err
	}
	return c, nil
}

func loadLabels(ctx context.Context, db bun.IDB, cis []*CI) error {
	if len(cis) == 0 {
		return nil
	}
	byID := make(map[int64]*CI, len(cis))
	ids := make([]int64, 0, len(cis))
	for _, c := range cis {
		c.Labels = map[string]string{}
		if c.Attributes == nil {
			c.Attributes = map[string]any{}
		}
		byID[c.ID] = c
		ids = append(ids, c.ID)
	}
	var rows []struct {
		CIID  int64  `bun:"ci_id"`
		Key   string `bun:"key"`
		Value string `bun:"value"`
	}
	if err := db.NewSelect().Table("ci_labels").Column("ci_id", "key", "value").Where("ci_id IN (?)", bun.In(ids)).Scan(ctx, &rows); err != nil {
		return fmt.Errorf("store: ci labels: %w", err)
	}
	for _, r := range rows {
		byID[r.CIID].Labels[r.Key] = r.Value
	}
	return nil
}

// UpdateCI applies p to CI id if it is still at version ifVersion.
func (s *Store) UpdateCI(ctx context.Context, id, ifVersion int64, p CIPatch, ch Change) (*CI, error) {
	var out *CI
	err := s.DB.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		old, err := s.ciIn(ctx, tx, id)
		if err != nil {
			return err
		}
		if old.Version != ifVersion {
			return &VersionMismatch{Current: old.Version}
		}
		c, err := s.patchCI(ctx, tx, old, p, ch, nil)
		out = c
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: update ci %d: %w", id, err)
	}
	return out, nil
}

// patchCI applies p to old inside tx. A patch that changes nothing writes
// nothing and keeps the version.
func (s *Store) patchCI(ctx context.Context, tx bun.Tx, old *CI, p CIPatch, ch Change, tc typeCache) (*CI, error) {
	t, err := tc.get(ctx, tx, old.Type)
	if err != nil {
		return nil, err
	}
	bad := map[string]string{}
	cur := *old
	cur.Attributes = map[string]any{}
	for k, v := range old.Attributes {
		cur.Attributes[k] = v
	}
	cur.Labels = map[string]string{}
	for k, v := range old.Labels {
		cur.Labels[k] = v
	}
	if p.Name != nil {
		if !ValidCIName(*p.Name) {
			bad["name"] = "must be 1-253 characters: letters, digits and . _ : / @ + -, starting with a letter or digit"
		}
		cur.Name = *p.Name
	}
	raw := rawAttrs(cur.Attributes)
	for k, v := range p.Attributes {
		if string(v) == "null" {
			delete(raw, k)
		} else {
			raw[k] = v
		}
	}
	attrs, abad := normalizeAll(t, raw, false)
	for k, v := range abad {
		if _, patched := p.Attributes[strings.TrimPrefix(k, "attributes.")]; patched || strings.HasSuffix(v, "required") {
			bad[k] = v
		}
	}
	if _, patched := p.Attributes["address"]; patched {
		canonicalHostAddress(t, attrs, bad)
	}
	cur.Attributes = attrs
	set := map[string]string{}
	for k, v := range p.Labels {
		if v == nil {
			delete(cur.Labels, k)
		} else {
			cur.Labels[k] = *v
			set[k] = *v
		}
	}
	ValidateLabels(set, bad)
	if len(bad) > 0 {
		return nil, invalid("invalid CI", bad)
	}
	d := diffCI(old, &cur)
	if len(d) == 0 {
		return old, nil
	}
	cur.Version = old.Version + 1
	cur.UpdatedAt, cur.UpdatedBy = time.Now().UTC(), ch.Actor
	res, err := tx.NewUpdate().Model(&cur).Column("name", "attributes", "version", "updated_at", "updated_by").
		WherePK().Where("version = ?", old.Version).Exec(ctx)
	if err != nil {
		if isUniqueViolation(err) {
			return nil, &ConflictError{Message: fmt.Sprintf("a %s named %q already exists", cur.Type, cur.Name), Fields: map[string]string{"name": "already exists"}}
		}
		return nil, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil, &VersionMismatch{Current: old.Version + 1}
	}
	if err := reindex(ctx, tx, t, &cur); err != nil {
		return nil, err
	}
	if err := s.recordCIChangeDiff(ctx, tx, "update", &cur, d, ch); err != nil {
		return nil, err
	}
	return &cur, nil
}

// DependentsError refuses deleting a CI others relate to.
type DependentsError struct {
	Relations int
}

func (e *DependentsError) Error() string {
	return fmt.Sprintf("%d relation(s) reference this CI; delete them first or pass cascade=true", e.Relations)
}

// DeleteCI deletes a CI. If relations reference it, it is refused unless
// cascade, which deletes those relations too.
func (s *Store) DeleteCI(ctx context.Context, id int64, cascade bool, ch Change) error {
	err := s.DB.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		c, err := s.ciIn(ctx, tx, id)
		if err != nil {
			return err
		}
		var rels []Relation
		if err := tx.NewSelect().Model(&rels).Where("source_id = ? OR target_id = ?", id, id).Scan(ctx); err != nil {
			return err
		}
		if len(rels) > 0 && !cascade {
			return &DependentsError{Relations: len(rels)}
		}
		for i := range rels {
			if err := s.deleteRelation(ctx, tx, &rels[i], ch); err != nil {
				return err
			}
		}
		if _, err := tx.NewDelete().Model(c).WherePK().Exec(ctx); err != nil {
			return err
		}
		return s.recordCIChange(ctx, tx, "delete", c, nil, ch)
	})
	if err != nil {
		return fmt.Errorf("store: delete ci %d: %w", id, err)
	}
	return nil
}

// CIQuery selects CIs; zero fields match everything.
type CIQuery struct {
	Type     string
	Selector string            // Kubernetes label-selector syntax
	Q        string            // substring of the name
	Attrs    map[string]string // attribute name -> value (query-string form)
	Sort     string            // see Page
	Order    string
	Cursor   string
	Limit    int
}

// CIs lists CIs by ID with the cursor of the next page ("" at the end).
func (s *Store) CIs(ctx context.Context, q CIQuery) ([]CI, string, error) {
	cis, info, err := s.ciList(ctx, q, false)
	return cis, info.Next, err
}

// CIList lists one page of CIs. A bad selector or attribute filter is a
// ValidationError. It is the CMDB's hottest read, so it is one
// hand-built, parameterized statement — labels aggregated per row — that
// Postgres prepares once and reuses.
func (s *Store) CIList(ctx context.Context, q CIQuery) ([]CI, PageInfo, error) {
	return s.ciList(ctx, q, true)
}

func (s *Store) ciList(ctx context.Context, q CIQuery, size bool) ([]CI, PageInfo, error) {
	var where []string
	var args []any
	bad := map[string]string{}
	if q.Type != "" {
		where, args = append(where, "ci.type = ?"), append(args, q.Type)
	}
	if q.Selector != "" {
		conds, cargs, err := selectorSQL(q.Selector)
		if err != nil {
			bad["selector"] = err.Error()
		}
		where, args = append(where, conds...), append(args, cargs...)
	}
	if len(q.Q) > 256 {
		bad["q"] = "at most 256 bytes"
	} else if q.Q != "" {
		where, args = append(where, "LOWER(ci.name) LIKE ?"), append(args, "%"+escapeLike(strings.ToLower(q.Q))+"%")
	}
	if len(q.Attrs) > MaxSelectorRequirements {
		bad["attr"] = fmt.Sprintf("at most %d attribute filters", MaxSelectorRequirements)
		q.Attrs = nil
	}
	names := make([]string, 0, len(q.Attrs))
	for k := range q.Attrs {
		names = append(names, k)
	}
	sort.Strings(names)
	// The type is read only when attribute filters need its definitions,
	// or to tell an unknown type from an empty result.
	var t *CIType
	checkType := func() error {
		if q.Type == "" || t != nil {
			return nil
		}
		var err error
		if t, err = s.Type(ctx, q.Type); errors.Is(err, ErrNotFound) {
			bad["type"] = "unknown CI type " + strconv.Quote(q.Type)
			return nil
		}
		return err
	}
	if len(names) > 0 {
		if err := checkType(); err != nil {
			return nil, PageInfo{}, err
		}
	}
	for _, name := range names {
		val := q.Attrs[name]
		if t != nil {
			d, ok := t.Attr(name)
			if !ok {
				bad["attr."+name] = "type " + t.Name + " has no attribute " + name
				continue
			}
			v, err := d.ParseFilterValue(val)
			if err != nil {
				bad["attr."+name] = err.Error()
				continue
			}
			val = v
		}
		where = append(where, "EXISTS (SELECT 1 FROM ci_attrs a WHERE a.ci_id = ci.id AND a.name = ? AND a.value = ?)")
		args = append(args, name, val)
	}
	k, err := newKeyset(s.Engine, "cis", Page{Sort: q.Sort, Order: q.Order, Cursor: q.Cursor, Limit: q.Limit})
	if err != nil {
		return nil, PageInfo{}, err
	}
	if len(bad) > 0 {
		return nil, PageInfo{}, invalid("invalid query", bad)
	}
	filter := ""
	if len(where) > 0 {
		filter = " WHERE " + strings.Join(where, " AND ")
	}
	total := 0
	if size {
		if err := s.queryRowPrepared(ctx, "SELECT COUNT(*) FROM cis ci"+filter, args...).Scan(&total); err != nil {
			return nil, PageInfo{}, fmt.Errorf("store: count cis: %w", err)
		}
	}
	if w, wargs := k.where(); w != "" {
		where, args = append(where, w), append(args, wargs...)
	}
	labelsAgg := "(SELECT json_group_object(l.key, l.value) FROM ci_labels l WHERE l.ci_id = ci.id)"
	if s.Engine == Postgres {
		labelsAgg = "(SELECT json_object_agg(l.key, l.value)::text FROM ci_labels l WHERE l.ci_id = ci.id)"
	}
	query := "SELECT ci.id, ci.type, ci.name, ci.attributes, ci.version, ci.created_at, ci.created_by, ci.updated_at, ci.updated_by, COALESCE(" +
		labelsAgg + ", '{}') FROM cis ci"
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY " + k.orderBy() + " LIMIT " + strconv.Itoa(k.fetch())
	rows, err := s.queryPrepared(ctx, query, args...)
	if err != nil {
		return nil, PageInfo{}, fmt.Errorf("store: cis: %w", err)
	}
	defer rows.Close()
	var cis []CI
	for rows.Next() {
		var c CI
		var attrs, labels string
		var created, updated any
		if err := rows.Scan(&c.ID, &c.Type, &c.Name, &attrs, &c.Version, &created, &c.CreatedBy, &updated, &c.UpdatedBy, &labels); err != nil {
			return nil, PageInfo{}, fmt.Errorf("store: cis: %w", err)
		}
		if c.CreatedAt, err = asTime(created); err != nil {
			return nil, PageInfo{}, err
		}
		if c.UpdatedAt, err = asTime(updated); err != nil {
			return nil, PageInfo{}, err
		}
		if err := json.Unmarshal([]byte(attrs), &c.Attributes); err != nil {
			return nil, PageInfo{}, fmt.Errorf("store: ci %d attributes: %w", c.ID, err)
		}
		if err := json.Unmarshal([]byte(labels), &c.Labels); err != nil {
			return nil, PageInfo{}, fmt.Errorf("store: ci %d labels: %w", c.ID, err)
		}
		if c.Attributes == nil {
			c.Attributes = map[string]any{}
		}
		cis = append(cis, c)
	}
	if err := rows.Err(); err != nil {
		return nil, PageInfo{}, fmt.Errorf("store: cis: %w", err)
	}
	if len(cis) == 0 {
		if err := checkType(); err != nil {
			return nil, PageInfo{}, err
		}
		if len(bad) > 0 {
			return nil, PageInfo{}, invalid("invalid query", bad)
		}
	}
	cis, info := pageOf(k, cis, func(c *CI) (any, any) {
		switch k.sort {
		case "name":
			return c.Name, c.ID
		case "type":
			return c.Type, c.ID
		case "updated":
			return c.UpdatedAt, c.ID
		case "version":
			return c.Version, c.ID
		}
		return c.ID, c.ID
	})
	info.Total = total
	return cis, info, nil
}
