package api

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/opsflow/opsflow/schema"
	"golang.org/x/crypto/ssh"
)

var credNameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,100}$`)

type credentialRequest struct {
	Name        string `json:"name"`
	Kind        string `json:"kind"`
	Username    string `json:"username"`
	PrivateKey  string `json:"private_key"`
	Passphrase  string `json:"passphrase"`
	Password    string `json:"password"`
	Address     string `json:"address"`
	HostKey     string `json:"host_key"`
	JumpHost    string `json:"jump_host"`
	Description string `json:"description"`
	// Scope and AllowUnlistedHosts say where the credential may be used
	// (see schema.Credential); only admins set them.
	Scope              string `json:"scope"`
	AllowUnlistedHosts bool   `json:"allow_unlisted_hosts"`
}

// credentialScopeRequest changes where a credential may be used.
type credentialScopeRequest struct {
	Scope              *string `json:"scope"`
	AllowUnlistedHosts *bool   `json:"allow_unlisted_hosts"`
}

// checkScope refuses a non-admin setting where a credential may be used,
// and a scope that is not of the credential's kind: a label selector of
// host CIs, or for an http credential the URL prefixes it may be sent to
// (required).
func checkScope(c echo.Context, kind, scope string, allowUnlisted bool, bad fieldErrors) error {
	if (scope != "" || allowUnlisted) && userOf(c).Role != schema.RoleAdmin {
		return newError(http.StatusForbidden, CodeForbidden, "only an admin sets where a credential may be used (scope, allow_unlisted_hosts)")
	}
	switch {
	case len(scope) > 1000:
		bad.add("scope", "at most 1000 characters")
	case kind == schema.CredHTTP:
		if _, err := schema.ParseHTTPScope(scope); err != nil {
			bad.add("scope", err.Error())
		}
		if allowUnlisted {
			bad.add("allow_unlisted_hosts", "an http credential goes to URLs, not hosts")
		}
	case scope != "":
		if err := schema.ValidateSelector(scope); err != nil {
			bad.add("scope", err.Error())
		}
	}
	return nil
}

func (a *API) listCredentials(c echo.Context) error {
	cs, err := a.store.Credentials(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"items": cs})
}

func (a *API) getCredential(c echo.Context) error {
	id, err := idParam(c, "id")
	if err != nil {
		return err
	}
	cr, err := a.store.Credential(c.Request().Context(), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, cr)
}

// createCredential seals the secret before it is stored; the response, the
// logs and the audit log never carry it.
//
// Kinds: ssh_key (private_key, optional passphrase), password, and
// jump_host: a bastion at address, logged into with a private_key or a
// password, whose host_key (authorized_keys form) is checked when given.
// Any kind may name a jump_host through which it is reached.
func (a *API) createCredential(c echo.Context) error {
	var req credentialRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	cr, err := a.addCredential(c, req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, cr)
}

// addCredential validates, seals and stores a credential: the API's and
// the credentials page's.
func (a *API) addCredential(c echo.Context, req credentialRequest) (*schema.Credential, error) {
	ctx := c.Request().Context()
	setAudit(c, "credential.create", "credential:"+req.Name)
	bad := fieldErrors{}
	if err := checkScope(c, req.Kind, req.Scope, req.AllowUnlistedHosts, bad); err != nil {
		return nil, err
	}
	if !credNameRE.MatchString(req.Name) {
		bad.add("name", "must be 1-100 letters, digits, '.', '_' or '-'")
	}
	if (req.Username == "" && req.Kind != schema.CredHTTP) || strings.ContainsAny(req.Username, " \t\r\n@:") {
		bad.add("username", "required, without spaces, '@' or ':'")
	}
	cr := &schema.Credential{Name: req.Name, Kind: req.Kind, Username: req.Username, Description: req.Description, CreatedBy: userOf(c).Username,
		Scope: req.Scope, AllowUnlistedHosts: req.AllowUnlistedHosts}
	auth := req.Kind
	switch req.Kind {
	case schema.CredSSHKey, schema.CredPassword:
		if req.Address != "" {
			bad.add("address", "only a jump_host has an address; targets come from the job")
		}
		if req.HostKey != "" {
			bad.add("host_key", "only a jump_host has a host key; targets' keys are in the CMDB")
		}
	case schema.CredJumpHost:
		if req.Scope != "" || req.AllowUnlistedHosts {
			bad.add("scope", "a jump host is used only by the credentials that name it; scope those")
		}
		auth = schema.CredPassword
		if req.PrivateKey != "" {
			auth = schema.CredSSHKey
		}
		if addr, err := schema.CanonicalAddress(req.Address); err != nil {
			bad.add("address", "required: the jump host as host or host:port: "+err.Error())
		} else {
			req.Address = addr
		}
		if req.HostKey != "" {
			if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(req.HostKey)); err != nil {
				bad.add("host_key", "not a public key in authorized_keys form (\"ssh-ed25519 AAAA…\")")
			}
		}
		cr.Address, cr.HostKey = req.Address, strings.TrimSpace(req.HostKey)
	case schema.CredHTTP:
		// A token (or, with a username, a password) for runbooks' http
		// steps, sent only to the URLs of its scope.
		if req.Address != "" || req.HostKey != "" {
			bad.add("address", "an http credential has no address or host key: its scope names the URLs")
		}
		if req.PrivateKey != "" || req.Passphrase != "" {
			bad.add("private_key", "an http credential takes password (the token, or the password with a username)")
		}
		if req.JumpHost != "" {
			bad.add("jump_host", "an http credential is sent by the worker, not through a jump host")
		}
		auth = schema.CredPassword
	case schema.CredLocal:
		bad.add("kind", "local is built in: jobs with transport local use it")
	default:
		bad.add("kind", "must be ssh_key, password, jump_host or http")
	}
	var secretValue string
	switch auth {
	case schema.CredSSHKey:
		if req.Password != "" {
			bad.add("password", "a key login takes private_key (and passphrase), not password")
		}
		signer, err := parseSigner(req.PrivateKey, req.Passphrase)
		if err != nil {
			bad.add("private_key", err.Error())
		} else {
			cr.Fingerprint = ssh.FingerprintSHA256(signer.PublicKey())
		}
		secretValue = req.PrivateKey
	case schema.CredPassword:
		if req.Password == "" {
			if req.Kind == schema.CredJumpHost {
				bad.add("private_key", "a jump host needs a private_key or a password")
			} else if req.Kind == schema.CredHTTP {
				bad.add("password", "required: the token (or the password, with a username)")
			} else {
				bad.add("password", "required for a password credential")
			}
		}
		if req.Passphrase != "" {
			bad.add("passphrase", "a password login takes password only")
		}
		secretValue = req.Password
	}
	cr.Auth = auth
	if req.JumpHost != "" {
		j, err := a.store.CredentialByName(ctx, req.JumpHost)
		switch {
		case userOf(c).Role != schema.RoleAdmin:
			// Going through a jump host spends its login, which the
			// operator may not hold.
			return nil, newError(http.StatusForbidden, CodeForbidden, "only an admin names a jump_host: its login is then used for this credential's hosts")
		case errors.Is(err, schema.ErrNotFound):
			bad.add("jump_host", "no credential named "+strconv.Quote(req.JumpHost))
		case err != nil:
			return nil, err
		case j.Kind != schema.CredJumpHost:
			bad.add("jump_host", strconv.Quote(req.JumpHost)+" is a "+j.Kind+" credential, not a jump_host")
		default:
			if chain, err := a.store.JumpChain(ctx, j); err != nil || len(chain) >= schema.MaxJumpChain {
				bad.add("jump_host", "more than "+strconv.Itoa(schema.MaxJumpChain)+" jump hosts in a row")
			}
			cr.JumpHostID = &j.ID
		}
	}
	if err := bad.err(); err != nil {
		return nil, err
	}
	if a.secrets == nil {
		return nil, newError(http.StatusServiceUnavailable, CodeUnavailable, "no secret key configured (OPSFLOW_SECRET_KEY); credentials cannot be stored")
	}
	cr.Secret = a.secrets.Seal([]byte(secretValue), cr.SealContext())
	if req.Passphrase != "" {
		cr.Passphrase = a.secrets.Seal([]byte(req.Passphrase), cr.SealContext())
	}
	if err := a.store.CreateCredential(ctx, cr); err != nil {
		if isConflict(err) {
			return nil, &Error{Status: http.StatusConflict, Code: CodeConflict, Message: "credential name taken", Fields: map[string]string{"name": "already exists"}}
		}
		return nil, err
	}
	setAudit(c, "credential.create", "credential:"+strconv.FormatInt(cr.ID, 10))
	return cr, nil
}

// scopeCredential changes where a credential may be used: its scope (a
// label selector over host CIs; empty: every host CI) and whether it may
// be used on addresses that are no host in the CMDB. Admins only.
func (a *API) scopeCredential(c echo.Context) error {
	id, err := idParam(c, "id")
	if err != nil {
		return err
	}
	var req credentialScopeRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	cr, err := a.rescopeCredential(c, id, req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, cr)
}

// rescopeCredential is scopeCredential without the HTTP parts.
func (a *API) rescopeCredential(c echo.Context, id int64, req credentialScopeRequest) (*schema.Credential, error) {
	setAudit(c, "credential.scope", "credential:"+strconv.FormatInt(id, 10))
	ctx := c.Request().Context()
	cr, err := a.store.Credential(ctx, id)
	if err != nil {
		return nil, err
	}
	scope, allow := cr.Scope, cr.AllowUnlistedHosts
	if req.Scope != nil {
		scope = strings.TrimSpace(*req.Scope)
	}
	if req.AllowUnlistedHosts != nil {
		allow = *req.AllowUnlistedHosts
	}
	bad := fieldErrors{}
	if err := checkScope(c, cr.Kind, scope, allow, bad); err != nil {
		return nil, err
	}
	if cr.Kind != schema.CredSSHKey && cr.Kind != schema.CredPassword && cr.Kind != schema.CredHTTP {
		bad.add("id", "only ssh_key, password and http credentials have a scope; a "+cr.Kind+" credential has none")
	}
	if err := bad.err(); err != nil {
		return nil, err
	}
	return a.store.SetCredentialScope(ctx, id, scope, allow)
}

func parseSigner(key, passphrase string) (ssh.Signer, error) {
	if key == "" {
		return nil, errString("required: an OpenSSH or PEM private key")
	}
	var s ssh.Signer
	var err error
	if passphrase != "" {
		s, err = ssh.ParsePrivateKeyWithPassphrase([]byte(key), []byte(passphrase))
	} else {
		s, err = ssh.ParsePrivateKey([]byte(key))
	}
	if err != nil {
		if _, ok := err.(*ssh.PassphraseMissingError); ok {
			return nil, errString("the key is encrypted: give its passphrase")
		}
		return nil, errString("not a usable private key (or wrong passphrase)")
	}
	return s, nil
}

type errString string

func (e errString) Error() string { return string(e) }

func (a *API) deleteCredential(c echo.Context) error {
	id, err := idParam(c, "id")
	if err != nil {
		return err
	}
	if err := a.removeCredential(c, id); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (a *API) removeCredential(c echo.Context, id int64) error {
	setAudit(c, "credential.delete", "credential:"+strconv.FormatInt(id, 10))
	if err := a.store.DeleteCredential(c.Request().Context(), id); err != nil {
		if isConflict(err) {
			return newError(http.StatusConflict, CodeConflict, "credential in use: "+err.Error()[strings.LastIndex(err.Error(), ": ")+2:])
		}
		return err
	}
	return nil
}

// loginCredentials lists the credentials a form may offer for logging in
// to hosts: ssh_key and password ones, and with local the built-in local
// one (jump hosts only carry other credentials).
func (a *API) loginCredentials(ctx context.Context, local bool) ([]schema.Credential, error) {
	all, err := a.store.Credentials(ctx)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(all, func(c schema.Credential) bool {
		return c.Kind == schema.CredJumpHost || (c.Kind == schema.CredLocal && !local)
	}), nil
}
