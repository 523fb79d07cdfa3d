package testenv

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestSSHDInNamespace(t *testing.T) {
	var slot netnsSlot
	started := false
	t.Run("hostname", func(t *testing.T) {
		targets := SSHDInNamespace(t, "edge-7")
		if len(targets.Targets) != 1 {
			t.Fatalf("got %d targets, want 1", len(targets.Targets))
		}
		addr := targets.Targets[0].Addr
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatal(err)
		}
		ip, err := netip.ParseAddr(host)
		if err != nil {
			t.Fatal(err)
		}
		if ip.IsLoopback() {
			t.Errorf("target address %s is loopback, want the namespace's own address", addr)
		}
		var ok bool
		slot, ok = netnsSlotOf(ip)
		if !ok {
			t.Fatalf("target address %s is not the namespace side of a slot in %s", addr, netnsPrefix)
		}
		started = true
		if !slices.Contains(netnsNames(t), slot.namespace()) {
			t.Errorf("namespace %s not listed by ip netns list", slot.namespace())
		}

		client, err := ssh.Dial("tcp", addr, targets.ClientConfig())
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		defer client.Close()
		run := func(command string) string {
			t.Helper()
			session, err := client.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			defer session.Close()
			out, err := session.CombinedOutput(command)
			if err != nil {
				t.Fatalf("%s: %v\n%s", command, err, out)
			}
			return strings.TrimSpace(string(out))
		}
		if got := run("hostname"); got != "edge-7" {
			t.Errorf("remote hostname = %q, want edge-7", got)
		}
		if local, err := os.Hostname(); err == nil && local == "edge-7" {
			t.Errorf("the test process's hostname changed to %q", local)
		}
		// The server sees its own network: the namespace side of the veth
		// pair, not the host's interfaces.
		if got := run("ip -o -4 addr show dev " + slot.nsVeth()); !strings.Contains(got, slot.nsIP().String()+"/30") {
			t.Errorf("remote address of %s = %q, want %s/30", slot.nsVeth(), got, slot.nsIP())
		}
	})
	if !started {
		return
	}
	// The subtest's cleanups have run.
	if slices.Contains(netnsNames(t), slot.namespace()) {
		t.Errorf("namespace %s still exists after cleanup", slot.namespace())
	}
	if out, err := exec.Command("ip", "link", "show", slot.hostVeth()).CombinedOutput(); err == nil {
		t.Errorf("veth %s still exists after cleanup:\n%s", slot.hostVeth(), out)
	}
}

func TestNetnsSlot(t *testing.T) {
	for _, s := range []netnsSlot{0, 1, 4097, netnsSlots - 1} {
		if !netnsPrefix.Contains(s.hostIP()) || !netnsPrefix.Contains(s.nsIP()) {
			t.Errorf("slot %d: addresses %s, %s outside %s", s, s.hostIP(), s.nsIP(), netnsPrefix)
		}
		if got, ok := netnsSlotOf(s.nsIP()); !ok || got != s {
			t.Errorf("netnsSlotOf(%s) = %d, %v, want %d", s.nsIP(), got, ok, s)
		}
		if _, ok := netnsSlotOf(s.hostIP()); ok {
			t.Errorf("netnsSlotOf(%s) accepted a host-side address", s.hostIP())
		}
		for _, name := range []string{s.hostVeth(), s.nsVeth()} {
			if len(name) > 15 {
				t.Errorf("interface name %q longer than 15 bytes", name)
			}
		}
	}
	if _, ok := netnsSlotOf(netip.MustParseAddr("127.0.0.1")); ok {
		t.Error("netnsSlotOf accepted 127.0.0.1")
	}
	for h, want := range map[string]bool{"edge-7": true, "a.b-c.d": true, "": false, "-x": false, "x-": false, "a b": false, "a;b": false, "a..b": false} {
		if got := validHostname(h); got != want {
			t.Errorf("validHostname(%q) = %v, want %v", h, got, want)
		}
	}
}

// netnsNames lists the network namespaces ip knows by name.
func netnsNames(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatalf("ip netns list: %v", err)
	}
	var names []string
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}
