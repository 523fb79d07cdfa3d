package main

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/opsflow/opsflow/internal/testenv"
	"github.com/opsflow/opsflow/schema"
)

// TestApprovalsCommands lists, approves and rejects tickets with `opsflow
// approvals` against the real API, Temporal and workers.
func TestApprovalsCommands(t *testing.T) {
	base, st := startStack(t)
	ctx := context.Background()
	approverName, approverToken := apiUser(t, st, schema.RoleApprover)
	approver := envOf(base, approverToken)
	requester := envOf(base, apiToken(t, st, schema.RoleOperator))
	admin, err := newClient(envOf(base, apiToken(t, st, schema.RoleAdmin)))
	if err != nil {
		t.Fatal(err)
	}
	req, err := newClient(requester)
	if err != nil {
		t.Fatal(err)
	}
	policy := fmt.Sprintf("cli-change-%d", time.Now().UnixNano())
	if _, err := admin.do(ctx, http.MethodPost, "/api/v1/approval-policies", map[string]any{"name": policy,
		"spec": map[string]any{"levels": []map[string]any{{"users": []string{approverName}, "rule": "any"}}}}, nil); err != nil {
		t.Fatal(err)
	}
	open := func(title string) int64 {
		var tk ticket
		if _, err := req.do(ctx, http.MethodPost, "/api/v1/approvals", map[string]any{"title": title, "policy": policy}, &tk); err != nil {
			t.Fatal(err)
		}
		return tk.ID
	}
	first, second := open("Restart payments-db"), open("Drop the old index")
	approvals := func(getenv func(string) string, args ...string) (string, error) {
		var out syncBuffer
		err := approvalsCmd(ctx, args, &out, getenv)
		return out.String(), err
	}
	row := func(id int64, status string) *regexp.Regexp {
		return regexp.MustCompile(fmt.Sprintf(`(?m)^%d +%s +1 +cli-operator-\d+ +%s +`, id, status, policy))
	}

	// Both wait for the approver once their level opened; none for the
	// requester.
	testenv.Eventually(t, time.Minute, "both tickets in the approver's list", func() bool {
		out, err := approvals(approver, "list")
		return err == nil && row(first, "pending").MatchString(out) && row(second, "pending").MatchString(out)
	})
	if out, err := approvals(requester, "list"); err != nil || out != "nothing waits for your decision\n" {
		t.Fatalf("requester's list: %q %v", out, err)
	}
	if out, err := approvals(requester, "list", "--all"); err != nil || !row(first, "pending").MatchString(out) || !strings.HasPrefix(out, "ID  ") {
		t.Fatalf("requester's list --all: %q %v", out, err)
	}

	if out, err := approvals(approver, "approve", fmt.Sprint(first), "--comment", "go"); err != nil || !strings.HasPrefix(out, fmt.Sprintf("approval %d: ", first)) ||
		!strings.HasSuffix(out, "(ticket approved)\n") {
		t.Fatalf("approve: %q %v", out, err)
	}
	if _, err := approvals(approver, "reject", fmt.Sprint(second)); err == nil || !strings.Contains(err.Error(), "--comment TEXT is required") {
		t.Fatalf("reject without a reason: %v", err)
	}
	if out, err := approvals(approver, "reject", "--comment", "not during the freeze", fmt.Sprint(second)); err != nil || !strings.HasSuffix(out, "(ticket rejected)\n") {
		t.Fatalf("reject: %q %v", out, err)
	}
	// A decided ticket refuses another vote, and says why.
	if _, err := approvals(approver, "approve", fmt.Sprint(first)); err == nil || !strings.Contains(err.Error(), "already decided: approved (HTTP 409)") {
		t.Fatalf("second vote: %v", err)
	}
	if out, err := approvals(approver, "list"); err != nil || row(first, "pending").MatchString(out) || row(second, "pending").MatchString(out) {
		t.Fatalf("approver's list after deciding: %q %v", out, err)
	}
	if out, err := approvals(approver, "list", "--all", "--status", "rejected"); err != nil || !row(second, "rejected").MatchString(out) || row(first, "approved").MatchString(out) {
		t.Fatalf("rejected tickets: %q %v", out, err)
	}
	if _, err := approvals(approver, "list", "--status", "maybe"); err == nil || !strings.Contains(err.Error(), "\n  status: must be one of") {
		t.Fatalf("bad status: %v", err)
	}
	if _, err := approvals(approver, "approve", "twelve"); err == nil || !strings.Contains(err.Error(), "not a ticket ID") {
		t.Fatalf("bad id: %v", err)
	}
}
