package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/opsflow/opsflow/internal/testenv"
	"github.com/opsflow/opsflow/schema"
)

// visibleJS reports whether the element with id is on the page and shown.
func visibleJS(id string) string {
	return fmt.Sprintf(`(function () { var e = document.getElementById(%q); return !!e && e.getClientRects().length > 0; })()`, id)
}

// shown reads which of ids are visible now; a query that fails (the page
// is loading) reads as none.
func shown(ctx context.Context, ids ...string) map[string]bool {
	out := map[string]bool{}
	for _, id := range ids {
		v, err := chromedp.Run(ctx, chromedp.Evaluate[bool](visibleJS(id)))
		out[id] = err == nil && v
	}
	return out
}

// narrowOverflow lists the pages (paths) whose main content is wider
// than a 360 px screen; the page is left at 360 px.
func narrowOverflow(t *testing.T, ctx context.Context, base string, paths ...string) []string {
	t.Helper()
	var wide []string
	for _, path := range paths {
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(360, 800), chromedp.Navigate(base+path), chromedp.WaitVisible(chromedp.CSS("main"))); err != nil {
			t.Fatalf("%s at 360 px: %v", path, err)
		}
		over, err := chromedp.Run(ctx, chromedp.Evaluate[int](`(function () { var m = document.querySelector("main"); return m.scrollWidth - m.clientWidth; })()`))
		if err != nil || over > 0 {
			// Name the widest elements, for the message.
			who, _ := chromedp.Run(ctx, chromedp.Evaluate[[]string](`(function () {
				var right = document.querySelector("main").getBoundingClientRect().right, out = [];
				document.querySelectorAll("main *").forEach(function (e) {
					var r = e.getBoundingClientRect().right;
					if (r > right + 1 && !e.closest(".scroll") && out.length < 6) out.push(e.tagName + (e.id ? "#" + e.id : "") + (e.className ? "." + e.className : "") + " " + Math.round(r));
				});
				return out;
			})()`))
			wide = append(wide, fmt.Sprintf("%s (%d px, %v: %v)", path, over, err, who))
		}
	}
	return wide
}

// text2 reads the text of the element a CSS selector finds.
func text2(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// valueOf reads an input's value.
func valueOf(t *testing.T, ctx context.Context, id string) string {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`document.getElementById(%q).value`, id)))
	if err != nil {
		t.Fatalf("value of %s: %v", id, err)
	}
	return v
}

// TestScriptEditorJobControlsAndHostTableInBrowser walks the script and
// job journey in the browser: a script with two parameters written with
// the parameter editor (a validation error keeps every input), a second
// version and its diff (old above new, parameters included), a preview
// of the run listing its hosts, then the job page: only the controls of
// the job's state, never "ended" while it runs, pause and resume, the
// summary and retry control when it ends without a reload, the host table
// filtered to failures and its CSV, retry-failed and abort confirmed.
func TestScriptEditorJobControlsAndHostTableInBrowser(t *testing.T) {
	e := newEnv(t)
	hosts := testenv.SSHD(t, 2)
	op := e.createUser(schema.RoleOperator, "operator-password-1")
	p := fmt.Sprintf("ed%d", time.Now().UnixNano())
	e.credential(p+"-key", hosts)
	ctx, cancel := context.WithTimeout(testenv.Browser(t), 240*time.Second)
	defer cancel()
	do, text := browserSteps(t, ctx)
	e.browserLogin(ctx, op.Username, "operator-password-1")

	// Two parameters through the editor; "Add parameter" brings a row.
	// Each job's hosts wait (up to 3 minutes) for a file named by the
	// job, which the test writes when the job may go on: the states are
	// the test's to set.
	gate := filepath.Join(t.TempDir(), "go")
	release := func() {
		t.Helper()
		loc, err := chromedp.Run(ctx, chromedp.Location())
		if err != nil {
			t.Fatal(err)
		}
		id, _, _ := strings.Cut(loc[strings.Index(loc, "/jobs/")+len("/jobs/"):], "?")
		if err := os.WriteFile(gate+"-"+id, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	content := "echo \"hi $WHO x$TIMES\"\nfor i in $(seq 900); do [ -e " + gate + "-$OPSFLOW_JOB ] && break; sleep 0.2; done\n[ \"$OPSFLOW_HOST_INDEX\" = 1 ] && exit 4\ntrue"
	do("new script", chromedp.Navigate(e.srv.URL+"/scripts/new"),
		chromedp.SendKeys(chromedp.ID("s-name"), p),
		chromedp.SendKeys(chromedp.ID("s-description"), "greets hosts"),
		chromedp.SendKeys(chromedp.ID("s-tags"), "greeting, demo"),
		chromedp.SetValue(chromedp.ID("s-content"), content),
		chromedp.SendKeys(chromedp.ID("pn-0"), "WHO"),
		chromedp.Click(chromedp.ID("pr-0")),
		chromedp.SendKeys(chromedp.ID("s-comment"), "first cut"),
		chromedp.Click(chromedp.ID("add-param")), chromedp.WaitVisible(chromedp.ID("pn-1")),
		chromedp.SendKeys(chromedp.ID("pn-1"), "TIMES"),
		chromedp.SetValue(chromedp.ID("pt-1"), "int"),
		chromedp.SendKeys(chromedp.ID("pd-1"), "lots"),
		chromedp.Click(chromedp.ID("save-script")), chromedp.WaitVisible(chromedp.ID("script-error")))
	if msg := text("err-pd-1"); msg == "" {
		t.Fatal("no error beside the bad default")
	}
	for id, want := range map[string]string{"s-name": p, "s-description": "greets hosts", "s-tags": "greeting, demo", "s-comment": "first cut",
		"s-content": content, "pn-0": "WHO", "pn-1": "TIMES", "pt-1": "int", "pd-1": "lots"} {
		if got := valueOf(t, ctx, id); got != want {
			t.Errorf("after the error, %s = %q, want %q", id, got, want)
		}
	}
	if ok, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById("pr-0").checked`)); !ok {
		t.Error("after the error, WHO is no longer required")
	}
	if env := text("params-env"); !strings.Contains(env, "environment variable") || !strings.Contains(env, "$NAME") {
		t.Errorf("the form does not say how parameters reach the script: %q", env)
	}
	do("save", chromedp.SetValue(chromedp.ID("pd-1"), "2"),
		chromedp.Click(chromedp.ID("save-script")), chromedp.WaitVisible(chromedp.ID("versions")))
	sc, err := e.store.Scripts(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	var saved *schema.Script
	for i := range sc {
		if sc[i].Name == p {
			saved = &sc[i]
		}
	}
	if saved == nil || saved.Description != "greets hosts" || len(saved.Tags) != 2 {
		t.Fatalf("saved script %+v", saved)
	}

	// A second version: the editor comes filled with the parameters.
	do("new version", chromedp.Click(chromedp.ID("new-version")), chromedp.WaitVisible(chromedp.ID("pn-1")))
	if got := valueOf(t, ctx, "pd-1"); got != "2" {
		t.Fatalf("version form's TIMES default %q", got)
	}
	content2 := strings.Replace(content, "hi $WHO", "hello $WHO", 1)
	do("save version", chromedp.SetValue(chromedp.ID("s-content"), content2), chromedp.SetValue(chromedp.ID("pd-1"), "3"),
		chromedp.Click(chromedp.ID("save-script")), chromedp.WaitVisible(chromedp.ID("versions")),
		chromedp.Click(chromedp.ID("show-diff")), chromedp.WaitVisible(chromedp.ID("diff")))
	d := text("diff")
	oldAt, newAt := strings.Index(d, `- echo "hi $WHO x$TIMES"`), strings.Index(d, `+ echo "hello $WHO x$TIMES"`)
	if oldAt < 0 || newAt < oldAt {
		t.Fatalf("content diff does not read old above new:\n%s", d)
	}
	pd := text("param-diff")
	if oldAt, newAt := strings.Index(pd, "- TIMES: int, default 2"), strings.Index(pd, "+ TIMES: int, default 3"); oldAt < 0 || newAt < oldAt || !strings.Contains(pd, "  WHO: string, required") {
		t.Fatalf("parameter diff:\n%s", pd)
	}

	// Preview lists the hosts and runs nothing.
	do("run form", chromedp.Click(chromedp.ID("run-script")), chromedp.WaitVisible(chromedp.ID("p-WHO")),
		chromedp.SendKeys(chromedp.ID("p-WHO"), "world"),
		chromedp.SetValue(chromedp.ID("j-hosts"), hosts.Targets[0].Addr+"\n"+hosts.Targets[1].Addr),
		chromedp.SetValue(chromedp.ID("j-cred"), credentialValue(t, e, p+"-key")),
		chromedp.SetValue(chromedp.ID("j-concurrency"), "1"),
		chromedp.Click(chromedp.ID("preview-job")), chromedp.WaitVisible(chromedp.ID("preview")))
	if n := text("preview-count"); n != "2" {
		t.Fatalf("preview count %q", n)
	}
	if l := text("preview-hosts"); !strings.Contains(l, hosts.Targets[0].Addr) || !strings.Contains(l, hosts.Targets[1].Addr) {
		t.Fatalf("preview hosts %q", l)
	}
	if n := e.jobsBy(op.Username); n != 0 {
		t.Fatalf("a preview started %d jobs", n)
	}
	if v := valueOf(t, ctx, "p-WHO"); v != "world" {
		t.Fatalf("the preview lost the parameter: %q", v)
	}

	// Running: pause, abort and concurrency only; never "ended".
	do("run", chromedp.Click(chromedp.ID("run-job")), chromedp.WaitVisible(chromedp.ID("grid")))
	jobURL, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	controls := []string{"op-pause", "op-resume", "op-abort", "set-concurrency", "retry-failed", "ended", "summary"}
	want := func(what string, visible ...string) {
		t.Helper()
		eventually(t, 60*time.Second, what, func() bool {
			s := shown(ctx, controls...)
			for _, id := range controls {
				if s[id] != slices.Contains(visible, id) {
					return false
				}
			}
			return true
		})
	}
	want("running: pause, abort, concurrency", "op-pause", "op-abort", "set-concurrency")
	if st := text("job-status"); st != schema.JobRunning && st != schema.JobQueued {
		t.Fatalf("status %q", st)
	}
	do("pause", chromedp.Click(chromedp.ID("op-pause")), chromedp.WaitVisible(chromedp.CSS(".flash")))
	if f := strings.TrimSpace(text2(t, ctx, ".flash")); !strings.Contains(f, "Done") {
		js, _ := e.store.Jobs(context.Background(), 1)
		t.Fatalf("pause: %q; job %+v", f, js)
	}
	eventually(t, 30*time.Second, "the job paused", func() bool {
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("job-status")))
		return err == nil && s == schema.JobPaused
	})
	want("paused: resume, abort", "op-resume", "op-abort")
	if c := text("count-running"); c != "1" {
		t.Fatalf("running count %q", c)
	}
	// The counts line follows the hosts: the first one finishes while
	// the job is paused.
	release()
	eventually(t, 30*time.Second, "counts: one succeeded", func() bool {
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("count-succeeded")))
		return err == nil && s == "1"
	})
	do("resume", chromedp.Click(chromedp.ID("op-resume")))
	// From here the page must follow the job by itself: a mark on the
	// window tells whether it was reloaded.
	eventually(t, 30*time.Second, "the page back after resuming", func() bool {
		mark, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`location.search.includes("resume") && document.readyState === "complete" && !!document.getElementById("grid") && (window.opsflowMark = true)`))
		return err == nil && mark
	})
	eventually(t, 60*time.Second, "the job failed", func() bool {
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("job-status")))
		if err == nil && s != schema.JobFailed && !slices.Contains([]string{schema.JobRunning, schema.JobQueued}, s) {
			t.Fatalf("status %q", s)
		}
		return err == nil && s == schema.JobFailed
	})
	want("ended with a failure: the summary and retry", "retry-failed", "summary")
	if mark, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.opsflowMark === true`)); err != nil || !mark {
		t.Fatalf("the page was reloaded to show the summary (%v)", err)
	}
	if c := text("count-failed"); c != "1" {
		t.Fatalf("failed count %q", c)
	}
	if row := text("row-1"); !strings.Contains(row, "failed") || !strings.Contains(row, "4") {
		t.Fatalf("host table row of the failed host: %q", row)
	}

	// The host table filtered to failures, and its CSV.
	do("only failures", chromedp.Click(chromedp.ID("only-failed")), chromedp.WaitVisible(chromedp.ID("host-table")))
	tbl := text("host-table")
	if !strings.Contains(tbl, hosts.Targets[1].Addr) || strings.Contains(tbl, hosts.Targets[0].Addr) || !strings.Contains(tbl, "failed") {
		t.Fatalf("failures only: %q", tbl)
	}
	csvText, err := chromedp.Run(ctx, chromedp.Evaluate[string](`fetch(document.getElementById("hosts-csv").href).then(r => r.text())`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(csvText), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "idx,address,state,exit_code,attempts") ||
		!strings.HasPrefix(lines[1], "1,"+hosts.Targets[1].Addr+",failed,4,1,") {
		t.Fatalf("failures CSV:\n%s", csvText)
	}
	// The grid is a picture for sighted users (the table names hosts):
	// its label counts states, a square's tooltip names its host's state.
	if gl, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.ID("grid"), "aria-label")); err != nil || !strings.Contains(gl.Value, "1 failed") {
		t.Fatalf("grid label %+v %v", gl, err)
	}
	if tip, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.ID("h-1"), "title")); err != nil || tip.Value != "host 1: failed" {
		t.Fatalf("grid cell tooltip %+v %v", tip, err)
	}

	// Retry the failed host, confirmed; then abort that job, confirmed.
	do("retry failed", chromedp.Click(chromedp.ID("retry-failed")), chromedp.WaitVisible(chromedp.ID("confirm-yes")))
	if m := text("confirm-message"); !strings.Contains(m, hosts.Targets[1].Addr) {
		t.Fatalf("retry confirmation %q", m)
	}
	do("confirm retry", chromedp.Click(chromedp.ID("confirm-yes")), chromedp.WaitVisible(chromedp.ID("grid")))
	if loc, _ := chromedp.Run(ctx, chromedp.Location()); loc == jobURL || !strings.Contains(loc, "/jobs/") {
		t.Fatalf("after retry at %s", loc)
	}
	want("the retry running", "op-pause", "op-abort", "set-concurrency")
	do("abort", chromedp.Click(chromedp.ID("op-abort")), chromedp.WaitVisible(chromedp.ID("confirm-yes")))
	do("confirm abort", chromedp.Click(chromedp.ID("confirm-yes")), chromedp.WaitVisible(chromedp.ID("grid")))
	eventually(t, 60*time.Second, "the retry aborted", func() bool {
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("job-status")))
		return err == nil && s == schema.JobAborted
	})
	eventually(t, 30*time.Second, "aborted: no controls", func() bool {
		s := shown(ctx, "op-pause", "op-resume", "op-abort", "set-concurrency", "ended")
		return !s["op-pause"] && !s["op-resume"] && !s["op-abort"] && !s["set-concurrency"] && !s["ended"]
	})
}

// TestJobPreviewConfirmsManyHostsInBrowser: a run over more than
// ConfirmHostsAbove hosts shows the preview (count and the first hosts)
// and starts only once the confirmation is ticked; the host table pages
// by 100.
func TestJobPreviewConfirmsManyHostsInBrowser(t *testing.T) {
	e := newEnv(t)
	admin := e.createUser(schema.RoleAdmin, "admin-password-1")
	p := fmt.Sprintf("many%d", time.Now().UnixNano())
	sid := e.script(p, `true`, nil)
	const n = 130
	var list []string
	for i := range n {
		list = append(list, fmt.Sprintf("m%03d.%s", i, p))
	}
	ctx, cancel := context.WithTimeout(testenv.Browser(t), 150*time.Second)
	defer cancel()
	do, text := browserSteps(t, ctx)
	e.browserLogin(ctx, admin.Username, "admin-password-1")
	local, err := e.store.LocalCredential(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	do("run form", chromedp.Navigate(fmt.Sprintf("%s/jobs/new?script=%d", e.srv.URL, sid)), chromedp.WaitVisible(chromedp.ID("j-hosts")),
		chromedp.SetValue(chromedp.ID("j-hosts"), strings.Join(list, "\n")),
		chromedp.SetValue(chromedp.ID("j-cred"), fmt.Sprint(local.ID)),
		chromedp.SetValue(chromedp.ID("j-concurrency"), "50"),
		chromedp.Click(chromedp.ID("run-job")), chromedp.WaitVisible(chromedp.ID("err-confirm-hosts")))
	if c := text("preview-count"); c != fmt.Sprint(n) {
		t.Fatalf("count %q", c)
	}
	items, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#preview-hosts li").length`))
	if items != previewHosts || !strings.Contains(text("preview-more"), fmt.Sprint(n-previewHosts)) {
		t.Fatalf("%d hosts listed, more %q", items, text("preview-more"))
	}
	if n := e.jobsBy(admin.Username); n != 0 {
		t.Fatalf("%d jobs started without the confirmation", n)
	}
	do("confirm and run", chromedp.Click(chromedp.ID("j-confirm-hosts")), chromedp.Click(chromedp.ID("run-job")), chromedp.WaitVisible(chromedp.ID("grid")))
	eventually(t, 90*time.Second, "the job succeeded", func() bool {
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("job-status")))
		return err == nil && s == schema.JobSucceeded
	})
	rows, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#host-table tbody tr").length`))
	if rows != hostPageSize {
		t.Fatalf("%d rows on the first page, want %d", rows, hostPageSize)
	}
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	if wide := narrowOverflow(t, ctx, "", loc); len(wide) > 0 {
		t.Errorf("the job page is wider than 360 px: %v", wide)
	}
	do("next page", chromedp.Click(chromedp.ID("hosts-next")), chromedp.WaitVisible(chromedp.ID("hosts-prev")))
	rows, _ = chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#host-table tbody tr").length`))
	if rows != n-hostPageSize || !strings.Contains(text("host-table"), list[n-1]) {
		t.Fatalf("%d rows on the second page", rows)
	}
}

// TestSchedulesPagesInBrowser: an operator creates a job schedule from
// the page (a bad cron keeps the inputs), sees its cron, next run and
// state, pauses it and deletes it (confirmed); a discovery schedule is
// listed and deleted too. A viewer reads the list without controls, and
// its posts are refused.
func TestSchedulesPagesInBrowser(t *testing.T) {
	e := newEnv(t)
	hosts := testenv.SSHD(t, 1)
	op := e.createUser(schema.RoleOperator, "operator-password-1")
	viewer := e.createUser(schema.RoleViewer, "viewer-password-1")
	p := fmt.Sprintf("sch%d", time.Now().UnixNano())
	cred := e.credential(p+"-key", hosts)
	sid := e.script(p, `echo "$WHO"`, []map[string]any{{"name": "WHO", "type": "string", "required": true}})
	r := e.do(http.MethodPost, "/api/v1/cmdb/discoveries", "operator", map[string]any{"addresses": []string{"10.9.8.7"}, "credential_id": cred, "schedule": "0 4 1 1 *"})
	var ds struct {
		ScheduleID string `json:"schedule_id"`
	}
	r.json(t, &ds)
	if r.Status >= 300 || ds.ScheduleID == "" {
		t.Fatalf("discovery schedule: %d %s", r.Status, r.Body)
	}
	name := "nightly-" + p[len(p)-6:]

	ctx, cancel := context.WithTimeout(testenv.Browser(t), 150*time.Second)
	defer cancel()
	do, text := browserSteps(t, ctx)
	e.browserLogin(ctx, op.Username, "operator-password-1")
	do("new schedule", chromedp.Navigate(e.srv.URL+"/schedules"), chromedp.Click(chromedp.ID("new-schedule")),
		chromedp.WaitVisible(chromedp.ID("sc-script")), chromedp.SetValue(chromedp.ID("sc-script"), fmt.Sprint(sid)),
		chromedp.Click(chromedp.ID("sc-next")), chromedp.WaitVisible(chromedp.ID("sc-name")),
		chromedp.SendKeys(chromedp.ID("sc-name"), name), chromedp.SendKeys(chromedp.ID("sc-cron"), "whenever"),
		chromedp.SendKeys(chromedp.ID("p-WHO"), "cron"),
		chromedp.SetValue(chromedp.ID("j-hosts"), hosts.Targets[0].Addr),
		chromedp.SetValue(chromedp.ID("j-cred"), fmt.Sprint(cred)),
		chromedp.Click(chromedp.ID("sc-save")), chromedp.WaitVisible(chromedp.ID("err-sc-cron")))
	for id, want := range map[string]string{"sc-name": name, "sc-cron": "whenever", "p-WHO": "cron", "j-hosts": hosts.Targets[0].Addr} {
		if got := valueOf(t, ctx, id); got != want {
			t.Errorf("after the error, %s = %q, want %q", id, got, want)
		}
	}
	do("create", chromedp.SetValue(chromedp.ID("sc-cron"), "30 3 * * *"), chromedp.Click(chromedp.ID("sc-save")),
		chromedp.WaitVisible(chromedp.ID("sched-"+name)))
	row := text(chromedp.ID("sched-" + name))
	if !strings.Contains(row, "30 3 * * *") || !strings.Contains(row, "active") || !strings.Contains(row, "1 hosts") {
		t.Fatalf("schedule row %q", row)
	}
	// The next run, 03:30 UTC today or tomorrow, as a <time> element
	// (shown in the viewer's zone, UTC in its datetime).
	nextRun, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector("#sched-`+name+` time") || {}).getAttribute?.("datetime") || ""`))
	if at, perr := time.Parse(time.RFC3339, nextRun); err != nil || perr != nil || at.UTC().Format("15:04") != "03:30" || time.Until(at) <= 0 || time.Until(at) > 25*time.Hour {
		t.Fatalf("next run %q (%v %v) in %q", nextRun, err, perr, row)
	}
	if dl := text("discovery-schedules"); !strings.Contains(dl, ds.ScheduleID) || !strings.Contains(dl, "0 4 1 1 *") {
		t.Fatalf("discovery schedules %q", dl)
	}
	do("pause", chromedp.Click(chromedp.ID("pause-"+name)), chromedp.WaitVisible(chromedp.ID("resume-"+name)))
	if row := text(chromedp.ID("sched-" + name)); !strings.Contains(row, "paused") {
		t.Fatalf("paused row %q", row)
	}

	// The viewer reads, without controls; its posts are refused.
	vctx, vcancel := context.WithTimeout(testenv.Browser(t), 60*time.Second)
	defer vcancel()
	e.browserLogin(vctx, viewer.Username, "viewer-password-1")
	if err := chromedp.Do(vctx, chromedp.Navigate(e.srv.URL+"/schedules"), chromedp.WaitVisible(chromedp.ID("schedules"))); err != nil {
		t.Fatal(err)
	}
	html, err := chromedp.Run(vctx, chromedp.OuterHTML(chromedp.CSS("main")))
	if err != nil || !strings.Contains(html, name) || strings.Contains(html, "pause-"+name) || strings.Contains(html, "new-schedule") || strings.Contains(html, "Delete") {
		t.Fatalf("viewer's schedules page (%v):\n%s", err, html)
	}
	for _, path := range []string{"/schedules/" + name + "/delete", "/schedules/" + name + "/resume", "/schedules", "/schedules/discovery/" + ds.ScheduleID + "/delete"} {
		if r := e.do(http.MethodPost, path, "viewer", nil); r.Status != http.StatusForbidden {
			t.Errorf("viewer POST %s: %d", path, r.Status)
		}
	}
	if r := e.do(http.MethodGet, "/schedules/new", "viewer", nil); r.Status != http.StatusForbidden {
		t.Errorf("viewer GET /schedules/new: %d", r.Status)
	}

	if wide := narrowOverflow(t, ctx, e.srv.URL, "/schedules", fmt.Sprintf("/schedules/new?script=%d", sid), "/scripts/new", fmt.Sprintf("/scripts/%d?from=1&to=1", sid),
		fmt.Sprintf("/jobs/new?script=%d", sid)); len(wide) > 0 {
		t.Errorf("wider than 360 px: %v", wide)
	}
	do("delete", chromedp.Navigate(e.srv.URL+"/schedules"), chromedp.Click(chromedp.ID("delete-"+name)), chromedp.WaitVisible(chromedp.ID("confirm-yes")))
	if _, err := e.store.JobScheduleByName(context.Background(), name); err != nil {
		t.Fatalf("the confirmation step deleted already: %v", err)
	}
	do("confirm delete", chromedp.Click(chromedp.ID("confirm-yes")), chromedp.WaitVisible(chromedp.ID("schedules")))
	if html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.ID("schedules"))); strings.Contains(html, name) {
		t.Fatalf("deleted schedule still listed:\n%s", html)
	}
	do("delete discovery", chromedp.Click(chromedp.CSS(`tr[data-schedule="`+ds.ScheduleID+`"] button`)), chromedp.WaitVisible(chromedp.ID("confirm-yes")),
		chromedp.Click(chromedp.ID("confirm-yes")), chromedp.WaitVisible(chromedp.ID("discovery-schedules")))
	if dl := text("discovery-schedules"); strings.Contains(dl, ds.ScheduleID) {
		t.Fatalf("deleted discovery schedule still listed: %q", dl)
	}
}

// TestJobPagesByRole: a viewer reads a job page and its hosts' CSV but is
// shown no control, and its posts to the job's forms are refused; a bad
// state filter is a 400 naming the field.
func TestJobPagesByRole(t *testing.T) {
	e := newEnv(t)
	p := fmt.Sprintf("role%d", time.Now().UnixNano())
	sid := e.script(p, `[ "$OPSFLOW_HOST_INDEX" = 1 ] && { echo '=1+1' >&2; exit 3; }; true`, nil)
	r := e.do(http.MethodPost, "/api/v1/jobs", "admin", map[string]any{"script_id": sid,
		"targets": map[string]any{"hosts": []string{"a." + p, "b." + p, "c." + p}, "transport": "local"}})
	var j jobResp
	r.json(t, &j)
	if r.Status != http.StatusCreated {
		t.Fatalf("job: %d %s", r.Status, r.Body)
	}
	e.waitJob(j.ID, schema.JobFailed)
	page := e.do(http.MethodGet, fmt.Sprintf("/jobs/%d", j.ID), "viewer", nil)
	body := string(page.Body)
	if page.Status != http.StatusOK || strings.Contains(body, `id="op-`) || strings.Contains(body, `id="retry-failed"`) || !strings.Contains(body, `id="host-table"`) {
		t.Fatalf("viewer's job page: %d\n%s", page.Status, body)
	}
	if op := e.do(http.MethodGet, fmt.Sprintf("/jobs/%d", j.ID), "operator", nil); !strings.Contains(string(op.Body), `id="retry-failed"`) || strings.Contains(string(op.Body), `id="op-pause"`) {
		t.Fatalf("operator's page of an ended job: retry missing or controls shown\n%s", op.Body)
	}
	for _, path := range []string{"/abort", "/pause", "/retry-failed", "/concurrency"} {
		if r := e.do(http.MethodPost, fmt.Sprintf("/jobs/%d%s", j.ID, path), "viewer", nil); r.Status != http.StatusForbidden {
			t.Errorf("viewer POST %s: %d", path, r.Status)
		}
	}
	csv := e.do(http.MethodGet, fmt.Sprintf("/jobs/%d/hosts.csv?state=failed", j.ID), "viewer", nil)
	lines := strings.Split(strings.TrimSpace(string(csv.Body)), "\n")
	if csv.Status != http.StatusOK || !strings.HasPrefix(csv.Header.Get("Content-Type"), "text/csv") || len(lines) != 2 ||
		!strings.HasPrefix(lines[1], "1,b."+p+",failed,3,1,") {
		t.Fatalf("failed hosts CSV: %d %s\n%s", csv.Status, csv.Header, csv.Body)
	}
	// The API exports the same rows.
	api := e.do(http.MethodGet, fmt.Sprintf("/api/v1/jobs/%d/hosts?format=csv&state=failed", j.ID), "viewer", nil)
	if api.Status != http.StatusOK || !strings.HasPrefix(api.Header.Get("Content-Type"), "text/csv") || string(api.Body) != string(csv.Body) {
		t.Fatalf("API CSV: %d %s\n%s", api.Status, api.Header, api.Body)
	}
	if bad := e.do(http.MethodGet, fmt.Sprintf("/api/v1/jobs/%d/hosts?format=xml", j.ID), "viewer", nil); bad.Status != http.StatusBadRequest || !strings.Contains(string(bad.Body), "format") {
		t.Fatalf("bad format: %d %s", bad.Status, bad.Body)
	}
	if bad := e.do(http.MethodGet, fmt.Sprintf("/jobs/%d?state=bogus", j.ID), "viewer", nil); bad.Status != http.StatusBadRequest || !strings.Contains(string(bad.Body), "state") {
		t.Fatalf("bad state filter: %d %s", bad.Status, bad.Body)
	}
}

// jobsBy counts the jobs user created (other tests in the package create
// theirs in the same database).
func (e *env) jobsBy(user string) int {
	e.t.Helper()
	n, err := e.store.DB.NewSelect().Model((*schema.Job)(nil)).Where("created_by = ?", user).Count(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return int(n)
}

// TestJobFormStartsOncePerSubmission: the run form carries a nonce drawn
// when it was rendered; posting the same form twice (a double click, a
// resubmitted page) starts one job, and the same page changed starts
// another.
func TestJobFormStartsOncePerSubmission(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	p := fmt.Sprintf("once%d", time.Now().UnixNano())
	sid := e.script(p, `true`, nil)
	local, err := e.store.LocalCredential(ctx)
	if err != nil {
		t.Fatal(err)
	}
	admin := e.users[schema.RoleAdmin].Username
	page := e.do(http.MethodGet, fmt.Sprintf("/jobs/new?script=%d", sid), "admin", nil, "Accept", "text/html")
	m := regexp.MustCompile(`name="form_nonce" value="([^"]+)"`).FindSubmatch(page.Body)
	if page.Status != http.StatusOK || m == nil {
		t.Fatalf("run form: %d, nonce %q", page.Status, m)
	}
	ck, csrf := e.sessionLogin(admin)
	before := e.jobsBy(admin)
	form := url.Values{"csrf_token": {csrf}, "form_nonce": {string(m[1])}, "script_id": {strconv.FormatInt(sid, 10)}, "version": {"1"},
		"credential_id": {strconv.FormatInt(local.ID, 10)}, "hosts": {"a." + p}}
	for range 2 {
		if st := e.postFormAs(ck, "/jobs", form); st != http.StatusOK && st != http.StatusSeeOther {
			t.Fatalf("launch: %d", st)
		}
	}
	if n := e.jobsBy(admin) - before; n != 1 {
		t.Fatalf("the same form posted twice started %d jobs", n)
	}
	form.Set("hosts", "b."+p)
	if st := e.postFormAs(ck, "/jobs", form); st != http.StatusOK && st != http.StatusSeeOther {
		t.Fatalf("launch: %d", st)
	}
	if n := e.jobsBy(admin) - before; n != 2 {
		t.Fatalf("the changed form started %d jobs in all, want 2", n)
	}
}
