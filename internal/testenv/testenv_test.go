package testenv

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/ssh"
)

func TestMain(m *testing.M) { Main(m) }

func TestEnsureCommandFindsSbin(t *testing.T) {
	t.Setenv("PATH", "/usr/bin:/bin")
	path, err := ensureCommand(t, "sshd", "openssh-server")
	if err != nil {
		t.Fatal(err)
	}
	if path != "/usr/sbin/sshd" {
		t.Errorf("sshd path = %q, want /usr/sbin/sshd", path)
	}
}

func TestPostgres(t *testing.T) {
	u := PostgresURL(t)
	if again := PostgresURL(t); again != u {
		t.Errorf("second PostgresURL = %q, want the shared %q", again, u)
	}
	parsed, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	if name := strings.TrimPrefix(parsed.Path, "/"); !strings.HasPrefix(name, "opsflow_testenv_") {
		t.Errorf("database name = %q, want prefix opsflow_testenv_", name)
	}
	checkPostgres(t, u)
}

// TestPostgresCluster exercises the fallback that machines without a running
// server use.
func TestPostgresCluster(t *testing.T) {
	server, stop, err := startCluster(t)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	checkPostgres(t, server)
}

func checkPostgres(t *testing.T, dsn string) {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := t.Context()
	if _, err := db.ExecContext(ctx, `CREATE TABLE widgets (id bigserial PRIMARY KEY, name text NOT NULL)`); err != nil {
		t.Fatalf("create table: %v", err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO widgets (name) VALUES ($1), ($2)`, "gear", "sprocket"); err != nil {
		t.Fatalf("insert: %v", err)
	}
	rows, err := db.QueryContext(ctx, `SELECT name FROM widgets ORDER BY id`)
	if err != nil {
		t.Fatalf("select: %v", err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(names, ","); got != "gear,sprocket" {
		t.Errorf("names = %q, want gear,sprocket", got)
	}
}

func TestSSHD(t *testing.T) {
	targets := SSHD(t, 3)
	if len(targets.Targets) != 3 {
		t.Fatalf("got %d targets, want 3", len(targets.Targets))
	}
	key, err := ssh.ParsePrivateKey(targets.PrivateKeyPEM)
	if err != nil {
		t.Fatalf("parse PrivateKeyPEM: %v", err)
	}
	if !bytes.Equal(key.PublicKey().Marshal(), targets.Signer.PublicKey().Marshal()) {
		t.Error("PrivateKeyPEM is not the key of Signer")
	}

	hosts := map[string]bool{}
	for _, target := range targets.Targets {
		host, _, _ := strings.Cut(target.Addr, ":")
		if hosts[host] {
			t.Errorf("address %s used twice", host)
		}
		hosts[host] = true

		out := runSSH(t, target.Addr, targets.ClientConfig(), "hostname; echo ok")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 2 || lines[1] != "ok" {
			t.Errorf("%s: output %q, want hostname then ok", target.Addr, out)
		}
	}

	wrong := *targets
	other, _, err := writeEd25519Key(filepath.Join(t.TempDir(), "other"))
	if err != nil {
		t.Fatal(err)
	}
	wrong.Targets = []SSHTarget{{Addr: targets.Targets[0].Addr, HostKey: other.PublicKey()}}
	client, err := ssh.Dial("tcp", targets.Targets[0].Addr, wrong.ClientConfig())
	if err == nil {
		client.Close()
		t.Fatal("dial with a wrong host key succeeded")
	}
	if !strings.Contains(err.Error(), "host key mismatch") {
		t.Errorf("dial with a wrong host key: %v, want a host key mismatch", err)
	}
}

func runSSH(t *testing.T, addr string, config *ssh.ClientConfig, command string) string {
	t.Helper()
	client, err := ssh.Dial("tcp", addr, config)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer client.Close()
	session, err := client.NewSession()
	if err != nil {
		t.Fatalf("%s: new session: %v", addr, err)
	}
	defer session.Close()
	out, err := session.CombinedOutput(command)
	if err != nil {
		t.Fatalf("%s: run %q: %v\n%s", addr, command, err, out)
	}
	return string(out)
}

const clickPage = `<!doctype html>
<title>click</title>
<button id="go" onclick="document.getElementById('status').textContent = 'clicked'">Go</button>
<p id="status">waiting</p>`

func TestBrowser(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, clickPage)
	}))
	defer srv.Close()

	// Two tabs at once share the package's browser.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var browsers []*chromedp.Browser
	for range 2 {
		ctx := Browser(t)
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL)); err != nil {
				t.Errorf("navigate: %v", err)
				return
			}
			before, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("status")))
			if err != nil || before != "waiting" {
				t.Errorf("status before click = %q, %v; want waiting", before, err)
			}
			if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("go"))); err != nil {
				t.Errorf("click: %v", err)
				return
			}
			after, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("status")))
			if err != nil || after != "clicked" {
				t.Errorf("status after click = %q, %v; want clicked", after, err)
			}
			mu.Lock()
			browsers = append(browsers, chromedp.FromContext(ctx).Browser)
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(browsers) == 2 && browsers[0] != browsers[1] {
		t.Error("tabs run in different browsers, want one shared browser")
	}
}
