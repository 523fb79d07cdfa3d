package activities

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/opsflow/opsflow/activities/sshexec"
	"github.com/opsflow/opsflow/internal/secret"
	"github.com/opsflow/opsflow/schema"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"golang.org/x/crypto/ssh"
)

// RunHostScriptInput names one host of a job. Everything else — script,
// parameters (some secret), credential — is read from the database, so it
// never passes through workflow history.
type RunHostScriptInput struct {
	JobID int64
	Idx   int
}

// RunHostScriptResult is the host's outcome.
type RunHostScriptResult struct {
	State    string
	ExitCode int
}

// RunHostScript runs the job's script on one host exactly once (see
// runHost). BatchJob runs groups of hosts (RunHostScripts) since version
// 1 of its host-groups change; histories from before still call this.
func (a *SSH) RunHostScript(ctx context.Context, in RunHostScriptInput) (RunHostScriptResult, error) {
	return a.runHost(ctx, in.JobID, in.Idx, nil)
}

// RunHostScriptsInput names a group of hosts of a job, run side by side
// in one activity: fewer Temporal round trips per host on large jobs.
type RunHostScriptsInput struct {
	JobID int64
	Idxs  []int
	// ReportTo and ReportSignal, when set, name the workflow to tell of
	// each host that ends while others of the group still run (a signal
	// carrying []HostDone), so it can give the host's slot to another
	// at once instead of when the group's slowest host ends.
	ReportTo     string
	ReportSignal string
}

// HostDone is one host's outcome, reported before its group ends.
type HostDone struct {
	Idx    int
	Result RunHostScriptResult
}

// RunHostScripts runs the job's script on each host of the group, side by
// side, each exactly once, and returns their outcomes in order. If any
// host needs a retry (unreachable so far, a dropped connection), the
// activity fails and Temporal retries it: hosts already done return their
// recorded outcome, hosts still running are reattached, not rerun.
func (a *SSH) RunHostScripts(ctx context.Context, in RunHostScriptsInput) ([]RunHostScriptResult, error) {
	out := make([]RunHostScriptResult, len(in.Idxs))
	errs := make([]error, len(in.Idxs))
	// What every host needs first, read (and marked) once for the group.
	hosts, err := a.Store.JobHostsAt(ctx, in.JobID, in.Idxs)
	if err != nil {
		return nil, err
	}
	var starting []int
	var targets []schema.HostTarget
	for _, idx := range in.Idxs {
		if h := hosts[idx]; h != nil && !h.Done() {
			starting = append(starting, idx)
			targets = append(targets, schema.HostTarget{Address: schema.MustCanonicalAddress(h.Address), CIID: h.CIID})
		}
	}
	// The local transport dials nothing: no keys to read. Without them
	// (nil), each host reads its own.
	var keys map[string]string
	if plan, err := a.jobPlan(ctx, in.JobID); err == nil && !plan.local {
		if keys, err = a.Store.RecordedHostKeys(ctx, targets, plan.route.LastHop()); err != nil {
			return nil, err
		}
	}
	if err := a.Store.StartJobHosts(ctx, in.JobID, starting); err != nil {
		return nil, err
	}
	var rep *hostReporter
	if in.ReportTo != "" && len(in.Idxs) > 1 {
		rep = a.newHostReporter(ctx, in, len(in.Idxs))
		defer rep.stop()
	}
	var wg sync.WaitGroup
	for i, idx := range in.Idxs {
		h := hosts[idx]
		if h == nil {
			errs[i] = fmt.Errorf("job %d has no host %d", in.JobID, idx)
			continue
		}
		prep := &hostPrep{h: h}
		if keys != nil {
			key := keys[schema.MustCanonicalAddress(h.Address)]
			prep.hostKey = &key
		}
		wg.Go(func() {
			out[i], errs[i] = a.runHost(ctx, in.JobID, idx, prep)
			if rep != nil && errs[i] == nil {
				rep.done(HostDone{Idx: idx, Result: out[i]})
			}
		})
	}
	wg.Wait()
	// Each host was recorded as it ended without waiting for the disk;
	// one flush makes them all durable before Temporal hears of them.
	if err := a.Store.SyncCommits(ctx); err != nil {
		return nil, err
	}
	for i, err := range errs {
		if err != nil {
			var appErr *temporal.ApplicationError
			if errors.As(err, &appErr) && appErr.NonRetryable() {
				return nil, err
			}
			return nil, fmt.Errorf("host %d of the group: %w", in.Idxs[i], err)
		}
	}
	return out, nil
}

// reportDelay is how long a group gathers ended hosts before it reports
// them: hosts of a group mostly end together, and then the group's own
// result reports them, with no message at all.
const reportDelay = 200 * time.Millisecond

// hostReporter tells the job's workflow of the hosts of a group that end
// while others still run (see RunHostScriptsInput.ReportTo).
type hostReporter struct {
	a     *SSH
	ctx   context.Context
	in    RunHostScriptsInput
	wake  chan struct{}
	quit  chan struct{}
	ended chan struct{}

	mu      sync.Mutex
	pending []HostDone
	left    int // hosts of the group still running
}

func (a *SSH) newHostReporter(ctx context.Context, in RunHostScriptsInput, n int) *hostReporter {
	r := &hostReporter{a: a, ctx: ctx, in: in, left: n, wake: make(chan struct{}, 1), quit: make(chan struct{}), ended: make(chan struct{})}
	go r.loop()
	return r
}

func (r *hostReporter) done(h HostDone) {
	r.mu.Lock()
	r.pending = append(r.pending, h)
	r.left--
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *hostReporter) stop() {
	close(r.quit)
	<-r.ended
}

func (r *hostReporter) loop() {
	defer close(r.ended)
	for {
		select {
		case <-r.quit:
			return
		case <-r.wake:
		}
		select {
		case <-r.quit:
			return
		case <-time.After(reportDelay):
		}
		r.mu.Lock()
		batch, left := r.pending, r.left
		r.pending = nil
		r.mu.Unlock()
		if left == 0 || len(batch) == 0 {
			return // the group's result reports them
		}
		// What the workflow counts is on disk first.
		if err := r.a.Store.SyncCommits(r.ctx); err != nil {
			continue
		}
		if err := activity.GetClient(r.ctx).SignalWorkflow(r.ctx, r.in.ReportTo, "", r.in.ReportSignal, batch); err != nil {
			activity.GetLogger(r.ctx).Warn("hosts not reported before their group ends", "error", err)
		}
	}
}

// runHost runs the job's script on one host exactly once. Temporal runs
// activities at least once, so the host itself remembers: the first
// attempt takes the execution key's lock file atomically and runs the
// script immune to the connection dropping; a retried attempt (its worker
// killed mid-command) finds the lock, and waits for and collects the first
// run's result instead of starting another. See sshexec.ExecWrapper.
//
// A host of a group comes prepared (prep: its row, read and marked started
// with the others, and its recorded host key); it records its outcome
// without waiting for the disk, and the group flushes (RunHostScripts).
func (a *SSH) runHost(ctx context.Context, jobID int64, idx int, prep *hostPrep) (RunHostScriptResult, error) {
	finish := a.Store.FinishJobHost
	if prep != nil {
		finish = a.Store.FinishJobHostAsync
	}
	in := RunHostScriptInput{JobID: jobID, Idx: idx}
	var h *schema.JobHost
	if prep != nil {
		h = prep.h
	} else {
		var err error
		if h, err = a.Store.JobHost(ctx, in.JobID, in.Idx); err != nil {
			return RunHostScriptResult{}, err
		}
	}
	if h.Done() {
		return hostResult(h), nil
	}
	plan, err := a.jobPlan(ctx, in.JobID)
	if err != nil {
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) && appErr.NonRetryable() {
			h.State, h.Error = schema.HostFailed, appErr.Message() // e.g. the credential cannot be opened
			if ferr := finish(ctx, h); ferr != nil {
				return RunHostScriptResult{}, ferr
			}
			return hostResult(h), nil
		}
		return RunHostScriptResult{}, err
	}
	job, ver, params, secrets := plan.job, plan.ver, plan.params, plan.secrets
	if prep == nil {
		if err := a.Store.StartJobHost(ctx, in.JobID, in.Idx); err != nil {
			return RunHostScriptResult{}, err
		}
	}

	var out *sshexec.OutputSink
	fail := func(reason string) (RunHostScriptResult, error) {
		h.State, h.Error = schema.HostFailed, reason
		var held []string
		if out != nil {
			held = out.TakeHeld()
		}
		if err := a.record(ctx, finish, h, held); err != nil {
			return RunHostScriptResult{}, err
		}
		return hostResult(h), nil
	}
	var cfg *ssh.ClientConfig
	// The host is pinned and dialled at its canonical address, whatever
	// spelling a job planned before addresses were canonical used.
	addr := hostAddr(h.Address)
	if !plan.local {
		canon, cerr := schema.CanonicalAddress(h.Address)
		if cerr != nil {
			return fail(fmt.Sprintf("address %q: %v", h.Address, cerr))
		}
		addr = canon
		var known ssh.PublicKey
		var err error
		if prep != nil && prep.hostKey != nil {
			known, err = parseHostKey(canon, *prep.hostKey)
		} else {
			known, err = a.knownHostKey(ctx, schema.HostTarget{Address: canon, CIID: h.CIID}, plan.route.LastHop())
		}
		if err != nil {
			return RunHostScriptResult{}, err
		}
		cfg = plan.route.Login(a.pinHostKey(ctx, canon, plan.route.LastHop(), known, nil))
	}
	timeout := 30 * time.Minute
	if d, err := time.ParseDuration(job.Policy.HostTimeout); err == nil && d > 0 {
		timeout = d
	}
	env := map[string]string{"OPSFLOW_JOB": strconv.FormatInt(job.ID, 10), "OPSFLOW_HOST": h.Address, "OPSFLOW_HOST_INDEX": strconv.Itoa(h.Idx)}
	for k, v := range params {
		env[k] = v
	}
	// The key names this execution everywhere and forever: a job's
	// workflow ID is unique, job IDs are not across databases.
	sum := sha256.Sum256([]byte(job.WorkflowID))
	key := fmt.Sprintf("%s-h%d", hex.EncodeToString(sum[:10]), h.Idx)
	extra := 0
	for _, sec := range secrets {
		extra = max(extra, len(sec))
	}
	wrapper := sshexec.ExecWrapper(key, ver.Interpreter, ver.Content, env, extra)

	stopBeat := heartbeat(ctx, 2*time.Second)
	defer stopBeat()
	// The host timeout runs from this attempt's start; the activity's own
	// timeout leaves room to record the outcome.
	execCtx, cancelExec := context.WithTimeout(ctx, timeout)
	defer cancelExec()
	var r sshexec.Runner = sshexec.Local{}
	if !plan.local {
		client, fails, derr := plan.route.DialHost(execCtx, addr, cfg)
		if derr != nil {
			var appErr *temporal.ApplicationError
			switch {
			case errors.As(derr, &appErr) && appErr.Type() == ErrTypeHostKeyChanged:
				return fail(appErr.Error())
			case fails >= sshexec.UnreachableAttempts:
				return fail(fmt.Sprintf("unreachable after %d attempts: %v", fails, derr))
			case ctx.Err() != nil:
				return RunHostScriptResult{}, ctx.Err()
			}
			return RunHostScriptResult{}, fmt.Errorf("run on %s: %w", h.Address, derr)
		}
		defer client.Close()
		r = sshexec.Remote{Client: client}
	}
	out = sshexec.NewOutputSink(func(data string) {
		if err := a.Store.AppendJobOutput(ctx, job.ID, h.Idx, data); err != nil {
			activity.GetLogger(ctx).Warn("live output not stored", "host", h.Address, "error", err)
		}
	}, secrets)
	mb := make([]byte, 12)
	_, _ = rand.Read(mb)
	// While the script runs (past its first two seconds), its output is
	// read from the host every second on the same connection and stored
	// for live readers; what remains is read at the end.
	pollCtx, stopPoll := context.WithCancel(execCtx)
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		// Most scripts end sooner: reading them would only cost a
		// session on every host of a busy job.
		t := time.NewTimer(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-pollCtx.Done():
				return
			case <-t.C:
			}
			if more, err := sshexec.ReadOutput(pollCtx, r, key, out.Size()); err == nil && more != "" {
				out.Write(more)
			}
			t.Reset(time.Second)
		}
	}()
	rc, size, last, cut, err := sshexec.WaitExec(execCtx, r, key, wrapper, "##opsflow-"+hex.EncodeToString(mb), extra)
	stopPoll()
	<-polled
	// What is read from here on is stored with the host's outcome, in its
	// transaction: a quick script costs one write, not two.
	out.Hold()
	switch {
	case err != nil:
	case out.Size() == 0:
		// Nothing was read while it ran (most scripts are quick): the
		// answer carries the output, or its end.
		sshexec.EndOutput(out, last, cut, secrets)
	case out.Size() < size:
		var rest string
		if rest, err = sshexec.ReadOutput(execCtx, r, key, out.Size()); err == nil {
			out.Write(rest)
		}
	}
	out.Finish()
	if err != nil {
		var refused *sshexec.RefusedError
		if errors.As(err, &refused) {
			return fail(refused.Error())
		}
		// Kill only what opsflow meant to end: the host's own timeout, or a
		// cancellation the workflow asked for (abort). An activity that
		// lost its heartbeat (a slow or dying worker) is no longer ours to
		// end: its retry reattaches to the same execution, which must live.
		var requested *temporal.CanceledError
		if execCtx.Err() != nil && (ctx.Err() == nil || errors.As(context.Cause(ctx), &requested)) {
			a.kill(ctx, plan, addr, cfg, key)
			if ctx.Err() == nil {
				return fail(fmt.Sprintf("timed out after %s; killed", timeout))
			}
		}
		if ctx.Err() != nil {
			return RunHostScriptResult{}, ctx.Err()
		}
		// A dropped connection: Temporal retries, and the retry reattaches
		// to the same execution.
		return RunHostScriptResult{}, fmt.Errorf("run on %s: %w", h.Address, err)
	}
	h.ExitCode, h.Output, h.OutputBytes, h.Truncated = &rc, schema.Bytes(out.Tail()), max(size, out.Total()), size > sshexec.OutputCap || out.Total() > sshexec.OutputCap
	h.State = schema.HostSucceeded
	if rc != 0 {
		h.State = schema.HostFailed
		h.Error = "exit status " + strconv.Itoa(rc)
	}
	if err := a.record(ctx, finish, h, out.TakeHeld()); err != nil {
		return RunHostScriptResult{}, err
	}
	if len(secrets) > 0 {
		if err := sshexec.ScrubOutput(ctx, r, key); err != nil {
			activity.GetLogger(ctx).Warn("output left on the host until its records expire", "host", h.Address, "error", err)
		}
	}
	activity.GetLogger(ctx).Info("host done", "job", job.ID, "host", h.Address, "exit", rc)
	return hostResult(h), nil
}

// recordTries bounds how often a host's outcome is written before it is
// recorded failed without its output: a row the database refuses must
// not leave the host running forever.
const recordTries = 3

// record writes a host's outcome. When the database keeps refusing it,
// the host is recorded failed with the reason and without its output;
// only when that fails too (the database is down) does the activity fail
// and Temporal retry it.
func (a *SSH) record(ctx context.Context, finish func(context.Context, *schema.JobHost, ...string) error, h *schema.JobHost, held []string) error {
	var err error
	for try := range recordTries {
		if try > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(try) * 200 * time.Millisecond):
			}
		}
		if err = finish(ctx, h, held...); err == nil {
			return nil
		}
	}
	activity.GetLogger(ctx).Warn("host outcome not stored; recording it failed without output", "host", h.Address, "error", err)
	h.State, h.Error, h.Output = schema.HostFailed, fmt.Sprintf("%s; its output could not be stored: %v", hostSummary(h), err), ""
	return finish(ctx, h)
}

func hostSummary(h *schema.JobHost) string {
	if h.ExitCode == nil {
		return "ended"
	}
	return "exit status " + strconv.Itoa(*h.ExitCode)
}

// hostPrep is what a group reads once for all its hosts.
type hostPrep struct {
	h       *schema.JobHost
	hostKey *string // recorded (see schema.Store.RecordedHostKeys); "" for none
}

func hostResult(h *schema.JobHost) RunHostScriptResult {
	r := RunHostScriptResult{State: h.State, ExitCode: -1}
	if h.ExitCode != nil {
		r.ExitCode = *h.ExitCode
	}
	return r
}

func hostAddr(a string) string {
	if _, _, err := net.SplitHostPort(a); err == nil {
		return a
	}
	return net.JoinHostPort(a, "22")
}

// heartbeat records activity heartbeats until stopped, so a worker's death
// is noticed within the heartbeat timeout instead of the host timeout.
func heartbeat(ctx context.Context, every time.Duration) func() {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				activity.RecordHeartbeat(ctx)
			}
		}
	}()
	return cancel
}

// kill ends an execution whose activity was cancelled (job aborted or
// timed out): on a fresh connection, or on the worker for the local
// transport.
func (a *SSH) kill(ctx context.Context, plan *hostPlan, addr string, cfg *ssh.ClientConfig, key string) {
	kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	var r sshexec.Runner = sshexec.Local{}
	if !plan.local {
		r = plan.route.Runner(addr, cfg)
	}
	_ = sshexec.Kill(kctx, r, key)
}

// Jobs keeps the jobs read model for the BatchJob workflow.
type Jobs struct {
	Store   *schema.Store
	Secrets *secret.Keyring
}

// RecordJobStatusInput moves a job to a status.
type RecordJobStatusInput struct {
	JobID       int64
	Status      string
	Summary     string
	SkipPending bool // mark hosts never started as skipped
	SkipReason  string
}

// RecordJobStatus writes a job's status (and skips its pending hosts).
func (a *Jobs) RecordJobStatus(ctx context.Context, in RecordJobStatusInput) (struct{}, error) {
	if in.SkipPending {
		if err := a.Store.SkipPendingHosts(ctx, in.JobID, in.SkipReason); err != nil {
			return struct{}{}, err
		}
	}
	return struct{}{}, a.Store.SetJobStatus(ctx, in.JobID, in.Status, in.Summary)
}

// FailJobHostsInput names hosts whose activity gave up.
type FailJobHostsInput struct {
	JobID  int64
	Idxs   []int
	Reason string
}

// FailJobHosts records hosts failed whose activity failed for good (its
// retries spent, e.g. while the database refused their outcome), so none
// stays running in the read model; a host already recorded keeps its
// outcome.
func (a *Jobs) FailJobHosts(ctx context.Context, in FailJobHostsInput) (struct{}, error) {
	return struct{}{}, a.Store.FailJobHosts(ctx, in.JobID, in.Idxs, in.Reason)
}

// CreateScheduledJobInput names the schedule that fired. Its definition
// is read from the database (schema.JobSchedule), never from here.
type CreateScheduledJobInput struct {
	// Definition is only set by schedules made before definitions moved
	// to the database; such a firing is refused.
	Definition schema.JobRequest
	CreatedBy  string
	// Schedule is the schedule's name.
	Schedule string
	// JobWorkflowID is the created job's BatchJob
	// (workflows.ScheduledJobWorkflowID of the firing).
	JobWorkflowID string
}

// CreateScheduledJobResult names the job created for this firing.
type CreateScheduledJobResult struct {
	JobID      int64
	WorkflowID string
	Total      int
	Policy     schema.JobPolicy
}

// CreateScheduledJob creates the job of a schedule's firing (CreateJob)
// from the schedule's definition, as its creator is now: a creator since
// disabled or demoted cannot run what they may no longer run. Invalid at
// this moment (a script version since blocked, no host matches) or
// refused is a non-retryable failure of this firing.
func (a *Jobs) CreateScheduledJob(ctx context.Context, in CreateScheduledJobInput) (CreateScheduledJobResult, error) {
	info := activity.GetInfo(ctx)
	// One job per firing, also when this activity is retried.
	wid := in.JobWorkflowID
	if wid == "" { // scheduled by a workflow from before the field
		wid = "job:" + info.WorkflowExecution.ID
	}
	fail := func(typ, msg string) (CreateScheduledJobResult, error) {
		return CreateScheduledJobResult{}, temporal.NewNonRetryableApplicationError(msg, typ, nil)
	}
	if in.Schedule == "" {
		return fail(ErrTypeInvalidInput, "this schedule was made before job schedules kept their definition in the database: delete it and create it again")
	}
	// The workflow starts the job's run as its child; recording it here
	// is repeatable, so it follows the job's creation (also on a retry
	// that finds the job created).
	record := func(j *schema.Job) (CreateScheduledJobResult, error) {
		target := j.Targets.Selector
		if target == "" {
			target = fmt.Sprintf("%d hosts", j.Total)
		}
		if err := a.Store.RecordRunStart(ctx, &schema.Run{WorkflowID: wid, Kind: "job", StartedBy: j.CreatedBy, Target: target}); err != nil {
			return CreateScheduledJobResult{}, err
		}
		return CreateScheduledJobResult{JobID: j.ID, WorkflowID: wid, Total: j.Total, Policy: j.Policy}, nil
	}
	if j, err := a.Store.JobByWorkflowID(ctx, wid); err == nil {
		return record(j)
	}
	js, err := a.Store.JobScheduleByName(ctx, in.Schedule)
	if errors.Is(err, schema.ErrNotFound) {
		return fail(ErrTypeInvalidInput, "schedule "+in.Schedule+" has no definition (deleted)")
	} else if err != nil {
		return CreateScheduledJobResult{}, err
	}
	req, err := js.Request(a.Secrets)
	if err != nil {
		return fail(ErrTypeInvalidInput, err.Error())
	}
	by, err := a.Store.UserByUsername(ctx, js.CreatedBy)
	if errors.Is(err, schema.ErrNotFound) {
		return fail(ErrTypeForbidden, "the schedule's creator "+js.CreatedBy+" no longer exists")
	} else if err != nil {
		return CreateScheduledJobResult{}, err
	}
	job, _, err := CreateJob(ctx, a.Store, a.Secrets, JobOrder{Request: req, WorkflowID: wid, By: by},
		func(context.Context, *schema.Job, string) error { return nil })
	var ve *schema.ValidationError
	switch {
	case errors.As(err, &ve):
		return fail(ErrTypeInvalidInput, ve.Error())
	case errors.Is(err, ErrLocalTransportAdminOnly), errors.Is(err, ErrMayNotCreateJobs):
		return fail(ErrTypeForbidden, "the schedule's creator "+by.Username+" ("+by.Role+"): "+err.Error())
	case err != nil:
		return CreateScheduledJobResult{}, err
	}
	return record(job)
}

// hostPlan is what every host of a job shares; it is read once per job
// and worker instead of once per host.
type hostPlan struct {
	job     *schema.Job
	ver     *schema.ScriptVersion
	params  map[string]string
	secrets []string
	route   *sshexec.Route
	local   bool // the local transport: run on this worker
	at      time.Time
}

const planTTL = 10 * time.Minute

func (a *SSH) jobPlan(ctx context.Context, jobID int64) (*hostPlan, error) {
	a.mu.Lock()
	p, ok := a.plans[jobID]
	a.mu.Unlock()
	if ok && time.Since(p.at) < planTTL {
		return p, nil
	}
	job, err := a.Store.Job(ctx, jobID)
	if err != nil {
		return nil, err
	}
	ver, err := a.Store.ScriptVersion(ctx, job.ScriptID, job.ScriptVersion)
	if err != nil {
		return nil, err
	}
	p = &hostPlan{job: job, ver: ver, params: map[string]string{}, at: time.Now()}
	if job.Params != "" {
		raw, err := a.Secrets.Open(job.Params, job.ParamsContext())
		if err != nil {
			return nil, temporal.NewNonRetryableApplicationError("job parameters: "+err.Error(), ErrTypeInvalidInput, nil)
		}
		if err := json.Unmarshal(raw, &p.params); err != nil {
			return nil, err
		}
	}
	for _, d := range ver.Parameters {
		if d.Type == schema.ParamSecret && len(p.params[d.Name]) >= 3 {
			p.secrets = append(p.secrets, p.params[d.Name])
		}
	}
	if job.Targets.Transport == schema.TransportLocal {
		if !a.LocalTransport {
			return nil, temporal.NewNonRetryableApplicationError("the local transport is off on this worker (it runs scripts as the worker's own user): "+
				"enable it with OPSFLOW_LOCAL_TRANSPORT=1 on a dedicated worker", ErrTypeLocalTransportOff, nil)
		}
		p.local = true
	} else if p.route, err = a.routeFor(ctx, job.CredentialID); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.plans == nil || len(a.plans) > 256 {
		a.plans = map[int64]*hostPlan{}
	}
	a.plans[jobID] = p
	return p, nil
}
