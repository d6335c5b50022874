"""Spec section 1: argument validation, in asyncio's order and words."""

import asyncio
import socket
import ssl

import pytest

from _util import REFUSED_PORT, Recorder, echo_server

P = asyncio.Protocol


async def test_nothing_is_checked_until_awaited(connect):
    import goconn

    fn = goconn.create_connection if connect.is_goconn else asyncio.get_running_loop().create_connection
    coro = fn(P, "127.0.0.1", REFUSED_PORT, server_hostname="x")  # invalid, but not awaited yet
    assert asyncio.iscoroutine(coro)
    with pytest.raises(ValueError):
        await coro


# 1.1 server_hostname without ssl
@pytest.mark.parametrize("kw", [
    dict(server_hostname="x"),
    dict(server_hostname=""),
    dict(server_hostname="x", ssl=False),
    dict(server_hostname="x", ssl=None),
])
async def test_server_hostname_without_ssl(connect, kw):
    with pytest.raises(ValueError) as ei:
        await connect(P, "127.0.0.1", REFUSED_PORT, **kw)
    assert str(ei.value) == "server_hostname is only meaningful with ssl"
    assert type(ei.value) is ValueError


# 1.2 ssl without a host and without server_hostname
@pytest.mark.parametrize("host,port", [(None, 443), ("", 443)])
async def test_ssl_without_host(connect, host, port):
    with pytest.raises(ValueError) as ei:
        await connect(P, host, port, ssl=True)
    assert str(ei.value) == "You must set server_hostname when using ssl without a host"


async def test_ssl_without_host_with_sock(connect):
    s = socket.socket()
    try:
        with pytest.raises(ValueError) as ei:
            await connect(P, sock=s, ssl=True)
        assert str(ei.value) == "You must set server_hostname when using ssl without a host"
        assert s.fileno() != -1  # untouched
    finally:
        s.close()


# 1.3 / 1.4 TLS timeouts without ssl
@pytest.mark.parametrize("ssl_arg", [None, False, 0, ""])
@pytest.mark.parametrize("name", ["ssl_handshake_timeout", "ssl_shutdown_timeout"])
async def test_ssl_timeouts_without_ssl(connect, name, ssl_arg):
    with pytest.raises(ValueError) as ei:
        await connect(P, "127.0.0.1", REFUSED_PORT, ssl=ssl_arg, **{name: 1.0})
    assert str(ei.value) == f"{name} is only meaningful with ssl"


async def test_ssl_timeout_bad_value_without_ssl_is_the_meaningful_error(connect):
    # The late positivity check (1.11) never runs without ssl.
    with pytest.raises(ValueError) as ei:
        await connect(P, "127.0.0.1", REFUSED_PORT, ssl_handshake_timeout=-1)
    assert str(ei.value) == "ssl_handshake_timeout is only meaningful with ssl"


# 1.5 SSLSocket
def _sslsock():
    ctx = ssl.create_default_context()
    return ctx.wrap_socket(socket.socket(), server_hostname="x", do_handshake_on_connect=False)


async def test_sslsocket_rejected(connect):
    s = _sslsock()
    try:
        with pytest.raises(TypeError) as ei:
            await connect(P, sock=s)
        assert str(ei.value) == "Socket cannot be of type SSLSocket"
    finally:
        s.close()


async def test_sslsocket_checked_before_host_port_and_sock(connect):
    s = _sslsock()
    try:
        with pytest.raises(TypeError) as ei:
            await connect(P, "127.0.0.1", REFUSED_PORT, sock=s)
        assert str(ei.value) == "Socket cannot be of type SSLSocket"
    finally:
        s.close()


# 1.7 host/port and sock
@pytest.mark.parametrize("host,port", [("127.0.0.1", 1), ("127.0.0.1", None), (None, 1), ("", None)])
async def test_host_port_and_sock(connect, host, port):
    s = socket.socket()
    try:
        with pytest.raises(ValueError) as ei:
            await connect(P, host, port, sock=s)
        assert str(ei.value) == "host/port and sock can not be specified at the same time"
        assert s.fileno() != -1
    finally:
        s.close()


# 1.8 neither host/port nor sock; a non-stream socket
async def test_nothing_to_connect_to(connect):
    with pytest.raises(ValueError) as ei:
        await connect(P)
    assert str(ei.value) == "host and port was not specified and no sock specified"


async def test_udp_socket_rejected(connect):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        expected = f"A Stream Socket was expected, got {s!r}"
        assert expected.startswith("A Stream Socket was expected, got <socket.socket fd=")
        assert "type=2" in expected
        with pytest.raises(ValueError) as ei:
            await connect(P, sock=s)
        assert str(ei.value) == expected
        assert s.fileno() != -1
    finally:
        s.close()


async def test_sock_without_type_attribute(connect):
    # "No other type check is made on sock": sock.type itself fails.
    with pytest.raises(AttributeError) as ei:
        await connect(P, sock=object())
    assert str(ei.value) == "'object' object has no attribute 'type'"


async def test_af_unix_stream_socket_accepted(connect):
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        tr, pr = await connect(Recorder, sock=a)
        assert tr.get_extra_info("peername") == ""
        assert tr.get_extra_info("sockname") == ""
        tr.write(b"over unix")
        loop = asyncio.get_running_loop()
        b.setblocking(False)
        assert await asyncio.wait_for(loop.sock_recv(b, 100), 5) == b"over unix"
        await loop.sock_sendall(b, b"back")
        assert await pr.wait_bytes(4) == b"back"
        tr.close()
        assert await pr.wait_lost() is None
        assert pr.kinds() == ["made", "data", "lost"]
    finally:
        a.close()
        b.close()


# 1.6 happy_eyeballs_delay is not validated
@pytest.mark.parametrize("delay", [-1, 0, 0.0])
async def test_happy_eyeballs_delay_not_validated(connect, delay):
    server, port = await echo_server()
    async with server:
        tr, pr = await connect(Recorder, "127.0.0.1", port, happy_eyeballs_delay=delay)
        tr.write(b"x")
        assert await pr.wait_bytes(1) == b"x"
        tr.close()
        await pr.wait_lost()


# 1.12 the order of the checks
@pytest.mark.parametrize("kw,exc_type,message", [
    # 1 before 3: the server_hostname error, not the timeout one.
    (dict(host="h", port=1, ssl_handshake_timeout=1, server_hostname="x"),
     ValueError, "server_hostname is only meaningful with ssl"),
    # 3 before 4
    (dict(host="h", port=1, ssl_handshake_timeout=1, ssl_shutdown_timeout=1),
     ValueError, "ssl_handshake_timeout is only meaningful with ssl"),
    # 1 before 7
    (dict(host="h", port=1, sock="SOCK", server_hostname="x"),
     ValueError, "server_hostname is only meaningful with ssl"),
    # 2 before 5: ssl without host is reported even for an SSLSocket
    (dict(sock="SSLSOCK", ssl=True), ValueError, "You must set server_hostname when using ssl without a host"),
    # 4 before 5
    (dict(sock="SSLSOCK", ssl_shutdown_timeout=1), ValueError, "ssl_shutdown_timeout is only meaningful with ssl"),
    # 5 before 7
    (dict(host="h", port=1, sock="SSLSOCK"), TypeError, "Socket cannot be of type SSLSocket"),
    # 7 before 8: a UDP socket with a host is the host/port error
    (dict(host="h", sock="UDP"), ValueError, "host/port and sock can not be specified at the same time"),
    # every check before resolution: no gaierror for an unresolvable name
    (dict(host="nonexistent.invalid", port=1, ssl_shutdown_timeout=5),
     ValueError, "ssl_shutdown_timeout is only meaningful with ssl"),
    (dict(host="nonexistent.invalid", port=1, sock="SOCK"),
     ValueError, "host/port and sock can not be specified at the same time"),
])
async def test_check_order(connect, kw, exc_type, message):
    made = []
    kw = dict(kw)
    if kw.get("sock") == "SOCK":
        kw["sock"] = s = socket.socket()
    elif kw.get("sock") == "SSLSOCK":
        kw["sock"] = s = _sslsock()
    elif kw.get("sock") == "UDP":
        kw["sock"] = s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    else:
        s = None
    try:
        with pytest.raises(exc_type) as ei:
            await connect(lambda: made.append(1) or P(), **kw)
        assert type(ei.value) is exc_type
        assert str(ei.value) == message
        assert made == []
    finally:
        if s is not None:
            s.close()


async def test_validation_does_not_touch_the_network(connect):
    # A hanging peer would make any connect attempt block; the ValueError comes at once.
    from _util import Hanging

    with Hanging() as h:
        with pytest.raises(ValueError):
            await asyncio.wait_for(
                connect(P, "127.0.0.1", h.port, ssl_handshake_timeout=1.0), 2
            )
