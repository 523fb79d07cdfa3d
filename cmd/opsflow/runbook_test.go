package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opsflow/opsflow/api"
	"github.com/opsflow/opsflow/internal/app"
	"github.com/opsflow/opsflow/internal/secret"
	"github.com/opsflow/opsflow/internal/testenv"
	"github.com/opsflow/opsflow/schema"
	"github.com/opsflow/opsflow/workflows"
	"go.temporal.io/sdk/client"
)

// TestMainProcess is not a test: run as a child process by opsflowExit,
// it is the opsflow command with the arguments in OPSFLOW_TEST_MAIN_ARGS,
// so tests see its exit code.
func TestMainProcess(t *testing.T) {
	args := os.Getenv("OPSFLOW_TEST_MAIN_ARGS")
	if args == "" {
		return
	}
	os.Args = append([]string{"opsflow"}, strings.Split(args, "\n")...)
	main()
	os.Exit(0)
}

// opsflowExit runs `opsflow args…` in a child process with env added.
func opsflowExit(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestMainProcess$")
	cmd.Env = append(append(os.Environ(), "OPSFLOW_TEST_MAIN_ARGS="+strings.Join(args, "\n")), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

const badRunbook = `apiVersion: opsflow/v1
kind: Runbook
metadata: {name: %s}
steps:
  - {id: a, kind: fail, with: {message: m}}
  - {id: a, kind: fail, with: {message: m}}
  - id: b
    kind: kubernetes.drain
`

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRunbookValidateCommand(t *testing.T) {
	shipped, _ := filepath.Glob("../../deploy/runbooks/*.yaml")
	if len(shipped) == 0 {
		t.Fatal("no shipped runbooks")
	}
	out, stderr, code := opsflowExit(t, nil, append([]string{"runbook", "validate"}, shipped...)...)
	if code != 0 || strings.Count(out, ": ok\n") != len(shipped) {
		t.Fatalf("shipped runbooks: exit %d\n%s%s", code, out, stderr)
	}

	bad := writeFile(t, "bad.yaml", fmt.Sprintf(badRunbook, "bad"))
	broken := writeFile(t, "broken.yaml", "apiVersion: opsflow/v1\nkind: Runbook\nmetadata: {name: x}\nsteps:\n  - id: a\n    kind: wait\n    with: {duration: 1s\n")
	out, stderr, code = opsflowExit(t, nil, "runbook", "validate", shipped[0], bad, broken, bad+".missing")
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s%s", code, out, stderr)
	}
	want := []string{
		shipped[0] + ": ok",
		bad + `:6:10: steps[1].id: duplicate step id "a" (first at line 5)`,
		bad + `:8:11: steps[2].kind: unknown step kind "kubernetes.drain" (known: approval, `,
		broken + ":7:5: invalid YAML: did not find expected ',' or '}'",
		"open " + bad + ".missing: no such file or directory",
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), out)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d:\n got %s\nwant %s…", i+1, lines[i], w)
		}
	}
	if !strings.Contains(stderr, "3 of 4 files invalid") {
		t.Errorf("stderr: %s", stderr)
	}
	if _, _, code := opsflowExit(t, nil, "runbook", "validate"); code != 1 {
		t.Errorf("no file: exit %d", code)
	}
}

// startAPI serves the API as `opsflow api` does, over the package's
// Postgres database, and returns its URL and store. Storing runbooks
// never calls Temporal, so its lazy client points nowhere.
func startAPI(t *testing.T) (string, *schema.Store) {
	return startAPIWith(t, false)
}

// startStack is startAPI on the package's real Temporal server, with
// workers on every task queue as `opsflow worker` runs them, the local
// transport on (OPSFLOW_LOCAL_TRANSPORT=1): jobs and approvals run.
func startStack(t *testing.T) (string, *schema.Store) {
	return startAPIWith(t, true)
}

func startAPIWith(t *testing.T, withTemporal bool) (string, *schema.Store) {
	t.Helper()
	t.Setenv("OPSFLOW_SECRET_KEY", secret.NewKey())
	cfg := app.ConfigFromEnv()
	cfg.DatabaseURL, cfg.DataDir = testenv.PostgresURL(t), t.TempDir()
	opts := &client.Options{HostPort: "127.0.0.1:1"}
	if withTemporal {
		opts = &client.Options{HostPort: testenv.Temporal(t), Namespace: testenv.TemporalNamespace}
		cfg.LocalTransport = true
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.Open(ctx, cfg, log, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if withTemporal {
		stopWorkers, err := a.StartWorkers(workflows.TaskQueues)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stopWorkers)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.RunAPI(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done; a.Close() })
	base := "http://" + ln.Addr().String()
	testenv.Eventually(t, 30*time.Second, "the API serving", func() bool {
		res, err := http.Get(base + "/api/openapi.json")
		if err == nil {
			res.Body.Close()
		}
		return err == nil && res.StatusCode == 200
	})
	return base, a.Store
}

func apiToken(t *testing.T, st *schema.Store, role string) string {
	t.Helper()
	_, tok := apiUser(t, st, role)
	return tok
}

// apiUser creates a user with role and returns its name and an API token.
func apiUser(t *testing.T, st *schema.Store, role string) (username, token string) {
	t.Helper()
	ctx := context.Background()
	u := &schema.User{Username: fmt.Sprintf("cli-%s-%d", role, time.Now().UnixNano()), Role: role, PasswordHash: "!"}
	if err := st.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	tok, hash := api.NewToken()
	if err := st.CreateToken(ctx, &schema.APIToken{UserID: u.ID, Name: "cli", Prefix: tok[:10], TokenHash: hash}); err != nil {
		t.Fatal(err)
	}
	return u.Username, tok
}

// envOf is the environment of a client command against base with token.
func envOf(base, token string) func(string) string {
	return func(k string) string {
		return map[string]string{"OPSFLOW_URL": base, "OPSFLOW_TOKEN": token}[k]
	}
}

// syncBuffer is a command's output, read while the command writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRunbookPushCommand(t *testing.T) {
	base, st := startAPI(t)
	ctx := context.Background()
	operator := envOf(base, apiToken(t, st, schema.RoleOperator))
	push := func(getenv func(string) string, args ...string) (string, error) {
		var out bytes.Buffer
		err := runbookCmd(ctx, append([]string{"push"}, args...), &out, getenv)
		return out.String(), err
	}

	name := fmt.Sprintf("cli-push-%d", time.Now().UnixNano())
	b, err := os.ReadFile("../../deploy/runbooks/rolling-restart.yaml")
	if err != nil {
		t.Fatal(err)
	}
	src := strings.Replace(string(b), "name: rolling-restart", "name: "+name, 1)
	file := writeFile(t, "rb.yaml", src)

	if out, err := push(operator, file); err != nil || out != name+": created, version 1\n" {
		t.Fatalf("first push: %q %v", out, err)
	}
	if out, err := push(operator, file); err != nil || out != name+": unchanged, version 1\n" {
		t.Fatalf("same push: %q %v", out, err)
	}
	if err := os.WriteFile(file, []byte(src+"# tweaked\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := push(operator, "--comment", "tweak", file); err != nil || out != name+": version 2\n" {
		t.Fatalf("changed push: %q %v", out, err)
	}
	rb, err := st.Runbook(ctx, name)
	if err != nil || rb.LatestVersion != 2 {
		t.Fatalf("stored: %+v %v", rb, err)
	}
	if v, err := st.RunbookVersion(ctx, rb.ID, 2); err != nil || v.Comment != "tweak" || v.Source != src+"# tweaked\n" {
		t.Fatalf("version 2: %+v %v", v, err)
	}

	// A bad document: the server's errors at their lines, nothing stored,
	// exit 1.
	bad := writeFile(t, "bad.yaml", fmt.Sprintf(badRunbook, name))
	out, err := push(operator, bad)
	if err == nil || !strings.HasPrefix(out, bad+`:6:10: steps[1].id: duplicate step id "a"`) || strings.Count(out, "\n") != 2 {
		t.Fatalf("bad push: %q %v", out, err)
	}
	stdout, stderr, code := opsflowExit(t, []string{"OPSFLOW_URL=" + base, "OPSFLOW_TOKEN=" + operator("OPSFLOW_TOKEN")}, "runbook", "push", bad)
	if code != 1 || stdout != out || !strings.Contains(stderr, "invalid runbook: 2 errors (HTTP 422)") {
		t.Fatalf("bad push process: exit %d\n%s%s", code, stdout, stderr)
	}
	if rb, err := st.Runbook(ctx, name); err != nil || rb.LatestVersion != 2 {
		t.Fatalf("after the bad push: %+v %v", rb, err)
	}

	// Refusals: a viewer, no token, no URL.
	if _, err := push(envOf(base, apiToken(t, st, schema.RoleViewer)), file); err == nil || !strings.Contains(err.Error(), "HTTP 403") {
		t.Fatalf("viewer push: %v", err)
	}
	if _, err := push(envOf(base, "opf_not-a-token"), file); err == nil || !strings.Contains(err.Error(), "HTTP 401") {
		t.Fatalf("bad token push: %v", err)
	}
	if _, err := push(func(string) string { return "" }, file); err == nil || !strings.Contains(err.Error(), "OPSFLOW_URL") {
		t.Fatalf("no URL: %v", err)
	}
	if _, err := push(operator, writeFile(t, "anon.yaml", "kind: Runbook\nsteps: []\n")); err == nil || !strings.Contains(err.Error(), "no metadata.name") {
		t.Fatalf("nameless push: %v", err)
	}
}

// fakeRuns serves the runbook-run contract that POST
// /api/v1/runbooks/{name}/runs and GET /api/v1/runs/{id} follow: a run
// view {id, status, steps: [{path, id, kind, status}], failed_step}. Each
// GET of a run answers the next of its scripted views, then the last
// again. The runbook's versions are served as the real API serves them.
type fakeRuns struct {
	t      *testing.T
	mu     sync.Mutex
	token  string
	script map[string][]runState // by the run's first input "scenario"
	bodies []map[string]any
	keys   map[string]string // Idempotency-Key → run id
	runs   map[string][]runState
	polls  map[string]int
	cancel int
}

const fakeRunbookSource = `apiVersion: opsflow/v1
kind: Runbook
metadata: {name: deploy}
inputs:
  - {name: scenario, type: enum, values: [ok, retry, failed, forever]}
  - {name: count, type: int}
  - {name: tag, type: string}
  - {name: dry, type: bool}
  - {name: hosts, type: list}
  - {name: ports, type: list, items: int}
steps:
  - {id: a, kind: wait, with: {duration: 1s}}
`

func (f *fakeRuns) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	reply := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	if r.Header.Get("Authorization") != "Bearer "+f.token {
		reply(401, map[string]any{"error": map[string]any{"code": "unauthorized", "message": "authentication required"}})
		return
	}
	switch p := r.URL.Path; {
	case r.Method == "GET" && p == "/api/v1/runbooks/deploy":
		reply(200, map[string]any{"name": "deploy", "latest_version": 3, "latest": map[string]any{"version": 3, "source": fakeRunbookSource}})
	case r.Method == "GET" && p == "/api/v1/runbooks/deploy/versions/2":
		reply(200, map[string]any{"version": 2, "source": "not: [a runbook"})
	case r.Method == "GET" && strings.HasPrefix(p, "/api/v1/runbooks/"):
		reply(404, map[string]any{"error": map[string]any{"code": "not_found", "message": "runbook not found"}})
	case r.Method == "POST" && p == "/api/v1/runbooks/deploy/runs":
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			reply(400, map[string]any{"error": map[string]any{"code": "bad_request", "message": err.Error()}})
			return
		}
		key := r.Header.Get("Idempotency-Key")
		if id, ok := f.keys[key]; ok && key != "" {
			reply(200, runState{ID: id, Status: "running"})
			return
		}
		inputs, _ := body["inputs"].(map[string]any)
		if _, ok := inputs["count"].(float64); !ok && inputs["count"] != nil {
			reply(422, map[string]any{"error": map[string]any{"code": "validation", "message": "invalid inputs", "fields": map[string]string{"inputs.count": "must be an integer"}}})
			return
		}
		f.bodies = append(f.bodies, body)
		id := fmt.Sprintf("runbook-deploy-%d", len(f.bodies))
		f.keys[key] = id
		scenario, _ := inputs["scenario"].(string)
		f.runs[id] = f.script[scenario]
		reply(201, runState{ID: id, Status: "running"})
	case r.Method == "GET" && strings.HasPrefix(p, "/api/v1/runs/"):
		id := strings.TrimPrefix(p, "/api/v1/runs/")
		views, ok := f.runs[id]
		if !ok {
			reply(404, map[string]any{"error": map[string]any{"code": "not_found", "message": "run not found"}})
			return
		}
		v := views[min(f.polls[id], len(views)-1)]
		f.polls[id]++
		v.ID = id
		reply(200, v)
	case r.Method == "POST" && strings.HasSuffix(p, "/cancel"):
		f.cancel++
		reply(202, map[string]any{})
	default:
		f.t.Errorf("fake runs API: unexpected %s %s", r.Method, p)
		reply(404, map[string]any{"error": map[string]any{"code": "not_found", "message": "no route"}})
	}
}

// TestRunbookRunCommand runs `opsflow runbook run` against a fake of the
// runs API: inputs typed by the version's declarations, the
// Idempotency-Key, step statuses printed as they change, and --wait's exit
// for each final status and for Ctrl-C.
func TestRunbookRunCommand(t *testing.T) {
	step := func(id, status string) runStep {
		return runStep{Path: "steps[" + id + "]", ID: id, Kind: "script", Status: status}
	}
	f := &fakeRuns{t: t, token: "opf_fake", keys: map[string]string{}, runs: map[string][]runState{}, polls: map[string]int{},
		script: map[string][]runState{
			"ok": {
				{Status: "running", Steps: []runStep{step("a", "running")}},
				{Status: "running", Steps: []runStep{step("a", "running")}, Paused: true},
				{Status: "running", Steps: []runStep{step("a", "completed"), step("b", "running")}},
				{Status: "completed", Steps: []runStep{step("a", "completed"), step("b", "completed")}, Summary: "2 steps"},
			},
			"retry": {
				{Status: "running", Steps: []runStep{step("a", "running")}},
				{Status: "awaiting_retry", Steps: []runStep{step("a", "failed")}, FailedStep: json.RawMessage(`"steps[a]"`)},
			},
			"failed":  {{Status: "failed", Steps: []runStep{step("a", "failed")}, Summary: "step a failed"}},
			"forever": {{Status: "running", Steps: []runStep{step("a", "running")}}},
		}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	env := envOf(srv.URL, f.token)
	ctx := context.Background()

	// Values typed as version 3 declares them; JSON as given; flags after
	// the name.
	var out syncBuffer
	err := runbookCmd(ctx, []string{"run", "deploy", "--input", "scenario=ok", "--input", "count=5", "--input", "tag=007", "--input", "dry=true",
		"--input", "hosts=web-1, web-2", "--input", "ports=80,443", "--input-json", `extra={"k":[1]}`, "--wait", "--idempotency-key", "k1"}, &out, env)
	if err != nil {
		t.Fatalf("run --wait: %v\n%s", err, out.String())
	}
	want := "run runbook-deploy-1 of deploy version 3: running\n" + srv.URL + "/runs/runbook-deploy-1\n" +
		"step steps[a] (script): running\nrun runbook-deploy-1: paused\n" +
		"step steps[a] (script): completed\nstep steps[b] (script): running\nrun runbook-deploy-1: resumed\n" +
		"step steps[b] (script): completed\nrun runbook-deploy-1 completed: 2 steps\n"
	if out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
	}
	sent, _ := json.Marshal(f.bodies[0])
	if string(sent) != `{"inputs":{"count":5,"dry":true,"extra":{"k":[1]},"hosts":["web-1","web-2"],"ports":[80,443],"scenario":"ok","tag":"007"},"version":3}` {
		t.Errorf("sent %s", sent)
	}
	// The same key: the first run, nothing started.
	out = syncBuffer{}
	if err := runbookCmd(ctx, []string{"run", "deploy", "--input", "scenario=ok", "--idempotency-key", "k1"}, &out, env); err != nil ||
		!strings.HasPrefix(out.String(), "run runbook-deploy-1 of deploy version 3: running (already started with this Idempotency-Key)\n") || len(f.bodies) != 1 {
		t.Fatalf("same key: %v %q", err, out.String())
	}
	// A version whose declarations cannot be read: numbers and booleans
	// by their look.
	out = syncBuffer{}
	if err := runbookCmd(ctx, []string{"run", "deploy", "--version", "2", "--input", "n=5", "--input", "b=false", "--input", "s=5a"}, &out, env); err != nil {
		t.Fatal(err)
	}
	if sent, _ := json.Marshal(f.bodies[1]); string(sent) != `{"inputs":{"b":false,"n":5,"s":"5a"},"version":2}` {
		t.Errorf("sent %s", sent)
	}

	// A step failed and waits for a retry: the step, and exit 1.
	stdout, stderr, code := opsflowExit(t, []string{"OPSFLOW_URL=" + srv.URL, "OPSFLOW_TOKEN=" + f.token}, "runbook", "run", "deploy", "--input", "scenario=retry", "--wait")
	if code != 1 || !strings.Contains(stdout, "step steps[a] (script): failed\n") ||
		!strings.Contains(stderr, "opsflow: run runbook-deploy-3: step steps[a] failed; the run waits for a retry from that step on "+srv.URL+"/runs/runbook-deploy-3") {
		t.Fatalf("awaiting_retry: exit %d\n%s%s", code, stdout, stderr)
	}
	c, err := newClient(env)
	if err != nil {
		t.Fatal(err)
	}
	c.poll = 10 * time.Millisecond
	run := func(ctx context.Context, out io.Writer, scenario string, inputs ...string) error {
		v := newValues()
		for _, in := range append(inputs, "scenario="+scenario) {
			if err := v.textFlag().Set(in); err != nil {
				return err
			}
		}
		return c.runRunbook(ctx, runbookRun{name: "deploy", inputs: v, wait: true}, out)
	}
	if err := run(ctx, io.Discard, "failed"); err == nil || err.Error() != "run runbook-deploy-4 failed: step a failed" {
		t.Errorf("failed run: %v", err)
	}
	// The API's refusal, with its field's reason.
	if err := run(ctx, io.Discard, "ok", "count=many"); err == nil || err.Error() != "runbook run deploy: invalid inputs (HTTP 422)\n  inputs.count: must be an integer" {
		t.Errorf("bad input: %v", err)
	}
	if err := run(ctx, io.Discard, "ok", "nope"); err == nil || !strings.Contains(err.Error(), "want NAME=VALUE") {
		t.Errorf("bad flag: %v", err)
	}
	if err := c.runRunbook(ctx, runbookRun{name: "missing", inputs: newValues()}, io.Discard); err == nil || !strings.Contains(err.Error(), "runbook not found (HTTP 404)") {
		t.Errorf("missing runbook: %v", err)
	}

	// Ctrl-C stops the waiting and says how to cancel; the run goes on.
	waitCtx, interrupt := context.WithCancel(ctx)
	defer interrupt()
	var slow syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(waitCtx, &slow, "forever") }()
	testenv.Eventually(t, 30*time.Second, "the first step's status", func() bool { return strings.Contains(slow.String(), "step steps[a] (script): running") })
	interrupt()
	err = <-done
	if err == nil || !strings.HasPrefix(err.Error(), "stopped waiting; run runbook-deploy-5 goes on") || !strings.Contains(err.Error(), srv.URL+"/api/v1/runs/runbook-deploy-5/cancel") {
		t.Fatalf("interrupted: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cancel != 0 {
		t.Errorf("the run was canceled")
	}
}
