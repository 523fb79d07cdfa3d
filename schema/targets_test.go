package schema_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/opsflow/opsflow/schema"
)

func TestCanonicalTarget(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.20.2:23001":               "127.0.20.2:23001",
		"127.0.20.2:023001":              "127.0.20.2:23001",
		"127.0.20.2:0000023001":          "127.0.20.2:23001",
		"[::ffff:127.0.20.2]:23001":      "127.0.20.2:23001",
		"[::FFFF:7f00:1402]:23001":       "127.0.20.2:23001",
		"::ffff:127.0.20.2":              "127.0.20.2:22",
		"[127.0.20.2]:23001":             "127.0.20.2:23001",
		"127.0.20.2":                     "127.0.20.2:22",
		"[2001:DB8:0:0::1]:2222":         "[2001:db8::1]:2222",
		"2001:db8::1":                    "[2001:db8::1]:22",
		"[2001:db8::1]":                  "[2001:db8::1]:22",
		"Web-01.Example.COM.":            "web-01.example.com:22",
		"web-01.example.com.:0022":       "web-01.example.com:22",
		"db1:65535":                      "db1:65535",
		"localhost":                      "localhost:22",
		"a.b-c.d1":                       "a.b-c.d1:22",
		"[0:0:0:0:0:ffff:127.0.0.1]:022": "127.0.0.1:22",
	} {
		got, err := schema.CanonicalAddress(in)
		if err != nil || got != want {
			t.Errorf("CanonicalAddress(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{
		"", "0127.0.0.1", "127.0.0.01:22", "127.1", "0x7f.0.0.1", "0x7f000001", "2130706433", "017700000001",
		"127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:", "127.0.0.1:-1", "127.0.0.1:+22", "127.0.0.1:0x16", "127.0.0.1:22 ",
		"[fe80::1%eth0]:22", "fe80::1%25eth0", "[::1", "[::1]x", "[web]:22", "0.0.0.0", "[::]:22", "224.0.0.1",
		"user@host", "host/path", "ho st", "-host", "host-", "a..b", "订单-api-01", "1.2.3.4.5", "host\x00:22",
		"host:22:33x", strings.Repeat("a", 301),
	} {
		if got, err := schema.CanonicalAddress(in); err == nil {
			t.Errorf("CanonicalAddress(%q) = %q, want an error", in, got)
		}
	}
}

// planFixture is a host CI labelled env=prod-<sfx> at 127.0.20.2:23001, a
// policy gating that label, a script and a credential.
type planFixture struct {
	sfx    string
	ci     *schema.CI
	policy string
	script int64
	cred   *schema.Credential
}

func newPlanFixture(t *testing.T, s *schema.Store, engine schema.Engine) planFixture {
	t.Helper()
	ctx := context.Background()
	f := planFixture{sfx: fmt.Sprintf("%s%d", engine, time.Now().UnixNano())}
	// Each test has its own address, so that tests sharing the package's
	// database do not see each other's hosts.
	n := time.Now().UnixNano()
	addr := fmt.Sprintf("127.%d.%d.%d:023001", 100+n%100, (n/100)%250+1, (n/100000)%250+1)
	f.ci = mustCI(t, s, "host", "gate-"+f.sfx, map[string]any{"address": addr}, map[string]string{"env": "prod-" + f.sfx})
	f.policy = "gate-" + f.sfx
	if err := s.SaveApprovalPolicy(ctx, &schema.ApprovalPolicy{Name: f.policy, Spec: schema.ApprovalPolicySpec{
		Match:  &schema.ApprovalMatch{Targets: "env=prod-" + f.sfx},
		Levels: []schema.ApprovalLevel{{ApproverSet: schema.ApproverSet{Users: []string{"alice"}}, Rule: "any"}}}}); err != nil {
		t.Fatal(err)
	}
	sc, _, err := s.CreateScript(ctx, schema.ScriptInput{Name: "gate-" + f.sfx, Content: "true"}, "alice")
	if err != nil {
		t.Fatal(err)
	}
	f.script = sc.ID
	f.cred = &schema.Credential{Name: "gate-" + f.sfx, Kind: schema.CredPassword, Auth: schema.CredPassword, Username: "ops", Secret: "sealed"}
	if err := s.CreateCredential(ctx, f.cred); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f planFixture) plan(s *schema.Store, hosts ...string) (*schema.JobRequest, []schema.JobHost, error) {
	req := &schema.JobRequest{ScriptID: f.script, CredentialID: f.cred.ID, Targets: schema.JobTargets{Hosts: hosts}}
	_, _, hs, err := s.PlanJob(context.Background(), req)
	return req, hs, err
}

// TestGateSeesEverySpelling: a gate on a label holds a job on its host
// however the host's address is spelt, and the job dials the one
// canonical address. The CI itself was written with a non-canonical
// spelling, which the store made canonical.
func TestGateSeesEverySpelling(t *testing.T) {
	for engine, s := range stores(t) {
		t.Run(string(engine), func(t *testing.T) {
			f := newPlanFixture(t, s, engine)
			canon := f.ci.Attributes["address"].(string)
			if !strings.HasSuffix(canon, ":23001") {
				t.Fatalf("address stored as %q, not canonical", canon)
			}
			ip := strings.TrimSuffix(canon, ":23001")
			parts := strings.Split(ip, ".")
			for _, spelling := range []string{
				canon,
				ip + ":023001",
				"[::ffff:" + ip + "]:23001",
				"[::FFFF:" + ip + "]:00023001",
				fmt.Sprintf("[::ffff:%02x%02x:%02x%02x]:23001", atoi(parts[0]), atoi(parts[1]), atoi(parts[2]), atoi(parts[3])),
				"[" + ip + "]:23001",
			} {
				req, hs, err := f.plan(s, spelling)
				if err != nil {
					t.Fatalf("%s: %v", spelling, err)
				}
				if req.Policy.Approval != f.policy {
					t.Errorf("%s: gated by %q, want %q", spelling, req.Policy.Approval, f.policy)
				}
				if len(hs) != 1 || hs[0].Address != canon || hs[0].CIID == nil || *hs[0].CIID != f.ci.ID {
					t.Errorf("%s: hosts %+v, want CI %d at %s", spelling, hs, f.ci.ID, canon)
				}
			}
			// Spellings of one host are one host.
			if _, hs, err := f.plan(s, canon, ip+":023001", "[::ffff:"+ip+"]:23001"); err != nil || len(hs) != 1 {
				t.Fatalf("three spellings: %+v %v", hs, err)
			}
			// A spelling a resolver would read otherwise is refused.
			if _, _, err := f.plan(s, "0"+ip+":23001"); fieldsOf(t, err)["targets.hosts[0]"] == "" {
				t.Fatalf("leading-zero octet: %v", err)
			}
		})
	}
}

func atoi(s string) int {
	var n int
	fmt.Sscanf(s, "%d", &n)
	return n
}

// TestUnlistedTargetRefused: an address that is no host in the CMDB is
// refused, naming the target, unless the credential allows unlisted
// hosts.
func TestUnlistedTargetRefused(t *testing.T) {
	ctx := context.Background()
	for engine, s := range stores(t) {
		t.Run(string(engine), func(t *testing.T) {
			f := newPlanFixture(t, s, engine)
			_, _, err := f.plan(s, f.ci.Attributes["address"].(string), "198.51.100.7:2222")
			if reason := fieldsOf(t, err)["targets.hosts[1]"]; !strings.Contains(reason, "not a host in the CMDB") {
				t.Fatalf("unlisted host: %v", err)
			}
			if _, err := s.SetCredentialScope(ctx, f.cred.ID, "", true); err != nil {
				t.Fatal(err)
			}
			f.cred.AllowUnlistedHosts = true
			_, hs, err := f.plan(s, "198.51.100.7:02222")
			if err != nil || len(hs) != 1 || hs[0].Address != "198.51.100.7:2222" || hs[0].CIID != nil {
				t.Fatalf("allowed unlisted host: %+v %v", hs, err)
			}
		})
	}
}

// TestCredentialScope: a credential scoped to a label is refused on a
// host CI outside it (field credential_id, naming the host), by address
// or by selector.
func TestCredentialScope(t *testing.T) {
	ctx := context.Background()
	for engine, s := range stores(t) {
		t.Run(string(engine), func(t *testing.T) {
			f := newPlanFixture(t, s, engine)
			other := mustCI(t, s, "host", "other-"+f.sfx, map[string]any{"address": "other-" + f.sfx + ".example"}, map[string]string{"team": f.sfx})
			if _, err := s.SetCredentialScope(ctx, f.cred.ID, "env=prod-"+f.sfx, false); err != nil {
				t.Fatal(err)
			}
			if _, _, err := f.plan(s, "[::ffff:"+strings.TrimSuffix(f.ci.Attributes["address"].(string), ":23001")+"]:23001"); err != nil {
				t.Fatalf("host in scope: %v", err)
			}
			_, _, err := f.plan(s, "OTHER-"+f.sfx+".example.")
			if reason := fieldsOf(t, err)["credential_id"]; !strings.Contains(reason, other.Attributes["address"].(string)) {
				t.Fatalf("host outside the scope: %v", err)
			}
			req := &schema.JobRequest{ScriptID: f.script, CredentialID: f.cred.ID, Targets: schema.JobTargets{Selector: "team=" + f.sfx}}
			if _, _, _, err := s.PlanJob(ctx, req); fieldsOf(t, err)["credential_id"] == "" {
				t.Fatalf("selector outside the scope: %v", err)
			}
		})
	}
}

// TestHostKeyStore: the first key recorded for an address stays; a CI's
// ssh_host_key is what its address is checked against; keys are per jump
// host; forgetting one lets the next contact record anew.
func TestHostKeyStore(t *testing.T) {
	ctx := context.Background()
	for engine, s := range stores(t) {
		t.Run(string(engine), func(t *testing.T) {
			sfx := fmt.Sprintf("%s%d", engine, time.Now().UnixNano())
			addr := "unlisted-" + sfx + ".example:22"
			if k, err := s.RecordHostKey(ctx, addr, 0, "ssh-ed25519 AAAA1"); err != nil || k != "ssh-ed25519 AAAA1" {
				t.Fatalf("record: %q %v", k, err)
			}
			if k, err := s.RecordHostKey(ctx, addr, 0, "ssh-ed25519 AAAA2"); err != nil || k != "ssh-ed25519 AAAA1" {
				t.Fatalf("second record: %q %v, want the first kept", k, err)
			}
			if k, err := s.RecordHostKey(ctx, addr, 7, "ssh-ed25519 AAAA3"); err != nil || k != "ssh-ed25519 AAAA3" {
				t.Fatalf("through a jump host: %q %v", k, err)
			}
			ci := mustCI(t, s, "host", "pinned-"+sfx, map[string]any{"address": "pinned-" + sfx + ".example", "ssh_host_key": "ssh-ed25519 CI"}, nil)
			got, err := s.RecordedHostKeys(ctx, []schema.HostTarget{{Address: addr}, {Address: "pinned-" + sfx + ".example:22"}, {Address: "none-" + sfx + ":22"}}, 0)
			if err != nil || len(got) != 2 || got[addr] != "ssh-ed25519 AAAA1" || got["pinned-"+sfx+".example:22"] != "ssh-ed25519 CI" {
				t.Fatalf("recorded keys: %v %v", got, err)
			}
			id := ci.ID
			if got, _ := s.RecordedHostKeys(ctx, []schema.HostTarget{{Address: "pinned-" + sfx + ".example:22", CIID: &id}}, 0); got["pinned-"+sfx+".example:22"] != "ssh-ed25519 CI" {
				t.Fatalf("by CI: %v", got)
			}
			if n, err := s.ForgetHostKeys(ctx, addr); err != nil || n != 2 {
				t.Fatalf("forget: %d %v", n, err)
			}
			if k, _ := s.RecordHostKey(ctx, addr, 0, "ssh-ed25519 AAAA2"); k != "ssh-ed25519 AAAA2" {
				t.Fatalf("after forgetting: %q", k)
			}
		})
	}
}
