package activities

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"github.com/go-git/go-git/v5/storage/memory"
	"github.com/opsflow/opsflow/internal/runbook"
	"github.com/opsflow/opsflow/internal/secret"
	"github.com/opsflow/opsflow/schema"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"golang.org/x/crypto/ssh"
)

// Git reads Git sources and applies what they declare.
type Git struct {
	Store   *schema.Store
	Secrets *secret.Keyring
	// Runbooks are the step kinds runbook documents are checked against;
	// nil means the built-in kinds.
	Runbooks *runbook.Registry
	// CABundle adds certificate authorities for https:// sources (an
	// internal Git host's CA); nil trusts the system's.
	CABundle []byte
}

// Limits on what one sync reads.
const (
	maxGitFiles     = 2000
	maxGitFetchTry  = 3
	gitAuditActor   = "git:"
	gitAuditActionP = "gitops."
)

// PlanGitSyncInput plans the sync that workflow run RunID makes.
type PlanGitSyncInput struct {
	Source     string
	RunID      string
	WorkflowID string
	Trigger    string
	DryRun     bool
}

// PlanGitSyncResult names the stored plan.
type PlanGitSyncResult struct {
	SyncID  int64
	SHA     string
	Changes int
}

// PlanGitSync fetches the source's branch head, reads its documents and
// stores the plan: what to create, update and delete (or release). A bad
// file, or an object another source manages, fails the sync: the sync's
// row says which file, line and why, and nothing is applied.
func (a *Git) PlanGitSync(ctx context.Context, in PlanGitSyncInput) (PlanGitSyncResult, error) {
	src, err := a.Store.GitSource(ctx, in.Source)
	if errors.Is(err, schema.ErrNotFound) {
		return PlanGitSyncResult{}, invalid("git source %q does not exist", in.Source)
	}
	if err != nil {
		return PlanGitSyncResult{}, err
	}
	sync, err := a.Store.BeginGitSync(ctx, &schema.GitSync{Source: in.Source, RunID: in.RunID, WorkflowID: in.WorkflowID, Trigger: in.Trigger, DryRun: in.DryRun})
	if err != nil {
		return PlanGitSyncResult{}, err
	}
	if sync.Status == schema.SyncFailed {
		return PlanGitSyncResult{}, invalid("%s", sync.Error)
	}
	if sync.Status != schema.SyncPlanning {
		return PlanGitSyncResult{SyncID: sync.ID, SHA: sync.SHA, Changes: len(sync.Plan)}, nil
	}
	fail := func(err error) (PlanGitSyncResult, error) {
		sync.Status, sync.Error = schema.SyncFailed, err.Error()
		if ferr := a.Store.FinishGitSync(context.WithoutCancel(ctx), sync); ferr != nil {
			return PlanGitSyncResult{}, ferr
		}
		return PlanGitSyncResult{}, invalid("%s", err.Error())
	}
	files, sha, err := a.fetchGitTree(ctx, src)
	sync.SHA = sha
	if err != nil {
		if activity.GetInfo(ctx).Attempt < maxGitFetchTry && !isInvalid(err) {
			return PlanGitSyncResult{}, err
		}
		return fail(err)
	}
	reg := a.Runbooks
	if reg == nil {
		reg = runbook.Builtin()
	}
	docs, err := ParseGitDocuments(files, reg)
	if err != nil {
		return fail(fmt.Errorf("commit %s: %w", short(sha), err))
	}
	plan, err := a.plan(ctx, src, docs)
	if err != nil {
		return fail(fmt.Errorf("commit %s: %w", short(sha), err))
	}
	sync.Plan, sync.Status = plan, schema.SyncPlanned
	if err := a.Store.FinishGitSync(ctx, sync); err != nil {
		return PlanGitSyncResult{}, err
	}
	return PlanGitSyncResult{SyncID: sync.ID, SHA: sha, Changes: len(plan)}, nil
}

func isInvalid(err error) bool {
	var ae *temporal.ApplicationError
	return errors.As(err, &ae) && ae.NonRetryable()
}

func short(sha string) string { return sha[:min(len(sha), 12)] }

// fetchGitTree reads the YAML files under the source's path at its
// branch's head, and the head's SHA.
func (a *Git) fetchGitTree(ctx context.Context, src *schema.GitSource) (map[string][]byte, string, error) {
	auth, err := a.gitAuth(ctx, src)
	if err != nil {
		return nil, "", err
	}
	// In memory: a sync reads one commit's tree of small text files.
	repo, err := git.CloneContext(ctx, memory.NewStorage(), nil, &git.CloneOptions{
		URL: src.URL, Auth: auth, ReferenceName: plumbing.NewBranchReferenceName(src.Branch),
		SingleBranch: true, Depth: 1, Tags: git.NoTags, CABundle: a.CABundle,
	})
	if err != nil {
		if errors.Is(err, plumbing.ErrReferenceNotFound) || strings.Contains(err.Error(), "couldn't find remote ref") {
			return nil, "", invalid("git source %s: branch %q not found", src.Name, src.Branch)
		}
		if errors.Is(err, transport.ErrAuthenticationRequired) || errors.Is(err, transport.ErrAuthorizationFailed) {
			return nil, "", invalid("git source %s: %v", src.Name, err)
		}
		return nil, "", fmt.Errorf("git source %s: fetch %s: %w", src.Name, redactURL(src.URL), err)
	}
	head, err := repo.Head()
	if err != nil {
		return nil, "", fmt.Errorf("git source %s: head: %w", src.Name, err)
	}
	sha := head.Hash().String()
	commit, err := repo.CommitObject(head.Hash())
	if err != nil {
		return nil, sha, fmt.Errorf("git source %s: commit %s: %w", src.Name, sha, err)
	}
	tree, err := commit.Tree()
	if err != nil {
		return nil, sha, fmt.Errorf("git source %s: tree: %w", src.Name, err)
	}
	dir := strings.Trim(src.Path, "/")
	if dir != "" && dir != "." {
		if tree, err = tree.Tree(dir); err != nil {
			return nil, sha, invalid("git source %s: commit %s has no directory %q", src.Name, short(sha), dir)
		}
	}
	files := map[string][]byte{}
	err = tree.Files().ForEach(func(f *object.File) error {
		ext := strings.ToLower(path.Ext(f.Name))
		if ext != ".yaml" && ext != ".yml" {
			return nil
		}
		if len(files) >= maxGitFiles {
			return invalid("git source %s: more than %d YAML files under %q", src.Name, maxGitFiles, dir)
		}
		if f.Size > int64(MaxGitFileBytes) {
			files[f.Name] = make([]byte, MaxGitFileBytes+1) // reported as too large
			return nil
		}
		r, err := f.Reader()
		if err != nil {
			return err
		}
		defer r.Close()
		b, err := io.ReadAll(io.LimitReader(r, int64(MaxGitFileBytes)+1))
		files[joinPath(dir, f.Name)] = b
		return err
	})
	if err != nil {
		return nil, sha, err
	}
	return files, sha, nil
}

func joinPath(dir, name string) string {
	if dir == "" || dir == "." {
		return name
	}
	return dir + "/" + name
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

func (a *Git) gitAuth(ctx context.Context, src *schema.GitSource) (transport.AuthMethod, error) {
	if src.CredentialID == nil {
		return nil, nil
	}
	u, err := url.Parse(src.URL)
	if err != nil {
		return nil, invalid("git source %s: bad URL", src.Name)
	}
	c, err := a.Store.Credential(ctx, *src.CredentialID)
	if err != nil {
		return nil, invalid("git source %s: credential: %v", src.Name, err)
	}
	if err := schema.GitCredentialAllowed(u, c); err != nil {
		return nil, invalid("git source %s: %v", src.Name, err)
	}
	if a.Secrets == nil {
		return nil, invalid("git source %s: no keyring to open credential %s", src.Name, c.Name)
	}
	sec, err := a.Secrets.Open(c.Secret, c.SealContext())
	if err != nil {
		return nil, invalid("git source %s: credential %s does not open: %v", src.Name, c.Name, err)
	}
	switch c.Kind {
	case "http":
		if c.Username == "" {
			return &githttp.TokenAuth{Token: string(sec)}, nil
		}
		return &githttp.BasicAuth{Username: c.Username, Password: string(sec)}, nil
	default: // ssh_key, checked above
		user := u.User.Username()
		if user == "" {
			user = c.Username
		}
		if user == "" {
			user = "git"
		}
		var pass string
		if c.Passphrase != "" {
			p, err := a.Secrets.Open(c.Passphrase, c.SealContext())
			if err != nil {
				return nil, invalid("git source %s: credential %s passphrase does not open", src.Name, c.Name)
			}
			pass = string(p)
		}
		keys, err := gitssh.NewPublicKeys(user, sec, pass)
		if err != nil {
			return nil, invalid("git source %s: credential %s: %v", src.Name, c.Name, err)
		}
		// Trust on first use, recorded like the SSH hosts' keys (through
		// this credential); a changed key refuses the fetch.
		keys.HostKeyCallback = func(hostname string, remote net.Addr, key ssh.PublicKey) error {
			got := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
			rec, err := a.Store.RecordHostKey(ctx, hostname, c.ID, got)
			if err != nil {
				return err
			}
			if rec != got {
				return temporal.NewNonRetryableApplicationError("git source "+src.Name+": host key of "+hostname+" changed", ErrTypeHostKeyChanged, nil)
			}
			return nil
		}
		return keys, nil
	}
}

// plan compares the documents with the database.
func (a *Git) plan(ctx context.Context, src *schema.GitSource, docs []GitDocument) ([]schema.PlanChange, error) {
	managed, err := a.Store.ManagedObjects(ctx, src.Name)
	if err != nil {
		return nil, err
	}
	mine := map[string]bool{}
	for _, m := range managed {
		mine[m.Kind+"/"+m.Name] = true
	}
	plan := []schema.PlanChange{}
	wanted := map[string]bool{}
	for _, d := range docs {
		key := d.Kind + "/" + d.Name
		wanted[key] = true
		owner, err := a.Store.ManagedBy(ctx, d.Kind, d.Name)
		if err != nil {
			return nil, err
		}
		if owner != "" && owner != src.Name {
			return nil, DocumentErrors{{File: d.File, Line: 1, Reason: fmt.Sprintf("%s %q is managed by git source %q", d.Kind, d.Name, owner)}}
		}
		exists, same, err := a.current(ctx, d)
		if err != nil {
			return nil, err
		}
		switch {
		case !exists:
			plan = append(plan, schema.PlanChange{Action: schema.PlanCreate, Kind: d.Kind, Name: d.Name, File: d.File, Document: d.Body})
		case !same || !mine[key]:
			plan = append(plan, schema.PlanChange{Action: schema.PlanUpdate, Kind: d.Kind, Name: d.Name, File: d.File, Document: d.Body})
		}
	}
	for _, m := range managed {
		if wanted[m.Kind+"/"+m.Name] {
			continue
		}
		action := schema.PlanRelease
		if src.Prune && (m.Kind == schema.KindRunbook || m.Kind == schema.KindApprovalPolicy || m.Kind == schema.KindRiskRule) {
			action = schema.PlanDelete
		}
		plan = append(plan, schema.PlanChange{Action: action, Kind: m.Kind, Name: m.Name})
	}
	// A CMDB type change is the one write the validators cannot foresee (CIs
	// it would invalidate refuse it), so such changes go first: refused,
	// they fail the sync before anything else of the commit is written.
	slices.SortStableFunc(plan, func(x, y schema.PlanChange) int {
		return cmp.Compare(planOrder(x), planOrder(y))
	})
	return plan, nil
}

func planOrder(c schema.PlanChange) int {
	switch {
	case c.Kind == schema.KindCMDBType && c.Action != schema.PlanRelease:
		return 0
	case c.Action == schema.PlanDelete || c.Action == schema.PlanRelease:
		return 2
	}
	return 1
}

// current reports whether d's object exists and already is as d says.
func (a *Git) current(ctx context.Context, d GitDocument) (exists, same bool, err error) {
	st := a.Store
	miss := func(err error) (bool, bool, error) {
		if errors.Is(err, schema.ErrNotFound) {
			return false, false, nil
		}
		return false, false, err
	}
	switch d.Kind {
	case schema.KindRunbook:
		rb, err := st.Runbook(ctx, d.Name)
		if err != nil {
			return miss(err)
		}
		v, err := st.RunbookVersion(ctx, rb.ID, rb.LatestVersion)
		if err != nil {
			return false, false, err
		}
		return true, v.SHA256 == schema.SourceSHA256(string(d.Body)), nil
	case schema.KindScript:
		var s ScriptSpec
		_ = json.Unmarshal(d.Body, &s)
		sc, err := st.ScriptByName(ctx, d.Name)
		if err != nil {
			return miss(err)
		}
		v, err := st.ScriptVersion(ctx, sc.ID, sc.LatestVersion)
		if err != nil {
			return false, false, err
		}
		in := s.input(d.Name)
		if in.Interpreter == "" {
			in.Interpreter = "bash"
		}
		return true, v.Content == in.Content && v.Interpreter == in.Interpreter && jsonEqual(v.Parameters, orEmpty(in.Parameters)), nil
	case schema.KindApprovalPolicy:
		var s ApprovalPolicySpec
		_ = json.Unmarshal(d.Body, &s)
		p, err := st.ApprovalPolicyByName(ctx, d.Name)
		if err != nil {
			return miss(err)
		}
		want := s.policy(d.Name)
		return true, p.Description == want.Description && jsonEqual(p.Spec, want.Spec), nil
	case schema.KindRiskRule:
		var s RiskRuleSpec
		_ = json.Unmarshal(d.Body, &s)
		r, err := st.RiskRuleByPattern(ctx, d.Name)
		if err != nil {
			return miss(err)
		}
		return true, r.Action == s.Action && r.Description == s.Description, nil
	case schema.KindCMDBType:
		var s CMDBTypeSpec
		_ = json.Unmarshal(d.Body, &s)
		t, err := st.Type(ctx, d.Name)
		if err != nil {
			return miss(err)
		}
		return true, t.Description == s.Description && jsonEqual(t.Attributes, orEmpty(s.Attributes)), nil
	}
	return false, false, fmt.Errorf("unknown kind %s", d.Kind)
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// ApplyGitSyncInput applies stored plan SyncID.
type ApplyGitSyncInput struct {
	SyncID int64
}

// ApplyGitSyncResult counts what was changed.
type ApplyGitSyncResult struct {
	Applied int
}

// ApplyGitSync applies a stored plan as the source's sync, marks each
// object managed by the source and audits each change with the commit.
// Every change is idempotent, so a retried attempt finishes the plan.
func (a *Git) ApplyGitSync(ctx context.Context, in ApplyGitSyncInput) (ApplyGitSyncResult, error) {
	sync, err := a.Store.GitSyncByID(ctx, in.SyncID)
	if err != nil {
		return ApplyGitSyncResult{}, err
	}
	if sync.Status == schema.SyncApplied {
		return ApplyGitSyncResult{Applied: len(sync.Plan)}, nil
	}
	if sync.Status != schema.SyncPlanned {
		return ApplyGitSyncResult{}, invalid("git sync %d is %s, not planned", sync.ID, sync.Status)
	}
	actx := schema.AsGitSource(ctx, sync.Source)
	author := gitAuditActor + sync.Source
	for _, ch := range sync.Plan {
		if err := a.applyChange(actx, ch, author, sync.SHA); err != nil {
			var ve *schema.ValidationError
			var me *schema.ManagedError
			var tr *schema.TypeChangeRefused
			if errors.As(err, &ve) || errors.As(err, &me) || errors.As(err, &tr) {
				sync.Status, sync.Error = schema.SyncFailed, fmt.Sprintf("commit %s: %s %s: %v", short(sync.SHA), ch.Kind, ch.Name, err)
				_ = a.Store.FinishGitSync(context.WithoutCancel(ctx), sync)
				return ApplyGitSyncResult{}, invalid("%s", sync.Error)
			}
			return ApplyGitSyncResult{}, fmt.Errorf("apply %s %s %s: %w", ch.Action, ch.Kind, ch.Name, err)
		}
		owner := sync.Source
		if ch.Action == schema.PlanDelete || ch.Action == schema.PlanRelease {
			owner = ""
		}
		if err := a.Store.SetManaged(ctx, ch.Kind, ch.Name, owner, sync.SHA); err != nil {
			return ApplyGitSyncResult{}, err
		}
		if err := a.Store.AppendAudit(ctx, &schema.AuditEntry{At: time.Now().UTC(), Actor: author, Action: gitAuditActionP + ch.Action,
			Target: auditTarget(ch.Kind, ch.Name), Status: 200,
			Detail: fmt.Sprintf("source=%s sha=%s file=%s", sync.Source, sync.SHA, ch.File)}); err != nil {
			return ApplyGitSyncResult{}, err
		}
		activity.RecordHeartbeat(ctx, ch.Kind+"/"+ch.Name)
	}
	sync.Status = schema.SyncApplied
	if err := a.Store.FinishGitSync(ctx, sync); err != nil {
		return ApplyGitSyncResult{}, err
	}
	return ApplyGitSyncResult{Applied: len(sync.Plan)}, nil
}

func auditTarget(kind, name string) string {
	switch kind {
	case schema.KindRunbook:
		return "runbook:" + name
	case schema.KindScript:
		return "script:" + name
	case schema.KindApprovalPolicy:
		return "approval-policy:" + name
	case schema.KindRiskRule:
		return "risk_rule:" + name
	default:
		return "ci_type:" + name
	}
}

// applyChange makes one change through the store's own write paths (the
// API's), as whoever the ctx says (AsGitSource).
func (a *Git) applyChange(ctx context.Context, ch schema.PlanChange, author, sha string) error {
	st := a.Store
	comment := "git " + short(sha)
	ignoreMissing := func(err error) error {
		if errors.Is(err, schema.ErrNotFound) {
			return nil
		}
		return err
	}
	if ch.Action == schema.PlanRelease {
		return nil
	}
	switch ch.Kind {
	case schema.KindRunbook:
		if ch.Action == schema.PlanDelete {
			return ignoreMissing(st.DeleteRunbook(ctx, ch.Name, author))
		}
		rb, err := a.runbookRegistry().Parse(ch.Document)
		if err != nil {
			return err
		}
		in := schema.RunbookInput{Name: rb.Metadata.Name, Description: rb.Metadata.Description, Labels: rb.Metadata.Labels, Source: string(ch.Document), Comment: comment}
		if _, err := st.Runbook(ctx, ch.Name); errors.Is(err, schema.ErrNotFound) {
			_, _, err = st.CreateRunbook(ctx, in, author)
			return err
		}
		_, _, err = st.AddRunbookVersion(ctx, ch.Name, in, author)
		return err
	case schema.KindScript:
		var s ScriptSpec
		if err := json.Unmarshal(ch.Document, &s); err != nil {
			return err
		}
		in := s.input(ch.Name)
		if in.Comment == "" {
			in.Comment = comment
		}
		sc, err := st.ScriptByName(ctx, ch.Name)
		if errors.Is(err, schema.ErrNotFound) {
			_, _, err = st.CreateScript(ctx, in, author)
			return err
		}
		if err != nil {
			return err
		}
		v, err := st.ScriptVersion(ctx, sc.ID, sc.LatestVersion)
		if err != nil {
			return err
		}
		if in.Interpreter == "" {
			in.Interpreter = "bash"
		}
		if v.Content == in.Content && v.Interpreter == in.Interpreter && jsonEqual(v.Parameters, orEmpty(in.Parameters)) {
			return nil // a retried attempt made it already
		}
		_, err = st.AddScriptVersion(ctx, sc.ID, in, author)
		return err
	case schema.KindApprovalPolicy:
		if ch.Action == schema.PlanDelete {
			return ignoreMissing(st.DeleteApprovalPolicy(ctx, ch.Name))
		}
		var s ApprovalPolicySpec
		if err := json.Unmarshal(ch.Document, &s); err != nil {
			return err
		}
		p := s.policy(ch.Name)
		p.CreatedBy = author
		return st.SaveApprovalPolicy(ctx, p)
	case schema.KindRiskRule:
		old, err := st.RiskRuleByPattern(ctx, ch.Name)
		if err != nil && !errors.Is(err, schema.ErrNotFound) {
			return err
		}
		var s RiskRuleSpec
		if ch.Action != schema.PlanDelete {
			if err := json.Unmarshal(ch.Document, &s); err != nil {
				return err
			}
			if old != nil && old.Action == s.Action && old.Description == s.Description {
				return nil
			}
		}
		// Rules have no update: a changed rule is replaced.
		if old != nil {
			if err := ignoreMissing(st.DeleteRiskRule(ctx, old.ID)); err != nil {
				return err
			}
		}
		if ch.Action == schema.PlanDelete {
			return nil
		}
		return st.CreateRiskRule(ctx, &schema.RiskRule{Pattern: s.Pattern, Action: s.Action, Description: s.Description, CreatedBy: author})
	case schema.KindCMDBType:
		var s CMDBTypeSpec
		if err := json.Unmarshal(ch.Document, &s); err != nil {
			return err
		}
		if _, err := st.Type(ctx, ch.Name); errors.Is(err, schema.ErrNotFound) {
			return st.CreateType(ctx, &schema.CIType{Name: ch.Name, Description: s.Description, Attributes: s.Attributes})
		}
		_, err := st.UpdateType(ctx, ch.Name, s.Description, s.Attributes)
		return err
	}
	return fmt.Errorf("unknown kind %s", ch.Kind)
}

func (a *Git) runbookRegistry() *runbook.Registry {
	if a.Runbooks == nil {
		return runbook.Builtin()
	}
	return a.Runbooks
}
