package api

import (
	"fmt"
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

// paramRow is one row of the script form's parameter editor, as typed.
type paramRow struct {
	Name, Type, Description, Default, Regex, Values, Min, Max string
	Required                                                  bool
	Errors                                                    map[string]string
}

// maxParamRows bounds the rows one form may post.
const maxParamRows = 100

type scriptEditPage struct {
	*page
	Script                                                 *schema.Script
	Name, Description, Tags, Comment, Interpreter, Content string
	Params                                                 []paramRow
	Errors                                                 map[string]string
	Interpreters, ParamTypes                               []string
}

var paramTypes = []string{schema.ParamString, schema.ParamInt, schema.ParamBool, schema.ParamEnum, schema.ParamSecret}

func (a *API) scriptNewPage(c echo.Context) error {
	return a.render(c, http.StatusOK, "script_edit", scriptEditPage{page: a.newPage(c, "New script", "jobs"), Interpreter: "bash",
		Params: []paramRow{{Type: schema.ParamString}}, Interpreters: schema.Interpreters, ParamTypes: paramTypes})
}

// scriptParam is the script named by the :id of the path.
func (a *API) scriptParam(c echo.Context) (*schema.Script, error) {
	id, err := idParam(c, "id")
	if err != nil {
		return nil, err
	}
	return a.store.Script(c.Request().Context(), id)
}

func (a *API) scriptEditPage(c echo.Context) error {
	sc, err := a.scriptParam(c)
	if err != nil {
		return err
	}
	v, err := a.store.ScriptVersion(c.Request().Context(), sc.ID, sc.LatestVersion)
	if err != nil {
		return err
	}
	rows := make([]paramRow, 0, len(v.Parameters)+1)
	for _, p := range v.Parameters {
		rows = append(rows, rowOf(p))
	}
	rows = append(rows, paramRow{Type: schema.ParamString})
	return a.render(c, http.StatusOK, "script_edit", scriptEditPage{page: a.newPage(c, "New version", "jobs"), Script: sc,
		Interpreter: v.Interpreter, Content: v.Content, Params: rows, Interpreters: schema.Interpreters, ParamTypes: paramTypes})
}

func rowOf(p schema.ParamDef) paramRow {
	r := paramRow{Name: p.Name, Type: p.Type, Description: p.Description, Regex: p.Regex, Values: strings.Join(p.Values, ","), Required: p.Required}
	if p.Default != nil {
		r.Default = fmt.Sprint(p.Default)
	}
	if p.Min != nil {
		r.Min = strconv.FormatFloat(*p.Min, 'g', -1, 64)
	}
	if p.Max != nil {
		r.Max = strconv.FormatFloat(*p.Max, 'g', -1, 64)
	}
	return r
}

// scriptForm reads the script form: the input it defines, the form as
// typed (to render again), and the form rows of the parameters kept (a
// row without a name is left out).
func scriptForm(c echo.Context) (schema.ScriptInput, scriptEditPage, []int, error) {
	in := schema.ScriptInput{Name: strings.TrimSpace(c.FormValue("name")), Description: c.FormValue("description"),
		Content: strings.ReplaceAll(c.FormValue("content"), "\r\n", "\n"), Interpreter: c.FormValue("interpreter"), Comment: c.FormValue("comment"),
		Parameters: []schema.ParamDef{}}
	pg := scriptEditPage{Name: in.Name, Description: in.Description, Tags: c.FormValue("tags"), Comment: in.Comment, Interpreter: in.Interpreter,
		Content: in.Content, Errors: map[string]string{}, Interpreters: schema.Interpreters, ParamTypes: paramTypes}
	for _, t := range strings.Split(pg.Tags, ",") {
		if t = strings.TrimSpace(t); t != "" {
			in.Tags = append(in.Tags, t)
		}
	}
	n, _ := strconv.Atoi(c.FormValue("param_rows"))
	n = min(max(n, 0), maxParamRows)
	var kept []int
	bad := fieldErrors{}
	for i := range n {
		f := func(k string) string { return strings.TrimSpace(c.FormValue(fmt.Sprintf("param.%d.%s", i, k))) }
		r := paramRow{Name: f("name"), Type: f("type"), Description: f("description"), Default: f("default"), Regex: f("regex"),
			Values: f("values"), Min: f("min"), Max: f("max"), Required: f("required") == "true", Errors: map[string]string{}}
		pg.Params = append(pg.Params, r)
		if r.Name == "" {
			continue
		}
		d := schema.ParamDef{Name: r.Name, Type: r.Type, Description: r.Description, Required: r.Required, Regex: r.Regex}
		for _, v := range strings.Split(r.Values, ",") {
			if v = strings.TrimSpace(v); v != "" {
				d.Values = append(d.Values, v)
			}
		}
		if r.Default != "" {
			d.Default = r.Default
			switch r.Type {
			case schema.ParamInt:
				if v, err := strconv.ParseInt(r.Default, 10, 64); err == nil {
					d.Default = v
				}
			case schema.ParamBool:
				if v, err := strconv.ParseBool(r.Default); err == nil {
					d.Default = v
				}
			}
		}
		for k, s := range map[string]string{"min": r.Min, "max": r.Max} {
			if s == "" {
				continue
			}
			v, err := strconv.ParseFloat(s, 64)
			if err != nil {
				bad.add(fmt.Sprintf("parameters[%d].%s", len(kept), k), "must be a number")
				continue
			}
			if k == "min" {
				d.Min = &v
			} else {
				d.Max = &v
			}
		}
		kept = append(kept, i)
		in.Parameters = append(in.Parameters, d)
	}
	return in, pg, kept, bad.err()
}

// showFormErrors puts err's field errors beside their fields: those of a
// parameter on its row (kept maps a parameter to its form row).
func (pg *scriptEditPage) showFormErrors(err error, kept []int) {
	e := toError(err)
	pg.page.Error = formError(err)
	for f, why := range e.Fields {
		var i int
		var k string
		if _, scanErr := fmt.Sscanf(strings.Replace(f, "].", "] ", 1), "parameters[%d] %s", &i, &k); scanErr == nil && i >= 0 && i < len(kept) {
			pg.Params[kept[i]].Errors[k] = why
			continue
		}
		pg.Errors[f] = why
	}
}

// scriptSubmit handles the script form: "add parameter" shows it again
// with another row; save creates (sc nil) or adds a version.
func (a *API) scriptSubmit(c echo.Context, sc *schema.Script) error {
	in, pg, kept, err := scriptForm(c)
	title := "New script"
	if sc != nil {
		title = "New version"
		setAudit(c, "script.version.create", "script:"+strconv.FormatInt(sc.ID, 10))
	} else {
		setAudit(c, "script.create", "script:"+in.Name)
	}
	pg.page, pg.Script = a.newPage(c, title, "jobs"), sc
	if c.FormValue("add_param") != "" {
		notAudited(c)
		pg.Params = append(pg.Params, paramRow{Type: schema.ParamString})
		return a.render(c, http.StatusOK, "script_edit", pg)
	}
	if err == nil {
		ctx := c.Request().Context()
		if sc == nil {
			var created *schema.Script
			if created, _, err = a.store.CreateScript(ctx, in, userOf(c).Username); err == nil {
				return c.Redirect(http.StatusSeeOther, "/scripts/"+strconv.FormatInt(created.ID, 10))
			}
		} else if _, err = a.store.AddScriptVersion(ctx, sc.ID, in, userOf(c).Username); err == nil {
			return c.Redirect(http.StatusSeeOther, "/scripts/"+strconv.FormatInt(sc.ID, 10))
		}
	}
	if len(pg.Params) == 0 {
		pg.Params = []paramRow{{Type: schema.ParamString}}
	}
	pg.showFormErrors(err, kept)
	return a.render(c, toError(err).Status, "script_edit", pg)
}

func (a *API) scriptCreateForm(c echo.Context) error { return a.scriptSubmit(c, nil) }

func (a *API) scriptVersionForm(c echo.Context) error {
	sc, err := a.scriptParam(c)
	if err != nil {
		return err
	}
	return a.scriptSubmit(c, sc)
}

type diffLine struct{ Kind, Prefix, Text string }

// lineDiff is a longest-common-subsequence diff of two texts by line,
// unified: where lines change, the old ones come first, then the new.
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
		case i < n && (j == m || lcs[i+1][j] >= lcs[i][j+1]):
			out = append(out, diffLine{"del", "-", x[i]})
			i++
		default:
			out = append(out, diffLine{"add", "+", y[j]})
			j++
		}
	}
	return out
}

func (a *API) scriptPage(c echo.Context) error {
	sc, err := a.scriptParam(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	vs, err := a.store.ScriptVersions(ctx, sc.ID)
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
	var d, pd []diffLine
	from, to := pick(c.QueryParam("from"), 0), pick(c.QueryParam("to"), 0)
	if from != nil && to != nil {
		d = lineDiff("interpreter: "+from.Interpreter+"\n"+from.Content, "interpreter: "+to.Interpreter+"\n"+to.Content)
		pd = lineDiff(paramsText(from.Parameters), paramsText(to.Parameters))
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
		Script    *schema.Script
		Version   *schema.ScriptVersion
		Versions  []schema.ScriptVersion
		Diff      []diffLine
		ParamDiff []diffLine
		From, To  int64
		CanEdit   bool
	}{p, sc, cur, vs, d, pd, fromN, toN, canOperate(p.User)})
}

// paramsText is parameter definitions as lines to diff, one a parameter.
func paramsText(ps []schema.ParamDef) string {
	if len(ps) == 0 {
		return "(no parameters)"
	}
	lines := make([]string, len(ps))
	for i, p := range ps {
		var b strings.Builder
		fmt.Fprintf(&b, "%s: %s", p.Name, p.Type)
		if p.Required {
			b.WriteString(", required")
		}
		if p.Default != nil {
			fmt.Fprintf(&b, ", default %v", p.Default)
		}
		if len(p.Values) > 0 {
			b.WriteString(", one of " + strings.Join(p.Values, "|"))
		}
		if p.Regex != "" {
			b.WriteString(", matching " + p.Regex)
		}
		if p.Min != nil {
			fmt.Fprintf(&b, ", min %g", *p.Min)
		}
		if p.Max != nil {
			fmt.Fprintf(&b, ", max %g", *p.Max)
		}
		if p.Description != "" {
			b.WriteString(" — " + p.Description)
		}
		lines[i] = b.String()
	}
	return strings.Join(lines, "\n")
}
