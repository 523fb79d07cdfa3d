package workflows_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/opsflow/opsflow/activities"
	"github.com/opsflow/opsflow/schema"
	"github.com/opsflow/opsflow/workflows"
	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
)

func TestDemoCompletesAndRecordsOutcome(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := newTestEnv(&s)
	env.RegisterActivity(&activities.Demo{})
	var recorded []activities.RecordRunStatusInput
	env.RegisterActivity(&activities.Runs{})
	env.OnActivity((&activities.Runs{}).RecordRunStatus, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.RecordRunStatusInput) (activities.RecordRunStatusResult, error) {
			recorded = append(recorded, in)
			return activities.RecordRunStatusResult{}, nil
		})
	env.SetStartWorkflowOptions(startOptions("demo:unit"))
	// An hour between steps costs nothing with time skipping.
	env.ExecuteWorkflow(workflows.Demo, workflows.DemoInput{Steps: 3, StepInterval: time.Hour, Target: "h1"})
	if !env.IsWorkflowCompleted() || env.GetWorkflowError() != nil {
		t.Fatalf("completed=%v err=%v", env.IsWorkflowCompleted(), env.GetWorkflowError())
	}
	var res workflows.DemoResult
	if err := env.GetWorkflowResult(&res); err != nil || res.Completed != 3 || len(res.Messages) != 3 {
		t.Fatalf("result %+v %v", res, err)
	}
	if len(recorded) != 1 || recorded[0].Status != schema.RunCompleted || recorded[0].Kind != "demo" || recorded[0].Summary != "3/3 steps" {
		t.Fatalf("recorded %+v", recorded)
	}
}

func TestDemoFailureAndCancelAreRecorded(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cancel bool
		want   string
	}{{"failed", false, schema.RunFailed}, {"canceled", true, schema.RunCanceled}} {
		t.Run(tc.name, func(t *testing.T) {
			var s testsuite.WorkflowTestSuite
			env := newTestEnv(&s)
			env.RegisterActivity(&activities.Demo{})
			env.RegisterActivity(&activities.Runs{})
			var got string
			env.OnActivity((&activities.Runs{}).RecordRunStatus, mock.Anything, mock.Anything).Return(
				func(_ context.Context, in activities.RecordRunStatusInput) (activities.RecordRunStatusResult, error) {
					got = in.Status
					return activities.RecordRunStatusResult{}, nil
				})
			if tc.cancel {
				env.RegisterDelayedCallback(env.CancelWorkflow, 30*time.Minute)
			} else {
				env.OnActivity((&activities.Demo{}).RunDemoStep, mock.Anything, mock.Anything).Return(
					activities.RunDemoStepResult{}, temporal.NewNonRetryableApplicationError("boom", "Boom", nil))
			}
			env.SetStartWorkflowOptions(startOptions("demo:" + tc.name))
			env.ExecuteWorkflow(workflows.Demo, workflows.DemoInput{Steps: 3, StepInterval: time.Hour})
			if err := env.GetWorkflowError(); err == nil {
				t.Fatal("workflow succeeded")
			} else if tc.cancel && !errors.As(err, new(*temporal.CanceledError)) {
				t.Fatalf("err = %v, want canceled", err)
			}
			if got != tc.want {
				t.Fatalf("recorded status %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRunWorkflowID(t *testing.T) {
	a := workflows.RunWorkflowID("demo", 1, "k1", "u1")
	if a != workflows.RunWorkflowID("demo", 1, "k1", "u2") {
		t.Fatal("same caller and key must give the same ID")
	}
	if a == workflows.RunWorkflowID("demo", 2, "k1", "u1") {
		t.Fatal("another caller's key must give another ID")
	}
	if got := workflows.RunWorkflowID("demo", 1, "", "u1"); got != "demo:u1" {
		t.Fatalf("without key: %q", got)
	}
	if workflows.KindOf(a) != "demo" {
		t.Fatalf("KindOf(%q) = %q", a, workflows.KindOf(a))
	}
}

// newTestEnv is a testsuite environment that tolerates a busy machine: the
// SDK's default deadlock detector fails a workflow task that runs over 1 s
// of wall time, which a loaded CI machine reaches without any deadlock.
func newTestEnv(s *testsuite.WorkflowTestSuite) *testsuite.TestWorkflowEnvironment {
	env := s.NewTestWorkflowEnvironment()
	env.SetWorkerOptions(worker.Options{DeadlockDetectionTimeout: time.Minute})
	return env
}
