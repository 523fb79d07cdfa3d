package api

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"

	"github.com/labstack/echo/v4"
	"github.com/opsflow/opsflow/schema"
)

// listHostKeys lists the host keys recorded on first contact (hosts in
// the CMDB with an ssh_host_key show theirs on the CI).
func (a *API) listHostKeys(c echo.Context) error {
	limit, _ := strconv.Atoi(c.QueryParam("limit"))
	ks, err := a.store.HostKeys(c.Request().Context(), c.QueryParam("after"), limit)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"items": ks})
}

// forgetHostKey forgets the key pinned for a host, in any spelling of its
// address: the ones recorded on first contact (through any jump host) and
// the ssh_host_key of the host CI at that address. The next contact
// records the key the host then presents: how a re-installed host is
// trusted again. Admins only, audited.
func (a *API) forgetHostKey(c echo.Context) error {
	raw, err := url.PathUnescape(c.Param("address"))
	if err != nil {
		raw = c.Param("address")
	}
	out, err := a.forgetHostKeyAt(c, raw)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

// forgetHostKeyAt is forgetHostKey for an address however it came.
func (a *API) forgetHostKeyAt(c echo.Context, raw string) (map[string]any, error) {
	setAudit(c, "host_key.forget", "host:"+raw)
	addr, err := schema.CanonicalAddress(raw)
	if err != nil {
		return nil, &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: "invalid address",
			Fields: map[string]string{"address": err.Error()}}
	}
	setAudit(c, "host_key.forget", "host:"+addr)
	ctx := c.Request().Context()
	n, err := a.store.ForgetHostKeys(ctx, addr)
	if err != nil {
		return nil, err
	}
	out := map[string]any{"address": addr, "forgotten": n}
	byAddr, err := a.store.HostCIsByAddress(ctx)
	if err != nil {
		return nil, err
	}
	if id, ok := byAddr[addr]; ok {
		ci, err := a.store.CI(ctx, id)
		if err != nil {
			return nil, err
		}
		if k, _ := ci.Attributes["ssh_host_key"].(string); k != "" {
			patch := schema.CIPatch{Attributes: map[string]json.RawMessage{"ssh_host_key": json.RawMessage("null")}}
			if _, err := a.store.UpdateCI(ctx, ci.ID, ci.Version, patch, change(c)); err != nil {
				return nil, err
			}
			out["ci_id"], out["forgotten"] = ci.ID, n+1
		}
	}
	if out["forgotten"] == 0 {
		return nil, newError(http.StatusNotFound, CodeNotFound, "no host key is recorded for "+addr)
	}
	return out, nil
}
