package workflows

import (
	"github.com/opsflow/opsflow/activities"
	"go.temporal.io/sdk/workflow"
)

func init() { registerStep("http", stepHTTP) }

// stepHTTP sends a request (activities.Runbooks.RunbookHTTP); secret
// references in its URL, headers and body are opened by the activity.
func stepHTTP(ctx workflow.Context, c *stepCall) (map[string]any, error) {
	in := activities.RunbookHTTPInput{URL: c.str("url"), Method: c.str("method"), Headers: c.stringMap("headers"), Body: c.args["body"], //workflowcheck:ignore internal/runbook is pure: CEL without clock or randomness, maps read in key order
		Credential: c.str("credential"), Secrets: c.run.in.Secrets}
	if l, ok := c.args["expect_status"].([]any); ok {
		for _, v := range l {
			if n, ok := normalize(v).(int64); ok {
				in.ExpectStatus = append(in.ExpectStatus, int(n))
			}
		}
	}
	var res activities.RunbookHTTPResult
	if err := workflow.ExecuteActivity(c.activityOptions(ctx, shortActivity), runbookActivities.RunbookHTTP, in).Get(ctx, &res); err != nil {
		return nil, err
	}
	headers := map[string]any{}
	//workflowcheck:ignore order-independent: each entry is handled on its own
	for k, v := range res.Headers {
		headers[k] = v
	}
	return map[string]any{"status": int64(res.Status), "body": normalize(res.Body), "headers": headers}, nil
}
