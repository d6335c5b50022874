package main

/*
#include <errno.h>
#include <stdint.h>
#include "goconn.h"
*/
import "C"

import "github.com/goconn/goconn/core"

// loopHandle is the value behind a goconn_loop handle.
type loopHandle struct{ loop *core.Loop }

//export goconnx_loop_new
func goconnx_loop_new(out *C.uintptr_t) (rc C.int) {
	if rc, ok := enter(); !ok {
		return rc
	}
	defer recoverExport(&rc)
	if out == nil {
		return -C.EINVAL
	}
	l, err := core.NewLoop()
	if err != nil {
		return rcOf(err)
	}
	*out = C.uintptr_t(handles.add(&loopHandle{loop: l}))
	return 0
}

//export goconnx_loop_fd
func goconnx_loop_fd(id C.uintptr_t) (rc C.int) {
	if rc, ok := enter(); !ok {
		return rc
	}
	defer recoverExport(&rc)
	lh := loopFrom(uintptr(id))
	if lh == nil {
		return -C.EBADF
	}
	return C.int(lh.loop.FD())
}

//export goconnx_loop_dispatch
func goconnx_loop_dispatch(id C.uintptr_t, max C.int) (rc C.int) {
	if rc, ok := enter(); !ok {
		return rc
	}
	defer recoverExport(&rc)
	failpoint("goconn_loop_dispatch")
	lh := loopFrom(uintptr(id))
	if lh == nil {
		return -C.EBADF
	}
	n, err := lh.loop.Dispatch(int(max))
	if err != nil {
		return rcOf(err)
	}
	return C.int(n)
}

//export goconnx_loop_free
func goconnx_loop_free(id C.uintptr_t) (rc C.int) {
	if rc, ok := enter(); !ok {
		return rc
	}
	defer recoverExport(&rc)
	lh := loopFrom(uintptr(id))
	if lh == nil {
		return -C.EBADF
	}
	if err := lh.loop.Close(); err != nil {
		return rcOf(err)
	}
	handles.remove(uintptr(id))
	return 0
}

//export goconnx_live_handles
func goconnx_live_handles() (rc C.int) {
	if rc, ok := enter(); !ok {
		return rc
	}
	defer recoverExport(&rc)
	return C.int(handles.count())
}
