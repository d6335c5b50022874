/* Connect / echo / eof / close, in direct mode (options.loop == NULL:
 * callbacks on library threads) and in loop mode (callbacks on this thread).
 *
 * Checks the callback order made -> data+ -> eof -> lost with on_done after
 * connection_made, that no two callbacks of one connection ever overlap
 * (direct mode: an atomic "inside a callback" counter, with small sleeps to
 * widen the windows), the transport getters (peername, sockname, fd, write
 * buffer limits, can_write_eof, is_closing, is_reading, the attempt trace),
 * pause_reading/resume_reading, a half-close kept open by eof_received,
 * NULL callbacks acting as asyncio's defaults, reads of at most 256 KiB,
 * IPv6 addresses, and that every handle is dead afterwards. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testutil.h"

#define MESSAGE "hello, goconn"

typedef struct {
    int loop_mode;
    pthread_t main_thread;
    int peer_port;
    int pause_in_made;        /* scenario 2: pause reading in connection_made */

    atomic_int inside;        /* callbacks of this connection running right now */
    atomic_int overlaps;      /* times a callback started while another ran */
    atomic_int in_resume;     /* the main thread is inside resume_reading */
    pthread_mutex_t mu;
    char log[1024];           /* M made, D on_done, d data, E eof, L lost */
    char received[256];
    size_t nreceived;
    goconn_transport *transport;
    volatile int made, done, lost, ndata;
    int ndone;
} conn;

static void enter_cb(conn *c, char what) {
    if (atomic_fetch_add(&c->inside, 1) != 0) atomic_fetch_add(&c->overlaps, 1);
    /* Loop mode: on the dispatching thread; direct mode: on a library thread. */
    CHECK_EQ_INT(pthread_equal(pthread_self(), c->main_thread) != 0, c->loop_mode);
    pthread_mutex_lock(&c->mu);
    size_t n = strlen(c->log);
    CHECK(n + 1 < sizeof c->log);
    c->log[n] = what;
    c->log[n + 1] = 0;
    pthread_mutex_unlock(&c->mu);
    if (!c->loop_mode) sleep_ms(3); /* widen the window for an overlapping callback */
}

static void leave_cb(conn *c) { atomic_fetch_sub(&c->inside, 1); }

static void check_transport_getters(conn *c, goconn_transport *t) {
    /* peername: 127.0.0.1 and the peer's port. */
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    memset(&ss, 0, sizeof ss);
    CHECK_EQ_INT(goconn_transport_get_peername(t, (struct sockaddr *)&ss, &sl), 0);
    CHECK_EQ_INT(sl, sizeof(struct sockaddr_in));
    struct sockaddr_in *peer = (struct sockaddr_in *)&ss;
    CHECK_EQ_INT(peer->sin_family, AF_INET);
    CHECK_EQ_INT(ntohl(peer->sin_addr.s_addr), INADDR_LOOPBACK);
    CHECK_EQ_INT(ntohs(peer->sin_port), c->peer_port);

    /* sockname: 127.0.0.1 and the port the kernel reports for the fd. */
    struct sockaddr_storage ls;
    socklen_t ll = sizeof ls;
    memset(&ls, 0, sizeof ls);
    CHECK_EQ_INT(goconn_transport_get_sockname(t, (struct sockaddr *)&ls, &ll), 0);
    CHECK_EQ_INT(ll, sizeof(struct sockaddr_in));
    struct sockaddr_in *local = (struct sockaddr_in *)&ls;
    CHECK_EQ_INT(local->sin_family, AF_INET);
    CHECK_EQ_INT(ntohl(local->sin_addr.s_addr), INADDR_LOOPBACK);
    CHECK(ntohs(local->sin_port) != 0);

    /* fd: a connected TCP socket with the same local address, TCP_NODELAY set. */
    int fd = goconn_transport_get_fd(t);
    CHECK(fd >= 0);
    int type = 0;
    socklen_t tl = sizeof type;
    CHECK_EQ_INT(getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl), 0);
    CHECK_EQ_INT(type, SOCK_STREAM);
    struct sockaddr_in k;
    socklen_t kl = sizeof k;
    CHECK_EQ_INT(getsockname(fd, (struct sockaddr *)&k, &kl), 0);
    CHECK_EQ_INT(k.sin_port, local->sin_port);
    int nodelay = 0;
    socklen_t nl = sizeof nodelay;
    CHECK_EQ_INT(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &nl), 0);
    CHECK(nodelay != 0);

    /* Write buffer: default marks (low, high), empty. */
    int64_t low = -1, high = -1;
    CHECK_EQ_INT(goconn_transport_get_write_buffer_limits(t, &low, &high), 0);
    CHECK_EQ_INT(low, 16384);
    CHECK_EQ_INT(high, 65536);
    size_t size = 99;
    CHECK_EQ_INT(goconn_transport_get_write_buffer_size(t, &size), 0);
    CHECK_EQ_INT(size, 0);

    CHECK_EQ_INT(goconn_transport_can_write_eof(t), 1);
    CHECK_EQ_INT(goconn_transport_is_closing(t), 0);

    /* is_reading follows pause/resume; both are idempotent. */
    CHECK_EQ_INT(goconn_transport_is_reading(t), 1);
    CHECK_EQ_INT(goconn_transport_pause_reading(t), 0);
    CHECK_EQ_INT(goconn_transport_is_reading(t), 0);
    CHECK_EQ_INT(goconn_transport_pause_reading(t), 0);
    CHECK_EQ_INT(goconn_transport_is_reading(t), 0);
    CHECK_EQ_INT(goconn_transport_resume_reading(t), 0);
    CHECK_EQ_INT(goconn_transport_is_reading(t), 1);
    CHECK_EQ_INT(goconn_transport_resume_reading(t), 0);
    CHECK_EQ_INT(goconn_transport_is_reading(t), 1);

    /* The attempt trace: one attempt, won, to 127.0.0.1:port. */
    const goconn_attempt *const *at = NULL;
    size_t nat = 0;
    CHECK_EQ_INT(goconn_transport_get_attempts(t, &at, &nat), 0);
    CHECK_EQ_INT(nat, 1);
    CHECK(at != NULL && at[0] != NULL);
    CHECK_EQ_INT(at[0]->version, GOCONN_ATTEMPT_VERSION);
    CHECK_EQ_INT(at[0]->outcome, GOCONN_ATTEMPT_WON);
    CHECK_EQ_INT(at[0]->errnum, 0);
    CHECK(at[0]->error == NULL);
    CHECK_EQ_INT(at[0]->family, AF_INET);
    CHECK_STREQ(at[0]->remote_host, "127.0.0.1");
    CHECK_EQ_INT(at[0]->remote_port, c->peer_port);
    CHECK(at[0]->start_ns > 0);
    CHECK(at[0]->end_ns >= at[0]->start_ns);
    CHECK_EQ_INT(at[0]->has_local, 1);
    CHECK_STREQ(at[0]->local_host, "127.0.0.1");
    CHECK_EQ_INT(at[0]->local_port, ntohs(local->sin_port));
    /* The same array again: stable. */
    const goconn_attempt *const *at2 = NULL;
    size_t nat2 = 0;
    CHECK_EQ_INT(goconn_transport_get_attempts(t, &at2, &nat2), 0);
    CHECK(at2 == at && nat2 == 1);
}

static void made(void *p, goconn_transport *t) {
    conn *c = p;
    enter_cb(c, 'M');
    CHECK(!c->made);
    c->transport = t;
    check_transport_getters(c, t);
    if (c->pause_in_made) {
        CHECK_EQ_INT(goconn_transport_pause_reading(t), 0);
    }
    /* MESSAGE in pieces, one of them empty (gh-155888 territory). */
    struct iovec pieces[3] = {{(void *)MESSAGE, 7}, {(void *)"", 0}, {(void *)(MESSAGE + 7), strlen(MESSAGE) - 7}};
    CHECK_EQ_INT(goconn_transport_writelines(t, pieces, 3), 0);
    CHECK_EQ_INT(goconn_transport_writelines(t, pieces, 0), 0);
    CHECK_EQ_INT(goconn_transport_write_eof(t), 0);
    CHECK_EQ_INT(goconn_transport_write_eof(t), 0); /* repeated: a no-op */
    CHECK_EQ_INT(goconn_transport_is_closing(t), 0);
    /* After write_eof, write is asyncio's RuntimeError. */
    CHECK_EQ_INT(goconn_transport_write(t, "x", 1), GOCONN_EWRITEEOF);
    c->made = 1;
    leave_cb(c);
}

static void data(void *p, const void *d, size_t n) {
    conn *c = p;
    enter_cb(c, 'd');
    CHECK(atomic_load(&c->in_resume) == 0); /* never inside resume_reading */
    CHECK(n >= 1);
    CHECK(c->nreceived + n <= sizeof c->received);
    memcpy(c->received + c->nreceived, d, n);
    c->nreceived += n;
    c->ndata++;
    leave_cb(c);
}

static int eof(void *p) {
    conn *c = p;
    enter_cb(c, 'E');
    CHECK_EQ_INT(goconn_transport_is_closing(c->transport), 0);
    leave_cb(c);
    return 0; /* close */
}

static void lost(void *p, const goconn_error *e) {
    conn *c = p;
    enter_cb(c, 'L');
    CHECK(e == NULL);
    /* Still live during connection_lost; closing. */
    CHECK_EQ_INT(goconn_transport_is_closing(c->transport), 1);
    CHECK_EQ_INT(goconn_transport_is_reading(c->transport), 0);
    /* The socket is closed only after connection_lost returns; the
     * addresses stay readable. */
    int fd = goconn_transport_get_fd(c->transport);
    CHECK(fd >= 0);
    int type = 0;
    socklen_t tl = sizeof type;
    CHECK_EQ_INT(getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl), 0);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    CHECK_EQ_INT(goconn_transport_get_peername(c->transport, (struct sockaddr *)&ss, &sl), 0);
    CHECK_EQ_INT(ntohs(((struct sockaddr_in *)&ss)->sin_port), c->peer_port);
    leave_cb(c);
    c->lost = 1;
}

static void on_done(void *u, goconn_transport *t, void *p, const goconn_error *e) {
    conn *c = u;
    enter_cb(c, 'D');
    if (e != NULL) {
        fprintf(stderr, "on_done error: %s\n", e->message);
    }
    CHECK(e == NULL);
    CHECK(c->made); /* connection_made has already run */
    CHECK(t != NULL && t == c->transport);
    CHECK(p == c); /* no factory: the protocol is on_done's userdata */
    c->ndone++;
    leave_cb(c);
    c->done = 1;
}

static void conn_init(conn *c, int loop_mode, int port) {
    memset(c, 0, sizeof *c);
    c->loop_mode = loop_mode;
    c->main_thread = pthread_self();
    c->peer_port = port;
    pthread_mutex_init(&c->mu, NULL);
}

static void start(conn *c, goconn_loop *loop, const test_peer *peer) {
    goconn_options o;
    CHECK_EQ_INT(goconn_options_init(&o, GOCONN_OPTIONS_VERSION), 0);
    o.loop = loop;
    o.host = "127.0.0.1";
    o.port = peer_port(peer);
    goconn_protocol p = GOCONN_PROTOCOL_INIT;
    p.connection_made = made;
    p.data_received = data;
    p.eof_received = eof;
    p.connection_lost = lost;
    goconn_request *req = NULL;
    CHECK_EQ_INT(goconn_open_connection(&o, &p, on_done, c, &req), 0);
    CHECK(req != NULL);
}

/* The log without 'D' must be M d+ E L, and D must sit after M, before L. */
static void check_order(conn *c) {
    char rest[1024];
    size_t k = 0;
    int seen_d = 0, seen_m = 0;
    for (const char *s = c->log; *s; s++) {
        if (*s == 'M') seen_m = 1;
        if (*s == 'D') {
            CHECK(seen_m);
            CHECK(!seen_d);
            seen_d = 1;
            continue;
        }
        if (*s == 'L') CHECK(seen_d);
        rest[k++] = *s;
    }
    rest[k] = 0;
    CHECK(seen_d);
    size_t n = strlen(rest);
    if (!(n >= 4 && rest[0] == 'M' && rest[n - 2] == 'E' && rest[n - 1] == 'L' &&
          strspn(rest + 1, "d") == n - 3)) {
        fprintf(stderr, "bad callback order: %s\n", c->log);
        CHECK(0);
    }
}

static void check_dead(goconn_transport *t) {
    CHECK_EQ_INT(goconn_transport_write(t, "x", 1), -EBADF);
    CHECK_EQ_INT(goconn_transport_is_closing(t), -EBADF);
    CHECK_EQ_INT(goconn_transport_get_fd(t), -EBADF);
    CHECK_EQ_INT(goconn_transport_close(t), -EBADF);
}

/* Scenario 1: echo, then half-close; both directions end cleanly. */
static void echo_once(goconn_loop *loop, const test_peer *peer) {
    conn c;
    conn_init(&c, loop != NULL, peer->port);
    start(&c, loop, peer);
    if (loop) {
        CHECK(loop_run(loop, &c.lost, 10000));
    } else {
        CHECK(wait_flag(&c.lost, 10000));
    }
    CHECK_EQ_INT(c.ndone, 1);
    CHECK_EQ_INT(atomic_load(&c.overlaps), 0);
    check_order(&c);
    CHECK_EQ_INT(c.nreceived, strlen(MESSAGE));
    CHECK(memcmp(c.received, MESSAGE, c.nreceived) == 0);
    if (!loop) CHECK(wait_live_handles(0, 10000));
    check_dead(c.transport);
    pthread_mutex_destroy(&c.mu);
}

/* Scenario 2: pause_reading in connection_made holds back data and eof until
 * resume_reading, which delivers nothing inside the call. */
static void paused_once(goconn_loop *loop, const test_peer *peer) {
    conn c;
    conn_init(&c, loop != NULL, peer->port);
    c.pause_in_made = 1;
    start(&c, loop, peer);
    if (loop) {
        CHECK(loop_run(loop, &c.done, 10000));
        loop_pump(loop, 300);
    } else {
        CHECK(wait_flag(&c.done, 10000));
        sleep_ms(300);
    }
    /* The echo has long arrived in the kernel, but nothing is delivered. */
    CHECK_EQ_INT(c.ndata, 0);
    CHECK(strchr(c.log, 'E') == NULL);
    CHECK_EQ_INT(c.lost, 0);
    CHECK_EQ_INT(goconn_transport_is_reading(c.transport), 0);
    atomic_store(&c.in_resume, 1);
    CHECK_EQ_INT(goconn_transport_resume_reading(c.transport), 0);
    CHECK_EQ_INT(c.ndata, 0); /* nothing delivered inside the call */
    atomic_store(&c.in_resume, 0);
    if (loop) {
        CHECK(loop_run(loop, &c.lost, 10000));
    } else {
        CHECK(wait_flag(&c.lost, 10000));
    }
    CHECK_EQ_INT(atomic_load(&c.overlaps), 0);
    check_order(&c);
    CHECK_EQ_INT(c.nreceived, strlen(MESSAGE));
    CHECK(memcmp(c.received, MESSAGE, c.nreceived) == 0);
    if (!loop) CHECK(wait_live_handles(0, 10000));
    check_dead(c.transport);
    pthread_mutex_destroy(&c.mu);
}

/* Scenario 3: several direct-mode connections at once, each serialised. */
static void concurrent_direct(const test_peer *peer) {
    enum { N = 4 };
    static conn cs[N];
    for (int i = 0; i < N; i++) {
        conn_init(&cs[i], 0, peer->port);
        start(&cs[i], NULL, peer);
    }
    for (int i = 0; i < N; i++) {
        CHECK(wait_flag(&cs[i].lost, 10000));
        CHECK_EQ_INT(atomic_load(&cs[i].overlaps), 0);
        CHECK_EQ_INT(cs[i].ndone, 1);
        check_order(&cs[i]);
        CHECK_EQ_INT(cs[i].nreceived, strlen(MESSAGE));
    }
    CHECK(wait_live_handles(0, 10000));
    for (int i = 0; i < N; i++) {
        check_dead(cs[i].transport);
        pthread_mutex_destroy(&cs[i].mu);
    }
}

/* Scenario 4: eof_received returns non-zero (half-close): the transport
 * stays open for writing, is_reading stays 1, and closing is ours to do. */
typedef struct {
    int loop_mode;
    pthread_t main_thread;
    atomic_int inside, overlaps;
    goconn_transport *t;
    size_t nreceived;
    int eof_closing, eof_reading, neof;
    volatile int lost;
    int lost_error;
} half;

static void half_enter(half *h) {
    if (atomic_fetch_add(&h->inside, 1) != 0) atomic_fetch_add(&h->overlaps, 1);
    CHECK_EQ_INT(pthread_equal(pthread_self(), h->main_thread) != 0, h->loop_mode);
}
static void half_made(void *p, goconn_transport *t) {
    half *h = p;
    half_enter(h);
    h->t = t;
    atomic_fetch_sub(&h->inside, 1);
}
static void half_data(void *p, const void *d, size_t n) {
    half *h = p;
    (void)d;
    half_enter(h);
    h->nreceived += n;
    atomic_fetch_sub(&h->inside, 1);
}
static int half_eof(void *p) {
    half *h = p;
    half_enter(h);
    h->neof++;
    h->eof_closing = goconn_transport_is_closing(h->t);
    h->eof_reading = goconn_transport_is_reading(h->t);
    /* The write side is still open: answer, then close. */
    CHECK_EQ_INT(goconn_transport_write(h->t, "bye", 3), 0);
    CHECK_EQ_INT(goconn_transport_close(h->t), 0);
    atomic_fetch_sub(&h->inside, 1);
    return 1;
}
static void half_lost(void *p, const goconn_error *e) {
    half *h = p;
    half_enter(h);
    h->lost_error = e != NULL;
    atomic_fetch_sub(&h->inside, 1);
    h->lost = 1;
}

static void half_close(goconn_loop *loop) {
    static const char payload[] = "first words";
    test_peer peer;
    peer_start(&peer, AF_INET, PEER_SEND_HALFCLOSE, payload, sizeof payload - 1);
    half h;
    memset(&h, 0, sizeof h);
    h.loop_mode = loop != NULL;
    h.main_thread = pthread_self();
    goconn_options o;
    CHECK_EQ_INT(goconn_options_init(&o, GOCONN_OPTIONS_VERSION), 0);
    o.loop = loop;
    o.host = "127.0.0.1";
    o.port = peer_port(&peer);
    goconn_protocol p = GOCONN_PROTOCOL_INIT;
    p.connection_made = half_made;
    p.data_received = half_data;
    p.eof_received = half_eof;
    p.connection_lost = half_lost;
    CHECK_EQ_INT(goconn_open_connection(&o, &p, NULL, &h, NULL), 0);
    if (loop) {
        CHECK(loop_run(loop, &h.lost, 10000));
    } else {
        CHECK(wait_flag(&h.lost, 10000));
    }
    CHECK_EQ_INT(h.nreceived, sizeof payload - 1);
    CHECK_EQ_INT(h.neof, 1);
    CHECK_EQ_INT(h.eof_closing, 0);
    CHECK_EQ_INT(h.eof_reading, 1); /* asyncio: only the flags count */
    CHECK_EQ_INT(h.lost_error, 0);
    CHECK_EQ_INT(atomic_load(&h.overlaps), 0);
    /* The peer got "bye" after its own EOF. */
    for (int i = 0; i < 10000 && peer.received < 3; i++) sleep_ms(1);
    CHECK_EQ_INT(peer.received, 3);
    peer_stop(&peer);
    if (!loop) CHECK(wait_live_handles(0, 10000));
}

/* Scenario 5: a protocol with only connection_lost: a NULL data_received
 * drops data, a NULL eof_received closes the transport (asyncio's default).
 * With data_received set, no call exceeds 256 KiB and nothing is lost. */
typedef struct {
    size_t nreceived, biggest;
    int ncalls;
    volatile int lost;
    int lost_error;
} sink;

static void sink_data(void *p, const void *d, size_t n) {
    sink *k = p;
    (void)d;
    CHECK(n >= 1 && n <= 256 * 1024);
    k->nreceived += n;
    if (n > k->biggest) k->biggest = n;
    k->ncalls++;
}
static void sink_lost(void *p, const goconn_error *e) {
    sink *k = p;
    k->lost_error = e != NULL;
    k->lost = 1;
}

static void defaults_and_big_reads(goconn_loop *loop) {
    static char payload[3 << 20];
    for (size_t i = 0; i < sizeof payload; i++) payload[i] = (char)i;
    test_peer peer;
    peer_start(&peer, AF_INET, PEER_SEND_CLOSE, payload, sizeof payload);
    for (int with_data = 0; with_data < 2; with_data++) {
        sink k;
        memset(&k, 0, sizeof k);
        goconn_options o;
        CHECK_EQ_INT(goconn_options_init(&o, GOCONN_OPTIONS_VERSION), 0);
        o.loop = loop;
        o.host = "127.0.0.1";
        o.port = peer_port(&peer);
        goconn_protocol p = GOCONN_PROTOCOL_INIT;
        if (with_data) p.data_received = sink_data;
        p.connection_lost = sink_lost;
        CHECK_EQ_INT(goconn_open_connection(&o, &p, NULL, &k, NULL), 0);
        if (loop) {
            CHECK(loop_run(loop, &k.lost, 10000));
        } else {
            CHECK(wait_flag(&k.lost, 10000));
        }
        CHECK_EQ_INT(k.lost_error, 0);
        if (with_data) {
            CHECK_EQ_INT(k.nreceived, sizeof payload);
            CHECK(k.ncalls >= (int)(sizeof payload / (256 * 1024)));
        }
    }
    peer_stop(&peer);
    if (!loop) CHECK(wait_live_handles(0, 10000));
}

/* Scenario 6: IPv6: the addresses come as sockaddr_in6 and the trace says
 * "::1". Skipped when ::1 is not available. */
typedef struct {
    volatile int lost;
    int checked;
    int port;
} six;

static void six_made(void *p, goconn_transport *t) {
    six *x = p;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    CHECK_EQ_INT(goconn_transport_get_peername(t, (struct sockaddr *)&ss, &sl), 0);
    CHECK_EQ_INT(sl, sizeof(struct sockaddr_in6));
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    CHECK_EQ_INT(s6->sin6_family, AF_INET6);
    CHECK(memcmp(&s6->sin6_addr, &in6addr_loopback, sizeof in6addr_loopback) == 0);
    CHECK_EQ_INT(ntohs(s6->sin6_port), x->port);
    sl = sizeof(struct sockaddr_in); /* too small for IPv6 */
    CHECK_EQ_INT(goconn_transport_get_sockname(t, (struct sockaddr *)&ss, &sl), -ENOSPC);
    sl = sizeof ss;
    CHECK_EQ_INT(goconn_transport_get_sockname(t, (struct sockaddr *)&ss, &sl), 0);
    CHECK_EQ_INT(((struct sockaddr *)&ss)->sa_family, AF_INET6);
    const goconn_attempt *const *at;
    size_t n;
    CHECK_EQ_INT(goconn_transport_get_attempts(t, &at, &n), 0);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(at[0]->family, AF_INET6);
    CHECK_STREQ(at[0]->remote_host, "::1");
    CHECK_EQ_INT(at[0]->remote_port, x->port);
    CHECK_EQ_INT(at[0]->outcome, GOCONN_ATTEMPT_WON);
    x->checked = 1;
    CHECK_EQ_INT(goconn_transport_close(t), 0);
}
static void six_lost(void *p, const goconn_error *e) {
    CHECK(e == NULL);
    ((six *)p)->lost = 1;
}

static void ipv6(goconn_loop *loop) {
    int probe = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in6 s6;
    memset(&s6, 0, sizeof s6);
    s6.sin6_family = AF_INET6;
    s6.sin6_addr = in6addr_loopback;
    int ok = probe >= 0 && bind(probe, (struct sockaddr *)&s6, sizeof s6) == 0;
    if (probe >= 0) close(probe);
    if (!ok) {
        printf("ipv6: skipped (no ::1)\n");
        return;
    }
    test_peer peer;
    peer_start(&peer, AF_INET6, PEER_ECHO, NULL, 0);
    six x;
    memset(&x, 0, sizeof x);
    x.port = peer.port;
    goconn_options o;
    CHECK_EQ_INT(goconn_options_init(&o, GOCONN_OPTIONS_VERSION), 0);
    o.loop = loop;
    o.host = "::1";
    o.port = peer_port(&peer);
    goconn_protocol p = GOCONN_PROTOCOL_INIT;
    p.connection_made = six_made;
    p.connection_lost = six_lost;
    CHECK_EQ_INT(goconn_open_connection(&o, &p, NULL, &x, NULL), 0);
    if (loop) {
        CHECK(loop_run(loop, &x.lost, 10000));
    } else {
        CHECK(wait_flag(&x.lost, 10000));
    }
    CHECK(x.checked);
    peer_stop(&peer);
    if (!loop) CHECK(wait_live_handles(0, 10000));
}

int main(void) {
    test_peer peer;
    peer_start(&peer, AF_INET, PEER_ECHO, NULL, 0);

    /* Warm up: the first connection starts the Go runtime's poller. */
    echo_once(NULL, &peer);
    int fds_before = count_open_fds();

    echo_once(NULL, &peer);
    paused_once(NULL, &peer);
    concurrent_direct(&peer);
    half_close(NULL);
    defaults_and_big_reads(NULL);
    ipv6(NULL);
    CHECK_EQ_INT(goconn_live_handles(), 0);
    CHECK_EQ_INT(count_open_fds(), fds_before);

    goconn_loop *loop;
    CHECK_EQ_INT(goconn_loop_new(&loop), 0);
    echo_once(loop, &peer);
    paused_once(loop, &peer);
    half_close(loop);
    defaults_and_big_reads(loop);
    ipv6(loop);
    CHECK_EQ_INT(goconn_loop_free(loop), 0);
    CHECK_EQ_INT(count_open_fds(), fds_before);

    peer_stop(&peer);
    CHECK_EQ_INT(goconn_live_handles(), 0);
    printf("ok\n");
    return 0;
}
