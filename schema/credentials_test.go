package schema_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/opsflow/opsflow/schema"
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

			// Later migrations go first, newest first.
			var undo []string
			ms, err := s.MigrationStatus(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for i := len(ms) - 1; i >= 0; i-- {
				if ms[i].Applied && ms[i].Name >= "0007" {
					undo = append(undo, ms[i].Name)
				}
			}
			for _, step := range []string{"down", "up"} {
				if step == "down" {
					for _, m := range undo {
						if err := s.UndoMigration(ctx, m); err != nil {
							t.Fatal(err)
						}
					}
				} else if applied, err := s.MigrateUp(ctx); err != nil || len(applied) != len(undo) {
					t.Fatalf("up: %v %v", applied, err)
				} else if _, err := s.DB.ExecContext(ctx, "UPDATE bun_migrations SET group_id = (SELECT min(group_id) FROM bun_migrations) WHERE name >= '0007'"); err != nil {
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

// TestHTTPScopeAllows: an http credential goes only to its scope's
// scheme, host and port, under its path segment by segment.
func TestHTTPScopeAllows(t *testing.T) {
	c := &schema.Credential{Kind: schema.CredHTTP, Scope: "https://api.example.com/v1/, http://Hooks.internal:8080"}
	for raw, want := range map[string]bool{
		"https://api.example.com/v1/jobs":     true,
		"https://api.example.com:443/v1":      true,
		"https://API.example.com/v1/x?y=1":    true,
		"http://hooks.internal:8080/anything": true,
		"https://api.example.com/v10/jobs":    false,
		"https://api.example.com/v2":          false,
		"http://api.example.com/v1/jobs":      false,
		"https://api.example.com:8443/v1/":    false,
		"https://api.example.com.evil/v1/":    false,
		"https://u:p@api.example.com/v1/":     false,
		"https://api.example.com/v1/../admin": false,
		"http://hooks.internal/anything":      false,
	} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.HTTPScopeAllows(u); got != want {
			t.Errorf("%s: %v, want %v", raw, got, want)
		}
	}
	if (&schema.Credential{Kind: schema.CredPassword, Scope: "https://api.example.com/"}).HTTPScopeAllows(&url.URL{Scheme: "https", Host: "api.example.com", Path: "/"}) {
		t.Error("a password credential passes as an http one")
	}
	for _, bad := range []string{"", "ftp://x/", "https://", "https://x/?q=1", "https://u@x/", "env=prod"} {
		if _, err := schema.ParseHTTPScope(bad); err == nil {
			t.Errorf("scope %q accepted", bad)
		}
	}
}
