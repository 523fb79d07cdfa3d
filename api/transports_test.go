package api

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opsflow/opsflow/internal/testenv"
	"github.com/opsflow/opsflow/schema"
	"golang.org/x/crypto/ssh"
)

// TestJobThroughJumpHost: the target listens only on the loopback of its
// own network namespace, which the worker cannot reach; the job gets there
// through the namespace's sshd as a jump host. The bastion's key is
// recorded on first contact, and a bastion presenting another key is
// refused.
func TestJobThroughJumpHost(t *testing.T) {
	e := newEnv(t)
	zone := testenv.SSHDInNamespace(t, "behind-bastion")
	p := fmt.Sprintf("j%d", time.Now().UnixNano())
	bastionAddr := zone.Targets[0].Addr

	// Without the jump host the address is not the namespace's loopback.
	direct := e.credential(p+"-direct", zone)
	sid := e.script(p+"-hostname", "hostname", nil)
	start := func(cred int64) jobResp {
		t.Helper()
		res := e.do(http.MethodPost, "/api/v1/jobs", "operator", map[string]any{"script_id": sid, "credential_id": cred,
			"targets": map[string]any{"hosts": []string{testenv.NamespaceLoopback}}, "policy": map[string]any{"host_timeout": "20s"}})
		var j jobResp
		res.json(t, &j)
		if res.Status != 201 {
			t.Fatalf("start: %d %s", res.Status, res.Body)
		}
		return j
	}
	hostOf := func(j jobResp) schema.JobHost {
		var h schema.JobHost
		e.do(http.MethodGet, fmt.Sprintf("/api/v1/jobs/%d/hosts/0", j.ID), "viewer", nil).json(t, &h)
		return h
	}

	jump := e.do(http.MethodPost, "/api/v1/credentials", "operator", map[string]string{"name": p + "-bastion", "kind": "jump_host",
		"address": bastionAddr, "username": zone.User, "private_key": string(zone.PrivateKeyPEM)})
	var jc schema.Credential
	jump.json(t, &jc)
	if jump.Status != 201 || jc.Kind != schema.CredJumpHost || jc.Auth != schema.CredSSHKey || jc.HostKey != "" {
		t.Fatalf("jump host: %d %s", jump.Status, jump.Body)
	}
	via := e.do(http.MethodPost, "/api/v1/credentials", "admin", map[string]any{"name": p + "-via", "kind": "ssh_key", "allow_unlisted_hosts": true,
		"username": zone.User, "private_key": string(zone.PrivateKeyPEM), "jump_host": p + "-bastion"})
	var vc schema.Credential
	via.json(t, &vc)
	if via.Status != 201 || vc.JumpHostID == nil || *vc.JumpHostID != jc.ID {
		t.Fatalf("credential via the jump host: %d %s", via.Status, via.Body)
	}

	j := start(vc.ID)
	if done := e.waitJob(j.ID, schema.JobSucceeded, schema.JobFailed); done.Status != schema.JobSucceeded {
		t.Fatalf("job through the jump host: %+v %+v", done, hostOf(j))
	}
	if h := hostOf(j); strings.TrimSpace(string(h.Output)) != "behind-bastion" {
		t.Fatalf("ran on %q, not the namespaced host", h.Output)
	}
	var got schema.Credential
	e.do(http.MethodGet, fmt.Sprintf("/api/v1/credentials/%d", jc.ID), "operator", nil).json(t, &got)
	if want := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(zone.Targets[0].HostKey))); got.HostKey != want {
		t.Fatalf("bastion key recorded %q, want %q", got.HostKey, want)
	}

	// The same address straight from the worker is not that host: here
	// nothing listens there, and the host fails as unreachable (after
	// three connection attempts in a row, in one activity attempt).
	if c, err := net.DialTimeout("tcp", testenv.NamespaceLoopback, time.Second); err == nil {
		c.Close()
	} else {
		dj := start(direct)
		if done := e.waitJob(dj.ID, schema.JobSucceeded, schema.JobFailed); done.Status != schema.JobFailed {
			t.Fatalf("direct job: %+v", done)
		}
		if h := hostOf(dj); !strings.Contains(h.Error, "unreachable after 3 attempts") || h.Attempts != 1 {
			t.Fatalf("direct host: %+v", h)
		}
	}

	// A bastion that presents a key other than the one given is refused,
	// and nothing runs behind it.
	other := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(zone.Signer.PublicKey())))
	bad := e.do(http.MethodPost, "/api/v1/credentials", "operator", map[string]string{"name": p + "-bastion2", "kind": "jump_host",
		"address": bastionAddr, "username": zone.User, "private_key": string(zone.PrivateKeyPEM), "host_key": other})
	if bad.Status != 201 {
		t.Fatalf("jump host with a key: %d %s", bad.Status, bad.Body)
	}
	via2 := e.do(http.MethodPost, "/api/v1/credentials", "admin", map[string]any{"name": p + "-via2", "kind": "ssh_key", "allow_unlisted_hosts": true,
		"username": zone.User, "private_key": string(zone.PrivateKeyPEM), "jump_host": p + "-bastion2"})
	var vc2 schema.Credential
	via2.json(t, &vc2)
	j2 := start(vc2.ID)
	if done := e.waitJob(j2.ID, schema.JobSucceeded, schema.JobFailed); done.Status != schema.JobFailed {
		t.Fatalf("job through a bastion with the wrong key: %+v", done)
	}
	if h := hostOf(j2); !strings.Contains(h.Error, "host key changed") || h.Output != "" {
		t.Fatalf("host behind the wrong bastion: %+v", h)
	}
	// A jump host others go through cannot be deleted.
	if r := e.do(http.MethodDelete, fmt.Sprintf("/api/v1/credentials/%d", jc.ID), "admin", nil); r.Status != 409 {
		t.Fatalf("delete a jump host in use: %d %s", r.Status, r.Body)
	}
}

// TestLocalTransport: a local job runs the script on the worker itself,
// once per target with OPSFLOW_HOST naming it, and needs no credential.
func TestLocalTransport(t *testing.T) {
	e := newEnv(t)
	p := fmt.Sprintf("l%d", time.Now().UnixNano())
	sid := e.script(p+"-probe", `echo "probe $OPSFLOW_HOST $(id -un)"; [ "$OPSFLOW_HOST" != "sw-2" ]`, nil)
	res := e.do(http.MethodPost, "/api/v1/jobs", "admin", map[string]any{"script_id": sid,
		"targets": map[string]any{"hosts": []string{"sw-1", "sw-2", "sw-3"}, "transport": "local"}})
	var j jobResp
	res.json(t, &j)
	if res.Status != 201 || j.Total != 3 {
		t.Fatalf("start: %d %s", res.Status, res.Body)
	}
	done := e.waitJob(j.ID, schema.JobSucceeded, schema.JobFailed)
	if done.Status != schema.JobFailed || done.Counts[schema.HostSucceeded] != 2 || done.Counts[schema.HostFailed] != 1 {
		t.Fatalf("local job: %+v", done)
	}
	for i := range 3 {
		var h schema.JobHost
		e.do(http.MethodGet, fmt.Sprintf("/api/v1/jobs/%d/hosts/%d", j.ID, i), "viewer", nil).json(t, &h)
		if !strings.HasPrefix(string(h.Output), "probe "+h.Address+" ") || h.ExitCode == nil || (*h.ExitCode != 0) != (h.Address == "sw-2") {
			t.Errorf("host %s: %+v", h.Address, h)
		}
	}
	local, err := e.store.LocalCredential(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// The local credential selects the transport too; other credentials
	// do not mix with it.
	for _, c := range []struct {
		body  map[string]any
		field string
		ok    bool
	}{
		{map[string]any{"script_id": sid, "credential_id": local.ID, "targets": map[string]any{"hosts": []string{"a"}}}, "", true},
		{map[string]any{"script_id": sid, "credential_id": local.ID + 100000, "targets": map[string]any{"hosts": []string{"a"}, "transport": "local"}}, "credential_id", false},
		{map[string]any{"script_id": sid, "targets": map[string]any{"hosts": []string{"a"}, "transport": "telnet"}}, "targets.transport", false},
	} {
		r := e.do(http.MethodPost, "/api/v1/jobs", "admin", c.body)
		if c.ok != (r.Status == 201) || (!c.ok && (r.Status != 422 || r.apiError(t).Fields[c.field] == "")) {
			t.Errorf("%v: %d %s", c.body, r.Status, r.Body)
		}
	}
}

// TestOutputCap: a host's output beyond the cap keeps its last part, and
// the host records the full size and the cut; a short one is whole.
func TestOutputCap(t *testing.T) {
	e := newEnv(t)
	p := fmt.Sprintf("c%d", time.Now().UnixNano())
	sid := e.script(p+"-loud", `if [ "$OPSFLOW_HOST" = big ]; then head -c 300000 /dev/zero | tr '\0' x; echo; fi; echo END`, nil)
	res := e.do(http.MethodPost, "/api/v1/jobs", "admin", map[string]any{"script_id": sid,
		"targets": map[string]any{"hosts": []string{"big", "small"}, "transport": "local"}})
	var j jobResp
	res.json(t, &j)
	if res.Status != 201 {
		t.Fatalf("start: %d %s", res.Status, res.Body)
	}
	if done := e.waitJob(j.ID, schema.JobSucceeded, schema.JobFailed); done.Status != schema.JobSucceeded {
		t.Fatalf("job: %+v", done)
	}
	var big, small schema.JobHost
	e.do(http.MethodGet, fmt.Sprintf("/api/v1/jobs/%d/hosts/0", j.ID), "viewer", nil).json(t, &big)
	e.do(http.MethodGet, fmt.Sprintf("/api/v1/jobs/%d/hosts/1", j.ID), "viewer", nil).json(t, &small)
	if !big.Truncated || big.OutputBytes != 300005 || len(big.Output) != 256<<10 || !strings.HasSuffix(string(big.Output), "x\nEND\n") {
		t.Fatalf("big: truncated=%v bytes=%d kept=%d tail=%q", big.Truncated, big.OutputBytes, len(big.Output), big.Output[max(0, len(big.Output)-10):])
	}
	if small.Truncated || small.OutputBytes != 4 || small.Output != "END\n" {
		t.Fatalf("small: %+v", small)
	}
}
