package core

import (
	"errors"
	"os"
	"sync"
	"syscall"

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
func (s *Socket) sockName() (SockAddr, bool) {
	var sa unix.Sockaddr
	var err error
	if cerr := s.control(func(fd int) { sa, err = unix.Getsockname(fd) }); cerr != nil || err != nil {
		return SockAddr{}, false
	}
	return SockAddrFrom(sa)
}

func (s *Socket) peerName() (SockAddr, bool) {
	var sa unix.Sockaddr
	var err error
	if cerr := s.control(func(fd int) { sa, err = unix.Getpeername(fd) }); cerr != nil || err != nil {
		return SockAddr{}, false
	}
	return SockAddrFrom(sa)
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
