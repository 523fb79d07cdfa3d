package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opsflow/opsflow/schema"
)

type ciResp struct {
	ID         int64
	Type, Name string
	Attributes map[string]any
	Labels     map[string]string
	Version    int64
}

func (e *env) mkCI(typ, name string, attrs map[string]any, labels map[string]string) ciResp {
	e.t.Helper()
	res := e.do(http.MethodPost, "/api/v1/cmdb/cis", "operator", map[string]any{"type": typ, "name": name, "attributes": attrs, "labels": labels})
	if res.Status != http.StatusCreated {
		e.t.Fatalf("create %s/%s: %d %s", typ, name, res.Status, res.Body)
	}
	var c ciResp
	res.json(e.t, &c)
	return c
}

func TestCMDBThroughTheAPI(t *testing.T) {
	for _, engine := range []string{"postgres", "sqlite"} {
		t.Run(engine, func(t *testing.T) { testCMDBThroughTheAPI(t, newEnvWith(t, envOptions{sqlite: engine == "sqlite"})) })
	}
}

func testCMDBThroughTheAPI(t *testing.T, e *env) {
	p := uniq(t, "")
	typ := fmt.Sprintf("appliance_%d", time.Now().UnixNano())

	// Types: admins define them; others may not.
	def := map[string]any{"name": typ, "attributes": []map[string]any{
		{"name": "serial", "type": "string", "unique": true},
		{"name": "ports", "type": "int", "min": 1, "max": 96, "required": true},
	}}
	if res := e.do(http.MethodPost, "/api/v1/cmdb/types", "operator", def); res.Status != 403 {
		t.Fatalf("operator defined a type: %d", res.Status)
	}
	if res := e.do(http.MethodPost, "/api/v1/cmdb/types", "admin", def); res.Status != 201 {
		t.Fatalf("create type: %d %s", res.Status, res.Body)
	}
	bad := e.do(http.MethodPost, "/api/v1/cmdb/types", "admin", map[string]any{"name": "x", "attributes": []map[string]any{{"name": "a", "type": "varchar"}}})
	if bad.Status != 422 || bad.apiError(t).Fields["attributes[0].type"] == "" {
		t.Fatalf("bad type: %d %s", bad.Status, bad.Body)
	}

	sw := e.mkCI(typ, p+"sw1", map[string]any{"serial": "S1", "ports": 48}, map[string]string{"env": "prod", "rack": "r1"})
	e.mkCI(typ, p+"sw2", map[string]any{"serial": "S2", "ports": 24}, map[string]string{"env": "dev"})

	// Invalid CIs name the field; nothing is written.
	for _, c := range []struct {
		body  map[string]any
		code  int
		field string
	}{
		{map[string]any{"type": "nope", "name": p + "x"}, 422, "type"},
		{map[string]any{"type": typ, "name": p + "x", "attributes": map[string]any{"ports": "many"}}, 422, "attributes.ports"},
		{map[string]any{"type": typ, "name": p + "x", "attributes": map[string]any{"ports": 100}}, 422, "attributes.ports"},
		{map[string]any{"type": typ, "name": p + "x"}, 422, "attributes.ports"},
		{map[string]any{"type": typ, "name": p + "x", "attributes": map[string]any{"ports": 8, "serial": "S1"}}, 409, "attributes.serial"},
		{map[string]any{"type": typ, "name": p + "sw1", "attributes": map[string]any{"ports": 8}}, 409, "name"},
		{map[string]any{"type": typ, "name": p + "x", "labels": map[string]string{"-bad": "v"}, "attributes": map[string]any{"ports": 8}}, 422, "labels.-bad"},
	} {
		res := e.do(http.MethodPost, "/api/v1/cmdb/cis", "operator", c.body)
		if res.Status != c.code || res.apiError(t).Fields[c.field] == "" {
			t.Errorf("%v: %d %s, want %d naming %s", c.body, res.Status, res.Body, c.code, c.field)
		}
	}
	if res := e.do(http.MethodGet, "/api/v1/cmdb/cis?q="+url.QueryEscape(p+"x"), "viewer", nil); strings.Contains(string(res.Body), `"id"`) {
		t.Fatalf("a rejected CI was written: %s", res.Body)
	}

	// Search.
	list := func(query string) []string {
		res := e.do(http.MethodGet, "/api/v1/cmdb/cis?"+query, "viewer", nil)
		if res.Status != 200 {
			t.Fatalf("list %s: %d %s", query, res.Status, res.Body)
		}
		var page struct{ Items []ciResp }
		res.json(t, &page)
		var names []string
		for _, c := range page.Items {
			names = append(names, strings.TrimPrefix(c.Name, p))
		}
		return names
	}
	if got := list("type=" + typ + "&selector=" + url.QueryEscape("env in (prod),rack")); fmt.Sprint(got) != "[sw1]" {
		t.Fatalf("selector: %v", got)
	}
	if got := list("type=" + typ + "&attr.ports=24"); fmt.Sprint(got) != "[sw2]" {
		t.Fatalf("attr filter: %v", got)
	}
	for _, q := range []string{"selector=" + url.QueryEscape("env in (prod"), "type=nope", "type=" + typ + "&attr.ports=lots", "type=" + typ + "&attr.colour=red"} {
		if res := e.do(http.MethodGet, "/api/v1/cmdb/cis?"+q, "viewer", nil); res.Status != 422 || len(res.apiError(t).Fields) == 0 {
			t.Errorf("%s: %d %s", q, res.Status, res.Body)
		}
	}

	// PATCH with optimistic concurrency.
	path := "/api/v1/cmdb/cis/" + strconv.FormatInt(sw.ID, 10)
	patch := map[string]any{"attributes": map[string]any{"ports": 52}, "labels": map[string]any{"rack": nil}}
	if res := e.do(http.MethodPatch, path, "operator", patch); res.Status != http.StatusPreconditionRequired {
		t.Fatalf("patch without If-Match: %d", res.Status)
	}
	res := e.do(http.MethodPatch, path, "operator", patch, "If-Match", `"1"`)
	if res.Status != 200 || res.Header.Get("ETag") != `"2"` {
		t.Fatalf("patch: %d %s", res.Status, res.Body)
	}
	stale := e.do(http.MethodPatch, path, "operator", patch, "If-Match", "1")
	if stale.Status != 409 || stale.apiError(t).Code != CodeVersionConflict || !strings.Contains(string(stale.Body), `"current_version":2`) {
		t.Fatalf("stale patch: %d %s", stale.Status, stale.Body)
	}

	// Evolving the type: a new required attribute without a default is
	// refused with the CIs it would invalidate; with a default it applies.
	evolve := map[string]any{"attributes": []map[string]any{
		{"name": "serial", "type": "string", "unique": true},
		{"name": "ports", "type": "int", "min": 1, "max": 96, "required": true},
		{"name": "vendor", "type": "string", "required": true},
	}}
	refused := e.do(http.MethodPut, "/api/v1/cmdb/types/"+typ, "admin", evolve)
	if refused.Status != 409 || !strings.Contains(string(refused.Body), `"offending"`) || !strings.Contains(string(refused.Body), p+"sw2") {
		t.Fatalf("invalidating type change: %d %s", refused.Status, refused.Body)
	}
	evolve["attributes"].([]map[string]any)[2]["default"] = "acme"
	if ok := e.do(http.MethodPut, "/api/v1/cmdb/types/"+typ, "admin", evolve); ok.Status != 200 {
		t.Fatalf("compatible type change: %d %s", ok.Status, ok.Body)
	}
	// Admins may add relation types.
	if res := e.do(http.MethodPost, "/api/v1/cmdb/relation-types", "admin", map[string]any{"name": "backs_up_" + strconv.FormatInt(time.Now().UnixNano(), 36), "cardinality": "many_to_one"}); res.Status != 201 {
		t.Fatalf("relation type: %d %s", res.Status, res.Body)
	}
	if res := e.do(http.MethodPost, "/api/v1/cmdb/relation-types", "admin", map[string]any{"name": "x", "cardinality": "lots"}); res.Status != 422 || res.apiError(t).Fields["cardinality"] == "" {
		t.Fatalf("bad relation type: %d %s", res.Status, res.Body)
	}

	// Relations, graph, impact, delete protection.
	host := e.mkCI("host", p+"h1", nil, nil)
	rel := e.do(http.MethodPost, "/api/v1/cmdb/relations", "operator", map[string]any{"type": "member_of", "source_id": host.ID, "target_id": sw.ID})
	if rel.Status != 201 {
		t.Fatalf("relation: %d %s", rel.Status, rel.Body)
	}
	cyc := e.do(http.MethodPost, "/api/v1/cmdb/relations", "operator", map[string]any{"type": "member_of", "source_id": sw.ID, "target_id": host.ID})
	if cyc.Status != 422 || cyc.apiError(t).Fields["target_id"] == "" {
		t.Fatalf("cycle: %d %s", cyc.Status, cyc.Body)
	}
	var imp struct{ Items []schema.GraphNode }
	e.do(http.MethodGet, path+"/impact", "viewer", nil).json(t, &imp)
	if len(imp.Items) != 1 || imp.Items[0].ID != host.ID {
		t.Fatalf("impact: %+v", imp)
	}
	var g schema.Graph
	e.do(http.MethodGet, path+"/graph?direction=up&depth=2", "viewer", nil).json(t, &g)
	if len(g.Nodes) != 2 || len(g.Edges) != 1 {
		t.Fatalf("graph: %+v", g)
	}
	if res := e.do(http.MethodGet, path+"/graph?direction=sideways", "viewer", nil); res.Status != 422 {
		t.Fatalf("bad direction: %d", res.Status)
	}
	if res := e.do(http.MethodDelete, path, "operator", nil); res.Status != 409 || res.apiError(t).Fields["cascade"] == "" {
		t.Fatalf("delete with dependents: %d %s", res.Status, res.Body)
	}

	// History names who changed what; the audit log has every change.
	var hist struct{ Items []schema.CIHistory }
	e.do(http.MethodGet, path+"/history", "viewer", nil).json(t, &hist)
	if len(hist.Items) != 3 || hist.Items[1].Op != "update" || hist.Items[1].ChangedBy != e.users["operator"].Username ||
		fmt.Sprint(hist.Items[1].Diff["attributes.ports"].To) != "52" || hist.Items[1].Diff["labels.rack"].From != "r1" {
		t.Fatalf("history: %+v", hist.Items)
	}
	if res := e.do(http.MethodDelete, path+"?cascade=true", "operator", nil); res.Status != 204 {
		t.Fatalf("cascade delete: %d %s", res.Status, res.Body)
	}
	es, err := e.store.Audit(context.Background(), schema.AuditFilter{Actor: e.users["operator"].Username, Action: "cmdb.*", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, a := range es {
		if a.Status < 300 {
			counts[a.Action]++
		}
	}
	if counts["cmdb.ci.create"] != 3 || counts["cmdb.ci.update"] != 1 || counts["cmdb.relation.create"] != 1 || counts["cmdb.ci.delete"] != 1 {
		t.Fatalf("audit counts %v", counts)
	}
}
