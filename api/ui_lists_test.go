package api

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/opsflow/opsflow/internal/testenv"
	"github.com/opsflow/opsflow/schema"
)

// TestListPagesInBrowser: with 130 jobs, the jobs page pages forward to
// the oldest job and back to the newest, filters by status, searches and
// sorts, keeping the form's values; the audit log page lists entries and
// filters them, for an admin only.
func TestListPagesInBrowser(t *testing.T) {
	e := newEnvWith(t, envOptions{sqlite: true, noWorkers: true}) // the jobs here are all the jobs
	p := fmt.Sprintf("ui%d", time.Now().UnixNano())
	viewer := e.createUser(schema.RoleViewer, "viewer-password-1")
	admin := e.createUser(schema.RoleAdmin, "admin-password-1")
	jobs := seedJobs(t, e, p, viewer.Username, 130)
	row := func(j schema.Job) chromedp.CSS {
		return chromedp.CSS(`#jobs tr[data-job="` + strconv.FormatInt(j.ID, 10) + `"]`)
	}

	ctx, cancel := context.WithTimeout(testenv.Browser(t), 150*time.Second)
	defer cancel()
	do, text := browserSteps(t, ctx)
	eval := func(js string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		return s
	}
	// until polls the page for a condition (a new page has loaded).
	until := func(what, cond string) {
		t.Helper()
		eventually(t, 30*time.Second, what, func() bool {
			ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](cond))
			return err == nil && ok
		})
	}
	totalIs := func(s string) string {
		return `(document.getElementById("list-total") || {}).textContent === "` + s + `"`
	}
	rows := `String(document.querySelectorAll("#jobs tbody tr[data-job]").length)`
	e.browserLogin(ctx, viewer.Username, "viewer-password-1")

	// Newest first, 50 a page: forward to the oldest job, and back.
	do("jobs", chromedp.Navigate(e.srv.URL+"/jobs"), chromedp.WaitVisible(row(jobs[129])))
	if got := text("list-total"); got != "130 total" {
		t.Fatalf("total %q", got)
	}
	if eval(rows) != "50" || eval(`String(!!document.getElementById("prev-page"))`) != "false" {
		t.Fatalf("first page: %s rows, or a previous page", eval(rows))
	}
	do("older", chromedp.Click(chromedp.ID("next-page")), chromedp.WaitVisible(row(jobs[79])))
	do("oldest", chromedp.Click(chromedp.ID("next-page")), chromedp.WaitVisible(row(jobs[0])))
	if eval(rows) != "30" || eval(`String(!!document.getElementById("next-page"))`) != "false" {
		t.Fatalf("last page: %s rows, or a next page", eval(rows))
	}
	do("newer", chromedp.Click(chromedp.ID("prev-page")), chromedp.WaitVisible(row(jobs[30])))
	if eval(rows) != "50" {
		t.Fatalf("back a page: %s rows", eval(rows))
	}
	do("newest", chromedp.Click(chromedp.ID("prev-page")), chromedp.WaitVisible(row(jobs[129])))
	if eval(`String(!!document.getElementById("prev-page"))`) != "false" {
		t.Fatal("back on the first page, a previous page remains")
	}

	// Filter by status: 44 of the 130 failed; the form keeps its value.
	do("failed", chromedp.SetValue(chromedp.ID("f-status"), schema.JobFailed), chromedp.Click(chromedp.ID("filter")))
	until("44 failed jobs", totalIs("44 total"))
	if eval(`String([...document.querySelectorAll("#jobs tbody tr[data-job] .status")].every(s => s.textContent.trim() === "Failed"))`) != "true" {
		t.Fatal("the status filter lists a job that did not fail")
	}
	if eval(`document.getElementById("f-status").value`) != schema.JobFailed {
		t.Fatal("the status filter lost its value")
	}

	// Search, with the status filter cleared.
	needle := fmt.Sprintf("summary-%s-77", p)
	do("search", chromedp.SetValue(chromedp.ID("f-status"), ""), chromedp.SetValue(chromedp.ID("f-q"), needle),
		chromedp.Click(chromedp.ID("filter")))
	until("one job found", totalIs("1 total"))
	if got := text("list-total"); got != "1 total" || !strings.Contains(text("jobs"), "#"+strconv.FormatInt(jobs[77].ID, 10)) || eval(rows) != "1" || eval(`document.getElementById("f-q").value`) != needle {
		t.Fatalf("search: %q, %s rows", got, eval(rows))
	}

	// Sort oldest first by the Started header.
	do("clear", chromedp.Click(chromedp.ID("clear-filters")), chromedp.WaitVisible(row(jobs[129])))
	do("sort", chromedp.Click(chromedp.ID("sort-created")), chromedp.WaitVisible(row(jobs[0])))
	if first := eval(`document.querySelector("#jobs tbody tr").dataset.job`); first != strconv.FormatInt(jobs[0].ID, 10) {
		t.Fatalf("oldest first starts with job %s", first)
	}

	// A run links to the job or ticket it is, its status in the shared
	// vocabulary.
	ctxb := context.Background()
	if err := e.store.RecordRunStart(ctxb, &schema.Run{WorkflowID: jobs[5].WorkflowID, Kind: "job", StartedBy: viewer.Username}); err != nil {
		t.Fatal(err)
	}
	if err := e.store.RecordRunStatus(ctxb, jobs[5].WorkflowID, "", "job", schema.RunCompleted, "", time.Now()); err != nil {
		t.Fatal(err)
	}
	do("runs", chromedp.Navigate(e.srv.URL+"/runs?started_by="+viewer.Username), chromedp.WaitVisible(chromedp.ID("runs")))
	jobLink := fmt.Sprintf("/jobs/%d", jobs[5].ID)
	if href := eval(`document.querySelector('#runs tr[data-run="` + jobs[5].WorkflowID + `"] a.what').getAttribute("href")`); href != jobLink {
		t.Fatalf("the run links to %q, want %q", href, jobLink)
	}
	if st := eval(`document.querySelector('#runs tr[data-run="` + jobs[5].WorkflowID + `"] .status').textContent`); st != "Succeeded" {
		t.Fatalf("a completed run says %q", st)
	}

	// At 360 px the list's content fits: only the table scrolls, in its
	// own box. (The navigation above is the layout's.)
	do("narrow", chromedp.EmulateViewport(360, 740), chromedp.Navigate(e.srv.URL+"/jobs"), chromedp.WaitVisible(chromedp.ID("jobs")))
	if wide := eval(`[...document.querySelectorAll("main *")].filter(el => el.getBoundingClientRect().right > 361 && !el.closest(".scroll")).map(el => el.tagName + "#" + el.id + ":" + Math.round(el.getBoundingClientRect().right)).join(" ")`); wide != "" {
		t.Fatalf("at 360 px the jobs page overflows: %s", wide)
	}
	do("wide", chromedp.EmulateViewport(1280, 900))

	// The audit log is the admins'.
	do("viewer audit", chromedp.Navigate(e.srv.URL+"/audit"), chromedp.WaitReady(chromedp.CSS("main")))
	if title := eval(`document.title`); !strings.Contains(title, "Forbidden") {
		t.Fatalf("a viewer's audit page: %q", title)
	}
	auditor := "auditor-" + p
	for _, a := range []string{"lists.seed.a", "lists.seed.b", "lists.seed.a"} {
		if err := e.store.AppendAudit(context.Background(), &schema.AuditEntry{Actor: auditor, Action: a, Target: "thing:" + p, Status: 200}); err != nil {
			t.Fatal(err)
		}
	}
	e.browserLogin(ctx, admin.Username, "admin-password-1")
	do("audit", chromedp.Navigate(e.srv.URL+"/audit"), chromedp.WaitVisible(chromedp.ID("audit")))
	if !strings.Contains(text("audit"), auditor) {
		t.Fatalf("audit log without the seeded entries: %q", text("audit"))
	}
	do("by actor", chromedp.SendKeys(chromedp.ID("f-actor"), auditor), chromedp.Click(chromedp.ID("filter")))
	until("the auditor's 3 entries", totalIs("3 total"))
	do("by action", chromedp.SetValue(chromedp.ID("f-action"), "lists.seed.a"), chromedp.Click(chromedp.ID("filter")))
	until("2 entries of one action", totalIs("2 total"))
	if got := text("list-total"); got != "2 total" || eval(`document.getElementById("f-actor").value`) != auditor {
		t.Fatalf("entries by %s doing lists.seed.a: %q", auditor, got)
	}
	do("bad sort", chromedp.Navigate(e.srv.URL+"/audit?sort=detail"), chromedp.WaitVisible(chromedp.ID("list-error")))
	if msg := text("list-error"); !strings.Contains(msg, "sort") {
		t.Fatalf("a bad sort says %q", msg)
	}
}
