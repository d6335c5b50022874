package core

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

// fakeResolver records its calls and answers from a fixed result.
type fakeResolver struct {
	calls []resolverCall
	infos []AddrInfo
	err   error
}

type resolverCall struct {
	host, port *string
	hints      Hints
}

func (r *fakeResolver) GetAddrInfo(_ context.Context, host, port *string, hints Hints) ([]AddrInfo, error) {
	r.calls = append(r.calls, resolverCall{host, port, hints})
	return r.infos, r.err
}

func derefOr(p *string, none string) string {
	if p == nil {
		return none
	}
	return *p
}

// TestNumericFastPath: IP literals skip the resolver, keep the caller's
// spelling, and make exactly one addrinfo (spec 2.2).
func TestNumericFastPath(t *testing.T) {
	tests := []struct {
		host, port string // port "<None>" means None
		family     int
		wantFamily int
		wantPort   int
		wantRepr   string
	}{
		{"127.0.0.1", "80", unix.AF_UNSPEC, unix.AF_INET, 80, "('127.0.0.1', 80)"},
		{"127.0.0.1", "<None>", unix.AF_UNSPEC, unix.AF_INET, 0, "('127.0.0.1', 0)"},
		{"127.0.0.1", "", unix.AF_UNSPEC, unix.AF_INET, 0, "('127.0.0.1', 0)"},
		{"127.0.0.1", " 443 ", unix.AF_INET, unix.AF_INET, 443, "('127.0.0.1', 443)"}, // int() accepts spaces
		{"127.0.0.1", "8_0", unix.AF_UNSPEC, unix.AF_INET, 80, "('127.0.0.1', 80)"},   // and underscores
		{"::1", "1", unix.AF_UNSPEC, unix.AF_INET6, 1, "('::1', 1, 0, 0)"},
		{"::1", "65535", unix.AF_INET6, unix.AF_INET6, 65535, "('::1', 65535, 0, 0)"},
		// The caller's spelling is kept, not the canonical form.
		{"0:0:0:0:0:0:0:1", "5", unix.AF_UNSPEC, unix.AF_INET6, 5, "('0:0:0:0:0:0:0:1', 5, 0, 0)"},
		{"::FFFF:127.0.0.1", "5", unix.AF_UNSPEC, unix.AF_INET6, 5, "('::FFFF:127.0.0.1', 5, 0, 0)"},
		{"2001:DB8::1", "5", unix.AF_UNSPEC, unix.AF_INET6, 5, "('2001:DB8::1', 5, 0, 0)"},
	}
	for _, tc := range tests {
		var port *string
		if tc.port != "<None>" {
			port = str(tc.port)
		}
		r := &fakeResolver{err: errors.New("the resolver must not be called")}
		infos, err := resolveEndpoint(context.Background(), r, Endpoint{Host: str(tc.host), Port: port}, tc.family, 0, 0, "connect")
		if err != nil {
			t.Errorf("%s:%s: %v", tc.host, tc.port, err)
			continue
		}
		if len(r.calls) != 0 {
			t.Errorf("%s:%s: the resolver was called", tc.host, tc.port)
		}
		if len(infos) != 1 {
			t.Errorf("%s:%s: %d results", tc.host, tc.port, len(infos))
			continue
		}
		ai := infos[0]
		if ai.Family != tc.wantFamily || ai.Type != unix.SOCK_STREAM || ai.Proto != unix.IPPROTO_TCP || ai.Canon != "" {
			t.Errorf("%s:%s: got %+v", tc.host, tc.port, ai)
		}
		if ai.Addr.Family != tc.wantFamily || ai.Addr.Host != tc.host || ai.Addr.Port != tc.wantPort {
			t.Errorf("%s:%s: address %+v", tc.host, tc.port, ai.Addr)
		}
		if want := netip.MustParseAddr(tc.host); ai.Addr.IP != want {
			t.Errorf("%s:%s: IP %v, want %v", tc.host, tc.port, ai.Addr.IP, want)
		}
		if got := ai.Addr.Repr(); got != tc.wantRepr {
			t.Errorf("%s:%s: repr %s, want %s", tc.host, tc.port, got, tc.wantRepr)
		}
	}
}

// TestNumericFastPathDetails covers the proto quirk, flowinfo and scope id of
// a 4-tuple local_addr, and the conditions that turn the fast path off.
func TestNumericFastPathDetails(t *testing.T) {
	// proto 17 is silently changed to 6 (spec 2.2).
	ai, ok := numericAddrInfo(str("127.0.0.1"), str("1"), 0, unix.SOCK_STREAM, unix.IPPROTO_UDP, 0, 0)
	if !ok || ai.Proto != unix.IPPROTO_TCP {
		t.Errorf("proto 17: got %+v, %v", ai, ok)
	}
	// flowinfo and scope id are kept for IPv6, ignored for IPv4.
	ai, ok = numericAddrInfo(str("fe80::1"), str("0"), 0, unix.SOCK_STREAM, 0, 7, 3)
	if !ok || ai.Addr.Flowinfo != 7 || ai.Addr.ScopeID != 3 || ai.Addr.Repr() != "('fe80::1', 0, 7, 3)" {
		t.Errorf("4-tuple: got %+v, %v", ai, ok)
	}
	ai, ok = numericAddrInfo(str("127.0.0.1"), str("0"), 0, unix.SOCK_STREAM, 0, 7, 3)
	if !ok || ai.Addr.Flowinfo != 0 || ai.Addr.ScopeID != 0 {
		t.Errorf("IPv4 with 4-tuple fields: got %+v, %v", ai, ok)
	}

	off := []struct {
		name   string
		host   *string
		port   *string
		family int
		typ    int
		proto  int
	}{
		{"host None", nil, str("80"), 0, unix.SOCK_STREAM, 0},
		{"service name", str("127.0.0.1"), str("http"), 0, unix.SOCK_STREAM, 0},
		{"zone id", str("fe80::1%eth0"), str("80"), 0, unix.SOCK_STREAM, 0},
		{"numeric zone id", str("fe80::1%1"), str("80"), 0, unix.SOCK_STREAM, 0},
		{"host name", str("localhost"), str("80"), 0, unix.SOCK_STREAM, 0},
		{"IPv4 literal for AF_INET6", str("127.0.0.1"), str("80"), unix.AF_INET6, unix.SOCK_STREAM, 0},
		{"IPv6 literal for AF_INET", str("::1"), str("80"), unix.AF_INET, unix.SOCK_STREAM, 0},
		{"other family", str("127.0.0.1"), str("80"), unix.AF_UNIX, unix.SOCK_STREAM, 0},
		{"datagram", str("127.0.0.1"), str("80"), 0, unix.SOCK_DGRAM, 0},
		{"other proto", str("127.0.0.1"), str("80"), 0, unix.SOCK_STREAM, 132},
		{"port with sign pair", str("127.0.0.1"), str("+-1"), 0, unix.SOCK_STREAM, 0},
	}
	for _, tc := range off {
		if ai, ok := numericAddrInfo(tc.host, tc.port, tc.family, tc.typ, tc.proto, 0, 0); ok {
			t.Errorf("%s: fast path taken: %+v", tc.name, ai)
		}
	}
}

// TestResolveGoesToResolver: what the fast path does not take goes to the
// resolver with SOCK_STREAM hints, and its result is used as it is.
func TestResolveGoesToResolver(t *testing.T) {
	result := []AddrInfo{
		{Family: unix.AF_INET6, Type: unix.SOCK_STREAM, Proto: unix.IPPROTO_TCP,
			Addr: SockAddr{Family: unix.AF_INET6, Host: "fe80::1%eth0", Port: 80, ScopeID: 2}},
		{Family: unix.AF_INET, Type: unix.SOCK_STREAM, Proto: unix.IPPROTO_TCP,
			Addr: SockAddr{Family: unix.AF_INET, Host: "127.0.0.1", Port: 80}},
	}
	cases := []struct {
		name       string
		host, port *string
		family     int
	}{
		{"service name", str("127.0.0.1"), str("http"), 0},
		{"zone id", str("fe80::1%eth0"), str("80"), 0},
		{"host name", str("example.invalid"), str("80"), unix.AF_INET},
		{"host None (port-only call)", nil, str("80"), 0},
		{"literal of the other family", str("127.0.0.1"), str("80"), unix.AF_INET6},
	}
	for _, tc := range cases {
		r := &fakeResolver{infos: result}
		infos, err := resolveEndpoint(context.Background(), r, Endpoint{Host: tc.host, Port: tc.port}, tc.family, 6, 0x400, "connect")
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if len(r.calls) != 1 {
			t.Errorf("%s: %d resolver calls, want 1", tc.name, len(r.calls))
			continue
		}
		c := r.calls[0]
		if c.host != tc.host || c.port != tc.port {
			t.Errorf("%s: resolver got host %q port %q", tc.name, derefOr(c.host, "None"), derefOr(c.port, "None"))
		}
		if want := (Hints{Family: tc.family, Type: unix.SOCK_STREAM, Proto: 6, Flags: 0x400}); c.hints != want {
			t.Errorf("%s: hints %+v, want %+v", tc.name, c.hints, want)
		}
		if len(infos) != 2 || infos[0].Addr.Host != "fe80::1%eth0" || infos[1].Addr.Host != "127.0.0.1" {
			t.Errorf("%s: got %+v", tc.name, infos)
		}
	}
}

func TestResolveErrors(t *testing.T) {
	t.Run("empty result", func(t *testing.T) {
		r := &fakeResolver{}
		_, err := resolveEndpoint(context.Background(), r, Endpoint{Host: str("example.invalid"), Port: str("80")}, 0, 0, 0, "connect")
		var oe *OSError
		if !errors.As(err, &oe) || oe.Errno != 0 || err.Error() != "getaddrinfo() returned empty list" {
			t.Fatalf("got %#v", err)
		}
	})
	t.Run("resolver errors pass through unchanged", func(t *testing.T) {
		for _, want := range []error{
			&GAIError{Code: EAI_NONAME, Text: "Name or service not known"},
			&GAIError{Code: EAI_ADDRFAM, Text: "Address family for hostname not supported"},
			&OSError{Errno: unix.EMFILE, Text: "Too many open files"},
			context.Canceled,
		} {
			r := &fakeResolver{err: want, infos: []AddrInfo{{}}}
			_, err := resolveEndpoint(context.Background(), r, Endpoint{Host: str("example.invalid"), Port: str("80")}, 0, 0, 0, "connect")
			if err != want {
				t.Errorf("got %#v, want %#v", err, want)
			}
		}
		gai := &GAIError{Code: EAI_NONAME, Text: "Name or service not known"}
		if gai.Error() != "[Errno -2] Name or service not known" {
			t.Errorf("GAIError text %q", gai.Error())
		}
	})
	t.Run("port out of range", func(t *testing.T) {
		for _, port := range []string{"99999", "-1", "65536", "99999999999999999999999"} {
			for _, op := range []string{"connect", "bind"} {
				r := &fakeResolver{err: errors.New("the resolver must not be called")}
				_, err := resolveEndpoint(context.Background(), r, Endpoint{Host: str("127.0.0.1"), Port: str(port)}, 0, 0, 0, op)
				var oe *OverflowError
				if !errors.As(err, &oe) || err.Error() != op+"(): port must be 0-65535." {
					t.Errorf("port %s, %s: got %#v", port, op, err)
				}
				if len(r.calls) != 0 {
					t.Errorf("port %s: the resolver was called", port)
				}
			}
		}
		// The edges are fine.
		for _, port := range []string{"0", "65535"} {
			if _, err := resolveEndpoint(context.Background(), &fakeResolver{}, Endpoint{Host: str("::1"), Port: str(port)}, 0, 0, 0, "connect"); err != nil {
				t.Errorf("port %s: %v", port, err)
			}
		}
	})
	t.Run("embedded NUL", func(t *testing.T) {
		r := &fakeResolver{}
		_, err := resolveEndpoint(context.Background(), r, Endpoint{Host: str("a\x00b"), Port: str("80")}, 0, 0, 0, "connect")
		var ve *ValueError
		if !errors.As(err, &ve) || err.Error() != "embedded null character" || len(r.calls) != 0 {
			t.Errorf("got %#v", err)
		}
	})
}

func TestParsePort(t *testing.T) {
	tests := []struct {
		in     *string
		want   int64
		wantOK bool
	}{
		{nil, 0, true},
		{str(""), 0, true},
		{str("80"), 80, true},
		{str("+80"), 80, true},
		{str("-1"), -1, true},
		{str(" 8080\n"), 8080, true},
		{str("1_000"), 1000, true},
		{str("http"), 0, false},
		{str("80a"), 0, false},
		{str("   "), 0, false},
		{str("_"), 0, false},
	}
	for _, tc := range tests {
		got, ok := parsePort(tc.in)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("parsePort(%q) = %d, %v; want %d, %v", derefOr(tc.in, "None"), got, ok, tc.want, tc.wantOK)
		}
	}
}
