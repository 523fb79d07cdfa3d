package schema

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/uptrace/bun"
)

// The filtered, sorted and paged lists of jobs, runs, tickets and audit
// entries (CIs page in CIList, beside their hand-built query). Each takes
// its filter with the Page fields (paging.go) and returns one page.

// JobFilter selects jobs; zero fields match everything.
type JobFilter struct {
	Status    string
	ScriptID  int64
	CreatedBy string
	// Host is an address or a CI name: jobs with a host of that address
	// or that CI.
	Host         string
	Since, Until time.Time // created in [Since, Until)
	// Q searches the script's name, the job's ID and its summary.
	Q string
	Page
}

// JobList lists one page of jobs.
func (s *Store) JobList(ctx context.Context, f JobFilter) ([]Job, PageInfo, error) {
	k, err := newKeyset(s.Engine, "jobs", f.Page)
	if err != nil {
		return nil, PageInfo{}, err
	}
	var js []Job
	q := s.DB.NewSelect().Model(&js).ExcludeColumn("params")
	q = whereIf(q, f.Status != "", "status = ?", f.Status)
	q = whereIf(q, f.ScriptID != 0, "script_id = ?", f.ScriptID)
	q = whereIf(q, f.CreatedBy != "", "created_by = ?", f.CreatedBy)
	q = whereIf(q, f.Host != "", "id IN (SELECT h.job_id FROM job_hosts h WHERE h.address = ? OR h.ci_id IN (SELECT c.id FROM cis c WHERE c.name = ?))", f.Host, f.Host)
	q = s.whereTimes(q, "created_at", f.Since, f.Until)
	if f.Q != "" {
		like := textSearch(f.Q)
		q = q.WhereGroup(" AND ", func(q *bun.SelectQuery) *bun.SelectQuery {
			q = q.Where("LOWER(summary) LIKE ?", like).WhereOr("script_id IN (SELECT sc.id FROM scripts sc WHERE LOWER(sc.name) LIKE ?)", like)
			if id, err := strconv.ParseInt(trimHash(f.Q), 10, 64); err == nil {
				q = q.WhereOr("id = ?", id)
			}
			return q
		})
	}
	js, info, err := scanPage(ctx, k, q, &js, func(j *Job) (any, any) {
		switch k.sort {
		case "created":
			return j.CreatedAt, j.ID
		case "status":
			return j.Status, j.ID
		case "created_by":
			return j.CreatedBy, j.ID
		case "script":
			return j.ScriptID, j.ID
		case "hosts":
			return int64(j.Total), j.ID
		}
		return j.ID, j.ID
	})
	if err != nil {
		return nil, PageInfo{}, fmt.Errorf("store: jobs: %w", err)
	}
	return js, info, nil
}

// trimHash lets "#12" find job 12.
func trimHash(s string) string {
	if len(s) > 1 && s[0] == '#' {
		return s[1:]
	}
	return s
}

// RunList lists one page of runs.
func (s *Store) RunList(ctx context.Context, f RunFilter) ([]Run, PageInfo, error) {
	return s.runList(ctx, f, true)
}

func (s *Store) runList(ctx context.Context, f RunFilter, size bool) ([]Run, PageInfo, error) {
	k, err := newKeyset(s.Engine, "runs", Page{Sort: f.Sort, Order: f.Order, Cursor: f.Cursor, Limit: f.Limit})
	if err != nil {
		return nil, PageInfo{}, err
	}
	k.wantSize = size
	var rs []Run
	q := s.DB.NewSelect().Model(&rs)
	q = whereIf(q, f.Kind != "", "kind = ?", f.Kind)
	q = whereIf(q, f.Status != "", "status = ?", f.Status)
	q = whereIf(q, f.StartedBy != "", "started_by = ?", f.StartedBy)
	q = s.whereTimes(q, "started_at", f.Since, f.Until)
	if f.Q != "" {
		like := textSearch(f.Q)
		q = q.WhereGroup(" AND ", func(q *bun.SelectQuery) *bun.SelectQuery {
			return q.Where("LOWER(workflow_id) LIKE ?", like).WhereOr("LOWER(target) LIKE ?", like)
		})
	}
	rs, info, err := scanPage(ctx, k, q, &rs, func(r *Run) (any, any) {
		switch k.sort {
		case "started":
			return r.StartedAt, r.WorkflowID
		case "kind":
			return r.Kind, r.WorkflowID
		case "status":
			return r.Status, r.WorkflowID
		case "started_by":
			return r.StartedBy, r.WorkflowID
		}
		return r.WorkflowID, r.WorkflowID
	})
	if err != nil {
		return nil, PageInfo{}, fmt.Errorf("store: runs: %w", err)
	}
	return rs, info, nil
}

// TicketList lists one page of tickets.
func (s *Store) TicketList(ctx context.Context, tq TicketQuery) ([]Ticket, PageInfo, error) {
	return s.ticketList(ctx, tq, true)
}

func (s *Store) ticketList(ctx context.Context, tq TicketQuery, size bool) ([]Ticket, PageInfo, error) {
	k, err := newKeyset(s.Engine, "tickets", Page{Sort: tq.Sort, Order: tq.Order, Cursor: tq.Cursor, Limit: tq.Limit})
	if err != nil {
		return nil, PageInfo{}, err
	}
	k.wantSize = size
	var ts []Ticket
	q := s.DB.NewSelect().Model(&ts).ExcludeColumn("policy")
	q = whereIf(q, tq.Status != "", "status = ?", tq.Status)
	q = whereIf(q, tq.RequestedBy != "", "requester = ?", tq.RequestedBy)
	if len(tq.ToDecide) > 0 {
		q = q.Where("status = ?", TicketPending).
			Where("id IN (SELECT ticket_id FROM approval_ticket_approvers WHERE username IN (?))", bun.In(tq.ToDecide)).
			Where("requester NOT IN (?)", bun.In(tq.ToDecide[:1]))
	}
	q = whereIf(q, tq.After > 0, "id < ?", tq.After)
	q = s.whereTimes(q, "created_at", tq.Since, tq.Until)
	q = whereIf(q, tq.Q != "", "LOWER(title) LIKE ?", textSearch(tq.Q))
	ts, info, err := scanPage(ctx, k, q, &ts, func(t *Ticket) (any, any) {
		switch k.sort {
		case "created":
			return t.CreatedAt, t.ID
		case "status":
			return t.Status, t.ID
		case "requester":
			return t.Requester, t.ID
		case "title":
			return t.Title, t.ID
		}
		return t.ID, t.ID
	})
	if err != nil {
		return nil, PageInfo{}, fmt.Errorf("store: tickets: %w", err)
	}
	return ts, info, nil
}

// AuditList lists one page of audit entries.
func (s *Store) AuditList(ctx context.Context, f AuditFilter) ([]AuditEntry, PageInfo, error) {
	return s.auditList(ctx, f, true)
}

func (s *Store) auditList(ctx context.Context, f AuditFilter, size bool) ([]AuditEntry, PageInfo, error) {
	k, err := newKeyset(s.Engine, "audit", Page{Sort: f.Sort, Order: f.Order, Cursor: f.Cursor, Limit: f.Limit})
	if err != nil {
		return nil, PageInfo{}, err
	}
	k.wantSize = size
	var es []AuditEntry
	q := s.DB.NewSelect().Model(&es)
	q = whereIf(q, f.Actor != "", "actor = ?", f.Actor)
	if n := len(f.Action); n > 0 && f.Action[n-1] == '*' {
		q = q.Where("action LIKE ?", escapeLike(f.Action[:n-1])+"%")
	} else if n > 0 {
		q = q.Where("action = ?", f.Action)
	}
	q = whereIf(q, f.Target != "", "target = ?", f.Target)
	q = s.whereTimes(q, "at", f.Since, f.Until)
	q = whereIf(q, f.Before > 0, "id < ?", f.Before)
	if f.Q != "" {
		like := textSearch(f.Q)
		q = q.WhereGroup(" AND ", func(q *bun.SelectQuery) *bun.SelectQuery {
			return q.Where("LOWER(target) LIKE ?", like).WhereOr("LOWER(detail) LIKE ?", like)
		})
	}
	es, info, err := scanPage(ctx, k, q, &es, func(e *AuditEntry) (any, any) {
		switch k.sort {
		case "at":
			return e.At, e.ID
		case "actor":
			return e.Actor, e.ID
		case "action":
			return e.Action, e.ID
		case "target":
			return e.Target, e.ID
		case "status":
			return int64(e.Status), e.ID
		}
		return e.ID, e.ID
	})
	if err != nil {
		return nil, PageInfo{}, fmt.Errorf("store: audit: %w", err)
	}
	return es, info, nil
}

func whereIf(q *bun.SelectQuery, cond bool, where string, args ...any) *bun.SelectQuery {
	if cond {
		return q.Where(where, args...)
	}
	return q
}

// whereTimes keeps rows whose column lies in [since, until); a zero time
// leaves that end open.
func (s *Store) whereTimes(q *bun.SelectQuery, col string, since, until time.Time) *bun.SelectQuery {
	q = whereIf(q, !since.IsZero(), col+" >= ?", timeArg(s.Engine, since))
	return whereIf(q, !until.IsZero(), col+" < ?", timeArg(s.Engine, until))
}

// JobIDsByWorkflow maps the workflow IDs of jobs to the jobs' IDs (those
// that are jobs).
func (s *Store) JobIDsByWorkflow(ctx context.Context, wids []string) (map[string]int64, error) {
	return s.idsByWorkflow(ctx, "jobs", wids)
}

// TicketIDsByWorkflow maps the workflow IDs of approval tickets to the
// tickets' IDs.
func (s *Store) TicketIDsByWorkflow(ctx context.Context, wids []string) (map[string]int64, error) {
	return s.idsByWorkflow(ctx, "approval_tickets", wids)
}

func (s *Store) idsByWorkflow(ctx context.Context, table string, wids []string) (map[string]int64, error) {
	out := map[string]int64{}
	if len(wids) == 0 {
		return out, nil
	}
	var rows []struct {
		ID         int64  `bun:"id"`
		WorkflowID string `bun:"workflow_id"`
	}
	if err := s.DB.NewSelect().Table(table).Column("id", "workflow_id").Where("workflow_id IN (?)", bun.In(wids)).Scan(ctx, &rows); err != nil {
		return nil, fmt.Errorf("store: %s by workflow: %w", table, err)
	}
	for _, r := range rows {
		out[r.WorkflowID] = r.ID
	}
	return out, nil
}

// ScriptNames maps script IDs to their names.
func (s *Store) ScriptNames(ctx context.Context, ids []int64) (map[int64]string, error) {
	out := map[int64]string{}
	if len(ids) == 0 {
		return out, nil
	}
	var rows []struct {
		ID   int64  `bun:"id"`
		Name string `bun:"name"`
	}
	if err := s.DB.NewSelect().Table("scripts").Column("id", "name").Where("id IN (?)", bun.In(ids)).Scan(ctx, &rows); err != nil {
		return nil, fmt.Errorf("store: script names: %w", err)
	}
	for _, r := range rows {
		out[r.ID] = r.Name
	}
	return out, nil
}

// ScriptIDByName returns the ID of the script called name.
func (s *Store) ScriptIDByName(ctx context.Context, name string) (int64, error) {
	var id int64
	if err := s.DB.NewSelect().Table("scripts").Column("id").Where("name = ?", name).Scan(ctx, &id); err != nil {
		return 0, fmt.Errorf("store: script %q: %w", name, notFound(err))
	}
	return id, nil
}
