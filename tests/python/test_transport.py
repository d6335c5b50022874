"""Spec section 8: the transport's methods, their errors, and extra info (plain TCP)."""

import asyncio
import logging
import random
import re
import socket
from asyncio import trsock

import pytest

from conftest import normalise
from _util import CHUNK, Peer, Recorder, capture_handler, fill, open_conn, recv_exactly, recv_until_eof, spin

# ---- basics ------------------------------------------------------------------------------


async def test_transport_and_protocol(connect):
    c = await open_conn(connect)
    try:
        assert isinstance(c.tr, asyncio.Transport)
        assert isinstance(c.tr, asyncio.transports._FlowControlMixin)
        assert c.pr.transport is c.tr
        assert c.tr.get_protocol() is c.pr
        assert c.pr.kinds() == ["made"]
        assert type(c.tr).__name__ == connect.transport_class
    finally:
        await c.close()


async def test_repr(connect):
    c = await open_conn(connect)
    try:
        fd = c.tr.get_extra_info("socket").fileno()
        # departure (b): the class name differs
        name = "_SelectorSocketTransport"
        assert normalise(repr(c.tr)) == f"<{name} fd={fd} read=polling write=<idle, bufsize=0>>"
        c.tr.pause_reading()
        assert normalise(repr(c.tr)) == f"<{name} fd={fd} read=idle write=<idle, bufsize=0>>"
        c.tr.resume_reading()
        fill(c.tr)
        size = c.tr.get_write_buffer_size()
        assert normalise(repr(c.tr)) == f"<{name} fd={fd} read=polling write=<polling, bufsize={size}>>"
        c.tr.abort()
        assert normalise(repr(c.tr)) == f"<{name} closing fd={fd} read=idle write=<idle, bufsize=0>>"
        await c.pr.wait_lost()
        assert normalise(repr(c.tr)) == f"<{name} closed fd={fd}>"
    finally:
        await c.close()


async def test_data_both_ways(connect):
    loop = asyncio.get_running_loop()
    c = await open_conn(connect)
    try:
        c.tr.write(b"ping")
        assert await recv_exactly(c.conn, 4) == b"ping"
        await loop.sock_sendall(c.conn, b"pong")
        assert await c.pr.wait_bytes(4) == b"pong"
        assert all(type(e[1]) is bytes for e in c.pr.events if isinstance(e, tuple))
    finally:
        await c.close()


async def test_many_connections_and_many_small_writes(connect):
    from _util import echo_server

    server, port = await echo_server()
    async with server:
        async def one(i):
            tr, pr = await connect(Recorder, "127.0.0.1", port)
            expected = b"".join(b"%d:%d;" % (i, k) for k in range(2000))
            for k in range(2000):
                tr.write(b"%d:%d;" % (i, k))
            tr.write(bytes(range(256)) * 256)
            expected += bytes(range(256)) * 256
            assert await pr.wait_bytes(len(expected), timeout=20) == expected
            tr.close()
            assert await pr.wait_lost() is None
            return pr.kinds()

        results = await asyncio.gather(*(one(i) for i in range(20)))
        assert all(k == ["made", "data", "lost"] for k in results)


# ---- write -------------------------------------------------------------------------------


@pytest.mark.parametrize("data,name", [("str", "str"), (None, "NoneType"), (1, "int"), ([b"x"], "list")])
async def test_write_type_errors(connect, data, name):
    c = await open_conn(connect)
    try:
        with pytest.raises(TypeError) as ei:
            c.tr.write(data)
        assert str(ei.value) == f"data argument must be a bytes-like object, not {name!r}"
    finally:
        await c.close()


async def test_write_bytes_like(connect):
    import array

    c = await open_conn(connect)
    try:
        c.tr.write(bytearray(b"ab"))
        c.tr.write(memoryview(b"cd"))
        c.tr.write(memoryview(b"xxefxx")[2:4])
        c.tr.write(b"")
        c.tr.write(bytearray())
        arr = array.array("i", [1])
        c.tr.write(memoryview(arr))
        ba = bytearray(b"gh")
        c.tr.write(ba)
        ba.extend(b"ij")  # write() keeps no export of the caller's buffer
        assert await recv_exactly(c.conn, 8 + arr.itemsize) == b"abcdef" + arr.tobytes() + b"gh"
    finally:
        await c.close()


async def test_write_copies_the_data(connect):
    # 3.11: the buffer is a bytearray, so mutating the caller's object afterwards is safe.
    c = await open_conn(connect)
    try:
        n = fill(c.tr)
        data = bytearray(b"A" * 1000)
        c.tr.write(data)
        data[:] = b"B" * 1000
        got = await recv_exactly(c.conn, n + 1000, timeout=20)
        assert got[-1000:] == b"A" * 1000
    finally:
        await c.close()


async def test_write_after_write_eof(connect):
    c = await open_conn(connect)
    try:
        c.tr.write_eof()
        with pytest.raises(RuntimeError) as ei:
            c.tr.write(b"x")
        assert str(ei.value) == "Cannot call write() after write_eof()"
        # checked before the empty-data no-op
        with pytest.raises(RuntimeError):
            c.tr.write(b"")
        # the type check comes first
        with pytest.raises(TypeError):
            c.tr.write("x")
        # and it still raises once the connection is gone
        c.tr.close()
        await c.pr.wait_lost()
        with pytest.raises(RuntimeError) as ei:
            c.tr.write(b"x")
        assert str(ei.value) == "Cannot call write() after write_eof()"
    finally:
        await c.close()


@pytest.mark.parametrize("how", ["close", "abort", "close-after-lost"])
async def test_write_after_close_is_dropped_with_warnings(connect, how, caplog):
    c = await open_conn(connect)
    try:
        if how == "abort":
            c.tr.abort()
        else:
            c.tr.close()
        if how == "close-after-lost":
            await c.pr.wait_lost()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            for i in range(7):
                c.tr.write(b"dropped")  # no exception
        warnings = [r for r in caplog.records if r.name == "asyncio" and r.getMessage() == "socket.send() raised exception."]
        # close()/abort() count as the first lost write: writes 5, 6 and 7 warn.
        assert len(warnings) == 3
        assert all(r.levelno == logging.WARNING for r in warnings)
        await c.pr.wait_lost()
        assert await recv_until_eof(c.conn) == b""
    finally:
        await c.close()


async def test_write_after_peer_reset_is_dropped(connect, caplog):
    c = await open_conn(connect)
    try:
        c.conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.conn.close()
        c.peer.conns.remove(c.conn)
        exc = await c.pr.wait_lost()
        assert isinstance(exc, ConnectionResetError)
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            for _ in range(5):
                c.tr.write(b"x")
        assert len([r for r in caplog.records if r.getMessage() == "socket.send() raised exception."]) == 1
    finally:
        await c.close()


async def test_write_after_close_with_buffered_data_is_still_sent(connect):
    # 8.2.6 quirk: while close() is still flushing, write() appends and the data is sent.
    c = await open_conn(connect)
    try:
        n = fill(c.tr)
        c.tr.close()
        c.tr.write(b"late")
        got = await recv_until_eof(c.conn, timeout=20)
        assert len(got) == n + 4 and got.endswith(b"late")
        assert await c.pr.wait_lost() is None
    finally:
        await c.close()


async def test_write_non_contiguous_memoryview(connect):
    # Not a TypeError from write(): the synchronous send fails and is a fatal write error.
    loop = asyncio.get_running_loop()
    calls = capture_handler(loop)
    c = await open_conn(connect)
    try:
        c.tr.write(memoryview(b"abcdef")[::2])  # does not raise
        exc = await c.pr.wait_lost()
        assert type(exc) is BufferError
        assert str(exc) == "memoryview: underlying buffer is not C-contiguous"
        assert [ctx["message"] for ctx in calls] == ["Fatal write error on socket transport"]
        assert calls[0]["exception"] is exc
    finally:
        await c.close()


async def test_write_and_close_in_connection_made(connect):
    class Greeter(Recorder):
        def connection_made(self, transport):
            super().connection_made(transport)
            transport.write(b"greeting")
            transport.close()

    with Peer() as peer:
        tr, pr = await connect(Greeter, "127.0.0.1", peer.port)  # still returns normally
        assert tr.is_closing()
        conn = await peer.accept()
        assert await recv_until_eof(conn) == b"greeting"
        assert await pr.wait_lost() is None
        assert pr.kinds() == ["made", "lost"]


async def test_loop_sendfile(connect, tmp_path):
    loop = asyncio.get_running_loop()
    path = tmp_path / "payload"
    payload = bytes(range(256)) * 4096  # 1 MiB
    path.write_bytes(payload)
    c = await open_conn(connect)
    try:
        reading = asyncio.ensure_future(recv_exactly(c.conn, len(payload) - 100, timeout=20))
        with open(path, "rb") as f:
            sent = await asyncio.wait_for(loop.sendfile(c.tr, f, offset=100), 20)
            assert sent == len(payload) - 100
            assert f.tell() == len(payload)
        assert await reading == payload[100:]
        assert c.tr.get_protocol() is c.pr  # restored
        assert c.tr.is_reading()
        c.tr.write(b"after")
        assert await recv_exactly(c.conn, 5) == b"after"
    finally:
        await c.close()


# ---- writelines --------------------------------------------------------------------------


async def test_writelines(connect):
    c = await open_conn(connect)
    try:
        c.tr.writelines([b"a", bytearray(b"b"), memoryview(b"c")])
        c.tr.writelines(x for x in [b"d", b"e"])
        c.tr.writelines([])
        assert await recv_exactly(c.conn, 5) == b"abcde"
    finally:
        await c.close()


async def test_writelines_errors(connect):
    c = await open_conn(connect)
    try:
        # 3.11 semantics: write(b''.join(list_of_data))
        with pytest.raises(TypeError) as ei:
            c.tr.writelines(["a"])
        assert str(ei.value) == "sequence item 0: expected a bytes-like object, str found"
        c.tr.write_eof()
        with pytest.raises(RuntimeError) as ei:
            c.tr.writelines([b"a"])
        assert str(ei.value) == "Cannot call write() after write_eof()"
    finally:
        await c.close()


# ---- write_eof ---------------------------------------------------------------------------


async def test_write_eof_half_closes(connect):
    loop = asyncio.get_running_loop()
    c = await open_conn(connect)
    try:
        assert c.tr.can_write_eof() is True
        c.tr.write(b"last")
        c.tr.write_eof()
        c.tr.write_eof()  # idempotent
        assert c.tr.is_closing() is False
        assert await recv_until_eof(c.conn) == b"last"
        await loop.sock_sendall(c.conn, b"reply")
        assert await c.pr.wait_bytes(5) == b"reply"
        c.conn.shutdown(socket.SHUT_WR)
        await c.pr.wait_lost()
        assert c.pr.kinds() == ["made", "data", "eof", "lost"]
        assert c.pr.lost_exc is None
    finally:
        await c.close()


async def test_write_eof_waits_for_the_buffer(connect):
    c = await open_conn(connect)
    try:
        n = fill(c.tr)
        c.tr.write(b"tail")
        c.tr.write_eof()
        got = await recv_until_eof(c.conn, timeout=20)
        assert len(got) == n + 4 and got.endswith(b"tail")
    finally:
        await c.close()


async def test_write_eof_after_close_is_a_no_op(connect):
    c = await open_conn(connect)
    try:
        c.tr.close()
        c.tr.write_eof()
        await c.pr.wait_lost()
        c.tr.write_eof()
    finally:
        await c.close()


# ---- close and abort ---------------------------------------------------------------------


async def test_close(connect):
    c = await open_conn(connect)
    try:
        assert c.tr.is_closing() is False
        c.tr.close()
        assert c.tr.is_closing() is True
        assert c.tr.is_reading() is False
        c.tr.close()  # idempotent
        assert not c.pr.is_lost  # connection_lost is scheduled, not called synchronously
        assert await c.pr.wait_lost() is None
        assert c.pr.kinds() == ["made", "lost"]
        assert c.tr.is_closing() is True
        assert c.tr.get_protocol() is None  # cleared after connection_lost
        assert await recv_until_eof(c.conn) == b""
        c.tr.close()
        c.tr.abort()
        await spin()
        assert c.pr.kinds() == ["made", "lost"]
    finally:
        await c.close()


async def test_close_flushes_the_buffer_first(connect):
    c = await open_conn(connect)
    try:
        c.tr.set_write_buffer_limits(high=CHUNK)
        n = fill(c.tr, more_than=CHUNK)
        assert "pause" in c.pr.kinds()
        c.tr.close()
        assert c.tr.is_closing()
        got = await recv_until_eof(c.conn, timeout=20)
        assert len(got) == n
        await c.pr.wait_lost()
        # the buffer drained: resume_writing, then connection_lost(None)
        assert c.pr.kinds() == ["made", "pause", "resume", "lost"]
        assert c.pr.lost_exc is None
    finally:
        await c.close()


async def test_abort_drops_the_buffer_and_does_not_resume(connect):
    c = await open_conn(connect)
    try:
        c.tr.set_write_buffer_limits(high=CHUNK)
        n = fill(c.tr, more_than=CHUNK)
        c.tr.abort()
        assert c.tr.is_closing()
        assert c.tr.get_write_buffer_size() == 0
        assert await c.pr.wait_lost() is None
        assert c.pr.kinds() == ["made", "pause", "lost"]
        try:
            got = await recv_until_eof(c.conn, timeout=20)
        except ConnectionResetError:
            got = b""
        assert len(got) < n
    finally:
        await c.close()


# ---- reading -----------------------------------------------------------------------------


async def test_pause_and_resume_reading(connect):
    loop = asyncio.get_running_loop()
    c = await open_conn(connect)
    try:
        assert c.tr.is_reading() is True
        c.tr.pause_reading()
        assert c.tr.is_reading() is False
        c.tr.pause_reading()  # no-op
        await loop.sock_sendall(c.conn, b"held")
        await asyncio.sleep(0.2)
        assert c.pr.kinds() == ["made"]  # held while paused
        c.tr.resume_reading()
        assert c.tr.is_reading() is True
        assert c.pr.kinds() == ["made"]  # not delivered inside resume_reading()
        c.tr.resume_reading()  # no-op
        assert await c.pr.wait_bytes(4) == b"held"
    finally:
        await c.close()


async def test_eof_while_paused_is_held_too(connect):
    loop = asyncio.get_running_loop()
    c = await open_conn(connect)
    try:
        c.tr.pause_reading()
        await loop.sock_sendall(c.conn, b"bye")
        c.conn.shutdown(socket.SHUT_WR)
        await asyncio.sleep(0.2)
        assert c.pr.kinds() == ["made"]
        c.tr.resume_reading()
        await c.pr.wait_lost()
        assert c.pr.kinds() == ["made", "data", "eof", "lost"]
    finally:
        await c.close()


async def test_reading_after_close(connect):
    c = await open_conn(connect)
    try:
        c.tr.pause_reading()
        c.tr.close()
        assert c.tr.is_reading() is False
        c.tr.resume_reading()  # no-op when closing, never raises
        assert c.tr.is_reading() is False
        await c.pr.wait_lost()
        c.tr.pause_reading()
        c.tr.resume_reading()
        assert c.tr.is_reading() is False
    finally:
        await c.close()


async def test_large_reads_are_chunked(connect):
    loop = asyncio.get_running_loop()
    c = await open_conn(connect)
    try:
        c.tr.pause_reading()
        payload = bytes(range(256)) * 8192  # 2 MiB
        send = asyncio.ensure_future(loop.sock_sendall(c.conn, payload))
        await asyncio.sleep(0.2)
        c.tr.resume_reading()
        await c.pr.wait_bytes(len(payload), timeout=20)
        await send
        assert bytes(c.pr.data) == payload
        sizes = [len(e[1]) for e in c.pr.events if isinstance(e, tuple) and e[0] == "data"]
        assert max(sizes) <= 256 * 1024  # max_size per recv
        assert all(s > 0 for s in sizes)
    finally:
        await c.close()


async def test_reads_of_every_size_arrive_whole_and_as_bytes(connect):
    # Each piece is sent once the one before has been delivered. goconn reads
    # pieces of up to 512 bytes through a scratch buffer and bigger ones
    # straight into the bytes object; both must look like asyncio's recv.
    class Typed(Recorder):
        def data_received(self, data):
            self.types.append(type(data))
            super().data_received(data)

    def typed():
        pr = Typed()
        pr.types = []
        return pr

    loop = asyncio.get_running_loop()
    c = await open_conn(connect, typed)
    try:
        sizes = [1, 2, 100, 511, 512, 513, 1000, 4096, 65536, 300000, 1, 513]
        pattern = random.Random(7).randbytes(sum(sizes))
        sent = 0
        for size in sizes:
            await loop.sock_sendall(c.conn, pattern[sent:sent + size])
            sent += size
            await c.pr.wait_bytes(sent, timeout=10)
            assert len(c.pr.data) == sent
        assert bytes(c.pr.data) == pattern
        chunks = [e[1] for e in c.pr.events if isinstance(e, tuple) and e[0] == "data"]
        assert set(c.pr.types) == {bytes}
        assert all(0 < len(ch) <= 256 * 1024 for ch in chunks)
        # A piece of one segment comes in one read.
        small = [len(ch) for ch in chunks[:8]]
        assert small == sizes[:8]
    finally:
        await c.close()


# ---- write buffer limits -----------------------------------------------------------------


async def test_write_buffer_limits(connect):
    c = await open_conn(connect)
    tr = c.tr
    try:
        assert tr.get_write_buffer_limits() == (16384, 65536)
        assert tr.get_write_buffer_size() == 0
        tr.set_write_buffer_limits(low=100)
        assert tr.get_write_buffer_limits() == (100, 400)
        tr.set_write_buffer_limits(high=100)
        assert tr.get_write_buffer_limits() == (25, 100)
        tr.set_write_buffer_limits(100)
        assert tr.get_write_buffer_limits() == (25, 100)
        tr.set_write_buffer_limits(0)
        assert tr.get_write_buffer_limits() == (0, 0)
        tr.set_write_buffer_limits(high=1000, low=10)
        assert tr.get_write_buffer_limits() == (10, 1000)
        tr.set_write_buffer_limits(7, 7)
        assert tr.get_write_buffer_limits() == (7, 7)
        tr.set_write_buffer_limits()
        assert tr.get_write_buffer_limits() == (16384, 65536)
    finally:
        await c.close()


@pytest.mark.parametrize("args,kwargs,message", [
    ((10, 20), {}, "high (10) must be >= low (20) must be >= 0"),
    ((), {"low": -1}, "high (-4) must be >= low (-1) must be >= 0"),
    ((), {"high": -4}, "high (-4) must be >= low (-1) must be >= 0"),
    ((), {"high": 10, "low": -1}, "high (10) must be >= low (-1) must be >= 0"),
])
async def test_write_buffer_limits_validation(connect, args, kwargs, message):
    c = await open_conn(connect)
    try:
        c.tr.set_write_buffer_limits(high=1000, low=100)
        with pytest.raises(ValueError) as ei:
            c.tr.set_write_buffer_limits(*args, **kwargs)
        assert str(ei.value) == message
        assert c.tr.get_write_buffer_limits() == (100, 1000)  # unchanged
    finally:
        await c.close()


async def test_write_buffer_limits_after_connection_lost(connect):
    c = await open_conn(connect)
    try:
        c.tr.set_write_buffer_limits(high=1000, low=10)
        c.tr.close()
        await c.pr.wait_lost()
        assert c.tr.get_write_buffer_limits() == (10, 1000)
        assert c.tr.get_write_buffer_size() == 0
        with pytest.raises(ValueError) as ei:
            c.tr.set_write_buffer_limits(10, 20)
        assert str(ei.value) == "high (10) must be >= low (20) must be >= 0"
        c.tr.set_write_buffer_limits(high=500)
        assert c.tr.get_write_buffer_limits() == (125, 500)
        assert c.pr.kinds() == ["made", "lost"]
    finally:
        await c.close()


async def test_write_buffer_size(connect):
    c = await open_conn(connect)
    try:
        n = fill(c.tr)
        size = c.tr.get_write_buffer_size()
        assert 0 < size <= n
        c.tr.write(b"12345")
        assert c.tr.get_write_buffer_size() == size + 5  # nothing is sent while buffered
        await recv_exactly(c.conn, n + 5, timeout=20)
        await c.pr.until(lambda: c.tr.get_write_buffer_size() == 0)
    finally:
        await c.close()


# ---- protocols ---------------------------------------------------------------------------


async def test_set_protocol(connect):
    loop = asyncio.get_running_loop()
    c = await open_conn(connect)
    try:
        other = Recorder()
        c.tr.set_protocol(other)
        assert c.tr.get_protocol() is other
        await loop.sock_sendall(c.conn, b"to the new one")
        assert await other.wait_bytes(14) == b"to the new one"
        assert c.pr.kinds() == ["made"]
        c.tr.close()
        await other.wait_lost()
        assert other.kinds() == ["data", "lost"]
        assert not c.pr.is_lost
    finally:
        c.pr.is_lost = True
        await c.close()


async def test_set_protocol_to_buffered(connect):
    from _util import BufRecorder

    loop = asyncio.get_running_loop()
    c = await open_conn(connect)
    try:
        other = BufRecorder(4)
        c.tr.set_protocol(other)
        await loop.sock_sendall(c.conn, b"0123456789")
        await other.wait_bytes(10)
        assert bytes(other.data) == b"0123456789"
        assert set(other.hints) == {-1}
        c.tr.close()
        await other.wait_lost()
    finally:
        c.pr.is_lost = True
        await c.close()


# ---- extra info --------------------------------------------------------------------------


async def test_extra_info(connect):
    c = await open_conn(connect)
    tr = c.tr
    try:
        assert tr.get_extra_info("peername") == c.peer.addr
        assert tr.get_extra_info("sockname") == c.conn.getpeername()
        s = tr.get_extra_info("socket")
        assert isinstance(s, trsock.TransportSocket)
        assert s.family == socket.AF_INET and s.type == socket.SOCK_STREAM
        assert s.getsockname() == tr.get_extra_info("sockname")
        assert s.getpeername() == tr.get_extra_info("peername")
        assert s.fileno() >= 0
        s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        assert s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert s.gettimeout() == 0
        with pytest.raises(ValueError) as ei:
            s.setblocking(True)
        assert str(ei.value) == "setblocking(): transport sockets cannot be blocking"
        with pytest.raises(ValueError):
            s.settimeout(1)
        for name in ("close", "recv", "send"):
            assert not hasattr(s, name)
        assert tr.get_extra_info("nonexistent") is None
        assert tr.get_extra_info("nonexistent", "dflt") == "dflt"
        for key in ("sslcontext", "peercert", "cipher", "compression", "ssl_object"):
            assert tr.get_extra_info(key) is None
        assert tr.get_extra_info("peername", "dflt") == c.peer.addr
        # cached at construction: still readable after close
        peer, sock = tr.get_extra_info("peername"), tr.get_extra_info("sockname")
        tr.close()
        await c.pr.wait_lost()
        assert tr.get_extra_info("peername") == peer
        assert tr.get_extra_info("sockname") == sock
    finally:
        await c.close()


async def test_extra_info_ipv6(connect):
    with Peer("::1", socket.AF_INET6) as peer:
        tr, pr = await connect(Recorder, "::1", peer.port)
        try:
            assert tr.get_extra_info("peername") == ("::1", peer.port, 0, 0)
            assert tr.get_extra_info("sockname")[0] == "::1"
            assert tr.get_extra_info("socket").family == socket.AF_INET6
        finally:
            tr.close()
        await pr.wait_lost()


async def test_transport_fd_is_registered_with_the_loop(connect):
    # spec 6.5 / test_unix_events: the loop refuses add_reader on a transport's fd.
    loop = asyncio.get_running_loop()
    c = await open_conn(connect)
    try:
        fd = c.tr.get_extra_info("socket").fileno()
        with pytest.raises(RuntimeError, match=r"File descriptor .* is used by transport"):
            loop.add_reader(fd, lambda: None)
        m = re.search(r"is used by transport (.*)$", _add_reader_error(loop, fd))
        assert normalise(m.group(1)).startswith("<_SelectorSocketTransport fd=")
    finally:
        await c.close()


def _add_reader_error(loop, fd):
    try:
        loop.add_writer(fd, lambda: None)
    except RuntimeError as e:
        return str(e)
    raise AssertionError("add_writer did not raise")
