package api

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
)

// What the HTTP edge allows before a request reaches a handler: who may
// speak for a client's address and request ID, how long a body may take
// to arrive, and how much an unauthenticated client may cause.
const (
	// bodyTimeout bounds how long a request body may take to arrive;
	// importRoutes get importBodyTimeout (large CSV uploads).
	bodyTimeout       = time.Minute
	importBodyTimeout = 15 * time.Minute
	// Anonymous requests that the audit log records (unsafe methods and
	// refused credentials on a real route) take a token from their source
	// address's bucket: anonBurst at once, then anonRate per second.
	anonBurst = 120
	anonRate  = 2.0
	// limiterKeys bounds the addresses a limiter remembers; beyond it new
	// addresses share one bucket.
	limiterKeys = 10000
	// maxRequestIDLen bounds an X-Request-Id taken from a trusted proxy.
	maxRequestIDLen = 128
)

// importRoutes are the routes whose bodies may take importBodyTimeout.
var importRoutes = map[string]bool{
	http.MethodPost + " /api/v1/cmdb/import": true,
	http.MethodPost + " /cmdb/import":        true,
}

// knownMethods are the methods that get their own metrics label.
var knownMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodOptions: true,
}

// parseTrustedProxies reads OPSFLOW_TRUSTED_PROXIES' entries: CIDRs or
// single addresses.
func parseTrustedProxies(entries []string) ([]*net.IPNet, error) {
	var out []*net.IPNet
	for _, s := range entries {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !strings.Contains(s, "/") {
			ip := net.ParseIP(s)
			if ip == nil {
				return nil, fmt.Errorf("trusted proxies: %q is not an IP address or CIDR", s)
			}
			bits := 128
			if ip.To4() != nil {
				ip, bits = ip.To4(), 32
			}
			out = append(out, &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)})
			continue
		}
		_, n, err := net.ParseCIDR(s)
		if err != nil {
			return nil, fmt.Errorf("trusted proxies: %q is not an IP address or CIDR", s)
		}
		out = append(out, n)
	}
	return out, nil
}

// ipExtractor takes the client's address from X-Forwarded-For or
// X-Real-IP only when the connection comes from a trusted proxy (and, in
// X-Forwarded-For, skips only trusted hops); anyone else's headers are
// ignored. Echo trusts loopback and private networks by default; opsflow
// trusts nothing it was not told to.
func ipExtractor(trusted []*net.IPNet) echo.IPExtractor {
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, n := range trusted {
		opts = append(opts, echo.TrustIPRange(n))
	}
	xff := echo.ExtractIPFromXFFHeader(opts...)
	realIP := echo.ExtractIPFromRealIPHeader(opts...)
	return func(r *http.Request) string {
		if len(r.Header.Values(echo.HeaderXForwardedFor)) > 0 {
			return xff(r)
		}
		return realIP(r)
	}
}

// fromTrustedProxy reports whether the connection's peer is a trusted proxy.
func (a *API) fromTrustedProxy(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return false
	}
	for _, n := range a.trusted {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// requestID names every request: a trusted proxy's X-Request-Id when it is
// short and printable, otherwise a fresh UUID, so a client cannot choose
// the ID the audit log records.
func (a *API) requestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		rid := ""
		if a.fromTrustedProxy(req) {
			rid = req.Header.Get(echo.HeaderXRequestID)
			if len(rid) > maxRequestIDLen || !printableASCII(rid) {
				rid = ""
			}
		}
		if rid == "" {
			rid = uuid.NewString()
		}
		req.Header.Set(echo.HeaderXRequestID, rid)
		c.Response().Header().Set(echo.HeaderXRequestID, rid)
		return next(c)
	}
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// routeMatched reports whether the request reached one of opsflow's
// routes with its method (not a 404 or 405).
func (a *API) routeMatched(c echo.Context) bool {
	if c.Get(echo.ContextKeyHeaderAllow) != nil {
		return false
	}
	return a.known[c.Request().Method+" "+c.Path()]
}

// bodyDeadline bounds the time a request body may take to arrive, per
// route: a client trickling a body cannot hold a connection for longer.
// Net/http clears the deadline once the body is read, so long handlers and
// streams are not cut.
func (a *API) bodyDeadline(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		if req.ContentLength != 0 && req.Body != nil && req.Body != http.NoBody {
			d := a.bodyTimeout
			if importRoutes[req.Method+" "+c.Path()] {
				d = importBodyTimeout
			}
			_ = http.NewResponseController(c.Response()).SetReadDeadline(time.Now().Add(d))
		}
		return next(c)
	}
}

// limiter is a token bucket per key (a source address or an account)
// with bounded memory: at most max keys; beyond them, new keys share one
// overflow bucket, so a flood of addresses cannot grow it.
type limiter struct {
	mu       sync.Mutex
	rate     float64 // tokens per second
	burst    float64
	max      int
	buckets  map[string]*bucket
	overflow bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newLimiter(rate, burst float64, max int) *limiter {
	return &limiter{rate: rate, burst: burst, max: max, buckets: map[string]*bucket{}, overflow: bucket{tokens: burst}}
}

// bucketFor returns key's bucket refilled to now; the caller holds mu.
func (l *limiter) bucketFor(key string, now time.Time) *bucket {
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= l.max {
			l.sweep(now)
		}
		if len(l.buckets) >= l.max {
			b = &l.overflow
		} else {
			b = &bucket{tokens: l.burst, at: now}
			l.buckets[key] = b
			return b
		}
	}
	if !b.at.IsZero() {
		b.tokens = min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.rate)
	}
	b.at = now
	return b
}

// sweep forgets buckets that have refilled: they equal a fresh one.
func (l *limiter) sweep(now time.Time) {
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.at).Seconds()*l.rate >= l.burst {
			delete(l.buckets, k)
		}
	}
}

// allow takes a token for key, reporting whether there was one.
func (l *limiter) allow(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucketFor(key, time.Now())
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// ok reports whether key has a token, without taking it.
func (l *limiter) ok(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.bucketFor(key, time.Now()).tokens >= 1
}

// take takes a token for key (it may go to zero, not below).
func (l *limiter) take(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucketFor(key, time.Now())
	b.tokens = max(0, b.tokens-1)
}

// forget resets key to a full bucket.
func (l *limiter) forget(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.buckets, key)
}

// retryAfter is how long until key has a token again, in whole seconds.
func (l *limiter) retryAfter(key string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucketFor(key, time.Now())
	if b.tokens >= 1 {
		return 0
	}
	return int((1-b.tokens)/l.rate) + 1
}

func (l *limiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// codeTooManyRequests is the error code of a 429.
const codeTooManyRequests = "too_many_requests"
