package activities

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

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

// Approvals keeps approval tickets' read model and notifies approvers.
type Approvals struct {
	Store     *schema.Store
	Notifiers []Notifier
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
	wid := "approval:" + job.WorkflowID
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
		desc := fmt.Sprintf("Batch job %d runs **%s** version %d on %d hosts (%s), concurrency %s.\n\n```%s\n%s\n```",
			job.ID, sc.Name, ver.Version, job.Total, targets, job.Policy.Concurrency, ver.Interpreter, ver.Content)
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
