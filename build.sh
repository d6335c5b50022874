#!/usr/bin/env bash
# build.sh - the one entry point for humans and CI.
#
#   ./build.sh            install missing Debian packages, build build/libgoconn.so
#   ./build.sh test       build, then go vet, go test -race, CTest and pytest
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

ensure_packages() {
    local missing=()
    for p in "${DEB_PACKAGES[@]}"; do
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

run_tests() {
    build
    log "go vet"
    go vet ./...
    log "go test -race"
    go test -race -count=1 -timeout 600s ./...
    log "ctest"
    ctest --test-dir "$BUILD" --output-on-failure -j 2 --timeout 300
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
        build
        "$ROOT/tests/fuzz/run.sh" "${2:-60}"
        ;;
    *)
        echo "usage: $0 [build|test|demo|bench|fuzz [seconds]]" >&2
        exit 2
        ;;
esac
