"""goconn's Happy Eyeballs beyond asyncio (issue 5), end to end and goconn only: asyncio has
none of these options (its own behaviour stays covered by test_happy_eyeballs.py).

Most tests connect to dual.test, which resolves to ::1 and 127.0.0.1 inside a private mount
namespace (ns_child.py's "goconn" scenario); "hang" addresses have a listener whose accept
queue is full, "accept" addresses an ordinary one, all on one port.  Names under slow.test
are answered by fake_dns.py with the A and AAAA delays their first label names
("a0q300": A at once, AAAA after 300 ms).  Times in the JSON are seconds since the call.

Covered: resolution_delay (per-family Resolution records, on success and on exc.attempts),
the Happy Eyeballs trace, late AAAA and late A joining the race, attempt_timeout,
connect_timeout, addr_infos (with interleave), bind_address_no_port, keepalive, .attempts on
ExceptionGroup members, the CLI's --trace timeline, and the argument errors.
"""

from __future__ import annotations

import asyncio
import math
import re
import socket

import pytest

import goconn
from goconn import _bridge, _ffi
from _util import Peer, fd_count, namespaces_available, run_in_namespace

needs_ns = pytest.mark.skipif(namespaces_available() is not None, reason=str(namespaces_available()))

HOSTS = """\
127.0.0.1 localhost
::1 dual.test
127.0.0.1 dual.test
"""

V6, V4, UNSPEC = int(socket.AF_INET6), int(socket.AF_INET), int(socket.AF_UNSPEC)
DELAY = 0.25
EPS = 1e-6  # trace times are nanoseconds turned into floats


def run(**params) -> dict:
    return run_in_namespace(HOSTS, "goconn", "goconn", **params)


def v6(host, port):
    return [host, port, 0, 0]


def v4(host, port):
    return [host, port]


def check_resolutions(res, out=None):
    """Per-family lookups: AAAA then A, each ended, none failed."""
    assert [r["family"] for r in res] == [V6, V4], res
    for r in res:
        assert r["end"] is not None and 0 <= r["start"] <= r["end"], r
        assert r["errno"] is None and r["error"] is None, r
    if out is not None:
        # As many addresses as this namespace's getaddrinfo gives for the family: glibc
        # answers AF_INET for a name listed as ::1 and 127.0.0.1 with 127.0.0.1 twice,
        # which counts once or twice (the race tries it once, see below).
        for r in res:
            fam = str(r["family"])
            assert out["distinct_counts"][fam] <= r["count"] <= out["counts"][fam], (res, out["counts"])


# ---- resolution_delay -------------------------------------------------------------------


@needs_ns
def test_resolution_delay_looks_up_each_family():
    # ::1 refuses, so 127.0.0.1 is reached only once the A answer is in: both records end.
    out = run(name="dual.test", accept=["127.0.0.1"], kw={"resolution_delay": 0.05})
    assert out["ok"] is True, out
    port = out["port"]
    trace = out["trace"]
    assert trace["type"] == "Trace"
    res = trace["resolutions"]
    check_resolutions(res, out)
    assert res[0]["count"] >= 1 and res[1]["count"] >= 1
    # The attempts start on the AAAA answer, or the Resolution Delay after the A answer.
    first = trace["attempts"][0]
    assert first["start"] >= min(res[0]["end"], res[1]["end"] + 0.05) - EPS, trace
    assert [(a["remote"], a["outcome"]) for a in trace["attempts"]] == [
        (v6("::1", port), "refused"), (v4("127.0.0.1", port), "won")]
    assert trace["attempts"][1]["start"] >= res[1]["end"] - EPS
    assert trace["winner"] == 1
    assert out["peername"] == v4("127.0.0.1", port)
    assert out["fd_delta"] == 0


@needs_ns
def test_without_resolution_delay_one_lookup_of_both():
    out = run(name="dual.test", accept=["::1", "127.0.0.1"])
    assert out["ok"] is True, out
    res = out["trace"]["resolutions"]
    assert len(res) == 1 and res[0]["family"] == UNSPEC, res
    assert res[0]["count"] == 2 and res[0]["end"] is not None and res[0]["errno"] is None


@needs_ns
def test_resolution_delay_trace_on_a_failure():
    out = run(name="dual.test", kw={"resolution_delay": 0.05})  # nothing listens
    assert out["ok"] is False
    port = out["port"]
    exc = out["exc"]
    assert exc["type"] == "OSError" and exc["errno"] is None
    assert exc["str"] == (f"Multiple exceptions: [Errno 111] Connect call failed ('::1', {port}, 0, 0), "
                          f"[Errno 111] Connect call failed ('127.0.0.1', {port})")
    trace = exc["attempts"]
    check_resolutions(trace["resolutions"], out)
    # One attempt per address: the A lookup's repeated 127.0.0.1 is tried once.
    assert [(a["remote"], a["outcome"], a["errno"]) for a in trace["attempts"]] == [
        (v6("::1", port), "refused", 111), (v4("127.0.0.1", port), "refused", 111)]
    assert trace["attempts"][0]["error"] == f"[Errno 111] Connect call failed ('::1', {port}, 0, 0)"
    assert trace["winner"] is None
    assert out["fd_delta"] == 0


@needs_ns
def test_resolution_delay_lookup_errors_are_in_the_trace():
    out = run(name="nowhere.test", kw={"resolution_delay": 0.05})
    exc = out["exc"]
    assert exc["type"] == "gaierror" and exc["errno"] == socket.EAI_NONAME
    assert exc["str"] == "[Errno -2] Name or service not known"
    trace = exc["attempts"]
    assert trace["attempts"] == []
    assert [(r["family"], r["count"], r["errno"], r["error"]) for r in trace["resolutions"]] == [
        (V6, 0, socket.EAI_NONAME, "[Errno -2] Name or service not known"),
        (V4, 0, socket.EAI_NONAME, "[Errno -2] Name or service not known")]


@needs_ns
def test_late_aaaa_joins_the_race():
    # A at once, AAAA after 600 ms: the race starts with 127.0.0.1 (which hangs) once the
    # Resolution Delay is over, and ::1 joins when its answer comes.
    out = run(name="a0q600-late6.slow.test", dns=True, expect_counts=False, hang=["127.0.0.1"], accept=["::1"],
              kw={"resolution_delay": 0.05, "happy_eyeballs_delay": 0.1})
    assert out["ok"] is True, out
    port = out["port"]
    trace = out["trace"]
    r6, r4 = trace["resolutions"]
    assert (r6["family"], r4["family"]) == (V6, V4)
    assert r4["end"] < r6["end"] and r6["end"] >= 0.6, trace
    a0, a1 = trace["attempts"]
    assert (a0["remote"], a0["outcome"]) == (v4("127.0.0.1", port), "cancelled")
    assert r4["end"] + 0.05 - EPS <= a0["start"] < r6["end"], trace
    assert (a1["remote"], a1["outcome"]) == (v6("::1", port), "won")
    assert a1["start"] >= max(r6["end"], a0["start"] + 0.1) - EPS, trace
    assert trace["winner"] == 1
    assert out["peername"] == v6("::1", port)
    assert out["fd_delta"] == 0


@needs_ns
def test_late_a_joins_the_race():
    # AAAA at once: the race starts on it (::1 hangs); 127.0.0.1 comes 600 ms later.
    out = run(name="a600q0-late4.slow.test", dns=True, expect_counts=False, hang=["::1"], accept=["127.0.0.1"],
              kw={"resolution_delay": 0.05, "happy_eyeballs_delay": 0.1})
    assert out["ok"] is True, out
    port = out["port"]
    trace = out["trace"]
    r6, r4 = trace["resolutions"]
    assert r6["end"] < r4["end"] and r4["end"] >= 0.6, trace
    a0, a1 = trace["attempts"]
    assert (a0["remote"], a0["outcome"]) == (v6("::1", port), "cancelled")
    assert r6["end"] - EPS <= a0["start"] < r4["end"], trace
    assert (a1["remote"], a1["outcome"]) == (v4("127.0.0.1", port), "won")
    assert a1["start"] >= r4["end"] - EPS
    assert out["peername"] == v4("127.0.0.1", port)


@needs_ns
def test_a_lookup_still_running_when_the_connection_is_made():
    out = run(name="a0q700-slow6.slow.test", dns=True, expect_counts=False, accept=["127.0.0.1"],
              kw={"resolution_delay": 0.05})
    assert out["ok"] is True, out
    r6, r4 = out["trace"]["resolutions"]
    assert (r6["family"], r6["end"], r6["count"], r6["errno"]) == (V6, None, 0, None)
    assert r4["end"] is not None and r4["count"] == 1
    a0, = out["trace"]["attempts"]
    assert a0["outcome"] == "won" and a0["start"] >= r4["end"] + 0.05 - EPS
    assert out["fd_delta"] == 0  # the AAAA lookup's socket closes when its answer comes


# ---- the Happy Eyeballs trace -----------------------------------------------------------


@pytest.mark.parametrize("kw", [{"happy_eyeballs_delay": DELAY},
                                {"happy_eyeballs_delay": DELAY, "resolution_delay": 0.05}],
                         ids=["getaddrinfo", "resolution_delay"])
@needs_ns
def test_fallback_trace(kw):
    out = run(name="dual.test", hang=["::1"], accept=["127.0.0.1"], kw=kw)
    assert out["ok"] is True, out
    port = out["port"]
    trace = out["trace"]
    a0, a1 = trace["attempts"]
    assert (a0["remote"], a0["outcome"], a0["errno"], a0["error"], a0["local"]) == (
        v6("::1", port), "cancelled", None, None, None)
    assert (a1["remote"], a1["outcome"], a1["errno"]) == (v4("127.0.0.1", port), "won", None)
    assert a1["local"] == out["sockname"]
    assert trace["winner"] == 1
    # The second attempt starts the delay after the first (loose upper bound: a loaded machine).
    assert DELAY - EPS <= a1["start"] - a0["start"] < DELAY + 2.0, trace
    assert 0 <= a0["start"] <= a0["end"] and a1["start"] <= a1["end"]
    assert a0["end"] >= a1["end"] - EPS  # ::1 was cancelled because 127.0.0.1 won
    assert out["peername"] == v4("127.0.0.1", port)
    assert out["accepted"] == 1 and out["fd_delta"] == 0


# ---- attempt_timeout ----------------------------------------------------------------------


@needs_ns
def test_attempt_timeout_moves_on_without_happy_eyeballs():
    out = run(name="dual.test", hang=["::1"], accept=["127.0.0.1"], kw={"attempt_timeout": 0.3})
    assert out["ok"] is True, out
    port = out["port"]
    a0, a1 = out["trace"]["attempts"]
    assert (a0["remote"], a0["outcome"], a0["errno"]) == (v6("::1", port), "timed out", 110)
    assert a0["error"] == f"[Errno 110] Connect call failed ('::1', {port}, 0, 0)"
    assert 0.3 - EPS <= a0["end"] - a0["start"] < 2.3
    assert a1["start"] >= a0["end"] - EPS  # one at a time: the next starts when it times out
    assert (a1["remote"], a1["outcome"]) == (v4("127.0.0.1", port), "won")
    assert out["trace"]["winner"] == 1
    assert out["peername"] == v4("127.0.0.1", port)
    assert 0.3 <= out["elapsed"] < 2.5
    assert out["fd_delta"] == 0


@needs_ns
def test_attempt_timeout_is_not_the_happy_eyeballs_delay():
    # Both hang: the second attempt starts after the delay while the first keeps going
    # until its own timeout (Node merges the two; goconn keeps them apart).
    out = run(name="dual.test", hang=["::1", "127.0.0.1"], kw={"attempt_timeout": 0.5, "happy_eyeballs_delay": 0.1})
    assert out["ok"] is False
    port = out["port"]
    exc = out["exc"]
    assert exc["type"] == "OSError"
    assert exc["str"] == (f"Multiple exceptions: [Errno 110] Connect call failed ('::1', {port}, 0, 0), "
                          f"[Errno 110] Connect call failed ('127.0.0.1', {port})")
    a0, a1 = exc["attempts"]["attempts"]
    assert [a["outcome"] for a in (a0, a1)] == ["timed out", "timed out"]
    assert 0.1 - EPS <= a1["start"] - a0["start"] < 0.45, exc
    for a in (a0, a1):
        assert a["errno"] == 110 and 0.5 - EPS <= a["end"] - a["start"] < 2.5, a
    assert a0["end"] > a1["start"]
    assert out["fd_delta"] == 0


# ---- connect_timeout ---------------------------------------------------------------------


@needs_ns
def test_connect_timeout_while_an_attempt_hangs():
    out = run(name="dual.test", hang=["::1"], accept=["127.0.0.1"], kw={"connect_timeout": 0.5})
    assert out["ok"] is False
    exc = out["exc"]
    assert (exc["type"], exc["str"], exc["errno"]) == (
        "TimeoutError", "create_connection timed out after 0.5 seconds (connect_timeout)", None)
    # The trace tells why: the ::1 attempt was still hanging and was cancelled.
    a0, = exc["attempts"]["attempts"]
    assert (a0["remote"], a0["outcome"], a0["errno"]) == (v6("::1", out["port"]), "cancelled", None)
    assert a0["end"] >= 0.5 - EPS
    assert exc["attempts"]["winner"] is None
    assert 0.5 <= out["elapsed"] < 3.0
    assert out["accepted"] == 0  # without Happy Eyeballs 127.0.0.1 was never tried
    assert out["fd_delta"] == 0


@needs_ns
def test_connect_timeout_during_the_lookups():
    out = run(name="a-2q-2-never.slow.test", dns=True, expect_counts=False, kw={"resolution_delay": 0.05,
                                                                                   "connect_timeout": 0.3})
    exc = out["exc"]
    assert (exc["type"], exc["str"]) == ("TimeoutError", "create_connection timed out after 0.3 seconds (connect_timeout)")
    trace = exc["attempts"]
    assert trace["attempts"] == []
    assert [(r["family"], r["end"], r["count"]) for r in trace["resolutions"]] == [(V6, None, 0), (V4, None, 0)]
    assert 0.3 <= out["elapsed"] < 1.9  # not waited for: they would take 2 s (resolv.conf timeout:2)


async def test_connect_timeout_spares_an_established_connection():
    with Peer() as peer:
        tr, pr = await goconn.create_connection(asyncio.Protocol, "127.0.0.1", peer.port, connect_timeout=0.2)
        conn = await peer.accept()
        await asyncio.sleep(0.4)
        assert not tr.is_closing()
        tr.write(b"still here")
        loop = asyncio.get_running_loop()
        assert await asyncio.wait_for(loop.sock_recv(conn, 100), 5) == b"still here"
        tr.close()


# ---- addr_infos ---------------------------------------------------------------------------


@needs_ns
def test_addr_infos_are_used_without_a_lookup():
    out = run(name=None, hang=["::1"], accept=["127.0.0.1"], addr_infos=[["::1", None, 0, 0], "127.0.0.1"],
              kw={"happy_eyeballs_delay": 0.1})
    assert out["ok"] is True, out
    port = out["port"]
    trace = out["trace"]
    assert trace["resolutions"] == []
    assert [(a["remote"], a["outcome"]) for a in trace["attempts"]] == [
        (v6("::1", port), "cancelled"), (v4("127.0.0.1", port), "won")]
    assert trace["attempts"][1]["start"] - trace["attempts"][0]["start"] >= 0.1 - EPS
    assert out["peername"] == v4("127.0.0.1", port)
    assert out["fd_delta"] == 0


@pytest.mark.parametrize("interleave,order", [
    (None, ["::1", "127.0.0.2"]),             # happy_eyeballs_delay implies interleave=1
    (0, ["::1", "::ffff:127.0.0.3"]),         # the order given
], ids=["interleave-1", "interleave-0"])
@needs_ns
def test_addr_infos_are_interleaved(interleave, order):
    kw = {"happy_eyeballs_delay": 0.1}
    if interleave is not None:
        kw["interleave"] = interleave
    # ::1 (a 4-tuple sockaddr) hangs; ::ffff:127.0.0.3 (a 2-tuple) and 127.0.0.2 accept.
    out = run(name=None, hang=["::1"], accept=["127.0.0.2", "127.0.0.3"], kw=kw,
              addr_infos=[["::1", None, 0, 0], "::ffff:127.0.0.3", "127.0.0.2"])
    assert out["ok"] is True, out
    trace = out["trace"]
    assert trace["resolutions"] == []
    assert [a["remote"][0] for a in trace["attempts"]] == order
    assert [a["outcome"] for a in trace["attempts"]] == ["cancelled", "won"]
    assert out["peername"][0] == order[1]
    assert out["accepted"] == 1


# ---- socket options -----------------------------------------------------------------------


@pytest.mark.parametrize("flag,local_addr,expected", [
    (True, ["127.0.0.1", 0], 1),
    (False, ["127.0.0.1", 0], 0),
    (True, None, 0),  # only with a local_addr of port 0
], ids=["flag-port0", "no-flag", "no-local-addr"])
@needs_ns
def test_bind_address_no_port(flag, local_addr, expected):
    kw = {"bind_address_no_port": flag}
    if local_addr is not None:
        kw["local_addr"] = local_addr
    out = run(name="dual.test", accept=["127.0.0.1"], kw=kw, sockopts=["IP_BIND_ADDRESS_NO_PORT"])
    assert out["ok"] is True, out
    assert out["sockopts"]["IP_BIND_ADDRESS_NO_PORT"] == expected
    assert out["peername"] == v4("127.0.0.1", out["port"])
    assert out["sockname"][0] == "127.0.0.1" and out["sockname"][1] != 0
    won = out["trace"]["attempts"][out["trace"]["winner"]]
    assert won["local"] == out["sockname"]


KEEPALIVE_OPTS = ["SO_KEEPALIVE", "TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT"]


@pytest.mark.parametrize("keepalive,expected", [
    (None, {"SO_KEEPALIVE": 0}),  # asyncio's: off
    (True, {"SO_KEEPALIVE": 1}),  # the system's settings
    ({"idle": 30, "interval": 5, "count": 3}, {"SO_KEEPALIVE": 1, "TCP_KEEPIDLE": 30, "TCP_KEEPINTVL": 5, "TCP_KEEPCNT": 3}),
    ({"idle": 45}, {"SO_KEEPALIVE": 1, "TCP_KEEPIDLE": 45}),
], ids=["off", "true", "settings", "idle-only"])
@needs_ns
def test_keepalive(keepalive, expected):
    kw = {"happy_eyeballs_delay": 0.05, "resolution_delay": 0.05}
    if keepalive is not None:
        kw["keepalive"] = keepalive
    out = run(name="dual.test", hang=["::1"], accept=["127.0.0.1"], kw=kw, sockopts=KEEPALIVE_OPTS)
    assert out["ok"] is True, out
    want = dict(out["fresh_sockopts"], **expected)  # unset ones keep the system's values
    assert out["sockopts"] == want, out


# ---- ExceptionGroup members ------------------------------------------------------------


@pytest.mark.parametrize("kw,errno_,outcome", [
    ({}, 111, "refused"),
    ({"resolution_delay": 0.05}, 111, "refused"),
    ({"attempt_timeout": 0.2}, 110, "timed out"),
], ids=["refused", "resolution_delay", "attempt_timeout"])
@needs_ns
def test_all_errors_members_carry_the_trace(kw, errno_, outcome):
    hang = ["::1", "127.0.0.1"] if errno_ == 110 else []
    out = run(name="dual.test", hang=hang, kw=dict(kw, all_errors=True))
    port = out["port"]
    exc = out["exc"]
    assert (exc["type"], exc["message"]) == ("ExceptionGroup", "create_connection failed")
    cls = "ConnectionRefusedError" if errno_ == 111 else "TimeoutError"
    assert [(m["type"], m["errno"], m["str"]) for m in exc["members"]] == [
        (cls, errno_, f"[Errno {errno_}] Connect call failed ('::1', {port}, 0, 0)"),
        (cls, errno_, f"[Errno {errno_}] Connect call failed ('127.0.0.1', {port})")]
    for m in exc["members"]:
        assert m["same_trace"] is True
        assert m["attempts"] == exc["attempts"]
    trace = exc["attempts"]
    assert [(a["outcome"], a["errno"]) for a in trace["attempts"]] == [(outcome, errno_)] * 2
    assert len(trace["resolutions"]) == (2 if "resolution_delay" in kw else 1)
    assert out["fd_delta"] == 0


# ---- the CLI -------------------------------------------------------------------------------

LINE = re.compile(r"^\s+(?:\+\s*(\d+\.\d) ms)?\s+(\S.*)$")


def timeline(stderr: str) -> list:
    """(milliseconds, text) of each timeline line of `python3 -m goconn --trace`."""
    out = []
    for ln in stderr.splitlines():
        m = LINE.match(ln)
        if m and ln.startswith("  "):
            out.append((float(m.group(1)) if m.group(1) else math.inf, m.group(2)))
    return out


def find(lines, pattern):
    hits = [(t, text) for t, text in lines if re.search(pattern, text)]
    assert len(hits) == 1, (pattern, lines)
    return hits[0][0]


@needs_ns
def test_cli_trace_prints_lookups_and_attempts():
    out = run_in_namespace(HOSTS, "cli", "goconn", name="dual.test", hang=["::1"], accept=["127.0.0.1"],
                           args=["--happy-eyeballs-delay", "0.25", "--resolution-delay", "0.05", "--trace"])
    assert out["rc"] == 0, out
    assert out["stdout"] == "hello\n"
    port = out["port"]
    lines = timeline(out["stderr"])
    times = [t for t, _ in lines]
    assert times == sorted(times), out["stderr"]
    lookups = [(t, text) for t, text in lines if "lookup" in text]
    assert len(lookups) == 4, out["stderr"]  # AAAA and A, each started and ended
    assert any(re.search(r"AAAA|IPv6|AF_INET6", text) for _, text in lookups), out["stderr"]
    assert any(re.search(r"\bA\b|IPv4|AF_INET\b", text) for _, text in lookups), out["stderr"]
    s1 = find(lines, rf"^attempt 1 to \('::1', {port}, 0, 0\) started$")
    s2 = find(lines, rf"^attempt 2 to \('127\.0\.0\.1', {port}\) started$")
    find(lines, rf"^attempt 2 to \('127\.0\.0\.1', {port}\) won")
    find(lines, rf"^attempt 1 to \('::1', {port}, 0, 0\) cancelled$")
    # Every lookup started first; ::1 is tried once the AAAA answer is in (the A answer may
    # come after the attempts began).
    assert max(t for t, text in lookups if "started" in text) <= s1, out["stderr"]
    v6_lookup = [t for t, text in lookups if re.search(r"AAAA|IPv6|AF_INET6", text)]
    assert len(v6_lookup) == 2 and max(v6_lookup) <= s1, out["stderr"]
    assert 250 - 0.2 <= s2 - s1 < 2250, out["stderr"]
    assert f"connected to ('127.0.0.1', {port})" in out["stderr"]


@needs_ns
def test_cli_trace_of_a_failure():
    out = run_in_namespace(HOSTS, "cli", "goconn", name="dual.test", args=["--resolution-delay", "0.05", "--trace"])
    assert out["rc"] == 1, out
    port = out["port"]
    lines = timeline(out["stderr"])
    assert len([1 for _, text in lines if "lookup" in text]) == 4, out["stderr"]
    find(lines, rf"^attempt 1 to \('::1', {port}, 0, 0\) refused: \[Errno 111\]")
    find(lines, rf"^attempt 2 to \('127\.0\.0\.1', {port}\) refused: \[Errno 111\]")
    assert "goconn: OSError: Multiple exceptions: [Errno 111]" in out["stderr"]


# ---- the trace objects, and argument errors ---------------------------------------------


async def test_trace_types():
    with Peer() as peer:
        tr, _ = await goconn.create_connection(asyncio.Protocol, "127.0.0.1", peer.port, resolution_delay=0.05)
        try:
            trace = tr.get_extra_info("attempts")
            assert isinstance(trace, goconn.Trace) and isinstance(trace, list)
            assert all(isinstance(a, goconn.Attempt) for a in trace)
            assert all(isinstance(r, goconn.Resolution) for r in trace.resolutions)
            assert trace.winner == 0 and trace[0].outcome == "won"
            assert trace[0].remote == ("127.0.0.1", peer.port)
            assert trace[0].local == tr.get_extra_info("sockname")
        finally:
            tr.close()


async def test_trace_read_only_after_connection_lost():
    # The library frees its copy of the trace when connection_lost returns; the
    # transport keeps its own (error texts included), built only when asked for.
    refused = socket.socket()
    refused.bind(("127.0.0.1", 0))
    refused_port = refused.getsockname()[1]
    refused.close()  # nothing listens there now
    with Peer() as peer:
        infos = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", refused_port)),
                 (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", peer.port))]
        made = []
        for read_before in (True, False):
            lost = asyncio.get_running_loop().create_future()

            class Proto(asyncio.Protocol):
                def connection_lost(self, exc):
                    lost.set_result(None)

            tr, _ = await goconn.create_connection(Proto, None, None, addr_infos=infos)
            before = list(tr.get_extra_info("attempts")) if read_before else None
            tr.close()
            await lost
            trace = tr.get_extra_info("attempts")
            assert [a.outcome for a in trace] == ["refused", "won"]
            assert trace[0].error == f"[Errno 111] Connect call failed ('127.0.0.1', {refused_port})"
            assert trace[0].errno == 111 and trace[1].error is None
            assert trace[1].remote == ("127.0.0.1", peer.port)
            assert len(trace.resolutions) == 0  # addr_infos: no lookup
            if before is not None:
                assert before == list(trace)
            made.append(trace)
        assert made[0][1].local != made[1][1].local  # two connections, two traces


ARG_ERRORS = [
    ({"attempt_timeout": 0}, ValueError, "attempt_timeout must be a positive number of seconds, got 0"),
    ({"attempt_timeout": -1}, ValueError, "attempt_timeout must be a positive number of seconds, got -1"),
    ({"attempt_timeout": -0.5}, ValueError, "attempt_timeout must be a positive number of seconds, got -0.5"),
    ({"attempt_timeout": math.nan}, ValueError, "attempt_timeout must be a positive number of seconds, got nan"),
    ({"connect_timeout": 0}, ValueError, "connect_timeout must be a positive number of seconds, got 0"),
    ({"connect_timeout": -2.5}, ValueError, "connect_timeout must be a positive number of seconds, got -2.5"),
    ({"resolution_delay": -1}, ValueError, "resolution_delay must be 0 or more seconds, got -1"),
    ({"resolution_delay": -0.01}, ValueError, "resolution_delay must be 0 or more seconds, got -0.01"),
    ({"keepalive": {"idle": -1}}, ValueError, "keepalive settings must not be negative"),
    ({"keepalive": {"interval": -5}}, ValueError, "keepalive settings must not be negative"),
    ({"keepalive": {"count": -3}}, ValueError, "keepalive settings must not be negative"),
    ({"host": None, "port": None, "addr_infos": []}, OSError, "getaddrinfo() returned empty list"),
    ({"host": None, "port": None, "addr_infos": [(socket.AF_UNIX, socket.SOCK_STREAM, 0, "", "/tmp/x")]},
     ValueError, "addr_infos must hold AF_INET or AF_INET6 addresses"),
    ({"host": None, "port": None, "addr_infos": [1]},
     TypeError, "addr_infos items must be (family, type, proto, canonname, sockaddr) tuples"),
]


@pytest.mark.parametrize("kw,exc_type,message", ARG_ERRORS,
                         ids=[f"{next(iter(k for k in kw if k not in ('host', 'port')))}-{i}"
                              for i, (kw, _, _) in enumerate(ARG_ERRORS)])
async def test_argument_errors(kw, exc_type, message):
    kw = dict(kw)
    host, port = kw.pop("host", "127.0.0.1"), kw.pop("port", 1)
    try:  # warm up the bridge so that the fd count below is stable
        await goconn.create_connection(asyncio.Protocol, "127.0.0.1", 1)
    except OSError:
        pass
    before, objects = fd_count(), len(_bridge._objects)
    handles = _ffi.bind().goconn_live_handles()
    with pytest.raises(exc_type) as info:
        await goconn.create_connection(asyncio.Protocol, host, port, **kw)
    assert str(info.value) == message
    assert type(info.value) is exc_type
    # Raised before anything started: no socket, no request left behind.
    assert fd_count() == before
    assert len(_bridge._objects) == objects
    assert _ffi.bind().goconn_live_handles() == handles


async def test_addr_infos_with_sock_is_refused():
    with socket.socket() as s:
        with pytest.raises(ValueError, match="^host/port and sock can not be specified at the same time$"):
            await goconn.create_connection(asyncio.Protocol, sock=s, addr_infos=[
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 1))])


async def test_resolution_delay_zero_is_allowed():
    with Peer() as peer:
        tr, _ = await goconn.create_connection(asyncio.Protocol, "localhost", peer.port, resolution_delay=0,
                                               family=socket.AF_INET)
        tr.close()
