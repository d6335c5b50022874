/* fuzz_options.c - the options fuzzer.
 *
 * The input is decoded into a goconn_options (strings, numbers, flags,
 * struct versions, TLS options with fuzzed PEM/DER data, an fd from a safe
 * set) and a goconn_protocol, and goconn_open_connection is called. Every
 * outcome must be an error returned at once (and then no callback at all),
 * or exactly one on_done, followed for a connection by a clean close: the
 * callbacks in asyncio's order, each once, nothing after connection_lost,
 * and the handle table back where it was.
 *
 * Targets stay on loopback: the process moves into its own network
 * namespace (only lo, brought up here) when it can, so a fuzzed address or a
 * DNS query fails at once instead of leaving the machine. Without that
 * (not root) fuzzed host strings are sent with AI_NUMERICHOST and only
 * loopback literals are used. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz_common.h"

static goconn_loop *loop;
static int private_net; /* running in our own network namespace */

/* Own network namespace with lo up: nothing leaves the process's sandbox. */
static void enter_private_network(void) {
    if (unshare(CLONE_NEWNET) != 0) return;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) == 0) {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        private_net = ioctl(fd, SIOCSIFFLAGS, &ifr) == 0;
    }
    close(fd);
}

static void init(void) {
    if (loop) return;
    enter_private_network();
    FUZZ_CHECK(goconn_loop_new(&loop) == 0);
    fz_echo_port();
    fz_refused_port();
}

/* What one request saw. Direct-mode callbacks run on library threads. */
typedef struct {
    atomic_int made, lost, done, data, eof, after_lost, done_ok;
    goconn_transport *_Atomic transport;
    int expect_protocol;
} seen;

static void cb_made(void *p, goconn_transport *t) {
    seen *s = p;
    FUZZ_CHECK(s->expect_protocol);
    if (s->lost) s->after_lost++;
    s->made++;
    s->transport = t;
}
static void cb_data(void *p, const void *d, size_t n) {
    seen *s = p;
    FUZZ_CHECK(n >= 1 && n <= 256 * 1024 && d != NULL);
    if (s->lost || !s->made) s->after_lost++;
    s->data++;
}
static int cb_eof(void *p) {
    seen *s = p;
    if (s->lost || !s->made) s->after_lost++;
    s->eof++;
    return 0;
}
static void cb_lost(void *p, const goconn_error *e) {
    seen *s = p;
    if (e) FUZZ_CHECK(e->message != NULL && e->code < 0);
    if (s->lost || !s->made) s->after_lost++;
    s->lost++;
}
static void cb_pause(void *p) { (void)p; }
static void cb_resume(void *p) { (void)p; }
static void cb_done(void *u, goconn_transport *t, void *p, const goconn_error *e) {
    seen *s = u;
    if (e) {
        FUZZ_CHECK(t == NULL && p == NULL);
        FUZZ_CHECK(e->message != NULL && e->code < 0);
        FUZZ_CHECK(s->made == 0);
        for (size_t i = 0; i < e->ncauses; i++) FUZZ_CHECK(e->causes[i]->message != NULL);
        for (size_t i = 0; i < e->nattempts; i++) FUZZ_CHECK(e->attempts[i]->version >= 1);
    } else {
        FUZZ_CHECK(t != NULL && p == s && s->made == 1);
        s->done_ok = 1;
    }
    s->done++;
}
static void cb_trace(void *u, const goconn_trace_event *ev) {
    seen *s = u;
    FUZZ_CHECK(!s->done); /* never after on_done */
    FUZZ_CHECK(ev->kind >= GOCONN_TRACE_RESOLVE_START && ev->kind <= GOCONN_TRACE_ATTEMPT_END);
}

static const char *safe_paths[] = {NULL, "/nonexistent/goconn", "/dev/null", "/etc/ssl/certs/ca-certificates.crt", "/etc", ""};

static const char *pick_path(fuzz_input *in) {
    return safe_paths[fz_pick(in, sizeof safe_paths / sizeof safe_paths[0])];
}

/* An fd from a safe set; *owned says whether we must close it ourselves if
 * the library does not take it. */
static int pick_sock(fuzz_input *in, int *owned) {
    int fd = -1, sv[2];
    *owned = 0;
    switch (fz_pick(in, 8)) {
    case 0: return -1;
    case 1: /* a descriptor number that is closed */
        fd = dup(0);
        if (fd >= 0) close(fd);
        return fd;
    case 2: fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0); break;
    case 3: { /* listening */
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        if (fd >= 0 && (bind(fd, (struct sockaddr *)&sin, sizeof sin) != 0 || listen(fd, 1) != 0)) {
            close(fd);
            fd = -1;
        }
        break;
    }
    case 4:
        if (pipe2(sv, O_CLOEXEC) == 0) {
            close(sv[1]);
            fd = sv[0];
        }
        break;
    case 5: fd = eventfd(0, EFD_CLOEXEC); break;
    case 6: { /* connected to the echo peer */
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)fz_echo_port()),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sin, sizeof sin) != 0) {
            close(fd);
            fd = -1;
        }
        break;
    }
    default:
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0) {
            close(sv[1]); /* the "peer" hangs up at once */
            fd = sv[0];
        }
    }
    *owned = fd >= 0;
    return fd;
}

static char *pick_host(fuzz_input *in, size_t *len, int *flags) {
    static const char *hosts[] = {"127.0.0.1", "::1", "localhost", "", "127.1", "::ffff:127.0.0.1", "fe80::1%lo"};
    *len = 0;
    switch (fz_pick(in, 10)) {
    case 0: return NULL;
    case 1: case 2: case 3: {
        unsigned i = fz_pick(in, sizeof hosts / sizeof hosts[0]);
        return strdup(hosts[i]);
    }
    case 4: { /* 100 KB of name */
        char *s = malloc(100001);
        FUZZ_CHECK(s);
        memset(s, 'a' + fz_pick(in, 26), 100000);
        for (int i = 63; i < 100000; i += 64) s[i] = '.';
        s[100000] = 0;
        return s;
    }
    default: {
        char *s = fz_string(in, 300);
        if (fz_bool(in)) *len = strlen(s) + (fz_bool(in) ? 1 : 0); /* maybe with its NUL inside */
        if (!private_net) *flags |= AI_NUMERICHOST;
        if (!private_net && (strchr(s, '.') || strchr(s, ':'))) s[0] = 0; /* no outside literals */
        return s;
    }
    }
}

static char *pick_port(fuzz_input *in) {
    char buf[32];
    switch (fz_pick(in, 8)) {
    case 0: return NULL;
    case 1: case 2: snprintf(buf, sizeof buf, "%d", fz_echo_port()); return strdup(buf);
    case 3: snprintf(buf, sizeof buf, "%d", fz_refused_port()); return strdup(buf);
    case 4: return strdup(fz_bool(in) ? "99999" : "-1");
    case 5: return strdup(fz_bool(in) ? "http" : "");
    default: return fz_string(in, 16);
    }
}

static void fill_ssl(fuzz_input *in, goconn_ssl_options *ssl, char **alpn_store, size_t *n_alpn) {
    goconn_ssl_options_init(ssl, GOCONN_SSL_OPTIONS_VERSION);
    if (fz_pick(in, 16) == 0) ssl->version = fz_u8(in);
    ssl->verify_mode = fz_pick(in, 5) == 0 ? (int)fz_u8(in) : (int)fz_pick(in, 2);
    ssl->check_hostname = fz_pick(in, 5) == 0 ? (int)fz_u8(in) : (int)fz_pick(in, 2);
    ssl->system_roots = (int)fz_pick(in, 4);
    ssl->ca_file = pick_path(in);
    ssl->ca_path = pick_path(in);
    size_t n;
    const uint8_t *p = fz_bytes(in, 4096, &n);
    ssl->ca_data = n ? p : NULL;
    ssl->ca_data_len = n;
    if (fz_bool(in)) {
        p = fz_bytes(in, 2048, &n);
        ssl->cert_data = n ? p : NULL;
        ssl->cert_data_len = n;
        p = fz_bytes(in, 2048, &n);
        ssl->key_data = n ? p : NULL;
        ssl->key_data_len = n;
        ssl->key_password = fz_bool(in) ? "secret" : NULL;
    }
    ssl->cert_file = fz_bool(in) ? pick_path(in) : NULL;
    ssl->key_file = fz_bool(in) ? pick_path(in) : NULL;
    static const int versions[] = {0, GOCONN_TLS_1_0, GOCONN_TLS_1_2, GOCONN_TLS_1_3, 7, 0x0305};
    ssl->min_version = versions[fz_pick(in, 6)];
    ssl->max_version = versions[fz_pick(in, 6)];
    *n_alpn = fz_pick(in, 4);
    for (size_t i = 0; i < *n_alpn; i++) alpn_store[i] = fz_string(in, 300);
    ssl->alpn_protocols = *n_alpn ? (const char *const *)alpn_store : NULL;
    ssl->alpn_protocols_count = *n_alpn;
    if (fz_pick(in, 8) == 0) ssl->alpn_protocols = NULL; /* count without an array */
    ssl->keylog_file = fz_bool(in) ? "/dev/null" : NULL;
    ssl->ciphers = fz_bool(in) ? "ECDHE-RSA-AES128-GCM-SHA256:nonsense" : NULL;
    ssl->no_session_cache = fz_bool(in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    init();
    fuzz_input in = {data, size, 0};
    int base_handles = goconn_live_handles();
    int direct = fz_bool(&in);

    goconn_options o;
    FUZZ_CHECK(goconn_options_init(&o, GOCONN_OPTIONS_VERSION) == 0);
    if (fz_pick(&in, 16) == 0) o.version = fz_u8(&in); /* a wrong version */
    if (fz_pick(&in, 8) == 0) o.version = 1;            /* the old layout */
    o.loop = direct ? NULL : loop;
    size_t host_len;
    int flags = 0;
    char *host = pick_host(&in, &host_len, &flags);
    char *port = pick_port(&in);
    o.host = host;
    o.host_len = host ? host_len : 0;
    o.port = port;
    o.family = (int)(fz_pick(&in, 4) == 0 ? fz_u16(&in) : (unsigned[]){0, AF_INET, AF_INET6}[fz_pick(&in, 3)]);
    o.proto = fz_pick(&in, 6) == 0 ? (int)fz_u8(&in) : 0;
    o.flags = (fz_pick(&in, 4) == 0 ? (int)fz_u16(&in) : 0) | flags;
    if (!private_net && (o.flags & AI_NUMERICHOST) == 0 && host && o.host_len == 0 &&
        strcmp(host, "localhost") && strcmp(host, "127.0.0.1") && strcmp(host, "::1")) {
        o.flags |= AI_NUMERICHOST;
    }
    int sock_owned = 0;
    if (fz_pick(&in, 3) == 0) {
        o.has_sock = 1;
        o.sock = pick_sock(&in, &sock_owned);
    }
    char *local_host = NULL, *local_port = NULL;
    if (fz_pick(&in, 4) == 0) {
        o.has_local_addr = 1;
        local_host = fz_bool(&in) ? strdup(fz_bool(&in) ? "127.0.0.1" : "::1") : NULL;
        local_port = fz_bool(&in) ? strdup(fz_bool(&in) ? "0" : "1") : NULL;
        o.local_host = local_host;
        o.local_port = local_port;
        o.local_scope_id = fz_pick(&in, 4) == 0 ? fz_u32(&in) : 0;
    }
    goconn_ssl_options ssl;
    char *alpn[4] = {0};
    size_t n_alpn = 0;
    if (fz_pick(&in, 3) == 0) {
        fill_ssl(&in, &ssl, alpn, &n_alpn);
        o.ssl = &ssl;
    }
    char *server_hostname = fz_pick(&in, 4) == 0 ? fz_string(&in, 64) : NULL;
    o.server_hostname = server_hostname;
    if ((o.has_ssl_handshake_timeout = fz_pick(&in, 4) == 0)) o.ssl_handshake_timeout = fz_double(&in);
    if ((o.has_ssl_shutdown_timeout = fz_pick(&in, 4) == 0)) o.ssl_shutdown_timeout = fz_double(&in);
    if ((o.has_happy_eyeballs_delay = fz_bool(&in))) o.happy_eyeballs_delay = fz_double(&in);
    if ((o.has_interleave = fz_pick(&in, 3) == 0)) o.interleave = (int)(int8_t)fz_u8(&in);
    o.all_errors = fz_bool(&in);
    o.tcp_nodelay = fz_pick(&in, 8) == 0 ? (int)fz_u8(&in) : (int)fz_pick(&in, 3);
    if (o.version >= 2) {
        if ((o.has_resolution_delay = fz_pick(&in, 3) == 0)) o.resolution_delay = fz_double(&in);
        if ((o.has_attempt_timeout = fz_pick(&in, 3) == 0)) o.attempt_timeout = fz_double(&in);
        /* A bounded connect timeout keeps each input short; sometimes fuzzed. */
        o.has_connect_timeout = 1;
        o.connect_timeout = fz_pick(&in, 4) == 0 ? fz_double(&in) : 0.3;
        o.bind_address_no_port = fz_bool(&in);
        if ((o.keepalive = fz_pick(&in, 4) == 0)) {
            o.keepalive_idle = (int)(int8_t)fz_u8(&in);
            o.keepalive_interval = (int)(int8_t)fz_u8(&in);
            o.keepalive_count = (int)(int8_t)fz_u8(&in);
        }
    }
    char errbuf[128];
    if (fz_pick(&in, 4)) {
        o.errbuf = errbuf;
        o.errbuf_size = fz_pick(&in, 8) == 0 ? fz_pick(&in, 4) : sizeof errbuf;
    }
    seen *s = calloc(1, sizeof *s);
    FUZZ_CHECK(s);
    goconn_protocol p = GOCONN_PROTOCOL_INIT;
    if (fz_pick(&in, 16) == 0) p.version = fz_u8(&in);
    p.connection_made = cb_made;
    p.data_received = cb_data;
    p.eof_received = fz_bool(&in) ? cb_eof : NULL;
    p.connection_lost = cb_lost;
    p.pause_writing = cb_pause;
    p.resume_writing = cb_resume;
    if (o.version >= 2 && fz_bool(&in)) {
        o.on_trace = cb_trace;
        o.trace_userdata = s;
    }
    s->expect_protocol = 1;

    goconn_request *req = NULL;
    int rc = goconn_open_connection(&o, &p, cb_done, s, &req);
    if (o.has_sock && sock_owned && rc != 0) close(o.sock); /* not taken */
    if (rc != 0) {
        FUZZ_CHECK(req == NULL);
        FUZZ_CHECK(goconn_live_handles() == base_handles);
    } else {
        /* Exactly one on_done, promptly; cancel if it takes a while. */
        int ok = direct ? fz_wait(&s->done, 1000) : fz_loop_run(loop, &s->done, 1000);
        if (!ok) {
            FUZZ_CHECK(goconn_request_cancel(req) == 0 || s->done);
            ok = direct ? fz_wait(&s->done, 5000) : fz_loop_run(loop, &s->done, 5000);
            FUZZ_CHECK(ok); /* a cancelled request must end */
        }
        FUZZ_CHECK(s->done == 1);
        goconn_transport *t = s->transport;
        if (s->done_ok) {
            /* A connection: exercise it a little, then close it cleanly. */
            size_t n;
            const uint8_t *w = fz_bytes(&in, 65536, &n);
            int wrc = goconn_transport_write(t, w, n);
            /* -EBADF only once connection_lost ran (an adopted socket whose
             * peer hung up can end before we get here). */
            FUZZ_CHECK(wrc == 0 || wrc == GOCONN_ECLOSING || (wrc == -EBADF && s->lost));
            if (fz_bool(&in)) goconn_transport_write_eof(t);
            if (fz_bool(&in)) goconn_transport_pause_reading(t);
            if (fz_bool(&in)) goconn_transport_abort(t);
            else goconn_transport_close(t);
            ok = direct ? fz_wait(&s->lost, 3000) : fz_loop_run(loop, &s->lost, 3000);
            if (!ok) {
                goconn_transport_abort(t);
                ok = direct ? fz_wait(&s->lost, 3000) : fz_loop_run(loop, &s->lost, 3000);
            }
            FUZZ_CHECK(ok && s->lost == 1);
            FUZZ_CHECK(goconn_transport_write(t, "x", 1) == -EBADF);
        } else {
            FUZZ_CHECK(s->made == 0 && s->lost == 0);
        }
        FUZZ_CHECK(s->after_lost == 0);
        /* Direct mode: the last callback may still be returning. */
        for (int i = 0; i < 5000 && goconn_live_handles() != base_handles; i++) usleep(200);
        FUZZ_CHECK(goconn_live_handles() == base_handles);
    }
    /* Nothing arrives later either. */
    int before = s->made + s->lost + s->done + s->data + s->eof;
    if (!direct) goconn_loop_dispatch(loop, 0);
    FUZZ_CHECK(s->made + s->lost + s->done + s->data + s->eof == before);
    free(s);
    free(host);
    free(port);
    free(local_host);
    free(local_port);
    free(server_hostname);
    for (size_t i = 0; i < 4; i++) free(alpn[i]);
    return 0;
}
