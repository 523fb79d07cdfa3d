package workflows

import (
	"github.com/opsflow/opsflow/activities"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// ScheduledRunbookInput is what a runbook schedule fires with: the
// schedule's name and creator. The runbook, version and inputs (secret
// ones sealed) are in the database (schema.RunbookSchedule) and read at
// each firing with the creator's current rights. Nothing secret is here.
type ScheduledRunbookInput struct {
	Schedule  string
	CreatedBy string
}

// ScheduledRunbook makes the run of its schedule's firing
// (activities.Runbooks.PrepareScheduledRunbook) and runs it as a Runbook
// child named ScheduledRunbookWorkflowID: one run per firing, which
// records itself in the runs read model as the creator's. A run whose
// step fails is the child's to retry (it waits, as any run does); the
// firing ends with it.
func ScheduledRunbook(ctx workflow.Context, in ScheduledRunbookInput) (RunbookResult, error) {
	run := ScheduledRunbookWorkflowID(workflow.GetInfo(ctx).WorkflowExecution.ID)
	var p activities.PrepareScheduledRunbookResult
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, dbActivity), runbookActivities.PrepareScheduledRunbook,
		activities.PrepareScheduledRunbookInput{Schedule: in.Schedule, CreatedBy: in.CreatedBy, Run: run}).Get(ctx, &p)
	if err != nil {
		return RunbookResult{}, err
	}
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{WorkflowID: run, TaskQueue: TaskQueueOps,
		TypedSearchAttributes: temporal.NewSearchAttributes(SAKind.ValueSet(KindRunbook), SAStartedBy.ValueSet(p.StartedBy), SATarget.ValueSet(p.Name))})
	var res RunbookResult
	err = workflow.ExecuteChildWorkflow(cctx, Runbook, RunbookInput{Name: p.Name, Version: p.Version, RunbookID: p.RunbookID, Source: p.Source,
		Inputs: p.Inputs, Secrets: p.Secrets, StartedBy: p.StartedBy}).Get(ctx, &res)
	return res, err
}
