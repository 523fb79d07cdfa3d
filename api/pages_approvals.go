package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/opsflow/opsflow/schema"
	"github.com/opsflow/opsflow/workflows"
)

// approvalPage shows a ticket: what it gates, its levels, who is waited
// for, its history, and the forms to decide or withdraw.
func (a *API) approvalPage(c echo.Context) error {
	id, err := idParam(c, "id")
	if err != nil {
		return err
	}
	t, err := a.store.Ticket(c.Request().Context(), id)
	if err != nil {
		return err
	}
	p := a.newPage(c, "Approval #"+strconv.FormatInt(id, 10), "approvals")
	gated := ""
	if t.GatedWorkflowID != "" {
		gated = "/runs/" + url.PathEscape(t.GatedWorkflowID)
		if j, err := a.store.JobByWorkflowID(c.Request().Context(), t.GatedWorkflowID); err == nil {
			gated = "/jobs/" + strconv.FormatInt(j.ID, 10)
		}
	}
	click := make([]byte, 9)
	_, _ = rand.Read(click)
	me := p.User.Username
	return a.render(c, http.StatusOK, "approval", struct {
		*page
		T           *schema.Ticket
		GatedURL    string
		CanDecide   bool
		IsRequester bool
		Click       string
	}{p, t, gated, me != t.Requester, me == t.Requester, hex.EncodeToString(click)})
}

// approvalDecideForm is the web UI's vote. The form's click nonce makes
// a double submission the same update: it counts once.
func (a *API) approvalDecideForm(c echo.Context) error {
	id, err := idParam(c, "id")
	if err != nil {
		return err
	}
	req := decisionRequest{Decision: c.FormValue("decision"), Comment: c.FormValue("comment")}
	out, err := a.decide(c, id, userOf(c), req, "web", c.FormValue("click"))
	return a.backToTicket(c, id, out, err)
}

func (a *API) backToTicket(c echo.Context, id int64, out workflows.ApprovalOutcome, err error) error {
	msg := out.Message
	if err != nil {
		msg = "Not counted: " + toError(err).Message
	}
	return c.Redirect(http.StatusSeeOther, "/approvals/"+strconv.FormatInt(id, 10)+"?flash="+url.QueryEscape(msg))
}

func (a *API) approvalWithdrawForm(c echo.Context) error {
	id, err := idParam(c, "id")
	if err != nil {
		return err
	}
	out, err := a.withdraw(c, id)
	return a.backToTicket(c, id, out, err)
}

// approvalLinkPage is where a decision link from a chat message lands,
// after login: it asks to confirm, so a link preview or a scanner that
// fetches it decides nothing. The link is consumed by the confirmation.
func (a *API) approvalLinkPage(c echo.Context) error {
	l, t, err := a.approvalLink(c)
	if err != nil {
		return err
	}
	return a.render(c, http.StatusOK, "approval_link", struct {
		*page
		T        *schema.Ticket
		Decision string
		Token    string
	}{a.newPage(c, "Confirm decision", "approvals"), t, l.Decision, c.Param("token")})
}

// approvalLinkSubmit consumes the link (single use) and decides as the
// logged-in user, on the channel the link was sent to.
func (a *API) approvalLinkSubmit(c echo.Context) error {
	l, t, err := a.approvalLink(c)
	if err != nil {
		return err
	}
	ok, err := a.store.UseApprovalLink(c.Request().Context(), l.TokenHash, userOf(c).Username, time.Now().UTC())
	if err != nil {
		return err
	}
	if !ok {
		return newError(http.StatusGone, CodeGone, fmt.Sprintf("this link was used already or has expired; decide on the ticket's page, /approvals/%d", t.ID))
	}
	out, err := a.decide(c, t.ID, userOf(c), decisionRequest{Decision: l.Decision, Comment: c.FormValue("comment")}, "dingtalk", l.TokenHash[:24])
	if err != nil {
		// Not counted: the link stays for an approver.
		if rerr := a.store.ReleaseApprovalLink(context.WithoutCancel(c.Request().Context()), l.TokenHash, userOf(c).Username); rerr != nil {
			a.log.Warn("approval link not released", "ticket", t.ID, "error", rerr)
		}
	}
	return a.backToTicket(c, t.ID, out, err)
}

func (a *API) approvalLink(c echo.Context) (*schema.ApprovalLink, *schema.Ticket, error) {
	sum := sha256.Sum256([]byte(c.Param("token")))
	l, err := a.store.ApprovalLinkByHash(c.Request().Context(), hex.EncodeToString(sum[:]))
	if errors.Is(err, schema.ErrNotFound) {
		return nil, nil, newError(http.StatusNotFound, CodeNotFound, "no such decision link")
	} else if err != nil {
		return nil, nil, err
	}
	if l.UsedAt != nil || time.Now().After(l.ExpiresAt) {
		return nil, nil, newError(http.StatusGone, CodeGone, fmt.Sprintf("this link was used already or has expired; decide on the ticket's page, /approvals/%d", l.TicketID))
	}
	t, err := a.store.Ticket(c.Request().Context(), l.TicketID)
	if err != nil {
		return nil, nil, err
	}
	return l, t, nil
}
