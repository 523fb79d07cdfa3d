package api

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opsflow/opsflow/workflows"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
)

// BenchmarkStartWorkflow compares starting runs through the API (auth,
// validation, idempotency lookup, read model, audit) with the same starts
// on the bare Temporal SDK client, side by side in one run against the
// same server. Target (ANCHORS.md): the API keeps ≥ 90 % of the bare
// client's throughput. Reported: starts/s of each and api/bare.
func BenchmarkStartWorkflow(b *testing.B) {
	// No worker: a backlog of runs executing from one arm would slow the
	// other. This measures starts alone.
	e := newEnvWith(b, envOptions{noWorkers: true})
	const starts, conc = 400, 32
	in := workflows.DemoInput{Steps: 1, Target: "bench"}
	run := func(f func(i int) error) float64 {
		var next atomic.Int64
		var wg sync.WaitGroup
		begin := time.Now()
		for range conc {
			wg.Go(func() {
				for {
					i := int(next.Add(1))
					if i > starts {
						return
					}
					if err := f(i); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		return starts / time.Since(begin).Seconds()
	}
	var bare, viaAPI float64
	bareArm := func(n int) float64 {
		return run(func(i int) error {
			// The same start the API makes: same options, same attributes.
			_, err := e.temporal.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{
				ID:                       fmt.Sprintf("demo:bare-%d-%d-%d", time.Now().UnixNano(), n, i),
				TaskQueue:                workflows.TaskQueueOps,
				WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
				WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
				TypedSearchAttributes: temporal.NewSearchAttributes(
					workflows.SAKind.ValueSet(workflows.KindDemo),
					workflows.SAStartedBy.ValueSet("bench"),
					workflows.SATarget.ValueSet("bench"),
				),
			}, workflows.Demo, in)
			return err
		})
	}
	apiArm := func(n int) float64 {
		return run(func(i int) error {
			res := e.do(http.MethodPost, "/api/v1/demo/runs", "operator", map[string]any{"steps": 1, "target": "bench"},
				"Idempotency-Key", fmt.Sprintf("bench-%d-%d-%d", time.Now().UnixNano(), n, i))
			if res.Status != http.StatusCreated {
				return fmt.Errorf("start via api: %d %s", res.Status, res.Body)
			}
			return nil
		})
	}
	// Alternate which arm goes first so neither always meets a warmer or
	// busier server.
	for n := range b.N {
		if n%2 == 0 {
			bare += bareArm(n)
			viaAPI += apiArm(n)
		} else {
			viaAPI += apiArm(n)
			bare += bareArm(n)
		}
	}
	b.ReportMetric(bare/float64(b.N), "bare-starts/s")
	b.ReportMetric(viaAPI/float64(b.N), "api-starts/s")
	b.ReportMetric(viaAPI/bare, "api/bare")
}
