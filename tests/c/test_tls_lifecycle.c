/* The TLS lifecycle's edges, against the goconn-peer (tests/peer):
 *
 * - a server that never answers the ClientHello, with ssl_handshake_timeout
 *   0.3: GOCONN_EHANDSHAKETIMEOUT with asyncio's text, after 0.3 s, no
 *   protocol callback, the socket closed (loop and direct mode);
 * - a cancel while the handshake stalls: -ECANCELED, no callbacks, fds back
 *   (loop and direct mode);
 * - a server that closes after reading the ClientHello: -ECONNRESET with
 *   errnum 0 and an empty message (asyncio's bare ConnectionResetError);
 * - a server that never answers our close_notify, with
 *   ssl_shutdown_timeout 0.3: connection_lost(GOCONN_ETIMEOUT "SSL shutdown
 *   timed out") and no eof_received;
 * - a server that resets the connection after sending: the data, then
 *   connection_lost(-ECONNRESET);
 * - abort: connection_lost(NULL) at once, and no close_notify;
 * - TLS over an adopted socket;
 * - invalid TLS options: struct versions (GOCONN_EVERSION), out-of-range
 *   values (-EINVAL with the text in errbuf), a NULL ALPN array with a count,
 *   and then nothing else happens; non-positive timeouts fail in on_done
 *   after the TCP connect (at once with an adopted socket); missing files
 *   fail in on_done with the OSError. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testutil.h"

static goconn_loop *loop;
static int base_handles;

static void ssl_init(goconn_ssl_options *s) {
    CHECK_EQ_INT(goconn_ssl_options_init(s, GOCONN_SSL_OPTIONS_VERSION), 0);
    s->ca_file = cert_path("ca.pem");
}

static void opts_init(goconn_options *o, goconn_loop *l, int port, const goconn_ssl_options *s) {
    static char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", port);
    CHECK_EQ_INT(goconn_options_init(o, GOCONN_OPTIONS_VERSION), 0);
    o->loop = l;
    o->host = "127.0.0.1";
    o->port = port_s;
    o->ssl = s;
    o->server_hostname = "localhost";
}

static void peer_saw_close(test_proc *peer, int id) {
    char fin[32], reset[32];
    snprintf(fin, sizeof fin, "EOF %d fin\n", id);
    snprintf(reset, sizeof reset, "EOF %d reset\n", id);
    long long deadline = now_ms() + 5000;
    while (!proc_has(peer, PROC_ERR, fin) && !proc_has(peer, PROC_ERR, reset)) {
        if (now_ms() > deadline) {
            fprintf(stderr, "peer log:\n%s\nno end of stream on connection %d\n", peer->err, id);
            exit(1);
        }
        proc_pump(peer, 20);
    }
}

/* An error that is no ssl exception: no errno, no SSL fields. */
static void check_plain_error(const test_error *e, int code, const char *message) {
    CHECK(e->present);
    CHECK_EQ_INT(e->version, GOCONN_ERROR_VERSION);
    CHECK_EQ_INT(e->code, code);
    CHECK_EQ_INT(e->errnum, 0);
    CHECK_STREQ(e->message, message);
    CHECK(!e->has_strerror);
    CHECK(!e->has_reason);
    CHECK(!e->has_library);
    CHECK_EQ_INT(e->verify_code, 0);
    CHECK(!e->has_verify_message);
}

/* wait_failed waits for on_done with an error, then checks that nothing
 * else comes. */
static void wait_failed(goconn_loop *l, rec *r) {
    CHECK(rec_wait(l, &r->done, 10000));
    if (l) {
        CHECK_EQ_INT(loop_pump(l, 50), 0);
    } else {
        CHECK(wait_live_handles(base_handles, 5000));
        sleep_ms(50);
    }
    CHECK(r->done_err.present);
    CHECK_STREQ(rec_log(r), "F");
    CHECK_EQ_INT(r->ndone, 1);
}

/* ------------------------------------------------------------------------ */
/* Handshake                                                                */
/* ------------------------------------------------------------------------ */

static void handshake_timeout(goconn_loop *l) {
    printf("handshake timeout, %s mode\n", l ? "loop" : "direct");
    test_proc peer;
    int port = peer_serve(&peer, "--mode", "stall-handshake", NULL);
    int fds = count_open_fds();
    goconn_ssl_options s;
    ssl_init(&s);
    goconn_options o;
    opts_init(&o, l, port, &s);
    o.has_ssl_handshake_timeout = 1;
    o.ssl_handshake_timeout = 0.3;
    rec r;
    rec_init(&r, 0);
    long long t0 = now_ms();
    CHECK_EQ_INT(rec_open(&r, &o, NULL), 0);
    CHECK(rec_wait(l, &r.done, 10000));
    long long elapsed = now_ms() - t0;
    printf("  on_done after %lld ms\n", elapsed);
    CHECK(elapsed >= 300);
    CHECK(elapsed < 5000);
    wait_failed(l, &r);
    check_plain_error(&r.done_err, GOCONN_EHANDSHAKETIMEOUT,
                      "SSL handshake is taking longer than 0.3 seconds: aborting the connection");
    CHECK(wait_fds(fds, 2000));
    CHECK(proc_wait(&peer, PROC_ERR, "ACCEPT 1 ", 5000));
    peer_saw_close(&peer, 1);
    rec_free(&r);
    proc_stop(&peer);
}

static void cancel_stalled_handshake(goconn_loop *l) {
    printf("cancel during the handshake, %s mode\n", l ? "loop" : "direct");
    test_proc peer;
    int port = peer_serve(&peer, "--mode", "stall-handshake", NULL);
    int fds = count_open_fds();
    goconn_ssl_options s;
    ssl_init(&s);
    goconn_options o;
    opts_init(&o, l, port, &s);
    rec r;
    rec_init(&r, 0);
    goconn_request *req = NULL;
    CHECK_EQ_INT(rec_open(&r, &o, &req), 0);
    CHECK(req != NULL);
    /* The TCP connection is up.  In loop mode the dispatch that sees the
     * connect finish starts the handshake (and calls nothing: the
     * ClientHello goes out from a library thread). */
    CHECK(proc_wait(&peer, PROC_ERR, "ACCEPT 1 ", 5000));
    if (l) CHECK(loop_pump(l, 100) <= 1);
    else sleep_ms(100);
    CHECK(!r.done);
    CHECK_EQ_INT(goconn_request_cancel(req), 0);
    wait_failed(l, &r);
    CHECK_EQ_INT(r.done_err.code, -ECANCELED);
    CHECK_EQ_INT(r.done_err.errnum, 0);
    CHECK(!r.done_err.has_reason);
    CHECK_EQ_INT(goconn_request_cancel(req), -EBADF);
    CHECK(wait_fds(fds, 2000));
    peer_saw_close(&peer, 1);
    rec_free(&r);
    proc_stop(&peer);
}

static void closed_mid_handshake(void) {
    printf("server closes mid-handshake\n");
    test_proc peer;
    int port = peer_serve(&peer, "--mode", "close-mid-handshake", NULL);
    int fds = count_open_fds();
    goconn_ssl_options s;
    ssl_init(&s);
    goconn_options o;
    opts_init(&o, loop, port, &s);
    rec r;
    rec_init(&r, 0);
    CHECK_EQ_INT(rec_open(&r, &o, NULL), 0);
    wait_failed(loop, &r);
    check_plain_error(&r.done_err, -ECONNRESET, "");
    CHECK(wait_fds(fds, 2000));
    /* The peer did read a ClientHello (a handshake record, type 22). */
    CHECK(proc_wait(&peer, PROC_ERR, "HELLO 1 record type=22 ", 5000));
    rec_free(&r);
    proc_stop(&peer);
}

/* ------------------------------------------------------------------------ */
/* After the handshake                                                      */
/* ------------------------------------------------------------------------ */

static void connect_and_echo(goconn_loop *l, rec *r, const goconn_options *o) {
    CHECK_EQ_INT(rec_open(r, o, NULL), 0);
    CHECK(rec_wait(l, &r->done, 10000));
    if (r->done_err.present) fprintf(stderr, "on_done error: %s\n", r->done_err.message);
    CHECK(!r->done_err.present);
    CHECK_EQ_INT(goconn_transport_write(r->transport, "ping", 4), 0);
    CHECK(rec_wait_bytes(l, r, 4, 10000));
    CHECK(memcmp(r->data, "ping", 4) == 0);
}

static void shutdown_timeout(void) {
    printf("shutdown timeout\n");
    test_proc peer;
    int port = peer_serve(&peer, "--tls", "--certdir", certs_dir(), "--mode", "no-close-notify", NULL);
    int fds = count_open_fds();
    goconn_ssl_options s;
    ssl_init(&s);
    goconn_options o;
    opts_init(&o, loop, port, &s);
    o.has_ssl_shutdown_timeout = 1;
    o.ssl_shutdown_timeout = 0.3;
    rec r;
    rec_init(&r, 16);
    connect_and_echo(loop, &r, &o);
    long long t0 = now_ms();
    CHECK_EQ_INT(goconn_transport_close(r.transport), 0);
    CHECK(rec_wait(loop, &r.lost, 10000));
    long long elapsed = now_ms() - t0;
    printf("  connection_lost after %lld ms\n", elapsed);
    CHECK(elapsed >= 300);
    CHECK(elapsed < 5000);
    CHECK_STREQ(rec_log(&r), "MOdL"); /* no eof_received */
    check_plain_error(&r.lost_err, GOCONN_ETIMEOUT, "SSL shutdown timed out");
    CHECK_EQ_INT(loop_pump(loop, 50), 0);
    CHECK(wait_fds(fds, 2000));
    /* The peer got our close_notify, then the TCP close. */
    CHECK(proc_wait(&peer, PROC_ERR, "EOF 1 notify\n", 5000));
    peer_saw_close(&peer, 1);
    rec_free(&r);
    proc_stop(&peer);
}

static void reset_after_data(void) {
    printf("server resets after data\n");
    test_proc peer;
    int port = peer_serve(&peer, "--tls", "--certdir", certs_dir(), "--mode", "reset-after", "--bytes", "5000", NULL);
    int fds = count_open_fds();
    goconn_ssl_options s;
    ssl_init(&s);
    goconn_options o;
    opts_init(&o, loop, port, &s);
    rec r;
    rec_init(&r, 5000);
    CHECK_EQ_INT(rec_open(&r, &o, NULL), 0);
    CHECK(rec_wait(loop, &r.lost, 10000));
    CHECK_STREQ(rec_log(&r), "MOdL");
    CHECK_EQ_INT(r.received, 5000);
    for (size_t i = 0; i < 5000; i++) CHECK_EQ_INT(r.data[i], i % 251);
    CHECK(r.lost_err.present);
    CHECK_EQ_INT(r.lost_err.code, -ECONNRESET);
    CHECK_EQ_INT(r.lost_err.errnum, ECONNRESET);
    CHECK_STREQ(r.lost_err.message, "[Errno 104] Connection reset by peer");
    CHECK_STREQ(r.lost_err.strerror_, "Connection reset by peer");
    CHECK(!r.lost_err.has_reason);
    CHECK(wait_fds(fds, 2000));
    rec_free(&r);
    proc_stop(&peer);
}

/* abort: connection_lost(NULL) at once, no close_notify (the peer sees the
 * TCP stream end without one). */
static void abort_tls(void) {
    printf("abort\n");
    test_proc peer;
    int port = peer_serve(&peer, "--tls", "--certdir", certs_dir(), NULL);
    int fds = count_open_fds();
    goconn_ssl_options s;
    ssl_init(&s);
    goconn_options o;
    opts_init(&o, loop, port, &s);
    rec r;
    rec_init(&r, 16);
    connect_and_echo(loop, &r, &o);
    CHECK_EQ_INT(goconn_transport_abort(r.transport), 1);
    CHECK_EQ_INT(goconn_transport_is_closing(r.transport), 1);
    CHECK_EQ_INT(goconn_transport_write(r.transport, "x", 1), GOCONN_ECLOSING);
    CHECK(rec_wait(loop, &r.lost, 5000));
    CHECK(!r.lost_err.present);
    CHECK_STREQ(rec_log(&r), "MOdL");
    CHECK(wait_fds(fds, 2000));
    peer_saw_close(&peer, 1); /* "fin": no close_notify came */
    CHECK(!proc_has(&peer, PROC_ERR, "EOF 1 notify"));
    rec_free(&r);
    proc_stop(&peer);
}

/* connected_socket makes a blocking-connected, then non-blocking, TCP
 * socket to 127.0.0.1:port. */
static int connected_socket(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons((uint16_t)port);
    CHECK_EQ_INT(connect(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    CHECK_EQ_INT(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
    return fd;
}

static void adopted_socket(void) {
    printf("adopted socket\n");
    test_proc peer;
    int port = peer_serve(&peer, "--tls", "--certdir", certs_dir(), NULL);
    int fds = count_open_fds();
    goconn_ssl_options s;
    ssl_init(&s);
    goconn_options o;
    CHECK_EQ_INT(goconn_options_init(&o, GOCONN_OPTIONS_VERSION), 0);
    o.loop = loop;
    o.has_sock = 1;
    o.sock = connected_socket(port);
    o.ssl = &s;
    o.server_hostname = "localhost";
    rec r;
    rec_init(&r, 16);
    connect_and_echo(loop, &r, &o);
    goconn_tls_info i;
    memset(&i, 0, sizeof i);
    i.version = GOCONN_TLS_INFO_VERSION;
    CHECK_EQ_INT(goconn_transport_get_tls_info(r.transport, &i), 0);
    CHECK_STREQ(i.server_hostname, "localhost");
    CHECK_EQ_INT(i.verified, 1);
    CHECK_EQ_INT(goconn_transport_get_fd(r.transport), o.sock);
    CHECK_EQ_INT(goconn_transport_close(r.transport), 0);
    CHECK(rec_wait(loop, &r.lost, 10000));
    CHECK(!r.lost_err.present);
    CHECK_STREQ(rec_log(&r), "MOdEL");
    CHECK(wait_fds(fds, 2000)); /* the library closed the adopted socket */
    rec_free(&r);
    proc_stop(&peer);
}

/* ------------------------------------------------------------------------ */
/* Invalid options                                                          */
/* ------------------------------------------------------------------------ */

static void stray_done(void *u, goconn_transport *t, void *p, const goconn_error *e) {
    (void)u, (void)t, (void)p, (void)e;
    fprintf(stderr, "on_done after a synchronous error\n");
    exit(1);
}

/* sync_fail: goconn_open_connection fails at once with code and errbuf
 * text (NULL: not checked), and nothing follows. */
static void sync_fail(goconn_options *o, int code, const char *text) {
    char errbuf[256] = "untouched";
    o->errbuf = errbuf;
    o->errbuf_size = sizeof errbuf;
    goconn_protocol p = GOCONN_PROTOCOL_INIT;
    goconn_request *req = (goconn_request *)&req;
    CHECK_EQ_INT(goconn_open_connection(o, &p, stray_done, NULL, &req), code);
    CHECK(req == NULL);
    if (text) CHECK_STREQ(errbuf, text);
    CHECK_EQ_INT(loop_pump(loop, 20), 0);
    CHECK_EQ_INT(goconn_live_handles(), base_handles);
}

static void invalid_options(void) {
    printf("invalid options\n");
    goconn_ssl_options s;
    CHECK_EQ_INT(goconn_ssl_options_init(NULL, GOCONN_SSL_OPTIONS_VERSION), -EINVAL);
    CHECK_EQ_INT(goconn_ssl_options_init(&s, 0), GOCONN_EVERSION);
    CHECK_EQ_INT(goconn_ssl_options_init(&s, 99), GOCONN_EVERSION);
    memset(&s, 0x5a, sizeof s);
    CHECK_EQ_INT(goconn_ssl_options_init(&s, GOCONN_SSL_OPTIONS_VERSION), 0);
    CHECK_EQ_INT(s.version, GOCONN_SSL_OPTIONS_VERSION);
    CHECK(s.ca_file == NULL && s.alpn_protocols == NULL && s.verify_mode == 0 && s.no_session_cache == 0);

    goconn_options o;
    /* The struct's version. */
    opts_init(&o, loop, 1, &s);
    s.version = 0;
    sync_fail(&o, GOCONN_EVERSION, NULL);
    s.version = 99;
    sync_fail(&o, GOCONN_EVERSION, NULL);

    /* Values out of range. */
    ssl_init(&s);
    s.verify_mode = 2;
    sync_fail(&o, -EINVAL, "ssl.verify_mode must be GOCONN_VERIFY_REQUIRED or GOCONN_VERIFY_NONE");
    ssl_init(&s);
    s.verify_mode = -1;
    sync_fail(&o, -EINVAL, "ssl.verify_mode must be GOCONN_VERIFY_REQUIRED or GOCONN_VERIFY_NONE");
    ssl_init(&s);
    s.check_hostname = 2;
    sync_fail(&o, -EINVAL, "ssl.check_hostname must be GOCONN_CHECK_HOSTNAME_ON or _OFF");
    ssl_init(&s);
    s.system_roots = 3;
    sync_fail(&o, -EINVAL, "ssl.system_roots must be GOCONN_SYSTEM_ROOTS_AUTO, _ON or _OFF");
    const char *range = "ssl.min_version and max_version must be 0 or GOCONN_TLS_1_0 to GOCONN_TLS_1_3";
    ssl_init(&s);
    s.min_version = 0x0300; /* SSL 3.0 */
    sync_fail(&o, -EINVAL, range);
    ssl_init(&s);
    s.min_version = 12;
    sync_fail(&o, -EINVAL, range);
    ssl_init(&s);
    s.max_version = 0x0305;
    sync_fail(&o, -EINVAL, range);
    ssl_init(&s);
    s.max_version = -1;
    sync_fail(&o, -EINVAL, range);

    /* ALPN arrays. */
    ssl_init(&s);
    s.alpn_protocols = NULL;
    s.alpn_protocols_count = 2;
    sync_fail(&o, -EINVAL, "ssl.alpn_protocols is NULL or has more than 64 entries");
    const char *with_null[] = {"h2", NULL};
    s.alpn_protocols = with_null;
    s.alpn_protocols_count = 2;
    sync_fail(&o, -EINVAL, "ssl.alpn_protocols holds a NULL");
    const char *empty[] = {""};
    s.alpn_protocols = empty;
    s.alpn_protocols_count = 1;
    sync_fail(&o, -EINVAL, "ALPN protocols must be 1 to 255 bytes long");
    char longname[300];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    const char *too_long[] = {longname};
    s.alpn_protocols = too_long;
    sync_fail(&o, -EINVAL, "ALPN protocols must be 1 to 255 bytes long");

    /* asyncio's own checks. */
    ssl_init(&s);
    opts_init(&o, loop, 1, NULL);
    sync_fail(&o, -EINVAL, "server_hostname is only meaningful with ssl");
    opts_init(&o, loop, 1, NULL);
    o.server_hostname = NULL;
    o.has_ssl_handshake_timeout = 1;
    o.ssl_handshake_timeout = 1;
    sync_fail(&o, -EINVAL, "ssl_handshake_timeout is only meaningful with ssl");
    opts_init(&o, loop, 1, NULL);
    o.server_hostname = NULL;
    o.has_ssl_shutdown_timeout = 1;
    o.ssl_shutdown_timeout = 1;
    sync_fail(&o, -EINVAL, "ssl_shutdown_timeout is only meaningful with ssl");
}

/* A non-positive timeout fails only once the TCP connection is up, as in
 * asyncio (the SSL protocol checks it when it is made). */
static void bad_timeout_after_connect(int id, test_proc *peer, int port, int handshake, double value,
                                      const char *message) {
    int fds = count_open_fds();
    goconn_ssl_options s;
    ssl_init(&s);
    goconn_options o;
    opts_init(&o, loop, port, &s);
    if (handshake) {
        o.has_ssl_handshake_timeout = 1;
        o.ssl_handshake_timeout = value;
    } else {
        o.has_ssl_shutdown_timeout = 1;
        o.ssl_shutdown_timeout = value;
    }
    char errbuf[64] = "untouched";
    o.errbuf = errbuf;
    o.errbuf_size = sizeof errbuf;
    rec r;
    rec_init(&r, 0);
    CHECK_EQ_INT(rec_open(&r, &o, NULL), 0);
    CHECK_STREQ(errbuf, "untouched");
    wait_failed(loop, &r);
    check_plain_error(&r.done_err, -EINVAL, message);
    CHECK(wait_fds(fds, 2000));
    char accept[32];
    snprintf(accept, sizeof accept, "ACCEPT %d ", id);
    CHECK(proc_wait(peer, PROC_ERR, accept, 5000));
    peer_saw_close(peer, id);
    rec_free(&r);
}

static void bad_timeouts(void) {
    printf("bad timeouts\n");
    test_proc peer;
    int port = peer_serve(&peer, "--tls", "--certdir", certs_dir(), NULL);
    int id = 0;
    bad_timeout_after_connect(++id, &peer, port, 1, 0, "ssl_handshake_timeout should be a positive number, got 0");
    bad_timeout_after_connect(++id, &peer, port, 1, -0.5,
                              "ssl_handshake_timeout should be a positive number, got -0.5");
    bad_timeout_after_connect(++id, &peer, port, 0, -1, "ssl_shutdown_timeout should be a positive number, got -1");
    bad_timeout_after_connect(++id, &peer, port, 0, 0, "ssl_shutdown_timeout should be a positive number, got 0");

    /* With an adopted socket: at once, and the socket stays the caller's. */
    goconn_ssl_options s;
    ssl_init(&s);
    goconn_options o;
    CHECK_EQ_INT(goconn_options_init(&o, GOCONN_OPTIONS_VERSION), 0);
    o.loop = loop;
    o.has_sock = 1;
    o.sock = connected_socket(port);
    o.ssl = &s;
    o.server_hostname = "localhost";
    o.has_ssl_handshake_timeout = 1;
    o.ssl_handshake_timeout = 0;
    sync_fail(&o, -EINVAL, "ssl_handshake_timeout should be a positive number, got 0");
    CHECK(fcntl(o.sock, F_GETFD) >= 0);
    o.has_ssl_handshake_timeout = 0;
    o.server_hostname = NULL;
    sync_fail(&o, -EINVAL, "You must set server_hostname when using ssl without a host");
    CHECK(fcntl(o.sock, F_GETFD) >= 0);
    close(o.sock);
    proc_stop(&peer);
}

/* Files are read when the connection is made: after the TCP connect. */
static void missing_files(void) {
    printf("missing files\n");
    test_proc peer;
    int port = peer_serve(&peer, "--tls", "--certdir", certs_dir(), NULL);
    goconn_ssl_options s;
    goconn_options o;
    rec r;
    const char *missing = "/nonexistent/goconn/ca.pem";
    for (int id = 1; id <= 2; id++) {
        int fds = count_open_fds();
        ssl_init(&s);
        if (id == 1) {
            s.ca_file = missing;
        } else {
            s.cert_file = missing;
        }
        opts_init(&o, loop, port, &s);
        rec_init(&r, 0);
        CHECK_EQ_INT(rec_open(&r, &o, NULL), 0);
        wait_failed(loop, &r);
        CHECK_EQ_INT(r.done_err.code, -ENOENT);
        CHECK_EQ_INT(r.done_err.errnum, ENOENT);
        CHECK_STREQ(r.done_err.message, "[Errno 2] No such file or directory");
        CHECK_STREQ(r.done_err.strerror_, "No such file or directory");
        CHECK(wait_fds(fds, 2000));
        peer_saw_close(&peer, id);
        rec_free(&r);
    }
    proc_stop(&peer);
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    CHECK_EQ_INT(goconn_loop_new(&loop), 0);
    base_handles = goconn_live_handles();
    certs_dir();

    warm_up(loop); /* before any fd count */
    adopted_socket();
    handshake_timeout(loop);
    handshake_timeout(NULL);
    cancel_stalled_handshake(loop);
    cancel_stalled_handshake(NULL);
    closed_mid_handshake();
    shutdown_timeout();
    reset_after_data();
    abort_tls();
    invalid_options();
    bad_timeouts();
    missing_files();

    CHECK_EQ_INT(goconn_loop_free(loop), 0);
    CHECK(wait_live_handles(0, 5000));
    CHECK_EQ_INT(goconn_live_handles(), 0);
    printf("ok\n");
    return 0;
}
