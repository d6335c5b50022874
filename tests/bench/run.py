#!/usr/bin/env python3
"""Benchmarks: goconn next to asyncio, uvloop and plain C sockets.

    ./build.sh bench [--rounds N] [--only SCENARIO ...] [--list]

Python scenarios run the same protocol code over asyncio's, uvloop's
(Debian's python3-uvloop) and goconn's create_connection. C scenarios run
build/tests/bench/goconn-bench-c (tests/bench/bench_c.c), which drives
libgoconn in loop mode and in direct mode next to a plain C socket loop, the
floor. Every connection goes to an independent loopback peer,
build/goconn-peer (a small Go server that is not goconn), started afresh for
every run.

Rounds are interleaved (each round runs every implementation once, in turn)
and every figure is a median over the rounds (the maximum for "(max)"
metrics), because this machine is noisy. The table, printed as Markdown with
the machine above it, gives goconn's ratio to each other implementation. A
scenario that fails for one implementation is reported on stderr and in the
table ("failed"), and the rest still run; the exit status is then 1.

When run as root with unshare(1), the whole run happens in a private mount
and network namespace: its /etc/hosts maps the Happy Eyeballs name to ::1
and 127.0.0.1, and its loopback has net.core.somaxconn raised, so that the
10,000 concurrent connects are not dropped by a full accept queue; nothing
of the host's configuration changes. Without root the Happy Eyeballs
scenario is left out.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import resource
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "python"))

PEER = os.path.join(ROOT, "build", "goconn-peer")
BENCH_C = os.path.join(ROOT, "build", "tests", "bench", "goconn-bench-c")
HOST = "127.0.0.1"
MiB = 1024 * 1024

RUN_TIMEOUT = 180.0  # seconds for any one run of any one implementation

# Sizes: each run takes about a second on a 2-core machine (plain bulk half
# a second or more, so that CPU time is measured over a fair stretch).
BULK_BYTES = 2048 * MiB
TLS_BULK_BYTES = 512 * MiB
PINGPONG_ROUNDS = 20_000
SEQ_CONNECTS = 3_000
CONCURRENT = 10_000
TLS_HANDSHAKES = 500
HE_PER_ROUND = 20
C_BULK_BYTES = 1024 * MiB
C_CONNECTS = 5_000
C_IDLE = 2_000

# --smoke: the same scenarios at sizes that take a moment, one round. It
# checks that every scenario still runs on every implementation (the test
# suite runs it); its figures mean nothing.
SMOKE_SIZES = dict(BULK_BYTES=16 * MiB, TLS_BULK_BYTES=8 * MiB, PINGPONG_ROUNDS=200, SEQ_CONNECTS=50,
                   CONCURRENT=300, TLS_HANDSHAKES=20, HE_PER_ROUND=2, C_BULK_BYTES=16 * MiB,
                   C_CONNECTS=100, C_IDLE=50)


# ---- connectors ---------------------------------------------------------------
# goconn and uvloop are imported only when used, so that the fresh child
# process of the concurrent scenario holds only its own library.


class Connector:
    """A way to run an event loop and open a connection on it."""

    def __init__(self, name: str, new_loop, connect):
        self.name = name
        self.new_loop = new_loop
        self.connect = connect  # async (loop, factory, host, port, **kw) -> (tr, pr)

    def run(self, coro_fn, timeout: float = RUN_TIMEOUT):
        loop = self.new_loop()
        try:
            return loop.run_until_complete(asyncio.wait_for(coro_fn(self, loop), timeout))
        except asyncio.TimeoutError:
            raise RuntimeError(f"{self.name}: no result after {timeout:.0f} s") from None
        finally:
            loop.close()


async def _loop_connect(loop, factory, host, port, **kw):
    return await loop.create_connection(factory, host, port, **kw)


async def _goconn_connect(loop, factory, host, port, **kw):
    import goconn

    return await goconn.create_connection(factory, host, port, **kw)


def _uvloop_new_loop():
    import uvloop

    return uvloop.new_event_loop()


def have_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def connector(name: str) -> Connector:
    if name == "asyncio":
        return Connector(name, asyncio.new_event_loop, _loop_connect)
    if name == "uvloop":
        return Connector(name, _uvloop_new_loop, _loop_connect)
    if name == "goconn":
        import goconn  # noqa: F401  (fails here, clearly, if the library is missing)

        return Connector(name, asyncio.new_event_loop, _goconn_connect)
    raise ValueError(name)


def python_impls() -> list[str]:
    return ["asyncio"] + (["uvloop"] if have_uvloop() else []) + ["goconn"]


# ---- the peer -----------------------------------------------------------------


class Peer:
    """build/goconn-peer serving one mode on 127.0.0.1."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen([PEER, "serve", "--die-with-parent", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "PORT":
            self.close()
            raise RuntimeError(f"goconn-peer {' '.join(args)} did not start: {line}")
        self.port = int(line[1])

    def cpu_seconds(self) -> float:
        """The peer process's CPU time so far, every thread, to the
        nanosecond: its process CPU clock (clock_gettime on
        MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED), which counts threads
        that ended too); else /proc/PID/stat's 10 ms ticks, too coarse for a
        run of a second."""
        try:
            return time.clock_gettime(((~self.proc.pid) << 3) | 2)
        except OSError:
            pass
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self):
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---- measuring ------------------------------------------------------------------


def cpu_seconds() -> float:
    """This process's CPU time, every thread, in nanoseconds
    (CLOCK_PROCESS_CPUTIME_ID; os.times() counts 10 ms ticks)."""
    return time.process_time()


def status_kib(field: str) -> int:
    """A field of /proc/self/status (VmRSS, VmHWM) in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def raise_nofile(need: int) -> int:
    """Raise RLIMIT_NOFILE to at least `need` (the hard limit too, as root);
    returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return soft
    if hard != resource.RLIM_INFINITY and hard < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
            return need
        except (ValueError, OSError):
            pass
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def listen_drops() -> int:
    """TcpExt ListenOverflows + ListenDrops of this network namespace: SYNs
    or handshakes the kernel dropped because an accept queue was full."""
    try:
        with open("/proc/net/netstat") as f:
            lines = f.read().splitlines()
    except OSError:
        return 0
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            d = dict(zip(names.split()[1:], map(int, values.split()[1:])))
            return d.get("ListenOverflows", 0) + d.get("ListenDrops", 0)
    return 0


# ---- Python protocols --------------------------------------------------------------


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


class Closer(asyncio.Protocol):
    """Notes connection_lost, for connect-and-close loops."""

    def __init__(self):
        self.lost = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc) -> None:
        if not self.lost.done():
            if exc is None:
                self.lost.set_result(None)
            else:
                self.lost.set_exception(exc)


PING = b"p" * 64


class PingPong(asyncio.Protocol):
    """Sends 64 bytes, waits for the echo of all 64, n times."""

    def __init__(self, n: int):
        self.left = n
        self.got = 0
        self.done = asyncio.get_running_loop().create_future()
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def start(self) -> None:
        self.transport.write(PING)

    def data_received(self, data: bytes) -> None:
        self.got += len(data)
        if self.got < 64:
            return
        self.got -= 64
        self.left -= 1
        if self.left:
            self.transport.write(PING)
        elif not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc) -> None:
        if not self.done.done():
            self.done.set_exception(exc or ConnectionError(f"connection lost with {self.left} round trips left"))
        if not self.lost.done():
            self.lost.set_result(None)


# ---- Python scenarios ---------------------------------------------------------------
# Each is an async function (connector, loop) -> {metric: value}; fn.port is
# set to the peer's port before a run.


def bulk_receive(nbytes: int, tls_ctx: ssl.SSLContext | None):
    async def run(c: Connector, loop) -> dict:
        done = loop.create_future()
        kw = dict(ssl=tls_ctx, server_hostname="localhost") if tls_ctx else {}
        peer_cpu0 = run.peer.cpu_seconds()
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        await c.connect(loop, lambda: Sink(done), HOST, run.port, **kw)
        got = await done
        dt, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
        peer_cpu = run.peer.cpu_seconds() - peer_cpu0
        if got != nbytes:
            raise RuntimeError(f"{c.name}: received {got} of {nbytes} bytes")
        gib = nbytes / (1024 * MiB)
        return {"MB/s": nbytes / MiB / dt, "CPU s/GB": cpu / gib, "peer CPU s/GB": peer_cpu / gib,
                # The most any client could carry on this machine at these
                # two costs, the sender's and its own: every core busy.
                # (At least one clock tick of CPU, so that a run too short
                # to be charged any gives a bound rather than a crash.)
                "CPU ceiling MB/s": os.cpu_count() * 1024 / (max(cpu + peer_cpu, 0.01) / gib)}

    return run


def ping_pong(n: int):
    """One connection to the echo peer, n round trips of 64 bytes."""

    async def run(c: Connector, loop) -> dict:
        tr, pr = await c.connect(loop, lambda: PingPong(n), HOST, run.port)
        t0 = time.perf_counter()
        pr.start()
        await pr.done
        dt = time.perf_counter() - t0
        tr.close()
        await pr.lost
        return {"round trips/s": n / dt}

    return run


async def _connect_close(c: Connector, loop, port: int, n: int, **kw) -> None:
    for _ in range(n):
        tr, pr = await c.connect(loop, Closer, HOST, port, **kw)
        tr.close()
        await pr.lost


def sequential_connects(n: int, metric: str, tls_ctx: ssl.SSLContext | None = None):
    """n times: connect (create_connection returns after connection_made),
    close, wait for connection_lost; after 20 untimed ones."""

    async def run(c: Connector, loop) -> dict:
        kw = dict(ssl=tls_ctx, server_hostname="localhost") if tls_ctx else {}
        await _connect_close(c, loop, run.port, 20, **kw)
        t0 = time.perf_counter()
        await _connect_close(c, loop, run.port, n, **kw)
        return {metric: n / (time.perf_counter() - t0)}

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


# ---- the concurrent scenario: a fresh child process per run ------------------------


async def _concurrent(c: Connector, loop, port: int, n: int) -> dict:
    # One connection first, so that what is set up once is not counted.
    await _connect_close(c, loop, port, 1)
    gc.collect()
    rss0 = status_kib("VmRSS")
    t0 = time.perf_counter()
    pairs = await asyncio.gather(*(c.connect(loop, Closer, HOST, port) for _ in range(n)))
    dt = time.perf_counter() - t0
    for tr, _ in pairs:
        tr.close()
    await asyncio.gather(*(pr.lost for _, pr in pairs))
    hwm = status_kib("VmHWM")
    return {"conn/s": n / dt, "peak RSS MB": hwm / 1024, "RSS growth KiB/conn": (hwm - rss0) / n}


def child_concurrent(name: str, port: int, n: int) -> int:
    """In a fresh process: open n connections at once, wait for every
    connection_made, then close them all; print the figures as JSON."""
    limit = raise_nofile(n + 1024)
    if limit < n + 64:
        print(f"RLIMIT_NOFILE is {limit}, too low for {n} connections", file=sys.stderr)
        return 1
    c = connector(name)
    print(json.dumps(c.run(lambda c, loop: _concurrent(c, loop, port, n))))
    return 0


def concurrent_connects(n: int):
    def run(impl: str, port: int) -> dict:
        drops0 = listen_drops()
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child-concurrent", impl, str(port), str(n)],
                             capture_output=True, text=True, timeout=RUN_TIMEOUT)
        if out.returncode != 0:
            raise RuntimeError(f"child exited with {out.returncode}: {tail(out.stderr)}")
        m = json.loads(out.stdout.strip().splitlines()[-1])
        drops = listen_drops() - drops0
        if drops:
            WARNINGS.append(f"10,000 concurrent connects, {impl}: the kernel dropped {drops} connections "
                            f"from a full accept queue (somaxconn {somaxconn()}); their SYN retransmits "
                            f"are in the figure")
        return m

    return run


def somaxconn() -> str:
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            return f.read().strip()
    except OSError:
        return "?"


def tail(text: str, lines: int = 6) -> str:
    return " | ".join(text.strip().splitlines()[-lines:]) or "(no output)"


# ---- scenarios and their table rows ------------------------------------------------------

C_FLOOR = "C sockets"
C_METRICS = {"KiB/conn": "RSS growth KiB/conn"}  # goconn-bench-c's names -> the table's
COLUMNS = ["asyncio", "uvloop", C_FLOOR, "goconn"]


class Scenario:
    """One scenario: the implementations it runs (in turn, each round) and
    the table cells each one fills: (row label, column)."""

    def __init__(self, name: str, doc: str, impls: list[str], better: dict[str, bool], run_one, cells=None):
        self.name = name
        self.doc = doc  # what it measures, printed under the table
        self.impls = impls
        self.better = better  # metric -> higher is better
        self.run_one = run_one  # impl -> [(row, column, {metric: value})]
        self.cells = cells or (lambda impl: [(name, impl)])

    def rows(self) -> list[str]:
        out = []
        for impl in self.impls:
            for row, _ in self.cells(impl):
                if row not in out:
                    out.append(row)
        return out


SCENARIOS: list[Scenario] = []
WARNINGS: list[str] = []


def python_scenario(name: str, doc: str, peer_args, fn, better: dict[str, bool]):
    """fn runs in this process on each connector's loop, against a fresh peer."""

    def run_one(impl: str):
        hanging = None
        args = peer_args
        if args is None:  # Happy Eyeballs: [::1]:P hangs, 127.0.0.1:P answers
            hanging = Hanging()
            args = ["--listen", f"{HOST}:{hanging.port}", "--mode", "discard", "--no-hash"]
        try:
            with Peer(*args) as peer:
                fn.port, fn.peer = peer.port, peer
                gc.collect()
                return [(name, impl, connector(impl).run(fn))]
        finally:
            if hanging:
                hanging.close()

    SCENARIOS.append(Scenario(name, doc, python_impls(), better, run_one))


def child_scenario(name: str, doc: str, peer_args, fn, better: dict[str, bool]):
    """fn(impl, port) runs the connector in a child process."""

    def run_one(impl: str):
        with Peer(*peer_args) as peer:
            return [(name, impl, fn(impl, peer.port))]

    SCENARIOS.append(Scenario(name, doc, python_impls(), better, run_one))


def c_scenario(name: str, doc: str, what: str, peer_args, n: int, better: dict[str, bool]):
    """goconn-bench-c WHAT IMPL PORT N for IMPL plain (the floor), loop and
    direct; rows "NAME, loop mode" and "NAME, direct mode" share the floor."""
    rows = {"loop": f"{name}, loop mode", "direct": f"{name}, direct mode"}

    def cells(impl):
        if impl == "plain":
            return [(rows["loop"], C_FLOOR), (rows["direct"], C_FLOOR)]
        return [(rows[impl], "goconn")]

    def run_one(impl: str):
        if not os.path.exists(BENCH_C):
            raise RuntimeError(f"{BENCH_C} is missing: run ./build.sh")
        with Peer(*peer_args) as peer:
            out = subprocess.run([BENCH_C, what, impl, str(peer.port), str(n)],
                                 capture_output=True, text=True, timeout=RUN_TIMEOUT)
        if out.returncode != 0:
            raise RuntimeError(f"goconn-bench-c exited with {out.returncode}: {tail(out.stderr)}")
        m = json.loads(out.stdout.strip().splitlines()[-1])
        m = {C_METRICS.get(k, k): v for k, v in m.items()}
        m = {k: v for k, v in m.items() if k in better}
        return [(row, col, m) for row, col in cells(impl)]

    SCENARIOS.append(Scenario(name, doc, ["plain", "loop", "direct"], better, run_one, cells))


# The bulk scenarios' metrics (True: higher is better). The peer's CPU and
# the ceiling show who holds the speed back: a sender that needs a whole
# core caps every client alike, and no client can pass the ceiling.
BULK_METRICS = {"MB/s": True, "CPU s/GB": False, "peer CPU s/GB": False, "CPU ceiling MB/s": True}


def setup(certdir: str):
    ctx = ssl.create_default_context(cafile=os.path.join(certdir, "ca.pem"))
    tls = ["--tls", "--certdir", certdir]
    python_scenario(
        "plain bulk receive",
        f"one connection receives {BULK_BYTES // MiB} MiB from the peer until it closes: MB/s from the "
        "call to connection_lost; the client process's CPU time (every thread) per GiB; the peer process's "
        "(the sender's) CPU time per GiB while it served that client; and the CPU ceiling, the MB/s at which "
        "these two costs would keep every core of the machine busy, which no run can pass",
        ["--mode", "send", "--no-hash", "--bytes", str(BULK_BYTES)],
        bulk_receive(BULK_BYTES, None), BULK_METRICS)
    python_scenario(
        "TLS bulk receive", f"the same over TLS 1.3, {TLS_BULK_BYTES // MiB} MiB",
        tls + ["--mode", "send", "--no-hash", "--bytes", str(TLS_BULK_BYTES)],
        bulk_receive(TLS_BULK_BYTES, ctx), BULK_METRICS)
    python_scenario(
        "64-byte ping-pong",
        f"one connection to the echo peer: {PINGPONG_ROUNDS:,} times, write 64 bytes and wait for all 64 to come back",
        ["--mode", "echo", "--no-hash"],
        ping_pong(PINGPONG_ROUNDS), {"round trips/s": True})
    python_scenario(
        "sequential connect+close",
        f"{SEQ_CONNECTS:,} times (after 20 untimed): create_connection to 127.0.0.1 (it returns after "
        "connection_made), close(), wait for connection_lost",
        ["--mode", "idle"],
        sequential_connects(SEQ_CONNECTS, "conn/s"), {"conn/s": True})
    child_scenario(
        f"{CONCURRENT:,} concurrent connects",
        f"in a fresh child process per run (RLIMIT_NOFILE raised; the peer listens with a {2 * CONCURRENT:,} "
        f"backlog): {CONCURRENT:,} create_connection calls at once (asyncio.gather) until every one has "
        "returned; then all are closed. Peak RSS is the child's VmHWM (its ru_maxrss); the growth is VmHWM "
        "minus the RSS before the connects, per connection",
        ["--mode", "idle", "--backlog", str(2 * CONCURRENT)],
        concurrent_connects(CONCURRENT),
        {"conn/s": True, "peak RSS MB": False, "RSS growth KiB/conn": False})
    # Tickets off: every handshake is a full one (asyncio never resumes
    # sessions by itself; goconn would). With Go's default groups goconn
    # (Go's crypto/tls) agrees on X25519MLKEM768 with the peer, while
    # Python's OpenSSL 3.0 agrees on X25519; the second row makes everyone
    # do X25519.
    python_scenario(
        "TLS handshakes",
        f"{TLS_HANDSHAKES} times (after 20 untimed): create_connection with ssl= (TLS 1.3, ECDSA P-256 "
        "certificate, verified), close(), wait for connection_lost; no session tickets, so every handshake "
        "is a full one. Key exchange: the peer's (Go's) default groups, so goconn (Go's crypto/tls) agrees "
        "on X25519MLKEM768, asyncio and uvloop (OpenSSL 3.0) on X25519",
        tls + ["--tickets=false", "--mode", "idle"],
        sequential_connects(TLS_HANDSHAKES, "full handshakes/s", ctx), {"full handshakes/s": True})
    python_scenario(
        "TLS handshakes, peer X25519 only", "the same, the peer accepting X25519 only: the same key exchange for all",
        tls + ["--tickets=false", "--curves", "x25519", "--mode", "idle"],
        sequential_connects(TLS_HANDSHAKES, "full handshakes/s", ctx), {"full handshakes/s": True})
    if os.environ.get("GOCONN_BENCH_NAMESPACE") == "1":
        python_scenario(
            "Happy Eyeballs fallback",
            f"{HE_PER_ROUND} connects per round to a name resolving to ::1 (a listener that never answers), "
            f"then 127.0.0.1, with happy_eyeballs_delay={HE_DELAY}: how late past the delay the connection "
            "comes, counted from the first attempt (and from the call, lookup included)",
            None, happy_eyeballs_lateness(HE_PER_ROUND),
            {"ms late (median)": False, "ms late (max)": False,
             "ms late incl. lookup (median)": False, "ms late incl. lookup (max)": False})
    c_scenario(
        "C bulk receive",
        f"goconn-bench-c (tests/bench/bench_c.c) receives {C_BULK_BYTES // MiB} MiB; the floor is a blocking "
        "recv() loop with a 256 KiB buffer. Loop mode: poll() on goconn_loop_fd, goconn_loop_dispatch; direct "
        "mode: callbacks on library threads",
        "bulk", ["--mode", "send", "--no-hash", "--bytes", str(C_BULK_BYTES)], C_BULK_BYTES, {"MB/s": True})
    c_scenario(
        "C sequential connect+close",
        f"{C_CONNECTS:,} connections one after another (after 50 untimed): goconn opens the next one from "
        "connection_lost, after on_done closed the last; the floor is blocking socket(), connect(), close()",
        "connect", ["--mode", "idle"], C_CONNECTS, {"conn/s": True})
    c_scenario(
        f"C memory per idle connection ({C_IDLE:,})",
        f"{C_IDLE:,} connections opened one after another and held idle: the process's RSS growth per "
        "connection (after one warm-up connection). Plain sockets add next to nothing in user space; the "
        "kernel's socket memory, which both pay, is not in RSS",
        "idle", ["--mode", "idle"], C_IDLE, {"RSS growth KiB/conn": False})


# ---- the runner -------------------------------------------------------------------


def in_namespace() -> None:
    """Re-run inside private mount and network namespaces (root only; else
    return and run here): /etc/hosts maps the Happy Eyeballs name to ::1 and
    127.0.0.1, and the loopback gets a large somaxconn and SYN backlog."""
    if os.environ.get("GOCONN_BENCH_NAMESPACE") or os.geteuid() != 0 or not shutil.which("unshare"):
        return
    hosts = tempfile.NamedTemporaryFile("w", prefix="goconn-bench-hosts-", delete=False)
    hosts.write(f"127.0.0.1 localhost\n::1 {HE_NAME}\n127.0.0.1 {HE_NAME}\n")
    hosts.close()
    env = dict(os.environ, GOCONN_BENCH_NAMESPACE="1")
    run = f'exec "{sys.executable}" "{os.path.abspath(__file__)}" "$@"'
    mount = f'mount --bind "{hosts.name}" /etc/hosts'
    net_ok = shutil.which("ip") and subprocess.call(["unshare", "--net", "true"], stderr=subprocess.DEVNULL) == 0
    if net_ok:
        env["GOCONN_BENCH_NETNS"] = "1"
        # A namespace's own sysctls: the host's stay as they are. Should they
        # not be writable, the run goes on (a full accept queue is reported).
        sysctl = ("{ echo 65535 > /proc/sys/net/core/somaxconn; "
                  "echo 65535 > /proc/sys/net/ipv4/tcp_max_syn_backlog; } 2>/dev/null")
        cmd = f"ip link set lo up && {{ {sysctl} || true; }} && {mount} && {run}"
        args = ["unshare", "--mount", "--net", "/bin/sh", "-c", cmd, "sh", *sys.argv[1:]]
    else:
        args = ["unshare", "--mount", "/bin/sh", "-c", f"{mount} && {run}", "sh", *sys.argv[1:]]
    rc = subprocess.call(args, env=env)
    os.unlink(hosts.name)
    sys.exit(rc)


def selected(name: str, only) -> bool:
    return not only or any(o.lower() in name.lower() for o in only)


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--child-concurrent":
        return child_concurrent(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="rounds (default 5); figures are medians over them")
    ap.add_argument("--only", nargs="*", metavar="SCENARIO", help="scenario names to run (case-insensitive substrings)")
    ap.add_argument("--list", action="store_true", help="list the scenarios and exit")
    ap.add_argument("--smoke", action="store_true",
                    help="one round at tiny sizes: checks that every scenario runs; the figures mean nothing")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    if args.smoke:
        globals().update(SMOKE_SIZES)
        args.rounds = 1
    in_namespace()
    if not os.path.exists(PEER):
        print(f"{PEER} is missing: run ./build.sh", file=sys.stderr)
        return 1
    raise_nofile(2 * CONCURRENT + 1024)  # the peer and the children inherit it
    certdir = tempfile.mkdtemp(prefix="goconn-bench-")
    try:
        subprocess.run([PEER, "certs", certdir], check=True, stdout=subprocess.DEVNULL)
        setup(certdir)
        if args.list:
            for s in SCENARIOS:
                print(s.name)
            return 0
        chosen = [s for s in SCENARIOS if selected(s.name, args.only)]
        if not chosen:
            print(f"no scenario matches {args.only}; --list shows them", file=sys.stderr)
            return 1
        results, status, failures = run_all(chosen, args.rounds)
    finally:
        shutil.rmtree(certdir, ignore_errors=True)
    print_report(chosen, results, status, failures, args.rounds)
    return 1 if failures else 0


def run_all(chosen: list[Scenario], rounds: int):
    # results[row][metric][column] = [values]; status[(row, column)] = "failed" | "n/a"
    results: dict[str, dict[str, dict[str, list[float]]]] = {}
    status: dict[tuple[str, str], str] = {}
    failures: list[str] = []
    t_all = time.perf_counter()
    for s in chosen:
        t0 = time.perf_counter()
        unsupported = set()
        for r in range(rounds):
            # Interleaved: every round runs each implementation once, in
            # turn, starting one further along each round.
            k = r % len(s.impls)
            for impl in s.impls[k:] + s.impls[:k]:
                if impl in unsupported:
                    continue
                try:
                    out = s.run_one(impl)
                except Exception as exc:  # noqa: BLE001 - reported, and the rest goes on
                    if isinstance(exc, TypeError) and "unexpected keyword argument" in str(exc):
                        # e.g. uvloop has no happy_eyeballs_delay (uvloop#406)
                        unsupported.add(impl)
                        for cell in s.cells(impl):
                            status[cell] = "n/a"
                        print(f"  {s.name}: {impl} cannot run it: {exc}", file=sys.stderr, flush=True)
                        continue
                    msg = f"{s.name}: {impl}, round {r + 1}: {type(exc).__name__}: {exc}"
                    failures.append(msg)
                    for cell in s.cells(impl):
                        status.setdefault(cell, "failed")
                    print(f"  FAILED {msg}", file=sys.stderr, flush=True)
                    traceback.print_exc(file=sys.stderr)
                    continue
                for row, col, metrics in out:
                    for k, v in metrics.items():
                        results.setdefault(row, {}).setdefault(k, {}).setdefault(col, []).append(v)
        print(f"  {s.name}: done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    print(f"  all done in {time.perf_counter() - t_all:.0f} s", file=sys.stderr, flush=True)
    return results, status, failures


def machine() -> str:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    versions = [f"Python {platform.python_version()} ({sys.executable})"]
    try:
        import uvloop

        versions.append(f"uvloop {uvloop.__version__}")
    except ImportError:
        versions.append("no uvloop")
    try:
        import goconn

        versions.append(f"goconn {goconn.library_version()}")
    except Exception as exc:  # noqa: BLE001
        versions.append(f"goconn ({exc})")
    net = ("a private network namespace's loopback (somaxconn " + somaxconn() + ")"
           if os.environ.get("GOCONN_BENCH_NETNS") else "loopback (somaxconn " + somaxconn() + ")")
    return (f"Machine: {os.cpu_count()} cores, {model} ({platform.machine()}), {mem}, "
            f"Linux {platform.release()}; {', '.join(versions)}; {net}.")


def fmt(v: float) -> str:
    return f"{v:.3f}" if abs(v) < 0.1 else f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}"


def print_report(chosen, results, status, failures, rounds):
    print()
    print(machine())
    print(f"Medians of {rounds} round{'s' if rounds != 1 else ''} (\"(max)\" metrics: the maximum); "
          f"ratios are goconn's figure over the other's.")
    print()
    columns = [c for c in COLUMNS if any(col == c for s in chosen for i in s.impls for _, col in s.cells(i))]
    others = [c for c in columns if c != "goconn"]
    header = ["scenario", "metric"] + columns + [f"goconn/{o}" for o in others]
    rows = []
    for s in chosen:
        for row in s.rows():
            cols_here = {col for impl in s.impls for r, col in s.cells(impl) if r == row}
            for metric, higher in s.better.items():
                vals = results.get(row, {}).get(metric, {})
                agg = max if metric.endswith("(max)") else statistics.median
                med = {c: agg(vals[c]) for c in vals if vals[c]}
                line = [row, f"{metric} ({'higher' if higher else 'lower'} is better)"]
                for c in columns:
                    if c in med:
                        # *: some rounds failed; the figure is of the others
                        line.append(fmt(med[c]) + ("*" if status.get((row, c)) == "failed" else ""))
                    elif c in cols_here:
                        line.append(status.get((row, c), "failed"))
                    else:
                        line.append("")
                for o in others:
                    if "goconn" not in med or o not in med:
                        line.append("")
                    elif abs(med[o]) < 0.01:
                        line.append("n/a (÷ ~0)")  # e.g. plain sockets hold ~no user memory
                    else:
                        line.append(f"{med['goconn'] / med[o]:.2f}x")
                rows.append(line)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("| " + " | ".join("-" * w for w in widths) + " |")
    for line in rows:
        print("| " + " | ".join(str(x).ljust(w) for x, w in zip(line, widths)) + " |")
    print()
    for s in chosen:
        print(f"- **{s.name}**: {s.doc}.")
    if WARNINGS or failures:
        print()
    for w in WARNINGS:
        print(f"- warning: {w}")
    if failures:
        print("- FAILED runs (a figure marked * is of the rounds that did not fail):")
    for f in failures:
        print(f"  - {f}")


if __name__ == "__main__":
    sys.exit(main())
