package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opsflow/opsflow/internal/runbook"
	"github.com/opsflow/opsflow/schema"
)

// rbDoc is a small valid runbook called name; extra is appended to its
// one step's message, so two extras make two different sources.
func rbDoc(name, extra string) string {
	return "apiVersion: opsflow/v1\nkind: Runbook\nmetadata:\n  name: " + name + "\n  description: test runbook\n  labels: {team: ops}\n" +
		"inputs:\n  - {name: env, type: enum, values: [staging, prod], default: staging}\n" +
		"steps:\n  - id: hello\n    kind: notify\n    with: {channel: web, message: \"hello ${{ inputs.env }} " + extra + "\"}\n"
}

var yamlBody = []string{"Content-Type", "application/yaml"}

// rbErrors decodes the details.errors of a runbook 422.
func rbErrors(t *testing.T, res resp) (Error, runbook.Errors) {
	t.Helper()
	if res.Status != http.StatusUnprocessableEntity {
		t.Fatalf("status %d, want 422: %s", res.Status, res.Body)
	}
	ae := res.apiError(t)
	var body struct {
		Error struct {
			Details struct {
				Errors runbook.Errors `json:"errors"`
			} `json:"details"`
		} `json:"error"`
	}
	res.json(t, &body)
	if ae.Code != CodeValidation || len(body.Error.Details.Errors) == 0 {
		t.Fatalf("no errors listed: %s", res.Body)
	}
	return ae, body.Error.Details.Errors
}

func TestRunbookLifecycle(t *testing.T) {
	for _, engine := range []string{"postgres", "sqlite"} {
		t.Run(engine, func(t *testing.T) {
			e := newEnvWith(t, envOptions{noWorkers: true, sqlite: engine == "sqlite"})
			ctx := context.Background()
			name := uniq(t, "rb")
			path := "/api/v1/runbooks/" + url.PathEscape(name)
			src1 := rbDoc(name, "v1")

			// Create from a raw YAML body; the comment rides in the query.
			res := e.do(http.MethodPost, "/api/v1/runbooks?comment=first", "operator", src1, yamlBody...)
			if res.Status != http.StatusCreated {
				t.Fatalf("create: %d %s", res.Status, res.Body)
			}
			var created struct {
				schema.Runbook
				Latest schema.RunbookVersion `json:"latest"`
			}
			res.json(t, &created)
			if created.Name != name || created.Description != "test runbook" || created.Labels["team"] != "ops" || created.LatestVersion != 1 ||
				created.Latest.Version != 1 || created.Latest.Source != src1 || created.Latest.Comment != "first" ||
				created.Latest.SHA256 != schema.SourceSHA256(src1) || created.CreatedBy != e.users["operator"].Username {
				t.Fatalf("created: %s", res.Body)
			}
			if res := e.do(http.MethodPost, "/api/v1/runbooks", "operator", map[string]string{"source": src1}); res.Status != http.StatusConflict {
				t.Fatalf("same name again: %d %s", res.Status, res.Body)
			}

			// Pushing the same source is idempotent: 200 with version 1.
			res = e.do(http.MethodPost, path+"/versions", "operator", map[string]string{"source": src1, "comment": "again"})
			var v schema.RunbookVersion
			res.json(t, &v)
			if res.Status != http.StatusOK || v.Version != 1 || v.Comment != "first" {
				t.Fatalf("identical push: %d %s", res.Status, res.Body)
			}
			// A changed source (as JSON) is version 2.
			src2 := rbDoc(name, "v2")
			res = e.do(http.MethodPost, path+"/versions", "operator", map[string]string{"source": src2, "comment": "second"})
			res.json(t, &v)
			if res.Status != http.StatusCreated || v.Version != 2 || v.Source != src2 || v.Comment != "second" {
				t.Fatalf("v2: %d %s", res.Status, res.Body)
			}
			// A version must carry the runbook's name.
			other := rbDoc(name+"-other", "v3")
			_, errs := rbErrors(t, e.do(http.MethodPost, path+"/versions", "operator", other, yamlBody...))
			if len(errs) != 1 || errs[0].Path != "metadata.name" || errs[0].Line != 4 || errs[0].Column != 9 {
				t.Fatalf("renamed version: %+v", errs)
			}

			// Reads, as a viewer.
			var got struct {
				schema.Runbook
				Latest schema.RunbookVersion `json:"latest"`
			}
			res = e.do(http.MethodGet, path, "viewer", nil)
			res.json(t, &got)
			if res.Status != 200 || got.LatestVersion != 2 || got.Latest.Source != src2 {
				t.Fatalf("get: %d %s", res.Status, res.Body)
			}
			var vs struct{ Items []schema.RunbookVersion }
			res = e.do(http.MethodGet, path+"/versions", "viewer", nil)
			res.json(t, &vs)
			if len(vs.Items) != 2 || vs.Items[0].Version != 2 || vs.Items[1].Version != 1 || vs.Items[0].Source != "" {
				t.Fatalf("versions: %s", res.Body)
			}
			res = e.do(http.MethodGet, path+"/versions/1", "viewer", nil)
			res.json(t, &v)
			if res.Status != 200 || v.Source != src1 {
				t.Fatalf("version 1: %d %s", res.Status, res.Body)
			}
			if res := e.do(http.MethodGet, path+"/versions/3", "viewer", nil); res.Status != 404 {
				t.Fatalf("version 3: %d", res.Status)
			}
			if res := e.do(http.MethodGet, path+"/versions/x", "viewer", nil); res.Status != 400 {
				t.Fatalf("version x: %d", res.Status)
			}
			var page struct {
				Items []schema.Runbook
				Total int
			}
			res = e.do(http.MethodGet, "/api/v1/runbooks?q="+url.QueryEscape(name), "viewer", nil)
			res.json(t, &page)
			if page.Total != 1 || len(page.Items) != 1 || page.Items[0].Name != name {
				t.Fatalf("list: %s", res.Body)
			}

			// Roles: viewers read only, anonymous nothing; nothing changes.
			for _, c := range []struct{ method, path, role string }{
				{http.MethodPost, "/api/v1/runbooks", "viewer"},
				{http.MethodPost, path + "/versions", "viewer"},
				{http.MethodDelete, path, "viewer"},
				{http.MethodDelete, path, "approver"},
			} {
				if res := e.do(c.method, c.path, c.role, map[string]string{"source": rbDoc(name, "v9")}); res.Status != http.StatusForbidden {
					t.Errorf("%s %s as %s: %d", c.method, c.path, c.role, res.Status)
				}
			}
			for _, c := range []struct{ method, path string }{
				{http.MethodGet, "/api/v1/runbooks"}, {http.MethodGet, path}, {http.MethodPost, "/api/v1/runbooks"},
				{http.MethodPost, path + "/versions"}, {http.MethodDelete, path}, {http.MethodGet, "/api/v1/runbooks/schema.json"},
				{http.MethodPost, "/api/v1/runbooks/validate"},
			} {
				if res := e.do(c.method, c.path, "", map[string]string{"source": rbDoc(name, "v9")}); res.Status != http.StatusUnauthorized {
					t.Errorf("%s %s anonymous: %d", c.method, c.path, res.Status)
				}
			}
			rb, err := e.store.Runbook(ctx, name)
			if err != nil || rb.LatestVersion != 2 {
				t.Fatalf("after refused writes: %+v %v", rb, err)
			}

			// Delete: gone from reads and lists, versions kept.
			if res := e.do(http.MethodDelete, path, "operator", nil); res.Status != http.StatusNoContent {
				t.Fatalf("delete: %d %s", res.Status, res.Body)
			}
			if res := e.do(http.MethodGet, path, "viewer", nil); res.Status != 404 {
				t.Fatalf("get deleted: %d", res.Status)
			}
			if res := e.do(http.MethodDelete, path, "operator", nil); res.Status != 404 {
				t.Fatalf("delete again: %d", res.Status)
			}
			res = e.do(http.MethodGet, "/api/v1/runbooks?q="+url.QueryEscape(name), "viewer", nil)
			res.json(t, &page)
			if page.Total != 0 {
				t.Fatalf("list after delete: %s", res.Body)
			}
			if old, err := e.store.RunbookVersion(ctx, rb.ID, 2); err != nil || old.Source != src2 {
				t.Fatalf("deleted runbook's version: %v", err)
			}

			// Every write is in the audit log, with the version it made.
			want := map[string]string{"runbook.create": "version 1 sha256 " + schema.SourceSHA256(src1),
				"runbook.version.create": "version 2 sha256 " + schema.SourceSHA256(src2), "runbook.delete": ""}
			var es []schema.AuditEntry
			eventually(t, 10*time.Second, "the runbook's writes in the audit log", func() bool {
				var err error
				if es, err = e.store.Audit(ctx, schema.AuditFilter{Action: "runbook.*", Target: "runbook:" + name, Limit: 100}); err != nil {
					t.Fatal(err)
				}
				seen := map[string]bool{}
				for _, a := range es {
					if a.Status < 300 && a.Detail == want[a.Action] && a.Actor == e.users["operator"].Username {
						seen[a.Action] = true
					}
				}
				return len(seen) == len(want)
			})
			if n := countAudit(t, e, "runbook.validate"); n != 0 {
				t.Errorf("%d validations audited", n)
			}
		})
	}
}

func countAudit(t *testing.T, e *env, action string) int {
	t.Helper()
	es, err := e.store.Audit(context.Background(), schema.AuditFilter{Action: action, Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

// TestRunbookBadDocumentsStoreNothing sends bad documents to create, to
// a new version and to validate: each is a 422 listing every error at the
// line and column the parser names, and nothing is stored.
func TestRunbookBadDocumentsStoreNothing(t *testing.T) {
	e := newEnvWith(t, envOptions{noWorkers: true})
	ctx := context.Background()
	existing := uniq(t, "exists")
	if res := e.do(http.MethodPost, "/api/v1/runbooks", "operator", map[string]string{"source": rbDoc(existing, "")}); res.Status != 201 {
		t.Fatalf("create: %d %s", res.Status, res.Body)
	}
	head := func(name string) string {
		return "apiVersion: opsflow/v1\nkind: Runbook\nmetadata: {name: " + name + "}\n"
	}
	cases := []struct {
		name string
		body func(name string) string
		want []runbook.Error // line, column and path; the reason is checked to contain Reason
	}{
		{"invalid YAML", func(n string) string { return head(n) + "steps:\n  - id: a\n    kind: wait\n    with: {duration: 1s\n" },
			[]runbook.Error{{Line: 7, Column: 5, Path: "", Reason: "invalid YAML"}}},
		{"unknown kind", func(n string) string { return head(n) + "steps:\n  - id: a\n    kind: kubernetes.drain\n" },
			[]runbook.Error{{Line: 6, Column: 11, Path: "steps[0].kind", Reason: `unknown step kind "kubernetes.drain"`}}},
		{"duplicate ids", func(n string) string {
			return head(n) + "steps:\n  - {id: a, kind: fail, with: {message: m}}\n  - {id: a, kind: fail, with: {message: m}}\n"
		}, []runbook.Error{{Line: 6, Column: 10, Path: "steps[1].id", Reason: `duplicate step id "a" (first at line 5)`}}},
		{"bad CEL", func(n string) string {
			return head(n) + "inputs:\n  - {name: n, type: int}\nsteps:\n  - id: a\n    kind: fail\n    when: inputs.n +\n    with: {message: \"${{ inputs.n == 'x' }}\"}\n"
		}, []runbook.Error{
			{Line: 9, Column: 21, Path: "steps[0].when", Reason: "expression does not compile"},
			{Line: 10, Column: 35, Path: "steps[0].with.message", Reason: "expression does not type-check"}}},
		{"wrong input default types", func(n string) string {
			return head(n) + "inputs:\n  - {name: n, type: int, default: ten}\n  - {name: b, type: bool, default: 1}\nsteps: [{id: a, kind: fail, with: {message: m}}]\n"
		}, []runbook.Error{
			{Line: 5, Column: 35, Path: "inputs[0].default", Reason: "default must be an integer"},
			{Line: 6, Column: 36, Path: "inputs[1].default", Reason: "default must be true or false"}}},
		{"reserved name", func(string) string { return rbDoc("validate", "") },
			[]runbook.Error{{Line: 4, Column: 9, Path: "metadata.name", Reason: "reserved"}}},
	}
	audited := countAudit(t, e, "runbook.validate")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			name := uniq(t, "bad")
			check := func(what string, res resp, src string) {
				t.Helper()
				ae, errs := rbErrors(t, res)
				if len(errs) != len(c.want) {
					t.Fatalf("%s: %d errors, want %d: %s", what, len(errs), len(c.want), res.Body)
				}
				for i, w := range c.want {
					g := errs[i]
					if g.Line != w.Line || g.Column != w.Column || g.Path != w.Path || !strings.Contains(g.Reason, w.Reason) {
						t.Errorf("%s: error %d is %d:%d %s: %s, want %d:%d %s: …%s…", what, i, g.Line, g.Column, g.Path, g.Reason, w.Line, w.Column, w.Path, w.Reason)
					}
					field := w.Path
					if field == "" {
						field = "source"
					}
					if ae.Fields[field] == "" {
						t.Errorf("%s: fields %v do not name %s", what, ae.Fields, field)
					}
				}
				// The API answers what the parser says, no more, no less.
				if _, perr := runbook.Parse([]byte(src)); c.name != "reserved name" {
					var pe runbook.Errors
					if !errors.As(perr, &pe) || len(pe) != len(errs) {
						t.Errorf("%s: parser says %v", what, perr)
					}
				}
			}
			src := c.body(name)
			check("create (YAML)", e.do(http.MethodPost, "/api/v1/runbooks", "operator", src, yamlBody...), src)
			check("create (JSON)", e.do(http.MethodPost, "/api/v1/runbooks", "operator", map[string]string{"source": src}), src)
			check("validate", e.do(http.MethodPost, "/api/v1/runbooks/validate", "viewer", src, "Content-Type", "text/yaml"), src)
			if _, err := e.store.Runbook(ctx, name); !errors.Is(err, schema.ErrNotFound) {
				t.Fatalf("a bad document was stored: %v", err)
			}
			if c.name != "reserved name" {
				src = c.body(existing)
				check("new version", e.do(http.MethodPost, "/api/v1/runbooks/"+existing+"/versions", "operator", src, yamlBody...), src)
			}
			if rb, err := e.store.Runbook(ctx, existing); err != nil || rb.LatestVersion != 1 {
				t.Fatalf("a bad version was stored: %+v %v", rb, err)
			}
		})
	}
	if n := countAudit(t, e, "runbook.validate"); n != audited {
		t.Errorf("validations audited: %d -> %d", audited, n)
	}
}

// TestRunbookBodies covers what reaches the parser: media types, the
// JSON envelope's fields, and text no document holds.
func TestRunbookBodies(t *testing.T) {
	e := newEnvWith(t, envOptions{noWorkers: true})
	name := uniq(t, "body")
	cases := []struct {
		name   string
		body   string
		hdr    []string
		status int
		field  string
	}{
		{"plain text", rbDoc(name, ""), []string{"Content-Type", "text/plain"}, 415, ""},
		{"empty YAML", "\n", yamlBody, 400, ""},
		{"NUL in YAML", "apiVersion: opsflow/v1\nkind: Run\x00book\n", yamlBody, 422, "body"},
		{"invalid UTF-8 in YAML", "apiVersion: opsflow/v1\nkind: \xff\n", yamlBody, 422, "body"},
		{"no source", `{"comment":"x"}`, nil, 422, "source"},
		{"unknown field", `{"source":"x","name":"y"}`, nil, 422, "name"},
		{"source not a string", `{"source":{"apiVersion":"opsflow/v1"}}`, nil, 422, "source"},
		{"control character in source", `{"source":"apiVersion: opsflow/v1\u0007"}`, nil, 422, "source"},
		{"long comment", `{"source":"x","comment":"` + strings.Repeat("c", maxComment+1) + `"}`, nil, 422, "comment"},
	}
	for _, c := range cases {
		for _, path := range []string{"/api/v1/runbooks", "/api/v1/runbooks/validate"} {
			res := e.do(http.MethodPost, path, "operator", c.body, c.hdr...)
			if res.Status != c.status {
				t.Errorf("%s to %s: %d, want %d: %s", c.name, path, res.Status, c.status, res.Body)
				continue
			}
			if ae := res.apiError(t); c.field != "" && ae.Fields[c.field] == "" {
				t.Errorf("%s: fields %v do not name %s", c.name, ae.Fields, c.field)
			}
		}
	}
	if ae := e.do(http.MethodPost, "/api/v1/runbooks", "operator", "a: 1\n\x00", yamlBody...).apiError(t); ae.Fields["body"] != "line 2, column 1: must not contain NUL characters" {
		t.Errorf("NUL not placed: %v", ae.Fields)
	}
	if _, err := e.store.Runbook(context.Background(), name); !errors.Is(err, schema.ErrNotFound) {
		t.Fatalf("stored: %v", err)
	}

	// The shipped runbooks go in as they are, YAML with a charset, or as
	// JSON text in the envelope.
	files, _ := filepath.Glob("../deploy/runbooks/*.yaml")
	if len(files) == 0 {
		t.Fatal("no shipped runbooks")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		orig, _, ok := runbook.MetadataName(b)
		if !ok {
			t.Fatalf("%s: no name", f)
		}
		src := strings.Replace(string(b), "name: "+orig, "name: "+uniq(t, orig), 1)
		if res := e.do(http.MethodPost, "/api/v1/runbooks", "operator", src, "Content-Type", "application/yaml; charset=utf-8"); res.Status != 201 {
			t.Errorf("%s: %d %s", f, res.Status, res.Body)
		}
	}
	jsonDoc := `{"apiVersion": "opsflow/v1", "kind": "Runbook", "metadata": {"name": "` + name + `-json"},
  "steps": [{"id": "w", "kind": "wait", "with": {"duration": "1s"}}]}`
	if res := e.do(http.MethodPost, "/api/v1/runbooks", "operator", map[string]string{"source": jsonDoc}); res.Status != 201 {
		t.Errorf("JSON document: %d %s", res.Status, res.Body)
	}
	res := e.do(http.MethodPost, "/api/v1/runbooks/validate", "operator", map[string]string{"source": jsonDoc[:len(jsonDoc)-2]})
	_, errs := rbErrors(t, res)
	if errs[0].Line != 2 || errs[0].Path != "" || !strings.Contains(errs[0].Reason, "invalid JSON") {
		t.Errorf("truncated JSON document: %+v", errs)
	}
}

func TestRunbookValidateAndSchema(t *testing.T) {
	e := newEnvWith(t, envOptions{noWorkers: true})
	name := uniq(t, "v")
	src := rbDoc(name, "")
	res := e.do(http.MethodPost, "/api/v1/runbooks/validate", "viewer", map[string]string{"source": src})
	var ok struct {
		OK     bool
		Name   string
		Steps  int
		SHA256 string
	}
	res.json(t, &ok)
	if res.Status != 200 || !ok.OK || ok.Name != name || ok.Steps != 1 || ok.SHA256 != schema.SourceSHA256(src) {
		t.Fatalf("validate: %d %s", res.Status, res.Body)
	}
	if _, err := e.store.Runbook(context.Background(), name); !errors.Is(err, schema.ErrNotFound) {
		t.Fatalf("validate stored: %v", err)
	}

	res = e.do(http.MethodGet, "/api/v1/runbooks/schema.json", "viewer", nil)
	if res.Status != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "application/schema+json") {
		t.Fatalf("schema: %d %s", res.Status, res.Header.Get("Content-Type"))
	}
	var s map[string]any
	if err := json.Unmarshal(res.Body, &s); err != nil {
		t.Fatal(err)
	}
	if s["$id"] != runbook.SchemaID || s["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
		t.Fatalf("schema header: %v %v", s["$id"], s["$schema"])
	}
	kinds := s["$defs"].(map[string]any)["step"].(map[string]any)["properties"].(map[string]any)["kind"].(map[string]any)["enum"].([]any)
	if len(kinds) != len(runbook.Builtin().Kinds()) {
		t.Fatalf("schema kinds %v", kinds)
	}
}
