"""asyncio streams over the connector (asyncio.open_connection through a routed loop, and
goconn.open_connection), and TLS upgrades of a plain connection: loop.start_tls and
StreamWriter.start_tls (section 7, TLS in create_connection itself, is out of scope)."""

import asyncio
import queue
import socket
import ssl
import threading

import pytest

from _util import Peer, Recorder, capture_handler, echo_server, recv_exactly


async def test_open_connection_through_the_routed_loop(connect):
    connect.route()
    calls = capture_handler(asyncio.get_running_loop())
    server, port = await echo_server()
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert type(writer.transport).__name__ == connect.transport_class
        writer.write(b"hello\n")
        await writer.drain()
        assert await reader.readline() == b"hello\n"
        writer.writelines([b"a", b"b\n"])
        await writer.drain()
        assert await reader.readexactly(3) == b"ab\n"
        assert writer.can_write_eof()
        assert writer.get_extra_info("peername") == ("127.0.0.1", port)
        assert not writer.is_closing()
        writer.close()
        assert writer.is_closing()
        await writer.wait_closed()
    assert calls == []


async def test_module_open_connection(connect):
    server, port = await echo_server()
    async with server:
        reader, writer = await connect.open_connection("127.0.0.1", port, limit=10)
        assert type(writer.transport).__name__ == connect.transport_class
        writer.write(b"0123456789abcdef\n")
        await writer.drain()
        with pytest.raises(ValueError):  # the limit reached the StreamReader
            await reader.readline()
        writer.close()
        await writer.wait_closed()


async def test_open_connection_errors(connect):
    connect.route()
    with pytest.raises(ConnectionRefusedError) as ei:
        await asyncio.open_connection("127.0.0.1", 1)
    assert str(ei.value) == "[Errno 111] Connect call failed ('127.0.0.1', 1)"
    with pytest.raises(ValueError) as ei:
        await asyncio.open_connection("127.0.0.1", 1, server_hostname="x")
    assert str(ei.value) == "server_hostname is only meaningful with ssl"


async def test_open_connection_passes_keywords(connect):
    connect.route()
    with Peer() as peer:
        reader, writer = await asyncio.open_connection("127.0.0.1", peer.port, local_addr=("127.0.0.1", 0),
                                                       happy_eyeballs_delay=0.1)
        assert writer.get_extra_info("sockname")[0] == "127.0.0.1"
        writer.close()
        await writer.wait_closed()


async def test_read_until_eof(connect):
    connect.route()
    loop = asyncio.get_running_loop()
    with Peer() as peer:
        reader, writer = await asyncio.open_connection("127.0.0.1", peer.port)
        conn = await peer.accept()
        await loop.sock_sendall(conn, b"all of it")
        conn.shutdown(socket.SHUT_WR)
        assert await reader.read() == b"all of it"
        assert reader.at_eof()
        writer.close()
        await writer.wait_closed()


async def test_wait_closed_with_unread_data(connect):
    connect.route()
    loop = asyncio.get_running_loop()
    with Peer() as peer:
        reader, writer = await asyncio.open_connection("127.0.0.1", peer.port)
        conn = await peer.accept()
        await loop.sock_sendall(conn, b"unread")
        await asyncio.sleep(0.05)
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), 5)


async def test_drain_flow_control_with_a_slow_reader(connect):
    # StreamReaderProtocol asserts pause/resume alternation; a large write must pass it.
    connect.route()
    loop = asyncio.get_running_loop()
    calls = capture_handler(loop)
    with Peer() as peer:
        reader, writer = await asyncio.open_connection("127.0.0.1", peer.port)
        conn = await peer.accept()
        writer.transport.set_write_buffer_limits(high=1000, low=100)
        total = 0

        async def read_all(n):
            got = 0
            while got < n:
                chunk = await loop.sock_recv(conn, 65536)
                assert chunk
                got += len(chunk)
                await asyncio.sleep(0)
            return got

        for _ in range(8):
            writer.write(b"d" * (512 * 1024))
            total += 512 * 1024
        reading = asyncio.ensure_future(read_all(total))
        await asyncio.wait_for(writer.drain(), 20)
        assert await asyncio.wait_for(reading, 20) == total
        writer.close()
        await writer.wait_closed()
    assert calls == []


async def test_drain_raises(connect):
    # CPython test_streams.test_drain_raises: the server closes at once; a write+drain loop
    # must end with a connection error and no exception-handler call.
    connect.route()
    loop = asyncio.get_running_loop()
    messages = capture_handler(loop)
    q = queue.Queue()

    def server():
        with socket.create_server(("localhost", 0)) as sock:
            q.put(sock.getsockname())
            clt, _ = sock.accept()
            clt.close()

    thread = threading.Thread(target=server, daemon=True)
    thread.start()
    host, port = await loop.run_in_executor(None, q.get)

    async def client():
        reader, writer = await asyncio.open_connection(host, port)
        while True:
            writer.write(b"foo\n")
            await writer.drain()

    with pytest.raises((ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
        await asyncio.wait_for(client(), 10)
    await loop.run_in_executor(None, thread.join)
    assert messages == []


# ---- start_tls -----------------------------------------------------------------------------


async def tls_echo_server(server_ctx):
    async def handle(reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    return server, server.sockets[0].getsockname()[1]


async def test_loop_start_tls(connect, tls_contexts):
    server_ctx, client_ctx = tls_contexts
    loop = asyncio.get_running_loop()
    calls = capture_handler(loop)
    server, port = await tls_echo_server(server_ctx)
    async with server:
        tr, pr = await connect(Recorder, "127.0.0.1", port)
        tls = await asyncio.wait_for(
            loop.start_tls(tr, pr, client_ctx, server_hostname="localhost"), 10
        )
        assert tls is not tr
        assert tls.get_protocol() is pr
        obj = tls.get_extra_info("ssl_object")
        assert obj is not None and obj.version() in ("TLSv1.2", "TLSv1.3")
        cert = tls.get_extra_info("peercert")
        assert ("commonName", "localhost") in [item for rdn in cert["subject"] for item in rdn]
        assert tls.get_extra_info("peername") == ("127.0.0.1", port)
        tls.write(b"over tls")
        assert await pr.wait_bytes(8) == b"over tls"
        assert pr.kinds() == ["made", "data"]  # connection_made is not called again
        tls.close()
        assert await pr.wait_lost() is None
        # the server answers close_notify with its own, which may arrive as an EOF first
        assert pr.kinds() in (["made", "data", "lost"], ["made", "data", "eof", "lost"])
    assert calls == []


async def test_loop_start_tls_certificate_failure(connect, tls_contexts):
    server_ctx, _ = tls_contexts
    loop = asyncio.get_running_loop()
    server, port = await tls_echo_server(server_ctx)
    async with server:
        tr, pr = await connect(Recorder, "127.0.0.1", port)
        untrusting = ssl.create_default_context()
        with pytest.raises(ssl.SSLCertVerificationError) as ei:
            await asyncio.wait_for(loop.start_tls(tr, pr, untrusting, server_hostname="localhost"), 10)
        assert ei.value.reason == "CERTIFICATE_VERIFY_FAILED"
        await asyncio.sleep(0.1)
        assert tr.is_closing()


async def test_loop_start_tls_hostname_mismatch(connect, tls_contexts):
    server_ctx, client_ctx = tls_contexts
    loop = asyncio.get_running_loop()
    server, port = await tls_echo_server(server_ctx)
    async with server:
        tr, pr = await connect(Recorder, "127.0.0.1", port)
        with pytest.raises(ssl.SSLCertVerificationError) as ei:
            await asyncio.wait_for(loop.start_tls(tr, pr, client_ctx, server_hostname="wronghost"), 10)
        assert "Hostname mismatch, certificate is not valid for 'wronghost'" in str(ei.value)


async def test_stream_writer_start_tls(connect, tls_contexts):
    server_ctx, client_ctx = tls_contexts
    connect.route()
    calls = capture_handler(asyncio.get_running_loop())
    server, port = await tls_echo_server(server_ctx)
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert type(writer.transport).__name__ == connect.transport_class
        assert writer.get_extra_info("ssl_object") is None
        await asyncio.wait_for(writer.start_tls(client_ctx, server_hostname="localhost"), 10)
        assert writer.get_extra_info("ssl_object") is not None
        writer.write(b"secure line\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.readline(), 10) == b"secure line\n"
        writer.close()
        await writer.wait_closed()
    assert calls == []


async def test_start_tls_with_data_written_before(connect, tls_contexts):
    # Plain bytes first, then the upgrade: the peer sees the plain bytes, then a handshake.
    server_ctx, client_ctx = tls_contexts
    loop = asyncio.get_running_loop()
    with Peer() as peer:
        tr, pr = await connect(Recorder, "127.0.0.1", peer.port)
        conn = await peer.accept()
        tr.write(b"STARTTLS\n")
        assert await recv_exactly(conn, 9) == b"STARTTLS\n"

        def serve_tls(sock):
            sock.setblocking(True)
            with server_ctx.wrap_socket(sock, server_side=True) as s:
                data = s.recv(100)
                s.sendall(data.upper())
                s.unwrap()

        served = loop.run_in_executor(None, serve_tls, conn)
        tls = await asyncio.wait_for(loop.start_tls(tr, pr, client_ctx, server_hostname="localhost"), 10)
        tls.write(b"upgrade ok")
        assert await pr.wait_bytes(10) == b"UPGRADE OK"
        await asyncio.wait_for(served, 10)
        tls.close()
        await pr.wait_lost()
