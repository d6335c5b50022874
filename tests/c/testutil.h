/* testutil.h - a small harness for goconn's C tests: checks, a loopback peer
 * running on its own thread, and loop driving. */
#ifndef GOCONN_TESTUTIL_H
#define GOCONN_TESTUTIL_H

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "goconn.h"

#define CHECK(cond)                                                                 \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            exit(1);                                                                \
        }                                                                           \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                  \
    do {                                                                                    \
        long long va_ = (long long)(a), vb_ = (long long)(b);                               \
        if (va_ != vb_) {                                                                   \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld != %lld)\n", __FILE__,      \
                    __LINE__, #a, #b, va_, vb_);                                            \
            exit(1);                                                                        \
        }                                                                                   \
    } while (0)

#define CHECK_STREQ(a, b)                                                                   \
    do {                                                                                    \
        const char *sa_ = (a), *sb_ = (b);                                                  \
        if (sa_ == NULL || sb_ == NULL || strcmp(sa_, sb_) != 0) {                          \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (\"%s\" != \"%s\")\n", __FILE__,  \
                    __LINE__, #a, #b, sa_ ? sa_ : "(null)", sb_ ? sb_ : "(null)");           \
            exit(1);                                                                        \
        }                                                                                   \
    } while (0)

/* What the peer does with each accepted connection. */
typedef enum {
    PEER_ECHO,          /* echo until EOF, then close */
    PEER_SEND_CLOSE,    /* send `payload`, then close */
    PEER_SEND_RESET,    /* send `payload`, then reset (SO_LINGER 0) */
    PEER_SEND_HALFCLOSE,/* send `payload`, shut down writing, then echo what comes, then close */
    PEER_NEVER_READ,    /* accept and hold the connection without reading until stopped */
    PEER_DISCARD,       /* read and count everything until EOF */
    PEER_READ_ON_SIGNAL /* hold the connection without reading until `go` is set (or the peer is
                           stopped), then read and count everything until EOF */
} peer_mode;

typedef struct test_peer {
    int listen_fd;
    int port;
    int family;
    peer_mode mode;
    const void *payload;
    size_t payload_len;
    /* Filled by the peer thread. */
    volatile size_t received;
    volatile int accepted;
    volatile int done;
    void *thread; /* pthread_t, opaque here */
    /* Set by the test: PEER_READ_ON_SIGNAL starts reading. */
    volatile int go;
    /* Filled by the peer thread: 1 once it has read EOF on the current connection. */
    volatile int got_eof;
} test_peer;

/* peer_start listens on 127.0.0.1 (or ::1 when family is AF_INET6) on an
 * ephemeral port and serves one connection at a time on its own thread. */
void peer_start(test_peer *peer, int family, peer_mode mode, const void *payload, size_t len);
/* peer_stop closes the listener and joins the thread. */
void peer_stop(test_peer *peer);
/* port_text gives the peer's port as a string (static buffer per call site). */
const char *peer_port(const test_peer *peer);

/* A refused port on 127.0.0.1: bound, never listening. The fd must stay open
 * while the port is used. */
int refused_port(int *fd_out);

/* loop_run dispatches `loop` until *flag becomes non-zero or timeout_ms
 * passes. Returns 1 if the flag was set. */
int loop_run(goconn_loop *loop, volatile int *flag, int timeout_ms);

/* wait_flag waits (direct mode) until *flag becomes non-zero. */
int wait_flag(volatile int *flag, int timeout_ms);

/* count_open_fds counts entries of /proc/self/fd. */
int count_open_fds(void);

/* count_open_sockets counts only the sockets among them: timers and other
 * library fds come and go, the attempts' sockets are what a test watches. */
int count_open_sockets(void);

void sleep_ms(int ms);

/* now_ms is CLOCK_MONOTONIC in milliseconds. */
long long now_ms(void);

/* loop_pump dispatches `loop` for ms milliseconds and returns how many events
 * ran: used to check that nothing more is delivered. */
int loop_pump(goconn_loop *loop, int ms);

/* wait_live_handles waits until goconn_live_handles() == n. Returns 1 if it
 * got there within timeout_ms. (In direct mode a callback's flag is set
 * before the callback returns, so the handle may still be live for a moment.) */
int wait_live_handles(int n, int timeout_ms);

/* A listener whose accept queue is full: listen(fd, 0) and one client that
 * is connected and never accepted. Further connects to it hang in SYN_SENT
 * until the hang listener is stopped. */
typedef struct hang_listener {
    int listen_fd;
    int filler_fd;
    int port;
    int family;
} hang_listener;

/* hang_start makes one on 127.0.0.1 (AF_INET) or ::1 (AF_INET6). port 0 picks
 * an ephemeral port; a non-zero port binds that one (returns 0 if it is
 * taken, 1 on success). */
int hang_start(hang_listener *h, int family, int port);
void hang_stop(hang_listener *h);

/* ------------------------------------------------------------------------ */
/* Child processes: the goconn-peer (tests/peer) and openssl s_server        */
/* ------------------------------------------------------------------------ */

/* The peer binary and openssl, as CMake found them (GOCONN_PEER_PATH and
 * OPENSSL_PATH); openssl_path() is NULL when openssl was not found. */
const char *goconn_peer_path(void);
const char *openssl_path(void);

#define PROC_OUT 1
#define PROC_ERR 2

/* A child with pipes on stdin, stdout and stderr. What it writes is
 * collected, on the caller's thread, by proc_pump and proc_wait. */
typedef struct test_proc {
    int pid;
    int in_fd, out_fd, err_fd; /* our ends; -1 once closed */
    char *out, *err;           /* all it wrote so far, NUL-terminated */
    size_t out_len, err_len, out_cap, err_cap;
} test_proc;

/* proc_start runs argv[0] (a path) with argv. The child is killed at exit
 * if the test ends without proc_stop. */
void proc_start(test_proc *p, char *const argv[]);
/* proc_pump collects output for up to ms milliseconds (0: what is there). */
void proc_pump(test_proc *p, int ms);
/* proc_wait collects output until the stream (PROC_OUT or PROC_ERR) holds
 * text; returns 1 if it did within timeout_ms (0 at once if the child has
 * closed both streams without it). */
int proc_wait(test_proc *p, int stream, const char *text, int timeout_ms);
/* proc_has: whether the stream holds text already (after a proc_pump(p, 0)). */
int proc_has(test_proc *p, int stream, const char *text);
/* proc_write writes text to the child's stdin. */
void proc_write(test_proc *p, const char *text);
/* proc_stop kills the child (SIGKILL), reaps it and closes the pipes. */
void proc_stop(test_proc *p);

/* certs_dir makes the test certificates once per program with
 * `goconn-peer certs` in a fresh temporary directory (removed at exit) and
 * returns that directory. cert_path gives DIR/name (a string that lives as
 * long as the program). read_file reads a whole file (malloc'd; *len_out
 * its size). */
const char *certs_dir(void);
const char *cert_path(const char *name);
char *read_file(const char *path, size_t *len_out);

/* pem_der decodes the first PEM block of text (base64 between the BEGIN
 * and END lines) into malloc'd DER bytes. */
unsigned char *pem_der(const char *text, size_t *len_out);

/* peer_serve starts `goconn-peer serve --die-with-parent ARGS...` (a
 * NULL-terminated list), waits for its "PORT n" line and returns n. */
int peer_serve(test_proc *p, ...);

/* openssl_serve starts `openssl s_server -accept 127.0.0.1:0 ARGS...` (a
 * NULL-terminated list) with its stdin kept open, waits for its "ACCEPT"
 * line and returns the port. */
int openssl_serve(test_proc *p, ...);

/* wait_fds waits until count_open_fds() == n; returns 1 if it got there. */
int wait_fds(int n, int timeout_ms);

/* ------------------------------------------------------------------------ */
/* A recording protocol                                                      */
/* ------------------------------------------------------------------------ */

/* test_error is a deep copy of a goconn_error (valid only during its
 * callback), without causes and attempts. */
typedef struct test_error {
    int present;
    unsigned int version;
    int code, errnum;
    char message[512];
    int has_strerror;
    char strerror_[512];
    int has_reason;
    char reason[128];
    int has_library;
    char library[32];
    int verify_code;
    int has_verify_message;
    char verify_message[256];
} test_error;

void test_error_save(test_error *dst, const goconn_error *e);

/* rec records every callback of one connection. The protocol pointer is the
 * rec itself (no factory: on_done's userdata). log holds one letter per
 * event: M connection_made, O on_done with a transport, F on_done with an
 * error, d data_received (once per run of data), E eof_received, L
 * connection_lost, P pause_writing, R resume_writing (a run of pause and
 * resume pairs shows as one "PR"; npause and nresume count them all). */
typedef struct rec {
    void *mu; /* pthread_mutex_t, opaque here */
    char log[128];
    goconn_transport *transport;
    volatile int done, made, eof, lost, paused;
    int ndone, nlost, npause, nresume;
    test_error done_err, lost_err;
    unsigned char *data; /* the first keep_max bytes received */
    size_t data_len, keep_max;
    volatile size_t received;
    int eof_return; /* what eof_received returns */
    /* Optional hooks, called inside the callbacks. */
    void (*on_made)(struct rec *r, goconn_transport *t);
    void (*on_data)(struct rec *r, const void *data, size_t len);
    void (*on_lost)(struct rec *r, const goconn_error *e);
    void *user;
} rec;

void rec_init(rec *r, size_t keep_max);
void rec_free(rec *r);
/* rec_open calls goconn_open_connection with the recording protocol and
 * returns its result; *req_out may be NULL. */
int rec_open(rec *r, const goconn_options *o, goconn_request **req_out);
/* rec_wait waits for *flag: dispatching `loop`, or (loop NULL) sleeping. */
int rec_wait(goconn_loop *loop, volatile int *flag, int timeout_ms);
/* warm_up makes and aborts one plain TCP connection through loop, so that
 * the Go runtime has opened its poller before a test counts fds. */
void warm_up(goconn_loop *loop);
/* rec_wait_bytes waits until r has received at least n bytes. */
int rec_wait_bytes(goconn_loop *loop, rec *r, size_t n, int timeout_ms);
/* rec_log returns a copy of the log (static buffer per call site rotation). */
const char *rec_log(rec *r);

/* ------------------------------------------------------------------------ */
/* The test namespace (in_namespace.sh) and its DNS server                   */
/* ------------------------------------------------------------------------ */

/* in_namespace.sh runs a test in private mount and network namespaces: only
 * a loopback interface (127.0.0.1 and ::1, nobody else's ports), an
 * /etc/hosts of its own where dual.goconn.test is ::1 then 127.0.0.1 and
 * v4.goconn.test is 127.0.0.1 (its AAAA lookup goes to DNS), and an
 * /etc/resolv.conf that asks 127.0.0.1:53, where dns_start() answers. */
#define NS_DUAL "dual.goconn.test"
#define NS_V4 "v4.goconn.test"

/* require_namespace exits with a message unless the program runs inside
 * in_namespace.sh (GOCONN_TEST_NAMESPACE set and dual.goconn.test
 * resolving to ::1 and 127.0.0.1). */
void require_namespace(void);

/* count_addrs is how many addresses getaddrinfo(host, "80", family,
 * SOCK_STREAM) gives (glibc answers AF_INET for a name listed as ::1 and
 * 127.0.0.1 with 127.0.0.1 twice); -1 when the lookup fails. */
int count_addrs(const char *host, int family);

#define DNS_A 1
#define DNS_AAAA 28

/* One answer of the test DNS server: for a query of name (no trailing dot,
 * any case) and qtype, wait delay_ms, then answer with the addresses in
 * addrs (space-separated; "" answers NOERROR with no data). Names with no
 * entry for a type get NXDOMAIN at once. */
typedef struct dns_answer {
    const char *name;
    int qtype;
    const char *addrs;
    int delay_ms;
} dns_answer;

/* dns_start serves the table (which must outlive the server) on UDP
 * 127.0.0.1:53 from a thread; inside the namespace only. dns_queries counts
 * the queries seen for name and qtype (NULL name: all of them). */
void dns_start(const dns_answer *table, size_t n);
void dns_stop(void);
int dns_queries(const char *name, int qtype);

#endif
