package api

import (
	"crypto/hmac"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
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

// dingtalkRobot takes decisions sent to an enterprise robot. DingTalk
// signs each callback (headers timestamp and sign: base64 of
// HMAC-SHA256(appSecret, timestamp + "\n" + appSecret)); an unsigned,
// forged or stale (over an hour) one is refused. The sender's staff ID
// must be linked to an opsflow user. The message ID names the decision,
// so DingTalk's retry counts once.
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
	if d := time.Since(time.UnixMilli(ms)); d > time.Hour || d < -5*time.Minute {
		c.Set(auditDetailKey, "channel=dingtalk: refused: stale")
		return newError(http.StatusUnauthorized, CodeUnauthorized, "not a valid DingTalk callback: stale timestamp")
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, 1<<20))
	if err != nil {
		return newError(http.StatusBadRequest, CodeBadRequest, "unreadable body")
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
