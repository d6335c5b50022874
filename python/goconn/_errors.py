"""Turning goconn_error records into the exceptions asyncio raises."""

from __future__ import annotations

import asyncio
import errno as _errno
import re
import socket
import ssl
from typing import NamedTuple

from . import _ffi


class Attempt(NamedTuple):
    """One connection attempt: where it went, when (time.monotonic() clock),
    and how it ended ('won', 'failed' or 'cancelled')."""

    remote: tuple
    local: tuple | None
    start: float
    end: float
    outcome: str
    errno: int | None
    error: str | None


_OUTCOMES = {
    _ffi.ATTEMPT_PENDING: "pending",
    _ffi.ATTEMPT_WON: "won",
    _ffi.ATTEMPT_FAILED: "failed",
    _ffi.ATTEMPT_CANCELLED: "cancelled",
    _ffi.ATTEMPT_REFUSED: "refused",
    _ffi.ATTEMPT_TIMED_OUT: "timed out",
}


class Resolution(NamedTuple):
    """One name lookup: the family asked for (AF_INET6 and AF_INET are
    separate lookups with resolution_delay; AF_UNSPEC is one lookup of
    both), when it started and ended (time.monotonic() clock; end is None
    if it was still running when the request ended), how many addresses it
    gave, and its error."""

    family: int
    start: float
    end: float | None
    count: int
    errno: int | None
    error: str | None


class Trace(list):
    """The trace of one create_connection call: a list of Attempt records in
    the order the attempts started, with the name lookups that came first
    (.resolutions) and the index of the attempt that won (.winner, or None)."""

    def __init__(self, attempts=(), resolutions=()):
        super().__init__(attempts)
        self.resolutions: list[Resolution] = list(resolutions)

    @property
    def winner(self) -> int | None:
        for i, a in enumerate(self):
            if a.outcome == "won":
                return i
        return None

    def __repr__(self) -> str:
        return f"Trace({list.__repr__(self)}, resolutions={self.resolutions!r})"


def resolution_from(r: _ffi.Resolution) -> Resolution:
    return Resolution(
        family=r.family,
        start=r.start_ns / 1e9,
        end=r.end_ns / 1e9 if r.end_ns else None,
        count=r.count,
        errno=r.errnum or None,
        error=r.error.decode("utf-8", "replace") if r.error else None,
    )


def trace_from(attempts, nattempts: int, resolutions, nresolutions: int) -> Trace:
    return Trace(
        [attempt_from(attempts[i].contents) for i in range(nattempts)],
        [resolution_from(resolutions[i].contents) for i in range(nresolutions)],
    )


def trace_snapshot(attempts, nattempts: int, resolutions, nresolutions: int):
    """Copies of the library's trace records, made while they live, and a
    function that builds the Trace from them later: a transport saves its
    trace this way when the library is about to free it (connection_lost),
    which costs a fraction of building it, and most traces are never read."""
    copies_a = [_own_copy(attempts[i].contents) for i in range(nattempts)]
    copies_r = [_own_copy(resolutions[i].contents) for i in range(nresolutions)]
    return lambda: Trace([attempt_from(c) for c in copies_a], [resolution_from(c) for c in copies_r])


def _own_copy(record):
    copy = type(record).from_buffer_copy(record)
    text = record.error  # the library's string, read now
    if text is not None:
        copy.error = text  # the copy points into a bytes object it keeps alive
    return copy


def _address(family: int, host: bytes, port: int, flowinfo: int, scope_id: int) -> tuple:
    text = host.decode("ascii", "replace")
    if family == socket.AF_INET6:
        return (text, port, flowinfo, scope_id)
    return (text, port)


def attempt_from(a: _ffi.Attempt) -> Attempt:
    remote = _address(a.family, a.remote_host, a.remote_port, a.remote_flowinfo, a.remote_scope_id)
    local = None
    if a.has_local:
        local = _address(a.family, a.local_host, a.local_port, 0, a.local_scope_id)
    return Attempt(
        remote=remote,
        local=local,
        start=a.start_ns / 1e9,
        end=a.end_ns / 1e9,
        outcome=_OUTCOMES.get(a.outcome, str(a.outcome)),
        errno=a.errnum or None,
        error=a.error.decode("utf-8", "replace") if a.error else None,
    )


def attempts_from(array, n: int) -> list[Attempt]:
    return [attempt_from(array[i].contents) for i in range(n)]


def _text(p: bytes | None) -> str:
    return p.decode("utf-8", "replace") if p else ""


# The "(_ssl.c:NNNN)" suffix of an ssl.SSLError names the line of CPython's _ssl.c
# that raised it, which differs between Python releases (3.11.7: 992 for
# do_handshake, 2546 for read). The Go core cannot know it, so the running
# interpreter's is probed once (an SSLObject fed garbage) and put in its place.
_SSL_LOCATION = re.compile(r"\(_ssl\.c:\d+\)$")
_ssl_locations: dict[str, str | None] = {}


def _ssl_location(where: str) -> str | None:
    """The suffix this interpreter puts on SSLErrors of SSLObject.do_handshake()
    (where='handshake') or SSLObject.read() (where='read')."""
    if where not in _ssl_locations:
        loc = None
        try:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            obj = ctx.wrap_bio(incoming, outgoing)
            step = obj.do_handshake if where == "handshake" else (lambda: obj.read(1))
            try:
                step()
            except ssl.SSLWantReadError:
                pass
            incoming.write(b"HTTP/1.0 400 Bad Request\r\n\r\n")
            step()
        except ssl.SSLError as exc:
            m = _SSL_LOCATION.search(str(exc))
            loc = m.group(0) if m else None
        except Exception:
            pass
        _ssl_locations[where] = loc
    return _ssl_locations[where]


def _located(message: str, where: str) -> str:
    """Append the "(_ssl.c:NNNN)" location this interpreter's ssl module
    would show: the library's texts are OpenSSL's alone."""
    loc = _ssl_location(where)
    if not loc or _SSL_LOCATION.search(message):
        return message
    return f"{message} {loc}"


def exception_from(err: _ffi.Error, where: str = "handshake") -> BaseException:
    """The exception asyncio would raise for this error. where: 'handshake'
    for a failed create_connection, 'read' for an error ending a connection
    (it picks the _ssl.c location of an SSLError's text)."""
    code, errnum = err.code, err.errnum
    message = _text(err.message)
    if code == _ffi.EGROUP:
        exc: BaseException = ExceptionGroup(
            "create_connection failed",
            [exception_from(err.causes[i].contents, where) for i in range(err.ncauses)],
        )
    elif code == _ffi.EGAI:
        exc = socket.gaierror(errnum, _text(err.strerror))
    elif code == _ffi.EOVERFLOW:
        exc = OverflowError(message)
    elif code == _ffi.ETIMEOUT:
        exc = TimeoutError(message)
    elif code == -_errno.ECANCELED and not errnum:
        exc = asyncio.CancelledError()
    elif code in (-_errno.EINVAL, _ffi.ENOTSTREAM) and not errnum:
        exc = ValueError(message)
    elif code in (_ffi.EFORKED, _ffi.EBUFFER):
        exc = RuntimeError(message)
    elif code in (_ffi.ECERTVERIFY, _ffi.EHOSTNAME):
        exc = ssl.SSLCertVerificationError(errnum, _located(message, where))
        exc.reason = _text(err.reason) or None
        exc.library = _text(err.library) or None
        exc.verify_code = err.verify_code
        exc.verify_message = _text(err.verify_message)
    elif code == _ffi.ETLS:
        exc = ssl.SSLError(errnum, _located(message, where))
        exc.reason = _text(err.reason) or None
        exc.library = _text(err.library) or None
    elif code == _ffi.EHANDSHAKETIMEOUT:
        exc = ConnectionAbortedError(message)
    elif code == -_errno.ENOTSUP and not errnum:
        exc = NotImplementedError()
    elif -4096 < code < 0 and not errnum:
        # An OSError subclass raised without errno, e.g. the bare
        # ConnectionResetError() of a peer that hangs up mid-handshake.
        cls = type(OSError(-code, ""))
        exc = cls(message) if message else cls()
    elif errnum:
        exc = OSError(errnum, _text(err.strerror))  # picks the subclass, e.g. ConnectionRefusedError
    else:
        exc = OSError(message)  # e.g. "Multiple exceptions: ..." with errno None
    if err.nattempts or err.nresolutions:
        trace = trace_from(err.attempts, err.nattempts, err.resolutions, err.nresolutions)
        # On the exception, and on every member of an ExceptionGroup, so a
        # failure can be explained after the fact.
        for e in [exc, *(exc.exceptions if isinstance(exc, BaseExceptionGroup) else ())]:
            try:
                e.attempts = trace  # type: ignore[attr-defined]
            except AttributeError:
                pass
    return exc


def raise_for_code(code: int, message: str = "") -> None:
    """Raise for a negative return code of a synchronous call."""
    if code >= 0:
        return
    lib = _ffi.bind()
    text = message or lib.goconn_strerror(code).decode()
    if code == _ffi.EFORKED:
        raise RuntimeError("goconn cannot be used in a child process after fork(); "
                           "start a new process (spawn or forkserver) instead")
    if code in (_ffi.EPOISONED, _ffi.EINTERNAL):
        raise RuntimeError(f"goconn: {text}")
    if code == _ffi.EOVERFLOW:
        raise OverflowError(text)
    if code in (-_errno.EINVAL, _ffi.ENOTSTREAM):
        raise ValueError(text)
    if -4096 < code < 0:
        raise OSError(-code, message or _errno_text(-code))
    raise OSError(text)


def _errno_text(n: int) -> str:
    import os

    return os.strerror(n)
