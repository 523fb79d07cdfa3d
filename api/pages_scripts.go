package api

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/opsflow/opsflow/schema"
)

func (a *API) scriptsPage(c echo.Context) error {
	ss, err := a.store.Scripts(c.Request().Context(), c.QueryParam("tag"))
	if err != nil {
		return err
	}
	p := a.newPage(c, "Scripts", "jobs")
	return a.render(c, http.StatusOK, "scripts", struct {
		*page
		Scripts []schema.Script
		CanEdit bool
	}{p, ss, canOperate(p.User)})
}

type scriptEditPage struct {
	*page
	Script                                        *schema.Script
	Name, Interpreter, Content, Parameters, Error string
	Interpreters                                  []string
}

func (a *API) scriptNewPage(c echo.Context) error {
	return a.render(c, http.StatusOK, "script_edit", scriptEditPage{page: a.newPage(c, "New script", "jobs"), Interpreter: "bash", Parameters: "[]", Interpreters: schema.Interpreters})
}

func (a *API) scriptEditPage(c echo.Context) error {
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
	params, _ := json.MarshalIndent(v.Parameters, "", "  ")
	return a.render(c, http.StatusOK, "script_edit", scriptEditPage{page: a.newPage(c, "New version", "jobs"), Script: sc,
		Interpreter: v.Interpreter, Content: v.Content, Parameters: string(params), Interpreters: schema.Interpreters})
}

func scriptInputFromForm(c echo.Context) (schema.ScriptInput, error) {
	in := schema.ScriptInput{Name: strings.TrimSpace(c.FormValue("name")), Description: c.FormValue("description"),
		Content: strings.ReplaceAll(c.FormValue("content"), "\r\n", "\n"), Interpreter: c.FormValue("interpreter"), Comment: c.FormValue("comment")}
	for _, t := range strings.Split(c.FormValue("tags"), ",") {
		if t = strings.TrimSpace(t); t != "" {
			in.Tags = append(in.Tags, t)
		}
	}
	if ps := strings.TrimSpace(c.FormValue("parameters")); ps != "" {
		if err := decodeBody([]byte(ps), &in.Parameters); err != nil {
			return in, &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: "invalid parameters",
				Fields: map[string]string{"parameters": "must be a JSON list of parameter definitions"}}
		}
	}
	return in, nil
}

func (a *API) scriptCreateForm(c echo.Context) error {
	in, err := scriptInputFromForm(c)
	setAudit(c, "script.create", "script:"+in.Name)
	if err == nil {
		var sc *schema.Script
		sc, _, err = a.store.CreateScript(c.Request().Context(), in, userOf(c).Username)
		if err == nil {
			return c.Redirect(http.StatusSeeOther, "/scripts/"+strconv.FormatInt(sc.ID, 10))
		}
	}
	return a.render(c, toError(err).Status, "script_edit", scriptEditPage{page: a.newPage(c, "New script", "jobs"), Name: in.Name,
		Interpreter: in.Interpreter, Content: in.Content, Parameters: c.FormValue("parameters"), Interpreters: schema.Interpreters, Error: formError(err)})
}

func (a *API) scriptVersionForm(c echo.Context) error {
	id, err := idParam(c, "id")
	if err != nil {
		return err
	}
	sc, err := a.store.Script(c.Request().Context(), id)
	if err != nil {
		return err
	}
	in, err := scriptInputFromForm(c)
	setAudit(c, "script.version.create", "script:"+strconv.FormatInt(id, 10))
	if err == nil {
		if _, err = a.store.AddScriptVersion(c.Request().Context(), id, in, userOf(c).Username); err == nil {
			return c.Redirect(http.StatusSeeOther, "/scripts/"+strconv.FormatInt(id, 10))
		}
	}
	return a.render(c, toError(err).Status, "script_edit", scriptEditPage{page: a.newPage(c, "New version", "jobs"), Script: sc,
		Interpreter: in.Interpreter, Content: in.Content, Parameters: c.FormValue("parameters"), Interpreters: schema.Interpreters, Error: formError(err)})
}

type diffLine struct{ Kind, Prefix, Text string }

// lineDiff is a longest-common-subsequence diff of two texts by line.
func lineDiff(a, b string) []diffLine {
	x, y := strings.Split(a, "\n"), strings.Split(b, "\n")
	n, m := len(x), len(y)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out []diffLine
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && x[i] == y[j]:
			out = append(out, diffLine{"same", " ", x[i]})
			i, j = i+1, j+1
		case j < m && (i == n || lcs[i][j+1] >= lcs[i+1][j]):
			out = append(out, diffLine{"add", "+", y[j]})
			j++
		default:
			out = append(out, diffLine{"del", "-", x[i]})
			i++
		}
	}
	return out
}

func (a *API) scriptPage(c echo.Context) error {
	id, err := idParam(c, "id")
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	sc, err := a.store.Script(ctx, id)
	if err != nil {
		return err
	}
	vs, err := a.store.ScriptVersions(ctx, id)
	if err != nil {
		return err
	}
	pick := func(q string, def int64) *schema.ScriptVersion {
		n, err := strconv.ParseInt(q, 10, 64)
		if err != nil {
			n = def
		}
		for i := range vs {
			if vs[i].Version == n {
				return &vs[i]
			}
		}
		return nil
	}
	cur := pick(c.QueryParam("v"), sc.LatestVersion)
	if cur == nil {
		return newError(http.StatusNotFound, CodeNotFound, "no such version")
	}
	var d []diffLine
	from, to := pick(c.QueryParam("from"), 0), pick(c.QueryParam("to"), 0)
	if from != nil && to != nil {
		d = lineDiff(from.Content, to.Content)
	}
	var fromN, toN int64
	if from != nil {
		fromN = from.Version
	} else if sc.LatestVersion > 1 {
		fromN = sc.LatestVersion - 1
	}
	if to != nil {
		toN = to.Version
	} else {
		toN = sc.LatestVersion
	}
	p := a.newPage(c, sc.Name, "jobs")
	return a.render(c, http.StatusOK, "script", struct {
		*page
		Script   *schema.Script
		Version  *schema.ScriptVersion
		Versions []schema.ScriptVersion
		Diff     []diffLine
		From, To int64
		CanEdit  bool
	}{p, sc, cur, vs, d, fromN, toN, canOperate(p.User)})
}
