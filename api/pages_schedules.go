package api

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/opsflow/opsflow/schema"
	"github.com/opsflow/opsflow/workflows"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
)

// cronOf is a schedule's spec as cron text. Temporal keeps a cron
// expression as a structured calendar, and lists and describes it so
// (CronExpressions comes back empty): the calendar is written back as
// cron fields (minute hour day-of-month month day-of-week).
func cronOf(spec *client.ScheduleSpec) []string {
	if spec == nil {
		return nil
	}
	out := append([]string{}, spec.CronExpressions...)
	for _, cal := range spec.Calendars {
		out = append(out, strings.Join([]string{cronField(cal.Minute, 0, 59), cronField(cal.Hour, 0, 23),
			cronField(cal.DayOfMonth, 1, 31), cronField(cal.Month, 1, 12), cronField(cal.DayOfWeek, 0, 6)}, " "))
	}
	for _, iv := range spec.Intervals {
		out = append(out, "every "+iv.Every.String())
	}
	return out
}

func cronField(rs []client.ScheduleRange, lo, hi int) string {
	if len(rs) == 0 {
		return "*"
	}
	parts := make([]string, len(rs))
	for i, r := range rs {
		end, step := max(r.End, r.Start), max(r.Step, 1)
		switch {
		case r.Start == lo && end == hi && step == 1:
			parts[i] = "*"
		case r.Start == lo && end == hi:
			parts[i] = fmt.Sprintf("*/%d", step)
		case r.Start == end:
			parts[i] = strconv.Itoa(r.Start)
		case step == 1:
			parts[i] = fmt.Sprintf("%d-%d", r.Start, end)
		default:
			parts[i] = fmt.Sprintf("%d-%d/%d", r.Start, end, step)
		}
	}
	return strings.Join(parts, ",")
}

// scheduleRow is a job schedule as the schedules page lists it: its
// Temporal state beside its definition (nil if it has none here).
type scheduleRow struct {
	scheduleView
	Def *schema.JobSchedule
	// Runbook is a runbook schedule's definition.
	Runbook *schema.RunbookSchedule
}

// maxScheduleRows bounds the schedules one page describes.
const maxScheduleRows = 200

// schedulesPage lists the job schedules and discovery schedules. The
// Temporal list lags behind changes (a schedule just made, paused or
// deleted shows as it was), so each schedule, listed or defined here, is
// described afresh, and one gone is left out.
func (a *API) schedulesPage(c echo.Context) error {
	ctx := c.Request().Context()
	jobs, listed, err := a.scheduleLists(ctx)
	if err != nil {
		return err
	}
	defs, err := a.store.JobSchedules(ctx)
	if err != nil {
		return err
	}
	rdefs, err := a.store.RunbookSchedules(ctx)
	if err != nil {
		return err
	}
	byName := map[string]*schema.JobSchedule{}
	rbByName := map[string]*schema.RunbookSchedule{}
	var names []string
	for i := range defs {
		byName[defs[i].Name] = &defs[i]
		names = append(names, defs[i].Name)
	}
	for i := range rdefs {
		rbByName[rdefs[i].Name] = &rdefs[i]
		names = append(names, rdefs[i].Name)
	}
	for _, v := range jobs {
		if byName[v.Name] == nil {
			names = append(names, v.Name)
		}
	}
	slices.Sort(names)
	names = slices.Compact(names)
	var rows []scheduleRow
	var nf *serviceerror.NotFound
	for _, name := range names[:min(len(names), maxScheduleRows)] {
		v, err := a.scheduleState(ctx, name)
		if errors.As(err, &nf) {
			continue
		} else if err != nil {
			return err
		}
		row := scheduleRow{scheduleView: v}
		if v.Kind == workflows.KindRunbook {
			row.Runbook = rbByName[name]
		} else {
			row.Def = byName[name]
		}
		rows = append(rows, row)
	}
	var discoveries []discoveryScheduleView
	for _, v := range listed[:min(len(listed), maxScheduleRows)] {
		d, err := a.temporal.ScheduleClient().GetHandle(ctx, v.ID).Describe(ctx)
		if errors.As(err, &nf) {
			continue
		} else if err != nil {
			return err
		}
		v.NextRuns, v.Cron = d.Info.NextActionTimes, cronOf(d.Schedule.Spec)
		if d.Schedule.State != nil {
			v.Paused = d.Schedule.State.Paused
		}
		discoveries = append(discoveries, v)
	}
	p := a.newPage(c, "Schedules", "schedules")
	return a.render(c, http.StatusOK, "schedules", struct {
		*page
		Jobs        []scheduleRow
		Discoveries []discoveryScheduleView
		CanEdit     bool
	}{p, rows, discoveries, canOperate(p.User)})
}

type scheduleNewPage struct {
	*jobNewPage
	Scripts    []schema.Script
	Name, Cron string
	// Pinned runs the version shown at every firing; otherwise each
	// firing runs the script's latest version.
	Pinned bool
}

// scheduleNewPage is the schedule form: first the script, then (with
// ?script=) its parameters, targets and cron.
func (a *API) scheduleNewPage(c echo.Context) error {
	sid, _ := strconv.ParseInt(c.QueryParam("script"), 10, 64)
	ver, _ := strconv.ParseInt(c.QueryParam("version"), 10, 64)
	pg, err := a.scheduleForm(c, sid, ver)
	if err != nil {
		return err
	}
	return a.render(c, http.StatusOK, "schedule_new", pg)
}

func (a *API) scheduleForm(c echo.Context, sid, ver int64) (*scheduleNewPage, error) {
	scripts, err := a.store.Scripts(c.Request().Context(), "")
	if err != nil {
		return nil, err
	}
	if sid == 0 {
		return &scheduleNewPage{jobNewPage: &jobNewPage{page: a.newPage(c, "New schedule", "schedules"), Errors: map[string]string{}}, Scripts: scripts}, nil
	}
	jp, err := a.jobNewData(c, sid, ver)
	if errors.Is(err, schema.ErrNotFound) {
		return nil, &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: "no such script or version",
			Fields: map[string]string{"script_id": "no such script or version"}}
	} else if err != nil {
		return nil, err
	}
	jp.page = a.newPage(c, "New schedule: "+jp.Script.Name, "schedules")
	return &scheduleNewPage{jobNewPage: jp, Scripts: scripts, Pinned: ver != 0}, nil
}

func (a *API) scheduleCreateForm(c echo.Context) error {
	sid, _ := strconv.ParseInt(c.FormValue("script_id"), 10, 64)
	ver, _ := strconv.ParseInt(c.FormValue("version"), 10, 64)
	pg, err := a.scheduleForm(c, sid, ver)
	if err != nil {
		return err
	}
	if sid == 0 {
		pg.Errors["script_id"] = "choose a script"
		pg.page.Error = "choose a script"
		return a.render(c, http.StatusUnprocessableEntity, "schedule_new", pg)
	}
	req, form := jobRequestFromForm(c, pg.Version)
	req.Version = ver // 0: the latest at each firing
	pg.Form, pg.Name, pg.Cron = form, strings.TrimSpace(c.FormValue("name")), strings.TrimSpace(c.FormValue("cron"))
	if err := a.makeSchedule(c, scheduleRequest{Name: pg.Name, Cron: pg.Cron, Job: req}); err != nil {
		e := toError(err)
		if e.Status >= 500 {
			return err
		}
		pg.page.Error = formError(err)
		for k, v := range e.Fields {
			pg.Errors[strings.TrimPrefix(k, "job.")] = v
		}
		return a.render(c, e.Status, "schedule_new", pg)
	}
	return c.Redirect(http.StatusSeeOther, "/schedules?flash="+url.QueryEscape("Schedule "+pg.Name+" created."))
}

// scheduleOpForm pauses, resumes, triggers or (confirmed) deletes a job
// schedule from the schedules page.
func (a *API) scheduleOpForm(c echo.Context) error {
	name, op := c.Param("name"), c.Param("op")
	if op == "delete" && !confirmed(c) {
		return a.confirmPage(c, confirmation{Title: "Delete schedule " + name + "?", Nav: "schedules",
			Message: "It stops firing, and its definition is removed; jobs it already started stay. This cannot be undone.",
			Action:  c.Request().URL.Path, Button: "Delete the schedule", Danger: true, Resubmit: true, Back: "/schedules"})
	}
	if err := a.scheduleOp(c, name, op); err != nil {
		if e := toError(err); e.Status < 500 {
			return c.Redirect(http.StatusSeeOther, "/schedules?flash="+url.QueryEscape(e.Message))
		}
		return err
	}
	done := map[string]string{"pause": "paused", "resume": "resumed", "trigger": "triggered: a job starts now", "delete": "deleted"}[op]
	return c.Redirect(http.StatusSeeOther, "/schedules?flash="+url.QueryEscape("Schedule "+name+" "+done+"."))
}

func (a *API) discoveryScheduleDeleteForm(c echo.Context) error {
	id := c.Param("id")
	if !confirmed(c) {
		return a.confirmPage(c, confirmation{Title: "Delete discovery schedule " + id + "?", Nav: "schedules",
			Message: "The recurring discovery stops; CIs it found stay.", Action: c.Request().URL.Path,
			Button: "Delete the discovery schedule", Danger: true, Resubmit: true, Back: "/schedules"})
	}
	if err := a.removeDiscoverySchedule(c, id); err != nil {
		if e := toError(err); e.Status < 500 {
			return c.Redirect(http.StatusSeeOther, "/schedules?flash="+url.QueryEscape(e.Message))
		}
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/schedules?flash="+url.QueryEscape("Discovery schedule deleted."))
}
