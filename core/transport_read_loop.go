package core

import (
	"golang.org/x/sys/unix"
)

// Reading on the loop's thread: plain TCP in loop mode.
//
// A loop-mode plain transport has no reader goroutine. While it wants data
// (connection_made has run, reading is not paused, the transport is not
// closing) its socket sits in the loop's epoll set, and Loop.Dispatch calls
// loopReady on the owner's thread when it is readable: one read of up to
// 256 KiB straight into the protocol's buffer (get_buffer, when it has one)
// or into a pooled buffer, then the callback. That is asyncio's
// _read_ready, with the same consequences: no read-ahead (what the protocol
// has not read stays in the kernel and holds the peer back), pause_reading
// takes effect at once, and nothing crosses a thread on the way in.
//
// TLS transports and direct mode keep the reader goroutine of
// transport_read.go: TLS so that decryption stays off the caller's thread,
// direct mode because it has no caller's thread.

// readsOnLoop reports whether this transport reads in Dispatch.
func (t *Transport) readsOnLoop() bool { return t.loop != nil }

// watchLocked puts the socket in the loop's epoll set, if it wants data and
// is not there yet.
func (t *Transport) watchLocked() {
	if t.watchID != 0 || t.readStopped || t.readPaused || t.closing {
		return
	}
	var id uint64
	var err error
	if cerr := t.sock.control(func(fd int) { id, err = t.loop.watch(t, fd, unix.EPOLLIN) }); cerr != nil {
		err = cerr
	}
	if err != nil {
		// The loop is gone or epoll refused the socket: the connection
		// cannot read, so it ends, as a failed add_reader would end it.
		t.readStopped = true
		t.forceCloseLocked(osErrorFrom(err))
		return
	}
	t.watchID = id
}

// unwatchLocked takes the socket out of the epoll set.
func (t *Transport) unwatchLocked() {
	if t.watchID == 0 {
		return
	}
	id := t.watchID
	t.watchID = 0
	_ = t.sock.control(func(fd int) { t.loop.unwatch(id, fd) })
}

// loopReady is called by Dispatch, on the loop's thread, while the socket
// is readable. id is the registration Dispatch saw: a stale one (reading
// stopped and restarted since) is ignored.
func (t *Transport) loopReady(id uint64) {
	checkFailpoint("core.read")
	t.mu.Lock()
	if t.watchID != id || t.watchID == 0 {
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()

	var buf []byte
	var pooled *[]byte
	if t.buffered != nil {
		// The hint is what the kernel holds, so a caller can size its
		// buffer to the read (the Python package makes the bytes object
		// data_received gets that size, and never has to shrink it).
		buf = t.buffered.GetBuffer(t.waitingBytes())
		if len(buf) == 0 {
			t.emptyBuffer()
			return
		}
	} else {
		pooled = readBufPool.Get().(*[]byte)
		buf = *pooled
	}
	// The read and the report of its error are one step under t.mu, as
	// the writer's send and the report of its error are: after a reset the
	// first call to reach the socket takes its ECONNRESET and the other
	// gets EPIPE or EOF, so whichever took it must also be the one whose
	// error connection_lost gets (asyncio, on one thread, reports the
	// ConnectionResetError of whichever callback ran first).
	t.mu.Lock()
	if t.writeFailed {
		// The writer goroutine's send failed while get_buffer ran, and
		// ended the connection with its error: asyncio, on one thread,
		// would have handled that before this read, and read nothing.
		t.mu.Unlock()
		if pooled != nil {
			readBufPool.Put(pooled)
		}
		return
	}
	n, err := t.readInto(buf)
	if err != nil && err != unix.EAGAIN {
		t.forceCloseLocked(osErrorFrom(err))
	}
	t.mu.Unlock()
	switch {
	case err == unix.EAGAIN:
		// Readiness without data (another reader won the race): the next
		// readiness brings it.
	case err != nil:
		// Reported above.
	case n == 0:
		t.loopEOF()
	case t.buffered != nil:
		t.buffered.BufferUpdated(n)
	default:
		t.proto.DataReceived(buf[:n])
	}
	if pooled != nil {
		readBufPool.Put(pooled)
	}
}

// waitingBytes is how many bytes the socket's receive queue holds
// (FIONREAD), or -1 when that is unknown or none: readiness with nothing
// queued is an end of file or an error, which the read then reports.
func (t *Transport) waitingBytes() int {
	n := -1
	_ = t.sock.control(func(fd int) {
		if v, err := unix.IoctlGetInt(fd, unix.SIOCINQ); err == nil && v > 0 {
			n = v
		}
	})
	return n
}

// readInto is one non-blocking read; the descriptor is held open for it.
func (t *Transport) readInto(buf []byte) (int, error) {
	var n int
	var rerr error
	err := t.sock.raw.Read(func(fd uintptr) bool {
		for {
			n, rerr = unix.Read(int(fd), buf)
			if rerr != unix.EINTR {
				return true
			}
		}
	})
	if err != nil {
		return 0, unix.EBADF // closed under us: connection_lost has run
	}
	if rerr != nil {
		return 0, rerr
	}
	return n, nil
}

// loopEOF is asyncio's _read_ready__on_eof: reading stops, then
// eof_received decides between half-open and close.
func (t *Transport) loopEOF() {
	t.mu.Lock()
	t.stopReadingLocked()
	t.mu.Unlock()
	if !t.proto.EOFReceived() {
		t.Close()
	}
}
