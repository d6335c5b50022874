package main

/*
#include "goconn.h"
*/
import "C"

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
)

// A panic must never unwind into the host process. Every export recovers;
// a recovered panic poisons the library (as arrow-adbc's drivers do): the
// state it left is unknown, so every later call fails fast.

var (
	poisoned   atomic.Bool
	poisonOnce sync.Once
)

// poison marks the library unusable and prints every goroutine's stack once.
func poison(v any, stack []byte) {
	poisoned.Store(true)
	poisonOnce.Do(func() {
		all := make([]byte, 1<<20)
		all = all[:runtime.Stack(all, true)]
		fmt.Fprintf(os.Stderr, "goconn: internal panic; the library is now unusable: %v\n%s\ngoroutines:\n%s\n", v, stack, all)
	})
}

// enter is the first line of every export: it reports GOCONN_EPOISONED
// once the library is poisoned.
func enter() (C.int, bool) {
	if poisoned.Load() {
		return C.GOCONN_EPOISONED, false
	}
	return 0, true
}

// recoverExport turns a panic inside an export into GOCONN_EINTERNAL.
// Use: defer recoverExport(&rc).
func recoverExport(rc *C.int) {
	if v := recover(); v != nil {
		poison(v, debug.Stack())
		*rc = C.GOCONN_EINTERNAL
	}
}
