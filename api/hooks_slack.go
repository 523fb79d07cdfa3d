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
	"time"

	"github.com/labstack/echo/v4"
	"github.com/opsflow/opsflow/internal/notify"
	"github.com/opsflow/opsflow/schema"
	"github.com/opsflow/opsflow/workflows"
	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"
)

// SlackHook is the Slack app opsflow answers: its signing secret checks
// every interaction, its client opens modals and looks users up.
type SlackHook struct {
	Client        *slack.Client
	SigningSecret string
}

// slackInteractions takes Approve and Reject clicks (and the reason
// modal's submission) from Slack in HTTP mode. The request must carry
// Slack's signature over the raw body, made within the last five minutes.
// See slackInteraction for the rest.
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
	res := a.slackInteraction(req.Context(), cb)
	if res.target != "" {
		setAudit(c, "approval.decide", res.target)
	}
	if res.actor != "" {
		c.Set(auditActorKey, res.actor)
	}
	if res.detail != "" {
		c.Set(auditDetailKey, res.detail)
	}
	if res.err != nil {
		return res.err
	}
	if res.body != nil {
		return c.JSON(http.StatusOK, res.body)
	}
	return c.NoContent(http.StatusOK)
}

// slackResult is what an interaction did: the answer for Slack (nil:
// empty) and the audit entry's target, actor and detail.
type slackResult struct {
	body                  any
	target, actor, detail string
	err                   error
}

// slackInteraction handles one interaction, however it arrived. The
// clicker must map to an opsflow user (a linked account, or the same
// email), or nothing counts and they are told so. Approve decides at once
// and the message is updated in place; Reject asks for a reason in a
// modal. A platform retry of the same click is the same update and counts
// once.
func (a *API) slackInteraction(ctx context.Context, cb slack.InteractionCallback) slackResult {
	switch cb.Type {
	case slack.InteractionTypeBlockActions:
		if len(cb.ActionCallback.BlockActions) == 0 {
			return slackResult{}
		}
		act := cb.ActionCallback.BlockActions[0]
		id, err := strconv.ParseInt(act.Value, 10, 64)
		if err != nil || (act.ActionID != notify.SlackActionApprove && act.ActionID != notify.SlackActionReject) {
			return slackResult{} // not ours
		}
		res := slackResult{target: "approval:" + act.Value}
		user, err := a.slackUser(ctx, cb.User.ID)
		if err != nil {
			res.detail = "channel=slack: Slack user " + cb.User.ID + " is not linked to an opsflow user; nothing counted"
			a.slackReply(ctx, cb.ResponseURL, nil, "Your Slack account is not linked to an opsflow user, so your click did not count. Ask an admin to link it.")
			return res
		}
		res.actor = user.Username
		t, err := a.store.Ticket(ctx, id)
		if err != nil {
			res.err = err
			return res
		}
		if act.ActionID == notify.SlackActionReject {
			meta := strconv.FormatInt(id, 10) + " " + cb.ResponseURL
			if _, err := a.slack.Client.OpenViewContext(ctx, cb.TriggerID, notify.RejectModal(t, meta)); err != nil {
				res.err = fmt.Errorf("slack: open the reason modal: %w", err)
				return res
			}
			res.detail = "channel=slack: reject asked for a reason"
			return res
		}
		out, err := a.decideCore(ctx, id, user, decisionRequest{Decision: schema.DecisionApprove}, "slack", act.ActionTs)
		res.detail = decisionDetail("slack", schema.DecisionApprove, out, err)
		a.slackAfterDecision(ctx, cb.ResponseURL, id, user.Username, out, err)
		return res

	case slack.InteractionTypeViewSubmission:
		if cb.View.CallbackID != notify.SlackRejectModal {
			return slackResult{}
		}
		idText, responseURL, _ := strings.Cut(cb.View.PrivateMetadata, " ")
		id, err := strconv.ParseInt(idText, 10, 64)
		if err != nil {
			return slackResult{err: newError(http.StatusBadRequest, CodeBadRequest, "bad modal metadata")}
		}
		res := slackResult{target: "approval:" + idText}
		user, err := a.slackUser(ctx, cb.User.ID)
		if err != nil {
			res.detail = "channel=slack: Slack user " + cb.User.ID + " is not linked to an opsflow user; nothing counted"
			res.body = map[string]any{"response_action": "errors",
				"errors": map[string]string{notify.SlackReasonBlock: "Your Slack account is not linked to an opsflow user; nothing was counted."}}
			return res
		}
		res.actor = user.Username
		reason := strings.TrimSpace(cb.View.State.Values[notify.SlackReasonBlock][notify.SlackReasonInput].Value)
		if reason == "" {
			res.body = map[string]any{"response_action": "errors", "errors": map[string]string{notify.SlackReasonBlock: "Say why."}}
			return res
		}
		out, err := a.decideCore(ctx, id, user, decisionRequest{Decision: schema.DecisionReject, Comment: reason}, "slack", cb.View.ID)
		res.detail = decisionDetail("slack", schema.DecisionReject, out, err)
		a.slackAfterDecision(ctx, responseURL, id, user.Username, out, err)
		return res
	}
	return slackResult{}
}

// RunSlackSocketMode takes the same interactions over Slack's Socket Mode
// (an app-level token, xapp-…), for installations with no public URL,
// until ctx ends. Slack authenticates the socket, so there is no request
// signature to check; each interaction is acknowledged and audited like
// one that came over HTTP.
func (a *API) RunSlackSocketMode(ctx context.Context, sm *socketmode.Client) error {
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case evt, ok := <-sm.Events:
				if !ok {
					return
				}
				if evt.Type != socketmode.EventTypeInteractive || evt.Request == nil {
					continue
				}
				cb, ok := evt.Data.(slack.InteractionCallback)
				if !ok {
					continue
				}
				res := a.slackInteraction(ctx, cb)
				if res.body != nil {
					sm.Ack(*evt.Request, res.body)
				} else {
					sm.Ack(*evt.Request)
				}
				if res.target == "" {
					continue
				}
				status := http.StatusOK
				if res.err != nil {
					status = toError(res.err).Status
				}
				e := &schema.AuditEntry{At: time.Now().UTC(), Actor: res.actor, Action: "approval.decide", Target: res.target,
					Status: status, Detail: strings.Replace(res.detail, "channel=slack", "channel=slack (socket mode)", 1)}
				if err := a.store.AppendAudit(ctx, e); err != nil {
					a.log.Error("audit append failed", "action", e.Action, "error", err)
				}
			}
		}
	}()
	return sm.RunContext(ctx)
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
func (a *API) slackAfterDecision(ctx context.Context, responseURL string, id int64, who string, out workflows.ApprovalOutcome, err error) {
	note := fmt.Sprintf("*%s*: %s", notify.EscapeMrkdwn(who), notify.EscapeMrkdwn(out.Message))
	if err != nil {
		a.slackReply(ctx, responseURL, nil, "Not counted: "+notify.EscapeMrkdwn(toError(err).Message))
		return
	}
	t, terr := a.store.Ticket(ctx, id)
	if terr != nil {
		return
	}
	// The read model may lag the workflow by a moment: the outcome is the
	// workflow's own answer.
	t.Status, t.Level = out.Status, out.Level
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
	ci, err := a.linkChat(c, req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, ci)
}

// listChatIdentities lists the linked chat accounts (of ?username=).
func (a *API) listChatIdentities(c echo.Context) error {
	cis, err := a.store.ChatIdentities(c.Request().Context(), c.QueryParam("username"))
	if err != nil {
		return err
	}
	if cis == nil {
		cis = []schema.ChatIdentity{}
	}
	return c.JSON(http.StatusOK, map[string]any{"items": cis})
}

// unlinkChatIdentity removes a chat account's link.
func (a *API) unlinkChatIdentity(c echo.Context) error {
	if err := a.unlinkChat(c, c.Param("provider"), c.Param("external_id")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// unlinkChat is unlinkChatIdentity without the HTTP parts.
func (a *API) unlinkChat(c echo.Context, provider, externalID string) error {
	setAudit(c, "chat-identity.unlink", provider+":"+externalID)
	return a.store.UnlinkChatIdentity(c.Request().Context(), provider, externalID)
}

// linkChat is linkChatIdentity without the HTTP parts.
func (a *API) linkChat(c echo.Context, req chatIdentityRequest) (*schema.ChatIdentity, error) {
	setAudit(c, "chat-identity.link", req.Provider+":"+req.ExternalID)
	bad := fieldErrors{}
	if req.Provider != "slack" && req.Provider != "dingtalk" {
		bad.add("provider", "must be slack or dingtalk")
	}
	if req.ExternalID == "" || len(req.ExternalID) > 100 {
		bad.add("external_id", "required: the account's ID on the platform")
	}
	if err := bad.err(); err != nil {
		return nil, err
	}
	ci := &schema.ChatIdentity{Provider: req.Provider, ExternalID: req.ExternalID, Username: req.Username}
	if err := a.store.LinkChatIdentity(c.Request().Context(), ci); err != nil {
		return nil, err
	}
	return ci, nil
}
