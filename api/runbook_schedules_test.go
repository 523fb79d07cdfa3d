package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opsflow/opsflow/internal/secret"
	"github.com/opsflow/opsflow/schema"
	"github.com/opsflow/opsflow/workflows"
)

// TestRunbookSchedules: /api/v1/schedules takes a runbook with inputs;
// bad ones are 422 naming the field and store nothing; the secret input
// is sealed in the database and absent from the schedule's Temporal
// payload and from the firing's histories in clear; a trigger fires a
// Runbook run as the creator, which reaches the step with the secret;
// pause, resume, list, get, the schedules page and delete work as for job
// schedules; a creator since demoted to viewer makes the next firing fail.
func TestRunbookSchedules(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	p := fmt.Sprintf("rs%d", time.Now().UnixNano())
	tok := "tok-" + p + "-Xk7"
	var good, bad atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "Bearer "+tok && r.URL.Query().Get("env") == "prod" {
			good.Add(1)
		} else {
			bad.Add(1)
		}
	}))
	defer srv.Close()
	rbName := "sched-" + p[len(p)-8:]
	e.createRunbook(rbRunDoc(rbName, srv.URL))

	// A creator of its own, to demote at the end.
	owner := e.createUser(schema.RoleOperator, "owner-password-1234")
	e.tokens["owner"], e.users["owner"] = e.createToken(owner, nil), owner

	name := "rb-" + p[len(p)-10:]
	inputs := map[string]any{"env": "prod", "token": tok}
	for _, c := range []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{"name": name, "cron": "0 3 1 1 *", "runbook": map[string]any{"name": "no-such-runbook", "inputs": inputs}}, "runbook.name"},
		{map[string]any{"name": name, "cron": "0 3 1 1 *", "runbook": map[string]any{"name": rbName, "version": 9, "inputs": inputs}}, "runbook.version"},
		{map[string]any{"name": name, "cron": "0 3 1 1 *", "runbook": map[string]any{"name": rbName, "inputs": map[string]any{"env": "qa", "token": tok}}}, "runbook.inputs.env"},
		{map[string]any{"name": name, "cron": "whenever", "runbook": map[string]any{"name": rbName, "inputs": inputs}}, "cron"},
	} {
		if res := e.do(http.MethodPost, "/api/v1/schedules", "owner", c.body); res.Status != 422 || res.apiError(t).Fields[c.field] == "" {
			t.Errorf("%s: %d %s", c.field, res.Status, res.Body)
		}
	}
	if _, err := e.store.RunbookScheduleByName(ctx, name); !errors.Is(err, schema.ErrNotFound) {
		t.Fatalf("a refused schedule left a row: %v", err)
	}
	if res := e.do(http.MethodPost, "/api/v1/schedules", "viewer", map[string]any{"name": name, "cron": "0 3 1 1 *",
		"runbook": map[string]any{"name": rbName, "inputs": inputs}}); res.Status != http.StatusForbidden {
		t.Fatalf("viewer create: %d", res.Status)
	}
	res := e.do(http.MethodPost, "/api/v1/schedules", "owner", map[string]any{"name": name, "cron": "0 3 1 1 *",
		"runbook": map[string]any{"name": rbName, "inputs": inputs}})
	if res.Status != http.StatusCreated {
		t.Fatalf("create: %d %s", res.Status, res.Body)
	}
	t.Cleanup(func() { e.do(http.MethodDelete, "/api/v1/schedules/"+name, "admin", nil) })
	var sv scheduleView
	res.json(t, &sv)
	if sv.Kind != workflows.KindRunbook || len(sv.NextRuns) == 0 {
		t.Fatalf("created: %+v", sv)
	}
	if dup := e.do(http.MethodPost, "/api/v1/schedules", "owner", map[string]any{"name": name, "cron": "0 3 * * *",
		"runbook": map[string]any{"name": rbName, "inputs": inputs}}); dup.Status != http.StatusConflict {
		t.Fatalf("duplicate: %d %s", dup.Status, dup.Body)
	}

	// In the database: sealed, bound to the schedule.
	row, err := e.store.RunbookScheduleByName(ctx, name)
	if err != nil || row.Inputs == "" || strings.Contains(row.Inputs, tok) || row.CreatedBy != owner.Username || row.Runbook != rbName {
		t.Fatalf("row: %+v %v", row, err)
	}
	// In Temporal: the name and the creator, nothing else.
	sch := rawSchedule(t, e.temporal, workflows.JobScheduleID(name))
	checkPayloads(t, e.keys, payloadsIn(sch, "schedule"), tok)
	args := sch.GetSchedule().GetAction().GetStartWorkflow().GetInput().GetPayloads()
	dec, err := (&secret.PayloadCodec{Keys: e.keys}).Decode(args)
	if err != nil || len(dec) != 1 || !strings.Contains(string(dec[0].Data), `"Schedule":"`+name+`"`) || strings.Contains(string(dec[0].Data), "prod") {
		t.Fatalf("the schedule's action carries more than a reference: %v %v", dec, err)
	}

	// Pause, resume, get, list, page.
	e.do(http.MethodPost, "/api/v1/schedules/"+name+"/pause", "owner", map[string]any{}).json(t, &sv)
	if !sv.Paused || sv.Kind != workflows.KindRunbook {
		t.Fatalf("pause: %+v", sv)
	}
	e.do(http.MethodPost, "/api/v1/schedules/"+name+"/resume", "owner", map[string]any{}).json(t, &sv)
	if sv.Paused {
		t.Fatalf("resume: %+v", sv)
	}
	pollEvery(t, 30*time.Second, 200*time.Millisecond, "the schedule in the list", func() bool {
		list := e.do(http.MethodGet, "/api/v1/schedules", "viewer", nil)
		return strings.Contains(string(list.Body), `"name":"`+name+`","kind":"runbook"`)
	})
	if page := e.do(http.MethodGet, "/schedules", "viewer", nil); page.Status != 200 || !strings.Contains(string(page.Body), "runbook "+rbName) ||
		!strings.Contains(string(page.Body), `data-schedule="`+name+`"`) {
		t.Fatalf("schedules page: %d", page.Status)
	}

	// A firing: a Runbook run as the creator, the secret reaching its step.
	fire := func(by string) string {
		t.Helper()
		before := 0
		if d, err := e.temporal.ScheduleClient().GetHandle(ctx, workflows.JobScheduleID(name)).Describe(ctx); err == nil {
			before = len(d.Info.RecentActions)
		}
		if r := e.do(http.MethodPost, "/api/v1/schedules/"+name+"/trigger", by, map[string]any{}); r.Status != 200 {
			t.Fatalf("trigger: %d %s", r.Status, r.Body)
		}
		var fired string
		pollEvery(t, 60*time.Second, 200*time.Millisecond, "the firing", func() bool {
			d, err := e.temporal.ScheduleClient().GetHandle(ctx, workflows.JobScheduleID(name)).Describe(ctx)
			if err != nil || len(d.Info.RecentActions) <= before || d.Info.RecentActions[len(d.Info.RecentActions)-1].StartWorkflowResult == nil {
				return false
			}
			fired = d.Info.RecentActions[len(d.Info.RecentActions)-1].StartWorkflowResult.WorkflowID
			return true
		})
		return fired
	}
	// Another operator may not fire it: the run would act as its creator.
	if r := e.do(http.MethodPost, "/api/v1/schedules/"+name+"/trigger", "operator", map[string]any{}); r.Status != http.StatusForbidden {
		t.Fatalf("another operator's trigger: %d %s", r.Status, r.Body)
	}
	fired := fire("owner")
	var out workflows.RunbookResult
	if err := e.temporal.GetWorkflow(ctx, fired, "").Get(ctx, &out); err != nil || out.Status != schema.RunCompleted {
		t.Fatalf("firing: %+v %v", out, err)
	}
	if good.Load() != 1 || bad.Load() != 0 {
		t.Fatalf("the http step: %d calls with the secret, %d without", good.Load(), bad.Load())
	}
	runID := workflows.ScheduledRunbookWorkflowID(fired)
	v := e.runbookRun(runID)
	if v.Kind != workflows.KindRunbook || v.Status != schema.RunCompleted || v.StartedBy != owner.Username || v.Runbook == nil || v.Runbook.Name != rbName {
		t.Fatalf("the run: %+v", v)
	}
	if st := stepOf(v, "call"); st.Status != schema.StepSucceeded {
		t.Fatalf("the call step: %+v", st)
	}
	for _, id := range []string{fired, runID} {
		var ps []rawPayload
		for _, ev := range rawHistory(t, e.temporal, id) {
			ps = append(ps, payloadsIn(ev, id+" "+ev.GetEventType().String())...)
		}
		checkPayloads(t, e.keys, ps, tok)
	}
	if got := e.do(http.MethodGet, "/api/v1/schedules/"+name, "viewer", nil); !strings.Contains(string(got.Body), runID) {
		t.Fatalf("get names the run: %s", got.Body)
	}

	// The creator's rights of the day: demoted, the next firing fails
	// without running anything.
	viewer := schema.RoleViewer
	if _, err := e.store.UpdateUser(ctx, owner.ID, schema.UserUpdate{Role: &viewer}); err != nil {
		t.Fatal(err)
	}
	// An admin's trigger: the firing still runs as the creator.
	fired = fire("admin")
	err = e.temporal.GetWorkflow(ctx, fired, "").Get(ctx, nil)
	if err == nil || !strings.Contains(err.Error(), "may no longer run runbooks") {
		t.Fatalf("a demoted creator's firing: %v", err)
	}
	if good.Load() != 1 {
		t.Fatalf("the demoted creator's firing ran the step")
	}
	if _, err := e.temporal.DescribeWorkflowExecution(ctx, workflows.ScheduledRunbookWorkflowID(fired), ""); err == nil {
		t.Fatal("the demoted creator's firing started a run")
	}

	if r := e.do(http.MethodDelete, "/api/v1/schedules/"+name, "admin", nil); r.Status != 204 {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	if r := e.do(http.MethodGet, "/api/v1/schedules/"+name, "viewer", nil); r.Status != 404 {
		t.Fatalf("after delete: %d", r.Status)
	}
	if _, err := e.store.RunbookScheduleByName(ctx, name); !errors.Is(err, schema.ErrNotFound) {
		t.Fatalf("the deleted schedule's row: %v", err)
	}
}

// TestRunbookScheduleFromThePage: the runbook page's form makes a
// schedule of its inputs ("Create schedule"), the secret sealed in the
// database; a bad cron comes back on the page with the inputs' form.
func TestRunbookScheduleFromThePage(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	p := fmt.Sprintf("rbsp%d", time.Now().UnixNano())
	e.createRunbook(rbRunDoc(p, "http://127.0.0.1:9"))
	op := e.users[schema.RoleOperator].Username
	ck, csrf := e.sessionLogin(op)
	form := url.Values{"csrf_token": {csrf}, "version": {"1"}, "input.env": {"prod"}, "input.token": {"tok-" + p}, "input.count": {"2"},
		"as_schedule": {"1"}, "schedule_name": {p}, "schedule_cron": {"not a cron"}, "schedule_version": {"latest"}}
	if st := e.postFormAs(ck, "/runbooks/"+p+"/runs", form); st != http.StatusUnprocessableEntity {
		t.Fatalf("bad cron: %d", st)
	}
	if _, err := e.store.RunbookScheduleByName(ctx, p); !errors.Is(err, schema.ErrNotFound) {
		t.Fatalf("a refused schedule was stored: %v", err)
	}
	form.Set("schedule_cron", "0 3 1 1 *")
	if st := e.postFormAs(ck, "/runbooks/"+p+"/runs", form); st != http.StatusOK && st != http.StatusSeeOther {
		t.Fatalf("create: %d", st)
	}
	t.Cleanup(func() { e.do(http.MethodDelete, "/api/v1/schedules/"+p, "admin", nil) })
	rs, err := e.store.RunbookScheduleByName(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if rs.CreatedBy != op || rs.Runbook != p || rs.Version != 0 {
		t.Fatalf("schedule %+v", rs)
	}
	in, err := rs.OpenInputs(e.keys)
	if err != nil || in["env"] != "prod" || in["token"] != "tok-"+p {
		t.Fatalf("inputs %v %v", in, err)
	}
	if got := e.do(http.MethodGet, "/api/v1/schedules/"+p, "viewer", nil); got.Status != http.StatusOK || strings.Contains(string(got.Body), "tok-"+p) {
		t.Fatalf("schedule view: %d %s", got.Status, got.Body)
	}
	// No run was started by the form.
	if rs, _, err := e.store.RunList(ctx, schema.RunFilter{Kind: "runbook", Q: p}); err != nil || len(rs) != 0 {
		t.Fatalf("runs started: %v %v", rs, err)
	}
}
