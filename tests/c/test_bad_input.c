/* Bad input: every case gives a clear error code (and, where the header says
 * so, asyncio's text in errbuf) and never crashes. Synchronous errors never
 * call on_done; asynchronous ones arrive through on_done with no protocol
 * callback. Stale, freed, foreign and made-up handles give -EBADF. A child
 * process after fork() gets GOCONN_EFORKED. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

static atomic_int stray_calls; /* callbacks of requests that failed synchronously */

static void stray_done(void *u, goconn_transport *t, void *p, const goconn_error *e) {
    (void)u, (void)t, (void)p, (void)e;
    atomic_fetch_add(&stray_calls, 1);
}
static void stray_made(void *p, goconn_transport *t) {
    (void)p, (void)t;
    atomic_fetch_add(&stray_calls, 1);
}

static goconn_protocol stray_protocol(void) {
    goconn_protocol p = GOCONN_PROTOCOL_INIT;
    p.connection_made = stray_made;
    return p;
}

/* sync_fail expects goconn_open_connection to fail at once with `code` and,
 * when `text` is not NULL, errbuf to hold exactly `text`. */
static void sync_fail(goconn_options *o, int code, const char *text) {
    char errbuf[512];
    memset(errbuf, 'X', sizeof errbuf);
    errbuf[sizeof errbuf - 1] = 0;
    o->errbuf = errbuf;
    o->errbuf_size = sizeof errbuf;
    goconn_protocol p = stray_protocol();
    goconn_request *req = (goconn_request *)0x1;
    CHECK_EQ_INT(goconn_open_connection(o, &p, stray_done, NULL, &req), code);
    CHECK(req == NULL);
    if (text) CHECK_STREQ(errbuf, text);
    o->errbuf = NULL;
    o->errbuf_size = 0;
}

typedef struct {
    volatile int done;
    atomic_int ndone, protocol_calls;
    int had_transport;
    int code, errnum;
    char message[512];
} result;

static void async_done(void *u, goconn_transport *t, void *p, const goconn_error *e) {
    result *r = u;
    atomic_fetch_add(&r->ndone, 1);
    r->had_transport = t != NULL || p != NULL;
    CHECK(e != NULL);
    r->code = e->code;
    r->errnum = e->errnum;
    CHECK(e->message != NULL);
    snprintf(r->message, sizeof r->message, "%s", e->message);
    r->done = 1;
}
static void async_made(void *p, goconn_transport *t) {
    (void)t;
    atomic_fetch_add(&((result *)p)->protocol_calls, 1);
}

/* async_fail expects goconn_open_connection to return 0 and on_done to
 * report `code` (with `message` when not NULL). */
static void async_fail(goconn_options *o, int code, const char *message, result *r) {
    memset(r, 0, sizeof *r);
    char errbuf[256] = "untouched";
    o->errbuf = errbuf;
    o->errbuf_size = sizeof errbuf;
    goconn_protocol p = GOCONN_PROTOCOL_INIT;
    p.connection_made = async_made;
    CHECK_EQ_INT(goconn_open_connection(o, &p, async_done, r, NULL), 0);
    CHECK_STREQ(errbuf, "untouched");
    CHECK(wait_flag(&r->done, 10000));
    CHECK(wait_live_handles(0, 10000));
    CHECK_EQ_INT(atomic_load(&r->ndone), 1);
    CHECK_EQ_INT(atomic_load(&r->protocol_calls), 0);
    CHECK(!r->had_transport);
    if (r->code != code) fprintf(stderr, "on_done: %d %s\n", r->code, r->message);
    CHECK_EQ_INT(r->code, code);
    if (message) CHECK_STREQ(r->message, message);
    o->errbuf = NULL;
    o->errbuf_size = 0;
}

static void opts(goconn_options *o, const char *host, const char *port) {
    CHECK_EQ_INT(goconn_options_init(o, GOCONN_OPTIONS_VERSION), 0);
    o->host = host;
    o->port = port;
}

static int fd_is_open(int fd) { return fcntl(fd, F_GETFD) != -1; }

/* ------------------------------------------------------------------------ */
/* Versions, inits, strerror                                                 */
/* ------------------------------------------------------------------------ */

static void versions_and_inits(void) {
    CHECK_EQ_INT(goconn_abi_version(), GOCONN_ABI_VERSION);
    CHECK_STREQ(goconn_version(), "0.1.0");

    goconn_options o;
    goconn_protocol p;
    CHECK_EQ_INT(goconn_options_init(NULL, GOCONN_OPTIONS_VERSION), -EINVAL);
    CHECK_EQ_INT(goconn_options_init(&o, 0), GOCONN_EVERSION);
    CHECK_EQ_INT(goconn_options_init(&o, 99), GOCONN_EVERSION);
    CHECK_EQ_INT(goconn_protocol_init(NULL, GOCONN_PROTOCOL_VERSION), -EINVAL);
    CHECK_EQ_INT(goconn_protocol_init(&p, 0), GOCONN_EVERSION);
    CHECK_EQ_INT(goconn_protocol_init(&p, 99), GOCONN_EVERSION);

    /* init zeroes everything and sets the version. */
    memset(&o, 0xAB, sizeof o);
    CHECK_EQ_INT(goconn_options_init(&o, GOCONN_OPTIONS_VERSION), 0);
    CHECK_EQ_INT(o.version, GOCONN_OPTIONS_VERSION);
    CHECK(o.loop == NULL && o.host == NULL && o.port == NULL && o.has_sock == 0 && o.errbuf == NULL);
    memset(&p, 0xAB, sizeof p);
    CHECK_EQ_INT(goconn_protocol_init(&p, GOCONN_PROTOCOL_VERSION), 0);
    CHECK_EQ_INT(p.version, GOCONN_PROTOCOL_VERSION);
    CHECK(p.factory == NULL && p.connection_made == NULL && p.resume_writing == NULL);

    CHECK_EQ_INT(goconn_loop_new(NULL), -EINVAL);
}

static void strerror_texts(void) {
    const int codes[] = {GOCONN_EINTERNAL, GOCONN_EPOISONED, GOCONN_EVERSION,  GOCONN_EFORKED,
                         GOCONN_EGAI,      GOCONN_EOSERROR,  GOCONN_EMULTIPLE, GOCONN_EGROUP,
                         GOCONN_EOVERFLOW, GOCONN_ETIMEOUT,  GOCONN_ENOTSTREAM, GOCONN_EFACTORY,
                         GOCONN_EWRITEEOF, GOCONN_ECLOSING,  GOCONN_EREENTRANT, GOCONN_ECERTVERIFY,
                         GOCONN_EHOSTNAME, GOCONN_EHANDSHAKETIMEOUT, GOCONN_ETLS, GOCONN_EBUFFER};
    const size_t n = sizeof codes / sizeof codes[0];
    for (size_t i = 0; i < n; i++) {
        const char *s = goconn_strerror(codes[i]);
        CHECK(s != NULL);
        CHECK(strlen(s) > 5);
        if (strcmp(s, "unknown error") == 0) {
            fprintf(stderr, "goconn_strerror(%d) is unknown\n", codes[i]);
            CHECK(0);
        }
        /* Every code has its own text. */
        for (size_t j = 0; j < i; j++) CHECK(strcmp(s, goconn_strerror(codes[j])) != 0);
    }
    CHECK_STREQ(goconn_strerror(GOCONN_EWRITEEOF), "Cannot call write() after write_eof()");
    CHECK_STREQ(goconn_strerror(-ECONNREFUSED), "Connection refused");
    CHECK_STREQ(goconn_strerror(-EBADF), "Bad file descriptor");
    CHECK_STREQ(goconn_strerror(-EINVAL), "Invalid argument");
    CHECK_STREQ(goconn_strerror(-ECANCELED), "Operation canceled");
    CHECK(goconn_strerror(0) != NULL);
    CHECK_STREQ(goconn_strerror(-20000), "unknown error");
    CHECK_STREQ(goconn_strerror(12345), "unknown error");
    CHECK_STREQ(goconn_strerror(-2147483647 - 1), "unknown error");
}

/* ------------------------------------------------------------------------ */
/* goconn_open_connection's synchronous checks                               */
/* ------------------------------------------------------------------------ */

static void sync_checks(void) {
    goconn_options o;
    goconn_protocol p = stray_protocol();

    /* NULL options or protocol. */
    opts(&o, "127.0.0.1", "1");
    CHECK_EQ_INT(goconn_open_connection(NULL, &p, stray_done, NULL, NULL), -EINVAL);
    CHECK_EQ_INT(goconn_open_connection(&o, NULL, stray_done, NULL, NULL), -EINVAL);

    /* Struct versions. */
    opts(&o, "127.0.0.1", "1");
    o.version = 0;
    sync_fail(&o, GOCONN_EVERSION, NULL);
    o.version = 99;
    sync_fail(&o, GOCONN_EVERSION, NULL);
    opts(&o, "127.0.0.1", "1");
    goconn_protocol bad = stray_protocol();
    bad.version = 99;
    char errbuf[256];
    o.errbuf = errbuf;
    o.errbuf_size = sizeof errbuf;
    CHECK_EQ_INT(goconn_open_connection(&o, &bad, stray_done, NULL, NULL), GOCONN_EVERSION);
    CHECK_STREQ(errbuf, "goconn_protocol version 99 is not supported");
    bad.version = 0;
    CHECK_EQ_INT(goconn_open_connection(&o, &bad, stray_done, NULL, NULL), GOCONN_EVERSION);

    /* asyncio's ValueErrors, in asyncio's order. */
    opts(&o, "127.0.0.1", "1");
    o.has_sock = 1;
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(s >= 0);
    o.sock = s;
    sync_fail(&o, -EINVAL, "host/port and sock can not be specified at the same time");
    CHECK(fd_is_open(s)); /* untouched on failure */
    opts(&o, NULL, "1");
    o.has_sock = 1;
    o.sock = s;
    sync_fail(&o, -EINVAL, "host/port and sock can not be specified at the same time");
    CHECK(fd_is_open(s));
    close(s);

    opts(&o, NULL, NULL);
    sync_fail(&o, -EINVAL, "host and port was not specified and no sock specified");

    opts(&o, "127.0.0.1", "1");
    o.server_hostname = "example.com";
    sync_fail(&o, -EINVAL, "server_hostname is only meaningful with ssl");
    o.server_hostname = ""; /* "" counts too */
    sync_fail(&o, -EINVAL, "server_hostname is only meaningful with ssl");
    /* The order: server_hostname wins over the timeout and over no host. */
    opts(&o, NULL, NULL);
    o.server_hostname = "x";
    o.has_ssl_handshake_timeout = 1;
    o.ssl_handshake_timeout = 1;
    sync_fail(&o, -EINVAL, "server_hostname is only meaningful with ssl");

    opts(&o, "127.0.0.1", "1");
    o.has_ssl_handshake_timeout = 1;
    o.ssl_handshake_timeout = 1;
    sync_fail(&o, -EINVAL, "ssl_handshake_timeout is only meaningful with ssl");
    opts(&o, "127.0.0.1", "1");
    o.has_ssl_shutdown_timeout = 1;
    o.ssl_shutdown_timeout = 1;
    sync_fail(&o, -EINVAL, "ssl_shutdown_timeout is only meaningful with ssl");

    /* TLS options: a bad version is refused, then asyncio's checks apply. */
    goconn_ssl_options ssl_bad;
    memset(&ssl_bad, 0, sizeof ssl_bad);
    ssl_bad.version = 99;
    opts(&o, "127.0.0.1", "1");
    o.ssl = &ssl_bad;
    sync_fail(&o, GOCONN_EVERSION, NULL);
    goconn_ssl_options ssl_ok;
    CHECK_EQ_INT(goconn_ssl_options_init(&ssl_ok, GOCONN_SSL_OPTIONS_VERSION), 0);
    opts(&o, NULL, NULL);
    o.ssl = &ssl_ok;
    o.has_sock = 1;
    o.sock = 0;
    sync_fail(&o, -EINVAL, "You must set server_hostname when using ssl without a host");

    /* An unknown tcp_nodelay. */
    opts(&o, "127.0.0.1", "1");
    o.tcp_nodelay = 7;
    sync_fail(&o, -EINVAL, NULL);

    /* errbuf is always NUL-terminated and truncated to fit. */
    opts(&o, NULL, NULL);
    char small[8];
    memset(small, 'X', sizeof small);
    o.errbuf = small;
    o.errbuf_size = sizeof small;
    CHECK_EQ_INT(goconn_open_connection(&o, &p, stray_done, NULL, NULL), -EINVAL);
    CHECK_STREQ(small, "host an");
    char one[1] = {'X'};
    o.errbuf = one;
    o.errbuf_size = 1;
    CHECK_EQ_INT(goconn_open_connection(&o, &p, stray_done, NULL, NULL), -EINVAL);
    CHECK_EQ_INT(one[0], 0);
    /* A size of 0 leaves the buffer alone. */
    one[0] = 'X';
    o.errbuf_size = 0;
    CHECK_EQ_INT(goconn_open_connection(&o, &p, stray_done, NULL, NULL), -EINVAL);
    CHECK_EQ_INT(one[0], 'X');
}

/* Bad sock= descriptors. */
static void bad_socks(void) {
    goconn_options o;
    char want[256];

    /* A closed descriptor, and a negative one. */
    int closed_fd = 1000;
    while (fd_is_open(closed_fd)) closed_fd++;
    opts(&o, NULL, NULL);
    o.has_sock = 1;
    o.sock = closed_fd;
    sync_fail(&o, -EBADF, "[Errno 9] Bad file descriptor");
    o.sock = -1;
    sync_fail(&o, -EBADF, NULL);

    /* UDP: not a stream socket. */
    int u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    CHECK(u >= 0);
    int flags_before = fcntl(u, F_GETFL);
    o.sock = u;
    snprintf(want, sizeof want, "A Stream Socket was expected, got fd %d of type %d", u, SOCK_DGRAM);
    sync_fail(&o, GOCONN_ENOTSTREAM, want);
    CHECK(fd_is_open(u));
    CHECK_EQ_INT(fcntl(u, F_GETFL), flags_before); /* not even made non-blocking */
    close(u);

    /* A listening socket. */
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(l >= 0);
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_EQ_INT(bind(l, (struct sockaddr *)&sin, sizeof sin), 0);
    CHECK_EQ_INT(listen(l, 1), 0);
    o.sock = l;
    snprintf(want, sizeof want, "A connected stream socket was expected, got listening socket fd %d", l);
    sync_fail(&o, -EINVAL, want);
    CHECK(fd_is_open(l));
    close(l);

    /* A pipe. */
    int pfd[2];
    CHECK_EQ_INT(pipe(pfd), 0);
    o.sock = pfd[0];
    sync_fail(&o, -ENOTSOCK, "[Errno 88] Socket operation on non-socket");
    CHECK(fd_is_open(pfd[0]));
    close(pfd[0]);
    close(pfd[1]);
}

/* ------------------------------------------------------------------------ */
/* Errors reported through on_done                                           */
/* ------------------------------------------------------------------------ */

static void async_checks(void) {
    goconn_options o;
    result r;

    opts(&o, "127.0.0.1", "99999");
    async_fail(&o, GOCONN_EOVERFLOW, "connect(): port must be 0-65535.", &r);
    CHECK_EQ_INT(r.errnum, 0);
    opts(&o, "127.0.0.1", "-1");
    async_fail(&o, GOCONN_EOVERFLOW, "connect(): port must be 0-65535.", &r);

    opts(&o, "127.0.0.1", "80");
    o.family = 12345;
    async_fail(&o, GOCONN_EGAI, "[Errno -6] ai_family not supported", &r);
    CHECK_EQ_INT(r.errnum, -6);

    /* An embedded NUL, passed with host_len. */
    static const char nul_host[] = "127.0.0.1\0evil";
    opts(&o, nul_host, "80");
    o.host_len = sizeof nul_host - 1;
    async_fail(&o, -EINVAL, "embedded null character", &r);
    CHECK_EQ_INT(r.errnum, 0);
    static const char nul_name[] = "local\0host";
    opts(&o, nul_name, "80");
    o.host_len = sizeof nul_name - 1;
    async_fail(&o, -EINVAL, "embedded null character", &r);
    /* host_len shorter than the string: only that much is the host. */
    opts(&o, "127.0.0.1:garbage", "99999");
    o.host_len = 9;
    async_fail(&o, GOCONN_EOVERFLOW, "connect(): port must be 0-65535.", &r);

    /* A 100 KB host name. */
    size_t big = 100 * 1024;
    char *host = malloc(big + 1);
    CHECK(host != NULL);
    memset(host, 'a', big);
    host[big] = 0;
    opts(&o, host, "80");
    async_fail(&o, GOCONN_EGAI, NULL, &r);
    CHECK(r.errnum < 0);
    /* The same with host_len and no terminator at all. */
    host[big] = 'a';
    opts(&o, host, "80");
    o.host_len = big;
    async_fail(&o, GOCONN_EGAI, NULL, &r);
    free(host);
}

/* ------------------------------------------------------------------------ */
/* Handles: live, stale, freed, made-up                                      */
/* ------------------------------------------------------------------------ */

typedef struct {
    goconn_transport *t;
    volatile int done, lost, made;
    int lost_error;
    char echo[64];
    size_t nEcho;
    volatile int got_echo;
} conn;

static void c_made(void *p, goconn_transport *t) {
    conn *c = p;
    c->t = t;
    c->made = 1;
}
static void c_data(void *p, const void *d, size_t n) {
    conn *c = p;
    CHECK(c->nEcho + n <= sizeof c->echo);
    memcpy(c->echo + c->nEcho, d, n);
    c->nEcho += n;
    if (c->nEcho >= 4) c->got_echo = 1;
}
static void c_lost(void *p, const goconn_error *e) {
    conn *c = p;
    c->lost_error = e != NULL;
    c->lost = 1;
}
static void c_done(void *u, goconn_transport *t, void *p, const goconn_error *e) {
    conn *c = u;
    CHECK(e == NULL && t == c->t && p == c);
    c->done = 1;
}

static void open_conn(conn *c, goconn_loop *loop, const char *port, int has_sock, int sock) {
    memset(c, 0, sizeof *c);
    goconn_options o;
    CHECK_EQ_INT(goconn_options_init(&o, GOCONN_OPTIONS_VERSION), 0);
    o.loop = loop;
    if (has_sock) {
        o.has_sock = 1;
        o.sock = sock;
    } else {
        o.host = "127.0.0.1";
        o.port = port;
    }
    goconn_protocol p = GOCONN_PROTOCOL_INIT;
    p.connection_made = c_made;
    p.data_received = c_data;
    p.connection_lost = c_lost;
    CHECK_EQ_INT(goconn_open_connection(&o, &p, c_done, c, NULL), 0);
}

/* Every transport function with this handle gives `code`. */
static void all_transport_calls(goconn_transport *t, int code) {
    int64_t lo, hi;
    size_t sz;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    const goconn_attempt *const *at;
    size_t nat;
    struct iovec bufs[1] = {{(void *)"x", 1}};
    char errbuf[64];
    CHECK_EQ_INT(goconn_transport_write(t, "x", 1), code);
    CHECK_EQ_INT(goconn_transport_write(t, NULL, 0), code);
    CHECK_EQ_INT(goconn_transport_writelines(t, bufs, 1), code);
    CHECK_EQ_INT(goconn_transport_write_eof(t), code);
    CHECK_EQ_INT(goconn_transport_can_write_eof(t), code);
    CHECK_EQ_INT(goconn_transport_close(t), code);
    CHECK_EQ_INT(goconn_transport_abort(t), code);
    CHECK_EQ_INT(goconn_transport_is_closing(t), code);
    CHECK_EQ_INT(goconn_transport_pause_reading(t), code);
    CHECK_EQ_INT(goconn_transport_resume_reading(t), code);
    CHECK_EQ_INT(goconn_transport_is_reading(t), code);
    CHECK_EQ_INT(goconn_transport_set_write_buffer_limits(t, 10, 20, errbuf, sizeof errbuf), code);
    CHECK_EQ_INT(goconn_transport_set_write_buffer_limits(t, GOCONN_LIMIT_DEFAULT, GOCONN_LIMIT_DEFAULT, NULL, 0), code);
    CHECK_EQ_INT(goconn_transport_get_write_buffer_limits(t, &lo, &hi), code);
    CHECK_EQ_INT(goconn_transport_get_write_buffer_limits(t, NULL, NULL), code);
    CHECK_EQ_INT(goconn_transport_get_write_buffer_size(t, &sz), code);
    CHECK_EQ_INT(goconn_transport_get_fd(t), code);
    CHECK_EQ_INT(goconn_transport_get_peername(t, (struct sockaddr *)&ss, &sl), code);
    CHECK_EQ_INT(goconn_transport_get_sockname(t, (struct sockaddr *)&ss, &sl), code);
    CHECK_EQ_INT(goconn_transport_get_attempts(t, &at, &nat), code);
    CHECK_EQ_INT(goconn_transport_get_attempts(t, NULL, NULL), code);
}

/* NULL out-pointers and other bad arguments on a live transport. */
static void live_transport_bad_args(goconn_transport *t) {
    int64_t lo, hi;
    size_t sz;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    const goconn_attempt *const *at;
    size_t nat;
    CHECK_EQ_INT(goconn_transport_get_write_buffer_limits(t, NULL, &hi), -EINVAL);
    CHECK_EQ_INT(goconn_transport_get_write_buffer_limits(t, &lo, NULL), -EINVAL);
    CHECK_EQ_INT(goconn_transport_get_write_buffer_size(t, NULL), -EINVAL);
    CHECK_EQ_INT(goconn_transport_get_peername(t, NULL, &sl), -EINVAL);
    CHECK_EQ_INT(goconn_transport_get_peername(t, (struct sockaddr *)&ss, NULL), -EINVAL);
    CHECK_EQ_INT(goconn_transport_get_sockname(t, NULL, &sl), -EINVAL);
    CHECK_EQ_INT(goconn_transport_get_sockname(t, (struct sockaddr *)&ss, NULL), -EINVAL);
    CHECK_EQ_INT(goconn_transport_get_attempts(t, NULL, &nat), -EINVAL);
    CHECK_EQ_INT(goconn_transport_get_attempts(t, &at, NULL), -EINVAL);
    /* A buffer too small for the address. */
    sl = 4;
    CHECK_EQ_INT(goconn_transport_get_peername(t, (struct sockaddr *)&ss, &sl), -ENOSPC);
    sl = sizeof(struct sockaddr_in) - 1;
    CHECK_EQ_INT(goconn_transport_get_sockname(t, (struct sockaddr *)&ss, &sl), -ENOSPC);
    /* Data NULL with a length; writelines with a NULL array. */
    CHECK_EQ_INT(goconn_transport_write(t, NULL, 5), -EINVAL);
    CHECK_EQ_INT(goconn_transport_write(t, NULL, 0), 0); /* empty: a no-op */
    CHECK_EQ_INT(goconn_transport_writelines(t, NULL, 3), -EINVAL);
    CHECK_EQ_INT(goconn_transport_writelines(t, NULL, 0), 0);
    struct iovec bad[2] = {{(void *)"ok", 2}, {NULL, 3}};
    CHECK_EQ_INT(goconn_transport_writelines(t, bad, 2), -EINVAL);
    /* Garbage lengths are errors, not crashes (nor a poisoned library). */
    CHECK_EQ_INT(goconn_transport_write(t, "x", (size_t)-1), -EINVAL);
    CHECK_EQ_INT(goconn_transport_write(t, "x", (size_t)1 << 62), -EINVAL);
    struct iovec huge[2] = {{(void *)"ok", 2}, {(void *)"x", (size_t)-1}};
    CHECK_EQ_INT(goconn_transport_writelines(t, huge, 2), -EINVAL);
    CHECK_EQ_INT(goconn_transport_writelines(t, huge, (size_t)-1), -EINVAL);
    char bigbuf[256];
    CHECK_EQ_INT(goconn_transport_set_write_buffer_limits(t, 10, 20, bigbuf, (size_t)-1), -EINVAL);
    CHECK_STREQ(bigbuf, "high (10) must be >= low (20) must be >= 0");

    /* Water marks: asyncio's ValueError text, and nothing changes. */
    char errbuf[128];
    CHECK_EQ_INT(goconn_transport_set_write_buffer_limits(t, 10, 20, errbuf, sizeof errbuf), -EINVAL);
    CHECK_STREQ(errbuf, "high (10) must be >= low (20) must be >= 0");
    CHECK_EQ_INT(goconn_transport_set_write_buffer_limits(t, GOCONN_LIMIT_DEFAULT, -1, errbuf, sizeof errbuf), -EINVAL);
    CHECK_STREQ(errbuf, "high (-4) must be >= low (-1) must be >= 0");
    CHECK_EQ_INT(goconn_transport_set_write_buffer_limits(t, -8, GOCONN_LIMIT_DEFAULT, errbuf, sizeof errbuf), -EINVAL);
    CHECK_STREQ(errbuf, "high (-8) must be >= low (-2) must be >= 0");
    CHECK_EQ_INT(goconn_transport_set_write_buffer_limits(t, 10, 20, NULL, 0), -EINVAL);
    CHECK_EQ_INT(goconn_transport_get_write_buffer_limits(t, &lo, &hi), 0);
    CHECK_EQ_INT(lo, 16384);
    CHECK_EQ_INT(hi, 65536);
    /* The derivations, as asyncio's. */
    CHECK_EQ_INT(goconn_transport_set_write_buffer_limits(t, 100, GOCONN_LIMIT_DEFAULT, NULL, 0), 0);
    CHECK_EQ_INT(goconn_transport_get_write_buffer_limits(t, &lo, &hi), 0);
    CHECK(lo == 25 && hi == 100);
    CHECK_EQ_INT(goconn_transport_set_write_buffer_limits(t, GOCONN_LIMIT_DEFAULT, 100, NULL, 0), 0);
    CHECK_EQ_INT(goconn_transport_get_write_buffer_limits(t, &lo, &hi), 0);
    CHECK(lo == 100 && hi == 400);
    CHECK_EQ_INT(goconn_transport_set_write_buffer_limits(t, 0, GOCONN_LIMIT_DEFAULT, NULL, 0), 0);
    CHECK_EQ_INT(goconn_transport_get_write_buffer_limits(t, &lo, &hi), 0);
    CHECK(lo == 0 && hi == 0);
    CHECK_EQ_INT(goconn_transport_set_write_buffer_limits(t, GOCONN_LIMIT_DEFAULT, GOCONN_LIMIT_DEFAULT, NULL, 0), 0);
    CHECK_EQ_INT(goconn_transport_get_write_buffer_limits(t, &lo, &hi), 0);
    CHECK(lo == 16384 && hi == 65536);
    (void)sz;
}

static void made_up_handles(void) {
    goconn_transport *fake_t[] = {NULL, (goconn_transport *)0x1234, (goconn_transport *)(uintptr_t)-1,
                                  (goconn_transport *)0x100000000010ull};
    for (size_t i = 0; i < sizeof fake_t / sizeof fake_t[0]; i++) all_transport_calls(fake_t[i], -EBADF);
    goconn_loop *fake_l[] = {NULL, (goconn_loop *)0x1234, (goconn_loop *)(uintptr_t)-1};
    for (size_t i = 0; i < sizeof fake_l / sizeof fake_l[0]; i++) {
        CHECK_EQ_INT(goconn_loop_fd(fake_l[i]), -EBADF);
        CHECK_EQ_INT(goconn_loop_dispatch(fake_l[i], 0), -EBADF);
        CHECK_EQ_INT(goconn_loop_free(fake_l[i]), -EBADF);
    }
    CHECK_EQ_INT(goconn_request_cancel(NULL), -EBADF);
    CHECK_EQ_INT(goconn_request_cancel((goconn_request *)0x1234), -EBADF);

    /* A made-up loop in the options. */
    goconn_options o;
    opts(&o, "127.0.0.1", "1");
    o.loop = (goconn_loop *)0x1234;
    sync_fail(&o, -EBADF, NULL);
}

static void handles(void) {
    test_peer peer;
    peer_start(&peer, AF_INET, PEER_ECHO, NULL, 0);
    goconn_loop *loop;
    CHECK_EQ_INT(goconn_loop_new(&loop), 0);
    CHECK(goconn_loop_fd(loop) >= 0);
    CHECK_EQ_INT(goconn_loop_dispatch(loop, 0), 0); /* nothing pending */

    conn c;
    open_conn(&c, loop, peer_port(&peer), 0, 0);
    /* A pending request keeps the loop busy. */
    CHECK_EQ_INT(goconn_loop_free(loop), -EBUSY);
    CHECK(loop_run(loop, &c.done, 10000));
    goconn_transport *t = c.t;

    /* Handles of one kind are not handles of another. */
    all_transport_calls((goconn_transport *)loop, -EBADF);
    CHECK_EQ_INT(goconn_loop_fd((goconn_loop *)t), -EBADF);
    CHECK_EQ_INT(goconn_loop_dispatch((goconn_loop *)t, 0), -EBADF);
    CHECK_EQ_INT(goconn_loop_free((goconn_loop *)t), -EBADF);
    CHECK_EQ_INT(goconn_request_cancel((goconn_request *)t), -EBADF);

    live_transport_bad_args(t);

    /* goconn_loop_free with a live connection: -EBUSY, and the loop goes on. */
    CHECK_EQ_INT(goconn_loop_free(loop), -EBUSY);
    CHECK_EQ_INT(goconn_loop_free(loop), -EBUSY);
    CHECK(goconn_loop_fd(loop) >= 0);
    CHECK_EQ_INT(goconn_transport_write(t, "ping", 4), 0);
    CHECK(loop_run(loop, &c.got_echo, 10000));
    CHECK(memcmp(c.echo, "ping", 4) == 0);
    CHECK_EQ_INT(goconn_transport_close(t), 0);
    /* Closing but not lost yet: still busy. */
    CHECK_EQ_INT(goconn_loop_free(loop), -EBUSY);
    CHECK(loop_run(loop, &c.lost, 10000));
    CHECK_EQ_INT(c.lost_error, 0);

    /* Stale: every transport function after connection_lost returned. */
    all_transport_calls(t, -EBADF);

    /* An adopted socket: no attempt trace. And an unconnected one: no peer. */
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(s >= 0);
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons((uint16_t)peer.port);
    CHECK_EQ_INT(connect(s, (struct sockaddr *)&sin, sizeof sin), 0);
    open_conn(&c, loop, NULL, 1, s);
    CHECK(loop_run(loop, &c.done, 10000));
    const goconn_attempt *const *at = (const goconn_attempt *const *)0x1;
    size_t nat = 99;
    CHECK_EQ_INT(goconn_transport_get_attempts(c.t, &at, &nat), 0);
    CHECK_EQ_INT(nat, 0);
    CHECK_EQ_INT(goconn_transport_get_fd(c.t), s);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    CHECK_EQ_INT(goconn_transport_get_peername(c.t, (struct sockaddr *)&ss, &sl), 0);
    CHECK_EQ_INT(ntohs(((struct sockaddr_in *)&ss)->sin_port), peer.port);
    CHECK_EQ_INT(goconn_transport_write(c.t, "pong", 4), 0);
    CHECK(loop_run(loop, &c.got_echo, 10000));
    CHECK_EQ_INT(goconn_transport_abort(c.t), 1);
    CHECK(loop_run(loop, &c.lost, 10000));
    CHECK(!fd_is_open(s)); /* the library closed it */

    int u = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(u >= 0);
    open_conn(&c, loop, NULL, 1, u);
    CHECK(loop_run(loop, &c.done, 10000));
    sl = sizeof ss;
    CHECK_EQ_INT(goconn_transport_get_peername(c.t, (struct sockaddr *)&ss, &sl), -ENOTCONN);
    CHECK_EQ_INT(goconn_transport_abort(c.t), 1);
    CHECK(loop_run(loop, &c.lost, 10000));

    /* Freed loop. */
    CHECK_EQ_INT(goconn_loop_free(loop), 0);
    CHECK_EQ_INT(goconn_loop_fd(loop), -EBADF);
    CHECK_EQ_INT(goconn_loop_dispatch(loop, 0), -EBADF);
    CHECK_EQ_INT(goconn_loop_free(loop), -EBADF);
    goconn_options o;
    opts(&o, "127.0.0.1", peer_port(&peer));
    o.loop = loop;
    sync_fail(&o, -EBADF, NULL);
    /* A new loop is a new handle: the old one stays dead. */
    goconn_loop *loop2;
    CHECK_EQ_INT(goconn_loop_new(&loop2), 0);
    CHECK(loop2 != loop);
    CHECK_EQ_INT(goconn_loop_fd(loop), -EBADF);
    CHECK_EQ_INT(goconn_loop_free(loop2), 0);

    peer_stop(&peer);
}

/* goconn_loop_dispatch's max: it runs at most that many events, and the fd
 * stays readable for the rest. */
static atomic_int max_done;
static void max_on_done(void *u, goconn_transport *t, void *p, const goconn_error *e) {
    (void)u, (void)t, (void)p;
    CHECK(e != NULL && e->code == -ECONNREFUSED);
    atomic_fetch_add(&max_done, 1);
}

static void dispatch_max(void) {
    int rfd;
    int port = refused_port(&rfd);
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", port);
    goconn_loop *loop;
    CHECK_EQ_INT(goconn_loop_new(&loop), 0);
    for (int i = 0; i < 3; i++) {
        goconn_options o;
        opts(&o, "127.0.0.1", port_s);
        o.loop = loop;
        goconn_protocol p = GOCONN_PROTOCOL_INIT;
        CHECK_EQ_INT(goconn_open_connection(&o, &p, max_on_done, NULL, NULL), 0);
    }
    /* Wait until all three are queued: nothing runs without a dispatch. */
    sleep_ms(300);
    CHECK_EQ_INT(atomic_load(&max_done), 0);
    CHECK_EQ_INT(goconn_loop_free(loop), -EBUSY);
    CHECK_EQ_INT(goconn_loop_dispatch(loop, 1), 1);
    CHECK_EQ_INT(atomic_load(&max_done), 1);
    struct pollfd pfd = {goconn_loop_fd(loop), POLLIN, 0};
    CHECK_EQ_INT(poll(&pfd, 1, 0), 1); /* still readable */
    CHECK_EQ_INT(goconn_loop_dispatch(loop, 0), 2);
    CHECK_EQ_INT(atomic_load(&max_done), 3);
    CHECK_EQ_INT(poll(&pfd, 1, 0), 0); /* drained */
    CHECK_EQ_INT(goconn_loop_dispatch(loop, 5), 0);
    CHECK_EQ_INT(goconn_loop_free(loop), 0);
    close(rfd);
}

/* After fork() the child gets GOCONN_EFORKED from every call, at once. */
static void forked_child(void) {
    goconn_loop *loop;
    CHECK_EQ_INT(goconn_loop_new(&loop), 0);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        alarm(10); /* a hang kills the child, and the parent sees it */
        goconn_options o;
        goconn_loop *l2;
        int bad = 0;
        bad |= goconn_live_handles() != GOCONN_EFORKED;
        bad |= goconn_loop_new(&l2) != GOCONN_EFORKED;
        bad |= goconn_loop_fd(loop) != GOCONN_EFORKED;
        bad |= goconn_loop_dispatch(loop, 0) != GOCONN_EFORKED;
        bad |= goconn_options_init(&o, GOCONN_OPTIONS_VERSION) != GOCONN_EFORKED;
        bad |= goconn_open_connection(&o, NULL, NULL, NULL, NULL) != GOCONN_EFORKED;
        bad |= goconn_transport_write((goconn_transport *)0x1234, "x", 1) != GOCONN_EFORKED;
        bad |= goconn_request_cancel((goconn_request *)0x1234) != GOCONN_EFORKED;
        bad |= goconn_loop_free(loop) != GOCONN_EFORKED;
        /* Pure C functions keep working. */
        bad |= goconn_abi_version() != GOCONN_ABI_VERSION;
        bad |= strcmp(goconn_strerror(GOCONN_EFORKED), "unknown error") == 0;
        _exit(bad ? 3 : 0);
    }
    int status = 0;
    CHECK_EQ_INT(waitpid(pid, &status, 0), pid);
    CHECK(WIFEXITED(status));
    CHECK_EQ_INT(WEXITSTATUS(status), 0);
    /* The parent is unaffected. */
    CHECK(goconn_loop_fd(loop) >= 0);
    CHECK_EQ_INT(goconn_loop_free(loop), 0);
}

int main(void) {
    versions_and_inits();
    strerror_texts();
    bad_socks(); /* first: no library thread opens descriptors yet */
    sync_checks();
    made_up_handles();
    async_checks();
    handles();
    dispatch_max();
    forked_child();
    made_up_handles();
    sleep_ms(50);
    CHECK_EQ_INT(atomic_load(&stray_calls), 0);
    CHECK_EQ_INT(goconn_live_handles(), 0);
    printf("ok\n");
    return 0;
}
