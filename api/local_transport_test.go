package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opsflow/opsflow/schema"
	"github.com/opsflow/opsflow/workflows"
	"go.temporal.io/api/serviceerror"
)

// jobsOf returns the jobs of script sid.
func (e *env) jobsOf(sid int64) []schema.Job {
	e.t.Helper()
	js, err := e.store.Jobs(context.Background(), 1000)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []schema.Job
	for _, j := range js {
		if j.ScriptID == sid {
			out = append(out, j)
		}
	}
	return out
}

func lines(path string) int {
	b, _ := os.ReadFile(path)
	return strings.Count(string(b), "\n")
}

// TestLocalTransportAdminOnly: the local transport runs the script as the
// worker's own user, so only an admin may start one — by the transport or
// by the built-in local credential, as a job, a retry of one or a
// schedule, and a schedule's firing checks its creator's role as it is
// then: an admin demoted since runs nothing.
func TestLocalTransportAdminOnly(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	p := fmt.Sprintf("la%d", time.Now().UnixNano())
	mark := filepath.Join(t.TempDir(), "ran")
	sid := e.script(p, `echo "$OPSFLOW_HOST" >> `+mark+`; [ "$OPSFLOW_HOST" != b ]`, nil)
	local, err := e.store.LocalCredential(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byTransport := map[string]any{"script_id": sid, "targets": map[string]any{"hosts": []string{"a", "b"}, "transport": "local"}}
	byCredential := map[string]any{"script_id": sid, "credential_id": local.ID, "targets": map[string]any{"hosts": []string{"a", "b"}}}
	for i, body := range []map[string]any{byTransport, byCredential} {
		if r := e.do(http.MethodPost, "/api/v1/jobs", "operator", body); r.Status != 403 || r.apiError(t).Code != CodeForbidden {
			t.Errorf("operator's local job %d: %d %s", i, r.Status, r.Body)
		}
		// Refused before any other fault of the request.
		bad := map[string]any{"script_id": sid, "targets": body["targets"], "credential_id": body["credential_id"], "policy": map[string]any{"concurrency": "x"}}
		if r := e.do(http.MethodPost, "/api/v1/jobs", "operator", bad); r.Status != 403 {
			t.Errorf("operator's invalid local job %d: %d %s", i, r.Status, r.Body)
		}
		name := fmt.Sprintf("la-%d-%s", i, p[len(p)-8:])
		if r := e.do(http.MethodPost, "/api/v1/schedules", "operator", map[string]any{"name": name, "cron": "0 3 * * *", "job": body}); r.Status != 403 {
			t.Errorf("operator's local schedule %d: %d %s", i, r.Status, r.Body)
		}
		if _, err := e.store.JobScheduleByName(ctx, name); !errors.Is(err, schema.ErrNotFound) {
			t.Errorf("a refused schedule left its row: %v", err)
		}
		var nf *serviceerror.NotFound
		if _, err := e.temporal.ScheduleClient().GetHandle(ctx, workflows.JobScheduleID(name)).Describe(ctx); !errors.As(err, &nf) {
			t.Errorf("a refused schedule exists in Temporal: %v", err)
		}
	}
	if js := e.jobsOf(sid); len(js) != 0 || lines(mark) != 0 {
		t.Fatalf("refused requests created %d jobs, ran %d hosts", len(js), lines(mark))
	}

	// An admin's local job runs; its retry is the admin's to start too.
	r := e.do(http.MethodPost, "/api/v1/jobs", "admin", byTransport)
	var j jobResp
	r.json(t, &j)
	if r.Status != 201 {
		t.Fatalf("admin's local job: %d %s", r.Status, r.Body)
	}
	if done := e.waitJob(j.ID, schema.JobSucceeded, schema.JobFailed); done.Status != schema.JobFailed || lines(mark) != 2 {
		t.Fatalf("admin's local job: %+v, %d hosts ran", done, lines(mark))
	}
	if r := e.do(http.MethodPost, fmt.Sprintf("/api/v1/jobs/%d/retry-failed", j.ID), "operator", map[string]any{}); r.Status != 403 {
		t.Fatalf("operator's retry of a local job: %d %s", r.Status, r.Body)
	}
	if n := len(e.jobsOf(sid)); n != 1 {
		t.Fatalf("a refused retry created a job: %d jobs", n)
	}
	if r := e.do(http.MethodPost, fmt.Sprintf("/api/v1/jobs/%d/retry-failed", j.ID), "admin", map[string]any{}); r.Status != 201 {
		t.Fatalf("admin's retry of a local job: %d %s", r.Status, r.Body)
	}

	// A schedule made by an admin runs while they are one.
	boss := e.createUser(schema.RoleAdmin, "boss-password-1")
	e.tokens["boss"] = e.createToken(boss, nil)
	name := "la-sched-" + p[len(p)-8:]
	one := map[string]any{"script_id": sid, "targets": map[string]any{"hosts": []string{"s"}, "transport": "local"}}
	if r := e.do(http.MethodPost, "/api/v1/schedules", "boss", map[string]any{"name": name, "cron": "0 3 1 1 *", "job": one}); r.Status != 201 {
		t.Fatalf("admin's local schedule: %d %s", r.Status, r.Body)
	}
	t.Cleanup(func() { e.do(http.MethodDelete, "/api/v1/schedules/"+name, "admin", nil) })
	if r := e.do(http.MethodPost, "/api/v1/schedules/"+name+"/trigger", "operator", map[string]any{}); r.Status != 403 {
		t.Fatalf("operator's trigger of a local schedule: %d %s", r.Status, r.Body)
	}
	firing := func(n int) string {
		t.Helper()
		h := e.temporal.ScheduleClient().GetHandle(ctx, workflows.JobScheduleID(name))
		var id string
		eventually(t, 60*time.Second, fmt.Sprintf("firing %d of %s", n, name), func() bool {
			d, err := h.Describe(ctx)
			if err != nil || len(d.Info.RecentActions) < n || d.Info.RecentActions[n-1].StartWorkflowResult == nil {
				return false
			}
			id = d.Info.RecentActions[n-1].StartWorkflowResult.WorkflowID
			return true
		})
		return id
	}
	if r := e.do(http.MethodPost, "/api/v1/schedules/"+name+"/trigger", "boss", map[string]any{}); r.Status != 200 {
		t.Fatalf("trigger: %d %s", r.Status, r.Body)
	}
	// A firing's workflow ID ends in its time to the second: a second
	// trigger within the same second would collide with the first.
	triggered := time.Now().Truncate(time.Second)
	first := firing(1)
	if err := e.temporal.GetWorkflow(ctx, first, "").Get(ctx, nil); err != nil {
		t.Fatalf("the admin's scheduled local job: %v", err)
	}
	sj, err := e.store.JobByWorkflowID(ctx, "job:"+first)
	if err != nil || sj.Status != schema.JobSucceeded || sj.CreatedBy != boss.Username || lines(mark) != 4 {
		t.Fatalf("scheduled job: %+v %v, %d host runs", sj, err, lines(mark))
	}

	// Demoted, their schedule's next firing runs nothing.
	role := schema.RoleOperator
	if _, err := e.store.UpdateUser(ctx, boss.ID, schema.UserUpdate{Role: &role}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the next second", func() bool { return time.Now().Truncate(time.Second).After(triggered) })
	if r := e.do(http.MethodPost, "/api/v1/schedules/"+name+"/trigger", "admin", map[string]any{}); r.Status != 200 {
		t.Fatalf("trigger: %d %s", r.Status, r.Body)
	}
	second := firing(2)
	if second == first {
		t.Fatalf("the second trigger did not fire: %s", second)
	}
	err = e.temporal.GetWorkflow(ctx, second, "").Get(ctx, nil)
	if err == nil || !strings.Contains(err.Error(), "only an admin") {
		t.Fatalf("a demoted admin's local schedule fired: %v", err)
	}
	if _, err := e.store.JobByWorkflowID(ctx, "job:"+second); !errors.Is(err, schema.ErrNotFound) || lines(mark) != 4 {
		t.Fatalf("the refused firing created a job (%v) or ran (%d host runs)", err, lines(mark))
	}
}

// TestLocalTransportOffUnlessWorkerEnabled: a worker without
// OPSFLOW_LOCAL_TRANSPORT=1 fails a local job's hosts at once, with a
// reason naming the setting, and runs nothing.
func TestLocalTransportOffUnlessWorkerEnabled(t *testing.T) {
	e := newEnvWith(t, envOptions{noLocal: true})
	p := fmt.Sprintf("lo%d", time.Now().UnixNano())
	mark := filepath.Join(t.TempDir(), "ran")
	sid := e.script(p, `echo "$OPSFLOW_HOST" >> `+mark, nil)
	r := e.do(http.MethodPost, "/api/v1/jobs", "admin", map[string]any{"script_id": sid, "targets": map[string]any{"hosts": []string{"a", "b"}, "transport": "local"}})
	var j jobResp
	r.json(t, &j)
	if r.Status != 201 {
		t.Fatalf("start: %d %s", r.Status, r.Body)
	}
	done := e.waitJob(j.ID, schema.JobSucceeded, schema.JobFailed)
	if done.Status != schema.JobFailed || done.Counts[schema.HostFailed] != 2 {
		t.Fatalf("local job on a worker without the local transport: %+v", done)
	}
	for i := range 2 {
		h, err := e.store.JobHost(context.Background(), j.ID, i)
		if err != nil || !strings.Contains(h.Error, "OPSFLOW_LOCAL_TRANSPORT=1") || h.Attempts > 1 {
			t.Errorf("host %d: %+v %v", i, h, err)
		}
	}
	if lines(mark) != 0 {
		t.Fatalf("the script ran on a worker without the local transport: %d times", lines(mark))
	}
}
