package core

import (
	"errors"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Socket is a non-blocking stream socket registered with Go's netpoller.
//
// Every system call on it goes through syscall.RawConn, which holds a
// reference on the descriptor for the call's duration; Close waits for those
// references to drop before it closes the descriptor. So a descriptor is
// never closed while another goroutine still uses or watches it, and never
// closed twice (the CPython gh-131728 and uvloop EBADF class of bug).
type Socket struct {
	file   *os.File
	raw    syscall.RawConn
	Family int
	Type   int
	Proto  int

	// callerFD is the caller's own descriptor of an adopted socket, or -1.
	// The library does its I/O on a duplicate, so that it can hand the
	// caller's descriptor back untouched if the protocol factory fails;
	// once the transport is made, Close closes both.
	callerFD int

	closeOnce sync.Once
	closeErr  error
}

// newSocket wraps a descriptor the caller owns and that is already
// non-blocking. On failure the descriptor is closed.
func newSocket(fd, family, sockType, proto int) (*Socket, error) {
	f := os.NewFile(uintptr(fd), "goconn-socket")
	if f == nil {
		unix.Close(fd)
		return nil, &OSError{Errno: unix.EBADF, Text: strerror(unix.EBADF)}
	}
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, osErrorFrom(err)
	}
	return &Socket{file: f, raw: raw, Family: family, Type: sockType, Proto: proto, callerFD: -1}, nil
}

// Close closes the descriptor once, after every call in flight has returned,
// and an adopted socket's caller descriptor with it.
func (s *Socket) Close() error {
	s.closeOnce.Do(func() {
		s.closeErr = s.file.Close()
		if s.callerFD >= 0 {
			unix.Close(s.callerFD)
		}
	})
	return s.closeErr
}

// giveBack closes the library's duplicate of an adopted socket and leaves the
// caller's descriptor open: the socket is the caller's again.
func (s *Socket) giveBack() {
	s.closeOnce.Do(func() { s.closeErr = s.file.Close() })
}

// fdForCaller is the descriptor callers see: their own for an adopted socket.
func (s *Socket) fdForCaller() int {
	if s.callerFD >= 0 {
		return s.callerFD
	}
	return s.FD()
}

// control runs fn with the descriptor held open.
func (s *Socket) control(fn func(fd int)) error {
	return s.raw.Control(func(fd uintptr) { fn(int(fd)) })
}

// FD returns the descriptor number (for extra info). It must not be used
// after the transport is closed.
func (s *Socket) FD() int {
	fd := -1
	_ = s.control(func(f int) { fd = f })
	return fd
}

// sockName and peerName are getsockname(2) and getpeername(2).
func (s *Socket) sockName() (SockAddr, bool) { return s.addrOf(unix.SYS_GETSOCKNAME) }
func (s *Socket) peerName() (SockAddr, bool) { return s.addrOf(unix.SYS_GETPEERNAME) }

func (s *Socket) addrOf(trap uintptr) (SockAddr, bool) {
	var sa SockAddr
	ok := false
	if cerr := s.control(func(fd int) { sa, ok = socketAddr(fd, trap) }); cerr != nil {
		return SockAddr{}, false
	}
	return sa, ok
}

// socketAddr makes the getsockname or getpeername call itself and decodes
// IPv4 and IPv6 addresses here: x/sys/unix asks the kernel for the socket's
// protocol on every AF_INET answer (for L2TP), a second system call.
func socketAddr(fd int, trap uintptr) (SockAddr, bool) {
	var rsa unix.RawSockaddrAny
	n := uint32(unix.SizeofSockaddrAny)
	if _, _, e := unix.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&n))); e != 0 {
		return SockAddr{}, false
	}
	switch rsa.Addr.Family {
	case unix.AF_INET:
		in := (*unix.RawSockaddrInet4)(unsafe.Pointer(&rsa))
		return SockAddrFrom(&unix.SockaddrInet4{Port: networkPort(in.Port), Addr: in.Addr})
	case unix.AF_INET6:
		in := (*unix.RawSockaddrInet6)(unsafe.Pointer(&rsa))
		return SockAddrFrom(&unix.SockaddrInet6{Port: networkPort(in.Port), ZoneId: in.Scope_id, Addr: in.Addr})
	}
	var sa unix.Sockaddr
	var err error
	if trap == unix.SYS_GETPEERNAME {
		sa, err = unix.Getpeername(fd)
	} else {
		sa, err = unix.Getsockname(fd)
	}
	if err != nil {
		return SockAddr{}, false
	}
	return SockAddrFrom(sa)
}

// networkPort reads a port stored in network byte order.
func networkPort(p uint16) int {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return int(b[0])<<8 | int(b[1])
}

// setNoDelay sets TCP_NODELAY as asyncio's _set_nodelay does.
func (s *Socket) setNoDelay() error {
	var err error
	if cerr := s.control(func(fd int) { err = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1) }); cerr != nil {
		return cerr
	}
	return err
}

// isClosedErr reports the errors RawConn returns once Close has started.
func isClosedErr(err error) bool {
	return errors.Is(err, os.ErrClosed)
}
