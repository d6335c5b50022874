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

#endif
