"""Spec section 10 (and 9.2): cancellation and timeouts at each stage, and what is cleaned up.
(Cancellation during happy eyeballs is in test_happy_eyeballs.py.)"""

import asyncio
import socket
import time

import pytest

from _util import Hanging, Peer, Recorder, fd_count, recv_until_eof, settle_fds, spin, warm_up


class Factory:
    def __init__(self, cls=Recorder):
        self.cls = cls
        self.made = []

    def __call__(self):
        p = self.cls()
        self.made.append(p)
        return p


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_cancel_at_once(connect, host):
    await warm_up(connect)
    base = fd_count()
    f = Factory()
    with Peer() as peer:
        task = asyncio.ensure_future(connect(f, host, peer.port))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.1)
        assert f.made == []
    assert await settle_fds(base) == base


@pytest.mark.parametrize("iterations", [1, 2, 3])
async def test_cancel_during_resolution(connect, iterations):
    # A named host is resolved off the loop; cancel while that is under way.
    await warm_up(connect)
    await asyncio.get_running_loop().getaddrinfo("localhost", 1)  # the executor exists
    f = Factory()
    with Hanging() as h:
        base = fd_count()
        task = asyncio.ensure_future(connect(f, "localhost", h.port))
        await spin(iterations)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert f.made == []
        assert await settle_fds(base) == base


async def test_timeout_during_a_hanging_connect(connect):
    await warm_up(connect)
    f = Factory()
    with Hanging() as h:
        base = fd_count()
        t0 = time.monotonic()
        with pytest.raises(TimeoutError) as ei:
            await asyncio.wait_for(connect(f, "127.0.0.1", h.port), 0.3)
        assert type(ei.value) is TimeoutError
        assert time.monotonic() - t0 >= 0.25
        assert f.made == []
        assert await settle_fds(base) == base  # the attempt socket is closed
    # the loop and the connector still work
    with Peer() as peer:
        tr, pr = await connect(Recorder, "127.0.0.1", peer.port)
        tr.close()
        await pr.wait_lost()


async def test_task_cancel_during_a_hanging_connect(connect):
    await warm_up(connect)
    with Hanging() as h:
        base = fd_count()
        task = asyncio.ensure_future(connect(Factory(), "127.0.0.1", h.port))
        await asyncio.sleep(0.2)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await settle_fds(base) == base


async def test_timeout_with_local_addr(connect):
    await warm_up(connect)
    with Hanging() as h:
        base = fd_count()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(connect(Factory(), "127.0.0.1", h.port, local_addr=("127.0.0.1", 0)), 0.3)
        assert await settle_fds(base) == base


async def test_cancel_from_connection_made(connect):
    # 9.2: the protocol sees connection_made, then connection_lost(None), and
    # create_connection raises CancelledError.
    await warm_up(connect)
    task = None

    class CancelOnMade(Recorder):
        def connection_made(self, transport):
            super().connection_made(transport)
            task.cancel()

    f = Factory(CancelOnMade)
    with Peer() as peer:
        base = fd_count()
        task = asyncio.ensure_future(connect(f, "127.0.0.1", peer.port))
        with pytest.raises(asyncio.CancelledError):
            await task
        assert len(f.made) == 1
        pr = f.made[0]
        assert await pr.wait_lost() is None
        assert pr.kinds() == ["made", "lost"]
        conn = await peer.accept()
        assert await recv_until_eof(conn) == b""
        conn.close()
        peer.conns.remove(conn)
        assert await settle_fds(base) == base


async def test_cancel_with_sock_before_it_starts(connect):
    with Peer() as peer:
        s = socket.create_connection(peer.addr)
        try:
            task = asyncio.ensure_future(connect(Factory(), sock=s))
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert s.fileno() != -1  # never adopted
            assert s.getblocking() is True
        finally:
            s.close()


async def test_cancel_with_sock_after_adoption(connect):
    # After one loop iteration the socket is adopted; cancelling then closes the transport:
    # made, then lost(None), and the user's socket is closed.
    f = Factory()
    with Peer() as peer:
        s = socket.create_connection(peer.addr)
        conn = await peer.accept()
        task = asyncio.ensure_future(connect(f, sock=s))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert len(f.made) == 1, "the socket was not adopted within the first step"
        pr = f.made[0]
        assert await pr.wait_lost() is None
        assert pr.kinds() == ["made", "lost"]
        assert s.fileno() == -1
        assert await recv_until_eof(conn) == b""


async def test_many_timeouts_leak_nothing(connect):
    await warm_up(connect)
    with Hanging() as h:
        base = fd_count()
        for _ in range(10):
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(connect(Factory(), "127.0.0.1", h.port), 0.02)
        assert await settle_fds(base) == base
