package core

// Test doubles for the race: a clock the test advances by hand, a dialer
// whose attempts block until the test settles them, and a barrier that waits
// until the race goroutine has nothing left to do.

import (
	"context"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// waitTimeout bounds every wait in these tests: a bug fails the test instead
// of hanging it.
const waitTimeout = 10 * time.Second

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

// ---------------------------------------------------------------------------
// fakeClock

type fakeClock struct {
	mu      sync.Mutex
	now     time.Duration
	timers  []*fakeTimer
	created int
	hold    *clockHold
}

type fakeTimer struct {
	clock    *fakeClock
	c        chan struct{}
	deadline time.Duration
	fired    bool
	stopped  bool
}

// clockHold blocks one Now() call: entered is closed when the call arrives,
// and the call returns once release is closed.
type clockHold struct {
	entered chan struct{}
	release chan struct{}
}

func newFakeClock() *fakeClock { return &fakeClock{} }

func (c *fakeClock) Now() time.Duration {
	c.mu.Lock()
	h := c.hold
	c.hold = nil
	c.mu.Unlock()
	if h != nil {
		close(h.entered)
		<-h.release
	}
	return c.peek()
}

// peek reads the time without being subject to a hold.
func (c *fakeClock) peek() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// holdNextNow makes the next Now() call block until the hold is released.
func (c *fakeClock) holdNextNow() *clockHold {
	h := &clockHold{entered: make(chan struct{}), release: make(chan struct{})}
	c.mu.Lock()
	c.hold = h
	c.mu.Unlock()
	return h
}

func (c *fakeClock) NewTimer(d time.Duration) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{clock: c, c: make(chan struct{}), deadline: c.now + d}
	c.created++
	c.timers = append(c.timers, t)
	if d <= 0 {
		t.fired = true
		close(t.c)
	}
	return t
}

func (t *fakeTimer) C() <-chan struct{} { return t.c }

func (t *fakeTimer) Stop() {
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	t.stopped = true
}

// Advance moves the clock to the absolute time to and fires every timer
// that is due and was not stopped.
func (c *fakeClock) Advance(to time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if to < c.now {
		panic("fakeClock: time goes backwards")
	}
	c.now = to
	for _, t := range c.timers {
		if !t.fired && !t.stopped && t.deadline <= c.now {
			t.fired = true
			close(t.c)
		}
	}
}

// pendingTimers counts timers that are neither fired nor stopped.
func (c *fakeClock) pendingTimers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timers {
		if !t.fired && !t.stopped {
			n++
		}
	}
	return n
}

func (c *fakeClock) timersCreated() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.created
}

// ---------------------------------------------------------------------------
// socket pairs: real *Socket values whose closing the test can observe

// testSocketPair returns a *Socket for one end of an AF_UNIX socketpair and
// the raw descriptor of the other end. Both are closed at the end of the test.
func testSocketPair(t testing.TB) (*Socket, int) {
	t.Helper()
	s, peer, err := makeSocketPair(t)
	if err != nil {
		t.Fatal(err)
	}
	return s, peer
}

// makeSocketPair is testSocketPair for goroutines other than the test's.
func makeSocketPair(t testing.TB) (*Socket, int, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, -1, err
	}
	s, err := newSocket(fds[0], unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		unix.Close(fds[1])
		return nil, -1, err
	}
	t.Cleanup(func() {
		s.Close()
		unix.Close(fds[1])
	})
	return s, fds[1], nil
}

// peerClosed reports whether the socket at the other end of peer has been
// closed: a read on the (non-blocking) peer gives EOF once it is, and EAGAIN
// while it is still open.
func peerClosed(t testing.TB, peer int) bool {
	t.Helper()
	var buf [16]byte
	n, err := unix.Read(peer, buf[:])
	switch {
	case err == unix.EAGAIN:
		return false
	case err == nil && n == 0:
		return true
	}
	t.Fatalf("unexpected read on the peer: n=%d err=%v", n, err)
	return false
}

// ---------------------------------------------------------------------------
// fakeDialer

type dialOutcome struct {
	ok  bool
	err error
}

// fakeAttempt is one Dial call. Its index is the port of its address.
type fakeAttempt struct {
	index     int
	at        time.Duration // the fake time of the Dial call
	sock      *Socket
	peer      int
	cmd       chan dialOutcome
	sawCancel chan struct{} // closed when the attempt saw its context end
	returned  chan struct{} // closed when Dial returned
}

func (a *fakeAttempt) succeed() { a.cmd <- dialOutcome{ok: true} }
func (a *fakeAttempt) fail(err error) {
	a.cmd <- dialOutcome{err: err}
}

type fakeDialer struct {
	t     testing.TB
	clock *fakeClock
	calls chan *fakeAttempt

	// Behaviour, set before the race starts.
	auto       func(index int) *dialOutcome // when it returns non-nil, the attempt ends at once
	stubborn   map[int]bool                 // on cancellation, return the socket as a success
	deaf       map[int]bool                 // ignore cancellation; wait for the test's command
	cancelGate chan struct{}                // cancelled attempts wait for it before unwinding
	panics     map[int]bool                 // panic instead of returning

	mu       sync.Mutex
	attempts []*fakeAttempt
}

func newFakeDialer(t testing.TB, clock *fakeClock) *fakeDialer {
	return &fakeDialer{t: t, clock: clock, calls: make(chan *fakeAttempt, 64),
		stubborn: map[int]bool{}, deaf: map[int]bool{}, panics: map[int]bool{}}
}

func (d *fakeDialer) Dial(ctx context.Context, ai AddrInfo, local []AddrInfo) AttemptResult {
	sock, peer, err := makeSocketPair(d.t)
	if err != nil {
		d.t.Errorf("fake dialer: %v", err)
		return AttemptResult{Errors: []error{err}}
	}
	a := &fakeAttempt{index: ai.Addr.Port, at: d.clock.peek(), sock: sock, peer: peer,
		cmd: make(chan dialOutcome, 1), sawCancel: make(chan struct{}), returned: make(chan struct{})}
	defer close(a.returned)
	d.mu.Lock()
	d.attempts = append(d.attempts, a)
	d.mu.Unlock()
	d.calls <- a

	if d.panics[a.index] {
		sock.Close()
		panic("fake dialer panics on purpose")
	}
	if d.auto != nil {
		if o := d.auto(a.index); o != nil {
			return a.finish(*o)
		}
	}
	if d.deaf[a.index] {
		return a.finish(<-a.cmd)
	}
	select {
	case o := <-a.cmd:
		return a.finish(o)
	case <-ctx.Done():
		close(a.sawCancel)
		if d.cancelGate != nil {
			<-d.cancelGate
		}
		if d.stubborn[a.index] {
			return AttemptResult{Sock: sock}
		}
		sock.Close()
		return AttemptResult{Cancelled: true}
	}
}

func (a *fakeAttempt) finish(o dialOutcome) AttemptResult {
	if o.ok {
		return AttemptResult{Sock: a.sock}
	}
	a.sock.Close() // as _connect_sock closes a failed attempt's socket
	return AttemptResult{Errors: []error{o.err}}
}

// expectDial waits for the next Dial call and checks which attempt it is.
func (d *fakeDialer) expectDial(t testing.TB, index int) *fakeAttempt {
	t.Helper()
	select {
	case a := <-d.calls:
		if a.index != index {
			t.Fatalf("Dial called for attempt %d, want attempt %d", a.index, index)
		}
		return a
	case <-time.After(waitTimeout):
		t.Fatalf("attempt %d was never started", index)
	}
	return nil
}

// expectNoDial checks that no Dial call is pending. Call it after
// waitRaceQuiet, so that an attempt that was going to start has started.
func (d *fakeDialer) expectNoDial(t testing.TB, when string) {
	t.Helper()
	select {
	case a := <-d.calls:
		t.Fatalf("%s: attempt %d was started, want none", when, a.index)
	default:
	}
}

func (d *fakeDialer) dialCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.attempts)
}

// ---------------------------------------------------------------------------
// goroutine barrier

// goroutineStatus is the text between the brackets of a goroutine header:
// "goroutine 7 [select]:" gives "select".
func goroutineStatus(g string) string {
	i := strings.IndexByte(g, '[')
	j := strings.IndexByte(g, ']')
	if i < 0 || j < i {
		return ""
	}
	return g[i+1 : j]
}

func parked(status string) bool {
	return strings.HasPrefix(status, "select") || strings.HasPrefix(status, "chan receive")
}

// raceState inspects every goroutine: loop is true when a runRace loop
// exists and is parked in its select; settled is true when every attempt
// goroutine runRace started is parked inside the fake dialer (so no attempt
// result is on its way and no new attempt is about to call Dial).
func raceState() (loopParked, loopExists, settled bool) {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	settled, loopParked = true, true
	for _, g := range strings.Split(string(buf), "\n\n") {
		status := goroutineStatus(g)
		switch {
		case strings.Contains(g, "goconn/core.runRace("):
			loopExists = true
			if !strings.HasPrefix(status, "select") {
				loopParked = false
			}
		case strings.Contains(g, "created by github.com/goconn/goconn/core.runRace"):
			if !strings.Contains(g, "(*fakeDialer).Dial(") || !parked(status) {
				settled = false
			}
		}
	}
	return loopParked && loopExists, loopExists, settled
}

// waitRaceQuiet waits until the race loop is parked in its select and every
// attempt is parked in the fake dialer: everything the race was going to do
// in response to what the test did so far has been done.
func waitRaceQuiet(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		if loop, _, settled := raceState(); loop && settled {
			return
		}
		time.Sleep(200 * time.Microsecond)
	}
	t.Fatal("the race never became quiet")
}

// waitAttemptsSettled waits until no attempt goroutine is between the fake
// dialer and the race loop: every finished attempt has delivered its result.
func waitAttemptsSettled(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		if _, _, settled := raceState(); settled {
			return
		}
		time.Sleep(200 * time.Microsecond)
	}
	t.Fatal("attempt goroutines never settled")
}
