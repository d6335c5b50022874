package core

import (
	"sync"

	"golang.org/x/sys/unix"
)

// The read side (spec 8.3). A reader goroutine reads up to 256 KiB at a time
// and queues what it gets on the transport's inbound queue; the executor
// delivers the queue in order. Delivery, not reading, is where asyncio's
// state applies: data read before pause_reading() waits until
// resume_reading(), and data still queued when the user closes is dropped,
// just as asyncio would have left it unread in the kernel. Bytes read before
// a reset are all delivered before connection_lost.

const (
	// MaxReadSize is asyncio's max_size for one recv.
	MaxReadSize = 256 * 1024
	// maxInbound bounds what the reader reads ahead of delivery.
	maxInbound = 4 * MaxReadSize
	// smallRead: reads up to this size are copied out of the pooled buffer,
	// so idle connections hold no large buffers.
	smallRead = 16 * 1024
)

var readBufPool = sync.Pool{New: func() any { b := make([]byte, MaxReadSize); return &b }}

type inboundKind int

const (
	inboundData inboundKind = iota
	inboundEOF
	inboundError
)

type inboundEvent struct {
	kind   inboundKind
	data   []byte
	pooled *[]byte // returned to readBufPool after delivery
	err    error
}

func (ev *inboundEvent) release() {
	if ev.pooled != nil {
		readBufPool.Put(ev.pooled)
		ev.pooled = nil
	}
	ev.data = nil
}

// readLoop reads until EOF, an error, or the transport stops reading.
func (t *Transport) readLoop() {
	checkFailpoint("core.read")
	for {
		t.mu.Lock()
		for !t.readStopped && (t.readPaused || t.inboundBytes >= maxInbound) {
			t.readCond.Wait()
		}
		if t.readStopped {
			t.mu.Unlock()
			return
		}
		t.mu.Unlock()

		ev, ok := t.readOnce()
		if !ok {
			return // the descriptor was closed: connection_lost has run
		}
		t.mu.Lock()
		if t.readStopped {
			ev.release()
			t.mu.Unlock()
			return
		}
		t.inbound = append(t.inbound, ev)
		t.inboundBytes += len(ev.data)
		if ev.kind != inboundData {
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

// readOnce waits for the socket to be readable and reads once. A pooled
// buffer is taken only once data is there.
func (t *Transport) readOnce() (inboundEvent, bool) {
	var ev inboundEvent
	err := t.sock.raw.Read(func(fd uintptr) bool {
		bufp := readBufPool.Get().(*[]byte)
		n, err := unix.Read(int(fd), *bufp)
		switch {
		case err == unix.EAGAIN:
			readBufPool.Put(bufp)
			return false
		case err == unix.EINTR:
			readBufPool.Put(bufp)
			return false
		case err != nil:
			readBufPool.Put(bufp)
			ev = inboundEvent{kind: inboundError, err: osErrorFrom(err)}
		case n == 0:
			readBufPool.Put(bufp)
			ev = inboundEvent{kind: inboundEOF}
		case n <= smallRead:
			ev = inboundEvent{kind: inboundData, data: append([]byte(nil), (*bufp)[:n]...)}
			readBufPool.Put(bufp)
		default:
			ev = inboundEvent{kind: inboundData, data: (*bufp)[:n], pooled: bufp}
		}
		return true
	})
	if err != nil {
		return ev, false
	}
	return ev, true
}

func (t *Transport) postDrainLocked() {
	if !t.drainPosted && len(t.inbound) > 0 && (!t.readPaused || t.tlsShuttingDownLocked()) {
		t.drainPosted = true
		t.exec.Post(t.drainInbound)
	}
}

// drainInbound delivers queued events until the queue is empty, reading is
// paused, or the transport is closing.
func (t *Transport) drainInbound() {
	for {
		t.mu.Lock()
		if t.lost || (t.closing && t.tls == nil) {
			t.releaseInboundLocked()
			t.drainPosted = false
			t.mu.Unlock()
			return
		}
		if t.closing {
			// TLS shutting down: data is dropped, but the peer's
			// close_notify or an error still ends the shutdown.
			t.dropInboundDataLocked()
		}
		if (t.readPaused && !t.tlsShuttingDownLocked()) || len(t.inbound) == 0 {
			t.drainPosted = false
			t.mu.Unlock()
			return
		}
		ev := t.inbound[0]
		t.inbound[0] = inboundEvent{}
		t.inbound = t.inbound[1:]
		if len(t.inbound) == 0 {
			t.inbound = nil
		}
		t.inboundBytes -= len(ev.data)
		t.readCond.Signal()
		t.mu.Unlock()

		switch ev.kind {
		case inboundData:
			if rest := t.deliverData(ev.data); len(rest) > 0 && t.requeueFront(ev, rest) {
				continue // paused in the middle of the chunk: the rest waits for resume_reading
			}
			ev.release()
		case inboundEOF:
			if t.tls != nil {
				t.tlsEOF()
			} else if !t.proto.EOFReceived() {
				t.Close()
			}
		case inboundError:
			t.fatalError(ev.err)
		}
	}
}

// deliverData hands bytes the reader goroutine read (or TLS decrypted) to the
// protocol: through DataReceived, or for a buffered protocol copied into its
// buffers, get_buffer and buffer_updated in turn, as asyncio's TLS transport
// feeds a BufferedProtocol. A buffered protocol that pauses reading from
// buffer_updated gets no more of the chunk: what is left is returned, to wait
// for resume_reading (asyncio's SSL protocol stops reading at once too).
func (t *Transport) deliverData(data []byte) (rest []byte) {
	if t.buffered == nil {
		t.proto.DataReceived(data)
		return nil
	}
	for len(data) > 0 {
		buf := t.buffered.GetBuffer(len(data))
		if len(buf) == 0 {
			t.emptyBuffer()
			return nil
		}
		n := copy(buf, data)
		t.buffered.BufferUpdated(n)
		data = data[n:]
		if t.stopsDelivering() {
			return nil
		}
		if len(data) > 0 && t.pausedForDelivery() {
			return data
		}
	}
	return nil
}

// pausedForDelivery: reading is paused and no TLS shutdown overrides it.
func (t *Transport) pausedForDelivery() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.readPaused && !t.tlsShuttingDownLocked()
}

// requeueFront puts the undelivered rest of ev back at the head of the
// queue, where resume_reading finds it first. It reports false (the caller
// releases ev) when the transport ended meanwhile.
func (t *Transport) requeueFront(ev inboundEvent, rest []byte) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.lost || t.closing && t.tls == nil {
		return false
	}
	ev.data = rest
	t.inbound = append([]inboundEvent{ev}, t.inbound...)
	t.inboundBytes += len(rest)
	return true
}

// stopsDelivering: once a plain transport is closing the rest of a chunk is
// dropped, as data asyncio had not read yet would be; a TLS transport
// delivers until the connection is lost, as asyncio's SSL protocol does.
func (t *Transport) stopsDelivering() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tls != nil {
		return t.connLost
	}
	return t.closing
}

// emptyBuffer ends the connection after a get_buffer that gave nothing, as
// asyncio's fatal error does, unless the protocol already closed it.
func (t *Transport) emptyBuffer() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.closing {
		t.forceCloseLocked(ErrEmptyBuffer)
	}
}

// tlsShuttingDownLocked: a TLS shutdown proceeds even while reading is
// paused, as asyncio's does.
func (t *Transport) tlsShuttingDownLocked() bool { return t.tls != nil && t.closing }

// dropInboundDataLocked drops queued data, keeping EOF and error events.
func (t *Transport) dropInboundDataLocked() {
	kept := t.inbound[:0]
	for _, ev := range t.inbound {
		if ev.kind == inboundData {
			t.inboundBytes -= len(ev.data)
			ev.release()
			continue
		}
		kept = append(kept, ev)
	}
	clear(t.inbound[len(kept):])
	t.inbound = kept
}

func (t *Transport) releaseInboundLocked() {
	for i := range t.inbound {
		t.inbound[i].release()
	}
	t.inbound = nil
	t.inboundBytes = 0
}

func (t *Transport) stopReadingLocked() {
	t.readStopped = true
	t.readCond.Broadcast()
	if t.readsOnLoop() {
		t.unwatchLocked()
	}
}

// PauseReading stops delivery of data_received until ResumeReading. A no-op
// while closing or already paused.
func (t *Transport) PauseReading() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if (t.closing && t.tls == nil) || t.readPaused {
		return // a TLS transport's flag flips even while closing, as asyncio's does
	}
	t.readPaused = true
	if t.readsOnLoop() {
		t.unwatchLocked()
	}
}

// ResumeReading restarts delivery; queued data arrives through the executor,
// never from inside this call.
func (t *Transport) ResumeReading() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if (t.closing && t.tls == nil) || !t.readPaused {
		return
	}
	t.readPaused = false
	if t.readsOnLoop() {
		t.watchLocked()
		return
	}
	t.readCond.Broadcast()
	t.postDrainLocked()
}

// IsReading is asyncio's "not paused and not closing".
func (t *Transport) IsReading() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tls != nil {
		return !t.readPaused // asyncio's TLS transport looks at the flag only
	}
	return !t.readPaused && !t.closing
}
