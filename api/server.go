// Package api serves opsflow's HTTP API under /api/v1 and its web UI.
package api

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/opsflow/opsflow/internal/runbook"
	"github.com/opsflow/opsflow/internal/secret"
	"github.com/opsflow/opsflow/schema"
	"github.com/opsflow/opsflow/workflows"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.temporal.io/sdk/client"
)

// Deps are what the API needs; build them once in main.
type Deps struct {
	Store     *schema.Store
	Temporal  client.Client
	Namespace string
	// TemporalUIURL is the Temporal Web UI's base URL for run links
	// (e.g. http://127.0.0.1:8233); empty leaves links out.
	TemporalUIURL string
	Logger        *slog.Logger
	// Registry receives the API's metrics and is served on /metrics; the
	// worker's SDK metrics register on it too when both share a process.
	Registry *prometheus.Registry
	Version  string
	// SecureCookies marks the session cookie Secure (set behind HTTPS).
	SecureCookies bool
	// Secrets seals credentials; nil refuses to store them.
	Secrets *secret.Keyring
	// Slack, when set, takes approval decisions from Slack's buttons at
	// /hooks/slack/interactions.
	Slack *SlackHook
	// BaseURL is opsflow's external URL, for links in chat messages.
	BaseURL string
	// DingTalkAppSecret, when set, takes decisions sent to an enterprise
	// robot ("approve 12 looks fine") at /hooks/dingtalk/robot.
	DingTalkAppSecret string
	// TrustedProxies are the addresses (CIDRs or IPs) whose
	// X-Forwarded-For, X-Real-IP and X-Request-Id are believed
	// (OPSFLOW_TRUSTED_PROXIES); nobody's by default.
	TrustedProxies []string
	// Runbooks holds the runbook step kinds documents are checked
	// against; nil means the built-in kinds.
	Runbooks *runbook.Registry
}

// API holds the handlers.
type API struct {
	store     *schema.Store
	temporal  client.Client
	namespace string
	uiURL     string
	log       *slog.Logger
	version   string
	secure    bool
	reg       *prometheus.Registry
	pages     *pages
	secrets   *secret.Keyring
	slack     *SlackHook
	baseURL   string
	dingtalk  string // the enterprise robot's app secret
	runbooks  *runbook.Registry

	trusted     []*net.IPNet    // proxies whose forwarding headers count
	known       map[string]bool // "METHOD /route" of every route
	bodyTimeout time.Duration   // how long a request body may take
	anon        *limiter        // audited anonymous requests per address
	loginIP     *limiter        // failed logins per address
	loginUser   *limiter        // failed logins per account
	streams     *streamLimits   // open event streams per user
	feeds       *feeds          // shared polls behind event streams
	// dingtalkSeen refuses a replayed robot callback signature.
	dingtalkSeen signatureGuard
}

// route is one endpoint and who may call it. Keeping every route in one
// table lets tests walk them all (roles × routes, OpenAPI coverage).
type route struct {
	Method string
	Path   string
	// Roles that may call it; admin always may. nil with Public false means
	// any authenticated user.
	Roles  []string
	Public bool
	// NoCSRF exempts a cookie-authenticated route from the CSRF token: only
	// for calls another trusted UI makes (the Temporal UI's codec calls).
	NoCSRF  bool
	handler echo.HandlerFunc
}

var (
	anyUser   []string
	operators = []string{schema.RoleOperator}
	admins    = []string{schema.RoleAdmin}
	// Change requests come from those who change things; votes are
	// checked by the ticket itself (its approvers, never its requester).
	requesters = []string{schema.RoleOperator, schema.RoleApprover}
	deciders   = []string{schema.RoleOperator, schema.RoleApprover}
)

func (a *API) routes() []route {
	rs := a.coreRoutes()
	// Each area of the web console keeps its routes beside its handlers.
	for _, area := range [][]route{a.accountRoutes(), a.adminRoutes(), a.jobPageRoutes(), a.listRoutes(), a.cmdbPageRoutes(), a.consoleRoutes(), a.runbookRoutes(), a.runbookRunRoutes(), a.runbookPageRoutes(), a.gitSourceRoutes()} {
		rs = append(rs, area...)
	}
	return rs
}

func (a *API) coreRoutes() []route {
	return []route{
		{Method: http.MethodGet, Path: "/healthz", Public: true, handler: a.healthz},
		{Method: http.MethodGet, Path: "/metrics", Public: true, handler: a.metrics},
		{Method: http.MethodGet, Path: "/api/openapi.json", Public: true, handler: a.openAPI},
		{Method: http.MethodGet, Path: "/api/docs", Public: true, handler: a.docs},

		{Method: http.MethodPost, Path: "/codec/:op", Roles: operators, NoCSRF: true, handler: a.codec},
		{Method: http.MethodOptions, Path: "/codec/:op", Public: true, handler: a.codec},

		{Method: http.MethodGet, Path: "/api/v1/me", Roles: anyUser, handler: a.me},
		{Method: http.MethodGet, Path: "/api/v1/users", Roles: admins, handler: a.listUsers},
		{Method: http.MethodPost, Path: "/api/v1/users", Roles: admins, handler: a.createUser},
		{Method: http.MethodGet, Path: "/api/v1/users/:id", Roles: admins, handler: a.getUser},
		{Method: http.MethodPatch, Path: "/api/v1/users/:id", Roles: admins, handler: a.updateUser},
		{Method: http.MethodGet, Path: "/api/v1/tokens", Roles: anyUser, handler: a.listTokens},
		{Method: http.MethodPost, Path: "/api/v1/tokens", Roles: anyUser, handler: a.createToken},
		{Method: http.MethodDelete, Path: "/api/v1/tokens/:id", Roles: anyUser, handler: a.revokeToken},
		{Method: http.MethodGet, Path: "/api/v1/audit", Roles: admins, handler: a.listAudit},
		{Method: http.MethodGet, Path: "/api/v1/credentials", Roles: operators, handler: a.listCredentials},
		{Method: http.MethodPost, Path: "/api/v1/credentials", Roles: operators, handler: a.createCredential},
		{Method: http.MethodGet, Path: "/api/v1/credentials/:id", Roles: operators, handler: a.getCredential},
		{Method: http.MethodDelete, Path: "/api/v1/credentials/:id", Roles: admins, handler: a.deleteCredential},
		{Method: http.MethodPatch, Path: "/api/v1/credentials/:id", Roles: admins, handler: a.scopeCredential},
		{Method: http.MethodGet, Path: "/api/v1/host-keys", Roles: operators, handler: a.listHostKeys},
		{Method: http.MethodDelete, Path: "/api/v1/host-keys/:address", Roles: admins, handler: a.forgetHostKey},
		{Method: http.MethodGet, Path: "/api/v1/scripts", Roles: anyUser, handler: a.listScripts},
		{Method: http.MethodPost, Path: "/api/v1/scripts", Roles: operators, handler: a.createScript},
		{Method: http.MethodGet, Path: "/api/v1/scripts/:id", Roles: anyUser, handler: a.getScript},
		{Method: http.MethodGet, Path: "/api/v1/scripts/:id/versions", Roles: anyUser, handler: a.listScriptVersions},
		{Method: http.MethodPost, Path: "/api/v1/scripts/:id/versions", Roles: operators, handler: a.createScriptVersion},
		{Method: http.MethodGet, Path: "/api/v1/scripts/:id/versions/:version", Roles: anyUser, handler: a.getScriptVersion},
		{Method: http.MethodGet, Path: "/api/v1/risk-rules", Roles: anyUser, handler: a.listRiskRules},
		{Method: http.MethodPost, Path: "/api/v1/risk-rules", Roles: admins, handler: a.createRiskRule},
		{Method: http.MethodDelete, Path: "/api/v1/risk-rules/:id", Roles: admins, handler: a.deleteRiskRule},
		{Method: http.MethodGet, Path: "/api/v1/jobs", Roles: anyUser, handler: a.listJobs},
		{Method: http.MethodPost, Path: "/api/v1/jobs", Roles: operators, handler: a.createJob},
		{Method: http.MethodGet, Path: "/api/v1/jobs/:id", Roles: anyUser, handler: a.getJob},
		{Method: http.MethodPatch, Path: "/api/v1/jobs/:id", Roles: operators, handler: a.patchJob},
		{Method: http.MethodGet, Path: "/api/v1/jobs/:id/hosts", Roles: anyUser, handler: a.jobHosts},
		{Method: http.MethodGet, Path: "/api/v1/jobs/:id/hosts/:idx", Roles: anyUser, handler: a.jobHost},
		{Method: http.MethodGet, Path: "/api/v1/jobs/:id/output", Roles: anyUser, handler: a.jobOutput},
		{Method: http.MethodPost, Path: "/api/v1/jobs/:id/pause", Roles: operators, handler: a.controlJob(workflows.UpdatePause)},
		{Method: http.MethodPost, Path: "/api/v1/jobs/:id/resume", Roles: operators, handler: a.controlJob(workflows.UpdateResume)},
		{Method: http.MethodPost, Path: "/api/v1/jobs/:id/abort", Roles: operators, handler: a.controlJob(workflows.UpdateAbort)},
		{Method: http.MethodPost, Path: "/api/v1/jobs/:id/retry-failed", Roles: operators, handler: a.retryFailed},
		{Method: http.MethodGet, Path: "/api/v1/schedules", Roles: anyUser, handler: a.listSchedules},
		{Method: http.MethodPost, Path: "/api/v1/schedules", Roles: operators, handler: a.createSchedule},
		{Method: http.MethodGet, Path: "/api/v1/schedules/:name", Roles: anyUser, handler: a.getSchedule},
		{Method: http.MethodDelete, Path: "/api/v1/schedules/:name", Roles: operators, handler: a.controlSchedule("delete")},
		{Method: http.MethodPost, Path: "/api/v1/schedules/:name/pause", Roles: operators, handler: a.controlSchedule("pause")},
		{Method: http.MethodPost, Path: "/api/v1/schedules/:name/resume", Roles: operators, handler: a.controlSchedule("resume")},
		{Method: http.MethodPost, Path: "/api/v1/schedules/:name/trigger", Roles: operators, handler: a.controlSchedule("trigger")},
		{Method: http.MethodGet, Path: "/api/v1/approvals", Roles: anyUser, handler: a.listApprovals},
		{Method: http.MethodPost, Path: "/api/v1/approvals", Roles: requesters, handler: a.createApproval},
		{Method: http.MethodGet, Path: "/api/v1/approvals/:id", Roles: anyUser, handler: a.getApproval},
		{Method: http.MethodPost, Path: "/api/v1/approvals/:id/decision", Roles: anyUser, handler: a.decideApproval},
		{Method: http.MethodPost, Path: "/api/v1/approvals/:id/withdraw", Roles: anyUser, handler: a.withdrawApproval},
		{Method: http.MethodGet, Path: "/api/v1/approval-policies", Roles: anyUser, handler: a.listApprovalPolicies},
		{Method: http.MethodPost, Path: "/api/v1/approval-policies", Roles: admins, handler: a.saveApprovalPolicy},
		{Method: http.MethodGet, Path: "/api/v1/approval-policies/:name", Roles: anyUser, handler: a.getApprovalPolicy},
		{Method: http.MethodPut, Path: "/api/v1/approval-policies/:name", Roles: admins, handler: a.saveApprovalPolicy},
		{Method: http.MethodDelete, Path: "/api/v1/approval-policies/:name", Roles: admins, handler: a.deleteApprovalPolicy},
		{Method: http.MethodPost, Path: "/api/v1/delegations", Roles: deciders, handler: a.createDelegation},
		{Method: http.MethodGet, Path: "/api/v1/groups", Roles: anyUser, handler: a.listGroups},
		{Method: http.MethodPut, Path: "/api/v1/groups/:name", Roles: admins, handler: a.putGroup},
		{Method: http.MethodGet, Path: "/api/v1/chat-identities", Roles: admins, handler: a.listChatIdentities},
		{Method: http.MethodPost, Path: "/api/v1/chat-identities", Roles: admins, handler: a.linkChatIdentity},
		{Method: http.MethodDelete, Path: "/api/v1/chat-identities/:provider/:external_id", Roles: admins, handler: a.unlinkChatIdentity},
		{Method: http.MethodPost, Path: "/hooks/slack/interactions", Public: true, NoCSRF: true, handler: a.slackInteractions},
		{Method: http.MethodPost, Path: "/hooks/dingtalk/robot", Public: true, NoCSRF: true, handler: a.dingtalkRobot},
		{Method: http.MethodGet, Path: "/api/v1/runs", Roles: anyUser, handler: a.listRuns},
		{Method: http.MethodGet, Path: "/api/v1/runs/:id", Roles: anyUser, handler: a.getRun},
		{Method: http.MethodPost, Path: "/api/v1/runs/:id/cancel", Roles: operators, handler: a.cancelRun},
		{Method: http.MethodPost, Path: "/api/v1/demo/runs", Roles: operators, handler: a.startDemo},

		{Method: http.MethodGet, Path: "/api/v1/cmdb/types", Roles: anyUser, handler: a.listTypes},
		{Method: http.MethodPost, Path: "/api/v1/cmdb/types", Roles: admins, handler: a.createType},
		{Method: http.MethodGet, Path: "/api/v1/cmdb/types/:name", Roles: anyUser, handler: a.getType},
		{Method: http.MethodPut, Path: "/api/v1/cmdb/types/:name", Roles: admins, handler: a.updateType},
		{Method: http.MethodGet, Path: "/api/v1/cmdb/cis", Roles: anyUser, handler: a.listCIs},
		{Method: http.MethodPost, Path: "/api/v1/cmdb/cis", Roles: operators, handler: a.createCI},
		{Method: http.MethodGet, Path: "/api/v1/cmdb/cis/:id", Roles: anyUser, handler: a.getCI},
		{Method: http.MethodPatch, Path: "/api/v1/cmdb/cis/:id", Roles: operators, handler: a.patchCI},
		{Method: http.MethodDelete, Path: "/api/v1/cmdb/cis/:id", Roles: operators, handler: a.deleteCI},
		{Method: http.MethodGet, Path: "/api/v1/cmdb/cis/:id/history", Roles: anyUser, handler: a.ciHistory},
		{Method: http.MethodGet, Path: "/api/v1/cmdb/cis/:id/graph", Roles: anyUser, handler: a.ciGraph},
		{Method: http.MethodGet, Path: "/api/v1/cmdb/cis/:id/impact", Roles: anyUser, handler: a.ciImpact},
		{Method: http.MethodGet, Path: "/api/v1/cmdb/relations", Roles: anyUser, handler: a.listRelations},
		{Method: http.MethodPost, Path: "/api/v1/cmdb/relations", Roles: operators, handler: a.createRelation},
		{Method: http.MethodDelete, Path: "/api/v1/cmdb/relations/:id", Roles: operators, handler: a.deleteRelation},
		{Method: http.MethodPost, Path: "/api/v1/cmdb/import", Roles: operators, handler: a.importCIs},
		{Method: http.MethodPost, Path: "/api/v1/cmdb/discoveries", Roles: operators, handler: a.startDiscovery},
		{Method: http.MethodGet, Path: "/api/v1/cmdb/discoveries/schedules", Roles: anyUser, handler: a.listDiscoverySchedules},
		{Method: http.MethodDelete, Path: "/api/v1/cmdb/discoveries/schedules/:id", Roles: operators, handler: a.deleteDiscoverySchedule},
		{Method: http.MethodGet, Path: "/api/v1/cmdb/export", Roles: anyUser, handler: a.exportCIs},
		{Method: http.MethodGet, Path: "/api/v1/cmdb/events", Roles: anyUser, handler: a.cmdbEvents},
		{Method: http.MethodGet, Path: "/api/v1/cmdb/relation-types", Roles: anyUser, handler: a.listRelationTypes},
		{Method: http.MethodPost, Path: "/api/v1/cmdb/relation-types", Roles: admins, handler: a.createRelationType},

		// Web UI.
		{Method: http.MethodGet, Path: "/login", Public: true, handler: a.loginPage},
		{Method: http.MethodPost, Path: "/login", Public: true, handler: a.loginSubmit},
		{Method: http.MethodPost, Path: "/logout", Roles: anyUser, handler: a.logout},
		{Method: http.MethodGet, Path: "/", Roles: anyUser, handler: a.home},
		{Method: http.MethodGet, Path: "/runs", Roles: anyUser, handler: a.runsPage},
		{Method: http.MethodGet, Path: "/runs/:id", Roles: anyUser, handler: a.runPage},
		{Method: http.MethodPost, Path: "/runs/:id/cancel", Roles: operators, handler: a.cancelRunForm},
		{Method: http.MethodPost, Path: "/demo", Roles: operators, handler: a.startDemoForm},
		{Method: http.MethodGet, Path: "/cmdb", Roles: anyUser, handler: a.cmdbPage},
		{Method: http.MethodGet, Path: "/cmdb/types", Roles: anyUser, handler: a.cmdbTypesPage},
		{Method: http.MethodGet, Path: "/cmdb/cis/:id", Roles: anyUser, handler: a.cmdbCIPage},
		{Method: http.MethodGet, Path: "/cmdb/import", Roles: operators, handler: a.cmdbImportPage},
		{Method: http.MethodPost, Path: "/cmdb/import", Roles: operators, handler: a.cmdbImportSubmit},
		{Method: http.MethodGet, Path: "/cmdb/discover", Roles: operators, handler: a.cmdbDiscoverPage},
		{Method: http.MethodPost, Path: "/cmdb/discover", Roles: operators, handler: a.cmdbDiscoverSubmit},
		{Method: http.MethodGet, Path: "/scripts", Roles: anyUser, handler: a.scriptsPage},
		{Method: http.MethodGet, Path: "/scripts/new", Roles: operators, handler: a.scriptNewPage},
		{Method: http.MethodPost, Path: "/scripts", Roles: operators, handler: a.scriptCreateForm},
		{Method: http.MethodGet, Path: "/scripts/:id", Roles: anyUser, handler: a.scriptPage},
		{Method: http.MethodGet, Path: "/scripts/:id/edit", Roles: operators, handler: a.scriptEditPage},
		{Method: http.MethodPost, Path: "/scripts/:id/versions", Roles: operators, handler: a.scriptVersionForm},
		{Method: http.MethodGet, Path: "/jobs", Roles: anyUser, handler: a.jobsPage},
		{Method: http.MethodGet, Path: "/jobs/new", Roles: operators, handler: a.jobNewPage},
		{Method: http.MethodPost, Path: "/jobs", Roles: operators, handler: a.jobCreateForm},
		{Method: http.MethodGet, Path: "/jobs/:id", Roles: anyUser, handler: a.jobPage},
		{Method: http.MethodGet, Path: "/jobs/:id/hosts/:idx", Roles: anyUser, handler: a.jobHostPage},
		{Method: http.MethodPost, Path: "/jobs/:id/concurrency", Roles: operators, handler: a.jobConcurrencyForm},
		{Method: http.MethodPost, Path: "/jobs/:id/retry-failed", Roles: operators, handler: a.jobRetryForm},
		{Method: http.MethodPost, Path: "/jobs/:id/:op", Roles: operators, handler: a.jobControlForm},
		{Method: http.MethodGet, Path: "/approvals", Roles: anyUser, handler: a.approvalsPage},
		{Method: http.MethodGet, Path: "/approvals/:id", Roles: anyUser, handler: a.approvalPage},
		{Method: http.MethodPost, Path: "/approvals/:id/decide", Roles: anyUser, handler: a.approvalDecideForm},
		{Method: http.MethodPost, Path: "/approvals/:id/withdraw", Roles: anyUser, handler: a.approvalWithdrawForm},
		{Method: http.MethodGet, Path: "/approvals/links/:token", Roles: anyUser, handler: a.approvalLinkPage},
		{Method: http.MethodPost, Path: "/approvals/links/:token", Roles: anyUser, handler: a.approvalLinkSubmit},
		{Method: http.MethodGet, Path: "/static/*", Public: true, handler: a.static},
	}
}

// NewAPI builds the HTTP server's handler, and returns the API too for what
// runs beside the HTTP server (Slack's Socket Mode).
func NewAPI(d Deps) (*API, *echo.Echo, error) {
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.Registry == nil {
		d.Registry = prometheus.NewRegistry()
	}
	if d.Runbooks == nil {
		d.Runbooks = runbook.Builtin()
	}
	pg, err := loadPages()
	if err != nil {
		return nil, nil, err
	}
	trusted, err := parseTrustedProxies(d.TrustedProxies)
	if err != nil {
		return nil, nil, err
	}
	// Cookies are Secure when told so or when opsflow's URL is https.
	secure := d.SecureCookies || strings.HasPrefix(strings.ToLower(d.BaseURL), "https://")
	a := &API{store: d.Store, temporal: d.Temporal, namespace: d.Namespace, uiURL: d.TemporalUIURL,
		log: d.Logger, version: d.Version, secure: secure, reg: d.Registry, pages: pg, secrets: d.Secrets,
		slack: d.Slack, baseURL: d.BaseURL, dingtalk: d.DingTalkAppSecret, runbooks: d.Runbooks,
		trusted: trusted, known: map[string]bool{}, bodyTimeout: bodyTimeout,
		anon:    newLimiter(anonRate, anonBurst, limiterKeys),
		loginIP: newLimiter(loginIPRate, loginIPBurst, limiterKeys), loginUser: newLimiter(loginUserRate, loginUserBurst, limiterKeys),
		streams: newStreamLimits(maxStreamsPerUser), feeds: newFeeds(d.Logger)}

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = a.errorHandler
	e.IPExtractor = ipExtractor(trusted)
	reqs, err := newHTTPMetrics(d.Registry)
	if err != nil {
		return nil, nil, err
	}
	reqs.matched = a.routeMatched
	e.Use(a.requestID)
	e.Use(a.recoverPanic)
	e.Use(a.logRequests)
	e.Use(reqs.middleware)
	e.Use(a.bodyDeadline)
	// The audit log sees what authentication refuses (bad, revoked or
	// malformed tokens) as well as what the routes do.
	e.Use(a.audit)
	// The codec's refusals (no session, not an operator) carry CORS
	// headers too: the Temporal UI then sees the 401 and shows its "log in
	// to opsflow" message instead of a CORS error.
	e.Use(a.codecCORS)
	e.Use(a.authenticate)
	e.Use(checkPathParams)
	for _, r := range a.routes() {
		var mw []echo.MiddlewareFunc
		if !r.Public {
			mw = append(mw, a.require(!r.NoCSRF, r.Roles...))
		}
		e.Add(r.Method, r.Path, r.handler, mw...)
		a.known[r.Method+" "+r.Path] = true
	}
	return a, e, nil
}

func (a *API) recoverPanic(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					panic(r)
				}
				a.log.Error("handler panic", "path", c.Path(), "panic", r)
				err = newError(http.StatusInternalServerError, CodeInternal, "internal error")
			}
		}()
		return next(c)
	}
}

func (a *API) logRequests(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		status := c.Response().Status
		if err != nil {
			status = toError(err).Status
		}
		level := slog.LevelInfo
		if c.Path() == "/healthz" || c.Path() == "/metrics" || c.Path() == "/static/*" {
			level = slog.LevelDebug
		}
		a.log.Log(c.Request().Context(), level, "http request",
			"method", c.Request().Method, "path", loggedPath(c), "route", c.Path(), "status", status,
			"duration_ms", time.Since(start).Milliseconds(), "request_id", c.Response().Header().Get(echo.HeaderXRequestID),
			"remote", c.RealIP())
		return err
	}
}

type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	// matched tells a request on a route from a 404 or 405: labels come
	// only from known methods and routes, so clients cannot grow /metrics.
	matched func(echo.Context) bool
}

func newHTTPMetrics(reg prometheus.Registerer) (*httpMetrics, error) {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "opsflow_http_requests_total", Help: "HTTP requests by route, method and status.",
		}, []string{"method", "route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "opsflow_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: prometheus.DefBuckets,
		}, []string{"method", "route"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *httpMetrics) middleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		status := c.Response().Status
		if err != nil {
			status = toError(err).Status
		}
		route := c.Path()
		if route == "" || (m.matched != nil && !m.matched(c)) {
			route = "unmatched"
		}
		method := c.Request().Method
		if !knownMethods[method] {
			method = "other"
		}
		if status < 100 || status > 599 {
			status = 0
		}
		m.requests.WithLabelValues(method, route, strconv.Itoa(status)).Inc()
		m.duration.WithLabelValues(method, route).Observe(time.Since(start).Seconds())
		return err
	}
}

func (a *API) metrics(c echo.Context) error {
	promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{}).ServeHTTP(c.Response(), c.Request())
	return nil
}

// serverTimeouts bound what a client can hold: headers must arrive within
// ReadHeader, an idle keep-alive connection closes after Idle. Bodies get
// per-route deadlines (bodyDeadline), so imports may take longer; there is
// no write timeout because event streams stay open.
type serverTimeouts struct {
	ReadHeader, Idle time.Duration
}

var defaultTimeouts = serverTimeouts{ReadHeader: 10 * time.Second, Idle: 2 * time.Minute}

func newHTTPServer(h http.Handler, t serverTimeouts) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: t.ReadHeader, IdleTimeout: t.Idle}
}

// Serve runs the server on ln until ctx ends, then shuts down gracefully,
// letting in-flight requests finish for up to 15 s.
func Serve(ctx context.Context, e *echo.Echo, ln net.Listener, log *slog.Logger) error {
	srv := newHTTPServer(e, defaultTimeouts)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	log.Info("http server shutting down")
	return srv.Shutdown(sctx)
}
