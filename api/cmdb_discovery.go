package api

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/opsflow/opsflow/schema"
	"github.com/opsflow/opsflow/workflows"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
)

type discoveryRequest struct {
	Addresses    []string `json:"addresses"`
	CIDR         string   `json:"cidr"`
	Port         int      `json:"port"`
	CredentialID int64    `json:"credential_id"`
	Concurrency  int      `json:"concurrency"`
	// Schedule, a cron expression, makes this a recurring discovery
	// (a Temporal Schedule) instead of one run now.
	Schedule string `json:"schedule"`
}

func (r *discoveryRequest) validate(ctx context.Context, st *schema.Store) (workflows.DiscoverHostsInput, error) {
	bad := fieldErrors{}
	in := workflows.DiscoverHostsInput{Addresses: r.Addresses, CIDR: strings.TrimSpace(r.CIDR), Port: r.Port, CredentialID: r.CredentialID, Concurrency: r.Concurrency}
	if len(in.Addresses) == 0 && in.CIDR == "" {
		bad.add("addresses", "give addresses, a cidr, or both")
	}
	for i, a := range in.Addresses {
		if _, err := schema.CanonicalAddress(a); err != nil {
			bad.add(fmt.Sprintf("addresses[%d]", i), err.Error())
		}
	}
	if r.Port != 0 && (r.Port < 1 || r.Port > 65535) {
		bad.add("port", "must be from 1 to 65535")
	}
	if r.Concurrency < 0 || r.Concurrency > 200 {
		bad.add("concurrency", "must be from 1 to 200")
	}
	if _, err := in.Targets(); err != nil {
		if strings.HasPrefix(err.Error(), "cidr") {
			bad.add("cidr", "must be a CIDR such as 10.0.0.0/24")
		} else {
			bad.add("cidr", err.Error())
		}
	}
	if r.CredentialID <= 0 {
		bad.add("credential_id", "required")
	} else if cr, err := st.Credential(ctx, r.CredentialID); errors.Is(err, schema.ErrNotFound) {
		bad.add("credential_id", "no such credential")
	} else if err != nil {
		return in, err
	} else if cr.Kind != schema.CredSSHKey && cr.Kind != schema.CredPassword {
		bad.add("credential_id", "discovery logs in over SSH: give an ssh_key or password credential, not "+cr.Kind)
	} else if len(bad) == 0 {
		if err := discoveryScope(ctx, st, cr, in, bad); err != nil {
			return in, err
		}
	}
	return in, bad.err()
}

// discoveryScope applies a credential's scope to discovery as to jobs:
// each address (with the port it will be tried on) that is a host in the
// CMDB must be in the credential's scope, and one that is not — what
// discovery usually finds — needs a credential an admin allowed on
// unlisted hosts. So an operator cannot have a credential log into a host
// of their own by calling it a discovery.
func discoveryScope(ctx context.Context, st *schema.Store, cr *schema.Credential, in workflows.DiscoverHostsInput, bad fieldErrors) error {
	byAddr, err := st.HostCIsByAddress(ctx)
	if err != nil {
		return err
	}
	port := cmp.Or(in.Port, schema.DefaultSSHPort)
	var hosts []schema.JobHost
	var fields []string
	add := func(a, field string) {
		c, err := schema.CanonicalAddress(schema.WithPort(a, port))
		if err != nil {
			bad.add(field, err.Error())
			return
		}
		h := schema.JobHost{Address: c}
		if id, ok := byAddr[c]; ok {
			h.CIID = &id
		}
		hosts, fields = append(hosts, h), append(fields, field)
	}
	for i, a := range in.Addresses {
		add(a, fmt.Sprintf("addresses[%d]", i))
	}
	if in.CIDR != "" {
		all, _ := workflows.DiscoverHostsInput{CIDR: in.CIDR}.Targets()
		for _, a := range all {
			add(a, "cidr")
		}
	}
	cbad, err := st.CheckCredentialTargets(ctx, cr, hosts, func(i int) string { return fields[i] })
	if err != nil {
		return err
	}
	for k, v := range cbad {
		bad.add(k, v)
	}
	return nil
}

// startDiscovery runs DiscoverHosts now, or on a cron schedule.
func (a *API) startDiscovery(c echo.Context) error {
	var req discoveryRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	in, err := req.validate(c.Request().Context(), a.store)
	if err != nil {
		return err
	}
	in.StartedBy = userOf(c).Username
	target := in.CIDR
	if target == "" {
		target = strings.Join(in.Addresses, ",")
	}
	if len(target) > 200 {
		target = target[:197] + "..."
	}
	if req.Schedule == "" {
		v, created, err := a.startRun(c, workflows.KindDiscovery, target, workflows.DiscoverHosts, in)
		if err != nil {
			return err
		}
		status := http.StatusOK
		if created {
			status = http.StatusCreated
		}
		return c.JSON(status, v)
	}
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s|%v|%s|%d|%d", req.Schedule, in.Addresses, in.CIDR, in.Port, in.CredentialID)))
	id := workflows.DiscoveryScheduleID(hex.EncodeToString(sum[:6]))
	setAudit(c, "schedule.create", "schedule:"+id)
	_, err = a.temporal.ScheduleClient().Create(c.Request().Context(), client.ScheduleOptions{
		ID:   id,
		Spec: client.ScheduleSpec{CronExpressions: []string{req.Schedule}},
		Action: &client.ScheduleWorkflowAction{
			ID: id, Workflow: workflows.DiscoverHosts, Args: []any{in}, TaskQueue: workflows.TaskQueueOps,
			TypedSearchAttributes: temporal.NewSearchAttributes(
				workflows.SAKind.ValueSet(workflows.KindDiscovery),
				workflows.SAStartedBy.ValueSet(in.StartedBy),
				workflows.SATarget.ValueSet(target),
			),
			WorkflowRunTimeout: 6 * time.Hour,
		},
	})
	if err != nil {
		if strings.Contains(err.Error(), "already") {
			return &Error{Status: http.StatusConflict, Code: CodeConflict, Message: "the same discovery is already scheduled", Fields: map[string]string{"schedule": "exists as " + id}}
		}
		if strings.Contains(strings.ToLower(err.Error()), "invalid") {
			return &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: "invalid schedule", Fields: map[string]string{"schedule": "not a valid cron expression"}}
		}
		return err
	}
	return c.JSON(http.StatusCreated, map[string]string{"schedule_id": id, "schedule": req.Schedule})
}

type discoveryScheduleView struct {
	ID         string      `json:"id"`
	Cron       []string    `json:"cron"`
	Paused     bool        `json:"paused"`
	NextRuns   []time.Time `json:"next_runs,omitempty"`
	RecentRuns []string    `json:"recent_runs,omitempty"`
}

// listDiscoverySchedules lists the recurring discoveries. Their
// Temporal Schedules carry the addresses and a credential's ID, no
// secret.
func (a *API) listDiscoverySchedules(c echo.Context) error {
	_, items, err := a.scheduleLists(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"items": items})
}

// deleteDiscoverySchedule stops a recurring discovery; :id is the
// schedule_id its creation returned (discovery:sched-…) or its part after
// "discovery:".
func (a *API) deleteDiscoverySchedule(c echo.Context) error {
	if err := a.removeDiscoverySchedule(c, c.Param("id")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (a *API) removeDiscoverySchedule(c echo.Context, id string) error {
	if !strings.HasPrefix(id, workflows.DiscoverySchedulePrefix) {
		id = workflows.KindDiscovery + ":" + id
	}
	setAudit(c, "schedule.delete", "schedule:"+id)
	rest := strings.TrimPrefix(id, workflows.DiscoverySchedulePrefix)
	if len(rest) != 12 || strings.Trim(rest, "0123456789abcdef") != "" {
		return newError(http.StatusNotFound, CodeNotFound, "no such discovery schedule")
	}
	ctx := c.Request().Context()
	return scheduleErr(a.temporal.ScheduleClient().GetHandle(ctx, id).Delete(ctx))
}
