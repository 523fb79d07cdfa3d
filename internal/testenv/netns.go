package testenv

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// SSHDInNamespace starts one real sshd in its own Linux network namespace
// with its own hostname, reachable from the test process over a veth pair.
//
// The target's Addr is the namespace side of the veth pair on port 22 (an
// address in 10.213.0.0/16, never loopback), and a login shell there reports
// hostname. The same sshd also listens on NamespaceLoopback inside the
// namespace, which only a connection forwarded by that sshd (a jump host's
// direct-tcpip channel) reaches. The server accepts the current user (root) with a fresh client
// key, like SSHD. Call it once per host a test needs. The server, the veth
// pair and the namespace are removed when the test ends, pass or fail.
//
// It needs root and kernel support for network namespaces; without them the
// test fails through Unavailable.
func SSHDInNamespace(tb testing.TB, hostname string) *SSHTargets {
	tb.Helper()
	needsReal(tb, "a network namespace")
	if !validHostname(hostname) {
		tb.Fatalf("testenv: SSHDInNamespace(%q): not a valid hostname", hostname)
	}
	if os.Geteuid() != 0 {
		Unavailable(tb, "SSHDInNamespace needs root to create network namespaces and veth pairs (running as uid %d)", os.Geteuid())
	}
	cmds := netnsCommands{
		ip:       EnsureCommand(tb, "ip", "iproute2"),
		unshare:  EnsureCommand(tb, "unshare", "util-linux"),
		hostname: EnsureCommand(tb, "hostname", "hostname"),
		sshd:     EnsureCommand(tb, "sshd", "openssh-server"),
	}
	targets, err := startSSHDInNamespace(tb, cmds, hostname)
	if err != nil {
		Unavailable(tb, "sshd in a network namespace: %v", err)
	}
	return targets
}

// NamespaceLoopback is where a namespaced sshd also listens, as seen from
// inside its namespace.
const NamespaceLoopback = "127.0.0.1:22"

type netnsCommands struct {
	ip, unshare, hostname, sshd string
}

// Namespaced hosts get /30 subnets of netnsPrefix. The namespace's name is
// derived from its subnet, and `ip netns add` creates it exclusively, so the
// namespace doubles as the lock that keeps test packages running at the same
// time off each other's subnets.
var netnsPrefix = netip.MustParsePrefix("10.213.0.0/16")

const netnsSlots = 1 << (32 - 16 - 2) // /30 subnets in netnsPrefix

// netnsSlot is the index of one /30 subnet in netnsPrefix; the names of the
// namespace and the veth pair that use it derive from it.
type netnsSlot uint32

func (s netnsSlot) base() uint32 {
	b := netnsPrefix.Addr().As4()
	return binary.BigEndian.Uint32(b[:]) + 4*uint32(s)
}

func addrFromUint32(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

func (s netnsSlot) hostIP() netip.Addr { return addrFromUint32(s.base() + 1) }
func (s netnsSlot) nsIP() netip.Addr   { return addrFromUint32(s.base() + 2) }

// namespace, hostVeth and nsVeth stay within the 15 bytes Linux allows for
// interface names.
func (s netnsSlot) namespace() string { return "opsflow-" + s.nsIP().String() }
func (s netnsSlot) hostVeth() string  { return "ofns" + strconv.Itoa(int(s)) + "h" }
func (s netnsSlot) nsVeth() string    { return "ofns" + strconv.Itoa(int(s)) + "n" }

// netnsSlotOf returns the slot whose namespace side has address ip.
func netnsSlotOf(ip netip.Addr) (netnsSlot, bool) {
	if !ip.Is4() || !netnsPrefix.Contains(ip) {
		return 0, false
	}
	b := ip.As4()
	off := binary.BigEndian.Uint32(b[:]) - netnsSlot(0).base()
	if off%4 != 2 {
		return 0, false
	}
	return netnsSlot(off / 4), true
}

func randomNetnsSlot() netnsSlot {
	var b [4]byte
	rand.Read(b[:])
	return netnsSlot(binary.BigEndian.Uint32(b[:]) % netnsSlots)
}

// nsHost is a namespace with its veth pair and sshd. close undoes the setup
// steps that succeeded, newest first.
type nsHost struct {
	slot netnsSlot
	undo []func() error
}

func (h *nsHost) close() error {
	var errs []error
	for i := len(h.undo) - 1; i >= 0; i-- {
		if err := h.undo[i](); err != nil {
			errs = append(errs, err)
		}
	}
	h.undo = nil
	return errors.Join(errs...)
}

func startSSHDInNamespace(tb testing.TB, cmds netnsCommands, hostname string) (*SSHTargets, error) {
	me, err := user.Current()
	if err != nil {
		return nil, fmt.Errorf("current user: %w", err)
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return nil, fmt.Errorf("create /run/sshd: %w", err)
	}
	dir := tb.TempDir()
	hostKey, _, err := writeEd25519Key(filepath.Join(dir, "host_ed25519"))
	if err != nil {
		return nil, fmt.Errorf("host key: %w", err)
	}
	clientSigner, clientPEM, err := writeEd25519Key(filepath.Join(dir, "client_ed25519"))
	if err != nil {
		return nil, fmt.Errorf("client key: %w", err)
	}
	authorized := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authorized, ssh.MarshalAuthorizedKey(clientSigner.PublicKey()), 0o600); err != nil {
		return nil, fmt.Errorf("write authorized_keys: %w", err)
	}
	config := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(config, []byte(sshdConfig(dir)), 0o600); err != nil {
		return nil, fmt.Errorf("write sshd_config: %w", err)
	}

	h := &nsHost{}
	// Registered before anything exists, so that even a panic halfway through
	// setup leaves nothing behind; close is idempotent.
	tb.Cleanup(func() {
		if err := h.close(); err != nil {
			tb.Errorf("testenv: remove network namespace: %v", err)
		}
	})
	if err := createNetns(h, cmds.ip); err != nil {
		return nil, errors.Join(err, h.close())
	}
	addr := net.JoinHostPort(h.slot.nsIP().String(), "22")
	proc, err := runNamespacedSSHD(cmds, h.slot.namespace(), hostname, config, filepath.Join(dir, "sshd.log"), addr, hostKey.PublicKey())
	if err != nil {
		return nil, errors.Join(err, h.close())
	}
	h.undo = append(h.undo, func() error { proc.stop(); return nil })

	return &SSHTargets{
		Targets:       []SSHTarget{{Addr: addr, HostKey: hostKey.PublicKey()}},
		User:          me.Username,
		Signer:        clientSigner,
		PrivateKeyPEM: clientPEM,
	}, nil
}

// errNetnsTaken reports that a step failed because another namespace or veth
// already uses the chosen slot.
var errNetnsTaken = errors.New("slot in use")

// createNetns creates a namespace with lo up and a veth pair to it on a free
// slot, trying other slots while the chosen one is taken.
func createNetns(h *nsHost, ipCmd string) error {
	var lastErr error
	for range 32 {
		slot := randomNetnsSlot()
		err := setupNetnsSlot(h, ipCmd, slot)
		if err == nil {
			return nil
		}
		if cerr := h.close(); cerr != nil {
			return errors.Join(err, cerr)
		}
		if !errors.Is(err, errNetnsTaken) {
			return err
		}
		lastErr = err
	}
	return fmt.Errorf("no free subnet in %s: %w", netnsPrefix, lastErr)
}

func setupNetnsSlot(h *nsHost, ipCmd string, slot netnsSlot) error {
	ns, hostVeth, nsVeth := slot.namespace(), slot.hostVeth(), slot.nsVeth()
	if err := runIP(ipCmd, "netns", "add", ns); err != nil {
		if errors.Is(err, errNetnsTaken) {
			return err
		}
		return fmt.Errorf("network namespaces unsupported here: %w", err)
	}
	h.slot = slot
	h.undo = append(h.undo, func() error {
		// Deleting the name leaves a namespace alive while processes use it;
		// everything in it is ours, so end them first.
		killNetnsPids(ipCmd, ns)
		return runIP(ipCmd, "netns", "del", ns)
	})

	// Creating the peer directly inside the namespace leaves no moment when
	// it sits in the host's.
	if err := runIP(ipCmd, "link", "add", hostVeth, "type", "veth", "peer", "name", nsVeth, "netns", ns); err != nil {
		return err
	}
	// Deleting one end removes the pair; deleting it explicitly, before the
	// namespace, frees the host-side name and address even if something keeps
	// the namespace alive.
	h.undo = append(h.undo, func() error {
		err := runIP(ipCmd, "link", "del", hostVeth)
		if err != nil && strings.Contains(err.Error(), "Cannot find device") {
			return nil
		}
		return err
	})

	const bits = "/30"
	steps := [][]string{
		{"addr", "add", slot.hostIP().String() + bits, "dev", hostVeth},
		{"link", "set", hostVeth, "up"},
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "addr", "add", slot.nsIP().String() + bits, "dev", nsVeth},
		{"-n", ns, "link", "set", nsVeth, "up"},
	}
	for _, args := range steps {
		if err := runIP(ipCmd, args...); err != nil {
			return err
		}
	}
	return nil
}

// runIP runs ip with args; its error carries ip's output and wraps
// errNetnsTaken when the object to create already exists.
func runIP(ipCmd string, args ...string) error {
	out, err := exec.Command(ipCmd, args...).CombinedOutput()
	if err == nil {
		return nil
	}
	msg := strings.TrimSpace(string(out))
	if strings.Contains(msg, "File exists") {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), errNetnsTaken, msg)
	}
	return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, msg)
}

// killNetnsPids kills every process in namespace ns, such as sessions that an
// unclosed client kept open after sshd itself stopped.
func killNetnsPids(ipCmd, ns string) {
	out, err := exec.Command(ipCmd, "netns", "pids", ns).Output()
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// runNamespacedSSHD starts sshd on addr inside namespace ns, in a UTS
// namespace of its own named hostname, and waits until it serves hostKey.
func runNamespacedSSHD(cmds netnsCommands, ns, hostname, config, logPath, addr string, hostKey ssh.PublicKey) (*sshdProc, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("sshd log: %w", err)
	}
	defer logFile.Close()
	// ip netns exec and unshare exec their command without forking and the
	// shell execs sshd, so the process started here is sshd itself: killing
	// it stops the server, and Pdeathsig survives the execs.
	const script = `"$1" "$2" && exec "$3" -D -e -f "$4" -o "ListenAddress=$5" -o "ListenAddress=$6"`
	cmd := exec.Command(cmds.ip, "netns", "exec", ns, cmds.unshare, "--uts", "/bin/sh", "-c", script,
		"sh", cmds.hostname, hostname, cmds.sshd, config, addr, NamespaceLoopback)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start sshd in namespace %s: %w", ns, err)
	}
	p := &sshdProc{addr: addr, cmd: cmd, exited: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.exited)
	}()
	if err := waitSSHD(addr, hostKey, p.exited, 30*time.Second); err != nil {
		p.stop()
		log, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("sshd on %s in namespace %s: %w\n%s", addr, ns, err, log)
	}
	return p, nil
}

// validHostname accepts what sethostname and the shell script take safely:
// dot-separated labels of letters, digits and inner hyphens.
func validHostname(h string) bool {
	if h == "" || len(h) > 64 {
		return false
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
