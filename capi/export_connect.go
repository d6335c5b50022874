package main

/*
#include <errno.h>
#include <stdint.h>
#include "goconn.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/goconn/goconn/capi/libc"
	"github.com/goconn/goconn/core"
)

//export goconnx_options_init
func goconnx_options_init(o *C.goconn_options, version C.uint) (rc C.int) {
	if rc, ok := enter(); !ok {
		return rc
	}
	defer recoverExport(&rc)
	if o == nil {
		return -C.EINVAL
	}
	if checkVersion(version, C.GOCONN_OPTIONS_VERSION) != nil {
		return C.GOCONN_EVERSION
	}
	// A version 1 caller's struct ends where version 2's fields begin:
	// zero only what it has.
	size := unsafe.Sizeof(*o)
	if version == 1 {
		size = unsafe.Offsetof(o.has_resolution_delay)
	}
	clear(unsafe.Slice((*byte)(unsafe.Pointer(o)), size))
	o.version = version
	return 0
}

//export goconnx_protocol_init
func goconnx_protocol_init(p *C.goconn_protocol, version C.uint) (rc C.int) {
	if rc, ok := enter(); !ok {
		return rc
	}
	defer recoverExport(&rc)
	if p == nil {
		return -C.EINVAL
	}
	if checkVersion(version, C.GOCONN_PROTOCOL_VERSION) != nil {
		return C.GOCONN_EVERSION
	}
	clear(unsafe.Slice((*byte)(unsafe.Pointer(p)), protocolSize(p, version)))
	p.version = version
	return 0
}

//export goconnx_open_connection
func goconnx_open_connection(o *C.goconn_options, p *C.goconn_protocol, onDone, userdata C.uintptr_t, reqOut *C.uintptr_t) (rc C.int) {
	if reqOut != nil {
		*reqOut = 0
	}
	if rc, ok := enter(); !ok {
		return rc
	}
	defer recoverExport(&rc)
	failpoint("goconn_open_connection")
	if o == nil || p == nil {
		return -C.EINVAL
	}
	opts, loopID, err := optionsFromC(o)
	fail := func(err error) C.int {
		writeErrbuf(o.errbuf, o.errbuf_size, err)
		return rcOf(err)
	}
	if errors.Is(err, errVersion) {
		if o.version != 0 && o.version <= C.GOCONN_OPTIONS_VERSION {
			writeErrbuf(o.errbuf, o.errbuf_size, err) // the options are readable: report why
		}
		return C.GOCONN_EVERSION
	}
	if err != nil {
		return fail(err)
	}
	if checkVersion(p.version, C.GOCONN_PROTOCOL_VERSION) != nil {
		writeErrbuf(o.errbuf, o.errbuf_size, fmt.Errorf("goconn_protocol version %d is not supported", p.version))
		return C.GOCONN_EVERSION
	}
	fns := protocolFnsFromC(p)
	if (fns.getBuffer == 0) != (fns.bufferUpdated == 0) {
		return fail(errHalfBuffered)
	}
	var exec core.Executor
	if loopID != 0 {
		lh := loopFrom(loopID)
		if lh == nil {
			return fail(fmt.Errorf("options.loop is not a live goconn_loop: %w", core.ErrLoopClosed))
		}
		if exec, err = lh.loop.Executor(); err != nil {
			return fail(err)
		}
	} else {
		exec = core.NewDirectExecutor()
	}
	opts.Resolver = libc.Resolver{}

	c := &connection{fns: fns, onDone: uintptr(onDone), userdata: uintptr(userdata)}
	c.reqID = handles.add(c)
	if reqOut != nil {
		*reqOut = C.uintptr_t(c.reqID) // before on_done can possibly run
	}
	c.mu.Lock() // cancel waits until the request is stored
	req, err := core.OpenConnection(opts, exec, core.Callbacks{Factory: c.factory, Done: c.done})
	c.req = req
	c.mu.Unlock()
	if err != nil {
		if reqOut != nil {
			*reqOut = 0
		}
		handles.remove(c.reqID)
		exec.Done()
		return fail(err)
	}
	return 0
}

//export goconnx_request_cancel
func goconnx_request_cancel(id C.uintptr_t) (rc C.int) {
	if rc, ok := enter(); !ok {
		return rc
	}
	defer recoverExport(&rc)
	c := requestFrom(uintptr(id))
	if c == nil {
		return -C.EBADF
	}
	c.mu.Lock()
	req := c.req
	c.mu.Unlock()
	if req != nil {
		req.Cancel()
	}
	return 0
}
