package api

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/labstack/echo/v4"
)

// openAPISpec is the API's OpenAPI 3 document, kept by hand in the repo; a
// test fails when a route is missing from it.
//
//go:embed openapi.json
var openAPISpec []byte

type openAPIDoc struct {
	OpenAPI string `json:"openapi"`
	Info    struct {
		Title       string `json:"title"`
		Version     string `json:"version"`
		Description string `json:"description"`
	} `json:"info"`
	Paths map[string]map[string]openAPIOp `json:"paths"`
}

type openAPIOp struct {
	Summary    string `json:"summary"`
	Roles      string `json:"x-roles"`
	Parameters []struct {
		Name        string `json:"name"`
		In          string `json:"in"`
		Required    bool   `json:"required"`
		Description string `json:"description"`
	} `json:"parameters"`
	RequestBody *struct {
		Content map[string]struct {
			Schema struct {
				Ref string `json:"$ref"`
			} `json:"schema"`
		} `json:"content"`
	} `json:"requestBody"`
	Responses map[string]json.RawMessage `json:"responses"`
}

func parseOpenAPI() (*openAPIDoc, error) {
	var d openAPIDoc
	if err := json.Unmarshal(openAPISpec, &d); err != nil {
		return nil, fmt.Errorf("openapi.json: %w", err)
	}
	return &d, nil
}

func (a *API) openAPI(c echo.Context) error {
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, openAPISpec)
}

// docs renders the OpenAPI document as a page, served locally: no CDN.
func (a *API) docs(c echo.Context) error {
	d, err := parseOpenAPI()
	if err != nil {
		return err
	}
	type param struct {
		Name, In, Description string
		Required              bool
	}
	type op struct {
		ID, Method, Path, Summary, Roles, Body string
		Params                                 []param
		Responses                              []string
	}
	var ops []op
	for path, methods := range d.Paths {
		for m, o := range methods {
			x := op{ID: strings.ToLower(m) + strings.NewReplacer("/", "-", "{", "", "}", "").Replace(path),
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
	p := a.newPage(c, "API reference", "")
	return a.render(c, http.StatusOK, "docs", struct {
		*page
		Spec *openAPIDoc
		Ops  []op
	}{p, d, ops})
}
