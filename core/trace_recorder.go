package core

import (
	"context"
	"errors"
	"sync"
)

// traceRecorder collects one request's trace: its lookups (attempts are
// recorded by the race), and forwards live events to the caller's trace
// function through the executor. Once the request is done it forwards
// nothing more, so no event ever follows on_done (a lookup that was still
// running when the request ended is dropped).
type traceRecorder struct {
	clock Clock
	emit  func(TraceEvent) // posts to the executor; nil when nobody listens

	mu          sync.Mutex
	closed      bool
	resolutions []Resolution
}

func newTraceRecorder(clock Clock, emit func(TraceEvent)) *traceRecorder {
	return &traceRecorder{clock: clock, emit: emit}
}

func (t *traceRecorder) resolveStart(family int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := Resolution{Family: family, Start: t.clock.Now()}
	t.resolutions = append(t.resolutions, r)
	t.emitLocked(TraceEvent{Kind: TraceResolveStart, Time: r.Start, Resolution: r})
}

func (t *traceRecorder) resolveEnd(family, count int, err error) {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		// Stopped by a cancel or the connect timeout, not answered: the
		// lookup goes on in the background and its record stays open
		// (End 0), as for a lookup still running when the request ended.
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range t.resolutions {
		r := &t.resolutions[i]
		if r.Family == family && r.End == 0 {
			r.End, r.Count, r.Err = t.clock.Now(), count, err
			t.emitLocked(TraceEvent{Kind: TraceResolveEnd, Time: r.End, Resolution: *r})
			return
		}
	}
}

func (t *traceRecorder) attempt(kind TraceKind, a Attempt) {
	t.mu.Lock()
	defer t.mu.Unlock()
	at := a.Start
	if kind == TraceAttemptEnd {
		at = a.End
	}
	t.emitLocked(TraceEvent{Kind: kind, Time: at, Attempt: a})
}

func (t *traceRecorder) emitLocked(ev TraceEvent) {
	if t.emit != nil && !t.closed {
		t.emit(ev)
	}
}

// finish stops forwarding and returns the lookups recorded.
func (t *traceRecorder) finish() []Resolution {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	return append([]Resolution(nil), t.resolutions...)
}
