"""goconn: asyncio's loop.create_connection(), made by a Go library.

    import goconn
    transport, protocol = await goconn.create_connection(MyProtocol, "example.org", 80)
    reader, writer = await goconn.open_connection("example.org", 80)

    goconn.install(loop)                   # route that loop's create_connection
    asyncio.set_event_loop_policy(goconn.EventLoopPolicy())   # or every new loop's

Behaviour, exceptions and messages are asyncio's (Python 3.11 and later), with
`all_errors` on every version. Connection attempts, Happy Eyeballs and the
socket I/O run in the Go core; every protocol callback runs on the event
loop's thread.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any, Callable

from . import _bridge, _connect, _ffi
from ._errors import Attempt, Resolution, Trace
from ._lib import LibraryNotFoundError
from ._tls import SSLContext, SSLObject, create_default_context
from ._transport import GoconnSSLTransport, GoconnTransport

__all__ = [
    "Attempt",
    "Resolution",
    "Trace",
    "EventLoopPolicy",
    "GoconnSSLTransport",
    "GoconnTransport",
    "LibraryNotFoundError",
    "SSLContext",
    "SSLObject",
    "create_default_context",
    "create_connection",
    "install",
    "library_version",
    "open_connection",
]

__version__ = "0.1.0"


def library_version() -> str:
    """The version of the loaded libgoconn.so."""
    return _ffi.bind().goconn_version().decode()


async def create_connection(
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    host: Any = None,
    port: Any = None,
    *,
    ssl: Any = None,
    family: int = 0,
    proto: int = 0,
    flags: int = 0,
    sock: Any = None,
    local_addr: Any = None,
    server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
    happy_eyeballs_delay: float | None = None,
    interleave: int | None = None,
    all_errors: bool = False,
    resolution_delay: float | None = None,
    attempt_timeout: float | None = None,
    connect_timeout: float | None = None,
    addr_infos: Any = None,
    bind_address_no_port: bool = False,
    keepalive: Any = None,
) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
    """Open a TCP connection on the running loop, exactly as
    loop.create_connection() does, and return (transport, protocol).

    The transport's get_extra_info('attempts') is the trace (a goconn.Trace:
    the goconn.Attempt records in start order, with .resolutions and
    .winner); a failed call's exception, and every member of an
    ExceptionGroup, carries the same trace as its `attempts` attribute.

    Beyond asyncio, each opt-in:
      resolution_delay: RFC 8305 asynchronous resolution: AAAA and A in
        parallel; attempts start on the first AAAA answer, or this many
        seconds after an A answer (the RFC suggests 0.05); late answers join.
      attempt_timeout: give up on one attempt after this many seconds (it is
        not the Happy Eyeballs delay: a slow attempt keeps going meanwhile).
      connect_timeout: TimeoutError when the whole call (lookups, attempts,
        TLS handshake) takes longer than this many seconds.
      addr_infos: pre-resolved addresses, getaddrinfo()-style 5-tuples.
      bind_address_no_port: IP_BIND_ADDRESS_NO_PORT for local_addr port 0.
      keepalive: True, or {'idle': s, 'interval': s, 'count': n}.
    """
    return await _connect.create_connection(
        asyncio.get_running_loop(), protocol_factory, host, port,
        ssl=ssl, family=family, proto=proto, flags=flags, sock=sock, local_addr=local_addr,
        server_hostname=server_hostname, ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout, happy_eyeballs_delay=happy_eyeballs_delay,
        interleave=interleave, all_errors=all_errors, resolution_delay=resolution_delay,
        attempt_timeout=attempt_timeout, connect_timeout=connect_timeout, addr_infos=addr_infos,
        bind_address_no_port=bind_address_no_port, keepalive=keepalive,
    )


async def open_connection(host: Any = None, port: Any = None, *, limit: int = 2**16, **kwds: Any):
    """asyncio.open_connection() over goconn: returns (StreamReader, StreamWriter)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport, _ = await create_connection(lambda: protocol, host, port, **kwds)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    return reader, writer


def install(loop: asyncio.AbstractEventLoop | None = None) -> asyncio.AbstractEventLoop:
    """Route `loop.create_connection` (and so asyncio.open_connection and every
    library that calls it) through goconn. Returns the loop."""
    if loop is None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = asyncio.get_event_loop_policy().get_event_loop()

    @functools.wraps(asyncio.AbstractEventLoop.create_connection)
    async def create_connection(protocol_factory, host=None, port=None, **kwds):
        return await _connect.create_connection(loop, protocol_factory, host, port, **kwds)

    loop.create_connection = create_connection  # type: ignore[method-assign]
    loop._goconn_installed = True  # type: ignore[attr-defined]
    return loop


class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """An event loop policy whose new loops are installed (see install())."""

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        return install(super().new_event_loop())
