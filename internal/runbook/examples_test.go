package runbook_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/opsflow/opsflow/internal/runbook"
)

// exampleFiles are the runbooks shipped in deploy/runbooks.
func exampleFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("../../deploy/runbooks/*")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("want at least 3 runbooks in deploy/runbooks, found %d", len(files))
	}
	return files
}

func TestShippedRunbooksAreValid(t *testing.T) {
	for _, f := range exampleFiles(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			rb, err := runbook.Parse(src)
			if err != nil {
				t.Fatal(err)
			}
			if rb.Metadata.Name+".yaml" != filepath.Base(f) {
				t.Errorf("file %s holds runbook %q: name the file after it", filepath.Base(f), rb.Metadata.Name)
			}
		})
	}
}
