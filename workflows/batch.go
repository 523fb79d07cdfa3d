package workflows

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/opsflow/opsflow/activities"
	"github.com/opsflow/opsflow/schema"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// hostsPerRun bounds the hosts one BatchJob run handles before it
// continues as new, keeping each run's history far below Temporal's limits
// (about 3 events per host) however large the job.
const hostsPerRun = 1000

// BatchJobInput starts a job or, after continue-as-new, carries its state.
type BatchJobInput struct {
	JobID  int64
	Total  int
	Policy schema.JobPolicy
	State  BatchState
	// HostsPerRun overrides hostsPerRun (tests use a small one).
	HostsPerRun int
}

// BatchState is a job's progress, carried across continue-as-new.
type BatchState struct {
	Next        int // index of the next host to start
	Batch       int // index of the current batch
	BatchEnd    int // first index after the current batch
	Succeeded   int
	Failed      int
	Concurrency int // 0: from the policy
	Paused      bool
	Deadline    time.Time // zero: no job timeout
	Approved    bool      // a gated job's ticket was approved
}

// BatchProgress answers the progress query and every control update.
type BatchProgress struct {
	Total, Started, Running, Succeeded, Failed int
	Concurrency                                int
	Paused, Aborted, BudgetSpent               bool
	Batch                                      int
}

// SetConcurrencyRequest changes a running job's concurrency.
type SetConcurrencyRequest struct {
	Concurrency int
}

// BatchJob runs a script version on every host of a job: rolling batches,
// a concurrency limit that can change while it runs, an error budget,
// pause/resume/abort. Each host's execution is exactly-once (see
// activities.SSH.RunHostScript); per-host results live in the database.
func BatchJob(ctx workflow.Context, in BatchJobInput) (BatchProgress, error) {
	r := &batchRun{in: in, st: in.State}
	if err := r.setup(ctx); err != nil {
		return BatchProgress{}, err
	}
	res, err := r.run(ctx)
	var can *workflow.ContinueAsNewError
	if errors.As(err, &can) {
		return res, err
	}
	return res, finishRun(ctx, fmt.Sprintf("%d/%d hosts succeeded, %d failed", res.Succeeded, res.Total, res.Failed), err)
}

type batchRun struct {
	in          BatchJobInput
	statusWrite workflow.Future // the "running" status, when this run wrote it
	st          BatchState
	running     int
	aborted     bool
	budget      bool
	timedOut    bool
	refused     string // why the job's approval was not given
}

func (r *batchRun) progress() BatchProgress {
	return BatchProgress{Total: r.in.Total, Started: r.st.Next, Running: r.running, Succeeded: r.st.Succeeded, Failed: r.st.Failed,
		Concurrency: r.concurrency(), Paused: r.st.Paused, Aborted: r.aborted, BudgetSpent: r.budget, Batch: r.st.Batch}
}

func (r *batchRun) finished() error {
	if r.aborted || r.st.Next >= r.in.Total && r.running == 0 {
		return errors.New("the job has finished")
	}
	return nil
}

func (r *batchRun) setup(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, QueryProgress, func() (BatchProgress, error) { return r.progress(), nil }); err != nil {
		return err
	}
	handlers := []struct {
		name     string
		validate func() error
		apply    func()
	}{
		{UpdatePause, func() error {
			if err := r.finished(); err != nil {
				return err
			}
			if r.st.Paused {
				return errors.New("already paused")
			}
			return nil
		}, func() { r.st.Paused = true }},
		{UpdateResume, func() error {
			if err := r.finished(); err != nil {
				return err
			}
			if !r.st.Paused {
				return errors.New("not paused")
			}
			return nil
		}, func() { r.st.Paused = false }},
		{UpdateAbort, r.finished, func() { r.aborted = true }},
	}
	for _, h := range handlers {
		h := h
		if err := workflow.SetUpdateHandlerWithOptions(ctx, h.name, func(workflow.Context) (BatchProgress, error) {
			h.apply()
			return r.progress(), nil
		}, workflow.UpdateHandlerOptions{Validator: func() error { return h.validate() }}); err != nil {
			return err
		}
	}
	return workflow.SetUpdateHandlerWithOptions(ctx, UpdateSetConcurrency, func(_ workflow.Context, req SetConcurrencyRequest) (BatchProgress, error) {
		r.st.Concurrency = req.Concurrency
		return r.progress(), nil
	}, workflow.UpdateHandlerOptions{Validator: func(req SetConcurrencyRequest) error {
		if req.Concurrency < 1 || req.Concurrency > 2000 {
			return errors.New("concurrency must be from 1 to 2000")
		}
		return r.finished()
	}})
}

// batchSize is the size of batch i (0-based) under policy batch.
func batchSize(batch string, i, total int) int {
	if batch == "" {
		return total
	}
	if n, ok := strings.CutPrefix(batch, "+"); ok {
		step, err := strconv.Atoi(n)
		if err != nil || step < 1 {
			return total
		}
		return step * (i + 1)
	}
	n, err := schema.ParseCount(batch, total)
	if err != nil {
		return total
	}
	return n
}

func (r *batchRun) concurrency() int {
	if r.st.Concurrency > 0 {
		return r.st.Concurrency
	}
	n, err := schema.ParseCount(r.in.Policy.Concurrency, r.in.Total)
	if err != nil {
		return 10
	}
	return n
}

func (r *batchRun) budgetSpent() bool {
	if r.in.Policy.MaxFailures == "" {
		return false
	}
	n, err := schema.ParseCount(r.in.Policy.MaxFailures, r.in.Total)
	return err == nil && r.st.Failed > n
}

func (r *batchRun) run(ctx workflow.Context) (BatchProgress, error) {
	var jobs *activities.Jobs
	var ssh *activities.SSH
	dbCtx := workflow.WithActivityOptions(ctx, dbActivity)
	// A gated job opens its approval ticket as a child workflow and starts
	// no host until it is approved.
	if r.st.Next == 0 && r.st.BatchEnd == 0 && !r.st.Approved && r.in.Policy.Approval != "" &&
		workflow.GetVersion(ctx, "approval-gate", workflow.DefaultVersion, 1) == 1 {
		if err := r.awaitApproval(ctx, dbCtx); err != nil {
			if r.refused == "" {
				return r.progress(), err
			}
			return r.finish(ctx, dbCtx)
		}
		r.st.Approved = true
	}
	if r.st.Next == 0 && r.st.Batch == 0 && r.st.BatchEnd == 0 {
		if d, err := time.ParseDuration(r.in.Policy.JobTimeout); err == nil && d > 0 {
			r.st.Deadline = workflow.Now(ctx).Add(d)
		}
		r.st.BatchEnd = min(r.in.Total, batchSize(r.in.Policy.Batch, 0, r.in.Total))
		// Hosts start without waiting for the status write; a final status
		// written later is never overwritten by it.
		r.statusWrite = workflow.ExecuteActivity(dbCtx, jobs.RecordJobStatus, activities.RecordJobStatusInput{JobID: r.in.JobID, Status: schema.JobRunning})
	}
	hostTimeout := 30 * time.Minute
	if d, err := time.ParseDuration(r.in.Policy.HostTimeout); err == nil && d > 0 {
		hostTimeout = d
	}
	hostCtx, cancelHosts := workflow.WithCancel(ctx)
	defer cancelHosts()
	hostCtx = workflow.WithActivityOptions(hostCtx, workflow.ActivityOptions{
		TaskQueue:           TaskQueueSSH,
		StartToCloseTimeout: hostTimeout + 2*time.Minute,
		HeartbeatTimeout:    10 * time.Second,
		WaitForCancellation: true,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 10 * time.Second, MaximumAttempts: 20,
			NonRetryableErrorTypes: []string{activities.ErrTypeInvalidInput},
		},
	})
	if !r.st.Deadline.IsZero() {
		timer := workflow.NewTimer(ctx, r.st.Deadline.Sub(workflow.Now(ctx)))
		workflow.Go(ctx, func(gctx workflow.Context) {
			if timer.Get(gctx, nil) == nil {
				r.timedOut, r.aborted = true, true
			}
		})
	}

	perRun := hostsPerRun
	if r.in.HostsPerRun > 0 {
		perRun = r.in.HostsPerRun
	}
	startedThisRun := 0
	wasPaused := !r.st.Paused
	grouped := workflow.GetVersion(ctx, "host-groups", workflow.DefaultVersion, 1) == 1
	// Version 1 of host-window: a group reports each host that ends before
	// the others (SignalHostsDone) and its slot goes to the next host at
	// once; a group that fails for good records its hosts failed.
	windowed := grouped && workflow.GetVersion(ctx, "host-window", workflow.DefaultVersion, 1) == 1
	inFlight := map[int]bool{} // hosts started by this run and not yet counted (windowed)
	if windowed {
		reports := workflow.GetSignalChannel(ctx, SignalHostsDone)
		workflow.Go(ctx, func(gctx workflow.Context) {
			for {
				var done []activities.HostDone
				if !reports.Receive(gctx, &done) {
					return
				}
				for _, d := range done {
					if inFlight[d.Idx] {
						delete(inFlight, d.Idx)
						r.running--
						r.tally(nil, []activities.RunHostScriptResult{d.Result}, 1)
					}
				}
			}
		})
	}
	for {
		if r.st.Paused != wasPaused {
			wasPaused = r.st.Paused
			status := schema.JobRunning
			if r.st.Paused {
				status = schema.JobPaused
			}
			_ = workflow.ExecuteActivity(dbCtx, jobs.RecordJobStatus, activities.RecordJobStatusInput{JobID: r.in.JobID, Status: status}).Get(ctx, nil)
		}
		if r.aborted {
			cancelHosts()
		}
		if r.budgetSpent() {
			r.budget = true
		}
		stop := r.aborted || r.budget
		// Start hosts while there is room: one by one, or in groups run
		// side by side by one activity.
		for !stop && !r.st.Paused && r.running < r.concurrency() && r.st.Next < r.st.BatchEnd && startedThisRun < perRun {
			n := 1
			if grouped {
				want := min(hostGroupSize(r.concurrency()), r.st.BatchEnd-r.st.Next, perRun-startedThisRun)
				n = min(want, r.concurrency()-r.running)
				if windowed && n < want {
					// Hosts end one by one: wait for a whole group's room
					// rather than start groups of one.
					break
				}
			}
			first := r.st.Next
			r.st.Next += n
			r.running += n
			startedThisRun += n
			if !grouped {
				f := workflow.ExecuteActivity(hostCtx, ssh.RunHostScript, activities.RunHostScriptInput{JobID: r.in.JobID, Idx: first})
				workflow.Go(ctx, func(gctx workflow.Context) {
					var res activities.RunHostScriptResult
					err := f.Get(gctx, &res)
					r.running--
					r.tally(err, []activities.RunHostScriptResult{res}, 1)
				})
				continue
			}
			idxs := make([]int, n)
			for k := range idxs {
				idxs[k] = first + k
			}
			if windowed {
				for _, idx := range idxs {
					inFlight[idx] = true
				}
				f := workflow.ExecuteActivity(hostCtx, ssh.RunHostScripts, activities.RunHostScriptsInput{JobID: r.in.JobID, Idxs: idxs,
					ReportTo: workflow.GetInfo(ctx).WorkflowExecution.ID, ReportSignal: SignalHostsDone})
				workflow.Go(ctx, func(gctx workflow.Context) { r.endGroup(gctx, dbCtx, f, idxs, inFlight) })
				continue
			}
			f := workflow.ExecuteActivity(hostCtx, ssh.RunHostScripts, activities.RunHostScriptsInput{JobID: r.in.JobID, Idxs: idxs})
			workflow.Go(ctx, func(gctx workflow.Context) {
				var res []activities.RunHostScriptResult
				err := f.Get(gctx, &res)
				r.running -= n
				r.tally(err, res, n)
			})
		}
		if r.running == 0 {
			switch {
			case stop || r.st.Next >= r.in.Total:
				return r.finish(ctx, dbCtx)
			case r.st.Next >= r.st.BatchEnd:
				// Next rolling batch, after a confirmation if asked.
				r.st.Batch++
				r.st.BatchEnd = min(r.in.Total, r.st.Next+batchSize(r.in.Policy.Batch, r.st.Batch, r.in.Total))
				if r.st.Batch == 1 && r.in.Policy.PauseAfterFirstBatch {
					r.st.Paused = true
				}
				continue
			case startedThisRun >= perRun:
				return r.progress(), workflow.NewContinueAsNewError(ctx, BatchJob, BatchJobInput{JobID: r.in.JobID, Total: r.in.Total, Policy: r.in.Policy, State: r.st, HostsPerRun: r.in.HostsPerRun})
			}
		}
		snapshot := struct {
			running, next   int
			paused, aborted bool
			conc            int
		}{r.running, r.st.Next, r.st.Paused, r.aborted, r.concurrency()}
		if err := workflow.Await(ctx, func() bool {
			return r.running != snapshot.running || r.st.Paused != snapshot.paused || r.aborted != snapshot.aborted || r.concurrency() != snapshot.conc
		}); err != nil {
			return r.progress(), err
		}
	}
}

// tally counts the outcome of n hosts started together: their results,
// or the activity's error (a cancelled host counts as neither).
func (r *batchRun) tally(err error, res []activities.RunHostScriptResult, n int) {
	switch {
	case err != nil:
		if !temporal.IsCanceledError(err) {
			r.st.Failed += n
		}
	case len(res) != n:
		r.st.Failed += n
	default:
		for _, h := range res {
			if h.State == schema.HostSucceeded {
				r.st.Succeeded++
			} else {
				r.st.Failed++
			}
		}
	}
}

// endGroup counts the hosts of a group that were not reported one by one
// when it ends. A group that failed for good (retries spent) records
// those hosts failed before their slots are given back, so none is left
// running in the read model.
func (r *batchRun) endGroup(ctx, dbCtx workflow.Context, f workflow.Future, idxs []int, inFlight map[int]bool) {
	var jobs *activities.Jobs
	var res []activities.RunHostScriptResult
	err := f.Get(ctx, &res)
	var left []int
	for k, idx := range idxs {
		if !inFlight[idx] {
			continue
		}
		delete(inFlight, idx)
		left = append(left, idx)
		if err == nil && len(res) == len(idxs) {
			r.tally(nil, res[k:k+1], 1)
		}
	}
	if err == nil && len(res) == len(idxs) {
		r.running -= len(left)
		return
	}
	if !temporal.IsCanceledError(err) && len(left) > 0 {
		reason := "the host's activity failed"
		if err != nil {
			reason += ": " + err.Error()
		}
		_ = workflow.ExecuteActivity(dbCtx, jobs.FailJobHosts, activities.FailJobHostsInput{JobID: r.in.JobID, Idxs: left, Reason: reason}).Get(ctx, nil)
	}
	r.running -= len(left)
	r.tally(err, nil, len(left))
}

// hostGroupSize is how many hosts one activity runs side by side at a
// given concurrency: one at low concurrency (each host its own activity,
// finest control), up to 8 when many hosts run at once, which divides
// the Temporal round trips per host accordingly.
func hostGroupSize(concurrency int) int {
	return max(1, min(8, concurrency/12))
}

// awaitApproval runs the job's approval ticket as a child workflow. A
// refusal (rejected, expired, withdrawn, or the job aborted meanwhile)
// sets r.refused.
func (r *batchRun) awaitApproval(ctx, dbCtx workflow.Context) error {
	var approvals *activities.Approvals
	var open activities.OpenJobTicketResult
	if err := workflow.ExecuteActivity(dbCtx, approvals.OpenJobTicket, activities.OpenJobTicketInput{JobID: r.in.JobID, WorkflowID: JobTicketWorkflowID(workflow.GetInfo(ctx).WorkflowExecution.ID)}).Get(ctx, &open); err != nil {
		r.refused = "no approval ticket: " + err.Error()
		return err
	}
	cctx, cancel := workflow.WithCancel(ctx)
	defer cancel()
	cctx = workflow.WithChildOptions(cctx, workflow.ChildWorkflowOptions{WorkflowID: open.WorkflowID, TaskQueue: TaskQueueOps,
		TypedSearchAttributes: temporal.NewSearchAttributes(SAKind.ValueSet(KindApproval))})
	in := open.Input
	child := workflow.ExecuteChildWorkflow(cctx, Approval, ApprovalInput{TicketID: in.TicketID, Requester: in.Requester, Policy: in.Policy, Approvers: in.Approvers})
	done := false
	var err error
	workflow.Go(ctx, func(gctx workflow.Context) {
		err = child.Get(gctx, nil)
		done = true
	})
	if aerr := workflow.Await(ctx, func() bool { return done || r.aborted }); aerr != nil {
		return aerr
	}
	if !done {
		cancel()
		_ = workflow.Await(ctx, func() bool { return done })
		r.refused = "aborted while waiting for approval"
		return errors.New(r.refused)
	}
	if err != nil {
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) {
			r.refused = appErr.Message()
		} else {
			r.refused = err.Error()
		}
	}
	return err
}

func (r *batchRun) finish(ctx, dbCtx workflow.Context) (BatchProgress, error) {
	var jobs *activities.Jobs
	p := r.progress()
	status, reason := schema.JobSucceeded, ""
	switch {
	case r.refused != "":
		status, reason = schema.JobRejected, r.refused
	case r.timedOut:
		status, reason = schema.JobAborted, "job timeout"
	case r.aborted:
		status, reason = schema.JobAborted, "aborted"
	case r.budget:
		status, reason = schema.JobFailed, "error budget spent"
	case r.st.Failed > 0:
		status = schema.JobFailed
	}
	summary := fmt.Sprintf("%d/%d succeeded, %d failed", r.st.Succeeded, r.in.Total, r.st.Failed)
	if reason != "" {
		summary += "; " + reason
	}
	dctx, cancel := workflow.NewDisconnectedContext(dbCtx)
	defer cancel()
	if r.statusWrite != nil {
		_ = r.statusWrite.Get(dctx, nil)
	}
	err := workflow.ExecuteActivity(dctx, jobs.RecordJobStatus, activities.RecordJobStatusInput{JobID: r.in.JobID, Status: status, Summary: summary,
		SkipPending: reason != "", SkipReason: reason}).Get(dctx, nil)
	if err != nil {
		return p, err
	}
	if status != schema.JobSucceeded {
		return p, temporal.NewNonRetryableApplicationError(summary, "JobNotSucceeded", nil)
	}
	return p, nil
}
