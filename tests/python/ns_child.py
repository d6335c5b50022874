"""Child side of the dual-stack tests: run inside a private mount namespace whose
/etc/hosts maps test names to several addresses (see _util.run_in_namespace).

    ns_child.py SCENARIO CONNECTOR PARAMS_JSON

prints one JSON object on its last line.  CONNECTOR is "asyncio" or "goconn".
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "python"))

import goconn  # noqa: E402


def describe(exc):
    if exc is None:
        return None
    d = {"type": type(exc).__name__, "str": str(exc), "errno": getattr(exc, "errno", None)}
    if isinstance(exc, BaseExceptionGroup):
        d["message"] = exc.message
        d["members"] = [describe(e) for e in exc.exceptions]
    return d


def family_of(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def listeners(hang, accept):
    """Listeners on one shared port: full accept queues on `hang`, normal ones on `accept`.
    Returns (port, sockets-to-keep, accepting-listeners)."""
    for _ in range(50):
        keep, acc = [], []
        port = 0
        try:
            for host in list(hang) + list(accept):
                s = socket.socket(family_of(host), socket.SOCK_STREAM)
                keep.append(s)
                if family_of(host) == socket.AF_INET6:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                s.bind((host, port))
                port = s.getsockname()[1]
                if host in hang:
                    s.listen(0)
                    filler = socket.socket(family_of(host), socket.SOCK_STREAM)
                    filler.settimeout(5)
                    filler.connect(s.getsockname())
                    keep.append(filler)
                else:
                    s.listen(16)
                    s.setblocking(False)
                    acc.append(s)
            if not hang and not accept:
                s = socket.socket()
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
                s.close()
            return port, keep, acc
        except OSError as e:
            for s in keep:
                s.close()
            if e.errno != errno.EADDRINUSE:
                raise
    raise RuntimeError("no shared port found")


async def connect(connector, *args, **kw):
    if connector == "goconn":
        return await goconn.create_connection(*args, **kw)
    return await asyncio.get_running_loop().create_connection(*args, **kw)


def fd_count():
    return len(os.listdir("/proc/self/fd"))


async def scenario_connect(connector, p):
    """Connect to p['name'] with listeners as described; report what happened."""
    loop = asyncio.get_running_loop()
    port, keep, acc = listeners(p.get("hang", []), p.get("accept", []))
    kw = dict(p.get("kw", {}))
    busy = None
    if p.get("busy_local"):
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        kw["local_addr"] = (p.get("local_host", "127.0.0.1"), busy.getsockname()[1])
    if "local_addr" in kw:
        kw["local_addr"] = tuple(kw["local_addr"])
    # warm up: goconn's bridge and poller (and asyncio's executor) exist before the baseline
    try:
        await connect(connector, asyncio.Protocol, "127.0.0.1", 1)
    except OSError:
        pass
    try:
        await loop.getaddrinfo("localhost", 1)
    except OSError:
        pass
    base = fd_count()
    out = {"port": port, "local_port": busy.getsockname()[1] if busy else None}
    t0 = time.monotonic()
    try:
        tr, pr = await asyncio.wait_for(
            connect(connector, asyncio.Protocol, p["name"], port, **kw), p.get("timeout", 10)
        )
    except BaseException as e:  # noqa: BLE001
        out["elapsed"] = time.monotonic() - t0
        out["ok"] = False
        out["exc"] = describe(e)
    else:
        out["elapsed"] = time.monotonic() - t0
        out["ok"] = True
        out["peername"] = list(tr.get_extra_info("peername"))
        out["sockname"] = list(tr.get_extra_info("sockname"))
        tr.close()
        await asyncio.sleep(0.05)
    accepted = 0
    for s in acc:
        try:
            while True:
                c, _ = s.accept()
                c.close()
                accepted += 1
        except BlockingIOError:
            pass
    out["accepted"] = accepted
    # every attempt socket (losers, cancelled, failed, and the closed winner) is gone
    deadline = time.monotonic() + 3
    while fd_count() != base and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    out["fd_delta"] = fd_count() - base
    for s in keep:
        s.close()
    if busy:
        busy.close()
    return out


async def scenario_resolve(connector, p):
    """What getaddrinfo gives for the name (to check the namespace itself)."""
    infos = socket.getaddrinfo(p["name"], 80, type=socket.SOCK_STREAM)
    return {"addrs": [a[4][0] for a in infos]}


def main():
    scenario, connector, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    fn = globals()["scenario_" + scenario]
    out = asyncio.run(fn(connector, params))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
