package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/opsflow/opsflow/internal/testenv"
	"github.com/opsflow/opsflow/schema"
)

// TestApprovalsUIInBrowser: one approver decides through a DingTalk
// decision link (log in, confirm; the link then is spent), the other from
// the web inbox; the ticket page shows who decided on which channel.
func TestApprovalsUIInBrowser(t *testing.T) {
	e := newEnv(t)
	ap1 := e.createUser(schema.RoleApprover, "approver-password-1")
	ap2 := e.createUser(schema.RoleApprover, "approver-password-2")
	p := fmt.Sprintf("uiap%d", time.Now().UnixNano())
	if r := e.do(http.MethodPost, "/api/v1/approval-policies", "admin", map[string]any{"name": p, "spec": map[string]any{
		"levels": []map[string]any{{"users": []string{ap1.Username, ap2.Username}, "rule": "quorum", "quorum": 2}}}}); r.Status != 201 {
		t.Fatalf("policy: %d %s", r.Status, r.Body)
	}
	r := e.do(http.MethodPost, "/api/v1/approvals", "operator", map[string]any{"title": p + " rotate certs", "description": "Rotate the **edge** certificates.", "policy": p})
	var tk ticketResp
	r.json(t, &tk)
	if r.Status != 201 {
		t.Fatalf("open: %d %s", r.Status, r.Body)
	}
	// The link a DingTalk message would carry for ap2.
	token := "link-" + p
	sum := sha256.Sum256([]byte(token))
	if err := e.store.CreateApprovalLink(context.Background(), &schema.ApprovalLink{TokenHash: hex.EncodeToString(sum[:]), TicketID: tk.ID,
		Decision: schema.DecisionApprove, ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(testenv.Browser(t), 120*time.Second)
	defer cancel()
	do, text := browserSteps(t, ctx)
	linkURL := e.srv.URL + "/approvals/links/" + token

	// Not logged in, the link asks for a login first, then for a
	// confirmation.
	do("open the link", chromedp.Navigate(linkURL), chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), ap2.Username), chromedp.SendKeys(chromedp.ID("password"), "approver-password-2"),
		chromedp.Click(chromedp.ID("login")), chromedp.WaitVisible(chromedp.ID("confirm")))
	do("confirm", chromedp.SendKeys(chromedp.ID("comment"), "certs checked"), chromedp.Click(chromedp.ID("confirm")), chromedp.WaitVisible(chromedp.ID("flash")))
	if f := text("flash"); !strings.Contains(f, "approved, 1 of 2") {
		t.Fatalf("after the link: %q", f)
	}
	do("the spent link", chromedp.Navigate(linkURL), chromedp.WaitVisible(chromedp.ID("error-message")))
	if msg := text("error-message"); !strings.Contains(msg, "used already") {
		t.Fatalf("a spent link: %q", msg)
	}

	do("log out", chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("username")))
	e.browserLogin(ctx, ap1.Username, "approver-password-1")
	do("inbox", chromedp.Navigate(e.srv.URL+"/approvals"), chromedp.WaitVisible(chromedp.ID("tickets")))
	if inbox := text("tickets"); !strings.Contains(inbox, p+" rotate certs") {
		t.Fatalf("ap1's inbox: %q", inbox)
	}
	do("ticket", chromedp.Navigate(fmt.Sprintf("%s/approvals/%d", e.srv.URL, tk.ID)), chromedp.WaitVisible(chromedp.ID("approve")))
	if d := text("description"); !strings.Contains(d, "Rotate the **edge** certificates.") {
		t.Fatalf("description: %q", d)
	}
	do("approve", chromedp.SendKeys(chromedp.ID("comment"), "go"), chromedp.Click(chromedp.ID("approve")), chromedp.WaitVisible(chromedp.ID("flash")))
	if f := text("flash"); !strings.Contains(f, "the ticket is approved") {
		t.Fatalf("after approving: %q", f)
	}
	eventually(t, 30*time.Second, "the page to show the ticket approved", func() bool {
		_ = chromedp.Do(ctx, chromedp.Navigate(fmt.Sprintf("%s/approvals/%d", e.srv.URL, tk.ID)), chromedp.WaitVisible(chromedp.ID("ticket-status")))
		return text("ticket-status") == schema.TicketApproved
	})
	h := text("decisions")
	if !strings.Contains(h, ap2.Username) || !strings.Contains(h, "dingtalk") || !strings.Contains(h, "certs checked") || !strings.Contains(h, ap1.Username) || !strings.Contains(h, "web") {
		t.Fatalf("history: %q", h)
	}
}
