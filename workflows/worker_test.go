package workflows_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opsflow/opsflow/internal/secret"
	"github.com/opsflow/opsflow/internal/testenv"
	"github.com/opsflow/opsflow/schema"
	"github.com/opsflow/opsflow/workers"
	"github.com/opsflow/opsflow/workflows"
	"go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"google.golang.org/protobuf/encoding/protojson"
)

var record = flag.Bool("record", false, "write the histories of real runs to testdata/ for replay tests")

func TestMain(m *testing.M) { testenv.Main(m) }

func startOptions(id string) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{ID: id, TaskQueue: workflows.TaskQueueOps}
}

// TestRegistrationOnRealWorker registers every queue's workflows and
// activities on real workers (a lazy client needs no server): the SDK
// panics on a duplicate name there, which the test environment never does.
func TestRegistrationOnRealWorker(t *testing.T) {
	c, err := client.NewLazyClient(client.Options{HostPort: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, q := range workflows.TaskQueues {
		w := worker.New(c, q, worker.Options{})
		if _, err := workers.Register(w, q, workers.Deps{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := workers.Register(worker.New(c, "nope", worker.Options{}), "nope", workers.Deps{}); err == nil {
		t.Fatal("unknown queue accepted")
	}
}

// replayable lists every workflow type a recorded history may hold.
var replayable = []any{workflows.Demo, workflows.DiscoverHosts, workflows.BatchJob, workflows.ScheduledJob, workflows.ScheduledRunbook, workflows.Approval, workflows.Runbook}

// TestReplayHistories replays every history in testdata/ against today's
// workflow code: a change that breaks runs in flight fails here (TMPRL1100).
func TestReplayHistories(t *testing.T) {
	files, err := filepath.Glob("testdata/*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no histories in testdata/; record some with go test ./workflows -run TestRealRun -record")
	}
	for _, f := range files {
		r := worker.NewWorkflowReplayer()
		for _, wf := range replayable {
			r.RegisterWorkflow(wf)
		}
		if err := r.ReplayWorkflowHistoryFromJSONFile(nil, f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// TestRealRun runs a demo on the real Temporal server with real activities
// against SQLite, and replays its history right away.
func TestRealRun(t *testing.T) {
	ctx := context.Background()
	st, c, _ := realEnv(t)
	id := fmt.Sprintf("demo:replay-%d", time.Now().UnixNano())
	run, err := c.ExecuteWorkflow(ctx, startOptions(id), workflows.Demo, workflows.DemoInput{Steps: 2, StepInterval: 10 * time.Millisecond, Target: "h1"})
	if err != nil {
		t.Fatal(err)
	}
	var res workflows.DemoResult
	if err := run.Get(ctx, &res); err != nil || res.Completed != 2 {
		t.Fatalf("%+v %v", res, err)
	}
	r, err := st.Run(ctx, id)
	if err != nil || r.Status != schema.RunCompleted {
		t.Fatalf("read model: %+v %v", r, err)
	}
	replayAndRecord(t, c, id, run.GetRunID(), "demo_v1.json")
}

// replayAndRecord replays a finished run's history against today's code
// and, with -record, writes it to testdata/ for TestReplayHistories.
func replayAndRecord(t *testing.T, c client.Client, id, runID, file string) {
	t.Helper()
	ctx := context.Background()
	hist := &historypb.History{}
	it := c.GetWorkflowHistory(ctx, id, runID, false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		hist.Events = append(hist.Events, ev)
	}
	replayer := worker.NewWorkflowReplayer()
	for _, wf := range replayable {
		replayer.RegisterWorkflow(wf)
	}
	if err := replayer.ReplayWorkflowHistory(nil, hist); err != nil {
		t.Fatalf("replay of a fresh %s history: %v", file, err)
	}
	if !*record {
		return
	}
	// A recorded file stays as it is: it holds the code paths of the day
	// it was recorded (older versions), which a new recording would lose.
	path := filepath.Join("testdata", file)
	if _, err := os.Stat(path); err == nil {
		t.Logf("%s exists; not re-recorded (delete it to record it again)", path)
		return
	}
	b, err := protojson.MarshalOptions{Indent: "  "}.Marshal(hist)
	if err != nil {
		t.Fatal(err)
	}
	var pretty any
	_ = json.Unmarshal(b, &pretty)
	out, _ := json.MarshalIndent(pretty, "", "  ")
	if err := os.WriteFile(path, append(out, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRealBatchJob runs a small job — rolling batches of one, an error
// budget — on real sshd with real activities against SQLite, and replays
// its history right away.
func TestRealBatchJob(t *testing.T) {
	ctx := context.Background()
	hosts := testenv.SSHD(t, 3)
	st, err := schema.Open(ctx, filepath.Join(t.TempDir(), "wf.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.MigrateUp(ctx); err != nil {
		t.Fatal(err)
	}
	key, _ := secret.ParseKey(secret.NewKey())
	keys, _ := secret.NewKeyring(key)
	cred := &schema.Credential{Name: "replay", Kind: schema.CredSSHKey, Username: hosts.User}
	cred.Secret = keys.Seal(hosts.PrivateKeyPEM, cred.SealContext())
	if err := st.CreateCredential(ctx, cred); err != nil {
		t.Fatal(err)
	}
	sc, ver, err := st.CreateScript(ctx, schema.ScriptInput{Name: "replay", Content: `echo $OPSFLOW_HOST_INDEX; [ "$OPSFLOW_HOST_INDEX" != 1 ]`}, "test")
	if err != nil {
		t.Fatal(err)
	}
	job := &schema.Job{WorkflowID: fmt.Sprintf("job:replay-%d", time.Now().UnixNano()), ScriptID: sc.ID, ScriptVersion: ver.Version, CredentialID: cred.ID,
		Policy: schema.JobPolicy{Concurrency: "2", Batch: "1", MaxFailures: "5"}, Status: schema.JobQueued, CreatedBy: "test"}
	jh := make([]schema.JobHost, len(hosts.Targets))
	for i, tg := range hosts.Targets {
		jh[i] = schema.JobHost{Address: tg.Addr}
	}
	if err := st.CreateJob(ctx, job, jh); err != nil {
		t.Fatal(err)
	}
	c := testenv.TemporalClient(t, client.Options{})
	for _, q := range workflows.TaskQueues {
		w, err := workers.New(c, q, workers.Deps{Store: st, Secrets: keys})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
	}
	run, err := c.ExecuteWorkflow(ctx, startOptions(job.WorkflowID), workflows.BatchJob, workflows.BatchJobInput{JobID: job.ID, Total: len(jh), Policy: job.Policy})
	if err != nil {
		t.Fatal(err)
	}
	if err := run.Get(ctx, nil); err == nil || !strings.Contains(err.Error(), "1 failed") {
		t.Fatalf("job result: %v", err)
	}
	counts, _ := st.JobCounts(ctx, job.ID)
	if counts[schema.HostSucceeded] != 2 || counts[schema.HostFailed] != 1 {
		t.Fatalf("counts %v", counts)
	}
	replayAndRecord(t, c, job.WorkflowID, run.GetRunID(), "batchjob_v1.json")

	// At concurrency 32 hosts go two to an activity (RunHostScripts): the
	// same outcome, host by host.
	job3 := &schema.Job{WorkflowID: job.WorkflowID + "-groups", ScriptID: sc.ID, ScriptVersion: ver.Version, CredentialID: cred.ID,
		Policy: schema.JobPolicy{Concurrency: "32", MaxFailures: "5"}, Status: schema.JobQueued, CreatedBy: "test"}
	jh3 := make([]schema.JobHost, len(jh))
	for i := range jh {
		jh3[i] = schema.JobHost{Address: jh[i].Address}
	}
	if err := st.CreateJob(ctx, job3, jh3); err != nil {
		t.Fatal(err)
	}
	run3, err := c.ExecuteWorkflow(ctx, startOptions(job3.WorkflowID), workflows.BatchJob, workflows.BatchJobInput{JobID: job3.ID, Total: len(jh3), Policy: job3.Policy})
	if err != nil {
		t.Fatal(err)
	}
	if err := run3.Get(ctx, nil); err == nil || !strings.Contains(err.Error(), "2/3 succeeded, 1 failed") {
		t.Fatalf("grouped job result: %v", err)
	}
	if counts, _ := st.JobCounts(ctx, job3.ID); counts[schema.HostSucceeded] != 2 || counts[schema.HostFailed] != 1 {
		t.Fatalf("grouped counts %v", counts)
	}
	hist := c.GetWorkflowHistory(ctx, job3.WorkflowID, run3.GetRunID(), false, 0)
	groups := 0
	for hist.HasNext() {
		ev, err := hist.Next()
		if err != nil {
			t.Fatal(err)
		}
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil && a.ActivityType.GetName() == "RunHostScripts" {
			groups++
		}
	}
	if groups != 2 {
		t.Fatalf("%d host groups scheduled, want 2 (of 2 and 1)", groups)
	}
	replayAndRecord(t, c, job3.WorkflowID, run3.GetRunID(), "batchjob_v2_groups.json")

	// host-window: in a group whose first host is slow, the others are
	// reported as they end (a signal), and the job's counts stay exact.
	sc4, ver4, err := st.CreateScript(ctx, schema.ScriptInput{Name: "replay-window", Content: `[ "$OPSFLOW_HOST_INDEX" = 0 ] && sleep 2; echo $OPSFLOW_HOST_INDEX; [ "$OPSFLOW_HOST_INDEX" != 1 ]`}, "test")
	if err != nil {
		t.Fatal(err)
	}
	job4 := &schema.Job{WorkflowID: job.WorkflowID + "-window", ScriptID: sc4.ID, ScriptVersion: ver4.Version, CredentialID: cred.ID,
		Policy: schema.JobPolicy{Concurrency: "32", MaxFailures: "5"}, Status: schema.JobQueued, CreatedBy: "test"}
	jh4 := make([]schema.JobHost, len(jh))
	for i := range jh {
		jh4[i] = schema.JobHost{Address: jh[i].Address}
	}
	if err := st.CreateJob(ctx, job4, jh4); err != nil {
		t.Fatal(err)
	}
	run4, err := c.ExecuteWorkflow(ctx, startOptions(job4.WorkflowID), workflows.BatchJob, workflows.BatchJobInput{JobID: job4.ID, Total: len(jh4), Policy: job4.Policy})
	if err != nil {
		t.Fatal(err)
	}
	if err := run4.Get(ctx, nil); err == nil || !strings.Contains(err.Error(), "2/3 succeeded, 1 failed") {
		t.Fatalf("windowed job result: %v", err)
	}
	hist4 := c.GetWorkflowHistory(ctx, job4.WorkflowID, run4.GetRunID(), false, 0)
	reports := 0
	for hist4.HasNext() {
		ev, err := hist4.Next()
		if err != nil {
			t.Fatal(err)
		}
		if a := ev.GetWorkflowExecutionSignaledEventAttributes(); a != nil && a.GetSignalName() == workflows.SignalHostsDone {
			reports++
		}
	}
	if reports != 1 {
		t.Fatalf("%d host reports, want 1 (host 1, before slow host 0)", reports)
	}
	replayAndRecord(t, c, job4.WorkflowID, run4.GetRunID(), "batchjob_v4_window.json")

	// Continue-as-new: two hosts per run makes a chain of runs that still
	// reaches every host once, carrying the counts across.
	job2 := &schema.Job{WorkflowID: job.WorkflowID + "-can", ScriptID: sc.ID, ScriptVersion: ver.Version, CredentialID: cred.ID,
		Policy: schema.JobPolicy{Concurrency: "1", MaxFailures: "5"}, Status: schema.JobQueued, CreatedBy: "test"}
	jh2 := append(append([]schema.JobHost{}, jh...), jh...) // 6 hosts
	for i := range jh2 {
		jh2[i] = schema.JobHost{Address: jh2[i].Address}
	}
	if err := st.CreateJob(ctx, job2, jh2); err != nil {
		t.Fatal(err)
	}
	run2, err := c.ExecuteWorkflow(ctx, startOptions(job2.WorkflowID), workflows.BatchJob,
		workflows.BatchJobInput{JobID: job2.ID, Total: len(jh2), Policy: job2.Policy, HostsPerRun: 2})
	if err != nil {
		t.Fatal(err)
	}
	var p workflows.BatchProgress
	err = c.GetWorkflow(ctx, job2.WorkflowID, "").Get(ctx, &p)
	if err == nil || !strings.Contains(err.Error(), "5/6 succeeded, 1 failed") {
		t.Fatalf("continued job: %v", err)
	}
	desc, err := c.DescribeWorkflowExecution(ctx, job2.WorkflowID, "")
	if err != nil {
		t.Fatal(err)
	}
	if desc.GetWorkflowExecutionInfo().GetExecution().GetRunId() == run2.GetRunID() {
		t.Fatal("the job never continued as new")
	}
	if counts, _ := st.JobCounts(ctx, job2.ID); counts[schema.HostSucceeded] != 5 || counts[schema.HostFailed] != 1 {
		t.Fatalf("counts %v", counts)
	}
}

// TestRealApproval decides a two-level ticket on the real Temporal server
// with real (local) activities against SQLite — a refused vote, a double
// click, the deciding votes — and replays its history right away.
func TestRealApproval(t *testing.T) {
	ctx := context.Background()
	st, c, _ := realEnv(t)
	for _, u := range []string{"alice", "bob", "carol"} {
		if err := st.CreateUser(ctx, &schema.User{Username: u, Role: schema.RoleApprover}); err != nil {
			t.Fatal(err)
		}
	}
	spec := schema.ApprovalPolicySpec{Levels: []schema.ApprovalLevel{
		{ApproverSet: schema.ApproverSet{Users: []string{"bob"}}, Rule: schema.RuleAny},
		{ApproverSet: schema.ApproverSet{Users: []string{"carol"}}, Rule: schema.RuleAll, Timeout: "24h", OnTimeout: schema.OnTimeoutReject}}}
	tk := &schema.Ticket{WorkflowID: fmt.Sprintf("approval:replay-%d", time.Now().UnixNano()), Title: "replay", Requester: "alice", PolicyName: "p", Policy: spec}
	if err := st.CreateTicket(ctx, tk); err != nil {
		t.Fatal(err)
	}
	run, err := c.ExecuteWorkflow(ctx, startOptions(tk.WorkflowID), workflows.Approval,
		workflows.ApprovalInput{TicketID: tk.ID, Requester: "alice", Policy: spec, Approvers: [][]string{{"bob"}, {"carol"}}})
	if err != nil {
		t.Fatal(err)
	}
	vote := func(id, voter string) (workflows.ApprovalOutcome, error) {
		var out workflows.ApprovalOutcome
		h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: tk.WorkflowID, UpdateID: id, UpdateName: workflows.UpdateDecide,
			WaitForStage: client.WorkflowUpdateStageCompleted, Args: []any{workflows.ApprovalDecision{Voter: voter, Decision: schema.DecisionApprove, Channel: "api"}}})
		if err == nil {
			err = h.Get(ctx, &out)
		}
		return out, err
	}
	if _, err := vote("v0", "alice"); err == nil || !strings.Contains(err.Error(), "you requested this ticket") {
		t.Fatalf("self-approval: %v", err)
	}
	o1, err := vote("v1", "bob")
	if err != nil || !strings.Contains(o1.Message, "level 1 of 2 approved") {
		t.Fatalf("bob: %+v %v", o1, err)
	}
	if again, err := vote("v1", "bob"); err != nil || again != o1 {
		t.Fatalf("bob's double click: %+v %v", again, err)
	}
	// Level 2 opens after bob's vote is answered: carol votes once it is
	// (a vote for a level not open yet is refused, rightly).
	testenv.Eventually(t, time.Minute, "level 2 to open", func() bool {
		got, err := st.Ticket(ctx, tk.ID)
		return err == nil && got.Level == 1
	})
	if o, err := vote("v2", "carol"); err != nil || o.Status != schema.TicketApproved {
		t.Fatalf("carol: %+v %v", o, err)
	}
	if err := run.Get(ctx, nil); err != nil {
		t.Fatalf("ticket: %v", err)
	}
	if got, err := st.Ticket(ctx, tk.ID); err != nil || got.Status != schema.TicketApproved || len(got.Decisions) != 2 {
		t.Fatalf("read model: %+v %v", got, err)
	}
	replayAndRecord(t, c, tk.WorkflowID, run.GetRunID(), "approval_v1.json")
}

// TestRealApprovalCancelledWhileWaiting: the gated job is aborted while a
// level waits on its one-hour timer. On a real server a cancelled timer is
// ready the moment its context is, so the ticket must not take the
// cancellation for the timeout (expired, rejected or approved "no decision
// within 1h"): it is withdrawn, and the read model says so although the
// ticket's own context is cancelled, so no inbox lists it any more.
func TestRealApprovalCancelledWhileWaiting(t *testing.T) {
	ctx := context.Background()
	st, c, _ := realEnv(t)
	for _, u := range []string{"alice", "bob"} {
		if err := st.CreateUser(ctx, &schema.User{Username: u, Role: schema.RoleApprover}); err != nil {
			t.Fatal(err)
		}
	}
	for _, onTimeout := range []string{"", schema.OnTimeoutReject, schema.OnTimeoutApprove} {
		spec := schema.ApprovalPolicySpec{Levels: []schema.ApprovalLevel{{ApproverSet: schema.ApproverSet{Users: []string{"bob"}},
			Rule: schema.RuleAny, Timeout: "1h", OnTimeout: onTimeout}}}
		tk := &schema.Ticket{WorkflowID: fmt.Sprintf("approval:cancel-%s-%d", onTimeout, time.Now().UnixNano()), Title: "cancel", Requester: "alice", PolicyName: "p", Policy: spec}
		if err := st.CreateTicket(ctx, tk); err != nil {
			t.Fatal(err)
		}
		run, err := c.ExecuteWorkflow(ctx, startOptions(tk.WorkflowID), workflows.Approval,
			workflows.ApprovalInput{TicketID: tk.ID, Requester: "alice", Policy: spec})
		if err != nil {
			t.Fatal(err)
		}
		// The level is open (its approvers are written) before the job is aborted.
		testenv.Eventually(t, time.Minute, "the level to open", func() bool {
			got, err := st.Ticket(ctx, tk.ID)
			return err == nil && len(got.Approvers) > 0
		})
		if err := c.CancelWorkflow(ctx, tk.WorkflowID, ""); err != nil {
			t.Fatal(err)
		}
		var canceled *temporal.CanceledError
		if err := run.Get(ctx, nil); !errors.As(err, &canceled) {
			t.Errorf("on timeout %q: ticket ended with %v, want cancelled", onTimeout, err)
		}
		got, err := st.Ticket(ctx, tk.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != schema.TicketWithdrawn || !strings.Contains(got.Reason, "cancelled") {
			t.Errorf("on timeout %q: read model %q %q, want withdrawn (cancelled)", onTimeout, got.Status, got.Reason)
		}
		for _, d := range got.Decisions {
			if d.Channel == "timer" {
				t.Errorf("on timeout %q: the cancellation was taken for the timeout: %+v", onTimeout, d)
			}
		}
		if onTimeout == schema.OnTimeoutApprove {
			// The history with the cancel-is-not-timeout marker, for replay.
			replayAndRecord(t, c, tk.WorkflowID, run.GetRunID(), "approval_v2_cancelled.json")
		}
	}
}

// realEnv is a SQLite store and real workers on both queues, for
// recording histories.
func realEnv(t *testing.T) (*schema.Store, client.Client, *secret.Keyring) {
	t.Helper()
	ctx := context.Background()
	st, err := schema.Open(ctx, filepath.Join(t.TempDir(), "wf.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.MigrateUp(ctx); err != nil {
		t.Fatal(err)
	}
	key, _ := secret.ParseKey(secret.NewKey())
	keys, _ := secret.NewKeyring(key)
	c := testenv.TemporalClient(t, client.Options{})
	for _, q := range workflows.TaskQueues {
		w, err := workers.New(c, q, workers.Deps{Store: st, Secrets: keys})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Stop)
	}
	return st, c, keys
}

// TestRealDiscoveryAndGatedJob records two more histories: a discovery of
// a real sshd, and a batch job gated by an approval that is given while it
// waits.
func TestRealDiscoveryAndGatedJob(t *testing.T) {
	ctx := context.Background()
	hosts := testenv.SSHD(t, 1)
	st, c, keys := realEnv(t)
	cred := &schema.Credential{Name: "replay", Kind: schema.CredSSHKey, Username: hosts.User}
	cred.Secret = keys.Seal(hosts.PrivateKeyPEM, cred.SealContext())
	if err := st.CreateCredential(ctx, cred); err != nil {
		t.Fatal(err)
	}

	did := fmt.Sprintf("discovery:replay-%d", time.Now().UnixNano())
	drun, err := c.ExecuteWorkflow(ctx, startOptions(did), workflows.DiscoverHosts,
		workflows.DiscoverHostsInput{Addresses: []string{hosts.Targets[0].Addr}, CredentialID: cred.ID, StartedBy: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := drun.Get(ctx, nil); err != nil {
		t.Fatalf("discovery: %v", err)
	}
	if cis, _, err := st.CIs(ctx, schema.CIQuery{Type: "host", Limit: 10}); err != nil || len(cis) != 1 {
		t.Fatalf("discovered: %v %v", cis, err)
	}
	replayAndRecord(t, c, did, drun.GetRunID(), "discovery_v1.json")

	if err := st.CreateUser(ctx, &schema.User{Username: "bob", Role: schema.RoleApprover}); err != nil {
		t.Fatal(err)
	}
	if err := st.SaveApprovalPolicy(ctx, &schema.ApprovalPolicy{Name: "gate", Spec: schema.ApprovalPolicySpec{
		Levels: []schema.ApprovalLevel{{ApproverSet: schema.ApproverSet{Users: []string{"bob"}}, Rule: schema.RuleAny}}}}); err != nil {
		t.Fatal(err)
	}
	sc, ver, err := st.CreateScript(ctx, schema.ScriptInput{Name: "gated", Content: "echo gated"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	job := &schema.Job{WorkflowID: fmt.Sprintf("job:gated-%d", time.Now().UnixNano()), ScriptID: sc.ID, ScriptVersion: ver.Version, CredentialID: cred.ID,
		Policy: schema.JobPolicy{Concurrency: "1", Approval: "gate"}, Status: schema.JobQueued, CreatedBy: "alice"}
	if err := st.CreateJob(ctx, job, []schema.JobHost{{Address: hosts.Targets[0].Addr}}); err != nil {
		t.Fatal(err)
	}
	jrun, err := c.ExecuteWorkflow(ctx, startOptions(job.WorkflowID), workflows.BatchJob, workflows.BatchJobInput{JobID: job.ID, Total: 1, Policy: job.Policy})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if j, _ := st.Job(ctx, job.ID); j != nil && j.Status == schema.JobAwaitingApproval {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the job never waited for its approval")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The job's status is written before its ticket's workflow starts:
	// vote once that workflow exists, not on luck.
	var outcome workflows.ApprovalOutcome
	for {
		h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: workflows.JobTicketWorkflowID(job.WorkflowID), UpdateName: workflows.UpdateDecide,
			WaitForStage: client.WorkflowUpdateStageCompleted, Args: []any{workflows.ApprovalDecision{Voter: "bob", Decision: schema.DecisionApprove, Channel: "api"}}})
		if err == nil {
			err = h.Get(ctx, &outcome)
		}
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatalf("approve: %v", err)
		}
		break
	}
	if outcome.Status != schema.TicketApproved {
		t.Fatalf("bob's vote was not counted: %+v", outcome)
	}
	if err := jrun.Get(ctx, nil); err != nil {
		t.Fatalf("gated job: %v", err)
	}
	if counts, _ := st.JobCounts(ctx, job.ID); counts[schema.HostSucceeded] != 1 {
		t.Fatalf("counts %v", counts)
	}
	replayAndRecord(t, c, job.WorkflowID, jrun.GetRunID(), "batchjob_v3_gated.json")
}
