/* Happy Eyeballs end to end, on dual-stack names, in loop and direct mode.
 * Runs inside in_namespace.sh: private mount and network namespaces where
 * /etc/hosts has dual.goconn.test (::1, then 127.0.0.1) and
 * v4.goconn.test (127.0.0.1), and resolv.conf asks this program's own DNS
 * server (testutil's dns_start) for names that answer one family late.
 *
 * Two fixtures, each one port number on both families:
 *   P4: an echo peer on 127.0.0.1, and ::1 hangs (a full accept queue);
 *   P6: an echo peer on ::1, and 127.0.0.1 hangs.
 *
 * - the fallback: happy_eyeballs_delay 0.25 on dual.goconn.test:P4: ::1
 *   cancelled, 127.0.0.1 won, started >= 0.25 s after the first attempt;
 *   the trace callback sees RESOLVE_START/END and ATTEMPT_START/END in
 *   order, with outcomes, on the dispatching thread in loop mode (on a
 *   library thread in direct mode), never after on_done;
 * - without Happy Eyeballs the ::1 attempt hangs: connect_timeout 0.5 gives
 *   GOCONN_ETIMEOUT with asyncio-style text;
 * - attempt_timeout 0.3 without Happy Eyeballs: ::1 times out
 *   (GOCONN_ATTEMPT_TIMED_OUT, ETIMEDOUT) and 127.0.0.1 wins; with Happy
 *   Eyeballs 0.25 and attempt_timeout 0.1 the next attempt starts at the
 *   timeout, not the delay (the two are kept apart);
 * - resolution_delay 0.05: two goconn_resolution records (AF_INET6, then
 *   AF_INET) through goconn_transport_get_resolutions and in the
 *   goconn_error of a failure (refused on both families: GOCONN_EMULTIPLE,
 *   both attempts GOCONN_ATTEMPT_REFUSED); an A-only name;
 * - through the DNS server (RFC 8305 section 3, end to end): AAAA 400 ms
 *   late joins the race after 127.0.0.1 started (and after an attempt
 *   timeout); AAAA 30 ms after A, within a 0.5 s resolution delay, goes
 *   first; A 400 ms late after ::1 won: its record is left open, and no
 *   trace event follows on_done even when on_done is dispatched after the
 *   late answer; a cancel and a connect_timeout during slow lookups (records
 *   still open); NXDOMAIN and NODATA on both families (GOCONN_EGAI with the
 *   per-family errors);
 * - a cancel from the trace callback at the winner's ATTEMPT_END (the
 *   moment of winning): -ECANCELED, no protocol callback, the attempt shows
 *   as cancelled;
 * - a refused port: GOCONN_ATTEMPT_REFUSED, errnum ECONNREFUSED;
 * - interleave: pre-resolved lists of four refused addresses, in the order
 *   asyncio's _interleave_addrinfos gives for interleave unset, 1 and 2 and
 *   for Happy Eyeballs, in the attempts and the trace alike;
 * - addrinfo (pre-resolved): no lookup at all (no DNS query, no RESOLVE
 *   event, an empty resolution list), host and port NULL or a host that
 *   would not resolve;
 * - bind_address_no_port: IP_BIND_ADDRESS_NO_PORT is 1 on the transport's
 *   socket with local_addr 127.0.0.1 port 0, 0 without;
 * - keepalive: SO_KEEPALIVE and TCP_KEEPIDLE/INTVL/CNT as set;
 * - option errors: attempt_timeout 0 or negative, connect_timeout 0,
 *   resolution_delay negative, negative keepalive, an AF_UNIX addrinfo,
 *   addrinfo with sock: -EINVAL with the text in errbuf and no callback;
 * - version 1 of goconn_options: goconn_options_init(1) writes nothing past
 *   the version 1 fields, and goconn_open_connection reads nothing past
 *   them (0xff garbage there) and connects normally; version 3 is
 *   GOCONN_EVERSION.
 * Every case checks the fd count and, in direct mode, the handle count. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

/* ------------------------------------------------------------------------ */
/* A recording connection: every callback, and every trace event            */
/* ------------------------------------------------------------------------ */

static pthread_t main_thread;

typedef struct tev {
    int kind;
    int64_t time_ns;
    int family, outcome, errnum, port;
    char host[64];
    int64_t start_ns, end_ns;
    size_t count;
} tev;

#define MAXA 8
#define MAXEV 48

typedef struct conn {
    goconn_loop *loop;
    char port_s[16];
    pthread_mutex_t mu;
    volatile int done, lost;
    atomic_int ndone, nmade, nlost, late, wrong_thread;
    goconn_transport *t;
    goconn_request *req;
    test_error err;
    int64_t done_ns;
    size_t nattempts;
    goconn_attempt attempts[MAXA];
    char attempt_error[MAXA][256];
    size_t nres;
    goconn_resolution res[4];
    char res_error[4][256];
    size_t nev;
    tev ev[MAXEV];
    /* Cancel from the trace callback at the first ATTEMPT_END with this
     * outcome (0: never). */
    int cancel_on_end;
    int cancel_rc;
    int cancelled_in_trace;
} conn;

static int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void check_thread(conn *c) {
    int on_main = pthread_equal(pthread_self(), main_thread);
    if (c->loop ? !on_main : on_main) atomic_fetch_add(&c->wrong_thread, 1);
}

static void on_trace(void *u, const goconn_trace_event *e) {
    conn *c = u;
    check_thread(c);
    if (c->done) {
        fprintf(stderr, "trace event %d after on_done\n", e->kind);
        atomic_fetch_add(&c->late, 1);
        return;
    }
    CHECK_EQ_INT(e->version, GOCONN_TRACE_EVENT_VERSION);
    pthread_mutex_lock(&c->mu);
    CHECK(c->nev < MAXEV);
    tev *t = &c->ev[c->nev++];
    memset(t, 0, sizeof *t);
    t->kind = e->kind;
    t->time_ns = e->time_ns;
    if (e->kind == GOCONN_TRACE_RESOLVE_START || e->kind == GOCONN_TRACE_RESOLVE_END) {
        CHECK(e->resolution != NULL && e->attempt == NULL);
        CHECK_EQ_INT(e->resolution->version, GOCONN_RESOLUTION_VERSION);
        t->family = e->resolution->family;
        t->start_ns = e->resolution->start_ns;
        t->end_ns = e->resolution->end_ns;
        t->count = e->resolution->count;
        t->errnum = e->resolution->errnum;
        CHECK((e->resolution->errnum != 0) == (e->resolution->error != NULL));
    } else {
        CHECK(e->kind == GOCONN_TRACE_ATTEMPT_START || e->kind == GOCONN_TRACE_ATTEMPT_END);
        CHECK(e->attempt != NULL && e->resolution == NULL);
        CHECK_EQ_INT(e->attempt->version, GOCONN_ATTEMPT_VERSION);
        t->family = e->attempt->family;
        t->outcome = e->attempt->outcome;
        t->errnum = e->attempt->errnum;
        t->port = e->attempt->remote_port;
        snprintf(t->host, sizeof t->host, "%s", e->attempt->remote_host);
        t->start_ns = e->attempt->start_ns;
        t->end_ns = e->attempt->end_ns;
    }
    pthread_mutex_unlock(&c->mu);
    if (e->kind == GOCONN_TRACE_ATTEMPT_END && c->cancel_on_end && e->attempt->outcome == c->cancel_on_end &&
        !c->cancelled_in_trace) {
        c->cancelled_in_trace = 1;
        c->cancel_rc = goconn_request_cancel(c->req);
    }
}

static void on_made(void *p, goconn_transport *t) {
    conn *c = p;
    check_thread(c);
    if (c->done) atomic_fetch_add(&c->late, 1);
    atomic_fetch_add(&c->nmade, 1);
    c->t = t;
}

static void on_lost(void *p, const goconn_error *e) {
    conn *c = p;
    check_thread(c);
    CHECK(e == NULL);
    atomic_fetch_add(&c->nlost, 1);
    c->lost = 1;
}

static void save_attempts(conn *c, const goconn_attempt *const *a, size_t n) {
    CHECK(n <= MAXA);
    c->nattempts = n;
    for (size_t i = 0; i < n; i++) {
        CHECK_EQ_INT(a[i]->version, GOCONN_ATTEMPT_VERSION);
        c->attempts[i] = *a[i];
        snprintf(c->attempt_error[i], sizeof c->attempt_error[i], "%s", a[i]->error ? a[i]->error : "");
        c->attempts[i].error = NULL;
    }
}

static void save_resolutions(conn *c, const goconn_resolution *const *r, size_t n) {
    CHECK(n <= 4);
    c->nres = n;
    for (size_t i = 0; i < n; i++) {
        CHECK_EQ_INT(r[i]->version, GOCONN_RESOLUTION_VERSION);
        c->res[i] = *r[i];
        CHECK((r[i]->errnum != 0) == (r[i]->error != NULL));
        snprintf(c->res_error[i], sizeof c->res_error[i], "%s", r[i]->error ? r[i]->error : "");
        c->res[i].error = NULL;
    }
}

static void on_done(void *u, goconn_transport *t, void *p, const goconn_error *e) {
    conn *c = u;
    check_thread(c);
    CHECK_EQ_INT(atomic_fetch_add(&c->ndone, 1), 0);
    c->done_ns = mono_ns();
    if (e) {
        CHECK(t == NULL && p == NULL);
        CHECK_EQ_INT(atomic_load(&c->nmade), 0);
        test_error_save(&c->err, e);
        CHECK_EQ_INT(e->version, GOCONN_ERROR_VERSION);
        save_attempts(c, e->attempts, e->nattempts);
        CHECK((e->nresolutions == 0) == (e->resolutions == NULL));
        save_resolutions(c, e->resolutions, e->nresolutions);
    } else {
        CHECK(t != NULL && p == c && t == c->t);
        CHECK_EQ_INT(atomic_load(&c->nmade), 1);
        const goconn_attempt *const *a = NULL;
        size_t n = 0;
        CHECK_EQ_INT(goconn_transport_get_attempts(t, &a, &n), 0);
        save_attempts(c, a, n);
        const goconn_resolution *const *r = NULL;
        CHECK_EQ_INT(goconn_transport_get_resolutions(t, &r, &n), 0);
        save_resolutions(c, r, n);
    }
    c->done = 1;
}

static void opts_init(goconn_options *o, conn *c, goconn_loop *loop, const char *host, int port) {
    memset(c, 0, sizeof *c);
    c->loop = loop;
    pthread_mutex_init(&c->mu, NULL);
    snprintf(c->port_s, sizeof c->port_s, "%d", port);
    CHECK_EQ_INT(goconn_options_init(o, GOCONN_OPTIONS_VERSION), 0);
    o->loop = loop;
    o->host = host;
    o->port = port ? c->port_s : NULL;
    o->on_trace = on_trace;
    o->trace_userdata = c;
}

static void he(goconn_options *o, double delay) {
    o->has_happy_eyeballs_delay = 1;
    o->happy_eyeballs_delay = delay;
}

static void start(conn *c, const goconn_options *o) {
    goconn_protocol p = GOCONN_PROTOCOL_INIT;
    p.connection_made = on_made;
    p.connection_lost = on_lost;
    char errbuf[256] = "";
    goconn_options copy = *o;
    copy.errbuf = errbuf;
    copy.errbuf_size = sizeof errbuf;
    int rc = goconn_open_connection(&copy, &p, on_done, c, &c->req);
    if (rc != 0) fprintf(stderr, "goconn_open_connection: %d %s\n", rc, errbuf);
    CHECK_EQ_INT(rc, 0);
}

static void wait_done(conn *c) {
    CHECK(rec_wait(c->loop, &c->done, 20000));
}

/* finish closes a transport, waits for connection_lost, and checks that
 * nothing came late or on the wrong thread. */
static void finish(conn *c) {
    if (c->t) {
        CHECK_EQ_INT(goconn_transport_close(c->t), 0);
        CHECK(rec_wait(c->loop, &c->lost, 10000));
    }
    if (c->loop) {
        loop_pump(c->loop, 30);
    } else {
        CHECK(wait_live_handles(0, 10000));
        sleep_ms(30);
    }
    CHECK_EQ_INT(atomic_load(&c->late), 0);
    CHECK_EQ_INT(atomic_load(&c->wrong_thread), 0);
    CHECK_EQ_INT(atomic_load(&c->ndone), 1);
    CHECK_EQ_INT(atomic_load(&c->nmade), c->err.present ? 0 : 1);
    CHECK_EQ_INT(atomic_load(&c->nlost), atomic_load(&c->nmade));
    CHECK_EQ_INT(goconn_request_cancel(c->req), -EBADF);
    pthread_mutex_destroy(&c->mu);
}

static int64_t ms(int64_t ns) { return ns / 1000000; }

static void dump(const conn *c) {
    printf("    %s: %s\n", c->err.present ? "failed" : "connected", c->err.present ? c->err.message : "");
    for (size_t i = 0; i < c->nres; i++)
        printf("    resolution %zu: family %d count %zu start %lld end %lld errnum %d %s\n", i, c->res[i].family,
               c->res[i].count, (long long)ms(c->res[i].start_ns), (long long)ms(c->res[i].end_ns), c->res[i].errnum,
               c->res_error[i]);
    for (size_t i = 0; i < c->nattempts; i++)
        printf("    attempt %zu: %s port %d outcome %d errnum %d start %lld end %lld %s\n", i,
               c->attempts[i].remote_host, c->attempts[i].remote_port, c->attempts[i].outcome, c->attempts[i].errnum,
               (long long)ms(c->attempts[i].start_ns), (long long)ms(c->attempts[i].end_ns), c->attempt_error[i]);
    for (size_t i = 0; i < c->nev; i++)
        printf("    event %zu: kind %d at %lld family %d %s outcome %d count %zu\n", i, c->ev[i].kind,
               (long long)ms(c->ev[i].time_ns), c->ev[i].family, c->ev[i].host, c->ev[i].outcome, c->ev[i].count);
}

/* check_trace: the live events agree with each other and with the final
 * records (attempts and resolutions). */
static void check_trace(const conn *c) {
    int64_t last_res = 0, last_att = 0;
    int won = 0;
    size_t nrs = 0, nre = 0, nas = 0, nae = 0;
    for (size_t i = 0; i < c->nev; i++) {
        const tev *e = &c->ev[i];
        CHECK(e->time_ns > 0 && e->time_ns <= c->done_ns);
        switch (e->kind) {
        case GOCONN_TRACE_RESOLVE_START:
            CHECK(e->time_ns >= last_res);
            last_res = e->time_ns;
            CHECK(e->start_ns == e->time_ns && e->end_ns == 0 && e->count == 0);
            nrs++;
            break;
        case GOCONN_TRACE_RESOLVE_END: {
            CHECK(e->time_ns >= last_res);
            last_res = e->time_ns;
            CHECK(e->end_ns == e->time_ns && e->start_ns <= e->end_ns);
            int found = 0;
            for (size_t j = 0; j < i; j++)
                found |= c->ev[j].kind == GOCONN_TRACE_RESOLVE_START && c->ev[j].family == e->family &&
                         c->ev[j].start_ns == e->start_ns;
            CHECK(found);
            nre++;
            break;
        }
        case GOCONN_TRACE_ATTEMPT_START:
            CHECK(e->time_ns >= last_att);
            last_att = e->time_ns;
            CHECK(e->start_ns == e->time_ns && e->outcome == GOCONN_ATTEMPT_PENDING);
            nas++;
            break;
        case GOCONN_TRACE_ATTEMPT_END: {
            CHECK(e->time_ns >= last_att);
            last_att = e->time_ns;
            CHECK(e->end_ns == e->time_ns && e->start_ns <= e->end_ns);
            CHECK(e->outcome != GOCONN_ATTEMPT_PENDING);
            int found = 0;
            for (size_t j = 0; j < i; j++)
                found |= c->ev[j].kind == GOCONN_TRACE_ATTEMPT_START && c->ev[j].start_ns == e->start_ns &&
                         strcmp(c->ev[j].host, e->host) == 0 && c->ev[j].port == e->port;
            CHECK(found);
            won += e->outcome == GOCONN_ATTEMPT_WON;
            nae++;
            break;
        }
        default:
            CHECK(!"unknown trace event kind");
        }
    }
    CHECK(won <= 1);
    CHECK_EQ_INT(nas, c->nattempts);
    CHECK_EQ_INT(nae, c->nattempts); /* every attempt ends before on_done */
    for (size_t j = 0; j < c->nattempts; j++) {
        const goconn_attempt *a = &c->attempts[j];
        size_t k = 0;
        for (; k < c->nev; k++) {
            if (c->ev[k].kind == GOCONN_TRACE_ATTEMPT_END && c->ev[k].start_ns == a->start_ns &&
                strcmp(c->ev[k].host, a->remote_host) == 0)
                break;
        }
        CHECK(k < c->nev);
        CHECK_EQ_INT(c->ev[k].end_ns, a->end_ns);
        /* A won attempt given up by a cancel at delivery shows as won live. */
        CHECK(c->ev[k].outcome == a->outcome ||
              (a->outcome == GOCONN_ATTEMPT_CANCELLED && c->ev[k].outcome == GOCONN_ATTEMPT_WON));
    }
    CHECK_EQ_INT(nrs, c->nres);
    size_t ended = 0;
    for (size_t j = 0; j < c->nres; j++) {
        const goconn_resolution *r = &c->res[j];
        CHECK(r->start_ns > 0 && r->start_ns <= c->done_ns);
        if (r->end_ns == 0) {
            CHECK_EQ_INT(r->count, 0);
            continue;
        }
        ended++;
        size_t k = 0;
        for (; k < c->nev; k++) {
            if (c->ev[k].kind == GOCONN_TRACE_RESOLVE_END && c->ev[k].start_ns == r->start_ns &&
                c->ev[k].family == r->family)
                break;
        }
        CHECK(k < c->nev);
        CHECK_EQ_INT(c->ev[k].end_ns, r->end_ns);
        CHECK_EQ_INT(c->ev[k].count, r->count);
        CHECK_EQ_INT(c->ev[k].errnum, r->errnum);
    }
    CHECK_EQ_INT(nre, ended);
}

/* check_kinds: the events are exactly this sequence of kinds, and the
 * attempt events go to these hosts ("" for resolve events). */
static void check_kinds(const conn *c, const char *kinds, const char *const *hosts) {
    /* kinds: S/E resolve start/end, s/e attempt start/end */
    size_t n = strlen(kinds);
    if (c->nev != n) {
        dump(c);
        CHECK_EQ_INT(c->nev, n);
    }
    for (size_t i = 0; i < n; i++) {
        int want = kinds[i] == 'S'   ? GOCONN_TRACE_RESOLVE_START
                   : kinds[i] == 'E' ? GOCONN_TRACE_RESOLVE_END
                   : kinds[i] == 's' ? GOCONN_TRACE_ATTEMPT_START
                                     : GOCONN_TRACE_ATTEMPT_END;
        if (c->ev[i].kind != want) dump(c);
        CHECK_EQ_INT(c->ev[i].kind, want);
        if (hosts && hosts[i][0]) CHECK_STREQ(c->ev[i].host, hosts[i]);
    }
}

static void check_attempt(const conn *c, size_t i, int family, const char *host, int port, int outcome, int errnum) {
    CHECK(i < c->nattempts);
    const goconn_attempt *a = &c->attempts[i];
    if (a->family != family || strcmp(a->remote_host, host) != 0 || a->outcome != outcome || a->errnum != errnum) dump(c);
    CHECK_EQ_INT(a->family, family);
    CHECK_STREQ(a->remote_host, host);
    CHECK_EQ_INT(a->remote_port, port);
    CHECK_EQ_INT(a->outcome, outcome);
    CHECK_EQ_INT(a->errnum, errnum);
    CHECK(a->start_ns > 0 && a->end_ns >= a->start_ns && a->end_ns <= c->done_ns);
}

/* The fd count every case returns to (taken once per mode, settled). */
static int base_fds;

static void list_fds(void) {
    char cmd[64];
    snprintf(cmd, sizeof cmd, "ls -l /proc/%d/fd >&2", (int)getpid());
    if (system(cmd) != 0) fprintf(stderr, "(ls failed)\n");
}

/* settle_fds takes the baseline once the count has held still for 200 ms. */
static void settle_fds(void) {
    long long deadline = now_ms() + 5000;
    int n = count_open_fds();
    long long since = now_ms();
    while (now_ms() - since < 200 && now_ms() < deadline) {
        sleep_ms(10);
        int m = count_open_fds();
        if (m != n) n = m, since = now_ms();
    }
    base_fds = n;
}

/* check_fds: every socket, timer and lookup of the case is gone (a lookup a
 * cancel left behind ends in the background). */
static void check_fds(void) {
    if (!wait_fds(base_fds, 5000)) {
        fprintf(stderr, "%d fds open, baseline %d\n", count_open_fds(), base_fds);
        list_fds();
        CHECK(!"fd leak");
    }
}

/* ------------------------------------------------------------------------ */
/* Fixtures                                                                  */
/* ------------------------------------------------------------------------ */

static test_peer peer4;     /* echo on 127.0.0.1:P4 */
static hang_listener hang6; /* ::1:P4 hangs */
static test_peer peer6;     /* echo on ::1:P6 */
static hang_listener hang4; /* 127.0.0.1:P6 hangs */
static int refused, refused_fd;
static int P4, P6;

/* The DNS server's names (not in /etc/hosts). */
static const dns_answer dns_table[] = {
    {"late6.goconn.test", DNS_A, "127.0.0.1", 0},
    {"late6.goconn.test", DNS_AAAA, "::1", 400},
    {"quick6.goconn.test", DNS_A, "127.0.0.1", 0},
    {"quick6.goconn.test", DNS_AAAA, "::1", 30},
    {"late4.goconn.test", DNS_AAAA, "::1", 0},
    {"late4.goconn.test", DNS_A, "127.0.0.1", 400},
    {"slow.goconn.test", DNS_AAAA, "::1", 600},
    {"slow.goconn.test", DNS_A, "127.0.0.1", 600},
    {"empty.goconn.test", DNS_AAAA, "", 0},
    {"empty.goconn.test", DNS_A, "", 0},
    /* nx.goconn.test and v4.goconn.test's AAAA: NXDOMAIN */
};

static const char *mode(goconn_loop *loop) { return loop ? "loop" : "direct"; }

/* ------------------------------------------------------------------------ */
/* Happy Eyeballs on /etc/hosts names                                        */
/* ------------------------------------------------------------------------ */

static void fallback(goconn_loop *loop) {
    printf("fallback, %s mode\n", mode(loop));
    conn c;
    goconn_options o;
    opts_init(&o, &c, loop, NS_DUAL, P4);
    he(&o, 0.25);
    start(&c, &o);
    wait_done(&c);
    CHECK(!c.err.present);
    CHECK_EQ_INT(c.nattempts, 2);
    check_attempt(&c, 0, AF_INET6, "::1", P4, GOCONN_ATTEMPT_CANCELLED, 0);
    check_attempt(&c, 1, AF_INET, "127.0.0.1", P4, GOCONN_ATTEMPT_WON, 0);
    int64_t gap = c.attempts[1].start_ns - c.attempts[0].start_ns;
    printf("  second attempt %.1f ms after the first\n", (double)gap / 1e6);
    CHECK(gap >= 249000000);  /* the delay; a loose bound */
    CHECK(gap < 2500000000LL); /* and not the end of a hang */
    CHECK(c.attempts[0].end_ns >= c.attempts[1].end_ns);
    CHECK(c.attempts[1].has_local);
    CHECK_STREQ(c.attempts[1].local_host, "127.0.0.1");
    CHECK_EQ_INT(c.nres, 1);
    CHECK_EQ_INT(c.res[0].family, AF_UNSPEC);
    CHECK_EQ_INT(c.res[0].count, (size_t)count_addrs(NS_DUAL, AF_UNSPEC));
    CHECK(c.res[0].end_ns >= c.res[0].start_ns && c.res[0].start_ns > 0);
    CHECK_EQ_INT(c.res[0].errnum, 0);
    CHECK(c.res[0].end_ns <= c.attempts[0].start_ns);
    check_trace(&c);
    const char *hosts[] = {"", "", "::1", "127.0.0.1", "127.0.0.1", "::1"};
    check_kinds(&c, "SEssee", hosts);
    CHECK_EQ_INT(c.ev[4].outcome, GOCONN_ATTEMPT_WON);
    CHECK_EQ_INT(c.ev[5].outcome, GOCONN_ATTEMPT_CANCELLED);
    CHECK_EQ_INT(c.ev[1].count, c.res[0].count);
    /* The peer answers on the winner. */
    CHECK_EQ_INT(goconn_transport_write(c.t, "ping", 4), 0);
    finish(&c);
    check_fds();
}

static void no_he_connect_timeout(goconn_loop *loop) {
    printf("no Happy Eyeballs: ::1 hangs until connect_timeout, %s mode\n", mode(loop));
    conn c;
    goconn_options o;
    opts_init(&o, &c, loop, NS_DUAL, P4);
    o.has_connect_timeout = 1;
    o.connect_timeout = 0.5;
    int64_t t0 = mono_ns();
    start(&c, &o);
    wait_done(&c);
    printf("  on_done after %lld ms\n", (long long)ms(c.done_ns - t0));
    CHECK(c.done_ns - t0 >= 495000000);
    CHECK(c.done_ns - t0 < 5000000000LL);
    CHECK(c.err.present);
    CHECK_EQ_INT(c.err.code, GOCONN_ETIMEOUT);
    CHECK_EQ_INT(c.err.errnum, 0);
    CHECK(!c.err.has_strerror);
    CHECK_STREQ(c.err.message, "create_connection timed out after 0.5 seconds (connect_timeout)");
    CHECK_EQ_INT(c.nattempts, 1);
    check_attempt(&c, 0, AF_INET6, "::1", P4, GOCONN_ATTEMPT_CANCELLED, 0);
    CHECK_EQ_INT(c.nres, 1);
    check_trace(&c);
    check_kinds(&c, "SEse", NULL);
    finish(&c);
    check_fds();
}

static void attempt_timeout(goconn_loop *loop) {
    printf("attempt_timeout 0.3 without Happy Eyeballs, %s mode\n", mode(loop));
    conn c;
    goconn_options o;
    opts_init(&o, &c, loop, NS_DUAL, P4);
    o.has_attempt_timeout = 1;
    o.attempt_timeout = 0.3;
    start(&c, &o);
    wait_done(&c);
    CHECK(!c.err.present);
    CHECK_EQ_INT(c.nattempts, 2);
    check_attempt(&c, 0, AF_INET6, "::1", P4, GOCONN_ATTEMPT_TIMED_OUT, ETIMEDOUT);
    check_attempt(&c, 1, AF_INET, "127.0.0.1", P4, GOCONN_ATTEMPT_WON, 0);
    char want[128];
    snprintf(want, sizeof want, "[Errno %d] Connect call failed ('::1', %d, 0, 0)", ETIMEDOUT, P4);
    CHECK_STREQ(c.attempt_error[0], want);
    int64_t took = c.attempts[0].end_ns - c.attempts[0].start_ns;
    printf("  ::1 timed out after %.1f ms\n", (double)took / 1e6);
    CHECK(took >= 299000000 && took < 2500000000LL);
    CHECK(c.attempts[1].start_ns >= c.attempts[0].end_ns);
    check_trace(&c);
    check_kinds(&c, "SEsese", NULL);
    CHECK_EQ_INT(c.ev[3].outcome, GOCONN_ATTEMPT_TIMED_OUT);
    CHECK_EQ_INT(c.ev[3].errnum, ETIMEDOUT);
    finish(&c);

    /* With Happy Eyeballs 0.25 and attempt_timeout 0.1, the next attempt
     * starts when the first times out: the timeout is not the delay. */
    printf("attempt_timeout 0.1 with happy_eyeballs_delay 0.25, %s mode\n", mode(loop));
    opts_init(&o, &c, loop, NS_DUAL, P4);
    he(&o, 0.25);
    o.has_attempt_timeout = 1;
    o.attempt_timeout = 0.1;
    start(&c, &o);
    wait_done(&c);
    CHECK(!c.err.present);
    CHECK_EQ_INT(c.nattempts, 2);
    check_attempt(&c, 0, AF_INET6, "::1", P4, GOCONN_ATTEMPT_TIMED_OUT, ETIMEDOUT);
    check_attempt(&c, 1, AF_INET, "127.0.0.1", P4, GOCONN_ATTEMPT_WON, 0);
    int64_t gap = c.attempts[1].start_ns - c.attempts[0].start_ns;
    printf("  second attempt %.1f ms after the first\n", (double)gap / 1e6);
    CHECK(gap >= 99000000);
    if (gap >= 240000000) printf("  (late: a loaded machine?)\n");
    CHECK(gap < 1000000000);
    CHECK(c.attempts[1].start_ns >= c.attempts[0].end_ns);
    check_trace(&c);
    finish(&c);
    check_fds();
}

static void resolution_delay_hosts(goconn_loop *loop) {
    printf("resolution_delay 0.05 on %s, %s mode\n", NS_DUAL, mode(loop));
    conn c;
    goconn_options o;
    opts_init(&o, &c, loop, NS_DUAL, P4);
    he(&o, 0.25);
    o.has_resolution_delay = 1;
    o.resolution_delay = 0.05;
    start(&c, &o);
    wait_done(&c);
    CHECK(!c.err.present);
    CHECK_EQ_INT(c.nres, 2);
    CHECK_EQ_INT(c.res[0].family, AF_INET6);
    CHECK_EQ_INT(c.res[1].family, AF_INET);
    CHECK_EQ_INT(c.res[0].count, (size_t)count_addrs(NS_DUAL, AF_INET6));
    CHECK_EQ_INT(c.res[1].count, (size_t)count_addrs(NS_DUAL, AF_INET));
    for (int i = 0; i < 2; i++) {
        CHECK(c.res[i].start_ns > 0 && c.res[i].end_ns >= c.res[i].start_ns);
        CHECK_EQ_INT(c.res[i].errnum, 0);
    }
    /* Both families' lookups start together. */
    CHECK(c.res[1].start_ns - c.res[0].start_ns < 100000000);
    CHECK_EQ_INT(c.nattempts, 2); /* one attempt per address, duplicates dropped */
    check_attempt(&c, 0, AF_INET6, "::1", P4, GOCONN_ATTEMPT_CANCELLED, 0);
    check_attempt(&c, 1, AF_INET, "127.0.0.1", P4, GOCONN_ATTEMPT_WON, 0);
    check_trace(&c);
    /* AAAA's lookup starts first (it may end before A's starts). */
    {
        int starts[2], n = 0;
        for (size_t i = 0; i < c.nev && n < 2; i++)
            if (c.ev[i].kind == GOCONN_TRACE_RESOLVE_START) starts[n++] = c.ev[i].family;
        CHECK_EQ_INT(n, 2);
        CHECK_EQ_INT(starts[0], AF_INET6);
        CHECK_EQ_INT(starts[1], AF_INET);
    }
    finish(&c);

    /* A failure: refused on both families. Both records are in the error. */
    printf("resolution_delay 0.05, refused on both families, %s mode\n", mode(loop));
    opts_init(&o, &c, loop, NS_DUAL, refused);
    he(&o, 0.25);
    o.has_resolution_delay = 1;
    o.resolution_delay = 0.05;
    start(&c, &o);
    wait_done(&c);
    CHECK(c.err.present);
    CHECK_EQ_INT(c.err.code, GOCONN_EMULTIPLE);
    CHECK(strncmp(c.err.message, "Multiple exceptions: ", 21) == 0);
    CHECK_EQ_INT(c.err.version, GOCONN_ERROR_VERSION);
    CHECK_EQ_INT(c.nres, 2);
    CHECK_EQ_INT(c.res[0].family, AF_INET6);
    CHECK_EQ_INT(c.res[1].family, AF_INET);
    CHECK_EQ_INT(c.res[0].count, (size_t)count_addrs(NS_DUAL, AF_INET6));
    CHECK_EQ_INT(c.res[1].count, (size_t)count_addrs(NS_DUAL, AF_INET));
    for (int i = 0; i < 2; i++) CHECK(c.res[i].end_ns >= c.res[i].start_ns && c.res[i].start_ns > 0);
    CHECK_EQ_INT(c.nattempts, 2);
    check_attempt(&c, 0, AF_INET6, "::1", refused, GOCONN_ATTEMPT_REFUSED, ECONNREFUSED);
    check_attempt(&c, 1, AF_INET, "127.0.0.1", refused, GOCONN_ATTEMPT_REFUSED, ECONNREFUSED);
    /* A refusal starts the next attempt at once, not after the delay. */
    CHECK(c.attempts[1].start_ns - c.attempts[0].start_ns < 200000000);
    check_trace(&c);
    finish(&c);

    /* An A-only name: AAAA fails (NXDOMAIN from the DNS server), A works. */
    printf("resolution_delay 0.05 on %s (A only), %s mode\n", NS_V4, mode(loop));
    opts_init(&o, &c, loop, NS_V4, P4);
    he(&o, 0.25);
    o.has_resolution_delay = 1;
    o.resolution_delay = 0.05;
    start(&c, &o);
    wait_done(&c);
    CHECK(!c.err.present);
    CHECK_EQ_INT(c.nres, 2);
    CHECK_EQ_INT(c.res[0].family, AF_INET6);
    CHECK_EQ_INT(c.res[0].count, 0);
    CHECK_EQ_INT(c.res[0].errnum, EAI_NONAME);
    CHECK(c.res_error[0][0] != 0);
    CHECK_EQ_INT(c.res[1].family, AF_INET);
    CHECK_EQ_INT(c.res[1].count, 1);
    CHECK_EQ_INT(c.nattempts, 1);
    check_attempt(&c, 0, AF_INET, "127.0.0.1", P4, GOCONN_ATTEMPT_WON, 0);
    check_trace(&c);
    finish(&c);
    check_fds();
}

/* ------------------------------------------------------------------------ */
/* Per-family resolution through the DNS server                              */
/* ------------------------------------------------------------------------ */

static void late_aaaa(goconn_loop *loop) {
    printf("AAAA 400 ms after A joins the race, %s mode\n", mode(loop));
    conn c;
    goconn_options o;
    opts_init(&o, &c, loop, "late6.goconn.test", P6);
    he(&o, 0.25);
    o.has_resolution_delay = 1;
    o.resolution_delay = 0.05;
    start(&c, &o);
    wait_done(&c);
    CHECK(!c.err.present);
    CHECK_EQ_INT(c.nres, 2);
    const goconn_resolution *r6 = &c.res[0], *r4 = &c.res[1];
    CHECK_EQ_INT(r6->family, AF_INET6);
    CHECK_EQ_INT(r4->family, AF_INET);
    CHECK_EQ_INT(r6->count, 1);
    CHECK_EQ_INT(r4->count, 1);
    CHECK(r6->end_ns - r6->start_ns >= 390000000);
    CHECK(r4->end_ns < r6->end_ns);
    CHECK_EQ_INT(c.nattempts, 2);
    check_attempt(&c, 0, AF_INET, "127.0.0.1", P6, GOCONN_ATTEMPT_CANCELLED, 0);
    check_attempt(&c, 1, AF_INET6, "::1", P6, GOCONN_ATTEMPT_WON, 0);
    /* The race started after the resolution delay, and the late address
     * joined when it came. */
    printf("  A after %.1f ms, first attempt %.1f ms after it; AAAA after %.1f ms, ::1 attempt %.1f ms after it\n",
           (double)(r4->end_ns - r4->start_ns) / 1e6, (double)(c.attempts[0].start_ns - r4->end_ns) / 1e6,
           (double)(r6->end_ns - r6->start_ns) / 1e6, (double)(c.attempts[1].start_ns - r6->end_ns) / 1e6);
    CHECK(c.attempts[0].start_ns - r4->end_ns >= 49000000);
    CHECK(c.attempts[0].start_ns < r6->end_ns);
    CHECK(c.attempts[1].start_ns >= r6->end_ns);
    check_trace(&c);
    const char *hosts[] = {"", "", "", "127.0.0.1", "", "::1", "::1", "127.0.0.1"};
    check_kinds(&c, "SSEsEsee", hosts);
    CHECK_EQ_INT(c.ev[2].family, AF_INET);
    CHECK_EQ_INT(c.ev[4].family, AF_INET6);
    finish(&c);

    /* Without Happy Eyeballs, with an attempt timeout: 127.0.0.1 times
     * out, nothing is left to try, and the late AAAA answer is tried when
     * it comes. */
    printf("AAAA 400 ms late after an attempt timeout, %s mode\n", mode(loop));
    opts_init(&o, &c, loop, "late6.goconn.test", P6);
    o.has_resolution_delay = 1;
    o.resolution_delay = 0.05;
    o.has_attempt_timeout = 1;
    o.attempt_timeout = 0.15;
    start(&c, &o);
    wait_done(&c);
    CHECK(!c.err.present);
    CHECK_EQ_INT(c.nattempts, 2);
    check_attempt(&c, 0, AF_INET, "127.0.0.1", P6, GOCONN_ATTEMPT_TIMED_OUT, ETIMEDOUT);
    check_attempt(&c, 1, AF_INET6, "::1", P6, GOCONN_ATTEMPT_WON, 0);
    CHECK(c.attempts[0].end_ns < c.res[0].end_ns);
    CHECK(c.attempts[1].start_ns >= c.res[0].end_ns);
    check_trace(&c);
    check_kinds(&c, "SSEseEse", NULL);
    finish(&c);
    check_fds();
}

static void quick_aaaa(goconn_loop *loop) {
    printf("AAAA 30 ms after A, within a 0.5 s resolution delay, %s mode\n", mode(loop));
    conn c;
    goconn_options o;
    opts_init(&o, &c, loop, "quick6.goconn.test", P6);
    he(&o, 0.25);
    o.has_resolution_delay = 1;
    o.resolution_delay = 0.5;
    start(&c, &o);
    wait_done(&c);
    CHECK(!c.err.present);
    CHECK_EQ_INT(c.nres, 2);
    const goconn_resolution *r6 = &c.res[0], *r4 = &c.res[1];
    CHECK(r4->end_ns <= r6->end_ns);
    CHECK_EQ_INT(c.nattempts, 1);
    check_attempt(&c, 0, AF_INET6, "::1", P6, GOCONN_ATTEMPT_WON, 0);
    printf("  first attempt %.1f ms after A, %.1f ms after AAAA\n",
           (double)(c.attempts[0].start_ns - r4->end_ns) / 1e6, (double)(c.attempts[0].start_ns - r6->end_ns) / 1e6);
    CHECK(c.attempts[0].start_ns >= r6->end_ns);
    CHECK(c.attempts[0].start_ns - r4->end_ns < 400000000); /* not the whole delay */
    check_trace(&c);
    check_kinds(&c, "SSEEse", NULL);
    finish(&c);
    check_fds();
}

static void late_a(goconn_loop *loop) {
    printf("A 400 ms late, ::1 wins first; on_done dispatched after the late answer, %s mode\n", mode(loop));
    conn c;
    goconn_options o;
    opts_init(&o, &c, loop, "late4.goconn.test", P6);
    he(&o, 0.25);
    o.has_resolution_delay = 1;
    o.resolution_delay = 0.05;
    start(&c, &o);
    /* Loop mode: dispatch nothing until the A answer is in, so that the
     * request's events wait in the queue while the lookup ends. */
    sleep_ms(700);
    wait_done(&c);
    CHECK(!c.err.present);
    CHECK_EQ_INT(c.nattempts, 1);
    check_attempt(&c, 0, AF_INET6, "::1", P6, GOCONN_ATTEMPT_WON, 0);
    CHECK_EQ_INT(c.nres, 2);
    CHECK_EQ_INT(c.res[0].family, AF_INET6);
    CHECK_EQ_INT(c.res[0].count, 1);
    CHECK_EQ_INT(c.res[1].family, AF_INET);
    printf("  A record: end %s, count %zu\n", c.res[1].end_ns ? "set" : "0 (open)", c.res[1].count);
    CHECK(c.attempts[0].end_ns < c.res[1].start_ns + 400000000);
    check_trace(&c);
    finish(&c);
    if (loop) {
        CHECK_EQ_INT(loop_pump(loop, 100), 0);
    } else {
        sleep_ms(100);
    }
    CHECK_EQ_INT(atomic_load(&c.late), 0);
    check_fds();
}

static void slow_lookups(goconn_loop *loop) {
    goconn_options o;
    conn c;
    for (int per_family = 0; per_family < 2; per_family++) {
        printf("cancel during a slow lookup (%s), %s mode\n", per_family ? "per family" : "one getaddrinfo", mode(loop));
        opts_init(&o, &c, loop, "slow.goconn.test", P4);
        he(&o, 0.25);
        if (per_family) {
            o.has_resolution_delay = 1;
            o.resolution_delay = 0.05;
        }
        start(&c, &o);
        if (loop) {
            loop_pump(loop, 100);
        } else {
            sleep_ms(100);
        }
        CHECK(!c.done);
        CHECK_EQ_INT(goconn_request_cancel(c.req), 0);
        int64_t t0 = mono_ns();
        wait_done(&c);
        CHECK(c.done_ns - t0 < 1000000000); /* at once, not when the lookups end (500 ms on) */
        CHECK(c.err.present);
        CHECK_EQ_INT(c.err.code, -ECANCELED);
        CHECK_EQ_INT(c.nattempts, 0);
        CHECK_EQ_INT(c.nres, per_family ? 2 : 1);
        for (size_t i = 0; i < c.nres; i++) {
            CHECK_EQ_INT(c.res[i].end_ns, 0);
            CHECK_EQ_INT(c.res[i].count, 0);
        }
        CHECK_EQ_INT(c.res[0].family, per_family ? AF_INET6 : AF_UNSPEC);
        check_trace(&c);
        check_kinds(&c, per_family ? "SS" : "S", NULL);
        finish(&c);
    }

    printf("connect_timeout 0.2 during a slow lookup, %s mode\n", mode(loop));
    opts_init(&o, &c, loop, "slow.goconn.test", P4);
    o.has_resolution_delay = 1;
    o.resolution_delay = 0.05;
    o.has_connect_timeout = 1;
    o.connect_timeout = 0.2;
    int64_t t0 = mono_ns();
    start(&c, &o);
    wait_done(&c);
    CHECK(c.done_ns - t0 >= 195000000 && c.done_ns - t0 < 2000000000);
    CHECK_EQ_INT(c.err.code, GOCONN_ETIMEOUT);
    CHECK_STREQ(c.err.message, "create_connection timed out after 0.2 seconds (connect_timeout)");
    CHECK_EQ_INT(c.nres, 2);
    CHECK_EQ_INT(c.res[0].end_ns, 0);
    CHECK_EQ_INT(c.res[1].end_ns, 0);
    check_trace(&c);
    finish(&c);
    /* The lookups finish in the background (600 ms): then every fd is back. */
    check_fds();
}

static void failed_lookups(goconn_loop *loop) {
    static const char *names[] = {"nx.goconn.test", "empty.goconn.test"};
    for (int n = 0; n < 2; n++) {
        for (int per_family = 0; per_family < 2; per_family++) {
            printf("%s (%s), %s mode\n", names[n], per_family ? "per family" : "one getaddrinfo", mode(loop));
            conn c;
            goconn_options o;
            opts_init(&o, &c, loop, names[n], P4);
            he(&o, 0.25);
            if (per_family) {
                o.has_resolution_delay = 1;
                o.resolution_delay = 0.05;
            }
            start(&c, &o);
            wait_done(&c);
            CHECK(c.err.present);
            CHECK_EQ_INT(c.err.code, GOCONN_EGAI);
            CHECK(c.err.errnum == EAI_NONAME || c.err.errnum == EAI_NODATA);
            CHECK_EQ_INT(c.nattempts, 0);
            CHECK_EQ_INT(c.nres, per_family ? 2 : 1);
            for (size_t i = 0; i < c.nres; i++) {
                CHECK(c.res[i].end_ns >= c.res[i].start_ns && c.res[i].start_ns > 0);
                CHECK_EQ_INT(c.res[i].count, 0);
                CHECK(c.res[i].errnum == EAI_NONAME || c.res[i].errnum == EAI_NODATA);
                CHECK(c.res_error[i][0] != 0);
            }
            /* The error is the A lookup's (asyncio has just the one). */
            CHECK_EQ_INT(c.err.errnum, c.res[c.nres - 1].errnum);
            char want[256];
            snprintf(want, sizeof want, "[Errno %d] %s", c.err.errnum, gai_strerror(c.err.errnum));
            CHECK_STREQ(c.err.message, want);
            check_trace(&c);
            if (per_family) {
                /* Starts AAAA then A; a quick answer may come in between. */
                CHECK_EQ_INT(c.nev, 4);
                CHECK_EQ_INT(c.ev[0].kind, GOCONN_TRACE_RESOLVE_START);
                CHECK_EQ_INT(c.ev[0].family, AF_INET6);
                CHECK_EQ_INT(c.ev[3].kind, GOCONN_TRACE_RESOLVE_END);
            } else {
                check_kinds(&c, "SE", NULL);
            }
            finish(&c);
        }
    }
    check_fds();
}

/* ------------------------------------------------------------------------ */
/* Cancels, refusals, interleave, pre-resolved addresses                    */
/* ------------------------------------------------------------------------ */

static void cancel_at_win(goconn_loop *loop) {
    printf("cancel from the trace at the moment of winning, %s mode\n", mode(loop));
    conn c;
    goconn_options o;
    opts_init(&o, &c, loop, NS_DUAL, P4);
    he(&o, 0.05);
    c.cancel_on_end = GOCONN_ATTEMPT_WON;
    start(&c, &o);
    wait_done(&c);
    CHECK(c.cancelled_in_trace);
    CHECK_EQ_INT(c.cancel_rc, 0);
    CHECK(c.err.present);
    CHECK_EQ_INT(c.err.code, -ECANCELED);
    CHECK_EQ_INT(c.nattempts, 2);
    check_attempt(&c, 0, AF_INET6, "::1", P4, GOCONN_ATTEMPT_CANCELLED, 0);
    check_attempt(&c, 1, AF_INET, "127.0.0.1", P4, GOCONN_ATTEMPT_CANCELLED, 0);
    check_trace(&c);
    check_kinds(&c, "SEssee", NULL);
    CHECK_EQ_INT(c.ev[4].outcome, GOCONN_ATTEMPT_WON); /* live: it had won */
    finish(&c);
    check_fds();
}

static void refused_port_trace(goconn_loop *loop) {
    printf("a refused port, %s mode\n", mode(loop));
    conn c;
    goconn_options o;
    opts_init(&o, &c, loop, "127.0.0.1", refused);
    start(&c, &o);
    wait_done(&c);
    CHECK_EQ_INT(c.err.code, -ECONNREFUSED);
    CHECK_EQ_INT(c.nattempts, 1);
    check_attempt(&c, 0, AF_INET, "127.0.0.1", refused, GOCONN_ATTEMPT_REFUSED, ECONNREFUSED);
    CHECK_STREQ(c.attempt_error[0], c.err.message);
    /* An IP literal: asyncio's fast path, one record, no DNS query. */
    CHECK_EQ_INT(c.nres, 1);
    CHECK_EQ_INT(c.res[0].family, AF_UNSPEC);
    CHECK_EQ_INT(c.res[0].count, 1);
    check_trace(&c);
    check_kinds(&c, "SEse", NULL);
    CHECK_EQ_INT(c.ev[3].outcome, GOCONN_ATTEMPT_REFUSED);
    CHECK_EQ_INT(c.ev[3].errnum, ECONNREFUSED);
    finish(&c);
    check_fds();
}

/* A hand-made getaddrinfo list. */
typedef struct ai_list {
    struct addrinfo ai[4];
    struct sockaddr_storage sa[4];
    int n;
} ai_list;

static void ai_add(ai_list *l, const char *host, int port) {
    CHECK(l->n < 4);
    struct addrinfo *ai = &l->ai[l->n];
    struct sockaddr_storage *ss = &l->sa[l->n];
    memset(ai, 0, sizeof *ai);
    memset(ss, 0, sizeof *ss);
    if (strchr(host, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        CHECK(inet_pton(AF_INET6, host, &s6->sin6_addr) == 1);
        ai->ai_family = AF_INET6;
        ai->ai_addrlen = sizeof *s6;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        CHECK(inet_pton(AF_INET, host, &s4->sin_addr) == 1);
        ai->ai_family = AF_INET;
        ai->ai_addrlen = sizeof *s4;
    }
    ai->ai_socktype = SOCK_STREAM;
    ai->ai_protocol = IPPROTO_TCP;
    ai->ai_addr = (struct sockaddr *)ss;
    if (l->n > 0) l->ai[l->n - 1].ai_next = ai;
    l->n++;
}

static void interleave_case(goconn_loop *loop, const char *what, const char *const in[4], int has_interleave,
                            int interleave, double he_delay, const char *const want[4]) {
    printf("interleave: %s, %s mode\n", what, mode(loop));
    ai_list l;
    memset(&l, 0, sizeof l);
    for (int i = 0; i < 4; i++) ai_add(&l, in[i], refused);
    int queries = dns_queries(NULL, 0);
    conn c;
    goconn_options o;
    opts_init(&o, &c, loop, NULL, 0);
    o.addrinfo = &l.ai[0];
    o.has_interleave = has_interleave;
    o.interleave = interleave;
    if (he_delay >= 0) he(&o, he_delay);
    start(&c, &o);
    wait_done(&c);
    CHECK_EQ_INT(c.err.code, GOCONN_EMULTIPLE);
    CHECK_EQ_INT(c.nattempts, 4);
    for (int i = 0; i < 4; i++) {
        check_attempt(&c, (size_t)i, strchr(want[i], ':') ? AF_INET6 : AF_INET, want[i], refused,
                      GOCONN_ATTEMPT_REFUSED, ECONNREFUSED);
    }
    CHECK_EQ_INT(c.nres, 0);
    check_trace(&c);
    /* The trace shows the same order. */
    const char *hosts[8];
    for (int i = 0; i < 4; i++) hosts[2 * i] = hosts[2 * i + 1] = want[i];
    check_kinds(&c, "sesesese", hosts);
    CHECK_EQ_INT(dns_queries(NULL, 0), queries);
    finish(&c);
}

static void interleave_orders(goconn_loop *loop) {
    /* A second IPv6 address that refuses at once: 127.0.0.2 through an
     * AF_INET6 socket (v4-mapped). */
    const char *v6_first[4] = {"::1", "::ffff:127.0.0.2", "127.0.0.1", "127.0.0.2"};
    const char *v4_first[4] = {"127.0.0.1", "::1", "127.0.0.2", "::ffff:127.0.0.2"};
    const char *as_given[4] = {"::1", "::ffff:127.0.0.2", "127.0.0.1", "127.0.0.2"};
    const char *one[4] = {"::1", "127.0.0.1", "::ffff:127.0.0.2", "127.0.0.2"};
    const char *two_v4[4] = {"127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.2"};
    interleave_case(loop, "unset, no Happy Eyeballs: as given", v6_first, 0, 0, -1, as_given);
    interleave_case(loop, "1, no Happy Eyeballs", v6_first, 1, 1, -1, one);
    interleave_case(loop, "2, IPv4 first", v4_first, 1, 2, -1, two_v4);
    interleave_case(loop, "Happy Eyeballs' default (1)", v6_first, 0, 0, 0.05, one);
    interleave_case(loop, "0 with Happy Eyeballs: as given", v6_first, 1, 0, 0.05, as_given);
    check_fds();
}

static void preresolved(goconn_loop *loop) {
    for (int named = 0; named < 2; named++) {
        printf("addrinfo from getaddrinfo(3), host %s, %s mode\n", named ? "nx.goconn.test" : "NULL", mode(loop));
        struct addrinfo hints, *res = NULL;
        memset(&hints, 0, sizeof hints);
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_NUMERICHOST;
        char port_s[16];
        snprintf(port_s, sizeof port_s, "%d", P4);
        CHECK_EQ_INT(getaddrinfo("127.0.0.1", port_s, &hints, &res), 0);
        int queries = dns_queries(NULL, 0);
        conn c;
        goconn_options o;
        opts_init(&o, &c, loop, named ? "nx.goconn.test" : NULL, 0);
        o.addrinfo = res;
        he(&o, 0.25);
        o.has_resolution_delay = named; /* and no lookup even so */
        o.resolution_delay = 0.05;
        start(&c, &o);
        freeaddrinfo(res); /* copied during the call */
        wait_done(&c);
        CHECK(!c.err.present);
        CHECK_EQ_INT(c.nattempts, 1);
        check_attempt(&c, 0, AF_INET, "127.0.0.1", P4, GOCONN_ATTEMPT_WON, 0);
        CHECK_EQ_INT(c.nres, 0);
        const goconn_resolution *const *r = NULL;
        size_t n = 99;
        CHECK_EQ_INT(goconn_transport_get_resolutions(c.t, &r, &n), 0);
        CHECK_EQ_INT(n, 0);
        check_trace(&c);
        check_kinds(&c, "se", NULL);
        CHECK_EQ_INT(dns_queries(NULL, 0), queries);
        finish(&c);
    }
    check_fds();
}

/* ------------------------------------------------------------------------ */
/* Socket options                                                            */
/* ------------------------------------------------------------------------ */

static int sockopt(goconn_transport *t, int level, int name) {
    int fd = goconn_transport_get_fd(t);
    CHECK(fd >= 0);
    int v = -1;
    socklen_t l = sizeof v;
    CHECK_EQ_INT(getsockopt(fd, level, name, &v, &l), 0);
    return v;
}

static void bind_no_port(goconn_loop *loop) {
    for (int on = 0; on < 2; on++) {
        printf("bind_address_no_port %d, %s mode\n", on, mode(loop));
        conn c;
        goconn_options o;
        opts_init(&o, &c, loop, "127.0.0.1", P4);
        o.has_local_addr = 1;
        o.local_host = "127.0.0.1";
        o.local_port = "0";
        o.bind_address_no_port = on;
        start(&c, &o);
        wait_done(&c);
        CHECK(!c.err.present);
        CHECK_EQ_INT(sockopt(c.t, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT), on);
        struct sockaddr_in sin;
        socklen_t sl = sizeof sin;
        CHECK_EQ_INT(goconn_transport_get_sockname(c.t, (struct sockaddr *)&sin, &sl), 0);
        CHECK(ntohs(sin.sin_port) != 0);
        CHECK(c.attempts[0].has_local && c.attempts[0].local_port == ntohs(sin.sin_port));
        finish(&c);
    }
    /* Without local_addr the option changes nothing. */
    conn c;
    goconn_options o;
    opts_init(&o, &c, loop, "127.0.0.1", P4);
    o.bind_address_no_port = 1;
    start(&c, &o);
    wait_done(&c);
    CHECK(!c.err.present);
    CHECK_EQ_INT(sockopt(c.t, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT), 0);
    finish(&c);
    check_fds();
}

static void keepalive(goconn_loop *loop) {
    printf("keepalive, %s mode\n", mode(loop));
    conn c;
    goconn_options o;
    opts_init(&o, &c, loop, NS_DUAL, P4);
    he(&o, 0.05);
    o.keepalive = 1;
    o.keepalive_idle = 7;
    o.keepalive_interval = 3;
    o.keepalive_count = 4;
    start(&c, &o);
    wait_done(&c);
    CHECK(!c.err.present);
    CHECK_EQ_INT(sockopt(c.t, SOL_SOCKET, SO_KEEPALIVE), 1);
    CHECK_EQ_INT(sockopt(c.t, IPPROTO_TCP, TCP_KEEPIDLE), 7);
    CHECK_EQ_INT(sockopt(c.t, IPPROTO_TCP, TCP_KEEPINTVL), 3);
    CHECK_EQ_INT(sockopt(c.t, IPPROTO_TCP, TCP_KEEPCNT), 4);
    finish(&c);

    /* Zero settings keep the system's; no keepalive leaves it off. */
    int sys_idle, sys_intvl, sys_cnt;
    {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        socklen_t l = sizeof(int);
        CHECK(getsockopt(s, IPPROTO_TCP, TCP_KEEPIDLE, &sys_idle, &l) == 0);
        CHECK(getsockopt(s, IPPROTO_TCP, TCP_KEEPINTVL, &sys_intvl, &l) == 0);
        CHECK(getsockopt(s, IPPROTO_TCP, TCP_KEEPCNT, &sys_cnt, &l) == 0);
        close(s);
    }
    for (int on = 0; on < 2; on++) {
        opts_init(&o, &c, loop, "127.0.0.1", P4);
        o.keepalive = on;
        start(&c, &o);
        wait_done(&c);
        CHECK(!c.err.present);
        CHECK_EQ_INT(sockopt(c.t, SOL_SOCKET, SO_KEEPALIVE), on);
        CHECK_EQ_INT(sockopt(c.t, IPPROTO_TCP, TCP_KEEPIDLE), sys_idle);
        CHECK_EQ_INT(sockopt(c.t, IPPROTO_TCP, TCP_KEEPINTVL), sys_intvl);
        CHECK_EQ_INT(sockopt(c.t, IPPROTO_TCP, TCP_KEEPCNT), sys_cnt);
        finish(&c);
    }
    check_fds();
}

/* ------------------------------------------------------------------------ */
/* Option errors and the version 1 struct                                    */
/* ------------------------------------------------------------------------ */

static volatile int never_done;
static void never(void *u, goconn_transport *t, void *p, const goconn_error *e) {
    (void)u, (void)t, (void)p, (void)e;
    never_done = 1;
}
static void never_trace(void *u, const goconn_trace_event *e) {
    (void)u, (void)e;
    never_done = 1;
}

static void expect_einval(goconn_options *o, const char *text) {
    char errbuf[256] = "untouched";
    o->errbuf = errbuf;
    o->errbuf_size = sizeof errbuf;
    o->on_trace = never_trace;
    goconn_protocol p = GOCONN_PROTOCOL_INIT;
    goconn_request *req = (goconn_request *)1;
    int handles = goconn_live_handles();
    int rc = goconn_open_connection(o, &p, never, NULL, &req);
    if (rc != -EINVAL || strcmp(errbuf, text) != 0) fprintf(stderr, "rc %d errbuf \"%s\"\n", rc, errbuf);
    CHECK_EQ_INT(rc, -EINVAL);
    CHECK_STREQ(errbuf, text);
    CHECK(req == NULL);
    CHECK_EQ_INT(goconn_live_handles(), handles);
}

static void option_errors(goconn_loop *loop) {
    printf("option errors, %s mode\n", mode(loop));
    goconn_options o;
    struct {
        int which; /* 0 attempt, 1 connect, 2 resolution */
        double v;
        const char *text;
    } cases[] = {
        {0, 0, "attempt_timeout must be a positive number of seconds, got 0"},
        {0, -1, "attempt_timeout must be a positive number of seconds, got -1"},
        {0, -0.25, "attempt_timeout must be a positive number of seconds, got -0.25"},
        {1, 0, "connect_timeout must be a positive number of seconds, got 0"},
        {1, -2, "connect_timeout must be a positive number of seconds, got -2"},
        {2, -0.05, "resolution_delay must be 0 or more seconds, got -0.05"},
        {2, -1, "resolution_delay must be 0 or more seconds, got -1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK_EQ_INT(goconn_options_init(&o, GOCONN_OPTIONS_VERSION), 0);
        o.loop = loop;
        o.host = NS_DUAL;
        o.port = "80";
        switch (cases[i].which) {
        case 0:
            o.has_attempt_timeout = 1;
            o.attempt_timeout = cases[i].v;
            break;
        case 1:
            o.has_connect_timeout = 1;
            o.connect_timeout = cases[i].v;
            break;
        default:
            o.has_resolution_delay = 1;
            o.resolution_delay = cases[i].v;
        }
        expect_einval(&o, cases[i].text);
    }
    CHECK_EQ_INT(goconn_options_init(&o, GOCONN_OPTIONS_VERSION), 0);
    o.keepalive = 1;
    o.keepalive_idle = -1;
    o.loop = loop;
    o.host = NS_DUAL;
    o.port = "80";
    expect_einval(&o, "keepalive settings must not be negative");

    struct sockaddr_un sun;
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    struct addrinfo ai;
    memset(&ai, 0, sizeof ai);
    ai.ai_family = AF_UNIX;
    ai.ai_socktype = SOCK_STREAM;
    ai.ai_addr = (struct sockaddr *)&sun;
    ai.ai_addrlen = sizeof sun;
    CHECK_EQ_INT(goconn_options_init(&o, GOCONN_OPTIONS_VERSION), 0);
    o.loop = loop;
    o.addrinfo = &ai;
    expect_einval(&o, "addrinfo entries must be AF_INET or AF_INET6 addresses");

    /* addrinfo and sock: the socket stays the caller's. */
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(s >= 0);
    ai_list l;
    memset(&l, 0, sizeof l);
    ai_add(&l, "127.0.0.1", P4);
    CHECK_EQ_INT(goconn_options_init(&o, GOCONN_OPTIONS_VERSION), 0);
    o.loop = loop;
    o.addrinfo = &l.ai[0];
    o.has_sock = 1;
    o.sock = s;
    expect_einval(&o, "host/port and sock can not be specified at the same time");
    CHECK(fcntl(s, F_GETFD) >= 0);
    close(s);

    if (loop) {
        loop_pump(loop, 50);
    } else {
        sleep_ms(50);
    }
    CHECK(!never_done);
}

static void options_v1(goconn_loop *loop) {
    printf("version 1 options with garbage after them, %s mode\n", mode(loop));
    size_t v1 = offsetof(goconn_options, has_resolution_delay);
    CHECK(v1 > offsetof(goconn_options, errbuf_size));
    CHECK(v1 < sizeof(goconn_options));
    unsigned char *buf = malloc(sizeof(goconn_options));
    CHECK(buf != NULL);
    memset(buf, 0xff, sizeof(goconn_options));
    goconn_options *o = (goconn_options *)buf;
    CHECK_EQ_INT(goconn_options_init(o, 1), 0);
    CHECK_EQ_INT(o->version, 1);
    for (size_t i = v1; i < sizeof(goconn_options); i++) {
        if (buf[i] != 0xff) {
            fprintf(stderr, "goconn_options_init(version 1) wrote byte %zu of %zu (the version 1 struct ends at %zu)\n", i,
                    sizeof(goconn_options), v1);
            CHECK(buf[i] == 0xff);
        }
    }
    for (size_t i = sizeof(unsigned int); i < v1; i++) CHECK(buf[i] == 0);
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", P4);
    o->loop = loop;
    o->host = NS_DUAL;
    o->port = port_s;
    o->has_happy_eyeballs_delay = 1;
    o->happy_eyeballs_delay = 0.05;
    char errbuf[128] = "";
    o->errbuf = errbuf;
    o->errbuf_size = sizeof errbuf;
    rec r;
    rec_init(&r, 0);
    int rc = rec_open(&r, o, NULL);
    if (rc) fprintf(stderr, "version 1 options: %d %s\n", rc, errbuf);
    CHECK_EQ_INT(rc, 0);
    CHECK(rec_wait(loop, &r.done, 10000));
    CHECK(!r.done_err.present);
    const goconn_attempt *const *a;
    size_t n;
    CHECK_EQ_INT(goconn_transport_get_attempts(r.transport, &a, &n), 0);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(a[1]->outcome, GOCONN_ATTEMPT_WON);
    /* No keepalive or trace was read from the garbage. */
    CHECK_EQ_INT(sockopt(r.transport, SOL_SOCKET, SO_KEEPALIVE), 0);
    CHECK_EQ_INT(goconn_transport_close(r.transport), 0);
    CHECK(rec_wait(loop, &r.lost, 10000));
    CHECK_STREQ(rec_log(&r), "MOL");
    rec_free(&r);
    if (!loop) CHECK(wait_live_handles(0, 10000));

    /* Version 3 is unknown. */
    memset(buf, 0, sizeof(goconn_options));
    CHECK_EQ_INT(goconn_options_init(o, GOCONN_OPTIONS_VERSION + 1), GOCONN_EVERSION);
    CHECK_EQ_INT(goconn_options_init(o, GOCONN_OPTIONS_VERSION), 0);
    o->version = GOCONN_OPTIONS_VERSION + 1;
    o->host = "127.0.0.1";
    o->port = port_s;
    goconn_protocol p = GOCONN_PROTOCOL_INIT;
    CHECK_EQ_INT(goconn_open_connection(o, &p, never, NULL, NULL), GOCONN_EVERSION);
    free(buf);
    check_fds();
}

/* ------------------------------------------------------------------------ */

static void all_cases(goconn_loop *loop) {
    fallback(loop);
    no_he_connect_timeout(loop);
    attempt_timeout(loop);
    resolution_delay_hosts(loop);
    late_aaaa(loop);
    quick_aaaa(loop);
    late_a(loop);
    slow_lookups(loop);
    failed_lookups(loop);
    cancel_at_win(loop);
    refused_port_trace(loop);
    interleave_orders(loop);
    preresolved(loop);
    bind_no_port(loop);
    keepalive(loop);
    option_errors(loop);
    options_v1(loop);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    require_namespace();
    main_thread = pthread_self();
    dns_start(dns_table, sizeof dns_table / sizeof dns_table[0]);

    peer_start(&peer4, AF_INET, PEER_ECHO, NULL, 0);
    P4 = peer4.port;
    CHECK(hang_start(&hang6, AF_INET6, P4)); /* a network of our own: the port is free */
    peer_start(&peer6, AF_INET6, PEER_ECHO, NULL, 0);
    P6 = peer6.port;
    CHECK(hang_start(&hang4, AF_INET, P6));
    refused = refused_port(&refused_fd);
    printf("P4 %d (127.0.0.1 answers, ::1 hangs), P6 %d (::1 answers, 127.0.0.1 hangs), refused %d\n", P4, P6,
           refused);

    long long t0 = now_ms();
    warm_up(NULL);
    CHECK(wait_live_handles(0, 10000));
    settle_fds();
    all_cases(NULL);
    CHECK(wait_live_handles(0, 10000));
    printf("direct mode: %lld ms\n", now_ms() - t0);

    t0 = now_ms();
    goconn_loop *loop;
    CHECK_EQ_INT(goconn_loop_new(&loop), 0);
    settle_fds();
    all_cases(loop);
    CHECK_EQ_INT(goconn_loop_free(loop), 0);
    printf("loop mode: %lld ms\n", now_ms() - t0);

    hang_stop(&hang4);
    hang_stop(&hang6);
    peer_stop(&peer6);
    peer_stop(&peer4);
    close(refused_fd);
    dns_stop();
    CHECK(wait_live_handles(0, 10000));
    printf("ok\n");
    return 0;
}
