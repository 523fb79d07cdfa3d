package notify

import (
	"context"
	"fmt"

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
	to := e.addresses(ctx, users)
	if len(to) == 0 {
		return nil
	}
	subject := fmt.Sprintf("[opsflow] Approval #%d: %s", t.ID, t.Title)
	if escalation {
		subject = "[opsflow] Escalated: " + subject[len("[opsflow] "):]
	}
	return e.send(to, subject, noticeText(t, users, escalation, e.BaseURL))
}

// addresses are the mail addresses of the enabled users among users.
func (e *Email) addresses(ctx context.Context, users []string) []string {
	var to []string
	for _, u := range users {
		if usr, err := e.Store.UserByUsername(ctx, u); err == nil && usr.Email != "" && !usr.Disabled {
			to = append(to, usr.Email)
		}
	}
	return to
}
