// Package metrics bridges the Temporal SDK's metrics to Prometheus.
package metrics

import (
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"
)

// NewTemporalHandler returns a client.MetricsHandler that records the SDK's
// counters, gauges and timers on reg.
func NewTemporalHandler(reg prometheus.Registerer) client.MetricsHandler {
	return &handler{vecs: &vecs{reg: reg, m: map[string]*vec{}}}
}

// A Prometheus metric has a fixed label set, but the SDK may emit one name
// with different tags. The first use fixes the labels; later uses drop
// unknown tags and leave missing ones empty.
type vec struct {
	labels    []string
	counter   *prometheus.CounterVec
	gauge     *prometheus.GaugeVec
	histogram *prometheus.HistogramVec
}

type vecs struct {
	reg prometheus.Registerer
	mu  sync.Mutex
	m   map[string]*vec
}

type handler struct {
	vecs *vecs
	tags map[string]string
}

func (h *handler) WithTags(tags map[string]string) client.MetricsHandler {
	merged := make(map[string]string, len(h.tags)+len(tags))
	for k, v := range h.tags {
		merged[k] = v
	}
	for k, v := range tags {
		merged[sanitize(k)] = v
	}
	return &handler{vecs: h.vecs, tags: merged}
}

func (h *handler) get(name string, kind byte) (*vec, []string) {
	name = sanitize(name)
	h.vecs.mu.Lock()
	defer h.vecs.mu.Unlock()
	v, ok := h.vecs.m[name]
	if !ok {
		v = &vec{}
		for k := range h.tags {
			v.labels = append(v.labels, k)
		}
		sort.Strings(v.labels)
		var c prometheus.Collector
		switch kind {
		case 'c':
			v.counter = prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: "Temporal SDK counter " + name}, v.labels)
			c = v.counter
		case 'g':
			v.gauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: "Temporal SDK gauge " + name}, v.labels)
			c = v.gauge
		default:
			v.histogram = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name + "_seconds", Help: "Temporal SDK timer " + name,
				Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}}, v.labels)
			c = v.histogram
		}
		if err := h.vecs.reg.Register(c); err != nil {
			// Registered by another process-wide handler under the same
			// name with other labels: record nowhere rather than panic.
			v = &vec{}
		}
		h.vecs.m[name] = v
	}
	values := make([]string, len(v.labels))
	for i, l := range v.labels {
		values[i] = h.tags[l]
	}
	return v, values
}

func (h *handler) Counter(name string) client.MetricsCounter {
	v, vals := h.get(name, 'c')
	if v.counter == nil {
		return client.MetricsNopHandler.Counter(name)
	}
	c := v.counter.WithLabelValues(vals...)
	return counterFunc(func(d int64) { c.Add(float64(d)) })
}

func (h *handler) Gauge(name string) client.MetricsGauge {
	v, vals := h.get(name, 'g')
	if v.gauge == nil {
		return client.MetricsNopHandler.Gauge(name)
	}
	g := v.gauge.WithLabelValues(vals...)
	return gaugeFunc(g.Set)
}

func (h *handler) Timer(name string) client.MetricsTimer {
	v, vals := h.get(name, 't')
	if v.histogram == nil {
		return client.MetricsNopHandler.Timer(name)
	}
	o := v.histogram.WithLabelValues(vals...)
	return timerFunc(func(d time.Duration) { o.Observe(d.Seconds()) })
}

type counterFunc func(int64)

func (f counterFunc) Inc(d int64) { f(d) }

type gaugeFunc func(float64)

func (f gaugeFunc) Update(v float64) { f(v) }

type timerFunc func(time.Duration)

func (f timerFunc) Record(d time.Duration) { f(d) }

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' {
			return r
		}
		return '_'
	}, s)
}
