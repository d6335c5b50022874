package core

import (
	"golang.org/x/sys/unix"
)

// The write side (spec 8.2): write() sends at once when nothing is buffered
// and buffers the rest; a writer goroutine, started only while the buffer is
// non-empty, waits for writability and drains it. write() never blocks.

// Write sends or buffers a copy of data. It may call pause_writing
// synchronously (loop mode), as asyncio's write() does.
func (t *Transport) Write(data []byte) error {
	t.mu.Lock()
	if t.eof {
		t.mu.Unlock()
		return ErrWriteAfterEOF
	}
	if len(data) == 0 {
		t.mu.Unlock()
		return nil
	}
	if t.connLost || (t.tls != nil && t.closing) {
		// asyncio's TLS transport drops every write once it is closing.
		t.mu.Unlock()
		return ErrWriteDropped
	}
	if t.tls != nil {
		// TLS never sends from the caller's thread: the writer goroutine
		// encrypts, off the caller's (Python's) thread.
		if !t.writing {
			t.writing = true
			goSafe(t.tlsWriteLoop)
		}
	} else if t.wbuf.empty() && !t.writing {
		n, err := t.sendNowLocked(data)
		if err != nil {
			t.forceCloseLocked(osErrorFrom(err))
			t.mu.Unlock()
			return nil
		}
		data = data[n:]
		if len(data) == 0 {
			t.mu.Unlock()
			return nil
		}
		t.writing = true
		goSafe(t.writeLoop)
	}
	t.wbuf.append(data)
	// No protocol yet (a write from inside the C factory): nothing to pause;
	// the next write after connection_made decides.
	pause := t.proto != nil && t.fc.shouldPause(t.wbuf.size) && t.pauseProtocolLocked()
	t.mu.Unlock()
	if pause {
		t.proto.PauseWriting()
	}
	return nil
}

// Writelines writes the concatenation of bufs, as asyncio 3.11's
// WriteTransport.writelines does.
func (t *Transport) Writelines(bufs [][]byte) error {
	total := 0
	for _, b := range bufs {
		total += len(b)
	}
	joined := make([]byte, 0, total)
	for _, b := range bufs {
		joined = append(joined, b...)
	}
	return t.Write(joined)
}

// sendNowLocked tries one non-blocking send. EAGAIN is not an error.
func (t *Transport) sendNowLocked(data []byte) (int, error) {
	var n int
	var serr error
	err := t.sock.raw.Write(func(fd uintptr) bool {
		for {
			n, serr = unix.SendmsgN(int(fd), data, nil, nil, unix.MSG_NOSIGNAL)
			if serr != unix.EINTR {
				return true
			}
		}
	})
	if err != nil {
		return 0, err
	}
	if serr == unix.EAGAIN {
		return 0, nil
	}
	if serr != nil {
		return 0, serr
	}
	return n, nil
}

// writeLoop drains the buffer as the socket becomes writable. When the buffer
// empties it finishes what close() or write_eof() asked for.
func (t *Transport) writeLoop() {
	err := t.sock.raw.Write(func(fd uintptr) bool {
		t.mu.Lock()
		defer t.mu.Unlock()
		for !t.wbuf.empty() {
			if t.connLost {
				break
			}
			n, err := unix.SendmsgBuffers(int(fd), t.wbuf.iovecs(), nil, nil, unix.MSG_NOSIGNAL)
			if err == unix.EINTR {
				continue
			}
			if err == unix.EAGAIN {
				return false // wait for writability
			}
			if err != nil {
				t.writing = false
				t.writeFailed = true
				t.forceCloseLocked(osErrorFrom(err))
				return true
			}
			t.wbuf.consume(n)
			t.maybePostResumeLocked()
		}
		t.writing = false
		if t.connLost {
			return true
		}
		t.maybePostResumeLocked()
		switch {
		case t.closing:
			t.connLost = true
			t.postLostLocked(nil)
		case t.eof:
			t.shutdownWriteLocked()
		}
		return true
	})
	if err != nil {
		// The descriptor was closed under us (connection_lost already ran).
		t.mu.Lock()
		t.writing = false
		t.mu.Unlock()
	}
}

// maybePostResumeLocked queues a resume check once the buffer has drained to
// the low mark. The decision is taken again when the check runs, so a pause
// that happens in between is never followed by a stale resume.
func (t *Transport) maybePostResumeLocked() {
	if t.fc.paused && int64(t.wbuf.size) <= t.fc.low && !t.resumePosted {
		t.resumePosted = true
		t.exec.Post(t.resumeCheck)
	}
}

func (t *Transport) resumeCheck() {
	t.mu.Lock()
	t.resumePosted = false
	// After abort asyncio has removed its writer, so no resume arrives; a
	// close() still flushes and resumes before connection_lost.
	resume := !t.lost && !t.aborted && t.fc.shouldResume(t.wbuf.size)
	t.mu.Unlock()
	if resume {
		t.proto.ResumeWriting()
	}
}

// pauseProtocolLocked starts pause_writing once the pause was decided under
// t.mu. In loop mode it returns true: the caller calls PauseWriting itself
// after unlocking, on its own thread, as asyncio calls it from inside
// write(). In direct mode it queues the call through the executor, so that
// callbacks stay serialised, and it queues it before t.mu is released: a
// resume check the writer queues once it gets the lock then always comes
// after the pause, never before it.
func (t *Transport) pauseProtocolLocked() (callNow bool) {
	if t.exec.Inline() {
		return true
	}
	t.exec.Post(func() {
		t.mu.Lock()
		lost := t.lost
		t.mu.Unlock()
		if !lost {
			t.proto.PauseWriting()
		}
	})
	return false
}

// WriteEOF shuts the write side down once the buffer is flushed. A no-op
// while closing or after the first call.
func (t *Transport) WriteEOF() error {
	if t.tls != nil {
		return ErrNotSupported
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closing || t.eof {
		return nil
	}
	t.eof = true
	if t.wbuf.empty() && !t.writing {
		return t.shutdownWriteLocked()
	}
	return nil
}

func (t *Transport) shutdownWriteLocked() error {
	var serr error
	if err := t.sock.control(func(fd int) { serr = unix.Shutdown(fd, unix.SHUT_WR) }); err != nil {
		return osErrorFrom(err)
	}
	if serr != nil {
		return osErrorFrom(serr)
	}
	return nil
}

// CanWriteEOF is true for TCP, false for TLS.
func (t *Transport) CanWriteEOF() bool { return t.tls == nil }

// SetWriteBufferLimits sets the water marks (nil means "derive" or "default",
// as None does in asyncio) and may pause the protocol at once.
func (t *Transport) SetWriteBufferLimits(high, low *int64) error {
	defaultHigh := int64(DefaultHighWater)
	if t.tls != nil {
		defaultHigh = DefaultTLSHighWater
	}
	h, l, err := waterMarks(high, low, defaultHigh)
	if err != nil {
		return err
	}
	t.mu.Lock()
	t.fc.high, t.fc.low = h, l
	pause := !t.lost && t.proto != nil && t.fc.shouldPause(t.wbuf.size) && t.pauseProtocolLocked()
	t.mu.Unlock()
	if pause {
		t.proto.PauseWriting()
	}
	return nil
}

// WriteBufferLimits returns (low, high), in asyncio's order.
func (t *Transport) WriteBufferLimits() (low, high int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.fc.low, t.fc.high
}

// WriteBufferSize is the number of bytes buffered.
func (t *Transport) WriteBufferSize() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.wbuf.size
}
