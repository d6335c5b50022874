package core

import (
	"fmt"
	"os"
	"runtime/debug"
	"sync/atomic"
)

// A panic in library code must never unwind into the host process: every
// goroutine the core starts, and every task it runs, recovers and reports the
// panic here. The capi layer installs a handler that poisons the library.

var panicHandler atomic.Pointer[func(v any, stack []byte)]

// SetPanicHandler installs the function told about recovered panics.
func SetPanicHandler(h func(v any, stack []byte)) { panicHandler.Store(&h) }

// reportPanic hands a recovered panic to the handler, or prints it.
func reportPanic(v any) {
	stack := debug.Stack()
	if h := panicHandler.Load(); h != nil {
		(*h)(v, stack)
		return
	}
	fmt.Fprintf(os.Stderr, "goconn: panic: %v\n%s", v, stack)
}

// goSafe starts f on a new goroutine that recovers its own panics.
func goSafe(f func()) {
	go func() {
		defer func() {
			if v := recover(); v != nil {
				reportPanic(v)
			}
		}()
		f()
	}()
}

// runSafe runs f, recovering a panic.
func runSafe(f func()) {
	defer func() {
		if v := recover(); v != nil {
			reportPanic(v)
		}
	}()
	f()
}

// GoSafe starts f on a goroutine that recovers and reports its panics. Other
// packages of the library use it for their own goroutines.
func GoSafe(f func()) { goSafe(f) }

// failpoint is a test hook: the capi layer installs one that panics at a
// named place (see capi/failpoint.go). It is nil in normal use.
var failpoint func(name string)

// SetFailpoint installs the test hook.
func SetFailpoint(f func(name string)) { failpoint = f }

func checkFailpoint(name string) {
	if failpoint != nil {
		failpoint(name)
	}
}
