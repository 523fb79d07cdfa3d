package activities

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/opsflow/opsflow/internal/secret"
	"github.com/opsflow/opsflow/schema"
)

// TestStepAddrAllowed: loopback, link-local (the metadata service) and
// unspecified addresses are refused unless allowed; private networks
// and the Internet are not.
func TestStepAddrAllowed(t *testing.T) {
	allowLoop, err := ParseNets("127.0.0.1, 10.9.0.0/16")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		addr  string
		allow []netip.Prefix
		want  bool
	}{
		{"127.0.0.1", nil, false},
		{"::1", nil, false},
		{"::ffff:127.0.0.1", nil, false},
		{"169.254.169.254", nil, false},
		{"fd00:ec2::254", nil, false},
		{"fe80::1", nil, false},
		{"0.0.0.0", nil, false},
		{"10.1.2.3", nil, true},
		{"192.168.1.10", nil, true},
		{"203.0.113.7", nil, true},
		{"127.0.0.1", allowLoop, true},
		{"127.0.0.2", allowLoop, false},
	} {
		if got := stepAddrAllowed(netip.MustParseAddr(tc.addr), tc.allow); got != tc.want {
			t.Errorf("%s (allow %v): %v, want %v", tc.addr, tc.allow, got, tc.want)
		}
	}
	if _, err := ParseNets("10.0.0.0/33"); err == nil {
		t.Error("a bad prefix was taken")
	}
}

// TestRunbookHTTPGuards: an http step may not reach the worker's
// loopback unless allowed; it sends only http credentials, only to the
// URLs of their scope, and follows no redirect out of that scope with
// the secret.
func TestRunbookHTTPGuards(t *testing.T) {
	ctx := context.Background()
	st, err := schema.Open(ctx, filepath.Join(t.TempDir(), "guard.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.MigrateUp(ctx); err != nil {
		t.Fatal(err)
	}
	key, _ := secret.ParseKey(secret.NewKey())
	keys, _ := secret.NewKeyring(key)

	var outsideHits atomic.Int32
	outside := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		outsideHits.Add(1)
		if r.Header.Get("Authorization") != "" {
			t.Errorf("the secret reached a server outside the scope: %q", r.Header.Get("Authorization"))
		}
	}))
	defer outside.Close()
	var gotAuth atomic.Value
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth.Store(r.Header.Get("Authorization"))
		if r.URL.Path == "/v1/bounce" {
			http.Redirect(w, r, outside.URL+"/x", http.StatusFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	defer api.Close()

	seal := func(c *schema.Credential, secretText string) *schema.Credential {
		c.CreatedBy = "admin"
		c.Secret = keys.Seal([]byte(secretText), c.SealContext())
		if err := st.CreateCredential(ctx, c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	seal(&schema.Credential{Name: "api-token", Kind: schema.CredHTTP, Auth: schema.CredPassword, Scope: api.URL + "/v1/"}, "tok-123")
	seal(&schema.Credential{Name: "root-ssh", Kind: schema.CredPassword, Auth: schema.CredPassword, Username: "root"}, "hunter2")

	guarded := &Runbooks{Store: st, Secrets: keys}
	if _, err := guarded.RunbookHTTP(ctx, RunbookHTTPInput{URL: api.URL + "/v1/ping"}); err == nil || !errors.Is(err, ErrAddressDenied) {
		t.Fatalf("loopback reached by default: %v", err)
	}

	a := &Runbooks{Store: st, Secrets: keys, HTTPAllowNets: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	res, err := a.RunbookHTTP(ctx, RunbookHTTPInput{URL: api.URL + "/v1/ping", Credential: "api-token"})
	if err != nil || res.Status != 200 || gotAuth.Load() != "Bearer tok-123" {
		t.Fatalf("in scope: %+v %v (auth %v)", res, err, gotAuth.Load())
	}
	for _, tc := range []struct{ url, cred, why string }{
		{api.URL + "/v1/ping", "root-ssh", "password credential"},
		{api.URL + "/v2/ping", "api-token", "may not be sent"},
		{api.URL + "/v1/../admin", "api-token", "may not be sent"},
		{outside.URL + "/v1/ping", "api-token", "may not be sent"},
	} {
		gotAuth.Store("")
		_, err := a.RunbookHTTP(ctx, RunbookHTTPInput{URL: tc.url, Credential: tc.cred})
		if err == nil || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("%s with %s: %v, want an error saying %q", tc.url, tc.cred, err, tc.why)
		}
		if gotAuth.Load() != "" {
			t.Errorf("%s with %s: a request was sent", tc.url, tc.cred)
		}
	}
	if _, err := a.RunbookHTTP(ctx, RunbookHTTPInput{URL: api.URL + "/v1/bounce", Credential: "api-token"}); err == nil || !strings.Contains(err.Error(), "outside credential") {
		t.Fatalf("redirect out of scope: %v", err)
	}
	if outsideHits.Load() != 0 {
		t.Fatalf("the redirect was followed (%d requests outside)", outsideHits.Load())
	}
}
