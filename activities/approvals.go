package activities

import (
	"context"

	"github.com/opsflow/opsflow/schema"
	"go.temporal.io/sdk/activity"
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
