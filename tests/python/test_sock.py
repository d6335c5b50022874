"""Spec section 6 and 2.8: adopting a socket with sock=, socket options, ownership."""

import asyncio
import errno
import socket

import pytest

from _util import Peer, Recorder, capture_handler, fd_count, recv_exactly, recv_until_eof, settle_fds, warm_up

P = asyncio.Protocol


def nodelay(tr) -> int:
    return tr.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


async def connected_socket(peer, proto=0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, proto)
    s.settimeout(5)
    s.connect(peer.addr)
    conn = await peer.accept()
    return s, conn


async def test_connected_socket_works(connect):
    loop = asyncio.get_running_loop()
    with Peer() as peer:
        s, conn = await connected_socket(peer)
        assert s.getblocking()
        tr, pr = await connect(Recorder, sock=s)
        assert pr.kinds() == ["made"]
        assert pr.transport is tr
        assert tr.get_extra_info("peername") == peer.addr
        assert tr.get_extra_info("sockname") == s.getsockname()
        tr.write(b"hello")
        assert await recv_exactly(conn, 5) == b"hello"
        await loop.sock_sendall(conn, b"world")
        assert await pr.wait_bytes(5) == b"world"
        tr.close()
        assert await pr.wait_lost() is None
        assert await recv_until_eof(conn) == b""


async def test_sock_set_non_blocking(connect):
    with Peer() as peer:
        s, _ = await connected_socket(peer)
        assert s.getblocking() is True
        tr, pr = await connect(Recorder, sock=s)
        assert s.getblocking() is False
        assert s.gettimeout() == 0.0
        tr.close()
        await pr.wait_lost()


async def test_transport_close_closes_the_users_socket(connect):
    await warm_up(connect)
    with Peer() as peer:
        base = fd_count()
        s, conn = await connected_socket(peer)
        tr, pr = await connect(Recorder, sock=s)
        assert s.fileno() != -1
        tr.close()
        await pr.wait_lost()
        assert s.fileno() == -1
        assert await recv_until_eof(conn) == b""
        conn.close()
        peer.conns.remove(conn)
        assert await settle_fds(base) == base


async def test_transport_abort_closes_the_users_socket(connect):
    with Peer() as peer:
        s, conn = await connected_socket(peer)
        tr, pr = await connect(Recorder, sock=s)
        tr.abort()
        assert await pr.wait_lost() is None
        assert s.fileno() == -1


async def test_nodelay_not_set_for_proto_zero_socket(connect):
    with Peer() as peer:
        s, _ = await connected_socket(peer)
        assert s.proto == 0
        tr, pr = await connect(Recorder, sock=s)
        assert nodelay(tr) == 0
        tr.close()
        await pr.wait_lost()


async def test_nodelay_set_for_ipproto_tcp_socket(connect):
    with Peer() as peer:
        s, _ = await connected_socket(peer, proto=socket.IPPROTO_TCP)
        assert s.proto == socket.IPPROTO_TCP
        tr, pr = await connect(Recorder, sock=s)
        assert nodelay(tr) == 1
        tr.close()
        await pr.wait_lost()


@pytest.mark.parametrize("host,family", [("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)])
async def test_nodelay_set_on_host_port_sockets(connect, host, family):
    with Peer(host, family) as peer:
        tr, pr = await connect(Recorder, host, peer.port)
        assert nodelay(tr) == 1
        s = tr.get_extra_info("socket")
        assert s.proto == socket.IPPROTO_TCP
        assert s.family == family
        assert s.type == socket.SOCK_STREAM
        # No other option is set: no SO_REUSEADDR, no SO_KEEPALIVE (2.8.1).
        assert s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 0
        assert s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
        tr.close()
        await pr.wait_lost()


async def test_closed_socket(connect):
    s = socket.socket()
    s.close()
    with pytest.raises(OSError) as ei:
        await connect(P, sock=s)
    assert ei.value.errno == errno.EBADF
    assert str(ei.value) == "[Errno 9] Bad file descriptor"


async def test_unconnected_socket(connect):
    # 6.2: accepted; the first read fails with ENOTCONN right after connection_made.
    loop = asyncio.get_running_loop()
    calls = capture_handler(loop)
    s = socket.socket()
    tr, pr = await connect(Recorder, sock=s)
    assert tr.get_extra_info("peername") is None
    assert tr.get_extra_info("sockname") == ("0.0.0.0", 0)
    exc = await pr.wait_lost()
    assert pr.kinds() == ["made", "lost"]
    assert type(exc) is OSError
    assert exc.errno == errno.ENOTCONN
    assert str(exc) == "[Errno 107] Transport endpoint is not connected"
    assert calls == []  # an OSError is not reported (8.4.1)
    assert s.fileno() == -1
    assert tr.is_closing()


async def test_listening_socket(connect):
    # Known, deliberate departure (a): asyncio adopts a listening socket as if it were a
    # connection (connection_made, then nothing: it hangs); goconn refuses it up front with
    # a ValueError and leaves the socket alone.
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen()
    fd = lsock.fileno()
    try:
        if connect.is_goconn:
            with pytest.raises(ValueError) as ei:
                await connect(Recorder, sock=lsock)
            assert "listening socket" in str(ei.value)
            assert lsock.fileno() == fd
        else:
            tr, pr = await connect(Recorder, sock=lsock)
            await asyncio.sleep(0.1)
            assert pr.kinds() == ["made"]
            tr.close()
            await pr.wait_lost()
    finally:
        lsock.close()


async def test_factory_called_once_after_connect(connect):
    calls = []

    def factory():
        calls.append(1)
        return Recorder()

    with Peer() as peer:
        tr, pr = await connect(factory, "127.0.0.1", peer.port)
        assert calls == [1]
        tr.close()
        await pr.wait_lost()
    with pytest.raises(ConnectionRefusedError):
        await connect(factory, "127.0.0.1", 1)
    assert calls == [1]  # never called for a failed connect


async def test_factory_raises(connect):
    def factory():
        raise ZeroDivisionError("no protocol")

    with Peer() as peer:
        with pytest.raises(ZeroDivisionError) as ei:
            await connect(factory, "127.0.0.1", peer.port)
        assert str(ei.value) == "no protocol"


async def test_factory_raises_with_sock_leaves_the_socket_open(connect):
    # asyncio makes the user's socket non-blocking, calls the factory, and lets the
    # exception out: the socket is still the caller's, open.
    def factory():
        raise ZeroDivisionError("no protocol")

    with Peer() as peer:
        s, conn = await connected_socket(peer)
        try:
            with pytest.raises(ZeroDivisionError):
                await connect(factory, sock=s)
            assert s.fileno() != -1, "the caller's socket was closed after the factory failed"
            assert s.getblocking() is False
            s.setblocking(True)
            s.sendall(b"still mine")
            assert await recv_exactly(conn, 10) == b"still mine"
        finally:
            s.close()


async def test_factory_returning_none(connect):
    # asyncio builds the transport with protocol.connection_made: None has none.
    with Peer() as peer:
        with pytest.raises(AttributeError) as ei:
            await connect(lambda: None, "127.0.0.1", peer.port)
        assert str(ei.value) == "'NoneType' object has no attribute 'connection_made'"


async def test_failed_connect_closes_its_sockets(connect):
    await warm_up(connect)
    base = fd_count()
    for _ in range(5):
        with pytest.raises(ConnectionRefusedError):
            await connect(P, "127.0.0.1", 1)
    with pytest.raises(OSError):
        await connect(P, None, 1)
    assert await settle_fds(base) == base
