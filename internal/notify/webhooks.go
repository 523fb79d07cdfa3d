package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/opsflow/opsflow/schema"
)

// WeCom posts approval notices to a WeCom (企业微信) group robot: the
// webhook's key is its credential. Decisions are made in opsflow; the
// notice links there.
type WeCom struct {
	Webhook string // https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…
	BaseURL string
	HTTP    *http.Client
}

// Channel implements activities.Notifier.
func (w *WeCom) Channel() string { return "wecom" }

// Notify implements activities.Notifier.
func (w *WeCom) Notify(ctx context.Context, t *schema.Ticket, users []string, escalation bool) error {
	return w.post(ctx, map[string]any{"msgtype": "markdown", "markdown": map[string]string{"content": noticeMarkdown(t, users, escalation, w.BaseURL)}})
}

func (w *WeCom) post(ctx context.Context, msg map[string]any) error {
	var ans struct {
		ErrCode int    `json:"errcode"`
		ErrMsg  string `json:"errmsg"`
	}
	if err := postJSON(ctx, w.HTTP, w.Webhook, msg, &ans); err != nil {
		return fmt.Errorf("wecom: %w", err)
	}
	if ans.ErrCode != 0 {
		return fmt.Errorf("wecom: errcode %d %s", ans.ErrCode, ans.ErrMsg)
	}
	return nil
}

// Feishu posts approval notices to a Feishu (Lark) custom bot, signed:
// sign = base64(HMAC-SHA256(key = timestamp + "\n" + secret, message "")).
type Feishu struct {
	Webhook string // https://open.feishu.cn/open-apis/bot/v2/hook/…
	Secret  string
	BaseURL string
	HTTP    *http.Client
}

// Channel implements activities.Notifier.
func (f *Feishu) Channel() string { return "feishu" }

// Notify implements activities.Notifier.
func (f *Feishu) Notify(ctx context.Context, t *schema.Ticket, users []string, escalation bool) error {
	return f.post(ctx, map[string]any{"msg_type": "text", "content": map[string]string{"text": noticeText(t, users, escalation, f.BaseURL)}})
}

// post signs msg (when the bot has a secret) and sends it.
func (f *Feishu) post(ctx context.Context, msg map[string]any) error {
	if f.Secret != "" {
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		msg["timestamp"], msg["sign"] = ts, FeishuSign(ts, f.Secret)
	}
	var ans struct {
		Code int    `json:"code"`
		Msg  string `json:"msg"`
	}
	if err := postJSON(ctx, f.HTTP, f.Webhook, msg, &ans); err != nil {
		return fmt.Errorf("feishu: %w", err)
	}
	if ans.Code != 0 {
		return fmt.Errorf("feishu: code %d %s", ans.Code, ans.Msg)
	}
	return nil
}

// FeishuSign is a Feishu custom bot's signature for timestamp (seconds).
func FeishuSign(timestamp, secret string) string {
	mac := hmac.New(sha256.New, []byte(timestamp+"\n"+secret))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

func noticeText(t *schema.Ticket, users []string, escalation bool, baseURL string) string {
	head := "Approval"
	if escalation {
		head = "Escalated approval"
	}
	return fmt.Sprintf("%s #%d: %s\nRequested by %s · level %d of %d\nWaiting for: %s\n%s/approvals/%d",
		head, t.ID, t.Title, t.Requester, t.Level+1, len(t.Policy.Levels), strings.Join(users, ", "), strings.TrimRight(baseURL, "/"), t.ID)
}

func noticeMarkdown(t *schema.Ticket, users []string, escalation bool, baseURL string) string {
	head := "Approval"
	if escalation {
		head = "Escalated approval"
	}
	return fmt.Sprintf("**%s #%d: %s**\n> Requested by %s · level %d of %d\n> Waiting for: %s\n[Decide in opsflow](%s/approvals/%d)",
		head, t.ID, t.Title, t.Requester, t.Level+1, len(t.Policy.Levels), strings.Join(users, ", "), strings.TrimRight(baseURL, "/"), t.ID)
}

func postJSON(ctx context.Context, hc *http.Client, url string, body, answer any) error {
	if hc == nil {
		hc = &http.Client{Timeout: 15 * time.Second}
	}
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", res.StatusCode)
	}
	return json.NewDecoder(res.Body).Decode(answer)
}
