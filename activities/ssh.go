package activities

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/opsflow/opsflow/activities/sshexec"
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
	routes sshexec.Routes      // per credential, see route
}

// DiscoverHostInput names a host to inspect and the credential to use.
type DiscoverHostInput struct {
	Address      string // host or host:port
	Port         int    // used when Address has no port; zero means 22
	CredentialID int64
}

// The facts' types moved to sshexec with the parser; these names keep the
// activities' input and result types as they were.
type (
	Disk          = sshexec.Disk
	ListeningPort = sshexec.ListeningPort
	HostFacts     = sshexec.HostFacts
)

// DiscoverHostResult carries the facts.
type DiscoverHostResult struct {
	Facts HostFacts
}

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
	known, err := a.knownHostKey(ctx, schema.HostTarget{Address: canon}, rt.LastHop())
	if err != nil {
		return DiscoverHostResult{}, err
	}
	var presented ssh.PublicKey
	cfg := rt.Login(a.pinHostKey(ctx, canon, rt.LastHop(), known, &presented))
	out, err := rt.Runner(canon, cfg).Exec(ctx, sshexec.DiscoveryScript)
	if err != nil {
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) {
			return DiscoverHostResult{}, appErr
		}
		return DiscoverHostResult{}, fmt.Errorf("discover %s: %w", canon, err)
	}
	facts := sshexec.ParseFacts(out)
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

// routeFor returns the route of credential id (see route), shared by the
// activities of this worker for a while (sshexec.Routes).
func (a *SSH) routeFor(ctx context.Context, id int64) (*sshexec.Route, error) {
	return a.routes.Get(ctx, id, a.route)
}
