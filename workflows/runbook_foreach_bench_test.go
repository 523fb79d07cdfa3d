package workflows_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opsflow/opsflow/internal/secret"
	"github.com/opsflow/opsflow/internal/testenv"
	"github.com/opsflow/opsflow/workflows"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
)

// historyLen is the number of events of the latest run of workflow id,
// and whether it exists.
func historyLen(ctx context.Context, c client.Client, id string) (int, bool) {
	n := 0
	it := c.GetWorkflowHistory(ctx, id, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		if _, err := it.Next(); err != nil {
			return n, false
		}
		n++
	}
	return n, n > 0
}

// TestRunbookForeach5000 runs a foreach of 5,000 items (BENCH_FOREACH_ITEMS)
// at concurrency 100, each item an http step to a local server, on the
// real Temporal server, and reports its wall time and the longest history
// of the run's workflows (the run and its chunk children). It fails if a
// history passes the count at which Temporal suggests continue-as-new
// (4,096 events), far below its limit of 51,200. Set
// BENCH_RUNBOOK_FOREACH=1 to run it (task bench:runbook:foreach).
func TestRunbookForeach5000(t *testing.T) {
	if os.Getenv("BENCH_RUNBOOK_FOREACH") == "" {
		t.Skip("a measurement: set BENCH_RUNBOOK_FOREACH=1 (task bench:runbook:foreach)")
	}
	items := 5000
	if v, err := strconv.Atoi(os.Getenv("BENCH_FOREACH_ITEMS")); err == nil && v > 0 {
		items = v
	}
	ctx := context.Background()
	c := testenv.TemporalClient(t, client.Options{})
	st := benchWorkers(t, c)
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = w.Write([]byte("ok"))
	}))
	defer srv.Close()
	list := make([]any, items)
	for i := range list {
		list[i] = i
	}
	src := fmt.Sprintf(`apiVersion: opsflow/v1
kind: Runbook
metadata: {name: many}
inputs:
  - {name: items, type: list, items: int}
steps:
  - id: each
    kind: foreach
    with:
      items: ${{ inputs.items }}
      concurrency: 100
      steps:
        - {id: ping, kind: http, with: {url: "%s/${{ string(item) }}"}}
`, srv.URL)
	key, _ := secret.ParseKey(secret.NewKey())
	keys, _ := secret.NewKeyring(key)
	begin := time.Now()
	id, err := workflows.StartRunbook(ctx, c, keys, workflows.RunbookStart{Name: "many", Version: 1, Source: src, StartedBy: "bench",
		Inputs: map[string]any{"items": list}, Unique: strconv.FormatInt(time.Now().UnixNano(), 36)})
	if err != nil {
		t.Fatal(err)
	}
	var res workflows.RunbookResult
	if err := c.GetWorkflow(ctx, id, "").Get(ctx, &res); err != nil {
		t.Fatal(err)
	}
	wall := time.Since(begin)
	if o := res.Steps["each"].Outputs; o["succeeded"] != float64(items) {
		t.Fatalf("each: %+v", o)
	}
	if n := hits.Load(); n != int64(items) {
		t.Fatalf("%d requests for %d items", n, items)
	}
	longest, which := 0, ""
	n, _ := historyLen(ctx, c, id)
	longest, which = n, id
	chunks := 0
	for i := 0; ; i++ {
		cid := workflows.RunbookChunkWorkflowID(id, "each", 1, i)
		n, ok := historyLen(ctx, c, cid)
		if !ok {
			break
		}
		chunks++
		if n > longest {
			longest, which = n, cid
		}
	}
	t.Logf("foreach of %d items at concurrency 100: wall %s; parent history %d events; %d chunk runs; longest history %d events (%s)",
		items, wall.Round(time.Millisecond), func() int { n, _ := historyLen(ctx, c, id); return n }(), chunks, longest, which)
	if longest > 4096 {
		t.Fatalf("history of %s has %d events, over the 4,096 at which Temporal suggests continue-as-new", which, longest)
	}
	if rows, err := st.RunSteps(ctx, id); err != nil || len(rows) != items+1 {
		t.Fatalf("read model: %d rows, %v", len(rows), err)
	}
}
