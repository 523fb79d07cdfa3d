package workflows

import (
	"github.com/opsflow/opsflow/activities"
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
func GitSync(ctx workflow.Context, in GitSyncInput) (GitSyncResult, error) {
	var git *activities.Git
	actx := workflow.WithActivityOptions(ctx, gitActivity)
	info := workflow.GetInfo(ctx)
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
