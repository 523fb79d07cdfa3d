package api

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/opsflow/opsflow/schema"
)

// levelRow is one level of the policy form, as typed.
type levelRow struct {
	Name, Users, Groups, Rule, Quorum, Timeout, OnTimeout, EscUsers, EscGroups string
	Roles, EscRoles                                                            map[string]bool
	Errors                                                                     map[string]string
}

// policyForm is the policy editor: without a script it has a fixed
// number of level rows; "Add level" posts the form back with one more.
type policyForm struct {
	Original, Name, Description, Targets string
	ScriptRisk                           bool
	Channels                             map[string]bool
	Levels                               []levelRow
	Errors                               map[string]string
	Error                                string
}

func blankLevel() levelRow { return levelRow{Rule: schema.RuleAny} }

func (a *API) policiesPage(c echo.Context) error {
	f := policyForm{Levels: []levelRow{blankLevel()}}
	if name := c.QueryParam("edit"); name != "" && isAdmin(userOf(c)) {
		p, err := a.store.ApprovalPolicyByName(c.Request().Context(), name)
		if err != nil {
			return err
		}
		f = policyFormOf(p)
	}
	return a.showPolicies(c, http.StatusOK, f)
}

func (a *API) showPolicies(c echo.Context, status int, f policyForm) error {
	ps, err := a.store.ApprovalPolicies(c.Request().Context())
	if err != nil {
		return err
	}
	p := a.newPage(c, "Approval policies", "policies")
	return a.render(c, status, "policies", struct {
		*page
		Policies   []schema.ApprovalPolicy
		IsAdmin    bool
		Form       policyForm
		Roles      []string
		Rules      []string
		OnTimeouts []string
		Channels   []string
	}{p, ps, isAdmin(p.User), f, schema.Roles, []string{schema.RuleAny, schema.RuleAll, schema.RuleQuorum},
		[]string{schema.OnTimeoutExpire, schema.OnTimeoutReject, schema.OnTimeoutApprove, schema.OnTimeoutEscalate}, schema.ApprovalChannels})
}

func setOf(vs []string) map[string]bool {
	m := map[string]bool{}
	for _, v := range vs {
		m[v] = true
	}
	return m
}

func keysOf(m map[string]bool, order []string) []string {
	var out []string
	for _, k := range order {
		if m[k] {
			out = append(out, k)
		}
	}
	return out
}

func policyFormOf(p *schema.ApprovalPolicy) policyForm {
	f := policyForm{Original: p.Name, Name: p.Name, Description: p.Description, Channels: setOf(p.Spec.Channels)}
	if m := p.Spec.Match; m != nil {
		f.Targets, f.ScriptRisk = m.Targets, m.ScriptRisk != ""
	}
	for _, lv := range p.Spec.Levels {
		r := levelRow{Name: lv.Name, Users: strings.Join(lv.Users, ", "), Groups: strings.Join(lv.Groups, ", "), Rule: lv.Rule,
			Timeout: lv.Timeout, OnTimeout: lv.OnTimeout, EscUsers: strings.Join(lv.EscalateTo.Users, ", "),
			EscGroups: strings.Join(lv.EscalateTo.Groups, ", "), Roles: setOf(lv.Roles), EscRoles: setOf(lv.EscalateTo.Roles)}
		if lv.Quorum != 0 {
			r.Quorum = strconv.Itoa(lv.Quorum)
		}
		f.Levels = append(f.Levels, r)
	}
	return f
}

// policyFormFrom reads the posted editor; blank levels after the first
// are dropped.
func policyFormFrom(c echo.Context) policyForm {
	vs, _ := c.FormParams()
	f := policyForm{Original: vs.Get("original"), Name: strings.TrimSpace(vs.Get("name")), Description: vs.Get("description"),
		Targets: strings.TrimSpace(vs.Get("targets")), ScriptRisk: vs.Get("script_risk") == "on", Channels: setOf(vs["channels"])}
	n, _ := strconv.Atoi(vs.Get("levels"))
	n = min(max(n, 1), schema.MaxApprovalLevels)
	for i := range n {
		get := func(k string) string { return strings.TrimSpace(vs.Get(fmt.Sprintf("l%d_%s", i, k))) }
		r := levelRow{Name: get("name"), Users: get("users"), Groups: get("groups"), Rule: get("rule"), Quorum: get("quorum"),
			Timeout: get("timeout"), OnTimeout: get("on_timeout"), EscUsers: get("esc_users"), EscGroups: get("esc_groups"),
			Roles: setOf(vs[fmt.Sprintf("l%d_roles", i)]), EscRoles: setOf(vs[fmt.Sprintf("l%d_esc_roles", i)])}
		f.Levels = append(f.Levels, r)
	}
	for len(f.Levels) > 1 {
		l := f.Levels[len(f.Levels)-1]
		if l.Name != "" || l.Users != "" || l.Groups != "" || len(l.Roles) > 0 {
			break
		}
		f.Levels = f.Levels[:len(f.Levels)-1]
	}
	return f
}

// spec turns the form into the API's request; a quorum that is no number
// is refused here, naming its level.
func (f *policyForm) request() (policyRequest, error) {
	req := policyRequest{Name: f.Name, Description: f.Description, Spec: schema.ApprovalPolicySpec{Channels: keysOf(f.Channels, schema.ApprovalChannels)}}
	if f.Targets != "" || f.ScriptRisk {
		req.Spec.Match = &schema.ApprovalMatch{Targets: f.Targets}
		if f.ScriptRisk {
			req.Spec.Match.ScriptRisk = schema.RiskApproval
		}
	}
	bad := fieldErrors{}
	for i, r := range f.Levels {
		lv := schema.ApprovalLevel{Name: r.Name, ApproverSet: schema.ApproverSet{Users: splitList(r.Users), Roles: keysOf(r.Roles, schema.Roles), Groups: splitList(r.Groups)},
			Rule: r.Rule, Timeout: r.Timeout, OnTimeout: r.OnTimeout,
			EscalateTo: schema.ApproverSet{Users: splitList(r.EscUsers), Roles: keysOf(r.EscRoles, schema.Roles), Groups: splitList(r.EscGroups)}}
		if r.Quorum != "" {
			q, err := strconv.Atoi(r.Quorum)
			if err != nil {
				bad.add(fmt.Sprintf("spec.levels[%d].quorum", i), "must be a whole number")
			}
			lv.Quorum = q
		}
		req.Spec.Levels = append(req.Spec.Levels, lv)
	}
	return req, bad.err()
}

// refused puts the API's field errors beside the editor's fields.
func (f *policyForm) refused(err error) {
	e := toError(err)
	f.Error, f.Errors = e.Message, map[string]string{}
	for k, v := range e.Fields {
		var i int
		var field string
		if _, serr := fmt.Sscanf(strings.NewReplacer("[", " ", "].", " ").Replace(strings.TrimPrefix(k, "spec.")), "levels %d %s", &i, &field); serr == nil && i < len(f.Levels) {
			if f.Levels[i].Errors == nil {
				f.Levels[i].Errors = map[string]string{}
			}
			f.Levels[i].Errors[field] = v
			continue
		}
		switch {
		case strings.HasPrefix(k, "spec.match"):
			f.Errors["targets"] = v
		case strings.HasPrefix(k, "spec.channels"):
			f.Errors["channels"] = v
		case k == "name":
			f.Errors["name"] = v
		default:
			f.Errors["levels"] = v
		}
	}
}

func (a *API) policySaveForm(c echo.Context) error {
	f := policyFormFrom(c)
	switch c.FormValue("op") {
	case "add_level":
		if len(f.Levels) < schema.MaxApprovalLevels {
			f.Levels = append(f.Levels, blankLevel())
		}
		return a.showPolicies(c, http.StatusOK, f)
	case "remove_level":
		if len(f.Levels) > 1 {
			f.Levels = f.Levels[:len(f.Levels)-1]
		}
		return a.showPolicies(c, http.StatusOK, f)
	}
	req, err := f.request()
	if err == nil {
		_, _, err = a.savePolicy(c, req, f.Original)
	}
	if err != nil {
		if e := toError(err); e.Status >= 500 {
			return err
		} else {
			f.refused(e)
			return a.showPolicies(c, e.Status, f)
		}
	}
	return redirectFlash(c, "/policies", "Policy "+f.Name+" saved.")
}

func (a *API) policyDeleteForm(c echo.Context) error {
	name := c.Param("name")
	if _, err := a.store.ApprovalPolicyByName(c.Request().Context(), name); err != nil {
		return err
	}
	if ok, err := a.askFirst(c, "Delete policy "+name+"? Jobs it gated run without its approval; open tickets keep their copy.", "Delete policy", "/policies"); !ok {
		return err
	}
	if err := a.removePolicy(c, name); errors.Is(err, schema.ErrNotFound) {
		return newError(http.StatusNotFound, CodeNotFound, "no policy "+url.PathEscape(name))
	} else if err != nil {
		return err
	}
	return redirectFlash(c, "/policies", "Policy "+name+" deleted.")
}
