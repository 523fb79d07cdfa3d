package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/opsflow/opsflow/schema"
)

// cmdbPageRoutes are the CMDB's editing pages: CIs with their labels and
// relations (operators), CI and relation types (admins). Every change goes
// through the same code as the API (createCIFor, patchCIFor, …).
func (a *API) cmdbPageRoutes() []route {
	return []route{
		{Method: http.MethodGet, Path: "/cmdb/cis/new", Roles: operators, handler: a.ciNewPage},
		{Method: http.MethodPost, Path: "/cmdb/cis", Roles: operators, handler: a.ciCreateForm},
		{Method: http.MethodGet, Path: "/cmdb/cis/:id/edit", Roles: operators, handler: a.ciEditPage},
		{Method: http.MethodPost, Path: "/cmdb/cis/:id", Roles: operators, handler: a.ciUpdateForm},
		{Method: http.MethodGet, Path: "/cmdb/cis/:id/delete", Roles: operators, handler: a.ciDeletePage},
		{Method: http.MethodPost, Path: "/cmdb/cis/:id/delete", Roles: operators, handler: a.ciDeleteForm},
		{Method: http.MethodPost, Path: "/cmdb/cis/:id/relations", Roles: operators, handler: a.relationCreateForm},
		{Method: http.MethodGet, Path: "/cmdb/relations/:id/delete", Roles: operators, handler: a.relationDeletePage},
		{Method: http.MethodPost, Path: "/cmdb/relations/:id/delete", Roles: operators, handler: a.relationDeleteForm},
		{Method: http.MethodPost, Path: "/cmdb/types", Roles: admins, handler: a.typeCreateForm},
		{Method: http.MethodGet, Path: "/cmdb/types/:name/edit", Roles: admins, handler: a.typeEditPage},
		{Method: http.MethodPost, Path: "/cmdb/types/:name", Roles: admins, handler: a.typeUpdateForm},
		{Method: http.MethodPost, Path: "/cmdb/relation-types", Roles: admins, handler: a.relationTypeCreateForm},
	}
}

// maxFormRows bounds the rows a form may post (labels, attributes).
const maxFormRows = 200

// formRows is how many indexed rows ("label.N.key") a form says it has,
// plus one when its "add a row" button was pressed.
func formRows(c echo.Context) int {
	n, _ := strconv.Atoi(c.FormValue("rows"))
	if c.FormValue("op") == "add-row" {
		n++
	}
	return max(0, min(n, maxFormRows))
}

// fieldMessage is the error shown at the top of a form, with the fields
// it names (each also shown beside its input).
func fieldMessage(e *Error) string {
	if len(e.Fields) == 0 {
		return e.Message
	}
	return "Not saved: " + e.Message + ". See the fields marked below."
}

// ---- CI form ----

type attrField struct {
	Def   schema.AttributeDef
	Value string
	Err   string
}

type labelField struct{ Key, Value, Err string }

type ciForm struct {
	*page
	Type     *schema.CIType
	CI       *schema.CI // nil for a new CI
	Name     string
	NameErr  string
	Version  int64
	Attrs    []attrField
	Labels   []labelField
	Stale    bool
	Relation int // relations of the CI, for the delete confirmation
}

// attrText is a stored attribute value as its form input shows it.
func attrText(d schema.AttributeDef, v any) string {
	if v == nil {
		return ""
	}
	if d.Type == schema.AttrJSON {
		b, _ := json.MarshalIndent(v, "", "  ")
		return string(b)
	}
	return show(v)
}

// attrJSON is what a form's text means for an attribute: numbers, booleans
// and JSON as written, everything else as a string. Text that is no JSON
// is passed on as written for the type's own check to name the field.
func attrJSON(d schema.AttributeDef, s string) json.RawMessage {
	switch d.Type {
	case schema.AttrJSON:
		return json.RawMessage(s)
	case schema.AttrInt, schema.AttrFloat, schema.AttrBool:
		if json.Valid([]byte(s)) {
			return json.RawMessage(s)
		}
	}
	b, _ := json.Marshal(s)
	return b
}

func (a *API) newCIForm(c echo.Context, t *schema.CIType, ci *schema.CI) *ciForm {
	title := "New " + t.Name
	if ci != nil {
		title = "Edit " + ci.Name
	}
	f := &ciForm{page: a.newPage(c, title, "cmdb"), Type: t, CI: ci}
	for _, d := range t.Attributes {
		f.Attrs = append(f.Attrs, attrField{Def: d})
	}
	return f
}

// fill reads the form's inputs; the form is shown again with them on any
// error.
func (f *ciForm) fill(c echo.Context) {
	f.Name = strings.TrimSpace(c.FormValue("name"))
	f.Version, _ = strconv.ParseInt(c.FormValue("version"), 10, 64)
	for i := range f.Attrs {
		f.Attrs[i].Value = strings.TrimSpace(c.FormValue("attr." + f.Attrs[i].Def.Name))
	}
	for i := range formRows(c) {
		k := strings.TrimSpace(c.FormValue(fmt.Sprintf("label.%d.key", i)))
		v := strings.TrimSpace(c.FormValue(fmt.Sprintf("label.%d.value", i)))
		f.Labels = append(f.Labels, labelField{Key: k, Value: v})
	}
}

// labels are the form's label rows as a map; rows without a key and value
// are dropped, a value without a key or a repeated key is an error.
func (f *ciForm) labels(bad fieldErrors) map[string]string {
	out := map[string]string{}
	for i, l := range f.Labels {
		switch {
		case l.Key == "" && l.Value == "":
		case l.Key == "":
			f.Labels[i].Err = "a label needs a key"
			bad.add(fmt.Sprintf("label.%d", i), "a label needs a key")
		default:
			if _, dup := out[l.Key]; dup {
				f.Labels[i].Err = "key " + l.Key + " is given twice"
				bad.add("labels."+l.Key, "given twice")
			}
			out[l.Key] = l.Value
		}
	}
	return out
}

// place puts err's per-field reasons beside their inputs.
func (f *ciForm) place(err error) (int, bool) {
	var vm *schema.VersionMismatch
	if errors.As(err, &vm) {
		f.Stale = true
		f.page.Error = fmt.Sprintf("Not saved: someone changed this CI since you opened the form (it is now at version %d, you edited version %d). Your changes are kept below; open the current version to apply them again.", vm.Current, f.Version)
		return http.StatusConflict, true
	}
	e, ok := userError(err)
	if !ok {
		return 0, false
	}
	f.page.Error = fieldMessage(e)
	for k, why := range e.Fields {
		switch {
		case k == "name":
			f.NameErr = why
		case strings.HasPrefix(k, "attributes."):
			for i := range f.Attrs {
				if "attributes."+f.Attrs[i].Def.Name == k {
					f.Attrs[i].Err = why
				}
			}
		case strings.HasPrefix(k, "labels."):
			for i := range f.Labels {
				if "labels."+f.Labels[i].Key == k && f.Labels[i].Err == "" {
					f.Labels[i].Err = why
				}
			}
		}
	}
	return e.Status, true
}

// render shows the form with at least one empty label row to type into.
func (f *ciForm) render(a *API, c echo.Context, status int) error {
	if len(f.Labels) == 0 || f.Labels[len(f.Labels)-1].Key != "" {
		f.Labels = append(f.Labels, labelField{})
	}
	return a.render(c, status, "cmdb_ci_form", f)
}

// fail renders the form with err beside its fields, or returns err when
// it is not the user's to fix.
func (f *ciForm) fail(a *API, c echo.Context, err error) error {
	status, ok := f.place(err)
	if !ok {
		return err
	}
	return f.render(a, c, status)
}

func (a *API) ciNewPage(c echo.Context) error {
	t, err := a.store.Type(c.Request().Context(), c.QueryParam("type"))
	if errors.Is(err, schema.ErrNotFound) {
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "no CI type " + strconv.Quote(c.QueryParam("type")) + "; pick one on the types page",
			Fields: map[string]string{"type": "unknown CI type"}}
	} else if err != nil {
		return err
	}
	f := a.newCIForm(c, t, nil)
	for i := range f.Attrs {
		if d := f.Attrs[i].Def.Default; d != nil {
			f.Attrs[i].Value = attrText(f.Attrs[i].Def, d)
		}
	}
	return f.render(a, c, http.StatusOK)
}

func (a *API) ciCreateForm(c echo.Context) error {
	ctx := c.Request().Context()
	t, err := a.store.Type(ctx, c.FormValue("type"))
	if errors.Is(err, schema.ErrNotFound) {
		return &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: "unknown CI type", Fields: map[string]string{"type": "unknown CI type"}}
	} else if err != nil {
		return err
	}
	f := a.newCIForm(c, t, nil)
	f.fill(c)
	if c.FormValue("op") == "add-row" {
		return f.render(a, c, http.StatusOK)
	}
	bad := fieldErrors{}
	in := schema.CIInput{Type: t.Name, Name: f.Name, Labels: f.labels(bad), Attributes: map[string]json.RawMessage{}}
	if err := bad.err(); err != nil {
		return f.fail(a, c, err)
	}
	for _, af := range f.Attrs {
		if af.Value != "" {
			in.Attributes[af.Def.Name] = attrJSON(af.Def, af.Value)
		}
	}
	ci, err := a.createCIFor(c, in)
	if err != nil {
		return f.fail(a, c, err)
	}
	return c.Redirect(http.StatusSeeOther, fmt.Sprintf("/cmdb/cis/%d?flash=%s", ci.ID, url.QueryEscape("Created "+ci.Name+".")))
}

// ciAndType loads the CI of the :id parameter and its type.
func (a *API) ciAndType(c echo.Context) (*schema.CI, *schema.CIType, error) {
	id, err := idParam(c, "id")
	if err != nil {
		return nil, nil, err
	}
	ci, err := a.store.CI(c.Request().Context(), id)
	if err != nil {
		return nil, nil, err
	}
	t, err := a.store.Type(c.Request().Context(), ci.Type)
	if err != nil {
		return nil, nil, err
	}
	return ci, t, nil
}

func (a *API) ciEditPage(c echo.Context) error {
	ci, t, err := a.ciAndType(c)
	if err != nil {
		return err
	}
	f := a.newCIForm(c, t, ci)
	f.Name, f.Version = ci.Name, ci.Version
	for i := range f.Attrs {
		f.Attrs[i].Value = attrText(f.Attrs[i].Def, ci.Attributes[f.Attrs[i].Def.Name])
	}
	for _, k := range slices.Sorted(maps.Keys(ci.Labels)) {
		f.Labels = append(f.Labels, labelField{Key: k, Value: ci.Labels[k]})
	}
	return f.render(a, c, http.StatusOK)
}

// ciUpdateForm saves an edit made on version f.Version; if the CI changed
// since, nothing is written and the form says so.
func (a *API) ciUpdateForm(c echo.Context) error {
	ci, t, err := a.ciAndType(c)
	if err != nil {
		return err
	}
	f := a.newCIForm(c, t, ci)
	f.fill(c)
	if c.FormValue("op") == "add-row" {
		return f.render(a, c, http.StatusOK)
	}
	bad := fieldErrors{}
	labels := f.labels(bad)
	if f.Version <= 0 {
		bad.add("version", "missing: reload the form")
	}
	if err := bad.err(); err != nil {
		return f.fail(a, c, err)
	}
	p := schema.CIPatch{Attributes: map[string]json.RawMessage{}, Labels: map[string]*string{}}
	if f.Name != ci.Name {
		p.Name = &f.Name
	}
	for _, af := range f.Attrs {
		switch _, had := ci.Attributes[af.Def.Name]; {
		case af.Value != "":
			p.Attributes[af.Def.Name] = attrJSON(af.Def, af.Value)
		case had:
			p.Attributes[af.Def.Name] = json.RawMessage("null")
		}
	}
	for k := range ci.Labels {
		if _, kept := labels[k]; !kept {
			p.Labels[k] = nil
		}
	}
	for k, v := range labels {
		p.Labels[k] = &v
	}
	saved, err := a.patchCIFor(c, ci.ID, f.Version, p)
	if err != nil {
		return f.fail(a, c, err)
	}
	msg := "Saved " + saved.Name + "."
	if saved.Version == f.Version {
		msg = "Nothing changed."
	}
	return c.Redirect(http.StatusSeeOther, fmt.Sprintf("/cmdb/cis/%d?flash=%s", saved.ID, url.QueryEscape(msg)))
}

func (a *API) ciDeletePage(c echo.Context) error {
	ci, _, err := a.ciAndType(c)
	if err != nil {
		return err
	}
	rels, err := a.store.Relations(c.Request().Context(), schema.RelationFilter{CIID: ci.ID, Limit: 500})
	if err != nil {
		return err
	}
	cf := confirmation{Title: "Delete " + ci.Name + "?", Message: fmt.Sprintf("Delete %s %s?", ci.Type, ci.Name),
		Detail: "Its history is kept; the CI cannot be restored.", Action: fmt.Sprintf("/cmdb/cis/%d/delete", ci.ID),
		Back: fmt.Sprintf("/cmdb/cis/%d", ci.ID), Button: "Delete " + ci.Name, Danger: true}
	if len(rels) > 0 {
		cf.Fields = []hiddenField{{"cascade", "true"}}
		cf.Detail = fmt.Sprintf("Its %d relation(s) will be deleted with it. Its history is kept; the CI cannot be restored.", len(rels))
	}
	return a.confirmPage(c, cf)
}

func (a *API) ciDeleteForm(c echo.Context) error {
	ci, _, err := a.ciAndType(c)
	if err != nil {
		return err
	}
	if err := a.deleteCIFor(c, ci.ID, c.FormValue("cascade") == "true"); err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/cmdb?type="+url.QueryEscape(ci.Type)+"&flash="+url.QueryEscape("Deleted "+ci.Name+"."))
}

// ---- relations on the CI page ----

// relationForm is the "add a relation" form of a CI page.
type relationForm struct {
	Type, Direction, Target string
	TypeErr, TargetErr      string
	// Candidates are the CIs a target name matched when it named more
	// than one; the user picks one.
	Candidates []schema.CI
}

// relationTarget finds the CI the form names: the one picked from the
// candidates, the one CI with exactly that name, or the only one whose
// name contains it.
func (a *API) relationTarget(c echo.Context, f *relationForm) (*schema.CI, error) {
	ctx := c.Request().Context()
	if v := c.FormValue("target_id"); v != "" {
		id, err := strconv.ParseInt(v, 10, 64)
		if err == nil {
			if ci, err := a.store.CI(ctx, id); err == nil {
				return ci, nil
			}
		}
	}
	if f.Target == "" {
		f.TargetErr = "name the CI to relate to"
		return nil, nil
	}
	cis, _, err := a.store.CIs(ctx, schema.CIQuery{Q: f.Target, Limit: 20})
	if err != nil {
		return nil, err
	}
	var exact []schema.CI
	for _, ci := range cis {
		if ci.Name == f.Target {
			exact = append(exact, ci)
		}
	}
	switch {
	case len(exact) == 1:
		return &exact[0], nil
	case len(exact) == 0 && len(cis) == 1:
		return &cis[0], nil
	case len(cis) == 0:
		f.TargetErr = "no CI's name contains " + strconv.Quote(f.Target)
	default:
		f.TargetErr = fmt.Sprintf("%d CIs match; pick one", len(cis))
		f.Candidates = cis
	}
	return nil, nil
}

func (a *API) relationCreateForm(c echo.Context) error {
	id, err := idParam(c, "id")
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	this, err := a.store.CI(ctx, id)
	if err != nil {
		return err
	}
	f := &relationForm{Type: c.FormValue("type"), Direction: c.FormValue("direction"), Target: strings.TrimSpace(c.FormValue("target"))}
	if f.Direction != "in" {
		f.Direction = "out"
	}
	other, err := a.relationTarget(c, f)
	if err != nil {
		return err
	}
	if other == nil {
		return a.renderCIPage(c, this, f, http.StatusUnprocessableEntity)
	}
	req := relationRequest{Type: f.Type, SourceID: this.ID, TargetID: other.ID}
	if f.Direction == "in" {
		req.SourceID, req.TargetID = other.ID, this.ID
	}
	if _, err := a.createRelationFor(c, req); err != nil {
		e, ok := userError(err)
		if !ok {
			return err
		}
		f.TargetErr = e.Message
		for k, why := range e.Fields {
			if k == "type" {
				f.TypeErr = why
			} else {
				f.TargetErr = why
			}
		}
		if f.TypeErr != "" && len(e.Fields) == 1 {
			f.TargetErr = ""
		}
		return a.renderCIPage(c, this, f, e.Status)
	}
	return c.Redirect(http.StatusSeeOther, fmt.Sprintf("/cmdb/cis/%d?flash=%s", this.ID, url.QueryEscape("Related to "+other.Name+".")))
}

// relationAndBack loads the relation of :id and the CI page to return to:
// the form's ci when it is one of the relation's ends, else its source.
func (a *API) relationAndBack(c echo.Context) (*schema.Relation, map[int64]schema.CIRef, string, error) {
	id, err := idParam(c, "id")
	if err != nil {
		return nil, nil, "", err
	}
	ctx := c.Request().Context()
	r, err := a.store.Relation(ctx, id)
	if err != nil {
		return nil, nil, "", err
	}
	refs, err := a.store.CIRefs(ctx, []int64{r.SourceID, r.TargetID})
	if err != nil {
		return nil, nil, "", err
	}
	back := r.SourceID
	if v, _ := strconv.ParseInt(c.FormValue("ci"), 10, 64); v == r.TargetID {
		back = v
	}
	return r, refs, fmt.Sprintf("/cmdb/cis/%d", back), nil
}

func (a *API) relationDeletePage(c echo.Context) error {
	r, refs, back, err := a.relationAndBack(c)
	if err != nil {
		return err
	}
	src, dst := refs[r.SourceID], refs[r.TargetID]
	return a.confirmPage(c, confirmation{Title: "Delete relation?",
		Message: fmt.Sprintf("Delete the relation %s %s %s?", src.Name, r.Type, dst.Name),
		Detail:  "Both CIs stay; the change is recorded in their history.",
		Action:  fmt.Sprintf("/cmdb/relations/%d/delete?ci=%s", r.ID, strings.TrimPrefix(back, "/cmdb/cis/")), Back: back, Button: "Delete relation", Danger: true})
}

func (a *API) relationDeleteForm(c echo.Context) error {
	r, refs, back, err := a.relationAndBack(c)
	if err != nil {
		return err
	}
	if err := a.deleteRelationFor(c, r.ID); err != nil {
		return err
	}
	msg := fmt.Sprintf("Deleted the relation %s %s %s.", refs[r.SourceID].Name, r.Type, refs[r.TargetID].Name)
	return c.Redirect(http.StatusSeeOther, back+"?flash="+url.QueryEscape(msg))
}
