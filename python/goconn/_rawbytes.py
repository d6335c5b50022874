"""Receive buffers that become the ``bytes`` handed to ``data_received``.

The library's get_buffer callback asks where to put the next bytes. For a
plain ``asyncio.Protocol`` the answer is a new, not yet shared ``bytes``
object: the library reads the socket straight into it (or copies decrypted
TLS data into it), it is shrunk to what arrived, and it is passed on as is.
That is what CPython's own ``socket.recv()`` does, and it means received
data is copied once, by the kernel, as under asyncio.

It needs CPython's C API through ``ctypes.pythonapi``: PyBytes_FromStringAndSize
with a NULL source (an uninitialised object nobody else can see yet),
_PyBytes_Resize (which shrinks in place while only we hold the object), and
Py_DecRef. Where that is missing (another implementation), a bytearray and
one copy take its place.
"""

from __future__ import annotations

import ctypes

__all__ = ["RawBuffer", "ZERO_COPY"]


class RawBuffer:
    """One receive buffer: ``address`` and ``size`` go to the library;
    ``finish(n)`` returns the first n bytes as ``bytes`` (once);
    ``discard()`` frees a buffer that got nothing."""

    __slots__ = ("address", "size", "_obj")

    def finish(self, n: int) -> bytes:  # pragma: no cover - replaced below
        raise NotImplementedError

    def discard(self) -> None:  # pragma: no cover - replaced below
        raise NotImplementedError


def _cpython_api():
    api = ctypes.pythonapi
    new = api.PyBytes_FromStringAndSize
    new.restype = ctypes.c_void_p
    new.argtypes = (ctypes.c_void_p, ctypes.c_ssize_t)
    resize = api._PyBytes_Resize
    resize.restype = ctypes.c_int
    resize.argtypes = (ctypes.POINTER(ctypes.c_void_p), ctypes.c_ssize_t)
    decref = api.Py_DecRef
    decref.restype = None
    decref.argtypes = (ctypes.c_void_p,)
    # Where a bytes object's characters start, measured rather than assumed.
    probe = b"goconn"
    header = ctypes.cast(ctypes.c_char_p(probe), ctypes.c_void_p).value - id(probe)
    if not 0 < header <= 64 or ctypes.string_at(id(probe) + header, len(probe)) != probe:
        raise OSError("unexpected bytes object layout")
    return new, resize, decref, header


try:
    _new, _resize, _decref, _HEADER = _cpython_api()
    ZERO_COPY = True
except (AttributeError, OSError, TypeError):  # pragma: no cover - not CPython
    ZERO_COPY = False


if ZERO_COPY:

    class _BytesBuffer(RawBuffer):
        # _obj is the raw address of a bytes object whose one reference is
        # ours; it becomes a Python object only in finish().
        __slots__ = ()

        def __init__(self, size: int):
            self._obj = _new(None, size)  # raises MemoryError on failure
            self.address = self._obj + _HEADER
            self.size = size

        def finish(self, n: int) -> bytes:
            p, self._obj = self._obj, None
            if n != self.size:
                box = ctypes.c_void_p(p)
                _resize(ctypes.byref(box), n)  # frees the object and raises on failure
                p = box.value
            data = ctypes.cast(p, ctypes.py_object).value  # a second reference...
            _decref(p)  # ...and ours given up: data is now the only one
            return data

        def discard(self) -> None:
            p, self._obj = self._obj, None
            if p:
                _decref(p)

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
            self.discard()
            return data

        def discard(self) -> None:
            self._array = None
            self._obj = None

    new_buffer = _CopyBuffer
