package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/opsflow/opsflow/internal/notify"
	"github.com/opsflow/opsflow/schema"
)

// dingtalkCommand is what an approver sends the robot: "approve 12" or
// "reject 12 not during peak".
var dingtalkCommand = regexp.MustCompile(`(?is)^\s*(?:@\S+\s+)?(approve|reject)\s+#?(\d+)\s*(.*)$`)

type dingtalkMessage struct {
	MsgID         string `json:"msgId"`
	SenderStaffID string `json:"senderStaffId"`
	Text          struct {
		Content string `json:"content"`
	} `json:"text"`
}

// dingtalkWindow is how far a callback's timestamp may lie in the past.
// DingTalk documents an hour as the most a receiver should accept, and
// its own server APIs refuse a timestamp a minute off; it calls back at
// once, so a few minutes leave room for clock skew and slow delivery.
const (
	dingtalkWindow = 5 * time.Minute
	dingtalkAhead  = time.Minute
	// dingtalkSeenMax bounds the remembered signatures: far above what
	// 5 minutes of a busy robot send, and only DingTalk can add one.
	dingtalkSeenMax = 100_000
)

// signatureGuard remembers each signature seen within the window and the
// body it first came with. DingTalk signs only the timestamp, so a
// captured (timestamp, sign) pair would otherwise carry any body; a
// repeat with the same body (DingTalk's retry) passes and counts once by
// its message ID.
type signatureGuard struct {
	mu   sync.Mutex
	seen map[string]seenSig
}

type seenSig struct {
	body    [sha256.Size]byte
	expires time.Time
}

// use records sig with body; false when sig came before with another
// body, or the guard is full.
func (g *signatureGuard) use(sig string, body []byte, now time.Time) bool {
	sum := sha256.Sum256(body)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.seen == nil {
		g.seen = map[string]seenSig{}
	}
	if old, ok := g.seen[sig]; ok && now.Before(old.expires) {
		return old.body == sum
	}
	if len(g.seen) >= dingtalkSeenMax {
		for k, v := range g.seen {
			if !now.Before(v.expires) {
				delete(g.seen, k)
			}
		}
		if len(g.seen) >= dingtalkSeenMax {
			return false
		}
	}
	// Kept until the timestamp leaves the window, whatever its skew.
	g.seen[sig] = seenSig{body: sum, expires: now.Add(dingtalkWindow + dingtalkAhead)}
	return true
}

// dingtalkRobot takes decisions sent to an enterprise robot. DingTalk
// signs each callback (headers timestamp and sign: base64 of
// HMAC-SHA256(appSecret, timestamp + "\n" + appSecret)); an unsigned,
// forged or stale (over 5 minutes) one is refused, and so is a signature
// seen before with another body. The sender's staff ID must be linked to
// an opsflow user. The message ID names the decision, so DingTalk's
// retry counts once.
func (a *API) dingtalkRobot(c echo.Context) error {
	if a.dingtalk == "" {
		return newError(http.StatusNotFound, CodeNotFound, "the DingTalk robot is not configured (OPSFLOW_DINGTALK_APP_SECRET)")
	}
	setAudit(c, "approval.decide", "dingtalk")
	c.Set(auditDetailKey, "channel=dingtalk")
	ts, sign := c.Request().Header.Get("timestamp"), c.Request().Header.Get("sign")
	ms, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || !hmac.Equal([]byte(sign), []byte(notify.DingTalkSign(ts, a.dingtalk))) {
		c.Set(auditDetailKey, "channel=dingtalk: refused: bad signature")
		return newError(http.StatusUnauthorized, CodeUnauthorized, "not a valid DingTalk callback: bad signature")
	}
	if d := time.Since(time.UnixMilli(ms)); d > dingtalkWindow || d < -dingtalkAhead {
		c.Set(auditDetailKey, "channel=dingtalk: refused: stale")
		return newError(http.StatusUnauthorized, CodeUnauthorized, "not a valid DingTalk callback: stale timestamp")
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, 1<<20))
	if err != nil {
		return newError(http.StatusBadRequest, CodeBadRequest, "unreadable body")
	}
	if !a.dingtalkSeen.use(sign, body, time.Now()) {
		c.Set(auditDetailKey, "channel=dingtalk: refused: signature replayed with another body")
		return newError(http.StatusUnauthorized, CodeUnauthorized, "not a valid DingTalk callback: signature already used")
	}
	var m dingtalkMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return newError(http.StatusBadRequest, CodeBadRequest, "not a DingTalk message")
	}
	reply := func(text string) error {
		return c.JSON(http.StatusOK, map[string]any{"msgtype": "text", "text": map[string]string{"content": text}})
	}
	cmd := dingtalkCommand.FindStringSubmatch(m.Text.Content)
	if cmd == nil {
		return reply(`Send "approve 12" or "reject 12 reason".`)
	}
	id, _ := strconv.ParseInt(cmd[2], 10, 64)
	setAudit(c, "approval.decide", "approval:"+cmd[2])
	user, err := a.store.ChatUser(c.Request().Context(), "dingtalk", m.SenderStaffID)
	if errors.Is(err, schema.ErrNotFound) {
		c.Set(auditDetailKey, "channel=dingtalk: staff "+m.SenderStaffID+" is not linked to an opsflow user; nothing counted")
		return reply("Your DingTalk account is not linked to an opsflow user, so this did not count. Ask an admin to link it.")
	} else if err != nil {
		return err
	}
	c.Set(auditActorKey, user.Username)
	key := m.MsgID
	if key == "" {
		key = ts
	}
	out, err := a.decide(c, id, user, decisionRequest{Decision: strings.ToLower(cmd[1]), Comment: strings.TrimSpace(cmd[3])}, "dingtalk", key)
	if err != nil {
		return reply("Not counted: " + toError(err).Message)
	}
	return reply("#" + cmd[2] + ": " + out.Message)
}
