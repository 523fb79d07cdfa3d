package schema

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// DefaultSSHPort is the port of an address that names none.
const DefaultSSHPort = 22

// CanonicalAddress returns the one spelling of a target host[:port] that
// gating, credential scopes and host-key pinning compare: an IP address
// in its shortest form (an IPv4-mapped IPv6 address as IPv4, IPv6 in
// brackets, lowercase and compressed), a host name lowercased without its
// trailing dot, and the port always explicit, in decimal without leading
// zeros (22 when none is given).
//
// Numeric forms that resolvers read differently from how they look are
// refused, not guessed: IPv4 with leading zeros (0127.0.0.1 is octal to
// inet_aton), hexadecimal or shortened forms (0x7f.1, 127.1, 2130706433),
// and IPv6 zones, which name an interface of whichever worker dials.
func CanonicalAddress(s string) (string, error) {
	if s == "" {
		return "", errors.New("required")
	}
	if len(s) > 300 {
		return "", errors.New("too long: an address is at most 300 characters")
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f || r == '/' || r == '@' || r == '\\' || r > 0x7e {
			return "", fmt.Errorf("%q is not allowed in an address: give host or host:port", r)
		}
	}
	host, port, bracketed := s, "", false
	switch n := strings.Count(s, ":"); {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", errors.New("an IPv6 address in brackets needs its closing ]")
		}
		host, bracketed = s[1:end], true
		switch rest := s[end+1:]; {
		case rest == "":
		case rest[0] == ':':
			if port = rest[1:]; port == "" {
				return "", errors.New("empty port after ':'")
			}
		default:
			return "", errors.New("only :port may follow an address in brackets")
		}
	case n == 1:
		host, port, _ = strings.Cut(s, ":")
		if port == "" {
			return "", errors.New("empty port after ':'")
		}
	}
	p := DefaultSSHPort
	if port != "" {
		if len(port) > 10 || strings.Trim(port, "0123456789") != "" {
			return "", fmt.Errorf("port %q: must be a number from 1 to 65535", port)
		}
		v, _ := strconv.Atoi(port)
		if v < 1 || v > 65535 {
			return "", fmt.Errorf("port %q: must be a number from 1 to 65535", port)
		}
		p = v
	}
	if strings.Contains(host, "%") {
		return "", errors.New("an IPv6 zone (%…) names an interface of the worker: give a routable address")
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		ip = ip.Unmap()
		if ip.IsUnspecified() || ip.IsMulticast() {
			return "", fmt.Errorf("%s is not a host's address", ip)
		}
		return net.JoinHostPort(ip.String(), strconv.Itoa(p)), nil
	}
	if bracketed {
		return "", errors.New("only an IPv6 address goes in brackets")
	}
	if strings.Contains(host, ":") {
		return "", errors.New("not an IPv6 address; write host:port, or [IPv6]:port")
	}
	name := strings.ToLower(strings.TrimSuffix(host, "."))
	labels := strings.Split(name, ".")
	last := labels[len(labels)-1]
	if last != "" && (strings.Trim(last, "0123456789") == "" || strings.HasPrefix(last, "0x")) {
		return "", errors.New("not an IPv4 address in dotted decimal (four numbers 0-255, no leading zeros), nor a host name")
	}
	if len(name) > 253 || !ValidHostname(name) {
		return "", errors.New("must be an IP address or DNS name, optionally with :port")
	}
	return net.JoinHostPort(name, strconv.Itoa(p)), nil
}

// MustCanonicalAddress is CanonicalAddress for addresses already checked,
// or the input unchanged when it is not one.
func MustCanonicalAddress(s string) string {
	if c, err := CanonicalAddress(s); err == nil {
		return c
	}
	return s
}

// ciAddress is where a host CI is reached: its address attribute, or its
// name when it has none.
func ciAddress(name string, attrs map[string]any) string {
	if a, _ := attrs["address"].(string); a != "" {
		return a
	}
	return name
}

// HostCIsByAddress maps the canonical address of every host CI to its ID
// (the lowest, if several CIs share one). Host CIs whose address is not
// one are left out: no spelling reaches them.
func (s *Store) HostCIsByAddress(ctx context.Context) (map[string]int64, error) {
	var cis []struct {
		ID   int64  `bun:"id"`
		Name string `bun:"name"`
	}
	if err := s.DB.NewSelect().Table("cis").Column("id", "name").Where("type = 'host'").Order("id").Scan(ctx, &cis); err != nil {
		return nil, fmt.Errorf("store: host addresses: %w", err)
	}
	var attrs []struct {
		CIID  int64  `bun:"ci_id"`
		Value string `bun:"value"`
	}
	if err := s.DB.NewSelect().Table("ci_attrs").Column("ci_id", "value").Where("type = 'host' AND name = 'address'").Scan(ctx, &attrs); err != nil {
		return nil, fmt.Errorf("store: host addresses: %w", err)
	}
	addr := make(map[int64]string, len(attrs))
	for _, a := range attrs {
		addr[a.CIID] = a.Value
	}
	out := make(map[string]int64, len(cis))
	for _, c := range cis {
		a := addr[c.ID]
		if a == "" {
			a = c.Name
		}
		if k, err := CanonicalAddress(a); err == nil {
			if _, taken := out[k]; !taken {
				out[k] = c.ID
			}
		}
	}
	return out, nil
}

// CredentialScope returns the IDs of the host CIs credential c may be used
// on, or nil when its scope is every host CI.
func (s *Store) CredentialScope(ctx context.Context, c *Credential) (map[int64]bool, error) {
	if c.Scope == "" {
		return nil, nil
	}
	cis, err := s.ExportCIs(ctx, CIQuery{Type: "host", Selector: c.Scope})
	if err != nil {
		return nil, fmt.Errorf("store: scope of credential %q: %w", c.Name, err)
	}
	in := make(map[int64]bool, len(cis))
	for _, ci := range cis {
		in[ci.ID] = true
	}
	return in, nil
}

// CheckCredentialTargets says, by field, which hosts credential c may not
// be used on: a host CI outside its scope (field credential_id), or an
// address that is no host in the CMDB (field fieldOf(i)) unless c allows
// unlisted hosts. hosts carry canonical addresses and, for CMDB hosts,
// their CI.
func (s *Store) CheckCredentialTargets(ctx context.Context, c *Credential, hosts []JobHost, fieldOf func(i int) string) (map[string]string, error) {
	bad := fieldBag{}
	scope, err := s.CredentialScope(ctx, c)
	if err != nil {
		return nil, err
	}
	for i, h := range hosts {
		switch {
		case h.CIID == nil && !c.AllowUnlistedHosts:
			bad.add(fieldOf(i), fmt.Sprintf("%s is not a host in the CMDB (credential %s does not allow unlisted hosts)", h.Address, c.Name))
		case h.CIID != nil && scope != nil && !scope[*h.CIID]:
			bad.add("credential_id", fmt.Sprintf("credential %s may not be used on %s (CI %d): outside its scope %q", c.Name, h.Address, *h.CIID, c.Scope))
		}
	}
	return bad, nil
}

// WithPort gives an address that names no port the given one: host,
// IPv6 with or without brackets. One that names a port is returned as is.
func WithPort(addr string, port int) string {
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr
	}
	p := strconv.Itoa(port)
	switch {
	case strings.HasPrefix(addr, "[") && strings.HasSuffix(addr, "]"):
		return addr + ":" + p
	case strings.Contains(addr, ":"):
		if strings.Count(addr, ":") == 1 { // host: with an empty port
			return addr
		}
		return "[" + addr + "]:" + p
	}
	return net.JoinHostPort(addr, p)
}
