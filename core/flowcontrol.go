package core

import "fmt"

// Write flow control with asyncio's water marks (spec 8.2.10 and 9.4).
//
// The protocol is paused when the buffer grows strictly above the high mark
// and resumed once it drains to the low mark or below. The two calls strictly
// alternate: asyncio's StreamReaderProtocol asserts it, so a second pause
// would break asyncio streams.

// Default water marks of a plain TCP transport.
const (
	DefaultHighWater = 64 * 1024
	DefaultLowWater  = DefaultHighWater / 4
)

// flowControl holds the marks and whether the protocol is paused. It is
// guarded by the transport's mutex.
type flowControl struct {
	high, low int64
	paused    bool
}

func newFlowControl() flowControl {
	return flowControl{high: DefaultHighWater, low: DefaultLowWater}
}

// WaterMarks computes the marks as asyncio's _set_write_buffer_limits does:
// both nil give the defaults, one missing is derived from the other, and the
// result must satisfy high >= low >= 0.
func WaterMarks(high, low *int64) (h, l int64, err error) {
	switch {
	case high == nil && low == nil:
		h, l = DefaultHighWater, DefaultLowWater
	case high == nil:
		l = *low
		h = 4 * l
	case low == nil:
		h = *high
		l = floorDiv(h, 4)
	default:
		h, l = *high, *low
	}
	if !(h >= l && l >= 0) {
		return 0, 0, &ValueError{Text: fmt.Sprintf("high (%d) must be >= low (%d) must be >= 0", h, l)}
	}
	return h, l, nil
}

// floorDiv is Python's // for a positive divisor.
func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && (a < 0) {
		q--
	}
	return q
}

// shouldPause records and reports a pause when size has passed the high mark.
func (fc *flowControl) shouldPause(size int) bool {
	if int64(size) > fc.high && !fc.paused {
		fc.paused = true
		return true
	}
	return false
}

// shouldResume records and reports a resume when size has drained to the
// low mark.
func (fc *flowControl) shouldResume(size int) bool {
	if fc.paused && int64(size) <= fc.low {
		fc.paused = false
		return true
	}
	return false
}
