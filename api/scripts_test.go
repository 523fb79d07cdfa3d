package api

import (
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"
)

func TestScriptLibraryAPI(t *testing.T) {
	e := newEnv(t)
	name := fmt.Sprintf("rotate-logs-%d", time.Now().UnixNano())
	res := e.do(http.MethodPost, "/api/v1/scripts", "operator", map[string]any{
		"name": name, "content": "find $DIR -name '*.log' -mtime +$DAYS -delete", "tags": []string{"logs"},
		"parameters": []map[string]any{{"name": "DIR", "type": "string", "required": true}, {"name": "DAYS", "type": "int", "default": 7, "min": 1}},
	})
	if res.Status != 201 {
		t.Fatalf("create: %d %s", res.Status, res.Body)
	}
	var sc struct {
		ID     int64
		Latest struct {
			Version int64
			Risk    string
		}
	}
	res.json(t, &sc)
	base := "/api/v1/scripts/" + strconv.FormatInt(sc.ID, 10)
	v2 := e.do(http.MethodPost, base+"/versions", "operator", map[string]any{"content": "shutdown -r now", "comment": "oops"})
	var v struct {
		Version     int64
		Risk        string
		RiskMatches []string `json:"risk_matches"`
	}
	v2.json(t, &v)
	if v2.Status != 201 || v.Version != 2 || v.Risk != "approval" || len(v.RiskMatches) != 1 {
		t.Fatalf("v2: %d %s", v2.Status, v2.Body)
	}
	// An admin's rule applies to new versions.
	if r := e.do(http.MethodPost, "/api/v1/risk-rules", "admin", map[string]string{"pattern": `\biptables\s+-F\b`, "action": "block", "description": "flushes the firewall"}); r.Status != 201 {
		t.Fatalf("rule: %d %s", r.Status, r.Body)
	}
	e.do(http.MethodPost, base+"/versions", "operator", map[string]any{"content": "iptables -F"}).json(t, &v)
	if v.Risk != "blocked" {
		t.Fatalf("custom rule not applied: %+v", v)
	}
	// Quoting and long options do not hide a blocked command.
	for _, content := range []string{`rm --recursive --force /`, `rm -rf "/"`, `rm -r -f '/'`} {
		var q struct{ Risk string }
		if r := e.do(http.MethodPost, base+"/versions", "operator", map[string]any{"content": content}); r.Status != 201 {
			t.Fatalf("%s: %d %s", content, r.Status, r.Body)
		} else if r.json(t, &q); q.Risk != "blocked" {
			t.Fatalf("%s: risk %q, want blocked", content, q.Risk)
		}
	}
	if r := e.do(http.MethodPost, "/api/v1/risk-rules", "admin", map[string]string{"pattern": "([", "action": "block"}); r.Status != 422 || r.apiError(t).Fields["pattern"] == "" {
		t.Fatalf("bad rule: %d %s", r.Status, r.Body)
	}
	e.do(http.MethodGet, base, "viewer", nil).json(t, &sc)
	if sc.Latest.Version != 6 {
		t.Fatalf("latest: %+v", sc)
	}
	e.do(http.MethodGet, base+"/versions/1", "viewer", nil).json(t, &v)
	if v.Version != 1 || v.Risk != "none" {
		t.Fatalf("v1: %+v", v)
	}
	if r := e.do(http.MethodGet, base+"/versions/9", "viewer", nil); r.Status != 404 {
		t.Fatalf("missing version: %d", r.Status)
	}
	bad := e.do(http.MethodPost, "/api/v1/scripts", "operator", map[string]any{"name": name + "x", "content": "true", "parameters": []map[string]any{{"name": "N", "type": "int", "default": "seven"}}})
	if bad.Status != 422 || bad.apiError(t).Fields["parameters[0].default"] == "" {
		t.Fatalf("bad default: %d %s", bad.Status, bad.Body)
	}
	if r := e.do(http.MethodPost, "/api/v1/scripts", "viewer", map[string]any{}); r.Status != 403 {
		t.Fatalf("viewer: %d", r.Status)
	}
}
