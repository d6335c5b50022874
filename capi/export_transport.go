package main

/*
#include <errno.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include "goconn.h"
*/
import "C"

import (
	"unsafe"

	"github.com/goconn/goconn/core"
)

// Every transport export looks its handle up first: a dead or foreign handle
// gives -EBADF, never a crash.

//export goconnx_transport_write
func goconnx_transport_write(id C.uintptr_t, data unsafe.Pointer, n C.size_t) (rc C.int) {
	if rc, ok := enter(); !ok {
		return rc
	}
	defer recoverExport(&rc)
	failpoint("goconn_transport_write")
	th := transportFrom(uintptr(id))
	if th == nil {
		return -C.EBADF
	}
	if n == 0 {
		return rcOf(th.t.Write(nil))
	}
	if data == nil || n > maxWrite {
		return -C.EINVAL
	}
	// Write copies what it keeps, so a view of the caller's bytes is enough.
	return rcOf(th.t.Write(unsafe.Slice((*byte)(data), int(n))))
}

// maxWrite bounds one write, so a garbage length is an error, not a crash.
const maxWrite = 1 << 40

//export goconnx_transport_writelines
func goconnx_transport_writelines(id C.uintptr_t, iov *C.struct_iovec, count C.size_t) (rc C.int) {
	if rc, ok := enter(); !ok {
		return rc
	}
	defer recoverExport(&rc)
	th := transportFrom(uintptr(id))
	if th == nil {
		return -C.EBADF
	}
	if (count > 0 && iov == nil) || count > 1<<20 {
		return -C.EINVAL
	}
	views := make([][]byte, 0, int(count))
	total := C.size_t(0)
	for _, b := range unsafe.Slice(iov, int(count)) {
		if b.iov_len == 0 {
			continue
		}
		total += b.iov_len
		if b.iov_base == nil || b.iov_len > maxWrite || total > maxWrite {
			return -C.EINVAL
		}
		views = append(views, unsafe.Slice((*byte)(b.iov_base), int(b.iov_len)))
	}
	return rcOf(th.t.Writelines(views))
}

// handleCall runs f on a live transport handle, inside the export guards:
// a poisoned library, a panic, or a dead handle never reach f.
func handleCall(id C.uintptr_t, f func(th *transportHandle) C.int) (rc C.int) {
	if rc, ok := enter(); !ok {
		return rc
	}
	defer recoverExport(&rc)
	th := transportFrom(uintptr(id))
	if th == nil {
		return -C.EBADF
	}
	return f(th)
}

// transportCall runs f on a live transport.
func transportCall(id C.uintptr_t, f func(t *core.Transport) C.int) C.int {
	return handleCall(id, func(th *transportHandle) C.int { return f(th.t) })
}

// addressCall copies one of the transport's addresses into a caller buffer.
func addressCall(id C.uintptr_t, addr *C.struct_sockaddr, n *C.socklen_t, get func(*core.Transport) (core.SockAddr, bool)) C.int {
	return transportCall(id, func(t *core.Transport) C.int {
		if addr == nil || n == nil {
			return -C.EINVAL
		}
		a, ok := get(t)
		if !ok {
			return -C.ENOTCONN
		}
		return fillSockaddr(a, addr, n)
	})
}

func boolRC(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

//export goconnx_transport_write_eof
func goconnx_transport_write_eof(id C.uintptr_t) C.int {
	return transportCall(id, func(t *core.Transport) C.int { return rcOf(t.WriteEOF()) })
}

//export goconnx_transport_can_write_eof
func goconnx_transport_can_write_eof(id C.uintptr_t) C.int {
	return transportCall(id, func(t *core.Transport) C.int { return boolRC(t.CanWriteEOF()) })
}

//export goconnx_transport_close
func goconnx_transport_close(id C.uintptr_t) C.int {
	return transportCall(id, func(t *core.Transport) C.int { t.Close(); return 0 })
}

//export goconnx_transport_abort
func goconnx_transport_abort(id C.uintptr_t) C.int {
	return transportCall(id, func(t *core.Transport) C.int { return boolRC(t.Abort()) })
}

//export goconnx_transport_is_closing
func goconnx_transport_is_closing(id C.uintptr_t) C.int {
	return transportCall(id, func(t *core.Transport) C.int { return boolRC(t.IsClosing()) })
}

//export goconnx_transport_pause_reading
func goconnx_transport_pause_reading(id C.uintptr_t) C.int {
	return transportCall(id, func(t *core.Transport) C.int { t.PauseReading(); return 0 })
}

//export goconnx_transport_resume_reading
func goconnx_transport_resume_reading(id C.uintptr_t) C.int {
	return transportCall(id, func(t *core.Transport) C.int { t.ResumeReading(); return 0 })
}

//export goconnx_transport_is_reading
func goconnx_transport_is_reading(id C.uintptr_t) C.int {
	return transportCall(id, func(t *core.Transport) C.int { return boolRC(t.IsReading()) })
}

//export goconnx_transport_set_write_buffer_limits
func goconnx_transport_set_write_buffer_limits(id C.uintptr_t, high, low C.int64_t, errbuf *C.char, size C.size_t) C.int {
	return transportCall(id, func(t *core.Transport) C.int {
		var h, l *int64
		if high != C.GOCONN_LIMIT_DEFAULT {
			v := int64(high)
			h = &v
		}
		if low != C.GOCONN_LIMIT_DEFAULT {
			v := int64(low)
			l = &v
		}
		err := t.SetWriteBufferLimits(h, l)
		writeErrbuf(errbuf, size, err)
		return rcOf(err)
	})
}

//export goconnx_transport_get_write_buffer_limits
func goconnx_transport_get_write_buffer_limits(id C.uintptr_t, lowOut, highOut *C.int64_t) C.int {
	return transportCall(id, func(t *core.Transport) C.int {
		if lowOut == nil || highOut == nil {
			return -C.EINVAL
		}
		low, high := t.WriteBufferLimits()
		*lowOut, *highOut = C.int64_t(low), C.int64_t(high)
		return 0
	})
}

//export goconnx_transport_get_write_buffer_size
func goconnx_transport_get_write_buffer_size(id C.uintptr_t, out *C.size_t) C.int {
	return transportCall(id, func(t *core.Transport) C.int {
		if out == nil {
			return -C.EINVAL
		}
		*out = C.size_t(t.WriteBufferSize())
		return 0
	})
}

//export goconnx_transport_get_fd
func goconnx_transport_get_fd(id C.uintptr_t) C.int {
	return transportCall(id, func(t *core.Transport) C.int { return C.int(t.FD()) })
}

//export goconnx_transport_get_peername
func goconnx_transport_get_peername(id C.uintptr_t, addr *C.struct_sockaddr, n *C.socklen_t) C.int {
	return addressCall(id, addr, n, (*core.Transport).Peername)
}

//export goconnx_transport_get_sockname
func goconnx_transport_get_sockname(id C.uintptr_t, addr *C.struct_sockaddr, n *C.socklen_t) C.int {
	return addressCall(id, addr, n, (*core.Transport).Sockname)
}

//export goconnx_transport_get_attempts
func goconnx_transport_get_attempts(id C.uintptr_t, out ***C.goconn_attempt, count *C.size_t) C.int {
	return handleCall(id, func(th *transportHandle) C.int {
		if out == nil || count == nil {
			return -C.EINVAL
		}
		*out, *count = th.attemptArray()
		return 0
	})
}

//export goconnx_transport_get_resolutions
func goconnx_transport_get_resolutions(id C.uintptr_t, out ***C.goconn_resolution, count *C.size_t) C.int {
	return handleCall(id, func(th *transportHandle) C.int {
		if out == nil || count == nil {
			return -C.EINVAL
		}
		*out, *count = th.resolutionArray()
		return 0
	})
}
