package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/opsflow/opsflow/internal/notify"
	"github.com/opsflow/opsflow/schema"
	"github.com/slack-go/slack"
)

// SlackHook is the Slack app opsflow answers: its signing secret checks
// every interaction, its client opens modals and looks users up.
type SlackHook struct {
	Client        *slack.Client
	SigningSecret string
}

// slackInteractions takes Approve and Reject clicks (and the reason
// modal's submission) from Slack. The request must carry Slack's
// signature over the raw body, made within the last five minutes; the
// clicker must map to an opsflow user (a linked account, or the same
// email), or nothing counts and they are told so. A platform retry of the
// same click is the same update and counts once.
func (a *API) slackInteractions(c echo.Context) error {
	if a.slack == nil {
		return newError(http.StatusNotFound, CodeNotFound, "Slack is not configured (OPSFLOW_SLACK_SIGNING_SECRET)")
	}
	req := c.Request()
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), req.Body, 1<<20))
	if err != nil {
		return newError(http.StatusBadRequest, CodeBadRequest, "unreadable body")
	}
	setAudit(c, "approval.decide", "slack")
	c.Set(auditDetailKey, "channel=slack")
	sv, err := slack.NewSecretsVerifier(req.Header, a.slack.SigningSecret)
	if err == nil {
		_, _ = sv.Write(body)
		err = sv.Ensure()
	}
	if err != nil {
		c.Set(auditDetailKey, "channel=slack: refused: "+err.Error())
		return newError(http.StatusUnauthorized, CodeUnauthorized, "not a valid Slack request: "+err.Error())
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return newError(http.StatusBadRequest, CodeBadRequest, "not a form")
	}
	var cb slack.InteractionCallback
	if err := json.Unmarshal([]byte(form.Get("payload")), &cb); err != nil {
		return newError(http.StatusBadRequest, CodeBadRequest, "no interaction payload")
	}
	ctx := req.Context()
	switch cb.Type {
	case slack.InteractionTypeBlockActions:
		if len(cb.ActionCallback.BlockActions) == 0 {
			return c.NoContent(http.StatusOK)
		}
		act := cb.ActionCallback.BlockActions[0]
		id, err := strconv.ParseInt(act.Value, 10, 64)
		if err != nil || (act.ActionID != notify.SlackActionApprove && act.ActionID != notify.SlackActionReject) {
			return c.NoContent(http.StatusOK) // not ours
		}
		setAudit(c, "approval.decide", "approval:"+act.Value)
		user, err := a.slackUser(ctx, cb.User.ID)
		if err != nil {
			c.Set(auditDetailKey, "channel=slack: Slack user "+cb.User.ID+" is not linked to an opsflow user; nothing counted")
			a.slackReply(ctx, cb.ResponseURL, nil, "Your Slack account is not linked to an opsflow user, so your click did not count. Ask an admin to link it.")
			return c.NoContent(http.StatusOK)
		}
		c.Set(auditActorKey, user.Username)
		t, err := a.store.Ticket(ctx, id)
		if err != nil {
			return err
		}
		if act.ActionID == notify.SlackActionReject {
			meta := strconv.FormatInt(id, 10) + " " + cb.ResponseURL
			if _, err := a.slack.Client.OpenViewContext(ctx, cb.TriggerID, notify.RejectModal(t, meta)); err != nil {
				return fmt.Errorf("slack: open the reason modal: %w", err)
			}
			c.Set(auditDetailKey, "channel=slack: reject asked for a reason")
			return c.NoContent(http.StatusOK)
		}
		out, err := a.decide(c, id, user, decisionRequest{Decision: schema.DecisionApprove}, "slack", act.ActionTs)
		a.slackAfterDecision(ctx, cb.ResponseURL, id, user.Username, out.Message, err)
		return c.NoContent(http.StatusOK)

	case slack.InteractionTypeViewSubmission:
		if cb.View.CallbackID != notify.SlackRejectModal {
			return c.NoContent(http.StatusOK)
		}
		idText, responseURL, _ := strings.Cut(cb.View.PrivateMetadata, " ")
		id, err := strconv.ParseInt(idText, 10, 64)
		if err != nil {
			return newError(http.StatusBadRequest, CodeBadRequest, "bad modal metadata")
		}
		setAudit(c, "approval.decide", "approval:"+idText)
		user, err := a.slackUser(ctx, cb.User.ID)
		if err != nil {
			c.Set(auditDetailKey, "channel=slack: Slack user "+cb.User.ID+" is not linked to an opsflow user; nothing counted")
			return c.JSON(http.StatusOK, map[string]any{"response_action": "errors",
				"errors": map[string]string{notify.SlackReasonBlock: "Your Slack account is not linked to an opsflow user; nothing was counted."}})
		}
		c.Set(auditActorKey, user.Username)
		reason := strings.TrimSpace(cb.View.State.Values[notify.SlackReasonBlock][notify.SlackReasonInput].Value)
		if reason == "" {
			return c.JSON(http.StatusOK, map[string]any{"response_action": "errors", "errors": map[string]string{notify.SlackReasonBlock: "Say why."}})
		}
		out, err := a.decide(c, id, user, decisionRequest{Decision: schema.DecisionReject, Comment: reason}, "slack", cb.View.ID)
		a.slackAfterDecision(ctx, responseURL, id, user.Username, out.Message, err)
		return c.NoContent(http.StatusOK)
	}
	return c.NoContent(http.StatusOK)
}

// slackUser maps a Slack user to an enabled opsflow user: a linked
// account first, then the same email.
func (a *API) slackUser(ctx context.Context, slackID string) (*schema.User, error) {
	if u, err := a.store.ChatUser(ctx, "slack", slackID); err == nil {
		return u, nil
	} else if !errors.Is(err, schema.ErrNotFound) {
		return nil, err
	}
	info, err := a.slack.Client.GetUserInfoContext(ctx, slackID)
	if err != nil {
		return nil, err
	}
	return a.store.UserByEmail(ctx, info.Profile.Email)
}

// slackAfterDecision updates the clicked message in place: the ticket as
// it now stands, and what the click did (or why it did not count).
func (a *API) slackAfterDecision(ctx context.Context, responseURL string, id int64, who, msg string, err error) {
	note := fmt.Sprintf("*%s*: %s", who, msg)
	if err != nil {
		a.slackReply(ctx, responseURL, nil, "Not counted: "+toError(err).Message)
		return
	}
	t, terr := a.store.Ticket(ctx, id)
	if terr != nil {
		return
	}
	// The read model may lag the workflow by a moment: the outcome is the
	// workflow's own answer.
	if strings.Contains(msg, "the ticket is approved") {
		t.Status = schema.TicketApproved
	} else if strings.Contains(msg, "the ticket is rejected") {
		t.Status = schema.TicketRejected
	}
	a.slackReply(ctx, responseURL, notify.ApprovalBlocks(t, a.baseURL, note, t.Status == schema.TicketPending), "")
}

// slackReply answers through an interaction's response URL: replacing the
// message with blocks, or (blocks nil) telling only the clicker text.
func (a *API) slackReply(ctx context.Context, responseURL string, blocks []slack.Block, text string) {
	if responseURL == "" {
		return
	}
	msg := &slack.WebhookMessage{Text: text, ResponseType: slack.ResponseTypeEphemeral}
	if blocks != nil {
		msg = &slack.WebhookMessage{ReplaceOriginal: true, Blocks: &slack.Blocks{BlockSet: blocks}, Text: "approval updated"}
	}
	if err := slack.PostWebhookContext(ctx, responseURL, msg); err != nil {
		a.log.Warn("slack: response URL", "error", err)
	}
}

type chatIdentityRequest struct {
	Provider   string `json:"provider"`
	ExternalID string `json:"external_id"`
	Username   string `json:"username"`
}

// linkChatIdentity links a chat account (Slack user ID, DingTalk staff ID)
// to an opsflow user.
func (a *API) linkChatIdentity(c echo.Context) error {
	var req chatIdentityRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	setAudit(c, "chat-identity.link", req.Provider+":"+req.ExternalID)
	bad := fieldErrors{}
	if req.Provider != "slack" && req.Provider != "dingtalk" {
		bad.add("provider", "must be slack or dingtalk")
	}
	if req.ExternalID == "" || len(req.ExternalID) > 100 {
		bad.add("external_id", "required: the account's ID on the platform")
	}
	if err := bad.err(); err != nil {
		return err
	}
	ci := &schema.ChatIdentity{Provider: req.Provider, ExternalID: req.ExternalID, Username: req.Username}
	if err := a.store.LinkChatIdentity(c.Request().Context(), ci); err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, ci)
}
