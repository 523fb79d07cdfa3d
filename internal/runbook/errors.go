package runbook

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Error is one problem in a document: where (1-based line and column),
// which field (a path such as steps[2].when) and why.
type Error struct {
	Line   int    `json:"line"`
	Column int    `json:"column"`
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

func (e Error) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("%d:%d: %s", e.Line, e.Column, e.Reason)
	}
	return fmt.Sprintf("%d:%d: %s: %s", e.Line, e.Column, e.Path, e.Reason)
}

// Errors is every problem found in a document, sorted by position. Parse
// returns it as its error; take it back with errors.As.
type Errors []Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return "runbook: invalid document:\n" + strings.Join(lines, "\n")
}

// Fields maps each path to its first reason, the shape of the API's error
// "fields".
func (es Errors) Fields() map[string]string {
	f := map[string]string{}
	for _, e := range es {
		if _, ok := f[e.Path]; !ok {
			f[e.Path] = e.Reason
		}
	}
	return f
}

func (es Errors) sort() {
	slices.SortStableFunc(es, func(a, b Error) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column), strings.Compare(a.Path, b.Path))
	})
}
