package main

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/opsflow/opsflow/internal/secret"
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

// TestSecretsReseal rotates the secret key as the operator would: stored
// secrets sealed with the old key are re-sealed with the new one, and
// afterwards open without the old key.
func TestSecretsReseal(t *testing.T) {
	ctx := context.Background()
	dsn := testenv.PostgresURL(t)
	st, err := schema.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.MigrateUp(ctx); err != nil {
		t.Fatal(err)
	}
	oldKey, newKey := secret.NewKey(), secret.NewKey()
	keyring := func(primary string, old ...string) *secret.Keyring {
		p, err := secret.ParseKey(primary)
		if err != nil {
			t.Fatal(err)
		}
		var olds [][]byte
		for _, o := range old {
			k, _ := secret.ParseKey(o)
			olds = append(olds, k)
		}
		k, err := secret.NewKeyring(p, olds...)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	oldRing := keyring(oldKey)
	cr := &schema.Credential{Name: "reseal-" + secret.NewKey()[:8], Kind: schema.CredPassword, Auth: schema.CredPassword, Username: "ops"}
	cr.Name = strings.NewReplacer("+", "x", "/", "y", "=", "z").Replace(cr.Name)
	cr.Secret = oldRing.Seal([]byte("hunter2"), cr.SealContext())
	if err := st.CreateCredential(ctx, cr); err != nil {
		t.Fatal(err)
	}

	t.Setenv("OPSFLOW_DATABASE_URL", dsn)
	t.Setenv("OPSFLOW_SECRET_KEY", newKey)
	t.Setenv("OPSFLOW_SECRET_OLD_KEYS", oldKey)
	if err := run([]string{"secrets", "reseal", "--dry-run"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.Credential(ctx, cr.ID); got.Secret != cr.Secret {
		t.Fatal("dry run wrote")
	}
	if err := run([]string{"secrets", "reseal"}); err != nil {
		t.Fatal(err)
	}
	got, err := st.Credential(ctx, cr.ID)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := keyring(newKey).Open(got.Secret, got.SealContext()); err != nil || string(pt) != "hunter2" {
		t.Fatalf("after reseal, the new key alone opens %q, %v", pt, err)
	}
	// A value no configured key opens fails the run and writes nothing.
	t.Setenv("OPSFLOW_SECRET_OLD_KEYS", "")
	stray := &schema.Credential{Name: cr.Name + "-stray", Kind: schema.CredPassword, Auth: schema.CredPassword, Username: "ops"}
	stray.Secret = keyring(secret.NewKey()).Seal([]byte("x"), stray.SealContext())
	if err := st.CreateCredential(ctx, stray); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"secrets", "reseal"}); err == nil || !strings.Contains(err.Error(), stray.Name) {
		t.Fatalf("reseal with an unopenable value: %v", err)
	}
	if err := st.DeleteCredential(ctx, stray.ID); err != nil {
		t.Fatal(err)
	}
}
