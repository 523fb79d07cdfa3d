package api

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/opsflow/opsflow/internal/testenv"
	"github.com/opsflow/opsflow/schema"
)

// TestUIInBrowser drives the web UI in headless Chromium: login, starting
// a run through a CSRF-protected form, the run page, the runs list with its
// Temporal UI link, role-dependent controls and logout.
func TestUIInBrowser(t *testing.T) {
	e := newEnv(t)
	op := e.createUser(schema.RoleOperator, "operator-password-1")
	viewer := e.createUser(schema.RoleViewer, "viewer-password-1")
	ctx, cancel := context.WithTimeout(testenv.Browser(t), 90*time.Second)
	defer cancel()

	login := func(username, password string) {
		t.Helper()
		// An anonymous visit lands on the login page, and returns after it.
		if err := chromedp.Do(ctx,
			chromedp.Navigate(e.srv.URL+"/runs"),
			chromedp.WaitVisible(chromedp.ID("username")),
			chromedp.SendKeys(chromedp.ID("username"), username),
			chromedp.SendKeys(chromedp.ID("password"), password),
			chromedp.Click(chromedp.ID("login")),
			chromedp.WaitVisible(chromedp.ID("whoami")),
		); err != nil {
			t.Fatalf("login as %s: %v", username, err)
		}
		who, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("whoami")))
		if err != nil || !strings.Contains(who, username) {
			t.Fatalf("whoami = %q, %v", who, err)
		}
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		if !strings.HasSuffix(loc, "/runs") {
			t.Fatalf("after login at %s, want /runs", loc)
		}
	}

	// A wrong password shows an error and stays on the login page.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(e.srv.URL+"/login"),
		chromedp.SendKeys(chromedp.ID("username"), op.Username),
		chromedp.SendKeys(chromedp.ID("password"), "not-the-password"),
		chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("login-error")),
	); err != nil {
		t.Fatalf("bad login: %v", err)
	}

	login(op.Username, "operator-password-1")
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("start-demo")),
		chromedp.WaitVisible(chromedp.ID("run-id")),
	); err != nil {
		t.Fatalf("start demo from the UI: %v", err)
	}
	runID, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("run-id")))
	if err != nil || !strings.HasPrefix(runID, "demo:") {
		t.Fatalf("run id %q, %v", runID, err)
	}
	// The run page shows the run finishing (reload until completed).
	eventually(t, 60*time.Second, "run page shows completed", func() bool {
		status, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("run-status")))
		if err == nil && status == schema.RunCompleted {
			return true
		}
		_ = chromedp.Do(ctx, chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("run-status")))
		return false
	})
	if err := chromedp.Do(ctx, chromedp.Navigate(e.srv.URL+"/runs"), chromedp.WaitVisible(chromedp.ID("runs"))); err != nil {
		t.Fatal(err)
	}
	link, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(`tr[data-run="`+runID+`"] a.temporal`), "href"))
	if err != nil || !strings.HasPrefix(link.Value, "http://temporal-ui.test/namespaces/default/workflows/") {
		t.Fatalf("temporal link %+v, %v", link, err)
	}
	r, err := e.store.Run(ctx, runID)
	if err != nil || r.StartedBy != op.Username {
		t.Fatalf("read model: %+v %v", r, err)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("login"))); err != nil {
		t.Fatalf("logout: %v", err)
	}

	// A viewer sees the runs but no start button.
	login(viewer.Username, "viewer-password-1")
	html, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("main")))
	if err != nil || strings.Contains(html, `id="start-demo"`) || !strings.Contains(html, runID) {
		t.Fatalf("viewer's runs page: start button or run wrong (%v)", err)
	}
}

// browserSteps returns helpers for a browser test: do runs actions and
// fails the test naming the step; text reads an element's text.
func browserSteps(t *testing.T, ctx context.Context) (do func(what string, actions ...chromedp.Action[chromedp.Void]), text func(chromedp.ID) string) {
	do = func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text = func(sel chromedp.ID) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(sel))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	return do, text
}

// browserLogin logs username in through the login form.
func (e *env) browserLogin(ctx context.Context, username, password string) {
	e.t.Helper()
	if err := chromedp.Do(ctx,
		chromedp.Navigate(e.srv.URL+"/login"),
		chromedp.SendKeys(chromedp.ID("username"), username),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("whoami")),
	); err != nil {
		e.t.Fatalf("login as %s: %v", username, err)
	}
}
