#define _GNU_SOURCE
#include "testutil.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
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

int count_open_sockets(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    char path[300], target[64];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t len = readlink(path, target, sizeof target - 1);
        if (len <= 0) continue;
        target[len] = 0;
        if (strncmp(target, "socket:", 7) == 0) n++;
    }
    closedir(d);
    return n;
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

/* ------------------------------------------------------------------------ */
/* Child processes                                                           */
/* ------------------------------------------------------------------------ */

extern char **environ;

#ifndef GOCONN_PEER_PATH
#define GOCONN_PEER_PATH ""
#endif
#ifndef OPENSSL_PATH
#define OPENSSL_PATH ""
#endif

const char *goconn_peer_path(void) { return GOCONN_PEER_PATH; }

const char *openssl_path(void) { return OPENSSL_PATH[0] ? OPENSSL_PATH : NULL; }

/* Children still running, killed at exit. */
static int live_children[32];
static int atexit_registered;

static void kill_children(void) {
    for (size_t i = 0; i < sizeof live_children / sizeof live_children[0]; i++) {
        if (live_children[i] > 0) {
            kill(live_children[i], SIGKILL);
            waitpid(live_children[i], NULL, 0);
            live_children[i] = 0;
        }
    }
}

static void track_child(int pid, int add) {
    if (!atexit_registered) {
        atexit(kill_children);
        atexit_registered = 1;
    }
    for (size_t i = 0; i < sizeof live_children / sizeof live_children[0]; i++) {
        if (add ? live_children[i] == 0 : live_children[i] == pid) {
            live_children[i] = add ? pid : 0;
            return;
        }
    }
    CHECK(!add); /* too many children */
}

void proc_start(test_proc *p, char *const argv[]) {
    memset(p, 0, sizeof *p);
    int in[2], out[2], err[2];
    CHECK(pipe2(in, O_CLOEXEC) == 0);
    CHECK(pipe2(out, O_CLOEXEC) == 0);
    CHECK(pipe2(err, O_CLOEXEC) == 0);
    posix_spawn_file_actions_t fa;
    CHECK(posix_spawn_file_actions_init(&fa) == 0);
    CHECK(posix_spawn_file_actions_adddup2(&fa, in[0], 0) == 0);
    CHECK(posix_spawn_file_actions_adddup2(&fa, out[1], 1) == 0);
    CHECK(posix_spawn_file_actions_adddup2(&fa, err[1], 2) == 0);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        fprintf(stderr, "posix_spawn %s: %s\n", argv[0], strerror(rc));
        exit(1);
    }
    close(in[0]);
    close(out[1]);
    close(err[1]);
    p->pid = pid;
    p->in_fd = in[1];
    p->out_fd = out[0];
    p->err_fd = err[0];
    fcntl(p->out_fd, F_SETFL, O_NONBLOCK);
    fcntl(p->err_fd, F_SETFL, O_NONBLOCK);
    p->out = calloc(1, 1);
    p->err = calloc(1, 1);
    CHECK(p->out && p->err);
    track_child(pid, 1);
}

/* drain reads what fd has into the buffer; closes fd at EOF. */
static void drain(int *fd, char **buf, size_t *len, size_t *cap) {
    char tmp[8192];
    for (;;) {
        ssize_t n = read(*fd, tmp, sizeof tmp);
        if (n > 0) {
            if (*len + (size_t)n + 1 > *cap) {
                size_t c = *cap ? *cap : 4096;
                while (c < *len + (size_t)n + 1) c *= 2;
                *buf = realloc(*buf, c);
                CHECK(*buf != NULL);
                *cap = c;
            }
            memcpy(*buf + *len, tmp, (size_t)n);
            *len += (size_t)n;
            (*buf)[*len] = 0;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n == 0) {
            close(*fd);
            *fd = -1;
        }
        return;
    }
}

static void proc_poll(test_proc *p, int ms) {
    struct pollfd fds[2];
    int n = 0;
    if (p->out_fd >= 0) fds[n++] = (struct pollfd){p->out_fd, POLLIN, 0};
    if (p->err_fd >= 0) fds[n++] = (struct pollfd){p->err_fd, POLLIN, 0};
    if (n == 0) {
        if (ms > 0) sleep_ms(ms);
        return;
    }
    poll(fds, (nfds_t)n, ms);
    if (p->out_fd >= 0) drain(&p->out_fd, &p->out, &p->out_len, &p->out_cap);
    if (p->err_fd >= 0) drain(&p->err_fd, &p->err, &p->err_len, &p->err_cap);
}

void proc_pump(test_proc *p, int ms) {
    long long deadline = now_ms() + ms;
    do {
        long long left = deadline - now_ms();
        proc_poll(p, left > 50 ? 50 : left > 0 ? (int)left : 0);
    } while (now_ms() < deadline);
}

int proc_has(test_proc *p, int stream, const char *text) {
    const char *buf = stream == PROC_OUT ? p->out : p->err;
    return strstr(buf, text) != NULL;
}

int proc_wait(test_proc *p, int stream, const char *text, int timeout_ms) {
    long long deadline = now_ms() + timeout_ms;
    for (;;) {
        proc_poll(p, 0);
        if (proc_has(p, stream, text)) return 1;
        long long left = deadline - now_ms();
        if (left <= 0) return 0;
        if (p->out_fd < 0 && p->err_fd < 0) return 0; /* the child is gone */
        proc_poll(p, left > 50 ? 50 : (int)left);
    }
}

void proc_write(test_proc *p, const char *text) {
    size_t len = strlen(text);
    while (len > 0) {
        ssize_t n = write(p->in_fd, text, len);
        if (n < 0 && errno == EINTR) continue;
        CHECK(n > 0);
        text += n;
        len -= (size_t)n;
    }
}

void proc_stop(test_proc *p) {
    if (p->pid > 0) {
        kill(p->pid, SIGKILL);
        waitpid(p->pid, NULL, 0);
        track_child(p->pid, 0);
        p->pid = 0;
    }
    if (p->in_fd >= 0) close(p->in_fd);
    if (p->out_fd >= 0) close(p->out_fd);
    if (p->err_fd >= 0) close(p->err_fd);
    p->in_fd = p->out_fd = p->err_fd = -1;
    free(p->out);
    free(p->err);
    p->out = p->err = NULL;
}

static char certs_tmp[64];

static void remove_certs(void) {
    DIR *d = opendir(certs_tmp);
    if (!d) return;
    struct dirent *e;
    char path[512];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", certs_tmp, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(certs_tmp);
}

const char *certs_dir(void) {
    if (certs_tmp[0]) return certs_tmp;
    snprintf(certs_tmp, sizeof certs_tmp, "/tmp/goconn-certs-XXXXXX");
    CHECK(mkdtemp(certs_tmp) != NULL);
    atexit(remove_certs);
    char *argv[] = {(char *)goconn_peer_path(), "certs", certs_tmp, NULL};
    test_proc p;
    proc_start(&p, argv);
    int status = 0;
    CHECK(waitpid(p.pid, &status, 0) == p.pid);
    track_child(p.pid, 0);
    p.pid = 0;
    proc_pump(&p, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "goconn-peer certs failed: %s\n", p.err);
        exit(1);
    }
    proc_stop(&p);
    return certs_tmp;
}

const char *cert_path(const char *name) {
    /* One string per name, kept for the program's life: options structs
     * hold these pointers. */
    static struct {
        char name[64];
        char *path;
    } paths[32];
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    const char *dir = certs_dir();
    pthread_mutex_lock(&mu);
    size_t i = 0;
    for (; i < sizeof paths / sizeof paths[0] && paths[i].path; i++) {
        if (strcmp(paths[i].name, name) == 0) break;
    }
    CHECK(i < sizeof paths / sizeof paths[0] && strlen(name) < sizeof paths[i].name);
    if (!paths[i].path) {
        snprintf(paths[i].name, sizeof paths[i].name, "%s", name);
        paths[i].path = malloc(strlen(dir) + strlen(name) + 2);
        CHECK(paths[i].path != NULL);
        sprintf(paths[i].path, "%s/%s", dir, name);
    }
    const char *path = paths[i].path;
    pthread_mutex_unlock(&mu);
    return path;
}

char *read_file(const char *path, size_t *len_out) {
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    CHECK(fseek(f, 0, SEEK_END) == 0);
    long n = ftell(f);
    CHECK(n >= 0);
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    CHECK(buf != NULL);
    CHECK(fread(buf, 1, (size_t)n, f) == (size_t)n);
    buf[n] = 0;
    fclose(f);
    if (len_out) *len_out = (size_t)n;
    return buf;
}

unsigned char *pem_der(const char *text, size_t *len_out) {
    const char *p = strstr(text, "-----BEGIN ");
    CHECK(p != NULL);
    p = strchr(p, '\n');
    CHECK(p != NULL);
    const char *end = strstr(p, "-----END ");
    CHECK(end != NULL);
    unsigned char *out = malloc((size_t)(end - p));
    CHECK(out != NULL);
    size_t n = 0;
    unsigned acc = 0;
    int bits = 0;
    for (; p < end; p++) {
        const char *alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        const char *c = *p ? strchr(alphabet, *p) : NULL;
        if (!c) continue; /* newlines, '=' */
        acc = (acc << 6) | (unsigned)(c - alphabet);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    *len_out = n;
    return out;
}

/* start_with builds argv from a prefix and a NULL-terminated va_list. */
static void start_with(test_proc *p, const char *const *prefix, size_t nprefix, va_list ap) {
    char *argv[64];
    size_t n = 0;
    for (; n < nprefix; n++) argv[n] = (char *)prefix[n];
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL) {
        CHECK(n + 1 < sizeof argv / sizeof argv[0]);
        argv[n++] = (char *)a;
    }
    argv[n] = NULL;
    proc_start(p, argv);
}

int peer_serve(test_proc *p, ...) {
    const char *prefix[] = {goconn_peer_path(), "serve", "--die-with-parent"};
    va_list ap;
    va_start(ap, p);
    start_with(p, prefix, 3, ap);
    va_end(ap);
    if (!proc_wait(p, PROC_OUT, "\n", 10000)) {
        fprintf(stderr, "goconn-peer serve did not start: %s\n", p->err);
        exit(1);
    }
    int port = 0;
    CHECK(sscanf(p->out, "PORT %d", &port) == 1 && port > 0);
    return port;
}

int openssl_serve(test_proc *p, ...) {
    CHECK(openssl_path() != NULL);
    const char *prefix[] = {openssl_path(), "s_server", "-accept", "127.0.0.1:0"};
    va_list ap;
    va_start(ap, p);
    start_with(p, prefix, 4, ap);
    va_end(ap);
    long long deadline = now_ms() + 10000;
    for (;;) {
        const char *a = strstr(p->out, "ACCEPT 127.0.0.1:");
        if (a && strchr(a, '\n')) {
            int port = atoi(a + strlen("ACCEPT 127.0.0.1:"));
            CHECK(port > 0);
            return port;
        }
        if (now_ms() > deadline) {
            fprintf(stderr, "openssl s_server did not start: %s%s\n", p->out, p->err);
            exit(1);
        }
        proc_poll(p, 50);
    }
}

int wait_fds(int n, int timeout_ms) {
    long long deadline = now_ms() + timeout_ms;
    while (count_open_fds() != n) {
        if (now_ms() > deadline) return 0;
        sleep_ms(2);
    }
    return 1;
}

/* ------------------------------------------------------------------------ */
/* A recording protocol                                                      */
/* ------------------------------------------------------------------------ */

static void copy_text(char *dst, size_t size, const char *src, int *has) {
    if (has) *has = src != NULL;
    snprintf(dst, size, "%s", src ? src : "");
}

void test_error_save(test_error *dst, const goconn_error *e) {
    memset(dst, 0, sizeof *dst);
    if (!e) return;
    dst->present = 1;
    dst->version = e->version;
    dst->code = e->code;
    dst->errnum = e->errnum;
    CHECK(e->message != NULL);
    copy_text(dst->message, sizeof dst->message, e->message, NULL);
    copy_text(dst->strerror_, sizeof dst->strerror_, e->strerror, &dst->has_strerror);
    if (e->version >= 2) {
        copy_text(dst->reason, sizeof dst->reason, e->reason, &dst->has_reason);
        copy_text(dst->library, sizeof dst->library, e->library, &dst->has_library);
        dst->verify_code = e->verify_code;
        copy_text(dst->verify_message, sizeof dst->verify_message, e->verify_message, &dst->has_verify_message);
    }
}

static void rec_add(rec *r, char what) {
    pthread_mutex_lock(r->mu);
    size_t n = strlen(r->log);
    int run = (what == 'd' && n > 0 && r->log[n - 1] == 'd') ||
              ((what == 'P' || what == 'R') && n >= 2 && strcmp(r->log + n - 2, "PR") == 0);
    if (!run) {
        CHECK(n + 1 < sizeof r->log);
        r->log[n] = what;
        r->log[n + 1] = 0;
    }
    pthread_mutex_unlock(r->mu);
}

static void rec_made(void *p, goconn_transport *t) {
    rec *r = p;
    rec_add(r, 'M');
    r->transport = t;
    if (r->on_made) r->on_made(r, t);
    r->made = 1;
}

static void rec_data(void *p, const void *d, size_t n) {
    rec *r = p;
    rec_add(r, 'd');
    CHECK(n >= 1);
    if (r->data_len < r->keep_max) {
        size_t k = r->keep_max - r->data_len < n ? r->keep_max - r->data_len : n;
        memcpy(r->data + r->data_len, d, k);
        r->data_len += k;
    }
    if (r->on_data) r->on_data(r, d, n);
    r->received += n;
}

static int rec_eof(void *p) {
    rec *r = p;
    rec_add(r, 'E');
    r->eof = 1;
    return r->eof_return;
}

static void rec_lost(void *p, const goconn_error *e) {
    rec *r = p;
    rec_add(r, 'L');
    test_error_save(&r->lost_err, e);
    if (r->on_lost) r->on_lost(r, e);
    r->nlost++;
    r->lost = 1;
}

static void rec_pause(void *p) {
    rec *r = p;
    rec_add(r, 'P');
    CHECK(!r->paused);
    r->npause++;
    r->paused = 1;
}

static void rec_resume(void *p) {
    rec *r = p;
    rec_add(r, 'R');
    CHECK(r->paused);
    r->nresume++;
    r->paused = 0;
}

static void rec_done(void *u, goconn_transport *t, void *p, const goconn_error *e) {
    rec *r = u;
    rec_add(r, e ? 'F' : 'O');
    test_error_save(&r->done_err, e);
    if (!e) {
        CHECK(t != NULL && p == r);
        CHECK(t == r->transport);
    } else {
        CHECK(t == NULL && p == NULL);
    }
    r->ndone++;
    r->done = 1;
}

void rec_init(rec *r, size_t keep_max) {
    memset(r, 0, sizeof *r);
    pthread_mutex_t *mu = malloc(sizeof *mu);
    CHECK(mu != NULL);
    pthread_mutex_init(mu, NULL);
    r->mu = mu;
    r->keep_max = keep_max;
    if (keep_max) {
        r->data = malloc(keep_max);
        CHECK(r->data != NULL);
    }
}

void rec_free(rec *r) {
    pthread_mutex_destroy(r->mu);
    free(r->mu);
    free(r->data);
    r->mu = NULL;
    r->data = NULL;
}

int rec_open(rec *r, const goconn_options *o, goconn_request **req_out) {
    goconn_protocol p = GOCONN_PROTOCOL_INIT;
    p.connection_made = rec_made;
    p.data_received = rec_data;
    p.eof_received = rec_eof;
    p.connection_lost = rec_lost;
    p.pause_writing = rec_pause;
    p.resume_writing = rec_resume;
    return goconn_open_connection(o, &p, rec_done, r, req_out);
}

int rec_wait(goconn_loop *loop, volatile int *flag, int timeout_ms) {
    if (loop) return loop_run(loop, flag, timeout_ms);
    return wait_flag(flag, timeout_ms);
}

int rec_wait_bytes(goconn_loop *loop, rec *r, size_t n, int timeout_ms) {
    long long deadline = now_ms() + timeout_ms;
    while (r->received < n) {
        long long left = deadline - now_ms();
        if (left <= 0) return 0;
        if (loop) {
            struct pollfd p = {goconn_loop_fd(loop), POLLIN, 0};
            poll(&p, 1, left > 20 ? 20 : (int)left);
            CHECK(goconn_loop_dispatch(loop, 0) >= 0);
        } else {
            sleep_ms(1);
        }
    }
    return 1;
}

void warm_up(goconn_loop *loop) {
    test_proc peer;
    int port = peer_serve(&peer, NULL);
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", port);
    goconn_options o;
    CHECK_EQ_INT(goconn_options_init(&o, GOCONN_OPTIONS_VERSION), 0);
    o.loop = loop;
    o.host = "127.0.0.1";
    o.port = port_s;
    rec r;
    rec_init(&r, 0);
    CHECK_EQ_INT(rec_open(&r, &o, NULL), 0);
    CHECK(rec_wait(loop, &r.done, 10000));
    CHECK(!r.done_err.present);
    CHECK_EQ_INT(goconn_transport_abort(r.transport), 1);
    CHECK(rec_wait(loop, &r.lost, 10000));
    rec_free(&r);
    proc_stop(&peer);
}

const char *rec_log(rec *r) {
    static __thread char buf[4][sizeof r->log];
    static __thread int next;
    char *b = buf[next++ % 4];
    pthread_mutex_lock(r->mu);
    memcpy(b, r->log, sizeof r->log);
    pthread_mutex_unlock(r->mu);
    return b;
}

/* ------------------------------------------------------------------------ */
/* The test namespace and its DNS server                                     */
/* ------------------------------------------------------------------------ */

int count_addrs(const char *host, int family) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = family;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, "80", &hints, &res) != 0) return -1;
    int n = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) n++;
    freeaddrinfo(res);
    return n;
}

void require_namespace(void) {
    const char *env = getenv("GOCONN_TEST_NAMESPACE");
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    int ok = env != NULL && getaddrinfo(NS_DUAL, "80", &hints, &res) == 0;
    if (ok) {
        /* ::1 first, then 127.0.0.1. */
        ok = res && res->ai_family == AF_INET6 && res->ai_next && res->ai_next->ai_family == AF_INET;
        freeaddrinfo(res);
    }
    if (!ok) {
        fprintf(stderr, "this test runs inside tests/c/in_namespace.sh (private mount and network\n"
                        "namespaces with their own /etc/hosts): ctest runs it that way, or run\n"
                        "  sh tests/c/in_namespace.sh DIR PROGRAM\n");
        exit(1);
    }
}

#define DNS_PENDING_MAX 1024

typedef struct dns_pending {
    long long due_ms;
    struct sockaddr_storage to;
    socklen_t tolen;
    size_t len;
    unsigned char msg[512];
} dns_pending;

static struct {
    int fd;
    pthread_t thread;
    volatile int stop;
    const dns_answer *table;
    size_t n;
    pthread_mutex_t mu;
    int counts[64];
    int total;
    dns_pending *pending; /* DNS_PENDING_MAX slots; len 0 = free */
} dns = {.fd = -1, .mu = PTHREAD_MUTEX_INITIALIZER};

/* dns_qname reads the question's name into out (lower case, dotted) and
 * returns the offset just past it, or 0. */
static size_t dns_qname(const unsigned char *m, size_t len, char *out, size_t outsz) {
    size_t off = 12, o = 0;
    for (;;) {
        if (off >= len) return 0;
        size_t l = m[off++];
        if (l == 0) break;
        if (l > 63 || off + l > len || o + l + 2 > outsz) return 0;
        if (o) out[o++] = '.';
        for (size_t i = 0; i < l; i++) {
            char c = (char)m[off + i];
            out[o++] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
        }
        off += l;
    }
    out[o] = 0;
    return off;
}

/* dns_reply builds the answer to query q into p; returns the delay. */
static int dns_reply(const unsigned char *q, size_t qlen, dns_pending *p) {
    char name[256];
    size_t off = dns_qname(q, qlen, name, sizeof name);
    if (off == 0 || off + 4 > qlen) return -1;
    int qtype = q[off] << 8 | q[off + 1];
    size_t qend = off + 4;
    const dns_answer *a = NULL;
    pthread_mutex_lock(&dns.mu);
    dns.total++;
    for (size_t i = 0; i < dns.n; i++) {
        if (strcasecmp(dns.table[i].name, name) == 0 && dns.table[i].qtype == qtype) {
            a = &dns.table[i];
            if (i < sizeof dns.counts / sizeof dns.counts[0]) dns.counts[i]++;
            break;
        }
    }
    pthread_mutex_unlock(&dns.mu);
    unsigned char *m = p->msg;
    memcpy(m, q, qend); /* the header and the question */
    m[2] = (unsigned char)(0x80 | (q[2] & 0x01)); /* QR, RD as asked */
    m[3] = 0x80;                                   /* RA, rcode 0 */
    m[4] = 0, m[5] = 1;                            /* one question */
    m[6] = m[7] = m[8] = m[9] = m[10] = m[11] = 0;
    size_t len = qend;
    int count = 0;
    if (!a) {
        m[3] |= 3; /* NXDOMAIN */
    } else {
        char addrs[512];
        snprintf(addrs, sizeof addrs, "%s", a->addrs);
        char *save = NULL;
        for (char *tok = strtok_r(addrs, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
            unsigned char raw[16];
            int fam = qtype == DNS_AAAA ? AF_INET6 : AF_INET;
            size_t rlen = qtype == DNS_AAAA ? 16 : 4;
            CHECK(inet_pton(fam, tok, raw) == 1);
            CHECK(len + 12 + rlen <= sizeof p->msg);
            unsigned char *r = m + len;
            r[0] = 0xc0, r[1] = 0x0c; /* the question's name */
            r[2] = (unsigned char)(qtype >> 8), r[3] = (unsigned char)qtype;
            r[4] = 0, r[5] = 1;                   /* IN */
            r[6] = r[7] = r[8] = 0, r[9] = 1;     /* TTL 1 */
            r[10] = 0, r[11] = (unsigned char)rlen;
            memcpy(r + 12, raw, rlen);
            len += 12 + rlen;
            count++;
        }
    }
    m[7] = (unsigned char)count;
    p->len = len;
    return a ? a->delay_ms : 0;
}

static void *dns_thread(void *arg) {
    (void)arg;
    while (!dns.stop) {
        long long now = now_ms(), next = now + 50;
        for (int i = 0; i < DNS_PENDING_MAX; i++) {
            dns_pending *p = &dns.pending[i];
            if (!p->len) continue;
            if (p->due_ms <= now) {
                sendto(dns.fd, p->msg, p->len, 0, (struct sockaddr *)&p->to, p->tolen);
                p->len = 0;
            } else if (p->due_ms < next) {
                next = p->due_ms;
            }
        }
        struct pollfd pf = {dns.fd, POLLIN, 0};
        if (poll(&pf, 1, (int)(next - now > 0 ? next - now : 0)) <= 0) continue;
        for (;;) {
            unsigned char q[512];
            dns_pending in;
            in.tolen = sizeof in.to;
            ssize_t n = recvfrom(dns.fd, q, sizeof q, MSG_DONTWAIT, (struct sockaddr *)&in.to, &in.tolen);
            if (n < 0) break;
            if (n < 12) continue;
            int delay = dns_reply(q, (size_t)n, &in);
            if (delay < 0) continue;
            if (delay == 0) {
                sendto(dns.fd, in.msg, in.len, 0, (struct sockaddr *)&in.to, in.tolen);
                continue;
            }
            in.due_ms = now_ms() + delay;
            int i = 0;
            while (i < DNS_PENDING_MAX && dns.pending[i].len) i++;
            if (i == DNS_PENDING_MAX) {
                fprintf(stderr, "dns: too many delayed answers, one dropped\n");
                continue;
            }
            dns.pending[i] = in;
        }
    }
    return NULL;
}

void dns_start(const dns_answer *table, size_t n) {
    CHECK(dns.fd < 0);
    CHECK(getenv("GOCONN_TEST_NAMESPACE") != NULL); /* port 53 of the namespace's own loopback */
    dns.table = table;
    dns.n = n;
    dns.stop = 0;
    dns.pending = calloc(DNS_PENDING_MAX, sizeof *dns.pending);
    CHECK(dns.pending != NULL);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons(53);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sin, sizeof sin) != 0) {
        fprintf(stderr, "dns: bind 127.0.0.1:53: %s\n", strerror(errno));
        exit(1);
    }
    int big = 1 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    dns.fd = fd;
    CHECK(pthread_create(&dns.thread, NULL, dns_thread, NULL) == 0);
}

void dns_stop(void) {
    if (dns.fd < 0) return;
    dns.stop = 1;
    pthread_join(dns.thread, NULL);
    close(dns.fd);
    dns.fd = -1;
    free(dns.pending);
    dns.pending = NULL;
}

int dns_queries(const char *name, int qtype) {
    pthread_mutex_lock(&dns.mu);
    int n = 0;
    if (!name) {
        n = dns.total;
    } else {
        for (size_t i = 0; i < dns.n && i < sizeof dns.counts / sizeof dns.counts[0]; i++) {
            if (strcasecmp(dns.table[i].name, name) == 0 && dns.table[i].qtype == qtype) n += dns.counts[i];
        }
    }
    pthread_mutex_unlock(&dns.mu);
    return n;
}
