package activities

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/opsflow/opsflow/internal/secret"
	"github.com/opsflow/opsflow/schema"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"golang.org/x/crypto/ssh"
)

// SSH runs commands on hosts over SSH. Its activities run on the ops-ssh
// task queue, on workers deployed close to the hosts.
type SSH struct {
	Store   *schema.Store
	Secrets *secret.Keyring
	// DialTimeout bounds connecting and the handshake; zero means 15 s.
	DialTimeout time.Duration
	// LocalTransport lets jobs with the local transport run on this
	// worker, as its own user (OPSFLOW_LOCAL_TRANSPORT=1); off, such a
	// job's hosts fail without running anything.
	LocalTransport bool

	mu     sync.Mutex
	plans  map[int64]*hostPlan // per job, see jobPlan
	routes map[int64]routeEntry
}

// DiscoverHostInput names a host to inspect and the credential to use.
type DiscoverHostInput struct {
	Address      string // host or host:port
	Port         int    // used when Address has no port; zero means 22
	CredentialID int64
}

// Disk is a mounted filesystem. Usage is left out on purpose: it changes
// all the time, and the CMDB records configuration, not metrics.
type Disk struct {
	Mount  string `json:"mount"`
	Device string `json:"device"`
	SizeMB int64  `json:"size_mb"`
}

// ListeningPort is a socket accepting connections.
type ListeningPort struct {
	Proto string `json:"proto"`
	Addr  string `json:"addr"`
	Port  int    `json:"port"`
}

// HostFacts is what discovery learned about a host, read-only.
type HostFacts struct {
	Address     string
	Hostname    string
	OS          string
	OSVersion   string
	Kernel      string
	CPUCount    int
	MemoryMB    int64
	Disks       []Disk
	IPAddresses []string
	Ports       []ListeningPort
	Services    []string
	// HostKey is the key the host presented, in authorized_keys form.
	HostKey string
}

// DiscoverHostResult carries the facts.
type DiscoverHostResult struct {
	Facts HostFacts
}

// Read-only: prints sections the parser below reads. Every command has a
// fallback for hosts without the newer tool.
const discoveryScript = `export LC_ALL=C
echo '##hostname'; hostname
echo '##os'; cat /etc/os-release 2>/dev/null
echo '##kernel'; uname -r
echo '##cpu'; nproc 2>/dev/null || getconf _NPROCESSORS_ONLN
echo '##mem'; grep MemTotal /proc/meminfo
echo '##disks'; df -P -k -x tmpfs -x devtmpfs -x overlay -x squashfs 2>/dev/null
echo '##ip'; ip -o addr show 2>/dev/null || hostname -I
echo '##ports'; ss -Hltn 2>/dev/null || netstat -ltn 2>/dev/null
echo '##services'; systemctl list-units --type=service --state=running --no-legend --plain 2>/dev/null | awk '{print $1}'
echo '##end'
`

// DiscoverHost connects to a host and reads its facts with read-only
// commands. The host's key is pinned like every host's (see pinHostKey):
// one that differs from the key recorded for its canonical address fails
// it with a non-retryable HostKeyChanged error.
func (a *SSH) DiscoverHost(ctx context.Context, in DiscoverHostInput) (DiscoverHostResult, error) {
	addr := schema.WithPort(in.Address, cmp.Or(in.Port, schema.DefaultSSHPort))
	canon, err := schema.CanonicalAddress(addr)
	if err != nil {
		return DiscoverHostResult{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("address %q: %v", addr, err), ErrTypeInvalidInput, nil)
	}
	rt, err := a.routeFor(ctx, in.CredentialID)
	if err != nil {
		return DiscoverHostResult{}, err
	}
	known, err := a.knownHostKey(ctx, schema.HostTarget{Address: canon}, rt.lastHop)
	if err != nil {
		return DiscoverHostResult{}, err
	}
	cfgCopy := *rt.cfg
	cfg := &cfgCopy
	var presented ssh.PublicKey
	cfg.HostKeyCallback = a.pinHostKey(ctx, canon, rt.lastHop, known, &presented)
	out, err := a.run(ctx, rt, canon, cfg, discoveryScript)
	if err != nil {
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) {
			return DiscoverHostResult{}, appErr
		}
		return DiscoverHostResult{}, fmt.Errorf("discover %s: %w", canon, err)
	}
	facts := parseFacts(out)
	facts.Address = canon
	if presented != nil {
		facts.HostKey = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(presented)))
	}
	activity.GetLogger(ctx).Info("host discovered", "address", canon, "hostname", facts.Hostname)
	return DiscoverHostResult{Facts: facts}, nil
}

// knownHostKey returns the key recorded for a host (see
// schema.Store.RecordedHostKeys), or nil.
func (a *SSH) knownHostKey(ctx context.Context, h schema.HostTarget, via int64) (ssh.PublicKey, error) {
	keys, err := a.Store.RecordedHostKeys(ctx, []schema.HostTarget{h}, via)
	if err != nil {
		return nil, err
	}
	return parseHostKey(h.Address, keys[h.Address])
}

// pinHostKey checks the key a host presents against known, the key
// recorded for its canonical address (reached through jump host via). With
// none recorded, the first key presented is recorded and trusted (as ssh's
// known_hosts does) — for every host, in the CMDB or not; a later
// different key is refused with a non-retryable HostKeyChanged error,
// before any login. presented, if set, receives the key.
func (a *SSH) pinHostKey(ctx context.Context, address string, via int64, known ssh.PublicKey, presented *ssh.PublicKey) ssh.HostKeyCallback {
	return func(_ string, _ net.Addr, key ssh.PublicKey) error {
		if presented != nil {
			*presented = key
		}
		if known == nil {
			line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
			recorded, err := a.Store.RecordHostKey(context.WithoutCancel(ctx), address, via, line)
			if err != nil {
				return err
			}
			if recorded == line {
				activity.GetLogger(ctx).Info("host key recorded on first contact", "address", address, "fingerprint", ssh.FingerprintSHA256(key))
				return nil
			}
			if known, err = parseHostKey(address, recorded); err != nil {
				return err
			}
		}
		if string(known.Marshal()) != string(key.Marshal()) {
			return temporal.NewNonRetryableApplicationError(fmt.Sprintf("host key changed: recorded %s, presented %s; not trusted",
				ssh.FingerprintSHA256(known), ssh.FingerprintSHA256(key)), ErrTypeHostKeyChanged, nil)
		}
		return nil
	}
}

// parseHostKey reads a recorded host key (authorized_keys form); "" is
// none recorded.
func parseHostKey(address, s string) (ssh.PublicKey, error) {
	if s == "" {
		return nil, nil
	}
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("recorded host key of %s: %w", address, err)
	}
	return key, nil
}

// run executes script in one session on a new connection and returns its
// stdout.
func (a *SSH) run(ctx context.Context, rt *route, addr string, cfg *ssh.ClientConfig, script string) (string, error) {
	client, err := rt.dial(ctx, addr, cfg)
	if err != nil {
		return "", err
	}
	defer client.Close()
	return sshRunner{client}.exec(ctx, script)
}

// routeFor returns the route of credential id, shared by the activities
// of this worker for routeTTL.
func (a *SSH) routeFor(ctx context.Context, id int64) (*route, error) {
	a.mu.Lock()
	e, ok := a.routes[id]
	a.mu.Unlock()
	if ok && time.Since(e.at) < routeTTL {
		return e.r, nil
	}
	r, err := a.route(ctx, id)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.routes == nil || len(a.routes) > 256 {
		// A dropped route's jump connection closes when idle.
		a.routes = map[int64]routeEntry{}
	}
	a.routes[id] = routeEntry{r: r, at: time.Now()}
	return r, nil
}

type routeEntry struct {
	r  *route
	at time.Time
}

// routeTTL bounds how long a worker uses a credential it read.
const routeTTL = 10 * time.Minute

// runner runs shell programs on one host: over an SSH connection, or on
// the worker itself for the local transport.
type runner interface {
	// exec runs script with sh and returns its stdout.
	exec(ctx context.Context, script string) (string, error)
}

// sshRunner runs each program in a new session of its connection.
type sshRunner struct{ client *ssh.Client }

func (r sshRunner) exec(ctx context.Context, script string) (string, error) {
	sess, err := r.client.NewSession()
	if err != nil {
		return "", err
	}
	defer sess.Close()
	// The program goes in on stdin, not the command line: other users of
	// the host can read command lines (ps), and it may carry secrets.
	sess.Stdin = strings.NewReader(script)
	out, err := sess.Output("/bin/sh -s")
	if err != nil {
		return "", fmt.Errorf("run commands: %w", err)
	}
	return string(out), nil
}

// localRunner runs each program on the worker, as its user, in a session
// of its own (as sshd would), so that killing the session ends it all.
type localRunner struct{}

// exec runs script and returns its output. When ctx ends first (the
// activity cancelled, or timed out on a busy worker), the program is hung
// up on, as sshd does when a connection drops, and not killed: the
// exactly-once wrapper ignores SIGHUP once it holds its lock, so the
// script runs to its end and records its status for the retry that
// collects it. (Killed, it would leave a lock without a status, and the
// retry would wait for ever.) Aborts and host timeouts kill the session
// (SSH.kill).
func (localRunner) exec(ctx context.Context, script string) (string, error) {
	cmd := exec.Command("/bin/sh", "-s")
	cmd.Stdin = strings.NewReader(script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("run commands: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }() // reaps the program whenever it ends
	select {
	case err := <-done:
		if err != nil {
			return "", fmt.Errorf("run commands: %w", err)
		}
		return out.String(), nil
	case <-ctx.Done():
		_ = cmd.Process.Signal(syscall.SIGHUP)
		return "", fmt.Errorf("run commands: %w", ctx.Err())
	}
}

// parseFacts reads the sections discoveryScript prints.
func parseFacts(out string) HostFacts {
	var f HostFacts
	sections := map[string][]string{}
	cur := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if name, ok := strings.CutPrefix(line, "##"); ok {
			cur = name
			continue
		}
		if cur != "" && strings.TrimSpace(line) != "" {
			sections[cur] = append(sections[cur], line)
		}
	}
	if l := sections["hostname"]; len(l) > 0 {
		f.Hostname = strings.TrimSpace(l[0])
	}
	for _, l := range sections["os"] {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			continue
		}
		v = strings.Trim(v, `"`)
		switch k {
		case "ID":
			f.OS = v
		case "VERSION_ID":
			f.OSVersion = v
		}
	}
	if l := sections["kernel"]; len(l) > 0 {
		f.Kernel = strings.TrimSpace(l[0])
	}
	if l := sections["cpu"]; len(l) > 0 {
		f.CPUCount, _ = strconv.Atoi(strings.TrimSpace(l[0]))
	}
	if l := sections["mem"]; len(l) > 0 {
		if fs := strings.Fields(l[0]); len(fs) >= 2 {
			kb, _ := strconv.ParseInt(fs[1], 10, 64)
			f.MemoryMB = kb / 1024
		}
	}
	for i, l := range sections["disks"] {
		fs := strings.Fields(l)
		if i == 0 && len(fs) > 0 && fs[0] == "Filesystem" || len(fs) < 6 {
			continue
		}
		size, _ := strconv.ParseInt(fs[1], 10, 64)
		f.Disks = append(f.Disks, Disk{Device: fs[0], Mount: fs[5], SizeMB: size / 1024})
	}
	for _, l := range sections["ip"] {
		fs := strings.Fields(l)
		// "2: eth0    inet 10.0.0.5/24 brd ..." from ip -o addr
		for i := 0; i+1 < len(fs); i++ {
			if fs[i] == "inet" || fs[i] == "inet6" {
				ip, _, _ := strings.Cut(fs[i+1], "/")
				if ip != "127.0.0.1" && ip != "::1" && !strings.HasPrefix(ip, "fe80:") {
					f.IPAddresses = append(f.IPAddresses, ip)
				}
			}
		}
		if len(fs) > 0 && !strings.Contains(l, "inet") { // hostname -I
			for _, ip := range fs {
				if net.ParseIP(ip) != nil {
					f.IPAddresses = append(f.IPAddresses, ip)
				}
			}
		}
	}
	seenPort := map[string]bool{}
	for _, l := range sections["ports"] {
		fs := strings.Fields(l)
		// ss -Hltn: State Recv-Q Send-Q Local:Port Peer:Port
		// netstat -ltn: Proto Recv-Q Send-Q Local:Port Foreign State
		var local string
		switch {
		case len(fs) >= 5 && fs[0] == "LISTEN":
			local = fs[3]
		case len(fs) >= 6 && strings.HasPrefix(fs[0], "tcp"):
			local = fs[3]
		default:
			continue
		}
		i := strings.LastIndex(local, ":")
		if i < 0 {
			continue
		}
		port, err := strconv.Atoi(local[i+1:])
		if err != nil {
			continue
		}
		host := strings.Trim(local[:i], "[]")
		if key := host + ":" + local[i+1:]; !seenPort[key] {
			seenPort[key] = true
			f.Ports = append(f.Ports, ListeningPort{Proto: "tcp", Addr: host, Port: port})
		}
	}
	for _, l := range sections["services"] {
		if s := strings.TrimSpace(l); strings.HasSuffix(s, ".service") {
			f.Services = append(f.Services, strings.TrimSuffix(s, ".service"))
		}
	}
	return f
}
