package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/opsflow/opsflow/activities"
	"github.com/opsflow/opsflow/schema"
	"github.com/opsflow/opsflow/workflows"
	"go.temporal.io/sdk/client"
)

// createJob checks the request, records the job and its hosts, and starts
// its BatchJob run. Bad input starts nothing and writes nothing.
func (a *API) createJob(c echo.Context) error {
	var req schema.JobRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	return a.startJob(c, req, nil)
}

func (a *API) startJob(c echo.Context, req schema.JobRequest, parent *int64) error {
	job, created, err := a.launchJob(c, req, parent)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return c.JSON(status, job)
}

// launchJob creates and starts a job (activities.CreateJob); with an
// Idempotency-Key a repeat returns the first job (created false).
func (a *API) launchJob(c echo.Context, req schema.JobRequest, parent *int64) (*schema.Job, bool, error) {
	ctx := c.Request().Context()
	setAudit(c, "job.create", "script:"+strconv.FormatInt(req.ScriptID, 10))
	key, err := idempotencyKey(c)
	if err != nil {
		return nil, false, err
	}
	if a.secrets == nil {
		return nil, false, newError(http.StatusServiceUnavailable, CodeUnavailable, "no secret key configured")
	}
	wid := workflows.RunWorkflowID(workflows.KindJob, userOf(c).ID, key, uuid.NewString())
	job, created, err := activities.CreateJob(ctx, a.store, a.secrets, activities.JobOrder{Request: req, WorkflowID: wid, By: userOf(c), ParentID: parent},
		func(ctx context.Context, job *schema.Job, target string) error {
			setAudit(c, "job.create", "job:"+strconv.FormatInt(job.ID, 10))
			_, _, err := a.startWorkflow(c, workflows.KindJob, wid, target, workflows.BatchJob,
				workflows.BatchJobInput{JobID: job.ID, Total: job.Total, Policy: job.Policy})
			return err
		})
	return job, created, jobError(err)
}

// jobError maps the refusals of activities.CreateJob to 403.
func jobError(err error) error {
	if errors.Is(err, activities.ErrLocalTransportAdminOnly) {
		return &Error{Status: http.StatusForbidden, Code: CodeForbidden, Message: err.Error(),
			Fields: map[string]string{"targets.transport": "local is admin-only"}}
	}
	if errors.Is(err, activities.ErrMayNotCreateJobs) {
		return newError(http.StatusForbidden, CodeForbidden, err.Error())
	}
	return err
}

type jobView struct {
	*schema.Job
	Counts   map[string]int           `json:"counts"`
	Progress *workflows.BatchProgress `json:"progress,omitempty"`
	Run      string                   `json:"temporal_url,omitempty"`
}

func (a *API) jobParam(c echo.Context) (*schema.Job, error) {
	id, err := idParam(c, "id")
	if err != nil {
		return nil, err
	}
	return a.store.Job(c.Request().Context(), id)
}

func (a *API) getJob(c echo.Context) error {
	j, err := a.jobParam(c)
	if err != nil {
		return err
	}
	counts, err := a.store.JobCounts(c.Request().Context(), j.ID)
	if err != nil {
		return err
	}
	v := jobView{Job: j, Counts: counts, Run: a.temporalURL(j.WorkflowID, "")}
	if j.EndedAt == nil {
		if res, err := a.temporal.QueryWorkflow(c.Request().Context(), j.WorkflowID, "", workflows.QueryProgress); err == nil {
			var p workflows.BatchProgress
			if res.Get(&p) == nil {
				v.Progress = &p
			}
		}
	}
	return c.JSON(http.StatusOK, v)
}

// jobHosts pages a job's hosts by cursor; ?format=csv exports every host
// (in the state asked for) instead, as the job page's download does.
func (a *API) jobHosts(c echo.Context) error {
	switch c.QueryParam("format") {
	case "", "json":
	case "csv":
		return a.jobHostsCSV(c)
	default:
		return &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: "invalid format",
			Fields: map[string]string{"format": "must be json or csv"}}
	}
	j, err := a.jobParam(c)
	if err != nil {
		return err
	}
	bad := fieldErrors{}
	limit := intParam(c.QueryParam("limit"), "limit", 1, 2000, bad)
	if limit == 0 {
		limit = 500
	}
	after := -1
	if v := c.QueryParam("cursor"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			bad.add("cursor", "not a cursor returned by this API")
		}
		after = n
	}
	if err := bad.err(); err != nil {
		return err
	}
	state, err := hostStateParam(c)
	if err != nil {
		return err
	}
	hs, err := a.store.JobHosts(c.Request().Context(), j.ID, state, after, limit)
	if err != nil {
		return err
	}
	next := ""
	if len(hs) == limit {
		next = strconv.Itoa(hs[len(hs)-1].Idx)
	}
	return c.JSON(http.StatusOK, map[string]any{"items": hs, "next_cursor": next})
}

func (a *API) jobHost(c echo.Context) error {
	j, err := a.jobParam(c)
	if err != nil {
		return err
	}
	idx, err := strconv.Atoi(c.Param("idx"))
	if err != nil || idx < 0 {
		return &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: "invalid host index", Fields: map[string]string{"idx": "must be a host index"}}
	}
	h, err := a.store.JobHost(c.Request().Context(), j.ID, idx)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, h)
}

// controlJob sends pause, resume or abort to the job's workflow as an
// update: the caller learns at once whether it applied.
func (a *API) controlJob(update string) echo.HandlerFunc {
	return func(c echo.Context) error {
		j, err := a.jobParam(c)
		if err != nil {
			return err
		}
		setAudit(c, "job."+update, "job:"+strconv.FormatInt(j.ID, 10))
		return a.updateJob(c, j, update, nil)
	}
}

func (a *API) updateJob(c echo.Context, j *schema.Job, update string, arg any) error {
	p, err := a.sendJobUpdate(c.Request().Context(), j, update, arg)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, p)
}

// sendJobUpdate sends a control update to the job's workflow and waits for
// its answer; a refused update (its validator said no) is a 409.
func (a *API) sendJobUpdate(ctx context.Context, j *schema.Job, update string, arg any) (workflows.BatchProgress, error) {
	var p workflows.BatchProgress
	if j.EndedAt != nil {
		return p, newError(http.StatusConflict, CodeConflict, "the job has ended ("+j.Status+")")
	}
	opts := client.UpdateWorkflowOptions{WorkflowID: j.WorkflowID, UpdateName: update, WaitForStage: client.WorkflowUpdateStageCompleted}
	if arg != nil {
		opts.Args = []any{arg}
	}
	h, err := a.temporal.UpdateWorkflow(ctx, opts)
	if err != nil {
		return p, a.updateError(err)
	}
	if err := h.Get(ctx, &p); err != nil {
		return p, a.updateError(err)
	}
	return p, nil
}

func (a *API) updateError(err error) error {
	msg := err.Error()
	if strings.Contains(msg, "already paused") || strings.Contains(msg, "not paused") || strings.Contains(msg, "has finished") || strings.Contains(msg, "concurrency must") {
		return newError(http.StatusConflict, CodeConflict, rootMessage(msg))
	}
	return err
}

func rootMessage(msg string) string {
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		return msg[i+2:]
	}
	return msg
}

func (a *API) patchJob(c echo.Context) error {
	j, err := a.jobParam(c)
	if err != nil {
		return err
	}
	var req struct {
		Concurrency int `json:"concurrency"`
	}
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	setAudit(c, "job.set_concurrency", "job:"+strconv.FormatInt(j.ID, 10))
	if req.Concurrency < 1 || req.Concurrency > 2000 {
		return &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: "invalid concurrency", Fields: map[string]string{"concurrency": "must be from 1 to 2000"}}
	}
	return a.updateJob(c, j, workflows.UpdateSetConcurrency, workflows.SetConcurrencyRequest{Concurrency: req.Concurrency})
}

// retryFailed starts a new job over only the failed hosts, linked to the
// first.
func (a *API) retryFailed(c echo.Context) error {
	j, err := a.jobParam(c)
	if err != nil {
		return err
	}
	req, err := a.retryRequest(c, j)
	if err != nil {
		return err
	}
	return a.startJob(c, req, &j.ID)
}

// retryRequest is the definition of job j over its failed hosts only.
func (a *API) retryRequest(c echo.Context, j *schema.Job) (schema.JobRequest, error) {
	if j.EndedAt == nil {
		return schema.JobRequest{}, newError(http.StatusConflict, CodeConflict, "the job is still running")
	}
	failed, err := a.store.JobHosts(c.Request().Context(), j.ID, schema.HostFailed, -1, schema.MaxJobHosts)
	if err != nil {
		return schema.JobRequest{}, err
	}
	if len(failed) == 0 {
		return schema.JobRequest{}, newError(http.StatusConflict, CodeConflict, "no host failed")
	}
	raw, err := a.secrets.Open(j.Params, j.ParamsContext())
	if err != nil {
		return schema.JobRequest{}, err
	}
	var params map[string]string
	_ = json.Unmarshal(raw, &params)
	req := schema.JobRequest{ScriptID: j.ScriptID, Version: j.ScriptVersion, CredentialID: j.CredentialID, Policy: j.Policy, Params: map[string]json.RawMessage{}}
	ver, err := a.store.ScriptVersion(c.Request().Context(), j.ScriptID, j.ScriptVersion)
	if err != nil {
		return schema.JobRequest{}, err
	}
	for _, p := range ver.Parameters {
		if v, ok := params[p.Name]; ok {
			req.Params[p.Name] = typedParam(p, v)
		}
	}
	addrs := make([]string, len(failed))
	for i, h := range failed {
		addrs[i] = h.Address
	}
	sort.Strings(addrs)
	req.Targets = schema.JobTargets{Hosts: addrs}
	return req, nil
}

// typedParam turns a stored (string) parameter back into its JSON form.
func typedParam(p schema.ParamDef, v string) json.RawMessage {
	if p.Type == schema.ParamInt || p.Type == schema.ParamBool {
		return json.RawMessage(v)
	}
	b, _ := json.Marshal(v)
	return b
}

// jobOutput serves the output of a job's hosts as it arrives: a JSON page
// from a cursor, or with Accept: text/event-stream a live stream of
// "output" events ({idx, data}); ?host= narrows it to one host.
func (a *API) jobOutput(c echo.Context) error {
	j, err := a.jobParam(c)
	if err != nil {
		return err
	}
	bad := fieldErrors{}
	idx := -1
	if v := c.QueryParam("host"); v != "" {
		if idx, err = strconv.Atoi(v); err != nil || idx < 0 || idx >= j.Total {
			bad.add("host", "must be a host index of this job")
		}
	}
	var after int64
	cur := c.QueryParam("after")
	if id := c.Request().Header.Get("Last-Event-ID"); id != "" {
		cur = id
	}
	if cur != "" {
		if after, err = strconv.ParseInt(cur, 10, 64); err != nil || after < 0 {
			bad.add("after", "must be a cursor returned by this API")
		}
	}
	if err := bad.err(); err != nil {
		return err
	}
	ctx := c.Request().Context()
	if !wantsSSE(c) {
		os, err := a.store.JobOutputs(ctx, j.ID, idx, after, 500)
		if err != nil {
			return err
		}
		next := after
		if len(os) > 0 {
			next = os[len(os)-1].ID
		}
		return c.JSON(http.StatusOK, map[string]any{"items": os, "next_cursor": strconv.FormatInt(next, 10)})
	}
	return a.streamSSE(c, after, func(after int64) ([]sseEvent, error) {
		os, err := a.store.JobOutputs(ctx, j.ID, idx, after, 500)
		out := make([]sseEvent, len(os))
		for i, o := range os {
			out[i] = sseEvent{ID: o.ID, Name: "output", Data: map[string]any{"idx": o.Idx, "data": o.Data}}
		}
		return out, err
	})
}
