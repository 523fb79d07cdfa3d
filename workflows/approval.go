package workflows

import (
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/opsflow/opsflow/activities"
	"github.com/opsflow/opsflow/schema"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// ApprovalInput opens a ticket. The policy is a snapshot taken when the
// ticket opened: editing the policy later changes no open ticket.
type ApprovalInput struct {
	TicketID  int64
	Requester string
	Policy    schema.ApprovalPolicySpec
	// Approvers of each level, resolved from the policy's users and roles
	// when the ticket opened, so no level waits for a lookup while votes
	// arrive. Left out, each level resolves its own when it opens.
	Approvers [][]string
}

// ApprovalDecision is one vote, sent as the UpdateDecide update. The
// caller (the API, a chat hook) has authenticated Voter and says for whom
// else Voter may vote now (OnBehalfOf: users who delegated to Voter).
type ApprovalDecision struct {
	Voter      string
	OnBehalfOf []string
	Decision   string // schema.DecisionApprove or schema.DecisionReject
	Comment    string
	Channel    string // web, api, slack, dingtalk
}

// ApprovalOutcome answers a decision or a withdrawal, and the ticket
// query.
type ApprovalOutcome struct {
	Status    string `json:"status"` // a schema.Ticket* status
	Level     int    `json:"level"`  // 0-based index of the current level
	Levels    int    `json:"levels"`
	Approvals int    `json:"approvals"` // at the current level
	Needed    int    `json:"needed"`
	// Message says what happened, for whoever clicked: "approved, 2 of
	// 3", "level 1 of 2 approved", "ticket rejected".
	Message string `json:"message"`
}

// Approval is a ticket: its levels are decided in order, each by its rule
// (any one, all, or a quorum of N), with a timeout per level that
// escalates (then waits once more), rejects or approves; without a timeout
// action an unanswered level expires. It returns nil when approved and a
// non-retryable error with the reason otherwise (rejected, expired,
// withdrawn), so a gated workflow running it as a child stops with that
// reason. Decisions are updates whose validator refuses, before anything
// reaches history, a vote that would not count.
func Approval(ctx workflow.Context, in ApprovalInput) (ApprovalOutcome, error) {
	var approvals *activities.Approvals
	dbCtx := workflow.WithLocalActivityOptions(ctx, dbLocalActivity)
	notifyCtx := workflow.WithActivityOptions(ctx, notifyActivity)
	t := &ticket{requester: in.Requester, levels: in.Policy.Levels, status: schema.TicketPending}
	preset := len(in.Approvers) == len(t.levels) && len(t.levels) > 0
	if preset {
		// Votes that arrived with the start are handled as soon as the
		// handlers are set: the first level must be open by then.
		t.startLevel(withoutUser(in.Approvers[0], in.Requester))
	}
	if err := workflow.SetQueryHandler(ctx, QueryTicket, func() (ApprovalOutcome, error) { return t.outcome(""), nil }); err != nil {
		return ApprovalOutcome{}, err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateDecide, func(uctx workflow.Context, d ApprovalDecision) (ApprovalOutcome, error) {
		return t.decide(d, workflow.Now(uctx)), nil
	}, workflow.UpdateHandlerOptions{Validator: t.validate}); err != nil {
		return ApprovalOutcome{}, err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateWithdraw, func(uctx workflow.Context, by string) (ApprovalOutcome, error) {
		t.status, t.reason = schema.TicketWithdrawn, "withdrawn by "+by
		t.note(schema.ApprovalDecisionRecord{Voter: by, Decision: schema.DecisionWithdraw, Channel: "web", At: workflow.Now(uctx)})
		return t.outcome("withdrawn"), nil
	}, workflow.UpdateHandlerOptions{Validator: func(by string) error {
		if t.status != schema.TicketPending {
			return errors.New("already decided: " + t.status)
		}
		if by != in.Requester {
			return errors.New("only the requester can withdraw a ticket")
		}
		return nil
	}}); err != nil {
		return ApprovalOutcome{}, err
	}

	// flush writes the ticket's state and new decisions to the read model,
	// when they changed since the last write. It is a local activity: a
	// decision's effect is visible without a round trip through the task
	// queue.
	//
	// A decision is counted the moment its update returns; its record
	// must not be lost when a write fails (the database is down longer
	// than the local activity's retries): it stays queued for the next
	// write, and the final write is retried until it lands.
	var written string
	var unwritten []schema.ApprovalDecisionRecord // from a failed write
	flush := func() bool {
		state := fmt.Sprintf("%s|%d|%v|%s", t.status, t.level, t.approvers, t.reason)
		if state == written && len(t.log) == 0 && len(unwritten) == 0 {
			return true
		}
		pending := append(unwritten, t.log...)
		rec := activities.RecordTicketInput{TicketID: in.TicketID, Status: t.status, Level: t.level, Approvers: t.approvers,
			Reason: t.reason, Decisions: pending}
		t.log, unwritten = nil, nil
		if err := workflow.ExecuteLocalActivity(dbCtx, approvals.RecordTicket, rec).Get(dbCtx, nil); err != nil {
			// Decisions are inserted by (ticket, seq) and a repeat is
			// ignored, so writing them again is safe. They wait for the
			// next write rather than waking the loop.
			unwritten = pending
			return false
		}
		written = state
		return true
	}
	// Cancelled (the gated job was aborted), the ticket is withdrawn.
	canceled := func(err error) (ApprovalOutcome, error) {
		if temporal.IsCanceledError(err) {
			dctx, cancel := workflow.NewDisconnectedContext(ctx)
			defer cancel()
			t.status, t.reason = schema.TicketWithdrawn, "the gated operation was cancelled"
			dbCtx = workflow.WithLocalActivityOptions(dctx, dbLocalActivity)
			flush()
		}
		return t.outcome(""), err
	}
	notify := func(users []string, escalation bool) {
		if len(users) == 0 {
			return
		}
		_ = workflow.ExecuteActivity(notifyCtx, approvals.NotifyApprovers, activities.NotifyApproversInput{
			TicketID: in.TicketID, Level: t.level, Users: users, Channels: in.Policy.Channels, Escalation: escalation}).Get(ctx, nil)
	}
	resolve := func(set schema.ApproverSet) []string {
		var users []string
		_ = workflow.ExecuteLocalActivity(dbCtx, approvals.ResolveApprovers, set).Get(ctx, &users)
		return withoutUser(users, in.Requester) // never one's own approver
	}

	for t.level = 0; t.level < len(t.levels) && t.status == schema.TicketPending; t.level++ {
		lv := t.levels[t.level]
		if preset {
			if t.level > 0 {
				t.startLevel(withoutUser(in.Approvers[t.level], in.Requester))
			}
		} else {
			t.votes = nil // votes wait while the level opens
			t.startLevel(resolve(lv.ApproverSet))
		}
		flush()
		notify(t.approvers, false)
		timeout, _ := time.ParseDuration(lv.Timeout)
		var timer workflow.Future
		cancelTimer := func() {}
		armTimer := func() {
			if timeout > 0 {
				var tctx workflow.Context
				tctx, cancelTimer = workflow.WithCancel(ctx)
				timer = workflow.NewTimer(tctx, timeout)
			}
		}
		armTimer()
		for t.status == schema.TicketPending && !t.levelApproved() {
			if err := workflow.Await(ctx, func() bool {
				return len(t.log) > 0 || t.status != schema.TicketPending || t.levelApproved() || (timer != nil && timer.IsReady())
			}); err != nil {
				cancelTimer()
				return canceled(err)
			}
			// On a real server a timer whose context is cancelled is
			// ready at once, and Await checks its condition before the
			// context: a cancelled ticket must not be taken for one
			// whose level timed out.
			if ctx.Err() != nil && workflow.GetVersion(ctx, "cancel-is-not-timeout", workflow.DefaultVersion, 1) == 1 {
				cancelTimer()
				return canceled(temporal.NewCanceledError())
			}
			if timer != nil && timer.IsReady() && t.status == schema.TicketPending && !t.levelApproved() {
				timer = nil
				now := workflow.Now(ctx)
				switch {
				case lv.OnTimeout == schema.OnTimeoutEscalate && !t.escalated:
					t.escalated = true
					var fresh []string
					for _, u := range resolve(lv.EscalateTo) {
						if !slices.Contains(t.approvers, u) {
							fresh = append(fresh, u)
						}
					}
					t.approvers = append(t.approvers, fresh...)
					t.note(schema.ApprovalDecisionRecord{Voter: "opsflow", Decision: schema.DecisionEscalate, Channel: "timer",
						Comment: fmt.Sprintf("no decision within %s: escalated to %v", lv.Timeout, fresh), At: now})
					flush()
					notify(fresh, true)
					armTimer()
				case lv.OnTimeout == schema.OnTimeoutApprove:
					t.autoApproved = true
					t.note(schema.ApprovalDecisionRecord{Voter: "opsflow", Decision: schema.DecisionApprove, Channel: "timer",
						Comment: "approved automatically: no decision within " + lv.Timeout, At: now})
				case lv.OnTimeout == schema.OnTimeoutReject:
					t.status, t.reason = schema.TicketRejected, "rejected automatically: no decision within "+lv.Timeout
				default:
					t.status, t.reason = schema.TicketExpired, "no decision within "+lv.Timeout
				}
			}
			flush()
		}
		cancelTimer()
	}
	t.level = min(t.level, len(t.levels)-1)
	if t.status == schema.TicketPending { // the last level passed by its timeout
		t.status = schema.TicketApproved
	}
	// The final state (and any decision not yet written: one may land
	// while a level's record was being written, or an earlier write may
	// have failed).
	if !flush() && workflow.GetVersion(ctx, "durable-decision-record", workflow.DefaultVersion, 1) == 1 {
		for wait := time.Minute; !flush(); wait = min(2*wait, 30*time.Minute) {
			workflow.GetLogger(ctx).Warn("approval: the ticket's record could not be written; retrying", "ticket", in.TicketID, "in", wait)
			if err := workflow.Sleep(ctx, wait); err != nil {
				return canceled(err)
			}
		}
	}
	// An update being handled finishes before the run closes.
	_ = workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) })
	out := t.outcome("")
	if t.status != schema.TicketApproved {
		return out, temporal.NewNonRetryableApplicationError(fmt.Sprintf("approval %s: %s", t.status, t.reason), "Approval"+t.status, nil)
	}
	return out, nil
}

// ticket is an approval's state; its methods are the rules, kept free of
// Temporal so they read (and test) as plain code.
type ticket struct {
	requester    string
	levels       []schema.ApprovalLevel
	status       string
	reason       string
	level        int
	approvers    []string          // who may vote at this level
	votes        map[string]string // approver -> decision, this level
	escalated    bool
	autoApproved bool
	log          []schema.ApprovalDecisionRecord // not yet recorded
	seq          int
}

// note adds an entry to the decision history.
func (t *ticket) note(r schema.ApprovalDecisionRecord) {
	t.seq++
	r.Seq, r.Level = t.seq, t.level
	t.log = append(t.log, r)
}

func (t *ticket) startLevel(approvers []string) {
	t.approvers, t.votes, t.escalated, t.autoApproved = approvers, map[string]string{}, false, false
}

func (t *ticket) rule() (string, int) {
	if len(t.levels) == 0 {
		return schema.RuleAny, 0
	}
	lv := t.levels[min(t.level, len(t.levels)-1)]
	return lv.Rule, lv.Quorum
}

// needed is how many approvals pass the level (at least one).
func (t *ticket) needed() int {
	switch rule, q := t.rule(); rule {
	case schema.RuleAll:
		return max(1, len(t.approvers))
	case schema.RuleQuorum:
		return max(1, q)
	}
	return 1
}

func (t *ticket) count(decision string) int {
	n := 0
	for _, a := range t.approvers { // every vote is an approver's
		if t.votes[a] == decision {
			n++
		}
	}
	return n
}

func (t *ticket) levelApproved() bool {
	return t.autoApproved || (t.votes != nil && t.count(schema.DecisionApprove) >= t.needed())
}

// levelRejected: under "any" the first vote decides; under "all" one
// reject does; under a quorum, once too few approvers are left to reach it.
func (t *ticket) levelRejected() bool {
	rejects := t.count(schema.DecisionReject)
	switch rule, _ := t.rule(); rule {
	case schema.RuleQuorum:
		return rejects > len(t.approvers)-t.needed()
	default:
		return rejects > 0
	}
}

// voterFor returns the approver a decision counts for: the voter, or one
// who delegated to them (the first who has not voted).
func (t *ticket) voterFor(d ApprovalDecision) (string, error) {
	if d.Voter == t.requester {
		return "", errors.New("you requested this ticket: you cannot decide it")
	}
	candidates := append([]string{d.Voter}, d.OnBehalfOf...)
	eligible := false
	for _, c := range candidates {
		if c == t.requester || !slices.Contains(t.approvers, c) {
			continue
		}
		eligible = true
		if _, voted := t.votes[c]; !voted {
			return c, nil
		}
	}
	if eligible {
		return "", fmt.Errorf("you already voted at level %d", t.level+1)
	}
	return "", fmt.Errorf("you are not an approver for level %d", t.level+1)
}

// MaxDecisionComment bounds a vote's comment, in bytes.
const MaxDecisionComment = 4000

func (t *ticket) validate(d ApprovalDecision) error {
	if t.status != schema.TicketPending {
		return errors.New("already decided: " + t.status)
	}
	if d.Decision != schema.DecisionApprove && d.Decision != schema.DecisionReject {
		return errors.New("decision must be approve or reject")
	}
	// A comment the read model cannot store is refused before the vote
	// counts, never after.
	if reason := CheckComment(d.Comment); reason != "" {
		return errors.New("comment " + reason)
	}
	if t.votes == nil {
		return errors.New("the ticket is opening; try again in a moment")
	}
	_, err := t.voterFor(d)
	return err
}

func (t *ticket) decide(d ApprovalDecision, now time.Time) ApprovalOutcome {
	who, err := t.voterFor(d)
	if err != nil { // the validator ran first; state cannot have moved since
		return t.outcome(err.Error())
	}
	t.votes[who] = d.Decision
	rec := schema.ApprovalDecisionRecord{Voter: d.Voter, Decision: d.Decision, Channel: d.Channel, Comment: d.Comment, At: now}
	if who != d.Voter {
		rec.OnBehalfOf = who
	}
	t.note(rec)
	switch {
	case t.levelRejected():
		t.status = schema.TicketRejected
		t.reason = fmt.Sprintf("rejected by %s at level %d", d.Voter, t.level+1)
		if d.Comment != "" {
			t.reason += ": " + d.Comment
		}
		return t.outcome("rejected: the ticket is rejected")
	case t.levelApproved() && t.level == len(t.levels)-1:
		t.status = schema.TicketApproved
		return t.outcome("approved: the ticket is approved")
	case t.levelApproved():
		return t.outcome(fmt.Sprintf("approved: level %d of %d approved", t.level+1, len(t.levels)))
	case d.Decision == schema.DecisionApprove:
		return t.outcome(fmt.Sprintf("approved, %d of %d", t.count(schema.DecisionApprove), t.needed()))
	default:
		return t.outcome(fmt.Sprintf("rejected, %d of %d approvals still possible", len(t.approvers)-t.count(schema.DecisionReject), t.needed()))
	}
}

func (t *ticket) outcome(msg string) ApprovalOutcome {
	o := ApprovalOutcome{Status: t.status, Level: t.level, Levels: len(t.levels), Needed: t.needed(), Message: msg}
	if t.votes != nil {
		o.Approvals = t.count(schema.DecisionApprove)
	}
	return o
}

func withoutUser(users []string, user string) []string {
	return slices.DeleteFunc(slices.Clone(users), func(u string) bool { return u == user })
}

// CheckComment says why a decision comment cannot be stored, or "": too
// long, not UTF-8, or holding NUL or other control characters (tab and
// newline excepted).
func CheckComment(c string) string {
	if len(c) > MaxDecisionComment {
		return fmt.Sprintf("must be at most %d bytes", MaxDecisionComment)
	}
	if !utf8.ValidString(c) {
		return "must be valid UTF-8"
	}
	for _, r := range c {
		if r == 0 || (unicode.IsControl(r) && r != '\n' && r != '\t' && r != '\r') {
			return "must not contain NUL or control characters"
		}
	}
	return ""
}
