package schema

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"time"

	"github.com/uptrace/bun/migrate"
)

// Migrations are append-only, numbered SQL files, one set per engine where
// the SQL differs. Each file is one transaction (.tx.up.sql).
//
//go:embed migrations
var migrationFiles embed.FS

// SQLite cannot alter a table's constraints: such migrations rebuild the
// table, which needs foreign keys off (see sqliteRebuild). They are kept
// apart from the migrations bun runs in a transaction of its own.
//
//go:embed migrations_sqlite_rebuild
var sqliteRebuildFiles embed.FS

var sqliteRebuilds = []struct{ name, comment string }{
	{"0007", "transports"},
	{"0019", "http_credentials"},
}

// MigrationStatus is one migration and whether it has been applied.
type MigrationStatus struct {
	Name    string
	Comment string
	Applied bool
	GroupID int64
}

func (s *Store) migrator() (*migrate.Migrator, error) {
	sub, err := fs.Sub(migrationFiles, "migrations/"+s.dir())
	if err != nil {
		return nil, err
	}
	ms := migrate.NewMigrations()
	if err := ms.Discover(sub); err != nil {
		return nil, fmt.Errorf("discover migrations: %w", err)
	}
	if s.Engine == SQLite {
		for _, r := range sqliteRebuilds {
			file := "migrations_sqlite_rebuild/" + r.name + "_" + r.comment
			ms.Add(migrate.Migration{Name: r.name, Comment: r.comment,
				Up: func(ctx context.Context, _ *migrate.Migrator, _ *migrate.Migration) error {
					return s.sqliteRebuild(ctx, file+".up.sql")
				},
				Down: func(ctx context.Context, _ *migrate.Migrator, _ *migrate.Migration) error {
					return s.sqliteRebuild(ctx, file+".down.sql")
				}})
		}
	}
	return migrate.NewMigrator(s.DB, ms, migrate.WithMarkAppliedOnSuccess(true)), nil
}

// sqliteRebuild runs a table rebuild the way SQLite documents it: on one
// connection, foreign keys off, in a transaction that checks them before
// it commits.
func (s *Store) sqliteRebuild(ctx context.Context, file string) error {
	sql, err := sqliteRebuildFiles.ReadFile(file)
	if err != nil {
		return err
	}
	conn, err := s.DB.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "PRAGMA foreign_keys = OFF"); err != nil {
		return err
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA foreign_keys = ON") //nolint:errcheck
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck
	if _, err := tx.ExecContext(ctx, string(sql)); err != nil {
		return err
	}
	rows, err := tx.QueryContext(ctx, "PRAGMA foreign_key_check")
	if err != nil {
		return err
	}
	broken := rows.Next()
	rows.Close()
	if broken {
		return fmt.Errorf("%s leaves foreign keys broken", file)
	}
	return tx.Commit()
}

func (s *Store) dir() string {
	if s.Engine == Postgres {
		return "pg"
	}
	return "sqlite"
}

// withLock runs f under bun/migrate's lock, waiting for another migrator
// (an API and a worker starting together) for up to a minute.
func (s *Store) withLock(ctx context.Context, m *migrate.Migrator, f func() error) error {
	if err := m.Init(ctx); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		err := m.Lock(ctx)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w; if no other migration is running, a crashed one left the lock: run `opsflow migrate unlock`", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	defer m.Unlock(context.WithoutCancel(ctx)) //nolint:errcheck
	return f()
}

// MigrateUp applies every pending migration and returns the names applied.
func (s *Store) MigrateUp(ctx context.Context) ([]string, error) {
	m, err := s.migrator()
	if err != nil {
		return nil, fmt.Errorf("migrate up: %w", err)
	}
	var applied []string
	err = s.withLock(ctx, m, func() error {
		g, err := m.Migrate(ctx)
		if g != nil {
			for _, mg := range g.Migrations {
				applied = append(applied, mg.Name+"_"+mg.Comment)
			}
		}
		return err
	})
	if err != nil {
		return applied, fmt.Errorf("migrate up: %w", err)
	}
	if err := s.seedCMDB(ctx); err != nil {
		return applied, fmt.Errorf("migrate up: %w", err)
	}
	if err := s.seedRiskRules(ctx); err != nil {
		return applied, fmt.Errorf("migrate up: %w", err)
	}
	if err := s.seedLocalCredential(ctx); err != nil {
		return applied, fmt.Errorf("migrate up: %w", err)
	}
	return applied, nil
}

// UndoMigration runs the down step of one applied migration, the newest,
// and marks it unapplied; MigrateUp then applies it alone. It exists to
// test a migration against the data of the one before.
func (s *Store) UndoMigration(ctx context.Context, name string) error {
	m, err := s.migrator()
	if err != nil {
		return err
	}
	return s.withLock(ctx, m, func() error {
		ms, err := m.MigrationsWithStatus(ctx)
		if err != nil {
			return err
		}
		applied := ms.Applied()
		if len(applied) == 0 || applied[0].Name != name {
			return fmt.Errorf("undo migration %s: not the newest applied", name)
		}
		mg := applied[0]
		if err := mg.Down(ctx, m, &mg); err != nil {
			return fmt.Errorf("undo migration %s: %w", name, err)
		}
		return m.MarkUnapplied(ctx, &mg)
	})
}

// MigrateDown rolls back the last group of migrations.
func (s *Store) MigrateDown(ctx context.Context) ([]string, error) {
	m, err := s.migrator()
	if err != nil {
		return nil, fmt.Errorf("migrate down: %w", err)
	}
	var rolled []string
	err = s.withLock(ctx, m, func() error {
		g, err := m.Rollback(ctx)
		if g != nil {
			for _, mg := range g.Migrations {
				rolled = append(rolled, mg.Name+"_"+mg.Comment)
			}
		}
		return err
	})
	if err != nil {
		return rolled, fmt.Errorf("migrate down: %w", err)
	}
	return rolled, nil
}

// MigrationStatus lists every known migration in order.
func (s *Store) MigrationStatus(ctx context.Context) ([]MigrationStatus, error) {
	m, err := s.migrator()
	if err != nil {
		return nil, fmt.Errorf("migrate status: %w", err)
	}
	if err := m.Init(ctx); err != nil {
		return nil, fmt.Errorf("migrate status: %w", err)
	}
	ms, err := m.MigrationsWithStatus(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate status: %w", err)
	}
	out := make([]MigrationStatus, len(ms))
	for i, mg := range ms {
		out[i] = MigrationStatus{Name: mg.Name, Comment: mg.Comment, Applied: mg.IsApplied(), GroupID: mg.GroupID}
	}
	return out, nil
}

// MigrateUnlock clears a lock left by a migrator that crashed.
func (s *Store) MigrateUnlock(ctx context.Context) error {
	m, err := s.migrator()
	if err != nil {
		return err
	}
	if err := m.Unlock(ctx); err != nil {
		return fmt.Errorf("migrate unlock: %w", err)
	}
	return nil
}

// Pending reports how many migrations are not yet applied.
func (s *Store) Pending(ctx context.Context) (int, error) {
	st, err := s.MigrationStatus(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, m := range st {
		if !m.Applied {
			n++
		}
	}
	return n, nil
}
