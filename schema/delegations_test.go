package schema_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/opsflow/opsflow/schema"
)

// TestDelegationsListedAndEnded: one's running and planned delegations
// are listed; ending one stops it at once (a planned one never starts),
// and only its giver may end it. Chat identities list per user.
func TestDelegationsListedAndEnded(t *testing.T) {
	ctx := context.Background()
	for engine, s := range stores(t) {
		t.Run(string(engine), func(t *testing.T) {
			p := fmt.Sprintf("dl-%s-%d", engine, time.Now().UnixNano())
			from, to := p+"-from", p+"-to"
			for _, n := range []string{from, to} {
				if err := s.CreateUser(ctx, &schema.User{Username: n, Role: schema.RoleApprover}); err != nil {
					t.Fatal(err)
				}
			}
			now := time.Now().UTC().Truncate(time.Second)
			running := &schema.Delegation{From: from, To: to, StartsAt: now.Add(-time.Hour), EndsAt: now.Add(time.Hour)}
			planned := &schema.Delegation{From: from, To: to, StartsAt: now.Add(2 * time.Hour), EndsAt: now.Add(3 * time.Hour)}
			over := &schema.Delegation{From: from, To: to, StartsAt: now.Add(-3 * time.Hour), EndsAt: now.Add(-2 * time.Hour)}
			for _, d := range []*schema.Delegation{running, planned, over} {
				if err := s.CreateDelegation(ctx, d); err != nil {
					t.Fatal(err)
				}
			}
			ds, err := s.Delegations(ctx, from, now)
			if err != nil || len(ds) != 2 || ds[0].ID != running.ID || ds[1].ID != planned.ID {
				t.Fatalf("delegations: %+v %v", ds, err)
			}
			if err := s.EndDelegation(ctx, running.ID, to, now); !errors.Is(err, schema.ErrNotFound) {
				t.Fatalf("ended by someone else: %v", err)
			}
			for _, d := range []*schema.Delegation{running, planned} {
				if err := s.EndDelegation(ctx, d.ID, from, now); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.EndDelegation(ctx, running.ID, from, now); !errors.Is(err, schema.ErrNotFound) {
				t.Fatalf("ended twice: %v", err)
			}
			if ds, err := s.Delegations(ctx, from, now); err != nil || len(ds) != 0 {
				t.Fatalf("after ending: %+v %v", ds, err)
			}
			for _, at := range []time.Time{now, now.Add(150 * time.Minute)} {
				if who, err := s.DelegatorsOf(ctx, to, at); err != nil || len(who) != 0 {
					t.Fatalf("delegators at %s after ending: %v %v", at, who, err)
				}
			}

			if err := s.LinkChatIdentity(ctx, &schema.ChatIdentity{Provider: "slack", ExternalID: p + "-U1", Username: to}); err != nil {
				t.Fatal(err)
			}
			if cis, err := s.ChatIdentities(ctx, to); err != nil || len(cis) != 1 || cis[0].ExternalID != p+"-U1" {
				t.Fatalf("chat identities of %s: %+v %v", to, cis, err)
			}
			if cis, err := s.ChatIdentities(ctx, from); err != nil || len(cis) != 0 {
				t.Fatalf("chat identities of %s: %+v %v", from, cis, err)
			}
		})
	}
}
