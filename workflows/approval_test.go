package workflows_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opsflow/opsflow/activities"
	"github.com/opsflow/opsflow/schema"
	"github.com/opsflow/opsflow/workflows"
	"go.temporal.io/sdk/testsuite"
)

// approvalEnv runs the Approval workflow with time skipping, its
// activities on a real (SQLite) store holding users alice (the requester),
// bob, carol, dave (approvers) and erin (an admin, for escalation).
type approvalEnv struct {
	t      *testing.T
	env    *testsuite.TestWorkflowEnvironment
	store  *schema.Store
	ticket *schema.Ticket
}

func newApprovalEnv(t *testing.T, spec schema.ApprovalPolicySpec) *approvalEnv {
	t.Helper()
	ctx := context.Background()
	st, err := schema.Open(ctx, filepath.Join(t.TempDir(), "approvals.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.MigrateUp(ctx); err != nil {
		t.Fatal(err)
	}
	for _, u := range []struct{ name, role string }{{"alice", schema.RoleOperator}, {"bob", schema.RoleApprover}, {"carol", schema.RoleApprover},
		{"dave", schema.RoleApprover}, {"erin", schema.RoleAdmin}} {
		if err := st.CreateUser(ctx, &schema.User{Username: u.name, Role: u.role}); err != nil {
			t.Fatal(err)
		}
	}
	if ve := spec.Check(); ve != nil {
		t.Fatalf("policy: %v", ve)
	}
	tk := &schema.Ticket{WorkflowID: "approval:" + t.Name(), Title: "restart db", Requester: "alice", PolicyName: "p", Policy: spec}
	if err := st.CreateTicket(ctx, tk); err != nil {
		t.Fatal(err)
	}
	var s testsuite.WorkflowTestSuite
	env := newTestEnv(&s)
	env.RegisterWorkflow(workflows.Approval)
	env.RegisterActivity(&activities.Approvals{Store: st})
	env.SetStartWorkflowOptions(startOptions(tk.WorkflowID))
	return &approvalEnv{t: t, env: env, store: st, ticket: tk}
}

type vote struct {
	at      time.Duration
	id      string // update ID; a repeat is a double click
	voter   string
	for_    []string
	dec     string
	comment string
	wantErr string // the validator's refusal
	wantMsg string
}

// run starts the ticket, sends the votes at their times and returns the
// workflow's error.
func (a *approvalEnv) run(votes ...vote) error {
	a.t.Helper()
	// A vote the workflow never saw (sent after it closed) proves nothing:
	// every vote must reach it, accepted or refused.
	delivered := make([]bool, len(votes))
	for i, v := range votes {
		id := v.id
		if id == "" {
			id = fmt.Sprintf("vote-%d", i)
		}
		a.env.RegisterDelayedCallback(func() {
			a.env.UpdateWorkflow(workflows.UpdateDecide, id, &testsuite.TestUpdateCallback{
				OnAccept: func() {
					delivered[i] = true
					if v.wantErr != "" {
						a.t.Errorf("%s's vote accepted, want %q", v.voter, v.wantErr)
					}
				},
				OnReject: func(err error) {
					delivered[i] = true
					if v.wantErr == "" || !strings.Contains(err.Error(), v.wantErr) {
						a.t.Errorf("%s's vote refused: %v, want %q", v.voter, err, v.wantErr)
					}
				},
				OnComplete: func(res any, err error) {
					o, _ := res.(workflows.ApprovalOutcome)
					if err != nil || (v.wantMsg != "" && !strings.Contains(o.Message, v.wantMsg)) {
						a.t.Errorf("%s's vote: %+v %v, want %q", v.voter, o, err, v.wantMsg)
					}
				},
			}, workflows.ApprovalDecision{Voter: v.voter, OnBehalfOf: v.for_, Decision: v.dec, Channel: "api", Comment: v.comment})
		}, v.at)
	}
	a.env.ExecuteWorkflow(workflows.Approval, workflows.ApprovalInput{TicketID: a.ticket.ID, Requester: "alice", Policy: a.ticket.Policy})
	if !a.env.IsWorkflowCompleted() {
		a.t.Fatal("the ticket never closed")
	}
	for i, v := range votes {
		if !delivered[i] {
			a.t.Errorf("vote %d by %s at %s never reached the workflow (sent after the ticket closed?)", i, v.voter, v.at)
		}
	}
	return a.env.GetWorkflowError()
}

func (a *approvalEnv) stored() *schema.Ticket {
	a.t.Helper()
	tk, err := a.store.Ticket(context.Background(), a.ticket.ID)
	if err != nil {
		a.t.Fatal(err)
	}
	return tk
}

func TestApprovalQuorumWithDuplicateAndSelfVote(t *testing.T) {
	a := newApprovalEnv(t, schema.ApprovalPolicySpec{Levels: []schema.ApprovalLevel{
		{ApproverSet: schema.ApproverSet{Users: []string{"alice", "bob", "carol", "dave"}}, Rule: schema.RuleQuorum, Quorum: 2}}})
	err := a.run(
		vote{at: time.Minute, voter: "alice", dec: schema.DecisionApprove, wantErr: "you requested this ticket"},
		vote{at: 2 * time.Minute, id: "bob-click", voter: "bob", dec: schema.DecisionApprove, wantMsg: "approved, 1 of 2"},
		// The same click again (same update ID) counts once: Temporal
		// returns the first outcome.
		vote{at: 3 * time.Minute, id: "bob-click", voter: "bob", dec: schema.DecisionApprove, wantMsg: "approved, 1 of 2"},
		// Another click by bob is refused before it reaches history.
		vote{at: 4 * time.Minute, voter: "bob", dec: schema.DecisionApprove, wantErr: "already voted"},
		vote{at: 5 * time.Minute, voter: "mallory", dec: schema.DecisionApprove, wantErr: "not an approver"},
		vote{at: 6 * time.Minute, voter: "carol", dec: schema.DecisionApprove, wantMsg: "the ticket is approved"},
		// dave clicks in the same instant as carol, whose vote closed the
		// level: his arrives while the ticket is still open, and is refused.
		vote{at: 6 * time.Minute, voter: "dave", dec: schema.DecisionApprove, wantErr: "already decided"},
	)
	if err != nil {
		t.Fatalf("ticket: %v", err)
	}
	tk := a.stored()
	if tk.Status != schema.TicketApproved || len(tk.Decisions) != 2 || tk.Decisions[0].Voter != "bob" || tk.Decisions[1].Voter != "carol" {
		t.Fatalf("stored: %+v", tk)
	}
}

func TestApprovalLevelsAndRejection(t *testing.T) {
	a := newApprovalEnv(t, schema.ApprovalPolicySpec{Levels: []schema.ApprovalLevel{
		{ApproverSet: schema.ApproverSet{Roles: []string{schema.RoleApprover}}, Rule: schema.RuleAny},
		{ApproverSet: schema.ApproverSet{Users: []string{"carol", "dave"}}, Rule: schema.RuleAll}}})
	err := a.run(
		vote{at: time.Minute, voter: "bob", dec: schema.DecisionApprove, wantMsg: "level 1 of 2 approved"},
		vote{at: 2 * time.Minute, voter: "bob", dec: schema.DecisionApprove, wantErr: "not an approver for level 2"},
		vote{at: 3 * time.Minute, voter: "carol", dec: schema.DecisionApprove, wantMsg: "approved, 1 of 2"},
		vote{at: 4 * time.Minute, voter: "dave", dec: schema.DecisionReject, wantMsg: "the ticket is rejected"},
	)
	if err == nil || !strings.Contains(err.Error(), "rejected by dave at level 2") {
		t.Fatalf("ticket: %v", err)
	}
	if tk := a.stored(); tk.Status != schema.TicketRejected || tk.Level != 1 || len(tk.Decisions) != 3 {
		t.Fatalf("stored: %+v", tk)
	}
}

// TestApprovalEscalatesThenExpires: nobody answers level 1 within its hour,
// so the admin is added; the admin answers late, after the second hour,
// and the ticket has expired.
func TestApprovalEscalation(t *testing.T) {
	spec := schema.ApprovalPolicySpec{Levels: []schema.ApprovalLevel{{ApproverSet: schema.ApproverSet{Users: []string{"bob"}}, Rule: schema.RuleAny,
		Timeout: "1h", OnTimeout: schema.OnTimeoutEscalate, EscalateTo: schema.ApproverSet{Roles: []string{schema.RoleAdmin}}}}}
	t.Run("escalated approver decides", func(t *testing.T) {
		a := newApprovalEnv(t, spec)
		err := a.run(
			vote{at: 30 * time.Minute, voter: "erin", dec: schema.DecisionApprove, wantErr: "not an approver"},
			vote{at: 90 * time.Minute, voter: "erin", dec: schema.DecisionApprove, wantMsg: "the ticket is approved"},
		)
		if err != nil {
			t.Fatalf("ticket: %v", err)
		}
		tk := a.stored()
		if tk.Decisions[0].Decision != schema.DecisionEscalate || !strings.Contains(tk.Decisions[0].Comment, "erin") {
			t.Fatalf("decisions: %+v", tk.Decisions)
		}
	})
	t.Run("nobody answers", func(t *testing.T) {
		a := newApprovalEnv(t, spec)
		err := a.run()
		if err == nil || !strings.Contains(err.Error(), "expired") {
			t.Fatalf("ticket: %v", err)
		}
		if tk := a.stored(); tk.Status != schema.TicketExpired || tk.DecidedAt == nil {
			t.Fatalf("stored: %+v", tk)
		}
	})
	t.Run("auto-approve", func(t *testing.T) {
		auto := spec
		auto.Levels = []schema.ApprovalLevel{{ApproverSet: schema.ApproverSet{Users: []string{"bob"}}, Rule: schema.RuleAny, Timeout: "1h", OnTimeout: schema.OnTimeoutApprove}}
		if err := newApprovalEnv(t, auto).run(); err != nil {
			t.Fatalf("ticket: %v", err)
		}
	})
}

func TestApprovalDelegationAndWithdraw(t *testing.T) {
	spec := schema.ApprovalPolicySpec{Levels: []schema.ApprovalLevel{{ApproverSet: schema.ApproverSet{Users: []string{"bob", "carol"}}, Rule: schema.RuleAll}}}
	a := newApprovalEnv(t, spec)
	// dave votes for bob, who delegated to him; carol herself.
	err := a.run(
		vote{at: time.Minute, voter: "dave", dec: schema.DecisionApprove, wantErr: "not an approver"},
		vote{at: 2 * time.Minute, voter: "dave", for_: []string{"bob"}, dec: schema.DecisionApprove, wantMsg: "approved, 1 of 2"},
		vote{at: 3 * time.Minute, voter: "dave", for_: []string{"alice"}, dec: schema.DecisionApprove, wantErr: "not an approver"},
		vote{at: 4 * time.Minute, voter: "carol", dec: schema.DecisionApprove, wantMsg: "the ticket is approved"},
	)
	if err != nil {
		t.Fatalf("ticket: %v", err)
	}
	if d := a.stored().Decisions[0]; d.Voter != "dave" || d.OnBehalfOf != "bob" {
		t.Fatalf("delegated vote recorded as %+v", d)
	}

	w := newApprovalEnv(t, spec)
	for _, c := range []struct {
		at      time.Duration
		by      string
		wantErr string
	}{{time.Minute, "bob", "only the requester"}, {2 * time.Minute, "alice", ""}} {
		w.env.RegisterDelayedCallback(func() {
			w.env.UpdateWorkflow(workflows.UpdateWithdraw, "", &testsuite.TestUpdateCallback{
				OnAccept: func() {},
				OnReject: func(err error) {
					if c.wantErr == "" || !strings.Contains(err.Error(), c.wantErr) {
						t.Errorf("withdraw by %s: %v", c.by, err)
					}
				},
				OnComplete: func(any, error) {},
			}, c.by)
		}, c.at)
	}
	if err := w.run(); err == nil || !strings.Contains(err.Error(), "withdrawn by alice") {
		t.Fatalf("withdrawn ticket: %v", err)
	}
	if tk := w.stored(); tk.Status != schema.TicketWithdrawn {
		t.Fatalf("stored: %+v", tk)
	}
}

func TestApprovalByGroup(t *testing.T) {
	a := newApprovalEnv(t, schema.ApprovalPolicySpec{Levels: []schema.ApprovalLevel{
		{ApproverSet: schema.ApproverSet{Groups: []string{"oncall"}}, Rule: schema.RuleAny}}})
	if err := a.store.SetGroupMembers(context.Background(), "oncall", []string{"dave", "alice"}); err != nil {
		t.Fatal(err)
	}
	if err := a.store.SetGroupMembers(context.Background(), "oncall2", []string{"ghost"}); err == nil {
		t.Fatal("a group of a user who does not exist")
	}
	err := a.run(
		vote{at: time.Minute, voter: "bob", dec: schema.DecisionApprove, wantErr: "not an approver"},
		vote{at: 2 * time.Minute, voter: "alice", dec: schema.DecisionApprove, wantErr: "you requested this ticket"},
		vote{at: 3 * time.Minute, voter: "dave", dec: schema.DecisionApprove, wantMsg: "the ticket is approved"},
	)
	if err != nil {
		t.Fatalf("ticket: %v", err)
	}
}

// TestApprovalDecisionSurvivesFailedWrite: a counted vote is never lost
// when the read model refuses the write (the database is down for half
// an hour): the record waits and the final write is retried until it
// lands. A comment the store could not hold is refused before it counts.
func TestApprovalDecisionSurvivesFailedWrite(t *testing.T) {
	a := newApprovalEnv(t, schema.ApprovalPolicySpec{Levels: []schema.ApprovalLevel{
		{ApproverSet: schema.ApproverSet{Users: []string{"bob", "carol"}}, Rule: schema.RuleAll}}})
	ctx := context.Background()
	if _, err := a.store.DB.ExecContext(ctx, `CREATE TRIGGER outage BEFORE INSERT ON approval_decisions BEGIN SELECT RAISE(ABORT, 'injected outage'); END`); err != nil {
		t.Fatal(err)
	}
	a.env.RegisterDelayedCallback(func() {
		if _, err := a.store.DB.ExecContext(ctx, `DROP TRIGGER outage`); err != nil {
			t.Error(err)
		}
	}, 30*time.Minute)
	err := a.run(
		vote{at: time.Minute, voter: "bob", dec: schema.DecisionApprove, comment: "a\x00b", wantErr: "comment must not contain NUL"},
		vote{at: 2 * time.Minute, voter: "bob", dec: schema.DecisionApprove, comment: "looks fine\nto me", wantMsg: "approved, 1 of 2"},
		vote{at: 3 * time.Minute, voter: "carol", dec: schema.DecisionApprove, comment: "ok", wantMsg: "the ticket is approved"},
	)
	if err != nil {
		t.Fatalf("ticket: %v", err)
	}
	tk := a.stored()
	if tk.Status != schema.TicketApproved || len(tk.Decisions) != 2 || tk.Decisions[0].Comment != "looks fine\nto me" || tk.Decisions[1].Voter != "carol" {
		t.Fatalf("stored: %+v", tk)
	}
}
