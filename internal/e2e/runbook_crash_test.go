package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/opsflow/opsflow/internal/secret"
	"github.com/opsflow/opsflow/internal/testenv"
	"github.com/opsflow/opsflow/schema"
	"github.com/opsflow/opsflow/workflows"
	"go.temporal.io/sdk/client"
)

// markScript appends a line to $MARKS/$STEP when it starts, then works
// for $SECS seconds, so a kill lands while it runs.
const markScript = `mkdir -p "$MARKS"; echo "$OPSFLOW_HOST" >> "$MARKS/$STEP"; sleep "$SECS"`

// crashRunbook is a runbook of a script step, an http step, a wait and
// another script step, all on the local transport and the test's own
// HTTP server.
func crashRunbook(name, script, marks, url string) string {
	return fmt.Sprintf(`apiVersion: opsflow/v1
kind: Runbook
metadata: {name: %[1]s}
steps:
  - id: first
    kind: script
    with:
      script: %[2]s
      params: {MARKS: %[3]q, STEP: first, SECS: "4"}
      targets: {hosts: ["127.0.0.1"], transport: local}
  - id: ping
    kind: http
    with: {url: %[4]q}
  - id: pause
    kind: wait
    with: {duration: 2s}
  - id: last
    kind: script
    with:
      script: %[2]s
      params: {MARKS: %[3]q, STEP: last, SECS: "3"}
      targets: {hosts: ["127.0.0.1"], transport: local}
`, name, script, marks, url)
}

// countingServer answers every request 200 and counts them.
func countingServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

// marksOnce fails the test unless each step's mark file has one line.
func marksOnce(t *testing.T, marks string, steps ...string) {
	t.Helper()
	for _, s := range steps {
		b, err := os.ReadFile(filepath.Join(marks, s))
		if err != nil {
			t.Fatalf("step %s never ran: %v", s, err)
		}
		if n := bytes.Count(b, []byte("\n")); n != 1 {
			t.Fatalf("step %s ran %d times: %q", s, n, strings.TrimSpace(string(b)))
		}
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// TestWorkerKilledMidRunbookResumes runs a runbook on a worker in its own
// process, SIGKILLs that worker while the first script step runs and
// again while the last one runs, starting a new worker each time, and
// checks that the run succeeds, that each script ran once on the host
// (its mark file), that the http step was sent once, and that the read
// model has every step succeeded in one attempt.
func TestWorkerKilledMidRunbookResumes(t *testing.T) {
	if testenv.Short() {
		t.Skip("runs worker processes; skipped by -short")
	}
	ctx := context.Background()
	pg := testenv.PostgresURL(t)
	temporalAddr := testenv.Temporal(t)
	keyText := secret.NewKey()
	key, _ := secret.ParseKey(keyText)
	keys, _ := secret.NewKeyring(key)
	st, err := schema.Open(ctx, pg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.MigrateUp(ctx); err != nil {
		t.Fatal(err)
	}
	run := fmt.Sprintf("%d", time.Now().UnixNano())
	user := "root-" + run
	if err := st.CreateUser(ctx, &schema.User{Username: user, Role: schema.RoleAdmin}); err != nil {
		t.Fatal(err)
	}
	script := "rb-mark-" + run
	if _, _, err := st.CreateScript(ctx, schema.ScriptInput{Name: script, Interpreter: "sh", Content: markScript,
		Parameters: []schema.ParamDef{{Name: "MARKS", Type: schema.ParamString, Required: true}, {Name: "STEP", Type: schema.ParamString, Required: true},
			{Name: "SECS", Type: schema.ParamString, Required: true}}}, user); err != nil {
		t.Fatal(err)
	}
	srv, hits := countingServer(t)
	marks := filepath.Join(t.TempDir(), "marks")

	c, err := client.Dial(client.Options{HostPort: temporalAddr, Namespace: testenv.TemporalNamespace, DataConverter: keys.DataConverter()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	id, err := workflows.StartRunbook(ctx, c, keys, workflows.RunbookStart{Name: "crash-" + run, Version: 1, StartedBy: user,
		Source: crashRunbook("crash-"+run, script, marks, srv.URL+"/ping"), Unique: run})
	if err != nil {
		t.Fatal(err)
	}

	logs := filepath.Join(t.TempDir(), "worker.log")
	startWorker := func() *exec.Cmd {
		return testenv.StartWorker(t, logs, "OPSFLOW_DATABASE_URL="+pg, "TEMPORAL_ADDRESS="+temporalAddr,
			"TEMPORAL_NAMESPACE="+testenv.TemporalNamespace, "OPSFLOW_SECRET_KEY="+keyText, "OPSFLOW_LOG_LEVEL=warn",
			"OPSFLOW_LOCAL_TRANSPORT=1", "OPSFLOW_HTTP_STEP_ALLOW_NETS=127.0.0.0/8")
	}
	kill := func(w *exec.Cmd, when string) {
		if err := w.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = w.Wait()
		t.Logf("SIGKILL %s", when)
	}
	for _, step := range []string{"first", "last"} {
		w := startWorker()
		testenv.Eventually(t, 2*time.Minute, "script step "+step+" to start on the host", func() bool {
			return fileExists(filepath.Join(marks, step))
		})
		kill(w, "while step "+step+" runs its script")
	}
	startWorker()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	var res workflows.RunbookResult
	if err := c.GetWorkflow(wctx, id, "").Get(wctx, &res); err != nil {
		log, _ := os.ReadFile(logs)
		t.Fatalf("run: %v\nworker log:\n%s", err, log)
	}
	if res.Status != schema.RunCompleted {
		t.Fatalf("result %+v", res)
	}
	marksOnce(t, marks, "first", "last")
	if n := hits.Load(); n != 1 {
		t.Fatalf("the http step was sent %d times", n)
	}
	rows, err := st.RunSteps(ctx, id)
	if err != nil || len(rows) != 4 {
		t.Fatalf("read model: %+v %v", rows, err)
	}
	for _, r := range rows {
		if r.Status != schema.StepSucceeded || r.Attempts != 1 || r.EndedAt == nil {
			t.Fatalf("read model step %+v", r)
		}
		if r.Kind == "script" {
			if r.Outputs["succeeded"] != float64(1) && r.Outputs["succeeded"] != int64(1) {
				t.Fatalf("script step outputs %+v", r)
			}
		}
	}
	if r, err := st.Run(ctx, id); err != nil || r.Status != schema.RunCompleted {
		t.Fatalf("runs: %+v %v", r, err)
	}
}

// TestDevStackKilledMidRunbookResumes starts a runbook run through the
// API of the dev stack, SIGKILLs the whole stack (API, worker and Temporal
// server in one process) while the first script step runs, starts it
// again on the same data dir, and checks that the run completes where it
// was: each script ran once on the host, the http step was sent once, and
// the run's steps (from the API's read model) all succeeded in one
// attempt.
func TestDevStackKilledMidRunbookResumes(t *testing.T) {
	s := newStack(t)
	s.env = []string{"OPSFLOW_LOCAL_TRANSPORT=1", "OPSFLOW_HTTP_STEP_ALLOW_NETS=127.0.0.0/8"}
	s.start()
	srv, hits := countingServer(t)
	marks := filepath.Join(t.TempDir(), "marks")
	if code := s.api(http.MethodPost, "/api/v1/scripts", schema.ScriptInput{Name: "rb-mark", Interpreter: "sh", Content: markScript,
		Parameters: []schema.ParamDef{{Name: "MARKS", Type: schema.ParamString, Required: true}, {Name: "STEP", Type: schema.ParamString, Required: true},
			{Name: "SECS", Type: schema.ParamString, Required: true}}}, nil); code != http.StatusCreated {
		t.Fatalf("create script: %d", code)
	}
	if code := s.api(http.MethodPost, "/api/v1/runbooks", map[string]any{"source": crashRunbook("crash", "rb-mark", marks, srv.URL+"/ping")}, nil); code != http.StatusCreated {
		t.Fatalf("create runbook: %d", code)
	}
	var r run
	if code := s.api(http.MethodPost, "/api/v1/runbooks/crash/runs", map[string]any{}, &r); code != http.StatusCreated {
		t.Fatalf("start run: %d", code)
	}
	eventually(t, time.Minute, "the first script step to start on the host", func() bool { return fileExists(filepath.Join(marks, "first")) })
	s.kill()
	if fileExists(filepath.Join(marks, "last")) {
		t.Fatal("the kill landed after the run had gone on")
	}
	s.start()
	type step struct {
		ID       string `json:"id"`
		Status   string `json:"status"`
		Attempts int    `json:"attempts"`
	}
	var cur struct {
		Status string `json:"status"`
		Steps  []step `json:"steps"`
	}
	eventually(t, 3*time.Minute, "the run to complete after the restart", func() bool {
		s.api(http.MethodGet, "/api/v1/runs/"+r.ID, nil, &cur)
		return cur.Status == "completed" || cur.Status == "failed"
	})
	if cur.Status != "completed" || len(cur.Steps) != 4 {
		t.Fatalf("run after restart: %+v", cur)
	}
	for _, st := range cur.Steps {
		if st.Status != schema.StepSucceeded || st.Attempts != 1 {
			t.Fatalf("step after restart: %+v", st)
		}
	}
	marksOnce(t, marks, "first", "last")
	if n := hits.Load(); n != 1 {
		t.Fatalf("the http step was sent %d times", n)
	}
}
