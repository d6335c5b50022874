package core

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// SockAddr is a socket address as Python's socket module shows it: a
// (host, port) pair for IPv4, a (host, port, flowinfo, scope_id) 4-tuple for
// IPv6 (the scope id is kept end to end, so link-local addresses work), or a
// path for AF_UNIX.
type SockAddr struct {
	Family   int
	Host     string // the host text Python shows: the caller's own spelling on the numeric fast path
	IP       netip.Addr
	Port     int
	Flowinfo uint32
	ScopeID  uint32
	Path     string // AF_UNIX only
}

// Repr is Python's repr() of the address tuple, as asyncio prints it in
// "Connect call failed ('::1', 1, 0, 0)".
func (a SockAddr) Repr() string {
	switch a.Family {
	case unix.AF_INET:
		return fmt.Sprintf("(%s, %d)", pyStrRepr(a.Host), a.Port)
	case unix.AF_INET6:
		return fmt.Sprintf("(%s, %d, %d, %d)", pyStrRepr(a.Host), a.Port, a.Flowinfo, a.ScopeID)
	case unix.AF_UNIX:
		return pyStrRepr(a.Path)
	}
	return "None"
}

func (a SockAddr) String() string { return a.Repr() }

// Sockaddr converts the address for a system call. The IPv6 flow label is not
// passed: golang.org/x/sys has no field for it, and asyncio's remote
// addresses always carry 0.
func (a SockAddr) Sockaddr() (unix.Sockaddr, error) {
	switch a.Family {
	case unix.AF_INET:
		if !a.IP.Is4() {
			return nil, &OSError{Errno: unix.EAFNOSUPPORT, Text: strerror(unix.EAFNOSUPPORT)}
		}
		return &unix.SockaddrInet4{Port: a.Port, Addr: a.IP.As4()}, nil
	case unix.AF_INET6:
		if !a.IP.IsValid() {
			return nil, &OSError{Errno: unix.EAFNOSUPPORT, Text: strerror(unix.EAFNOSUPPORT)}
		}
		return &unix.SockaddrInet6{Port: a.Port, ZoneId: a.ScopeID, Addr: a.IP.As16()}, nil
	case unix.AF_UNIX:
		return &unix.SockaddrUnix{Name: a.Path}, nil
	}
	return nil, &OSError{Errno: unix.EAFNOSUPPORT, Text: strerror(unix.EAFNOSUPPORT)}
}

// SockAddrFrom converts a system call's address back, formatting the host the
// way getnameinfo(NI_NUMERICHOST) does, as Python's makesockaddr does.
func SockAddrFrom(sa unix.Sockaddr) (SockAddr, bool) {
	switch v := sa.(type) {
	case *unix.SockaddrInet4:
		ip := netip.AddrFrom4(v.Addr)
		return SockAddr{Family: unix.AF_INET, Host: ip.String(), IP: ip, Port: v.Port}, true
	case *unix.SockaddrInet6:
		ip := netip.AddrFrom16(v.Addr)
		return SockAddr{Family: unix.AF_INET6, Host: ipv6HostText(ip, v.ZoneId), IP: ip, Port: v.Port, ScopeID: v.ZoneId}, true
	case *unix.SockaddrUnix:
		return SockAddr{Family: unix.AF_UNIX, Path: v.Name}, true
	}
	return SockAddr{}, false
}

// ipv6HostText is glibc getnameinfo's numeric text: a non-zero scope id is
// appended as "%ifname" for link-local addresses when the interface is known,
// otherwise as "%N".
func ipv6HostText(ip netip.Addr, scope uint32) string {
	s := ip.String()
	if scope == 0 {
		return s
	}
	if ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() {
		if ifi, err := net.InterfaceByIndex(int(scope)); err == nil {
			return s + "%" + ifi.Name
		}
	}
	return s + "%" + strconv.FormatUint(uint64(scope), 10)
}

// FamilyRepr prints a family the way Python prints socket.AddressFamily
// members inside an f-string's {family=}: "<AddressFamily.AF_INET: 2>".
func FamilyRepr(family int) string {
	switch family {
	case unix.AF_UNSPEC:
		return "<AddressFamily.AF_UNSPEC: 0>"
	case unix.AF_INET:
		return "<AddressFamily.AF_INET: 2>"
	case unix.AF_INET6:
		return "<AddressFamily.AF_INET6: 10>"
	case unix.AF_UNIX:
		return "<AddressFamily.AF_UNIX: 1>"
	}
	return strconv.Itoa(family)
}

// pyStrRepr is Python's repr() of a str: single quotes unless the text holds
// a single quote and no double quote, with backslash escapes for the quote,
// the backslash and every character str.isprintable() rejects (\t, \n,
// \r, then \xhh, \uhhhh or \Uhhhhhhhh). A byte that is not UTF-8 is
// shown as Python shows it after os.fsdecode: a lone surrogate, \udcXX.
func pyStrRepr(s string) string {
	quote := byte('\'')
	if strings.IndexByte(s, '\'') >= 0 && strings.IndexByte(s, '"') < 0 {
		quote = '"'
	}
	var b strings.Builder
	b.WriteByte(quote)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			fmt.Fprintf(&b, `\udc%02x`, s[i])
			i++
			continue
		}
		i += size
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == rune(quote):
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == ' ' || unicode.IsPrint(r): // str.isprintable(), Unicode version aside
			b.WriteRune(r)
		case r <= 0xff:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r <= 0xffff:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
	}
	b.WriteByte(quote)
	return b.String()
}
