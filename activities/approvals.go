package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/opsflow/opsflow/internal/secret"
	"github.com/opsflow/opsflow/schema"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
)

// Notifier tells approvers about a ticket on one channel (Slack,
// DingTalk, WeCom, Feishu, email). Each channel is a file of its own.
type Notifier interface {
	// Channel is the name policies use: slack, dingtalk, ...
	Channel() string
	Notify(ctx context.Context, t *schema.Ticket, users []string, escalation bool) error
}

// Announcer is a Notifier that also sends notices: a runbook's notify
// step, a message with nothing to decide (no buttons, no decision
// links), linking path on opsflow (a run's page).
type Announcer interface {
	Announce(ctx context.Context, title, message, path string, users []string) error
}

// Approvals keeps approval tickets' read model and notifies approvers.
type Approvals struct {
	Store     *schema.Store
	Notifiers []Notifier
	// Secrets opens a gated job's parameters, whose non-secret values the
	// ticket shows its approvers.
	Secrets *secret.Keyring
}

// RecordTicketInput is a ticket's new state and the decisions since the
// last record.
type RecordTicketInput struct {
	TicketID  int64
	Status    string
	Level     int
	Approvers []string
	Reason    string
	Decisions []schema.ApprovalDecisionRecord
}

// RecordTicket writes a ticket's state and new decisions; repeating it
// writes nothing twice.
func (a *Approvals) RecordTicket(ctx context.Context, in RecordTicketInput) (struct{}, error) {
	return struct{}{}, a.Store.RecordTicket(ctx, in.TicketID, in.Status, in.Level, in.Reason, in.Approvers, in.Decisions)
}

// ResolveApprovers expands users and roles into enabled users.
func (a *Approvals) ResolveApprovers(ctx context.Context, set schema.ApproverSet) ([]string, error) {
	return a.Store.ResolveApprovers(ctx, set)
}

// NotifyApproversInput names who to tell about a ticket, and how.
type NotifyApproversInput struct {
	TicketID   int64
	Level      int
	Users      []string
	Channels   []string
	Escalation bool
}

// NotifyApprovers sends the ticket to users on each of the policy's
// channels that this worker has a notifier for. The web inbox needs no
// message. A channel that fails is retried by Temporal; one without a
// notifier configured is logged and skipped.
func (a *Approvals) NotifyApprovers(ctx context.Context, in NotifyApproversInput) (struct{}, error) {
	t, err := a.Store.Ticket(ctx, in.TicketID)
	if err != nil {
		return struct{}{}, err
	}
	for _, ch := range in.Channels {
		if ch == "web" {
			continue
		}
		var n Notifier
		for _, x := range a.Notifiers {
			if x.Channel() == ch {
				n = x
			}
		}
		if n == nil {
			activity.GetLogger(ctx).Warn("approval channel not configured on this worker; skipped", "channel", ch, "ticket", in.TicketID)
			continue
		}
		if err := n.Notify(ctx, t, in.Users, in.Escalation); err != nil {
			return struct{}{}, err
		}
	}
	return struct{}{}, nil
}

// OpenJobTicketInput names a gated job.
type OpenJobTicketInput struct {
	JobID int64
	// WorkflowID is the ticket's Approval workflow (workflows.JobTicketWorkflowID).
	WorkflowID string
}

// OpenJobTicketResult is the ticket a gated job waits on, and the input
// of its Approval workflow.
type OpenJobTicketResult struct {
	WorkflowID string
	Input      ApprovalTicket
}

// ApprovalTicket mirrors workflows.ApprovalInput (activities cannot
// import workflows).
type ApprovalTicket struct {
	TicketID  int64
	Requester string
	Policy    schema.ApprovalPolicySpec
	Approvers [][]string
}

// OpenJobTicket opens (once, also when retried) the approval ticket of a
// gated job: its policy's snapshot, every level's approvers, and a title
// and description saying what would run where.
func (a *Approvals) OpenJobTicket(ctx context.Context, in OpenJobTicketInput) (OpenJobTicketResult, error) {
	job, err := a.Store.Job(ctx, in.JobID)
	if err != nil {
		return OpenJobTicketResult{}, err
	}
	wid := in.WorkflowID
	if wid == "" { // scheduled by a workflow from before the field
		wid = "approval:" + job.WorkflowID
	}
	t, err := a.Store.TicketByWorkflowID(ctx, wid)
	if errors.Is(err, schema.ErrNotFound) {
		p, err := a.Store.ApprovalPolicyByName(ctx, job.Policy.Approval)
		if errors.Is(err, schema.ErrNotFound) {
			return OpenJobTicketResult{}, temporal.NewNonRetryableApplicationError("approval policy "+job.Policy.Approval+" is gone", ErrTypeInvalidInput, nil)
		} else if err != nil {
			return OpenJobTicketResult{}, err
		}
		sc, err := a.Store.Script(ctx, job.ScriptID)
		if err != nil {
			return OpenJobTicketResult{}, err
		}
		ver, err := a.Store.ScriptVersion(ctx, job.ScriptID, job.ScriptVersion)
		if err != nil {
			return OpenJobTicketResult{}, err
		}
		targets := job.Targets.Selector
		if targets == "" {
			targets = strings.Join(job.Targets.Hosts[:min(5, len(job.Targets.Hosts))], ", ")
			if len(job.Targets.Hosts) > 5 {
				targets += fmt.Sprintf(" and %d more", len(job.Targets.Hosts)-5)
			}
		}
		code := fence(ver.Content)
		desc := fmt.Sprintf("Batch job %d runs **%s** version %d on %d hosts (%s), concurrency %s.\n\n%s%s\n%s\n%s",
			job.ID, sc.Name, ver.Version, job.Total, targets, job.Policy.Concurrency, code, ver.Interpreter, ver.Content, code)
		desc += a.paramsText(job, ver)
		risk := "medium"
		if len(ver.RiskMatches) > 0 {
			risk = "high"
			desc += "\n\nHigh-risk rules matched: " + strings.Join(ver.RiskMatches, "; ")
		}
		t = &schema.Ticket{WorkflowID: wid, Title: fmt.Sprintf("Run %s v%d on %d hosts", sc.Name, ver.Version, job.Total), Description: desc,
			Requester: job.CreatedBy, GatedWorkflowID: job.WorkflowID, Risk: risk, PolicyName: p.Name, Policy: p.Spec}
		if err := a.Store.CreateTicket(ctx, t); err != nil && !errors.Is(err, schema.ErrConflict) {
			return OpenJobTicketResult{}, err
		}
		if t, err = a.Store.TicketByWorkflowID(ctx, wid); err != nil {
			return OpenJobTicketResult{}, err
		}
	} else if err != nil {
		return OpenJobTicketResult{}, err
	}
	res := OpenJobTicketResult{WorkflowID: wid, Input: ApprovalTicket{TicketID: t.ID, Requester: t.Requester, Policy: t.Policy}}
	if res.Input.Approvers, err = a.Store.ResolveLevels(ctx, t.Policy, t.Requester); errors.Is(err, schema.ErrNoApprover) {
		return OpenJobTicketResult{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("approval policy %s, %v (%s)", t.PolicyName, err, t.Requester), ErrTypeInvalidInput, nil)
	} else if err != nil {
		return OpenJobTicketResult{}, err
	}
	if err := a.Store.SetJobStatus(ctx, job.ID, schema.JobAwaitingApproval, "waiting for approval ticket "+strconv.FormatInt(t.ID, 10)); err != nil {
		return OpenJobTicketResult{}, err
	}
	return res, nil
}

// paramsText lists the job's parameter values for its approvers, in the
// version's order: a secret-typed one reads "(secret)", never its value.
func (a *Approvals) paramsText(job *schema.Job, ver *schema.ScriptVersion) string {
	if len(ver.Parameters) == 0 {
		return ""
	}
	values := map[string]string{}
	if job.Params != "" {
		if a.Secrets == nil {
			return "\n\nParameters: (could not be read on this worker)"
		}
		raw, err := a.Secrets.Open(job.Params, job.ParamsContext())
		if err == nil {
			err = json.Unmarshal(raw, &values)
		}
		if err != nil {
			return "\n\nParameters: (could not be read on this worker)"
		}
	}
	var lines []string
	for _, d := range ver.Parameters {
		v, ok := values[d.Name]
		switch {
		case !ok:
			continue
		case d.Type == schema.ParamSecret:
			v = "(secret)"
		default:
			v = strconv.Quote(v)
		}
		lines = append(lines, d.Name+" = "+v)
	}
	if len(lines) == 0 {
		return ""
	}
	body := strings.Join(lines, "\n")
	f := fence(body)
	return "\n\nParameters:\n\n" + f + "\n" + body + "\n" + f
}

// fence is a Markdown code fence longer than any run of backticks in s,
// so s cannot close it early.
func fence(s string) string {
	longest, run := 0, 0
	for _, r := range s {
		if r == '`' {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	return strings.Repeat("`", max(3, longest+1))
}
