package core

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// raceHarness runs runRace on its own goroutine against a fake clock and a
// fake dialer. Attempt i goes to 192.0.2.1 port i, so the dialer knows which
// attempt it is serving.
type raceHarness struct {
	t      *testing.T
	clock  *fakeClock
	dialer *fakeDialer
	cfg    raceConfig

	done chan struct{}
	out  raceOutcome
	err  error
}

func newRaceHarness(t *testing.T, n int, staggered bool, delay time.Duration) *raceHarness {
	clock := newFakeClock()
	dialer := newFakeDialer(t, clock)
	infos := make([]AddrInfo, n)
	for i := range infos {
		ip := netip.MustParseAddr("192.0.2.1")
		infos[i] = AddrInfo{Family: unix.AF_INET, Type: unix.SOCK_STREAM, Proto: unix.IPPROTO_TCP,
			Addr: SockAddr{Family: unix.AF_INET, Host: ip.String(), IP: ip, Port: i}}
	}
	return &raceHarness{t: t, clock: clock, dialer: dialer, cfg: raceConfig{
		infos: infos, staggered: staggered, delay: delay, clock: clock, dialer: dialer,
	}}
}

func (h *raceHarness) start(ctx context.Context) {
	h.done = make(chan struct{})
	go func() {
		defer close(h.done)
		h.out, h.err = runRace(ctx, h.cfg)
	}()
}

func (h *raceHarness) finished() bool {
	select {
	case <-h.done:
		return true
	default:
		return false
	}
}

func (h *raceHarness) wait() (raceOutcome, error) {
	h.t.Helper()
	select {
	case <-h.done:
		return h.out, h.err
	case <-time.After(waitTimeout):
		h.t.Fatal("runRace did not return")
	}
	return raceOutcome{}, nil
}

// dial waits for attempt i to start and then for the race loop to settle,
// so that the timer the start arms exists before the test moves the clock.
func (h *raceHarness) dial(i int) *fakeAttempt {
	h.t.Helper()
	a := h.dialer.expectDial(h.t, i)
	waitRaceQuiet(h.t)
	return a
}

// refused is the error a fake attempt fails with.
func refused(i int) error {
	addr := SockAddr{Family: unix.AF_INET, Host: "192.0.2.1", Port: i}
	return &OSError{Errno: unix.ECONNREFUSED, Text: "Connect call failed " + addr.Repr(), Addr: &addr}
}

func outcomes(out raceOutcome) []AttemptOutcome {
	var o []AttemptOutcome
	for _, a := range out.attempts {
		o = append(o, a.Outcome)
	}
	return o
}

func starts(out raceOutcome) []time.Duration {
	var s []time.Duration
	for _, a := range out.attempts {
		s = append(s, a.Start)
	}
	return s
}

func checkOutcomes(t *testing.T, out raceOutcome, want ...AttemptOutcome) {
	t.Helper()
	if got := outcomes(out); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("attempt outcomes = %v, want %v", got, want)
	}
	won := 0
	for _, o := range outcomes(out) {
		if o == AttemptWon {
			won++
		}
	}
	if won > 1 {
		t.Errorf("%d attempts won", won)
	}
}

func checkStarts(t *testing.T, out raceOutcome, want ...time.Duration) {
	t.Helper()
	if got := starts(out); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("attempt start times = %v, want %v", got, want)
	}
}

func checkClosed(t *testing.T, as ...*fakeAttempt) {
	t.Helper()
	for _, a := range as {
		if !peerClosed(t, a.peer) {
			t.Errorf("attempt %d: socket still open", a.index)
		}
	}
}

func checkOpen(t *testing.T, as ...*fakeAttempt) {
	t.Helper()
	for _, a := range as {
		if peerClosed(t, a.peer) {
			t.Errorf("attempt %d: socket closed, want open", a.index)
		}
	}
}

// TestRaceSpecTrace replays the trace of spec 4.2.4 with delay 0.2 s.
func TestRaceSpecTrace(t *testing.T) {
	h := newRaceHarness(t, 5, true, ms(200))
	gate := make(chan struct{})
	h.dialer.cancelGate = gate // the cancelled losers unwind only when the test says so
	h.start(context.Background())

	a0 := h.dial(0) // 0.00: A0 starts and hangs
	h.dialer.expectNoDial(t, "before the delay")

	h.clock.Advance(ms(199))
	waitRaceQuiet(t)
	h.dialer.expectNoDial(t, "at 0.199")

	h.clock.Advance(ms(200)) // 0.20: A1 starts (timer)
	a1 := h.dial(1)

	h.clock.Advance(ms(250)) // 0.25: A1 fails, so A2 starts at once
	a1.fail(refused(1))
	a2 := h.dial(2)

	h.clock.Advance(ms(400)) // A1's timer was cancelled by A2's start
	waitRaceQuiet(t)
	h.dialer.expectNoDial(t, "at 0.40")

	h.clock.Advance(ms(450)) // 0.45: A3 starts (0.2 after A2)
	a3 := h.dial(3)

	h.clock.Advance(ms(650)) // 0.65: A4 starts
	a4 := h.dial(4)

	h.clock.Advance(ms(660)) // 0.66: A4 succeeds
	a4.succeed()

	// Every loser sees its cancellation, and runRace waits for all of them.
	for _, a := range []*fakeAttempt{a0, a2, a3} {
		select {
		case <-a.sawCancel:
		case <-time.After(waitTimeout):
			t.Fatalf("attempt %d was not cancelled", a.index)
		}
	}
	waitRaceQuiet(t)
	if h.finished() {
		t.Fatal("runRace returned before the cancelled attempts finished")
	}
	close(gate)

	out, err := h.wait()
	if err != nil {
		t.Fatalf("runRace: %v", err)
	}
	if out.winner != a4.sock {
		t.Fatalf("winner = %p, want attempt 4's socket %p", out.winner, a4.sock)
	}
	checkClosed(t, a0, a1, a2, a3)
	checkOpen(t, a4)
	checkStarts(t, out, 0, ms(200), ms(250), ms(450), ms(650))
	checkOutcomes(t, out, AttemptCancelled, AttemptRefused, AttemptCancelled, AttemptCancelled, AttemptWon)
	if got := out.attempts[1].End; got != ms(250) {
		t.Errorf("A1 ended at %v, want 250ms", got)
	}
	if got := out.attempts[4].End; got != ms(660) {
		t.Errorf("A4 ended at %v, want 660ms", got)
	}
	if out.attempts[1].Errno != unix.ECONNREFUSED {
		t.Errorf("A1 errno = %v", out.attempts[1].Errno)
	}
	// Cancelled losers add nothing to the aggregate (spec 4.1.2).
	if flat := out.flatErrors(); len(flat) != 1 || flat[0].Error() != refused(1).Error() {
		t.Errorf("flatErrors = %v", flat)
	}
	if n := h.clock.pendingTimers(); n != 0 {
		t.Errorf("%d timers left running", n)
	}
	if n := h.dialer.dialCount(); n != 5 {
		t.Errorf("%d Dial calls, want 5", n)
	}
}

// TestRaceOnlyLatestFailureStartsNext: an older attempt failing starts
// nothing (spec 4.2.3).
func TestRaceOnlyLatestFailureStartsNext(t *testing.T) {
	h := newRaceHarness(t, 4, true, ms(200))
	h.start(context.Background())

	a0 := h.dial(0)
	h.clock.Advance(ms(200))
	a1 := h.dial(1)

	h.clock.Advance(ms(300))
	a0.fail(refused(0)) // older than A1: starts nothing
	waitRaceQuiet(t)
	h.dialer.expectNoDial(t, "after the older attempt A0 failed")

	h.clock.Advance(ms(400)) // 0.2 after A1 started
	a2 := h.dial(2)

	h.clock.Advance(ms(450))
	a1.fail(refused(1)) // now older than A2: starts nothing
	waitRaceQuiet(t)
	h.dialer.expectNoDial(t, "after the older attempt A1 failed")

	h.clock.Advance(ms(500))
	a2.fail(refused(2)) // the latest: A3 starts at once
	a3 := h.dial(3)
	a3.succeed()

	out, err := h.wait()
	if err != nil {
		t.Fatal(err)
	}
	if out.winner != a3.sock {
		t.Fatal("attempt 3 should have won")
	}
	checkStarts(t, out, 0, ms(200), ms(400), ms(500))
	checkOutcomes(t, out, AttemptRefused, AttemptRefused, AttemptRefused, AttemptWon)
	// Errors are kept per attempt in start order.
	var texts []string
	for _, err := range out.flatErrors() {
		texts = append(texts, err.Error())
	}
	want := []string{refused(0).Error(), refused(1).Error(), refused(2).Error()}
	if fmt.Sprint(texts) != fmt.Sprint(want) {
		t.Errorf("flatErrors = %q, want %q", texts, want)
	}
	checkClosed(t, a0, a1, a2)
	checkOpen(t, a3)
}

// TestRaceOneWinnerWhenTwoSucceed: two attempts both succeed; exactly one
// wins and the runner-up's socket is closed before runRace returns.
func TestRaceOneWinnerWhenTwoSucceed(t *testing.T) {
	t.Run("both results already in hand", func(t *testing.T) {
		h := newRaceHarness(t, 3, true, ms(200))
		h.start(context.Background())
		a0 := h.dial(0)
		h.clock.Advance(ms(200))
		a1 := h.dial(1)
		waitRaceQuiet(t)

		// Hold the race loop inside start() of A2, at its clock read, and
		// let A0 and A1 both succeed meanwhile, A0 first.
		hold := h.clock.holdNextNow()
		h.clock.Advance(ms(400))
		select {
		case <-hold.entered:
		case <-time.After(waitTimeout):
			t.Fatal("the race loop never read the clock")
		}
		a0.succeed()
		<-a0.returned
		waitAttemptsSettled(t)
		a1.succeed()
		<-a1.returned
		waitAttemptsSettled(t)
		close(hold.release)

		a2 := h.dialer.expectDial(t, 2)
		out, err := h.wait()
		if err != nil {
			t.Fatal(err)
		}
		if out.winner != a0.sock {
			t.Fatal("the first success (A0) should have won")
		}
		checkOpen(t, a0)
		checkClosed(t, a1, a2)
		checkOutcomes(t, out, AttemptWon, AttemptCancelled, AttemptCancelled)
	})

	t.Run("loser succeeds while being cancelled", func(t *testing.T) {
		h := newRaceHarness(t, 2, true, ms(200))
		h.dialer.stubborn[0] = true // A0 returns its socket even when cancelled
		h.start(context.Background())
		a0 := h.dial(0)
		h.clock.Advance(ms(200))
		a1 := h.dial(1)
		a1.succeed()
		out, err := h.wait()
		if err != nil {
			t.Fatal(err)
		}
		if out.winner != a1.sock {
			t.Fatal("A1 should have won")
		}
		checkOpen(t, a1)
		checkClosed(t, a0) // closed by runRace, not by the attempt
		checkOutcomes(t, out, AttemptCancelled, AttemptWon)
	})
}

// TestRaceTieBreak: a success that is already in hand when the delay fires
// wins, and the timer starts nothing new (trio PR 632). The race loop is
// held while the success is delivered and the timer fires, so that both are
// ready together; the loop's select then picks either first, so the case is
// repeated to exercise both orders.
func TestRaceTieBreak(t *testing.T) {
	for iter := 0; iter < 20; iter++ {
		h := newRaceHarness(t, 3, true, ms(200))
		h.start(context.Background())
		a0 := h.dial(0)
		h.clock.Advance(ms(200))
		a1 := h.dial(1) // A1's timer is due at 0.40
		waitRaceQuiet(t)

		hold := h.clock.holdNextNow()
		h.clock.Advance(ms(300))
		a0.fail(refused(0)) // the loop takes this result and blocks reading the clock
		select {
		case <-hold.entered:
		case <-time.After(waitTimeout):
			t.Fatal("the race loop never read the clock")
		}
		a1.succeed() // the success arrives...
		<-a1.returned
		waitAttemptsSettled(t)
		h.clock.Advance(ms(400)) // ...just before the delay fires
		close(hold.release)

		out, err := h.wait()
		if err != nil {
			t.Fatal(err)
		}
		h.dialer.expectNoDial(t, fmt.Sprintf("iteration %d", iter))
		if n := h.dialer.dialCount(); n != 2 {
			t.Fatalf("iteration %d: %d Dial calls, want 2", iter, n)
		}
		if out.winner != a1.sock {
			t.Fatalf("iteration %d: A1 should have won", iter)
		}
		checkOutcomes(t, out, AttemptRefused, AttemptWon)
		checkOpen(t, a1)
	}
}

// TestRaceSequential: without Happy Eyeballs the attempts run strictly one
// after another; no timer is ever made.
func TestRaceSequential(t *testing.T) {
	h := newRaceHarness(t, 3, false, 0)
	h.start(context.Background())

	a0 := h.dial(0)
	h.clock.Advance(time.Hour)
	waitRaceQuiet(t)
	h.dialer.expectNoDial(t, "while A0 hangs")

	a0.fail(refused(0))
	a1 := h.dial(1)
	h.clock.Advance(2 * time.Hour)
	waitRaceQuiet(t)
	h.dialer.expectNoDial(t, "while A1 hangs")

	a1.fail(refused(1))
	a2 := h.dial(2)
	a2.succeed()

	out, err := h.wait()
	if err != nil {
		t.Fatal(err)
	}
	if out.winner != a2.sock {
		t.Fatal("A2 should have won")
	}
	if n := h.clock.timersCreated(); n != 0 {
		t.Errorf("%d timers made without staggering", n)
	}
	checkStarts(t, out, 0, time.Hour, 2*time.Hour)
	checkOutcomes(t, out, AttemptRefused, AttemptRefused, AttemptWon)
	checkClosed(t, a0, a1)
}

// TestRaceAllFailBackToBack: attempts that fail at once run back to back,
// with no delay between them (spec 4.2.5), staggered or not.
func TestRaceAllFailBackToBack(t *testing.T) {
	for _, staggered := range []bool{true, false} {
		t.Run(fmt.Sprintf("staggered=%v", staggered), func(t *testing.T) {
			h := newRaceHarness(t, 5, staggered, ms(200))
			h.dialer.auto = func(i int) *dialOutcome { return &dialOutcome{err: refused(i)} }
			h.start(context.Background())
			out, err := h.wait()
			if err != nil {
				t.Fatal(err)
			}
			if out.winner != nil {
				t.Fatal("no attempt should win")
			}
			checkStarts(t, out, 0, 0, 0, 0, 0) // the clock never moved
			checkOutcomes(t, out, AttemptRefused, AttemptRefused, AttemptRefused, AttemptRefused, AttemptRefused)
			flat := out.flatErrors()
			if len(flat) != 5 {
				t.Fatalf("flatErrors has %d errors", len(flat))
			}
			for i, err := range flat {
				if err.Error() != refused(i).Error() {
					t.Errorf("error %d = %q", i, err)
				}
			}
			agg := Aggregate(flat, false)
			if !strings.HasPrefix(agg.Error(), "Multiple exceptions: [Errno 111] Connect call failed ('192.0.2.1', 0), ") {
				t.Errorf("aggregate = %q", agg)
			}
			if n := h.clock.pendingTimers(); n != 0 {
				t.Errorf("%d timers left running", n)
			}
			for i := 0; i < 5; i++ {
				checkClosed(t, h.dialer.expectDial(t, i))
			}
		})
	}
}

// TestRaceCancel: cancelling the context stops every attempt, closes every
// socket (even one that succeeded during the cancellation) and gives
// ErrCancelled.
func TestRaceCancel(t *testing.T) {
	h := newRaceHarness(t, 4, true, ms(200))
	h.dialer.stubborn[1] = true
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h.start(ctx)

	a0 := h.dial(0)
	h.clock.Advance(ms(200))
	a1 := h.dial(1)
	h.clock.Advance(ms(400))
	a2 := h.dial(2)
	waitRaceQuiet(t)

	cancel()
	out, err := h.wait()
	if err != ErrCancelled {
		t.Fatalf("err = %v, want ErrCancelled", err)
	}
	if out.winner != nil {
		t.Fatal("a cancelled race has no winner")
	}
	checkClosed(t, a0, a1, a2)
	checkOutcomes(t, out, AttemptCancelled, AttemptCancelled, AttemptCancelled)
	h.clock.Advance(ms(600))
	h.dialer.expectNoDial(t, "after cancellation")
	if n := h.clock.pendingTimers(); n != 0 {
		t.Errorf("%d timers left running", n)
	}
}

// TestRaceCancelAfterWinner: the context is cancelled after a winner was
// chosen but while a loser is still unwinding; the winner's socket is closed
// too and the result is ErrCancelled.
func TestRaceCancelAfterWinner(t *testing.T) {
	h := newRaceHarness(t, 2, true, ms(200))
	h.dialer.deaf[0] = true // A0 ignores cancellation until the test settles it
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h.start(ctx)

	a0 := h.dial(0)
	h.clock.Advance(ms(200))
	a1 := h.dial(1)
	a1.succeed()
	waitRaceQuiet(t)
	if h.finished() {
		t.Fatal("runRace returned while A0 was still running")
	}
	cancel()
	waitRaceQuiet(t)
	a0.fail(refused(0))

	out, err := h.wait()
	if err != ErrCancelled {
		t.Fatalf("err = %v, want ErrCancelled", err)
	}
	if out.winner != nil {
		t.Fatal("a cancelled race hands out no socket")
	}
	checkClosed(t, a0, a1)
	checkOutcomes(t, out, AttemptRefused, AttemptCancelled)
}

// TestRaceCancelledBeforeStart: a context that is already cancelled starts
// nothing.
func TestRaceCancelledBeforeStart(t *testing.T) {
	h := newRaceHarness(t, 3, true, ms(200))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	h.start(ctx)
	out, err := h.wait()
	if err != ErrCancelled {
		t.Fatalf("err = %v, want ErrCancelled", err)
	}
	if len(out.attempts) != 0 || h.dialer.dialCount() != 0 {
		t.Fatalf("%d attempts started", h.dialer.dialCount())
	}
}

// TestRaceAttemptPanics: a panicking dialer is reported and counts as a
// failed attempt; the race goes on.
func TestRaceAttemptPanics(t *testing.T) {
	prev := panicHandler.Load()
	defer panicHandler.Store(prev)
	reported := make(chan any, 4)
	SetPanicHandler(func(v any, _ []byte) { reported <- v })

	h := newRaceHarness(t, 2, false, 0)
	h.dialer.panics[0] = true
	h.start(context.Background())
	h.dialer.expectDial(t, 0)
	a1 := h.dialer.expectDial(t, 1)
	a1.succeed()
	out, err := h.wait()
	if err != nil {
		t.Fatal(err)
	}
	if out.winner != a1.sock {
		t.Fatal("A1 should have won")
	}
	select {
	case v := <-reported:
		if fmt.Sprint(v) != "fake dialer panics on purpose" {
			t.Errorf("reported %v", v)
		}
	default:
		t.Error("the panic was not reported")
	}
	checkOutcomes(t, out, AttemptFailed, AttemptWon)
	if e := out.attempts[0].Err; e == nil || e.Error() != "connection attempt 0 panicked" {
		t.Errorf("A0 error = %v", e)
	}
}
