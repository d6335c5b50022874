package core

// Test doubles for the race: a clock the test advances by hand, a dialer
// whose attempts block until the test settles them, and a barrier that waits
// until the race goroutine has nothing left to do.

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
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
	// timerHook, when set, is called by NewTimer (on the caller's
	// goroutine, after the timer exists and without the lock held), so a
	// test can hold the code right after it armed a timer.
	timerHook func(d time.Duration)
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
	t := &fakeTimer{clock: c, c: make(chan struct{}), deadline: c.now + d}
	c.created++
	c.timers = append(c.timers, t)
	if d <= 0 {
		t.fired = true
		close(t.c)
	}
	hook := c.timerHook
	c.mu.Unlock()
	if hook != nil {
		hook(d)
	}
	return t
}

// setTimerHook installs (or, with nil, removes) the NewTimer hook.
func (c *fakeClock) setTimerHook(h func(d time.Duration)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timerHook = h
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

// ---------------------------------------------------------------------------
// handResolver: lookups that wait until the test answers them

// handLookup is one GetAddrInfo call of a handResolver.
type handLookup struct {
	host, port *string
	hints      Hints
	reply      chan lookupReply
	returned   chan struct{} // closed when GetAddrInfo returned
}

type lookupReply struct {
	infos []AddrInfo
	err   error
}

// answer ends the lookup with these addresses (none: an empty list).
func (l *handLookup) answer(infos ...AddrInfo) { l.reply <- lookupReply{infos: infos} }

// fail ends the lookup with an error.
func (l *handLookup) fail(err error) { l.reply <- lookupReply{err: err} }

// handResolver is a Resolver whose every lookup blocks until the test
// answers it. Lookups are queued per family (hints.Family), so the test
// releases the AAAA and A answers in the order it chooses.
type handResolver struct {
	t        testing.TB
	forbid   bool // any call fails the test (pre-resolved or numeric cases)
	honorCtx bool // a lookup ends with ctx.Err() when its context ends

	mu     sync.Mutex
	queues map[int]chan *handLookup
	calls  int
	stop   chan struct{} // closed at the end of the test: pending lookups fail
}

func newHandResolver(t testing.TB) *handResolver {
	r := &handResolver{t: t, queues: map[int]chan *handLookup{}, stop: make(chan struct{})}
	t.Cleanup(func() { close(r.stop) })
	return r
}

func (r *handResolver) queue(family int) chan *handLookup {
	r.mu.Lock()
	defer r.mu.Unlock()
	q := r.queues[family]
	if q == nil {
		q = make(chan *handLookup, 16)
		r.queues[family] = q
	}
	return q
}

func (r *handResolver) GetAddrInfo(ctx context.Context, host, port *string, hints Hints) ([]AddrInfo, error) {
	r.mu.Lock()
	r.calls++
	r.mu.Unlock()
	if r.forbid {
		h := "None"
		if host != nil {
			h = *host
		}
		r.t.Errorf("the resolver was called for %q (family %d), want no lookup", h, hints.Family)
		return nil, errors.New("unexpected lookup")
	}
	l := &handLookup{host: host, port: port, hints: hints, reply: make(chan lookupReply, 1), returned: make(chan struct{})}
	defer close(l.returned)
	r.queue(hints.Family) <- l
	var ctxDone <-chan struct{}
	if r.honorCtx {
		ctxDone = ctx.Done()
	}
	select {
	case rep := <-l.reply:
		return rep.infos, rep.err
	case <-ctxDone:
		return nil, ctx.Err()
	case <-r.stop:
		return nil, errors.New("the test is over")
	}
}

// expectLookup waits for the next lookup of one family.
func (r *handResolver) expectLookup(t testing.TB, family int) *handLookup {
	t.Helper()
	select {
	case l := <-r.queue(family):
		return l
	case <-time.After(waitTimeout):
		t.Fatalf("no lookup for family %d was made", family)
	}
	return nil
}

// expectNoLookup checks that no lookup of the family is waiting.
func (r *handResolver) expectNoLookup(t testing.TB, family int, when string) {
	t.Helper()
	select {
	case l := <-r.queue(family):
		t.Fatalf("%s: a lookup for family %d (hints %+v) was made, want none", when, family, l.hints)
	default:
	}
}

func (r *handResolver) callCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

// ---------------------------------------------------------------------------
// manualExecutor: callbacks run only when the test runs them

type manualExecutor struct {
	mu     sync.Mutex
	queue  []func()
	dones  int
	posted chan struct{} // poked on every Post
	inTask atomic.Bool   // a task is running (on the test's goroutine)
}

func newManualExecutor() *manualExecutor {
	return &manualExecutor{posted: make(chan struct{}, 1)}
}

func (e *manualExecutor) Post(task func()) {
	e.mu.Lock()
	e.queue = append(e.queue, task)
	e.mu.Unlock()
	select {
	case e.posted <- struct{}{}:
	default:
	}
}

func (e *manualExecutor) Inline() bool { return false }

func (e *manualExecutor) Done() {
	e.mu.Lock()
	e.dones++
	e.mu.Unlock()
}

// runPending runs the queued tasks, and those they queue, on the caller's
// goroutine, and returns how many ran.
func (e *manualExecutor) runPending() int {
	n := 0
	for {
		e.mu.Lock()
		if len(e.queue) == 0 {
			e.mu.Unlock()
			return n
		}
		task := e.queue[0]
		e.queue = e.queue[1:]
		e.mu.Unlock()
		e.inTask.Store(true)
		runSafe(task)
		e.inTask.Store(false)
		n++
	}
}

func (e *manualExecutor) queued() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.queue)
}

// ---------------------------------------------------------------------------
// quietWatch: a barrier for everything the library does in the background

// quietWatch remembers the goroutines that exist when it is made; wait then
// waits until every newer goroutine that runs library code (or was started
// by it) is parked: blocked on a channel, a select, a condition or the
// network poller. A parked goroutine only moves again when something sends,
// closes or fires, so once the watch is quiet, everything the library was
// going to do in response to what the test did so far has been done (a
// lookup answered, an attempt started, a result taken, a callback posted).
type quietWatch struct {
	old map[string]bool
}

func newQuietWatch() *quietWatch {
	q := &quietWatch{old: map[string]bool{}}
	for _, g := range allGoroutines() {
		q.old[goroutineID(g)] = true
	}
	return q
}

func allGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	return strings.Split(string(buf), "\n\n")
}

// goroutineID is the number in "goroutine 7 [select]:".
func goroutineID(g string) string {
	rest, ok := strings.CutPrefix(g, "goroutine ")
	if !ok {
		return ""
	}
	id, _, _ := strings.Cut(rest, " ")
	return id
}

func parkedStatus(status string) bool {
	for _, p := range []string{"select", "chan receive", "chan send", "IO wait", "sync.Cond.Wait"} {
		if strings.HasPrefix(status, p) {
			return true
		}
	}
	return false
}

// busy returns the stack of one goroutine that is not parked yet, or "".
func (q *quietWatch) busy() string {
	gs := allGoroutines()
	for _, g := range gs[1:] { // the first one is the caller
		if q.old[goroutineID(g)] || !strings.Contains(g, "github.com/goconn/goconn/core.") {
			continue
		}
		if !parkedStatus(goroutineStatus(g)) {
			return g
		}
	}
	return ""
}

func (q *quietWatch) wait(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		g := q.busy()
		if g == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the library never became quiet; still busy:\n%s", g)
		}
		time.Sleep(100 * time.Microsecond)
	}
}
