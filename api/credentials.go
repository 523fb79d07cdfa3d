package api

import (
	"net/http"
	"regexp"
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
	Description string `json:"description"`
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
func (a *API) createCredential(c echo.Context) error {
	var req credentialRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	setAudit(c, "credential.create", "credential:"+req.Name)
	bad := fieldErrors{}
	if !credNameRE.MatchString(req.Name) {
		bad.add("name", "must be 1-100 letters, digits, '.', '_' or '-'")
	}
	if req.Username == "" || strings.ContainsAny(req.Username, " \t\r\n@:") {
		bad.add("username", "required, without spaces, '@' or ':'")
	}
	cr := &schema.Credential{Name: req.Name, Kind: req.Kind, Username: req.Username, Description: req.Description, CreatedBy: userOf(c).Username}
	var secretValue string
	switch req.Kind {
	case schema.CredSSHKey:
		if req.Password != "" {
			bad.add("password", "an ssh_key credential takes private_key (and passphrase), not password")
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
			bad.add("password", "required for a password credential")
		}
		if req.PrivateKey != "" || req.Passphrase != "" {
			bad.add("private_key", "a password credential takes password only")
		}
		secretValue = req.Password
	default:
		bad.add("kind", "must be ssh_key or password")
	}
	if err := bad.err(); err != nil {
		return err
	}
	if a.secrets == nil {
		return newError(http.StatusServiceUnavailable, CodeUnavailable, "no secret key configured (OPSFLOW_SECRET_KEY); credentials cannot be stored")
	}
	cr.Secret = a.secrets.Seal([]byte(secretValue), cr.SealContext())
	if req.Passphrase != "" {
		cr.Passphrase = a.secrets.Seal([]byte(req.Passphrase), cr.SealContext())
	}
	if err := a.store.CreateCredential(c.Request().Context(), cr); err != nil {
		if isConflict(err) {
			return &Error{Status: http.StatusConflict, Code: CodeConflict, Message: "credential name taken", Fields: map[string]string{"name": "already exists"}}
		}
		return err
	}
	setAudit(c, "credential.create", "credential:"+strconv.FormatInt(cr.ID, 10))
	return c.JSON(http.StatusCreated, cr)
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
	setAudit(c, "credential.delete", "credential:"+strconv.FormatInt(id, 10))
	if err := a.store.DeleteCredential(c.Request().Context(), id); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
