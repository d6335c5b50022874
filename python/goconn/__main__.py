"""python3 -m goconn HOST PORT: a netcat-style client on goconn.

Standard input goes to the connection and the connection goes to standard
output. End of input half-closes the connection (write_eof); the program
ends when the peer closes. --trace prints the connection attempts as a
timeline on standard error.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import ssl
import sys
import threading
import time

import goconn


def _parse_local_addr(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        raise argparse.ArgumentTypeError("expected HOST:PORT")
    return (host.strip("[]"), int(port))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python3 -m goconn", description=__doc__.splitlines()[0])
    p.add_argument("host")
    p.add_argument("port")
    fam = p.add_mutually_exclusive_group()
    fam.add_argument("-4", dest="family", action="store_const", const=socket.AF_INET, default=0,
                     help="IPv4 only")
    fam.add_argument("-6", dest="family", action="store_const", const=socket.AF_INET6, help="IPv6 only")
    p.add_argument("-s", "--local-addr", type=_parse_local_addr, metavar="HOST:PORT",
                   help="bind to this local address first")
    p.add_argument("-d", "--happy-eyeballs-delay", type=float, metavar="SECONDS",
                   help="turn Happy Eyeballs on with this delay between attempts (RFC 8305 suggests 0.25)")
    p.add_argument("-i", "--interleave", type=int, metavar="N",
                   help="First Address Family Count (default 1 with Happy Eyeballs)")
    p.add_argument("--all-errors", action="store_true", help="report every attempt's error")
    p.add_argument("-r", "--resolution-delay", type=float, metavar="SECONDS",
                   help="RFC 8305 resolution: look AAAA and A up in parallel, and wait this long for AAAA "
                        "after an A answer (the RFC suggests 0.05)")
    p.add_argument("--attempt-timeout", type=float, metavar="SECONDS", help="give up on one attempt after this long")
    p.add_argument("--connect-timeout", type=float, metavar="SECONDS", help="give up on the whole connect after this long")
    p.add_argument("--ssl", action="store_true", help="connect with TLS (verified against the system roots)")
    p.add_argument("--server-hostname", metavar="NAME",
                   help="the name to check the certificate against (default: HOST; '' checks no name)")
    p.add_argument("--cafile", metavar="FILE", help="trust the CAs in this PEM file instead of the system roots")
    p.add_argument("--insecure", action="store_true", help="TLS without any certificate verification")
    p.add_argument("--trace", action="store_true", help="print the attempt timeline to stderr")
    return p


_FAMILIES = {socket.AF_INET6: "AAAA (IPv6)", socket.AF_INET: "A (IPv4)", socket.AF_UNSPEC: "addresses"}


def format_timeline(attempts, t0: float) -> str:
    """The trace as lines of '+milliseconds  event', lookups and attempts."""
    events = []
    for r in getattr(attempts, "resolutions", ()):
        what = _FAMILIES.get(r.family, f"family {r.family}")
        events.append((r.start, -1, f"lookup of {what} started"))
        if r.end is not None:
            how = f"{r.count} address{'es' if r.count != 1 else ''}" if not r.error else r.error
            events.append((r.end, -1, f"lookup of {what} ended: {how}"))
    for i, a in enumerate(attempts, 1):
        events.append((a.start, i, f"attempt {i} to {a.remote!r} started"))
        how = a.outcome
        if a.outcome == "won" and a.local:
            how += f" (local address {a.local!r})"
        elif a.error:
            how += f": {a.error}"
        events.append((a.end, i, f"attempt {i} to {a.remote!r} {how}"))
    events.sort(key=lambda e: (e[0], e[1]))
    return "\n".join(f"  +{(t - t0) * 1000:8.1f} ms  {text}" for t, _, text in events)


class _Netcat(asyncio.Protocol):
    def __init__(self, done: asyncio.Future):
        self.done = done

    def data_received(self, data: bytes) -> None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()

    def eof_received(self):
        return None  # close: the peer is done

    def connection_lost(self, exc) -> None:
        if not self.done.done():
            self.done.set_result(exc)


def _pump_stdin(loop: asyncio.AbstractEventLoop, transport: asyncio.Transport) -> None:
    fd = sys.stdin.fileno()
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b""
        if not data:
            loop.call_soon_threadsafe(_stdin_eof, transport)
            return
        loop.call_soon_threadsafe(transport.write, data)


def _stdin_eof(transport: asyncio.Transport) -> None:
    # TCP half-closes; TLS cannot (asyncio's TLS transport has no write_eof),
    # so it waits for the peer to close.
    if not transport.is_closing() and transport.can_write_eof():
        transport.write_eof()


async def run(args) -> int:
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    kwargs = dict(family=args.family, local_addr=args.local_addr,
                  happy_eyeballs_delay=args.happy_eyeballs_delay, interleave=args.interleave,
                  resolution_delay=args.resolution_delay, attempt_timeout=args.attempt_timeout,
                  connect_timeout=args.connect_timeout)
    if args.all_errors:
        kwargs["all_errors"] = True
    if args.ssl or args.cafile or args.insecure or args.server_hostname is not None:
        ctx = goconn.create_default_context(cafile=args.cafile)
        if args.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        kwargs["ssl"] = ctx
        if args.server_hostname is not None:
            kwargs["server_hostname"] = args.server_hostname
    if args.trace:
        extra = ", ".join(f"{k}={'on' if k == 'ssl' else v}" for k, v in kwargs.items() if v)
        print(f"goconn: connecting to {args.host} port {args.port}" + (f" ({extra})" if extra else ""),
              file=sys.stderr)
    t0 = time.monotonic()
    try:
        transport, _ = await goconn.create_connection(lambda: _Netcat(done), args.host, args.port, **kwargs)
    except (OSError, ValueError, OverflowError, ExceptionGroup, ssl.SSLError, TimeoutError) as exc:
        trace = getattr(exc, "attempts", None)
        if args.trace and (trace or getattr(trace, "resolutions", None)):
            print(format_timeline(trace, t0), file=sys.stderr)
        print(f"goconn: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if args.trace:
        trace = transport.get_extra_info("attempts") or []
        if trace or getattr(trace, "resolutions", None):
            print(format_timeline(trace, t0), file=sys.stderr)
        print(f"goconn: connected to {transport.get_extra_info('peername')!r} "
              f"in {(time.monotonic() - t0) * 1000:.1f} ms", file=sys.stderr)
        cipher = transport.get_extra_info("cipher")
        if cipher:
            obj = transport.get_extra_info("ssl_object")
            print(f"goconn: {obj.version()} {cipher[0]} ({cipher[2]} bits)"
                  + (f", ALPN {obj.selected_alpn_protocol()}" if obj.selected_alpn_protocol() else "")
                  + (", session resumed" if obj.session_reused else ""), file=sys.stderr)
    threading.Thread(target=_pump_stdin, args=(loop, transport), daemon=True).start()
    exc = await done
    if exc is not None:
        print(f"goconn: connection lost: {exc!r}", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
