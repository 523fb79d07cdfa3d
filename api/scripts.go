package api

import (
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"
	"github.com/opsflow/opsflow/schema"
)

type scriptView struct {
	*schema.Script
	Latest *schema.ScriptVersion `json:"latest"`
}

func (a *API) listScripts(c echo.Context) error {
	ss, err := a.store.Scripts(c.Request().Context(), c.QueryParam("tag"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"items": ss})
}

func (a *API) createScript(c echo.Context) error {
	var in schema.ScriptInput
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	setAudit(c, "script.create", "script:"+in.Name)
	sc, v, err := a.store.CreateScript(c.Request().Context(), in, userOf(c).Username)
	if err != nil {
		return err
	}
	setAudit(c, "script.create", "script:"+strconv.FormatInt(sc.ID, 10))
	return c.JSON(http.StatusCreated, scriptView{sc, v})
}

func (a *API) getScript(c echo.Context) error {
	id, err := idParam(c, "id")
	if err != nil {
		return err
	}
	sc, err := a.store.Script(c.Request().Context(), id)
	if err != nil {
		return err
	}
	v, err := a.store.ScriptVersion(c.Request().Context(), id, sc.LatestVersion)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, scriptView{sc, v})
}

func (a *API) listScriptVersions(c echo.Context) error {
	id, err := idParam(c, "id")
	if err != nil {
		return err
	}
	if _, err := a.store.Script(c.Request().Context(), id); err != nil {
		return err
	}
	vs, err := a.store.ScriptVersions(c.Request().Context(), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"items": vs})
}

func (a *API) getScriptVersion(c echo.Context) error {
	id, err := idParam(c, "id")
	if err != nil {
		return err
	}
	ver, err := idParam(c, "version")
	if err != nil {
		return err
	}
	v, err := a.store.ScriptVersion(c.Request().Context(), id, ver)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

// createScriptVersion adds the next immutable version. The request carries
// the whole script (content, interpreter, parameters), not a patch.
func (a *API) createScriptVersion(c echo.Context) error {
	id, err := idParam(c, "id")
	if err != nil {
		return err
	}
	var in schema.ScriptInput
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	setAudit(c, "script.version.create", "script:"+strconv.FormatInt(id, 10))
	v, err := a.store.AddScriptVersion(c.Request().Context(), id, in, userOf(c).Username)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, v)
}

func (a *API) listRiskRules(c echo.Context) error {
	rs, err := a.store.RiskRules(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"items": rs})
}

func (a *API) createRiskRule(c echo.Context) error {
	var req riskRuleRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	r, err := a.addRiskRule(c, req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, r)
}

func (a *API) addRiskRule(c echo.Context, req riskRuleRequest) (*schema.RiskRule, error) {
	setAudit(c, "risk_rule.create", "risk_rule:"+req.Pattern)
	r := &schema.RiskRule{Pattern: req.Pattern, Action: req.Action, Description: req.Description, CreatedBy: userOf(c).Username}
	if err := a.store.CreateRiskRule(c.Request().Context(), r); err != nil {
		if isConflict(err) {
			return nil, &Error{Status: http.StatusConflict, Code: CodeConflict, Message: "rule exists", Fields: map[string]string{"pattern": "already a rule"}}
		}
		return nil, err
	}
	return r, nil
}

func (a *API) deleteRiskRule(c echo.Context) error {
	id, err := idParam(c, "id")
	if err != nil {
		return err
	}
	if err := a.removeRiskRule(c, id); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (a *API) removeRiskRule(c echo.Context, id int64) error {
	setAudit(c, "risk_rule.delete", "risk_rule:"+strconv.FormatInt(id, 10))
	return a.store.DeleteRiskRule(c.Request().Context(), id)
}

type riskRuleRequest struct {
	Pattern     string `json:"pattern"`
	Action      string `json:"action"`
	Description string `json:"description"`
}
