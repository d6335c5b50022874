/* get_buffer and buffer_updated (goconn_protocol version 2, asyncio's
 * BufferedProtocol), in loop mode and direct mode, over plain TCP and TLS,
 * against the goconn-peer (tests/peer):
 *
 * - a 16 MiB pattern stream received through a 1000-byte buffer and through
 *   a 1 MiB one: every byte checked against the pattern as it arrives,
 *   nothing written past the length buffer_updated reports or past the
 *   buffer, data_received never called, then eof_received and
 *   connection_lost(NULL);
 * - size_hint: in loop mode on plain TCP (the socket is read straight into
 *   the buffer) the bytes the kernel holds, so buffer_updated gets at least
 *   min(hint, size) (more may have come), or -1 for the read that finds the
 *   end of the stream; elsewhere (a copy) exactly what is left of the
 *   current chunk, and buffer_updated(min(hint, size));
 * - only one of the two set: goconn_open_connection fails with -EINVAL and
 *   asyncio-style text, and no callback is ever called;
 * - get_buffer returning NULL or a size of 0: connection_lost with
 *   GOCONN_EBUFFER and "get_buffer() returned an empty buffer";
 * - a version 1 protocol struct (which ends before get_buffer; what follows
 *   it here is garbage) still gets data_received.
 *
 * The stream pattern is the peer's: byte i is i % 251. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#define TOTAL (16u << 20)
#define TOTAL_TEXT "16777216"
#define SMALL_TEXT "100000"
#define GUARD 64
#define FILL 0xEE

static goconn_loop *loop;

/* ------------------------------------------------------------------------ */
/* A buffered protocol                                                       */
/* ------------------------------------------------------------------------ */

typedef struct bp {
    goconn_transport *transport;
    char log[32]; /* M made, b buffer_updated (a run once), d data_received, E eof, L lost */
    volatile int done, lost;
    int ndone, nlost, nmade, neof;
    test_error done_err, lost_err;

    /* Buffers. */
    size_t bufsize;
    unsigned char *mem; /* bufsize + GUARD bytes */
    int empty;          /* 1: get_buffer returns NULL; 2: a size of 0 */
    int outstanding;    /* a buffer was handed out and not yet updated */

    /* What arrived. */
    volatile size_t received;
    long long gets, updates, datas;
    long long hint_minus1, hint_over_size;
    ptrdiff_t last_hint;  /* the hint of the last get_buffer */
    size_t left;          /* what the copy path had left of its chunk */
    int copy;             /* expect the copy path's hints (not -1) */
    int failed_pattern;
} bp;

static void bp_add(bp *p, char what) {
    size_t n = strlen(p->log);
    if (what == 'b' && n > 0 && p->log[n - 1] == 'b') return;
    CHECK(n + 1 < sizeof p->log);
    p->log[n] = what;
    p->log[n + 1] = 0;
}

static void bp_made(void *proto, goconn_transport *t) {
    bp *p = proto;
    CHECK(p->nmade == 0 && p->nlost == 0);
    bp_add(p, 'M');
    p->nmade++;
    p->transport = t;
}

static void bp_data(void *proto, const void *data, size_t len) {
    bp *p = proto;
    (void)data;
    (void)len;
    bp_add(p, 'd');
    p->datas++;
}

static int bp_eof(void *proto) {
    bp *p = proto;
    CHECK(p->nlost == 0);
    CHECK(!p->outstanding || !p->copy); /* loop mode's EOF read leaves its buffer unfilled */
    bp_add(p, 'E');
    p->neof++;
    return 0;
}

static void bp_lost(void *proto, const goconn_error *e) {
    bp *p = proto;
    CHECK(p->nlost == 0);
    bp_add(p, 'L');
    test_error_save(&p->lost_err, e);
    p->nlost++;
    p->lost = 1;
}

static void bp_done(void *userdata, goconn_transport *t, void *proto, const goconn_error *e) {
    bp *p = userdata;
    test_error_save(&p->done_err, e);
    if (!e) CHECK(t == p->transport && proto == p);
    p->ndone++;
    p->done = 1;
}

static void *bp_get_buffer(void *proto, ptrdiff_t size_hint, size_t *size_out) {
    bp *p = proto;
    CHECK(p->nlost == 0 && p->neof == 0);
    CHECK(size_out != NULL);
    p->gets++;
    if (size_hint == -1) {
        p->hint_minus1++;
    } else {
        CHECK(size_hint >= 1);
        if (p->left > 0 && (size_t)size_hint != p->left) {
            fprintf(stderr, "get_buffer(%td) with %zu bytes of the chunk left\n", size_hint, p->left);
            exit(1);
        }
        if ((size_t)size_hint > p->bufsize) p->hint_over_size++;
    }
    p->last_hint = size_hint;
    if (p->empty == 1) {
        *size_out = 1000;
        return NULL;
    }
    if (p->empty == 2) {
        *size_out = 0;
        return p->mem;
    }
    /* Only the start and the guard are checked later; fill those. */
    memset(p->mem, FILL, p->bufsize < 4096 ? p->bufsize : 4096);
    memset(p->mem + p->bufsize, FILL, GUARD);
    p->outstanding = 1;
    *size_out = p->bufsize;
    return p->mem;
}

static void bp_buffer_updated(void *proto, size_t n) {
    bp *p = proto;
    CHECK(p->outstanding);
    CHECK(n >= 1 && n <= p->bufsize);
    p->outstanding = 0;
    p->updates++;
    bp_add(p, 'b');
    if (p->last_hint != -1) {
        size_t hint = (size_t)p->last_hint;
        size_t want = hint < p->bufsize ? hint : p->bufsize;
        if (!p->copy ? n < want : n != want) {
            fprintf(stderr, "buffer_updated(%zu) after get_buffer(%zu) of a %zu-byte buffer\n", n, hint, p->bufsize);
            exit(1);
        }
        if (p->copy) p->left = hint - n;
    }
    size_t off = p->received;
    unsigned want = (unsigned)(off % 251);
    for (size_t i = 0; i < n; i++) {
        if (p->mem[i] != want) {
            fprintf(stderr, "pattern broken at byte %zu (got %u, want %u)\n", off + i, p->mem[i], want);
            exit(1);
        }
        if (++want == 251) want = 0;
    }
    /* Nothing past n (in what was filled) and nothing past the buffer. */
    size_t filled = p->bufsize < 4096 ? p->bufsize : 4096;
    for (size_t i = n; i < filled; i++) CHECK(p->mem[i] == FILL);
    for (size_t i = 0; i < GUARD; i++) CHECK(p->mem[p->bufsize + i] == FILL);
    p->received = off + n;
}

static void bp_init(bp *p, size_t bufsize) {
    memset(p, 0, sizeof *p);
    p->bufsize = bufsize;
    p->mem = malloc(bufsize + GUARD);
    CHECK(p->mem != NULL);
}

static void bp_free(bp *p) { free(p->mem); }

static void protocol_v2(goconn_protocol *proto) {
    CHECK_EQ_INT(goconn_protocol_init(proto, GOCONN_PROTOCOL_VERSION), 0);
    proto->connection_made = bp_made;
    proto->data_received = bp_data;
    proto->eof_received = bp_eof;
    proto->connection_lost = bp_lost;
    proto->get_buffer = bp_get_buffer;
    proto->buffer_updated = bp_buffer_updated;
}

/* ------------------------------------------------------------------------ */

static void opts_init(goconn_options *o, goconn_loop *l, int port, const goconn_ssl_options *s) {
    static char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", port);
    CHECK_EQ_INT(goconn_options_init(o, GOCONN_OPTIONS_VERSION), 0);
    o->loop = l;
    o->host = "127.0.0.1";
    o->port = port_s;
    o->ssl = s;
    if (s) o->server_hostname = "localhost";
}

static void ssl_init(goconn_ssl_options *s) {
    CHECK_EQ_INT(goconn_ssl_options_init(s, GOCONN_SSL_OPTIONS_VERSION), 0);
    s->ca_file = cert_path("ca.pem");
}

/* serve starts the peer: it sends `bytes` of the pattern, then a clean end
 * (TLS: close_notify; TCP: FIN), reads until we close, then closes. */
static int serve(test_proc *peer, int tls, const char *bytes) {
    if (tls)
        return peer_serve(peer, "--tls", "--certdir", certs_dir(), "--mode", "close-notify-after", "--bytes", bytes,
                          NULL);
    return peer_serve(peer, "--mode", "close-notify-after", "--bytes", bytes, NULL);
}

static const char *mode_name(goconn_loop *l, int tls) {
    if (l) return tls ? "loop, TLS" : "loop, TCP";
    return tls ? "direct, TLS" : "direct, TCP";
}

/* wait_until waits for *flag, dispatching the loop or (direct) sleeping. */
static int wait_until(goconn_loop *l, volatile int *flag, int ms) {
    if (l) return loop_run(l, flag, ms);
    return wait_flag(flag, ms);
}

/* ------------------------------------------------------------------------ */

static void stream(goconn_loop *l, int tls, size_t bufsize) {
    printf("stream: %s, %zu-byte buffer\n", mode_name(l, tls), bufsize);
    test_proc peer;
    int port = serve(&peer, tls, TOTAL_TEXT);
    goconn_ssl_options s;
    if (tls) ssl_init(&s);
    goconn_options o;
    opts_init(&o, l, port, tls ? &s : NULL);
    goconn_protocol proto;
    protocol_v2(&proto);
    bp p;
    bp_init(&p, bufsize);
    p.copy = tls || !l;
    long long t0 = now_ms();
    goconn_request *req = NULL;
    CHECK_EQ_INT(goconn_open_connection(&o, &proto, bp_done, &p, &req), 0);
    if (!wait_until(l, &p.lost, 60000)) {
        fprintf(stderr, "not done: %zu of %u bytes, log %s\n", (size_t)p.received, TOTAL, p.log);
        exit(1);
    }
    printf("  %zu bytes in %lld ms: %lld get_buffer, %lld buffer_updated, hints over the size %lld\n",
           (size_t)p.received, now_ms() - t0, p.gets, p.updates, p.hint_over_size);
    CHECK_EQ_INT(p.ndone, 1);
    CHECK(!p.done_err.present);
    if (p.lost_err.present) fprintf(stderr, "connection_lost: %s\n", p.lost_err.message);
    CHECK(!p.lost_err.present);
    CHECK_STREQ(p.log, "MbEL");
    CHECK_EQ_INT(p.received, TOTAL);
    CHECK_EQ_INT(p.datas, 0);
    if (!p.copy) {
        /* Loop mode, plain TCP: read straight into the buffer, hinted with
         * what the kernel holds. The read that finds EOF (nothing held:
         * hint -1) takes a buffer it never fills. */
        CHECK(p.hint_minus1 >= 1);
        CHECK(p.hint_minus1 < p.gets);
        CHECK_EQ_INT(p.gets, p.updates + 1);
        /* 16 MiB in reads of at most 1 MiB: the kernel held more than a
         * 1000-byte buffer takes at least once. */
        if (bufsize == 1000) CHECK(p.hint_over_size > 0);
    } else {
        CHECK_EQ_INT(p.hint_minus1, 0);
        CHECK_EQ_INT(p.gets, p.updates);
        CHECK_EQ_INT(p.left, 0);
        /* Records (TLS) and reads (TCP) are bigger than 1000 bytes: one
         * chunk takes several buffers. */
        if (bufsize == 1000) CHECK(p.hint_over_size > 0);
    }
    if (bufsize == 1000) CHECK(p.updates >= (long long)(TOTAL / 1000));
    CHECK(proc_wait(&peer, PROC_ERR, "SENT 1 bytes=" TOTAL_TEXT, 5000));
    CHECK(proc_wait(&peer, PROC_ERR, "DONE 1", 5000));
    bp_free(&p);
    proc_stop(&peer);
}

/* ------------------------------------------------------------------------ */

static int calls; /* any callback of the half-set protocols */
static void *half_get(void *proto, ptrdiff_t h, size_t *size_out) {
    (void)proto, (void)h, (void)size_out;
    calls++;
    return NULL;
}
static void half_updated(void *proto, size_t n) { (void)proto, (void)n, calls++; }
static void half_made(void *proto, goconn_transport *t) { (void)proto, (void)t, calls++; }
static void half_lost(void *proto, const goconn_error *e) { (void)proto, (void)e, calls++; }
static void half_done(void *u, goconn_transport *t, void *proto, const goconn_error *e) {
    (void)u, (void)t, (void)proto, (void)e;
    calls++;
}

static void half_set(goconn_loop *l, int tls) {
    printf("half set: %s\n", mode_name(l, tls));
    test_proc peer;
    int port = serve(&peer, tls, SMALL_TEXT);
    goconn_ssl_options s;
    if (tls) ssl_init(&s);
    int handles = goconn_live_handles();
    for (int which = 0; which < 2; which++) {
        goconn_options o;
        opts_init(&o, l, port, tls ? &s : NULL);
        char errbuf[256];
        memset(errbuf, 'X', sizeof errbuf);
        o.errbuf = errbuf;
        o.errbuf_size = sizeof errbuf;
        goconn_protocol proto;
        CHECK_EQ_INT(goconn_protocol_init(&proto, GOCONN_PROTOCOL_VERSION), 0);
        proto.connection_made = half_made;
        proto.connection_lost = half_lost;
        if (which == 0)
            proto.get_buffer = half_get;
        else
            proto.buffer_updated = half_updated;
        goconn_request *req = (goconn_request *)&proto; /* overwritten with NULL */
        calls = 0;
        CHECK_EQ_INT(goconn_open_connection(&o, &proto, half_done, NULL, &req), -EINVAL);
        CHECK(req == NULL);
        CHECK_STREQ(errbuf, "goconn_protocol: get_buffer and buffer_updated must be set together");
        /* Nothing happens afterwards. */
        if (l)
            CHECK_EQ_INT(loop_pump(l, 100), 0);
        else
            sleep_ms(100);
        CHECK_EQ_INT(calls, 0);
        CHECK_EQ_INT(goconn_live_handles(), handles);
    }
    /* Nobody connected. */
    proc_pump(&peer, 0);
    CHECK(!proc_has(&peer, PROC_ERR, "ACCEPT"));
    proc_stop(&peer);
}

/* ------------------------------------------------------------------------ */

static void empty_buffer(goconn_loop *l, int tls, int how) {
    printf("empty buffer (%s): %s\n", how == 1 ? "NULL" : "size 0", mode_name(l, tls));
    test_proc peer;
    int port = serve(&peer, tls, SMALL_TEXT);
    goconn_ssl_options s;
    if (tls) ssl_init(&s);
    goconn_options o;
    opts_init(&o, l, port, tls ? &s : NULL);
    goconn_protocol proto;
    protocol_v2(&proto);
    bp p;
    bp_init(&p, 1000);
    p.empty = how;
    CHECK_EQ_INT(goconn_open_connection(&o, &proto, bp_done, &p, NULL), 0);
    CHECK(wait_until(l, &p.lost, 10000));
    CHECK_EQ_INT(p.ndone, 1);
    CHECK(!p.done_err.present);
    CHECK_STREQ(p.log, "ML");
    CHECK_EQ_INT(p.gets, 1);
    CHECK_EQ_INT(p.updates, 0);
    CHECK_EQ_INT(p.datas, 0);
    CHECK(p.lost_err.present);
    CHECK_EQ_INT(p.lost_err.code, GOCONN_EBUFFER);
    CHECK_STREQ(p.lost_err.message, "get_buffer() returned an empty buffer");
    CHECK_STREQ(goconn_strerror(GOCONN_EBUFFER), "get_buffer() returned an empty buffer");
    /* The socket was closed: the peer saw the end. */
    CHECK(proc_wait(&peer, PROC_ERR, "DONE 1", 10000));
    if (l) CHECK_EQ_INT(loop_pump(l, 50), 0);
    CHECK_EQ_INT(p.nlost, 1);
    bp_free(&p);
    proc_stop(&peer);
}

/* ------------------------------------------------------------------------ */

typedef struct v1 {
    volatile int lost;
    int nmade, neof, nlost;
    size_t received;
    int bad;
    test_error lost_err;
} v1;

static void v1_made(void *proto, goconn_transport *t) {
    (void)t;
    ((v1 *)proto)->nmade++;
}
static void v1_data(void *proto, const void *data, size_t len) {
    v1 *v = proto;
    const unsigned char *b = data;
    CHECK(len >= 1);
    for (size_t i = 0; i < len; i++)
        if (b[i] != (v->received + i) % 251) v->bad = 1;
    v->received += len;
}
static int v1_eof(void *proto) {
    ((v1 *)proto)->neof++;
    return 0;
}
static void v1_lost(void *proto, const goconn_error *e) {
    v1 *v = proto;
    test_error_save(&v->lost_err, e);
    v->nlost++;
    v->lost = 1;
}

static void version1(goconn_loop *l, int tls) {
    printf("version 1 protocol: %s\n", mode_name(l, tls));
    test_proc peer;
    int port = serve(&peer, tls, SMALL_TEXT);
    goconn_ssl_options s;
    if (tls) ssl_init(&s);
    goconn_options o;
    opts_init(&o, l, port, tls ? &s : NULL);

    /* A version 1 struct ends where get_buffer begins; here garbage
     * follows it, which the library must neither write nor read. */
    size_t v1size = offsetof(goconn_protocol, get_buffer);
    union {
        goconn_protocol p;
        unsigned char bytes[sizeof(goconn_protocol)];
    } u;
    memset(u.bytes, 0xA5, sizeof u.bytes);
    CHECK_EQ_INT(goconn_protocol_init(&u.p, 1), 0);
    CHECK_EQ_INT(u.p.version, 1);
    for (size_t i = sizeof u.p.version; i < v1size; i++) CHECK(u.bytes[i] == 0);
    for (size_t i = v1size; i < sizeof u.bytes; i++) CHECK(u.bytes[i] == 0xA5);
    u.p.connection_made = v1_made;
    u.p.data_received = v1_data;
    u.p.eof_received = v1_eof;
    u.p.connection_lost = v1_lost;

    v1 v;
    memset(&v, 0, sizeof v);
    CHECK_EQ_INT(goconn_open_connection(&o, &u.p, NULL, &v, NULL), 0);
    CHECK(wait_until(l, &v.lost, 10000));
    CHECK(!v.lost_err.present);
    CHECK_EQ_INT(v.nmade, 1);
    CHECK_EQ_INT(v.neof, 1);
    CHECK_EQ_INT(v.nlost, 1);
    CHECK_EQ_INT(v.received, 100000);
    CHECK(!v.bad);
    proc_stop(&peer);
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    CHECK_EQ_INT(goconn_loop_new(&loop), 0);
    certs_dir();
    warm_up(loop);
    int fds = count_open_fds();

    CHECK_STREQ(goconn_strerror(GOCONN_EBUFFER), "get_buffer() returned an empty buffer");

    for (int tls = 0; tls < 2; tls++) {
        for (int m = 0; m < 2; m++) {
            goconn_loop *l = m == 0 ? loop : NULL;
            stream(l, tls, 1000);
            stream(l, tls, 1u << 20);
            half_set(l, tls);
            empty_buffer(l, tls, 1);
            empty_buffer(l, tls, 2);
            version1(l, tls);
        }
    }

    CHECK(wait_live_handles(1, 5000)); /* the loop */
    CHECK(wait_fds(fds, 5000));
    CHECK_EQ_INT(goconn_loop_free(loop), 0);
    CHECK(wait_live_handles(0, 5000));
    printf("ok\n");
    return 0;
}
