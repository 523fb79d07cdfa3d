package schema_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/opsflow/opsflow/schema"
)

func raw(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

func mustCI(t *testing.T, s *schema.Store, typ, name string, attrs map[string]any, labels map[string]string) *schema.CI {
	t.Helper()
	in := schema.CIInput{Type: typ, Name: name, Labels: labels, Attributes: map[string]json.RawMessage{}}
	for k, v := range attrs {
		in.Attributes[k] = raw(v)
	}
	c, err := s.CreateCI(context.Background(), in, schema.Change{Actor: "tester"})
	if err != nil {
		t.Fatalf("create %s/%s: %v", typ, name, err)
	}
	return c
}

func fieldsOf(t *testing.T, err error) map[string]string {
	t.Helper()
	var ve *schema.ValidationError
	if errors.As(err, &ve) {
		return ve.Fields
	}
	var ce *schema.ConflictError
	if errors.As(err, &ce) {
		return ce.Fields
	}
	t.Fatalf("error %v is not a validation or conflict error", err)
	return nil
}

func TestCITypesAndValidation(t *testing.T) {
	ctx := context.Background()
	for engine, s := range stores(t) {
		t.Run(string(engine), func(t *testing.T) {
			types, err := s.Types(ctx)
			if err != nil || len(types) < 6 {
				t.Fatalf("builtin types: %d %v", len(types), err)
			}
			typ := "rack_" + string(engine)[:2]
			min := 1.0
			err = s.CreateType(ctx, &schema.CIType{Name: typ, Attributes: []schema.AttributeDef{
				{Name: "units", Type: schema.AttrInt, Required: true, Min: &min},
				{Name: "serial", Type: schema.AttrString, Unique: true, Regex: `^SN-\d+$`},
				{Name: "kind", Type: schema.AttrEnum, Values: []string{"open", "closed"}, Default: "open"},
				{Name: "mgmt_ip", Type: schema.AttrIP},
				{Name: "commissioned", Type: schema.AttrDatetime},
				{Name: "spec", Type: schema.AttrJSON},
			}})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.CreateType(ctx, &schema.CIType{Name: "Bad Name", Attributes: []schema.AttributeDef{{Name: "x", Type: "blob"}}}); err == nil {
				t.Fatal("bad type accepted")
			} else if f := fieldsOf(t, err); f["name"] == "" || f["attributes[0].type"] == "" {
				t.Fatalf("fields %v", f)
			}

			c := mustCI(t, s, typ, "r1", map[string]any{"units": 42, "serial": "SN-1", "mgmt_ip": "10.0.0.1", "commissioned": "2026-01-02T03:04:05+02:00", "spec": map[string]any{"a": 1}}, map[string]string{"env": "prod"})
			if c.Attributes["kind"] != "open" || c.Attributes["commissioned"] != "2026-01-02T01:04:05Z" {
				t.Fatalf("defaults/normalization: %v", c.Attributes)
			}
			cases := []struct {
				attrs map[string]any
				field string
			}{
				{map[string]any{}, "attributes.units"},
				{map[string]any{"units": "42"}, "attributes.units"},
				{map[string]any{"units": 0}, "attributes.units"},
				{map[string]any{"units": 1.5}, "attributes.units"},
				{map[string]any{"units": 1, "serial": "nope"}, "attributes.serial"},
				{map[string]any{"units": 1, "kind": "half"}, "attributes.kind"},
				{map[string]any{"units": 1, "mgmt_ip": "10.0.0.300"}, "attributes.mgmt_ip"},
				{map[string]any{"units": 1, "commissioned": "yesterday"}, "attributes.commissioned"},
				{map[string]any{"units": 1, "color": "red"}, "attributes.color"},
				{map[string]any{"units": 1, "serial": "SN-1"}, "attributes.serial"}, // duplicate unique value
			}
			for i, tc := range cases {
				in := schema.CIInput{Type: typ, Name: fmt.Sprintf("bad-%d", i), Attributes: map[string]json.RawMessage{}}
				for k, v := range tc.attrs {
					in.Attributes[k] = raw(v)
				}
				_, err := s.CreateCI(ctx, in, schema.Change{Actor: "tester"})
				if err == nil {
					t.Fatalf("case %d accepted", i)
				}
				if f := fieldsOf(t, err); f[tc.field] == "" {
					t.Fatalf("case %d: fields %v, want %s", i, f, tc.field)
				}
				if _, err := s.CIByName(ctx, typ, in.Name); !errors.Is(err, schema.ErrNotFound) {
					t.Fatalf("case %d: rejected CI was written", i)
				}
			}
			if _, err := s.CreateCI(ctx, schema.CIInput{Type: "nope", Name: "x"}, schema.Change{}); fieldsOf(t, err)["type"] == "" {
				t.Fatal("unknown type not named")
			}
			if _, err := s.CreateCI(ctx, schema.CIInput{Type: typ, Name: "r1", Attributes: map[string]json.RawMessage{"units": raw(1)}}, schema.Change{}); fieldsOf(t, err)["name"] == "" {
				t.Fatal("duplicate name not refused")
			}
			if _, err := s.CreateCI(ctx, schema.CIInput{Type: typ, Name: "r9", Labels: map[string]string{"bad key": "x"}, Attributes: map[string]json.RawMessage{"units": raw(1)}}, schema.Change{}); fieldsOf(t, err)["labels.bad key"] == "" {
				t.Fatal("bad label not refused")
			}

			// Evolving the type: a new required attribute without a default
			// would invalidate r1 and is refused, naming it.
			ty, _ := s.Type(ctx, typ)
			defs := append(ty.Attributes, schema.AttributeDef{Name: "row", Type: schema.AttrString, Required: true})
			_, err = s.UpdateType(ctx, typ, "", defs)
			var refused *schema.TypeChangeRefused
			if !errors.As(err, &refused) || len(refused.Offending) != 1 || refused.Offending[0].Name != "r1" {
				t.Fatalf("invalidating change: %v", err)
			}
			defs[len(defs)-1].Default = "A"
			nt, err := s.UpdateType(ctx, typ, "racks", defs)
			if err != nil || nt.Version != 2 {
				t.Fatalf("compatible change: %+v %v", nt, err)
			}
			got, _ := s.CI(ctx, c.ID)
			if got.Attributes["row"] != "A" {
				t.Fatalf("default not filled in: %v", got.Attributes)
			}
		})
	}
}

func TestCIUpdateHistoryAndQueries(t *testing.T) {
	ctx := context.Background()
	for engine, s := range stores(t) {
		t.Run(string(engine), func(t *testing.T) {
			p := "q" + string(engine)[:2] + "-"
			web := mustCI(t, s, "host", p+"web-1", map[string]any{"cpu_count": 2}, map[string]string{"env": "prod", "role": "web"})
			mustCI(t, s, "host", p+"web-2", map[string]any{"cpu_count": 4}, map[string]string{"env": "prod", "role": "api"})
			mustCI(t, s, "host", p+"db-1", map[string]any{"cpu_count": 4}, map[string]string{"env": "prod", "role": "db", "deprecated": "true"})
			mustCI(t, s, "host", p+"dev-1", map[string]any{"cpu_count": 4}, map[string]string{"env": "dev", "role": "web"})

			names := func(q schema.CIQuery) []string {
				q.Q = p
				cs, _, err := s.CIs(ctx, q)
				if err != nil {
					t.Fatalf("%+v: %v", q, err)
				}
				var out []string
				for _, c := range cs {
					out = append(out, c.Name[len(p):])
				}
				return out
			}
			check := func(got []string, want ...string) {
				t.Helper()
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("got %v, want %v", got, want)
				}
			}
			check(names(schema.CIQuery{Selector: "env=prod,role in (web,api),!deprecated"}), "web-1", "web-2")
			check(names(schema.CIQuery{Selector: "role!=web"}), "web-2", "db-1")
			check(names(schema.CIQuery{Selector: "deprecated"}), "db-1")
			check(names(schema.CIQuery{Type: "host", Attrs: map[string]string{"cpu_count": "4"}, Selector: "env notin (dev)"}), "web-2", "db-1")
			if _, _, err := s.CIs(ctx, schema.CIQuery{Selector: "env in (prod"}); fieldsOf(t, err)["selector"] == "" {
				t.Fatal("bad selector not named")
			}
			if _, _, err := s.CIs(ctx, schema.CIQuery{Type: "host", Attrs: map[string]string{"cpu_count": "many"}}); fieldsOf(t, err)["attr.cpu_count"] == "" {
				t.Fatal("bad attribute filter not named")
			}
			// Pagination.
			first, next, err := s.CIs(ctx, schema.CIQuery{Q: p, Limit: 3})
			if err != nil || len(first) != 3 || next == "" {
				t.Fatalf("page 1: %d %q %v", len(first), next, err)
			}
			rest, next2, err := s.CIs(ctx, schema.CIQuery{Q: p, Limit: 3, Cursor: next})
			if err != nil || len(rest) != 1 || next2 != "" {
				t.Fatalf("page 2: %d %q %v", len(rest), next2, err)
			}

			// Optimistic concurrency and history with field diffs.
			four, prod := json.RawMessage("8"), "staging"
			up, err := s.UpdateCI(ctx, web.ID, web.Version, schema.CIPatch{Attributes: map[string]json.RawMessage{"cpu_count": four}, Labels: map[string]*string{"env": &prod, "role": nil}}, schema.Change{Actor: "bob", RunID: "discover:1"})
			if err != nil || up.Version != 2 || up.Labels["env"] != "staging" || up.Labels["role"] != "" {
				t.Fatalf("update: %+v %v", up, err)
			}
			_, err = s.UpdateCI(ctx, web.ID, web.Version, schema.CIPatch{Attributes: map[string]json.RawMessage{"cpu_count": four}}, schema.Change{Actor: "carol"})
			var vm *schema.VersionMismatch
			if !errors.As(err, &vm) || vm.Current != 2 {
				t.Fatalf("stale update: %v", err)
			}
			same, err := s.UpdateCI(ctx, web.ID, 2, schema.CIPatch{Attributes: map[string]json.RawMessage{"cpu_count": four}}, schema.Change{Actor: "carol"})
			if err != nil || same.Version != 2 {
				t.Fatalf("no-op update changed the version: %+v %v", same, err)
			}
			hs, err := s.History(ctx, web.ID, 0, 10)
			if err != nil || len(hs) != 2 {
				t.Fatalf("history: %+v %v", hs, err)
			}
			h := hs[0]
			if h.Op != "update" || h.ChangedBy != "bob" || h.RunID != "discover:1" || h.Version != 2 {
				t.Fatalf("history entry: %+v", h)
			}
			if fmt.Sprint(h.Diff["attributes.cpu_count"].From) != "2" || fmt.Sprint(h.Diff["attributes.cpu_count"].To) != "8" ||
				h.Diff["labels.env"].From != "prod" || h.Diff["labels.env"].To != "staging" || h.Diff["labels.role"].From != "web" || h.Diff["labels.role"].To != nil {
				t.Fatalf("diff: %+v", h.Diff)
			}
		})
	}
}

func TestRelationsGraphImpactAndFeed(t *testing.T) {
	ctx := context.Background()
	for engine, s := range stores(t) {
		t.Run(string(engine), func(t *testing.T) {
			p := "g" + string(engine)[:2] + "-"
			before, err := s.Events(ctx, 0, 500)
			if err != nil {
				t.Fatal(err)
			}
			var cursor int64
			for _, e := range before {
				cursor = e.ID
			}
			host := mustCI(t, s, "host", p+"h1", nil, nil)
			db := mustCI(t, s, "database", p+"pg", nil, nil)
			svc := mustCI(t, s, "service", p+"api", nil, nil)
			app := mustCI(t, s, "application", p+"shop", nil, nil)
			peer := mustCI(t, s, "service", p+"peer", nil, nil)
			ch := schema.Change{Actor: "tester"}
			rel := func(typ string, a, b *schema.CI) *schema.Relation {
				r, err := s.CreateRelation(ctx, typ, a.ID, b.ID, ch)
				if err != nil {
					t.Fatalf("%s %s->%s: %v", typ, a.Name, b.Name, err)
				}
				return r
			}
			rel("runs_on", db, host)
			rel("runs_on", svc, host)
			rel("depends_on", svc, db)
			rel("depends_on", app, svc)
			rel("connects_to", peer, svc)
			rel("connects_to", svc, peer) // cycles are fine where the type allows them

			if _, err := s.CreateRelation(ctx, "depends_on", db.ID, app.ID, ch); fieldsOf(t, err)["target_id"] == "" {
				t.Fatalf("cycle accepted: %v", err)
			}
			if _, err := s.CreateRelation(ctx, "runs_on", svc.ID, host.ID, ch); fieldsOf(t, err)["target_id"] == "" {
				t.Fatalf("duplicate accepted: %v", err)
			}
			if _, err := s.CreateRelation(ctx, "teleports_to", svc.ID, host.ID, ch); fieldsOf(t, err)["type"] == "" {
				t.Fatalf("unknown type accepted: %v", err)
			}
			k8s := mustCI(t, s, "k8s_cluster", p+"k1", nil, nil)
			k8s2 := mustCI(t, s, "k8s_cluster", p+"k2", nil, nil)
			rel("deployed_to", app, k8s)
			if _, err := s.CreateRelation(ctx, "deployed_to", app.ID, k8s2.ID, ch); fieldsOf(t, err)["source_id"] == "" {
				t.Fatalf("many_to_one broken: %v", err)
			}

			imp, err := s.Impact(ctx, host.ID, 10)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]int{}
			for _, n := range imp {
				got[n.Name[len(p):]] = n.Depth
			}
			// peer only connects_to the service: traffic, not dependency.
			if fmt.Sprint(got) != "map[api:1 pg:1 shop:2]" {
				t.Fatalf("impact of host: %v", got)
			}
			g, err := s.Graph(ctx, svc.ID, schema.Down, 1)
			if err != nil || len(g.Nodes) != 4 || len(g.Edges) != 3 { // api, h1, pg, peer
				t.Fatalf("graph down 1: %+v %v", g, err)
			}
			g, err = s.Graph(ctx, host.ID, schema.Up, 3)
			if err != nil || len(g.Nodes) != 5 {
				t.Fatalf("graph up 3: %+v %v", g, err)
			}

			if err := s.DeleteCI(ctx, host.ID, false, ch); err == nil {
				t.Fatal("deleted a CI others depend on")
			}
			if err := s.DeleteCI(ctx, host.ID, true, ch); err != nil {
				t.Fatal(err)
			}
			if rs, _ := s.Relations(ctx, schema.RelationFilter{CIID: host.ID}); len(rs) != 0 {
				t.Fatalf("relations left after cascade: %v", rs)
			}
			hs, _ := s.History(ctx, host.ID, 0, 50)
			if len(hs) == 0 || hs[0].Op != "delete" {
				t.Fatalf("history after delete: %+v", hs)
			}

			// The feed lists everything in order from the cursor.
			evs, err := s.Events(ctx, cursor, 500)
			if err != nil {
				t.Fatal(err)
			}
			var ops []string
			last := cursor
			for _, e := range evs {
				if e.ID <= last {
					t.Fatalf("feed out of order at %d", e.ID)
				}
				last = e.ID
				ops = append(ops, e.Kind+"."+e.Op)
			}
			want := "[ci.create ci.create ci.create ci.create ci.create relation.create relation.create relation.create relation.create relation.create relation.create ci.create ci.create relation.create relation.delete relation.delete ci.delete]"
			if fmt.Sprint(ops) != want {
				t.Fatalf("feed ops %v", ops)
			}
			if n, err := s.PruneEvents(ctx, time.Hour, time.Now()); err != nil || n != 0 {
				t.Fatalf("prune removed fresh events: %d %v", n, err)
			}
		})
	}
}

// TestCIRefsNameDeletedCIs: history shows relations by name, also to a CI
// deleted since (named as its history last recorded it).
func TestCIRefsNameDeletedCIs(t *testing.T) {
	ctx := context.Background()
	for engine, s := range stores(t) {
		t.Run(string(engine), func(t *testing.T) {
			p := fmt.Sprintf("refs-%s-%d-", engine, time.Now().UnixNano())
			kept := mustCI(t, s, "host", p+"kept", nil, nil)
			gone := mustCI(t, s, "host", p+"gone", nil, nil)
			name := p + "renamed"
			if _, err := s.UpdateCI(ctx, gone.ID, gone.Version, schema.CIPatch{Name: &name}, schema.Change{Actor: "tester"}); err != nil {
				t.Fatal(err)
			}
			if err := s.DeleteCI(ctx, gone.ID, false, schema.Change{Actor: "tester"}); err != nil {
				t.Fatal(err)
			}
			refs, err := s.CIRefs(ctx, []int64{kept.ID, gone.ID, 1 << 40})
			if err != nil {
				t.Fatal(err)
			}
			if r := refs[kept.ID]; r.Name != p+"kept" || r.Type != "host" || r.Deleted {
				t.Errorf("kept: %+v", r)
			}
			if r := refs[gone.ID]; r.Name != name || !r.Deleted {
				t.Errorf("deleted: %+v", r)
			}
			if _, ok := refs[1<<40]; ok {
				t.Errorf("a CI that never was is named: %+v", refs[1<<40])
			}
		})
	}
}
