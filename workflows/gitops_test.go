package workflows_test

import (
	"context"
	"errors"
	"testing"

	"github.com/opsflow/opsflow/activities"
	"github.com/opsflow/opsflow/workflows"
	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
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
