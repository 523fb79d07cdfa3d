package workflows

import (
	"errors"
	"fmt"
	"sort"
	"strconv"

	"github.com/opsflow/opsflow/activities"
	"github.com/opsflow/opsflow/internal/runbook"
	"github.com/opsflow/opsflow/schema"
	"go.temporal.io/sdk/workflow"
)

func init() { registerStep("foreach", stepForeach) }

// foreachChunkSize bounds the items one workflow run handles: a foreach
// of more items runs them as child runs (chunks) of this many, so no
// history comes near Temporal's limits however many items there are.
const foreachChunkSize = 250

// LoopState is a foreach's items and which of them succeeded, kept so a
// retry from the step runs only the items that did not.
type LoopState struct {
	Items     []any
	Succeeded []int
	Failed    int
	// ItemSteps holds the body steps' states of items that failed, so a
	// retry does not run their succeeded steps again.
	ItemSteps map[string]map[string]*StepState `json:",omitempty"`
}

// ForeachChunk makes a Runbook run a chunk of a foreach: the body of the
// foreach at Path (step StepID) for the items at Indices.
type ForeachChunk struct {
	Root        string // the run the read model files the steps under
	Path        string
	StepID      string
	Items       []any
	Indices     []int
	Concurrency int
	MaxFailures int                              // stop starting items once more failed; -1: never
	Scope       map[string]*StepState            // the steps the body may read
	ItemSteps   map[string]map[string]*StepState // prior states of items retried
	Item        any                              // an enclosing foreach's item
	Index       int
	InLoop      bool
}

// ChunkResult is what a chunk did.
type ChunkResult struct {
	Succeeded []int
	Failed    int
	ItemSteps map[string]map[string]*StepState
	FirstErr  string
}

// stepForeach runs its body once per item, concurrency at once, inline
// for up to foreachChunkSize items and as chunk child runs beyond.
func stepForeach(ctx workflow.Context, c *stepCall) (map[string]any, error) {
	ls := c.state.Loop
	if ls == nil {
		ls = &LoopState{ItemSteps: map[string]map[string]*StepState{}}
		if sel := c.str("selector"); sel != "" {
			typ := c.str("type")
			if typ == "" {
				typ = "host"
			}
			var cis []activities.RunbookCI
			if err := workflow.ExecuteActivity(c.activityOptions(ctx, shortActivity), runbookActivities.QueryRunbookCIs,
				activities.QueryRunbookCIsInput{Type: typ, Selector: sel, Limit: schema.MaxJobHosts, Brief: true}).Get(ctx, &cis); err != nil {
				return nil, err
			}
			ls.Items, _ = toAny(cis).([]any) //workflowcheck:ignore internal/runbook is pure: CEL without clock or randomness, maps read in key order
		} else {
			ls.Items, _ = c.args["items"].([]any)
		}
		if ls.Items == nil {
			ls.Items = []any{}
		}
		c.state.Loop = ls
	}
	if ls.ItemSteps == nil {
		ls.ItemSteps = map[string]map[string]*StepState{}
	}
	total := len(ls.Items)
	budget := 0
	if mf := c.str("max_failures"); mf != "" {
		n, err := schema.ParseCount(mf, total)
		if err != nil {
			n = 0
		}
		budget = n
	}
	conc := max(1, int(c.integer("concurrency")))
	done := map[int]bool{}
	for _, i := range ls.Succeeded {
		done[i] = true
	}
	var todo []int
	for i := range ls.Items {
		if !done[i] {
			todo = append(todo, i)
		}
	}
	ls.Failed = 0
	body, _ := c.args["steps"].([]*runbook.Step)
	var firstErr string
	record := func(res ChunkResult) {
		ls.Succeeded = append(ls.Succeeded, res.Succeeded...)
		ls.Failed += res.Failed
		//workflowcheck:ignore order-independent: each entry is handled on its own
		for k, v := range res.ItemSteps {
			ls.ItemSteps[k] = v
		}
		for _, i := range res.Succeeded {
			delete(ls.ItemSteps, strconv.Itoa(i))
		}
		if firstErr == "" {
			firstErr = res.FirstErr
		}
	}
	if len(todo) <= foreachChunkSize {
		record(c.run.runItems(ctx, c.scope, body, c.path, ls.Items, todo, conc, budget, ls.ItemSteps))
	} else {
		// Chunks one after another, each running conc items at once: the
		// same concurrency as inline, one history per chunk.
		scopeSteps := c.scope.visible()
		for n := 0; n*foreachChunkSize < len(todo) && ls.Failed <= budget; n++ {
			idx := todo[n*foreachChunkSize : min(len(todo), (n+1)*foreachChunkSize)]
			items := make([]any, len(idx))
			prior := map[string]map[string]*StepState{}
			for k, i := range idx {
				items[k] = ls.Items[i]
				if p := ls.ItemSteps[strconv.Itoa(i)]; p != nil {
					prior[strconv.Itoa(i)] = p
				}
			}
			item, index, inLoop := c.scope.loopItem()
			chunk := &ForeachChunk{Root: c.run.root, Path: c.path, StepID: c.step.ID, Items: items, Indices: idx, Concurrency: conc,
				MaxFailures: budget - ls.Failed, Scope: scopeSteps, ItemSteps: prior, Item: item, Index: index, InLoop: inLoop}
			id := RunbookChunkWorkflowID(c.run.root, c.path, c.state.Attempts, n)
			cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{WorkflowID: id, TaskQueue: TaskQueueOps})
			in := c.run.in
			in.State, in.Chunk = nil, chunk
			var res RunbookResult
			if err := workflow.ExecuteChildWorkflow(cctx, Runbook, in).Get(ctx, &res); err != nil {
				return nil, err
			}
			if res.Chunk != nil {
				record(*res.Chunk)
			}
		}
	}
	sort.Ints(ls.Succeeded)
	out := map[string]any{"total": int64(total), "succeeded": int64(len(ls.Succeeded)), "failed": int64(ls.Failed)}
	if ctx.Err() != nil {
		return out, ctx.Err()
	}
	if ls.Failed > budget || len(ls.Succeeded)+ls.Failed < total && ls.Failed > 0 {
		return out, fmt.Errorf("%d of %d items failed (first: %s)", ls.Failed, total, firstErr)
	}
	return out, nil
}

// runItems runs body for the items at idx, conc at once, until more than
// budget failed.
func (r *runbookRun) runItems(ctx workflow.Context, sc *scope, body []*runbook.Step, path string, items []any, idx []int, conc, budget int,
	prior map[string]map[string]*StepState) ChunkResult {
	res := ChunkResult{ItemSteps: map[string]map[string]*StepState{}}
	running := 0
	for k, i := range idx {
		if err := workflow.Await(ctx, func() bool { return running < conc }); err != nil {
			break
		}
		if res.Failed > budget {
			break
		}
		steps := prior[strconv.Itoa(i)]
		if steps == nil {
			steps = map[string]*StepState{}
		}
		isc := &scope{parent: sc, steps: steps, prefix: fmt.Sprintf("%s[%d].", path, i), loop: true, item: items[k], index: i}
		if len(items) != len(idx) { // the inline case passes every item
			isc.item = items[i]
		}
		running++
		workflow.Go(ctx, func(gctx workflow.Context) {
			defer func() { running-- }()
			err := r.runSteps(gctx, isc, body, path)
			var sf *stepFailure
			switch {
			case err == nil:
				res.Succeeded = append(res.Succeeded, i)
			case errors.As(err, &sf):
				res.Failed++
				res.ItemSteps[strconv.Itoa(i)] = steps
				if res.FirstErr == "" {
					res.FirstErr = fmt.Sprintf("item %d: %s", i, sf.Error())
				}
			}
		})
	}
	_ = workflow.Await(ctx, func() bool { return running == 0 })
	if ctx.Err() != nil {
		dctx, cancel := workflow.NewDisconnectedContext(ctx)
		defer cancel()
		_ = workflow.Await(dctx, func() bool { return running == 0 })
	}
	return res
}

// visible flattens the step states the scope sees.
func (s *scope) visible() map[string]*StepState {
	out := map[string]*StepState{}
	var chain []*scope
	for c := s; c != nil; c = c.parent {
		chain = append(chain, c)
	}
	for i := len(chain) - 1; i >= 0; i-- {
		//workflowcheck:ignore order-independent: each entry is handled on its own
		for id, st := range chain[i].steps {
			out[id] = &StepState{Status: st.Status, Outputs: st.Outputs}
		}
	}
	return out
}

// loopItem is the item of the nearest enclosing foreach.
func (s *scope) loopItem() (any, int, bool) {
	for c := s; c != nil; c = c.parent {
		if c.loop {
			return c.item, c.index, true
		}
	}
	return nil, 0, false
}

// runChunk runs a foreach chunk (RunbookInput.Chunk).
func (r *runbookRun) runChunk(ctx workflow.Context) (RunbookResult, error) {
	ch := r.in.Chunk
	if err := r.prepare(); err != nil {
		return RunbookResult{}, err
	}
	r.root = ch.Root
	fe := r.rb.Step(ch.StepID) //workflowcheck:ignore internal/runbook is pure: CEL without clock or randomness, maps read in key order
	if fe == nil {
		return RunbookResult{}, fmt.Errorf("runbook %s has no step %s", r.in.Name, ch.StepID)
	}
	var body []*runbook.Step
	//workflowcheck:ignore internal/runbook is pure: CEL without clock or randomness, maps read in key order
	for _, l := range fe.Nested() {
		body = l
	}
	//workflowcheck:ignore order-independent: each entry is handled on its own
	for _, st := range ch.Scope {
		st.Outputs = normalizeMap(st.Outputs)
	}
	sc := &scope{steps: ch.Scope, loop: ch.InLoop, item: normalize(ch.Item), index: ch.Index}
	budget := ch.MaxFailures
	if budget < 0 {
		budget = len(ch.Indices)
	}
	items := make([]any, len(ch.Items))
	for i, it := range ch.Items {
		items[i] = normalize(it)
	}
	res := r.runItems(ctx, sc, body, ch.Path, items, ch.Indices, ch.Concurrency, budget, ch.ItemSteps)
	r.flush(ctx)
	return RunbookResult{Status: schema.RunCompleted, Chunk: &res}, ctx.Err()
}
