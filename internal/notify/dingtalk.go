package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opsflow/opsflow/schema"
)

// DingTalk posts approval tickets through a custom robot as ActionCards
// whose Approve and Reject buttons are single-use, expiring links into
// opsflow (the clicker logs in there: a robot's buttons say nothing about
// who clicked). Every request is signed as DingTalk requires. The robot
// takes 20 messages a minute: beyond that, tickets wait and go out
// together in one message — late, never dropped.
type DingTalk struct {
	Webhook string // https://oapi.dingtalk.com/robot/send?access_token=…
	Secret  string // the robot's signing secret (SEC…)
	Store   *schema.Store
	BaseURL string // opsflow's external URL, for the links
	// LinkTTL bounds a link's life (default 24 h).
	LinkTTL time.Duration
	// Limit messages per Window (default 20 per minute).
	Limit  int
	Window time.Duration
	HTTP   *http.Client

	once  sync.Once
	mu    sync.Mutex
	wake  chan struct{}
	queue []*dingItem
	sent  []time.Time
}

type dingItem struct {
	title, text, approve, reject string
	done                         chan error
}

// Channel implements activities.Notifier.
func (d *DingTalk) Channel() string { return "dingtalk" }

// Notify implements activities.Notifier: it returns once the ticket's
// message is sent (possibly batched with others).
func (d *DingTalk) Notify(ctx context.Context, t *schema.Ticket, users []string, escalation bool) error {
	approve, err := d.link(ctx, t.ID, schema.DecisionApprove)
	if err != nil {
		return err
	}
	reject, err := d.link(ctx, t.ID, schema.DecisionReject)
	if err != nil {
		return err
	}
	head := "Approval"
	if escalation {
		head = "Escalated approval"
	}
	desc := t.Description
	if len(desc) > 1500 {
		desc = desc[:1500] + "…"
	}
	it := &dingItem{
		title: fmt.Sprintf("%s #%d: %s", head, t.ID, t.Title),
		text: fmt.Sprintf("### %s #%d: %s\n\nRequested by **%s** · level %d of %d\n\nWaiting for: %s\n\n%s",
			head, t.ID, t.Title, t.Requester, t.Level+1, len(t.Policy.Levels), strings.Join(users, ", "), desc),
		approve: approve, reject: reject, done: make(chan error, 1),
	}
	return d.enqueue(ctx, it)
}

// enqueue hands it to the sender and waits for its answer.
func (d *DingTalk) enqueue(ctx context.Context, it *dingItem) error {
	d.once.Do(func() {
		d.wake = make(chan struct{}, 1)
		go d.send()
	})
	d.mu.Lock()
	d.queue = append(d.queue, it)
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
	select {
	case err := <-it.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// link makes a single-use decision link; only its hash is stored.
func (d *DingTalk) link(ctx context.Context, ticket int64, decision string) (string, error) {
	tok := make([]byte, 24)
	if _, err := rand.Read(tok); err != nil {
		return "", err
	}
	token := base64.RawURLEncoding.EncodeToString(tok)
	sum := sha256.Sum256([]byte(token))
	ttl := d.LinkTTL
	if ttl == 0 {
		ttl = 24 * time.Hour
	}
	if err := d.Store.CreateApprovalLink(ctx, &schema.ApprovalLink{TokenHash: hex.EncodeToString(sum[:]), TicketID: ticket,
		Decision: decision, ExpiresAt: time.Now().Add(ttl).UTC()}); err != nil {
		return "", err
	}
	return strings.TrimRight(d.BaseURL, "/") + "/approvals/links/" + token, nil
}

// send is the robot's one sender: it keeps to the rate limit and sends
// what queued up meanwhile as one message.
func (d *DingTalk) send() {
	limit, window := d.Limit, d.Window
	if limit <= 0 {
		limit = 20
	}
	if window <= 0 {
		window = time.Minute
	}
	for range d.wake {
		for {
			d.mu.Lock()
			if len(d.queue) == 0 {
				d.mu.Unlock()
				break
			}
			now := time.Now()
			for len(d.sent) > 0 && now.Sub(d.sent[0]) >= window {
				d.sent = d.sent[1:]
			}
			if len(d.sent) >= limit {
				wait := window - now.Sub(d.sent[0])
				d.mu.Unlock()
				time.Sleep(wait) // the robot's own limit; waiting is the point
				continue
			}
			batch := d.queue
			d.queue = nil
			d.sent = append(d.sent, now)
			d.mu.Unlock()
			err := d.post(batch)
			for _, it := range batch {
				it.done <- err
			}
		}
	}
}

func (d *DingTalk) post(batch []*dingItem) error {
	var msg map[string]any
	switch {
	case len(batch) == 1 && batch[0].approve == "":
		// A notice: nothing to decide.
		it := batch[0]
		msg = map[string]any{"msgtype": "markdown", "markdown": map[string]string{"title": it.title, "text": it.text}}
	case len(batch) == 1:
		it := batch[0]
		msg = map[string]any{"msgtype": "actionCard", "actionCard": map[string]any{
			"title": it.title, "text": it.text, "btnOrientation": "1",
			"btns": []map[string]string{{"title": "Approve", "actionURL": it.approve}, {"title": "Reject", "actionURL": it.reject}}}}
	default:
		head := fmt.Sprintf("%d approvals waiting", len(batch))
		if slices.ContainsFunc(batch, func(it *dingItem) bool { return it.approve == "" }) {
			head = fmt.Sprintf("%d messages", len(batch))
		}
		var b strings.Builder
		fmt.Fprintf(&b, "### %s\n\n", head)
		for _, it := range batch {
			if it.approve == "" {
				fmt.Fprintf(&b, "- %s\n", it.title)
				continue
			}
			fmt.Fprintf(&b, "- %s · [Approve](%s) · [Reject](%s)\n", it.title, it.approve, it.reject)
		}
		msg = map[string]any{"msgtype": "markdown", "markdown": map[string]string{"title": head, "text": b.String()}}
	}
	body, _ := json.Marshal(msg)
	u, err := SignDingTalk(d.Webhook, d.Secret, time.Now())
	if err != nil {
		return err
	}
	hc := d.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 15 * time.Second}
	}
	res, err := hc.Post(u, "application/json", bytes.NewReader(body))
	if err != nil {
		// The URL holds the robot's access token and a live signature:
		// keep it out of the error, which lands in logs and history.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = fmt.Errorf("%s robot: %w", ue.Op, ue.Err)
		}
		return fmt.Errorf("dingtalk: %w", err)
	}
	defer res.Body.Close()
	var ans struct {
		ErrCode int    `json:"errcode"`
		ErrMsg  string `json:"errmsg"`
	}
	if err := json.NewDecoder(res.Body).Decode(&ans); err != nil || res.StatusCode != http.StatusOK || ans.ErrCode != 0 {
		return fmt.Errorf("dingtalk: status %d, errcode %d %s %v", res.StatusCode, ans.ErrCode, ans.ErrMsg, err)
	}
	return nil
}

// SignDingTalk adds a custom robot's timestamp and sign to its webhook:
// sign = urlencode(base64(HMAC-SHA256(secret, timestamp_ms + "\n" + secret))).
func SignDingTalk(webhook, secret string, now time.Time) (string, error) {
	u, err := url.Parse(webhook)
	if err != nil {
		return "", fmt.Errorf("dingtalk webhook: %w", err)
	}
	if secret == "" {
		return webhook, nil
	}
	ts := strconv.FormatInt(now.UnixMilli(), 10)
	q := u.Query()
	q.Set("timestamp", ts)
	q.Set("sign", DingTalkSign(ts, secret))
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// DingTalkSign is base64(HMAC-SHA256(secret, timestamp + "\n" + secret)):
// the robot webhook's signature, and an enterprise callback's.
func DingTalkSign(timestamp, secret string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(timestamp + "\n" + secret))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}
