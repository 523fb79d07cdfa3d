package main

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/opsflow/opsflow/internal/testenv"
	"github.com/opsflow/opsflow/schema"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestBinaryDoesNotLinkTemporalServer keeps the production binary lean:
// the Temporal server belongs to the dev stack's own module.
func TestBinaryDoesNotLinkTemporalServer(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, "go.temporal.io/server") || strings.HasPrefix(pkg, "github.com/temporalio/ui-server") {
			t.Fatalf("opsflow links %s", pkg)
		}
	}
}

func TestUnknownCommandFails(t *testing.T) {
	if err := run([]string{"frobnicate"}); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Fatalf("err = %v", err)
	}
	if err := run(nil); err == nil {
		t.Fatal("no command accepted")
	}
	if err := run([]string{"migrate"}); err == nil {
		t.Fatal("migrate without a verb accepted")
	}
}

// TestMigrateCommands runs `opsflow migrate up|status|down|up` against real
// Postgres and Temporal, as an operator would on a new cluster.
func TestMigrateCommands(t *testing.T) {
	t.Setenv("OPSFLOW_DATABASE_URL", testenv.PostgresURL(t))
	t.Setenv("TEMPORAL_ADDRESS", testenv.Temporal(t))
	t.Setenv("TEMPORAL_NAMESPACE", testenv.TemporalNamespace)
	for _, verb := range []string{"up", "status", "down", "up"} {
		if err := run([]string{"migrate", verb}); err != nil {
			t.Fatalf("migrate %s: %v", verb, err)
		}
	}
	st, err := schema.Open(context.Background(), testenv.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if n, err := st.Pending(context.Background()); err != nil || n != 0 {
		t.Fatalf("pending after migrate up: %d %v", n, err)
	}
	if err := run([]string{"migrate", "sideways"}); err == nil {
		t.Fatal("unknown verb accepted")
	}
}
