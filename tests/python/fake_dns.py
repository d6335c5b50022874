"""A tiny DNS server for the dual-stack tests: answers under the zone ``slow.test`` with
per-family delays written into the name, so a test can make the AAAA or the A answer late.

    fake_dns.py            listen on 127.X.Y.Z port 53 (a free random loopback address),
                           print "ADDR 127.X.Y.Z" and serve until stdin closes

A query for ``a<MS>q<MS>[-anything].slow.test`` is answered after the first number of
milliseconds for A (127.0.0.1) and after the second for AAAA (::1); ``a-1`` or ``q-1``
answers that family with no address (NOERROR, empty), ``a-2``/``q-2`` never answers it.
Every other name is NXDOMAIN.  A trailing ``-nonce`` label part keeps every name distinct.

ns_child.use_fake_dns() starts it inside a private mount namespace and bind-mounts an
/etc/resolv.conf naming it, so glibc's getaddrinfo (goconn's resolver and Python's) asks it.
"""

from __future__ import annotations

import asyncio
import errno
import os
import random
import re
import signal
import socket
import struct
import sys

ZONE = ("slow", "test")
NAME = re.compile(r"^a(-?\d+)q(-?\d+)(?:-[a-z0-9]+)?$")
A, AAAA = 1, 28


def parse_query(data: bytes):
    """(id, labels, qtype, question-bytes) of a one-question query, or None."""
    if len(data) < 12:
        return None
    qid, _flags, qdcount = struct.unpack("!HHH", data[:6])
    if qdcount != 1:
        return None
    i, labels = 12, []
    while i < len(data) and data[i]:
        n = data[i]
        labels.append(data[i + 1:i + 1 + n].decode("ascii", "replace").lower())
        i += 1 + n
    if i + 5 > len(data):
        return None
    qtype = struct.unpack("!H", data[i + 1:i + 3])[0]
    return qid, labels, qtype, data[12:i + 5]


def delay_for(labels, qtype):
    """Seconds to wait before answering, with the answer's address or None (no address);
    ('nx', None) for names outside the zone, None to never answer."""
    if tuple(labels[1:]) != ZONE or len(labels) != 3:
        return 0.0, "nx"
    m = NAME.match(labels[0])
    if m is None:
        return 0.0, "nx"
    ms = int(m.group(1) if qtype == A else m.group(2))
    if qtype not in (A, AAAA) or ms == -1:
        return 0.0, None
    if ms < 0:
        return None
    return ms / 1000.0, ("127.0.0.1" if qtype == A else "::1")


def reply(qid, question, qtype, addr) -> bytes:
    if addr == "nx":
        return struct.pack("!HHHHHH", qid, 0x8183, 1, 0, 0, 0) + question
    if addr is None:
        return struct.pack("!HHHHHH", qid, 0x8180, 1, 0, 0, 0) + question
    fam = socket.AF_INET if qtype == A else socket.AF_INET6
    rdata = socket.inet_pton(fam, addr)
    answer = b"\xc0\x0c" + struct.pack("!HHIH", qtype, 1, 60, len(rdata)) + rdata
    return struct.pack("!HHHHHH", qid, 0x8180, 1, 1, 0, 0) + question + answer


class Server(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        q = parse_query(data)
        if q is None:
            return
        qid, labels, qtype, question = q
        d = delay_for(labels, qtype)
        if d is None:
            return
        delay, answer = d
        msg = reply(qid, question, qtype, answer)
        loop = asyncio.get_running_loop()
        if delay <= 0:
            self.transport.sendto(msg, addr)
        else:
            loop.call_later(delay, self.transport.sendto, msg, addr)


def bind_free() -> socket.socket:
    for _ in range(200):
        host = f"127.{random.randrange(1, 255)}.{random.randrange(0, 255)}.{random.randrange(1, 255)}"
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind((host, 53))
            return s
        except OSError as e:
            s.close()
            if e.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
                raise
    raise RuntimeError("no free loopback address for the fake DNS server")


async def serve() -> None:
    loop = asyncio.get_running_loop()
    sock = bind_free()
    await loop.create_datagram_endpoint(Server, sock=sock)
    print("ADDR", sock.getsockname()[0], flush=True)
    done = loop.create_future()
    # Serve until stdin closes (the test process ended or closed its end).
    loop.add_reader(0, lambda: done.done() or (os.read(0, 4096) or done.set_result(None)))
    await done


def main() -> None:
    try:  # die with the parent, whatever happens to it
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass
    asyncio.run(serve())


if __name__ == "__main__":
    main()
