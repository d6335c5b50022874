"""goconn's receive buffers (python/goconn/_rawbytes.py): the memory the
library reads into becomes the ``bytes`` data_received gets. Internal to
goconn, so these run once, not against asyncio."""

from __future__ import annotations

import ctypes
import sys

import pytest

from goconn import _rawbytes


def _fill(buf, data: bytes) -> None:
    # What the library does: write at the address, within the size.
    assert len(data) <= buf.size
    ctypes.memmove(buf.address, data, len(data))


@pytest.mark.parametrize("size", [1, 2, 64, 4096, 65536, 256 * 1024])
def test_full_buffer_is_the_bytes(size):
    data = bytes(i % 251 for i in range(size))
    buf = _rawbytes.new_buffer(size)
    assert buf.size == size
    _fill(buf, data)
    got = buf.finish(size)
    assert type(got) is bytes
    assert got == data
    assert hash(got) == hash(data)  # no stale cached hash
    # Only the caller holds it (getrefcount adds its own argument).
    assert sys.getrefcount(got) == 2


def test_short_read_keeps_only_what_came():
    buf = _rawbytes.new_buffer(1000)
    _fill(buf, b"x" * 10)
    got = buf.finish(10)
    assert got == b"x" * 10
    assert type(got) is bytes


def test_buffers_are_distinct():
    a = _rawbytes.new_buffer(100)
    b = _rawbytes.new_buffer(100)
    assert a.address != b.address
    _fill(a, b"a" * 100)
    _fill(b, b"b" * 100)
    assert a.finish(100) == b"a" * 100
    assert b.finish(100) == b"b" * 100


def test_many_buffers_are_freed():
    # Each finished bytes object is dropped; a leaked reference would keep
    # 256 KiB alive per round and show in the allocator's count.
    if not hasattr(sys, "getallocatedblocks"):
        pytest.skip("sys.getallocatedblocks is CPython's")
    for _ in range(100):
        _rawbytes.new_buffer(256 * 1024).finish(256 * 1024)
    before = sys.getallocatedblocks()
    for _ in range(2000):
        buf = _rawbytes.new_buffer(256 * 1024)
        _fill(buf, b"z")
        buf.finish(1)
        _rawbytes.new_buffer(4096)  # lent and never filled: dropped
    assert sys.getallocatedblocks() - before < 50
