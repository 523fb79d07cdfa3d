package api

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opsflow/opsflow/internal/testenv"
	"github.com/opsflow/opsflow/schema"
	"golang.org/x/crypto/ssh"
)

// rekeyableSSHD is one real sshd on a fixed address that a test restarts
// with a new host key, as a re-installed (or impersonated) host would be.
type rekeyableSSHD struct {
	t       *testing.T
	bin     string
	dir     string
	addr    string
	client  ssh.Signer
	keyPEM  []byte
	hostKey ssh.PublicKey
	cmd     *exec.Cmd
	exited  chan struct{}
}

func newRekeyableSSHD(t *testing.T) *rekeyableSSHD {
	t.Helper()
	s := &rekeyableSSHD{t: t, bin: testenv.EnsureCommand(t, "sshd", "openssh-server"), dir: t.TempDir()}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	var err error
	if s.client, s.keyPEM, err = genKey(filepath.Join(s.dir, "client")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.dir, "authorized_keys"), ssh.MarshalAuthorizedKey(s.client.PublicKey()), 0o600); err != nil {
		t.Fatal(err)
	}
	n := time.Now().UnixNano()
	host := fmt.Sprintf("127.%d.%d.%d", 20+n%200, (n/1000)%250+1, (n/1000000)%250+1)
	l, err := net.Listen("tcp", host+":0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	l.Close()
	t.Cleanup(s.stop)
	s.start()
	return s
}

func genKey(path string) (ssh.Signer, []byte, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		return nil, nil, err
	}
	pemBytes := pem.EncodeToMemory(block)
	if err := os.WriteFile(path, pemBytes, 0o600); err != nil {
		return nil, nil, err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	return signer, pemBytes, err
}

// start (re)starts sshd on the same address with a fresh host key.
func (s *rekeyableSSHD) start() {
	t := s.t
	s.stop()
	hk, _, err := genKey(filepath.Join(s.dir, "host"))
	if err != nil {
		t.Fatal(err)
	}
	s.hostKey = hk.PublicKey()
	conf := filepath.Join(s.dir, "sshd_config")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("HostKey %s/host\nAuthorizedKeysFile %s/authorized_keys\nPidFile none\nStrictModes no\nUsePAM no\n"+
		"PermitRootLogin prohibit-password\nPubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"+
		"SetEnv SHLVL=1 TMPDIR=%s\nKexAlgorithms curve25519-sha256\nLogLevel ERROR\n", s.dir, s.dir, s.dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command(s.bin, "-D", "-e", "-f", conf, "-o", "ListenAddress="+s.addr)
	var log bytes.Buffer
	s.cmd.Stderr = &log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) { cmd.Wait(); close(exited) }(s.cmd, s.exited)
	want := s.hostKey.Marshal()
	eventually(t, 30*time.Second, "sshd on "+s.addr+" with its new key", func() bool {
		select {
		case <-s.exited:
			t.Fatalf("sshd exited: %s", log.String())
		default:
		}
		conn, err := net.DialTimeout("tcp", s.addr, time.Second)
		if err != nil {
			return false
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		seen := errors.New("seen")
		_, _, _, err = ssh.NewClientConn(conn, s.addr, &ssh.ClientConfig{HostKeyCallback: func(_ string, _ net.Addr, k ssh.PublicKey) error {
			if bytes.Equal(k.Marshal(), want) {
				return seen
			}
			return errors.New("old key")
		}})
		return errors.Is(err, seen)
	})
}

func (s *rekeyableSSHD) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill()
		<-s.exited
		s.cmd = nil
	}
}

func (s *rekeyableSSHD) authorized(key ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
}

// TestHostKeyPinnedForUnlistedHost: a host that is not in the CMDB has its
// key recorded on first contact, by its canonical address. Restarted with
// another key, it is refused under the same spelling and under others
// (IPv4-mapped IPv6, a zero-padded port), and the script never runs there.
// An admin forgets the key (audited), and the next contact trusts the new
// one.
func TestHostKeyPinnedForUnlistedHost(t *testing.T) {
	e := newEnv(t)
	srv := newRekeyableSSHD(t)
	me, _ := user.Current()
	p := fmt.Sprintf("pin%d", time.Now().UnixNano())
	cred := e.credential(p, &testenv.SSHTargets{User: me.Username, PrivateKeyPEM: srv.keyPEM})
	marks := t.TempDir()
	sid := e.script(p, `echo ran >> `+marks+`/"$OPSFLOW_JOB"; echo "$OPSFLOW_HOST"`, nil)
	run := func(addr string) (jobResp, schema.JobHost) {
		t.Helper()
		res := e.do(http.MethodPost, "/api/v1/jobs", "operator", map[string]any{"script_id": sid, "credential_id": cred,
			"targets": map[string]any{"hosts": []string{addr}}, "policy": map[string]any{"host_timeout": "30s"}})
		var j jobResp
		res.json(t, &j)
		if res.Status != 201 {
			t.Fatalf("job on %s: %d %s", addr, res.Status, res.Body)
		}
		j = e.waitJob(j.ID, schema.JobSucceeded, schema.JobFailed)
		var h schema.JobHost
		e.do(http.MethodGet, fmt.Sprintf("/api/v1/jobs/%d/hosts/0", j.ID), "viewer", nil).json(t, &h)
		return j, h
	}
	ran := func(j jobResp) bool {
		_, err := os.Stat(filepath.Join(marks, strconv.FormatInt(j.ID, 10)))
		return err == nil
	}
	ip, port, _ := net.SplitHostPort(srv.addr)

	j, h := run(srv.addr)
	if j.Status != schema.JobSucceeded || !ran(j) || strings.TrimSpace(string(h.Output)) != srv.addr {
		t.Fatalf("first contact: %+v %+v", j, h)
	}
	var keys struct{ Items []schema.HostKey }
	e.do(http.MethodGet, "/api/v1/host-keys?limit=1000", "operator", nil).json(t, &keys)
	first := srv.authorized(srv.hostKey)
	found := false
	for _, k := range keys.Items {
		found = found || (k.Address == srv.addr && k.Via == 0 && k.Key == first)
	}
	if !found {
		t.Fatalf("key of %s not recorded on first contact: %+v", srv.addr, keys.Items)
	}

	srv.start() // re-installed, or someone else now answers there
	for _, spelling := range []string{srv.addr, "[::ffff:" + ip + "]:" + port, ip + ":0" + port, "[::FFFF:" + ip + "]:000" + port} {
		j, h := run(spelling)
		if j.Status != schema.JobFailed || !strings.Contains(h.Error, "host key changed") || h.Output != "" || ran(j) {
			t.Fatalf("%s after the key changed: %+v %+v (ran: %v)", spelling, j, h, ran(j))
		}
		if h.Address != srv.addr {
			t.Errorf("%s planned as %q, want the canonical %q", spelling, h.Address, srv.addr)
		}
	}

	// Forgetting the key is an admin's, audited; then the new key is
	// recorded on the next contact.
	path := "/api/v1/host-keys/" + url.PathEscape("[::ffff:"+ip+"]:0"+port)
	if r := e.do(http.MethodDelete, path, "operator", nil); r.Status != 403 {
		t.Fatalf("operator forgets a key: %d %s", r.Status, r.Body)
	}
	if r := e.do(http.MethodDelete, path, "admin", nil); r.Status != 200 || !strings.Contains(string(r.Body), `"forgotten":1`) {
		t.Fatalf("admin forgets the key: %d %s", r.Status, r.Body)
	}
	var audit struct{ Items []schema.AuditEntry }
	e.do(http.MethodGet, "/api/v1/audit?action=host_key.forget&limit=200", "admin", nil).json(t, &audit)
	audited := false
	for _, a := range audit.Items {
		audited = audited || a.Target == "host:"+srv.addr
	}
	if !audited {
		t.Fatalf("forgetting not audited: %+v", audit.Items)
	}
	if j, h := run(srv.addr); j.Status != schema.JobSucceeded || !ran(j) {
		t.Fatalf("after forgetting: %+v %+v", j, h)
	}
	if r := e.do(http.MethodDelete, "/api/v1/host-keys/"+url.PathEscape("0"+ip+":"+port), "admin", nil); r.Status != 422 {
		t.Fatalf("forget an ambiguous spelling: %d %s", r.Status, r.Body)
	}
}

// TestHostKeySpellingCannotSkipPin: a host CI whose recorded key is not
// the one its sshd presents is refused however the job spells its
// address; the script never runs.
func TestHostKeySpellingCannotSkipPin(t *testing.T) {
	e := newEnv(t)
	hosts := testenv.SSHD(t, 1)
	p := fmt.Sprintf("spell%d", time.Now().UnixNano())
	cred := e.credential(p, hosts)
	addr := hosts.Targets[0].Addr
	ip, port, _ := net.SplitHostPort(addr)
	wrong := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(hosts.Signer.PublicKey())))
	ci := e.mkCI("host", p, map[string]any{"address": addr, "ssh_host_key": wrong}, map[string]string{"job": p})
	marks := t.TempDir()
	sid := e.script(p, `echo ran >> `+marks+`/"$OPSFLOW_JOB"`, nil)
	for _, spelling := range []string{"[::ffff:" + ip + "]:" + port, ip + ":0" + port} {
		res := e.do(http.MethodPost, "/api/v1/jobs", "operator", map[string]any{"script_id": sid, "credential_id": cred,
			"targets": map[string]any{"hosts": []string{spelling}}})
		var j jobResp
		res.json(t, &j)
		if res.Status != 201 {
			t.Fatalf("job on %s: %d %s", spelling, res.Status, res.Body)
		}
		j = e.waitJob(j.ID, schema.JobSucceeded, schema.JobFailed)
		var h schema.JobHost
		e.do(http.MethodGet, fmt.Sprintf("/api/v1/jobs/%d/hosts/0", j.ID), "viewer", nil).json(t, &h)
		if _, err := os.Stat(filepath.Join(marks, strconv.FormatInt(j.ID, 10))); err == nil || j.Status != schema.JobFailed ||
			!strings.Contains(h.Error, "host key changed") || h.CIID == nil || *h.CIID != ci.ID {
			t.Fatalf("%s: %+v %+v", spelling, j, h)
		}
	}
}
