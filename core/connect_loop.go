package core

import (
	"context"
	"sync"

	"golang.org/x/sys/unix"
)

// Connecting on the loop's thread: loop mode, one address known at once.
//
// When the request is in loop mode and its one address needs no lookup (an
// IP literal, as asyncio's _ipaddr_info fast path finds it, or a single
// pre-resolved address), the attempt needs no goroutine and no timer: the
// socket is made and its connect started in OpenConnection itself, on the
// caller's thread, and the socket waits in the loop's epoll set for
// EPOLLOUT. Dispatch then finishes the connect on the owner's thread and,
// for plain TCP, hands the transport to the protocol there and then. That
// is asyncio's sock_connect with add_writer, and it spares each connect
// the three hand-offs between threads (goroutine start, Go's netpoller,
// the eventfd back) that cost more than the connect itself on loopback.
//
// Everything else (lookups, several addresses, per-attempt and connect
// timeouts, injected dialers, direct mode) takes the race of race.go.

// loopDial is one connection attempt under way in the loop's epoll set. Its
// fields are set up by OpenConnection, on whatever thread called it, and from
// then on touched only on the loop's thread (Dispatch runs one thing at a
// time). setup is held while OpenConnection sets up, so a Dispatch running on
// the loop's thread meanwhile waits for it; no user code runs under it.
type loopDial struct {
	setup sync.Mutex
	r     *Request
	opts  Options
	exec  Executor
	cb    Callbacks
	loop  *Loop
	ai    AddrInfo
	errs  []error // the bind errors before the connect
	fd    int
	id    uint64 // the epoll registration, 0 when none
	stop  func() bool
	over  bool // the attempt has ended: the fd is closed or handed on
	// inDispatch: set once OpenConnection has returned, when everything
	// that happens to the attempt happens inside Dispatch.
	inDispatch bool
	record     Attempt
}

// loopDialTarget reports whether the request can be dialled on the loop, and
// the one remote address and the local ones. It makes no lookup: a host that
// needs one takes the race.
func loopDialTarget(opts *Options, exec Executor) (remote AddrInfo, local []AddrInfo, ok bool) {
	if loopOf(exec) == nil || opts.Sock != nil || opts.AttemptTimeout != nil || opts.ConnectTimeout != nil {
		return AddrInfo{}, nil, false
	}
	if _, system := opts.Dialer.(SystemDialer); !system {
		return AddrInfo{}, nil, false
	}
	switch {
	case opts.AddrInfos != nil:
		if len(opts.AddrInfos) != 1 {
			return AddrInfo{}, nil, false
		}
		remote = opts.AddrInfos[0]
	default:
		ai, numeric := numericAddrInfo(opts.Host, opts.Port, opts.Family, unix.SOCK_STREAM, opts.Proto, 0, 0)
		if !numeric || checkPortRange(opts.Port, "connect") != nil {
			return AddrInfo{}, nil, false
		}
		remote = ai
	}
	if remote.Type != unix.SOCK_STREAM || (remote.Proto != 0 && remote.Proto != unix.IPPROTO_TCP) {
		// connectResult trusts EPOLLOUT, which TCP reports only once the
		// connect is over; other protocols (SCTP) take the race.
		return AddrInfo{}, nil, false
	}
	if l := opts.LocalAddr; l != nil {
		ai, numeric := numericAddrInfo(l.Host, l.Port, opts.Family, unix.SOCK_STREAM, opts.Proto, l.Flowinfo, l.ScopeID)
		if !numeric || checkPortRange(l.Port, "bind") != nil {
			return AddrInfo{}, nil, false
		}
		local = []AddrInfo{ai}
	}
	return remote, local, true
}

// dialOnLoop starts the attempt. Nothing of the outcome is delivered before
// OpenConnection has returned: Done always comes from Dispatch.
func (r *Request) dialOnLoop(remote AddrInfo, local []AddrInfo, opts Options, exec Executor, cb Callbacks) {
	if opts.AddrInfos == nil {
		// The trace shows the numeric lookup, as the race's path does.
		r.rec.resolveStart(opts.Family)
		r.rec.resolveEnd(opts.Family, 1, nil)
	}
	d := &loopDial{r: r, opts: opts, exec: exec, cb: cb, loop: loopOf(exec), ai: remote, fd: -1}
	d.setup.Lock()
	defer d.setup.Unlock()
	d.record = Attempt{Index: 0, Remote: remote.Addr, Start: opts.Clock.Now()}
	r.rec.attempt(TraceAttemptStart, d.record)

	fd, pending, errs := opts.Dialer.(SystemDialer).start(remote, local)
	d.errs = errs
	if fd < 0 {
		d.fail(errs)
		return
	}
	d.fd = fd
	if !pending {
		exec.Post(d.connected) // a connect that succeeded at once
		return
	}
	id, err := d.loop.watch(d, fd, unix.EPOLLOUT)
	if err != nil {
		d.closeFD()
		d.fail(append(errs, err))
		return
	}
	d.id = id
	// A cancel or the end of the request stops the attempt on the loop's
	// thread, where its state lives.
	d.stop = context.AfterFunc(r.ctx, func() { exec.Post(d.stopped) })
}

// setUp waits until OpenConnection has finished setting the attempt up.
func (d *loopDial) setUp() {
	d.setup.Lock()
	d.setup.Unlock() //nolint:staticcheck // an empty critical section: a barrier
	d.inDispatch = true
}

// loopReady is called by Dispatch while the socket is writable.
func (d *loopDial) loopReady(id uint64) {
	d.setUp()
	if d.over || id != d.id {
		return
	}
	done, err := connectResult(d.fd)
	if !done {
		return
	}
	if err != nil {
		d.unwatch()
		d.closeFD()
		d.fail(append(d.errs, connectCallFailed(err, d.ai)))
		return
	}
	d.connected()
}

// connected makes the socket of a finished connect and hands it on: to the
// TLS handshake, or straight to the protocol.
func (d *loopDial) connected() {
	d.setUp()
	if d.over {
		return
	}
	d.unwatch()
	if d.r.ctx.Err() != nil {
		d.stopped()
		return
	}
	d.over = true
	if d.stop != nil {
		d.stop()
	}
	sock, err := newSocket(d.fd, d.ai.Family, d.ai.Type, d.ai.Proto)
	d.fd = -1 // newSocket owns it now, and closed it on failure
	if err != nil {
		d.fail(append(d.errs, err))
		return
	}
	d.record.End = d.opts.Clock.Now()
	d.record.Outcome = AttemptWon
	if d.opts.TLS != nil {
		d.record.Local, d.record.HasLocal = sock.sockName()
		d.r.rec.attempt(TraceAttemptEnd, d.record)
		attempts := []Attempt{d.record}
		// The handshake runs on a goroutine, off the caller's thread.
		goSafe(func() { d.r.secure(sock, d.opts, attempts, d.exec, d.cb) })
		return
	}
	t := newTransport(sock, d.exec, noDelayFor(d.opts.NoDelay, sock), nil)
	d.record.Local, d.record.HasLocal = t.local, t.hasLocal // one getsockname for both
	d.r.rec.attempt(TraceAttemptEnd, d.record)
	t.attempts = []Attempt{d.record}
	d.report(d.r.handOver(t, d.opts, d.exec, d.cb))
}

// report runs the task that ends the request (the hand-over or the
// failure) at once when it can: inside Dispatch, where this runs, with no
// trace event queued ahead of it. Otherwise it goes behind them in the
// queue.
func (d *loopDial) report(task func()) {
	if d.inDispatch && d.opts.Trace == nil {
		task()
		return
	}
	d.exec.Post(task)
}

// stopped ends an attempt that a cancel stopped (no connect timeout takes
// this path).
func (d *loopDial) stopped() {
	d.setUp()
	if d.over {
		return
	}
	d.unwatch()
	d.closeFD()
	d.over = true
	d.record.End = d.opts.Clock.Now()
	d.record.Outcome = AttemptCancelled
	d.r.rec.attempt(TraceAttemptEnd, d.record)
	d.report(d.r.failure(d.exec, d.cb, d.r.stopped(), []Attempt{d.record}))
}

// fail ends the request with the attempt's errors, as the race does when
// its only attempt fails.
func (d *loopDial) fail(errs []error) {
	d.over = true
	if d.stop != nil {
		d.stop()
	}
	d.record.End = d.opts.Clock.Now()
	d.record.failed(errs)
	d.r.rec.attempt(TraceAttemptEnd, d.record)
	d.report(d.r.failure(d.exec, d.cb, Aggregate(errs, d.opts.AllErrors), []Attempt{d.record}))
}

func (d *loopDial) unwatch() {
	if d.id != 0 {
		d.loop.unwatch(d.id, d.fd)
		d.id = 0
	}
}

func (d *loopDial) closeFD() {
	if d.fd >= 0 {
		unix.Close(d.fd)
		d.fd = -1
	}
}
