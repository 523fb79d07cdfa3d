package schema_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/opsflow/opsflow/schema"
	"github.com/uptrace/bun"
)

// The migration that brought jump hosts and the local transport rebuilds
// the credentials table on SQLite. Run it back and forth under a job that
// references a credential: the rows and the reference survive.
func TestTransportsMigrationKeepsCredentialsAndJobs(t *testing.T) {
	ctx := context.Background()
	for engine, s := range stores(t) {
		t.Run(string(engine), func(t *testing.T) {
			sfx := fmt.Sprintf("%s-%d", engine, time.Now().UnixNano())
			cr := &schema.Credential{Name: "key-" + sfx, Kind: schema.CredSSHKey, Auth: schema.CredSSHKey, Username: "root", Secret: "sealed"}
			if err := s.CreateCredential(ctx, cr); err != nil {
				t.Fatal(err)
			}
			sc, ver, err := s.CreateScript(ctx, schema.ScriptInput{Name: "m-" + sfx, Content: "true"}, "alice")
			if err != nil {
				t.Fatal(err)
			}
			job := &schema.Job{WorkflowID: "job:m-" + sfx, ScriptID: sc.ID, ScriptVersion: ver.Version, CredentialID: cr.ID, Status: schema.JobQueued}
			if err := s.CreateJob(ctx, job, []schema.JobHost{{Address: "10.0.0.1"}}); err != nil {
				t.Fatal(err)
			}

			// 0007 and every migration after it, newest first.
			var undo []string
			status, err := s.MigrationStatus(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range status {
				if m.Applied && m.Name >= "0007" {
					undo = append([]string{m.Name}, undo...)
				}
			}
			slices.Sort(undo)
			slices.Reverse(undo)
			for _, step := range []string{"down", "up"} {
				if step == "down" {
					for _, m := range undo {
						if err := s.UndoMigration(ctx, m); err != nil {
							t.Fatal(err)
						}
					}
				} else if applied, err := s.MigrateUp(ctx); err != nil || len(applied) != len(undo) {
					t.Fatalf("up: %v %v", applied, err)
				} else if _, err := s.DB.NewUpdate().Table("bun_migrations").Set("group_id = (SELECT min(group_id) FROM bun_migrations)").
					Where("name IN (?)", bun.In(undo)).Exec(ctx); err != nil {
					t.Fatal(err) // one group again, as other tests expect
				}
			}
			got, err := s.Credential(ctx, cr.ID)
			if err != nil || got.Name != cr.Name || got.Auth != schema.CredSSHKey || got.Secret != "sealed" {
				t.Fatalf("credential after the round trip: %+v %v", got, err)
			}
			if j, err := s.Job(ctx, job.ID); err != nil || j.CredentialID != cr.ID {
				t.Fatalf("job after the round trip: %+v %v", j, err)
			}
			if err := s.DeleteCredential(ctx, cr.ID); !errors.Is(err, schema.ErrConflict) {
				t.Fatalf("deleting a credential jobs used: %v, want a conflict", err)
			}
			local, err := s.LocalCredential(ctx)
			if err != nil || local.Kind != schema.CredLocal {
				t.Fatalf("local credential: %+v %v", local, err)
			}
			if err := s.DeleteCredential(ctx, local.ID); !errors.Is(err, schema.ErrConflict) {
				t.Fatalf("deleting the built-in local credential: %v, want a conflict", err)
			}
		})
	}
}

func TestJumpChain(t *testing.T) {
	ctx := context.Background()
	for engine, s := range stores(t) {
		t.Run(string(engine), func(t *testing.T) {
			sfx := fmt.Sprintf("%s-%d", engine, time.Now().UnixNano())
			var prev *int64
			var all []*schema.Credential
			for i := range 4 {
				j := &schema.Credential{Name: fmt.Sprintf("jump%d-%s", i, sfx), Kind: schema.CredJumpHost, Auth: schema.CredPassword,
					Username: "u", Secret: "s", Address: fmt.Sprintf("10.0.0.%d:22", i+1), JumpHostID: prev}
				if err := s.CreateCredential(ctx, j); err != nil {
					t.Fatal(err)
				}
				prev, all = &j.ID, append(all, j)
			}
			target := &schema.Credential{Name: "t-" + sfx, Kind: schema.CredPassword, Auth: schema.CredPassword, Username: "u", Secret: "s", JumpHostID: &all[2].ID}
			if err := s.CreateCredential(ctx, target); err != nil {
				t.Fatal(err)
			}
			chain, err := s.JumpChain(ctx, target)
			if err != nil || len(chain) != 3 || chain[0].ID != all[0].ID || chain[2].ID != all[2].ID {
				t.Fatalf("chain: %v %v", chain, err)
			}
			target.JumpHostID = &all[3].ID
			if _, err := s.JumpChain(ctx, target); err == nil {
				t.Fatal("a chain of 4 jump hosts accepted")
			}
			if err := s.DeleteCredential(ctx, all[0].ID); !errors.Is(err, schema.ErrConflict) {
				t.Fatalf("deleting a jump host others go through: %v, want a conflict", err)
			}
			if key, err := s.SetCredentialHostKey(ctx, all[0].ID, "ssh-ed25519 AAAA1"); err != nil || key != "ssh-ed25519 AAAA1" {
				t.Fatalf("record host key: %q %v", key, err)
			}
			if key, err := s.SetCredentialHostKey(ctx, all[0].ID, "ssh-ed25519 BBBB2"); err != nil || key != "ssh-ed25519 AAAA1" {
				t.Fatalf("a second key replaced the first: %q %v", key, err)
			}
		})
	}
}
