package schema

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/uptrace/bun"
)

// Identity beyond users themselves: the chat accounts linked to users and
// the groups they belong to (approvers, for now).

// ChatIdentity links an account on a chat platform to an opsflow user.
type ChatIdentity struct {
	bun.BaseModel `bun:"table:chat_identities"`

	Provider   string    `bun:"provider,pk" json:"provider"`
	ExternalID string    `bun:"external_id,pk" json:"external_id"`
	Username   string    `bun:"username" json:"username"`
	CreatedAt  time.Time `bun:"created_at" json:"created_at"`
}

// LinkChatIdentity links (or relinks) a chat account to a user.
func (s *Store) LinkChatIdentity(ctx context.Context, ci *ChatIdentity) error {
	if _, err := s.UserByUsername(ctx, ci.Username); errors.Is(err, ErrNotFound) {
		return &ValidationError{Fields: map[string]string{"username": "no such user"}}
	} else if err != nil {
		return err
	}
	ci.CreatedAt = time.Now().UTC()
	_, err := s.DB.NewInsert().Model(ci).On("CONFLICT (provider, external_id) DO UPDATE").Set("username = EXCLUDED.username").Exec(ctx)
	return err
}

// UnlinkChatIdentity removes a chat account's link; ErrNotFound if it
// had none.
func (s *Store) UnlinkChatIdentity(ctx context.Context, provider, externalID string) error {
	res, err := s.DB.NewDelete().Model((*ChatIdentity)(nil)).Where("provider = ? AND external_id = ?", provider, externalID).Exec(ctx)
	if err != nil {
		return fmt.Errorf("store: unlink chat identity: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("store: chat identity %s/%s: %w", provider, externalID, ErrNotFound)
	}
	return nil
}

// ChatUser returns the enabled user linked to a chat account, or
// ErrNotFound.
func (s *Store) ChatUser(ctx context.Context, provider, externalID string) (*User, error) {
	var ci ChatIdentity
	if err := s.DB.NewSelect().Model(&ci).Where("provider = ? AND external_id = ?", provider, externalID).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: chat identity %s/%s: %w", provider, externalID, notFound(err))
	}
	return s.enabledUser(ctx, ci.Username)
}

// ChatIDs returns the chat accounts of users on provider, by username.
func (s *Store) ChatIDs(ctx context.Context, provider string, users []string) (map[string]string, error) {
	out := map[string]string{}
	if len(users) == 0 {
		return out, nil
	}
	var cis []ChatIdentity
	if err := s.DB.NewSelect().Model(&cis).Where("provider = ? AND username IN (?)", provider, bun.In(users)).Scan(ctx); err != nil {
		return nil, err
	}
	for _, c := range cis {
		out[c.Username] = c.ExternalID
	}
	return out, nil
}

// UserByEmail returns the enabled user with that email (case-insensitive).
func (s *Store) UserByEmail(ctx context.Context, email string) (*User, error) {
	u := new(User)
	if email == "" {
		return nil, fmt.Errorf("store: user by email: %w", ErrNotFound)
	}
	if err := s.DB.NewSelect().Model(u).Where("LOWER(email) = LOWER(?)", email).Where("NOT disabled").Limit(1).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: user by email: %w", notFound(err))
	}
	return u, nil
}

func (s *Store) enabledUser(ctx context.Context, username string) (*User, error) {
	u, err := s.UserByUsername(ctx, username)
	if err != nil {
		return nil, err
	}
	if u.Disabled {
		return nil, fmt.Errorf("store: user %s is disabled: %w", username, ErrNotFound)
	}
	return u, nil
}

// UserGroup is one member of a group.
type UserGroup struct {
	bun.BaseModel `bun:"table:user_groups"`

	Name      string    `bun:"name,pk" json:"name"`
	Username  string    `bun:"username,pk" json:"username"`
	CreatedAt time.Time `bun:"created_at" json:"created_at"`
}

var groupNameRE = credNameRE

// SetGroupMembers replaces a group's members (an empty list removes the
// group). Every member must be a user.
func (s *Store) SetGroupMembers(ctx context.Context, name string, members []string) error {
	bad := fieldBag{}
	if !groupNameRE.MatchString(name) {
		bad.add("name", "must be 1-100 letters, digits, '.', '_' or '-'")
	}
	for i, m := range members {
		if _, err := s.UserByUsername(ctx, m); errors.Is(err, ErrNotFound) {
			bad.add(fmt.Sprintf("members[%d]", i), "no such user")
		} else if err != nil {
			return err
		}
	}
	if len(bad) > 0 {
		return &ValidationError{Fields: bad}
	}
	return s.DB.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if _, err := tx.NewDelete().Model((*UserGroup)(nil)).Where("name = ?", name).Exec(ctx); err != nil {
			return err
		}
		if len(members) == 0 {
			return nil
		}
		rows := make([]UserGroup, 0, len(members))
		now := time.Now().UTC()
		for _, m := range slices.Compact(slices.Sorted(slices.Values(members))) {
			rows = append(rows, UserGroup{Name: name, Username: m, CreatedAt: now})
		}
		_, err := tx.NewInsert().Model(&rows).Exec(ctx)
		return err
	})
}

// Groups returns every group's members, by group name.
func (s *Store) Groups(ctx context.Context) (map[string][]string, error) {
	var rows []UserGroup
	if err := s.DB.NewSelect().Model(&rows).Order("name", "username").Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: groups: %w", err)
	}
	out := map[string][]string{}
	for _, r := range rows {
		out[r.Name] = append(out[r.Name], r.Username)
	}
	return out, nil
}

// ChatIdentities returns the linked chat accounts, of one user when
// username is given, by provider and account.
func (s *Store) ChatIdentities(ctx context.Context, username string) ([]ChatIdentity, error) {
	var cis []ChatIdentity
	q := s.DB.NewSelect().Model(&cis).Order("provider", "external_id")
	if username != "" {
		q = q.Where("username = ?", username)
	}
	if err := q.Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: chat identities: %w", err)
	}
	return cis, nil
}
