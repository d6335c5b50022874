package core

import (
	"context"
	"fmt"
	"syscall"
	"time"
)

// The staggered race: asyncio's staggered_race as create_connection uses it
// (spec 4.2), the sequential loop when Happy Eyeballs is off, and the parts
// of RFC 8305 asyncio lacks: addresses that arrive while attempts are under
// way (asynchronous per-family resolution) and a per-attempt timeout.
//
// One goroutine owns all the race's state, so every decision (start the next
// attempt, pick the winner) is made in one place and in order. When the delay
// timer and a success are both ready, the success is handled first: a success
// that lands just before the delay fires starts nothing new (trio PR 632).

type raceConfig struct {
	infos     []AddrInfo
	local     []AddrInfo
	staggered bool          // Happy Eyeballs: start the next attempt after delay
	delay     time.Duration // used when staggered
	clock     Clock
	dialer    Dialer

	// arrivals brings addresses that are resolved after the race began
	// (one batch per family); it is closed when resolution is over. nil:
	// infos is all there is.
	arrivals <-chan []AddrInfo
	// attemptTimeout gives up on one attempt after this long (0: never).
	// It is not the delay: a slow attempt keeps going while the next starts.
	attemptTimeout time.Duration
	// events, if set, is told when each attempt starts and ends.
	events func(kind TraceKind, a Attempt)
}

type raceOutcome struct {
	winner   *Socket
	errors   [][]error // per started attempt, in start order
	attempts []Attempt
}

// flatErrors is every attempt's errors, flattened in start order, as asyncio
// aggregates them.
func (o *raceOutcome) flatErrors() []error {
	var all []error
	for _, errs := range o.errors {
		all = append(all, errs...)
	}
	return all
}

type raceResult struct {
	index    int
	res      AttemptResult
	timedOut bool // the attempt's own timeout stopped it
}

// runRace runs the attempts and returns once every attempt it started has
// finished, so every losing socket is closed before it returns. A cancelled
// ctx stops every attempt and gives ErrCancelled; no socket survives it.
func runRace(ctx context.Context, cfg raceConfig) (raceOutcome, error) {
	var out raceOutcome
	results := make(chan raceResult, 16)
	pending := append([]AddrInfo(nil), cfg.infos...)
	arrivals := cfg.arrivals
	var cancels []context.CancelFunc
	running, lastStarted, winner := 0, -1, -1
	owed := false // a start is due (delay passed, or the last attempt failed) but no address is known yet
	var timer Timer
	var timerC <-chan struct{}

	stopTimer := func() {
		if timer != nil {
			timer.Stop()
			timer, timerC = nil, nil
		}
	}
	notify := func(kind TraceKind, i int) {
		if cfg.events != nil {
			cfg.events(kind, out.attempts[i])
		}
	}
	start := func() {
		if winner >= 0 || ctx.Err() != nil {
			return
		}
		if len(pending) == 0 {
			owed = arrivals != nil
			return
		}
		owed = false
		ai := pending[0]
		pending = pending[1:]
		i := len(cancels)
		actx, cancel := context.WithCancel(ctx)
		cancels = append(cancels, cancel)
		out.errors = append(out.errors, nil)
		out.attempts = append(out.attempts, Attempt{Index: i, Remote: ai.Addr, Start: cfg.clock.Now()})
		running++
		lastStarted = i
		notify(TraceAttemptStart, i)
		var expired chan struct{}
		if cfg.attemptTimeout > 0 {
			expired = make(chan struct{})
			t := cfg.clock.NewTimer(cfg.attemptTimeout)
			go func() {
				select {
				case <-t.C():
					close(expired)
					cancel()
				case <-actx.Done():
					t.Stop()
				}
			}()
		}
		// An attempt that can have no company (none other runs, no timer
		// will start one beside it, no late address can arrive meanwhile) is
		// dialled right here: a goroutine of its own would only add a
		// hand-off between threads to every connect, the larger part of a
		// loopback connect's cost. Dial itself watches actx.
		alone := running == 1 && expired == nil && arrivals == nil && (!cfg.staggered || len(pending) == 0)
		dial := func() {
			r := AttemptResult{Errors: []error{fmt.Errorf("connection attempt %d panicked", i)}}
			defer func() {
				if v := recover(); v != nil {
					reportPanic(v)
				}
				timedOut := false
				if expired != nil {
					select {
					case <-expired:
						timedOut = r.Cancelled && ctx.Err() == nil
					default:
					}
				}
				results <- raceResult{index: i, res: r, timedOut: timedOut}
			}()
			r = cfg.dialer.Dial(actx, ai, cfg.local)
		}
		if alone {
			dial() // results has room: the outcome waits there for the loop below
		} else {
			go dial()
		}
		stopTimer()
		if cfg.staggered && (len(pending) > 0 || arrivals != nil) {
			timer = cfg.clock.NewTimer(cfg.delay)
			timerC = timer.C()
		}
	}
	handle := func(r raceResult) {
		running--
		a := &out.attempts[r.index]
		a.End = cfg.clock.Now()
		if r.res.Local.Family != 0 {
			a.Local, a.HasLocal = r.res.Local, true
		}
		// The end is told once the outcome is known, and before a failure
		// starts the next attempt: the trace stays in time order.
		ended := func() { notify(TraceAttemptEnd, r.index) }
		switch {
		case r.res.Sock != nil && winner < 0 && ctx.Err() == nil:
			winner = r.index
			a.Outcome = AttemptWon
			out.winner = r.res.Sock
			stopTimer()
			for i, cancel := range cancels {
				if i != r.index {
					cancel()
				}
			}
			ended()
			return
		case r.res.Sock != nil:
			// A runner-up, or a success after cancellation: close it.
			r.res.Sock.Close()
			a.Outcome = AttemptCancelled
			ended()
			return
		case r.timedOut:
			err := &OSError{Errno: syscall.ETIMEDOUT, Text: "Connect call failed " + a.Remote.Repr(), Addr: &a.Remote}
			out.errors[r.index] = []error{err}
			a.Outcome, a.Err, a.Errno = AttemptTimedOut, err, syscall.ETIMEDOUT
		case r.res.Cancelled:
			a.Outcome = AttemptCancelled
			ended()
			return
		default:
			out.errors[r.index] = r.res.Errors
			a.failed(r.res.Errors)
		}
		ended()
		// A failure: only the failure of the most recent attempt starts
		// the next one early.
		if r.index == lastStarted {
			start()
		}
	}
	arrive := func(batch []AddrInfo, ok bool) {
		if !ok {
			arrivals = nil
			if owed && len(pending) == 0 {
				owed = false
			}
			return
		}
		last := 0
		if lastStarted >= 0 {
			last = out.attempts[lastStarted].Remote.Family
		}
		pending = mergeArrivals(pending, batch, last)
		if winner < 0 && (owed || lastStarted < 0) {
			start()
		}
	}

	// drainResults handles the results already in hand: they win over the
	// timer and over late addresses, so a success that lands just before
	// either starts nothing new.
	drainResults := func() {
		for {
			select {
			case r := <-results:
				handle(r)
			default:
				return
			}
		}
	}

	start()
	ctxDone := ctx.Done()
	for running > 0 || (winner < 0 && ctx.Err() == nil && (arrivals != nil || (len(pending) > 0 && lastStarted < 0))) {
		select {
		case r := <-results:
			handle(r)
		case batch, ok := <-arrivals:
			drainResults()
			arrive(batch, ok)
		case <-timerC:
			timer, timerC = nil, nil
			before := len(cancels)
			drainResults()
			if winner < 0 && len(cancels) == before {
				start()
			}
		case <-ctxDone:
			ctxDone = nil // every attempt's context is a child: they are all stopping
			arrivals = nil
			stopTimer()
		}
	}
	stopTimer()
	for _, cancel := range cancels {
		cancel()
	}
	if ctx.Err() != nil {
		if out.winner != nil {
			out.winner.Close()
			out.winner = nil
			out.attempts[winner].Outcome = AttemptCancelled
		}
		return out, ErrCancelled
	}
	return out, nil
}

// failed records an attempt that ended with errs, its own error last.
func (a *Attempt) failed(errs []error) {
	a.Outcome = AttemptFailed
	if k := len(errs); k > 0 {
		a.Err = errs[k-1]
		a.Errno = errnoOf(a.Err)
	}
	switch a.Errno {
	case syscall.ECONNREFUSED:
		a.Outcome = AttemptRefused
	case syscall.ETIMEDOUT:
		a.Outcome = AttemptTimedOut
	}
}

// mergeArrivals adds addresses resolved late to those not yet tried, in
// interleaved order (RFC 8305 section 4): the family of the attempt that
// started last goes after the other one.
func mergeArrivals(pending, batch []AddrInfo, lastFamily int) []AddrInfo {
	all := append(append([]AddrInfo(nil), pending...), batch...)
	var first, second []AddrInfo
	for _, ai := range all {
		if lastFamily != 0 && ai.Family == lastFamily {
			second = append(second, ai)
		} else {
			first = append(first, ai)
		}
	}
	return Interleave(append(first, second...), 1)
}
