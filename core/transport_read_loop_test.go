package core

// Tests of the read path: plain TCP in loop mode read inside Loop.Dispatch
// (transport_read_loop.go), buffered protocols (GetBuffer/BufferUpdated) on
// every path, pause/resume against the epoll set, close and abort with data
// pending, EOF ordering and Loop.Close with watched sockets.
//
// The package's internals are used only to check what must hold inside
// (the epoll registrations); every test also checks what a protocol sees.
// They run on loopback against Go peers, and assert order and bounds, never
// tight times.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const rlWait = 10 * time.Second

// rlPattern is bytes [off, off+n) of the stream pattern: byte i is i % 251,
// so a dropped, repeated or shifted piece shows.
func rlPattern(off, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte((off + i) % 251)
	}
	return b
}

// firstDiff describes where got departs from want.
func firstDiff(got, want []byte) string {
	n := min(len(got), len(want))
	for i := 0; i < n; i++ {
		if got[i] != want[i] {
			return fmt.Sprintf("byte %d differs (got %d, want %d; %d of %d bytes)", i, got[i], want[i], len(got), len(want))
		}
	}
	return fmt.Sprintf("got %d bytes, want %d", len(got), len(want))
}

// ---------------------------------------------------------------------------
// rlEnv: direct mode, or a Loop dispatched by the test goroutine

type rlEnv struct {
	t           *testing.T
	loop        *Loop // nil in direct mode
	notify      chan struct{}
	dispatching atomic.Bool // the test goroutine is inside Dispatch
}

func newRLEnv(t *testing.T, loopMode bool) *rlEnv {
	e := &rlEnv{t: t, notify: make(chan struct{}, 1)}
	if loopMode {
		l, err := NewLoop()
		if err != nil {
			t.Fatal(err)
		}
		e.loop = l
		t.Cleanup(func() {
			l.mu.Lock()
			closed := l.closed
			l.mu.Unlock()
			if closed || t.Failed() {
				return
			}
			e.pump(0)
			if err := l.Close(); err != nil {
				t.Errorf("loop.Close: %v (live %d, pending %d)", err, l.Live(), l.Pending())
			}
		})
	}
	return e
}

func (e *rlEnv) executor() Executor {
	if e.loop == nil {
		return NewDirectExecutor()
	}
	x, err := e.loop.Executor()
	if err != nil {
		e.t.Fatal(err)
	}
	return x
}

func (e *rlEnv) poke() {
	select {
	case e.notify <- struct{}{}:
	default:
	}
}

// dispatch runs Dispatch once and returns how many events ran.
func (e *rlEnv) dispatch() int {
	e.dispatching.Store(true)
	n, err := e.loop.Dispatch(0)
	e.dispatching.Store(false)
	if err != nil {
		e.t.Errorf("Dispatch: %v", err)
	}
	return n
}

// pump waits up to d for the loop's descriptor, then dispatches.
func (e *rlEnv) pump(d time.Duration) int {
	if e.loop == nil {
		return 0
	}
	fds := []unix.PollFd{{Fd: int32(e.loop.FD()), Events: unix.POLLIN}}
	_, _ = unix.Poll(fds, int(d/time.Millisecond))
	return e.dispatch()
}

func (e *rlEnv) waitFor(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(rlWait)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s", what)
		}
		if e.loop != nil {
			e.pump(20 * time.Millisecond)
		} else {
			select {
			case <-e.notify:
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

// loopReadable polls the loop's descriptor without waiting.
func (e *rlEnv) loopReadable() bool {
	fds := []unix.PollFd{{Fd: int32(e.loop.FD()), Events: unix.POLLIN}}
	n, _ := unix.Poll(fds, 0)
	return n == 1
}

// registered reports whether the loop's epoll set holds tr.
func (e *rlEnv) registered(tr *Transport) bool {
	e.loop.mu.Lock()
	defer e.loop.mu.Unlock()
	for _, r := range e.loop.watched {
		if r == tr {
			return true
		}
	}
	return false
}

func (e *rlEnv) readers() int {
	e.loop.mu.Lock()
	defer e.loop.mu.Unlock()
	return len(e.loop.watched)
}

func watchIDOf(tr *Transport) uint64 {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.watchID
}

// waitSocketReadable waits until fd has data (or EOF) to read.
func waitSocketReadable(t *testing.T, fd int) {
	t.Helper()
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	deadline := time.Now().Add(rlWait)
	for {
		if n, _ := unix.Poll(fds, 20); n == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the socket never became readable")
		}
	}
}

// ---------------------------------------------------------------------------
// rlProto: a protocol, plain or buffered, that records and checks

type rlProto struct {
	e *rlEnv

	// Set before the connection is made.
	bufSizes []int               // buffered when non-nil: GetBuffer's sizes, in turn
	empty    int                 // the GetBuffer call (from 1) that returns an empty buffer
	emptyNil bool                // that empty buffer is nil rather than []byte{}
	keepOpen bool                // what EOFReceived returns
	onMade   func(*Transport)    // inside ConnectionMade
	onData   func(tr *Transport) // inside DataReceived or BufferUpdated, after recording
	onGet    func(tr *Transport) // inside GetBuffer, before it returns

	inCall atomic.Int32

	mu       sync.Mutex
	tr       *Transport
	events   []string
	data     []byte
	gets     int
	updates  int
	hints    []int
	sizes    []int // the size of each buffer handed out
	ns       []int // each BufferUpdated's n
	buf      []byte
	lostErr  error
	problems []string
}

func newRLProto(e *rlEnv) *rlProto {
	p := &rlProto{e: e}
	e.t.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, s := range p.problems {
			e.t.Errorf("protocol contract: %s (events %v)", s, p.events)
		}
	})
	return p
}

func (p *rlProto) problem(format string, args ...any) {
	p.problems = append(p.problems, fmt.Sprintf(format, args...))
}

// enter checks that callbacks do not overlap, come in order, and (loop
// mode) run inside Dispatch on the test goroutine.
func (p *rlProto) enter(ev string) func() {
	if p.inCall.Add(1) != 1 {
		p.mu.Lock()
		p.problem("%s while another callback was running", ev)
		p.mu.Unlock()
	}
	p.mu.Lock()
	if p.e.loop != nil && !p.e.dispatching.Load() {
		p.problem("%s ran outside Dispatch in loop mode", ev)
	}
	if n := len(p.events); n > 0 && p.events[n-1] == "lost" {
		p.problem("%s after connection_lost", ev)
	}
	if ev != "made" && len(p.events) == 0 {
		p.problem("%s before connection_made", ev)
	}
	if (ev == "data" || ev == "get") && p.count("eof") > 0 {
		p.problem("%s after eof_received", ev)
	}
	// A run of data callbacks is logged once, a buffered protocol's as
	// "get data" (or "get" when no buffer was ever filled).
	last := ""
	if n := len(p.events); n > 0 {
		last = p.events[n-1]
	}
	switch {
	case ev == "data" && last == "data":
	case ev == "get" && (last == "get" || last == "data"):
	default:
		p.events = append(p.events, ev)
	}
	p.mu.Unlock()
	return func() {
		p.inCall.Add(-1)
		p.e.poke()
	}
}

func (p *rlProto) count(ev string) int {
	n := 0
	for _, e := range p.events {
		if e == ev {
			n++
		}
	}
	return n
}

func (p *rlProto) Buffered() bool { return p.bufSizes != nil }

func (p *rlProto) ConnectionMade(tr *Transport) {
	defer p.enter("made")()
	p.mu.Lock()
	p.tr = tr
	p.mu.Unlock()
	if p.onMade != nil {
		p.onMade(tr)
	}
}

func (p *rlProto) DataReceived(data []byte) {
	defer p.enter("data")()
	p.mu.Lock()
	if p.bufSizes != nil {
		p.problem("data_received on a buffered protocol")
	}
	if len(data) == 0 {
		p.problem("data_received with no data")
	}
	p.data = append(p.data, data...)
	tr := p.tr
	p.mu.Unlock()
	if p.onData != nil {
		p.onData(tr)
	}
}

// rlFill marks buffer memory the library has not written.
const rlFill = 0xEE

func (p *rlProto) GetBuffer(hint int) []byte {
	defer p.enter("get")()
	p.mu.Lock()
	p.gets++
	p.hints = append(p.hints, hint)
	if hint == 0 || hint < -1 {
		p.problem("get_buffer(%d)", hint)
	}
	var b []byte
	if p.gets == p.empty {
		if !p.emptyNil {
			b = []byte{}
		}
	} else {
		size := p.bufSizes[(p.gets-1)%len(p.bufSizes)]
		b = bytes.Repeat([]byte{rlFill}, size)
	}
	p.buf = b
	p.sizes = append(p.sizes, len(b))
	tr := p.tr
	p.mu.Unlock()
	if p.onGet != nil {
		p.onGet(tr)
	}
	return b
}

func (p *rlProto) BufferUpdated(n int) {
	defer p.enter("data")()
	p.mu.Lock()
	p.updates++
	p.ns = append(p.ns, n)
	switch {
	case p.buf == nil:
		p.problem("buffer_updated(%d) without a buffer", n)
	case n < 1 || n > len(p.buf):
		p.problem("buffer_updated(%d) for a buffer of %d", n, len(p.buf))
	default:
		p.data = append(p.data, p.buf[:n]...)
		for i, c := range p.buf[n:] {
			if c != rlFill {
				p.problem("byte %d past buffer_updated(%d) was written", n+i, n)
				break
			}
		}
	}
	p.buf = nil
	tr := p.tr
	p.mu.Unlock()
	if p.onData != nil {
		p.onData(tr)
	}
}

func (p *rlProto) EOFReceived() bool {
	defer p.enter("eof")()
	p.mu.Lock()
	if p.count("eof") != 1 {
		p.problem("eof_received twice")
	}
	p.mu.Unlock()
	return p.keepOpen
}

func (p *rlProto) ConnectionLost(err error) {
	p.mu.Lock()
	if p.count("lost") == 0 {
		p.lostErr = err
	}
	p.mu.Unlock()
	defer p.enter("lost")()
	p.mu.Lock()
	if p.count("lost") != 1 {
		p.problem("connection_lost twice")
	}
	p.mu.Unlock()
}

func (p *rlProto) PauseWriting()  {}
func (p *rlProto) ResumeWriting() {}

func (p *rlProto) Events() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.events, " ")
}

func (p *rlProto) Data() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]byte(nil), p.data...)
}

func (p *rlProto) DataLen() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.data)
}

func (p *rlProto) Count(ev string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.count(ev)
}

func (p *rlProto) Lost() (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.count("lost") > 0, p.lostErr
}

func (p *rlProto) waitLost() error {
	p.e.t.Helper()
	p.e.waitFor("connection_lost", func() bool { lost, _ := p.Lost(); return lost })
	_, err := p.Lost()
	return err
}

func (p *rlProto) waitData(n int) []byte {
	p.e.t.Helper()
	p.e.waitFor(fmt.Sprintf("%d bytes", n), func() bool { return p.DataLen() >= n })
	return p.Data()
}

// wantEvents is the log of a stream that ends with tail: a buffered
// protocol's data runs show as "get data".
func wantEvents(buffered bool, tail string) string {
	if buffered {
		return "made get data " + tail
	}
	return "made data " + tail
}

// ---------------------------------------------------------------------------
// peers and connections

// rlListen listens on 127.0.0.1; with tlsOn the accepted conns are TLS
// servers with a fresh self-signed certificate.
func rlListen(t *testing.T, tlsOn bool) (net.Listener, int) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if tlsOn {
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{rlCert(t)}})
	}
	t.Cleanup(func() { ln.Close() })
	return ln, port
}

var (
	rlCertOnce sync.Once
	rlCertVal  tls.Certificate
	rlCertErr  error
)

func rlCert(t *testing.T) tls.Certificate {
	rlCertOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			rlCertErr = err
			return
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1),
			Subject:      pkix.Name{CommonName: "localhost"},
			DNSNames:     []string{"localhost"},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			rlCertErr = err
			return
		}
		rlCertVal = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	})
	if rlCertErr != nil {
		t.Fatal(rlCertErr)
	}
	return rlCertVal
}

// rlResolver answers every lookup with fixed addresses.
type rlResolver []AddrInfo

func (r rlResolver) GetAddrInfo(context.Context, *string, *string, Hints) ([]AddrInfo, error) {
	return []AddrInfo(r), nil
}

// connect opens a connection to port with p as its protocol. The TLS
// handshake (tlsOn) needs the peer side accepted concurrently, so the
// accepted conn is returned too.
func (e *rlEnv) connect(p *rlProto, ln net.Listener, port int, tlsOn bool) (*Transport, net.Conn) {
	e.t.Helper()
	host, ps := "127.0.0.1", strconv.Itoa(port)
	opts := Options{Host: &host, Port: &ps, Resolver: rlResolver{testInfo(host, port)}}
	if tlsOn {
		opts.TLS = &TLSOptions{VerifyNone: true, NoCheckHostname: true}
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		if tc, ok := c.(*tls.Conn); ok {
			_ = tc.SetDeadline(time.Now().Add(rlWait))
			if err := tc.Handshake(); err != nil {
				c.Close()
				accepted <- nil
				return
			}
		}
		_ = c.SetDeadline(time.Now().Add(3 * rlWait))
		accepted <- c
	}()
	var mu sync.Mutex
	var results []Result
	if _, err := OpenConnection(opts, e.executor(), Callbacks{
		Factory: func(*Transport) (Protocol, error) { return p, nil },
		Done: func(r Result) {
			mu.Lock()
			results = append(results, r)
			mu.Unlock()
			e.poke()
		},
	}); err != nil {
		e.t.Fatalf("OpenConnection: %v", err)
	}
	e.waitFor("on_done", func() bool { mu.Lock(); defer mu.Unlock(); return len(results) > 0 })
	mu.Lock()
	res := results[0]
	mu.Unlock()
	if res.Err != nil {
		e.t.Fatalf("create_connection: %v", res.Err)
	}
	var c net.Conn
	select {
	case c = <-accepted:
	case <-time.After(rlWait):
	}
	if c == nil {
		e.t.Fatal("the peer did not accept")
	}
	e.t.Cleanup(func() { c.Close() })
	return res.Transport, c
}

func closeWrite(t *testing.T, c net.Conn) {
	t.Helper()
	type cw interface{ CloseWrite() error }
	if err := c.(cw).CloseWrite(); err != nil {
		t.Fatal(err)
	}
}

// sendAll writes data from a goroutine, then (when then is set) calls it.
func sendAll(t *testing.T, c net.Conn, data []byte, then func(net.Conn)) <-chan error {
	errc := make(chan error, 1)
	go func() {
		for off := 0; off < len(data); {
			n := min(64*1024, len(data)-off)
			if _, err := c.Write(data[off : off+n]); err != nil {
				errc <- err
				return
			}
			off += n
		}
		if then != nil {
			then(c)
		}
		errc <- nil
	}()
	return errc
}

// peerGone waits until the peer's side sees the connection end.
func peerGone(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(rlWait))
	buf := make([]byte, 64*1024)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue // drain what is there
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("the peer never saw the connection end")
		}
		return // EOF or reset
	}
}

// ---------------------------------------------------------------------------
// tests

// TestLoopBufferedStream: a buffered protocol on plain TCP in loop mode
// gets a multi-MiB stream exactly, read straight into its small buffers
// (get_buffer hinted with what the kernel holds), every callback inside
// Dispatch, then eof_received and connection_lost in that order.
func TestLoopBufferedStream(t *testing.T) {
	for _, sizes := range [][]int{{1000}, {1, 7, 1000, 4096, 65536, 300000}} {
		t.Run(fmt.Sprint(sizes), func(t *testing.T) {
			e := newRLEnv(t, true)
			p := newRLProto(e)
			p.bufSizes = sizes
			ln, port := rlListen(t, false)
			tr, c := e.connect(p, ln, port, false)
			if watchIDOf(tr) == 0 || !e.registered(tr) {
				t.Fatal("a plain loop-mode transport is not in the loop's epoll set")
			}
			const total = 4 << 20
			want := rlPattern(0, total)
			errc := sendAll(t, c, want, func(c net.Conn) { c.Close() })
			if err := p.waitLost(); err != nil {
				t.Fatalf("connection_lost(%v)", err)
			}
			if err := <-errc; err != nil {
				t.Fatalf("peer: %v", err)
			}
			if got := p.Data(); !bytes.Equal(got, want) {
				t.Fatalf("stream: %s", firstDiff(got, want))
			}
			if got := p.Events(); got != "made get data eof lost" {
				t.Errorf("events %q", got)
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			// The EOF read takes a buffer it never fills; every other
			// buffer was updated once.
			if p.gets != p.updates+1 {
				t.Fatalf("%d get_buffer calls, %d buffer_updated", p.gets, p.updates)
			}
			// Each hint is what the kernel held (FIONREAD): the read got at
			// least that much of it, or the whole buffer. The EOF read's
			// hint is -1: nothing was held.
			for i, n := range p.ns {
				h, size := p.hints[i], p.sizes[i]
				if h < 1 || n < min(h, size) {
					t.Fatalf("get_buffer #%d: hint %d, a %d-byte buffer, buffer_updated(%d)", i+1, h, size, n)
				}
			}
			if h := p.hints[len(p.hints)-1]; h != -1 {
				t.Errorf("the EOF read's get_buffer had hint %d, want -1", h)
			}
			if p.updates < total/max(sizes[len(sizes)-1], 1000) {
				t.Errorf("only %d buffer_updated calls for %d bytes", p.updates, total)
			}
			if n := e.readers(); n != 0 {
				t.Errorf("%d sockets still in the epoll set", n)
			}
		})
	}
}

// TestBufferedCopy: TLS (both modes) and direct-mode plain TCP copy what
// they read or decrypt into get_buffer memory: a 1000-byte buffer is
// smaller than a decrypted record or a read, so one chunk takes several
// buffers, and each get_buffer's hint is exactly what is left of it.
func TestBufferedCopy(t *testing.T) {
	cases := []struct {
		name          string
		loop, tlsOn   bool
		sizes         []int
		wantBigChunks bool
	}{
		{"direct plain", false, false, []int{1000}, true},
		{"direct tls", false, true, []int{1000}, true},
		{"loop tls", true, true, []int{1000}, true},
		{"loop tls mixed", true, true, []int{1, 333, 20000}, true},
		{"direct tls mixed", false, true, []int{1, 333, 20000}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newRLEnv(t, tc.loop)
			p := newRLProto(e)
			p.bufSizes = tc.sizes
			ln, port := rlListen(t, tc.tlsOn)
			tr, c := e.connect(p, ln, port, tc.tlsOn)
			if e.loop != nil && (watchIDOf(tr) != 0 || e.registered(tr)) {
				t.Fatal("a TLS transport's socket is in the loop's epoll set")
			}
			const total = 3 << 20
			want := rlPattern(0, total)
			errc := sendAll(t, c, want, func(c net.Conn) {
				// Plain: FIN. TLS: close_notify, then wait for ours.
				if tc.tlsOn {
					_ = c.(*tls.Conn).CloseWrite()
					_, _ = io.Copy(io.Discard, c)
				}
				c.Close()
			})
			if err := p.waitLost(); err != nil {
				t.Fatalf("connection_lost(%v)", err)
			}
			if err := <-errc; err != nil {
				t.Fatalf("peer: %v", err)
			}
			if got := p.Data(); !bytes.Equal(got, want) {
				t.Fatalf("stream: %s", firstDiff(got, want))
			}
			if got := p.Events(); got != "made get data eof lost" {
				t.Errorf("events %q", got)
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			if p.gets != p.updates {
				t.Errorf("%d get_buffer calls, %d buffer_updated: the copy path asks only for what it has", p.gets, p.updates)
			}
			left := 0 // what remains of the current chunk
			maxHint := 0
			for i, h := range p.hints {
				if h < 1 {
					t.Fatalf("get_buffer #%d: hint %d, want the bytes waiting", i+1, h)
				}
				if left > 0 && h != left {
					t.Fatalf("get_buffer #%d: hint %d, but %d bytes of the chunk were left", i+1, h, left)
				}
				maxHint = max(maxHint, h)
				if i < len(p.ns) {
					if want := min(h, p.sizes[i]); p.ns[i] != want {
						t.Fatalf("buffer_updated #%d: %d, want min(hint %d, size %d)", i+1, p.ns[i], h, p.sizes[i])
					}
					left = h - p.ns[i]
				}
			}
			if tc.wantBigChunks && maxHint <= 1000 {
				t.Errorf("no chunk was bigger than a 1000-byte buffer (largest %d)", maxHint)
			}
		})
	}
}

// TestEmptyBuffer: a get_buffer that returns nothing (nil or empty) ends the
// connection: connection_lost(ErrEmptyBuffer) exactly once, no
// buffer_updated, no more get_buffer, the socket closed. A protocol that
// closed the transport itself from get_buffer gets connection_lost(nil).
func TestEmptyBuffer(t *testing.T) {
	for _, mode := range []struct {
		name        string
		loop, tlsOn bool
	}{{"loop plain", true, false}, {"direct plain", false, false}, {"loop tls", true, true}, {"direct tls", false, true}} {
		for _, variant := range []string{"nil", "empty", "closed first"} {
			t.Run(mode.name+"/"+variant, func(t *testing.T) {
				e := newRLEnv(t, mode.loop)
				p := newRLProto(e)
				p.bufSizes = []int{1000}
				p.empty = 1
				p.emptyNil = variant == "nil"
				if variant == "closed first" {
					p.onGet = func(tr *Transport) { tr.Close() }
				}
				ln, port := rlListen(t, mode.tlsOn)
				tr, c := e.connect(p, ln, port, mode.tlsOn)
				if _, err := c.Write([]byte("hello, buffer")); err != nil {
					t.Fatal(err)
				}
				// The peer reads until the end (for TLS: answers a
				// close_notify with its own), then closes.
				peerDone := make(chan struct{})
				go func() {
					defer close(peerDone)
					_, _ = io.Copy(io.Discard, c)
					c.Close()
				}()
				err := p.waitLost()
				if variant == "closed first" {
					if err != nil {
						t.Errorf("connection_lost(%v) after the protocol closed the transport, want nil", err)
					}
				} else if !errors.Is(err, ErrEmptyBuffer) || err.Error() != "get_buffer() returned an empty buffer" {
					t.Errorf("connection_lost(%v), want ErrEmptyBuffer", err)
				}
				select {
				case <-peerDone:
				case <-time.After(rlWait):
					t.Fatal("the peer never saw the connection end")
				}
				if e.loop != nil {
					e.pump(50 * time.Millisecond)
					if n := e.readers(); n != 0 {
						t.Errorf("%d sockets left in the epoll set", n)
					}
				} else {
					time.Sleep(50 * time.Millisecond)
				}
				want := "made get lost"
				if mode.tlsOn && variant == "closed first" && p.Events() == "made get eof lost" {
					// The shutdown the protocol started meets the peer's
					// close_notify: asyncio's TLS transport, still
					// flushing, reports it too.
					want = "made get eof lost"
				}
				if got := p.Events(); got != want {
					t.Errorf("events %q, want one get_buffer then connection_lost", got)
				}
				p.mu.Lock()
				if p.gets != 1 || p.updates != 0 || len(p.data) != 0 {
					t.Errorf("%d get_buffer, %d buffer_updated, %d bytes", p.gets, p.updates, len(p.data))
				}
				p.mu.Unlock()
				if !tr.IsClosing() {
					t.Error("IsClosing is false")
				}
			})
		}
	}
}

// TestLoopPauseResumeLockstep: pause_reading takes the socket out of the
// epoll set at once. The peer sends a piece while the transport is paused:
// the socket is readable but the loop's descriptor is not, Dispatch runs
// nothing, and after resume_reading exactly that piece arrives. 200 rounds,
// plain and buffered protocols.
func TestLoopPauseResumeLockstep(t *testing.T) {
	for _, buffered := range []bool{false, true} {
		t.Run(fmt.Sprintf("buffered=%v", buffered), func(t *testing.T) {
			e := newRLEnv(t, true)
			p := newRLProto(e)
			if buffered {
				p.bufSizes = []int{1000, 5000}
			}
			ln, port := rlListen(t, false)
			tr, c := e.connect(p, ln, port, false)
			rng := mrand.New(mrand.NewSource(1))
			sent := 0
			for round := 0; round < 200; round++ {
				tr.PauseReading()
				if tr.IsReading() || watchIDOf(tr) != 0 || e.registered(tr) {
					t.Fatalf("round %d: paused but still watched", round)
				}
				n := 1 + rng.Intn(20000)
				if _, err := c.Write(rlPattern(sent, n)); err != nil {
					t.Fatal(err)
				}
				sent += n
				waitSocketReadable(t, tr.FD())
				if e.loop.Pending() == 0 && e.loopReadable() {
					t.Fatalf("round %d: the loop's descriptor is readable for a paused socket", round)
				}
				if ran := e.dispatch(); ran != 0 {
					t.Fatalf("round %d: Dispatch ran %d events while paused", round, ran)
				}
				before := p.DataLen()
				tr.ResumeReading()
				if p.DataLen() != before {
					t.Fatal("resume_reading delivered from inside the call")
				}
				if !tr.IsReading() || !e.registered(tr) {
					t.Fatalf("round %d: resumed but not watched", round)
				}
				p.waitData(sent)
			}
			e.pump(20 * time.Millisecond)
			if got, want := p.Data(), rlPattern(0, sent); !bytes.Equal(got, want) {
				t.Fatalf("stream: %s", firstDiff(got, want))
			}
			closeWrite(t, c)
			if err := p.waitLost(); err != nil {
				t.Errorf("connection_lost(%v)", err)
			}
			if got := p.Events(); got != wantEvents(buffered, "eof lost") {
				t.Errorf("events %q", got)
			}
		})
	}
}

// TestLoopPauseResumeFlowing: a stream keeps coming while reading is paused
// and resumed many times, from inside the callbacks (a toggle inside
// data_received re-registers the socket under a new id while the old id's
// readiness may still be in the batch), and from another goroutine while
// the loop dispatches. Nothing is lost or delivered twice.
func TestLoopPauseResumeFlowing(t *testing.T) {
	for _, how := range []string{"toggle in callback", "pause in callback", "other goroutine"} {
		for _, buffered := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/buffered=%v", how, buffered), func(t *testing.T) {
				e := newRLEnv(t, true)
				p := newRLProto(e)
				if buffered {
					p.bufSizes = []int{4096, 999, 65536}
				}
				var pausedInCallback atomic.Bool
				switch how {
				case "toggle in callback":
					p.onData = func(tr *Transport) {
						tr.PauseReading()
						tr.ResumeReading()
					}
				case "pause in callback":
					// Every callback pauses: a plain read takes at most
					// 256 KiB, so 4 MiB makes at least 16 rounds.
					p.onData = func(tr *Transport) {
						tr.PauseReading()
						pausedInCallback.Store(true)
					}
				}
				ln, port := rlListen(t, false)
				tr, c := e.connect(p, ln, port, false)
				const total = 4 << 20
				want := rlPattern(0, total)
				stop := make(chan struct{})
				var toggles atomic.Int64
				var wg sync.WaitGroup
				if how == "other goroutine" {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							select {
							case <-stop:
								tr.ResumeReading()
								return
							default:
							}
							tr.PauseReading()
							if toggles.Load()%3 == 0 {
								time.Sleep(50 * time.Microsecond)
							}
							tr.ResumeReading()
							toggles.Add(1)
						}
					}()
				}
				errc := sendAll(t, c, want, func(c net.Conn) { closeWrite(t, c) })
				resumes := 0
				deadline := time.Now().Add(3 * rlWait)
				for {
					if lost, _ := p.Lost(); lost {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("stream not done: %d of %d bytes, events %q", p.DataLen(), total, p.Events())
					}
					e.pump(5 * time.Millisecond)
					if pausedInCallback.Swap(false) {
						before := p.DataLen()
						e.dispatch()
						if p.DataLen() != before || tr.IsReading() {
							t.Fatal("data delivered after pause_reading from data_received")
						}
						resumes++
						tr.ResumeReading()
					}
				}
				close(stop)
				wg.Wait()
				if err := <-errc; err != nil {
					t.Fatalf("peer: %v", err)
				}
				if _, err := p.Lost(); err != nil {
					t.Errorf("connection_lost(%v)", err)
				}
				if got := p.Data(); !bytes.Equal(got, want) {
					t.Fatalf("stream: %s", firstDiff(got, want))
				}
				if got := p.Events(); got != wantEvents(buffered, "eof lost") {
					t.Errorf("events %q", got)
				}
				if how == "pause in callback" && resumes < 10 {
					t.Errorf("only %d pause/resume rounds", resumes)
				}
				t.Logf("%d resumes from the loop, %d toggles from another goroutine", resumes, toggles.Load())
				if n := e.readers(); n != 0 {
					t.Errorf("%d sockets left in the epoll set", n)
				}
			})
		}
	}
}

// TestLoopCloseWithPendingData: close() or abort() while data waits in the
// socket (and the loop's descriptor already reports it): the socket leaves
// the epoll set at once, nothing is delivered, connection_lost(nil) comes
// once and the socket is closed. A readiness report for the old
// registration is ignored, and a new connection whose socket gets the same
// descriptor number gets its own data and nothing else.
func TestLoopCloseWithPendingData(t *testing.T) {
	for _, how := range []string{"close", "abort"} {
		for _, buffered := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/buffered=%v", how, buffered), func(t *testing.T) {
				e := newRLEnv(t, true)
				p := newRLProto(e)
				if buffered {
					p.bufSizes = []int{1000}
				}
				ln, port := rlListen(t, false)
				tr, c := e.connect(p, ln, port, false)
				if _, err := c.Write(rlPattern(0, 64*1024)); err != nil {
					t.Fatal(err)
				}
				fd := tr.FD()
				waitSocketReadable(t, fd)
				deadline := time.Now().Add(rlWait)
				for !e.loopReadable() {
					if time.Now().After(deadline) {
						t.Fatal("the loop's descriptor never reported the data")
					}
					time.Sleep(time.Millisecond)
				}
				oldID := watchIDOf(tr)
				if how == "close" {
					tr.Close()
				} else if !tr.Abort() {
					t.Fatal("Abort reported the connection already ending")
				}
				if watchIDOf(tr) != 0 || e.registered(tr) {
					t.Fatal("still in the epoll set after " + how)
				}
				if err := p.waitLost(); err != nil {
					t.Errorf("connection_lost(%v)", err)
				}
				if got := p.Events(); got != "made lost" {
					t.Errorf("events %q: data was delivered after %s", got, how)
				}
				peerGone(t, c)
				// The descriptor is closed.
				if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != unix.EBADF {
					t.Logf("fd %d: F_GETFD gave %v (reused already?)", fd, err)
				}

				// A stale readiness report for the old registration.
				e.dispatching.Store(true)
				tr.loopReady(oldID)
				e.dispatching.Store(false)

				// A new connection, likely on the same descriptor number.
				p2 := newRLProto(e)
				if buffered {
					p2.bufSizes = []int{1000}
				}
				tr2, c2 := e.connect(p2, ln, port, false)
				if tr2.FD() == fd {
					t.Logf("the new connection reuses fd %d", fd)
				}
				if _, err := c2.Write([]byte("second")); err != nil {
					t.Fatal(err)
				}
				if got := string(p2.waitData(6)); got != "second" {
					t.Errorf("new connection got %q", got)
				}
				// The old transport, told its stale id (or the new one's)
				// while the new socket has data, reads nothing of it.
				if _, err := c2.Write([]byte("third")); err != nil {
					t.Fatal(err)
				}
				waitSocketReadable(t, tr2.FD())
				e.dispatching.Store(true)
				tr.loopReady(oldID)
				tr.loopReady(watchIDOf(tr2))
				e.dispatching.Store(false)
				if got := string(p2.waitData(11)); got != "secondthird" {
					t.Errorf("new connection got %q", got)
				}
				if got := p.Events(); got != "made lost" {
					t.Errorf("old connection events %q", got)
				}
				if n := e.readers(); n != 1 || !e.registered(tr2) {
					t.Errorf("epoll set: %d readers, new transport registered %v", n, e.registered(tr2))
				}
				tr2.Abort()
				if err := p2.waitLost(); err != nil {
					t.Error(err)
				}
			})
		}
	}
}

// TestLoopAbortOtherInBatch: two sockets are ready in the same Dispatch; the
// first one's data_received aborts the other, whose readiness is already in
// the batch: it gets no data, only connection_lost.
func TestLoopAbortOtherInBatch(t *testing.T) {
	e := newRLEnv(t, true)
	ln, port := rlListen(t, false)
	pa, pb := newRLProto(e), newRLProto(e)
	tra, ca := e.connect(pa, ln, port, false)
	trb, cb := e.connect(pb, ln, port, false)
	var aborted atomic.Int32
	pa.onData = func(*Transport) {
		if aborted.CompareAndSwap(0, 1) {
			trb.Abort()
		}
	}
	pb.onData = func(*Transport) {
		if aborted.CompareAndSwap(0, 2) {
			tra.Abort()
		}
	}
	for _, c := range []net.Conn{ca, cb} {
		if _, err := c.Write([]byte("both ready")); err != nil {
			t.Fatal(err)
		}
	}
	waitSocketReadable(t, tra.FD())
	waitSocketReadable(t, trb.FD())
	if ran := e.dispatch(); ran != 1 {
		t.Errorf("Dispatch ran %d events, want one read (the other socket was unwatched)", ran)
	}
	winner, loser := pa, pb
	if aborted.Load() == 2 {
		winner, loser = pb, pa
	}
	if aborted.Load() == 0 {
		t.Fatal("no data was delivered")
	}
	if err := loser.waitLost(); err != nil {
		t.Errorf("connection_lost(%v)", err)
	}
	if got := loser.Events(); got != "made lost" {
		t.Errorf("aborted connection: events %q", got)
	}
	if got := string(winner.Data()); got != "both ready" {
		t.Errorf("other connection got %q", got)
	}
	if winner == pa {
		tra.Abort()
	} else {
		trb.Abort()
	}
	if err := winner.waitLost(); err != nil {
		t.Error(err)
	}
}

// TestLoopEOF: bytes sent just before the FIN all arrive, then
// eof_received, then (eof_received false) connection_lost(nil); with
// eof_received true the transport stays open for writing, its socket (at
// EOF, so readable for ever) is out of the epoll set, and close() ends it.
func TestLoopEOF(t *testing.T) {
	for _, keepOpen := range []bool{false, true} {
		for _, buffered := range []bool{false, true} {
			t.Run(fmt.Sprintf("keepOpen=%v/buffered=%v", keepOpen, buffered), func(t *testing.T) {
				e := newRLEnv(t, true)
				p := newRLProto(e)
				p.keepOpen = keepOpen
				if buffered {
					p.bufSizes = []int{100 << 10}
				}
				ln, port := rlListen(t, false)
				tr, c := e.connect(p, ln, port, false)
				const total = 300 << 10 // more than one 256 KiB read
				want := rlPattern(0, total)
				if err := <-sendAll(t, c, want, func(c net.Conn) { closeWrite(t, c) }); err != nil {
					t.Fatal(err)
				}
				waitSocketReadable(t, tr.FD())
				e.waitFor("eof_received", func() bool { return p.Count("eof") == 1 })
				if got := p.Data(); !bytes.Equal(got, want) {
					t.Fatalf("at eof_received: %s", firstDiff(got, want))
				}
				if !keepOpen {
					if err := p.waitLost(); err != nil {
						t.Errorf("connection_lost(%v)", err)
					}
					if got := p.Events(); got != wantEvents(buffered, "eof lost") {
						t.Errorf("events %q", got)
					}
					peerGone(t, c)
					return
				}
				if tr.IsClosing() || watchIDOf(tr) != 0 || e.registered(tr) {
					t.Fatal("half-open after eof: closing, or still watched")
				}
				e.pump(0)
				if e.loop.Pending() == 0 && e.loopReadable() {
					t.Error("the loop's descriptor stays readable for a socket at EOF")
				}
				tr.ResumeReading() // not paused: a no-op, and it must not re-watch
				if e.registered(tr) {
					t.Error("resume_reading re-watched a socket at EOF")
				}
				if err := tr.Write([]byte("reply")); err != nil {
					t.Fatal(err)
				}
				got := make([]byte, 5)
				if _, err := io.ReadFull(c, got); err != nil || string(got) != "reply" {
					t.Fatalf("peer read %q, %v", got, err)
				}
				if lost, _ := p.Lost(); lost {
					t.Fatal("connection_lost before close")
				}
				tr.Close()
				if err := p.waitLost(); err != nil {
					t.Errorf("connection_lost(%v)", err)
				}
				if got := p.Events(); got != wantEvents(buffered, "eof lost") {
					t.Errorf("events %q", got)
				}
			})
		}
	}
}

// TestLoopCloseWithReaders: Loop.Close refuses while sockets are watched
// (their connections are live) and changes nothing: the loop keeps reading
// them. Once they have ended it closes, and refuses further use.
func TestLoopCloseWithReaders(t *testing.T) {
	e := newRLEnv(t, true)
	ln, port := rlListen(t, false)
	var ps []*rlProto
	var trs []*Transport
	var cs []net.Conn
	for i := 0; i < 3; i++ {
		p := newRLProto(e)
		if i == 1 {
			p.bufSizes = []int{10}
		}
		tr, c := e.connect(p, ln, port, false)
		ps, trs, cs = append(ps, p), append(trs, tr), append(cs, c)
	}
	trs[2].PauseReading()
	if n := e.readers(); n != 2 {
		t.Fatalf("%d readers, want 2 (one is paused)", n)
	}
	if err := e.loop.Close(); !errors.Is(err, ErrLoopBusy) {
		t.Fatalf("Close with watched sockets: %v, want ErrLoopBusy", err)
	}
	for i, c := range cs {
		if _, err := c.Write([]byte(fmt.Sprintf("conn %d", i))); err != nil {
			t.Fatal(err)
		}
	}
	trs[2].ResumeReading()
	for i, p := range ps {
		if got := string(p.waitData(6)); got != fmt.Sprintf("conn %d", i) {
			t.Errorf("conn %d got %q after the refused Close", i, got)
		}
	}
	for _, tr := range trs {
		tr.Abort()
	}
	if n := e.readers(); n != 0 {
		t.Errorf("%d readers after abort", n)
	}
	if err := e.loop.Close(); !errors.Is(err, ErrLoopBusy) {
		t.Fatalf("Close before connection_lost was dispatched: %v, want ErrLoopBusy", err)
	}
	for _, p := range ps {
		if err := p.waitLost(); err != nil {
			t.Error(err)
		}
	}
	if err := e.loop.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := e.loop.Dispatch(0); !errors.Is(err, ErrLoopClosed) {
		t.Errorf("Dispatch after Close: %v", err)
	}
	if _, err := e.loop.Executor(); !errors.Is(err, ErrLoopClosed) {
		t.Errorf("Executor after Close: %v", err)
	}
	if err := e.loop.Close(); !errors.Is(err, ErrLoopClosed) {
		t.Errorf("second Close: %v", err)
	}
	for _, c := range cs {
		peerGone(t, c)
	}
}

// TestLoopReadPanicRecovered: a panic in readReady (the core.read
// failpoint) does not escape Dispatch; it is reported, and the next
// Dispatch reads the data, none lost.
func TestLoopReadPanicRecovered(t *testing.T) {
	var reports atomic.Int32
	SetPanicHandler(func(v any, _ []byte) { reports.Add(1) })
	defer panicHandler.Store(nil)
	e := newRLEnv(t, true)
	p := newRLProto(e)
	ln, port := rlListen(t, false)
	tr, c := e.connect(p, ln, port, false)
	var armed atomic.Bool
	armed.Store(true)
	SetFailpoint(func(name string) {
		if name == "core.read" && armed.CompareAndSwap(true, false) {
			panic("failpoint core.read")
		}
	})
	defer func() { failpoint = nil }()
	if _, err := c.Write([]byte("after the panic")); err != nil {
		t.Fatal(err)
	}
	waitSocketReadable(t, tr.FD())
	e.pump(0)
	if reports.Load() != 1 {
		t.Fatalf("%d panics reported", reports.Load())
	}
	if got := string(p.waitData(15)); got != "after the panic" {
		t.Errorf("data %q", got)
	}
	tr.Close()
	if err := p.waitLost(); err != nil {
		t.Error(err)
	}
}

// TestBufferedPauseMidChunk: on the copy path (TLS, and direct-mode TCP) a
// buffered protocol that pauses reading from buffer_updated gets nothing more
// of the chunk until it resumes, as asyncio's SSL protocol stops at once;
// then the rest comes, in order, with nothing lost.
func TestBufferedPauseMidChunk(t *testing.T) {
	for _, tc := range []struct {
		name        string
		loop, tlsOn bool
	}{{"direct plain", false, false}, {"direct tls", false, true}, {"loop tls", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newRLEnv(t, tc.loop)
			p := newRLProto(e)
			p.bufSizes = []int{1000}
			var paused atomic.Bool
			var whilePaused atomic.Int32
			p.onData = func(tr *Transport) {
				if paused.Load() {
					whilePaused.Add(1)
					return
				}
				paused.Store(true)
				tr.PauseReading()
			}
			ln, port := rlListen(t, tc.tlsOn)
			tr, c := e.connect(p, ln, port, tc.tlsOn)
			const total = 64 << 10
			want := rlPattern(0, total)
			errc := sendAll(t, c, want, func(net.Conn) {})
			e.waitFor("the first buffer_updated", func() bool { return paused.Load() })
			e.pump(200 * time.Millisecond) // time for the rest of the chunk to be pushed, wrongly
			if n := whilePaused.Load(); n != 0 {
				t.Fatalf("%d buffer_updated calls while reading was paused", n)
			}
			if got := p.DataLen(); got != 1000 {
				t.Fatalf("%d bytes delivered while paused, want the first 1000", got)
			}
			paused.Store(false)
			p.onData = nil
			tr.ResumeReading()
			e.waitFor("the whole stream", func() bool { return p.DataLen() >= total })
			if got := p.Data(); !bytes.Equal(got, want) {
				t.Fatalf("stream: %s", firstDiff(got, want))
			}
			if err := <-errc; err != nil {
				t.Fatalf("peer: %v", err)
			}
			tr.Abort()
			_ = p.waitLost()
		})
	}
}

// TestLoopWriterFailsDuringGetBuffer: the peer resets while megabytes wait
// to be sent, and the writer goroutine's send takes the reset while a
// read's get_buffer is running. The read that follows must not happen: it
// would find only an end of file, and deliver eof_received after the
// writer's error. asyncio, on one thread, handles the write error first
// and reads nothing: connection_lost(ECONNRESET), no eof_received.
func TestLoopWriterFailsDuringGetBuffer(t *testing.T) {
	e := newRLEnv(t, true)
	p := newRLProto(e)
	p.bufSizes = []int{64 << 10}
	ln, port := rlListen(t, false)
	tr, c := e.connect(p, ln, port, false)
	if err := tr.Write(make([]byte, 64<<20)); err != nil {
		t.Fatal(err)
	}
	if tr.WriteBufferSize() == 0 {
		t.Fatal("the kernel took every byte: there is no writer")
	}
	var hookErr error
	p.onGet = func(tr *Transport) {
		p.onGet = nil
		if err := c.(*net.TCPConn).SetLinger(0); err != nil {
			hookErr = err
			return
		}
		c.Close()
		deadline := time.Now().Add(rlWait)
		for !tr.IsClosing() {
			if time.Now().After(deadline) {
				hookErr = errors.New("the writer never failed")
				return
			}
			time.Sleep(time.Millisecond)
		}
	}
	if _, err := c.Write([]byte{1}); err != nil { // something to read
		t.Fatal(err)
	}
	err := p.waitLost()
	if hookErr != nil {
		t.Fatal(hookErr)
	}
	if oe, ok := err.(*OSError); !ok || oe.Errno != unix.ECONNRESET {
		t.Errorf("connection_lost(%v), want ECONNRESET", err)
	}
	if got := p.Events(); strings.Contains(got, "eof") || strings.Contains(got, "data") {
		t.Errorf("events %q: a read after the writer's error", got)
	}
}
