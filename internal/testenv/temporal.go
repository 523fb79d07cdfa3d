package testenv

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
)

// TemporalNamespace is the namespace of the test Temporal server.
const TemporalNamespace = "default"

var temporalState struct {
	once sync.Once
	addr string
	err  error
}

// Temporal returns the host:port of a real Temporal server shared by the
// test package: the dev stack's server (deploy/devstack) in --temporal-only
// mode, in memory, with opsflow's search attributes registered. The binary
// is OPSFLOW_DEVSTACK_BIN, or built from the repository on first use.
func Temporal(tb testing.TB) string {
	tb.Helper()
	needsReal(tb, "a Temporal server")
	temporalState.once.Do(func() {
		temporalState.addr, temporalState.err = startTemporal()
	})
	if temporalState.err != nil {
		Unavailable(tb, "temporal server: %v", temporalState.err)
	}
	return temporalState.addr
}

// TemporalClient returns a client of the package's Temporal server, closed
// when the test ends.
func TemporalClient(tb testing.TB, opts client.Options) client.Client {
	tb.Helper()
	opts.HostPort = Temporal(tb)
	opts.Namespace = TemporalNamespace
	if opts.Logger == nil {
		opts.Logger = sdklog.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	}
	if opts.ConnectionOptions.GrpcCompression == nil {
		opts.ConnectionOptions.GrpcCompression = &client.GrpcCompressionNone{} // as internal/app does
	}
	c, err := client.Dial(opts)
	if err != nil {
		tb.Fatalf("testenv: dial temporal: %v", err)
	}
	tb.Cleanup(c.Close)
	return c
}

func startTemporal() (string, error) {
	bin, err := DevstackBinary()
	if err != nil {
		return "", err
	}
	port, err := FreePort()
	if err != nil {
		return "", err
	}
	cmd := exec.Command(bin, "--temporal-only")
	cmd.Env = append(os.Environ(), "OPSFLOW_EPHEMERAL=1", "OPSFLOW_TEMPORAL_PORT="+strconv.Itoa(port), "OPSFLOW_LOG_LEVEL=error")
	// The server dies with the test binary even when go test kills it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("start %s: %w", bin, err)
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) >= 3 && f[0] == "temporal" && f[1] == "ready" {
				ready <- f[2]
			}
		}
		close(ready)
	}()
	select {
	case addr, ok := <-ready:
		if !ok {
			_ = cmd.Wait()
			return "", fmt.Errorf("temporal server exited before ready: %s", stderr.String())
		}
		atExit(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
			}
		})
		return addr, nil
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		return "", fmt.Errorf("temporal server not ready after 2m: %s", stderr.String())
	}
}

// DevstackBinary returns the dev stack binary: OPSFLOW_DEVSTACK_BIN, or
// built from the repository (go build skips relinking when up to date).
func DevstackBinary() (string, error) {
	if p := os.Getenv("OPSFLOW_DEVSTACK_BIN"); p != "" {
		return p, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "opsflow")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "opsflow-devstack")
	// Test packages run in parallel processes: one builds, the rest wait.
	lock, err := os.OpenFile(filepath.Join(dir, "build.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock devstack build: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	cmd.Dir = filepath.Join(root, "deploy", "devstack")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build dev stack: %v\n%s", err, out)
	}
	return bin, nil
}

// repoRoot finds the repository from the test's working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "deploy", "devstack", "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no deploy/devstack/go.mod above the working directory")
		}
		dir = parent
	}
}

// FreePort returns a TCP port free on 127.0.0.1 at the time of the call.
func FreePort() (int, error) { return probeFreePort("127.0.0.1") }
