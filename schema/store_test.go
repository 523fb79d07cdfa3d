package schema_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opsflow/opsflow/internal/testenv"
	"github.com/opsflow/opsflow/schema"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// stores returns a migrated store per engine. Postgres is one database for
// the package; tests keep to their own rows.
func stores(t *testing.T) map[schema.Engine]*schema.Store {
	t.Helper()
	ctx := context.Background()
	out := map[schema.Engine]*schema.Store{}
	dsns := []string{filepath.Join(t.TempDir(), "opsflow.db")}
	if !testenv.Short() { // the fast layer (-short) keeps to SQLite
		dsns = append(dsns, testenv.PostgresURL(t))
	}
	for _, dsn := range dsns {
		s, err := schema.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		if _, err := s.MigrateUp(ctx); err != nil {
			t.Fatalf("%s: %v", s.Engine, err)
		}
		out[s.Engine] = s
	}
	return out
}

func TestMigrateDownAndUp(t *testing.T) {
	ctx := context.Background()
	s, err := schema.Open(ctx, filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkDownUp(t, s)
}

func TestMigratePostgres(t *testing.T) {
	ctx := context.Background()
	s, err := schema.Open(ctx, testenv.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkDownUp(t, s) // tests in this package run one at a time
	st, err := s.MigrationStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range st {
		if !m.Applied {
			t.Errorf("migration %s not applied", m.Name)
		}
	}
}

func checkDownUp(t *testing.T, s *schema.Store) {
	t.Helper()
	ctx := context.Background()
	if _, err := s.MigrateUp(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Pending(ctx); err != nil || n != 0 {
		t.Fatalf("pending after up = %d, %v", n, err)
	}
	rolled, err := s.MigrateDown(ctx)
	if err != nil || len(rolled) == 0 {
		t.Fatalf("down: %v %v", rolled, err)
	}
	if _, err := s.CountUsers(ctx); err == nil {
		t.Fatal("users table still exists after migrate down")
	}
	if _, err := s.MigrateUp(ctx); err != nil {
		t.Fatalf("up again: %v", err)
	}
	if _, err := s.CountUsers(ctx); err != nil {
		t.Fatalf("users after up: %v", err)
	}
}

func TestUsersAndTokens(t *testing.T) {
	ctx := context.Background()
	for engine, s := range stores(t) {
		t.Run(string(engine), func(t *testing.T) {
			u := &schema.User{Username: "alice-" + string(engine), Role: schema.RoleOperator}
			if err := s.CreateUser(ctx, u); err != nil {
				t.Fatal(err)
			}
			if u.ID == 0 {
				t.Fatal("no id set")
			}
			dup := &schema.User{Username: u.Username, Role: schema.RoleViewer}
			if err := s.CreateUser(ctx, dup); !errors.Is(err, schema.ErrConflict) {
				t.Fatalf("duplicate username: err = %v, want ErrConflict", err)
			}
			bad := &schema.User{Username: "bad-role-" + string(engine), Role: "root"}
			if err := s.CreateUser(ctx, bad); err == nil {
				t.Fatal("role outside the CHECK constraint was accepted")
			}
			role := schema.RoleAdmin
			got, err := s.UpdateUser(ctx, u.ID, schema.UserUpdate{Role: &role})
			if err != nil || got.Role != schema.RoleAdmin {
				t.Fatalf("update role: %+v %v", got, err)
			}
			if _, err := s.UpdateUser(ctx, 1<<40, schema.UserUpdate{Role: &role}); !errors.Is(err, schema.ErrNotFound) {
				t.Fatalf("update missing user: %v", err)
			}

			exp := time.Now().Add(time.Hour).UTC()
			tok := &schema.APIToken{UserID: u.ID, Name: "ci", Prefix: "opf_x", TokenHash: "hash-" + string(engine), ExpiresAt: &exp}
			if err := s.CreateToken(ctx, tok); err != nil {
				t.Fatal(err)
			}
			gt, gu, err := s.TokenByHash(ctx, tok.TokenHash)
			if err != nil || gu.ID != u.ID || !gt.Active(time.Now()) {
				t.Fatalf("token by hash: %+v %+v %v", gt, gu, err)
			}
			if gt.Active(exp.Add(time.Second)) {
				t.Fatal("token active after expiry")
			}
			other := &schema.User{Username: "mallory-" + string(engine), Role: schema.RoleViewer}
			if err := s.CreateUser(ctx, other); err != nil {
				t.Fatal(err)
			}
			if _, err := s.RevokeToken(ctx, tok.ID, other.ID); !errors.Is(err, schema.ErrNotFound) {
				t.Fatalf("another user revoked the token: %v", err)
			}
			rt, err := s.RevokeToken(ctx, tok.ID, u.ID)
			if err != nil || rt.RevokedAt == nil || rt.Active(time.Now()) {
				t.Fatalf("revoke: %+v %v", rt, err)
			}
		})
	}
}

func TestAuditIsAppendOnly(t *testing.T) {
	ctx := context.Background()
	for engine, s := range stores(t) {
		t.Run(string(engine), func(t *testing.T) {
			actor := "auditor-" + string(engine)
			for i, action := range []string{"user.create", "user.update", "token.create"} {
				e := &schema.AuditEntry{Actor: actor, Action: action, Target: "t", RequestID: "r", Status: 200 + i}
				if err := s.AppendAudit(ctx, e); err != nil {
					t.Fatal(err)
				}
			}
			es, err := s.Audit(ctx, schema.AuditFilter{Actor: actor, Action: "user.*"})
			if err != nil || len(es) != 2 || es[0].Action != "user.update" {
				t.Fatalf("filter by action prefix: %+v %v", es, err)
			}
			page, err := s.Audit(ctx, schema.AuditFilter{Actor: actor, Limit: 1, Before: es[0].ID})
			if err != nil || len(page) != 1 || page[0].Action != "user.create" {
				t.Fatalf("cursor: %+v %v", page, err)
			}
			// Each refusal must come from the append-only trigger (not, say,
			// a typo in the statement), and the rows must be unchanged after.
			refused := func(what string, err error) {
				t.Helper()
				if err == nil || !strings.Contains(err.Error(), "audit_log is append-only") {
					t.Fatalf("%s: want the append-only trigger's error, got %v", what, err)
				}
			}
			_, err = s.DB.NewUpdate().Table("audit_log").Set("actor = 'x'").Where("actor = ?", actor).Exec(ctx)
			refused("update", err)
			_, err = s.DB.NewDelete().Table("audit_log").Where("actor = ?", actor).Exec(ctx)
			refused("delete", err)
			if engine == schema.Postgres {
				_, err = s.DB.ExecContext(ctx, "TRUNCATE audit_log")
				refused("truncate", err)
			}
			again, err := s.Audit(ctx, schema.AuditFilter{Actor: actor})
			if err != nil || len(again) != 3 {
				t.Fatalf("after the refused writes: %+v %v", again, err)
			}
			for _, e := range again {
				if e.Actor != actor {
					t.Fatalf("row changed: %+v", e)
				}
			}
		})
	}
}

func TestRunsReadModel(t *testing.T) {
	ctx := context.Background()
	for engine, s := range stores(t) {
		t.Run(string(engine), func(t *testing.T) {
			by := "runner-" + string(engine)
			base := time.Now().UTC().Truncate(time.Millisecond)
			for i := range 5 {
				r := &schema.Run{WorkflowID: "demo:" + by + "-" + string(rune('a'+i)), Kind: "demo", StartedBy: by, StartedAt: base.Add(time.Duration(i) * time.Second)}
				if err := s.RecordRunStart(ctx, r); err != nil {
					t.Fatal(err)
				}
			}
			// Pages of two, newest first, cover all five exactly once.
			var seen []string
			cursor := ""
			for {
				rs, next, err := s.Runs(ctx, schema.RunFilter{StartedBy: by, Limit: 2, Cursor: cursor})
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range rs {
					seen = append(seen, r.WorkflowID)
				}
				if next == "" {
					break
				}
				cursor = next
			}
			want := []string{"e", "d", "c", "b", "a"}
			if len(seen) != 5 {
				t.Fatalf("pages = %v", seen)
			}
			for i, w := range want {
				if seen[i] != "demo:"+by+"-"+w {
					t.Fatalf("order = %v", seen)
				}
			}
			if _, _, err := s.Runs(ctx, schema.RunFilter{Cursor: "!!"}); !errors.Is(err, schema.ErrBadCursor) {
				t.Fatalf("bad cursor: %v", err)
			}

			// A terminal status sticks: a repeated or late update cannot reopen it.
			id := "demo:" + by + "-a"
			if err := s.RecordRunStatus(ctx, id, "r1", "demo", schema.RunCompleted, "3/3 steps", time.Now()); err != nil {
				t.Fatal(err)
			}
			if err := s.RecordRunStatus(ctx, id, "r1", "demo", schema.RunFailed, "late", time.Now()); err != nil {
				t.Fatal(err)
			}
			r, err := s.Run(ctx, id)
			if err != nil || r.Status != schema.RunCompleted || r.EndedAt == nil || r.Summary != "3/3 steps" || r.StartedBy != by {
				t.Fatalf("run = %+v, %v", r, err)
			}

			// A run that finishes before its starter records it keeps its
			// status and gains who started it.
			fast := "demo:" + by + "-fast"
			if err := s.RecordRunStatus(ctx, fast, "r2", "demo", schema.RunCompleted, "", time.Now()); err != nil {
				t.Fatal(err)
			}
			if err := s.RecordRunStart(ctx, &schema.Run{WorkflowID: fast, RunID: "r2", Kind: "demo", StartedBy: by, Target: "h1"}); err != nil {
				t.Fatal(err)
			}
			r, err = s.Run(ctx, fast)
			if err != nil || r.Status != schema.RunCompleted || r.StartedBy != by || r.Target != "h1" {
				t.Fatalf("fast run = %+v, %v", r, err)
			}
			// A start with its audit entry is recorded once; a repeat writes
			// neither row again.
			audited := "demo:" + by + "-audited"
			for i, want := range []bool{true, false} {
				e := &schema.AuditEntry{Actor: by, Action: "workflow.start", Target: "run:" + audited, Status: 201}
				created, err := s.RecordRunStartAudited(ctx, &schema.Run{WorkflowID: audited, RunID: "r3", Kind: "demo", StartedBy: by}, e)
				if err != nil || created != want {
					t.Fatalf("start %d: created=%v err=%v, want %v", i, created, err, want)
				}
			}
			es, err := s.Audit(ctx, schema.AuditFilter{Target: "run:" + audited})
			if err != nil || len(es) != 1 || es[0].Actor != by {
				t.Fatalf("audit of audited start: %+v %v", es, err)
			}
			if _, err := s.Run(ctx, "demo:missing"); !errors.Is(err, schema.ErrNotFound) {
				t.Fatalf("missing run: %v", err)
			}
		})
	}
}
