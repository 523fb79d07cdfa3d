package api

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// confirmation is the page a destructive form shows before it acts. It
// works without JavaScript, and the check is on the server, so no client
// skips it. With Resubmit the page posts the form it interrupted again,
// its fields kept and confirmed=yes added; without, Action is a route
// that does the deed itself (a CI's delete page posts to its delete).
type confirmation struct {
	Title, Message, Detail, Action, Button, Back string
	Nav                                          string // the navigation item; from the path if empty
	Danger, Resubmit                             bool
	Fields                                       []hiddenField // posted as they are (besides the CSRF token)
}

type hiddenField struct{ Name, Value string }

// confirmed reports whether the form was posted from its confirmation.
func confirmed(c echo.Context) bool { return c.FormValue("confirmed") == "yes" }

// confirmPage shows cf. Showing it changes nothing, so it is not audited.
func (a *API) confirmPage(c echo.Context, cf confirmation) error {
	notAudited(c)
	return a.render(c, http.StatusOK, "confirm", struct {
		*page
		Confirm confirmation
	}{a.newPage(c, cf.Title, cf.Nav), cf})
}

// askFirst reports whether a destructive form was confirmed; if not it
// shows the confirmation, which posts the same form again.
func (a *API) askFirst(c echo.Context, question, button, back string) (bool, error) {
	if confirmed(c) {
		return true, nil
	}
	params, _ := c.FormParams()
	var keep []hiddenField
	for k, vs := range params {
		if k == csrfField || k == "confirmed" {
			continue
		}
		for _, v := range vs {
			keep = append(keep, hiddenField{k, v})
		}
	}
	return false, a.confirmPage(c, confirmation{Title: button + "?", Message: question, Action: c.Request().URL.Path,
		Button: button, Back: back, Danger: true, Resubmit: true, Fields: keep})
}
