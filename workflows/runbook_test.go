package workflows_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opsflow/opsflow/activities"
	"github.com/opsflow/opsflow/internal/secret"
	"github.com/opsflow/opsflow/schema"
	"github.com/opsflow/opsflow/workflows"
	"go.temporal.io/sdk/testsuite"
)

// hits is an HTTP endpoint for http steps that counts its calls by path:
// /ok answers 200 with the count, /flaky?fail=N fails its first N calls,
// /status/N answers N, /gate fails until opened.
type hits struct {
	mu     sync.Mutex
	n      map[string]int
	open   bool
	bodies map[string]string
}

func (h *hits) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.n[r.URL.Path]++
	n := h.n[r.URL.Path]
	open := h.open
	if r.Header.Get("X-Token") != "" {
		h.bodies["token"] = r.Header.Get("X-Token")
	}
	h.mu.Unlock()
	switch {
	case strings.HasPrefix(r.URL.Path, "/status/"):
		code, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/status/"))
		w.WriteHeader(code)
	case r.URL.Path == "/flaky":
		fail, _ := strconv.Atoi(r.URL.Query().Get("fail"))
		if n <= fail {
			w.WriteHeader(503)
			return
		}
	case r.URL.Path == "/gate" && !open:
		w.WriteHeader(409)
		return
	}
	fmt.Fprintf(w, `{"n": %d, "path": %q}`, n, r.URL.Path)
}

func (h *hits) count(path string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n[path]
}

type runbookEnv struct {
	t     *testing.T
	env   *testsuite.TestWorkflowEnvironment
	store *schema.Store
	keys  *secret.Keyring
	hits  *hits
	url   string
}

func newRunbookEnv(t *testing.T) *runbookEnv {
	t.Helper()
	ctx := context.Background()
	st, err := schema.Open(ctx, filepath.Join(t.TempDir(), "runbooks.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.MigrateUp(ctx); err != nil {
		t.Fatal(err)
	}
	key, _ := secret.ParseKey(secret.NewKey())
	keys, _ := secret.NewKeyring(key)
	h := &hits{n: map[string]int{}, bodies: map[string]string{}}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	var s testsuite.WorkflowTestSuite
	env := newTestEnv(&s)
	env.RegisterWorkflow(workflows.Runbook)
	env.RegisterActivity(&activities.Runbooks{Store: st, Secrets: keys, HTTPAllowNets: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	env.RegisterActivity(&activities.Runs{Store: st})
	return &runbookEnv{t: t, env: env, store: st, keys: keys, hits: h, url: srv.URL}
}

// start runs src with inputs under workflow ID id.
func (e *runbookEnv) run(id, src string, inputs map[string]any, window time.Duration) {
	e.t.Helper()
	src = strings.ReplaceAll(src, "URL", e.url)
	wid, in, err := workflows.PrepareRunbook(e.keys, workflows.RunbookStart{Name: "t", Version: 1, Source: src, Inputs: inputs, StartedBy: "alice", Unique: id})
	if err != nil {
		e.t.Fatal(err)
	}
	in.RetryWindow = window
	e.env.SetStartWorkflowOptions(startOptions(wid))
	e.env.ExecuteWorkflow(workflows.Runbook, in)
}

func (e *runbookEnv) result() (workflows.RunbookResult, error) {
	e.t.Helper()
	if !e.env.IsWorkflowCompleted() {
		e.t.Fatal("the run did not end")
	}
	var res workflows.RunbookResult
	err := e.env.GetWorkflowError()
	if err == nil {
		if gerr := e.env.GetWorkflowResult(&res); gerr != nil {
			e.t.Fatal(gerr)
		}
	}
	return res, err
}

func (e *runbookEnv) steps(id string) map[string]schema.RunStep {
	e.t.Helper()
	rows, err := e.store.RunSteps(context.Background(), "runbook:"+id)
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]schema.RunStep{}
	for _, r := range rows {
		out[r.Path] = r
	}
	return out
}

const rbHead = `apiVersion: opsflow/v1
kind: Runbook
metadata: {name: t}
`

// TestRunbookWhenOutputsSecrets: steps run in order; when skips; outputs
// (CEL over result) flow into later steps' when and arguments; a secret
// input reaches the request but never the history or the read model.
func TestRunbookWhenOutputsSecrets(t *testing.T) {
	e := newRunbookEnv(t)
	e.run("when", rbHead+`inputs:
  - {name: env, type: enum, values: [staging, prod], required: true}
  - {name: token, type: secret}
steps:
  - id: first
    kind: http
    with: {url: "URL/ok"}
    outputs: {code: "result.status", twice: "result.body.n * 2"}
  - id: second
    kind: http
    when: steps.first.outputs.code == 200 && inputs.env == "prod"
    with:
      url: "URL/second"
      headers: {X-Token: "tok-${{ inputs.token }}"}
  - id: never
    kind: http
    when: steps.first.outputs.twice > 100
    with: {url: "URL/never"}
`, map[string]any{"env": "prod", "token": "hunter2"}, 0)
	res, err := e.result()
	if err != nil {
		t.Fatal(err)
	}
	if res.Steps["first"].Outputs["twice"] != float64(2) || res.Steps["second"].Status != schema.StepSucceeded || res.Steps["never"].Status != schema.StepSkipped {
		t.Fatalf("steps: %+v %+v %+v", res.Steps["first"], res.Steps["second"], res.Steps["never"])
	}
	if e.hits.count("/never") != 0 || e.hits.bodies["token"] != "tok-hunter2" {
		t.Fatalf("hits %v, token %q", e.hits.n, e.hits.bodies["token"])
	}
	rows := e.steps("when")
	if len(rows) != 3 || rows["first"].Outputs["code"] != float64(200) || rows["never"].Status != schema.StepSkipped || rows["second"].EndedAt == nil {
		t.Fatalf("read model: %+v", rows)
	}
	for _, r := range rows {
		if strings.Contains(fmt.Sprint(r.Outputs), "hunter2") {
			t.Fatalf("secret in the read model: %+v", r)
		}
	}
	run, err := e.store.Run(context.Background(), "runbook:when")
	if err != nil || run.Kind != "runbook" || run.Status != schema.RunCompleted {
		t.Fatalf("runs: %+v %v", run, err)
	}
	if rr, err := e.store.RunbookRun(context.Background(), "runbook:when"); err != nil || rr.Inputs["token"] != nil || rr.Inputs["env"] != "prod" {
		t.Fatalf("runbook run: %+v %v", rr, err)
	}
}

// TestRunbookRetryAndContinue: a step retries with backoff until it
// succeeds; a failed step with on_failure continue lets the run go on,
// and later steps read its status.
func TestRunbookRetryAndContinue(t *testing.T) {
	e := newRunbookEnv(t)
	e.run("retry", rbHead+`steps:
  - id: flaky
    kind: http
    retry: {attempts: 3, backoff: 10s}
    with: {url: "URL/flaky?fail=2"}
  - id: broken
    kind: http
    on_failure: continue
    with: {url: "URL/status/500"}
  - id: after
    kind: http
    when: steps.broken.status == "failed"
    with: {url: "URL/ok"}
`, nil, -1)
	res, err := e.result()
	if err != nil {
		t.Fatal(err)
	}
	if f := res.Steps["flaky"]; f.Status != schema.StepSucceeded || f.Attempts != 3 {
		t.Fatalf("flaky: %+v", f)
	}
	if b := res.Steps["broken"]; b.Status != schema.StepFailed || !strings.Contains(b.Error, "500") {
		t.Fatalf("broken: %+v", b)
	}
	if e.hits.count("/flaky") != 3 || e.hits.count("/ok") != 1 {
		t.Fatalf("hits %v", e.hits.n)
	}
}

// TestRunbookCompensateThenRetryFromStep: a failed step runs its
// compensation steps and the run waits; a retry from the step goes on
// from it, and the step that succeeded before it is not run again.
func TestRunbookCompensateThenRetryFromStep(t *testing.T) {
	e := newRunbookEnv(t)
	e.env.RegisterDelayedCallback(func() {
		var p workflows.RunbookProgress
		v, err := e.env.QueryWorkflow(workflows.QueryRunbook)
		if err != nil || v.Get(&p) != nil || p.FailedStep != "gated" || p.Status != schema.RunAwaitingRetry {
			t.Errorf("before the retry: %+v %v", p, err)
		}
		if rr, _ := e.store.RunbookRun(context.Background(), "runbook:comp"); rr == nil || rr.FailedStep != "gated" {
			t.Errorf("read model's failed step: %+v", rr)
		}
		e.env.UpdateWorkflow(workflows.UpdateRetryStep, "wrong", &testsuite.TestUpdateCallback{
			OnReject: func(error) {}, OnAccept: func() { t.Error("a retry of another step was accepted") }, OnComplete: func(any, error) {}},
			workflows.RetryStepRequest{Step: "before"})
		e.hits.mu.Lock()
		e.hits.open = true
		e.hits.mu.Unlock()
		e.env.UpdateWorkflow(workflows.UpdateRetryStep, "r1", &testsuite.TestUpdateCallback{
			OnReject: func(err error) { t.Errorf("retry refused: %v", err) }, OnAccept: func() {}, OnComplete: func(any, error) {}},
			workflows.RetryStepRequest{Step: "gated"})
	}, time.Hour)
	e.run("comp", rbHead+`steps:
  - id: before
    kind: http
    with: {url: "URL/ok"}
  - id: gated
    kind: http
    with: {url: "URL/gate"}
    on_failure:
      - id: undo
        kind: http
        with: {url: "URL/undo"}
  - id: last
    kind: http
    with: {url: "URL/last"}
`, nil, 0)
	res, err := e.result()
	if err != nil {
		t.Fatal(err)
	}
	if e.hits.count("/ok") != 1 || e.hits.count("/gate") != 2 || e.hits.count("/undo") != 1 || e.hits.count("/last") != 1 {
		t.Fatalf("hits %v", e.hits.n)
	}
	if g := res.Steps["gated"]; g.Status != schema.StepSucceeded || g.Attempts != 2 || res.Steps["before"].Attempts != 1 {
		t.Fatalf("steps %+v", res.Steps)
	}
	if rr, _ := e.store.RunbookRun(context.Background(), "runbook:comp"); rr.FailedStep != "" {
		t.Fatalf("failed step left in the read model: %+v", rr)
	}
}

// TestRunbookFailStep: a fail step fails the run with its message (no
// retry window: at once).
func TestRunbookFailStep(t *testing.T) {
	e := newRunbookEnv(t)
	e.run("fail", rbHead+`steps:
  - id: stop
    kind: fail
    retry: {attempts: 5}
    with: {message: "not today"}
  - id: never
    kind: http
    with: {url: "URL/never"}
`, nil, -1)
	res, err := e.result()
	if err == nil || !strings.Contains(err.Error(), "not today") {
		t.Fatalf("run: %+v %v", res, err)
	}
	if e.hits.count("/never") != 0 {
		t.Fatal("a step after the failed one ran")
	}
	if rows := e.steps("fail"); rows["stop"].Status != schema.StepFailed || rows["stop"].Attempts != 1 {
		t.Fatalf("read model: %+v", rows)
	}
	if run, _ := e.store.Run(context.Background(), "runbook:fail"); run.Status != schema.RunFailed {
		t.Fatalf("runs: %+v", run)
	}
}

// TestRunbookParallelForeach: branches run side by side; a foreach runs
// its body per item with item and index, and its outputs count them.
func TestRunbookParallelForeach(t *testing.T) {
	e := newRunbookEnv(t)
	e.run("par", rbHead+`steps:
  - id: both
    kind: parallel
    with:
      branches:
        - name: a
          steps:
            - {id: pa, kind: wait, with: {duration: 1m}}
            - {id: pa2, kind: http, with: {url: "URL/a"}}
        - name: b
          steps:
            - {id: pb, kind: wait, with: {duration: 1m}}
            - {id: pb2, kind: http, with: {url: "URL/b"}}
  - id: each
    kind: foreach
    with:
      items: [1, 2, 3, 4, 5]
      concurrency: 2
      steps:
        - id: hit
          kind: http
          with: {url: "URL/item-${{ item * 10 + index }}"}
  - id: sum
    kind: http
    when: steps.each.outputs.succeeded == 5
    with: {url: "URL/sum"}
`, nil, -1)
	res, err := e.result()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/a", "/b", "/item-10", "/item-21", "/item-54", "/sum"} {
		if e.hits.count(p) != 1 {
			t.Fatalf("%s: hits %v", p, e.hits.n)
		}
	}
	if res.Steps["each"].Outputs["total"] != float64(5) {
		t.Fatalf("each: %+v", res.Steps["each"])
	}
	rows := e.steps("par")
	if rows["each[3].hit"].Status != schema.StepSucceeded || rows["pa2"].ParentPath != "both" {
		t.Fatalf("read model: %+v", rows)
	}
}

// TestRunbookPauseResume: a paused run starts no step until resumed.
func TestRunbookPauseResume(t *testing.T) {
	e := newRunbookEnv(t)
	e.env.RegisterDelayedCallback(func() {
		e.env.UpdateWorkflow(workflows.UpdatePause, "p", &testsuite.TestUpdateCallback{
			OnReject: func(err error) { t.Errorf("pause: %v", err) }, OnAccept: func() {}, OnComplete: func(any, error) {}})
	}, time.Minute)
	e.env.RegisterDelayedCallback(func() {
		if e.hits.count("/after") != 0 {
			t.Error("a step started while paused")
		}
		e.env.UpdateWorkflow(workflows.UpdateResume, "r", &testsuite.TestUpdateCallback{
			OnReject: func(err error) { t.Errorf("resume: %v", err) }, OnAccept: func() {}, OnComplete: func(any, error) {}})
	}, 5*time.Hour)
	e.run("pause", rbHead+`steps:
  - {id: w, kind: wait, with: {duration: 10m}}
  - {id: after, kind: http, with: {url: "URL/after"}}
`, nil, -1)
	res, err := e.result()
	if err != nil || e.hits.count("/after") != 1 {
		t.Fatalf("%+v %v %v", res, err, e.hits.n)
	}
	if at := res.Steps["after"].StartedAt.Sub(res.Steps["w"].EndedAt); at < 4*time.Hour {
		t.Fatalf("the step after the pause started %s after the wait", at)
	}
}

// TestRunbookCancelCompensates: cancelling a run runs the compensation
// steps of the step in flight, and the run ends cancelled.
func TestRunbookCancelCompensates(t *testing.T) {
	e := newRunbookEnv(t)
	e.env.RegisterDelayedCallback(e.env.CancelWorkflow, time.Hour)
	e.run("cancel", rbHead+`steps:
  - id: long
    kind: wait
    with: {duration: 24h}
    on_failure:
      - {id: undo, kind: http, with: {url: "URL/undo"}}
  - {id: never, kind: http, with: {url: "URL/never"}}
`, nil, 0)
	_, err := e.result()
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "cancel") {
		t.Fatalf("run: %v", err)
	}
	if e.hits.count("/undo") != 1 || e.hits.count("/never") != 0 {
		t.Fatalf("hits %v", e.hits.n)
	}
	rows := e.steps("cancel")
	if rows["long"].Status != schema.StepCanceled || rows["undo"].Status != schema.StepSucceeded {
		t.Fatalf("read model: %+v", rows)
	}
	if run, _ := e.store.Run(context.Background(), "runbook:cancel"); run.Status != schema.RunCanceled {
		t.Fatalf("runs: %+v", run)
	}
}

// TestRunbookForeachChunks: a foreach of more items than one run holds
// runs them as chunk child runs; every item runs once and the read model
// has each item's body step.
func TestRunbookForeachChunks(t *testing.T) {
	e := newRunbookEnv(t)
	items := make([]any, 600)
	for i := range items {
		items[i] = i
	}
	e.run("chunks", rbHead+`inputs:
  - {name: items, type: list, items: int}
steps:
  - id: each
    kind: foreach
    with:
      items: ${{ inputs.items }}
      concurrency: 50
      steps:
        - {id: nap, kind: wait, with: {duration: "${{ string(item % 7 + 1) + 's' }}"}}
  - id: after
    kind: wait
    when: steps.each.outputs.succeeded == 600
    with: {duration: 1s}
`, map[string]any{"items": items}, -1)
	res, err := e.result()
	if err != nil {
		t.Fatal(err)
	}
	if o := res.Steps["each"].Outputs; o["total"] != float64(600) || o["succeeded"] != float64(600) || res.Steps["after"].Status != schema.StepSucceeded {
		t.Fatalf("each: %+v, after: %+v", o, res.Steps["after"])
	}
	rows := e.steps("chunks")
	if len(rows) != 602 || rows["each[599].nap"].Status != schema.StepSucceeded {
		t.Fatalf("read model: %d rows", len(rows))
	}
}
