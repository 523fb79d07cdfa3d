package api

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/opsflow/opsflow/activities"
	"github.com/opsflow/opsflow/internal/notify"
	"github.com/opsflow/opsflow/schema"
	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slacktest"
	"github.com/slack-go/slack/socketmode"
)

const slackSecret = "8f742231b10e8888abcd99yyyzzz85a5"

// slackRecorder captures what opsflow sends to Slack: messages posted,
// modals opened, and replies through response URLs.
type slackRecorder struct {
	mu      sync.Mutex
	posts   []string
	views   []string
	replies []string
}

func (r *slackRecorder) add(list *[]string, s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	*list = append(*list, s)
}

func (r *slackRecorder) get(list *[]string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), *list...)
}

// signedSlack posts an interaction payload signed as Slack does, at ts.
func signedSlack(t *testing.T, e *env, payload any, ts time.Time, secret string) resp {
	t.Helper()
	b, _ := json.Marshal(payload)
	body := "payload=" + url.QueryEscape(string(b))
	stamp := strconv.FormatInt(ts.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte("v0:" + stamp + ":" + body))
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/hooks/slack/interactions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Slack-Request-Timestamp", stamp)
	req.Header.Set("X-Slack-Signature", "v0="+hex.EncodeToString(mac.Sum(nil)))
	res, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	rb, _ := io.ReadAll(res.Body)
	return resp{Status: res.StatusCode, Body: rb}
}

func blockAction(user, action string, ticket int64, actionTs, responseURL string) map[string]any {
	return map[string]any{"type": "block_actions", "trigger_id": "trig-" + actionTs, "response_url": responseURL,
		"user": map[string]any{"id": user}, "actions": []map[string]any{{"block_id": fmt.Sprintf("opsflow_decide_%d", ticket), "action_id": action, "value": strconv.FormatInt(ticket, 10), "action_ts": actionTs, "type": "button"}}}
}

// TestSlackApprovals: a ticket is posted to Slack with buttons; signed
// clicks decide it, a forged or stale request is refused, an unlinked
// Slack user is told nothing counted, the same click retried counts once,
// Reject asks for a reason in a modal, and the message is updated in
// place.
func TestSlackApprovals(t *testing.T) {
	rec := &slackRecorder{}
	sts := slacktest.NewTestServer(func(s slacktest.Customize) {
		s.Handle("/users.info", func(w http.ResponseWriter, r *http.Request) {
			_ = r.ParseForm()
			email := "nobody@example.invalid"
			if r.Form.Get("user") == "U_SPENGLER" {
				email = "spengler@ghostbusters.example.com"
			}
			fmt.Fprintf(w, `{"ok":true,"user":{"id":%q,"name":"x","profile":{"email":%q}}}`, r.Form.Get("user"), email)
		})
		s.Handle("/views.open", func(w http.ResponseWriter, r *http.Request) {
			_ = r.ParseForm()
			b, _ := io.ReadAll(r.Body)
			rec.add(&rec.views, string(b)+r.Form.Encode())
			fmt.Fprint(w, `{"ok":true,"view":{"id":"V1"}}`)
		})
		s.Handle("/chat.postMessage", func(w http.ResponseWriter, r *http.Request) {
			_ = r.ParseForm()
			rec.add(&rec.posts, r.Form.Get("blocks"))
			fmt.Fprint(w, `{"ok":true,"channel":"C1","ts":"1700000000.000100"}`)
		})
	})
	sts.Start()
	defer sts.Stop()
	client := slack.New("xoxb-test", slack.OptionAPIURL(sts.GetAPIURL()))
	replies := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rec.add(&rec.replies, string(b))
	}))
	defer replies.Close()

	var e *env
	notifier := &lateNotifier{}
	e = newEnvWith(t, envOptions{slack: &SlackHook{Client: client, SigningSecret: slackSecret}, notifiers: []activities.Notifier{notifier}})
	notifier.n = &notify.Slack{Client: client, ChannelID: "C1", Store: e.store, BaseURL: "http://opsflow.test"}
	ctx := context.Background()
	p := fmt.Sprintf("slack%d", time.Now().UnixNano())
	spengler := &schema.User{Username: p + "-spengler", Role: schema.RoleApprover, Email: "spengler@ghostbusters.example.com"}
	if err := e.store.CreateUser(ctx, spengler); err != nil {
		t.Fatal(err)
	}
	approver := e.users[schema.RoleApprover].Username
	if r := e.do(http.MethodPost, "/api/v1/chat-identities", "admin", map[string]string{"provider": "slack", "external_id": "U_LINKED", "username": approver}); r.Status != 201 {
		t.Fatalf("link: %d %s", r.Status, r.Body)
	}
	if r := e.do(http.MethodPost, "/api/v1/approval-policies", "admin", map[string]any{"name": p, "spec": map[string]any{"channels": []string{"web", "slack"},
		"levels": []map[string]any{{"users": []string{approver, spengler.Username}, "rule": "all"}}}}); r.Status != 201 {
		t.Fatalf("policy: %d %s", r.Status, r.Body)
	}
	open := func() ticketResp {
		r := e.do(http.MethodPost, "/api/v1/approvals", "operator", map[string]any{"title": p + " change", "policy": p})
		var tk ticketResp
		r.json(t, &tk)
		if r.Status != 201 {
			t.Fatalf("open: %d %s", r.Status, r.Body)
		}
		return tk
	}
	tk := open()
	eventually(t, 30*time.Second, "the ticket posted to Slack with buttons", func() bool {
		for _, b := range rec.get(&rec.posts) {
			if strings.Contains(b, notify.SlackActionApprove) && strings.Contains(b, fmt.Sprintf("Approval #%d", tk.ID)) && strings.Contains(b, `@U_LINKED`) {
				return true
			}
		}
		return false
	})
	decisions := func(id int64) []schema.ApprovalDecisionRecord {
		var x ticketResp
		e.do(http.MethodGet, fmt.Sprintf("/api/v1/approvals/%d", id), "viewer", nil).json(t, &x)
		return x.Decisions
	}

	click := blockAction("U_LINKED", notify.SlackActionApprove, tk.ID, "1700000001.000001", replies.URL)
	if r := signedSlack(t, e, click, time.Now(), "wrong-secret"); r.Status != 401 {
		t.Fatalf("forged: %d %s", r.Status, r.Body)
	}
	if r := signedSlack(t, e, click, time.Now().Add(-6*time.Minute), slackSecret); r.Status != 401 {
		t.Fatalf("stale: %d %s", r.Status, r.Body)
	}
	if r := signedSlack(t, e, blockAction("U_STRANGER", notify.SlackActionApprove, tk.ID, "1700000001.000002", replies.URL), time.Now(), slackSecret); r.Status != 200 {
		t.Fatalf("unlinked: %d %s", r.Status, r.Body)
	}
	eventually(t, 10*time.Second, "the stranger told nothing counted", func() bool {
		for _, r := range rec.get(&rec.replies) {
			if strings.Contains(r, "not linked to an opsflow user") && strings.Contains(r, "ephemeral") {
				return true
			}
		}
		return false
	})
	for range 2 { // the click, and Slack's retry of it
		if r := signedSlack(t, e, click, time.Now(), slackSecret); r.Status != 200 {
			t.Fatalf("click: %d %s", r.Status, r.Body)
		}
	}
	eventually(t, 10*time.Second, "the message updated in place", func() bool {
		for _, r := range rec.get(&rec.replies) {
			if strings.Contains(r, `"replace_original":true`) && strings.Contains(r, "approved, 1 of 2") {
				return true
			}
		}
		return false
	})
	eventually(t, 10*time.Second, "one decision recorded", func() bool { return len(decisions(tk.ID)) == 1 })
	if d := decisions(tk.ID); len(d) != 1 || d[0].Channel != "slack" || d[0].Voter != approver {
		t.Fatalf("decisions: %+v", d)
	}

	// Spengler is matched by email. Reject opens a modal; its submission
	// rejects with the reason.
	if r := signedSlack(t, e, blockAction("U_SPENGLER", notify.SlackActionReject, tk.ID, "1700000002.000001", replies.URL), time.Now(), slackSecret); r.Status != 200 {
		t.Fatalf("reject click: %d %s", r.Status, r.Body)
	}
	if v := rec.get(&rec.views); len(v) != 1 || !strings.Contains(v[0], notify.SlackRejectModal) {
		t.Fatalf("modal: %v", v)
	}
	submit := map[string]any{"type": "view_submission", "user": map[string]any{"id": "U_SPENGLER"},
		"view": map[string]any{"id": "V1", "callback_id": notify.SlackRejectModal, "private_metadata": fmt.Sprintf("%d %s", tk.ID, replies.URL),
			"state": map[string]any{"values": map[string]any{notify.SlackReasonBlock: map[string]any{notify.SlackReasonInput: map[string]any{"type": "plain_text_input", "value": "change freeze"}}}}}}
	if r := signedSlack(t, e, submit, time.Now(), slackSecret); r.Status != 200 {
		t.Fatalf("submit: %d %s", r.Status, r.Body)
	}
	var got ticketResp
	eventually(t, 30*time.Second, "the ticket rejected from Slack", func() bool {
		e.do(http.MethodGet, fmt.Sprintf("/api/v1/approvals/%d", tk.ID), "viewer", nil).json(t, &got)
		return got.Status == schema.TicketRejected
	})
	if d := got.Decisions[len(got.Decisions)-1]; d.Voter != spengler.Username || d.Comment != "change freeze" || d.Channel != "slack" {
		t.Fatalf("rejection: %+v", d)
	}
	es, _ := e.store.Audit(ctx, schema.AuditFilter{Action: "approval.decide", Limit: 100})
	slackEntries := 0
	for _, a := range es {
		if strings.Contains(a.Detail, "channel=slack") {
			slackEntries++
		}
	}
	if slackEntries < 6 {
		t.Fatalf("%d Slack attempts audited", slackEntries)
	}
}

// lateNotifier lets the test build the notifier after the env (which
// owns the store) exists.
type lateNotifier struct{ n activities.Notifier }

func (l *lateNotifier) Channel() string { return "slack" }
func (l *lateNotifier) Notify(ctx context.Context, t *schema.Ticket, users []string, escalation bool) error {
	return l.n.Notify(ctx, t, users, escalation)
}

// TestSlackSocketMode: the same Approve click arriving over Socket Mode
// (no public URL) is acknowledged, decides as the linked user, and is
// audited with its channel.
func TestSlackSocketMode(t *testing.T) {
	acks := make(chan string, 4)
	click := make(chan []byte, 1)
	sts := slacktest.NewTestServer(func(s slacktest.Customize) {
		s.Handle("/ws", slacktest.Websocket(func(c *websocket.Conn) {
			_ = c.WriteMessage(websocket.TextMessage, []byte(`{"type":"hello","num_connections":1}`))
			_ = c.WriteMessage(websocket.TextMessage, <-click)
			for {
				_, m, err := c.ReadMessage()
				if err != nil {
					return
				}
				acks <- string(m)
			}
		}))
	})
	sts.Start()
	defer sts.Stop()
	client := slack.New("xoxb-test", slack.OptionAPIURL(sts.GetAPIURL()), slack.OptionAppLevelToken("xapp-test"))
	replies := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer replies.Close()
	e := newEnvWith(t, envOptions{slack: &SlackHook{Client: client}})
	p := fmt.Sprintf("sock%d", time.Now().UnixNano())
	approver := e.users[schema.RoleApprover].Username
	if r := e.do(http.MethodPost, "/api/v1/chat-identities", "admin", map[string]string{"provider": "slack", "external_id": "U_" + p, "username": approver}); r.Status != 201 {
		t.Fatalf("link: %d %s", r.Status, r.Body)
	}
	if r := e.do(http.MethodPost, "/api/v1/approval-policies", "admin", map[string]any{"name": p, "spec": map[string]any{
		"levels": []map[string]any{{"users": []string{approver}, "rule": "any"}}}}); r.Status != 201 {
		t.Fatalf("policy: %d %s", r.Status, r.Body)
	}
	r := e.do(http.MethodPost, "/api/v1/approvals", "operator", map[string]any{"title": p, "policy": p})
	var tk ticketResp
	r.json(t, &tk)
	env, _ := json.Marshal(map[string]any{"envelope_id": "env-1", "type": "interactive", "accepts_response_payload": false,
		"payload": blockAction("U_"+p, notify.SlackActionApprove, tk.ID, "1700000009.000001", replies.URL)})
	click <- env

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = e.api.RunSlackSocketMode(ctx, socketmode.New(client)) }()
	select {
	case ack := <-acks:
		if !strings.Contains(ack, `"envelope_id":"env-1"`) {
			t.Fatalf("ack: %s", ack)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no acknowledgement over the socket")
	}
	var got ticketResp
	eventually(t, 30*time.Second, "the ticket approved over Socket Mode", func() bool {
		e.do(http.MethodGet, fmt.Sprintf("/api/v1/approvals/%d", tk.ID), "viewer", nil).json(t, &got)
		return got.Status == schema.TicketApproved
	})
	if d := got.Decisions[0]; d.Voter != approver || d.Channel != "slack" {
		t.Fatalf("decision: %+v", d)
	}
	eventually(t, 10*time.Second, "the decision audited with its channel", func() bool {
		es, _ := e.store.Audit(context.Background(), schema.AuditFilter{Action: "approval.decide", Target: fmt.Sprintf("approval:%d", tk.ID), Limit: 10})
		for _, a := range es {
			if a.Actor == approver && strings.Contains(a.Detail, "socket mode") {
				return true
			}
		}
		return false
	})
}

// TestChatIdentityUnlink: an admin lists linked chat accounts and unlinks
// one through the API and from the page; an unlinked account decides as
// nobody, unlinking it again is a 404, other roles may do neither, and
// each unlink is audited.
func TestChatIdentityUnlink(t *testing.T) {
	e := newEnv(t)
	p := fmt.Sprintf("U_UNLINK%d", time.Now().UnixNano())
	approver := e.users[schema.RoleApprover].Username
	link := func(id string) {
		t.Helper()
		if r := e.do(http.MethodPost, "/api/v1/chat-identities", "admin", map[string]string{"provider": "slack", "external_id": id, "username": approver}); r.Status != 201 {
			t.Fatalf("link %s: %d %s", id, r.Status, r.Body)
		}
	}
	link(p)
	var list struct{ Items []schema.ChatIdentity }
	r := e.do(http.MethodGet, "/api/v1/chat-identities?username="+approver, "admin", nil)
	r.json(t, &list)
	if r.Status != 200 || !slices.ContainsFunc(list.Items, func(ci schema.ChatIdentity) bool { return ci.ExternalID == p && ci.Username == approver }) {
		t.Fatalf("list: %d %s", r.Status, r.Body)
	}
	for _, who := range []string{"viewer", "operator", "approver"} {
		if r := e.do(http.MethodGet, "/api/v1/chat-identities", who, nil); r.Status != http.StatusForbidden {
			t.Errorf("%s lists chat identities: %d", who, r.Status)
		}
		if r := e.do(http.MethodDelete, "/api/v1/chat-identities/slack/"+p, who, nil); r.Status != http.StatusForbidden {
			t.Errorf("%s unlinks: %d", who, r.Status)
		}
	}
	if _, err := e.store.ChatUser(context.Background(), "slack", p); err != nil {
		t.Fatalf("linked account decides as nobody: %v", err)
	}
	if r := e.do(http.MethodDelete, "/api/v1/chat-identities/slack/"+p, "admin", nil); r.Status != http.StatusNoContent {
		t.Fatalf("unlink: %d %s", r.Status, r.Body)
	}
	if _, err := e.store.ChatUser(context.Background(), "slack", p); !errors.Is(err, schema.ErrNotFound) {
		t.Fatalf("unlinked account still maps to a user: %v", err)
	}
	if r := e.do(http.MethodDelete, "/api/v1/chat-identities/slack/"+p, "admin", nil); r.Status != http.StatusNotFound {
		t.Fatalf("second unlink: %d %s", r.Status, r.Body)
	}

	// From the page.
	link(p + "P")
	ck, csrf := e.sessionLogin(e.users["admin"].Username)
	if got := e.postFormAs(ck, "/chat-identities/unlink", url.Values{"csrf_token": {csrf}, "provider": {"slack"}, "external_id": {p + "P"}}); got != http.StatusOK && got != http.StatusSeeOther {
		t.Fatalf("unlink form: %d", got)
	}
	if _, err := e.store.ChatUser(context.Background(), "slack", p+"P"); !errors.Is(err, schema.ErrNotFound) {
		t.Fatalf("unlinked from the page, still maps: %v", err)
	}
	es, err := e.store.Audit(context.Background(), schema.AuditFilter{Action: "chat-identity.unlink", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, a := range es {
		if a.Target == "slack:"+p || a.Target == "slack:"+p+"P" {
			n++
		}
	}
	if n < 2 {
		t.Fatalf("unlinks audited: %d rows, want 2 (of %d)", n, len(es))
	}
}
