package core

import (
	"os"
	"sync"
	"time"
	_ "unsafe" // for go:linkname

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
	if t, err := newTimerfdTimer(d); err == nil {
		return t
	}
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

// MonotonicNow reads CLOCK_MONOTONIC, through the vDSO as the runtime reads
// it (unix.ClockGettime would be a system call, several per connect).
func MonotonicNow() time.Duration { return time.Duration(runtimeNanotime()) }

// runtimeNanotime is the runtime's CLOCK_MONOTONIC reading; the runtime
// keeps this name reachable by linkname on purpose.
//
//go:linkname runtimeNanotime runtime.nanotime
func runtimeNanotime() int64

// timerfdTimer fires through a timerfd watched by Go's netpoller. Go's own
// timers wake an idle runtime from epoll_wait, whose timeout has millisecond
// granularity, so they fire up to a millisecond late (about 0.5 ms on
// average); a timerfd makes epoll_wait return when it expires, within
// microseconds. The Happy Eyeballs delay is what this precision is for.
type timerfdTimer struct {
	f    *os.File
	c    chan struct{}
	once sync.Once
}

func newTimerfdTimer(d time.Duration) (*timerfdTimer, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if d <= 0 {
		d = 1 // a zero it_value would disarm the timer
	}
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(d))}
	if err := unix.TimerfdSettime(fd, 0, &spec, nil); err != nil {
		unix.Close(fd)
		return nil, err
	}
	t := &timerfdTimer{f: os.NewFile(uintptr(fd), "goconn-timer"), c: make(chan struct{})}
	goSafe(func() {
		var buf [8]byte
		if n, err := t.f.Read(buf[:]); err == nil && n == 8 {
			close(t.c)
		}
		t.Stop() // fired or stopped: the descriptor is done either way
	})
	return t, nil
}

func (t *timerfdTimer) C() <-chan struct{} { return t.c }

// Stop closes the timerfd (once); a read in flight returns and nothing fires.
func (t *timerfdTimer) Stop() { t.once.Do(func() { _ = t.f.Close() }) }
