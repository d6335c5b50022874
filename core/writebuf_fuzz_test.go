package core

// Fuzz tests of the write side: the write buffer alone (writebuf.go) and a
// real transport over a socketpair (transport_write.go with flowcontrol.go),
// driven by random sequences of writes, peer reads, limit changes, callback
// runs, write_eof, close and abort.

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// streamBytes is n bytes of the test stream starting at position pos. The
// pattern does not repeat for 16 MiB, so a reordering shows.
func streamBytes(pos, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		p := pos + i
		b[i] = byte(p ^ p>>8 ^ p>>16)
	}
	return b
}

// fuzzSize maps an input byte to a write size that is sometimes tiny,
// sometimes about a chunk (16 KiB) and sometimes several chunks.
func fuzzSize(b byte) int {
	switch b >> 6 {
	case 0:
		return int(b) // 0..63
	case 1:
		return int(b&63) * 97 // up to ~6 KiB
	case 2:
		return minChunk - 32 + int(b&63) // around one chunk
	default:
		return int(b&63) * 1031 // up to ~64 KiB
	}
}

func chunksLen(chunks [][]byte) int {
	n := 0
	for _, c := range chunks {
		n += len(c)
	}
	return n
}

// FuzzWriteBuffer: appends, partial sends through iovecs, and clears keep
// size equal to the bytes held, send every byte once and in order, and
// never alias the caller's slice.
func FuzzWriteBuffer(f *testing.F) {
	f.Add([]byte{0, 10, 0, 20, 1, 5, 1, 255})
	f.Add([]byte{0, 200, 0, 130, 0, 3, 1, 100, 1, 100, 0, 250, 1, 255, 1, 255})
	f.Add([]byte{0, 150, 2, 0, 0, 5, 1, 1})
	f.Add([]byte{3, 40, 1, 7, 3, 90, 1, 255, 1, 255})
	f.Fuzz(func(t *testing.T, ops []byte) {
		var b writeBuffer
		var model []byte // what the buffer must hold, in order
		pos := 0         // stream position of the next byte written
		for i := 0; i+1 < len(ops); i += 2 {
			op, arg := ops[i]%4, ops[i+1]
			switch op {
			case 0, 3: // write (3: a burst of small ones)
				count := 1
				if op == 3 {
					count = 1 + int(arg%16)
					arg = arg / 16
				}
				for k := 0; k < count && len(model) < 1<<20; k++ {
					p := streamBytes(pos, fuzzSize(arg))
					pos += len(p)
					b.append(p)
					model = append(model, p...)
					// The caller may reuse its buffer at once.
					for j := range p {
						p[j] ^= 0xff
					}
				}
			case 1: // sendmsg took n bytes of what iovecs offered
				iov := b.iovecs()
				if len(iov) > maxIovec {
					t.Fatalf("%d iovecs, more than IOV_MAX", len(iov))
				}
				offered := bytes.Join(iov, nil)
				if !bytes.Equal(offered, model[:len(offered)]) {
					t.Fatalf("op %d: the iovecs do not start the buffered stream", i/2)
				}
				n := 0
				if len(offered) > 0 {
					n = int(arg) * len(offered) / 255
					if arg%3 == 0 {
						n = min(len(offered), int(arg)) // a short send
					}
				}
				b.consume(n)
				model = model[n:]
			case 2: // abort: the buffer is dropped
				b.clear()
				model = nil
			}
			if b.size != len(model) {
				t.Fatalf("op %d: size %d, holding %d bytes", i/2, b.size, len(model))
			}
			if got := chunksLen(b.chunks); got != b.size {
				t.Fatalf("op %d: size %d, chunks hold %d", i/2, b.size, got)
			}
			if b.empty() != (len(model) == 0) {
				t.Fatalf("op %d: empty() %v with %d bytes", i/2, b.empty(), len(model))
			}
			if !bytes.Equal(bytes.Join(b.chunks, nil), model) {
				t.Fatalf("op %d: the buffered bytes are not the stream written", i/2)
			}
			for k, c := range b.chunks {
				if len(c) == 0 {
					t.Fatalf("op %d: chunk %d is empty", i/2, k)
				}
			}
		}
	})
}

// fuzzExec runs posted callbacks when the test says so, and is Inline in
// loop mode (pause_writing is then called from inside write()).
type fuzzExec struct {
	*manualExecutor
	inline bool
}

func (e fuzzExec) Inline() bool { return e.inline }

// flowProto checks the protocol's view: pause and resume strictly
// alternate, starting with a pause; nothing comes after connection_lost,
// which comes once. Every callback runs on the test goroutine.
type flowProto struct {
	t       *testing.T
	paused  bool
	events  strings.Builder
	lost    int
	lostErr error
}

func (p *flowProto) ConnectionMade(*Transport) {}
func (p *flowProto) DataReceived([]byte)       { p.t.Error("data_received: the peer never writes") }
func (p *flowProto) EOFReceived() bool {
	p.t.Error("eof_received: the peer never shuts down")
	return false
}
func (p *flowProto) ConnectionLost(err error) {
	p.lost++
	p.lostErr = err
	p.events.WriteString("L")
	if p.lost > 1 {
		p.t.Errorf("connection_lost called %d times (%s)", p.lost, p.events.String())
	}
}

func (p *flowProto) PauseWriting() {
	p.events.WriteString("P")
	if p.paused {
		p.t.Errorf("pause_writing while paused: %s", p.events.String())
	}
	if p.lost > 0 {
		p.t.Errorf("pause_writing after connection_lost: %s", p.events.String())
	}
	p.paused = true
}

func (p *flowProto) ResumeWriting() {
	p.events.WriteString("R")
	if !p.paused {
		p.t.Errorf("resume_writing while not paused: %s", p.events.String())
	}
	if p.lost > 0 {
		p.t.Errorf("resume_writing after connection_lost: %s", p.events.String())
	}
	p.paused = false
}

// FuzzTransportWrite drives a plain transport whose peer is the other end
// of a socketpair with small kernel buffers, so that write() buffers and
// the writer goroutine drains as the test reads. Invariants, after every
// step: bytes accepted = bytes the peer read + bytes queued in the kernel +
// the transport's buffer size (exactly); pause/resume alternate; outside a
// callback the protocol is paused exactly when the transport thinks it is.
// At the end every accepted byte reaches the peer once and in order (a
// prefix after abort), a paused protocol has been resumed unless aborted,
// and connection_lost comes once.
func FuzzTransportWrite(f *testing.F) {
	f.Add([]byte{0, 200, 0, 200, 2, 20, 3, 0, 2, 255, 3, 0}, false)
	f.Add([]byte{4, 0, 0, 255, 0, 255, 2, 255, 3, 0, 2, 255, 3, 0}, true)
	f.Add([]byte{0, 100, 1, 150, 6, 0, 0, 5, 2, 255}, false)
	f.Add([]byte{0, 255, 0, 255, 7, 0, 2, 255, 3, 0, 0, 1}, true)
	f.Add([]byte{4, 9, 0, 130, 5, 0, 2, 100, 3, 0, 4, 200, 3, 0}, false)
	f.Add([]byte{4, 4, 0, 255, 3, 0, 2, 255, 3, 0, 2, 255, 3, 0, 2, 255, 2, 255, 3, 0, 0, 255, 3, 0, 2, 255, 3, 0, 2, 255, 3, 0, 2, 255, 3, 0}, false)
	f.Fuzz(func(t *testing.T, ops []byte, inline bool) {
		if len(ops) > 120 {
			ops = ops[:120]
		}
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		peer := fds[1]
		defer unix.Close(peer)
		_ = unix.SetsockoptInt(fds[0], unix.SOL_SOCKET, unix.SO_SNDBUF, 4096)
		_ = unix.SetsockoptInt(peer, unix.SOL_SOCKET, unix.SO_RCVBUF, 4096)
		sock, err := newSocket(fds[0], unix.AF_UNIX, unix.SOCK_STREAM, 0)
		if err != nil {
			t.Fatal(err)
		}
		exec := fuzzExec{newManualExecutor(), inline}
		proto := &flowProto{t: t}
		tr := newTransport(sock, exec, false, nil)
		tr.start(proto)
		defer func() {
			tr.Abort()
			exec.runPending()
		}()

		var accepted []byte // every byte write() took, in order
		var received []byte // what the peer read
		pos := 0
		eofSent, closed, aborted := false, false, false

		peerRead := func(max int) int {
			buf := make([]byte, max)
			n, err := unix.Read(peer, buf)
			if err == unix.EAGAIN || n <= 0 {
				return n
			}
			if err != nil {
				t.Fatalf("peer read: %v", err)
			}
			received = append(received, buf[:n]...)
			return n
		}
		// check holds the transport's lock so that neither write() nor the
		// writer goroutine moves bytes while the three parts are counted.
		check := func(step string) {
			tr.mu.Lock()
			defer tr.mu.Unlock()
			if got := chunksLen(tr.wbuf.chunks); got != tr.wbuf.size {
				t.Fatalf("%s: size %d, chunks hold %d", step, tr.wbuf.size, got)
			}
			inKernel, err := unix.IoctlGetInt(peer, unix.SIOCINQ)
			if err != nil {
				t.Fatalf("SIOCINQ: %v", err)
			}
			total := len(received) + inKernel + tr.wbuf.size
			if aborted {
				if total > len(accepted) {
					t.Fatalf("%s: %d bytes accounted, only %d accepted", step, total, len(accepted))
				}
			} else if total != len(accepted) {
				t.Fatalf("%s: accepted %d = read %d + in kernel %d + buffered %d does not hold (off by %d)",
					step, len(accepted), len(received), inKernel, tr.wbuf.size, len(accepted)-total)
			}
			if !bytes.Equal(received, accepted[:len(received)]) {
				t.Fatalf("%s: the peer read bytes out of order or not written", step)
			}
			if !tr.lost && exec.queued() == 0 && proto.paused != tr.fc.paused {
				t.Fatalf("%s: the protocol's paused=%v, the transport's %v (marks %d/%d, size %d, events %s)",
					step, proto.paused, tr.fc.paused, tr.fc.high, tr.fc.low, tr.wbuf.size, proto.events.String())
			}
		}
		write := func(parts [][]byte) {
			data := bytes.Join(parts, nil)
			var err error
			if len(parts) == 1 {
				err = tr.Write(parts[0])
			} else {
				err = tr.Writelines(parts)
			}
			for _, p := range parts { // the caller's buffers may change at once
				for j := range p {
					p[j] = 0xee
				}
			}
			switch {
			case err == nil:
				accepted = append(accepted, data...)
				pos += len(data)
				if eofSent && len(data) > 0 {
					t.Fatal("write() after write_eof() was accepted")
				}
			case errors.Is(err, ErrWriteAfterEOF):
				if !eofSent {
					t.Fatalf("write(): %v without write_eof()", err)
				}
			case errors.Is(err, ErrWriteDropped):
				if !closed && !aborted {
					t.Fatalf("write() dropped on an open transport")
				}
			default:
				t.Fatalf("write(): %v", err)
			}
		}

		for i := 0; i+1 < len(ops); i += 2 {
			op, arg := ops[i]%8, ops[i+1]
			step := fmt.Sprintf("op %d (%d,%d)", i/2, op, arg)
			switch op {
			case 0: // write
				write([][]byte{streamBytes(pos, fuzzSize(arg))})
			case 1: // writelines
				n := fuzzSize(arg)
				p := streamBytes(pos, n)
				write([][]byte{p[:n/3], p[n/3 : n/2], p[n/2:]})
			case 2: // the peer reads
				for k := 0; k <= int(arg)/64; k++ {
					if peerRead(1+int(arg)*64) <= 0 {
						break
					}
				}
			case 3: // the loop runs the queued callbacks
				exec.runPending()
			case 4: // set_write_buffer_limits
				var hp, lp *int64
				h, l := int64(arg)*131, int64(arg&15)*257
				switch arg % 4 {
				case 0:
					hp = &h
				case 1:
					lp = &l
				case 2:
					hp, lp = &h, &l
				}
				oldLow, oldHigh := tr.WriteBufferLimits()
				err := tr.SetWriteBufferLimits(hp, lp)
				_, _, want := pyWaterMarks(hp, lp, DefaultHighWater)
				gotLow, gotHigh := tr.WriteBufferLimits()
				if (err != nil) != (want != "") {
					t.Fatalf("%s: limits (%s, %s): error %v, want %q", step, fmtPtr(hp), fmtPtr(lp), err, want)
				}
				if err != nil && (gotLow != oldLow || gotHigh != oldHigh) {
					t.Fatalf("%s: rejected limits changed the marks", step)
				}
				if err == nil && !(gotHigh >= gotLow && gotLow >= 0) {
					t.Fatalf("%s: marks (%d, %d)", step, gotLow, gotHigh)
				}
			case 5: // write_eof
				if !closed && !aborted {
					if err := tr.WriteEOF(); err != nil {
						t.Fatalf("%s: write_eof: %v", step, err)
					}
					eofSent = true
				}
			case 6: // close
				tr.Close()
				closed = true
			case 7: // abort
				if arg%4 == 0 { // rarely: it ends the interesting part
					tr.Abort()
					aborted = true
				}
			}
			if got := tr.WriteBufferSize(); got < 0 {
				t.Fatalf("%s: buffer size %d", step, got)
			}
			check(step)
		}

		// Drain: the peer reads everything, the callbacks run, until the
		// transport has nothing buffered and nothing is queued.
		deadline := time.Now().Add(10 * time.Second)
		for {
			exec.runPending()
			n := peerRead(1 << 16)
			tr.mu.Lock()
			idle := tr.wbuf.empty() && !tr.writing
			tr.mu.Unlock()
			if n <= 0 && idle && exec.queued() == 0 {
				inKernel, _ := unix.IoctlGetInt(peer, unix.SIOCINQ)
				if inKernel == 0 {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("the transport never drained: read %d of %d, buffered %d", len(received), len(accepted), tr.WriteBufferSize())
			}
			if n <= 0 {
				_, _ = unix.Poll([]unix.PollFd{{Fd: int32(peer), Events: unix.POLLIN}}, 1)
			}
		}
		check("drained")
		if !aborted {
			if !bytes.Equal(received, accepted) {
				t.Fatalf("the peer read %d bytes, %d were accepted", len(received), len(accepted))
			}
			if proto.paused && proto.lost == 0 {
				t.Fatalf("still paused with an empty buffer (marks %d/%d): %s", tr.fc.high, tr.fc.low, proto.events.String())
			}
		}
		if !aborted && !closed {
			// One more write: refused after write_eof, else sent.
			write([][]byte{streamBytes(pos, 1)})
		}

		// Close and wait for connection_lost; the peer then sees EOF.
		tr.Close()
		for time.Now().Before(deadline) && proto.lost == 0 {
			exec.runPending()
			if proto.lost == 0 {
				time.Sleep(100 * time.Microsecond)
			}
		}
		if proto.lost != 1 {
			t.Fatalf("connection_lost called %d times", proto.lost)
		}
		if proto.lostErr != nil {
			t.Fatalf("connection_lost(%v), want None", proto.lostErr)
		}
		for {
			buf := make([]byte, 4096)
			n, err := unix.Read(peer, buf)
			if err == unix.EAGAIN {
				if time.Now().After(deadline) {
					t.Fatal("the peer never saw EOF")
				}
				_, _ = unix.Poll([]unix.PollFd{{Fd: int32(peer), Events: unix.POLLIN}}, 1)
				continue
			}
			if n <= 0 {
				break
			}
			received = append(received, buf[:n]...)
		}
		if !aborted && !bytes.Equal(received, accepted) {
			t.Fatalf("the peer read %d bytes in all, %d were accepted", len(received), len(accepted))
		}
		if aborted && !bytes.Equal(received, accepted[:min(len(received), len(accepted))]) {
			t.Fatalf("after abort the peer read bytes that were not written in that order")
		}
		t.Logf("inline %v: accepted %d bytes, events %s, eof %v closed %v aborted %v",
			inline, len(accepted), proto.events.String(), eofSent, closed, aborted)
		if ev := proto.events.String(); strings.Count(ev, "L") != 1 || !strings.HasSuffix(ev, "L") {
			t.Fatalf("events %s: connection_lost is not last and once", ev)
		}
	})
}
