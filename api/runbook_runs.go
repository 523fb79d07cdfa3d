package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/opsflow/opsflow/schema"
	"github.com/opsflow/opsflow/workflows"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
)

// A runbook run is a run of kind runbook: it starts through startWorkflow
// like every run, names the stored version it runs by the runbook's ID
// and the version, and adds its steps (the read model) to the run's view.
// Pause, resume and retry from the failed step are the interpreter's
// updates; cancel is every run's.

func (a *API) runbookRunRoutes() []route {
	return []route{
		{Method: http.MethodPost, Path: "/api/v1/runbooks/:name/runs", Roles: operators, handler: a.startRunbookRun},
		{Method: http.MethodPost, Path: "/api/v1/runs/:id/pause", Roles: operators, handler: a.runbookControl(workflows.UpdatePause)},
		{Method: http.MethodPost, Path: "/api/v1/runs/:id/resume", Roles: operators, handler: a.runbookControl(workflows.UpdateResume)},
		{Method: http.MethodPost, Path: "/api/v1/runs/:id/retry", Roles: operators, handler: a.runbookControl(workflows.UpdateRetryStep)},
	}
}

// runbookRef names what a runbook run runs.
type runbookRef struct {
	Name    string `json:"name"`
	ID      int64  `json:"id,omitempty"`
	Version int64  `json:"version"`
}

// runStepView is a step of a runbook run as the API shows it. Outputs
// never hold secrets: secret inputs reach steps as references.
type runStepView struct {
	Path      string         `json:"path"`
	ID        string         `json:"id"`
	Kind      string         `json:"kind"`
	Parent    string         `json:"parent,omitempty"`
	Status    string         `json:"status"`
	Attempts  int            `json:"attempts"`
	StartedAt *time.Time     `json:"started_at,omitempty"`
	EndedAt   *time.Time     `json:"ended_at,omitempty"`
	Outputs   map[string]any `json:"outputs,omitempty"`
	Error     string         `json:"error,omitempty"`
	// Child is the workflow ID of the job, ticket or run the step's last
	// attempt started.
	Child string `json:"child,omitempty"`
}

type startRunbookRunRequest struct {
	Version int64          `json:"version"`
	Inputs  map[string]any `json:"inputs"`
}

// startRunbookRun starts a run of a stored runbook version (0: the
// latest): 201 with the run, or 200 with the first run for a repeated
// Idempotency-Key.
func (a *API) startRunbookRun(c echo.Context) error {
	name := c.Param("name")
	setAudit(c, "runbook.run", "runbook:"+name)
	var req startRunbookRunRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	v, created, err := a.launchRunbook(c, name, req.Version, req.Inputs)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return c.JSON(status, v)
}

// launchRunbook checks the inputs against the version and starts its run.
func (a *API) launchRunbook(c echo.Context, name string, version int64, inputs map[string]any) (runView, bool, error) {
	ctx := c.Request().Context()
	if version < 0 {
		return runView{}, false, &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: "invalid version",
			Fields: map[string]string{"version": "must be 0 (the latest) or a version number"}}
	}
	rb, err := a.store.Runbook(ctx, name)
	if err != nil {
		return runView{}, false, err
	}
	if version == 0 {
		version = rb.LatestVersion
	}
	ver, err := a.store.RunbookVersion(ctx, rb.ID, version)
	if err != nil {
		return runView{}, false, err
	}
	key, err := idempotencyKey(c)
	if err != nil {
		return runView{}, false, err
	}
	if a.secrets == nil {
		return runView{}, false, newError(http.StatusServiceUnavailable, CodeUnavailable, "no secret key configured")
	}
	user := userOf(c)
	id, in, err := workflows.PrepareRunbook(a.secrets, workflows.RunbookStart{Name: rb.Name, Version: ver.Version, RunbookID: rb.ID,
		Source: ver.Source, Inputs: inputs, StartedBy: user.Username, UserID: user.ID, IdempotencyKey: key, Unique: uuid.NewString()})
	var bad *workflows.InputsError
	if errors.As(err, &bad) {
		return runView{}, false, &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: "invalid inputs", Fields: bad.Fields}
	} else if err != nil {
		return runView{}, false, err
	}
	in.Recorded = true // by startWorkflow
	v, created, err := a.startWorkflow(c, workflows.KindRunbook, id, rb.Name, workflows.Runbook, in)
	if err != nil {
		return runView{}, false, err
	}
	if created {
		// The run records this itself too; written here as well, the
		// answer already names the version.
		plain := map[string]any{}
		for k, x := range in.Inputs {
			if _, secret := in.Secrets.Sealed[k]; !secret {
				plain[k] = x
			}
		}
		if err := a.store.RecordRunbookRun(ctx, &schema.RunbookRun{WorkflowID: id, Runbook: rb.Name, RunbookID: rb.ID,
			Version: ver.Version, Inputs: plain}); err != nil {
			return runView{}, false, err
		}
	}
	if err := a.addRunbook(ctx, &v); err != nil {
		return runView{}, false, err
	}
	return v, created, nil
}

// addRunbook adds what a runbook run runs and its steps to its view.
func (a *API) addRunbook(ctx context.Context, v *runView) error {
	if v.Kind != workflows.KindRunbook {
		return nil
	}
	rr, err := a.store.RunbookRun(ctx, v.WorkflowID)
	if errors.Is(err, schema.ErrNotFound) {
		return nil // started, not yet recorded by the run
	} else if err != nil {
		return err
	}
	v.Runbook = &runbookRef{Name: rr.Runbook, ID: rr.RunbookID, Version: rr.Version}
	v.FailedStep = rr.FailedStep
	v.Parent = rr.ParentWorkflowID
	steps, err := a.store.RunSteps(ctx, v.WorkflowID)
	if err != nil {
		return err
	}
	v.Steps = make([]runStepView, len(steps))
	for i, s := range steps {
		v.Steps[i] = runStepView{Path: s.Path, ID: s.StepID, Kind: s.Kind, Parent: s.ParentPath, Status: s.Status, Attempts: s.Attempts,
			StartedAt: s.StartedAt, EndedAt: s.EndedAt, Outputs: s.Outputs, Error: s.Error, Child: s.ChildWorkflowID}
	}
	return nil
}

// runbookState asks a running runbook run whether it is paused.
func (a *API) runbookState(ctx context.Context, v *runView) {
	if v.Kind != workflows.KindRunbook || v.EndedAt != nil {
		return
	}
	res, err := a.temporal.QueryWorkflow(ctx, v.WorkflowID, "", workflows.QueryRunbook)
	if err != nil {
		return
	}
	var p struct{ Paused bool }
	if res.Get(&p) == nil {
		v.Paused = p.Paused
	}
}

// runbookControl sends a runbook run one of its control updates: pause,
// resume, or retry_step (body {"step": "…"} optional, naming the failed
// step the caller means). A run that cannot take it now is a 409.
func (a *API) runbookControl(update string) echo.HandlerFunc {
	action := map[string]string{workflows.UpdatePause: "run.pause", workflows.UpdateResume: "run.resume", workflows.UpdateRetryStep: "run.retry"}[update]
	return func(c echo.Context) error {
		var req workflows.RetryStepRequest
		if update == workflows.UpdateRetryStep && c.Request().ContentLength != 0 {
			var body struct {
				Step string `json:"step"`
			}
			if err := decodeJSON(c, &body); err != nil {
				return err
			}
			req.Step = body.Step
		}
		v, err := a.controlRunbook(c, action, update, req)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, v)
	}
}

func (a *API) controlRunbook(c echo.Context, action, update string, req workflows.RetryStepRequest) (runView, error) {
	ctx := c.Request().Context()
	id := c.Param("id")
	setAudit(c, action, "run:"+id)
	r, err := a.store.Run(ctx, id)
	if err != nil {
		return runView{}, err
	}
	if r.Kind != workflows.KindRunbook {
		return runView{}, newError(http.StatusConflict, CodeConflict, "only runbook runs take "+update)
	}
	if r.EndedAt != nil {
		return runView{}, newError(http.StatusConflict, CodeConflict, "run already ended ("+r.Status+")")
	}
	opts := client.UpdateWorkflowOptions{WorkflowID: r.WorkflowID, UpdateName: update, WaitForStage: client.WorkflowUpdateStageCompleted}
	if update == workflows.UpdateRetryStep {
		opts.Args = []any{req}
		if req.Step != "" {
			c.Set(auditDetailKey, "step "+req.Step)
		}
	}
	h, err := a.temporal.UpdateWorkflow(ctx, opts)
	if err == nil {
		err = h.Get(ctx, nil)
	}
	if err != nil {
		var app *temporal.ApplicationError
		var nf *serviceerror.NotFound
		switch {
		case errors.As(err, &app):
			return runView{}, newError(http.StatusConflict, CodeConflict, app.Message())
		case errors.As(err, &nf):
			return runView{}, newError(http.StatusConflict, CodeConflict, "run already ended")
		}
		return runView{}, err
	}
	return a.runDetail(ctx, id)
}
