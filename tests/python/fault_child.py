"""Fault-injection scenarios that need a process of their own (test_faults.py runs them).

    python3 fault_child.py SCENARIO CONNECTOR 'JSON PARAMS'

SCENARIO is one of:

* ``many``: N concurrent connections (asyncio.gather of N create_connection calls) to an
  echo peer (build/goconn-peer), with RLIMIT_NOFILE raised for them; each exchanges one
  message, then all close; the descriptor count must come back to its baseline;
* ``emfile``: RLIMIT_NOFILE lowered and every descriptor taken: create_connection fails;
  then the descriptors are freed and a connection works again;
* ``loop_close``: (goconn) an event loop closed while goconn connections are live;
* ``fork``: (goconn) a transport made before fork() used in the child.

The last line of stdout is one JSON object: the results, or {"skip": reason}.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import resource
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, HERE)

import goconn  # noqa: E402
from goconn import _bridge, _ffi  # noqa: E402

PEER = os.path.join(ROOT, "build", "goconn-peer")


def describe(exc):
    if exc is None:
        return None
    return [type(exc).__name__, str(exc), getattr(exc, "errno", None)]


def fd_count() -> int:
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


async def settle_fds(baseline: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    n = fd_count()
    while n != baseline and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        n = fd_count()
    return n


def connector_for(name: str):
    async def connect(factory, host=None, port=None, **kw):
        if name == "goconn":
            return await goconn.create_connection(factory, host, port, **kw)
        return await asyncio.get_running_loop().create_connection(factory, host, port, **kw)

    return connect


def live_handles() -> int:
    return _ffi.bind().goconn_live_handles()


class Lifecycle(asyncio.Protocol):
    """Records the callbacks; `reply` completes when `expect` bytes have arrived."""

    def __init__(self, expect: int = 0):
        self.events: list = []
        self.data = bytearray()
        self.expect = expect
        loop = asyncio.get_running_loop()
        self.reply = loop.create_future()
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def data_received(self, data):
        self.data += data
        if not self.events or self.events[-1] != "data":
            self.events.append("data")
        if len(self.data) >= self.expect and not self.reply.done():
            self.reply.set_result(bytes(self.data))

    def eof_received(self):
        self.events.append("eof")

    def connection_lost(self, exc):
        self.events.append("lost")
        if not self.lost.done():
            self.lost.set_result(exc)


# ---- many: N concurrent connections ----------------------------------------------------


def raise_nofile(need: int) -> str | None:
    """Raise RLIMIT_NOFILE to at least `need` (the hard limit too: we may be root).
    Returns None, or why it could not be done."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return None
    new_hard = hard if hard == resource.RLIM_INFINITY or hard >= need else need
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, new_hard))
    except (ValueError, OSError) as exc:
        return f"RLIMIT_NOFILE is ({soft}, {hard}) and cannot be raised to {need}: {exc}"
    return None


async def many(connector: str, n: int) -> dict:
    connect = connector_for(connector)
    out: dict = {"connector": connector, "n": n}
    with open("/proc/sys/net/core/somaxconn") as f:
        out["somaxconn"] = int(f.read())
    peer = subprocess.Popen([PEER, "serve", "--mode", "echo", "--no-hash", "--die-with-parent"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = peer.stdout.readline()
        assert line.startswith("PORT "), line
        port = int(line.split()[1])
        # Warm up: the lazily made descriptors (goconn's loop eventfd, the Go poller).
        tr, pr = await connect(lambda: Lifecycle(2), "127.0.0.1", port)
        tr.write(b"hi")
        await pr.reply
        tr.close()
        await pr.lost
        base = fd_count()
        out["fd_base"] = base

        t0 = time.monotonic()
        results = await asyncio.gather(*(connect(Lifecycle, "127.0.0.1", port) for _ in range(n)),
                                       return_exceptions=True)
        out["t_connect"] = round(time.monotonic() - t0, 2)
        errors = [describe(r) for r in results if isinstance(r, BaseException)]
        out["connect_errors"] = len(errors)
        out["first_errors"] = errors[:3]
        ok = [r for r in results if not isinstance(r, BaseException)]
        out["connected"] = len(ok)
        out["fd_open"] = fd_count() - base  # every connection at once
        out["distinct_protocols"] = len({id(pr) for _, pr in ok})

        t1 = time.monotonic()
        for i, (tr, pr) in enumerate(ok):
            msg = b"message %06d\n" % i
            pr.expect = len(msg)
            tr.write(msg)
        replies = await asyncio.wait_for(asyncio.gather(*(pr.reply for _, pr in ok)), 60)
        out["echo_ok"] = sum(1 for i, r in enumerate(replies) if r == b"message %06d\n" % i)
        out["t_exchange"] = round(time.monotonic() - t1, 2)

        t2 = time.monotonic()
        for tr, _ in ok:
            tr.close()
        lost = await asyncio.wait_for(asyncio.gather(*(pr.lost for _, pr in ok)), 60)
        out["lost_none"] = sum(1 for e in lost if e is None)
        out["event_orders"] = sorted({"/".join(pr.events) for _, pr in ok})
        out["t_close"] = round(time.monotonic() - t2, 2)
        del results, ok, replies, lost, tr, pr
        out["fd_end"] = await settle_fds(base)
        if connector == "goconn":
            loop = asyncio.get_running_loop()
            out["objects_left"] = sum(1 for o in _bridge._objects.values()
                                      if getattr(o, "_loop", None) is loop or getattr(o, "loop", None) is loop)
            out["live_handles"] = live_handles()  # the loop's own handle only
    finally:
        peer.kill()
        peer.wait()
    return out


# ---- emfile: every descriptor taken ------------------------------------------------------


async def emfile(connector: str, free: int, happy_eyeballs_delay) -> dict:
    connect = connector_for(connector)
    kw = {} if happy_eyeballs_delay is None else {"happy_eyeballs_delay": happy_eyeballs_delay}
    out: dict = {"connector": connector, "free": free}
    loop = asyncio.get_running_loop()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    # Warm up (lazy descriptors), accept and close that one.
    tr, pr = await connect(Lifecycle, "127.0.0.1", port, **kw)
    conn, _ = await loop.sock_accept(listener)
    conn.close()
    tr.close()
    await pr.lost
    await asyncio.sleep(0.1)
    base = fd_count()
    # (asyncio's run does not load the library: loading it makes the Go runtime open files)
    handles = live_handles() if connector == "goconn" else 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (base + 64, hard))
    fillers = []
    try:
        while True:
            try:
                fillers.append(os.open("/dev/null", os.O_RDONLY))
            except OSError as exc:
                out["filler_error"] = describe(exc)
                break
        for _ in range(free):
            os.close(fillers.pop())
        out["fillers"] = len(fillers)
        attempts = []
        t0 = time.monotonic()
        for _ in range(3):
            try:
                tr, pr = await asyncio.wait_for(connect(Lifecycle, "127.0.0.1", port, **kw), 10)
            except asyncio.TimeoutError:
                attempts.append("hung")
            except Exception as exc:
                attempts.append(describe(exc))
            else:
                attempts.append("connected")
                tr.abort()
                await pr.lost
        out["attempts"] = attempts
        out["t_attempts"] = round(time.monotonic() - t0, 2)
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    # Whatever the listener queued (a connect that got through) is drained and closed.
    while True:
        try:
            conn, _ = listener.accept()
            conn.close()
        except BlockingIOError:
            break
    await asyncio.sleep(0.1)
    out["fd_leak"] = await settle_fds(base) - base
    out["handle_leak"] = (live_handles() if connector == "goconn" else 0) - handles
    # Recovered: a new connection works.
    tr, pr = await asyncio.wait_for(connect(lambda: Lifecycle(5), "127.0.0.1", port, **kw), 10)
    conn, _ = await loop.sock_accept(listener)
    await loop.sock_sendall(conn, b"after")
    out["recovered"] = (await asyncio.wait_for(pr.reply, 10)) == b"after"
    tr.close()
    await pr.lost
    conn.close()
    listener.close()
    return out


# ---- loop_close: the loop closed under live goconn connections -----------------------------


def start_peer(*args: str) -> tuple[subprocess.Popen, int]:
    peer = subprocess.Popen([PEER, "serve", "--die-with-parent", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    line = peer.stdout.readline()
    assert line.startswith("PORT "), line
    return peer, int(line.split()[1])


def loop_close(mode: str) -> dict:
    """goconn only.  mode 'close': loop.close() by hand with connections open (plain TCP:
    one with 8 MiB buffered, one paused, one idle; one TLS) and two connects in flight (a
    full accept queue, a stalled TLS handshake); 'run': the same from asyncio.run() whose
    main returns with all that open."""
    import ssl
    import tempfile

    out: dict = {"mode": mode, "handles_start": live_handles()}
    certdir = tempfile.mkdtemp(prefix="goconn-faults-")
    subprocess.run([PEER, "certs", certdir], check=True, capture_output=True)
    tls_peer, tls_port = start_peer("--tls", "--certdir", certdir)
    stall_peer, stall_port = start_peer("--tls", "--certdir", certdir, "--mode", "stall-handshake")
    ctx = ssl.create_default_context(cafile=os.path.join(certdir, "ca.pem"))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    hanging = socket.socket()  # a full accept queue: a connect to it hangs
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(0)
    filler = socket.create_connection(hanging.getsockname())
    base = fd_count()
    keep: list = []

    async def main():
        for _ in range(3):
            keep.append(await goconn.create_connection(Lifecycle, "127.0.0.1", port))
        keep[0][0].write(b"x" * (8 << 20))
        keep[1][0].pause_reading()
        keep.append(asyncio.ensure_future(goconn.create_connection(Lifecycle, "127.0.0.1",
                                                                   hanging.getsockname()[1])))
        tls = await goconn.create_connection(lambda: Lifecycle(4), "127.0.0.1", tls_port, ssl=ctx,
                                             server_hostname="localhost")
        tls[0].write(b"ping")
        await tls[1].reply  # echoed
        keep.append(tls[1])
        keep.append(asyncio.ensure_future(goconn.create_connection(Lifecycle, "127.0.0.1", stall_port, ssl=ctx,
                                                                   server_hostname="localhost")))
        await asyncio.sleep(0.2)

    if mode == "run":
        asyncio.run(main())
    else:
        loop = asyncio.new_event_loop()
        loop.run_until_complete(main())
        out["handles_live"] = live_handles()
        t0 = time.monotonic()
        loop.close()
        out["t_close"] = round(time.monotonic() - t0, 2)
        loop.close()  # again: a no-op, as in asyncio
        del loop
    conns = [k for k in keep if isinstance(k, tuple)]
    out["events"] = [pr.events for _, pr in conns]  # no callback after the loop closed
    out["tls_events"] = [k.events for k in keep if isinstance(k, Lifecycle)]
    out["after_close"] = {}
    tr = conns[0][0]
    for name, call in [("is_closing", tr.is_closing), ("write", lambda: tr.write(b"x")),
                       ("close", tr.close), ("abort", tr.abort),
                       ("get_write_buffer_size", tr.get_write_buffer_size)]:
        try:
            out["after_close"][name] = repr(call())
        except Exception as exc:
            out["after_close"][name] = describe(exc)
    # The peer's ends: every connection was ended (EOF or reset), none is left open.
    ends = []
    listener.settimeout(2)
    for _ in conns:
        conn, _ = listener.accept()
        conn.settimeout(5)
        try:
            while conn.recv(1 << 20):
                pass
            ends.append("eof")
        except ConnectionResetError:
            ends.append("reset")
        except socket.timeout:
            ends.append("open")
        conn.close()
    out["peer_ends"] = ends
    del keep, conns, tr
    gc.collect()
    out["objects_left"] = len(_bridge._objects)
    out["bridges_left"] = len(_bridge._bridges)
    out["handles_end"] = live_handles()
    filler.close()
    hanging.close()
    out["fd_leak"] = fd_count() - base

    async def again():
        tr, pr = await goconn.create_connection(lambda: Lifecycle(2), "127.0.0.1", port)
        conn, _ = listener.accept()
        conn.sendall(b"ok")
        data = await asyncio.wait_for(pr.reply, 5)
        tr.close()
        await pr.lost
        conn.close()
        return data == b"ok"

    listener.settimeout(5)
    out["new_loop_connects"] = asyncio.run(again())
    gc.collect()
    out["handles_final"] = live_handles()
    listener.close()
    for peer in (tls_peer, stall_peer):
        peer.kill()
        peer.wait()
    subprocess.run(["rm", "-rf", certdir])
    return out


# ---- fork: a transport made before fork() used in the child --------------------------------


def fork(_unused=None) -> dict:
    out: dict = {}
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)

    async def main():
        loop = asyncio.get_running_loop()
        tr, pr = await goconn.create_connection(lambda: Lifecycle(6), "127.0.0.1", listener.getsockname()[1])
        conn, _ = listener.accept()
        conn.setblocking(False)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: every transport call, none may hang or crash
            os.close(r)
            res = {}
            calls = [
                ("write", lambda: tr.write(b"child")),
                ("writelines", lambda: tr.writelines([b"child"])),
                ("write_eof", tr.write_eof),
                ("pause_reading", tr.pause_reading),
                ("resume_reading", tr.resume_reading),
                ("set_write_buffer_limits", lambda: tr.set_write_buffer_limits(100)),
                ("get_write_buffer_size", tr.get_write_buffer_size),
                ("is_closing", tr.is_closing),
                ("is_reading", tr.is_reading),
                ("get_extra_info", lambda: tr.get_extra_info("peername")),
                ("close", tr.close),
                ("abort", tr.abort),
            ]
            for name, call in calls:
                try:
                    res[name] = ["ok", repr(call())]
                except BaseException as exc:
                    res[name] = describe(exc)
            try:
                async def child_connect():
                    await goconn.create_connection(asyncio.Protocol, "127.0.0.1", listener.getsockname()[1])
                asyncio.new_event_loop().run_until_complete(child_connect())
                res["create_connection"] = ["ok"]
            except BaseException as exc:
                res["create_connection"] = describe(exc)
            os.write(w, json.dumps(res).encode())
            os._exit(0)
        os.close(w)
        deadline = time.monotonic() + 20
        status = None
        while time.monotonic() < deadline:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = os.waitstatus_to_exitcode(st)
                break
            await asyncio.sleep(0.02)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            status = "hung"
        out["child_status"] = status
        raw = b""
        while True:
            chunk = os.read(r, 65536)
            if not chunk:
                break
            raw += chunk
        os.close(r)
        out["child"] = json.loads(raw) if raw else None
        # The parent's connection is untouched: the child sent nothing and closed nothing.
        tr.write(b"parent")
        got = b""
        deadline = time.monotonic() + 5
        while len(got) < 6 and time.monotonic() < deadline:
            try:
                got += await asyncio.wait_for(loop.sock_recv(conn, 100), 1)
            except asyncio.TimeoutError:
                pass
        await asyncio.sleep(0.1)
        try:
            got += conn.recv(100)
        except BlockingIOError:
            pass
        out["peer_got"] = got.decode()
        await loop.sock_sendall(conn, b"parent")
        out["parent_reply"] = (await asyncio.wait_for(pr.reply, 5)).decode()
        out["parent_closing"] = tr.is_closing()
        tr.close()
        out["parent_lost"] = describe(await pr.lost)
        out["parent_events"] = pr.events
        conn.close()

    asyncio.run(main())
    listener.close()
    return out


def main():
    scenario, connector, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    if scenario == "many":
        need = params["n"] + 2048
        reason = raise_nofile(need)
        if reason:
            print(json.dumps({"skip": reason}))
            return
        out = asyncio.run(many(connector, params["n"]))
    elif scenario == "emfile":
        out = asyncio.run(emfile(connector, params.get("free", 0), params.get("happy_eyeballs_delay")))
    elif scenario == "loop_close":
        out = loop_close(params["mode"])
    elif scenario == "fork":
        out = fork()
    else:
        raise SystemExit(f"unknown scenario {scenario}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
