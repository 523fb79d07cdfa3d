package workflows

import (
	"github.com/opsflow/opsflow/activities"
	"github.com/opsflow/opsflow/schema"
	"go.temporal.io/sdk/workflow"
)

// ScheduledJobInput is what a job schedule fires with: a saved job
// definition, planned afresh at each firing.
type ScheduledJobInput struct {
	Definition schema.JobRequest
	CreatedBy  string
}

// ScheduledJob creates a job from a saved definition and runs it as a
// BatchJob child, whose workflow ID is the job's.
func ScheduledJob(ctx workflow.Context, in ScheduledJobInput) (BatchProgress, error) {
	var jobs *activities.Jobs
	var created activities.CreateScheduledJobResult
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, dbActivity), jobs.CreateScheduledJob,
		activities.CreateScheduledJobInput{Definition: in.Definition, CreatedBy: in.CreatedBy}).Get(ctx, &created)
	if err != nil {
		return BatchProgress{}, err
	}
	var p BatchProgress
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{WorkflowID: created.WorkflowID, TaskQueue: TaskQueueOps})
	err = workflow.ExecuteChildWorkflow(cctx, BatchJob, BatchJobInput{JobID: created.JobID, Total: created.Total, Policy: created.Policy}).Get(ctx, &p)
	return p, err
}
