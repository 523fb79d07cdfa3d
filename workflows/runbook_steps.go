package workflows

import (
	"encoding/json"
	"time"

	"github.com/opsflow/opsflow/activities"
	"github.com/opsflow/opsflow/internal/runbook"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// The runbook interpreter runs each step through the executor of its
// kind. Every kind is a file runbook_steps_<kind>.go that registers its
// executor in init, so a later capability (Kubernetes actions, alert
// remediation) adds a file here and its kind to internal/runbook, not a
// switch arm.

// stepExecutor runs one attempt of a step and returns the kind's result
// (what its outputs expressions read as result). A non-retryable
// application error of type errTypeRunbookFail ends the step's attempts
// at once; any other error is an attempt that failed.
type stepExecutor func(ctx workflow.Context, c *stepCall) (map[string]any, error)

// stepCall is one attempt of a step.
type stepCall struct {
	run     *runbookRun
	step    *runbook.Step
	path    string         // the step's place in the run (its id, or inside a foreach item <foreach>[i].<id>)
	args    map[string]any // the step's with, interpolated
	scope   *scope
	state   *StepState    // the step's state; Attempts counts this attempt
	timeout time.Duration // the step's timeout, 0: none
}

var stepExecutors = map[string]stepExecutor{}

// registerStep registers the executor of kind; called from init only.
func registerStep(kind string, e stepExecutor) {
	if _, dup := stepExecutors[kind]; dup {
		panic("workflows: step kind " + kind + " registered twice")
	}
	stepExecutors[kind] = e
}

// errTypeRunbookFail is the error of a fail step: no attempt changes it.
const errTypeRunbookFail = "RunbookFail"

var runbookActivities *activities.Runbooks

// activityOptions are the options of a step's activity: the step's
// timeout bounds each attempt, retried by Temporal for transient errors
// only (a business failure is the step's to retry).
func (c *stepCall) activityOptions(ctx workflow.Context, preset workflow.ActivityOptions) workflow.Context {
	o := preset
	if c.timeout > 0 {
		o.StartToCloseTimeout = c.timeout
	}
	rp := *o.RetryPolicy
	rp.NonRetryableErrorTypes = []string{activities.ErrTypeInvalidInput, activities.ErrTypeStepFailed, activities.ErrTypeForbidden}
	o.RetryPolicy = &rp
	return workflow.WithActivityOptions(ctx, o)
}

// str, integer, boolean read an interpolated argument.
func (c *stepCall) str(name string) string {
	s, _ := c.args[name].(string)
	return s
}

func (c *stepCall) integer(name string) int64 {
	switch v := c.args[name].(type) {
	case int64:
		return v
	case int:
		return int64(v)
	case float64:
		return int64(v)
	}
	return 0
}

func (c *stepCall) boolean(name string) bool {
	b, _ := c.args[name].(bool)
	return b
}

// decode reads argument name into out through JSON (argument objects
// name their fields as the API's types do).
func (c *stepCall) decode(name string, out any) error {
	v, ok := c.args[name]
	if !ok || v == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return temporal.NewNonRetryableApplicationError("argument "+name+": "+err.Error(), activities.ErrTypeInvalidInput, nil)
	}
	return nil
}

func (c *stepCall) strings(name string) []string {
	var out []string
	if l, ok := c.args[name].([]any); ok {
		for _, v := range l {
			if s, ok := v.(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

func (c *stepCall) stringMap(name string) map[string]string {
	out := map[string]string{}
	if m, ok := c.args[name].(map[string]any); ok {
		//workflowcheck:ignore order-independent: each entry is handled on its own
		for k, v := range m {
			if s, ok := v.(string); ok {
				out[k] = s
			} else {
				b, _ := json.Marshal(v)
				out[k] = string(b)
			}
		}
	}
	return out
}

// toAny turns a typed value into the plain shape expressions read (via
// JSON, numbers normalized).
func toAny(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	var out any
	_ = json.Unmarshal(b, &out)
	return normalize(out)
}
