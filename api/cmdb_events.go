package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
)

// ssePoll is how often a feed's shared poll looks for new data; ssePage is
// the most rows one read returns.
const (
	ssePoll = 500 * time.Millisecond
	ssePage = 500
)

// cmdbEvents serves the ordered change feed from a cursor: a JSON page, or
// with Accept: text/event-stream a live stream (resumable with
// Last-Event-ID).
func (a *API) cmdbEvents(c echo.Context) error {
	bad := fieldErrors{}
	after := int64(0)
	cur := c.QueryParam("after")
	if id := c.Request().Header.Get("Last-Event-ID"); id != "" {
		cur = id
	}
	if cur != "" {
		n, err := strconv.ParseInt(cur, 10, 64)
		if err != nil || n < 0 {
			bad.add("after", "must be an event id (the cursor)")
		}
		after = n
	}
	limit := intParam(c.QueryParam("limit"), "limit", 1, 500, bad)
	if err := bad.err(); err != nil {
		return err
	}
	ctx := c.Request().Context()
	if !wantsSSE(c) {
		es, err := a.store.Events(ctx, after, limit)
		if err != nil {
			return err
		}
		next := after
		if len(es) > 0 {
			next = es[len(es)-1].ID
		}
		return c.JSON(http.StatusOK, map[string]any{"items": es, "next_cursor": strconv.FormatInt(next, 10)})
	}

	return a.streamSSE(c, after, func(after int64) ([]sseEvent, error) {
		es, err := a.store.Events(ctx, after, 500)
		out := make([]sseEvent, len(es))
		for i, e := range es {
			out[i] = sseEvent{ID: e.ID, Name: e.Kind + "." + e.Op, Data: e}
		}
		return out, err
	})
}

// sseEvent is one Server-Sent Event.
type sseEvent struct {
	ID   int64
	Name string
	Data any
}

func wantsSSE(c echo.Context) bool {
	return strings.Contains(c.Request().Header.Get(echo.HeaderAccept), "text/event-stream")
}

// streamSSE serves Server-Sent Events from next (called with the last ID
// sent) until the client goes away. Polling the database (not an
// in-process signal) keeps every API replica's stream complete, whoever
// wrote the data; but one poll per feed serves every stream of it (see
// feeds), and each user may hold at most maxStreamsPerUser streams (429
// beyond). A stream first catches up from its cursor with its own reads.
func (a *API) streamSSE(c echo.Context, after int64, next func(after int64) ([]sseEvent, error)) error {
	ctx := c.Request().Context()
	var uid int64
	if u := userOf(c); u != nil {
		uid = u.ID
	}
	if !a.streams.acquire(uid) {
		c.Response().Header().Set("Retry-After", "5")
		return newError(http.StatusTooManyRequests, codeTooManyRequests,
			fmt.Sprintf("at most %d open event streams per user; close one first", a.streams.max))
	}
	defer a.streams.release(uid)
	w := c.Response()
	w.Header().Set(echo.HeaderContentType, "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	w.Flush()
	lastWrite := time.Now()
	send := func(es []sseEvent) bool {
		n := 0
		for _, e := range es {
			if e.ID <= after {
				continue
			}
			data, _ := json.Marshal(e.Data)
			if _, err := fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.ID, e.Name, data); err != nil {
				return false
			}
			after = e.ID
			n++
		}
		if n > 0 {
			w.Flush()
			lastWrite = time.Now()
		}
		return true
	}
	catchUp := func() bool {
		for {
			es, err := next(after)
			if err != nil {
				if ctx.Err() == nil {
					a.log.Warn("event stream", "path", c.Path(), "error", err)
				}
				return false
			}
			if !send(es) {
				return false
			}
			if len(es) < ssePage {
				return true
			}
		}
	}
	if !catchUp() {
		return nil
	}
	sub := &feedSub{ctx: ctx, poll: next, ch: make(chan []sseEvent, 64)}
	key := feedKey(c)
	a.feeds.subscribe(key, sub, after)
	defer a.feeds.unsubscribe(key, sub)
	// The shared poll may be ahead of this stream: read the gap once.
	if !catchUp() {
		return nil
	}
	keepalive := time.NewTicker(5 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case es, ok := <-sub.ch:
			if !ok {
				return nil // too slow to follow: the client resumes from its Last-Event-ID
			}
			if !send(es) {
				return nil
			}
		case <-keepalive.C:
			if time.Since(lastWrite) > 15*time.Second {
				if _, err := fmt.Fprint(w, ": keepalive\n\n"); err != nil {
					return nil
				}
				w.Flush()
				lastWrite = time.Now()
			}
		}
	}
}

// feedKey names what a stream follows: its path and query, without the
// cursor.
func feedKey(c echo.Context) string {
	q := c.Request().URL.Query()
	q.Del("after")
	q.Del("limit")
	return c.Request().URL.Path + "?" + q.Encode()
}
