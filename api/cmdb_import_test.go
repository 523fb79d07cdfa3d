package api

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opsflow/opsflow/schema"
)

func (e *env) importCSV(typ, body string, dry bool) resp {
	e.t.Helper()
	return e.do(http.MethodPost, fmt.Sprintf("/api/v1/cmdb/import?type=%s&dry_run=%v", typ, dry), "operator", body, "Content-Type", "text/csv")
}

func TestCMDBImportExport(t *testing.T) {
	for _, engine := range []string{"postgres", "sqlite"} {
		t.Run(engine, func(t *testing.T) { testCMDBImportExport(t, newEnvWith(t, envOptions{sqlite: engine == "sqlite"})) })
	}
}

func testCMDBImportExport(t *testing.T, e *env) {
	p := fmt.Sprintf("imp%d-", time.Now().UnixNano())
	csv := "name,labels,cpu_count,os,discovered_at\n" +
		p + "a,\"env=prod,role=web\",4,debian,2026-01-02T03:04:05Z\n" +
		p + "b,env=dev,2,,\n"

	// Dry run: reports, writes nothing.
	res := e.importCSV("host", csv, true)
	var rep struct {
		Created, Updated, Unchanged int
		Written                     bool
	}
	res.json(t, &rep)
	if res.Status != 200 || rep.Created != 2 || rep.Written {
		t.Fatalf("dry run: %d %s", res.Status, res.Body)
	}
	if _, err := e.store.CIByName(context.Background(), "host", p+"a"); err == nil {
		t.Fatal("dry run wrote")
	}
	res = e.importCSV("host", csv, false)
	res.json(t, &rep)
	if res.Status != 200 || rep.Created != 2 || !rep.Written {
		t.Fatalf("import: %d %s", res.Status, res.Body)
	}
	a, err := e.store.CIByName(context.Background(), "host", p+"a")
	if err != nil || a.Labels["role"] != "web" || fmt.Sprint(a.Attributes["cpu_count"]) != "4" {
		t.Fatalf("imported CI: %+v %v", a, err)
	}
	// Each imported CI is in the audit log, with the request that made it.
	if es, _ := e.store.Audit(context.Background(), schema.AuditFilter{Target: fmt.Sprintf("ci:%d", a.ID)}); len(es) != 1 ||
		es[0].Action != "cmdb.ci.create" || es[0].Actor != e.users["operator"].Username || es[0].RequestID == "" {
		t.Fatalf("audit of an imported CI: %+v", es)
	}

	// Bad rows: each named by row and column, and nothing written, not
	// even the good rows.
	bad := "name,labels,cpu_count,ssh_host_key,colour\n"
	if res := e.importCSV("host", bad, false); res.Status != 422 || !strings.Contains(string(res.Body), `"column":"colour"`) {
		t.Fatalf("unknown column: %d %s", res.Status, res.Body)
	}
	bad = "name,labels,cpu_count\n" +
		p + "c,env=prod,8\n" +
		p + "d,env=prod,many\n" +
		p + "e,env,2\n" +
		p + "c,,1\n" +
		"bad name!,,1\n"
	res = e.importCSV("host", bad, false)
	if res.Status != 422 {
		t.Fatalf("bad rows: %d %s", res.Status, res.Body)
	}
	body := string(res.Body)
	for _, want := range []string{`"row":3,"column":"cpu_count"`, `"row":4,"column":"labels"`, `"row":5,"column":"name"`, `"row":6,"column":"name"`} {
		if !strings.Contains(body, want) {
			t.Errorf("report lacks %s: %s", want, body)
		}
	}
	if _, err := e.store.CIByName(context.Background(), "host", p+"c"); err == nil {
		t.Fatal("a failed import wrote its good rows")
	}
	// A unique value held by another CI is refused too.
	zone := "name,cidr\n" + p + "z1,10.9.0.0/24\n"
	if res := e.importCSV("network_zone", zone, false); res.Status != 200 {
		t.Fatalf("zone: %d %s", res.Status, res.Body)
	}
	if res := e.importCSV("network_zone", "name,cidr\n"+p+"z2,10.9.0.0/24\n", false); res.Status != 422 || !strings.Contains(string(res.Body), `"column":"cidr"`) {
		t.Fatalf("duplicate unique: %d %s", res.Status, res.Body)
	}

	// Export re-imports unchanged, in both formats.
	for _, format := range []string{"csv", "json"} {
		exp := e.do(http.MethodGet, "/api/v1/cmdb/export?type=host&format="+format+"&selector=env", "viewer", nil)
		if exp.Status != 200 || !strings.Contains(string(exp.Body), p+"a") {
			t.Fatalf("export %s: %d %s", format, exp.Status, exp.Body)
		}
		ct := "text/csv"
		if format == "json" {
			ct = "application/json"
		}
		res := e.do(http.MethodPost, "/api/v1/cmdb/import?type=host", "operator", string(exp.Body), "Content-Type", ct)
		res.json(t, &rep)
		if res.Status != 200 || rep.Created != 0 || rep.Updated != 0 || rep.Unchanged == 0 {
			t.Fatalf("re-import of %s export: %d %s", format, res.Status, res.Body)
		}
	}
	// A JSON import changes one CI: one update, one history entry.
	res = e.do(http.MethodPost, "/api/v1/cmdb/import?type=host", "operator",
		`[{"name":"`+p+`b","labels":{"env":"dev"},"attributes":{"cpu_count":16}}]`, "Content-Type", "application/json")
	res.json(t, &rep)
	if res.Status != 200 || rep.Updated != 1 {
		t.Fatalf("json update: %d %s", res.Status, res.Body)
	}
	b, _ := e.store.CIByName(context.Background(), "host", p+"b")
	hs, _ := e.store.History(context.Background(), b.ID, 0, 10)
	if len(hs) != 2 || fmt.Sprint(hs[0].Diff["attributes.cpu_count"].To) != "16" || hs[0].ChangedBy != e.users["operator"].Username {
		t.Fatalf("history after import: %+v", hs)
	}
	if res := e.do(http.MethodPost, "/api/v1/cmdb/import?type=host", "operator", `[{"name":"x","extra":1}]`, "Content-Type", "application/json"); res.Status != 422 || !strings.Contains(string(res.Body), `"column":"extra"`) {
		t.Fatalf("json unknown field: %d %s", res.Status, res.Body)
	}
	if res := e.do(http.MethodPost, "/api/v1/cmdb/import?type=nope", "operator", "name\n", "Content-Type", "text/csv"); res.Status != 422 {
		t.Fatalf("unknown type: %d", res.Status)
	}

	// A JSON body that is no array, or breaks off after good rows, is a
	// 400 and writes nothing.
	for _, body := range []string{`{"name":"x"}`, "", `[{"name":"` + p + `j1"},{"name":`, `[{"name":"` + p + `j1"}] []`} {
		if res := e.do(http.MethodPost, "/api/v1/cmdb/import?type=host", "operator", body, "Content-Type", "application/json"); res.Status != 400 {
			t.Fatalf("json %q: %d %s", body, res.Status, res.Body)
		}
	}
	if _, err := e.store.CIByName(context.Background(), "host", p+"j1"); err == nil {
		t.Fatal("a malformed JSON import wrote its good rows")
	}

	// Many bad rows: the report lists the first ones and counts them all;
	// the good rows before and after are not written.
	var sb strings.Builder
	sb.WriteString("name,cpu_count\n" + p + "m0,1\n")
	for i := range 250 {
		fmt.Fprintf(&sb, "%sm%d,lots\n", p, i+1)
	}
	sb.WriteString(p + "m9999,2\n")
	res = e.importCSV("host", sb.String(), false)
	var failed struct {
		Error struct {
			Message string
			Details struct {
				Rows       int
				ErrorCount int `json:"error_count"`
				Written    bool
				Errors     []schema.RowError
			}
		}
	}
	res.json(t, &failed)
	d := failed.Error.Details
	if res.Status != 422 || d.Rows != 252 || d.ErrorCount != 250 || len(d.Errors) != schema.MaxReportErrors || d.Written ||
		d.Errors[0].Row != 3 || d.Errors[99].Row != 102 || !strings.HasPrefix(failed.Error.Message, "250 row error(s)") {
		t.Fatalf("many bad rows: %d %.600s", res.Status, res.Body)
	}
	for _, n := range []string{"m0", "m9999"} {
		if _, err := e.store.CIByName(context.Background(), "host", p+n); err == nil {
			t.Fatalf("a failed import wrote %s", n)
		}
	}
}

// TestCMDBImportChunks imports more rows than one chunk holds, so checks
// across chunks (duplicate names, unique values) and chunked writes run.
func TestCMDBImportChunks(t *testing.T) {
	for _, engine := range []string{"postgres", "sqlite"} {
		t.Run(engine, func(t *testing.T) {
			e := newEnvWith(t, envOptions{noWorkers: true, sqlite: engine == "sqlite"})
			now := time.Now().UnixNano()
			p := fmt.Sprintf("chunk%d-", now)
			// CIDRs of this run only: the Postgres database outlives it.
			cidr := func(i int) string { return fmt.Sprintf("fd%02x:%x:%x::/64", 0x10+now%0xe0, 1+now/7%0xfffe, i+1) }
			rows := func(n int, extra string) string {
				var sb strings.Builder
				sb.WriteString("name,labels,cidr\n")
				for i := range n {
					fmt.Fprintf(&sb, "%s%d,env=prod,%s\n", p, i, cidr(i))
				}
				return sb.String() + extra
			}
			// A name and a unique value repeated two chunks apart.
			res := e.importCSV("network_zone", rows(2500, p+"7,,"+cidr(9000)+"\n"+p+"z,,"+cidr(3)+"\n"), false)
			body := string(res.Body)
			if res.Status != 422 || !strings.Contains(body, `"row":2502,"column":"name","reason":"duplicate of row 9"`) ||
				!strings.Contains(body, `"row":2503,"column":"cidr","reason":"must be unique: \"`+cidr(3)+`\" is also in row 5"`) {
				t.Fatalf("repeats across chunks: %d %.800s", res.Status, body)
			}
			if _, err := e.store.CIByName(context.Background(), "network_zone", p+"0"); err == nil {
				t.Fatal("a failed import wrote its first chunk")
			}
			var rep struct {
				Rows, Created, Updated, Unchanged int
				Written                           bool
			}
			res = e.importCSV("network_zone", rows(2500, ""), false)
			res.json(t, &rep)
			if res.Status != 200 || rep.Rows != 2500 || rep.Created != 2500 || !rep.Written {
				t.Fatalf("import: %d %.500s", res.Status, res.Body)
			}
			if n, _ := e.store.DB.NewSelect().Table("cmdb_events").Where("ci_type = ? AND op = 'create'", "network_zone").
				Where("object_id IN (SELECT id FROM cis WHERE name LIKE ?)", p+"%").Count(context.Background()); n != 2500 {
				t.Fatalf("%d create events, want 2500", n)
			}
			// Re-import: all unchanged. A new CI taking a value another
			// CI holds is refused, even in a later chunk.
			res = e.importCSV("network_zone", rows(2500, ""), true)
			res.json(t, &rep)
			if res.Status != 200 || rep.Unchanged != 2500 {
				t.Fatalf("re-import: %d %.500s", res.Status, res.Body)
			}
			res = e.importCSV("network_zone", rows(2500, p+"new,,"+cidr(1200)+"\n"), false)
			if res.Status != 422 || !strings.Contains(string(res.Body), `"row":2502,"column":"cidr"`) {
				t.Fatalf("unique value held in the database: %d %.500s", res.Status, res.Body)
			}
		})
	}
}

func TestCSVCellEscapeRoundTrip(t *testing.T) {
	for _, v := range []string{"", "plain", "=1+2", "+cmd", "-x", "@SUM(A1)", "\tx", "\rx", "-5", "+1.5", "'", "'quoted", "'=1", "''@x", "'-5", "it's"} {
		esc := escapeCSVCell(v)
		if got := unescapeCSVCell(esc); got != v {
			t.Errorf("%q escaped %q unescaped %q", v, esc, got)
		}
		if e := strings.TrimLeft(esc, "'"); e != "" && strings.ContainsRune("=+-@\t\r", rune(e[0])) && esc[0] != '\'' {
			if _, err := strconv.ParseFloat(esc, 64); err != nil {
				t.Errorf("%q exported as a formula: %q", v, esc)
			}
		}
	}
	// A quote typed before a formula character in a spreadsheet is the
	// same escape and is removed too.
	if got := unescapeCSVCell("'=A1"); got != "=A1" {
		t.Errorf("'=A1 imported as %q", got)
	}
}

func TestCMDBEventFeed(t *testing.T) {
	for _, engine := range []string{"postgres", "sqlite"} {
		t.Run(engine, func(t *testing.T) { testCMDBEventFeed(t, newEnvWith(t, envOptions{sqlite: engine == "sqlite"})) })
	}
}

func testCMDBEventFeed(t *testing.T, e *env) {
	var page struct {
		Items []struct {
			ID       int64
			Kind, Op string
			ObjectID int64 `json:"object_id"`
		}
		NextCursor string `json:"next_cursor"`
	}
	// Find the end of the feed, then open a live stream from there.
	cursor := "0"
	for {
		e.do(http.MethodGet, "/api/v1/cmdb/events?limit=500&after="+cursor, "viewer", nil).json(t, &page)
		if len(page.Items) == 0 {
			break
		}
		cursor = page.NextCursor
	}
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/api/v1/cmdb/events?after="+cursor, nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+e.tokens["viewer"])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("stream: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	c := e.mkCI("host", fmt.Sprintf("feed-%d", time.Now().UnixNano()), nil, nil)
	e.do(http.MethodPatch, "/api/v1/cmdb/cis/"+strconv.FormatInt(c.ID, 10), "operator", map[string]any{"labels": map[string]string{"a": "b"}}, "If-Match", "1")
	sc := bufio.NewScanner(res.Body)
	var events []string
	var lastID string
	for sc.Scan() && len(events) < 2 {
		line := sc.Text()
		if id, ok := strings.CutPrefix(line, "id: "); ok {
			lastID = id
		}
		if ev, ok := strings.CutPrefix(line, "event: "); ok {
			events = append(events, ev)
		}
	}
	if fmt.Sprint(events) != "[ci.create ci.update]" {
		t.Fatalf("streamed %v", events)
	}
	// The JSON page from the same cursor has the same two, and resumes
	// after the last one.
	e.do(http.MethodGet, "/api/v1/cmdb/events?after="+cursor, "viewer", nil).json(t, &page)
	if len(page.Items) != 2 || page.Items[0].ObjectID != c.ID || page.NextCursor != lastID {
		t.Fatalf("page: %+v last id %s", page, lastID)
	}
	e.do(http.MethodGet, "/api/v1/cmdb/events?after="+lastID, "viewer", nil).json(t, &page)
	if len(page.Items) != 0 {
		t.Fatalf("after the last: %+v", page.Items)
	}
	if res := e.do(http.MethodGet, "/api/v1/cmdb/events?after=abc", "viewer", nil); res.Status != 422 {
		t.Fatalf("bad cursor: %d", res.Status)
	}
}
