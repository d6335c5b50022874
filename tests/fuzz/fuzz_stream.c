/* fuzz_stream.c - the stream fuzzer.
 *
 * goconn connects (plain TCP, or TLS without verification) to a loopback
 * peer that this harness drives itself, in loop mode on one thread. The
 * input is a script: the peer sends bytes from the input, half-closes,
 * closes or resets; the client writes, pauses and resumes reading, writes
 * EOF, closes or aborts; the loop is dispatched in between. For TLS the
 * peer's bytes are raw records, so crypto/tls parses whatever the input
 * holds.
 *
 * It asserts asyncio's callback order (connection_made, data_received*,
 * eof_received?, connection_lost exactly once and last) and, for plain TCP,
 * that every byte the peer sent before a clean close arrives, in order,
 * unless the client closed or aborted first. */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz_common.h"

static goconn_loop *loop;
static int listen_fd, listen_port;

static void init(void) {
    if (loop) return;
    FUZZ_CHECK(goconn_loop_new(&loop) == 0);
    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    FUZZ_CHECK(listen_fd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    FUZZ_CHECK(bind(listen_fd, (struct sockaddr *)&sin, sizeof sin) == 0);
    FUZZ_CHECK(listen(listen_fd, 64) == 0);
    socklen_t sl = sizeof sin;
    FUZZ_CHECK(getsockname(listen_fd, (struct sockaddr *)&sin, &sl) == 0);
    listen_port = ntohs(sin.sin_port);
}

typedef struct {
    int made, eof, done_ok, order_broken;
    atomic_int lost, done;
    goconn_transport *t;
    unsigned char *got;
    size_t ngot, capgot;
} state;

static void made(void *p, goconn_transport *t) {
    state *s = p;
    if (s->made || s->lost) s->order_broken = 1;
    s->made = 1;
    s->t = t;
}
static void data(void *p, const void *d, size_t n) {
    state *s = p;
    if (!s->made || s->eof || s->lost || n == 0 || n > 256 * 1024) s->order_broken = 1;
    if (s->ngot + n > s->capgot) {
        s->capgot = (s->ngot + n) * 2;
        s->got = realloc(s->got, s->capgot);
        FUZZ_CHECK(s->got);
    }
    memcpy(s->got + s->ngot, d, n);
    s->ngot += n;
}
static int eof(void *p) {
    state *s = p;
    if (!s->made || s->eof || s->lost) s->order_broken = 1;
    s->eof = 1;
    return 1; /* keep the write side open: the script decides */
}
static void lost(void *p, const goconn_error *e) {
    state *s = p;
    (void)e;
    if (!s->made || s->lost) s->order_broken = 1;
    s->lost = 1;
}
static void done(void *u, goconn_transport *t, void *p, const goconn_error *e) {
    state *s = u;
    (void)p;
    s->done = 1;
    s->done_ok = e == NULL && t != NULL;
}

static void dispatch_a_little(void) {
    struct pollfd pf = {goconn_loop_fd(loop), POLLIN, 0};
    poll(&pf, 1, 1);
    FUZZ_CHECK(goconn_loop_dispatch(loop, 0) >= 0);
}

/* What the peer has sent, to compare with what arrived. */
static unsigned char *sent_buf;
static size_t sent_cap;

/* A paused client does not drain: then the peer gives up at once rather
 * than waiting (slow inputs are few executions per second). */
static void peer_send(int fd, const uint8_t *p, size_t n, size_t *sent, int client_paused) {
    int stalls = 0;
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k < 0) {
            if (errno == EAGAIN && !client_paused && ++stalls < 50) {
                dispatch_a_little(); /* let goconn drain before sending more */
                continue;
            }
            return; /* the client has gone, or is not reading (paused) */
        }
        if (*sent + (size_t)k > sent_cap) {
            sent_cap = (*sent + (size_t)k) * 2;
            sent_buf = realloc(sent_buf, sent_cap);
            FUZZ_CHECK(sent_buf);
        }
        memcpy(sent_buf + *sent, p, (size_t)k);
        *sent += (size_t)k;
        p += k;
        n -= (size_t)k;
    }
}

/* Read and drop what the client has sent, without blocking. */
static void drain_peer(int fd) {
    char sink[65536];
    while (recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0) {
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *in_data, size_t size) {
    init();
    fuzz_input in = {in_data, size, 0};
    int tls = fz_pick(&in, 4) == 0;
    state s;
    memset(&s, 0, sizeof s);
    atomic_init(&s.lost, 0);
    atomic_init(&s.done, 0);

    goconn_options o;
    FUZZ_CHECK(goconn_options_init(&o, GOCONN_OPTIONS_VERSION) == 0);
    char port[16];
    snprintf(port, sizeof port, "%d", listen_port);
    o.loop = loop;
    o.host = "127.0.0.1";
    o.port = port;
    goconn_ssl_options ssl;
    if (tls) {
        goconn_ssl_options_init(&ssl, GOCONN_SSL_OPTIONS_VERSION);
        ssl.verify_mode = GOCONN_VERIFY_NONE;
        o.ssl = &ssl;
        o.server_hostname = "";
        o.has_ssl_handshake_timeout = 1;
        /* No input completes a handshake (the keys are random), so a
         * short timeout only bounds how long the peer's silence lasts. */
        o.ssl_handshake_timeout = 0.05;
        o.has_ssl_shutdown_timeout = 1;
        o.ssl_shutdown_timeout = 0.05;
    }
    goconn_protocol p = GOCONN_PROTOCOL_INIT;
    p.connection_made = made;
    p.data_received = data;
    p.eof_received = eof;
    p.connection_lost = lost;
    FUZZ_CHECK(goconn_open_connection(&o, &p, done, &s, NULL) == 0);
    int peer = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
    FUZZ_CHECK(peer >= 0);

    size_t sent = 0;
    int peer_closed = 0, peer_reset = 0, client_closed = 0, paused = 0, peer_shut = 0;
    /* TLS: the handshake only ends once the peer's bytes (records) are read,
     * so the script runs while the request is pending. */
    while (in.pos < in.size && !s.lost) {
        if (!s.done && !tls) {
            FUZZ_CHECK(fz_loop_run(loop, &s.done, 2000));
            continue;
        }
        size_t n;
        const uint8_t *b;
        switch (fz_pick(&in, 10)) {
        case 0: case 1: case 2:
            if (!peer_shut && !peer_closed) {
                b = fz_bytes(&in, 65536, &n);
                peer_send(peer, b, n, &sent, paused);
            }
            break;
        case 3:
            if (!peer_shut && !peer_closed) {
                shutdown(peer, SHUT_WR);
                peer_shut = 1;
            }
            break;
        case 4:
            if (!peer_closed && fz_bool(&in)) { /* reset */
                struct linger lg = {1, 0};
                setsockopt(peer, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
                peer_reset = 1;
            }
            if (!peer_closed) {
                close(peer);
                peer_closed = 1;
            }
            break;
        case 5:
            if (s.done_ok) {
                b = fz_bytes(&in, 65536, &n);
                int rc = goconn_transport_write(s.t, b, n);
                FUZZ_CHECK(rc == 0 || rc == GOCONN_ECLOSING || rc == GOCONN_EWRITEEOF || rc == -EBADF);
            }
            break;
        case 6:
            if (s.done_ok && !s.lost) {
                if (fz_bool(&in)) {
                    FUZZ_CHECK(goconn_transport_pause_reading(s.t) == 0);
                    paused = 1;
                } else {
                    FUZZ_CHECK(goconn_transport_resume_reading(s.t) == 0);
                    paused = 0;
                }
            }
            break;
        case 7:
            if (s.done_ok && !s.lost) {
                int rc = goconn_transport_write_eof(s.t);
                /* TLS has no half-close (asyncio: NotImplementedError); plain TCP
                 * gives 0, or shutdown(2)'s errno after a reset. */
                FUZZ_CHECK(tls ? rc == -ENOTSUP : (rc == 0 || (rc < 0 && rc > -4096)));
            }
            break;
        case 8:
            if (s.done_ok && !s.lost && fz_pick(&in, 4) == 0) {
                if (fz_bool(&in)) goconn_transport_abort(s.t);
                else goconn_transport_close(s.t);
                client_closed = 1;
            }
            break;
        default:
            for (int k = fz_pick(&in, 4); k >= 0; k--) dispatch_a_little();
        }
    }
    /* The end, as a user would wind down: resume reading, the peer ends
     * its side, the client sees EOF (or the reset) and closes, and the peer
     * reads what the client flushes until the close reaches it. */
    if (!peer_closed && !peer_shut) { /* also ends a pending TLS handshake */
        shutdown(peer, SHUT_WR);
        peer_shut = 1;
    }
    if (!s.done) FUZZ_CHECK(fz_loop_run(loop, &s.done, 3000));
    if (s.done_ok && !s.lost && paused) goconn_transport_resume_reading(s.t);
    if (s.done_ok) {
        long long deadline = fz_now_ms() + 3000;
        while (!s.eof && !s.lost && fz_now_ms() < deadline) {
            if (!peer_closed) drain_peer(peer);
            dispatch_a_little();
        }
        FUZZ_CHECK(s.eof || s.lost); /* the peer's end always reaches the client */
        if (!s.lost && !client_closed) {
            goconn_transport_close(s.t);
            client_closed = 1;
        }
        deadline = fz_now_ms() + 3000;
        while (!s.lost && fz_now_ms() < deadline) {
            if (!peer_closed) drain_peer(peer);
            dispatch_a_little();
        }
        FUZZ_CHECK(s.lost); /* close() flushes to a reading peer, then ends */
    }
    if (!peer_closed) close(peer);
    FUZZ_CHECK(s.done);
    FUZZ_CHECK(!s.order_broken);
    if (s.done_ok) FUZZ_CHECK(s.made && s.lost);
    else FUZZ_CHECK(!s.made && !s.lost);
    /* Plain TCP: every byte sent before a clean close arrived, in order
     * (the peer only ever sends input bytes, so compare lengths and
     * rebuild nothing: a short or reordered delivery shows as a gap). */
    if (!tls && s.done_ok && !peer_reset && !client_closed && s.eof) FUZZ_CHECK(s.ngot == sent);
    if (!tls) {
        FUZZ_CHECK(s.ngot <= sent);
        FUZZ_CHECK(s.ngot == 0 || memcmp(s.got, sent_buf, s.ngot) == 0); /* in order, unchanged */
    }
    free(s.got);
    return 0;
}
