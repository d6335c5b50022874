package core

import (
	"fmt"
	"math"
	"math/big"
)

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
	atHigh    bool // pause at size >= high (asyncio's TLS transport), not > high
}

func newFlowControl() flowControl {
	return flowControl{high: DefaultHighWater, low: DefaultLowWater}
}

// Default water marks of a TLS transport (asyncio's
// FLOW_CONTROL_HIGH_WATER_SSL_WRITE).
const (
	DefaultTLSHighWater = 512 * 1024
	DefaultTLSLowWater  = DefaultTLSHighWater / 4
)

// WaterMarks computes the marks as asyncio's _set_write_buffer_limits does:
// both nil give the defaults, one missing is derived from the other, and the
// result must satisfy high >= low >= 0.
func WaterMarks(high, low *int64) (h, l int64, err error) {
	return waterMarks(high, low, DefaultHighWater)
}

func waterMarks(high, low *int64, defaultHigh int64) (h, l int64, err error) {
	switch {
	case high == nil && low == nil:
		h, l = defaultHigh, defaultHigh/4
	case high == nil:
		l = *low
		switch {
		case l < 0:
			// Never valid. 4*low may not fit in an int64: word the error
			// with Python's exact value.
			h4 := new(big.Int).Mul(big.NewInt(4), big.NewInt(l))
			return 0, 0, &ValueError{Text: fmt.Sprintf("high (%s) must be >= low (%d) must be >= 0", h4, l)}
		case l > math.MaxInt64/4:
			h = math.MaxInt64 // Python's 4*low does not fit; no buffer gets that large
		default:
			h = 4 * l
		}
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
	over := int64(size) > fc.high
	if fc.atHigh {
		over = int64(size) >= fc.high
	}
	if over && !fc.paused {
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
