/*
 * goconn.h - asyncio's loop.create_connection(), as a C library.
 *
 * goconn makes an outgoing TCP connection the way Python's asyncio does
 * (name resolution with getaddrinfo semantics, Happy Eyeballs, local_addr,
 * adopting a connected socket, TCP_NODELAY) and then runs it with asyncio's
 * transport and protocol contract: connection_made, data_received,
 * eof_received, connection_lost, and pause_writing / resume_writing flow
 * control. Error texts are asyncio's, word for word.
 *
 * ---------------------------------------------------------------------------
 * Conventions
 * ---------------------------------------------------------------------------
 *
 * Return values.  Functions return 0 (or a count, or a boolean 0/1, where
 * stated) on success and a negative code on failure: -errno for system
 * errors (-EINVAL, -EBADF, ...), or one of the GOCONN_E* codes below, whose
 * magnitudes lie above the errno range.  goconn_strerror() names any code.
 *
 * If a function that takes a callback returns an error, that callback is
 * never called.
 *
 * Option structs.  Every struct the caller fills starts with
 * `unsigned int version`.  Fill it with goconn_<name>_init(&s, VERSION) (or
 * the GOCONN_<NAME>_INIT macro where one exists), then set what you need.
 * Zero means "default" for every field.  The library checks the version,
 * copies every struct and string during the call, and keeps no pointer of
 * yours after it returns.
 *
 * Handles.  goconn_loop, goconn_request and goconn_transport are opaque
 * handles, never dereferenced by you.  A handle that is no longer live (a
 * transport after its connection_lost returned, a request after its on_done
 * returned, a freed loop) is never reused by a later object, and every call
 * with it returns -EBADF.  It never crashes.
 *
 * ---------------------------------------------------------------------------
 * Thread model
 * ---------------------------------------------------------------------------
 *
 * Each connection is delivered in one of two modes, chosen by
 * goconn_options.loop:
 *
 * Loop mode (loop != NULL; what the Python package uses).  The library never
 * calls your code from its own threads.  Events are queued on the loop;
 * goconn_loop_fd() is readable while events are pending; your thread calls
 * goconn_loop_dispatch(), which runs the pending callbacks on that thread.
 * Watch the fd with poll/epoll (or asyncio's add_reader) and dispatch when it
 * is readable:
 *
 *     for (;;) {
 *         struct pollfd p = { goconn_loop_fd(loop), POLLIN, 0 };
 *         poll(&p, 1, -1);
 *         goconn_loop_dispatch(loop, 0);
 *     }
 *
 * A connect to an IP literal (or to a single options->addrinfo address) in
 * loop mode, with no attempt or connect timeout, needs no library thread
 * either: goconn_open_connection() makes the socket and starts a
 * non-blocking connect() on the calling thread, the socket waits in the
 * loop's epoll set, and the goconn_loop_dispatch() that sees it writable
 * finishes the connect and, for plain TCP, calls the factory,
 * connection_made and on_done there and then (asyncio's sock_connect).
 * Lookups, several addresses, timeouts and TLS handshakes run on library
 * threads and post their results.
 *
 * A plain (non-TLS) connection in loop mode is read there too, as asyncio's
 * selector loop reads: its socket sits in the loop's epoll set while it wants
 * data, and goconn_loop_dispatch() reads it once (up to 256 KiB, straight
 * into get_buffer's memory when the protocol has one) and calls the protocol.
 * Nothing is read ahead, so pause_reading stops the peer through TCP at once.
 * TLS connections are read and decrypted on library threads, and their
 * plaintext is queued like every other event.
 *
 * The one exception is pause_writing, which asyncio calls synchronously from
 * inside write(): in loop mode it runs on the thread that called
 * goconn_transport_write() or goconn_transport_set_write_buffer_limits(),
 * before that call returns.  Make those calls on the dispatching thread.
 *
 * Direct mode (loop == NULL).  Callbacks, on_done included, run on library
 * threads, never two at once for the same connection, in the contract's
 * order.  pause_writing is queued like every other callback.  Callbacks
 * should return quickly: a blocked callback holds up only its own
 * connection, but it holds a thread.
 *
 * Inside callbacks you may call every goconn_transport_* function,
 * goconn_request_cancel() and goconn_open_connection().  You may not call
 * goconn_loop_dispatch() (it returns GOCONN_EREENTRANT) and
 * goconn_loop_free() fails while the loop has live connections.  Callbacks
 * must not unwind through the library (no longjmp, no C++ exceptions).
 *
 * Transport functions themselves are thread-safe.
 *
 * ---------------------------------------------------------------------------
 * Environment
 * ---------------------------------------------------------------------------
 *
 * The library contains the Go runtime.  Loading it starts runtime threads and
 * installs handlers for synchronous signals (SIGSEGV, SIGBUS, SIGFPE) and
 * SIGPIPE; handlers the host installs afterwards must use SA_ONSTACK.  The
 * library never raises SIGPIPE itself (it sends with MSG_NOSIGNAL).  Only one
 * Go runtime may live in a process, so do not load a second Go c-shared
 * library beside this one.  The library cannot be unloaded: never dlclose()
 * it.  fork() is unsupported once it is loaded: in the child every goconn_*
 * call returns GOCONN_EFORKED at once instead of hanging; use exec or
 * posix_spawn.  (A child made without fork's atfork handlers, by a raw
 * clone() or _Fork(), is recognised where a loop or connection is made or a
 * loop freed, since that check costs a getpid() system call.)  A panic inside the library is recovered, reported on stderr
 * once, and poisons the library: that call returns GOCONN_EINTERNAL and
 * every later call returns GOCONN_EPOISONED.
 */
#ifndef GOCONN_H
#define GOCONN_H

#include <stddef.h>
#include <stdint.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define GOCONN_EXTERN __attribute__((visibility("default")))
#else
#define GOCONN_EXTERN
#endif

/* ------------------------------------------------------------------------ */
/* Versions                                                                  */
/* ------------------------------------------------------------------------ */

#define GOCONN_VERSION_MAJOR 0
#define GOCONN_VERSION_MINOR 1
#define GOCONN_VERSION_PATCH 0

/* The ABI generation of this header.  goconn_abi_version() must return the
 * same number, or the struct layouts below do not match the library. */
#define GOCONN_ABI_VERSION 1

/* goconn_abi_version returns the library's GOCONN_ABI_VERSION.
 * Thread: any.  Errors: none. */
GOCONN_EXTERN int goconn_abi_version(void);

/* goconn_version returns the library version as "MAJOR.MINOR.PATCH".
 * The string is static; do not free it.  Thread: any. */
GOCONN_EXTERN const char *goconn_version(void);

/* ------------------------------------------------------------------------ */
/* Error codes                                                               */
/* ------------------------------------------------------------------------ */

/* Library codes, below -errno's range.  System errors are -errno. */
#define GOCONN_EINTERNAL   (-10000) /* a panic inside the library; it is now poisoned */
#define GOCONN_EPOISONED   (-10001) /* an earlier panic poisoned the library */
#define GOCONN_EVERSION    (-10002) /* a struct's version is not one this library knows */
#define GOCONN_EFORKED     (-10003) /* called in a child process after fork() */
#define GOCONN_EGAI        (-10004) /* getaddrinfo failed; goconn_error.errnum is the EAI_* code */
#define GOCONN_EOSERROR    (-10005) /* an OSError without errno, e.g. "getaddrinfo() returned empty list" */
#define GOCONN_EMULTIPLE   (-10006) /* attempts failed differently: "Multiple exceptions: ..." */
#define GOCONN_EGROUP      (-10007) /* all_errors: every attempt's error is in causes */
#define GOCONN_EOVERFLOW   (-10008) /* a port outside 0-65535 (Python's OverflowError) */
#define GOCONN_ETIMEOUT    (-10009) /* a TimeoutError without errno */
#define GOCONN_ENOTSTREAM  (-10010) /* sock is not a SOCK_STREAM socket */
#define GOCONN_EFACTORY    (-10011) /* the protocol factory failed */
#define GOCONN_EWRITEEOF   (-10012) /* write after write_eof (asyncio's RuntimeError) */
#define GOCONN_ECLOSING    (-10013) /* write on a closing or closed transport: data dropped */
#define GOCONN_EREENTRANT  (-10014) /* goconn_loop_dispatch called from inside a callback */
#define GOCONN_ECERTVERIFY (-10015) /* TLS: the certificate chain failed verification (see verify_code) */
#define GOCONN_EHOSTNAME   (-10016) /* TLS: the certificate is not valid for the host name or IP */
#define GOCONN_EHANDSHAKETIMEOUT (-10017) /* TLS: the handshake outlived ssl_handshake_timeout */
#define GOCONN_ETLS        (-10018) /* TLS: any other TLS failure (see reason) */
#define GOCONN_EBUFFER     (-10019) /* get_buffer returned no memory (asyncio's RuntimeError) */

/* goconn_strerror describes any code this library returns: a GOCONN_E* code
 * or a negative errno.  The string is static; do not free it.
 * Thread: any.  Errors: unknown codes give "unknown error". */
GOCONN_EXTERN const char *goconn_strerror(int code);

/* ------------------------------------------------------------------------ */
/* Handles                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct goconn_loop goconn_loop;           /* an event queue for loop mode */
typedef struct goconn_request goconn_request;     /* a connection being made */
typedef struct goconn_transport goconn_transport; /* an established connection */

/* ------------------------------------------------------------------------ */
/* Errors as data                                                            */
/* ------------------------------------------------------------------------ */

/* Outcomes of one connection attempt. */
#define GOCONN_ATTEMPT_PENDING   0 /* still running (only in live trace events) */
#define GOCONN_ATTEMPT_WON       1 /* its connect won the race: the TCP connection was
                                    * made on it.  A TLS handshake after it may still
                                    * fail or time out; the request's error says so. */
#define GOCONN_ATTEMPT_FAILED    2 /* errnum says why */
#define GOCONN_ATTEMPT_CANCELLED 3 /* another attempt won, or the request was cancelled */
#define GOCONN_ATTEMPT_REFUSED   4 /* ECONNREFUSED */
#define GOCONN_ATTEMPT_TIMED_OUT 5 /* attempt_timeout ran out (errnum ETIMEDOUT), or the kernel's */

#define GOCONN_ATTEMPT_VERSION 1

/* goconn_attempt is one record of the attempt trace: where an attempt went,
 * from which local address, when it started and ended, and how it ended.
 * Host texts are as Python shows them ("::1", "fe80::1%eth0"). */
typedef struct goconn_attempt {
    unsigned int version;
    int outcome;                 /* GOCONN_ATTEMPT_* */
    int errnum;                  /* the errno of a failed attempt, or 0 */
    int family;                  /* AF_INET or AF_INET6 */
    int64_t start_ns;            /* CLOCK_MONOTONIC */
    int64_t end_ns;              /* CLOCK_MONOTONIC */
    char remote_host[64];
    int remote_port;
    uint32_t remote_flowinfo;
    uint32_t remote_scope_id;
    int has_local;               /* whether the local_* fields are known */
    char local_host[64];
    int local_port;
    uint32_t local_scope_id;
    const char *error;           /* str() of the failed attempt's error, or NULL */
} goconn_attempt;

#define GOCONN_RESOLUTION_VERSION 1

/* goconn_resolution is one name lookup of the trace. */
typedef struct goconn_resolution {
    unsigned int version;
    int family;                  /* AF_INET6 or AF_INET (resolution_delay), or the family asked for */
    int64_t start_ns;            /* CLOCK_MONOTONIC */
    int64_t end_ns;              /* 0: still running when the request ended */
    size_t count;                /* addresses it gave */
    int errnum;                  /* its failure: an EAI_* code or an errno, else 0 */
    const char *error;           /* str() of the failure, or NULL */
} goconn_resolution;

#define GOCONN_ERROR_VERSION 3

/* goconn_error describes a failure the way asyncio's exception would.  The
 * library owns it; it is valid only during the callback that receives it.
 *
 * To rebuild the Python exception: for GOCONN_EGROUP, an ExceptionGroup of
 * the causes; for GOCONN_EGAI, socket.gaierror(errnum, strerror); for
 * GOCONN_ECERTVERIFY and GOCONN_EHOSTNAME, ssl.SSLCertVerificationError with
 * reason, library, verify_code and verify_message; for GOCONN_ETLS,
 * ssl.SSLError; when errnum is non-zero, OSError(errnum, strerror) (which
 * picks the subclass, e.g. ConnectionRefusedError for 111); for a -errno
 * code with errnum 0, that errno's OSError subclass with `message` as its
 * only argument (ConnectionResetError() when a TLS peer hangs up in the
 * handshake); otherwise an exception of the kind `code` names. */
typedef struct goconn_error {
    unsigned int version;
    int code;                    /* -errno or a GOCONN_E* code */
    int errnum;                  /* OSError.errno: an errno, an EAI_* code (GOCONN_EGAI), or 0 for none */
    const char *message;         /* str(exc), e.g. "[Errno 111] Connect call failed ('127.0.0.1', 1)" */
    const char *strerror;        /* OSError.strerror, e.g. "Connect call failed ('127.0.0.1', 1)"; NULL when errnum is 0 */
    size_t ncauses;              /* for GOCONN_EMULTIPLE and GOCONN_EGROUP: every attempt's errors, in order */
    const struct goconn_error *const *causes;
    size_t nattempts;            /* the attempt trace of a failed connect */
    const goconn_attempt *const *attempts;
    /* Version 2: TLS failures, as Python's ssl exceptions carry them. */
    const char *reason;          /* OpenSSL's reason, e.g. "CERTIFICATE_VERIFY_FAILED", or NULL */
    const char *library;         /* "SSL" for TLS failures, else NULL */
    int verify_code;             /* GOCONN_ECERTVERIFY/EHOSTNAME: OpenSSL's X509_V_ERR_* (18 self-signed, 62 hostname mismatch) */
    const char *verify_message;  /* and its text, e.g. "self-signed certificate", or NULL */
    /* Version 3: the lookups of a failed connect's trace. */
    size_t nresolutions;
    const goconn_resolution *const *resolutions;
} goconn_error;

/* Kinds of live trace events. */
#define GOCONN_TRACE_RESOLVE_START 1
#define GOCONN_TRACE_RESOLVE_END   2
#define GOCONN_TRACE_ATTEMPT_START 3
#define GOCONN_TRACE_ATTEMPT_END   4

#define GOCONN_TRACE_EVENT_VERSION 1

/* goconn_trace_event is one live event of a request's trace.  The library
 * owns it; it is valid only during the call. */
typedef struct goconn_trace_event {
    unsigned int version;
    int kind;                            /* GOCONN_TRACE_* */
    int64_t time_ns;                     /* CLOCK_MONOTONIC */
    const goconn_resolution *resolution; /* resolve events, else NULL */
    const goconn_attempt *attempt;       /* attempt events (the record so far), else NULL */
} goconn_trace_event;

/* goconn_trace_cb receives live trace events, where the connection's other
 * callbacks run (inside goconn_loop_dispatch in loop mode), always before
 * the request's on_done and never after it. */
typedef void (*goconn_trace_cb)(void *userdata, const goconn_trace_event *event);

/* ------------------------------------------------------------------------ */
/* Loop mode                                                                 */
/* ------------------------------------------------------------------------ */

/* goconn_loop_new makes an event queue and stores it in *out.
 * Ownership: the caller frees it with goconn_loop_free().
 * Thread: any.  Errors: -EINVAL (out is NULL), -errno from eventfd(2) or
 * epoll_create1(2) (e.g. -EMFILE). */
GOCONN_EXTERN int goconn_loop_new(goconn_loop **out);

/* goconn_loop_fd returns a descriptor that is readable while the loop has
 * events to dispatch: queued events, data (or EOF, or an error) on the
 * socket of a plain connection that is reading, or a connect started by
 * goconn_open_connection() that has finished.  It is an epoll descriptor,
 * so it can itself be put in an epoll set.  Watch it; do not read, write or
 * close it.
 * Thread: any.  Errors: -EBADF (not a live loop). */
GOCONN_EXTERN int goconn_loop_fd(const goconn_loop *loop);

/* goconn_loop_dispatch runs up to `max` pending events (all of them when
 * max <= 0) on the calling thread and returns how many it ran: queued
 * events first, then one read on each readable socket and the end of each
 * finished connect (which may call no callback: a TLS handshake then
 * starts on a library thread).  Events queued while it runs wait for the
 * next call (the fd stays readable).  While it is called often (calls less
 * than 1 ms apart), it yields the thread to the Go scheduler once every 5
 * ms, which costs two thread switches then: without it Go's sysmon keeps
 * taking back the scheduler slot the calling thread holds (see
 * core/loop_yield.go).
 * Thread: any one thread at a time per loop; not from inside a callback.
 * Errors: -EBADF, GOCONN_EREENTRANT (called from a callback, or from two
 * threads at once). */
GOCONN_EXTERN int goconn_loop_dispatch(goconn_loop *loop, int max);

/* goconn_loop_free frees a loop that has no live connections: every
 * request's on_done, and every transport's connection_lost, must have been
 * dispatched.  On -EBUSY nothing changes: close or abort the transports,
 * cancel the requests, dispatch, and call it again.
 * Thread: any, but not from a callback of this loop.
 * Errors: -EBADF, -EBUSY. */
GOCONN_EXTERN int goconn_loop_free(goconn_loop *loop);

/* goconn_live_handles returns how many loop, request and transport handles
 * are live: a diagnostic for leak checks, which expect 0 once every loop is
 * freed and every connection has ended.  Thread: any. */
GOCONN_EXTERN int goconn_live_handles(void);

/* ------------------------------------------------------------------------ */
/* The protocol                                                              */
/* ------------------------------------------------------------------------ */

#define GOCONN_PROTOCOL_VERSION 2
#define GOCONN_PROTOCOL_INIT { GOCONN_PROTOCOL_VERSION, 0, 0, 0, 0, 0, 0, 0, 0, 0 }

/* goconn_protocol is asyncio.Protocol as a table of callbacks.  Each takes
 * the protocol pointer first: the one your factory returned.  Any callback
 * may be NULL, which acts like asyncio's default method (a NULL
 * eof_received closes the transport).  The calls come in asyncio's order:
 * connection_made once; data_received any number of times; eof_received at
 * most once; connection_lost exactly once and last.  pause_writing and
 * resume_writing strictly alternate, pause first. */
typedef struct goconn_protocol {
    unsigned int version;

    /* factory makes the protocol once the connection is up, before
     * connection_made (asyncio's protocol_factory): store the protocol
     * pointer in *protocol_out and return 0.  A non-zero return fails the
     * request with GOCONN_EFACTORY: a socket the library made is closed, an
     * adopted one (options.sock) is left open and is the caller's again, as
     * in asyncio.  When factory is NULL the protocol pointer is on_done's
     * userdata. */
    int (*factory)(void *userdata, goconn_transport *transport, void **protocol_out);

    void (*connection_made)(void *protocol, goconn_transport *transport);

    /* data is owned by the library and valid only during the call; it is
     * not NUL-terminated and len >= 1.  At most 256 KiB per call. */
    void (*data_received)(void *protocol, const void *data, size_t len);

    /* Return non-zero to keep the transport open for writing (half-close);
     * zero closes it, as in asyncio. */
    int (*eof_received)(void *protocol);

    /* The last call.  error is NULL after close()/abort() or a clean EOF,
     * or describes the failure (e.g. -ECONNRESET).  After it returns the
     * transport handle is dead, so the protocol may be freed here. */
    void (*connection_lost)(void *protocol, const goconn_error *error);

    void (*pause_writing)(void *protocol);
    void (*resume_writing)(void *protocol);

    /* Version 2: asyncio.BufferedProtocol.  When get_buffer is set, data
     * arrives in memory the protocol provides instead of through
     * data_received (which is then never called): get_buffer returns
     * where the next bytes go and stores its size in *size_out;
     * buffer_updated then says how many bytes (>= 1) were written at its
     * start.  size_hint is how many bytes are waiting, or -1 when that is
     * unknown.  On plain TCP in loop mode it is what the kernel holds
     * (FIONREAD), and the read takes as much as fits, as asyncio's
     * recv_into, which may be more if more came meanwhile; -1 there means
     * nothing is held, and the read finds the end of the stream or an
     * error.
     * The memory must stay valid and untouched from get_buffer until the
     * next buffer_updated, connection_lost or get_buffer call; a buffer
     * that gets no buffer_updated (nothing was there to read) may be
     * returned again.  A protocol that pauses reading inside
     * buffer_updated gets no more bytes until it resumes.  Returning NULL,
     * a size of 0 or a size over PTRDIFF_MAX ends the connection:
     * connection_lost gets GOCONN_EBUFFER, unless the protocol has already
     * closed or aborted the transport.  In loop mode on plain TCP the
     * library reads the socket straight into this memory, with no copy of
     * its own; elsewhere it copies into it.  Both are set, or neither. */
    void *(*get_buffer)(void *protocol, ptrdiff_t size_hint, size_t *size_out);
    void (*buffer_updated)(void *protocol, size_t nbytes);
} goconn_protocol;

/* goconn_protocol_init zeroes *protocol and sets its version.
 * Thread: any.  Errors: -EINVAL (NULL), GOCONN_EVERSION. */
GOCONN_EXTERN int goconn_protocol_init(goconn_protocol *protocol, unsigned int version);

/* ------------------------------------------------------------------------ */
/* Options                                                                   */
/* ------------------------------------------------------------------------ */

/* verify_mode values. */
#define GOCONN_VERIFY_REQUIRED 0 /* verify the server's chain (the default) */
#define GOCONN_VERIFY_NONE     1 /* no verification at all (Python's CERT_NONE) */

/* check_hostname values. */
#define GOCONN_CHECK_HOSTNAME_ON  0 /* check server_hostname (or host) against the certificate (default) */
#define GOCONN_CHECK_HOSTNAME_OFF 1 /* verify the chain only */

/* system_roots values. */
#define GOCONN_SYSTEM_ROOTS_AUTO 0 /* trust the system's roots when no CA is given (default) */
#define GOCONN_SYSTEM_ROOTS_ON   1 /* trust them beside any CA given */
#define GOCONN_SYSTEM_ROOTS_OFF  2 /* trust only the CAs given */

/* min_version / max_version values (0 = default: TLS 1.2 to TLS 1.3). */
#define GOCONN_TLS_1_0 0x0301
#define GOCONN_TLS_1_1 0x0302
#define GOCONN_TLS_1_2 0x0303
#define GOCONN_TLS_1_3 0x0304

#define GOCONN_SSL_OPTIONS_VERSION 1

/* goconn_ssl_options are the client TLS settings (what Python's
 * ssl.SSLContext holds).  The zero value is asyncio's ssl=True: verify
 * against the system's roots and check the host name.  Point
 * goconn_options.ssl at one to make a TLS connection.  Like every option
 * struct it is copied during goconn_open_connection, files included: they
 * are read then (and parsed trust stores are cached by content).
 *
 * Session resumption: connections made with the same settings share a
 * session cache, so a later handshake to the same server resumes. */
typedef struct goconn_ssl_options {
    unsigned int version;
    int verify_mode;             /* GOCONN_VERIFY_* */
    int check_hostname;          /* GOCONN_CHECK_HOSTNAME_*; server_hostname "" also turns it off */
    int system_roots;            /* GOCONN_SYSTEM_ROOTS_* */
    const char *ca_file;         /* PEM file of trusted CAs, or NULL */
    const char *ca_path;         /* folder of PEM or DER CA files, or NULL */
    const void *ca_data;         /* PEM text, or concatenated DER certificates */
    size_t ca_data_len;
    const char *cert_file;       /* client certificate chain (PEM), or NULL; may hold the key too */
    const char *key_file;        /* its private key (PEM), or NULL */
    const char *key_password;    /* for an encrypted key (PKCS#8 or legacy PEM), or NULL */
    const void *cert_data;       /* or the chain in memory (PEM) */
    size_t cert_data_len;
    const void *key_data;        /* and the key in memory (PEM) */
    size_t key_data_len;
    int min_version;             /* GOCONN_TLS_1_* or 0 */
    int max_version;             /* GOCONN_TLS_1_* or 0 */
    const char *const *alpn_protocols; /* ALPN protocols to offer, in order */
    size_t alpn_protocols_count;
    const char *keylog_file;     /* append TLS secrets here (NSS key log format), or NULL */
    const char *ciphers;         /* OpenSSL names of TLS 1.2 suites, colon-separated, or NULL */
    int no_session_cache;        /* non-zero: no session resumption */
} goconn_ssl_options;

/* goconn_ssl_options_init zeroes *options and sets its version.
 * Thread: any.  Errors: -EINVAL (NULL), GOCONN_EVERSION. */
GOCONN_EXTERN int goconn_ssl_options_init(goconn_ssl_options *options, unsigned int version);

/* tcp_nodelay values. */
#define GOCONN_NODELAY_ASYNCIO 0 /* asyncio's rule: set for AF_INET/AF_INET6 SOCK_STREAM IPPROTO_TCP sockets */
#define GOCONN_NODELAY_ON      1
#define GOCONN_NODELAY_OFF     2

#define GOCONN_OPTIONS_VERSION 2

/* goconn_options carries every argument of asyncio's create_connection.
 * A NULL string is Python's None; has_* flags mark fields whose zero is a
 * real value. */
typedef struct goconn_options {
    unsigned int version;

    /* Where callbacks run: a loop (loop mode) or NULL (direct mode). */
    goconn_loop *loop;

    const char *host;            /* NULL = None; a name or an IP literal */
    size_t host_len;             /* 0: host is NUL-terminated; else its exact length (an embedded NUL is an error) */
    const char *port;            /* NULL = None; decimal digits or a service name ("http") */
    int family;                  /* AF_UNSPEC (0), AF_INET or AF_INET6 */
    int proto;                   /* getaddrinfo's protocol, usually 0 */
    int flags;                   /* getaddrinfo's AI_* flags */

    int has_sock;                /* adopt `sock` instead of connecting */
    int sock;                    /* a connected SOCK_STREAM socket, made non-blocking; the
                                    library owns it once goconn_open_connection returns 0 (and
                                    closes it after connection_lost), untouched on an error */

    int has_local_addr;          /* bind to local_host:local_port before connecting */
    const char *local_host;      /* NULL = None */
    const char *local_port;      /* NULL = None */
    uint32_t local_flowinfo;     /* of a 4-tuple local_addr */
    uint32_t local_scope_id;

    const goconn_ssl_options *ssl; /* NULL = plain TCP; else TLS over the connection */
    const char *server_hostname; /* NULL = host; "" = no hostname check */
    int has_ssl_handshake_timeout;
    double ssl_handshake_timeout;  /* seconds */
    int has_ssl_shutdown_timeout;
    double ssl_shutdown_timeout;   /* seconds */

    int has_happy_eyeballs_delay;  /* Happy Eyeballs is on when set */
    double happy_eyeballs_delay;   /* seconds; negative acts as 0 */
    int has_interleave;
    int interleave;                /* First Address Family Count; 0 = off; default 1 with Happy Eyeballs */
    int all_errors;                /* keep every attempt's error (GOCONN_EGROUP) */

    int tcp_nodelay;             /* GOCONN_NODELAY_* */

    /* Optional: where the text of a synchronous error goes (asyncio's
     * ValueError message, say).  Always NUL-terminated, truncated to fit. */
    char *errbuf;
    size_t errbuf_size;

    /* Version 2: beyond asyncio, each opt-in (RFC 8305 and friends). */
    int has_resolution_delay;    /* asynchronous per-family resolution (RFC 8305 section 3): */
    double resolution_delay;     /* AAAA and A in parallel; after an A answer wait this long (seconds,
                                    the RFC suggests 0.05) for AAAA; late answers join the race */
    int has_attempt_timeout;
    double attempt_timeout;      /* give up on one attempt after this many seconds (not the delay) */
    int has_connect_timeout;
    double connect_timeout;      /* end the whole request after this many seconds: GOCONN_ETIMEOUT */
    const struct addrinfo *addrinfo; /* pre-resolved addresses (a getaddrinfo(3) list): no lookup */
    int bind_address_no_port;    /* IP_BIND_ADDRESS_NO_PORT when local_addr has port 0 */
    int keepalive;               /* turn TCP keepalive on, with: */
    int keepalive_idle;          /* TCP_KEEPIDLE seconds (0: the system's) */
    int keepalive_interval;      /* TCP_KEEPINTVL seconds (0: the system's) */
    int keepalive_count;         /* TCP_KEEPCNT (0: the system's) */
    goconn_trace_cb on_trace;    /* live trace events, or NULL */
    void *trace_userdata;        /* passed to on_trace */
} goconn_options;

/* goconn_options_init zeroes *options and sets its version.
 * Thread: any.  Errors: -EINVAL (NULL), GOCONN_EVERSION. */
GOCONN_EXTERN int goconn_options_init(goconn_options *options, unsigned int version);

/* ------------------------------------------------------------------------ */
/* Connecting                                                                */
/* ------------------------------------------------------------------------ */

/* goconn_connect_cb reports how a request ended, exactly once per request.
 * On success transport and protocol are set and error is NULL; the
 * protocol's connection_made has already run.  On failure transport and
 * protocol are NULL, error says why (-ECANCELED after a cancel), and no
 * protocol callback ever ran.  error is valid only during the call. */
typedef void (*goconn_connect_cb)(void *userdata, goconn_transport *transport,
                                  void *protocol, const goconn_error *error);

/* goconn_open_connection starts asyncio's create_connection.
 *
 * It checks the options at once, in asyncio's order and with asyncio's
 * messages (written to options->errbuf): on failure it returns -EINVAL
 * (asyncio's ValueError), GOCONN_ENOTSTREAM, -EBADF/-ENOTSOCK (a bad sock),
 * GOCONN_EVERSION, and then nothing else ever happens.
 *
 * With TLS (options->ssl) the handshake follows the TCP connection, and the
 * factory and connection_made come after it: a failed handshake reports
 * GOCONN_ECERTVERIFY, GOCONN_EHOSTNAME, GOCONN_EHANDSHAKETIMEOUT,
 * GOCONN_ETLS or -ECONNRESET (the peer hung up), with no protocol callback,
 * and the socket is closed.  A non-positive ssl_handshake_timeout or
 * ssl_shutdown_timeout fails with -EINVAL once the TCP connection is up, as
 * in asyncio (at once with sock).
 *
 * On 0 the connection is made in the background: resolve, interleave,
 * connection attempts (staggered when happy_eyeballs_delay is set), then
 * protocol->factory, connection_made, and on_done.  Exactly one on_done
 * follows, also after goconn_request_cancel().
 *
 * Ownership: options, protocol and every string are copied; nothing of the
 * caller's is kept.  *request_out (may be NULL if you never cancel) is
 * valid until on_done returns.  options->sock becomes the library's on 0.
 * Thread: any.  Errors: as above. */
GOCONN_EXTERN int goconn_open_connection(const goconn_options *options,
                                         const goconn_protocol *protocol,
                                         goconn_connect_cb on_done, void *userdata,
                                         goconn_request **request_out);

/* goconn_request_cancel stops a request.  If the protocol factory has not
 * run yet, every attempt stops, every socket is closed, and on_done reports
 * -ECANCELED with no protocol callback at all.  If it already ran, on_done
 * brings the transport as usual; close it.  With an adopted socket the
 * transport exists from goconn_open_connection on (as in asyncio), so a
 * cancel never stops it.
 * Thread: any.  Errors: -EBADF (on_done already returned). */
GOCONN_EXTERN int goconn_request_cancel(goconn_request *request);

/* ------------------------------------------------------------------------ */
/* The transport                                                             */
/* ------------------------------------------------------------------------ */
/* Every transport function is thread-safe and may be called from inside
 * callbacks.  A handle is live from on_done (or connection_made) until
 * connection_lost returns; after that every call returns -EBADF. */

/* goconn_transport_write sends a copy of data (at most 1 TiB); it never blocks.  What
 * cannot be sent at once is buffered, and pause_writing may be called
 * before it returns (loop mode) when the buffer passes the high-water mark.
 * Returns 0; GOCONN_EWRITEEOF after write_eof; GOCONN_ECLOSING when the
 * transport is closing or lost (the data is dropped, as asyncio drops it);
 * -EBADF.  A send error does not return here: it ends the connection
 * through connection_lost. */
GOCONN_EXTERN int goconn_transport_write(goconn_transport *transport, const void *data, size_t len);

/* goconn_transport_writelines writes the pieces as one write (asyncio's
 * writelines).  The iovecs and the bytes they point to are copied.
 * Errors: as goconn_transport_write, and -EINVAL for a NULL array with a
 * count, a NULL base with a length, or more than 1 TiB in total. */
GOCONN_EXTERN int goconn_transport_writelines(goconn_transport *transport, const struct iovec *iov, size_t count);

/* goconn_transport_write_eof shuts the write side down once the buffer is
 * flushed.  A no-op when closing or repeated.
 * Errors: -EBADF, -ENOTSUP on a TLS transport, -errno from shutdown(2). */
GOCONN_EXTERN int goconn_transport_write_eof(goconn_transport *transport);

/* goconn_transport_can_write_eof returns 1 for TCP, 0 for TLS, or -EBADF. */
GOCONN_EXTERN int goconn_transport_can_write_eof(goconn_transport *transport);

/* goconn_transport_close flushes the buffer, then closes: connection_lost
 * follows with error NULL.  Idempotent.  With TLS it is asyncio's shutdown:
 * flush, send close_notify, wait for the peer's (eof_received is then
 * called) and then connection_lost(NULL); if that takes longer than
 * ssl_shutdown_timeout, connection_lost gets GOCONN_ETIMEOUT ("SSL
 * shutdown timed out").  Writes after close are dropped.
 * Errors: -EBADF. */
GOCONN_EXTERN int goconn_transport_close(goconn_transport *transport);

/* goconn_transport_abort drops the buffer and closes at once:
 * connection_lost follows with error NULL.  Returns 1 when this call ended
 * the connection, 0 when connection_lost was already on its way (after
 * close() with an empty buffer, say).  Errors: -EBADF. */
GOCONN_EXTERN int goconn_transport_abort(goconn_transport *transport);

/* goconn_transport_is_closing returns 1 from close, abort or a fatal error
 * on, else 0; or -EBADF. */
GOCONN_EXTERN int goconn_transport_is_closing(goconn_transport *transport);

/* goconn_transport_pause_reading stops data_received until resume; a
 * no-op when closing or already paused.  Errors: -EBADF. */
GOCONN_EXTERN int goconn_transport_pause_reading(goconn_transport *transport);

/* goconn_transport_resume_reading restarts data_received; data read
 * meanwhile arrives through the usual delivery, never inside this call.
 * Errors: -EBADF. */
GOCONN_EXTERN int goconn_transport_resume_reading(goconn_transport *transport);

/* goconn_transport_is_reading returns 1 when neither paused nor closing,
 * else 0; or -EBADF. */
GOCONN_EXTERN int goconn_transport_is_reading(goconn_transport *transport);

/* Passed for high or low: Python's None (derive it, or use the default). */
#define GOCONN_LIMIT_DEFAULT INT64_MIN

/* goconn_transport_set_write_buffer_limits sets the water marks as asyncio
 * does: both default gives (high 65536, low 16384); one default is derived
 * from the other (high = 4*low, low = high/4).  pause_writing may be called
 * before it returns.  Errors: -EINVAL with asyncio's message in errbuf
 * ("high (10) must be >= low (20) must be >= 0"), -EBADF. */
GOCONN_EXTERN int goconn_transport_set_write_buffer_limits(goconn_transport *transport,
                                                           int64_t high, int64_t low,
                                                           char *errbuf, size_t errbuf_size);

/* goconn_transport_get_write_buffer_limits stores the marks, in asyncio's
 * (low, high) order.  Errors: -EINVAL (NULL), -EBADF. */
GOCONN_EXTERN int goconn_transport_get_write_buffer_limits(goconn_transport *transport,
                                                           int64_t *low_out, int64_t *high_out);

/* goconn_transport_get_write_buffer_size stores the number of buffered
 * bytes.  Errors: -EINVAL (NULL), -EBADF. */
GOCONN_EXTERN int goconn_transport_get_write_buffer_size(goconn_transport *transport, size_t *size_out);

/* goconn_transport_get_fd returns the socket's descriptor (extra info
 * 'socket').  You may setsockopt/getsockopt on it; do not close it or read
 * from it.  It is closed after connection_lost returns.  Errors: -EBADF. */
GOCONN_EXTERN int goconn_transport_get_fd(goconn_transport *transport);

/* goconn_transport_get_peername and goconn_transport_get_sockname copy the
 * addresses read when the transport was made (they stay readable after
 * close, as asyncio's extra info does).  *addrlen is the buffer's size on
 * entry and the address's size on return.  Errors: -EINVAL (NULL
 * arguments), -ENOTCONN (no such address, e.g. an unconnected socket),
 * -ENOSPC (buffer too small), -EBADF. */
GOCONN_EXTERN int goconn_transport_get_peername(goconn_transport *transport,
                                                struct sockaddr *addr, socklen_t *addrlen);
GOCONN_EXTERN int goconn_transport_get_sockname(goconn_transport *transport,
                                                struct sockaddr *addr, socklen_t *addrlen);

#define GOCONN_TLS_INFO_VERSION 1

/* goconn_tls_info describes a TLS session (asyncio's 'cipher' and
 * 'ssl_object' extra info).  Strings are owned by the library and valid
 * until connection_lost returns. */
typedef struct goconn_tls_info {
    unsigned int version;        /* set by the caller to GOCONN_TLS_INFO_VERSION */
    int protocol_version;        /* GOCONN_TLS_1_3, ... */
    const char *protocol;        /* "TLSv1.3" */
    const char *cipher;          /* OpenSSL's name, e.g. "TLS_AES_256_GCM_SHA384" */
    const char *cipher_protocol; /* the protocol the suite belongs to, e.g. "TLSv1.2" */
    int cipher_bits;             /* secret bits, e.g. 256 */
    const char *alpn;            /* the agreed ALPN protocol, or NULL */
    int session_resumed;         /* the handshake resumed an earlier session */
    const char *server_hostname; /* sent as SNI and checked, or NULL */
    int verified;                /* the certificate chain was verified */
    size_t peer_certificates;    /* how many certificates the server sent */
} goconn_tls_info;

/* goconn_transport_get_tls_info fills *info (whose version you set) for a
 * TLS transport.  Errors: -EINVAL (NULL or bad version), -ENOENT (a plain
 * TCP transport), -EBADF. */
GOCONN_EXTERN int goconn_transport_get_tls_info(goconn_transport *transport, goconn_tls_info *info);

/* goconn_transport_get_peer_certificate gives the DER bytes of the
 * index-th certificate the server sent (0 is its own).  The bytes are the
 * library's, valid until connection_lost returns.
 * Errors: -EINVAL (NULL), -ENOENT (no such certificate, or plain TCP), -EBADF. */
GOCONN_EXTERN int goconn_transport_get_peer_certificate(goconn_transport *transport, size_t index,
                                                        const void **der_out, size_t *len_out);

/* goconn_transport_get_resolutions gives the name lookups that preceded
 * the attempts: *resolutions_out points to an array of *count_out pointers
 * owned by the library, valid until connection_lost returns.
 * Errors: -EINVAL (NULL), -EBADF. */
GOCONN_EXTERN int goconn_transport_get_resolutions(goconn_transport *transport,
                                                   const goconn_resolution *const **resolutions_out,
                                                   size_t *count_out);

/* goconn_transport_get_attempts gives the attempt trace that produced the
 * transport (none for an adopted socket): *attempts_out points to an array
 * of *count_out pointers owned by the library, valid until connection_lost
 * returns.  Errors: -EINVAL (NULL), -EBADF. */
GOCONN_EXTERN int goconn_transport_get_attempts(goconn_transport *transport,
                                                const goconn_attempt *const **attempts_out,
                                                size_t *count_out);

#ifdef __cplusplus
}
#endif

#endif /* GOCONN_H */
