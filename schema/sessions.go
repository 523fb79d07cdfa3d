package schema

import (
	"context"
	"fmt"
	"time"

	"github.com/uptrace/bun"
)

// Session is a web UI login. The cookie carries a random secret; only its
// hash is stored. CSRFToken is echoed in forms of the session's pages.
type Session struct {
	bun.BaseModel `bun:"table:sessions"`

	IDHash    string    `bun:"id_hash,pk"`
	UserID    int64     `bun:"user_id"`
	CSRFToken string    `bun:"csrf_token"`
	CreatedAt time.Time `bun:"created_at"`
	ExpiresAt time.Time `bun:"expires_at"`
}

// CreateSession inserts sess.
func (s *Store) CreateSession(ctx context.Context, sess *Session) error {
	if _, err := s.DB.NewInsert().Model(sess).Exec(ctx); err != nil {
		return fmt.Errorf("store: create session: %w", err)
	}
	return nil
}

// SessionByHash returns the unexpired session with idHash and its user.
func (s *Store) SessionByHash(ctx context.Context, idHash string, now time.Time) (*Session, *User, error) {
	sess := new(Session)
	err := s.DB.NewSelect().Model(sess).Where("id_hash = ?", idHash).Where("expires_at > ?", now.UTC()).Scan(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("store: session: %w", notFound(err))
	}
	u, err := s.User(ctx, sess.UserID)
	if err != nil {
		return nil, nil, err
	}
	return sess, u, nil
}

// DeleteSession ends a session; deleting a missing one is not an error.
func (s *Store) DeleteSession(ctx context.Context, idHash string) error {
	if _, err := s.DB.NewDelete().Model((*Session)(nil)).Where("id_hash = ?", idHash).Exec(ctx); err != nil {
		return fmt.Errorf("store: delete session: %w", err)
	}
	return nil
}

// DeleteExpiredSessions removes sessions that expired before now.
func (s *Store) DeleteExpiredSessions(ctx context.Context, now time.Time) (int64, error) {
	res, err := s.DB.NewDelete().Model((*Session)(nil)).Where("expires_at <= ?", now.UTC()).Exec(ctx)
	if err != nil {
		return 0, fmt.Errorf("store: delete expired sessions: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}
