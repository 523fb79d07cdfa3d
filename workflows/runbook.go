package workflows

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/opsflow/opsflow/activities"
	"github.com/opsflow/opsflow/internal/runbook"
	"github.com/opsflow/opsflow/schema"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// RunbookInput starts a runbook run. The runbook travels as its source
// text (it is not secret, and a stored version never changes): the
// workflow parses it, which is pure and deterministic, so replays see the
// same steps. Inputs are checked (runbook.Runbook.CheckInputs) with each
// secret input replaced by its reference (activities.SecretRef); the
// secret values are in Secrets, sealed to the run. PrepareRunbook builds
// one.
type RunbookInput struct {
	Name    string
	Version int64
	// RunbookID is the stored runbook the run runs (0: not known, as for
	// a sub-runbook): the read model names the version by it.
	RunbookID int64
	// Recorded: whoever started the run wrote its row in runs (the API
	// does, with the start's audit entry, in one transaction); the run
	// then records only what it runs. A run recording its row as well
	// could win the race and make the API's start look like a repeat.
	Recorded  bool
	Source    string
	Inputs    map[string]any
	Secrets   activities.RunbookSecrets
	StartedBy string
	// Parent is the run of which this one is a runbook step ("": none).
	Parent string
	// RetryWindow is how long a run whose step failed waits for a retry
	// from that step (UpdateRetryStep) before it fails for good. 0: 7
	// days; negative: it fails at once (sub-runbooks do: their parent's
	// step is what is retried).
	RetryWindow time.Duration
	// State carries a run across continue-as-new.
	State *RunbookState
	// Chunk, when set, makes this run a chunk of a foreach: it runs the
	// foreach's body for the chunk's items only (see runbook_steps_foreach.go).
	Chunk *ForeachChunk
}

// RunbookState is what a run has done: every step's state by path, and
// the run's controls.
type RunbookState struct {
	Steps  map[string]*StepState
	Paused bool
	// Seq numbers read-model reports (see schema.RunStep.Seq).
	Seq int64
}

// StepState is one step's state, as the read model and the run's result
// report it.
type StepState struct {
	Status    string // a schema.Step* status
	Outputs   map[string]any
	Error     string `json:",omitempty"`
	Attempts  int    // over the whole run, retries from the step included
	StartedAt time.Time
	EndedAt   time.Time
	ChildID   string     `json:",omitempty"` // the job, ticket or child run of the last attempt
	Loop      *LoopState `json:",omitempty"` // a foreach's items
}

// RunbookResult is a run's outcome.
type RunbookResult struct {
	Status     string // a schema.Run* status
	FailedStep string `json:",omitempty"`
	Error      string `json:",omitempty"`
	Steps      map[string]*StepState
	// Chunk is what a foreach chunk did (RunbookInput.Chunk).
	Chunk *ChunkResult `json:",omitempty"`
}

// RunbookProgress answers QueryRunbook and the control updates.
type RunbookProgress struct {
	Status     string // running, paused, awaiting_retry
	Paused     bool
	FailedStep string `json:",omitempty"`
	Steps      map[string]*StepState
}

// RetryStepRequest asks a run waiting after a failure to go on from its
// failed step. Step, if set, must name that step (a caller's check that
// it retries what it saw fail).
type RetryStepRequest struct {
	Step string
}

// defaultRetryWindow is how long a failed run waits for a retry.
const defaultRetryWindow = 7 * 24 * time.Hour

// Runbook runs any runbook: its steps in order, each with its when,
// retry, timeout, on_failure and outputs, through the executor of its
// kind (stepExecutors). A step that fails for good leaves the run open,
// awaiting_retry: UpdateRetryStep goes on from that step, keeping what
// the steps before it recorded and running none of those that succeeded
// again; cancelling the run ends it. Pause and resume act between steps.
// Cancelling runs the compensation steps of the steps in flight.
func Runbook(ctx workflow.Context, in RunbookInput) (RunbookResult, error) {
	r := &runbookRun{in: in}
	if in.State != nil {
		r.st = *in.State
	}
	if r.st.Steps == nil {
		r.st.Steps = map[string]*StepState{}
	}
	//workflowcheck:ignore order-independent: each entry is handled on its own
	for _, s := range r.st.Steps {
		s.Outputs = normalizeMap(s.Outputs)
	}
	if err := r.setup(ctx); err != nil {
		return RunbookResult{}, err
	}
	if in.Chunk != nil {
		return r.runChunk(ctx)
	}
	res, err := r.run(ctx)
	var can *workflow.ContinueAsNewError
	if errors.As(err, &can) {
		return res, err
	}
	r.flush(ctx)
	return res, finishRun(ctx, fmt.Sprintf("%d steps succeeded", r.count(schema.StepSucceeded)), err)
}

type runbookRun struct {
	in     RunbookInput
	rb     *runbook.Runbook
	st     RunbookState
	root   string         // the run the read model files steps under
	pos    map[string]int // step id -> position in the document
	failed string         // the step the run waits on, after a failure
	retry  bool           // UpdateRetryStep arrived
	writes []workflow.Future
}

func (r *runbookRun) progress() RunbookProgress {
	status := schema.RunRunning
	switch {
	case r.failed != "":
		status = schema.RunAwaitingRetry
	case r.st.Paused:
		status = "paused"
	}
	return RunbookProgress{Status: status, Paused: r.st.Paused, FailedStep: r.failed, Steps: r.st.Steps}
}

func (r *runbookRun) setup(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, QueryRunbook, func() (RunbookProgress, error) { return r.progress(), nil }); err != nil {
		return err
	}
	if r.in.Chunk != nil {
		return nil // a chunk is paused and cancelled through its parent
	}
	pause := func(want bool) error {
		if r.st.Paused == want {
			if want {
				return errors.New("already paused")
			}
			return errors.New("not paused")
		}
		return nil
	}
	for _, h := range []struct {
		name  string
		value bool
	}{{UpdatePause, true}, {UpdateResume, false}} {
		h := h
		if err := workflow.SetUpdateHandlerWithOptions(ctx, h.name, func(workflow.Context) (RunbookProgress, error) {
			r.st.Paused = h.value
			return r.progress(), nil
		}, workflow.UpdateHandlerOptions{Validator: func() error { return pause(h.value) }}); err != nil {
			return err
		}
	}
	return workflow.SetUpdateHandlerWithOptions(ctx, UpdateRetryStep, func(_ workflow.Context, req RetryStepRequest) (RunbookProgress, error) {
		r.retry = true
		return r.progress(), nil
	}, workflow.UpdateHandlerOptions{Validator: func(req RetryStepRequest) error {
		if r.failed == "" || r.retry {
			return errors.New("no failed step waits for a retry")
		}
		if req.Step != "" && req.Step != r.failed {
			return fmt.Errorf("the failed step is %s, not %s", r.failed, req.Step)
		}
		return nil
	}})
}

// prepare parses the runbook and indexes its steps.
func (r *runbookRun) prepare() error {
	rb, err := runbook.Parse([]byte(r.in.Source)) //workflowcheck:ignore internal/runbook is pure: CEL without clock or randomness, maps read in key order
	if err != nil {
		return temporal.NewNonRetryableApplicationError("runbook "+r.in.Name+": "+err.Error(), activities.ErrTypeInvalidInput, nil)
	}
	r.rb = rb
	r.pos = map[string]int{}
	rb.Walk(func(s *runbook.Step) { r.pos[s.ID] = len(r.pos) }) //workflowcheck:ignore internal/runbook is pure: CEL without clock or randomness, maps read in key order
	return nil
}

func (r *runbookRun) run(ctx workflow.Context) (RunbookResult, error) {
	info := workflow.GetInfo(ctx)
	if r.in.Secrets.Run == "" {
		r.in.Secrets.Run = info.WorkflowExecution.ID
	}
	if err := r.prepare(); err != nil {
		return r.result(schema.RunFailed, err), err
	}
	r.root = info.WorkflowExecution.ID
	if r.in.State == nil {
		inputs := map[string]any{}
		//workflowcheck:ignore order-independent: each entry is handled on its own
		for k, v := range r.in.Inputs {
			if _, secret := r.in.Secrets.Sealed[k]; !secret {
				inputs[k] = v
			}
		}
		r.writes = append(r.writes, workflow.ExecuteLocalActivity(workflow.WithLocalActivityOptions(ctx, dbLocalActivity), runbookActivities.RecordRunbookStart,
			activities.RecordRunbookStartInput{WorkflowID: r.root, RunID: info.WorkflowExecution.RunID, Runbook: r.in.Name, RunbookID: r.in.RunbookID, RunRecorded: r.in.Recorded, Version: r.in.Version,
				Inputs: inputs, StartedBy: r.in.StartedBy, Parent: r.in.Parent}))
	}
	window := r.in.RetryWindow
	if window == 0 {
		window = defaultRetryWindow
	}
	top := &scope{steps: r.st.Steps}
	for {
		err := r.runSteps(ctx, top, r.rb.Steps, "")
		var can *workflow.ContinueAsNewError
		if err == nil || errors.As(err, &can) {
			return r.result(schema.RunCompleted, nil), err
		}
		var sf *stepFailure
		if ctx.Err() != nil || !errors.As(err, &sf) || window < 0 {
			status := schema.RunFailed
			if ctx.Err() != nil {
				status = schema.RunCanceled
			}
			return r.result(status, err), err
		}
		// Wait for a retry from the failed step, a cancel, or the end of
		// the window.
		r.failed, r.retry = sf.path, false
		r.report(ctx, activities.RecordRunbookStepsInput{SetFailedStep: true, FailedStep: sf.path, Status: schema.RunAwaitingRetry,
			Summary: "step " + sf.path + " failed: " + sf.msg})
		ok, werr := workflow.AwaitWithTimeout(ctx, window, func() bool { return r.retry })
		if werr != nil {
			return r.result(schema.RunCanceled, werr), werr
		}
		if !ok {
			err := fmt.Errorf("step %s failed and was not retried within %s: %s", sf.path, window, sf.msg)
			return r.result(schema.RunFailed, err), temporal.NewNonRetryableApplicationError(err.Error(), "RunbookFailed", nil)
		}
		r.failed = ""
		r.report(ctx, activities.RecordRunbookStepsInput{SetFailedStep: true, Status: schema.RunRunning, Summary: "retrying from step " + sf.path})
	}
}

func (r *runbookRun) result(status string, err error) RunbookResult {
	res := RunbookResult{Status: status, Steps: r.st.Steps}
	var sf *stepFailure
	if errors.As(err, &sf) {
		res.FailedStep, res.Error = sf.path, sf.msg
	} else if err != nil {
		res.Error = err.Error()
	}
	return res
}

func (r *runbookRun) count(status string) int {
	n := 0
	//workflowcheck:ignore order-independent: each entry is handled on its own
	for _, s := range r.st.Steps {
		if s.Status == status {
			n++
		}
	}
	return n
}

// stepFailure is a step that failed for good (after its retries and
// compensation): the run stops there.
type stepFailure struct {
	path, msg string
}

func (e *stepFailure) Error() string { return "step " + e.path + " failed: " + e.msg }

// scope is what the expressions of a list of steps see: the steps before
// them in the same list and in the enclosing ones, and in a foreach body
// the item.
type scope struct {
	parent *scope
	steps  map[string]*StepState // by step id
	prefix string                // path prefix of the steps of this scope
	loop   bool
	item   any
	index  int
}

func (s *scope) vars(inputs map[string]any) runbook.Vars {
	v := runbook.Vars{Inputs: inputs, Steps: map[string]runbook.StepResult{}}
	var chain []*scope
	for c := s; c != nil; c = c.parent {
		chain = append(chain, c)
	}
	for i := len(chain) - 1; i >= 0; i-- {
		c := chain[i]
		//workflowcheck:ignore order-independent: each entry is handled on its own
		for id, st := range c.steps {
			if st.Status == schema.StepSucceeded || st.Status == schema.StepFailed || st.Status == schema.StepSkipped {
				v.Steps[id] = runbook.StepResult{Status: st.Status, Outputs: st.Outputs}
			}
		}
		if c.loop {
			v.Item, v.Index = c.item, c.index
		}
	}
	return v
}

// runSteps runs steps in order in sc, skipping those already done (a
// retry from a failed step, or a continued run).
func (r *runbookRun) runSteps(ctx workflow.Context, sc *scope, steps []*runbook.Step, parent string) error {
	for _, s := range steps {
		if st := sc.steps[s.ID]; st != nil && (st.Status == schema.StepSucceeded || st.Status == schema.StepSkipped ||
			st.Status == schema.StepFailed && s.OnFailure != nil && s.OnFailure.Action == runbook.OnFailureContinue) {
			continue
		}
		if sc.parent == nil && r.in.Chunk == nil && workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			r.flush(ctx)
			st := r.st
			in := r.in
			in.State = &st
			return workflow.NewContinueAsNewError(ctx, Runbook, in)
		}
		if err := r.runStep(ctx, sc, s, parent); err != nil {
			return err
		}
	}
	return nil
}

// runStep runs one step: when, arguments, attempts with backoff under its
// timeout, outputs, on_failure.
func (r *runbookRun) runStep(ctx workflow.Context, sc *scope, s *runbook.Step, parent string) error {
	if err := workflow.Await(ctx, func() bool { return !r.st.Paused }); err != nil {
		return err
	}
	path := sc.prefix + s.ID
	st := sc.steps[s.ID]
	if st == nil {
		st = &StepState{}
		sc.steps[s.ID] = st
	}
	vars := sc.vars(r.in.Inputs)
	fail := func(msg string) error {
		st.Status, st.Error, st.EndedAt = schema.StepFailed, msg, workflow.Now(ctx)
		r.reportStep(ctx, path, parent, s, st)
		return r.onFailure(ctx, sc, s, parent, path, msg)
	}
	if s.When != "" {
		ok, err := runbook.EvalWhen(s.When, vars) //workflowcheck:ignore internal/runbook is pure: CEL without clock or randomness, maps read in key order
		if err != nil {
			return fail(err.Error())
		}
		if !ok {
			now := workflow.Now(ctx)
			st.Status, st.StartedAt, st.EndedAt, st.Outputs = schema.StepSkipped, now, now, map[string]any{}
			r.reportStep(ctx, path, parent, s, st)
			return nil
		}
	}
	exec, ok := stepExecutors[s.Kind]
	if !ok {
		return fail("no executor for step kind " + s.Kind + " on this worker")
	}
	attempts, backoff, factor, maxBackoff := 1, time.Second, 2.0, 10*time.Minute
	if s.Retry != nil {
		attempts = max(1, s.Retry.Attempts)
		if d, err := time.ParseDuration(s.Retry.Backoff); err == nil {
			backoff = d
		}
		if s.Retry.Factor > 0 {
			factor = s.Retry.Factor
		}
		if d, err := time.ParseDuration(s.Retry.MaxBackoff); err == nil {
			maxBackoff = d
		}
	}
	timeout, _ := time.ParseDuration(s.Timeout)
	var lastErr error
	for attempt := 1; attempt <= attempts; attempt++ {
		args, err := runbook.InterpolateAll(s.With, vars) //workflowcheck:ignore internal/runbook is pure: CEL without clock or randomness, maps read in key order
		if err != nil {
			return fail(err.Error())
		}
		st.Attempts++
		st.Status, st.Error, st.StartedAt, st.EndedAt = schema.StepRunning, "", workflow.Now(ctx), time.Time{}
		r.reportStep(ctx, path, parent, s, st)
		call := &stepCall{run: r, step: s, path: path, args: args.(map[string]any), scope: sc, state: st, timeout: timeout}
		result, err := r.attempt(ctx, exec, call, timeout)
		if err == nil {
			out, oerr := stepOutputs(s, result, vars)
			if oerr != nil {
				return fail(oerr.Error())
			}
			st.Status, st.Outputs, st.EndedAt = schema.StepSucceeded, out, workflow.Now(ctx)
			r.reportStep(ctx, path, parent, s, st)
			return nil
		}
		lastErr = err
		if result != nil {
			st.Outputs = result
		}
		if ctx.Err() != nil {
			break
		}
		var app *temporal.ApplicationError
		if errors.As(err, &app) && app.Type() == errTypeRunbookFail {
			break // a fail step fails the same way every time
		}
		if attempt < attempts {
			st.Error = errorText(err)
			r.reportStep(ctx, path, parent, s, st)
			if err := workflow.Sleep(ctx, backoff); err != nil {
				lastErr = err
				break
			}
			backoff = min(maxBackoff, time.Duration(math.Min(float64(backoff)*factor, float64(math.MaxInt64/2))))
		}
	}
	if ctx.Err() != nil {
		st.Status, st.Error, st.EndedAt = schema.StepCanceled, "cancelled", workflow.Now(ctx)
		r.reportStep(ctx, path, parent, s, st)
		if s.OnFailure != nil && len(s.OnFailure.Steps) > 0 {
			// Compensation runs although the run is cancelled.
			dctx, cancel := workflow.NewDisconnectedContext(ctx)
			defer cancel()
			_ = r.runSteps(dctx, sc, s.OnFailure.Steps, path)
		}
		return ctx.Err()
	}
	return fail(errorText(lastErr))
}

// onFailure does what a failed step's on_failure says.
func (r *runbookRun) onFailure(ctx workflow.Context, sc *scope, s *runbook.Step, parent, path, msg string) error {
	if s.OnFailure == nil {
		return &stepFailure{path: path, msg: msg}
	}
	switch s.OnFailure.Action {
	case runbook.OnFailureContinue:
		return nil
	case runbook.OnFailureCompensate:
		if err := r.runSteps(ctx, sc, s.OnFailure.Steps, path); err != nil {
			var sf *stepFailure
			if errors.As(err, &sf) {
				return &stepFailure{path: path, msg: msg + "; compensation step " + sf.path + " failed: " + sf.msg}
			}
			return err
		}
	}
	return &stepFailure{path: path, msg: msg}
}

// attempt runs one attempt of a step, cancelled when its timeout passes.
func (r *runbookRun) attempt(ctx workflow.Context, exec stepExecutor, call *stepCall, timeout time.Duration) (map[string]any, error) {
	if timeout <= 0 {
		return exec(ctx, call)
	}
	actx, cancel := workflow.WithCancel(ctx)
	defer cancel()
	timedOut := false
	tctx, stopTimer := workflow.WithCancel(ctx)
	defer stopTimer()
	timer := workflow.NewTimer(tctx, timeout)
	workflow.Go(tctx, func(gctx workflow.Context) {
		if timer.Get(gctx, nil) == nil {
			timedOut = true
			cancel()
		}
	})
	res, err := exec(actx, call)
	if timedOut && ctx.Err() == nil {
		return nil, fmt.Errorf("timed out after %s", timeout)
	}
	return res, err
}

// stepOutputs is what steps.<id>.outputs reads: the kind's result, and
// the step's outputs expressions evaluated over it.
func stepOutputs(s *runbook.Step, result map[string]any, vars runbook.Vars) (map[string]any, error) {
	out := map[string]any{}
	//workflowcheck:ignore order-independent: each entry is handled on its own
	for k, v := range result {
		out[k] = v
	}
	if len(s.Outputs) == 0 {
		return out, nil
	}
	vars.Result = result
	keys := make([]string, 0, len(s.Outputs))
	//workflowcheck:ignore order-independent: each entry is handled on its own
	for k := range s.Outputs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v, err := runbook.Eval(s.Outputs[k], vars) //workflowcheck:ignore internal/runbook is pure: CEL without clock or randomness, maps read in key order
		if err != nil {
			return nil, fmt.Errorf("output %s: %w", k, err)
		}
		out[k] = v
	}
	return out, nil
}

func errorText(err error) string {
	var app *temporal.ApplicationError
	if errors.As(err, &app) {
		return app.Message()
	}
	return err.Error()
}

// reportStep writes a step's state to the read model, without waiting:
// reports carry an increasing seq, so their order of arrival does not
// matter; flush waits for them before the run ends.
func (r *runbookRun) reportStep(ctx workflow.Context, path, parent string, s *runbook.Step, st *StepState) {
	rs := schema.RunStep{Path: path, StepID: s.ID, Kind: s.Kind, ParentPath: parent, Position: r.pos[s.ID], Status: st.Status,
		Attempts: st.Attempts, Outputs: st.Outputs, Error: st.Error, ChildWorkflowID: st.ChildID}
	if !st.StartedAt.IsZero() {
		t := st.StartedAt
		rs.StartedAt = &t
	}
	if !st.EndedAt.IsZero() {
		t := st.EndedAt
		rs.EndedAt = &t
	}
	r.report(ctx, activities.RecordRunbookStepsInput{Steps: []schema.RunStep{rs}})
}

func (r *runbookRun) report(ctx workflow.Context, in activities.RecordRunbookStepsInput) {
	// Reports of one step in one workflow task share a timestamp; the
	// counter orders them, and the timestamp orders them after the
	// reports of an earlier run (a chunk retried).
	r.st.Seq++
	seq := workflow.Now(ctx).UnixMicro()*1000 + r.st.Seq%1000
	for i := range in.Steps {
		in.Steps[i].Seq = seq
	}
	in.WorkflowID = r.root
	// Written even when the run is cancelled.
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	r.writes = append(r.writes, workflow.ExecuteLocalActivity(workflow.WithLocalActivityOptions(dctx, dbLocalActivity), runbookActivities.RecordRunbookSteps, in))
	if len(r.writes) > 64 {
		r.flush(ctx)
	}
}

// flush waits for the read-model writes in flight.
func (r *runbookRun) flush(ctx workflow.Context) {
	dctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	for _, f := range r.writes {
		_ = f.Get(dctx, nil)
	}
	r.writes = nil
}

// normalize turns the float64 that JSON made of whole numbers back into
// int64, so an output read after a continue-as-new or from a child's
// result compares and indexes as it did before.
func normalize(v any) any {
	switch v := v.(type) {
	case float64:
		if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
			return int64(v)
		}
	case map[string]any:
		return normalizeMap(v)
	case []any:
		//workflowcheck:ignore order-independent: each entry is handled on its own
		for i := range v {
			v[i] = normalize(v[i])
		}
	}
	return v
}

func normalizeMap(m map[string]any) map[string]any {
	//workflowcheck:ignore order-independent: each entry is handled on its own
	for k, v := range m {
		m[k] = normalize(v)
	}
	return m
}
