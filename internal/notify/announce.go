package notify

import (
	"context"
	"fmt"
	"net"
	"net/smtp"
	"strings"
	"time"

	"github.com/slack-go/slack"
)

// A notice is a message with nothing to decide: a runbook's notify step.
// Each notifier sends it as plain text in its channel — no Approve or
// Reject buttons, no decision links — with a link to path on opsflow (a
// run's page). Announce implements activities.Announcer.

func noticeBody(message, baseURL, path string) string {
	if path == "" {
		return message
	}
	return message + "\n\n" + strings.TrimRight(baseURL, "/") + path
}

// Announce posts the notice to the channel, mentioning users with a
// linked Slack account.
func (s *Slack) Announce(ctx context.Context, title, message, path string, users []string) error {
	ids, err := s.Store.ChatIDs(ctx, "slack", users)
	if err != nil {
		return err
	}
	var who []string
	for _, u := range users {
		if id, ok := ids[u]; ok {
			who = append(who, "<@"+id+">")
		}
	}
	text := "*" + mrkdwnEscaper.Replace(title) + "*\n" + mrkdwnEscaper.Replace(noticeBody(message, s.BaseURL, path))
	if len(who) > 0 {
		text += "\n" + strings.Join(who, " ")
	}
	blocks := []slack.Block{slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, text, false, false), nil, nil)}
	if _, _, err := s.Client.PostMessageContext(ctx, s.ChannelID, slack.MsgOptionText(mrkdwnEscaper.Replace(title), false), slack.MsgOptionBlocks(blocks...)); err != nil {
		return fmt.Errorf("slack: post notice: %w", err)
	}
	return nil
}

// Announce sends the notice through the robot's queue (its rate limit
// holds for notices too) as markdown without decision links.
func (d *DingTalk) Announce(ctx context.Context, title, message, path string, users []string) error {
	text := "### " + title + "\n\n" + noticeBody(message, d.BaseURL, path)
	if len(users) > 0 {
		text += "\n\nFor: " + strings.Join(users, ", ")
	}
	return d.enqueue(ctx, &dingItem{title: title, text: text, done: make(chan error, 1)})
}

// Announce posts the notice to the WeCom group.
func (w *WeCom) Announce(ctx context.Context, title, message, path string, users []string) error {
	content := "### " + title + "\n" + noticeBody(message, w.BaseURL, path)
	return w.post(ctx, map[string]any{"msgtype": "markdown", "markdown": map[string]string{"content": content}})
}

// Announce posts the notice to the Feishu group.
func (f *Feishu) Announce(ctx context.Context, title, message, path string, users []string) error {
	return f.post(ctx, map[string]any{"msg_type": "text", "content": map[string]string{"text": title + "\n" + noticeBody(message, f.BaseURL, path)}})
}

// Announce mails the notice to users with an address.
func (e *Email) Announce(ctx context.Context, title, message, path string, users []string) error {
	to := e.addresses(ctx, users)
	if len(to) == 0 {
		return nil
	}
	return e.send(to, "[opsflow] "+title, noticeBody(message, e.BaseURL, path))
}

// send mails body to to.
func (e *Email) send(to []string, subject, body string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n",
		e.From, strings.Join(to, ", "), strings.NewReplacer("\r", " ", "\n", " ").Replace(subject), time.Now().Format(time.RFC1123Z))
	b.WriteString(strings.ReplaceAll(body, "\n", "\r\n"))
	b.WriteString("\r\n")
	var auth smtp.Auth
	if e.Username != "" {
		host, _, _ := net.SplitHostPort(e.Addr)
		auth = smtp.PlainAuth("", e.Username, e.Password, host)
	}
	if err := smtp.SendMail(e.Addr, auth, e.From, to, []byte(b.String())); err != nil {
		return fmt.Errorf("email: %w", err)
	}
	return nil
}
