/* The protocol factory and the request handle: the handle the factory gets
 * may be used before connection_made without harm (a big write, a close),
 * a failing factory after such use leaves the library healthy, and the
 * request handle is stored before on_done can run, even in direct mode. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testutil.h"

static volatile int done_flag, made_calls, lost_calls, pause_calls;
static int factory_fail;
static goconn_request *volatile req_slot;
static goconn_request *req_seen_in_done;

static int factory(void *userdata, goconn_transport *t, void **proto_out) {
    static char big[4 << 20];
    /* Writes before connection_made are buffered; nothing may be paused yet. */
    CHECK_EQ_INT(goconn_transport_set_write_buffer_limits(t, 16, 4, NULL, 0), 0);
    CHECK_EQ_INT(goconn_transport_write(t, big, sizeof big), 0);
    if (factory_fail) {
        CHECK_EQ_INT(goconn_transport_close(t), 0);
        return 1;
    }
    *proto_out = userdata;
    return 0;
}

static void made(void *p, goconn_transport *t) { (void)p, (void)t; made_calls++; }
static void lost(void *p, const goconn_error *e) { (void)p, (void)e; lost_calls++; done_flag = 1; }
static void pause_w(void *p) { (void)p; pause_calls++; }

static void on_done(void *u, goconn_transport *t, void *p, const goconn_error *e) {
    (void)u, (void)p;
    req_seen_in_done = req_slot;
    if (e) {
        CHECK_EQ_INT(e->code, GOCONN_EFACTORY);
        done_flag = 1;
    } else {
        goconn_transport_abort(t);
    }
}

static void run(goconn_loop *loop, int fail) {
    test_peer peer;
    peer_start(&peer, AF_INET, PEER_DISCARD, NULL, 0);
    done_flag = made_calls = lost_calls = pause_calls = 0;
    factory_fail = fail;
    goconn_options o;
    CHECK_EQ_INT(goconn_options_init(&o, GOCONN_OPTIONS_VERSION), 0);
    o.loop = loop;
    o.host = "127.0.0.1";
    o.port = peer_port(&peer);
    goconn_protocol p = GOCONN_PROTOCOL_INIT;
    p.factory = factory;
    p.connection_made = made;
    p.connection_lost = lost;
    p.pause_writing = pause_w;
    int x;
    CHECK_EQ_INT(goconn_open_connection(&o, &p, on_done, &x, (goconn_request **)&req_slot), 0);
    CHECK(req_slot != NULL);
    if (loop) {
        CHECK(loop_run(loop, &done_flag, 10000));
    } else {
        CHECK(wait_flag(&done_flag, 10000));
    }
    CHECK(wait_live_handles(1, 5000)); /* only main's loop is left */
    if (fail) {
        CHECK_EQ_INT(made_calls, 0);
        CHECK_EQ_INT(lost_calls, 0);
    } else {
        CHECK_EQ_INT(made_calls, 1);
        CHECK_EQ_INT(lost_calls, 1);
    }
    CHECK_EQ_INT(pause_calls, 0);
    peer_stop(&peer);
}

/* Direct mode with an adopted socket: on_done may run before
 * goconn_open_connection returns, and it must already see the handle. */
static void request_stored_before_done(void) {
    for (int i = 0; i < 200; i++) {
        int sv[2];
        CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
        done_flag = 0;
        req_slot = NULL;
        req_seen_in_done = NULL;
        factory_fail = 0;
        goconn_options o;
        CHECK_EQ_INT(goconn_options_init(&o, GOCONN_OPTIONS_VERSION), 0);
        o.has_sock = 1;
        o.sock = sv[0];
        goconn_protocol p = GOCONN_PROTOCOL_INIT;
        p.connection_lost = lost;
        CHECK_EQ_INT(goconn_open_connection(&o, &p, on_done, NULL, (goconn_request **)&req_slot), 0);
        CHECK(wait_flag(&done_flag, 10000));
        CHECK(req_seen_in_done != NULL);
        CHECK(req_seen_in_done == req_slot);
        close(sv[1]);
    }
    CHECK(wait_live_handles(1, 5000)); /* only main's loop is left */
}

int main(void) {
    goconn_loop *loop;
    CHECK_EQ_INT(goconn_loop_new(&loop), 0);
    run(loop, 0);
    run(loop, 1);
    run(NULL, 0);
    run(NULL, 1);
    request_stored_before_done();
    CHECK_EQ_INT(goconn_loop_free(loop), 0);
    /* The library is healthy: no call returns GOCONN_EPOISONED. */
    CHECK_EQ_INT(goconn_live_handles(), 0);
    printf("ok\n");
    return 0;
}
