package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/opsflow/opsflow/schema"
	"github.com/opsflow/opsflow/workflows"
)

type ticketResp struct {
	schema.Ticket
}

// TestApprovalsThroughTheAPI: a two-level policy, a change request, and
// votes through the API on a real Temporal server — the requester and a
// non-approver refused with the reason, a double click counted once, the
// ticket approved, every attempt in the audit log with its channel.
func TestApprovalsThroughTheAPI(t *testing.T) {
	e := newEnv(t)
	p := fmt.Sprintf("change-%d", time.Now().UnixNano())
	admin := e.users[schema.RoleAdmin].Username
	bad := e.do(http.MethodPost, "/api/v1/approval-policies", "admin", map[string]any{"name": p, "spec": map[string]any{
		"levels": []map[string]any{{"roles": []string{"approver"}, "rule": "most"}, {"users": []string{"x", "y"}, "rule": "quorum", "quorum": 3}}}})
	if f := bad.apiError(t).Fields; bad.Status != 422 || f["spec.levels[0].rule"] == "" || f["spec.levels[1].quorum"] == "" {
		t.Fatalf("bad policy: %d %s", bad.Status, bad.Body)
	}
	if r := e.do(http.MethodPost, "/api/v1/approval-policies", "operator", map[string]any{"name": p}); r.Status != 403 {
		t.Fatalf("operator saving a policy: %d", r.Status)
	}
	pol := e.do(http.MethodPost, "/api/v1/approval-policies", "admin", map[string]any{"name": p, "spec": map[string]any{
		"levels": []map[string]any{{"roles": []string{"approver"}, "rule": "any"}, {"users": []string{admin}, "rule": "all", "timeout": "24h"}}}})
	if pol.Status != 201 {
		t.Fatalf("policy: %d %s", pol.Status, pol.Body)
	}

	open := func(key string) (resp, ticketResp) {
		r := e.do(http.MethodPost, "/api/v1/approvals", "operator", map[string]any{"title": "Restart payments-db", "description": "**why**: failover drill", "policy": p}, "Idempotency-Key", key)
		var tk ticketResp
		r.json(t, &tk)
		return r, tk
	}
	r, tk := open(p + "-1")
	if r.Status != 201 || tk.Status != schema.TicketPending || tk.Requester != e.users[schema.RoleOperator].Username {
		t.Fatalf("open: %d %s", r.Status, r.Body)
	}
	if r2, again := open(p + "-1"); r2.Status != 200 || again.ID != tk.ID {
		t.Fatalf("repeated open: %d %s", r2.Status, r2.Body)
	}
	// One audit row, naming the ticket (not its title), for the two opens.
	if n := countAuditOn(t, e, "approval.create", fmt.Sprintf("approval:%d", tk.ID)); n != 1 {
		t.Fatalf("%d approval.create rows on approval:%d, want 1", n, tk.ID)
	}
	if r := e.do(http.MethodPost, "/api/v1/approvals", "operator", map[string]any{"title": "", "policy": "nope"}); r.Status != 422 ||
		r.apiError(t).Fields["title"] == "" || r.apiError(t).Fields["policy"] == "" {
		t.Fatalf("bad ticket: %d %s", r.Status, r.Body)
	}
	path := fmt.Sprintf("/api/v1/approvals/%d", tk.ID)
	// The approver's inbox has it once its first level opened.
	eventually(t, 30*time.Second, "the ticket in the approver's inbox", func() bool {
		var l struct{ Items []schema.Ticket }
		e.do(http.MethodGet, "/api/v1/approvals?mine=to_decide", "approver", nil).json(t, &l)
		for _, x := range l.Items {
			if x.ID == tk.ID {
				return true
			}
		}
		return false
	})

	vote := func(role, decision, key string) (resp, workflows.ApprovalOutcome) {
		var hdr []string
		if key != "" {
			hdr = []string{"Idempotency-Key", key}
		}
		r := e.do(http.MethodPost, path+"/decision", role, map[string]any{"decision": decision, "comment": "by " + role}, hdr...)
		var o workflows.ApprovalOutcome
		r.json(t, &o)
		return r, o
	}
	if r, _ := vote("operator", "approve", ""); r.Status != 403 || !strings.Contains(r.apiError(t).Message, "you requested this ticket") {
		t.Fatalf("self-approval: %d %s", r.Status, r.Body)
	}
	if r, _ := vote("viewer", "approve", ""); r.Status != 403 || !strings.Contains(r.apiError(t).Message, "not an approver") {
		t.Fatalf("non-approver: %d %s", r.Status, r.Body)
	}
	if r, _ := vote("approver", "maybe", ""); r.Status != 422 || r.apiError(t).Fields["decision"] == "" {
		t.Fatalf("bad decision: %d %s", r.Status, r.Body)
	}
	r1, o1 := vote("approver", "approve", "click-1")
	r2, o2 := vote("approver", "approve", "click-1") // the double click
	if r1.Status != 200 || r2.Status != 200 || o1 != o2 || !strings.Contains(o1.Message, "level 1 of 2 approved") {
		t.Fatalf("approver's click and its double: %d %+v / %d %+v", r1.Status, o1, r2.Status, o2)
	}
	if r, _ := vote("approver", "approve", "click-2"); r.Status != 403 {
		t.Fatalf("approver voting on level 2: %d %s", r.Status, r.Body)
	}
	if r, o := vote("admin", "approve", ""); r.Status != 200 || o.Status != schema.TicketApproved {
		t.Fatalf("admin: %d %s", r.Status, r.Body)
	}
	var got ticketResp
	eventually(t, 30*time.Second, "the ticket recorded approved", func() bool {
		e.do(http.MethodGet, path, "viewer", nil).json(t, &got)
		return got.Status == schema.TicketApproved && got.DecidedAt != nil
	})
	if len(got.Decisions) != 2 || got.Decisions[0].Voter != e.users[schema.RoleApprover].Username || got.Decisions[0].Channel != "api" || got.Decisions[1].Level != 1 {
		t.Fatalf("decisions: %+v", got.Decisions)
	}
	if r, _ := vote("admin", "approve", "late"); r.Status != 409 {
		t.Fatalf("vote on a decided ticket: %d %s", r.Status, r.Body)
	}
	es, err := e.store.Audit(context.Background(), schema.AuditFilter{Action: "approval.decide", Target: fmt.Sprintf("approval:%d", tk.ID), Limit: 50})
	if err != nil {
		t.Fatal(err)
	}
	channels := 0
	for _, a := range es {
		if strings.Contains(a.Detail, "channel=api") {
			channels++
		}
	}
	if channels < 6 {
		t.Fatalf("%d decision attempts audited with their channel: %+v", channels, es)
	}

	// Withdraw: only the requester, only while pending.
	_, w := open(p + "-2")
	wpath := fmt.Sprintf("/api/v1/approvals/%d/withdraw", w.ID)
	eventually(t, 30*time.Second, "the second ticket to open", func() bool {
		var x ticketResp
		e.do(http.MethodGet, fmt.Sprintf("/api/v1/approvals/%d", w.ID), "viewer", nil).json(t, &x)
		return len(x.Approvers) > 0
	})
	if r := e.do(http.MethodPost, wpath, "approver", nil); r.Status != 403 {
		t.Fatalf("withdraw by another: %d %s", r.Status, r.Body)
	}
	if r := e.do(http.MethodPost, wpath, "operator", nil); r.Status != 200 {
		t.Fatalf("withdraw: %d %s", r.Status, r.Body)
	}
	var l struct{ Items []schema.Ticket }
	eventually(t, 30*time.Second, "the withdrawn ticket listed", func() bool {
		e.do(http.MethodGet, "/api/v1/approvals?status=withdrawn&mine=requested", "operator", nil).json(t, &l)
		return len(l.Items) > 0 && l.Items[0].ID == w.ID
	})
}

// TestGatedBatchJob: a script flagged by a high-risk rule with action
// approval runs only through an approval policy that matches it. The job
// waits; approved, it runs; rejected, it never touches a host.
func TestGatedBatchJob(t *testing.T) {
	e := newEnv(t)
	p := fmt.Sprintf("gate%d", time.Now().UnixNano())
	marker := "opsflow-gated-" + p
	if r := e.do(http.MethodPost, "/api/v1/risk-rules", "admin", map[string]any{"pattern": marker, "action": "approval", "description": "test gate"}); r.Status != 201 {
		t.Fatalf("risk rule: %d %s", r.Status, r.Body)
	}
	mark := t.TempDir() + "/ran"
	sid := e.script(p, `echo `+marker+` "$OPSFLOW_HOST" >> `+mark, nil)
	job := func() (resp, jobResp) {
		r := e.do(http.MethodPost, "/api/v1/jobs", "admin", map[string]any{"script_id": sid,
			"targets": map[string]any{"hosts": []string{"gw-1", "gw-2"}, "transport": "local"}})
		var j jobResp
		r.json(t, &j)
		return r, j
	}
	if r, _ := job(); r.Status != 422 || !strings.Contains(r.apiError(t).Fields["version"], "no approval policy gates it") {
		t.Fatalf("approval-risk job without a policy: %d %s", r.Status, r.Body)
	}
	if r := e.do(http.MethodPost, "/api/v1/approval-policies", "admin", map[string]any{"name": p, "spec": map[string]any{
		"match":  map[string]any{"script_risk": "approval"},
		"levels": []map[string]any{{"roles": []string{"approver"}, "rule": "any"}}}}); r.Status != 201 {
		t.Fatalf("policy: %d %s", r.Status, r.Body)
	}
	ranLines := func() int {
		b, _ := os.ReadFile(mark)
		return strings.Count(string(b), marker)
	}
	// ticketOf waits for the job to wait on its ticket and returns it.
	ticketOf := func(j jobResp) schema.Ticket {
		var tk schema.Ticket
		eventually(t, 30*time.Second, "the job waiting for approval", func() bool {
			if e.job(j.ID).Status != schema.JobAwaitingApproval {
				return false
			}
			var l struct{ Items []schema.Ticket }
			e.do(http.MethodGet, "/api/v1/approvals?mine=to_decide", "approver", nil).json(t, &l)
			for _, x := range l.Items {
				if strings.Contains(x.Title, p) {
					tk = x
					return true
				}
			}
			return false
		})
		return tk
	}

	r, j := job()
	if r.Status != 201 {
		t.Fatalf("gated job: %d %s", r.Status, r.Body)
	}
	tk := ticketOf(j)
	if full := e.do(http.MethodGet, fmt.Sprintf("/api/v1/approvals/%d", tk.ID), "viewer", nil); !strings.Contains(string(full.Body), marker) {
		t.Fatalf("the ticket does not show what would run: %s", full.Body)
	}
	if ranLines() != 0 {
		t.Fatal("the gated job ran before its approval")
	}
	if page := e.do(http.MethodGet, fmt.Sprintf("/jobs/%d", j.ID), "viewer", nil); !strings.Contains(string(page.Body), fmt.Sprintf(`href="/approvals/%d"`, tk.ID)) {
		t.Fatalf("the job page does not link its ticket: %d %.500s", page.Status, page.Body)
	}
	if r := e.do(http.MethodPost, fmt.Sprintf("/api/v1/approvals/%d/decision", tk.ID), "approver", map[string]any{"decision": "approve"}); r.Status != 200 {
		t.Fatalf("approve: %d %s", r.Status, r.Body)
	}
	if done := e.waitJob(j.ID, schema.JobSucceeded, schema.JobFailed, schema.JobRejected); done.Status != schema.JobSucceeded || ranLines() != 2 {
		t.Fatalf("approved job: %+v, %d hosts ran", done, ranLines())
	}

	_, j2 := job()
	tk2 := ticketOf(j2)
	if r := e.do(http.MethodPost, fmt.Sprintf("/api/v1/approvals/%d/decision", tk2.ID), "approver", map[string]any{"decision": "reject", "comment": "not during peak"}); r.Status != 200 {
		t.Fatalf("reject: %d %s", r.Status, r.Body)
	}
	done := e.waitJob(j2.ID, schema.JobSucceeded, schema.JobFailed, schema.JobRejected)
	if done.Status != schema.JobRejected || !strings.Contains(done.Summary, "not during peak") || ranLines() != 2 {
		t.Fatalf("rejected job: %+v, %d host runs in all", done, ranLines())
	}
}

// TestDelegationAndTargetGate: a policy matching env=prod targets gates a
// job on such a host (and not one elsewhere); the approver, away, has
// delegated to a colleague, whose vote through the API counts for them.
func TestDelegationAndTargetGate(t *testing.T) {
	e := newEnv(t)
	p := fmt.Sprintf("deleg%d", time.Now().UnixNano())
	approver := e.users[schema.RoleApprover]
	stand := e.createUser(schema.RoleOperator, "stand-in-password-1")
	e.tokens["stand-in"] = e.createToken(stand, nil)
	if r := e.do(http.MethodPost, "/api/v1/approval-policies", "admin", map[string]any{"name": p, "spec": map[string]any{
		"match":  map[string]any{"targets": "env=prod-" + p},
		"levels": []map[string]any{{"users": []string{approver.Username}, "rule": "any"}}}}); r.Status != 201 {
		t.Fatalf("policy: %d %s", r.Status, r.Body)
	}
	e.mkCI("host", p+"-prod", map[string]any{"address": "prod-" + p}, map[string]string{"env": "prod-" + p})
	e.mkCI("host", p+"-dev", map[string]any{"address": "dev-" + p}, map[string]string{"env": "dev-" + p})
	sid := e.script(p, `echo "$OPSFLOW_HOST"`, nil)
	start := func(selector string) jobResp {
		r := e.do(http.MethodPost, "/api/v1/jobs", "admin", map[string]any{"script_id": sid,
			"targets": map[string]any{"selector": selector, "transport": "local"}})
		var j jobResp
		r.json(t, &j)
		if r.Status != 201 {
			t.Fatalf("job on %s: %d %s", selector, r.Status, r.Body)
		}
		return j
	}
	if done := e.waitJob(start("env=dev-"+p).ID, schema.JobSucceeded, schema.JobFailed, schema.JobRejected); done.Status != schema.JobSucceeded {
		t.Fatalf("ungated job: %+v", done)
	}
	gated := start("env=prod-" + p)

	// The approver delegates for a day; the stand-in decides.
	if r := e.do(http.MethodPost, "/api/v1/delegations", "approver", map[string]any{"to": stand.Username, "ends_at": time.Now().Add(24 * time.Hour)}); r.Status != 201 {
		t.Fatalf("delegate: %d %s", r.Status, r.Body)
	}
	if r := e.do(http.MethodPost, "/api/v1/delegations", "approver", map[string]any{"to": approver.Username, "ends_at": time.Now().Add(time.Hour)}); r.Status != 422 {
		t.Fatalf("self-delegation: %d %s", r.Status, r.Body)
	}
	var tk schema.Ticket
	eventually(t, 30*time.Second, "the stand-in's inbox to show the gated job's ticket", func() bool {
		if e.job(gated.ID).Status != schema.JobAwaitingApproval {
			return false
		}
		var l struct{ Items []schema.Ticket }
		e.do(http.MethodGet, "/api/v1/approvals?mine=to_decide", "stand-in", nil).json(t, &l)
		for _, x := range l.Items {
			if x.GatedWorkflowID != "" && strings.Contains(x.Title, p) {
				tk = x
				return true
			}
		}
		return false
	})
	r := e.do(http.MethodPost, fmt.Sprintf("/api/v1/approvals/%d/decision", tk.ID), "stand-in", map[string]any{"decision": "approve", "comment": "covering"})
	if r.Status != 200 {
		t.Fatalf("stand-in's vote: %d %s", r.Status, r.Body)
	}
	if done := e.waitJob(gated.ID, schema.JobSucceeded, schema.JobFailed, schema.JobRejected); done.Status != schema.JobSucceeded {
		t.Fatalf("gated job: %+v", done)
	}
	var got ticketResp
	e.do(http.MethodGet, fmt.Sprintf("/api/v1/approvals/%d", tk.ID), "viewer", nil).json(t, &got)
	if d := got.Decisions[0]; d.Voter != stand.Username || d.OnBehalfOf != approver.Username {
		t.Fatalf("delegated decision: %+v", d)
	}
}

// TestDecisionLinkSpentOnlyByACountedVote: someone who is not an approver
// confirming a forwarded decision link counts nothing and leaves the link
// for the approver; the approver's confirmation spends it.
func TestDecisionLinkSpentOnlyByACountedVote(t *testing.T) {
	e := newEnv(t)
	p := fmt.Sprintf("link%d", time.Now().UnixNano())
	approver := e.users[schema.RoleApprover].Username
	if r := e.do(http.MethodPost, "/api/v1/approval-policies", "admin", map[string]any{"name": p, "spec": map[string]any{
		"levels": []map[string]any{{"users": []string{approver}, "rule": "any"}}}}); r.Status != 201 {
		t.Fatalf("policy: %d %s", r.Status, r.Body)
	}
	r := e.do(http.MethodPost, "/api/v1/approvals", "operator", map[string]any{"title": p, "policy": p})
	var tk ticketResp
	r.json(t, &tk)
	token := "tok-" + p
	sum := sha256.Sum256([]byte(token))
	hash := hex.EncodeToString(sum[:])
	if err := e.store.CreateApprovalLink(context.Background(), &schema.ApprovalLink{TokenHash: hash, TicketID: tk.ID, Decision: schema.DecisionApprove, ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	confirm := func(role string) resp { return e.do(http.MethodPost, "/approvals/links/"+token, role, nil) }
	if r := confirm("viewer"); r.Status != http.StatusSeeOther || !strings.Contains(r.Header.Get("Location"), "Not+counted") {
		t.Fatalf("a non-approver's confirmation: %d %v", r.Status, r.Header)
	}
	if l, _ := e.store.ApprovalLinkByHash(context.Background(), hash); l.UsedAt != nil {
		t.Fatal("the link was spent by a vote that did not count")
	}
	if r := confirm("approver"); r.Status != http.StatusSeeOther || strings.Contains(r.Header.Get("Location"), "Not+counted") {
		t.Fatalf("the approver's confirmation: %d %v", r.Status, r.Header)
	}
	if r := confirm("approver"); r.Status != http.StatusGone {
		t.Fatalf("a spent link: %d %s", r.Status, r.Body)
	}
}

// TestTicketNobodyCouldDecide: a policy whose level has no approver but
// the requester opens no ticket.
func TestTicketNobodyCouldDecide(t *testing.T) {
	e := newEnv(t)
	p := fmt.Sprintf("alone%d", time.Now().UnixNano())
	op := e.users[schema.RoleOperator].Username
	if r := e.do(http.MethodPost, "/api/v1/approval-policies", "admin", map[string]any{"name": p, "spec": map[string]any{
		"levels": []map[string]any{{"users": []string{op, "nobody-" + p}, "rule": "any"}}}}); r.Status != 201 {
		t.Fatalf("policy: %d %s", r.Status, r.Body)
	}
	r := e.do(http.MethodPost, "/api/v1/approvals", "operator", map[string]any{"title": p, "policy": p})
	if r.Status != 422 || !strings.Contains(r.apiError(t).Fields["policy"], "no approver other than you") {
		t.Fatalf("lonely ticket: %d %s", r.Status, r.Body)
	}
	var l struct{ Items []schema.Ticket }
	e.do(http.MethodGet, "/api/v1/approvals?mine=requested", "operator", nil).json(t, &l)
	for _, x := range l.Items {
		if x.Title == p {
			t.Fatalf("a refused ticket was left behind: %+v", x)
		}
	}
}

// TestPolicyShapesAndGatedRun: a policy's spec may come nested or at the
// top level (not both); a change request may name the run it is about.
func TestPolicyShapesAndGatedRun(t *testing.T) {
	e := newEnv(t)
	p := fmt.Sprintf("shape%d", time.Now().UnixNano())
	levels := []map[string]any{{"roles": []string{"approver"}, "rule": "any"}}
	if r := e.do(http.MethodPost, "/api/v1/approval-policies", "admin", map[string]any{"name": p, "levels": levels, "channels": []string{"web"}}); r.Status != 201 {
		t.Fatalf("top-level spec: %d %s", r.Status, r.Body)
	}
	var got schema.ApprovalPolicy
	e.do(http.MethodGet, "/api/v1/approval-policies/"+p, "viewer", nil).json(t, &got)
	if len(got.Spec.Levels) != 1 || got.Spec.Levels[0].Rule != schema.RuleAny {
		t.Fatalf("stored: %+v", got)
	}
	if r := e.do(http.MethodPut, "/api/v1/approval-policies/"+p, "admin", map[string]any{"levels": levels, "spec": map[string]any{"levels": levels}}); r.Status != 422 || r.apiError(t).Fields["spec"] == "" {
		t.Fatalf("both shapes: %d %s", r.Status, r.Body)
	}
	if r := e.do(http.MethodDelete, "/api/v1/approval-policies/"+p+"-none", "admin", nil); r.Status != 404 {
		t.Fatalf("delete a missing policy: %d", r.Status)
	}

	run := e.do(http.MethodPost, "/api/v1/demo/runs", "operator", map[string]any{"steps": 1, "target": "web-1"})
	var rv runView
	run.json(t, &rv)
	if r := e.do(http.MethodPost, "/api/v1/approvals", "operator", map[string]any{"title": p, "policy": p, "gates": "demo:nope"}); r.Status != 422 || r.apiError(t).Fields["gates"] == "" {
		t.Fatalf("unknown run: %d %s", r.Status, r.Body)
	}
	r := e.do(http.MethodPost, "/api/v1/approvals", "operator", map[string]any{"title": p, "policy": p, "gates": rv.WorkflowID})
	var tk ticketResp
	r.json(t, &tk)
	if r.Status != 201 || tk.GatedWorkflowID != rv.WorkflowID {
		t.Fatalf("ticket about a run: %d %s", r.Status, r.Body)
	}
	if r := e.do(http.MethodDelete, "/api/v1/approval-policies/"+p, "admin", nil); r.Status != 204 {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	// The open ticket keeps the policy it opened with.
	var after ticketResp
	e.do(http.MethodGet, fmt.Sprintf("/api/v1/approvals/%d", tk.ID), "viewer", nil).json(t, &after)
	if len(after.Policy.Levels) != 1 {
		t.Fatalf("the ticket lost its policy: %+v", after.Policy)
	}
}

// TestDemotedApproverNoLongerCounts: an approver demoted to viewer after
// the ticket's level opened is refused whatever credential they still
// hold (a new login, a chat identity), and a delegation from them lapses.
func TestDemotedApproverNoLongerCounts(t *testing.T) {
	e := newEnv(t)
	p := fmt.Sprintf("demoted%d", time.Now().UnixNano())
	dora := e.createUser(schema.RoleApprover, "dora-password-123")
	fred := e.createUser(schema.RoleApprover, "fred-password-123")
	greta := e.createUser(schema.RoleOperator, "greta-password-123")
	e.tokens["fred"] = e.createToken(fred, nil)
	e.tokens["greta"] = e.createToken(greta, nil)
	if r := e.do(http.MethodPost, "/api/v1/delegations", "fred", map[string]any{"to": greta.Username, "ends_at": time.Now().Add(time.Hour)}); r.Status != 201 {
		t.Fatalf("delegation: %d %s", r.Status, r.Body)
	}
	if r := e.do(http.MethodPost, "/api/v1/approval-policies", "admin", map[string]any{"name": p, "spec": map[string]any{
		"levels": []map[string]any{{"users": []string{dora.Username, fred.Username}, "rule": "any"}}}}); r.Status != 201 {
		t.Fatalf("policy: %d %s", r.Status, r.Body)
	}
	var tk ticketResp
	if r := e.do(http.MethodPost, "/api/v1/approvals", "operator", map[string]any{"title": "demoted " + p, "policy": p}); r.Status != 201 {
		t.Fatalf("open: %d %s", r.Status, r.Body)
	} else {
		r.json(t, &tk)
	}
	path := fmt.Sprintf("/api/v1/approvals/%d", tk.ID)
	for _, u := range []*schema.User{dora, fred} {
		if r := e.do(http.MethodPatch, fmt.Sprintf("/api/v1/users/%d", u.ID), "admin", map[string]any{"role": schema.RoleViewer}); r.Status != 200 {
			t.Fatalf("demote %s: %d %s", u.Username, r.Status, r.Body)
		}
	}
	// A credential made after the demotion, as a new login or a chat
	// channel would present.
	e.tokens["dora"] = e.createToken(dora, nil)
	vote := func(who string) resp {
		t.Helper()
		var r resp
		eventually(t, 30*time.Second, "the ticket's level to open", func() bool {
			r = e.do(http.MethodPost, path+"/decision", who, map[string]any{"decision": "approve"})
			return r.Status != 409 || !strings.Contains(string(r.Body), "opening")
		})
		return r
	}
	if r := vote("dora"); r.Status != 403 || !strings.Contains(r.apiError(t).Message, "no longer decide") {
		t.Fatalf("demoted dora's vote: %d %s", r.Status, r.Body)
	}
	if r := vote("greta"); r.Status != 403 || !strings.Contains(r.apiError(t).Message, "not an approver") {
		t.Fatalf("greta's vote for demoted fred: %d %s", r.Status, r.Body)
	}
	var got ticketResp
	e.do(http.MethodGet, path, "admin", nil).json(t, &got)
	if got.Status != schema.TicketPending || len(got.Decisions) != 0 {
		t.Fatalf("a demoted approver's vote counted: %+v", got.Ticket)
	}
}
