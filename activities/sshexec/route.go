package sshexec

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"sync"
	"time"

	"go.temporal.io/sdk/temporal"
	"golang.org/x/crypto/ssh"
)

// Route is how hosts are reached with one login: the login, and the jump
// hosts (bastions) on the way, if any. Every host of a route shares one
// connection to the last jump host, opened on first use and closed once no
// host has used it for jumpIdle.
type Route struct {
	login *ssh.ClientConfig // the hosts' login, without a host key check
	hops  []Hop

	mu    sync.Mutex
	via   []*ssh.Client // connected hops; the last carries the hosts' connections
	users int
	idle  *time.Timer
}

// Hop is one jump host.
type Hop struct {
	// ID identifies the jump host to the caller (its credential): host
	// keys are pinned per address and the hop they are reached through.
	ID     int64
	Name   string // for errors
	Addr   string // host:port
	Config *ssh.ClientConfig
}

// jumpIdle is how long an unused connection to a jump host stays open.
const jumpIdle = 30 * time.Second

// NewRoute returns the route that logs in to hosts with login (its host
// key check is ignored: see Login) through hops, the first to connect to
// first, each with its own login and host key check; no hops is direct.
func NewRoute(login *ssh.ClientConfig, hops []Hop) *Route {
	return &Route{login: login, hops: hops}
}

// LastHop is the ID of the jump host the hosts are reached through, or 0
// when they are reached directly.
func (r *Route) LastHop() int64 {
	if len(r.hops) == 0 {
		return 0
	}
	return r.hops[len(r.hops)-1].ID
}

// Login returns a copy of the route's login that checks host keys with
// hostKey.
func (r *Route) Login(hostKey ssh.HostKeyCallback) *ssh.ClientConfig {
	cfg := *r.login
	cfg.HostKeyCallback = hostKey
	return &cfg
}

// UnreachableAttempts is how many connection attempts in a row (TCP or
// SSH handshake, with a growing pause between them) a host may fail before
// it fails as unreachable.
const UnreachableAttempts = 3

// DialHost connects to a host, trying again with a growing pause after a
// failed connection or handshake: only UnreachableAttempts failures in a
// row make it unreachable (fails says how many there were). Retries of
// the activity (a worker died, a heartbeat was late on a busy machine)
// count for nothing here: only the host's own refusals do.
//
// A Temporal application error that a host key callback returns (a
// changed key), the host's or a jump host's, ends the attempts at once and
// is returned unwrapped, so that the activity fails with it as it is.
// The Runner that Runner returns passes it on the same way.
func (r *Route) DialHost(ctx context.Context, addr string, cfg *ssh.ClientConfig) (client *ssh.Client, fails int, err error) {
	pause := time.Second
	for fails := 1; ; fails++ {
		client, err := r.dial(ctx, addr, cfg)
		if err == nil {
			return client, 0, nil
		}
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) || ctx.Err() != nil || fails >= UnreachableAttempts {
			return nil, fails, err
		}
		t := time.NewTimer(pause + time.Duration(mrand.Int64N(int64(pause/2))))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fails, err
		case <-t.C:
		}
		pause *= 2
	}
}

// Runner returns a Runner that runs each program in one session on a new
// connection to addr, made with cfg.
func (r *Route) Runner(addr string, cfg *ssh.ClientConfig) Runner {
	return dialing{r, addr, cfg}
}

type dialing struct {
	r    *Route
	addr string
	cfg  *ssh.ClientConfig
}

func (d dialing) Exec(ctx context.Context, script string) (string, error) {
	client, err := d.r.dial(ctx, d.addr, d.cfg)
	if err != nil {
		return "", err
	}
	defer client.Close()
	return Remote{client}.Exec(ctx, script)
}

// dial connects to addr with cfg, through the route's jump hosts when it
// has any; ctx ending closes the connection.
func (r *Route) dial(ctx context.Context, addr string, cfg *ssh.ClientConfig) (*ssh.Client, error) {
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
		return nil, fmt.Errorf("through jump host %s: %w", r.hops[len(r.hops)-1].Name, err)
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
func (r *Route) acquire(ctx context.Context) (*ssh.Client, error) {
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
			d := net.Dialer{Timeout: h.Config.Timeout}
			conn, err = d.DialContext(ctx, "tcp", h.Addr)
		} else {
			dctx, cancel := context.WithTimeout(ctx, h.Config.Timeout)
			conn, err = prev.DialContext(dctx, "tcp", h.Addr)
			cancel()
		}
		if err != nil {
			r.closeLocked()
			return nil, fmt.Errorf("jump host %s (%s): %w", h.Name, h.Addr, err)
		}
		// The chain outlives the activity that opened it.
		c, err := handshake(context.WithoutCancel(ctx), conn, h.Addr, h.Config, nil)
		if err != nil {
			r.closeLocked()
			var appErr *temporal.ApplicationError
			if errors.As(err, &appErr) {
				return nil, appErr
			}
			return nil, fmt.Errorf("jump host %s (%s): %w", h.Name, h.Addr, err)
		}
		r.via = append(r.via, c)
		prev = c
	}
	r.users++
	return prev, nil
}

func (r *Route) release() {
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

// closeLocked drops the connections to the jump hosts.
func (r *Route) closeLocked() {
	for i := len(r.via) - 1; i >= 0; i-- {
		r.via[i].Close()
	}
	r.via = nil
}

// Routes keeps the routes a worker opened, by an ID of the caller's (a
// credential's), for routeTTL each. The zero value is ready to use.
type Routes struct {
	mu sync.Mutex
	m  map[int64]routeEntry
}

type routeEntry struct {
	r  *Route
	at time.Time
}

// routeTTL bounds how long a worker uses a credential it read.
const routeTTL = 10 * time.Minute

// Get returns the route kept for id, or the one open returns, kept from
// now on.
func (c *Routes) Get(ctx context.Context, id int64, open func(context.Context, int64) (*Route, error)) (*Route, error) {
	c.mu.Lock()
	e, ok := c.m[id]
	c.mu.Unlock()
	if ok && time.Since(e.at) < routeTTL {
		return e.r, nil
	}
	r, err := open(ctx, id)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) > 256 {
		// A dropped route's jump connection closes when idle.
		c.m = map[int64]routeEntry{}
	}
	c.m[id] = routeEntry{r: r, at: time.Now()}
	return r, nil
}
