package api

import (
	"encoding/json"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/opsflow/opsflow/schema"
	"github.com/opsflow/opsflow/workflows"
)

// attrView is an attribute as the CI page shows it: a scalar as text, a
// list of scalars as a list, a list of objects (listening ports, disks) or
// an object as a table.
type attrView struct {
	Name  string
	Text  string
	List  []string
	Table *attrTable
}

type attrTable struct {
	Columns []string
	Rows    [][]string
}

// columnOrder puts the columns people look for first, in this order;
// other columns follow by name.
var columnOrder = []string{"port", "proto", "protocol", "addr", "process", "mount", "device", "size_mb", "name"}

func viewAttr(name string, v any) attrView {
	av := attrView{Name: name}
	switch x := v.(type) {
	case []any:
		var objs []map[string]any
		for _, e := range x {
			if m, ok := e.(map[string]any); ok {
				objs = append(objs, m)
			}
		}
		if len(objs) == 0 || len(objs) != len(x) {
			for _, e := range x {
				av.List = append(av.List, show(e))
			}
			if len(x) == 0 {
				av.Text = "none"
			}
			return av
		}
		cols := map[string]bool{}
		for _, m := range objs {
			for k := range m {
				cols[k] = true
			}
		}
		t := &attrTable{}
		for _, k := range columnOrder {
			if cols[k] {
				t.Columns = append(t.Columns, k)
				delete(cols, k)
			}
		}
		t.Columns = append(t.Columns, slices.Sorted(maps.Keys(cols))...)
		for _, m := range objs {
			row := make([]string, len(t.Columns))
			for i, k := range t.Columns {
				row[i] = show(m[k])
			}
			t.Rows = append(t.Rows, row)
		}
		av.Table = t
	case map[string]any:
		t := &attrTable{Columns: []string{"key", "value"}}
		for _, k := range slices.Sorted(maps.Keys(x)) {
			t.Rows = append(t.Rows, []string{k, show(x[k])})
		}
		av.Table = t
	default:
		av.Text = show(v)
	}
	return av
}

// viewAttrs orders a CI's attributes as its type declares them.
func viewAttrs(t *schema.CIType, attrs map[string]any) []attrView {
	var out []attrView
	seen := map[string]bool{}
	if t != nil {
		for _, d := range t.Attributes {
			if v, ok := attrs[d.Name]; ok {
				out = append(out, viewAttr(d.Name, v))
				seen[d.Name] = true
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(attrs)) {
		if !seen[k] {
			out = append(out, viewAttr(k, attrs[k]))
		}
	}
	return out
}

type relRow struct {
	ID    int64
	Type  string
	Out   bool
	Other schema.CIRef
}

type diffRow struct {
	Field, From, To string
	// FromCI and ToCI name the other end of a relation change.
	FromCI, ToCI *schema.CIRef
}

// runLink is the run that made a change: a job's page for a job, else the
// run's page.
type runLink struct {
	URL, Text string
}

type historyRow struct {
	schema.CIHistory
	Fields []diffRow
	Run    *runLink
}

// ciIDOf reads a CI id out of a relation change's diff value.
func ciIDOf(v any) (int64, bool) {
	switch x := v.(type) {
	case float64:
		return int64(x), x > 0
	case json.Number:
		n, err := x.Int64()
		return n, err == nil
	}
	return 0, false
}

func (a *API) cmdbCIPage(c echo.Context) error {
	id, err := idParam(c, "id")
	if err != nil {
		return err
	}
	ci, err := a.store.CI(c.Request().Context(), id)
	if err != nil {
		return err
	}
	return a.renderCIPage(c, ci, &relationForm{Direction: "out"}, http.StatusOK)
}

// renderCIPage shows a CI with its relations and history, and the "add a
// relation" form as rf holds it (inputs and errors kept).
func (a *API) renderCIPage(c echo.Context, ci *schema.CI, rf *relationForm, status int) error {
	ctx := c.Request().Context()
	id := ci.ID
	t, err := a.store.Type(ctx, ci.Type)
	if err != nil {
		return err
	}
	rels, err := a.store.Relations(ctx, schema.RelationFilter{CIID: id, Limit: 500})
	if err != nil {
		return err
	}
	hist, err := a.store.History(ctx, id, 0, 100)
	if err != nil {
		return err
	}
	// Every CI the page names, fetched at once.
	ids := map[int64]bool{}
	for _, r := range rels {
		ids[r.SourceID], ids[r.TargetID] = true, true
	}
	for _, h := range hist {
		for f, d := range h.Diff {
			if strings.HasPrefix(f, "relations.") {
				if n, ok := ciIDOf(d.From); ok {
					ids[n] = true
				}
				if n, ok := ciIDOf(d.To); ok {
					ids[n] = true
				}
			}
		}
	}
	refs, err := a.store.CIRefs(ctx, slices.Collect(maps.Keys(ids)))
	if err != nil {
		return err
	}
	var rows []relRow
	for _, r := range rels {
		otherID, out := r.TargetID, true
		if r.TargetID == id {
			otherID, out = r.SourceID, false
		}
		rows = append(rows, relRow{ID: r.ID, Type: r.Type, Out: out, Other: refs[otherID]})
	}
	impact, err := a.store.Impact(ctx, id, 20)
	if err != nil {
		return err
	}
	hrows := make([]historyRow, len(hist))
	runs := map[string]*runLink{}
	for i, h := range hist {
		hrows[i].CIHistory = h
		for f, d := range h.Diff {
			row := diffRow{Field: f, From: show(d.From), To: show(d.To)}
			if strings.HasPrefix(f, "relations.") {
				if n, ok := ciIDOf(d.From); ok {
					ref := refs[n]
					row.FromCI = &ref
				}
				if n, ok := ciIDOf(d.To); ok {
					ref := refs[n]
					row.ToCI = &ref
				}
			}
			hrows[i].Fields = append(hrows[i].Fields, row)
		}
		sort.Slice(hrows[i].Fields, func(a, b int) bool { return hrows[i].Fields[a].Field < hrows[i].Fields[b].Field })
		if h.RunID != "" {
			if _, ok := runs[h.RunID]; !ok {
				runs[h.RunID] = a.runLinkOf(c, h.RunID)
			}
			hrows[i].Run = runs[h.RunID]
		}
	}
	up, err := a.store.Graph(ctx, id, schema.Up, 2)
	if err != nil {
		return err
	}
	down, err := a.store.Graph(ctx, id, schema.Down, 2)
	if err != nil {
		return err
	}
	p := a.newPage(c, ci.Name, "cmdb")
	var rtypes []schema.RelationType
	if p.CanOperate() {
		if rtypes, err = a.store.RelationTypes(ctx); err != nil {
			return err
		}
	}
	return a.render(c, status, "cmdb_ci", struct {
		*page
		CI            *schema.CI
		Attrs         []attrView
		Relations     []relRow
		Impact        []schema.GraphNode
		History       []historyRow
		SVG           template.HTML
		RelForm       *relationForm
		RelationTypes []schema.RelationType
	}{p, ci, viewAttrs(t, ci.Attributes), rows, impact, hrows, topologySVG(up, down), rf, rtypes})
}

// runLinkOf names the run that made a change: "job 12" linking the job's
// page for a job's run, else the run's kind linking the run's page.
func (a *API) runLinkOf(c echo.Context, runID string) *runLink {
	kind := workflows.KindOf(runID)
	if kind == workflows.KindJob {
		if j, err := a.store.JobByWorkflowID(c.Request().Context(), runID); err == nil {
			return &runLink{URL: "/jobs/" + strconv.FormatInt(j.ID, 10), Text: fmt.Sprintf("job %d", j.ID)}
		}
	}
	return &runLink{URL: "/runs/" + url.PathEscape(runID), Text: kind + " run"}
}

// show writes an attribute value as text: strings as they are, the rest
// as JSON.
func show(v any) string {
	if v == nil {
		return ""
	}
	if s, ok := v.(string); ok {
		return s
	}
	b, _ := json.Marshal(v)
	return string(b)
}
