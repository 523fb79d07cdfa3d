package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opsflow/opsflow/api"
	"github.com/opsflow/opsflow/internal/app"
	"github.com/opsflow/opsflow/internal/secret"
	"github.com/opsflow/opsflow/internal/testenv"
	"github.com/opsflow/opsflow/schema"
	"go.temporal.io/sdk/client"
)

// TestMainProcess is not a test: run as a child process by opsflowExit,
// it is the opsflow command with the arguments in OPSFLOW_TEST_MAIN_ARGS,
// so tests see its exit code.
func TestMainProcess(t *testing.T) {
	args := os.Getenv("OPSFLOW_TEST_MAIN_ARGS")
	if args == "" {
		return
	}
	os.Args = append([]string{"opsflow"}, strings.Split(args, "\n")...)
	main()
	os.Exit(0)
}

// opsflowExit runs `opsflow args…` in a child process with env added.
func opsflowExit(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestMainProcess$")
	cmd.Env = append(append(os.Environ(), "OPSFLOW_TEST_MAIN_ARGS="+strings.Join(args, "\n")), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

const badRunbook = `apiVersion: opsflow/v1
kind: Runbook
metadata: {name: %s}
steps:
  - {id: a, kind: fail, with: {message: m}}
  - {id: a, kind: fail, with: {message: m}}
  - id: b
    kind: kubernetes.drain
`

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRunbookValidateCommand(t *testing.T) {
	shipped, _ := filepath.Glob("../../deploy/runbooks/*.yaml")
	if len(shipped) == 0 {
		t.Fatal("no shipped runbooks")
	}
	out, stderr, code := opsflowExit(t, nil, append([]string{"runbook", "validate"}, shipped...)...)
	if code != 0 || strings.Count(out, ": ok\n") != len(shipped) {
		t.Fatalf("shipped runbooks: exit %d\n%s%s", code, out, stderr)
	}

	bad := writeFile(t, "bad.yaml", fmt.Sprintf(badRunbook, "bad"))
	broken := writeFile(t, "broken.yaml", "apiVersion: opsflow/v1\nkind: Runbook\nmetadata: {name: x}\nsteps:\n  - id: a\n    kind: wait\n    with: {duration: 1s\n")
	out, stderr, code = opsflowExit(t, nil, "runbook", "validate", shipped[0], bad, broken, bad+".missing")
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s%s", code, out, stderr)
	}
	want := []string{
		shipped[0] + ": ok",
		bad + `:6:10: steps[1].id: duplicate step id "a" (first at line 5)`,
		bad + `:8:11: steps[2].kind: unknown step kind "kubernetes.drain" (known: approval, `,
		broken + ":7:5: invalid YAML: did not find expected ',' or '}'",
		"open " + bad + ".missing: no such file or directory",
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), out)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d:\n got %s\nwant %s…", i+1, lines[i], w)
		}
	}
	if !strings.Contains(stderr, "3 of 4 files invalid") {
		t.Errorf("stderr: %s", stderr)
	}
	if _, _, code := opsflowExit(t, nil, "runbook", "validate"); code != 1 {
		t.Errorf("no file: exit %d", code)
	}
}

// startAPI serves the API as `opsflow api` does, over the package's
// Postgres database, and returns its URL and store. Storing runbooks
// never calls Temporal, so its lazy client points nowhere.
func startAPI(t *testing.T) (string, *schema.Store) {
	t.Helper()
	t.Setenv("OPSFLOW_SECRET_KEY", secret.NewKey())
	cfg := app.ConfigFromEnv()
	cfg.DatabaseURL, cfg.DataDir = testenv.PostgresURL(t), t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.Open(ctx, cfg, log, &client.Options{HostPort: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.RunAPI(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done; a.Close() })
	base := "http://" + ln.Addr().String()
	testenv.Eventually(t, 30*time.Second, "the API serving", func() bool {
		res, err := http.Get(base + "/api/openapi.json")
		if err == nil {
			res.Body.Close()
		}
		return err == nil && res.StatusCode == 200
	})
	return base, a.Store
}

func apiToken(t *testing.T, st *schema.Store, role string) string {
	t.Helper()
	ctx := context.Background()
	u := &schema.User{Username: fmt.Sprintf("cli-%s-%d", role, time.Now().UnixNano()), Role: role, PasswordHash: "!"}
	if err := st.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	tok, hash := api.NewToken()
	if err := st.CreateToken(ctx, &schema.APIToken{UserID: u.ID, Name: "cli", Prefix: tok[:10], TokenHash: hash}); err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestRunbookPushCommand(t *testing.T) {
	base, st := startAPI(t)
	ctx := context.Background()
	envOf := func(token string) func(string) string {
		return func(k string) string {
			return map[string]string{"OPSFLOW_URL": base, "OPSFLOW_TOKEN": token}[k]
		}
	}
	operator := envOf(apiToken(t, st, schema.RoleOperator))
	push := func(getenv func(string) string, args ...string) (string, error) {
		var out bytes.Buffer
		err := runbookCmd(ctx, append([]string{"push"}, args...), &out, getenv)
		return out.String(), err
	}

	name := fmt.Sprintf("cli-push-%d", time.Now().UnixNano())
	b, err := os.ReadFile("../../deploy/runbooks/rolling-restart.yaml")
	if err != nil {
		t.Fatal(err)
	}
	src := strings.Replace(string(b), "name: rolling-restart", "name: "+name, 1)
	file := writeFile(t, "rb.yaml", src)

	if out, err := push(operator, file); err != nil || out != name+": created, version 1\n" {
		t.Fatalf("first push: %q %v", out, err)
	}
	if out, err := push(operator, file); err != nil || out != name+": unchanged, version 1\n" {
		t.Fatalf("same push: %q %v", out, err)
	}
	if err := os.WriteFile(file, []byte(src+"# tweaked\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := push(operator, "--comment", "tweak", file); err != nil || out != name+": version 2\n" {
		t.Fatalf("changed push: %q %v", out, err)
	}
	rb, err := st.Runbook(ctx, name)
	if err != nil || rb.LatestVersion != 2 {
		t.Fatalf("stored: %+v %v", rb, err)
	}
	if v, err := st.RunbookVersion(ctx, rb.ID, 2); err != nil || v.Comment != "tweak" || v.Source != src+"# tweaked\n" {
		t.Fatalf("version 2: %+v %v", v, err)
	}

	// A bad document: the server's errors at their lines, nothing stored,
	// exit 1.
	bad := writeFile(t, "bad.yaml", fmt.Sprintf(badRunbook, name))
	out, err := push(operator, bad)
	if err == nil || !strings.HasPrefix(out, bad+`:6:10: steps[1].id: duplicate step id "a"`) || strings.Count(out, "\n") != 2 {
		t.Fatalf("bad push: %q %v", out, err)
	}
	stdout, stderr, code := opsflowExit(t, []string{"OPSFLOW_URL=" + base, "OPSFLOW_TOKEN=" + operator("OPSFLOW_TOKEN")}, "runbook", "push", bad)
	if code != 1 || stdout != out || !strings.Contains(stderr, "invalid runbook: 2 errors (HTTP 422)") {
		t.Fatalf("bad push process: exit %d\n%s%s", code, stdout, stderr)
	}
	if rb, err := st.Runbook(ctx, name); err != nil || rb.LatestVersion != 2 {
		t.Fatalf("after the bad push: %+v %v", rb, err)
	}

	// Refusals: a viewer, no token, no URL.
	if _, err := push(envOf(apiToken(t, st, schema.RoleViewer)), file); err == nil || !strings.Contains(err.Error(), "HTTP 403") {
		t.Fatalf("viewer push: %v", err)
	}
	if _, err := push(envOf("opf_not-a-token"), file); err == nil || !strings.Contains(err.Error(), "HTTP 401") {
		t.Fatalf("bad token push: %v", err)
	}
	if _, err := push(func(string) string { return "" }, file); err == nil || !strings.Contains(err.Error(), "OPSFLOW_URL") {
		t.Fatalf("no URL: %v", err)
	}
	if _, err := push(operator, writeFile(t, "anon.yaml", "kind: Runbook\nsteps: []\n")); err == nil || !strings.Contains(err.Error(), "no metadata.name") {
		t.Fatalf("nameless push: %v", err)
	}
}
