package api

import (
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/opsflow/opsflow/schema"
	"github.com/opsflow/opsflow/workflows"
)

// The list pages: jobs, runs, CIs, approval tickets and the audit log. Each
// has a filter form (GET, keeping its values), sortable column headers,
// Newer/Older (previous/next) links and the total for the filter, all over
// the same paging model as the API (lists.go).

func (a *API) listRoutes() []route {
	return []route{
		{Method: http.MethodGet, Path: "/audit", Roles: admins, handler: a.auditPage},
	}
}

// listView is a list page's state: the query it was asked (filters, sort
// and order, never the cursor), the page it shows and a refused filter.
type listView struct {
	path  string
	query url.Values
	Info  schema.PageInfo
	Error string
	// timeSorted pages say Newer/Older; others Previous/Next.
	timeSorted bool
}

// newListView keeps the named parameters of the request, and sort and
// order, for links that change one of them.
func newListView(c echo.Context, path string, keep ...string) *listView {
	l := &listView{path: path, query: url.Values{}}
	for _, k := range append(keep, "sort", "order") {
		if v := c.QueryParam(k); v != "" {
			l.query.Set(k, v)
		}
	}
	return l
}

// Value is a kept parameter, for the filter form.
func (l *listView) Value(name string) string { return l.query.Get(name) }

func (l *listView) url(set map[string]string) string {
	q := url.Values{}
	for k, vs := range l.query {
		q[k] = vs
	}
	for k, v := range set {
		q.Set(k, v)
	}
	if len(q) == 0 {
		return l.path
	}
	return l.path + "?" + q.Encode()
}

// timeKeys sort newest first on a first click; other keys A to Z.
var timeKeys = map[string]bool{"created": true, "started": true, "updated": true, "at": true, "id": true}

// Th is a sortable column header: a link that sorts by key, or reverses
// the order when the list is already sorted by it.
func (l *listView) Th(key, label string) template.HTML {
	order, aria, mark := schema.OrderAsc, "", ""
	if timeKeys[key] {
		order = schema.OrderDesc
	}
	if l.Info.Sort == key {
		aria, mark = ` aria-sort="ascending"`, " ▲"
		order = schema.OrderDesc
		if l.Info.Order == schema.OrderDesc {
			aria, mark, order = ` aria-sort="descending"`, " ▼", schema.OrderAsc
		}
	}
	return template.HTML(`<th` + aria + `><a class="sort" id="sort-` + template.HTMLEscapeString(key) + `" href="` +
		template.HTMLEscapeString(l.url(map[string]string{"sort": key, "order": order})) + `">` +
		template.HTMLEscapeString(label) + mark + `</a></th>`)
}

// Pager is the total and the links to the neighbouring pages; ids tells
// the one copy of a page (of two, above and below the table) whose
// elements carry IDs.
func (l *listView) Pager(ids bool) template.HTML {
	id := func(s string) string {
		if ids {
			return ` id="` + s + `"`
		}
		return ""
	}
	prev, next := "← Previous", "Next →"
	if l.timeSorted && l.Info.Order == schema.OrderDesc {
		prev, next = "← Newer", "Older →"
	}
	var b strings.Builder
	b.WriteString(`<nav class="pager" aria-label="Pages"><span` + id("list-total") + `>` + strconv.Itoa(l.Info.Total) + ` total</span>`)
	if l.Info.Prev != "" {
		b.WriteString(` <a` + id("prev-page") + ` rel="prev" href="` + template.HTMLEscapeString(l.url(map[string]string{"cursor": l.Info.Prev})) + `">` + prev + `</a>`)
	}
	if l.Info.Next != "" {
		b.WriteString(` <a` + id("next-page") + ` rel="next" href="` + template.HTMLEscapeString(l.url(map[string]string{"cursor": l.Info.Next})) + `">` + next + `</a>`)
	}
	b.WriteString(`</nav>`)
	return template.HTML(b.String())
}

// SortInputs carry the sort into the filter form.
func (l *listView) SortInputs() template.HTML {
	var b strings.Builder
	for _, k := range []string{"sort", "order"} {
		if v := l.query.Get(k); v != "" {
			b.WriteString(`<input type="hidden" name="` + k + `" value="` + template.HTMLEscapeString(v) + `">`)
		}
	}
	return template.HTML(b.String())
}

// refuse shows a refused filter on the page (422) instead of failing it;
// other errors pass through.
func (l *listView) refuse(err error) (int, error) {
	var ve *schema.ValidationError
	var ae *Error
	switch {
	case err == nil:
		return http.StatusOK, nil
	case errors.As(err, &ve), errors.As(err, &ae) && ae.Status == http.StatusUnprocessableEntity, errors.Is(err, schema.ErrBadCursor):
		e := toError(err)
		names := make([]string, 0, len(e.Fields))
		for k, v := range e.Fields {
			names = append(names, k+": "+v)
		}
		sort.Strings(names)
		l.Error = strings.Join(names, "; ")
		if l.Error == "" {
			l.Error = e.Message
		}
		return http.StatusUnprocessableEntity, nil
	}
	return 0, err
}

// stateWords is the one status vocabulary of runs, jobs and tickets on
// the pages: a word and its kind (the badge's class), shown as text.
var stateWords = map[string][2]string{
	schema.JobQueued:           {"Queued", "waiting"},
	schema.JobAwaitingApproval: {"Awaiting approval", "waiting"},
	schema.TicketPending:       {"Awaiting decision", "waiting"},
	schema.JobPaused:           {"Paused", "waiting"},
	schema.RunRunning:          {"Running", "running"},
	schema.JobSucceeded:        {"Succeeded", "ok"},
	schema.RunCompleted:        {"Succeeded", "ok"},
	schema.TicketApproved:      {"Approved", "ok"},
	schema.RunFailed:           {"Failed", "bad"},
	schema.RunTimedOut:         {"Timed out", "bad"},
	schema.RunTerminated:       {"Terminated", "bad"},
	schema.JobRejected:         {"Rejected", "bad"},
	schema.TicketExpired:       {"Expired", "bad"},
	schema.JobAborted:          {"Cancelled", "stopped"},
	schema.RunCanceled:         {"Cancelled", "stopped"},
	schema.TicketWithdrawn:     {"Withdrawn", "stopped"},
	schema.RunAwaitingRetry:    {"Awaiting retry", "waiting"},
	schema.StepSkipped:         {"Skipped", "stopped"},
}

// stateWord is a status in the pages' vocabulary.
func stateWord(status string) string {
	if w, ok := stateWords[status]; ok {
		return w[0]
	}
	return status
}

// stateBadge shows a status as its word, its kind in the class, and the
// status as stored on hover.
func stateBadge(status string) template.HTML {
	kind := "other"
	if w, ok := stateWords[status]; ok {
		kind = w[1]
	}
	s := template.HTMLEscapeString(status)
	return template.HTML(`<span class="status ` + s + ` st-` + kind + `" title="` + s + `">` + template.HTMLEscapeString(stateWord(status)) + `</span>`)
}

// statusOption is a status filter's choice.
type statusOption struct{ Value, Label string }

func statusOptions(statuses []string) []statusOption {
	out := make([]statusOption, len(statuses))
	for i, s := range statuses {
		out[i] = statusOption{s, stateWord(s) + " (" + s + ")"}
	}
	return out
}

func (a *API) jobsPage(c echo.Context) error {
	ctx := c.Request().Context()
	l := newListView(c, "/jobs", "status", "script", "created_by", "host", "since", "until", "tz", "q")
	bad := fieldErrors{}
	f, err := a.jobFilter(ctx, c.QueryParams(), bad)
	if err != nil {
		return err
	}
	var js []schema.Job
	err = bad.err()
	if err == nil {
		js, l.Info, err = a.store.JobList(ctx, f)
	}
	status, err := l.refuse(err)
	if err != nil {
		return err
	}
	ids := make([]int64, len(js))
	for i, j := range js {
		ids[i] = j.ScriptID
	}
	names, err := a.store.ScriptNames(ctx, ids)
	if err != nil {
		return err
	}
	l.timeSorted = l.Info.Sort == "created" || l.Info.Sort == "id"
	p := a.newPage(c, "Jobs", "jobs")
	return a.render(c, status, "jobs", struct {
		*page
		L        *listView
		Jobs     []schema.Job
		Scripts  map[int64]string
		Statuses []statusOption
		CanEdit  bool
	}{p, l, js, names, statusOptions(jobStatuses), canOperate(p.User)})
}

// runRow is a run with a link to what it is: its job or its ticket.
type runRow struct {
	runView
	Link, LinkText string
}

func (a *API) runsPage(c echo.Context) error {
	ctx := c.Request().Context()
	l := newListView(c, "/runs", "kind", "status", "started_by", "since", "until", "tz", "q")
	bad := fieldErrors{}
	f := runFilter(c.QueryParams(), bad)
	var rs []schema.Run
	err := bad.err()
	if err == nil {
		rs, l.Info, err = a.store.RunList(ctx, f)
	}
	status, err := l.refuse(err)
	if err != nil {
		return err
	}
	l.timeSorted = l.Info.Sort == "started"
	rows, err := a.runRows(c, rs)
	if err != nil {
		return err
	}
	p := a.newPage(c, "Runs", "runs")
	return a.render(c, status, "runs", struct {
		*page
		L        *listView
		Runs     []runRow
		Kinds    []string
		Statuses []statusOption
		CanStart bool
	}{p, l, rows, runKinds, statusOptions(runStatuses), canOperate(p.User)})
}

// runRows links each run to the job or ticket its workflow ID names.
func (a *API) runRows(c echo.Context, rs []schema.Run) ([]runRow, error) {
	var jobWIDs, ticketWIDs []string
	for _, r := range rs {
		switch workflows.KindOf(r.WorkflowID) {
		case workflows.KindJob:
			jobWIDs = append(jobWIDs, r.WorkflowID)
		case workflows.KindApproval:
			ticketWIDs = append(ticketWIDs, r.WorkflowID)
		}
	}
	jobs, err := a.store.JobIDsByWorkflow(c.Request().Context(), jobWIDs)
	if err != nil {
		return nil, err
	}
	tickets, err := a.store.TicketIDsByWorkflow(c.Request().Context(), ticketWIDs)
	if err != nil {
		return nil, err
	}
	rows := make([]runRow, len(rs))
	for i, r := range rs {
		rows[i] = runRow{runView: a.view(r)}
		if id, ok := jobs[r.WorkflowID]; ok {
			rows[i].Link, rows[i].LinkText = "/jobs/"+strconv.FormatInt(id, 10), "Job #"+strconv.FormatInt(id, 10)
		} else if id, ok := tickets[r.WorkflowID]; ok {
			rows[i].Link, rows[i].LinkText = "/approvals/"+strconv.FormatInt(id, 10), "Approval #"+strconv.FormatInt(id, 10)
		} else if r.Kind == workflows.KindRunbook && r.Target != "" {
			rows[i].Link, rows[i].LinkText = "/runbooks/"+url.PathEscape(r.Target), "Runbook "+r.Target
		}
	}
	return rows, nil
}

func (a *API) cmdbPage(c echo.Context) error {
	ctx := c.Request().Context()
	l := newListView(c, "/cmdb", "type", "selector", "q", "attr", "limit")
	bad := fieldErrors{}
	cq := ciQuery(c.QueryParams(), bad)
	if attr := strings.TrimSpace(c.QueryParam("attr")); attr != "" {
		k, v, ok := strings.Cut(attr, "=")
		if !ok {
			bad.add("attr", "must be name=value")
		}
		cq.Attrs[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	types, err := a.store.Types(ctx)
	if err != nil {
		return err
	}
	var cis []schema.CI
	err = bad.err()
	if err == nil {
		cis, l.Info, err = a.store.CIList(ctx, cq)
	}
	status, err := l.refuse(err)
	if err != nil {
		return err
	}
	l.timeSorted = l.Info.Sort == "updated"
	p := a.newPage(c, "CMDB", "cmdb")
	return a.render(c, status, "cmdb", struct {
		*page
		L       *listView
		Types   []schema.CIType
		CIs     []schema.CI
		CanEdit bool
	}{p, l, types, cis, canOperate(p.User)})
}

type approvalTab struct{ Key, Label string }

var approvalTabs = []approvalTab{{"to_decide", "Waiting for me"}, {"requested", "My requests"}, {"all", "All"}}

// approvalsPage is the inbox: waiting for me, my requests, all; each
// filtered, sorted and paged.
func (a *API) approvalsPage(c echo.Context) error {
	ctx := c.Request().Context()
	tab := c.QueryParam("tab")
	if tab == "" {
		tab = "to_decide"
	}
	mine := tab
	switch tab {
	case "to_decide", "requested":
	case "all":
		mine = ""
	default:
		return newError(http.StatusNotFound, CodeNotFound, "no such tab")
	}
	l := newListView(c, "/approvals", "tab", "status", "requester", "since", "until", "tz", "q")
	bad := fieldErrors{}
	tq, err := a.ticketQuery(ctx, c.QueryParams(), userOf(c).Username, mine, bad)
	if err != nil {
		return err
	}
	var ts []schema.Ticket
	err = bad.err()
	if err == nil {
		ts, l.Info, err = a.store.TicketList(ctx, tq)
	}
	status, err := l.refuse(err)
	if err != nil {
		return err
	}
	l.timeSorted = l.Info.Sort == "id" || l.Info.Sort == "created"
	return a.render(c, status, "approvals", struct {
		*page
		L        *listView
		Tab      string
		Tabs     []approvalTab
		Tickets  []schema.Ticket
		Statuses []statusOption
	}{a.newPage(c, "Approvals", "approvals"), l, tab, approvalTabs, ts, statusOptions(ticketStatuses)})
}

// auditPage is the audit log, for those who may read it.
func (a *API) auditPage(c echo.Context) error {
	l := newListView(c, "/audit", "actor", "action", "target", "since", "until", "tz", "q")
	bad := fieldErrors{}
	f := auditFilter(c.QueryParams(), bad)
	var es []schema.AuditEntry
	err := bad.err()
	if err == nil {
		es, l.Info, err = a.store.AuditList(c.Request().Context(), f)
	}
	status, err := l.refuse(err)
	if err != nil {
		return err
	}
	l.timeSorted = l.Info.Sort == "id" || l.Info.Sort == "at"
	return a.render(c, status, "audit", struct {
		*page
		L       *listView
		Entries []schema.AuditEntry
	}{a.newPage(c, "Audit log", "audit"), l, es})
}
