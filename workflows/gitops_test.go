package workflows_test

import (
	"context"
	"errors"
	"testing"

	"github.com/opsflow/opsflow/activities"
	"github.com/opsflow/opsflow/workflows"
	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
)

// TestGitSyncPlansThenApplies: a dry run stops at the plan; a sync applies
// the plan it stored; a refused plan applies nothing.
func TestGitSyncPlansThenApplies(t *testing.T) {
	cases := []struct {
		name      string
		dry       bool
		planErr   error
		wantApply bool
	}{
		{"sync", false, nil, true},
		{"dry run", true, nil, false},
		{"bad file", false, temporal.NewNonRetryableApplicationError("commit abc: docs/bad.yaml:7: spec.interpreter: must be bash", activities.ErrTypeInvalidInput, nil), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var s testsuite.WorkflowTestSuite
			env := s.NewTestWorkflowEnvironment()
			var git *activities.Git
			env.RegisterActivity(git)
			env.OnActivity(git.PlanGitSync, mock.Anything, mock.MatchedBy(func(in activities.PlanGitSyncInput) bool {
				return in.Source == "ops" && in.DryRun == c.dry && in.RunID != ""
			})).
				Return(activities.PlanGitSyncResult{SyncID: 7, SHA: "abc", Changes: 2}, c.planErr)
			applied := false
			env.OnActivity(git.ApplyGitSync, mock.Anything, activities.ApplyGitSyncInput{SyncID: 7}).Return(
				func(context.Context, activities.ApplyGitSyncInput) (activities.ApplyGitSyncResult, error) {
					applied = true
					return activities.ApplyGitSyncResult{Applied: 2}, nil
				})
			env.ExecuteWorkflow(workflows.GitSync, workflows.GitSyncInput{Source: "ops", Trigger: "api", DryRun: c.dry})
			err := env.GetWorkflowError()
			var ae *temporal.ApplicationError
			if (c.planErr != nil) != (err != nil) || err != nil && !errors.As(err, &ae) {
				t.Fatalf("workflow error %v", err)
			}
			if applied != c.wantApply {
				t.Fatalf("applied %v, want %v", applied, c.wantApply)
			}
		})
	}
}

// TestScheduledGitSyncRunsUnderTheSourcesOneID: a firing of the source's
// schedule (an ID of its own) runs the sync as a child under the
// source's one sync ID, so it joins no second sync beside the API's.
func TestScheduledGitSyncRunsUnderTheSourcesOneID(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	var git *activities.Git
	env.RegisterActivity(git)
	env.RegisterWorkflow(workflows.GitSync)
	var planned []string
	env.OnActivity(git.PlanGitSync, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.PlanGitSyncInput) (activities.PlanGitSyncResult, error) {
			planned = append(planned, in.WorkflowID)
			return activities.PlanGitSyncResult{SyncID: 9, SHA: "abc"}, nil
		})
	env.OnActivity(git.ApplyGitSync, mock.Anything, mock.Anything).Return(activities.ApplyGitSyncResult{}, nil)
	var children []string
	env.SetOnChildWorkflowStartedListener(func(info *workflow.Info, _ workflow.Context, _ converter.EncodedValues) {
		children = append(children, info.WorkflowExecution.ID)
	})
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: "gitsync:ops-2026-12-01T07:00:00Z"})
	env.ExecuteWorkflow(workflows.GitSync, workflows.GitSyncInput{Source: "ops", Trigger: "schedule"})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if len(children) != 1 || children[0] != workflows.GitSyncWorkflowID("ops") || len(planned) != 1 || planned[0] != workflows.GitSyncWorkflowID("ops") {
		t.Fatalf("children %v, planned in %v", children, planned)
	}
}
