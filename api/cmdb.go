package api

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/opsflow/opsflow/schema"
)

// change is the CMDB change context of a request.
func change(c echo.Context) schema.Change {
	return schema.Change{Actor: userOf(c).Username, RequestID: c.Response().Header().Get(echo.HeaderXRequestID), SourceIP: c.RealIP()}
}

func idParam(c echo.Context, name string) (int64, error) {
	id, err := strconv.ParseInt(c.Param(name), 10, 64)
	if err != nil || id <= 0 {
		return 0, &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: "invalid " + name,
			Fields: map[string]string{name: "must be a positive integer"}}
	}
	return id, nil
}

type typeRequest struct {
	Name        string                `json:"name"`
	Description string                `json:"description"`
	Attributes  []schema.AttributeDef `json:"attributes"`
}

func (a *API) listTypes(c echo.Context) error {
	ts, err := a.store.Types(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"items": ts})
}

func (a *API) getType(c echo.Context) error {
	t, err := a.store.Type(c.Request().Context(), c.Param("name"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, t)
}

func (a *API) createType(c echo.Context) error {
	var req typeRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	t, err := a.createTypeFor(c, req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, t)
}

// createTypeFor creates a CI type for the request's user; the API and the
// types page both create through it.
func (a *API) createTypeFor(c echo.Context, req typeRequest) (*schema.CIType, error) {
	t := &schema.CIType{Name: req.Name, Description: req.Description, Attributes: req.Attributes}
	setAudit(c, "cmdb.type.create", "ci_type:"+req.Name)
	if err := a.store.CreateType(c.Request().Context(), t); err != nil {
		if isConflict(err) {
			return nil, &Error{Status: http.StatusConflict, Code: CodeConflict, Message: "CI type already exists", Fields: map[string]string{"name": "already exists"}}
		}
		return nil, err
	}
	return t, nil
}

// updateType replaces a type's description and attributes. A change that
// would invalidate existing CIs is refused with the list of them.
func (a *API) updateType(c echo.Context) error {
	var req typeRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	t, err := a.updateTypeFor(c, c.Param("name"), req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, t)
}

func (a *API) updateTypeFor(c echo.Context, name string, req typeRequest) (*schema.CIType, error) {
	if req.Name != "" && req.Name != name {
		return nil, &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: "a type cannot be renamed",
			Fields: map[string]string{"name": "must be " + name + " or empty"}}
	}
	setAudit(c, "cmdb.type.update", "ci_type:"+name)
	return a.store.UpdateType(c.Request().Context(), name, req.Description, req.Attributes)
}

func (a *API) getCI(c echo.Context) error {
	id, err := idParam(c, "id")
	if err != nil {
		return err
	}
	ci, err := a.store.CI(c.Request().Context(), id)
	if err != nil {
		return err
	}
	c.Response().Header().Set("ETag", strconv.Quote(strconv.FormatInt(ci.Version, 10)))
	return c.JSON(http.StatusOK, ci)
}

func (a *API) createCI(c echo.Context) error {
	var in schema.CIInput
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	ci, err := a.createCIFor(c, in)
	if err != nil {
		return err
	}
	c.Response().Header().Set("ETag", strconv.Quote("1"))
	return c.JSON(http.StatusCreated, ci)
}

// createCIFor creates a CI for the request's user; the API and the CI
// form both create through it.
func (a *API) createCIFor(c echo.Context, in schema.CIInput) (*schema.CI, error) {
	setAudit(c, "cmdb.ci.create", "ci:"+in.Type+"/"+in.Name)
	ci, err := a.store.CreateCI(c.Request().Context(), in, change(c))
	if err != nil {
		return nil, err
	}
	setAudit(c, "cmdb.ci.create", "ci:"+strconv.FormatInt(ci.ID, 10))
	return ci, nil
}

// ifMatch reads the version a PATCH is based on: If-Match: 3, "3" or W/"3".
func ifMatch(c echo.Context) (int64, error) {
	h := strings.TrimSpace(c.Request().Header.Get("If-Match"))
	if h == "" {
		return 0, &Error{Status: http.StatusPreconditionRequired, Code: CodePrecondition,
			Message: "send If-Match with the version you read", Fields: map[string]string{"If-Match": "required"}}
	}
	v, err := strconv.ParseInt(strings.Trim(strings.TrimPrefix(h, "W/"), `"`), 10, 64)
	if err != nil || v <= 0 {
		return 0, &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: "invalid If-Match",
			Fields: map[string]string{"If-Match": "must be a CI version such as 3"}}
	}
	return v, nil
}

func (a *API) patchCI(c echo.Context) error {
	id, err := idParam(c, "id")
	if err != nil {
		return err
	}
	setAudit(c, "cmdb.ci.update", "ci:"+strconv.FormatInt(id, 10))
	version, err := ifMatch(c)
	if err != nil {
		return err
	}
	var p schema.CIPatch
	if err := decodeJSON(c, &p); err != nil {
		return err
	}
	ci, err := a.patchCIFor(c, id, version, p)
	if err != nil {
		return err
	}
	c.Response().Header().Set("ETag", strconv.Quote(strconv.FormatInt(ci.Version, 10)))
	return c.JSON(http.StatusOK, ci)
}

// patchCIFor changes CI id if it is still at version: a stale edit is
// refused (schema.VersionMismatch), never applied over another's.
func (a *API) patchCIFor(c echo.Context, id, version int64, p schema.CIPatch) (*schema.CI, error) {
	setAudit(c, "cmdb.ci.update", "ci:"+strconv.FormatInt(id, 10))
	return a.store.UpdateCI(c.Request().Context(), id, version, p, change(c))
}

func (a *API) deleteCI(c echo.Context) error {
	id, err := idParam(c, "id")
	if err != nil {
		return err
	}
	setAudit(c, "cmdb.ci.delete", "ci:"+strconv.FormatInt(id, 10))
	cascade, err := boolParam(c, "cascade")
	if err != nil {
		return err
	}
	if err := a.deleteCIFor(c, id, cascade); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (a *API) deleteCIFor(c echo.Context, id int64, cascade bool) error {
	setAudit(c, "cmdb.ci.delete", "ci:"+strconv.FormatInt(id, 10))
	return a.store.DeleteCI(c.Request().Context(), id, cascade, change(c))
}

func boolParam(c echo.Context, name string) (bool, error) {
	switch c.QueryParam(name) {
	case "", "false", "0":
		return false, nil
	case "true", "1":
		return true, nil
	}
	return false, &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: "invalid " + name,
		Fields: map[string]string{name: "must be true or false"}}
}

func (a *API) ciHistory(c echo.Context) error {
	id, err := idParam(c, "id")
	if err != nil {
		return err
	}
	bad := fieldErrors{}
	limit := intParam(c.QueryParam("limit"), "limit", 1, 500, bad)
	var before int64
	if v := c.QueryParam("cursor"); v != "" {
		if before, err = strconv.ParseInt(v, 10, 64); err != nil || before <= 0 {
			bad.add("cursor", "not a cursor returned by this API")
		}
	}
	if err := bad.err(); err != nil {
		return err
	}
	hs, err := a.store.History(c.Request().Context(), id, before, limit)
	if err != nil {
		return err
	}
	next := ""
	if len(hs) > 0 && len(hs) == clampedLimit(limit) {
		next = strconv.FormatInt(hs[len(hs)-1].ID, 10)
	}
	return c.JSON(http.StatusOK, map[string]any{"items": hs, "next_cursor": next})
}

func (a *API) ciGraph(c echo.Context) error {
	id, err := idParam(c, "id")
	if err != nil {
		return err
	}
	bad := fieldErrors{}
	dir := c.QueryParam("direction")
	switch dir {
	case "":
		dir = schema.Both
	case schema.Up, schema.Down, schema.Both:
	default:
		bad.add("direction", "must be up, down or both")
	}
	depth := intParam(c.QueryParam("depth"), "depth", 1, 10, bad)
	if depth == 0 {
		depth = 2
	}
	if err := bad.err(); err != nil {
		return err
	}
	g, err := a.store.Graph(c.Request().Context(), id, dir, depth)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, g)
}

func (a *API) ciImpact(c echo.Context) error {
	id, err := idParam(c, "id")
	if err != nil {
		return err
	}
	bad := fieldErrors{}
	depth := intParam(c.QueryParam("depth"), "depth", 1, 50, bad)
	if depth == 0 {
		depth = 20
	}
	if err := bad.err(); err != nil {
		return err
	}
	ns, err := a.store.Impact(c.Request().Context(), id, depth)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"items": ns})
}

type relationRequest struct {
	Type     string `json:"type"`
	SourceID int64  `json:"source_id"`
	TargetID int64  `json:"target_id"`
}

func (a *API) listRelations(c echo.Context) error {
	q := c.QueryParams()
	bad := fieldErrors{}
	f := schema.RelationFilter{Type: q.Get("type")}
	f.Limit = intParam(q.Get("limit"), "limit", 1, 500, bad)
	if v := q.Get("ci"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			bad.add("ci", "must be a CI id")
		}
		f.CIID = n
	}
	if v := q.Get("cursor"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			bad.add("cursor", "not a cursor returned by this API")
		}
		f.After = n
	}
	if err := bad.err(); err != nil {
		return err
	}
	rs, err := a.store.Relations(c.Request().Context(), f)
	if err != nil {
		return err
	}
	next := ""
	if len(rs) > 0 && len(rs) == clampedLimit(f.Limit) {
		next = strconv.FormatInt(rs[len(rs)-1].ID, 10)
	}
	return c.JSON(http.StatusOK, map[string]any{"items": rs, "next_cursor": next})
}

func (a *API) createRelation(c echo.Context) error {
	var req relationRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	r, err := a.createRelationFor(c, req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, r)
}

func (a *API) createRelationFor(c echo.Context, req relationRequest) (*schema.Relation, error) {
	setAudit(c, "cmdb.relation.create", "relation:"+req.Type+"/"+strconv.FormatInt(req.SourceID, 10)+"->"+strconv.FormatInt(req.TargetID, 10))
	return a.store.CreateRelation(c.Request().Context(), req.Type, req.SourceID, req.TargetID, change(c))
}

func (a *API) deleteRelation(c echo.Context) error {
	id, err := idParam(c, "id")
	if err != nil {
		return err
	}
	if err := a.deleteRelationFor(c, id); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (a *API) deleteRelationFor(c echo.Context, id int64) error {
	setAudit(c, "cmdb.relation.delete", "relation:"+strconv.FormatInt(id, 10))
	return a.store.DeleteRelation(c.Request().Context(), id, change(c))
}

func (a *API) listRelationTypes(c echo.Context) error {
	ts, err := a.store.RelationTypes(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"items": ts})
}

func (a *API) createRelationType(c echo.Context) error {
	var req relationTypeRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	t, err := a.createRelationTypeFor(c, req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, t)
}

// createRelationTypeFor creates a relation type; acyclic and impact
// default to true when the request leaves them out.
func (a *API) createRelationTypeFor(c echo.Context, req relationTypeRequest) (*schema.RelationType, error) {
	t := schema.RelationType{Name: req.Name, Description: req.Description, Cardinality: req.Cardinality, Acyclic: true, Impact: true}
	if req.Acyclic != nil {
		t.Acyclic = *req.Acyclic
	}
	if req.Impact != nil {
		t.Impact = *req.Impact
	}
	setAudit(c, "cmdb.relation_type.create", "relation_type:"+req.Name)
	if err := a.store.CreateRelationType(c.Request().Context(), &t); err != nil {
		if isConflict(err) {
			return nil, &Error{Status: http.StatusConflict, Code: CodeConflict, Message: "relation type already exists", Fields: map[string]string{"name": "already exists"}}
		}
		return nil, err
	}
	return &t, nil
}

type relationTypeRequest struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Cardinality string `json:"cardinality"`
	Acyclic     *bool  `json:"acyclic"`
	Impact      *bool  `json:"impact"`
}
