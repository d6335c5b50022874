/* TLS handshakes that fail, and client certificates, against the
 * goconn-peer (tests/peer).
 *
 * Every failed handshake must end in on_done alone (no protocol callback at
 * all, nothing dispatched afterwards), with the socket closed: the fd count
 * is back where it was and the peer reads end of stream after its failed
 * handshake. The errors are Python's ssl exceptions as data: code, errnum 1,
 * message == strerror, reason, library "SSL", and for certificate failures
 * OpenSSL's verify_code and verify_message:
 *
 * - a self-signed server certificate (18, with CA:TRUE or CA:FALSE), a CA the client does not trust
 *   (20, also with only the system roots), an expired certificate (10), in
 *   loop and direct mode;
 * - a host name mismatch (GOCONN_EHOSTNAME, 62) and an IP mismatch (64);
 * - a server that requires a client certificate: without one (TLS 1.3: the
 *   handshake completes and the alert ends the connection through
 *   connection_lost; TLS 1.2: on_done fails), with one from a CA the server
 *   does not trust, and with cert_file/key_file, cert_data/key_data, one PEM
 *   holding both, and the PKCS#8 encrypted key with the right password, a
 *   wrong one (BAD_DECRYPT, reported after the TCP connect) and none;
 * - no common ALPN protocol, no common version, no common cipher. */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

static goconn_loop *loop;
static int base_handles;

static void ssl_init(goconn_ssl_options *s) {
    CHECK_EQ_INT(goconn_ssl_options_init(s, GOCONN_SSL_OPTIONS_VERSION), 0);
    s->ca_file = cert_path("ca.pem");
}

static void opts_init(goconn_options *o, goconn_loop *l, const char *host, int port,
                      const char *server_hostname, const goconn_ssl_options *s) {
    static char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", port);
    CHECK_EQ_INT(goconn_options_init(o, GOCONN_OPTIONS_VERSION), 0);
    o->loop = l;
    o->host = host;
    o->port = port_s;
    o->ssl = s;
    o->server_hostname = server_hostname;
}

/* peer_saw_close waits until the peer has read end of stream on connection
 * id: a FIN or a reset, either way our socket is closed. */
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

/* handshake_fails connects and expects on_done to fail with no protocol
 * callback; it checks the fd count and that the peer saw the close, and
 * leaves the error in *err. */
static void handshake_fails(test_proc *peer, int id, goconn_loop *l, const char *host, int port,
                            const char *server_hostname, const goconn_ssl_options *s, test_error *err) {
    int fds = count_open_fds();
    goconn_options o;
    opts_init(&o, l, host, port, server_hostname, s);
    rec r;
    rec_init(&r, 0);
    goconn_request *req = NULL;
    CHECK_EQ_INT(rec_open(&r, &o, &req), 0);
    CHECK(rec_wait(l, &r.done, 10000));
    CHECK(r.done_err.present);
    if (l) {
        CHECK_EQ_INT(loop_pump(l, 50), 0); /* nothing follows */
    } else {
        CHECK(wait_live_handles(base_handles, 5000));
        sleep_ms(50);
    }
    CHECK_STREQ(rec_log(&r), "F");
    CHECK_EQ_INT(r.ndone, 1);
    CHECK_EQ_INT(goconn_request_cancel(req), -EBADF);
    /* The socket was closed before on_done. */
    CHECK(wait_fds(fds, 2000));
    *err = r.done_err;
    rec_free(&r);
    /* The peer got our TCP connection and saw it closed. */
    char accept[32];
    snprintf(accept, sizeof accept, "ACCEPT %d ", id);
    CHECK(proc_wait(peer, PROC_ERR, accept, 5000));
    peer_saw_close(peer, id);
}

static void check_ssl_error(const test_error *e, int code, const char *reason, const char *message) {
    if (e->code != code || strcmp(e->message, message) != 0)
        fprintf(stderr, "got code %d message \"%s\" reason \"%s\"\n", e->code, e->message, e->reason);
    CHECK_EQ_INT(e->version, GOCONN_ERROR_VERSION);
    CHECK_EQ_INT(e->code, code);
    CHECK_EQ_INT(e->errnum, 1); /* SSL_ERROR_SSL, as Python's ssl errors carry */
    CHECK_STREQ(e->message, message);
    CHECK(e->has_strerror);
    CHECK_STREQ(e->strerror_, message);
    CHECK(e->has_reason);
    CHECK_STREQ(e->reason, reason);
    CHECK(e->has_library);
    CHECK_STREQ(e->library, "SSL");
}

static void check_verify_error(const test_error *e, int code, int verify_code, const char *verify_message) {
    char message[512];
    snprintf(message, sizeof message,
             "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: %s", verify_message);
    check_ssl_error(e, code, "CERTIFICATE_VERIFY_FAILED", message);
    CHECK_EQ_INT(e->verify_code, verify_code);
    CHECK(e->has_verify_message);
    CHECK_STREQ(e->verify_message, verify_message);
}

/* A TLS error that is not about the certificate has no verify data. */
static void check_tls_error(const test_error *e, const char *reason, const char *text) {
    char message[512];
    snprintf(message, sizeof message, "[SSL: %s] %s", reason, text);
    check_ssl_error(e, GOCONN_ETLS, reason, message);
    CHECK_EQ_INT(e->verify_code, 0);
    CHECK(!e->has_verify_message);
}

static void serve_cert(test_proc *peer, int *port, const char *name) {
    char pem[64], key[64];
    snprintf(pem, sizeof pem, "%s.pem", name);
    snprintf(key, sizeof key, "%s.key", name);
    *port = peer_serve(peer, "--tls", "--cert", cert_path(pem), "--key", cert_path(key), NULL);
}

/* ------------------------------------------------------------------------ */
/* The server's certificate                                                 */
/* ------------------------------------------------------------------------ */

static void chain_failures(goconn_loop *l) {
    printf("chain failures, %s mode\n", l ? "loop" : "direct");
    test_proc peer;
    int port;
    test_error e;
    goconn_ssl_options s;
    ssl_init(&s);

    serve_cert(&peer, &port, "selfsigned");
    handshake_fails(&peer, 1, l, "127.0.0.1", port, "localhost", &s, &e);
    check_verify_error(&e, GOCONN_ECERTVERIFY, 18, "self-signed certificate");
    CHECK_STREQ(e.message,
                "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate");
    CHECK(proc_wait(&peer, PROC_ERR, "HANDSHAKE 1 error ", 5000));
    /* Also with the name unchecked: the chain is what fails. */
    handshake_fails(&peer, 2, l, "127.0.0.1", port, "", &s, &e);
    check_verify_error(&e, GOCONN_ECERTVERIFY, 18, "self-signed certificate");
    proc_stop(&peer);
    /* Self-signed with CA:FALSE: OpenSSL says 18 all the same. */
    serve_cert(&peer, &port, "selfsigned-leaf");
    handshake_fails(&peer, 1, l, "127.0.0.1", port, "localhost", &s, &e);
    check_verify_error(&e, GOCONN_ECERTVERIFY, 18, "self-signed certificate");
    proc_stop(&peer);

    serve_cert(&peer, &port, "server");
    /* A CA the client does not trust. */
    goconn_ssl_options other;
    ssl_init(&other);
    other.ca_file = cert_path("selfsigned.pem");
    handshake_fails(&peer, 1, l, "127.0.0.1", port, "localhost", &other, &e);
    check_verify_error(&e, GOCONN_ECERTVERIFY, 20, "unable to get local issuer certificate");
    /* ssl=True: the system roots only. */
    goconn_ssl_options sys;
    CHECK_EQ_INT(goconn_ssl_options_init(&sys, GOCONN_SSL_OPTIONS_VERSION), 0);
    handshake_fails(&peer, 2, l, "127.0.0.1", port, "localhost", &sys, &e);
    check_verify_error(&e, GOCONN_ECERTVERIFY, 20, "unable to get local issuer certificate");
    /* No roots at all. */
    sys.system_roots = GOCONN_SYSTEM_ROOTS_OFF;
    handshake_fails(&peer, 3, l, "127.0.0.1", port, "localhost", &sys, &e);
    check_verify_error(&e, GOCONN_ECERTVERIFY, 20, "unable to get local issuer certificate");
    proc_stop(&peer);

    serve_cert(&peer, &port, "expired");
    handshake_fails(&peer, 1, l, "127.0.0.1", port, "localhost", &s, &e);
    check_verify_error(&e, GOCONN_ECERTVERIFY, 10, "certificate has expired");
    proc_stop(&peer);
}

static void name_failures(void) {
    printf("name failures\n");
    test_proc peer;
    int port;
    test_error e;
    goconn_ssl_options s;
    ssl_init(&s);

    serve_cert(&peer, &port, "server");
    handshake_fails(&peer, 1, loop, "127.0.0.1", port, "other.example", &s, &e);
    check_verify_error(&e, GOCONN_EHOSTNAME, 62, "Hostname mismatch, certificate is not valid for 'other.example'.");
    CHECK_STREQ(e.message,
                "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: Hostname mismatch, certificate is not "
                "valid for 'other.example'.");
    CHECK(proc_wait(&peer, PROC_ERR, "HELLO 1 sni=other.example ", 5000));
    proc_stop(&peer);

    serve_cert(&peer, &port, "other");
    /* The name defaults to host. */
    handshake_fails(&peer, 1, loop, "localhost", port, NULL, &s, &e);
    check_verify_error(&e, GOCONN_EHOSTNAME, 62, "Hostname mismatch, certificate is not valid for 'localhost'.");
    /* An IP literal is checked against the IP SANs (other.pem has none). */
    handshake_fails(&peer, 2, loop, "127.0.0.1", port, NULL, &s, &e);
    check_verify_error(&e, GOCONN_EHOSTNAME, 64, "IP address mismatch, certificate is not valid for '127.0.0.1'.");
    CHECK(proc_wait(&peer, PROC_ERR, "HELLO 2 sni=- ", 5000));
    handshake_fails(&peer, 3, loop, "127.0.0.1", port, "127.0.0.1", &s, &e);
    check_verify_error(&e, GOCONN_EHOSTNAME, 64, "IP address mismatch, certificate is not valid for '127.0.0.1'.");
    proc_stop(&peer);
}

/* ------------------------------------------------------------------------ */
/* Client certificates                                                      */
/* ------------------------------------------------------------------------ */

/* works connects, checks that the peer saw a client certificate, echoes a
 * line and closes cleanly. */
static void works(test_proc *peer, int id, int port, const goconn_ssl_options *s) {
    goconn_options o;
    opts_init(&o, loop, "127.0.0.1", port, "localhost", s);
    rec r;
    rec_init(&r, 16);
    CHECK_EQ_INT(rec_open(&r, &o, NULL), 0);
    CHECK(rec_wait(loop, &r.done, 10000));
    if (r.done_err.present) fprintf(stderr, "on_done error: %s\n", r.done_err.message);
    CHECK(!r.done_err.present);
    CHECK_EQ_INT(goconn_transport_write(r.transport, "ping", 4), 0);
    CHECK(rec_wait_bytes(loop, &r, 4, 10000));
    CHECK(memcmp(r.data, "ping", 4) == 0);
    CHECK_EQ_INT(goconn_transport_close(r.transport), 0);
    CHECK(rec_wait(loop, &r.lost, 10000));
    CHECK(!r.lost_err.present);
    CHECK_STREQ(rec_log(&r), "MOdEL");
    rec_free(&r);
    char want[64];
    snprintf(want, sizeof want, "HANDSHAKE %d ok ", id);
    CHECK(proc_wait(peer, PROC_ERR, want, 5000));
    const char *line = strstr(peer->err, want);
    CHECK(strstr(line, "client_cert=1\n") != NULL);
    CHECK(strchr(line, '\n') > strstr(line, "client_cert=1"));
}

/* rejected_after_handshake: with TLS 1.3 the client's handshake is done
 * before the server has looked at the client's certificate, so on_done
 * brings the transport (connection_made first) and the server's alert ends
 * it: connection_lost(GOCONN_ETLS) and nothing else. */
static void rejected_after_handshake(test_proc *peer, int id, int port, const goconn_ssl_options *s,
                                     const char *reason, const char *text) {
    int fds = count_open_fds();
    goconn_options o;
    opts_init(&o, loop, "127.0.0.1", port, "localhost", s);
    rec r;
    rec_init(&r, 16);
    CHECK_EQ_INT(rec_open(&r, &o, NULL), 0);
    CHECK(rec_wait(loop, &r.done, 10000));
    CHECK(!r.done_err.present);
    goconn_tls_info i;
    memset(&i, 0, sizeof i);
    i.version = GOCONN_TLS_INFO_VERSION;
    CHECK_EQ_INT(goconn_transport_get_tls_info(r.transport, &i), 0);
    CHECK_STREQ(i.protocol, "TLSv1.3");
    CHECK(rec_wait(loop, &r.lost, 10000));
    CHECK_STREQ(rec_log(&r), "MOL");
    CHECK(r.lost_err.present);
    check_tls_error(&r.lost_err, reason, text);
    CHECK_EQ_INT(loop_pump(loop, 50), 0);
    CHECK(wait_fds(fds, 2000));
    rec_free(&r);
    char want[64];
    snprintf(want, sizeof want, "HANDSHAKE %d error ", id);
    CHECK(proc_wait(peer, PROC_ERR, want, 5000));
    peer_saw_close(peer, id);
}

static void client_certificates(void) {
    printf("client certificates\n");
    test_proc peer;
    int port = peer_serve(&peer, "--tls", "--certdir", certs_dir(), "--client-ca", cert_path("ca.pem"), NULL);
    int id = 0;
    test_error e;
    goconn_ssl_options s;

    /* None, TLS 1.3: the alert comes after the handshake. */
    ssl_init(&s);
    rejected_after_handshake(&peer, ++id, port, &s, "TLSV13_ALERT_CERTIFICATE_REQUIRED",
                             "tlsv13 alert certificate required");
    /* None, TLS 1.2: the handshake fails. */
    ssl_init(&s);
    s.max_version = GOCONN_TLS_1_2;
    handshake_fails(&peer, ++id, loop, "127.0.0.1", port, "localhost", &s, &e);
    check_tls_error(&e, "SSLV3_ALERT_HANDSHAKE_FAILURE", "sslv3 alert handshake failure");
    /* One from a CA the server does not trust. */
    ssl_init(&s);
    s.cert_file = cert_path("selfsigned.pem");
    s.key_file = cert_path("selfsigned.key");
    rejected_after_handshake(&peer, ++id, port, &s, "TLSV1_ALERT_UNKNOWN_CA", "tlsv1 alert unknown ca");

    /* cert_file and key_file, TLS 1.3 and TLS 1.2. */
    ssl_init(&s);
    s.cert_file = cert_path("client.pem");
    s.key_file = cert_path("client.key");
    works(&peer, ++id, port, &s);
    s.max_version = GOCONN_TLS_1_2;
    works(&peer, ++id, port, &s);

    /* In memory; and one PEM holding the certificate and the key. */
    size_t cert_len = 0, key_len = 0;
    char *cert = read_file(cert_path("client.pem"), &cert_len);
    char *key = read_file(cert_path("client.key"), &key_len);
    ssl_init(&s);
    s.cert_data = cert;
    s.cert_data_len = cert_len;
    s.key_data = key;
    s.key_data_len = key_len;
    works(&peer, ++id, port, &s);
    char *both = malloc(cert_len + key_len);
    CHECK(both != NULL);
    memcpy(both, cert, cert_len);
    memcpy(both + cert_len, key, key_len);
    ssl_init(&s);
    s.cert_data = both;
    s.cert_data_len = cert_len + key_len;
    works(&peer, ++id, port, &s);

    /* The encrypted key. */
    ssl_init(&s);
    s.cert_file = cert_path("client.pem");
    s.key_file = cert_path("client-enc.key");
    s.key_password = "secret";
    works(&peer, ++id, port, &s);
    /* A wrong password, and none: ssl.SSLError BAD_DECRYPT, after the TCP
     * connect (the peer accepted, then saw the close before any hello). */
    s.key_password = "wrong";
    handshake_fails(&peer, ++id, loop, "127.0.0.1", port, "localhost", &s, &e);
    check_tls_error(&e, "BAD_DECRYPT", "bad decrypt");
    s.key_password = NULL;
    handshake_fails(&peer, ++id, loop, "127.0.0.1", port, "localhost", &s, &e);
    check_tls_error(&e, "BAD_DECRYPT", "bad decrypt");
    char hello[32];
    snprintf(hello, sizeof hello, "HELLO %d ", id);
    CHECK(!proc_has(&peer, PROC_ERR, hello));
    free(both);
    free(cert);
    free(key);
    proc_stop(&peer);
}

/* ------------------------------------------------------------------------ */
/* Nothing in common                                                        */
/* ------------------------------------------------------------------------ */

static void nothing_in_common(void) {
    printf("nothing in common\n");
    test_proc peer;
    test_error e;
    goconn_ssl_options s;

    int port = peer_serve(&peer, "--tls", "--certdir", certs_dir(), "--alpn", "h2", NULL);
    const char *spdy[] = {"spdy/3"};
    ssl_init(&s);
    s.alpn_protocols = spdy;
    s.alpn_protocols_count = 1;
    handshake_fails(&peer, 1, loop, "127.0.0.1", port, "localhost", &s, &e);
    check_tls_error(&e, "TLSV1_ALERT_NO_APPLICATION_PROTOCOL", "tlsv1 alert no application protocol");
    proc_stop(&peer);

    port = peer_serve(&peer, "--tls", "--certdir", certs_dir(), "--max-version", "1.2", NULL);
    ssl_init(&s);
    s.min_version = GOCONN_TLS_1_3;
    handshake_fails(&peer, 1, loop, "127.0.0.1", port, "localhost", &s, &e);
    check_tls_error(&e, "TLSV1_ALERT_PROTOCOL_VERSION", "tlsv1 alert protocol version");
    /* A TLS 1.2 suite the server's ECDSA key cannot do. */
    ssl_init(&s);
    s.ciphers = "ECDHE-RSA-AES128-GCM-SHA256";
    handshake_fails(&peer, 2, loop, "127.0.0.1", port, "localhost", &s, &e);
    check_tls_error(&e, "SSLV3_ALERT_HANDSHAKE_FAILURE", "sslv3 alert handshake failure");
    proc_stop(&peer);

    port = peer_serve(&peer, "--tls", "--certdir", certs_dir(), "--min-version", "1.3", NULL);
    ssl_init(&s);
    s.max_version = GOCONN_TLS_1_2;
    handshake_fails(&peer, 1, loop, "127.0.0.1", port, "localhost", &s, &e);
    check_tls_error(&e, "TLSV1_ALERT_PROTOCOL_VERSION", "tlsv1 alert protocol version");
    proc_stop(&peer);
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    CHECK_EQ_INT(goconn_loop_new(&loop), 0);
    base_handles = goconn_live_handles();
    certs_dir();

    warm_up(loop); /* before any fd count */
    chain_failures(loop);
    chain_failures(NULL);
    name_failures();
    client_certificates();
    nothing_in_common();

    CHECK_EQ_INT(goconn_loop_free(loop), 0);
    CHECK(wait_live_handles(0, 5000));
    CHECK_EQ_INT(goconn_live_handles(), 0);
    printf("ok\n");
    return 0;
}
