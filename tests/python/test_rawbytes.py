"""goconn's receive buffers (python/goconn/_rawbytes.py): the memory the
library reads into becomes the ``bytes`` data_received gets. Internal to
goconn, so these run once, not against asyncio."""

from __future__ import annotations

import ctypes
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
def test_header_points_at_the_characters():
    probe = b"where do the characters start"
    assert ctypes.string_at(id(probe) + _rawbytes.HEADER, len(probe)) == probe


@needs_cpython
def test_objects_are_distinct():
    a = _rawbytes.new_bytes(100)
    b = _rawbytes.new_bytes(100)
    assert id(a) != id(b)
    _fill(a, b"a" * 100)
    _fill(b, b"b" * 100)
    assert a == b"a" * 100
    assert b == b"b" * 100


@needs_cpython
def test_many_objects_are_freed():
    # Each object is dropped after use; a leaked reference would keep
    # 256 KiB alive per round and show in the allocator's count.
    if not hasattr(sys, "getallocatedblocks"):
        pytest.skip("sys.getallocatedblocks is CPython's")
    for _ in range(100):
        _fill(_rawbytes.new_bytes(256 * 1024), b"w")
    before = sys.getallocatedblocks()
    for _ in range(2000):
        obj = _rawbytes.new_bytes(256 * 1024)
        _fill(obj, b"z")
        obj = obj[:1]
        _rawbytes.new_bytes(4096)  # lent and never filled: dropped
    assert sys.getallocatedblocks() - before < 50


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
