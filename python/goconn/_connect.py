"""create_connection: asyncio's argument rules, then the library does the rest."""

from __future__ import annotations

import asyncio
import contextvars
import ctypes
import errno
import os
import socket
import ssl as _ssl_module
import struct
from typing import Any, Callable

from . import _bridge, _errors, _ffi
from . import _tls
from ._transport import GoconnSSLTransport, GoconnTransport


class _Request:
    """One create_connection call, from goconn_open_connection to on_done."""

    def __init__(self, loop, protocol_factory, sock):
        self.loop = loop
        self.protocol_factory = protocol_factory
        self.sock = sock
        self.future: asyncio.Future = loop.create_future()
        self.factory_error: BaseException | None = None
        self.key = _bridge.register(self)
        self.handle: int | None = None
        # Protocol callbacks run in a copy of the caller's context, as
        # asyncio's call_soon and add_reader handles do.
        self.context = contextvars.copy_context()
        self.lent_fd = -1  # the duplicate of sock's fd lent to the library
        self.ssl: tuple = (None, None, None, None)
        # Set when the asyncio loop was closed under the call (_bridge).
        self.orphaned = False

    def _orphan(self) -> None:
        self.orphaned = True
        if self.handle is not None:
            _ffi.bind().goconn_request_cancel(self.handle)

    def _make_transport(self, handle: int, protocol_out) -> int:
        if self.orphaned:
            return 1  # the loop is closed: no protocol is made (on_done follows)
        try:
            protocol = self.protocol_factory()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self.factory_error = exc
            return 1
        try:
            # asyncio's transport looks this up when it is built: a factory that returns
            # None fails with "'NoneType' object has no attribute 'connection_made'".
            protocol.connection_made
        except AttributeError as exc:
            self.factory_error = exc
            return 1
        lib = _ffi.bind()
        sock = self.sock
        if sock is None:
            # The library's sockets are always TCP streams: only the family
            # is looked up (one getsockname instead of three system calls).
            sock = socket.socket(-1, socket.SOCK_STREAM, socket.IPPROTO_TCP, lib.goconn_transport_get_fd(handle))
        sslcontext, server_hostname = self.ssl[0], self.ssl[1]
        if sslcontext is not None:
            transport = GoconnSSLTransport(self.loop, handle, protocol, sock, _trace_reader(lib, handle),
                                           sslcontext, server_hostname, self.context, self.sock is not None)
        else:
            transport = GoconnTransport(self.loop, handle, protocol, sock, _trace_reader(lib, handle),
                                        self.context, self.sock is not None)
        protocol_out[0] = transport._key
        return 0

    def _library_failed(self, exc: BaseException) -> None:
        _bridge.unregister(self.key)
        if not self.future.done():
            self.future.set_exception(exc)

    def _done(self, transport_handle, protocol_key, err) -> None:
        _bridge.unregister(self.key)
        fut = self.future
        if self.orphaned:
            # The loop is closed: nothing may be scheduled on it. The library
            # hands a lent descriptor back after a refused factory.
            if err and self.lent_fd >= 0 and err.contents.code == _ffi.EFACTORY:
                os.close(self.lent_fd)
            self.factory_error = None
            return
        if err:
            e = err.contents
            if self.lent_fd >= 0 and e.code == _ffi.EFACTORY:
                # After a failed factory the library hands the lent
                # descriptor back; the caller's socket stays open, as in asyncio.
                os.close(self.lent_fd)
            elif self.sock is not None:
                # Cancelled or a failed TLS handshake: asyncio closes the
                # caller's socket (the library closed its duplicate).
                self.sock.close()
            if e.code == _ffi.EFACTORY and self.factory_error is not None:
                exc = self.factory_error
            else:
                exc = _errors.exception_from(e)
                if isinstance(exc, (ValueError, ConnectionAbortedError)):
                    exc = _timeout_message(exc, self.ssl[2], self.ssl[3])
            self.factory_error = None
            if not fut.done():
                if isinstance(exc, asyncio.CancelledError):
                    fut.cancel()
                else:
                    fut.set_exception(exc)
            return
        transport = _bridge._objects[protocol_key]
        transport._connection_made()  # the library called connection_made just before
        made_exc = getattr(transport, "_made_exc", None)
        if made_exc is not None and not fut.done():
            # TLS: connection_made raised, which asyncio's create_connection raises.
            fut.set_exception(made_exc)
            return
        if fut.done():
            # The caller was cancelled after the protocol was made: asyncio's
            # protocol then sees connection_made and connection_lost(None).
            transport.close()
            return
        fut.set_result((transport, transport.get_protocol()))


def _tls_context(ssl, server_hostname):
    """The SSLContext asyncio would use, checked the way asyncio's SSLProtocol
    checks it: wrap_bio raises for a server-side context (and, for an object
    that is not a context, the AttributeError asyncio would show)."""
    if isinstance(ssl, bool):
        ctx = _ssl_module.create_default_context()
        if not server_hostname:
            ctx.check_hostname = False
    else:
        ctx = ssl
    ctx.wrap_bio(_ssl_module.MemoryBIO(), _ssl_module.MemoryBIO(), server_side=False,
                 server_hostname=server_hostname or None)
    return ctx


# ssl=True makes a fresh default context per call (asyncio calls
# ssl.create_default_context() each time): their options are shared by value.
_default_prepared: dict = {}


def _tls_options(ctx, is_default: bool):
    if not is_default:
        return _tls.options_for(ctx)
    fp = _tls._fingerprint(ctx)
    prepared = _default_prepared.get(fp)
    if prepared is None:
        if len(_default_prepared) > 16:
            _default_prepared.clear()
        prepared = _default_prepared[fp] = _tls._prepare(ctx)
    return prepared


def _timeout_message(exc, handshake_timeout, shutdown_timeout):
    """Reword a timeout error with the value as the caller gave it (asyncio
    formats it with an f-string: 1, not 1.0)."""
    text = str(exc)
    for name, value in (("ssl_handshake_timeout", handshake_timeout), ("ssl_shutdown_timeout", shutdown_timeout)):
        if value is not None and text.startswith(f"{name} should be a positive number"):
            return ValueError(f"{name} should be a positive number, got {value}")
    if isinstance(exc, ConnectionAbortedError) and text.startswith("SSL handshake is taking longer than"):
        value = 60.0 if handshake_timeout is None else handshake_timeout
        new = ConnectionAbortedError(f"SSL handshake is taking longer than {value} seconds: aborting the connection")
        if hasattr(exc, "attempts"):
            new.attempts = exc.attempts
        return new
    return exc


def _trace_reader(lib, handle):
    """What a transport gets for its trace: read(build) reads it from the
    library, built into a Trace (the default) or with build's own way."""
    return lambda build=_errors.trace_from: _attempts_of(lib, handle, build)


def _attempts_of(lib, handle, build=_errors.trace_from):
    """The transport's trace: its attempts and the lookups before them (with
    build=_errors.trace_snapshot, a function that makes it later)."""
    arr = ctypes.POINTER(ctypes.POINTER(_ffi.Attempt))()
    n = ctypes.c_size_t()
    res = ctypes.POINTER(ctypes.POINTER(_ffi.Resolution))()
    m = ctypes.c_size_t()
    if lib.goconn_transport_get_attempts(handle, ctypes.byref(arr), ctypes.byref(n)) != 0:
        n.value = 0
    if lib.goconn_transport_get_resolutions(handle, ctypes.byref(res), ctypes.byref(m)) != 0:
        m.value = 0
    return build(arr, n.value, res, m.value)


def _addrinfo_list(addr_infos, keep: list):
    """getaddrinfo()-style 5-tuples as a C struct addrinfo list."""
    head = None
    prev = None
    for item in addr_infos:
        try:
            family, _type, proto, _canon, sockaddr = item
        except (TypeError, ValueError):
            raise TypeError("addr_infos items must be (family, type, proto, canonname, sockaddr) tuples") from None
        if family not in (socket.AF_INET, socket.AF_INET6):
            # Checked first: an AF_UNIX sockaddr is a path, not (host, port).
            raise ValueError("addr_infos must hold AF_INET or AF_INET6 addresses")
        host, port = sockaddr[0], int(sockaddr[1])
        if family == socket.AF_INET:
            raw = struct.pack("=H", socket.AF_INET) + port.to_bytes(2, "big") + socket.inet_pton(socket.AF_INET, host) + bytes(8)
        elif family == socket.AF_INET6:
            flowinfo = int(sockaddr[2]) if len(sockaddr) > 2 else 0
            scope = int(sockaddr[3]) if len(sockaddr) > 3 else 0
            raw = (struct.pack("=H", socket.AF_INET6) + port.to_bytes(2, "big") + flowinfo.to_bytes(4, "big")
                   + socket.inet_pton(socket.AF_INET6, host.split("%", 1)[0]) + struct.pack("=I", scope))
        else:
            raise ValueError("addr_infos must hold AF_INET or AF_INET6 addresses")
        buf = ctypes.create_string_buffer(raw, len(raw))
        node = _ffi.AddrInfoC(0, int(family), socket.SOCK_STREAM, int(proto), len(raw),
                              ctypes.cast(buf, ctypes.c_void_p), None, None)
        keep += [buf, node]
        if prev is None:
            head = node
        else:
            prev.ai_next = ctypes.pointer(node)
        prev = node
    return head


def _text(value: Any, port: bool = False) -> bytes | None:
    """host and port as create_connection passes them on (None stays None)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        if "\x00" in value:
            if port:
                # getaddrinfo receives the service as a C string: it ends at the NUL.
                value = value.split("\x00", 1)[0]
            else:
                raise ValueError("embedded null character")
        return value.encode("idna") if value else b""
    return str(int(value)).encode()  # a port that _check_address let through


def _check_address(host: Any, port: Any, family: int, proto: int) -> None:
    """Raise what asyncio raises for the *types* of host and port (the library only
    sees their text).  asyncio's numeric fast path (_ipaddr_info) int()s the port and
    scans the host; everything else goes to socket.getaddrinfo, which takes only
    str/bytes/None hosts and int/str/bytes/None ports."""
    if host is not None and proto in (0, socket.IPPROTO_TCP, socket.IPPROTO_UDP):
        fast = port is None or port == "" or port == b""
        if not fast:
            try:
                int(port)
                fast = True
            except (TypeError, ValueError):
                pass
        if fast:
            h = host.decode("idna") if isinstance(host, bytes) else host
            if "%" not in h:  # a TypeError for a host that is not a string, as in asyncio
                for af in (socket.AF_INET, socket.AF_INET6) if family == socket.AF_UNSPEC else (family,):
                    try:
                        socket.inet_pton(af, h)
                        return  # numeric host: any int()-able port will do
                    except OSError:
                        pass
    if host is not None and not isinstance(host, (str, bytes)):
        raise TypeError("getaddrinfo() argument 1 must be string or None")
    if port is not None and type(port) is not int and not isinstance(port, (str, bytes)):
        raise OSError("Int or String expected")


# host and port as the library gets them, for the (host, port) pairs a
# process connects to again and again: the checks and encodings of
# _check_address and _text are done once per pair. Only pairs that passed
# are kept, under their types as well as their values.
_address_cache: dict = {}


def _address_text(host, port, family, proto):
    key = (type(host), host, type(port), port, type(family), family, type(proto), proto)
    try:
        return _address_cache[key]
    except (KeyError, TypeError):  # TypeError: an unhashable host or port
        pass
    _check_address(host, port, family, proto)
    texts = (_text(host), _text(port, port=True))
    try:
        if len(_address_cache) >= 256:
            _address_cache.clear()
        _address_cache[key] = texts
    except TypeError:
        pass
    return texts


async def create_connection(
    loop: asyncio.AbstractEventLoop,
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    host=None,
    port=None,
    *,
    ssl=None,
    family=0,
    proto=0,
    flags=0,
    sock=None,
    local_addr=None,
    server_hostname=None,
    ssl_handshake_timeout=None,
    ssl_shutdown_timeout=None,
    happy_eyeballs_delay=None,
    interleave=None,
    all_errors=False,
    resolution_delay=None,
    attempt_timeout=None,
    connect_timeout=None,
    addr_infos=None,
    bind_address_no_port=False,
    keepalive=None,
):
    """asyncio's loop.create_connection(), made by goconn (see goconn.create_connection)."""
    # Argument checks, in asyncio's order and words (spec section 1).
    if server_hostname is not None and not ssl:
        raise ValueError("server_hostname is only meaningful with ssl")
    if server_hostname is None and ssl:
        if not host:
            raise ValueError("You must set server_hostname when using ssl without a host")
        server_hostname = host
    if ssl_handshake_timeout is not None and not ssl:
        raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
    if ssl_shutdown_timeout is not None and not ssl:
        raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
    if sock is not None and isinstance(sock, _ssl_module.SSLSocket):
        raise TypeError("Socket cannot be of type SSLSocket")
    if happy_eyeballs_delay is not None and interleave is None:
        interleave = 1
    if host is not None or port is not None or addr_infos is not None:
        if sock is not None:
            raise ValueError("host/port and sock can not be specified at the same time")
    else:
        if sock is None:
            raise ValueError("host and port was not specified and no sock specified")
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f"A Stream Socket was expected, got {sock!r}")
    sslcontext = None
    if ssl:
        sslcontext = _tls_context(ssl, server_hostname)

    _bridge.check_not_forked()
    bridge = _bridge.bridge_for(loop)
    lib = bridge.lib
    opts = bridge.new_options()
    keep = []  # the bytes the options point to, alive for the call
    if sock is None:
        h, p = _address_text(host, port, family, proto)
        if h is not None:
            opts.host = h
            opts.host_len = len(h)
            keep.append(h)
        if p is not None:
            opts.port = p
            keep.append(p)
    else:
        # asyncio makes the caller's socket non-blocking first (a closed one raises EBADF here).
        sock.setblocking(False)
        # The library gets a duplicate and closes only that: the caller's
        # socket object closes its own descriptor (at connection_lost), so a
        # descriptor number the caller closed and the system reused is never
        # closed by mistake.
        lent_fd = os.dup(sock.fileno())
        opts.has_sock = 1
        opts.sock = lent_fd
        # asyncio sets TCP_NODELAY from the socket object's own proto.
        nodelay = sock.family in (socket.AF_INET, socket.AF_INET6) and sock.proto == socket.IPPROTO_TCP
        opts.tcp_nodelay = _ffi.NODELAY_ON if nodelay else _ffi.NODELAY_OFF
    opts.family = int(family)
    opts.proto = int(proto)
    opts.flags = int(flags)
    if local_addr is not None:
        opts.has_local_addr = 1
        lhost, lport = local_addr[:2]
        try:
            _check_address(lhost, lport, family, proto)
        except (TypeError, OSError):
            # asyncio resolves the remote address before local_addr: its
            # errors come first.
            infos = await loop._ensure_resolved((host, port), family=family, type=socket.SOCK_STREAM,
                                                proto=proto, flags=flags, loop=loop)
            if not infos:
                raise OSError("getaddrinfo() returned empty list")
            raise
        lh, lp = _text(lhost), _text(lport, port=True)
        opts.local_host, opts.local_port = lh, lp
        keep += [lh, lp]
        if len(local_addr) > 2:
            opts.local_flowinfo = int(local_addr[2])
        if len(local_addr) > 3:
            opts.local_scope_id = int(local_addr[3])
    if happy_eyeballs_delay is not None:
        opts.has_happy_eyeballs_delay = 1
        opts.happy_eyeballs_delay = float(happy_eyeballs_delay)
    if interleave is not None:
        opts.has_interleave = 1
        opts.interleave = int(interleave)
    opts.all_errors = 1 if all_errors else 0
    # Beyond asyncio (RFC 8305 and friends), each opt-in.
    for name, value in (("resolution_delay", resolution_delay), ("attempt_timeout", attempt_timeout),
                        ("connect_timeout", connect_timeout)):
        if value is not None:
            setattr(opts, "has_" + name, 1)
            setattr(opts, name, float(value))
    if addr_infos is not None:
        head = _addrinfo_list(addr_infos, keep)
        if head is None:
            raise OSError("getaddrinfo() returned empty list")
        opts.addrinfo = ctypes.pointer(head)
    opts.bind_address_no_port = 1 if bind_address_no_port else 0
    if keepalive:
        settings = keepalive if isinstance(keepalive, dict) else {}
        opts.keepalive = 1
        opts.keepalive_idle = int(settings.get("idle", 0))
        opts.keepalive_interval = int(settings.get("interval", 0))
        opts.keepalive_count = int(settings.get("count", 0))
    errbuf = bridge.errbuf
    errbuf[0] = b"\0"  # no message left over from an earlier call

    if sslcontext is not None:
        prepared = _tls_options(sslcontext, isinstance(ssl, bool))
        keep.append(prepared)
        opts.ssl = ctypes.pointer(prepared.options)
        sh = server_hostname.encode("idna") if server_hostname else b""
        keep.append(sh)
        opts.server_hostname = sh
        if ssl_handshake_timeout is not None:
            opts.has_ssl_handshake_timeout = 1
            opts.ssl_handshake_timeout = float(ssl_handshake_timeout)
        if ssl_shutdown_timeout is not None:
            opts.has_ssl_shutdown_timeout = 1
            opts.ssl_shutdown_timeout = float(ssl_shutdown_timeout)

    req = _Request(loop, protocol_factory, sock)
    req.ssl = (sslcontext, server_hostname, ssl_handshake_timeout, ssl_shutdown_timeout)
    if sock is not None:
        req.lent_fd = lent_fd
    handle = ctypes.c_void_p()
    rc = lib.goconn_open_connection(
        ctypes.byref(opts), ctypes.byref(_bridge.PROTOCOL), _bridge.DONE, req.key, ctypes.byref(handle)
    )
    if rc != 0:
        _bridge.unregister(req.key)
        if req.lent_fd >= 0:
            os.close(req.lent_fd)  # not taken: the library leaves it alone on an error
        message = errbuf.value.decode("utf-8", "replace")
        if rc == -errno.EBADF and sock is not None:
            raise OSError(errno.EBADF, "Bad file descriptor")
        try:
            _errors.raise_for_code(rc, message)
        except ValueError as exc:
            raise _timeout_message(exc, ssl_handshake_timeout, ssl_shutdown_timeout) from None
    req.handle = handle.value
    try:
        return await req.future
    except asyncio.CancelledError:
        fut = req.future
        if fut.done() and not fut.cancelled() and fut.exception() is None:
            # Made just before the cancellation landed: close it, as asyncio does.
            fut.result()[0].close()
        else:
            lib.goconn_request_cancel(req.handle)
        raise
