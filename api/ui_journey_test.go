package api

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/opsflow/opsflow/internal/testenv"
	"github.com/opsflow/opsflow/schema"
)

// TestNewcomerJourneysInBrowser walks the journeys of a team's first hour
// in Chromium, from the first admin account alone and with nothing but
// clicks and typed fields: users and a credential, hosts registered and
// labelled, discovery, a script with two parameters and a second
// version, a job previewed over a selector and run, another paused,
// resumed and aborted, a job gated by an approval policy and approved
// from the inbox, and the audit log of it all. The test reads the store
// only to check outcomes. Each journey's clicks and filled fields are
// counted and logged as a table: the measure of how much a newcomer has
// to do.
func TestNewcomerJourneysInBrowser(t *testing.T) {
	e := newEnv(t)
	targets := testenv.SSHD(t, 3)
	admin, adminPassword := e.users[schema.RoleAdmin], "correct-horse-battery"
	ctx, cancel := context.WithTimeout(testenv.Browser(t), 12*time.Minute)
	defer cancel()
	j := &journeys{t: t, ctx: ctx, count: map[string]*stepCount{}}
	bg := context.Background()
	// Names unique in the package's shared database; the label value p
	// keeps selectors and the approval policy to this test's hosts.
	p := "j" + strconv.FormatInt(time.Now().UnixNano()%1e12, 36)
	opName, viewerName, approverName := p+"-op", p+"-viewer", p+"-approver"
	const opPassword, viewerPassword, approverPassword = "operator-password-1", "viewer-password-1", "approver-password-1"
	credName, scriptName, policyName := p+"-key", p+"-greet", p+"-gate"
	t.Cleanup(func() {
		// The package's tests share the database, and a later test's sshd
		// may listen at an address these hosts had: take away the gate and
		// the hosts, lest that test's jobs wait for this test's approver.
		if err := e.store.DeleteApprovalPolicy(bg, policyName); err != nil && !errors.Is(err, schema.ErrNotFound) {
			t.Errorf("cleanup: policy: %v", err)
		}
		hosts, _, err := e.store.CIs(bg, schema.CIQuery{Type: "host", Selector: "journey=" + p})
		if err != nil {
			t.Errorf("cleanup: hosts: %v", err)
		}
		for _, h := range hosts {
			if err := e.store.DeleteCI(bg, h.ID, true, schema.Change{Actor: "test-cleanup"}); err != nil {
				t.Errorf("cleanup: host %s: %v", h.Name, err)
			}
		}
	})

	j.begin("1 users and credential")
	j.openAddress(e.srv.URL + "/login")
	j.login(admin.Username, adminPassword)
	j.adminMenu("/users", "#user-form")
	for _, u := range []struct{ name, role, password string }{{opName, schema.RoleOperator, opPassword}, {viewerName, schema.RoleViewer, viewerPassword}} {
		j.fill("#u-username", u.name)
		j.choose("#u-role", u.role)
		j.fill("#u-password", u.password)
		j.submit("#create-user", "#flash")
		if got, err := e.store.UserByUsername(bg, u.name); err != nil || got.Role != u.role {
			t.Fatalf("user %s: %+v %v", u.name, got, err)
		}
	}
	j.adminMenu("/credentials", "#credential-form")
	j.fill("#c-name", credName)
	j.fill("#c-username", targets.User)
	j.fill("#c-key", string(targets.PrivateKeyPEM))
	j.submit("#create-credential", "#flash")
	if cr, err := e.store.CredentialByName(bg, credName); err != nil || cr.Kind != schema.CredSSHKey || cr.Username != targets.User {
		t.Fatalf("credential: %+v %v", cr, err)
	}

	j.begin("2 register and label hosts")
	hostNames := []string{p + "-web1", p + "-web2", p + "-db1"}
	roles := []string{"web", "web", "db"}
	for i, name := range hostNames {
		j.nav("/cmdb", "#ci-search")
		j.submit(`.subnav a[href="/cmdb/types"]`, "#new-ci-host")
		j.submit("#new-ci-host", "#ci-form")
		j.fill("#c-name", name)
		j.fill("#c-attr-address", targets.Targets[i].Addr)
		j.fill("#c-label-0-key", "journey")
		j.fill("#c-label-0-value", p)
		j.submit("#add-label", "#c-label-1-key")
		j.fill("#c-label-1-key", "role")
		j.fill("#c-label-1-value", roles[i])
		j.submit("#save-ci", "#labels")
		if l := j.text("#labels"); !strings.Contains(l, "journey="+p) || !strings.Contains(l, "role="+roles[i]) {
			t.Fatalf("%s's labels: %q", name, l)
		}
	}

	j.begin("3 discover")
	j.nav("/cmdb", "#ci-search")
	j.submit(`.subnav a[href="/cmdb/discover"]`, "#discover-form")
	j.fill("#d-addresses", targets.Targets[0].Addr+"\n"+targets.Targets[1].Addr+"\n"+targets.Targets[2].Addr)
	j.choose("#d-cred", credName)
	j.submit("#discover", "#discovery-progress")
	// The run page follows the discovery by itself.
	j.waitText("#run-status", schema.RunCompleted, 3*time.Minute)
	// Three hosts known by their addresses: updated, none created.
	j.waitText("#discovery-progress", "3 updated", time.Minute)
	j.nav("/cmdb", "#ci-search")
	j.fill("#f-q", hostNames[2])
	j.submit("#search", "#cis")
	j.submit(`#cis a[href^="/cmdb/cis/"]`, "#attributes")
	// Facts appear on the CI page: what the host itself answered.
	for _, attr := range []string{"hostname", "os", "kernel", "cpu_count"} {
		if s := j.text("#attr-" + attr); strings.TrimSpace(strings.TrimPrefix(s, attr)) == "" {
			t.Fatalf("fact %s missing on the CI page: %q", attr, s)
		}
	}
	if s := j.text("#attr-address"); !strings.Contains(s, targets.Targets[2].Addr) {
		t.Fatalf("address on the CI page: %q", s)
	}

	j.begin("4 script with two parameters, second version")
	j.logout()
	j.login(opName, opPassword)
	j.nav("/scripts", "#new-script")
	j.submit("#new-script", "#script-form")
	content := "echo \"hello $WHO from $OPSFLOW_HOST\"\nsleep \"$PAUSE\""
	j.fill("#s-name", scriptName)
	j.fill("#s-content", content)
	j.fill("#pn-0", "WHO")
	j.click("#pr-0")
	j.submit("#add-param", "#pn-1")
	j.fill("#pn-1", "PAUSE")
	j.choose("#pt-1", "int")
	j.fill("#pd-1", "0")
	j.submit("#save-script", "#versions")
	j.submit("#new-version", "#script-form")
	content2 := strings.Replace(content, "hello $WHO", "hello, $WHO,", 1)
	j.fill("#s-content", content2)
	j.fill("#s-comment", "commas")
	j.submit("#save-script", "#versions")
	j.submit("#show-diff", "#diff")
	d := j.text("#diff")
	if oldAt, newAt := strings.Index(d, `- echo "hello $WHO`), strings.Index(d, `+ echo "hello, $WHO,`); oldAt < 0 || newAt < oldAt {
		t.Fatalf("the diff does not show the change, old above new:\n%s", d)
	}

	j.begin("5 preview, run; pause, resume, abort")
	selector := "journey=" + p + ",role=web"
	j.submit("#run-script", "#job-form")
	j.fill("#p-WHO", "world")
	j.fill("#j-selector", selector)
	j.choose("#j-cred", credName)
	j.submit("#preview-job", "#preview")
	if n := j.text("#preview-count"); n != "2" {
		t.Fatalf("preview count %q, want 2", n)
	}
	if l := j.text("#preview-hosts"); !strings.Contains(l, targets.Targets[0].Addr) || !strings.Contains(l, targets.Targets[1].Addr) || strings.Contains(l, targets.Targets[2].Addr) {
		t.Fatalf("preview hosts %q", l)
	}
	if n := e.jobsBy(opName); n != 0 {
		t.Fatalf("the preview started %d jobs", n)
	}
	j.submit("#run-job", "#grid")
	j.waitText("#job-status", schema.JobSucceeded, 2*time.Minute)
	// The counts come with the server's rendering of the ended job.
	j.waitEqual("#count-succeeded", "2", time.Minute)
	// A longer one, controlled from its page.
	j.nav("/scripts", "#scripts")
	j.follow("#scripts tr", scriptName, "Run", "#job-form")
	j.fill("#p-WHO", "slowly")
	j.fill("#p-PAUSE", "600")
	j.fill("#j-selector", selector)
	j.choose("#j-cred", credName)
	j.submit("#run-job", "#grid")
	j.waitText("#job-status", schema.JobRunning, time.Minute)
	j.submit("#op-pause", "#flash")
	j.waitText("#job-status", schema.JobPaused, time.Minute)
	j.submit("#op-resume", "#grid")
	j.waitText("#job-status", schema.JobRunning, time.Minute)
	j.submit("#op-abort", "#confirm-yes")
	j.submit("#confirm-yes", "#grid")
	j.waitText("#job-status", schema.JobAborted, 2*time.Minute)

	j.begin("6 approval gate")
	j.logout()
	j.login(admin.Username, adminPassword)
	j.adminMenu("/users", "#user-form")
	j.fill("#u-username", approverName)
	j.choose("#u-role", schema.RoleApprover)
	j.fill("#u-password", approverPassword)
	j.submit("#create-user", "#flash")
	j.adminMenu("/policies", "#policy-form")
	j.fill("#p-name", policyName)
	j.fill("#p-targets", "journey="+p)
	j.fill("#p-l0-users", approverName)
	j.submit("#save-policy", fmt.Sprintf(`section[data-policy=%q]`, policyName))
	if pol, err := e.store.ApprovalPolicyByName(bg, policyName); err != nil || pol.Spec.Match == nil || pol.Spec.Match.Targets != "journey="+p {
		t.Fatalf("policy: %+v %v", pol, err)
	}
	j.logout()
	j.login(opName, opPassword)
	j.nav("/scripts", "#scripts")
	j.follow("#scripts tr", scriptName, "Run", "#job-form")
	j.fill("#p-WHO", "approved world")
	j.fill("#j-selector", "journey="+p)
	j.choose("#j-cred", credName)
	j.submit("#run-job", "#grid")
	j.waitVisible("#approval", time.Minute)
	j.waitText("#job-status", schema.JobAwaitingApproval, time.Minute)
	gatedJob := j.location()
	j.logout()
	j.login(approverName, approverPassword)
	j.nav("/approvals", "#tickets")
	j.waitText("#tickets", scriptName, time.Minute)
	j.follow("#tickets tr[data-ticket]", scriptName, scriptName, "#approve")
	j.submit("#approve", "#flash")
	if f := j.text("#flash"); !strings.Contains(f, "approved") {
		t.Fatalf("after approving: %q", f)
	}
	j.submit("#gated a", "#job-status")
	if loc := j.location(); loc != gatedJob {
		t.Fatalf("the ticket links %s, the gated job is %s", loc, gatedJob)
	}
	j.waitText("#job-status", schema.JobSucceeded, 2*time.Minute)
	j.waitEqual("#count-succeeded", "3", time.Minute)

	j.begin("7 audit log")
	j.logout()
	j.login(admin.Username, adminPassword)
	j.adminMenu("/audit", "#audit-filters")
	for _, who := range []struct {
		actor   string
		actions []string
	}{
		{admin.Username, []string{"user.create", "credential.create", "cmdb.ci.create", "run:discovery:", "approval-policy.save"}},
		{opName, []string{"script.create", "script.version.create", "job.create", "job.pause", "job.resume", "job.abort"}},
		{approverName, []string{"approval.decide"}},
	} {
		j.fill("#f-actor", who.actor)
		j.submit("#filter", "#audit")
		rows := j.text("#audit")
		for _, a := range who.actions {
			if !strings.Contains(rows, a) {
				t.Errorf("the audit log of %s has no %s:\n%s", who.actor, a, rows)
			}
		}
	}

	t.Logf("steps per journey (clicks / fields):")
	var total stepCount
	for _, name := range j.order {
		c := j.count[name]
		t.Logf("  %-46s %3d / %3d", name, c.clicks, c.fields)
		total.clicks += c.clicks
		total.fields += c.fields
	}
	t.Logf("  %-46s %3d / %3d", "all", total.clicks, total.fields)
}

// stepCount is what a person does in one journey.
type stepCount struct{ clicks, fields int }

// journeys drives one browser tab with the steps a person takes,
// counting clicks (buttons, links, checkboxes) and fields filled (typed
// inputs, chosen options, an address typed in the address bar) per
// journey.
type journeys struct {
	t     *testing.T
	ctx   context.Context
	order []string
	count map[string]*stepCount
	cur   *stepCount
}

func (j *journeys) begin(name string) {
	j.t.Logf("journey %s", name)
	j.cur = &stepCount{}
	j.order = append(j.order, name)
	j.count[name] = j.cur
}

// do runs actions, each step within a minute and a half: an element
// that never shows fails the test naming the step instead of hanging it.
func (j *journeys) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	j.t.Helper()
	ctx, cancel := context.WithTimeout(j.ctx, 90*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		j.t.Fatalf("%s: %v", what, err)
	}
}

// openAddress types an address into the address bar.
func (j *journeys) openAddress(url string) {
	j.t.Helper()
	j.cur.fields++
	// The first action opens the tab, which lives as long as the
	// context it ran in: j.ctx, not a step's.
	if err := chromedp.Do(j.ctx, chromedp.Navigate(url)); err != nil {
		j.t.Fatalf("open %s: %v", url, err)
	}
}

// click clicks what sel finds on this page.
func (j *journeys) click(sel string) {
	j.t.Helper()
	j.cur.clicks++
	j.do("click "+sel, chromedp.Click(chromedp.CSS(sel)))
}

// submit clicks what sel finds and waits for the next page to load and
// show want.
func (j *journeys) submit(sel, want string) {
	j.t.Helper()
	j.nextPage(sel, want, func() { j.click(sel) })
}

// follow clicks the link whose text contains link in the first of the
// rows (a CSS selector) whose text contains row, and waits for the next
// page to show want.
func (j *journeys) follow(rows, row, link, want string) {
	j.t.Helper()
	j.nextPage(link+" of "+row, want, func() {
		j.cur.clicks++
		ok, err := chromedp.Run(j.ctx, chromedp.Evaluate[bool](fmt.Sprintf(`(function () {
			var rows = document.querySelectorAll(%q);
			for (var i = 0; i < rows.length; i++) {
				if (rows[i].innerText.indexOf(%q) < 0) continue;
				var as = rows[i].querySelectorAll("a");
				for (var k = 0; k < as.length; k++) if (as[k].innerText.indexOf(%q) >= 0) { as[k].click(); return true; }
			}
			return false;
		})()`, rows, row, link)))
		if err != nil || !ok {
			j.t.Fatalf("no link %q in a row %s showing %q (%v)", link, rows, row, err)
		}
	})
}

// nextPage does click and waits for the next page to load and show want:
// a mark on the old page tells the pages apart.
func (j *journeys) nextPage(what, want string, click func()) {
	j.t.Helper()
	if _, err := chromedp.Run(j.ctx, chromedp.Evaluate[bool](`window.journeyOldPage = true`)); err != nil {
		j.t.Fatalf("mark the page before %s: %v", what, err)
	}
	click()
	check := fmt.Sprintf(`(function () { var e = document.querySelector(%q); return !window.journeyOldPage && document.readyState === "complete" && !!e && e.getClientRects().length > 0; })()`, want)
	eventually(j.t, time.Minute, "after "+what+", a page showing "+want, func() bool {
		ok, err := chromedp.Run(j.ctx, chromedp.Evaluate[bool](check))
		return err == nil && ok
	})
}

// fill types value into the field sel finds, replacing what it held.
func (j *journeys) fill(sel, value string) {
	j.t.Helper()
	j.cur.fields++
	j.do("fill "+sel, chromedp.SetValue(chromedp.CSS(sel), value))
}

// choose picks the first option of the select sel finds whose text
// contains label.
func (j *journeys) choose(sel, label string) {
	j.t.Helper()
	j.cur.fields++
	ok, err := chromedp.Run(j.ctx, chromedp.Evaluate[bool](fmt.Sprintf(`(function () {
		var s = document.querySelector(%q);
		if (!s) return false;
		for (var i = 0; i < s.options.length; i++) {
			if (s.options[i].text.indexOf(%q) >= 0) { s.selectedIndex = i; s.dispatchEvent(new Event("change", {bubbles: true})); return true; }
		}
		return false;
	})()`, sel, label)))
	if err != nil || !ok {
		j.t.Fatalf("choose %q in %s: %v (no such option?)", label, sel, err)
	}
}

// nav follows a link of the main navigation.
func (j *journeys) nav(href, want string) {
	j.t.Helper()
	j.submit(fmt.Sprintf(`nav a[href=%q]`, href), want)
}

// adminMenu opens the admin menu and follows its link.
func (j *journeys) adminMenu(href, want string) {
	j.t.Helper()
	j.click("#admin-menu summary")
	j.submit(fmt.Sprintf(`#admin-menu a[href=%q]`, href), want)
}

func (j *journeys) login(username, password string) {
	j.t.Helper()
	j.fill("#username", username)
	j.fill("#password", password)
	j.submit("#login", "#whoami")
	if who := j.text("#whoami"); !strings.Contains(who, username) {
		j.t.Fatalf("logged in as %q, want %s", who, username)
	}
}

func (j *journeys) logout() {
	j.t.Helper()
	j.submit("#logout", "#login")
}

func (j *journeys) text(sel string) string {
	j.t.Helper()
	ctx, cancel := context.WithTimeout(j.ctx, 90*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		j.t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

func (j *journeys) location() string {
	j.t.Helper()
	loc, err := chromedp.Run(j.ctx, chromedp.Location())
	if err != nil {
		j.t.Fatal(err)
	}
	return loc
}

// waitText waits for the page (which follows its subject live) to show
// want in what sel finds.
func (j *journeys) waitText(sel, want string, d time.Duration) {
	j.t.Helper()
	j.waitFor(sel, "text containing "+strconv.Quote(want), func(s string) bool { return strings.Contains(s, want) }, d)
}

// waitEqual waits for what sel finds to read exactly want.
func (j *journeys) waitEqual(sel, want string, d time.Duration) {
	j.t.Helper()
	j.waitFor(sel, strconv.Quote(want), func(s string) bool { return strings.TrimSpace(s) == want }, d)
}

func (j *journeys) waitFor(sel, what string, ok func(string) bool, d time.Duration) {
	j.t.Helper()
	deadline := time.Now().Add(d)
	for {
		got, err := chromedp.Run(j.ctx, chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%q) || {}).innerText || ""`, sel)))
		if err == nil && ok(got) {
			return
		}
		if time.Now().After(deadline) {
			j.t.Fatalf("timed out after %s waiting for %s to show %s: it shows %q (%v)", d, sel, what, got, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (j *journeys) waitVisible(sel string, d time.Duration) {
	j.t.Helper()
	eventually(j.t, d, sel+" visible", func() bool {
		ok, err := chromedp.Run(j.ctx, chromedp.Evaluate[bool](fmt.Sprintf(`(function () { var e = document.querySelector(%q); return !!e && e.getClientRects().length > 0; })()`, sel)))
		return err == nil && ok
	})
}
