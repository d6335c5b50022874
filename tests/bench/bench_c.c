/* bench_c.c - libgoconn from C against a plain C socket loop (the floor).
 *
 *     goconn-bench-c SCENARIO IMPL PORT N
 *
 * SCENARIO  bulk     receive N bytes from 127.0.0.1:PORT until the peer
 *                    closes (goconn-peer serve --mode send --bytes N)
 *           connect  N sequential connect + close, each waiting for the
 *                    close to finish (goconn-peer serve --mode idle)
 *           idle     hold N idle connections at once and measure the
 *                    resident memory they add (goconn-peer serve --mode idle)
 * IMPL      plain    blocking BSD sockets: socket, connect, recv, close
 *           loop     goconn in loop mode: poll(2) on goconn_loop_fd, then
 *                    goconn_loop_dispatch, on this thread
 *           direct   goconn in direct mode: callbacks on library threads;
 *                    this thread waits on a semaphore
 *
 * It prints one line of JSON with the figures on stdout, e.g.
 * {"MB/s": 4021.7}, and exits 0; on any failure it prints the reason on
 * stderr and exits 1.  Run by tests/bench/run.py (./build.sh bench), never
 * by CTest.
 *
 * The goconn code is the same in both modes: each connection's next step is
 * taken from inside its callbacks (on_done closes, connection_lost opens the
 * next one), which is how an event-driven program uses the library.  Only
 * where the callbacks run, and how the main thread learns that all is done,
 * differ.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "goconn.h"

#define HOST "127.0.0.1"
#define TIMEOUT_S 120.0 /* any one phase; a hang becomes an error, not a stuck bench */
#define WARMUP 50       /* connect: untimed connections first, for every IMPL */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what) {
    fprintf(stderr, "goconn-bench-c: %s\n", what);
    exit(1);
}

static void die_errno(const char *what) {
    fprintf(stderr, "goconn-bench-c: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void die_code(const char *what, int code) {
    fprintf(stderr, "goconn-bench-c: %s: %s (%d)\n", what, goconn_strerror(code), code);
    exit(1);
}

/* status_kib reads a field of /proc/self/status (VmRSS, VmHWM) in KiB. */
static long status_kib(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) die_errno("/proc/self/status");
    char line[256];
    size_t n = strlen(field);
    long v = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, field, n) == 0 && line[n] == ':') {
            v = strtol(line + n + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    if (v < 0) die("no VmRSS in /proc/self/status");
    return v;
}

static void raise_nofile(long need) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) die_errno("getrlimit");
    if ((long)rl.rlim_cur >= need) return;
    if ((long)rl.rlim_max < need) rl.rlim_max = (rlim_t)need; /* works as root */
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
        getrlimit(RLIMIT_NOFILE, &rl);
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* ---- the floor: plain blocking sockets ---------------------------------- */

static int plain_connect(int port) {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) die_errno("socket");
    /* What asyncio and goconn set on every TCP connection. */
    int one = 1;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, HOST, &sa.sin_addr);
    if (connect(s, (struct sockaddr *)&sa, sizeof sa) != 0) die_errno("connect");
    return s;
}

static double plain_bulk(int port, long long nbytes) {
    static char buf[256 * 1024];
    double t0 = now();
    int s = plain_connect(port);
    long long got = 0;
    for (;;) {
        ssize_t n = recv(s, buf, sizeof buf, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            die_errno("recv");
        }
        if (n == 0) break;
        got += n;
    }
    close(s);
    double dt = now() - t0;
    if (got != nbytes) {
        fprintf(stderr, "goconn-bench-c: received %lld of %lld bytes\n", got, nbytes);
        exit(1);
    }
    return dt;
}

static double plain_connect_close(int port, int n) {
    double t0 = now();
    for (int i = 0; i < n; i++) close(plain_connect(port));
    return now() - t0;
}

/* ---- goconn: one state for every scenario ------------------------------- */

typedef struct bench {
    goconn_loop *loop; /* NULL: direct mode */
    int port;
    char port_text[16];
    /* bulk */
    atomic_llong received;
    /* connect and idle */
    int target;               /* connections to make */
    atomic_int opened;        /* on_done with a transport */
    atomic_int lost;          /* connection_lost calls */
    int close_at_once;        /* connect: on_done closes; idle: keep them */
    goconn_transport **held;  /* idle: the transports */
    /* the end */
    atomic_int done;          /* the phase is over (success or failure) */
    atomic_int failed;
    char error[512];
    sem_t sem;                /* direct mode: posted when done is set */
} bench;

static int open_one(bench *b);

static void finish(bench *b) {
    atomic_store(&b->done, 1);
    if (!b->loop) sem_post(&b->sem);
}

static void fail(bench *b, const char *what, const goconn_error *err, int code) {
    if (!atomic_exchange(&b->failed, 1)) {
        snprintf(b->error, sizeof b->error, "%s: %s", what,
                 err && err->message ? err->message : goconn_strerror(code));
    }
    finish(b);
}

static void on_data(void *protocol, const void *data, size_t len) {
    (void)data;
    bench *b = protocol;
    atomic_fetch_add_explicit(&b->received, (long long)len, memory_order_relaxed);
}

static void on_lost(void *protocol, const goconn_error *error) {
    bench *b = protocol;
    if (error) {
        fail(b, "connection_lost", error, error->code);
        return;
    }
    int lost = atomic_fetch_add(&b->lost, 1) + 1;
    if (b->held) {                     /* idle: the teardown */
        if (lost == b->target) finish(b);
    } else if (b->target == 0) {       /* bulk */
        finish(b);
    } else if (lost < b->target) {     /* connect: the next one */
        open_one(b);
    } else {
        finish(b);
    }
}

static void on_done(void *userdata, goconn_transport *transport, void *protocol, const goconn_error *error) {
    (void)protocol;
    bench *b = userdata;
    if (error) {
        fail(b, "connect", error, error->code);
        return;
    }
    int opened = atomic_fetch_add(&b->opened, 1) + 1;
    if (b->close_at_once) {
        int rc = goconn_transport_close(transport);
        if (rc != 0) fail(b, "goconn_transport_close", NULL, rc);
    } else if (b->held) {
        b->held[opened - 1] = transport;
        if (opened < b->target) open_one(b);
        else finish(b);
    }
}

static int open_one(bench *b) {
    goconn_options o;
    goconn_options_init(&o, GOCONN_OPTIONS_VERSION);
    o.loop = b->loop;
    o.host = HOST;
    o.port = b->port_text;
    goconn_protocol p;
    goconn_protocol_init(&p, GOCONN_PROTOCOL_VERSION);
    /* factory NULL: the protocol pointer is on_done's userdata, b. */
    p.data_received = on_data;
    p.connection_lost = on_lost;
    int rc = goconn_open_connection(&o, &p, on_done, b, NULL);
    if (rc != 0) fail(b, "goconn_open_connection", NULL, rc);
    return rc;
}

static void bench_init(bench *b, const char *impl, int port) {
    memset(b, 0, sizeof *b);
    b->port = port;
    snprintf(b->port_text, sizeof b->port_text, "%d", port);
    if (strcmp(impl, "loop") == 0) {
        int rc = goconn_loop_new(&b->loop);
        if (rc != 0) die_code("goconn_loop_new", rc);
    } else if (sem_init(&b->sem, 0, 0) != 0) {
        die_errno("sem_init");
    }
}

/* phase starts a new phase on the same loop. */
static void phase(bench *b, int target, int close_at_once) {
    atomic_store(&b->received, 0);
    atomic_store(&b->opened, 0);
    atomic_store(&b->lost, 0);
    atomic_store(&b->done, 0);
    b->target = target;
    b->close_at_once = close_at_once;
}

/* wait_done runs the loop (loop mode) or sleeps on the semaphore (direct mode)
 * until the phase is done; any failure ends the program. */
static void wait_done(bench *b, const char *what) {
    double deadline = now() + TIMEOUT_S;
    if (b->loop) {
        struct pollfd p = {goconn_loop_fd(b->loop), POLLIN, 0};
        while (!atomic_load(&b->done)) {
            int left = (int)((deadline - now()) * 1000);
            if (left <= 0) break;
            int n = poll(&p, 1, left);
            if (n < 0 && errno != EINTR) die_errno("poll");
            if (n > 0) {
                int rc = goconn_loop_dispatch(b->loop, 0);
                if (rc < 0) die_code("goconn_loop_dispatch", rc);
            }
        }
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += (time_t)TIMEOUT_S;
        while (!atomic_load(&b->done)) {
            if (sem_timedwait(&b->sem, &ts) != 0) {
                if (errno == EINTR) continue;
                if (errno == ETIMEDOUT) break;
                die_errno("sem_timedwait");
            }
        }
    }
    if (!atomic_load(&b->done)) {
        fprintf(stderr, "goconn-bench-c: %s: timed out after %.0f s\n", what, TIMEOUT_S);
        exit(1);
    }
    if (atomic_load(&b->failed)) {
        fprintf(stderr, "goconn-bench-c: %s: %s\n", what, b->error);
        exit(1);
    }
}

static void bench_free(bench *b) {
    if (b->loop) {
        int rc = goconn_loop_free(b->loop);
        if (rc != 0) die_code("goconn_loop_free", rc);
    }
}

static double goconn_bulk(const char *impl, int port, long long nbytes) {
    bench b;
    bench_init(&b, impl, port);
    phase(&b, 0, 0);
    double t0 = now();
    open_one(&b);
    wait_done(&b, "bulk");
    double dt = now() - t0;
    long long got = atomic_load(&b.received);
    if (got != nbytes) {
        fprintf(stderr, "goconn-bench-c: received %lld of %lld bytes\n", got, nbytes);
        exit(1);
    }
    bench_free(&b);
    return dt;
}

static double goconn_connect_close(const char *impl, int port, int n) {
    bench b;
    bench_init(&b, impl, port);
    phase(&b, WARMUP, 1);
    open_one(&b);
    wait_done(&b, "connect (warm-up)");
    phase(&b, n, 1);
    double t0 = now();
    open_one(&b);
    wait_done(&b, "connect");
    double dt = now() - t0;
    bench_free(&b);
    return dt;
}

/* ---- main ------------------------------------------------------------------- */

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s bulk|connect|idle plain|loop|direct PORT N\n", argv[0]);
        return 2;
    }
    const char *scen = argv[1], *impl = argv[2];
    int port = atoi(argv[3]);
    long long n = atoll(argv[4]);
    if (strcmp(impl, "plain") && strcmp(impl, "loop") && strcmp(impl, "direct")) die("IMPL is plain, loop or direct");
    if (port <= 0 || port > 65535 || n <= 0) die("bad PORT or N");
    if (goconn_abi_version() != GOCONN_ABI_VERSION) die("libgoconn's ABI does not match goconn.h");
    /* The Go runtime of a c-shared library starts on a thread of its own at
     * load; the first call into Go waits until it is up.  Make that call in
     * every IMPL, so the floor's process holds the same runtime, settled. */
    if (goconn_live_handles() < 0) die("goconn_live_handles failed");
    int plain = strcmp(impl, "plain") == 0;

    if (strcmp(scen, "bulk") == 0) {
        double dt = plain ? plain_bulk(port, n) : goconn_bulk(impl, port, n);
        double mb = (double)n / (1024.0 * 1024.0);
        printf("{\"MB/s\": %.3f}\n", mb / dt);
    } else if (strcmp(scen, "connect") == 0) {
        double dt;
        if (plain) {
            plain_connect_close(port, WARMUP);
            dt = plain_connect_close(port, (int)n);
        } else {
            dt = goconn_connect_close(impl, port, (int)n);
        }
        printf("{\"conn/s\": %.3f}\n", (double)n / dt);
    } else if (strcmp(scen, "idle") == 0) {
        raise_nofile(n + 256);
        /* One connection made and closed first, so that what is set up once
         * (threads, pollers, caches) is not counted per connection. */
        long rss0, rss1;
        if (plain) {
            close(plain_connect(port));
            usleep(200 * 1000);
            rss0 = status_kib("VmRSS");
            int *fds = malloc(sizeof(int) * (size_t)n);
            if (!fds) die("malloc");
            for (long long i = 0; i < n; i++) fds[i] = plain_connect(port);
            usleep(200 * 1000);
            rss1 = status_kib("VmRSS");
            for (long long i = 0; i < n; i++) close(fds[i]);
            free(fds);
        } else {
            bench b;
            bench_init(&b, impl, port);
            phase(&b, 1, 1);
            open_one(&b);
            wait_done(&b, "idle (warm-up)");
            b.held = calloc((size_t)n, sizeof *b.held);
            if (!b.held) die("calloc");
            usleep(200 * 1000);
            rss0 = status_kib("VmRSS");
            phase(&b, (int)n, 0);
            open_one(&b);
            wait_done(&b, "idle (open)");
            /* Let them settle: whatever runs per connection has started. */
            double settle = now() + 0.2;
            while (now() < settle) {
                if (b.loop) goconn_loop_dispatch(b.loop, 0);
                usleep(10 * 1000);
            }
            rss1 = status_kib("VmRSS");
            phase(&b, (int)n, 0);
            for (long long i = 0; i < n; i++) {
                int rc = goconn_transport_close(b.held[i]);
                if (rc != 0) die_code("goconn_transport_close", rc);
            }
            wait_done(&b, "idle (close)");
            bench_free(&b);
            free(b.held);
        }
        printf("{\"KiB/conn\": %.3f, \"RSS MB\": %.3f}\n", (double)(rss1 - rss0) / (double)n, rss1 / 1024.0);
    } else {
        die("SCENARIO is bulk, connect or idle");
    }
    return 0;
}
