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
// asyncio's _connect_sock does. The wait for the connect runs on Go's
// netpoller; connect_loop.go has the loop-mode twin that waits in the
// loop's epoll set instead.
func (d SystemDialer) Dial(ctx context.Context, ai AddrInfo, local []AddrInfo) AttemptResult {
	if ctx.Err() != nil {
		return AttemptResult{Cancelled: true}
	}
	fd, pending, errs := d.start(ai, local)
	if fd < 0 {
		return AttemptResult{Errors: errs}
	}
	sock, serr := newSocket(fd, ai.Family, ai.Type, ai.Proto)
	if serr != nil {
		return AttemptResult{Errors: append(errs, serr)}
	}
	if pending {
		if cerr := waitConnected(ctx, sock); cerr != nil {
			sock.Close()
			if ctx.Err() != nil {
				return AttemptResult{Cancelled: true}
			}
			return AttemptResult{Errors: append(errs, connectCallFailed(cerr, ai))}
		}
	}
	res := AttemptResult{Sock: sock}
	if la, ok := sock.sockName(); ok {
		res.Local = la
	}
	return res
}

// start makes the socket, binds it when local addresses are given, and
// starts the connect. It returns the descriptor (non-blocking, the
// caller's to close) and whether the connect is still under way; or -1 and
// the attempt's errors, with nothing left open.
func (d SystemDialer) start(ai AddrInfo, local []AddrInfo) (fd int, pending bool, errs []error) {
	fd, err := unix.Socket(ai.Family, ai.Type|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, ai.Proto)
	if err != nil {
		return -1, false, []error{osErrorFrom(err)}
	}
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
			return -1, false, errs
		}
	}
	sa, err := ai.Addr.Sockaddr()
	if err != nil {
		unix.Close(fd)
		return -1, false, append(errs, err)
	}
	err = unix.Connect(fd, sa)
	if err != nil && err != unix.EINPROGRESS && err != unix.EINTR {
		// A connect that fails at once keeps the system's text, with no
		// "Connect call failed" prefix, as in asyncio.
		unix.Close(fd)
		return -1, false, append(errs, osErrorFrom(err))
	}
	return fd, err != nil, errs
}

// connectCallFailed words the error of a connect that failed after it was
// under way, as asyncio's sock_connect does.
func connectCallFailed(err error, ai AddrInfo) error {
	if errno, ok := err.(unix.Errno); ok {
		return &OSError{Errno: errno, Text: "Connect call failed " + ai.Addr.Repr(), Addr: &ai.Addr}
	}
	return osErrorFrom(err)
}

// connectState reads how a non-blocking connect stands: done is false while
// it is under way; once done, err is nil (connected) or the socket's error
// (an unix.Errno). It asks getpeername whether a socket with no error is
// connected: the netpoller can report a socket writable before its connect
// has begun to wait (connectResult is for epoll's EPOLLOUT, which a
// connecting TCP socket reports only once the connect is over).
func connectState(fd int) (done bool, err error) {
	done, err = connectResult(fd)
	if done && err == nil {
		_, perr := unix.Getpeername(fd)
		return perr == nil, nil
	}
	return done, err
}

// connectResult is SO_ERROR: the connect's outcome once it is over.
func connectResult(fd int) (done bool, err error) {
	v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return true, err
	}
	switch e := unix.Errno(v); e {
	case unix.EINPROGRESS, unix.EALREADY, unix.EINTR:
		return false, nil
	case 0:
		return true, nil
	default:
		return true, e
	}
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
		done, err := connectState(int(fd))
		connErr = err
		return done
	})
	if werr != nil {
		return werr
	}
	return connErr
}
