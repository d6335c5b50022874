/* 64 MiB each way over TLS, against the goconn-peer (tests/peer), with
 * SHA-256 checksums compared to the ones the peer prints:
 *
 * - upload, loop mode: written in 512 KiB pieces under flow control (each
 *   write fills the buffer to the TLS high-water mark, so pause_writing
 *   comes inside every write, resume_writing once the buffer is down to the
 *   low mark), then close; the peer (discard) reports the byte count and
 *   hash of what it decrypted;
 * - download, direct mode: the peer sends the pattern and a close_notify;
 *   every byte is checked against the pattern as it comes, the hash against
 *   the peer's, and pause_reading holds data_received back meanwhile.
 *
 * The stream pattern is the peer's: byte i is i % 251. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#define TOTAL (64u << 20)
#define TOTAL_TEXT "67108864"

/* ------------------------------------------------------------------------ */
/* SHA-256 (FIPS 180-4)                                                     */
/* ------------------------------------------------------------------------ */

typedef struct {
    uint32_t h[8];
    uint64_t len;
    unsigned char buf[64];
    size_t nbuf;
} sha256;

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_init(sha256 *s) {
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, iv, sizeof iv);
    s->len = 0;
    s->nbuf = 0;
}

static void sha256_block(sha256 *s, const unsigned char *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3], e = s->h[4], f = s->h[5], g = s->h[6], h = s->h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
        uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    s->h[0] += a, s->h[1] += b, s->h[2] += c, s->h[3] += d;
    s->h[4] += e, s->h[5] += f, s->h[6] += g, s->h[7] += h;
}

static void sha256_update(sha256 *s, const void *data, size_t n) {
    const unsigned char *p = data;
    s->len += n;
    if (s->nbuf) {
        size_t k = 64 - s->nbuf < n ? 64 - s->nbuf : n;
        memcpy(s->buf + s->nbuf, p, k);
        s->nbuf += k, p += k, n -= k;
        if (s->nbuf < 64) return;
        sha256_block(s, s->buf);
        s->nbuf = 0;
    }
    for (; n >= 64; p += 64, n -= 64) sha256_block(s, p);
    memcpy(s->buf, p, n);
    s->nbuf = n;
}

/* sha256_hex finishes the hash into 64 hex digits and a NUL. */
static void sha256_hex(sha256 *s, char out[65]) {
    uint64_t bits = s->len * 8;
    unsigned char pad[72] = {0x80};
    size_t padlen = (s->nbuf < 56 ? 56 : 120) - s->nbuf;
    for (int i = 0; i < 8; i++) pad[padlen + (size_t)i] = (unsigned char)(bits >> (56 - 8 * i));
    sha256_update(s, pad, padlen + 8);
    for (int i = 0; i < 8; i++) snprintf(out + 8 * i, 9, "%08x", s->h[i]);
}

static void sha256_selftest(void) {
    char hex[65];
    sha256 s;
    sha256_init(&s);
    sha256_update(&s, "abc", 3);
    sha256_hex(&s, hex);
    CHECK_STREQ(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    sha256_init(&s);
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    for (size_t i = 0; i < strlen(m); i++) sha256_update(&s, m + i, 1); /* byte by byte */
    sha256_hex(&s, hex);
    CHECK_STREQ(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

/* ------------------------------------------------------------------------ */

static goconn_loop *loop;

static void fill_pattern(unsigned char *b, size_t n, size_t offset) {
    unsigned p = (unsigned)(offset % 251);
    for (size_t i = 0; i < n; i++) {
        b[i] = (unsigned char)p;
        if (++p == 251) p = 0;
    }
}

static void ssl_init(goconn_ssl_options *s) {
    CHECK_EQ_INT(goconn_ssl_options_init(s, GOCONN_SSL_OPTIONS_VERSION), 0);
    s->ca_file = cert_path("ca.pem");
}

static void opts_init(goconn_options *o, goconn_loop *l, int port, const goconn_ssl_options *s) {
    static char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", port);
    CHECK_EQ_INT(goconn_options_init(o, GOCONN_OPTIONS_VERSION), 0);
    o->loop = l;
    o->host = "127.0.0.1";
    o->port = port_s;
    o->ssl = s;
    o->server_hostname = "localhost";
}

/* peer_hash finds "<WHAT> 1 bytes=" TOTAL " sha256=<hex>" in the peer's log. */
static void peer_hash(test_proc *peer, const char *what, char out[65]) {
    char want[64];
    snprintf(want, sizeof want, "%s 1 bytes=" TOTAL_TEXT " sha256=", what);
    if (!proc_wait(peer, PROC_ERR, want, 10000)) fprintf(stderr, "peer log:\n%s\nwanted %s\n", peer->err, want);
    CHECK(proc_has(peer, PROC_ERR, want));
    CHECK(proc_wait(peer, PROC_ERR, "\n", 1000));
    const char *h = strstr(peer->err, want) + strlen(want);
    CHECK(strlen(h) >= 64);
    memcpy(out, h, 64);
    out[64] = 0;
}

static char sent_hash[65];

static void upload(void) {
    printf("upload, loop mode\n");
    test_proc peer;
    int port = peer_serve(&peer, "--tls", "--certdir", certs_dir(), "--mode", "discard", NULL);
    goconn_ssl_options s;
    ssl_init(&s);
    goconn_options o;
    opts_init(&o, loop, port, &s);
    rec r;
    rec_init(&r, 0);
    CHECK_EQ_INT(rec_open(&r, &o, NULL), 0);
    CHECK(rec_wait(loop, &r.done, 10000));
    CHECK(!r.done_err.present);
    goconn_transport *t = r.transport;

    long long t0 = now_ms();
    sha256 h;
    sha256_init(&h);
    static unsigned char chunk[512 * 1024]; /* the high-water mark */
    size_t off = 0;
    size_t max_buffered = 0;
    while (off < TOTAL) {
        if (r.paused) {
            /* Wait for resume_writing, dispatching. */
            long long deadline = now_ms() + 20000;
            while (r.paused) {
                CHECK(now_ms() < deadline);
                struct pollfd p = {goconn_loop_fd(loop), POLLIN, 0};
                poll(&p, 1, 50);
                CHECK(goconn_loop_dispatch(loop, 0) >= 0);
            }
            size_t size = 0;
            CHECK_EQ_INT(goconn_transport_get_write_buffer_size(t, &size), 0);
            CHECK(size <= 131072); /* resumed at or below the low-water mark */
            continue;
        }
        size_t n = TOTAL - off < sizeof chunk ? TOTAL - off : sizeof chunk;
        fill_pattern(chunk, n, off);
        sha256_update(&h, chunk, n);
        int pauses = r.npause;
        CHECK_EQ_INT(goconn_transport_write(t, chunk, n), 0);
        off += n;
        /* A TLS write is all buffered (never sent from this thread), so the
         * buffer held at least the 524288 bytes just written: paused at
         * size >= high, before write returned. */
        CHECK_EQ_INT(r.npause, pauses + 1);
        CHECK(r.paused);
        size_t size = 0;
        CHECK_EQ_INT(goconn_transport_get_write_buffer_size(t, &size), 0);
        if (size > max_buffered) max_buffered = size;
    }
    sha256_hex(&h, sent_hash);
    CHECK_EQ_INT(goconn_transport_close(t), 0);
    CHECK(rec_wait(loop, &r.lost, 30000));
    long long ms = now_ms() - t0;
    printf("  %u bytes in %lld ms, %d pauses, at most %zu buffered\n", TOTAL, ms, r.npause, max_buffered);
    CHECK(!r.lost_err.present);
    CHECK_STREQ(rec_log(&r), "MOPREL");
    CHECK_EQ_INT(r.npause, TOTAL / sizeof chunk);
    CHECK_EQ_INT(r.nresume, r.npause);

    char theirs[65];
    peer_hash(&peer, "RECV", theirs);
    CHECK_STREQ(theirs, sent_hash);
    CHECK(proc_wait(&peer, PROC_ERR, "EOF 1 notify\n", 5000));
    rec_free(&r);
    proc_stop(&peer);
}

/* The download's receiver, on library threads. */
typedef struct {
    sha256 h;
    volatile int pausing;  /* reading was paused from data_received */
    volatile size_t count; /* bytes seen by download_data */
    size_t next_pause;
} download_state;

static void download_data(rec *r, const void *data, size_t n) {
    download_state *d = r->user;
    CHECK(!d->pausing); /* nothing while paused */
    CHECK(n >= 1 && n <= 256 * 1024); /* the header's promise */
    size_t offset = d->count;
    const unsigned char *p = data;
    unsigned want = (unsigned)(offset % 251);
    for (size_t i = 0; i < n; i++) {
        if (p[i] != want) {
            fprintf(stderr, "pattern broken at byte %zu\n", offset + i);
            exit(1);
        }
        if (++want == 251) want = 0;
    }
    sha256_update(&d->h, data, n);
    d->count = offset + n;
    if (offset + n >= d->next_pause && d->next_pause < TOTAL) {
        d->next_pause += 16u << 20;
        CHECK_EQ_INT(goconn_transport_pause_reading(r->transport), 0);
        CHECK_EQ_INT(goconn_transport_is_reading(r->transport), 0);
        d->pausing = 1;
    }
}

static void download(void) {
    printf("download, direct mode\n");
    test_proc peer;
    int port = peer_serve(&peer, "--tls", "--certdir", certs_dir(), "--mode", "close-notify-after", "--bytes",
                          TOTAL_TEXT, NULL);
    goconn_ssl_options s;
    ssl_init(&s);
    goconn_options o;
    opts_init(&o, NULL, port, &s);
    rec r;
    rec_init(&r, 0);
    download_state d;
    memset(&d, 0, sizeof d);
    sha256_init(&d.h);
    d.next_pause = 16u << 20;
    r.user = &d;
    r.on_data = download_data;
    long long t0 = now_ms();
    CHECK_EQ_INT(rec_open(&r, &o, NULL), 0);
    int pauses = 0;
    long long deadline = now_ms() + 30000;
    while (!r.lost) {
        CHECK(now_ms() < deadline);
        if (d.pausing) {
            /* Held: nothing comes while paused. */
            size_t before = d.count;
            sleep_ms(100);
            CHECK_EQ_INT(d.count, before);
            CHECK_EQ_INT(r.lost, 0);
            pauses++;
            d.pausing = 0;
            CHECK_EQ_INT(goconn_transport_resume_reading(r.transport), 0);
        }
        sleep_ms(1);
    }
    long long ms = now_ms() - t0;
    printf("  %zu bytes in %lld ms, %d read pauses\n", (size_t)r.received, ms, pauses);
    CHECK(wait_live_handles(1, 5000)); /* the loop */
    CHECK(!r.lost_err.present);
    CHECK_STREQ(rec_log(&r), "MOdEL");
    CHECK_EQ_INT(r.received, TOTAL);
    CHECK_EQ_INT(pauses, 3); /* at 16, 32 and 48 MiB */
    char ours[65], theirs[65];
    sha256_hex(&d.h, ours);
    peer_hash(&peer, "SENT", theirs);
    CHECK_STREQ(ours, theirs);
    /* The same pattern as the upload's. */
    CHECK_STREQ(ours, sent_hash);
    /* The peer waited for our close_notify. */
    CHECK(proc_wait(&peer, PROC_ERR, "EOF 1 notify\n", 5000));
    rec_free(&r);
    proc_stop(&peer);
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    sha256_selftest();
    CHECK_EQ_INT(goconn_loop_new(&loop), 0);
    certs_dir();
    int fds = -1;
    warm_up(loop);
    fds = count_open_fds();

    upload();
    download();

    CHECK(wait_fds(fds, 5000));
    CHECK_EQ_INT(goconn_loop_free(loop), 0);
    CHECK(wait_live_handles(0, 5000));
    CHECK_EQ_INT(goconn_live_handles(), 0);
    printf("ok\n");
    return 0;
}
