"""The cancellation stress test's child: run inside a private mount namespace (see
_util.run_in_namespace) whose /etc/hosts maps dual.test to ::1 and 127.0.0.1.

    stress_child.py run CONNECTOR PARAMS_JSON

Thousands of create_connection() calls, several in flight at once, each cancelled (or
not) at a random point:

* resolve:  resolution_delay on dual.test (/etc/hosts) or on a fake_dns.py name whose A
            and AAAA answers come after random delays; cancelled during the lookups, the
            Resolution Delay or the race that follows;
* between:  Happy Eyeballs on dual.test whose ::1 hangs; cancelled while the first attempt
            hangs, as the second starts, or as it wins (some use attempt_timeout instead);
* winning:  an address that connects at once; cancelled from inside connection_made, or
            after a random number of loop iterations;
* tls:      TLS to `goconn-peer serve --tls` (sometimes through dual.test's hanging ::1)
            or to a peer that stalls the handshake; cancelled during the handshake (some
            end by ssl_handshake_timeout or connect_timeout instead).

Cancellation is task.cancel() (at a random time, after random loop iterations, or inside
connection_made), asyncio.wait_for() with a random timeout, goconn's connect_timeout, or
none.  Every request is checked against asyncio's rules; the run ends with the process-wide
checks: descriptors back to the baseline, goconn's tables empty.  It prints one JSON object.

CONNECTOR "asyncio" runs the same mix on the loop's own create_connection (goconn's options
dropped) as the reference that the per-request rules are asyncio's.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import json
import os
import random
import socket
import ssl
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "python"))

import goconn  # noqa: E402
from ns_child import use_fake_dns  # noqa: E402

PEER = os.path.join(ROOT, "build", "goconn-peer")
NAME = "dual.test"
GOCONN_ONLY = ("resolution_delay", "attempt_timeout", "connect_timeout")


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def fd_details(base: set) -> list:
    """The descriptors not in `base`: what they are, and a socket's addresses and state."""
    out = []
    for fd in sorted(set(os.listdir("/proc/self/fd")) - base, key=int):
        try:
            what = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if what.startswith("socket:"):
            try:
                s = socket.socket(fileno=os.dup(int(fd)))
                try:
                    what += f" {s.family.name} {s.getsockname()}"
                    what += f" -> {s.getpeername()}"
                except OSError as e:
                    what += f" ({e.strerror})"
                finally:
                    s.close()
            except OSError:
                pass
        out.append(f"{fd}: {what}")
    return out


# ---- peers ---------------------------------------------------------------------------


class Hang:
    """A [::1] listener whose accept queue is full: a connect to it hangs."""

    def __init__(self, port: int = 0):
        self.sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        self.sock.bind(("::1", port))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.filler = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        self.filler.settimeout(5)
        self.filler.connect(("::1", self.port))

    def close(self):
        self.filler.close()
        self.sock.close()


class PeerProc:
    """build/goconn-peer serve on 127.0.0.1:PORT (the port of a hanging [::1] listener when
    hang=True, so dual.test:PORT hangs on ::1 and answers on 127.0.0.1)."""

    def __init__(self, *args: str, hang: bool = False):
        for _ in range(50):
            h = Hang() if hang else None
            listen = f"127.0.0.1:{h.port}" if h else "127.0.0.1:0"
            proc = subprocess.Popen([PEER, "serve", "--die-with-parent", "--listen", listen, *args],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            line = proc.stdout.readline().split()
            if len(line) == 2 and line[0] == "PORT":
                self.proc, self.hang, self.port = proc, h, int(line[1])
                return
            proc.wait()
            if h:
                h.close()
        raise RuntimeError("goconn-peer did not start")

    def close(self):
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        if self.hang:
            self.hang.close()


# ---- one request ---------------------------------------------------------------------


class Req:
    __slots__ = ("i", "cat", "host", "port", "kw", "method", "t", "k", "in_made", "task", "cancel_called",
                 "cancel_result", "protocols", "made", "outcome", "exc", "problems", "action",
                 "tls", "started", "ended", "snapshot", "lib_reqs", "lib_done", "lib_made")

    def __init__(self, i):
        self.i = i
        self.kw = {}
        self.method = "none"
        self.t = None
        self.k = None
        self.in_made = False
        self.task = None
        self.cancel_called = False
        self.cancel_result = None
        self.protocols = []
        self.made = 0
        self.outcome = None
        self.exc = None
        self.problems = []
        self.action = "close"
        self.tls = False
        self.snapshot = None
        self.lib_reqs = 0  # goconn requests made for this call (instrumented runs)
        self.lib_done = 0  # their on_done calls
        self.lib_made = 0  # and its protocol factory calls

    def problem(self, text):
        self.problems.append(text)

    def cancel(self):
        if self.task is not None and not self.task.done():
            self.cancel_called = True
            self.cancel_result = self.task.cancel()

    def describe(self):
        kw = {k: (v if k != "ssl" else "ctx") for k, v in self.kw.items()}
        return {"i": self.i, "cat": self.cat, "host": self.host, "kw": kw, "method": self.method, "t": self.t,
                "k": self.k, "in_made": self.in_made, "cancel_result": self.cancel_result, "outcome": self.outcome,
                "exc": self.exc, "made": self.made, "events": [p.events for p in self.protocols],
                "problems": self.problems}


class Probe(asyncio.Protocol):
    """Records the callbacks of one request's protocol; checks none follows connection_lost."""

    def __init__(self, req: Req):
        self.req = req
        self.events: list = []
        self.transport = None
        self.echo = bytearray()
        self.lost = None
        req.protocols.append(self)
        if len(req.protocols) > 1:
            req.problem("the protocol factory was called more than once")

    def _note(self, event):
        if self.events and self.events[-1][0] == "lost":
            self.req.problem(f"{event[0]} after connection_lost")
        self.events.append(event)

    def connection_made(self, transport):
        self._note(("made",))
        self.transport = transport
        self.req.made += 1
        if self.req.made > 1:
            self.req.problem("connection_made more than once")
        if self.req.in_made:
            self.req.cancel()  # at the moment of winning

    def data_received(self, data):
        self._note(("data",))
        self.echo += data

    def eof_received(self):
        self._note(("eof",))

    def connection_lost(self, exc):
        self._note(("lost", None if exc is None else repr(exc)))
        if self.lost is not None and not self.lost.done():
            self.lost.set_result(None)

    def pause_writing(self):
        self._note(("pause",))

    def resume_writing(self):
        self._note(("resume",))


# ---- the mix -------------------------------------------------------------------------


class Env:
    def __init__(self, connector, rng, peers, ctx, mix=None):
        self.connector = connector
        self.mix = mix or {"resolve": 3, "between": 3, "winning": 2, "tls": 3}
        self.rng = rng
        self.plain, self.tls, self.stall = peers
        self.ctx = ctx

    def plan(self, i: int) -> Req:
        rng = self.rng
        r = Req(i)
        r.cat = rng.choices(list(self.mix), list(self.mix.values()))[0]
        d = rng.choice([0.01, 0.02, 0.03, 0.05])  # the Happy Eyeballs delay
        if r.cat == "resolve":
            r.port = self.plain.port
            r.kw = {"resolution_delay": rng.choice([0.0, 0.01, 0.03, 0.05]), "happy_eyeballs_delay": d}
            if rng.random() < 0.5:
                r.host = NAME
                horizon = d + 0.01
            else:
                a, q = rng.randrange(0, 40), rng.randrange(0, 80)
                r.host = f"a{a}q{q}-{i}.slow.test"
                horizon = max(a, q) / 1000 + d + 0.02
        elif r.cat == "between":
            r.host, r.port = NAME, self.plain.port
            if rng.random() < 0.8 or self.connector != "goconn":
                r.kw = {"happy_eyeballs_delay": d}
                horizon = 2 * d
            else:  # no Happy Eyeballs: the hanging ::1 attempt times out, then 127.0.0.1 wins
                d = rng.choice([0.01, 0.02, 0.04])
                r.kw = {"attempt_timeout": d}
                horizon = 2 * d
        elif r.cat == "winning":
            r.host, r.port = rng.choice(["127.0.0.1", NAME]), self.plain.port
            if r.host == NAME:
                r.kw = {"happy_eyeballs_delay": 0}  # ::1 hangs; 127.0.0.1 starts at once and wins
            horizon = 0.004
        else:
            r.tls = True
            r.kw = {"ssl": self.ctx}
            x = rng.random()
            if x < 0.45:
                r.host, r.port = "127.0.0.1", self.tls.port
                horizon = 0.02
            elif x < 0.7:
                r.host, r.port = NAME, self.tls.port
                r.kw.update(server_hostname="localhost", happy_eyeballs_delay=d)
                horizon = d + 0.02
            else:  # the stalling peer: the handshake never ends
                r.cat = "tls-stall"
                r.host, r.port = "127.0.0.1", self.stall.port
                horizon = 0.03
                y = rng.random()
                if y < 0.25:
                    r.kw["ssl_handshake_timeout"] = rng.choice([0.01, 0.02, 0.03])
                elif y < 0.5:
                    r.kw["connect_timeout"] = rng.choice([0.01, 0.02, 0.03])
        if self.connector == "asyncio":
            for k in GOCONN_ONLY:
                r.kw.pop(k, None)
        elif r.cat != "tls-stall" and rng.random() < 0.1:
            r.kw["connect_timeout"] = round(rng.uniform(0.002, horizon + 0.01), 4)
        # How it is cancelled.
        stalls = r.cat == "tls-stall" and not ({"ssl_handshake_timeout", "connect_timeout"} & set(r.kw))
        if r.cat == "winning":
            r.method = rng.choices(["made", "iterations", "task", "none"], [3, 3, 2, 1])[0]
        else:
            r.method = rng.choices(["task", "wait_for", "iterations", "made", "none"], [5, 3, 1, 1, 1])[0]
        if stalls and r.method in ("none", "made"):
            r.method = "task"
        if r.method == "made":
            r.in_made = True
        elif r.method == "iterations":
            r.k = rng.randrange(0, 40)
        elif r.method in ("task", "wait_for"):
            r.t = round(rng.uniform(0, horizon * 1.3), 5)
        r.action = rng.choice(["close", "close", "abort", "echo"])
        return r

    async def connect(self, factory, host, port, **kw):
        if self.connector == "goconn":
            return await goconn.create_connection(factory, host, port, **kw)
        return await asyncio.get_running_loop().create_connection(factory, host, port, **kw)


async def run_one(env: Env, r: Req, stats) -> None:
    loop = asyncio.get_running_loop()

    def factory():
        return Probe(r)

    factory.req = r  # for the instrumented goconn request (see instrument())
    coro = env.connect(factory, r.host, r.port, **r.kw)
    if r.method == "wait_for":
        coro = asyncio.wait_for(coro, r.t)
    r.started = time.monotonic()
    r.task = task = loop.create_task(coro)
    timer = helper = None
    if r.method == "task":
        timer = loop.call_later(r.t, r.cancel)
    elif r.method == "iterations":
        async def after_iterations():
            for _ in range(r.k):
                await asyncio.sleep(0)
            r.cancel()
        helper = loop.create_task(after_iterations())
    await asyncio.wait([task])
    r.ended = time.monotonic()
    if timer is not None:
        timer.cancel()
    if helper is not None:
        await helper
    tr = None
    if task.cancelled():
        r.outcome = "cancelled"
    elif task.exception() is not None:
        e = task.exception()
        r.exc = [type(e).__name__, str(e)]
        r.outcome = "timeout" if isinstance(e, TimeoutError) and e.errno is None else "error"
    else:
        r.outcome = "ok"
        tr, pr = task.result()
    check_outcome(env, r)
    if tr is not None:
        await use_and_close(env, r, tr, pr)
    stats[r.cat][r.outcome + ("" if r.made == 0 else "+made")] += 1


def check_outcome(env: Env, r: Req) -> None:
    """asyncio's rules for how a call ends, given how it was cancelled."""
    kw = r.kw
    if r.cancel_result:
        # task.cancel() returned True: the task ends cancelled (wait_for turns its own
        # cancellation into TimeoutError only when it timed out, which is not this).
        if r.outcome != "cancelled":
            r.problem(f"task.cancel() returned True but the call ended {r.outcome}")
    elif r.outcome == "cancelled":
        r.problem("cancelled although nothing cancelled it")
    if r.outcome == "timeout":
        text = r.exc[1]
        ct = kw.get("connect_timeout")
        if r.method == "wait_for" and text == "":
            if r.ended - r.started < r.t - 0.002:
                r.problem(f"wait_for timed out after {r.ended - r.started:.4f}s, before its {r.t}s")
        elif ct is not None and text == f"create_connection timed out after {ct} seconds (connect_timeout)":
            if r.ended - r.started < ct - 0.002:
                r.problem(f"connect_timeout fired after {r.ended - r.started:.4f}s, before its {ct}s")
        else:
            r.problem(f"unexpected TimeoutError {text!r}")
    elif r.outcome == "error":
        ht = kw.get("ssl_handshake_timeout")
        want = f"SSL handshake is taking longer than {ht} seconds: aborting the connection"
        if not (ht is not None and r.exc == ["ConnectionAbortedError", want]):
            r.problem(f"unexpected exception {r.exc}")
    elif r.outcome == "ok":
        if r.cat == "tls-stall":
            r.problem("a handshake with the stalling peer succeeded")
        if r.made != 1:
            r.problem(f"connected with connection_made called {r.made} times")
        if env.connector == "goconn":
            trace = r.protocols[0].transport.get_extra_info("attempts") if r.protocols else None
            won = [a for a in trace or () if a.outcome == "won"]
            if trace is None or len(won) != 1 or trace.winner is None or trace[trace.winner].outcome != "won":
                r.problem(f"a connection's trace has {len(won)} winners: {trace!r}")


async def use_and_close(env: Env, r: Req, tr, pr) -> None:
    loop = asyncio.get_running_loop()
    p = r.protocols[0] if r.protocols else None
    if p is None or pr is not p:
        r.problem("create_connection returned another protocol than the factory's")
        tr.abort()
        return
    p.lost = loop.create_future()
    if r.action == "echo":
        tr.write(b"ping")
        deadline = time.monotonic() + 5
        while len(p.echo) < 4 and not p.lost.done() and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        if bytes(p.echo) != b"ping":
            r.problem(f"echo gave {bytes(p.echo)!r}")
    if r.action == "abort":
        tr.abort()
    else:
        tr.close()
    try:
        await asyncio.wait_for(asyncio.shield(p.lost), 10)
    except asyncio.TimeoutError:
        r.problem("no connection_lost within 10 s of close()")


def check_events(r: Req) -> None:
    """The callbacks each request's protocol saw, once everything has settled."""
    for p in r.protocols:
        kinds = [e[0] for e in p.events]
        if r.outcome == "ok":
            if not kinds or kinds[0] != "made" or kinds[-1] != "lost" or kinds.count("lost") != 1:
                r.problem(f"a connection saw {kinds}")
        elif kinds and (kinds[0] != "made" or kinds[-1] != "lost" or set(kinds[1:-1]) - {"eof"}):
            # A call that did not return a connection: nothing, or made then lost (a TLS
            # peer's close_notify can come in between as eof_received, in asyncio too).
            r.problem(f"a call that ended {r.outcome} saw {kinds}")
        for e in p.events:
            if e[0] == "lost" and e[1] is not None:
                r.problem(f"connection_lost({e[1]}) after close()/abort()/cancel")


# ---- the run -------------------------------------------------------------------------


def instrument() -> bool:
    """Count, per request, goconn's on_done and protocol factory calls (they come from the
    library through _Request._done and _Request._make_transport): on_done exactly once, and
    no factory call after it.  False if those internals are not there."""
    cls = getattr(goconn._connect, "_Request", None)
    orig_init = getattr(cls, "__init__", None)
    orig_done = getattr(cls, "_done", None)
    orig_make = getattr(cls, "_make_transport", None)
    if orig_done is None or orig_make is None:
        return False

    def __init__(self, loop, protocol_factory, *args, **kwargs):
        r = getattr(protocol_factory, "req", None)
        if r is not None:
            r.lib_reqs += 1
        orig_init(self, loop, protocol_factory, *args, **kwargs)

    def _done(self, *args):
        r = getattr(self.protocol_factory, "req", None)
        if r is not None:
            r.lib_done += 1
            if r.lib_done > 1:
                r.problem("on_done called more than once")
        return orig_done(self, *args)

    def _make_transport(self, *args):
        r = getattr(self.protocol_factory, "req", None)
        if r is not None:
            r.lib_made += 1
            if r.lib_done:
                r.problem("the protocol factory was called after on_done")
        return orig_make(self, *args)

    cls.__init__ = __init__
    cls._done = _done
    cls._make_transport = _make_transport
    return True


def goconn_tables(loop) -> dict:
    lib = goconn._ffi.bind()
    mine = [repr(o) for o in goconn._bridge._objects.values()
            if getattr(o, "loop", None) is loop or getattr(o, "_loop", None) is loop]
    return {"objects_left": mine, "live_handles": lib.goconn_live_handles(),
            "live_loops": len(goconn._bridge._bridges)}


async def warm_up(env: Env) -> None:
    """One call down every path, so lazily made descriptors (the Go poller, the
    executor's threads, the resolver) exist before the baseline is taken."""
    plans = [(NAME, env.plain.port, {"happy_eyeballs_delay": 0.01}),
             ("127.0.0.1", env.tls.port, {"ssl": env.ctx}),
             (NAME, env.tls.port, {"ssl": env.ctx, "server_hostname": "localhost", "happy_eyeballs_delay": 0.01})]
    if env.connector == "goconn":
        plans += [(NAME, env.plain.port, {"resolution_delay": 0.01, "happy_eyeballs_delay": 0.01}),
                  ("a0q5-warm.slow.test", env.plain.port, {"resolution_delay": 0.01, "happy_eyeballs_delay": 0.01}),
                  (NAME, env.plain.port, {"attempt_timeout": 0.01})]
    for host, port, kw in plans:
        tr, _ = await env.connect(asyncio.Protocol, host, port, **kw)
        tr.close()
    await asyncio.sleep(0.2)


async def main_async(connector: str, p: dict) -> dict:
    loop = asyncio.get_running_loop()
    seed = p["seed"]
    rng = random.Random(seed)
    certdir = tempfile.mkdtemp(prefix="goconn-stress-certs-")
    subprocess.run([PEER, "certs", certdir], check=True, capture_output=True)
    ctx = ssl.create_default_context(cafile=os.path.join(certdir, "ca.pem"))
    peers = [PeerProc("--mode", "echo", hang=True),
             PeerProc("--tls", "--certdir", certdir, "--mode", "echo", hang=True),
             PeerProc("--tls", "--certdir", certdir, "--mode", "stall-handshake")]
    env = Env(connector, rng, peers, ctx, p.get("mix"))
    out = {"connector": connector, "seed": seed}
    handler_calls: list = []
    loop.set_exception_handler(lambda lp, context: handler_calls.append(
        f"{context.get('message')}: {context.get('exception')!r}"))
    instrumented = connector == "goconn" and instrument()
    out["instrumented"] = instrumented
    try:
        await warm_up(env)
        gc.collect()
        base_fds = set(os.listdir("/proc/self/fd"))
        base = len(base_fds)
        out["fd_base"] = base
        count, conc = p["count"], p["concurrency"]
        deadline = time.monotonic() + p["time_limit"]
        stats = collections.defaultdict(collections.Counter)
        reqs: list[Req] = []
        queue = iter(range(count))
        in_flight = 0
        max_in_flight = 0
        t0 = time.monotonic()

        async def worker():
            nonlocal in_flight, max_in_flight
            for i in queue:
                if time.monotonic() > deadline:
                    return
                r = env.plan(i)
                reqs.append(r)
                in_flight += 1
                max_in_flight = max(max_in_flight, in_flight)
                try:
                    await run_one(env, r, stats)
                except Exception as e:  # a bug in this harness or in the connector
                    r.problem(f"harness: {e!r}")
                finally:
                    in_flight -= 1

        await asyncio.gather(*(worker() for _ in range(conc)))
        out["elapsed"] = time.monotonic() - t0
        out["requests"] = len(reqs)
        out["max_in_flight"] = max_in_flight
        # Settle: late made/lost pairs of cancelled calls, sockets of lookups still running.
        t_settle = time.monotonic()
        settle_deadline = t_settle + p.get("settle", 10)
        while time.monotonic() < settle_deadline:
            await asyncio.sleep(0.1)
            gc.collect()
            if fd_count() == base and all(not pr.events or pr.events[-1][0] == "lost"
                                          for r in reqs for pr in r.protocols):
                break
        out["settle_time"] = time.monotonic() - t_settle
        for r in reqs:
            r.snapshot = [len(pr.events) for pr in r.protocols]
        await asyncio.sleep(0.3)  # anything arriving now arrives late
        gc.collect()
        for r in reqs:
            if [len(pr.events) for pr in r.protocols] != r.snapshot:
                r.problem("a callback arrived after everything had settled")
            check_events(r)
            if instrumented and (r.lib_reqs > 1 or r.lib_done != r.lib_reqs):
                r.problem(f"{r.lib_reqs} goconn requests had {r.lib_done} on_done calls")
        out["exception_handler"] = handler_calls[:10]
        out["n_exception_handler"] = len(handler_calls)
        out["fd_end"] = fd_count()
        if out["fd_end"] != base:
            out["fd_new"] = fd_details(base_fds)[:20]
        if connector == "goconn":
            out.update(goconn_tables(loop))
        bad = [r for r in reqs if r.problems]
        out["n_violations"] = len(bad)
        out["violations"] = [r.describe() for r in bad[:15]]
        out["stats"] = {cat: dict(c) for cat, c in sorted(stats.items())}
        out["methods"] = dict(collections.Counter(f"{r.method}:{r.outcome}" for r in reqs))
        # Where the cancellations landed (from what is known of each call's timing).
        phases = collections.Counter()
        for r in reqs:
            if r.outcome not in ("cancelled", "timeout") and not r.cancel_called:
                continue
            if r.cat == "resolve" and r.host != NAME and r.outcome != "ok":
                a, q = (int(x) for x in r.host.split("-")[0][1:].split("q"))
                if r.ended - r.started < min(a, q) / 1000:
                    phases["resolve: before any answer"] += 1
                elif r.ended - r.started < max(a, q) / 1000:
                    phases["resolve: between the two answers"] += 1
                else:
                    phases["resolve: after both answers"] += 1
            elif r.cat == "between" and r.outcome != "ok":
                d = r.kw.get("happy_eyeballs_delay", r.kw.get("attempt_timeout"))
                phases["between: during the first attempt" if r.ended - r.started < d
                       else "between: after the second attempt began"] += 1
            elif r.made:
                phases[f"{r.cat}: at or after winning (made then lost)"] += 1
            elif r.outcome != "ok":
                phases[f"{r.cat}: before connection_made"] += 1
        out["phases"] = dict(sorted(phases.items()))
    finally:
        for peer in peers:
            peer.close()
        subprocess.run(["rm", "-rf", certdir])
    return out


def main():
    cmd, connector, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    assert cmd == "run"
    use_fake_dns()
    out = asyncio.run(main_async(connector, params))
    gc.collect()
    if connector == "goconn":
        # The loop is gone and with it its goconn loop: nothing is left in the library.
        out["live_handles_after_loop"] = goconn._ffi.bind().goconn_live_handles()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
