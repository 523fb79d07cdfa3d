package workflows

import (
	"github.com/opsflow/opsflow/activities"
	"go.temporal.io/sdk/workflow"
)

func init() {
	registerStep("cmdb.query", stepCMDBQuery)
	registerStep("cmdb.update", stepCMDBUpdate)
}

// stepCMDBQuery lists CIs (activities.Runbooks.QueryRunbookCIs).
func stepCMDBQuery(ctx workflow.Context, c *stepCall) (map[string]any, error) {
	var cis []activities.RunbookCI
	err := workflow.ExecuteActivity(c.activityOptions(ctx, shortActivity), runbookActivities.QueryRunbookCIs, activities.QueryRunbookCIsInput{
		Type: c.str("type"), Selector: c.str("selector"), Attrs: c.stringMap("attrs"), Limit: int(c.integer("limit"))}).Get(ctx, &cis) //workflowcheck:ignore internal/runbook is pure: CEL without clock or randomness, maps read in key order
	if err != nil {
		return nil, err
	}
	return map[string]any{"items": toAny(cis), "count": int64(len(cis))}, nil //workflowcheck:ignore internal/runbook is pure: CEL without clock or randomness, maps read in key order
}

// stepCMDBUpdate sets labels and attributes; each CI's history names the
// run (activities.Runbooks.UpdateRunbookCIs).
func stepCMDBUpdate(ctx workflow.Context, c *stepCall) (map[string]any, error) {
	in := activities.UpdateRunbookCIsInput{Run: c.run.root, StartedBy: c.run.in.StartedBy, CI: c.str("ci"), Selector: c.str("selector"),
		Type: c.str("type"), Labels: c.stringMap("labels"), RemoveLabels: c.strings("remove_labels")} //workflowcheck:ignore internal/runbook is pure: CEL without clock or randomness, maps read in key order
	if m, ok := c.args["attributes"].(map[string]any); ok {
		in.Attributes = m
	}
	var n int
	if err := workflow.ExecuteActivity(c.activityOptions(ctx, shortActivity), runbookActivities.UpdateRunbookCIs, in).Get(ctx, &n); err != nil {
		return nil, err
	}
	return map[string]any{"updated": int64(n)}, nil
}
