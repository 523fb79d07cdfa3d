package api

import (
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/opsflow/opsflow/internal/secret"
	"go.temporal.io/sdk/converter"
)

// codec serves the payload codec endpoint (POST /codec/encode and
// /codec/decode) the Temporal Web UI calls to show encrypted workflow
// inputs and results to logged-in opsflow users. The UI calls it from the
// browser with the user's cookie, so it answers CORS for the UI's origin.
func (a *API) codec(c echo.Context) error {
	a.corsForTemporalUI(c)
	if c.Request().Method == http.MethodOptions {
		return c.NoContent(http.StatusNoContent)
	}
	if a.secrets == nil {
		return newError(http.StatusServiceUnavailable, CodeUnavailable, "no secret key configured")
	}
	setAudit(c, "codec."+c.Param("op"), "payloads")
	converter.NewPayloadCodecHTTPHandler(&secret.PayloadCodec{Keys: a.secrets}).ServeHTTP(c.Response(), c.Request())
	return nil
}

func (a *API) corsForTemporalUI(c echo.Context) {
	origin := c.Request().Header.Get(echo.HeaderOrigin)
	if origin == "" || origin != a.uiURL {
		return
	}
	h := c.Response().Header()
	h.Set(echo.HeaderAccessControlAllowOrigin, origin)
	h.Set(echo.HeaderAccessControlAllowCredentials, "true")
	h.Set(echo.HeaderAccessControlAllowMethods, "POST, OPTIONS")
	h.Set(echo.HeaderAccessControlAllowHeaders, "Content-Type, X-Namespace, Authorization")
	h.Add(echo.HeaderVary, echo.HeaderOrigin)
}
