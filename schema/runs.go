package schema

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"
)

// Run statuses in the read model, mirroring Temporal's execution statuses.
const (
	RunRunning    = "running"
	RunCompleted  = "completed"
	RunFailed     = "failed"
	RunCanceled   = "canceled"
	RunTerminated = "terminated"
	RunTimedOut   = "timed_out"
)

// Run is the read model of one workflow execution of any kind. The workflow
// ID is the key: a repeat start with the same ID is the same run.
type Run struct {
	bun.BaseModel `bun:"table:runs"`

	WorkflowID string     `bun:"workflow_id,pk" json:"id"`
	RunID      string     `bun:"run_id" json:"run_id"`
	Kind       string     `bun:"kind" json:"kind"`
	Status     string     `bun:"status" json:"status"`
	StartedBy  string     `bun:"started_by" json:"started_by"`
	Target     string     `bun:"target" json:"target"`
	StartedAt  time.Time  `bun:"started_at" json:"started_at"`
	EndedAt    *time.Time `bun:"ended_at" json:"ended_at"`
	Summary    string     `bun:"summary" json:"summary"`
}

// RecordRunStart records a started run. If the workflow already reported
// a status (a fast run can finish before its starter records it) that
// status is kept; who started it and the target are filled in.
func (s *Store) RecordRunStart(ctx context.Context, r *Run) error {
	return s.recordRunStart(ctx, s.DB, r)
}

// RecordRunStartAudited records a started run and its audit entry
// atomically and reports whether this call recorded the start: false means
// the run was already recorded as started by someone (a repeated
// idempotent start), and then no audit entry is written either.
//
// Starts are the API's hot path: on Postgres this is one statement.
func (s *Store) RecordRunStartAudited(ctx context.Context, r *Run, e *AuditEntry) (bool, error) {
	if r.StartedAt.IsZero() {
		r.StartedAt = time.Now().UTC()
	}
	if r.Status == "" {
		r.Status = RunRunning
	}
	if e.At.IsZero() {
		e.At = time.Now().UTC()
	}
	// A row with no starter was written by the workflow itself (it can
	// finish before its starter records it): fill in who started it.
	const upsert = `INSERT INTO runs (workflow_id, run_id, kind, status, started_by, target, started_at, summary)
		VALUES (?, ?, ?, ?, ?, ?, ?, '')
		ON CONFLICT (workflow_id) DO UPDATE SET run_id = EXCLUDED.run_id, kind = EXCLUDED.kind,
			started_by = EXCLUDED.started_by, target = EXCLUDED.target, started_at = EXCLUDED.started_at
		WHERE runs.started_by = ''
		RETURNING workflow_id`
	const audit = `INSERT INTO audit_log (at, actor, actor_id, action, target, source_ip, request_id, status, detail)`
	runArgs := []any{r.WorkflowID, r.RunID, r.Kind, r.Status, r.StartedBy, r.Target, r.StartedAt}
	auditArgs := []any{e.At, e.Actor, e.ActorID, e.Action, e.Target, e.SourceIP, e.RequestID, e.Status, e.Detail}
	created := false
	var err error
	if s.Engine == Postgres {
		err = s.DB.NewRaw(`WITH started AS (`+upsert+`) `+audit+` SELECT ?, ?, ?, ?, ?, ?, ?, ?, ? FROM started RETURNING id`,
			append(runArgs, auditArgs...)...).Scan(ctx, &e.ID)
		created = err == nil
		if errors.Is(err, sql.ErrNoRows) {
			err = nil
		}
	} else {
		err = s.DB.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			var ids []string
			if err := tx.NewRaw(upsert, runArgs...).Scan(ctx, &ids); err != nil {
				return err
			}
			if len(ids) == 0 {
				return nil
			}
			created = true
			return tx.NewRaw(audit+` VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`, auditArgs...).Scan(ctx, &e.ID)
		})
	}
	if err != nil {
		return false, fmt.Errorf("store: record run start %q: %w", r.WorkflowID, err)
	}
	return created, nil
}

func (s *Store) recordRunStart(ctx context.Context, db bun.IDB, r *Run) error {
	if r.StartedAt.IsZero() {
		r.StartedAt = time.Now().UTC()
	}
	if r.Status == "" {
		r.Status = RunRunning
	}
	_, err := db.NewInsert().Model(r).ModelTableExpr("runs").
		On("CONFLICT (workflow_id) DO UPDATE").
		Set("run_id = EXCLUDED.run_id").
		Set("kind = EXCLUDED.kind").
		Set("started_by = EXCLUDED.started_by").
		Set("target = EXCLUDED.target").
		Set("started_at = EXCLUDED.started_at").
		Exec(ctx)
	if err != nil {
		return fmt.Errorf("store: record run start %q: %w", r.WorkflowID, err)
	}
	return nil
}

// Run returns the run with workflowID.
func (s *Store) Run(ctx context.Context, workflowID string) (*Run, error) {
	r := new(Run)
	if err := s.DB.NewSelect().Model(r).Where("workflow_id = ?", workflowID).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: run %q: %w", workflowID, notFound(err))
	}
	return r, nil
}

// RecordRunStatus moves a run to status; a terminal status also sets
// ended_at. A run that already ended keeps its first terminal status, so a
// late or repeated update (activities run at least once) cannot reopen it.
func (s *Store) RecordRunStatus(ctx context.Context, workflowID, runID, kind, status, summary string, at time.Time) error {
	r := &Run{WorkflowID: workflowID, RunID: runID, Kind: kind, Status: status, StartedAt: at.UTC(), Summary: summary}
	if status != RunRunning && status != RunAwaitingRetry {
		end := at.UTC()
		r.EndedAt = &end
	}
	_, err := s.DB.NewInsert().Model(r).ModelTableExpr("runs").
		On("CONFLICT (workflow_id) DO UPDATE").
		Set("status = EXCLUDED.status").
		Set("ended_at = EXCLUDED.ended_at").
		Set("run_id = CASE WHEN EXCLUDED.run_id = '' THEN runs.run_id ELSE EXCLUDED.run_id END").
		Set("summary = CASE WHEN EXCLUDED.summary = '' THEN runs.summary ELSE EXCLUDED.summary END").
		Where("runs.ended_at IS NULL").
		Exec(ctx)
	if err != nil {
		return fmt.Errorf("store: record run %q status: %w", workflowID, err)
	}
	return nil
}

// RunFilter selects runs; zero fields match everything.
type RunFilter struct {
	Kind         string
	Status       string
	StartedBy    string
	Since, Until time.Time // started in [Since, Until)
	Q            string    // searches the workflow ID and target
	Sort, Order  string    // see Page
	Cursor       string
	Limit        int
}

// Runs lists runs newest first and returns the cursor of the next page, or
// "" on the last page.
func (s *Store) Runs(ctx context.Context, f RunFilter) ([]Run, string, error) {
	rs, info, err := s.runList(ctx, f, false)
	return rs, info.Next, err
}
