package main

/*
#include <stdint.h>
#include "goconn.h"

// The loop handle is read as a number so Go never holds it as a pointer.
static inline uintptr_t goconnx_loop_of(const goconn_options *o) { return (uintptr_t)o->loop; }
static inline const char *goconnx_alpn_at(const goconn_ssl_options *s, size_t i) { return s->alpn_protocols[i]; }
static inline uintptr_t goconnx_trace_fn(const goconn_options *o) { return (uintptr_t)o->on_trace; }
static inline uintptr_t goconnx_trace_user(const goconn_options *o) { return (uintptr_t)o->trace_userdata; }
*/
import "C"

import (
	"errors"
	"fmt"
	"math"
	"time"
	"unsafe"

	"github.com/goconn/goconn/capi/libc"
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
		return opts, 0, fmt.Errorf("goconn_options version %d is not supported (this library knows 1 to %d): %w",
			o.version, C.GOCONN_OPTIONS_VERSION, err)
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
	if o.ssl != nil {
		t, err := tlsOptionsFromC(o.ssl)
		if err != nil {
			return opts, 0, err
		}
		opts.TLS = t
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
	if o.version >= 2 {
		if err := optionsV2FromC(o, &opts); err != nil {
			return opts, 0, err
		}
	}
	return opts, uintptr(C.goconnx_loop_of(o)), nil
}

// optionsV2FromC reads the fields version 2 added (beyond asyncio). A
// version 1 caller's struct ends before them and is never read past.
func optionsV2FromC(o *C.goconn_options, opts *core.Options) error {
	opts.ResolutionDelay = optFloat(o.has_resolution_delay, o.resolution_delay)
	opts.AttemptTimeout = optFloat(o.has_attempt_timeout, o.attempt_timeout)
	opts.ConnectTimeout = optFloat(o.has_connect_timeout, o.connect_timeout)
	if o.addrinfo != nil {
		infos, err := addrInfosFromC(o.addrinfo)
		if err != nil {
			return err
		}
		opts.AddrInfos = infos
	}
	opts.BindNoPort = o.bind_address_no_port != 0
	if o.keepalive != 0 {
		if o.keepalive_idle < 0 || o.keepalive_interval < 0 || o.keepalive_count < 0 {
			return &core.ValueError{Text: "keepalive settings must not be negative"}
		}
		opts.Keepalive = &core.Keepalive{
			Idle:     time.Duration(o.keepalive_idle) * time.Second,
			Interval: time.Duration(o.keepalive_interval) * time.Second,
			Count:    int(o.keepalive_count),
		}
	}
	if fn := uintptr(C.goconnx_trace_fn(o)); fn != 0 {
		opts.Trace = traceForwarder(fn, uintptr(C.goconnx_trace_user(o)))
	}
	return nil
}

// addrInfosFromC copies a getaddrinfo(3) list (at most 1024 entries, so a
// cycle is an error and not a hang).
func addrInfosFromC(ai *C.struct_addrinfo) ([]core.AddrInfo, error) {
	var out []core.AddrInfo
	for ; ai != nil; ai = ai.ai_next {
		if len(out) == 1024 {
			return nil, &core.ValueError{Text: "addrinfo list longer than 1024 entries"}
		}
		addr, ok := libc.SockAddr(unsafe.Pointer(ai.ai_addr), int(ai.ai_addrlen))
		if !ok {
			return nil, &core.ValueError{Text: "addrinfo entries must be AF_INET or AF_INET6 addresses"}
		}
		proto := int(ai.ai_protocol)
		if proto == 0 {
			proto = 6 // IPPROTO_TCP
		}
		out = append(out, core.AddrInfo{Family: addr.Family, Type: 1 /* SOCK_STREAM */, Proto: proto, Addr: addr})
	}
	return out, nil
}

func optBytes(p unsafe.Pointer, n C.size_t) ([]byte, error) {
	if p == nil || n == 0 {
		return nil, nil
	}
	if n > 1<<30 {
		return nil, &core.ValueError{Text: "TLS data larger than 1 GiB"}
	}
	return C.GoBytes(p, C.int(n)), nil
}

func optPath(p *C.char) string {
	if p == nil {
		return ""
	}
	return C.GoString(p)
}

// tlsOptionsFromC copies a goconn_ssl_options, strings and buffers included.
func tlsOptionsFromC(s *C.goconn_ssl_options) (*core.TLSOptions, error) {
	if err := checkVersion(s.version, C.GOCONN_SSL_OPTIONS_VERSION); err != nil {
		return nil, fmt.Errorf("goconn_ssl_options version %d is not supported (this library knows 1 to %d): %w",
			s.version, C.GOCONN_SSL_OPTIONS_VERSION, err)
	}
	t := &core.TLSOptions{
		VerifyNone:      s.verify_mode == C.GOCONN_VERIFY_NONE,
		NoCheckHostname: s.check_hostname == C.GOCONN_CHECK_HOSTNAME_OFF,
		CAFile:          optPath(s.ca_file),
		CAPath:          optPath(s.ca_path),
		CertFile:        optPath(s.cert_file),
		KeyFile:         optPath(s.key_file),
		MinVersion:      uint16(s.min_version),
		MaxVersion:      uint16(s.max_version),
		KeyLogFile:      optPath(s.keylog_file),
		Ciphers:         optPath(s.ciphers),
		NoSessionCache:  s.no_session_cache != 0,
	}
	switch s.verify_mode {
	case C.GOCONN_VERIFY_REQUIRED, C.GOCONN_VERIFY_NONE:
	default:
		return nil, &core.ValueError{Text: "ssl.verify_mode must be GOCONN_VERIFY_REQUIRED or GOCONN_VERIFY_NONE"}
	}
	switch s.check_hostname {
	case C.GOCONN_CHECK_HOSTNAME_ON, C.GOCONN_CHECK_HOSTNAME_OFF:
	default:
		return nil, &core.ValueError{Text: "ssl.check_hostname must be GOCONN_CHECK_HOSTNAME_ON or _OFF"}
	}
	switch s.system_roots {
	case C.GOCONN_SYSTEM_ROOTS_AUTO:
		t.SystemRoots = core.RootsAuto
	case C.GOCONN_SYSTEM_ROOTS_ON:
		t.SystemRoots = core.RootsOn
	case C.GOCONN_SYSTEM_ROOTS_OFF:
		t.SystemRoots = core.RootsOff
	default:
		return nil, &core.ValueError{Text: "ssl.system_roots must be GOCONN_SYSTEM_ROOTS_AUTO, _ON or _OFF"}
	}
	for _, v := range []C.int{s.min_version, s.max_version} {
		if v != 0 && (v < C.GOCONN_TLS_1_0 || v > C.GOCONN_TLS_1_3) {
			return nil, &core.ValueError{Text: "ssl.min_version and max_version must be 0 or GOCONN_TLS_1_0 to GOCONN_TLS_1_3"}
		}
	}
	if s.key_password != nil {
		t.KeyPassword = []byte(C.GoString(s.key_password))
	}
	var err error
	if t.CAData, err = optBytes(s.ca_data, s.ca_data_len); err != nil {
		return nil, err
	}
	if t.CertData, err = optBytes(s.cert_data, s.cert_data_len); err != nil {
		return nil, err
	}
	if t.KeyData, err = optBytes(s.key_data, s.key_data_len); err != nil {
		return nil, err
	}
	if s.alpn_protocols_count > 0 {
		if s.alpn_protocols == nil || s.alpn_protocols_count > 64 {
			return nil, &core.ValueError{Text: "ssl.alpn_protocols is NULL or has more than 64 entries"}
		}
		for i := C.size_t(0); i < s.alpn_protocols_count; i++ {
			p := C.goconnx_alpn_at(s, i)
			if p == nil {
				return nil, &core.ValueError{Text: "ssl.alpn_protocols holds a NULL"}
			}
			name := C.GoString(p)
			if name == "" || len(name) > 255 {
				return nil, &core.ValueError{Text: "ALPN protocols must be 1 to 255 bytes long"}
			}
			t.ALPN = append(t.ALPN, name)
		}
	}
	return t, nil
}
