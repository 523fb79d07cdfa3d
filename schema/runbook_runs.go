package schema

import (
	"context"
	"fmt"
	"time"

	"github.com/uptrace/bun"
)

// Step statuses of a runbook run's step in the read model. succeeded,
// failed and skipped are also what steps.<id>.status reads in a runbook's
// expressions.
const (
	StepPending   = "pending"
	StepRunning   = "running"
	StepSucceeded = "succeeded"
	StepFailed    = "failed"
	StepSkipped   = "skipped"
	StepCanceled  = "canceled"
)

// RunAwaitingRetry is the status of a runbook run whose step failed: the
// run stays open, waiting for a retry from that step or a cancel. It is
// not terminal (no ended_at).
const RunAwaitingRetry = "awaiting_retry"

// RunbookRun is what a runbook run runs; the run itself is its row in
// runs (kind runbook).
type RunbookRun struct {
	bun.BaseModel `bun:"table:runbook_runs"`

	WorkflowID       string         `bun:"workflow_id,pk" json:"id"`
	Runbook          string         `bun:"runbook" json:"runbook"`
	RunbookID        int64          `bun:"runbook_id" json:"runbook_id,omitempty"` // 0: not known (a sub-runbook's run)
	Version          int64          `bun:"version" json:"version"`
	Inputs           map[string]any `bun:"inputs,type:text" json:"inputs"` // secret inputs left out
	ParentWorkflowID string         `bun:"parent_workflow_id" json:"parent_id,omitempty"`
	FailedStep       string         `bun:"failed_step" json:"failed_step,omitempty"`
	CreatedAt        time.Time      `bun:"created_at" json:"created_at"`
}

// RunStep is one step of a runbook run as last reported.
type RunStep struct {
	bun.BaseModel `bun:"table:run_steps"`

	WorkflowID      string         `bun:"workflow_id,pk" json:"-"`
	Path            string         `bun:"path,pk" json:"path"`
	StepID          string         `bun:"step_id" json:"step_id"`
	Kind            string         `bun:"kind" json:"kind"`
	ParentPath      string         `bun:"parent_path" json:"parent_path,omitempty"`
	Position        int            `bun:"position" json:"position"`
	Status          string         `bun:"status" json:"status"`
	Attempts        int            `bun:"attempts" json:"attempts"`
	StartedAt       *time.Time     `bun:"started_at" json:"started_at,omitempty"`
	EndedAt         *time.Time     `bun:"ended_at" json:"ended_at,omitempty"`
	Outputs         map[string]any `bun:"outputs,type:text" json:"outputs,omitempty"`
	Error           string         `bun:"error" json:"error,omitempty"`
	ChildWorkflowID string         `bun:"child_workflow_id" json:"child_id,omitempty"`
	Seq             int64          `bun:"seq" json:"-"`
}

// RecordRunbookRun records what a runbook run runs; a repeat (activities
// run at least once) changes nothing.
func (s *Store) RecordRunbookRun(ctx context.Context, r *RunbookRun) error {
	if r.CreatedAt.IsZero() {
		r.CreatedAt = time.Now().UTC()
	}
	if r.Inputs == nil {
		r.Inputs = map[string]any{}
	}
	if _, err := s.DB.NewInsert().Model(r).On("CONFLICT (workflow_id) DO NOTHING").Exec(ctx); err != nil {
		return fmt.Errorf("store: record runbook run %q: %w", r.WorkflowID, err)
	}
	return nil
}

// SetRunbookFailedStep records the step a run waits on after a failure
// ("" once it goes on).
func (s *Store) SetRunbookFailedStep(ctx context.Context, workflowID, step string) error {
	if _, err := s.DB.NewUpdate().Model((*RunbookRun)(nil)).Set("failed_step = ?", step).Where("workflow_id = ?", workflowID).Exec(ctx); err != nil {
		return fmt.Errorf("store: runbook run %q failed step: %w", workflowID, err)
	}
	return nil
}

// RunbookRun returns what run workflowID runs.
func (s *Store) RunbookRun(ctx context.Context, workflowID string) (*RunbookRun, error) {
	r := new(RunbookRun)
	if err := s.DB.NewSelect().Model(r).Where("workflow_id = ?", workflowID).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: runbook run %q: %w", workflowID, notFound(err))
	}
	return r, nil
}

// RecordRunSteps writes step reports. A report whose Seq is not above the
// one recorded for its step is ignored, so reports may arrive in any
// order and more than once.
func (s *Store) RecordRunSteps(ctx context.Context, steps []RunStep) error {
	if len(steps) == 0 {
		return nil
	}
	for i := range steps {
		if steps[i].Outputs == nil {
			steps[i].Outputs = map[string]any{}
		}
	}
	_, err := s.DB.NewInsert().Model(&steps).
		On("CONFLICT (workflow_id, path) DO UPDATE").
		Set("status = EXCLUDED.status").
		Set("attempts = EXCLUDED.attempts").
		Set("started_at = EXCLUDED.started_at").
		Set("ended_at = EXCLUDED.ended_at").
		Set("outputs = EXCLUDED.outputs").
		Set("error = EXCLUDED.error").
		Set("child_workflow_id = EXCLUDED.child_workflow_id").
		Set("seq = EXCLUDED.seq").
		Where("run_step.seq < EXCLUDED.seq"). // bun aliases the table by its model
		Exec(ctx)
	if err != nil {
		return fmt.Errorf("store: record steps of %q: %w", steps[0].WorkflowID, err)
	}
	return nil
}

// RunSteps lists the steps of run workflowID in document order, each
// foreach item's body after its foreach.
func (s *Store) RunSteps(ctx context.Context, workflowID string) ([]RunStep, error) {
	var out []RunStep
	if err := s.DB.NewSelect().Model(&out).Where("workflow_id = ?", workflowID).OrderExpr("position, path").Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: steps of %q: %w", workflowID, err)
	}
	return out, nil
}
