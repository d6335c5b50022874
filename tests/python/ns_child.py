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
    # warm up: goconn's bridge and poller (and asyncio's executor) exist before the baseline.
    # A name, not an IP literal: a literal is dialled from the goconn loop's own epoll
    # set and would leave the Go runtime's poller (two descriptors) unmade.
    try:
        await connect(connector, asyncio.Protocol, "localhost", 1)
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


# ---- goconn-only scenarios (options beyond asyncio) ------------------------------------


def use_fake_dns():
    """Start fake_dns.py and point this namespace's /etc/resolv.conf at it (before anything
    here resolves a name).  Returns the server process (killed at exit)."""
    import atexit
    import subprocess
    import tempfile

    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "fake_dns.py")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().split()
    if len(line) != 2 or line[0] != "ADDR":
        proc.kill()
        raise RuntimeError(f"fake_dns.py did not start: {line}")
    conf = tempfile.NamedTemporaryFile("w", prefix="goconn-resolv-", suffix=".conf", delete=False)
    conf.write(f"nameserver {line[1]}\noptions timeout:2 attempts:1\n")
    conf.close()
    subprocess.run(["mount", "--bind", conf.name, "/etc/resolv.conf"], check=True)

    def stop():
        proc.kill()
        proc.wait()
        os.unlink(conf.name)

    atexit.register(stop)
    return proc


def trace_json(trace, t0):
    """A goconn.Trace as JSON, its times in seconds since t0."""
    if trace is None:
        return None
    return {
        "type": type(trace).__name__,
        "attempts": [{"remote": list(a.remote), "local": list(a.local) if a.local else None,
                      "start": a.start - t0, "end": a.end - t0, "outcome": a.outcome,
                      "errno": a.errno, "error": a.error} for a in trace],
        "resolutions": [{"family": r.family, "start": r.start - t0,
                         "end": None if r.end is None else r.end - t0, "count": r.count,
                         "errno": r.errno, "error": r.error} for r in trace.resolutions],
        "winner": trace.winner,
    }


def describe_traced(exc, t0):
    """describe(), with the `attempts` trace of the exception and of each group member."""
    d = describe(exc)
    if d is None:
        return None
    d["attempts"] = trace_json(getattr(exc, "attempts", None), t0)
    if isinstance(exc, BaseExceptionGroup):
        for m, e in zip(d["members"], exc.exceptions):
            m["attempts"] = trace_json(getattr(e, "attempts", None), t0)
            m["same_trace"] = getattr(e, "attempts", None) is getattr(exc, "attempts", None)
    return d


SOCKOPTS = {
    "IP_BIND_ADDRESS_NO_PORT": (socket.IPPROTO_IP, 24),
    "SO_KEEPALIVE": (socket.SOL_SOCKET, socket.SO_KEEPALIVE),
    "TCP_KEEPIDLE": (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
    "TCP_KEEPINTVL": (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
    "TCP_KEEPCNT": (socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
    "TCP_NODELAY": (socket.IPPROTO_TCP, socket.TCP_NODELAY),
}


def addr_infos_of(spec, port):
    """[host, ...] or [[host, port-or-null, flowinfo, scope], ...] as getaddrinfo() 5-tuples;
    an IPv6 host in a plain string gets a 2-tuple sockaddr (a 4-tuple when given as a list)."""
    out = []
    for item in spec:
        if isinstance(item, list):
            host, rest = item[0], list(item[1:])
            sockaddr = (host, port if rest[0] is None else rest[0], *rest[1:])
        else:
            host, sockaddr = item, (item, port)
        out.append((family_of(host), socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
    return out


async def scenario_goconn(connector, p):
    """goconn only: connect with options beyond asyncio and report the trace, the
    exception with its attempts, socket options and expected lookup counts.

    p: name (or null), hang/accept listeners, kw, timeout, dns (use fake_dns.py),
    addr_infos (see addr_infos_of), sockopts (names in SOCKOPTS), expect_counts (names)."""
    assert connector == "goconn"
    if p.get("dns"):
        use_fake_dns()
    loop = asyncio.get_running_loop()
    port, keep, acc = listeners(p.get("hang", []), p.get("accept", []))
    kw = dict(p.get("kw", {}))
    if "local_addr" in kw:
        kw["local_addr"] = tuple(kw["local_addr"])
    if "addr_infos" in p:
        kw["addr_infos"] = addr_infos_of(p["addr_infos"], port)
    out = {"port": port}
    name = p.get("name")
    if name and p.get("expect_counts", True):
        # What this namespace's getaddrinfo gives per family (the Resolution counts).
        counts, distinct = {}, {}
        for fam in (socket.AF_INET6, socket.AF_INET):
            try:
                infos = socket.getaddrinfo(name, port, fam, socket.SOCK_STREAM)
            except socket.gaierror:
                infos = []
            counts[str(int(fam))] = len(infos)
            distinct[str(int(fam))] = len({ai[4] for ai in infos})
        out["counts"] = counts
        out["distinct_counts"] = distinct
    try:  # warm up the bridge, the poller and the resolver before the fd baseline (a name: see above)
        await goconn.create_connection(asyncio.Protocol, "localhost", 1)
    except OSError:
        pass
    base = fd_count()
    t0 = time.monotonic()
    try:
        tr, pr = await asyncio.wait_for(
            goconn.create_connection(asyncio.Protocol, name, None if name is None and "addr_infos" in kw else port, **kw),
            p.get("timeout", 10))
    except BaseException as e:  # noqa: BLE001
        out["elapsed"] = time.monotonic() - t0
        out["ok"] = False
        out["exc"] = describe_traced(e, t0)
    else:
        out["elapsed"] = time.monotonic() - t0
        out["ok"] = True
        out["exc"] = None
        out["peername"] = list(tr.get_extra_info("peername"))
        out["sockname"] = list(tr.get_extra_info("sockname"))
        out["trace"] = trace_json(tr.get_extra_info("attempts"), t0)
        sock = tr.get_extra_info("socket")
        out["sockopts"] = {n: sock.getsockopt(*SOCKOPTS[n]) for n in p.get("sockopts", [])}
        with socket.socket() as fresh:  # the system's defaults, for comparison
            out["fresh_sockopts"] = {n: fresh.getsockopt(*SOCKOPTS[n]) for n in p.get("sockopts", [])}
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
    deadline = time.monotonic() + 3
    while fd_count() != base and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    out["fd_delta"] = fd_count() - base
    for s in keep:
        s.close()
    return out


async def scenario_cli(connector, p):
    """python3 -m goconn NAME PORT ARGS... against the listeners (the accepting one answers
    b"hello\n" and closes once the client half-closes); report its exit code and output."""
    if p.get("dns"):
        use_fake_dns()
    loop = asyncio.get_running_loop()
    port, keep, acc = listeners(p.get("hang", []), p.get("accept", []))

    async def serve(s):
        conn, _ = await loop.sock_accept(s)
        with conn:
            while await loop.sock_recv(conn, 4096):
                pass
            await loop.sock_sendall(conn, b"hello\n")

    servers = [asyncio.ensure_future(serve(s)) for s in acc]
    t0 = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "goconn", p["name"], str(port), *p.get("args", []),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), p.get("timeout", 20))
    out = {"port": port, "rc": proc.returncode, "stdout": stdout.decode(), "stderr": stderr.decode(),
           "elapsed": time.monotonic() - t0}
    for t in servers:
        t.cancel()
    await asyncio.gather(*servers, return_exceptions=True)
    for s in keep:
        s.close()
    return out


def main():
    scenario, connector, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    fn = globals()["scenario_" + scenario]
    out = asyncio.run(fn(connector, params))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
