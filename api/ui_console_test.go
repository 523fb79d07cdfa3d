package api

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/opsflow/opsflow/internal/testenv"
	"github.com/opsflow/opsflow/schema"
)

// TestConsoleShellInBrowser: an approver logs in and lands on the home
// page, which lists the ticket waiting for them, as does the badge on the
// navigation; times show in the viewer's zone with UTC on hover; the
// active navigation item follows the page; and at 360 px (a phone) no
// page overflows sideways and Log out stays on screen.
func TestConsoleShellInBrowser(t *testing.T) {
	e := newEnv(t)
	ap := e.createUser(schema.RoleApprover, "approver-password-1")
	p := fmt.Sprintf("shell%d", time.Now().UnixNano())
	if r := e.do(http.MethodPost, "/api/v1/approval-policies", "admin", map[string]any{"name": p, "spec": map[string]any{
		"levels": []map[string]any{{"users": []string{ap.Username}, "rule": "any"}}}}); r.Status != 201 {
		t.Fatalf("policy: %d %s", r.Status, r.Body)
	}
	r := e.do(http.MethodPost, "/api/v1/approvals", "operator", map[string]any{"title": p + " restart db", "policy": p})
	var tk ticketResp
	r.json(t, &tk)
	if r.Status != 201 {
		t.Fatalf("open: %d %s", r.Status, r.Body)
	}
	// The ticket's approvers are written once its workflow opens the level.
	eventually(t, time.Minute, "the ticket to wait for "+ap.Username, func() bool {
		n, err := e.store.WaitingCount(context.Background(), []string{ap.Username})
		return err == nil && n == 1
	})

	ctx, cancel := context.WithTimeout(testenv.Browser(t), 120*time.Second)
	defer cancel()
	do, text := browserSteps(t, ctx)
	do("zone", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: "Asia/Kolkata"})
		return err
	}))
	e.browserLogin(ctx, ap.Username, "approver-password-1")
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	if !strings.HasSuffix(loc, "/") {
		t.Fatalf("after login at %s, want the home page", loc)
	}
	if w := text("home-waiting"); !strings.Contains(w, p+" restart db") {
		t.Fatalf("home page's waiting list: %q", w)
	}
	if b := text("waiting-badge"); !strings.Contains(b, "1") {
		t.Fatalf("approvals badge: %q", b)
	}
	// The ticket's time: shown in the viewer's zone (+05:30), UTC on hover.
	tm, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`(() => { const t = document.querySelector("#home-waiting time"); return [t.textContent, t.title, t.getAttribute("datetime")]; })()`))
	if err != nil || len(tm) != 3 {
		t.Fatalf("time element: %v %v", tm, err)
	}
	at, err := time.Parse(time.RFC3339, tm[2])
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(tm[0], "Z") || !strings.Contains(tm[0], at.In(time.FixedZone("IST", 5*3600+1800)).Format("15:04")) || !strings.Contains(tm[1], "UTC") {
		t.Fatalf("time shown %q (title %q) for %s: want Kolkata time, UTC on hover", tm[0], tm[1], tm[2])
	}

	do("phone width", chromedp.EmulateViewport(360, 740))
	for _, c := range []struct{ path, nav string }{{"/", "Home"}, {"/jobs", "Jobs"}, {"/scripts", "Scripts"}, {"/approvals", "Approvals"},
		{fmt.Sprintf("/approvals/%d", tk.ID), "Approvals"}, {"/cmdb", "CMDB"}, {"/cmdb/types", "CMDB"}, {"/runs", "Runs"}, {"/api/docs", "API"}} {
		do("open "+c.path, chromedp.Navigate(e.srv.URL+c.path), chromedp.WaitVisible(chromedp.ID("logout")))
		got, err := chromedp.Run(ctx, chromedp.Evaluate[[]any](`[document.documentElement.scrollWidth, innerWidth,
			document.getElementById("logout").getBoundingClientRect().right, (document.querySelector("nav a.active") || {}).textContent || ""]`))
		if err != nil || len(got) != 4 {
			t.Fatalf("%s: %v %v", c.path, got, err)
		}
		scroll, width, logout := got[0].(float64), got[1].(float64), got[2].(float64)
		if scroll > width || logout > width {
			wide, _ := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("main *")].filter(el => el.getBoundingClientRect().right > innerWidth).slice(0, 5).map(el => el.tagName + "#" + el.id + "." + el.className + " " + Math.round(el.getBoundingClientRect().right))`))
			t.Errorf("%s at 360 px: page %v px wide, Log out ends at %v px (viewport %v); sticking out: %v", c.path, scroll, logout, width, wide)
		}
		if active := strings.TrimSpace(got[3].(string)); !strings.HasPrefix(active, c.nav) {
			t.Errorf("%s: active navigation item %q, want %q", c.path, active, c.nav)
		}
	}
}
