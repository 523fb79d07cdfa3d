package api

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
	"github.com/opsflow/opsflow/activities"
	"github.com/opsflow/opsflow/activities/sshexec"
	"github.com/opsflow/opsflow/schema"
	"github.com/opsflow/opsflow/workflows"
)

// formError is the message a form page shows for err: its message and the
// fields it names.
func formError(err error) string {
	e := toError(err)
	msg := e.Message
	for f, why := range e.Fields {
		msg += "; " + f + ": " + why
	}
	return msg
}

// ConfirmHostsAbove is how many matched hosts a job may have before its
// launch needs the explicit "I have checked the hosts" tick: above it, the
// form shows the preview and runs only once the box is ticked.
const ConfirmHostsAbove = 50

// previewHosts is how many matched hosts a preview lists.
const previewHosts = 50

type jobPreview struct {
	Count int
	Hosts []string // the first previewHosts
	More  int
}

// jobForm is what the run form (and the schedule form) was given, kept
// to render it again. Secret parameters are never rendered back.
type jobForm struct {
	Selector, Hosts, Concurrency, Batch, MaxFailures, HostTimeout string
	CredentialID                                                  int64
	PauseAfter, ConfirmHosts                                      bool
	Params                                                        map[string]string
}

type jobNewPage struct {
	*page
	Script      *schema.Script
	Version     *schema.ScriptVersion
	Credentials []schema.Credential
	Form        jobForm
	Errors      map[string]string
	Preview     *jobPreview
	NeedConfirm bool
	Threshold   int
}

func (a *API) jobNewData(c echo.Context, scriptID, version int64) (*jobNewPage, error) {
	ctx := c.Request().Context()
	sc, err := a.store.Script(ctx, scriptID)
	if err != nil {
		return nil, err
	}
	if version == 0 {
		version = sc.LatestVersion
	}
	v, err := a.store.ScriptVersion(ctx, scriptID, version)
	if err != nil {
		return nil, err
	}
	// The local transport is admin-only: others are not offered it.
	creds, err := a.loginCredentials(ctx, userOf(c).Role == schema.RoleAdmin)
	if err != nil {
		return nil, err
	}
	return &jobNewPage{page: a.newPage(c, "Run "+sc.Name, "jobs"), Script: sc, Version: v, Credentials: creds,
		Form: jobForm{Concurrency: "10", Params: map[string]string{}}, Errors: map[string]string{}, Threshold: ConfirmHostsAbove}, nil
}

// jobNewPage is the run form, generated from the version's parameters.
func (a *API) jobNewPage(c echo.Context) error {
	sid, _ := strconv.ParseInt(c.QueryParam("script"), 10, 64)
	ver, _ := strconv.ParseInt(c.QueryParam("version"), 10, 64)
	pg, err := a.jobNewData(c, sid, ver)
	if err != nil {
		return err
	}
	return a.render(c, http.StatusOK, "job_new", pg)
}

// jobRequestFromForm reads a job definition from the run form's fields,
// parameters typed by the version's definitions, and the form as given.
func jobRequestFromForm(c echo.Context, ver *schema.ScriptVersion) (schema.JobRequest, jobForm) {
	f := jobForm{Selector: strings.TrimSpace(c.FormValue("selector")), Hosts: c.FormValue("hosts"), Concurrency: c.FormValue("concurrency"),
		Batch: c.FormValue("batch"), MaxFailures: c.FormValue("max_failures"), HostTimeout: c.FormValue("host_timeout"),
		PauseAfter: c.FormValue("pause_after_first_batch") == "true", ConfirmHosts: c.FormValue("confirm_hosts") == "true", Params: map[string]string{}}
	f.CredentialID, _ = strconv.ParseInt(c.FormValue("credential_id"), 10, 64)
	req := schema.JobRequest{ScriptID: ver.ScriptID, Version: ver.Version, Params: map[string]json.RawMessage{}, CredentialID: f.CredentialID,
		Policy: schema.JobPolicy{Concurrency: f.Concurrency, Batch: f.Batch, PauseAfterFirstBatch: f.PauseAfter, MaxFailures: f.MaxFailures, HostTimeout: f.HostTimeout}}
	req.Targets.Selector = f.Selector
	for _, l := range strings.Split(f.Hosts, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			req.Targets.Hosts = append(req.Targets.Hosts, l)
		}
	}
	form, _ := c.FormParams()
	for _, p := range ver.Parameters {
		v, given := form["param."+p.Name]
		if given && p.Type != schema.ParamSecret {
			f.Params[p.Name] = v[0]
		}
		switch {
		case p.Type == schema.ParamBool:
			req.Params[p.Name] = json.RawMessage(strconv.FormatBool(given && v[0] == "true"))
		case !given || v[0] == "":
		case p.Type == schema.ParamInt:
			req.Params[p.Name] = json.RawMessage(v[0])
			if !json.Valid(req.Params[p.Name]) {
				req.Params[p.Name], _ = json.Marshal(v[0]) // reported as not an integer
			}
		default:
			req.Params[p.Name], _ = json.Marshal(v[0])
		}
	}
	return req, f
}

// jobCreateForm previews (a dry run: the plan, nothing runs) or launches
// a job from the run form. A launch over more than ConfirmHostsAbove hosts
// needs confirm_hosts; without it the form comes back with the preview.
func (a *API) jobCreateForm(c echo.Context) error {
	sid, _ := strconv.ParseInt(c.FormValue("script_id"), 10, 64)
	ver, _ := strconv.ParseInt(c.FormValue("version"), 10, 64)
	pg, err := a.jobNewData(c, sid, ver)
	if err != nil {
		return err
	}
	req, form := jobRequestFromForm(c, pg.Version)
	pg.Form = form
	fail := func(err error) error {
		e := toError(err)
		if e.Status >= 500 {
			return err
		}
		pg.page.Error = formError(err)
		maps.Copy(pg.Errors, e.Fields)
		return a.render(c, e.Status, "job_new", pg)
	}
	plan := req
	_, _, hosts, err := activities.PlanJobFor(c.Request().Context(), a.store, userOf(c), &plan)
	if err != nil {
		return fail(jobError(err))
	}
	pg.Preview = &jobPreview{Count: len(hosts)}
	for i, h := range hosts {
		if i == previewHosts {
			pg.Preview.More = len(hosts) - previewHosts
			break
		}
		pg.Preview.Hosts = append(pg.Preview.Hosts, h.Address)
	}
	pg.NeedConfirm = len(hosts) > ConfirmHostsAbove
	if c.FormValue("preview") != "" {
		notAudited(c)
		return a.render(c, http.StatusOK, "job_new", pg)
	}
	if pg.NeedConfirm && !form.ConfirmHosts {
		return fail(&Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: fmt.Sprintf("%d hosts match: check the list and confirm", len(hosts)),
			Fields: map[string]string{"confirm_hosts": fmt.Sprintf("tick to run on all %d hosts", len(hosts))}})
	}
	job, _, err := a.launchJob(c, req, nil)
	if err != nil {
		return fail(err)
	}
	return c.Redirect(http.StatusSeeOther, jobURL(job))
}

// hostPageSize is how many rows of a job's host table one page shows; a
// job has up to schema.MaxJobHosts hosts.
const hostPageSize = 100

// jobControl is a control of the job page and the job states it applies
// in; the page shows only those valid now, and job.js follows the state.
type jobControl struct {
	Op, Label, When string
	Danger, Visible bool
}

var jobControls = []jobControl{
	{Op: "pause", Label: "Pause", When: "queued running"},
	{Op: "resume", Label: "Resume", When: "paused"},
	{Op: "abort", Label: "Abort…", When: "queued running paused awaiting_approval", Danger: true},
}

// concurrencyWhen are the states in which the concurrency form applies.
const concurrencyWhen = "queued running"

func controlsFor(status string) []jobControl {
	out := make([]jobControl, len(jobControls))
	for i, c := range jobControls {
		c.Visible = slices.Contains(strings.Fields(c.When), status)
		out[i] = c
	}
	return out
}

type hostRow struct {
	schema.JobHost
	Duration string
}

func hostRows(hs []schema.JobHost) []hostRow {
	out := make([]hostRow, len(hs))
	for i, h := range hs {
		out[i] = hostRow{JobHost: h}
		if h.StartedAt != nil && h.EndedAt != nil {
			out[i].Duration = h.EndedAt.Sub(*h.StartedAt).Round(10 * time.Millisecond).String()
		}
	}
	return out
}

// hostStates are the states of a job's hosts in the order job.js knows
// them by (the grid's digits).
var hostStates = []string{schema.HostPending, schema.HostRunning, schema.HostSucceeded, schema.HostFailed, schema.HostSkipped}

// hostStateParam is the ?state= a host list is narrowed to, if any.
func hostStateParam(c echo.Context) (string, error) {
	state := c.QueryParam("state")
	if state != "" && !slices.Contains(hostStates, state) {
		return "", &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: "invalid state",
			Fields: map[string]string{"state": "must be pending, running, succeeded, failed or skipped"}}
	}
	return state, nil
}

type stateCount struct {
	State string
	N     int
}

type jobPageData struct {
	*page
	Job          *schema.Job
	Counts       []stateCount
	Failed, Done int
	// Grid is every host's state in host order, one digit each (the
	// index in hostStates); job.js draws a square per digit. A page of
	// 10,000 hosts carries 10 KB for its grid, not an element per host.
	Grid            string
	CanEdit         bool
	Controls        []jobControl
	ConcurrencyWhen string
	ShowConcurrency bool
	Ended           bool
	TemporalURL     string
	Ticket          *schema.Ticket
	// The host table: one page of hosts, optionally in one state.
	Rows                 []hostRow
	State                string
	States               []string
	Page, Pages, Matched int
	PrevURL, NextURL     string
}

func (a *API) jobPage(c echo.Context) error {
	j, err := a.jobParam(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	counts, err := a.store.JobCounts(ctx, j.ID)
	if err != nil {
		return err
	}
	states, err := a.store.JobHostStates(ctx, j.ID)
	if err != nil {
		return err
	}
	state, err := hostStateParam(c)
	if err != nil {
		return err
	}
	matched := j.Total
	if state != "" {
		matched = counts[state]
	}
	pages := max(1, (matched+hostPageSize-1)/hostPageSize)
	pg, _ := strconv.Atoi(c.QueryParam("page"))
	pg = min(max(pg, 1), pages)
	rows, err := a.store.JobHostsPage(ctx, j.ID, state, (pg-1)*hostPageSize, hostPageSize)
	if err != nil {
		return err
	}
	p := a.newPage(c, "Job "+strconv.FormatInt(j.ID, 10), "jobs")
	d := jobPageData{page: p, Job: j, Failed: counts[schema.HostFailed],
		Done: counts[schema.HostSucceeded] + counts[schema.HostFailed] + counts[schema.HostSkipped], Grid: gridOf(states),
		CanEdit: canOperate(p.User), Controls: controlsFor(j.Status), ConcurrencyWhen: concurrencyWhen,
		ShowConcurrency: slices.Contains(strings.Fields(concurrencyWhen), j.Status), Ended: j.EndedAt != nil,
		TemporalURL: a.temporalURL(j.WorkflowID, ""), Rows: hostRows(rows), State: state, States: hostStates,
		Page: pg, Pages: pages, Matched: matched}
	for _, s := range hostStates {
		d.Counts = append(d.Counts, stateCount{s, counts[s]})
	}
	pageURL := func(n int) string {
		q := url.Values{}
		if state != "" {
			q.Set("state", state)
		}
		q.Set("page", strconv.Itoa(n))
		return "/jobs/" + strconv.FormatInt(j.ID, 10) + "?" + q.Encode() + "#hosts"
	}
	if pg > 1 {
		d.PrevURL = pageURL(pg - 1)
	}
	if pg < pages {
		d.NextURL = pageURL(pg + 1)
	}
	if j.Policy.Approval != "" {
		d.Ticket, _ = a.store.TicketByWorkflowID(ctx, workflows.JobTicketWorkflowID(j.WorkflowID))
	}
	return a.render(c, http.StatusOK, "job", d)
}

// gridOf encodes hosts' states for the job page's grid: one digit per
// host, its state's index in hostStates.
func gridOf(states []string) string {
	b := make([]byte, len(states))
	for i, s := range states {
		b[i] = '0' + byte(max(slices.Index(hostStates, s), 0))
	}
	return string(b)
}

// jobHostsCSV exports a job's hosts (optionally those in one state) as
// CSV, a thousand rows read at a time.
func (a *API) jobHostsCSV(c echo.Context) error {
	j, err := a.jobParam(c)
	if err != nil {
		return err
	}
	state, err := hostStateParam(c)
	if err != nil {
		return err
	}
	name := fmt.Sprintf("job-%d-hosts", j.ID)
	if state != "" {
		name += "-" + state
	}
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, "text/csv; charset=utf-8")
	h.Set(echo.HeaderContentDisposition, `attachment; filename="`+name+`.csv"`)
	c.Response().WriteHeader(http.StatusOK)
	w := newSafeCSVWriter(c.Response())
	_ = w.Write([]string{"idx", "address", "state", "exit_code", "attempts", "started_at", "ended_at", "duration_seconds", "error"})
	stamp := func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	for after := -1; ; {
		hs, err := a.store.JobHosts(c.Request().Context(), j.ID, state, after, 1000)
		if err != nil {
			return err
		}
		for _, r := range hostRows(hs) {
			rec := []string{strconv.Itoa(r.Idx), r.Address, r.State, "", strconv.Itoa(r.Attempts), stamp(r.StartedAt), stamp(r.EndedAt), "", r.Error}
			if r.ExitCode != nil {
				rec[3] = strconv.Itoa(*r.ExitCode)
			}
			if r.StartedAt != nil && r.EndedAt != nil {
				rec[7] = strconv.FormatFloat(r.EndedAt.Sub(*r.StartedAt).Seconds(), 'f', 3, 64)
			}
			if err := w.Write(rec); err != nil {
				return nil // the client went away
			}
		}
		if len(hs) < 1000 {
			break
		}
		after = hs[len(hs)-1].Idx
	}
	w.Flush()
	return nil
}

func (a *API) jobHostPage(c echo.Context) error {
	j, err := a.jobParam(c)
	if err != nil {
		return err
	}
	idx, err := strconv.Atoi(c.Param("idx"))
	if err != nil {
		return newError(http.StatusBadRequest, CodeBadRequest, "invalid host index")
	}
	h, err := a.store.JobHost(c.Request().Context(), j.ID, idx)
	if err != nil {
		return err
	}
	return a.render(c, http.StatusOK, "job_host", struct {
		*page
		Host   *schema.JobHost
		Output string
		Cap    int
	}{a.newPage(c, "Host output", "jobs"), h, showBytes(h.Output), sshexec.OutputCap})
}

// showBytes makes output readable on a page: control characters (escape
// codes included) and bytes that are not UTF-8 show as escapes (\0,
// \x1b, \xff) instead of acting on the page; lines and tabs stay. The
// exact bytes are the API's output_base64.
func showBytes(b schema.Bytes) string {
	var sb strings.Builder
	for s := string(b); s != ""; {
		r, n := utf8.DecodeRuneInString(s)
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&sb, `\x%02x`, s[0])
		case r == 0:
			sb.WriteString(`\0`)
		case r == '\n' || r == '\t':
			sb.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&sb, `\x%02x`, r)
		case unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || unicode.In(r, unicode.Bidi_Control):
			fmt.Fprintf(&sb, `\u%04x`, r)
		default:
			sb.WriteString(s[:n])
		}
		s = s[n:]
	}
	return sb.String()
}

// jobControlForm applies pause, resume or abort from the job page.
func (a *API) jobControlForm(c echo.Context) error {
	j, err := a.jobParam(c)
	if err != nil {
		return err
	}
	op := c.Param("op")
	update := map[string]string{"pause": workflows.UpdatePause, "resume": workflows.UpdateResume, "abort": workflows.UpdateAbort}[op]
	if update == "" {
		return newError(http.StatusNotFound, CodeNotFound, "no such action")
	}
	if op == "abort" && j.EndedAt == nil && !confirmed(c) {
		return a.confirmPage(c, confirmation{Title: fmt.Sprintf("Abort job #%d?", j.ID),
			Message: fmt.Sprintf("Hosts not yet run (%d of %d are not done) will be skipped; hosts running now are stopped. This cannot be undone.", j.Total-a.doneHosts(c, j), j.Total),
			Action:  c.Request().URL.Path, Button: "Abort the job", Danger: true, Resubmit: true, Back: jobURL(j)})
	}
	setAudit(c, "job."+op, "job:"+strconv.FormatInt(j.ID, 10))
	return a.jobFormUpdate(c, j, update, nil)
}

func (a *API) jobConcurrencyForm(c echo.Context) error {
	j, err := a.jobParam(c)
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(c.FormValue("concurrency"))
	setAudit(c, "job.set_concurrency", "job:"+strconv.FormatInt(j.ID, 10))
	if err != nil || n < 1 || n > 2000 {
		return a.redirectFlash(c, j, "Concurrency must be from 1 to 2000.")
	}
	return a.jobFormUpdate(c, j, workflows.UpdateSetConcurrency, workflows.SetConcurrencyRequest{Concurrency: n})
}

func (a *API) jobFormUpdate(c echo.Context, j *schema.Job, update string, arg any) error {
	if _, err := a.sendJobUpdate(c.Request().Context(), j, update, arg); err != nil {
		return a.redirectFlash(c, j, toError(err).Message)
	}
	return a.redirectFlash(c, j, "Done: "+update+".")
}

func (a *API) redirectFlash(c echo.Context, j *schema.Job, msg string) error {
	return c.Redirect(http.StatusSeeOther, jobURL(j)+"?flash="+url.QueryEscape(msg))
}

func (a *API) jobRetryForm(c echo.Context) error {
	j, err := a.jobParam(c)
	if err != nil {
		return err
	}
	req, err := a.retryRequest(c, j)
	if err != nil {
		return a.redirectFlash(c, j, toError(err).Message)
	}
	if !confirmed(c) {
		return a.confirmPage(c, confirmation{Title: fmt.Sprintf("Retry the failed hosts of job #%d?", j.ID),
			Message: fmt.Sprintf("A new job runs script %d v%d again on the %d failed hosts: %s.", j.ScriptID, j.ScriptVersion, len(req.Targets.Hosts), abbreviate(req.Targets.Hosts, 10)),
			Action:  c.Request().URL.Path, Button: "Retry failed hosts", Resubmit: true, Back: jobURL(j)})
	}
	nj, _, err := a.launchJob(c, req, &j.ID)
	if err != nil {
		return a.redirectFlash(c, j, formError(err))
	}
	return c.Redirect(http.StatusSeeOther, "/jobs/"+strconv.FormatInt(nj.ID, 10))
}

func jobURL(j *schema.Job) string { return "/jobs/" + strconv.FormatInt(j.ID, 10) }

func (a *API) doneHosts(c echo.Context, j *schema.Job) int {
	counts, _ := a.store.JobCounts(c.Request().Context(), j.ID)
	return counts[schema.HostSucceeded] + counts[schema.HostFailed] + counts[schema.HostSkipped]
}

// abbreviate lists the first n of ss, and how many more there are.
func abbreviate(ss []string, n int) string {
	if len(ss) <= n {
		return strings.Join(ss, ", ")
	}
	return strings.Join(ss[:n], ", ") + fmt.Sprintf(" and %d more", len(ss)-n)
}

// jobPageRoutes are the job, script and schedule pages' own routes.
func (a *API) jobPageRoutes() []route {
	return []route{
		{Method: http.MethodGet, Path: "/jobs/:id/hosts.csv", Roles: anyUser, handler: a.jobHostsCSV},
		{Method: http.MethodGet, Path: "/schedules", Roles: anyUser, handler: a.schedulesPage},
		{Method: http.MethodGet, Path: "/schedules/new", Roles: operators, handler: a.scheduleNewPage},
		{Method: http.MethodPost, Path: "/schedules", Roles: operators, handler: a.scheduleCreateForm},
		{Method: http.MethodPost, Path: "/schedules/:name/:op", Roles: operators, handler: a.scheduleOpForm},
		{Method: http.MethodPost, Path: "/schedules/discovery/:id/delete", Roles: operators, handler: a.discoveryScheduleDeleteForm},
	}
}
