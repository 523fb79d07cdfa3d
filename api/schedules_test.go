package api

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opsflow/opsflow/internal/testenv"
	"github.com/opsflow/opsflow/schema"
)

func TestJobSchedules(t *testing.T) {
	e := newEnv(t)
	hosts := testenv.SSHD(t, 1)
	p := fmt.Sprintf("s%d", time.Now().UnixNano())
	cred := e.credential(p, hosts)
	sid := e.script(p, "echo scheduled $WHO", []map[string]any{{"name": "WHO", "type": "string", "required": true}})
	name := "nightly-" + p[len(p)-8:]
	def := map[string]any{"script_id": sid, "credential_id": cred, "targets": map[string]any{"hosts": []string{hosts.Targets[0].Addr}}, "params": map[string]any{"WHO": "cron"}}
	for _, c := range []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{"name": name, "cron": "0 3 * * *", "job": map[string]any{"script_id": sid, "credential_id": cred, "targets": map[string]any{"hosts": []string{hosts.Targets[0].Addr}}}}, "job.params.WHO"},
		{map[string]any{"name": "Bad Name", "cron": "0 3 * * *", "job": def}, "name"},
		{map[string]any{"name": name, "cron": "whenever", "job": def}, "cron"},
	} {
		if res := e.do(http.MethodPost, "/api/v1/schedules", "operator", c.body); res.Status != 422 || res.apiError(t).Fields[c.field] == "" {
			t.Errorf("%s: %d %s", c.field, res.Status, res.Body)
		}
	}
	res := e.do(http.MethodPost, "/api/v1/schedules", "operator", map[string]any{"name": name, "cron": "0 3 * * *", "job": def})
	if res.Status != 201 {
		t.Fatalf("create: %d %s", res.Status, res.Body)
	}
	t.Cleanup(func() { e.do(http.MethodDelete, "/api/v1/schedules/"+name, "operator", nil) })
	if dup := e.do(http.MethodPost, "/api/v1/schedules", "operator", map[string]any{"name": name, "cron": "0 3 * * *", "job": def}); dup.Status != 409 {
		t.Fatalf("duplicate: %d %s", dup.Status, dup.Body)
	}
	var sv scheduleView
	e.do(http.MethodPost, "/api/v1/schedules/"+name+"/pause", "operator", map[string]any{}).json(t, &sv)
	if !sv.Paused {
		t.Fatalf("pause: %+v", sv)
	}
	e.do(http.MethodPost, "/api/v1/schedules/"+name+"/resume", "operator", map[string]any{}).json(t, &sv)
	if sv.Paused || len(sv.NextRuns) == 0 {
		t.Fatalf("resume: %+v", sv)
	}
	if list := e.do(http.MethodGet, "/api/v1/schedules", "viewer", nil); !strings.Contains(string(list.Body), `"name":"`+name+`"`) {
		t.Fatalf("list: %s", list.Body)
	}
	// Trigger: the firing creates a job, which runs on the host.
	if res := e.do(http.MethodPost, "/api/v1/schedules/"+name+"/trigger", "operator", map[string]any{}); res.Status != 200 {
		t.Fatalf("trigger: %d %s", res.Status, res.Body)
	}
	var job *schema.Job
	eventually(t, 60*time.Second, "scheduled job succeeded", func() bool {
		js, _ := e.store.Jobs(context.Background(), 50)
		for i := range js {
			if strings.HasPrefix(js[i].WorkflowID, "job:schedule:"+name) && js[i].Status == schema.JobSucceeded {
				job = &js[i]
				return true
			}
		}
		return false
	})
	h, _ := e.store.JobHost(context.Background(), job.ID, 0)
	if strings.TrimSpace(string(h.Output)) != "scheduled cron" || job.CreatedBy != e.users["operator"].Username {
		t.Fatalf("scheduled job: %+v %+v", job, h)
	}
	if r, err := e.store.Run(context.Background(), job.WorkflowID); err != nil || r.StartedBy != job.CreatedBy {
		t.Fatalf("run read model: %+v %v", r, err)
	}
	if res := e.do(http.MethodDelete, "/api/v1/schedules/"+name, "operator", nil); res.Status != 204 {
		t.Fatalf("delete: %d", res.Status)
	}
	if res := e.do(http.MethodGet, "/api/v1/schedules/"+name, "viewer", nil); res.Status != 404 {
		t.Fatalf("after delete: %d %s", res.Status, res.Body)
	}
}
