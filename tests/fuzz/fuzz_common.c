#define _GNU_SOURCE
#include "fuzz_common.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

uint8_t fz_u8(fuzz_input *in) { return in->pos < in->size ? in->data[in->pos++] : 0; }
uint16_t fz_u16(fuzz_input *in) { return (uint16_t)(fz_u8(in) | fz_u8(in) << 8); }
uint32_t fz_u32(fuzz_input *in) { return (uint32_t)fz_u16(in) | (uint32_t)fz_u16(in) << 16; }
int fz_bool(fuzz_input *in) { return fz_u8(in) & 1; }
unsigned fz_pick(fuzz_input *in, unsigned n) { return n ? fz_u8(in) % n : 0; }

double fz_double(fuzz_input *in) {
    switch (fz_pick(in, 8)) {
    case 0: return 0.0;
    case 1: return -1.0;
    case 2: return NAN;
    case 3: return INFINITY;
    case 4: return 1e-9;
    case 5: return (double)fz_u8(in) / 1000.0; /* 0 to 0.255 s */
    case 6: return -(double)fz_u16(in);
    default: return (double)fz_u8(in) / 10000.0; /* up to 25 ms */
    }
}

const uint8_t *fz_bytes(fuzz_input *in, size_t max, size_t *len) {
    size_t want = fz_u16(in);
    size_t left = in->size - in->pos;
    if (want > max) want = max;
    if (want > left) want = left;
    const uint8_t *p = in->data + in->pos;
    in->pos += want;
    *len = want;
    return p;
}

char *fz_string(fuzz_input *in, size_t max) {
    size_t n;
    const uint8_t *p = fz_bytes(in, max, &n);
    char *s = malloc(n + 1);
    FUZZ_CHECK(s != NULL);
    memcpy(s, p, n);
    s[n] = 0;
    return s;
}

long long fz_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *echo_conn(void *arg) {
    int fd = (int)(intptr_t)arg;
    char buf[65536];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0) {
        if (send(fd, buf, (size_t)n, MSG_NOSIGNAL) < 0) break;
    }
    close(fd);
    return NULL;
}

static void *echo_accept(void *arg) {
    int lfd = (int)(intptr_t)arg;
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) continue;
        pthread_t t;
        if (pthread_create(&t, NULL, echo_conn, (void *)(intptr_t)fd) == 0) {
            pthread_detach(t);
        } else {
            close(fd);
        }
    }
    return NULL;
}

static int listener(int backlog, int *fd_out) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    FUZZ_CHECK(fd >= 0);
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    FUZZ_CHECK(bind(fd, (struct sockaddr *)&sin, sizeof sin) == 0);
    if (backlog >= 0) FUZZ_CHECK(listen(fd, backlog) == 0);
    socklen_t sl = sizeof sin;
    FUZZ_CHECK(getsockname(fd, (struct sockaddr *)&sin, &sl) == 0);
    *fd_out = fd;
    return ntohs(sin.sin_port);
}

int fz_echo_port(void) {
    static int port;
    if (!port) {
        int fd;
        port = listener(512, &fd);
        pthread_t t;
        FUZZ_CHECK(pthread_create(&t, NULL, echo_accept, (void *)(intptr_t)fd) == 0);
        pthread_detach(t);
    }
    return port;
}

int fz_refused_port(void) {
    static int port;
    if (!port) {
        int fd;
        port = listener(-1, &fd); /* bound, never listening: refused */
    }
    return port;
}

int fz_loop_run(goconn_loop *loop, atomic_int *flag, int timeout_ms) {
    long long deadline = fz_now_ms() + timeout_ms;
    while (!*flag) {
        long long left = deadline - fz_now_ms();
        if (left <= 0) return 0;
        struct pollfd p = {goconn_loop_fd(loop), POLLIN, 0};
        poll(&p, 1, left > 20 ? 20 : (int)left);
        FUZZ_CHECK(goconn_loop_dispatch(loop, 0) >= 0);
    }
    return 1;
}

int fz_wait(atomic_int *flag, int timeout_ms) {
    long long deadline = fz_now_ms() + timeout_ms;
    while (!*flag) {
        if (fz_now_ms() > deadline) return 0;
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
    return 1;
}
