package api

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opsflow/opsflow/schema"
)

// postForm posts a form as role (by its bearer token) and returns the
// status and body.
func (e *env) postForm(path, role string, form url.Values) (int, string) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+e.tokens[role])
	res, err := httpClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestAccountAndAdminForms: a decider delegates from the account page, a
// refused form keeps its input and names the field, the delegation is
// listed and ended; a viewer may not delegate. On a database without
// credentials, the discovery form says so. Refused policy and credential
// forms come back with their input (never a secret) and the reason next
// to the field; an operator sees credentials but cannot scope them.
func TestAccountAndAdminForms(t *testing.T) {
	e := newEnvWith(t, envOptions{sqlite: true, noWorkers: true})
	ctx := context.Background()
	from, to := e.users[schema.RoleApprover], e.users[schema.RoleOperator]
	ends := time.Now().UTC().Add(48 * time.Hour).Format("2006-01-02T15:04")

	status, body := e.postForm("/account/delegations", schema.RoleApprover, url.Values{"to": {to.Username}})
	if status != http.StatusUnprocessableEntity || !strings.Contains(body, "required: when the delegation ends") || !strings.Contains(body, `value="`+to.Username+`"`) {
		t.Fatalf("no end: %d %s", status, body)
	}
	status, body = e.postForm("/account/delegations", schema.RoleApprover, url.Values{"to": {"nobody-" + to.Username}, "ends_at": {ends}})
	if status != http.StatusUnprocessableEntity || !strings.Contains(body, "no such user") {
		t.Fatalf("unknown user: %d %s", status, body)
	}
	if status, _ = e.postForm("/account/delegations", schema.RoleApprover, url.Values{"to": {to.Username}, "ends_at": {ends}}); status != http.StatusSeeOther {
		t.Fatalf("delegate: %d", status)
	}
	ds, err := e.store.Delegations(ctx, from.Username, time.Now().UTC())
	if err != nil || len(ds) != 1 || ds[0].To != to.Username || ds[0].EndsAt.Format("2006-01-02T15:04") != ends {
		t.Fatalf("delegations %+v %v", ds, err)
	}
	if who, _ := e.store.DelegatorsOf(ctx, to.Username, time.Now().UTC()); len(who) != 1 {
		t.Fatalf("delegators of %s: %v", to.Username, who)
	}
	if res := e.do(http.MethodGet, "/account", schema.RoleApprover, nil); !strings.Contains(string(res.Body), "end-delegation-"+strconv.FormatInt(ds[0].ID, 10)) {
		t.Fatalf("account page does not list the delegation")
	}
	end := "/account/delegations/" + strconv.FormatInt(ds[0].ID, 10) + "/end"
	if status, _ = e.postForm(end, schema.RoleOperator, nil); status != http.StatusNotFound {
		t.Fatalf("ended by its receiver: %d", status)
	}
	if status, _ = e.postForm(end, schema.RoleApprover, nil); status != http.StatusSeeOther {
		t.Fatalf("end: %d", status)
	}
	if who, _ := e.store.DelegatorsOf(ctx, to.Username, time.Now().UTC()); len(who) != 0 {
		t.Fatalf("delegation still running: %v", who)
	}
	if status, _ = e.postForm("/account/delegations", schema.RoleViewer, url.Values{"to": {to.Username}, "ends_at": {ends}}); status != http.StatusForbidden {
		t.Fatalf("viewer delegates: %d", status)
	}
	if res := e.do(http.MethodGet, "/account", schema.RoleViewer, nil); strings.Contains(string(res.Body), "delegation-form") {
		t.Fatal("viewer is offered the delegation form")
	}

	for role, want := range map[string]string{schema.RoleOperator: "Ask an admin", schema.RoleAdmin: `href="/credentials"`} {
		res := e.do(http.MethodGet, "/cmdb/discover", role, nil)
		if b := string(res.Body); res.Status != http.StatusOK || !strings.Contains(b, `id="no-credentials"`) || !strings.Contains(b, want) {
			t.Fatalf("discovery form as %s without credentials: %d %s", role, res.Status, b)
		}
	}

	admin := e.users[schema.RoleAdmin].Username
	status, body = e.postForm("/policies", schema.RoleAdmin, url.Values{"name": {"pol-a"}, "levels": {"2"}, "l0_users": {admin}, "l0_rule": {"any"},
		"l1_users": {to.Username}, "l1_rule": {"quorum"}, "l1_quorum": {"abc"}, "op": {"save"}})
	if status != http.StatusUnprocessableEntity || !strings.Contains(body, `id="err-p-l1-quorum"`) || !strings.Contains(body, `value="`+admin+`"`) {
		t.Fatalf("quorum not a number: %d %s", status, body)
	}
	status, body = e.postForm("/policies", schema.RoleAdmin, url.Values{"name": {"pol-a"}, "levels": {"2"}, "l0_users": {admin}, "l0_rule": {"any"},
		"l1_users": {to.Username}, "l1_rule": {"quorum"}, "l1_quorum": {"5"}, "op": {"save"}})
	if status != http.StatusUnprocessableEntity || !strings.Contains(body, "5 approvals from 1 users can never happen") {
		t.Fatalf("impossible quorum: %d %s", status, body)
	}
	if _, err := e.store.ApprovalPolicyByName(ctx, "pol-a"); err == nil {
		t.Fatal("a refused policy was saved")
	}
	if status, body = e.postForm("/policies", schema.RoleAdmin, url.Values{"name": {"pol-a"}, "levels": {"1"}, "l0_users": {admin}, "op": {"add_level"}}); status != http.StatusOK ||
		!strings.Contains(body, `id="level-1"`) || !strings.Contains(body, `value="pol-a"`) {
		t.Fatalf("add level: %d %s", status, body)
	}

	status, body = e.postForm("/credentials", schema.RoleAdmin, url.Values{"name": {"cred-a"}, "kind": {"ssh_key"}, "username": {"deploy"},
		"private_key": {"not-a-key-material"}, "passphrase": {"pass-phrase-xyz"}, "scope": {"env=prod"}})
	if status != http.StatusUnprocessableEntity || !strings.Contains(body, `id="err-c-key"`) || !strings.Contains(body, `value="cred-a"`) ||
		!strings.Contains(body, `value="env=prod"`) || strings.Contains(body, "not-a-key-material") || strings.Contains(body, "pass-phrase-xyz") {
		t.Fatalf("refused credential: %d %s", status, body)
	}
	if res := e.do(http.MethodGet, "/credentials", schema.RoleOperator, nil); res.Status != http.StatusOK || strings.Contains(string(res.Body), `/scope"`) {
		t.Fatalf("operator's credentials page: %d", res.Status)
	}
	if status, _ = e.postForm("/credentials/1/scope", schema.RoleOperator, url.Values{"scope": {""}}); status != http.StatusForbidden {
		t.Fatalf("operator scopes a credential: %d", status)
	}
}
