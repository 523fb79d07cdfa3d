package notify_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/opsflow/opsflow/internal/notify"
	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slacktest"
)

// TestSlackEscapesTicketText: a title or description cannot ping the
// channel, mention someone, hide a link behind other words or fake a
// quote; the posted message carries the text escaped.
func TestSlackEscapesTicketText(t *testing.T) {
	sts, postedTo := slackPosts(t)
	st := store(t)
	tk := ticket(t, st, 1)
	tk.Title = `<!channel> deploy <http://evil.example|docs> & more`
	tk.Description = "> approved by the CISO\nsee <http://evil.example|the runbook> <@U123> <!here> a&b\n  > nested"
	s := &notify.Slack{Client: slack.New("xoxb-test", slack.OptionAPIURL(sts.GetAPIURL())), ChannelID: "C1", Store: st, BaseURL: "http://opsflow.test"}
	if err := s.Notify(context.Background(), tk, []string{"bob"}, false); err != nil {
		t.Fatal(err)
	}
	posted := postedTo()
	if len(posted) != 1 {
		t.Fatalf("%d posts", len(posted))
	}
	text, blocksJSON, _ := strings.Cut(posted[0], "\n")
	var blocks []map[string]any
	if err := json.Unmarshal([]byte(blocksJSON), &blocks); err != nil {
		t.Fatal(err)
	}
	var texts []string
	for _, b := range blocks {
		if tx, ok := b["text"].(map[string]any); ok {
			texts = append(texts, tx["text"].(string))
		}
	}
	all := text + "\n" + strings.Join(texts, "\n")
	for _, bad := range []string{"<!channel>", "<!here>", "<@U123>", "<http://evil.example|", " & ", "a&b"} {
		if strings.Contains(all, bad) {
			t.Errorf("posted text holds %q unescaped:\n%s", bad, all)
		}
	}
	for _, want := range []string{"&lt;!channel&gt;", "&lt;http://evil.example|docs&gt; &amp; more", "&lt;@U123&gt;", "a&amp;b", "\u200b&gt; approved by the CISO", "\u200b  &gt; nested"} {
		if !strings.Contains(all, want) {
			t.Errorf("posted text lacks %q:\n%s", want, all)
		}
	}
	// The ticket's own link stays a link.
	if !strings.Contains(all, "<http://opsflow.test/approvals/") {
		t.Errorf("ticket link lost:\n%s", all)
	}
	for _, line := range strings.Split(strings.Join(texts, "\n"), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "&gt;") || strings.HasPrefix(strings.TrimSpace(line), ">") {
			t.Errorf("line renders as a quote: %q", line)
		}
	}
}

// TestSlackAnnounce: a notice is posted escaped, with its run link and
// no buttons.
func TestSlackAnnounce(t *testing.T) {
	sts, postedTo := slackPosts(t)
	s := &notify.Slack{Client: slack.New("xoxb-test", slack.OptionAPIURL(sts.GetAPIURL())), ChannelID: "C1", Store: store(t), BaseURL: "http://opsflow.test"}
	if err := s.Announce(context.Background(), "<!channel> patched", "12 hosts <@U1> done", "/runs/rb-1", []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	posted := postedTo()
	if len(posted) != 1 {
		t.Fatalf("%d posts", len(posted))
	}
	p := posted[0]
	if strings.Contains(p, "<!channel>") || strings.Contains(p, "<@U1>") || strings.Contains(p, `"actions"`) || strings.Contains(p, "Approve") ||
		!strings.Contains(p, "http://opsflow.test/runs/rb-1") || !strings.Contains(p, "12 hosts") {
		t.Fatalf("notice: %s", p)
	}
}

// slackPosts is a Slack test server recording each chat.postMessage as
// its text, a newline and its blocks' JSON.
func slackPosts(t *testing.T) (*slacktest.Server, func() []string) {
	var mu sync.Mutex
	var posted []string
	sts := slacktest.NewTestServer(func(s slacktest.Customize) {
		s.Handle("/chat.postMessage", func(w http.ResponseWriter, r *http.Request) {
			_ = r.ParseForm()
			mu.Lock()
			posted = append(posted, r.Form.Get("text")+"\n"+r.Form.Get("blocks"))
			mu.Unlock()
			fmt.Fprint(w, `{"ok":true,"channel":"C1","ts":"1700000000.000100"}`)
		})
	})
	sts.Start()
	t.Cleanup(sts.Stop)
	return sts, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(posted)
	}
}
