package workflows

import (
	"context"
	"fmt"
	"strings"

	"github.com/opsflow/opsflow/activities"
	"github.com/opsflow/opsflow/internal/runbook"
	"github.com/opsflow/opsflow/internal/secret"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
)

// RunbookStart asks for a runbook run.
type RunbookStart struct {
	Name    string
	Version int64
	Source  string
	// RunbookID is the stored runbook of that name (0: none).
	RunbookID int64
	// Inputs as the caller gave them; secret ones in clear (they are
	// sealed here and never reach Temporal in clear).
	Inputs    map[string]any
	StartedBy string
	UserID    int64
	// IdempotencyKey names the run: the same key (for the same user)
	// names the same workflow. Empty: a new run.
	IdempotencyKey string
	// Unique names a run without a key (e.g. a UUID).
	Unique string
}

// InputsError lists what is wrong with a run's inputs, keyed
// "inputs.<name>" (the API answers 422 with them).
type InputsError struct{ Fields map[string]string }

func (e *InputsError) Error() string {
	var parts []string
	for _, k := range sortedKeys(e.Fields) {
		parts = append(parts, k+": "+e.Fields[k])
	}
	return "runbook inputs: " + strings.Join(parts, "; ")
}

// PrepareRunbook checks a start's inputs against the runbook and returns
// the run's workflow ID and input, secret inputs sealed to that ID. The
// API starts it through its startWorkflow (kind KindRunbook, target the
// runbook's name); StartRunbook does the same for other callers.
func PrepareRunbook(keys *secret.Keyring, req RunbookStart) (string, RunbookInput, error) {
	rb, err := runbook.Parse([]byte(req.Source)) //workflowcheck:ignore internal/runbook is pure: CEL without clock or randomness, maps read in key order
	if err != nil {
		return "", RunbookInput{}, err
	}
	inputs, bad := rb.CheckInputs(req.Inputs) //workflowcheck:ignore internal/runbook is pure: CEL without clock or randomness, maps read in key order
	if len(bad) > 0 {
		return "", RunbookInput{}, &InputsError{Fields: bad}
	}
	id := RunWorkflowID(KindRunbook, req.UserID, req.IdempotencyKey, req.Unique)
	sec := activities.RunbookSecrets{Run: id, Sealed: map[string]string{}}
	for _, in := range rb.Inputs {
		if in.Type != runbook.InputSecret {
			continue
		}
		v, _ := inputs[in.Name].(string)
		sec.Sealed[in.Name] = keys.Seal([]byte(v), activities.RunbookSecretContext(id, in.Name))
		inputs[in.Name] = activities.SecretRef(in.Name)
	}
	return id, RunbookInput{Name: req.Name, Version: req.Version, RunbookID: req.RunbookID, Source: req.Source, Inputs: inputs, Secrets: sec, StartedBy: req.StartedBy}, nil
}

// StartRunbook starts a runbook run (or attaches to the running one of
// the same idempotency key) and returns its workflow ID. The run records
// itself in the runs read model (kind runbook).
func StartRunbook(ctx context.Context, c client.Client, keys *secret.Keyring, req RunbookStart) (string, error) {
	id, in, err := PrepareRunbook(keys, req)
	if err != nil {
		return "", err
	}
	_, err = c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       id,
		TaskQueue:                TaskQueueOps,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		TypedSearchAttributes: temporal.NewSearchAttributes(SAKind.ValueSet(KindRunbook), SAStartedBy.ValueSet(req.StartedBy),
			SATarget.ValueSet(req.Name)),
	}, Runbook, in)
	if err != nil {
		return "", fmt.Errorf("start runbook %s: %w", req.Name, err)
	}
	return id, nil
}
