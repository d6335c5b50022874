package main

/*
#include <stdint.h>
#include "goconn.h"

// The loop handle is read as a number so Go never holds it as a pointer.
static inline uintptr_t goconnx_loop_of(const goconn_options *o) { return (uintptr_t)o->loop; }
static inline int goconnx_has_ssl(const goconn_options *o) { return o->ssl != 0; }
*/
import "C"

import (
	"errors"
	"math"

	"github.com/goconn/goconn/core"
)

// errVersion reports a struct version this library does not know.
var errVersion = errors.New("unsupported struct version")

func checkVersion(v C.uint, max C.uint) error {
	if v == 0 || v > max {
		return errVersion
	}
	return nil
}

func optString(p *C.char) *string {
	if p == nil {
		return nil
	}
	s := C.GoString(p)
	return &s
}

func optFloat(has C.int, v C.double) *float64 {
	if has == 0 {
		return nil
	}
	f := float64(v)
	return &f
}

// optionsFromC copies a goconn_options into Go. Nothing of the caller's is
// kept: strings are copied now.
func optionsFromC(o *C.goconn_options) (core.Options, uintptr, error) {
	var opts core.Options
	if err := checkVersion(o.version, C.GOCONN_OPTIONS_VERSION); err != nil {
		return opts, 0, err
	}
	if o.host != nil {
		var h string
		if o.host_len > 0 {
			if o.host_len > math.MaxInt32 {
				return opts, 0, &core.ValueError{Text: "host is too long"}
			}
			h = C.GoStringN(o.host, C.int(o.host_len))
		} else {
			h = C.GoString(o.host)
		}
		opts.Host = &h
	}
	opts.Port = optString(o.port)
	opts.Family = int(o.family)
	opts.Proto = int(o.proto)
	opts.Flags = int(o.flags)
	if o.has_sock != 0 {
		fd := int(o.sock)
		opts.Sock = &fd
	}
	if o.has_local_addr != 0 {
		opts.LocalAddr = &core.Endpoint{
			Host:     optString(o.local_host),
			Port:     optString(o.local_port),
			Flowinfo: uint32(o.local_flowinfo),
			ScopeID:  uint32(o.local_scope_id),
		}
	}
	if C.goconnx_has_ssl(o) != 0 {
		opts.TLS = &core.TLSOptions{}
	}
	opts.ServerHostname = optString(o.server_hostname)
	opts.SSLHandshakeTimeout = optFloat(o.has_ssl_handshake_timeout, o.ssl_handshake_timeout)
	opts.SSLShutdownTimeout = optFloat(o.has_ssl_shutdown_timeout, o.ssl_shutdown_timeout)
	opts.HappyEyeballsDelay = optFloat(o.has_happy_eyeballs_delay, o.happy_eyeballs_delay)
	if o.has_interleave != 0 {
		v := int(o.interleave)
		opts.Interleave = &v
	}
	opts.AllErrors = o.all_errors != 0
	switch o.tcp_nodelay {
	case C.GOCONN_NODELAY_ASYNCIO:
		opts.NoDelay = core.NoDelayAsyncio
	case C.GOCONN_NODELAY_ON:
		opts.NoDelay = core.NoDelayOn
	case C.GOCONN_NODELAY_OFF:
		opts.NoDelay = core.NoDelayOff
	default:
		return opts, 0, &core.ValueError{Text: "tcp_nodelay must be GOCONN_NODELAY_ASYNCIO, _ON or _OFF"}
	}
	return opts, uintptr(C.goconnx_loop_of(o)), nil
}
