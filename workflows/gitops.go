package workflows

import (
	"github.com/opsflow/opsflow/activities"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// GitSyncInput syncs one Git source.
type GitSyncInput struct {
	Source string
	// Trigger says who asked: api, webhook, schedule.
	Trigger string
	// DryRun stops after the plan.
	DryRun bool
}

// GitSyncResult is what the sync did.
type GitSyncResult struct {
	SyncID  int64
	SHA     string
	Changes int
	Applied bool
}

// GitSync reads the source's branch head, stores the plan and (unless a
// dry run) applies it. A bad file fails the plan activity, which has
// recorded the file, line and reason: nothing of that commit is applied.
//
// A firing of the source's schedule runs under an ID of its own (Temporal
// stamps the time on it), so it hands over to a child with the source's
// one sync ID: a sync already running there (from the API or a webhook)
// covers the tick, and no two syncs of a source run at once.
func GitSync(ctx workflow.Context, in GitSyncInput) (GitSyncResult, error) {
	var git *activities.Git
	actx := workflow.WithActivityOptions(ctx, gitActivity)
	info := workflow.GetInfo(ctx)
	if one := GitSyncWorkflowID(in.Source); !in.DryRun && info.WorkflowExecution.ID != one &&
		workflow.GetVersion(ctx, "gitsync-one-id", workflow.DefaultVersion, 1) == 1 {
		cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{WorkflowID: one, TaskQueue: TaskQueueOps,
			ParentClosePolicy: enumspb.PARENT_CLOSE_POLICY_ABANDON})
		var out GitSyncResult
		err := workflow.ExecuteChildWorkflow(cctx, GitSync, in).Get(ctx, &out)
		if temporal.IsWorkflowExecutionAlreadyStartedError(err) {
			return GitSyncResult{}, nil // the running sync reads the same head
		}
		return out, err
	}
	var plan activities.PlanGitSyncResult
	if err := workflow.ExecuteActivity(actx, git.PlanGitSync, activities.PlanGitSyncInput{Source: in.Source,
		RunID: info.WorkflowExecution.RunID, WorkflowID: info.WorkflowExecution.ID, Trigger: in.Trigger, DryRun: in.DryRun}).Get(ctx, &plan); err != nil {
		return GitSyncResult{}, err
	}
	out := GitSyncResult{SyncID: plan.SyncID, SHA: plan.SHA, Changes: plan.Changes}
	if in.DryRun {
		return out, nil
	}
	var applied activities.ApplyGitSyncResult
	if err := workflow.ExecuteActivity(actx, git.ApplyGitSync, activities.ApplyGitSyncInput{SyncID: plan.SyncID}).Get(ctx, &applied); err != nil {
		return out, err
	}
	out.Applied = true
	return out, nil
}
