package notify_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opsflow/opsflow/internal/notify"
	"github.com/opsflow/opsflow/schema"
)

// robot is a DingTalk custom robot: it checks each request's signature
// and records the messages.
type robot struct {
	secret string
	mu     sync.Mutex
	msgs   []map[string]any
}

func (r *robot) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	q := req.URL.Query()
	ts, _ := strconv.ParseInt(q.Get("timestamp"), 10, 64)
	if q.Get("sign") != notify.DingTalkSign(q.Get("timestamp"), r.secret) || time.Since(time.UnixMilli(ts)) > time.Hour {
		fmt.Fprint(w, `{"errcode":310000,"errmsg":"sign not match"}`)
		return
	}
	b, _ := io.ReadAll(req.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
	fmt.Fprint(w, `{"errcode":0,"errmsg":"ok"}`)
}

func (r *robot) messages() []map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]map[string]any(nil), r.msgs...)
}

func store(t *testing.T) *schema.Store {
	ctx := context.Background()
	st, err := schema.Open(ctx, filepath.Join(t.TempDir(), "n.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.MigrateUp(ctx); err != nil {
		t.Fatal(err)
	}
	return st
}

func ticket(t *testing.T, st *schema.Store, n int) *schema.Ticket {
	tk := &schema.Ticket{WorkflowID: fmt.Sprintf("approval:t%d", n), Title: fmt.Sprintf("change %d", n), Requester: "alice", PolicyName: "p",
		Policy: schema.ApprovalPolicySpec{Levels: []schema.ApprovalLevel{{Rule: schema.RuleAny, ApproverSet: schema.ApproverSet{Users: []string{"bob"}}}}}}
	if err := st.CreateTicket(context.Background(), tk); err != nil {
		t.Fatal(err)
	}
	return tk
}

func TestDingTalkActionCardWithSignedLinks(t *testing.T) {
	st := store(t)
	rb := &robot{secret: "SECgood"}
	srv := httptest.NewServer(rb)
	defer srv.Close()
	d := &notify.DingTalk{Webhook: srv.URL + "/robot/send?access_token=tok", Secret: "SECgood", Store: st, BaseURL: "https://ops.example"}
	tk := ticket(t, st, 1)
	if err := d.Notify(context.Background(), tk, []string{"bob"}, false); err != nil {
		t.Fatal(err)
	}
	m := rb.messages()
	if len(m) != 1 || m[0]["msgtype"] != "actionCard" {
		t.Fatalf("messages: %v", m)
	}
	btns := m[0]["actionCard"].(map[string]any)["btns"].([]any)
	for i, want := range []string{schema.DecisionApprove, schema.DecisionReject} {
		u := btns[i].(map[string]any)["actionURL"].(string)
		token, ok := strings.CutPrefix(u, "https://ops.example/approvals/links/")
		if !ok || len(token) < 30 {
			t.Fatalf("button %d: %s", i, u)
		}
		// The link names its decision and ticket; the token is kept only
		// as a hash.
		l, err := st.ApprovalLinkByHash(context.Background(), sha(token))
		if err != nil || l.Decision != want || l.TicketID != tk.ID || l.UsedAt != nil {
			t.Fatalf("link %d: %+v %v", i, l, err)
		}
	}
	// A robot refusing the signature fails the notification (Temporal
	// retries it).
	bad := &notify.DingTalk{Webhook: srv.URL + "/robot/send?access_token=tok", Secret: "SECwrong", Store: st, BaseURL: "https://ops.example"}
	if err := bad.Notify(context.Background(), tk, []string{"bob"}, false); err == nil || !strings.Contains(err.Error(), "sign not match") {
		t.Fatalf("wrong secret: %v", err)
	}
}

// TestDingTalkRateLimitBatches: past the robot's limit, tickets wait and
// go out together; none is dropped.
func TestDingTalkRateLimitBatches(t *testing.T) {
	st := store(t)
	rb := &robot{secret: "SECgood"}
	srv := httptest.NewServer(rb)
	defer srv.Close()
	d := &notify.DingTalk{Webhook: srv.URL + "/robot/send?access_token=tok", Secret: "SECgood", Store: st, BaseURL: "https://ops.example",
		Limit: 3, Window: time.Second}
	var wg sync.WaitGroup
	const n = 12
	errs := make(chan error, n)
	for i := range n {
		tk := ticket(t, st, i)
		wg.Go(func() { errs <- d.Notify(context.Background(), tk, []string{"bob"}, false) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	msgs := rb.messages()
	seen := 0
	for _, m := range msgs {
		b, _ := json.Marshal(m)
		seen += strings.Count(string(b), "/approvals/links/") / 2
	}
	if seen != n {
		t.Fatalf("%d tickets in %d messages, want all %d", seen, len(msgs), n)
	}
	if len(msgs) >= n {
		t.Fatalf("%d messages for %d tickets: nothing was batched", len(msgs), n)
	}
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
