/* TLS connections that succeed, against the goconn-peer (tests/peer):
 *
 * - the main case in loop mode and in direct mode: connection_made only
 *   after the handshake (tls_info is complete inside it), on_done after it,
 *   echo, close with the close_notify exchange (made, on_done, data, eof,
 *   lost(NULL)), goconn_transport_get_tls_info (TLSv1.3, OpenSSL cipher
 *   names, verified, server_hostname, one peer certificate) and
 *   goconn_transport_get_peer_certificate (server.pem's DER), their argument
 *   errors, what differs on a TLS transport (write_eof -ENOTSUP,
 *   can_write_eof 0, water marks (131072, 524288), writes after close
 *   GOCONN_ECLOSING), the TLS data still readable in connection_lost,
 *   dead handles afterwards (-EBADF) and the fd count;
 * - write flow control: pause_writing inside write() at size >= high (TLS's
 *   rule), the water marks' defaults and derivation;
 * - trust given as ca_file, ca_data PEM, ca_data DER and ca_path;
 * - names: host "localhost" (SNI sent), an IP literal (checked against the
 *   IP SAN, no SNI), ::1, server_hostname "" (chain verified, name not
 *   checked, no SNI), check_hostname off, verify_mode none;
 * - the peer's close_notify (eof_received, then connection_lost(NULL), also
 *   when eof_received asks to stay open);
 * - ALPN, TLS 1.2-only and 1.3-only servers, client version limits and a
 *   TLS 1.2 cipher list;
 * - resumption (TLS 1.3 and 1.2), off with no_session_cache or without
 *   server tickets. */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

static goconn_loop *loop;
static int base_handles; /* the loop's */

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

/* connect_ok opens a TLS connection and waits for on_done, which must bring
 * the transport after connection_made. */
static void connect_ok(rec *r, goconn_loop *l, const char *host, int port, const char *server_hostname,
                       const goconn_ssl_options *s) {
    goconn_options o;
    opts_init(&o, l, host, port, server_hostname, s);
    CHECK_EQ_INT(rec_open(r, &o, NULL), 0);
    CHECK(rec_wait(l, &r->done, 10000));
    if (r->done_err.present) fprintf(stderr, "on_done error: %s\n", r->done_err.message);
    CHECK(!r->done_err.present);
    CHECK(strncmp(rec_log(r), "MO", 2) == 0);
}

/* close_ok closes and waits for connection_lost(NULL), after the peer's
 * close_notify (eof_received). */
static void close_ok(rec *r, goconn_loop *l) {
    CHECK_EQ_INT(goconn_transport_close(r->transport), 0);
    CHECK(rec_wait(l, &r->lost, 10000));
    if (r->lost_err.present) fprintf(stderr, "connection_lost error: %s\n", r->lost_err.message);
    CHECK(!r->lost_err.present);
    CHECK(r->eof);
    CHECK_EQ_INT(r->nlost, 1);
    if (!l) CHECK(wait_live_handles(base_handles, 10000));
}

static goconn_tls_info tls_info(goconn_transport *t) {
    goconn_tls_info info;
    memset(&info, 0xab, sizeof info);
    info.version = GOCONN_TLS_INFO_VERSION;
    CHECK_EQ_INT(goconn_transport_get_tls_info(t, &info), 0);
    CHECK_EQ_INT(info.version, GOCONN_TLS_INFO_VERSION);
    return info;
}

static int is_tls13_cipher(const char *c) {
    return strcmp(c, "TLS_AES_128_GCM_SHA256") == 0 || strcmp(c, "TLS_AES_256_GCM_SHA384") == 0 ||
           strcmp(c, "TLS_CHACHA20_POLY1305_SHA256") == 0;
}

static void check_tls13_info(const goconn_tls_info *i, const char *server_hostname) {
    CHECK_EQ_INT(i->protocol_version, GOCONN_TLS_1_3);
    CHECK_STREQ(i->protocol, "TLSv1.3");
    CHECK(i->cipher != NULL && is_tls13_cipher(i->cipher));
    CHECK_STREQ(i->cipher_protocol, "TLSv1.3");
    CHECK_EQ_INT(i->cipher_bits, strcmp(i->cipher, "TLS_AES_128_GCM_SHA256") == 0 ? 128 : 256);
    CHECK(i->alpn == NULL);
    CHECK_EQ_INT(i->session_resumed, 0);
    if (server_hostname)
        CHECK_STREQ(i->server_hostname, server_hostname);
    else
        CHECK(i->server_hostname == NULL);
    CHECK_EQ_INT(i->verified, 1);
    CHECK_EQ_INT(i->peer_certificates, 1);
}

/* check_peer_cert compares the server's certificate with a PEM file's. */
static void check_peer_cert(goconn_transport *t, const char *pem_name) {
    char *pem = read_file(cert_path(pem_name), NULL);
    size_t want_len = 0;
    unsigned char *want = pem_der(pem, &want_len);
    const void *der = NULL;
    size_t len = 0;
    CHECK_EQ_INT(goconn_transport_get_peer_certificate(t, 0, &der, &len), 0);
    CHECK(der != NULL);
    CHECK_EQ_INT(len, want_len);
    CHECK(memcmp(der, want, len) == 0);
    /* Stable: the same bytes again. */
    const void *der2 = NULL;
    size_t len2 = 0;
    CHECK_EQ_INT(goconn_transport_get_peer_certificate(t, 0, &der2, &len2), 0);
    CHECK(der2 == der && len2 == len);
    free(want);
    free(pem);
}

static int pattern_ok(const unsigned char *d, size_t n, size_t offset) {
    for (size_t i = 0; i < n; i++)
        if (d[i] != (unsigned char)((offset + i) % 251)) return 0;
    return 1;
}

/* ------------------------------------------------------------------------ */
/* The main case                                                            */
/* ------------------------------------------------------------------------ */

static void made_checks(rec *r, goconn_transport *t) {
    /* connection_made comes after the handshake: the session is known. */
    goconn_tls_info i = tls_info(t);
    check_tls13_info(&i, "localhost");
    CHECK_EQ_INT(goconn_transport_write(t, "hello, tls", 10), 0);
    (void)r;
}

/* Inside connection_lost the handle is still live: so is its TLS data. */
static void lost_checks(rec *r, const goconn_error *e) {
    (void)e;
    goconn_tls_info i = tls_info(r->transport);
    CHECK_STREQ(i.protocol, "TLSv1.3");
    CHECK_STREQ(i.server_hostname, "localhost");
    const void *der = NULL;
    size_t len = 0;
    CHECK_EQ_INT(goconn_transport_get_peer_certificate(r->transport, 0, &der, &len), 0);
    CHECK(len > 0);
}

static void main_case(goconn_loop *l) {
    printf("main case, %s mode\n", l ? "loop" : "direct");
    fflush(stdout);
    test_proc peer;
    int port = peer_serve(&peer, "--tls", "--certdir", certs_dir(), NULL);
    int fds = count_open_fds();
    goconn_ssl_options s;
    ssl_init(&s);
    rec r;
    rec_init(&r, 64);
    r.on_made = made_checks;
    r.on_lost = lost_checks;
    connect_ok(&r, l, "127.0.0.1", port, "localhost", &s);
    goconn_transport *t = r.transport;
    CHECK(proc_wait(&peer, PROC_ERR, "HELLO 1 sni=localhost alpn=-\n", 5000));
    CHECK(proc_wait(&peer, PROC_ERR, "HANDSHAKE 1 ok version=TLSv1.3", 5000));

    goconn_tls_info i = tls_info(t);
    check_tls13_info(&i, "localhost");
    check_peer_cert(t, "server.pem");

    /* Argument errors. */
    const void *der = NULL;
    size_t len = 0;
    CHECK_EQ_INT(goconn_transport_get_peer_certificate(t, 1, &der, &len), -ENOENT);
    CHECK_EQ_INT(goconn_transport_get_peer_certificate(t, (size_t)-1, &der, &len), -ENOENT);
    CHECK_EQ_INT(goconn_transport_get_peer_certificate(t, 0, NULL, &len), -EINVAL);
    CHECK_EQ_INT(goconn_transport_get_peer_certificate(t, 0, &der, NULL), -EINVAL);
    CHECK_EQ_INT(goconn_transport_get_tls_info(t, NULL), -EINVAL);
    goconn_tls_info bad;
    memset(&bad, 0, sizeof bad);
    CHECK_EQ_INT(goconn_transport_get_tls_info(t, &bad), -EINVAL);
    bad.version = 99;
    CHECK_EQ_INT(goconn_transport_get_tls_info(t, &bad), -EINVAL);

    /* What differs on a TLS transport. */
    CHECK_EQ_INT(goconn_transport_write_eof(t), -ENOTSUP);
    CHECK_EQ_INT(goconn_transport_can_write_eof(t), 0);
    int64_t low = -1, high = -1;
    CHECK_EQ_INT(goconn_transport_get_write_buffer_limits(t, &low, &high), 0);
    CHECK_EQ_INT(low, 131072);
    CHECK_EQ_INT(high, 524288);
    CHECK_EQ_INT(goconn_transport_is_closing(t), 0);
    CHECK_EQ_INT(goconn_transport_is_reading(t), 1);
    CHECK(goconn_transport_get_fd(t) >= 0);
    const goconn_attempt *const *at = NULL;
    size_t nat = 0;
    CHECK_EQ_INT(goconn_transport_get_attempts(t, &at, &nat), 0);
    CHECK_EQ_INT(nat, 1);
    CHECK_EQ_INT(at[0]->outcome, GOCONN_ATTEMPT_WON);
    CHECK_EQ_INT(at[0]->remote_port, port);

    /* The echo. */
    CHECK(rec_wait_bytes(l, &r, 10, 10000));
    CHECK_EQ_INT(r.received, 10);
    CHECK(memcmp(r.data, "hello, tls", 10) == 0);

    CHECK_EQ_INT(goconn_transport_close(t), 0);
    CHECK_EQ_INT(goconn_transport_close(t), 0); /* idempotent */
    if (l) {
        /* connection_lost waits for the dispatch: the handle is live. */
        CHECK_EQ_INT(goconn_transport_is_closing(t), 1);
        CHECK_EQ_INT(goconn_transport_write(t, "late", 4), GOCONN_ECLOSING);
        struct iovec b = {(void *)"late", 4};
        CHECK_EQ_INT(goconn_transport_writelines(t, &b, 1), GOCONN_ECLOSING);
        CHECK_EQ_INT(goconn_transport_write_eof(t), -ENOTSUP);
    }
    CHECK(rec_wait(l, &r.lost, 10000));
    CHECK(!r.lost_err.present);
    if (!l) CHECK(wait_live_handles(base_handles, 10000));
    CHECK_STREQ(rec_log(&r), "MOdEL");
    CHECK_EQ_INT(r.ndone, 1);
    /* The peer saw our close_notify, and we saw its answer. */
    CHECK(proc_wait(&peer, PROC_ERR, "EOF 1 notify\n", 5000));
    CHECK(proc_wait(&peer, PROC_ERR, "DONE 1\n", 5000));

    /* Dead handle. */
    CHECK_EQ_INT(goconn_transport_get_tls_info(t, &i), -EBADF);
    CHECK_EQ_INT(goconn_transport_get_peer_certificate(t, 0, &der, &len), -EBADF);
    CHECK_EQ_INT(goconn_transport_write(t, "x", 1), -EBADF);
    CHECK_EQ_INT(goconn_transport_can_write_eof(t), -EBADF);
    if (l) CHECK_EQ_INT(loop_pump(l, 50), 0);
    CHECK(wait_fds(fds, 5000));
    rec_free(&r);
    proc_stop(&peer);
}

/* A plain TCP transport has no TLS information. */
static void plain_tcp_has_no_tls_info(void) {
    test_proc peer;
    int port = peer_serve(&peer, NULL);
    rec r;
    rec_init(&r, 0);
    connect_ok(&r, loop, "127.0.0.1", port, NULL, NULL);
    goconn_tls_info i;
    memset(&i, 0, sizeof i);
    i.version = GOCONN_TLS_INFO_VERSION;
    CHECK_EQ_INT(goconn_transport_get_tls_info(r.transport, &i), -ENOENT);
    const void *der = NULL;
    size_t len = 0;
    CHECK_EQ_INT(goconn_transport_get_peer_certificate(r.transport, 0, &der, &len), -ENOENT);
    CHECK_EQ_INT(goconn_transport_can_write_eof(r.transport), 1);
    CHECK_EQ_INT(goconn_transport_abort(r.transport), 1);
    CHECK(rec_wait(loop, &r.lost, 5000));
    rec_free(&r);
    proc_stop(&peer);
}

/* ------------------------------------------------------------------------ */
/* Write flow control                                                       */
/* ------------------------------------------------------------------------ */

/* wait_drained dispatches until resume_writing and an empty buffer. */
static void wait_drained(rec *r) {
    long long deadline = now_ms() + 10000;
    size_t size = 1;
    while (r->paused || size != 0) {
        CHECK(now_ms() < deadline);
        loop_pump(loop, 5);
        CHECK_EQ_INT(goconn_transport_get_write_buffer_size(r->transport, &size), 0);
    }
}

/* A TLS transport pauses at size >= high (plain TCP: > high), inside
 * write(), in loop mode. A write into an empty buffer is all buffered (TLS
 * never sends from the caller's thread), so the sizes are exact. */
static void flow_control(void) {
    printf("write flow control\n");
    test_proc peer;
    int port = peer_serve(&peer, "--tls", "--certdir", certs_dir(), "--mode", "discard", NULL);
    goconn_ssl_options s;
    ssl_init(&s);
    static unsigned char big[524288];
    rec r;
    rec_init(&r, 0);
    connect_ok(&r, loop, "127.0.0.1", port, "localhost", &s);
    goconn_transport *t = r.transport;

    CHECK_EQ_INT(goconn_transport_write(t, big, sizeof big - 1), 0);
    CHECK_EQ_INT(r.npause, 0); /* 524287 < high */
    wait_drained(&r);
    CHECK_EQ_INT(goconn_transport_write(t, big, sizeof big), 0);
    CHECK_EQ_INT(r.npause, 1); /* 524288 >= high: paused before write returned */
    CHECK(r.paused);
    wait_drained(&r);
    CHECK_EQ_INT(r.nresume, 1);

    /* Limits: the TLS defaults, derived marks, and >= at a small mark. */
    char errbuf[128];
    int64_t low = 0, high = 0;
    CHECK_EQ_INT(goconn_transport_set_write_buffer_limits(t, 100, GOCONN_LIMIT_DEFAULT, errbuf, sizeof errbuf), 0);
    CHECK_EQ_INT(goconn_transport_get_write_buffer_limits(t, &low, &high), 0);
    CHECK_EQ_INT(low, 25);
    CHECK_EQ_INT(high, 100);
    CHECK_EQ_INT(goconn_transport_write(t, big, 99), 0);
    CHECK_EQ_INT(r.npause, 1);
    wait_drained(&r);
    CHECK_EQ_INT(goconn_transport_write(t, big, 100), 0);
    CHECK_EQ_INT(r.npause, 2);
    wait_drained(&r);
    CHECK_EQ_INT(goconn_transport_set_write_buffer_limits(t, GOCONN_LIMIT_DEFAULT, GOCONN_LIMIT_DEFAULT, errbuf,
                                                          sizeof errbuf), 0);
    CHECK_EQ_INT(goconn_transport_get_write_buffer_limits(t, &low, &high), 0);
    CHECK_EQ_INT(low, 131072);
    CHECK_EQ_INT(high, 524288);
    CHECK_EQ_INT(goconn_transport_set_write_buffer_limits(t, 10, 20, errbuf, sizeof errbuf), -EINVAL);
    CHECK_STREQ(errbuf, "high (10) must be >= low (20) must be >= 0");

    CHECK_EQ_INT(goconn_transport_close(t), 0);
    CHECK(rec_wait(loop, &r.lost, 10000));
    CHECK(!r.lost_err.present);
    CHECK_STREQ(rec_log(&r), "MOPREL");
    CHECK_EQ_INT(r.nresume, 2);
    /* Everything arrived. */
    CHECK(proc_wait(&peer, PROC_ERR, "RECV 1 bytes=1048774 ", 5000));
    rec_free(&r);
    proc_stop(&peer);
}

/* ------------------------------------------------------------------------ */
/* Trust, names and verification switches                                  */
/* ------------------------------------------------------------------------ */

/* one_connection connects, checks the session against the expectations,
 * exchanges a line and closes. */
static goconn_tls_info one_connection(test_proc *peer, int port, int id, const char *host,
                                      const char *server_hostname, const goconn_ssl_options *s,
                                      const char *want_sni) {
    rec r;
    rec_init(&r, 16);
    connect_ok(&r, loop, host, port, server_hostname, s);
    goconn_tls_info i = tls_info(r.transport);
    goconn_tls_info copy = i;
    /* The strings die with the transport: keep what the callers check. */
    static char proto[32], hostname[256], alpn[64], cipher[64], cipher_proto[32];
    snprintf(proto, sizeof proto, "%s", i.protocol);
    snprintf(cipher, sizeof cipher, "%s", i.cipher);
    snprintf(cipher_proto, sizeof cipher_proto, "%s", i.cipher_protocol);
    copy.protocol = proto;
    copy.cipher = cipher;
    copy.cipher_protocol = cipher_proto;
    copy.server_hostname = NULL;
    if (i.server_hostname) {
        snprintf(hostname, sizeof hostname, "%s", i.server_hostname);
        copy.server_hostname = hostname;
    }
    copy.alpn = NULL;
    if (i.alpn) {
        snprintf(alpn, sizeof alpn, "%s", i.alpn);
        copy.alpn = alpn;
    }
    char want[128];
    snprintf(want, sizeof want, "HELLO %d sni=%s ", id, want_sni ? want_sni : "-");
    if (!proc_wait(peer, PROC_ERR, want, 5000)) fprintf(stderr, "peer log:\n%s\nwanted %s\n", peer->err, want);
    CHECK(proc_has(peer, PROC_ERR, want));
    CHECK_EQ_INT(goconn_transport_write(r.transport, "ping", 4), 0);
    CHECK(rec_wait_bytes(loop, &r, 4, 10000));
    CHECK(memcmp(r.data, "ping", 4) == 0);
    close_ok(&r, loop);
    CHECK_STREQ(rec_log(&r), "MOdEL");
    rec_free(&r);
    return copy;
}

static void trust_sources(void) {
    printf("trust sources\n");
    test_proc peer;
    int port = peer_serve(&peer, "--tls", "--certdir", certs_dir(), NULL);
    char *pem = read_file(cert_path("ca.pem"), NULL);
    size_t der_len = 0;
    unsigned char *der = pem_der(pem, &der_len);
    goconn_ssl_options s;
    int id = 0;

    ssl_init(&s); /* ca_file */
    goconn_tls_info i = one_connection(&peer, port, ++id, "127.0.0.1", "localhost", &s, "localhost");
    CHECK_EQ_INT(i.verified, 1);

    ssl_init(&s); /* ca_data, PEM */
    s.ca_file = NULL;
    s.ca_data = pem;
    s.ca_data_len = strlen(pem);
    i = one_connection(&peer, port, ++id, "127.0.0.1", "localhost", &s, "localhost");
    CHECK_EQ_INT(i.verified, 1);

    ssl_init(&s); /* ca_data, DER */
    s.ca_file = NULL;
    s.ca_data = der;
    s.ca_data_len = der_len;
    i = one_connection(&peer, port, ++id, "127.0.0.1", "localhost", &s, "localhost");
    CHECK_EQ_INT(i.verified, 1);

    ssl_init(&s); /* ca_path: the certificate folder (which holds ca.pem) */
    s.ca_file = NULL;
    s.ca_path = certs_dir();
    i = one_connection(&peer, port, ++id, "127.0.0.1", "localhost", &s, "localhost");
    CHECK_EQ_INT(i.verified, 1);

    ssl_init(&s); /* the system roots beside ca_file */
    s.system_roots = GOCONN_SYSTEM_ROOTS_ON;
    i = one_connection(&peer, port, ++id, "127.0.0.1", "localhost", &s, "localhost");
    CHECK_EQ_INT(i.verified, 1);
    free(der);
    free(pem);
    proc_stop(&peer);
}

static void names(void) {
    printf("names\n");
    goconn_ssl_options s;
    ssl_init(&s);
    test_proc peer;
    int port = peer_serve(&peer, "--tls", "--certdir", certs_dir(), NULL);
    int id = 0;

    /* server_hostname defaults to host: "localhost" is sent as SNI. */
    goconn_tls_info i = one_connection(&peer, port, ++id, "localhost", NULL, &s, "localhost");
    CHECK_STREQ(i.server_hostname, "localhost");
    CHECK_EQ_INT(i.verified, 1);

    /* An IP literal: checked against the IP SAN, never sent as SNI. */
    i = one_connection(&peer, port, ++id, "127.0.0.1", NULL, &s, NULL);
    CHECK_STREQ(i.server_hostname, "127.0.0.1");
    CHECK_EQ_INT(i.verified, 1);

    /* server_hostname "": the chain is verified, no name is checked or sent. */
    i = one_connection(&peer, port, ++id, "127.0.0.1", "", &s, NULL);
    CHECK(i.server_hostname == NULL);
    CHECK_EQ_INT(i.verified, 1);
    proc_stop(&peer);

    /* A server whose certificate names only other.example. */
    port = peer_serve(&peer, "--tls", "--cert", cert_path("other.pem"), "--key", cert_path("other.key"), NULL);
    id = 0;
    i = one_connection(&peer, port, ++id, "127.0.0.1", "", &s, NULL);
    CHECK(i.server_hostname == NULL);
    CHECK_EQ_INT(i.verified, 1);
    i = one_connection(&peer, port, ++id, "127.0.0.1", "other.example", &s, "other.example");
    CHECK_STREQ(i.server_hostname, "other.example");
    /* check_hostname off: the name is still sent, not checked. */
    goconn_ssl_options nocheck;
    ssl_init(&nocheck);
    nocheck.check_hostname = GOCONN_CHECK_HOSTNAME_OFF;
    i = one_connection(&peer, port, ++id, "127.0.0.1", "localhost", &nocheck, "localhost");
    CHECK_STREQ(i.server_hostname, "localhost");
    CHECK_EQ_INT(i.verified, 1);
    proc_stop(&peer);

    /* verify_mode none: a self-signed certificate is taken, unverified. */
    port = peer_serve(&peer, "--tls", "--cert", cert_path("selfsigned.pem"), "--key", cert_path("selfsigned.key"), NULL);
    goconn_ssl_options none;
    ssl_init(&none);
    none.ca_file = NULL;
    none.verify_mode = GOCONN_VERIFY_NONE;
    i = one_connection(&peer, port, 1, "127.0.0.1", "localhost", &none, "localhost");
    CHECK_EQ_INT(i.verified, 0);
    CHECK_EQ_INT(i.peer_certificates, 1);
    proc_stop(&peer);

    /* ::1, when the host has IPv6 loopback. */
    test_proc peer6;
    const char *argv6[] = {goconn_peer_path(), "serve", "--die-with-parent", "--listen", "[::1]:0", "--tls",
                           "--certdir", certs_dir(), NULL};
    proc_start(&peer6, (char *const *)argv6);
    if (proc_wait(&peer6, PROC_OUT, "\n", 5000) && strncmp(peer6.out, "PORT ", 5) == 0) {
        i = one_connection(&peer6, atoi(peer6.out + 5), 1, "::1", NULL, &s, NULL);
        CHECK_STREQ(i.server_hostname, "::1");
        CHECK_EQ_INT(i.verified, 1);
    } else {
        printf("::1: skipped (%s)\n", peer6.err);
    }
    proc_stop(&peer6);
}

/* ------------------------------------------------------------------------ */
/* The peer closes                                                          */
/* ------------------------------------------------------------------------ */

static void peer_closes(const char *mode, int eof_return) {
    printf("peer closes: %s, eof_received returns %d\n", mode, eof_return);
    test_proc peer;
    int port = peer_serve(&peer, "--tls", "--certdir", certs_dir(), "--mode", mode, "--bytes", "100000", NULL);
    int fds = count_open_fds();
    goconn_ssl_options s;
    ssl_init(&s);
    rec r;
    rec_init(&r, 100000);
    r.eof_return = eof_return;
    connect_ok(&r, loop, "127.0.0.1", port, "localhost", &s);
    /* Data, then eof_received, then connection_lost(NULL), with no close()
     * from us: a TLS transport closes after the peer's close_notify even
     * when eof_received returns true. */
    CHECK(rec_wait(loop, &r.lost, 10000));
    CHECK_STREQ(rec_log(&r), "MOdEL");
    CHECK(!r.lost_err.present);
    CHECK_EQ_INT(r.received, 100000);
    CHECK(pattern_ok(r.data, 100000, 0));
    CHECK(proc_wait(&peer, PROC_ERR, "SENT 1 bytes=100000 sha256=", 5000));
    if (strcmp(mode, "close-notify-after") == 0) {
        /* The peer waited for our close_notify. */
        CHECK(proc_wait(&peer, PROC_ERR, "EOF 1 notify\n", 5000));
    }
    CHECK(proc_wait(&peer, PROC_ERR, "DONE 1\n", 5000));
    CHECK_EQ_INT(loop_pump(loop, 50), 0);
    CHECK(wait_fds(fds, 5000));
    rec_free(&r);
    proc_stop(&peer);
}

/* ------------------------------------------------------------------------ */
/* ALPN and versions                                                        */
/* ------------------------------------------------------------------------ */

static void alpn(void) {
    printf("alpn\n");
    test_proc peer;
    int port = peer_serve(&peer, "--tls", "--certdir", certs_dir(), "--alpn", "h2,http/1.1", NULL);
    const char *both[] = {"h2", "http/1.1"};
    const char *http11[] = {"http/1.1"};
    goconn_ssl_options s;
    ssl_init(&s);
    s.alpn_protocols = both;
    s.alpn_protocols_count = 2;
    goconn_tls_info i = one_connection(&peer, port, 1, "127.0.0.1", "localhost", &s, "localhost");
    CHECK_STREQ(i.alpn, "h2");
    CHECK(proc_wait(&peer, PROC_ERR, "HELLO 1 sni=localhost alpn=h2,http/1.1\n", 5000));
    CHECK(proc_wait(&peer, PROC_ERR, "HANDSHAKE 1 ok version=TLSv1.3 cipher=", 5000));
    CHECK(strstr(peer.err, "alpn=h2 resumed=") != NULL);

    s.alpn_protocols = http11;
    s.alpn_protocols_count = 1;
    i = one_connection(&peer, port, 2, "127.0.0.1", "localhost", &s, "localhost");
    CHECK_STREQ(i.alpn, "http/1.1");

    s.alpn_protocols = NULL;
    s.alpn_protocols_count = 0;
    i = one_connection(&peer, port, 3, "127.0.0.1", "localhost", &s, "localhost");
    CHECK(i.alpn == NULL);
    CHECK(proc_wait(&peer, PROC_ERR, "HELLO 3 sni=localhost alpn=-\n", 5000));
    proc_stop(&peer);

    /* A server without ALPN agrees on nothing. */
    port = peer_serve(&peer, "--tls", "--certdir", certs_dir(), NULL);
    s.alpn_protocols = both;
    s.alpn_protocols_count = 2;
    i = one_connection(&peer, port, 1, "127.0.0.1", "localhost", &s, "localhost");
    CHECK(i.alpn == NULL);
    proc_stop(&peer);
}

static void versions(void) {
    printf("versions\n");
    goconn_ssl_options s;
    ssl_init(&s);
    test_proc peer;

    /* A TLS 1.2-only server. */
    int port = peer_serve(&peer, "--tls", "--certdir", certs_dir(), "--max-version", "1.2", NULL);
    goconn_tls_info i = one_connection(&peer, port, 1, "127.0.0.1", "localhost", &s, "localhost");
    CHECK_EQ_INT(i.protocol_version, GOCONN_TLS_1_2);
    CHECK_STREQ(i.protocol, "TLSv1.2");
    CHECK_STREQ(i.cipher_protocol, "TLSv1.2");
    CHECK(strcmp(i.cipher, "ECDHE-ECDSA-AES128-GCM-SHA256") == 0 || strcmp(i.cipher, "ECDHE-ECDSA-AES256-GCM-SHA384") == 0 ||
          strcmp(i.cipher, "ECDHE-ECDSA-CHACHA20-POLY1305") == 0);
    CHECK(proc_wait(&peer, PROC_ERR, "HANDSHAKE 1 ok version=TLSv1.2", 5000));
    /* With a cipher list: exactly that suite. */
    goconn_ssl_options c12;
    ssl_init(&c12);
    c12.ciphers = "ECDHE-ECDSA-AES256-GCM-SHA384";
    i = one_connection(&peer, port, 2, "127.0.0.1", "localhost", &c12, "localhost");
    CHECK_STREQ(i.protocol, "TLSv1.2");
    CHECK_STREQ(i.cipher, "ECDHE-ECDSA-AES256-GCM-SHA384");
    CHECK_STREQ(i.cipher_protocol, "TLSv1.2");
    CHECK_EQ_INT(i.cipher_bits, 256);
    CHECK(proc_wait(&peer, PROC_ERR, "HANDSHAKE 2 ok version=TLSv1.2 cipher=TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 ", 5000));
    c12.ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256";
    i = one_connection(&peer, port, 3, "127.0.0.1", "localhost", &c12, "localhost");
    CHECK_STREQ(i.cipher, "ECDHE-ECDSA-AES128-GCM-SHA256");
    CHECK_EQ_INT(i.cipher_bits, 128);
    proc_stop(&peer);

    /* A TLS 1.3-only server. */
    port = peer_serve(&peer, "--tls", "--certdir", certs_dir(), "--min-version", "1.3", NULL);
    i = one_connection(&peer, port, 1, "127.0.0.1", "localhost", &s, "localhost");
    CHECK_EQ_INT(i.protocol_version, GOCONN_TLS_1_3);
    CHECK_STREQ(i.protocol, "TLSv1.3");
    CHECK_STREQ(i.cipher_protocol, "TLSv1.3");
    CHECK(is_tls13_cipher(i.cipher));
    proc_stop(&peer);

    /* The client's limits against a server that does both. */
    port = peer_serve(&peer, "--tls", "--certdir", certs_dir(), NULL);
    goconn_ssl_options lim;
    ssl_init(&lim);
    lim.max_version = GOCONN_TLS_1_2;
    i = one_connection(&peer, port, 1, "127.0.0.1", "localhost", &lim, "localhost");
    CHECK_STREQ(i.protocol, "TLSv1.2");
    ssl_init(&lim);
    lim.min_version = GOCONN_TLS_1_3;
    i = one_connection(&peer, port, 2, "127.0.0.1", "localhost", &lim, "localhost");
    CHECK_STREQ(i.protocol, "TLSv1.3");
    ssl_init(&lim);
    lim.min_version = GOCONN_TLS_1_2;
    lim.max_version = GOCONN_TLS_1_2;
    i = one_connection(&peer, port, 3, "127.0.0.1", "localhost", &lim, "localhost");
    CHECK_STREQ(i.protocol, "TLSv1.2");
    proc_stop(&peer);
}

/* ------------------------------------------------------------------------ */
/* Resumption                                                               */
/* ------------------------------------------------------------------------ */

static void resumption(const char *what, const goconn_ssl_options *s, int want_resumed, const char *peer_flag) {
    printf("resumption: %s\n", what);
    test_proc peer;
    int port = peer_flag ? peer_serve(&peer, "--tls", "--certdir", certs_dir(), peer_flag, NULL)
                         : peer_serve(&peer, "--tls", "--certdir", certs_dir(), NULL);
    /* The first connection does a round trip (one_connection), which also
     * brings the TLS 1.3 ticket in; then the second may resume. */
    goconn_tls_info i = one_connection(&peer, port, 1, "127.0.0.1", "localhost", s, "localhost");
    CHECK_EQ_INT(i.session_resumed, 0);
    CHECK(proc_wait(&peer, PROC_ERR, "HANDSHAKE 1 ok", 5000));
    CHECK(strstr(strstr(peer.err, "HANDSHAKE 1 ok"), "resumed=0") != NULL);
    i = one_connection(&peer, port, 2, "127.0.0.1", "localhost", s, "localhost");
    CHECK_EQ_INT(i.session_resumed, want_resumed);
    CHECK_EQ_INT(i.verified, 1);
    CHECK_EQ_INT(i.peer_certificates, 1);
    char want[64];
    snprintf(want, sizeof want, "resumed=%d client_cert=0\n", want_resumed);
    CHECK(proc_wait(&peer, PROC_ERR, "HANDSHAKE 2 ok", 5000));
    CHECK(strncmp(strstr(strstr(peer.err, "HANDSHAKE 2 ok"), "resumed="), want, strlen(want)) == 0);
    proc_stop(&peer);
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    CHECK_EQ_INT(goconn_loop_new(&loop), 0);
    base_handles = goconn_live_handles();
    CHECK_EQ_INT(base_handles, 1);
    certs_dir();

    /* First, as the fd count's warm-up: the Go runtime opens its poller
     * on first use. */
    plain_tcp_has_no_tls_info();
    main_case(loop);
    main_case(NULL);
    flow_control();
    trust_sources();
    names();
    peer_closes("close-notify-after", 0);
    peer_closes("send", 0);
    peer_closes("close-notify-after", 1);
    alpn();
    versions();

    goconn_ssl_options s;
    ssl_init(&s);
    resumption("TLS 1.3", &s, 1, NULL);
    resumption("TLS 1.2", &s, 1, "--max-version=1.2");
    resumption("no server tickets", &s, 0, "--tickets=false");
    s.no_session_cache = 1;
    resumption("no_session_cache", &s, 0, NULL);

    CHECK_EQ_INT(goconn_loop_free(loop), 0);
    CHECK(wait_live_handles(0, 5000));
    CHECK_EQ_INT(goconn_live_handles(), 0);
    printf("ok\n");
    return 0;
}
