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


SCENARIOS = {}


def scenario(name, peer_args, fn, higher_is_better):
    SCENARIOS[name] = (peer_args, fn, higher_is_better)


def setup(certdir: str):
    ctx = ssl.create_default_context(cafile=os.path.join(certdir, "ca.pem"))
    scenario("plain bulk receive", ["--mode", "send", "--no-hash", "--bytes", str(512 * MiB)],
             bulk_receive(512 * MiB, None), {"MB/s": True, "CPU s/GB": False})
    scenario("TLS bulk receive", ["--tls", "--certdir", certdir, "--mode", "send", "--no-hash", "--bytes", str(256 * MiB)],
             bulk_receive(256 * MiB, ctx), {"MB/s": True, "CPU s/GB": False})


# ---- the runner -------------------------------------------------------------------


def main() -> int:
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
        with Peer(*peer_args) as peer:
            fn.port = peer.port
            per = results.setdefault(name, {})
            for r in range(args.rounds):
                # Interleaved: every round runs each connector once, in turn.
                for c in conns:
                    m = c.run(fn)
                    for k, v in m.items():
                        per.setdefault(c.name, {}).setdefault(k, []).append(v)
            print(f"  {name}: done", file=sys.stderr, flush=True)
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
            med = {n: statistics.median(per[n][metric]) for n in names if n in per}
            row = [scen, metric + (" (higher is better)" if better.get(metric, True) else " (lower is better)")]
            row += [f"{med[n]:.1f}" if n in med else "-" for n in names]
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
