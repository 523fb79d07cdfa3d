package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/opsflow/opsflow/schema"
)

// seedJobs records n jobs by user by through the store (no workflow runs):
// job i is failed when i%3 == 0, succeeded otherwise, its summary
// "summary-<prefix>-<i>" and its one host 10.8.<i%4>.1.
func seedJobs(t *testing.T, e *env, prefix, by string, n int) []schema.Job {
	t.Helper()
	ctx := context.Background()
	cr := &schema.Credential{Name: "key-" + prefix, Kind: schema.CredSSHKey, Auth: schema.CredSSHKey, Username: "root", Secret: "sealed"}
	if err := e.store.CreateCredential(ctx, cr); err != nil {
		t.Fatal(err)
	}
	sc, _, err := e.store.CreateScript(ctx, schema.ScriptInput{Name: "script-" + prefix, Content: "true"}, by)
	if err != nil {
		t.Fatal(err)
	}
	jobs := make([]schema.Job, n)
	for i := range n {
		status := schema.JobSucceeded
		if i%3 == 0 {
			status = schema.JobFailed
		}
		j := &schema.Job{WorkflowID: fmt.Sprintf("job:%s-%d", prefix, i), ScriptID: sc.ID, ScriptVersion: 1, CredentialID: cr.ID,
			Status: status, CreatedBy: by, Summary: fmt.Sprintf("summary-%s-%d", prefix, i)}
		if err := e.store.CreateJob(ctx, j, []schema.JobHost{{Address: fmt.Sprintf("10.8.%d.1", i%4)}}); err != nil {
			t.Fatal(err)
		}
		jobs[i] = *j
	}
	return jobs
}

type pageResp struct {
	Items []struct {
		ID     int64 `json:"id"`
		Status any   `json:"status"`
	} `json:"items"`
	Next  string `json:"next_cursor"`
	Prev  string `json:"prev_cursor"`
	Total *int   `json:"total"`
}

func (e *env) listPage(t *testing.T, role, path string) pageResp {
	t.Helper()
	var p pageResp
	e.listInto(t, role, path, &p)
	return p
}

// pagingResp is any list's paging fields, whatever its items (runs are
// identified by strings, the other lists by numbers).
type pagingResp struct {
	Items []json.RawMessage `json:"items"`
	Next  string            `json:"next_cursor"`
	Prev  string            `json:"prev_cursor"`
	Total *int              `json:"total"`
}

func (e *env) listPaging(t *testing.T, role, path string) pagingResp {
	t.Helper()
	var p pagingResp
	e.listInto(t, role, path, &p)
	return p
}

func (e *env) listInto(t *testing.T, role, path string, v any) {
	t.Helper()
	res := e.do(http.MethodGet, path, role, nil)
	if res.Status != http.StatusOK {
		t.Fatalf("%s: %d %s", path, res.Status, res.Body)
	}
	res.json(t, v)
	var total struct{ Total *int }
	res.json(t, &total)
	if total.Total == nil {
		t.Fatalf("%s: no total in %s", path, res.Body)
	}
}

// TestListEndpointsPageAndFilter: the job list honours its filters, pages
// by cursor both ways with a total, and refuses what it does not know;
// every list endpoint answers with the same paging fields.
func TestListEndpointsPageAndFilter(t *testing.T) {
	e := newEnv(t)
	p := fmt.Sprintf("api%d", time.Now().UnixNano())
	by := "lists-" + p
	jobs := seedJobs(t, e, p, by, 7)

	base := "/api/v1/jobs?created_by=" + url.QueryEscape(by) + "&limit=3"
	first := e.listPage(t, "viewer", base)
	if *first.Total != 7 || len(first.Items) != 3 || first.Next == "" || first.Prev != "" || first.Items[0].ID != jobs[6].ID {
		t.Fatalf("first page: %+v", first)
	}
	second := e.listPage(t, "viewer", base+"&cursor="+url.QueryEscape(first.Next))
	third := e.listPage(t, "viewer", base+"&cursor="+url.QueryEscape(second.Next))
	if len(second.Items) != 3 || len(third.Items) != 1 || third.Next != "" || third.Items[0].ID != jobs[0].ID || *third.Total != 7 {
		t.Fatalf("later pages: %+v %+v", second, third)
	}
	back := e.listPage(t, "viewer", base+"&cursor="+url.QueryEscape(third.Prev))
	if fmt.Sprint(back.Items) != fmt.Sprint(second.Items) || back.Prev == "" || back.Next == "" {
		t.Fatalf("back from the last page: %+v, want %+v", back, second)
	}
	again := e.listPage(t, "viewer", base+"&cursor="+url.QueryEscape(back.Prev))
	if fmt.Sprint(again.Items) != fmt.Sprint(first.Items) || again.Prev != "" {
		t.Fatalf("back to the first page: %+v, want %+v", again, first)
	}

	failed := e.listPage(t, "viewer", "/api/v1/jobs?status=failed&created_by="+url.QueryEscape(by))
	if *failed.Total != 3 || len(failed.Items) != 3 {
		t.Fatalf("status=failed: %+v", failed)
	}
	for _, it := range failed.Items {
		if it.Status != schema.JobFailed {
			t.Fatalf("status=failed lists a %s job", it.Status)
		}
	}
	for q, want := range map[string]int{
		"host=10.8.1.1":                   2,
		"q=summary-" + p + "-5":           1,
		"q=%23" + fmt.Sprint(jobs[2].ID):  1,
		"script=script-" + p:              7,
		"since=2000-01-01&until=2001-1-1": -1, // bad until
		"sort=status&order=asc":           7,
		"since=2999-01-01":                0,
	} {
		path := "/api/v1/jobs?created_by=" + url.QueryEscape(by) + "&" + q
		if want < 0 {
			if res := e.do(http.MethodGet, path, "viewer", nil); res.Status != http.StatusUnprocessableEntity {
				t.Fatalf("%s: %d %s", q, res.Status, res.Body)
			}
			continue
		}
		if got := e.listPage(t, "viewer", path); *got.Total != want || len(got.Items) != want {
			t.Fatalf("%s: total %d, %d items; want %d", q, *got.Total, len(got.Items), want)
		}
	}

	// What a list does not know is refused, naming the parameter.
	for path, field := range map[string]string{
		"/api/v1/jobs?status=sideways":     "status",
		"/api/v1/jobs?sort=params":         "sort",
		"/api/v1/jobs?order=up":            "order",
		"/api/v1/jobs?script=no-such-" + p: "script",
		"/api/v1/runs?kind=bogus":          "kind",
		"/api/v1/runs?sort=summary":        "sort",
		"/api/v1/cmdb/cis?sort=attributes": "sort",
		"/api/v1/approvals?status=maybe":   "status",
		"/api/v1/approvals?sort=policy":    "sort",
		"/api/v1/audit?sort=detail":        "sort",
		"/api/v1/audit?since=yesterday":    "since",
		// A cursor belongs to its sort and order.
		"/api/v1/jobs?sort=status&cursor=" + url.QueryEscape(first.Next): "cursor",
	} {
		res := e.do(http.MethodGet, path, "admin", nil)
		var body struct {
			Error struct{ Fields map[string]string } `json:"error"`
		}
		res.json(t, &body)
		want := http.StatusUnprocessableEntity
		if field == "cursor" {
			want = http.StatusBadRequest
		}
		if res.Status != want || body.Error.Fields[field] == "" {
			t.Fatalf("%s: %d %s, want 422 naming %s", path, res.Status, res.Body, field)
		}
	}

	// Every list answers with the same paging fields.
	for _, path := range []string{"/api/v1/runs?limit=2", "/api/v1/cmdb/cis?sort=name&limit=2", "/api/v1/approvals?sort=created", "/api/v1/audit?actor=nobody-" + p} {
		e.listPaging(t, "admin", path)
	}
	for _, a := range []string{"lists.one", "lists.two", "lists.one"} {
		if err := e.store.AppendAudit(context.Background(), &schema.AuditEntry{Actor: by, Action: a, Target: "t:" + p}); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.listPaging(t, "admin", "/api/v1/audit?action=lists.one&actor="+url.QueryEscape(by)); *got.Total != 2 {
		t.Fatalf("audit by action: %+v", got)
	}
	if res := e.do(http.MethodGet, "/api/v1/audit", "viewer", nil); res.Status != http.StatusForbidden {
		t.Fatalf("viewer reads the audit log: %d", res.Status)
	}
}

// TestRangeParamsInTheViewersZone: dates and times typed in a filter or
// delegation form are read in the zone the form carries (tz), UTC without
// one; a zone that is not an IANA name is refused by field.
func TestRangeParamsInTheViewersZone(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		q            string
		since, until time.Time
		bad          string
	}{
		{q: "since=2026-01-02&until=2026-01-02", since: at("2026-01-02T00:00:00Z"), until: at("2026-01-03T00:00:00Z")},
		{q: "since=2026-01-02&until=2026-01-02&tz=Asia/Shanghai", since: at("2026-01-01T16:00:00Z"), until: at("2026-01-02T16:00:00Z")},
		{q: "since=2026-07-01T09:30&tz=America/New_York", since: at("2026-07-01T13:30:00Z")},
		{q: "since=2026-07-01T09:30:00%2B02:00&tz=America/New_York", since: at("2026-07-01T07:30:00Z")},
		{q: "since=2026-01-02&tz=Mars/Olympus", since: at("2026-01-02T00:00:00Z"), bad: "tz"},
		{q: "since=2026-01-02&tz=Local", since: at("2026-01-02T00:00:00Z"), bad: "tz"},
		{q: "until=yesterday", bad: "until"},
	} {
		q, err := url.ParseQuery(tc.q)
		if err != nil {
			t.Fatal(err)
		}
		bad := fieldErrors{}
		since, until := rangeParams(q, bad)
		if !since.Equal(tc.since) || !until.Equal(tc.until) {
			t.Errorf("%s: since %v until %v, want %v and %v", tc.q, since, until, tc.since, tc.until)
		}
		if _, ok := bad[tc.bad]; (tc.bad != "") != ok || (tc.bad == "" && len(bad) > 0) {
			t.Errorf("%s: field errors %v, want one for %q", tc.q, bad, tc.bad)
		}
	}

	// The delegation form reads its datetime-local fields the same way.
	for _, tc := range []struct {
		form url.Values
		want time.Time
	}{
		{url.Values{"ends_at": {"2026-12-24T18:00"}}, at("2026-12-24T18:00:00Z")},
		{url.Values{"ends_at": {"2026-12-24T18:00"}, "tz": {"Europe/Berlin"}}, at("2026-12-24T17:00:00Z")},
	} {
		req := httptest.NewRequest(http.MethodPost, "/account/delegations", strings.NewReader(tc.form.Encode()))
		req.Header.Set(echo.HeaderContentType, echo.MIMEApplicationForm)
		bad := fieldErrors{}
		if got := formTime(echo.New().NewContext(req, httptest.NewRecorder()), "ends_at", bad); !got.Equal(tc.want) || len(bad) > 0 {
			t.Errorf("%v: %v %v, want %v", tc.form, got, bad, tc.want)
		}
	}
}
