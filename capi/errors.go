package main

/*
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include "goconn.h"
*/
import "C"

import (
	"errors"
	"syscall"
	"unsafe"

	"github.com/goconn/goconn/core"
)

// codeOf maps a core error to the code C sees, the errno Python's exception
// carries (0 for none), and the strerror text when there is an errno.
func codeOf(err error) (code C.int, errnum int, strerr *string) {
	var (
		oe  *core.OSError
		ge  *core.GAIError
		me  *core.MultiError
		ve  *core.ValueError
		le  *core.ListeningSocketError
		ne  *core.NotStreamError
		ov  *core.OverflowError
		te  *core.TimeoutError
		eno syscall.Errno
	)
	var (
		cve *core.CertVerifyError
		tle *core.TLSError
		hte *core.HandshakeTimeoutError
		ce  *core.ConnError
	)
	switch {
	case errors.As(err, &cve):
		// Python's ssl errors carry errno 1 (SSL_ERROR_SSL) and the whole
		// text as strerror.
		text := cve.Error()
		if cve.Hostname {
			return C.GOCONN_EHOSTNAME, 1, &text
		}
		return C.GOCONN_ECERTVERIFY, 1, &text
	case errors.As(err, &tle):
		text := tle.Error()
		return C.GOCONN_ETLS, 1, &text
	case errors.As(err, &hte):
		return C.GOCONN_EHANDSHAKETIMEOUT, 0, nil
	case errors.As(err, &ce):
		return -C.int(ce.Errno), 0, nil
	case errors.Is(err, core.ErrNotSupported):
		return -C.ENOTSUP, 0, nil
	case errors.As(err, &me):
		if me.AllErrors {
			return C.GOCONN_EGROUP, 0, nil
		}
		return C.GOCONN_EMULTIPLE, 0, nil
	case errors.As(err, &oe):
		if oe.Errno == 0 {
			return C.GOCONN_EOSERROR, 0, nil
		}
		return -C.int(oe.Errno), int(oe.Errno), &oe.Text
	case errors.As(err, &ge):
		return C.GOCONN_EGAI, ge.Code, &ge.Text
	case errors.As(err, &ve), errors.As(err, &le):
		return -C.EINVAL, 0, nil
	case errors.As(err, &ne):
		return C.GOCONN_ENOTSTREAM, 0, nil
	case errors.As(err, &ov):
		return C.GOCONN_EOVERFLOW, 0, nil
	case errors.As(err, &te):
		return C.GOCONN_ETIMEOUT, 0, nil
	case errors.Is(err, core.ErrCancelled):
		return -C.ECANCELED, 0, nil
	case errors.Is(err, core.ErrFactoryFailed):
		return C.GOCONN_EFACTORY, 0, nil
	case errors.Is(err, core.ErrWriteAfterEOF):
		return C.GOCONN_EWRITEEOF, 0, nil
	case errors.Is(err, core.ErrWriteDropped):
		return C.GOCONN_ECLOSING, 0, nil
	case errors.Is(err, core.ErrLoopBusy):
		return -C.EBUSY, 0, nil
	case errors.Is(err, core.ErrLoopClosed):
		return -C.EBADF, 0, nil
	case errors.Is(err, core.ErrReentrantDispatch):
		return C.GOCONN_EREENTRANT, 0, nil
	case errors.Is(err, core.ErrEmptyBuffer):
		return C.GOCONN_EBUFFER, 0, nil
	case errors.As(err, &eno):
		s := core.Strerror(eno)
		return -C.int(eno), int(eno), &s
	}
	return -C.EIO, 0, nil
}

// rcOf is codeOf for functions that only return a code.
func rcOf(err error) C.int {
	if err == nil {
		return 0
	}
	code, _, _ := codeOf(err)
	return code
}

// writeErrbuf copies an error's text into a caller's buffer, always
// NUL-terminated and truncated to fit.
func writeErrbuf(buf *C.char, size C.size_t, err error) {
	if buf == nil || size == 0 || err == nil {
		return
	}
	msg := err.Error()
	n := len(msg)
	if uint64(n) > uint64(size)-1 {
		n = int(size) - 1 // size is at least 1 here, and now n < len(msg)
	}
	dst := unsafe.Slice((*byte)(unsafe.Pointer(buf)), n+1)
	copy(dst, msg[:n])
	dst[n] = 0
}

// cArena owns the C memory of one callback's error data; free releases all
// of it once the callback has returned.
type cArena struct{ ptrs []unsafe.Pointer }

func (a *cArena) alloc(n uintptr) unsafe.Pointer {
	p := C.calloc(1, C.size_t(n))
	if p == nil {
		panic("goconn: out of memory")
	}
	a.ptrs = append(a.ptrs, p)
	return p
}

func (a *cArena) str(s string) *C.char {
	p := C.CString(s)
	a.ptrs = append(a.ptrs, unsafe.Pointer(p))
	return p
}

func (a *cArena) free() {
	for _, p := range a.ptrs {
		C.free(p)
	}
	a.ptrs = nil
}

// errorOf builds a goconn_error for err, with its causes and the attempt
// trace of a failed connect.
func (a *cArena) errorOf(err error, attempts []core.Attempt, resolutions ...core.Resolution) *C.goconn_error {
	e := (*C.goconn_error)(a.alloc(C.sizeof_goconn_error))
	e.version = C.GOCONN_ERROR_VERSION
	code, errnum, strerr := codeOf(err)
	e.code = code
	e.errnum = C.int(errnum)
	e.message = a.str(err.Error())
	if strerr != nil {
		e.strerror = a.str(*strerr)
	}
	var me *core.MultiError
	if errors.As(err, &me) && len(me.Errors) > 0 {
		arr := (*[1 << 28]*C.goconn_error)(a.alloc(uintptr(len(me.Errors)) * unsafe.Sizeof(uintptr(0))))[:len(me.Errors):len(me.Errors)]
		for i, cause := range me.Errors {
			arr[i] = a.errorOf(cause, nil)
		}
		e.ncauses = C.size_t(len(me.Errors))
		e.causes = &arr[0]
	}
	if len(attempts) > 0 {
		e.attempts, e.nattempts = a.attemptsOf(attempts)
	}
	e.resolutions, e.nresolutions = a.resolutionsOf(resolutions)
	var cve *core.CertVerifyError
	var tle *core.TLSError
	switch {
	case errors.As(err, &cve):
		e.reason = a.str("CERTIFICATE_VERIFY_FAILED")
		e.library = a.str("SSL")
		e.verify_code = C.int(cve.Code)
		e.verify_message = a.str(cve.Message)
	case errors.As(err, &tle):
		e.reason = a.str(tle.Reason)
		e.library = a.str("SSL")
	}
	return e
}

// attemptsOf builds the C array of attempt records.
func (a *cArena) attemptsOf(attempts []core.Attempt) (**C.goconn_attempt, C.size_t) {
	n := len(attempts)
	arr := (*[1 << 28]*C.goconn_attempt)(a.alloc(uintptr(n) * unsafe.Sizeof(uintptr(0))))[:n:n]
	for i := range attempts {
		arr[i] = a.attemptOf(&attempts[i])
	}
	return &arr[0], C.size_t(n)
}

func (a *cArena) attemptOf(at *core.Attempt) *C.goconn_attempt {
	c := (*C.goconn_attempt)(a.alloc(C.sizeof_goconn_attempt))
	c.version = C.GOCONN_ATTEMPT_VERSION
	c.outcome = C.int(at.Outcome)
	c.errnum = C.int(at.Errno)
	c.family = C.int(at.Remote.Family)
	c.start_ns = C.int64_t(at.Start)
	c.end_ns = C.int64_t(at.End)
	copyHost(&c.remote_host, at.Remote.Host)
	c.remote_port = C.int(at.Remote.Port)
	c.remote_flowinfo = C.uint32_t(at.Remote.Flowinfo)
	c.remote_scope_id = C.uint32_t(at.Remote.ScopeID)
	if at.HasLocal {
		c.has_local = 1
		copyHost(&c.local_host, at.Local.Host)
		c.local_port = C.int(at.Local.Port)
		c.local_scope_id = C.uint32_t(at.Local.ScopeID)
	}
	if at.Err != nil {
		c.error = a.str(at.Err.Error())
	}
	return c
}

func copyHost(dst *[64]C.char, s string) {
	n := min(len(s), len(dst)-1)
	for i := 0; i < n; i++ {
		dst[i] = C.char(s[i])
	}
	dst[n] = 0
}
