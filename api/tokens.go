package api

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/opsflow/opsflow/schema"
)

type createTokenRequest struct {
	Name string `json:"name"`
	// ExpiresIn is a Go duration such as "720h"; empty means 90 days.
	ExpiresIn string `json:"expires_in"`
}

// createdToken is the only response that ever carries a token's secret.
type createdToken struct {
	schema.APIToken
	Token string `json:"token"`
}

const maxTokenTTL = 366 * 24 * time.Hour

func (a *API) listTokens(c echo.Context) error {
	ts, err := a.store.Tokens(c.Request().Context(), userOf(c).ID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"items": ts})
}

func (a *API) createToken(c echo.Context) error {
	var req createTokenRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	t, err := a.issueToken(c, req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, t)
}

// issueToken makes the caller a token; its secret is in the result only.
func (a *API) issueToken(c echo.Context, req createTokenRequest) (*createdToken, error) {
	bad := fieldErrors{}
	req.Name = strings.TrimSpace(req.Name)
	if req.Name == "" || len(req.Name) > 100 {
		bad.add("name", "must be 1-100 characters")
	}
	ttl := 90 * 24 * time.Hour
	if req.ExpiresIn != "" {
		d, err := time.ParseDuration(req.ExpiresIn)
		if err != nil || d < time.Minute || d > maxTokenTTL {
			bad.add("expires_in", "must be a duration such as 720h, from 1m to 8784h")
		}
		ttl = d
	}
	if err := bad.err(); err != nil {
		return nil, err
	}
	token, hash := NewToken()
	exp := time.Now().UTC().Add(ttl)
	t := &schema.APIToken{UserID: userOf(c).ID, Name: req.Name, Prefix: token[:len(tokenPrefix)+6], TokenHash: hash, ExpiresAt: &exp}
	if err := a.store.CreateToken(c.Request().Context(), t); err != nil {
		return nil, err
	}
	setAudit(c, "token.create", "token:"+strconv.FormatInt(t.ID, 10))
	return &createdToken{APIToken: *t, Token: token}, nil
}

func (a *API) revokeToken(c echo.Context) error {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		return &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: "invalid token id",
			Fields: map[string]string{"id": "must be a positive integer"}}
	}
	t, err := a.endToken(c, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, t)
}

// endToken revokes one of the caller's tokens (an admin's: anyone's).
func (a *API) endToken(c echo.Context, id int64) (*schema.APIToken, error) {
	owner := userOf(c).ID
	if userOf(c).Role == schema.RoleAdmin {
		owner = 0
	}
	t, err := a.store.RevokeToken(c.Request().Context(), id, owner)
	if err != nil {
		return nil, err
	}
	setAudit(c, "token.revoke", "token:"+strconv.FormatInt(t.ID, 10))
	return t, nil
}

func isConflict(err error) bool { return errors.Is(err, schema.ErrConflict) }
