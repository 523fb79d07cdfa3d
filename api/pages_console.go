package api

import (
	"net/http"
	"sort"
	"strings"

	"github.com/labstack/echo/v4"
)

// consoleRoutes are the console's own pages beyond home: the API
// reference. The interactive reference itself is /api/docs (a core route).
func (a *API) consoleRoutes() []route {
	return []route{
		{Method: http.MethodGet, Path: "/api/docs/plain", Public: true, handler: a.docsPlain},
	}
}

// docsCSP is the API reference's policy: the site's, plus data: images,
// which Swagger UI's stylesheet uses for its icons. Scripts and styles
// stay 'self' only: Swagger UI (vendored, served from /static) sets its
// inline styles through the DOM, which style-src does not block.
const docsCSP = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"

// docs is the interactive API reference: Swagger UI over
// /api/openapi.json, whose "Try it out" calls the API with the browser's
// session (ui/static/apidocs.js adds the page's CSRF token to unsafe
// methods).
func (a *API) docs(c echo.Context) error {
	p := a.newPage(c, "API reference", "api")
	c.Response().Header().Set("Content-Security-Policy", docsCSP)
	return a.render(c, http.StatusOK, "docs", p)
}

// docsPlain lists every operation on one page without JavaScript.
func (a *API) docsPlain(c echo.Context) error {
	d, err := parseOpenAPI()
	if err != nil {
		return err
	}
	type param struct {
		Name, In, Description string
		Required              bool
	}
	type op struct {
		ID, OperationID, Method, Path, Summary, Roles, Body string
		Params                                              []param
		Responses                                           []string
	}
	var ops []op
	for path, methods := range d.Paths {
		for m, o := range methods {
			x := op{ID: strings.ToLower(m) + strings.NewReplacer("/", "-", "{", "", "}", "").Replace(path), OperationID: o.OperationID,
				Method: strings.ToUpper(m), Path: path, Summary: o.Summary, Roles: o.Roles}
			for _, p := range o.Parameters {
				x.Params = append(x.Params, param{p.Name, p.In, p.Description, p.Required})
			}
			if o.RequestBody != nil {
				for _, ct := range o.RequestBody.Content {
					x.Body = strings.TrimPrefix(ct.Schema.Ref, "#/components/schemas/")
				}
			}
			for code := range o.Responses {
				x.Responses = append(x.Responses, code)
			}
			sort.Strings(x.Responses)
			ops = append(ops, x)
		}
	}
	sort.Slice(ops, func(i, j int) bool {
		if ops[i].Path != ops[j].Path {
			return ops[i].Path < ops[j].Path
		}
		return ops[i].Method < ops[j].Method
	})
	p := a.newPage(c, "API reference (plain)", "api")
	return a.render(c, http.StatusOK, "docs_plain", struct {
		*page
		Spec *openAPIDoc
		Ops  []op
	}{p, d, ops})
}
