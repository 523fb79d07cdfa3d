package schema

import (
	"context"
	"fmt"
	"time"

	"github.com/uptrace/bun"
)

// Roles, from least to most privileged. Approver is not a superset of
// operator: approving and running are separate duties.
const (
	RoleViewer   = "viewer"
	RoleOperator = "operator"
	RoleApprover = "approver"
	RoleAdmin    = "admin"
)

// Roles lists every valid role.
var Roles = []string{RoleViewer, RoleOperator, RoleApprover, RoleAdmin}

// ValidRole reports whether r is one of Roles.
func ValidRole(r string) bool {
	for _, x := range Roles {
		if x == r {
			return true
		}
	}
	return false
}

// User is a person or service account.
type User struct {
	bun.BaseModel `bun:"table:users"`

	ID           int64     `bun:"id,pk,autoincrement" json:"id"`
	Username     string    `bun:"username" json:"username"`
	DisplayName  string    `bun:"display_name" json:"display_name"`
	Email        string    `bun:"email" json:"email"`
	Role         string    `bun:"role" json:"role"`
	PasswordHash string    `bun:"password_hash" json:"-"`
	Disabled     bool      `bun:"disabled" json:"disabled"`
	CreatedAt    time.Time `bun:"created_at" json:"created_at"`
	UpdatedAt    time.Time `bun:"updated_at" json:"updated_at"`
}

// CreateUser inserts u, setting its ID and timestamps. A taken username is
// ErrConflict.
func (s *Store) CreateUser(ctx context.Context, u *User) error {
	now := time.Now().UTC()
	u.CreatedAt, u.UpdatedAt = now, now
	if _, err := s.DB.NewInsert().Model(u).Returning("id").Exec(ctx); err != nil {
		if isUniqueViolation(err) {
			return fmt.Errorf("store: create user %q: %w", u.Username, ErrConflict)
		}
		return fmt.Errorf("store: create user %q: %w", u.Username, err)
	}
	return nil
}

// User returns the user with id.
func (s *Store) User(ctx context.Context, id int64) (*User, error) {
	u := new(User)
	if err := s.DB.NewSelect().Model(u).Where("id = ?", id).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: user %d: %w", id, notFound(err))
	}
	return u, nil
}

// UserByUsername returns the user with username.
func (s *Store) UserByUsername(ctx context.Context, username string) (*User, error) {
	u := new(User)
	if err := s.DB.NewSelect().Model(u).Where("username = ?", username).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: user %q: %w", username, notFound(err))
	}
	return u, nil
}

// Users lists every user by username.
func (s *Store) Users(ctx context.Context) ([]User, error) {
	var us []User
	if err := s.DB.NewSelect().Model(&us).Order("username").Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: users: %w", err)
	}
	return us, nil
}

// CountUsers returns the number of users.
func (s *Store) CountUsers(ctx context.Context) (int64, error) {
	n, err := s.DB.NewSelect().Model((*User)(nil)).Count(ctx)
	if err != nil {
		return 0, fmt.Errorf("store: count users: %w", err)
	}
	return n, nil
}

// UserUpdate holds the fields of a user that may change; nil leaves a field
// as it is.
type UserUpdate struct {
	DisplayName  *string
	Email        *string
	Role         *string
	PasswordHash *string
	Disabled     *bool
	// EndSessions ends the user's web sessions and revokes their API
	// tokens in the same transaction (a password reset, a lowered role, a
	// disabled account), except KeepSession (a session's id hash) and
	// KeepToken (a token id): the credential the change was made with.
	EndSessions bool
	KeepSession string
	KeepToken   int64
}

// UserUpdateResult says what UpdateUser ended besides the update.
type UserUpdateResult struct {
	SessionsEnded int64
	TokensRevoked int64
}

// UpdateUser applies up to the user with id and returns the result.
func (s *Store) UpdateUser(ctx context.Context, id int64, up UserUpdate) (*User, error) {
	u, _, err := s.UpdateUserEndingSessions(ctx, id, up)
	return u, err
}

// UpdateUserEndingSessions is UpdateUser, also reporting the sessions and
// tokens it ended (with up.EndSessions).
func (s *Store) UpdateUserEndingSessions(ctx context.Context, id int64, up UserUpdate) (*User, UserUpdateResult, error) {
	var res UserUpdateResult
	err := s.DB.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if err := updateUser(ctx, tx, id, up); err != nil {
			return err
		}
		if !up.EndSessions {
			return nil
		}
		r, err := tx.NewDelete().Model((*Session)(nil)).Where("user_id = ?", id).Where("id_hash <> ?", up.KeepSession).Exec(ctx)
		if err != nil {
			return fmt.Errorf("store: end sessions of user %d: %w", id, err)
		}
		res.SessionsEnded, _ = r.RowsAffected()
		r, err = tx.NewUpdate().Model((*APIToken)(nil)).Set("revoked_at = ?", time.Now().UTC()).
			Where("user_id = ?", id).Where("revoked_at IS NULL").Where("id <> ?", up.KeepToken).Exec(ctx)
		if err != nil {
			return fmt.Errorf("store: revoke tokens of user %d: %w", id, err)
		}
		res.TokensRevoked, _ = r.RowsAffected()
		return nil
	})
	if err != nil {
		return nil, res, err
	}
	u, err := s.User(ctx, id)
	return u, res, err
}

func updateUser(ctx context.Context, db bun.IDB, id int64, up UserUpdate) error {
	q := db.NewUpdate().Model((*User)(nil)).Where("id = ?", id).Set("updated_at = ?", time.Now().UTC())
	if up.DisplayName != nil {
		q = q.Set("display_name = ?", *up.DisplayName)
	}
	if up.Email != nil {
		q = q.Set("email = ?", *up.Email)
	}
	if up.Role != nil {
		q = q.Set("role = ?", *up.Role)
	}
	if up.PasswordHash != nil {
		q = q.Set("password_hash = ?", *up.PasswordHash)
	}
	if up.Disabled != nil {
		q = q.Set("disabled = ?", *up.Disabled)
	}
	res, err := q.Exec(ctx)
	if err != nil {
		return fmt.Errorf("store: update user %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("store: update user %d: %w", id, ErrNotFound)
	}
	return nil
}
