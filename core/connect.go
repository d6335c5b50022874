package core

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Result is what on_done receives.
type Result struct {
	Transport   *Transport   // nil on failure
	Protocol    Protocol     // nil on failure
	Err         error        // nil on success
	Attempts    []Attempt    // the attempt trace, on success and on failure
	Resolutions []Resolution // the lookups of the trace
}

// Callbacks connect a request to its caller.
type Callbacks struct {
	// Factory makes the protocol, once, after the connection is up and
	// before connection_made. A non-nil error fails the request.
	Factory func(t *Transport) (Protocol, error)
	// Done is called exactly once, after connection_made on success.
	Done func(Result)
}

// Request is a connection being made. Its callbacks run through the
// executor it was given.
type Request struct {
	ctx    context.Context
	cancel context.CancelFunc
	rec    *traceRecorder

	mu         sync.Mutex
	cancelled  bool
	handedOver bool // the protocol factory has been called

	timedOut       atomic.Bool // connect_timeout ended the request
	connectTimeout float64
}

// OpenConnection starts create_connection. Argument errors, including a bad
// sock=, are returned at once and then no callback ever runs. Otherwise the
// connection is made in the background: resolve, interleave, the staggered
// race, the transport, the protocol factory, connection_made, and Done.
//
// An adopted socket belongs to the library once OpenConnection returns nil.
func OpenConnection(opts Options, exec Executor, cb Callbacks) (*Request, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	var adopted adoptedSocket
	if opts.Sock != nil {
		a, err := checkAdoptable(*opts.Sock)
		if err != nil {
			return nil, err
		}
		adopted = a
	}
	if opts.Resolver == nil && opts.Sock == nil {
		return nil, errors.New("no resolver configured")
	}
	if err := opts.validateExtras(); err != nil {
		return nil, err
	}
	if opts.Dialer == nil {
		opts.Dialer = SystemDialer{BindNoPort: opts.BindNoPort}
	}
	if opts.Clock == nil {
		opts.Clock = SystemClock
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Request{ctx: ctx, cancel: cancel}
	var emit func(TraceEvent)
	if trace := opts.Trace; trace != nil {
		emit = func(ev TraceEvent) { exec.Post(func() { trace(ev) }) }
	}
	r.rec = newTraceRecorder(opts.Clock, emit)
	if opts.ConnectTimeout != nil && opts.Sock == nil || opts.ConnectTimeout != nil && opts.TLS != nil {
		r.startConnectTimeout(*opts.ConnectTimeout, opts.Clock)
	}
	switch {
	case opts.Sock != nil && opts.TLS != nil:
		// asyncio checks the TLS timeouts when it makes the transport,
		// which for sock= happens in the call itself, before any I/O, and
		// after it made the socket non-blocking.
		_ = unix.SetNonblock(adopted.fd, true)
		if _, _, err := opts.tlsTimeouts(); err != nil {
			cancel()
			return nil, err
		}
		sock, err := adopted.take()
		if err != nil {
			cancel()
			return nil, err
		}
		goSafe(func() { r.secure(sock, opts, nil, exec, cb) })
	case opts.Sock != nil:
		// asyncio makes the transport of an adopted socket at once, in the
		// call itself: so does goconn, and a cancel is from then on too late
		// (the protocol sees connection_made and connection_lost, as in
		// asyncio).
		sock, err := adopted.take()
		if err != nil {
			cancel()
			return nil, err
		}
		r.handedOver = true
		r.deliver(newTransport(sock, exec, noDelayFor(opts.NoDelay, sock), nil), opts, exec, cb)
	default:
		if remote, local, ok := loopDialTarget(&opts, exec); ok {
			r.dialOnLoop(remote, local, opts, exec, cb)
			break
		}
		goSafe(func() { r.connect(opts, exec, cb) })
	}
	return r, nil
}

// Cancel stops the request. Before the protocol factory has run (for an
// adopted socket the transport exists at once, so never), every
// attempt stops, every socket is closed, and Done reports ErrCancelled with
// no protocol callback at all. Once the factory has run, Cancel does nothing
// and returns false: Done brings the transport, which the caller closes (the
// protocol then sees connection_made and connection_lost, as asyncio's does
// when cancelled at that point).
func (r *Request) Cancel() bool {
	r.mu.Lock()
	if r.handedOver || r.cancelled {
		r.mu.Unlock()
		return false
	}
	r.cancelled = true
	r.mu.Unlock()
	r.cancel()
	return true
}

// isNumeric: the host is an IP literal (asyncio's fast path): no lookup.
func isNumeric(ep Endpoint, proto int) bool {
	_, ok := numericAddrInfo(ep.Host, ep.Port, unix.AF_UNSPEC, unix.SOCK_STREAM, proto, 0, 0)
	return ok
}

// startConnectTimeout ends the request with a TimeoutError if it is not
// handed to the protocol within the connect timeout.
func (r *Request) startConnectTimeout(seconds float64, clock Clock) {
	r.connectTimeout = seconds
	timer := clock.NewTimer(secondsToDuration(seconds))
	goSafe(func() {
		defer timer.Stop()
		select {
		case <-timer.C():
			r.mu.Lock()
			expired := !r.handedOver && !r.cancelled
			if expired {
				r.timedOut.Store(true) // under r.mu, so deliver sees it before a hand-over
			}
			r.mu.Unlock()
			if expired {
				r.cancel()
			}
		case <-r.ctx.Done():
		}
	})
}

// stopped names why r.ctx ended: the connect timeout, or a cancel.
func (r *Request) stopped() error {
	if r.timedOut.Load() {
		return &TimeoutError{Text: fmt.Sprintf("create_connection timed out after %s seconds (connect_timeout)", PyFloat(r.connectTimeout))}
	}
	return ErrCancelled
}

// resolve looks the remote host up: pre-resolved addresses, asynchronous
// per-family resolution (RFC 8305 section 3), or one getaddrinfo call as
// asyncio makes it. later brings addresses resolved after the race began.
func (r *Request) resolve(opts Options) (infos []AddrInfo, later <-chan []AddrInfo, err error) {
	ep := Endpoint{Host: opts.Host, Port: opts.Port}
	fafc := opts.interleave()
	switch {
	case opts.AddrInfos != nil:
		if len(opts.AddrInfos) == 0 {
			return nil, nil, errEmptyList()
		}
		infos = append([]AddrInfo(nil), opts.AddrInfos...)
	case opts.ResolutionDelay != nil && opts.Family == unix.AF_UNSPEC && !isNumeric(ep, opts.Proto):
		infos, later, err = resolveHappyEyeballs(r.ctx, opts.Resolver, ep, opts.Proto, opts.Flags,
			seconds(opts.ResolutionDelay), fafc, opts.Clock, r.rec)
		if err == nil {
			err = checkPortRange(ep.Port, "connect") // after the lookups, as resolveEndpoint does
		}
		if err != nil {
			return nil, nil, err
		}
		return infos, later, nil
	default:
		r.rec.resolveStart(opts.Family)
		infos, err = resolveEndpoint(r.ctx, opts.Resolver, ep, opts.Family, opts.Proto, opts.Flags, "connect")
		r.rec.resolveEnd(opts.Family, len(infos), err)
		if err != nil {
			return nil, nil, err
		}
	}
	if fafc != 0 {
		infos = Interleave(infos, fafc)
	}
	return infos, nil, nil
}

func (r *Request) connect(opts Options, exec Executor, cb Callbacks) {
	infos, later, err := r.resolve(opts)
	if r.ctx.Err() != nil {
		r.fail(exec, cb, r.stopped(), nil)
		return
	}
	if err != nil {
		r.fail(exec, cb, err, nil)
		return
	}
	var local []AddrInfo
	if opts.LocalAddr != nil {
		local, err = resolveEndpoint(r.ctx, opts.Resolver, *opts.LocalAddr, opts.Family, opts.Proto, opts.Flags, "bind")
		if r.ctx.Err() != nil {
			r.fail(exec, cb, r.stopped(), nil)
			return
		}
		if err != nil {
			r.fail(exec, cb, err, nil)
			return
		}
	}
	delay, staggered := opts.delay()
	out, err := runRace(r.ctx, raceConfig{
		infos: infos, local: local, staggered: staggered, delay: delay,
		clock: opts.Clock, dialer: opts.Dialer,
		arrivals: later, attemptTimeout: seconds(opts.AttemptTimeout), events: r.rec.attempt,
	})
	if errors.Is(err, ErrCancelled) {
		err = r.stopped()
	}
	if err != nil {
		r.fail(exec, cb, err, out.attempts)
		return
	}
	if out.winner == nil {
		r.fail(exec, cb, Aggregate(out.flatErrors(), opts.AllErrors), out.attempts)
		return
	}
	if opts.TLS != nil {
		r.secure(out.winner, opts, out.attempts, exec, cb)
		return
	}
	r.deliver(newTransport(out.winner, exec, noDelayFor(opts.NoDelay, out.winner), out.attempts), opts, exec, cb)
}

// secure runs the TLS handshake on a connected socket, then delivers the TLS
// transport. On failure the protocol sees nothing and the socket is closed,
// as in asyncio.
func (r *Request) secure(sock *Socket, opts Options, attempts []Attempt, exec Executor, cb Callbacks) {
	fail := func(err error) {
		sock.Close()
		r.fail(exec, cb, err, attempts)
	}
	handshakeTimeout, shutdownTimeout, err := opts.tlsTimeouts()
	if err != nil {
		fail(err) // asyncio checks them only now, with the TCP connection up (spec 1.11)
		return
	}
	prof, err := opts.TLS.profile()
	if err != nil {
		fail(err)
		return
	}
	name, checkHost := opts.serverName()
	conn, err := tlsHandshake(r.ctx, sock, prof, name, checkHost, handshakeTimeout)
	if err != nil {
		if errors.Is(err, ErrCancelled) {
			markCancelled(attempts)
			err = r.stopped()
		}
		fail(err)
		return
	}
	info := tlsInfoOf(conn.ConnectionState(), name, !opts.TLS.VerifyNone)
	info.CheckedHost = checkHost && !opts.TLS.NoCheckHostname && !opts.TLS.VerifyNone
	t := newTLSTransport(sock, conn, info, exec, noDelayFor(opts.NoDelay, sock), attempts, shutdownTimeout)
	r.deliver(t, opts, exec, cb)
}

func noDelayFor(mode NoDelay, s *Socket) bool {
	switch mode {
	case NoDelayOn:
		return s.Family == unix.AF_INET || s.Family == unix.AF_INET6
	case NoDelayOff:
		return false
	}
	return wantsNoDelay(s.Family, s.Type, s.Proto)
}

// deliver makes the transport and, on the executor, hands it to the
// protocol, unless the request was cancelled first.
func (r *Request) deliver(t *Transport, opts Options, exec Executor, cb Callbacks) {
	exec.Post(r.handOver(t, opts, exec, cb))
}

// handOver is the task that gives the transport to the protocol: factory,
// connection_made, Done. It must run on the executor.
func (r *Request) handOver(t *Transport, opts Options, exec Executor, cb Callbacks) func() {
	sock, attempts := t.sock, t.attempts
	if opts.Keepalive != nil {
		_ = sock.setKeepalive(opts.Keepalive)
	}
	// No trace event may follow Done: stop forwarding before Done is queued,
	// or a lookup that ends meanwhile (the other family's, late) would
	// queue its event behind it.
	resolutions := r.rec.finish()
	return func() {
		r.mu.Lock()
		if r.cancelled || r.timedOut.Load() { // a connect timeout before the factory ends the request too
			r.mu.Unlock()
			sock.Close()
			markCancelled(attempts)
			cb.Done(Result{Err: r.stopped(), Attempts: attempts, Resolutions: resolutions})
			exec.Done()
			return
		}
		r.handedOver = true
		r.mu.Unlock()
		r.cancel() // release the context; nothing watches it any more
		t.resolutions = resolutions

		p, err := cb.Factory(t)
		if err != nil || p == nil {
			if err == nil {
				err = ErrFactoryFailed
			}
			// As in asyncio, a failed factory leaves an adopted socket open
			// and the caller's; a socket the library made is closed.
			t.abandon()
			sock.giveBack()
			cb.Done(Result{Err: err, Attempts: attempts, Resolutions: t.resolutions})
			exec.Done()
			return
		}
		t.start(p)
		cb.Done(Result{Transport: t, Protocol: p, Attempts: attempts, Resolutions: t.resolutions})
	}
}

// markCancelled records that a won attempt was given up by cancellation.
func markCancelled(attempts []Attempt) {
	for i := range attempts {
		if attempts[i].Outcome == AttemptWon {
			attempts[i].Outcome = AttemptCancelled
		}
	}
}

func (r *Request) fail(exec Executor, cb Callbacks, err error, attempts []Attempt) {
	exec.Post(r.failure(exec, cb, err, attempts))
}

// failure ends the request and returns the task that reports it. It must
// run on the executor.
func (r *Request) failure(exec Executor, cb Callbacks, err error, attempts []Attempt) func() {
	r.cancel()
	resolutions := r.rec.finish() // no trace event may follow Done
	return func() {
		cb.Done(Result{Err: err, Attempts: attempts, Resolutions: resolutions})
		exec.Done()
	}
}
