package core

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Dialer makes one connection attempt: asyncio's _connect_sock. The race
// calls it once per address; tests inject fakes.
type Dialer interface {
	Dial(ctx context.Context, ai AddrInfo, local []AddrInfo) AttemptResult
}

// AttemptResult is the outcome of one attempt.
type AttemptResult struct {
	Sock      *Socket  // the connected socket, nil on failure
	Local     SockAddr // the attempt's local address, when it got one
	Errors    []error  // this attempt's OSErrors in order: bind errors, then the connect error
	Cancelled bool     // the attempt was stopped by its context
}

// SystemDialer dials with real sockets.
type SystemDialer struct {
	BindNoPort bool // set IP_BIND_ADDRESS_NO_PORT before binding to port 0
}

// longAgo is a deadline in the past, used to wake a goroutine that waits on
// the netpoller.
var longAgo = time.Unix(1, 0)

// Dial creates a non-blocking socket, binds it to the first local address of
// the same family that works, and connects it, recording errors exactly as
// asyncio's _connect_sock does.
func (d SystemDialer) Dial(ctx context.Context, ai AddrInfo, local []AddrInfo) AttemptResult {
	if ctx.Err() != nil {
		return AttemptResult{Cancelled: true}
	}
	fd, err := unix.Socket(ai.Family, ai.Type|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, ai.Proto)
	if err != nil {
		return AttemptResult{Errors: []error{osErrorFrom(err)}}
	}
	var errs []error
	if local != nil {
		bound := false
		for _, l := range local {
			if l.Family != ai.Family {
				continue
			}
			if d.BindNoPort {
				bindNoPort(fd, l.Addr)
			}
			if err := bindTo(fd, l.Addr); err != nil {
				errs = append(errs, err)
				continue
			}
			bound = true
			break
		}
		if !bound {
			unix.Close(fd)
			if len(errs) == 0 {
				errs = append(errs, &OSError{Text: fmt.Sprintf("no matching local address with family=%s found", FamilyRepr(ai.Family))})
			}
			return AttemptResult{Errors: errs}
		}
	}
	sa, err := ai.Addr.Sockaddr()
	if err != nil {
		unix.Close(fd)
		return AttemptResult{Errors: append(errs, err)}
	}
	err = unix.Connect(fd, sa)
	if err != nil && err != unix.EINPROGRESS && err != unix.EINTR {
		// A connect that fails at once keeps the system's text, with no
		// "Connect call failed" prefix, as in asyncio.
		unix.Close(fd)
		return AttemptResult{Errors: append(errs, osErrorFrom(err))}
	}
	sock, serr := newSocket(fd, ai.Family, ai.Type, ai.Proto)
	if serr != nil {
		return AttemptResult{Errors: append(errs, serr)}
	}
	if err != nil {
		if cerr := waitConnected(ctx, sock); cerr != nil {
			sock.Close()
			if ctx.Err() != nil {
				return AttemptResult{Cancelled: true}
			}
			if errno, ok := cerr.(unix.Errno); ok {
				cerr = &OSError{Errno: errno, Text: "Connect call failed " + ai.Addr.Repr(), Addr: &ai.Addr}
			} else {
				cerr = osErrorFrom(cerr)
			}
			return AttemptResult{Errors: append(errs, cerr)}
		}
	}
	res := AttemptResult{Sock: sock}
	if la, ok := sock.sockName(); ok {
		res.Local = la
	}
	return res
}

// bindTo binds fd and words a failure as asyncio does:
// "error while attempting to bind on address ('127.0.0.1', 1): address already in use".
func bindTo(fd int, addr SockAddr) error {
	sa, err := addr.Sockaddr()
	if err == nil {
		err = unix.Bind(fd, sa)
	}
	if err == nil {
		return nil
	}
	var errno unix.Errno
	if !errors.As(err, &errno) {
		return err
	}
	return &OSError{Errno: errno, Text: fmt.Sprintf("error while attempting to bind on address %s: %s",
		addr.Repr(), strings.ToLower(strerror(errno)))}
}

// waitConnected waits for a non-blocking connect to finish and returns the
// socket's error (an unix.Errno), or the wait's own error when ctx ended it.
func waitConnected(ctx context.Context, sock *Socket) error {
	stop := context.AfterFunc(ctx, func() { _ = sock.file.SetWriteDeadline(longAgo) })
	defer stop()
	var connErr error
	// The state is checked before the first wait, never skipped: RawConn.Write
	// resets the poller's readiness before calling this function, so a connect
	// that already finished (a fast refusal) would leave nothing to wait for.
	werr := sock.raw.Write(func(fd uintptr) bool {
		v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		if err != nil {
			connErr = err
			return true
		}
		switch e := unix.Errno(v); e {
		case unix.EINPROGRESS, unix.EALREADY, unix.EINTR:
			return false
		case 0:
			if _, err := unix.Getpeername(int(fd)); err == nil {
				return true
			}
			return false
		default:
			connErr = e
			return true
		}
	})
	if werr != nil {
		return werr
	}
	return connErr
}
