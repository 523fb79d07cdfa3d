package api

import (
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/opsflow/opsflow/schema"
)

// Handlers may name what a request did more precisely than its route.
const (
	auditActionKey = "opsflow.audit.action"
	auditTargetKey = "opsflow.audit.target"
	auditActorKey  = "opsflow.audit.actor"
	auditDetailKey = "opsflow.audit.detail"
	auditDoneKey   = "opsflow.audit.done" // the handler wrote the entry itself
	// auditSkipKey marks a request that is not written: one refused by a
	// rate limit (or a flood would write it), or one whose method is
	// unsafe but that changes nothing (notAudited).
	auditSkipKey = "opsflow.audit.skip"
	// authRefusedKey says why authentication refused the request's
	// credentials (a bad, revoked or malformed token).
	authRefusedKey = "opsflow.auth.refused"
)

func setAudit(c echo.Context, action, target string) {
	c.Set(auditActionKey, action)
	c.Set(auditTargetKey, target)
}

// notAudited marks a form post that only shows a page again — a preview,
// a confirmation, another parameter row — and changed nothing, so the
// audit log does not read as if it had.
func notAudited(c echo.Context) { c.Set(auditSkipKey, true) }

// audit records every mutating request on a route, allowed or not, and
// every request whose credentials were refused, in the append-only audit
// log. Requests that map to no route (404, 405) are not written: their
// path and method are the client's invention. What is stored is capped in
// length by the store, and anonymous clients are rate-limited before they
// get here (authenticate).
func (a *API) audit(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		err := next(c)
		if !a.routeMatched(c) {
			return err
		}
		if skip, _ := c.Get(auditSkipKey).(bool); skip {
			return err
		}
		refused, _ := c.Get(authRefusedKey).(string)
		if safeMethod(c.Request().Method) && refused == "" {
			return err
		}
		if done, _ := c.Get(auditDoneKey).(bool); done && err == nil {
			return nil
		}
		status := c.Response().Status
		if err != nil {
			status = toError(err).Status
		}
		e := a.auditEntry(c, c.Request().Method+" "+c.Path(), loggedPath(c), status)
		if s, ok := c.Get(auditActionKey).(string); ok {
			e.Action = s
		}
		if s, ok := c.Get(auditTargetKey).(string); ok {
			e.Target = s
		}
		if s, ok := c.Get(auditDetailKey).(string); ok {
			e.Detail = s
		}
		if refused != "" && e.Detail == "" {
			e.Detail = "credentials refused: " + refused
		}
		if aerr := a.store.AppendAudit(c.Request().Context(), e); aerr != nil {
			a.log.Error("audit append failed", "action", e.Action, "request_id", e.RequestID, "error", aerr)
		}
		return err
	}
}

// auditEntry describes the request's actor, source and ID.
func (a *API) auditEntry(c echo.Context, action, target string, status int) *schema.AuditEntry {
	e := &schema.AuditEntry{
		At:        time.Now().UTC(),
		Actor:     "anonymous",
		Action:    action,
		Target:    target,
		SourceIP:  c.RealIP(),
		RequestID: c.Response().Header().Get(echo.HeaderXRequestID),
		Status:    status,
	}
	if u := userOf(c); u != nil {
		e.Actor, e.ActorID = u.Username, &u.ID
	} else if s, ok := c.Get(auditActorKey).(string); ok {
		e.Actor = s
	}
	return e
}

// clampedLimit mirrors the store's page size for a requested limit.
func clampedLimit(n int) int {
	if n <= 0 {
		return 50
	}
	return n
}

func intParam(v, name string, lo, hi int, bad fieldErrors) int {
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		bad.add(name, "must be an integer from "+strconv.Itoa(lo)+" to "+strconv.Itoa(hi))
		return 0
	}
	return n
}

func timeParam(v, name string, bad fieldErrors) time.Time {
	if v == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		bad.add(name, "must be an RFC 3339 time such as 2026-01-02T15:04:05Z")
	}
	return t
}
