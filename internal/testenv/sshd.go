package testenv

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// SSHTarget is one running sshd.
type SSHTarget struct {
	Addr    string // host:port
	HostKey ssh.PublicKey
}

// SSHTargets are sshd instances that accept User with Signer (whose private
// key is PrivateKeyPEM, in OpenSSH format).
type SSHTargets struct {
	Targets       []SSHTarget
	User          string
	Signer        ssh.Signer
	PrivateKeyPEM []byte
}

// ClientConfig returns a client config that logs in as s.User with s.Signer
// and accepts only the host key of the target it dialed.
func (s *SSHTargets) ClientConfig() *ssh.ClientConfig {
	known := make(map[string]ssh.PublicKey, len(s.Targets))
	for _, t := range s.Targets {
		known[t.Addr] = t.HostKey
	}
	return &ssh.ClientConfig{
		User: s.User,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(s.Signer)},
		HostKeyCallback: func(hostname string, remote net.Addr, key ssh.PublicKey) error {
			want, ok := known[hostname]
			if !ok && remote != nil {
				want, ok = known[remote.String()]
			}
			if !ok {
				return fmt.Errorf("ssh: no known host key for %s", hostname)
			}
			if !bytes.Equal(want.Marshal(), key.Marshal()) {
				return fmt.Errorf("ssh: host key mismatch for %s: got %s, want %s", hostname, ssh.FingerprintSHA256(key), ssh.FingerprintSHA256(want))
			}
			return nil
		},
		HostKeyAlgorithms: []string{ssh.KeyAlgoED25519},
		Timeout:           30 * time.Second,
	}
}

// SSHD starts n OpenSSH servers, each on its own loopback address and port,
// that accept the current user with a fresh client key. They stop when the
// test ends.
func SSHD(tb testing.TB, n int) *SSHTargets {
	tb.Helper()
	needsReal(tb, "sshd")
	if n < 1 {
		tb.Fatalf("testenv: SSHD(%d): need at least one server", n)
	}
	sshd := EnsureCommand(tb, "sshd", "openssh-server")
	targets, err := startSSHD(tb, sshd, n)
	if err != nil {
		Unavailable(tb, "sshd: %v", err)
	}
	return targets
}

func startSSHD(tb testing.TB, sshd string, n int) (*SSHTargets, error) {
	me, err := user.Current()
	if err != nil {
		return nil, fmt.Errorf("current user: %w", err)
	}
	// sshd refuses to start without its privilege separation directory, which
	// lives on a tmpfs that nothing recreates here.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil && os.Geteuid() == 0 {
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

	hosts := loopbackHosts(n)
	procs := make([]*sshdProc, n)
	tb.Cleanup(func() {
		for _, p := range procs {
			if p != nil {
				p.stop()
			}
		}
	})

	errs := make([]error, n)
	var wg sync.WaitGroup
	// Starting instances in parallel lets n in the hundreds start in seconds.
	sem := make(chan struct{}, 64)
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			procs[i], errs[i] = startSSHDInstance(sshd, config, dir, i, hosts[i], hostKey.PublicKey())
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	s := &SSHTargets{User: me.Username, Signer: clientSigner, PrivateKeyPEM: clientPEM}
	for _, p := range procs {
		s.Targets = append(s.Targets, SSHTarget{Addr: p.addr, HostKey: hostKey.PublicKey()})
	}
	return s, nil
}

func sshdConfig(dir string) string {
	return fmt.Sprintf(`HostKey %s
AuthorizedKeysFile %s
PidFile none
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
MaxStartups 100:30:200
MaxSessions 100
SetEnv SHLVL=1 TMPDIR=%[3]s
KexAlgorithms curve25519-sha256
Subsystem sftp internal-sftp
LogLevel ERROR
`, filepath.Join(dir, "host_ed25519"), filepath.Join(dir, "authorized_keys"), dir)
}

// writeEd25519Key generates a key and writes its private half to path in
// OpenSSH format.
func writeEd25519Key(path string) (ssh.Signer, []byte, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "opsflow-testenv")
	if err != nil {
		return nil, nil, fmt.Errorf("marshal private key: %w", err)
	}
	pemBytes := pem.EncodeToMemory(block)
	if err := os.WriteFile(path, pemBytes, 0o600); err != nil {
		return nil, nil, err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, nil, err
	}
	return signer, pemBytes, nil
}

// loopbackHosts returns n distinct addresses in 127.0.0.0/8 from a random
// start, so that test packages running at the same time rarely share an
// address; the port probe makes a shared one harmless.
func loopbackHosts(n int) []string {
	var b [4]byte
	rand.Read(b[:])
	// Start above 127.1.0.0 to stay clear of 127.0.0.1 and its neighbours.
	next := 1<<16 + binary.BigEndian.Uint32(b[:])%(254<<16)
	hosts := make([]string, 0, n)
	for len(hosts) < n {
		x, y, z := byte(next>>16), byte(next>>8), byte(next)
		next++
		if next >= 255<<16 {
			next = 1 << 16
		}
		if z == 0 || z == 255 {
			continue
		}
		hosts = append(hosts, fmt.Sprintf("127.%d.%d.%d", x, y, z))
	}
	return hosts
}

type sshdProc struct {
	addr   string
	cmd    *exec.Cmd
	exited chan struct{}
}

func (p *sshdProc) stop() {
	p.cmd.Process.Kill()
	<-p.exited
}

// startSSHDInstance starts sshd on host at a probed free port, retrying with
// another port when another process took it first.
func startSSHDInstance(sshd, config, dir string, i int, host string, hostKey ssh.PublicKey) (*sshdProc, error) {
	logPath := filepath.Join(dir, "sshd-"+strconv.Itoa(i)+".log")
	var lastErr error
	for range 3 {
		port, err := probeFreePort(host)
		if err != nil {
			return nil, err
		}
		addr := net.JoinHostPort(host, strconv.Itoa(port))
		p, err := runSSHD(sshd, config, logPath, addr, hostKey)
		if err == nil {
			return p, nil
		}
		lastErr = err
		if !errors.Is(err, errSSHDBind) {
			break
		}
	}
	return nil, lastErr
}

var errSSHDBind = errors.New("sshd could not bind its address")

func runSSHD(sshd, config, logPath, addr string, hostKey ssh.PublicKey) (*sshdProc, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("sshd log: %w", err)
	}
	defer logFile.Close()
	cmd := exec.Command(sshd, "-D", "-e", "-f", config, "-o", "ListenAddress="+addr)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// A test binary killed by go test's timeout runs no cleanups; the kernel
	// then stops the servers.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start sshd on %s: %w", addr, err)
	}
	p := &sshdProc{addr: addr, cmd: cmd, exited: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.exited)
	}()

	err = waitSSHD(addr, hostKey, p.exited, 30*time.Second)
	if err == nil {
		return p, nil
	}
	p.stop()
	log, _ := os.ReadFile(logPath)
	if errors.Is(err, errForeignServer) || strings.Contains(string(log), "Address already in use") || strings.Contains(string(log), "Cannot bind any address") {
		return nil, fmt.Errorf("sshd on %s: %w: %s", addr, errSSHDBind, log)
	}
	return nil, fmt.Errorf("sshd on %s: %w\n%s", addr, err, log)
}

// waitSSHD polls addr until an SSH server there shows hostKey, the process
// exits, or the timeout passes. Checking the key, not just a banner, tells our
// sshd apart from a server that took the probed port first.
func waitSSHD(addr string, hostKey ssh.PublicKey, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	backoff := 5 * time.Millisecond
	for {
		err := probeSSHD(addr, hostKey, exited)
		if err == nil || errors.Is(err, errForeignServer) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %w", timeout, err)
		}
		select {
		case <-exited:
			return errors.New("sshd exited")
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 100*time.Millisecond)
	}
}

var (
	errHostKeySeen   = errors.New("host key seen")
	errForeignServer = errors.New("another ssh server answers with a different host key")
)

// probeSSHD runs the SSH handshake up to the host key check. It gives up when
// sshd exits, as a silent listener on the port would keep it waiting.
func probeSSHD(addr string, hostKey ssh.PublicKey, exited <-chan struct{}) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-exited:
			conn.Close()
		case <-done:
		}
	}()
	config := &ssh.ClientConfig{
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			if bytes.Equal(key.Marshal(), hostKey.Marshal()) {
				return errHostKeySeen
			}
			return errForeignServer
		},
		HostKeyAlgorithms: []string{hostKey.Type()},
	}
	_, _, _, err = ssh.NewClientConn(conn, addr, config)
	if errors.Is(err, errHostKeySeen) {
		return nil
	}
	return err
}
