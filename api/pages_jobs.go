package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
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

func (a *API) scriptsPage(c echo.Context) error {
	ss, err := a.store.Scripts(c.Request().Context(), c.QueryParam("tag"))
	if err != nil {
		return err
	}
	p := a.newPage(c, "Scripts", "jobs")
	return a.render(c, http.StatusOK, "scripts", struct {
		*page
		Scripts []schema.Script
		CanEdit bool
	}{p, ss, canOperate(p.User)})
}

type scriptEditPage struct {
	*page
	Script                                        *schema.Script
	Name, Interpreter, Content, Parameters, Error string
	Interpreters                                  []string
}

func (a *API) scriptNewPage(c echo.Context) error {
	return a.render(c, http.StatusOK, "script_edit", scriptEditPage{page: a.newPage(c, "New script", "jobs"), Interpreter: "bash", Parameters: "[]", Interpreters: schema.Interpreters})
}

func (a *API) scriptEditPage(c echo.Context) error {
	id, err := idParam(c, "id")
	if err != nil {
		return err
	}
	sc, err := a.store.Script(c.Request().Context(), id)
	if err != nil {
		return err
	}
	v, err := a.store.ScriptVersion(c.Request().Context(), id, sc.LatestVersion)
	if err != nil {
		return err
	}
	params, _ := json.MarshalIndent(v.Parameters, "", "  ")
	return a.render(c, http.StatusOK, "script_edit", scriptEditPage{page: a.newPage(c, "New version", "jobs"), Script: sc,
		Interpreter: v.Interpreter, Content: v.Content, Parameters: string(params), Interpreters: schema.Interpreters})
}

func scriptInputFromForm(c echo.Context) (schema.ScriptInput, error) {
	in := schema.ScriptInput{Name: strings.TrimSpace(c.FormValue("name")), Description: c.FormValue("description"),
		Content: strings.ReplaceAll(c.FormValue("content"), "\r\n", "\n"), Interpreter: c.FormValue("interpreter"), Comment: c.FormValue("comment")}
	for _, t := range strings.Split(c.FormValue("tags"), ",") {
		if t = strings.TrimSpace(t); t != "" {
			in.Tags = append(in.Tags, t)
		}
	}
	if ps := strings.TrimSpace(c.FormValue("parameters")); ps != "" {
		if err := decodeBody([]byte(ps), &in.Parameters); err != nil {
			return in, &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: "invalid parameters",
				Fields: map[string]string{"parameters": "must be a JSON list of parameter definitions"}}
		}
	}
	return in, nil
}

func (a *API) scriptCreateForm(c echo.Context) error {
	in, err := scriptInputFromForm(c)
	setAudit(c, "script.create", "script:"+in.Name)
	if err == nil {
		var sc *schema.Script
		sc, _, err = a.store.CreateScript(c.Request().Context(), in, userOf(c).Username)
		if err == nil {
			return c.Redirect(http.StatusSeeOther, "/scripts/"+strconv.FormatInt(sc.ID, 10))
		}
	}
	return a.render(c, toError(err).Status, "script_edit", scriptEditPage{page: a.newPage(c, "New script", "jobs"), Name: in.Name,
		Interpreter: in.Interpreter, Content: in.Content, Parameters: c.FormValue("parameters"), Interpreters: schema.Interpreters, Error: formError(err)})
}

func (a *API) scriptVersionForm(c echo.Context) error {
	id, err := idParam(c, "id")
	if err != nil {
		return err
	}
	sc, err := a.store.Script(c.Request().Context(), id)
	if err != nil {
		return err
	}
	in, err := scriptInputFromForm(c)
	setAudit(c, "script.version.create", "script:"+strconv.FormatInt(id, 10))
	if err == nil {
		if _, err = a.store.AddScriptVersion(c.Request().Context(), id, in, userOf(c).Username); err == nil {
			return c.Redirect(http.StatusSeeOther, "/scripts/"+strconv.FormatInt(id, 10))
		}
	}
	return a.render(c, toError(err).Status, "script_edit", scriptEditPage{page: a.newPage(c, "New version", "jobs"), Script: sc,
		Interpreter: in.Interpreter, Content: in.Content, Parameters: c.FormValue("parameters"), Interpreters: schema.Interpreters, Error: formError(err)})
}

type diffLine struct{ Kind, Prefix, Text string }

// lineDiff is a longest-common-subsequence diff of two texts by line.
func lineDiff(a, b string) []diffLine {
	x, y := strings.Split(a, "\n"), strings.Split(b, "\n")
	n, m := len(x), len(y)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out []diffLine
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && x[i] == y[j]:
			out = append(out, diffLine{"same", " ", x[i]})
			i, j = i+1, j+1
		case j < m && (i == n || lcs[i][j+1] >= lcs[i+1][j]):
			out = append(out, diffLine{"add", "+", y[j]})
			j++
		default:
			out = append(out, diffLine{"del", "-", x[i]})
			i++
		}
	}
	return out
}

func (a *API) scriptPage(c echo.Context) error {
	id, err := idParam(c, "id")
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	sc, err := a.store.Script(ctx, id)
	if err != nil {
		return err
	}
	vs, err := a.store.ScriptVersions(ctx, id)
	if err != nil {
		return err
	}
	pick := func(q string, def int64) *schema.ScriptVersion {
		n, err := strconv.ParseInt(q, 10, 64)
		if err != nil {
			n = def
		}
		for i := range vs {
			if vs[i].Version == n {
				return &vs[i]
			}
		}
		return nil
	}
	cur := pick(c.QueryParam("v"), sc.LatestVersion)
	if cur == nil {
		return newError(http.StatusNotFound, CodeNotFound, "no such version")
	}
	var d []diffLine
	from, to := pick(c.QueryParam("from"), 0), pick(c.QueryParam("to"), 0)
	if from != nil && to != nil {
		d = lineDiff(from.Content, to.Content)
	}
	var fromN, toN int64
	if from != nil {
		fromN = from.Version
	} else if sc.LatestVersion > 1 {
		fromN = sc.LatestVersion - 1
	}
	if to != nil {
		toN = to.Version
	} else {
		toN = sc.LatestVersion
	}
	p := a.newPage(c, sc.Name, "jobs")
	return a.render(c, http.StatusOK, "script", struct {
		*page
		Script   *schema.Script
		Version  *schema.ScriptVersion
		Versions []schema.ScriptVersion
		Diff     []diffLine
		From, To int64
		CanEdit  bool
	}{p, sc, cur, vs, d, fromN, toN, canOperate(p.User)})
}

type jobNewPage struct {
	*page
	Script      *schema.Script
	Version     *schema.ScriptVersion
	Credentials []schema.Credential
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
	creds, err := a.loginCredentials(ctx, true)
	if err != nil {
		return nil, err
	}
	return &jobNewPage{page: a.newPage(c, "Run "+sc.Name, "jobs"), Script: sc, Version: v, Credentials: creds}, nil
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

func (a *API) jobCreateForm(c echo.Context) error {
	sid, _ := strconv.ParseInt(c.FormValue("script_id"), 10, 64)
	ver, _ := strconv.ParseInt(c.FormValue("version"), 10, 64)
	pg, err := a.jobNewData(c, sid, ver)
	if err != nil {
		return err
	}
	req := schema.JobRequest{ScriptID: sid, Version: ver, Params: map[string]json.RawMessage{},
		Policy: schema.JobPolicy{Concurrency: c.FormValue("concurrency"), Batch: c.FormValue("batch"), PauseAfterFirstBatch: c.FormValue("pause_after_first_batch") == "true",
			MaxFailures: c.FormValue("max_failures"), HostTimeout: c.FormValue("host_timeout")}}
	req.CredentialID, _ = strconv.ParseInt(c.FormValue("credential_id"), 10, 64)
	req.Targets.Selector = strings.TrimSpace(c.FormValue("selector"))
	for _, l := range strings.Split(c.FormValue("hosts"), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			req.Targets.Hosts = append(req.Targets.Hosts, l)
		}
	}
	for _, p := range pg.Version.Parameters {
		v, given := c.Request().PostForm["param."+p.Name]
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
	job, _, err := a.launchJob(c, req, nil)
	if err != nil {
		var ve *schema.ValidationError
		if errors.As(err, &ve) || toError(err).Status < 500 {
			pg.page.Error = formError(err)
			return a.render(c, toError(err).Status, "job_new", pg)
		}
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/jobs/"+strconv.FormatInt(job.ID, 10))
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
	hosts, err := a.store.JobHosts(ctx, j.ID, "", -1, schema.MaxJobHosts)
	if err != nil {
		return err
	}
	p := a.newPage(c, "Job "+strconv.FormatInt(j.ID, 10), "jobs")
	ops := []string{"pause", "resume", "abort"}
	var ticket *schema.Ticket
	if j.Policy.Approval != "" {
		ticket, _ = a.store.TicketByWorkflowID(ctx, workflows.JobTicketWorkflowID(j.WorkflowID))
	}
	return a.render(c, http.StatusOK, "job", struct {
		*page
		Job         *schema.Job
		Counts      map[string]int
		Done        int
		Hosts       []schema.JobHost
		CanEdit     bool
		Ops         []string
		TemporalURL string
		Ticket      *schema.Ticket
	}{p, j, counts, counts[schema.HostSucceeded] + counts[schema.HostFailed] + counts[schema.HostSkipped], hosts, canOperate(p.User), ops, a.temporalURL(j.WorkflowID, ""), ticket})
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
	return c.Redirect(http.StatusSeeOther, "/jobs/"+strconv.FormatInt(j.ID, 10)+"?flash="+url.QueryEscape(msg))
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
	nj, _, err := a.launchJob(c, req, &j.ID)
	if err != nil {
		return a.redirectFlash(c, j, formError(err))
	}
	return c.Redirect(http.StatusSeeOther, "/jobs/"+strconv.FormatInt(nj.ID, 10))
}
