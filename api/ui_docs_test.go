package api

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/opsflow/opsflow/internal/testenv"
	"github.com/opsflow/opsflow/internal/testenv/axe"
	"github.com/opsflow/opsflow/schema"
)

// TestAPIReferenceInBrowser: /api/docs is Swagger UI, served from the
// binary under the page's CSP (no violation reported). An operation's
// request body shows its fields, nested ones included; "Try it out" on
// GET /api/v1/me answers 200 with the browser's session, and a POST (a
// new API token) passes the CSRF check with the token the page carries.
// The expanded operations pass axe too.
func TestAPIReferenceInBrowser(t *testing.T) {
	e := newEnv(t)
	op := e.createUser(schema.RoleOperator, "operator-password-1")
	// Scripts only from this origin; styles too (Swagger UI's are set
	// through the DOM, which CSP allows); its icons are data: images.
	if csp := e.do(http.MethodGet, "/api/docs", "", nil).Header.Get("Content-Security-Policy"); csp != "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'" {
		t.Errorf("/api/docs's CSP: %q", csp)
	}
	ctx, cancel := context.WithTimeout(testenv.Browser(t), 120*time.Second)
	defer cancel()
	do0, text := browserSteps(t, ctx)
	start := time.Now()
	do := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		do0(what, actions...)
		t.Logf("%s done at %s", what, time.Since(start))
	}
	do("record CSP violations", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, cdppage.AddScriptToEvaluateOnNewDocument, cdppage.AddScriptToEvaluateOnNewDocumentParams{
			Source: `window.cspViolations = []; document.addEventListener("securitypolicyviolation", e => window.cspViolations.push(e.violatedDirective + " " + e.blockedURI + " " + (e.sample || "")));`})
		return err
	}))
	e.browserLogin(ctx, op.Username, "operator-password-1")
	do("open the reference", chromedp.Navigate(e.srv.URL+"/api/docs"), chromedp.WaitVisible(chromedp.CSS("#swagger-ui .opblock")))

	// The job request's fields, and its targets' fields (a nested schema).
	jobs := `#operations-jobs-createJob`
	do("expand POST /api/v1/jobs", chromedp.Click(chromedp.CSS(jobs+" .opblock-summary-control")),
		chromedp.WaitVisible(chromedp.CSS(jobs+" .opblock-section-request-body .model-box")))
	body := text(chromedp.ID("operations-jobs-createJob"))
	for _, field := range []string{"script_id", "version", "params", "targets", "credential_id", "policy", "transport", "selector"} {
		if !strings.Contains(body, field) {
			t.Errorf("POST /api/v1/jobs's request body does not show %q:\n%s", field, body)
		}
	}

	// GET /api/v1/me with the session.
	me := `#operations-users-getMe`
	do("try GET /api/v1/me", chromedp.Click(chromedp.CSS(me+" .opblock-summary-control")),
		chromedp.Click(chromedp.CSS(me+" .try-out__btn")), chromedp.Click(chromedp.CSS(me+" .execute")),
		chromedp.WaitVisible(chromedp.CSS(me+" .live-responses-table tbody .response-col_status")))
	if s := text(chromedp.ID("operations-users-getMe")); !strings.Contains(s, op.Username) {
		t.Errorf("GET /api/v1/me's response does not name %s:\n%s", op.Username, s)
	}
	status, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(me+" .live-responses-table tbody .response-col_status")))
	if err != nil || strings.TrimSpace(status) != "200" {
		t.Fatalf("GET /api/v1/me answered %q (%v), want 200", status, err)
	}

	// POST /api/v1/tokens: an unsafe method, which needs the CSRF token.
	tok := `#operations-tokens-createToken`
	do("try POST /api/v1/tokens", chromedp.Click(chromedp.CSS(tok+" .opblock-summary-control")),
		chromedp.Click(chromedp.CSS(tok+" .try-out__btn")), chromedp.WaitVisible(chromedp.CSS(tok+" textarea.body-param__text")),
		chromedp.Evaluate[chromedp.Void](`document.querySelector("`+tok+` textarea.body-param__text").select()`),
		chromedp.SendKeys(chromedp.CSS(tok+" textarea.body-param__text"), `{"name": "from-the-reference"}`),
		chromedp.Click(chromedp.CSS(tok+" .execute")),
		chromedp.WaitVisible(chromedp.CSS(tok+" .live-responses-table tbody .response-col_status")))
	status, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS(tok+" .live-responses-table tbody .response-col_status")))
	if err != nil || strings.TrimSpace(status) != "201" {
		s, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(tok+" .live-responses-table")))
		t.Fatalf("POST /api/v1/tokens answered %q (%v), want 201: %s", status, err, s)
	}
	toks, err := e.store.Tokens(context.Background(), op.ID)
	if err != nil || !hasToken(toks, "from-the-reference") {
		t.Fatalf("no token from the reference in the store: %+v %v", toks, err)
	}

	vs, err := axe.Serious(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("axe done at %s", time.Since(start))
	for _, v := range vs {
		t.Errorf("/api/docs with operations open: %s", v)
	}
	csp, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`window.cspViolations`))
	if err != nil || len(csp) > 0 {
		t.Errorf("CSP violations on /api/docs: %q %v", csp, err)
	}
}

func hasToken(ts []schema.APIToken, name string) bool {
	for _, t := range ts {
		if t.Name == name {
			return true
		}
	}
	return false
}
