package schema

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"time"

	"github.com/uptrace/bun"
)

// Kinds of objects a Git source may manage, as its documents name them.
const (
	KindRunbook        = "Runbook"
	KindScript         = "Script"
	KindApprovalPolicy = "ApprovalPolicy"
	KindRiskRule       = "RiskRule"
	KindCMDBType       = "CMDBType"
)

// GitSource is a repository whose declarative objects opsflow keeps.
type GitSource struct {
	bun.BaseModel `bun:"table:git_sources"`

	ID              int64     `bun:"id,pk,autoincrement" json:"id"`
	Name            string    `bun:"name" json:"name"`
	URL             string    `bun:"url" json:"url"`
	Branch          string    `bun:"branch" json:"branch"`
	Path            string    `bun:"path" json:"path"`
	CredentialID    *int64    `bun:"credential_id" json:"credential_id,omitempty"`
	Prune           bool      `bun:"prune" json:"prune"`
	IntervalSeconds int       `bun:"interval_seconds" json:"interval_seconds"`
	WebhookSecret   string    `bun:"webhook_secret" json:"-"` // sealed
	CreatedBy       string    `bun:"created_by" json:"created_by"`
	CreatedAt       time.Time `bun:"created_at" json:"created_at"`
	UpdatedAt       time.Time `bun:"updated_at" json:"updated_at"`
}

// SealContext binds the sealed webhook secret to the source's name.
func (g *GitSource) SealContext() string { return "git-source:" + g.Name }

// Sync statuses.
const (
	SyncPlanning = "planning"
	SyncPlanned  = "planned"
	SyncApplied  = "applied"
	SyncFailed   = "failed"
)

// GitSync is one sync of a source.
type GitSync struct {
	bun.BaseModel `bun:"table:git_syncs"`

	ID         int64        `bun:"id,pk,autoincrement" json:"id"`
	Source     string       `bun:"source" json:"source"`
	RunID      string       `bun:"run_id" json:"run_id"`
	WorkflowID string       `bun:"workflow_id" json:"workflow_id"`
	Trigger    string       `bun:"trigger" json:"trigger"`
	DryRun     bool         `bun:"dry_run" json:"dry_run"`
	Status     string       `bun:"status" json:"status"`
	SHA        string       `bun:"sha" json:"sha"`
	Plan       []PlanChange `bun:"plan,type:text" json:"plan"`
	Error      string       `bun:"error" json:"error,omitempty"`
	StartedAt  time.Time    `bun:"started_at" json:"started_at"`
	FinishedAt *time.Time   `bun:"finished_at" json:"finished_at,omitempty"`
}

// Plan actions.
const (
	PlanCreate = "create"
	PlanUpdate = "update"
	PlanDelete = "delete"
	// PlanRelease stops managing an object the repository no longer has
	// but that cannot be deleted (scripts and CMDB types keep history).
	PlanRelease = "release"
)

// PlanChange is one change a sync makes. Document is the object's
// desired state as JSON (empty for delete and release).
type PlanChange struct {
	Action   string `json:"action"`
	Kind     string `json:"kind"`
	Name     string `json:"name"`
	File     string `json:"file,omitempty"`
	Document []byte `json:"document,omitempty"`
}

// ManagedObject says which source manages an object.
type ManagedObject struct {
	bun.BaseModel `bun:"table:managed_objects"`

	Kind      string    `bun:"kind,pk" json:"kind"`
	Name      string    `bun:"name,pk" json:"name"`
	Source    string    `bun:"source" json:"source"`
	SHA       string    `bun:"sha" json:"sha"`
	UpdatedAt time.Time `bun:"updated_at" json:"updated_at"`
}

// ManagedError refuses a write to an object a Git source manages.
type ManagedError struct {
	Kind, Name, Source string
}

func (e *ManagedError) Error() string {
	return fmt.Sprintf("%s %q is managed by git source %q: change it in the repository", e.Kind, e.Name, e.Source)
}

type gitSourceKey struct{}

// AsGitSource marks ctx as the sync of source: its writes may change the
// objects source manages.
func AsGitSource(ctx context.Context, source string) context.Context {
	return context.WithValue(ctx, gitSourceKey{}, source)
}

// checkManaged is every write path's guard: a managed object changes only
// through its own source's sync.
func (s *Store) checkManaged(ctx context.Context, db bun.IDB, kind, name string) error {
	var m ManagedObject
	err := db.NewSelect().Model(&m).Where("kind = ? AND name = ?", kind, name).Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("store: managed %s %q: %w", kind, name, err)
	}
	if src, _ := ctx.Value(gitSourceKey{}).(string); src == m.Source {
		return nil
	}
	return &ManagedError{Kind: kind, Name: name, Source: m.Source}
}

var gitSourceNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// ValidGitSourceName reports a name usable in paths and workflow IDs.
func ValidGitSourceName(s string) bool { return gitSourceNameRE.MatchString(s) }

// CreateGitSource inserts g; a taken name is a ConflictError.
func (s *Store) CreateGitSource(ctx context.Context, g *GitSource) error {
	now := time.Now().UTC()
	g.CreatedAt, g.UpdatedAt = now, now
	if _, err := s.DB.NewInsert().Model(g).Returning("id").Exec(ctx); err != nil {
		if isUniqueViolation(err) {
			return &ConflictError{Message: "git source name taken", Fields: map[string]string{"name": "already exists"}}
		}
		return fmt.Errorf("store: create git source %q: %w", g.Name, err)
	}
	return nil
}

// UpdateGitSource saves g's settings (not its secret).
func (s *Store) UpdateGitSource(ctx context.Context, g *GitSource) error {
	g.UpdatedAt = time.Now().UTC()
	res, err := s.DB.NewUpdate().Model(g).Column("url", "branch", "path", "credential_id", "prune", "interval_seconds", "updated_at").
		Where("name = ?", g.Name).Exec(ctx)
	if err != nil {
		return fmt.Errorf("store: update git source %q: %w", g.Name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("store: update git source %q: %w", g.Name, ErrNotFound)
	}
	return nil
}

// GitSource returns the source called name.
func (s *Store) GitSource(ctx context.Context, name string) (*GitSource, error) {
	g := new(GitSource)
	if err := s.DB.NewSelect().Model(g).Where("name = ?", name).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: git source %q: %w", name, notFound(err))
	}
	return g, nil
}

// GitSources lists sources by name.
func (s *Store) GitSources(ctx context.Context) ([]GitSource, error) {
	var gs []GitSource
	if err := s.DB.NewSelect().Model(&gs).Order("name").Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: git sources: %w", err)
	}
	return gs, nil
}

// DeleteGitSource removes a source; what it managed becomes writable.
func (s *Store) DeleteGitSource(ctx context.Context, name string) error {
	return s.DB.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		res, err := tx.NewDelete().Model((*GitSource)(nil)).Where("name = ?", name).Exec(ctx)
		if err != nil {
			return fmt.Errorf("store: delete git source %q: %w", name, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("store: delete git source %q: %w", name, ErrNotFound)
		}
		_, err = tx.NewDelete().Model((*ManagedObject)(nil)).Where("source = ?", name).Exec(ctx)
		return err
	})
}

// BeginGitSync records the sync that workflow run runID makes, once: a
// retried activity finds the row it made.
func (s *Store) BeginGitSync(ctx context.Context, g *GitSync) (*GitSync, error) {
	g.StartedAt, g.Status = time.Now().UTC(), SyncPlanning
	if g.Plan == nil {
		g.Plan = []PlanChange{}
	}
	if _, err := s.DB.NewInsert().Model(g).On("CONFLICT (run_id) DO NOTHING").Exec(ctx); err != nil {
		return nil, fmt.Errorf("store: begin git sync: %w", err)
	}
	out := new(GitSync)
	if err := s.DB.NewSelect().Model(out).Where("run_id = ?", g.RunID).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: begin git sync: %w", notFound(err))
	}
	return out, nil
}

// FinishGitSync records a sync's commit, plan, status and error.
func (s *Store) FinishGitSync(ctx context.Context, g *GitSync) error {
	if g.Status != SyncPlanning {
		now := time.Now().UTC()
		g.FinishedAt = &now
	}
	if g.Plan == nil {
		g.Plan = []PlanChange{}
	}
	if _, err := s.DB.NewUpdate().Model(g).Column("status", "sha", "plan", "error", "finished_at").WherePK().Exec(ctx); err != nil {
		return fmt.Errorf("store: finish git sync %d: %w", g.ID, err)
	}
	return nil
}

// GitSyncByID returns sync id.
func (s *Store) GitSyncByID(ctx context.Context, id int64) (*GitSync, error) {
	g := new(GitSync)
	if err := s.DB.NewSelect().Model(g).Where("id = ?", id).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: git sync %d: %w", id, notFound(err))
	}
	return g, nil
}

// GitSyncs lists a source's syncs, newest first.
func (s *Store) GitSyncs(ctx context.Context, source string, limit int) ([]GitSync, error) {
	if limit <= 0 || limit > 200 {
		limit = 50
	}
	var gs []GitSync
	if err := s.DB.NewSelect().Model(&gs).Where("source = ?", source).Order("id DESC").Limit(int64(limit)).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: git syncs of %q: %w", source, err)
	}
	return gs, nil
}

// ManagedObjects lists what source manages.
func (s *Store) ManagedObjects(ctx context.Context, source string) ([]ManagedObject, error) {
	var ms []ManagedObject
	if err := s.DB.NewSelect().Model(&ms).Where("source = ?", source).Order("kind", "name").Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: managed objects of %q: %w", source, err)
	}
	return ms, nil
}

// ManagedBy returns who manages kind/name, or "".
func (s *Store) ManagedBy(ctx context.Context, kind, name string) (string, error) {
	err := s.checkManaged(context.WithValue(ctx, gitSourceKey{}, ""), s.DB, kind, name)
	var me *ManagedError
	if errors.As(err, &me) {
		return me.Source, nil
	}
	return "", err
}

// SetManaged marks kind/name as managed by source at commit sha; an empty
// source releases it.
func (s *Store) SetManaged(ctx context.Context, kind, name, source, sha string) error {
	var err error
	if source == "" {
		_, err = s.DB.NewDelete().Model((*ManagedObject)(nil)).Where("kind = ? AND name = ?", kind, name).Exec(ctx)
	} else {
		m := &ManagedObject{Kind: kind, Name: name, Source: source, SHA: sha, UpdatedAt: time.Now().UTC()}
		_, err = s.DB.NewInsert().Model(m).On("CONFLICT (kind, name) DO UPDATE").
			Set("source = EXCLUDED.source, sha = EXCLUDED.sha, updated_at = EXCLUDED.updated_at").Exec(ctx)
	}
	if err != nil {
		return fmt.Errorf("store: set managed %s %q: %w", kind, name, err)
	}
	return nil
}

// ValidateScript checks a script as CreateScript does, without writing.
func ValidateScript(in ScriptInput) error {
	bad := map[string]string{}
	if !credNameRE.MatchString(in.Name) {
		bad["name"] = "must be 1-100 letters, digits, '.', '_' or '-'"
	}
	validateVersion(&in, bad)
	if len(bad) > 0 {
		return invalid("invalid script", bad)
	}
	return nil
}

// ValidateRiskRule checks a rule as CreateRiskRule does.
func ValidateRiskRule(r *RiskRule) error {
	bad := map[string]string{}
	if _, err := regexp.Compile(r.Pattern); err != nil || r.Pattern == "" {
		bad["pattern"] = "must be a valid regular expression"
	}
	if r.Action != "block" && r.Action != "approval" {
		bad["action"] = "must be block or approval"
	}
	if len(bad) > 0 {
		return invalid("invalid risk rule", bad)
	}
	return nil
}

// ValidateApprovalPolicy checks a policy as SaveApprovalPolicy does.
func ValidateApprovalPolicy(p *ApprovalPolicy) error {
	if ve := p.Spec.Check(); ve != nil {
		return ve
	}
	if !credNameRE.MatchString(p.Name) {
		return &ValidationError{Message: "invalid policy", Fields: map[string]string{"name": "must be 1-100 letters, digits, '.', '_' or '-'"}}
	}
	return nil
}

// ValidateCIType checks a type as CreateType does.
func ValidateCIType(t *CIType) error {
	bad := validateDefs(t.Attributes)
	if !ValidTypeName(t.Name) {
		bad["name"] = "must be 1-63 lowercase letters, digits or '_', starting with a letter"
	}
	if len(bad) > 0 {
		return invalid("invalid CI type", bad)
	}
	return nil
}

// ValidateRunbookInput checks a parsed runbook's fields as CreateRunbook
// does.
func ValidateRunbookInput(in RunbookInput) error { return validateRunbookInput(&in) }

// RiskRuleByPattern returns the rule with pattern.
func (s *Store) RiskRuleByPattern(ctx context.Context, pattern string) (*RiskRule, error) {
	r := new(RiskRule)
	if err := s.DB.NewSelect().Model(r).Where("pattern = ?", pattern).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: risk rule %q: %w", pattern, notFound(err))
	}
	return r, nil
}

// ScriptByName returns the script called name.
func (s *Store) ScriptByName(ctx context.Context, name string) (*Script, error) {
	sc := new(Script)
	if err := s.DB.NewSelect().Model(sc).Where("name = ?", name).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: script %q: %w", name, notFound(err))
	}
	return sc, nil
}

// GitCredentialAllowed reports whether c may be sent to the Git URL u: an
// ssh_key credential to ssh://, an http credential to https:// within its
// URL scope. A password credential is never sent to a Git host: its
// secret logs in to opsflow's own hosts.
func GitCredentialAllowed(u *url.URL, c *Credential) error {
	switch {
	case u.Scheme == "ssh" && c.Kind == "ssh_key":
		return nil
	case u.Scheme == "https" && c.Kind == "http":
		if !c.HTTPScopeAllows(u) {
			return fmt.Errorf("credential %s may not be sent to %s (outside its scope %q)", c.Name, u.Redacted(), c.Scope)
		}
		return nil
	case u.Scheme == "ssh":
		return fmt.Errorf("credential %s is a %s credential: ssh:// sources take an ssh_key credential", c.Name, c.Kind)
	case u.Scheme == "https":
		return fmt.Errorf("credential %s is a %s credential: https:// sources take an http credential", c.Name, c.Kind)
	default:
		return fmt.Errorf("%s:// sources take no credential", u.Scheme)
	}
}
