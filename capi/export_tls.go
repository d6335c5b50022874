package main

/*
#include <errno.h>
#include <stdint.h>
#include "goconn.h"
*/
import "C"

import "unsafe"

//export goconnx_ssl_options_init
func goconnx_ssl_options_init(s *C.goconn_ssl_options, version C.uint) (rc C.int) {
	if rc, ok := enter(); !ok {
		return rc
	}
	defer recoverExport(&rc)
	if s == nil {
		return -C.EINVAL
	}
	if checkVersion(version, C.GOCONN_SSL_OPTIONS_VERSION) != nil {
		return C.GOCONN_EVERSION
	}
	*s = C.goconn_ssl_options{}
	s.version = version
	return 0
}

//export goconnx_transport_get_tls_info
func goconnx_transport_get_tls_info(id C.uintptr_t, out *C.goconn_tls_info) C.int {
	return handleCall(id, func(th *transportHandle) C.int {
		if out == nil || checkVersion(out.version, C.GOCONN_TLS_INFO_VERSION) != nil {
			return -C.EINVAL
		}
		c := th.tlsInfo()
		if c == nil {
			return -C.ENOENT
		}
		version := out.version
		*out = *c
		out.version = version
		return 0
	})
}

//export goconnx_transport_get_peer_certificate
func goconnx_transport_get_peer_certificate(id C.uintptr_t, index C.size_t, der *unsafe.Pointer, n *C.size_t) C.int {
	return handleCall(id, func(th *transportHandle) C.int {
		if der == nil || n == nil {
			return -C.EINVAL
		}
		p, size, ok := th.peerCertificate(int(index))
		if !ok {
			return -C.ENOENT
		}
		*der, *n = p, C.size_t(size)
		return 0
	})
}
