package app

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.temporal.io/sdk/client"
	"golang.org/x/crypto/bcrypt"
)

// TestBootstrapAdminPasswordNotInLog: the first admin's password and
// token go to a 0600 file in the data directory; the output (a log, when
// not a terminal) names only the file.
func TestBootstrapAdminPasswordNotInLog(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := Config{DatabaseURL: filepath.Join(dir, "opsflow.db"), DataDir: filepath.Join(dir, "data")}
	a, err := Open(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), &client.Options{HostPort: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := a.Bootstrap(ctx, "", &out); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(cfg.DataDir, AdminPasswordFile)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatalf("no password file: %v (output %q)", err, out.String())
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("password file mode %v, want 0600", st.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	var pw, tok string
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "password: "); ok {
			pw = v
		}
		if v, ok := strings.CutPrefix(line, "api token: "); ok {
			tok = v
		}
	}
	if pw == "" || tok == "" {
		t.Fatalf("password file lacks the password or token: %q", b)
	}
	if strings.Contains(out.String(), pw) || strings.Contains(out.String(), tok) {
		t.Fatalf("the password or token is in the output: %q", out.String())
	}
	if !strings.Contains(out.String(), path) {
		t.Fatalf("the output does not say where the password is: %q", out.String())
	}
	u, err := a.Store.UserByUsername(ctx, "admin")
	if err != nil || bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(pw)) != nil {
		t.Fatalf("the file's password is not the admin's: %v", err)
	}
	// A second start creates nothing and says nothing.
	out.Reset()
	if err := a.Bootstrap(ctx, "", &out); err != nil || out.Len() != 0 {
		t.Fatalf("second bootstrap: %v %q", err, out.String())
	}
}
