/* Callbacks that call back into the library:
 *  - ping-pong: write from connection_made and from data_received, then
 *    close from data_received; after that close (empty buffer) write gives
 *    GOCONN_ECLOSING and nothing more is delivered; a second connection is
 *    opened from inside a callback; in loop mode goconn_loop_dispatch from a
 *    callback (or from another thread meanwhile) gives GOCONN_EREENTRANT and
 *    goconn_loop_free -EBUSY;
 *  - abort from data_received: no more data, no eof, connection_lost(NULL);
 *  - close with a non-empty buffer, then write: accepted and sent (asyncio's
 *    quirk), and the peer gets everything;
 *  - flow control in loop mode: pause_writing runs synchronously inside
 *    goconn_transport_write (and inside set_write_buffer_limits), exactly
 *    once, on this thread; resume_writing exactly once after the peer reads;
 *  - flow control in direct mode: pause_writing is queued to a library
 *    thread, never run inside write;
 *  - close() while paused: flush, resume_writing, then connection_lost;
 *    abort() while paused: connection_lost and never resume_writing;
 *  - write_eof() with a full buffer: every byte, then EOF, reach the peer;
 *  - many pause/resume cycles: they strictly alternate, pause first.
 * Every case runs in loop mode and in direct mode unless it is loop-only. */
#define _GNU_SOURCE
#include <errno.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testutil.h"

#define CHUNK (256 * 1024)
static char chunk[CHUNK];

static goconn_protocol base_protocol(void) {
    goconn_protocol p = GOCONN_PROTOCOL_INIT;
    return p;
}

static void run_until(goconn_loop *loop, volatile int *flag) {
    if (loop) {
        CHECK(loop_run(loop, flag, 10000));
    } else {
        CHECK(wait_flag(flag, 10000));
    }
}

static void settle(goconn_loop *loop) {
    if (loop) {
        loop_pump(loop, 50);
    } else {
        sleep_ms(50);
    }
}

/* ended: after connection_lost, wait until the connection's handles are
 * gone (in direct mode the lost flag is set before the callback returns). */
static void ended(goconn_loop *loop) {
    if (loop) {
        loop_pump(loop, 50);
    } else {
        CHECK(wait_live_handles(0, 10000));
    }
}

static int wait_peer(volatile size_t *received, size_t want, volatile int *eof) {
    for (int i = 0; i < 10000; i++) {
        if (*received == want && *eof) return 1;
        sleep_ms(1);
    }
    fprintf(stderr, "peer received %zu of %zu, eof %d\n", (size_t)*received, want, *eof);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Ping-pong, close from data_received, write after close.                   */
/* ------------------------------------------------------------------------ */

#define ROUNDS 5

typedef struct pp {
    goconn_loop *loop;
    goconn_transport *t;
    int round;
    size_t want, have;
    int after_close_rc, is_closing_after, is_reading_after;
    int ndata_after_close, neof;
    int closed;
    volatile int done, lost;
    /* The nested connection, opened from data_received of round 2. */
    struct pp *child;
    int child_open_rc;
    int dispatch_rc, free_rc, other_thread_dispatch_rc;
} pp;

static void pp_send(pp *s) {
    char msg[32];
    int n = snprintf(msg, sizeof msg, "round %d;", s->round);
    s->want = (size_t)n;
    s->have = 0;
    CHECK_EQ_INT(goconn_transport_write(s->t, msg, (size_t)n), 0);
}

static void *dispatch_from_thread(void *arg) {
    pp *s = arg;
    s->other_thread_dispatch_rc = goconn_loop_dispatch(s->loop, 0);
    return NULL;
}

static void pp_made(void *p, goconn_transport *t) {
    pp *s = p;
    s->t = t;
    if (s->loop) {
        /* Not from a callback: dispatch is refused, free is busy. */
        s->dispatch_rc = goconn_loop_dispatch(s->loop, 0);
        s->free_rc = goconn_loop_free(s->loop);
        /* Nor from another thread while this one dispatches. */
        pthread_t th;
        CHECK_EQ_INT(pthread_create(&th, NULL, dispatch_from_thread, s), 0);
        CHECK_EQ_INT(pthread_join(th, NULL), 0);
    }
    pp_send(s);
}

static void pp_done(void *u, goconn_transport *t, void *p, const goconn_error *e) {
    pp *s = u;
    CHECK(e == NULL && t == s->t && p == s);
    s->done = 1;
}

static void pp_lost(void *p, const goconn_error *e) {
    pp *s = p;
    CHECK(e == NULL);
    s->lost = 1;
}

static int pp_eof(void *p) {
    ((pp *)p)->neof++;
    return 0;
}

static void pp_open(pp *s, goconn_loop *loop, const char *port);

static void pp_data(void *p, const void *d, size_t n) {
    pp *s = p;
    (void)d;
    if (s->closed) {
        s->ndata_after_close++;
        return;
    }
    s->have += n;
    CHECK(s->have <= s->want);
    if (s->have < s->want) return;
    if (s->round == 2 && s->child) {
        /* goconn_open_connection from inside a callback. */
        char port[16];
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        CHECK_EQ_INT(goconn_transport_get_peername(s->t, (struct sockaddr *)&ss, &sl), 0);
        snprintf(port, sizeof port, "%d", ntohs(((struct sockaddr_in *)&ss)->sin_port));
        pp_open(s->child, s->loop, port);
    }
    if (++s->round < ROUNDS) {
        pp_send(s);
        return;
    }
    CHECK_EQ_INT(goconn_transport_close(s->t), 0);
    s->closed = 1;
    s->is_closing_after = goconn_transport_is_closing(s->t);
    s->is_reading_after = goconn_transport_is_reading(s->t);
    /* The buffer is empty: the write is dropped. */
    s->after_close_rc = goconn_transport_write(s->t, "late", 4);
    CHECK_EQ_INT(goconn_transport_close(s->t), 0);     /* idempotent */
    CHECK_EQ_INT(goconn_transport_write_eof(s->t), 0); /* a no-op when closing */
    /* close() with an empty buffer already queued connection_lost. */
    CHECK_EQ_INT(goconn_transport_abort(s->t), 0);
    CHECK_EQ_INT(goconn_transport_pause_reading(s->t), 0);
    CHECK_EQ_INT(goconn_transport_resume_reading(s->t), 0);
    CHECK_EQ_INT(goconn_transport_is_reading(s->t), 0);
}

static void pp_open(pp *s, goconn_loop *loop, const char *port) {
    s->loop = loop;
    goconn_options o;
    CHECK_EQ_INT(goconn_options_init(&o, GOCONN_OPTIONS_VERSION), 0);
    o.loop = loop;
    o.host = "127.0.0.1";
    o.port = port;
    goconn_protocol p = base_protocol();
    p.connection_made = pp_made;
    p.data_received = pp_data;
    p.eof_received = pp_eof;
    p.connection_lost = pp_lost;
    CHECK_EQ_INT(goconn_open_connection(&o, &p, pp_done, s, NULL), 0);
}

static void check_pp(const pp *s, int loop_mode) {
    CHECK(s->done);
    CHECK_EQ_INT(s->round, ROUNDS);
    CHECK_EQ_INT(s->is_closing_after, 1);
    CHECK_EQ_INT(s->is_reading_after, 0);
    CHECK_EQ_INT(s->after_close_rc, GOCONN_ECLOSING);
    CHECK_EQ_INT(s->ndata_after_close, 0);
    CHECK_EQ_INT(s->neof, 0);
    if (loop_mode) {
        CHECK_EQ_INT(s->dispatch_rc, GOCONN_EREENTRANT);
        CHECK_EQ_INT(s->free_rc, -EBUSY);
        CHECK_EQ_INT(s->other_thread_dispatch_rc, GOCONN_EREENTRANT);
    }
}

static void ping_pong(goconn_loop *loop) {
    test_peer peer;
    peer_start(&peer, AF_INET, PEER_ECHO, NULL, 0);
    static pp parent, child;
    memset(&parent, 0, sizeof parent);
    memset(&child, 0, sizeof child);
    parent.child = &child;
    pp_open(&parent, loop, peer_port(&peer));
    run_until(loop, &parent.lost);
    run_until(loop, &child.lost);
    ended(loop);
    check_pp(&parent, loop != NULL);
    check_pp(&child, loop != NULL);
    CHECK_EQ_INT(goconn_transport_write(parent.t, "x", 1), -EBADF);
    peer_stop(&peer);
}

/* ------------------------------------------------------------------------ */
/* Abort from data_received.                                                 */
/* ------------------------------------------------------------------------ */

typedef struct {
    goconn_transport *t;
    int ndata, neof, write_rc, closing;
    volatile int lost;
    int lost_with_error;
} ab;

static void ab_made(void *p, goconn_transport *t) { ((ab *)p)->t = t; }
static void ab_data(void *p, const void *d, size_t n) {
    ab *s = p;
    (void)d;
    (void)n;
    if (s->ndata++ > 0) return;
    /* 1: this call ended the connection. */
    CHECK_EQ_INT(goconn_transport_abort(s->t), 1);
    s->closing = goconn_transport_is_closing(s->t);
    s->write_rc = goconn_transport_write(s->t, "x", 1);
    /* 0: connection_lost is already on its way. */
    CHECK_EQ_INT(goconn_transport_abort(s->t), 0);
    CHECK_EQ_INT(goconn_transport_close(s->t), 0);
}
static int ab_eof(void *p) {
    ((ab *)p)->neof++;
    return 0;
}
static void ab_lost(void *p, const goconn_error *e) {
    ab *s = p;
    s->lost_with_error = e != NULL;
    s->lost = 1;
}

static void abort_from_data(goconn_loop *loop) {
    static char payload[1 << 20];
    memset(payload, 'a', sizeof payload);
    test_peer peer;
    peer_start(&peer, AF_INET, PEER_SEND_CLOSE, payload, sizeof payload);
    ab s;
    memset(&s, 0, sizeof s);
    goconn_options o;
    CHECK_EQ_INT(goconn_options_init(&o, GOCONN_OPTIONS_VERSION), 0);
    o.loop = loop;
    o.host = "127.0.0.1";
    o.port = peer_port(&peer);
    goconn_protocol p = base_protocol();
    p.connection_made = ab_made;
    p.data_received = ab_data;
    p.eof_received = ab_eof;
    p.connection_lost = ab_lost;
    CHECK_EQ_INT(goconn_open_connection(&o, &p, NULL, &s, NULL), 0);
    run_until(loop, &s.lost);
    ended(loop);
    CHECK_EQ_INT(s.ndata, 1);
    CHECK_EQ_INT(s.neof, 0);
    CHECK_EQ_INT(s.closing, 1);
    CHECK_EQ_INT(s.write_rc, GOCONN_ECLOSING);
    CHECK_EQ_INT(s.lost_with_error, 0);
    CHECK_EQ_INT(goconn_transport_abort(s.t), -EBADF);
    peer_stop(&peer);
}

/* ------------------------------------------------------------------------ */
/* close() with a non-empty buffer, then write(): accepted and sent.         */
/* ------------------------------------------------------------------------ */

typedef struct {
    goconn_transport *t;
    size_t total;
    int late_rc;
    size_t size_before, size_after;
    volatile int made, lost;
    int lost_with_error;
} wc;

static void wc_made(void *p, goconn_transport *t) {
    wc *s = p;
    s->t = t;
    /* Fill the kernel buffers until the transport has to buffer. */
    size_t size = 0;
    CHECK_EQ_INT(goconn_transport_set_write_buffer_limits(t, (int64_t)1 << 40, GOCONN_LIMIT_DEFAULT, NULL, 0), 0);
    while (size == 0) {
        CHECK(s->total < ((size_t)256 << 20));
        CHECK_EQ_INT(goconn_transport_write(t, chunk, CHUNK), 0);
        s->total += CHUNK;
        CHECK_EQ_INT(goconn_transport_get_write_buffer_size(t, &size), 0);
    }
    CHECK_EQ_INT(goconn_transport_close(t), 0);
    CHECK_EQ_INT(goconn_transport_is_closing(t), 1);
    CHECK_EQ_INT(goconn_transport_get_write_buffer_size(t, &s->size_before), 0);
    s->late_rc = goconn_transport_write(t, "tail", 4);
    if (s->late_rc == 0) s->total += 4;
    CHECK_EQ_INT(goconn_transport_get_write_buffer_size(t, &s->size_after), 0);
    s->made = 1;
}
static void wc_lost(void *p, const goconn_error *e) {
    wc *s = p;
    s->lost_with_error = e != NULL;
    s->lost = 1;
}

static void write_after_close_buffered(goconn_loop *loop) {
    test_peer peer;
    peer_start(&peer, AF_INET, PEER_READ_ON_SIGNAL, NULL, 0);
    wc s;
    memset(&s, 0, sizeof s);
    goconn_options o;
    CHECK_EQ_INT(goconn_options_init(&o, GOCONN_OPTIONS_VERSION), 0);
    o.loop = loop;
    o.host = "127.0.0.1";
    o.port = peer_port(&peer);
    goconn_protocol p = base_protocol();
    p.connection_made = wc_made;
    p.connection_lost = wc_lost;
    CHECK_EQ_INT(goconn_open_connection(&o, &p, NULL, &s, NULL), 0);
    run_until(loop, &s.made);
    CHECK_EQ_INT(s.late_rc, 0);
    CHECK(s.size_before > 0);
    /* The kernel may take some bytes meanwhile, but "tail" is in the buffer. */
    CHECK(s.size_after >= 4);
    CHECK_EQ_INT(s.lost, 0); /* the peer reads nothing yet */
    peer.go = 1;
    run_until(loop, &s.lost);
    CHECK_EQ_INT(s.lost_with_error, 0);
    CHECK(wait_peer(&peer.received, s.total, &peer.got_eof));
    peer_stop(&peer);
}

/* ------------------------------------------------------------------------ */
/* Flow control.                                                             */
/* ------------------------------------------------------------------------ */

typedef struct {
    goconn_loop *loop;
    pthread_t main_thread;
    goconn_transport *t;
    atomic_int npause, nresume;
    atomic_int in_write, in_set;
    int pause_in_write, pause_in_set, pause_on_main, pause_write_rc;
    int resume_on_main;
    size_t size_at_resume;
    int64_t low;
    size_t extra; /* bytes written from pause_writing */
    volatile int done, paused, resumed, lost;
    int lost_with_error;
} fc;

static void fc_pause(void *p) {
    fc *s = p;
    atomic_fetch_add(&s->npause, 1);
    s->pause_in_write = atomic_load(&s->in_write);
    s->pause_in_set = atomic_load(&s->in_set);
    s->pause_on_main = pthread_equal(pthread_self(), s->main_thread);
    /* A write from inside pause_writing (itself inside write in loop mode). */
    s->pause_write_rc = goconn_transport_write(s->t, "p", 1);
    if (s->pause_write_rc == 0) s->extra++;
    s->paused = 1;
}
static void fc_resume(void *p) {
    fc *s = p;
    atomic_fetch_add(&s->nresume, 1);
    s->resume_on_main = pthread_equal(pthread_self(), s->main_thread);
    CHECK_EQ_INT(goconn_transport_get_write_buffer_size(s->t, &s->size_at_resume), 0);
    s->resumed = 1;
}
static void fc_lost(void *p, const goconn_error *e) {
    fc *s = p;
    s->lost_with_error = e != NULL;
    s->lost = 1;
}
static void fc_done(void *u, goconn_transport *t, void *p, const goconn_error *e) {
    fc *s = u;
    CHECK(e == NULL && p == s);
    s->t = t;
    s->done = 1;
}

static void fc_open(fc *s, goconn_loop *loop, const test_peer *peer) {
    memset(s, 0, sizeof *s);
    s->loop = loop;
    s->main_thread = pthread_self();
    goconn_options o;
    CHECK_EQ_INT(goconn_options_init(&o, GOCONN_OPTIONS_VERSION), 0);
    o.loop = loop;
    o.host = "127.0.0.1";
    o.port = peer_port(peer);
    goconn_protocol p = base_protocol();
    p.pause_writing = fc_pause;
    p.resume_writing = fc_resume;
    p.connection_lost = fc_lost;
    CHECK_EQ_INT(goconn_open_connection(&o, &p, fc_done, s, NULL), 0);
    run_until(loop, &s->done);
}

static size_t fc_write(fc *s) {
    atomic_store(&s->in_write, 1);
    CHECK_EQ_INT(goconn_transport_write(s->t, chunk, CHUNK), 0);
    atomic_store(&s->in_write, 0);
    return CHUNK;
}

/* After the pause: the peer reads, resume_writing follows once, close
 * flushes everything. */
static void fc_finish(fc *s, test_peer *peer, size_t total) {
    goconn_loop *loop = s->loop;
    /* More writes while paused: no second pause. */
    for (int i = 0; i < 4; i++) total += fc_write(s);
    settle(loop);
    CHECK_EQ_INT(atomic_load(&s->npause), 1);
    CHECK_EQ_INT(atomic_load(&s->nresume), 0);
    size_t size = 0;
    CHECK_EQ_INT(goconn_transport_get_write_buffer_size(s->t, &size), 0);
    CHECK(size > 1000);
    peer->go = 1;
    run_until(loop, &s->resumed);
    CHECK_EQ_INT(atomic_load(&s->nresume), 1);
    CHECK_EQ_INT(atomic_load(&s->npause), 1);
    CHECK(s->size_at_resume <= 100);
    CHECK_EQ_INT(s->resume_on_main, loop != NULL);
    CHECK_EQ_INT(s->pause_write_rc, 0);
    total += s->extra;
    CHECK_EQ_INT(goconn_transport_close(s->t), 0);
    run_until(loop, &s->lost);
    CHECK_EQ_INT(s->lost_with_error, 0);
    CHECK_EQ_INT(atomic_load(&s->npause), 1);
    CHECK_EQ_INT(atomic_load(&s->nresume), 1);
    CHECK(wait_peer(&peer->received, total, &peer->got_eof));
}

/* pause_writing inside write(): synchronous in loop mode, queued in direct
 * mode. */
static void pause_in_write(goconn_loop *loop) {
    test_peer peer;
    peer_start(&peer, AF_INET, PEER_READ_ON_SIGNAL, NULL, 0);
    static fc s;
    fc_open(&s, loop, &peer);
    char errbuf[128];
    CHECK_EQ_INT(goconn_transport_set_write_buffer_limits(s.t, 1000, 100, errbuf, sizeof errbuf), 0);
    int64_t low = 0, high = 0;
    CHECK_EQ_INT(goconn_transport_get_write_buffer_limits(s.t, &low, &high), 0);
    CHECK_EQ_INT(low, 100);
    CHECK_EQ_INT(high, 1000);
    CHECK_EQ_INT(atomic_load(&s.npause), 0); /* nothing buffered yet */
    size_t total = 0;
    while (atomic_load(&s.npause) == 0) {
        CHECK(total < ((size_t)256 << 20));
        total += fc_write(&s);
        if (loop == NULL && total > ((size_t)8 << 20)) {
            /* Direct mode: the pause arrives on a library thread. */
            CHECK(wait_flag(&s.paused, 10000));
        }
    }
    if (loop) {
        /* Loop mode: inside write, on this thread, before write returned. */
        CHECK_EQ_INT(s.pause_in_write, 1);
        CHECK_EQ_INT(s.pause_on_main, 1);
    } else {
        CHECK(wait_flag(&s.paused, 10000));
        CHECK_EQ_INT(s.pause_on_main, 0);
    }
    fc_finish(&s, &peer, total);
    peer_stop(&peer);
}

/* pause_writing inside set_write_buffer_limits (loop mode). */
static void pause_in_set_limits(goconn_loop *loop) {
    test_peer peer;
    peer_start(&peer, AF_INET, PEER_READ_ON_SIGNAL, NULL, 0);
    static fc s;
    fc_open(&s, loop, &peer);
    CHECK_EQ_INT(goconn_transport_set_write_buffer_limits(s.t, (int64_t)1 << 40, GOCONN_LIMIT_DEFAULT, NULL, 0), 0);
    size_t total = 0, size = 0;
    while (size <= 2000) {
        CHECK(total < ((size_t)256 << 20));
        total += fc_write(&s);
        CHECK_EQ_INT(goconn_transport_get_write_buffer_size(s.t, &size), 0);
    }
    CHECK_EQ_INT(atomic_load(&s.npause), 0);
    atomic_store(&s.in_set, 1);
    CHECK_EQ_INT(goconn_transport_set_write_buffer_limits(s.t, 1000, 100, NULL, 0), 0);
    atomic_store(&s.in_set, 0);
    CHECK_EQ_INT(atomic_load(&s.npause), 1);
    CHECK_EQ_INT(s.pause_in_set, 1);
    CHECK_EQ_INT(s.pause_on_main, 1);
    /* Setting limits again while paused: no second pause. */
    CHECK_EQ_INT(goconn_transport_set_write_buffer_limits(s.t, 1000, 100, NULL, 0), 0);
    CHECK_EQ_INT(atomic_load(&s.npause), 1);
    fc_finish(&s, &peer, total);
    peer_stop(&peer);
}

/* close() while paused: everything is flushed, then resume_writing, then
 * connection_lost(NULL) (asyncio's probe order). abort() while paused:
 * connection_lost(NULL) and no resume_writing at all. */
typedef struct {
    goconn_loop *loop;
    goconn_transport *t;
    char log[16];
    atomic_int npause, nresume;
    volatile int done, paused, lost;
    int lost_with_error;
} cwp;

static void cwp_note(cwp *s, char c) {
    size_t n = strlen(s->log);
    CHECK(n + 1 < sizeof s->log);
    s->log[n] = c;
}
static void cwp_pause(void *p) {
    cwp *s = p;
    atomic_fetch_add(&s->npause, 1);
    cwp_note(s, 'P');
    s->paused = 1;
}
static void cwp_resume(void *p) {
    cwp *s = p;
    atomic_fetch_add(&s->nresume, 1);
    cwp_note(s, 'R');
}
static void cwp_lost(void *p, const goconn_error *e) {
    cwp *s = p;
    cwp_note(s, 'L');
    s->lost_with_error = e != NULL;
    s->lost = 1;
}
static void cwp_done(void *u, goconn_transport *t, void *p, const goconn_error *e) {
    cwp *s = u;
    CHECK(e == NULL && p == s);
    s->t = t;
    s->done = 1;
}

static void close_while_paused(goconn_loop *loop, int use_abort) {
    test_peer peer;
    peer_start(&peer, AF_INET, PEER_READ_ON_SIGNAL, NULL, 0);
    static cwp s;
    memset(&s, 0, sizeof s);
    goconn_options o;
    CHECK_EQ_INT(goconn_options_init(&o, GOCONN_OPTIONS_VERSION), 0);
    o.loop = loop;
    o.host = "127.0.0.1";
    o.port = peer_port(&peer);
    goconn_protocol p = base_protocol();
    p.pause_writing = cwp_pause;
    p.resume_writing = cwp_resume;
    p.connection_lost = cwp_lost;
    CHECK_EQ_INT(goconn_open_connection(&o, &p, cwp_done, &s, NULL), 0);
    run_until(loop, &s.done);
    CHECK_EQ_INT(goconn_transport_set_write_buffer_limits(s.t, 1000, 100, NULL, 0), 0);
    size_t total = 0;
    while (!s.paused) {
        CHECK(total < ((size_t)256 << 20));
        CHECK_EQ_INT(goconn_transport_write(s.t, chunk, CHUNK), 0);
        total += CHUNK;
        if (!loop && total > ((size_t)8 << 20)) CHECK(wait_flag(&s.paused, 10000));
    }
    if (use_abort) {
        /* abort() drops the buffer; a paused protocol is not resumed. */
        CHECK_EQ_INT(goconn_transport_abort(s.t), 1);
        run_until(loop, &s.lost);
        peer.go = 1;
        ended(loop);
        sleep_ms(50);
        CHECK_STREQ(s.log, "PL");
    } else {
        CHECK_EQ_INT(goconn_transport_close(s.t), 0);
        settle(loop);
        CHECK_EQ_INT(s.lost, 0); /* the buffer is not flushed yet */
        peer.go = 1;
        run_until(loop, &s.lost);
        CHECK_STREQ(s.log, "PRL");
        CHECK(wait_peer(&peer.received, total, &peer.got_eof));
    }
    CHECK_EQ_INT(s.lost_with_error, 0);
    peer_stop(&peer);
}

/* write_eof() with a full buffer: the peer gets every byte, then EOF; the
 * transport stays open (not closing) until the peer's own EOF. */
typedef struct {
    goconn_transport *t;
    int neof, closing_at_eof;
    volatile int done, lost;
    int lost_with_error;
} we;

static int we_eof(void *p) {
    we *s = p;
    s->neof++;
    s->closing_at_eof = goconn_transport_is_closing(s->t);
    return 0;
}
static void we_lost(void *p, const goconn_error *e) {
    we *s = p;
    s->lost_with_error = e != NULL;
    s->lost = 1;
}
static void we_done(void *u, goconn_transport *t, void *p, const goconn_error *e) {
    we *s = u;
    CHECK(e == NULL && p == s);
    s->t = t;
    s->done = 1;
}

static void write_eof_buffered(goconn_loop *loop) {
    test_peer peer;
    peer_start(&peer, AF_INET, PEER_READ_ON_SIGNAL, NULL, 0);
    static we s;
    memset(&s, 0, sizeof s);
    goconn_options o;
    CHECK_EQ_INT(goconn_options_init(&o, GOCONN_OPTIONS_VERSION), 0);
    o.loop = loop;
    o.host = "127.0.0.1";
    o.port = peer_port(&peer);
    goconn_protocol p = base_protocol();
    p.eof_received = we_eof;
    p.connection_lost = we_lost;
    CHECK_EQ_INT(goconn_open_connection(&o, &p, we_done, &s, NULL), 0);
    run_until(loop, &s.done);
    CHECK_EQ_INT(goconn_transport_set_write_buffer_limits(s.t, (int64_t)1 << 40, GOCONN_LIMIT_DEFAULT, NULL, 0), 0);
    size_t total = 0, size = 0;
    while (size == 0) {
        CHECK(total < ((size_t)256 << 20));
        CHECK_EQ_INT(goconn_transport_write(s.t, chunk, CHUNK), 0);
        total += CHUNK;
        CHECK_EQ_INT(goconn_transport_get_write_buffer_size(s.t, &size), 0);
    }
    CHECK_EQ_INT(goconn_transport_write_eof(s.t), 0);
    CHECK_EQ_INT(goconn_transport_is_closing(s.t), 0);
    CHECK_EQ_INT(goconn_transport_write(s.t, "x", 1), GOCONN_EWRITEEOF);
    peer.go = 1;
    /* The peer reads everything, sees EOF and closes: our eof_received
     * closes the transport. */
    run_until(loop, &s.lost);
    CHECK_EQ_INT(s.neof, 1);
    CHECK_EQ_INT(s.closing_at_eof, 0);
    CHECK_EQ_INT(s.lost_with_error, 0);
    CHECK(wait_peer(&peer.received, total, &peer.got_eof));
    peer_stop(&peer);
}

/* Many pause/resume cycles against a peer that reads fast, with a writer
 * that waits while paused: pause_writing and resume_writing must strictly
 * alternate, pause first, whatever the threads do. */
typedef struct {
    goconn_transport *t;
    atomic_int paused, npause, nresume, bad_order;
    volatile int done, lost;
    int lost_with_error;
} alt;

static void alt_pause(void *p) {
    alt *s = p;
    if (atomic_exchange(&s->paused, 1) != 0) atomic_fetch_add(&s->bad_order, 1);
    atomic_fetch_add(&s->npause, 1);
}
static void alt_resume(void *p) {
    alt *s = p;
    if (atomic_exchange(&s->paused, 0) != 1) atomic_fetch_add(&s->bad_order, 1);
    atomic_fetch_add(&s->nresume, 1);
}
static void alt_lost(void *p, const goconn_error *e) {
    alt *s = p;
    s->lost_with_error = e != NULL;
    s->lost = 1;
}
static void alt_done(void *u, goconn_transport *t, void *p, const goconn_error *e) {
    alt *s = u;
    CHECK(e == NULL && p == s);
    s->t = t;
    s->done = 1;
}

static void flow_alternation(goconn_loop *loop) {
    test_peer peer;
    peer_start(&peer, AF_INET, PEER_DISCARD, NULL, 0);
    static alt s;
    memset(&s, 0, sizeof s);
    goconn_options o;
    CHECK_EQ_INT(goconn_options_init(&o, GOCONN_OPTIONS_VERSION), 0);
    o.loop = loop;
    o.host = "127.0.0.1";
    o.port = peer_port(&peer);
    goconn_protocol p = base_protocol();
    p.pause_writing = alt_pause;
    p.resume_writing = alt_resume;
    p.connection_lost = alt_lost;
    CHECK_EQ_INT(goconn_open_connection(&o, &p, alt_done, &s, NULL), 0);
    run_until(loop, &s.done);
    CHECK_EQ_INT(goconn_transport_set_write_buffer_limits(s.t, 4096, 1024, NULL, 0), 0);
    size_t total = 0;
    long long deadline = now_ms() + 600;
    int writes = 0;
    while (now_ms() < deadline && writes < 20000) {
        CHECK_EQ_INT(goconn_transport_write(s.t, chunk, CHUNK), 0);
        total += CHUNK;
        writes++;
        /* A well-behaved writer: wait while paused. */
        long long wait_until = now_ms() + 10000;
        while (atomic_load(&s.paused)) {
            CHECK(now_ms() < wait_until);
            if (loop) {
                CHECK(goconn_loop_dispatch(loop, 0) >= 0);
            } else {
                sched_yield();
            }
        }
    }
    CHECK_EQ_INT(goconn_transport_close(s.t), 0);
    run_until(loop, &s.lost);
    ended(loop);
    CHECK_EQ_INT(s.lost_with_error, 0);
    printf("flow alternation (%s): %d writes, %d pauses, %d resumes\n", loop ? "loop" : "direct", writes,
           atomic_load(&s.npause), atomic_load(&s.nresume));
    CHECK_EQ_INT(atomic_load(&s.bad_order), 0);
    if (atomic_load(&s.npause) == 0) printf("flow alternation: the peer kept up, no pause to check\n");
    CHECK_EQ_INT(atomic_load(&s.nresume), atomic_load(&s.npause));
    CHECK(wait_peer(&peer.received, total, &peer.got_eof));
    peer_stop(&peer);
}

static void all_cases(goconn_loop *loop) {
    flow_alternation(loop);
    close_while_paused(loop, 0);
    close_while_paused(loop, 1);
    write_eof_buffered(loop);
    ping_pong(loop);
    abort_from_data(loop);
    write_after_close_buffered(loop);
    pause_in_write(loop);
}

int main(void) {
    memset(chunk, 'c', sizeof chunk);

    all_cases(NULL);
    CHECK(wait_live_handles(0, 10000));

    goconn_loop *loop;
    CHECK_EQ_INT(goconn_loop_new(&loop), 0);
    all_cases(loop);
    pause_in_set_limits(loop);
    CHECK_EQ_INT(goconn_loop_free(loop), 0);

    CHECK_EQ_INT(goconn_live_handles(), 0);
    printf("ok\n");
    return 0;
}
