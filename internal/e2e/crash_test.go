package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opsflow/opsflow/internal/secret"
	"github.com/opsflow/opsflow/internal/testenv"
	"github.com/opsflow/opsflow/schema"
	"github.com/opsflow/opsflow/workflows"
	"go.temporal.io/sdk/client"
)

// TestWorkerKilledMidJobRunsEachHostOnce runs a 200-host job on real sshd
// targets with the worker in its own process, kills that process with
// SIGKILL three times at random moments, restarts it each time, and checks
// that the job completes and that every host ran the script exactly once.
func TestWorkerKilledMidJobRunsEachHostOnce(t *testing.T) {
	const hosts = 200
	ctx := context.Background()
	pg := testenv.PostgresURL(t)
	temporalAddr := testenv.Temporal(t)
	targets := testenv.SSHD(t, hosts)

	keyText := secret.NewKey()
	key, _ := secret.ParseKey(keyText)
	keys, _ := secret.NewKeyring(key)

	st, err := schema.Open(ctx, pg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.MigrateUp(ctx); err != nil {
		t.Fatal(err)
	}
	run := fmt.Sprintf("%d", time.Now().UnixNano())
	marks := filepath.Join(t.TempDir(), "marks")
	cred := &schema.Credential{Name: "crash-" + run, Kind: schema.CredSSHKey, Username: targets.User}
	cred.Secret = keys.Seal(targets.PrivateKeyPEM, cred.SealContext())
	if err := st.CreateCredential(ctx, cred); err != nil {
		t.Fatal(err)
	}
	// Each execution appends a line to its host's mark file, then works
	// for 1-4 s, so kills land mid-command.
	sc, ver, err := st.CreateScript(ctx, schema.ScriptInput{Name: "crash-" + run, Interpreter: "sh",
		Content:    `mkdir -p "$MARKS"; echo "$OPSFLOW_HOST" >> "$MARKS/$OPSFLOW_HOST_INDEX"; sleep $(( OPSFLOW_HOST_INDEX % 4 + 1 ))`,
		Parameters: []schema.ParamDef{{Name: "MARKS", Type: schema.ParamString, Required: true}}}, "test")
	if err != nil {
		t.Fatal(err)
	}
	params, _ := json.Marshal(map[string]string{"MARKS": marks})
	job := &schema.Job{WorkflowID: "job:crash-" + run, ScriptID: sc.ID, ScriptVersion: ver.Version, CredentialID: cred.ID,
		Policy: schema.JobPolicy{Concurrency: "50", HostTimeout: "2m"}, Status: schema.JobQueued, CreatedBy: "test"}
	job.Params = keys.Seal(params, job.ParamsContext())
	jh := make([]schema.JobHost, hosts)
	for i, tg := range targets.Targets {
		jh[i] = schema.JobHost{Address: tg.Addr}
	}
	if err := st.CreateJob(ctx, job, jh); err != nil {
		t.Fatal(err)
	}

	c, err := client.Dial(client.Options{HostPort: temporalAddr, Namespace: testenv.TemporalNamespace, DataConverter: keys.DataConverter()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	wr, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: job.WorkflowID, TaskQueue: workflows.TaskQueueOps},
		workflows.BatchJob, workflows.BatchJobInput{JobID: job.ID, Total: hosts, Policy: job.Policy})
	if err != nil {
		t.Fatal(err)
	}

	logs := filepath.Join(t.TempDir(), "worker.log")
	startWorker := func() *exec.Cmd {
		return testenv.StartWorker(t, logs, "OPSFLOW_DATABASE_URL="+pg, "TEMPORAL_ADDRESS="+temporalAddr,
			"TEMPORAL_NAMESPACE="+testenv.TemporalNamespace, "OPSFLOW_SECRET_KEY="+keyText, "OPSFLOW_LOG_LEVEL=warn")
	}
	count := func(state string) int {
		n, _ := st.DB.NewSelect().Table("job_hosts").Where("job_id = ? AND state = ?", job.ID, state).Count(ctx)
		return int(n)
	}
	// Hosts whose script had started and not ended when a kill landed:
	// the proof needs at least one of them retried (and run once).
	inFlight := map[int]bool{}
	for kill := 1; kill <= 3; kill++ {
		before := count(schema.HostSucceeded)
		w := startWorker()
		// Wait until this worker makes progress (its predecessor's hosts
		// are retried after the heartbeat timeout), so the kill lands on
		// commands it is running; then kill at a random moment.
		deadline := time.Now().Add(2 * time.Minute)
		for count(schema.HostSucceeded) == before || count(schema.HostRunning) == 0 {
			if time.Now().After(deadline) {
				log, _ := os.ReadFile(logs)
				t.Fatalf("kill %d: nothing running after 2m; worker log:\n%s", kill, log)
			}
			time.Sleep(100 * time.Millisecond)
		}
		time.Sleep(time.Duration(500+rand.IntN(2500)) * time.Millisecond) // the random moment
		if err := w.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = w.Wait()
		var running []int
		_ = st.DB.NewSelect().Table("job_hosts").Column("idx").Where("job_id = ? AND state = ?", job.ID, schema.HostRunning).Scan(ctx, &running)
		for _, i := range running {
			if _, err := os.Stat(filepath.Join(marks, fmt.Sprint(i))); err == nil {
				inFlight[i] = true
			}
		}
		t.Logf("kill %d: SIGKILL with %d hosts running, %d done", kill, count(schema.HostRunning), count(schema.HostSucceeded))
	}
	startWorker()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	var progress workflows.BatchProgress
	if err := wr.Get(wctx, &progress); err != nil {
		log, _ := os.ReadFile(logs)
		var failed []schema.JobHost
		_ = st.DB.NewSelect().Model(&failed).Where("job_id = ? AND state = ?", job.ID, schema.HostFailed).Scan(ctx)
		for _, h := range failed {
			t.Logf("host %d (%s) failed after %d attempts: %s", h.Idx, h.Address, h.Attempts, h.Error)
		}
		t.Fatalf("job: %v\nworker log:\n%s", err, log)
	}
	if progress.Succeeded != hosts || progress.Failed != 0 {
		t.Fatalf("progress %+v", progress)
	}
	for i := range hosts {
		b, err := os.ReadFile(filepath.Join(marks, fmt.Sprint(i)))
		if err != nil {
			t.Fatalf("host %d never ran: %v", i, err)
		}
		if n := bytes.Count(b, []byte("\n")); n != 1 {
			t.Fatalf("host %d ran %d times: %q", i, n, strings.TrimSpace(string(b)))
		}
	}
	counts, _ := st.JobCounts(ctx, job.ID)
	if counts[schema.HostSucceeded] != hosts {
		t.Fatalf("read model counts %v", counts)
	}
	var retried []int
	if err := st.DB.NewSelect().Table("job_hosts").Column("idx").Where("job_id = ? AND attempts > 1", job.ID).Scan(ctx, &retried); err != nil {
		t.Fatal(err)
	}
	reattached := 0
	for _, i := range retried {
		if inFlight[i] {
			reattached++
		}
	}
	t.Logf("hosts in flight at a kill: %d; retried: %d; both (reattached to their one run): %d", len(inFlight), len(retried), reattached)
	if reattached == 0 {
		t.Fatalf("no host was in flight at a kill and retried: the test proved nothing (in flight %d, retried %d)", len(inFlight), len(retried))
	}
}
