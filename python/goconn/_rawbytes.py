"""Receive buffers that become the ``bytes`` handed to ``data_received``.

The library's get_buffer callback asks where to put the next bytes, with a
hint of how many are waiting (the socket's FIONREAD on plain TCP, the size
of the decrypted piece under TLS). For a plain ``asyncio.Protocol`` the
answer is a new, not yet shared ``bytes`` object of that size: the library
reads the socket straight into it (or copies decrypted TLS data into it),
and it is passed on as is. That is what CPython's own ``socket.recv()``
does, and it means received data is copied once, by the kernel, as under
asyncio. The size comes from the hint, so the object need not be shrunk:
only a read that got fewer bytes than were announced (which a socket with
one reader does not do) costs a copy of what it got.

It needs CPython's C API through ``ctypes.pythonapi``:
PyBytes_FromStringAndSize with a NULL source makes an uninitialised object
nobody else can see yet. Where that is missing (another implementation), a
bytearray and one copy take its place.
"""

from __future__ import annotations

import ctypes

__all__ = ["RawBuffer", "ZERO_COPY", "new_buffer"]


class RawBuffer:
    """One receive buffer: ``address`` and ``size`` go to the library;
    ``finish(n)`` returns the first n bytes as ``bytes`` (once)."""

    __slots__ = ("address", "size", "_obj")

    def finish(self, n: int) -> bytes:  # pragma: no cover - replaced below
        raise NotImplementedError


def _cpython_api():
    api = ctypes.pythonapi
    # Returned as a Python object: ctypes takes over the new reference.
    new = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p, ctypes.c_ssize_t)(
        ("PyBytes_FromStringAndSize", api))
    # Where a bytes object's characters start, measured rather than assumed.
    probe = b"goconn"
    header = ctypes.cast(ctypes.c_char_p(probe), ctypes.c_void_p).value - id(probe)
    if not 0 < header <= 64 or ctypes.string_at(id(probe) + header, len(probe)) != probe:
        raise OSError("unexpected bytes object layout")
    return new, header


try:
    _new, _HEADER = _cpython_api()
    ZERO_COPY = True
except (AttributeError, OSError, TypeError):  # pragma: no cover - not CPython
    ZERO_COPY = False


if ZERO_COPY:

    class _BytesBuffer(RawBuffer):
        # _obj is a bytes object only this buffer refers to until finish().
        # Size 0 (a shared empty object) is never asked for: the library
        # reads only into memory of at least one byte.
        __slots__ = ()

        def __init__(self, size: int):
            self._obj = _new(None, size)  # raises MemoryError on failure
            self.address = id(self._obj) + _HEADER
            self.size = size

        def finish(self, n: int) -> bytes:
            data, self._obj = self._obj, None
            return data if n == self.size else data[:n]

    new_buffer = _BytesBuffer

else:  # pragma: no cover - not CPython

    class _CopyBuffer(RawBuffer):
        __slots__ = ("_array",)

        def __init__(self, size: int):
            self._obj = bytearray(size)
            self._array = (ctypes.c_char * size).from_buffer(self._obj)
            self.address = ctypes.addressof(self._array)
            self.size = size

        def finish(self, n: int) -> bytes:
            data = bytes(memoryview(self._obj)[:n])
            self._array = None
            self._obj = None
            return data

    new_buffer = _CopyBuffer
