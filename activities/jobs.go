package activities

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opsflow/opsflow/internal/secret"
	"github.com/opsflow/opsflow/schema"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"golang.org/x/crypto/ssh"
)

// UnreachableAttempts is how many times a host that cannot be connected
// to is tried before it fails as unreachable.
const UnreachableAttempts = 3

// OutputCap is how much of a host's output is stored; the total size is
// recorded and the cut reported.
const OutputCap = 256 << 10

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
		if keys, err = a.Store.RecordedHostKeys(ctx, targets, plan.route.lastHop); err != nil {
			return nil, err
		}
	}
	if err := a.Store.StartJobHosts(ctx, in.JobID, starting); err != nil {
		return nil, err
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
		wg.Go(func() { out[i], errs[i] = a.runHost(ctx, in.JobID, idx, prep) })
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

// runHost runs the job's script on one host exactly once. Temporal runs
// activities at least once, so the host itself remembers: the first
// attempt takes the execution key's lock file atomically and runs the
// script immune to the connection dropping; a retried attempt (its worker
// killed mid-command) finds the lock, and waits for and collects the first
// run's result instead of starting another. See execWrapper.
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

	var out *outputSink
	fail := func(reason string) (RunHostScriptResult, error) {
		h.State, h.Error = schema.HostFailed, reason
		var held []string
		if out != nil {
			held = out.takeHeld()
		}
		if err := finish(ctx, h, held...); err != nil {
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
			known, err = a.knownHostKey(ctx, schema.HostTarget{Address: canon, CIID: h.CIID}, plan.route.lastHop)
		}
		if err != nil {
			return RunHostScriptResult{}, err
		}
		cfgCopy := *plan.route.cfg
		cfg = &cfgCopy
		cfg.HostKeyCallback = a.pinHostKey(ctx, canon, plan.route.lastHop, known, nil)
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
	wrapper := execWrapper(key, ver.Interpreter, ver.Content, env)

	stopBeat := heartbeat(ctx, 2*time.Second)
	defer stopBeat()
	// The host timeout runs from this attempt's start; the activity's own
	// timeout leaves room to record the outcome.
	execCtx, cancelExec := context.WithTimeout(ctx, timeout)
	defer cancelExec()
	var r runner = localRunner{}
	unreachable := false
	if !plan.local {
		var client *ssh.Client
		if client, err = plan.route.dial(execCtx, addr, cfg); err == nil {
			defer client.Close()
			r = sshRunner{client}
		} else {
			unreachable = true
		}
	}
	out = newOutputSink(func(data string) {
		if err := a.Store.AppendJobOutput(ctx, job.ID, h.Idx, data); err != nil {
			activity.GetLogger(ctx).Warn("live output not stored", "host", h.Address, "error", err)
		}
	}, secrets)
	var rc int
	var size int64 // of the output on the host
	truncated := false
	if err == nil {
		mb := make([]byte, 12)
		_, _ = rand.Read(mb)
		// While the script runs (past its first two seconds), its output
		// is read from the host every second on the same connection and
		// stored for live readers; what remains is read at the end.
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
				if more, err := readOutput(pollCtx, r, key, out.size()); err == nil && more != "" {
					out.write(more)
				}
				t.Reset(time.Second)
			}
		}()
		var last string
		rc, size, last, err = waitExec(execCtx, r, key, wrapper, "##opsflow-"+hex.EncodeToString(mb))
		stopPoll()
		<-polled
		// What is read from here on is stored with the host's outcome, in
		// its transaction: a quick script costs one write, not two.
		out.hold()
		switch {
		case err != nil:
		case out.size() == 0:
			// Nothing was read while it ran (most scripts are quick): the
			// answer carries the output, or its last OutputCap bytes.
			out.write(last)
		case out.size() < size:
			var rest string
			if rest, err = readOutput(execCtx, r, key, out.size()); err == nil {
				out.write(rest)
			}
		}
		out.finish()
		truncated = size > OutputCap
		if err != nil && execCtx.Err() != nil {
			a.kill(ctx, plan, addr, cfg, key)
			if ctx.Err() == nil {
				return fail(fmt.Sprintf("timed out after %s; killed", timeout))
			}
		}
	}
	if err != nil {
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) && appErr.Type() == ErrTypeHostKeyChanged {
			return fail(appErr.Error())
		}
		if ctx.Err() != nil {
			return RunHostScriptResult{}, ctx.Err()
		}
		// A host that cannot be reached on three attempts in a row is
		// failed as unreachable, as ssh tools report it, rather than
		// retried for minutes.
		if attempt := activity.GetInfo(ctx).Attempt; unreachable && attempt >= UnreachableAttempts {
			return fail(fmt.Sprintf("unreachable after %d attempts: %v", attempt, err))
		}
		// Unreachable or a dropped connection: Temporal retries, and the
		// retry reattaches to the same execution.
		return RunHostScriptResult{}, fmt.Errorf("run on %s: %w", h.Address, err)
	}
	h.ExitCode, h.Output, h.OutputBytes, h.Truncated = &rc, out.tail(), max(size, out.total), truncated || out.total > OutputCap
	h.State = schema.HostSucceeded
	if rc != 0 {
		h.State = schema.HostFailed
		h.Error = "exit status " + strconv.Itoa(rc)
	}
	if err := finish(ctx, h, out.takeHeld()...); err != nil {
		return RunHostScriptResult{}, err
	}
	activity.GetLogger(ctx).Info("host done", "job", job.ID, "host", h.Address, "exit", rc)
	return hostResult(h), nil
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
	// The execution is its own session (setsid); timeout(1) moves the
	// script into another process group of it, so kill the session.
	script := `B="${TMPDIR:-/var/tmp}/opsflow-${USER:-$(id -u)}"; P=$(cat "$B/` + key + `.lock" "$B/` + key + `.pid" 2>/dev/null | head -n 1) && [ -n "$P" ] && { pkill -KILL -s "$P" 2>/dev/null || kill -KILL -- "-$P" 2>/dev/null; }; echo killed`
	if plan.local {
		_, _ = localRunner{}.exec(kctx, script)
		return
	}
	_, _ = a.run(kctx, plan.route, addr, cfg, script)
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// execWrapper is the shell program (fed on stdin, so nothing of it shows in
// the host's process list) that runs the script at most once per key and
// reports its result. The first caller creates the key's lock file
// atomically (noclobber), writing its pid there (and, once it ends, the
// exit status on a second line), and runs the script in the foreground, immune to the connection dropping (HUP and PIPE
// ignored); any later caller — a retried activity whose worker died —
// finds the lock and waits for the first run's exit status. The script
// reaches its interpreter through a here-document on fd 3 and parameters
// (secrets included) are exported in a subshell only: neither touches a
// file. Few processes and files are made, since on small hosts they
// dominate the cost of a short command.
//
// The host timeout is the activity's: when it expires (or the job is
// aborted) the activity is cancelled and kills the execution's session.
func execWrapper(key, interpreter, script string, env map[string]string) string {
	var exports strings.Builder
	names := make([]string, 0, len(env))
	for k := range env {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Fprintf(&exports, "export %s=%s; ", k, shellQuote(env[k]))
	}
	// Now and then (one execution in 256), forget executions older than
	// two days: at most one sweep at a time on a host (a mkdir lock) and
	// one an hour (a stamp file), since on a host that ran large jobs the
	// directory holds hundreds of thousands of files.
	gc := ""
	if strings.HasPrefix(key, "00") {
		gc = `(mkdir "$B/.gc.lock" 2>/dev/null || exit 0; trap 'rmdir "$B/.gc.lock"' EXIT
[ -n "$(find "$B/.gc" -mmin -60 2>/dev/null)" ] && exit 0
: > "$B/.gc"; find "$B" -maxdepth 1 -type f -mtime +2 -delete) >/dev/null 2>&1 &` + "\n"
	}
	db := make([]byte, 12)
	_, _ = rand.Read(db)
	delim := "OPSFLOW_SCRIPT_" + hex.EncodeToString(db)
	if !strings.HasSuffix(script, "\n") {
		script += "\n"
	}
	return `umask 077
B="${TMPDIR:-/var/tmp}/opsflow-${USER:-$(id -u)}"
K="$B/` + key + `"
[ -d "$B" ] || mkdir -p "$B" || exit 97
set -C
if echo $$ 2>/dev/null > "$K.lock"; then
set +C
trap '' HUP PIPE
(` + exports.String() + `exec ` + interpreter + ` /dev/fd/3) 3<<'` + delim + `' < /dev/null > "$K.out" 2>&1
` + script + delim + `
echo $? >> "$K.lock"
else
set +C
# A newline each second: once the caller is gone (its worker died), the
# write fails and this waiter exits instead of lingering.
i=0
# (An execution begun by an older opsflow keeps its status in $K.rc.)
until { read p; read rc; } < "$K.lock" && [ -n "$rc" ] || { [ -s "$K.rc" ] && read rc < "$K.rc"; }; do i=$((i+1)); [ $((i % 5)) -eq 0 ] && echo; sleep 0.2; done
fi
[ -n "$rc" ] || { read p; read rc; } < "$K.lock"
printf '\n%s %s\n' "$M" "$rc"
tail -c ` + strconv.Itoa(OutputCap+1) + ` "$K.out"
` + gc
}

// waitExec runs the wrapper and returns the script's exit status, the
// size of its output on the host and the output's last OutputCap bytes,
// all after the line that starts with marker. The wrapper sends one byte
// more than it keeps: only when it is there does the size take another
// command (wc), so a short output costs no extra process.
func waitExec(ctx context.Context, r runner, key, script, marker string) (rc int, size int64, tail string, err error) {
	out, err := r.exec(ctx, "M="+shellQuote(marker)+"\n"+script)
	if err != nil {
		return 0, 0, "", err
	}
	i := strings.Index(out, marker+" ")
	if i < 0 {
		return 0, 0, "", errors.New("the host gave no exit status")
	}
	line, tail, _ := strings.Cut(out[i+len(marker)+1:], "\n")
	f := strings.Fields(line)
	if len(f) != 1 {
		return 0, 0, "", errors.New("the host gave no exit status")
	}
	rc, _ = strconv.Atoi(f[0])
	if len(tail) <= OutputCap {
		return rc, int64(len(tail)), tail, nil
	}
	tail = tail[len(tail)-OutputCap:]
	n, err := r.exec(ctx, `wc -c < "${TMPDIR:-/var/tmp}/opsflow-${USER:-$(id -u)}/`+key+`.out"`)
	if err != nil {
		return 0, 0, "", err
	}
	size, err = strconv.ParseInt(strings.TrimSpace(n), 10, 64)
	if err != nil {
		return 0, 0, "", fmt.Errorf("output size: %q", n)
	}
	return rc, size, tail, nil
}

// readOutput reads the execution's output from byte offset on.
func readOutput(ctx context.Context, r runner, key string, offset int64) (string, error) {
	return r.exec(ctx, `tail -c +`+strconv.FormatInt(offset+1, 10)+` "${TMPDIR:-/var/tmp}/opsflow-${USER:-$(id -u)}/`+key+`.out"`)
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

// CreateScheduledJobInput names the schedule that fired. Its definition
// is read from the database (schema.JobSchedule), never from here.
type CreateScheduledJobInput struct {
	// Definition is only set by schedules made before definitions moved
	// to the database; such a firing is refused.
	Definition schema.JobRequest
	CreatedBy  string
	// Schedule is the schedule's name.
	Schedule string
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
	wid := "job:" + info.WorkflowExecution.ID
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

// outputSink collects a host's output as it is read: it stores it for live
// readers (each read's complete lines, scrubbed of secret values line by
// line) up to OutputCap, and keeps the last OutputCap bytes for the host's
// record.
type outputSink struct {
	store   func(string)
	secrets []string

	mu      sync.Mutex
	read    int64  // bytes read from the host
	partial string // an incomplete last line, held until it completes
	holding bool   // store nothing now: keep pieces for takeHeld
	held    []string
	kept    []byte
	total   int64
	stored  int64
}

func newOutputSink(store func(string), secrets []string) *outputSink {
	return &outputSink{store: store, secrets: secrets}
}

func (o *outputSink) size() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.read
}

// write takes the next bytes of the output.
func (o *outputSink) write(data string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.read += int64(len(data))
	data = o.partial + data
	i := strings.LastIndexByte(data, '\n')
	o.partial = data[i+1:]
	o.add(data[:i+1])
}

// finish takes the incomplete last line, at the end of the output.
func (o *outputSink) finish() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.add(o.partial)
	o.partial = ""
}

func (o *outputSink) add(lines string) {
	if lines == "" {
		return
	}
	for _, s := range o.secrets {
		lines = strings.ReplaceAll(lines, s, "***")
	}
	o.total += int64(len(lines))
	o.kept = append(o.kept, lines...)
	if len(o.kept) > 2*OutputCap {
		o.kept = append(o.kept[:0], o.kept[len(o.kept)-OutputCap:]...)
	}
	if o.stored < OutputCap {
		if room := OutputCap - o.stored; int64(len(lines)) > room {
			lines = lines[:room]
		}
		o.stored += int64(len(lines))
		if o.holding {
			o.held = append(o.held, lines)
		} else {
			o.store(lines)
		}
	}
}

// hold keeps the pieces from now on for takeHeld instead of storing them.
func (o *outputSink) hold() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.holding = true
}

// takeHeld returns the pieces kept since hold, once.
func (o *outputSink) takeHeld() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	h := o.held
	o.held = nil
	return h
}

func (o *outputSink) tail() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.kept) > OutputCap {
		return string(o.kept[len(o.kept)-OutputCap:])
	}
	return string(o.kept)
}

// hostPlan is what every host of a job shares; it is read once per job
// and worker instead of once per host.
type hostPlan struct {
	job     *schema.Job
	ver     *schema.ScriptVersion
	params  map[string]string
	secrets []string
	route   *route // its login has no host key check; copy it before use
	local   bool   // the local transport: run on this worker
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
