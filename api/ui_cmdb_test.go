package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/opsflow/opsflow/internal/testenv"
	"github.com/opsflow/opsflow/schema"
)

// TestCMDBUIInBrowser drives the CMDB pages in headless Chromium: import
// with a dry-run report, search by selector, CI detail with labels,
// relations, topology and history diffs, and a discovery started from the
// UI against a real sshd.
func TestCMDBUIInBrowser(t *testing.T) {
	e := newEnv(t)
	target := testenv.SSHD(t, 1)
	op := e.createUser(schema.RoleOperator, "operator-password-1")
	ctx, cancel := context.WithTimeout(testenv.Browser(t), 120*time.Second)
	defer cancel()
	p := fmt.Sprintf("ui%d-", time.Now().UnixNano())
	run, text := browserSteps(t, ctx)
	e.browserLogin(ctx, op.Username, "operator-password-1")

	csv := "name,labels,cpu_count\n" + p + "web,\"env=prod,role=web\",4\n" + p + "db,env=prod,8\n"
	run("dry-run import",
		chromedp.Navigate(e.srv.URL+"/cmdb/import?type=host"),
		chromedp.SetValue(chromedp.ID("i-csv"), csv),
		chromedp.Click(chromedp.ID("import")),
		chromedp.WaitVisible(chromedp.ID("report")),
	)
	if got := text("r-created"); got != "2" {
		t.Fatalf("dry run report: %s to create", got)
	}
	if _, err := e.store.CIByName(ctx, "host", p+"web"); err == nil {
		t.Fatal("dry run wrote")
	}
	run("import",
		chromedp.Click(chromedp.ID("i-dry")), // uncheck
		chromedp.Click(chromedp.ID("import")),
	)
	// The dry run's report is still on screen until the new page loads:
	// wait for the result itself.
	var web *schema.CI
	eventually(t, 30*time.Second, "import written", func() bool {
		var err error
		web, err = e.store.CIByName(ctx, "host", p+"web")
		return err == nil
	})
	run("import report", chromedp.WaitVisible(chromedp.ID("report")))
	// A bad row is reported with its row and column.
	run("bad import",
		chromedp.SetValue(chromedp.ID("i-csv"), "name,cpu_count\n"+p+"x,lots\n"),
		chromedp.Click(chromedp.ID("import")),
		chromedp.WaitVisible(chromedp.ID("row-errors")),
	)
	if errs := text("row-errors"); !strings.Contains(errs, "cpu_count") || !strings.Contains(errs, "2") {
		t.Fatalf("row errors: %q", errs)
	}

	// Search by selector.
	run("search",
		chromedp.Navigate(e.srv.URL+"/cmdb?type=host&q="+url.QueryEscape(p)+"&selector="+url.QueryEscape("role=web")),
		chromedp.WaitVisible(chromedp.ID("cis")),
	)
	if rows := text("cis"); !strings.Contains(rows, p+"web") || strings.Contains(rows, p+"db") {
		t.Fatalf("selector search: %q", rows)
	}
	run("bad selector",
		chromedp.Navigate(e.srv.URL+"/cmdb?selector="+url.QueryEscape("env in (prod")),
		chromedp.WaitVisible(chromedp.ID("search-error")),
	)

	// Detail: relations, topology, history diff.
	svc := e.mkCI("service", p+"api", map[string]any{"port": 8443}, nil)
	if res := e.do(http.MethodPost, "/api/v1/cmdb/relations", "operator", map[string]any{"type": "runs_on", "source_id": svc.ID, "target_id": web.ID}); res.Status != 201 {
		t.Fatalf("relation: %d", res.Status)
	}
	e.do(http.MethodPatch, "/api/v1/cmdb/cis/"+strconv.FormatInt(web.ID, 10), "operator", map[string]any{"attributes": map[string]any{"cpu_count": 16}}, "If-Match", "1")
	run("detail",
		chromedp.Navigate(e.srv.URL+"/cmdb/cis/"+strconv.FormatInt(web.ID, 10)),
		chromedp.WaitVisible(chromedp.ID("topology")),
	)
	if l := text("labels"); !strings.Contains(l, "role=web") {
		t.Fatalf("labels: %q", l)
	}
	if r := text("relations"); !strings.Contains(r, p+"api") || !strings.Contains(r, "runs_on") {
		t.Fatalf("relations: %q", r)
	}
	nodes, err := chromedp.Run(ctx, chromedp.Nodes(chromedp.CSSAll("svg.topology rect.node")))
	if err != nil || len(nodes) != 2 {
		t.Fatalf("topology nodes: %d %v", len(nodes), err)
	}
	if h := text("history"); !strings.Contains(h, "attributes.cpu_count") || !strings.Contains(h, "16") {
		t.Fatalf("history: %q", h)
	}

	// Discovery from the UI against a real sshd.
	res := e.do(http.MethodPost, "/api/v1/credentials", "admin", map[string]any{"name": p + "key", "kind": "ssh_key", "username": target.User, "private_key": string(target.PrivateKeyPEM), "allow_unlisted_hosts": true})
	if res.Status != 201 {
		t.Fatalf("credential: %d %s", res.Status, res.Body)
	}
	run("discover",
		chromedp.Navigate(e.srv.URL+"/cmdb/discover"),
		chromedp.SetValue(chromedp.ID("d-addresses"), target.Targets[0].Addr),
		chromedp.SetValue(chromedp.ID("d-cred"), credentialValue(t, e, p+"key")),
		chromedp.Click(chromedp.ID("discover")),
		chromedp.WaitVisible(chromedp.ID("run-id")),
	)
	runID := text("run-id")
	if !strings.HasPrefix(runID, "discovery:") {
		t.Fatalf("run %q", runID)
	}
	eventually(t, 60*time.Second, "discovery run completed", func() bool {
		r, err := e.store.Run(ctx, runID)
		return err == nil && r.Status == schema.RunCompleted
	})
	hosts, _, err := e.store.CIs(ctx, schema.CIQuery{Type: "host", Attrs: map[string]string{"address": target.Targets[0].Addr}})
	if err != nil || len(hosts) != 1 {
		t.Fatalf("discovered host: %v %v", hosts, err)
	}
}

func credentialValue(t *testing.T, e *env, name string) string {
	cs, err := e.store.Credentials(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if c.Name == name {
			return strconv.FormatInt(c.ID, 10)
		}
	}
	t.Fatalf("no credential %s", name)
	return ""
}
