package api

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/opsflow/opsflow/schema"
)

// Stable error codes. Clients switch on these; never change one.
const (
	CodeBadRequest       = "bad_request"
	CodeInvalidJSON      = "invalid_json"
	CodeValidation       = "validation_failed"
	CodeUnsupportedMedia = "unsupported_media_type"
	CodeTooLarge         = "request_too_large"
	CodeUnauthorized     = "unauthorized"
	CodeForbidden        = "forbidden"
	CodeCSRF             = "csrf_failed"
	CodeNotFound         = "not_found"
	CodeGone             = "gone"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeConflict         = "conflict"
	CodeVersionConflict  = "version_conflict"
	CodePrecondition     = "precondition_required"
	CodeUnavailable      = "unavailable"
	CodeInternal         = "internal"
)

// Error is the body of every failed API response:
// {"error":{"code":…,"message":…,"fields":{…}}}.
type Error struct {
	Status  int               `json:"-"`
	Code    string            `json:"code"`
	Message string            `json:"message"`
	Fields  map[string]string `json:"fields,omitempty"`
	// Details carries structured context for some codes, such as the CIs a
	// refused type change would invalidate.
	Details any `json:"details,omitempty"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func newError(status int, code, msg string) *Error {
	return &Error{Status: status, Code: code, Message: msg}
}

// fieldErrors collects per-field validation failures.
type fieldErrors map[string]string

func (f fieldErrors) add(field, reason string) {
	if _, ok := f[field]; !ok {
		f[field] = reason
	}
}

// err returns nil when no field failed.
func (f fieldErrors) err() error {
	if len(f) == 0 {
		return nil
	}
	names := make([]string, 0, len(f))
	for k := range f {
		names = append(names, k)
	}
	slices.Sort(names)
	return &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation,
		Message: "invalid " + strings.Join(names, ", "), Fields: f}
}

// toError maps any handler error to an API error.
func toError(err error) *Error {
	var ae *Error
	var he *echo.HTTPError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, new(*schema.ValidationError)):
		var ve *schema.ValidationError
		errors.As(err, &ve)
		return &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: ve.Message, Fields: ve.Fields}
	case errors.As(err, new(*schema.ConflictError)):
		var ce *schema.ConflictError
		errors.As(err, &ce)
		return &Error{Status: http.StatusConflict, Code: CodeConflict, Message: ce.Message, Fields: ce.Fields}
	case errors.As(err, new(*schema.VersionMismatch)):
		var vm *schema.VersionMismatch
		errors.As(err, &vm)
		return &Error{Status: http.StatusConflict, Code: CodeVersionConflict, Message: vm.Error(),
			Fields:  map[string]string{"If-Match": "stale; the current version is " + strconv.FormatInt(vm.Current, 10)},
			Details: map[string]int64{"current_version": vm.Current}}
	case errors.As(err, new(*schema.DependentsError)):
		var de *schema.DependentsError
		errors.As(err, &de)
		return &Error{Status: http.StatusConflict, Code: CodeConflict, Message: de.Error(), Fields: map[string]string{"cascade": "required to delete a CI with relations"}}
	case errors.As(err, new(*schema.TypeChangeRefused)):
		var tr *schema.TypeChangeRefused
		errors.As(err, &tr)
		return &Error{Status: http.StatusConflict, Code: CodeConflict, Message: tr.Error(), Details: map[string]any{"offending": tr.Offending}}
	case errors.As(err, new(*schema.ManagedError)):
		var me *schema.ManagedError
		errors.As(err, &me)
		return &Error{Status: http.StatusConflict, Code: CodeConflict, Message: me.Error(), Details: map[string]string{"managed_by": me.Source}}
	case errors.Is(err, schema.ErrNotFound):
		return newError(http.StatusNotFound, CodeNotFound, "not found")
	case errors.Is(err, schema.ErrConflict):
		return newError(http.StatusConflict, CodeConflict, "already exists")
	case errors.Is(err, schema.ErrBadCursor):
		return &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: "malformed cursor",
			Fields: map[string]string{"cursor": "not a cursor returned by this API"}}
	case errors.As(err, &he):
		switch he.Code {
		case http.StatusNotFound:
			return newError(he.Code, CodeNotFound, "no such route")
		case http.StatusMethodNotAllowed:
			return newError(he.Code, CodeMethodNotAllowed, "method not allowed on this route")
		case http.StatusRequestEntityTooLarge:
			return newError(he.Code, CodeTooLarge, "request body too large")
		case http.StatusUnauthorized:
			return newError(he.Code, CodeUnauthorized, "authentication required")
		case http.StatusForbidden:
			return newError(he.Code, CodeForbidden, "forbidden")
		case http.StatusServiceUnavailable:
			return newError(he.Code, CodeUnavailable, "service unavailable")
		}
		if he.Code >= 400 && he.Code < 500 {
			msg, _ := he.Message.(string)
			if msg == "" {
				msg = http.StatusText(he.Code)
			}
			return newError(he.Code, CodeBadRequest, msg)
		}
	}
	return newError(http.StatusInternalServerError, CodeInternal, "internal error")
}

// errorHandler renders errors as JSON for the API and as a page for the UI.
func (a *API) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	e := toError(err)
	rid := c.Response().Header().Get(echo.HeaderXRequestID)
	if e.Status >= 500 {
		a.log.Error("request failed", "method", c.Request().Method, "path", c.Path(), "request_id", rid, "error", err)
	}
	if !isAPIPath(c.Request().URL.Path) {
		a.renderErrorPage(c, e)
		return
	}
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(e.Status)
		return
	}
	_ = c.JSON(e.Status, map[string]*Error{"error": e})
}

func isAPIPath(p string) bool {
	return strings.HasPrefix(p, "/api/") || p == "/healthz" || p == "/metrics" || strings.HasPrefix(p, "/codec") || strings.HasPrefix(p, "/hooks/")
}
