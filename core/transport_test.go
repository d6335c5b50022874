package core_test

// Loopback tests of the transport contract (spec 8 and 9): half-close,
// resets, flow control, pause_reading, write_eof, close and abort.

import (
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/goconn/goconn/core"
	"golang.org/x/sys/unix"
)

// connected opens a connection to a fresh listener and returns both ends.
func connected(t *testing.T, e *env, r *recorder) (*core.Transport, *net.TCPConn) {
	t.Helper()
	ln, port := listen(t)
	tr := e.connect(tcpOpts("127.0.0.1", port), r)
	return tr, accept(t, ln)
}

// connectedSlowPeer is connected for a peer that will not read for a while:
// both kernel buffers are small, so the transport's own buffer fills up.
func connectedSlowPeer(t *testing.T, e *env, r *recorder) (*core.Transport, *net.TCPConn) {
	t.Helper()
	ln, port := listenSmallWindow(t)
	tr := e.connect(tcpOpts("127.0.0.1", port), r)
	if err := unix.SetsockoptInt(tr.FD(), unix.SOL_SOCKET, unix.SO_SNDBUF, 8192); err != nil {
		t.Logf("SO_SNDBUF: %v", err)
	}
	return tr, accept(t, ln)
}

func TestHalfClose(t *testing.T) {
	modes(t, func(t *testing.T, e *env) {
		t.Run("eof_received true keeps the transport open", func(t *testing.T) {
			r := newRecorder(e)
			r.keepOpen = true
			tr, c := connected(t, e, r)
			if _, err := c.Write([]byte("last words")); err != nil {
				t.Fatal(err)
			}
			if err := c.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			e.waitFor("eof_received", func() bool { return r.Count("eof") == 1 })
			if got := string(r.Data()); got != "last words" {
				t.Errorf("data %q", got)
			}
			if tr.IsClosing() {
				t.Error("the transport closed although eof_received returned true")
			}
			if err := tr.Write([]byte("reply after eof")); err != nil {
				t.Fatal(err)
			}
			if got := string(readN(t, c, len("reply after eof"))); got != "reply after eof" {
				t.Errorf("peer got %q", got)
			}
			if lost, _ := r.Lost(); lost {
				t.Error("connection_lost before close")
			}
			tr.Close()
			if err := r.waitLost(); err != nil {
				t.Errorf("connection_lost(%v)", err)
			}
			if b := readAll(t, c); len(b) != 0 {
				t.Errorf("peer read %q before EOF", b)
			}
			if got := r.Events(); got != "made data eof lost" {
				t.Errorf("events %q", got)
			}
		})

		t.Run("eof_received false closes", func(t *testing.T) {
			r := newRecorder(e)
			tr, c := connected(t, e, r)
			if err := c.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			if err := r.waitLost(); err != nil {
				t.Errorf("connection_lost(%v), want nil", err)
			}
			if !tr.IsClosing() {
				t.Error("IsClosing is false after EOF closed the transport")
			}
			if got := r.Events(); got != "made eof lost" {
				t.Errorf("events %q", got)
			}
			if b := readAll(t, c); len(b) != 0 {
				t.Errorf("peer read %q", b)
			}
		})
	})
}

// TestPeerReset: the peer sends 1 MiB and then resets the connection. Every
// byte it sent reaches data_received, and then connection_lost gets
// ECONNRESET.
func TestPeerReset(t *testing.T) {
	modes(t, func(t *testing.T, e *env) {
		r := newRecorder(e)
		_, c := connected(t, e, r)
		msg := pattern(1 << 20)
		peerErr := make(chan error, 1)
		go func() {
			if _, err := c.Write(msg); err != nil {
				peerErr <- err
				return
			}
			// Reset only once every byte has left the peer's send queue,
			// so every byte sent was delivered to our socket.
			raw, err := c.SyscallConn()
			if err != nil {
				peerErr <- err
				return
			}
			deadline := time.Now().Add(waitTimeout)
			for {
				var outq int
				var qerr error
				if err := raw.Control(func(fd uintptr) { outq, qerr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) }); err != nil {
					qerr = err
				}
				if qerr != nil {
					peerErr <- qerr
					return
				}
				if outq == 0 {
					break
				}
				if time.Now().After(deadline) {
					peerErr <- errors.New("the peer's send queue never drained")
					return
				}
				time.Sleep(time.Millisecond)
			}
			_ = c.SetLinger(0)
			peerErr <- c.Close()
		}()

		lostErr := r.waitLost()
		if err := <-peerErr; err != nil {
			t.Fatalf("peer: %v", err)
		}
		if got := r.Data(); string(got) != string(msg) {
			t.Errorf("received %d bytes, want all %d in order", len(got), len(msg))
		}
		if !errors.Is(lostErr, syscall.ECONNRESET) {
			t.Fatalf("connection_lost(%v), want ECONNRESET", lostErr)
		}
		if lostErr.Error() != "[Errno 104] Connection reset by peer" {
			t.Errorf("text %q", lostErr)
		}
		if got := r.Events(); got != "made data lost" {
			t.Errorf("events %q", got)
		}
	})
}

// fillUntilPaused writes chunks to a peer that does not read until the
// buffer is above the high mark and pause_writing has been called. It returns
// how many bytes were written.
func fillUntilPaused(t *testing.T, e *env, r *recorder, tr *core.Transport, high int) int {
	t.Helper()
	chunk := pattern(32 * 1024)
	written := 0
	for tr.WriteBufferSize() <= high {
		if written > 256<<20 {
			t.Fatalf("wrote %d bytes and the buffer is still at %d", written, tr.WriteBufferSize())
		}
		if err := tr.Write(chunk); err != nil {
			t.Fatal(err)
		}
		written += len(chunk)
	}
	if e.loop != nil {
		// Loop mode: pause_writing ran synchronously inside Write.
		if n := r.Count("pause"); n != 1 {
			t.Fatalf("pause_writing ran %d times by the end of the write that crossed the high mark", n)
		}
	}
	e.waitFor("pause_writing", func() bool { return r.Count("pause") == 1 })
	return written
}

func TestFlowControl(t *testing.T) {
	modes(t, func(t *testing.T, e *env) {
		r := newRecorder(e)
		tr, c := connectedSlowPeer(t, e, r)
		if err := tr.SetWriteBufferLimits(i64(16384), nil); err != nil {
			t.Fatal(err)
		}
		if low, high := tr.WriteBufferLimits(); low != 4096 || high != 16384 {
			t.Fatalf("limits (%d, %d)", low, high)
		}
		if err := tr.SetWriteBufferLimits(i64(10), i64(20)); err == nil ||
			err.Error() != "high (10) must be >= low (20) must be >= 0" {
			t.Errorf("bad limits gave %v", err)
		}
		if low, high := tr.WriteBufferLimits(); low != 4096 || high != 16384 {
			t.Errorf("a rejected setting changed the limits to (%d, %d)", low, high)
		}

		written := fillUntilPaused(t, e, r, tr, 16384)
		// More writes while paused never pause twice.
		more := pattern(50000)
		for i := 0; i < 4; i++ {
			if err := tr.Write(more); err != nil {
				t.Fatal(err)
			}
			written += len(more)
		}
		// Tightening the limits while paused does not pause again either.
		if err := tr.SetWriteBufferLimits(i64(1000), nil); err != nil {
			t.Fatal(err)
		}
		if tr.WriteBufferSize() == 0 {
			t.Fatal("nothing is buffered; the peer cannot be draining yet")
		}
		e.pump(0)
		if got := r.Events(); got != "made pause" {
			t.Fatalf("events %q before the peer reads", got)
		}

		// The peer drains everything: resume_writing, exactly once.
		got := make(chan int, 1)
		go func() {
			_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
			n, _ := io.CopyN(io.Discard, c, int64(written))
			got <- int(n)
		}()
		e.waitFor("resume_writing", func() bool { return r.Count("resume") == 1 })
		if n := <-got; n != written {
			t.Fatalf("peer read %d of %d bytes", n, written)
		}
		e.waitFor("an empty buffer", func() bool { return tr.WriteBufferSize() == 0 })
		e.pump(0)
		if got := r.Events(); got != "made pause resume" {
			t.Errorf("events %q", got)
		}

		tr.Close()
		if err := r.waitLost(); err != nil {
			t.Error(err)
		}
	})
}

func TestSetLimitsPauses(t *testing.T) {
	modes(t, func(t *testing.T, e *env) {
		r := newRecorder(e)
		tr, c := connectedSlowPeer(t, e, r)
		if err := tr.SetWriteBufferLimits(i64(1<<30), nil); err != nil {
			t.Fatal(err)
		}
		chunk := pattern(64 * 1024)
		written := 0
		for tr.WriteBufferSize() < 100000 {
			if err := tr.Write(chunk); err != nil {
				t.Fatal(err)
			}
			written += len(chunk)
		}
		e.pump(0)
		if r.Count("pause") != 0 {
			t.Fatal("paused under a 1 GiB high mark")
		}
		if err := tr.SetWriteBufferLimits(i64(1000), nil); err != nil {
			t.Fatal(err)
		}
		e.waitFor("pause_writing", func() bool { return r.Count("pause") == 1 })
		go func() {
			_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
			_, _ = io.CopyN(io.Discard, c, int64(written))
		}()
		e.waitFor("resume_writing", func() bool { return r.Count("resume") == 1 })
		tr.Abort()
		if err := r.waitLost(); err != nil {
			t.Error(err)
		}
		if got := r.Events(); got != "made pause resume lost" {
			t.Errorf("events %q", got)
		}
	})
}

// TestPauseReadingLoop: in loop mode the test controls when callbacks run,
// so data that is already readable when pause_reading() is called must wait
// for resume_reading(), even though the loop's descriptor said it was there.
func TestPauseReadingLoop(t *testing.T) {
	e := newEnv(t, true)
	r := newRecorder(e)
	tr, c := connected(t, e, r)
	e.pump(0) // connection_made
	if _, err := c.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	// Wait until the loop's descriptor reports the data, without
	// dispatching it.
	deadline := time.Now().Add(waitTimeout)
	for {
		fds := []unix.PollFd{{Fd: int32(e.loop.FD()), Events: unix.POLLIN}}
		if n, _ := unix.Poll(fds, 20); n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the data never made the loop readable")
		}
	}
	tr.PauseReading()
	if tr.IsReading() {
		t.Error("IsReading after PauseReading")
	}
	tr.PauseReading() // a no-op
	if _, err := e.loop.Dispatch(0); err != nil {
		t.Fatal(err)
	}
	if n := r.DataLen(); n != 0 {
		t.Fatalf("%d bytes delivered while paused", n)
	}
	if _, err := c.Write([]byte("def")); err != nil {
		t.Fatal(err)
	}
	e.pump(50 * time.Millisecond)
	if n := r.DataLen(); n != 0 {
		t.Fatalf("%d bytes delivered while paused", n)
	}

	tr.ResumeReading()
	if n := r.DataLen(); n != 0 {
		t.Fatal("resume_reading delivered data from inside the call")
	}
	if !tr.IsReading() {
		t.Error("IsReading is false after ResumeReading")
	}
	if got := string(r.waitData(6)); got != "abcdef" {
		t.Errorf("data %q", got)
	}
	tr.Close()
	tr.PauseReading() // no-ops after close, and they do not raise
	tr.ResumeReading()
	if err := r.waitLost(); err != nil {
		t.Error(err)
	}
}

// TestPauseReadingDirect: reading paused from connection_made delivers
// nothing until resume_reading.
func TestPauseReadingDirect(t *testing.T) {
	e := newEnv(t, false)
	r := newRecorder(e)
	r.onMade = func(tr *core.Transport) { tr.PauseReading() }
	tr, c := connected(t, e, r)
	if tr.IsReading() {
		t.Error("IsReading after PauseReading")
	}
	if _, err := c.Write([]byte("held")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // a bug would deliver by now; a pass cannot be a false failure
	if n := r.DataLen(); n != 0 {
		t.Fatalf("%d bytes delivered while paused", n)
	}
	tr.ResumeReading()
	if got := string(r.waitData(4)); got != "held" {
		t.Errorf("data %q", got)
	}
	tr.Close()
	if err := r.waitLost(); err != nil {
		t.Error(err)
	}
}

func TestWriteEOF(t *testing.T) {
	modes(t, func(t *testing.T, e *env) {
		r := newRecorder(e)
		tr, c := connected(t, e, r)
		if err := tr.Write([]byte("bye")); err != nil {
			t.Fatal(err)
		}
		if err := tr.WriteEOF(); err != nil {
			t.Fatal(err)
		}
		if err := tr.WriteEOF(); err != nil { // idempotent
			t.Fatal(err)
		}
		if got := string(readAll(t, c)); got != "bye" {
			t.Errorf("peer got %q then EOF", got)
		}
		if err := tr.Write([]byte("more")); err != core.ErrWriteAfterEOF {
			t.Errorf("Write after WriteEOF: %v", err)
		}
		if core.ErrWriteAfterEOF.Error() != "Cannot call write() after write_eof()" {
			t.Errorf("text %q", core.ErrWriteAfterEOF)
		}
		if err := tr.Writelines([][]byte{[]byte("x")}); err != core.ErrWriteAfterEOF {
			t.Errorf("Writelines after WriteEOF: %v", err)
		}
		// The read side still works.
		if _, err := c.Write([]byte("still reading")); err != nil {
			t.Fatal(err)
		}
		if got := string(r.waitData(13)); got != "still reading" {
			t.Errorf("data %q", got)
		}
		tr.Close()
		if err := r.waitLost(); err != nil {
			t.Error(err)
		}
		// The write_eof check comes before the connection-lost state.
		if err := tr.Write([]byte("x")); err != core.ErrWriteAfterEOF {
			t.Errorf("Write after WriteEOF and close: %v", err)
		}
	})
}

func TestWriteAfterClose(t *testing.T) {
	modes(t, func(t *testing.T, e *env) {
		r := newRecorder(e)
		tr, c := connected(t, e, r)
		tr.Close()
		if err := tr.Write([]byte("dropped")); err != core.ErrWriteDropped {
			t.Errorf("Write after Close: %v", err)
		}
		if err := tr.Write(nil); err != nil {
			t.Errorf("an empty write is a no-op: %v", err)
		}
		if err := r.waitLost(); err != nil {
			t.Error(err)
		}
		if err := tr.Write([]byte("dropped")); err != core.ErrWriteDropped {
			t.Errorf("Write after connection_lost: %v", err)
		}
		if err := tr.WriteEOF(); err != nil {
			t.Errorf("WriteEOF after close: %v", err)
		}
		if b := readAll(t, c); len(b) != 0 {
			t.Errorf("peer got %q", b)
		}
	})
}

// TestCloseFlushes: close() with data buffered sends it all, then calls
// connection_lost(None).
func TestCloseFlushes(t *testing.T) {
	modes(t, func(t *testing.T, e *env) {
		r := newRecorder(e)
		tr, c := connectedSlowPeer(t, e, r)
		written := fillUntilPaused(t, e, r, tr, 65536)
		tr.Close()
		if !tr.IsClosing() {
			t.Error("IsClosing is false after Close")
		}
		e.pump(0)
		if lost, _ := r.Lost(); lost {
			t.Fatal("connection_lost before the buffer was flushed")
		}
		got := make(chan []byte, 1)
		go func() {
			_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
			b, _ := io.ReadAll(c)
			got <- b
		}()
		if err := r.waitLost(); err != nil {
			t.Errorf("connection_lost(%v)", err)
		}
		if b := <-got; len(b) != written {
			t.Errorf("peer got %d of %d bytes", len(b), written)
		}
		// As asyncio's probe shows: pause, then resume once drained, then lost.
		if got := r.Events(); got != "made pause resume lost" {
			t.Errorf("events %q", got)
		}
	})
}

// TestAbort: abort() drops the buffer, and a paused protocol is not resumed.
func TestAbort(t *testing.T) {
	modes(t, func(t *testing.T, e *env) {
		r := newRecorder(e)
		tr, c := connectedSlowPeer(t, e, r)
		written := fillUntilPaused(t, e, r, tr, 65536)
		buffered := tr.WriteBufferSize()
		tr.Abort()
		if !tr.IsClosing() || tr.WriteBufferSize() != 0 {
			t.Errorf("after Abort: closing %v, buffer %d", tr.IsClosing(), tr.WriteBufferSize())
		}
		if err := r.waitLost(); err != nil {
			t.Errorf("connection_lost(%v), want nil", err)
		}
		_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
		n, _ := io.Copy(io.Discard, c)
		if int(n) > written-buffered {
			t.Errorf("peer got %d bytes; %d were written and %d of them dropped", n, written, buffered)
		}
		e.pump(20 * time.Millisecond)
		if got := r.Events(); got != "made pause lost" {
			t.Errorf("events %q", got)
		}
		if err := tr.Write([]byte("x")); err != core.ErrWriteDropped {
			t.Errorf("Write after Abort: %v", err)
		}
	})
}

// postHoldingExecutor is a direct-mode executor that holds the next Post made
// from inside a given transport method until another Post arrives (or half
// a second passes). It widens the window between a flow-control decision and
// the queueing of its callback: a resume the writer decides in that window
// must still come after the pause.
type postHoldingExecutor struct {
	core.Executor
	holdIn string // a function name that must be on the Post's stack
	onHold func() // runs when the hold starts
	armed  atomic.Bool
	held   atomic.Int32
	others chan struct{}
}

func (x *postHoldingExecutor) Post(task func()) {
	if x.armed.Load() && onStack(x.holdIn) && x.armed.CompareAndSwap(true, false) {
		x.held.Add(1)
		if x.onHold != nil {
			x.onHold()
		}
		select {
		case <-x.others:
		case <-time.After(500 * time.Millisecond):
		}
	} else {
		defer func() {
			select {
			case x.others <- struct{}{}:
			default:
			}
		}()
	}
	x.Executor.Post(task)
}

// arm makes the next Post from inside holdIn wait for a later Post.
func (x *postHoldingExecutor) arm(onHold func()) {
	for drained := false; !drained; {
		select {
		case <-x.others: // forget the Posts made so far
		default:
			drained = true
		}
	}
	x.onHold = onHold
	x.armed.Store(true)
}

func onStack(fn string) bool {
	pc := make([]uintptr, 64)
	frames := runtime.CallersFrames(pc[:runtime.Callers(2, pc)])
	for {
		f, more := frames.Next()
		if strings.HasSuffix(f.Function, fn) {
			return true
		}
		if !more {
			return false
		}
	}
}

// TestPauseResumeOrderDirect: in direct mode pause_writing is queued, not
// called; a resume_writing that the writer decides once the buffer drains
// must never be delivered before it. The peer starts reading only while the
// queueing of the pause is held, so the writer drains the buffer to the low
// mark inside that window.
func TestPauseResumeOrderDirect(t *testing.T) {
	for _, method := range []string{"(*Transport).Write", "(*Transport).SetWriteBufferLimits"} {
		t.Run(method, func(t *testing.T) {
			e := newEnv(t, false)
			x := &postHoldingExecutor{Executor: core.NewDirectExecutor(), holdIn: "core." + method,
				others: make(chan struct{}, 1)}
			r := newRecorder(e)
			ln, port := listenSmallWindow(t)
			opts := tcpOpts("127.0.0.1", port)
			opts.Resolver = staticResolver{tcpInfo("127.0.0.1", port)}
			p := &pending{e: e}
			if _, err := core.OpenConnection(opts, x, core.Callbacks{
				Factory: func(*core.Transport) (core.Protocol, error) { return r, nil },
				Done: func(res core.Result) {
					p.mu.Lock()
					p.results = append(p.results, res)
					p.mu.Unlock()
					e.poke()
				},
			}); err != nil {
				t.Fatal(err)
			}
			res := p.wait()
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			tr := res.Transport
			if err := unix.SetsockoptInt(tr.FD(), unix.SOL_SOCKET, unix.SO_SNDBUF, 8192); err != nil {
				t.Logf("SO_SNDBUF: %v", err)
			}
			c := accept(t, ln)
			drain := func() { go func() { _, _ = io.Copy(io.Discard, c) }() }

			big := pattern(4 << 20)
			if method == "(*Transport).Write" {
				x.arm(drain)
				if err := tr.Write(big); err != nil {
					t.Fatal(err)
				}
			} else {
				// Buffer a lot under a huge high mark, then lower it.
				if err := tr.SetWriteBufferLimits(i64(1<<40), nil); err != nil {
					t.Fatal(err)
				}
				if err := tr.Write(big); err != nil {
					t.Fatal(err)
				}
				x.arm(drain)
				if err := tr.SetWriteBufferLimits(nil, nil); err != nil {
					t.Fatal(err)
				}
			}
			if x.held.Load() != 1 {
				t.Fatalf("no pause_writing was queued (%d bytes buffered)", tr.WriteBufferSize())
			}
			e.waitFor("resume_writing", func() bool { return r.Count("resume") >= 1 && r.Count("pause") >= 1 })
			e.waitFor("an empty buffer", func() bool { return tr.WriteBufferSize() == 0 })
			tr.Close()
			if err := r.waitLost(); err != nil {
				t.Error(err)
			}
			if got := r.Events(); got != "made pause resume lost" {
				t.Errorf("events %q, want pause before resume", got)
			}
		})
	}
}
