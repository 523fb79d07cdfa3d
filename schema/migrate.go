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
	return migrate.NewMigrator(s.DB, ms, migrate.WithMarkAppliedOnSuccess(true)), nil
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
	return applied, nil
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
