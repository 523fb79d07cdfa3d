package api

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/opsflow/opsflow/internal/testenv"
	"github.com/opsflow/opsflow/schema"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/ssh"
)

// TestAdminPagesInBrowser: an admin creates an operator and a viewer,
// uploads an SSH key file as a credential and scopes it, creates a group
// and a two-level policy; the operator changes their password and makes,
// sees once, and revokes an API token; the viewer is refused the admin
// pages. Every step goes through the pages only.
func TestAdminPagesInBrowser(t *testing.T) {
	e := newEnvWith(t, envOptions{noWorkers: true})
	admin := e.createUser(schema.RoleAdmin, "admin-password-1")
	ctx, cancel := context.WithTimeout(testenv.Browser(t), 150*time.Second)
	defer cancel()
	do, text := browserSteps(t, ctx)
	bg := context.Background()
	html := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("html of %s: %v", sel, err)
		}
		return s
	}
	value := func(id string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Value(chromedp.ID(id)))
		if err != nil {
			t.Fatalf("value of %s: %v", id, err)
		}
		return s
	}
	e.browserLogin(ctx, admin.Username, "admin-password-1")

	// Users: a refused form keeps what was typed and names the field.
	opName, viewerName := uniq(t, "op"), uniq(t, "vw")
	do("users page", chromedp.Navigate(e.srv.URL+"/users"), chromedp.WaitVisible(chromedp.ID("user-form")))
	do("short password", chromedp.SendKeys(chromedp.ID("u-username"), opName), chromedp.SetValue(chromedp.ID("u-role"), schema.RoleOperator),
		chromedp.SendKeys(chromedp.ID("u-password"), "short"), chromedp.Click(chromedp.ID("create-user")), chromedp.WaitVisible(chromedp.ID("err-u-password")))
	if v, r := value("u-username"), value("u-role"); v != opName || r != schema.RoleOperator {
		t.Fatalf("refused form lost its input: username %q role %q", v, r)
	}
	do("create operator", chromedp.SendKeys(chromedp.ID("u-password"), "operator-initial-1"), chromedp.Click(chromedp.ID("create-user")), chromedp.WaitVisible(chromedp.ID("flash")))
	// Each step starts from a page without a flash, so waiting for the
	// flash waits for that step's answer.
	do("create viewer", chromedp.Navigate(e.srv.URL+"/users"), chromedp.WaitVisible(chromedp.ID("user-form")), chromedp.SendKeys(chromedp.ID("u-username"), viewerName), chromedp.SetValue(chromedp.ID("u-role"), schema.RoleViewer),
		chromedp.SendKeys(chromedp.ID("u-password"), "viewer-initial-1"), chromedp.Click(chromedp.ID("create-user")), chromedp.WaitVisible(chromedp.ID("flash")))
	for name, role := range map[string]string{opName: schema.RoleOperator, viewerName: schema.RoleViewer} {
		if row := html(`tr[data-user="` + name + `"] td.role`); !strings.Contains(row, ">"+role+"<") {
			t.Fatalf("users list row of %s: %s", name, row)
		}
		u, err := e.store.UserByUsername(bg, name)
		if err != nil || u.Role != role {
			t.Fatalf("stored user %s: %+v %v", name, u, err)
		}
	}

	// Credentials: an SSH key from a file, scoped on creation, rescoped.
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(block)
	keyFile := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	signer, _ := ssh.NewSignerFromKey(priv)
	credName := uniq(t, "key")
	do("credential from a key file", chromedp.Navigate(e.srv.URL+"/credentials"), chromedp.WaitVisible(chromedp.ID("credential-form")),
		chromedp.SendKeys(chromedp.ID("c-name"), credName), chromedp.SendKeys(chromedp.ID("c-username"), "deploy"),
		chromedp.SetUploadFiles(chromedp.ID("c-key-file"), []string{keyFile}),
		chromedp.SendKeys(chromedp.ID("c-scope"), "env=prod"), chromedp.Click(chromedp.ID("c-unlisted")),
		chromedp.Click(chromedp.ID("create-credential")), chromedp.WaitVisible(chromedp.ID("flash")))
	cr, err := e.store.CredentialByName(bg, credName)
	if err != nil {
		t.Fatal(err)
	}
	if cr.Kind != schema.CredSSHKey || cr.Scope != "env=prod" || !cr.AllowUnlistedHosts || cr.Fingerprint != ssh.FingerprintSHA256(signer.PublicKey()) {
		t.Fatalf("stored credential %+v", cr)
	}
	if cr.Secret == "" || strings.Contains(cr.Secret, "PRIVATE KEY") || strings.Contains(cr.Secret, string(keyPEM[40:80])) {
		t.Fatalf("secret not sealed: %q", cr.Secret)
	}
	page := html("main")
	if !strings.Contains(page, credName) || strings.Contains(page, "PRIVATE KEY") || strings.Contains(page, string(keyPEM[40:80])) {
		t.Fatalf("credentials page lacks the credential or shows its secret")
	}
	id := strconv.FormatInt(cr.ID, 10)
	do("rescope", chromedp.Navigate(e.srv.URL+"/credentials"), chromedp.WaitVisible(chromedp.ID("credential-form")), chromedp.SetValue(chromedp.ID("scope-"+id), "env=staging"), chromedp.Click(chromedp.ID("unlisted-"+id)),
		chromedp.Click(chromedp.ID("save-scope-"+id)), chromedp.WaitVisible(chromedp.ID("flash")))
	if cr, err = e.store.Credential(bg, cr.ID); err != nil || cr.Scope != "env=staging" || cr.AllowUnlistedHosts {
		t.Fatalf("rescoped credential %+v %v", cr, err)
	}

	// A group and a two-level policy naming it.
	group, policy := uniq(t, "grp"), uniq(t, "pol")
	do("group", chromedp.Navigate(e.srv.URL+"/groups"), chromedp.WaitVisible(chromedp.ID("group-form")),
		chromedp.SendKeys(chromedp.ID("g-name"), group), chromedp.SendKeys(chromedp.ID("g-members"), opName+", "+admin.Username),
		chromedp.Click(chromedp.ID("create-group")), chromedp.WaitVisible(chromedp.ID("flash")))
	if gs, _ := e.store.Groups(bg); strings.Join(gs[group], ",") != strings.Join([]string{admin.Username, opName}, ",") && strings.Join(gs[group], ",") != opName+","+admin.Username {
		t.Fatalf("group members %v", gs[group])
	}
	do("policy, first level", chromedp.Navigate(e.srv.URL+"/policies"), chromedp.WaitVisible(chromedp.ID("policy-form")),
		chromedp.SendKeys(chromedp.ID("p-name"), policy), chromedp.SendKeys(chromedp.ID("p-l0-users"), admin.Username),
		chromedp.Click(chromedp.ID("p-l0-role-approver")), chromedp.SetValue(chromedp.ID("p-l0-rule"), schema.RuleAll),
		chromedp.Click(chromedp.ID("add-level")), chromedp.WaitVisible(chromedp.ID("level-1")))
	if v := value("p-l0-users"); v != admin.Username {
		t.Fatalf("adding a level lost level 1's users: %q", v)
	}
	do("policy, second level", chromedp.SendKeys(chromedp.ID("p-l1-groups"), group), chromedp.SetValue(chromedp.ID("p-l1-rule"), schema.RuleQuorum),
		chromedp.SendKeys(chromedp.ID("p-l1-quorum"), "1"), chromedp.SendKeys(chromedp.ID("p-l1-timeout"), "4h"),
		chromedp.SetValue(chromedp.ID("p-l1-on-timeout"), schema.OnTimeoutReject),
		chromedp.Click(chromedp.ID("save-policy")), chromedp.WaitVisible(chromedp.CSS(`section[data-policy="`+policy+`"]`)))
	if n := strings.Count(html(`section[data-policy="`+policy+`"] ol.levels`), "<li>"); n != 2 {
		t.Fatalf("policy lists %d levels", n)
	}
	p, err := e.store.ApprovalPolicyByName(bg, policy)
	if err != nil {
		t.Fatal(err)
	}
	if l := p.Spec.Levels; len(l) != 2 || l[0].Rule != schema.RuleAll || strings.Join(l[0].Roles, ",") != schema.RoleApprover ||
		strings.Join(l[1].Groups, ",") != group || l[1].Quorum != 1 || l[1].Timeout != "4h" || l[1].OnTimeout != schema.OnTimeoutReject {
		t.Fatalf("stored policy %+v", p.Spec)
	}

	// The operator changes their password: the old one stops working.
	e.browserLogin(ctx, opName, "operator-initial-1")
	do("change password", chromedp.Navigate(e.srv.URL+"/account"), chromedp.WaitVisible(chromedp.ID("password-form")),
		chromedp.SendKeys(chromedp.ID("pw-current"), "wrong-password-0"), chromedp.SendKeys(chromedp.ID("pw-new"), "operator-changed-2"),
		chromedp.SendKeys(chromedp.ID("pw-confirm"), "operator-changed-2"), chromedp.Click(chromedp.ID("change-password")),
		chromedp.WaitVisible(chromedp.ID("err-pw-current")),
		chromedp.SendKeys(chromedp.ID("pw-current"), "operator-initial-1"), chromedp.SendKeys(chromedp.ID("pw-new"), "operator-changed-2"),
		chromedp.SendKeys(chromedp.ID("pw-confirm"), "operator-changed-2"), chromedp.Click(chromedp.ID("change-password")),
		chromedp.WaitVisible(chromedp.ID("flash")))
	do("old password refused", chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("login")),
		chromedp.SendKeys(chromedp.ID("username"), opName), chromedp.SendKeys(chromedp.ID("password"), "operator-initial-1"),
		chromedp.Click(chromedp.ID("login")), chromedp.WaitVisible(chromedp.ID("login-error")))
	e.browserLogin(ctx, opName, "operator-changed-2")

	// A token is shown once, then only by name and prefix; revoked, it
	// no longer authenticates.
	do("create token", chromedp.Navigate(e.srv.URL+"/account"), chromedp.WaitVisible(chromedp.ID("token-form")),
		chromedp.SendKeys(chromedp.ID("t-name"), "ci-deploy"), chromedp.Click(chromedp.ID("create-token")), chromedp.WaitVisible(chromedp.ID("new-token")))
	token := value("new-token")
	if !strings.HasPrefix(token, tokenPrefix) || len(token) < 20 {
		t.Fatalf("new token %q", token)
	}
	if st := bearerStatus(t, e, token); st != http.StatusOK {
		t.Fatalf("new token: /api/v1/me answered %d", st)
	}
	do("account again", chromedp.Navigate(e.srv.URL+"/account"), chromedp.WaitVisible(chromedp.ID("tokens")))
	if tbl := html("#tokens"); strings.Contains(html("main"), token) || !strings.Contains(tbl, "ci-deploy") || !strings.Contains(tbl, token[:10]) {
		t.Fatalf("token shown again, or its name/prefix missing: %s", tbl)
	}
	me, _ := e.store.UserByUsername(bg, opName)
	ts, _ := e.store.Tokens(bg, me.ID)
	if len(ts) != 1 {
		t.Fatalf("operator's tokens: %+v", ts)
	}
	tid := strconv.FormatInt(ts[0].ID, 10)
	do("revoke token", chromedp.Click(chromedp.ID("revoke-"+tid)), chromedp.WaitVisible(chromedp.ID("confirm-message")),
		chromedp.Click(chromedp.ID("confirm-yes")), chromedp.WaitVisible(chromedp.ID("flash")))
	if s := text(`tokens`); !strings.Contains(s, "revoked") {
		t.Fatalf("tokens after revoking: %q", s)
	}
	if st := bearerStatus(t, e, token); st != http.StatusUnauthorized {
		t.Fatalf("revoked token: /api/v1/me answered %d", st)
	}

	// The viewer is refused the admin pages and sees no admin forms.
	e.browserLogin(ctx, viewerName, "viewer-initial-1")
	for _, path := range []string{"/users", "/credentials", "/groups", "/chat-identities"} {
		res, err := chromedp.Run(ctx, chromedp.NavigateResponse(e.srv.URL+path))
		if err != nil || res.Status != http.StatusForbidden {
			t.Fatalf("viewer on %s: %v %v", path, res, err)
		}
		if h := html("main"); strings.Contains(h, "<form") {
			t.Fatalf("viewer's %s has a form: %s", path, h)
		}
	}
	do("policies read-only", chromedp.Navigate(e.srv.URL+"/policies"), chromedp.WaitVisible(chromedp.CSS(`section[data-policy="`+policy+`"]`)))
	if h := html("main"); strings.Contains(h, `id="policy-form"`) || strings.Contains(h, "/delete") {
		t.Fatalf("viewer sees policy editing")
	}
	for _, path := range []string{"/users", "/credentials", "/policies", "/groups", "/risk-rules", "/chat-identities"} {
		if res := e.do(http.MethodPost, path, schema.RoleViewer, nil); res.Status != http.StatusForbidden {
			t.Fatalf("viewer POST %s: %d", path, res.Status)
		}
	}
}

func bearerStatus(t *testing.T, e *env, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/api/v1/me", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// TestAdminMaintenanceInBrowser walks the admin's upkeep forms: reset a
// user's password, disable them (confirmed; they can no longer log in)
// and enable them again; edit a policy's level; add and delete a risk
// rule; forget a host key; link and unlink a chat account. The setup
// (users, a policy, a recorded key) is written to the store; every change
// under test goes through the pages.
func TestAdminMaintenanceInBrowser(t *testing.T) {
	e := newEnvWith(t, envOptions{noWorkers: true})
	bg := context.Background()
	admin := e.createUser(schema.RoleAdmin, "admin-password-1")
	user := e.createUser(schema.RoleOperator, "operator-initial-1")
	policy := "maint-" + strconv.FormatInt(time.Now().UnixNano(), 36) // an id a CSS selector takes as it is
	if err := e.store.SaveApprovalPolicy(bg, &schema.ApprovalPolicy{Name: policy, Spec: schema.ApprovalPolicySpec{
		Levels: []schema.ApprovalLevel{{ApproverSet: schema.ApproverSet{Users: []string{admin.Username}}, Rule: schema.RuleAny, Timeout: "1h"}}}}); err != nil {
		t.Fatal(err)
	}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	sshPub, _ := ssh.NewPublicKey(pub)
	keyAddr := "10.250.0.7:22"
	if _, err := e.store.RecordHostKey(bg, keyAddr, 0, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub)))); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(testenv.Browser(t), 150*time.Second)
	defer cancel()
	do, _ := browserSteps(t, ctx)
	e.browserLogin(ctx, admin.Username, "admin-password-1")
	uid := strconv.FormatInt(user.ID, 10)
	stored := func() *schema.User {
		t.Helper()
		u, err := e.store.UserByUsername(bg, user.Username)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}

	// Reset the password; disable, confirmed; enable.
	do("reset password", chromedp.Navigate(e.srv.URL+"/users"), chromedp.WaitVisible(chromedp.ID("users")),
		chromedp.SendKeys(chromedp.ID("pw-"+uid), "operator-reset-22"), chromedp.Click(chromedp.ID("reset-pw-"+uid)), chromedp.WaitVisible(chromedp.ID("flash")))
	if bcrypt.CompareHashAndPassword([]byte(stored().PasswordHash), []byte("operator-reset-22")) != nil {
		t.Fatal("the reset password does not check")
	}
	do("disable", chromedp.Navigate(e.srv.URL+"/users"), chromedp.WaitVisible(chromedp.ID("users")),
		chromedp.Click(chromedp.ID("disable-"+uid)), chromedp.WaitVisible(chromedp.ID("confirm-message")))
	if stored().Disabled {
		t.Fatal("the confirmation page disabled the user")
	}
	do("confirm disable", chromedp.Click(chromedp.ID("confirm-yes")), chromedp.WaitVisible(chromedp.ID("flash")))
	if !stored().Disabled {
		t.Fatal("user not disabled")
	}
	// The list says so; a read while the page loads counts as not yet.
	eventually(t, 30*time.Second, "the users list to show the user disabled", func() bool {
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`tr[data-user="`+user.Username+`"] td.state`)))
		return err == nil && strings.Contains(s, "disabled")
	})
	if ck, _ := e.trySessionLogin(user.Username, "operator-reset-22"); ck != nil {
		t.Fatal("a disabled user logged in")
	}
	// From a page without a flash, so that waiting for the flash waits
	// for this step's answer.
	do("enable", chromedp.Navigate(e.srv.URL+"/users"), chromedp.WaitVisible(chromedp.ID("users")),
		chromedp.Click(chromedp.ID("enable-"+uid)), chromedp.WaitVisible(chromedp.ID("flash")))
	if stored().Disabled {
		t.Fatal("user still disabled")
	}
	if ck, _ := e.trySessionLogin(user.Username, "operator-reset-22"); ck == nil {
		t.Fatal("the enabled user cannot log in with the reset password")
	}

	// Edit the policy: the form comes filled in; a changed timeout is saved.
	do("edit policy", chromedp.Navigate(e.srv.URL+"/policies"), chromedp.WaitVisible(chromedp.ID("edit-"+policy)),
		chromedp.Click(chromedp.ID("edit-"+policy)), chromedp.WaitVisible(chromedp.ID("p-l0-timeout")))
	if v, _ := chromedp.Run(ctx, chromedp.Value(chromedp.ID("p-l0-users"))); v != admin.Username {
		t.Fatalf("the edit form's level users: %q", v)
	}
	do("save policy", chromedp.SetValue(chromedp.ID("p-l0-timeout"), "8h"), chromedp.Click(chromedp.ID("save-policy")),
		chromedp.WaitVisible(chromedp.ID("flash")))
	if p, err := e.store.ApprovalPolicyByName(bg, policy); err != nil || p.Spec.Levels[0].Timeout != "8h" || p.Spec.Levels[0].Users[0] != admin.Username {
		t.Fatalf("edited policy %+v %v", p, err)
	}

	// A risk rule added and deleted (confirmed).
	pattern := `opsflow-maintenance-` + strconv.FormatInt(time.Now().UnixNano(), 36)
	do("add rule", chromedp.Navigate(e.srv.URL+"/risk-rules"), chromedp.WaitVisible(chromedp.ID("rule-form")),
		chromedp.SendKeys(chromedp.ID("r-pattern"), pattern), chromedp.SetValue(chromedp.ID("r-action"), "block"),
		chromedp.Click(chromedp.ID("create-rule")), chromedp.WaitVisible(chromedp.ID("flash")))
	rule := func() *schema.RiskRule {
		rs, err := e.store.RiskRules(bg)
		if err != nil {
			t.Fatal(err)
		}
		for i := range rs {
			if rs[i].Pattern == pattern {
				return &rs[i]
			}
		}
		return nil
	}
	r := rule()
	if r == nil || r.Action != "block" || r.CreatedBy != admin.Username {
		t.Fatalf("stored rule %+v", r)
	}
	do("delete rule", chromedp.Click(chromedp.ID("delete-rule-"+strconv.FormatInt(r.ID, 10))), chromedp.WaitVisible(chromedp.ID("confirm-message")),
		chromedp.Click(chromedp.ID("confirm-yes")), chromedp.WaitVisible(chromedp.ID("flash")))
	if rule() != nil {
		t.Fatal("rule kept")
	}

	// Forget a recorded host key (confirmed).
	do("forget host key", chromedp.Navigate(e.srv.URL+"/credentials"), chromedp.WaitVisible(chromedp.ID("host-keys")),
		chromedp.Click(chromedp.CSS(`button[data-address="`+keyAddr+`"]`)), chromedp.WaitVisible(chromedp.ID("confirm-message")),
		chromedp.Click(chromedp.ID("confirm-yes")), chromedp.WaitVisible(chromedp.ID("flash")))
	if keys, _ := e.store.HostKeys(bg, "", 1000); slices.ContainsFunc(keys, func(k schema.HostKey) bool { return k.Address == keyAddr }) {
		t.Fatal("host key kept")
	}

	// Link a chat account to the user, then unlink it.
	chatID := "U" + strings.ToUpper(strconv.FormatInt(time.Now().UnixNano(), 36))
	do("link chat account", chromedp.Navigate(e.srv.URL+"/chat-identities"), chromedp.WaitVisible(chromedp.ID("chat-form")),
		chromedp.SetValue(chromedp.ID("ci-provider"), "slack"), chromedp.SendKeys(chromedp.ID("ci-external"), chatID),
		chromedp.SetValue(chromedp.ID("ci-user"), user.Username), chromedp.Click(chromedp.ID("link-chat")), chromedp.WaitVisible(chromedp.ID("flash")))
	if u, err := e.store.ChatUser(bg, "slack", chatID); err != nil || u.Username != user.Username {
		t.Fatalf("linked account: %+v %v", u, err)
	}
	do("unlink chat account", chromedp.Navigate(e.srv.URL+"/chat-identities"), chromedp.WaitVisible(chromedp.ID("chat-form")),
		chromedp.Click(chromedp.ID("unlink-slack-"+chatID)), chromedp.WaitVisible(chromedp.ID("flash")))
	if _, err := e.store.ChatUser(bg, "slack", chatID); !errors.Is(err, schema.ErrNotFound) {
		t.Fatalf("unlinked account still maps: %v", err)
	}
}
