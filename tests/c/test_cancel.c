/* goconn_request_cancel during a connect that hangs (a listener whose accept
 * queue is full), in loop mode and in direct mode: on_done reports
 * -ECANCELED exactly once, no protocol callback ever runs, every socket is
 * closed (the fd count returns to where it was), and the request handle is
 * dead afterwards (-EBADF). Also with Happy Eyeballs and two hanging
 * attempts (127.0.0.1 and ::1 on one port), a cancel before the connect has
 * even started, and a cancel from connection_made (too late: on_done brings
 * the transport), a cancel racing a connect that succeeds, and a Happy
 * Eyeballs fallback whose losing attempt is cancelled. */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

typedef struct {
    volatile int done;
    atomic_int ndone;
    atomic_int protocol_calls;
    int had_transport;
    int code, errnum;
    char message[256];
    size_t nattempts;
    int outcomes[4];
} result;

static void on_done(void *u, goconn_transport *t, void *p, const goconn_error *e) {
    result *r = u;
    atomic_fetch_add(&r->ndone, 1);
    r->had_transport = t != NULL || p != NULL;
    CHECK(e != NULL);
    r->code = e->code;
    r->errnum = e->errnum;
    snprintf(r->message, sizeof r->message, "%s", e->message ? e->message : "(null)");
    r->nattempts = e->nattempts;
    for (size_t i = 0; i < e->nattempts && i < 4; i++) r->outcomes[i] = e->attempts[i]->outcome;
    r->done = 1;
}

static int factory(void *u, goconn_transport *t, void **out) {
    (void)t;
    atomic_fetch_add(&((result *)u)->protocol_calls, 1);
    *out = u;
    return 0;
}
static void made(void *p, goconn_transport *t) {
    (void)t;
    atomic_fetch_add(&((result *)p)->protocol_calls, 1);
}
static void lost(void *p, const goconn_error *e) {
    (void)e;
    atomic_fetch_add(&((result *)p)->protocol_calls, 1);
}

static goconn_request *open_hanging(goconn_loop *loop, const char *host, int port, int happy, result *r) {
    memset(r, 0, sizeof *r);
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", port);
    goconn_options o;
    CHECK_EQ_INT(goconn_options_init(&o, GOCONN_OPTIONS_VERSION), 0);
    o.loop = loop;
    o.host = host;
    o.port = port_s;
    if (happy) {
        o.has_happy_eyeballs_delay = 1;
        o.happy_eyeballs_delay = 0.05;
    }
    goconn_protocol p = GOCONN_PROTOCOL_INIT;
    p.factory = factory;
    p.connection_made = made;
    p.connection_lost = lost;
    goconn_request *req = NULL;
    CHECK_EQ_INT(goconn_open_connection(&o, &p, on_done, r, &req), 0);
    CHECK(req != NULL);
    return req;
}

/* wait_done waits for on_done, then makes sure nothing else follows. */
static void wait_done(goconn_loop *loop, result *r) {
    if (loop) {
        CHECK(loop_run(loop, &r->done, 10000));
        CHECK_EQ_INT(loop_pump(loop, 100), 0);
    } else {
        CHECK(wait_flag(&r->done, 10000));
        sleep_ms(100);
    }
    CHECK_EQ_INT(atomic_load(&r->ndone), 1);
    CHECK_EQ_INT(atomic_load(&r->protocol_calls), 0);
    CHECK(!r->had_transport);
}

static void check_cancelled(const result *r) {
    CHECK_EQ_INT(r->code, -ECANCELED);
    CHECK_EQ_INT(r->errnum, 0);
    CHECK(r->message[0] != 0);
}

/* Let the connect start and hang, then cancel it. */
static void cancel_hanging(goconn_loop *loop, const hang_listener *h) {
    int fds_before = count_open_fds();
    result r;
    goconn_request *req = open_hanging(loop, "127.0.0.1", h->port, 0, &r);
    if (loop) {
        CHECK_EQ_INT(loop_pump(loop, 150), 0);
    } else {
        sleep_ms(150);
    }
    CHECK_EQ_INT(atomic_load(&r.ndone), 0); /* it really hangs */
    CHECK_EQ_INT(count_open_fds(), fds_before + 1); /* the attempt's socket */
    CHECK_EQ_INT(goconn_request_cancel(req), 0);
    /* Again: a no-op while the request lives (until on_done returns, which in
     * direct mode may already have happened on a library thread). */
    int again = goconn_request_cancel(req);
    CHECK(again == 0 || (!loop && again == -EBADF));
    wait_done(loop, &r);
    check_cancelled(&r);
    CHECK_EQ_INT(r.nattempts, 1);
    CHECK_EQ_INT(r.outcomes[0], GOCONN_ATTEMPT_CANCELLED);
    if (!loop) CHECK(wait_live_handles(0, 10000));
    CHECK_EQ_INT(goconn_request_cancel(req), -EBADF);
    CHECK_EQ_INT(count_open_fds(), fds_before);
}

/* Cancel at once, before the attempt may even have started. */
static void cancel_at_once(goconn_loop *loop, const hang_listener *h) {
    int fds_before = count_open_fds();
    result r;
    goconn_request *req = open_hanging(loop, "127.0.0.1", h->port, 0, &r);
    CHECK_EQ_INT(goconn_request_cancel(req), 0);
    wait_done(loop, &r);
    check_cancelled(&r);
    CHECK(r.nattempts <= 1);
    if (r.nattempts == 1) CHECK_EQ_INT(r.outcomes[0], GOCONN_ATTEMPT_CANCELLED);
    if (!loop) CHECK(wait_live_handles(0, 10000));
    CHECK_EQ_INT(goconn_request_cancel(req), -EBADF);
    CHECK_EQ_INT(count_open_fds(), fds_before);
}

/* Happy Eyeballs with two hanging attempts (host None resolves to ::1 and
 * 127.0.0.1; both hang): both are started, then both are cancelled. */
static void cancel_happy_eyeballs(goconn_loop *loop, const hang_listener *h4, const hang_listener *h6) {
    (void)h6;
    int fds_before = count_open_fds();
    int socks_before = count_open_sockets();
    result r;
    goconn_request *req = open_hanging(loop, NULL, h4->port, 1, &r);
    /* Wait until both attempts are running (the second starts after 50 ms). */
    int ok = 0;
    for (int i = 0; i < 1000 && !ok; i++) {
        if (loop) {
            CHECK_EQ_INT(loop_pump(loop, 10), 0);
        } else {
            sleep_ms(10);
        }
        ok = count_open_sockets() >= socks_before + 2;
    }
    CHECK(ok);
    sleep_ms(50);
    CHECK_EQ_INT(atomic_load(&r.ndone), 0);
    CHECK_EQ_INT(count_open_sockets(), socks_before + 2);
    CHECK_EQ_INT(goconn_request_cancel(req), 0);
    wait_done(loop, &r);
    check_cancelled(&r);
    CHECK_EQ_INT(r.nattempts, 2);
    CHECK_EQ_INT(r.outcomes[0], GOCONN_ATTEMPT_CANCELLED);
    CHECK_EQ_INT(r.outcomes[1], GOCONN_ATTEMPT_CANCELLED);
    if (!loop) CHECK(wait_live_handles(0, 10000));
    CHECK_EQ_INT(goconn_request_cancel(req), -EBADF);
    CHECK_EQ_INT(count_open_fds(), fds_before);
}

/* Too late: cancel from connection_made (the factory has run). on_done
 * brings the transport as usual. Loop mode, where the request pointer is
 * known before any callback runs. */
typedef struct {
    goconn_request *req;
    goconn_transport *t;
    int cancel_rc;
    volatile int done, lost;
    int done_ok;
} late;

static void late_made(void *p, goconn_transport *t) {
    late *l = p;
    l->t = t;
    l->cancel_rc = goconn_request_cancel(l->req);
}
static void late_lost(void *p, const goconn_error *e) {
    late *l = p;
    CHECK(e == NULL);
    l->lost = 1;
}
static void late_done(void *u, goconn_transport *t, void *p, const goconn_error *e) {
    late *l = u;
    l->done_ok = e == NULL && t != NULL && t == l->t && p == l;
    if (t) CHECK_EQ_INT(goconn_transport_close(t), 0);
    l->done = 1;
}

static void cancel_too_late(goconn_loop *loop) {
    test_peer peer;
    peer_start(&peer, AF_INET, PEER_ECHO, NULL, 0);
    late l;
    memset(&l, 0, sizeof l);
    goconn_options o;
    CHECK_EQ_INT(goconn_options_init(&o, GOCONN_OPTIONS_VERSION), 0);
    o.loop = loop;
    o.host = "127.0.0.1";
    o.port = peer_port(&peer);
    goconn_protocol p = GOCONN_PROTOCOL_INIT;
    p.connection_made = late_made;
    p.connection_lost = late_lost;
    CHECK_EQ_INT(goconn_open_connection(&o, &p, late_done, &l, &l.req), 0);
    CHECK(loop_run(loop, &l.lost, 10000));
    CHECK_EQ_INT(l.cancel_rc, 0);
    CHECK(l.done_ok);
    CHECK_EQ_INT(goconn_request_cancel(l.req), -EBADF);
    peer_stop(&peer);
}

/* Cancel racing a connect that succeeds: whichever wins, exactly one
 * on_done; on -ECANCELED no protocol callback at all; on success
 * connection_made ran first and the transport works as usual. */
typedef struct {
    volatile int done, lost;
    atomic_int ndone, nmade, nlost;
    int code;
    int made_before_done;
} racer;

static void rc_made(void *p, goconn_transport *t) {
    (void)t;
    atomic_fetch_add(&((racer *)p)->nmade, 1);
}
static void rc_lost(void *p, const goconn_error *e) {
    racer *r = p;
    CHECK(e == NULL);
    atomic_fetch_add(&r->nlost, 1);
    r->lost = 1;
}
static void rc_done(void *u, goconn_transport *t, void *p, const goconn_error *e) {
    racer *r = u;
    atomic_fetch_add(&r->ndone, 1);
    r->code = e ? e->code : 0;
    r->made_before_done = atomic_load(&r->nmade);
    if (e) {
        CHECK(t == NULL && p == NULL);
    } else {
        CHECK(t != NULL && p == r);
        CHECK_EQ_INT(goconn_transport_close(t), 0);
    }
    r->done = 1;
}

static void cancel_race(goconn_loop *loop) {
    test_peer peer;
    peer_start(&peer, AF_INET, PEER_ECHO, NULL, 0);
    int fds_before = count_open_fds();
    int cancelled = 0, connected = 0;
    for (int i = 0; i < 40; i++) {
        racer r;
        memset(&r, 0, sizeof r);
        goconn_options o;
        CHECK_EQ_INT(goconn_options_init(&o, GOCONN_OPTIONS_VERSION), 0);
        o.loop = loop;
        o.host = "127.0.0.1";
        o.port = peer_port(&peer);
        goconn_protocol p = GOCONN_PROTOCOL_INIT;
        p.connection_made = rc_made;
        p.connection_lost = rc_lost;
        goconn_request *req = NULL;
        CHECK_EQ_INT(goconn_open_connection(&o, &p, rc_done, &r, &req), 0);
        if (i % 4) {
            struct timespec ts = {0, (long)(i % 4) * 300000L};
            nanosleep(&ts, NULL);
        }
        int crc = goconn_request_cancel(req);
        CHECK(crc == 0 || (crc == -EBADF && !loop));
        if (loop) {
            CHECK(loop_run(loop, &r.done, 10000));
        } else {
            CHECK(wait_flag(&r.done, 10000));
        }
        if (r.code == 0) {
            connected++;
            CHECK_EQ_INT(r.made_before_done, 1);
            if (loop) {
                CHECK(loop_run(loop, &r.lost, 10000));
            } else {
                CHECK(wait_flag(&r.lost, 10000));
            }
        } else {
            cancelled++;
            CHECK_EQ_INT(r.code, -ECANCELED);
        }
        if (loop) {
            loop_pump(loop, 5);
        } else {
            CHECK(wait_live_handles(0, 10000));
            sleep_ms(5);
        }
        CHECK_EQ_INT(atomic_load(&r.ndone), 1);
        if (r.code != 0) {
            CHECK_EQ_INT(atomic_load(&r.nmade), 0);
            CHECK_EQ_INT(atomic_load(&r.nlost), 0);
        } else {
            CHECK_EQ_INT(atomic_load(&r.nmade), 1);
            CHECK_EQ_INT(atomic_load(&r.nlost), 1);
        }
        CHECK_EQ_INT(goconn_request_cancel(req), -EBADF);
    }
    printf("cancel race (%s): %d cancelled, %d connected\n", loop ? "loop" : "direct", cancelled, connected);
    CHECK_EQ_INT(count_open_fds(), fds_before);
    peer_stop(&peer);
}

/* Happy Eyeballs fallback: ::1 hangs, 127.0.0.1 answers on the same port.
 * The second attempt wins after the delay, the first is cancelled and its
 * socket closed, and the trace says so. */
typedef struct {
    volatile int done, lost;
    int code;
    size_t nattempts;
    int outcome[4], family[4];
    char host[4][64];
    goconn_transport *t;
} fb;

static void fb_lost(void *p, const goconn_error *e) {
    CHECK(e == NULL);
    ((fb *)p)->lost = 1;
}
static void fb_done(void *u, goconn_transport *t, void *p, const goconn_error *e) {
    fb *f = u;
    f->code = e ? e->code : 0;
    if (e) fprintf(stderr, "fallback: %s\n", e->message);
    CHECK(e == NULL && p == f);
    f->t = t;
    const goconn_attempt *const *at;
    CHECK_EQ_INT(goconn_transport_get_attempts(t, &at, &f->nattempts), 0);
    for (size_t i = 0; i < f->nattempts && i < 4; i++) {
        f->outcome[i] = at[i]->outcome;
        f->family[i] = at[i]->family;
        snprintf(f->host[i], sizeof f->host[i], "%s", at[i]->remote_host);
    }
    f->done = 1;
}

static void happy_eyeballs_fallback(goconn_loop *loop) {
    test_peer peer;
    peer_start(&peer, AF_INET, PEER_ECHO, NULL, 0);
    hang_listener h6;
    if (!hang_start(&h6, AF_INET6, peer.port)) {
        printf("fallback: skipped (port taken on ::1)\n");
        peer_stop(&peer);
        return;
    }
    int fds_before = count_open_fds();
    fb f;
    memset(&f, 0, sizeof f);
    goconn_options o;
    CHECK_EQ_INT(goconn_options_init(&o, GOCONN_OPTIONS_VERSION), 0);
    o.loop = loop;
    o.host = NULL; /* None: ::1, then 127.0.0.1 */
    o.port = peer_port(&peer);
    o.has_happy_eyeballs_delay = 1;
    o.happy_eyeballs_delay = 0.05;
    goconn_protocol p = GOCONN_PROTOCOL_INIT;
    p.connection_lost = fb_lost;
    CHECK_EQ_INT(goconn_open_connection(&o, &p, fb_done, &f, NULL), 0);
    if (loop) {
        CHECK(loop_run(loop, &f.done, 10000));
    } else {
        CHECK(wait_flag(&f.done, 10000));
    }
    CHECK_EQ_INT(f.nattempts, 2);
    CHECK_EQ_INT(f.family[0], AF_INET6);
    CHECK_STREQ(f.host[0], "::1");
    CHECK_EQ_INT(f.outcome[0], GOCONN_ATTEMPT_CANCELLED);
    CHECK_EQ_INT(f.family[1], AF_INET);
    CHECK_STREQ(f.host[1], "127.0.0.1");
    CHECK_EQ_INT(f.outcome[1], GOCONN_ATTEMPT_WON);
    CHECK_EQ_INT(goconn_transport_close(f.t), 0);
    if (loop) {
        CHECK(loop_run(loop, &f.lost, 10000));
    } else {
        CHECK(wait_flag(&f.lost, 10000));
        CHECK(wait_live_handles(0, 10000));
    }
    /* The losing attempt's socket is closed too. */
    for (int i = 0; i < 1000 && count_open_fds() != fds_before; i++) sleep_ms(5);
    CHECK_EQ_INT(count_open_fds(), fds_before);
    hang_stop(&h6);
    peer_stop(&peer);
}

static void all_cases(goconn_loop *loop, const hang_listener *h4, const hang_listener *h6) {
    if (h6) happy_eyeballs_fallback(loop);
    cancel_race(loop);
    cancel_hanging(loop, h4);
    cancel_at_once(loop, h4);
    cancel_hanging(loop, h4); /* the listener still hangs new connects */
    if (h6) cancel_happy_eyeballs(loop, h4, h6);
}

int main(void) {
    hang_listener h4, h6;
    CHECK(hang_start(&h4, AF_INET, 0));
    int have6 = 0;
    /* ::1 on the same port, so that host None hangs on both families. */
    int probe = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe >= 0) {
        close(probe);
        have6 = hang_start(&h6, AF_INET6, h4.port);
    }
    if (!have6) printf("no ::1 hang listener: the Happy Eyeballs case is skipped\n");

    /* Warm up the Go runtime: its poller's descriptors appear with the first
     * socket it watches. */
    result warm;
    goconn_request *req = open_hanging(NULL, "127.0.0.1", h4.port, 0, &warm);
    sleep_ms(100);
    CHECK_EQ_INT(goconn_request_cancel(req), 0);
    wait_done(NULL, &warm);
    check_cancelled(&warm);

    all_cases(NULL, &h4, have6 ? &h6 : NULL);
    CHECK(wait_live_handles(0, 10000));

    goconn_loop *loop;
    CHECK_EQ_INT(goconn_loop_new(&loop), 0);
    all_cases(loop, &h4, have6 ? &h6 : NULL);
    cancel_too_late(loop);
    CHECK_EQ_INT(goconn_loop_free(loop), 0);

    if (have6) hang_stop(&h6);
    hang_stop(&h4);
    CHECK_EQ_INT(goconn_live_handles(), 0);
    printf("ok\n");
    return 0;
}
