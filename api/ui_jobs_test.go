package api

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/opsflow/opsflow/internal/testenv"
	"github.com/opsflow/opsflow/schema"
)

// TestScriptsAndJobsUIInBrowser: write a script with parameters in the
// browser, add a version and see the diff, run it from the form generated
// from its parameters on real sshd hosts, watch the per-host grid, read a
// host's output, and retry the failed host.
func TestScriptsAndJobsUIInBrowser(t *testing.T) {
	e := newEnv(t)
	hosts := testenv.SSHD(t, 2)
	op := e.createUser(schema.RoleOperator, "operator-password-1")
	p := fmt.Sprintf("ui%d", time.Now().UnixNano())
	e.credential(p+"-key", hosts)
	ctx, cancel := context.WithTimeout(testenv.Browser(t), 150*time.Second)
	defer cancel()
	do, text := browserSteps(t, ctx)
	e.browserLogin(ctx, op.Username, "operator-password-1")

	do("new script", chromedp.Navigate(e.srv.URL+"/scripts/new"),
		chromedp.SendKeys(chromedp.ID("s-name"), p),
		chromedp.SetValue(chromedp.ID("s-content"), "echo \"hello $NAME\"\n[ \"$OPSFLOW_HOST_INDEX\" = 1 ] && exit 4\ntrue"),
		chromedp.SendKeys(chromedp.ID("pn-0"), "NAME"), chromedp.Click(chromedp.ID("pr-0")),
		chromedp.Click(chromedp.ID("add-param")), chromedp.WaitVisible(chromedp.ID("pn-1")),
		chromedp.SendKeys(chromedp.ID("pn-1"), "LOUD"), chromedp.SetValue(chromedp.ID("pt-1"), "bool"),
		chromedp.Click(chromedp.ID("save-script")), chromedp.WaitVisible(chromedp.ID("versions")))
	if c := text("content"); !strings.Contains(c, "hello $NAME") {
		t.Fatalf("script content %q", c)
	}
	do("new version", chromedp.Click(chromedp.ID("new-version")), chromedp.WaitVisible(chromedp.ID("s-content")),
		chromedp.SetValue(chromedp.ID("s-content"), "echo \"hello there $NAME\"\n[ \"$OPSFLOW_HOST_INDEX\" = 1 ] && exit 4\ntrue"),
		chromedp.Click(chromedp.ID("save-script")), chromedp.WaitVisible(chromedp.ID("versions")),
		chromedp.Click(chromedp.ID("show-diff")), chromedp.WaitVisible(chromedp.ID("diff")))
	if d := text("diff"); !strings.Contains(d, `- echo "hello $NAME"`) || !strings.Contains(d, `+ echo "hello there $NAME"`) {
		t.Fatalf("diff %q", d)
	}

	// The run form is generated from the parameters.
	do("run form", chromedp.Click(chromedp.ID("run-script")), chromedp.WaitVisible(chromedp.ID("p-NAME")), chromedp.WaitVisible(chromedp.ID("p-LOUD")))
	do("bad run", chromedp.Click(chromedp.ID("run-job")), chromedp.WaitVisible(chromedp.ID("job-error")))
	if msg := text("job-error"); !strings.Contains(msg, "params.NAME") {
		t.Fatalf("missing parameter message %q", msg)
	}
	do("run", chromedp.SendKeys(chromedp.ID("p-NAME"), "world"),
		chromedp.SetValue(chromedp.ID("j-hosts"), hosts.Targets[0].Addr+"\n"+hosts.Targets[1].Addr),
		chromedp.SetValue(chromedp.ID("j-cred"), credentialValue(t, e, p+"-key")),
		chromedp.Click(chromedp.ID("run-job")), chromedp.WaitVisible(chromedp.ID("grid")))
	eventually(t, 60*time.Second, "job page shows the job failed", func() bool {
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("job-status")))
		return err == nil && s == schema.JobFailed
	})
	// A fresh load shows the same.
	jobURL, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	do("job page", chromedp.Navigate(jobURL), chromedp.WaitVisible(chromedp.ID("grid")))
	gctx, gcancel := context.WithTimeout(ctx, 20*time.Second)
	defer gcancel()
	if err := chromedp.Do(gctx, chromedp.WaitVisible(chromedp.CSS("#h-0.succeeded")), chromedp.WaitVisible(chromedp.CSS("#h-1.failed"))); err != nil {
		html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.ID("grid")))
		js, _ := e.store.Jobs(context.Background(), 3)
		var hs []schema.JobHost
		if len(js) > 0 {
			hs, _ = e.store.JobHosts(context.Background(), js[0].ID, "", -1, 10)
		}
		var werr error
		if len(js) > 0 {
			werr = e.temporal.GetWorkflow(context.Background(), js[0].WorkflowID, "").Get(context.Background(), nil)
		}
		t.Fatalf("grid: %v\n%s\nhosts %+v\njobs %+v\nworkflow: %v", err, html, hs, js, werr)
	}
	do("retry failed", chromedp.Click(chromedp.ID("retry-failed")), chromedp.WaitVisible(chromedp.ID("confirm-yes")), chromedp.Click(chromedp.ID("confirm-yes")))
	eventually(t, 30*time.Second, "the retry job's page", func() bool {
		loc, err := chromedp.Run(ctx, chromedp.Location())
		return err == nil && loc != jobURL && strings.Contains(loc, "/jobs/")
	})
	do("retry job page", chromedp.WaitVisible(chromedp.ID("grid")))
	eventually(t, 60*time.Second, "the retry job ended", func() bool {
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("job-status")))
		return err == nil && (s == schema.JobFailed || s == schema.JobSucceeded)
	})
	js, _ := e.store.Jobs(context.Background(), 5)
	var first int64
	for _, j := range js {
		if j.ParentID == nil && j.CreatedBy == op.Username {
			first = j.ID
			break
		}
	}
	do("host output", chromedp.Navigate(fmt.Sprintf("%s/jobs/%d/hosts/0", e.srv.URL, first)), chromedp.WaitVisible(chromedp.ID("output")))
	if out := text("output"); !strings.Contains(out, "hello there world") {
		t.Fatalf("output %q", out)
	}
	if ec := text("exit-code"); ec != "0" {
		t.Fatalf("exit code %q", ec)
	}
}

// TestHostOutputLiveInBrowser: a host's page shows output as it arrives.
func TestHostOutputLiveInBrowser(t *testing.T) {
	e := newEnv(t)
	hosts := testenv.SSHD(t, 1)
	op := e.createUser(schema.RoleOperator, "operator-password-1")
	p := fmt.Sprintf("live%d", time.Now().UnixNano())
	cred := e.credential(p, hosts)
	// The host holds between its two lines until the test has seen the
	// first on the page (the sshd runs on this machine, as this user).
	gate := filepath.Join(t.TempDir(), "gate")
	sid := e.script(p, "echo live-one; while [ ! -e "+gate+" ]; do sleep 0.1; done; echo live-two", nil)
	res := e.do("POST", "/api/v1/jobs", "operator", map[string]any{"script_id": sid, "credential_id": cred, "targets": map[string]any{"hosts": []string{hosts.Targets[0].Addr}}})
	var j jobResp
	res.json(t, &j)
	eventually(t, 30*time.Second, "host running", func() bool {
		h, err := e.store.JobHost(context.Background(), j.ID, 0)
		return err == nil && h.State == schema.HostRunning
	})
	ctx, cancel := context.WithTimeout(testenv.Browser(t), 60*time.Second)
	defer cancel()
	e.browserLogin(ctx, op.Username, "operator-password-1")
	if err := chromedp.Do(ctx, chromedp.Navigate(fmt.Sprintf("%s/jobs/%d/hosts/0", e.srv.URL, j.ID)), chromedp.WaitVisible(chromedp.ID("output"))); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "live-one on the page while the host runs", func() bool {
		out, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("output")))
		return err == nil && strings.Contains(out, "live-one") && !strings.Contains(out, "live-two")
	})
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "live-two and the final state", func() bool {
		out, _ := chromedp.Run(ctx, chromedp.Text(chromedp.ID("output")))
		st, _ := chromedp.Run(ctx, chromedp.Text(chromedp.ID("host-state")))
		return strings.Contains(out, "live-two") && st == schema.HostSucceeded
	})
}
