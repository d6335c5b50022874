package core

// Tests of the loop-driven connect (connect_loop.go): in loop mode an IP
// literal is dialled from OpenConnection itself and finished in Dispatch,
// with no goroutine. Each test checks what the caller sees (Done, the
// trace, the protocol's events) and, where it is the point, the epoll set.

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ldResults collects Done results.
type ldResults struct {
	mu  sync.Mutex
	res []Result
	e   *rlEnv
}

func (r *ldResults) done(res Result) {
	r.mu.Lock()
	r.res = append(r.res, res)
	r.mu.Unlock()
	r.e.poke()
}

func (r *ldResults) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.res)
}

func (r *ldResults) wait(n int) []Result {
	r.e.t.Helper()
	r.e.waitFor("on_done", func() bool { return r.count() >= n })
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Result(nil), r.res...)
}

func ldOpts(host string, port int) Options {
	ps := strconv.Itoa(port)
	return Options{Host: &host, Port: &ps, Resolver: rlResolver{}}
}

// ldOpen opens a request in loop mode; a lookup would fail (the resolver
// knows nothing), so only the loop-driven path can succeed.
func ldOpen(e *rlEnv, opts Options, p Protocol, r *ldResults) *Request {
	e.t.Helper()
	req, err := OpenConnection(opts, e.executor(), Callbacks{
		Factory: func(*Transport) (Protocol, error) { return p, nil },
		Done:    r.done,
	})
	if err != nil {
		e.t.Fatalf("OpenConnection: %v", err)
	}
	return req
}

// dialsInFlight counts the connects waiting in the loop's epoll set.
func (e *rlEnv) dialsInFlight() int {
	e.loop.mu.Lock()
	defer e.loop.mu.Unlock()
	n := 0
	for _, w := range e.loop.watched {
		if _, ok := w.(*loopDial); ok {
			n++
		}
	}
	return n
}

// stalledPort is a listener whose accept queue is full: a connect to it
// stays under way (its SYN is dropped) until the test ends.
func stalledPort(t *testing.T) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, _ := unix.Getsockname(fd)
	port := sa.(*unix.SockaddrInet4).Port
	addr := &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}
	for i := 0; i < 16; i++ {
		c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(c) })
		_ = unix.Connect(c, addr)
		fds := []unix.PollFd{{Fd: int32(c), Events: unix.POLLOUT}}
		if n, _ := unix.Poll(fds, 200); n == 0 {
			return port // this one hangs: the queue is full
		}
	}
	t.Skip("could not fill a listener's accept queue")
	return 0
}

// TestLoopDialIsSynchronous: in loop mode an IP literal is connected from
// OpenConnection itself (the socket is in the loop's epoll set when it
// returns), and Dispatch finishes it: Done brings a transport whose trace
// has the numeric lookup and one won attempt, and the protocol works.
func TestLoopDialIsSynchronous(t *testing.T) {
	e := newRLEnv(t, true)
	p := newRLProto(e)
	ln, port := rlListen(t, false)
	r := &ldResults{e: e}
	ldOpen(e, ldOpts("127.0.0.1", port), p, r)
	if n := e.dialsInFlight(); n != 1 {
		t.Fatalf("%d connects in the epoll set after OpenConnection, want 1", n)
	}
	res := r.wait(1)[0]
	if res.Err != nil {
		t.Fatalf("Done: %v", res.Err)
	}
	if n := e.dialsInFlight(); n != 0 {
		t.Errorf("%d connects left in the epoll set", n)
	}
	if len(res.Attempts) != 1 || res.Attempts[0].Outcome != AttemptWon || !res.Attempts[0].HasLocal ||
		res.Attempts[0].Remote.Port != port || res.Attempts[0].End < res.Attempts[0].Start {
		t.Errorf("attempts %+v", res.Attempts)
	}
	if len(res.Resolutions) != 1 || res.Resolutions[0].Count != 1 || res.Resolutions[0].End == 0 {
		t.Errorf("resolutions %+v", res.Resolutions)
	}
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if got := p.waitData(5); string(got) != "hello" {
		t.Errorf("data %q", got)
	}
	if sa, ok := res.Transport.Sockname(); !ok || sa != res.Attempts[0].Local {
		t.Errorf("sockname %v, attempt's local %v", sa, res.Attempts[0].Local)
	}
	res.Transport.Close()
	p.waitLost()
	if ev := p.Events(); ev != "made data lost" {
		t.Errorf("events %q", ev)
	}
}

// TestLoopDialRefused: a refused connect fails the request with asyncio's
// words and a refused attempt, and leaves nothing in the epoll set.
func TestLoopDialRefused(t *testing.T) {
	e := newRLEnv(t, true)
	port := refusedPortInternal(t)
	r := &ldResults{e: e}
	ldOpen(e, ldOpts("127.0.0.1", port), newRLProto(e), r)
	res := r.wait(1)[0]
	want := "[Errno 111] Connect call failed ('127.0.0.1', " + strconv.Itoa(port) + ")"
	if res.Err == nil || res.Err.Error() != want {
		t.Fatalf("Done: %v, want %s", res.Err, want)
	}
	if len(res.Attempts) != 1 || res.Attempts[0].Outcome != AttemptRefused || res.Attempts[0].Errno != unix.ECONNREFUSED {
		t.Errorf("attempts %+v", res.Attempts)
	}
	if n := e.dialsInFlight(); n != 0 {
		t.Errorf("%d connects left in the epoll set", n)
	}
}

func refusedPortInternal(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

// TestLoopDialCancelWhilePending: a cancel stops a connect that hangs: Done
// reports the cancel with a cancelled attempt, no protocol callback runs,
// the socket leaves the epoll set, and the loop can then be freed.
func TestLoopDialCancelWhilePending(t *testing.T) {
	e := newRLEnv(t, true)
	port := stalledPort(t)
	r := &ldResults{e: e}
	p := newRLProto(e)
	req := ldOpen(e, ldOpts("127.0.0.1", port), p, r)
	e.pump(50 * time.Millisecond)
	if r.count() != 0 {
		t.Fatalf("Done before the cancel: %+v", r.wait(1)[0])
	}
	if err := e.loop.Close(); !errors.Is(err, ErrLoopBusy) {
		t.Errorf("loop.Close with a connect under way: %v, want ErrLoopBusy", err)
	}
	if !req.Cancel() {
		t.Fatal("Cancel returned false")
	}
	res := r.wait(1)[0]
	if !errors.Is(res.Err, ErrCancelled) {
		t.Fatalf("Done: %v, want ErrCancelled", res.Err)
	}
	if len(res.Attempts) != 1 || res.Attempts[0].Outcome != AttemptCancelled {
		t.Errorf("attempts %+v", res.Attempts)
	}
	if n := e.dialsInFlight(); n != 0 {
		t.Errorf("%d connects left in the epoll set", n)
	}
	if ev := p.Events(); ev != "" {
		t.Errorf("protocol events %q after a cancelled connect", ev)
	}
	if req.Cancel() {
		t.Error("a second Cancel returned true")
	}
}

// TestLoopDialCancelAfterConnect: a cancel that lands after the connect
// finished but before Dispatch saw it still wins: no protocol is made and
// the peer sees the connection closed.
func TestLoopDialCancelAfterConnect(t *testing.T) {
	e := newRLEnv(t, true)
	ln, port := rlListen(t, false)
	r := &ldResults{e: e}
	p := newRLProto(e)
	req := ldOpen(e, ldOpts("127.0.0.1", port), p, r)
	c, err := ln.Accept() // the connect has finished
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The socket is writable now; the cancel's task runs first in Dispatch.
	fds := []unix.PollFd{{Fd: int32(e.loop.FD()), Events: unix.POLLIN}}
	_, _ = unix.Poll(fds, int(rlWait/time.Millisecond))
	req.Cancel()
	res := r.wait(1)[0]
	if !errors.Is(res.Err, ErrCancelled) {
		t.Fatalf("Done: %v, want ErrCancelled", res.Err)
	}
	if ev := p.Events(); ev != "" {
		t.Errorf("protocol events %q", ev)
	}
	peerGone(t, c)
}

// holdOneAccepted accepts one connection on ln and holds it open for
// rlWait, so the connect succeeds and the peer stays quiet.
func holdOneAccepted(ln net.Listener) {
	go func() {
		if c, err := ln.Accept(); err == nil {
			defer c.Close()
			time.Sleep(rlWait)
		}
	}()
}

// TestLoopDialTraceOrder: with a trace function the events come in time
// order, every one of them inside Dispatch and before Done.
func TestLoopDialTraceOrder(t *testing.T) {
	e := newRLEnv(t, true)
	ln, port := rlListen(t, false)
	holdOneAccepted(ln)
	var mu sync.Mutex
	var log []string
	opts := ldOpts("127.0.0.1", port)
	opts.Trace = func(ev TraceEvent) {
		mu.Lock()
		defer mu.Unlock()
		if !e.dispatching.Load() {
			log = append(log, "outside-dispatch")
		}
		log = append(log, [...]string{"?", "resolve-start", "resolve-end", "attempt-start", "attempt-end"}[ev.Kind])
	}
	r := &ldResults{e: e}
	p := newRLProto(e)
	_, err := OpenConnection(opts, e.executor(), Callbacks{
		Factory: func(*Transport) (Protocol, error) { return p, nil },
		Done: func(res Result) {
			mu.Lock()
			log = append(log, "done")
			mu.Unlock()
			r.done(res)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	res := r.wait(1)[0]
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	mu.Lock()
	got := strings.Join(log, " ")
	mu.Unlock()
	want := "resolve-start resolve-end attempt-start attempt-end done"
	if got != want {
		t.Errorf("trace %q, want %q", got, want)
	}
	res.Transport.Abort()
	p.waitLost()
}

// TestLoopDialLocalAddr: a numeric local_addr is bound before the connect;
// a bind that fails gives asyncio's words.
func TestLoopDialLocalAddr(t *testing.T) {
	e := newRLEnv(t, true)
	ln, port := rlListen(t, false)
	holdOneAccepted(ln)
	opts := ldOpts("127.0.0.1", port)
	lh, lp := "127.0.0.1", "0"
	opts.LocalAddr = &Endpoint{Host: &lh, Port: &lp}
	r := &ldResults{e: e}
	p := newRLProto(e)
	ldOpen(e, opts, p, r)
	res := r.wait(1)[0]
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if la := res.Attempts[0].Local; la.Host != "127.0.0.1" || la.Port == 0 {
		t.Errorf("local %+v", la)
	}
	res.Transport.Abort()
	p.waitLost()

	// The listener's own port is taken.
	taken := strconv.Itoa(port)
	opts.LocalAddr = &Endpoint{Host: &lh, Port: &taken}
	r2 := &ldResults{e: e}
	ldOpen(e, opts, newRLProto(e), r2)
	res = r2.wait(1)[0]
	want := "error while attempting to bind on address ('127.0.0.1', " + taken + "): address already in use"
	if res.Err == nil || !strings.HasSuffix(res.Err.Error(), want) {
		t.Errorf("Done: %v, want ...%s", res.Err, want)
	}
}

// TestLoopDialFromOtherThreads: OpenConnection may be called from any
// thread while the owner dispatches (the race detector checks the hand-off
// of the attempt's state to the loop's thread).
func TestLoopDialFromOtherThreads(t *testing.T) {
	e := newRLEnv(t, true)
	ln, port := rlListen(t, false)
	const n = 40
	go func() {
		for i := 0; i < n; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
		time.Sleep(rlWait)
	}()
	r := &ldResults{e: e}
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x, err := e.loop.Executor()
			if err != nil {
				t.Error(err)
				return
			}
			p := newRLProto(e)
			if _, err := OpenConnection(ldOpts("127.0.0.1", port), x, Callbacks{
				Factory: func(*Transport) (Protocol, error) { return p, nil },
				Done:    r.done,
			}); err != nil {
				t.Error(err)
			}
		}()
	}
	results := r.wait(n)
	wg.Wait()
	for _, res := range results {
		if res.Err != nil {
			t.Errorf("Done: %v", res.Err)
			continue
		}
		res.Transport.Abort()
	}
	e.waitFor("every connection lost", func() bool { return e.loop.Live() == 0 })
}

// TestLoopDialTakesOnlyWhatNeedsNoLookup: names, several addresses,
// timeouts and direct mode take the race, not the loop-driven path.
func TestLoopDialTakesOnlyWhatNeedsNoLookup(t *testing.T) {
	e := newRLEnv(t, true)
	x := e.executor()
	defer x.Done()
	ip := testInfo("127.0.0.1", 80)
	with := func(f func(*Options)) *Options {
		o := ldOpts("127.0.0.1", 80)
		o.Dialer = SystemDialer{}
		f(o2(&o))
		return &o
	}
	cases := map[string]struct {
		opts *Options
		exec Executor
		want bool
	}{
		"literal":        {with(func(*Options) {}), x, true},
		"v6 literal":     {with(func(o *Options) { h := "::1"; o.Host = &h }), x, true},
		"one addr_info":  {with(func(o *Options) { o.Host, o.AddrInfos = nil, []AddrInfo{ip} }), x, true},
		"name":           {with(func(o *Options) { h := "localhost"; o.Host = &h }), x, false},
		"two addr_infos": {with(func(o *Options) { o.AddrInfos = []AddrInfo{ip, ip} }), x, false},
		"one SCTP addr_info": {with(func(o *Options) {
			sctp := ip
			sctp.Proto = unix.IPPROTO_SCTP
			o.Host, o.AddrInfos = nil, []AddrInfo{sctp}
		}), x, false},
		"attempt_timeout":   {with(func(o *Options) { o.AttemptTimeout = f64p(1) }), x, false},
		"connect_timeout":   {with(func(o *Options) { o.ConnectTimeout = f64p(1) }), x, false},
		"port out of range": {with(func(o *Options) { p := "70000"; o.Port = &p }), x, false},
		"local name":        {with(func(o *Options) { h, p := "localhost", "0"; o.LocalAddr = &Endpoint{Host: &h, Port: &p} }), x, false},
		"injected dialer":   {with(func(o *Options) { o.Dialer = ldFakeDialer{} }), x, false},
		"direct mode":       {with(func(*Options) {}), NewDirectExecutor(), false},
	}
	for name, c := range cases {
		if _, _, got := loopDialTarget(c.opts, c.exec); got != c.want {
			t.Errorf("%s: loop-driven %v, want %v", name, got, c.want)
		}
	}
}

func o2(o *Options) *Options { return o }

type ldFakeDialer struct{}

func (ldFakeDialer) Dial(context.Context, AddrInfo, []AddrInfo) AttemptResult {
	return AttemptResult{Cancelled: true}
}

func f64p(v float64) *float64 { return &v }
