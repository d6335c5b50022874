package main

/*
#include <errno.h>
#include <string.h>
#include <stdint.h>
#include <stdlib.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>

// goconnx_fill_sockaddr writes an address into a caller's buffer, as
// getpeername(2) would. *len is the buffer size on entry, the address size on
// return.
static int goconnx_fill_sockaddr(struct sockaddr *out, socklen_t *len, int family, const uint8_t *ip,
                                 int port, uint32_t flowinfo, uint32_t scope, const char *path) {
	if (family == AF_INET) {
		struct sockaddr_in sin;
		memset(&sin, 0, sizeof sin);
		sin.sin_family = AF_INET;
		sin.sin_port = htons((uint16_t)port);
		memcpy(&sin.sin_addr, ip, 4);
		if (*len < (socklen_t)sizeof sin) return -ENOSPC;
		memcpy(out, &sin, sizeof sin);
		*len = sizeof sin;
		return 0;
	}
	if (family == AF_INET6) {
		struct sockaddr_in6 sin6;
		memset(&sin6, 0, sizeof sin6);
		sin6.sin6_family = AF_INET6;
		sin6.sin6_port = htons((uint16_t)port);
		sin6.sin6_flowinfo = htonl(flowinfo);
		memcpy(&sin6.sin6_addr, ip, 16);
		sin6.sin6_scope_id = scope;
		if (*len < (socklen_t)sizeof sin6) return -ENOSPC;
		memcpy(out, &sin6, sizeof sin6);
		*len = sizeof sin6;
		return 0;
	}
	if (family == AF_UNIX) {
		struct sockaddr_un sun;
		size_t n = strlen(path);
		memset(&sun, 0, sizeof sun);
		sun.sun_family = AF_UNIX;
		if (n >= sizeof sun.sun_path) n = sizeof sun.sun_path - 1;
		memcpy(sun.sun_path, path, n);
		socklen_t need = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
		if (*len < need) return -ENOSPC;
		memcpy(out, &sun, need);
		*len = need;
		return 0;
	}
	return -EAFNOSUPPORT;
}
*/
import "C"

import (
	"unsafe"

	"github.com/goconn/goconn/core"
)

// fillSockaddr copies a core address into a caller's sockaddr buffer.
func fillSockaddr(a core.SockAddr, out *C.struct_sockaddr, n *C.socklen_t) C.int {
	ip := a.IP.As16()
	if a.IP.Is4() {
		v4 := a.IP.As4()
		copy(ip[:], v4[:])
	}
	path := C.CString(a.Path)
	defer C.free(unsafe.Pointer(path))
	return C.goconnx_fill_sockaddr(out, n, C.int(a.Family), (*C.uint8_t)(unsafe.Pointer(&ip[0])),
		C.int(a.Port), C.uint32_t(a.Flowinfo), C.uint32_t(a.ScopeID), path)
}
