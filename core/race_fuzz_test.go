package core

// Fuzz test of the staggered race (race.go): runRace against the fake
// clock and a scripted dialer, inside a synctest bubble so that after each
// step of the schedule the test knows the race has done everything that
// step caused. A model of the race, written from asyncio's staggered_race
// and RFC 8305, predicts each attempt's start time and outcome.

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/sys/unix"
)

// What a scripted attempt does.
const (
	behaveNormal     = iota // waits for the test; a cancelled attempt closes its socket
	behaveFailNow           // fails at once with ECONNREFUSED
	behaveSucceedNow        // succeeds at once
	behaveStubborn          // on cancellation it returns its connected socket anyway
	behaveDeaf              // ignores cancellation; waits for the test
)

var behaviourNames = []string{"normal", "fail-now", "succeed-now", "stubborn", "deaf"}

type rfAttempt struct {
	index int
	at    time.Duration
	sock  *Socket
	cmd   chan dialOutcome
}

// scriptDialer is a Dialer whose attempt i (the address with port i) acts as
// behave(i) says. Its sockets wrap eventfds: cheap, and a closed one is seen
// by RawConn.Control failing.
type scriptDialer struct {
	t      *testing.T
	clock  *fakeClock
	behave func(i int) int
	errFor func(i int, errno syscall.Errno) error

	mu       sync.Mutex
	attempts []*rfAttempt
	fresh    []*rfAttempt // started since the test last looked
}

func newEventSocket(t *testing.T) *Socket {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatalf("eventfd: %v", err)
	}
	s, err := newSocket(fd, unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_TCP)
	if err != nil {
		t.Fatalf("newSocket: %v", err)
	}
	return s
}

func sockClosed(s *Socket) bool {
	return s.raw.Control(func(uintptr) {}) != nil
}

func (d *scriptDialer) Dial(ctx context.Context, ai AddrInfo, _ []AddrInfo) AttemptResult {
	i := ai.Addr.Port
	a := &rfAttempt{index: i, at: d.clock.peek(), sock: newEventSocket(d.t), cmd: make(chan dialOutcome, 1)}
	d.mu.Lock()
	d.attempts = append(d.attempts, a)
	d.fresh = append(d.fresh, a)
	d.mu.Unlock()
	finish := func(o dialOutcome) AttemptResult {
		if o.ok {
			return AttemptResult{Sock: a.sock}
		}
		a.sock.Close()
		return AttemptResult{Errors: []error{o.err}}
	}
	switch d.behave(i) {
	case behaveFailNow:
		return finish(dialOutcome{err: d.errFor(i, syscall.ECONNREFUSED)})
	case behaveSucceedNow:
		return finish(dialOutcome{ok: true})
	case behaveDeaf:
		return finish(<-a.cmd)
	}
	select {
	case o := <-a.cmd:
		return finish(o)
	case <-ctx.Done():
		if d.behave(i) == behaveStubborn {
			return AttemptResult{Sock: a.sock}
		}
		a.sock.Close()
		return AttemptResult{Cancelled: true}
	}
}

func (d *scriptDialer) takeFresh() []*rfAttempt {
	d.mu.Lock()
	defer d.mu.Unlock()
	f := d.fresh
	d.fresh = nil
	return f
}

// The model.

type mState int

const (
	mRunning mState = iota
	mWon
	mFailed
	mCancelled
	mTimedOut
)

type mAttempt struct {
	start, end time.Duration
	state      mState
	err        error // the error it failed with
	deadline   time.Duration
	timed      bool // the attempt timeout has fired
	// afterFailure: the previous attempt's failure started this one.
	afterFailure bool
}

type raceModel struct {
	n          int
	staggered  bool
	delay      time.Duration
	timeout    time.Duration
	behave     func(i int) int
	errFor     func(i int, errno syscall.Errno) error
	now        time.Duration
	attempts   []*mAttempt
	winner     int
	cancelled  bool // the request's context was cancelled while the race ran
	timerOn    bool
	timerAt    time.Duration
	returned   bool
	closedWins bool // the winner was closed because of a late cancellation
}

func (m *raceModel) running() []int {
	var r []int
	for i, a := range m.attempts {
		if a.state == mRunning {
			r = append(r, i)
		}
	}
	return r
}

func (m *raceModel) start() {
	if m.winner >= 0 || m.cancelled || len(m.attempts) >= m.n {
		return
	}
	i := len(m.attempts)
	a := &mAttempt{start: m.now, state: mRunning}
	if m.timeout > 0 {
		a.deadline = m.now + m.timeout
	}
	m.attempts = append(m.attempts, a)
	m.timerOn = m.staggered && len(m.attempts) < m.n
	m.timerAt = m.now + m.delay
	switch m.behave(i) {
	case behaveFailNow:
		m.fail(i, m.errFor(i, syscall.ECONNREFUSED))
	case behaveSucceedNow:
		m.succeed(i)
	}
}

func (m *raceModel) end(i int, s mState) {
	m.attempts[i].state = s
	m.attempts[i].end = m.now
}

// settle is called after each step: runRace returns once no attempt runs
// (nothing is left to start then), closing a winner if the request was
// cancelled meanwhile.
func (m *raceModel) settle() {
	if m.returned || len(m.running()) > 0 {
		return
	}
	m.returned = true
	m.timerOn = false
	if m.cancelled && m.winner >= 0 {
		m.attempts[m.winner].state = mCancelled
		m.closedWins = true
	}
}

func (m *raceModel) succeed(i int) {
	if m.winner >= 0 || m.cancelled {
		m.end(i, mCancelled) // a runner-up: the race closes its socket
		return
	}
	m.winner = i
	m.timerOn = false
	m.end(i, mWon)
	for _, j := range m.running() {
		m.cancelAttempt(j)
	}
}

// cancelAttempt is attempt j seeing its context end.
func (m *raceModel) cancelAttempt(j int) {
	switch m.behave(j) {
	case behaveDeaf:
		// Keeps going until the test settles it.
	case behaveStubborn:
		m.succeed(j) // its socket comes back and is closed as a runner-up
	default:
		m.end(j, mCancelled)
	}
}

func (m *raceModel) fail(i int, err error) {
	m.attempts[i].err = err
	m.end(i, mFailed)
	if i == len(m.attempts)-1 {
		m.start()
		if len(m.attempts) > i+1 {
			m.attempts[i+1].afterFailure = true
		}
	}
}

func (m *raceModel) cancel() {
	if m.returned {
		return
	}
	m.cancelled = true
	m.timerOn = false
	for _, j := range m.running() {
		m.cancelAttempt(j)
	}
}

// nextDeadline is the earliest armed timer: the stagger delay or an
// attempt timeout.
func (m *raceModel) nextDeadline() (time.Duration, bool) {
	var at time.Duration
	ok := false
	if m.timerOn && !m.returned {
		at, ok = m.timerAt, true
	}
	for _, a := range m.attempts {
		if m.timeout > 0 && a.state == mRunning && !a.timed && (!ok || a.deadline < at) {
			at, ok = a.deadline, true
		}
	}
	return at, ok
}

// advance moves to "to" (never past a deadline) and fires what is due.
func (m *raceModel) advance(to time.Duration) {
	m.now = to
	for i, a := range m.attempts {
		if m.timeout > 0 && a.state == mRunning && !a.timed && a.deadline == to {
			a.timed = true
			if m.behave(i) == behaveDeaf {
				continue
			}
			a.err = &OSError{Errno: syscall.ETIMEDOUT}
			m.end(i, mTimedOut)
			if i == len(m.attempts)-1 && m.winner < 0 {
				m.start()
			}
		}
	}
	if m.timerOn && m.timerAt == to {
		m.timerOn = false
		m.start()
	}
}

func (m *raceModel) outcome(i int) AttemptOutcome {
	a := m.attempts[i]
	switch a.state {
	case mWon:
		return AttemptWon
	case mCancelled:
		return AttemptCancelled
	case mTimedOut:
		return AttemptTimedOut
	case mFailed:
		switch errnoOf(a.err) {
		case syscall.ECONNREFUSED:
			return AttemptRefused
		case syscall.ETIMEDOUT:
			return AttemptTimedOut
		}
		return AttemptFailed
	}
	return AttemptPending
}

var fuzzErrnos = []syscall.Errno{syscall.ECONNREFUSED, syscall.ETIMEDOUT, syscall.EHOSTUNREACH, syscall.ENETUNREACH}

// FuzzRace: random schedules of successes, failures, delays and
// cancellation. Checked after every step: the attempts started so far, in
// address order, each at the time the model says (the delay after the
// previous start, or at once when the previous attempt failed, whichever
// comes first); the sockets of finished losers are closed and the winner's
// is open. Checked at the end: runRace returns exactly one winner (whose
// socket it hands back open) or the failed attempts' errors in start order
// (or ErrCancelled), every attempt's outcome and end time, one start and
// one end event per attempt, and no goroutine left behind.
func FuzzRace(f *testing.F) {
	f.Add(uint8(3), true, uint8(250), uint8(0), []byte{0, 0, 0}, []byte{0, 249, 0, 0, 2, 0, 1, 1})
	f.Add(uint8(4), false, uint8(0), uint8(0), []byte{1, 0, 1, 0}, []byte{2, 0, 1, 0})
	f.Add(uint8(5), true, uint8(100), uint8(0), []byte{0, 3, 4, 0, 0}, []byte{0, 255, 0, 255, 0, 255, 1, 0, 0, 10, 2, 1})
	f.Add(uint8(4), true, uint8(50), uint8(120), []byte{0, 0, 4, 0}, []byte{0, 255, 0, 255, 0, 255, 0, 255})
	f.Add(uint8(3), true, uint8(10), uint8(0), []byte{0, 4, 0}, []byte{0, 9, 0, 9, 1, 2, 3, 0, 1, 0})
	f.Add(uint8(6), true, uint8(30), uint8(0), []byte{2, 0, 0, 0, 0, 0}, []byte{2, 0, 2, 1, 0, 29, 3, 8, 0, 5})
	f.Add(uint8(2), true, uint8(5), uint8(5), []byte{0, 0}, []byte{0, 4, 0, 1})
	f.Fuzz(func(t *testing.T, nSel uint8, staggered bool, delayMs, timeoutMs uint8, behave, ops []byte) {
		n := 1 + int(nSel)%8
		if len(ops) > 64 {
			ops = ops[:64]
		}
		synctest.Test(t, func(t *testing.T) {
			runRaceSchedule(t, n, staggered, ms(1+int(delayMs)), ms(int(timeoutMs)), behave, ops)
		})
	})
}

func runRaceSchedule(t *testing.T, n int, staggered bool, delay, timeout time.Duration, behaveIn, ops []byte) {
	behaviour := func(i int) int {
		if i >= len(behaveIn) {
			return behaveNormal
		}
		b := int(behaveIn[i]) % 8
		if b > behaveDeaf {
			b = behaveNormal
		}
		if b == behaveStubborn && timeout > 0 {
			// A stubborn attempt would win after its own timeout, at the
			// same instant as the stagger timer may fire: the order of the
			// two is up to the scheduler.
			b = behaveNormal
		}
		return b
	}
	infos := make([]AddrInfo, n)
	remote := make([]SockAddr, n)
	for i := range infos {
		ip := netip.MustParseAddr("192.0.2.1")
		remote[i] = SockAddr{Family: unix.AF_INET, Host: ip.String(), IP: ip, Port: i}
		infos[i] = AddrInfo{Family: unix.AF_INET, Type: unix.SOCK_STREAM, Proto: unix.IPPROTO_TCP, Addr: remote[i]}
	}
	var errMu sync.Mutex
	made := map[string]error{} // one error value per attempt and errno
	errFor := func(i int, errno syscall.Errno) error {
		errMu.Lock()
		defer errMu.Unlock()
		key := fmt.Sprint(i, errno)
		if made[key] == nil {
			a := remote[i]
			made[key] = &OSError{Errno: errno, Text: "Connect call failed " + a.Repr(), Addr: &a}
		}
		return made[key]
	}
	clock := newFakeClock()
	dialer := &scriptDialer{t: t, clock: clock, behave: behaviour, errFor: errFor}
	m := &raceModel{n: n, staggered: staggered, delay: delay, timeout: timeout, behave: behaviour, errFor: errFor, winner: -1}

	var evMu sync.Mutex
	var events []string
	cfg := raceConfig{infos: infos, staggered: staggered, delay: delay, clock: clock, dialer: dialer,
		attemptTimeout: timeout,
		events: func(kind TraceKind, a Attempt) {
			evMu.Lock()
			defer evMu.Unlock()
			k := "start"
			if kind == TraceAttemptEnd {
				k = "end"
			}
			events = append(events, fmt.Sprintf("%s %d", k, a.Index))
		}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	var out raceOutcome
	var raceErr error
	go func() {
		defer close(done)
		out, raceErr = runRace(ctx, cfg)
	}()
	m.start()
	m.settle()

	var seen []*rfAttempt // by index
	var log []string
	fatal := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("n=%d staggered=%v delay=%v timeout=%v behave=%v\nsteps:\n  %s\n%s", n, staggered, delay, timeout,
			func() []string {
				var s []string
				for i := 0; i < n; i++ {
					s = append(s, behaviourNames[behaviour(i)])
				}
				return s
			}(), strings.Join(log, "\n  "), fmt.Sprintf(format, args...))
	}
	check := func() {
		t.Helper()
		synctest.Wait()
		for _, a := range dialer.takeFresh() {
			seen = append(seen, a)
		}
		if len(seen) != len(m.attempts) {
			fatal("%d attempts started, the model says %d", len(seen), len(m.attempts))
		}
		for i, a := range seen {
			if a.index != i {
				fatal("attempt %d went to address %d: not in order", i, a.index)
			}
			if a.at != m.attempts[i].start {
				fatal("attempt %d started at %v, the model says %v", i, a.at, m.attempts[i].start)
			}
			switch st := m.attempts[i].state; {
			case st == mWon && !m.closedWins:
				if sockClosed(a.sock) {
					fatal("the winner's socket (attempt %d) is closed", i)
				}
			case st == mRunning:
				if sockClosed(a.sock) {
					fatal("attempt %d is running but its socket is closed", i)
				}
			default:
				if !sockClosed(a.sock) {
					fatal("attempt %d ended (%v) but its socket is open", i, m.outcome(i))
				}
			}
		}
		select {
		case <-done:
			if !m.returned {
				fatal("runRace returned; the model expects more")
			}
		default:
			if m.returned {
				fatal("runRace has not returned; the model says it is over")
			}
		}
	}
	check()

	settle := func(i int, ok bool, errno syscall.Errno) {
		var err error
		if !ok {
			err = errFor(i, errno)
		}
		seen[i].cmd <- dialOutcome{ok: ok, err: err}
		if ok {
			m.succeed(i)
		} else {
			m.fail(i, err)
		}
	}
	// Every attempt the model has running is blocked on the test's
	// command (a cancelled one has returned, unless it is deaf).
	for k := 0; k+1 < len(ops) && !m.returned; k += 2 {
		op, arg := ops[k]%4, ops[k+1]
		run := m.running()
		switch {
		case op == 0: // time passes, never past the next deadline
			to := m.now + ms(1+int(arg))
			if d, ok := m.nextDeadline(); ok && d < to {
				to = d
			}
			log = append(log, fmt.Sprintf("advance to %v", to))
			clock.Advance(to)
			m.advance(to)
		case (op == 1 || op == 2) && len(run) > 0:
			i := run[int(arg)%len(run)]
			if op == 1 {
				log = append(log, fmt.Sprintf("at %v attempt %d succeeds", m.now, i))
				settle(i, true, 0)
			} else {
				errno := fuzzErrnos[int(arg>>4)%len(fuzzErrnos)]
				log = append(log, fmt.Sprintf("at %v attempt %d fails (%v)", m.now, i, errno))
				settle(i, false, errno)
			}
		case op == 3 && arg%4 == 0:
			log = append(log, fmt.Sprintf("at %v cancel", m.now))
			cancel()
			m.cancel()
		default:
			continue
		}
		m.settle()
		check()
	}
	// Finish: fail what still runs, let the timers fire, until the race
	// is over.
	for guard := 0; !m.returned; guard++ {
		if guard > 10*n+10 {
			fatal("the race does not end")
		}
		if run := m.running(); len(run) > 0 {
			log = append(log, fmt.Sprintf("at %v attempt %d fails (end)", m.now, run[0]))
			settle(run[0], false, syscall.EHOSTUNREACH)
		} else if d, ok := m.nextDeadline(); ok {
			log = append(log, fmt.Sprintf("advance to %v (end)", d))
			clock.Advance(d)
			m.advance(d)
		} else {
			fatal("the model is stuck")
		}
		m.settle()
		check()
	}
	<-done

	// The result.
	if m.cancelled {
		if raceErr != ErrCancelled || out.winner != nil {
			fatal("cancelled race: winner %v, error %v", out.winner != nil, raceErr)
		}
	} else if raceErr != nil {
		fatal("runRace: %v", raceErr)
	}
	if len(out.attempts) != len(m.attempts) || len(out.errors) != len(m.attempts) {
		fatal("%d attempts, %d error lists; the model has %d", len(out.attempts), len(out.errors), len(m.attempts))
	}
	won := 0
	var wantErrs []error
	for i, a := range out.attempts {
		ma := m.attempts[i]
		if a.Index != i || a.Remote != remote[i] || a.Start != ma.start {
			fatal("attempt %d: %+v", i, a)
		}
		if a.End != ma.end {
			fatal("attempt %d ended at %v, the model says %v", i, a.End, ma.end)
		}
		if want := m.outcome(i); a.Outcome != want {
			fatal("attempt %d: outcome %v, the model says %v", i, a.Outcome, want)
		}
		if a.Outcome == AttemptWon {
			won++
			if out.winner != seen[i].sock {
				fatal("the winner is not attempt %d's socket", i)
			}
		}
		switch ma.state {
		case mFailed:
			if len(out.errors[i]) != 1 || out.errors[i][0] != ma.err || a.Err != ma.err {
				fatal("attempt %d: errors %v, want [%v]", i, out.errors[i], ma.err)
			}
			wantErrs = append(wantErrs, ma.err)
		case mTimedOut:
			e := out.errors[i]
			if len(e) != 1 || errnoOf(e[0]) != syscall.ETIMEDOUT || e[0].Error() != "[Errno 110] Connect call failed "+remote[i].Repr() {
				fatal("attempt %d timed out with %v", i, e)
			}
			wantErrs = append(wantErrs, e[0])
		default:
			if len(out.errors[i]) != 0 {
				fatal("attempt %d (%v) has errors %v", i, a.Outcome, out.errors[i])
			}
		}
	}
	if won > 1 || (won == 1) != (out.winner != nil) {
		fatal("%d attempts won, winner socket %v", won, out.winner != nil)
	}
	if out.winner != nil {
		if sockClosed(out.winner) {
			fatal("the winner came back closed")
		}
		out.winner.Close()
	} else if !m.cancelled {
		// No winner: the errors to aggregate are every failure, in start
		// order.
		if !slices.Equal(out.flatErrors(), wantErrs) {
			fatal("flat errors %v, want %v", out.flatErrors(), wantErrs)
		}
		if len(wantErrs) > 0 && Aggregate(out.flatErrors(), false) == nil {
			fatal("no error to raise")
		}
	}
	for i, a := range seen {
		if a.sock != out.winner && !sockClosed(a.sock) {
			fatal("attempt %d's socket was left open", i)
		}
	}
	evMu.Lock()
	defer evMu.Unlock()
	for i := range seen {
		s, e := slices.Index(events, fmt.Sprintf("start %d", i)), slices.Index(events, fmt.Sprintf("end %d", i))
		if s < 0 || e < s || slices.Index(events[s+1:], events[s]) >= 0 || slices.Index(events[e+1:], events[e]) >= 0 {
			fatal("attempt %d: events %v", i, events)
		}
		if m.attempts[i].afterFailure {
			// A failure that started the next attempt is told first.
			if prevEnd := slices.Index(events, fmt.Sprintf("end %d", i-1)); prevEnd > s {
				fatal("attempt %d's start came before attempt %d's end: %v", i, i-1, events)
			}
		}
	}
}
