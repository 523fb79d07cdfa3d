package api

import (
	"fmt"
	"net/http"
	"net/mail"
	"regexp"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/opsflow/opsflow/schema"
)

var usernameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

type createUserRequest struct {
	Username    string `json:"username"`
	DisplayName string `json:"display_name"`
	Email       string `json:"email"`
	Role        string `json:"role"`
	Password    string `json:"password"`
}

type updateUserRequest struct {
	DisplayName *string `json:"display_name"`
	Email       *string `json:"email"`
	Role        *string `json:"role"`
	Password    *string `json:"password"`
	Disabled    *bool   `json:"disabled"`
}

func validateRole(role string, bad fieldErrors) {
	if !schema.ValidRole(role) {
		bad.add("role", "must be one of "+strings.Join(schema.Roles, ", "))
	}
}

func validatePassword(pw string, bad fieldErrors) {
	if len(pw) < 12 {
		bad.add("password", "must be at least 12 characters")
	} else if len(pw) > 72 {
		bad.add("password", "must be at most 72 bytes (bcrypt's limit)")
	}
}

func validateEmail(email string, bad fieldErrors) {
	if email == "" {
		return
	}
	if a, err := mail.ParseAddress(email); err != nil || a.Address != email {
		bad.add("email", "must be a plain address such as ops@example.com")
	}
}

func (a *API) listUsers(c echo.Context) error {
	us, err := a.store.Users(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"items": us})
}

func (a *API) createUser(c echo.Context) error {
	var req createUserRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	u, err := a.addUser(c, req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, u)
}

// addUser validates and creates a user: the API's and the users page's.
func (a *API) addUser(c echo.Context, req createUserRequest) (*schema.User, error) {
	bad := fieldErrors{}
	if !usernameRE.MatchString(req.Username) {
		bad.add("username", "must be 1-63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit")
	}
	validateRole(req.Role, bad)
	validateEmail(req.Email, bad)
	if req.Password != "" {
		validatePassword(req.Password, bad)
	}
	if err := bad.err(); err != nil {
		return nil, err
	}
	u := &schema.User{Username: req.Username, DisplayName: req.DisplayName, Email: req.Email, Role: req.Role}
	if req.Password != "" {
		h, err := HashPassword(req.Password)
		if err != nil {
			return nil, err
		}
		u.PasswordHash = h
	}
	if err := a.store.CreateUser(c.Request().Context(), u); err != nil {
		if isConflict(err) {
			return nil, &Error{Status: http.StatusConflict, Code: CodeConflict, Message: "username already taken",
				Fields: map[string]string{"username": "already taken"}}
		}
		return nil, err
	}
	setAudit(c, "user.create", "user:"+u.Username)
	return u, nil
}

func (a *API) userParam(c echo.Context) (int64, error) {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: "invalid user id",
			Fields: map[string]string{"id": "must be a positive integer"}}
	}
	return id, nil
}

func (a *API) getUser(c echo.Context) error {
	id, err := a.userParam(c)
	if err != nil {
		return err
	}
	u, err := a.store.User(c.Request().Context(), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, u)
}

func (a *API) updateUser(c echo.Context) error {
	id, err := a.userParam(c)
	if err != nil {
		return err
	}
	var req updateUserRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	u, err := a.changeUser(c, id, req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, u)
}

// changeUser validates and applies a change to user id, ending what the
// change took away: the API's, the users page's and one's own password
// form's.
func (a *API) changeUser(c echo.Context, id int64, req updateUserRequest) (*schema.User, error) {
	bad := fieldErrors{}
	up := schema.UserUpdate{DisplayName: req.DisplayName, Email: req.Email, Role: req.Role, Disabled: req.Disabled}
	if req.Role != nil {
		validateRole(*req.Role, bad)
	}
	if req.Email != nil {
		validateEmail(*req.Email, bad)
	}
	if req.Password != nil {
		validatePassword(*req.Password, bad)
	}
	if me := userOf(c); me.ID == id && ((req.Role != nil && *req.Role != schema.RoleAdmin) || (req.Disabled != nil && *req.Disabled)) {
		bad.add("role", "an admin cannot demote or disable themself; ask another admin")
	}
	if err := bad.err(); err != nil {
		return nil, err
	}
	if req.Password != nil {
		h, err := HashPassword(*req.Password)
		if err != nil {
			return nil, err
		}
		up.PasswordHash = &h
	}
	old, err := a.store.User(c.Request().Context(), id)
	if err != nil {
		return nil, err
	}
	// A new password, a lowered role or a disabled account ends the user's
	// sessions and revokes their tokens (all but the caller's own, when an
	// admin changes their own password), so what the change took away is
	// not still held.
	up.EndSessions = req.Password != nil || (req.Disabled != nil && *req.Disabled && !old.Disabled) ||
		(req.Role != nil && roleLowered(old.Role, *req.Role))
	if p := principalOf(c); p != nil && p.User.ID == id {
		up.KeepToken = p.TokenID
		if p.Session != nil {
			up.KeepSession = p.Session.IDHash
		}
	}
	u, ended, err := a.store.UpdateUserEndingSessions(c.Request().Context(), id, up)
	if err != nil {
		return nil, err
	}
	setAudit(c, "user.update", "user:"+u.Username)
	if up.EndSessions {
		c.Set(auditDetailKey, fmt.Sprintf("ended %d sessions, revoked %d tokens", ended.SessionsEnded, ended.TokensRevoked))
	}
	return u, nil
}

// roleLowered reports whether going from role old to role new loses a
// privilege: anything but a viewer becoming something, or anyone becoming
// an admin, or staying the same. Operator and approver are separate
// duties, so moving between them loses one.
func roleLowered(old, new string) bool {
	return old != new && old != schema.RoleViewer && new != schema.RoleAdmin
}
