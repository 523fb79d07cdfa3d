package activities

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"

	"github.com/opsflow/opsflow/internal/runbook"
	"github.com/opsflow/opsflow/schema"
	"go.temporal.io/sdk/temporal"
)

// PrepareScheduledRunbookInput names the runbook schedule that fired and
// the run it starts. The definition is read from the database
// (schema.RunbookSchedule), never from here.
type PrepareScheduledRunbookInput struct {
	Schedule  string
	CreatedBy string
	// Run is the workflow ID of the run the firing starts: its secret
	// inputs are sealed to it.
	Run string
}

// PrepareScheduledRunbookResult is the run to start: the runbook's
// version and source, its inputs checked, secret ones replaced by their
// references (SecretRef) and sealed to the run in Secrets.
type PrepareScheduledRunbookResult struct {
	Name      string
	Version   int64
	RunbookID int64
	Source    string
	Inputs    map[string]any
	Secrets   RunbookSecrets
	StartedBy string
}

// runbookRunnerRoles may start runbook runs (the API's operators).
var runbookRunnerRoles = []string{schema.RoleAdmin, schema.RoleOperator}

// PrepareScheduledRunbook reads a runbook schedule's definition and makes
// the run of this firing as its creator is now: a creator since disabled
// or demoted, a runbook since deleted or inputs the version no longer
// accepts fail this firing (non-retryable). What the run's steps do is
// authorized at each step as the creator too (CreateRunbookJob).
func (a *Runbooks) PrepareScheduledRunbook(ctx context.Context, in PrepareScheduledRunbookInput) (PrepareScheduledRunbookResult, error) {
	fail := func(typ, msg string) (PrepareScheduledRunbookResult, error) {
		return PrepareScheduledRunbookResult{}, temporal.NewNonRetryableApplicationError(msg, typ, nil)
	}
	rs, err := a.Store.RunbookScheduleByName(ctx, in.Schedule)
	if errors.Is(err, schema.ErrNotFound) {
		return fail(ErrTypeInvalidInput, "runbook schedule "+in.Schedule+" has no definition (deleted)")
	} else if err != nil {
		return PrepareScheduledRunbookResult{}, err
	}
	by, err := a.Store.UserByUsername(ctx, rs.CreatedBy)
	if errors.Is(err, schema.ErrNotFound) {
		return fail(ErrTypeForbidden, "the schedule's creator "+rs.CreatedBy+" no longer exists")
	} else if err != nil {
		return PrepareScheduledRunbookResult{}, err
	}
	if by.Disabled || !slices.Contains(runbookRunnerRoles, by.Role) {
		return fail(ErrTypeForbidden, "the schedule's creator "+rs.CreatedBy+" may no longer run runbooks")
	}
	rb, err := a.Store.Runbook(ctx, rs.Runbook)
	if errors.Is(err, schema.ErrNotFound) {
		return fail(ErrTypeInvalidInput, "runbook "+rs.Runbook+" no longer exists")
	} else if err != nil {
		return PrepareScheduledRunbookResult{}, err
	}
	version := rs.Version
	if version == 0 {
		version = rb.LatestVersion
	}
	ver, err := a.Store.RunbookVersion(ctx, rb.ID, version)
	if errors.Is(err, schema.ErrNotFound) {
		return fail(ErrTypeInvalidInput, "runbook "+rs.Runbook+" has no version "+strconv.FormatInt(version, 10))
	} else if err != nil {
		return PrepareScheduledRunbookResult{}, err
	}
	raw, err := rs.OpenInputs(a.Secrets)
	if err != nil {
		return fail(ErrTypeInvalidInput, err.Error())
	}
	parsed, err := runbook.Parse([]byte(ver.Source))
	if err != nil {
		return fail(ErrTypeInvalidInput, "runbook "+rs.Runbook+": "+err.Error())
	}
	inputs, bad := parsed.CheckInputs(raw)
	if len(bad) > 0 {
		msg := "the schedule's inputs no longer fit runbook " + rs.Runbook + " version " + strconv.FormatInt(version, 10) + ":"
		for _, k := range slices.Sorted(maps.Keys(bad)) {
			msg += " " + k + ": " + bad[k] + ";"
		}
		return fail(ErrTypeInvalidInput, msg)
	}
	sec := RunbookSecrets{Run: in.Run, Sealed: map[string]string{}}
	for _, def := range parsed.Inputs {
		if def.Type != runbook.InputSecret {
			continue
		}
		v, _ := inputs[def.Name].(string)
		sec.Sealed[def.Name] = a.Secrets.Seal([]byte(v), RunbookSecretContext(in.Run, def.Name))
		inputs[def.Name] = SecretRef(def.Name)
	}
	return PrepareScheduledRunbookResult{Name: rb.Name, Version: ver.Version, RunbookID: rb.ID, Source: ver.Source,
		Inputs: inputs, Secrets: sec, StartedBy: rs.CreatedBy}, nil
}
