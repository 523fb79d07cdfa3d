package workflows_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opsflow/opsflow/activities"
	"github.com/opsflow/opsflow/internal/secret"
	"github.com/opsflow/opsflow/internal/testenv"
	"github.com/opsflow/opsflow/schema"
	"github.com/opsflow/opsflow/workers"
	"github.com/opsflow/opsflow/workflows"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/workflow"
)

// benchSteps is the runbook of the interpreter bench: n http steps to a
// local server, the cheapest step that runs a real activity.
func benchSteps(n int, url string) string {
	var b strings.Builder
	b.WriteString("apiVersion: opsflow/v1\nkind: Runbook\nmetadata: {name: bench}\nsteps:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - id: s%d\n    kind: http\n    with: {url: %q}\n", i, url)
	}
	return b.String()
}

// HandWrittenSteps is the reference of the interpreter bench: the same
// activities the runbook's steps run, one after another, in plain Go.
func HandWrittenSteps(ctx workflow.Context, url string, n int) error {
	var rb *activities.Runbooks
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute})
	for range n {
		var res activities.RunbookHTTPResult
		if err := workflow.ExecuteActivity(ctx, rb.RunbookHTTP, activities.RunbookHTTPInput{URL: url}).Get(ctx, &res); err != nil {
			return err
		}
	}
	return nil
}

// benchWorkers starts every task queue's worker on the package's Temporal
// server with SQLite, HandWrittenSteps registered beside the rest.
func benchWorkers(b testing.TB, c client.Client) *schema.Store {
	ctx := context.Background()
	st, err := schema.Open(ctx, filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	if _, err := st.MigrateUp(ctx); err != nil {
		b.Fatal(err)
	}
	key, _ := secret.ParseKey(secret.NewKey())
	keys, _ := secret.NewKeyring(key)
	for _, q := range workflows.TaskQueues {
		w, err := workers.New(c, q, workers.Deps{Store: st, Secrets: keys, LocalTransport: true,
			HTTPStepAllowNets: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
		if err != nil {
			b.Fatal(err)
		}
		if q == workflows.TaskQueueOps {
			w.RegisterWorkflow(HandWrittenSteps)
		}
		if err := w.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(w.Stop)
	}
	return st
}

// BenchmarkRunbookOverhead runs a 20-step runbook of http steps and a
// hand-written workflow running the same 20 activities, on the same
// worker and Temporal server, alternately, BENCH_ROUNDS rounds (default
// 5), and reports the best of each and their ratio (target ≤ 1.3).
func BenchmarkRunbookOverhead(b *testing.B) {
	const steps = 20
	rounds := 5
	if v, err := strconv.Atoi(os.Getenv("BENCH_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	ctx := context.Background()
	c := testenv.TemporalClient(b, client.Options{})
	benchWorkers(b, c)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) }))
	defer srv.Close()
	src := benchSteps(steps, srv.URL)
	key, _ := secret.ParseKey(secret.NewKey())
	keys, _ := secret.NewKeyring(key)
	tag := strconv.FormatInt(time.Now().UnixNano(), 36)

	runbook := func(i int) time.Duration {
		begin := time.Now()
		id, err := workflows.StartRunbook(ctx, c, keys, workflows.RunbookStart{Name: "bench", Version: 1, Source: src, StartedBy: "bench",
			Unique: fmt.Sprintf("%s-%d", tag, i)})
		if err != nil {
			b.Fatal(err)
		}
		var res workflows.RunbookResult
		if err := c.GetWorkflow(ctx, id, "").Get(ctx, &res); err != nil || res.Status != schema.RunCompleted {
			b.Fatalf("runbook: %+v %v", res, err)
		}
		return time.Since(begin)
	}
	hand := func(i int) time.Duration {
		begin := time.Now()
		wr, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: fmt.Sprintf("bench-hand-%s-%d", tag, i), TaskQueue: workflows.TaskQueueOps},
			HandWrittenSteps, srv.URL, steps)
		if err != nil {
			b.Fatal(err)
		}
		if err := wr.Get(ctx, nil); err != nil {
			b.Fatal(err)
		}
		return time.Since(begin)
	}
	// One of each first, unmeasured: the worker's caches and connections.
	runbook(-1)
	hand(-1)
	b.ResetTimer()
	bestRB, bestHand := time.Duration(1<<62), time.Duration(1<<62)
	for i := range rounds {
		var rb, hw time.Duration
		if i%2 == 0 {
			rb, hw = runbook(i), hand(i)
		} else {
			hw, rb = hand(i), runbook(i)
		}
		b.Logf("round %d: runbook %s, hand-written %s (%.2fx)", i+1, rb.Round(time.Millisecond), hw.Round(time.Millisecond), float64(rb)/float64(hw))
		bestRB, bestHand = min(bestRB, rb), min(bestHand, hw)
	}
	ratio := float64(bestRB) / float64(bestHand)
	b.Logf("%d steps, best of %d: runbook %s, hand-written %s: %.2fx (target ≤ 1.3x)", steps, rounds,
		bestRB.Round(time.Millisecond), bestHand.Round(time.Millisecond), ratio)
	b.ReportMetric(float64(bestRB.Milliseconds()), "runbook-ms")
	b.ReportMetric(float64(bestHand.Milliseconds()), "hand-ms")
	b.ReportMetric(ratio, "ratio")
}
