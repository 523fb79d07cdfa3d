package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/opsflow/opsflow/activities"
	"github.com/opsflow/opsflow/schema"
	"github.com/opsflow/opsflow/workflows"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
)

var scheduleNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// Job schedules are Temporal Schedules named schedule:<name> that fire a
// ScheduledJob naming the schedule; its job definition is a
// schema.JobSchedule row, secret parameters sealed.

// Runbook schedules are the same, firing a ScheduledRunbook; the runbook,
// its version and its inputs (sealed whole: some may be secrets) are a
// schema.RunbookSchedule row.

type scheduleRequest struct {
	Name string            `json:"name"`
	Cron string            `json:"cron"`
	Job  schema.JobRequest `json:"job"`
	// Runbook, instead of Job, makes a runbook schedule.
	Runbook *scheduleRunbook `json:"runbook,omitempty"`
}

// scheduleRunbook is what a runbook schedule runs: a runbook's version
// (0: its latest at each firing) with inputs.
type scheduleRunbook struct {
	Name    string         `json:"name"`
	Version int64          `json:"version"`
	Inputs  map[string]any `json:"inputs"`
}

type scheduleView struct {
	Name string `json:"name"`
	// Kind is what the schedule fires: job or runbook.
	Kind       string      `json:"kind"`
	Cron       []string    `json:"cron"`
	Paused     bool        `json:"paused"`
	Note       string      `json:"note,omitempty"`
	NextRuns   []time.Time `json:"next_runs,omitempty"`
	RecentRuns []string    `json:"recent_runs,omitempty"`
}

// createSchedule saves a job definition to run on a cron. The definition
// is checked now (it would start a job right away without error), and
// planned afresh at every firing.
func (a *API) createSchedule(c echo.Context) error {
	var req scheduleRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if err := a.makeSchedule(c, req); err != nil {
		return err
	}
	return a.describeSchedule(c, req.Name, http.StatusCreated)
}

// makeSchedule checks a schedule request, records its definition and
// creates its Temporal Schedule; bad input writes nothing.
func (a *API) makeSchedule(c echo.Context, req scheduleRequest) error {
	setAudit(c, "schedule.create", workflows.JobScheduleID(req.Name))
	bad := fieldErrors{}
	if !scheduleNameRE.MatchString(req.Name) {
		bad.add("name", "must be 1-63 lowercase letters, digits or '-'")
	}
	if strings.TrimSpace(req.Cron) == "" {
		bad.add("cron", "required, e.g. 0 3 * * *")
	}
	if err := bad.err(); err != nil {
		return err
	}
	if req.Runbook != nil {
		return a.makeRunbookSchedule(c, req)
	}
	ctx := c.Request().Context()
	def := req.Job
	if _, _, _, err := activities.PlanJobFor(ctx, a.store, userOf(c), &def); err != nil {
		var ve *schema.ValidationError
		if errors.As(err, &ve) {
			fields := map[string]string{}
			for k, v := range ve.Fields {
				fields["job."+k] = v
			}
			return &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: "invalid job definition", Fields: fields}
		}
		if errors.Is(err, activities.ErrLocalTransportAdminOnly) {
			return &Error{Status: http.StatusForbidden, Code: CodeForbidden, Message: err.Error(),
				Fields: map[string]string{"job.targets.transport": "local is admin-only"}}
		}
		return err
	}
	if a.secrets == nil {
		return newError(http.StatusServiceUnavailable, CodeUnavailable, "no secret key configured")
	}
	// The definition goes to the database, its parameters sealed; the
	// Temporal Schedule names it only.
	row := schema.SealSchedule(a.secrets, req.Name, userOf(c).Username, req.Job)
	if err := a.saveSchedule(ctx, row.Name, func() error { return a.store.CreateJobSchedule(ctx, row) }, a.store.DeleteJobSchedule); err != nil {
		return err
	}
	id := workflows.JobScheduleID(req.Name)
	_, err := a.temporal.ScheduleClient().Create(ctx, client.ScheduleOptions{
		ID:   id,
		Spec: client.ScheduleSpec{CronExpressions: []string{req.Cron}},
		Action: &client.ScheduleWorkflowAction{
			ID: id, Workflow: workflows.ScheduledJob, TaskQueue: workflows.TaskQueueOps,
			Args: []any{workflows.ScheduledJobInput{Schedule: req.Name, CreatedBy: userOf(c).Username}},
			TypedSearchAttributes: temporal.NewSearchAttributes(
				workflows.SAKind.ValueSet(workflows.KindJob), workflows.SAStartedBy.ValueSet(userOf(c).Username)),
		},
		Note: "job schedule " + req.Name + " by " + userOf(c).Username,
	})
	if err != nil {
		_ = a.store.DeleteJobSchedule(context.WithoutCancel(ctx), req.Name)
	}
	return scheduleCreateErr(err)
}

// makeRunbookSchedule checks a runbook schedule request (the runbook and
// version exist, the inputs fit them), records its definition, inputs
// sealed, and creates its Temporal Schedule, which carries the name and
// creator only; bad input writes nothing.
func (a *API) makeRunbookSchedule(c echo.Context, req scheduleRequest) error {
	ctx := c.Request().Context()
	spec := *req.Runbook
	if req.Job.ScriptID != 0 {
		return &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: "a schedule runs a job or a runbook, not both",
			Fields: map[string]string{"job": "not with runbook"}}
	}
	invalid := func(field, msg string) error {
		return &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: "invalid runbook", Fields: map[string]string{field: msg}}
	}
	if spec.Version < 0 {
		return invalid("runbook.version", "must be 0 (the latest at each firing) or a version number")
	}
	rb, err := a.store.Runbook(ctx, spec.Name)
	if errors.Is(err, schema.ErrNotFound) {
		return invalid("runbook.name", "no such runbook")
	} else if err != nil {
		return err
	}
	version := spec.Version
	if version == 0 {
		version = rb.LatestVersion
	}
	ver, err := a.store.RunbookVersion(ctx, rb.ID, version)
	if errors.Is(err, schema.ErrNotFound) {
		return invalid("runbook.version", "no such version")
	} else if err != nil {
		return err
	}
	if a.secrets == nil {
		return newError(http.StatusServiceUnavailable, CodeUnavailable, "no secret key configured")
	}
	// Checked as a start would check them; the firing checks them again
	// against the version it runs.
	if _, _, err := workflows.PrepareRunbook(a.secrets, workflows.RunbookStart{Name: rb.Name, Version: ver.Version, Source: ver.Source,
		Inputs: spec.Inputs, Unique: "check"}); err != nil {
		var bad *workflows.InputsError
		if errors.As(err, &bad) {
			fields := map[string]string{}
			for k, v := range bad.Fields {
				fields["runbook."+k] = v
			}
			return &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: "invalid inputs", Fields: fields}
		}
		return err
	}
	user := userOf(c).Username
	row := schema.SealRunbookSchedule(a.secrets, req.Name, user, rb.Name, spec.Version, spec.Inputs)
	if err := a.saveSchedule(ctx, row.Name, func() error { return a.store.CreateRunbookSchedule(ctx, row) }, a.store.DeleteRunbookSchedule); err != nil {
		return err
	}
	id := workflows.JobScheduleID(req.Name)
	_, err = a.temporal.ScheduleClient().Create(ctx, client.ScheduleOptions{
		ID:   id,
		Spec: client.ScheduleSpec{CronExpressions: []string{req.Cron}},
		Action: &client.ScheduleWorkflowAction{
			ID: id, Workflow: workflows.ScheduledRunbook, TaskQueue: workflows.TaskQueueOps,
			Args: []any{workflows.ScheduledRunbookInput{Schedule: req.Name, CreatedBy: user}},
			TypedSearchAttributes: temporal.NewSearchAttributes(workflows.SAKind.ValueSet(workflows.KindRunbook),
				workflows.SAStartedBy.ValueSet(user), workflows.SATarget.ValueSet(rb.Name)),
		},
		Note: "runbook schedule " + req.Name + " by " + user,
	})
	if err != nil {
		_ = a.store.DeleteRunbookSchedule(context.WithoutCancel(ctx), req.Name)
	}
	return scheduleCreateErr(err)
}

// scheduleCreateErr is the answer to a schedule's creation failing in
// Temporal.
func scheduleCreateErr(err error) error {
	var exists *serviceerror.AlreadyExists
	switch {
	case errors.As(err, &exists) || err != nil && strings.Contains(err.Error(), "already"):
		return scheduleTaken()
	case err != nil && strings.Contains(strings.ToLower(err.Error()), "invalid"):
		return &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: "invalid cron", Fields: map[string]string{"cron": "not a valid cron expression"}}
	}
	return err
}

func scheduleTaken() error {
	return &Error{Status: http.StatusConflict, Code: CodeConflict, Message: "schedule exists", Fields: map[string]string{"name": "already taken"}}
}

// saveSchedule records schedule name's definition (create; del removes
// it). A row left by a schedule whose Temporal Schedule is gone (a crash
// between the two writes) is replaced.
func (a *API) saveSchedule(ctx context.Context, name string, create func() error, del func(context.Context, string) error) error {
	err := create()
	if !errors.Is(err, schema.ErrConflict) {
		return err
	}
	_, derr := a.temporal.ScheduleClient().GetHandle(ctx, workflows.JobScheduleID(name)).Describe(ctx)
	var nf *serviceerror.NotFound
	if !errors.As(derr, &nf) {
		return scheduleTaken()
	}
	if err := del(ctx, name); err != nil {
		return err
	}
	if err := create(); errors.Is(err, schema.ErrConflict) {
		return scheduleTaken()
	} else if err != nil {
		return err
	}
	return nil
}

func (a *API) describeSchedule(c echo.Context, name string, status int) error {
	v, err := a.scheduleState(c.Request().Context(), name)
	if err != nil {
		return scheduleErr(err)
	}
	return c.JSON(status, v)
}

// scheduleState is job schedule name as Temporal has it now (the list
// lags behind changes; a describe does not).
func (a *API) scheduleState(ctx context.Context, name string) (scheduleView, error) {
	d, err := a.temporal.ScheduleClient().GetHandle(ctx, workflows.JobScheduleID(name)).Describe(ctx)
	if err != nil {
		return scheduleView{}, err
	}
	v := scheduleView{Name: name, Kind: workflows.KindJob, NextRuns: d.Info.NextActionTimes, Cron: cronOf(d.Schedule.Spec)}
	if act, ok := d.Schedule.Action.(*client.ScheduleWorkflowAction); ok {
		v.Kind = scheduleKind(fmt.Sprint(act.Workflow))
	}
	if d.Schedule.State != nil {
		v.Paused, v.Note = d.Schedule.State.Paused, d.Schedule.State.Note
	}
	for _, r := range d.Info.RecentActions {
		if r.StartWorkflowResult != nil {
			v.RecentRuns = append(v.RecentRuns, v.Kind+":"+r.StartWorkflowResult.WorkflowID)
		}
	}
	return v, nil
}

// scheduleKind is what a schedule firing workflow type wf runs.
func scheduleKind(wf string) string {
	if wf == "ScheduledRunbook" {
		return workflows.KindRunbook
	}
	return workflows.KindJob
}

func scheduleErr(err error) error {
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return newError(http.StatusNotFound, CodeNotFound, "no such schedule")
	}
	return err
}

func (a *API) getSchedule(c echo.Context) error {
	return a.describeSchedule(c, c.Param("name"), http.StatusOK)
}

func (a *API) listSchedules(c echo.Context) error {
	items, _, err := a.scheduleLists(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"items": items})
}

// scheduleLists lists the job schedules and the discovery schedules.
func (a *API) scheduleLists(ctx context.Context) ([]scheduleView, []discoveryScheduleView, error) {
	it, err := a.temporal.ScheduleClient().List(ctx, client.ScheduleListOptions{PageSize: 100})
	if err != nil {
		return nil, nil, err
	}
	jobs, discoveries := []scheduleView{}, []discoveryScheduleView{}
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			return nil, nil, err
		}
		if name, ok := workflows.JobScheduleName(e.ID); ok {
			jobs = append(jobs, scheduleView{Name: name, Kind: scheduleKind(e.WorkflowType.Name), Paused: e.Paused, Note: e.Note, NextRuns: e.NextActionTimes, Cron: cronOf(e.Spec)})
			continue
		}
		if !strings.HasPrefix(e.ID, workflows.DiscoverySchedulePrefix) {
			continue
		}
		v := discoveryScheduleView{ID: e.ID, Paused: e.Paused, NextRuns: e.NextActionTimes, Cron: cronOf(e.Spec)}
		for _, r := range e.RecentActions {
			if r.StartWorkflowResult != nil {
				v.RecentRuns = append(v.RecentRuns, r.StartWorkflowResult.WorkflowID)
			}
		}
		discoveries = append(discoveries, v)
	}
	sort.Slice(jobs, func(i, j int) bool { return jobs[i].Name < jobs[j].Name })
	return jobs, discoveries, nil
}

// controlSchedule pauses, resumes, triggers or deletes a schedule.
func (a *API) controlSchedule(op string) echo.HandlerFunc {
	return func(c echo.Context) error {
		name := c.Param("name")
		if err := a.scheduleOp(c, name, op); err != nil {
			return err
		}
		if op == "delete" {
			return c.NoContent(http.StatusNoContent)
		}
		return a.describeSchedule(c, name, http.StatusOK)
	}
}

// scheduleOp pauses, resumes, triggers or deletes job schedule name.
func (a *API) scheduleOp(c echo.Context, name, op string) error {
	setAudit(c, "schedule."+op, workflows.JobScheduleID(name))
	ctx := c.Request().Context()
	h := a.temporal.ScheduleClient().GetHandle(ctx, workflows.JobScheduleID(name))
	var err error
	switch op {
	case "pause":
		err = h.Pause(ctx, client.SchedulePauseOptions{Note: "paused by " + userOf(c).Username})
	case "resume":
		err = h.Unpause(ctx, client.ScheduleUnpauseOptions{Note: "resumed by " + userOf(c).Username})
	case "trigger":
		// A firing runs as the schedule's creator; one on the local
		// transport is admin-only for whoever triggers it too.
		if err := a.mayTriggerSchedule(c, name); err != nil {
			return err
		}
		err = h.Trigger(ctx, client.ScheduleTriggerOptions{})
	case "delete":
		err = h.Delete(ctx)
		var nf *serviceerror.NotFound
		if err == nil || errors.As(err, &nf) {
			if derr := a.store.DeleteJobSchedule(ctx, name); derr != nil {
				return derr
			}
			if derr := a.store.DeleteRunbookSchedule(ctx, name); derr != nil {
				return derr
			}
		}
	default:
		return newError(http.StatusNotFound, CodeNotFound, "no such action")
	}
	return scheduleErr(err)
}

// mayTriggerSchedule refuses a non-admin's trigger of a schedule whose job
// runs on the local transport, and of a runbook schedule someone else
// made: its run acts with its creator's rights (an admin's runbook may
// run local-transport scripts), which the trigger must not lend.
func (a *API) mayTriggerSchedule(c echo.Context, name string) error {
	ctx := c.Request().Context()
	if rs, err := a.store.RunbookScheduleByName(ctx, name); err == nil {
		if u := userOf(c); u.Role != schema.RoleAdmin && u.Username != rs.CreatedBy {
			return newError(http.StatusForbidden, CodeForbidden, "a runbook schedule runs as its creator ("+rs.CreatedBy+"): only they or an admin may trigger it")
		}
		return nil
	} else if !errors.Is(err, schema.ErrNotFound) {
		return err
	}
	row, err := a.store.JobScheduleByName(ctx, name)
	if errors.Is(err, schema.ErrNotFound) {
		return nil // Temporal answers for it (none, or made before definitions were kept here)
	} else if err != nil {
		return err
	}
	req := schema.JobRequest{Targets: row.Targets}
	if row.CredentialID > 0 {
		if cr, err := a.store.Credential(ctx, row.CredentialID); err == nil && cr.Kind == schema.CredLocal {
			req.Targets.Transport = schema.TransportLocal
		}
	}
	if err := activities.AuthorizeJob(userOf(c), &req); err != nil {
		return &Error{Status: http.StatusForbidden, Code: CodeForbidden, Message: err.Error()}
	}
	return nil
}
