#!/usr/bin/env bash
# build.sh - the one entry point for humans and CI.
#
#   ./build.sh            install missing Debian packages, build build/libgoconn.so
#   ./build.sh test       build, then go vet, go test -race, CTest (also under
#                         ASan/UBSan/LSan with a cgocheck2 library) and pytest
#   ./build.sh demo       a Happy Eyeballs fallback on loopback, with its timeline
#   ./build.sh bench      benchmarks against asyncio and uvloop
#   ./build.sh fuzz [s]   run the libFuzzer harnesses for s seconds each
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD="$ROOT/build"
cd "$ROOT"

log() { printf '\n==> %s\n' "$*"; }

# Debian packages the build and the tests need.
DEB_PACKAGES=(
    cmake make gcc g++ pkg-config   # the C side
    python3 python3-pytest          # Debian's /usr/bin/python3 runs the Python suite
    python3-uvloop                  # benchmarks compare against it
    openssl                         # TLS test peers
    util-linux mount iproute2       # unshare and mount for dual-stack test namespaces
    ca-certificates
)

# Only ./build.sh fuzz needs these: clang with libFuzzer and the sanitizer
# runtimes, and llvm-symbolizer for readable crash stacks.
FUZZ_PACKAGES=(clang libclang-rt-14-dev llvm)

ensure_packages() {
    local missing=()
    for p in "${DEB_PACKAGES[@]}" "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$p")
        fi
    done
    if ((${#missing[@]})); then
        log "installing Debian packages: ${missing[*]}"
        local sudo=""
        [[ $(id -u) -eq 0 ]] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

find_go() {
    if ! command -v go >/dev/null 2>&1; then
        for d in /usr/local/go/bin "$HOME/go/bin"; do
            if [[ -x $d/go ]]; then export PATH="$d:$PATH"; break; fi
        done
    fi
    command -v go >/dev/null 2>&1 || { echo "build.sh: Go 1.26 or later is required (https://go.dev/dl/); Go 1.21 or later fetches it from the module proxy by itself" >&2; exit 1; }
    export CGO_ENABLED=1
}

build() {
    ensure_packages
    find_go
    log "go mod download"
    go mod download
    log "cmake build"
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$BUILD" -j "$(nproc)"
    # A copy beside the Python package, so PYTHONPATH=python finds it.
    # Copied then renamed: a process that has the old copy mapped keeps it intact.
    cp -f "$BUILD/libgoconn.so" "$ROOT/python/goconn/.libgoconn.so.tmp"
    mv -f "$ROOT/python/goconn/.libgoconn.so.tmp" "$ROOT/python/goconn/libgoconn.so"
    log "built $BUILD/libgoconn.so"
}

# The C tests (and the fuzz corpus replay) again, built with AddressSanitizer
# and UBSan (-fno-sanitize-recover: any report fails the test) with
# LeakSanitizer on, so C-side allocations (the tests' and the library's
# malloc) are leak-checked at exit; the library in this build is compiled
# with GOEXPERIMENT=cgocheck2, which checks every Go pointer stored into C
# memory. The package_config test only repeats the main build's.
sanitized_ctest() {
    local dir="$ROOT/build-sanitize"
    log "ctest under ASan+UBSan+LSan, library built with GOEXPERIMENT=cgocheck2 (and the classic GC)"
    cmake -S "$ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DGOCONN_SANITIZE=address,undefined -DGOCONN_GOEXPERIMENT=cgocheck2 >/dev/null
    cmake --build "$dir" -j "$(nproc)"
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        ctest --test-dir "$dir" --output-on-failure -j 2 --timeout 300 -E '^package_config$'
}

run_tests() {
    build
    log "go vet"
    go vet ./...
    # The unit tests run with the collector the library was built with
    # (the classic one, see README "Departures").
    local experiment
    experiment="$(cat "$BUILD/goexperiment.txt")"
    log "go test -race (GOEXPERIMENT=$experiment)"
    GOEXPERIMENT="$experiment" go test -race -count=1 -timeout 600s ./...
    log "ctest"
    ctest --test-dir "$BUILD" --output-on-failure -j 2 --timeout 300
    sanitized_ctest
    if [[ -d "$ROOT/tests/python" ]] && compgen -G "$ROOT/tests/python/test_*.py" >/dev/null; then
        log "pytest"
        (cd "$ROOT" && GOCONN_LIBRARY="$BUILD/libgoconn.so" PYTHONPATH="$ROOT/python" \
            /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/python)
    fi
    log "all tests passed"
}

case "${1:-build}" in
    build) build ;;
    test) run_tests ;;
    demo)
        build
        PYTHONPATH="$ROOT/python" /usr/bin/python3 -m goconn.demo
        ;;
    bench)
        build
        PYTHONPATH="$ROOT/python" /usr/bin/python3 "$ROOT/tests/bench/run.py" "${@:2}"
        ;;
    fuzz)
        ensure_packages "${FUZZ_PACKAGES[@]}"
        build
        "$ROOT/tests/fuzz/run.sh" "${2:-60}" "${@:3}"
        ;;
    *)
        echo "usage: $0 [build|test|demo|bench|fuzz [seconds]]" >&2
        exit 2
        ;;
esac
