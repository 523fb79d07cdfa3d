package activities

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
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

	mu    sync.Mutex
	plans map[int64]*hostPlan // per job, see jobPlan
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
// commands. A host key that differs from the one recorded in the CMDB is
// not trusted: the host fails with a non-retryable HostKeyChanged error.
func (a *SSH) DiscoverHost(ctx context.Context, in DiscoverHostInput) (DiscoverHostResult, error) {
	addr := in.Address
	if _, _, err := net.SplitHostPort(addr); err != nil {
		port := in.Port
		if port == 0 {
			port = 22
		}
		addr = net.JoinHostPort(in.Address, strconv.Itoa(port))
	}
	known, err := a.knownHostKey(ctx, in.Address)
	if err != nil {
		return DiscoverHostResult{}, err
	}
	cfg, err := a.clientConfig(ctx, in.CredentialID)
	if err != nil {
		return DiscoverHostResult{}, err
	}
	var presented ssh.PublicKey
	cfg.HostKeyCallback = func(_ string, _ net.Addr, key ssh.PublicKey) error {
		presented = key
		if known != nil && string(known.Marshal()) != string(key.Marshal()) {
			return temporal.NewNonRetryableApplicationError(fmt.Sprintf("host key changed: recorded %s, presented %s; not trusted",
				ssh.FingerprintSHA256(known), ssh.FingerprintSHA256(key)), ErrTypeHostKeyChanged, nil)
		}
		return nil
	}
	out, err := a.run(ctx, addr, cfg, discoveryScript)
	if err != nil {
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) {
			return DiscoverHostResult{}, appErr
		}
		return DiscoverHostResult{}, fmt.Errorf("discover %s: %w", addr, err)
	}
	facts := parseFacts(out)
	facts.Address = in.Address
	if presented != nil {
		facts.HostKey = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(presented)))
	}
	activity.GetLogger(ctx).Info("host discovered", "address", in.Address, "hostname", facts.Hostname)
	return DiscoverHostResult{Facts: facts}, nil
}

// knownHostKey returns the key recorded for the host CI at address, if any.
func (a *SSH) knownHostKey(ctx context.Context, address string) (ssh.PublicKey, error) {
	cis, _, err := a.Store.CIs(ctx, schema.CIQuery{Type: "host", Attrs: map[string]string{"address": address}, Limit: 1})
	if err != nil || len(cis) == 0 {
		return nil, err
	}
	s, _ := cis[0].Attributes["ssh_host_key"].(string)
	if s == "" {
		return nil, nil
	}
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("recorded host key of %s: %w", address, err)
	}
	return key, nil
}

// clientConfig opens the credential. Its secret stays in this process:
// never in an error, a log line or workflow history.
func (a *SSH) clientConfig(ctx context.Context, id int64) (*ssh.ClientConfig, error) {
	cr, err := a.Store.Credential(ctx, id)
	if errors.Is(err, schema.ErrNotFound) {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("credential %d does not exist", id), ErrTypeInvalidInput, nil)
	} else if err != nil {
		return nil, err
	}
	if a.Secrets == nil {
		return nil, temporal.NewNonRetryableApplicationError("worker has no secret key (OPSFLOW_SECRET_KEY)", ErrTypeInvalidInput, nil)
	}
	sec, err := a.Secrets.Open(cr.Secret, cr.SealContext())
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("credential %s: %v", cr.Name, err), ErrTypeInvalidInput, nil)
	}
	timeout := a.DialTimeout
	if timeout == 0 {
		timeout = 15 * time.Second
	}
	cfg := &ssh.ClientConfig{User: cr.Username, Timeout: timeout}
	switch cr.Kind {
	case schema.CredSSHKey:
		var signer ssh.Signer
		if cr.Passphrase != "" {
			pass, err := a.Secrets.Open(cr.Passphrase, cr.SealContext())
			if err != nil {
				return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("credential %s passphrase: %v", cr.Name, err), ErrTypeInvalidInput, nil)
			}
			signer, err = ssh.ParsePrivateKeyWithPassphrase(sec, pass)
			if err != nil {
				return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("credential %s: unusable key", cr.Name), ErrTypeInvalidInput, nil)
			}
		} else if signer, err = ssh.ParsePrivateKey(sec); err != nil {
			return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("credential %s: unusable key", cr.Name), ErrTypeInvalidInput, nil)
		}
		cfg.Auth = []ssh.AuthMethod{ssh.PublicKeys(signer)}
	case schema.CredPassword:
		cfg.Auth = []ssh.AuthMethod{ssh.Password(string(sec))}
	}
	return cfg, nil
}

// run executes script in one session on a new connection and returns its
// stdout.
func (a *SSH) run(ctx context.Context, addr string, cfg *ssh.ClientConfig, script string) (string, error) {
	client, err := a.dial(ctx, addr, cfg)
	if err != nil {
		return "", err
	}
	defer client.Close()
	return a.exec(ctx, client, script)
}

// dial connects and authenticates; ctx ending closes the connection.
func (a *SSH) dial(ctx context.Context, addr string, cfg *ssh.ClientConfig) (*ssh.Client, error) {
	d := net.Dialer{Timeout: cfg.Timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(cfg.Timeout))
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err != nil {
		conn.Close()
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) {
			return nil, appErr
		}
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	client := ssh.NewClient(c, chans, reqs)
	stop := context.AfterFunc(ctx, func() { client.Close() })
	go func() { _ = client.Wait(); stop() }()
	return client, nil
}

// exec runs script with sh in a new session of client.
func (a *SSH) exec(ctx context.Context, client *ssh.Client, script string) (string, error) {
	sess, err := client.NewSession()
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
