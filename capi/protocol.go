package main

/*
#include "trampolines.h"
*/
import "C"

import (
	"math"
	"sync"
	"unsafe"

	"github.com/goconn/goconn/core"
)

// protocolFns is a copy of the caller's goconn_protocol: function pointers
// as plain numbers, turned back into pointers only in trampolines.h.
type protocolFns struct {
	factory, made, data, eof, lost, pause, resume uintptr
	getBuffer, bufferUpdated                      uintptr // version 2
}

// protocolFnsFromC reads the fields the struct's version has: a version 1
// caller's struct ends before get_buffer.
func protocolFnsFromC(p *C.goconn_protocol) protocolFns {
	fns := protocolFns{
		factory: uintptr(unsafe.Pointer(p.factory)),
		made:    uintptr(unsafe.Pointer(p.connection_made)),
		data:    uintptr(unsafe.Pointer(p.data_received)),
		eof:     uintptr(unsafe.Pointer(p.eof_received)),
		lost:    uintptr(unsafe.Pointer(p.connection_lost)),
		pause:   uintptr(unsafe.Pointer(p.pause_writing)),
		resume:  uintptr(unsafe.Pointer(p.resume_writing)),
	}
	if p.version >= 2 {
		fns.getBuffer = uintptr(unsafe.Pointer(p.get_buffer))
		fns.bufferUpdated = uintptr(unsafe.Pointer(p.buffer_updated))
	}
	return fns
}

// protocolSize is how many bytes of goconn_protocol a caller of this
// version has.
func protocolSize(p *C.goconn_protocol, version C.uint) uintptr {
	if version == 1 {
		return unsafe.Offsetof(p.get_buffer)
	}
	return unsafe.Sizeof(*p)
}

// errHalfBuffered: get_buffer without buffer_updated, or the reverse.
var errHalfBuffered = &core.ValueError{Text: "goconn_protocol: get_buffer and buffer_updated must be set together"}

// connection is one goconn_open_connection call: the value behind its
// goconn_request handle, live until on_done returns.
type connection struct {
	reqID    uintptr
	fns      protocolFns
	onDone   uintptr
	userdata uintptr

	mu  sync.Mutex
	req *core.Request
}

// transportHandle is the value behind a goconn_transport handle, live from
// the factory call until connection_lost returns. It is also the
// core.Protocol that forwards events to the user's callbacks.
type transportHandle struct {
	id       uintptr
	t        *core.Transport
	conn     *connection
	protocol uintptr // the user's protocol pointer

	attemptsMu sync.Mutex
	released   bool    // connection_lost has returned
	attempts   *cArena // C copy of the attempt trace, made on first request
	attemptArr **C.goconn_attempt
	attemptN   C.size_t
	resArr     **C.goconn_resolution
	resN       C.size_t

	// C copies of the TLS session data, made on first request and freed
	// with the handle (guarded by attemptsMu).
	tlsArena *cArena
	tlsC     *C.goconn_tls_info
	certs    []unsafe.Pointer
}

// factory is core's Factory: it makes the transport handle, then calls the
// user's factory.
func (c *connection) factory(t *core.Transport) (core.Protocol, error) {
	th := &transportHandle{t: t, conn: c, protocol: c.userdata}
	th.id = handles.add(th)
	if c.fns.factory != 0 {
		var p C.uintptr_t
		if C.goconnx_call_factory(C.uintptr_t(c.fns.factory), C.uintptr_t(c.userdata), C.uintptr_t(th.id), &p) != 0 {
			handles.remove(th.id)
			return nil, core.ErrFactoryFailed
		}
		th.protocol = uintptr(p)
	}
	return th, nil
}

// done is core's Done: it calls on_done, then retires the request handle.
func (c *connection) done(res core.Result) {
	defer handles.remove(c.reqID)
	if c.onDone == 0 {
		return
	}
	var tid, proto uintptr
	var cerr *C.goconn_error
	if res.Err != nil {
		var arena cArena
		defer arena.free()
		cerr = arena.errorOf(res.Err, res.Attempts, res.Resolutions...)
	} else if th, ok := res.Protocol.(*transportHandle); ok {
		tid, proto = th.id, th.protocol
	}
	C.goconnx_call_done(C.uintptr_t(c.onDone), C.uintptr_t(c.userdata), C.uintptr_t(tid), C.uintptr_t(proto), cerr)
}

func (th *transportHandle) ConnectionMade(*core.Transport) {
	if fn := th.conn.fns.made; fn != 0 {
		C.goconnx_call_made(C.uintptr_t(fn), C.uintptr_t(th.protocol), C.uintptr_t(th.id))
	}
}

func (th *transportHandle) DataReceived(data []byte) {
	if fn := th.conn.fns.data; fn != 0 && len(data) > 0 {
		C.goconnx_call_data(C.uintptr_t(fn), C.uintptr_t(th.protocol), unsafe.Pointer(&data[0]), C.size_t(len(data)))
	}
}

// Buffered, GetBuffer and BufferUpdated make the handle a
// core.BufferedProtocol when the caller set get_buffer.
func (th *transportHandle) Buffered() bool { return th.conn.fns.getBuffer != 0 }

func (th *transportHandle) GetBuffer(sizeHint int) []byte {
	var size C.size_t
	p := C.goconnx_call_get_buffer(C.uintptr_t(th.conn.fns.getBuffer), C.uintptr_t(th.protocol),
		C.ptrdiff_t(sizeHint), &size)
	// A size no buffer can have (over PTRDIFF_MAX, e.g. (size_t)-1) is a
	// caller bug: treated as no buffer (GOCONN_EBUFFER), not as memory.
	if p == nil || size == 0 || uint64(size) > math.MaxInt64 {
		return nil
	}
	return unsafe.Slice((*byte)(p), int(size))
}

func (th *transportHandle) BufferUpdated(n int) {
	C.goconnx_call_buffer_updated(C.uintptr_t(th.conn.fns.bufferUpdated), C.uintptr_t(th.protocol), C.size_t(n))
}

func (th *transportHandle) EOFReceived() bool {
	if fn := th.conn.fns.eof; fn != 0 {
		return C.goconnx_call_eof(C.uintptr_t(fn), C.uintptr_t(th.protocol)) != 0
	}
	return false
}

// ConnectionLost calls the user's connection_lost, then retires the
// transport handle and the C memory that was valid until now.
func (th *transportHandle) ConnectionLost(err error) {
	defer th.release()
	if fn := th.conn.fns.lost; fn != 0 {
		var cerr *C.goconn_error
		if err != nil {
			var arena cArena
			defer arena.free()
			cerr = arena.errorOf(err, nil)
		}
		C.goconnx_call_lost(C.uintptr_t(fn), C.uintptr_t(th.protocol), cerr)
	}
}

func (th *transportHandle) PauseWriting() {
	if fn := th.conn.fns.pause; fn != 0 {
		C.goconnx_call_void(C.uintptr_t(fn), C.uintptr_t(th.protocol))
	}
}

func (th *transportHandle) ResumeWriting() {
	if fn := th.conn.fns.resume; fn != 0 {
		C.goconnx_call_void(C.uintptr_t(fn), C.uintptr_t(th.protocol))
	}
}

func (th *transportHandle) release() {
	handles.remove(th.id)
	th.attemptsMu.Lock()
	defer th.attemptsMu.Unlock()
	th.released = true
	if th.attempts != nil {
		th.attempts.free()
		th.attempts = nil
	}
	if th.tlsArena != nil {
		th.tlsArena.free()
		th.tlsArena, th.tlsC, th.certs = nil, nil, nil
	}
}

// tlsInfo returns the C copy of the TLS session data, or nil for plain TCP.
func (th *transportHandle) tlsInfo() *C.goconn_tls_info {
	th.attemptsMu.Lock()
	defer th.attemptsMu.Unlock()
	if th.released || th.t.TLSInfo() == nil {
		return nil
	}
	th.makeTLSCopyLocked()
	return th.tlsC
}

// peerCertificate returns the index-th peer certificate's DER bytes.
func (th *transportHandle) peerCertificate(index int) (unsafe.Pointer, int, bool) {
	th.attemptsMu.Lock()
	defer th.attemptsMu.Unlock()
	info := th.t.TLSInfo()
	if th.released || info == nil || index < 0 || index >= len(info.PeerChain) {
		return nil, 0, false
	}
	th.makeTLSCopyLocked()
	return th.certs[index], len(info.PeerChain[index]), true
}

func (th *transportHandle) makeTLSCopyLocked() {
	if th.tlsArena != nil {
		return
	}
	info := th.t.TLSInfo()
	a := &cArena{}
	c := (*C.goconn_tls_info)(a.alloc(C.sizeof_goconn_tls_info))
	c.version = C.GOCONN_TLS_INFO_VERSION
	c.protocol_version = C.int(info.Version)
	c.protocol = a.str(info.VersionName)
	c.cipher = a.str(info.Cipher)
	c.cipher_protocol = a.str(info.CipherProto)
	c.cipher_bits = C.int(info.CipherBits)
	if info.ALPN != "" {
		c.alpn = a.str(info.ALPN)
	}
	if info.Resumed {
		c.session_resumed = 1
	}
	if info.ServerName != "" {
		c.server_hostname = a.str(info.ServerName)
	}
	if info.Verified {
		c.verified = 1
	}
	c.peer_certificates = C.size_t(len(info.PeerChain))
	for _, der := range info.PeerChain {
		p := a.alloc(uintptr(len(der)) + 1)
		copy(unsafe.Slice((*byte)(p), len(der)), der)
		th.certs = append(th.certs, p)
	}
	th.tlsArena, th.tlsC = a, c
}

// attemptArray returns the C copy of the attempt trace, made once.
func (th *transportHandle) attemptArray() (**C.goconn_attempt, C.size_t) {
	th.attemptsMu.Lock()
	defer th.attemptsMu.Unlock()
	if th.released {
		return nil, 0 // a call racing connection_lost: nothing to hand out
	}
	th.makeTraceCopyLocked()
	return th.attemptArr, th.attemptN
}

// resolutionArray returns the C copy of the lookups, made once.
func (th *transportHandle) resolutionArray() (**C.goconn_resolution, C.size_t) {
	th.attemptsMu.Lock()
	defer th.attemptsMu.Unlock()
	if th.released {
		return nil, 0
	}
	th.makeTraceCopyLocked()
	return th.resArr, th.resN
}

func (th *transportHandle) makeTraceCopyLocked() {
	if th.attempts != nil {
		return
	}
	th.attempts = &cArena{}
	if at := th.t.Attempts(); len(at) > 0 {
		th.attemptArr, th.attemptN = th.attempts.attemptsOf(at)
	}
	th.resArr, th.resN = th.attempts.resolutionsOf(th.t.Resolutions())
}
