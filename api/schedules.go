package api

import (
	"errors"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/opsflow/opsflow/schema"
	"github.com/opsflow/opsflow/workflows"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
)

var scheduleNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// Job schedules are Temporal Schedules named schedule:<name> that fire a
// ScheduledJob with a saved job definition.
const schedulePrefix = "schedule:"

type scheduleRequest struct {
	Name string            `json:"name"`
	Cron string            `json:"cron"`
	Job  schema.JobRequest `json:"job"`
}

type scheduleView struct {
	Name       string      `json:"name"`
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
	setAudit(c, "schedule.create", schedulePrefix+req.Name)
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
	def := req.Job
	if _, _, _, err := a.store.PlanJob(c.Request().Context(), &def); err != nil {
		var ve *schema.ValidationError
		if errors.As(err, &ve) {
			fields := map[string]string{}
			for k, v := range ve.Fields {
				fields["job."+k] = v
			}
			return &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: "invalid job definition", Fields: fields}
		}
		return err
	}
	id := schedulePrefix + req.Name
	_, err := a.temporal.ScheduleClient().Create(c.Request().Context(), client.ScheduleOptions{
		ID:   id,
		Spec: client.ScheduleSpec{CronExpressions: []string{req.Cron}},
		Action: &client.ScheduleWorkflowAction{
			ID: id, Workflow: workflows.ScheduledJob, TaskQueue: workflows.TaskQueueOps,
			Args: []any{workflows.ScheduledJobInput{Definition: req.Job, CreatedBy: userOf(c).Username}},
			TypedSearchAttributes: temporal.NewSearchAttributes(
				workflows.SAKind.ValueSet(workflows.KindJob), workflows.SAStartedBy.ValueSet(userOf(c).Username)),
		},
		Note: "job schedule " + req.Name + " by " + userOf(c).Username,
	})
	var exists *serviceerror.AlreadyExists
	switch {
	case errors.As(err, &exists) || err != nil && strings.Contains(err.Error(), "already"):
		return &Error{Status: http.StatusConflict, Code: CodeConflict, Message: "schedule exists", Fields: map[string]string{"name": "already taken"}}
	case err != nil && strings.Contains(strings.ToLower(err.Error()), "invalid"):
		return &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: "invalid cron", Fields: map[string]string{"cron": "not a valid cron expression"}}
	case err != nil:
		return err
	}
	return a.describeSchedule(c, req.Name, http.StatusCreated)
}

func (a *API) describeSchedule(c echo.Context, name string, status int) error {
	d, err := a.temporal.ScheduleClient().GetHandle(c.Request().Context(), schedulePrefix+name).Describe(c.Request().Context())
	if err != nil {
		return scheduleErr(err)
	}
	v := scheduleView{Name: name, NextRuns: d.Info.NextActionTimes}
	if d.Schedule.Spec != nil {
		v.Cron = d.Schedule.Spec.CronExpressions
	}
	if d.Schedule.State != nil {
		v.Paused, v.Note = d.Schedule.State.Paused, d.Schedule.State.Note
	}
	for _, r := range d.Info.RecentActions {
		if r.StartWorkflowResult != nil {
			v.RecentRuns = append(v.RecentRuns, "job:"+r.StartWorkflowResult.WorkflowID)
		}
	}
	return c.JSON(status, v)
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
	it, err := a.temporal.ScheduleClient().List(c.Request().Context(), client.ScheduleListOptions{PageSize: 100})
	if err != nil {
		return err
	}
	items := []scheduleView{}
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			return err
		}
		name, ok := strings.CutPrefix(e.ID, schedulePrefix)
		if !ok {
			continue // discovery schedules and others
		}
		v := scheduleView{Name: name, Paused: e.Paused, Note: e.Note, NextRuns: e.NextActionTimes}
		if e.Spec != nil {
			v.Cron = e.Spec.CronExpressions
		}
		items = append(items, v)
	}
	return c.JSON(http.StatusOK, map[string]any{"items": items})
}

// controlSchedule pauses, resumes, triggers or deletes a schedule.
func (a *API) controlSchedule(op string) echo.HandlerFunc {
	return func(c echo.Context) error {
		name := c.Param("name")
		setAudit(c, "schedule."+op, schedulePrefix+name)
		ctx := c.Request().Context()
		h := a.temporal.ScheduleClient().GetHandle(ctx, schedulePrefix+name)
		var err error
		switch op {
		case "pause":
			err = h.Pause(ctx, client.SchedulePauseOptions{Note: "paused by " + userOf(c).Username})
		case "resume":
			err = h.Unpause(ctx, client.ScheduleUnpauseOptions{Note: "resumed by " + userOf(c).Username})
		case "trigger":
			err = h.Trigger(ctx, client.ScheduleTriggerOptions{})
		case "delete":
			if err = h.Delete(ctx); err == nil {
				return c.NoContent(http.StatusNoContent)
			}
		}
		if err != nil {
			return scheduleErr(err)
		}
		return a.describeSchedule(c, name, http.StatusOK)
	}
}
