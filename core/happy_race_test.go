package core

// runRace beyond asyncio: addresses that arrive while the attempts are under
// way (mergeArrivals), the per-attempt timeout, and the live attempt events.

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestMergeArrivals: late addresses join those not yet tried in interleaved
// order, the family of the attempt that started last going after the other.
func TestMergeArrivals(t *testing.T) {
	tests := []struct {
		name    string
		pending []AddrInfo
		batch   []AddrInfo
		last    int
		want    []int
	}{
		{"nothing pending, A after IPv6", nil, []AddrInfo{v4(1), v4(2)}, unix.AF_INET6, []int{p4(1), p4(2)}},
		{"nothing pending, same family as the last", nil, []AddrInfo{v6(1), v6(2)}, unix.AF_INET6, []int{p6(1), p6(2)}},
		{"A joins IPv6: IPv4 next", []AddrInfo{v6(2), v6(3)}, []AddrInfo{v4(1), v4(2)}, unix.AF_INET6,
			[]int{p4(1), p6(2), p4(2), p6(3)}},
		{"AAAA joins IPv4: IPv6 next", []AddrInfo{v4(2), v4(3)}, []AddrInfo{v6(1), v6(2)}, unix.AF_INET,
			[]int{p6(1), p4(2), p6(2), p4(3)}},
		{"more late addresses than pending", []AddrInfo{v4(2)}, []AddrInfo{v6(1), v6(2), v6(3)}, unix.AF_INET,
			[]int{p6(1), p4(2), p6(2), p6(3)}},
		{"one late address, many pending", []AddrInfo{v4(2), v4(3), v4(4)}, []AddrInfo{v6(1)}, unix.AF_INET,
			[]int{p6(1), p4(2), p4(3), p4(4)}},
		{"late batch of the last family goes after", []AddrInfo{v4(2)}, []AddrInfo{v6(1)}, unix.AF_INET6,
			[]int{p4(2), p6(1)}},
		{"nothing started yet: order of appearance", []AddrInfo{v4(1)}, []AddrInfo{v6(1), v6(2)}, 0,
			[]int{p4(1), p6(1), p6(2)}},
		{"empty batch keeps pending", []AddrInfo{v4(2), v4(3)}, nil, unix.AF_INET, []int{p4(2), p4(3)}},
		{"both empty", nil, nil, unix.AF_INET, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pending := append([]AddrInfo(nil), tc.pending...)
			batch := append([]AddrInfo(nil), tc.batch...)
			got := mergeArrivals(pending, batch, tc.last)
			if !same(ports(got), tc.want) {
				t.Errorf("got %v, want %v", ports(got), tc.want)
			}
			// The inputs are left as they were.
			if !same(ports(pending), ports(tc.pending)) || !same(ports(batch), ports(tc.batch)) {
				t.Errorf("inputs changed: pending %v, batch %v", ports(pending), ports(batch))
			}
			if len(got) > 0 && len(pending) > 0 {
				got[0].Addr.Port = -1
				if pending[0].Addr.Port == -1 {
					t.Error("the result shares memory with pending")
				}
			}
		})
	}
}

// lateRace runs runRace with a channel of late addresses the test feeds.
type lateRace struct {
	t      *testing.T
	clock  *fakeClock
	dialer *fakeDialer
	quiet  *quietWatch
	arr    chan []AddrInfo
	cfg    raceConfig
	events []string // from cfg.events, which the race goroutine calls

	done chan struct{}
	out  raceOutcome
	err  error
}

func newLateRace(t *testing.T, infos []AddrInfo, staggered bool, delay time.Duration) *lateRace {
	clock := newFakeClock()
	dialer := newFakeDialer(t, clock)
	r := &lateRace{t: t, clock: clock, dialer: dialer, quiet: newQuietWatch(), arr: make(chan []AddrInfo, 4)}
	r.cfg = raceConfig{infos: infos, staggered: staggered, delay: delay, clock: clock, dialer: dialer, arrivals: r.arr,
		events: func(kind TraceKind, a Attempt) {
			at := a.Start
			if kind == TraceAttemptEnd {
				at = a.End
			}
			r.events = append(r.events, eventText(TraceEvent{Kind: kind, Time: at, Attempt: a}))
		}}
	return r
}

func (r *lateRace) start(ctx context.Context) {
	r.done = make(chan struct{})
	go func() {
		defer close(r.done)
		r.out, r.err = runRace(ctx, r.cfg)
	}()
}

func (r *lateRace) finished() bool {
	r.quiet.wait(r.t)
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

func (r *lateRace) wait() (raceOutcome, error) {
	r.t.Helper()
	select {
	case <-r.done:
		return r.out, r.err
	case <-time.After(waitTimeout):
		r.t.Fatal("runRace did not return")
	}
	return raceOutcome{}, nil
}

// at settles, moves the clock to d and settles again.
func (r *lateRace) at(d time.Duration) {
	r.t.Helper()
	r.quiet.wait(r.t)
	r.clock.Advance(d)
	r.quiet.wait(r.t)
}

func (r *lateRace) dial(port int, at time.Duration) *fakeAttempt {
	r.t.Helper()
	a := r.dialer.expectDial(r.t, port)
	if a.at != at {
		r.t.Errorf("attempt to port %d started at %v, want %v", port, a.at, at)
	}
	return a
}

func (r *lateRace) noDial(when string) {
	r.t.Helper()
	r.quiet.wait(r.t)
	r.dialer.expectNoDial(r.t, when)
}

// TestRaceLateArrivals: how late addresses join a race under way.
func TestRaceLateArrivals(t *testing.T) {
	t.Run("they wait for the delay, then go first", func(t *testing.T) {
		r := newLateRace(t, []AddrInfo{v4(1), v4(2)}, true, ms(250))
		r.start(context.Background())
		r.dial(p4(1), 0)
		r.at(ms(100))
		r.arr <- []AddrInfo{v6(1), v6(2)}
		close(r.arr)
		r.noDial("late addresses wait for the delay")
		r.at(ms(250))
		r.dial(p6(1), ms(250))
		r.at(ms(500))
		r.dial(p4(2), ms(500))
		r.at(ms(750))
		a62 := r.dial(p6(2), ms(750))
		r.at(ms(1000))
		r.noDial("every address tried")
		a62.succeed()
		out, err := r.wait()
		if err != nil || out.winner != a62.sock {
			t.Fatalf("err %v, winner %p", err, out.winner)
		}
		if got := attemptPorts(out.attempts); !same(got, []int{p4(1), p6(1), p4(2), p6(2)}) {
			t.Errorf("order %v", got)
		}
		if n := r.clock.pendingTimers(); n != 0 {
			t.Errorf("%d timers left running", n)
		}
	})

	t.Run("the delay passed with nothing to try: they start on arrival", func(t *testing.T) {
		r := newLateRace(t, []AddrInfo{v4(1)}, true, ms(250))
		r.start(context.Background())
		r.dial(p4(1), 0)
		r.at(ms(250))
		r.noDial("nothing to try at the delay")
		r.at(ms(300))
		r.arr <- []AddrInfo{v6(1), v6(2)}
		r.dial(p6(1), ms(300))
		r.at(ms(549))
		r.noDial("0.249 after the late start")
		r.at(ms(550))
		a62 := r.dial(p6(2), ms(550))
		close(r.arr)
		a62.succeed()
		out, err := r.wait()
		if err != nil || out.winner != a62.sock {
			t.Fatalf("err %v, winner %p", err, out.winner)
		}
	})

	t.Run("the last attempt failed with nothing to try: they start on arrival", func(t *testing.T) {
		for _, staggered := range []bool{true, false} {
			r := newLateRace(t, []AddrInfo{v4(1)}, staggered, ms(250))
			r.start(context.Background())
			a41 := r.dial(p4(1), 0)
			r.at(ms(10))
			a41.fail(refusedAt(v4(1)))
			r.noDial("nothing to try")
			if r.finished() {
				t.Fatal("runRace returned while addresses may still arrive")
			}
			r.at(ms(20))
			r.arr <- []AddrInfo{v6(1)}
			close(r.arr)
			a61 := r.dial(p6(1), ms(20))
			a61.succeed()
			out, err := r.wait()
			if err != nil || out.winner != a61.sock {
				t.Fatalf("staggered %v: err %v, winner %p", staggered, err, out.winner)
			}
		}
	})

	t.Run("sequential: they queue behind the running attempt", func(t *testing.T) {
		r := newLateRace(t, []AddrInfo{v4(1), v4(2)}, false, 0)
		r.start(context.Background())
		a41 := r.dial(p4(1), 0)
		r.arr <- []AddrInfo{v6(1)}
		close(r.arr)
		r.at(ms(5000))
		r.noDial("sequential: A1 still running")
		a41.fail(refusedAt(v4(1)))
		a61 := r.dial(p6(1), ms(5000))
		a61.fail(refusedAt(v6(1)))
		a42 := r.dial(p4(2), ms(5000))
		a42.succeed()
		out, err := r.wait()
		if err != nil || out.winner != a42.sock {
			t.Fatalf("err %v, winner %p", err, out.winner)
		}
		if n := r.clock.timersCreated(); n != 0 {
			t.Errorf("%d timers made without staggering", n)
		}
	})

	t.Run("closed with nothing: the failures are the result", func(t *testing.T) {
		r := newLateRace(t, []AddrInfo{v4(1)}, true, ms(250))
		r.start(context.Background())
		a41 := r.dial(p4(1), 0)
		a41.fail(refusedAt(v4(1)))
		r.noDial("nothing to try")
		close(r.arr)
		out, err := r.wait()
		if err != nil || out.winner != nil {
			t.Fatalf("err %v winner %p", err, out.winner)
		}
		if flat := out.flatErrors(); len(flat) != 1 || flat[0].Error() != refusedAt(v4(1)).Error() {
			t.Errorf("errors %v", flat)
		}
	})

	t.Run("after a winner they start nothing", func(t *testing.T) {
		r := newLateRace(t, []AddrInfo{v4(1), v4(2)}, true, ms(250))
		r.dialer.deaf[p4(1)] = true // A1 keeps the race going after the winner
		r.start(context.Background())
		a41 := r.dial(p4(1), 0)
		r.at(ms(250))
		a42 := r.dial(p4(2), ms(250))
		a42.succeed()
		r.noDial("winner")
		r.arr <- []AddrInfo{v6(1)}
		r.noDial("an arrival after the winner")
		if r.finished() {
			t.Fatal("runRace returned before A1 finished")
		}
		a41.fail(refusedAt(v4(1)))
		out, err := r.wait()
		if err != nil || out.winner != a42.sock || r.dialer.dialCount() != 2 {
			t.Fatalf("err %v, winner %p, %d dials", err, out.winner, r.dialer.dialCount())
		}
	})

	t.Run("cancelled while waiting for them", func(t *testing.T) {
		r := newLateRace(t, []AddrInfo{v4(1)}, true, ms(250))
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		r.start(ctx)
		a41 := r.dial(p4(1), 0)
		a41.fail(refusedAt(v4(1)))
		r.noDial("nothing to try")
		cancel()
		if _, err := r.wait(); err != ErrCancelled {
			t.Fatalf("err %v, want ErrCancelled", err)
		}
		r.arr <- []AddrInfo{v6(1)}
		r.noDial("after cancellation")
	})
}

// TestRaceTieSuccessAndArrival: a success is in hand when the delay timer
// fires, when late addresses arrive while a start is owed (the delay passed
// with nothing to try), or when both happen together. The success wins and
// nothing new starts (trio PR 632). The race loop is held while they all
// become ready; its select then sees them together and picks at random, so
// each case is repeated.
func TestRaceTieSuccessAndArrival(t *testing.T) {
	cases := []struct {
		name  string
		owed  bool // let the delay pass with nothing to try first
		timer bool // the delay timer fires with the success
		late  bool // late addresses arrive with the success
	}{
		{"arrival while a start is owed", true, false, true},
		{"delay timer while addresses may still arrive", false, true, false},
		{"delay timer and arrival together", false, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for iter := 0; iter < 20; iter++ {
				infos := []AddrInfo{v4(1), v4(2)}
				if !tc.owed {
					infos = append(infos, v4(3))
				}
				r := newLateRace(t, infos, true, ms(200))
				r.start(context.Background())
				a41 := r.dial(p4(1), 0)
				r.at(ms(200))
				a42 := r.dial(p4(2), ms(200)) // its delay timer is due at 0.4
				if tc.owed {
					r.at(ms(400)) // the delay passes with nothing to try: a start is owed
					r.noDial("nothing to try at 0.4")
				}

				hold := r.clock.holdNextNow()
				if tc.owed {
					r.clock.Advance(ms(500))
				} else {
					r.clock.Advance(ms(300)) // before A2's delay ends
				}
				a41.fail(refusedAt(v4(1))) // the loop takes this result and blocks reading the clock
				select {
				case <-hold.entered:
				case <-time.After(waitTimeout):
					t.Fatal("the race loop never read the clock")
				}
				a42.succeed() // the success arrives...
				<-a42.returned
				r.quiet.wait(t)
				if tc.timer {
					r.clock.Advance(ms(400)) // ...just before the delay fires
				}
				if tc.late {
					r.arr <- []AddrInfo{v6(1)} // ...with late addresses
				}
				close(hold.release)

				out, err := r.wait()
				if err != nil {
					t.Fatal(err)
				}
				r.dialer.expectNoDial(t, fmt.Sprintf("iteration %d", iter))
				if out.winner != a42.sock || r.dialer.dialCount() != 2 {
					t.Fatalf("iteration %d: %d Dial calls, want 2 and A2 the winner", iter, r.dialer.dialCount())
				}
				if got := attemptOutcomes(out.attempts); !same(got, []AttemptOutcome{AttemptRefused, AttemptWon}) {
					t.Fatalf("iteration %d: outcomes %v", iter, got)
				}
				checkOpen(t, a42)
			}
		})
	}
}

// TestRaceAttemptTimeout: the per-attempt timeout gives up on a hanging
// attempt, separately from the Happy Eyeballs delay.
func TestRaceAttemptTimeout(t *testing.T) {
	t.Run("the latest attempt times out: the next starts at once", func(t *testing.T) {
		r := newLateRace(t, []AddrInfo{v4(1), v4(2)}, false, 0)
		r.cfg.arrivals = nil
		r.cfg.attemptTimeout = time.Second
		r.start(context.Background())
		a41 := r.dial(p4(1), 0)
		r.at(ms(999))
		r.noDial("0.999 s")
		select {
		case <-a41.sawCancel:
			t.Fatal("A1 was stopped before its timeout")
		default:
		}
		r.at(ms(1000))
		a42 := r.dial(p4(2), ms(1000))
		<-a41.sawCancel
		checkClosed(t, a41)
		a42.succeed()
		out, err := r.wait()
		if err != nil || out.winner != a42.sock {
			t.Fatalf("err %v winner %p", err, out.winner)
		}
		a := out.attempts[0]
		if a.Outcome != AttemptTimedOut || a.Errno != unix.ETIMEDOUT || a.End != ms(1000) {
			t.Errorf("A1 %+v", a)
		}
		if want := "[Errno 110] Connect call failed ('192.0.2.1', 41)"; a.Err == nil || a.Err.Error() != want {
			t.Errorf("A1 error %v, want %q", a.Err, want)
		}
		var oe *OSError
		if !errors.As(a.Err, &oe) || oe.Addr == nil || oe.Addr.Port != p4(1) || !errors.Is(a.Err, unix.ETIMEDOUT) {
			t.Errorf("A1 error %#v", a.Err)
		}
		if flat := out.flatErrors(); len(flat) != 1 || flat[0] != a.Err {
			t.Errorf("errors %v", flat)
		}
		r.quiet.wait(t) // the attempt timeout's goroutine stops its timer once runRace cancelled the attempt
		if n := r.clock.pendingTimers(); n != 0 {
			t.Errorf("%d timers left running", n)
		}
	})

	t.Run("separate from the delay: 0.25 and 1.0", func(t *testing.T) {
		r := newLateRace(t, []AddrInfo{v4(1), v4(2), v4(3)}, true, ms(250))
		r.cfg.arrivals = nil
		r.cfg.attemptTimeout = time.Second
		r.start(context.Background())
		a41 := r.dial(p4(1), 0)
		r.at(ms(250))
		r.dial(p4(2), ms(250)) // the delay, not the timeout, starts attempt 2
		r.at(ms(500))
		r.dial(p4(3), ms(500))
		r.at(ms(999))
		select {
		case <-a41.sawCancel:
			t.Fatal("attempt 1 was stopped before 1.0 s")
		default:
		}
		r.at(ms(1000))
		<-a41.sawCancel // attempt 1 ran until its own timeout
		r.noDial("1.0 s")
		r.at(ms(1250))
		r.at(ms(1500))
		out, err := r.wait()
		if err != nil || out.winner != nil {
			t.Fatalf("err %v winner %p", err, out.winner)
		}
		if got := attemptOutcomes(out.attempts); !same(got, []AttemptOutcome{AttemptTimedOut, AttemptTimedOut, AttemptTimedOut}) {
			t.Errorf("outcomes %v", got)
		}
		var ends []time.Duration
		for _, a := range out.attempts {
			ends = append(ends, a.End)
		}
		if !same(ends, []time.Duration{ms(1000), ms(1250), ms(1500)}) {
			t.Errorf("ends %v", ends)
		}
		agg := Aggregate(out.flatErrors(), false)
		want := "Multiple exceptions: [Errno 110] Connect call failed ('192.0.2.1', 41), " +
			"[Errno 110] Connect call failed ('192.0.2.2', 42), [Errno 110] Connect call failed ('192.0.2.3', 43)"
		if agg.Error() != want {
			t.Errorf("aggregate %q\nwant %q", agg, want)
		}
	})

	t.Run("an older attempt timing out starts nothing", func(t *testing.T) {
		r := newLateRace(t, []AddrInfo{v4(1), v4(2), v4(3)}, true, ms(250))
		r.cfg.arrivals = nil
		r.cfg.attemptTimeout = ms(300)
		r.start(context.Background())
		r.dial(p4(1), 0)
		r.at(ms(250))
		a42 := r.dial(p4(2), ms(250))
		r.at(ms(300)) // attempt 1 times out; attempt 2 is the latest
		r.noDial("attempt 1 timed out")
		r.at(ms(500))
		r.dial(p4(3), ms(500))
		a42.succeed()
		out, err := r.wait()
		if err != nil || out.winner != a42.sock {
			t.Fatalf("err %v winner %p", err, out.winner)
		}
		if got := attemptOutcomes(out.attempts); !same(got, []AttemptOutcome{AttemptTimedOut, AttemptWon, AttemptCancelled}) {
			t.Errorf("outcomes %v", got)
		}
	})

	t.Run("a cancelled race is not a timeout", func(t *testing.T) {
		r := newLateRace(t, []AddrInfo{v4(1)}, false, 0)
		r.cfg.arrivals = nil
		r.cfg.attemptTimeout = time.Second
		ctx, cancel := context.WithCancel(context.Background())
		r.start(ctx)
		r.dial(p4(1), 0)
		r.quiet.wait(t)
		cancel()
		out, err := r.wait()
		if err != ErrCancelled || out.attempts[0].Outcome != AttemptCancelled || out.attempts[0].Err != nil {
			t.Errorf("err %v attempts %+v", err, out.attempts)
		}
	})
}

// TestRaceEventsOrder: the race tells each attempt's start and end as they
// happen; an attempt's end comes before the start it causes.
func TestRaceEventsOrder(t *testing.T) {
	r := newLateRace(t, []AddrInfo{v4(1), v4(2), v4(3)}, true, ms(250))
	r.cfg.arrivals = nil
	r.start(context.Background())
	a41 := r.dial(p4(1), 0)
	r.at(ms(100))
	a41.fail(refusedAt(v4(1))) // starts A2 at once
	a42 := r.dial(p4(2), ms(100))
	r.at(ms(350))
	a43 := r.dial(p4(3), ms(350))
	r.at(ms(400))
	a43.succeed()
	out, err := r.wait()
	if err != nil || out.winner != a43.sock {
		t.Fatalf("err %v winner %p", err, out.winner)
	}
	_ = a42
	checkLines(t, "events", r.events, []string{
		"0s attempt-start #0 41",
		"100ms attempt-end #0 41 refused errno=111",
		"100ms attempt-start #1 42",
		"350ms attempt-start #2 43",
		"400ms attempt-end #2 43 won errno=0",
		"400ms attempt-end #1 42 cancelled errno=0",
	})
}
