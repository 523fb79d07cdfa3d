package api

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opsflow/opsflow/schema"
)

// TestDiscoverySchedulesListAndDelete: a recurring discovery is listed
// and deleted through the API, by the schedule_id its creation returned.
func TestDiscoverySchedulesListAndDelete(t *testing.T) {
	e := newEnv(t)
	p := fmt.Sprintf("ds%d", time.Now().UnixNano())
	cr := e.do(http.MethodPost, "/api/v1/credentials", "operator", map[string]string{"name": p, "kind": "password", "username": "ops", "password": "pw-" + p})
	var cred schema.Credential
	cr.json(t, &cred)
	if cr.Status != 201 {
		t.Fatalf("credential: %d %s", cr.Status, cr.Body)
	}
	r := e.do(http.MethodPost, "/api/v1/cmdb/discoveries", "operator", map[string]any{"addresses": []string{"10.9.8.7"}, "credential_id": cred.ID, "schedule": "0 4 1 1 *"})
	var ds struct {
		ScheduleID string `json:"schedule_id"`
	}
	r.json(t, &ds)
	if r.Status != 201 || !strings.HasPrefix(ds.ScheduleID, "discovery:sched-") {
		t.Fatalf("schedule: %d %s", r.Status, r.Body)
	}
	listed := func() bool {
		var l struct{ Items []discoveryScheduleView }
		e.do(http.MethodGet, "/api/v1/cmdb/discoveries/schedules", "viewer", nil).json(t, &l)
		for _, s := range l.Items {
			if s.ID == ds.ScheduleID {
				return true
			}
		}
		return false
	}
	eventually(t, 30*time.Second, "the discovery schedule listed", listed)
	if r := e.do(http.MethodGet, "/api/v1/schedules", "viewer", nil); strings.Contains(string(r.Body), ds.ScheduleID) {
		t.Fatalf("a discovery schedule among job schedules: %s", r.Body)
	}
	path := "/api/v1/cmdb/discoveries/schedules/" + ds.ScheduleID
	if r := e.do(http.MethodDelete, path, "viewer", nil); r.Status != 403 {
		t.Fatalf("a viewer's delete: %d %s", r.Status, r.Body)
	}
	for _, bad := range []string{"schedule:nightly", "discovery:sched-zz", "sched-0123456789abcdef"} {
		if r := e.do(http.MethodDelete, "/api/v1/cmdb/discoveries/schedules/"+bad, "operator", nil); r.Status != 404 {
			t.Errorf("delete %s: %d %s", bad, r.Status, r.Body)
		}
	}
	if r := e.do(http.MethodDelete, path, "operator", nil); r.Status != 204 {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	eventually(t, 30*time.Second, "the discovery schedule gone from the list", func() bool { return !listed() })
	if r := e.do(http.MethodDelete, path, "operator", nil); r.Status != 404 {
		t.Fatalf("delete again: %d %s", r.Status, r.Body)
	}
}
