package workflows

import (
	"fmt"
	"time"

	"github.com/opsflow/opsflow/activities"
	"go.temporal.io/sdk/workflow"
)

// DemoInput configures a demo run: Steps activities, a durable timer of
// StepInterval between them.
type DemoInput struct {
	Steps        int
	StepInterval time.Duration
	Target       string
}

// DemoResult is what a demo run did.
type DemoResult struct {
	Completed int
	Messages  []string
}

// DemoProgress is returned by the progress query.
type DemoProgress struct {
	Completed int
	Total     int
}

// Demo is a small multi-step run that exercises the platform end to end: it
// survives worker and server restarts like every opsflow run.
func Demo(ctx workflow.Context, in DemoInput) (DemoResult, error) {
	r := &demoRun{in: in}
	if err := r.setup(ctx); err != nil {
		return DemoResult{}, err
	}
	res, err := r.run(ctx)
	return res, finishRun(ctx, fmt.Sprintf("%d/%d steps", res.Completed, in.Steps), err)
}

type demoRun struct {
	in  DemoInput
	res DemoResult
}

func (r *demoRun) setup(ctx workflow.Context) error {
	return workflow.SetQueryHandler(ctx, QueryProgress, func() (DemoProgress, error) {
		return DemoProgress{Completed: r.res.Completed, Total: r.in.Steps}, nil
	})
}

func (r *demoRun) run(ctx workflow.Context) (DemoResult, error) {
	var demo *activities.Demo
	actx := workflow.WithActivityOptions(ctx, shortActivity)
	for step := 1; step <= r.in.Steps; step++ {
		if step > 1 && r.in.StepInterval > 0 {
			if err := workflow.Sleep(ctx, r.in.StepInterval); err != nil {
				return r.res, err
			}
		}
		var out activities.RunDemoStepResult
		if err := workflow.ExecuteActivity(actx, demo.RunDemoStep, activities.RunDemoStepInput{Step: step, Target: r.in.Target}).Get(ctx, &out); err != nil {
			return r.res, err
		}
		r.res.Completed = step
		r.res.Messages = append(r.res.Messages, out.Message)
	}
	return r.res, nil
}
