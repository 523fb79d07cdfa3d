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
	"go.temporal.io/sdk/client"
)

// BenchmarkStartWorkflow compares starting runs through the API (auth,
// validation, idempotency lookup, read model, audit) with the same starts
// on the bare Temporal SDK client, side by side in one run against the
// same server. Target (ANCHORS.md): the API keeps ≥ 90 % of the bare
// client's throughput. Reported: starts/s of each and api/bare.
func BenchmarkStartWorkflow(b *testing.B) {
	e := newEnv(b)
	const starts, conc = 200, 8
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
	for n := range b.N {
		bare += run(func(i int) error {
			_, err := e.temporal.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{
				ID: fmt.Sprintf("bench:bare-%d-%d-%d", time.Now().UnixNano(), n, i), TaskQueue: workflows.TaskQueueOps,
			}, workflows.Demo, in)
			return err
		})
		viaAPI += run(func(i int) error {
			res := e.do(http.MethodPost, "/api/v1/demo/runs", "operator", map[string]any{"steps": 1, "target": "bench"},
				"Idempotency-Key", fmt.Sprintf("bench-%d-%d-%d", time.Now().UnixNano(), n, i))
			if res.Status != http.StatusCreated {
				return fmt.Errorf("start via api: %d %s", res.Status, res.Body)
			}
			return nil
		})
	}
	b.ReportMetric(bare/float64(b.N), "bare-starts/s")
	b.ReportMetric(viaAPI/float64(b.N), "api-starts/s")
	b.ReportMetric(viaAPI/bare, "api/bare")
}
