// Package e2e tests the dev stack binary as a user runs it.
package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opsflow/opsflow/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

type stack struct {
	t                       testing.TB
	bin, dataDir, token     string
	httpPort, tPort, uiPort int
	cmd                     *exec.Cmd
	env                     []string // added to the stack's environment
}

func newStack(t testing.TB) *stack {
	if testenv.Short() {
		t.Skip("runs the whole dev stack; skipped by -short (CI runs it)")
	}
	bin, err := testenv.DevstackBinary()
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{t: t, bin: bin, dataDir: t.TempDir(), token: "opf_e2e_" + strconv.FormatInt(time.Now().UnixNano(), 36)}
	used := map[int]bool{}
	for _, p := range []*int{&s.httpPort, &s.tPort, &s.uiPort} {
		for *p == 0 || used[*p] {
			if *p, err = testenv.FreePort(); err != nil {
				t.Fatal(err)
			}
		}
		used[*p] = true
	}
	return s
}

// start runs the dev stack and waits for its ready line.
func (s *stack) start() time.Duration {
	s.t.Helper()
	begin := time.Now()
	s.cmd = exec.Command(s.bin)
	s.cmd.Env = append(os.Environ(),
		"OPSFLOW_DATA_DIR="+s.dataDir,
		"OPSFLOW_HTTP_ADDR=127.0.0.1:"+strconv.Itoa(s.httpPort),
		"OPSFLOW_TEMPORAL_PORT="+strconv.Itoa(s.tPort),
		"OPSFLOW_TEMPORAL_UI_PORT="+strconv.Itoa(s.uiPort),
		"OPSFLOW_DEV_ADMIN_TOKEN="+s.token,
		"OPSFLOW_LOG_LEVEL=warn",
	)
	s.cmd.Env = append(s.cmd.Env, s.env...)
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	var stderr bytes.Buffer
	s.cmd.Stderr = &stderr
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	cmd := s.cmd
	s.t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "opsflow dev stack ready") {
				ready <- true
			}
		}
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			s.t.Fatalf("dev stack exited before ready: %s", stderr.String())
		}
	case <-time.After(2 * time.Minute):
		s.t.Fatalf("dev stack not ready after 2m: %s", stderr.String())
	}
	return time.Since(begin)
}

func (s *stack) kill() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		s.t.Fatal(err)
	}
	_ = s.cmd.Wait()
}

func (s *stack) api(method, path string, body any, v any) int {
	return s.apiAs(s.token, method, path, body, v)
}

// apiAs calls the API with another user's token.
func (s *stack) apiAs(token, method, path string, body any, v any) int {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d%s", s.httpPort, path), rd)
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer res.Body.Close()
	if v != nil {
		_ = json.NewDecoder(res.Body).Decode(v)
	}
	return res.StatusCode
}

func eventually(t testing.TB, d time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type run struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Live   *struct {
		Progress *struct{ Completed int } `json:"progress"`
	} `json:"live"`
}

// TestDevStackSurvivesKill9 starts the dev stack, starts a run through the
// API, kills the whole stack with SIGKILL mid-run, starts it again on the
// same data dir and checks that the run resumes and completes, that it is
// visible in the Temporal UI, and that no data was lost.
func TestDevStackSurvivesKill9(t *testing.T) {
	s := newStack(t)
	cold := s.start()
	if code := s.api(http.MethodGet, "/healthz", nil, nil); code != http.StatusOK {
		t.Fatalf("healthz %d", code)
	}
	// A user made before the kill: the admin token comes back from the
	// environment at every start, so only a user proves the database kept
	// what was written.
	if code := s.api(http.MethodPost, "/api/v1/users", map[string]any{"username": "kept", "role": "approver", "password": "kept-password-123"}, nil); code != http.StatusCreated {
		t.Fatalf("create user: %d", code)
	}
	var r run
	if code := s.api(http.MethodPost, "/api/v1/demo/runs", map[string]any{"steps": 3, "step_interval": "2s"}, &r); code != http.StatusCreated {
		t.Fatalf("start run: %d", code)
	}
	eventually(t, 30*time.Second, "first step done", func() bool {
		var cur run
		s.api(http.MethodGet, "/api/v1/runs/"+r.ID, nil, &cur)
		return cur.Live != nil && cur.Live.Progress != nil && cur.Live.Progress.Completed >= 1
	})
	s.kill()

	warm := s.start()
	t.Logf("dev stack ready: cold %s, warm %s (binary already built)", cold.Round(time.Millisecond), warm.Round(time.Millisecond))
	eventually(t, 60*time.Second, "run completed after restart", func() bool {
		var cur run
		s.api(http.MethodGet, "/api/v1/runs/"+r.ID, nil, &cur)
		return cur.Status == "completed"
	})
	// The Temporal UI answers and knows the run.
	res, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/namespaces/default/workflows/%s", s.uiPort, r.ID))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(body), "WORKFLOW_EXECUTION_STATUS_COMPLETED") {
		t.Fatalf("temporal ui: %d %s", res.StatusCode, body)
	}
	// Users and the audit log survived the kill.
	var users struct {
		Items []struct{ Username, Role string }
	}
	s.api(http.MethodGet, "/api/v1/users", nil, &users)
	found := false
	for _, u := range users.Items {
		found = found || u.Username == "kept" && u.Role == "approver"
	}
	if !found {
		t.Fatalf("user made before the kill is gone: %+v", users.Items)
	}
	form := url.Values{"username": {"kept"}, "password": {"kept-password-123"}}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err = noRedirect.PostForm(fmt.Sprintf("http://127.0.0.1:%d/login", s.httpPort), form)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther || len(res.Cookies()) == 0 {
		t.Fatalf("login as the kept user after restart: %d", res.StatusCode)
	}
	var audit struct {
		Items []struct{ Action, Target string }
	}
	s.api(http.MethodGet, "/api/v1/audit?action=workflow.start", nil, &audit)
	if len(audit.Items) != 1 || audit.Items[0].Target != "run:"+r.ID {
		t.Fatalf("audit after restart: %+v", audit.Items)
	}
}
