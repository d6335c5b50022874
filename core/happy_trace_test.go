package core

// The attempt trace as data: the lookups in Result.Resolutions, the live
// Trace events (through the executor, in order, never after Done), and the
// attempt outcomes with their errnos.

import (
	"fmt"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestHappyTraceResolutionsAndEvents: one request's lookups and attempts,
// told live in order, all before Done, and the same lookups in the Result.
func TestHappyTraceResolutionsAndEvents(t *testing.T) {
	h := newHERequest(t)
	h.clock.Advance(ms(1000))
	h.open()
	l6, l4 := h.lookups()
	aErr := nameErr("Temporary failure in name resolution")
	h.at(ms(1010))
	l4.fail(aErr)
	h.at(ms(1030))
	l6.answer(v6(1), v6(2))
	a61 := h.dial(p6(1), ms(1030))
	h.at(ms(1040))
	a61.fail(refusedAt(v6(1)))
	a62 := h.dial(p6(2), ms(1040))
	h.at(ms(1050))
	a62.succeed()
	res := h.wait()
	checkWon(t, res, a62)

	want := []Resolution{
		{Family: unix.AF_INET6, Start: ms(1000), End: ms(1030), Count: 2},
		{Family: unix.AF_INET, Start: ms(1000), End: ms(1010), Err: aErr},
	}
	if fmt.Sprint(res.Resolutions) != fmt.Sprint(want) {
		t.Errorf("Result.Resolutions\n got %+v\nwant %+v", res.Resolutions, want)
	}
	if fmt.Sprint(res.Transport.Resolutions()) != fmt.Sprint(want) {
		t.Errorf("Transport.Resolutions() %+v", res.Transport.Resolutions())
	}
	checkLines(t, "trace", h.traceLog(), []string{
		"1s resolve-start v6",
		"1s resolve-start v4",
		"1.01s resolve-end v4 n=0 err=[Errno -2] Temporary failure in name resolution",
		"1.03s resolve-end v6 n=2 err=<nil>",
		"1.03s attempt-start #0 61",
		"1.04s attempt-end #0 61 refused errno=111",
		"1.04s attempt-start #1 62",
		"1.05s attempt-end #1 62 won errno=0",
		"done",
	})
	a := res.Attempts[0]
	if a.Start != ms(1030) || a.End != ms(1040) || a.Err == nil || a.Err.Error() != refusedAt(v6(1)).Error() {
		t.Errorf("attempt 0 %+v", a)
	}
}

// TestHappyTraceNothingAfterDone: a lookup that ends after the request
// ended tells nothing: neither when it ends after Done ran, nor when it
// ends after the winner was chosen but before Done ran.
func TestHappyTraceNothingAfterDone(t *testing.T) {
	for _, when := range []string{"after Done", "between the winner and Done"} {
		t.Run(when, func(t *testing.T) {
			h := newHERequest(t)
			h.open()
			l6, l4 := h.lookups()
			h.at(ms(10))
			l4.answer(v4(1))
			h.at(ms(60))
			a41 := h.dial(p4(1), ms(60))
			h.at(ms(70))
			a41.succeed()
			if when == "after Done" {
				res := h.wait()
				checkWon(t, res, a41)
			} else {
				h.quiet.wait(t) // Done is queued, not run
				if h.exec.queued() == 0 {
					t.Fatal("nothing queued after the winner")
				}
			}
			h.clock.Advance(ms(80))
			l6.answer(v6(1)) // the slow AAAA answer
			<-l6.returned
			h.settle()
			res := h.wait()
			checkWon(t, res, a41)
			checkLines(t, "trace", h.traceLog(), []string{
				"0s resolve-start v6",
				"0s resolve-start v4",
				"10ms resolve-end v4 n=1 err=<nil>",
				"60ms attempt-start #0 41",
				"70ms attempt-end #0 41 won errno=0",
				"done",
			})
			// The AAAA record stays open: it had not ended when the request did.
			if len(res.Resolutions) != 2 || res.Resolutions[0].Family != unix.AF_INET6 || res.Resolutions[0].End != 0 {
				t.Errorf("resolutions %+v", res.Resolutions)
			}
			h.noDial("the late AAAA answer")
		})
	}

	t.Run("failure, then the lookup ends", func(t *testing.T) {
		h := newHERequest(t)
		h.open()
		l6, l4 := h.lookups()
		h.at(ms(10))
		l4.answer(v4(1))
		h.at(ms(60))
		a41 := h.dial(p4(1), ms(60))
		a41.fail(refusedAt(v4(1)))
		h.settle()
		h.req.Cancel()
		res := h.wait()
		if res.Err != ErrCancelled {
			t.Errorf("got %v", res.Err)
		}
		l6.answer(v6(1))
		<-l6.returned
		h.settle()
		if log := h.traceLog(); log[len(log)-1] != "done" {
			t.Errorf("trace ends %q, want done last", log)
		}
	})
}

// TestHappyTraceOutcomes: every attempt outcome with its errno, in the
// Result and in the live events: refused, failed with another errno, timed
// out by the attempt timeout, cancelled by the winner, and won.
func TestHappyTraceOutcomes(t *testing.T) {
	h := newHERequest(t)
	h.opts.AttemptTimeout = f64(1.0)
	h.opts.ResolutionDelay = nil
	h.opts.Family = unix.AF_INET
	h.opts.Interleave = intp(0)
	h.open()
	l := h.resolver.expectLookup(t, unix.AF_INET)
	l.answer(v4(1), v4(2), v4(3), v4(4), v4(5))
	a1 := h.dial(p4(1), 0)
	h.at(ms(100))
	a1.fail(refusedAt(v4(1))) // refused: the next starts at once
	a2 := h.dial(p4(2), ms(100))
	h.at(ms(200))
	a2.fail(failedAt(v4(2), unix.EHOSTUNREACH)) // another errno
	h.dial(p4(3), ms(200))                      // hangs until its timeout at 1.2
	h.at(ms(450))
	h.dial(p4(4), ms(450)) // cancelled by the winner
	h.at(ms(700))
	a5 := h.dial(p4(5), ms(700))
	h.at(ms(1200))
	h.noDial("attempt 3 timed out; it is not the latest")
	h.at(ms(1300))
	a5.succeed()
	res := h.wait()
	checkWon(t, res, a5)
	checkAttempts(t, res, []int{p4(1), p4(2), p4(3), p4(4), p4(5)},
		[]time.Duration{0, ms(100), ms(200), ms(450), ms(700)},
		AttemptRefused, AttemptFailed, AttemptTimedOut, AttemptCancelled, AttemptWon)
	var errnos []unix.Errno
	var ends []time.Duration
	for _, a := range res.Attempts {
		errnos = append(errnos, a.Errno)
		ends = append(ends, a.End)
	}
	if !same(errnos, []unix.Errno{unix.ECONNREFUSED, unix.EHOSTUNREACH, unix.ETIMEDOUT, 0, 0}) {
		t.Errorf("errnos %v", errnos)
	}
	if !same(ends, []time.Duration{ms(100), ms(200), ms(1200), ms(1300), ms(1300)}) {
		t.Errorf("ends %v", ends)
	}
	if e := res.Attempts[2].Err; e == nil || e.Error() != "[Errno 110] Connect call failed ('192.0.2.3', 43)" {
		t.Errorf("attempt 3 error %v", e)
	}
	if e := res.Attempts[1].Err; e == nil || e.Error() != "[Errno 113] Connect call failed ('192.0.2.2', 42)" {
		t.Errorf("attempt 2 error %v", e)
	}
	if res.Attempts[3].Err != nil || res.Attempts[4].Err != nil {
		t.Errorf("cancelled or won attempts with an error: %+v", res.Attempts[3:])
	}
	checkLines(t, "trace", h.traceLog(), []string{
		"0s resolve-start v4",
		"0s resolve-end v4 n=5 err=<nil>",
		"0s attempt-start #0 41",
		"100ms attempt-end #0 41 refused errno=111",
		"100ms attempt-start #1 42",
		"200ms attempt-end #1 42 failed errno=113",
		"200ms attempt-start #2 43",
		"450ms attempt-start #3 44",
		"700ms attempt-start #4 45",
		"1.2s attempt-end #2 43 timed out errno=110",
		"1.3s attempt-end #4 45 won errno=0",
		"1.3s attempt-end #3 44 cancelled errno=0",
		"done",
	})
}

// TestHappyTraceKernelTimeout: an attempt the kernel times out (ETIMEDOUT)
// is recorded as timed out too.
func TestHappyTraceKernelTimeout(t *testing.T) {
	h := newHERequest(t)
	h.resolver.forbid = true
	h.opts.AddrInfos = []AddrInfo{v4(1)}
	h.open()
	a := h.dial(p4(1), 0)
	a.fail(failedAt(v4(1), unix.ETIMEDOUT))
	res := h.wait()
	checkAttempts(t, res, []int{p4(1)}, nil, AttemptTimedOut)
	if res.Attempts[0].Errno != unix.ETIMEDOUT {
		t.Errorf("errno %v", res.Attempts[0].Errno)
	}
}
