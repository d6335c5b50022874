package core_test

// Helpers for the loopback integration tests: a protocol that records the
// callback sequence and checks asyncio's contract as it goes, an environment
// that delivers callbacks either directly or through a core.Loop dispatched
// by the test goroutine, and small TCP peers.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/goconn/goconn/capi/libc"
	"github.com/goconn/goconn/core"
	"golang.org/x/sys/unix"
)

const waitTimeout = 10 * time.Second

func str(s string) *string   { return &s }
func f64(f float64) *float64 { return &f }
func i64(i int64) *int64     { return &i }

// ---------------------------------------------------------------------------
// env: direct mode or loop mode

type env struct {
	t      *testing.T
	loop   *core.Loop // nil in direct mode
	notify chan struct{}
}

// modes runs f once in direct mode and once in loop mode.
func modes(t *testing.T, f func(t *testing.T, e *env)) {
	t.Run("direct", func(t *testing.T) { f(t, newEnv(t, false)) })
	t.Run("loop", func(t *testing.T) { f(t, newEnv(t, true)) })
}

func newEnv(t *testing.T, loopMode bool) *env {
	e := &env{t: t, notify: make(chan struct{}, 1)}
	if loopMode {
		l, err := core.NewLoop()
		if err != nil {
			t.Fatal(err)
		}
		e.loop = l
		t.Cleanup(func() {
			if t.Failed() {
				return // a failed test may leave a connection behind
			}
			// Every connection of a finished test has delivered its last
			// callback, so the loop can be freed.
			e.pump(0)
			if err := l.Close(); err != nil {
				t.Errorf("loop.Close: %v (live %d, pending %d)", err, l.Live(), l.Pending())
			}
		})
	}
	return e
}

func (e *env) executor() core.Executor {
	if e.loop == nil {
		return core.NewDirectExecutor()
	}
	x, err := e.loop.Executor()
	if err != nil {
		e.t.Fatal(err)
	}
	return x
}

func (e *env) poke() {
	select {
	case e.notify <- struct{}{}:
	default:
	}
}

// pump waits up to d for the loop's eventfd and runs what is pending. It
// does nothing in direct mode.
func (e *env) pump(d time.Duration) {
	if e.loop == nil {
		return
	}
	fds := []unix.PollFd{{Fd: int32(e.loop.FD()), Events: unix.POLLIN}}
	_, _ = unix.Poll(fds, int(d/time.Millisecond))
	if _, err := e.loop.Dispatch(0); err != nil {
		e.t.Errorf("Dispatch: %v", err)
	}
}

// waitFor waits until cond holds, running the loop in loop mode.
func (e *env) waitFor(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(waitTimeout)
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

// ---------------------------------------------------------------------------
// recorder: a Protocol that records and checks the callback sequence

type recorder struct {
	e *env

	mu       sync.Mutex
	events   []string
	data     []byte
	tr       *core.Transport
	lostErr  error
	paused   bool
	problems []string

	inCall   atomic.Int32
	keepOpen bool                  // what EOFReceived returns
	onMade   func(*core.Transport) // runs inside ConnectionMade
}

func newRecorder(e *env) *recorder {
	r := &recorder{e: e}
	e.t.Cleanup(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, p := range r.problems {
			e.t.Errorf("protocol contract: %s (events %v)", p, r.events)
		}
	})
	return r
}

func (r *recorder) problem(format string, args ...any) {
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
}

// enter checks that callbacks never overlap and records the event.
// PauseWriting in loop mode is exempt from the overlap check: asyncio calls
// it synchronously from write(), which a callback may call.
func (r *recorder) enter(ev string) func() {
	nested := ev == "pause" && r.e.loop != nil
	if !nested && r.inCall.Add(1) != 1 {
		r.mu.Lock()
		r.problem("%s ran while another callback was running", ev)
		r.mu.Unlock()
	}
	r.mu.Lock()
	if len(r.events) > 0 && r.events[len(r.events)-1] == "lost" {
		r.problem("%s after connection_lost", ev)
	}
	if ev != "made" && len(r.events) == 0 {
		r.problem("%s before connection_made", ev)
	}
	if ev != "data" || len(r.events) == 0 || r.events[len(r.events)-1] != "data" {
		r.events = append(r.events, ev) // consecutive data events are recorded once
	}
	r.mu.Unlock()
	return func() {
		if !nested {
			r.inCall.Add(-1)
		}
		r.e.poke()
	}
}

func (r *recorder) ConnectionMade(t *core.Transport) {
	defer r.enter("made")()
	r.mu.Lock()
	if r.count("made") != 1 {
		r.problem("connection_made called twice")
	}
	r.tr = t
	r.mu.Unlock()
	if r.onMade != nil {
		r.onMade(t)
	}
}

func (r *recorder) DataReceived(data []byte) {
	defer r.enter("data")()
	if len(data) == 0 {
		r.mu.Lock()
		r.problem("data_received with no data")
		r.mu.Unlock()
	}
	r.mu.Lock()
	r.data = append(r.data, data...)
	r.mu.Unlock()
}

func (r *recorder) EOFReceived() bool {
	defer r.enter("eof")()
	r.mu.Lock()
	if r.count("eof") != 1 {
		r.problem("eof_received called twice")
	}
	r.mu.Unlock()
	return r.keepOpen
}

func (r *recorder) ConnectionLost(err error) {
	// The error is stored before the event is recorded: a test that sees
	// "lost" (waitLost) must also see its error.
	r.mu.Lock()
	if r.count("lost") == 0 {
		r.lostErr = err
	}
	r.mu.Unlock()
	defer r.enter("lost")()
	r.mu.Lock()
	if r.count("lost") != 1 {
		r.problem("connection_lost called twice")
	}
	r.mu.Unlock()
}

func (r *recorder) PauseWriting() {
	defer r.enter("pause")()
	r.mu.Lock()
	if r.paused {
		r.problem("pause_writing while paused")
	}
	r.paused = true
	r.mu.Unlock()
}

func (r *recorder) ResumeWriting() {
	defer r.enter("resume")()
	r.mu.Lock()
	if !r.paused {
		r.problem("resume_writing while not paused")
	}
	r.paused = false
	r.mu.Unlock()
}

// count is the number of recorded events of one kind; r.mu is held.
func (r *recorder) count(ev string) int {
	n := 0
	for _, e := range r.events {
		if e == ev {
			n++
		}
	}
	return n
}

func (r *recorder) Count(ev string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count(ev)
}

func (r *recorder) Events() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.events, " ")
}

func (r *recorder) Data() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]byte(nil), r.data...)
}

func (r *recorder) DataLen() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.data)
}

func (r *recorder) Lost() (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count("lost") > 0, r.lostErr
}

// waitLost waits for connection_lost and returns its error.
func (r *recorder) waitLost() error {
	r.e.t.Helper()
	r.e.waitFor("connection_lost", func() bool { lost, _ := r.Lost(); return lost })
	_, err := r.Lost()
	return err
}

func (r *recorder) waitData(n int) []byte {
	r.e.t.Helper()
	r.e.waitFor(fmt.Sprintf("%d bytes of data", n), func() bool { return r.DataLen() >= n })
	return r.Data()
}

// ---------------------------------------------------------------------------
// opening connections

// pending is a request whose Done has not been seen yet.
type pending struct {
	e         *env
	req       *core.Request
	mu        sync.Mutex
	results   []core.Result
	factories int
}

func (p *pending) Result() (core.Result, int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.results) == 0 {
		return core.Result{}, 0, false
	}
	return p.results[0], len(p.results), true
}

// wait waits for Done and checks that it came exactly once.
func (p *pending) wait() core.Result {
	p.e.t.Helper()
	p.e.waitFor("on_done", func() bool { _, _, ok := p.Result(); return ok })
	res, n, _ := p.Result()
	if n != 1 {
		p.e.t.Errorf("Done called %d times", n)
	}
	return res
}

// start calls OpenConnection with the recorder as the protocol. A nil
// recorder means the factory must not be called.
func (e *env) start(opts core.Options, r *recorder) *pending {
	e.t.Helper()
	if opts.Resolver == nil && opts.Sock == nil {
		opts.Resolver = libc.Resolver{}
	}
	p := &pending{e: e}
	cb := core.Callbacks{
		Factory: func(t *core.Transport) (core.Protocol, error) {
			p.mu.Lock()
			p.factories++
			n := p.factories
			p.mu.Unlock()
			if n != 1 {
				e.t.Errorf("the protocol factory ran %d times", n)
			}
			if r == nil {
				e.t.Errorf("the protocol factory ran for a request that should fail")
				return nil, core.ErrFactoryFailed
			}
			return r, nil
		},
		Done: func(res core.Result) {
			p.mu.Lock()
			p.results = append(p.results, res)
			p.mu.Unlock()
			e.poke()
		},
	}
	req, err := core.OpenConnection(opts, e.executor(), cb)
	if err != nil {
		e.t.Fatalf("OpenConnection: %v", err)
	}
	p.req = req
	return p
}

// connect opens a connection and waits until it is up.
func (e *env) connect(opts core.Options, r *recorder) *core.Transport {
	e.t.Helper()
	res := e.start(opts, r).wait()
	if res.Err != nil {
		e.t.Fatalf("create_connection failed: %v", res.Err)
	}
	if res.Transport == nil || res.Protocol != core.Protocol(r) {
		e.t.Fatalf("bad result %+v", res)
	}
	// connection_made has always run before create_connection returns.
	if got := r.Events(); !strings.HasPrefix(got, "made") {
		e.t.Fatalf("events at on_done: %q, want connection_made first", got)
	}
	return res.Transport
}

// fail runs a request that must fail and returns its error.
func (e *env) fail(opts core.Options) core.Result {
	e.t.Helper()
	res := e.start(opts, nil).wait()
	if res.Err == nil || res.Transport != nil || res.Protocol != nil {
		e.t.Fatalf("want a failure, got %+v", res)
	}
	return res
}

func tcpOpts(host string, port int) core.Options {
	return core.Options{Host: str(host), Port: str(strconv.Itoa(port))}
}

// ---------------------------------------------------------------------------
// peers

func listen(t *testing.T) (*net.TCPListener, int) {
	t.Helper()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln, ln.Addr().(*net.TCPAddr).Port
}

// listenSmallWindow is listen for a peer that does not read: its accepted
// sockets get a small fixed receive buffer, so the kernel cannot keep
// soaking up what the transport sends while the test waits.
func listenSmallWindow(t *testing.T) (*net.TCPListener, int) {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 8192) })
		if err != nil {
			return err
		}
		return serr
	}}
	l, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := l.(*net.TCPListener)
	t.Cleanup(func() { ln.Close() })
	return ln, ln.Addr().(*net.TCPAddr).Port
}

func accept(t *testing.T, ln *net.TCPListener) *net.TCPConn {
	t.Helper()
	_ = ln.SetDeadline(time.Now().Add(waitTimeout))
	c, err := ln.AcceptTCP()
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(waitTimeout))
	return c
}

// echoServer echoes every connection until the client closes.
func echoServer(t *testing.T) int {
	ln, port := listen(t)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(2 * waitTimeout))
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return port
}

// refusingPort is a port bound on addr but not listening: connecting to it
// is refused. The socket stays bound until the test ends.
func refusingPort(t *testing.T, family int, addr unix.Sockaddr) int {
	t.Helper()
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Skipf("socket(%d): %v", family, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, addr); err != nil {
		t.Skipf("bind %v: %v", addr, err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return a.Port
	case *unix.SockaddrInet6:
		return a.Port
	}
	t.Fatalf("unexpected address %v", sa)
	return 0
}

func refusingPort4(t *testing.T) int {
	return refusingPort(t, unix.AF_INET, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
}

func refusingPort6(t *testing.T) int {
	return refusingPort(t, unix.AF_INET6, &unix.SockaddrInet6{Addr: [16]byte{15: 1}})
}

// readAll reads from c until EOF.
func readAll(t *testing.T, c net.Conn) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("peer read: %v", err)
	}
	return b
}

func readN(t *testing.T, c net.Conn, n int) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("peer read: %v", err)
	}
	return b
}

// pattern is n bytes that are not all alike, so reordering would show.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

// staticResolver answers every lookup with fixed addresses.
type staticResolver []core.AddrInfo

func (s staticResolver) GetAddrInfo(_ context.Context, _, _ *string, _ core.Hints) ([]core.AddrInfo, error) {
	return []core.AddrInfo(s), nil
}

func tcpInfo(host string, port int) core.AddrInfo {
	ip := netip.MustParseAddr(host)
	fam := unix.AF_INET
	if ip.Is6() {
		fam = unix.AF_INET6
	}
	return core.AddrInfo{Family: fam, Type: unix.SOCK_STREAM, Proto: unix.IPPROTO_TCP,
		Addr: core.SockAddr{Family: fam, Host: host, IP: ip, Port: port}}
}
