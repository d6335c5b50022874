"""Receive memory that becomes the ``bytes`` handed to ``data_received``.

The library's get_buffer callback asks where to put the next bytes, with a
hint of how many are waiting (the socket's FIONREAD on plain TCP, the size
of the decrypted piece under TLS). For a plain ``asyncio.Protocol`` and a
read of some size the answer is a new, not yet shared ``bytes`` object of
that size: the library reads the socket straight into it (or copies
decrypted TLS data into it), and it is passed on as is. That is what
CPython's own ``socket.recv()`` does, and it means received data is copied
once, by the kernel, as under asyncio. The size comes from the hint, so the
object need not be shrunk: only a read that got fewer bytes than were
announced (which a socket with one reader does not do) costs a copy of what
it got.

It needs CPython's C API through ``ctypes.pythonapi``:
PyBytes_FromStringAndSize with a NULL source makes an uninitialised object
nobody else can see yet. Where that is missing (another implementation),
ZERO_COPY is False and the transport reads into its loop's scratch buffer
and copies out, as it does for small reads anyway.

HEADER is where a bytes object's characters start, counted from id(obj)
(CPython's layout, measured at import).
"""

from __future__ import annotations

import ctypes

__all__ = ["HEADER", "ZERO_COPY", "new_bytes"]


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
    _new, HEADER = _cpython_api()
    ZERO_COPY = True
except (AttributeError, OSError, TypeError):  # pragma: no cover - not CPython
    _new, HEADER = None, 0
    ZERO_COPY = False


def new_bytes(size: int) -> bytes:
    """A new bytes object of size (>= 1) whose contents are not set yet.

    Only the caller refers to it; it must be filled, at id(obj) + HEADER,
    before anyone else sees it. Raises MemoryError. ZERO_COPY must be True. (Size 0
    would be CPython's shared empty object: the library never asks for it.)
    """
    return _new(None, size)
