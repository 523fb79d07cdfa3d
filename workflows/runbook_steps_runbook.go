package workflows

import (
	"github.com/opsflow/opsflow/activities"
	"github.com/opsflow/opsflow/internal/runbook"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

func init() { registerStep("runbook", stepRunbook) }

// stepRunbook runs a stored runbook as a child run. The child fails at
// once when one of its steps fails (its parent's step is what is
// retried); its secret inputs are sealed again for it.
func stepRunbook(ctx workflow.Context, c *stepCall) (map[string]any, error) {
	var src activities.LoadRunbookResult
	if err := workflow.ExecuteActivity(c.activityOptions(ctx, dbActivity), runbookActivities.LoadRunbook,
		activities.LoadRunbookInput{Name: c.str("name"), Version: c.integer("version")}).Get(ctx, &src); err != nil {
		return nil, err
	}
	rb, err := runbook.Parse([]byte(src.Source)) //workflowcheck:ignore internal/runbook is pure: CEL without clock or randomness, maps read in key order
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError("runbook "+c.str("name")+": "+err.Error(), errTypeRunbookFail, nil)
	}
	given, _ := c.args["inputs"].(map[string]any)
	id := RunbookChildWorkflowID(c.run.root, c.path, c.state.Attempts)
	inputs, bad := rb.CheckInputs(given) //workflowcheck:ignore internal/runbook is pure: CEL without clock or randomness, maps read in key order
	if len(bad) > 0 {
		return nil, temporal.NewNonRetryableApplicationError("runbook "+c.str("name")+" inputs: "+joinProblems(bad), errTypeRunbookFail, nil)
	}
	secrets := activities.RunbookSecrets{Run: id, Sealed: map[string]string{}}
	values := map[string]string{}
	for _, in := range rb.Inputs {
		if in.Type == runbook.InputSecret {
			values[in.Name], _ = inputs[in.Name].(string)
			inputs[in.Name] = activities.SecretRef(in.Name)
		}
	}
	if len(values) > 0 {
		if err := workflow.ExecuteActivity(c.activityOptions(ctx, dbActivity), runbookActivities.ResealRunbookSecrets,
			activities.ResealRunbookSecretsInput{From: c.run.in.Secrets, To: id, Values: values}).Get(ctx, &secrets.Sealed); err != nil {
			return nil, err
		}
	}
	c.state.ChildID = id
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{WorkflowID: id, TaskQueue: TaskQueueOps,
		TypedSearchAttributes: temporal.NewSearchAttributes(SAKind.ValueSet(KindRunbook), SAStartedBy.ValueSet(c.run.in.StartedBy))})
	var res RunbookResult
	err = workflow.ExecuteChildWorkflow(cctx, Runbook, RunbookInput{Name: c.str("name"), Version: src.Version, Source: src.Source, Inputs: inputs,
		Secrets: secrets, StartedBy: c.run.in.StartedBy, Parent: c.run.root, RetryWindow: -1}).Get(ctx, &res)
	out := map[string]any{"run_id": id, "status": res.Status}
	if err != nil {
		out["status"] = "failed"
	}
	return out, err
}

func joinProblems(bad map[string]string) string {
	s := ""
	for _, k := range sortedKeys(bad) {
		if s != "" {
			s += "; "
		}
		s += k + ": " + bad[k]
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	//workflowcheck:ignore order-independent: each entry is handled on its own
	for k := range m {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}
