/* TLS against `openssl s_server`: a second, independent implementation
 * beside the goconn-peer. s_server runs without -quiet (it prints its port
 * on an ACCEPT line, then what it negotiated and what it received) with its
 * stdin kept open: what we write there it sends, and closing it makes
 * s_server end the connection with a close_notify.
 *
 * - a verified TLS 1.3 connection: tls_info (cipher pinned with
 *   -ciphersuites), the peer certificate, data both ways, our close
 *   answered by s_server's close_notify (made, on_done, data, eof, lost);
 * - s_server's close_notify first (eof_received, then connection_lost(NULL));
 * - TLS 1.2 with a pinned ECDHE-ECDSA suite, ALPN (server preference), TLS
 *   1.3 resumption;
 * - a required client certificate: none (TLS 1.3: connection_lost after the
 *   handshake; TLS 1.2: on_done fails), cert_file/key_file, the encrypted
 *   key;
 * - a self-signed certificate (18) and a name mismatch (62).
 * Skipped (with a message) when CMake found no openssl. */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

static goconn_loop *loop;
static int fds;

static void ssl_init(goconn_ssl_options *s) {
    CHECK_EQ_INT(goconn_ssl_options_init(s, GOCONN_SSL_OPTIONS_VERSION), 0);
    s->ca_file = cert_path("ca.pem");
}

static void opts_init(goconn_options *o, int port, const goconn_ssl_options *s) {
    static char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", port);
    CHECK_EQ_INT(goconn_options_init(o, GOCONN_OPTIONS_VERSION), 0);
    o->loop = loop;
    o->host = "127.0.0.1";
    o->port = port_s;
    o->ssl = s;
    o->server_hostname = "localhost";
}

static void open_and_wait(rec *r, int port, const goconn_ssl_options *s) {
    goconn_options o;
    opts_init(&o, port, s);
    CHECK_EQ_INT(rec_open(r, &o, NULL), 0);
    CHECK(rec_wait(loop, &r->done, 10000));
}

static void connect_ok(rec *r, int port, const goconn_ssl_options *s) {
    open_and_wait(r, port, s);
    if (r->done_err.present) fprintf(stderr, "on_done error: %s\n", r->done_err.message);
    CHECK(!r->done_err.present);
}

static goconn_tls_info info_of(goconn_transport *t) {
    goconn_tls_info i;
    memset(&i, 0, sizeof i);
    i.version = GOCONN_TLS_INFO_VERSION;
    CHECK_EQ_INT(goconn_transport_get_tls_info(t, &i), 0);
    return i;
}

/* exchange sends a line each way: ours shows on s_server's stdout, what we
 * write to its stdin arrives through data_received. */
static void exchange(test_proc *srv, rec *r, const char *tag) {
    char ours[64], theirs[64];
    snprintf(ours, sizeof ours, "from goconn %s\n", tag);
    snprintf(theirs, sizeof theirs, "from openssl %s\n", tag);
    size_t before = r->received;
    CHECK_EQ_INT(goconn_transport_write(r->transport, ours, strlen(ours)), 0);
    CHECK(proc_wait(srv, PROC_OUT, ours, 5000));
    proc_write(srv, theirs);
    CHECK(rec_wait_bytes(loop, r, before + strlen(theirs), 5000));
    CHECK(memcmp(r->data + before, theirs, strlen(theirs)) == 0);
}

/* close_ok: our close, s_server's close_notify in answer (eof_received,
 * then connection_lost(NULL)). */
static void close_ok(rec *r) {
    CHECK_EQ_INT(goconn_transport_close(r->transport), 0);
    CHECK(rec_wait(loop, &r->lost, 10000));
    if (r->lost_err.present) fprintf(stderr, "connection_lost error: %s\n", r->lost_err.message);
    CHECK(!r->lost_err.present);
    CHECK_STREQ(rec_log(r), r->received ? "MOdEL" : "MOEL");
}

static void srv_stop(test_proc *srv) {
    proc_stop(srv);
    CHECK_EQ_INT(loop_pump(loop, 20), 0);
    CHECK(wait_fds(fds, 2000));
}

static void check_ssl_error(const test_error *e, int code, const char *reason) {
    CHECK(e->present);
    CHECK_EQ_INT(e->code, code);
    CHECK_EQ_INT(e->errnum, 1);
    CHECK(e->has_reason);
    CHECK_STREQ(e->reason, reason);
    CHECK_STREQ(e->library, "SSL");
    CHECK_STREQ(e->strerror_, e->message);
}

static void verified_tls13(void) {
    printf("verified TLS 1.3\n");
    test_proc srv;
    int port = openssl_serve(&srv, "-cert", cert_path("server.pem"), "-key", cert_path("server.key"),
                             "-ciphersuites", "TLS_AES_256_GCM_SHA384", NULL);
    goconn_ssl_options s;
    ssl_init(&s);
    rec r;
    rec_init(&r, 256);
    connect_ok(&r, port, &s);
    goconn_tls_info i = info_of(r.transport);
    CHECK_EQ_INT(i.protocol_version, GOCONN_TLS_1_3);
    CHECK_STREQ(i.protocol, "TLSv1.3");
    CHECK_STREQ(i.cipher, "TLS_AES_256_GCM_SHA384");
    CHECK_STREQ(i.cipher_protocol, "TLSv1.3");
    CHECK_EQ_INT(i.cipher_bits, 256);
    CHECK(i.alpn == NULL);
    CHECK_EQ_INT(i.session_resumed, 0);
    CHECK_STREQ(i.server_hostname, "localhost");
    CHECK_EQ_INT(i.verified, 1);
    CHECK_EQ_INT(i.peer_certificates, 1);
    /* The certificate s_server sent is server.pem. */
    char *pem = read_file(cert_path("server.pem"), NULL);
    size_t want_len = 0;
    unsigned char *want = pem_der(pem, &want_len);
    const void *der = NULL;
    size_t len = 0;
    CHECK_EQ_INT(goconn_transport_get_peer_certificate(r.transport, 0, &der, &len), 0);
    CHECK_EQ_INT(len, want_len);
    CHECK(memcmp(der, want, len) == 0);
    free(want);
    free(pem);
    /* s_server agrees on the suite. */
    CHECK(proc_wait(&srv, PROC_OUT, "CIPHER is TLS_AES_256_GCM_SHA384\n", 5000));

    exchange(&srv, &r, "one");
    exchange(&srv, &r, "two");
    close_ok(&r);
    /* s_server read our close_notify. */
    CHECK(proc_wait(&srv, PROC_OUT, "DONE\n", 5000));
    rec_free(&r);
    srv_stop(&srv);
}

static void server_closes(void) {
    printf("s_server closes\n");
    test_proc srv;
    int port = openssl_serve(&srv, "-cert", cert_path("server.pem"), "-key", cert_path("server.key"), NULL);
    goconn_ssl_options s;
    ssl_init(&s);
    rec r;
    rec_init(&r, 256);
    connect_ok(&r, port, &s);
    exchange(&srv, &r, "before the close");
    /* stdin's end makes s_server send close_notify: eof_received, then
     * connection_lost(NULL), without a close() from us. */
    close(srv.in_fd);
    srv.in_fd = -1;
    CHECK(rec_wait(loop, &r.lost, 10000));
    CHECK(!r.lost_err.present);
    CHECK_STREQ(rec_log(&r), "MOdEL");
    rec_free(&r);
    srv_stop(&srv);
}

static void tls12(void) {
    printf("TLS 1.2\n");
    test_proc srv;
    int port = openssl_serve(&srv, "-cert", cert_path("server.pem"), "-key", cert_path("server.key"), "-tls1_2",
                             "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256", NULL);
    goconn_ssl_options s;
    ssl_init(&s);
    rec r;
    rec_init(&r, 256);
    connect_ok(&r, port, &s);
    goconn_tls_info i = info_of(r.transport);
    CHECK_EQ_INT(i.protocol_version, GOCONN_TLS_1_2);
    CHECK_STREQ(i.protocol, "TLSv1.2");
    CHECK_STREQ(i.cipher, "ECDHE-ECDSA-AES128-GCM-SHA256");
    CHECK_STREQ(i.cipher_protocol, "TLSv1.2");
    CHECK_EQ_INT(i.cipher_bits, 128);
    CHECK_EQ_INT(i.verified, 1);
    CHECK(proc_wait(&srv, PROC_OUT, "CIPHER is ECDHE-ECDSA-AES128-GCM-SHA256\n", 5000));
    exchange(&srv, &r, "tls1.2");
    close_ok(&r);
    rec_free(&r);
    srv_stop(&srv);
}

static void alpn(void) {
    printf("alpn\n");
    test_proc srv;
    int port = openssl_serve(&srv, "-cert", cert_path("server.pem"), "-key", cert_path("server.key"), "-alpn",
                             "h2,http/1.1", NULL);
    /* The server's preference wins over the client's order. */
    const char *offer[] = {"http/1.1", "h2"};
    goconn_ssl_options s;
    ssl_init(&s);
    s.alpn_protocols = offer;
    s.alpn_protocols_count = 2;
    rec r;
    rec_init(&r, 256);
    connect_ok(&r, port, &s);
    goconn_tls_info i = info_of(r.transport);
    CHECK_STREQ(i.alpn, "h2");
    CHECK(proc_wait(&srv, PROC_OUT, "ALPN protocols advertised by the client: http/1.1, h2\n", 5000));
    close_ok(&r);
    rec_free(&r);

    const char *only[] = {"http/1.1"};
    s.alpn_protocols = only;
    s.alpn_protocols_count = 1;
    rec_init(&r, 256);
    connect_ok(&r, port, &s);
    i = info_of(r.transport);
    CHECK_STREQ(i.alpn, "http/1.1");
    close_ok(&r);
    rec_free(&r);
    srv_stop(&srv);
}

static void resumption(void) {
    printf("resumption\n");
    test_proc srv;
    int port = openssl_serve(&srv, "-cert", cert_path("server.pem"), "-key", cert_path("server.key"), NULL);
    goconn_ssl_options s;
    ssl_init(&s);
    for (int n = 0; n < 2; n++) {
        rec r;
        rec_init(&r, 256);
        connect_ok(&r, port, &s);
        CHECK_EQ_INT(info_of(r.transport).session_resumed, n);
        exchange(&srv, &r, n ? "second" : "first"); /* brings the ticket in */
        close_ok(&r);
        rec_free(&r);
    }
    srv_stop(&srv);
}

static void client_certificate(void) {
    printf("client certificate\n");
    test_proc srv;
    int port = openssl_serve(&srv, "-cert", cert_path("server.pem"), "-key", cert_path("server.key"), "-Verify", "1",
                             "-CAfile", cert_path("ca.pem"), "-verify_return_error", NULL);
    goconn_ssl_options s;
    rec r;

    /* None, TLS 1.3: s_server's alert arrives after our handshake. */
    ssl_init(&s);
    rec_init(&r, 256);
    connect_ok(&r, port, &s);
    CHECK(rec_wait(loop, &r.lost, 10000));
    CHECK_STREQ(rec_log(&r), "MOL");
    check_ssl_error(&r.lost_err, GOCONN_ETLS, "TLSV13_ALERT_CERTIFICATE_REQUIRED");
    CHECK_STREQ(r.lost_err.message,
                "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required");
    rec_free(&r);
    CHECK(wait_fds(fds + 3, 2000)); /* + s_server's pipes */

    /* None, TLS 1.2: the handshake fails. */
    ssl_init(&s);
    s.max_version = GOCONN_TLS_1_2;
    rec_init(&r, 256);
    open_and_wait(&r, port, &s);
    CHECK_EQ_INT(loop_pump(loop, 50), 0);
    CHECK_STREQ(rec_log(&r), "F");
    check_ssl_error(&r.done_err, GOCONN_ETLS, "SSLV3_ALERT_HANDSHAKE_FAILURE");
    rec_free(&r);
    CHECK(wait_fds(fds + 3, 2000));

    /* cert_file and key_file. */
    ssl_init(&s);
    s.cert_file = cert_path("client.pem");
    s.key_file = cert_path("client.key");
    rec_init(&r, 256);
    connect_ok(&r, port, &s);
    exchange(&srv, &r, "with a certificate");
    CHECK(proc_has(&srv, PROC_OUT, "subject=O = goconn tests, CN = goconn test client\n"));
    close_ok(&r);
    rec_free(&r);

    /* The encrypted key. */
    ssl_init(&s);
    s.cert_file = cert_path("client.pem");
    s.key_file = cert_path("client-enc.key");
    s.key_password = "secret";
    rec_init(&r, 256);
    connect_ok(&r, port, &s);
    exchange(&srv, &r, "with the encrypted key");
    close_ok(&r);
    rec_free(&r);
    srv_stop(&srv);
}

static void verify_failures(void) {
    printf("verify failures\n");
    test_proc srv;
    goconn_ssl_options s;
    ssl_init(&s);
    rec r;

    int port = openssl_serve(&srv, "-cert", cert_path("selfsigned.pem"), "-key", cert_path("selfsigned.key"), NULL);
    rec_init(&r, 0);
    open_and_wait(&r, port, &s);
    CHECK_EQ_INT(loop_pump(loop, 50), 0);
    CHECK_STREQ(rec_log(&r), "F");
    check_ssl_error(&r.done_err, GOCONN_ECERTVERIFY, "CERTIFICATE_VERIFY_FAILED");
    CHECK_STREQ(r.done_err.message,
                "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate");
    CHECK_EQ_INT(r.done_err.verify_code, 18);
    CHECK_STREQ(r.done_err.verify_message, "self-signed certificate");
    rec_free(&r);
    srv_stop(&srv);

    port = openssl_serve(&srv, "-cert", cert_path("other.pem"), "-key", cert_path("other.key"), NULL);
    rec_init(&r, 0);
    open_and_wait(&r, port, &s);
    CHECK_EQ_INT(loop_pump(loop, 50), 0);
    CHECK_STREQ(rec_log(&r), "F");
    check_ssl_error(&r.done_err, GOCONN_EHOSTNAME, "CERTIFICATE_VERIFY_FAILED");
    CHECK_EQ_INT(r.done_err.verify_code, 62);
    CHECK_STREQ(r.done_err.verify_message, "Hostname mismatch, certificate is not valid for 'localhost'.");
    rec_free(&r);
    srv_stop(&srv);
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (!openssl_path()) {
        printf("skipped: CMake found no openssl\n");
        return 0;
    }
    CHECK_EQ_INT(goconn_loop_new(&loop), 0);
    certs_dir();
    warm_up(loop);
    fds = count_open_fds();

    verified_tls13();
    server_closes();
    tls12();
    alpn();
    resumption();
    client_certificate();
    verify_failures();

    CHECK_EQ_INT(goconn_loop_free(loop), 0);
    CHECK(wait_live_handles(0, 5000));
    CHECK_EQ_INT(goconn_live_handles(), 0);
    printf("ok\n");
    return 0;
}
