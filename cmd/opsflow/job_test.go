package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/opsflow/opsflow/internal/testenv"
	"github.com/opsflow/opsflow/schema"
)

// TestJobRunCommand runs `opsflow job run` against the real API, Temporal
// and workers: the script found by name, parameters typed as its version
// declares them, host output printed as hosts finish, the exit status of
// --wait, the Idempotency-Key, field errors, and Ctrl-C leaving the job
// running. Local-transport jobs run on the worker itself, so the caller is
// an admin.
func TestJobRunCommand(t *testing.T) {
	base, st := startStack(t)
	ctx := context.Background()
	admin := envOf(base, apiToken(t, st, schema.RoleAdmin))
	c, err := newClient(admin)
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("cli-job-%d", time.Now().UnixNano())
	script := map[string]any{"name": name, "content": `echo "hello from $OPSFLOW_HOST count=$COUNT port=$PORT loud=$LOUD"
if [ "$OPSFLOW_HOST" = slow ]; then sleep 600; fi
[ "$OPSFLOW_HOST" != bad ]`,
		"parameters": []map[string]any{{"name": "COUNT", "type": "int", "required": true}, {"name": "PORT", "type": "string"}, {"name": "LOUD", "type": "bool", "default": false}}}
	if _, err := c.do(ctx, http.MethodPost, "/api/v1/scripts", script, nil); err != nil {
		t.Fatal(err)
	}
	job := func(ctx context.Context, out *syncBuffer, args ...string) error {
		return jobCmd(ctx, append([]string{"run", "--script", name, "--transport", "local"}, args...), out, admin)
	}

	// PORT=8080 stays a string (the version declares it so), COUNT=3 and
	// LOUD=true do not; flags may follow in any order.
	var out syncBuffer
	if err := job(ctx, &out, "--hosts", "a,b", "--param", "COUNT=3", "--param", "PORT=8080", "--param", "LOUD=true", "--wait"); err != nil {
		t.Fatalf("job run --wait: %v\n%s", err, out.String())
	}
	got := out.String()
	t.Logf("opsflow job run --wait:\n%s", got)
	for _, want := range []string{
		"== a (host 0) succeeded, exit 0, ", "hello from a count=3 port=8080 loud=true\n",
		"== b (host 1) succeeded, exit 0, ", "hello from b count=3 port=8080 loud=true\n",
		"succeeded: 2 succeeded, 0 failed, 0 skipped of 2 hosts",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if !regexp.MustCompile(`^job \d+: \w+, 2 hosts\n` + regexp.QuoteMeta(base) + `/jobs/\d+\n`).MatchString(got) {
		t.Errorf("no job line and URL first:\n%s", got)
	}

	// A failed host: its output and exit code, a summary, and a non-zero
	// exit from the command as a process.
	stdout, stderr, code := opsflowExit(t, []string{"OPSFLOW_URL=" + base, "OPSFLOW_TOKEN=" + admin("OPSFLOW_TOKEN")},
		"job", "run", "--script", name, "--transport", "local", "--hosts", "ok,bad", "--param", "COUNT=1", "--wait")
	if code != 1 || !strings.Contains(stdout, "== bad (host 1) failed, exit 1, ") || !strings.Contains(stdout, "hello from bad count=1") ||
		!regexp.MustCompile(`opsflow: job \d+ failed: 1 succeeded, 1 failed, 0 skipped of 2 hosts`).MatchString(stderr) {
		t.Fatalf("failed job: exit %d\n%s%s", code, stdout, stderr)
	}

	// The same Idempotency-Key reports the first job.
	var first, again syncBuffer
	if err := job(ctx, &first, "--hosts", "k", "--param", "COUNT=1", "--idempotency-key", name); err != nil {
		t.Fatal(err)
	}
	if err := job(ctx, &again, "--hosts", "k", "--param", "COUNT=1", "--idempotency-key", name); err != nil {
		t.Fatal(err)
	}
	jobID := regexp.MustCompile(`^job (\d+):`)
	if m1, m2 := jobID.FindStringSubmatch(first.String()), jobID.FindStringSubmatch(again.String()); m1 == nil || m2 == nil || m1[1] != m2[1] ||
		!strings.Contains(again.String(), "already started with this Idempotency-Key") {
		t.Fatalf("repeated key:\n%s\n%s", first.String(), again.String())
	}

	// Refusals name the field and why; nothing runs.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--hosts", "a", "--param", "COUNT=many"}, "params.COUNT: must be an integer"},
		{[]string{"--hosts", "a", "--param", "COUNT=1", "--param", "NOPE=1"}, "params.NOPE: version 1 has no parameter NOPE"},
		{[]string{"--hosts", "a", "--param", "COUNT=1", "--concurrency", "lots"}, "policy.concurrency: "},
		{[]string{"--selector", "a", "--hosts", "b"}, "one of them"},
		{[]string{"--hosts", "a", "--version", "9"}, "version 9: "},
	} {
		var out syncBuffer
		if err := job(ctx, &out, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("job run %v: %v, want %q", tc.args, err, tc.want)
		}
	}
	if err := jobCmd(ctx, []string{"run", "--script", name + "-missing", "--hosts", "a"}, &bytes.Buffer{}, admin); err == nil || !strings.Contains(err.Error(), "no script is named") {
		t.Errorf("missing script: %v", err)
	}
	// Without the local transport a job needs the hosts' credential.
	if err := jobCmd(ctx, []string{"run", "--script", name, "--hosts", "a", "--param", "COUNT=1"}, &bytes.Buffer{}, admin); err == nil ||
		!strings.Contains(err.Error(), "\n  credential_id: required") {
		t.Errorf("no credential: %v", err)
	}

	// Ctrl-C while waiting stops the waiting, not the job.
	waitCtx, interrupt := context.WithCancel(ctx)
	defer interrupt()
	var slow syncBuffer
	done := make(chan error, 1)
	go func() { done <- job(waitCtx, &slow, "--hosts", "fast,slow", "--param", "COUNT=1", "--wait") }()
	testenv.Eventually(t, 2*time.Minute, "the fast host's output", func() bool { return strings.Contains(slow.String(), "== fast (host 0) succeeded") })
	interrupt()
	err = <-done
	id := jobID.FindStringSubmatch(slow.String())
	if err == nil || id == nil || !strings.Contains(err.Error(), "stopped waiting; job "+id[1]+" goes on") || !strings.Contains(err.Error(), "/api/v1/jobs/"+id[1]+"/abort") {
		t.Fatalf("interrupted wait: %v\n%s", err, slow.String())
	}
	var j jobState
	if err := c.get(ctx, "/api/v1/jobs/"+id[1], &j); err != nil || j.Status != schema.JobRunning {
		t.Fatalf("the job after the interrupted wait: %+v %v", j, err)
	}
	if _, err := c.do(ctx, http.MethodPost, "/api/v1/jobs/"+id[1]+"/abort", nil, nil); err != nil {
		t.Fatal(err)
	}
}
