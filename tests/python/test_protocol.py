"""Spec section 9 (protocol contract) and 8.3/8.4: half-close, resets, BufferedProtocol,
and exceptions raised by protocol callbacks."""

import asyncio
import errno
import socket
import struct

import pytest

from conftest import normalise
from _util import (
    BufRecorder, Peer, Recorder, capture_handler, fd_count, open_conn, recv_exactly, recv_until_eof,
    settle_fds, warm_up,
)

LINGER0 = struct.pack("ii", 1, 0)


async def eof_or_reset(conn):
    """The peer sees the connection end (an RST when it had sent unread data)."""
    try:
        assert await recv_until_eof(conn) == b""
    except ConnectionResetError:
        pass


def reset(c):
    """Close the peer's end with an RST."""
    c.conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
    c.conn.close()
    c.peer.conns.remove(c.conn)


# ---- half-close ------------------------------------------------------------------------


async def test_eof_received_true_keeps_the_write_side_open(connect):
    c = await open_conn(connect, lambda: Recorder(eof_result=True))
    try:
        c.conn.shutdown(socket.SHUT_WR)
        await c.pr.until(lambda: "eof" in c.pr.kinds())
        await asyncio.sleep(0.1)
        assert c.pr.kinds() == ["made", "eof"]
        assert c.tr.is_closing() is False
        assert c.tr.is_reading() is True  # only looks at the flags (8.3.3)
        c.tr.write(b"after eof")
        assert await recv_exactly(c.conn, 9) == b"after eof"
        c.tr.close()
        assert await c.pr.wait_lost() is None
        assert await recv_until_eof(c.conn) == b""
        assert c.pr.kinds() == ["made", "eof", "lost"]
    finally:
        await c.close()


@pytest.mark.parametrize("result", [None, False, 0, ""])
async def test_eof_received_falsy_closes(connect, result):
    loop = asyncio.get_running_loop()
    c = await open_conn(connect, lambda: Recorder(eof_result=result))
    try:
        await loop.sock_sendall(c.conn, b"data")
        c.conn.shutdown(socket.SHUT_WR)
        assert await c.pr.wait_lost() is None
        assert c.pr.kinds() == ["made", "data", "eof", "lost"]
        assert bytes(c.pr.data) == b"data"
        assert c.tr.is_closing() is True
        assert await recv_until_eof(c.conn) == b""
    finally:
        await c.close()


async def test_default_protocol_eof_closes(connect):
    with Peer() as peer:
        tr, pr = await connect(asyncio.Protocol, "127.0.0.1", peer.port)
        conn = await peer.accept()
        conn.shutdown(socket.SHUT_WR)
        assert await recv_until_eof(conn) == b""
        assert tr.is_closing()


async def test_peer_reset_delivers_every_byte_first(connect):
    loop = asyncio.get_running_loop()
    calls = capture_handler(loop)
    c = await open_conn(connect)
    try:
        c.tr.pause_reading()
        payload = b"0123456789" * 1000
        await loop.sock_sendall(c.conn, payload)
        await asyncio.sleep(0.1)
        reset(c)
        await asyncio.sleep(0.1)
        c.tr.resume_reading()
        exc = await c.pr.wait_lost()
        assert bytes(c.pr.data) == payload
        assert type(exc) is ConnectionResetError
        assert exc.errno == errno.ECONNRESET
        assert str(exc) == "[Errno 104] Connection reset by peer"
        assert c.pr.kinds() == ["made", "data", "lost"]  # no eof_received
        assert calls == []  # an OSError is not reported to the handler
        assert c.tr.is_closing()
    finally:
        await c.close()


async def test_nothing_after_connection_lost(connect):
    loop = asyncio.get_running_loop()
    c = await open_conn(connect)
    try:
        await loop.sock_sendall(c.conn, b"x")
        await c.pr.wait_bytes(1)
        c.tr.abort()
        c.conn.shutdown(socket.SHUT_WR)
        await c.pr.wait_lost()
        await asyncio.sleep(0.1)
        assert c.pr.kinds() == ["made", "data", "lost"]
    finally:
        await c.close()


# ---- BufferedProtocol --------------------------------------------------------------------


async def test_buffered_protocol(connect):
    loop = asyncio.get_running_loop()
    c = await open_conn(connect, lambda: BufRecorder(16))
    try:
        payload = bytes(range(256)) * 400  # 100 KiB through a 16-byte buffer
        await loop.sock_sendall(c.conn, payload)
        await c.pr.wait_bytes(len(payload), timeout=20)
        assert bytes(c.pr.data) == payload
        assert set(c.pr.hints) == {-1}
        assert all(0 < e[1] <= 16 for e in c.pr.events if isinstance(e, tuple) and e[0] == "updated")
        c.tr.write(b"done")
        assert await recv_exactly(c.conn, 4) == b"done"
        c.conn.shutdown(socket.SHUT_WR)
        await c.pr.wait_lost()
        assert c.pr.events[-2:] == ["eof", ("lost", None)]
    finally:
        await c.close()


async def test_buffered_protocol_memoryview_buffer(connect):
    loop = asyncio.get_running_loop()

    class MV(BufRecorder):
        def get_buffer(self, sizehint):
            self.hints.append(sizehint)
            return memoryview(self.buf)[:8]

    c = await open_conn(connect, lambda: MV(64))
    try:
        await loop.sock_sendall(c.conn, b"abcdefghijklmnopqrst")
        await c.pr.wait_bytes(20)
        assert bytes(c.pr.data) == b"abcdefghijklmnopqrst"
    finally:
        await c.close()


class EmptyBuffer(BufRecorder):
    def get_buffer(self, sizehint):
        self.hints.append(sizehint)
        return bytearray()


async def test_get_buffer_empty(connect):
    loop = asyncio.get_running_loop()
    calls = capture_handler(loop)
    c = await open_conn(connect, EmptyBuffer)
    try:
        await loop.sock_sendall(c.conn, b"data")
        exc = await c.pr.wait_lost()
        assert type(exc) is RuntimeError
        assert str(exc) == "get_buffer() returned an empty buffer"
        assert len(calls) == 1
        ctx = calls[0]
        assert ctx["message"] == "Fatal error: protocol.get_buffer() call failed."
        assert ctx["exception"] is exc
        assert ctx["transport"] is c.tr
        assert ctx["protocol"] is c.pr
        assert c.pr.hints == [-1]
        await eof_or_reset(c.conn)
    finally:
        await c.close()


@pytest.mark.parametrize("where,message", [
    ("get_buffer", "Fatal error: protocol.get_buffer() call failed."),
    ("buffer_updated", "Fatal error: protocol.buffer_updated() call failed."),
])
async def test_buffered_callbacks_raise(connect, where, message):
    loop = asyncio.get_running_loop()
    calls = capture_handler(loop)
    boom = ZeroDivisionError(where)

    class Bad(BufRecorder):
        def get_buffer(self, sizehint):
            if where == "get_buffer":
                raise boom
            return super().get_buffer(sizehint)

        def buffer_updated(self, nbytes):
            super().buffer_updated(nbytes)
            if where == "buffer_updated":
                raise boom

    c = await open_conn(connect, Bad)
    try:
        await loop.sock_sendall(c.conn, b"data")
        exc = await c.pr.wait_lost()
        assert exc is boom
        assert [ctx["message"] for ctx in calls] == [message]
        assert calls[0]["exception"] is boom
        assert calls[0]["transport"] is c.tr
    finally:
        await c.close()


# ---- exceptions in Protocol callbacks ----------------------------------------------------


async def test_connection_made_raises(connect):
    loop = asyncio.get_running_loop()
    calls = capture_handler(loop)
    boom = ValueError("made boom")

    class Bad(Recorder):
        def connection_made(self, transport):
            super().connection_made(transport)
            raise boom

    with Peer() as peer:
        tr, pr = await connect(Bad, "127.0.0.1", peer.port)  # returns normally
        conn = await peer.accept()
        assert len(calls) == 1
        ctx = calls[0]
        assert ctx["exception"] is boom
        # The handle's repr shortens the transport's repr with reprlib: '<_SelectorSoc...'.
        assert normalise(ctx["message"]) == (
            "Exception in callback test_connection_made_raises.<locals>.Bad.connection_made("
            "<_SelectorSoc...e, bufsize=0>>)"
        )
        assert "handle" in ctx
        # the transport keeps running: reading starts and the later callbacks arrive
        assert not tr.is_closing()
        await loop.sock_sendall(conn, b"later")
        assert await pr.wait_bytes(5) == b"later"
        tr.write(b"out")
        assert await recv_exactly(conn, 3) == b"out"
        conn.shutdown(socket.SHUT_WR)
        await pr.wait_lost()
        assert pr.kinds() == ["made", "data", "eof", "lost"]
        assert len(calls) == 1


@pytest.mark.parametrize("exc_type", [ValueError, OSError])
async def test_data_received_raises(connect, exc_type):
    loop = asyncio.get_running_loop()
    calls = capture_handler(loop)
    boom = exc_type("data boom")

    class Bad(Recorder):
        def data_received(self, data):
            super().data_received(data)
            raise boom

    c = await open_conn(connect, Bad)
    try:
        await loop.sock_sendall(c.conn, b"data")
        exc = await c.pr.wait_lost()
        assert exc is boom
        assert c.pr.kinds() == ["made", "data", "lost"]
        if exc_type is OSError:
            assert calls == []  # OSErrors are only logged in debug mode
        else:
            assert len(calls) == 1
            ctx = calls[0]
            assert ctx["message"] == "Fatal error: protocol.data_received() call failed."
            assert ctx["exception"] is boom
            assert ctx["transport"] is c.tr
            assert ctx["protocol"] is c.pr
        assert c.tr.is_closing()
        assert await recv_until_eof(c.conn) == b""
    finally:
        await c.close()


async def test_eof_received_raises(connect):
    loop = asyncio.get_running_loop()
    calls = capture_handler(loop)
    boom = ValueError("eof boom")

    class Bad(Recorder):
        def eof_received(self):
            super().eof_received()
            raise boom

    c = await open_conn(connect, Bad)
    try:
        c.conn.shutdown(socket.SHUT_WR)
        exc = await c.pr.wait_lost()
        assert exc is boom
        assert c.pr.kinds() == ["made", "eof", "lost"]
        assert [ctx["message"] for ctx in calls] == ["Fatal error: protocol.eof_received() call failed."]
        assert calls[0]["exception"] is boom
        assert calls[0]["transport"] is c.tr
    finally:
        await c.close()


async def test_connection_lost_raises(connect):
    loop = asyncio.get_running_loop()
    await warm_up(connect)
    calls = capture_handler(loop)
    boom = ValueError("lost boom")

    class Bad(Recorder):
        def connection_lost(self, exc):
            super().connection_lost(exc)
            raise boom

    with Peer() as peer:
        base = fd_count()
        tr, pr = await connect(Bad, "127.0.0.1", peer.port)
        conn = await peer.accept()
        s = tr.get_extra_info("socket")
        tr.close()
        await pr.wait_lost()
        await asyncio.sleep(0.05)
        assert len(calls) == 1
        ctx = calls[0]
        assert ctx["exception"] is boom
        assert normalise(ctx["message"]) == "Exception in callback _SelectorSocketTransport._call_connection_lost(None)"
        # the socket is still closed
        assert await recv_until_eof(conn) == b""
        assert s.fileno() == -1
        conn.close()
        peer.conns.remove(conn)
        assert await settle_fds(base) == base


def test_system_exit_in_a_callback_is_not_swallowed(connect):
    # SystemExit raised by data_received escapes the event loop.
    loop = asyncio.new_event_loop()
    try:
        class Exit(Recorder):
            def data_received(self, data):
                raise SystemExit(3)

        peer = Peer()

        async def setup():
            tr, pr = await connect(Exit, "127.0.0.1", peer.port)
            conn = await peer.accept()
            return tr, conn

        async def send_and_wait(conn):
            await loop.sock_sendall(conn, b"x")
            await asyncio.sleep(2)

        tr, conn = loop.run_until_complete(setup())
        with pytest.raises(SystemExit) as ei:
            loop.run_until_complete(send_and_wait(conn))
        assert ei.value.code == 3
        tr.abort()
        loop.run_until_complete(asyncio.sleep(0.05))
        conn.close()
        peer.close()
    finally:
        loop.close()
