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
	"strconv"
	"strings"
	"time"

	"github.com/opsflow/opsflow/schema"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"golang.org/x/crypto/ssh"
)

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

// RunHostScript runs the job's script on one host exactly once. Temporal
// runs activities at least once, so the host itself remembers: the script
// is started detached under an execution key (job, host) whose directory is
// created atomically with mkdir; a retried activity (its worker killed
// mid-command) finds the directory, and waits for and collects the first
// execution's result instead of starting another.
func (a *SSH) RunHostScript(ctx context.Context, in RunHostScriptInput) (RunHostScriptResult, error) {
	h, err := a.Store.JobHost(ctx, in.JobID, in.Idx)
	if err != nil {
		return RunHostScriptResult{}, err
	}
	if h.Done() {
		return hostResult(h), nil
	}
	job, err := a.Store.Job(ctx, in.JobID)
	if err != nil {
		return RunHostScriptResult{}, err
	}
	ver, err := a.Store.ScriptVersion(ctx, job.ScriptID, job.ScriptVersion)
	if err != nil {
		return RunHostScriptResult{}, err
	}
	params := map[string]string{}
	if job.Params != "" {
		raw, err := a.Secrets.Open(job.Params, job.ParamsContext())
		if err != nil {
			return RunHostScriptResult{}, temporal.NewNonRetryableApplicationError("job parameters: "+err.Error(), ErrTypeInvalidInput, nil)
		}
		if err := json.Unmarshal(raw, &params); err != nil {
			return RunHostScriptResult{}, err
		}
	}
	var secrets []string
	for _, p := range ver.Parameters {
		if p.Type == schema.ParamSecret && len(params[p.Name]) >= 3 {
			secrets = append(secrets, params[p.Name])
		}
	}
	if err := a.Store.StartJobHost(ctx, in.JobID, in.Idx); err != nil {
		return RunHostScriptResult{}, err
	}

	fail := func(reason string) (RunHostScriptResult, error) {
		h.State, h.Error = schema.HostFailed, reason
		if err := a.Store.FinishJobHost(ctx, h); err != nil {
			return RunHostScriptResult{}, err
		}
		return hostResult(h), nil
	}
	known, err := a.knownHostKey(ctx, h.Address)
	if err != nil {
		return RunHostScriptResult{}, err
	}
	cfg, err := a.clientConfig(ctx, job.CredentialID)
	if err != nil {
		return RunHostScriptResult{}, err
	}
	cfg.HostKeyCallback = func(_ string, _ net.Addr, key ssh.PublicKey) error {
		if known != nil && string(known.Marshal()) != string(key.Marshal()) {
			return temporal.NewNonRetryableApplicationError(fmt.Sprintf("host key changed: recorded %s, presented %s; not trusted",
				ssh.FingerprintSHA256(known), ssh.FingerprintSHA256(key)), ErrTypeHostKeyChanged, nil)
		}
		return nil
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
	wrapper := execWrapper(key, ver.Interpreter, ver.Content, env, int(timeout.Seconds())+1)

	stopBeat := heartbeat(ctx, 2*time.Second)
	defer stopBeat()
	addr := hostAddr(h.Address)
	client, err := a.dial(ctx, addr, cfg)
	var out string
	if err == nil {
		defer client.Close()
		out, err = a.exec(ctx, client, wrapper)
		if err != nil && ctx.Err() != nil {
			a.kill(ctx, addr, cfg, key)
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
		// Unreachable or a dropped connection: Temporal retries, and the
		// retry reattaches to the same execution.
		return RunHostScriptResult{}, fmt.Errorf("run on %s: %w", h.Address, err)
	}
	rc, total, output, ok := parseExecOutput(out)
	if !ok {
		return RunHostScriptResult{}, fmt.Errorf("run on %s: unreadable result", h.Address)
	}
	for _, s := range secrets {
		output = strings.ReplaceAll(output, s, "***")
	}
	h.ExitCode, h.Output, h.OutputBytes, h.Truncated = &rc, output, total, total > int64(len(output))
	h.State = schema.HostSucceeded
	if rc != 0 {
		h.State = schema.HostFailed
		h.Error = "exit status " + strconv.Itoa(rc)
	}
	if err := a.Store.FinishJobHost(ctx, h); err != nil {
		return RunHostScriptResult{}, err
	}
	// Recorded: a retry now answers from the database, so the host may
	// forget the execution (and old ones left behind by crashed runs).
	if _, err := a.exec(ctx, client, `B="${TMPDIR:-/var/tmp}/opsflow-$(id -u)"; rm -rf "$B/`+key+`"; find "$B" -mindepth 1 -maxdepth 1 -mtime +7 -exec rm -rf {} + 2>/dev/null; true`); err != nil {
		activity.GetLogger(ctx).Warn("execution cleanup failed", "host", h.Address, "error", err)
	}
	activity.GetLogger(ctx).Info("host done", "job", job.ID, "host", h.Address, "exit", rc)
	return hostResult(h), nil
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
// timed out), on a fresh connection.
func (a *SSH) kill(ctx context.Context, addr string, cfg *ssh.ClientConfig, key string) {
	kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	// The execution is its own session (setsid); timeout(1) moves the
	// script into another process group of it, so kill the session.
	_, _ = a.run(kctx, addr, cfg, `B="${TMPDIR:-/var/tmp}/opsflow-$(id -u)"; P=$(cat "$B/`+key+`/pid" 2>/dev/null) && { pkill -KILL -s "$P" 2>/dev/null || kill -KILL -- "-$P" 2>/dev/null; }; echo killed`)
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// execWrapper is the shell program that starts the script once per key and
// waits for its result. The script and its environment (secrets included)
// are written with umask 077 and the environment file is removed as soon
// as the script has read it.
func execWrapper(key, interpreter, script string, env map[string]string, timeoutSecs int) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	delim := "OPSFLOW_" + hex.EncodeToString(b)
	var envFile strings.Builder
	for k, v := range env {
		fmt.Fprintf(&envFile, "export %s=%s\n", k, shellQuote(v))
	}
	return `umask 077
B="${TMPDIR:-/var/tmp}/opsflow-$(id -u)"
D="$B/` + key + `"
mkdir -p "$B" || exit 97
if mkdir "$D" 2>/dev/null; then
cat > "$D/script" <<'` + delim + `'
` + script + `
` + delim + `
cat > "$D/env" <<'` + delim + `'
` + envFile.String() + delim + `
setsid sh -c 'cd; . "$1/env"; rm -f "$1/env"; echo $$ > "$1/pid"; timeout -s KILL ` + strconv.Itoa(timeoutSecs) + ` ` + interpreter + ` "$1/script" > "$1/out" 2>&1; echo $? > "$1/rc.tmp"; mv "$1/rc.tmp" "$1/rc"' opsflow "$D" < /dev/null > /dev/null 2>&1 &
fi
# A newline each second: once the caller is gone (its worker died), the
# write fails and this waiter exits instead of lingering; the execution
# itself carries on for the retry to collect.
i=0
while [ ! -f "$D/rc" ]; do i=$((i+1)); [ $((i % 5)) -eq 0 ] && echo; sleep 0.2; done
echo "##rc $(cat "$D/rc")"
echo "##bytes $(wc -c < "$D/out")"
echo "##out"
tail -c ` + strconv.Itoa(OutputCap) + ` "$D/out"
`
}

func parseExecOutput(out string) (rc int, total int64, output string, ok bool) {
	head, body, found := strings.Cut(out, "##out\n")
	if !found {
		return 0, 0, "", false
	}
	for _, l := range strings.Split(head, "\n") {
		if v, ok := strings.CutPrefix(l, "##rc "); ok {
			rc, _ = strconv.Atoi(strings.TrimSpace(v))
		}
		if v, ok := strings.CutPrefix(l, "##bytes "); ok {
			total, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return rc, total, body, true
}

// Jobs keeps the jobs read model for the BatchJob workflow.
type Jobs struct {
	Store *schema.Store
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
