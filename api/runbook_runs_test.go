package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opsflow/opsflow/schema"
	"github.com/opsflow/opsflow/workflows"
)

// rbRunDoc is a runbook that waits a moment, calls url with a secret
// bearer token, and reports the answer's status.
func rbRunDoc(name, url string) string {
	return "apiVersion: opsflow/v1\nkind: Runbook\nmetadata:\n  name: " + name + "\n" +
		"inputs:\n  - {name: env, type: enum, values: [staging, prod], default: staging}\n  - {name: token, type: secret}\n  - {name: count, type: int, default: 1}\n" +
		"steps:\n" +
		"  - id: settle\n    kind: wait\n    with: {duration: 10ms}\n" +
		"  - id: call\n    kind: http\n    with: {url: \"" + url + "/check?env=${{ inputs.env }}\", headers: {Authorization: \"Bearer ${{ inputs.token }}\"}, expect_status: [200]}\n" +
		"    outputs: {code: \"result.status\"}\n" +
		"  - id: done\n    kind: notify\n    with: {channel: web, message: \"called ${{ steps.call.outputs.code }} for ${{ inputs.env }}\"}\n"
}

// createRunbook stores src as a new runbook.
func (e *env) createRunbook(src string) {
	e.t.Helper()
	if res := e.do(http.MethodPost, "/api/v1/runbooks", "operator", map[string]string{"source": src}); res.Status != http.StatusCreated {
		e.t.Fatalf("create runbook: %d %s", res.Status, res.Body)
	}
}

// runbookRun reads a run's view.
func (e *env) runbookRun(id string) runView {
	e.t.Helper()
	res := e.do(http.MethodGet, "/api/v1/runs/"+url.PathEscape(id), "viewer", nil)
	if res.Status != http.StatusOK {
		e.t.Fatalf("run %s: %d %s", id, res.Status, res.Body)
	}
	var v runView
	res.json(e.t, &v)
	return v
}

// waitRunbookRun polls the run until f says it is there.
func (e *env) waitRunbookRun(id, what string, f func(v runView) bool) runView {
	e.t.Helper()
	var v runView
	pollEvery(e.t, 90*time.Second, 200*time.Millisecond, what, func() bool {
		v = e.runbookRun(id)
		return f(v)
	})
	return v
}

func stepOf(v runView, path string) runStepView {
	for _, s := range v.Steps {
		if s.Path == path {
			return s
		}
	}
	return runStepView{}
}

// checkServer answers /check with 200 once ok is set (500 before), and
// records the Authorization header it was sent.
func checkServer(t *testing.T, ok *atomic.Bool, auth *atomic.Value) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth.Store(r.Header.Get("Authorization"))
		if !ok.Load() {
			http.Error(w, "not yet", http.StatusInternalServerError)
			return
		}
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestRunbookRunStartsAndSucceeds: an operator starts a run (201), the
// same Idempotency-Key returns it (200), a viewer may not start one, bad
// inputs are 422 naming inputs.<name>, an unknown runbook 404; the run
// goes to completed with its steps, outputs and version in the API, and
// the secret input never shows.
func TestRunbookRunStartsAndSucceeds(t *testing.T) {
	e := newEnv(t)
	var ok atomic.Bool
	var auth atomic.Value
	ok.Store(true)
	srv := checkServer(t, &ok, &auth)
	name := uniq(t, "rb")
	e.createRunbook(rbRunDoc(name, srv.URL))
	path := "/api/v1/runbooks/" + url.PathEscape(name) + "/runs"
	const secret = "s3cr3t-t0ken-value"

	for _, c := range []struct {
		body  any
		field string
	}{
		{map[string]any{"inputs": map[string]any{"env": "qa", "token": "x"}}, "inputs.env"},
		{map[string]any{"inputs": map[string]any{"env": "prod"}}, "inputs.token"},
		{map[string]any{"inputs": map[string]any{"token": "x", "count": "many"}}, "inputs.count"},
		{map[string]any{"inputs": map[string]any{"token": "x", "nope": 1}}, "inputs.nope"},
	} {
		res := e.do(http.MethodPost, path, "operator", c.body)
		if res.Status != http.StatusUnprocessableEntity || res.apiError(t).Fields[c.field] == "" {
			t.Errorf("%v: %d %s, want 422 naming %s", c.body, res.Status, res.Body, c.field)
		}
	}
	body := map[string]any{"inputs": map[string]any{"env": "prod", "token": secret, "count": 3}}
	if res := e.do(http.MethodPost, path, "viewer", body); res.Status != http.StatusForbidden {
		t.Fatalf("viewer start: %d %s", res.Status, res.Body)
	}
	if res := e.do(http.MethodPost, "/api/v1/runbooks/"+name+"-nope/runs", "operator", body); res.Status != http.StatusNotFound {
		t.Fatalf("unknown runbook: %d %s", res.Status, res.Body)
	}
	if res := e.do(http.MethodPost, path, "operator", map[string]any{"version": 7}); res.Status != http.StatusNotFound {
		t.Fatalf("unknown version: %d %s", res.Status, res.Body)
	}

	key := []string{"Idempotency-Key", uniq(t, "key")}
	res := e.do(http.MethodPost, path, "operator", body, key...)
	if res.Status != http.StatusCreated {
		t.Fatalf("start: %d %s", res.Status, res.Body)
	}
	var started runView
	res.json(t, &started)
	if started.Kind != workflows.KindRunbook || !strings.HasPrefix(started.WorkflowID, "runbook:") || started.Target != name ||
		started.Runbook == nil || started.Runbook.Name != name || started.Runbook.Version != 1 || started.Runbook.ID == 0 {
		t.Fatalf("started: %s", res.Body)
	}
	again := e.do(http.MethodPost, path, "operator", body, key...)
	var second runView
	again.json(t, &second)
	if again.Status != http.StatusOK || second.WorkflowID != started.WorkflowID {
		t.Fatalf("repeat: %d %s", again.Status, again.Body)
	}

	v := e.waitRunbookRun(started.WorkflowID, "the run to complete", func(v runView) bool { return v.Status != schema.RunRunning })
	if v.Status != schema.RunCompleted || len(v.Steps) != 3 {
		t.Fatalf("run: %+v", v)
	}
	for i, want := range []string{"settle", "call", "done"} {
		s := v.Steps[i]
		if s.ID != want || s.Path != want || s.Status != schema.StepSucceeded || s.Attempts != 1 || s.StartedAt == nil || s.EndedAt == nil {
			t.Errorf("step %d: %+v", i, s)
		}
	}
	if code := stepOf(v, "call").Outputs["code"]; code != float64(200) {
		t.Errorf("call outputs: %v", stepOf(v, "call").Outputs)
	}
	if got, _ := auth.Load().(string); got != "Bearer "+secret {
		t.Errorf("the http step sent %q", got)
	}
	raw := e.do(http.MethodGet, "/api/v1/runs/"+url.PathEscape(started.WorkflowID), "viewer", nil)
	if strings.Contains(string(raw.Body), secret) {
		t.Fatalf("the run shows the secret: %s", raw.Body)
	}
	// Nor does the run's history hold it, in raw bytes or decoded with the
	// key: inputs, activity inputs and results, local activities' markers.
	var ps []rawPayload
	for _, ev := range rawHistory(t, e.temporal, started.WorkflowID) {
		ps = append(ps, payloadsIn(ev, started.WorkflowID+" "+ev.GetEventType().String())...)
	}
	if len(ps) < 5 {
		t.Fatalf("only %d payloads in the run's history", len(ps))
	}
	checkPayloads(t, e.keys, ps, secret)
	if n := countAuditOn(t, e, "runbook.run", "runbook:"+name); n != 1 {
		t.Errorf("%d runbook.run audit entries on runbook:%s, want 1", n, name)
	}
	// A run that ended takes no controls.
	for _, op := range []string{"pause", "resume", "retry"} {
		if res := e.do(http.MethodPost, "/api/v1/runs/"+url.PathEscape(started.WorkflowID)+"/"+op, "operator", nil); res.Status != http.StatusConflict {
			t.Errorf("%s after the end: %d %s", op, res.Status, res.Body)
		}
	}
}

// TestRunbookRunRetryFromFailedStep: a step that fails leaves the run
// awaiting_retry on it; a retry naming another step is refused, a retry
// from it runs it again and the run completes, the step before it not
// run again.
func TestRunbookRunRetryFromFailedStep(t *testing.T) {
	e := newEnv(t)
	var ok atomic.Bool
	var auth atomic.Value
	srv := checkServer(t, &ok, &auth)
	name := uniq(t, "rb")
	e.createRunbook(rbRunDoc(name, srv.URL))
	res := e.do(http.MethodPost, "/api/v1/runbooks/"+url.PathEscape(name)+"/runs", "operator", map[string]any{"inputs": map[string]any{"token": "t"}})
	if res.Status != http.StatusCreated {
		t.Fatalf("start: %d %s", res.Status, res.Body)
	}
	var started runView
	res.json(t, &started)
	id := url.PathEscape(started.WorkflowID)
	v := e.waitRunbookRun(started.WorkflowID, "the call to fail", func(v runView) bool { return v.FailedStep != "" })
	if v.FailedStep != "call" || v.Status != schema.RunAwaitingRetry || stepOf(v, "call").Status != schema.StepFailed || stepOf(v, "call").Error == "" {
		t.Fatalf("failed run: %+v", v)
	}
	if res := e.do(http.MethodPost, "/api/v1/runs/"+id+"/retry", "viewer", map[string]string{}); res.Status != http.StatusForbidden {
		t.Fatalf("viewer retry: %d", res.Status)
	}
	if res := e.do(http.MethodPost, "/api/v1/runs/"+id+"/retry", "operator", map[string]string{"step": "settle"}); res.Status != http.StatusConflict {
		t.Fatalf("retry of another step: %d %s", res.Status, res.Body)
	}
	ok.Store(true)
	res = e.do(http.MethodPost, "/api/v1/runs/"+id+"/retry", "operator", map[string]string{"step": "call"})
	if res.Status != http.StatusOK {
		t.Fatalf("retry: %d %s", res.Status, res.Body)
	}
	v = e.waitRunbookRun(started.WorkflowID, "the run to complete", func(v runView) bool { return v.Status != schema.RunRunning && v.Status != schema.RunAwaitingRetry })
	if v.Status != schema.RunCompleted || v.FailedStep != "" {
		t.Fatalf("after retry: %+v", v)
	}
	if s := stepOf(v, "settle"); s.Attempts != 1 || s.Status != schema.StepSucceeded {
		t.Errorf("settle ran again: %+v", s)
	}
	if s := stepOf(v, "call"); s.Attempts != 2 || s.Status != schema.StepSucceeded {
		t.Errorf("call: %+v", s)
	}
	if n := countAuditOn(t, e, "run.retry", "run:"+started.WorkflowID); n != 1 {
		t.Errorf("%d run.retry audit entries, want 1", n)
	}
}

// TestRunbookRunPauseResumeCancel: pause and resume act once each (a
// second pause is a 409); cancelling a run in a step runs the step's
// compensation.
func TestRunbookRunPauseResumeCancel(t *testing.T) {
	e := newEnv(t)
	var undone atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { undone.Add(1) }))
	t.Cleanup(srv.Close)
	name := uniq(t, "rb")
	e.createRunbook("apiVersion: opsflow/v1\nkind: Runbook\nmetadata:\n  name: " + name + "\nsteps:\n" +
		"  - id: hold\n    kind: wait\n    with: {duration: 1h}\n    on_failure:\n      - {id: undo, kind: http, with: {url: \"" + srv.URL + "/undo\"}}\n" +
		"  - {id: never, kind: fail, with: {message: never}}\n")
	res := e.do(http.MethodPost, "/api/v1/runbooks/"+url.PathEscape(name)+"/runs", "operator", map[string]any{})
	if res.Status != http.StatusCreated {
		t.Fatalf("start: %d %s", res.Status, res.Body)
	}
	var started runView
	res.json(t, &started)
	id := "/api/v1/runs/" + url.PathEscape(started.WorkflowID)
	e.waitRunbookRun(started.WorkflowID, "hold to run", func(v runView) bool { return stepOf(v, "hold").Status == schema.StepRunning })
	if res := e.do(http.MethodPost, id+"/resume", "operator", nil); res.Status != http.StatusConflict {
		t.Fatalf("resume of a running run: %d %s", res.Status, res.Body)
	}
	res = e.do(http.MethodPost, id+"/pause", "operator", nil)
	var v runView
	res.json(t, &v)
	if res.Status != http.StatusOK || !v.Paused {
		t.Fatalf("pause: %d %s", res.Status, res.Body)
	}
	if res := e.do(http.MethodPost, id+"/pause", "operator", nil); res.Status != http.StatusConflict {
		t.Fatalf("second pause: %d %s", res.Status, res.Body)
	}
	if res := e.do(http.MethodPost, id+"/retry", "operator", nil); res.Status != http.StatusConflict {
		t.Fatalf("retry without a failed step: %d %s", res.Status, res.Body)
	}
	res = e.do(http.MethodPost, id+"/resume", "operator", nil)
	var resumed runView
	res.json(t, &resumed)
	if res.Status != http.StatusOK || resumed.Paused {
		t.Fatalf("resume: %d %s", res.Status, res.Body)
	}
	if res := e.do(http.MethodPost, id+"/cancel", "operator", nil); res.Status != http.StatusAccepted {
		t.Fatalf("cancel: %d %s", res.Status, res.Body)
	}
	v = e.waitRunbookRun(started.WorkflowID, "the run to end", func(v runView) bool { return v.EndedAt != nil })
	if v.Status != schema.RunCanceled || stepOf(v, "hold").Status != schema.StepCanceled || stepOf(v, "undo").Status != schema.StepSucceeded ||
		undone.Load() != 1 || stepOf(v, "never").Status != "" {
		t.Fatalf("cancelled run (undo called %d times): %+v", undone.Load(), v)
	}
}

// countAuditOn counts the successful (2xx) audit entries of action on target.
func countAuditOn(t *testing.T, e *env, action, target string) int {
	t.Helper()
	es, err := e.store.Audit(context.Background(), schema.AuditFilter{Action: action, Target: target, Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, a := range es {
		if a.Status < 300 {
			n++
		}
	}
	return n
}
