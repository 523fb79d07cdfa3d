package api

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/opsflow/opsflow/schema"
)

// TestSelectorsAreBounded: selectors and filters with thousands of terms
// are refused with 422 naming the field, on SQLite (whose limits gave
// 500s) as on Postgres: CI lists and exports, job targets and approval
// policy matches.
func TestSelectorsAreBounded(t *testing.T) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			e := newEnvWith(t, envOptions{sqlite: db == "sqlite", noWorkers: true})
			var reqs, vals []string
			for i := range 3000 {
				reqs = append(reqs, fmt.Sprintf("k%d=v", i))
				vals = append(vals, fmt.Sprintf("v%d", i))
			}
			many := strings.Join(reqs, ",")
			bigSet := "env in (" + strings.Join(vals, ",") + ")"
			sets := make([]string, 10)
			for i := range sets {
				sets[i] = fmt.Sprintf("k%d in (%s)", i, strings.Join(vals[:200], ","))
			}
			manySets := strings.Join(sets, ",")
			for _, sel := range []string{many, bigSet, manySets} {
				for _, path := range []string{"/api/v1/cmdb/cis?selector=", "/api/v1/cmdb/export?type=host&selector="} {
					r := e.do(http.MethodGet, path+url.QueryEscape(sel), "viewer", nil)
					if r.Status != 422 || r.apiError(t).Fields["selector"] == "" {
						t.Errorf("GET %s(%d bytes): %d %.300s", path, len(sel), r.Status, r.Body)
					}
				}
				r := e.do(http.MethodPost, "/api/v1/jobs", "operator", map[string]any{"script_id": 1, "targets": map[string]any{"selector": sel}})
				if r.Status != 422 || r.apiError(t).Fields["targets.selector"] == "" {
					t.Errorf("job targets (%d bytes): %d %.300s", len(sel), r.Status, r.Body)
				}
				r = e.do(http.MethodPost, "/api/v1/approval-policies", "admin", map[string]any{"name": uniq(t, "p"),
					"spec": map[string]any{"levels": []map[string]any{{"users": []string{e.users["approver"].Username}, "rule": "any"}}, "match": map[string]any{"targets": sel}}})
				if r.Status != 422 || r.apiError(t).Fields["spec.match.targets"] == "" {
					t.Errorf("policy match (%d bytes): %d %.300s", len(sel), r.Status, r.Body)
				}
			}
			// Thousands of attribute filters and an 80k name search.
			q := url.Values{"type": {"host"}}
			for i := range 2000 {
				q.Set(fmt.Sprintf("attr.a%d", i), "1")
			}
			if r := e.do(http.MethodGet, "/api/v1/cmdb/cis?"+q.Encode(), "viewer", nil); r.Status != 422 || r.apiError(t).Fields["attr"] == "" {
				t.Errorf("attribute filters: %d %.300s", r.Status, r.Body)
			}
			if r := e.do(http.MethodGet, "/api/v1/cmdb/cis?q="+strings.Repeat("%25_", 30000), "viewer", nil); r.Status != 422 || r.apiError(t).Fields["q"] == "" {
				t.Errorf("long q: %d %.300s", r.Status, r.Body)
			}
			// A selector at the bounds still works.
			ok := strings.Join(reqs[:64], ",")
			if r := e.do(http.MethodGet, "/api/v1/cmdb/cis?selector="+url.QueryEscape(ok), "viewer", nil); r.Status != 200 {
				t.Errorf("64 requirements: %d %.300s", r.Status, r.Body)
			}
			if r := e.do(http.MethodGet, "/api/v1/cmdb/cis?selector="+url.QueryEscape("env in ("+strings.Join(vals[:256], ",")+")"), "viewer", nil); r.Status != 200 {
				t.Errorf("256 values: %d %.300s", r.Status, r.Body)
			}
		})
	}
}

// TestUnicodeNames: a team names its CIs, scripts, policies and groups in
// Chinese; the names survive create, selector query, search and an
// export/import round trip. Control and separator characters are still
// refused.
func TestUnicodeNames(t *testing.T) {
	e := newEnvWith(t, envOptions{sqlite: true, noWorkers: true})
	sfx := fmt.Sprintf("%d", time.Now().UnixNano()%1_000_000)
	name := "订单-api-01-" + sfx
	r := e.do(http.MethodPost, "/api/v1/cmdb/cis", "operator", map[string]any{"type": "host", "name": name, "labels": map[string]string{"app": "order" + sfx},
		"attributes": map[string]any{"address": "10.1.2.3"}})
	if r.Status != 201 {
		t.Fatalf("create %s: %d %s", name, r.Status, r.Body)
	}
	var list struct{ Items []struct{ Name string } }
	e.do(http.MethodGet, "/api/v1/cmdb/cis?selector="+url.QueryEscape("app=order"+sfx), "viewer", nil).json(t, &list)
	if len(list.Items) != 1 || list.Items[0].Name != name {
		t.Fatalf("selector: %+v", list)
	}
	e.do(http.MethodGet, "/api/v1/cmdb/cis?q="+url.QueryEscape("订单-api"), "viewer", nil).json(t, &list)
	if len(list.Items) == 0 || list.Items[0].Name != name {
		t.Fatalf("search: %+v", list)
	}
	for _, format := range []string{"csv", "json"} {
		exp := e.do(http.MethodGet, "/api/v1/cmdb/export?type=host&format="+format+"&selector="+url.QueryEscape("app=order"+sfx), "viewer", nil)
		if exp.Status != 200 || !strings.Contains(string(exp.Body), name) {
			t.Fatalf("export %s: %d %s", format, exp.Status, exp.Body)
		}
		ct := map[string]string{"csv": "text/csv", "json": "application/json"}[format]
		imp := e.do(http.MethodPost, "/api/v1/cmdb/import?type=host", "operator", string(exp.Body), "Content-Type", ct)
		var rep struct{ Created, Updated, Unchanged int }
		imp.json(t, &rep)
		if imp.Status != 200 || rep.Unchanged == 0 || rep.Created != 0 || rep.Updated != 0 {
			t.Fatalf("re-import %s: %d %s", format, imp.Status, imp.Body)
		}
		// Imported under a new Chinese name, it is created.
		body := strings.ReplaceAll(string(exp.Body), name, "支付-db-"+format+"-"+sfx)
		imp = e.do(http.MethodPost, "/api/v1/cmdb/import?type=host", "operator", body, "Content-Type", ct)
		imp.json(t, &rep)
		if imp.Status != 200 || rep.Created != 1 {
			t.Fatalf("import new %s: %d %s", format, imp.Status, imp.Body)
		}
	}
	if r := e.do(http.MethodPost, "/api/v1/scripts", "operator", map[string]any{"name": "巡检-" + sfx, "content": "uptime"}); r.Status != 201 {
		t.Fatalf("script: %d %s", r.Status, r.Body)
	}
	if r := e.do(http.MethodPut, "/api/v1/groups/"+url.PathEscape("运维组-"+sfx), "admin", map[string]any{"members": []string{e.users["approver"].Username}}); r.Status != 200 {
		t.Fatalf("group: %d %s", r.Status, r.Body)
	}
	for _, bad := range []string{"订单 api", "订单\u3000api", "订单\u200bapi", "a\tb", "-x", "订单\u2028x"} {
		r := e.do(http.MethodPost, "/api/v1/cmdb/cis", "operator", map[string]any{"type": "host", "name": bad + sfx})
		if r.Status != 422 || r.apiError(t).Fields["name"] == "" {
			t.Errorf("CI name %q: %d %s", bad, r.Status, r.Body)
		}
	}
}

// TestTicketShowsJobParameters: approvers see what a gated job would run
// with: its non-secret parameter values on the ticket, a secret one as
// "(secret)", never its value.
func TestTicketShowsJobParameters(t *testing.T) {
	e := newEnv(t)
	p := fmt.Sprintf("params%d", time.Now().UnixNano())
	if r := e.do(http.MethodPost, "/api/v1/risk-rules", "admin", map[string]any{"pattern": "opsflow-gated-" + p, "action": "approval", "description": "test gate"}); r.Status != 201 {
		t.Fatalf("risk rule: %d %s", r.Status, r.Body)
	}
	sid := e.script(p, `echo "opsflow-gated-`+p+`" "$DIR" "$TOKEN"`, []map[string]any{
		{"name": "DIR", "type": "string"}, {"name": "DAYS", "type": "int", "default": 7}, {"name": "TOKEN", "type": "secret"}})
	if r := e.do(http.MethodPost, "/api/v1/approval-policies", "admin", map[string]any{"name": p, "spec": map[string]any{
		"match":  map[string]any{"script_risk": "approval"},
		"levels": []map[string]any{{"users": []string{e.users["approver"].Username}, "rule": "any"}}}}); r.Status != 201 {
		t.Fatalf("policy: %d %s", r.Status, r.Body)
	}
	const secretValue = "hunter2-never-shown"
	r := e.do(http.MethodPost, "/api/v1/jobs", "admin", map[string]any{"script_id": sid,
		"params":  map[string]any{"DIR": "/var/log/订单 `x`", "TOKEN": secretValue},
		"targets": map[string]any{"hosts": []string{"gw-1"}, "transport": "local"}})
	if r.Status != 201 {
		t.Fatalf("job: %d %s", r.Status, r.Body)
	}
	var tk schema.Ticket
	eventually(t, 30*time.Second, "the job's ticket", func() bool {
		var l struct{ Items []schema.Ticket }
		e.do(http.MethodGet, "/api/v1/approvals?mine=to_decide", "approver", nil).json(t, &l)
		for _, x := range l.Items {
			if strings.Contains(x.Title, p) {
				tk = x
				return true
			}
		}
		return false
	})
	full := e.do(http.MethodGet, fmt.Sprintf("/api/v1/approvals/%d", tk.ID), "approver", nil)
	page := e.do(http.MethodGet, fmt.Sprintf("/approvals/%d", tk.ID), "approver", nil)
	for what, body := range map[string]string{"API": string(full.Body), "page": string(page.Body)} {
		if strings.Contains(body, secretValue) {
			t.Fatalf("%s shows the secret: %s", what, body)
		}
		for _, want := range []string{"DIR", "订单", "DAYS", "7", "TOKEN", "(secret)"} {
			if !strings.Contains(body, want) {
				t.Errorf("%s lacks %q: %.2000s", what, want, body)
			}
		}
	}
	if r := e.do(http.MethodPost, fmt.Sprintf("/api/v1/approvals/%d/decision", tk.ID), "approver", map[string]any{"decision": "reject"}); r.Status != 200 {
		t.Fatalf("reject: %d %s", r.Status, r.Body)
	}
}
