"""Turning goconn_error records into the exceptions asyncio raises."""

from __future__ import annotations

import asyncio
import errno as _errno
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
}


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


def exception_from(err: _ffi.Error) -> BaseException:
    """The exception asyncio would raise for this error."""
    code, errnum = err.code, err.errnum
    message = _text(err.message)
    if code == _ffi.EGROUP:
        exc: BaseException = ExceptionGroup(
            "create_connection failed",
            [exception_from(err.causes[i].contents) for i in range(err.ncauses)],
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
    elif code == _ffi.EFORKED:
        exc = RuntimeError(message)
    elif code in (_ffi.ECERTVERIFY, _ffi.EHOSTNAME):
        exc = ssl.SSLCertVerificationError(errnum, message)
        exc.reason = _text(err.reason) or None
        exc.library = _text(err.library) or None
        exc.verify_code = err.verify_code
        exc.verify_message = _text(err.verify_message)
    elif code == _ffi.ETLS:
        exc = ssl.SSLError(errnum, message)
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
    if err.nattempts:
        try:
            exc.attempts = attempts_from(err.attempts, err.nattempts)  # type: ignore[attr-defined]
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
