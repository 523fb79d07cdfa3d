package api

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/opsflow/opsflow/schema"
	"golang.org/x/crypto/bcrypt"
)

// accountRoutes: one's own password, API tokens, delegations and linked
// chat accounts.
func (a *API) accountRoutes() []route {
	return []route{
		{Method: http.MethodGet, Path: "/account", Roles: anyUser, handler: a.accountPage},
		{Method: http.MethodPost, Path: "/account/password", Roles: anyUser, handler: a.accountPasswordForm},
		{Method: http.MethodPost, Path: "/account/tokens", Roles: anyUser, handler: a.accountTokenForm},
		{Method: http.MethodPost, Path: "/account/tokens/:id/revoke", Roles: anyUser, handler: a.accountRevokeTokenForm},
		{Method: http.MethodPost, Path: "/account/delegations", Roles: deciders, handler: a.accountDelegateForm},
		{Method: http.MethodPost, Path: "/account/delegations/:id/end", Roles: deciders, handler: a.accountEndDelegationForm},
	}
}

// form is a refused form shown again: which form (For), what was typed
// (never secrets), the reason per field and the overall message.
type form struct {
	For    string
	Values map[string]string
	Errors map[string]string
	Error  string
}

// refusedForm keeps the named fields' values of a form the API code
// refused with a 4xx; ok is false for any other error, which the caller
// returns as is.
func refusedForm(c echo.Context, err error, name string, fields ...string) (f form, status int, ok bool) {
	e := toError(err)
	if e.Status >= 500 || e.Status == http.StatusUnauthorized {
		return f, 0, false
	}
	f = form{For: name, Values: map[string]string{}, Errors: e.Fields, Error: e.Message}
	for _, k := range fields {
		f.Values[k] = c.FormValue(k)
	}
	return f, e.Status, true
}

// redirectFlash sends the browser back to path with a message.
func redirectFlash(c echo.Context, path, msg string) error {
	return c.Redirect(http.StatusSeeOther, path+"?flash="+url.QueryEscape(msg))
}

type tokenRow struct {
	schema.APIToken
	State string
}

type accountData struct {
	*page
	Tokens      []tokenRow
	NewToken    *createdToken
	Delegations []schema.Delegation
	CanDelegate bool
	Chat        []schema.ChatIdentity
	Form        form
}

func (a *API) accountPage(c echo.Context) error { return a.showAccount(c, http.StatusOK, form{}, nil) }

func (a *API) showAccount(c echo.Context, status int, f form, created *createdToken) error {
	ctx := c.Request().Context()
	me := userOf(c)
	ts, err := a.store.Tokens(ctx, me.ID)
	if err != nil {
		return err
	}
	now := time.Now()
	rows := make([]tokenRow, len(ts))
	for i, t := range ts {
		rows[i] = tokenRow{APIToken: t, State: "active"}
		switch {
		case t.RevokedAt != nil:
			rows[i].State = "revoked"
		case !t.Active(now):
			rows[i].State = "expired"
		}
	}
	d := accountData{page: a.newPage(c, "Account", "account"), Tokens: rows, NewToken: created, Form: f,
		CanDelegate: me.Role != schema.RoleViewer}
	if d.CanDelegate {
		if d.Delegations, err = a.store.Delegations(ctx, me.Username, now.UTC()); err != nil {
			return err
		}
	}
	if d.Chat, err = a.store.ChatIdentities(ctx, me.Username); err != nil {
		return err
	}
	return a.render(c, status, "account", d)
}

// accountPasswordForm changes one's own password after checking the
// current one (throttled like logins); the API's user update then ends
// every other session and revokes one's API tokens.
func (a *API) accountPasswordForm(c echo.Context) error {
	me := userOf(c)
	setAudit(c, "user.password", "user:"+me.Username)
	key := strings.ToLower(me.Username)
	err := func() error {
		if !a.loginUser.ok(key) {
			return &Error{Status: http.StatusTooManyRequests, Code: codeTooManyRequests, Message: "too many wrong passwords; try again later",
				Fields: map[string]string{"current_password": "too many wrong attempts; wait and try again"}}
		}
		fresh, err := a.store.User(c.Request().Context(), me.ID)
		if err != nil {
			return err
		}
		if fresh.PasswordHash == "" || bcrypt.CompareHashAndPassword([]byte(fresh.PasswordHash), []byte(c.FormValue("current_password"))) != nil {
			a.loginUser.take(key)
			return &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: "invalid current_password",
				Fields: map[string]string{"current_password": "is not your current password"}}
		}
		pw := c.FormValue("password")
		if pw != c.FormValue("password_confirm") {
			return &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: "invalid password_confirm",
				Fields: map[string]string{"password_confirm": "does not match the new password"}}
		}
		_, err = a.changeUser(c, me.ID, updateUserRequest{Password: &pw})
		return err
	}()
	if err != nil {
		f, status, ok := refusedForm(c, err, "password")
		if !ok {
			return err
		}
		return a.showAccount(c, status, f, nil)
	}
	return redirectFlash(c, "/account", "Password changed. Your other sessions have ended and your API tokens are revoked.")
}

// accountTokenForm makes a token and shows its secret in this response
// only.
func (a *API) accountTokenForm(c echo.Context) error {
	t, err := a.issueToken(c, createTokenRequest{Name: c.FormValue("name"), ExpiresIn: c.FormValue("expires_in")})
	if err != nil {
		f, status, ok := refusedForm(c, err, "token", "name", "expires_in")
		if !ok {
			return err
		}
		return a.showAccount(c, status, f, nil)
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return a.showAccount(c, http.StatusCreated, form{}, t)
}

func (a *API) accountRevokeTokenForm(c echo.Context) error {
	id, err := idParam(c, "id")
	if err != nil {
		return err
	}
	// Even an admin revokes only their own tokens here.
	if ts, err := a.store.Tokens(c.Request().Context(), userOf(c).ID); err != nil {
		return err
	} else if !containsToken(ts, id) {
		return newError(http.StatusNotFound, CodeNotFound, "no such token of yours")
	}
	if ok, err := a.askFirst(c, "Revoke this API token? Whatever uses it stops working.", "Revoke token", "/account"); !ok {
		return err
	}
	t, err := a.endToken(c, id)
	if err != nil {
		return err
	}
	return redirectFlash(c, "/account", "Token "+t.Name+" revoked.")
}

func containsToken(ts []schema.APIToken, id int64) bool {
	for _, t := range ts {
		if t.ID == id {
			return true
		}
	}
	return false
}

// formTime reads a datetime-local value, in the zone named by the form's
// tz (the viewer's, filled in by ui/static/time.js; UTC without it), or
// RFC 3339.
func formTime(c echo.Context, field string, bad fieldErrors) time.Time {
	v := c.FormValue(field)
	if v == "" {
		return time.Time{}
	}
	loc := zoneParam(c.FormValue("tz"), bad)
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05"} {
		if t, err := time.ParseInLocation(layout, v, loc); err == nil {
			return t.UTC()
		}
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t
	}
	bad.add(field, "must be a date and time such as 2026-12-24T18:00")
	return time.Time{}
}

func (a *API) accountDelegateForm(c echo.Context) error {
	bad := fieldErrors{}
	req := delegationRequest{To: strings.TrimSpace(c.FormValue("to")), StartsAt: formTime(c, "starts_at", bad),
		EndsAt: formTime(c, "ends_at", bad)}
	if c.FormValue("ends_at") == "" {
		bad.add("ends_at", "required: when the delegation ends")
	}
	err := bad.err()
	if err == nil {
		_, err = a.delegate(c, req)
	}
	if err != nil {
		f, status, ok := refusedForm(c, err, "delegation", "to", "starts_at", "ends_at")
		if !ok {
			return err
		}
		return a.showAccount(c, status, f, nil)
	}
	return redirectFlash(c, "/account", "Delegated to "+req.To+".")
}

func (a *API) accountEndDelegationForm(c echo.Context) error {
	id, err := idParam(c, "id")
	if err != nil {
		return err
	}
	setAudit(c, "approval.delegation.end", "delegation:"+strconv.FormatInt(id, 10))
	if err := a.store.EndDelegation(c.Request().Context(), id, userOf(c).Username, time.Now().UTC()); errors.Is(err, schema.ErrNotFound) {
		return newError(http.StatusNotFound, CodeNotFound, "no running delegation of yours with that id")
	} else if err != nil {
		return err
	}
	return redirectFlash(c, "/account", "Delegation ended.")
}

// Err is field's error when the refused form is name.
func (f form) Err(name, field string) string {
	if f.For != name {
		return ""
	}
	return f.Errors[field]
}

// Val is what field held when the refused form is name (or the defaults
// when no form was refused).
func (f form) Val(name, field string) string {
	if f.For != name && f.For != "" {
		return ""
	}
	return f.Values[field]
}
