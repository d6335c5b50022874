/* Loop mode: connect to an echo peer, exchange bytes, half-close, and check
 * the callback order made -> data* -> eof -> lost, all on this thread. */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>

#include "testutil.h"

typedef struct {
    char log[256];
    char received[64];
    size_t nreceived;
    goconn_transport *transport;
    pthread_t thread;
    volatile int done, lost;
} state;

static void note(state *s, const char *what) {
    CHECK(pthread_equal(pthread_self(), s->thread));
    strncat(s->log, what, sizeof s->log - strlen(s->log) - 1);
}

static void made(void *p, goconn_transport *t) {
    state *s = p;
    note(s, "made ");
    s->transport = t;
    CHECK_EQ_INT(goconn_transport_write(t, "ping", 4), 0);
    CHECK_EQ_INT(goconn_transport_write_eof(t), 0);
}
static void data(void *p, const void *d, size_t n) {
    state *s = p;
    note(s, "data ");
    CHECK(s->nreceived + n <= sizeof s->received);
    memcpy(s->received + s->nreceived, d, n);
    s->nreceived += n;
}
static int eof(void *p) { note(p, "eof "); return 0; }
static void lost(void *p, const goconn_error *e) {
    state *s = p;
    CHECK(e == NULL);
    note(s, "lost");
    s->lost = 1;
}
static void on_done(void *u, goconn_transport *t, void *p, const goconn_error *e) {
    state *s = u;
    CHECK(e == NULL);
    CHECK(t == s->transport);
    CHECK(p == s);
    note(s, "done ");
    s->done = 1;
}

static void one_connection(const test_peer *peer) {
    goconn_loop *loop;
    CHECK_EQ_INT(goconn_loop_new(&loop), 0);
    state s;
    memset(&s, 0, sizeof s);
    s.thread = pthread_self();

    goconn_options o;
    CHECK_EQ_INT(goconn_options_init(&o, GOCONN_OPTIONS_VERSION), 0);
    o.loop = loop;
    o.host = "127.0.0.1";
    o.port = peer_port(peer);
    goconn_protocol p = GOCONN_PROTOCOL_INIT;
    p.connection_made = made;
    p.data_received = data;
    p.eof_received = eof;
    p.connection_lost = lost;
    CHECK_EQ_INT(goconn_open_connection(&o, &p, on_done, &s, NULL), 0);
    CHECK(loop_run(loop, &s.lost, 10000));
    CHECK_STREQ(s.log, "made done data eof lost");
    CHECK_EQ_INT(s.nreceived, 4);
    CHECK(memcmp(s.received, "ping", 4) == 0);
    /* The handle is dead after connection_lost. */
    CHECK_EQ_INT(goconn_transport_write(s.transport, "x", 1), -EBADF);
    CHECK_EQ_INT(goconn_transport_close(s.transport), -EBADF);
    CHECK_EQ_INT(goconn_loop_free(loop), 0);
    CHECK_EQ_INT(goconn_live_handles(), 0);
}

int main(void) {
    test_peer peer;
    peer_start(&peer, AF_INET, PEER_ECHO, NULL, 0);
    one_connection(&peer); /* the first one also starts the Go runtime's poller */
    int fds_before = count_open_fds();
    one_connection(&peer);
    CHECK_EQ_INT(count_open_fds(), fds_before);
    peer_stop(&peer);
    printf("ok\n");
    return 0;
}
