package testenv

import (
	"cmp"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
)

const defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

var pgState struct {
	once sync.Once
	url  string
	err  error
}

// PostgresURL returns the URL of a database of its own for this test package,
// created on first use and dropped when the package's tests end.
//
// The database lives on the server at TEST_DATABASE_URL (default
// postgres://postgres@127.0.0.1:5432/test). When that server is unreachable,
// a throwaway cluster from Debian's postgresql package serves instead.
func PostgresURL(tb testing.TB) string {
	tb.Helper()
	needsReal(tb, "Postgres")
	pgState.once.Do(func() { pgState.url, pgState.err = startPostgres(tb) })
	if pgState.err != nil {
		Unavailable(tb, "postgres: %v", pgState.err)
	}
	return pgState.url
}

func startPostgres(tb testing.TB) (string, error) {
	server := cmp.Or(os.Getenv("TEST_DATABASE_URL"), defaultDatabaseURL)
	if pingErr := pingPostgres(server); pingErr != nil {
		tb.Logf("testenv: postgres at %s unreachable (%v); starting a throwaway cluster", redactURL(server), pingErr)
		cluster, stop, err := startCluster(tb)
		if err != nil {
			return "", fmt.Errorf("server %s unreachable (%v), and no fallback: %w", redactURL(server), pingErr, err)
		}
		atExit(stop)
		server = cluster
	}

	name := databaseName()
	if err := adminExec(server, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE template0"); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	atExit(func() {
		// FORCE terminates connections that a test leaked.
		if err := adminExec(server, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: postgres: drop database %s: %v\n", name, err)
		}
	})
	return withDatabase(server, name)
}

func pingPostgres(server string) error {
	db, err := sql.Open("pgx", server)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return db.PingContext(ctx)
}

func adminExec(server, query string) error {
	db, err := sql.Open("pgx", server)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = db.ExecContext(ctx, query)
	return err
}

// databaseName names the database after the test binary, which go test names
// after the package, plus the pid and random bits so that parallel runs and
// leftovers of killed runs never clash.
func databaseName() string {
	pkg := strings.TrimSuffix(filepath.Base(os.Args[0]), ".test")
	var b strings.Builder
	for _, r := range strings.ToLower(pkg) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	pkg = b.String()
	// Postgres truncates identifiers at 63 bytes.
	if len(pkg) > 30 {
		pkg = pkg[:30]
	}
	return fmt.Sprintf("opsflow_%s_%d_%s", pkg, os.Getpid(), randomSuffix(4))
}

func withDatabase(server, name string) (string, error) {
	u, err := url.Parse(server)
	if err != nil {
		return "", fmt.Errorf("parse database url: %w", err)
	}
	u.Path = "/" + name
	u.RawPath = ""
	return u.String(), nil
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable url)"
	}
	return u.Redacted()
}

// startCluster initdbs and starts a private PostgreSQL cluster on a free
// loopback port, as the postgres user when running as root (initdb refuses
// root). stop shuts it down and removes its files.
func startCluster(tb testing.TB) (serverURL string, stop func(), err error) {
	initdb, err := ensureCommand(tb, "initdb", "postgresql")
	if err != nil {
		return "", nil, err
	}
	pgCtl := filepath.Join(filepath.Dir(initdb), "pg_ctl")

	dir, err := os.MkdirTemp("", "opsflow-pg-")
	if err != nil {
		return "", nil, fmt.Errorf("postgres cluster: %w", err)
	}
	var asUser []string
	if os.Geteuid() == 0 {
		if err := chownToPostgres(dir); err != nil {
			os.RemoveAll(dir)
			return "", nil, fmt.Errorf("postgres cluster: %w", err)
		}
		asUser = []string{"runuser", "-u", "postgres", "--"}
	}
	run := func(args ...string) ([]byte, error) {
		args = append(asUser, args...)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		return exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	}

	data := filepath.Join(dir, "data")
	logFile := filepath.Join(dir, "log")
	if out, err := run(initdb, "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("postgres cluster: initdb: %w\n%s", err, out)
	}

	stop = func() {
		if out, err := run(pgCtl, "-D", data, "-m", "immediate", "stop"); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: postgres cluster: pg_ctl stop: %v\n%s", err, out)
		}
		os.RemoveAll(dir)
	}
	// The probed port can be taken before the server binds it; try again with
	// another one.
	var startErr error
	for range 3 {
		port, err := probeFreePort("127.0.0.1")
		if err != nil {
			startErr = err
			break
		}
		opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off", port, dir)
		out, err := run(pgCtl, "-D", data, "-l", logFile, "-w", "-t", "60", "-o", opts, "start")
		if err == nil {
			return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port), stop, nil
		}
		log, _ := os.ReadFile(logFile)
		startErr = fmt.Errorf("pg_ctl start on port %d: %w\n%s\n%s", port, err, out, log)
		if !strings.Contains(string(log), "Address already in use") {
			break
		}
	}
	stop()
	return "", nil, fmt.Errorf("postgres cluster: %w", startErr)
}

func chownToPostgres(dir string) error {
	u, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("look up user postgres: %w", err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return fmt.Errorf("uid of postgres %q: %w", u.Uid, err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return fmt.Errorf("gid of postgres %q: %w", u.Gid, err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		return err
	}
	return os.Chmod(dir, 0o700)
}

// probeFreePort returns a TCP port that was free on host a moment ago.
func probeFreePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("probe free port on %s: %w", host, err)
	}
	defer l.Close()
	addr, ok := l.Addr().(*net.TCPAddr)
	if !ok {
		return 0, errors.New("probe free port: not a TCP address")
	}
	return addr.Port, nil
}

func randomSuffix(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
