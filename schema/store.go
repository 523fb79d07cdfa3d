// Package schema is opsflow's data layer: one Store over bun, Postgres in
// production and SQLite as the embedded dev default.
package schema

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" driver
)

// Engine names the SQL engine behind a Store.
type Engine string

const (
	Postgres Engine = "postgres"
	SQLite   Engine = "sqlite"
)

// Store is opsflow's database. Methods live in one file per table.
type Store struct {
	DB     *bun.DB
	Engine Engine
}

// Open connects to dsn: a postgres:// URL, or a SQLite file path (optionally
// prefixed with sqlite:// or file:).
func Open(ctx context.Context, dsn string) (*Store, error) {
	if dsn == "" {
		return nil, errors.New("store: open: empty database URL")
	}
	var s Store
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		cfg, err := pgx.ParseConfig(dsn)
		if err != nil {
			return nil, fmt.Errorf("store: open postgres: %w", err)
		}
		// bun writes arguments into the SQL text, so every statement is
		// new to the server: preparing it (pgx's default) would cost an
		// extra round trip and fill the statement cache for nothing.
		cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
		sqldb := stdlib.OpenDB(*cfg)
		// database/sql keeps only 2 idle connections by default; under
		// concurrent requests the rest would be closed and reopened
		// (TCP + auth) on every query.
		sqldb.SetMaxOpenConns(20)
		sqldb.SetMaxIdleConns(20)
		sqldb.SetConnMaxIdleTime(5 * time.Minute)
		s = Store{DB: bun.NewDB(sqldb, pgdialect.New()), Engine: Postgres}
	} else {
		path := strings.TrimPrefix(strings.TrimPrefix(dsn, "sqlite://"), "file:")
		if i := strings.IndexByte(path, '?'); i >= 0 {
			path = path[:i]
		}
		// WAL lets readers run beside the writer; IMMEDIATE transactions take
		// the write lock up front so two writers queue on busy_timeout
		// instead of failing with SQLITE_BUSY on lock upgrade.
		conn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)" +
			"&_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_txlock=immediate"
		sqldb, err := sql.Open("sqlite", conn)
		if err != nil {
			return nil, fmt.Errorf("store: open sqlite: %w", err)
		}
		sqldb.SetMaxOpenConns(4)
		sqldb.SetMaxIdleConns(4)
		s = Store{DB: bun.NewDB(sqldb, sqlitedialect.New()), Engine: SQLite}
	}
	if err := s.DB.PingContext(ctx); err != nil {
		s.DB.Close()
		return nil, fmt.Errorf("store: ping %s: %w", s.Engine, err)
	}
	return &s, nil
}

// Close closes the connection pool.
func (s *Store) Close() error { return s.DB.Close() }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.DB.NewSelect().ColumnExpr("1").Scan(ctx, &one); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

// isUniqueViolation reports whether err is a unique-constraint failure on
// either engine.
func isUniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "SQLSTATE 23505") || strings.Contains(msg, "UNIQUE constraint failed")
}

func isForeignKeyViolation(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "SQLSTATE 23503") || strings.Contains(msg, "FOREIGN KEY constraint failed")
}

// notFound maps sql.ErrNoRows to ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

// queryPrepared runs a hot read with ? placeholders. On Postgres the
// arguments are written into the text (so the planner sees the values) and
// the statement is prepared once per connection and reused, as a
// hand-written data layer on pgx would; repeated queries skip parsing and
// planning.
func (s *Store) queryPrepared(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if s.Engine != Postgres {
		return s.DB.DB.QueryContext(ctx, query, args...)
	}
	return s.DB.DB.QueryContext(ctx, s.DB.QueryGen().FormatQuery(query, args...), pgx.QueryExecModeCacheStatement)
}

// queryRowPrepared is queryPrepared for one row.
func (s *Store) queryRowPrepared(ctx context.Context, query string, args ...any) *sql.Row {
	if s.Engine != Postgres {
		return s.DB.DB.QueryRowContext(ctx, query, args...)
	}
	return s.DB.DB.QueryRowContext(ctx, s.DB.QueryGen().FormatQuery(query, args...), pgx.QueryExecModeCacheStatement)
}

// asTime reads a timestamp column: time.Time from Postgres, and from
// SQLite either that or the text bun wrote.
func asTime(v any) (time.Time, error) {
	switch t := v.(type) {
	case time.Time:
		return t.UTC(), nil
	case string:
		for _, layout := range []string{"2006-01-02 15:04:05.999999999-07:00", time.RFC3339Nano, "2006-01-02 15:04:05.999999999"} {
			if tt, err := time.Parse(layout, t); err == nil {
				return tt.UTC(), nil
			}
		}
		return time.Time{}, fmt.Errorf("store: unreadable timestamp %q", t)
	case []byte:
		return asTime(string(t))
	}
	return time.Time{}, fmt.Errorf("store: unreadable timestamp %T", v)
}
