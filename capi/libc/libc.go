// Package libc binds the C library calls whose exact behaviour asyncio users
// see through Python's socket module: getaddrinfo(3) (flags, /etc/hosts,
// nsswitch, gai.conf ordering, scope ids, error texts), getnameinfo(3)'s
// numeric host text, and strerror(3). It only converts; the logic that uses
// them is in core.
package libc

/*
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <errno.h>

// numeric_host formats an address exactly as Python's makeipaddr does.
static int goconn_numeric_host(const struct sockaddr *sa, socklen_t len, char *buf, size_t n) {
	return getnameinfo(sa, len, buf, n, NULL, 0, NI_NUMERICHOST);
}
*/
import "C"

import (
	"context"
	"encoding/binary"
	"net/netip"
	"sync"
	"syscall"
	"unsafe"

	"github.com/goconn/goconn/core"
	"golang.org/x/sys/unix"
)

// Resolver is core.Resolver on the C library's getaddrinfo.
type Resolver struct{}

// GetAddrInfo runs getaddrinfo on its own goroutine so that a cancelled
// request returns at once; the C call finishes in the background, as
// asyncio's executor job does.
func (Resolver) GetAddrInfo(ctx context.Context, host, port *string, hints core.Hints) ([]core.AddrInfo, error) {
	type result struct {
		infos []core.AddrInfo
		err   error
	}
	ch := make(chan result, 1)
	core.GoSafe(func() {
		infos, err := getaddrinfo(host, port, hints)
		ch <- result{infos, err}
	})
	select {
	case r := <-ch:
		return r.infos, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func getaddrinfo(host, port *string, hints core.Hints) ([]core.AddrInfo, error) {
	var chost, cport *C.char
	if host != nil {
		chost = C.CString(*host)
		defer C.free(unsafe.Pointer(chost))
	}
	if port != nil {
		cport = C.CString(*port)
		defer C.free(unsafe.Pointer(cport))
	}
	var h C.struct_addrinfo
	h.ai_family = C.int(hints.Family)
	h.ai_socktype = C.int(hints.Type)
	h.ai_protocol = C.int(hints.Proto)
	h.ai_flags = C.int(hints.Flags)
	var res *C.struct_addrinfo
	// cgo returns errno from the same call: a separate call could read
	// another thread's errno.
	rc, cerr := C.getaddrinfo(chost, cport, &h, &res)
	if rc != 0 {
		if rc == C.EAI_SYSTEM {
			errno, _ := cerr.(syscall.Errno)
			if errno == 0 {
				errno = syscall.EIO
			}
			return nil, &core.OSError{Errno: errno, Text: Strerror(errno)}
		}
		return nil, &core.GAIError{Code: int(rc), Text: C.GoString(C.gai_strerror(rc))}
	}
	defer C.freeaddrinfo(res)
	var out []core.AddrInfo
	for ai := res; ai != nil; ai = ai.ai_next {
		addr, ok := sockAddr(ai.ai_addr, ai.ai_addrlen)
		if !ok {
			continue // a family Python's socket module would not show either
		}
		info := core.AddrInfo{Family: int(ai.ai_family), Type: int(ai.ai_socktype), Proto: int(ai.ai_protocol), Addr: addr}
		if ai.ai_canonname != nil {
			info.Canon = C.GoString(ai.ai_canonname)
		}
		out = append(out, info)
	}
	return out, nil
}

// SockAddr converts a C struct sockaddr of n bytes (AF_INET or AF_INET6),
// with the host text Python would show.
func SockAddr(p unsafe.Pointer, n int) (core.SockAddr, bool) {
	if p == nil || n <= 0 {
		return core.SockAddr{}, false
	}
	return sockAddr((*C.struct_sockaddr)(p), C.socklen_t(n))
}

func sockAddr(sa *C.struct_sockaddr, n C.socklen_t) (core.SockAddr, bool) {
	if sa == nil {
		return core.SockAddr{}, false
	}
	var buf [C.NI_MAXHOST]C.char
	if C.goconn_numeric_host(sa, n, &buf[0], C.size_t(len(buf))) != 0 {
		return core.SockAddr{}, false
	}
	text := C.GoString(&buf[0])
	switch sa.sa_family {
	case unix.AF_INET:
		in := (*C.struct_sockaddr_in)(unsafe.Pointer(sa))
		ip := netip.AddrFrom4(*(*[4]byte)(unsafe.Pointer(&in.sin_addr)))
		return core.SockAddr{Family: unix.AF_INET, Host: text, IP: ip, Port: int(netUint16(unsafe.Pointer(&in.sin_port)))}, true
	case unix.AF_INET6:
		in6 := (*C.struct_sockaddr_in6)(unsafe.Pointer(sa))
		ip := netip.AddrFrom16(*(*[16]byte)(unsafe.Pointer(&in6.sin6_addr)))
		return core.SockAddr{Family: unix.AF_INET6, Host: text, IP: ip, Port: int(netUint16(unsafe.Pointer(&in6.sin6_port))),
			Flowinfo: netUint32(unsafe.Pointer(&in6.sin6_flowinfo)), ScopeID: uint32(in6.sin6_scope_id)}, true
	}
	return core.SockAddr{}, false
}

// netUint16 and netUint32 read network-order fields of a C sockaddr.
func netUint16(p unsafe.Pointer) uint16 { return binary.BigEndian.Uint16((*[2]byte)(p)[:]) }
func netUint32(p unsafe.Pointer) uint32 { return binary.BigEndian.Uint32((*[4]byte)(p)[:]) }

var (
	strerrorMu    sync.Mutex
	strerrorCache = map[syscall.Errno]string{}
)

// Strerror is strerror(3)'s text, as Python's os.strerror gives it. Texts
// are cached; the C call is made under a lock because strerror may use a
// static buffer for unknown numbers.
func Strerror(e syscall.Errno) string {
	strerrorMu.Lock()
	defer strerrorMu.Unlock()
	if s, ok := strerrorCache[e]; ok {
		return s
	}
	s := C.GoString(C.strerror(C.int(e)))
	strerrorCache[e] = s
	return s
}
