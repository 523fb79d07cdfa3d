package api

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opsflow/opsflow/schema"
	"github.com/uptrace/bun"
)

// rebuild serves a fresh API over the env's store and Temporal, with Deps
// and the API's limits changed before it serves its first request.
func (e *env) rebuild(deps func(*Deps), api func(*API)) {
	e.t.Helper()
	d := Deps{Store: e.store, Temporal: e.temporal, Namespace: e.api.namespace, TemporalUIURL: "http://temporal-ui.test",
		Logger: testLog, Registry: e.reg, Version: "test", Secrets: e.keys, BaseURL: "http://opsflow.test"}
	if deps != nil {
		deps(&d)
	}
	a, h, err := NewAPI(d)
	if err != nil {
		e.t.Fatal(err)
	}
	if api != nil {
		api(a)
	}
	srv := httptest.NewServer(h)
	e.t.Cleanup(srv.Close)
	e.api, e.srv = a, srv
}

// auditSince lists audit entries written since t (newest first).
func (e *env) auditSince(t time.Time) []schema.AuditEntry {
	e.t.Helper()
	es, err := e.store.Audit(context.Background(), schema.AuditFilter{Since: t.Add(-time.Second), Limit: 500})
	if err != nil {
		e.t.Fatal(err)
	}
	return es
}

func bothEngines(t *testing.T, f func(t *testing.T, e *env)) {
	for _, engine := range []string{"postgres", "sqlite"} {
		t.Run(engine, func(t *testing.T) { f(t, newEnvWith(t, envOptions{sqlite: engine == "sqlite", noWorkers: true})) })
	}
}

// rawDo sends a request with any method and path, as role.
func (e *env) rawDo(method, rawPath, role string, hdr ...string) int {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.srv.URL, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Method = method
	req.URL.Opaque = rawPath
	if tok := e.tokens[role]; tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := httpClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

func TestAuditIgnoresUnmatchedRoutes(t *testing.T) {
	bothEngines(t, func(t *testing.T, e *env) {
		start := time.Now()
		marker := fmt.Sprintf("unmatched%d", time.Now().UnixNano())
		for _, r := range []struct{ method, path, role string }{
			{http.MethodPost, "/api/v1/" + marker, ""},
			{http.MethodPost, "/api/v1/" + marker, "admin"},
			{"BREW", "/api/v1/users/" + marker, ""},
			{"BREW" + marker, "/api/v1/users", "admin"},
			{http.MethodDelete, "/api/v1/cmdb/types/" + marker, ""},   // 405: GET and PUT only
			{http.MethodPost, "/api/v1/users/" + marker, "admin"},     // 405
			{http.MethodPut, "/" + marker + "/" + marker, "operator"}, // 404
		} {
			if st := e.rawDo(r.method, r.path, r.role); st != 404 && st != 405 {
				t.Fatalf("%s %s: %d, want 404 or 405", r.method, r.path, st)
			}
		}
		// A real route is still audited, refused or not.
		if st := e.rawDo(http.MethodPost, "/api/v1/runs/"+marker+"/cancel", ""); st != 401 {
			t.Fatalf("anonymous cancel: %d", st)
		}
		var routed int
		for _, a := range e.auditSince(start) {
			if strings.Contains(a.Target+a.Action, marker) {
				if a.Action != "POST /api/v1/runs/:id/cancel" || a.Status != 401 {
					t.Errorf("audited a request that maps to no route: %+v", a)
				}
				routed++
			}
		}
		if routed != 1 {
			t.Fatalf("the routed request was audited %d times, want 1", routed)
		}
	})
}

func TestAuditCapsStoredFields(t *testing.T) {
	bothEngines(t, func(t *testing.T, e *env) {
		start := time.Now()
		marker := fmt.Sprintf("long%d", time.Now().UnixNano())
		long := marker + strings.Repeat("x", 30000)
		if st := e.rawDo(http.MethodPost, "/api/v1/runs/"+long+"/cancel", "operator"); st/100 != 4 {
			t.Fatalf("cancel a long id: %d", st)
		}
		// A login as a 20,000-character user with a NUL in the name.
		res, err := httpClient.PostForm(e.srv.URL+"/login", url.Values{"username": {marker + "\x00" + strings.Repeat("é", 10000)}, "password": {"x"}})
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		var target, actor bool
		for _, a := range e.auditSince(start) {
			if strings.Contains(a.Target, marker) {
				target = true
				if len(a.Target) > schema.MaxAuditTarget || !strings.HasSuffix(a.Target, "…") {
					t.Errorf("target stored at %d bytes", len(a.Target))
				}
			}
			if strings.HasPrefix(a.Actor, marker) {
				actor = true
				if len(a.Actor) > schema.MaxAuditActor || strings.ContainsRune(a.Actor, 0) || len(a.Target) > schema.MaxAuditTarget {
					t.Errorf("login audit stored actor %d bytes, target %d", len(a.Actor), len(a.Target))
				}
			}
		}
		if !target || !actor {
			t.Fatalf("audit rows missing: target %v actor %v", target, actor)
		}
	})
}

func TestAnonymousAuditedRequestsRateLimited(t *testing.T) {
	e := newEnvWith(t, envOptions{noWorkers: true})
	e.rebuild(nil, func(a *API) { a.anon = newLimiter(0.001, 5, 100) })
	start := time.Now()
	codes := map[int]int{}
	for range 20 {
		codes[e.rawDo(http.MethodPost, "/api/v1/users", "")]++
	}
	if codes[401] != 5 || codes[429] != 15 {
		t.Fatalf("anonymous POSTs answered %v, want 5×401 then 15×429", codes)
	}
	// Authenticated callers are not limited by it.
	if res := e.do(http.MethodGet, "/api/v1/me", "viewer", nil); res.Status != 200 {
		t.Fatalf("me: %d", res.Status)
	}
	n := 0
	for _, a := range e.auditSince(start) {
		if a.Action == "POST /api/v1/users" && a.Actor == "anonymous" {
			n++
		}
	}
	if n != 5 {
		t.Fatalf("%d anonymous rows written, want 5 (the 429s are not)", n)
	}
	// The limiter's memory is bounded, however many addresses it sees.
	l := newLimiter(1, 2, 50)
	for i := range 10000 {
		l.allow("10.0." + strconv.Itoa(i/256) + "." + strconv.Itoa(i%256))
	}
	if l.size() > 50 {
		t.Fatalf("limiter holds %d keys, cap 50", l.size())
	}
	if l.allow("new") && l.allow("new2") && l.allow("new3") {
		t.Fatal("addresses beyond the cap share one bucket, so they are limited too")
	}
}

func TestAuditRecordsRefusedTokens(t *testing.T) {
	e := newEnvWith(t, envOptions{noWorkers: true})
	ctx := context.Background()
	revokedTok := e.createToken(e.users["operator"], nil)
	ts, err := e.store.Tokens(ctx, e.users["operator"].ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.RevokeToken(ctx, ts[0].ID, 0); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for _, h := range []string{"Bearer opf_not-a-real-token", "Bearer " + revokedTok, "Basic YWRtaW46YWRtaW4="} {
		for _, m := range []string{http.MethodPost, http.MethodGet} {
			if st := e.rawDo(m, "/api/v1/tokens", "", "Authorization", h); st != 401 {
				t.Fatalf("%s with %q: %d", m, h, st)
			}
		}
	}
	got := map[string]int{}
	for _, a := range e.auditSince(start) {
		if strings.HasSuffix(a.Action, " /api/v1/tokens") && a.Status == 401 {
			switch {
			case strings.Contains(a.Detail, "unknown token"):
				got["unknown"]++
			case strings.Contains(a.Detail, "revoked token "+strconv.FormatInt(ts[0].ID, 10)+" of "+e.users["operator"].Username):
				got["revoked"]++
			case strings.Contains(a.Detail, "malformed Authorization"):
				got["malformed"]++
			}
		}
	}
	if got["unknown"] != 2 || got["revoked"] != 2 || got["malformed"] != 2 {
		t.Fatalf("refused credentials audited %v, want 2 of each", got)
	}
}

func TestForwardedHeadersOnlyFromTrustedProxies(t *testing.T) {
	e := newEnvWith(t, envOptions{noWorkers: true})
	try := func(rid string) schema.AuditEntry {
		t.Helper()
		start := time.Now()
		res := e.do(http.MethodPost, "/api/v1/tokens", "viewer", map[string]string{"name": "forwarded"},
			"X-Forwarded-For", "203.0.113.9", "X-Real-IP", "198.51.100.7", "X-Request-Id", rid)
		if res.Status != 201 {
			t.Fatalf("create token: %d %s", res.Status, res.Body)
		}
		for _, a := range e.auditSince(start) {
			if a.Action == "token.create" && a.Actor == e.users["viewer"].Username && a.RequestID == res.Header.Get("X-Request-Id") {
				return a
			}
		}
		t.Fatalf("no audit row for request %s", res.Header.Get("X-Request-Id"))
		return schema.AuditEntry{}
	}
	// Nobody is trusted by default, loopback included.
	rid := fmt.Sprintf("rid-%d", time.Now().UnixNano())
	a := try(rid)
	if a.SourceIP != "127.0.0.1" || a.RequestID == rid {
		t.Fatalf("untrusted client chose its address or request id: %+v", a)
	}
	if _, _, err := NewAPI(Deps{Store: e.store, TrustedProxies: []string{"10.0.0.0/8", "not-an-ip"}}); err == nil {
		t.Fatal("a bad OPSFLOW_TRUSTED_PROXIES entry was accepted")
	}
	e.rebuild(func(d *Deps) { d.TrustedProxies = []string{"10.0.0.0/8", "127.0.0.1"} }, nil)
	rid = fmt.Sprintf("rid-%d", time.Now().UnixNano())
	a = try(rid)
	if a.SourceIP != "203.0.113.9" || a.RequestID != rid {
		t.Fatalf("a trusted proxy's headers were not used: %+v", a)
	}
	// A request id a proxy passes must still be short and printable.
	long := strings.Repeat("r", 500)
	if a := try(long); a.RequestID == long {
		t.Fatal("a 500-character request id was kept")
	}
}

func TestTrickledBodyAndSlowHeadersTimeOut(t *testing.T) {
	e := newEnvWith(t, envOptions{noWorkers: true})
	e.rebuild(nil, func(a *API) { a.bodyTimeout = time.Second })
	// The production server, with its body deadlines and short header and
	// idle timeouts so the test is quick.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newHTTPServer(e.srv.Config.Handler, serverTimeouts{ReadHeader: time.Second, Idle: time.Second})
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()

	// closedWithin trickles a byte every 100 ms after head and reports
	// how long until the server hung up (or answered).
	closedWithin := func(head string, limit time.Duration) time.Duration {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		begin := time.Now()
		if _, err := io.WriteString(c, head); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			_, _ = io.Copy(io.Discard, c)
			close(done)
		}()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return time.Since(begin)
			case <-tick.C:
				if time.Since(begin) > limit {
					t.Fatalf("connection still open after %s: %q", limit, head)
				}
				_, _ = c.Write([]byte("x"))
			}
		}
	}
	// A body trickled one byte at a time: cut at the route's body deadline.
	d := closedWithin("POST /api/v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+e.tokens["viewer"]+
		"\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n", 20*time.Second)
	t.Logf("trickled body cut after %s", d)
	// Headers trickled: cut at ReadHeaderTimeout.
	d = closedWithin("GET /healthz HTTP/1.1\r\nHost: x\r\n", 20*time.Second)
	t.Logf("trickled headers cut after %s", d)
	// An idle keep-alive connection: closed after IdleTimeout.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /api/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("idle connection not closed by the server: %v", err)
	}
	if defaultTimeouts.ReadHeader <= 0 || defaultTimeouts.Idle <= 0 {
		t.Fatalf("production timeouts unset: %+v", defaultTimeouts)
	}
}

func TestMetricsLabelsBounded(t *testing.T) {
	e := newEnvWith(t, envOptions{noWorkers: true})
	marker := fmt.Sprintf("m%d", time.Now().UnixNano())
	for i := range 5 {
		e.rawDo("X"+marker+strconv.Itoa(i), "/api/v1/users", "admin")
		e.rawDo(http.MethodGet, "/api/v1/"+marker+strconv.Itoa(i), "admin")
		e.rawDo(http.MethodPost, "/api/v1/users/"+marker, "admin") // 405
	}
	body := string(e.do(http.MethodGet, "/metrics", "", nil).Body)
	if strings.Contains(body, marker) {
		t.Fatal("a client-chosen method or path became a metrics label")
	}
	if !strings.Contains(body, `method="other"`) || !strings.Contains(body, `route="unmatched"`) {
		t.Fatal(`no method="other" or route="unmatched" series`)
	}
	if strings.Contains(body, `method="POST",route="/api/v1/users/:id"`) {
		t.Fatal("a 405 was labelled with a route it did not reach")
	}
}

func TestLoginNextStaysOnSite(t *testing.T) {
	for _, next := range []string{"/\t/evil.example", "//evil.example", "/\\evil.example", "https://evil.example", "https:evil.example",
		"/\n/evil.example", "/\r/evil.example", " //evil.example", "\\\\evil.example", "/ /evil.example", "/\x00/evil", "javascript:alert(1)",
		"evil.example", "/\u2028/evil.example", "/\x7f/evil", "/\u00a0/evil.example"} {
		if got := safeNext(next); got != "/" {
			t.Errorf("safeNext(%q) = %q, want /", next, got)
		}
	}
	for _, ok := range []string{"/jobs", "/jobs/12?x=1&y=%2F", "/cmdb/cis/3#top"} {
		if got := safeNext(ok); got != ok {
			t.Errorf("safeNext(%q) = %q, want it kept", ok, got)
		}
	}
	e := newEnvWith(t, envOptions{noWorkers: true})
	res, err := httpClient.PostForm(e.srv.URL+"/login?next=%2F%09%2Fevil.example", url.Values{"username": {e.users["viewer"].Username},
		"password": {"correct-horse-battery"}, "next": {"/\t/evil.example"}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/" {
		t.Fatalf("login with next=/%%09/evil.example: %d to %q", res.StatusCode, res.Header.Get("Location"))
	}
}

func TestLoginThrottledPerAccountAndAddress(t *testing.T) {
	e := newEnvWith(t, envOptions{noWorkers: true})
	e.rebuild(nil, func(a *API) {
		a.loginUser = newLimiter(0.0001, 3, 100)
		a.loginIP = newLimiter(0.0001, 6, 100)
	})
	login := func(user, pw string) int {
		t.Helper()
		res, err := httpClient.PostForm(e.srv.URL+"/login", url.Values{"username": {user}, "password": {pw}})
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	victim := e.users["viewer"].Username
	for i := range 3 {
		if st := login(victim, "wrong-password-"+strconv.Itoa(i)); st != 401 {
			t.Fatalf("failure %d: %d", i, st)
		}
	}
	// The account is throttled: even the right password waits.
	if st := login(victim, "correct-horse-battery"); st != http.StatusTooManyRequests {
		t.Fatalf("4th attempt on the account: %d, want 429", st)
	}
	// Another account from the same address still works, until the
	// address has failed too often.
	if st := login(e.users["operator"].Username, "correct-horse-battery"); st != http.StatusSeeOther {
		t.Fatalf("other account: %d", st)
	}
	for i := range 3 {
		if st := login(fmt.Sprintf("nobody-%d", i), "x"); st != 401 {
			t.Fatalf("unknown user %d: %d", i, st)
		}
	}
	if st := login(e.users["approver"].Username, "correct-horse-battery"); st != http.StatusTooManyRequests {
		t.Fatalf("after 6 failures from the address: %d, want 429", st)
	}
}

func TestLoginFailureConstantTime(t *testing.T) {
	e := newEnvWith(t, envOptions{noWorkers: true})
	ctx := context.Background()
	disabled := e.createUser("viewer", "correct-horse-battery")
	if _, err := e.store.UpdateUser(ctx, disabled.ID, schema.UserUpdate{Disabled: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	nopw := &schema.User{Username: uniq(t, "nopw"), Role: schema.RoleViewer}
	if err := e.store.CreateUser(ctx, nopw); err != nil {
		t.Fatal(err)
	}
	fastest := func(user, pw string) time.Duration {
		t.Helper()
		best := time.Hour
		for range 3 {
			begin := time.Now()
			if _, _, err := e.api.login(ctx, "192.0.2.1", user, pw); err == nil {
				t.Fatalf("%s logged in", user)
			}
			best = min(best, time.Since(begin))
		}
		return best
	}
	wrong := fastest(e.users["viewer"].Username, "wrong-password-1")
	for name, d := range map[string]time.Duration{
		"disabled":      fastest(disabled.Username, "correct-horse-battery"),
		"password-less": fastest(nopw.Username, ""),
		"unknown":       fastest("nobody-"+nopw.Username, "x"),
	} {
		t.Logf("%s: %s, wrong password: %s", name, d, wrong)
		if d*3 < wrong {
			t.Errorf("a %s account fails in %s, a wrong password in %s: timing tells them apart", name, d, wrong)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// sessionLogin logs in through the form and returns the session cookie
// and its CSRF token.
func (e *env) sessionLogin(user string) (*http.Cookie, string) {
	e.t.Helper()
	ck, csrf := e.trySessionLogin(user, "correct-horse-battery")
	if ck == nil {
		e.t.Fatalf("login %s: no session cookie", user)
	}
	return ck, csrf
}

// trySessionLogin logs in through the form: the session cookie and its
// CSRF token, or nil when the login is refused.
func (e *env) trySessionLogin(user, password string) (*http.Cookie, string) {
	e.t.Helper()
	res, err := httpClient.PostForm(e.srv.URL+"/login", url.Values{"username": {user}, "password": {password}})
	if err != nil {
		e.t.Fatal(err)
	}
	res.Body.Close()
	for _, c := range res.Cookies() {
		if c.Name == sessionCookie && c.Value != "" {
			sess, _, err := e.store.SessionByHash(context.Background(), hashSecret(c.Value), time.Now())
			if err != nil {
				e.t.Fatal(err)
			}
			return c, sess.CSRFToken
		}
	}
	return nil, ""
}

func (e *env) withCookie(ck *http.Cookie, method, path, body string, hdr ...string) int {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	req.AddCookie(ck)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := httpClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

func TestSessionsAndTokensEndOnPasswordResetDemotionDisable(t *testing.T) {
	bothEngines(t, func(t *testing.T, e *env) {
		for _, c := range []struct {
			name, role string
			change     map[string]any
			ends       bool
		}{
			{"password", "operator", map[string]any{"password": "a-brand-new-password"}, true},
			{"demoted", "approver", map[string]any{"role": "viewer"}, true},
			{"sideways", "operator", map[string]any{"role": "approver"}, true},
			{"disabled", "operator", map[string]any{"disabled": true}, true},
			{"promoted", "viewer", map[string]any{"role": "operator"}, false},
			{"renamed", "operator", map[string]any{"display_name": "Someone"}, false},
		} {
			u := e.createUser(c.role, "correct-horse-battery")
			tok := e.createToken(u, nil)
			e.tokens["subject"] = tok
			ck, _ := e.sessionLogin(u.Username)
			if res := e.do(http.MethodPatch, "/api/v1/users/"+itoa(u.ID), "admin", c.change); res.Status != 200 {
				t.Fatalf("%s: %d %s", c.name, res.Status, res.Body)
			}
			tokOK := e.do(http.MethodGet, "/api/v1/me", "subject", nil).Status == 200
			sessOK := e.withCookie(ck, http.MethodGet, "/api/v1/me", "") == 200
			if c.ends && (tokOK || sessOK) {
				t.Errorf("%s: token still works %v, session still works %v", c.name, tokOK, sessOK)
			}
			if !c.ends && (!tokOK || !sessOK) {
				t.Errorf("%s: token works %v, session works %v; both should", c.name, tokOK, sessOK)
			}
			if c.name == "disabled" {
				// Re-enabling does not bring old credentials back.
				e.do(http.MethodPatch, "/api/v1/users/"+itoa(u.ID), "admin", map[string]any{"disabled": false})
				if e.do(http.MethodGet, "/api/v1/me", "subject", nil).Status == 200 {
					t.Error("a disabled user's token works again after re-enabling")
				}
			}
		}
		// An admin changing their own password keeps the credential used.
		if res := e.do(http.MethodPatch, "/api/v1/users/"+itoa(e.users["admin"].ID), "admin", map[string]any{"password": "admins-new-password"}); res.Status != 200 {
			t.Fatalf("own password: %d %s", res.Status, res.Body)
		}
		if res := e.do(http.MethodGet, "/api/v1/me", "admin", nil); res.Status != 200 {
			t.Fatalf("the admin's own token was revoked by their password change: %d", res.Status)
		}
	})
}

func TestCSRFTokenNotFromQuery(t *testing.T) {
	e := newEnvWith(t, envOptions{noWorkers: true})
	ck, csrf := e.sessionLogin(e.users["operator"].Username)
	if st := e.withCookie(ck, http.MethodPost, "/api/v1/tokens?csrf_token="+url.QueryEscape(csrf), `{"name":"q"}`); st != http.StatusForbidden {
		t.Fatalf("CSRF token in the query string: %d, want 403", st)
	}
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/logout", strings.NewReader(url.Values{csrfField: {csrf}}.Encode()))
	req.AddCookie(ck)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("CSRF token in the form body: %d, want 303", res.StatusCode)
	}
}

func TestSecureCookieWhenBaseURLHTTPS(t *testing.T) {
	e := newEnvWith(t, envOptions{noWorkers: true})
	cookie := func() *http.Cookie {
		res, err := httpClient.PostForm(e.srv.URL+"/login", url.Values{"username": {e.users["viewer"].Username}, "password": {"correct-horse-battery"}})
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		for _, c := range res.Cookies() {
			if c.Name == sessionCookie {
				return c
			}
		}
		t.Fatalf("no session cookie: %d", res.StatusCode)
		return nil
	}
	if cookie().Secure {
		t.Fatal("Secure cookie over a plain-http base URL")
	}
	e.rebuild(func(d *Deps) { d.BaseURL = "https://ops.example.com" }, nil)
	if !cookie().Secure {
		t.Fatal("session cookie not Secure with an https OPSFLOW_BASE_URL")
	}
}

func TestCSVExportEscapesFormulas(t *testing.T) {
	e := newEnvWith(t, envOptions{noWorkers: true})
	p := fmt.Sprintf("csv%d", time.Now().UnixNano())
	bad := []string{"=HYPERLINK(\"http://evil.example\",\"x\")", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tx", "\rx"}
	// Cells that already start with a quote round-trip too.
	quoted := []string{"'=1", "'plain", "-5"}
	for i, v := range append(bad, quoted...) {
		e.mkCI("host", p+"-"+strconv.Itoa(i), map[string]any{"os": v}, map[string]string{"batch": p})
	}
	res := e.do(http.MethodGet, "/api/v1/cmdb/export?type=host&format=csv&selector="+url.QueryEscape("batch="+p), "viewer", nil)
	if res.Status != 200 {
		t.Fatalf("export: %d %s", res.Status, res.Body)
	}
	body := string(res.Body)
	for _, v := range bad {
		if !strings.Contains(body, "'"+v) && !strings.Contains(body, `"'`+strings.ReplaceAll(v, `"`, `""`)) {
			t.Errorf("cell %q not escaped in:\n%s", v, body)
		}
	}
	for _, v := range []string{"-5", "+1.5", "12"} {
		if escapeCSVCell(v) != v {
			t.Errorf("number %q escaped", v)
		}
	}
	// The export re-imports unchanged: the import strips the escape.
	res = e.do(http.MethodPost, "/api/v1/cmdb/import?type=host&dry_run=true", "operator", string(res.Body), "Content-Type", "text/csv")
	var rep struct{ Rows, Created, Updated, Unchanged int }
	res.json(t, &rep)
	if res.Status != 200 || rep.Rows != len(bad)+len(quoted) || rep.Unchanged != rep.Rows {
		t.Fatalf("re-import of the escaped export: %d %s", res.Status, res.Body)
	}
}

// queryCounter counts the database queries that read a table.
type queryCounter struct {
	table string
	n     atomic.Int64
}

func (q *queryCounter) BeforeQuery(ctx context.Context, ev *bun.QueryEvent) context.Context {
	if strings.Contains(ev.Query, q.table) && strings.HasPrefix(strings.TrimSpace(strings.ToUpper(ev.Query)), "SELECT") {
		q.n.Add(1)
	}
	return ctx
}

func (q *queryCounter) AfterQuery(context.Context, *bun.QueryEvent) {}

func TestSSESharedPollAndCap(t *testing.T) {
	bothEngines(t, func(t *testing.T, e *env) {
		qc := &queryCounter{table: "cmdb_events"}
		e.store.DB.AddQueryHook(qc)
		e.rebuild(nil, func(a *API) { a.streams = newStreamLimits(3) })
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		open := func(role string) (*http.Response, error) {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.srv.URL+"/api/v1/cmdb/events?after=0", nil)
			req.Header.Set("Accept", "text/event-stream")
			req.Header.Set("Authorization", "Bearer "+e.tokens[role])
			return http.DefaultClient.Do(req)
		}
		// 12 streams: 3 for each of 4 users.
		var streams []*http.Response
		for _, role := range schema.Roles {
			for range 3 {
				res, err := open(role)
				if err != nil {
					t.Fatal(err)
				}
				if res.StatusCode != 200 {
					t.Fatalf("stream for %s: %d", role, res.StatusCode)
				}
				streams = append(streams, res)
				defer res.Body.Close()
			}
		}
		// A fourth for one user is refused.
		res, err := open("viewer")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("4th stream for a user: %d, want 429", res.StatusCode)
		}
		// Every stream gets a new change.
		ci := e.mkCI("host", fmt.Sprintf("sse-%d", time.Now().UnixNano()), nil, nil)
		want := "\"object_id\":" + itoa(ci.ID)
		var wg sync.WaitGroup
		var got atomic.Int64
		for _, s := range streams {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sc := bufio.NewScanner(s.Body)
				sc.Buffer(make([]byte, 1<<20), 1<<20)
				for sc.Scan() {
					if strings.Contains(sc.Text(), want) {
						got.Add(1)
						return
					}
				}
			}()
		}
		eventually(t, time.Minute, "every stream to get the new CI's event", func() bool { return got.Load() == int64(len(streams)) })
		// Then, over a window of a few poll intervals, the 12 streams cost
		// one poll loop: about one query per interval, not 12.
		q0, p0, begin := qc.n.Load(), e.api.feeds.polls.Load(), time.Now()
		eventually(t, time.Minute, "the shared poll to run 6 times", func() bool { return e.api.feeds.polls.Load()-p0 >= 6 })
		queries, polls, elapsed := qc.n.Load()-q0, e.api.feeds.polls.Load()-p0, time.Since(begin)
		t.Logf("%d event queries (%d shared polls) in %s for %d streams", queries, polls, elapsed, len(streams))
		if queries > polls+2 || queries >= int64(len(streams)) {
			t.Fatalf("%d event queries over %d poll intervals for %d streams: not one shared poll", queries, polls, len(streams))
		}
		// Closing the streams stops the poll.
		cancel()
		eventually(t, 30*time.Second, "the feed's poll to stop", func() bool {
			e.api.feeds.mu.Lock()
			defer e.api.feeds.mu.Unlock()
			return len(e.api.feeds.byKey) == 0
		})
	})
}

// TestMultipartFormBounded: a console form with a file is read within
// 1 MiB before its CSRF token is looked at; a bigger one is a 413 and
// stores nothing.
func TestMultipartFormBounded(t *testing.T) {
	e := newEnv(t)
	ck, csrf := e.sessionLogin(e.users[schema.RoleAdmin].Username)
	name := fmt.Sprintf("big-%d", time.Now().UnixNano())
	send := func(size int) int {
		t.Helper()
		var b bytes.Buffer
		w := multipart.NewWriter(&b)
		_ = w.WriteField("csrf_token", csrf)
		_ = w.WriteField("name", name)
		_ = w.WriteField("kind", "ssh_key")
		_ = w.WriteField("username", "deploy")
		f, _ := w.CreateFormFile("key_file", "id_ed25519")
		_, _ = f.Write(bytes.Repeat([]byte("A"), size))
		_ = w.Close()
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/credentials", &b)
		req.AddCookie(ck)
		req.Header.Set("Content-Type", w.FormDataContentType())
		res, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if st := send(2 << 20); st != http.StatusRequestEntityTooLarge {
		t.Fatalf("2 MiB form: %d, want 413", st)
	}
	if st := send(100); st != http.StatusUnprocessableEntity {
		t.Fatalf("a small form with a bad key: %d, want 422 (read, then refused by field)", st)
	}
	if _, err := e.store.CredentialByName(context.Background(), name); !errors.Is(err, schema.ErrNotFound) {
		t.Fatalf("stored: %v", err)
	}
}
