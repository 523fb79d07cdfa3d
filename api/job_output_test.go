package api

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opsflow/opsflow/internal/testenv"
	"github.com/opsflow/opsflow/schema"
)

type hostResp struct {
	State        string
	Error        string
	Output       string
	OutputBase64 string `json:"output_base64"`
	OutputBytes  int64  `json:"output_bytes"`
}

// runOneHostJob runs script on one real sshd target through the API and
// returns the finished job and its host.
func (e *env) runOneHostJob(target *testenv.SSHTargets, cred int64, script string, params map[string]any, paramDefs []map[string]any) (jobResp, hostResp) {
	e.t.Helper()
	p := fmt.Sprintf("o%d", time.Now().UnixNano())
	sid := e.script(p, script, paramDefs)
	res := e.do(http.MethodPost, "/api/v1/jobs", "operator", map[string]any{"script_id": sid, "credential_id": cred,
		"targets": map[string]any{"hosts": []string{target.Targets[0].Addr}}, "params": params})
	if res.Status != 201 {
		e.t.Fatalf("start job: %d %s", res.Status, res.Body)
	}
	var j jobResp
	res.json(e.t, &j)
	done := e.waitJob(j.ID, schema.JobSucceeded, schema.JobFailed)
	var h hostResp
	e.do(http.MethodGet, fmt.Sprintf("/api/v1/jobs/%d/hosts/0", j.ID), "viewer", nil).json(e.t, &h)
	return done, h
}

// TestOutputIsBytes: a script printing NUL, a byte that is not UTF-8 and
// an escape code succeeds on Postgres and SQLite, and its output comes
// back exact (base64) and safe (a JSON string); the host page shows the
// bytes escaped.
func TestOutputIsBytes(t *testing.T) {
	for _, db := range []string{"postgres", "sqlite"} {
		t.Run(db, func(t *testing.T) {
			e := newEnvWith(t, envOptions{sqlite: db == "sqlite"})
			target := testenv.SSHD(t, 1)
			cred := e.credential(fmt.Sprintf("o%d", time.Now().UnixNano()), target)
			job, h := e.runOneHostJob(target, cred, `printf 'a\0b\377\033[31m'`, nil, nil)
			if job.Status != schema.JobSucceeded || h.State != schema.HostSucceeded {
				t.Fatalf("job %+v host %+v", job, h)
			}
			want := "a\x00b\xff\x1b[31m"
			raw, err := base64.StdEncoding.DecodeString(h.OutputBase64)
			if err != nil || string(raw) != want || h.Output != "a\x00b\uFFFD\x1b[31m" || h.OutputBytes != int64(len(want)) {
				t.Fatalf("output %q base64 %q (%v) bytes %d", h.Output, raw, err, h.OutputBytes)
			}
			page := e.do(http.MethodGet, fmt.Sprintf("/jobs/%d/hosts/0", job.ID), "viewer", nil)
			if page.Status != 200 || !strings.Contains(string(page.Body), `a\0b\xff\x1b[31m`) {
				t.Fatalf("page %d: %.3000s", page.Status, page.Body)
			}
		})
	}
}

// TestHostOutputTheDatabaseRefuses: when the database keeps refusing a
// host's outcome (here a trigger refuses its output), the host fails
// with the reason instead of staying running while the activity retries.
func TestHostOutputTheDatabaseRefuses(t *testing.T) {
	for _, db := range []string{"postgres", "sqlite"} {
		t.Run(db, func(t *testing.T) {
			e := newEnvWith(t, envOptions{sqlite: db == "sqlite"})
			ctx := context.Background()
			marker := fmt.Sprintf("POISON%d", time.Now().UnixNano())
			stmts := []string{`CREATE TRIGGER refuse_` + marker + ` BEFORE UPDATE OF output ON job_hosts
				WHEN instr(NEW.output, CAST('` + marker + `' AS BLOB)) > 0 BEGIN SELECT RAISE(ABORT, 'refused by test'); END`}
			if db == "postgres" {
				stmts = []string{`CREATE FUNCTION refuse_` + marker + `() RETURNS trigger LANGUAGE plpgsql AS $$
					BEGIN IF position(convert_to('` + marker + `', 'UTF8') in NEW.output) > 0 THEN RAISE EXCEPTION 'refused by test'; END IF; RETURN NEW; END $$`,
					`CREATE TRIGGER refuse_` + marker + ` BEFORE UPDATE ON job_hosts FOR EACH ROW EXECUTE FUNCTION refuse_` + marker + `()`}
				t.Cleanup(func() {
					_, _ = e.store.DB.ExecContext(ctx, `DROP TRIGGER refuse_`+marker+` ON job_hosts`)
					_, _ = e.store.DB.ExecContext(ctx, `DROP FUNCTION refuse_`+marker+`()`)
				})
			}
			for _, s := range stmts {
				if _, err := e.store.DB.ExecContext(ctx, s); err != nil {
					t.Fatal(err)
				}
			}
			target := testenv.SSHD(t, 1)
			cred := e.credential(fmt.Sprintf("o%d", time.Now().UnixNano()), target)
			job, h := e.runOneHostJob(target, cred, `echo `+marker, nil, nil)
			if job.Status != schema.JobFailed || h.State != schema.HostFailed || !strings.Contains(h.Error, "could not be stored") || !strings.Contains(h.Error, "refused by test") {
				t.Fatalf("job %+v host %+v", job, h)
			}
		})
	}
}

// TestEchoedSecretLeavesNoTrace: a secret the script echoes is masked in
// the stored output, and the execution's output file is gone from the
// host once recorded (its lock, with the exit status, stays).
func TestEchoedSecretLeavesNoTrace(t *testing.T) {
	e := newEnv(t)
	target := testenv.SSHD(t, 1)
	cred := e.credential(fmt.Sprintf("o%d", time.Now().UnixNano()), target)
	secret := "tr1cky-s3cret-" + fmt.Sprint(time.Now().UnixNano())
	job, h := e.runOneHostJob(target, cred, `echo "token=$TOKEN"`, map[string]any{"TOKEN": secret},
		[]map[string]any{{"name": "TOKEN", "type": "secret"}})
	if job.Status != schema.JobSucceeded || h.Output != "token=***\n" {
		t.Fatalf("job %+v host %+v", job, h)
	}
	j, err := e.store.Job(context.Background(), job.ID)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(j.WorkflowID))
	rec := filepath.Join(stateDirOf(t, target.User), hex.EncodeToString(sum[:10])+"-h0")
	if _, err := os.Stat(rec + ".lock"); err != nil {
		t.Fatalf("no execution record: %v", err)
	}
	if _, err := os.Stat(rec + ".out"); !os.IsNotExist(err) {
		b, _ := os.ReadFile(rec + ".out")
		t.Fatalf("output file still on the host (%v): %q", err, b)
	}
}

// stateDirOf is the wrapper's state directory of user on this machine
// (the sshd targets are local).
func stateDirOf(t *testing.T, user string) string {
	if user == "root" {
		return "/var/lib/opsflow/exec"
	}
	home, err := os.UserHomeDir()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(home, ".opsflow", "exec")
}
