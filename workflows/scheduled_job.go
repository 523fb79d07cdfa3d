package workflows

import (
	"github.com/opsflow/opsflow/activities"
	"github.com/opsflow/opsflow/schema"
	"go.temporal.io/sdk/workflow"
)

// ScheduledJobInput is what a job schedule fires with: a reference to the
// schedule, whose definition (secret parameters sealed) is kept in the
// database and planned afresh at each firing with its creator's current
// rights. Nothing secret is in here.
type ScheduledJobInput struct {
	// Definition is set only by schedules made before definitions moved
	// to the database; such a firing is refused (recreate the schedule).
	Definition schema.JobRequest
	CreatedBy  string
	// Schedule is the schedule's name (its ID without schedule:).
	Schedule string
}

// ScheduledJob creates a job from its schedule's definition and runs it as
// a BatchJob child, whose workflow ID is the job's.
func ScheduledJob(ctx workflow.Context, in ScheduledJobInput) (BatchProgress, error) {
	var jobs *activities.Jobs
	var created activities.CreateScheduledJobResult
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, dbActivity), jobs.CreateScheduledJob,
		activities.CreateScheduledJobInput{Schedule: in.Schedule, CreatedBy: in.CreatedBy,
			JobWorkflowID: ScheduledJobWorkflowID(workflow.GetInfo(ctx).WorkflowExecution.ID)}).Get(ctx, &created)
	if err != nil {
		return BatchProgress{}, err
	}
	var p BatchProgress
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{WorkflowID: created.WorkflowID, TaskQueue: TaskQueueOps})
	err = workflow.ExecuteChildWorkflow(cctx, BatchJob, BatchJobInput{JobID: created.JobID, Total: created.Total, Policy: created.Policy}).Get(ctx, &p)
	return p, err
}
