package schema_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/opsflow/opsflow/schema"
)

func TestGitSourcesSyncsAndManagedObjects(t *testing.T) {
	ctx := context.Background()
	for engine, s := range stores(t) {
		t.Run(string(engine), func(t *testing.T) {
			n := time.Now().UnixNano()
			src := &schema.GitSource{Name: fmt.Sprintf("g-%d", n), URL: "file:///srv/r.git", Branch: "main", WebhookSecret: "sealed"}
			if err := s.CreateGitSource(ctx, src); err != nil {
				t.Fatal(err)
			}
			if err := s.CreateGitSource(ctx, &schema.GitSource{Name: src.Name, URL: "x", Branch: "main"}); !errors.As(err, new(*schema.ConflictError)) {
				t.Fatalf("duplicate source: %v", err)
			}
			// A retried plan activity finds the sync row it made.
			a, err := s.BeginGitSync(ctx, &schema.GitSync{Source: src.Name, RunID: src.Name + "-run"})
			if err != nil {
				t.Fatal(err)
			}
			b, err := s.BeginGitSync(ctx, &schema.GitSync{Source: src.Name, RunID: src.Name + "-run"})
			if err != nil || a.ID != b.ID || b.Status != schema.SyncPlanning {
				t.Fatalf("begin twice: %+v %+v %v", a, b, err)
			}
			b.Status, b.SHA, b.Plan = schema.SyncPlanned, "abc", []schema.PlanChange{{Action: schema.PlanCreate, Kind: schema.KindApprovalPolicy, Name: src.Name, Document: []byte(`{}`)}}
			if err := s.FinishGitSync(ctx, b); err != nil {
				t.Fatal(err)
			}
			got, err := s.GitSyncs(ctx, src.Name, 0)
			if err != nil || len(got) != 1 || got[0].Status != schema.SyncPlanned || len(got[0].Plan) != 1 || got[0].FinishedAt == nil {
				t.Fatalf("syncs: %+v %v", got, err)
			}

			// A managed policy changes only through its source's sync.
			p := &schema.ApprovalPolicy{Name: src.Name, Spec: schema.ApprovalPolicySpec{Levels: []schema.ApprovalLevel{{ApproverSet: schema.ApproverSet{Roles: []string{"approver"}}, Rule: "any"}}}}
			if err := s.SaveApprovalPolicy(ctx, p); err != nil {
				t.Fatal(err)
			}
			if err := s.SetManaged(ctx, schema.KindApprovalPolicy, p.Name, src.Name, "abc"); err != nil {
				t.Fatal(err)
			}
			var me *schema.ManagedError
			if err := s.SaveApprovalPolicy(ctx, p); !errors.As(err, &me) || me.Source != src.Name {
				t.Fatalf("write to a managed policy: %v", err)
			}
			if err := s.DeleteApprovalPolicy(schema.AsGitSource(ctx, "another"), p.Name); !errors.As(err, &me) {
				t.Fatalf("another source deletes it: %v", err)
			}
			if err := s.SaveApprovalPolicy(schema.AsGitSource(ctx, src.Name), p); err != nil {
				t.Fatalf("its source writes it: %v", err)
			}
			// Deleting the source releases what it managed.
			if err := s.DeleteGitSource(ctx, src.Name); err != nil {
				t.Fatal(err)
			}
			if by, err := s.ManagedBy(ctx, schema.KindApprovalPolicy, p.Name); err != nil || by != "" {
				t.Fatalf("managed after its source went: %q %v", by, err)
			}
			if err := s.DeleteApprovalPolicy(ctx, p.Name); err != nil {
				t.Fatal(err)
			}
		})
	}
}
