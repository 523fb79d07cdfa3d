package api

import (
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"go.temporal.io/sdk/client"
)

// healthz answers 200 only when both the database and Temporal answer.
func (a *API) healthz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 3*time.Second)
	defer cancel()
	out := map[string]string{"status": "ok", "database": "ok", "temporal": "ok", "version": a.version}
	status := http.StatusOK
	if err := a.store.Ping(ctx); err != nil {
		out["database"], out["status"], status = "unavailable", "unavailable", http.StatusServiceUnavailable
	}
	if _, err := a.temporal.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
		out["temporal"], out["status"], status = "unavailable", "unavailable", http.StatusServiceUnavailable
	}
	return c.JSON(status, out)
}

func (a *API) me(c echo.Context) error {
	return c.JSON(http.StatusOK, userOf(c))
}
