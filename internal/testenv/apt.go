package testenv

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// aptLockPath serializes apt-get across the test binaries that go test runs
// in parallel, so they queue instead of failing on dpkg's lock.
const aptLockPath = "/tmp/opsflow-testenv-apt.lock"

var aptState struct {
	mu      sync.Mutex
	results map[string]error // Debian package -> outcome of its install
}

// EnsureCommand returns the absolute path of command. When the command is
// missing and the tests run as root, it installs the Debian package debPackage
// with apt-get first; otherwise the test fails naming the package to install.
func EnsureCommand(tb testing.TB, command, debPackage string) string {
	tb.Helper()
	path, err := ensureCommand(tb, command, debPackage)
	if err != nil {
		Unavailable(tb, "%v", err)
	}
	return path
}

// ensureCommand is EnsureCommand for starters that run under sync.Once and so
// must not stop the calling goroutine.
func ensureCommand(tb testing.TB, command, debPackage string) (string, error) {
	tb.Helper()
	if path, ok := lookCommand(command); ok {
		return path, nil
	}
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("command %s not found: install the Debian package %s (apt-get install -y %s)", command, debPackage, debPackage)
	}
	if err := aptInstall(tb, debPackage, func() bool { _, ok := lookCommand(command); return ok }); err != nil {
		return "", fmt.Errorf("command %s not found: %w", command, err)
	}
	path, ok := lookCommand(command)
	if !ok {
		return "", fmt.Errorf("command %s not found after installing the Debian package %s", command, debPackage)
	}
	return path, nil
}

// lookCommand finds command in PATH and in the directories Debian keeps out of
// a non-login PATH: sbin and PostgreSQL's versioned bin directories.
func lookCommand(command string) (string, bool) {
	if path, err := exec.LookPath(command); err == nil {
		if abs, err := filepath.Abs(path); err == nil {
			return abs, true
		}
	}
	if strings.ContainsRune(command, '/') {
		return "", false
	}
	dirs := []string{"/usr/local/sbin", "/usr/sbin", "/sbin"}
	dirs = append(dirs, postgresBinDirs()...)
	for _, dir := range dirs {
		path := filepath.Join(dir, command)
		if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return path, true
		}
	}
	return "", false
}

// postgresBinDirs lists /usr/lib/postgresql/<version>/bin, newest version
// first, so that initdb and pg_ctl come from the same, newest server.
func postgresBinDirs() []string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(dir string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(dir)), 64)
		return v
	}
	slices.SortFunc(dirs, func(a, b string) int {
		return cmp.Or(cmp.Compare(version(b), version(a)), strings.Compare(a, b))
	})
	return dirs
}

// aptInstall installs pkg at most once per process. present reports whether
// the package's command appeared meanwhile, e.g. installed by another test
// binary while this one waited for the lock.
func aptInstall(tb testing.TB, pkg string, present func() bool) error {
	tb.Helper()
	aptState.mu.Lock()
	defer aptState.mu.Unlock()
	if err, done := aptState.results[pkg]; done {
		return err
	}
	err := aptInstallLocked(tb, pkg, present)
	if aptState.results == nil {
		aptState.results = make(map[string]error)
	}
	aptState.results[pkg] = err
	return err
}

func aptInstallLocked(tb testing.TB, pkg string, present func() bool) error {
	tb.Helper()
	lock, err := os.OpenFile(aptLockPath, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return fmt.Errorf("apt: open lock: %w", err)
	}
	defer lock.Close() // releases the flock
	for {
		err = syscall.Flock(int(lock.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("apt: lock %s: %w", aptLockPath, err)
	}
	if present() {
		return nil
	}

	tb.Logf("testenv: installing Debian package %s with apt-get", pkg)
	start := time.Now()
	out, err := aptGet("install", "-y", pkg)
	if err != nil && staleIndex(out) {
		tb.Logf("testenv: apt-get install %s failed on stale package lists; running apt-get update", pkg)
		if out, err := aptGet("update"); err != nil {
			return fmt.Errorf("apt: apt-get update: %w\n%s", err, out)
		}
		out, err = aptGet("install", "-y", pkg)
	}
	if err != nil {
		return fmt.Errorf("apt: apt-get install %s: %w\n%s", pkg, err, out)
	}
	tb.Logf("testenv: installed %s in %v", pkg, time.Since(start).Round(time.Millisecond))
	return nil
}

// staleIndex reports whether apt-get failed because its package lists are
// missing or out of date, which apt-get update fixes.
func staleIndex(out []byte) bool {
	for _, s := range []string{"Unable to locate package", "has no installation candidate", "404  Not Found", "Failed to fetch"} {
		if strings.Contains(string(out), s) {
			return true
		}
	}
	return false
}

func aptGet(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	// The lock timeout makes apt-get wait for an apt run outside the tests
	// instead of failing at once on dpkg's lock.
	args = append([]string{"-q", "-o", "DPkg::Lock::Timeout=600"}, args...)
	cmd := exec.CommandContext(ctx, "apt-get", args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	return cmd.CombinedOutput()
}
