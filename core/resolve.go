package core

import (
	"context"
	"net/netip"
	"strings"
	"unicode"

	"golang.org/x/sys/unix"
)

// Hints are getaddrinfo's hints: family, socket type, protocol and AI_* flags.
type Hints struct {
	Family int
	Type   int
	Proto  int
	Flags  int
}

// AddrInfo is one getaddrinfo result, Python's 5-tuple
// (family, type, proto, canonname, sockaddr).
type AddrInfo struct {
	Family int
	Type   int
	Proto  int
	Canon  string
	Addr   SockAddr
}

// Resolver is getaddrinfo(3). host and port are nil for Python's None. The
// port is the text asyncio passes on: digits or a service name. Errors are
// *GAIError (or *OSError for EAI_SYSTEM) carrying the C library's text.
//
// The capi layer plugs in the C library's getaddrinfo, so that flags,
// /etc/hosts, nsswitch, gai.conf ordering and the error texts are exactly
// what Python's socket.getaddrinfo gives. Tests plug in fakes.
type Resolver interface {
	GetAddrInfo(ctx context.Context, host, port *string, hints Hints) ([]AddrInfo, error)
}

// errEmptyList is asyncio's text for a lookup that succeeded with no results.
func errEmptyList() error { return &OSError{Text: "getaddrinfo() returned empty list"} }

// errPortRange is what Python's connect() and bind() raise for a port outside
// 0-65535 (an OverflowError, which asyncio lets through unaggregated).
func errPortRange(op string) error {
	return &OverflowError{Text: op + "(): port must be 0-65535."}
}

// parsePort reads a port the way Python's int() reads a str: white space
// around, an optional sign, and decimal digits of any script with single
// underscores between digits. ok is false for a service name. None and ""
// are port 0, as in asyncio's _ipaddr_info.
func parsePort(port *string) (n int64, ok bool) {
	if port == nil || *port == "" {
		return 0, true
	}
	// strings.TrimSpace's set is exactly what int() strips: ASCII
	// " \t\n\v\f\r" and the non-ASCII characters of str.isspace().
	s := strings.TrimSpace(*port)
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	afterDigit, huge := false, false
	for _, r := range s {
		if r == '_' {
			if !afterDigit {
				return 0, false
			}
			afterDigit = false
			continue
		}
		d := decimalValue(r)
		if d < 0 {
			return 0, false
		}
		if n > (1<<62)/10 {
			huge = true
		} else {
			n = n*10 + d
		}
		afterDigit = true
	}
	if !afterDigit { // no digits, or a trailing underscore
		return 0, false
	}
	if huge {
		// Very long digit strings are still numbers to Python.
		return 1 << 62, true
	}
	if neg {
		n = -n
	}
	return n, true
}

// decimalValue is the value of a decimal digit of any script (Unicode
// category Nd, what Python's int() reads), or -1. Every Nd range starts at
// a zero and holds whole runs of ten digits.
func decimalValue(r rune) int64 {
	if r >= '0' && r <= '9' {
		return int64(r - '0')
	}
	if r < 0x80 {
		return -1
	}
	for _, rg := range unicode.Nd.R16 {
		if r >= rune(rg.Lo) && r <= rune(rg.Hi) {
			return int64(r-rune(rg.Lo)) % 10
		}
	}
	for _, rg := range unicode.Nd.R32 {
		if r >= rune(rg.Lo) && r <= rune(rg.Hi) {
			return int64(r-rune(rg.Lo)) % 10
		}
	}
	return -1
}

// checkPortRange returns the OverflowError for a numeric port outside
// 0-65535. Service names are left to getaddrinfo.
func checkPortRange(port *string, op string) error {
	if n, ok := parsePort(port); ok && (n < 0 || n > 65535) {
		return errPortRange(op)
	}
	return nil
}

// numericAddrInfo is asyncio's _ipaddr_info fast path: when the host is
// already an IP literal for the requested family (and the port is a number),
// getaddrinfo is skipped and exactly one result is made. The host keeps the
// caller's spelling, as Python's tuple does. Zone ids ("fe80::1%eth0") are
// left to getaddrinfo, which knows the interface names.
func numericAddrInfo(host, port *string, family, sockType, proto int, flowinfo, scopeID uint32) (AddrInfo, bool) {
	if host == nil || sockType != unix.SOCK_STREAM {
		return AddrInfo{}, false
	}
	if proto != 0 && proto != unix.IPPROTO_TCP && proto != unix.IPPROTO_UDP {
		return AddrInfo{}, false
	}
	n, ok := parsePort(port)
	if !ok {
		return AddrInfo{}, false
	}
	h := *host
	if strings.IndexByte(h, '%') >= 0 || strings.IndexByte(h, 0) >= 0 {
		return AddrInfo{}, false
	}
	var families []int
	switch family {
	case unix.AF_UNSPEC:
		families = []int{unix.AF_INET, unix.AF_INET6}
	case unix.AF_INET, unix.AF_INET6:
		families = []int{family}
	default:
		return AddrInfo{}, false
	}
	ip, err := netip.ParseAddr(h)
	if err != nil || ip.Zone() != "" {
		return AddrInfo{}, false
	}
	for _, af := range families {
		switch {
		case af == unix.AF_INET && ip.Is4():
			return AddrInfo{Family: af, Type: unix.SOCK_STREAM, Proto: unix.IPPROTO_TCP,
				Addr: SockAddr{Family: af, Host: h, IP: ip, Port: int(n)}}, true
		case af == unix.AF_INET6 && ip.Is6():
			return AddrInfo{Family: af, Type: unix.SOCK_STREAM, Proto: unix.IPPROTO_TCP,
				Addr: SockAddr{Family: af, Host: h, IP: ip, Port: int(n), Flowinfo: flowinfo, ScopeID: scopeID}}, true
		}
	}
	return AddrInfo{}, false
}

// Endpoint is a (host, port) pair as create_connection receives it, with the
// optional flowinfo and scope id of a 4-tuple local_addr.
type Endpoint struct {
	Host     *string
	Port     *string
	Flowinfo uint32
	ScopeID  uint32
}

// resolveEndpoint is asyncio's _ensure_resolved for SOCK_STREAM followed by
// create_connection's empty-list check. op names the call that would reject
// an out-of-range port ("connect" or "bind").
func resolveEndpoint(ctx context.Context, r Resolver, ep Endpoint, family, proto, flags int, op string) ([]AddrInfo, error) {
	if ai, ok := numericAddrInfo(ep.Host, ep.Port, family, unix.SOCK_STREAM, proto, ep.Flowinfo, ep.ScopeID); ok {
		if err := checkPortRange(ep.Port, op); err != nil {
			return nil, err
		}
		return []AddrInfo{ai}, nil
	}
	if ep.Host != nil && strings.IndexByte(*ep.Host, 0) >= 0 {
		return nil, &ValueError{Text: "embedded null character"}
	}
	if ep.Port != nil && strings.IndexByte(*ep.Port, 0) >= 0 {
		return nil, &ValueError{Text: "embedded null character"}
	}
	infos, err := r.GetAddrInfo(ctx, ep.Host, ep.Port, Hints{Family: family, Type: unix.SOCK_STREAM, Proto: proto, Flags: flags})
	if err != nil {
		return nil, err
	}
	if len(infos) == 0 {
		return nil, errEmptyList()
	}
	if err := checkPortRange(ep.Port, op); err != nil {
		return nil, err
	}
	return infos, nil
}
