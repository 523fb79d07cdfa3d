package api

import (
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/opsflow/opsflow/schema"
	"github.com/opsflow/opsflow/ui"
	"github.com/opsflow/opsflow/workflows"
)

// pages are the parsed UI templates, one per page, each with the layout.
type pages struct {
	byName map[string]*template.Template
	static http.Handler
}

func loadPages() (*pages, error) {
	funcs := template.FuncMap{"fmtTime": fmtTime}
	funcs["deref"] = func(f *float64) float64 { return *f }
	funcs["join"] = strings.Join
	funcs["deref_int"] = func(i *int) int { return *i }
	funcs["inc"] = func(i int) int { return i + 1 }
	funcs["state"] = stateBadge
	funcs["nonce"] = uuid.NewString // form_nonce: see idempotencyKey
	p := &pages{byName: map[string]*template.Template{}}
	for _, name := range []string{"login", "runs", "run", "error", "docs", "docs_plain", "cmdb", "cmdb_types", "cmdb_ci", "cmdb_import", "cmdb_discover", "cmdb_ci_form", "cmdb_type_edit",
		"scripts", "script", "script_edit", "jobs", "job_new", "job", "job_host", "schedules", "schedule_new", "approvals", "approval", "approval_link",
		"account", "users", "credentials", "groups", "policies", "risk_rules", "chat_identities", "confirm", "home", "audit",
		"runbooks", "runbook", "runbook_edit", "runbook_run", "git_sources"} {
		files := []string{"templates/layout.html", "templates/" + name + ".html"}
		for _, part := range partials[name] {
			files = append(files, "templates/"+part+".html")
		}
		t, err := template.New(name).Funcs(funcs).ParseFS(ui.Templates, files...)
		if err != nil {
			return nil, fmt.Errorf("ui: parse %s: %w", name, err)
		}
		p.byName[name] = t
	}
	sub, err := fs.Sub(ui.Static, "static")
	if err != nil {
		return nil, err
	}
	p.static = http.StripPrefix("/static/", http.FileServer(http.FS(sub)))
	return p, nil
}

// fmtTime writes a time for the page: UTC in the text (what the server
// knows), the instant in datetime for ui/static/time.js to show in the
// viewer's zone, with UTC kept on hover.
func fmtTime(v any) template.HTML {
	var t time.Time
	switch x := v.(type) {
	case time.Time:
		t = x
	case *time.Time:
		if x == nil {
			return ""
		}
		t = *x
	default:
		return ""
	}
	if t.IsZero() {
		return ""
	}
	utc := t.UTC()
	return template.HTML(`<time datetime="` + utc.Format(time.RFC3339) + `" title="` + utc.Format("2006-01-02 15:04:05") + ` UTC">` +
		utc.Format("2006-01-02 15:04:05Z") + `</time>`)
}

// partials are the templates a page uses besides its own and the layout.
var partials = map[string][]string{"job_new": {"job_params"}, "schedule_new": {"job_params"},
	"runbook": {"runbook_graph"}, "runbook_run": {"runbook_graph"}}

// page is the data every template sees.
type page struct {
	Title      string
	Nav        string // the navigation section the page is in
	User       *schema.User
	CSRF       string
	Flash      string
	TemporalUI string
	Error      string
	Next       string
	Waiting    int // pending tickets the user may decide: the Approvals badge
	Data       map[string]any
}

// IsAdmin and CanOperate tell templates which controls the user may use;
// the routes check the same roles.
func (p *page) IsAdmin() bool    { return p.User != nil && p.User.Role == schema.RoleAdmin }
func (p *page) CanOperate() bool { return p.User != nil && canOperate(p.User) }

// navSections are the navigation's sections by path prefix; a page is in
// the section whose prefix is the longest that matches its path.
var navSections = []struct{ prefix, nav string }{
	{"/jobs", "jobs"}, {"/scripts", "scripts"}, {"/schedules", "schedules"}, {"/approvals", "approvals"},
	{"/cmdb", "cmdb"}, {"/runs", "runs"}, {"/runbooks", "runbooks"}, {"/audit", "admin"}, {"/users", "admin"}, {"/credentials", "admin"},
	{"/host-keys", "admin"}, {"/groups", "admin"}, {"/policies", "admin"}, {"/risk-rules", "admin"}, {"/git-sources", "admin"},
	{"/chat-identities", "admin"}, {"/account", "account"}, {"/api/docs", "api"},
}

func navOf(path string) string {
	if path == "/" {
		return "home"
	}
	for _, s := range navSections {
		if path == s.prefix || strings.HasPrefix(path, s.prefix+"/") {
			return s.nav
		}
	}
	return ""
}

// newPage starts a page's data. Its navigation section comes from the
// request's path, so the active item is right on every page; nav is kept
// for pages whose path says nothing (errors).
func (a *API) newPage(c echo.Context, title, nav string) *page {
	if n := navOf(c.Request().URL.Path); n != "" {
		nav = n
	}
	p := &page{Title: title, Nav: nav, TemporalUI: a.uiURL, Flash: c.QueryParam("flash")}
	if pr := principalOf(c); pr != nil {
		p.User = pr.User
		if pr.Session != nil {
			p.CSRF = pr.Session.CSRFToken
		}
		// The badge is best effort: a page still renders without it.
		ctx := c.Request().Context()
		if ds, err := a.deciders(ctx, p.User.Username); err == nil {
			if n, err := a.store.WaitingCount(ctx, ds); err == nil {
				p.Waiting = n
			}
		}
	}
	return p
}

func (a *API) render(c echo.Context, status int, name string, data any) error {
	var b strings.Builder
	if err := a.pages.byName[name].ExecuteTemplate(&b, "layout", data); err != nil {
		return fmt.Errorf("ui: render %s: %w", name, err)
	}
	// A page may have set a policy of its own (the API reference's).
	if c.Response().Header().Get("Content-Security-Policy") == "" {
		c.Response().Header().Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
	}
	c.Response().Header().Set("X-Frame-Options", "DENY")
	return c.HTML(status, b.String())
}

func (a *API) renderErrorPage(c echo.Context, e *Error) {
	p := a.newPage(c, http.StatusText(e.Status), "")
	p.Error = e.Message
	_ = a.render(c, e.Status, "error", p)
}

func (a *API) static(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "public, max-age=3600")
	a.pages.static.ServeHTTP(c.Response(), c.Request())
	return nil
}

func (a *API) loginPage(c echo.Context) error {
	p := a.newPage(c, "Log in", "")
	p.User = nil
	p.Next = safeNext(c.QueryParam("next"))
	return a.render(c, http.StatusOK, "login", p)
}

// safeNext keeps post-login redirects on this site: only a path relative
// to this origin ("/jobs?x=1"), never "//host", "/\host", "https:…", or
// anything with control characters, spaces or backslashes (browsers drop
// tabs and newlines, so "/\t/evil.example" would become "//evil.example").
func safeNext(next string) string {
	const fallback = "/"
	if next == "" || len(next) > 2048 || next[0] != '/' || strings.HasPrefix(next, "//") {
		return fallback
	}
	for _, r := range next {
		if r < 0x20 || r == 0x7f || r == '\\' || unicode.IsSpace(r) || unicode.IsControl(r) || r == utf8.RuneError {
			return fallback
		}
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" || !strings.HasPrefix(u.Path, "/") || strings.HasPrefix(u.Path, "//") {
		return fallback
	}
	return next
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }

func (a *API) loginSubmit(c echo.Context) error {
	username := strings.TrimSpace(c.FormValue("username"))
	c.Set(auditActorKey, username)
	setAudit(c, "session.login", "user:"+username)
	u, secret, err := a.login(c.Request().Context(), c.RealIP(), username, c.FormValue("password"))
	if err != nil {
		var lt *loginThrottled
		if errors.As(err, &lt) {
			c.Response().Header().Set("Retry-After", strconv.Itoa(lt.RetryAfter))
			c.Set(auditDetailKey, "throttled: too many failed logins")
			p := a.newPage(c, "Log in", "")
			p.User = nil
			p.Error = fmt.Sprintf("Too many failed logins; try again in %d seconds.", lt.RetryAfter)
			p.Next = safeNext(c.FormValue("next"))
			return a.render(c, http.StatusTooManyRequests, "login", p)
		}
		if errors.Is(err, errBadLogin) {
			p := a.newPage(c, "Log in", "")
			p.User = nil
			p.Error = "Wrong username or password."
			p.Next = safeNext(c.FormValue("next"))
			return a.render(c, http.StatusUnauthorized, "login", p)
		}
		return err
	}
	c.SetCookie(&http.Cookie{Name: sessionCookie, Value: secret, Path: "/", HttpOnly: true, Secure: a.secure,
		SameSite: http.SameSiteLaxMode, MaxAge: int(sessionTTL.Seconds())})
	c.Set(principalKey, &principal{User: u})
	return c.Redirect(http.StatusSeeOther, safeNext(c.FormValue("next")))
}

func (a *API) logout(c echo.Context) error {
	if ck, err := c.Cookie(sessionCookie); err == nil {
		if err := a.store.DeleteSession(c.Request().Context(), hashSecret(ck.Value)); err != nil {
			return err
		}
	}
	setAudit(c, "session.logout", "user:"+userOf(c).Username)
	c.SetCookie(&http.Cookie{Name: sessionCookie, Value: "", Path: "/", HttpOnly: true, Secure: a.secure,
		SameSite: http.SameSiteLaxMode, MaxAge: -1})
	return c.Redirect(http.StatusSeeOther, "/login")
}

// home is the landing page: what is running, what waits for me, what
// failed in the last day.
func (a *API) home(c echo.Context) error {
	ctx := c.Request().Context()
	p := a.newPage(c, "Home", "home")
	ds, err := a.deciders(ctx, p.User.Username)
	if err != nil {
		return err
	}
	o, err := a.store.Overview(ctx, ds, time.Now().Add(-24*time.Hour), homeItems)
	if err != nil {
		return err
	}
	return a.render(c, http.StatusOK, "home", struct {
		*page
		*schema.Overview
	}{p, o})
}

// homeItems is how many jobs or tickets of each kind the home page lists.
const homeItems = 8

func canOperate(u *schema.User) bool {
	return u.Role == schema.RoleOperator || u.Role == schema.RoleAdmin
}

func (a *API) runPage(c echo.Context) error {
	v, err := a.runDetail(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	if v.Kind == workflows.KindRunbook {
		return a.runbookRunPage(c, v)
	}
	p := a.newPage(c, "Run "+v.WorkflowID, "runs")
	return a.render(c, http.StatusOK, "run", struct {
		*page
		Run       runView
		CanCancel bool
	}{p, v, canOperate(p.User)})
}

func (a *API) cancelRunForm(c echo.Context) error {
	// A runbook run's cancel runs compensation steps: it is asked first.
	if workflows.KindOf(c.Param("id")) == workflows.KindRunbook {
		back := "/runs/" + url.PathEscape(c.Param("id"))
		if ok, err := a.askFirst(c, "Cancel run "+c.Param("id")+"? The step running stops and its compensation steps run; no later step starts.", "Cancel run", back); !ok {
			return err
		}
	}
	r, err := a.requestCancel(c)
	if err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/runs/"+url.PathEscape(r.WorkflowID)+"?flash="+url.QueryEscape("Cancellation requested."))
}

func (a *API) startDemoForm(c echo.Context) error {
	req := startDemoRequest{StepInterval: c.FormValue("step_interval"), Target: c.FormValue("target")}
	if s := c.FormValue("steps"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: "steps must be an integer",
				Fields: map[string]string{"steps": "must be an integer"}}
		}
		req.Steps = n
	}
	in, err := req.validate()
	if err != nil {
		return err
	}
	v, _, err := a.startRun(c, workflows.KindDemo, in.Target, workflows.Demo, in)
	if err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/runs/"+url.PathEscape(v.WorkflowID))
}
