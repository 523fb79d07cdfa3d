package api

import (
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
)

// maxParamLen bounds a name or ID taken from the path; no stored name or
// workflow ID is longer.
const maxParamLen = 256

// checkPathParams refuses, with 400 naming it, a path parameter that is
// too long, not UTF-8, or holds control characters (%00 in a URL arrives
// as a NUL, which PostgreSQL refuses mid-query and Temporal in an ID),
// before any handler sees it. Each handler still checks the parameter's
// own shape (a positive integer ID, a name's pattern).
func checkPathParams(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		for i, n := range c.ParamNames() {
			if n == "*" {
				continue
			}
			if i < len(c.ParamValues()) {
				if reason := badParam(c.ParamValues()[i]); reason != "" {
					return &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: "invalid " + n,
						Fields: map[string]string{n: reason}}
				}
			}
		}
		return next(c)
	}
}

func badParam(v string) string {
	switch {
	case v == "":
		return "required"
	case len(v) > maxParamLen:
		return "at most 256 bytes"
	case !utf8.ValidString(v):
		return "must be valid UTF-8"
	}
	for _, r := range v {
		if unicode.IsControl(r) {
			return "must not contain control characters"
		}
	}
	return ""
}

// loggedPath is the request path fit for logs and audit targets: a route
// whose parameter is a secret (a single-use decision link's token) is
// named by its pattern, never by the token.
func loggedPath(c echo.Context) string {
	for i, n := range c.ParamNames() {
		if n == "token" || (i < len(c.ParamValues()) && n != "*" && badParam(c.ParamValues()[i]) != "") {
			return c.Path()
		}
	}
	p := c.Request().URL.Path
	if !utf8.ValidString(p) || strings.ContainsFunc(p, unicode.IsControl) {
		return c.Path()
	}
	return p
}
