package api

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opsflow/opsflow/schema"
	"golang.org/x/crypto/ssh"
)

func newPrivateKeyPEM(t testing.TB) string {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	blk, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(blk))
}

func TestCredentialsAreSealedAndNeverReturned(t *testing.T) {
	e := newEnv(t)
	key := newPrivateKeyPEM(t)
	name := fmt.Sprintf("deploy-%d", time.Now().UnixNano())
	res := e.do(http.MethodPost, "/api/v1/credentials", "operator", map[string]string{"name": name, "kind": "ssh_key", "username": "root", "private_key": key})
	if res.Status != 201 {
		t.Fatalf("create: %d %s", res.Status, res.Body)
	}
	var cr schema.Credential
	res.json(t, &cr)
	if !strings.HasPrefix(cr.Fingerprint, "SHA256:") {
		t.Fatalf("fingerprint %q", cr.Fingerprint)
	}
	keyLine := strings.Split(key, "\n")[1]
	pw := e.do(http.MethodPost, "/api/v1/credentials", "operator", map[string]string{"name": name + "-pw", "kind": "password", "username": "ops", "password": "s3cret-Passw0rd"})
	for _, r := range []resp{res, pw, e.do(http.MethodGet, "/api/v1/credentials", "operator", nil), e.do(http.MethodGet, fmt.Sprintf("/api/v1/credentials/%d", cr.ID), "operator", nil)} {
		if r.Status >= 300 || strings.Contains(string(r.Body), keyLine) || strings.Contains(string(r.Body), "s3cret-Passw0rd") || strings.Contains(string(r.Body), "v1.") {
			t.Fatalf("secret leaked or call failed: %d %s", r.Status, r.Body)
		}
	}
	// At rest: sealed, and it opens only with the key and its own name.
	stored, err := e.store.Credential(context.Background(), cr.ID)
	if err != nil || strings.Contains(stored.Secret, keyLine) || !strings.HasPrefix(stored.Secret, "v1.") {
		t.Fatalf("stored %q %v", stored.Secret, err)
	}
	if pt, err := e.keys.Open(stored.Secret, stored.SealContext()); err != nil || string(pt) != key {
		t.Fatalf("open: %v", err)
	}
	// The audit log has the action, not the secret.
	es, _ := e.store.Audit(context.Background(), schema.AuditFilter{Action: "credential.create", Limit: 10})
	for _, a := range es {
		if strings.Contains(a.Detail+a.Target, "s3cret") {
			t.Fatalf("audit leaks: %+v", a)
		}
	}
	for _, c := range []struct {
		body  map[string]string
		field string
	}{
		{map[string]string{"name": name + "x", "kind": "ssh_key", "username": "root", "private_key": "not a key"}, "private_key"},
		{map[string]string{"name": name + "x", "kind": "token", "username": "root"}, "kind"},
		{map[string]string{"name": name + "x", "kind": "password", "username": "root"}, "password"},
		{map[string]string{"name": "bad name", "kind": "password", "username": "root", "password": "x"}, "name"},
		{map[string]string{"name": name + "x", "kind": "jump_host", "username": "root", "password": "x"}, "address"},
		{map[string]string{"name": name + "x", "kind": "jump_host", "username": "root", "address": "bastion:99999", "password": "x"}, "address"},
		{map[string]string{"name": name + "x", "kind": "jump_host", "username": "root", "address": "bastion", "password": "x", "host_key": "nope"}, "host_key"},
		{map[string]string{"name": name + "x", "kind": "jump_host", "username": "root", "address": "bastion"}, "private_key"},
		{map[string]string{"name": name + "x", "kind": "password", "username": "root", "password": "x", "address": "10.0.0.1"}, "address"},
		{map[string]string{"name": name + "x", "kind": "password", "username": "root", "password": "x", "jump_host": "nowhere"}, "jump_host"},
		{map[string]string{"name": name + "x", "kind": "password", "username": "root", "password": "x", "jump_host": name + "-pw"}, "jump_host"},
		{map[string]string{"name": name + "x", "kind": "local", "username": "root"}, "kind"},
	} {
		r := e.do(http.MethodPost, "/api/v1/credentials", "admin", c.body)
		if r.Status != 422 || r.apiError(t).Fields[c.field] == "" {
			t.Errorf("%v: %d %s", c.body, r.Status, r.Body)
		}
	}
	// Where a credential may be used, and going through a jump host,
	// are an admin's to decide.
	for _, body := range []map[string]any{
		{"name": name + "y", "kind": "password", "username": "root", "password": "x", "jump_host": name + "-pw"},
		{"name": name + "y", "kind": "password", "username": "root", "password": "x", "allow_unlisted_hosts": true},
		{"name": name + "y", "kind": "password", "username": "root", "password": "x", "scope": "env=prod"},
	} {
		if r := e.do(http.MethodPost, "/api/v1/credentials", "operator", body); r.Status != 403 {
			t.Errorf("operator %v: %d %s", body, r.Status, r.Body)
		}
	}
	if r := e.do(http.MethodPost, "/api/v1/credentials", "admin", map[string]any{"name": name + "y", "kind": "password", "username": "root", "password": "x", "scope": "env in (prod"}); r.Status != 422 || r.apiError(t).Fields["scope"] == "" {
		t.Errorf("bad scope: %d %s", r.Status, r.Body)
	}
	scopePath := fmt.Sprintf("/api/v1/credentials/%d", cr.ID)
	if r := e.do(http.MethodPatch, scopePath, "operator", map[string]any{"allow_unlisted_hosts": true}); r.Status != 403 {
		t.Errorf("operator widens a credential: %d %s", r.Status, r.Body)
	}
	if r := e.do(http.MethodPatch, scopePath, "admin", map[string]any{"scope": "env in (prod"}); r.Status != 422 || r.apiError(t).Fields["scope"] == "" {
		t.Errorf("bad scope: %d %s", r.Status, r.Body)
	}
	var scoped schema.Credential
	if r := e.do(http.MethodPatch, scopePath, "admin", map[string]any{"scope": "env=prod", "allow_unlisted_hosts": true}); r.Status != 200 {
		t.Errorf("admin scopes: %d %s", r.Status, r.Body)
	} else if r.json(t, &scoped); scoped.Scope != "env=prod" || !scoped.AllowUnlistedHosts {
		t.Errorf("scoped: %+v", scoped)
	}
	if r := e.do(http.MethodPost, "/api/v1/credentials", "viewer", map[string]string{}); r.Status != 403 {
		t.Fatalf("viewer: %d", r.Status)
	}
}

// TestHTTPCredentials: an http credential (for runbooks' http steps) is
// an admin's to create, needs the URL prefixes it may go to, never comes
// back in a response, and logs into no host.
func TestHTTPCredentials(t *testing.T) {
	e := newEnv(t)
	name := fmt.Sprintf("hook-token-%d", time.Now().UnixNano())
	body := map[string]any{"name": name, "kind": "http", "password": "tok-secret-42", "scope": "https://hooks.example.com/v1/"}
	if r := e.do(http.MethodPost, "/api/v1/credentials", "operator", body); r.Status != http.StatusForbidden {
		t.Fatalf("operator creates an http credential: %d %s", r.Status, r.Body)
	}
	for field, change := range map[string]map[string]any{
		"scope":    {"scope": ""},
		"password": {"password": ""},
		"address":  {"address": "10.0.0.1:22"},
	} {
		b := maps.Clone(body)
		maps.Copy(b, change)
		b["name"] = name + "-" + field
		r := e.do(http.MethodPost, "/api/v1/credentials", "admin", b)
		if r.Status != http.StatusUnprocessableEntity || !strings.Contains(string(r.Body), `"`+field+`"`) {
			t.Errorf("http credential with bad %s: %d %s", field, r.Status, r.Body)
		}
	}
	if b := maps.Clone(body); true {
		b["scope"], b["name"] = "env=prod", name+"-selector"
		if r := e.do(http.MethodPost, "/api/v1/credentials", "admin", b); r.Status != http.StatusUnprocessableEntity {
			t.Errorf("http credential scoped by a selector: %d %s", r.Status, r.Body)
		}
	}
	r := e.do(http.MethodPost, "/api/v1/credentials", "admin", body)
	if r.Status != http.StatusCreated || strings.Contains(string(r.Body), "tok-secret-42") {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	var cr schema.Credential
	r.json(t, &cr)
	sid := e.script(fmt.Sprintf("httpcred%d", time.Now().UnixNano()), "true", nil)
	j := e.do(http.MethodPost, "/api/v1/jobs", "admin", map[string]any{"script_id": sid, "credential_id": cr.ID,
		"targets": map[string]any{"hosts": []string{"10.0.0.1"}}})
	if j.Status != http.StatusUnprocessableEntity || !strings.Contains(string(j.Body), "credential_id") {
		t.Fatalf("job logging in with an http credential: %d %s", j.Status, j.Body)
	}
	if r := e.do(http.MethodPatch, fmt.Sprintf("/api/v1/credentials/%d", cr.ID), "admin", map[string]any{"scope": "ftp://x/"}); r.Status != http.StatusUnprocessableEntity {
		t.Fatalf("rescoped to a bad URL: %d %s", r.Status, r.Body)
	}
	if r := e.do(http.MethodPatch, fmt.Sprintf("/api/v1/credentials/%d", cr.ID), "admin", map[string]any{"scope": "https://hooks.example.com/v2/"}); r.Status != http.StatusOK {
		t.Fatalf("rescope: %d %s", r.Status, r.Body)
	}
}
