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

// ssePoll is how often a Server-Sent Events stream looks for new data.
const ssePoll = 500 * time.Millisecond

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
// wrote the data.
func (a *API) streamSSE(c echo.Context, after int64, next func(after int64) ([]sseEvent, error)) error {
	ctx := c.Request().Context()
	w := c.Response()
	w.Header().Set(echo.HeaderContentType, "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	w.Flush()
	tick := time.NewTicker(ssePoll)
	defer tick.Stop()
	lastWrite := time.Now()
	for {
		es, err := next(after)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			a.log.Warn("event stream", "path", c.Path(), "error", err)
		}
		for _, e := range es {
			data, _ := json.Marshal(e.Data)
			if _, err := fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.ID, e.Name, data); err != nil {
				return nil
			}
			after = e.ID
		}
		if len(es) > 0 {
			w.Flush()
			lastWrite = time.Now()
			if len(es) >= 500 {
				continue // catching up
			}
		} else if time.Since(lastWrite) > 15*time.Second {
			if _, err := fmt.Fprint(w, ": keepalive\n\n"); err != nil {
				return nil
			}
			w.Flush()
			lastWrite = time.Now()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
