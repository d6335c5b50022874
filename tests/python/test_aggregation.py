"""Spec section 5 (error aggregation) and section 3 (interleaving, seen through the order
of the aggregated errors).

The loopback-only cases use host=None (getaddrinfo gives ::1 then 127.0.0.1); the others
run in a private mount namespace with their own /etc/hosts (see ns_child.py)."""

import asyncio
import errno
import socket
import sys

import pytest

from _util import REFUSED_PORT, namespaces_available, run_in_namespace

P = asyncio.Protocol


def refused(host, port):
    addr = (host, port, 0, 0) if ":" in host else (host, port)
    return f"[Errno 111] Connect call failed {addr!r}"


def bind_in_use(port):
    return f"[Errno 98] error while attempting to bind on address ('127.0.0.1', {port}): address already in use"


NO_V6_LOCAL = "no matching local address with family=<AddressFamily.AF_INET6: 10> found"


# ---- loopback only -------------------------------------------------------------------


async def test_single_error_is_raised_as_is(connect):
    with pytest.raises(ConnectionRefusedError) as ei:
        await connect(P, "127.0.0.1", REFUSED_PORT)
    assert ei.value.args == (111, "Connect call failed ('127.0.0.1', 1)")


async def test_different_texts_give_multiple_exceptions(connect):
    with pytest.raises(OSError) as ei:
        await connect(P, None, REFUSED_PORT)
    e = ei.value
    assert type(e) is OSError
    assert e.errno is None and e.strerror is None
    assert str(e) == "Multiple exceptions: " + refused("::1", 1) + ", " + refused("127.0.0.1", 1)


async def test_bind_and_family_errors_mix_in(connect):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    port = busy.getsockname()[1]
    try:
        with pytest.raises(OSError) as ei:
            await connect(P, None, REFUSED_PORT, local_addr=("127.0.0.1", port))
        assert type(ei.value) is OSError
        assert ei.value.errno is None
        assert str(ei.value) == "Multiple exceptions: " + NO_V6_LOCAL + ", " + bind_in_use(port)
    finally:
        busy.close()


async def test_bind_errors_before_a_successful_bind_are_not_reported_on_success(connect):
    # ::1 has no IPv4 local address (an error for that attempt), 127.0.0.1 binds and connects.
    from _util import Peer, Recorder

    with Peer() as peer:
        tr, pr = await connect(Recorder, None, peer.port, local_addr=("127.0.0.1", 0))
        assert tr.get_extra_info("peername") == ("127.0.0.1", peer.port)
        tr.close()
        await pr.wait_lost()


async def test_family_error_and_connect_error_mix(connect):
    # ::1 has no IPv4 local address; 127.0.0.1 binds, then its connect is refused.
    with pytest.raises(OSError) as ei:
        await connect(P, None, REFUSED_PORT, local_addr=("localhost", 0))
    assert type(ei.value) is OSError
    assert str(ei.value) == "Multiple exceptions: " + NO_V6_LOCAL + ", " + refused("127.0.0.1", 1)


@pytest.mark.asyncio_lacks("all_errors is new in 3.12", until=(3, 12))
async def test_all_errors_group(connect):
    with pytest.raises(ExceptionGroup) as ei:
        await connect(P, None, REFUSED_PORT, all_errors=True)
    g = ei.value
    assert type(g) is ExceptionGroup
    assert g.message == "create_connection failed"
    assert str(g) == "create_connection failed (2 sub-exceptions)"
    assert [type(e) for e in g.exceptions] == [ConnectionRefusedError, ConnectionRefusedError]
    assert [str(e) for e in g.exceptions] == [refused("::1", 1), refused("127.0.0.1", 1)]
    assert [e.errno for e in g.exceptions] == [111, 111]


@pytest.mark.asyncio_lacks("all_errors is new in 3.12", until=(3, 12))
async def test_all_errors_single(connect):
    with pytest.raises(ExceptionGroup) as ei:
        await connect(P, "127.0.0.1", REFUSED_PORT, all_errors=True)
    g = ei.value
    assert str(g) == "create_connection failed (1 sub-exception)"
    assert len(g.exceptions) == 1
    assert type(g.exceptions[0]) is ConnectionRefusedError
    assert str(g.exceptions[0]) == refused("127.0.0.1", 1)


@pytest.mark.asyncio_lacks("all_errors is new in 3.12", until=(3, 12))
async def test_all_errors_with_bind_errors(connect):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    port = busy.getsockname()[1]
    try:
        with pytest.raises(ExceptionGroup) as ei:
            await connect(P, None, REFUSED_PORT, local_addr=("127.0.0.1", port), all_errors=True)
        members = ei.value.exceptions
        assert [type(e) for e in members] == [OSError, OSError]
        assert [str(e) for e in members] == [NO_V6_LOCAL, bind_in_use(port)]
        assert [e.errno for e in members] == [None, errno.EADDRINUSE]
    finally:
        busy.close()


@pytest.mark.asyncio_lacks("all_errors is new in 3.12", until=(3, 12))
async def test_all_errors_does_not_group_resolution_errors(connect):
    with pytest.raises(socket.gaierror):
        await connect(P, "nonexistent.invalid", REFUSED_PORT, all_errors=True)
    with pytest.raises(ValueError):
        await connect(P, "127.0.0.1", REFUSED_PORT, sock=socket.socket(), all_errors=True)


@pytest.mark.asyncio_lacks("all_errors is new in 3.12", until=(3, 12))
async def test_all_errors_false_is_the_default(connect):
    with pytest.raises(OSError) as ei:
        await connect(P, None, REFUSED_PORT, all_errors=False)
    assert not isinstance(ei.value, BaseExceptionGroup)
    assert str(ei.value).startswith("Multiple exceptions: ")


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="checks asyncio 3.11's signature")
async def test_all_errors_is_not_an_asyncio_311_argument(connect):
    # Documents why the all_errors cases skip asyncio here; goconn has it on every version.
    if connect.is_asyncio:
        with pytest.raises(TypeError):
            await connect(P, "127.0.0.1", REFUSED_PORT, all_errors=True)
    else:
        with pytest.raises(ExceptionGroup):
            await connect(P, "127.0.0.1", REFUSED_PORT, all_errors=True)


# ---- in a private mount namespace -------------------------------------------------------

HOSTS = """\
127.0.0.1 localhost
::1 multi.test
127.0.0.1 multi.test
127.0.0.2 multi.test
::ffff:127.0.0.3 multi.test
127.0.0.1 same.test
127.0.0.1 same.test
127.0.0.1 two4.test
127.0.0.2 two4.test
"""

ns = pytest.mark.skipif(namespaces_available() is not None, reason=str(namespaces_available()))


@ns
def test_namespace_resolution():
    # The scenario itself: the name resolves to these addresses, in this order.
    out = run_in_namespace(HOSTS, "resolve", "asyncio", name="multi.test")
    assert out["addrs"] == ["::1", "127.0.0.1", "127.0.0.2", "::ffff:127.0.0.3"]


@ns
def test_identical_texts_give_the_first_error(connect):
    out = run_in_namespace(HOSTS, "connect", connect.name, name="same.test")
    assert out["ok"] is False
    assert out["exc"] == {"type": "ConnectionRefusedError", "str": refused("127.0.0.1", out["port"]), "errno": 111}
    assert out["fd_delta"] == 0


@ns
def test_identical_bind_errors_give_the_first_error(connect):
    out = run_in_namespace(HOSTS, "connect", connect.name, name="two4.test", busy_local=True)
    assert out["exc"] == {"type": "OSError", "str": bind_in_use(out["local_port"]), "errno": 98}


@ns
def test_local_addresses_are_tried_in_order(connect):
    # local two4.test: 127.0.0.1 (its port is taken) then 127.0.0.2; the first bind error is
    # kept in the attempt's list and shows up because the connect then fails too.
    out = run_in_namespace(HOSTS, "connect", connect.name, name="127.0.0.1", busy_local=True, local_host="two4.test")
    assert out["exc"] == {
        "type": "OSError",
        "str": f"Multiple exceptions: {bind_in_use(out['local_port'])}, {refused('127.0.0.1', out['port'])}",
        "errno": None,
    }


@ns
def test_local_bind_error_not_reported_when_the_connect_works(connect):
    out = run_in_namespace(HOSTS, "connect", connect.name, name="127.0.0.1", accept=["127.0.0.1"],
                           busy_local=True, local_host="two4.test")
    assert out["ok"] is True, out
    assert out["sockname"] == ["127.0.0.2", out["local_port"]]


@ns
def test_two_ipv4_refusals_give_multiple_exceptions(connect):
    out = run_in_namespace(HOSTS, "connect", connect.name, name="two4.test")
    port = out["port"]
    assert out["exc"] == {
        "type": "OSError",
        "str": f"Multiple exceptions: {refused('127.0.0.1', port)}, {refused('127.0.0.2', port)}",
        "errno": None,
    }


def _order(port, hosts):
    return "Multiple exceptions: " + ", ".join(refused(h, port) for h in hosts)


ORIGINAL = ["::1", "127.0.0.1", "127.0.0.2", "::ffff:127.0.0.3"]
INTERLEAVE_1 = ["::1", "127.0.0.1", "::ffff:127.0.0.3", "127.0.0.2"]
INTERLEAVE_2 = ["::1", "::ffff:127.0.0.3", "127.0.0.1", "127.0.0.2"]


@ns
@pytest.mark.parametrize("kw,order", [
    ({}, ORIGINAL),
    ({"interleave": 0}, ORIGINAL),
    ({"interleave": 1}, INTERLEAVE_1),
    ({"interleave": True}, INTERLEAVE_1),
    ({"interleave": -3}, INTERLEAVE_1),
    ({"interleave": 2}, INTERLEAVE_2),
    ({"interleave": 5}, INTERLEAVE_2),  # larger than the first group: that whole group first
    ({"happy_eyeballs_delay": 0.25}, INTERLEAVE_1),
    ({"happy_eyeballs_delay": 0.25, "interleave": 0}, ORIGINAL),
    ({"happy_eyeballs_delay": 0.25, "interleave": 2}, INTERLEAVE_2),
], ids=["none", "i0", "i1", "iTrue", "i-3", "i2", "i5", "he", "he-i0", "he-i2"])
def test_interleave_order(connect, kw, order):
    out = run_in_namespace(HOSTS, "connect", connect.name, name="multi.test", kw=kw)
    assert out["exc"]["type"] == "OSError"
    assert out["exc"]["str"] == _order(out["port"], order)
    assert out["fd_delta"] == 0
    if "happy_eyeballs_delay" in kw:
        # Immediate failures run back to back: no delay is waited for.
        assert out["elapsed"] < 0.2


@ns
@pytest.mark.asyncio_lacks("all_errors is new in 3.12", until=(3, 12))
def test_all_errors_members_in_attempt_order(connect):
    out = run_in_namespace(HOSTS, "connect", connect.name, name="multi.test",
                           kw={"interleave": 1, "all_errors": True})
    exc = out["exc"]
    assert exc["type"] == "ExceptionGroup"
    assert exc["message"] == "create_connection failed"
    assert exc["str"] == "create_connection failed (4 sub-exceptions)"
    assert [m["str"] for m in exc["members"]] == [refused(h, out["port"]) for h in INTERLEAVE_1]
    assert {m["type"] for m in exc["members"]} == {"ConnectionRefusedError"}
