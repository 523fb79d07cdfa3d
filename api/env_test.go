package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opsflow/opsflow/activities"
	"github.com/opsflow/opsflow/internal/metrics"
	"github.com/opsflow/opsflow/internal/secret"
	"github.com/opsflow/opsflow/internal/testenv"
	"github.com/opsflow/opsflow/schema"
	"github.com/opsflow/opsflow/workers"
	"github.com/opsflow/opsflow/workflows"
	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// env is a running API over a real Postgres database and a real Temporal
// server with a worker, one user (and token) per role.
type env struct {
	t        testing.TB
	temporal client.Client
	srv      *httptest.Server
	store    *schema.Store
	api      *API
	tokens   map[string]string // role -> bearer token; "" = anonymous
	users    map[string]*schema.User
	reg      *prometheus.Registry
	keys     *secret.Keyring
	keyText  string // the keyring's key, for worker processes
	dsn      string // the database, for worker processes
}

var testLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// httpClient keeps connections alive across concurrent requests (the
// default transport keeps only 2 idle per host) and does not follow
// redirects, so tests see them.
var httpClient = &http.Client{
	Transport:     &http.Transport{MaxIdleConnsPerHost: 64},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func newEnv(t testing.TB) *env { return newEnvWith(t, envOptions{}) }

// envOptions vary the env: no workers at all, or SQLite instead of the
// package's Postgres database.
type envOptions struct {
	noWorkers bool
	sqlite    bool
	slack     *SlackHook
	dingtalk  string
	notifiers []activities.Notifier
	// noLocal leaves the local transport off on the workers (it is on,
	// as OPSFLOW_LOCAL_TRANSPORT=1 sets it, for the tests that use it).
	noLocal bool
	// gitCA is the CA the workers trust for https:// Git sources.
	gitCA []byte
}

// newEnvWith builds the env; its workers serve every task queue.
func newEnvWith(t testing.TB, o envOptions) *env {
	t.Helper()
	ctx := context.Background()
	dsn := testenv.PostgresURL(t)
	if o.sqlite {
		dsn = filepath.Join(t.TempDir(), "opsflow.db")
	}
	st, err := schema.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.MigrateUp(ctx); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	keyText := secret.NewKey()
	key, _ := secret.ParseKey(keyText)
	keys, err := secret.NewKeyring(key)
	if err != nil {
		t.Fatal(err)
	}
	c := testenv.TemporalClient(t, client.Options{MetricsHandler: metrics.NewTemporalHandler(reg), DataConverter: keys.DataConverter()})
	for _, q := range workflows.TaskQueues {
		if o.noWorkers {
			break
		}
		w, err := workers.New(c, q, workers.Deps{Store: st, Secrets: keys, Notifiers: o.notifiers, LocalTransport: !o.noLocal,
			RunbookSource: st.RunbookSource, GitCABundle: o.gitCA, HTTPStepAllowNets: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}) // http steps call the tests' servers
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Stop)
	}
	apiObj, e, err := NewAPI(Deps{Store: st, Temporal: c, Namespace: testenv.TemporalNamespace, TemporalUIURL: "http://temporal-ui.test",
		Logger: testLog, Registry: reg, Version: "test", Secrets: keys, Slack: o.slack, BaseURL: "http://opsflow.test", DingTalkAppSecret: o.dingtalk})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	ev := &env{api: apiObj, t: t, temporal: c, keys: keys, keyText: keyText, dsn: dsn, srv: srv, store: st, tokens: map[string]string{"": ""}, users: map[string]*schema.User{}, reg: reg}
	for _, role := range schema.Roles {
		u := ev.createUser(role, "correct-horse-battery")
		ev.users[role] = u
		ev.tokens[role] = ev.createToken(u, nil)
	}
	return ev
}

// uniq makes names unique across tests sharing the package's database.
func uniq(t testing.TB, s string) string {
	r := strings.NewReplacer("/", "-", "_", "-", " ", "-")
	return strings.ToLower(r.Replace(t.Name()))[:min(40, len(t.Name()))] + "-" + s + "-" + time.Now().Format("150405.000000")
}

// passwordHashes holds each test password's hash, made once per package
// by HashPassword itself (bcrypt at the product's cost): every env creates
// a user per role, and hashing each anew was most of an env's setup time.
var passwordHashes sync.Map // password -> hash

func (e *env) createUser(role, password string) *schema.User {
	e.t.Helper()
	hash, ok := passwordHashes.Load(password)
	if !ok {
		h, err := HashPassword(password)
		if err != nil {
			e.t.Fatal(err)
		}
		hash, _ = passwordHashes.LoadOrStore(password, h)
	}
	u := &schema.User{Username: uniq(e.t, role), Role: role, PasswordHash: hash.(string)}
	if err := e.store.CreateUser(context.Background(), u); err != nil {
		e.t.Fatal(err)
	}
	return u
}

func (e *env) createToken(u *schema.User, expires *time.Time) string {
	e.t.Helper()
	tok, hash := NewToken()
	if err := e.store.CreateToken(context.Background(), &schema.APIToken{UserID: u.ID, Name: "test", Prefix: tok[:10], TokenHash: hash, ExpiresAt: expires}); err != nil {
		e.t.Fatal(err)
	}
	return tok
}

type resp struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r resp) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

// apiError decodes the error envelope.
func (r resp) apiError(t testing.TB) Error {
	t.Helper()
	var env struct{ Error *Error }
	r.json(t, &env)
	if env.Error == nil || env.Error.Code == "" || env.Error.Message == "" {
		t.Fatalf("no error envelope in %d %s", r.Status, r.Body)
	}
	return *env.Error
}

// do sends a request as role ("" = anonymous). body may be a string or an
// io.Reader (sent as is) or a value (JSON-encoded).
func (e *env) do(method, path, role string, body any, hdr ...string) resp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case io.Reader:
		rd = b
	default:
		buf, _ := json.Marshal(b)
		rd = bytes.NewReader(buf)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok := e.tokens[role]; tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := httpClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{Status: res.StatusCode, Header: res.Header, Body: b}
}

// eventually polls f until it returns true or the deadline passes.
func eventually(t testing.TB, d time.Duration, what string, f func() bool) {
	t.Helper()
	pollEvery(t, d, 50*time.Millisecond, what, f)
}

// pollEvery is eventually with another interval between checks: a wait of
// minutes on a check that costs the system under test real work (a
// workflow query, a count over thousands of rows) polls less often, so
// the polling does not slow what it waits for.
func pollEvery(t testing.TB, d, every time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(every)
	}
}
