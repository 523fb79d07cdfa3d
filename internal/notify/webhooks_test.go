package notify_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/opsflow/opsflow/internal/notify"
	"github.com/opsflow/opsflow/schema"
)

func TestWeComAndFeishuNotices(t *testing.T) {
	st := store(t)
	tk := ticket(t, st, 1)
	var mu sync.Mutex
	got := map[string]map[string]any{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		_ = json.NewDecoder(r.Body).Decode(&m)
		mu.Lock()
		got[r.URL.Path] = m
		mu.Unlock()
		switch r.URL.Path {
		case "/cgi-bin/webhook/send":
			if r.URL.Query().Get("key") != "wk" {
				fmt.Fprint(w, `{"errcode":93000,"errmsg":"invalid webhook url"}`)
				return
			}
			fmt.Fprint(w, `{"errcode":0,"errmsg":"ok"}`)
		case "/open-apis/bot/v2/hook/h":
			ts, _ := m["timestamp"].(string)
			if m["sign"] != notify.FeishuSign(ts, "fs-secret") {
				fmt.Fprint(w, `{"code":19021,"msg":"sign match fail or timestamp is not within one hour from current time"}`)
				return
			}
			fmt.Fprint(w, `{"code":0,"msg":"success"}`)
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	if err := (&notify.WeCom{Webhook: srv.URL + "/cgi-bin/webhook/send?key=wk", BaseURL: "https://ops.example"}).Notify(ctx, tk, []string{"bob"}, true); err != nil {
		t.Fatal(err)
	}
	if c := got["/cgi-bin/webhook/send"]["markdown"].(map[string]any)["content"].(string); !strings.Contains(c, "Escalated approval #1") || !strings.Contains(c, "https://ops.example/approvals/1") {
		t.Fatalf("wecom: %q", c)
	}
	if err := (&notify.WeCom{Webhook: srv.URL + "/cgi-bin/webhook/send?key=bad"}).Notify(ctx, tk, nil, false); err == nil {
		t.Fatal("wecom with a bad key succeeded")
	}
	if err := (&notify.Feishu{Webhook: srv.URL + "/open-apis/bot/v2/hook/h", Secret: "fs-secret", BaseURL: "https://ops.example"}).Notify(ctx, tk, []string{"bob"}, false); err != nil {
		t.Fatal(err)
	}
	if err := (&notify.Feishu{Webhook: srv.URL + "/open-apis/bot/v2/hook/h", Secret: "other"}).Notify(ctx, tk, nil, false); err == nil || !strings.Contains(err.Error(), "sign") {
		t.Fatalf("feishu with a wrong secret: %v", err)
	}
}

// TestEmailNotice sends through a minimal SMTP server and reads the
// message it received.
func TestEmailNotice(t *testing.T) {
	st := store(t)
	ctx := context.Background()
	if err := st.CreateUser(ctx, &schema.User{Username: "bob", Role: schema.RoleApprover, Email: "bob@example.test"}); err != nil {
		t.Fatal(err)
	}
	tk := ticket(t, st, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	received := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		say := func(s string) { fmt.Fprint(c, s+"\r\n") }
		say("220 test ESMTP")
		var rcpt []string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			cmd := strings.ToUpper(strings.TrimSpace(line))
			switch {
			case strings.HasPrefix(cmd, "EHLO"), strings.HasPrefix(cmd, "HELO"):
				say("250 test")
			case strings.HasPrefix(cmd, "MAIL FROM"):
				say("250 ok")
			case strings.HasPrefix(cmd, "RCPT TO"):
				rcpt = append(rcpt, strings.TrimSpace(line))
				say("250 ok")
			case cmd == "DATA":
				say("354 go on")
				var body strings.Builder
				for {
					l, err := r.ReadString('\n')
					if err != nil || l == ".\r\n" {
						break
					}
					body.WriteString(l)
				}
				received <- strings.Join(rcpt, ";") + "\n" + body.String()
				say("250 queued")
			case cmd == "QUIT":
				say("221 bye")
				return
			default:
				say("250 ok")
			}
		}
	}()
	e := &notify.Email{Addr: ln.Addr().String(), From: "opsflow@example.test", Store: st, BaseURL: "https://ops.example"}
	if err := e.Notify(ctx, tk, []string{"bob", "nobody"}, false); err != nil {
		t.Fatal(err)
	}
	msg := <-received
	if !strings.Contains(msg, "bob@example.test") || !strings.Contains(msg, "Subject: [opsflow] Approval #1: change 1") || !strings.Contains(msg, "https://ops.example/approvals/1") {
		t.Fatalf("message: %q", msg)
	}
}

// TestAnnounceSendsNoticesWithoutDecisions: a runbook's notice goes out
// on each channel with its title, message and run link, and with no
// Approve/Reject button or decision link.
func TestAnnounceSendsNoticesWithoutDecisions(t *testing.T) {
	st := store(t)
	ctx := context.Background()
	var mu sync.Mutex
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
		switch {
		case strings.Contains(r.URL.Path, "feishu"):
			fmt.Fprint(w, `{"code":0,"msg":"success"}`)
		default:
			fmt.Fprint(w, `{"errcode":0,"errmsg":"ok"}`)
		}
	}))
	defer srv.Close()
	const path = "/runs/runbook:7:abc"
	for name, n := range map[string]interface {
		Announce(ctx context.Context, title, message, path string, users []string) error
	}{
		"wecom":    &notify.WeCom{Webhook: srv.URL + "/wecom", BaseURL: "https://ops.example"},
		"feishu":   &notify.Feishu{Webhook: srv.URL + "/feishu", Secret: "s", BaseURL: "https://ops.example"},
		"dingtalk": &notify.DingTalk{Webhook: srv.URL + "/robot/send?access_token=t", Secret: "SEC", Store: st, BaseURL: "https://ops.example"},
	} {
		mu.Lock()
		bodies = nil
		mu.Unlock()
		if err := n.Announce(ctx, "Patch done", "12 hosts patched", path, []string{"bob"}); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		mu.Lock()
		got := strings.Join(bodies, "\n")
		mu.Unlock()
		if !strings.Contains(got, "Patch done") || !strings.Contains(got, "12 hosts patched") || !strings.Contains(got, "https://ops.example"+path) {
			t.Errorf("%s: notice %s", name, got)
		}
		for _, bad := range []string{"Approve", "Reject", "/approvals/"} {
			if strings.Contains(got, bad) {
				t.Errorf("%s: the notice offers a decision (%q): %s", name, bad, got)
			}
		}
	}
}
