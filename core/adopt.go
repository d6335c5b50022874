package core

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// NotStreamError is asyncio's ValueError for a sock= that is not SOCK_STREAM.
// asyncio prints the socket object's repr; the Python layer does the same,
// C callers get the descriptor and its type.
type NotStreamError struct {
	FD   int
	Type int
}

func (e *NotStreamError) Error() string {
	return fmt.Sprintf("A Stream Socket was expected, got fd %d of type %d", e.FD, e.Type)
}

// ListeningSocketError rejects a listening socket passed as sock=. asyncio
// accepts one and the transport then waits forever for data that cannot
// come; goconn says so at once.
type ListeningSocketError struct{ FD int }

func (e *ListeningSocketError) Error() string {
	return fmt.Sprintf("A connected stream socket was expected, got listening socket fd %d", e.FD)
}

// adoptedSocket describes a caller's socket that passed the checks.
type adoptedSocket struct {
	fd, family, sockType, proto int
}

// checkAdoptable checks a caller's descriptor without changing it: it must be
// an open socket of type SOCK_STREAM that is not listening.
func checkAdoptable(fd int) (adoptedSocket, error) {
	if fd < 0 {
		return adoptedSocket{}, &OSError{Errno: unix.EBADF, Text: strerror(unix.EBADF)}
	}
	sockType, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return adoptedSocket{}, osErrorFrom(err)
	}
	if sockType != unix.SOCK_STREAM {
		return adoptedSocket{}, &NotStreamError{FD: fd, Type: sockType}
	}
	if listening, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err == nil && listening != 0 {
		return adoptedSocket{}, &ListeningSocketError{FD: fd}
	}
	family, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return adoptedSocket{}, osErrorFrom(err)
	}
	proto, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	if err != nil {
		proto = 0
	}
	return adoptedSocket{fd: fd, family: family, sockType: sockType, proto: proto}, nil
}

// take makes the descriptor non-blocking, as asyncio's setblocking(False)
// does, and wraps a duplicate of it for the library's I/O. The caller's
// descriptor stays open until the transport is closed; if the protocol
// factory fails it is handed back (see Socket.giveBack).
func (a adoptedSocket) take() (*Socket, error) {
	if err := unix.SetNonblock(a.fd, true); err != nil {
		return nil, osErrorFrom(err)
	}
	dup, err := unix.FcntlInt(uintptr(a.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, osErrorFrom(err)
	}
	s, err := newSocket(dup, a.family, a.sockType, a.proto)
	if err != nil {
		return nil, err
	}
	s.callerFD = a.fd
	return s, nil
}
