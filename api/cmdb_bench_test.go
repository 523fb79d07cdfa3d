package api

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opsflow/opsflow/internal/testenv"
	"github.com/opsflow/opsflow/schema"
	"github.com/uptrace/bun"
)

// BenchmarkCMDB seeds 100,000 CIs (through the import API: measured) and
// 300,000 relations on Postgres, then measures side by side with the
// equivalent hand-written SQL: a selector query returning 100 rows
// (p50/p99) and a depth-3 impact query. Targets (issue 3): selector p99
// <= 20 ms and <= 2x the raw SQL; import <= 30 s.
//
//	go tool task bench -- -run '^$' -bench BenchmarkCMDB ./api
func BenchmarkCMDB(b *testing.B) {
	e := newEnvWith(b, envOptions{noWorkers: true})
	ctx := context.Background()
	const hosts, services, apps = 60000, 30000, 10000
	envs := []string{"prod", "staging", "dev"}
	roles := []string{"web", "api", "db", "cache", "batch"}

	csvOf := func(prefix string, n int, header string, row func(i int) string) string {
		var sb strings.Builder
		sb.WriteString(header + "\n")
		for i := range n {
			fmt.Fprintf(&sb, "%s-%06d,%s\n", prefix, i, row(i))
		}
		return sb.String()
	}
	hostCSV := csvOf("h", hosts, "name,labels,cpu_count,os", func(i int) string {
		l := fmt.Sprintf("env=%s,role=%s,zone=z%d", envs[i%3], roles[i%5], i%20)
		if i%20 == 7 {
			l += ",deprecated=true"
		}
		return fmt.Sprintf("%q,%d,debian", l, 2<<(i%4))
	})
	svcCSV := csvOf("s", services, "name,labels,port", func(i int) string {
		return fmt.Sprintf("%q,%d", fmt.Sprintf("env=%s,tier=t%d", envs[i%3], i%4), 1024+i%50000)
	})
	appCSV := csvOf("a", apps, "name,labels,owner", func(i int) string {
		return fmt.Sprintf("env=%s,team%d", envs[i%3], i%30)
	})

	start := time.Now()
	for _, imp := range []struct{ typ, body string }{{"host", hostCSV}, {"service", svcCSV}, {"application", appCSV}} {
		res := e.do(http.MethodPost, "/api/v1/cmdb/import?type="+imp.typ, "operator", imp.body, "Content-Type", "text/csv")
		if res.Status != 200 {
			b.Fatalf("import %s: %d %.500s", imp.typ, res.Status, res.Body)
		}
	}
	importSecs := time.Since(start).Seconds()

	// 300,000 relations, seeded directly (not measured).
	ids := func(typ string) []int64 {
		var out []int64
		if err := e.store.DB.NewSelect().Table("cis").Column("id").Where("type = ?", typ).OrderExpr("id").Scan(ctx, &out); err != nil {
			b.Fatal(err)
		}
		return out
	}
	hostIDs, svcIDs, appIDs := ids("host"), ids("service"), ids("application")
	var rels []schema.Relation
	now := time.Now().UTC()
	add := func(typ string, s, t int64) {
		rels = append(rels, schema.Relation{Type: typ, SourceID: s, TargetID: t, CreatedAt: now, CreatedBy: "bench"})
	}
	for i, s := range svcIDs {
		for k := range 4 {
			add("runs_on", s, hostIDs[(i*4+k)%len(hostIDs)])
		}
		for k := 1; k <= 2; k++ {
			add("connects_to", s, svcIDs[(i+k*7919)%len(svcIDs)])
		}
	}
	for i, a := range appIDs {
		for k := range 12 {
			add("depends_on", a, svcIDs[(i*12+k)%len(svcIDs)])
		}
	}
	if err := e.store.DB.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		for i := 0; i < len(rels); i += 5000 {
			chunk := rels[i:min(i+5000, len(rels))]
			if _, err := tx.NewInsert().Model(&chunk).Exec(ctx); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	if _, err := e.store.DB.ExecContext(ctx, "ANALYZE"); err != nil {
		b.Fatal(err)
	}

	selector := "env=prod,role in (web,api),!deprecated"
	apiSel := "/api/v1/cmdb/cis?type=host&limit=100&selector=" + url.QueryEscape(selector)
	// The same rows and columns the API returns, labels included.
	rawSel := `SELECT c.*, COALESCE((SELECT json_object_agg(l.key, l.value)::text FROM ci_labels l WHERE l.ci_id = c.id), '{}') FROM cis c
		WHERE c.type = 'host'
		AND EXISTS (SELECT 1 FROM ci_labels l WHERE l.ci_id = c.id AND l.key = 'env' AND l.value = 'prod')
		AND EXISTS (SELECT 1 FROM ci_labels l WHERE l.ci_id = c.id AND l.key = 'role' AND l.value IN ('web','api'))
		AND NOT EXISTS (SELECT 1 FROM ci_labels l WHERE l.ci_id = c.id AND l.key = 'deprecated')
		ORDER BY c.id LIMIT 100`
	rawImpact := `WITH RECURSIVE up(id, depth) AS (
			SELECT r.source_id, 1 FROM relations r JOIN relation_types t ON t.name = r.type AND t.impact WHERE r.target_id = $1
			UNION
			SELECT r.source_id, up.depth + 1 FROM relations r JOIN relation_types t ON t.name = r.type AND t.impact
			JOIN up ON r.target_id = up.id WHERE up.depth < 3)
		SELECT c.id, c.type, c.name, MIN(up.depth) FROM up JOIN cis c ON c.id = up.id GROUP BY c.id, c.type, c.name ORDER BY 4, 1`
	// The reference is what a hand-written data layer would do: pgx's
	// default, prepared and cached statements, on its own pool.
	sqlDB, err := sql.Open("pgx", testenv.PostgresURL(b))
	if err != nil {
		b.Fatal(err)
	}
	defer sqlDB.Close()

	const n = 300
	measure := func(f func(i int)) (p50, p99 float64) {
		ds := make([]float64, n)
		for i := range n {
			t0 := time.Now()
			f(i)
			ds[i] = float64(time.Since(t0).Microseconds()) / 1000
		}
		sort.Float64s(ds)
		return ds[n/2], ds[n*99/100]
	}
	var selP50, selP99, sqlP50, sqlP99, impP50, impP99, impSQLP50, impSQLP99 float64
	for range b.N {
		selP50, selP99 = measure(func(int) {
			res := e.do(http.MethodGet, apiSel, "viewer", nil)
			if res.Status != 200 || strings.Count(string(res.Body), `"type":"host"`) != 100 {
				b.Fatalf("selector via api: %d %.300s", res.Status, res.Body)
			}
		})
		sqlP50, sqlP99 = measure(func(int) {
			rows, err := sqlDB.QueryContext(ctx, rawSel)
			if err != nil {
				b.Fatal(err)
			}
			k := 0
			for rows.Next() {
				k++
			}
			rows.Close()
			if k != 100 {
				b.Fatalf("raw selector: %d rows", k)
			}
		})
		impP50, impP99 = measure(func(i int) {
			id := hostIDs[(i*997)%len(hostIDs)]
			res := e.do(http.MethodGet, "/api/v1/cmdb/cis/"+strconv.FormatInt(id, 10)+"/impact?depth=3", "viewer", nil)
			if res.Status != 200 {
				b.Fatalf("impact via api: %d %.300s", res.Status, res.Body)
			}
		})
		impSQLP50, impSQLP99 = measure(func(i int) {
			id := hostIDs[(i*997)%len(hostIDs)]
			rows, err := sqlDB.QueryContext(ctx, rawImpact, id)
			if err != nil {
				b.Fatal(err)
			}
			for rows.Next() {
			}
			rows.Close()
		})
	}
	b.ReportMetric(importSecs, "import-100k-s")
	b.ReportMetric(selP50, "sel-api-p50-ms")
	b.ReportMetric(selP99, "sel-api-p99-ms")
	b.ReportMetric(sqlP50, "sel-sql-p50-ms")
	b.ReportMetric(sqlP99, "sel-sql-p99-ms")
	b.ReportMetric(selP99/sqlP99, "sel-p99-api/sql")
	b.ReportMetric(impP50, "impact3-api-p50-ms")
	b.ReportMetric(impP99, "impact3-api-p99-ms")
	b.ReportMetric(impSQLP50, "impact3-sql-p50-ms")
	b.ReportMetric(impSQLP99, "impact3-sql-p99-ms")
}
