/*
 * shim.c - the public goconn_* functions.
 *
 * Each definition here is checked by the compiler against its prototype in
 * the hand-written include/goconn.h, then hands its arguments to the Go
 * export of the same name with an "x" (goconnx_*), which the linker version
 * script keeps private. Handles and user pointers are passed as uintptr_t.
 *
 * It also holds what must not enter the Go runtime: the fork guard (a child
 * process after fork() has no Go runtime threads, so any call into Go could
 * hang) and the static strings.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "goconn.h"
#include "_cgo_export.h"

/* ---- fork guard ---------------------------------------------------------- */

static volatile int goconnx_forked = 0;
static pid_t goconnx_pid = 0;

static void goconnx_after_fork_child(void) { goconnx_forked = 1; }

__attribute__((constructor)) static void goconnx_register_fork_guard(void) {
    goconnx_pid = getpid();
    pthread_atfork(NULL, NULL, goconnx_after_fork_child);
}

/* in_child is true in a process forked after the library was loaded.
 * fork() runs the pthread_atfork handler, so the flag alone answers for the
 * calls made per event (dispatch, writes, getters): getpid() is a system
 * call, and these run thousands of times a second. Where a loop or a
 * connection is made, getpid() also catches a child of a raw clone() or
 * _Fork(), which run no atfork handler. */
static int in_child(void) { return goconnx_forked; }

static int in_child_checked(void) {
    if (goconnx_forked) return 1;
    if (goconnx_pid != 0 && getpid() != goconnx_pid) {
        goconnx_forked = 1;
        return 1;
    }
    return 0;
}

#define GUARD()                          \
    do {                                 \
        if (in_child()) return GOCONN_EFORKED; \
    } while (0)

#define GUARD_CHECKED()                  \
    do {                                 \
        if (in_child_checked()) return GOCONN_EFORKED; \
    } while (0)

/* ---- versions and codes -------------------------------------------------- */

int goconn_abi_version(void) { return GOCONN_ABI_VERSION; }

#define GOCONNX_STR2(x) #x
#define GOCONNX_STR(x) GOCONNX_STR2(x)

const char *goconn_version(void) {
    return GOCONNX_STR(GOCONN_VERSION_MAJOR) "." GOCONNX_STR(GOCONN_VERSION_MINOR) "." GOCONNX_STR(GOCONN_VERSION_PATCH);
}

const char *goconn_strerror(int code) {
    switch (code) {
    case 0: return "success";
    case GOCONN_EINTERNAL: return "internal error: a panic inside goconn; the library is now unusable";
    case GOCONN_EPOISONED: return "goconn is unusable after an earlier internal error";
    case GOCONN_EVERSION: return "struct version not supported by this library";
    case GOCONN_EFORKED: return "goconn cannot be used in a child process after fork()";
    case GOCONN_EGAI: return "name resolution failed";
    case GOCONN_EOSERROR: return "OS error";
    case GOCONN_EMULTIPLE: return "multiple connection attempts failed";
    case GOCONN_EGROUP: return "create_connection failed (see the causes)";
    case GOCONN_EOVERFLOW: return "port must be 0-65535";
    case GOCONN_ETIMEOUT: return "timed out";
    case GOCONN_ENOTSTREAM: return "a stream socket was expected";
    case GOCONN_EFACTORY: return "the protocol factory failed";
    case GOCONN_EWRITEEOF: return "Cannot call write() after write_eof()";
    case GOCONN_ECLOSING: return "the transport is closing; data dropped";
    case GOCONN_EREENTRANT: return "goconn_loop_dispatch called from inside a callback";
    case GOCONN_ECERTVERIFY: return "TLS certificate verification failed";
    case GOCONN_EHOSTNAME: return "TLS certificate is not valid for the host";
    case GOCONN_EHANDSHAKETIMEOUT: return "TLS handshake timed out";
    case GOCONN_ETLS: return "TLS error";
    case GOCONN_EBUFFER: return "get_buffer() returned an empty buffer";
    }
    if (code < 0 && code > -4096) {
        /* strerror's table is static for known errnos. */
        return strerror(-code);
    }
    return "unknown error";
}

/* ---- loop ---------------------------------------------------------------- */

int goconn_loop_new(goconn_loop **out) {
    GUARD_CHECKED();
    if (out == NULL) return -EINVAL;
    uintptr_t id = 0;
    int rc = goconnx_loop_new(&id);
    *out = rc == 0 ? (goconn_loop *)id : NULL;
    return rc;
}

int goconn_loop_fd(const goconn_loop *loop) {
    GUARD();
    return goconnx_loop_fd((uintptr_t)loop);
}

int goconn_loop_dispatch(goconn_loop *loop, int max) {
    GUARD();
    return goconnx_loop_dispatch((uintptr_t)loop, max);
}

int goconn_loop_free(goconn_loop *loop) {
    GUARD_CHECKED();
    return goconnx_loop_free((uintptr_t)loop);
}

int goconn_live_handles(void) {
    GUARD_CHECKED();
    return goconnx_live_handles();
}

/* ---- connecting ---------------------------------------------------------- */

int goconn_options_init(goconn_options *options, unsigned int version) {
    GUARD();
    return goconnx_options_init(options, version);
}

int goconn_ssl_options_init(goconn_ssl_options *options, unsigned int version) {
    GUARD();
    return goconnx_ssl_options_init(options, version);
}

int goconn_protocol_init(goconn_protocol *protocol, unsigned int version) {
    GUARD();
    return goconnx_protocol_init(protocol, version);
}

int goconn_open_connection(const goconn_options *options, const goconn_protocol *protocol,
                           goconn_connect_cb on_done, void *userdata, goconn_request **request_out) {
    GUARD_CHECKED();
    /* The library stores the handle before any background work starts, so
     * it is in place even if on_done runs (in direct mode) before we return. */
    return goconnx_open_connection((goconn_options *)options, (goconn_protocol *)protocol,
                                   (uintptr_t)on_done, (uintptr_t)userdata, (uintptr_t *)request_out);
}

int goconn_request_cancel(goconn_request *request) {
    GUARD();
    return goconnx_request_cancel((uintptr_t)request);
}

/* ---- transport ----------------------------------------------------------- */

int goconn_transport_write(goconn_transport *t, const void *data, size_t len) {
    GUARD();
    return goconnx_transport_write((uintptr_t)t, (void *)data, len);
}

int goconn_transport_writelines(goconn_transport *t, const struct iovec *iov, size_t count) {
    GUARD();
    return goconnx_transport_writelines((uintptr_t)t, (struct iovec *)iov, count);
}

int goconn_transport_write_eof(goconn_transport *t) { GUARD(); return goconnx_transport_write_eof((uintptr_t)t); }
int goconn_transport_can_write_eof(goconn_transport *t) { GUARD(); return goconnx_transport_can_write_eof((uintptr_t)t); }
int goconn_transport_close(goconn_transport *t) { GUARD(); return goconnx_transport_close((uintptr_t)t); }
int goconn_transport_abort(goconn_transport *t) { GUARD(); return goconnx_transport_abort((uintptr_t)t); }
int goconn_transport_is_closing(goconn_transport *t) { GUARD(); return goconnx_transport_is_closing((uintptr_t)t); }
int goconn_transport_pause_reading(goconn_transport *t) { GUARD(); return goconnx_transport_pause_reading((uintptr_t)t); }
int goconn_transport_resume_reading(goconn_transport *t) { GUARD(); return goconnx_transport_resume_reading((uintptr_t)t); }
int goconn_transport_is_reading(goconn_transport *t) { GUARD(); return goconnx_transport_is_reading((uintptr_t)t); }
int goconn_transport_get_fd(goconn_transport *t) { GUARD(); return goconnx_transport_get_fd((uintptr_t)t); }

int goconn_transport_set_write_buffer_limits(goconn_transport *t, int64_t high, int64_t low,
                                             char *errbuf, size_t errbuf_size) {
    GUARD();
    return goconnx_transport_set_write_buffer_limits((uintptr_t)t, high, low, errbuf, errbuf_size);
}

int goconn_transport_get_write_buffer_limits(goconn_transport *t, int64_t *low_out, int64_t *high_out) {
    GUARD();
    return goconnx_transport_get_write_buffer_limits((uintptr_t)t, low_out, high_out);
}

int goconn_transport_get_write_buffer_size(goconn_transport *t, size_t *size_out) {
    GUARD();
    return goconnx_transport_get_write_buffer_size((uintptr_t)t, size_out);
}

int goconn_transport_get_peername(goconn_transport *t, struct sockaddr *addr, socklen_t *addrlen) {
    GUARD();
    return goconnx_transport_get_peername((uintptr_t)t, addr, addrlen);
}

int goconn_transport_get_sockname(goconn_transport *t, struct sockaddr *addr, socklen_t *addrlen) {
    GUARD();
    return goconnx_transport_get_sockname((uintptr_t)t, addr, addrlen);
}

int goconn_transport_get_attempts(goconn_transport *t, const goconn_attempt *const **attempts_out,
                                  size_t *count_out) {
    GUARD();
    return goconnx_transport_get_attempts((uintptr_t)t, (goconn_attempt ***)attempts_out, count_out);
}

int goconn_transport_get_tls_info(goconn_transport *t, goconn_tls_info *info) {
    GUARD();
    return goconnx_transport_get_tls_info((uintptr_t)t, info);
}

int goconn_transport_get_peer_certificate(goconn_transport *t, size_t index, const void **der_out, size_t *len_out) {
    GUARD();
    return goconnx_transport_get_peer_certificate((uintptr_t)t, index, (void **)der_out, len_out);
}

int goconn_transport_get_resolutions(goconn_transport *t, const goconn_resolution *const **resolutions_out,
                                     size_t *count_out) {
    GUARD();
    return goconnx_transport_get_resolutions((uintptr_t)t, (goconn_resolution ***)resolutions_out, count_out);
}
