package runbook_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/opsflow/opsflow/internal/runbook"
)

func TestEval(t *testing.T) {
	vars := runbook.Vars{
		Inputs: map[string]any{"env": "prod", "n": int64(3), "hosts": []any{"a", "b"}, "labels": map[string]any{"z": "1", "a": "2", "m": "3"}},
		Steps: map[string]runbook.StepResult{
			"check": {Status: runbook.StatusSucceeded, Outputs: map[string]any{"status": int64(200), "body": map[string]any{"ok": true}}},
		},
		Item:  map[string]any{"name": "web-1"},
		Index: 1,
	}
	cases := []struct {
		expr string
		want any
	}{
		{"inputs.env == 'prod' && inputs.n > 2", true},
		{"steps.check.outputs.status", int64(200)},
		{"steps.check.outputs.body.ok", true},
		{"steps.check.status == 'succeeded'", true},
		{"item.name + '#' + string(index)", "web-1#1"},
		{"inputs.hosts.map(h, h + '.example.com')", []any{"a.example.com", "b.example.com"}},
		// Maps iterate in key order, so the result is the same on every replay.
		{"inputs.labels.map(k, k).join(',')", "a,m,z"},
		{"inputs.hosts.join(' ')", "a b"},
		{"{'b': 1, 'a': 2}", map[string]any{"a": int64(2), "b": int64(1)}},
	}
	for _, c := range cases {
		for range 20 { // a map's Go iteration order differs between runs
			got, err := runbook.Eval(c.expr, vars)
			if err != nil {
				t.Fatalf("%s: %v", c.expr, err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("%s = %#v, want %#v", c.expr, got, c.want)
			}
		}
	}
	if ok, err := runbook.EvalWhen("steps.check.outputs.status == 200", vars); err != nil || !ok {
		t.Errorf("EvalWhen = %v, %v", ok, err)
	}
	if _, err := runbook.EvalWhen("inputs.env", vars); err == nil {
		t.Error("EvalWhen of a string: no error")
	}
	if _, err := runbook.Eval("inputs.nosuch", vars); err == nil {
		t.Error("missing input: no error")
	}
	// No clock and no randomness: now() is not a function.
	if _, err := runbook.Eval("now()", vars); err == nil {
		t.Error("now() evaluated")
	}
	// A runaway expression stops at the cost limit.
	if _, err := runbook.Eval("[1,2,3,4,5,6,7,8,9,10].map(a, [1,2,3,4,5,6,7,8,9,10].map(b, [1,2,3,4,5,6,7,8,9,10].map(c, [1,2,3,4,5,6,7,8,9,10].map(d, [1,2,3,4,5,6,7,8,9,10].map(e, [1,2,3,4,5,6,7,8,9,10].map(f, a+b+c+d+e+f))))))", vars); err == nil || !strings.Contains(err.Error(), "cost") {
		t.Errorf("runaway expression: %v", err)
	}
}

func TestInterpolate(t *testing.T) {
	vars := runbook.Vars{Inputs: map[string]any{"env": "prod", "n": int64(3), "hosts": []any{"a", "b"}}}
	cases := []struct {
		in   string
		want any
	}{
		{"plain", "plain"},
		{"${{ inputs.n }}", int64(3)},
		{"${{ inputs.hosts }}", []any{"a", "b"}},
		{"env=${{ inputs.env }},n=${{ inputs.n }}", "env=prod,n=3"},
		{"${{ inputs.hosts }} at ${{ inputs.env }}", `["a","b"] at prod`},
		{" ${{ inputs.n }}", " 3"},
	}
	for _, c := range cases {
		got, err := runbook.Interpolate(c.in, vars)
		if err != nil {
			t.Fatalf("%q: %v", c.in, err)
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q = %#v, want %#v", c.in, got, c.want)
		}
	}
	with := map[string]any{"url": "https://${{ inputs.env }}.example.com", "expect_status": []any{int64(200)}, "headers": map[string]any{"X-N": "${{ inputs.n }}"}}
	got, err := runbook.InterpolateAll(with, vars)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"url": "https://prod.example.com", "expect_status": []any{int64(200)}, "headers": map[string]any{"X-N": int64(3)}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("InterpolateAll = %#v", got)
	}
	if _, err := runbook.Interpolate("${{ inputs.env ", vars); err == nil {
		t.Error("unterminated: no error")
	}
}

func TestCheckInputs(t *testing.T) {
	rb, err := runbook.Parse([]byte(head + `inputs:
  - {name: env, type: enum, values: [staging, prod], required: true}
  - {name: n, type: int, default: 2, min: 1, max: 5}
  - {name: tags, type: list}
  - {name: token, type: secret}
steps: [{id: a, kind: fail, with: {message: "${{ inputs.env }}"}}]
`))
	if err != nil {
		t.Fatal(err)
	}
	got, bad := rb.CheckInputs(map[string]any{"env": "prod", "token": "s3cret", "tags": []any{"x"}})
	if bad != nil {
		t.Fatal(bad)
	}
	if want := (map[string]any{"env": "prod", "n": int64(2), "tags": []any{"x"}, "token": "s3cret"}); !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v", got)
	}
	_, bad = rb.CheckInputs(map[string]any{"env": "dev", "n": 9.0, "extra": 1})
	want := map[string]string{"inputs.env": "must be one of staging, prod", "inputs.n": "out of range", "inputs.token": "required", "inputs.extra": "no such input"}
	if !reflect.DeepEqual(bad, want) {
		t.Errorf("bad = %v", bad)
	}
	// JSON numbers arrive as float64 and come out as int64.
	got, bad = rb.CheckInputs(map[string]any{"env": "staging", "n": 4.0, "token": "t"})
	if bad != nil || got["n"] != int64(4) || !reflect.DeepEqual(got["tags"], []any{}) {
		t.Errorf("got %#v, %v", got, bad)
	}
}

func TestRegisterKind(t *testing.T) {
	reg := runbook.Builtin()
	drain := &runbook.Kind{
		Name:        "kubernetes.drain",
		Description: "Cordon and drain a node.",
		Args: []*runbook.Arg{
			{Name: "node", Type: runbook.ArgString, Required: true},
			{Name: "grace", Type: runbook.ArgDuration},
		},
		Outputs: []runbook.Output{{Name: "evicted", Type: runbook.OutInt}},
	}
	if err := reg.Register(drain); err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(drain); err == nil {
		t.Error("registered the same kind twice")
	}
	if err := reg.Register(&runbook.Kind{Name: "Bad Name"}); err == nil {
		t.Error("registered a bad name")
	}
	if err := reg.Register(&runbook.Kind{Name: "x", Args: []*runbook.Arg{{Name: "a", Type: runbook.ArgEnum}}}); err == nil {
		t.Error("registered an enum without values")
	}
	src := head + `steps:
  - {id: d, kind: kubernetes.drain, with: {node: n1, grace: 30s}}
  - {id: e, kind: fail, when: steps.d.outputs.evicted > 0, with: {message: drained}}
`
	if _, err := reg.Parse([]byte(src)); err != nil {
		t.Fatal(err)
	}
	if _, err := runbook.Parse([]byte(src)); err == nil {
		t.Error("the built-in registry took a kind it does not have")
	}
	if !strings.Contains(string(reg.JSONSchema()), `"with.kubernetes.drain"`) {
		t.Error("schema lacks the registered kind")
	}
}

func TestParseKeepsShape(t *testing.T) {
	rb, err := runbook.Parse([]byte(head + `steps:
  - id: p
    kind: parallel
    with:
      branches:
        - {name: one, steps: [{id: a, kind: wait, with: {duration: 1s}}]}
        - {steps: [{id: b, kind: wait, with: {until: "2030-01-01T00:00:00Z"}}]}
  - id: c
    kind: fail
    when: steps.a.status == "succeeded" && steps.b.status == "succeeded"
    with: {message: done}
    retry: {attempts: 3, backoff: 1s}
    on_failure:
      - {id: undo, kind: notify, with: {channel: web, message: "c ${{ steps.c.status }}"}}
`))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	rb.Walk(func(s *runbook.Step) { ids = append(ids, s.ID) })
	if strings.Join(ids, ",") != "p,a,b,c,undo" {
		t.Errorf("walk order %v", ids)
	}
	c := rb.Step("c")
	if c.Retry.Attempts != 3 || c.OnFailure.Action != runbook.OnFailureCompensate || c.OnFailure.Steps[0].ID != "undo" || c.Pos.Line != 11 {
		t.Errorf("step c = %+v", c)
	}
	if n := rb.Step("p").Nested(); len(n) != 2 || n[1][0].ID != "b" {
		t.Errorf("nested %v", n)
	}
}
