package api

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// confirmation is the page a destructive form shows before it acts: the
// same form posted again with confirmed=yes does it. It works without
// JavaScript, and the check is on the server, so no client skips it.
type confirmation struct {
	Title, Message, Action, Button, Back string
	Nav                                  string // the navigation item; jobs if empty
	Danger                               bool
	// Fields are posted again as they came (besides the CSRF token).
	Fields map[string]string
}

func confirmed(c echo.Context) bool { return c.FormValue("confirmed") == "yes" }

func (a *API) confirmPage(c echo.Context, cf confirmation) error {
	if cf.Nav == "" {
		cf.Nav = "jobs"
	}
	return a.render(c, http.StatusOK, "job_confirm", struct {
		*page
		Confirm confirmation
	}{a.newPage(c, cf.Title, cf.Nav), cf})
}
