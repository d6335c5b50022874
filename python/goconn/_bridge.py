"""One goconn loop per asyncio loop, and the callback trampolines.

Every asyncio loop that uses goconn gets a goconn_loop whose descriptor (an
epoll set of its event queue and the sockets of plain connections that are
reading) is watched with loop.add_reader. When it is readable,
goconn_loop_dispatch runs the pending events, and reads those sockets, on the
asyncio thread: the library never runs Python code on its own threads.

The C library calls back through one set of module-level ctypes trampolines
(made once, kept alive for the life of the process). The "protocol pointer"
the library carries is an integer key into _objects, which maps it to the
request or transport it belongs to.

SystemExit and KeyboardInterrupt raised inside a callback cannot unwind
through C: they are stored and re-raised as soon as the C call that ran the
callback returns.

Closing the asyncio loop ends its goconn connections: asyncio's loop.close()
drops its selector and with it the last references to its transports, whose
sockets then close (with a ResourceWarning). Here the library holds them, so
loop.close() aborts every transport of the loop and cancels its requests
without calling the protocols (asyncio calls nothing after close either),
waits for the library to let them go, and frees the goconn loop.
"""

from __future__ import annotations

import asyncio
import ctypes
import itertools
import os
import select
import time
import weakref
from typing import Any

from . import _ffi
from ._errors import raise_for_code

_objects: dict[int, Any] = {}
_keys = itertools.count(1)
_pending: list[BaseException] = []  # BaseExceptions waiting to be re-raised

_forked = False


def _after_fork_in_child() -> None:
    global _forked
    _forked = True
    _bridges.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def check_not_forked() -> None:
    if _forked:
        raise RuntimeError(
            "goconn cannot be used in a child process after fork(): the Go runtime's "
            "threads do not survive fork; use the 'spawn' or 'forkserver' start method"
        )


def register(obj: Any) -> int:
    key = next(_keys)
    _objects[key] = obj
    return key


def unregister(key: int) -> None:
    _objects.pop(key, None)


def reraise_pending() -> None:
    """Re-raise a SystemExit/KeyboardInterrupt caught inside a callback."""
    if _pending:
        exc = _pending.pop(0)
        _pending.clear()
        raise exc


def _guard(fn):
    """Wrap a trampoline body: Exceptions are our bugs and go to the loop's
    exception handler; BaseExceptions wait for the C call to return."""

    def call(*args):
        try:
            return fn(*args)
        except (SystemExit, KeyboardInterrupt) as exc:
            _pending.append(exc)
        except BaseException as exc:  # pragma: no cover - a bug in goconn
            _internal_error(exc)
        return 0

    call.__name__ = fn.__name__
    return call


def _internal_error(exc: BaseException) -> None:
    try:
        loop = asyncio.get_event_loop()
        loop.call_exception_handler({"message": "goconn: internal error in a callback", "exception": exc})
    except Exception:
        pass


# ---- trampolines -------------------------------------------------------------


def _factory(userdata, transport, protocol_out):
    try:
        return _objects[userdata]._make_transport(transport, protocol_out)
    except (SystemExit, KeyboardInterrupt) as exc:
        _pending.append(exc)
        return 1


# The two callbacks of every read are _guard's work written out: one
# Python call fewer each, on the hottest path there is.


def _get_buffer(key, size_hint, size_out):
    try:
        return _objects[key]._get_buffer(size_hint, size_out)
    except (SystemExit, KeyboardInterrupt) as exc:
        _pending.append(exc)
    except BaseException as exc:  # pragma: no cover - a bug in goconn
        _internal_error(exc)
    return 0


def _buffer_updated(key, n):
    try:
        _objects[key]._buffer_updated(n)
    except (SystemExit, KeyboardInterrupt) as exc:
        _pending.append(exc)
    except BaseException as exc:  # pragma: no cover - a bug in goconn
        _internal_error(exc)


def _eof_body(key):
    return _objects[key]._eof_received()


def _eof(key):
    try:
        return _eof_body(key)
    except (SystemExit, KeyboardInterrupt) as exc:
        _pending.append(exc)
        return 1


@_guard
def _lost(key, err):
    _objects[key]._connection_lost(err)


@_guard
def _pause(key):
    _objects[key]._pause_writing()


@_guard
def _resume(key):
    _objects[key]._resume_writing()


@_guard
def _done(userdata, transport, protocol, err):
    _objects[userdata]._done(transport, protocol, err)


FACTORY = _ffi.FACTORY(_factory)
DONE = _ffi.DONE(_done)
PROTOCOL = _ffi.Protocol(
    _ffi.PROTOCOL_VERSION,
    FACTORY,
    # connection_made is called from on_done instead, which the library calls
    # right after it in the same dispatch: one crossing of ctypes fewer.
    _ffi.MADE(),
    # Data always comes through get_buffer/buffer_updated (see _rawbytes):
    # a plain Protocol's bytes are read straight into the bytes object it
    # receives, a BufferedProtocol's into its own buffer.
    _ffi.DATA(),
    _ffi.EOF(_eof),
    _ffi.LOST(_lost),
    _ffi.VOID(_pause),
    _ffi.VOID(_resume),
    _ffi.GET_BUFFER(_get_buffer),
    _ffi.BUFFER_UPDATED(_buffer_updated),
)


# ---- one goconn loop per asyncio loop -------------------------------------------


class Bridge:
    """The goconn_loop of one asyncio loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.lib = _ffi.bind()
        # create_connection copies this instead of making and initialising
        # options per call: goconn_options_init's defaults, this loop, and one
        # message buffer (read right after the synchronous call that fills it,
        # on the loop's own thread). Made first: nothing to free if it fails.
        self.errbuf = ctypes.create_string_buffer(512)
        template = _ffi.Options()
        rc = self.lib.goconn_options_init(ctypes.byref(template), _ffi.OPTIONS_VERSION)
        if rc != 0:
            raise_for_code(rc)
        template.errbuf = ctypes.addressof(self.errbuf)
        template.errbuf_size = len(self.errbuf)
        handle = ctypes.c_void_p()
        rc = self.lib.goconn_loop_new(ctypes.byref(handle))
        if rc != 0:
            raise_for_code(rc)
        self.handle = handle.value
        self.fd = self.lib.goconn_loop_fd(self.handle)
        self._dispatch = self.lib.goconn_loop_dispatch  # looked up once: it runs per event
        self._loop = weakref.ref(loop)
        self.closed = False
        # The scratch buffer of small reads, of reads whose size the kernel
        # did not tell, and of every read where there is no zero-copy path
        # (_transport._get_buffer). One per loop is enough: the loop's reads
        # (and TLS hand-overs) run one at a time on its thread, each is
        # copied out before the next, and the library asks get_buffer again
        # before every read, so a transport whose read found nothing never
        # relies on what another one later wrote there.
        self.scratch = ctypes.create_string_buffer(SCRATCH_SIZE)
        self.scratch_address = ctypes.addressof(self.scratch)
        self.scratch_view = memoryview(self.scratch).cast("B")
        template.loop = self.handle
        self.options_template = template
        loop.add_reader(self.fd, self.dispatch)
        self._finalizer = weakref.finalize(loop, _free_loop, self.lib, self.handle)
        _hook_close(loop, weakref.ref(self))

    def new_options(self):
        """Fresh options for one goconn_open_connection call on this loop."""
        return _ffi.Options.from_buffer_copy(self.options_template)

    def dispatch(self) -> None:
        n = self._dispatch(self.handle, 0)
        if n < 0:
            if n in (_ffi.EPOISONED, _ffi.EINTERNAL):
                self._poisoned(n)
            elif n != _ffi.EREENTRANT:
                raise_for_code(n)
        reraise_pending()

    def loop_closed(self) -> None:
        """The asyncio loop was closed: end its connections and free the goconn loop."""
        if self.closed:
            return
        self.closed = True
        loop = self._loop()
        if loop is not None:
            _bridges.pop(loop, None)
        for obj in list(_objects.values()):
            if loop is not None and _owner(obj) is loop:
                obj._orphan()
        # Their connection_lost and on_done events come through the queue (a
        # cancelled connect a little later): dispatch until the library lets
        # the loop go. The orphans call no user code.
        deadline = time.monotonic() + _CLOSE_DRAIN_SECONDS
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        while True:
            if self.lib.goconn_loop_dispatch(self.handle, 0) in (_ffi.EPOISONED, _ffi.EINTERNAL):
                break
            _pending.clear()
            if self.lib.goconn_loop_free(self.handle) == 0:
                self._finalizer.detach()
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break  # left to the finalizer
            poller.poll(min(remaining, 0.05) * 1000)

    def _poisoned(self, code: int) -> None:
        """The library hit an internal panic and is unusable: stop watching
        its fd (it would stay readable forever) and end every request and
        connection of this loop with a RuntimeError, once."""
        loop = self._loop()
        if loop is not None:
            loop.remove_reader(self.fd)
        exc = RuntimeError(f"goconn: {self.lib.goconn_strerror(code).decode()}")
        for key, obj in list(_objects.items()):
            if getattr(obj, "loop", None) is loop or getattr(obj, "_loop", None) is loop:
                obj._library_failed(exc)
        raise exc


# The size of a loop's scratch buffer (see _transport._get_buffer).
SCRATCH_SIZE = 64 * 1024

# How long loop.close() waits for the library to end the loop's connections.
_CLOSE_DRAIN_SECONDS = 5.0


def _owner(obj: Any) -> Any:
    """The asyncio loop a request (.loop) or transport (._loop) belongs to."""
    loop = getattr(obj, "loop", None)
    return loop if loop is not None else getattr(obj, "_loop", None)


def _hook_close(loop: asyncio.AbstractEventLoop, bridge_ref) -> None:
    """Make loop.close() end the loop's goconn connections (after asyncio's close)."""
    close = loop.close

    def close_loop() -> None:
        close()
        b = bridge_ref()
        if b is not None and loop.is_closed():
            b.loop_closed()

    close_loop.__doc__ = close.__doc__
    try:
        loop.close = close_loop  # type: ignore[method-assign]
    except (AttributeError, TypeError):  # a loop without an instance __dict__
        pass


def _free_loop(lib, handle) -> None:
    # Frees the goconn loop with its asyncio loop, when loop.close() did not
    # (it was never closed, or its connections outlived the wait there). A
    # loop that still has live connections (-EBUSY) is left alone; its
    # connections keep their sockets until the process exits.
    if not _forked:
        lib.goconn_loop_free(handle)


_bridges: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Bridge]" = weakref.WeakKeyDictionary()


def bridge_for(loop: asyncio.AbstractEventLoop) -> Bridge:
    check_not_forked()
    b = _bridges.get(loop)
    if b is None:
        b = Bridge(loop)
        _bridges[loop] = b
    return b
