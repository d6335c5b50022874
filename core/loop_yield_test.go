package core

import (
	"testing"
	"time"
)

// counting is a schedulerPass that counts its yields instead of yielding.
func counting(yields *int) schedulerPass {
	return schedulerPass{yield: func() { *yields++ }}
}

func TestSchedulerPassOnlyWhileBusy(t *testing.T) {
	var yields int
	p := counting(&yields)
	// A dispatch every 2 ms is not busy: no yield, however long it goes on.
	for now := time.Second; now < 2*time.Second; now += 2 * time.Millisecond {
		p.maybe(now)
	}
	if yields != 0 {
		t.Fatalf("a rarely dispatching loop yielded %d times", yields)
	}
}

func TestSchedulerPassAtMostEveryFiveMilliseconds(t *testing.T) {
	var yields int
	p := counting(&yields)
	// 100 ms of dispatches 50 us apart: one yield per 5 ms, the first
	// with the second dispatch (the first has nothing before it).
	start := time.Second
	for now := start; now < start+100*time.Millisecond; now += 50 * time.Microsecond {
		p.maybe(now)
	}
	if yields < 19 || yields > 21 {
		t.Fatalf("100 ms of busy dispatching yielded %d times, want 20", yields)
	}
}

func TestDispatchPassesThroughTheScheduler(t *testing.T) {
	l, err := NewLoop()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var yields int
	l.yield = counting(&yields)
	// Real dispatches back to back for a little over two periods.
	deadline := MonotonicNow() + 2*schedulerPassEvery + time.Millisecond
	for MonotonicNow() < deadline {
		if _, err := l.Dispatch(0); err != nil {
			t.Fatal(err)
		}
	}
	if yields < 1 {
		t.Fatal("a busy dispatch loop never passed through the scheduler")
	}
}
