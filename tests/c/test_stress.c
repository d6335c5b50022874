/* Cancellation safety under stress: thousands of connects, several in flight
 * at once, half in loop mode and half in direct mode, each cancelled at a
 * random point or not at all. Runs inside in_namespace.sh (a network of
 * its own, dual-stack names in /etc/hosts, and this program's DNS server).
 *
 * Kinds of request (the cancel lands where each one spends its time):
 *   resolve  a dual-stack name with resolution_delay: dual.goconn.test
 *            (/etc/hosts) or a DNS name whose AAAA or A answers late;
 *   between  dual.goconn.test with Happy Eyeballs (a random delay) where one
 *            family hangs (a full accept queue): between the attempts;
 *   timeout  the hanging family first without Happy Eyeballs, with a small
 *            attempt_timeout (and sometimes a connect_timeout);
 *   win      127.0.0.1 at once: the cancel races the win and the factory;
 *   tls      TLS to the goconn-peer: a cancel during the handshake;
 *   stall    TLS to a peer that never answers the ClientHello (sometimes with
 *            a short ssl_handshake_timeout).
 * Cancel points: none; at once (same thread); after a random delay (from the
 * main thread, which dispatches the loop, or from a second thread); from the
 * trace callback at its k-th event, or at the winner's ATTEMPT_END (the
 * moment of winning: then always -ECANCELED); in loop mode after k events
 * were dispatched; from the factory or connection_made (too late: the
 * connection is made).
 *
 * Checked for every request: on_done exactly once; connection_made at most
 * once, never after on_done, and only after the factory; no trace event and
 * no factory call after on_done; a failed request saw no protocol callback
 * at all (factory, connection_made, connection_lost); a success has exactly
 * one won attempt (and one WON trace event), a failure none; the outcome is
 * one the request allows; goconn_request_cancel gives 0, or -EBADF only
 * once on_done ran. At the end: the fd count is back to its baseline (taken
 * after warm-up), goconn_live_handles() is 0, and every request handle is
 * dead (-EBADF).
 *
 * GOCONN_STRESS_SCALE (default 1) multiplies the number of requests. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#define BASE_REQUESTS 15000
#define IN_FLIGHT 24

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* xorshift, seeded from the clock (printed, and GOCONN_STRESS_SEED sets it) */
static uint64_t rng_state;
static uint64_t rnd(void) {
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}
static int rnd_int(int lo, int hi) { return lo + (int)(rnd() % (uint64_t)(hi - lo + 1)); }
static double rnd_sec(double lo, double hi) { return lo + (hi - lo) * (double)(rnd() % 1000001) / 1e6; }

/* ------------------------------------------------------------------------ */
/* A sink: accepts on several listeners and holds every connection until the */
/* client closes it                                                          */
/* ------------------------------------------------------------------------ */

static struct {
    int ep;
    int lfd[2];
    int nl;
    pthread_t thread;
    volatile int stop;
    atomic_int accepted;
} sink;

static int listen_on(int family, int port) {
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    CHECK(fd >= 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof ss);
    if (family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_addr = in6addr_loopback;
        s6->sin6_port = htons((uint16_t)port);
        sl = sizeof *s6;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        s4->sin_port = htons((uint16_t)port);
        sl = sizeof *s4;
    }
    CHECK(bind(fd, (struct sockaddr *)&ss, sl) == 0);
    CHECK(listen(fd, 4096) == 0);
    return fd;
}

static int port_of(int fd) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    CHECK(getsockname(fd, (struct sockaddr *)&ss, &sl) == 0);
    return ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                          : ((struct sockaddr_in *)&ss)->sin_port);
}

static void *sink_thread(void *arg) {
    (void)arg;
    struct epoll_event evs[64];
    char buf[4096];
    while (!sink.stop) {
        int n = epoll_wait(sink.ep, evs, 64, 50);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == sink.lfd[0] || fd == sink.lfd[1]) {
                for (;;) {
                    int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (c < 0) break;
                    atomic_fetch_add(&sink.accepted, 1);
                    struct epoll_event ev = {.events = EPOLLIN, .data.fd = c};
                    CHECK(epoll_ctl(sink.ep, EPOLL_CTL_ADD, c, &ev) == 0);
                }
                continue;
            }
            ssize_t r;
            while ((r = read(fd, buf, sizeof buf)) > 0) {
            }
            if (r == 0 || (r < 0 && errno != EAGAIN)) {
                epoll_ctl(sink.ep, EPOLL_CTL_DEL, fd, NULL);
                close(fd);
            }
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Requests                                                                  */
/* ------------------------------------------------------------------------ */

enum { K_RESOLVE, K_BETWEEN, K_TIMEOUT, K_WIN, K_TLS, K_STALL, K_COUNT };
static const char *kind_names[] = {"resolve", "between", "timeout", "win", "tls", "stall"};

enum {
    C_NONE,
    C_AT_ONCE,       /* right after goconn_open_connection, same thread */
    C_TIMED_MAIN,    /* after a random delay, from the main (dispatching) thread */
    C_TIMED_THREAD,  /* after a random delay, from the canceller thread */
    C_TRACE_K,       /* from the trace callback, at its k-th event */
    C_TRACE_WON,     /* from the trace callback, at the winner's ATTEMPT_END */
    C_DISPATCHED_K,  /* loop mode: from the main thread once k events were dispatched */
    C_FACTORY,       /* from the factory: too late */
    C_MADE,          /* from connection_made: too late */
    C_COUNT
};
static const char *cancel_names[] = {"none", "at once", "timed (main)", "timed (thread)", "trace k",
                                     "trace won", "dispatched k", "factory", "made"};

typedef struct req {
    int id, kind, how, loop_mode, close_in_done, abort;
    goconn_request *handle;
    int64_t t_open, cancel_at;
    int cancel_k;
    int may_timeout, may_hs_timeout; /* connect_timeout / ssl_handshake_timeout set */
    int may_fail;                    /* attempt_timeout set: every attempt may time out */
    atomic_int claimed;              /* the cancel was made (or given up) */
    int cancel_rc;
    atomic_int ndone, nfactory, nmade, nlost, ntrace, nstart, nend, nwon_ev;
    atomic_int late, bad;
    atomic_int done, lost, finished;
    int closed;      /* the main thread closed (or aborted) the transport */
    int must_cancel; /* a cancel that must end it with -ECANCELED was made */
    int phase;       /* PH_*, when cancelled */
    int code;
    int won_attempts;
    goconn_transport *t;
    char message[160];
} req;

static req *reqs;
static int nreqs;
static atomic_int launched;
static goconn_loop *loop;
static pthread_t main_thread;

static void bad(req *r, const char *what) {
    fprintf(stderr, "request %d (%s, cancel %s, %s mode): %s\n", r->id, kind_names[r->kind], cancel_names[r->how],
            r->loop_mode ? "loop" : "direct", what);
    atomic_fetch_add(&r->bad, 1);
}

/* Where a request was, as its callbacks tell, when it was cancelled. */
enum { PH_START, PH_RESOLVING, PH_FIRST, PH_LATER, PH_WON, PH_DELIVERED, PH_DONE, PH_COUNT };
static const char *phase_names[] = {"before any event", "resolving", "first attempt", "later attempts",
                                    "won (TLS: handshake)", "factory ran", "after on_done"};

/* Where a cancel is made from. */
enum { W_OUTSIDE, W_TRACE, W_PROTOCOL };

static void do_cancel(req *r, int where) {
    if (atomic_exchange(&r->claimed, 1)) return;
    int done_before = atomic_load(&r->done);
    r->phase = atomic_load(&r->done)       ? PH_DONE
               : atomic_load(&r->nfactory) ? PH_DELIVERED
               : atomic_load(&r->nwon_ev)  ? PH_WON
               : atomic_load(&r->nstart) > 1 ? PH_LATER
               : atomic_load(&r->nstart)   ? PH_FIRST
               : atomic_load(&r->ntrace)   ? PH_RESOLVING
                                           : PH_START;
    int rc = goconn_request_cancel(r->handle);
    r->cancel_rc = rc;
    if (rc == -EBADF) {
        /* Only once on_done has run (its flag is set inside it, before the
         * handle dies). */
        if (!atomic_load(&r->done)) bad(r, "cancel gave -EBADF before on_done");
    } else if (rc != 0) {
        bad(r, "cancel failed");
    } else if (where == W_TRACE) {
        /* Trace events come before the delivery on the same executor: the
         * factory has not run, so the request ends cancelled. */
        r->must_cancel = 1;
    } else if (where == W_OUTSIDE && r->loop_mode && pthread_equal(pthread_self(), main_thread)) {
        /* Loop mode, from the dispatching thread between dispatches: the
         * factory and on_done run in one event, so neither has run. */
        if (done_before) bad(r, "cancel gave 0 after on_done ran on this thread");
        r->must_cancel = 1;
    }
}

static void on_trace(void *u, const goconn_trace_event *e) {
    req *r = u;
    if (atomic_load(&r->done)) {
        atomic_fetch_add(&r->late, 1);
        bad(r, "trace event after on_done");
        return;
    }
    if (r->loop_mode != pthread_equal(pthread_self(), main_thread)) bad(r, "trace on the wrong thread");
    int k = atomic_fetch_add(&r->ntrace, 1) + 1;
    if (e->kind == GOCONN_TRACE_ATTEMPT_START) atomic_fetch_add(&r->nstart, 1);
    if (e->kind == GOCONN_TRACE_ATTEMPT_END) {
        if (atomic_fetch_add(&r->nend, 1) + 1 > atomic_load(&r->nstart)) bad(r, "ATTEMPT_END without its start");
        if (e->attempt->outcome == GOCONN_ATTEMPT_WON) {
            if (atomic_fetch_add(&r->nwon_ev, 1) > 0) bad(r, "two WON trace events");
            if (r->how == C_TRACE_WON) do_cancel(r, W_TRACE);
        }
    }
    if (r->how == C_TRACE_K && k == r->cancel_k) do_cancel(r, W_TRACE);
}

static int factory(void *u, goconn_transport *t, void **out) {
    req *r = u;
    (void)t;
    if (atomic_load(&r->done)) bad(r, "factory after on_done");
    if (atomic_fetch_add(&r->nfactory, 1) > 0) bad(r, "factory twice");
    if (r->how == C_FACTORY) {
        do_cancel(r, W_PROTOCOL);
        if (r->cancel_rc != 0) bad(r, "cancel from the factory did not give 0");
    }
    *out = r;
    return 0;
}

static void made(void *p, goconn_transport *t) {
    req *r = p;
    if (atomic_load(&r->done)) bad(r, "connection_made after on_done");
    if (atomic_load(&r->nfactory) != 1) bad(r, "connection_made without the factory");
    if (atomic_fetch_add(&r->nmade, 1) > 0) bad(r, "connection_made twice");
    r->t = t;
    if (r->how == C_MADE) {
        do_cancel(r, W_PROTOCOL);
        if (r->cancel_rc != 0) bad(r, "cancel from connection_made did not give 0");
    }
}

static void lost(void *p, const goconn_error *e) {
    req *r = p;
    (void)e;
    if (!atomic_load(&r->done)) bad(r, "connection_lost before on_done");
    if (atomic_fetch_add(&r->nlost, 1) > 0) bad(r, "connection_lost twice");
    atomic_store(&r->lost, 1);
}

static void on_done(void *u, goconn_transport *t, void *p, const goconn_error *e) {
    req *r = u;
    if (atomic_fetch_add(&r->ndone, 1) > 0) {
        bad(r, "on_done twice");
        return;
    }
    if (r->loop_mode != pthread_equal(pthread_self(), main_thread)) bad(r, "on_done on the wrong thread");
    size_t n = 0;
    const goconn_attempt *const *a = NULL;
    if (e) {
        r->code = e->code;
        snprintf(r->message, sizeof r->message, "%s", e->message ? e->message : "");
        if (t || p) bad(r, "a failure with a transport");
        if (atomic_load(&r->nfactory) || atomic_load(&r->nmade)) bad(r, "a failure after the factory");
        n = e->nattempts;
        a = e->attempts;
    } else {
        r->code = 0;
        if (!t || p != r || t != r->t) bad(r, "a success without its transport");
        if (atomic_load(&r->nmade) != 1) bad(r, "a success without connection_made");
        if (goconn_transport_get_attempts(t, &a, &n) != 0) bad(r, "get_attempts failed");
        const goconn_resolution *const *res;
        size_t nres;
        if (goconn_transport_get_resolutions(t, &res, &nres) != 0) bad(r, "get_resolutions failed");
        if (atomic_load(&r->nwon_ev) != 1) bad(r, "a success without one WON trace event");
    }
    int won = 0;
    for (size_t i = 0; i < n; i++) won += a[i]->outcome == GOCONN_ATTEMPT_WON;
    r->won_attempts = won;
    /* A failure has no winner, except a TLS failure after the TCP race was
     * won (a cancel, or the connect timeout, marks the winner cancelled). */
    if (e ? won > (e->code == GOCONN_EHANDSHAKETIMEOUT) : won != 1) bad(r, "wrong number of won attempts");
    if (atomic_load(&r->nend) != atomic_load(&r->nstart)) bad(r, "an attempt without its ATTEMPT_END");
    if (!e && r->close_in_done) {
        int rc = r->abort ? goconn_transport_abort(t) : goconn_transport_close(t);
        if (rc < 0) bad(r, "close in on_done failed");
    }
    atomic_store(&r->done, 1);
}

/* ------------------------------------------------------------------------ */
/* Fixtures                                                                  */
/* ------------------------------------------------------------------------ */

static int P4, P6; /* P4: 127.0.0.1 answers, ::1 hangs; P6: the other way round */
static hang_listener hang6, hang4;
static test_proc tls_peer, stall_peer;
static int tls_port, stall_port;
static goconn_ssl_options ssl;
static char p4s[16], p6s[16], tlss[16], stalls[16];

static const dns_answer dns_table[] = {
    {"a6late.goconn.test", DNS_A, "127.0.0.1", 0},
    {"a6late.goconn.test", DNS_AAAA, "::1", 15},
    {"a4late.goconn.test", DNS_AAAA, "::1", 0},
    {"a4late.goconn.test", DNS_A, "127.0.0.1", 15},
    {"both.goconn.test", DNS_AAAA, "::1", 5},
    {"both.goconn.test", DNS_A, "127.0.0.1", 5},
};
static const char *resolve_names[] = {NS_DUAL, "a6late.goconn.test", "a4late.goconn.test", "both.goconn.test"};

/* The goconn-peers log every connection on stderr: keep their pipes drained. */
static volatile int pump_stop;
static void *pump_thread(void *arg) {
    (void)arg;
    while (!pump_stop) {
        proc_pump(&tls_peer, 20);
        proc_pump(&stall_peer, 20);
        /* Keep only the tail: the logs are not checked here. */
        if (tls_peer.err_len > (1 << 20)) tls_peer.err_len = 0, tls_peer.err[0] = 0;
        if (stall_peer.err_len > (1 << 20)) stall_peer.err_len = 0, stall_peer.err[0] = 0;
    }
    return NULL;
}

/* The canceller thread makes the C_TIMED_THREAD cancels. */
static volatile int canceller_stop;
static void *canceller_thread(void *arg) {
    (void)arg;
    int first = 0;
    while (!canceller_stop) {
        int n = atomic_load(&launched);
        int64_t now = now_ns();
        for (int i = first; i < n; i++) {
            req *r = &reqs[i];
            if (i == first && atomic_load(&r->finished)) first++;
            if (r->how == C_TIMED_THREAD && !atomic_load(&r->claimed) && now >= r->cancel_at) do_cancel(r, W_OUTSIDE);
        }
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Launching and checking                                                    */
/* ------------------------------------------------------------------------ */

/* launch starts request id: of a random kind (or force_kind), with a
 * random cancel point (none when a kind is forced). */
static void launch(req *r, int id, int force_kind) {
    memset(r, 0, sizeof *r);
    r->id = id;
    r->kind = force_kind >= 0 ? force_kind : rnd_int(0, K_COUNT - 1);
    r->loop_mode = (int)(rnd() & 1);
    r->how = force_kind >= 0 ? C_NONE : rnd_int(0, C_COUNT - 1);
    if (r->how == C_DISPATCHED_K && !r->loop_mode) r->how = C_TIMED_MAIN;
    r->cancel_k = rnd_int(1, 6);
    r->close_in_done = (int)(rnd() & 1);
    r->abort = (int)(rnd() % 3 == 0);
    goconn_options o;
    CHECK_EQ_INT(goconn_options_init(&o, GOCONN_OPTIONS_VERSION), 0);
    o.loop = r->loop_mode ? loop : NULL;
    o.on_trace = on_trace;
    o.trace_userdata = r;
    int64_t max_delay_us = 2000;
    switch (r->kind) {
    case K_RESOLVE:
        o.host = resolve_names[rnd_int(0, 3)];
        o.port = rnd() & 1 ? p4s : p6s;
        o.has_resolution_delay = 1;
        o.resolution_delay = rnd_sec(0, 0.03);
        o.has_happy_eyeballs_delay = 1;
        o.happy_eyeballs_delay = rnd_sec(0.002, 0.03);
        max_delay_us = 40000;
        break;
    case K_BETWEEN:
        o.host = NS_DUAL;
        o.port = p4s; /* ::1 first, and it hangs */
        o.has_happy_eyeballs_delay = 1;
        o.happy_eyeballs_delay = rnd_sec(0.002, 0.04);
        max_delay_us = 50000;
        break;
    case K_TIMEOUT:
        o.host = NS_DUAL;
        o.port = p4s;
        o.has_attempt_timeout = 1;
        o.attempt_timeout = rnd_sec(0.003, 0.03);
        r->may_fail = 1; /* a loaded machine may not connect 127.0.0.1 in 3 ms either */
        if (rnd() & 1) {
            o.has_connect_timeout = 1;
            o.connect_timeout = rnd_sec(0.005, 0.04);
            r->may_timeout = 1;
        }
        max_delay_us = 40000;
        break;
    case K_WIN:
        o.host = rnd() & 1 ? "127.0.0.1" : "::1";
        o.port = o.host[0] == ':' ? p6s : p4s;
        max_delay_us = 1500;
        break;
    case K_TLS:
    case K_STALL:
        o.host = "127.0.0.1";
        o.port = r->kind == K_TLS ? tlss : stalls;
        o.ssl = &ssl;
        o.server_hostname = "localhost";
        if (r->kind == K_STALL && rnd() % 3 == 0) {
            o.has_ssl_handshake_timeout = 1;
            o.ssl_handshake_timeout = rnd_sec(0.01, 0.05);
            r->may_hs_timeout = 1;
        }
        if (!r->abort) { /* close() waits for the peer's close_notify */
            o.has_ssl_shutdown_timeout = 1;
            o.ssl_shutdown_timeout = 2;
        }
        max_delay_us = r->kind == K_TLS ? 15000 : 30000;
        break;
    }
    if (r->kind == K_STALL && !r->may_hs_timeout) {
        /* It would stall for ever: make sure a cancel comes. Its trace has
         * four events (the IP literal's lookup record, one attempt). */
        if (r->how == C_NONE || r->how == C_FACTORY || r->how == C_MADE) r->how = C_TIMED_THREAD;
        r->cancel_k = rnd_int(1, 4);
    }
    goconn_protocol p = GOCONN_PROTOCOL_INIT;
    p.factory = factory;
    p.connection_made = made;
    p.connection_lost = lost;
    r->t_open = now_ns();
    r->cancel_at = r->t_open + (int64_t)rnd_int(0, (int)max_delay_us) * 1000;
    char errbuf[200] = "";
    o.errbuf = errbuf;
    o.errbuf_size = sizeof errbuf;
    int rc = goconn_open_connection(&o, &p, on_done, r, &r->handle);
    if (rc != 0) fprintf(stderr, "open: %d %s\n", rc, errbuf);
    CHECK_EQ_INT(rc, 0);
    if (r->how == C_AT_ONCE) do_cancel(r, W_OUTSIDE);
}


static int allowed(const req *r, int code) {
    return code == -ECANCELED || (r->may_timeout && code == GOCONN_ETIMEOUT) ||
           (r->may_hs_timeout && code == GOCONN_EHANDSHAKETIMEOUT) ||
           (r->may_fail && (code == GOCONN_EMULTIPLE || code == -ETIMEDOUT));
}

/* verify runs once a request is over (on_done, and connection_lost after a
 * success), and again for every request at the end. */
static void verify(req *r) {
    if (atomic_load(&r->ndone) != 1) bad(r, "on_done not exactly once");
    if (atomic_load(&r->late)) bad(r, "callbacks after on_done");
    if (r->code != 0) {
        if (atomic_load(&r->nfactory) || atomic_load(&r->nmade) || atomic_load(&r->nlost))
            bad(r, "a protocol callback for a failed request");
        if (!allowed(r, r->code)) bad(r, r->message);
        if (r->code == -ECANCELED && !atomic_load(&r->claimed)) bad(r, "-ECANCELED with no cancel");
    } else {
        if (atomic_load(&r->nfactory) != 1 || atomic_load(&r->nmade) != 1 || atomic_load(&r->nlost) != 1)
            bad(r, "a success without factory, connection_made and connection_lost once each");
        if (r->won_attempts != 1) bad(r, "a success without one won attempt");
        if (r->must_cancel) bad(r, "connected although cancelled before the factory");
        if (r->how == C_TRACE_WON && atomic_load(&r->claimed)) bad(r, "connected although cancelled at the win");
    }
    if ((r->how == C_FACTORY || r->how == C_MADE) && r->code == 0 && r->cancel_rc != 0)
        bad(r, "the late cancel did not give 0");
    if (atomic_load(&r->nwon_ev) > 1 || r->won_attempts > 1) bad(r, "two winners");
}

/* Outcome statistics. */
static int stats[K_COUNT][4];        /* connected, cancelled, timed out, other */
static int cancel_stats[C_COUNT][2]; /* connected, failed */
static int phase_stats[K_COUNT][PH_COUNT];

static void record(const req *r) {
    int o = r->code == 0                                                        ? 0
            : r->code == -ECANCELED                                             ? 1
            : (r->code == GOCONN_ETIMEOUT || r->code == GOCONN_EHANDSHAKETIMEOUT) ? 2
                                                                                : 3;
    stats[r->kind][o]++;
    cancel_stats[r->how][r->code != 0]++;
    if (atomic_load(&r->claimed) && r->how != C_AT_ONCE) phase_stats[r->kind][r->phase]++;
}

static void dispatch_some(int max_wait_us) {
    struct pollfd p = {goconn_loop_fd(loop), POLLIN, 0};
    struct timespec ts = {0, (long)max_wait_us * 1000};
    if (ppoll(&p, 1, &ts, NULL) > 0) {
        int rc = goconn_loop_dispatch(loop, rnd_int(1, 4));
        CHECK(rc >= 0);
    }
}

/* run makes count requests starting at reqs[first], IN_FLIGHT at a time.
 * warm: every kind in turn, with no cancel but the stalls'. */
static void run(int first, int count, int warm) {
    int slot[IN_FLIGHT];
    for (int i = 0; i < IN_FLIGHT; i++) slot[i] = -1;
    int next = first, left = count;
    long long last_report = now_ms();
    while (left > 0) {
        for (int i = 0; i < IN_FLIGHT; i++) {
            if (slot[i] < 0 && next < first + count) {
                launch(&reqs[next], next, warm ? (next - first) % K_COUNT : -1);
                slot[i] = next++;
                atomic_store(&launched, next);
            }
        }
        int64_t now = now_ns();
        for (int i = 0; i < IN_FLIGHT; i++) {
            if (slot[i] < 0) continue;
            req *r = &reqs[slot[i]];
            if (!atomic_load(&r->claimed)) {
                if (r->how == C_TIMED_MAIN && now >= r->cancel_at) do_cancel(r, W_OUTSIDE);
                if (r->how == C_DISPATCHED_K && atomic_load(&r->ntrace) >= r->cancel_k) do_cancel(r, W_OUTSIDE);
            }
            if (!atomic_load(&r->done)) {
                if (now - r->t_open > 30000000000LL) {
                    bad(r, "no on_done after 30 s");
                    exit(1);
                }
                continue;
            }
            if (r->code == 0 && !r->close_in_done && !r->closed) {
                int rc = r->abort ? goconn_transport_abort(r->t) : goconn_transport_close(r->t);
                if (rc < 0) bad(r, "close failed");
                r->closed = 1;
            }
            if (r->code != 0 || atomic_load(&r->lost)) {
                verify(r);
                record(r);
                atomic_store(&r->finished, 1);
                slot[i] = -1;
                left--;
            } else if (now - r->t_open > 30000000000LL) {
                bad(r, "no connection_lost after 30 s");
                exit(1);
            }
        }
        dispatch_some(200);
        if (now_ms() - last_report > 5000) {
            printf("  %d of %d done\n", count - left, count);
            last_report = now_ms();
        }
    }
}

static int failures(int first, int count) {
    int n = 0;
    for (int i = first; i < first + count; i++) n += atomic_load(&reqs[i].bad) != 0;
    return n;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    require_namespace();
    main_thread = pthread_self();

    double scale = 1;
    const char *sc = getenv("GOCONN_STRESS_SCALE");
    if (sc && *sc) scale = atof(sc);
    int total = (int)(BASE_REQUESTS * scale);
    if (total < 60) total = 60;
    const char *seed_s = getenv("GOCONN_STRESS_SEED");
    uint64_t seed = seed_s && *seed_s ? strtoull(seed_s, NULL, 0) : (uint64_t)now_ns() ^ ((uint64_t)getpid() << 32);
    if (!seed) seed = 1;
    rng_state = seed;
    int warm = 4 * K_COUNT;
    nreqs = warm + total;
    reqs = calloc((size_t)nreqs, sizeof *reqs);
    CHECK(reqs != NULL);
    printf("%d requests, %d in flight, seed %llu (GOCONN_STRESS_SCALE %g; GOCONN_STRESS_SEED repeats a run)\n", total,
           IN_FLIGHT, (unsigned long long)seed, scale);

    dns_start(dns_table, sizeof dns_table / sizeof dns_table[0]);
    /* The sink listens on 127.0.0.1:P4 and [::1]:P6; the other family hangs
     * on each port. */
    sink.ep = epoll_create1(EPOLL_CLOEXEC);
    CHECK(sink.ep >= 0);
    sink.lfd[0] = listen_on(AF_INET, 0);
    P4 = port_of(sink.lfd[0]);
    CHECK(hang_start(&hang6, AF_INET6, P4));
    for (;;) {
        sink.lfd[1] = listen_on(AF_INET6, 0);
        P6 = port_of(sink.lfd[1]);
        if (P6 != P4 && hang_start(&hang4, AF_INET, P6)) break;
        close(sink.lfd[1]);
    }
    for (int i = 0; i < 2; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = sink.lfd[i]};
        CHECK(epoll_ctl(sink.ep, EPOLL_CTL_ADD, sink.lfd[i], &ev) == 0);
    }
    CHECK(pthread_create(&sink.thread, NULL, sink_thread, NULL) == 0);
    snprintf(p4s, sizeof p4s, "%d", P4);
    snprintf(p6s, sizeof p6s, "%d", P6);

    CHECK_EQ_INT(goconn_ssl_options_init(&ssl, GOCONN_SSL_OPTIONS_VERSION), 0);
    ssl.ca_file = cert_path("ca.pem");
    tls_port = peer_serve(&tls_peer, "--tls", "--certdir", certs_dir(), "--mode", "echo", NULL);
    stall_port = peer_serve(&stall_peer, "--mode", "stall-handshake", NULL);
    snprintf(tlss, sizeof tlss, "%d", tls_port);
    snprintf(stalls, sizeof stalls, "%d", stall_port);
    printf("P4 %d (127.0.0.1 answers, ::1 hangs), P6 %d (::1 answers, 127.0.0.1 hangs), tls %d, stall %d\n", P4, P6,
           tls_port, stall_port);
    pthread_t pump, canceller;
    CHECK(pthread_create(&pump, NULL, pump_thread, NULL) == 0);
    CHECK(pthread_create(&canceller, NULL, canceller_thread, NULL) == 0);
    CHECK_EQ_INT(goconn_loop_new(&loop), 0);

    /* Warm-up: the Go runtime's poller and threads, glibc's resolver, the
     * TLS trust store. Then the fd baseline. */
    run(0, warm, 1);
    CHECK_EQ_INT(failures(0, warm), 0);
    loop_pump(loop, 100);
    sleep_ms(200);
    int baseline = count_open_fds();
    int handles = goconn_live_handles();
    printf("baseline: %d fds, %d live handles (the loop)\n", baseline, handles);
    CHECK_EQ_INT(handles, 1);

    long long t0 = now_ms();
    run(warm, total, 0);
    long long elapsed = now_ms() - t0;

    /* Quiet: whatever runs in the background (lookups a cancel left behind,
     * sockets being closed) ends, and nothing more is delivered. */
    CHECK_EQ_INT(loop_pump(loop, 300), 0);
    int fds_ok = wait_fds(baseline, 10000);
    int fds_now = count_open_fds();
    canceller_stop = 1;
    pthread_join(canceller, NULL);

    for (int i = 0; i < nreqs; i++) {
        verify(&reqs[i]); /* nothing changed since it finished */
        if (goconn_request_cancel(reqs[i].handle) != -EBADF) bad(&reqs[i], "handle alive at the end");
    }
    int nbad = failures(0, nreqs);

    printf("%d requests in %lld ms (%.0f per second)\n", total, elapsed,
           total * 1000.0 / (double)(elapsed ? elapsed : 1));
    printf("  %-8s %9s %9s %9s %9s\n", "kind", "connected", "cancelled", "timed out", "other");
    for (int k = 0; k < K_COUNT; k++)
        printf("  %-8s %9d %9d %9d %9d\n", kind_names[k], stats[k][0], stats[k][1], stats[k][2], stats[k][3]);
    printf("  %-15s %9s %9s\n", "cancel", "connected", "failed");
    for (int c = 0; c < C_COUNT; c++)
        printf("  %-15s %9d %9d\n", cancel_names[c], cancel_stats[c][0], cancel_stats[c][1]);
    printf("  where the cancels landed (at once excluded):\n  %-22s", "");
    for (int k = 0; k < K_COUNT; k++) printf(" %8s", kind_names[k]);
    printf("\n");
    for (int ph = 0; ph < PH_COUNT; ph++) {
        printf("  %-22s", phase_names[ph]);
        for (int k = 0; k < K_COUNT; k++) printf(" %8d", phase_stats[k][ph]);
        printf("\n");
    }
    printf("fds: baseline %d, now %d; the sink accepted %d connections\n", baseline, fds_now,
           atomic_load(&sink.accepted));

    CHECK_EQ_INT(nbad, 0);
    if (!fds_ok) {
        fprintf(stderr, "fd leak: %d open, baseline %d\n", fds_now, baseline);
        char cmd[64];
        snprintf(cmd, sizeof cmd, "ls -l /proc/%d/fd >&2", (int)getpid());
        if (system(cmd) != 0) fprintf(stderr, "(ls failed)\n");
        CHECK(fds_ok);
    }
    CHECK_EQ_INT(goconn_loop_free(loop), 0);
    CHECK(wait_live_handles(0, 10000));

    pump_stop = 1;
    pthread_join(pump, NULL);
    proc_stop(&tls_peer);
    proc_stop(&stall_peer);
    sink.stop = 1;
    pthread_join(sink.thread, NULL);
    close(sink.lfd[0]);
    close(sink.lfd[1]);
    close(sink.ep);
    hang_stop(&hang4);
    hang_stop(&hang6);
    dns_stop();
    CHECK_EQ_INT(goconn_live_handles(), 0);
    printf("ok\n");
    return 0;
}
