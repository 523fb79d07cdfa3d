package api

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/opsflow/opsflow/internal/secret"
	"github.com/opsflow/opsflow/schema"
	"go.temporal.io/sdk/converter"
)

// codec serves the payload codec endpoint (POST /codec/encode and
// /codec/decode) the Temporal Web UI calls to show encrypted workflow
// inputs and results to opsflow operators (decode; no payload holds a
// secret: secrets stay sealed in the database) and admins (encode). The UI calls it from the
// browser with the user's cookie, so it answers CORS for the UI's origin.
func (a *API) codec(c echo.Context) error {
	a.corsForTemporalUI(c)
	if c.Request().Method == http.MethodOptions {
		return c.NoContent(http.StatusNoContent)
	}
	if a.secrets == nil {
		return newError(http.StatusServiceUnavailable, CodeUnavailable, "no secret key configured")
	}
	op := c.Param("op")
	setAudit(c, "codec."+op, "payloads")
	switch op {
	case "decode":
	case "encode":
		// An encoded payload is accepted by opsflow's workflows (the
		// strict codec refuses any other): with access to the Temporal
		// frontend, whoever can encode could start workflows or send
		// updates as anyone. Only an admin may.
		if u := userOf(c); u == nil || u.Role != schema.RoleAdmin {
			return newError(http.StatusForbidden, CodeForbidden, "encoding payloads is admin-only")
		}
	default:
		return newError(http.StatusNotFound, CodeNotFound, "no such codec operation (encode or decode)")
	}
	converter.NewPayloadCodecHTTPHandler(&secret.PayloadCodec{Keys: a.secrets}).ServeHTTP(c.Response(), c.Request())
	return nil
}

// codecCORS answers CORS for the Temporal UI on the codec's paths before
// authentication decides, so its refusals reach the UI readable.
func (a *API) codecCORS(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if strings.HasPrefix(c.Request().URL.Path, "/codec/") {
			a.corsForTemporalUI(c)
		}
		return next(c)
	}
}

func (a *API) corsForTemporalUI(c echo.Context) {
	origin := c.Request().Header.Get(echo.HeaderOrigin)
	if origin == "" || origin != a.uiURL {
		return
	}
	h := c.Response().Header()
	if h.Get(echo.HeaderAccessControlAllowOrigin) != "" {
		return
	}
	h.Set(echo.HeaderAccessControlAllowOrigin, origin)
	h.Set(echo.HeaderAccessControlAllowCredentials, "true")
	h.Set(echo.HeaderAccessControlAllowMethods, "POST, OPTIONS")
	h.Set(echo.HeaderAccessControlAllowHeaders, "Content-Type, X-Namespace, Authorization")
	h.Add(echo.HeaderVary, echo.HeaderOrigin)
}
