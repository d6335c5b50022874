/* Fault injection: what goconn does when the peer, the kernel or the caller
 * misbehaves. Every case runs in loop mode and in direct mode unless noted.
 *
 *  1. reset_mid_stream: the peer sends 8 MiB of the i % 251 pattern, then
 *     resets (goconn-peer reset-after): every byte arrives intact, then
 *     connection_lost(-ECONNRESET) exactly once, last, no eof_received.
 *     Also with reading paused until the reset has happened (40,000 bytes,
 *     which wait in the kernel), and a reset while our write buffer is full (the error is
 *     -ECONNRESET or -EPIPE, whichever syscall saw the reset first).
 *  2. half_close: the peer sends, then shuts down its write side.
 *     eof_received returning 1 keeps the transport open: we write 4 MiB and
 *     write_eof, the peer gets every byte, and nothing closes until we do.
 *     Returning 0 closes it: a write from inside eof_received is flushed
 *     first, then connection_lost(NULL).
 *  3. never_reads: a peer with a 4 KiB SO_RCVBUF that never reads: 64 MiB
 *     in 256 KiB writes never block, pause_writing fires once (inside write
 *     in loop mode), the buffer size equals written minus what the kernel
 *     holds (SIOCOUTQ here + SIOCINQ there), RSS grows by at most
 *     2 x 64 MiB + 64 MiB; then the peer reads everything (pattern checked),
 *     resume_writing fires once, strictly after the pause.
 *  4. slowloris_tls: a TLS server that dribbles one byte of a ServerHello
 *     record every 50 ms: ssl_handshake_timeout 0.5 gives
 *     GOCONN_EHANDSHAKETIMEOUT with asyncio's text after >= 0.5 s, no protocol
 *     callback (not even the factory), the peer sees our socket close, and
 *     the fd count is back.
 *  5. ten_thousand: 10,000 concurrent connections to the goconn-peer in echo
 *     mode (RLIMIT_NOFILE raised as far as allowed): all connect, then each
 *     exchanges a message and closes; fds and goconn_live_handles() come back
 *     to the baseline. If the limit is too low for it, the program exits 77
 *     (skip) after every other case ran.
 *  6. emfile: RLIMIT_NOFILE lowered and the fd table filled: open_connection
 *     reports -EMFILE ("[Errno 24] Too many open files") through on_done with
 *     no protocol callback; goconn_loop_new gives -EMFILE; an adopted socket
 *     fails without losing the caller's descriptor; with the table freed a
 *     connection works again.
 *  7. reentrancy (what test_reentrant.c does not cover): one connection's
 *     callback cancels another request and aborts another transport; then
 *     every transport function on that lost transport gives -EBADF from
 *     inside a callback; connection_lost calls everything on its own closing
 *     transport (errors, not crashes), opens a new connection, and in loop
 *     mode goconn_loop_free gives -EBUSY there; on_done of a failed request
 *     may cancel its own request.
 *  8. after_lost: every goconn_transport_* function (TLS getters included)
 *     on a transport whose connection_lost returned gives -EBADF, for TCP and
 *     TLS; so do NULL, heap, stack and near-handle pointers.
 *  9. loop_free_busy: a loop with a pending request, an idle transport, a
 *     closing transport with a full buffer and undispatched events:
 *     goconn_loop_free gives -EBUSY (also from another thread) and changes
 *     nothing; after close/cancel and dispatch it gives 0, then every call
 *     with the freed loop gives -EBADF.
 * 10. fork: with live connections in both modes and a pending request, a
 *     forked child gets GOCONN_EFORKED from every goconn_* function at once
 *     (under alarm), and the parent's connections keep working.
 * 11. gigabyte: the goconn-peer sends 1 GiB; every byte is checked against
 *     the pattern. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

static const char *mname(goconn_loop *l) { return l ? "loop" : "direct"; }

/* ------------------------------------------------------------------------ */
/* The stream pattern: byte i of a stream is i % 251                         */
/* ------------------------------------------------------------------------ */

#define PAT_CHUNK (256 * 1024)
static unsigned char *pat; /* PAT_CHUNK + 251 bytes of the pattern from 0 */

static void pat_init(void) {
    pat = malloc(PAT_CHUNK + 251);
    CHECK(pat != NULL);
    for (size_t i = 0; i < PAT_CHUNK + 251; i++) pat[i] = (unsigned char)(i % 251);
}

/* A stream checker: feed it what arrives, in order. */
typedef struct {
    uint64_t off;
    int bad;
    uint64_t bad_at;
} stream_check;

static void stream_feed(stream_check *s, const void *data, size_t n) {
    const unsigned char *d = data;
    while (n > 0) {
        size_t k = n > PAT_CHUNK ? PAT_CHUNK : n;
        const unsigned char *want = pat + s->off % 251;
        if (!s->bad && memcmp(d, want, k) != 0) {
            size_t i = 0;
            while (d[i] == want[i]) i++;
            s->bad = 1;
            s->bad_at = s->off + i;
        }
        s->off += k;
        d += k;
        n -= k;
    }
}

static void stream_ok(const stream_check *s, uint64_t want_len, const char *what) {
    if (s->bad) {
        fprintf(stderr, "%s: byte %llu is not the pattern\n", what, (unsigned long long)s->bad_at);
        exit(1);
    }
    if (s->off != want_len) {
        fprintf(stderr, "%s: %llu bytes, want %llu\n", what, (unsigned long long)s->off,
                (unsigned long long)want_len);
        exit(1);
    }
}

/* write_pattern writes n bytes of the pattern stream from *off in 256 KiB
 * writes; each must return 0 and none may block for long. */
static void write_pattern(goconn_transport *t, uint64_t *off, uint64_t n, long long *slowest_ms) {
    while (n > 0) {
        size_t k = n > PAT_CHUNK ? PAT_CHUNK : (size_t)n;
        long long t0 = now_ms();
        CHECK_EQ_INT(goconn_transport_write(t, pat + *off % 251, k), 0);
        long long dt = now_ms() - t0;
        if (slowest_ms && dt > *slowest_ms) *slowest_ms = dt;
        *off += k;
        n -= k;
    }
}

/* ------------------------------------------------------------------------ */
/* A recording protocol with counters and thread checks                      */
/* ------------------------------------------------------------------------ */

typedef struct fconn fconn;
struct fconn {
    goconn_loop *loop;
    pthread_t main_thread;
    pthread_mutex_t mu;
    char log[256]; /* f factory, M made, O on_done ok, X on_done error, d data (runs
                      merged), E eof, L lost, P pause, R resume */
    int log_full;
    char port_s[16];
    goconn_transport *t;
    goconn_request *req;
    atomic_int inside, overlaps, wrong_thread, after_lost, big_reads;
    atomic_int nfactory, nmade, ndone, neof, nlost, npause, nresume;
    atomic_int paused, bad_alternation;
    volatile int done, made, eof, lost, resumed, pause_seen;
    test_error done_err, lost_err;
    stream_check in;
    volatile uint64_t received;
    int eof_return;
    /* Optional hooks, called inside the callbacks. */
    void (*on_made)(fconn *c, goconn_transport *t);
    void (*on_data)(fconn *c, const void *data, size_t len);
    int (*on_eof)(fconn *c); /* its return value is eof_received's */
    void (*on_lost)(fconn *c, const goconn_error *e);
    void (*on_pause)(fconn *c);
    void (*on_done)(fconn *c, const goconn_error *e);
    void *user;
    int64_t size_at_pause;
    atomic_int in_write; /* set by the test around its writes */
    int pause_in_write;
};

static void fc_init(fconn *c, goconn_loop *l) {
    memset(c, 0, sizeof *c);
    c->loop = l;
    c->main_thread = pthread_self();
    pthread_mutex_init(&c->mu, NULL);
    c->size_at_pause = -1;
}

static void fc_free(fconn *c) { pthread_mutex_destroy(&c->mu); }

static void fc_enter(fconn *c, char what) {
    /* Loop mode runs pause_writing inside write(), which may itself be
     * inside a callback: not an overlap. */
    int nested_ok = c->loop && what == 'P';
    if (atomic_fetch_add(&c->inside, 1) != 0 && !nested_ok) atomic_fetch_add(&c->overlaps, 1);
    int on_main = pthread_equal(pthread_self(), c->main_thread) != 0;
    if (c->loop ? !on_main : on_main) atomic_fetch_add(&c->wrong_thread, 1);
    if (c->lost) atomic_fetch_add(&c->after_lost, 1);
    pthread_mutex_lock(&c->mu);
    size_t n = strlen(c->log);
    if (!(what == 'd' && n > 0 && c->log[n - 1] == 'd')) {
        if (n + 1 < sizeof c->log) {
            c->log[n] = what;
            c->log[n + 1] = 0;
        } else {
            c->log_full = 1;
        }
    }
    pthread_mutex_unlock(&c->mu);
}

static void fc_leave(fconn *c) { atomic_fetch_sub(&c->inside, 1); }

/* log_without copies the log without the letters in drop. */
static const char *fc_log(fconn *c, const char *drop) {
    static __thread char buf[4][256];
    static __thread int next;
    char *b = buf[next++ % 4];
    size_t k = 0;
    pthread_mutex_lock(&c->mu);
    for (const char *s = c->log; *s; s++) {
        if (drop && strchr(drop, *s)) continue;
        b[k++] = *s;
    }
    pthread_mutex_unlock(&c->mu);
    b[k] = 0;
    return b;
}

static int fc_factory(void *u, goconn_transport *t, void **out) {
    fconn *c = u;
    fc_enter(c, 'f');
    atomic_fetch_add(&c->nfactory, 1);
    c->t = t;
    *out = c;
    fc_leave(c);
    return 0;
}

static void fc_made(void *p, goconn_transport *t) {
    fconn *c = p;
    fc_enter(c, 'M');
    atomic_fetch_add(&c->nmade, 1);
    CHECK(t == c->t);
    if (c->on_made) c->on_made(c, t);
    c->made = 1;
    fc_leave(c);
}

static void fc_data(void *p, const void *d, size_t n) {
    fconn *c = p;
    fc_enter(c, 'd');
    if (n == 0 || n > 256 * 1024) atomic_fetch_add(&c->big_reads, 1);
    stream_feed(&c->in, d, n);
    if (c->on_data) c->on_data(c, d, n);
    c->received += n;
    fc_leave(c);
}

static int fc_eof(void *p) {
    fconn *c = p;
    fc_enter(c, 'E');
    atomic_fetch_add(&c->neof, 1);
    int rc = c->on_eof ? c->on_eof(c) : c->eof_return;
    c->eof = 1;
    fc_leave(c);
    return rc;
}

static void fc_lost(void *p, const goconn_error *e) {
    fconn *c = p;
    fc_enter(c, 'L');
    atomic_fetch_add(&c->nlost, 1);
    test_error_save(&c->lost_err, e);
    if (c->on_lost) c->on_lost(c, e);
    fc_leave(c);
    c->lost = 1;
}

static void fc_pause(void *p) {
    fconn *c = p;
    fc_enter(c, 'P');
    atomic_fetch_add(&c->npause, 1);
    if (atomic_exchange(&c->paused, 1) != 0) atomic_fetch_add(&c->bad_alternation, 1);
    size_t size = 0;
    if (goconn_transport_get_write_buffer_size(c->t, &size) == 0) c->size_at_pause = (int64_t)size;
    c->pause_in_write = atomic_load(&c->in_write);
    if (c->on_pause) c->on_pause(c);
    c->pause_seen = 1;
    fc_leave(c);
}

static void fc_resume(void *p) {
    fconn *c = p;
    fc_enter(c, 'R');
    atomic_fetch_add(&c->nresume, 1);
    if (atomic_exchange(&c->paused, 0) != 1) atomic_fetch_add(&c->bad_alternation, 1);
    c->resumed = 1;
    fc_leave(c);
}

static void fc_done(void *u, goconn_transport *t, void *p, const goconn_error *e) {
    fconn *c = u;
    fc_enter(c, e ? 'X' : 'O');
    atomic_fetch_add(&c->ndone, 1);
    test_error_save(&c->done_err, e);
    if (e) {
        CHECK(t == NULL && p == NULL);
    } else {
        CHECK(t != NULL && t == c->t && p == c);
    }
    if (c->on_done) c->on_done(c, e);
    fc_leave(c);
    c->done = 1;
}

static goconn_protocol fc_protocol(void) {
    goconn_protocol p = GOCONN_PROTOCOL_INIT;
    p.factory = fc_factory;
    p.connection_made = fc_made;
    p.data_received = fc_data;
    p.eof_received = fc_eof;
    p.connection_lost = fc_lost;
    p.pause_writing = fc_pause;
    p.resume_writing = fc_resume;
    return p;
}

/* fc_opts fills options for 127.0.0.1:port on c's loop. */
static void fc_opts(fconn *c, goconn_options *o, int port) {
    CHECK_EQ_INT(goconn_options_init(o, GOCONN_OPTIONS_VERSION), 0);
    snprintf(c->port_s, sizeof c->port_s, "%d", port);
    o->loop = c->loop;
    o->host = "127.0.0.1";
    o->port = c->port_s;
}

static int fc_open_with(fconn *c, const goconn_options *o) {
    goconn_protocol p = fc_protocol();
    return goconn_open_connection(o, &p, fc_done, c, &c->req);
}

static void fc_open(fconn *c, int port) {
    goconn_options o;
    fc_opts(c, &o, port);
    CHECK_EQ_INT(fc_open_with(c, &o), 0);
}

/* fc_sane: the contract's invariants for one connection. */
static void fc_sane(fconn *c) {
    if (atomic_load(&c->overlaps) || atomic_load(&c->wrong_thread) || atomic_load(&c->after_lost) ||
        atomic_load(&c->bad_alternation) || atomic_load(&c->big_reads) || c->log_full) {
        fprintf(stderr, "contract broken (%s mode): overlaps %d, wrong thread %d, after lost %d, "
                        "bad pause/resume %d, empty or big reads %d, log %s\n",
                mname(c->loop), atomic_load(&c->overlaps), atomic_load(&c->wrong_thread),
                atomic_load(&c->after_lost), atomic_load(&c->bad_alternation), atomic_load(&c->big_reads),
                c->log);
        exit(1);
    }
    CHECK(atomic_load(&c->ndone) <= 1);
    CHECK(atomic_load(&c->nlost) <= 1);
    CHECK(atomic_load(&c->nmade) <= 1);
    CHECK(atomic_load(&c->neof) <= 1);
}

/* ------------------------------------------------------------------------ */
/* Waiting in either mode                                                    */
/* ------------------------------------------------------------------------ */

/* pump_once dispatches (loop mode) or sleeps a little (direct mode), and
 * collects the output of a child peer. */
static void pump_once(goconn_loop *l, test_proc *p, int ms) {
    if (l) {
        struct pollfd pf = {goconn_loop_fd(l), POLLIN, 0};
        poll(&pf, 1, ms);
        int rc = goconn_loop_dispatch(l, 0);
        if (rc < 0) {
            fprintf(stderr, "goconn_loop_dispatch: %d (%s)\n", rc, goconn_strerror(rc));
            exit(1);
        }
    } else {
        sleep_ms(ms > 1 ? 1 : ms);
    }
    if (p) proc_pump(p, 0);
}

static int fwait(goconn_loop *l, volatile int *flag, int timeout_ms, test_proc *p) {
    long long deadline = now_ms() + timeout_ms;
    while (!*flag) {
        long long left = deadline - now_ms();
        if (left <= 0) return 0;
        pump_once(l, p, left > 20 ? 20 : (int)left);
    }
    return 1;
}

/* settle runs the loop (or just waits) for ms. */
static void settle(goconn_loop *l, int ms) {
    long long deadline = now_ms() + ms;
    while (now_ms() < deadline) pump_once(l, NULL, 10);
}

/* ended: once connection_lost has run, the handles go (in direct mode a
 * moment after the flag is set). */
static void ended(goconn_loop *l, int handles) {
    if (!l) CHECK(wait_live_handles(handles, 10000));
    CHECK_EQ_INT(goconn_live_handles(), handles);
}

/* Every transport function on a handle that is not live gives -EBADF. */
static void all_transport_calls_badf(goconn_transport *t) {
    int64_t lo, hi;
    size_t sz;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    const goconn_attempt *const *at;
    const goconn_resolution *const *res;
    size_t n;
    struct iovec bufs[1] = {{(void *)"x", 1}};
    char errbuf[64];
    goconn_tls_info info;
    memset(&info, 0, sizeof info);
    info.version = GOCONN_TLS_INFO_VERSION;
    const void *der;
    CHECK_EQ_INT(goconn_transport_write(t, "x", 1), -EBADF);
    CHECK_EQ_INT(goconn_transport_write(t, NULL, 0), -EBADF);
    CHECK_EQ_INT(goconn_transport_write(t, NULL, 5), -EBADF);
    CHECK_EQ_INT(goconn_transport_writelines(t, bufs, 1), -EBADF);
    CHECK_EQ_INT(goconn_transport_writelines(t, NULL, 0), -EBADF);
    CHECK_EQ_INT(goconn_transport_write_eof(t), -EBADF);
    CHECK_EQ_INT(goconn_transport_can_write_eof(t), -EBADF);
    CHECK_EQ_INT(goconn_transport_close(t), -EBADF);
    CHECK_EQ_INT(goconn_transport_abort(t), -EBADF);
    CHECK_EQ_INT(goconn_transport_is_closing(t), -EBADF);
    CHECK_EQ_INT(goconn_transport_pause_reading(t), -EBADF);
    CHECK_EQ_INT(goconn_transport_resume_reading(t), -EBADF);
    CHECK_EQ_INT(goconn_transport_is_reading(t), -EBADF);
    CHECK_EQ_INT(goconn_transport_set_write_buffer_limits(t, 10, 20, errbuf, sizeof errbuf), -EBADF);
    CHECK_EQ_INT(goconn_transport_set_write_buffer_limits(t, GOCONN_LIMIT_DEFAULT, GOCONN_LIMIT_DEFAULT, NULL, 0),
                 -EBADF);
    CHECK_EQ_INT(goconn_transport_get_write_buffer_limits(t, &lo, &hi), -EBADF);
    CHECK_EQ_INT(goconn_transport_get_write_buffer_limits(t, NULL, NULL), -EBADF);
    CHECK_EQ_INT(goconn_transport_get_write_buffer_size(t, &sz), -EBADF);
    CHECK_EQ_INT(goconn_transport_get_write_buffer_size(t, NULL), -EBADF);
    CHECK_EQ_INT(goconn_transport_get_fd(t), -EBADF);
    CHECK_EQ_INT(goconn_transport_get_peername(t, (struct sockaddr *)&ss, &sl), -EBADF);
    CHECK_EQ_INT(goconn_transport_get_sockname(t, (struct sockaddr *)&ss, &sl), -EBADF);
    CHECK_EQ_INT(goconn_transport_get_peername(t, NULL, NULL), -EBADF);
    CHECK_EQ_INT(goconn_transport_get_attempts(t, &at, &n), -EBADF);
    CHECK_EQ_INT(goconn_transport_get_attempts(t, NULL, NULL), -EBADF);
    CHECK_EQ_INT(goconn_transport_get_resolutions(t, &res, &n), -EBADF);
    CHECK_EQ_INT(goconn_transport_get_resolutions(t, NULL, NULL), -EBADF);
    CHECK_EQ_INT(goconn_transport_get_tls_info(t, &info), -EBADF);
    CHECK_EQ_INT(goconn_transport_get_tls_info(t, NULL), -EBADF);
    CHECK_EQ_INT(goconn_transport_get_peer_certificate(t, 0, &der, &n), -EBADF);
    CHECK_EQ_INT(goconn_transport_get_peer_certificate(t, 0, NULL, NULL), -EBADF);
}

/* ------------------------------------------------------------------------ */
/* A loopback peer on a thread of this process, for faults the goconn-peer   */
/* does not make                                                             */
/* ------------------------------------------------------------------------ */

typedef struct fpeer fpeer;
struct fpeer {
    int lfd, port;
    pthread_t thread;
    void (*serve)(fpeer *p, int fd); /* closes fd itself when it sets fd_closed */
    volatile int go, stop;
    volatile int fd;      /* the accepted connection, -1 before */
    volatile int accepted, finished;
    /* What it read. */
    stream_check in;
    volatile uint64_t received;
    volatile int got_eof, got_reset;
    volatile long long eof_ms;
    /* What it sends. */
    uint64_t send_len;
    volatile uint64_t sent;
    int fd_closed;
};

static void *fpeer_thread(void *arg) {
    fpeer *p = arg;
    while (!p->stop) {
        struct pollfd pf = {p->lfd, POLLIN, 0};
        if (poll(&pf, 1, 20) <= 0) continue;
        int fd = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) continue;
        p->fd = fd;
        p->accepted = 1;
        p->serve(p, fd);
        if (!p->fd_closed) close(fd);
        p->fd = -1;
        p->finished = 1;
        break; /* one connection */
    }
    return NULL;
}

/* fpeer_start listens on 127.0.0.1 (rcvbuf: SO_RCVBUF of the listener,
 * inherited by the connection, or 0) and serves one connection. */
static void fpeer_start(fpeer *p, void (*serve)(fpeer *, int), int rcvbuf) {
    memset(p, 0, sizeof *p);
    p->fd = -1;
    p->serve = serve;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    if (rcvbuf) CHECK_EQ_INT(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf), 0);
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_EQ_INT(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    CHECK_EQ_INT(listen(fd, 16), 0);
    socklen_t sl = sizeof sin;
    CHECK_EQ_INT(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
    p->port = ntohs(sin.sin_port);
    p->lfd = fd;
    CHECK_EQ_INT(pthread_create(&p->thread, NULL, fpeer_thread, p), 0);
}

static void fpeer_stop(fpeer *p) {
    p->stop = 1;
    CHECK_EQ_INT(pthread_join(p->thread, NULL), 0);
    close(p->lfd);
}

/* read_all reads until EOF or an error, checking the pattern. */
static void fpeer_read_all(fpeer *p, int fd) {
    char *buf = malloc(PAT_CHUNK);
    CHECK(buf != NULL);
    for (;;) {
        ssize_t n = recv(fd, buf, PAT_CHUNK, 0);
        if (n > 0) {
            stream_feed(&p->in, buf, (size_t)n);
            p->received += (uint64_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n == 0) p->got_eof = 1;
        if (n < 0 && errno == ECONNRESET) p->got_reset = 1;
        p->eof_ms = now_ms();
        break;
    }
    free(buf);
}

static void fpeer_send_all(fpeer *p, int fd, uint64_t n) {
    uint64_t off = 0;
    while (off < n) {
        size_t k = n - off > PAT_CHUNK ? PAT_CHUNK : (size_t)(n - off);
        ssize_t w = send(fd, pat + off % 251, k, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        CHECK(w > 0);
        off += (uint64_t)w;
        p->sent = off;
    }
}

static void wait_go(fpeer *p) {
    while (!p->go && !p->stop) sleep_ms(2);
}

/* Serve modes. */
static void serve_hold_then_read(fpeer *p, int fd) {
    wait_go(p);
    fpeer_read_all(p, fd);
}

static void serve_hold_then_reset(fpeer *p, int fd) {
    wait_go(p);
    struct linger lg = {1, 0};
    CHECK_EQ_INT(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    close(fd);
    p->fd_closed = 1;
}

static void serve_halfclose(fpeer *p, int fd) {
    fpeer_send_all(p, fd, p->send_len);
    CHECK_EQ_INT(shutdown(fd, SHUT_WR), 0);
    fpeer_read_all(p, fd);
}

/* A TLS server that says too little, too slowly: a handshake record header
 * announcing 16 KiB, then one byte of a ServerHello every 50 ms, while it
 * reads (and drops) what the client sends, until the client closes. */
static void serve_dribble_tls(fpeer *p, int fd) {
    static const unsigned char head[] = {0x16, 0x03, 0x03, 0x40, 0x00, /* handshake record, 16384 bytes */
                                         0x02, 0x00, 0x3f, 0xfc,       /* ServerHello, 16380 bytes */
                                         0x03, 0x03};                  /* legacy_version */
    long long next = now_ms();
    long long deadline = now_ms() + 20000;
    char buf[4096];
    while (!p->stop && now_ms() < deadline) {
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, 10) > 0) {
            ssize_t n = recv(fd, buf, sizeof buf, 0);
            if (n > 0) {
                p->received += (uint64_t)n;
                continue;
            }
            if (n < 0 && errno == EINTR) continue;
            if (n == 0) p->got_eof = 1;
            if (n < 0 && errno == ECONNRESET) p->got_reset = 1;
            p->eof_ms = now_ms();
            return;
        }
        if (now_ms() >= next) {
            unsigned char b = p->sent < sizeof head ? head[p->sent] : 0;
            if (send(fd, &b, 1, MSG_NOSIGNAL) == 1) p->sent++;
            next += 50;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* 1. The peer resets mid-stream                                             */
/* ------------------------------------------------------------------------ */

#define RESET_BYTES (8u << 20)

static void check_reset_error(const test_error *e) {
    CHECK(e->present);
    CHECK_EQ_INT(e->code, -ECONNRESET);
    CHECK_EQ_INT(e->errnum, ECONNRESET);
    CHECK_STREQ(e->message, "[Errno 104] Connection reset by peer");
    CHECK_STREQ(e->strerror_, "Connection reset by peer");
}

static void pause_reading_in_made(fconn *c, goconn_transport *t) {
    (void)c;
    CHECK_EQ_INT(goconn_transport_pause_reading(t), 0);
}

static void closing_calls_in_lost(fconn *c, const goconn_error *e);

static void reset_mid_stream(goconn_loop *l, int paused, int use_tls) {
    uint64_t bytes = paused ? 40000 : RESET_BYTES;
    printf("reset mid-stream%s, %s mode%s: %llu bytes, then RST\n", use_tls ? " (TLS)" : "", mname(l),
           paused ? ", reading paused" : "", (unsigned long long)bytes);
    char bytes_s[32];
    snprintf(bytes_s, sizeof bytes_s, "%llu", (unsigned long long)bytes);
    test_proc peer;
    int port = use_tls ? peer_serve(&peer, "--tls", "--certdir", certs_dir(), "--mode", "reset-after", "--bytes",
                                    bytes_s, "--no-hash", NULL)
                       : peer_serve(&peer, "--mode", "reset-after", "--bytes", bytes_s, "--no-hash", NULL);
    int fds = count_open_fds();
    int handles = goconn_live_handles();
    goconn_ssl_options so;
    CHECK_EQ_INT(goconn_ssl_options_init(&so, GOCONN_SSL_OPTIONS_VERSION), 0);
    so.ca_file = cert_path("ca.pem");
    fconn c;
    fc_init(&c, l);
    if (paused) c.on_made = pause_reading_in_made;
    if (!use_tls) c.on_lost = closing_calls_in_lost; /* a transport ended by an error */
    goconn_options o;
    fc_opts(&c, &o, port);
    if (use_tls) {
        o.ssl = &so;
        o.server_hostname = "localhost";
    }
    CHECK_EQ_INT(fc_open_with(&c, &o), 0);
    if (paused) {
        /* Everything is sent and the connection reset while we read nothing. */
        CHECK(fwait(l, &c.done, 10000, &peer));
        CHECK(proc_wait(&peer, PROC_ERR, "DONE 1\n", 10000));
        settle(l, 100);
        CHECK_STREQ(fc_log(&c, NULL), "fMO");
        CHECK_EQ_INT(goconn_transport_is_reading(c.t), 0);
        CHECK_EQ_INT(goconn_transport_is_closing(c.t), 0);
        CHECK_EQ_INT(goconn_transport_resume_reading(c.t), 0);
    }
    CHECK(fwait(l, &c.lost, 20000, &peer));
    ended(l, handles);
    fc_sane(&c);
    if (strcmp(fc_log(&c, NULL), "fMOdL") != 0 || c.in.off != bytes) {
        fprintf(stderr, "log %s, %llu of %llu bytes, lost: %s\n", fc_log(&c, NULL), (unsigned long long)c.in.off,
                (unsigned long long)bytes, c.lost_err.message);
    }
    CHECK_STREQ(fc_log(&c, NULL), "fMOdL");
    stream_ok(&c.in, bytes, "reset mid-stream");
    CHECK_EQ_INT(c.neof, 0);
    CHECK_EQ_INT(c.nlost, 1);
    check_reset_error(&c.lost_err);
    all_transport_calls_badf(c.t);
    char sent[64];
    snprintf(sent, sizeof sent, "SENT 1 bytes=%llu\n", (unsigned long long)bytes);
    CHECK(proc_wait(&peer, PROC_ERR, sent, 5000));
    CHECK(wait_fds(fds, 2000));
    proc_stop(&peer);
    fc_free(&c);
}

/* The reset comes while our buffer is full: the writer or the reader sees
 * it first, so connection_lost brings -ECONNRESET or -EPIPE; either way
 * exactly once and last, with no resume_writing (the buffer was dropped). */
static void reset_while_writing(goconn_loop *l) {
    printf("reset while writing, %s mode\n", mname(l));
    fpeer p;
    fpeer_start(&p, serve_hold_then_reset, 0);
    int fds = count_open_fds();
    int handles = goconn_live_handles();
    fconn c;
    fc_init(&c, l);
    fc_open(&c, p.port);
    CHECK(fwait(l, &c.done, 10000, NULL));
    uint64_t off = 0;
    size_t size = 0;
    while (size < (4u << 20)) {
        CHECK(off < (256u << 20));
        write_pattern(c.t, &off, PAT_CHUNK, NULL);
        CHECK_EQ_INT(goconn_transport_get_write_buffer_size(c.t, &size), 0);
    }
    CHECK(fwait(l, &c.pause_seen, 10000, NULL));
    p.go = 1;
    CHECK(fwait(l, &c.lost, 10000, NULL));
    ended(l, handles);
    fc_sane(&c);
    CHECK_STREQ(fc_log(&c, NULL), "fMOPL");
    CHECK(c.lost_err.present);
    printf("  connection_lost: %s\n", c.lost_err.message);
    if (c.lost_err.code == -EPIPE) {
        CHECK_EQ_INT(c.lost_err.errnum, EPIPE);
        CHECK_STREQ(c.lost_err.message, "[Errno 32] Broken pipe");
    } else {
        check_reset_error(&c.lost_err);
    }
    all_transport_calls_badf(c.t);
    fpeer_stop(&p);
    CHECK(wait_fds(fds - 1, 2000)); /* the listener is closed too */
    fc_free(&c);
}

/* ------------------------------------------------------------------------ */
/* 2. The peer half-closes                                                   */
/* ------------------------------------------------------------------------ */

#define HC_PEER_BYTES 300000u
#define HC_OUR_BYTES (4u << 20)
#define HC_TAIL_BYTES 300000u

static int write_tail_and_close(fconn *c) {
    CHECK_EQ_INT(goconn_transport_is_closing(c->t), 0);
    uint64_t off = 0;
    write_pattern(c->t, &off, HC_TAIL_BYTES, NULL);
    return 0;
}

static void half_close(goconn_loop *l, int keep_open) {
    printf("half-close by the peer, %s mode, eof_received returns %d\n", mname(l), keep_open);
    fpeer p;
    fpeer_start(&p, serve_halfclose, 0);
    p.send_len = HC_PEER_BYTES;
    int fds = count_open_fds();
    int handles = goconn_live_handles();
    fconn c;
    fc_init(&c, l);
    c.eof_return = keep_open;
    if (!keep_open) c.on_eof = write_tail_and_close;
    fc_open(&c, p.port);
    if (keep_open) {
        CHECK(fwait(l, &c.eof, 10000, NULL));
        settle(l, 200);
        /* Still open for writing: nothing closed it. */
        CHECK_STREQ(fc_log(&c, NULL), "fMOdE");
        stream_ok(&c.in, HC_PEER_BYTES, "half-close: what the peer sent");
        CHECK_EQ_INT(goconn_transport_is_closing(c.t), 0);
        CHECK_EQ_INT(goconn_transport_can_write_eof(c.t), 1);
        uint64_t off = 0;
        atomic_store(&c.in_write, 1);
        write_pattern(c.t, &off, HC_OUR_BYTES, NULL);
        atomic_store(&c.in_write, 0);
        CHECK_EQ_INT(goconn_transport_write_eof(c.t), 0);
        CHECK_EQ_INT(goconn_transport_write(c.t, "x", 1), GOCONN_EWRITEEOF);
        long long deadline = now_ms() + 20000;
        while (!p.got_eof) {
            CHECK(now_ms() < deadline);
            pump_once(l, NULL, 10);
        }
        stream_ok(&p.in, HC_OUR_BYTES, "half-close: what we wrote after the peer's EOF");
        /* Both directions are shut down, and still asyncio's transport waits
         * for close(). */
        settle(l, 300);
        CHECK_EQ_INT(c.lost, 0);
        CHECK_EQ_INT(goconn_transport_is_closing(c.t), 0);
        CHECK_EQ_INT(goconn_transport_close(c.t), 0);
    }
    CHECK(fwait(l, &c.lost, 10000, NULL));
    ended(l, handles);
    fc_sane(&c);
    CHECK_STREQ(fc_log(&c, "PR"), "fMOdEL");
    CHECK_EQ_INT(atomic_load(&c.npause), atomic_load(&c.nresume));
    CHECK(!c.lost_err.present);
    stream_ok(&c.in, HC_PEER_BYTES, "half-close: what the peer sent");
    if (!keep_open) {
        long long deadline = now_ms() + 10000;
        while (!p.got_eof) {
        CHECK(now_ms() < deadline);
        sleep_ms(2);
    }
        stream_ok(&p.in, HC_TAIL_BYTES, "half-close: what eof_received wrote");
    }
    CHECK_EQ_INT(goconn_transport_write(c.t, "x", 1), -EBADF);
    fpeer_stop(&p);
    CHECK(wait_fds(fds - 1, 2000));
    fc_free(&c);
}

/* ------------------------------------------------------------------------ */
/* 3. The peer never reads                                                   */
/* ------------------------------------------------------------------------ */

#define NR_TOTAL (64ull << 20)

static int count_threads(void) {
    FILE *f = fopen("/proc/self/status", "r");
    CHECK(f != NULL);
    char line[256];
    int n = -1;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "Threads: %d", &n) == 1) break;
    }
    fclose(f);
    return n;
}

static long long rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    CHECK(f != NULL);
    long long size = 0, resident = 0;
    CHECK_EQ_INT(fscanf(f, "%lld %lld", &size, &resident), 2);
    fclose(f);
    return resident * sysconf(_SC_PAGESIZE);
}

static void never_reads(goconn_loop *l) {
    printf("peer never reads, %s mode: 64 MiB\n", mname(l));
    fpeer p;
    fpeer_start(&p, serve_hold_then_read, 4096);
    int fds = count_open_fds();
    int handles = goconn_live_handles();
    fconn c;
    fc_init(&c, l);
    fc_open(&c, p.port);
    CHECK(fwait(l, &c.done, 10000, NULL));
    while (!p.accepted) sleep_ms(1);
    int ours = goconn_transport_get_fd(c.t);
    CHECK(ours >= 0);
    int64_t low = 0, high = 0;
    CHECK_EQ_INT(goconn_transport_get_write_buffer_limits(c.t, &low, &high), 0);
    CHECK_EQ_INT(high, 65536);

    long long rss0 = rss_bytes();
    long long t0 = now_ms(), slowest = 0;
    uint64_t off = 0;
    int npause_at_cross = -1;
    while (off < NR_TOTAL) {
        atomic_store(&c.in_write, 1);
        write_pattern(c.t, &off, PAT_CHUNK, &slowest);
        atomic_store(&c.in_write, 0);
        size_t size = 0;
        CHECK_EQ_INT(goconn_transport_get_write_buffer_size(c.t, &size), 0);
        if (npause_at_cross < 0 && size > (size_t)high) npause_at_cross = atomic_load(&c.npause);
    }
    long long elapsed = now_ms() - t0;
    long long rss1 = rss_bytes();
    if (!l) CHECK(wait_flag(&c.pause_seen, 10000));
    settle(l, 100);
    printf("  64 MiB written in %lld ms (slowest write %lld ms), RSS +%lld MiB\n", elapsed, slowest,
           (rss1 - rss0) >> 20);
    CHECK(slowest < 2000);
    CHECK(elapsed < 30000);
    CHECK(rss1 - rss0 <= (long long)(2 * NR_TOTAL + (64ull << 20)));
    /* Once, at the high-water mark: in loop mode inside the write that
     * passed it, on this thread. */
    CHECK_EQ_INT(atomic_load(&c.npause), 1);
    CHECK_EQ_INT(atomic_load(&c.nresume), 0);
    CHECK(c.size_at_pause > high);
    if (l) {
        CHECK_EQ_INT(npause_at_cross, 1);
        CHECK_EQ_INT(c.pause_in_write, 1);
    }
    /* The buffer holds what the kernel did not take: our send queue and the
     * peer's receive queue hold the rest, and not much. */
    size_t size = 0;
    int outq = -1, inq = -1;
    long long deadline = now_ms() + 5000;
    for (;;) {
        CHECK_EQ_INT(goconn_transport_get_write_buffer_size(c.t, &size), 0);
        CHECK_EQ_INT(ioctl(ours, SIOCOUTQ, &outq), 0);
        CHECK_EQ_INT(ioctl(p.fd, SIOCINQ, &inq), 0);
        if ((uint64_t)size + (uint64_t)outq + (uint64_t)inq == NR_TOTAL) break;
        if (now_ms() > deadline) {
            fprintf(stderr, "buffer %zu + our send queue %d + peer's receive queue %d != %llu written\n", size,
                    outq, inq, (unsigned long long)NR_TOTAL);
            exit(1);
        }
        sleep_ms(20);
    }
    printf("  buffered %zu, kernel holds %d (ours) + %d (peer's)\n", size, outq, inq);
    CHECK((uint64_t)outq + (uint64_t)inq <= (16u << 20));

    /* The peer reads everything now. */
    p.go = 1;
    CHECK(fwait(l, &c.resumed, 60000, NULL));
    CHECK_EQ_INT(atomic_load(&c.npause), 1);
    CHECK_EQ_INT(atomic_load(&c.nresume), 1);
    CHECK_EQ_INT(goconn_transport_close(c.t), 0);
    CHECK(fwait(l, &c.lost, 60000, NULL));
    ended(l, handles);
    fc_sane(&c);
    CHECK_STREQ(fc_log(&c, NULL), "fMOPRL");
    CHECK(!c.lost_err.present);
    deadline = now_ms() + 30000;
    while (!p.got_eof) {
        CHECK(now_ms() < deadline);
        sleep_ms(2);
    }
    stream_ok(&p.in, NR_TOTAL, "never-reading peer, once it read");
    fpeer_stop(&p);
    CHECK(wait_fds(fds - 1, 2000));
    fc_free(&c);
}

/* ------------------------------------------------------------------------ */
/* 4. Slowloris TLS handshake                                                */
/* ------------------------------------------------------------------------ */

static void slowloris_tls(goconn_loop *l) {
    printf("slowloris TLS server, %s mode\n", mname(l));
    fpeer p;
    fpeer_start(&p, serve_dribble_tls, 0);
    int fds = count_open_fds();
    int handles = goconn_live_handles();
    goconn_ssl_options s;
    CHECK_EQ_INT(goconn_ssl_options_init(&s, GOCONN_SSL_OPTIONS_VERSION), 0);
    s.ca_file = cert_path("ca.pem");
    fconn c;
    fc_init(&c, l);
    goconn_options o;
    fc_opts(&c, &o, p.port);
    o.ssl = &s;
    o.server_hostname = "localhost";
    o.has_ssl_handshake_timeout = 1;
    o.ssl_handshake_timeout = 0.5;
    long long t0 = now_ms();
    CHECK_EQ_INT(fc_open_with(&c, &o), 0);
    CHECK(fwait(l, &c.done, 10000, NULL));
    long long elapsed = now_ms() - t0;
    settle(l, 100);
    ended(l, handles);
    fc_sane(&c);
    printf("  on_done after %lld ms; the server dribbled %llu bytes\n", elapsed, (unsigned long long)p.sent);
    CHECK(elapsed >= 500);
    CHECK(elapsed < 5000);
    CHECK(p.sent >= 5); /* it did send something, slowly */
    CHECK_STREQ(fc_log(&c, NULL), "X"); /* no factory, no protocol callback */
    CHECK_EQ_INT(c.done_err.code, GOCONN_EHANDSHAKETIMEOUT);
    CHECK_EQ_INT(c.done_err.errnum, 0);
    CHECK_STREQ(c.done_err.message, "SSL handshake is taking longer than 0.5 seconds: aborting the connection");
    /* The socket is closed: the server sees the end of the stream. */
    long long deadline = now_ms() + 5000;
    while (!p.got_eof && !p.got_reset) {
        CHECK(now_ms() < deadline);
        sleep_ms(2);
    }
    CHECK(p.received > 0); /* the ClientHello */
    fpeer_stop(&p);
    CHECK(wait_fds(fds - 1, 2000));
    fc_free(&c);
}

/* ------------------------------------------------------------------------ */
/* 11. A 1 GiB stream                                                        */
/* ------------------------------------------------------------------------ */

#define GIB (1ull << 30)

static void gigabyte(goconn_loop *l) {
    printf("1 GiB from the peer, %s mode\n", mname(l));
    test_proc peer;
    int port = peer_serve(&peer, "--mode", "send", "--bytes", "1073741824", "--no-hash", NULL);
    int fds = count_open_fds();
    int handles = goconn_live_handles();
    fconn c;
    fc_init(&c, l);
    long long t0 = now_ms();
    fc_open(&c, port);
    CHECK(fwait(l, &c.lost, 120000, &peer));
    long long elapsed = now_ms() - t0;
    ended(l, handles);
    fc_sane(&c);
    printf("  1 GiB in %lld ms (%.0f MiB/s)\n", elapsed, 1024.0 * 1000.0 / (double)(elapsed ? elapsed : 1));
    CHECK_STREQ(fc_log(&c, NULL), "fMOdEL");
    CHECK(!c.lost_err.present);
    stream_ok(&c.in, GIB, "1 GiB stream");
    CHECK(proc_wait(&peer, PROC_ERR, "SENT 1 bytes=1073741824\n", 5000));
    CHECK(wait_fds(fds, 2000));
    proc_stop(&peer);
    fc_free(&c);
}

/* ------------------------------------------------------------------------ */
/* Calls on a transport that is closing, from its own connection_lost        */
/* ------------------------------------------------------------------------ */

/* Everything on a transport inside its connection_lost: still live, closing;
 * writes are dropped, the rest are no-ops or getters. */
static void closing_transport_calls(goconn_transport *t) {
    struct iovec bufs[2] = {{(void *)"ab", 2}, {(void *)"c", 1}};
    CHECK_EQ_INT(goconn_transport_is_closing(t), 1);
    CHECK_EQ_INT(goconn_transport_is_reading(t), 0);
    CHECK_EQ_INT(goconn_transport_write(t, "x", 1), GOCONN_ECLOSING);
    CHECK_EQ_INT(goconn_transport_writelines(t, bufs, 2), GOCONN_ECLOSING);
    CHECK_EQ_INT(goconn_transport_write_eof(t), 0);
    CHECK_EQ_INT(goconn_transport_close(t), 0);
    CHECK_EQ_INT(goconn_transport_abort(t), 0);
    CHECK_EQ_INT(goconn_transport_pause_reading(t), 0);
    CHECK_EQ_INT(goconn_transport_resume_reading(t), 0);
    CHECK_EQ_INT(goconn_transport_is_reading(t), 0);
    CHECK_EQ_INT(goconn_transport_can_write_eof(t), 1);
    CHECK_EQ_INT(goconn_transport_set_write_buffer_limits(t, 10, 5, NULL, 0), 0);
    size_t size = 99;
    CHECK_EQ_INT(goconn_transport_get_write_buffer_size(t, &size), 0);
    CHECK_EQ_INT(size, 0);
    CHECK(goconn_transport_get_fd(t) >= 0);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    CHECK_EQ_INT(goconn_transport_get_peername(t, (struct sockaddr *)&ss, &sl), 0);
    const goconn_attempt *const *at;
    size_t n;
    CHECK_EQ_INT(goconn_transport_get_attempts(t, &at, &n), 0);
    goconn_tls_info info;
    memset(&info, 0, sizeof info);
    info.version = GOCONN_TLS_INFO_VERSION;
    CHECK_EQ_INT(goconn_transport_get_tls_info(t, &info), -ENOENT);
}

static void closing_calls_in_lost(fconn *c, const goconn_error *e) {
    (void)e;
    closing_transport_calls(c->t);
    if (c->loop) {
        CHECK_EQ_INT(goconn_loop_dispatch(c->loop, 0), GOCONN_EREENTRANT);
        CHECK_EQ_INT(goconn_loop_free(c->loop), -EBUSY);
    }
}

/* ------------------------------------------------------------------------ */
/* 5. 10,000 concurrent connections                                          */
/* ------------------------------------------------------------------------ */

#define TT_N 10000
#define TT_MSG 16

static const char *skip_reason; /* set when a case cannot run here: exit 77 at the end */

typedef struct {
    goconn_transport *t;
    int idx;
    char msg[TT_MSG + 1];
    unsigned char got[TT_MSG];
    size_t ngot;
} tt_conn;

static atomic_int tt_ndone, tt_nfail, tt_nlost, tt_necho, tt_nlost_err, tt_bad, tt_first_fail;

static void tt_data(void *p, const void *d, size_t n) {
    tt_conn *c = p;
    if (c->ngot + n > TT_MSG) {
        atomic_fetch_add(&tt_bad, 1);
        return;
    }
    memcpy(c->got + c->ngot, d, n);
    c->ngot += n;
    if (c->ngot == TT_MSG) {
        if (memcmp(c->got, c->msg, TT_MSG) != 0) atomic_fetch_add(&tt_bad, 1);
        atomic_fetch_add(&tt_necho, 1);
        if (goconn_transport_close(c->t) != 0) atomic_fetch_add(&tt_bad, 1);
    }
}

static void tt_lost(void *p, const goconn_error *e) {
    (void)p;
    if (e) atomic_fetch_add(&tt_nlost_err, 1);
    atomic_fetch_add(&tt_nlost, 1);
}

static void tt_done(void *u, goconn_transport *t, void *p, const goconn_error *e) {
    tt_conn *c = u;
    if (e) {
        int expected = 0;
        atomic_compare_exchange_strong(&tt_first_fail, &expected, e->code ? e->code : -1);
        if (atomic_fetch_add(&tt_nfail, 1) < 3) fprintf(stderr, "connection %d failed: %s\n", c->idx, e->message);
    } else {
        if (p != c) atomic_fetch_add(&tt_bad, 1);
        c->t = t;
    }
    atomic_fetch_add(&tt_ndone, 1);
}

/* tt_wait pumps until *counter reaches n. */
static int tt_wait(goconn_loop *l, test_proc *peer, atomic_int *counter, int n, int timeout_ms) {
    long long deadline = now_ms() + timeout_ms;
    while (atomic_load(counter) < n) {
        if (now_ms() > deadline) return 0;
        pump_once(l, peer, 5);
    }
    return 1;
}

/* raise_nofile makes the soft limit at least need, raising the hard limit
 * too when it is lower (needs CAP_SYS_RESOURCE). Returns 0 if it cannot. */
static int raise_nofile(rlim_t need) {
    struct rlimit r;
    CHECK_EQ_INT(getrlimit(RLIMIT_NOFILE, &r), 0);
    if (r.rlim_cur >= need) return 1;
    if (r.rlim_max < need) {
        struct rlimit want = {need, need};
        if (setrlimit(RLIMIT_NOFILE, &want) == 0) return 1;
        printf("  cannot raise the hard RLIMIT_NOFILE from %llu to %llu: %s\n", (unsigned long long)r.rlim_max,
               (unsigned long long)need, strerror(errno));
        return 0;
    }
    r.rlim_cur = need;
    CHECK_EQ_INT(setrlimit(RLIMIT_NOFILE, &r), 0);
    return 1;
}

static void ten_thousand(goconn_loop *l) {
    printf("%d concurrent connections, %s mode\n", TT_N, mname(l));
    /* Our side holds TT_N sockets; the peer, a process of its own, the
     * other TT_N (it inherits the limit set here). */
    rlim_t need = (rlim_t)TT_N + (rlim_t)count_open_fds() + 512;
    if (!raise_nofile(need)) {
        skip_reason = "RLIMIT_NOFILE cannot be raised enough for 10,000 connections";
        printf("  skipped: %s\n", skip_reason);
        return;
    }
    test_proc peer;
    int port = peer_serve(&peer, NULL);
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", port);
    int fds = count_open_fds(), sockets = count_open_sockets();
    int handles = goconn_live_handles();
    tt_conn *cs = calloc(TT_N, sizeof *cs);
    CHECK(cs != NULL);
    atomic_store(&tt_ndone, 0), atomic_store(&tt_nfail, 0), atomic_store(&tt_nlost, 0);
    atomic_store(&tt_necho, 0), atomic_store(&tt_nlost_err, 0), atomic_store(&tt_bad, 0);
    atomic_store(&tt_first_fail, 0);
    goconn_protocol p = GOCONN_PROTOCOL_INIT;
    p.data_received = tt_data;
    p.connection_lost = tt_lost;
    long long t0 = now_ms();
    for (int i = 0; i < TT_N; i++) {
        tt_conn *c = &cs[i];
        c->idx = i;
        snprintf(c->msg, sizeof c->msg, "conn %05d ....\n", i);
        goconn_options o;
        CHECK_EQ_INT(goconn_options_init(&o, GOCONN_OPTIONS_VERSION), 0);
        o.loop = l;
        o.host = "127.0.0.1";
        o.port = port_s;
        CHECK_EQ_INT(goconn_open_connection(&o, &p, tt_done, c, NULL), 0);
        if (i % 256 == 255) pump_once(l, &peer, 0);
    }
    long long t_open = now_ms();
    if (!tt_wait(l, &peer, &tt_ndone, TT_N, 50000)) {
        fprintf(stderr, "only %d of %d connections reported\n", atomic_load(&tt_ndone), TT_N);
        exit(1);
    }
    long long t_conn = now_ms();
    if (atomic_load(&tt_nfail) != 0) {
        fprintf(stderr, "%d connections failed, the first with %d\n", atomic_load(&tt_nfail),
                atomic_load(&tt_first_fail));
        exit(1);
    }
    /* All of them at once. */
    int peak_sockets = count_open_sockets();
    CHECK(peak_sockets >= sockets + TT_N);
    CHECK_EQ_INT(goconn_live_handles(), handles + TT_N);
    for (int i = 0; i < TT_N; i++) {
        CHECK_EQ_INT(goconn_transport_write(cs[i].t, cs[i].msg, TT_MSG), 0);
        if (i % 256 == 255) pump_once(l, &peer, 0);
    }
    if (!tt_wait(l, &peer, &tt_nlost, TT_N, 50000)) {
        fprintf(stderr, "only %d of %d connections ended (%d echoed)\n", atomic_load(&tt_nlost), TT_N,
                atomic_load(&tt_necho));
        exit(1);
    }
    long long t_end = now_ms();
    CHECK_EQ_INT(atomic_load(&tt_necho), TT_N);
    CHECK_EQ_INT(atomic_load(&tt_nlost_err), 0);
    CHECK_EQ_INT(atomic_load(&tt_bad), 0);
    CHECK(wait_live_handles(handles, 10000));
    for (int i = 0; i < TT_N; i += 997) CHECK_EQ_INT(goconn_transport_write(cs[i].t, "x", 1), -EBADF);
    if (!wait_fds(fds, 10000)) {
        fprintf(stderr, "fds: %d, want %d\n", count_open_fds(), fds);
        exit(1);
    }
    printf("  opened in %lld ms, all connected after %lld ms (peak %d sockets), exchanged and closed after "
           "%lld ms; %d threads now\n",
           t_open - t0, t_conn - t0, peak_sockets, t_end - t0, count_threads());
    CHECK(t_end - t0 < 60000);
    proc_stop(&peer);
    free(cs);
}

/* ------------------------------------------------------------------------ */
/* 6. fd exhaustion                                                          */
/* ------------------------------------------------------------------------ */

typedef struct {
    int *fds;
    int n;
    struct rlimit old;
} fd_filler;

/* fill_fds lowers the soft RLIMIT_NOFILE to a little above what is open and
 * opens /dev/null until open() gives EMFILE. */
static void fill_fds(fd_filler *f) {
    CHECK_EQ_INT(getrlimit(RLIMIT_NOFILE, &f->old), 0);
    struct rlimit lim = f->old;
    lim.rlim_cur = (rlim_t)count_open_fds() + 64;
    CHECK(lim.rlim_cur <= f->old.rlim_cur);
    CHECK_EQ_INT(setrlimit(RLIMIT_NOFILE, &lim), 0);
    f->fds = malloc(sizeof(int) * 256);
    CHECK(f->fds != NULL);
    f->n = 0;
    for (;;) {
        int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            CHECK_EQ_INT(errno, EMFILE);
            break;
        }
        CHECK(f->n < 256);
        f->fds[f->n++] = fd;
    }
    CHECK(f->n > 0);
}

static void unfill_fds(fd_filler *f) {
    for (int i = 0; i < f->n; i++) close(f->fds[i]);
    free(f->fds);
    CHECK_EQ_INT(setrlimit(RLIMIT_NOFILE, &f->old), 0);
}

static void check_emfile(const test_error *e) {
    CHECK(e->present);
    CHECK_EQ_INT(e->code, -EMFILE);
    CHECK_EQ_INT(e->errnum, EMFILE);
    CHECK_STREQ(e->message, "[Errno 24] Too many open files");
    CHECK_STREQ(e->strerror_, "Too many open files");
}

/* fails_with_emfile opens a connection with o and expects on_done with
 * -EMFILE and nothing else. */
static void fails_with_emfile(goconn_loop *l, goconn_options *o, const char *what) {
    fconn c;
    fc_init(&c, l);
    o->loop = l;
    CHECK_EQ_INT(fc_open_with(&c, o), 0);
    CHECK(fwait(l, &c.done, 10000, NULL));
    settle(l, 50);
    fc_sane(&c);
    if (!c.done_err.present || c.done_err.code != -EMFILE) {
        fprintf(stderr, "%s with the fd table full: log %s, code %d (%s)\n", what, fc_log(&c, NULL),
                c.done_err.code, c.done_err.message);
        exit(1);
    }
    CHECK_STREQ(fc_log(&c, NULL), "X");
    check_emfile(&c.done_err);
    fc_free(&c);
}

static void emfile(goconn_loop *l) {
    printf("fd table full (EMFILE), %s mode\n", mname(l));
    test_peer echo;
    peer_start(&echo, AF_INET, PEER_ECHO, NULL, 0);
    test_proc tls;
    int tls_port = peer_serve(&tls, "--tls", "--certdir", certs_dir(), NULL);
    const char *ca = cert_path("ca.pem");
    /* A connected socket to adopt. */
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(s >= 0);
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons((uint16_t)echo.port);
    CHECK_EQ_INT(connect(s, (struct sockaddr *)&sin, sizeof sin), 0);
    /* The echo peer is a thread of this process: its accept must be done
     * before the table is full, or it takes the fd a case below frees. */
    long long deadline = now_ms() + 5000;
    while (echo.accepted < 1) {
        CHECK(now_ms() < deadline);
        sleep_ms(1);
    }
    /* glibc reads nsswitch.conf on the first lookup: without it, a lookup
     * with no fd to spare says EAI_NONAME instead of EAI_SYSTEM/EMFILE. */
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    CHECK_EQ_INT(getaddrinfo("localhost", "80", &hints, &res), 0);
    freeaddrinfo(res);
    int fds = count_open_fds();
    int handles = goconn_live_handles();

    fd_filler f;
    fill_fds(&f);
    long long t0 = now_ms();
    goconn_options o;
    /* An IP literal: socket() fails. */
    CHECK_EQ_INT(goconn_options_init(&o, GOCONN_OPTIONS_VERSION), 0);
    o.host = "127.0.0.1";
    o.port = peer_port(&echo);
    fails_with_emfile(l, &o, "127.0.0.1");
    /* A name: getaddrinfo fails (EAI_SYSTEM with errno EMFILE, which asyncio
     * shows as OSError(24)). */
    o.host = "localhost";
    fails_with_emfile(l, &o, "localhost");
    /* A new loop needs an eventfd. */
    goconn_loop *l2 = NULL;
    CHECK_EQ_INT(goconn_loop_new(&l2), -EMFILE);
    CHECK(l2 == NULL);
    /* An adopted socket: the library's duplicate fails; the caller keeps the
     * descriptor. */
    char errbuf[128] = "";
    CHECK_EQ_INT(goconn_options_init(&o, GOCONN_OPTIONS_VERSION), 0);
    o.loop = l;
    o.has_sock = 1;
    o.sock = s;
    o.errbuf = errbuf;
    o.errbuf_size = sizeof errbuf;
    {
        fconn c;
        fc_init(&c, l);
        CHECK_EQ_INT(fc_open_with(&c, &o), -EMFILE);
        CHECK_STREQ(errbuf, "[Errno 24] Too many open files");
        CHECK(fcntl(s, F_GETFD) >= 0);
        settle(l, 50);
        CHECK_STREQ(fc_log(&c, NULL), "");
        fc_free(&c);
    }
    /* Exactly one fd free: the CA file (read by goconn_open_connection) and
     * the TCP socket each need it for a moment. Whether both get it depends on
     * timing, so either the handshake succeeds or on_done says -EMFILE; either
     * way the fd is free again afterwards. */
    close(f.fds[--f.n]);
    goconn_ssl_options so;
    CHECK_EQ_INT(goconn_ssl_options_init(&so, GOCONN_SSL_OPTIONS_VERSION), 0);
    so.ca_file = ca;
    {
        fconn c;
        fc_init(&c, l);
        fc_opts(&c, &o, tls_port);
        o.ssl = &so;
        o.server_hostname = "localhost";
        CHECK_EQ_INT(fc_open_with(&c, &o), 0);
        CHECK(fwait(l, &c.done, 10000, NULL));
        if (c.done_err.present) {
            CHECK_STREQ(fc_log(&c, NULL), "X");
            check_emfile(&c.done_err);
            printf("  TLS with one free fd: %s\n", c.done_err.message);
        } else {
            printf("  TLS with one free fd: connected\n");
            CHECK_EQ_INT(goconn_transport_abort(c.t), 1);
            CHECK(fwait(l, &c.lost, 10000, NULL));
            CHECK_STREQ(fc_log(&c, NULL), "fMOL");
        }
        ended(l, handles);
        fc_sane(&c);
        fc_free(&c);
    }
    /* The fd is free again (the socket is closed a moment after
     * connection_lost or on_done, once no poller call holds it). */
    int again = -1;
    deadline = now_ms() + 2000;
    while ((again = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
        CHECK_EQ_INT(errno, EMFILE);
        CHECK(now_ms() < deadline);
        sleep_ms(2);
    }
    f.fds[f.n++] = again;
    CHECK(now_ms() - t0 < 10000);
    unfill_fds(&f);

    /* With fds to spare everything works again, the adopted socket too. */
    CHECK(wait_fds(fds, 2000));
    fconn c;
    fc_init(&c, l);
    CHECK_EQ_INT(goconn_options_init(&o, GOCONN_OPTIONS_VERSION), 0);
    o.loop = l;
    o.has_sock = 1;
    o.sock = s;
    CHECK_EQ_INT(fc_open_with(&c, &o), 0);
    CHECK(fwait(l, &c.done, 10000, NULL));
    CHECK_EQ_INT(goconn_transport_write(c.t, pat, 1000), 0);
    while (c.received < 1000) pump_once(l, NULL, 5);
    CHECK_EQ_INT(goconn_transport_close(c.t), 0);
    CHECK(fwait(l, &c.lost, 10000, NULL));
    ended(l, handles);
    fc_sane(&c);
    CHECK_STREQ(fc_log(&c, NULL), "fMOdL");
    stream_ok(&c.in, 1000, "echo after EMFILE");
    CHECK(fcntl(s, F_GETFD) < 0); /* the library closed the adopted socket */
    fc_free(&c);
    fc_init(&c, l);
    fc_open(&c, echo.port);
    CHECK(fwait(l, &c.done, 10000, NULL));
    CHECK(!c.done_err.present);
    CHECK_EQ_INT(goconn_transport_abort(c.t), 1);
    CHECK(fwait(l, &c.lost, 10000, NULL));
    ended(l, handles);
    fc_free(&c);
    /* Minus the adopted socket and the echo peer's end of it. */
    CHECK(wait_fds(fds - 2, 2000));
    proc_stop(&tls);
    peer_stop(&echo);
}

/* ------------------------------------------------------------------------ */
/* 7. Callbacks that re-enter                                                */
/* ------------------------------------------------------------------------ */

typedef struct {
    fconn *a, *b, *r, *d;
    goconn_loop *other_loop; /* a loop with no connections */
    int step;
    int cancel_rc1, cancel_rc2, abort_rc, free_other_rc, new_loop_rc;
    int port;
    volatile int step_done;
} reent;

static void reent_a_data(fconn *c, const void *d, size_t n) {
    reent *s = c->user;
    (void)d;
    (void)n;
    if (c->received + n < (uint64_t)s->step) return; /* one byte per step */
    if (s->step == 1) {
        /* Another request and another transport, from this callback. */
        s->cancel_rc1 = goconn_request_cancel(s->r->req);
        s->abort_rc = goconn_transport_abort(s->b->t);
    } else if (s->step == 2) {
        /* Both have ended: their handles are dead, and say so here too. */
        s->cancel_rc2 = goconn_request_cancel(s->r->req);
        all_transport_calls_badf(s->b->t);
        CHECK_EQ_INT(goconn_request_cancel(s->b->req), -EBADF);
        /* A loop of our own, made and freed inside a callback. */
        goconn_loop *tmp = NULL;
        s->new_loop_rc = goconn_loop_new(&tmp);
        CHECK_EQ_INT(goconn_loop_free(tmp), 0);
        s->free_other_rc = goconn_loop_free(s->other_loop);
    }
    s->step_done = s->step;
}

/* D is opened from connection_lost of A: a reconnect. */
static void reent_a_lost(fconn *c, const goconn_error *e) {
    reent *s = c->user;
    closing_calls_in_lost(c, e);
    fc_open(s->d, s->port);
}

/* R's on_done: its own handle is live until on_done returns. */
static void reent_r_done(fconn *c, const goconn_error *e) {
    (void)e;
    CHECK_EQ_INT(goconn_request_cancel(c->req), 0);
}

static void reentrancy(goconn_loop *l) {
    printf("re-entering callbacks, %s mode\n", mname(l));
    test_proc echo; /* serves connections concurrently */
    int port = peer_serve(&echo, NULL);
    hang_listener h;
    CHECK(hang_start(&h, AF_INET, 0));
    int fds = count_open_fds();
    int handles = goconn_live_handles();
    fconn a, b, r, d;
    reent s;
    memset(&s, 0, sizeof s);
    s.a = &a, s.b = &b, s.r = &r, s.d = &d;
    s.port = port;
    CHECK_EQ_INT(goconn_loop_new(&s.other_loop), 0); /* freed by A's callback */
    handles++;
    fc_init(&a, l);
    fc_init(&b, l);
    fc_init(&r, l);
    fc_init(&d, l);
    a.user = &s;
    a.on_data = reent_a_data;
    a.on_lost = reent_a_lost;
    b.on_lost = closing_calls_in_lost;
    r.on_done = reent_r_done;
    fc_open(&r, h.port);
    fc_open(&a, port);
    fc_open(&b, port);
    CHECK(fwait(l, &a.done, 10000, NULL));
    CHECK(fwait(l, &b.done, 10000, NULL));
    CHECK_EQ_INT(r.done, 0);

    s.step = 1;
    CHECK_EQ_INT(goconn_transport_write(a.t, "1", 1), 0);
    CHECK(fwait(l, &b.lost, 10000, NULL));
    CHECK(fwait(l, &r.done, 10000, NULL));
    CHECK_EQ_INT(s.cancel_rc1, 0);
    CHECK_EQ_INT(s.abort_rc, 1);
    CHECK_STREQ(fc_log(&b, NULL), "fMOL");
    CHECK(!b.lost_err.present);
    CHECK_STREQ(fc_log(&r, NULL), "X");
    CHECK_EQ_INT(r.done_err.code, -ECANCELED);
    ended(l, handles + 1); /* A is still up */

    s.step = 2;
    CHECK_EQ_INT(goconn_transport_write(a.t, "2", 1), 0);
    long long deadline = now_ms() + 10000;
    while (s.step_done != 2) {
        CHECK(now_ms() < deadline);
        pump_once(l, NULL, 5);
    }
    CHECK_EQ_INT(s.cancel_rc2, -EBADF);
    CHECK_EQ_INT(s.new_loop_rc, 0);
    CHECK_EQ_INT(s.free_other_rc, 0);
    CHECK_EQ_INT(goconn_loop_fd(s.other_loop), -EBADF);
    handles--;

    /* A's connection_lost opens D. */
    CHECK_EQ_INT(goconn_transport_close(a.t), 0);
    CHECK(fwait(l, &a.lost, 10000, NULL));
    CHECK(fwait(l, &d.done, 10000, NULL));
    CHECK(!d.done_err.present);
    CHECK_EQ_INT(goconn_transport_write(d.t, pat, 300), 0);
    while (d.received < 300) pump_once(l, NULL, 5);
    CHECK_EQ_INT(goconn_transport_close(d.t), 0);
    CHECK(fwait(l, &d.lost, 10000, NULL));
    ended(l, handles);
    fc_sane(&a), fc_sane(&b), fc_sane(&r), fc_sane(&d);
    CHECK_STREQ(fc_log(&a, NULL), "fMOdL");
    CHECK_STREQ(fc_log(&d, NULL), "fMOdL");
    stream_ok(&d.in, 300, "the connection opened from connection_lost");
    fc_free(&a), fc_free(&b), fc_free(&r), fc_free(&d);
    hang_stop(&h);
    proc_stop(&echo);
    CHECK(wait_fds(fds - 5, 2000)); /* the peer's pipes, the hang listener and its filler */
}

/* ------------------------------------------------------------------------ */
/* 8. A transport after connection_lost, and made-up handles                 */
/* ------------------------------------------------------------------------ */

static void bad_pointers(void) {
    static long stack_like[4];
    long on_stack[4];
    void *heap = malloc(64);
    CHECK(heap != NULL);
    goconn_loop *live_loop;
    CHECK_EQ_INT(goconn_loop_new(&live_loop), 0);
    uintptr_t near = (uintptr_t)live_loop;
    void *ptrs[] = {
        NULL,
        heap,
        on_stack,
        stack_like,
        pat,
        (void *)(uintptr_t)0x100000000000ull, /* where the library's handles start: never handed out */
        (void *)(near + 8),                   /* between two handles */
        (void *)(near - 8),
        (void *)(uintptr_t)0x7ffffffff000ull,
        (void *)(uintptr_t)0xfffffffffffffff0ull,
    };
    for (size_t i = 0; i < sizeof ptrs / sizeof ptrs[0]; i++) {
        all_transport_calls_badf((goconn_transport *)ptrs[i]);
        CHECK_EQ_INT(goconn_request_cancel((goconn_request *)ptrs[i]), -EBADF);
        CHECK_EQ_INT(goconn_loop_fd((goconn_loop *)ptrs[i]), -EBADF);
        CHECK_EQ_INT(goconn_loop_dispatch((goconn_loop *)ptrs[i], 0), -EBADF);
        CHECK_EQ_INT(goconn_loop_free((goconn_loop *)ptrs[i]), -EBADF);
    }
    /* A live loop is no transport. */
    all_transport_calls_badf((goconn_transport *)live_loop);
    CHECK_EQ_INT(goconn_loop_free(live_loop), 0);
    free(heap);
}

static void after_lost(goconn_loop *l, int use_tls) {
    printf("a dead %s transport, %s mode\n", use_tls ? "TLS" : "TCP", mname(l));
    test_proc peer;
    int port = use_tls ? peer_serve(&peer, "--tls", "--certdir", certs_dir(), NULL) : peer_serve(&peer, NULL);
    int handles = goconn_live_handles();
    goconn_ssl_options so;
    CHECK_EQ_INT(goconn_ssl_options_init(&so, GOCONN_SSL_OPTIONS_VERSION), 0);
    so.ca_file = cert_path("ca.pem");
    fconn c;
    fc_init(&c, l);
    goconn_options o;
    fc_opts(&c, &o, port);
    if (use_tls) {
        o.ssl = &so;
        o.server_hostname = "localhost";
    }
    CHECK_EQ_INT(fc_open_with(&c, &o), 0);
    CHECK(fwait(l, &c.done, 10000, &peer));
    CHECK(!c.done_err.present);
    /* Live: the getters answer. */
    goconn_tls_info info;
    memset(&info, 0, sizeof info);
    info.version = GOCONN_TLS_INFO_VERSION;
    const void *der = NULL;
    size_t len = 0;
    CHECK_EQ_INT(goconn_transport_get_tls_info(c.t, &info), use_tls ? 0 : -ENOENT);
    CHECK_EQ_INT(goconn_transport_get_peer_certificate(c.t, 0, &der, &len), use_tls ? 0 : -ENOENT);
    CHECK_EQ_INT(goconn_transport_can_write_eof(c.t), use_tls ? 0 : 1);
    CHECK_EQ_INT(goconn_transport_close(c.t), 0);
    CHECK(fwait(l, &c.lost, 10000, &peer));
    ended(l, handles);
    fc_sane(&c);
    CHECK(!c.lost_err.present);
    all_transport_calls_badf(c.t);
    CHECK_EQ_INT(goconn_request_cancel(c.req), -EBADF);
    proc_stop(&peer);
    fc_free(&c);
}

/* ------------------------------------------------------------------------ */
/* 9. goconn_loop_free while connections live                                */
/* ------------------------------------------------------------------------ */

static void *free_from_thread(void *arg) {
    return (void *)(intptr_t)goconn_loop_free((goconn_loop *)arg);
}

static int loop_readable(goconn_loop *l) {
    struct pollfd pf = {goconn_loop_fd(l), POLLIN, 0};
    return poll(&pf, 1, 0) == 1;
}

static void loop_free_busy(void) {
    printf("goconn_loop_free with live connections\n");
    test_proc echo; /* serves connections concurrently */
    int port = peer_serve(&echo, NULL);
    hang_listener h;
    CHECK(hang_start(&h, AF_INET, 0));
    fpeer slow;
    fpeer_start(&slow, serve_hold_then_read, 4096);
    int fds = count_open_fds();
    int handles = goconn_live_handles();
    goconn_loop *l;
    CHECK_EQ_INT(goconn_loop_new(&l), 0);
    int lfd = goconn_loop_fd(l);
    CHECK(lfd >= 0);
    fconn r, a, b, c;
    fc_init(&r, l), fc_init(&a, l), fc_init(&b, l), fc_init(&c, l);
    fc_open(&r, h.port);     /* pending for ever */
    fc_open(&a, port);  /* idle */
    fc_open(&b, slow.port);  /* closing with a full buffer */
    CHECK(fwait(l, &a.done, 10000, NULL));
    CHECK(fwait(l, &b.done, 10000, NULL));
    uint64_t off = 0;
    write_pattern(b.t, &off, 8u << 20, NULL);
    CHECK_EQ_INT(goconn_transport_close(b.t), 0);
    CHECK_EQ_INT(goconn_loop_free(l), -EBUSY);
    /* C's events wait in the queue, undispatched. */
    fc_open(&c, port);
    long long deadline = now_ms() + 10000;
    while (!loop_readable(l)) {
        CHECK(now_ms() < deadline);
        sleep_ms(1);
    }
    sleep_ms(50);
    int live = goconn_live_handles();
    for (int i = 0; i < 3; i++) CHECK_EQ_INT(goconn_loop_free(l), -EBUSY);
    pthread_t th;
    void *thread_rc;
    CHECK_EQ_INT(pthread_create(&th, NULL, free_from_thread, l), 0);
    CHECK_EQ_INT(pthread_join(th, &thread_rc), 0);
    CHECK_EQ_INT((int)(intptr_t)thread_rc, -EBUSY);
    /* Nothing changed: same fd, still readable, nothing ran, nothing freed. */
    CHECK_EQ_INT(goconn_live_handles(), live);
    CHECK_EQ_INT(goconn_loop_fd(l), lfd);
    CHECK(loop_readable(l));
    CHECK_STREQ(fc_log(&c, NULL), "");
    CHECK_EQ_INT(r.done, 0);
    CHECK_EQ_INT(goconn_transport_is_closing(b.t), 1);
    CHECK_EQ_INT(goconn_transport_is_closing(a.t), 0);
    /* And everything goes on. */
    CHECK(fwait(l, &c.done, 10000, NULL));
    CHECK_STREQ(fc_log(&c, NULL), "fMO");
    CHECK_EQ_INT(goconn_transport_write(a.t, pat, 100), 0);
    while (a.received < 100) pump_once(l, NULL, 5);
    CHECK_EQ_INT(goconn_request_cancel(r.req), 0);
    CHECK(fwait(l, &r.done, 10000, NULL));
    CHECK_EQ_INT(r.done_err.code, -ECANCELED);
    CHECK_EQ_INT(goconn_loop_free(l), -EBUSY); /* a, b and c */
    slow.go = 1;
    CHECK(fwait(l, &b.lost, 30000, NULL));
    CHECK(!b.lost_err.present);
    CHECK_EQ_INT(goconn_transport_close(a.t), 0);
    CHECK_EQ_INT(goconn_loop_free(l), -EBUSY); /* closing is not lost */
    CHECK_EQ_INT(goconn_transport_abort(c.t), 1);
    CHECK(fwait(l, &a.lost, 10000, NULL));
    CHECK(fwait(l, &c.lost, 10000, NULL));
    CHECK_EQ_INT(goconn_loop_free(l), 0);
    /* The freed loop is dead for every call. */
    CHECK_EQ_INT(goconn_loop_fd(l), -EBADF);
    CHECK_EQ_INT(goconn_loop_dispatch(l, 0), -EBADF);
    CHECK_EQ_INT(goconn_loop_dispatch(l, 1), -EBADF);
    CHECK_EQ_INT(goconn_loop_free(l), -EBADF);
    fconn e;
    fc_init(&e, l);
    goconn_options o;
    fc_opts(&e, &o, port);
    CHECK_EQ_INT(fc_open_with(&e, &o), -EBADF);
    CHECK(e.req == NULL);
    sleep_ms(50);
    CHECK_STREQ(fc_log(&e, NULL), "");
    errno = 0;
    CHECK(fcntl(lfd, F_GETFD) < 0 && errno == EBADF); /* its eventfd is closed */
    fc_sane(&r), fc_sane(&a), fc_sane(&b), fc_sane(&c);
    CHECK_STREQ(fc_log(&a, NULL), "fMOdL");
    CHECK_STREQ(fc_log(&b, NULL), "fMOPRL");
    CHECK_STREQ(fc_log(&c, NULL), "fMOL");
    all_transport_calls_badf(a.t);
    all_transport_calls_badf(b.t);
    all_transport_calls_badf(c.t);
    CHECK_EQ_INT(goconn_request_cancel(r.req), -EBADF);
    CHECK_EQ_INT(goconn_live_handles(), handles);
    while (!slow.got_eof) sleep_ms(2);
    stream_ok(&slow.in, 8u << 20, "the closing transport's buffer");
    fc_free(&r), fc_free(&a), fc_free(&b), fc_free(&c), fc_free(&e);
    fpeer_stop(&slow);
    hang_stop(&h);
    proc_stop(&echo);
    CHECK(wait_fds(fds - 6, 2000)); /* the peers' fds, the hang listener and its filler */
}

/* ------------------------------------------------------------------------ */
/* 10. fork() with live connections                                          */
/* ------------------------------------------------------------------------ */

static int forked_bad;

#define EXPECT_FORKED(call)                                                        \
    do {                                                                           \
        int rc_ = (call);                                                          \
        if (rc_ != GOCONN_EFORKED) {                                               \
            fprintf(stderr, "child: %s gave %d, not GOCONN_EFORKED\n", #call, rc_); \
            forked_bad++;                                                          \
        }                                                                          \
    } while (0)

static void forked_transport_calls(goconn_transport *t) {
    int64_t lo, hi;
    size_t sz, n;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    const goconn_attempt *const *at;
    const goconn_resolution *const *res;
    struct iovec bufs[1] = {{(void *)"x", 1}};
    goconn_tls_info info;
    memset(&info, 0, sizeof info);
    info.version = GOCONN_TLS_INFO_VERSION;
    const void *der;
    EXPECT_FORKED(goconn_transport_write(t, "x", 1));
    EXPECT_FORKED(goconn_transport_writelines(t, bufs, 1));
    EXPECT_FORKED(goconn_transport_write_eof(t));
    EXPECT_FORKED(goconn_transport_can_write_eof(t));
    EXPECT_FORKED(goconn_transport_close(t));
    EXPECT_FORKED(goconn_transport_abort(t));
    EXPECT_FORKED(goconn_transport_is_closing(t));
    EXPECT_FORKED(goconn_transport_pause_reading(t));
    EXPECT_FORKED(goconn_transport_resume_reading(t));
    EXPECT_FORKED(goconn_transport_is_reading(t));
    EXPECT_FORKED(goconn_transport_set_write_buffer_limits(t, 100, 10, NULL, 0));
    EXPECT_FORKED(goconn_transport_get_write_buffer_limits(t, &lo, &hi));
    EXPECT_FORKED(goconn_transport_get_write_buffer_size(t, &sz));
    EXPECT_FORKED(goconn_transport_get_fd(t));
    EXPECT_FORKED(goconn_transport_get_peername(t, (struct sockaddr *)&ss, &sl));
    EXPECT_FORKED(goconn_transport_get_sockname(t, (struct sockaddr *)&ss, &sl));
    EXPECT_FORKED(goconn_transport_get_attempts(t, &at, &n));
    EXPECT_FORKED(goconn_transport_get_resolutions(t, &res, &n));
    EXPECT_FORKED(goconn_transport_get_tls_info(t, &info));
    EXPECT_FORKED(goconn_transport_get_peer_certificate(t, 0, &der, &n));
}

static void noop_done(void *u, goconn_transport *t, void *p, const goconn_error *e) {
    (void)u, (void)t, (void)p, (void)e;
    _exit(5); /* never in the child */
}

static void echo_check(goconn_loop *l, fconn *c, size_t n) {
    uint64_t before = c->received;
    CHECK_EQ_INT(goconn_transport_write(c->t, pat + before % 251, n), 0);
    long long deadline = now_ms() + 10000;
    while (c->received < before + n) {
        CHECK(now_ms() < deadline);
        pump_once(l, NULL, 5);
    }
}

static void forked(goconn_loop *loop) {
    printf("fork() with live connections\n");
    test_proc echo; /* serves connections concurrently */
    int port = peer_serve(&echo, NULL);
    hang_listener h;
    CHECK(hang_start(&h, AF_INET, 0));
    int handles = goconn_live_handles();
    fconn d, lc, r;
    fc_init(&d, NULL), fc_init(&lc, loop), fc_init(&r, NULL);
    fc_open(&d, port);
    fc_open(&lc, port);
    fc_open(&r, h.port);
    CHECK(fwait(NULL, &d.done, 10000, NULL));
    CHECK(fwait(loop, &lc.done, 10000, NULL));
    echo_check(NULL, &d, 1000);
    echo_check(loop, &lc, 1000);
    /* What the library opened is close-on-exec: a child that execs (the
     * supported way) inherits none of it. */
    int lib_fds[] = {goconn_transport_get_fd(d.t), goconn_transport_get_fd(lc.t), goconn_loop_fd(loop)};
    for (size_t i = 0; i < sizeof lib_fds / sizeof lib_fds[0]; i++) {
        CHECK(lib_fds[i] >= 0);
        CHECK(fcntl(lib_fds[i], F_GETFD) & FD_CLOEXEC);
    }
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        alarm(10); /* a hang kills the child, and the parent sees SIGALRM */
        long long t0 = now_ms();
        goconn_options o;
        goconn_ssl_options so;
        goconn_protocol p;
        goconn_loop *l2 = NULL;
        EXPECT_FORKED(goconn_live_handles());
        EXPECT_FORKED(goconn_loop_new(&l2));
        EXPECT_FORKED(goconn_loop_fd(loop));
        EXPECT_FORKED(goconn_loop_dispatch(loop, 0));
        EXPECT_FORKED(goconn_loop_free(loop));
        EXPECT_FORKED(goconn_options_init(&o, GOCONN_OPTIONS_VERSION));
        EXPECT_FORKED(goconn_ssl_options_init(&so, GOCONN_SSL_OPTIONS_VERSION));
        EXPECT_FORKED(goconn_protocol_init(&p, GOCONN_PROTOCOL_VERSION));
        /* The guard comes before any argument check. */
        EXPECT_FORKED(goconn_loop_new(NULL));
        EXPECT_FORKED(goconn_options_init(NULL, 0));
        EXPECT_FORKED(goconn_open_connection(NULL, NULL, NULL, NULL, NULL));
        EXPECT_FORKED(goconn_transport_write(NULL, NULL, 5));
        EXPECT_FORKED(goconn_loop_dispatch(NULL, 0));
        /* A well-formed request, built by hand. */
        memset(&o, 0, sizeof o);
        o.version = GOCONN_OPTIONS_VERSION;
        o.host = "127.0.0.1";
        o.port = d.port_s;
        goconn_protocol p2 = GOCONN_PROTOCOL_INIT;
        goconn_request *req = NULL;
        EXPECT_FORKED(goconn_open_connection(&o, &p2, noop_done, NULL, &req));
        o.loop = loop;
        EXPECT_FORKED(goconn_open_connection(&o, &p2, noop_done, NULL, &req));
        if (req != NULL) forked_bad++;
        EXPECT_FORKED(goconn_request_cancel(r.req));
        forked_transport_calls(d.t);
        forked_transport_calls(lc.t);
        /* What needs no Go runtime still answers. */
        if (goconn_abi_version() != GOCONN_ABI_VERSION) forked_bad++;
        if (strcmp(goconn_version(), "0.1.0") != 0) forked_bad++;
        if (strcmp(goconn_strerror(GOCONN_EFORKED), "unknown error") == 0) forked_bad++;
        long long elapsed = now_ms() - t0;
        if (elapsed > 2000) {
            fprintf(stderr, "child: the calls took %lld ms\n", elapsed);
            forked_bad++;
        }
        _exit(forked_bad ? 3 : 0);
    }
    int status = 0;
    long long deadline = now_ms() + 20000;
    for (;;) {
        int w = waitpid(pid, &status, WNOHANG);
        CHECK(w >= 0);
        if (w == pid) break;
        if (now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fprintf(stderr, "the forked child hung\n");
            exit(1);
        }
        pump_once(loop, NULL, 5);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "the forked child failed: status 0x%x%s\n", status,
                WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM ? " (SIGALRM: it hung)" : "");
        exit(1);
    }
    /* The parent's connections are untouched, its request still pending. */
    CHECK_EQ_INT(goconn_transport_is_closing(d.t), 0);
    CHECK_EQ_INT(goconn_transport_is_closing(lc.t), 0);
    echo_check(NULL, &d, 5000);
    echo_check(loop, &lc, 5000);
    CHECK_EQ_INT(r.done, 0);
    CHECK_EQ_INT(goconn_request_cancel(r.req), 0);
    CHECK(fwait(NULL, &r.done, 10000, NULL));
    CHECK_EQ_INT(r.done_err.code, -ECANCELED);
    CHECK_EQ_INT(goconn_transport_close(d.t), 0);
    CHECK_EQ_INT(goconn_transport_close(lc.t), 0);
    CHECK(fwait(NULL, &d.lost, 10000, NULL));
    CHECK(fwait(loop, &lc.lost, 10000, NULL));
    CHECK(wait_live_handles(handles, 10000));
    fc_sane(&d), fc_sane(&lc), fc_sane(&r);
    CHECK_STREQ(fc_log(&d, NULL), "fMOdL");
    CHECK_STREQ(fc_log(&lc, NULL), "fMOdL");
    stream_ok(&d.in, 6000, "direct connection across fork");
    stream_ok(&lc.in, 6000, "loop connection across fork");
    fc_free(&d), fc_free(&lc), fc_free(&r);
    hang_stop(&h);
    proc_stop(&echo);
}

/* ------------------------------------------------------------------------ */

static void per_mode(goconn_loop *l) {
    reset_mid_stream(l, 0, 0);
    reset_mid_stream(l, 1, 0);
    reset_mid_stream(l, 0, 1);
    reset_mid_stream(l, 1, 1);
    reset_while_writing(l);
    half_close(l, 1);
    half_close(l, 0);
    never_reads(l);
    slowloris_tls(l);
    gigabyte(l);
    emfile(l);
    reentrancy(l);
    after_lost(l, 0);
    after_lost(l, 1);
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    pat_init();
    certs_dir();
    goconn_loop *loop;
    CHECK_EQ_INT(goconn_loop_new(&loop), 0);
    warm_up(loop); /* the Go runtime's poller, before any fd count */

    bad_pointers();
    per_mode(NULL);
    CHECK(wait_live_handles(1, 10000));
    per_mode(loop);
    loop_free_busy();
    forked(loop);
    /* Last: it raises RLIMIT_NOFILE, and may have to be skipped. */
    ten_thousand(NULL);
    CHECK(wait_live_handles(1, 10000));
    ten_thousand(loop);

    CHECK_EQ_INT(goconn_loop_free(loop), 0);
    CHECK(wait_live_handles(0, 10000));
    free(pat);
    if (skip_reason) {
        printf("skip: %s (every other case passed)\n", skip_reason);
        return 77;
    }
    printf("ok\n");
    return 0;
}
