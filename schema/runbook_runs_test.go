package schema_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/opsflow/opsflow/schema"
)

// TestRunbookRunSteps: step reports land whatever their order, a stale
// report (lower seq) never overwrites a newer one, and an awaiting-retry
// run is not ended.
func TestRunbookRunSteps(t *testing.T) {
	ctx := context.Background()
	for engine, s := range stores(t) {
		t.Run(string(engine), func(t *testing.T) {
			wid := fmt.Sprintf("runbook:steps-%s-%d", engine, time.Now().UnixNano())
			rr := &schema.RunbookRun{WorkflowID: wid, Runbook: "restart", Version: 2, Inputs: map[string]any{"env": "prod"}}
			if err := s.RecordRunbookRun(ctx, rr); err != nil {
				t.Fatal(err)
			}
			if err := s.RecordRunbookRun(ctx, &schema.RunbookRun{WorkflowID: wid, Runbook: "other"}); err != nil {
				t.Fatal(err)
			}
			if err := s.SetRunbookFailedStep(ctx, wid, "check"); err != nil {
				t.Fatal(err)
			}
			got, err := s.RunbookRun(ctx, wid)
			if err != nil || got.Runbook != "restart" || got.Inputs["env"] != "prod" || got.FailedStep != "check" {
				t.Fatalf("run: %+v %v", got, err)
			}
			now := time.Now().UTC().Truncate(time.Second)
			done := schema.RunStep{WorkflowID: wid, Path: "a", StepID: "a", Kind: "wait", Position: 0, Status: schema.StepSucceeded,
				Attempts: 1, StartedAt: &now, EndedAt: &now, Outputs: map[string]any{"n": 3}, Seq: 2}
			running := schema.RunStep{WorkflowID: wid, Path: "a", StepID: "a", Kind: "wait", Status: schema.StepRunning, StartedAt: &now, Seq: 1}
			b := schema.RunStep{WorkflowID: wid, Path: "b", StepID: "b", Kind: "fail", Position: 1, Status: schema.StepFailed, Error: "boom", Seq: 1}
			if err := s.RecordRunSteps(ctx, []schema.RunStep{done, b}); err != nil {
				t.Fatal(err)
			}
			if err := s.RecordRunSteps(ctx, []schema.RunStep{running}); err != nil {
				t.Fatal(err)
			}
			steps, err := s.RunSteps(ctx, wid)
			if err != nil || len(steps) != 2 {
				t.Fatalf("steps: %+v %v", steps, err)
			}
			if steps[0].Status != schema.StepSucceeded || steps[0].Outputs["n"] != float64(3) || steps[0].EndedAt == nil {
				t.Fatalf("a stale report overwrote a newer one: %+v", steps[0])
			}
			if steps[1].Error != "boom" || steps[1].Status != schema.StepFailed {
				t.Fatalf("b: %+v", steps[1])
			}
			if err := s.RecordRunStatus(ctx, wid, "r1", "runbook", schema.RunAwaitingRetry, "step b failed", time.Now()); err != nil {
				t.Fatal(err)
			}
			if r, err := s.Run(ctx, wid); err != nil || r.EndedAt != nil || r.Status != schema.RunAwaitingRetry {
				t.Fatalf("awaiting retry: %+v %v", r, err)
			}
			if err := s.RecordRunStatus(ctx, wid, "r1", "runbook", schema.RunCompleted, "", time.Now()); err != nil {
				t.Fatal(err)
			}
			if r, _ := s.Run(ctx, wid); r.Status != schema.RunCompleted || r.EndedAt == nil {
				t.Fatalf("completed: %+v", r)
			}
		})
	}
}
