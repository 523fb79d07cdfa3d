package api

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opsflow/opsflow/internal/testenv"
	"github.com/opsflow/opsflow/schema"
	"github.com/opsflow/opsflow/workflows"
)

// gitRepo is a real repository made with the git CLI.
type gitRepo struct {
	t   *testing.T
	dir string
}

func newGitRepo(t *testing.T) *gitRepo {
	t.Helper()
	r := &gitRepo{t: t, dir: t.TempDir()}
	r.git("init", "-q", "-b", "main")
	r.git("config", "user.email", "dev@example.com")
	r.git("config", "user.name", "dev")
	r.git("config", "commit.gpgsign", "false")
	return r
}

func (r *gitRepo) git(args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = r.dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// commit writes files (content "" removes one) and commits; it returns
// the commit's SHA.
func (r *gitRepo) commit(msg string, files map[string]string) string {
	r.t.Helper()
	for name, content := range files {
		p := filepath.Join(r.dir, name)
		if content == "" {
			r.git("rm", "-q", name)
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			r.t.Fatal(err)
		}
		r.git("add", name)
	}
	r.git("commit", "-q", "-m", msg)
	return r.git("rev-parse", "HEAD")
}

// gitNames are one test's object names, unique in the package's database.
type gitNames struct {
	source, runbook, script, policy, ciType, rule string
}

func newGitNames(t *testing.T) gitNames {
	n := time.Now().UnixNano()
	return gitNames{source: fmt.Sprintf("src-%d", n), runbook: fmt.Sprintf("rb-%d", n), script: fmt.Sprintf("sc-%d", n),
		policy: fmt.Sprintf("pol-%d", n), ciType: fmt.Sprintf("gt_%d", n), rule: fmt.Sprintf(`\bgitops_%d\b`, n)}
}

func (n gitNames) files() map[string]string {
	return map[string]string{
		"README.md":      "not opsflow's\n",
		"ops/other.yaml": "apiVersion: v1\nkind: ConfigMap\n", // another tool's file: ignored
		"docs/runbook.yaml": "apiVersion: opsflow/v1\nkind: Runbook\nmetadata:\n  name: " + n.runbook + "\n" +
			"steps:\n  - id: hello\n    kind: notify\n    with: {channel: web, message: hello}\n",
		"docs/script.yaml":          "apiVersion: opsflow/v1\nkind: Script\nmetadata:\n  name: " + n.script + "\nspec:\n  description: restart\n  content: |\n    echo one\n  interpreter: bash\n",
		"docs/policies/policy.yaml": "apiVersion: opsflow/v1\nkind: ApprovalPolicy\nmetadata:\n  name: " + n.policy + "\nspec:\n  levels:\n    - roles: [approver]\n      rule: any\n",
		"docs/rule.yaml":            "apiVersion: opsflow/v1\nkind: RiskRule\nspec:\n  pattern: '" + n.rule + "'\n  action: approval\n  description: from git\n",
		"docs/type.yaml": "apiVersion: opsflow/v1\nkind: CMDBType\nmetadata:\n  name: " + n.ciType + "\nspec:\n  description: from git\n  attributes:\n" +
			"    - {name: owner, type: string}\n",
	}
}

// waitGitSync waits for the sync workflow the answer started and returns
// the source's newest sync.
func (e *env) waitGitSync(t *testing.T, source string, started resp) schema.GitSync {
	t.Helper()
	if started.Status != http.StatusAccepted {
		t.Fatalf("sync: %d %s", started.Status, started.Body)
	}
	var s gitSyncStarted
	started.json(t, &s)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_ = e.temporal.GetWorkflow(ctx, s.WorkflowID, s.RunID).Get(ctx, nil) // a failed sync fails its workflow
	var list struct{ Items []schema.GitSync }
	e.do("GET", "/api/v1/git-sources/"+source+"/syncs", schema.RoleViewer, nil).json(t, &list)
	if len(list.Items) == 0 || list.Items[0].RunID != s.RunID {
		t.Fatalf("no sync recorded for run %s: %+v", s.RunID, list.Items)
	}
	return list.Items[0]
}

func planOf(s schema.GitSync) map[string]string {
	out := map[string]string{}
	for _, c := range s.Plan {
		out[c.Kind+"/"+c.Name] = c.Action
	}
	return out
}

func TestGitOpsSyncPlansAppliesPrunesAndRefusesBadCommits(t *testing.T) {
	e := newEnv(t)
	repo := newGitRepo(t)
	n := newGitNames(t)
	sha1 := repo.commit("first", n.files())

	res := e.do("POST", "/api/v1/git-sources", schema.RoleAdmin, map[string]any{
		"name": n.source, "url": "file://" + repo.dir, "branch": "main", "path": "docs", "prune": true})
	if res.Status != http.StatusCreated {
		t.Fatalf("create source: %d %s", res.Status, res.Body)
	}
	var created gitSourceView
	res.json(t, &created)
	if len(created.WebhookSecret) != 64 || !strings.HasSuffix(created.WebhookURL, "/hooks/git/"+n.source) {
		t.Fatalf("create answer: %s", res.Body)
	}
	// The secret is shown once.
	if b := e.do("GET", "/api/v1/git-sources/"+n.source, schema.RoleViewer, nil); b.Status != 200 || strings.Contains(string(b.Body), created.WebhookSecret) {
		t.Fatalf("get source: %d %s", b.Status, b.Body)
	}

	// A dry run plans every object and changes nothing.
	dry := e.waitGitSync(t, n.source, e.do("POST", "/api/v1/git-sources/"+n.source+"/sync?dry_run=true", schema.RoleAdmin, nil))
	want := map[string]string{"Runbook/" + n.runbook: "create", "Script/" + n.script: "create", "ApprovalPolicy/" + n.policy: "create",
		"RiskRule/" + n.rule: "create", "CMDBType/" + n.ciType: "create"}
	if dry.Status != schema.SyncPlanned || !dry.DryRun || dry.SHA != sha1 || fmt.Sprint(planOf(dry)) != fmt.Sprint(want) {
		t.Fatalf("dry run: %+v, plan %v", dry, planOf(dry))
	}
	if r := e.do("GET", "/api/v1/runbooks/"+n.runbook, schema.RoleViewer, nil); r.Status != 404 {
		t.Fatalf("dry run created the runbook: %d", r.Status)
	}

	// The sync applies it.
	s1 := e.waitGitSync(t, n.source, e.do("POST", "/api/v1/git-sources/"+n.source+"/sync", schema.RoleAdmin, nil))
	if s1.Status != schema.SyncApplied || s1.SHA != sha1 || len(s1.Plan) != 5 {
		t.Fatalf("first sync: %+v", s1)
	}
	for _, p := range []string{"/api/v1/runbooks/" + n.runbook, "/api/v1/approval-policies/" + n.policy, "/api/v1/cmdb/types/" + n.ciType} {
		if r := e.do("GET", p, schema.RoleViewer, nil); r.Status != 200 {
			t.Fatalf("GET %s: %d %s", p, r.Status, r.Body)
		}
	}
	ctx := context.Background()
	sc, err := e.store.ScriptByName(ctx, n.script)
	if err != nil {
		t.Fatal(err)
	}
	rule, err := e.store.RiskRuleByPattern(ctx, n.rule)
	if err != nil || rule.Action != "approval" {
		t.Fatalf("risk rule: %+v %v", rule, err)
	}
	// Every change is audited with the commit.
	audits, err := e.store.Audit(ctx, schema.AuditFilter{Actor: "git:" + n.source, Limit: 50})
	if err != nil {
		t.Fatal(err)
	}
	if len(audits) != 5 {
		t.Fatalf("audit rows: %+v", audits)
	}
	for _, a := range audits {
		if a.Action != "gitops.create" || !strings.Contains(a.Detail, "sha="+sha1) {
			t.Fatalf("audit row without the commit: %+v", a)
		}
	}

	// Managed objects refuse the API's writes, naming the source.
	refused := []resp{
		e.do("PUT", "/api/v1/approval-policies/"+n.policy, schema.RoleAdmin, map[string]any{"levels": []map[string]any{{"roles": []string{"approver"}, "rule": "all"}}}),
		e.do("POST", "/api/v1/approval-policies", schema.RoleAdmin, map[string]any{"name": n.policy, "levels": []map[string]any{{"roles": []string{"approver"}, "rule": "all"}}}),
		e.do("DELETE", "/api/v1/approval-policies/"+n.policy, schema.RoleAdmin, nil),
		e.do("DELETE", "/api/v1/runbooks/"+n.runbook, schema.RoleAdmin, nil),
		e.do("POST", "/api/v1/runbooks/"+n.runbook+"/versions", schema.RoleAdmin,
			map[string]any{"source": "apiVersion: opsflow/v1\nkind: Runbook\nmetadata: {name: " + n.runbook + "}\nsteps:\n  - {id: a, kind: notify, with: {channel: web, message: x}}\n"}),
		e.do("PUT", "/api/v1/cmdb/types/"+n.ciType, schema.RoleAdmin, map[string]any{"description": "edited", "attributes": []any{}}),
		e.do("POST", "/api/v1/scripts/"+itoa(sc.ID)+"/versions", schema.RoleAdmin, map[string]any{"content": "echo edited"}),
		e.do("DELETE", "/api/v1/risk-rules/"+itoa(rule.ID), schema.RoleAdmin, nil),
	}
	for i, r := range refused {
		if r.Status != http.StatusConflict || !strings.Contains(r.apiError(t).Message, n.source) {
			t.Fatalf("write %d to a managed object: %d %s", i, r.Status, r.Body)
		}
	}

	// A second commit changes the script and drops the policy: with prune
	// the policy is deleted.
	sha2 := repo.commit("second", map[string]string{
		"docs/script.yaml":          strings.Replace(n.files()["docs/script.yaml"], "echo one", "echo two", 1),
		"docs/policies/policy.yaml": "",
	})
	s2 := e.waitGitSync(t, n.source, e.do("POST", "/api/v1/git-sources/"+n.source+"/sync", schema.RoleAdmin, nil))
	if s2.Status != schema.SyncApplied || s2.SHA != sha2 ||
		fmt.Sprint(planOf(s2)) != fmt.Sprint(map[string]string{"Script/" + n.script: "update", "ApprovalPolicy/" + n.policy: "delete"}) {
		t.Fatalf("second sync: %+v plan %v", s2, planOf(s2))
	}
	if r := e.do("GET", "/api/v1/approval-policies/"+n.policy, schema.RoleViewer, nil); r.Status != 404 {
		t.Fatalf("pruned policy still there: %d", r.Status)
	}
	if sc2, _ := e.store.ScriptByName(ctx, n.script); sc2.LatestVersion != 2 {
		t.Fatalf("script version %d, want 2", sc2.LatestVersion)
	}
	v2, _ := e.store.ScriptVersion(ctx, sc.ID, 2)
	if v2 == nil || !strings.Contains(v2.Content, "echo two") {
		t.Fatalf("script version 2: %+v", v2)
	}
	if audits, _ := e.store.Audit(ctx, schema.AuditFilter{Actor: "git:" + n.source, Action: "gitops.delete"}); len(audits) != 1 || !strings.Contains(audits[0].Detail, sha2) {
		t.Fatalf("delete audit: %+v", audits)
	}
	// The released policy's name is free for the API again.
	if r := e.do("POST", "/api/v1/approval-policies", schema.RoleAdmin, map[string]any{"name": n.policy, "levels": []map[string]any{{"roles": []string{"approver"}, "rule": "any"}}}); r.Status != 201 {
		t.Fatalf("create released policy: %d %s", r.Status, r.Body)
	}

	// A third commit changes the runbook and adds a bad script: nothing of
	// it is applied and the error names the file and line.
	repo.commit("third", map[string]string{
		"docs/runbook.yaml": strings.Replace(n.files()["docs/runbook.yaml"], "message: hello", "message: changed", 1),
		"docs/bad.yaml":     "apiVersion: opsflow/v1\nkind: Script\nmetadata:\n  name: bad-" + n.script + "\nspec:\n  content: echo\n  interpreter: perl\n",
	})
	s3 := e.waitGitSync(t, n.source, e.do("POST", "/api/v1/git-sources/"+n.source+"/sync", schema.RoleAdmin, nil))
	if s3.Status != schema.SyncFailed || !strings.Contains(s3.Error, "docs/bad.yaml:7") || !strings.Contains(s3.Error, "spec.interpreter") {
		t.Fatalf("bad commit: %+v", s3)
	}
	rb, err := e.store.Runbook(ctx, n.runbook)
	if err != nil || rb.LatestVersion != 1 {
		t.Fatalf("runbook changed by a failed sync: %+v %v", rb, err)
	}
	if _, err := e.store.ScriptByName(ctx, "bad-"+n.script); err == nil {
		t.Fatal("bad script stored")
	}
}

func TestGitOpsWebhookSignatures(t *testing.T) {
	for _, sqlite := range []bool{false, true} {
		t.Run(map[bool]string{false: "postgres", true: "sqlite"}[sqlite], func(t *testing.T) { testGitWebhook(t, sqlite) })
	}
}

func testGitWebhook(t *testing.T, sqlite bool) {
	e := newEnvWith(t, envOptions{sqlite: sqlite})
	repo := newGitRepo(t)
	n := newGitNames(t)
	sha := repo.commit("first", map[string]string{"runbook.yaml": n.files()["docs/runbook.yaml"]})
	res := e.do("POST", "/api/v1/git-sources", schema.RoleAdmin, map[string]any{"name": n.source, "url": "file://" + repo.dir})
	if res.Status != http.StatusCreated {
		t.Fatalf("create source: %d %s", res.Status, res.Body)
	}
	var created gitSourceView
	res.json(t, &created)
	body := `{"ref":"refs/heads/main"}`
	sign := func(secret string) string {
		m := hmac.New(sha256.New, []byte(secret))
		m.Write([]byte(body))
		return "sha256=" + hex.EncodeToString(m.Sum(nil))
	}
	hook := "/hooks/git/" + n.source
	for _, bad := range [][]string{
		{"X-Hub-Signature-256", sign("wrong")},
		{"X-Opsflow-Token", "wrong"},
		{},
	} {
		if r := e.do("POST", hook, "", body, bad...); r.Status != http.StatusUnauthorized {
			t.Fatalf("hook with %v: %d %s", bad, r.Status, r.Body)
		}
	}
	if r := e.do("POST", "/hooks/git/no-such-source", "", body, "X-Opsflow-Token", created.WebhookSecret); r.Status != http.StatusUnauthorized {
		t.Fatalf("hook of an unknown source: %d", r.Status)
	}
	s := e.waitGitSync(t, n.source, e.do("POST", hook, "", body, "X-Hub-Signature-256", sign(created.WebhookSecret), "X-GitHub-Event", "push"))
	if s.Status != schema.SyncApplied || s.SHA != sha || s.Trigger != "webhook" {
		t.Fatalf("webhook sync: %+v", s)
	}
	if _, err := e.store.Runbook(context.Background(), n.runbook); err != nil {
		t.Fatal(err)
	}
	// The plain token works too; with nothing new the plan is empty.
	s = e.waitGitSync(t, n.source, e.do("POST", hook, "", body, "X-Opsflow-Token", created.WebhookSecret))
	if s.Status != schema.SyncApplied || len(s.Plan) != 0 {
		t.Fatalf("second webhook sync: %+v", s)
	}
	if a, _ := e.store.Audit(context.Background(), schema.AuditFilter{Action: "git-source.webhook", Target: "git-source:" + n.source}); len(a) < 5 {
		t.Fatalf("webhook calls not audited: %+v", a)
	}
}

func TestGitOpsSourceValidation(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	pw := &schema.Credential{Name: uniq(t, "pw"), Kind: schema.CredPassword, Username: "u", Secret: e.keys.Seal([]byte("p"), "credential:x")}
	if err := e.store.CreateCredential(ctx, pw); err != nil {
		t.Fatal(err)
	}
	web := &schema.Credential{Name: uniq(t, "web"), Kind: "http", Auth: "none", Username: "u", Scope: "https://git.example.com/team/", Secret: "x"}
	if err := e.store.CreateCredential(ctx, web); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{"name": "Bad Name", "url": "https://git.example.com/r.git"}, "name"},
		{map[string]any{"name": "ok", "url": "http://git.example.com/r.git"}, "url"},
		{map[string]any{"name": "ok", "url": "file://relative/path"}, "url"},
		{map[string]any{"name": "ok", "url": "https://u:p@git.example.com/r.git"}, "url"},
		{map[string]any{"name": "ok", "url": "https://git.example.com/r.git", "path": "../etc"}, "path"},
		{map[string]any{"name": "ok", "url": "https://git.example.com/r.git", "interval_seconds": 5}, "interval_seconds"},
		{map[string]any{"name": "ok", "url": "ssh://git@git.example.com/r.git", "credential": pw.Name}, "credential"},
		{map[string]any{"name": "ok", "url": "https://evil.example.com/r.git", "credential": pw.Name}, "credential"},
		{map[string]any{"name": "ok", "url": "https://evil.example.com/team/r.git", "credential": web.Name}, "credential"},
		{map[string]any{"name": "ok", "url": "https://git.example.com/r.git", "credential": "nope"}, "credential"},
	} {
		r := e.do("POST", "/api/v1/git-sources", schema.RoleAdmin, c.body)
		if r.Status != 422 || r.apiError(t).Fields[c.field] == "" {
			t.Fatalf("%v: %d %s", c.body, r.Status, r.Body)
		}
	}
	name := newGitNames(t).source
	if r := e.do("POST", "/api/v1/git-sources", schema.RoleAdmin, map[string]any{"name": name, "url": "https://git.example.com/team/r.git", "credential": web.Name}); r.Status != 201 {
		t.Fatalf("in-scope http credential: %d %s", r.Status, r.Body)
	}
	if r := e.do("POST", "/api/v1/git-sources", schema.RoleOperator, map[string]any{"name": name + "x", "url": "file:///srv/r.git"}); r.Status != 403 {
		t.Fatalf("operator creates a source: %d", r.Status)
	}

	// An interval is a Temporal schedule; deleting the source removes it.
	if r := e.do("PUT", "/api/v1/git-sources/"+name, schema.RoleAdmin, map[string]any{"url": "https://git.example.com/team/r.git", "credential": web.Name, "interval_seconds": 3600}); r.Status != 200 {
		t.Fatalf("set interval: %d %s", r.Status, r.Body)
	}
	h := e.temporal.ScheduleClient().GetHandle(ctx, workflows.GitSyncScheduleID(name))
	if d, err := h.Describe(ctx); err != nil || d.Schedule.Spec.Intervals[0].Every != time.Hour {
		t.Fatalf("schedule: %+v %v", d, err)
	}
	if r := e.do("DELETE", "/api/v1/git-sources/"+name, schema.RoleAdmin, nil); r.Status != 204 {
		t.Fatalf("delete source: %d %s", r.Status, r.Body)
	}
	if _, err := h.Describe(ctx); err == nil {
		t.Fatal("schedule outlived its source")
	}
}

// TestGitOpsSyncOverSmartHTTP syncs from git http-backend behind TLS and
// basic auth, as a Git host serves, with an http credential.
func TestGitOpsSyncOverSmartHTTP(t *testing.T) {
	repo := newGitRepo(t)
	n := newGitNames(t)
	sha := repo.commit("first", map[string]string{"ops/script.yaml": n.files()["docs/script.yaml"]})
	root := t.TempDir()
	bare := filepath.Join(root, "repo.git")
	if out, err := exec.Command("git", "clone", "-q", "--bare", repo.dir, bare).CombinedOutput(); err != nil {
		t.Fatalf("bare clone: %v %s", err, out)
	}
	backend := &cgi.Handler{Path: "/usr/lib/git-core/git-http-backend", Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"}}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "deploy" || p != "s3cret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "auth", http.StatusUnauthorized)
			return
		}
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	e := newEnvWith(t, envOptions{gitCA: ca})
	ctx := context.Background()
	cred := &schema.Credential{Name: uniq(t, "git"), Kind: "http", Auth: "none", Username: "deploy", Scope: srv.URL + "/"}
	cred.Secret = e.keys.Seal([]byte("s3cret"), cred.SealContext())
	if err := e.store.CreateCredential(ctx, cred); err != nil {
		t.Fatal(err)
	}
	res := e.do("POST", "/api/v1/git-sources", schema.RoleAdmin, map[string]any{"name": n.source, "url": srv.URL + "/repo.git", "path": "ops", "credential": cred.Name})
	if res.Status != http.StatusCreated {
		t.Fatalf("create source: %d %s", res.Status, res.Body)
	}
	if r := e.do("POST", "/api/v1/git-sources/"+n.source+"/sync", schema.RoleOperator, nil); r.Status != http.StatusForbidden {
		t.Fatalf("operator starts a sync: %d", r.Status)
	}
	s := e.waitGitSync(t, n.source, e.do("POST", "/api/v1/git-sources/"+n.source+"/sync", schema.RoleAdmin, nil))
	if s.Status != schema.SyncApplied || s.SHA != sha || planOf(s)["Script/"+n.script] != "create" {
		t.Fatalf("sync over smart HTTP: %+v", s)
	}
	if _, err := e.store.ScriptByName(ctx, n.script); err != nil {
		t.Fatal(err)
	}
	if _, err := e.temporal.DescribeWorkflowExecution(ctx, workflows.GitSyncWorkflowID(n.source), ""); err != nil {
		t.Fatal(err)
	}
}

// TestGitOpsSyncOverSSH syncs from a real sshd with an ssh_key
// credential; the Git host's key is recorded on first use.
func TestGitOpsSyncOverSSH(t *testing.T) {
	target := testenv.SSHD(t, 1)
	repo := newGitRepo(t)
	n := newGitNames(t)
	sha := repo.commit("first", map[string]string{"type.yaml": n.files()["docs/type.yaml"]})
	bare := filepath.Join(t.TempDir(), "repo.git")
	if out, err := exec.Command("git", "clone", "-q", "--bare", repo.dir, bare).CombinedOutput(); err != nil {
		t.Fatalf("bare clone: %v %s", err, out)
	}
	e := newEnv(t)
	credName := uniq(t, "key")
	credID := e.credential(credName, target)
	url := "ssh://" + target.User + "@" + target.Targets[0].Addr + bare
	if r := e.do("POST", "/api/v1/git-sources", schema.RoleAdmin, map[string]any{"name": n.source, "url": url, "credential": credName}); r.Status != http.StatusCreated {
		t.Fatalf("create source: %d %s", r.Status, r.Body)
	}
	s := e.waitGitSync(t, n.source, e.do("POST", "/api/v1/git-sources/"+n.source+"/sync", schema.RoleAdmin, nil))
	if s.Status != schema.SyncApplied || s.SHA != sha || planOf(s)["CMDBType/"+n.ciType] != "create" {
		t.Fatalf("sync over ssh: %+v", s)
	}
	keys, err := e.store.RecordedHostKeys(context.Background(), []schema.HostTarget{{Address: target.Targets[0].Addr}}, credID)
	if err != nil || len(keys) != 1 {
		t.Fatalf("host key not recorded: %v %v", keys, err)
	}
}

// TestGitSourcesFromThePage: an admin adds a source on /git-sources (a
// refused form names the field; the webhook secret is shown once), plans
// it, syncs it and deletes it (confirmed) from the page; a viewer sees no
// form and an operator's post is refused.
func TestGitSourcesFromThePage(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	n := newGitNames(t)
	repo := newGitRepo(t)
	repo.commit("one runbook", map[string]string{"runbook.yaml": n.files()["docs/runbook.yaml"]})
	admin := e.users[schema.RoleAdmin].Username
	ck, csrf := e.sessionLogin(admin)
	post := func(path string, v url.Values) (int, string) {
		t.Helper()
		v.Set("csrf_token", csrf)
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+path, strings.NewReader(v.Encode()))
		req.AddCookie(ck)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		res, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if page := e.do(http.MethodGet, "/git-sources", "viewer", nil, "Accept", "text/html"); page.Status != 200 || strings.Contains(string(page.Body), "git-source-form") {
		t.Fatalf("viewer's page: %d", page.Status)
	}
	if st, body := post("/git-sources", url.Values{"name": {n.source}, "url": {"ftp://example.com/x.git"}}); st != http.StatusUnprocessableEntity || !strings.Contains(body, "err-gs-url") {
		t.Fatalf("bad URL: %d", st)
	}
	if _, err := e.store.GitSource(ctx, n.source); !errors.Is(err, schema.ErrNotFound) {
		t.Fatalf("a refused source was stored: %v", err)
	}
	st, body := post("/git-sources", url.Values{"name": {n.source}, "url": {"file://" + repo.dir}, "branch": {"main"}})
	if st != http.StatusCreated || !strings.Contains(body, `id="git-webhook-secret"`) {
		t.Fatalf("create: %d", st)
	}
	if again := e.do(http.MethodGet, "/git-sources", "admin", nil, "Accept", "text/html"); strings.Contains(string(again.Body), "git-webhook-secret") {
		t.Fatal("the webhook secret is shown again")
	}
	lastSync := func() *schema.GitSync {
		var list struct{ Items []schema.GitSync }
		e.do(http.MethodGet, "/api/v1/git-sources/"+n.source+"/syncs", "viewer", nil).json(t, &list)
		if len(list.Items) == 0 {
			return nil
		}
		return &list.Items[0]
	}
	if st, _ := post("/git-sources/"+n.source+"/plan", url.Values{}); st != http.StatusSeeOther && st != http.StatusOK {
		t.Fatalf("plan: %d", st)
	}
	eventually(t, 2*time.Minute, "the dry run's plan", func() bool { s := lastSync(); return s != nil && s.DryRun && s.Status == "planned" })
	if _, err := e.store.Runbook(ctx, n.runbook); !errors.Is(err, schema.ErrNotFound) {
		t.Fatalf("the dry run applied: %v", err)
	}
	if st, _ := post("/git-sources/"+n.source+"/sync", url.Values{}); st != http.StatusSeeOther && st != http.StatusOK {
		t.Fatalf("sync: %d", st)
	}
	eventually(t, 2*time.Minute, "the sync applied", func() bool { s := lastSync(); return s != nil && !s.DryRun && s.Status == "applied" })
	if _, err := e.store.Runbook(ctx, n.runbook); err != nil {
		t.Fatalf("the sync did not create the runbook: %v", err)
	}
	if st, body := post("/git-sources/"+n.source+"/delete", url.Values{}); st != http.StatusOK || !strings.Contains(body, "confirm-yes") {
		t.Fatalf("delete asks first: %d", st)
	}
	if _, err := e.store.GitSource(ctx, n.source); err != nil {
		t.Fatalf("the confirmation deleted the source: %v", err)
	}
	if st, _ := post("/git-sources/"+n.source+"/delete", url.Values{"confirmed": {"yes"}}); st != http.StatusSeeOther && st != http.StatusOK {
		t.Fatalf("delete: %d", st)
	}
	if _, err := e.store.GitSource(ctx, n.source); !errors.Is(err, schema.ErrNotFound) {
		t.Fatalf("source kept: %v", err)
	}
	if r := e.do(http.MethodPost, "/git-sources", "operator", nil); r.Status != http.StatusForbidden {
		t.Fatalf("operator's post: %d", r.Status)
	}
}
