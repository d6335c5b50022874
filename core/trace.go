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
	AttemptWon                             // this attempt's socket became the transport
	AttemptFailed                          // bind or connect failed; Errno says why
	AttemptCancelled                       // stopped because another attempt won, or the request was cancelled
)

func (o AttemptOutcome) String() string {
	switch o {
	case AttemptWon:
		return "won"
	case AttemptFailed:
		return "failed"
	case AttemptCancelled:
		return "cancelled"
	}
	return "pending"
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
