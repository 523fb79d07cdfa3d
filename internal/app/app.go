package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/opsflow/opsflow/activities"
	"github.com/opsflow/opsflow/api"
	"github.com/opsflow/opsflow/internal/metrics"
	"github.com/opsflow/opsflow/internal/notify"
	"github.com/opsflow/opsflow/internal/secret"
	"github.com/opsflow/opsflow/schema"
	"github.com/opsflow/opsflow/workers"
	"github.com/opsflow/opsflow/workflows"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"
	enumspb "go.temporal.io/api/enums/v1"
	operatorpb "go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/contrib/envconfig"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
)

// Version is set at build time with -ldflags "-X …/internal/app.Version=…".
var Version = "dev"

// App is one opsflow process's long-lived dependencies.
type App struct {
	Cfg       Config
	Log       *slog.Logger
	Store     *schema.Store
	Temporal  client.Client
	Namespace string
	Registry  *prometheus.Registry
	// Secrets seals and opens credentials; nil when no key is configured
	// (enough for migrations, not for the API or workers).
	Secrets *secret.Keyring
}

// Open connects to the database and (lazily) to Temporal. temporalOpts nil
// means: from the environment, via the SDK's envconfig.
func Open(ctx context.Context, cfg Config, log *slog.Logger, temporalOpts *client.Options) (*App, error) {
	if cfg.DatabaseURL == "" {
		return nil, errors.New("OPSFLOW_DATABASE_URL is required (postgres://user@host:5432/db)")
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	st, err := schema.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	var opts client.Options
	if temporalOpts != nil {
		opts = *temporalOpts
	} else if opts, err = envconfig.LoadDefaultClientOptions(); err != nil {
		st.Close()
		return nil, fmt.Errorf("temporal client config: %w", err)
	}
	if opts.HostPort == "" {
		opts.HostPort = client.DefaultHostPort
	}
	if opts.Namespace == "" {
		opts.Namespace = client.DefaultNamespace
	}
	// Every payload is encrypted (below), and ciphertext does not
	// compress: gzip on the gRPC connection would only burn CPU on both
	// ends, per host of every job.
	if opts.ConnectionOptions.GrpcCompression == nil {
		opts.ConnectionOptions.GrpcCompression = &client.GrpcCompressionNone{}
	}
	opts.Logger = sdklog.NewStructuredLogger(log.With("component", "temporal-sdk"))
	opts.MetricsHandler = metrics.NewTemporalHandler(reg)
	keys, err := secret.FromEnv()
	if err != nil && !errors.Is(err, secret.ErrNoKey) {
		st.Close()
		return nil, err
	}
	if keys != nil {
		// Every payload is encrypted before it reaches Temporal.
		opts.DataConverter = keys.DataConverter()
	}
	c, err := client.NewLazyClient(opts)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("temporal client: %w", err)
	}
	return &App{Cfg: cfg, Log: log, Store: st, Temporal: c, Namespace: opts.Namespace, Registry: reg, Secrets: keys}, nil
}

// Close releases the connections.
func (a *App) Close() {
	a.Temporal.Close()
	a.Store.Close()
}

// Migrate applies pending database migrations.
func (a *App) Migrate(ctx context.Context) error {
	applied, err := a.Store.MigrateUp(ctx)
	for _, m := range applied {
		a.Log.Info("migration applied", "migration", m)
	}
	return err
}

// EnsureSearchAttributes registers opsflow's search attributes on the
// namespace when missing (the dev stack does it at namespace creation).
func (a *App) EnsureSearchAttributes(ctx context.Context) error {
	ops := a.Temporal.OperatorService()
	have, err := ops.ListSearchAttributes(ctx, &operatorpb.ListSearchAttributesRequest{Namespace: a.Namespace})
	if err != nil {
		return fmt.Errorf("list search attributes: %w", err)
	}
	missing := map[string]enumspb.IndexedValueType{}
	for name, typ := range workflows.SearchAttributeTypes {
		if _, ok := have.GetCustomAttributes()[name]; !ok {
			missing[name] = typ
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if _, err := ops.AddSearchAttributes(ctx, &operatorpb.AddSearchAttributesRequest{Namespace: a.Namespace, SearchAttributes: missing}); err != nil {
		return fmt.Errorf("add search attributes: %w", err)
	}
	return nil
}

// AdminPasswordFile is where Bootstrap writes the first admin's password
// (and API token), inside the data directory, mode 0600.
const AdminPasswordFile = "admin-password"

// Bootstrap creates the first admin when there are no users. Its password
// (and, without devToken, an API token) goes to a file in the data
// directory with mode 0600, never to the log: out gets only the file's
// path, and the password itself only when out is a terminal (a human at
// the dev stack). devToken (dev stack only) makes the admin's token a
// known value, created if missing.
func (a *App) Bootstrap(ctx context.Context, devToken string, out io.Writer) error {
	n, err := a.Store.CountUsers(ctx)
	if err != nil {
		return err
	}
	var admin *schema.User
	if n == 0 {
		pw := api.NewPassword()
		hash, err := api.HashPassword(pw)
		if err != nil {
			return err
		}
		secrets := "username: admin\npassword: " + pw + "\n"
		var tok, th string
		if devToken == "" {
			tok, th = api.NewToken()
			secrets += "api token: " + tok + "\n"
		}
		// The file first: an admin nobody can learn the password of is
		// worse than no admin.
		path, err := writeSecretFile(a.Cfg.DataDir, AdminPasswordFile, secrets)
		if err != nil {
			// A read-only data directory (a container without a volume):
			// the temporary directory, still private to this user.
			var terr error
			if path, terr = writeSecretFile(os.TempDir(), "opsflow-"+AdminPasswordFile, secrets); terr != nil {
				return fmt.Errorf("first admin: %w (and %w)", err, terr)
			}
		}
		admin = &schema.User{Username: "admin", DisplayName: "Administrator", Role: schema.RoleAdmin, PasswordHash: hash}
		switch err := a.Store.CreateUser(ctx, admin); {
		case errors.Is(err, schema.ErrConflict): // another replica created it first
			_ = os.Remove(path)
			admin, tok = nil, ""
		case err != nil:
			_ = os.Remove(path)
			return err
		}
		if tok != "" { // admin nil: the other replica's file holds its secrets
			if err := a.Store.CreateToken(ctx, &schema.APIToken{UserID: admin.ID, Name: "bootstrap", Prefix: tok[:10], TokenHash: th}); err != nil {
				return err
			}
		}
		if admin != nil {
			fmt.Fprintf(out, "opsflow: created user admin; its password is in %s (mode 0600): read it, change the password, delete the file\n", path)
			if isTerminal(out) {
				fmt.Fprintf(out, "opsflow: admin password %s (shown once)\n", pw)
			}
		}
	}
	if devToken == "" {
		return nil
	}
	if admin == nil {
		if admin, err = a.Store.UserByUsername(ctx, "admin"); err != nil {
			return fmt.Errorf("dev admin token: %w", err)
		}
	}
	if _, _, err := a.Store.TokenByHash(ctx, api.HashToken(devToken)); errors.Is(err, schema.ErrNotFound) {
		prefix := devToken
		if len(prefix) > 10 {
			prefix = prefix[:10]
		}
		return a.Store.CreateToken(ctx, &schema.APIToken{UserID: admin.ID, Name: "dev (OPSFLOW_DEV_ADMIN_TOKEN)", Prefix: prefix, TokenHash: api.HashToken(devToken)})
	} else if err != nil {
		return err
	}
	return nil
}

// writeSecretFile writes content to dir/name with mode 0600, replacing
// what was there (not following a symlink), and returns its path.
func writeSecretFile(dir, name, content string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	path, err := filepath.Abs(filepath.Join(dir, name))
	if err != nil {
		return "", err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return "", err
	}
	return path, f.Close()
}

// isTerminal reports whether w is a character device (a terminal), not a
// file, pipe or log collector.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// RunAPI serves the API and UI on ln until ctx ends.
func (a *App) RunAPI(ctx context.Context, ln net.Listener) error {
	d := api.Deps{Store: a.Store, Temporal: a.Temporal, Namespace: a.Namespace, TemporalUIURL: a.Cfg.TemporalUIURL,
		Logger: a.Log, Registry: a.Registry, Version: Version, SecureCookies: a.Cfg.SecureCookies, Secrets: a.Secrets,
		BaseURL: a.Cfg.BaseURL, DingTalkAppSecret: a.Cfg.Chat.DingTalkAppSecret, TrustedProxies: a.Cfg.TrustedProxies}
	ch := a.Cfg.Chat
	if ch.SlackSigningSecret != "" || ch.SlackAppToken != "" {
		d.Slack = &api.SlackHook{Client: a.slackClient(), SigningSecret: ch.SlackSigningSecret}
	}
	srv, e, err := api.NewAPI(d)
	if err != nil {
		return err
	}
	if ch.SlackAppToken != "" {
		go func() {
			sm := socketmode.New(a.slackClient())
			if err := srv.RunSlackSocketMode(ctx, sm); err != nil && ctx.Err() == nil {
				a.Log.Error("slack socket mode stopped", "error", err)
			}
		}()
	}
	go a.housekeeping(ctx)
	return api.Serve(ctx, e, ln, a.Log)
}

func (a *App) slackClient() *slack.Client {
	var opts []slack.Option
	if u := a.Cfg.Chat.SlackAPIURL; u != "" {
		opts = append(opts, slack.OptionAPIURL(strings.TrimRight(u, "/")+"/"))
	}
	if t := a.Cfg.Chat.SlackAppToken; t != "" {
		opts = append(opts, slack.OptionAppLevelToken(t))
	}
	return slack.New(a.Cfg.Chat.SlackBotToken, opts...)
}

// notifiers are the approval channels configured for this worker.
func (a *App) notifiers() []activities.Notifier {
	var ns []activities.Notifier
	ch := a.Cfg.Chat
	if ch.SlackBotToken != "" && ch.SlackChannel != "" {
		ns = append(ns, &notify.Slack{Client: a.slackClient(), ChannelID: ch.SlackChannel, Store: a.Store, BaseURL: a.Cfg.BaseURL})
	}
	if ch.DingTalkWebhook != "" {
		ns = append(ns, &notify.DingTalk{Webhook: ch.DingTalkWebhook, Secret: ch.DingTalkSecret, Store: a.Store, BaseURL: a.Cfg.BaseURL})
	}
	if ch.WeComWebhook != "" {
		ns = append(ns, &notify.WeCom{Webhook: ch.WeComWebhook, BaseURL: a.Cfg.BaseURL})
	}
	if ch.FeishuWebhook != "" {
		ns = append(ns, &notify.Feishu{Webhook: ch.FeishuWebhook, Secret: ch.FeishuSecret, BaseURL: a.Cfg.BaseURL})
	}
	if ch.SMTPAddr != "" {
		ns = append(ns, &notify.Email{Addr: ch.SMTPAddr, From: ch.SMTPFrom, Username: ch.SMTPUsername, Password: ch.SMTPPassword, Store: a.Store, BaseURL: a.Cfg.BaseURL})
	}
	return ns
}

// housekeeping expires sessions and prunes the CMDB change feed (kept
// OPSFLOW_CMDB_EVENTS_RETENTION, at least and by default 7 days) hourly.
func (a *App) housekeeping(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if _, err := a.Store.DeleteExpiredSessions(ctx, time.Now()); err != nil && ctx.Err() == nil {
			a.Log.Warn("expire sessions", "error", err)
		}
		if _, err := a.Store.PruneEvents(ctx, a.Cfg.EventRetention, time.Now()); err != nil && ctx.Err() == nil {
			a.Log.Warn("prune cmdb events", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// StartWorkers starts a worker per queue and returns a func that stops them.
func (a *App) StartWorkers(queues []string) (stop func(), err error) {
	var started []worker.Worker
	stop = func() {
		for _, w := range started {
			w.Stop()
		}
	}
	allow, err := activities.ParseNets(a.Cfg.HTTPStepAllowNets)
	if err != nil {
		return nil, fmt.Errorf("OPSFLOW_HTTP_STEP_ALLOW_NETS: %w", err)
	}
	var gitCA []byte
	if a.Cfg.GitCAFile != "" {
		if gitCA, err = os.ReadFile(a.Cfg.GitCAFile); err != nil {
			return nil, fmt.Errorf("OPSFLOW_GIT_CA_FILE: %w", err)
		}
	}
	for _, q := range queues {
		w, err := workers.New(a.Temporal, q, workers.Deps{Store: a.Store, Secrets: a.Secrets, Notifiers: a.notifiers(), LocalTransport: a.Cfg.LocalTransport,
			RunbookSource: a.Store.RunbookSource, HTTPStepAllowNets: allow, GitCABundle: gitCA})
		if err != nil {
			stop()
			return nil, err
		}
		if w == nil {
			a.Log.Info("task queue has nothing to serve yet; skipped", "queue", q)
			continue
		}
		if err := w.Start(); err != nil {
			stop()
			return nil, fmt.Errorf("start worker on %s: %w", q, err)
		}
		a.Log.Info("worker started", "queue", q, "namespace", a.Namespace)
		if q == workflows.TaskQueueSSH && a.Cfg.LocalTransport {
			a.Log.Warn("the local transport is on (OPSFLOW_LOCAL_TRANSPORT=1): admins' local jobs run here as this process's user")
		}
		started = append(started, w)
	}
	return stop, nil
}

// ServeMetrics serves /metrics on addr until ctx ends (for worker-only
// processes; the API serves its own).
func (a *App) ServeMetrics(ctx context.Context, addr string) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(a.Registry, promhttp.HandlerOpts{}))
	// Profiles, on the metrics listener only: it is meant for the
	// cluster's monitoring, not the public.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
