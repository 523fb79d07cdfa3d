package api

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
)

// hostileValues are raw JSON values an attacker sends under a real field
// name. None may produce a 5xx.
var hostileValues = []string{
	`"a\u0000b"`,
	`"\u0000"`,
	`"x\u0001\u001b[31my"`,
	`"line\nbreak\ttab"`,
	`"\ud800"`,
	`"\udc00x\ud83d"`,
	"\"\xff\xfe\"",
	`"` + strings.Repeat("x", 80000) + `"`,
	`"订单-api-01"`,
	`"../../etc/passwd"`,
	`99999999999999999999`,
	`-9223372036854775808`,
	`-1`,
	`0`,
	`1.5`,
	`1e308`,
	`true`,
	`null`,
	`[]`,
	`{}`,
	`["\u0000", 1, {}]`,
	`[` + strings.Repeat(`"x",`, 5000) + `"x"]`,
	`{"a":{"b":[{"c":"\u0000"}]},"k\u0000":1}`,
}

// oddIDs are path segments for :id and :name parameters.
var oddIDs = []string{"%00", "..%2f", "..%2F..%2Fetc", "12345678901234567890", "-1", "0", "%ff", "a%0Ab", "%e8%ae%a2%e5%8d%95", strings.Repeat("n", 300), "1%00"}

// openAPIFields returns, per "METHOD /path/{x}", the JSON paths of the
// request body's fields (nested objects and arrays of objects included:
// spec.levels[0].users) with a plausible value for each top-level one.
func openAPIFields(t *testing.T) map[string]map[string]any {
	t.Helper()
	raw, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	schemas := doc["components"].(map[string]any)["schemas"].(map[string]any)
	var resolve func(s map[string]any) map[string]any
	resolve = func(s map[string]any) map[string]any {
		if ref, ok := s["$ref"].(string); ok {
			return resolve(schemas[strings.TrimPrefix(ref, "#/components/schemas/")].(map[string]any))
		}
		return s
	}
	var walk func(prefix string, s map[string]any, depth int, out map[string]any)
	walk = func(prefix string, s map[string]any, depth int, out map[string]any) {
		s = resolve(s)
		props, _ := s["properties"].(map[string]any)
		for name, p := range props {
			ps := resolve(p.(map[string]any))
			path := prefix + name
			out[path] = plausible(ps)
			if depth >= 3 {
				continue
			}
			switch ps["type"] {
			case "object":
				walk(path+".", ps, depth+1, out)
			case "array":
				if items, ok := ps["items"].(map[string]any); ok {
					walk(path+"[0].", items, depth+1, out)
				}
			}
		}
		if s["type"] == "array" {
			if items, ok := s["items"].(map[string]any); ok {
				walk(prefix+"[0].", items, depth+1, out)
			}
		}
	}
	out := map[string]map[string]any{}
	for path, ops := range doc["paths"].(map[string]any) {
		for method, op := range ops.(map[string]any) {
			body, _ := op.(map[string]any)["requestBody"].(map[string]any)
			content, _ := body["content"].(map[string]any)
			js, _ := content["application/json"].(map[string]any)
			if js == nil {
				continue
			}
			fields := map[string]any{}
			walk("", js["schema"].(map[string]any), 0, fields)
			out[strings.ToUpper(method)+" "+path] = fields
		}
	}
	return out
}

// plausible is a value of the schema's type, so that the other fields of
// a request get past decoding and the hostile one reaches the handler.
func plausible(s map[string]any) any {
	if enum, ok := s["enum"].([]any); ok && len(enum) > 0 {
		return enum[0]
	}
	switch s["type"] {
	case "integer", "number":
		return 1
	case "boolean":
		return false
	case "array":
		return []any{}
	case "object":
		return map[string]any{}
	}
	return "hostile-test"
}

// tryDo is env.do for worker goroutines: a transport failure is a status
// of 0, not t.Fatal.
func (e *env) tryDo(method, path, role, body string) resp {
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		return resp{Body: []byte(err.Error())}
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+e.tokens[role])
	res, err := httpClient.Do(req)
	if err != nil {
		return resp{Body: []byte(err.Error())}
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{Status: res.StatusCode, Body: b}
}

// bodyWith puts raw JSON at a dotted path (a.b[0].c) in a body built from
// plausible top-level values.
func bodyWith(base map[string]any, path, raw string) string {
	const mark = "\x00HOSTILE\x00"
	body := map[string]any{}
	for k, v := range base {
		if !strings.ContainsAny(k, ".[") {
			body[k] = v
		}
	}
	var top any = body
	segs := regexp.MustCompile(`\.|(\[0\])`).Split(path, -1)
	idx := regexp.MustCompile(`\.|\[0\]`).FindAllString(path, -1)
	cur := top
	if strings.HasPrefix(path, "[0].") {
		top = []any{map[string]any{}}
		cur = top.([]any)[0]
		segs, idx = segs[1:], idx[1:]
		segs[0] = strings.TrimPrefix(segs[0], ".")
	}
	for i, seg := range segs {
		m := cur.(map[string]any)
		if i == len(segs)-1 {
			m[seg] = mark
			break
		}
		if idx[i] == "[0]" {
			next := map[string]any{}
			m[seg] = []any{next}
			cur = next
			if i+1 < len(idx) && idx[i+1] == "." {
				segs[i+1] = strings.TrimPrefix(segs[i+1], ".")
			}
			continue
		}
		next, ok := m[seg].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[seg] = next
		}
		cur = next
	}
	b, _ := json.Marshal(top)
	return strings.Replace(string(b), `"\u0000HOSTILE\u0000"`, raw, 1)
}

// TestHostileValuesNeverServerError walks every mutating route and, under
// each field name its OpenAPI request schema declares, sends values an
// attacker would (NUL, control characters, lone surrogates, 80k strings,
// huge and negative numbers, wrong types, nested objects), and odd path
// ids to every route with a path parameter. No answer may be a 5xx.
func TestHostileValuesNeverServerError(t *testing.T) {
	if testing.Short() {
		t.Skip("real server")
	}
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			e := newEnvWith(t, envOptions{sqlite: db == "sqlite"})
			fields := openAPIFields(t)
			type req struct{ method, path, body string }
			var reqs []req
			params := regexp.MustCompile(`:[a-z]+|\*`)
			for _, r := range e.api.routes() {
				spec := params.ReplaceAllStringFunc(r.Path, func(s string) string { return "{" + strings.TrimPrefix(s, ":") + "}" })
				concrete := params.ReplaceAllString(r.Path, "1")
				mutating := r.Method != http.MethodGet && r.Method != http.MethodOptions && r.Method != http.MethodHead
				if r.Path == "/logout" {
					continue
				}
				base := fields[r.Method+" "+spec]
				if mutating && base != nil {
					names := make([]string, 0, len(base))
					for k := range base {
						names = append(names, k)
					}
					sort.Strings(names)
					for _, f := range names {
						for _, v := range hostileValues {
							reqs = append(reqs, req{r.Method, concrete, bodyWith(base, f, v)})
						}
					}
					for _, v := range hostileValues[:8] {
						reqs = append(reqs, req{r.Method, concrete, `{"no_such_field":` + v + `}`})
					}
				}
				if strings.Contains(r.Path, ":") {
					body := ""
					if base != nil {
						body = "{}"
					}
					for _, id := range oddIDs {
						reqs = append(reqs, req{r.Method, params.ReplaceAllString(r.Path, id), body})
					}
				}
			}
			t.Logf("%d requests", len(reqs))
			var mu sync.Mutex
			var failures []string
			work := make(chan req)
			var wg sync.WaitGroup
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for r := range work {
						res := e.tryDo(r.method, r.path, "admin", r.body)
						if res.Status >= 500 {
							mu.Lock()
							failures = append(failures, fmt.Sprintf("%s %s %.200q -> %d %.200s", r.method, r.path, r.body, res.Status, res.Body))
							mu.Unlock()
						}
					}
				}()
			}
			for _, r := range reqs {
				work <- r
			}
			close(work)
			wg.Wait()
			sort.Strings(failures)
			for i, f := range failures {
				if i == 60 {
					t.Errorf("… and %d more", len(failures)-60)
					break
				}
				t.Error(f)
			}
		})
	}
}
