package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opsflow/opsflow/internal/testenv"
	"github.com/opsflow/opsflow/schema"
	"go.temporal.io/sdk/client"
	"golang.org/x/crypto/ssh"
)

// TestDiscoveryAgainstRealSSHD discovers real sshd hosts — two on loopback
// and one in its own network namespace with its own hostname — plus one
// unreachable address, on Postgres and on SQLite.
func TestDiscoveryAgainstRealSSHD(t *testing.T) {
	loop := testenv.SSHD(t, 2)
	edge := testenv.SSHDInNamespace(t, "edge-7")
	for _, engine := range []string{"postgres", "sqlite"} {
		t.Run(engine, func(t *testing.T) {
			e := newEnvWith(t, envOptions{sqlite: engine == "sqlite"})
			ctx := context.Background()
			credID := func(targets *testenv.SSHTargets) int64 {
				// Discovery onboards hosts not in the CMDB: the credential
				// must allow unlisted hosts, which an admin sets.
				res := e.do(http.MethodPost, "/api/v1/credentials", "admin", map[string]any{
					"name": fmt.Sprintf("disc-%d", time.Now().UnixNano()), "kind": "ssh_key", "username": targets.User, "private_key": string(targets.PrivateKeyPEM),
					"allow_unlisted_hosts": true})
				var cr schema.Credential
				res.json(t, &cr)
				if res.Status != 201 {
					t.Fatalf("credential: %d %s", res.Status, res.Body)
				}
				return cr.ID
			}
			loopCred, edgeCred := credID(loop), credID(edge)
			unreachable := "127.0.0.1:1"
			discover := func(cred int64, addrs ...string) (runView, map[string]any) {
				t.Helper()
				res := e.do(http.MethodPost, "/api/v1/cmdb/discoveries", "operator", map[string]any{"addresses": addrs, "credential_id": cred})
				if res.Status != 201 {
					t.Fatalf("discovery: %d %s", res.Status, res.Body)
				}
				var run runView
				res.json(t, &run)
				var out map[string]any
				wr := e.temporal.GetWorkflow(ctx, run.WorkflowID, "")
				if err := wr.Get(ctx, &out); err != nil {
					t.Fatalf("discovery run: %v", err)
				}
				return run, out
			}
			run, out := discover(loopCred, loop.Targets[0].Addr, loop.Targets[1].Addr, unreachable)
			if fmt.Sprint(out["Created"]) != "2" || len(out["Failed"].([]any)) != 1 ||
				!strings.Contains(fmt.Sprint(out["Failed"]), unreachable) {
				t.Fatalf("result %v", out)
			}
			_, edgeOut := discover(edgeCred, edge.Targets[0].Addr)
			if fmt.Sprint(edgeOut["Created"]) != "1" {
				t.Fatalf("edge result %v", edgeOut)
			}

			// The namespaced host is known by its own hostname, with facts,
			// its host key, and its sshd recognised as a service on it.
			h, err := e.store.CIByName(ctx, "host", "edge-7")
			if err != nil {
				t.Fatalf("edge-7: %v", err)
			}
			if h.Attributes["address"] != edge.Targets[0].Addr || fmt.Sprint(h.Attributes["cpu_count"]) == "0" || h.Attributes["kernel"] == "" ||
				!strings.Contains(fmt.Sprint(h.Attributes["ip_addresses"]), strings.Split(edge.Targets[0].Addr, ":")[0]) {
				t.Fatalf("edge-7 attributes: %v", h.Attributes)
			}
			key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(h.Attributes["ssh_host_key"].(string)))
			if err != nil || string(key.Marshal()) != string(edge.Targets[0].HostKey.Marshal()) {
				t.Fatalf("recorded host key: %v", err)
			}
			svc, err := e.store.CIByName(ctx, "service", "edge-7:ssh")
			if err != nil {
				t.Fatalf("ssh service: %v", err)
			}
			var imp struct{ Items []schema.GraphNode }
			e.do(http.MethodGet, fmt.Sprintf("/api/v1/cmdb/cis/%d/impact", h.ID), "viewer", nil).json(t, &imp)
			if len(imp.Items) != 1 || imp.Items[0].ID != svc.ID {
				t.Fatalf("impact of edge-7: %+v", imp.Items)
			}
			// History says which run made it.
			hs, _ := e.store.History(ctx, h.ID, 0, 10)
			if len(hs) == 0 || hs[len(hs)-1].Op != "create" || !strings.HasPrefix(hs[len(hs)-1].RunID, "discovery:") || hs[len(hs)-1].ChangedBy != e.users["operator"].Username {
				t.Fatalf("history: %+v", hs)
			}
			loopHost, _, _ := e.store.CIs(ctx, schema.CIQuery{Type: "host", Attrs: map[string]string{"address": loop.Targets[0].Addr}})
			if len(loopHost) != 1 {
				t.Fatalf("loopback host: %v", loopHost)
			}
			// Its creation and the relations of the services found on it
			// all name the run.
			lh, _ := e.store.History(ctx, loopHost[0].ID, 0, 50)
			if len(lh) == 0 || lh[len(lh)-1].Op != "create" {
				t.Fatalf("loopback history: %+v", lh)
			}
			for _, h := range lh {
				if h.RunID != run.WorkflowID {
					t.Fatalf("loopback history entry not from the run: %+v", h)
				}
			}

			// Rediscovering finds nothing new and writes no history.
			_, again := discover(edgeCred, edge.Targets[0].Addr)
			if fmt.Sprint(again["Unchanged"]) != "1" {
				t.Fatalf("rediscovery: %v", again)
			}
			if hs2, _ := e.store.History(ctx, h.ID, 0, 10); len(hs2) != len(hs) {
				t.Fatalf("rediscovery wrote history: %d -> %d", len(hs), len(hs2))
			}

			// A host presenting another key than the recorded one is not
			// trusted: it fails and its CI is left alone.
			other := loop.Targets[1].HostKey
			forged := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(other)))
			cur, _ := e.store.CI(ctx, h.ID)
			if _, err := e.store.UpdateCI(ctx, h.ID, cur.Version, schemaPatch("ssh_host_key", forged), schema.Change{Actor: "test"}); err != nil {
				t.Fatal(err)
			}
			_, changed := discover(edgeCred, edge.Targets[0].Addr)
			if len(changed["Failed"].([]any)) != 1 || !strings.Contains(fmt.Sprint(changed["Failed"]), "host key changed") {
				t.Fatalf("changed key: %v", changed)
			}
			if after, _ := e.store.CI(ctx, h.ID); after.Attributes["ssh_host_key"] != forged {
				t.Fatal("an untrusted host overwrote its CI")
			}

			// Bad requests name the field.
			for _, body := range []map[string]any{
				{"addresses": []string{"not a host!"}, "credential_id": edgeCred},
				{"cidr": "10.0.0.0/8", "credential_id": edgeCred},
				{"addresses": []string{"10.0.0.1"}, "credential_id": 999999},
				{"addresses": []string{"10.0.0.1"}},
			} {
				if res := e.do(http.MethodPost, "/api/v1/cmdb/discoveries", "operator", body); res.Status != 422 || len(res.apiError(t).Fields) == 0 {
					t.Errorf("%v: %d %s", body, res.Status, res.Body)
				}
			}
		})
	}
}

func schemaPatch(attr, value string) schema.CIPatch {
	b, _ := json.Marshal(value)
	return schema.CIPatch{Attributes: map[string]json.RawMessage{attr: b}}
}

// TestScheduledDiscovery creates a recurring discovery (a Temporal
// Schedule), triggers it, and sees its run in the runs read model.
func TestScheduledDiscovery(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	res := e.do(http.MethodPost, "/api/v1/credentials", "admin", map[string]any{"name": fmt.Sprintf("sched-%d", time.Now().UnixNano()), "kind": "password", "username": "nobody", "password": "x", "allow_unlisted_hosts": true})
	var cr schema.Credential
	res.json(t, &cr)
	body := map[string]any{"addresses": []string{"127.0.0.1:1"}, "credential_id": cr.ID, "schedule": "0 3 * * *"}
	if bad := e.do(http.MethodPost, "/api/v1/cmdb/discoveries", "operator", map[string]any{"addresses": []string{"127.0.0.1:1"}, "credential_id": cr.ID, "schedule": "every tuesday"}); bad.Status != 422 || bad.apiError(t).Fields["schedule"] == "" {
		t.Fatalf("bad cron: %d %s", bad.Status, bad.Body)
	}
	res = e.do(http.MethodPost, "/api/v1/cmdb/discoveries", "operator", body)
	if res.Status != 201 {
		t.Fatalf("schedule: %d %s", res.Status, res.Body)
	}
	var out struct {
		ScheduleID string `json:"schedule_id"`
	}
	res.json(t, &out)
	h := e.temporal.ScheduleClient().GetHandle(ctx, out.ScheduleID)
	t.Cleanup(func() { _ = h.Delete(context.Background()) })
	desc, err := h.Describe(ctx)
	if err != nil || len(desc.Schedule.Spec.CronExpressions) != 1 && len(desc.Schedule.Spec.Calendars) == 0 {
		t.Fatalf("describe: %+v %v", desc, err)
	}
	if dup := e.do(http.MethodPost, "/api/v1/cmdb/discoveries", "operator", body); dup.Status != 409 {
		t.Fatalf("same schedule twice: %d %s", dup.Status, dup.Body)
	}
	if err := h.Trigger(ctx, client.ScheduleTriggerOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "scheduled run recorded", func() bool {
		rs, _, err := e.store.Runs(ctx, schema.RunFilter{Kind: "discovery", Status: schema.RunCompleted, Limit: 50})
		if err != nil {
			return false
		}
		for _, r := range rs {
			if strings.HasPrefix(r.WorkflowID, out.ScheduleID) && strings.Contains(r.Summary, "1 failed") {
				return true
			}
		}
		return false
	})
}

// TestDiscoveryScopedByCredential: discovery logs into the addresses it is
// given, so a credential that does not allow unlisted hosts (the default,
// and all an operator can create) discovers nothing that is not in the
// CMDB, and a scoped one nothing outside its scope.
func TestDiscoveryScopedByCredential(t *testing.T) {
	e := newEnv(t)
	p := fmt.Sprintf("dscope%d", time.Now().UnixNano())
	res := e.do(http.MethodPost, "/api/v1/credentials", "operator", map[string]any{"name": p, "kind": "password", "username": "nobody", "password": "x"})
	var cr schema.Credential
	res.json(t, &cr)
	for body, field := range map[string]string{
		`{"addresses":["127.0.0.1:1"]}`:       "addresses[0]",
		`{"addresses":["[::ffff:10.9.8.7]"]}`: "addresses[0]",
		`{"cidr":"10.9.8.0/30"}`:              "cidr",
	} {
		var b map[string]any
		_ = json.Unmarshal([]byte(body), &b)
		b["credential_id"] = cr.ID
		r := e.do(http.MethodPost, "/api/v1/cmdb/discoveries", "operator", b)
		if r.Status != 422 || !strings.Contains(r.apiError(t).Fields[field], "not a host in the CMDB") {
			t.Errorf("%s: %d %s", body, r.Status, r.Body)
		}
	}
	e.mkCI("host", p, map[string]any{"address": "10.9.8.7"}, map[string]string{"team": p})
	if r := e.do(http.MethodPatch, fmt.Sprintf("/api/v1/credentials/%d", cr.ID), "admin", map[string]any{"scope": "team=other-" + p}); r.Status != 200 {
		t.Fatalf("scope: %d %s", r.Status, r.Body)
	}
	r := e.do(http.MethodPost, "/api/v1/cmdb/discoveries", "operator", map[string]any{"addresses": []string{"[::ffff:10.9.8.7]"}, "credential_id": cr.ID})
	if r.Status != 422 || !strings.Contains(r.apiError(t).Fields["credential_id"], "10.9.8.7:22") {
		t.Errorf("host outside the scope: %d %s", r.Status, r.Body)
	}
}
