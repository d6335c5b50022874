"""goconn's receive buffers (python/goconn/_rawbytes.py): the memory the
library reads into becomes the ``bytes`` data_received gets. Internal to
goconn, so these run once, not against asyncio."""

from __future__ import annotations

import ctypes
import platform
import sys

import pytest

from goconn import _rawbytes


def _fill(obj: bytes, data: bytes) -> None:
    # What the library does: write at the object's characters, within its size.
    assert len(data) <= len(obj)
    ctypes.memmove(id(obj) + _rawbytes.HEADER, data, len(data))


needs_cpython = pytest.mark.skipif(not _rawbytes.ZERO_COPY, reason="new_bytes needs CPython's C API")


@needs_cpython
@pytest.mark.parametrize("size", [1, 2, 64, 4096, 65536, 256 * 1024])
def test_filled_object_is_the_bytes(size):
    data = bytes(i % 251 for i in range(size))
    obj = _rawbytes.new_bytes(size)
    assert type(obj) is bytes
    assert len(obj) == size
    _fill(obj, data)
    assert obj == data
    assert hash(obj) == hash(data)  # no stale cached hash
    # Only the caller holds it (getrefcount adds its own argument).
    assert sys.getrefcount(obj) == 2


@needs_cpython
def test_objects_are_distinct():
    a = _rawbytes.new_bytes(100)
    b = _rawbytes.new_bytes(100)
    assert id(a) != id(b)
    _fill(a, b"a" * 100)
    _fill(b, b"b" * 100)
    assert a == b"a" * 100
    assert b == b"b" * 100


def test_zero_copy_on_cpython():
    # On CPython the C API must be found: otherwise every read would be
    # copied, silently, and the tests above would skip.
    if platform.python_implementation() != "CPython":
        pytest.skip("the zero-copy path is CPython's")
    assert _rawbytes.ZERO_COPY


@needs_cpython
async def test_reads_over_512_bytes_are_the_objects_read_into(monkeypatch):
    # What data_received gets for a read of more than 512 bytes is the very
    # object new_bytes made (no copy); smaller reads are copies out of the
    # loop's scratch buffer; and no object stays lent once its read is
    # delivered.
    import asyncio

    import goconn
    from _util import Peer

    made = []

    def recording_new_bytes(size):
        obj = real(size)
        made.append(obj)
        return obj

    real = _rawbytes.new_bytes
    monkeypatch.setattr(_rawbytes, "new_bytes", recording_new_bytes)
    loop = asyncio.get_running_loop()
    got = []
    arrived = asyncio.Event()

    class Keep(asyncio.Protocol):
        def data_received(self, data):
            got.append(data)
            arrived.set()

    peer = Peer()
    try:
        tr, pr = await goconn.create_connection(Keep, "127.0.0.1", peer.port)
        conn = await peer.accept()
        for size in (513, 100, 4096, 512, 60000):
            arrived.clear()
            got.clear()
            await loop.sock_sendall(conn, bytes([size % 251]) * size)
            await asyncio.wait_for(arrived.wait(), 10)
            while sum(map(len, got)) < size:
                arrived.clear()
                await asyncio.wait_for(arrived.wait(), 10)
            assert b"".join(got) == bytes([size % 251]) * size
            for data in got:
                from_object = any(data is obj for obj in made)
                assert from_object == (len(data) > 512), (size, len(data))
            assert tr._rbuf is None
        tr.abort()
    finally:
        peer.close()


async def test_without_the_c_api_reads_are_copied_whole(monkeypatch):
    # Another Python implementation (ZERO_COPY False) reads everything
    # through the loop's scratch buffer: every byte must still arrive, in
    # order, as bytes, whatever the read sizes.
    import asyncio
    import hashlib
    import random

    import goconn
    from _util import Peer

    monkeypatch.setattr(_rawbytes, "ZERO_COPY", False)
    loop = asyncio.get_running_loop()
    payload = random.Random(3).randbytes(3 * 1024 * 1024 + 17)
    got, types = hashlib.sha256(), set()
    done = loop.create_future()

    class Sink(asyncio.Protocol):
        n = 0

        def data_received(self, data):
            types.add(type(data))
            got.update(data)
            self.n += len(data)

        def connection_lost(self, exc):
            done.set_result(exc)

    peer = Peer()
    try:
        tr, pr = await goconn.create_connection(Sink, "127.0.0.1", peer.port)
        conn = await peer.accept()
        await loop.sock_sendall(conn, payload)
        conn.close()
        assert await asyncio.wait_for(done, 20) is None
        assert pr.n == len(payload)
        assert got.digest() == hashlib.sha256(payload).digest()
        assert types == {bytes}
    finally:
        peer.close()
