#define _GNU_SOURCE
#include "testutil.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void write_all(int fd, const void *data, size_t len) {
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            return;
        }
        p += n;
        len -= (size_t)n;
    }
}

static void serve_one(test_peer *peer, int fd) {
    char buf[65536];
    ssize_t n;
    switch (peer->mode) {
    case PEER_ECHO:
        while ((n = recv(fd, buf, sizeof buf, 0)) > 0) {
            peer->received += (size_t)n;
            write_all(fd, buf, (size_t)n);
        }
        break;
    case PEER_SEND_CLOSE:
        write_all(fd, peer->payload, peer->payload_len);
        break;
    case PEER_SEND_RESET: {
        write_all(fd, peer->payload, peer->payload_len);
        sleep_ms(50); /* let the bytes leave before the reset */
        struct linger lg = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        break;
    }
    case PEER_SEND_HALFCLOSE:
        write_all(fd, peer->payload, peer->payload_len);
        shutdown(fd, SHUT_WR);
        while ((n = recv(fd, buf, sizeof buf, 0)) > 0) peer->received += (size_t)n;
        break;
    case PEER_NEVER_READ:
        while (!peer->done) sleep_ms(10);
        break;
    case PEER_DISCARD:
        while ((n = recv(fd, buf, sizeof buf, 0)) > 0) peer->received += (size_t)n;
        if (n == 0) peer->got_eof = 1;
        break;
    case PEER_READ_ON_SIGNAL:
        while (!peer->go && !peer->done) sleep_ms(5);
        while ((n = recv(fd, buf, sizeof buf, 0)) > 0) peer->received += (size_t)n;
        if (n == 0) peer->got_eof = 1;
        break;
    }
    close(fd);
}

static void *peer_thread(void *arg) {
    test_peer *peer = arg;
    while (!peer->done) {
        struct pollfd p = {peer->listen_fd, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0) continue;
        int fd = accept(peer->listen_fd, NULL, NULL);
        if (fd < 0) continue;
        peer->accepted++;
        serve_one(peer, fd);
    }
    return NULL;
}

void peer_start(test_peer *peer, int family, peer_mode mode, const void *payload, size_t len) {
    memset(peer, 0, sizeof *peer);
    peer->family = family ? family : AF_INET;
    peer->mode = mode;
    peer->payload = payload;
    peer->payload_len = len;
    int fd = socket(peer->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof ss);
    if (peer->family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_addr = in6addr_loopback;
        sl = sizeof *s6;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sl = sizeof *s4;
    }
    CHECK(bind(fd, (struct sockaddr *)&ss, sl) == 0);
    CHECK(listen(fd, 16) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&ss, &sl) == 0);
    peer->port = ntohs(peer->family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                : ((struct sockaddr_in *)&ss)->sin_port);
    peer->listen_fd = fd;
    pthread_t *t = malloc(sizeof *t);
    CHECK(t != NULL);
    CHECK(pthread_create(t, NULL, peer_thread, peer) == 0);
    peer->thread = t;
}

void peer_stop(test_peer *peer) {
    peer->done = 1;
    pthread_join(*(pthread_t *)peer->thread, NULL);
    free(peer->thread);
    close(peer->listen_fd);
}

const char *peer_port(const test_peer *peer) {
    static __thread char buf[4][16];
    static __thread int next;
    char *b = buf[next++ % 4];
    snprintf(b, 16, "%d", peer->port);
    return b;
}

int refused_port(int *fd_out) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(fd, (struct sockaddr *)&sin, sizeof sin) == 0);
    socklen_t sl = sizeof sin;
    CHECK(getsockname(fd, (struct sockaddr *)&sin, &sl) == 0);
    *fd_out = fd;
    return ntohs(sin.sin_port);
}

int loop_run(goconn_loop *loop, volatile int *flag, int timeout_ms) {
    long long deadline = now_ms() + timeout_ms;
    while (!*flag) {
        long long left = deadline - now_ms();
        if (left <= 0) return 0;
        struct pollfd p = {goconn_loop_fd(loop), POLLIN, 0};
        poll(&p, 1, left > 100 ? 100 : (int)left);
        int rc = goconn_loop_dispatch(loop, 0);
        CHECK(rc >= 0);
    }
    return 1;
}

int wait_flag(volatile int *flag, int timeout_ms) {
    long long deadline = now_ms() + timeout_ms;
    while (!*flag) {
        if (now_ms() > deadline) return 0;
        sleep_ms(1);
    }
    return 1;
}

int count_open_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.') n++;
    }
    closedir(d);
    return n - 1; /* the DIR's own fd */
}

int loop_pump(goconn_loop *loop, int ms) {
    long long deadline = now_ms() + ms;
    int total = 0;
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0) return total;
        struct pollfd p = {goconn_loop_fd(loop), POLLIN, 0};
        poll(&p, 1, left > 100 ? 100 : (int)left);
        int rc = goconn_loop_dispatch(loop, 0);
        CHECK(rc >= 0);
        total += rc;
    }
}

int wait_live_handles(int n, int timeout_ms) {
    long long deadline = now_ms() + timeout_ms;
    while (goconn_live_handles() != n) {
        if (now_ms() > deadline) return 0;
        sleep_ms(1);
    }
    return 1;
}

int hang_start(hang_listener *h, int family, int port) {
    memset(h, 0, sizeof *h);
    h->family = family ? family : AF_INET;
    int fd = socket(h->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof ss);
    if (h->family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_addr = in6addr_loopback;
        s6->sin6_port = htons((uint16_t)port);
        sl = sizeof *s6;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        s4->sin_port = htons((uint16_t)port);
        sl = sizeof *s4;
    }
    if (bind(fd, (struct sockaddr *)&ss, sl) != 0) {
        CHECK(port != 0);
        close(fd);
        return 0;
    }
    CHECK(listen(fd, 0) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&ss, &sl) == 0);
    h->port = ntohs(h->family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                          : ((struct sockaddr_in *)&ss)->sin_port);
    h->listen_fd = fd;
    /* The filler: a blocking connect that completes into the accept queue. */
    int c = socket(h->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(c >= 0);
    CHECK(connect(c, (struct sockaddr *)&ss, sl) == 0);
    h->filler_fd = c;
    return 1;
}

void hang_stop(hang_listener *h) {
    close(h->filler_fd);
    close(h->listen_fd);
}
