/* A panic inside the library is recovered and poisons it: the call that
 * panicked returns GOCONN_EINTERNAL, every later call GOCONN_EPOISONED, and
 * the host process lives on. Each case runs in a child process started with
 * GOCONN_TEST_PANIC=<place> (capi/failpoint.go). */
#define _GNU_SOURCE
#include <errno.h>
#include <spawn.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

extern char **environ;

static volatile int done_flag;
static goconn_transport *made_transport;
static int write_rc = 1;

static void made(void *p, goconn_transport *t) {
    (void)p;
    made_transport = t;
    write_rc = goconn_transport_write(t, "x", 1);
}
static void on_done(void *u, goconn_transport *t, void *p, const goconn_error *e) {
    (void)u, (void)t, (void)p, (void)e;
    done_flag = 1;
}

static int connect_to(const test_peer *peer, goconn_loop *loop) {
    goconn_options o;
    CHECK_EQ_INT(goconn_options_init(&o, GOCONN_OPTIONS_VERSION), 0);
    o.loop = loop;
    o.host = "127.0.0.1";
    o.port = peer_port(peer);
    goconn_protocol p = GOCONN_PROTOCOL_INIT;
    p.connection_made = made;
    return goconn_open_connection(&o, &p, on_done, NULL, NULL);
}

/* Runs in the child: provoke the failpoint named in GOCONN_TEST_PANIC. */
static int child(const char *place) {
    test_peer peer;
    /* The peer closes by itself: a poisoned library never will. */
    peer_start(&peer, AF_INET, PEER_SEND_CLOSE, "hi", 2);
    goconn_loop *loop;
    CHECK_EQ_INT(goconn_loop_new(&loop), 0);
    if (strcmp(place, "goconn_open_connection") == 0) {
        CHECK_EQ_INT(connect_to(&peer, loop), GOCONN_EINTERNAL);
    } else if (strcmp(place, "goconn_loop_dispatch") == 0) {
        CHECK_EQ_INT(connect_to(&peer, loop), 0);
        CHECK_EQ_INT(goconn_loop_dispatch(loop, 0), GOCONN_EINTERNAL);
    } else if (strcmp(place, "goconn_transport_write") == 0) {
        CHECK_EQ_INT(connect_to(&peer, loop), 0);
        CHECK(loop_run(loop, &done_flag, 10000));
        CHECK_EQ_INT(write_rc, GOCONN_EINTERNAL);
    } else if (strcmp(place, "core.read") == 0) {
        /* Direct mode: the reader goroutine panics after connection_made;
         * the panic is recovered on that goroutine and poisons the library. */
        CHECK_EQ_INT(connect_to(&peer, NULL), 0);
        for (int i = 0; i < 2000 && !done_flag; i++) sleep_ms(5);
        CHECK(done_flag);
        for (int i = 0; i < 1000 && goconn_live_handles() != GOCONN_EPOISONED; i++) sleep_ms(5);
    } else if (strcmp(place, "core.read@loop") == 0) {
        /* Loop mode: a plain transport reads inside goconn_loop_dispatch,
         * so the first read panics there, is recovered, and poisons. */
        CHECK_EQ_INT(connect_to(&peer, loop), 0);
        CHECK(loop_run(loop, &done_flag, 10000));
        for (int i = 0; i < 1000 && goconn_live_handles() != GOCONN_EPOISONED; i++) {
            goconn_loop_dispatch(loop, 0);
            sleep_ms(5);
        }
    }
    /* From here on every call fails fast. */
    CHECK_EQ_INT(goconn_live_handles(), GOCONN_EPOISONED);
    goconn_loop *other;
    CHECK_EQ_INT(goconn_loop_new(&other), GOCONN_EPOISONED);
    CHECK_EQ_INT(goconn_loop_dispatch(loop, 0), GOCONN_EPOISONED);
    CHECK(strstr(goconn_strerror(GOCONN_EPOISONED), "unusable") != NULL);
    peer_stop(&peer);
    printf("child %s: poisoned as expected\n", place);
    return 0;
}

/* place is a failpoint name, optionally with "@variant" for the child. */
static void run_child(const char *self, const char *place) {
    char env[128], failpoint[64];
    snprintf(failpoint, sizeof failpoint, "%.*s", (int)strcspn(place, "@"), place);
    snprintf(env, sizeof env, "GOCONN_TEST_PANIC=%s", failpoint);
    char *envp[] = {env, NULL};
    char *argv[] = {(char *)self, (char *)place, NULL};
    int errpipe[2];
    CHECK(pipe(errpipe) == 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, errpipe[1], 2);
    pid_t pid;
    CHECK(posix_spawn(&pid, self, &fa, NULL, argv, envp) == 0);
    close(errpipe[1]);
    static char err[1 << 20];
    size_t n = 0;
    ssize_t r;
    while ((r = read(errpipe[0], err + n, sizeof err - 1 - n)) > 0) n += (size_t)r;
    err[n] = 0;
    close(errpipe[0]);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "child %s failed (status %d):\n%s\n", place, status, err);
        exit(1);
    }
    CHECK(strstr(err, "goconn: internal panic; the library is now unusable") != NULL);
    CHECK(strstr(err, failpoint) != NULL); /* the panic value names the place */
    posix_spawn_file_actions_destroy(&fa);
    printf("%s: recovered, reported, poisoned\n", place);
}

int main(int argc, char **argv) {
    if (argc == 2) return child(argv[1]);
    const char *places[] = {"goconn_open_connection", "goconn_loop_dispatch", "goconn_transport_write", "core.read",
                            "core.read@loop"};
    for (size_t i = 0; i < sizeof places / sizeof places[0]; i++) run_child(argv[0], places[i]);
    printf("ok\n");
    return 0;
}
