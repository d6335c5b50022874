package core

import (
	"time"

	"golang.org/x/sys/unix"
)

// Clock is the time source of the race and the trace. Tests inject a fake
// one so that the timing rules are checked without sleeping.
type Clock interface {
	// Now is CLOCK_MONOTONIC, so C and Python callers can compare trace
	// timestamps with clock_gettime(CLOCK_MONOTONIC) and time.monotonic().
	Now() time.Duration
	NewTimer(d time.Duration) Timer
}

// Timer fires once on C.
type Timer interface {
	C() <-chan struct{}
	Stop()
}

// SystemClock is the real monotonic clock.
var SystemClock Clock = systemClock{}

type systemClock struct{}

func (systemClock) Now() time.Duration { return MonotonicNow() }

func (systemClock) NewTimer(d time.Duration) Timer {
	t := &sysTimer{c: make(chan struct{})}
	t.t = time.AfterFunc(d, func() { close(t.c) })
	return t
}

type sysTimer struct {
	t *time.Timer
	c chan struct{}
}

func (t *sysTimer) C() <-chan struct{} { return t.c }
func (t *sysTimer) Stop()              { t.t.Stop() }

// MonotonicNow reads CLOCK_MONOTONIC.
func MonotonicNow() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
