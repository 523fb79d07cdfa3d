package schema

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/uptrace/bun"
)

// Runbook is a named runbook; its documents live in versions. Name,
// description and labels are those of the latest version's metadata.
type Runbook struct {
	bun.BaseModel `bun:"table:runbooks"`

	ID            int64             `bun:"id,pk,autoincrement" json:"id"`
	Name          string            `bun:"name" json:"name"`
	Description   string            `bun:"description" json:"description"`
	Labels        map[string]string `bun:"labels,type:text" json:"labels"`
	LatestVersion int64             `bun:"latest_version" json:"latest_version"`
	CreatedBy     string            `bun:"created_by" json:"created_by"`
	CreatedAt     time.Time         `bun:"created_at" json:"created_at"`
	UpdatedAt     time.Time         `bun:"updated_at" json:"updated_at"`
	DeletedAt     *time.Time        `bun:"deleted_at" json:"deleted_at,omitempty"`
	DeletedBy     string            `bun:"deleted_by" json:"deleted_by,omitempty"`
}

// RunbookVersion is one immutable version of a runbook: its source as
// submitted (YAML or JSON) and the source's SHA-256.
type RunbookVersion struct {
	bun.BaseModel `bun:"table:runbook_versions"`

	RunbookID int64     `bun:"runbook_id,pk" json:"runbook_id"`
	Version   int64     `bun:"version,pk" json:"version"`
	Source    string    `bun:"source" json:"source,omitempty"`
	SHA256    string    `bun:"sha256" json:"sha256"`
	Comment   string    `bun:"comment" json:"comment"`
	CreatedBy string    `bun:"created_by" json:"created_by"`
	CreatedAt time.Time `bun:"created_at" json:"created_at"`
}

// RunbookInput creates a runbook or a new version of one. The caller has
// parsed and validated Source (internal/runbook); Name, Description and
// Labels are its metadata.
type RunbookInput struct {
	Name        string
	Description string
	Labels      map[string]string
	Source      string
	Comment     string
}

// MaxRunbookSource bounds a runbook's source, as the parser does.
const MaxRunbookSource = 1 << 20

// reservedRunbookNames are path segments of the runbook API and of the
// console's runbook pages (/runbooks/new) that a name would shadow.
var reservedRunbookNames = []string{"validate", "schema.json", "new"}

// RunbookNameReserved reports a name the runbook API's paths keep for
// themselves.
func RunbookNameReserved(name string) bool { return slices.Contains(reservedRunbookNames, name) }

func validateRunbookInput(in *RunbookInput) error {
	bad := map[string]string{}
	if !credNameRE.MatchString(in.Name) {
		bad["metadata.name"] = "must be 1-100 letters, digits, '.', '_' or '-'"
	} else if RunbookNameReserved(in.Name) {
		bad["metadata.name"] = fmt.Sprintf("%q is reserved", in.Name)
	}
	switch {
	case strings.TrimSpace(in.Source) == "":
		bad["source"] = "required"
	case len(in.Source) > MaxRunbookSource:
		bad["source"] = "at most 1 MiB"
	}
	if len(bad) > 0 {
		return invalid("invalid runbook", bad)
	}
	if in.Labels == nil {
		in.Labels = map[string]string{}
	}
	return nil
}

// SourceSHA256 is the hex SHA-256 of a runbook's source, as versions
// record it.
func SourceSHA256(source string) string {
	sum := sha256.Sum256([]byte(source))
	return hex.EncodeToString(sum[:])
}

// CreateRunbook creates a runbook with its first version. A live runbook
// of the same name is a ConflictError.
func (s *Store) CreateRunbook(ctx context.Context, in RunbookInput, author string) (*Runbook, *RunbookVersion, error) {
	if err := validateRunbookInput(&in); err != nil {
		return nil, nil, err
	}
	now := time.Now().UTC()
	rb := &Runbook{Name: in.Name, Description: in.Description, Labels: in.Labels, CreatedBy: author, CreatedAt: now, UpdatedAt: now}
	var v *RunbookVersion
	err := s.DB.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if _, err := tx.NewInsert().Model(rb).Returning("id").Exec(ctx); err != nil {
			if isUniqueViolation(err) {
				return &ConflictError{Message: "runbook name taken", Fields: map[string]string{"metadata.name": "a runbook of this name exists"}}
			}
			return err
		}
		var err error
		v, err = addRunbookVersion(ctx, tx, rb, in, author)
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("store: create runbook %q: %w", in.Name, err)
	}
	return rb, v, nil
}

// AddRunbookVersion adds the next immutable version to the live runbook
// called name. A source identical to the latest version's adds nothing:
// it returns that version and created false.
func (s *Store) AddRunbookVersion(ctx context.Context, name string, in RunbookInput, author string) (v *RunbookVersion, created bool, err error) {
	if err := validateRunbookInput(&in); err != nil {
		return nil, false, err
	}
	if err := s.checkManaged(ctx, s.DB, KindRunbook, name); err != nil {
		return nil, false, err
	}
	err = s.DB.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		rb := new(Runbook)
		if err := s.forUpdate(tx.NewSelect().Model(rb).Where("name = ? AND deleted_at IS NULL", name)).Scan(ctx); err != nil {
			return notFound(err)
		}
		latest := new(RunbookVersion)
		if err := tx.NewSelect().Model(latest).Where("runbook_id = ? AND version = ?", rb.ID, rb.LatestVersion).Scan(ctx); err != nil {
			return err
		}
		if latest.SHA256 == SourceSHA256(in.Source) {
			v = latest
			return nil
		}
		rb.Description, rb.Labels = in.Description, in.Labels
		if v, err = addRunbookVersion(ctx, tx, rb, in, author); err != nil {
			return err
		}
		created = true
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("store: add runbook %q version: %w", name, err)
	}
	return v, created, nil
}

// addRunbookVersion inserts the version after rb's latest and makes rb's
// row (description and labels included) say so.
func addRunbookVersion(ctx context.Context, tx bun.Tx, rb *Runbook, in RunbookInput, author string) (*RunbookVersion, error) {
	v := &RunbookVersion{RunbookID: rb.ID, Version: rb.LatestVersion + 1, Source: in.Source, SHA256: SourceSHA256(in.Source),
		Comment: in.Comment, CreatedBy: author, CreatedAt: time.Now().UTC()}
	if _, err := tx.NewInsert().Model(v).Exec(ctx); err != nil {
		return nil, err
	}
	rb.LatestVersion, rb.UpdatedAt = v.Version, v.CreatedAt
	if _, err := tx.NewUpdate().Model(rb).Column("latest_version", "updated_at", "description", "labels").WherePK().Exec(ctx); err != nil {
		return nil, err
	}
	return v, nil
}

// Runbook returns the live runbook called name.
func (s *Store) Runbook(ctx context.Context, name string) (*Runbook, error) {
	rb := new(Runbook)
	if err := s.DB.NewSelect().Model(rb).Where("name = ? AND deleted_at IS NULL", name).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: runbook %q: %w", name, notFound(err))
	}
	return rb, nil
}

// RunbookVersion returns one version of a runbook, by the runbook's ID:
// a deleted runbook's versions still read, for the runs that used them.
func (s *Store) RunbookVersion(ctx context.Context, runbookID, version int64) (*RunbookVersion, error) {
	v := new(RunbookVersion)
	if err := s.DB.NewSelect().Model(v).Where("runbook_id = ? AND version = ?", runbookID, version).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: runbook %d version %d: %w", runbookID, version, notFound(err))
	}
	return v, nil
}

// RunbookSource returns the text of version (0: the latest) of the live
// runbook called name, and the version it is: what runbook steps run
// (activities.RunbookSource).
func (s *Store) RunbookSource(ctx context.Context, name string, version int64) (string, int64, error) {
	rb, err := s.Runbook(ctx, name)
	if err != nil {
		return "", 0, err
	}
	if version == 0 {
		version = rb.LatestVersion
	}
	v, err := s.RunbookVersion(ctx, rb.ID, version)
	if err != nil {
		return "", 0, err
	}
	return v.Source, v.Version, nil
}

// RunbookVersions lists a runbook's versions newest first, without their
// sources.
func (s *Store) RunbookVersions(ctx context.Context, runbookID int64) ([]RunbookVersion, error) {
	var vs []RunbookVersion
	if err := s.DB.NewSelect().Model(&vs).ExcludeColumn("source").Where("runbook_id = ?", runbookID).OrderExpr("version DESC").Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: runbook %d versions: %w", runbookID, err)
	}
	return vs, nil
}

// DeleteRunbook marks the live runbook called name deleted. Its versions
// stay; the name is free for a new runbook.
func (s *Store) DeleteRunbook(ctx context.Context, name, by string) error {
	if err := s.checkManaged(ctx, s.DB, KindRunbook, name); err != nil {
		return err
	}
	res, err := s.DB.NewUpdate().Model((*Runbook)(nil)).Set("deleted_at = ?", time.Now().UTC()).Set("deleted_by = ?", by).
		Where("name = ? AND deleted_at IS NULL", name).Exec(ctx)
	if err != nil {
		return fmt.Errorf("store: delete runbook %q: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("store: delete runbook %q: %w", name, ErrNotFound)
	}
	return nil
}

// RunbookFilter selects live runbooks; Q searches name and description.
type RunbookFilter struct {
	Q string
	Page
}

// RunbookList lists one page of live runbooks, by name unless told.
func (s *Store) RunbookList(ctx context.Context, f RunbookFilter) ([]Runbook, PageInfo, error) {
	k, err := newKeyset(s.Engine, "runbooks", f.Page)
	if err != nil {
		return nil, PageInfo{}, err
	}
	var rs []Runbook
	q := s.DB.NewSelect().Model(&rs).Where("deleted_at IS NULL")
	if f.Q != "" {
		like := textSearch(f.Q)
		q = q.WhereGroup(" AND ", func(q *bun.SelectQuery) *bun.SelectQuery {
			return q.Where("LOWER(name) LIKE ?", like).WhereOr("LOWER(description) LIKE ?", like)
		})
	}
	rs, info, err := scanPage(ctx, k, q, &rs, func(r *Runbook) (any, any) {
		switch k.sort {
		case "name":
			return r.Name, r.ID
		case "created":
			return r.CreatedAt, r.ID
		case "updated":
			return r.UpdatedAt, r.ID
		}
		return r.ID, r.ID
	})
	if err != nil {
		return nil, PageInfo{}, fmt.Errorf("store: runbooks: %w", err)
	}
	return rs, info, nil
}
