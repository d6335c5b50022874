#!/usr/bin/env bash
# tests/fuzz/run.sh - build the libFuzzer harnesses and run each for a while.
#
#   tests/fuzz/run.sh [SECONDS] [--link shared|archive] [--jobs N] [HARNESS ...]
#
# ./build.sh fuzz [SECONDS] calls this (SECONDS defaults to 60, per harness).
# The harnesses (tests/fuzz/fuzz_*.c) are built with clang,
# -fsanitize=fuzzer,address,undefined, against libgoconn.so whose own Go
# packages are instrumented for coverage (see tests/fuzz/CMakeLists.txt), in
# build-fuzz/. Each harness runs from a working corpus in
# build-fuzz/corpus/NAME, seeded from tests/fuzz/corpus/NAME and kept between
# runs; a crash, leak, UBSan report or hang (-timeout) stops that harness,
# leaves the input in build-fuzz/artifacts/NAME/ and fails the run. A summary
# gives executions, executions per second and coverage for each harness.
# Inputs worth keeping for the replay test are copied by hand into
# tests/fuzz/corpus/NAME (libFuzzer's -merge=1 keeps that small).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
FUZZ_BUILD="$ROOT/build-fuzz"
SECONDS_EACH=60
LINK=shared
JOBS=1
HARNESSES=()

while (($#)); do
    case "$1" in
        --link) LINK=$2; shift 2 ;;
        --jobs) JOBS=$2; shift 2 ;;
        -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        [0-9]*) SECONDS_EACH=$1; shift ;;
        *) HARNESSES+=("$1"); shift ;;
    esac
done
if ((${#HARNESSES[@]} == 0)); then
    for f in "$ROOT"/tests/fuzz/fuzz_*.c; do
        n=$(basename "$f" .c); n=${n#fuzz_}
        [[ $n == common ]] || HARNESSES+=("$n")
    done
fi

command -v clang >/dev/null || { echo "run.sh: clang is needed (./build.sh fuzz installs it)" >&2; exit 1; }

printf '\n==> building the fuzzers (clang, link=%s) in %s\n' "$LINK" "$FUZZ_BUILD"
cmake -S "$ROOT" -B "$FUZZ_BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DGOCONN_BUILD_TESTS=OFF -DGOCONN_BUILD_FUZZERS=ON -DGOCONN_FUZZ_LINK="$LINK" >/dev/null
targets=()
for h in "${HARNESSES[@]}"; do targets+=(--target "fuzz_$h"); done
cmake --build "$FUZZ_BUILD" -j "$(nproc)" "${targets[@]}"

# The sanitizers' own settings: LSan on (libFuzzer checks leaks per input),
# and any UBSan report is fatal.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:handle_abort=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"

run_one() {
    local name=$1
    local bin="$FUZZ_BUILD/tests/fuzz/fuzz_$name"
    local corpus="$FUZZ_BUILD/corpus/$name" artifacts="$FUZZ_BUILD/artifacts/$name/"
    local log="$FUZZ_BUILD/fuzz_$name.log"
    mkdir -p "$corpus" "$artifacts"
    printf '\n==> fuzz_%s for %ss (log: %s)\n' "$name" "$SECONDS_EACH" "$log"
    local rc=0
    # -timeout: one input running longer than 30 s is a hang.
    # -rss_limit_mb: memory growth past 4 GiB is a failure too.
    "$bin" -max_total_time="$SECONDS_EACH" -timeout=30 -rss_limit_mb=4096 \
        -print_final_stats=1 -artifact_prefix="$artifacts" \
        "$corpus" "$ROOT/tests/fuzz/corpus/$name" >"$log" 2>&1 || rc=$?
    echo "$rc" >"$FUZZ_BUILD/fuzz_$name.rc"
}

pids=()
for h in "${HARNESSES[@]}"; do
    if ((JOBS > 1)); then
        run_one "$h" &
        pids+=($!)
        while (($(jobs -rp | wc -l) >= JOBS)); do sleep 1; done
    else
        run_one "$h"
    fi
done
for p in "${pids[@]}"; do wait "$p" || true; done

# Summary, from libFuzzer's final statistics and its last status line.
status=0
printf '\n%-10s %-6s %12s %8s %8s %8s %8s %8s\n' harness result execs "exec/s" cov ft corpus "rss MB"
for h in "${HARNESSES[@]}"; do
    log="$FUZZ_BUILD/fuzz_$h.log"
    rc=$(cat "$FUZZ_BUILD/fuzz_$h.rc")
    fstat() { sed -n "s/^stat::$1: *//p" "$log" | tail -1; }
    last=$(grep -E '^#[0-9]+[[:space:]]+(pulse|NEW|REDUCE|INITED|DONE)' "$log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$last")
    result=ok
    if [[ $rc != 0 ]]; then
        result=FAIL
        status=1
    fi
    printf '%-10s %-6s %12s %8s %8s %8s %8s %8s\n' "$h" "$result" "$(fstat number_of_executed_units)" \
        "$(fstat average_exec_per_sec)" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$(fstat peak_rss_mb)"
    if [[ $rc != 0 ]]; then
        echo "--- fuzz_$h failed (exit $rc); the end of $log:" >&2
        tail -40 "$log" >&2
        ls -1 "$FUZZ_BUILD/artifacts/$h/" >&2 || true
    fi
done
exit $status
