package schema

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/uptrace/bun"
)

// Credential kinds.
const (
	CredSSHKey   = "ssh_key"
	CredPassword = "password"
	// CredJumpHost is a bastion: an address, the login there (a key or a
	// password, see Auth) and optionally the host key it must present.
	CredJumpHost = "jump_host"
	// CredLocal runs scripts on the SSH worker itself, as its user: the
	// local transport. One is built in.
	CredLocal = "local"
	// AuthNone is the Auth of the local credential.
	AuthNone = "none"
	// CredHTTP is a secret that runbooks' http steps send: basic auth
	// with Username when it has one, else a bearer token. Its Scope is
	// required: the URL prefixes it may be sent to (HTTPScopeAllows).
	CredHTTP = "http"
)

// ParseHTTPScope reads an http credential's scope: URL prefixes
// (http:// or https://, a host, optionally a path; no user, query or
// fragment), separated by spaces or commas.
func ParseHTTPScope(scope string) ([]*url.URL, error) {
	var out []*url.URL
	for _, f := range strings.FieldsFunc(scope, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' }) {
		u, err := url.Parse(f)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
			return nil, fmt.Errorf("%q is no URL prefix such as https://api.example.com/v1/", f)
		}
		if !cleanURLPath(u.Path) {
			return nil, fmt.Errorf("%q: the path has . or .. segments", f)
		}
		out = append(out, u)
	}
	if len(out) == 0 {
		return nil, errors.New("required: the URL prefixes this secret may be sent to")
	}
	return out, nil
}

// HTTPScopeAllows reports whether an http credential may be sent with a
// request to u: same scheme, host and port as one of its scope's
// prefixes, and a path under that prefix's, segment by segment. A path
// with . or .. segments is refused (a server would resolve it elsewhere).
func (c *Credential) HTTPScopeAllows(u *url.URL) bool {
	if c.Kind != CredHTTP || u.User != nil || !cleanURLPath(u.Path) {
		return false
	}
	prefixes, err := ParseHTTPScope(c.Scope)
	if err != nil {
		return false
	}
	for _, p := range prefixes {
		if p.Scheme != u.Scheme || hostPort(p) != hostPort(u) {
			continue
		}
		pp := strings.TrimSuffix(p.Path, "/")
		if pp == "" || u.Path == pp || strings.HasPrefix(u.Path, pp+"/") {
			return true
		}
	}
	return false
}

// hostPort is u's host, lower case, with the scheme's default port.
func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	return net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// cleanURLPath reports whether p has no . or .. segments.
func cleanURLPath(p string) bool {
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// MaxJumpChain bounds how many jump hosts a connection goes through.
const MaxJumpChain = 3

// Credential is how opsflow logs in somewhere. Secret and Passphrase hold
// sealed values (internal/secret) and never leave the server.
type Credential struct {
	bun.BaseModel `bun:"table:credentials"`

	ID   int64  `bun:"id,pk,autoincrement" json:"id"`
	Name string `bun:"name" json:"name"`
	Kind string `bun:"kind" json:"kind"`
	// Auth is how the login proves itself: ssh_key or password. For
	// those kinds it equals Kind; a jump host has either.
	Auth        string `bun:"auth" json:"auth"`
	Username    string `bun:"username" json:"username"`
	Secret      string `bun:"secret" json:"-"`
	Passphrase  string `bun:"passphrase" json:"-"`
	Fingerprint string `bun:"fingerprint" json:"fingerprint,omitempty"`
	// Address (host:port) and HostKey (authorized_keys form, optional)
	// are a jump host's.
	Address string `bun:"address" json:"address,omitempty"`
	HostKey string `bun:"host_key" json:"host_key,omitempty"`
	// JumpHostID names the jump host through which this credential's
	// hosts (or, for a jump host, the bastion itself) are reached.
	JumpHostID *int64 `bun:"jump_host_id" json:"jump_host_id,omitempty"`
	// Scope selects (a label selector) the host CIs this credential may
	// be used on; empty is every host CI. AllowUnlistedHosts lets it be
	// used on addresses that are no host in the CMDB (discovery needs it).
	// Only admins set either: an operator must not point a credential
	// whose secret they do not know at a host of their own.
	Scope              string    `bun:"scope" json:"scope"`
	AllowUnlistedHosts bool      `bun:"allow_unlisted_hosts" json:"allow_unlisted_hosts"`
	Description        string    `bun:"description" json:"description"`
	CreatedBy          string    `bun:"created_by" json:"created_by"`
	CreatedAt          time.Time `bun:"created_at" json:"created_at"`
	UpdatedAt          time.Time `bun:"updated_at" json:"updated_at"`
}

// SealContext binds a credential's sealed values to its name, so a value
// copied into another row does not open.
func (c *Credential) SealContext() string { return "credential:" + c.Name }

// CreateCredential inserts c; a taken name is ErrConflict. Auth defaults
// to the kind for ssh_key and password credentials.
func (s *Store) CreateCredential(ctx context.Context, c *Credential) error {
	if c.Auth == "" && (c.Kind == CredSSHKey || c.Kind == CredPassword) {
		c.Auth = c.Kind
	}
	now := time.Now().UTC()
	c.CreatedAt, c.UpdatedAt = now, now
	if _, err := s.DB.NewInsert().Model(c).Returning("id").Exec(ctx); err != nil {
		if isUniqueViolation(err) {
			return fmt.Errorf("store: create credential %q: %w", c.Name, ErrConflict)
		}
		return fmt.Errorf("store: create credential %q: %w", c.Name, err)
	}
	return nil
}

// Credential returns credential id, sealed values included.
func (s *Store) Credential(ctx context.Context, id int64) (*Credential, error) {
	c := new(Credential)
	if err := s.DB.NewSelect().Model(c).Where("id = ?", id).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: credential %d: %w", id, notFound(err))
	}
	return c, nil
}

// Credentials lists credentials by name.
func (s *Store) Credentials(ctx context.Context) ([]Credential, error) {
	var cs []Credential
	if err := s.DB.NewSelect().Model(&cs).Order("name").Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: credentials: %w", err)
	}
	return cs, nil
}

// CredentialByName returns the credential called name.
func (s *Store) CredentialByName(ctx context.Context, name string) (*Credential, error) {
	c := new(Credential)
	if err := s.DB.NewSelect().Model(c).Where("name = ?", name).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: credential %q: %w", name, notFound(err))
	}
	return c, nil
}

// JumpChain returns the jump hosts through which c's hosts are reached,
// the one to connect to first first. A chain longer than MaxJumpChain (or
// a loop) is an error.
func (s *Store) JumpChain(ctx context.Context, c *Credential) ([]*Credential, error) {
	var chain []*Credential
	for next := c.JumpHostID; next != nil; {
		if len(chain) == MaxJumpChain {
			return nil, fmt.Errorf("store: credential %q: more than %d jump hosts in a row (or a loop)", c.Name, MaxJumpChain)
		}
		j, err := s.Credential(ctx, *next)
		if err != nil {
			return nil, err
		}
		chain = append(chain, j)
		next = j.JumpHostID
	}
	slices.Reverse(chain)
	return chain, nil
}

// DeleteCredential removes credential id. A jump host still named by
// other credentials, or a credential jobs used, is ErrConflict.
func (s *Store) DeleteCredential(ctx context.Context, id int64) error {
	n, err := s.DB.NewSelect().Model((*Credential)(nil)).Where("jump_host_id = ?", id).Count(ctx)
	if err != nil {
		return fmt.Errorf("store: delete credential %d: %w", id, err)
	}
	if n > 0 {
		return fmt.Errorf("store: delete credential %d: %d credentials reach their hosts through it: %w", id, n, ErrConflict)
	}
	res, err := s.DB.NewDelete().Model((*Credential)(nil)).Where("id = ?", id).Where("kind <> ?", CredLocal).Exec(ctx)
	if isForeignKeyViolation(err) {
		return fmt.Errorf("store: delete credential %d: jobs used it: %w", id, ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("store: delete credential %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, err := s.Credential(ctx, id); err == nil {
			return fmt.Errorf("store: delete credential %d: it is built in: %w", id, ErrConflict)
		}
		return fmt.Errorf("store: delete credential %d: %w", id, ErrNotFound)
	}
	return nil
}

// SetCredentialHostKey records a jump host's key on first contact, unless
// one is recorded already, and returns the key recorded.
func (s *Store) SetCredentialHostKey(ctx context.Context, id int64, key string) (string, error) {
	if _, err := s.DB.NewUpdate().Model((*Credential)(nil)).Set("host_key = ?", key).Set("updated_at = ?", time.Now().UTC()).
		Where("id = ?", id).Where("host_key = ''").Exec(ctx); err != nil {
		return "", fmt.Errorf("store: record host key of credential %d: %w", id, err)
	}
	var recorded string
	if err := s.DB.NewSelect().Model((*Credential)(nil)).Column("host_key").Where("id = ?", id).Scan(ctx, &recorded); err != nil {
		return "", fmt.Errorf("store: record host key of credential %d: %w", id, notFound(err))
	}
	return recorded, nil
}

// SetCredentialScope changes where credential id may be used.
func (s *Store) SetCredentialScope(ctx context.Context, id int64, scope string, allowUnlisted bool) (*Credential, error) {
	res, err := s.DB.NewUpdate().Model((*Credential)(nil)).Set("scope = ?", scope).Set("allow_unlisted_hosts = ?", allowUnlisted).
		Set("updated_at = ?", time.Now().UTC()).Where("id = ?", id).Where("kind <> ?", CredLocal).Exec(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: scope credential %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil, fmt.Errorf("store: scope credential %d: %w", id, ErrNotFound)
	}
	return s.Credential(ctx, id)
}

// LocalCredential returns the built-in credential of the local transport.
func (s *Store) LocalCredential(ctx context.Context) (*Credential, error) {
	c := new(Credential)
	if err := s.DB.NewSelect().Model(c).Where("kind = ?", CredLocal).Order("id").Limit(1).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: local credential: %w", notFound(err))
	}
	return c, nil
}

// seedLocalCredential creates the built-in local credential, named
// "local" unless a credential has that name already.
func (s *Store) seedLocalCredential(ctx context.Context) error {
	if _, err := s.LocalCredential(ctx); !errors.Is(err, ErrNotFound) {
		return err
	}
	for _, name := range []string{"local", "worker-local"} {
		c := &Credential{Name: name, Kind: CredLocal, Auth: AuthNone, CreatedBy: "opsflow",
			Description: "Built in: runs scripts on the SSH worker itself, as the worker's user (the local transport)."}
		if err := s.CreateCredential(ctx, c); err == nil || !errors.Is(err, ErrConflict) {
			return err
		}
	}
	return errors.New("store: seed the local credential: names local and worker-local are taken")
}
