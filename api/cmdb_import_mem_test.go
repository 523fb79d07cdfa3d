package api

import (
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opsflow/opsflow/internal/testenv"
)

// csvRows generates a CSV import of about size bytes, one row at a time, so
// the test itself holds none of it.
type csvRows struct {
	prefix  string
	size    int64
	sent    int64
	n       int
	pending []byte
	padding string
}

func newCSVRows(prefix string, size int64) *csvRows {
	return &csvRows{prefix: prefix, size: size, pending: []byte("name,labels,cpu_count,os,services\n"),
		padding: strings.Repeat("x", 400)}
}

func (g *csvRows) Read(p []byte) (int, error) {
	if len(g.pending) == 0 {
		if g.sent >= g.size {
			return 0, io.EOF
		}
		g.n++
		g.pending = fmt.Appendf(nil, "%s%07d,\"env=prod,rack=r%d\",%d,debian,\"[{\"\"name\"\":\"\"svc%d\"\",\"\"note\"\":\"\"%s\"\"}]\"\n",
			g.prefix, g.n, g.n%40, 1+g.n%64, g.n, g.padding)
	}
	k := copy(p, g.pending)
	g.pending = g.pending[k:]
	g.sent += int64(k)
	return k, nil
}

// heapPeak samples HeapInuse until stop is called, which returns the
// highest sample minus the heap in use (after a GC) when it started.
func heapPeak() (stop func() uint64) {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	peak.Store(base)
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-finished
		return peak.Load() - base
	}
}

// TestCMDBImportMemoryBounded dry-runs a 50 MB CSV (100,000 hosts) through
// the import API: the heap it needs stays far below the body's size
// (issue 9: the same dry run used to take 1.1 GB).
func TestCMDBImportMemoryBounded(t *testing.T) {
	if testenv.Short() {
		t.Skip("needs Temporal and PostgreSQL; skipped by -short")
	}
	e := newEnvWith(t, envOptions{noWorkers: true})
	const size, bound = 50 << 20, 100 << 20
	body := newCSVRows(fmt.Sprintf("mem%d-", time.Now().UnixNano()), size)
	stop := heapPeak()
	start := time.Now()
	res := e.do(http.MethodPost, "/api/v1/cmdb/import?type=host&dry_run=true", "operator", io.Reader(body), "Content-Type", "text/csv")
	peak := stop()
	var rep struct{ Rows, Created int }
	res.json(t, &rep)
	if res.Status != 200 || rep.Rows != body.n || rep.Created != body.n {
		t.Fatalf("dry run of %d rows: %d %.500s", body.n, res.Status, res.Body)
	}
	t.Logf("dry run of %d MB (%d rows) in %s: heap peak +%.1f MB", body.sent>>20, body.n, time.Since(start).Round(time.Millisecond), float64(peak)/(1<<20))
	if peak > bound {
		t.Fatalf("heap grew by %d MB importing %d MB; bound %d MB", peak>>20, body.sent>>20, bound>>20)
	}
}
