package core

import (
	"context"
	"fmt"
	"time"
)

// The staggered race: asyncio's staggered_race as create_connection uses it
// (spec 4.2), and the sequential loop when Happy Eyeballs is off.
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
	index int
	res   AttemptResult
}

// runRace runs the attempts and returns once every attempt it started has
// finished, so every losing socket is closed before it returns. A cancelled
// ctx stops every attempt and gives ErrCancelled; no socket survives it.
func runRace(ctx context.Context, cfg raceConfig) (raceOutcome, error) {
	n := len(cfg.infos)
	var out raceOutcome
	results := make(chan raceResult, n) // buffered: an attempt never blocks on send
	cancels := make([]context.CancelFunc, 0, n)
	running, lastStarted, winner := 0, -1, -1
	var timer Timer
	var timerC <-chan struct{}

	stopTimer := func() {
		if timer != nil {
			timer.Stop()
			timer, timerC = nil, nil
		}
	}
	start := func() {
		i := len(cancels)
		if i >= n || winner >= 0 || ctx.Err() != nil {
			return
		}
		actx, cancel := context.WithCancel(ctx)
		cancels = append(cancels, cancel)
		out.errors = append(out.errors, nil)
		out.attempts = append(out.attempts, Attempt{Index: i, Remote: cfg.infos[i].Addr, Start: cfg.clock.Now()})
		running++
		lastStarted = i
		ai := cfg.infos[i]
		go func() {
			r := AttemptResult{Errors: []error{fmt.Errorf("connection attempt %d panicked", i)}}
			defer func() {
				if v := recover(); v != nil {
					reportPanic(v)
				}
				results <- raceResult{index: i, res: r}
			}()
			r = cfg.dialer.Dial(actx, ai, cfg.local)
		}()
		stopTimer()
		if cfg.staggered && i+1 < n {
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
		case r.res.Sock != nil:
			// A runner-up, or a success after cancellation: close it.
			r.res.Sock.Close()
			a.Outcome = AttemptCancelled
		case r.res.Cancelled:
			a.Outcome = AttemptCancelled
		default:
			out.errors[r.index] = r.res.Errors
			a.Outcome = AttemptFailed
			if k := len(r.res.Errors); k > 0 {
				a.Err = r.res.Errors[k-1]
				a.Errno = errnoOf(a.Err)
			}
			// Only the failure of the most recent attempt starts the next
			// one early.
			if r.index == lastStarted {
				start()
			}
		}
	}

	start()
	ctxDone := ctx.Done()
	for running > 0 {
		select {
		case r := <-results:
			handle(r)
		case <-timerC:
			timer, timerC = nil, nil
			before := len(cancels)
			// Results already in hand win over the timer.
		drain:
			for {
				select {
				case r := <-results:
					handle(r)
				default:
					break drain
				}
			}
			if winner < 0 && len(cancels) == before {
				start()
			}
		case <-ctxDone:
			ctxDone = nil // every attempt's context is a child: they are all stopping
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
