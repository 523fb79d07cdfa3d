package api

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/opsflow/opsflow/schema"
	"github.com/opsflow/opsflow/workflows"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
)

func (a *API) gitSourceRoutes() []route {
	return []route{
		{Method: http.MethodGet, Path: "/api/v1/git-sources", Roles: anyUser, handler: a.listGitSources},
		{Method: http.MethodPost, Path: "/api/v1/git-sources", Roles: admins, handler: a.createGitSource},
		{Method: http.MethodGet, Path: "/api/v1/git-sources/:name", Roles: anyUser, handler: a.getGitSource},
		{Method: http.MethodPut, Path: "/api/v1/git-sources/:name", Roles: admins, handler: a.updateGitSource},
		{Method: http.MethodDelete, Path: "/api/v1/git-sources/:name", Roles: admins, handler: a.deleteGitSource},
		{Method: http.MethodPost, Path: "/api/v1/git-sources/:name/sync", Roles: admins, handler: a.syncGitSource},
		{Method: http.MethodGet, Path: "/api/v1/git-sources/:name/syncs", Roles: anyUser, handler: a.listGitSyncs},
		{Method: http.MethodPost, Path: "/hooks/git/:source", Public: true, NoCSRF: true, handler: a.gitHook},
		{Method: http.MethodGet, Path: "/git-sources", Roles: anyUser, handler: a.gitSourcesPage},
		{Method: http.MethodPost, Path: "/git-sources", Roles: admins, handler: a.gitSourceCreateForm},
		{Method: http.MethodPost, Path: "/git-sources/:name/:op", Roles: admins, handler: a.gitSourceOpForm},
	}
}

// gitSourceRequest creates (POST) or replaces (PUT /{name}) a source.
type gitSourceRequest struct {
	Name   string `json:"name"`
	URL    string `json:"url"`
	Branch string `json:"branch"`
	Path   string `json:"path"`
	// Credential names an ssh_key (ssh://) or http (https://, URL in its
	// scope) credential; empty for a public repository.
	Credential      string `json:"credential"`
	Prune           bool   `json:"prune"`
	IntervalSeconds int    `json:"interval_seconds"`
}

type gitSourceView struct {
	*schema.GitSource
	Credential string          `json:"credential,omitempty"`
	WebhookURL string          `json:"webhook_url"`
	LastSync   *schema.GitSync `json:"last_sync,omitempty"`
	// WebhookSecret is shown once, when the source is created.
	WebhookSecret string `json:"webhook_secret,omitempty"`
}

const (
	minGitInterval = 60
	maxGitInterval = 7 * 24 * 3600
)

var gitBranchRE = regexp.MustCompile(`^[A-Za-z0-9._/-]{1,200}$`)

// checkGitSource validates req into g; what it names must exist.
func (a *API) checkGitSource(ctx context.Context, req gitSourceRequest, g *schema.GitSource) error {
	bad := fieldErrors{}
	if !schema.ValidGitSourceName(req.Name) {
		bad.add("name", "must be 1-63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit")
	}
	u, err := url.Parse(req.URL)
	switch {
	case err != nil || req.URL == "":
		bad.add("url", "must be an https://, ssh:// or file:// URL")
	case u.Scheme != "https" && u.Scheme != "ssh" && u.Scheme != "file":
		bad.add("url", "must be an https://, ssh:// or file:// URL")
	case u.Scheme != "file" && u.Host == "":
		bad.add("url", "needs a host")
	case u.Scheme == "file" && (u.Host != "" || !path.IsAbs(u.Path)):
		bad.add("url", "a file:// URL names an absolute path on the API's and workers' hosts (file:///srv/repo.git)")
	case u.Scheme == "https" && u.User != nil:
		bad.add("url", "must not carry credentials: name an http credential instead")
	case u.RawQuery != "" || u.Fragment != "":
		bad.add("url", "must not have a query or fragment")
	}
	if req.Branch == "" {
		req.Branch = "main"
	}
	if !gitBranchRE.MatchString(req.Branch) || strings.Contains(req.Branch, "..") || strings.HasPrefix(req.Branch, "-") {
		bad.add("branch", "must be a branch name")
	}
	p := strings.Trim(req.Path, "/")
	if p != "" && (path.Clean(p) != p || p == ".." || strings.HasPrefix(p, "../")) {
		bad.add("path", "must be a directory of the repository, relative, without '..'")
	}
	if req.IntervalSeconds != 0 && (req.IntervalSeconds < minGitInterval || req.IntervalSeconds > maxGitInterval) {
		bad.add("interval_seconds", "must be 0 (no schedule) or from 60 to 604800")
	}
	var credID *int64
	if req.Credential != "" && len(bad) == 0 {
		cr, err := a.store.CredentialByName(ctx, req.Credential)
		switch {
		case errors.Is(err, schema.ErrNotFound):
			bad.add("credential", "no such credential")
		case err != nil:
			return err
		default:
			if err := schema.GitCredentialAllowed(u, cr); err != nil {
				bad.add("credential", err.Error())
			}
			credID = &cr.ID
		}
	}
	if len(bad) > 0 {
		return &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: "invalid git source", Fields: bad}
	}
	g.Name, g.URL, g.Branch, g.Path, g.CredentialID = req.Name, req.URL, req.Branch, p, credID
	g.Prune, g.IntervalSeconds = req.Prune, req.IntervalSeconds
	return nil
}

func (a *API) gitSourceView(ctx context.Context, g *schema.GitSource) (gitSourceView, error) {
	v := gitSourceView{GitSource: g, WebhookURL: strings.TrimSuffix(a.baseURL, "/") + "/hooks/git/" + g.Name}
	if g.CredentialID != nil {
		if cr, err := a.store.Credential(ctx, *g.CredentialID); err == nil {
			v.Credential = cr.Name
		}
	}
	syncs, err := a.store.GitSyncs(ctx, g.Name, 1)
	if err != nil {
		return v, err
	}
	if len(syncs) > 0 {
		v.LastSync = &syncs[0]
	}
	return v, nil
}

func (a *API) listGitSources(c echo.Context) error {
	ctx := c.Request().Context()
	gs, err := a.store.GitSources(ctx)
	if err != nil {
		return err
	}
	items := make([]gitSourceView, 0, len(gs))
	for i := range gs {
		v, err := a.gitSourceView(ctx, &gs[i])
		if err != nil {
			return err
		}
		items = append(items, v)
	}
	return c.JSON(http.StatusOK, map[string]any{"items": items})
}

func (a *API) getGitSource(c echo.Context) error {
	ctx := c.Request().Context()
	g, err := a.store.GitSource(ctx, c.Param("name"))
	if err != nil {
		return err
	}
	v, err := a.gitSourceView(ctx, g)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

// createGitSource stores a source with a new webhook secret, shown in
// this answer only (stored sealed).
func (a *API) createGitSource(c echo.Context) error {
	var req gitSourceRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	v, err := a.addGitSource(c, req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, v)
}

// addGitSource checks and stores a source with a new webhook secret
// (returned this once) and its sync schedule: the API's and the page's.
func (a *API) addGitSource(c echo.Context, req gitSourceRequest) (gitSourceView, error) {
	ctx := c.Request().Context()
	setAudit(c, "git-source.create", "git-source:"+req.Name)
	if a.secrets == nil {
		return gitSourceView{}, newError(http.StatusServiceUnavailable, CodeUnavailable, "no secret key configured")
	}
	g := &schema.GitSource{CreatedBy: userOf(c).Username}
	if err := a.checkGitSource(ctx, req, g); err != nil {
		return gitSourceView{}, err
	}
	buf := make([]byte, 32)
	_, _ = rand.Read(buf)
	secret := hex.EncodeToString(buf)
	g.WebhookSecret = a.secrets.Seal([]byte(secret), g.SealContext())
	if err := a.store.CreateGitSource(ctx, g); err != nil {
		return gitSourceView{}, err
	}
	if err := a.scheduleGitSync(ctx, g); err != nil {
		_ = a.store.DeleteGitSource(context.WithoutCancel(ctx), g.Name)
		return gitSourceView{}, err
	}
	v, err := a.gitSourceView(ctx, g)
	if err != nil {
		return gitSourceView{}, err
	}
	v.WebhookSecret = secret
	return v, nil
}

func (a *API) updateGitSource(c echo.Context) error {
	ctx := c.Request().Context()
	var req gitSourceRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	name := c.Param("name")
	if req.Name != "" && req.Name != name {
		return &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: "a git source cannot be renamed",
			Fields: map[string]string{"name": "must be " + name + " or empty"}}
	}
	req.Name = name
	setAudit(c, "git-source.update", "git-source:"+name)
	g, err := a.store.GitSource(ctx, name)
	if err != nil {
		return err
	}
	if err := a.checkGitSource(ctx, req, g); err != nil {
		return err
	}
	if err := a.store.UpdateGitSource(ctx, g); err != nil {
		return err
	}
	if err := a.scheduleGitSync(ctx, g); err != nil {
		return err
	}
	v, err := a.gitSourceView(ctx, g)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

// deleteGitSource removes a source and its schedule; the objects it
// managed stay, writable again.
func (a *API) deleteGitSource(c echo.Context) error {
	if err := a.removeGitSource(c, c.Param("name")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// removeGitSource deletes a source and its schedule; what it managed
// becomes writable again.
func (a *API) removeGitSource(c echo.Context, name string) error {
	ctx := c.Request().Context()
	setAudit(c, "git-source.delete", "git-source:"+name)
	if err := a.store.DeleteGitSource(ctx, name); err != nil {
		return err
	}
	return a.scheduleGitSync(ctx, &schema.GitSource{Name: name})
}

// scheduleGitSync makes the source's Temporal schedule match its
// interval: none for 0.
func (a *API) scheduleGitSync(ctx context.Context, g *schema.GitSource) error {
	id := workflows.GitSyncScheduleID(g.Name)
	err := a.temporal.ScheduleClient().GetHandle(ctx, id).Delete(ctx)
	var nf *serviceerror.NotFound
	if err != nil && !errors.As(err, &nf) {
		return err
	}
	if g.IntervalSeconds == 0 {
		return nil
	}
	_, err = a.temporal.ScheduleClient().Create(ctx, client.ScheduleOptions{
		ID:      id,
		Spec:    client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: time.Duration(g.IntervalSeconds) * time.Second}}},
		Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
		Action: &client.ScheduleWorkflowAction{ID: workflows.GitSyncWorkflowID(g.Name), Workflow: workflows.GitSync,
			TaskQueue: workflows.TaskQueueOps, Args: []any{workflows.GitSyncInput{Source: g.Name, Trigger: "schedule"}}},
		Note: "git source " + g.Name,
	})
	return err
}

type gitSyncStarted struct {
	WorkflowID string `json:"workflow_id"`
	RunID      string `json:"run_id"`
	DryRun     bool   `json:"dry_run"`
}

// startGitSync starts the source's sync, or joins the one running: the
// workflow ID is the source's.
func (a *API) startGitSync(ctx context.Context, name, trigger string, dryRun bool) (gitSyncStarted, error) {
	id := workflows.GitSyncWorkflowID(name)
	if dryRun {
		id = workflows.GitPlanWorkflowID(name)
	}
	run, err := a.temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: id, TaskQueue: workflows.TaskQueueOps,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
	}, workflows.GitSync, workflows.GitSyncInput{Source: name, Trigger: trigger, DryRun: dryRun})
	if err != nil {
		return gitSyncStarted{}, err
	}
	return gitSyncStarted{WorkflowID: id, RunID: run.GetRunID(), DryRun: dryRun}, nil
}

// syncGitSource starts a sync; ?dry_run=true stops at the plan.
func (a *API) syncGitSource(c echo.Context) error {
	ctx := c.Request().Context()
	name := c.Param("name")
	setAudit(c, "git-source.sync", "git-source:"+name)
	dry := false
	if v := c.QueryParam("dry_run"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: "invalid dry_run", Fields: map[string]string{"dry_run": "must be true or false"}}
		}
		dry = b
	}
	if _, err := a.store.GitSource(ctx, name); err != nil {
		return err
	}
	s, err := a.startGitSync(ctx, name, "api:"+userOf(c).Username, dry)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, s)
}

func (a *API) listGitSyncs(c echo.Context) error {
	ctx := c.Request().Context()
	name := c.Param("name")
	if _, err := a.store.GitSource(ctx, name); err != nil {
		return err
	}
	bad := fieldErrors{}
	limit := intParam(c.QueryParam("limit"), "limit", 1, 200, bad)
	if len(bad) > 0 {
		return &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: "invalid query", Fields: bad}
	}
	syncs, err := a.store.GitSyncs(ctx, name, limit)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"items": syncs})
}

// maxHookBody bounds a webhook's body: GitHub's push payloads are at most
// 25 MB, but only the signature over them matters here.
const maxHookBody = 5 << 20

var errBadGitHook = newError(http.StatusUnauthorized, CodeUnauthorized, "not a valid webhook for this git source: bad signature or token")

// gitHook starts a sync from a Git host's push webhook. It proves itself
// with the source's secret: GitHub's X-Hub-Signature-256 (HMAC-SHA256 of
// the body) or the secret itself in X-Opsflow-Token (GitLab's
// X-Gitlab-Token too). An unknown source answers as a bad secret does.
func (a *API) gitHook(c echo.Context) error {
	ctx := c.Request().Context()
	name := c.Param("source")
	setAudit(c, "git-source.webhook", "git-source:"+name)
	c.Set(auditActorKey, "webhook")
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, maxHookBody))
	if err != nil {
		return newError(http.StatusRequestEntityTooLarge, CodeBadRequest, "body too large")
	}
	g, err := a.store.GitSource(ctx, name)
	if errors.Is(err, schema.ErrNotFound) || a.secrets == nil {
		return errBadGitHook
	}
	if err != nil {
		return err
	}
	secret, err := a.secrets.Open(g.WebhookSecret, g.SealContext())
	if err != nil {
		return err
	}
	h := c.Request().Header
	ok := false
	if sig := h.Get("X-Hub-Signature-256"); sig != "" {
		mac := hmac.New(sha256.New, secret)
		mac.Write(body)
		ok = hmac.Equal([]byte(sig), []byte("sha256="+hex.EncodeToString(mac.Sum(nil))))
	} else if tok := cmpOr(h.Get("X-Opsflow-Token"), h.Get("X-Gitlab-Token")); tok != "" {
		ok = subtle.ConstantTimeCompare([]byte(tok), secret) == 1
	}
	if !ok {
		c.Set(auditDetailKey, "refused: bad signature or token")
		return errBadGitHook
	}
	if h.Get("X-GitHub-Event") == "ping" {
		return c.JSON(http.StatusOK, map[string]string{"status": "pong"})
	}
	s, err := a.startGitSync(ctx, name, "webhook", false)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, s)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// gitSourcesPage lists the sources with their last sync and its plan.
func (a *API) gitSourcesPage(c echo.Context) error {
	return a.showGitSources(c, http.StatusOK, form{}, nil)
}

// showGitSources renders /git-sources: every source with its last plan,
// and for admins the new-source form (f on a refusal) and the sync
// controls; created is a source just made, its webhook secret shown once.
func (a *API) showGitSources(c echo.Context, status int, f form, created *gitSourceView) error {
	ctx := c.Request().Context()
	gs, err := a.store.GitSources(ctx)
	if err != nil {
		return err
	}
	views := make([]gitSourceView, 0, len(gs))
	for i := range gs {
		v, err := a.gitSourceView(ctx, &gs[i])
		if err != nil {
			return err
		}
		views = append(views, v)
	}
	p := a.newPage(c, "Git sources", "git-sources")
	var creds []schema.Credential
	if p.User != nil && p.User.Role == schema.RoleAdmin {
		all, err := a.store.Credentials(ctx)
		if err != nil {
			return err
		}
		for _, cr := range all {
			if cr.Kind == schema.CredSSHKey || cr.Kind == schema.CredHTTP {
				creds = append(creds, cr)
			}
		}
	}
	return a.render(c, status, "git_sources", struct {
		*page
		Sources     []gitSourceView
		IsAdmin     bool
		Credentials []schema.Credential
		Form        form
		Created     *gitSourceView
	}{p, views, p.User != nil && p.User.Role == schema.RoleAdmin, creds, f, created})
}

func (a *API) gitSourceCreateForm(c echo.Context) error {
	interval, _ := strconv.Atoi(strings.TrimSpace(c.FormValue("interval_seconds")))
	req := gitSourceRequest{Name: strings.TrimSpace(c.FormValue("name")), URL: strings.TrimSpace(c.FormValue("url")),
		Branch: strings.TrimSpace(c.FormValue("branch")), Path: strings.TrimSpace(c.FormValue("path")),
		Credential: c.FormValue("credential"), Prune: c.FormValue("prune") == "on", IntervalSeconds: interval}
	v, err := a.addGitSource(c, req)
	if err != nil {
		f, status, ok := refusedForm(c, err, "create", "name", "url", "branch", "path", "credential", "prune", "interval_seconds")
		if !ok {
			return err
		}
		return a.showGitSources(c, status, f, nil)
	}
	return a.showGitSources(c, http.StatusCreated, form{}, &v)
}

// gitSourceOpForm syncs, plans (a dry run) or (confirmed) deletes a
// source from its page.
func (a *API) gitSourceOpForm(c echo.Context) error {
	name, op := c.Param("name"), c.Param("op")
	ctx := c.Request().Context()
	switch op {
	case "sync", "plan":
		setAudit(c, "git-source.sync", "git-source:"+name)
		if _, err := a.store.GitSource(ctx, name); err != nil {
			return err
		}
		if _, err := a.startGitSync(ctx, name, "api:"+userOf(c).Username, op == "plan"); err != nil {
			return err
		}
		what := map[string]string{"sync": "Sync of " + name + " started.", "plan": "Plan of " + name + " started: nothing is applied."}[op]
		return redirectFlash(c, "/git-sources", what+" Reload for its result.")
	case "delete":
		if ok, err := a.askFirst(c, "Delete Git source "+name+"? What it manages stays, and becomes writable here again.", "Delete Git source", "/git-sources"); !ok {
			return err
		}
		if err := a.removeGitSource(c, name); err != nil {
			return err
		}
		return redirectFlash(c, "/git-sources", "Git source "+name+" deleted.")
	}
	return newError(http.StatusNotFound, CodeNotFound, "no such action")
}
