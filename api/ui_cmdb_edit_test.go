package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/opsflow/opsflow/internal/testenv"
	"github.com/opsflow/opsflow/schema"
)

// browserText returns a helper that waits until the element's text
// contains want, and returns it.
func browserText(t *testing.T, ctx context.Context) func(sel chromedp.ID, want string) string {
	return func(sel chromedp.ID, want string) string {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			got, err := chromedp.Run(ctx, chromedp.Text(sel, chromedp.AtLeast(0)))
			if err == nil && strings.Contains(got, want) {
				return got
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: want text containing %q, have %q (%v)", sel, want, got, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func browserValue(t *testing.T, ctx context.Context, sel chromedp.ID) string {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Value(sel))
	if err != nil {
		t.Fatalf("value of %s: %v", sel, err)
	}
	return v
}

// present counts the elements matching a CSS selector on the page.
func present(t *testing.T, ctx context.Context, css string) int {
	t.Helper()
	n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll(`+strconv.Quote(css)+`).length`))
	if err != nil {
		t.Fatalf("count %s: %v", css, err)
	}
	return n
}

// TestCMDBEditInBrowser walks an operator through creating a host with
// labels (an error keeps every input), editing it, a refused stale edit,
// adding and deleting a relation and deleting the CI, each confirmed.
func TestCMDBEditInBrowser(t *testing.T) {
	e := newEnv(t)
	op := e.createUser(schema.RoleOperator, "operator-password-1")
	ctx, cancel := context.WithTimeout(testenv.Browser(t), 180*time.Second)
	defer cancel()
	p := fmt.Sprintf("edit%d-", time.Now().UnixNano())
	run, text := browserSteps(t, ctx)
	wait := browserText(t, ctx)
	e.browserLogin(ctx, op.Username, "operator-password-1")

	run("new host form",
		chromedp.Navigate(e.srv.URL+"/cmdb/types"),
		chromedp.Click(chromedp.ID("new-ci-host")),
		chromedp.WaitVisible(chromedp.ID("ci-form")),
		chromedp.SetValue(chromedp.ID("c-name"), p+"web"),
		chromedp.SetValue(chromedp.ID("c-attr-os"), "debian"),
		chromedp.SetValue(chromedp.ID("c-attr-cpu_count"), "lots"),
		chromedp.SetValue(chromedp.ID("c-label-0-key"), "env"),
		chromedp.SetValue(chromedp.ID("c-label-0-value"), "prod"),
		chromedp.Click(chromedp.ID("add-label")),
		chromedp.WaitVisible(chromedp.ID("c-label-1-key")),
		chromedp.SetValue(chromedp.ID("c-label-1-key"), "role"),
		chromedp.SetValue(chromedp.ID("c-label-1-value"), "web"),
		chromedp.Click(chromedp.ID("save-ci")),
		chromedp.WaitVisible(chromedp.ID("c-attr-cpu_count-error")),
	)
	if msg := text("c-attr-cpu_count-error"); !strings.Contains(msg, "integer") {
		t.Fatalf("cpu_count error: %q", msg)
	}
	for id, want := range map[chromedp.ID]string{"c-name": p + "web", "c-attr-os": "debian", "c-attr-cpu_count": "lots",
		"c-label-0-key": "env", "c-label-0-value": "prod", "c-label-1-key": "role", "c-label-1-value": "web"} {
		if got := browserValue(t, ctx, id); got != want {
			t.Fatalf("after the error %s = %q, want %q", id, got, want)
		}
	}
	if _, err := e.store.CIByName(ctx, "host", p+"web"); !errors.Is(err, schema.ErrNotFound) {
		t.Fatalf("a refused form wrote: %v", err)
	}
	run("create host",
		chromedp.SetValue(chromedp.ID("c-attr-cpu_count"), "4"),
		chromedp.Click(chromedp.ID("save-ci")),
		chromedp.WaitVisible(chromedp.ID("flash")),
	)
	web, err := e.store.CIByName(ctx, "host", p+"web")
	if err != nil {
		t.Fatal(err)
	}
	if web.Labels["env"] != "prod" || web.Labels["role"] != "web" || fmt.Sprint(web.Attributes["cpu_count"]) != "4" || web.Attributes["os"] != "debian" {
		t.Fatalf("created %+v", web)
	}
	wait("labels", "role=web")

	run("edit host",
		chromedp.Click(chromedp.ID("edit-ci")),
		chromedp.WaitVisible(chromedp.ID("ci-form")),
		chromedp.SetValue(chromedp.ID("c-attr-cpu_count"), "8"),
	)
	// Clear the "role" row: the label goes.
	for i := 0; i < 3; i++ {
		id := chromedp.ID(fmt.Sprintf("c-label-%d-key", i))
		if browserValue(t, ctx, id) == "role" {
			run("clear label", chromedp.Clear(id), chromedp.Clear(chromedp.ID(fmt.Sprintf("c-label-%d-value", i))))
		}
	}
	run("save edit", chromedp.Click(chromedp.ID("save-ci")), chromedp.WaitVisible(chromedp.ID("flash")))
	web, _ = e.store.CI(ctx, web.ID)
	if _, ok := web.Labels["role"]; ok || fmt.Sprint(web.Attributes["cpu_count"]) != "8" || web.Version != 2 {
		t.Fatalf("edited %+v", web)
	}

	// A stale edit is refused, not written over the other change.
	run("open edit", chromedp.Click(chromedp.ID("edit-ci")), chromedp.WaitVisible(chromedp.ID("ci-form")))
	osName := "ubuntu"
	if _, err := e.store.UpdateCI(ctx, web.ID, web.Version, schema.CIPatch{Attributes: map[string]json.RawMessage{"os": json.RawMessage(strconv.Quote(osName))}}, schema.Change{Actor: "someone-else"}); err != nil {
		t.Fatal(err)
	}
	run("stale save",
		chromedp.SetValue(chromedp.ID("c-attr-cpu_count"), "32"),
		chromedp.Click(chromedp.ID("save-ci")),
		chromedp.WaitVisible(chromedp.ID("form-error")),
	)
	if msg := text("form-error"); !strings.Contains(msg, "someone changed this CI") {
		t.Fatalf("stale message: %q", msg)
	}
	if got := browserValue(t, ctx, "c-attr-cpu_count"); got != "32" {
		t.Fatalf("stale edit lost the input: %q", got)
	}
	if cur, _ := e.store.CI(ctx, web.ID); fmt.Sprint(cur.Attributes["cpu_count"]) != "8" || cur.Attributes["os"] != osName {
		t.Fatalf("stale edit wrote: %+v", cur.Attributes)
	}

	// Relations: api runs_on web, added from web's page by api's name.
	api := e.mkCI("service", p+"api", nil, nil)
	run("add relation",
		chromedp.Navigate(e.srv.URL+"/cmdb/cis/"+strconv.FormatInt(web.ID, 10)),
		chromedp.WaitVisible(chromedp.ID("relation-form")),
		chromedp.SetValue(chromedp.ID("r-direction"), "in"),
		chromedp.SetValue(chromedp.ID("r-type"), "runs_on"),
		chromedp.SendKeys(chromedp.ID("r-target"), p+"ap"),
	)
	// The name field suggests matching CIs as one types.
	eventually(t, 30*time.Second, "a suggestion for the relation's target", func() bool {
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector("#r-target-list option") || {}).value || ""`))
		return err == nil && v == p+"api"
	})
	run("add relation",
		chromedp.SetValue(chromedp.ID("r-target"), p+"api"),
		chromedp.Click(chromedp.ID("add-relation")),
		chromedp.WaitVisible(chromedp.CSS("#relations tr[data-relation]")),
	)
	rels, err := e.store.Relations(ctx, schema.RelationFilter{CIID: web.ID})
	if err != nil || len(rels) != 1 || rels[0].SourceID != api.ID || rels[0].Type != "runs_on" {
		t.Fatalf("relations: %+v %v", rels, err)
	}
	wait("relations", p+"api")
	// History names the other CI, not its id.
	if h := wait("history", "relation.create"); !strings.Contains(h, p+"api") {
		t.Fatalf("history: %q", h)
	}
	run("delete relation",
		chromedp.Click(chromedp.ID("delete-relation-"+strconv.FormatInt(rels[0].ID, 10))),
		chromedp.WaitVisible(chromedp.ID("confirm-message")),
	)
	if rs, _ := e.store.Relations(ctx, schema.RelationFilter{CIID: web.ID}); len(rs) != 1 {
		t.Fatal("the confirmation page deleted the relation")
	}
	run("confirm relation delete", chromedp.Click(chromedp.ID("confirm-yes")), chromedp.WaitVisible(chromedp.ID("flash")))
	if rs, _ := e.store.Relations(ctx, schema.RelationFilter{CIID: web.ID}); len(rs) != 0 {
		t.Fatalf("relation kept: %+v", rs)
	}
	wait("relations", "No relations")

	// Delete the CI, with a relation to go with it.
	if _, err := e.store.CreateRelation(ctx, "runs_on", api.ID, web.ID, schema.Change{Actor: "setup"}); err != nil {
		t.Fatal(err)
	}
	run("delete CI",
		chromedp.Navigate(e.srv.URL+"/cmdb/cis/"+strconv.FormatInt(web.ID, 10)),
		chromedp.Click(chromedp.ID("delete-ci")),
		chromedp.WaitVisible(chromedp.ID("confirm-message")),
	)
	if q := text("confirm-message") + " " + text("confirm-detail"); !strings.Contains(q, p+"web") || !strings.Contains(q, "1 relation") {
		t.Fatalf("confirmation: %q", q)
	}
	if _, err := e.store.CI(ctx, web.ID); err != nil {
		t.Fatal("the confirmation page deleted the CI")
	}
	run("confirm CI delete", chromedp.Click(chromedp.ID("confirm-yes")), chromedp.WaitVisible(chromedp.ID("flash")))
	if _, err := e.store.CI(ctx, web.ID); !errors.Is(err, schema.ErrNotFound) {
		t.Fatalf("CI kept: %v", err)
	}
}

// TestCMDBTypesEditInBrowser: an admin creates a type, adds attributes to
// it (an error is shown beside its row, inputs kept) and adds a relation
// type.
func TestCMDBTypesEditInBrowser(t *testing.T) {
	e := newEnv(t)
	adm := e.createUser(schema.RoleAdmin, "admin-password-1")
	ctx, cancel := context.WithTimeout(testenv.Browser(t), 120*time.Second)
	defer cancel()
	n := time.Now().UnixNano() % 1e12
	typ, rel := fmt.Sprintf("rack_%d", n), fmt.Sprintf("backs_up_%d", n)
	run, text := browserSteps(t, ctx)
	wait := browserText(t, ctx)
	e.browserLogin(ctx, adm.Username, "admin-password-1")

	run("create type",
		chromedp.Navigate(e.srv.URL+"/cmdb/types"),
		chromedp.SetValue(chromedp.ID("t-name"), typ),
		chromedp.SetValue(chromedp.ID("t-description"), "A rack of machines"),
		chromedp.Click(chromedp.ID("create-type")),
		chromedp.WaitVisible(chromedp.ID("type-edit-form")),
	)
	run("attributes with an error",
		chromedp.SetValue(chromedp.ID("a-0-name"), "units"),
		chromedp.SetValue(chromedp.ID("a-0-type"), "int"),
		chromedp.Click(chromedp.ID("a-0-required")),
		chromedp.Click(chromedp.ID("add-attr")),
		chromedp.WaitVisible(chromedp.ID("a-1-name")),
		chromedp.SetValue(chromedp.ID("a-1-name"), "tier"),
		chromedp.SetValue(chromedp.ID("a-1-type"), "enum"),
		chromedp.Click(chromedp.ID("save-type")),
		chromedp.WaitVisible(chromedp.ID("a-1-values-error")),
	)
	if msg := text("a-1-values-error"); !strings.Contains(msg, "enum needs at least one value") {
		t.Fatalf("values error: %q", msg)
	}
	if got := browserValue(t, ctx, "a-0-name"); got != "units" {
		t.Fatalf("row 0 lost: %q", got)
	}
	if got := browserValue(t, ctx, "a-1-type"); got != "enum" {
		t.Fatalf("row 1 lost: %q", got)
	}
	if ty, _ := e.store.Type(ctx, typ); len(ty.Attributes) != 0 {
		t.Fatalf("a refused type change wrote: %+v", ty.Attributes)
	}
	run("save attributes",
		chromedp.SetValue(chromedp.ID("a-1-values"), "gold, silver"),
		chromedp.Click(chromedp.ID("save-type")),
		chromedp.WaitVisible(chromedp.ID("flash")),
	)
	ty, err := e.store.Type(ctx, typ)
	if err != nil || len(ty.Attributes) != 2 || !ty.Attributes[0].Required || ty.Attributes[0].Type != "int" ||
		strings.Join(ty.Attributes[1].Values, ",") != "gold,silver" {
		t.Fatalf("type: %+v %v", ty, err)
	}
	wait(chromedp.ID("type-"+typ), "one of gold, silver")

	run("relation type",
		chromedp.SetValue(chromedp.ID("rt-name"), rel),
		chromedp.SetValue(chromedp.ID("rt-cardinality"), schema.OneToMany),
		chromedp.Click(chromedp.ID("rt-impact")), // untick
		chromedp.Click(chromedp.ID("create-relation-type")),
		chromedp.WaitVisible(chromedp.ID("flash")),
	)
	wait("relation-type-list", rel)
	rts, _ := e.store.RelationTypes(ctx)
	found := false
	for _, r := range rts {
		if r.Name == rel {
			found = r.Cardinality == schema.OneToMany && !r.Impact && r.Acyclic
		}
	}
	if !found {
		t.Fatalf("relation type %s not created as asked: %+v", rel, rts)
	}
}

// postFormAs posts a form with a session cookie, as a browser would.
func (e *env) postFormAs(ck *http.Cookie, path string, v url.Values) int {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+path, strings.NewReader(v.Encode()))
	req.AddCookie(ck)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := httpClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

// TestCMDBViewerCannotEdit: a viewer sees no edit controls on the CI and
// types pages, and the forms' routes refuse a viewer's posts.
func TestCMDBViewerCannotEdit(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(testenv.Browser(t), 90*time.Second)
	defer cancel()
	p := uniq(t, "")
	web := e.mkCI("host", p+"web", nil, map[string]string{"env": "prod"})
	api := e.mkCI("service", p+"api", nil, nil)
	r, err := e.store.CreateRelation(ctx, "runs_on", api.ID, web.ID, schema.Change{Actor: "setup"})
	if err != nil {
		t.Fatal(err)
	}
	run, _ := browserSteps(t, ctx)
	e.browserLogin(ctx, e.users["viewer"].Username, "correct-horse-battery")
	run("CI page", chromedp.Navigate(e.srv.URL+"/cmdb/cis/"+strconv.FormatInt(web.ID, 10)), chromedp.WaitVisible(chromedp.ID("relations")))
	for _, css := range []string{"#edit-ci", "#delete-ci", "#relation-form", ".delete-relation"} {
		if present(t, ctx, css) != 0 {
			t.Errorf("viewer sees %s on the CI page", css)
		}
	}
	run("types page", chromedp.Navigate(e.srv.URL+"/cmdb/types"), chromedp.WaitVisible(chromedp.ID("relation-types")))
	for _, css := range []string{"#type-form", "#relation-type-form", "#new-ci-host", "#edit-type-host"} {
		if present(t, ctx, css) != 0 {
			t.Errorf("viewer sees %s on the types page", css)
		}
	}

	ck, csrf := e.sessionLogin(e.users["viewer"].Username)
	id, rid := strconv.FormatInt(web.ID, 10), strconv.FormatInt(r.ID, 10)
	for path, v := range map[string]url.Values{
		"/cmdb/cis":                          {"type": {"host"}, "name": {p + "x"}},
		"/cmdb/cis/" + id:                    {"name": {p + "renamed"}, "version": {"1"}},
		"/cmdb/cis/" + id + "/delete":        {"cascade": {"true"}},
		"/cmdb/cis/" + id + "/relations":     {"type": {"runs_on"}, "target": {p + "api"}},
		"/cmdb/relations/" + rid + "/delete": {},
		"/cmdb/types":                        {"name": {"viewer_type"}},
		"/cmdb/types/host":                   {"rows": {"1"}, "a.0.name": {"extra"}, "a.0.type": {"string"}},
		"/cmdb/relation-types":               {"name": {"viewer_rel"}, "cardinality": {"many_to_many"}},
	} {
		v.Set("csrf_token", csrf)
		if got := e.postFormAs(ck, path, v); got != http.StatusForbidden {
			t.Errorf("viewer POST %s: %d, want 403", path, got)
		}
	}
	if cur, _ := e.store.CI(ctx, web.ID); cur == nil || cur.Name != p+"web" {
		t.Fatalf("viewer changed the CI: %+v", cur)
	}
	if rs, _ := e.store.Relations(ctx, schema.RelationFilter{CIID: web.ID}); len(rs) != 1 {
		t.Fatalf("viewer changed relations: %+v", rs)
	}
}

// TestCMDBHostFactsAsTables: a discovered host's ports and disks are
// tables, its IP addresses a list, and its history links the run that
// recorded them.
func TestCMDBHostFactsAsTables(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(testenv.Browser(t), 90*time.Second)
	defer cancel()
	p := uniq(t, "")
	in := schema.CIInput{Type: "host", Name: p + "db", Attributes: map[string]json.RawMessage{
		"listening_ports": json.RawMessage(`[{"proto":"tcp","addr":"0.0.0.0","port":22},{"proto":"tcp","addr":"127.0.0.1","port":5432}]`),
		"disks":           json.RawMessage(`[{"mount":"/","device":"/dev/sda1","size_mb":40960}]`),
		"ip_addresses":    json.RawMessage(`["10.0.0.5","fe80::1"]`),
		"cpu_count":       json.RawMessage(`4`),
	}}
	host, err := e.store.CreateCI(ctx, in, schema.Change{Actor: "discovery", RunID: "discovery:" + p})
	if err != nil {
		t.Fatal(err)
	}
	run, text := browserSteps(t, ctx)
	e.browserLogin(ctx, e.users["viewer"].Username, "correct-horse-battery")
	run("CI page", chromedp.Navigate(e.srv.URL+"/cmdb/cis/"+strconv.FormatInt(host.ID, 10)), chromedp.WaitVisible(chromedp.ID("attr-table-listening_ports")))
	ports := text("attr-table-listening_ports")
	if !strings.Contains(ports, "port") || !strings.Contains(ports, "proto") || !strings.Contains(ports, "5432") || strings.Contains(ports, "{") {
		t.Fatalf("ports table: %q", ports)
	}
	if n := present(t, ctx, "#attr-table-listening_ports tbody tr"); n != 2 {
		t.Fatalf("ports rows: %d", n)
	}
	if d := text("attr-table-disks"); !strings.Contains(d, "/dev/sda1") || !strings.Contains(d, "40960") {
		t.Fatalf("disks table: %q", d)
	}
	if ips := text("attr-ip_addresses"); !strings.Contains(ips, "10.0.0.5") || strings.Contains(ips, "[") {
		t.Fatalf("ip list: %q", ips)
	}
	href, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS("#history a.run"), "href"))
	if err != nil || !href.Exists || href.Value != "/runs/"+url.PathEscape("discovery:"+p) {
		t.Fatalf("history run link: %+v %v", href, err)
	}
}

// heldListener accepts connections and holds them until released; then
// it joins them to upstream, or closes them when there is none.
type heldListener struct {
	ln       net.Listener
	release  chan struct{}
	once     sync.Once
	upstream string
}

func holdConnections(t *testing.T, upstream string) *heldListener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &heldListener{ln: ln, release: make(chan struct{}), upstream: upstream}
	t.Cleanup(func() { h.open(); ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				<-h.release
				if h.upstream == "" {
					return
				}
				u, err := net.Dial("tcp", h.upstream)
				if err != nil {
					return
				}
				defer u.Close()
				go func() { _, _ = io.Copy(u, c) }()
				_, _ = io.Copy(c, u)
			}()
		}
	}()
	return h
}

func (h *heldListener) open()        { h.once.Do(func() { close(h.release) }) }
func (h *heldListener) addr() string { return h.ln.Addr().String() }

// TestDiscoveryRunPageFollowsProgress starts a discovery of two hosts
// from the UI: a real sshd behind a gate, and an address that never
// answers SSH. The run page counts the discovered host, then the failed
// one, without a reload.
func TestDiscoveryRunPageFollowsProgress(t *testing.T) {
	e := newEnv(t)
	target := testenv.SSHD(t, 1)
	good := holdConnections(t, target.Targets[0].Addr)
	bad := holdConnections(t, "")
	op := e.createUser(schema.RoleOperator, "operator-password-1")
	ctx, cancel := context.WithTimeout(testenv.Browser(t), 150*time.Second)
	defer cancel()
	p := uniq(t, "")
	res := e.do(http.MethodPost, "/api/v1/credentials", "admin", map[string]any{"name": p + "key", "kind": "ssh_key", "username": target.User, "private_key": string(target.PrivateKeyPEM), "allow_unlisted_hosts": true})
	if res.Status != 201 {
		t.Fatalf("credential: %d %s", res.Status, res.Body)
	}
	run, text := browserSteps(t, ctx)
	wait := browserText(t, ctx)
	e.browserLogin(ctx, op.Username, "operator-password-1")
	run("discover",
		chromedp.Navigate(e.srv.URL+"/cmdb/discover"),
		chromedp.SetValue(chromedp.ID("d-addresses"), good.addr()+"\n"+bad.addr()),
		chromedp.SetValue(chromedp.ID("d-cred"), credentialValue(t, e, p+"key")),
		chromedp.Click(chromedp.ID("discover")),
		chromedp.WaitVisible(chromedp.ID("discovery-progress")),
	)
	if got := text("d-done"); got != "0" {
		t.Fatalf("hosts done before any answered: %q", got)
	}
	// The page must update itself: a reload would lose this mark.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.samePage = true`)); err != nil {
		t.Fatal(err)
	}
	good.open()
	wait("d-discovered", "1")
	if got := text("d-failed"); got != "0" {
		t.Fatalf("failed while the bad host is held: %q", got)
	}
	wait("d-total", "2")
	wait("run-status", "running")
	bad.open()
	summary := wait("discovery-progress", "1 failed")
	if !strings.Contains(summary, "1 created") {
		t.Fatalf("summary: %q", summary)
	}
	wait("run-status", schema.RunCompleted)
	if same, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.samePage === true`)); err != nil || !same {
		t.Fatalf("the run page reloaded instead of updating: %v", err)
	}
}
