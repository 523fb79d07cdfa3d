package sshexec

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// envRunner runs programs with sh on this machine in a given environment:
// the wrapper's own tests, without SSH.
type envRunner struct{ env []string }

func (r envRunner) Exec(ctx context.Context, script string) (string, error) {
	cmd := exec.CommandContext(ctx, "/bin/sh", "-s")
	cmd.Stdin = strings.NewReader(script)
	cmd.Env = r.env
	out, err := cmd.Output()
	return string(out), err
}

// login is a user's environment: its state directory is under home.
func login(home string, extra ...string) envRunner {
	return envRunner{env: append([]string{"PATH=/usr/bin:/bin:/usr/sbin:/sbin", "USER=opsflow-test", "HOME=" + home}, extra...)}
}

func runWrapper(t *testing.T, r Runner, key, script string, env map[string]string) (int, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rc, _, out, _, err := WaitExec(ctx, r, key, ExecWrapper(key, "sh", script, env, 0), "##opsflow-test", 0)
	return rc, out, err
}

// TestWrapperRunsOnceWhateverTMPDIR: a second call with the same key —
// a retried activity, here from a login with another TMPDIR — reports
// the first run's status and output instead of running the script again.
func TestWrapperRunsOnceWhateverTMPDIR(t *testing.T) {
	home, marks := t.TempDir(), filepath.Join(t.TempDir(), "marks")
	script := `echo ran >> "$MARKS"; printf 'out\n'; exit 3`
	env := map[string]string{"MARKS": marks}
	for i, tmp := range []string{t.TempDir(), t.TempDir(), ""} {
		rc, out, err := runWrapper(t, login(home, "TMPDIR="+tmp), "k1", script, env)
		if err != nil || rc != 3 || out != "out\n" {
			t.Fatalf("call %d: rc=%d out=%q err=%v", i, rc, out, err)
		}
	}
	if b, _ := os.ReadFile(marks); string(b) != "ran\n" {
		t.Fatalf("ran %q", b)
	}
	st, err := os.Stat(filepath.Join(home, ".opsflow", "exec"))
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("state dir: %v %v", st.Mode(), err)
	}
}

// TestWrapperRefusesUnsafeStateDir: a state directory someone may have
// prepared — a symlink, or one others can write to — is refused and the
// script does not run.
func TestWrapperRefusesUnsafeStateDir(t *testing.T) {
	for _, c := range []struct {
		name    string
		prepare func(dir string) error
	}{
		{"symlink", func(dir string) error {
			return os.Symlink(t.TempDir(), dir)
		}},
		{"open to others", func(dir string) error {
			if err := os.Mkdir(dir, 0o700); err != nil {
				return err
			}
			return os.Chmod(dir, 0o777)
		}},
		{"a file", func(dir string) error { return os.WriteFile(dir, nil, 0o600) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			home, marks := t.TempDir(), filepath.Join(t.TempDir(), "marks")
			if err := os.Mkdir(filepath.Join(home, ".opsflow"), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := c.prepare(filepath.Join(home, ".opsflow", "exec")); err != nil {
				t.Fatal(err)
			}
			_, _, err := runWrapper(t, login(home), "k1", `echo ran > "$MARKS"`, map[string]string{"MARKS": marks})
			var refused *RefusedError
			if !errors.As(err, &refused) || !strings.Contains(refused.Reason, "state directory") {
				t.Fatalf("want a refusal, got %v", err)
			}
			if _, err := os.Stat(marks); err == nil {
				t.Fatal("the script ran")
			}
		})
	}
}

// TestWrapperSweepKeepsUnfinished: the sweep forgets executions that ended
// over two days ago, never one still running however old: a retry of it
// must find it and wait instead of running the script again.
func TestWrapperSweepKeepsUnfinished(t *testing.T) {
	home := t.TempDir()
	r := login(home)
	dir := filepath.Join(home, ".opsflow", "exec")
	old := time.Now().Add(-72 * time.Hour)
	// A real execution still running (its script waits for a file), made
	// old by its lock's time, and an old finished one.
	release := filepath.Join(t.TempDir(), "release")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := make(chan error, 1)
	go func() {
		_, err := r.Exec(ctx, "M=##m\n"+ExecWrapper("k-running", "sh", `until [ -e "`+release+`" ]; do sleep 0.1; done; echo once`, nil, 0))
		first <- err
	}()
	waitFile(t, filepath.Join(dir, "k-running.lock"))
	for _, f := range []struct{ name, body string }{{"k-done.lock", "1\n0\n"}, {"k-done.out", "x"}} {
		if err := os.WriteFile(filepath.Join(dir, f.name), []byte(f.body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"k-running.lock", "k-done.lock", "k-done.out"} {
		if err := os.Chtimes(filepath.Join(dir, f), old, old); err != nil {
			t.Fatal(err)
		}
	}
	// A key starting with 00 sweeps.
	if rc, _, err := runWrapper(t, r, "00sweep", "true", nil); err != nil || rc != 0 {
		t.Fatalf("sweeper: %d %v", rc, err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for exists(filepath.Join(dir, "k-done.lock")) || exists(filepath.Join(dir, ".gc.lock")) {
		if time.Now().After(deadline) {
			t.Fatal("the finished execution was not swept")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if exists(filepath.Join(dir, "k-done.out")) || !exists(filepath.Join(dir, "k-running.lock")) {
		t.Fatal("the sweep removed the wrong records")
	}
	// The retry reattaches and gets the one run's output.
	second := make(chan string, 1)
	go func() {
		_, out, _ := runWrapper(t, r, "k-running", `echo again`, nil)
		second <- out
	}()
	if err := os.WriteFile(release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if out := <-second; out != "once\n" {
		t.Fatalf("retry got %q", out)
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
}

func exists(p string) bool { _, err := os.Lstat(p); return err == nil }

func waitFile(t *testing.T, p string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !exists(p) {
		if time.Now().After(deadline) {
			t.Fatalf("%s never appeared", p)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWrapperCutOutputMasksSecretAtTheCut: a secret that straddles the
// start of the kept tail is masked, not shown from its middle on; so is
// one in an output just over the cap, which the masker sees whole.
func TestWrapperCutOutputMasksSecretAtTheCut(t *testing.T) {
	secret := "s3cr3t-VALUE-1234"
	for _, before := range []int{0, 100} {
		// The kept tail starts 5 bytes into the secret.
		script := `head -c ` + strconv.Itoa(before) + ` /dev/zero | tr '\0' a; printf '%s' "$SEC"; head -c ` + strconv.Itoa(OutputCap-len(secret)+5) + ` /dev/zero | tr '\0' y`
		key := "kmask" + strconv.Itoa(before)
		r := login(t.TempDir())
		rc, size, last, cut, err := WaitExec(context.Background(), r, key, ExecWrapper(key, "sh", script, map[string]string{"SEC": secret}, len(secret)), "##m", len(secret))
		if err != nil || rc != 0 || size != int64(before+OutputCap+5) || cut != (before > 0) {
			t.Fatalf("rc=%d size=%d cut=%v err=%v", rc, size, cut, err)
		}
		got := EndOutput(NewOutputSink(func(string) {}, []string{secret}), last, cut, []string{secret})
		if strings.Contains(got, secret[5:]) || strings.Contains(got, "1234") || !strings.HasPrefix(got, "***yyy") {
			t.Fatalf("before=%d: tail starts %q", before, got[:min(40, len(got))])
		}
	}
}
