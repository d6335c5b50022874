//go:build libfuzzer && goconn_fuzz_shared

// libfuzzer_forward.c: only in shared fuzzing builds
// (-tags=libfuzzer,goconn_fuzz_shared), so that a libFuzzer-instrumented
// libgoconn.so can be a shared library.
//
// With -gcflags=...=-d=libfuzzer the Go runtime calls libFuzzer's hooks
// (__sanitizer_cov_trace_cmp*, the counter and PC-table registration, the
// strcmp hook) with PC-relative calls. Those need a definition inside the
// shared object: an undefined symbol cannot be reached that way. So this file
// defines each hook here, hidden, as a one-instruction jump through a pointer
// that a constructor fills from the fuzzer executable (dlsym RTLD_DEFAULT;
// the harness is linked with -rdynamic). A jump, not a call, so the hook
// still sees the Go call site as its caller PC, which libFuzzer uses to tell
// comparisons apart. A c-archive build linked into the harness does not need
// this file (the hooks resolve at static link time) and must not have it
// (they would be defined twice), hence the second build tag.

#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>

static void goconn_fuzz_hook_missing(void) {}

#define GOCONN_FUZZ_HOOKS(X)            \
    X(__sanitizer_cov_trace_cmp1)       \
    X(__sanitizer_cov_trace_cmp2)       \
    X(__sanitizer_cov_trace_cmp4)       \
    X(__sanitizer_cov_trace_cmp8)       \
    X(__sanitizer_cov_trace_const_cmp1) \
    X(__sanitizer_cov_trace_const_cmp2) \
    X(__sanitizer_cov_trace_const_cmp4) \
    X(__sanitizer_cov_trace_const_cmp8) \
    X(__sanitizer_cov_8bit_counters_init) \
    X(__sanitizer_cov_pcs_init)         \
    X(__sanitizer_weak_hook_strcmp)

// The pointer each forwarder jumps through, and the forwarder itself.
#define GOCONN_FUZZ_FORWARDER(name)                                                  \
    __attribute__((visibility("hidden"))) void *goconn_fuzz_ptr_##name =              \
        (void *)goconn_fuzz_hook_missing;                                             \
    __asm__(".text\n"                                                                 \
            ".globl " #name "\n"                                                      \
            ".hidden " #name "\n"                                                     \
            ".type " #name ", @function\n" #name ":\n"                                \
            "\tjmp *goconn_fuzz_ptr_" #name "(%rip)\n"                                \
            ".size " #name ", .-" #name "\n");
GOCONN_FUZZ_HOOKS(GOCONN_FUZZ_FORWARDER)

// Priority 101 runs before the unprioritised constructor that starts the Go
// runtime, whose init registers the counters through these hooks.
#define GOCONN_FUZZ_RESOLVE(name)                        \
    do {                                                 \
        void *p = dlsym(RTLD_DEFAULT, #name);            \
        if (p != NULL) goconn_fuzz_ptr_##name = p;       \
    } while (0);
__attribute__((constructor(101))) static void goconn_fuzz_resolve_hooks(void) {
    GOCONN_FUZZ_HOOKS(GOCONN_FUZZ_RESOLVE)
}
