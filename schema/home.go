package schema

import (
	"context"
	"fmt"
	"time"

	"github.com/uptrace/bun"
)

// Overview is what the home page shows: what runs now, what waits for the
// viewer, what failed lately.
type Overview struct {
	Active        []Job    // queued, running, paused or awaiting approval, newest first
	ActiveTotal   int      // all of them, beyond the few listed
	Failed        []Job    // ended failed since Since, newest first
	FailedTotal   int      // all failed since Since
	ToDecide      []Ticket // pending tickets the viewer may decide, newest first
	ToDecideTotal int
	Since         time.Time
}

// activeJobStatuses are the states of a job that has not ended.
var activeJobStatuses = []string{JobQueued, JobRunning, JobPaused, JobAwaitingApproval}

// Overview gathers the home page: up to n jobs and tickets of each kind,
// with their totals. deciders are the viewer and whoever delegated to them
// (see TicketQuery.ToDecide).
func (s *Store) Overview(ctx context.Context, deciders []string, since time.Time, n int) (*Overview, error) {
	o := &Overview{Since: since}
	var err error
	if o.Active, o.ActiveTotal, err = s.jobsWhere(ctx, n, func(q *bun.SelectQuery) *bun.SelectQuery {
		return q.Where("status IN (?)", bun.In(activeJobStatuses))
	}); err != nil {
		return nil, err
	}
	if o.Failed, o.FailedTotal, err = s.jobsWhere(ctx, n, func(q *bun.SelectQuery) *bun.SelectQuery {
		return q.Where("status = ?", JobFailed).Where("ended_at >= ?", since.UTC())
	}); err != nil {
		return nil, err
	}
	if len(deciders) > 0 {
		var info PageInfo
		if o.ToDecide, info, err = s.TicketList(ctx, TicketQuery{ToDecide: deciders, Limit: n}); err != nil {
			return nil, err
		}
		o.ToDecideTotal = info.Total
	}
	return o, nil
}

func (s *Store) jobsWhere(ctx context.Context, n int, where func(*bun.SelectQuery) *bun.SelectQuery) ([]Job, int, error) {
	var js []Job
	total, err := where(s.DB.NewSelect().Model(&js).ExcludeColumn("params")).OrderExpr("id DESC").Limit(int64(n)).ScanAndCount(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("store: jobs: %w", err)
	}
	return js, int(total), nil
}

// WaitingCount counts the pending tickets deciders[0] may decide, for
// themselves or for whoever delegated to them (deciders[1:]): the badge
// on the navigation's Approvals link.
func (s *Store) WaitingCount(ctx context.Context, deciders []string) (int, error) {
	if len(deciders) == 0 {
		return 0, nil
	}
	_, info, err := s.TicketList(ctx, TicketQuery{ToDecide: deciders, Limit: 1})
	return info.Total, err
}
