// Package notify sends approval tickets to chat platforms and email. Each
// channel is a file implementing activities.Notifier.
package notify

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/opsflow/opsflow/schema"
	"github.com/slack-go/slack"
)

// Slack action IDs on approval messages.
const (
	SlackActionApprove = "opsflow_approve"
	SlackActionReject  = "opsflow_reject"
	// SlackRejectModal is the callback ID of the modal asking why.
	SlackRejectModal = "opsflow_reject_reason"
	SlackReasonBlock = "reason"
	SlackReasonInput = "reason_input"
)

// Slack posts approval tickets with Approve and Reject buttons to a
// channel, mentioning the approvers it knows on Slack.
type Slack struct {
	Client    *slack.Client
	ChannelID string
	Store     *schema.Store
	// BaseURL is opsflow's external URL, for the ticket link.
	BaseURL string
}

// Channel implements activities.Notifier.
func (s *Slack) Channel() string { return "slack" }

// Notify implements activities.Notifier.
func (s *Slack) Notify(ctx context.Context, t *schema.Ticket, users []string, escalation bool) error {
	ids, err := s.Store.ChatIDs(ctx, "slack", users)
	if err != nil {
		return err
	}
	var who []string
	for _, u := range users {
		if id, ok := ids[u]; ok {
			who = append(who, "<@"+id+">")
		} else {
			who = append(who, u)
		}
	}
	note := "Waiting for " + strings.Join(who, ", ")
	if escalation {
		note = "Escalated: no decision in time. Now also waiting for " + strings.Join(who, ", ")
	}
	_, _, err = s.Client.PostMessageContext(ctx, s.ChannelID, slack.MsgOptionText(fallbackText(t), false),
		slack.MsgOptionBlocks(ApprovalBlocks(t, s.BaseURL, note, true)...))
	if err != nil {
		return fmt.Errorf("slack: post ticket %d: %w", t.ID, err)
	}
	return nil
}

func fallbackText(t *schema.Ticket) string {
	return fmt.Sprintf("Approval #%d: %s (requested by %s)", t.ID, EscapeMrkdwn(t.Title), t.Requester)
}

var mrkdwnEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// EscapeMrkdwn makes user text inert in a Slack mrkdwn field: &, < and >
// become entities, so "<!channel>", "<@U1>" and "<http://x|y>" show as
// typed instead of pinging everyone or hiding a link behind other words;
// a line starting with ">" (Slack quotes "&gt;" too) gets a zero-width
// space in front so it is not shown as a quote of someone else.
func EscapeMrkdwn(s string) string {
	s = mrkdwnEscaper.Replace(s)
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimLeft(l, " \t"), "&gt;") {
			lines[i] = "\u200b" + l
		}
	}
	return strings.Join(lines, "\n")
}

// ApprovalBlocks renders a ticket as a Slack message: what it gates, who
// asked, a note (who is waited for, or the latest outcome) and, while
// pending, the buttons.
func ApprovalBlocks(t *schema.Ticket, baseURL, note string, buttons bool) []slack.Block {
	title := fmt.Sprintf("*<%s/approvals/%d|Approval #%d: %s>*", strings.TrimRight(baseURL, "/"), t.ID, t.ID, EscapeMrkdwn(t.Title))
	desc := t.Description
	if len(desc) > 2500 {
		desc = strings.ToValidUTF8(desc[:2500], "") + "…"
	}
	desc = EscapeMrkdwn(desc)
	blocks := []slack.Block{
		slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, title, false, false), nil, nil),
		slack.NewContextBlock("", slack.NewTextBlockObject(slack.MarkdownType,
			fmt.Sprintf("Requested by *%s* · risk %s · level %d of %d · %s", t.Requester, orDash(t.Risk), t.Level+1, len(t.Policy.Levels), t.Status), false, false)),
	}
	if desc != "" {
		blocks = append(blocks, slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, desc, false, false), nil, nil))
	}
	if note != "" {
		blocks = append(blocks, slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, note, false, false), nil, nil))
	}
	if buttons {
		id := strconv.FormatInt(t.ID, 10)
		approve := slack.NewButtonBlockElement(SlackActionApprove, id, slack.NewTextBlockObject(slack.PlainTextType, "Approve", false, false))
		approve.Style = slack.StylePrimary
		reject := slack.NewButtonBlockElement(SlackActionReject, id, slack.NewTextBlockObject(slack.PlainTextType, "Reject", false, false))
		reject.Style = slack.StyleDanger
		blocks = append(blocks, slack.NewActionBlock("opsflow_decide_"+id, approve, reject))
	}
	return blocks
}

// RejectModal asks for the reason of a rejection; meta carries what the
// submission needs back (ticket, the message's response URL).
func RejectModal(t *schema.Ticket, meta string) slack.ModalViewRequest {
	input := slack.NewPlainTextInputBlockElement(slack.NewTextBlockObject(slack.PlainTextType, "Why?", false, false), SlackReasonInput)
	input.Multiline = true
	return slack.ModalViewRequest{
		Type:            slack.VTModal,
		CallbackID:      SlackRejectModal,
		PrivateMetadata: meta,
		Title:           slack.NewTextBlockObject(slack.PlainTextType, "Reject ticket", false, false),
		Submit:          slack.NewTextBlockObject(slack.PlainTextType, "Reject", false, false),
		Close:           slack.NewTextBlockObject(slack.PlainTextType, "Cancel", false, false),
		Blocks: slack.Blocks{BlockSet: []slack.Block{
			slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, fmt.Sprintf("Rejecting *#%d %s*", t.ID, EscapeMrkdwn(t.Title)), false, false), nil, nil),
			slack.NewInputBlock(SlackReasonBlock, slack.NewTextBlockObject(slack.PlainTextType, "Reason", false, false), nil, input),
		}},
	}
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}
