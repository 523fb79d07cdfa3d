package runbook_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/opsflow/opsflow/internal/runbook"
)

const head = "apiVersion: opsflow/v1\nkind: Runbook\nmetadata: {name: x}\n"

// want is one expected error: position, path, and a part of the reason.
type want struct {
	line, col int
	path      string
	reason    string
}

func TestParseRefusesBadDocuments(t *testing.T) {
	cases := []struct {
		name string
		src  string
		want []want
	}{
		{"invalid YAML", head + "steps:\n  - id: a\n    kind: wait\n    with: {duration: 1s\n",
			[]want{{7, 5, "", "invalid YAML: did not find expected ',' or '}'"}}},
		{"invalid YAML tab", head + "steps:\n\t- id: a\n",
			[]want{{5, 1, "", "invalid YAML: found character that cannot start any token"}}},
		{"invalid JSON", `{"apiVersion": "opsflow/v1", "kind": "Runbook",` + "\n" + `  "metadata": {"name": "x"} "steps": []}`,
			[]want{{2, 29, "", "invalid JSON: invalid character '\"' after object key:value pair"}}},
		{"empty", "", []want{{1, 1, "", "empty document"}}},
		{"two documents", head + "steps: [{id: a, kind: fail, with: {message: m}}]\n---\nkind: Runbook\n",
			[]want{{5, 1, "", "one runbook per file"}}},
		{"not a mapping", "- a\n", []want{{1, 1, "", "must be a mapping, not a list"}}},
		{"missing fields", "kind: Runbook\n", []want{
			{1, 1, "apiVersion", "required"}, {1, 1, "metadata", "required"}, {1, 1, "steps", "required"}}},
		{"wrong apiVersion and unknown field", "apiVersion: opsflow/v2\nkind: Runbook\nmetadata: {name: x, owner: me}\nsteps: [{id: a, kind: fail, with: {message: m}}]\n",
			[]want{{1, 13, "apiVersion", "must be opsflow/v1"}, {3, 21, "metadata.owner", `unknown field "owner"`}}},
		{"unknown kind", head + "steps:\n  - id: a\n    kind: kubernetes.drain\n",
			[]want{{6, 11, "steps[0].kind", `unknown step kind "kubernetes.drain" (known: approval, cmdb.query, cmdb.update, fail, foreach, http, notify, parallel, runbook, script, wait)`}}},
		{"duplicate ids, nested too", head + "steps:\n  - {id: a, kind: fail, with: {message: m}}\n  - id: each\n    kind: foreach\n    with:\n      items: [1]\n      steps:\n        - {id: a, kind: fail, with: {message: m}}\n",
			[]want{{11, 16, "steps[1].with.steps[0].id", `duplicate step id "a" (first at line 5)`}}},
		{"forward reference", head + "steps:\n  - id: a\n    kind: wait\n    when: steps.b.status == 'succeeded'\n    with: {duration: 1s}\n  - {id: b, kind: wait, with: {duration: 1s}}\n",
			[]want{{7, 11, "steps[0].when", `step "b" runs after this one`}}},
		{"self reference (a cycle)", head + "steps:\n  - id: a\n    kind: fail\n    when: steps.a.outputs.x == 1\n    with: {message: m}\n",
			[]want{{7, 11, "steps[0].when", `step "a" refers to itself`}}},
		{"unknown step", head + "steps:\n  - id: a\n    kind: fail\n    with: {message: \"${{ steps.zz.status }}\"}\n",
			[]want{{7, 26, "steps[0].with.message", `no step "zz"`}}},
		{"step in a sibling branch", head + "steps:\n  - id: p\n    kind: parallel\n    with:\n      branches:\n        - steps: [{id: a, kind: wait, with: {duration: 1s}}]\n        - steps: [{id: b, kind: fail, with: {message: m}, when: \"steps.a.status == 'x'\"}]\n",
			[]want{{10, 66, "steps[0].with.branches[1].steps[0].when", `step "a" is not visible here: it runs inside parallel step "p"`}}},
		{"loop body read from outside", head + "steps:\n  - id: f\n    kind: foreach\n    with:\n      items: [1, 2]\n      steps: [{id: d, kind: fail, with: {message: \"${{ item }}\"}}]\n  - {id: e, kind: fail, with: {message: \"${{ steps.d.status }} ${{ index }}\"}}\n",
			[]want{
				{10, 46, "steps[1].with.message", `step "d" is not visible here: it runs inside foreach step "f"`},
				{10, 68, "steps[1].with.message", "index is defined only in a foreach body"}}},
		{"CEL syntax", head + "steps:\n  - id: a\n    kind: fail\n    when: inputs.n +\n    with: {message: \"m ${{ 1 + }}\"}\n",
			[]want{
				{7, 21, "steps[0].when", "expression does not compile: Syntax error: mismatched input '<EOF>'"},
				{8, 32, "steps[0].with.message", "expression does not compile: Syntax error: mismatched input '<EOF>'"}}},
		{"CEL type", head + "inputs:\n  - {name: n, type: int}\nsteps:\n  - id: a\n    kind: wait\n    when: inputs.n == 'x'\n    with: {duration: \"${{ inputs.n }}\"}\n  - {id: b, kind: fail, when: inputs.n + 1, with: {message: m}}\n",
			[]want{
				{9, 20, "steps[0].when", "expression does not type-check: found no matching overload for '_==_' applied to '(int, string)'"},
				{10, 22, "steps[0].with.duration", "must be a string expression, not int"},
				{11, 31, "steps[1].when", "must be a bool expression, not int"}}},
		{"unknown input and output", head + "steps:\n  - {id: a, kind: http, with: {url: 'http://x'}}\n  - {id: b, kind: fail, when: inputs.zz, with: {message: \"${{ steps.a.outputs.code }}\"}}\n",
			[]want{
				{6, 31, "steps[1].when", `no input named "zz"`},
				{6, 63, "steps[1].with.message", `step "a" (http) has no output "code"`}}},
		{"unterminated interpolation", head + "steps:\n  - {id: a, kind: fail, with: {message: \"${{ inputs.x \"}}\n",
			[]want{{5, 41, "steps[0].with.message", "unterminated ${{"}}},
		{"int argument partly interpolated", head + "inputs: [{name: n, type: int}]\nsteps:\n  - id: f\n    kind: foreach\n    with: {items: [1], concurrency: \"x${{ inputs.n }}\", steps: [{id: b, kind: fail, with: {message: m}}]}\n",
			[]want{{8, 37, "steps[0].with.concurrency", "must be int or exactly one ${{ expression }}"}}},
		{"input defaults of the wrong type", head + "inputs:\n  - {name: n, type: int, default: ten}\n  - {name: e, type: enum, values: [a, b], default: c}\n  - {name: s, type: secret, default: hunter2}\n  - {name: l, type: list, items: int, default: [1, x]}\n  - {name: b, type: bool, default: 1}\n  - {name: sel, type: selector, default: 'env in (prod'}\nsteps: [{id: a, kind: fail, with: {message: m}}]\n",
			[]want{
				{5, 35, "inputs[0].default", "default must be an integer"},
				{6, 52, "inputs[1].default", "default must be one of a, b"},
				{7, 38, "inputs[2].default", "a secret has no default"},
				{8, 48, "inputs[3].default", "default item 1 must be an integer"},
				{9, 36, "inputs[4].default", "default must be true or false"},
				{10, 42, "inputs[5].default", "default must be a label selector"}}},
		{"bad inputs", head + "inputs:\n  - {name: 1x, type: string}\n  - {name: e, type: enum}\n  - {name: f, type: float}\n  - {name: r, type: string, regex: '('}\n  - {name: e, type: int}\nsteps: [{id: a, kind: fail, with: {message: m}}]\n",
			[]want{
				{5, 12, "inputs[0].name", "must be an identifier"},
				{6, 5, "inputs[1].values", "an enum needs values"},
				{7, 21, "inputs[2].type", "must be one of string, int, bool, enum, secret, selector, list"},
				{8, 36, "inputs[3].regex", "invalid regular expression: missing closing )"},
				{9, 12, "inputs[4].name", `duplicate input "e" (first at line 6)`}}},
		{"arguments", head + "steps:\n  - {id: a, kind: wait, with: {duration: 1s, until: x}}\n  - {id: b, kind: script, with: {targets: {selector: 'env in (', port: 22}}}\n  - {id: c, kind: notify, with: {channel: pager, message: hi}}\n  - {id: d, kind: parallel, with: {branches: [{steps: [{id: e, kind: fail, with: {message: m}}]}]}}\n",
			[]want{
				{5, 46, "steps[0].with.until", "give only one of duration, until"},
				{6, 33, "steps[1].with.script", "required"},
				{6, 54, "steps[1].with.targets.selector", "invalid label selector"},
				{6, 66, "steps[1].with.targets.port", `unknown field "port"`},
				{7, 43, "steps[2].with.channel", "must be one of web, email, slack, dingtalk, wecom, feishu"},
				{8, 46, "steps[3].with.branches", "needs at least 2 items"}}},
		{"step fields", head + "steps:\n  - id: a-b\n    kind: fail\n    with: {message: m}\n    needs: [x]\n    timeout: soon\n    retry: {attempts: 0}\n    on_failure: retry\n",
			[]want{
				{5, 9, "steps[0].id", "must be an identifier"},
				{8, 5, "steps[0].needs", `unknown field "needs"`},
				{9, 14, "steps[0].timeout", "must be a positive duration"},
				{10, 23, "steps[0].retry.attempts", "must be from 1 to 100"},
				{11, 17, "steps[0].on_failure", "must be fail, continue or a list of compensation steps"}}},
		{"aliases", head + "steps:\n  - &s {id: a, kind: fail, with: {message: m}}\n  - *s\n",
			[]want{{6, 5, "steps[1]", "YAML aliases are not supported"}}},
		{"duplicate keys", head + "steps:\n  - {id: a, kind: fail, id: b, with: {message: m}}\n",
			[]want{{5, 25, "steps[0].id", `duplicate key "id" (first at line 5)`}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rb, err := runbook.Parse([]byte(c.src))
			if rb != nil || err == nil {
				t.Fatal("Parse accepted it")
			}
			var errs runbook.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error %T, not runbook.Errors: %v", err, err)
			}
			if len(errs) != len(c.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(c.want), err)
			}
			for i, w := range c.want {
				e := errs[i]
				if e.Line != w.line || e.Column != w.col || e.Path != w.path || !strings.Contains(e.Reason, w.reason) {
					t.Errorf("error %d:\n got %d:%d %s: %s (at %s)\nwant %d:%d %s: …%s…", i, e.Line, e.Column, e.Path, e.Reason, mark(c.src, e.Line, e.Column), w.line, w.col, w.path, w.reason)
				}
			}
		})
	}
}

// mark shows a position in the source: the line with ⟦ before the column.
func mark(src string, line, col int) string {
	lines := strings.Split(src, "\n")
	if line < 1 || line > len(lines) {
		return "?"
	}
	l := []rune(lines[line-1])
	col = min(max(col-1, 0), len(l))
	return string(l[:col]) + "⟦" + string(l[col:])
}
