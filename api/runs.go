package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/opsflow/opsflow/schema"
	"github.com/opsflow/opsflow/workflows"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
)

// runView is a run as the API shows it.
type runView struct {
	schema.Run
	TemporalURL string     `json:"temporal_url,omitempty"`
	Live        *liveState `json:"live,omitempty"`

	// A runbook run's version, steps and state (addRunbook).
	Runbook    *runbookRef   `json:"runbook,omitempty"`
	Parent     string        `json:"parent_id,omitempty"`
	FailedStep string        `json:"failed_step,omitempty"`
	Paused     bool          `json:"paused,omitempty"`
	Steps      []runStepView `json:"steps,omitempty"`
}

// liveState is what Temporal says about a run right now.
type liveState struct {
	Status            string     `json:"status"`
	RunID             string     `json:"run_id"`
	WorkflowType      string     `json:"workflow_type"`
	TaskQueue         string     `json:"task_queue"`
	HistoryLength     int64      `json:"history_length"`
	PendingActivities int        `json:"pending_activities"`
	StartTime         time.Time  `json:"start_time"`
	CloseTime         *time.Time `json:"close_time,omitempty"`
	Progress          any        `json:"progress,omitempty"`
}

// runProgress asks a running workflow how far it is, for the types that
// answer; nil when it cannot tell.
func (a *API) runProgress(ctx context.Context, workflowID, workflowType string) any {
	var p any
	switch workflowType {
	case "Demo":
		p = new(workflows.DemoProgress)
	case "DiscoverHosts":
		p = new(workflows.DiscoveryProgress)
	default:
		return nil
	}
	res, err := a.temporal.QueryWorkflow(ctx, workflowID, "", workflows.QueryProgress)
	if err != nil || res.Get(p) != nil {
		return nil
	}
	return p
}

func (a *API) view(r schema.Run) runView {
	return runView{Run: r, TemporalURL: a.temporalURL(r.WorkflowID, r.RunID)}
}

// temporalURL links a run's page in the Temporal Web UI.
func (a *API) temporalURL(workflowID, runID string) string {
	if a.uiURL == "" {
		return ""
	}
	u := fmt.Sprintf("%s/namespaces/%s/workflows/%s", a.uiURL, url.PathEscape(a.namespace), url.PathEscape(workflowID))
	if runID != "" {
		u += "/" + url.PathEscape(runID) + "/history"
	}
	return u
}

func (a *API) getRun(c echo.Context) error {
	v, err := a.runDetail(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

// runDetail joins the read model with live state from Temporal, and
// repairs the read model when Temporal knows the run ended (a run
// terminated from the Temporal UI never reaches its own bookkeeping).
func (a *API) runDetail(ctx context.Context, id string) (runView, error) {
	r, err := a.store.Run(ctx, id)
	if err != nil {
		return runView{}, err
	}
	v := a.view(*r)
	if err := a.addRunbook(ctx, &v); err != nil {
		return runView{}, err
	}
	desc, err := a.temporal.DescribeWorkflowExecution(ctx, r.WorkflowID, "")
	if err != nil {
		a.log.Warn("describe workflow failed", "workflow_id", r.WorkflowID, "error", err)
		return v, nil
	}
	info := desc.GetWorkflowExecutionInfo()
	live := &liveState{
		Status:            runStatus(info.GetStatus()),
		RunID:             info.GetExecution().GetRunId(),
		WorkflowType:      info.GetType().GetName(),
		TaskQueue:         info.GetTaskQueue(),
		HistoryLength:     info.GetHistoryLength(),
		PendingActivities: len(desc.GetPendingActivities()),
		StartTime:         info.GetStartTime().AsTime(),
	}
	if ct := info.GetCloseTime(); ct != nil {
		t := ct.AsTime()
		live.CloseTime = &t
	}
	if live.Status == schema.RunRunning {
		live.Progress = a.runProgress(ctx, r.WorkflowID, info.GetType().GetName())
	}
	v.Live = live
	if v.RunID == "" {
		v.RunID = live.RunID
		v.TemporalURL = a.temporalURL(v.WorkflowID, v.RunID)
	}
	if r.EndedAt == nil && live.Status != schema.RunRunning && live.CloseTime != nil {
		if err := a.store.RecordRunStatus(ctx, r.WorkflowID, live.RunID, r.Kind, live.Status, "", *live.CloseTime); err == nil {
			v.Status, v.EndedAt = live.Status, live.CloseTime
		}
	}
	a.runbookState(ctx, &v)
	return v, nil
}

func runStatus(s enumspb.WorkflowExecutionStatus) string {
	switch s {
	case enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED:
		return schema.RunCompleted
	case enumspb.WORKFLOW_EXECUTION_STATUS_FAILED:
		return schema.RunFailed
	case enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED:
		return schema.RunCanceled
	case enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED:
		return schema.RunTerminated
	case enumspb.WORKFLOW_EXECUTION_STATUS_TIMED_OUT:
		return schema.RunTimedOut
	}
	return schema.RunRunning // running and continued-as-new
}

func (a *API) cancelRun(c echo.Context) error {
	r, err := a.requestCancel(c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, a.view(*r))
}

func (a *API) requestCancel(c echo.Context) (*schema.Run, error) {
	ctx := c.Request().Context()
	r, err := a.store.Run(ctx, c.Param("id"))
	if err != nil {
		return nil, err
	}
	setAudit(c, "run.cancel", "run:"+r.WorkflowID)
	if r.EndedAt != nil {
		return nil, newError(http.StatusConflict, CodeConflict, "run already ended ("+r.Status+")")
	}
	if err := a.temporal.CancelWorkflow(ctx, r.WorkflowID, ""); err != nil {
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			return nil, newError(http.StatusConflict, CodeConflict, "run already ended")
		}
		return nil, err
	}
	return r, nil
}

var idempotencyKeyRE = regexp.MustCompile(`^[\x21-\x7e]{1,200}$`)

// startRun starts a workflow of kind for the caller, idempotently when the
// caller sends Idempotency-Key: a repeat with the same key returns the same
// run (200) instead of starting another (201).
func (a *API) startRun(c echo.Context, kind, target string, wf any, input any) (runView, bool, error) {
	user := userOf(c)
	key, err := idempotencyKey(c)
	if err != nil {
		return runView{}, false, err
	}
	id := workflows.RunWorkflowID(kind, user.ID, key, uuid.NewString())
	return a.startWorkflow(c, kind, id, target, wf, input)
}

// idempotencyKey reads and checks the caller's Idempotency-Key. A console
// form that starts something carries a nonce drawn when it was rendered
// (form_nonce): the key is that nonce and a digest of what the form
// holds, so a double click or a resubmitted page starts it once, while
// the same page changed and sent again starts another.
func idempotencyKey(c echo.Context) (string, error) {
	key := c.Request().Header.Get("Idempotency-Key")
	if key == "" && strings.HasPrefix(c.Request().Header.Get(echo.HeaderContentType), echo.MIMEApplicationForm) {
		if nonce := c.FormValue("form_nonce"); nonce != "" {
			params, _ := c.FormParams()
			names := slices.Sorted(maps.Keys(params))
			h := sha256.New()
			for _, k := range names {
				if k == csrfField || k == "form_nonce" {
					continue
				}
				for _, v := range params[k] {
					fmt.Fprintf(h, "%q=%q\n", k, v)
				}
			}
			key = "form:" + nonce + ":" + hex.EncodeToString(h.Sum(nil))[:16]
		}
	}
	if key != "" && !idempotencyKeyRE.MatchString(key) {
		return "", &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: "invalid Idempotency-Key",
			Fields: map[string]string{"Idempotency-Key": "must be 1-200 printable ASCII characters without spaces"}}
	}
	return key, nil
}

// startWorkflow starts workflow id (attaching to it when it already runs)
// and records the run and its audit entry.
func (a *API) startWorkflow(c echo.Context, kind, id, target string, wf any, input any) (runView, bool, error) {
	ctx := c.Request().Context()
	user := userOf(c)
	opts := client.StartWorkflowOptions{
		ID:                       id,
		TaskQueue:                workflows.TaskQueueOps,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			workflows.SAKind.ValueSet(kind),
			workflows.SAStartedBy.ValueSet(user.Username),
			workflows.SATarget.ValueSet(target),
		),
	}
	// A repeat of a running start attaches to it (USE_EXISTING); a repeat
	// after it closed is refused by Temporal, and the read model answers.
	run, err := a.temporal.ExecuteWorkflow(ctx, opts, wf, input)
	var already *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &already) {
		r, err := a.store.Run(ctx, id)
		if err != nil {
			return runView{}, false, err
		}
		return a.view(*r), false, nil
	} else if err != nil {
		return runView{}, false, fmt.Errorf("start %s workflow: %w", kind, err)
	}
	r := schema.Run{WorkflowID: id, RunID: run.GetRunID(), Kind: kind, Status: schema.RunRunning,
		StartedBy: user.Username, Target: target, StartedAt: time.Now().UTC()}
	// The start request's audit entry is the workflow start's: one row,
	// written with the read model in one transaction. It keeps the action
	// the handler named (job.create on job:42), else workflow.start on
	// the run; the detail names the workflow either way.
	action, auditTarget := "workflow.start", "run:"+id
	if s, ok := c.Get(auditActionKey).(string); ok {
		action = s
	}
	if s, ok := c.Get(auditTargetKey).(string); ok {
		auditTarget = s
	}
	ae := a.auditEntry(c, action, auditTarget, http.StatusCreated)
	ae.Detail = kind + " on " + target
	if action != "workflow.start" {
		ae.Detail += " (workflow " + id + ")"
	}
	created, err := a.store.RecordRunStartAudited(ctx, &r, ae)
	if err != nil {
		return runView{}, false, err
	}
	c.Set(auditDoneKey, true) // a repeated start is not a new action
	if !created {
		cur, err := a.store.Run(ctx, id)
		if err != nil {
			return runView{}, false, err
		}
		return a.view(*cur), false, nil
	}
	return a.view(r), true, nil
}
