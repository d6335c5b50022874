/* Trampolines: Go cannot call a C function pointer, so these static inline
 * functions do it. Function pointers and user pointers cross from Go as
 * uintptr_t and become pointers only here. Included by protocol.go only. */
#ifndef GOCONNX_TRAMPOLINES_H
#define GOCONNX_TRAMPOLINES_H

#include <stdint.h>
#include "goconn.h"

typedef int (*goconnx_factory_fn)(void *, goconn_transport *, void **);
typedef void (*goconnx_made_fn)(void *, goconn_transport *);
typedef void (*goconnx_data_fn)(void *, const void *, size_t);
typedef int (*goconnx_eof_fn)(void *);
typedef void (*goconnx_lost_fn)(void *, const goconn_error *);
typedef void (*goconnx_void_fn)(void *);
typedef void *(*goconnx_get_buffer_fn)(void *, ptrdiff_t, size_t *);
typedef void (*goconnx_buffer_updated_fn)(void *, size_t);

static inline int goconnx_call_factory(uintptr_t fn, uintptr_t userdata, uintptr_t transport, uintptr_t *protocol_out) {
	void *p = 0;
	int rc = ((goconnx_factory_fn)fn)((void *)userdata, (goconn_transport *)transport, &p);
	*protocol_out = (uintptr_t)p;
	return rc;
}

static inline void goconnx_call_made(uintptr_t fn, uintptr_t protocol, uintptr_t transport) {
	((goconnx_made_fn)fn)((void *)protocol, (goconn_transport *)transport);
}

static inline void goconnx_call_data(uintptr_t fn, uintptr_t protocol, const void *data, size_t len) {
	((goconnx_data_fn)fn)((void *)protocol, data, len);
}

static inline void *goconnx_call_get_buffer(uintptr_t fn, uintptr_t protocol, ptrdiff_t size_hint, size_t *size_out) {
	*size_out = 0;
	return ((goconnx_get_buffer_fn)fn)((void *)protocol, size_hint, size_out);
}

static inline void goconnx_call_buffer_updated(uintptr_t fn, uintptr_t protocol, size_t nbytes) {
	((goconnx_buffer_updated_fn)fn)((void *)protocol, nbytes);
}

static inline int goconnx_call_eof(uintptr_t fn, uintptr_t protocol) {
	return ((goconnx_eof_fn)fn)((void *)protocol);
}

static inline void goconnx_call_lost(uintptr_t fn, uintptr_t protocol, const goconn_error *error) {
	((goconnx_lost_fn)fn)((void *)protocol, error);
}

static inline void goconnx_call_void(uintptr_t fn, uintptr_t protocol) {
	((goconnx_void_fn)fn)((void *)protocol);
}

static inline void goconnx_call_trace(uintptr_t fn, uintptr_t userdata, const goconn_trace_event *event) {
	((goconn_trace_cb)fn)((void *)userdata, event);
}

static inline void goconnx_call_done(uintptr_t fn, uintptr_t userdata, uintptr_t transport, uintptr_t protocol,
                                     const goconn_error *error) {
	((goconn_connect_cb)fn)((void *)userdata, (goconn_transport *)transport, (void *)protocol, error);
}

#endif
