package api

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/opsflow/opsflow/internal/runbook"
	"github.com/opsflow/opsflow/internal/testenv"
	"github.com/opsflow/opsflow/schema"
)

// TestRunbookGraphShapes: a sequence, a parallel's named branches side by
// side, a foreach's body under one key for all its items, a compensation.
func TestRunbookGraphShapes(t *testing.T) {
	rb, err := runbook.Builtin().Parse([]byte(a11yRunbook("shapes")))
	if err != nil {
		t.Fatal(err)
	}
	g := graphOf(rb.Steps, "", map[string]*runStepView{"hello": {Status: schema.StepSucceeded}})
	if len(g) != 4 || g[0].State == nil || g[0].State.Status != schema.StepSucceeded || g[1].State != nil {
		t.Fatalf("top level: %+v", g)
	}
	if !g[1].Parallel || len(g[1].Branches) != 2 || g[1].Branches[0].Name != "left" || g[1].Branches[1].Steps[0].Key != "r1" {
		t.Fatalf("parallel: %+v", g[1])
	}
	if !g[2].Loop || len(g[2].Branches) != 1 || g[2].Branches[0].Steps[0].Key != "each[].e1" || !g[2].Branches[0].Steps[0].InForeach {
		t.Fatalf("foreach: %+v", g[2].Branches)
	}
	if g[3].When == "" || len(g[3].Compensation) != 1 || g[3].Compensation[0].Key != "undo" {
		t.Fatalf("compensation: %+v", g[3])
	}
	counts := foreachCounts([]runStepView{{Path: "each[0].e1", Status: "succeeded"}, {Path: "each[1].e1", Status: "succeeded"}, {Path: "each[2].e1", Status: "failed"}})
	if counts["each[].e1"] != "1 Failed · 2 Succeeded" {
		t.Fatalf("counts %v", counts)
	}
}

// TestRunbookEditorRunFormAndRunPageInBrowser: an operator writes a
// runbook in the editor, which marks an error at its line as he types and
// keeps the text when a save is refused; the saved runbook's page draws
// its steps and a run form from its inputs (a missing secret is named
// beside its field); the run's page follows the run to its end, each
// step's state shown without a reload. A viewer sees the pages without
// the form or the controls.
func TestRunbookEditorRunFormAndRunPageInBrowser(t *testing.T) {
	e := newEnv(t)
	var calls atomic.Int32
	var gotEnv atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		gotEnv.Store(r.URL.Query().Get("env"))
		_, _ = w.Write([]byte(`{"healthy":true}`))
	}))
	t.Cleanup(srv.Close)
	op := e.createUser(schema.RoleOperator, "operator-password-1")
	name := fmt.Sprintf("ed-rb-%d", time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(testenv.Browser(t), 240*time.Second)
	defer cancel()
	do, _ := browserSteps(t, ctx)
	e.browserLogin(ctx, op.Username, "operator-password-1")

	good := "apiVersion: opsflow/v1\nkind: Runbook\nmetadata:\n  name: " + name + "\n  description: checks health\n" +
		"inputs:\n  - {name: env, type: enum, values: [staging, prod], default: staging}\n  - {name: token, type: secret}\n  - {name: loud, type: bool}\n" +
		"steps:\n  - id: settle\n    kind: wait\n    with: {duration: 200ms}\n" +
		"  - id: check\n    kind: http\n    with: {url: \"" + srv.URL + "/health?env=${{ inputs.env }}\", expect_status: [200]}\n" +
		"  - id: tell\n    kind: notify\n    when: inputs.loud\n    with: {channel: web, message: \"healthy on ${{ inputs.env }}\"}\n"
	// Line 15 is the check step's kind.
	broken := strings.Replace(good, "kind: http", "kind: htttp", 1)
	if lines := strings.Split(broken, "\n"); !strings.Contains(lines[14], "htttp") {
		t.Fatalf("line 15 is %q", lines[14])
	}
	typeIn := func(src string) {
		t.Helper()
		do("type the runbook", chromedp.SetValue(chromedp.ID("rb-source"), src))
		if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById("rb-source").dispatchEvent(new Event("input")), true`)); err != nil {
			t.Fatal(err)
		}
	}
	do("editor", chromedp.Navigate(e.srv.URL+"/runbooks/new"), chromedp.WaitVisible(chromedp.ID("rb-source")))
	typeIn(broken)
	pollEvery(t, 30*time.Second, 100*time.Millisecond, "the error at line 15 as typed", func() bool {
		return strings.Contains(text2(t, ctx, "#rb-errors"), "line 15:") && strings.Contains(text2(t, ctx, "#rb-gutter .bad"), "15")
	})
	// The server refuses the same text on save, keeps it and lists the error.
	do("save broken", chromedp.Click(chromedp.ID("save-runbook")), chromedp.WaitVisible(chromedp.ID("runbook-error")))
	if got := valueOf(t, ctx, "rb-source"); got != broken {
		t.Fatalf("the refused save lost the text: %q", got)
	}
	if errs := text2(t, ctx, "#rb-errors"); !strings.Contains(errs, "line 15:") || !strings.Contains(text2(t, ctx, "#rb-gutter .bad"), "15") {
		t.Fatalf("the refused save lists %q", errs)
	}
	typeIn(good)
	pollEvery(t, 30*time.Second, 100*time.Millisecond, "the text to check valid", func() bool {
		return strings.Contains(text2(t, ctx, "#rb-status"), "Valid")
	})
	do("save", chromedp.Click(chromedp.ID("save-runbook")), chromedp.WaitVisible(chromedp.ID("run-form")))
	if g := text2(t, ctx, "#rb-graph"); !strings.Contains(g, "settle") || !strings.Contains(g, "check") || !strings.Contains(g, "inputs.loud") {
		t.Fatalf("graph: %q", g)
	}
	// The form: enum a select, secret a password, bool a checkbox.
	kinds, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`["in-env","in-token","in-loud"].map(function (id) { var e = document.getElementById(id); return e.tagName + ":" + (e.type || ""); })`))
	if err != nil || strings.Join(kinds, ",") != "SELECT:select-one,INPUT:password,INPUT:checkbox" {
		t.Fatalf("run form controls %v %v", kinds, err)
	}
	do("start without the secret", chromedp.SetValue(chromedp.ID("in-env"), "prod"), chromedp.Click(chromedp.ID("start-run")),
		chromedp.WaitVisible(chromedp.ID("err-in-token")))
	if v := valueOf(t, ctx, "in-env"); v != "prod" {
		t.Fatalf("the refused start lost env: %q", v)
	}
	do("start", chromedp.SendKeys(chromedp.ID("in-token"), "hunter2"), chromedp.Click(chromedp.ID("in-loud")),
		chromedp.Click(chromedp.ID("start-run")), chromedp.WaitVisible(chromedp.ID("rb-run")))
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil || !strings.Contains(loc, "/runs/runbook") {
		t.Fatalf("after start at %s (%v)", loc, err)
	}
	runID, _ := url.PathUnescape(loc[strings.Index(loc, "/runs/")+len("/runs/"):])
	pollEvery(t, 90*time.Second, 200*time.Millisecond, "the run page to show the run succeeded", func() bool {
		return text2(t, ctx, "#run-state") == "Succeeded"
	})
	for _, step := range []string{"settle", "check", "tell"} {
		if s := text2(t, ctx, "#state-"+step); s != "Succeeded" {
			t.Errorf("step %s shows %q", step, s)
		}
	}
	if calls.Load() != 1 || gotEnv.Load() != "prod" {
		t.Errorf("the check was called %d times with env %v", calls.Load(), gotEnv.Load())
	}
	if s := shown(ctx, "rb-controls", "pause-form", "cancel-form"); s["pause-form"] || s["cancel-form"] {
		t.Errorf("controls after the end: %v", s)
	}
	if strings.Contains(text2(t, ctx, "main"), "hunter2") {
		t.Error("the run page shows the secret")
	}
	seen := map[string]map[string]bool{}
	checkPage(t, ctx, loc, "/runs/:id (runbook)", "operator", seen)
	checkPage(t, ctx, e.srv.URL+"/runbooks/"+name, "/runbooks/:name", "operator", seen)

	// A viewer sees both pages, without the run form or the controls.
	for _, path := range []string{"/runbooks/" + name, "/runs/" + url.PathEscape(runID)} {
		res := e.do(http.MethodGet, path, "viewer", nil)
		if res.Status != http.StatusOK || strings.Contains(string(res.Body), `id="run-form"`) || strings.Contains(string(res.Body), `id="rb-controls"`) ||
			!strings.Contains(string(res.Body), `id="rb-graph"`) {
			t.Errorf("viewer's %s: %d", path, res.Status)
		}
	}
}

// TestRunbookRunPageControlsInBrowser: a run whose step fails shows the
// failed step and only the retry and cancel controls; retry from it, once
// the check passes, takes the run to its end; cancel of another run asks
// first.
func TestRunbookRunPageControlsInBrowser(t *testing.T) {
	e := newEnv(t)
	var ok atomic.Bool
	var auth atomic.Value
	srv := checkServer(t, &ok, &auth)
	op := e.createUser(schema.RoleOperator, "operator-password-1")
	name := uniq(t, "rb")
	e.createRunbook(rbRunDoc(name, srv.URL))
	ctx, cancel := context.WithTimeout(testenv.Browser(t), 240*time.Second)
	defer cancel()
	do, _ := browserSteps(t, ctx)
	e.browserLogin(ctx, op.Username, "operator-password-1")
	start := func() string {
		t.Helper()
		res := e.do(http.MethodPost, "/api/v1/runbooks/"+url.PathEscape(name)+"/runs", "operator", map[string]any{"inputs": map[string]any{"token": "t"}})
		var v runView
		res.json(t, &v)
		if res.Status != http.StatusCreated {
			t.Fatalf("start: %d %s", res.Status, res.Body)
		}
		return v.WorkflowID
	}
	id := start()
	do("run page", chromedp.Navigate(e.srv.URL+"/runs/"+url.PathEscape(id)), chromedp.WaitVisible(chromedp.ID("rb-graph")))
	pollEvery(t, 60*time.Second, 200*time.Millisecond, "the failed step and its retry control", func() bool {
		s := shown(ctx, "retry-form", "pause-form", "cancel-form")
		return s["retry-form"] && !s["pause-form"] && s["cancel-form"] && text2(t, ctx, "#state-call") == "Failed"
	})
	if s := text2(t, ctx, "#retry-run"); !strings.Contains(s, "call") {
		t.Fatalf("retry button %q", s)
	}
	ok.Store(true)
	do("retry", chromedp.Click(chromedp.ID("retry-run")), chromedp.WaitVisible(chromedp.ID("flash")))
	pollEvery(t, 60*time.Second, 200*time.Millisecond, "the run to succeed after the retry", func() bool {
		return text2(t, ctx, "#run-state") == "Succeeded" && text2(t, ctx, "#state-done") == "Succeeded"
	})
	if m := text2(t, ctx, "#meta-call"); !strings.Contains(m, "attempt 2") {
		t.Errorf("call's meta %q", m)
	}

	// Cancel asks first; confirmed, the run ends cancelled.
	ok.Store(false)
	id2 := start()
	do("second run", chromedp.Navigate(e.srv.URL+"/runs/"+url.PathEscape(id2)), chromedp.WaitVisible(chromedp.ID("rb-graph")),
		chromedp.Click(chromedp.ID("cancel-run")), chromedp.WaitVisible(chromedp.ID("confirm-yes")))
	if e.runbookRun(id2).EndedAt != nil {
		t.Fatal("the run ended before the cancel was confirmed")
	}
	do("confirm cancel", chromedp.Click(chromedp.ID("confirm-yes")), chromedp.WaitVisible(chromedp.ID("flash")))
	e.waitRunbookRun(id2, "the run to be cancelled", func(v runView) bool { return v.Status == schema.RunCanceled })
}
