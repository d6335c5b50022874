package core

// Fuzz tests of numeric host and port handling (resolve.go): the port
// parser against a model of Python's int(), asyncio's _ipaddr_info fast
// path, resolveEndpoint's choice between the fast path and the resolver,
// the sockaddr round trip of fast-path addresses (addr.go), and the
// per-family de-duplication of resolve_happy.go.

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"unicode"

	"golang.org/x/sys/unix"
)

// pySpace is what Python's int() skips around a number: the ASCII white
// space of PyLong_FromString and, beyond ASCII, str.isspace()'s characters
// (which _PyUnicode_TransformDecimalAndSpaceToASCII turns into ' ').
// ASCII 0x1c-0x1f are str.isspace() but int() does not skip them.
func pySpace(r rune) bool {
	switch r {
	case ' ', '\t', '\n', '\v', '\f', '\r',
		0x85, 0xa0, 0x1680, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000:
		return true
	}
	return r >= 0x2000 && r <= 0x200a
}

// pyDecimal is the value of a Unicode decimal digit (category Nd), as
// Python's int() reads it, or -1. Every Nd range starts at a zero and
// holds whole runs of ten.
func pyDecimal(r rune) int {
	for _, rg := range unicode.Nd.R16 {
		if r >= rune(rg.Lo) && r <= rune(rg.Hi) {
			return int(r-rune(rg.Lo)) % 10
		}
	}
	for _, rg := range unicode.Nd.R32 {
		if r >= rune(rg.Lo) && r <= rune(rg.Hi) {
			return int(r-rune(rg.Lo)) % 10
		}
	}
	return -1
}

// pyInt is Python's int(s) for a str: white space around, an optional sign,
// decimal digits of any script with single underscores between digits.
// ok is false where Python raises ValueError.
func pyInt(s string) (*big.Int, bool) {
	s = strings.TrimFunc(s, pySpace)
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	if s == "" {
		return nil, false
	}
	v := new(big.Int)
	ten := big.NewInt(10)
	prevDigit := false
	for _, r := range s {
		if r == '_' {
			if !prevDigit {
				return nil, false
			}
			prevDigit = false
			continue
		}
		d := pyDecimal(r)
		if d < 0 {
			return nil, false
		}
		v.Mul(v, ten).Add(v, big.NewInt(int64(d)))
		prevDigit = true
	}
	if !prevDigit {
		return nil, false
	}
	if neg {
		v.Neg(v)
	}
	return v, true
}

// pyPort is asyncio's port handling in _ipaddr_info: None and ” are 0,
// anything else goes through int().
func pyPort(port *string) (*big.Int, bool) {
	if port == nil || *port == "" {
		return new(big.Int), true
	}
	return pyInt(*port)
}

func FuzzParsePort(f *testing.F) {
	for _, s := range []string{"", "80", "+80", "-1", " 8080\n", "1_000", "http", "80a", "   ", "_",
		"_80", "80_", "8__0", "+_8", "\x1c80", "\u0668\u0660", "\uff18\uff10", "\u00a080\u3000", "65536",
		"99999999999999999999999", "-99999999999999999999999", "+-1", "0x10", "1 2", "80\x00", "\xff80", "0_0_0"} {
		f.Add(s, false)
	}
	f.Add("", true)
	f.Fuzz(func(t *testing.T, s string, none bool) {
		port := &s
		if none {
			port = nil
		}
		n, ok := parsePort(port)
		want, wantOK := pyPort(port)
		if ok != wantOK {
			t.Fatalf("parsePort(%q): number %v, Python's int() says %v (%v)", s, ok, wantOK, want)
		}
		if !ok {
			if err := checkPortRange(port, "connect"); err != nil {
				t.Fatalf("service name %q: range error %v", s, err)
			}
			return
		}
		inRange := want.Sign() >= 0 && want.Cmp(big.NewInt(65535)) <= 0
		if inRange && n != want.Int64() {
			t.Fatalf("parsePort(%q) = %d, Python %s", s, n, want)
		}
		if want.IsInt64() && n != want.Int64() {
			t.Fatalf("parsePort(%q) = %d, Python %s", s, n, want)
		}
		if !inRange && n >= 0 && n <= 65535 {
			t.Fatalf("parsePort(%q) = %d in range, Python %s is not", s, n, want)
		}
		err := checkPortRange(port, "bind")
		if inRange != (err == nil) {
			t.Fatalf("checkPortRange(%q) = %v for port %s", s, err, want)
		}
		var oe *OverflowError
		if err != nil && (!errors.As(err, &oe) || err.Error() != "bind(): port must be 0-65535.") {
			t.Fatalf("checkPortRange(%q): %#v", s, err)
		}
	})
}

// pyIPAddrInfo is asyncio's _ipaddr_info for SOCK_STREAM (inet_pton is
// netip.ParseAddr without zones, which agrees with glibc's inet_pton).
func pyIPAddrInfo(host, port *string, family, proto int, flowinfo, scopeID uint32) (AddrInfo, *big.Int, bool) {
	if proto != 0 && proto != unix.IPPROTO_TCP && proto != unix.IPPROTO_UDP || host == nil {
		return AddrInfo{}, nil, false
	}
	p, ok := pyPort(port)
	if !ok {
		return AddrInfo{}, nil, false
	}
	afs := []int{family}
	if family == unix.AF_UNSPEC {
		afs = []int{unix.AF_INET, unix.AF_INET6}
	}
	if strings.Contains(*host, "%") {
		return AddrInfo{}, nil, false
	}
	for _, af := range afs {
		ip, err := netip.ParseAddr(*host)
		if err != nil || strings.IndexByte(*host, 0) >= 0 {
			continue
		}
		sa := SockAddr{Family: af, Host: *host, IP: ip}
		switch {
		case af == unix.AF_INET && ip.Is4():
		case af == unix.AF_INET6 && ip.Is6():
			sa.Flowinfo, sa.ScopeID = flowinfo, scopeID
		default:
			continue
		}
		return AddrInfo{Family: af, Type: unix.SOCK_STREAM, Proto: unix.IPPROTO_TCP, Addr: sa}, p, true
	}
	return AddrInfo{}, nil, false
}

// recResolver records its calls and answers with fixed addresses, an
// empty list or an error.
type recResolver struct {
	calls []Hints
	hosts []*string
	ports []*string
	infos []AddrInfo
	err   error
}

func (r *recResolver) GetAddrInfo(_ context.Context, host, port *string, hints Hints) ([]AddrInfo, error) {
	r.calls = append(r.calls, hints)
	r.hosts = append(r.hosts, host)
	r.ports = append(r.ports, port)
	return r.infos, r.err
}

// glibc's AI_* flags (golang.org/x/sys/unix does not name them).
const (
	aiCanonName   = 0x2
	aiNumericHost = 0x4
	aiNumericServ = 0x400
)

var fuzzResolveFamilies = []int{unix.AF_UNSPEC, unix.AF_INET, unix.AF_INET6, unix.AF_UNIX}
var fuzzProtos = []int{0, unix.IPPROTO_TCP, unix.IPPROTO_UDP, 132}

// FuzzNumericAddrInfo checks the fast path against asyncio's _ipaddr_info
// field by field, the sockaddr round trip of what it makes, and
// resolveEndpoint around it: a numeric host never reaches the resolver (an
// out-of-range port is then an OverflowError), a NUL is a ValueError, and
// everything else goes to the resolver with SOCK_STREAM and the caller's
// family, proto and AI_* flags unchanged (AI_NUMERICHOST and AI_NUMERICSERV
// included: the fast path does not look at the flags, as in asyncio).
func FuzzNumericAddrInfo(f *testing.F) {
	add := func(host, port string, fam, proto uint8, flow, scope uint32, flags int, answer uint8) {
		f.Add(host, port, false, false, fam, proto, flow, scope, flags, answer)
	}
	add("127.0.0.1", "80", 0, 0, 0, 0, 0, 0)
	add("::1", "443", 0, 1, 7, 3, aiNumericHost|aiNumericServ, 0)
	add("fe80::1", "0", 2, 0, 1, 2, 0, 0)
	add("fe80::1%eth0", "80", 0, 0, 0, 0, aiNumericHost, 1)
	add("fe80::1%1", "http", 2, 0, 0, 5, 0, 2)
	add("::ffff:1.2.3.4", "65536", 0, 2, 0, 0, 0, 0)
	add("127.0.0.1", "-1", 1, 0, 0, 0, 0, 0)
	add("127.0.0.1", "80", 2, 0, 0, 0, 0, 0)
	add("example.com", "http", 0, 0, 0, 0, aiCanonName, 1)
	add("1.2.3.4\x00", "80", 0, 0, 0, 0, 0, 0)
	add("1.2.3.4", "8\x000", 0, 0, 0, 0, 0, 0)
	add("01.2.3.4", "80", 0, 0, 0, 0, 0, 3)
	add("1:2:3:4:5:6:7::", "_80", 0, 0, 0, 0, 0, 0)
	add("127.0.0.1", "80", 3, 3, 0, 0, 0, 0)
	f.Add("", "", true, true, uint8(0), uint8(0), uint32(0), uint32(0), 0, uint8(0))
	f.Fuzz(func(t *testing.T, hs, ps string, hostNone, portNone bool, famSel, protoSel uint8,
		flowinfo, scopeID uint32, flags int, answer uint8) {
		host, port := &hs, &ps
		if hostNone {
			host = nil
		}
		if portNone {
			port = nil
		}
		family := fuzzResolveFamilies[int(famSel)%len(fuzzResolveFamilies)]
		proto := fuzzProtos[int(protoSel)%len(fuzzProtos)]

		ai, ok := numericAddrInfo(host, port, family, unix.SOCK_STREAM, proto, flowinfo, scopeID)
		want, wantPort, wantOK := pyIPAddrInfo(host, port, family, proto, flowinfo, scopeID)
		if ok != wantOK {
			t.Fatalf("numericAddrInfo(%q, %q, family %d, proto %d): fast path %v, asyncio %v",
				hs, ps, family, proto, ok, wantOK)
		}
		if ok {
			got := ai
			got.Addr.Port = 0
			if got != want {
				t.Fatalf("numericAddrInfo(%q, %q): %+v, asyncio %+v", hs, ps, ai, want)
			}
			if wantPort.IsInt64() && wantPort.Int64() >= 0 && wantPort.Int64() <= 65535 && int64(ai.Addr.Port) != wantPort.Int64() {
				t.Fatalf("numericAddrInfo(%q, %q): port %d, want %s", hs, ps, ai.Addr.Port, wantPort)
			}
			if t2, ok2 := numericAddrInfo(host, port, family, unix.SOCK_DGRAM, proto, flowinfo, scopeID); ok2 {
				t.Fatalf("SOCK_DGRAM took the fast path: %+v", t2)
			}
			checkSockaddrRoundTrip(t, ai.Addr, wantPort)
		}

		// resolveEndpoint around the fast path.
		r := &recResolver{}
		switch answer % 4 {
		case 0:
			r.infos = []AddrInfo{testInfo("192.0.2.7", 80)}
		case 1:
			r.infos = []AddrInfo{testInfo("2001:db8::7", 80), testInfo("192.0.2.7", 80)}
		case 2:
			r.err = &GAIError{Code: EAI_NONAME, Text: "Name or service not known"}
		}
		ep := Endpoint{Host: host, Port: port, Flowinfo: flowinfo, ScopeID: scopeID}
		infos, err := resolveEndpoint(context.Background(), r, ep, family, proto, flags, "connect")
		portInRange := func() bool {
			p, isNum := pyPort(port)
			return !isNum || (p.Sign() >= 0 && p.Cmp(big.NewInt(65535)) <= 0)
		}
		var oe *OverflowError
		var ve *ValueError
		switch {
		case wantOK:
			if len(r.calls) != 0 {
				t.Fatalf("numeric host %q: the resolver was called", hs)
			}
			if !portInRange() {
				if !errors.As(err, &oe) || err.Error() != "connect(): port must be 0-65535." {
					t.Fatalf("port %q out of range: %v", ps, err)
				}
				return
			}
			if err != nil || len(infos) != 1 || infos[0] != ai {
				t.Fatalf("numeric host %q: got %+v, %v", hs, infos, err)
			}
		case host != nil && strings.IndexByte(hs, 0) >= 0 || port != nil && strings.IndexByte(ps, 0) >= 0:
			if !errors.As(err, &ve) || err.Error() != "embedded null character" || len(r.calls) != 0 {
				t.Fatalf("NUL in %q/%q: %v, %d calls", hs, ps, err, len(r.calls))
			}
		default:
			if len(r.calls) != 1 {
				t.Fatalf("%q/%q: %d resolver calls, want 1", hs, ps, len(r.calls))
			}
			if h := (Hints{Family: family, Type: unix.SOCK_STREAM, Proto: proto, Flags: flags}); r.calls[0] != h {
				t.Fatalf("hints %+v, want %+v", r.calls[0], h)
			}
			if r.hosts[0] != host || r.ports[0] != port {
				t.Fatal("the resolver did not get the caller's host and port")
			}
			switch {
			case r.err != nil:
				if err != r.err {
					t.Fatalf("resolver error %v came back as %v", r.err, err)
				}
			case len(r.infos) == 0:
				if err == nil || err.Error() != "getaddrinfo() returned empty list" {
					t.Fatalf("empty answer: %v", err)
				}
			case !portInRange():
				if !errors.As(err, &oe) {
					t.Fatalf("port %q out of range after lookup: %v", ps, err)
				}
			default:
				if err != nil || !slices.Equal(infos, r.infos) {
					t.Fatalf("lookup answer changed: %+v, %v", infos, err)
				}
			}
		}
	})
}

// checkSockaddrRoundTrip: a fast-path address with a port in range becomes
// a system sockaddr and back without change (the host then in
// getnameinfo's numeric spelling), and its repr is Python's tuple.
func checkSockaddrRoundTrip(t *testing.T, a SockAddr, port *big.Int) {
	t.Helper()
	switch a.Family {
	case unix.AF_INET:
		if want := fmt.Sprintf("(%s, %d)", pyStrRepr(a.Host), a.Port); a.Repr() != want {
			t.Fatalf("repr %s, want %s", a.Repr(), want)
		}
	case unix.AF_INET6:
		if want := fmt.Sprintf("(%s, %d, %d, %d)", pyStrRepr(a.Host), a.Port, a.Flowinfo, a.ScopeID); a.Repr() != want {
			t.Fatalf("repr %s, want %s", a.Repr(), want)
		}
	}
	if !port.IsInt64() || port.Int64() < 0 || port.Int64() > 65535 {
		return
	}
	sa, err := a.Sockaddr()
	if err != nil {
		t.Fatalf("Sockaddr(%+v): %v", a, err)
	}
	back, ok := SockAddrFrom(sa)
	if !ok || back.Family != a.Family || back.IP != a.IP.Unmap() && back.IP != a.IP || back.Port != a.Port {
		t.Fatalf("round trip of %+v gave %+v", a, back)
	}
	if a.Family == unix.AF_INET6 {
		if back.ScopeID != a.ScopeID {
			t.Fatalf("scope id %d came back as %d", a.ScopeID, back.ScopeID)
		}
		text := back.IP.String()
		if h, zone, cut := strings.Cut(back.Host, "%"); cut {
			if a.ScopeID == 0 || zone == "" {
				t.Fatalf("host %q for scope id %d", back.Host, a.ScopeID)
			}
			text = h
		} else if a.ScopeID != 0 {
			t.Fatalf("host %q lost scope id %d", back.Host, a.ScopeID)
		}
		if back.Host != text && !strings.HasPrefix(back.Host, text+"%") {
			t.Fatalf("host %q is not the numeric text %q", back.Host, text)
		}
	} else if back.Host != a.IP.String() {
		t.Fatalf("host %q, want %q", back.Host, a.IP.String())
	}
	if p, err := netip.ParseAddr(strings.SplitN(back.Host, "%", 2)[0]); err != nil || p != back.IP {
		t.Fatalf("host text %q does not parse back to %v", back.Host, back.IP)
	}
}

// FuzzDedupe: each address is kept once, at its first place, ignoring the
// host spelling; the input is not changed.
func FuzzDedupe(f *testing.F) {
	f.Add([]byte{1, 1, 2, 1, 3})
	f.Add([]byte{})
	f.Add([]byte{0x81, 1, 0x41, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 256 {
			data = data[:256]
		}
		var in []AddrInfo
		for i, b := range data {
			// Low bits: which address; bit 6: another host spelling;
			// bit 7: another port.
			ai := testInfo(fmt.Sprintf("2001:db8::%d", b&7), 80+int(b>>7))
			if b&0x40 != 0 {
				ai.Addr.Host = fmt.Sprintf("2001:0db8::%d#%d", b&7, i)
			}
			in = append(in, ai)
		}
		orig := slices.Clone(in)
		out := dedupe(in)
		if !slices.Equal(in, orig) {
			t.Fatal("dedupe changed its input")
		}
		key := func(ai AddrInfo) SockAddr { k := ai.Addr; k.Host = ""; return k }
		seen := map[SockAddr]bool{}
		var want []AddrInfo
		for _, ai := range in {
			if !seen[key(ai)] {
				seen[key(ai)] = true
				want = append(want, ai)
			}
		}
		if !slices.Equal(out, want) {
			t.Fatalf("dedupe gave %d addresses, want %d", len(out), len(want))
		}
	})
}
