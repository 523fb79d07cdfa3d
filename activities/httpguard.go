package activities

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// HTTP steps run on a worker, inside the network it sits in. What a
// runbook's author may reach from there is bounded: by default not the
// worker itself (loopback: a Docker socket or an admin port listening
// there is root on the worker) and not link-local addresses (the cloud
// metadata service hands out the worker's cloud credentials). Private
// networks stay reachable: calling internal services is what http steps
// are for. OPSFLOW_HTTP_STEP_ALLOW_NETS lets a worker reach more.

// deniedNets are the networks an http step may not connect to unless
// allowed.
var deniedNets = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("::/128"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("fd00:ec2::254/128"), // AWS metadata over IPv6
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("ff00::/8"),
}

// ErrAddressDenied is a connection an http step may not make.
var ErrAddressDenied = errors.New("address not allowed for http steps")

// ParseNets reads a comma- or space-separated list of CIDR prefixes (a
// bare address is one host).
func ParseNets(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("%q is no CIDR prefix or address", f)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// stepAddrAllowed reports whether an http step may connect to a.
func stepAddrAllowed(a netip.Addr, allow []netip.Prefix) bool {
	a = a.Unmap()
	for _, p := range allow {
		if p.Contains(a) {
			return true
		}
	}
	for _, p := range deniedNets {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// guardedHTTPClient is the client of http steps: the address checked is
// the one connected to, after name resolution (a name that resolves to a
// denied address, or is re-pointed at one, is refused), on every
// connection including redirects'.
func guardedHTTPClient(allow []netip.Prefix) *http.Client {
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second,
		Control: func(network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: %s", ErrAddressDenied, address)
			}
			if !stepAddrAllowed(ap.Addr(), allow) {
				return fmt.Errorf("%w: %s (OPSFLOW_HTTP_STEP_ALLOW_NETS allows more)", ErrAddressDenied, ap.Addr())
			}
			return nil
		}}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil // the guard is on the connection: a proxy would bypass it
	t.DialContext = d.DialContext
	return &http.Client{Transport: t, Timeout: 5 * time.Minute}
}
