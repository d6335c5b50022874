package core

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"time"
)

// The TLS side of the transport (spec 7.10). The Transport's state machine
// is shared with plain TCP; what differs is here:
//
//   - crypto/tls does the record layer on the reader and writer goroutines,
//     so encryption and decryption never run on the caller's thread;
//   - write_eof is not supported, the water marks are 512/128 KiB and the
//     protocol pauses at size >= high;
//   - close() shuts TLS down as asyncio's SSLProtocol does: flush, send
//     close_notify, wait for the peer's (or its EOF), call eof_received,
//     then connection_lost(None); all within ssl_shutdown_timeout, else
//     connection_lost(TimeoutError('SSL shutdown timed out'));
//   - the peer's close_notify (or EOF) calls eof_received, whose return
//     value is ignored, and starts the same shutdown.

// tlsState is the TLS part of a transport, guarded by the transport's mu.
type tlsState struct {
	conn            *tls.Conn
	info            *TLSInfo
	shutdownTimeout float64
	shuttingDown    bool // close_notify is due once the buffer is flushed
	closeNotifySent bool
	peerEOF         bool // the peer's close_notify or EOF has been delivered
}

// newTLSTransport makes the transport of a connection whose handshake is
// done.
func newTLSTransport(sock *Socket, conn *tls.Conn, info *TLSInfo, exec Executor, noDelay bool, attempts []Attempt, shutdownTimeout float64) *Transport {
	t := newTransport(sock, exec, noDelay, attempts)
	t.tls = &tlsState{conn: conn, info: info, shutdownTimeout: shutdownTimeout}
	t.fc = flowControl{high: DefaultTLSHighWater, low: DefaultTLSLowWater, atHigh: true}
	return t
}

// TLSInfo describes the TLS session, or is nil for plain TCP.
func (t *Transport) TLSInfo() *TLSInfo {
	if t.tls == nil {
		return nil
	}
	return t.tls.info
}

// tlsStartShutdownLocked is close() on a TLS transport, and what the peer's
// close_notify starts: writes stop being accepted, the buffer is flushed,
// close_notify is sent, and the shutdown timer runs.
func (t *Transport) tlsStartShutdownLocked() {
	if t.tls.shuttingDown {
		return
	}
	t.closing = true
	t.tls.shuttingDown = true
	deadline := time.Now().Add(secondsToDuration(t.tls.shutdownTimeout))
	_ = t.sock.file.SetDeadline(deadline)
	// The shutdown reads even while the app has paused reading: wake a
	// reader parked on the pause, and deliver an EOF it already queued.
	t.readCond.Broadcast()
	t.postDrainLocked()
	if !t.writing && !t.connLost {
		t.writing = true
		goSafe(t.tlsWriteLoop)
	}
}

// tlsWriteLoop encrypts and sends the buffer, blocking on the socket as
// needed; once the buffer is empty during a shutdown it sends close_notify.
func (t *Transport) tlsWriteLoop() {
	for {
		t.mu.Lock()
		if t.connLost {
			t.writing = false
			t.mu.Unlock()
			return
		}
		if t.wbuf.empty() {
			t.writing = false
			t.maybePostResumeLocked()
			shutdown := t.tls.shuttingDown && !t.tls.closeNotifySent
			t.mu.Unlock()
			if shutdown {
				t.tlsSendCloseNotify()
			}
			return
		}
		chunk := t.wbuf.chunks[0]
		t.mu.Unlock()

		_, err := t.tls.conn.Write(chunk)

		t.mu.Lock()
		if err != nil {
			t.writing = false
			t.forceCloseLocked(t.tlsIOError(err))
			t.mu.Unlock()
			return
		}
		if !t.connLost {
			t.wbuf.consume(len(chunk))
			t.maybePostResumeLocked()
		}
		t.mu.Unlock()
	}
}

// tlsSendCloseNotify sends close_notify and, if the peer has already closed
// its side, ends the connection.
func (t *Transport) tlsSendCloseNotify() {
	err := t.tls.conn.CloseWrite()
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		t.forceCloseLocked(t.tlsIOError(err))
		return
	}
	t.tls.closeNotifySent = true
	if t.tls.peerEOF {
		t.connLost = true
		t.postLostLocked(nil)
	}
}

// tlsReadLoop decrypts incoming records. During a shutdown it keeps reading,
// to see the peer's close_notify, but what it reads is dropped at delivery.
func (t *Transport) tlsReadLoop() {
	buf := make([]byte, 32*1024) // above the 16 KiB record limit
	for {
		t.mu.Lock()
		for !t.readStopped && !t.closing && (t.readPaused || t.inboundBytes >= maxInbound) {
			t.readCond.Wait()
		}
		if t.readStopped {
			t.mu.Unlock()
			return
		}
		t.mu.Unlock()

		n, err := t.tls.conn.Read(buf)

		t.mu.Lock()
		if t.readStopped {
			t.mu.Unlock()
			return
		}
		if n > 0 && !t.closing {
			t.appendInboundDataLocked(buf[:n])
		}
		if err != nil {
			ev := inboundEvent{kind: inboundEOF}
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				ev = inboundEvent{kind: inboundError, err: t.tlsIOError(err)}
			}
			t.inbound = append(t.inbound, ev)
			t.readStopped = true
		}
		t.postDrainLocked()
		stop := t.readStopped
		t.mu.Unlock()
		if stop {
			return
		}
	}
}

// appendInboundDataLocked queues a copy of data, filling the last queued
// chunk first so that records that arrive together are delivered together
// (as asyncio joins the records it decrypts in one go).
func (t *Transport) appendInboundDataLocked(data []byte) {
	t.inboundBytes += len(data)
	// The drain pops an event before delivering it, so the last queued
	// event is never one being delivered.
	if n := len(t.inbound); n > 0 {
		last := &t.inbound[n-1]
		if last.kind == inboundData && last.pooled != nil {
			if spare := cap(last.data) - len(last.data); spare >= len(data) {
				last.data = append(last.data, data...)
				return
			}
		}
	}
	bufp := readBufPool.Get().(*[]byte)
	chunk := append((*bufp)[:0], data...)
	t.inbound = append(t.inbound, inboundEvent{kind: inboundData, data: chunk, pooled: bufp})
}

// tlsEOF handles the peer's close_notify (or EOF) at delivery: asyncio calls
// eof_received (its return value does not keep a TLS transport open), then
// completes the shutdown.
func (t *Transport) tlsEOF() {
	t.mu.Lock()
	lost := t.lost || t.connLost
	t.mu.Unlock()
	if lost {
		return
	}
	t.proto.EOFReceived()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.connLost {
		return
	}
	t.tls.peerEOF = true
	t.tlsStartShutdownLocked()
	if t.tls.closeNotifySent {
		t.connLost = true
		t.postLostLocked(nil)
	}
}

// tlsIOError names an I/O failure after the handshake: the shutdown timer
// firing, a TLS alert, or a socket error.
func (t *Transport) tlsIOError(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return ErrShutdownTimeout
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "remote error" {
		return handshakeError(err, false, 0)
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return &OSError{Errno: errno, Text: strerror(errno)}
	}
	if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
		return nil
	}
	return &TLSError{Reason: "SSL_ERROR", Text: err.Error(), Err: err}
}
