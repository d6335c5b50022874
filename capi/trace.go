package main

/*
#include "trampolines.h"
*/
import "C"

import (
	"unsafe"

	"github.com/goconn/goconn/core"
)

// traceForwarder turns core trace events into goconn_trace_event calls of
// the user's on_trace. Core posts them through the connection's executor,
// so they arrive where its other callbacks do, and never after on_done.
func traceForwarder(fn, userdata uintptr) func(core.TraceEvent) {
	return func(ev core.TraceEvent) {
		var a cArena
		defer a.free()
		e := (*C.goconn_trace_event)(a.alloc(C.sizeof_goconn_trace_event))
		e.version = C.GOCONN_TRACE_EVENT_VERSION
		e.kind = C.int(ev.Kind)
		e.time_ns = C.int64_t(ev.Time)
		switch ev.Kind {
		case core.TraceResolveStart, core.TraceResolveEnd:
			e.resolution = a.resolutionOf(&ev.Resolution)
		default:
			e.attempt = a.attemptOf(&ev.Attempt)
		}
		C.goconnx_call_trace(C.uintptr_t(fn), C.uintptr_t(userdata), e)
	}
}

// resolutionOf builds one goconn_resolution.
func (a *cArena) resolutionOf(r *core.Resolution) *C.goconn_resolution {
	c := (*C.goconn_resolution)(a.alloc(C.sizeof_goconn_resolution))
	c.version = C.GOCONN_RESOLUTION_VERSION
	c.family = C.int(r.Family)
	c.start_ns = C.int64_t(r.Start)
	c.end_ns = C.int64_t(r.End)
	c.count = C.size_t(r.Count)
	if r.Err != nil {
		_, errnum, _ := codeOf(r.Err)
		c.errnum = C.int(errnum)
		c.error = a.str(r.Err.Error())
	}
	return c
}

// resolutionsOf builds the C array of lookup records.
func (a *cArena) resolutionsOf(rs []core.Resolution) (**C.goconn_resolution, C.size_t) {
	n := len(rs)
	if n == 0 {
		return nil, 0
	}
	arr := (*[1 << 28]*C.goconn_resolution)(a.alloc(uintptr(n) * unsafe.Sizeof(uintptr(0))))[:n:n]
	for i := range rs {
		arr[i] = a.resolutionOf(&rs[i])
	}
	return &arr[0], C.size_t(n)
}
