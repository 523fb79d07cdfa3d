package api

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.temporal.io/api/common/v1"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/opsflow/opsflow/internal/testenv"
	"github.com/opsflow/opsflow/schema"
)

// TestTenThousandHostJob runs one job over schema.MaxJobHosts targets
// (with the local transport, so the machine needs no 10,000 sshd) on a
// real Temporal server. Every target runs exactly once, and no run of the
// job's continue-as-new chain comes near Temporal's history limits.
func TestTenThousandHostJob(t *testing.T) {
	e := newEnv(t)
	mark := filepath.Join(t.TempDir(), "ran")
	p := fmt.Sprintf("s%d", time.Now().UnixNano())
	// sh, not the default bash: on the local transport each host's cost
	// is mostly processes started, and bash starts several times slower.
	// What runs around the script (the exactly-once wrapper) is the same.
	sid := e.scriptIn("sh", p+"-mark", `echo "$OPSFLOW_HOST" >> `+mark, nil)
	hosts := make([]string, schema.MaxJobHosts)
	for i := range hosts {
		hosts[i] = fmt.Sprintf("node-%05d", i)
	}
	res := e.do(http.MethodPost, "/api/v1/jobs", "admin", map[string]any{"script_id": sid,
		"targets": map[string]any{"hosts": hosts, "transport": "local"}, "policy": map[string]any{"concurrency": "200"}})
	var j struct {
		jobResp
		WorkflowID string `json:"workflow_id"`
	}
	res.json(t, &j)
	if res.Status != 201 || j.Total != len(hosts) {
		t.Fatalf("start: %d %.300s", res.Status, res.Body)
	}
	start := time.Now()
	var done jobResp
	// Each check queries the job's workflow and counts its 10,000 hosts:
	// once a second is plenty for a wait of minutes.
	pollEvery(t, 15*time.Minute, time.Second, "the 10,000-host job to end", func() bool {
		done = e.job(j.ID)
		return done.Status == schema.JobSucceeded || done.Status == schema.JobFailed
	})
	t.Logf("%d hosts in %s", len(hosts), time.Since(start).Round(time.Second))
	if done.Status != schema.JobSucceeded || done.Counts[schema.HostSucceeded] != len(hosts) {
		t.Fatalf("job: %+v", done)
	}

	f, err := os.Open(mark)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		seen[sc.Text()]++
	}
	for _, h := range hosts {
		if seen[h] != 1 {
			t.Errorf("%s ran %d times", h, seen[h])
		}
	}
	if len(seen) != len(hosts) {
		t.Errorf("%d distinct targets ran, want %d", len(seen), len(hosts))
	}

	// Walk the chain from the first run: each continued as new well
	// under the 10,240-event limit (and Temporal's 50,000 hard one).
	ctx := context.Background()
	latest, err := e.temporal.DescribeWorkflowExecution(ctx, j.WorkflowID, "")
	if err != nil {
		t.Fatal(err)
	}
	runs, maxLen := 0, int64(0)
	for run := latest.WorkflowExecutionInfo.GetFirstRunId(); ; {
		d, err := e.temporal.DescribeWorkflowExecution(ctx, j.WorkflowID, run)
		if err != nil {
			t.Fatal(err)
		}
		info := d.WorkflowExecutionInfo
		runs++
		maxLen = max(maxLen, info.HistoryLength)
		if info.HistoryLength >= 10240 {
			t.Errorf("run %s has %d history events", run, info.HistoryLength)
		}
		if info.Status != enums.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW {
			break
		}
		if run, err = nextRun(ctx, e, j.WorkflowID, run); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d runs, longest history %d events", runs, maxLen)
	if runs < len(hosts)/1000 {
		t.Errorf("%d runs for %d hosts: no continue-as-new every 1,000 hosts", runs, len(hosts))
	}
}

// nextRun is the run that run continued as new into.
func nextRun(ctx context.Context, e *env, wid, run string) (string, error) {
	res, err := e.temporal.WorkflowService().GetWorkflowExecutionHistoryReverse(ctx, &workflowservice.GetWorkflowExecutionHistoryReverseRequest{
		Namespace: testenv.TemporalNamespace, Execution: &common.WorkflowExecution{WorkflowId: wid, RunId: run}, MaximumPageSize: 1})
	if err != nil {
		return "", err
	}
	for _, ev := range res.History.Events {
		if a := ev.GetWorkflowExecutionContinuedAsNewEventAttributes(); a != nil {
			return a.NewExecutionRunId, nil
		}
	}
	return "", fmt.Errorf("run %s did not continue as new", run)
}
