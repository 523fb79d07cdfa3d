package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
)

var opsflowState struct {
	once sync.Once
	path string
	err  error
}

// OpsflowBinary builds cmd/opsflow once per test process and returns its
// path, for tests that run workers as real processes (to kill them).
func OpsflowBinary(tb testing.TB) string {
	tb.Helper()
	opsflowState.once.Do(func() {
		dir, err := os.MkdirTemp("", "opsflow-bin-")
		if err != nil {
			opsflowState.err = err
			return
		}
		atExit(func() { os.RemoveAll(dir) })
		opsflowState.path = filepath.Join(dir, "opsflow")
		if out, err := exec.Command("go", "build", "-o", opsflowState.path, "github.com/opsflow/opsflow/cmd/opsflow").CombinedOutput(); err != nil {
			opsflowState.err = fmt.Errorf("build opsflow: %v\n%s", err, out)
		}
	})
	if opsflowState.err != nil {
		tb.Fatal(opsflowState.err)
	}
	return opsflowState.path
}

// StartWorker runs `opsflow worker` on every task queue with env added to
// the test's environment, logging to logFile; it dies with the test.
func StartWorker(tb testing.TB, logFile string, env ...string) *exec.Cmd {
	tb.Helper()
	cmd := exec.Command(OpsflowBinary(tb), "worker", "--queues", "ops,ops-ssh")
	cmd.Env = append(os.Environ(), env...)
	f, err := os.OpenFile(logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); f.Close() })
	return cmd
}
