package workflows_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opsflow/opsflow/internal/secret"
	"github.com/opsflow/opsflow/internal/testenv"
	"github.com/opsflow/opsflow/schema"
	"github.com/opsflow/opsflow/workers"
	"github.com/opsflow/opsflow/workflows"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
)

// TestRunbookRealScriptAndApproval runs a runbook on the real Temporal
// server with real activities against SQLite: an approval step (its
// ticket decided through the Approval workflow's update), then a script
// step whose job is created through activities.CreateJob and run by a
// BatchJob child on the local transport, then a step reading the job's
// outputs. Its history is replayed at once (and recorded with -record).
func TestRunbookRealScriptAndApproval(t *testing.T) {
	ctx := context.Background()
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
	for _, u := range []struct{ name, role string }{{"root", schema.RoleAdmin}, {"bob", schema.RoleApprover}} {
		if err := st.CreateUser(ctx, &schema.User{Username: u.name, Role: u.role}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.SaveApprovalPolicy(ctx, &schema.ApprovalPolicy{Name: "gate", Spec: schema.ApprovalPolicySpec{
		Levels: []schema.ApprovalLevel{{ApproverSet: schema.ApproverSet{Users: []string{"bob"}}, Rule: schema.RuleAny}}}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.CreateScript(ctx, schema.ScriptInput{Name: "hello", Content: `echo "hello from $OPSFLOW_HOST"`}, "root"); err != nil {
		t.Fatal(err)
	}
	c := testenv.TemporalClient(t, client.Options{})
	for _, q := range workflows.TaskQueues {
		w, err := workers.New(c, q, workers.Deps{Store: st, Secrets: keys, LocalTransport: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
	}
	src := `apiVersion: opsflow/v1
kind: Runbook
metadata: {name: hello}
inputs:
  - {name: host, type: string, default: "127.0.0.1"}
steps:
  - id: approve
    kind: approval
    with: {policy: gate, title: "say hello on ${{ inputs.host }}"}
  - id: run
    kind: script
    with:
      script: hello
      targets: {hosts: ["${{ inputs.host }}"], transport: local}
  - id: check
    kind: wait
    when: steps.run.outputs.succeeded == 1 && steps.approve.outputs.decision == "approved"
    with: {duration: 1s}
`
	id, err := workflows.StartRunbook(ctx, c, keys, workflows.RunbookStart{Name: "hello", Version: 1, Source: src, StartedBy: "root",
		UserID: 1, IdempotencyKey: time.Now().Format(time.RFC3339Nano)})
	if err != nil {
		t.Fatal(err)
	}
	// Vote once the ticket's workflow exists.
	ticketID := workflows.RunbookTicketWorkflowID(id, "approve", 1)
	testenv.Eventually(t, time.Minute, "the approval step's ticket to take a vote", func() bool {
		h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: ticketID, UpdateName: workflows.UpdateDecide, UpdateID: "bob",
			WaitForStage: client.WorkflowUpdateStageCompleted, Args: []any{workflows.ApprovalDecision{Voter: "bob", Decision: schema.DecisionApprove, Channel: "api"}}})
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			return false
		}
		if err != nil {
			t.Fatalf("vote: %v", err)
		}
		var out workflows.ApprovalOutcome
		if err := h.Get(ctx, &out); err != nil || out.Status != schema.TicketApproved {
			t.Fatalf("vote: %+v %v", out, err)
		}
		return true
	})
	run := c.GetWorkflow(ctx, id, "")
	var res workflows.RunbookResult
	if err := run.Get(ctx, &res); err != nil {
		t.Fatalf("run: %v", err)
	}
	if res.Steps["check"].Status != schema.StepSucceeded || res.Steps["approve"].Outputs["decided_by"] == nil {
		t.Fatalf("steps: %+v %+v", res.Steps["check"], res.Steps["approve"])
	}
	job, err := st.JobByWorkflowID(ctx, workflows.RunbookJobWorkflowID(id, "run", 1))
	if err != nil || job.CreatedBy != "root" {
		t.Fatalf("the script step's job: %+v %v", job, err)
	}
	if counts, _ := st.JobCounts(ctx, job.ID); counts[schema.HostSucceeded] != 1 {
		t.Fatalf("job counts %v", counts)
	}
	rows, err := st.RunSteps(ctx, id)
	if err != nil || len(rows) != 3 {
		t.Fatalf("read model: %+v %v", rows, err)
	}
	for _, r := range rows {
		if r.Status != schema.StepSucceeded || r.EndedAt == nil {
			t.Fatalf("read model: %+v", r)
		}
		if r.StepID == "run" && !strings.HasPrefix(r.ChildWorkflowID, "job:") {
			t.Fatalf("the script step does not name its job: %+v", r)
		}
	}
	if r, err := st.Run(ctx, id); err != nil || r.Kind != workflows.KindRunbook || r.Status != schema.RunCompleted {
		t.Fatalf("runs: %+v %v", r, err)
	}
	replayAndRecord(t, c, id, run.GetRunID(), "runbook_v1.json")

	// A script step whose job fails on one host of two: its outputs count
	// the failure (read from the job), and on_failure: continue goes on.
	if _, _, err := st.CreateScript(ctx, schema.ScriptInput{Name: "flaky", Content: `[ "$OPSFLOW_HOST_INDEX" = 1 ] && exit 3; true`}, "root"); err != nil {
		t.Fatal(err)
	}
	src = `apiVersion: opsflow/v1
kind: Runbook
metadata: {name: flaky}
steps:
  - id: run
    kind: script
    with:
      script: flaky
      targets: {hosts: ["h1.flaky.test", "h2.flaky.test"], transport: local}
    on_failure: continue
  - id: after
    kind: wait
    when: steps.run.status == "failed" && steps.run.outputs.failed == 1 && steps.run.outputs.succeeded == 1
    with: {duration: 10ms}
`
	id, err = workflows.StartRunbook(ctx, c, keys, workflows.RunbookStart{Name: "flaky", Version: 1, Source: src, StartedBy: "root",
		UserID: 1, IdempotencyKey: "flaky-" + time.Now().Format(time.RFC3339Nano)})
	if err != nil {
		t.Fatal(err)
	}
	run = c.GetWorkflow(ctx, id, "")
	if err := run.Get(ctx, &res); err != nil {
		t.Fatalf("run: %v", err)
	}
	if got := res.Steps["run"]; got.Outputs["failed"] != int64(1) && got.Outputs["failed"] != float64(1) {
		t.Fatalf("the failed script step's outputs: %+v", got)
	}
	if res.Steps["after"].Status != schema.StepSucceeded {
		t.Fatalf("the step after a failed job with counts: %+v (run step %+v)", res.Steps["after"], res.Steps["run"])
	}
	replayAndRecord(t, c, id, run.GetRunID(), "runbook_v2_failed_script.json")
}
