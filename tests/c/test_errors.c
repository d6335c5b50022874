/* Failure reporting through on_done: a refused port (alone, with all_errors,
 * and as two different refusals on ::1 and 127.0.0.1), a local_addr bind
 * error, a local_addr of the wrong family, and an unknown name, with no
 * protocol callback ever. Also a failing protocol factory (GOCONN_EFACTORY)
 * and a reset by the peer (connection_lost with -ECONNRESET). Each in loop
 * mode and in direct mode. */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testutil.h"

/* A deep copy of what on_done received, so the checks can run on the main
 * thread after the callback (the goconn_error is only valid during it). */
typedef struct saved_error {
    int code, errnum;
    char message[512];
    char strerror_[512];
    int has_strerror;
    size_t ncauses;
    struct saved_error *causes[4];
    size_t nattempts;
    goconn_attempt attempts[4];
    char attempt_error[4][512];
    int attempt_has_error[4];
} saved_error;

typedef struct {
    volatile int done;
    atomic_int ndone;
    atomic_int protocol_calls;
    int had_error, had_transport;
    saved_error err;
} result;

static void save_error(saved_error *s, const goconn_error *e) {
    memset(s, 0, sizeof *s);
    CHECK_EQ_INT(e->version, GOCONN_ERROR_VERSION);
    s->code = e->code;
    s->errnum = e->errnum;
    CHECK(e->message != NULL);
    snprintf(s->message, sizeof s->message, "%s", e->message);
    if (e->strerror) {
        s->has_strerror = 1;
        snprintf(s->strerror_, sizeof s->strerror_, "%s", e->strerror);
    }
    s->ncauses = e->ncauses;
    CHECK(e->ncauses <= 4);
    CHECK((e->ncauses == 0) == (e->causes == NULL));
    for (size_t i = 0; i < e->ncauses; i++) {
        s->causes[i] = malloc(sizeof(saved_error));
        CHECK(s->causes[i] != NULL);
        save_error(s->causes[i], e->causes[i]);
    }
    s->nattempts = e->nattempts;
    CHECK(e->nattempts <= 4);
    CHECK((e->nattempts == 0) == (e->attempts == NULL));
    for (size_t i = 0; i < e->nattempts; i++) {
        s->attempts[i] = *e->attempts[i];
        if (e->attempts[i]->error) {
            s->attempt_has_error[i] = 1;
            snprintf(s->attempt_error[i], sizeof s->attempt_error[i], "%s", e->attempts[i]->error);
        }
        s->attempts[i].error = NULL;
    }
}

static void free_error(saved_error *s) {
    for (size_t i = 0; i < s->ncauses; i++) {
        free_error(s->causes[i]);
        free(s->causes[i]);
    }
}

static void on_done(void *u, goconn_transport *t, void *p, const goconn_error *e) {
    result *r = u;
    atomic_fetch_add(&r->ndone, 1);
    r->had_transport = t != NULL || p != NULL;
    r->had_error = e != NULL;
    if (e) save_error(&r->err, e);
    r->done = 1;
}

static void never_made(void *p, goconn_transport *t) {
    (void)t;
    atomic_fetch_add(&((result *)p)->protocol_calls, 1);
}
static void never_lost(void *p, const goconn_error *e) {
    (void)e;
    atomic_fetch_add(&((result *)p)->protocol_calls, 1);
}
static int never_factory(void *u, goconn_transport *t, void **out) {
    (void)t;
    atomic_fetch_add(&((result *)u)->protocol_calls, 1);
    *out = u;
    return 0;
}

/* run opens a connection with *o (loop set by the caller or not) and waits
 * for its on_done; it checks that it failed, exactly once, with no protocol
 * callback. */
static void run(goconn_options *o, result *r) {
    printf("case: loop=%d host=%s port=%s all_errors=%d he=%d local=%s\n", o->loop != NULL, o->host ? o->host : "(null)", o->port ? o->port : "(null)", o->all_errors, o->has_happy_eyeballs_delay, o->has_local_addr ? o->local_host : "-");
    fflush(stdout);
    memset(r, 0, sizeof *r);
    goconn_protocol p = GOCONN_PROTOCOL_INIT;
    p.factory = never_factory;
    p.connection_made = never_made;
    p.connection_lost = never_lost;
    char errbuf[256] = "untouched";
    o->errbuf = errbuf;
    o->errbuf_size = sizeof errbuf;
    goconn_request *req = NULL;
    CHECK_EQ_INT(goconn_open_connection(o, &p, on_done, r, &req), 0);
    CHECK_STREQ(errbuf, "untouched"); /* no synchronous error text */
    CHECK(req != NULL);
    if (o->loop) {
        CHECK(loop_run(o->loop, &r->done, 10000));
        loop_pump(o->loop, 50); /* nothing else may follow */
    } else {
        CHECK(wait_flag(&r->done, 10000));
        CHECK(wait_live_handles(0, 10000));
        sleep_ms(50);
    }
    CHECK_EQ_INT(atomic_load(&r->ndone), 1);
    CHECK_EQ_INT(atomic_load(&r->protocol_calls), 0);
    CHECK(!r->had_transport);
    CHECK(r->had_error);
    /* The request is gone once on_done returned. */
    CHECK_EQ_INT(goconn_request_cancel(req), -EBADF);
}

static void init_opts(goconn_options *o, goconn_loop *loop, const char *host, const char *port) {
    CHECK_EQ_INT(goconn_options_init(o, GOCONN_OPTIONS_VERSION), 0);
    o->loop = loop;
    o->host = host;
    o->port = port;
}

static void check_refusal(const saved_error *e, int port, const char *host_repr) {
    char want_msg[320], want_str[256];
    snprintf(want_str, sizeof want_str, "Connect call failed %s", host_repr);
    snprintf(want_msg, sizeof want_msg, "[Errno 111] %s", want_str);
    (void)port;
    CHECK_EQ_INT(e->code, -ECONNREFUSED);
    CHECK_EQ_INT(e->errnum, 111);
    CHECK_STREQ(e->message, want_msg);
    CHECK(e->has_strerror);
    CHECK_STREQ(e->strerror_, want_str);
    CHECK_EQ_INT(e->ncauses, 0);
}

static void refused_single(goconn_loop *loop, int port) {
    char port_s[16], repr[64];
    snprintf(port_s, sizeof port_s, "%d", port);
    snprintf(repr, sizeof repr, "('127.0.0.1', %d)", port);
    goconn_options o;
    result r;
    init_opts(&o, loop, "127.0.0.1", port_s);
    run(&o, &r);
    check_refusal(&r.err, port, repr);
    CHECK_EQ_INT(r.err.nattempts, 1);
    const goconn_attempt *a = &r.err.attempts[0];
    CHECK_EQ_INT(a->version, GOCONN_ATTEMPT_VERSION);
    CHECK_EQ_INT(a->outcome, GOCONN_ATTEMPT_REFUSED);
    CHECK_EQ_INT(a->errnum, ECONNREFUSED);
    CHECK_EQ_INT(a->family, AF_INET);
    CHECK_STREQ(a->remote_host, "127.0.0.1");
    CHECK_EQ_INT(a->remote_port, port);
    CHECK(a->end_ns >= a->start_ns && a->start_ns > 0);
    CHECK(r.err.attempt_has_error[0]);
    CHECK_STREQ(r.err.attempt_error[0], r.err.message);
    free_error(&r.err);

    /* all_errors: an ExceptionGroup of the one refusal. */
    init_opts(&o, loop, "127.0.0.1", port_s);
    o.all_errors = 1;
    run(&o, &r);
    CHECK_EQ_INT(r.err.code, GOCONN_EGROUP);
    CHECK_EQ_INT(r.err.errnum, 0);
    CHECK(!r.err.has_strerror);
    CHECK_STREQ(r.err.message, "create_connection failed (1 sub-exception)");
    CHECK_EQ_INT(r.err.ncauses, 1);
    check_refusal(r.err.causes[0], port, repr);
    CHECK_EQ_INT(r.err.nattempts, 1);
    CHECK_EQ_INT(r.err.attempts[0].outcome, GOCONN_ATTEMPT_REFUSED);
    free_error(&r.err);

    /* Happy Eyeballs on one address changes nothing. */
    init_opts(&o, loop, "127.0.0.1", port_s);
    o.has_happy_eyeballs_delay = 1;
    o.happy_eyeballs_delay = 0.05;
    run(&o, &r);
    check_refusal(&r.err, port, repr);
    CHECK_EQ_INT(r.err.nattempts, 1);
    free_error(&r.err);
}

/* host None, port P resolves to loopback: ::1 and 127.0.0.1 here. Two
 * refusals with different texts: "Multiple exceptions", or with all_errors a
 * group of two. Skipped when the resolver gives one address. */
static void refused_two(goconn_loop *loop, int port) {
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", port);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(NULL, port_s, &hints, &res) != 0) {
        printf("refused_two: skipped (getaddrinfo failed)\n");
        return;
    }
    char reprs[2][64];
    int families[2];
    int n = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next, n++) {
        if (n >= 2) continue;
        families[n] = ai->ai_family;
        if (ai->ai_family == AF_INET6)
            snprintf(reprs[n], sizeof reprs[n], "('::1', %d, 0, 0)", port);
        else
            snprintf(reprs[n], sizeof reprs[n], "('127.0.0.1', %d)", port);
    }
    freeaddrinfo(res);
    if (n != 2 || families[0] == families[1]) {
        printf("refused_two: skipped (loopback resolves to %d addresses)\n", n);
        return;
    }
    /* ::1 must refuse as well: nothing listens there on this port. */
    int probe = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in6 s6;
    memset(&s6, 0, sizeof s6);
    s6.sin6_family = AF_INET6;
    s6.sin6_addr = in6addr_loopback;
    s6.sin6_port = htons((uint16_t)port);
    int crc = probe >= 0 ? connect(probe, (struct sockaddr *)&s6, sizeof s6) : -1;
    int cerr = errno;
    if (probe >= 0) close(probe);
    if (crc == 0 || cerr != ECONNREFUSED) {
        printf("refused_two: skipped (::1 does not refuse)\n");
        return;
    }

    char want[512];
    snprintf(want, sizeof want,
             "Multiple exceptions: [Errno 111] Connect call failed %s, [Errno 111] Connect call failed %s",
             reprs[0], reprs[1]);
    goconn_options o;
    result r;
    init_opts(&o, loop, NULL, port_s);
    run(&o, &r);
    CHECK_EQ_INT(r.err.code, GOCONN_EMULTIPLE);
    CHECK_EQ_INT(r.err.errnum, 0);
    CHECK(!r.err.has_strerror);
    CHECK_STREQ(r.err.message, want);
    CHECK_EQ_INT(r.err.ncauses, 2);
    check_refusal(r.err.causes[0], port, reprs[0]);
    check_refusal(r.err.causes[1], port, reprs[1]);
    CHECK_EQ_INT(r.err.nattempts, 2);
    for (int i = 0; i < 2; i++) {
        CHECK_EQ_INT(r.err.attempts[i].outcome, GOCONN_ATTEMPT_REFUSED);
        CHECK_EQ_INT(r.err.attempts[i].errnum, ECONNREFUSED);
        CHECK_EQ_INT(r.err.attempts[i].family, families[i]);
        CHECK_EQ_INT(r.err.attempts[i].remote_port, port);
    }
    free_error(&r.err);

    init_opts(&o, loop, NULL, port_s);
    o.all_errors = 1;
    o.has_happy_eyeballs_delay = 1;
    o.happy_eyeballs_delay = 0.01;
    run(&o, &r);
    CHECK_EQ_INT(r.err.code, GOCONN_EGROUP);
    CHECK_STREQ(r.err.message, "create_connection failed (2 sub-exceptions)");
    CHECK_EQ_INT(r.err.ncauses, 2);
    CHECK_EQ_INT(r.err.nattempts, 2);
    /* Happy Eyeballs interleaves, and both families are there once each. */
    CHECK(r.err.attempts[0].family != r.err.attempts[1].family);
    for (int i = 0; i < 2; i++) {
        CHECK_EQ_INT(r.err.causes[i]->code, -ECONNREFUSED);
        CHECK_EQ_INT(r.err.attempts[i].outcome, GOCONN_ATTEMPT_REFUSED);
    }
    free_error(&r.err);
}

/* local_addr errors: a port in use, and a family with no match. */
static void local_addr_errors(goconn_loop *loop, int port, int busy_port) {
    char port_s[16], busy_s[16], want[256];
    snprintf(port_s, sizeof port_s, "%d", port);
    snprintf(busy_s, sizeof busy_s, "%d", busy_port);
    goconn_options o;
    result r;

    init_opts(&o, loop, "127.0.0.1", port_s);
    o.has_local_addr = 1;
    o.local_host = "127.0.0.1";
    o.local_port = busy_s;
    run(&o, &r);
    snprintf(want, sizeof want,
             "[Errno 98] error while attempting to bind on address ('127.0.0.1', %d): address already in use",
             busy_port);
    CHECK_EQ_INT(r.err.code, -EADDRINUSE);
    CHECK_EQ_INT(r.err.errnum, EADDRINUSE);
    CHECK_STREQ(r.err.message, want);
    CHECK(r.err.has_strerror);
    CHECK_STREQ(r.err.strerror_, want + strlen("[Errno 98] "));
    CHECK_EQ_INT(r.err.nattempts, 1);
    CHECK_EQ_INT(r.err.attempts[0].outcome, GOCONN_ATTEMPT_FAILED);
    CHECK_EQ_INT(r.err.attempts[0].errnum, EADDRINUSE);
    free_error(&r.err);

    init_opts(&o, loop, "127.0.0.1", port_s);
    o.has_local_addr = 1;
    o.local_host = "::1";
    o.local_port = "0";
    run(&o, &r);
    CHECK_EQ_INT(r.err.code, GOCONN_EOSERROR);
    CHECK_EQ_INT(r.err.errnum, 0);
    CHECK(!r.err.has_strerror);
    CHECK_STREQ(r.err.message, "no matching local address with family=<AddressFamily.AF_INET: 2> found");
    free_error(&r.err);
}

static void unknown_name(goconn_loop *loop) {
    goconn_options o;
    result r;
    init_opts(&o, loop, "nonexistent.invalid", "80");
    run(&o, &r);
    CHECK_EQ_INT(r.err.code, GOCONN_EGAI);
    CHECK_EQ_INT(r.err.errnum, -2);
    CHECK_STREQ(r.err.message, "[Errno -2] Name or service not known");
    CHECK(r.err.has_strerror);
    CHECK_STREQ(r.err.strerror_, "Name or service not known");
    CHECK_EQ_INT(r.err.ncauses, 0);
    CHECK_EQ_INT(r.err.nattempts, 0); /* nothing was attempted */
    free_error(&r.err);
}

/* The protocol factory: a failure gives GOCONN_EFACTORY with no protocol
 * callback and the socket closed; a success hands its pointer to every
 * callback. */
typedef struct {
    int fail;
    atomic_int nfactory, nmade, nlost;
    goconn_transport *factory_t;
    void *made_proto;
    volatile int done;
    int done_code;
    void *done_proto;
    goconn_transport *done_t;
} fstate;

static int f_factory(void *u, goconn_transport *t, void **out) {
    fstate *f = u;
    atomic_fetch_add(&f->nfactory, 1);
    f->factory_t = t;
    CHECK(t != NULL);
    if (f->fail) return -1;
    *out = (char *)f + 1; /* a protocol pointer distinct from userdata */
    return 0;
}
static void f_made(void *p, goconn_transport *t) {
    fstate *f = (fstate *)((char *)p - 1);
    atomic_fetch_add(&f->nmade, 1);
    f->made_proto = p;
    CHECK(t == f->factory_t);
}
static void f_lost(void *p, const goconn_error *e) {
    fstate *f = (fstate *)((char *)p - 1);
    CHECK(e == NULL);
    atomic_fetch_add(&f->nlost, 1);
}
static void f_done(void *u, goconn_transport *t, void *p, const goconn_error *e) {
    fstate *f = u;
    f->done_code = e ? e->code : 0;
    if (e) CHECK_STREQ(e->message, "protocol factory failed");
    f->done_t = t;
    f->done_proto = p;
    if (t) CHECK_EQ_INT(goconn_transport_abort(t), 1);
    f->done = 1;
}

static void factory_cases(goconn_loop *loop) {
    test_peer peer;
    peer_start(&peer, AF_INET, PEER_ECHO, NULL, 0);
    int fds_before = count_open_fds();
    for (int fail = 1; fail >= 0; fail--) {
        fstate f;
        memset(&f, 0, sizeof f);
        f.fail = fail;
        goconn_options o;
        init_opts(&o, loop, "127.0.0.1", peer_port(&peer));
        goconn_protocol p = GOCONN_PROTOCOL_INIT;
        p.factory = f_factory;
        p.connection_made = f_made;
        p.connection_lost = f_lost;
        CHECK_EQ_INT(goconn_open_connection(&o, &p, f_done, &f, NULL), 0);
        if (loop) {
            CHECK(loop_run(loop, &f.done, 10000));
            loop_pump(loop, 50);
        } else {
            CHECK(wait_flag(&f.done, 10000));
            CHECK(wait_live_handles(0, 10000));
        }
        CHECK_EQ_INT(atomic_load(&f.nfactory), 1);
        if (fail) {
            CHECK_EQ_INT(f.done_code, GOCONN_EFACTORY);
            CHECK(f.done_t == NULL && f.done_proto == NULL);
            CHECK_EQ_INT(atomic_load(&f.nmade), 0);
            CHECK_EQ_INT(atomic_load(&f.nlost), 0);
            /* The handle the factory saw is dead. */
            CHECK_EQ_INT(goconn_transport_get_fd(f.factory_t), -EBADF);
        } else {
            CHECK_EQ_INT(f.done_code, 0);
            CHECK(f.done_t == f.factory_t);
            CHECK(f.done_proto == (char *)&f + 1);
            CHECK(f.made_proto == (char *)&f + 1);
            CHECK_EQ_INT(atomic_load(&f.nmade), 1);
            CHECK_EQ_INT(atomic_load(&f.nlost), 1);
        }
    }
    peer_stop(&peer);
    /* Every socket is closed (the first run in a process also starts the Go
     * runtime's poller, whose descriptors stay). */
    if (loop) CHECK_EQ_INT(count_open_fds(), fds_before - 1); /* the peer's listener is gone */
}

/* A reset by the peer: every byte sent before it is delivered, then
 * connection_lost(-ECONNRESET), no eof_received. */
typedef struct {
    size_t nreceived;
    int neof;
    volatile int lost;
    int code, errnum;
    char message[256], strerror_[256];
} rst;

static void r_data(void *p, const void *d, size_t n) {
    (void)d;
    ((rst *)p)->nreceived += n;
}
static int r_eof(void *p) {
    ((rst *)p)->neof++;
    return 0;
}
static void r_lost(void *p, const goconn_error *e) {
    rst *r = p;
    CHECK(e != NULL);
    r->code = e->code;
    r->errnum = e->errnum;
    snprintf(r->message, sizeof r->message, "%s", e->message);
    snprintf(r->strerror_, sizeof r->strerror_, "%s", e->strerror ? e->strerror : "(null)");
    CHECK_EQ_INT(e->nattempts, 0);
    r->lost = 1;
}

static void reset_by_peer(goconn_loop *loop) {
    static char payload[100000];
    memset(payload, 'r', sizeof payload);
    test_peer peer;
    peer_start(&peer, AF_INET, PEER_SEND_RESET, payload, sizeof payload);
    rst r;
    memset(&r, 0, sizeof r);
    goconn_options o;
    init_opts(&o, loop, "127.0.0.1", peer_port(&peer));
    goconn_protocol p = GOCONN_PROTOCOL_INIT;
    p.data_received = r_data;
    p.eof_received = r_eof;
    p.connection_lost = r_lost;
    CHECK_EQ_INT(goconn_open_connection(&o, &p, NULL, &r, NULL), 0);
    if (loop) {
        CHECK(loop_run(loop, &r.lost, 10000));
    } else {
        CHECK(wait_flag(&r.lost, 10000));
        CHECK(wait_live_handles(0, 10000));
    }
    CHECK_EQ_INT(r.nreceived, sizeof payload);
    CHECK_EQ_INT(r.neof, 0);
    CHECK_EQ_INT(r.code, -ECONNRESET);
    CHECK_EQ_INT(r.errnum, ECONNRESET);
    CHECK_STREQ(r.message, "[Errno 104] Connection reset by peer");
    CHECK_STREQ(r.strerror_, "Connection reset by peer");
    peer_stop(&peer);
}

/* Ports as asyncio reads them: None and "" are port 0; a text that is not
 * a number goes to getaddrinfo as a service name. */
static void port_quirks(goconn_loop *loop) {
    goconn_options o;
    result r;
    const char *zero_ports[] = {NULL, ""};
    for (int i = 0; i < 2; i++) {
        init_opts(&o, loop, "127.0.0.1", zero_ports[i]);
        run(&o, &r);
        check_refusal(&r.err, 0, "('127.0.0.1', 0)");
        CHECK_EQ_INT(r.err.nattempts, 1);
        CHECK_EQ_INT(r.err.attempts[0].remote_port, 0);
        free_error(&r.err);
    }
    init_opts(&o, loop, "127.0.0.1", " 0x10 ");
    run(&o, &r);
    CHECK_EQ_INT(r.err.code, GOCONN_EGAI);
    CHECK_EQ_INT(r.err.errnum, -8);
    CHECK_STREQ(r.err.message, "[Errno -8] Servname not supported for ai_socktype");
    free_error(&r.err);
}

static void all_cases(goconn_loop *loop, int port, int busy_port) {
    port_quirks(loop);
    factory_cases(loop);
    reset_by_peer(loop);
    refused_single(loop, port);
    refused_two(loop, port);
    local_addr_errors(loop, port, busy_port);
    unknown_name(loop);
}

int main(void) {
    int rfd, busy_fd;
    int port = refused_port(&rfd);
    int busy_port = refused_port(&busy_fd);

    all_cases(NULL, port, busy_port);
    CHECK(wait_live_handles(0, 10000));

    goconn_loop *loop;
    CHECK_EQ_INT(goconn_loop_new(&loop), 0);
    all_cases(loop, port, busy_port);
    CHECK_EQ_INT(goconn_loop_free(loop), 0);

    close(rfd);
    close(busy_fd);
    CHECK_EQ_INT(goconn_live_handles(), 0);
    printf("ok\n");
    return 0;
}
