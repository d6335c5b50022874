package core

// RFC 8305 section 3, asynchronous per-family resolution: resolveHappyEyeballs
// on its own, and Request.resolve through OpenConnection with a fake
// resolver whose AAAA and A answers the test releases by hand, the fake
// clock for the Resolution Delay and the fake dialer for the attempts.

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ---------------------------------------------------------------------------
// resolveHappyEyeballs on its own

const aiAddrConfig = 0x20 // glibc's AI_ADDRCONFIG, passed through untouched

type resolveOut struct {
	infos []AddrInfo
	later <-chan []AddrInfo
	err   error
}

// startResolve runs resolveHappyEyeballs for "dual.test" port 443 on its
// own goroutine.
func startResolve(ctx context.Context, r Resolver, delay time.Duration, fafc int, clock Clock, rec *traceRecorder) chan resolveOut {
	out := make(chan resolveOut, 1)
	go func() {
		infos, later, err := resolveHappyEyeballs(ctx, r, Endpoint{Host: str("dual.test"), Port: str("443")},
			unix.IPPROTO_TCP, aiAddrConfig, delay, fafc, clock, rec)
		out <- resolveOut{infos, later, err}
	}()
	return out
}

func waitResolve(t *testing.T, out chan resolveOut) resolveOut {
	t.Helper()
	select {
	case o := <-out:
		return o
	case <-time.After(waitTimeout):
		t.Fatal("resolveHappyEyeballs did not return")
	}
	return resolveOut{}
}

// checkNotReturned checks, once everything is quiet, that the resolution
// has not returned yet.
func checkNotReturned(t *testing.T, q *quietWatch, out chan resolveOut, when string) {
	t.Helper()
	q.wait(t)
	select {
	case o := <-out:
		t.Fatalf("%s: resolveHappyEyeballs returned %v (later %v, err %v), want it still waiting",
			when, ports(o.infos), o.later != nil, o.err)
	default:
	}
}

// readLater reads what the late channel brings until it is closed.
func readLater(t *testing.T, later <-chan []AddrInfo) [][]int {
	t.Helper()
	var batches [][]int
	for {
		select {
		case b, ok := <-later:
			if !ok {
				return batches
			}
			batches = append(batches, ports(b))
		case <-time.After(waitTimeout):
			t.Fatal("the late channel was never closed")
		}
	}
}

// TestHappyResolveDirect: what resolveHappyEyeballs returns to start with,
// and what its late channel brings, for every order of the two answers.
func TestHappyResolveDirect(t *testing.T) {
	const delay = 50 * time.Millisecond

	t.Run("AAAA first: start with it, A comes late", func(t *testing.T) {
		clock, r, q := newFakeClock(), newHandResolver(t), newQuietWatch()
		out := startResolve(context.Background(), r, delay, 1, clock, newTraceRecorder(clock, nil))
		l6 := r.expectLookup(t, unix.AF_INET6)
		l4 := r.expectLookup(t, unix.AF_INET)
		for _, l := range []*handLookup{l6, l4} {
			if *l.host != "dual.test" || *l.port != "443" || l.hints.Type != unix.SOCK_STREAM ||
				l.hints.Proto != unix.IPPROTO_TCP || l.hints.Flags != aiAddrConfig {
				t.Errorf("lookup %q %q hints %+v", *l.host, *l.port, l.hints)
			}
		}
		checkNotReturned(t, q, out, "before any answer")
		l6.answer(v6(1), v6(2))
		o := waitResolve(t, out)
		if o.err != nil || !same(ports(o.infos), []int{p6(1), p6(2)}) || o.later == nil {
			t.Fatalf("got %v later=%v err=%v, want the AAAA addresses and a late channel", ports(o.infos), o.later != nil, o.err)
		}
		if n := clock.timersCreated(); n != 0 {
			t.Errorf("%d timers made: an AAAA answer needs no Resolution Delay", n)
		}
		l4.answer(v4(1), v4(2))
		if got := readLater(t, o.later); !same(got, [][]int{{p4(1), p4(2)}}) {
			t.Errorf("late batches %v", got)
		}
	})

	t.Run("AAAA first, A fails: the late channel closes empty", func(t *testing.T) {
		clock, r := newFakeClock(), newHandResolver(t)
		out := startResolve(context.Background(), r, delay, 1, clock, newTraceRecorder(clock, nil))
		l6 := r.expectLookup(t, unix.AF_INET6)
		l4 := r.expectLookup(t, unix.AF_INET)
		l6.answer(v6(1))
		o := waitResolve(t, out)
		l4.fail(nameErr("Name or service not known"))
		if got := readLater(t, o.later); len(got) != 0 {
			t.Errorf("late batches %v, want none", got)
		}
	})

	for _, fafc := range []int{0, 1, 2} {
		t.Run(fmt.Sprintf("A first, AAAA within the delay, interleave %d", fafc), func(t *testing.T) {
			clock, r, q := newFakeClock(), newHandResolver(t), newQuietWatch()
			out := startResolve(context.Background(), r, delay, fafc, clock, newTraceRecorder(clock, nil))
			l6 := r.expectLookup(t, unix.AF_INET6)
			l4 := r.expectLookup(t, unix.AF_INET)
			l4.answer(v4(1), v4(2))
			q.wait(t)
			clock.Advance(ms(49))
			checkNotReturned(t, q, out, "A answered, 0.049 s")
			l6.answer(v6(1), v6(2), v6(3))
			o := waitResolve(t, out)
			// IPv6 first, then interleaved (RFC 8305 section 4; a First
			// Address Family Count below 1 acts as 1).
			want := []int{p6(1), p4(1), p6(2), p4(2), p6(3)}
			if fafc == 2 {
				want = []int{p6(1), p6(2), p4(1), p6(3), p4(2)}
			}
			if o.err != nil || o.later != nil || !same(ports(o.infos), want) {
				t.Errorf("got %v later=%v err=%v, want %v and no late channel", ports(o.infos), o.later != nil, o.err, want)
			}
			if n := clock.pendingTimers(); n != 0 {
				t.Errorf("%d timers left running", n)
			}
		})
	}

	t.Run("A first, AAAA late: start with A when the delay passes", func(t *testing.T) {
		clock, r, q := newFakeClock(), newHandResolver(t), newQuietWatch()
		out := startResolve(context.Background(), r, delay, 1, clock, newTraceRecorder(clock, nil))
		l6 := r.expectLookup(t, unix.AF_INET6)
		l4 := r.expectLookup(t, unix.AF_INET)
		clock.Advance(ms(10))
		l4.answer(v4(1), v4(2))
		q.wait(t) // the Resolution Delay timer is armed at 0.010
		clock.Advance(ms(59))
		checkNotReturned(t, q, out, "0.049 s after the A answer")
		clock.Advance(ms(60))
		o := waitResolve(t, out)
		if o.err != nil || o.later == nil || !same(ports(o.infos), []int{p4(1), p4(2)}) {
			t.Fatalf("got %v later=%v err=%v", ports(o.infos), o.later != nil, o.err)
		}
		l6.answer(v6(1))
		if got := readLater(t, o.later); !same(got, [][]int{{p6(1)}}) {
			t.Errorf("late batches %v", got)
		}
	})

	t.Run("A first, AAAA empty within the delay: A alone at once", func(t *testing.T) {
		clock, r := newFakeClock(), newHandResolver(t)
		out := startResolve(context.Background(), r, delay, 1, clock, newTraceRecorder(clock, nil))
		l6 := r.expectLookup(t, unix.AF_INET6)
		l4 := r.expectLookup(t, unix.AF_INET)
		l4.answer(v4(1))
		l6.answer()
		o := waitResolve(t, out)
		if o.err != nil || o.later != nil || !same(ports(o.infos), []int{p4(1)}) {
			t.Errorf("got %v later=%v err=%v", ports(o.infos), o.later != nil, o.err)
		}
	})

	t.Run("repeated addresses are dropped", func(t *testing.T) {
		clock, r := newFakeClock(), newHandResolver(t)
		out := startResolve(context.Background(), r, delay, 1, clock, newTraceRecorder(clock, nil))
		l6 := r.expectLookup(t, unix.AF_INET6)
		l4 := r.expectLookup(t, unix.AF_INET)
		again := v6(1)
		again.Addr.Host = "2001:DB8::1" // another spelling of the same address
		l6.answer(v6(1), again, v6(2), v6(1))
		o := waitResolve(t, out)
		if !same(ports(o.infos), []int{p6(1), p6(2)}) {
			t.Errorf("got %v", ports(o.infos))
		}
		l4.answer(v4(1), v4(1))
		if got := readLater(t, o.later); !same(got, [][]int{{p4(1)}}) {
			t.Errorf("late batches %v", got)
		}
	})

	t.Run("cancelled while waiting", func(t *testing.T) {
		for _, stage := range []string{"no answer", "in the Resolution Delay"} {
			clock, r, q := newFakeClock(), newHandResolver(t), newQuietWatch()
			ctx, cancel := context.WithCancel(context.Background())
			out := startResolve(ctx, r, delay, 1, clock, newTraceRecorder(clock, nil))
			r.expectLookup(t, unix.AF_INET6)
			l4 := r.expectLookup(t, unix.AF_INET)
			if stage != "no answer" {
				l4.answer(v4(1))
			}
			checkNotReturned(t, q, out, stage)
			cancel()
			o := waitResolve(t, out)
			if o.err != ErrCancelled || o.infos != nil || o.later != nil {
				t.Errorf("%s: got %v later=%v err=%v, want ErrCancelled", stage, ports(o.infos), o.later != nil, o.err)
			}
		}
	})
}

// TestHappyResolveRecords: each family's lookup is recorded with its start
// and end on the clock, its count and its error.
func TestHappyResolveRecords(t *testing.T) {
	clock, r, q := newFakeClock(), newHandResolver(t), newQuietWatch()
	clock.Advance(ms(1000))
	rec := newTraceRecorder(clock, nil)
	out := startResolve(context.Background(), r, 50*time.Millisecond, 1, clock, rec)
	l6 := r.expectLookup(t, unix.AF_INET6)
	l4 := r.expectLookup(t, unix.AF_INET)
	clock.Advance(ms(1010))
	aErr := nameErr("Temporary failure in name resolution")
	l4.fail(aErr)
	q.wait(t) // the A lookup is recorded as ended at 1.010
	clock.Advance(ms(1030))
	l6.answer(v6(1), v6(2))
	o := waitResolve(t, out)
	if o.err != nil || !same(ports(o.infos), []int{p6(1), p6(2)}) || o.later != nil {
		t.Fatalf("got %v later=%v err=%v", ports(o.infos), o.later != nil, o.err)
	}
	got := rec.finish()
	want := []Resolution{
		{Family: unix.AF_INET6, Start: ms(1000), End: ms(1030), Count: 2},
		{Family: unix.AF_INET, Start: ms(1000), End: ms(1010), Err: aErr},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("resolutions\n got %+v\nwant %+v", got, want)
	}
}

// TestHappyResolutionDelayTie: the AAAA answer and the Resolution Delay
// timer are ready together; the AAAA answer wins, so the attempts start
// with IPv6 and the list is interleaved (the resolution's equivalent of a
// success that lands just before the attempt delay fires). The resolution
// goroutine is held right after it armed the timer while the AAAA answer
// arrives and the timer fires; its select then sees both. Repeated, since
// a select picks at random among ready cases.
func TestHappyResolutionDelayTie(t *testing.T) {
	for _, delay := range []time.Duration{50 * time.Millisecond, 0} {
		for iter := 0; iter < 20; iter++ {
			clock, r, q := newFakeClock(), newHandResolver(t), newQuietWatch()
			armed := make(chan time.Duration, 1)
			release := make(chan struct{})
			clock.setTimerHook(func(d time.Duration) {
				armed <- d
				<-release
			})
			out := startResolve(context.Background(), r, delay, 1, clock, newTraceRecorder(clock, nil))
			l6 := r.expectLookup(t, unix.AF_INET6)
			l4 := r.expectLookup(t, unix.AF_INET)
			l4.answer(v4(1), v4(2))
			select {
			case d := <-armed:
				if d != delay {
					t.Fatalf("Resolution Delay timer of %v, want %v", d, delay)
				}
			case <-time.After(waitTimeout):
				t.Fatal("no Resolution Delay timer was armed")
			}
			l6.answer(v6(1), v6(2))
			<-l6.returned
			q.wait(t) // the AAAA answer is in hand
			clock.Advance(delay)
			close(release)
			o := waitResolve(t, out)
			if o.err != nil || o.later != nil || !same(ports(o.infos), []int{p6(1), p4(1), p6(2), p4(2)}) {
				t.Fatalf("delay %v, iteration %d: got %v later=%v err=%v, want [61 41 62 42] and no late channel",
					delay, iter, ports(o.infos), o.later != nil, o.err)
			}
		}
	}
}

// ---------------------------------------------------------------------------
// Through OpenConnection

// lookups waits for both lookups of an asynchronous resolution.
func (h *heRequest) lookups() (aaaa, a *handLookup) {
	h.t.Helper()
	return h.resolver.expectLookup(h.t, unix.AF_INET6), h.resolver.expectLookup(h.t, unix.AF_INET)
}

func checkAttempts(t *testing.T, res Result, ports []int, starts []time.Duration, outcomes ...AttemptOutcome) {
	t.Helper()
	if got := attemptPorts(res.Attempts); !same(got, ports) {
		t.Errorf("attempt order %v, want %v", got, ports)
	}
	if starts != nil {
		if got := attemptStarts(res.Attempts); !same(got, starts) {
			t.Errorf("attempt starts %v, want %v", got, starts)
		}
	}
	if got := attemptOutcomes(res.Attempts); !same(got, outcomes) {
		t.Errorf("attempt outcomes %v, want %v", got, outcomes)
	}
}

func checkWon(t *testing.T, res Result, a *fakeAttempt) {
	t.Helper()
	if res.Err != nil || res.Transport == nil {
		t.Fatalf("got %+v, want a transport", res)
	}
	if res.Transport.sock != a.sock {
		t.Errorf("the transport is not attempt %d's socket", a.index)
	}
}

// TestHappyAAAAFirst: the AAAA answer starts the attempts at once with the
// IPv6 addresses; the A answer joins later, interleaved: the attempt after
// an IPv6 one is IPv4, each a Happy Eyeballs delay after the last.
func TestHappyAAAAFirst(t *testing.T) {
	h := newHERequest(t)
	h.open()
	l6, l4 := h.lookups()
	h.noDial("before any answer")
	h.clock.Advance(ms(10))
	l6.answer(v6(1), v6(2))
	h.dial(p6(1), ms(10)) // no Resolution Delay after AAAA
	h.noDial("right after AAAA")

	h.at(ms(100))
	l4.answer(v4(1), v4(2))
	h.noDial("A joined: the next attempt waits for the delay")
	h.at(ms(259))
	h.noDial("at 0.259")
	h.at(ms(260))
	h.dial(p4(1), ms(260))
	h.at(ms(510))
	h.dial(p6(2), ms(510))
	h.at(ms(760))
	a42 := h.dial(p4(2), ms(760))
	h.at(ms(800))
	h.noDial("every address tried")
	a42.succeed()
	res := h.wait()
	checkWon(t, res, a42)
	checkAttempts(t, res, []int{p6(1), p4(1), p6(2), p4(2)}, []time.Duration{ms(10), ms(260), ms(510), ms(760)},
		AttemptCancelled, AttemptCancelled, AttemptCancelled, AttemptWon)
	if n := h.resolver.callCount(); n != 2 {
		t.Errorf("%d lookups, want 2", n)
	}
}

// TestHappyAFillsOwedStart: every IPv6 attempt failed while A was still
// being looked up; the A answer starts its first address at once.
func TestHappyAFillsOwedStart(t *testing.T) {
	h := newHERequest(t)
	h.open()
	l6, l4 := h.lookups()
	h.clock.Advance(ms(10))
	l6.answer(v6(1))
	a61 := h.dial(p6(1), ms(10))
	h.at(ms(20))
	a61.fail(refusedAt(v6(1)))
	h.noDial("nothing left to try")
	h.notDone("waiting for A")
	h.at(ms(400))
	l4.answer(v4(1))
	a41 := h.dial(p4(1), ms(400))
	a41.succeed()
	res := h.wait()
	checkWon(t, res, a41)
	checkAttempts(t, res, []int{p6(1), p4(1)}, []time.Duration{ms(10), ms(400)}, AttemptRefused, AttemptWon)
}

// TestHappyAFirstAAAAWithinDelay: A answers first; AAAA answers within the
// Resolution Delay, so the first attempt is IPv6 and the list interleaved.
func TestHappyAFirstAAAAWithinDelay(t *testing.T) {
	h := newHERequest(t)
	h.open()
	l6, l4 := h.lookups()
	h.clock.Advance(ms(10))
	l4.answer(v4(1), v4(2))
	h.noDial("A answered")
	h.at(ms(40))
	h.noDial("0.03 s into the Resolution Delay")
	l6.answer(v6(1), v6(2))
	h.dial(p6(1), ms(40))
	h.at(ms(60)) // when the Resolution Delay would have ended: nothing
	h.noDial("at the end of the Resolution Delay")
	h.at(ms(290))
	h.dial(p4(1), ms(290))
	h.at(ms(540))
	h.dial(p6(2), ms(540))
	h.at(ms(790))
	a42 := h.dial(p4(2), ms(790))
	a42.succeed()
	res := h.wait()
	checkWon(t, res, a42)
	checkAttempts(t, res, []int{p6(1), p4(1), p6(2), p4(2)}, []time.Duration{ms(40), ms(290), ms(540), ms(790)},
		AttemptCancelled, AttemptCancelled, AttemptCancelled, AttemptWon)
	if n := h.clock.pendingTimers(); n != 0 {
		t.Errorf("%d timers left running", n)
	}
}

// TestHappyAFirstAAAALate: A answers first and AAAA only after the
// Resolution Delay: the attempts start with IPv4 exactly when the delay
// passes, and the late IPv6 addresses are tried next, before further IPv4
// ones.
func TestHappyAFirstAAAALate(t *testing.T) {
	h := newHERequest(t)
	h.open()
	l6, l4 := h.lookups()
	h.clock.Advance(ms(10))
	l4.answer(v4(1), v4(2), v4(3))
	h.at(ms(59))
	h.noDial("0.049 s after the A answer")
	h.at(ms(60))
	h.dial(p4(1), ms(60))
	h.at(ms(100))
	l6.answer(v6(1), v6(2))
	h.noDial("AAAA joined: the next attempt waits for the delay")
	h.at(ms(310))
	h.dial(p6(1), ms(310))
	h.at(ms(560))
	h.dial(p4(2), ms(560))
	h.at(ms(810))
	a62 := h.dial(p6(2), ms(810))
	h.at(ms(1060))
	a43 := h.dial(p4(3), ms(1060))
	a43.fail(refusedAt(v4(3)))
	h.settle()
	a62.succeed()
	res := h.wait()
	checkWon(t, res, a62)
	checkAttempts(t, res, []int{p4(1), p6(1), p4(2), p6(2), p4(3)},
		[]time.Duration{ms(60), ms(310), ms(560), ms(810), ms(1060)},
		AttemptCancelled, AttemptCancelled, AttemptCancelled, AttemptWon, AttemptRefused)
}

// TestHappyAOnly: the AAAA lookup gives nothing (an empty list or an
// error): the IPv4 addresses are all there is.
func TestHappyAOnly(t *testing.T) {
	aaaaNothing := map[string]func(l *handLookup){
		"empty": func(l *handLookup) { l.answer() },
		"error": func(l *handLookup) { l.fail(&GAIError{Code: EAI_NODATA, Text: "No address associated with hostname"}) },
	}
	for name, nothing := range aaaaNothing {
		t.Run("AAAA "+name+" first", func(t *testing.T) {
			h := newHERequest(t)
			h.open()
			l6, l4 := h.lookups()
			h.clock.Advance(ms(10))
			nothing(l6)
			h.noDial("AAAA gave nothing, A pending")
			h.at(ms(500)) // no Resolution Delay runs while A is pending
			h.noDial("0.5 s")
			l4.answer(v4(1), v4(2))
			h.dial(p4(1), ms(500)) // at once: there is no AAAA to wait for
			h.at(ms(750))
			a42 := h.dial(p4(2), ms(750))
			a42.succeed()
			res := h.wait()
			checkWon(t, res, a42)
			checkAttempts(t, res, []int{p4(1), p4(2)}, nil, AttemptCancelled, AttemptWon)
		})
		t.Run("AAAA "+name+" within the delay", func(t *testing.T) {
			h := newHERequest(t)
			h.open()
			l6, l4 := h.lookups()
			h.clock.Advance(ms(10))
			l4.answer(v4(1))
			h.at(ms(30))
			nothing(l6)
			a41 := h.dial(p4(1), ms(30)) // no need to wait out the delay
			a41.succeed()
			res := h.wait()
			checkWon(t, res, a41)
		})
		t.Run("AAAA "+name+" late", func(t *testing.T) {
			h := newHERequest(t)
			h.open()
			l6, l4 := h.lookups()
			l4.answer(v4(1), v4(2))
			h.at(ms(50))
			a41 := h.dial(p4(1), ms(50))
			h.at(ms(100))
			nothing(l6)
			h.noDial("AAAA gave nothing")
			h.at(ms(200))
			a41.fail(refusedAt(v4(1)))
			a42 := h.dial(p4(2), ms(200))
			a42.fail(refusedAt(v4(2)))
			res := h.wait()
			want := "Multiple exceptions: [Errno 111] Connect call failed ('192.0.2.1', 41), [Errno 111] Connect call failed ('192.0.2.2', 42)"
			if res.Err == nil || res.Err.Error() != want {
				t.Errorf("got %v, want %q", res.Err, want)
			}
			checkAttempts(t, res, []int{p4(1), p4(2)}, nil, AttemptRefused, AttemptRefused)
		})
	}

	t.Run("all IPv4 attempts failed while AAAA is pending", func(t *testing.T) {
		h := newHERequest(t)
		h.open()
		l6, l4 := h.lookups()
		l4.answer(v4(1))
		h.at(ms(50))
		a41 := h.dial(p4(1), ms(50))
		a41.fail(refusedAt(v4(1)))
		h.notDone("AAAA may still bring addresses")
		h.at(ms(900))
		l6.answer()
		res := h.wait()
		if want := "[Errno 111] Connect call failed ('192.0.2.1', 41)"; res.Err == nil || res.Err.Error() != want {
			t.Errorf("got %v, want %q", res.Err, want)
		}
	})
}

// TestHappyAAAAOnly: the A lookup gives nothing.
func TestHappyAAAAOnly(t *testing.T) {
	t.Run("A error first: no Resolution Delay, AAAA starts when it comes", func(t *testing.T) {
		h := newHERequest(t)
		h.open()
		l6, l4 := h.lookups()
		h.clock.Advance(ms(10))
		l4.fail(nameErr("Name or service not known"))
		h.at(ms(300))
		h.noDial("A failed, AAAA pending")
		h.notDone("AAAA pending")
		l6.answer(v6(1), v6(2))
		h.dial(p6(1), ms(300))
		h.at(ms(550))
		a62 := h.dial(p6(2), ms(550))
		a62.succeed()
		res := h.wait()
		checkWon(t, res, a62)
		checkAttempts(t, res, []int{p6(1), p6(2)}, nil, AttemptCancelled, AttemptWon)
	})
	t.Run("A empty first", func(t *testing.T) {
		h := newHERequest(t)
		h.open()
		l6, l4 := h.lookups()
		l4.answer()
		h.at(ms(100))
		h.noDial("A empty, AAAA pending")
		l6.answer(v6(1))
		a61 := h.dial(p6(1), ms(100))
		a61.succeed()
		checkWon(t, h.wait(), a61)
	})
	t.Run("AAAA first, A fails later: nothing joins", func(t *testing.T) {
		h := newHERequest(t)
		h.open()
		l6, l4 := h.lookups()
		l6.answer(v6(1))
		a61 := h.dial(p6(1), 0)
		h.at(ms(100))
		l4.fail(nameErr("Name or service not known"))
		h.at(ms(1000))
		h.noDial("A failed")
		a61.fail(failedAt(v6(1), unix.ENETUNREACH))
		res := h.wait()
		if want := "[Errno 101] Connect call failed ('2001:db8::1', 61, 0, 0)"; res.Err == nil || res.Err.Error() != want {
			t.Errorf("got %v, want %q", res.Err, want)
		}
		checkAttempts(t, res, []int{p6(1)}, nil, AttemptFailed)
	})
}

// TestHappyNoAddresses: both lookups give nothing.
func TestHappyNoAddresses(t *testing.T) {
	aErr := nameErr("Name or service not known")
	aaaaErr := &GAIError{Code: EAI_NODATA, Text: "No address associated with hostname"}
	tests := []struct {
		name     string
		first    int // the family answering first
		aaaa, a  error
		aaaaNone bool // AAAA answers an empty list (else the error)
		aNone    bool
		want     error // nil: the empty-list OSError
	}{
		{"both empty, AAAA first", unix.AF_INET6, nil, nil, true, true, nil},
		{"both empty, A first", unix.AF_INET, nil, nil, true, true, nil},
		{"both errors, AAAA first: A's error", unix.AF_INET6, aaaaErr, aErr, false, false, aErr},
		{"both errors, A first: A's error", unix.AF_INET, aaaaErr, aErr, false, false, aErr},
		{"AAAA error, A empty: AAAA's error", unix.AF_INET, aaaaErr, nil, false, true, aaaaErr},
		{"AAAA empty, A error: A's error", unix.AF_INET6, nil, aErr, true, false, aErr},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHERequest(t)
			h.open()
			l6, l4 := h.lookups()
			answer := func(l *handLookup, err error) {
				if err != nil {
					l.fail(err)
				} else {
					l.answer()
				}
			}
			if tc.first == unix.AF_INET6 {
				answer(l6, tc.aaaa)
				h.notDone("one family answered")
				h.at(ms(20))
				answer(l4, tc.a)
			} else {
				answer(l4, tc.a)
				h.notDone("one family answered")
				h.at(ms(20))
				answer(l6, tc.aaaa)
			}
			res := h.wait()
			if tc.want != nil {
				if res.Err != tc.want {
					t.Errorf("got %v, want %v", res.Err, tc.want)
				}
			} else {
				var oe *OSError
				if !errors.As(res.Err, &oe) || oe.Errno != 0 || res.Err.Error() != "getaddrinfo() returned empty list" {
					t.Errorf("got %#v, want the empty-list OSError", res.Err)
				}
			}
			if len(res.Attempts) != 0 || h.dialer.dialCount() != 0 {
				t.Errorf("%d attempts", h.dialer.dialCount())
			}
			if len(res.Resolutions) != 2 {
				t.Errorf("resolutions %+v", res.Resolutions)
			}
		})
	}
}

// TestHappyCancelDuringResolution: Cancel while the names are being looked
// up ends the request with ErrCancelled and starts no attempt, also when
// the answers and the timers come afterwards.
func TestHappyCancelDuringResolution(t *testing.T) {
	for _, stage := range []string{"both pending", "in the Resolution Delay"} {
		t.Run(stage, func(t *testing.T) {
			h := newHERequest(t)
			h.open()
			l6, l4 := h.lookups()
			if stage == "in the Resolution Delay" {
				l4.answer(v4(1))
				h.at(ms(20))
			}
			h.notDone("before Cancel")
			if !h.req.Cancel() {
				t.Fatal("Cancel returned false during resolution")
			}
			res := h.wait()
			if res.Err != ErrCancelled || res.Transport != nil || len(res.Attempts) != 0 {
				t.Fatalf("got %+v, want ErrCancelled and no attempt", res)
			}
			if stage == "both pending" {
				l4.answer(v4(1))
			}
			l6.answer(v6(1))
			h.at(ms(1000))
			h.noDial("after Cancel")
			if n := h.dialer.dialCount(); n != 0 {
				t.Errorf("%d attempts started", n)
			}
			if h.req.Cancel() {
				t.Error("a second Cancel returned true")
			}
		})
	}
}

// TestHappyNumericHost: an IP literal takes asyncio's fast path, with no
// lookup at all, even with a Resolution Delay.
func TestHappyNumericHost(t *testing.T) {
	for _, host := range []string{"192.0.2.9", "2001:db8::9"} {
		t.Run(host, func(t *testing.T) {
			h := newHERequest(t)
			h.resolver.forbid = true
			h.opts.Host = str(host)
			h.open()
			a := h.dial(443, 0)
			if a.sock == nil {
				t.Fatal("no attempt")
			}
			a.succeed()
			res := h.wait()
			checkWon(t, res, a)
			if len(res.Attempts) != 1 || res.Attempts[0].Remote.Host != host {
				t.Errorf("attempts %+v", res.Attempts)
			}
			if h.resolver.callCount() != 0 {
				t.Errorf("%d lookups", h.resolver.callCount())
			}
			if len(res.Resolutions) != 1 || res.Resolutions[0].Family != unix.AF_UNSPEC || res.Resolutions[0].Count != 1 {
				t.Errorf("resolutions %+v, want the one fast-path record", res.Resolutions)
			}
		})
	}
}

// TestHappyFamilyDisablesAsync: a family other than AF_UNSPEC makes one
// ordinary lookup of that family, as asyncio does; so does a request
// without a Resolution Delay (one AF_UNSPEC lookup).
func TestHappyFamilyDisablesAsync(t *testing.T) {
	for _, tc := range []struct {
		family int
		delay  *float64
		info   AddrInfo
	}{
		{unix.AF_INET, f64(0.05), v4(1)},
		{unix.AF_INET6, f64(0.05), v6(1)},
		{unix.AF_UNSPEC, nil, v6(1)},
	} {
		t.Run(fmt.Sprintf("family %s delay %v", famName(tc.family), tc.delay != nil), func(t *testing.T) {
			h := newHERequest(t)
			h.opts.Family = tc.family
			h.opts.ResolutionDelay = tc.delay
			h.open()
			l := h.resolver.expectLookup(t, tc.family)
			h.settle()
			for _, other := range []int{unix.AF_INET, unix.AF_INET6, unix.AF_UNSPEC} {
				if other != tc.family {
					h.resolver.expectNoLookup(t, other, "one lookup only")
				}
			}
			h.at(ms(10))
			l.answer(tc.info)
			a := h.dial(tc.info.Addr.Port, ms(10))
			a.succeed()
			res := h.wait()
			checkWon(t, res, a)
			if h.resolver.callCount() != 1 {
				t.Errorf("%d lookups, want 1", h.resolver.callCount())
			}
			if len(res.Resolutions) != 1 || res.Resolutions[0].Family != tc.family || res.Resolutions[0].End != ms(10) {
				t.Errorf("resolutions %+v", res.Resolutions)
			}
		})
	}
}

// TestHappyPortOutOfRange: a numeric port outside 0-65535 gives the
// OverflowError once the lookups succeeded, as resolveEndpoint does it, and
// a lookup error first.
func TestHappyPortOutOfRange(t *testing.T) {
	for _, port := range []string{"70000", "-1"} {
		t.Run(port, func(t *testing.T) {
			h := newHERequest(t)
			h.opts.Port = str(port)
			h.open()
			l6, l4 := h.lookups()
			if *l6.port != port || *l4.port != port {
				t.Errorf("lookups got ports %q %q", *l6.port, *l4.port)
			}
			h.notDone("lookups pending")
			l6.answer(v6(1))
			res := h.wait()
			var oe *OverflowError
			if !errors.As(res.Err, &oe) || res.Err.Error() != "connect(): port must be 0-65535." {
				t.Errorf("got %#v", res.Err)
			}
			if h.dialer.dialCount() != 0 {
				t.Error("an attempt started")
			}
			l4.answer(v4(1))
		})
	}
	t.Run("lookup errors come first", func(t *testing.T) {
		h := newHERequest(t)
		h.opts.Port = str("70000")
		h.open()
		l6, l4 := h.lookups()
		aErr := nameErr("Name or service not known")
		l6.answer()
		l4.fail(aErr)
		if res := h.wait(); res.Err != aErr {
			t.Errorf("got %v, want the A lookup's error", res.Err)
		}
	})
}

// TestHappyEmbeddedNUL: a host or port with a NUL is asyncio's ValueError
// with or without a Resolution Delay, and no name is looked up.
func TestHappyEmbeddedNUL(t *testing.T) {
	for _, delay := range []*float64{nil, f64(0.05)} {
		for _, tc := range []struct{ host, port string }{{"dual\x00.test", "443"}, {"dual.test", "44\x003"}} {
			h := newHERequest(t)
			h.resolver.forbid = true
			h.opts.Host, h.opts.Port, h.opts.ResolutionDelay = str(tc.host), str(tc.port), delay
			h.open()
			res := h.wait()
			var ve *ValueError
			if !errors.As(res.Err, &ve) || res.Err.Error() != "embedded null character" {
				t.Errorf("delay %v, %q %q: got %#v", delay != nil, tc.host, tc.port, res.Err)
			}
		}
	}
}
