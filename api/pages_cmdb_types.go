package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/opsflow/opsflow/schema"
)

// typesPage lists CI and relation types; admins also get the forms that
// create them, shown again with their inputs on an error.
type typesPage struct {
	*page
	Types         []schema.CIType
	RelationTypes []schema.RelationType
	Cardinalities []string
	NewType       typeRequest
	NewTypeErrs   map[string]string
	NewRel        relationTypeRequest
	NewRelErrs    map[string]string
	// RelAcyclic and RelImpact are the new relation type's checkboxes.
	RelAcyclic, RelImpact bool
}

func (a *API) renderTypesPage(c echo.Context, status int, p *typesPage) error {
	ctx := c.Request().Context()
	var err error
	if p.Types, err = a.store.Types(ctx); err != nil {
		return err
	}
	if p.RelationTypes, err = a.store.RelationTypes(ctx); err != nil {
		return err
	}
	p.Cardinalities = []string{schema.ManyToMany, schema.ManyToOne, schema.OneToMany, schema.OneToOne}
	if p.NewRel.Cardinality == "" {
		p.NewRel.Cardinality = schema.ManyToMany
	}
	p.RelAcyclic, p.RelImpact = true, true
	if p.NewRel.Acyclic != nil && p.NewRel.Impact != nil {
		p.RelAcyclic, p.RelImpact = *p.NewRel.Acyclic, *p.NewRel.Impact
	}
	return a.render(c, status, "cmdb_types", p)
}

func (a *API) cmdbTypesPage(c echo.Context) error {
	return a.renderTypesPage(c, http.StatusOK, &typesPage{page: a.newPage(c, "CI types", "cmdb")})
}

// userError splits err for a form: its status and its per-field reasons,
// or ok false when it is not the user's to fix.
func userError(err error) (e *Error, ok bool) {
	e = toError(err)
	if e.Status >= 500 || e.Status == http.StatusNotFound {
		return e, false
	}
	if e.Fields == nil {
		e.Fields = map[string]string{}
	}
	return e, true
}

func (a *API) typeCreateForm(c echo.Context) error {
	req := typeRequest{Name: strings.TrimSpace(c.FormValue("name")), Description: strings.TrimSpace(c.FormValue("description"))}
	if _, err := a.createTypeFor(c, req); err != nil {
		e, ok := userError(err)
		if !ok {
			return err
		}
		p := &typesPage{page: a.newPage(c, "CI types", "cmdb"), NewType: req, NewTypeErrs: e.Fields}
		p.page.Error = fieldMessage(e)
		return a.renderTypesPage(c, e.Status, p)
	}
	return c.Redirect(http.StatusSeeOther, "/cmdb/types/"+url.PathEscape(req.Name)+"/edit?flash="+url.QueryEscape("Created type "+req.Name+"; add its attributes."))
}

func (a *API) relationTypeCreateForm(c echo.Context) error {
	acyclic, impact := c.FormValue("acyclic") == "true", c.FormValue("impact") == "true"
	req := relationTypeRequest{Name: strings.TrimSpace(c.FormValue("name")), Description: strings.TrimSpace(c.FormValue("description")),
		Cardinality: c.FormValue("cardinality"), Acyclic: &acyclic, Impact: &impact}
	if _, err := a.createRelationTypeFor(c, req); err != nil {
		e, ok := userError(err)
		if !ok {
			return err
		}
		p := &typesPage{page: a.newPage(c, "CI types", "cmdb"), NewRel: req, NewRelErrs: e.Fields}
		p.page.Error = fieldMessage(e)
		return a.renderTypesPage(c, e.Status, p)
	}
	return c.Redirect(http.StatusSeeOther, "/cmdb/types?flash="+url.QueryEscape("Created relation type "+req.Name+".")+"#relation-types")
}

// attrRowForm is one attribute definition as the type form edits it.
type attrRowForm struct {
	Name, Type, Description, Values, Regex, Min, Max, Default string
	Required, Unique                                          bool
	Errs                                                      map[string]string
}

type typeForm struct {
	*page
	Type        *schema.CIType
	Description string
	Rows        []attrRowForm
	AttrTypes   []string
	Offending   []schema.OffendingCI
}

func numText(f *float64) string {
	if f == nil {
		return ""
	}
	return strconv.FormatFloat(*f, 'f', -1, 64)
}

func (a *API) newTypeForm(c echo.Context) (*typeForm, error) {
	t, err := a.store.Type(c.Request().Context(), c.Param("name"))
	if err != nil {
		return nil, err
	}
	return &typeForm{page: a.newPage(c, "Edit type "+t.Name, "cmdb"), Type: t, Description: t.Description,
		AttrTypes: []string{schema.AttrString, schema.AttrInt, schema.AttrFloat, schema.AttrBool, schema.AttrEnum,
			schema.AttrIP, schema.AttrCIDR, schema.AttrDatetime, schema.AttrJSON}}, nil
}

func (f *typeForm) render(a *API, c echo.Context, status int) error {
	if len(f.Rows) == 0 || f.Rows[len(f.Rows)-1].Name != "" {
		f.Rows = append(f.Rows, attrRowForm{Type: schema.AttrString})
	}
	return a.render(c, status, "cmdb_type_edit", f)
}

func (a *API) typeEditPage(c echo.Context) error {
	f, err := a.newTypeForm(c)
	if err != nil {
		return err
	}
	for _, d := range f.Type.Attributes {
		r := attrRowForm{Name: d.Name, Type: d.Type, Description: d.Description, Values: strings.Join(d.Values, ", "),
			Regex: d.Regex, Min: numText(d.Min), Max: numText(d.Max), Required: d.Required, Unique: d.Unique}
		if d.Default != nil {
			r.Default = attrText(d, d.Default)
		}
		f.Rows = append(f.Rows, r)
	}
	return f.render(a, c, http.StatusOK)
}

// rowErrRE reads the store's "attributes[3].values" field names.
var rowErrRE = regexp.MustCompile(`^attributes\[(\d+)\]\.(\w+)$`)

func (a *API) typeUpdateForm(c echo.Context) error {
	f, err := a.newTypeForm(c)
	if err != nil {
		return err
	}
	f.Description = strings.TrimSpace(c.FormValue("description"))
	bad := fieldErrors{}
	var defs []schema.AttributeDef
	var rowOf []int // defs index → row index
	for i := range formRows(c) {
		v := func(k string) string { return strings.TrimSpace(c.FormValue(fmt.Sprintf("a.%d.%s", i, k))) }
		r := attrRowForm{Name: v("name"), Type: v("type"), Description: v("description"), Values: v("values"), Regex: v("regex"),
			Min: v("min"), Max: v("max"), Default: v("default"), Required: v("required") == "true", Unique: v("unique") == "true", Errs: map[string]string{}}
		f.Rows = append(f.Rows, r)
		if r.Name == "" {
			continue // an empty row adds nothing
		}
		d := schema.AttributeDef{Name: r.Name, Type: r.Type, Description: r.Description, Regex: r.Regex, Required: r.Required, Unique: r.Unique}
		for _, s := range strings.Split(r.Values, ",") {
			if s = strings.TrimSpace(s); s != "" {
				d.Values = append(d.Values, s)
			}
		}
		for _, n := range []struct {
			text  string
			field string
			to    **float64
		}{{r.Min, "min", &d.Min}, {r.Max, "max", &d.Max}} {
			if n.text == "" {
				continue
			}
			x, err := strconv.ParseFloat(n.text, 64)
			if err != nil {
				r.Errs[n.field] = "must be a number"
				bad.add(fmt.Sprintf("attributes[%d].%s", i, n.field), "must be a number")
				continue
			}
			*n.to = &x
		}
		if r.Default != "" {
			if err := json.Unmarshal(attrJSON(d, r.Default), &d.Default); err != nil {
				r.Errs["default"] = "not valid JSON"
				bad.add(fmt.Sprintf("attributes[%d].default", i), "not valid JSON")
			}
		}
		defs = append(defs, d)
		rowOf = append(rowOf, i)
	}
	if c.FormValue("op") == "add-row" {
		return f.render(a, c, http.StatusOK)
	}
	if err := bad.err(); err != nil {
		f.page.Error = fieldMessage(toError(err))
		return f.render(a, c, http.StatusUnprocessableEntity)
	}
	if _, err := a.updateTypeFor(c, f.Type.Name, typeRequest{Description: f.Description, Attributes: defs}); err != nil {
		var tr *schema.TypeChangeRefused
		if errors.As(err, &tr) {
			f.Offending = tr.Offending
		}
		e, ok := userError(err)
		if !ok {
			return err
		}
		f.page.Error = fieldMessage(e)
		for k, why := range e.Fields {
			if m := rowErrRE.FindStringSubmatch(k); m != nil {
				if di, _ := strconv.Atoi(m[1]); di < len(rowOf) {
					f.Rows[rowOf[di]].Errs[m[2]] = why
				}
			}
		}
		return f.render(a, c, e.Status)
	}
	return c.Redirect(http.StatusSeeOther, "/cmdb/types?flash="+url.QueryEscape("Saved type "+f.Type.Name+".")+"#type-"+url.QueryEscape(f.Type.Name))
}
