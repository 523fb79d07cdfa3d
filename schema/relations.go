package schema

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/uptrace/bun"
)

// Cardinalities of a relation type, read source-to-target.
const (
	OneToOne   = "one_to_one"
	OneToMany  = "one_to_many"
	ManyToOne  = "many_to_one"
	ManyToMany = "many_to_many"
)

// RelationType is a kind of relation. "web runs_on host-1": the source
// depends on the target. Acyclic types refuse cycles; Impact types carry
// failure from target to source in impact queries.
type RelationType struct {
	bun.BaseModel `bun:"table:relation_types"`

	Name        string    `bun:"name,pk" json:"name"`
	Description string    `bun:"description" json:"description"`
	Cardinality string    `bun:"cardinality" json:"cardinality"`
	Acyclic     bool      `bun:"acyclic" json:"acyclic"`
	Impact      bool      `bun:"impact" json:"impact"`
	Builtin     bool      `bun:"builtin" json:"builtin"`
	CreatedAt   time.Time `bun:"created_at" json:"created_at"`
}

// Relation links two CIs.
type Relation struct {
	bun.BaseModel `bun:"table:relations"`

	ID        int64     `bun:"id,pk,autoincrement" json:"id"`
	Type      string    `bun:"type" json:"type"`
	SourceID  int64     `bun:"source_id" json:"source_id"`
	TargetID  int64     `bun:"target_id" json:"target_id"`
	CreatedAt time.Time `bun:"created_at" json:"created_at"`
	CreatedBy string    `bun:"created_by" json:"created_by"`
	RunID     string    `bun:"run_id" json:"run_id,omitempty"`
}

// RelationTypes lists relation types by name.
func (s *Store) RelationTypes(ctx context.Context) ([]RelationType, error) {
	var ts []RelationType
	if err := s.DB.NewSelect().Model(&ts).Order("name").Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: relation types: %w", err)
	}
	return ts, nil
}

// CreateRelationType adds a relation type.
func (s *Store) CreateRelationType(ctx context.Context, t *RelationType) error {
	bad := map[string]string{}
	if !ValidTypeName(t.Name) {
		bad["name"] = "must be 1-63 lowercase letters, digits or '_', starting with a letter"
	}
	if !slices.Contains([]string{OneToOne, OneToMany, ManyToOne, ManyToMany}, t.Cardinality) {
		bad["cardinality"] = "must be one of one_to_one, one_to_many, many_to_one, many_to_many"
	}
	if len(bad) > 0 {
		return invalid("invalid relation type", bad)
	}
	t.CreatedAt = time.Now().UTC()
	if _, err := s.DB.NewInsert().Model(t).Exec(ctx); err != nil {
		if isUniqueViolation(err) {
			return fmt.Errorf("store: create relation type %q: %w", t.Name, ErrConflict)
		}
		return fmt.Errorf("store: create relation type %q: %w", t.Name, err)
	}
	return nil
}

// CreateRelation links source to target with a relation of type typ,
// enforcing the type's cardinality and, for acyclic types, refusing a
// link that would close a cycle.
func (s *Store) CreateRelation(ctx context.Context, typ string, source, target int64, ch Change) (*Relation, error) {
	var out *Relation
	err := s.DB.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		r, err := s.createRelation(ctx, tx, typ, source, target, ch)
		out = r
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: create relation: %w", err)
	}
	return out, nil
}

func (s *Store) createRelation(ctx context.Context, tx bun.Tx, typ string, source, target int64, ch Change) (*Relation, error) {
	bad := map[string]string{}
	rt := new(RelationType)
	if err := tx.NewSelect().Model(rt).Where("name = ?", typ).Scan(ctx); err != nil {
		if errors.Is(notFound(err), ErrNotFound) {
			bad["type"] = "unknown relation type " + strconv.Quote(typ)
		} else {
			return nil, err
		}
	}
	if source == target {
		bad["target_id"] = "a CI cannot relate to itself"
	}
	src, err := s.ciIn(ctx, tx, source)
	if errors.Is(err, ErrNotFound) {
		bad["source_id"] = "no CI " + strconv.FormatInt(source, 10)
	} else if err != nil {
		return nil, err
	}
	dst, err := s.ciIn(ctx, tx, target)
	if errors.Is(err, ErrNotFound) {
		bad["target_id"] = "no CI " + strconv.FormatInt(target, 10)
	} else if err != nil {
		return nil, err
	}
	if len(bad) > 0 {
		return nil, invalid("invalid relation", bad)
	}
	exists, err := tx.NewSelect().Model((*Relation)(nil)).Where("type = ? AND source_id = ? AND target_id = ?", typ, source, target).Exists(ctx)
	if err != nil {
		return nil, err
	}
	if exists {
		return nil, &ConflictError{Message: "relation already exists", Fields: map[string]string{"target_id": "already related by " + typ}}
	}
	if rt.Cardinality == ManyToOne || rt.Cardinality == OneToOne {
		n, err := tx.NewSelect().Model((*Relation)(nil)).Where("type = ? AND source_id = ?", typ, source).Count(ctx)
		if err != nil {
			return nil, err
		}
		if n > 0 {
			return nil, invalid("invalid relation", map[string]string{"source_id": fmt.Sprintf("%s is %s: CI %d already has one", typ, rt.Cardinality, source)})
		}
	}
	if rt.Cardinality == OneToMany || rt.Cardinality == OneToOne {
		n, err := tx.NewSelect().Model((*Relation)(nil)).Where("type = ? AND target_id = ?", typ, target).Count(ctx)
		if err != nil {
			return nil, err
		}
		if n > 0 {
			return nil, invalid("invalid relation", map[string]string{"target_id": fmt.Sprintf("%s is %s: CI %d already has one", typ, rt.Cardinality, target)})
		}
	}
	if rt.Acyclic {
		var hit []int64
		err := tx.NewRaw(`WITH RECURSIVE reach(id) AS (
				SELECT target_id FROM relations WHERE source_id = ? AND type = ?
				UNION
				SELECT r.target_id FROM relations r JOIN reach ON r.source_id = reach.id WHERE r.type = ?
			) SELECT id FROM reach WHERE id = ? LIMIT 1`, target, typ, typ, source).Scan(ctx, &hit)
		if err != nil {
			return nil, err
		}
		if len(hit) > 0 {
			return nil, invalid("invalid relation", map[string]string{"target_id": fmt.Sprintf("%s must not form a cycle: CI %d already reaches CI %d", typ, target, source)})
		}
	}
	r := &Relation{Type: typ, SourceID: source, TargetID: target, CreatedAt: time.Now().UTC(), CreatedBy: ch.Actor, RunID: ch.RunID}
	if _, err := tx.NewInsert().Model(r).Returning("id").Exec(ctx); err != nil {
		return nil, err
	}
	if err := s.recordRelationChange(ctx, tx, "create", r, src, dst, ch); err != nil {
		return nil, err
	}
	return r, nil
}

// recordRelationChange writes the change into both CIs' history and the
// feed.
func (s *Store) recordRelationChange(ctx context.Context, tx bun.Tx, op string, r *Relation, src, dst *CI, ch Change) error {
	now := time.Now().UTC()
	for _, side := range []struct {
		c     *CI
		field string
		other int64
	}{{src, "relations.out." + r.Type, r.TargetID}, {dst, "relations.in." + r.Type, r.SourceID}} {
		if side.c == nil {
			continue
		}
		e := DiffEntry{To: side.other}
		if op == "delete" {
			e = DiffEntry{From: side.other}
		}
		h := &CIHistory{CIID: side.c.ID, CIType: side.c.Type, CIName: side.c.Name, Version: side.c.Version, Op: "relation." + op,
			ChangedAt: now, ChangedBy: ch.Actor, RunID: ch.RunID, Diff: Diff{side.field: e}}
		if _, err := tx.NewInsert().Model(h).Exec(ctx); err != nil {
			return err
		}
	}
	return s.appendEvent(ctx, tx, &CMDBEvent{Kind: "relation", Op: op, ObjectID: r.ID, Actor: ch.Actor, RunID: ch.RunID}, r)
}

// Relation returns relation id.
func (s *Store) Relation(ctx context.Context, id int64) (*Relation, error) {
	r := new(Relation)
	if err := s.DB.NewSelect().Model(r).Where("id = ?", id).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: relation %d: %w", id, notFound(err))
	}
	return r, nil
}

// DeleteRelation removes relation id.
func (s *Store) DeleteRelation(ctx context.Context, id int64, ch Change) error {
	err := s.DB.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		r := new(Relation)
		if err := tx.NewSelect().Model(r).Where("id = ?", id).Scan(ctx); err != nil {
			return notFound(err)
		}
		return s.deleteRelation(ctx, tx, r, ch)
	})
	if err != nil {
		return fmt.Errorf("store: delete relation %d: %w", id, err)
	}
	return nil
}

func (s *Store) deleteRelation(ctx context.Context, tx bun.Tx, r *Relation, ch Change) error {
	if _, err := tx.NewDelete().Model(r).WherePK().Exec(ctx); err != nil {
		return err
	}
	src, _ := s.ciIn(ctx, tx, r.SourceID)
	dst, _ := s.ciIn(ctx, tx, r.TargetID)
	return s.recordRelationChange(ctx, tx, "delete", r, src, dst, ch)
}

// RelationFilter selects relations; zero fields match everything.
type RelationFilter struct {
	CIID  int64 // either end
	Type  string
	After int64
	Limit int
}

// Relations lists relations by ID.
func (s *Store) Relations(ctx context.Context, f RelationFilter) ([]Relation, error) {
	var rs []Relation
	q := s.DB.NewSelect().Model(&rs).OrderExpr("id ASC").Limit(int64(clampLimit(f.Limit)))
	if f.CIID != 0 {
		q = q.WhereGroup(" AND ", func(q *bun.SelectQuery) *bun.SelectQuery {
			return q.Where("source_id = ?", f.CIID).WhereOr("target_id = ?", f.CIID)
		})
	}
	if f.Type != "" {
		q = q.Where("type = ?", f.Type)
	}
	if f.After > 0 {
		q = q.Where("id > ?", f.After)
	}
	if err := q.Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: relations: %w", err)
	}
	return rs, nil
}

// Graph is the topology around a CI.
type Graph struct {
	Nodes []GraphNode `json:"nodes"`
	Edges []Relation  `json:"edges"`
}

// GraphNode is a CI in a graph with its distance from the root.
type GraphNode struct {
	ID    int64  `json:"id"`
	Type  string `json:"type"`
	Name  string `json:"name"`
	Depth int    `json:"depth"`
}

// Directions for Graph: down follows what the CI depends on (its
// relations' targets), up what depends on it (their sources).
const (
	Up   = "up"
	Down = "down"
	Both = "both"
)

// Graph walks up to depth hops from CI id in direction, level by level.
func (s *Store) Graph(ctx context.Context, id int64, direction string, depth int) (*Graph, error) {
	root, err := s.CI(ctx, id)
	if err != nil {
		return nil, err
	}
	g := &Graph{Nodes: []GraphNode{{ID: root.ID, Type: root.Type, Name: root.Name}}, Edges: []Relation{}}
	seen := map[int64]bool{root.ID: true}
	seenEdge := map[int64]bool{}
	frontier := []int64{root.ID}
	for level := 1; level <= depth && len(frontier) > 0; level++ {
		var rs []Relation
		q := s.DB.NewSelect().Model(&rs).OrderExpr("id ASC")
		switch direction {
		case Down:
			q = q.Where("source_id IN (?)", bun.In(frontier))
		case Up:
			q = q.Where("target_id IN (?)", bun.In(frontier))
		default:
			q = q.WhereGroup(" AND ", func(q *bun.SelectQuery) *bun.SelectQuery {
				return q.Where("source_id IN (?)", bun.In(frontier)).WhereOr("target_id IN (?)", bun.In(frontier))
			})
		}
		if err := q.Scan(ctx); err != nil {
			return nil, fmt.Errorf("store: graph: %w", err)
		}
		var next []int64
		for _, r := range rs {
			if !seenEdge[r.ID] {
				seenEdge[r.ID] = true
				g.Edges = append(g.Edges, r)
			}
			for _, n := range []int64{r.SourceID, r.TargetID} {
				if !seen[n] {
					seen[n] = true
					next = append(next, n)
				}
			}
		}
		if len(next) > 0 {
			var cis []CI
			if err := s.DB.NewSelect().Model(&cis).Column("id", "type", "name").Where("id IN (?)", bun.In(next)).OrderExpr("id").Scan(ctx); err != nil {
				return nil, fmt.Errorf("store: graph nodes: %w", err)
			}
			for _, c := range cis {
				g.Nodes = append(g.Nodes, GraphNode{ID: c.ID, Type: c.Type, Name: c.Name, Depth: level})
			}
		}
		frontier = next
	}
	return g, nil
}

// Impact lists every CI that transitively depends on CI id through
// relation types that carry impact, nearest first, up to maxDepth hops.
func (s *Store) Impact(ctx context.Context, id int64, maxDepth int) ([]GraphNode, error) {
	if _, err := s.CI(ctx, id); err != nil {
		return nil, err
	}
	rows, err := s.queryPrepared(ctx, `WITH RECURSIVE up(id, depth) AS (
			SELECT r.source_id, 1 FROM relations r JOIN relation_types t ON t.name = r.type AND t.impact
			WHERE r.target_id = ?
			UNION
			SELECT r.source_id, up.depth + 1 FROM relations r JOIN relation_types t ON t.name = r.type AND t.impact
			JOIN up ON r.target_id = up.id WHERE up.depth < ?
		)
		SELECT c.id, c.type, c.name, MIN(up.depth) AS depth FROM up JOIN cis c ON c.id = up.id
		WHERE c.id <> ?
		GROUP BY c.id, c.type, c.name ORDER BY depth, c.id`, id, maxDepth, id)
	if err != nil {
		return nil, fmt.Errorf("store: impact of %d: %w", id, err)
	}
	defer rows.Close()
	out := []GraphNode{}
	for rows.Next() {
		var n GraphNode
		if err := rows.Scan(&n.ID, &n.Type, &n.Name, &n.Depth); err != nil {
			return nil, fmt.Errorf("store: impact of %d: %w", id, err)
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: impact of %d: %w", id, err)
	}
	return out, nil
}
