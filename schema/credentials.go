package schema

import (
	"context"
	"fmt"
	"time"

	"github.com/uptrace/bun"
)

// Credential kinds.
const (
	CredSSHKey   = "ssh_key"
	CredPassword = "password"
)

// Credential is how opsflow logs in somewhere. Secret and Passphrase hold
// sealed values (internal/secret) and never leave the server.
type Credential struct {
	bun.BaseModel `bun:"table:credentials"`

	ID          int64     `bun:"id,pk,autoincrement" json:"id"`
	Name        string    `bun:"name" json:"name"`
	Kind        string    `bun:"kind" json:"kind"`
	Username    string    `bun:"username" json:"username"`
	Secret      string    `bun:"secret" json:"-"`
	Passphrase  string    `bun:"passphrase" json:"-"`
	Fingerprint string    `bun:"fingerprint" json:"fingerprint,omitempty"`
	Description string    `bun:"description" json:"description"`
	CreatedBy   string    `bun:"created_by" json:"created_by"`
	CreatedAt   time.Time `bun:"created_at" json:"created_at"`
	UpdatedAt   time.Time `bun:"updated_at" json:"updated_at"`
}

// SealContext binds a credential's sealed values to its name, so a value
// copied into another row does not open.
func (c *Credential) SealContext() string { return "credential:" + c.Name }

// CreateCredential inserts c; a taken name is ErrConflict.
func (s *Store) CreateCredential(ctx context.Context, c *Credential) error {
	now := time.Now().UTC()
	c.CreatedAt, c.UpdatedAt = now, now
	if _, err := s.DB.NewInsert().Model(c).Returning("id").Exec(ctx); err != nil {
		if isUniqueViolation(err) {
			return fmt.Errorf("store: create credential %q: %w", c.Name, ErrConflict)
		}
		return fmt.Errorf("store: create credential %q: %w", c.Name, err)
	}
	return nil
}

// Credential returns credential id, sealed values included.
func (s *Store) Credential(ctx context.Context, id int64) (*Credential, error) {
	c := new(Credential)
	if err := s.DB.NewSelect().Model(c).Where("id = ?", id).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: credential %d: %w", id, notFound(err))
	}
	return c, nil
}

// Credentials lists credentials by name.
func (s *Store) Credentials(ctx context.Context) ([]Credential, error) {
	var cs []Credential
	if err := s.DB.NewSelect().Model(&cs).Order("name").Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: credentials: %w", err)
	}
	return cs, nil
}

// DeleteCredential removes credential id.
func (s *Store) DeleteCredential(ctx context.Context, id int64) error {
	res, err := s.DB.NewDelete().Model((*Credential)(nil)).Where("id = ?", id).Exec(ctx)
	if err != nil {
		return fmt.Errorf("store: delete credential %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("store: delete credential %d: %w", id, ErrNotFound)
	}
	return nil
}
