package workflows

import (
	"errors"
	"fmt"

	"github.com/opsflow/opsflow/internal/runbook"
	"go.temporal.io/sdk/workflow"
)

func init() { registerStep("parallel", stepParallel) }

// stepParallel runs its branches side by side (workflow.Go), each a list
// of steps in the step's scope; it fails when a branch fails, after the
// others end (or are cancelled, with fail_fast). A retry runs again only
// the branch steps that did not succeed.
func stepParallel(ctx workflow.Context, c *stepCall) (map[string]any, error) {
	branches, _ := c.args["branches"].([]any)
	bctx, cancel := workflow.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(branches))
	done := 0
	for i, b := range branches {
		m, _ := b.(map[string]any)
		steps, _ := m["steps"].([]*runbook.Step)
		workflow.Go(bctx, func(gctx workflow.Context) {
			defer func() { done++ }()
			errs[i] = c.run.runSteps(gctx, c.scope, steps, c.path)
			if errs[i] != nil && c.boolean("fail_fast") {
				cancel()
			}
		})
	}
	if err := workflow.Await(ctx, func() bool { return done == len(branches) }); err != nil {
		return nil, err
	}
	for i, err := range errs {
		var sf *stepFailure
		if errors.As(err, &sf) {
			name, _ := branches[i].(map[string]any)["name"].(string)
			if name == "" {
				name = fmt.Sprint(i + 1)
			}
			return nil, fmt.Errorf("branch %s: %s", name, sf.Error())
		}
	}
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return map[string]any{}, nil
}
