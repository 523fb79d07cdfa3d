package api

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opsflow/opsflow/internal/testenv"
	"github.com/opsflow/opsflow/schema"
	"golang.org/x/crypto/ssh"
)

type jobResp struct {
	ID       int64
	Status   string
	Total    int
	Summary  string
	Counts   map[string]int
	ParentID *int64 `json:"parent_id"`
	Progress *struct {
		Paused      bool
		Concurrency int
		Succeeded   int
	}
}

func (e *env) job(id int64) jobResp {
	var j jobResp
	e.do(http.MethodGet, "/api/v1/jobs/"+strconv.FormatInt(id, 10), "viewer", nil).json(e.t, &j)
	return j
}

func (e *env) waitJob(id int64, statuses ...string) jobResp {
	e.t.Helper()
	var j jobResp
	eventually(e.t, 90*time.Second, fmt.Sprintf("job %d in %v", id, statuses), func() bool {
		j = e.job(id)
		return slices.Contains(statuses, j.Status)
	})
	return j
}

// credential stores the targets' key, allowed on hosts that are not in
// the CMDB (test sshd servers are not): an admin sets that.
func (e *env) credential(name string, t *testenv.SSHTargets) int64 {
	res := e.do(http.MethodPost, "/api/v1/credentials", "admin", map[string]any{"name": name, "kind": "ssh_key", "username": t.User, "private_key": string(t.PrivateKeyPEM),
		"allow_unlisted_hosts": true})
	var cr schema.Credential
	res.json(e.t, &cr)
	if res.Status != 201 {
		e.t.Fatalf("credential: %d %s", res.Status, res.Body)
	}
	return cr.ID
}

func (e *env) script(name, content string, params []map[string]any) int64 {
	return e.scriptIn("", name, content, params)
}

// scriptIn is script for an interpreter ("" for the default, bash).
func (e *env) scriptIn(interpreter, name, content string, params []map[string]any) int64 {
	body := map[string]any{"name": name, "content": content, "parameters": params}
	if interpreter != "" {
		body["interpreter"] = interpreter
	}
	res := e.do(http.MethodPost, "/api/v1/scripts", "operator", body)
	var sc struct{ ID int64 }
	res.json(e.t, &sc)
	if res.Status != 201 {
		e.t.Fatalf("script: %d %s", res.Status, res.Body)
	}
	return sc.ID
}

func TestBatchJobsOnRealSSHD(t *testing.T) {
	e := newEnv(t)
	hosts := testenv.SSHD(t, 3)
	p := fmt.Sprintf("j%d", time.Now().UnixNano())
	cred := e.credential(p+"-key", hosts)
	scriptID := e.script(p+"-hello", `echo "host=$OPSFLOW_HOST greeting=$GREETING token=$TOKEN"
if [ "$OPSFLOW_HOST_INDEX" = "$FAIL_INDEX" ]; then echo failing >&2; exit 3; fi`, []map[string]any{
		{"name": "GREETING", "type": "string", "required": true},
		{"name": "TOKEN", "type": "secret"},
		{"name": "FAIL_INDEX", "type": "int", "default": -1},
	})
	addrs := []string{hosts.Targets[0].Addr, hosts.Targets[1].Addr, hosts.Targets[2].Addr}
	start := func(body map[string]any) jobResp {
		t.Helper()
		res := e.do(http.MethodPost, "/api/v1/jobs", "operator", body)
		if res.Status != 201 {
			t.Fatalf("start job: %d %s", res.Status, res.Body)
		}
		var j jobResp
		res.json(t, &j)
		return j
	}
	base := func() map[string]any {
		return map[string]any{"script_id": scriptID, "credential_id": cred, "targets": map[string]any{"hosts": addrs},
			"params": map[string]any{"GREETING": "hi there", "TOKEN": "s3cr3t-t0ken", "FAIL_INDEX": 1}, "policy": map[string]any{"concurrency": "2"}}
	}

	// Bad input names the field and starts nothing.
	before, _ := e.store.Jobs(context.Background(), 500)
	for _, c := range []struct {
		mut   func(map[string]any)
		field string
	}{
		{func(b map[string]any) { b["version"] = 99 }, "version"},
		{func(b map[string]any) { b["params"].(map[string]any)["FAIL_INDEX"] = "one" }, "params.FAIL_INDEX"},
		{func(b map[string]any) { delete(b["params"].(map[string]any), "TOKEN") }, "params.TOKEN"},
		{func(b map[string]any) { b["params"].(map[string]any)["EXTRA"] = "x" }, "params.EXTRA"},
		{func(b map[string]any) { b["targets"] = map[string]any{"selector": "opsflow-none=" + p} }, "targets"},
		{func(b map[string]any) { b["targets"] = map[string]any{"selector": "env in (prod"} }, "targets.selector"},
		{func(b map[string]any) { b["targets"] = map[string]any{"hosts": []string{}} }, "targets"},
		{func(b map[string]any) { b["policy"] = map[string]any{"concurrency": "0"} }, "policy.concurrency"},
		{func(b map[string]any) { b["policy"] = map[string]any{"batch": "+5%"} }, "policy.batch"},
		{func(b map[string]any) { b["credential_id"] = 999999 }, "credential_id"},
	} {
		b := base()
		c.mut(b)
		res := e.do(http.MethodPost, "/api/v1/jobs", "operator", b)
		if res.Status != 422 || res.apiError(t).Fields[c.field] == "" {
			t.Errorf("%s: %d %s", c.field, res.Status, res.Body)
		}
	}
	if after, _ := e.store.Jobs(context.Background(), 500); len(after) != len(before) {
		t.Fatalf("bad input created jobs: %d -> %d", len(before), len(after))
	}

	// A job: two hosts succeed, one fails; output stored, secret scrubbed.
	j := start(base())
	done := e.waitJob(j.ID, schema.JobFailed)
	if done.Counts["succeeded"] != 2 || done.Counts["failed"] != 1 {
		t.Fatalf("counts %+v", done)
	}
	var h0, h1 schema.JobHost
	e.do(http.MethodGet, fmt.Sprintf("/api/v1/jobs/%d/hosts/0", j.ID), "viewer", nil).json(t, &h0)
	e.do(http.MethodGet, fmt.Sprintf("/api/v1/jobs/%d/hosts/1", j.ID), "viewer", nil).json(t, &h1)
	if !strings.Contains(string(h0.Output), "greeting=hi there") || !strings.Contains(string(h0.Output), "token=***") || strings.Contains(string(h0.Output), "s3cr3t") || *h0.ExitCode != 0 {
		t.Fatalf("host 0: %+v", h0)
	}
	if h1.State != schema.HostFailed || *h1.ExitCode != 3 || !strings.Contains(string(h1.Output), "failing") {
		t.Fatalf("host 1: %+v", h1)
	}
	// Retry only the failed host, as a new job linked to the first.
	res := e.do(http.MethodPost, fmt.Sprintf("/api/v1/jobs/%d/retry-failed", j.ID), "operator", map[string]any{})
	var retry jobResp
	res.json(t, &retry)
	if res.Status != 201 || retry.Total != 1 || retry.ParentID == nil || *retry.ParentID != j.ID {
		t.Fatalf("retry-failed: %d %s", res.Status, res.Body)
	}
	if r := e.waitJob(retry.ID, schema.JobSucceeded, schema.JobFailed); r.Status != schema.JobSucceeded {
		t.Fatalf("retry: %+v", r)
	}

	// Rolling batches with a pause after the first; concurrency changes
	// while paused; resume finishes it.
	b := base()
	b["params"].(map[string]any)["FAIL_INDEX"] = -1
	b["policy"] = map[string]any{"concurrency": "1", "batch": "1", "pause_after_first_batch": true}
	pj := start(b)
	// The workflow pauses (its progress says so) a moment before the
	// job's row records it: wait for both.
	eventually(t, 60*time.Second, "paused after the first batch", func() bool {
		cur := e.job(pj.ID)
		return cur.Progress != nil && cur.Progress.Paused && cur.Progress.Succeeded == 1 && cur.Status == schema.JobPaused
	})
	if cur := e.job(pj.ID); cur.Counts["pending"] != 2 || cur.Status != schema.JobPaused {
		t.Fatalf("while paused: %+v", cur)
	}
	if res := e.do(http.MethodPost, fmt.Sprintf("/api/v1/jobs/%d/pause", pj.ID), "operator", map[string]any{}); res.Status != 409 {
		t.Fatalf("pause twice: %d %s", res.Status, res.Body)
	}
	res = e.do(http.MethodPatch, fmt.Sprintf("/api/v1/jobs/%d", pj.ID), "operator", map[string]any{"concurrency": 3})
	if res.Status != 200 || !strings.Contains(string(res.Body), `"Concurrency":3`) {
		t.Fatalf("set concurrency: %d %s", res.Status, res.Body)
	}
	if res := e.do(http.MethodPost, fmt.Sprintf("/api/v1/jobs/%d/resume", pj.ID), "operator", map[string]any{}); res.Status != 200 {
		t.Fatalf("resume: %d %s", res.Status, res.Body)
	}
	if r := e.waitJob(pj.ID, schema.JobSucceeded, schema.JobFailed); r.Status != schema.JobSucceeded || r.Counts["succeeded"] != 3 {
		t.Fatalf("after resume: %+v", r)
	}

	// Abort kills what runs and skips the rest.
	// The sleep's own command line is the marker pgrep looks for.
	marker := fmt.Sprintf("sleep 600.%d", time.Now().UnixNano()%1000000)
	slow := e.script(p+"-slow", marker, nil)
	aj := start(map[string]any{"script_id": slow, "credential_id": cred, "targets": map[string]any{"hosts": addrs}, "policy": map[string]any{"concurrency": "1"}})
	eventually(t, 30*time.Second, "slow script running", func() bool {
		return exec.Command("pgrep", "-f", marker).Run() == nil
	})
	if res := e.do(http.MethodPost, fmt.Sprintf("/api/v1/jobs/%d/abort", aj.ID), "operator", map[string]any{}); res.Status != 200 {
		t.Fatalf("abort: %d %s", res.Status, res.Body)
	}
	ab := e.waitJob(aj.ID, schema.JobAborted)
	if ab.Counts["skipped"] != 3 {
		hs, _ := e.store.JobHosts(context.Background(), aj.ID, "", -1, 10)
		t.Fatalf("aborted job: %+v hosts %+v", ab, hs)
	}
	eventually(t, 30*time.Second, "aborted script killed on the host", func() bool {
		return exec.Command("pgrep", "-f", marker).Run() != nil
	})
}

// TestJobRefusesChangedHostKey: a host whose key differs from the one
// recorded in the CMDB fails with the reason, and the script never runs.
func TestJobRefusesChangedHostKey(t *testing.T) {
	e := newEnv(t)
	edge := testenv.SSHDInNamespace(t, "job-edge")
	p := fmt.Sprintf("k%d", time.Now().UnixNano())
	cred := e.credential(p+"-key", edge)
	wrong := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(edge.Signer.PublicKey())))
	e.mkCI("host", p+"-edge", map[string]any{"address": edge.Targets[0].Addr, "ssh_host_key": wrong}, map[string]string{"job": p})
	sid := e.script(p+"-touch", "hostname", nil)
	res := e.do(http.MethodPost, "/api/v1/jobs", "operator", map[string]any{"script_id": sid, "credential_id": cred, "targets": map[string]any{"selector": "job=" + p}})
	var j jobResp
	res.json(t, &j)
	if res.Status != 201 || j.Total != 1 {
		t.Fatalf("start: %d %s", res.Status, res.Body)
	}
	e.waitJob(j.ID, schema.JobFailed)
	var h schema.JobHost
	e.do(http.MethodGet, fmt.Sprintf("/api/v1/jobs/%d/hosts/0", j.ID), "viewer", nil).json(t, &h)
	if !strings.Contains(h.Error, "host key changed") || h.Output != "" {
		t.Fatalf("host: %+v", h)
	}
	// With the right key recorded, the same job definition runs.
	ci, _ := e.store.CIByName(context.Background(), "host", p+"-edge")
	right := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(edge.Targets[0].HostKey)))
	if _, err := e.store.UpdateCI(context.Background(), ci.ID, ci.Version, schemaPatch("ssh_host_key", right), schema.Change{Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	res = e.do(http.MethodPost, "/api/v1/jobs", "operator", map[string]any{"script_id": sid, "credential_id": cred, "targets": map[string]any{"selector": "job=" + p}})
	res.json(t, &j)
	if done := e.waitJob(j.ID, schema.JobSucceeded, schema.JobFailed); done.Status != schema.JobSucceeded {
		t.Fatalf("with the right key: %+v", done)
	}
	e.do(http.MethodGet, fmt.Sprintf("/api/v1/jobs/%d/hosts/0", j.ID), "viewer", nil).json(t, &h)
	if strings.TrimSpace(string(h.Output)) != "job-edge" {
		t.Fatalf("output %q", h.Output)
	}
}

// TestJobOutputStreamsLive: a host's output reaches an SSE client while
// the script still runs, and the JSON page has the same pieces.
func TestJobOutputStreamsLive(t *testing.T) {
	e := newEnv(t)
	hosts := testenv.SSHD(t, 1)
	p := fmt.Sprintf("o%d", time.Now().UnixNano())
	cred := e.credential(p, hosts)
	sid := e.script(p, "echo first-$TOKEN; sleep 6; echo second", []map[string]any{{"name": "TOKEN", "type": "secret"}})
	res := e.do(http.MethodPost, "/api/v1/jobs", "operator", map[string]any{"script_id": sid, "credential_id": cred,
		"targets": map[string]any{"hosts": []string{hosts.Targets[0].Addr}}, "params": map[string]any{"TOKEN": "hush-hush"}})
	var j jobResp
	res.json(t, &j)
	if res.Status != 201 {
		t.Fatalf("job: %d %s", res.Status, res.Body)
	}
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/api/v1/jobs/%d/output?host=0", e.srv.URL, j.ID), nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+e.tokens["viewer"])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	sc := bufio.NewScanner(stream.Body)
	var got []string
	for sc.Scan() && len(got) < 2 {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		got = append(got, data)
		if len(got) == 1 {
			// The first line arrives while the script still sleeps.
			h, _ := e.store.JobHost(context.Background(), j.ID, 0)
			if h.State != schema.HostRunning || !strings.Contains(data, "first-***") || strings.Contains(data, "hush") {
				t.Fatalf("first piece %q with host %s", data, h.State)
			}
		}
	}
	if len(got) != 2 || !strings.Contains(got[1], "second") {
		t.Fatalf("streamed %v", got)
	}
	e.waitJob(j.ID, schema.JobSucceeded)
	var page struct {
		Items []schema.JobOutput
	}
	e.do(http.MethodGet, fmt.Sprintf("/api/v1/jobs/%d/output", j.ID), "viewer", nil).json(t, &page)
	var all strings.Builder
	for _, o := range page.Items {
		all.WriteString(string(o.Data))
	}
	if all.String() != "first-***\nsecond\n" {
		t.Fatalf("stored pieces %q", all.String())
	}
	if r := e.do(http.MethodGet, fmt.Sprintf("/api/v1/jobs/%d/output?host=7", j.ID), "viewer", nil); r.Status != 422 {
		t.Fatalf("bad host: %d", r.Status)
	}
}
