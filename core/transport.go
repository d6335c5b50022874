package core

import (
	"errors"
	"sync"

	"golang.org/x/sys/unix"
)

// Protocol receives a connection's events, as asyncio.Protocol does. The
// Executor calls these one at a time, in the order of asyncio's contract:
// ConnectionMade once, DataReceived any number of times, EOFReceived at most
// once, ConnectionLost exactly once and last.
type Protocol interface {
	ConnectionMade(t *Transport)
	// DataReceived's slice is valid only during the call.
	DataReceived(data []byte)
	// EOFReceived returns true to keep the write side open.
	EOFReceived() (keepOpen bool)
	ConnectionLost(err error)
	PauseWriting()
	ResumeWriting()
}

// BufferedProtocol is asyncio.BufferedProtocol's receiving side. A Protocol
// that also implements it, with Buffered() true, gets its data written into
// memory it provides instead of through DataReceived: plain TCP in loop mode
// reads the socket straight into it (no copy in the library at all); the
// other paths copy what they have into it.
type BufferedProtocol interface {
	Buffered() bool
	// GetBuffer returns memory for the next bytes; sizeHint is how many are
	// waiting, or -1 when that is unknown. An empty result ends the
	// connection with ErrEmptyBuffer, unless the transport is closing
	// already (the protocol closed it when its own get_buffer failed).
	GetBuffer(sizeHint int) []byte
	// BufferUpdated says n bytes (n >= 1) were written at the start of the
	// last buffer.
	BufferUpdated(n int)
}

// ErrEmptyBuffer is asyncio's error for a get_buffer() that returns nothing.
var ErrEmptyBuffer = errors.New("get_buffer() returned an empty buffer")

// Errors returned by transport methods, with asyncio's texts.
var (
	ErrWriteAfterEOF = errors.New("Cannot call write() after write_eof()")
	// ErrWriteDropped: the connection is closing or lost, so the data was
	// dropped (asyncio drops it silently and logs from the fifth time).
	ErrWriteDropped = errors.New("the transport is closing; data dropped")
)

// Transport is a connected stream socket with asyncio's transport semantics
// (spec section 8). Its methods are safe from any thread; user callbacks run
// through the connection's Executor and never with a lock held.
type Transport struct {
	sock     *Socket
	exec     Executor
	proto    Protocol
	fd       int
	peer     SockAddr
	hasPeer  bool
	local    SockAddr
	hasLocal bool
	attempts []Attempt
	// resolutions are the lookups of the trace, set before the protocol is.
	resolutions []Resolution

	tls *tlsState // nil for plain TCP

	// loop is set for a plain transport in loop mode: it reads in the
	// loop's Dispatch (transport_read_loop.go). watchID is its registration
	// there, 0 while not watched.
	loop    *Loop
	watchID uint64
	// buffered is the protocol as a BufferedProtocol, when it is one.
	buffered BufferedProtocol

	mu       sync.Mutex
	readCond *sync.Cond // the reader waits here while paused or over budget

	// Lifecycle.
	closing    bool // close(), abort() or a fatal error happened: is_closing()
	connLost   bool // asyncio's _conn_lost > 0: writes are dropped
	aborted    bool // the buffer was dropped (abort or a fatal error): no resume_writing any more
	lostPosted bool // connection_lost is queued
	lost       bool // connection_lost has run

	// Write side.
	wbuf         writeBuffer
	writing      bool // the writer goroutine owns the sending
	writeFailed  bool // the writer goroutine's send failed (a loop-mode read then reads no more)
	eof          bool // write_eof() was called
	fc           flowControl
	resumePosted bool

	// Read side.
	readPaused   bool // pause_reading()
	readStopped  bool // no further reads: closing, EOF or a read error
	inbound      []inboundEvent
	inboundBytes int
	drainPosted  bool
}

// newTransport takes ownership of sock. noDelay applies asyncio's
// TCP_NODELAY rule, decided by the caller.
func newTransport(sock *Socket, exec Executor, noDelay bool, attempts []Attempt) *Transport {
	t := &Transport{sock: sock, exec: exec, attempts: attempts, fc: newFlowControl()}
	t.readCond = sync.NewCond(&t.mu)
	t.fd = sock.fdForCaller()
	t.local, t.hasLocal = sock.sockName()
	t.peer, t.hasPeer = sock.peerName()
	if noDelay {
		_ = sock.setNoDelay()
	}
	return t
}

// wantsNoDelay is asyncio's _set_nodelay condition (spec 6.3).
func wantsNoDelay(family, sockType, proto int) bool {
	return (family == unix.AF_INET || family == unix.AF_INET6) &&
		sockType == unix.SOCK_STREAM && proto == unix.IPPROTO_TCP
}

// start hands the transport to its protocol: connection_made, then reading
// begins, in that order as in asyncio.
func (t *Transport) start(p Protocol) {
	t.mu.Lock()
	t.proto = p
	if bp, ok := p.(BufferedProtocol); ok && bp.Buffered() {
		t.buffered = bp
	}
	if t.tls == nil {
		t.loop = loopOf(t.exec)
	}
	t.mu.Unlock()
	p.ConnectionMade(t)
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.readStopped:
	case t.readsOnLoop():
		t.watchLocked()
	case t.tls != nil:
		goSafe(t.tlsReadLoop)
	default:
		goSafe(t.readLoop)
	}
}

// Close closes the transport: buffered data is flushed first, then
// connection_lost(nil) is called. Idempotent.
func (t *Transport) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closing {
		return
	}
	if t.tls != nil {
		t.tlsStartShutdownLocked()
		return
	}
	t.closing = true
	t.stopReadingLocked()
	if t.wbuf.empty() {
		t.connLost = true
		t.postLostLocked(nil)
	}
}

// Abort closes at once: buffered data is dropped and connection_lost(nil)
// follows. A paused protocol is not resumed, as in asyncio. It reports
// whether this call ended the connection (false when connection_lost was
// already on its way).
func (t *Transport) Abort() bool { return t.forceClose(nil) }

// forceClose is asyncio's _force_close: drop the buffer, stop reading, and
// queue connection_lost(err), unless connection_lost is already on its way.
func (t *Transport) forceClose(err error) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.forceCloseLocked(err)
}

func (t *Transport) forceCloseLocked(err error) bool {
	if t.connLost {
		return false
	}
	t.wbuf.clear()
	t.aborted = true
	t.closing = true
	t.stopReadingLocked()
	t.connLost = true
	t.postLostLocked(err)
	return true
}

// IsClosing is true from close(), abort() or a fatal error on.
func (t *Transport) IsClosing() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closing
}

func (t *Transport) postLostLocked(err error) {
	if t.lostPosted {
		return
	}
	t.lostPosted = true
	t.exec.Post(func() { t.deliverLost(err) })
}

// deliverLost calls connection_lost and then closes the socket, as asyncio's
// _call_connection_lost does. Nothing is delivered after it.
func (t *Transport) deliverLost(err error) {
	t.mu.Lock()
	if t.lost {
		t.mu.Unlock()
		return
	}
	t.lost = true
	t.closing = true
	t.connLost = true
	t.wbuf.clear()
	t.releaseInboundLocked()
	t.stopReadingLocked()
	t.mu.Unlock()

	defer t.exec.Done()
	defer t.sock.Close()
	if t.proto != nil {
		t.proto.ConnectionLost(err)
	}
}

// abandon retires a transport whose protocol factory failed: nothing of it
// is delivered any more (a close() the factory made is dropped).
func (t *Transport) abandon() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lost = true
	t.connLost = true
	t.closing = true
	t.wbuf.clear()
	t.releaseInboundLocked()
	t.stopReadingLocked()
}

// fatalError is asyncio's _fatal_error: the error ends the connection and
// reaches connection_lost.
func (t *Transport) fatalError(err error) { t.forceClose(osErrorFrom(err)) }

// FD is the socket's descriptor: extra info 'socket'. It is valid until
// connection_lost has returned.
func (t *Transport) FD() int { return t.fd }

// Peername and Sockname are read once when the transport is made, and stay
// readable after close, as asyncio's extra info does.
func (t *Transport) Peername() (SockAddr, bool) { return t.peer, t.hasPeer }
func (t *Transport) Sockname() (SockAddr, bool) { return t.local, t.hasLocal }

// Attempts is the trace of the connection attempts that made this transport
// (empty for an adopted socket).
func (t *Transport) Attempts() []Attempt { return t.attempts }

// Resolutions are the name lookups that preceded the attempts.
func (t *Transport) Resolutions() []Resolution { return t.resolutions }

// Protocol returns the transport's protocol.
func (t *Transport) Protocol() Protocol { return t.proto }
