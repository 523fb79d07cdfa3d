package api

import (
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/opsflow/opsflow/schema"
)

// samplePath fills route parameters with values that name nothing, so a
// permitted call fails on lookup (404) instead of changing data.
func samplePath(p string) string {
	p = strings.ReplaceAll(p, ":id", "999999")
	return strings.ReplaceAll(p, "*", "app.css")
}

func allowed(r route, role string) bool {
	if r.Public {
		return true
	}
	if role == "" {
		return false
	}
	return len(r.Roles) == 0 || role == schema.RoleAdmin || slices.Contains(r.Roles, role)
}

// TestEveryRouteByRole walks every route as every role and as nobody.
func TestEveryRouteByRole(t *testing.T) {
	e := newEnv(t)
	a := &API{}
	for _, r := range a.routes() {
		for _, role := range append([]string{""}, schema.Roles...) {
			var body any
			if r.Method != http.MethodGet && strings.HasPrefix(r.Path, "/api/") {
				body = map[string]any{}
			}
			res := e.do(r.Method, samplePath(r.Path), role, body)
			who := role
			if who == "" {
				who = "anonymous"
			}
			switch {
			case r.Public:
				// Public routes decide for themselves (a failed login is 401).
				if res.Status == http.StatusForbidden || res.Status >= 500 {
					t.Errorf("%s %s as %s: got %d: %s", r.Method, r.Path, who, res.Status, res.Body)
				}
			case allowed(r, role):
				if res.Status == http.StatusUnauthorized || res.Status == http.StatusForbidden || res.Status >= 500 {
					t.Errorf("%s %s as %s: got %d, want access: %s", r.Method, r.Path, who, res.Status, res.Body)
				}
			case role == "" && r.Method == http.MethodGet && !isAPIPath(r.Path):
				if res.Status != http.StatusSeeOther || !strings.HasPrefix(res.Header.Get("Location"), "/login") {
					t.Errorf("%s %s as anonymous: got %d, want redirect to /login", r.Method, r.Path, res.Status)
				}
			case role == "":
				if res.Status != http.StatusUnauthorized {
					t.Errorf("%s %s as anonymous: got %d, want 401", r.Method, r.Path, res.Status)
				} else if isAPIPath(r.Path) && res.apiError(t).Code != CodeUnauthorized {
					t.Errorf("%s %s: code %s", r.Method, r.Path, res.apiError(t).Code)
				}
			default:
				if res.Status != http.StatusForbidden {
					t.Errorf("%s %s as %s: got %d, want 403: %s", r.Method, r.Path, who, res.Status, res.Body)
				}
			}
		}
	}
}

// TestOpenAPICoversEveryRoute fails when an API route is missing from the
// OpenAPI document, or the document lists a route that does not exist.
func TestOpenAPICoversEveryRoute(t *testing.T) {
	d, err := parseOpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	a := &API{}
	served := map[string]bool{}
	for _, r := range a.routes() {
		if !isAPIPath(r.Path) {
			continue // web UI pages
		}
		path := r.Path
		for _, seg := range strings.Split(path, "/") {
			if strings.HasPrefix(seg, ":") {
				path = strings.Replace(path, seg, "{"+seg[1:]+"}", 1)
			}
		}
		key := strings.ToLower(r.Method) + " " + path
		served[key] = true
		if _, ok := d.Paths[path][strings.ToLower(r.Method)]; !ok {
			t.Errorf("route %s %s is missing from api/openapi.json", r.Method, path)
		}
	}
	for path, ops := range d.Paths {
		for m := range ops {
			if !served[m+" "+path] {
				t.Errorf("api/openapi.json documents %s %s, which no route serves", strings.ToUpper(m), path)
			}
		}
	}
}

// TestOpenAPIOperationIDs: generated clients (oapi-codegen,
// openapi-generator) name their methods after operationIds, so every
// operation has one, unique and an identifier in camelCase, and the
// document names a server for the clients' base URL.
func TestOpenAPIOperationIDs(t *testing.T) {
	d, err := parseOpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Servers) == 0 || d.Servers[0].URL == "" {
		t.Errorf("servers: %+v", d.Servers)
	}
	ident := regexp.MustCompile(`^[a-z][A-Za-z0-9]*$`)
	seen := map[string]string{}
	for path, ops := range d.Paths {
		for m, op := range ops {
			where := strings.ToUpper(m) + " " + path
			switch prev, dup := seen[op.OperationID]; {
			case op.OperationID == "":
				t.Errorf("%s has no operationId", where)
			case !ident.MatchString(op.OperationID):
				t.Errorf("%s: operationId %q is not a camelCase identifier", where, op.OperationID)
			case dup:
				t.Errorf("operationId %s on %s and %s", op.OperationID, prev, where)
			}
			seen[op.OperationID] = where
		}
	}
}
