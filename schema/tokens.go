package schema

import (
	"context"
	"fmt"
	"time"

	"github.com/uptrace/bun"
)

// APIToken is a bearer token. Only a hash of the secret is stored; Prefix
// (the first characters of the token) lets a user tell tokens apart.
type APIToken struct {
	bun.BaseModel `bun:"table:api_tokens"`

	ID         int64      `bun:"id,pk,autoincrement" json:"id"`
	UserID     int64      `bun:"user_id" json:"user_id"`
	Name       string     `bun:"name" json:"name"`
	Prefix     string     `bun:"prefix" json:"prefix"`
	TokenHash  string     `bun:"token_hash" json:"-"`
	ExpiresAt  *time.Time `bun:"expires_at" json:"expires_at"`
	RevokedAt  *time.Time `bun:"revoked_at" json:"revoked_at"`
	LastUsedAt *time.Time `bun:"last_used_at" json:"last_used_at"`
	CreatedAt  time.Time  `bun:"created_at" json:"created_at"`
}

// Active reports whether the token may be used at now.
func (t *APIToken) Active(now time.Time) bool {
	return t.RevokedAt == nil && (t.ExpiresAt == nil || now.Before(*t.ExpiresAt))
}

// CreateToken inserts t.
func (s *Store) CreateToken(ctx context.Context, t *APIToken) error {
	t.CreatedAt = time.Now().UTC()
	if _, err := s.DB.NewInsert().Model(t).Returning("id").Exec(ctx); err != nil {
		return fmt.Errorf("store: create token: %w", err)
	}
	return nil
}

// TokenByHash returns the token whose secret hashes to hash, with its user,
// in one query: it runs on every API request.
func (s *Store) TokenByHash(ctx context.Context, hash string) (*APIToken, *User, error) {
	var row struct {
		APIToken `bun:",extend"`
		User     *User `bun:"rel:belongs-to,join:user_id=id"`
	}
	err := s.DB.NewSelect().Model(&row).ModelTableExpr("api_tokens AS api_token").Relation("User").
		Where("api_token.token_hash = ?", hash).Scan(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("store: token: %w", notFound(err))
	}
	return &row.APIToken, row.User, nil
}

// TouchToken records that the token was used; it is best-effort bookkeeping.
func (s *Store) TouchToken(ctx context.Context, id int64, at time.Time) error {
	_, err := s.DB.NewUpdate().Model((*APIToken)(nil)).Set("last_used_at = ?", at.UTC()).Where("id = ?", id).Exec(ctx)
	return err
}

// Tokens lists the tokens of a user, newest first.
func (s *Store) Tokens(ctx context.Context, userID int64) ([]APIToken, error) {
	var ts []APIToken
	if err := s.DB.NewSelect().Model(&ts).Where("user_id = ?", userID).Order("id DESC").Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: tokens: %w", err)
	}
	return ts, nil
}

// RevokeToken revokes the token id of user userID (an admin passes 0 to
// revoke anyone's). Revoking twice keeps the first time.
func (s *Store) RevokeToken(ctx context.Context, id, userID int64) (*APIToken, error) {
	q := s.DB.NewUpdate().Model((*APIToken)(nil)).
		Set("revoked_at = COALESCE(revoked_at, ?)", time.Now().UTC()).Where("id = ?", id)
	if userID != 0 {
		q = q.Where("user_id = ?", userID)
	}
	res, err := q.Exec(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: revoke token %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil, fmt.Errorf("store: revoke token %d: %w", id, ErrNotFound)
	}
	t := new(APIToken)
	if err := s.DB.NewSelect().Model(t).Where("id = ?", id).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: token %d: %w", id, notFound(err))
	}
	return t, nil
}
