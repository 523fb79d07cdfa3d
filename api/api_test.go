package api

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opsflow/opsflow/schema"
)

func TestBadInputIsRejectedAndWritesNothing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	before, err := e.store.CountUsers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	name := uniq(t, "new")
	cases := []struct {
		name   string
		body   string
		ctype  string
		status int
		code   string
		field  string
	}{
		{"malformed", `{"username":`, "", 400, CodeInvalidJSON, ""},
		{"syntax", `{"username" "x"}`, "", 400, CodeInvalidJSON, ""},
		{"empty", ``, "", 400, CodeInvalidJSON, ""},
		{"array", `[]`, "", 400, CodeInvalidJSON, ""},
		{"two objects", `{"username":"a","role":"viewer"}{}`, "", 400, CodeInvalidJSON, ""},
		{"unknown field", `{"username":"` + name + `","role":"viewer","is_root":true}`, "", 422, CodeValidation, "is_root"},
		{"wrong type", `{"username":42,"role":"viewer"}`, "", 422, CodeValidation, "username"},
		{"bad role", `{"username":"` + name + `","role":"root"}`, "", 422, CodeValidation, "role"},
		{"bad username", `{"username":"Bad Name!","role":"viewer"}`, "", 422, CodeValidation, "username"},
		{"short password", `{"username":"` + name + `","role":"viewer","password":"short"}`, "", 422, CodeValidation, "password"},
		{"bad email", `{"username":"` + name + `","role":"viewer","email":"not an email"}`, "", 422, CodeValidation, "email"},
		{"wrong content type", `username=x`, "application/x-www-form-urlencoded", 415, CodeUnsupportedMedia, ""},
		{"too large", `{"display_name":"` + strings.Repeat("x", maxBody) + `"}`, "", 413, CodeTooLarge, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hdr := []string{}
			if c.ctype != "" {
				hdr = append(hdr, "Content-Type", c.ctype)
			}
			res := e.do(http.MethodPost, "/api/v1/users", "admin", c.body, hdr...)
			if res.Status != c.status {
				t.Fatalf("status %d, want %d: %s", res.Status, c.status, res.Body)
			}
			ae := res.apiError(t)
			if ae.Code != c.code {
				t.Fatalf("code %q, want %q", ae.Code, c.code)
			}
			if c.field != "" && ae.Fields[c.field] == "" {
				t.Fatalf("fields %v do not name %q", ae.Fields, c.field)
			}
		})
	}
	after, err := e.store.CountUsers(ctx)
	if err != nil || after != before {
		t.Fatalf("users %d -> %d (%v): bad input wrote rows", before, after, err)
	}
	// Bad query parameters and path parameters are 4xx too.
	for _, p := range []string{"/api/v1/runs?limit=0", "/api/v1/runs?status=sideways", "/api/v1/runs?cursor=notacursor", "/api/v1/audit?since=yesterday", "/api/v1/users/abc"} {
		res := e.do(http.MethodGet, p, "admin", nil)
		if res.Status < 400 || res.Status >= 500 {
			t.Errorf("GET %s: %d %s", p, res.Status, res.Body)
		} else {
			res.apiError(t)
		}
	}
	if res := e.do(http.MethodGet, "/api/v1/nope", "admin", nil); res.Status != 404 || res.apiError(t).Code != CodeNotFound {
		t.Errorf("unknown route: %d %s", res.Status, res.Body)
	}
	if res := e.do(http.MethodGet, "/api/v1/me", "", nil, "Authorization", "Basic Zm9vOmJhcg=="); res.Status != 401 {
		t.Errorf("basic auth: %d", res.Status)
	}
	if res := e.do(http.MethodGet, "/api/v1/me", "", nil, "Authorization", "Bearer opf_forged"); res.Status != 401 {
		t.Errorf("forged token: %d", res.Status)
	}
}

func TestTokensShownOnceAndRevocable(t *testing.T) {
	e := newEnv(t)
	res := e.do(http.MethodPost, "/api/v1/tokens", "operator", map[string]string{"name": "ci", "expires_in": "1h"})
	if res.Status != http.StatusCreated {
		t.Fatalf("create: %d %s", res.Status, res.Body)
	}
	var created struct {
		ID    int64
		Token string
	}
	res.json(t, &created)
	if !strings.HasPrefix(created.Token, tokenPrefix) {
		t.Fatalf("token %q", created.Token)
	}
	e.tokens["ci"] = created.Token
	if res := e.do(http.MethodGet, "/api/v1/me", "ci", nil); res.Status != 200 || !strings.Contains(string(res.Body), e.users["operator"].Username) {
		t.Fatalf("me with new token: %d %s", res.Status, res.Body)
	}
	list := e.do(http.MethodGet, "/api/v1/tokens", "operator", nil)
	if strings.Contains(string(list.Body), created.Token) || strings.Contains(string(list.Body), "token_hash") {
		t.Fatalf("token list leaks the secret: %s", list.Body)
	}
	// Another non-admin cannot revoke it; its owner can.
	if res := e.do(http.MethodDelete, "/api/v1/tokens/"+itoa(created.ID), "viewer", nil); res.Status != 404 {
		t.Fatalf("viewer revoked operator's token: %d", res.Status)
	}
	if res := e.do(http.MethodDelete, "/api/v1/tokens/"+itoa(created.ID), "operator", nil); res.Status != 200 {
		t.Fatalf("revoke: %d %s", res.Status, res.Body)
	}
	if res := e.do(http.MethodGet, "/api/v1/me", "ci", nil); res.Status != 401 {
		t.Fatalf("revoked token still works: %d", res.Status)
	}
	past := time.Now().Add(-time.Minute)
	e.tokens["expired"] = e.createToken(e.users["viewer"], &past)
	if res := e.do(http.MethodGet, "/api/v1/me", "expired", nil); res.Status != 401 {
		t.Fatalf("expired token works: %d", res.Status)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestDemoRunIdempotentAndCompletes(t *testing.T) {
	e := newEnv(t)
	key := uniq(t, "key")
	body := map[string]any{"steps": 2, "step_interval": "10ms", "target": "web-1"}
	first := e.do(http.MethodPost, "/api/v1/demo/runs", "operator", body, "Idempotency-Key", key)
	if first.Status != http.StatusCreated {
		t.Fatalf("start: %d %s", first.Status, first.Body)
	}
	var run runView
	first.json(t, &run)
	again := e.do(http.MethodPost, "/api/v1/demo/runs", "operator", body, "Idempotency-Key", key)
	var run2 runView
	again.json(t, &run2)
	if again.Status != http.StatusOK || run2.WorkflowID != run.WorkflowID {
		t.Fatalf("repeat start: %d %s, want 200 and %s", again.Status, again.Body, run.WorkflowID)
	}
	// The same key from another caller is another run.
	other := e.do(http.MethodPost, "/api/v1/demo/runs", "admin", body, "Idempotency-Key", key)
	var run3 runView
	other.json(t, &run3)
	if other.Status != http.StatusCreated || run3.WorkflowID == run.WorkflowID {
		t.Fatalf("other caller's key collided: %d %s", other.Status, other.Body)
	}
	if !strings.HasPrefix(run.TemporalURL, "http://temporal-ui.test/namespaces/default/workflows/") {
		t.Fatalf("temporal url %q", run.TemporalURL)
	}
	// The read model records the outcome just before the workflow closes;
	// wait for both.
	var detail runView
	var res resp
	eventually(t, 30*time.Second, "run completed in the read model and in Temporal", func() bool {
		res = e.do(http.MethodGet, "/api/v1/runs/"+run.WorkflowID, "viewer", nil)
		detail = runView{}
		res.json(t, &detail)
		return detail.Status == schema.RunCompleted && detail.Live != nil && detail.Live.Status == schema.RunCompleted
	})
	if detail.Live == nil || detail.Live.Status != schema.RunCompleted || detail.StartedBy != e.users["operator"].Username || detail.Summary != "2/2 steps" {
		t.Fatalf("detail: %s", res.Body)
	}
	list := e.do(http.MethodGet, "/api/v1/runs?kind=demo&started_by="+e.users["operator"].Username, "viewer", nil)
	if !strings.Contains(string(list.Body), run.WorkflowID) {
		t.Fatalf("list misses run: %s", list.Body)
	}
	// One workflow.start in the audit log for the two identical requests.
	es, err := e.store.Audit(context.Background(), schema.AuditFilter{Action: "workflow.start", Target: "run:" + run.WorkflowID})
	if err != nil || len(es) != 1 || es[0].Actor != e.users["operator"].Username || es[0].RequestID == "" {
		t.Fatalf("audit: %+v %v", es, err)
	}
}

func TestCancelRun(t *testing.T) {
	e := newEnv(t)
	res := e.do(http.MethodPost, "/api/v1/demo/runs", "operator", map[string]any{"steps": 3, "step_interval": "1h"})
	var run runView
	res.json(t, &run)
	if res := e.do(http.MethodPost, "/api/v1/runs/"+run.WorkflowID+"/cancel", "viewer", map[string]any{}); res.Status != 403 {
		t.Fatalf("viewer cancelled: %d", res.Status)
	}
	if res := e.do(http.MethodPost, "/api/v1/runs/"+run.WorkflowID+"/cancel", "operator", map[string]any{}); res.Status != http.StatusAccepted {
		t.Fatalf("cancel: %d %s", res.Status, res.Body)
	}
	eventually(t, 30*time.Second, "run canceled in the read model", func() bool {
		r, err := e.store.Run(context.Background(), run.WorkflowID)
		return err == nil && r.Status == schema.RunCanceled
	})
	if res := e.do(http.MethodPost, "/api/v1/runs/"+run.WorkflowID+"/cancel", "operator", map[string]any{}); res.Status != http.StatusConflict {
		t.Fatalf("second cancel: %d %s", res.Status, res.Body)
	}
}

func TestSessionLoginAndCSRF(t *testing.T) {
	e := newEnv(t)
	u := e.users["operator"]
	cl := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	bad, err := cl.PostForm(e.srv.URL+"/login", url.Values{"username": {u.Username}, "password": {"wrong-password-123"}})
	if err != nil {
		t.Fatal(err)
	}
	bad.Body.Close()
	if bad.StatusCode != 401 || len(bad.Cookies()) != 0 {
		t.Fatalf("bad password: %d cookies %v", bad.StatusCode, bad.Cookies())
	}
	res, err := cl.PostForm(e.srv.URL+"/login", url.Values{"username": {u.Username}, "password": {"correct-horse-battery"}, "next": {"//evil.example"}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/" {
		t.Fatalf("login: %d to %q", res.StatusCode, res.Header.Get("Location"))
	}
	var ck *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == sessionCookie {
			ck = c
		}
	}
	if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode {
		t.Fatalf("session cookie %+v", ck)
	}
	withCookie := func(method, path string, body string, hdr ...string) *http.Response {
		req, _ := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
		req.AddCookie(ck)
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		r, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		return r
	}
	if r := withCookie(http.MethodGet, "/api/v1/me", ""); r.StatusCode != 200 {
		t.Fatalf("me with session: %d", r.StatusCode)
	}
	if r := withCookie(http.MethodPost, "/api/v1/tokens", `{"name":"x"}`); r.StatusCode != http.StatusForbidden {
		t.Fatalf("POST without CSRF token: %d, want 403", r.StatusCode)
	}
	sess, _, err := e.store.SessionByHash(context.Background(), hashSecret(ck.Value), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if r := withCookie(http.MethodPost, "/api/v1/tokens", `{"name":"x"}`, csrfHeader, sess.CSRFToken); r.StatusCode != http.StatusCreated {
		t.Fatalf("POST with CSRF token: %d", r.StatusCode)
	}
	es, err := e.store.Audit(context.Background(), schema.AuditFilter{Actor: u.Username, Action: "session.login"})
	if err != nil || len(es) != 2 || es[0].Status != http.StatusSeeOther || es[1].Status != http.StatusUnauthorized {
		t.Fatalf("login audit (success after a failure): %+v %v", es, err)
	}
	if r := withCookie(http.MethodPost, "/logout", "", csrfHeader, sess.CSRFToken); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d", r.StatusCode)
	}
	if r := withCookie(http.MethodGet, "/api/v1/me", ""); r.StatusCode != 401 {
		t.Fatalf("session survives logout: %d", r.StatusCode)
	}
}

func TestAuditLogRecordsMutationsAndFilters(t *testing.T) {
	e := newEnv(t)
	name := uniq(t, "carol")
	res := e.do(http.MethodPost, "/api/v1/users", "admin", map[string]string{"username": name, "role": "viewer"}, "X-Request-ID", "req-"+name)
	if res.Status != 201 {
		t.Fatalf("create: %d %s", res.Status, res.Body)
	}
	e.do(http.MethodPost, "/api/v1/users", "viewer", map[string]string{"username": name + "x", "role": "admin"})
	var page struct {
		Items      []schema.AuditEntry
		NextCursor string `json:"next_cursor"`
	}
	e.do(http.MethodGet, "/api/v1/audit?target=user:"+name, "admin", nil).json(t, &page)
	if len(page.Items) != 1 || page.Items[0].Action != "user.create" || page.Items[0].Actor != e.users["admin"].Username ||
		page.Items[0].RequestID != res.Header.Get("X-Request-Id") || page.Items[0].SourceIP == "" || page.Items[0].Status != 201 {
		t.Fatalf("audit for create: %+v", page.Items)
	}
	// The refused attempt is recorded too, with its 403.
	e.do(http.MethodGet, "/api/v1/audit?actor="+e.users["viewer"].Username+"&action=POST*", "admin", nil).json(t, &page)
	if len(page.Items) == 0 || page.Items[0].Status != 403 {
		t.Fatalf("audit for refused create: %+v", page.Items)
	}
}

func TestHealthzAndMetrics(t *testing.T) {
	e := newEnv(t)
	res := e.do(http.MethodGet, "/healthz", "", nil)
	if res.Status != 200 || !strings.Contains(string(res.Body), `"temporal":"ok"`) {
		t.Fatalf("healthz: %d %s", res.Status, res.Body)
	}
	e.do(http.MethodGet, "/api/v1/me", "viewer", nil)
	eventually(t, 30*time.Second, "temporal sdk metrics", func() bool {
		m := e.do(http.MethodGet, "/metrics", "", nil)
		return strings.Contains(string(m.Body), "opsflow_http_requests_total") && strings.Contains(string(m.Body), "temporal_")
	})
	// With the database gone, healthz says so.
	e.store.DB.Close()
	if res := e.do(http.MethodGet, "/healthz", "", nil); res.Status != http.StatusServiceUnavailable || !strings.Contains(string(res.Body), `"database":"unavailable"`) {
		t.Fatalf("healthz without db: %d %s", res.Status, res.Body)
	}
}

func TestDocsServedLocally(t *testing.T) {
	e := newEnv(t)
	// The interactive reference loads nothing from elsewhere: its Swagger
	// UI is vendored into the binary.
	res := e.do(http.MethodGet, "/api/docs", "", nil)
	body := string(res.Body)
	if res.Status != 200 || !strings.Contains(body, "/static/vendor/swagger-ui/") || strings.Contains(body, `src="http`) || strings.Contains(body, `href="http`) {
		t.Fatalf("docs: %d %.500s", res.Status, body)
	}
	plain := e.do(http.MethodGet, "/api/docs/plain", "", nil)
	if plain.Status != 200 || !strings.Contains(string(plain.Body), "/api/v1/runs/{id}/cancel") || !strings.Contains(string(plain.Body), "<code>cancelRun</code>") || strings.Contains(string(plain.Body), "https://") {
		t.Fatalf("plain docs: %d", plain.Status)
	}
	spec := e.do(http.MethodGet, "/api/openapi.json", "", nil)
	if spec.Status != 200 || !strings.Contains(string(spec.Body), `"openapi": "3.0.3"`) {
		t.Fatalf("spec: %d", spec.Status)
	}
}
