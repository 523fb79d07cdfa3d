package api

import (
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/opsflow/opsflow/schema"
	"golang.org/x/crypto/ssh"
)

// adminRoutes: users, credentials and host keys, groups, approval
// policies, risk rules and chat identities. Who may do what mirrors the
// API routes; the handlers call the API's own validation and store code.
func (a *API) adminRoutes() []route {
	return []route{
		{Method: http.MethodGet, Path: "/users", Roles: admins, handler: a.usersPage},
		{Method: http.MethodPost, Path: "/users", Roles: admins, handler: a.userCreateForm},
		{Method: http.MethodPost, Path: "/users/:id/role", Roles: admins, handler: a.userRoleForm},
		{Method: http.MethodPost, Path: "/users/:id/disable", Roles: admins, handler: a.userDisabledForm(true)},
		{Method: http.MethodPost, Path: "/users/:id/enable", Roles: admins, handler: a.userDisabledForm(false)},
		{Method: http.MethodPost, Path: "/users/:id/password", Roles: admins, handler: a.userPasswordForm},

		{Method: http.MethodGet, Path: "/credentials", Roles: operators, handler: a.credentialsPage},
		{Method: http.MethodPost, Path: "/credentials", Roles: operators, handler: a.credentialCreateForm},
		{Method: http.MethodPost, Path: "/credentials/:id/scope", Roles: admins, handler: a.credentialScopeForm},
		{Method: http.MethodPost, Path: "/credentials/:id/delete", Roles: admins, handler: a.credentialDeleteForm},
		{Method: http.MethodPost, Path: "/credentials/host-keys/forget", Roles: admins, handler: a.hostKeyForgetForm},

		{Method: http.MethodGet, Path: "/groups", Roles: admins, handler: a.groupsPage},
		{Method: http.MethodPost, Path: "/groups", Roles: admins, handler: a.groupSaveForm},

		{Method: http.MethodGet, Path: "/policies", Roles: anyUser, handler: a.policiesPage},
		{Method: http.MethodPost, Path: "/policies", Roles: admins, handler: a.policySaveForm},
		{Method: http.MethodPost, Path: "/policies/:name/delete", Roles: admins, handler: a.policyDeleteForm},

		{Method: http.MethodGet, Path: "/risk-rules", Roles: anyUser, handler: a.riskRulesPage},
		{Method: http.MethodPost, Path: "/risk-rules", Roles: admins, handler: a.riskRuleCreateForm},
		{Method: http.MethodPost, Path: "/risk-rules/:id/delete", Roles: admins, handler: a.riskRuleDeleteForm},

		{Method: http.MethodGet, Path: "/chat-identities", Roles: admins, handler: a.chatIdentitiesPage},
		{Method: http.MethodPost, Path: "/chat-identities", Roles: admins, handler: a.chatIdentityLinkForm},
		{Method: http.MethodPost, Path: "/chat-identities/unlink", Roles: admins, handler: a.chatIdentityUnlinkForm},
	}
}

func isAdmin(u *schema.User) bool { return u != nil && u.Role == schema.RoleAdmin }

// --- users

func (a *API) usersPage(c echo.Context) error { return a.showUsers(c, http.StatusOK, form{}) }

func (a *API) showUsers(c echo.Context, status int, f form) error {
	us, err := a.store.Users(c.Request().Context())
	if err != nil {
		return err
	}
	if f.Values == nil {
		f.Values = map[string]string{"role": schema.RoleViewer}
	}
	return a.render(c, status, "users", struct {
		*page
		Users []schema.User
		Roles []string
		Form  form
	}{a.newPage(c, "Users", "users"), us, schema.Roles, f})
}

func (a *API) userCreateForm(c echo.Context) error {
	u, err := a.addUser(c, createUserRequest{Username: strings.TrimSpace(c.FormValue("username")), DisplayName: c.FormValue("display_name"),
		Email: strings.TrimSpace(c.FormValue("email")), Role: c.FormValue("role"), Password: c.FormValue("password")})
	if err != nil {
		f, status, ok := refusedForm(c, err, "create", "username", "display_name", "email", "role")
		if !ok {
			return err
		}
		return a.showUsers(c, status, f)
	}
	return redirectFlash(c, "/users", "User "+u.Username+" created.")
}

// userChange applies one change from a row of the users page; a refusal
// is shown above the list, naming the user and the field.
func (a *API) userChange(c echo.Context, req updateUserRequest, done string) error {
	id, err := a.userParam(c)
	if err != nil {
		return err
	}
	u, err := a.changeUser(c, id, req)
	if err != nil {
		f, status, ok := refusedForm(c, err, "user-"+strconv.FormatInt(id, 10))
		if !ok {
			return err
		}
		return a.showUsers(c, status, f)
	}
	return redirectFlash(c, "/users", "User "+u.Username+": "+done)
}

func (a *API) userRoleForm(c echo.Context) error {
	role := c.FormValue("role")
	return a.userChange(c, updateUserRequest{Role: &role}, "role is now "+role+".")
}

func (a *API) userDisabledForm(disable bool) echo.HandlerFunc {
	return func(c echo.Context) error {
		if disable {
			if ok, err := a.askFirst(c, "Disable this user? Their sessions end and their API tokens are revoked.", "Disable user", "/users"); !ok {
				return err
			}
			return a.userChange(c, updateUserRequest{Disabled: &disable}, "disabled; their sessions ended and tokens were revoked.")
		}
		return a.userChange(c, updateUserRequest{Disabled: &disable}, "enabled.")
	}
}

func (a *API) userPasswordForm(c echo.Context) error {
	pw := c.FormValue("password")
	return a.userChange(c, updateUserRequest{Password: &pw}, "password reset; their sessions ended and tokens were revoked.")
}

// --- credentials and host keys

type credentialRow struct {
	schema.Credential
	JumpHost string
}

type hostKeyRow struct {
	schema.HostKey
	Type, Fingerprint, Via string
}

// credentialKinds are the kinds a form may create (local is built in).
var credentialKinds = []string{schema.CredSSHKey, schema.CredPassword, schema.CredJumpHost, schema.CredHTTP}

func (a *API) credentialsPage(c echo.Context) error {
	return a.showCredentials(c, http.StatusOK, form{})
}

func (a *API) showCredentials(c echo.Context, status int, f form) error {
	ctx := c.Request().Context()
	cs, err := a.store.Credentials(ctx)
	if err != nil {
		return err
	}
	names := map[int64]string{}
	var jumps []string
	for _, cr := range cs {
		names[cr.ID] = cr.Name
		if cr.Kind == schema.CredJumpHost {
			jumps = append(jumps, cr.Name)
		}
	}
	rows := make([]credentialRow, len(cs))
	for i, cr := range cs {
		rows[i] = credentialRow{Credential: cr}
		if cr.JumpHostID != nil {
			rows[i].JumpHost = names[*cr.JumpHostID]
		}
	}
	ks, err := a.store.HostKeys(ctx, "", 500)
	if err != nil {
		return err
	}
	keys := make([]hostKeyRow, len(ks))
	for i, k := range ks {
		keys[i] = hostKeyRow{HostKey: k, Via: "direct"}
		if pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k.Key)); err == nil {
			keys[i].Type, keys[i].Fingerprint = pk.Type(), ssh.FingerprintSHA256(pk)
		}
		if k.Via != 0 {
			keys[i].Via = "via " + names[k.Via]
		}
	}
	if f.Values == nil {
		f.Values = map[string]string{"kind": schema.CredSSHKey}
	}
	p := a.newPage(c, "Credentials", "credentials")
	return a.render(c, status, "credentials", struct {
		*page
		Credentials []credentialRow
		HostKeys    []hostKeyRow
		Kinds       []string
		JumpHosts   []string
		IsAdmin     bool
		Form        form
	}{p, rows, keys, credentialKinds, jumps, isAdmin(p.User), f})
}

// maxKeyFile bounds an uploaded private key file.
const maxKeyFile = 64 << 10

// credentialCreateForm takes the key pasted or as an uploaded file. A
// refused form comes back with every field but the secrets.
func (a *API) credentialCreateForm(c echo.Context) error {
	req := credentialRequest{Name: strings.TrimSpace(c.FormValue("name")), Kind: c.FormValue("kind"), Username: strings.TrimSpace(c.FormValue("username")),
		PrivateKey: strings.ReplaceAll(c.FormValue("private_key"), "\r\n", "\n"), Passphrase: c.FormValue("passphrase"), Password: c.FormValue("password"),
		Address: strings.TrimSpace(c.FormValue("address")), HostKey: strings.TrimSpace(c.FormValue("host_key")), JumpHost: c.FormValue("jump_host"),
		Description: c.FormValue("description"), Scope: strings.TrimSpace(c.FormValue("scope")), AllowUnlistedHosts: c.FormValue("allow_unlisted_hosts") == "on"}
	err := func() error {
		fh, err := c.FormFile("key_file")
		if errors.Is(err, http.ErrMissingFile) || errors.Is(err, http.ErrNotMultipart) {
			return nil
		} else if err != nil {
			return &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: "invalid key_file", Fields: map[string]string{"key_file": "could not be read"}}
		}
		if fh.Size > maxKeyFile {
			return &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: "invalid key_file", Fields: map[string]string{"key_file": "larger than 64 KiB: not a private key"}}
		}
		if fh.Size == 0 {
			return nil
		}
		if req.PrivateKey != "" {
			return &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: "invalid key_file", Fields: map[string]string{"key_file": "give the key as a file or pasted, not both"}}
		}
		fd, err := fh.Open()
		if err != nil {
			return err
		}
		defer fd.Close()
		b, err := io.ReadAll(io.LimitReader(fd, maxKeyFile))
		if err != nil {
			return err
		}
		req.PrivateKey = string(b)
		return nil
	}()
	if err == nil {
		_, err = a.addCredential(c, req)
	}
	if err != nil {
		f, status, ok := refusedForm(c, err, "create", "name", "kind", "username", "address", "host_key", "jump_host", "description", "scope", "allow_unlisted_hosts")
		if !ok {
			return err
		}
		return a.showCredentials(c, status, f)
	}
	return redirectFlash(c, "/credentials", "Credential "+req.Name+" saved; its secret is sealed and never shown again.")
}

func (a *API) credentialScopeForm(c echo.Context) error {
	id, err := idParam(c, "id")
	if err != nil {
		return err
	}
	scope, allow := strings.TrimSpace(c.FormValue("scope")), c.FormValue("allow_unlisted_hosts") == "on"
	cr, err := a.rescopeCredential(c, id, credentialScopeRequest{Scope: &scope, AllowUnlistedHosts: &allow})
	if err != nil {
		f, status, ok := refusedForm(c, err, "cred-"+strconv.FormatInt(id, 10), "scope", "allow_unlisted_hosts")
		if !ok {
			return err
		}
		return a.showCredentials(c, status, f)
	}
	return redirectFlash(c, "/credentials", "Where "+cr.Name+" may be used is saved.")
}

func (a *API) credentialDeleteForm(c echo.Context) error {
	id, err := idParam(c, "id")
	if err != nil {
		return err
	}
	cr, err := a.store.Credential(c.Request().Context(), id)
	if err != nil {
		return err
	}
	if ok, err := a.askFirst(c, "Delete credential "+cr.Name+"? Jobs and schedules can no longer use it.", "Delete credential", "/credentials"); !ok {
		return err
	}
	if err := a.removeCredential(c, id); err != nil {
		return err
	}
	return redirectFlash(c, "/credentials", "Credential "+cr.Name+" deleted.")
}

func (a *API) hostKeyForgetForm(c echo.Context) error {
	addr := strings.TrimSpace(c.FormValue("address"))
	if ok, err := a.askFirst(c, "Forget the host key of "+addr+"? The key the host presents next is trusted.", "Forget host key", "/credentials"); !ok {
		return err
	}
	out, err := a.forgetHostKeyAt(c, addr)
	if err != nil {
		return err
	}
	return redirectFlash(c, "/credentials", "Host key of "+out["address"].(string)+" forgotten.")
}

// --- groups

func (a *API) groupsPage(c echo.Context) error { return a.showGroups(c, http.StatusOK, form{}) }

func (a *API) showGroups(c echo.Context, status int, f form) error {
	gs, err := a.store.Groups(c.Request().Context())
	if err != nil {
		return err
	}
	type group struct {
		Name    string
		Members string
	}
	var rows []group
	for name, ms := range gs {
		rows = append(rows, group{name, strings.Join(ms, ", ")})
	}
	slices.SortFunc(rows, func(x, y group) int { return strings.Compare(x.Name, y.Name) })
	return a.render(c, status, "groups", struct {
		*page
		Groups []group
		Form   form
	}{a.newPage(c, "Groups", "groups"), rows, f})
}

// splitList reads a list typed as words separated by commas, spaces or
// newlines.
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' })
}

func (a *API) groupSaveForm(c echo.Context) error {
	name, members := strings.TrimSpace(c.FormValue("name")), splitList(c.FormValue("members"))
	if len(members) == 0 {
		if ok, err := a.askFirst(c, "Remove group "+name+"? A group without members is removed; policies naming it lose those approvers.", "Remove group", "/groups"); !ok {
			return err
		}
	}
	if err := a.setGroup(c, name, members); err != nil {
		e := toError(err)
		// The store names members by index; the form has one field.
		for k, v := range e.Fields {
			if strings.HasPrefix(k, "members[") {
				if i, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(k, "members["), "]")); err == nil && i < len(members) {
					e.Fields["members"] = strconv.Quote(members[i]) + ": " + v
				}
			}
		}
		f, status, ok := refusedForm(c, e, "group-"+c.FormValue("form"), "name", "members")
		if !ok {
			return err
		}
		return a.showGroups(c, status, f)
	}
	if len(members) == 0 {
		return redirectFlash(c, "/groups", "Group "+name+" removed.")
	}
	return redirectFlash(c, "/groups", "Group "+name+" saved.")
}

// --- risk rules

func (a *API) riskRulesPage(c echo.Context) error { return a.showRiskRules(c, http.StatusOK, form{}) }

func (a *API) showRiskRules(c echo.Context, status int, f form) error {
	rs, err := a.store.RiskRules(c.Request().Context())
	if err != nil {
		return err
	}
	p := a.newPage(c, "Risk rules", "risk-rules")
	return a.render(c, status, "risk_rules", struct {
		*page
		Rules   []schema.RiskRule
		IsAdmin bool
		Form    form
	}{p, rs, isAdmin(p.User), f})
}

func (a *API) riskRuleCreateForm(c echo.Context) error {
	r, err := a.addRiskRule(c, riskRuleRequest{Pattern: c.FormValue("pattern"), Action: c.FormValue("action"), Description: c.FormValue("description")})
	if err != nil {
		f, status, ok := refusedForm(c, err, "create", "pattern", "action", "description")
		if !ok {
			return err
		}
		return a.showRiskRules(c, status, f)
	}
	return redirectFlash(c, "/risk-rules", "Rule "+r.Pattern+" added.")
}

func (a *API) riskRuleDeleteForm(c echo.Context) error {
	id, err := idParam(c, "id")
	if err != nil {
		return err
	}
	if ok, err := a.askFirst(c, "Delete this risk rule? Scripts it flagged are no longer flagged by it.", "Delete rule", "/risk-rules"); !ok {
		return err
	}
	if err := a.removeRiskRule(c, id); err != nil {
		return err
	}
	return redirectFlash(c, "/risk-rules", "Rule deleted.")
}

// --- chat identities

func (a *API) chatIdentitiesPage(c echo.Context) error {
	return a.showChatIdentities(c, http.StatusOK, form{})
}

func (a *API) showChatIdentities(c echo.Context, status int, f form) error {
	cis, err := a.store.ChatIdentities(c.Request().Context(), "")
	if err != nil {
		return err
	}
	us, err := a.store.Users(c.Request().Context())
	if err != nil {
		return err
	}
	return a.render(c, status, "chat_identities", struct {
		*page
		Identities []schema.ChatIdentity
		Users      []schema.User
		Form       form
	}{a.newPage(c, "Chat identities", "chat-identities"), cis, us, f})
}

func (a *API) chatIdentityLinkForm(c echo.Context) error {
	ci, err := a.linkChat(c, chatIdentityRequest{Provider: c.FormValue("provider"), ExternalID: strings.TrimSpace(c.FormValue("external_id")), Username: c.FormValue("username")})
	if err != nil {
		f, status, ok := refusedForm(c, err, "link", "provider", "external_id", "username")
		if !ok {
			return err
		}
		return a.showChatIdentities(c, status, f)
	}
	return redirectFlash(c, "/chat-identities", ci.Provider+" account "+ci.ExternalID+" linked to "+ci.Username+".")
}

func (a *API) chatIdentityUnlinkForm(c echo.Context) error {
	provider, id := c.FormValue("provider"), c.FormValue("external_id")
	if err := a.unlinkChat(c, provider, id); err != nil {
		return err
	}
	return redirectFlash(c, "/chat-identities", provider+" account "+id+" unlinked.")
}
