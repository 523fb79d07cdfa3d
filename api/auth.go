package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/opsflow/opsflow/schema"
	"golang.org/x/crypto/bcrypt"
)

const (
	sessionCookie = "opsflow_session"
	csrfHeader    = "X-CSRF-Token"
	csrfField     = "csrf_token"
	sessionTTL    = 12 * time.Hour
	tokenPrefix   = "opf_"
)

// principal is who is making the request and how they proved it.
type principal struct {
	User    *schema.User
	TokenID int64           // set for bearer tokens
	Session *schema.Session // set for the web UI's cookie
}

const principalKey = "opsflow.principal"

func principalOf(c echo.Context) *principal {
	p, _ := c.Get(principalKey).(*principal)
	return p
}

// userOf returns the authenticated user; routes reach handlers only after
// authentication, so it is never nil there.
func userOf(c echo.Context) *schema.User {
	if p := principalOf(c); p != nil {
		return p.User
	}
	return nil
}

// newSecret returns a random URL-safe secret and the hash stored for it.
func newSecret() (secret, hash string) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	secret = strings.ToLower(strings.TrimRight(base32.StdEncoding.EncodeToString(b), "="))
	return secret, hashSecret(secret)
}

func hashSecret(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// NewToken returns a fresh API token and its stored hash.
func NewToken() (token, hash string) {
	s, _ := newSecret()
	token = tokenPrefix + s
	return token, hashSecret(token)
}

// NewPassword returns a random 24-character password.
func NewPassword() string {
	s, _ := newSecret()
	return s[:24]
}

// HashToken returns the stored hash of token.
func HashToken(token string) string { return hashSecret(token) }

// HashPassword hashes a password with bcrypt.
func HashPassword(pw string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
	return string(h), err
}

// dummyHash keeps failed logins for unknown users as slow as for known
// ones, so timing does not reveal which usernames exist.
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("opsflow-dummy"), bcrypt.DefaultCost)

// authenticate resolves the caller from a bearer token or session cookie.
// It rejects only credentials that do not hold (bad, revoked, malformed);
// routes decide the rest with require. Anonymous requests the audit log
// would record (unsafe methods and refused credentials, on a real route)
// are rate-limited per source address first, answering 429.
func (a *API) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		p, err := a.resolve(c)
		if p == nil && (err != nil || !safeMethod(c.Request().Method)) && a.routeMatched(c) {
			ip := c.RealIP()
			if !a.anon.allow(ip) {
				c.Set(auditSkipKey, true)
				c.Response().Header().Set("Retry-After", strconv.Itoa(a.anon.retryAfter(ip)))
				return newError(http.StatusTooManyRequests, codeTooManyRequests,
					"too many unauthenticated requests from this address; retry later")
			}
		}
		if err != nil {
			return err
		}
		if p != nil {
			c.Set(principalKey, p)
		}
		return next(c)
	}
}

var errBadCredentials = newError(http.StatusUnauthorized, CodeUnauthorized, "invalid or expired credentials")

func (a *API) resolve(c echo.Context) (*principal, error) {
	ctx := c.Request().Context()
	now := time.Now()
	if h := c.Request().Header.Get(echo.HeaderAuthorization); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
			c.Set(authRefusedKey, "malformed Authorization header")
			return nil, newError(http.StatusUnauthorized, CodeUnauthorized, "Authorization must be 'Bearer <token>'")
		}
		t, u, err := a.store.TokenByHash(ctx, hashSecret(strings.TrimSpace(tok)))
		if errors.Is(err, schema.ErrNotFound) {
			c.Set(authRefusedKey, "unknown token")
			return nil, errBadCredentials
		} else if err != nil {
			return nil, err
		}
		if !t.Active(now) || u.Disabled {
			why := "expired token"
			switch {
			case t.RevokedAt != nil:
				why = "revoked token"
			case u.Disabled:
				why = "token of a disabled user"
			}
			c.Set(authRefusedKey, why+" "+strconv.FormatInt(t.ID, 10)+" of "+u.Username)
			return nil, errBadCredentials
		}
		if t.LastUsedAt == nil || now.Sub(*t.LastUsedAt) > time.Minute {
			if err := a.store.TouchToken(ctx, t.ID, now); err != nil {
				a.log.Warn("token last-used update failed", "token_id", t.ID, "error", err)
			}
		}
		return &principal{User: u, TokenID: t.ID}, nil
	}
	if ck, err := c.Cookie(sessionCookie); err == nil && ck.Value != "" {
		sess, u, err := a.store.SessionByHash(ctx, hashSecret(ck.Value), now)
		if errors.Is(err, schema.ErrNotFound) {
			return nil, nil // an expired session is just logged out
		} else if err != nil {
			return nil, err
		}
		if u.Disabled {
			return nil, nil
		}
		return &principal{User: u, Session: sess}, nil
	}
	return nil, nil
}

// require returns middleware admitting authenticated callers with one of
// roles (any role when roles is empty; admin always). Cookie sessions must
// also present the CSRF token on unsafe methods.
func (a *API) require(csrf bool, roles ...string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			p := principalOf(c)
			if p == nil {
				if !isAPIPath(c.Request().URL.Path) && c.Request().Method == http.MethodGet {
					return c.Redirect(http.StatusSeeOther, "/login?next="+urlQueryEscape(c.Request().URL.RequestURI()))
				}
				return newError(http.StatusUnauthorized, CodeUnauthorized, "authentication required: send 'Authorization: Bearer <token>' or log in")
			}
			if csrf && p.Session != nil && !safeMethod(c.Request().Method) {
				// From the header or the form body, never the query
				// string: a token in a URL leaks into logs and Referer.
				got := c.Request().Header.Get(csrfHeader)
				if got == "" {
					if err := boundForm(c); err != nil {
						return err
					}
					got = c.Request().PostFormValue(csrfField)
				}
				if subtle.ConstantTimeCompare([]byte(got), []byte(p.Session.CSRFToken)) != 1 {
					return newError(http.StatusForbidden, CodeCSRF, "missing or wrong CSRF token")
				}
			}
			if len(roles) > 0 && p.User.Role != schema.RoleAdmin && !slices.Contains(roles, p.User.Role) {
				return &Error{Status: http.StatusForbidden, Code: CodeForbidden,
					Message: "role " + p.User.Role + " may not do this; needs one of: " + strings.Join(append(roles, schema.RoleAdmin), ", ")}
			}
			return next(c)
		}
	}
}

// maxMultipartForm caps a console form with a file (a credential's key,
// itself at most 64 KiB): reading the CSRF token parses the whole form,
// so the cap applies before. URL-encoded forms are capped by net/http
// (10 MB).
const maxMultipartForm = 1 << 20

// boundForm parses a multipart form within maxMultipartForm: more is a
// 413, and nothing of it is held.
func boundForm(c echo.Context) error {
	r := c.Request()
	if !strings.HasPrefix(r.Header.Get(echo.HeaderContentType), echo.MIMEMultipartForm) {
		return nil
	}
	r.Body = http.MaxBytesReader(c.Response(), r.Body, maxMultipartForm)
	if err := r.ParseMultipartForm(maxMultipartForm); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return newError(http.StatusRequestEntityTooLarge, CodeTooLarge, fmt.Sprintf("form exceeds %d bytes", maxMultipartForm))
		}
		return newError(http.StatusBadRequest, CodeBadRequest, "unreadable form: "+err.Error())
	}
	return nil
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// Failed logins are throttled per account and per source address (token
// buckets over failures: a burst, then a slow refill), and every failure
// costs one bcrypt comparison, so an unknown, disabled or password-less
// account answers as slowly as a wrong password.
const (
	loginUserBurst = 10
	loginUserRate  = 1.0 / 30 // one more attempt per 30 s
	loginIPBurst   = 30
	loginIPRate    = 1.0 / 5 // one more attempt per 5 s
)

// loginThrottled is a login refused before its password was checked.
type loginThrottled struct{ RetryAfter int }

func (e *loginThrottled) Error() string { return "too many failed logins" }

// login checks a username and password and opens a session.
func (a *API) login(ctx context.Context, ip, username, password string) (*schema.User, string, error) {
	userKey := strings.ToLower(username)
	if len(userKey) > 128 {
		userKey = userKey[:128]
	}
	if !a.loginUser.ok(userKey) || !a.loginIP.ok(ip) {
		return nil, "", &loginThrottled{RetryAfter: max(a.loginUser.retryAfter(userKey), a.loginIP.retryAfter(ip))}
	}
	u, err := a.store.UserByUsername(ctx, username)
	if err != nil && !errors.Is(err, schema.ErrNotFound) {
		return nil, "", err
	}
	hash := dummyHash
	usable := err == nil && !u.Disabled && u.PasswordHash != ""
	if usable {
		hash = []byte(u.PasswordHash)
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil || !usable {
		a.loginUser.take(userKey)
		a.loginIP.take(ip)
		return nil, "", errBadLogin
	}
	a.loginUser.forget(userKey)
	secret, hash2 := newSecret()
	csrf, _ := newSecret()
	now := time.Now().UTC()
	if err := a.store.CreateSession(ctx, &schema.Session{IDHash: hash2, UserID: u.ID, CSRFToken: csrf, CreatedAt: now, ExpiresAt: now.Add(sessionTTL)}); err != nil {
		return nil, "", err
	}
	return u, secret, nil
}

var errBadLogin = newError(http.StatusUnauthorized, CodeUnauthorized, "wrong username or password")
