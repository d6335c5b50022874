package core

// Fuzz tests of the water marks (flowcontrol.go): their validation against
// asyncio's _set_write_buffer_limits computed with Python's unbounded ints,
// and the pause/resume state machine against a model.

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"testing"
)

// pyWaterMarks is asyncio's _set_write_buffer_limits with Python ints:
//
//	if high is None: high = 64*1024 if low is None else 4*low
//	if low is None: low = high // 4
//	if not high >= low >= 0: raise ValueError(f'high ({high!r}) must be >= low ({low!r}) must be >= 0')
func pyWaterMarks(high, low *int64, defaultHigh int64) (h, l *big.Int, errText string) {
	switch {
	case high == nil && low == nil:
		h = big.NewInt(defaultHigh)
	case high == nil:
		h = new(big.Int).Mul(big.NewInt(4), big.NewInt(*low))
	default:
		h = big.NewInt(*high)
	}
	if low == nil {
		l = new(big.Int).Div(h, big.NewInt(4)) // Euclidean; equals floor for a positive divisor
	} else {
		l = big.NewInt(*low)
	}
	if !(h.Cmp(l) >= 0 && l.Sign() >= 0) {
		return nil, nil, fmt.Sprintf("high (%s) must be >= low (%s) must be >= 0", h, l)
	}
	return h, l, ""
}

func FuzzWaterMarks(f *testing.F) {
	f.Add(false, int64(0), false, int64(0), false)
	f.Add(false, int64(0), true, int64(100), false)
	f.Add(true, int64(101), false, int64(0), true)
	f.Add(true, int64(-5), false, int64(0), false)
	f.Add(true, int64(10), true, int64(20), false)
	f.Add(true, int64(math.MinInt64), false, int64(0), false)
	f.Add(false, int64(0), true, int64(math.MaxInt64), false)
	f.Add(false, int64(0), true, int64(math.MaxInt64/4+1), false)
	f.Add(false, int64(0), true, int64(math.MinInt64), false)
	f.Fuzz(func(t *testing.T, hasHigh bool, high int64, hasLow bool, low int64, tls bool) {
		var hp, lp *int64
		if hasHigh {
			hp = &high
		}
		if hasLow {
			lp = &low
		}
		defaultHigh := int64(DefaultHighWater)
		if tls {
			defaultHigh = DefaultTLSHighWater
		}
		name := fmtPtr(hp) + "," + fmtPtr(lp)
		h, l, err := waterMarks(hp, lp, defaultHigh)
		wantH, wantL, wantErr := pyWaterMarks(hp, lp, defaultHigh)
		if wantErr != "" {
			var ve *ValueError
			if !errors.As(err, &ve) || ve.Error() != wantErr {
				t.Fatalf("(%s): got (%d, %d, %v), want ValueError %q", name, h, l, err, wantErr)
			}
			if h != 0 || l != 0 {
				t.Fatalf("(%s): an error came with marks (%d, %d)", name, h, l)
			}
			return
		}
		if err != nil {
			t.Fatalf("(%s): got %v, asyncio accepts (%s, %s)", name, err, wantH, wantL)
		}
		// A high mark beyond int64 cannot be held; it saturates (no buffer
		// gets that large, so the behaviour is the same).
		if !wantH.IsInt64() {
			wantH = big.NewInt(math.MaxInt64)
		}
		if h != wantH.Int64() || l != wantL.Int64() {
			t.Fatalf("(%s): got (%d, %d), asyncio gives (%s, %s)", name, h, l, wantH, wantL)
		}
		if !(h >= l && l >= 0) {
			t.Fatalf("(%s): accepted marks (%d, %d) break high >= low >= 0", name, h, l)
		}
		if !hasHigh && !hasLow {
			if _, _, err := WaterMarks(nil, nil); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// FuzzFlowControl drives flowControl with a random sequence of buffer sizes
// and mark changes, the way the transport does (shouldPause after the buffer
// grew or the marks changed, shouldResume after it shrank), and checks it
// against a model: pause and resume strictly alternate, starting with a
// pause, and each happens exactly when the buffer crosses its mark.
func FuzzFlowControl(f *testing.F) {
	f.Add([]byte{0, 10, 1, 200, 0, 5, 1, 0}, false)
	f.Add([]byte{2, 3, 1, 0, 40, 1, 3, 0, 2, 1, 40, 1, 0}, true)
	f.Add([]byte{0, 255, 0, 255, 1, 100, 1, 0, 1, 0}, false)
	f.Fuzz(func(t *testing.T, ops []byte, atHigh bool) {
		fc := newFlowControl()
		fc.atHigh = atHigh
		// Small marks so that byte-sized steps cross them.
		fc.high, fc.low = 64, 16
		size := 0
		paused := false // the model
		events := ""
		for i := 0; i+1 < len(ops); i += 2 {
			op, arg := ops[i]%4, int(ops[i+1])
			switch op {
			case 0: // write: the buffer grows
				size += arg
				over := size > int(fc.high) || (atHigh && size >= int(fc.high))
				want := over && !paused
				got := fc.shouldPause(size)
				if got != want {
					t.Fatalf("op %d: size %d marks (%d,%d) atHigh %v paused %v: shouldPause %v, want %v",
						i/2, size, fc.high, fc.low, atHigh, paused, got, want)
				}
				if got {
					paused = true
					events += "P"
				}
			case 1: // drain: the buffer shrinks
				size = max(0, size-arg)
				want := paused && size <= int(fc.low)
				got := fc.shouldResume(size)
				if got != want {
					t.Fatalf("op %d: size %d marks (%d,%d) paused %v: shouldResume %v, want %v",
						i/2, size, fc.high, fc.low, paused, got, want)
				}
				if got {
					paused = false
					events += "R"
				}
			case 2: // set_write_buffer_limits(high=arg): may pause at once
				a := int64(arg)
				h, l, err := WaterMarks(&a, nil)
				if err != nil {
					t.Fatalf("WaterMarks(%d): %v", arg, err)
				}
				fc.high, fc.low = h, l
				over := size > int(h) || (atHigh && size >= int(h))
				got := fc.shouldPause(size)
				if got != (over && !paused) {
					t.Fatalf("op %d: after limits (%d,%d) at size %d: shouldPause %v", i/2, h, l, size, got)
				}
				if got {
					paused = true
					events += "P"
				}
			case 3: // a resume check with no size change is idempotent
				if fc.shouldResume(size) {
					if !paused || size > int(fc.low) {
						t.Fatalf("op %d: resume at size %d, low %d, paused %v", i/2, size, fc.low, paused)
					}
					paused = false
					events += "R"
				}
				if fc.shouldResume(size) {
					t.Fatalf("op %d: two resumes in a row", i/2)
				}
			}
			if fc.paused != paused {
				t.Fatalf("op %d: paused %v, model %v", i/2, fc.paused, paused)
			}
		}
		for j := 1; j < len(events); j++ {
			if events[j] == events[j-1] {
				t.Fatalf("pause/resume do not alternate: %s", events)
			}
		}
		if len(events) > 0 && events[0] != 'P' {
			t.Fatalf("the first event is a resume: %s", events)
		}
	})
}
