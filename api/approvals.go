package api

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/opsflow/opsflow/schema"
	"github.com/opsflow/opsflow/workflows"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
)

type ticketRequest struct {
	Title       string `json:"title"`
	Description string `json:"description"`
	Policy      string `json:"policy"`
	Risk        string `json:"risk"`
	// Gates optionally names the run (its workflow ID) the change is
	// about, for the ticket to link.
	Gates string `json:"gates"`
}

// deciders is who user decides for now: themselves first, then whoever
// delegated to them.
func (a *API) deciders(ctx context.Context, user string) ([]string, error) {
	from, err := a.store.DelegatorsOf(ctx, user, time.Now().UTC())
	if err != nil {
		return nil, err
	}
	return append([]string{user}, from...), nil
}

// createApproval opens a plain change-request ticket under a policy. With
// an Idempotency-Key a repeat returns the same ticket.
func (a *API) createApproval(c echo.Context) error {
	ctx := c.Request().Context()
	var req ticketRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	setAudit(c, "approval.create", "approval:"+req.Title)
	bad := fieldErrors{}
	req.Title = strings.TrimSpace(req.Title)
	if req.Title == "" || len(req.Title) > 200 {
		bad.add("title", "required, at most 200 characters")
	} else if strings.ContainsFunc(req.Title, unicode.IsControl) {
		bad.add("title", "one line: no tabs, newlines or other control characters")
	}
	if len(req.Description) > 20000 {
		bad.add("description", "at most 20,000 characters")
	}
	var policy *schema.ApprovalPolicy
	if req.Policy == "" {
		bad.add("policy", "required: the name of an approval policy")
	} else if p, err := a.store.ApprovalPolicyByName(ctx, req.Policy); errors.Is(err, schema.ErrNotFound) {
		bad.add("policy", "no such approval policy")
	} else if err != nil {
		return err
	} else {
		policy = p
	}
	switch req.Risk {
	case "", "low", "medium", "high":
	default:
		bad.add("risk", "must be low, medium or high")
	}
	if req.Gates != "" {
		if _, err := a.store.Run(ctx, req.Gates); errors.Is(err, schema.ErrNotFound) {
			bad.add("gates", "no run with that ID")
		} else if err != nil {
			return err
		}
	}
	if err := bad.err(); err != nil {
		return err
	}
	user := userOf(c)
	key, err := idempotencyKey(c)
	if err != nil {
		return err
	}
	wid := workflows.RunWorkflowID(workflows.KindApproval, user.ID, key, uuid.NewString())
	t := &schema.Ticket{WorkflowID: wid, Title: req.Title, Description: req.Description, Requester: user.Username, Risk: req.Risk,
		PolicyName: policy.Name, Policy: policy.Spec, GatedWorkflowID: req.Gates}
	if err := a.store.CreateTicket(ctx, t); errors.Is(err, schema.ErrConflict) {
		old, err := a.store.TicketByWorkflowID(ctx, wid)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, old)
	} else if err != nil {
		return err
	}
	in := workflows.ApprovalInput{TicketID: t.ID, Requester: user.Username, Policy: policy.Spec}
	if in.Approvers, err = a.store.ResolveLevels(ctx, policy.Spec, user.Username); err != nil {
		_ = a.store.DeleteTicket(context.WithoutCancel(ctx), t.ID)
		if errors.Is(err, schema.ErrNoApprover) {
			return &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: "nobody could decide this ticket",
				Fields: map[string]string{"policy": fmt.Sprintf("%s of %s has no approver other than you", strings.TrimSuffix(err.Error(), ": "+schema.ErrNoApprover.Error()), policy.Name)}}
		}
		return err
	}
	setAudit(c, "approval.create", "approval:"+strconv.FormatInt(t.ID, 10)) // the start's audit row names the ticket
	if _, _, err := a.startWorkflow(c, workflows.KindApproval, wid, req.Title, workflows.Approval, in); err != nil {
		// Nothing half-written: no workflow, no ticket.
		if derr := a.store.DeleteTicket(context.WithoutCancel(ctx), t.ID); derr != nil {
			a.log.Error("ticket left without its workflow", "ticket", t.ID, "error", derr)
		}
		return err
	}
	got, err := a.store.Ticket(ctx, t.ID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, got)
}

func (a *API) getApproval(c echo.Context) error {
	id, err := idParam(c, "id")
	if err != nil {
		return err
	}
	t, err := a.store.Ticket(c.Request().Context(), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, t)
}

type decisionRequest struct {
	Decision string `json:"decision"`
	Comment  string `json:"comment"`
}

// decideApproval votes on a ticket through the API.
func (a *API) decideApproval(c echo.Context) error {
	id, err := idParam(c, "id")
	if err != nil {
		return err
	}
	var req decisionRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	key, err := idempotencyKey(c)
	if err != nil {
		return err
	}
	out, err := a.decide(c, id, userOf(c), req, "api", key)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

// decide sends one vote to a ticket's workflow, from any channel, and
// says at once whether it counted. The update ID makes the same click
// arriving twice (a double click, a chat platform's retry) count once:
// requestKey names the click when the channel has one; otherwise the
// voter, the level and the decision do. Every attempt is audited with its
// channel.
func (a *API) decide(c echo.Context, id int64, user *schema.User, req decisionRequest, channel, requestKey string) (workflows.ApprovalOutcome, error) {
	setAudit(c, "approval.decide", "approval:"+strconv.FormatInt(id, 10))
	out, err := a.decideCore(c.Request().Context(), id, user, req, channel, requestKey)
	c.Set(auditDetailKey, decisionDetail(channel, req.Decision, out, err))
	return out, err
}

func decisionDetail(channel, decision string, out workflows.ApprovalOutcome, err error) string {
	if err != nil {
		return fmt.Sprintf("channel=%s decision=%s: not counted: %s", channel, decision, toError(err).Message)
	}
	return fmt.Sprintf("channel=%s decision=%s: %s", channel, decision, out.Message)
}

// decideCore is decide without a request: Slack's Socket Mode calls it.
func (a *API) decideCore(ctx context.Context, id int64, user *schema.User, req decisionRequest, channel, requestKey string) (workflows.ApprovalOutcome, error) {
	var out workflows.ApprovalOutcome
	if req.Decision != schema.DecisionApprove && req.Decision != schema.DecisionReject {
		return out, &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: "invalid decision",
			Fields: map[string]string{"decision": "must be approve or reject"}}
	}
	if reason := workflows.CheckComment(req.Comment); reason != "" {
		return out, &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: "invalid decision",
			Fields: map[string]string{"comment": reason}}
	}
	// The ticket fixed its approvers when the level opened; who may vote
	// now is decided now: a user demoted to viewer or disabled since then
	// is refused, whichever channel the vote came through.
	if fresh, err := a.store.User(ctx, user.ID); err != nil {
		return out, err
	} else if fresh.Disabled || fresh.Role == schema.RoleViewer {
		return out, newError(http.StatusForbidden, CodeForbidden, "not an approver: "+fresh.Username+" may no longer decide tickets")
	}
	t, err := a.store.Ticket(ctx, id)
	if err != nil {
		return out, err
	}
	if t.Status != schema.TicketPending {
		return out, newError(http.StatusConflict, CodeConflict, "already decided: "+t.Status)
	}
	from, err := a.store.DelegatorsOf(ctx, user.Username, time.Now().UTC())
	if err != nil {
		return out, err
	}
	if requestKey == "" {
		requestKey = fmt.Sprintf("level%d-%s", t.Level, req.Decision)
	}
	updateID := "decide-" + user.Username + "-" + channel + "-" + requestKey
	h, err := a.temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: t.WorkflowID, UpdateID: updateID, UpdateName: workflows.UpdateDecide, WaitForStage: client.WorkflowUpdateStageCompleted,
		Args: []any{workflows.ApprovalDecision{Voter: user.Username, OnBehalfOf: from, Decision: req.Decision, Comment: req.Comment, Channel: channel}},
	})
	if err == nil {
		err = h.Get(ctx, &out)
	}
	if err != nil {
		return out, decisionError(err)
	}
	return out, nil
}

// decisionError maps a refused vote to a status the clicker understands.
func decisionError(err error) error {
	msg := err.Error()
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		msg = appErr.Message()
	}
	switch {
	case strings.Contains(msg, "not an approver"), strings.Contains(msg, "you requested this ticket"), strings.Contains(msg, "only the requester"):
		return newError(http.StatusForbidden, CodeForbidden, msg)
	case strings.Contains(msg, "already voted"), strings.Contains(msg, "already decided"), strings.Contains(msg, "ticket is opening"),
		strings.Contains(msg, "workflow execution already completed"):
		return newError(http.StatusConflict, CodeConflict, msg)
	}
	return err
}

// withdrawApproval lets the requester take a pending ticket back.
func (a *API) withdrawApproval(c echo.Context) error {
	id, err := idParam(c, "id")
	if err != nil {
		return err
	}
	out, err := a.withdraw(c, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

func (a *API) withdraw(c echo.Context, id int64) (workflows.ApprovalOutcome, error) {
	ctx := c.Request().Context()
	var out workflows.ApprovalOutcome
	setAudit(c, "approval.withdraw", "approval:"+strconv.FormatInt(id, 10))
	t, err := a.store.Ticket(ctx, id)
	if err != nil {
		return out, err
	}
	if t.Status != schema.TicketPending {
		return out, newError(http.StatusConflict, CodeConflict, "already decided: "+t.Status)
	}
	h, err := a.temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: t.WorkflowID, UpdateName: workflows.UpdateWithdraw, WaitForStage: client.WorkflowUpdateStageCompleted,
		Args: []any{userOf(c).Username}})
	if err == nil {
		err = h.Get(ctx, &out)
	}
	if err != nil {
		return out, decisionError(err)
	}
	return out, nil
}

func (a *API) listApprovalPolicies(c echo.Context) error {
	ps, err := a.store.ApprovalPolicies(c.Request().Context())
	if err != nil {
		return err
	}
	if ps == nil {
		ps = []schema.ApprovalPolicy{}
	}
	return c.JSON(http.StatusOK, map[string]any{"items": ps})
}

func (a *API) getApprovalPolicy(c echo.Context) error {
	p, err := a.store.ApprovalPolicyByName(c.Request().Context(), c.Param("name"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, p)
}

// policyRequest takes the policy's spec nested ("spec": {"levels": …})
// or at the top level ("levels": …), not both.
type policyRequest struct {
	Name        string                    `json:"name"`
	Description string                    `json:"description"`
	Spec        schema.ApprovalPolicySpec `json:"spec"`
	Levels      []schema.ApprovalLevel    `json:"levels"`
	Channels    []string                  `json:"channels"`
	Match       *schema.ApprovalMatch     `json:"match"`
}

// saveApprovalPolicy creates (POST) or replaces (PUT /{name}) a policy.
func (a *API) saveApprovalPolicy(c echo.Context) error {
	var req policyRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	p, status, err := a.savePolicy(c, req, c.Param("name"))
	if err != nil {
		return err
	}
	return c.JSON(status, p)
}

// savePolicy creates a policy (name empty) or replaces the one named:
// the API's and the policies page's.
func (a *API) savePolicy(c echo.Context, req policyRequest, name string) (*schema.ApprovalPolicy, int, error) {
	if req.Levels != nil || req.Channels != nil || req.Match != nil {
		if req.Spec.Levels != nil || req.Spec.Channels != nil || req.Spec.Match != nil {
			return nil, 0, &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: "invalid policy",
				Fields: map[string]string{"spec": "give levels, channels and match either in spec or at the top level, not both"}}
		}
		req.Spec = schema.ApprovalPolicySpec{Levels: req.Levels, Channels: req.Channels, Match: req.Match}
	}
	status := http.StatusCreated
	if name != "" {
		if req.Name != "" && req.Name != name {
			return nil, 0, &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: "invalid policy", Fields: map[string]string{"name": "differs from the path"}}
		}
		req.Name, status = name, http.StatusOK
	} else if _, err := a.store.ApprovalPolicyByName(c.Request().Context(), req.Name); err == nil {
		if src, err := a.store.ManagedBy(c.Request().Context(), schema.KindApprovalPolicy, req.Name); err != nil || src != "" {
			return nil, 0, cmp.Or(err, error(&schema.ManagedError{Kind: schema.KindApprovalPolicy, Name: req.Name, Source: src}))
		}
		return nil, 0, &Error{Status: http.StatusConflict, Code: CodeConflict, Message: "policy name taken; PUT /api/v1/approval-policies/" + req.Name + " replaces it",
			Fields: map[string]string{"name": "already exists"}}
	}
	setAudit(c, "approval-policy.save", "approval-policy:"+req.Name)
	p := &schema.ApprovalPolicy{Name: req.Name, Description: req.Description, Spec: req.Spec, CreatedBy: userOf(c).Username}
	if err := a.store.SaveApprovalPolicy(c.Request().Context(), p); err != nil {
		var ve *schema.ValidationError
		if errors.As(err, &ve) {
			fields := map[string]string{}
			for k, v := range ve.Fields {
				if k != "name" {
					k = "spec." + k
				}
				fields[k] = v
			}
			return nil, 0, &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: "invalid policy", Fields: fields}
		}
		return nil, 0, err
	}
	return p, status, nil
}

func (a *API) deleteApprovalPolicy(c echo.Context) error {
	if err := a.removePolicy(c, c.Param("name")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (a *API) removePolicy(c echo.Context, name string) error {
	setAudit(c, "approval-policy.delete", "approval-policy:"+name)
	return a.store.DeleteApprovalPolicy(c.Request().Context(), name)
}

type delegationRequest struct {
	To       string    `json:"to"`
	StartsAt time.Time `json:"starts_at"`
	EndsAt   time.Time `json:"ends_at"`
}

// createDelegation lets the caller's approvals be decided by another user
// for a period (starting now when starts_at is left out).
func (a *API) createDelegation(c echo.Context) error {
	var req delegationRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	d, err := a.delegate(c, req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, d)
}

// delegate lets another user decide the caller's tickets for a while.
func (a *API) delegate(c echo.Context, req delegationRequest) (*schema.Delegation, error) {
	setAudit(c, "approval.delegate", "user:"+req.To)
	if req.StartsAt.IsZero() {
		req.StartsAt = time.Now().UTC()
	}
	d := &schema.Delegation{From: userOf(c).Username, To: req.To, StartsAt: req.StartsAt.UTC(), EndsAt: req.EndsAt.UTC()}
	if err := a.store.CreateDelegation(c.Request().Context(), d); err != nil {
		return nil, err
	}
	return d, nil
}

func (a *API) listGroups(c echo.Context) error {
	gs, err := a.store.Groups(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"groups": gs})
}

type groupRequest struct {
	Members []string `json:"members"`
}

// putGroup sets a group's members; policies name groups as approvers.
func (a *API) putGroup(c echo.Context) error {
	var req groupRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	name := c.Param("name")
	if err := a.setGroup(c, name, req.Members); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"name": name, "members": req.Members})
}

func (a *API) setGroup(c echo.Context, name string, members []string) error {
	setAudit(c, "group.set", "group:"+name)
	return a.store.SetGroupMembers(c.Request().Context(), name, members)
}
