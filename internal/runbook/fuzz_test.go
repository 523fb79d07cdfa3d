package runbook_test

import (
	"errors"
	"os"
	"testing"

	"github.com/opsflow/opsflow/internal/runbook"
)

// FuzzParse: no input panics, and every refusal is an Errors whose
// positions are 1-based.
func FuzzParse(f *testing.F) {
	for _, file := range []string{"rolling-restart.yaml", "disk-cleanup.yaml", "patch-in-batches.yaml"} {
		if src, err := os.ReadFile("../../deploy/runbooks/" + file); err == nil {
			f.Add(src)
		}
	}
	for _, s := range []string{
		"",
		"[1, 2",
		"a: &x [*x]",
		head + "steps: [{id: a, kind: fail, with: {message: \"${{ inputs.x }}\"}}]",
		head + "steps: [{id: a, kind: foreach, with: {items: [1], steps: [{id: b, kind: fail, when: 'item > index', with: {message: m}}]}}]",
		`{"apiVersion": "opsflow/v1", "kind": "Runbook", "metadata": {"name": "x"}, "steps": [{"id": "a", "kind": "wait", "with": {"duration": "${{ 1 + }}"}}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		rb, err := runbook.Parse(src)
		if err == nil {
			if rb == nil {
				t.Fatal("no runbook and no error")
			}
			return
		}
		var errs runbook.Errors
		if !errors.As(err, &errs) || len(errs) == 0 {
			t.Fatalf("error %T %v", err, err)
		}
		for _, e := range errs {
			if e.Line < 1 || e.Column < 1 || e.Reason == "" {
				t.Fatalf("bad error %+v", e)
			}
		}
	})
}
