package workflows

import (
	"time"

	"github.com/opsflow/opsflow/activities"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// wait, fail and notify: steps that need nothing but the workflow and a
// notifier.

func init() {
	registerStep("wait", stepWait)
	registerStep("fail", stepFail)
	registerStep("notify", stepNotify)
}

// stepWait sleeps on a workflow timer: a duration, or until a time.
func stepWait(ctx workflow.Context, c *stepCall) (map[string]any, error) {
	var d time.Duration
	if s := c.str("duration"); s != "" {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return nil, temporal.NewNonRetryableApplicationError("duration: "+err.Error(), errTypeRunbookFail, nil)
		}
	} else {
		until, err := time.Parse(time.RFC3339, c.str("until"))
		if err != nil {
			return nil, temporal.NewNonRetryableApplicationError("until: "+err.Error(), errTypeRunbookFail, nil)
		}
		d = until.Sub(workflow.Now(ctx))
	}
	if d > 0 {
		if err := workflow.Sleep(ctx, d); err != nil {
			return nil, err
		}
	}
	return map[string]any{}, nil
}

// stepFail fails the step, and no retry changes that.
func stepFail(_ workflow.Context, c *stepCall) (map[string]any, error) {
	return nil, temporal.NewNonRetryableApplicationError(c.str("message"), errTypeRunbookFail, nil)
}

// stepNotify sends a message through a notifier (activities.Runbooks.RunbookNotify).
func stepNotify(ctx workflow.Context, c *stepCall) (map[string]any, error) {
	err := workflow.ExecuteActivity(c.activityOptions(ctx, notifyActivity), runbookActivities.RunbookNotify, activities.RunbookNotifyInput{
		Run: c.run.root, Channel: c.str("channel"), To: c.strings("to"), Title: c.str("title"), Message: c.str("message")}).Get(ctx, nil)
	return map[string]any{}, err
}
