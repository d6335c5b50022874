"""TLS data paths: a 64 MiB transfer each way with matching checksums, BufferedProtocol over
TLS (7.11), and asyncio streams over TLS (asyncio.open_connection(ssl=) through a routed
loop, and goconn.open_connection).  loop.start_tls over a plain connection is in
test_streams.py."""

import asyncio
import hashlib
import logging
import os
import ssl

import pytest

from _util import BufRecorder, Peer, Recorder, ThreadTLSServer, capture_handler, read_tls_record, tls_server

SIZE = 64 * 1024 * 1024
BLOCK = 1024 * 1024


def blocks(seed: bytes):
    """SIZE bytes as BLOCK-sized pieces, each one different."""
    base = hashlib.sha256(seed).digest() * (BLOCK // 32)
    for i in range(SIZE // BLOCK):
        yield i.to_bytes(8, "big") + base[8:]


class Sink(asyncio.Protocol):
    """Hashes what it receives; the first 32 bytes (the server's digest) are kept apart.
    Honours pause_writing/resume_writing for its own writes."""

    def __init__(self):
        self.head = bytearray()
        self.hash = hashlib.sha256()
        self.count = 0
        self.eof = False
        self.lost = asyncio.get_running_loop().create_future()
        self.changed = asyncio.Event()
        self.can_write = asyncio.Event()
        self.can_write.set()
        self.pauses = 0

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        if len(self.head) < 32:
            take = 32 - len(self.head)
            self.head += data[:take]
            data = data[take:]
        self.hash.update(data)
        self.count += len(data)
        self.changed.set()

    def eof_received(self):
        self.eof = True
        self.changed.set()

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)
        self.changed.set()

    def pause_writing(self):
        assert self.can_write.is_set(), "pause_writing twice"
        self.pauses += 1
        self.can_write.clear()

    def resume_writing(self):
        assert not self.can_write.is_set(), "resume_writing without pause_writing"
        self.can_write.set()

    async def wait(self, predicate, timeout):
        async def loop():
            while not predicate():
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(loop(), timeout)


def _server_body(s, server):
    # Read SIZE bytes, answer with their digest, then send SIZE bytes of its own.
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    h = hashlib.sha256()
    got = 0
    while got < SIZE:
        n = s.recv_into(view)
        if not n:
            raise AssertionError(f"EOF after {got} bytes")
        h.update(view[:n])
        got += n
    s.sendall(h.digest())
    sent = hashlib.sha256()
    for block in blocks(b"server"):
        s.sendall(block)
        sent.update(block)
    s.unwrap()  # close_notify, then wait for the client's
    return sent.digest()


@pytest.mark.timeout(60)
async def test_64_mib_each_way(connect, pki):
    loop = asyncio.get_running_loop()
    calls = capture_handler(loop)
    with ThreadTLSServer(pki.server_context(), _server_body) as srv:
        srv.sock.settimeout(60)
        tr, pr = await connect(Sink, "127.0.0.1", srv.port, ssl=pki.client_context(), server_hostname="localhost")
        sent = hashlib.sha256()
        for block in blocks(b"client"):
            await pr.can_write.wait()
            tr.write(block)
            sent.update(block)
        await pr.wait(lambda: pr.count >= SIZE or pr.lost.done(), 50)
        assert bytes(pr.head) == sent.digest()  # the server got exactly what we sent
        assert pr.count == SIZE
        await pr.wait(lambda: pr.eof, 10)  # the server's close_notify
        assert await asyncio.wait_for(pr.lost, 10) is None
        assert pr.hash.digest() == await loop.run_in_executor(None, srv.join)
    assert calls == []


async def test_buffered_protocol_over_tls(connect, pki):
    payload = os.urandom(300_000)
    server, port = await tls_server(pki.server_context())
    async with server:
        tr, pr = await connect(lambda: BufRecorder(4096), "127.0.0.1", port, ssl=pki.client_context(),
                               server_hostname="localhost")
        tr.write(payload)
        assert await pr.wait_bytes(len(payload)) == payload
        assert all(isinstance(h, int) for h in pr.hints)
        tr.close()
        assert await pr.wait_lost() is None


async def test_data_and_eof_in_the_same_flight(connect, pki):
    # Data followed at once by close_notify: all data first, then eof_received, then lost.
    async def handler(reader, writer):
        writer.write(b"x" * 100_000)
        writer.write(b"END")
        await writer.drain()

    server, port = await tls_server(pki.server_context(), handler)
    async with server:
        tr, pr = await connect(Recorder, "127.0.0.1", port, ssl=pki.client_context(), server_hostname="localhost")
        assert await pr.wait_lost() is None
        assert bytes(pr.data) == b"x" * 100_000 + b"END"
        assert pr.kinds() == ["made", "data", "eof", "lost"]


# ---- streams over TLS -------------------------------------------------------------------------


async def check_tls_stream(reader, writer, ctx, port):
    assert "ssl" in type(writer.transport).__name__.lower()
    assert writer.get_extra_info("sslcontext") is ctx
    assert writer.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
    assert writer.get_extra_info("peername") == ("127.0.0.1", port)
    assert not writer.can_write_eof()
    writer.write(b"over tls\n")
    await writer.drain()
    assert await asyncio.wait_for(reader.readline(), 10) == b"over tls\n"
    writer.write(b"y" * 1_000_000)
    await asyncio.wait_for(writer.drain(), 20)
    assert await asyncio.wait_for(reader.readexactly(1_000_000), 20) == b"y" * 1_000_000
    writer.close()
    await asyncio.wait_for(writer.wait_closed(), 10)


async def test_open_connection_with_ssl_through_the_routed_loop(connect, pki, caplog):
    connect.route()
    caplog.set_level(logging.WARNING, logger="asyncio")
    calls = capture_handler(asyncio.get_running_loop())
    ctx = pki.client_context()
    server, port = await tls_server(pki.server_context())
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost")
        await check_tls_stream(reader, writer, ctx, port)
    assert calls == []
    assert [r for r in caplog.records if r.name == "asyncio"] == []


async def test_module_open_connection_with_ssl(connect, pki):
    ctx = pki.client_context()
    server, port = await tls_server(pki.server_context())
    async with server:
        reader, writer = await connect.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost")
        await check_tls_stream(reader, writer, ctx, port)


async def test_stream_reads_to_the_servers_close_notify(connect, pki, caplog):
    # StreamReaderProtocol.eof_received returns False with TLS (sslcontext is set), so the
    # transport closes without the "returning true from eof_received()" warning.
    async def handler(reader, writer):
        writer.write(b"all of it")
        await writer.drain()

    connect.route()
    caplog.set_level(logging.WARNING, logger="asyncio")
    server, port = await tls_server(pki.server_context(), handler)
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=pki.client_context(),
                                                       server_hostname="localhost")
        assert await asyncio.wait_for(reader.read(), 10) == b"all of it"
        assert reader.at_eof()
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), 10)
    assert [r for r in caplog.records if r.name == "asyncio"] == []


async def test_open_connection_certificate_failure(connect, pki):
    connect.route()
    server, port = await tls_server(pki.server_context("server_rogue"))
    async with server:
        with pytest.raises(ssl.SSLCertVerificationError) as ei:
            await asyncio.open_connection("127.0.0.1", port, ssl=pki.client_context(), server_hostname="localhost")
        assert ei.value.verify_code == 20


# ---- loop.start_tls over a goconn transport (what test_streams.py does not cover) ------------------


async def test_start_tls_with_a_buffered_protocol(connect, pki):
    # test_ssl test_start_tls_client_buf_proto_1: the plain transport carries asyncio's
    # SSLProtocol (a BufferedProtocol) after the upgrade.
    loop = asyncio.get_running_loop()
    calls = capture_handler(loop)
    payload = os.urandom(200_000)
    server, port = await tls_server(pki.server_context())
    async with server:
        tr, pr = await connect(lambda: BufRecorder(1024), "127.0.0.1", port)
        tls = await asyncio.wait_for(loop.start_tls(tr, pr, pki.client_context(), server_hostname="localhost"), 10)
        tls.write(payload)
        assert await pr.wait_bytes(len(payload)) == payload
        tls.close()
        assert await pr.wait_lost() is None
    assert calls == []


async def test_start_tls_handshake_timeout(connect, pki):
    # The server never answers the ClientHello: start_tls raises asyncio's
    # ConnectionAbortedError, and the plain transport is closed.
    loop = asyncio.get_running_loop()
    calls = capture_handler(loop)
    with Peer() as peer:
        tr, pr = await connect(Recorder, "127.0.0.1", peer.port)
        conn = await peer.accept()
        task = asyncio.ensure_future(loop.start_tls(tr, pr, pki.client_context(), server_hostname="localhost",
                                                    ssl_handshake_timeout=0.3))
        await read_tls_record(loop, conn)
        with pytest.raises(ConnectionAbortedError) as ei:
            await asyncio.wait_for(task, 10)
        assert str(ei.value) == "SSL handshake is taking longer than 0.3 seconds: aborting the connection"
        await asyncio.sleep(0.1)
        assert tr.is_closing()
        assert await loop.sock_recv(conn, 100) == b""
    assert calls == []
