package activities

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/opsflow/opsflow/activities/sshexec"
	"github.com/opsflow/opsflow/schema"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"golang.org/x/crypto/ssh"
)

// route opens credential id and the jump hosts it goes through. Their
// secrets stay in this process: never in an error, a log line or workflow
// history. Each jump host's key is checked against the one recorded on its
// credential (jumpHostKey); the hosts' own keys are pinned by the
// activity that dials them (pinHostKey).
func (a *SSH) route(ctx context.Context, id int64) (*sshexec.Route, error) {
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
	chain, err := a.Store.JumpChain(ctx, cr)
	if err != nil {
		if errors.Is(err, schema.ErrNotFound) {
			return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("credential %s: its jump host is gone", cr.Name), ErrTypeInvalidInput, nil)
		}
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeInvalidInput, nil)
	}
	var hops []sshexec.Hop
	for _, j := range chain {
		jcfg, err := a.login(j)
		if err != nil {
			return nil, err
		}
		jcfg.HostKeyCallback = a.jumpHostKey(ctx, j)
		hops = append(hops, sshexec.Hop{ID: j.ID, Name: j.Name, Addr: j.Address, Config: jcfg})
	}
	return sshexec.NewRoute(cfg, hops), nil
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
