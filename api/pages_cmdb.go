package api

import (
	"errors"
	"fmt"
	"html"
	"html/template"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/opsflow/opsflow/schema"
	"github.com/opsflow/opsflow/workflows"
)

// topologySVG draws the graph around a CI in rows: what depends on it
// above, what it depends on below.
func topologySVG(up, down *schema.Graph) template.HTML {
	type node struct {
		n     schema.GraphNode
		level int
		x, y  int
	}
	nodes := map[int64]*node{}
	root := up.Nodes[0]
	nodes[root.ID] = &node{n: root}
	for _, n := range up.Nodes[1:] {
		nodes[n.ID] = &node{n: n, level: -n.Depth}
	}
	for _, n := range down.Nodes[1:] {
		if _, ok := nodes[n.ID]; !ok {
			nodes[n.ID] = &node{n: n, level: n.Depth}
		}
	}
	byLevel := map[int][]*node{}
	minL, maxL := 0, 0
	for _, n := range nodes {
		byLevel[n.level] = append(byLevel[n.level], n)
		minL, maxL = min(minL, n.level), max(maxL, n.level)
	}
	const w, rowH, boxW, boxH = 640, 64, 132, 30
	widest := 1
	for _, ns := range byLevel {
		widest = max(widest, len(ns))
	}
	width := max(w, widest*(boxW+12)+12)
	for l, ns := range byLevel {
		sort.Slice(ns, func(i, j int) bool { return ns[i].n.ID < ns[j].n.ID })
		for i, n := range ns {
			n.x = width * (i + 1) / (len(ns) + 1)
			n.y = 24 + (l-minL)*rowH
		}
	}
	height := 24 + (maxL-minL)*rowH + boxH + 12
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="topology" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d">`, width, height, width, height)
	seen := map[int64]bool{}
	for _, e := range append(append([]schema.Relation{}, up.Edges...), down.Edges...) {
		s, t := nodes[e.SourceID], nodes[e.TargetID]
		if seen[e.ID] || s == nil || t == nil {
			continue
		}
		seen[e.ID] = true
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#9aa4b8"/><text x="%d" y="%d" fill="#6b7385">%s</text>`,
			s.x, s.y+boxH/2, t.x, t.y+boxH/2, (s.x+t.x)/2+4, (s.y+t.y)/2+boxH/2, html.EscapeString(e.Type))
	}
	ids := make([]int64, 0, len(nodes))
	for id := range nodes {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		n := nodes[id]
		fill := "#fff"
		if id == root.ID {
			fill = "#dbe7ff"
		}
		name := n.n.Name
		if len(name) > 20 {
			name = name[:19] + "…"
		}
		fmt.Fprintf(&b, `<a href="/cmdb/cis/%d"><rect class="node" data-ci="%d" x="%d" y="%d" width="%d" height="%d" rx="4" fill="%s" stroke="#2456d6"/>`+
			`<text x="%d" y="%d" text-anchor="middle">%s</text><text x="%d" y="%d" text-anchor="middle" fill="#6b7385">%s</text></a>`,
			id, id, n.x-boxW/2, n.y, boxW, boxH, fill, n.x, n.y+13, html.EscapeString(name), n.x, n.y+26, html.EscapeString(n.n.Type))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

type importPage struct {
	*page
	Types  []schema.CIType
	Type   string
	CSV    string
	DryRun bool
	Report *schema.ImportReport
}

func (a *API) cmdbImportPage(c echo.Context) error {
	types, err := a.store.Types(c.Request().Context())
	if err != nil {
		return err
	}
	return a.render(c, http.StatusOK, "cmdb_import", importPage{page: a.newPage(c, "Import CIs", "cmdb"), Types: types, Type: c.QueryParam("type"), DryRun: true})
}

// cmdbImportSubmit imports CSV pasted into the form and shows the report;
// row errors are shown on the page, never half-written.
func (a *API) cmdbImportSubmit(c echo.Context) error {
	ctx := c.Request().Context()
	types, err := a.store.Types(ctx)
	if err != nil {
		return err
	}
	pg := importPage{page: a.newPage(c, "Import CIs", "cmdb"), Types: types, Type: c.FormValue("type"), CSV: c.FormValue("csv"), DryRun: c.FormValue("dry_run") == "true"}
	setAudit(c, "cmdb.import", "ci_type:"+pg.Type)
	t, err := a.store.Type(ctx, pg.Type)
	if err != nil {
		return err
	}
	open := func() (schema.ImportReader, error) { return newCSVImport(t, strings.NewReader(pg.CSV)), nil }
	rep, err := a.store.Import(ctx, pg.Type, open, pg.DryRun, change(c))
	if err != nil {
		var ve *schema.ValidationError
		if !errors.As(err, &ve) {
			return err
		}
		rep = &schema.ImportReport{Type: pg.Type, ErrorCount: 1, Errors: []schema.RowError{{Reason: ve.Error()}}}
	}
	pg.Report = rep
	status := http.StatusOK
	if rep.ErrorCount > 0 {
		status = http.StatusUnprocessableEntity
	}
	return a.render(c, status, "cmdb_import", pg)
}

type discoverPage struct {
	*page
	Credentials               []schema.Credential
	Addresses, CIDR, Schedule string
}

func (a *API) cmdbDiscoverPage(c echo.Context) error {
	creds, err := a.loginCredentials(c.Request().Context(), false)
	if err != nil {
		return err
	}
	return a.render(c, http.StatusOK, "cmdb_discover", discoverPage{page: a.newPage(c, "Discover hosts", "cmdb"), Credentials: creds})
}

func (a *API) cmdbDiscoverSubmit(c echo.Context) error {
	ctx := c.Request().Context()
	req := discoveryRequest{CIDR: c.FormValue("cidr"), Schedule: strings.TrimSpace(c.FormValue("schedule"))}
	for _, l := range strings.Split(c.FormValue("addresses"), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			req.Addresses = append(req.Addresses, l)
		}
	}
	req.CredentialID, _ = strconv.ParseInt(c.FormValue("credential_id"), 10, 64)
	fail := func(err error) error {
		creds, cerr := a.loginCredentials(ctx, false)
		if cerr != nil {
			return cerr
		}
		pg := discoverPage{page: a.newPage(c, "Discover hosts", "cmdb"), Credentials: creds, Addresses: c.FormValue("addresses"), CIDR: req.CIDR, Schedule: req.Schedule}
		pg.page.Error = toError(err).Message
		for f, why := range toError(err).Fields {
			pg.page.Error += "; " + f + ": " + why
		}
		return a.render(c, toError(err).Status, "cmdb_discover", pg)
	}
	in, err := req.validate(ctx, a.store)
	if err != nil {
		return fail(err)
	}
	in.StartedBy = userOf(c).Username
	if req.Schedule != "" {
		return fail(newError(http.StatusUnprocessableEntity, CodeValidation, "schedules are created through the API (POST /api/v1/cmdb/discoveries)"))
	}
	v, _, err := a.startRun(c, workflows.KindDiscovery, firstNonEmpty(in.CIDR, strings.Join(in.Addresses, ",")), workflows.DiscoverHosts, in)
	if err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/runs/"+url.PathEscape(v.WorkflowID))
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
