package activities

import (
	"context"
	"time"

	"github.com/opsflow/opsflow/schema"
	"go.temporal.io/sdk/activity"
)

// Runs keeps the runs read model in the database.
type Runs struct {
	Store *schema.Store
}

// RecordRunStatusInput moves a run to Status.
type RecordRunStatusInput struct {
	WorkflowID string
	RunID      string
	Kind       string
	Status     string
	Summary    string
}

// RecordRunStatusResult is empty; it exists so fields can be added.
type RecordRunStatusResult struct{}

// RecordRunStatus writes a run's status to the read model. It is idempotent:
// a run that has ended keeps its first terminal status.
func (a *Runs) RecordRunStatus(ctx context.Context, in RecordRunStatusInput) (RecordRunStatusResult, error) {
	activity.GetLogger(ctx).Debug("record run status", "workflowID", in.WorkflowID, "status", in.Status)
	return RecordRunStatusResult{}, a.Store.RecordRunStatus(ctx, in.WorkflowID, in.RunID, in.Kind, in.Status, in.Summary, time.Now())
}
