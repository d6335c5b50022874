/* fuzz_common.h - what goconn's fuzz harnesses share: a reader that turns
 * the fuzzer's bytes into decisions, loopback peers, and loop driving. */
#ifndef GOCONN_FUZZ_COMMON_H
#define GOCONN_FUZZ_COMMON_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "goconn.h"

/* A failed expectation is a crash: the fuzzer reports it with the input. */
#define FUZZ_CHECK(cond)                                                                 \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                     \
        }                                                                                \
    } while (0)

/* The input, consumed front to back; past its end every read gives zero. */
typedef struct {
    const uint8_t *data;
    size_t size, pos;
} fuzz_input;

uint8_t fz_u8(fuzz_input *in);
uint16_t fz_u16(fuzz_input *in);
uint32_t fz_u32(fuzz_input *in);
int fz_bool(fuzz_input *in);
/* fz_pick returns a number in [0, n). */
unsigned fz_pick(fuzz_input *in, unsigned n);
/* fz_double gives interesting doubles: small values, 0, negatives, NaN, inf. */
double fz_double(fuzz_input *in);
/* fz_bytes points at up to max bytes of the input (not copied); *len says how many. */
const uint8_t *fz_bytes(fuzz_input *in, size_t max, size_t *len);
/* fz_string copies up to max bytes into a new NUL-terminated string (free it). */
char *fz_string(fuzz_input *in, size_t max);

/* A loopback TCP listener on 127.0.0.1 run by a thread: it echoes every
 * connection until EOF. Started once per process. */
int fz_echo_port(void);
/* A port on 127.0.0.1 that refuses connections. */
int fz_refused_port(void);

/* Dispatch `loop` until *flag is set or timeout_ms passes. */
int fz_loop_run(goconn_loop *loop, atomic_int *flag, int timeout_ms);
/* Wait (direct mode) until *flag is set or timeout_ms passes. */
int fz_wait(atomic_int *flag, int timeout_ms);
long long fz_now_ms(void);

#endif
