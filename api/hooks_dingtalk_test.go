package api

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opsflow/opsflow/internal/notify"
	"github.com/opsflow/opsflow/schema"
)

// TestDingTalkRobotDecisions: an enterprise robot's signed callback
// decides as the linked user; forged, stale and unlinked ones count
// nothing; DingTalk's retry of a message counts once.
func TestDingTalkRobotDecisions(t *testing.T) {
	const secret = "app-secret-for-test"
	e := newEnvWith(t, envOptions{dingtalk: secret})
	p := fmt.Sprintf("ding%d", time.Now().UnixNano())
	approver := e.users[schema.RoleApprover].Username
	if r := e.do(http.MethodPost, "/api/v1/chat-identities", "admin", map[string]string{"provider": "dingtalk", "external_id": "staff-" + p, "username": approver}); r.Status != 201 {
		t.Fatalf("link: %d %s", r.Status, r.Body)
	}
	if r := e.do(http.MethodPost, "/api/v1/approval-policies", "admin", map[string]any{"name": p, "spec": map[string]any{
		"levels": []map[string]any{{"users": []string{approver}, "rule": "any"}}}}); r.Status != 201 {
		t.Fatalf("policy: %d %s", r.Status, r.Body)
	}
	r := e.do(http.MethodPost, "/api/v1/approvals", "operator", map[string]any{"title": p, "policy": p})
	var tk ticketResp
	r.json(t, &tk)
	send := func(staff, text, msgID string, at time.Time, key string) (int, string) {
		body, _ := json.Marshal(map[string]any{"msgtype": "text", "msgId": msgID, "senderStaffId": staff, "text": map[string]string{"content": text}})
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/hooks/dingtalk/robot", strings.NewReader(string(body)))
		ts := strconv.FormatInt(at.UnixMilli(), 10)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("timestamp", ts)
		req.Header.Set("sign", notify.DingTalkSign(ts, key))
		res, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	cmd := fmt.Sprintf("approve %d fine by me", tk.ID)
	if st, b := send("staff-"+p, cmd, "m1", time.Now(), "forged"); st != 401 {
		t.Fatalf("forged: %d %s", st, b)
	}
	if st, b := send("staff-"+p, cmd, "m1", time.Now().Add(-2*time.Hour), secret); st != 401 {
		t.Fatalf("stale: %d %s", st, b)
	}
	if st, b := send("staff-unknown", cmd, "m0", time.Now(), secret); st != 200 || !strings.Contains(b, "not linked") {
		t.Fatalf("unlinked: %d %s", st, b)
	}
	if st, b := send("staff-"+p, cmd, "m1", time.Now(), secret); st != 200 || !strings.Contains(b, "the ticket is approved") {
		t.Fatalf("decision: %d %s", st, b)
	}
	send("staff-"+p, cmd, "m1", time.Now(), secret) // DingTalk's retry
	var got ticketResp
	eventually(t, 30*time.Second, "the ticket approved from DingTalk", func() bool {
		e.do(http.MethodGet, fmt.Sprintf("/api/v1/approvals/%d", tk.ID), "viewer", nil).json(t, &got)
		return got.Status == schema.TicketApproved
	})
	if len(got.Decisions) != 1 || got.Decisions[0].Channel != "dingtalk" || got.Decisions[0].Comment != "fine by me" {
		t.Fatalf("decisions: %+v", got.Decisions)
	}
}
