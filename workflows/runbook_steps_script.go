package workflows

import (
	"github.com/opsflow/opsflow/activities"
	"github.com/opsflow/opsflow/schema"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

func init() {
	registerStep("script", stepScript)
	registerStep("approval", stepApproval)
}

// stepScript creates a batch job through activities.CreateJob (so it is
// in the jobs list and the UI, planned, authorized and sealed like any
// job) and runs its BatchJob as a child. Each attempt is a new job.
func stepScript(ctx workflow.Context, c *stepCall) (map[string]any, error) {
	in := activities.CreateRunbookJobInput{Run: c.run.root, JobWorkflowID: RunbookJobWorkflowID(c.run.root, c.path, c.state.Attempts),
		StartedBy: c.run.in.StartedBy, Script: c.str("script"), Version: c.integer("version"), Credential: c.str("credential"), Secrets: c.run.in.Secrets}
	if p, ok := c.args["params"].(map[string]any); ok {
		in.Params = p
	}
	//workflowcheck:ignore encoding/json is deterministic (map keys sorted)
	if err := c.decode("targets", &in.Targets); err != nil {
		return nil, err
	}
	//workflowcheck:ignore encoding/json is deterministic (map keys sorted)
	if err := c.decode("policy", &in.Policy); err != nil {
		return nil, err
	}
	var job activities.CreateRunbookJobResult
	if err := workflow.ExecuteActivity(c.activityOptions(ctx, dbActivity), runbookActivities.CreateRunbookJob, in).Get(ctx, &job); err != nil {
		return nil, err
	}
	c.state.ChildID = job.WorkflowID
	out := map[string]any{"job_id": job.JobID, "total": int64(job.Total), "succeeded": int64(0), "failed": int64(0)}
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{WorkflowID: job.WorkflowID, TaskQueue: TaskQueueOps,
		TypedSearchAttributes: temporal.NewSearchAttributes(SAKind.ValueSet(KindJob), SAStartedBy.ValueSet(c.run.in.StartedBy))})
	var p BatchProgress
	if err := workflow.ExecuteChildWorkflow(cctx, BatchJob, BatchJobInput{JobID: job.JobID, Total: job.Total, Policy: job.Policy}).Get(ctx, &p); err != nil {
		// A failed job's counts come from the read model: the step's
		// outputs then say how many hosts failed (not a cancelled one's).
		if ctx.Err() == nil && workflow.GetVersion(ctx, "script-failed-counts", workflow.DefaultVersion, 1) == 1 {
			var counts map[string]int64
			if cerr := workflow.ExecuteActivity(c.activityOptions(ctx, dbActivity), runbookActivities.RunbookJobCounts, job.JobID).Get(ctx, &counts); cerr == nil {
				out["succeeded"], out["failed"] = counts[schema.HostSucceeded], counts[schema.HostFailed]
			}
		}
		return out, err
	}
	out["succeeded"], out["failed"] = int64(p.Succeeded), int64(p.Failed)
	return out, nil
}

// stepApproval opens a ticket under a policy and runs its Approval as a
// child, as a gated job does; anything but approved fails the step.
func stepApproval(ctx workflow.Context, c *stepCall) (map[string]any, error) {
	var open activities.OpenJobTicketResult
	err := workflow.ExecuteActivity(c.activityOptions(ctx, dbActivity), runbookActivities.OpenRunbookTicket, activities.OpenRunbookTicketInput{
		Run: c.run.root, WorkflowID: RunbookTicketWorkflowID(c.run.root, c.path, c.state.Attempts), Requester: c.run.in.StartedBy,
		Policy: c.str("policy"), Title: c.str("title"), Description: c.str("description")}).Get(ctx, &open)
	if err != nil {
		return nil, err
	}
	c.state.ChildID = open.WorkflowID
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{WorkflowID: open.WorkflowID, TaskQueue: TaskQueueOps,
		TypedSearchAttributes: temporal.NewSearchAttributes(SAKind.ValueSet(KindApproval))})
	t := open.Input
	childErr := workflow.ExecuteChildWorkflow(cctx, Approval, ApprovalInput{TicketID: t.TicketID, Requester: t.Requester, Policy: t.Policy, Approvers: t.Approvers}).Get(ctx, nil)
	if ctx.Err() != nil {
		return nil, childErr
	}
	var got activities.RunbookTicketResult
	if err := workflow.ExecuteActivity(c.activityOptions(ctx, dbActivity), runbookActivities.RunbookTicket, t.TicketID).Get(ctx, &got); err != nil {
		return nil, err
	}
	decision := got.Status
	if decision == schema.TicketApproved {
		decision = "approved"
	}
	decided := make([]any, len(got.DecidedBy))
	for i, u := range got.DecidedBy {
		decided[i] = u
	}
	return map[string]any{"ticket_id": t.TicketID, "decision": decision, "decided_by": decided}, childErr
}
