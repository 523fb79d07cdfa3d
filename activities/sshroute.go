package activities

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/opsflow/opsflow/schema"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"golang.org/x/crypto/ssh"
)

// route is how hosts are reached with one credential: its login, and the
// jump hosts (bastions) on the way, if any. Every host of a route shares
// one connection to the last jump host, opened on first use and closed
// once no host has used it for jumpIdle.
type route struct {
	cfg  *ssh.ClientConfig // the hosts' login, without a host key check
	hops []hop             // the jump hosts, the first to connect to first
	// lastHop is the credential of the jump host the hosts are reached
	// through (0: directly): host keys are pinned per address and hop.
	lastHop int64

	mu    sync.Mutex
	via   []*ssh.Client // connected hops; the last carries the hosts' connections
	users int
	idle  *time.Timer
}

// hop is one jump host.
type hop struct {
	name string // the credential's
	addr string
	cfg  *ssh.ClientConfig // with its host key check
}

// jumpIdle is how long an unused connection to a jump host stays open.
const jumpIdle = 30 * time.Second

// route opens credential id and the jump hosts it goes through. Their
// secrets stay in this process: never in an error, a log line or workflow
// history.
func (a *SSH) route(ctx context.Context, id int64) (*route, error) {
	cr, err := a.Store.Credential(ctx, id)
	if errors.Is(err, schema.ErrNotFound) {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("credential %d does not exist", id), ErrTypeInvalidInput, nil)
	} else if err != nil {
		return nil, err
	}
	cfg, err := a.login(cr)
	if err != nil {
		return nil, err
	}
	r := &route{cfg: cfg}
	chain, err := a.Store.JumpChain(ctx, cr)
	if err != nil {
		if errors.Is(err, schema.ErrNotFound) {
			return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("credential %s: its jump host is gone", cr.Name), ErrTypeInvalidInput, nil)
		}
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeInvalidInput, nil)
	}
	for _, j := range chain {
		r.lastHop = j.ID
		jcfg, err := a.login(j)
		if err != nil {
			return nil, err
		}
		jcfg.HostKeyCallback = a.jumpHostKey(ctx, j)
		r.hops = append(r.hops, hop{name: j.Name, addr: j.Address, cfg: jcfg})
	}
	return r, nil
}

// jumpHostKey checks a jump host's key against the one recorded on its
// credential. With none recorded, the first key seen is trusted and
// recorded (as ssh's known_hosts does); a later different key is refused.
func (a *SSH) jumpHostKey(ctx context.Context, j *schema.Credential) ssh.HostKeyCallback {
	var mu sync.Mutex
	recorded := j.HostKey
	return func(_ string, _ net.Addr, key ssh.PublicKey) error {
		mu.Lock()
		defer mu.Unlock()
		if recorded == "" {
			line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
			var err error
			if recorded, err = a.Store.SetCredentialHostKey(context.WithoutCancel(ctx), j.ID, line); err != nil {
				return err
			}
			if recorded == line {
				activity.GetLogger(ctx).Info("jump host key recorded on first contact", "jump_host", j.Name, "fingerprint", ssh.FingerprintSHA256(key))
			}
		}
		known, _, _, _, err := ssh.ParseAuthorizedKey([]byte(recorded))
		if err != nil {
			return fmt.Errorf("recorded host key of jump host %s: %w", j.Name, err)
		}
		if string(known.Marshal()) != string(key.Marshal()) {
			return temporal.NewNonRetryableApplicationError(fmt.Sprintf("jump host %s: host key changed: recorded %s, presented %s; not trusted",
				j.Name, ssh.FingerprintSHA256(known), ssh.FingerprintSHA256(key)), ErrTypeHostKeyChanged, nil)
		}
		return nil
	}
}

// login is a credential's client config, without a host key check.
func (a *SSH) login(cr *schema.Credential) (*ssh.ClientConfig, error) {
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
	switch cr.Auth {
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
	default:
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("credential %s: unknown login %q", cr.Name, cr.Auth), ErrTypeInvalidInput, nil)
	}
	return cfg, nil
}

// dial connects to addr with cfg, through the route's jump hosts when it
// has any; ctx ending closes the connection.
func (r *route) dial(ctx context.Context, addr string, cfg *ssh.ClientConfig) (*ssh.Client, error) {
	if len(r.hops) == 0 {
		d := net.Dialer{Timeout: cfg.Timeout}
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return handshake(ctx, conn, addr, cfg, nil)
	}
	via, err := r.acquire(ctx)
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	conn, err := via.DialContext(dctx, "tcp", addr)
	if err != nil {
		r.release()
		return nil, fmt.Errorf("through jump host %s: %w", r.hops[len(r.hops)-1].name, err)
	}
	return handshake(ctx, conn, addr, cfg, r.release)
}

// handshake runs the SSH handshake on conn within cfg.Timeout. done, if
// set, runs once the client is closed.
func handshake(ctx context.Context, conn net.Conn, addr string, cfg *ssh.ClientConfig, done func()) (*ssh.Client, error) {
	// A connection through a jump host has no deadlines: closing it is
	// what bounds the handshake.
	hctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	stopClose := context.AfterFunc(hctx, func() { conn.Close() })
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	stopped := stopClose()
	cancel()
	if err == nil && !stopped {
		err = fmt.Errorf("ssh handshake with %s: %w", addr, context.DeadlineExceeded)
	}
	if err != nil {
		conn.Close()
		if done != nil {
			done()
		}
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) {
			return nil, appErr
		}
		return nil, err
	}
	client := ssh.NewClient(c, chans, reqs)
	stop := context.AfterFunc(ctx, func() { client.Close() })
	go func() {
		_ = client.Wait()
		stop()
		if done != nil {
			done()
		}
	}()
	return client, nil
}

// acquire returns the connection to the last jump host, opening the chain
// if it is not open (or has died). Each acquire is paired with a release.
func (r *route) acquire(ctx context.Context) (*ssh.Client, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.idle != nil {
		r.idle.Stop()
		r.idle = nil
	}
	if n := len(r.via); n > 0 {
		// A cheap liveness check: a dead connection fails at once.
		if _, _, err := r.via[n-1].SendRequest("keepalive@openssh.com", true, nil); err == nil {
			r.users++
			return r.via[n-1], nil
		}
		r.closeLocked()
	}
	var prev *ssh.Client
	for _, h := range r.hops {
		var conn net.Conn
		var err error
		if prev == nil {
			d := net.Dialer{Timeout: h.cfg.Timeout}
			conn, err = d.DialContext(ctx, "tcp", h.addr)
		} else {
			dctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
			conn, err = prev.DialContext(dctx, "tcp", h.addr)
			cancel()
		}
		if err != nil {
			r.closeLocked()
			return nil, fmt.Errorf("jump host %s (%s): %w", h.name, h.addr, err)
		}
		// The chain outlives the activity that opened it.
		c, err := handshake(context.WithoutCancel(ctx), conn, h.addr, h.cfg, nil)
		if err != nil {
			r.closeLocked()
			var appErr *temporal.ApplicationError
			if errors.As(err, &appErr) {
				return nil, appErr
			}
			return nil, fmt.Errorf("jump host %s (%s): %w", h.name, h.addr, err)
		}
		r.via = append(r.via, c)
		prev = c
	}
	r.users++
	return prev, nil
}

func (r *route) release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.users--
	if r.users == 0 && len(r.via) > 0 {
		r.idle = time.AfterFunc(jumpIdle, func() {
			r.mu.Lock()
			defer r.mu.Unlock()
			if r.users == 0 {
				r.closeLocked()
			}
		})
	}
}

// close drops the connections to the jump hosts.
func (r *route) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closeLocked()
}

func (r *route) closeLocked() {
	for i := len(r.via) - 1; i >= 0; i-- {
		r.via[i].Close()
	}
	r.via = nil
}
