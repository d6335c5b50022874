"""The transport: asyncio's plain-TCP transport contract over a goconn handle.

The state machine (buffering, flow control, close/abort, reading) lives in
the Go core; this class adapts it to asyncio: exception types and messages,
the exception-handler reports of spec section 9, BufferedProtocol, extra
info, and the hooks asyncio's start_tls, sendfile and streams rely on.
"""

from __future__ import annotations

import asyncio
import contextvars
import ctypes
import errno
import logging
import socket
from asyncio import trsock
from typing import Any

from . import _bridge, _errors, _ffi, _rawbytes

logger = logging.getLogger("asyncio")

# asyncio's constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES
_LOG_THRESHOLD_FOR_CONNLOST_WRITES = 5

_DEAD = -errno.EBADF
_MAX_READ = 256 * 1024  # asyncio's max_size for one recv
# Reads of at most this many bytes go through the loop's scratch buffer.
_SMALL_READ = 512


class GoconnTransport(asyncio.transports._FlowControlMixin, asyncio.Transport):
    """A TCP connection made by goconn, with asyncio's Transport API."""

    # loop.start_tls() and StreamWriter.start_tls() accept this transport.
    _start_tls_compatible = True
    # loop.sendfile() uses asyncio's write-based fallback (it needs _FlowControlMixin and
    # _protocol_paused); without this attribute it refuses the transport outright.
    _sendfile_compatible = asyncio.constants._SendfileMode.FALLBACK
    # Set when the asyncio loop was closed under the connection (_bridge): the
    # connection is aborted and its events reach no protocol any more.
    _orphaned = False
    # asyncio's default write buffer limits, (low, high), for this kind of
    # transport: what the library starts with too.
    _DEFAULT_LIMITS = (16 * 1024, 64 * 1024)

    def __init__(self, loop, handle: int, protocol, sock: socket.socket, attempts,
                 context: contextvars.Context | None = None, adopted: bool = False):
        # Not super().__init__: the water marks live in the Go core.
        asyncio.BaseTransport.__init__(self, None)
        self._loop = loop
        # Protocol callbacks run in the connecting caller's context, as
        # asyncio's handles do.
        self._context = context if context is not None else contextvars.copy_context()
        # An adopted socket is the caller's object and closes its own
        # descriptor at the end; a socket object made here only wraps the
        # library's descriptor and forgets it.
        self._adopted = adopted
        self._lost_context: contextvars.Context | None = None
        self._lib = _ffi.bind()
        self._handle = handle
        self._key = _bridge.register(self)
        self._protocol = None
        self._buffered = False
        self._rbuf = None  # the _rawbytes object lent to the library, if any
        # The loop's scratch buffer, which takes small reads and reads of
        # unknown size (see _get_buffer), and whether the last buffer lent was it.
        bridge = _bridge.bridge_for(loop)
        self._scratch_address = bridge.scratch_address
        self._scratch_view = bridge.scratch_view
        self._in_scratch = False
        self._uview = None  # (memoryview, ctypes array) of a lent protocol buffer
        self.set_protocol(protocol)
        self._protocol_paused = False  # read by loop.sendfile's fallback
        self._sock = sock
        self._sock_fd = sock.fileno()
        self._eof = False
        self._lost = False
        self._conn_lost_writes = 0
        # The write buffer limits, (low, high): the library's, kept here too,
        # so reading them needs no call and works after the handle is gone.
        self._limits = self._DEFAULT_LIMITS
        self._fatal_exc: BaseException | None = None
        self._extra["socket"] = trsock.TransportSocket(sock)
        for key, getter in (("sockname", sock.getsockname), ("peername", sock.getpeername)):
            try:
                self._extra[key] = getter()
            except OSError:
                self._extra[key] = None
        # The trace is read from the library on first use (or before the
        # handle dies): building it costs more than the rest of this.
        self._trace = attempts
        # asyncio registers transports by fd, so add_reader() on it is refused.
        transports = getattr(loop, "_transports", None)
        if transports is not None:
            try:
                transports[self._sock_fd] = self
            except TypeError:
                pass

    def get_extra_info(self, name, default=None):
        if name == "attempts":
            return self._trace_now()
        return super().get_extra_info(name, default)

    def _trace_now(self):
        if callable(self._trace):
            self._trace = self._trace()
        return self._trace

    def _save_trace(self) -> None:
        # The library frees its trace when connection_lost returns: keep
        # cheap copies of it, built into a Trace only if it is ever asked for.
        if callable(self._trace):
            self._trace = self._trace(_errors.trace_snapshot)

    def __repr__(self) -> str:
        info = [self.__class__.__name__]
        if self._lost:
            info.append("closed")
        elif self.is_closing():
            info.append("closing")
        info.append(f"fd={self._sock_fd}")
        if not self._lost:
            info.append("read=" + ("polling" if self.is_reading() else "idle"))
            size = self.get_write_buffer_size()
            info.append(f"write=<{'polling' if size else 'idle'}, bufsize={size}>")
        return "<{}>".format(" ".join(info))

    # ---- calls into the library ---------------------------------------------

    def _call(self, fn, *args) -> int:
        return fn(self._handle, *args) if not self._lost else _DEAD

    # ---- the Transport API ---------------------------------------------------

    def write(self, data) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, not {type(data).__name__!r}")
        if self._eof:
            raise RuntimeError("Cannot call write() after write_eof()")
        if not data:
            return
        if self._lost:
            rc = _ffi.ECLOSING
        elif isinstance(data, bytes):
            rc = self._lib.goconn_transport_write(self._handle, data, len(data))
        else:
            view = memoryview(data)
            if not view.c_contiguous:
                copy = view.tobytes()
                view.release()
                if not self.get_write_buffer_size() and not self.is_closing():
                    # asyncio's synchronous sock.send() refuses such a view: a fatal error.
                    self._fatal_error(
                        BufferError("memoryview: underlying buffer is not C-contiguous"),
                        "Fatal write error on socket transport",
                    )
                    return
                view = memoryview(copy)  # behind buffered data asyncio copies it into its buffer
            view = view.cast("B")
            if view.readonly:
                buf = bytes(view)
                rc = self._lib.goconn_transport_write(self._handle, buf, len(buf))
            else:
                cbuf = (ctypes.c_char * view.nbytes).from_buffer(view)
                rc = self._lib.goconn_transport_write(self._handle, cbuf, view.nbytes)
                del cbuf
            view.release()
        if rc == _ffi.ECLOSING or rc == _DEAD:
            # asyncio drops writes on a closing connection, and warns from the fifth.
            self._conn_lost_writes += 1
            if self._conn_lost_writes >= _LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                logger.warning("socket.send() raised exception.")
        elif rc == _ffi.EWRITEEOF:
            raise RuntimeError("Cannot call write() after write_eof()")
        elif rc < 0:
            _errors.raise_for_code(rc)
        _bridge.reraise_pending()

    # writelines is WriteTransport's: write(b''.join(list_of_data)), as in 3.11.

    def write_eof(self) -> None:
        if self._eof or self.is_closing():
            return
        self._eof = True
        rc = self._call(self._lib.goconn_transport_write_eof)
        if rc < 0 and rc != _DEAD:
            _errors.raise_for_code(rc)

    def can_write_eof(self) -> bool:
        return True

    def close(self) -> None:
        self._note_lost_context()
        self._call(self._lib.goconn_transport_close)

    def abort(self) -> None:
        self._note_lost_context()
        self._call(self._lib.goconn_transport_abort)

    def _note_lost_context(self) -> None:
        # asyncio schedules connection_lost with call_soon from close() or
        # abort(), so it runs in a copy of the caller's context.
        if self._lost_context is None and not self._lost:
            self._lost_context = contextvars.copy_context()

    def is_closing(self) -> bool:
        rc = self._call(self._lib.goconn_transport_is_closing)
        return rc != 0

    def pause_reading(self) -> None:
        self._call(self._lib.goconn_transport_pause_reading)

    def resume_reading(self) -> None:
        self._call(self._lib.goconn_transport_resume_reading)

    def is_reading(self) -> bool:
        return self._call(self._lib.goconn_transport_is_reading) == 1

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        if self._lost:
            # The library has let the connection go; asyncio still checks and keeps them.
            if high is None:
                high = self._DEFAULT_LIMITS[1] if low is None else 4 * low
            if low is None:
                low = high // 4
            if not high >= low >= 0:
                raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
            self._limits = (low, high)
            return
        h = _ffi.LIMIT_DEFAULT if high is None else _limit(high)
        l = _ffi.LIMIT_DEFAULT if low is None else _limit(low)
        errbuf = ctypes.create_string_buffer(256)
        rc = self._lib.goconn_transport_set_write_buffer_limits(self._handle, h, l, errbuf, len(errbuf))
        if rc == -errno.EINVAL:
            raise ValueError(errbuf.value.decode())
        if rc < 0 and rc != _DEAD:
            _errors.raise_for_code(rc)
        if rc == 0:
            # As the library derived them (a missing mark from the other).
            low_out, high_out = ctypes.c_int64(), ctypes.c_int64()
            if self._call(self._lib.goconn_transport_get_write_buffer_limits,
                          ctypes.byref(low_out), ctypes.byref(high_out)) == 0:
                self._limits = (low_out.value, high_out.value)
        _bridge.reraise_pending()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._limits

    def get_write_buffer_size(self) -> int:
        size = ctypes.c_size_t()
        if self._call(self._lib.goconn_transport_get_write_buffer_size, ctypes.byref(size)) < 0:
            return 0
        return size.value

    def set_protocol(self, protocol) -> None:
        self._buffered = isinstance(protocol, asyncio.BufferedProtocol)
        self._protocol = protocol

    def get_protocol(self):
        return self._protocol

    # ---- asyncio's _fatal_error and _force_close ------------------------------

    def _fatal_error(self, exc: BaseException, message: str) -> None:
        if isinstance(exc, OSError):
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=True)
        else:
            self._loop.call_exception_handler(
                {"message": message, "exception": exc, "transport": self, "protocol": self._protocol}
            )
        self._force_close(exc)

    def _force_close(self, exc: BaseException | None) -> None:
        # Also called by asyncio's SSLProtocol (loop.start_tls) on the transport it runs
        # over, when the handshake fails or the TLS shutdown times out.
        # abort returns 1 only if it ended the connection; otherwise
        # connection_lost is already on its way with its own error.
        if self._call(self._lib.goconn_transport_abort) == 1:
            self._fatal_exc = exc

    # ---- events from the library (called on the loop's thread) ----------------

    def _connection_made(self) -> None:
        asyncio.Handle(self._protocol.connection_made, (self,), self._loop, self._context)._run()

    # ---- receiving: the library's get_buffer and buffer_updated ---------------
    # The library asks for memory before each read (or, for TLS, each piece of
    # decrypted data): a new bytes object for a Protocol (_rawbytes), so the
    # kernel writes straight into what data_received gets; the protocol's own
    # buffer for a BufferedProtocol, as asyncio's recv_into does.

    def _get_buffer(self, size_hint: int, size_out) -> int:
        if self._orphaned:
            return 0  # aborted already: no user code, no read
        if self._buffered:
            return self._context.run(self._user_buffer, size_hint, size_out)
        if size_hint <= _SMALL_READ or not _rawbytes.ZERO_COPY:
            # Little is waiting, or an unknown amount (the kernel did not
            # say, or nothing is, and the read finds the end of the stream):
            # into the loop's scratch buffer, copied out in _buffer_updated.
            # For a few hundred bytes the copy costs less than the object.
            self._in_scratch = True
            size_out[0] = _bridge.SCRATCH_SIZE
            return self._scratch_address
        self._in_scratch = False
        obj = self._rbuf
        want = size_hint if size_hint < _MAX_READ else _MAX_READ
        if obj is None or len(obj) < want:
            # (An object that got nothing last time is lent again if it is big enough.)
            self._rbuf = None
            try:
                obj = _rawbytes.new_bytes(want)
            except MemoryError as exc:
                self._context.run(self._fatal_error, exc, "Fatal read error on socket transport")
                return 0
            self._rbuf = obj
        size_out[0] = len(obj)
        return id(obj) + _rawbytes.HEADER

    def _buffer_updated(self, n: int) -> None:
        if self._orphaned:
            self._release_buffers()
            return
        if self._buffered:
            self._context.run(self._user_buffer_updated, n)
            return
        if self._in_scratch:
            self._in_scratch = False
            data = bytes(self._scratch_view[:n])
        else:
            data, self._rbuf = self._rbuf, None
            if n != len(data):
                data = data[:n]
        self._context.run(self._call_data_received, data)

    def _call_data_received(self, data: bytes) -> None:
        try:
            self._protocol.data_received(data)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")

    def _user_buffer(self, size_hint: int, size_out) -> int:
        self._release_buffers()
        try:
            buf = self._protocol.get_buffer(-1)
            if not len(buf):
                raise RuntimeError("get_buffer() returned an empty buffer")
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.get_buffer() call failed.")
            return 0
        try:
            return self._lend_buffer(buf, size_out)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            # asyncio's recv_into fails the same way on a read-only buffer.
            self._fatal_error(exc, "Fatal read error on socket transport")
            return 0

    def _lend_buffer(self, buf, size_out) -> int:
        """The address of a writable buffer, kept exported until the library
        has written it (buffer_updated) or lets it go."""
        view = memoryview(buf).cast("B")
        array = (ctypes.c_char * view.nbytes).from_buffer(view)
        self._uview = (view, array)
        size_out[0] = view.nbytes
        return ctypes.addressof(array)

    def _user_buffer_updated(self, n: int) -> None:
        self._release_buffers()
        try:
            self._protocol.buffer_updated(n)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.buffer_updated() call failed.")

    def _release_buffers(self) -> None:
        if self._uview is not None:
            view, array = self._uview
            self._uview = None
            del array  # drops its export of the view
            view.release()
        self._in_scratch = False
        self._rbuf = None

    def _eof_received(self) -> int:
        if self._orphaned:
            return 1  # aborted already
        return self._context.run(self._deliver_eof)

    def _deliver_eof(self) -> int:
        if self._loop.get_debug():
            logger.debug("%r received EOF", self)
        try:
            keep_open = self._protocol.eof_received()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.eof_received() call failed.")
            return 1  # the fatal error already ends the connection
        return 1 if keep_open else 0

    def _pause_writing(self) -> None:
        if self._orphaned:
            return
        self._protocol_paused = True
        try:
            self._protocol.pause_writing()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler(
                {"message": "protocol.pause_writing() failed", "exception": exc,
                 "transport": self, "protocol": self._protocol}
            )

    def _resume_writing(self) -> None:
        if self._orphaned:
            return
        self._context.run(self._deliver_resume)

    def _deliver_resume(self) -> None:
        self._protocol_paused = False
        try:
            self._protocol.resume_writing()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler(
                {"message": "protocol.resume_writing() failed", "exception": exc,
                 "transport": self, "protocol": self._protocol}
            )

    def _connection_lost(self, err) -> None:
        if self._orphaned:
            # The loop is closed: let the socket go without calling the protocol.
            self._lost = True
            self._release_buffers()
            self._release()
            return
        self._save_trace()  # while the handle lives
        exc = self._fatal_exc
        if exc is None and err:
            exc = _errors.exception_from(err.contents, "read")
        self._fatal_exc = None
        self._lost = True
        self._release_buffers()
        try:
            context = self._lost_context or self._context
            asyncio.Handle(self._call_connection_lost, (exc,), self._loop, context)._run()
        finally:
            self._release()

    def _call_connection_lost(self, exc) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._protocol = None

    def _release(self) -> None:
        # The library closes the descriptor after this callback returns: the
        # socket object must forget it first, so it never closes it twice.
        transports = getattr(self._loop, "_transports", None)
        if transports is not None and transports.get(self._sock_fd) is self:
            del transports[self._sock_fd]
        if self._adopted:
            self._sock.close()  # the library closed only its duplicate
        else:
            self._sock.detach()  # the library closes this descriptor right after
        _bridge.unregister(self._key)

    def _orphan(self) -> None:
        # The asyncio loop was closed (see _bridge.Bridge.loop_closed).
        self._orphaned = True
        if not self._lost:
            self._lib.goconn_transport_abort(self._handle)

    def _library_failed(self, exc: BaseException) -> None:
        # The library is poisoned: deliver connection_lost once and let go.
        if self._lost:
            return
        self._lost = True
        self._release_buffers()  # a poisoned library dispatches nothing more
        try:
            asyncio.Handle(self._call_connection_lost, (exc,), self._loop, self._context)._run()
        finally:
            if self._adopted:
                self._sock.close()  # the library works on duplicates only
            else:
                self._sock.detach()  # the (poisoned) library still holds it
            _bridge.unregister(self._key)


def _limit(v) -> int:
    v = int(v)
    return max(min(v, 2**63 - 1), -(2**63) + 1)


class GoconnSSLTransport(GoconnTransport):
    """A TLS connection made by goconn: asyncio's _SSLProtocolTransport API
    (spec 7.9 and 7.10). The handshake, encryption and shutdown run in the
    Go core, off the event loop's thread."""

    # asyncio's SSL transport defaults (FLOW_CONTROL_HIGH_WATER_SSL_WRITE).
    _DEFAULT_LIMITS = (128 * 1024, 512 * 1024)

    def __init__(self, loop, handle, protocol, sock, attempts, sslcontext, server_hostname,
                 context: contextvars.Context | None = None, adopted: bool = False):
        super().__init__(loop, handle, protocol, sock, attempts, context, adopted)
        from . import _tls

        info, chain = _tls.session_info(self._lib, handle)
        self._ssl_info = info
        self._ssl_object = _tls.SSLObject(sslcontext, info, chain)
        if server_hostname:
            self._ssl_object.server_hostname = server_hostname
        self._ssl_dropped = 0  # asyncio's SSLProtocol._conn_lost
        self._read_limits = (65536, 262144)
        self._made_exc: BaseException | None = None
        self._extra.update(
            sslcontext=sslcontext,
            cipher=self._ssl_object.cipher(),
            compression=None,
            ssl_object=self._ssl_object,
        )

    def get_extra_info(self, name, default=None):
        if name == "peercert":
            # Decoded on first use: Python's getpeercert() format, {} when unverified.
            if "peercert" not in self._extra:
                self._extra["peercert"] = self._ssl_object.getpeercert()
        return super().get_extra_info(name, default)

    def write(self, data) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data: expecting a bytes-like instance, got {type(data).__name__}")
        if not data:
            return
        self._write_tls(data)

    def writelines(self, list_of_data) -> None:
        data = b"".join(list_of_data)
        if data:
            self._write_tls(data)

    def _write_tls(self, data) -> None:
        if self._lost:
            rc = _ffi.ECLOSING
        else:
            buf = bytes(data) if not isinstance(data, bytes) else data
            rc = self._lib.goconn_transport_write(self._handle, buf, len(buf))
        if rc == _ffi.ECLOSING or rc == _DEAD:
            if self._ssl_dropped >= _LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                logger.warning("SSL connection is closed")
            self._ssl_dropped += 1
        elif rc < 0:
            _errors.raise_for_code(rc)
        _bridge.reraise_pending()

    def write_eof(self):
        raise NotImplementedError

    def can_write_eof(self) -> bool:
        return False

    def is_reading(self) -> bool:
        return self._call(self._lib.goconn_transport_is_reading) == 1 if not self._lost else not self._ssl_paused_after_lost

    _ssl_paused_after_lost = False

    def get_read_buffer_limits(self) -> tuple[int, int]:
        return self._read_limits

    def set_read_buffer_limits(self, high=None, low=None) -> None:
        # asyncio's add_flowcontrol_defaults with FLOW_CONTROL_HIGH_WATER_SSL_READ;
        # the Go core reads ahead by its own bound, so these only report.
        if high is None:
            high = 256 * 1024 if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError("high (%r) must be >= low (%r) must be >= 0" % (high, low))
        self._read_limits = (low, high)

    def get_read_buffer_size(self) -> int:
        return 0

    def _connection_made(self) -> None:
        self._context.run(self._made_tls)

    def _made_tls(self) -> None:
        # asyncio's SSLProtocol calls connection_made directly: an exception
        # there is a fatal error of the connection, and create_connection
        # raises it.
        try:
            self._protocol.connection_made(self)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._made_exc = exc
            self._fatal_error(exc, "Fatal error: protocol.buffer_updated() call failed.")

    # asyncio's SSLProtocol feeds the app protocol from its own buffer: a
    # BufferedProtocol is asked with the size waiting, and every failure is
    # "Fatal error on SSL protocol".

    def _call_data_received(self, data: bytes) -> None:
        try:
            self._protocol.data_received(data)
        except (SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:
            self._fatal_error(exc, "Fatal error on SSL protocol")

    def _user_buffer(self, size_hint: int, size_out) -> int:
        self._release_buffers()
        try:
            buf = self._protocol.get_buffer(size_hint)
            if not len(memoryview(buf)):
                raise RuntimeError("get_buffer() returned an empty buffer")
            return self._lend_buffer(buf, size_out)
        except (SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:
            self._fatal_error(exc, "Fatal error on SSL protocol")
            return 0

    def _user_buffer_updated(self, n: int) -> None:
        self._release_buffers()
        try:
            self._protocol.buffer_updated(n)
        except (SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:
            self._fatal_error(exc, "Fatal error on SSL protocol")

    def _deliver_eof(self) -> int:
        try:
            keep_open = self._protocol.eof_received()
            if keep_open:
                logger.warning("returning true from eof_received() has no effect when using ssl")
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Error calling eof_received()")
        return 0

    def _connection_lost(self, err) -> None:
        self._ssl_dropped += 1
        self._ssl_paused_after_lost = not self.is_reading()
        super()._connection_lost(err)

    def __repr__(self) -> str:
        return super().__repr__().replace("GoconnTransport", type(self).__name__, 1)
