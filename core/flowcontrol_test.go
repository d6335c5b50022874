package core

import (
	"errors"
	"strconv"
	"testing"
)

func TestWaterMarks(t *testing.T) {
	tests := []struct {
		high, low         *int64
		wantHigh, wantLow int64
		wantErr           string
	}{
		{nil, nil, 65536, 16384, ""},
		{nil, i64(100), 400, 100, ""}, // only low: high = 4*low
		{i64(100), nil, 100, 25, ""},  // only high: low = high//4
		{i64(101), nil, 101, 25, ""},
		{i64(3), nil, 3, 0, ""},
		{i64(0), nil, 0, 0, ""},
		{nil, i64(0), 0, 0, ""},
		{i64(0), i64(0), 0, 0, ""},
		{i64(20), i64(10), 20, 10, ""},
		{i64(10), i64(10), 10, 10, ""},
		{i64(10), i64(20), 0, 0, "high (10) must be >= low (20) must be >= 0"},
		{nil, i64(-1), 0, 0, "high (-4) must be >= low (-1) must be >= 0"},
		// Python's floor division: -5 // 4 == -2, not -1.
		{i64(-5), nil, 0, 0, "high (-5) must be >= low (-2) must be >= 0"},
		{i64(-4), nil, 0, 0, "high (-4) must be >= low (-1) must be >= 0"},
		{i64(-1), nil, 0, 0, "high (-1) must be >= low (-1) must be >= 0"},
		{i64(5), i64(-1), 0, 0, "high (5) must be >= low (-1) must be >= 0"},
	}
	for _, tc := range tests {
		h, l, err := WaterMarks(tc.high, tc.low)
		name := fmtPtr(tc.high) + "," + fmtPtr(tc.low)
		if tc.wantErr != "" {
			var ve *ValueError
			if !errors.As(err, &ve) || ve.Error() != tc.wantErr {
				t.Errorf("(%s): got %v, want ValueError %q", name, err, tc.wantErr)
			}
			continue
		}
		if err != nil || h != tc.wantHigh || l != tc.wantLow {
			t.Errorf("(%s): got (%d, %d, %v), want (%d, %d)", name, h, l, err, tc.wantHigh, tc.wantLow)
		}
	}
}

func fmtPtr(p *int64) string {
	if p == nil {
		return "None"
	}
	return strconv.FormatInt(*p, 10)
}

func TestFloorDiv(t *testing.T) {
	for _, tc := range [][3]int64{{7, 4, 1}, {8, 4, 2}, {0, 4, 0}, {-1, 4, -1}, {-4, 4, -1}, {-5, 4, -2}, {-8, 4, -2}, {-9, 4, -3}} {
		if got := floorDiv(tc[0], tc[1]); got != tc[2] {
			t.Errorf("floorDiv(%d, %d) = %d, want %d", tc[0], tc[1], got, tc[2])
		}
	}
}

// TestFlowControlHysteresis: pause only above high (strictly) and while not
// paused; resume only while paused and at or below low. The calls strictly
// alternate.
func TestFlowControlHysteresis(t *testing.T) {
	fc := newFlowControl()
	if fc.high != 65536 || fc.low != 16384 || fc.paused {
		t.Fatalf("defaults: %+v", fc)
	}
	fc.high, fc.low = 100, 25

	type step struct {
		op   string // "write": shouldPause, "drain": shouldResume
		size int
		want bool
	}
	steps := []step{
		{"drain", 0, false},    // not paused: never resume
		{"write", 100, false},  // == high: no pause (strictly greater)
		{"write", 101, true},   // > high: pause
		{"write", 500, false},  // already paused: never twice
		{"write", 101, false},  //
		{"drain", 26, false},   // > low: stay paused
		{"drain", 100, false},  //
		{"write", 1000, false}, // still paused
		{"drain", 25, true},    // <= low: resume
		{"drain", 0, false},    // not paused: never twice
		{"write", 50, false},   // between marks: nothing
		{"drain", 10, false},   //
		{"write", 101, true},   // pause again
		{"drain", 0, true},     // resume again
	}
	for i, s := range steps {
		var got bool
		if s.op == "write" {
			got = fc.shouldPause(s.size)
		} else {
			got = fc.shouldResume(s.size)
		}
		if got != s.want {
			t.Fatalf("step %d (%s %d): got %v, want %v", i, s.op, s.size, got, s.want)
		}
	}

	// With high = low = 0 (asyncio's "no buffering"), any byte pauses and
	// only an empty buffer resumes.
	fc = flowControl{}
	if fc.shouldPause(0) || !fc.shouldPause(1) || fc.shouldResume(1) || !fc.shouldResume(0) {
		t.Error("zero water marks misbehave")
	}
}
