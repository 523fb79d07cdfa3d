package api

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
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
	// DingTalk allows an hour at most; opsflow takes 5 minutes.
	if st, b := send("staff-"+p, cmd, "m1", time.Now().Add(-10*time.Minute), secret); st != 401 {
		t.Fatalf("10 minutes old: %d %s", st, b)
	}
	if st, b := send("staff-unknown", cmd, "m0", time.Now().Add(-time.Second), secret); st != 200 || !strings.Contains(b, "not linked") {
		t.Fatalf("unlinked: %d %s", st, b)
	}
	at := time.Now()
	if st, b := send("staff-"+p, cmd, "m1", at, secret); st != 200 || !strings.Contains(b, "the ticket is approved") {
		t.Fatalf("decision: %d %s", st, b)
	}
	send("staff-"+p, cmd, "m1", at, secret) // DingTalk's retry: same signature, same body
	// A captured (timestamp, sign) pair does not carry another body.
	if st, b := send("staff-"+p, fmt.Sprintf("reject %d replayed", tk.ID), "m2", at, secret); st != 401 || !strings.Contains(b, "already used") {
		t.Fatalf("replayed signature: %d %s", st, b)
	}
	var got ticketResp
	eventually(t, 30*time.Second, "the ticket approved from DingTalk", func() bool {
		e.do(http.MethodGet, fmt.Sprintf("/api/v1/approvals/%d", tk.ID), "viewer", nil).json(t, &got)
		return got.Status == schema.TicketApproved
	})
	if len(got.Decisions) != 1 || got.Decisions[0].Channel != "dingtalk" || got.Decisions[0].Comment != "fine by me" {
		t.Fatalf("decisions: %+v", got.Decisions)
	}
}

// TestDecisionLinkTokenNotLogged: a decision link's token is a bearer
// credential; neither the request log nor an audit target holds it,
// whether the request is refused before the handler or by it.
func TestDecisionLinkTokenNotLogged(t *testing.T) {
	e := newEnvWith(t, envOptions{noWorkers: true, sqlite: true})
	var logs safeBuffer
	e.api.log = slog.New(slog.NewTextHandler(&logs, nil))
	token := "Tok" + strconv.FormatInt(time.Now().UnixNano(), 36) + "secretpart"
	for _, role := range []string{"", "operator"} {
		e.do(http.MethodPost, "/approvals/links/"+token, role, "comment=x", "Content-Type", "application/x-www-form-urlencoded")
	}
	r := e.do(http.MethodGet, "/api/v1/audit?limit=500", "admin", nil)
	if r.Status != 200 {
		t.Fatalf("audit: %d %s", r.Status, r.Body)
	}
	if !strings.Contains(logs.String(), "/approvals/links/") {
		t.Fatalf("the requests were not logged at all:\n%s", logs.String())
	}
	if strings.Contains(string(r.Body), token) || strings.Contains(logs.String(), token) {
		t.Fatalf("token in audit or log:\naudit: %s\nlog: %s", r.Body, logs.String())
	}
}

type safeBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
