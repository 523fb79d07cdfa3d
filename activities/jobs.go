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
	mrand "math/rand/v2"
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

// UnreachableAttempts is how many connection attempts in a row (TCP or
// SSH handshake, with a growing pause between them) a host may fail before
// it fails as unreachable.
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
		if keys, err = a.Store.RecordedHostKeys(ctx, targets, plan.route.lastHop); err != nil {
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
	extra := 0
	for _, sec := range secrets {
		extra = max(extra, len(sec))
	}
	wrapper := execWrapper(key, ver.Interpreter, ver.Content, env, extra)

	stopBeat := heartbeat(ctx, 2*time.Second)
	defer stopBeat()
	// The host timeout runs from this attempt's start; the activity's own
	// timeout leaves room to record the outcome.
	execCtx, cancelExec := context.WithTimeout(ctx, timeout)
	defer cancelExec()
	var r runner = localRunner{}
	if !plan.local {
		client, fails, derr := dialHost(execCtx, plan.route, addr, cfg)
		if derr != nil {
			var appErr *temporal.ApplicationError
			switch {
			case errors.As(derr, &appErr) && appErr.Type() == ErrTypeHostKeyChanged:
				return fail(appErr.Error())
			case fails >= UnreachableAttempts:
				return fail(fmt.Sprintf("unreachable after %d attempts: %v", fails, derr))
			case ctx.Err() != nil:
				return RunHostScriptResult{}, ctx.Err()
			}
			return RunHostScriptResult{}, fmt.Errorf("run on %s: %w", h.Address, derr)
		}
		defer client.Close()
		r = sshRunner{client}
	}
	out = newOutputSink(func(data string) {
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
			if more, err := readOutput(pollCtx, r, key, out.size()); err == nil && more != "" {
				out.write(more)
			}
			t.Reset(time.Second)
		}
	}()
	rc, size, last, cut, err := waitExec(execCtx, r, key, wrapper, "##opsflow-"+hex.EncodeToString(mb), extra)
	stopPoll()
	<-polled
	// What is read from here on is stored with the host's outcome, in its
	// transaction: a quick script costs one write, not two.
	out.hold()
	switch {
	case err != nil:
	case out.size() == 0:
		// Nothing was read while it ran (most scripts are quick): the
		// answer carries the output, or its end.
		endOutput(out, last, cut, secrets)
	case out.size() < size:
		var rest string
		if rest, err = readOutput(execCtx, r, key, out.size()); err == nil {
			out.write(rest)
		}
	}
	out.finish()
	if err != nil {
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) && appErr.NonRetryable() {
			return fail(appErr.Message())
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
	h.ExitCode, h.Output, h.OutputBytes, h.Truncated = &rc, schema.Bytes(out.tail()), max(size, out.total), size > OutputCap || out.total > OutputCap
	h.State = schema.HostSucceeded
	if rc != 0 {
		h.State = schema.HostFailed
		h.Error = "exit status " + strconv.Itoa(rc)
	}
	if err := a.record(ctx, finish, h, out.takeHeld()); err != nil {
		return RunHostScriptResult{}, err
	}
	if len(secrets) > 0 {
		if err := scrubOutput(ctx, r, key); err != nil {
			activity.GetLogger(ctx).Warn("output left on the host until its records expire", "host", h.Address, "error", err)
		}
	}
	activity.GetLogger(ctx).Info("host done", "job", job.ID, "host", h.Address, "exit", rc)
	return hostResult(h), nil
}

// dialHost connects to a host, trying again with a growing pause after a
// failed connection or handshake: only UnreachableAttempts failures in a
// row make it unreachable (fails says how many there were). Retries of
// the activity (a worker died, a heartbeat was late on a busy machine)
// count for nothing here: only the host's own refusals do.
func dialHost(ctx context.Context, rt *route, addr string, cfg *ssh.ClientConfig) (*ssh.Client, int, error) {
	pause := time.Second
	for fails := 1; ; fails++ {
		client, err := rt.dial(ctx, addr, cfg)
		if err == nil {
			return client, 0, nil
		}
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) || ctx.Err() != nil || fails >= UnreachableAttempts {
			return nil, fails, err
		}
		t := time.NewTimer(pause + time.Duration(mrand.Int64N(int64(pause/2))))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fails, err
		case <-t.C:
		}
		pause *= 2
	}
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
	// The execution is its own session (setsid); timeout(1) moves the
	// script into another process group of it, so kill the session.
	script := stateDir(key) + "\n" + checkDir + "\n" + `P=$(cat "$K.lock" "$K.pid" 2>/dev/null | head -n 1) && [ -n "$P" ] && { pkill -KILL -s "$P" 2>/dev/null || kill -KILL -- "-$P" 2>/dev/null; }; echo killed`
	if plan.local {
		_, _ = localRunner{}.exec(kctx, script)
		return
	}
	_, _ = a.run(kctx, plan.route, addr, cfg, script)
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

//go:embed wrapper.sh
var wrapperSh string

// stateDir is the shell that sets B, the directory of a host's execution
// records, and K, the record of execution key: per user and fixed, never
// under TMPDIR (which differs between logins, and on the worker for the
// local transport), so every attempt finds the records of the first.
// An execution begun by an older opsflow (its records under TMPDIR) is
// still found there.
func stateDir(key string) string {
	return `if [ "${USER:-$(id -un)}" = root ]; then B=/var/lib/opsflow/exec; else B="${HOME:-/nonexistent}/.opsflow/exec"; fi
O="${TMPDIR:-/var/tmp}/opsflow-${USER:-$(id -u)}"; [ -f "$O/` + key + `.lock" ] && [ -O "$O" ] && [ ! -L "$O" ] && B=$O
K="$B/` + key + `"`
}

// safeDir refuses a state directory someone else could have prepared: a
// symlink, one not owned by the login user or open to others. Only a
// directory it creates itself (mode 0700) or such one is used.
const safeDir = `[ -e "$B" ] || [ -L "$B" ] || mkdir -p -m 0700 "$B" 2>/dev/null
case $([ -L "$B" ] || [ ! -O "$B" ] || ls -ldn "$B" 2>/dev/null) in drwx------*) ;; *)
printf '\n%s refused %s\n' "$M" "state directory $B is a symlink, not owned by ${USER:-$(id -un)} or not mode 0700"; exit 0 ;;
esac`

// checkDir is safeDir for the commands that only read the records.
const checkDir = `{ [ ! -L "$B" ] && [ -O "$B" ]; } || exit 97`

// execWrapper is the shell program (wrapper.sh, fed on stdin, so nothing
// of it shows in the host's process list) that runs the script at most
// once per key and reports its result. The first caller creates the key's
// lock file atomically (noclobber), writing its pid there (and, once it
// ends, the exit status on a second line), and runs the script in the
// foreground, immune to the connection dropping (HUP and PIPE ignored);
// any later caller — a retried activity whose worker died — finds the lock
// and waits for the first run's exit status. The script reaches its
// interpreter through a here-document on fd 3 and parameters (secrets
// included) are exported in a subshell only: neither touches a file. Few
// processes and files are made, since on small hosts they dominate the
// cost of a short command.
//
// It sends the output's last tailBytes(extra) bytes: extra more than it
// keeps, so that a secret cut by the tail's start is still seen whole by
// the masker (maskTail).
//
// The host timeout is the activity's: when it expires (or the job is
// aborted) the activity is cancelled and kills the execution's session.
func execWrapper(key, interpreter, script string, env map[string]string, extra int) string {
	var exports strings.Builder
	names := make([]string, 0, len(env))
	for k := range env {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Fprintf(&exports, "export %s=%s; ", k, shellQuote(env[k]))
	}
	// Now and then (one execution in 256), forget executions that ended
	// over two days ago — never one still running (no exit status yet on
	// its lock's second line), however old: its retry must find it. At
	// most one sweep at a time on a host (a mkdir lock, forgotten after a
	// day if its sweeper died) and one an hour (a stamp file), since on a
	// host that ran large jobs the directory holds hundreds of thousands
	// of files.
	gc := ""
	if strings.HasPrefix(key, "00") {
		gc = sweepSh
	}
	db := make([]byte, 12)
	_, _ = rand.Read(db)
	delim := "OPSFLOW_SCRIPT_" + hex.EncodeToString(db)
	if !strings.HasSuffix(script, "\n") {
		script += "\n"
	}
	// One pass: a placeholder inside a filled-in value stays as it is.
	return strings.NewReplacer(
		"@STATEDIR@", stateDir(key),
		"@SAFEDIR@", safeDir,
		"@KEY@", key,
		"@EXPORTS@", exports.String(),
		"@INTERPRETER@", interpreter,
		"@DELIM@", delim,
		"@SCRIPT@", script,
		"@TAIL@", strconv.Itoa(tailBytes(extra)),
		"@SWEEP@", gc,
	).Replace(wrapperSh)
}

const sweepSh = `(mkdir "$B/.gc.lock" 2>/dev/null || { find "$B/.gc.lock" -maxdepth 0 -mmin +1440 -exec rmdir {} \; ; exit 0; }
trap 'rmdir "$B/.gc.lock"' EXIT
[ -n "$(find "$B/.gc" -mmin -60 2>/dev/null)" ] && exit 0
: > "$B/.gc"
find "$B" -maxdepth 1 -type f -name '*.lock' -mtime +2 | while IFS= read -r f; do
p= rc=; { read p; read rc; } < "$f"; [ -n "$rc" ] && rm -f "$f" "${f%.lock}.out" "${f%.lock}.rc" "${f%.lock}.pid"
done) >/dev/null 2>&1 &`

// tailBytes is how much of the output's end the wrapper sends: the kept
// OutputCap, extra bytes of context for the masker, and one byte that
// tells a cut output from a whole one.
func tailBytes(extra int) int { return OutputCap + extra + 1 }

// waitExec runs the wrapper and returns the script's exit status, the
// size of its output on the host and the output's end (all of it, or
// OutputCap+extra bytes, cut reports which), all after the line that
// starts with marker. Only a cut output takes another command (wc) for
// its size, so a short output costs no extra process.
func waitExec(ctx context.Context, r runner, key, script, marker string, extra int) (rc int, size int64, tail string, cut bool, err error) {
	out, err := r.exec(ctx, "M="+shellQuote(marker)+"\n"+script)
	if err != nil {
		return 0, 0, "", false, err
	}
	i := strings.Index(out, marker+" ")
	if i < 0 {
		return 0, 0, "", false, errors.New("the host gave no exit status")
	}
	line, tail, _ := strings.Cut(out[i+len(marker)+1:], "\n")
	if reason, ok := strings.CutPrefix(line, "refused "); ok {
		return 0, 0, "", false, temporal.NewNonRetryableApplicationError("not run: "+reason, ErrTypeInvalidInput, nil)
	}
	f := strings.Fields(line)
	if len(f) != 1 {
		return 0, 0, "", false, errors.New("the host gave no exit status")
	}
	rc, _ = strconv.Atoi(f[0])
	if len(tail) < tailBytes(extra) {
		return rc, int64(len(tail)), tail, false, nil
	}
	tail = tail[1:]
	n, err := r.exec(ctx, stateDir(key)+"\n"+checkDir+"\nwc -c < \"$K.out\"")
	if err != nil {
		return 0, 0, "", false, err
	}
	size, err = strconv.ParseInt(strings.TrimSpace(n), 10, 64)
	if err != nil {
		return 0, 0, "", false, fmt.Errorf("output size: %q", n)
	}
	return rc, size, tail, true, nil
}

// readOutput reads the execution's output from byte offset on.
func readOutput(ctx context.Context, r runner, key string, offset int64) (string, error) {
	return r.exec(ctx, stateDir(key)+"\n"+checkDir+"\ntail -c +"+strconv.FormatInt(offset+1, 10)+` "$K.out"`)
}

// scrubOutput removes the execution's output from the host once it is
// recorded, for a job with secret parameters: a script that echoed one
// leaves it nowhere but masked in the database. The lock (pid and exit
// status) stays for the retention, so the execution still runs only once.
func scrubOutput(ctx context.Context, r runner, key string) error {
	_, err := r.exec(ctx, stateDir(key)+"\n"+checkDir+"\n"+`rm -f "$K.out"`)
	return err
}

// endOutput gives out the output's end as the wrapper sent it, masked
// before it is cut, and returns what the host's record keeps.
func endOutput(out *outputSink, last string, cut bool, secrets []string) string {
	if cut {
		last = maskTail(last, secrets, OutputCap)
	}
	out.write(last)
	out.finish()
	return out.tail()
}

// maskTail masks secrets in the end of an output that was cut, then keeps
// its last keep bytes: buf holds enough bytes before those (the longest
// secret's length) that a secret crossing the cut is masked whole, and
// the part of it before the cut shows as *** at the start.
func maskTail(buf string, secrets []string, keep int) string {
	from := max(0, len(buf)-keep)
	covered := make([]bool, len(buf))
	for _, s := range secrets {
		for i := 0; ; {
			j := strings.Index(buf[i:], s)
			if j < 0 {
				break
			}
			for k := i + j; k < i+j+len(s); k++ {
				covered[k] = true
			}
			i += j + 1
		}
	}
	var b strings.Builder
	for i := from; i < len(buf); i++ {
		if !covered[i] {
			b.WriteByte(buf[i])
			continue
		}
		if i == from || !covered[i-1] {
			b.WriteString("***")
		}
	}
	return b.String()
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
