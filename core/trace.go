package core

import (
	"errors"
	"syscall"
	"time"
)

// AttemptOutcome says how one connection attempt ended.
type AttemptOutcome int

const (
	AttemptPending   AttemptOutcome = iota // still running (never seen in a finished trace)
	AttemptWon                             // its connect won the race (a TLS handshake after it may still fail)
	AttemptFailed                          // bind or connect failed; Errno says why
	AttemptCancelled                       // stopped because another attempt won, or the request was cancelled
	AttemptRefused                         // the peer refused (ECONNREFUSED)
	AttemptTimedOut                        // the attempt timeout (or the kernel's, ETIMEDOUT) ran out
)

func (o AttemptOutcome) String() string {
	switch o {
	case AttemptWon:
		return "won"
	case AttemptFailed:
		return "failed"
	case AttemptCancelled:
		return "cancelled"
	case AttemptRefused:
		return "refused"
	case AttemptTimedOut:
		return "timed out"
	}
	return "pending"
}

// Resolution is one name lookup of the trace: the family asked for
// (AF_UNSPEC when both were asked at once), when it started and ended, how
// many addresses came back, and its error.
type Resolution struct {
	Family int
	Start  time.Duration
	End    time.Duration
	Count  int
	Err    error
}

// TraceKind names a trace event.
type TraceKind int

const (
	TraceResolveStart TraceKind = iota + 1
	TraceResolveEnd
	TraceAttemptStart
	TraceAttemptEnd
)

// TraceEvent is one live trace event: a lookup or an attempt starting or
// ending. For attempt events Attempt is the record as it stands.
type TraceEvent struct {
	Kind       TraceKind
	Time       time.Duration // CLOCK_MONOTONIC
	Resolution Resolution    // resolve events
	Attempt    Attempt       // attempt events
}

// Attempt is one record of the attempt trace: where it went, when it started
// and ended (CLOCK_MONOTONIC), and how it ended.
type Attempt struct {
	Index    int
	Remote   SockAddr
	Local    SockAddr // valid when HasLocal
	HasLocal bool
	Start    time.Duration
	End      time.Duration
	Outcome  AttemptOutcome
	Errno    syscall.Errno // for failures with an errno
	Err      error         // the error that ended a failed attempt
}

// errnoOf finds the errno inside an error, or 0.
func errnoOf(err error) syscall.Errno {
	var oe *OSError
	if errors.As(err, &oe) {
		return oe.Errno
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return 0
}
