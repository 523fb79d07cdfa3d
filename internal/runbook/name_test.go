package runbook_test

import (
	"testing"

	"github.com/opsflow/opsflow/internal/runbook"
)

func TestMetadataName(t *testing.T) {
	cases := []struct {
		src       string
		name      string
		line, col int
		ok        bool
	}{
		{"apiVersion: opsflow/v1\nmetadata:\n  name: restart-web\nsteps: [oops", "", 0, 0, false},
		{"apiVersion: opsflow/v1\nmetadata:\n  name: restart-web\nsteps: []\n", "restart-web", 3, 9, true},
		{"metadata: {name: 'x y'}\nsteps: {id: [}", "", 0, 0, false},
		{"kind: Runbook\nsteps: 3\nmetadata: {description: d, name: \"a\"}\n", "a", 3, 34, true},
		{`{"metadata": {"name": "j"}}`, "j", 1, 23, true},
		{"metadata: {name: 12}\n", "", 0, 0, false},
		{"metadata: [name]\n", "", 0, 0, false},
		{"", "", 0, 0, false},
	}
	for _, c := range cases {
		name, at, ok := runbook.MetadataName([]byte(c.src))
		if name != c.name || ok != c.ok || (ok && (at.Line != c.line || at.Column != c.col)) {
			t.Errorf("%q: %q %d:%d %v, want %q %d:%d %v", c.src, name, at.Line, at.Column, ok, c.name, c.line, c.col, c.ok)
		}
	}
}
