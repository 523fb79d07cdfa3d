package sshexec

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

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

// onRecords is the shell that runs cmd on the records of key (K).
func onRecords(key, cmd string) string { return stateDir(key) + "\n" + checkDir + "\n" + cmd }

// ExecWrapper is the shell program (wrapper.sh, fed on stdin, so nothing
// of it shows in the host's process list) that runs the script at most
// once per key and reports its result (see WaitExec). The first caller
// creates the key's lock file atomically (noclobber), writing its pid
// there (and, once it ends, the exit status on a second line), and runs
// the script in the foreground, immune to the connection dropping (HUP
// and PIPE ignored); any later caller — a retried activity whose worker
// died — finds the lock and waits for the first run's exit status. The
// script reaches its interpreter through a here-document on fd 3 and
// parameters (secrets included) are exported in a subshell only: neither
// touches a file. Few processes and files are made, since on small hosts
// they dominate the cost of a short command.
//
// It sends the output's last tailBytes(extra) bytes: extra more than it
// keeps, so that a secret cut by the tail's start is still seen whole by
// the masker (maskTail).
//
// The host timeout is the activity's: when it expires (or the job is
// aborted) the activity is cancelled and kills the execution's session
// (Kill).
func ExecWrapper(key, interpreter, script string, env map[string]string, extra int) string {
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

// RefusedError is the wrapper's refusal to run the script at all (an
// unsafe state directory): no retry will run it either.
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string { return "not run: " + e.Reason }

// WaitExec runs wrapper (ExecWrapper of key) with r and returns the
// script's exit status, the size of its output on the host and the
// output's end (all of it, or OutputCap+extra bytes, cut reports which),
// all after the line that starts with marker. Only a cut output takes
// another command (wc) for its size, so a short output costs no extra
// process. A refusal is a *RefusedError.
func WaitExec(ctx context.Context, r Runner, key, wrapper, marker string, extra int) (rc int, size int64, tail string, cut bool, err error) {
	out, err := r.Exec(ctx, "M="+shellQuote(marker)+"\n"+wrapper)
	if err != nil {
		return 0, 0, "", false, err
	}
	i := strings.Index(out, marker+" ")
	if i < 0 {
		return 0, 0, "", false, errors.New("the host gave no exit status")
	}
	line, tail, _ := strings.Cut(out[i+len(marker)+1:], "\n")
	if reason, ok := strings.CutPrefix(line, "refused "); ok {
		return 0, 0, "", false, &RefusedError{Reason: reason}
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
	n, err := r.Exec(ctx, onRecords(key, `wc -c < "$K.out"`))
	if err != nil {
		return 0, 0, "", false, err
	}
	size, err = strconv.ParseInt(strings.TrimSpace(n), 10, 64)
	if err != nil {
		return 0, 0, "", false, fmt.Errorf("output size: %q", n)
	}
	return rc, size, tail, true, nil
}

// ReadOutput reads the execution's output from byte offset on.
func ReadOutput(ctx context.Context, r Runner, key string, offset int64) (string, error) {
	return r.Exec(ctx, onRecords(key, "tail -c +"+strconv.FormatInt(offset+1, 10)+` "$K.out"`))
}

// ScrubOutput removes the execution's output from the host once it is
// recorded, for a job with secret parameters: a script that echoed one
// leaves it nowhere but masked in the database. The lock (pid and exit
// status) stays for the retention, so the execution still runs only once.
func ScrubOutput(ctx context.Context, r Runner, key string) error {
	_, err := r.Exec(ctx, onRecords(key, `rm -f "$K.out"`))
	return err
}

// Kill ends the execution of key (its activity was cancelled: the job
// aborted or the host timed out).
func Kill(ctx context.Context, r Runner, key string) error {
	// The execution is its own session (setsid); timeout(1) moves the
	// script into another process group of it, so kill the session.
	_, err := r.Exec(ctx, onRecords(key, `P=$(cat "$K.lock" "$K.pid" 2>/dev/null | head -n 1) && [ -n "$P" ] && { pkill -KILL -s "$P" 2>/dev/null || kill -KILL -- "-$P" 2>/dev/null; }; echo killed`))
	return err
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
