// Package testenv starts the real components opsflow talks to — a Temporal
// server, Postgres, OpenSSH targets, headless Chromium — once per test
// package, and stops them when the package's tests end.
//
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
// then call the starters (Temporal, PostgresURL, SSHD, Browser) from tests;
// each starts its component on first use and shares it within the package.
package testenv

import (
	"fmt"
	"os"
	"sync"
	"testing"
)

var (
	exitMu    sync.Mutex
	exitFuncs []func()
)

// Main runs the package's tests, then stops every component they started.
//
// Temporary files go to a directory of the package's own (TMPDIR), removed
// at the end: among them the execution records that scripts run by the
// local transport leave, which would otherwise pile up in /var/tmp.
func Main(m *testing.M) {
	if dir, err := os.MkdirTemp("", "opsflow-test-"); err == nil {
		// Others (the postgres user of a throwaway cluster) pass through.
		_ = os.Chmod(dir, 0o755)
		os.Setenv("TMPDIR", dir)
		atExit(func() { os.RemoveAll(dir) })
	}
	code := m.Run()
	runExitFuncs()
	os.Exit(code)
}

// atExit registers f to run when the test package ends, in reverse order.
func atExit(f func()) {
	exitMu.Lock()
	defer exitMu.Unlock()
	exitFuncs = append(exitFuncs, f)
}

func runExitFuncs() {
	exitMu.Lock()
	fs := exitFuncs
	exitFuncs = nil
	exitMu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

// CI reports whether the tests run under CI (CI=true), where a missing
// component fails the run instead of skipping.
func CI() bool { return os.Getenv("CI") == "true" }

// Short reports whether the fast layer runs (go test -short): pure tests,
// testsuite workflow tests, replays and SQLite only.
func Short() bool { return testing.Short() }

// needsReal skips the test in the fast layer: what it asks for is a real
// component (a server, a browser, sshd) that takes seconds to start. CI runs
// without -short, so nothing is skipped there.
func needsReal(tb testing.TB, what string) {
	tb.Helper()
	if testing.Short() {
		tb.Skipf("testenv: needs %s; skipped by -short (CI runs it)", what)
	}
}

// Unavailable fails the test because a component could not be provided. It
// never skips: a test that silently skips proves nothing.
func Unavailable(tb testing.TB, format string, args ...any) {
	tb.Helper()
	tb.Fatalf("testenv: %s", fmt.Sprintf(format, args...))
}
