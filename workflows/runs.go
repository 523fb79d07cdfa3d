package workflows

import (
	"errors"

	"github.com/opsflow/opsflow/activities"
	"github.com/opsflow/opsflow/schema"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

var runsActivities *activities.Runs

// finishRun records a run's outcome in the read model and returns err
// unchanged. It runs on a disconnected context so a cancelled run still
// records that it was cancelled.
func finishRun(ctx workflow.Context, summary string, err error) error {
	status := schema.RunCompleted
	var canceled *temporal.CanceledError
	switch {
	case errors.As(err, &canceled) || errors.Is(ctx.Err(), workflow.ErrCanceled):
		status = schema.RunCanceled
	case err != nil:
		status = schema.RunFailed
		summary = err.Error()
	}
	dctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	info := workflow.GetInfo(ctx)
	rec := workflow.ExecuteActivity(workflow.WithActivityOptions(dctx, dbActivity), runsActivities.RecordRunStatus,
		activities.RecordRunStatusInput{
			WorkflowID: info.WorkflowExecution.ID,
			RunID:      info.WorkflowExecution.RunID,
			Kind:       KindOf(info.WorkflowExecution.ID),
			Status:     status,
			Summary:    summary,
		})
	if recErr := rec.Get(dctx, nil); recErr != nil && err == nil {
		return recErr
	}
	return err
}
