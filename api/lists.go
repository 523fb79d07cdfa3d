package api

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // zones for tz in forms, on hosts without /usr/share/zoneinfo

	"github.com/labstack/echo/v4"
	"github.com/opsflow/opsflow/schema"
	"github.com/opsflow/opsflow/workflows"
)

// The list endpoints (jobs, runs, CIs, approval tickets, audit) and their
// pages share one model: filters of their own, then sort, order, cursor
// and limit (schema.Page); the answer is one page with next_cursor,
// prev_cursor and the total for the filter. A filter value or sort key the
// list does not know is refused with 422 naming the parameter.

var (
	jobStatuses = []string{schema.JobQueued, schema.JobAwaitingApproval, schema.JobRunning, schema.JobPaused,
		schema.JobSucceeded, schema.JobFailed, schema.JobAborted, schema.JobRejected}
	runStatuses    = []string{schema.RunRunning, schema.RunAwaitingRetry, schema.RunCompleted, schema.RunFailed, schema.RunCanceled, schema.RunTerminated, schema.RunTimedOut}
	runKinds       = []string{workflows.KindJob, workflows.KindApproval, workflows.KindDiscovery, workflows.KindDemo, workflows.KindRunbook}
	ticketStatuses = []string{schema.TicketPending, schema.TicketApproved, schema.TicketRejected, schema.TicketExpired, schema.TicketWithdrawn}
)

// maxSearch bounds a search or filter text.
const maxSearch = 256

// pageParams reads the paging parameters every list takes.
func pageParams(q url.Values, bad fieldErrors) schema.Page {
	p := schema.Page{Sort: q.Get("sort"), Order: q.Get("order"), Cursor: q.Get("cursor")}
	p.Limit = intParam(q.Get("limit"), "limit", 1, 500, bad)
	return p
}

// oneOf checks a filter value against the values the list knows.
func oneOf(q url.Values, name string, allowed []string, bad fieldErrors) string {
	v := q.Get(name)
	if v == "" {
		return ""
	}
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	bad.add(name, "must be one of "+strings.Join(allowed, ", "))
	return ""
}

// textParam is a free-text filter, bounded.
func textParam(q url.Values, name string, bad fieldErrors) string {
	v := strings.TrimSpace(q.Get(name))
	if len(v) > maxSearch {
		bad.add(name, "at most 256 bytes")
		return ""
	}
	return v
}

// rangeParams reads since and until: RFC 3339 times, or from a form a
// date ("2026-01-02") or a date-time without zone, both read in the
// viewer's time zone (tz, an IANA name that ui/static/time.js fills in;
// UTC without it). A date as until means the end of that day.
func rangeParams(q url.Values, bad fieldErrors) (since, until time.Time) {
	loc := zoneParam(q.Get("tz"), bad)
	return listTime(q.Get("since"), "since", false, loc, bad), listTime(q.Get("until"), "until", true, loc, bad)
}

// zoneParam reads an IANA time zone name ("Asia/Shanghai"); empty is UTC.
func zoneParam(v string, bad fieldErrors) *time.Location {
	if v == "" {
		return time.UTC
	}
	if len(v) > 64 || v == "Local" {
		bad.add("tz", "must be an IANA time zone name such as Europe/Berlin")
		return time.UTC
	}
	loc, err := time.LoadLocation(v)
	if err != nil {
		bad.add("tz", "must be an IANA time zone name such as Europe/Berlin")
		return time.UTC
	}
	return loc
}

func listTime(v, name string, end bool, loc *time.Location, bad fieldErrors) time.Time {
	if v == "" {
		return time.Time{}
	}
	if t, err := time.ParseInLocation("2006-01-02", v, loc); err == nil {
		if end {
			t = t.AddDate(0, 0, 1)
		}
		return t.UTC()
	}
	if t, err := time.ParseInLocation("2006-01-02T15:04", v, loc); err == nil {
		return t.UTC()
	}
	return timeParam(v, name, bad)
}

// pageJSON answers one page of a list.
func pageJSON[T any](c echo.Context, items []T, info schema.PageInfo) error {
	if items == nil {
		items = []T{}
	}
	return c.JSON(http.StatusOK, map[string]any{"items": items, "next_cursor": info.Next, "prev_cursor": info.Prev, "total": info.Total})
}

// jobFilter reads the jobs list's query.
func (a *API) jobFilter(ctx context.Context, q url.Values, bad fieldErrors) (schema.JobFilter, error) {
	f := schema.JobFilter{Status: oneOf(q, "status", jobStatuses, bad), CreatedBy: textParam(q, "created_by", bad),
		Host: textParam(q, "host", bad), Q: textParam(q, "q", bad), Page: pageParams(q, bad)}
	f.Since, f.Until = rangeParams(q, bad)
	if s := textParam(q, "script", bad); s != "" {
		id, err := a.store.ScriptIDByName(ctx, s)
		if errors.Is(err, schema.ErrNotFound) {
			if n, perr := strconv.ParseInt(s, 10, 64); perr == nil && n > 0 {
				id, err = n, nil
			} else {
				bad.add("script", "no script is named "+strconv.Quote(s))
			}
		}
		if err != nil && !errors.Is(err, schema.ErrNotFound) {
			return f, err
		}
		f.ScriptID = id
	}
	return f, nil
}

func (a *API) listJobs(c echo.Context) error {
	bad := fieldErrors{}
	f, err := a.jobFilter(c.Request().Context(), c.QueryParams(), bad)
	if err != nil {
		return err
	}
	if err := bad.err(); err != nil {
		return err
	}
	js, info, err := a.store.JobList(c.Request().Context(), f)
	if err != nil {
		return err
	}
	return pageJSON(c, js, info)
}

// runFilter reads the runs list's query.
func runFilter(q url.Values, bad fieldErrors) schema.RunFilter {
	p := pageParams(q, bad)
	f := schema.RunFilter{Kind: oneOf(q, "kind", runKinds, bad), Status: oneOf(q, "status", runStatuses, bad),
		StartedBy: textParam(q, "started_by", bad), Q: textParam(q, "q", bad),
		Sort: p.Sort, Order: p.Order, Cursor: p.Cursor, Limit: p.Limit}
	f.Since, f.Until = rangeParams(q, bad)
	return f
}

func (a *API) listRuns(c echo.Context) error {
	bad := fieldErrors{}
	f := runFilter(c.QueryParams(), bad)
	if err := bad.err(); err != nil {
		return err
	}
	rs, info, err := a.store.RunList(c.Request().Context(), f)
	if err != nil {
		return err
	}
	items := make([]runView, len(rs))
	for i, r := range rs {
		items[i] = a.view(r)
	}
	return pageJSON(c, items, info)
}

// ciQuery reads the CI list's query; attr.NAME=VALUE filters by attribute.
func ciQuery(q url.Values, bad fieldErrors) schema.CIQuery {
	p := pageParams(q, bad)
	cq := schema.CIQuery{Type: q.Get("type"), Selector: q.Get("selector"), Q: q.Get("q"), Attrs: map[string]string{},
		Sort: p.Sort, Order: p.Order, Cursor: p.Cursor, Limit: p.Limit}
	for k, vs := range q {
		if name, ok := strings.CutPrefix(k, "attr."); ok {
			if len(vs) != 1 {
				bad.add(k, "give one value")
				continue
			}
			cq.Attrs[name] = vs[0]
		}
	}
	return cq
}

func (a *API) listCIs(c echo.Context) error {
	bad := fieldErrors{}
	cq := ciQuery(c.QueryParams(), bad)
	if err := bad.err(); err != nil {
		return err
	}
	cis, info, err := a.store.CIList(c.Request().Context(), cq)
	if err != nil {
		return err
	}
	return pageJSON(c, cis, info)
}

// ticketQuery reads the ticket list's query for user me; mine is
// requested (me the requester) or to_decide (pending tickets me may decide
// now, also for those who delegated to me).
func (a *API) ticketQuery(ctx context.Context, q url.Values, me, mine string, bad fieldErrors) (schema.TicketQuery, error) {
	p := pageParams(q, bad)
	tq := schema.TicketQuery{Status: oneOf(q, "status", ticketStatuses, bad), RequestedBy: textParam(q, "requester", bad),
		Q: textParam(q, "q", bad), Sort: p.Sort, Order: p.Order, Cursor: p.Cursor, Limit: p.Limit}
	tq.Since, tq.Until = rangeParams(q, bad)
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			bad.add("after", "must be a ticket id")
		}
		tq.After = n
	}
	switch mine {
	case "":
	case "requested":
		if tq.RequestedBy != "" && tq.RequestedBy != me {
			bad.add("requester", "must be empty or you with mine=requested")
		}
		tq.RequestedBy = me
	case "to_decide":
		var err error
		if tq.ToDecide, err = a.deciders(ctx, me); err != nil {
			return tq, err
		}
	default:
		bad.add("mine", "must be requested or to_decide")
	}
	return tq, nil
}

func (a *API) listApprovals(c echo.Context) error {
	bad := fieldErrors{}
	tq, err := a.ticketQuery(c.Request().Context(), c.QueryParams(), userOf(c).Username, c.QueryParam("mine"), bad)
	if err != nil {
		return err
	}
	if err := bad.err(); err != nil {
		return err
	}
	ts, info, err := a.store.TicketList(c.Request().Context(), tq)
	if err != nil {
		return err
	}
	return pageJSON(c, ts, info)
}

// auditFilter reads the audit list's query. A cursor of digits is the
// older form (an entry ID: entries below it).
func auditFilter(q url.Values, bad fieldErrors) schema.AuditFilter {
	p := pageParams(q, bad)
	f := schema.AuditFilter{Actor: textParam(q, "actor", bad), Action: textParam(q, "action", bad), Target: textParam(q, "target", bad),
		Q: textParam(q, "q", bad), Sort: p.Sort, Order: p.Order, Cursor: p.Cursor, Limit: p.Limit}
	f.Since, f.Until = rangeParams(q, bad)
	if n, err := strconv.ParseInt(f.Cursor, 10, 64); err == nil {
		if n <= 0 {
			bad.add("cursor", "not a cursor returned by this API")
		}
		f.Before, f.Cursor = n, ""
	}
	return f
}

func (a *API) listAudit(c echo.Context) error {
	bad := fieldErrors{}
	f := auditFilter(c.QueryParams(), bad)
	if err := bad.err(); err != nil {
		return err
	}
	es, info, err := a.store.AuditList(c.Request().Context(), f)
	if err != nil {
		return err
	}
	return pageJSON(c, es, info)
}
