package core

import (
	"runtime"
	"time"
)

// A pass through the Go scheduler, now and then, for the loop's thread.
//
// The owner's thread enters Go for every dispatch and goes back to C (to
// Python, say) with its P still attached, as a goroutine in a system call
// keeps its P. A P that only runs calls from C never goes through the
// scheduler, so its scheduling tick never moves, and sysmon takes it for a
// goroutine that has run for over 10 ms: it preempts it and hands the P
// off. The thread takes a P back on its next call, with the same stale
// tick, and sysmon hands it off again at its next look. While the loop is
// busy that happened 1,100-1,800 times a second in the ping-pong bench,
// each time starting an M to poll the network that found nothing and went
// back to sleep: about 3,000 futex calls and 3,000 sysmon sleeps a second,
// and 4-13 us of CPU per round trip on the other core, where the peer
// runs.
//
// Yielding once every few milliseconds while dispatches come often moves
// the tick: the preemptions stopped (7 in 3 s), sysmon went back to its
// long sleeps, and the other threads' CPU fell to under 1 us per round
// trip. A yield costs two thread switches (the P goes to another M and
// comes back), so a loop that dispatches rarely, which sysmon leaves
// alone anyway, never pays it.
type schedulerPass struct {
	lastCall  time.Duration // the previous dispatch
	lastYield time.Duration
	yield     func() // nil: runtime.Gosched; tests count the calls
}

const (
	// Half sysmon's forcePreemptNS (10 ms), so the tick always moves in time.
	schedulerPassEvery = 5 * time.Millisecond
	// Dispatches closer together than this make a busy loop.
	busyDispatchGap = time.Millisecond
)

// maybe is called at the start of every dispatch, on the loop's thread.
func (p *schedulerPass) maybe(now time.Duration) {
	busy := now-p.lastCall < busyDispatchGap
	p.lastCall = now
	if !busy || now-p.lastYield < schedulerPassEvery {
		return
	}
	p.lastYield = now
	if p.yield != nil {
		p.yield()
		return
	}
	runtime.Gosched()
}
