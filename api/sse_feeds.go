package api

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// maxStreamsPerUser bounds the event streams one user may hold open.
const maxStreamsPerUser = 10

// streamLimits counts open event streams per user.
type streamLimits struct {
	mu   sync.Mutex
	max  int
	open map[int64]int
}

func newStreamLimits(max int) *streamLimits {
	return &streamLimits{max: max, open: map[int64]int{}}
}

func (s *streamLimits) acquire(uid int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open[uid] >= s.max {
		return false
	}
	s.open[uid]++
	return true
}

func (s *streamLimits) release(uid int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open[uid]--; s.open[uid] <= 0 {
		delete(s.open, uid)
	}
}

// feeds run one database poll per followed feed (the CMDB change feed, a
// job's output) and fan its new rows out to every stream following it, so
// a thousand viewers cost one query per poll interval, not a thousand.
// A feed's poll stops when its last stream leaves.
type feeds struct {
	mu    sync.Mutex
	log   *slog.Logger
	byKey map[string]*feed
	// polls counts the shared polls made, for tests and profiling.
	polls atomic.Int64
}

type feed struct {
	last int64
	subs map[*feedSub]struct{}
	quit chan struct{}
}

// feedSub is one stream following a feed. Its poll reads the feed with the
// stream's own request context; the feed polls through any live stream's.
type feedSub struct {
	ctx  context.Context
	poll func(after int64) ([]sseEvent, error)
	ch   chan []sseEvent // closed when the stream falls too far behind
}

func newFeeds(log *slog.Logger) *feeds {
	return &feeds{log: log, byKey: map[string]*feed{}}
}

// subscribe adds s to the feed key, starting its poll from pos when it is
// the first.
func (f *feeds) subscribe(key string, s *feedSub, pos int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fd := f.byKey[key]
	if fd == nil {
		fd = &feed{last: pos, subs: map[*feedSub]struct{}{}, quit: make(chan struct{})}
		f.byKey[key] = fd
		go f.run(key, fd)
	}
	fd.subs[s] = struct{}{}
}

func (f *feeds) unsubscribe(key string, s *feedSub) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fd := f.byKey[key]
	if fd == nil {
		return
	}
	delete(fd.subs, s)
	if len(fd.subs) == 0 {
		delete(f.byKey, key)
		close(fd.quit)
	}
}

// poller returns a stream whose request is still alive, and the position.
func (f *feeds) poller(fd *feed) (*feedSub, int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range fd.subs {
		if s.ctx.Err() == nil {
			return s, fd.last
		}
	}
	return nil, fd.last
}

func (f *feeds) run(key string, fd *feed) {
	tick := time.NewTicker(ssePoll)
	defer tick.Stop()
	for {
		if s, after := f.poller(fd); s != nil {
			es, err := s.poll(after)
			f.polls.Add(1)
			if err != nil && s.ctx.Err() == nil {
				f.log.Warn("event feed poll", "feed", key, "error", err)
			}
			if len(es) > 0 {
				f.fanOut(fd, es)
				if len(es) >= ssePage {
					continue // catching up
				}
			}
		}
		select {
		case <-fd.quit:
			return
		case <-tick.C:
		}
	}
}

// fanOut hands es to every stream; one whose buffer is full is dropped
// (its channel closed) rather than holding the others or memory.
func (f *feeds) fanOut(fd *feed, es []sseEvent) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fd.last = es[len(es)-1].ID
	for s := range fd.subs {
		select {
		case s.ch <- es:
		default:
			delete(fd.subs, s)
			close(s.ch)
		}
	}
}
