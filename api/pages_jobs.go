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
	"github.com/opsflow/opsflow/activities"
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

func (a *API) jobsPage(c echo.Context) error {
	js, err := a.store.Jobs(c.Request().Context(), 100)
	if err != nil {
		return err
	}
	p := a.newPage(c, "Jobs", "jobs")
	return a.render(c, http.StatusOK, "jobs", struct {
		*page
		Jobs    []schema.Job
		CanEdit bool
	}{p, js, canOperate(p.User)})
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
	}{a.newPage(c, "Host output", "jobs"), h, showBytes(h.Output), activities.OutputCap})
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
