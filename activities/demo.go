package activities

import (
	"context"
	"fmt"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
)

// Demo is the side of the demo workflow: it stands in for real operations
// so the platform can be exercised end to end on a laptop.
type Demo struct{}

// RunDemoStepInput is one step of a demo run.
type RunDemoStepInput struct {
	Step   int
	Target string
}

// RunDemoStepResult reports what the step did.
type RunDemoStepResult struct {
	Message string
}

// RunDemoStep performs one demo step.
func (a *Demo) RunDemoStep(ctx context.Context, in RunDemoStepInput) (RunDemoStepResult, error) {
	if in.Step < 1 {
		return RunDemoStepResult{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("step must be >= 1, got %d", in.Step), ErrTypeInvalidInput, nil)
	}
	activity.GetLogger(ctx).Info("demo step", "step", in.Step, "target", in.Target)
	return RunDemoStepResult{Message: fmt.Sprintf("step %d on %s done", in.Step, in.Target)}, nil
}
