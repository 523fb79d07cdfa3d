package api

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/opsflow/opsflow/internal/testenv"
	"github.com/opsflow/opsflow/schema"
)

// BenchmarkPages weighs the console's heaviest pages with 5,000 CIs, 1,000
// jobs (one of 2,000 hosts, one of 10,000 — the most a job takes) and 300
// tickets: bytes of HTML, the server's
// time (median of 5) and, in headless Chromium, the time to the load
// event. Budget: every page under 300 KB of HTML and 300 ms on the server.
//
//	go tool task bench:pages
func BenchmarkPages(b *testing.B) {
	e := newEnvWith(b, envOptions{noWorkers: true})
	ctx := context.Background()
	admin := e.createUser(schema.RoleAdmin, "admin-password-1")

	var csv strings.Builder
	csv.WriteString("name,labels,cpu_count,os\n")
	for i := range 5000 {
		fmt.Fprintf(&csv, "pg-%05d,\"env=%s,role=r%d\",%d,debian\n", i, []string{"prod", "staging", "dev"}[i%3], i%7, 2<<(i%4))
	}
	if r := e.do(http.MethodPost, "/api/v1/cmdb/import?type=host", "operator", csv.String(), "Content-Type", "text/csv"); r.Status != 200 {
		b.Fatalf("import: %d %.300s", r.Status, r.Body)
	}
	var ci schema.CI
	must(b, e.store.DB.NewSelect().Model(&ci).Where("name = ?", "pg-00042").Scan(ctx))
	name := fmt.Sprintf("pages%d", time.Now().UnixNano())
	sid := e.script(name, "uptime", nil)
	cr := e.do(http.MethodPost, "/api/v1/credentials", "admin", map[string]any{"name": name, "kind": "password", "username": "ops", "password": "not-used-here"})
	var cred schema.Credential
	cr.json(b, &cred)
	if cr.Status != 201 {
		b.Fatalf("credential: %d %s", cr.Status, cr.Body)
	}
	var big, biggest int64
	for i := range 1000 {
		n := 5
		switch i {
		case 500:
			n = 2000
		case 501:
			n = schema.MaxJobHosts
		}
		hosts := make([]schema.JobHost, n)
		for k := range hosts {
			hosts[k] = schema.JobHost{Address: fmt.Sprintf("10.%d.%d.%d:22", k/62500, k/250%250, k%250+1)}
		}
		j := &schema.Job{WorkflowID: fmt.Sprintf("job:pages-%d-%d", time.Now().UnixNano(), i), ScriptID: sid, ScriptVersion: 1, CredentialID: cred.ID,
			Status: []string{schema.JobSucceeded, schema.JobFailed, schema.JobRunning}[i%3], CreatedBy: "operator"}
		must(b, e.store.CreateJob(ctx, j, hosts))
		switch n {
		case 2000:
			big = j.ID
		case schema.MaxJobHosts:
			biggest = j.ID
		}
	}
	for i := range 300 {
		must(b, e.store.CreateTicket(ctx, &schema.Ticket{WorkflowID: fmt.Sprintf("approval:pages-%d-%d", time.Now().UnixNano(), i),
			Title: fmt.Sprintf("change %d", i), Requester: "operator", PolicyName: "p",
			Policy: schema.ApprovalPolicySpec{Levels: []schema.ApprovalLevel{{ApproverSet: schema.ApproverSet{Users: []string{admin.Username}}, Rule: schema.RuleAny}}}}))
	}

	pages := []string{"/", "/jobs", fmt.Sprintf("/jobs/%d", big), fmt.Sprintf("/jobs/%d", biggest), "/cmdb", "/cmdb?type=host", fmt.Sprintf("/cmdb/cis/%d", ci.ID),
		"/approvals?tab=all", "/runs", "/scripts", "/audit", "/api/docs"}
	bctx, cancel := context.WithTimeout(testenv.Browser(b), 5*time.Minute)
	defer cancel()
	e.browserLogin(bctx, admin.Username, "admin-password-1")
	var report strings.Builder
	report.WriteString("\n| page | HTML KB | server ms (median of 5) | browser load ms |\n|---|---|---|---|\n")
	for _, p := range pages {
		var times []time.Duration
		var size int
		status := 0
		for range 5 {
			start := time.Now()
			r := e.do(http.MethodGet, p, "admin", nil, "Accept", "text/html")
			times = append(times, time.Since(start))
			size, status = len(r.Body), r.Status
		}
		if status == http.StatusNotFound {
			b.Logf("%s: not served yet", p)
			continue
		}
		if status != 200 {
			b.Fatalf("%s: %d", p, status)
		}
		slices.Sort(times)
		if err := chromedp.Do(bctx, chromedp.Navigate(e.srv.URL+p)); err != nil {
			b.Fatalf("%s in the browser: %v", p, err)
		}
		load, err := chromedp.Run(bctx, chromedp.Evaluate[float64](
			`(() => { const n = performance.getEntriesByType("navigation")[0]; return n.loadEventEnd - n.startTime; })()`))
		if err != nil {
			b.Fatalf("%s in the browser: %v", p, err)
		}
		name := strings.NewReplacer("/", "_", "?", "_", "=", "_").Replace(strings.Trim(p, "/"))
		if name == "" {
			name = "home"
		}
		b.ReportMetric(float64(size)/1024, name+"-KB")
		b.ReportMetric(float64(times[2].Microseconds())/1000, name+"-server-ms")
		fmt.Fprintf(&report, "| %s | %.1f | %.1f | %.0f |\n", p, float64(size)/1024, float64(times[2].Microseconds())/1000, load)
	}
	b.Log(report.String())
}
