package schema_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/opsflow/opsflow/internal/testenv"
	"github.com/opsflow/opsflow/schema"
)

// pageFn reads one page of a list as row keys.
type pageFn func(p schema.Page) ([]string, schema.PageInfo, error)

// walkBothWays reads a list forward to its end, then back from the last
// page to the first, and checks that every row shows exactly once each
// way, in want's order, with the total on every page.
func walkBothWays(t *testing.T, read pageFn, base schema.Page, want []string) {
	t.Helper()
	var pages [][]string
	p := base
	for range len(want) + 2 {
		rows, info, err := read(p)
		if err != nil {
			t.Fatal(err)
		}
		if info.Total != len(want) {
			t.Fatalf("total %d, want %d", info.Total, len(want))
		}
		if len(pages) == 0 && info.Prev != "" {
			t.Fatalf("first page has a previous page")
		}
		pages = append(pages, rows)
		if info.Next == "" {
			break
		}
		if info.Prev == "" && len(pages) > 1 {
			t.Fatalf("page %d has no previous page", len(pages))
		}
		p.Cursor = info.Next
	}
	if got := slices.Concat(pages...); !slices.Equal(got, want) {
		t.Fatalf("forward:\n got %v\nwant %v", got, want)
	}
	// Back from the last page: the same pages, in reverse.
	_, info, err := read(p)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(pages) - 2; i >= 0; i-- {
		if info.Prev == "" {
			t.Fatalf("page %d: no previous cursor", i+2)
		}
		p.Cursor = info.Prev
		var rows []string
		rows, info, err = read(p)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(rows, pages[i]) {
			t.Fatalf("back to page %d: got %v, want %v", i+1, rows, pages[i])
		}
		if info.Next == "" {
			t.Fatalf("page %d read backward has no next cursor", i+1)
		}
	}
	if info.Prev != "" {
		t.Fatalf("back on the first page, a previous cursor remains")
	}
}

func TestListsPageBothWays(t *testing.T) {
	ctx := context.Background()
	for engine, s := range stores(t) {
		t.Run(string(engine), func(t *testing.T) {
			sfx := fmt.Sprintf("%s-%d", engine, time.Now().UnixNano())
			cr := &schema.Credential{Name: "key-" + sfx, Kind: schema.CredSSHKey, Auth: schema.CredSSHKey, Username: "root", Secret: "sealed"}
			if err := s.CreateCredential(ctx, cr); err != nil {
				t.Fatal(err)
			}
			sc, _, err := s.CreateScript(ctx, schema.ScriptInput{Name: "list-" + sfx, Content: "true"}, "alice")
			if err != nil {
				t.Fatal(err)
			}
			// Eleven jobs in three states; the status sort has ties that
			// the ID must break, across page boundaries.
			by := "lister-" + sfx
			var jobs []schema.Job
			for i := range 11 {
				status := []string{schema.JobSucceeded, schema.JobFailed, schema.JobRunning}[i%3]
				j := &schema.Job{WorkflowID: fmt.Sprintf("job:%s-%d", sfx, i), ScriptID: sc.ID, ScriptVersion: 1, CredentialID: cr.ID,
					Status: status, CreatedBy: by, Summary: fmt.Sprintf("summary %d", i)}
				host := schema.JobHost{Address: fmt.Sprintf("10.9.%d.1", i%2)}
				if err := s.CreateJob(ctx, j, []schema.JobHost{host}); err != nil {
					t.Fatal(err)
				}
				jobs = append(jobs, *j)
			}
			readJobs := func(f schema.JobFilter) pageFn {
				return func(p schema.Page) ([]string, schema.PageInfo, error) {
					f.Page = p
					js, info, err := s.JobList(ctx, f)
					var ids []string
					for _, j := range js {
						ids = append(ids, strconv.FormatInt(j.ID, 10))
					}
					return ids, info, err
				}
			}
			ids := func(keep func(j schema.Job) bool, less func(a, b schema.Job) int) []string {
				var out []schema.Job
				for _, j := range jobs {
					if keep(j) {
						out = append(out, j)
					}
				}
				slices.SortStableFunc(out, less)
				var s []string
				for _, j := range out {
					s = append(s, strconv.FormatInt(j.ID, 10))
				}
				return s
			}
			all := func(schema.Job) bool { return true }
			newest := func(a, b schema.Job) int { return int(b.ID - a.ID) }
			t.Run("newest first", func(t *testing.T) {
				walkBothWays(t, readJobs(schema.JobFilter{CreatedBy: by}), schema.Page{Limit: 4}, ids(all, newest))
			})
			t.Run("by status then id, ascending", func(t *testing.T) {
				walkBothWays(t, readJobs(schema.JobFilter{CreatedBy: by}), schema.Page{Sort: "status", Order: "asc", Limit: 3},
					ids(all, func(a, b schema.Job) int {
						if a.Status != b.Status {
							if a.Status < b.Status {
								return -1
							}
							return 1
						}
						return int(a.ID - b.ID)
					}))
			})
			t.Run("filters", func(t *testing.T) {
				walkBothWays(t, readJobs(schema.JobFilter{CreatedBy: by, Status: schema.JobFailed}), schema.Page{Limit: 2},
					ids(func(j schema.Job) bool { return j.Status == schema.JobFailed }, newest))
				walkBothWays(t, readJobs(schema.JobFilter{CreatedBy: by, Host: "10.9.1.1"}), schema.Page{Limit: 2},
					ids(func(j schema.Job) bool { return j.ID%2 != jobs[0].ID%2 }, newest))
				walkBothWays(t, readJobs(schema.JobFilter{CreatedBy: by, Q: "summary 10"}), schema.Page{}, []string{strconv.FormatInt(jobs[10].ID, 10)})
				walkBothWays(t, readJobs(schema.JobFilter{CreatedBy: by, Q: "list-" + sfx}), schema.Page{Limit: 5}, ids(all, newest))
				walkBothWays(t, readJobs(schema.JobFilter{CreatedBy: by, Since: time.Now().Add(time.Hour)}), schema.Page{}, nil)
			})
			t.Run("bad sort and cursor", func(t *testing.T) {
				var ve *schema.ValidationError
				if _, _, err := s.JobList(ctx, schema.JobFilter{Page: schema.Page{Sort: "params"}}); !errors.As(err, &ve) || ve.Fields["sort"] == "" {
					t.Fatalf("unknown sort: %v", err)
				}
				if _, _, err := s.JobList(ctx, schema.JobFilter{Page: schema.Page{Order: "sideways"}}); !errors.As(err, &ve) || ve.Fields["order"] == "" {
					t.Fatalf("unknown order: %v", err)
				}
				_, info, err := s.JobList(ctx, schema.JobFilter{CreatedBy: by, Page: schema.Page{Limit: 2}})
				if err != nil {
					t.Fatal(err)
				}
				// A cursor belongs to its sort.
				if _, _, err := s.JobList(ctx, schema.JobFilter{Page: schema.Page{Sort: "status", Cursor: info.Next}}); !errors.Is(err, schema.ErrBadCursor) {
					t.Fatalf("cursor of another sort: %v", err)
				}
				if _, _, err := s.JobList(ctx, schema.JobFilter{Page: schema.Page{Cursor: "!!"}}); !errors.Is(err, schema.ErrBadCursor) {
					t.Fatalf("bad cursor: %v", err)
				}
			})

			t.Run("runs by time with equal times", func(t *testing.T) {
				base := time.Now().UTC().Truncate(time.Second)
				var want []string
				for i := range 7 {
					r := &schema.Run{WorkflowID: fmt.Sprintf("demo:%s-%d", sfx, i), Kind: "demo", StartedBy: by, StartedAt: base.Add(time.Duration(i/2) * time.Second)}
					if err := s.RecordRunStart(ctx, r); err != nil {
						t.Fatal(err)
					}
					want = append(want, r.WorkflowID)
				}
				slices.Reverse(want) // newest first; equal times by workflow ID, descending
				walkBothWays(t, func(p schema.Page) ([]string, schema.PageInfo, error) {
					rs, info, err := s.RunList(ctx, schema.RunFilter{StartedBy: by, Sort: p.Sort, Order: p.Order, Cursor: p.Cursor, Limit: p.Limit})
					var out []string
					for _, r := range rs {
						out = append(out, r.WorkflowID)
					}
					return out, info, err
				}, schema.Page{Limit: 3}, want)
			})

			t.Run("audit by actor", func(t *testing.T) {
				var want []string
				for i := range 6 {
					e := &schema.AuditEntry{Actor: fmt.Sprintf("%s-%d", by, i%2), Action: "list.test", Target: "t:" + sfx}
					if err := s.AppendAudit(ctx, e); err != nil {
						t.Fatal(err)
					}
					want = append(want, fmt.Sprintf("%d", e.ID))
				}
				// actor descending (…-1 before …-0), then ID descending.
				want = []string{want[5], want[3], want[1], want[4], want[2], want[0]}
				walkBothWays(t, func(p schema.Page) ([]string, schema.PageInfo, error) {
					es, info, err := s.AuditList(ctx, schema.AuditFilter{Target: "t:" + sfx, Sort: p.Sort, Order: p.Order, Cursor: p.Cursor, Limit: p.Limit})
					var out []string
					for _, e := range es {
						out = append(out, fmt.Sprintf("%d", e.ID))
					}
					return out, info, err
				}, schema.Page{Sort: "actor", Order: "desc", Limit: 4}, want)
			})

			t.Run("tickets", func(t *testing.T) {
				var want []string
				for i := range 5 {
					tk := &schema.Ticket{WorkflowID: fmt.Sprintf("approval:%s-%d", sfx, i), Title: fmt.Sprintf("change %s %d", sfx, i), Requester: by, PolicyName: "p"}
					if err := s.CreateTicket(ctx, tk); err != nil {
						t.Fatal(err)
					}
					want = append(want, strconv.FormatInt(tk.ID, 10))
				}
				walkBothWays(t, func(p schema.Page) ([]string, schema.PageInfo, error) {
					ts, info, err := s.TicketList(ctx, schema.TicketQuery{Q: "change " + sfx, Sort: p.Sort, Order: p.Order, Cursor: p.Cursor, Limit: p.Limit})
					var out []string
					for _, tk := range ts {
						out = append(out, strconv.FormatInt(tk.ID, 10))
					}
					return out, info, err
				}, schema.Page{Sort: "title", Order: "asc", Limit: 2}, want)
			})
		})
	}
}

// BenchmarkListsAtScale times list pages over 1,200 jobs (3 hosts each)
// and 5,000 CIs on each engine: the first page, a page deep in the list by
// cursor, and filtered pages, each with its total.
//
//	go test -run '^$' -bench BenchmarkListsAtScale ./schema
func BenchmarkListsAtScale(b *testing.B) {
	ctx := context.Background()
	for _, dsn := range []string{filepath.Join(b.TempDir(), "bench.db"), testenv.PostgresURL(b)} {
		s, err := schema.Open(ctx, dsn)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		if _, err := s.MigrateUp(ctx); err != nil {
			b.Fatal(err)
		}
		sfx := fmt.Sprintf("%s-%d", s.Engine, time.Now().UnixNano())
		cr := &schema.Credential{Name: "key-" + sfx, Kind: schema.CredSSHKey, Auth: schema.CredSSHKey, Username: "root", Secret: "sealed"}
		if err := s.CreateCredential(ctx, cr); err != nil {
			b.Fatal(err)
		}
		sc, _, err := s.CreateScript(ctx, schema.ScriptInput{Name: "bench-" + sfx, Content: "true"}, "alice")
		if err != nil {
			b.Fatal(err)
		}
		by := "bench-" + sfx
		for i := range 1200 {
			j := &schema.Job{WorkflowID: fmt.Sprintf("job:%s-%d", sfx, i), ScriptID: sc.ID, ScriptVersion: 1, CredentialID: cr.ID,
				Status: []string{schema.JobSucceeded, schema.JobFailed, schema.JobRunning}[i%3], CreatedBy: by}
			hosts := []schema.JobHost{{Address: fmt.Sprintf("10.%d.%d.1", i%7, i%50)}, {Address: "10.99.0.1"}, {Address: fmt.Sprintf("h%d", i)}}
			if err := s.CreateJob(ctx, j, hosts); err != nil {
				b.Fatal(err)
			}
		}
		rows := make([]schema.ImportRow, 5000)
		for i := range rows {
			rows[i] = schema.ImportRow{Name: fmt.Sprintf("%s-host-%05d", sfx, i), Labels: map[string]string{"env": []string{"prod", "dev"}[i%2]}}
		}
		if rep, err := s.Import(ctx, "host", schema.ImportRows(rows), false, schema.Change{Actor: "bench"}); err != nil || len(rep.Errors) > 0 {
			b.Fatalf("import: %v %+v", err, rep)
		}
		// The cursor of a page deep in each list.
		deep := func(next func(cursor string) (string, error)) string {
			c := ""
			for range 10 {
				n, err := next(c)
				if err != nil {
					b.Fatal(err)
				}
				c = n
			}
			return c
		}
		jobCursor := deep(func(c string) (string, error) {
			_, info, err := s.JobList(ctx, schema.JobFilter{Page: schema.Page{Cursor: c, Limit: 100}})
			return info.Next, err
		})
		ciCursor := deep(func(c string) (string, error) {
			_, info, err := s.CIList(ctx, schema.CIQuery{Sort: "name", Cursor: c, Limit: 400})
			return info.Next, err
		})
		for name, read := range map[string]func() error{
			"jobs/first": func() error { _, _, err := s.JobList(ctx, schema.JobFilter{}); return err },
			"jobs/deep": func() error {
				_, _, err := s.JobList(ctx, schema.JobFilter{Page: schema.Page{Cursor: jobCursor, Limit: 100}})
				return err
			},
			"jobs/status": func() error { _, _, err := s.JobList(ctx, schema.JobFilter{Status: schema.JobFailed}); return err },
			"jobs/host":   func() error { _, _, err := s.JobList(ctx, schema.JobFilter{Host: "10.3.7.1"}); return err },
			"jobs/search": func() error { _, _, err := s.JobList(ctx, schema.JobFilter{Q: "bench"}); return err },
			"cis/first":   func() error { _, _, err := s.CIList(ctx, schema.CIQuery{}); return err },
			"cis/deep-byname": func() error {
				_, _, err := s.CIList(ctx, schema.CIQuery{Sort: "name", Cursor: ciCursor, Limit: 400})
				return err
			},
			"cis/selector": func() error {
				_, _, err := s.CIList(ctx, schema.CIQuery{Selector: "env=prod", Sort: "updated"})
				return err
			},
		} {
			b.Run(string(s.Engine)+"/"+name, func(b *testing.B) {
				for b.Loop() {
					if err := read(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
