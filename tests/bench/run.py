#!/usr/bin/env python3
"""Benchmarks: the same Python protocol code over asyncio's, uvloop's and
goconn's create_connection, against an independent loopback peer
(build/goconn-peer, a small Go server that is not goconn), measured side by
side in one invocation. Every figure is a median over rounds, and the table
gives goconn's ratio to each peer, because this machine is noisy.

    ./build.sh bench [--rounds N] [--only SCENARIO ...]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "python"))

import goconn  # noqa: E402

try:
    import uvloop  # Debian's python3-uvloop
except ImportError:  # pragma: no cover
    uvloop = None

PEER = os.path.join(ROOT, "build", "goconn-peer")
MiB = 1024 * 1024


# ---- connectors ---------------------------------------------------------------


class Connector:
    """A way to run an event loop and open a connection on it."""

    def __init__(self, name: str, new_loop, connect):
        self.name = name
        self.new_loop = new_loop
        self.connect = connect  # async (loop, factory, host, port, **kw) -> (tr, pr)

    def run(self, coro_fn):
        loop = self.new_loop()
        try:
            return loop.run_until_complete(coro_fn(self, loop))
        finally:
            loop.close()


async def _loop_connect(loop, factory, host, port, **kw):
    return await loop.create_connection(factory, host, port, **kw)


async def _goconn_connect(loop, factory, host, port, **kw):
    return await goconn.create_connection(factory, host, port, **kw)


def connectors() -> list[Connector]:
    out = [Connector("asyncio", asyncio.new_event_loop, _loop_connect)]
    if uvloop is not None:
        out.append(Connector("uvloop", uvloop.new_event_loop, _loop_connect))
    out.append(Connector("goconn", asyncio.new_event_loop, _goconn_connect))
    return out


# ---- the peer -----------------------------------------------------------------


class Peer:
    """build/goconn-peer serving one mode on 127.0.0.1."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen([PEER, "serve", "--die-with-parent", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "PORT":
            raise RuntimeError(f"goconn-peer did not start: {line}")
        self.port = int(line[1])

    def close(self):
        self.proc.kill()
        self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


# ---- scenarios ------------------------------------------------------------------


class Sink(asyncio.Protocol):
    """Counts what arrives until the peer closes."""

    def __init__(self, done: asyncio.Future):
        self.done = done
        self.n = 0

    def data_received(self, data: bytes) -> None:
        self.n += len(data)

    def eof_received(self):
        return None

    def connection_lost(self, exc) -> None:
        if not self.done.done():
            self.done.set_result(self.n)


def bulk_receive(nbytes: int, tls_ctx: ssl.SSLContext | None):
    async def run(c: Connector, loop) -> dict:
        done = loop.create_future()
        kw = dict(ssl=tls_ctx, server_hostname="localhost") if tls_ctx else {}
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        await c.connect(loop, lambda: Sink(done), "127.0.0.1", run.port, **kw)
        got = await done
        dt, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
        if got != nbytes:
            raise RuntimeError(f"{c.name}: received {got} of {nbytes} bytes")
        return {"MB/s": nbytes / MiB / dt, "CPU s/GB": cpu / (nbytes / (1024 * MiB))}

    return run


class Hanging:
    """[::1]:port never answers: a listener with a full accept queue."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET6)
        self.sock.bind(("::1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.filler = socket.create_connection(("::1", self.port))

    def close(self):
        self.filler.close()
        self.sock.close()


HE_DELAY = 0.25
HE_NAME = "dual.goconn.test"


def happy_eyeballs_lateness(per_round: int):
    """How late the connection through the next attempt comes, past the
    delay: the name resolves to ::1 (hanging) then 127.0.0.1 (answering), so
    each connect takes the delay plus whatever the implementation adds."""

    async def run(c: Connector, loop) -> dict:
        # asyncio makes its attempts through loop.sock_connect: note when the
        # first one starts (goconn's own trace says it for goconn).
        first = []
        if c.name != "goconn":
            sock_connect = loop.sock_connect

            async def timed_sock_connect(sock, address):
                first.append(time.monotonic())
                return await sock_connect(sock, address)

            loop.sock_connect = timed_sock_connect
        late, e2e = [], []
        for _ in range(per_round):
            first.clear()
            t0 = time.monotonic()
            tr, _ = await c.connect(loop, asyncio.Protocol, HE_NAME, run.port, happy_eyeballs_delay=HE_DELAY)
            t1 = time.monotonic()
            start = tr.get_extra_info("attempts")[0].start if c.name == "goconn" else first[0]
            late.append((t1 - start - HE_DELAY) * 1000)
            e2e.append((t1 - t0 - HE_DELAY) * 1000)
            peer = tr.get_extra_info("peername")
            tr.close()
            if peer[0] != "127.0.0.1":
                raise RuntimeError(f"{c.name}: connected to {peer}, not through the fallback")
        return {"ms late (median)": statistics.median(late), "ms late (max)": max(late),
                "ms late incl. lookup (median)": statistics.median(e2e), "ms late incl. lookup (max)": max(e2e)}

    return run


SCENARIOS = {}


def scenario(name, peer_args, fn, higher_is_better):
    SCENARIOS[name] = (peer_args, fn, higher_is_better)


def setup(certdir: str):
    ctx = ssl.create_default_context(cafile=os.path.join(certdir, "ca.pem"))
    scenario("plain bulk receive", ["--mode", "send", "--no-hash", "--bytes", str(512 * MiB)],
             bulk_receive(512 * MiB, None), {"MB/s": True, "CPU s/GB": False})
    scenario("TLS bulk receive", ["--tls", "--certdir", certdir, "--mode", "send", "--no-hash", "--bytes", str(256 * MiB)],
             bulk_receive(256 * MiB, ctx), {"MB/s": True, "CPU s/GB": False})
    if os.environ.get("GOCONN_BENCH_NAMESPACE") == "1":
        scenario("Happy Eyeballs fallback", None, happy_eyeballs_lateness(20),
                 {"ms late (median)": False, "ms late (max)": False,
                  "ms late incl. lookup (median)": False, "ms late incl. lookup (max)": False})


# ---- the runner -------------------------------------------------------------------


def in_namespace() -> bool:
    """Re-run inside a private mount namespace whose /etc/hosts maps the
    Happy Eyeballs name to ::1 and 127.0.0.1 (root only; else that scenario
    is left out). Returns False when this process should go on itself."""
    if os.environ.get("GOCONN_BENCH_NAMESPACE") or os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    hosts = tempfile.NamedTemporaryFile("w", prefix="goconn-bench-hosts-", delete=False)
    hosts.write(f"127.0.0.1 localhost\n::1 {HE_NAME}\n127.0.0.1 {HE_NAME}\n")
    hosts.close()
    env = dict(os.environ, GOCONN_BENCH_NAMESPACE="1")
    cmd = f'mount --bind "{hosts.name}" /etc/hosts && exec "{sys.executable}" "{__file__}" "$@"'
    rc = subprocess.call(["unshare", "--mount", "/bin/sh", "-c", cmd, "sh", *sys.argv[1:]], env=env)
    os.unlink(hosts.name)
    sys.exit(rc)


def main() -> int:
    in_namespace()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", nargs="*", help="scenario names (substrings)")
    args = ap.parse_args()
    if not os.path.exists(PEER):
        print(f"{PEER} is missing: run ./build.sh", file=sys.stderr)
        return 1
    certdir = tempfile.mkdtemp(prefix="goconn-bench-")
    subprocess.run([PEER, "certs", certdir], check=True, stdout=subprocess.DEVNULL)
    setup(certdir)
    conns = connectors()
    results: dict[str, dict[str, dict[str, list[float]]]] = {}
    for name, (peer_args, fn, better) in SCENARIOS.items():
        if args.only and not any(o.lower() in name.lower() for o in args.only):
            continue
        hanging = None
        if peer_args is None:  # Happy Eyeballs: [::1]:P hangs, 127.0.0.1:P answers
            hanging = Hanging()
            peer_args = ["--listen", f"127.0.0.1:{hanging.port}", "--mode", "discard", "--no-hash"]
        with Peer(*peer_args) as peer:
            fn.port = peer.port
            per = results.setdefault(name, {})
            unsupported = set()
            for r in range(args.rounds):
                # Interleaved: every round runs each connector once, in turn.
                for c in conns:
                    if c.name in unsupported:
                        continue
                    try:
                        m = c.run(fn)
                    except TypeError as exc:  # e.g. uvloop has no happy_eyeballs_delay (uvloop#406)
                        unsupported.add(c.name)
                        print(f"  {name}: {c.name} cannot run it: {exc}", file=sys.stderr)
                        continue
                    for k, v in m.items():
                        per.setdefault(c.name, {}).setdefault(k, []).append(v)
            print(f"  {name}: done", file=sys.stderr, flush=True)
        if hanging:
            hanging.close()
    print_table(results, conns, args.rounds)
    return 0


def print_table(results, conns, rounds):
    names = [c.name for c in conns]
    others = [n for n in names if n != "goconn"]
    print(f"\nMachine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}, "
          f"Python {platform.python_version()}, medians of {rounds} rounds\n")
    header = ["scenario", "metric"] + names + [f"goconn/{o}" for o in others]
    rows = []
    for scen, per in results.items():
        better = SCENARIOS[scen][2]
        for metric in next(iter(per.values())).keys():
            agg = max if metric.endswith("(max)") else statistics.median
            med = {n: agg(per[n][metric]) for n in names if n in per and metric in per[n]}
            row = [scen, metric + (" (higher is better)" if better.get(metric, True) else " (lower is better)")]
            row += [f"{med[n]:.2f}" if n in med and med[n] < 10 else f"{med[n]:.1f}" if n in med else "-" for n in names]
            row += [f"{med['goconn'] / med[o]:.2f}x" if o in med and med[o] else "-" for o in others]
            rows.append(row)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |"
    print(line)
    print("| " + " | ".join("-" * w for w in widths) + " |")
    for row in rows:
        print("| " + " | ".join(str(x).ljust(w) for x, w in zip(row, widths)) + " |")


if __name__ == "__main__":
    sys.exit(main())
