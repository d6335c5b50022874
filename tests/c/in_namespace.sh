#!/bin/sh
# in_namespace.sh DIR PROGRAM [ARGS...]
#
# Runs PROGRAM in private mount and network namespaces (unshare(1), as
# root), so that tests of dual-stack names see the same thing everywhere:
#
#   - a network of its own with only a loopback interface: 127.0.0.1 and
#     ::1, and no other program's ports;
#   - an /etc/hosts of its own (written to DIR/hosts), where
#       dual.goconn.test is ::1, then 127.0.0.1
#       v4.goconn.test   is 127.0.0.1 only
#     (no name is listed as ::1 alone: glibc answers an AF_INET lookup of
#     such a name with 127.0.0.1, so a per-family lookup would see both);
#   - an /etc/resolv.conf of its own (DIR/resolv.conf) that asks
#     127.0.0.1:53, where a test may run its DNS server (testutil's
#     dns_start) for names that resolve slowly, one family late, or not at
#     all; with none running, lookups of other names fail at once.
#
# GOCONN_TEST_NAMESPACE=1 tells the program where it is. Exit status 77
# (CTest's SKIP_RETURN_CODE) when namespaces cannot be made here, or the
# loopback has no ::1.
set -eu

if [ $# -lt 2 ]; then
    echo "usage: $0 DIR PROGRAM [ARGS...]" >&2
    exit 2
fi
if [ "$1" != --inside ]; then
    dir=$1
    shift
    mkdir -p "$dir"
    cat >"$dir/hosts" <<'HOSTS'
127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
::1	dual.goconn.test
127.0.0.1	dual.goconn.test
127.0.0.1	v4.goconn.test
HOSTS
    cat >"$dir/resolv.conf" <<'RESOLV'
nameserver 127.0.0.1
options timeout:5 attempts:2
RESOLV
    if ! command -v unshare >/dev/null 2>&1 || ! command -v ip >/dev/null 2>&1 ||
        ! unshare --mount --net true 2>/dev/null; then
        echo "in_namespace.sh: skipped: unshare --mount --net (root, util-linux) and ip (iproute2) are needed" >&2
        exit 77
    fi
    # unshare makes the new mount namespace's mounts private: the bind
    # mounts below are not seen outside.
    exec unshare --mount --net sh "$0" --inside "$dir" "$@"
fi

# Inside the namespaces.
dir=$2
shift 2
ip link set lo up
if ! ip -6 addr show dev lo | grep -q '::1/128'; then
    echo "in_namespace.sh: skipped: no ::1 on the loopback interface (IPv6 is off)" >&2
    exit 77
fi
mount --bind "$dir/hosts" /etc/hosts
mount --bind "$dir/resolv.conf" /etc/resolv.conf
GOCONN_TEST_NAMESPACE=1
export GOCONN_TEST_NAMESPACE
exec "$@"
