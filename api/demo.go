package api

import (
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/opsflow/opsflow/workflows"
)

type startDemoRequest struct {
	Steps int `json:"steps"`
	// StepInterval is a Go duration between steps, e.g. "2s".
	StepInterval string `json:"step_interval"`
	Target       string `json:"target"`
}

func (r startDemoRequest) validate() (workflows.DemoInput, error) {
	bad := fieldErrors{}
	in := workflows.DemoInput{Steps: r.Steps, Target: strings.TrimSpace(r.Target)}
	if in.Steps == 0 {
		in.Steps = 3
	}
	if in.Steps < 1 || in.Steps > 100 {
		bad.add("steps", "must be from 1 to 100")
	}
	if r.StepInterval != "" {
		d, err := time.ParseDuration(r.StepInterval)
		if err != nil || d < 0 || d > 24*time.Hour {
			bad.add("step_interval", "must be a duration such as 2s, from 0 to 24h")
		}
		in.StepInterval = d
	}
	if in.Target == "" {
		in.Target = "localhost"
	}
	if len(in.Target) > 200 {
		bad.add("target", "must be at most 200 characters")
	}
	return in, bad.err()
}

func (a *API) startDemo(c echo.Context) error {
	var req startDemoRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	in, err := req.validate()
	if err != nil {
		return err
	}
	v, created, err := a.startRun(c, workflows.KindDemo, in.Target, workflows.Demo, in)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return c.JSON(status, v)
}
