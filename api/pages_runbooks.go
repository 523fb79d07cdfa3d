package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/opsflow/opsflow/internal/runbook"
	"github.com/opsflow/opsflow/schema"
	"github.com/opsflow/opsflow/workflows"
)

// The runbook pages: the list, the editor (validating as its user types
// through /api/v1/runbooks/validate, and on save showing the same errors
// at their lines), a runbook's page (source, versions and their diff, the
// steps drawn as nested boxes, a run form generated from the inputs), and
// the page of a runbook run (the same boxes with each step's live state,
// and the run's controls).

func (a *API) runbookPageRoutes() []route {
	return []route{
		{Method: http.MethodGet, Path: "/runbooks", Roles: anyUser, handler: a.runbooksPage},
		{Method: http.MethodGet, Path: "/runbooks/new", Roles: operators, handler: a.runbookNewPage},
		{Method: http.MethodPost, Path: "/runbooks", Roles: operators, handler: a.runbookCreateForm},
		{Method: http.MethodGet, Path: "/runbooks/:name", Roles: anyUser, handler: a.runbookPage},
		{Method: http.MethodGet, Path: "/runbooks/:name/edit", Roles: operators, handler: a.runbookEditPage},
		{Method: http.MethodPost, Path: "/runbooks/:name/versions", Roles: operators, handler: a.runbookVersionForm},
		{Method: http.MethodPost, Path: "/runbooks/:name/runs", Roles: operators, handler: a.runbookRunForm},
		{Method: http.MethodPost, Path: "/runs/:id/pause", Roles: operators, handler: a.runbookControlForm(workflows.UpdatePause)},
		{Method: http.MethodPost, Path: "/runs/:id/resume", Roles: operators, handler: a.runbookControlForm(workflows.UpdateResume)},
		{Method: http.MethodPost, Path: "/runs/:id/retry", Roles: operators, handler: a.runbookControlForm(workflows.UpdateRetryStep)},
	}
}

func (a *API) runbooksPage(c echo.Context) error {
	l := newListView(c, "/runbooks", "q")
	bad := fieldErrors{}
	q := c.QueryParams()
	f := schema.RunbookFilter{Q: textParam(q, "q", bad), Page: pageParams(q, bad)}
	var rs []schema.Runbook
	err := bad.err()
	if err == nil {
		rs, l.Info, err = a.store.RunbookList(c.Request().Context(), f)
	}
	status, err := l.refuse(err)
	if err != nil {
		return err
	}
	p := a.newPage(c, "Runbooks", "runbooks")
	return a.render(c, status, "runbooks", struct {
		*page
		L        *listView
		Runbooks []schema.Runbook
		CanEdit  bool
	}{p, l, rs, canOperate(p.User)})
}

// runbookEditPage is the editor's data: the source as typed, and the
// errors of the last save with the lines they are on.
type runbookEditPage struct {
	*page
	Runbook *schema.Runbook // nil: a new runbook
	Source  string
	Comment string
	Errors  runbook.Errors
	Lines   []editorLine
}

// editorLine is a line number of the editor's gutter, marked when an
// error is on it.
type editorLine struct {
	N   int
	Bad bool
}

func (pg *runbookEditPage) gutter() {
	bad := map[int]bool{}
	for _, e := range pg.Errors {
		bad[e.Line] = true
	}
	n := strings.Count(pg.Source, "\n") + 1
	pg.Lines = make([]editorLine, n)
	for i := range pg.Lines {
		pg.Lines[i] = editorLine{N: i + 1, Bad: bad[i+1]}
	}
}

// newRunbookTemplate is what the editor starts a new runbook with.
const newRunbookTemplate = `apiVersion: opsflow/v1
kind: Runbook
metadata:
  name: my-runbook
  description: what it does
inputs:
  - {name: env, type: enum, values: [staging, prod], default: staging}
steps:
  - id: announce
    kind: notify
    with: {channel: web, message: "starting on ${{ inputs.env }}"}
`

func (a *API) runbookNewPage(c echo.Context) error {
	pg := runbookEditPage{page: a.newPage(c, "New runbook", "runbooks"), Source: newRunbookTemplate}
	pg.gutter()
	return a.render(c, http.StatusOK, "runbook_edit", pg)
}

// runbookParam is the live runbook the path's :name names.
func (a *API) runbookParam(c echo.Context) (*schema.Runbook, error) {
	return a.store.Runbook(c.Request().Context(), c.Param("name"))
}

func (a *API) runbookEditPage(c echo.Context) error {
	rb, err := a.runbookParam(c)
	if err != nil {
		return err
	}
	v, err := a.store.RunbookVersion(c.Request().Context(), rb.ID, rb.LatestVersion)
	if err != nil {
		return err
	}
	pg := runbookEditPage{page: a.newPage(c, "New version of "+rb.Name, "runbooks"), Runbook: rb, Source: v.Source}
	pg.gutter()
	return a.render(c, http.StatusOK, "runbook_edit", pg)
}

func (a *API) runbookCreateForm(c echo.Context) error { return a.runbookSubmit(c, nil) }

func (a *API) runbookVersionForm(c echo.Context) error {
	rb, err := a.runbookParam(c)
	if err != nil {
		return err
	}
	return a.runbookSubmit(c, rb)
}

// runbookSubmit saves the editor's text as a new runbook (rb nil) or its
// next version, through the API's own handlers' checks; a refusal shows
// the editor again with the text as typed and every error at its line.
func (a *API) runbookSubmit(c echo.Context, rb *schema.Runbook) error {
	src := strings.ReplaceAll(c.FormValue("source"), "\r\n", "\n")
	comment := c.FormValue("comment")
	title := "New runbook"
	if rb != nil {
		title = "New version of " + rb.Name
		setAudit(c, "runbook.version.create", "runbook:"+rb.Name)
	} else {
		setAudit(c, "runbook.create", "runbook")
	}
	name, err := a.saveRunbook(c, rb, []byte(src), comment)
	if err == nil {
		return c.Redirect(http.StatusSeeOther, "/runbooks/"+url.PathEscape(name)+"?flash="+url.QueryEscape("Saved."))
	}
	pg := runbookEditPage{page: a.newPage(c, title, "runbooks"), Runbook: rb, Source: src, Comment: comment}
	e := toError(err)
	if d, ok := e.Details.(map[string]any); ok {
		pg.Errors, _ = d["errors"].(runbook.Errors)
	}
	if len(pg.Errors) == 0 {
		pg.page.Error = formError(err)
	} else {
		pg.page.Error = e.Message
	}
	pg.gutter()
	return a.render(c, e.Status, "runbook_edit", pg)
}

func (a *API) saveRunbook(c echo.Context, rb *schema.Runbook, src []byte, comment string) (string, error) {
	if len(src) == 0 {
		return "", documentError(runbook.Errors{{Line: 1, Column: 1, Path: "source", Reason: "required"}})
	}
	if len(comment) > maxComment {
		return "", &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: "invalid comment",
			Fields: map[string]string{"comment": fmt.Sprintf("at most %d bytes", maxComment)}}
	}
	parsed, err := a.runbooks.Parse(src)
	var errs runbook.Errors
	if errors.As(err, &errs) {
		return "", documentError(errs)
	} else if err != nil {
		return "", err
	}
	name := parsed.Metadata.Name
	if schema.RunbookNameReserved(name) {
		return "", placeStoreError(&schema.ValidationError{Message: "invalid runbook",
			Fields: map[string]string{"metadata.name": strconv.Quote(name) + " is reserved"}}, src)
	}
	ctx := c.Request().Context()
	if rb == nil {
		setAudit(c, "runbook.create", "runbook:"+name)
		_, v, err := a.store.CreateRunbook(ctx, runbookInput(src, comment, parsed), userOf(c).Username)
		if err != nil {
			return "", placeStoreError(err, src)
		}
		c.Set(auditDetailKey, versionDetail(v))
		return name, nil
	}
	if name != rb.Name {
		e := runbook.Error{Line: 1, Column: 1, Path: "metadata.name", Reason: fmt.Sprintf("must be %s, the name of the runbook this version is added to", strconv.Quote(rb.Name))}
		if _, at, ok := runbook.MetadataName(src); ok {
			e.Line, e.Column = at.Line, at.Column
		}
		return "", documentError(runbook.Errors{e})
	}
	v, created, err := a.store.AddRunbookVersion(ctx, rb.Name, runbookInput(src, comment, parsed), userOf(c).Username)
	if err != nil {
		return "", placeStoreError(err, src)
	}
	detail := versionDetail(v)
	if !created {
		detail = "unchanged: " + detail
	}
	c.Set(auditDetailKey, detail)
	return name, nil
}

// runFormInput is one input of the run form: its definition, the control
// that edits it, the value to show (never a secret's) and its error.
type runFormInput struct {
	runbook.Input
	Control string // text, number, checkbox, select, password, selector, list
	Value   string
	Checked bool
	Error   string
}

type runbookPageData struct {
	*page
	Runbook  *schema.Runbook
	Version  *schema.RunbookVersion
	Versions []schema.RunbookVersion
	Graph    []*graphStep
	Inputs   []runFormInput
	Errors   map[string]string // the run form's, besides those of its inputs
	Diff     []diffLine
	From, To int64
	CanRun   bool
	ParseErr string
	// Schedule: the form was sent to make a schedule; its fields are kept
	// on error.
	Schedule                   bool
	ScheduleName, ScheduleCron string
	ScheduleLatest             bool
}

func (a *API) runbookPage(c echo.Context) error {
	pg, err := a.runbookPageData(c)
	if err != nil {
		return err
	}
	return a.render(c, http.StatusOK, "runbook", pg)
}

func (a *API) runbookPageData(c echo.Context) (*runbookPageData, error) {
	rb, err := a.runbookParam(c)
	if err != nil {
		return nil, err
	}
	ctx := c.Request().Context()
	vs, err := a.store.RunbookVersions(ctx, rb.ID)
	if err != nil {
		return nil, err
	}
	n := rb.LatestVersion
	if s := cmpOrEmpty(c.QueryParam("v"), c.FormValue("version")); s != "" {
		if n, err = strconv.ParseInt(s, 10, 64); err != nil {
			return nil, newError(http.StatusNotFound, CodeNotFound, "no such version")
		}
	}
	v, err := a.store.RunbookVersion(ctx, rb.ID, n)
	if err != nil {
		return nil, err
	}
	p := a.newPage(c, rb.Name, "runbooks")
	pg := &runbookPageData{page: p, Runbook: rb, Version: v, Versions: vs, Errors: map[string]string{}, CanRun: canOperate(p.User)}
	if parsed, err := a.runbooks.Parse([]byte(v.Source)); err != nil {
		pg.ParseErr = err.Error() // a version stored before a kind was withdrawn
	} else {
		pg.Graph = graphOf(parsed.Steps, "", nil)
		for _, in := range parsed.Inputs {
			pg.Inputs = append(pg.Inputs, formInput(in))
		}
	}
	// The diff: ?from=&to=, by default the latest against the one before.
	pg.To, pg.From = rb.LatestVersion, max(rb.LatestVersion-1, 1)
	from, fok := strconv.ParseInt(c.QueryParam("from"), 10, 64)
	to, tok := strconv.ParseInt(c.QueryParam("to"), 10, 64)
	if fok == nil && tok == nil {
		pg.From, pg.To = from, to
		fv, err1 := a.store.RunbookVersion(ctx, rb.ID, from)
		tv, err2 := a.store.RunbookVersion(ctx, rb.ID, to)
		if err1 == nil && err2 == nil {
			pg.Diff = lineDiff(fv.Source, tv.Source)
		}
	}
	return pg, nil
}

func cmpOrEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// formInput picks an input's control by its type.
func formInput(in runbook.Input) runFormInput {
	f := runFormInput{Input: in, Control: "text"}
	switch in.Type {
	case runbook.InputInt:
		f.Control = "number"
	case runbook.InputBool:
		f.Control = "checkbox"
		f.Checked = in.Default == true
		return f
	case runbook.InputEnum:
		f.Control = "select"
	case runbook.InputSecret:
		f.Control = "password"
		return f
	case runbook.InputSelector:
		f.Control = "selector"
	case runbook.InputList:
		f.Control = "list"
		if l, ok := in.Default.([]any); ok {
			parts := make([]string, len(l))
			for i, x := range l {
				parts[i] = fmt.Sprint(x)
			}
			f.Value = strings.Join(parts, "\n")
		}
		return f
	}
	if in.Default != nil {
		f.Value = fmt.Sprint(in.Default)
	}
	return f
}

// runInputsFromForm reads the run form: each input from its control,
// typed as the runbook declares it. An empty field is left out (its
// default applies); a value of the wrong type is passed on for the check
// to name.
func runInputsFromForm(c echo.Context, fields []runFormInput) map[string]any {
	form, _ := c.FormParams()
	out := map[string]any{}
	for i := range fields {
		f := &fields[i]
		vs, given := form["input."+f.Name]
		v := ""
		if given {
			v = vs[0]
		}
		switch f.Type {
		case runbook.InputBool:
			f.Checked = given && v == "true"
			out[f.Name] = f.Checked
			continue
		case runbook.InputSecret:
			if v != "" {
				out[f.Name] = v
			}
			continue
		}
		f.Value = v
		if strings.TrimSpace(v) == "" {
			continue
		}
		switch f.Type {
		case runbook.InputInt:
			if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
				out[f.Name] = n
			} else {
				out[f.Name] = v
			}
		case runbook.InputList:
			var items []any
			for _, l := range strings.Split(v, "\n") {
				if l = strings.TrimSpace(l); l != "" {
					items = append(items, l)
				}
			}
			out[f.Name] = items
		default:
			out[f.Name] = v
		}
	}
	return out
}

// runbookRunForm starts a run from the run form and shows its page; bad
// inputs show the runbook's page again with each error at its input.
// runbookRunForm starts a run from the runbook page's form, or with
// "Create schedule" makes a schedule of the same inputs (the version shown,
// or the latest at each firing).
func (a *API) runbookRunForm(c echo.Context) error {
	setAudit(c, "runbook.run", "runbook:"+c.Param("name"))
	pg, err := a.runbookPageData(c)
	if err != nil {
		return err
	}
	inputs := runInputsFromForm(c, pg.Inputs)
	if c.FormValue("as_schedule") != "" {
		name := strings.TrimSpace(c.FormValue("schedule_name"))
		ver := pg.Version.Version
		if c.FormValue("schedule_version") == "latest" {
			ver = 0
		}
		err = a.makeSchedule(c, scheduleRequest{Name: name, Cron: strings.TrimSpace(c.FormValue("schedule_cron")),
			Runbook: &scheduleRunbook{Name: pg.Runbook.Name, Version: ver, Inputs: inputs}})
		if err == nil {
			return c.Redirect(http.StatusSeeOther, "/schedules?flash="+url.QueryEscape("Schedule "+name+" created."))
		}
		pg.Schedule, pg.ScheduleName, pg.ScheduleCron, pg.ScheduleLatest = true, name, c.FormValue("schedule_cron"), ver == 0
	} else {
		var v runView
		v, _, err = a.launchRunbook(c, pg.Runbook.Name, pg.Version.Version, inputs)
		if err == nil {
			return c.Redirect(http.StatusSeeOther, "/runs/"+url.PathEscape(v.WorkflowID))
		}
	}
	e := toError(err)
	if e.Status != http.StatusUnprocessableEntity {
		return err
	}
	for k, why := range e.Fields {
		k = strings.TrimPrefix(k, "runbook.")
		name, ok := strings.CutPrefix(k, "inputs.")
		placed := false
		for i := range pg.Inputs {
			if ok && pg.Inputs[i].Name == name {
				pg.Inputs[i].Error, placed = why, true
			}
		}
		if !placed {
			pg.Errors[k] = why
		}
	}
	pg.page.Error = "The run did not start: " + formError(err)
	if pg.Schedule {
		pg.page.Error = "The schedule was not created: " + formError(err)
	}
	return a.render(c, e.Status, "runbook", pg)
}

// graphStep is a step drawn as a box: its kind and what it acts on, the
// step lists it holds (side by side for a parallel's branches, inside a
// box for a foreach's body), its compensation, and on a run's page its
// state.
type graphStep struct {
	ID, Kind, Summary, When string
	// Key names the box: the step's path, with a foreach's item indexes
	// left out ("each[].check"): a foreach's body is drawn once.
	Key          string
	Parallel     bool
	Loop         bool
	Branches     []graphBranch
	Compensation []*graphStep
	// State is the step's last report on a run's page; a foreach body's
	// step has none: Counts sums its items.
	Live      bool
	State     *runStepView
	Counts    string
	Link      string
	LinkText  string
	Outputs   string
	InForeach bool
}

type graphBranch struct {
	Name  string
	Steps []*graphStep
}

// summaryArgs are the arguments that say what a step acts on, by kind.
var summaryArgs = map[string][]string{
	"script": {"script"}, "approval": {"policy", "title"}, "foreach": {"items", "selector"}, "runbook": {"name"},
	"http": {"method", "url"}, "notify": {"channel"}, "wait": {"duration", "until"}, "cmdb.query": {"type", "selector"},
	"cmdb.update": {"ci", "selector"}, "fail": {"message"},
}

func graphOf(steps []*runbook.Step, prefix string, byKey map[string]*runStepView) []*graphStep {
	out := make([]*graphStep, 0, len(steps))
	for _, s := range steps {
		g := &graphStep{ID: s.ID, Kind: s.Kind, When: s.When, Key: prefix + s.ID, InForeach: strings.Contains(prefix, "[]")}
		var parts []string
		for _, k := range summaryArgs[s.Kind] {
			if v, ok := s.With[k]; ok {
				if str, ok := v.(string); ok && str != "" {
					parts = append(parts, str)
				}
			}
		}
		g.Summary = strings.Join(parts, " ")
		if byKey != nil {
			g.Live = true
			if st := byKey[g.Key]; st != nil && !g.InForeach {
				g.State = st
				g.Link, g.LinkText = stepLink(st)
				if len(st.Outputs) > 0 {
					b, _ := json.MarshalIndent(st.Outputs, "", "  ")
					g.Outputs = string(b)
				}
			}
		}
		inner := prefix
		if s.Kind == "foreach" {
			g.Loop = true
			inner = g.Key + "[]."
		}
		g.Parallel = s.Kind == "parallel"
		names := branchNames(s)
		for i, list := range s.Nested() {
			b := graphBranch{Steps: graphOf(list, inner, byKey)}
			if i < len(names) {
				b.Name = names[i]
			}
			if b.Name == "" && g.Parallel {
				b.Name = "branch " + strconv.Itoa(i+1)
			}
			g.Branches = append(g.Branches, b)
		}
		if s.OnFailure != nil && len(s.OnFailure.Steps) > 0 {
			g.Compensation = graphOf(s.OnFailure.Steps, prefix, byKey)
		}
		out = append(out, g)
	}
	return out
}

// branchNames are a parallel step's branch names, in Nested's order.
func branchNames(s *runbook.Step) []string {
	bs, _ := s.With["branches"].([]any)
	names := make([]string, len(bs))
	for i, b := range bs {
		if m, ok := b.(map[string]any); ok {
			names[i], _ = m["name"].(string)
		}
	}
	return names
}

// stepLink is where a step's job, ticket or child run is shown.
func stepLink(s *runStepView) (string, string) {
	num := func(k string) (int64, bool) {
		switch v := s.Outputs[k].(type) {
		case float64:
			return int64(v), true
		case int64:
			return v, true
		case json.Number:
			n, err := v.Int64()
			return n, err == nil
		}
		return 0, false
	}
	switch s.Kind {
	case "script":
		if id, ok := num("job_id"); ok {
			return "/jobs/" + strconv.FormatInt(id, 10), "Job #" + strconv.FormatInt(id, 10)
		}
	case "approval":
		if id, ok := num("ticket_id"); ok {
			return "/approvals/" + strconv.FormatInt(id, 10), "Approval #" + strconv.FormatInt(id, 10)
		}
	}
	if s.Child != "" && workflows.KindOf(s.Child) == workflows.KindRunbook {
		return "/runs/" + url.PathEscape(s.Child), "Child run"
	}
	return "", ""
}

var itemIndexRE = regexp.MustCompile(`\[\d+\]`)

// foreachCounts sums a foreach body's steps over the items, by key.
func foreachCounts(steps []runStepView) map[string]string {
	counts := map[string]map[string]int{}
	for _, s := range steps {
		if !strings.Contains(s.Path, "[") {
			continue
		}
		k := itemIndexRE.ReplaceAllString(s.Path, "[]")
		if counts[k] == nil {
			counts[k] = map[string]int{}
		}
		counts[k][s.Status]++
	}
	out := map[string]string{}
	for k, m := range counts {
		var parts []string
		for st, n := range m {
			parts = append(parts, fmt.Sprintf("%d %s", n, stateWord(st)))
		}
		sort.Strings(parts)
		out[k] = strings.Join(parts, " · ")
	}
	return out
}

func setCounts(gs []*graphStep, counts map[string]string) {
	for _, g := range gs {
		if g.InForeach {
			g.Counts = counts[g.Key]
		}
		for _, b := range g.Branches {
			setCounts(b.Steps, counts)
		}
		setCounts(g.Compensation, counts)
	}
}

// runbookRunPage is a runbook run's page: the run's runbook drawn with
// each step's state, updated live by ui/static/runbook.js.
func (a *API) runbookRunPage(c echo.Context, v runView) error {
	ctx := c.Request().Context()
	p := a.newPage(c, "Run of "+v.Target, "runs")
	var graph []*graphStep
	var note string
	if v.Runbook != nil {
		id := v.Runbook.ID
		if id == 0 { // a sub-runbook's run: the live runbook of the name
			if rb, err := a.store.Runbook(ctx, v.Runbook.Name); err == nil {
				id = rb.ID
			}
		}
		ver, err := a.store.RunbookVersion(ctx, id, v.Runbook.Version)
		if err == nil {
			if parsed, perr := a.runbooks.Parse([]byte(ver.Source)); perr == nil {
				byKey := map[string]*runStepView{}
				for i := range v.Steps {
					byKey[v.Steps[i].Path] = &v.Steps[i]
				}
				graph = graphOf(parsed.Steps, "", byKey)
				setCounts(graph, foreachCounts(v.Steps))
			} else {
				note = "The runbook's version no longer parses: " + perr.Error()
			}
		} else {
			note = "The runbook's version is not stored here."
		}
	}
	canOp := canOperate(p.User)
	return a.render(c, http.StatusOK, "runbook_run", struct {
		*page
		Run        runView
		Graph      []*graphStep
		Note       string
		CanOperate bool
		Ended      bool
		Poll       template.URL
	}{p, v, graph, note, canOp, v.EndedAt != nil, template.URL("/api/v1/runs/" + url.PathEscape(v.WorkflowID))})
}

// runbookControlForm pauses, resumes or retries a runbook run from its
// page and shows the page again.
func (a *API) runbookControlForm(update string) echo.HandlerFunc {
	action := map[string]string{workflows.UpdatePause: "run.pause", workflows.UpdateResume: "run.resume", workflows.UpdateRetryStep: "run.retry"}[update]
	done := map[string]string{workflows.UpdatePause: "Paused: no next step starts until resumed.", workflows.UpdateResume: "Resumed.",
		workflows.UpdateRetryStep: "Retrying from the failed step."}[update]
	return func(c echo.Context) error {
		v, err := a.controlRunbook(c, action, update, workflows.RetryStepRequest{Step: c.FormValue("step")})
		if err != nil {
			return err
		}
		return c.Redirect(http.StatusSeeOther, "/runs/"+url.PathEscape(v.WorkflowID)+"?flash="+url.QueryEscape(done))
	}
}
