package api

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/opsflow/opsflow/internal/runbook"
	"github.com/opsflow/opsflow/schema"
)

// Runbooks are stored like scripts: a name over immutable versions. A
// request carries the whole document, as JSON {"source": "<YAML or JSON
// text>", "comment": "…"} or as the raw document with a YAML media type
// (the comment then in ?comment=). A document is parsed and validated
// before anything is stored; a bad one is a 422 whose details list every
// error with its line, column and path. Adding a version whose source is
// byte for byte the latest's adds nothing: 200 with the latest version,
// so pushing the same file twice is harmless.

func (a *API) runbookRoutes() []route {
	return []route{
		{Method: http.MethodGet, Path: "/api/v1/runbooks", Roles: anyUser, handler: a.listRunbooks},
		{Method: http.MethodPost, Path: "/api/v1/runbooks", Roles: operators, handler: a.createRunbook},
		{Method: http.MethodPost, Path: "/api/v1/runbooks/validate", Roles: anyUser, handler: a.validateRunbook},
		{Method: http.MethodGet, Path: "/api/v1/runbooks/schema.json", Roles: anyUser, handler: a.runbookSchema},
		{Method: http.MethodGet, Path: "/api/v1/runbooks/:name", Roles: anyUser, handler: a.getRunbook},
		{Method: http.MethodDelete, Path: "/api/v1/runbooks/:name", Roles: operators, handler: a.deleteRunbook},
		{Method: http.MethodGet, Path: "/api/v1/runbooks/:name/versions", Roles: anyUser, handler: a.listRunbookVersions},
		{Method: http.MethodPost, Path: "/api/v1/runbooks/:name/versions", Roles: operators, handler: a.createRunbookVersion},
		{Method: http.MethodGet, Path: "/api/v1/runbooks/:name/versions/:version", Roles: anyUser, handler: a.getRunbookVersion},
	}
}

// runbookRequest is the JSON body of a create, a new version or a
// validation.
type runbookRequest struct {
	Source  string `json:"source"`
	Comment string `json:"comment"`
}

type runbookView struct {
	*schema.Runbook
	Latest *schema.RunbookVersion `json:"latest"`
}

// readRunbook reads the request's document and parses it with the API's
// step kinds: the source as sent, the comment, and the parsed runbook.
func (a *API) readRunbook(c echo.Context) (src []byte, comment string, rb *runbook.Runbook, err error) {
	var req runbookRequest
	doc, err := decodeJSONOrDocument(c, &req)
	if err != nil {
		return nil, "", nil, err
	}
	if doc != nil {
		src, comment = doc, c.QueryParam("comment")
	} else {
		if req.Source == "" {
			return nil, "", nil, &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: "invalid source",
				Fields: map[string]string{"source": "required"}}
		}
		src, comment = []byte(req.Source), req.Comment
	}
	if len(comment) > maxComment {
		return nil, "", nil, &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: "invalid comment",
			Fields: map[string]string{"comment": fmt.Sprintf("at most %d bytes", maxComment)}}
	}
	rb, err = a.runbooks.Parse(src)
	var errs runbook.Errors
	if errors.As(err, &errs) {
		return nil, "", nil, documentError(errs)
	}
	if err != nil {
		return nil, "", nil, err
	}
	if schema.RunbookNameReserved(rb.Metadata.Name) {
		return nil, "", nil, placeStoreError(&schema.ValidationError{Message: "invalid runbook",
			Fields: map[string]string{"metadata.name": strconv.Quote(rb.Metadata.Name) + " is reserved"}}, src)
	}
	return src, comment, rb, nil
}

// maxComment bounds a version's comment.
const maxComment = 4096

// documentError is the 422 for a bad document: fields maps each path to
// its first reason ("source" for the document as a whole), details.errors
// lists every error with its line and column.
func documentError(errs runbook.Errors) *Error {
	fields := errs.Fields()
	if r, ok := fields[""]; ok {
		delete(fields, "")
		if _, taken := fields["source"]; !taken {
			fields["source"] = r
		}
	}
	msg := "invalid runbook: 1 error"
	if len(errs) != 1 {
		msg = fmt.Sprintf("invalid runbook: %d errors", len(errs))
	}
	return &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: msg, Fields: fields,
		Details: map[string]any{"errors": errs}}
}

// placeStoreError answers a refusal of the document's fields (a reserved
// name) as documentError does, placing metadata.name in the source.
func placeStoreError(err error, src []byte) error {
	var ve *schema.ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	var errs runbook.Errors
	for path, reason := range ve.Fields {
		e := runbook.Error{Line: 1, Column: 1, Path: path, Reason: reason}
		if _, at, ok := runbook.MetadataName(src); ok && path == "metadata.name" {
			e.Line, e.Column = at.Line, at.Column
		}
		errs = append(errs, e)
	}
	slices.SortFunc(errs, func(a, b runbook.Error) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column), strings.Compare(a.Path, b.Path))
	})
	return documentError(errs)
}

func runbookInput(src []byte, comment string, rb *runbook.Runbook) schema.RunbookInput {
	return schema.RunbookInput{Name: rb.Metadata.Name, Description: rb.Metadata.Description, Labels: rb.Metadata.Labels,
		Source: string(src), Comment: comment}
}

func (a *API) listRunbooks(c echo.Context) error {
	bad := fieldErrors{}
	q := c.QueryParams()
	f := schema.RunbookFilter{Q: textParam(q, "q", bad), Page: pageParams(q, bad)}
	if err := bad.err(); err != nil {
		return err
	}
	rs, info, err := a.store.RunbookList(c.Request().Context(), f)
	if err != nil {
		return err
	}
	return pageJSON(c, rs, info)
}

func (a *API) createRunbook(c echo.Context) error {
	setAudit(c, "runbook.create", "runbook")
	src, comment, rb, err := a.readRunbook(c)
	if err != nil {
		return err
	}
	setAudit(c, "runbook.create", "runbook:"+rb.Metadata.Name)
	row, v, err := a.store.CreateRunbook(c.Request().Context(), runbookInput(src, comment, rb), userOf(c).Username)
	if err != nil {
		return placeStoreError(err, src)
	}
	c.Set(auditDetailKey, versionDetail(v))
	return c.JSON(http.StatusCreated, runbookView{row, v})
}

func versionDetail(v *schema.RunbookVersion) string {
	return fmt.Sprintf("version %d sha256 %s", v.Version, v.SHA256)
}

func (a *API) getRunbook(c echo.Context) error {
	ctx := c.Request().Context()
	rb, err := a.store.Runbook(ctx, c.Param("name"))
	if err != nil {
		return err
	}
	v, err := a.store.RunbookVersion(ctx, rb.ID, rb.LatestVersion)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, runbookView{rb, v})
}

// deleteRunbook marks the runbook deleted; its versions stay for the
// runs that used them, and the name is free again.
func (a *API) deleteRunbook(c echo.Context) error {
	name := c.Param("name")
	setAudit(c, "runbook.delete", "runbook:"+name)
	if err := a.store.DeleteRunbook(c.Request().Context(), name, userOf(c).Username); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (a *API) listRunbookVersions(c echo.Context) error {
	ctx := c.Request().Context()
	rb, err := a.store.Runbook(ctx, c.Param("name"))
	if err != nil {
		return err
	}
	vs, err := a.store.RunbookVersions(ctx, rb.ID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"items": vs})
}

func (a *API) getRunbookVersion(c echo.Context) error {
	n, err := idParam(c, "version")
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	rb, err := a.store.Runbook(ctx, c.Param("name"))
	if err != nil {
		return err
	}
	v, err := a.store.RunbookVersion(ctx, rb.ID, n)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

// createRunbookVersion adds the next version: 201 with it, or 200 with
// the latest when the source is the latest's.
func (a *API) createRunbookVersion(c echo.Context) error {
	name := c.Param("name")
	setAudit(c, "runbook.version.create", "runbook:"+name)
	src, comment, rb, err := a.readRunbook(c)
	if err != nil {
		return err
	}
	if rb.Metadata.Name != name {
		e := runbook.Error{Line: 1, Column: 1, Path: "metadata.name", Reason: fmt.Sprintf("must be %s, the name of the runbook this version is added to", strconv.Quote(name))}
		if _, at, ok := runbook.MetadataName(src); ok {
			e.Line, e.Column = at.Line, at.Column
		}
		return documentError(runbook.Errors{e})
	}
	v, created, err := a.store.AddRunbookVersion(c.Request().Context(), name, runbookInput(src, comment, rb), userOf(c).Username)
	if err != nil {
		return placeStoreError(err, src)
	}
	status := http.StatusCreated
	detail := versionDetail(v)
	if !created {
		status, detail = http.StatusOK, "unchanged: "+detail
	}
	c.Set(auditDetailKey, detail)
	return c.JSON(status, v)
}

// validateRunbook checks a document and stores nothing: 200 {"ok": true,
// …} or the 422 a create would answer. It is not audited: it changes
// nothing, and an editor calls it as its user types.
func (a *API) validateRunbook(c echo.Context) error {
	notAudited(c)
	src, _, rb, err := a.readRunbook(c)
	if err != nil {
		return err
	}
	steps := 0
	rb.Walk(func(*runbook.Step) { steps++ })
	return c.JSON(http.StatusOK, map[string]any{"ok": true, "name": rb.Metadata.Name, "steps": steps, "sha256": schema.SourceSHA256(string(src))})
}

func (a *API) runbookSchema(c echo.Context) error {
	return c.Blob(http.StatusOK, "application/schema+json", a.runbooks.JSONSchema())
}
