package notify

import (
	"context"
	"fmt"
	"net"
	"net/smtp"
	"strings"
	"time"

	"github.com/opsflow/opsflow/schema"
)

// Email sends approval notices by SMTP to the approvers' addresses.
type Email struct {
	Addr     string // host:port of the SMTP server
	From     string
	Username string // optional: PLAIN auth (the server must offer TLS, or be local)
	Password string
	Store    *schema.Store
	BaseURL  string
}

// Channel implements activities.Notifier.
func (e *Email) Channel() string { return "email" }

// Notify implements activities.Notifier: one message to every approver
// with an address; none with one is not an error.
func (e *Email) Notify(ctx context.Context, t *schema.Ticket, users []string, escalation bool) error {
	var to []string
	for _, u := range users {
		if usr, err := e.Store.UserByUsername(ctx, u); err == nil && usr.Email != "" && !usr.Disabled {
			to = append(to, usr.Email)
		}
	}
	if len(to) == 0 {
		return nil
	}
	subject := fmt.Sprintf("[opsflow] Approval #%d: %s", t.ID, t.Title)
	if escalation {
		subject = "[opsflow] Escalated: " + subject[len("[opsflow] "):]
	}
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n",
		e.From, strings.Join(to, ", "), strings.NewReplacer("\r", " ", "\n", " ").Replace(subject), time.Now().Format(time.RFC1123Z))
	b.WriteString(strings.ReplaceAll(noticeText(t, users, escalation, e.BaseURL), "\n", "\r\n"))
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
