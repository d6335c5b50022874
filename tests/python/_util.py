"""Helpers shared by the behaviour tests: peers, recording protocols, fd counting,
exception-handler capture, subprocesses and private mount namespaces."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PYTHON_DIR = os.path.join(ROOT, "python")
PYTHON = "/usr/bin/python3"

# A port nothing listens on (connects to it are refused at once).
REFUSED_PORT = 1


# ---- recording protocols -------------------------------------------------------------


class Recorder(asyncio.Protocol):
    """Records every callback in order.

    events: 'made', ('data', bytes), 'eof', ('lost', exc), 'pause', 'resume'.
    """

    def __init__(self, eof_result=None):
        self.events: list = []
        self.transport = None
        self.data = bytearray()
        self.eof_result = eof_result
        self.lost_exc = None
        self.is_lost = False
        self._changed = asyncio.Event()

    def _note(self, event):
        self.events.append(event)
        self._changed.set()

    def connection_made(self, transport):
        self.transport = transport
        self._note("made")

    def data_received(self, data):
        self.data += data
        self._note(("data", bytes(data)))

    def eof_received(self):
        self._note("eof")
        return self.eof_result

    def connection_lost(self, exc):
        self.lost_exc = exc
        self.is_lost = True
        self._note(("lost", exc))

    def pause_writing(self):
        self._note("pause")

    def resume_writing(self):
        self._note("resume")

    def kinds(self) -> list:
        """The event kinds with runs of 'data' collapsed into one."""
        out = []
        for e in self.events:
            k = e if isinstance(e, str) else e[0]
            if k == "data" and out and out[-1] == "data":
                continue
            out.append(k)
        return out

    async def until(self, predicate, timeout: float = 10.0):
        """Wait until predicate() is true (re-checked after every callback)."""
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting; events so far: {self.events!r}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))
            except asyncio.TimeoutError:
                pass

    async def wait_lost(self, timeout: float = 10.0):
        await self.until(lambda: self.is_lost, timeout)
        return self.lost_exc

    async def wait_bytes(self, n: int, timeout: float = 10.0):
        await self.until(lambda: len(self.data) >= n, timeout)
        return bytes(self.data)


class BufRecorder(asyncio.BufferedProtocol):
    """A BufferedProtocol that records get_buffer size hints and the bytes received."""

    def __init__(self, size: int = 16):
        self.buf = bytearray(size)
        self.hints: list = []
        self.data = bytearray()
        self.events: list = []
        self.lost_exc = None
        self.is_lost = False
        self._changed = asyncio.Event()

    def _note(self, e):
        self.events.append(e)
        self._changed.set()

    def connection_made(self, transport):
        self.transport = transport
        self._note("made")

    def get_buffer(self, sizehint):
        self.hints.append(sizehint)
        return self.buf

    def buffer_updated(self, nbytes):
        self.data += self.buf[:nbytes]
        self._note(("updated", nbytes))

    def eof_received(self):
        self._note("eof")

    def connection_lost(self, exc):
        self.lost_exc = exc
        self.is_lost = True
        self._note(("lost", exc))

    until = Recorder.until
    wait_lost = Recorder.wait_lost
    wait_bytes = Recorder.wait_bytes


# ---- peers ---------------------------------------------------------------------------


class Peer:
    """A loopback listener whose connections the test accepts and drives itself,
    with the loop's sock_* functions (no threads)."""

    def __init__(self, host: str = "127.0.0.1", family: int = socket.AF_INET, backlog: int = 16):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(backlog)
        self.sock.setblocking(False)
        self.addr = self.sock.getsockname()
        self.host = host
        self.port = self.addr[1]
        self.conns: list[socket.socket] = []

    async def accept(self, timeout: float = 10.0) -> socket.socket:
        loop = asyncio.get_running_loop()
        conn, _ = await asyncio.wait_for(loop.sock_accept(self.sock), timeout)
        conn.setblocking(False)
        self.conns.append(conn)
        return conn

    def close(self):
        for c in self.conns:
            c.close()
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


async def recv_exactly(conn: socket.socket, n: int, timeout: float = 10.0) -> bytes:
    loop = asyncio.get_running_loop()
    out = bytearray()
    deadline = time.monotonic() + timeout
    while len(out) < n:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"peer got {len(out)} of {n} bytes")
        chunk = await asyncio.wait_for(loop.sock_recv(conn, min(n - len(out), 1 << 20)), remaining)
        if not chunk:
            raise AssertionError(f"peer saw EOF after {len(out)} of {n} bytes")
        out += chunk
    return bytes(out)


async def recv_until_eof(conn: socket.socket, timeout: float = 10.0) -> bytes:
    loop = asyncio.get_running_loop()
    out = bytearray()
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no EOF; peer got {len(out)} bytes")
        chunk = await asyncio.wait_for(loop.sock_recv(conn, 1 << 20), remaining)
        if not chunk:
            return bytes(out)
        out += chunk


class Hanging:
    """A listener whose accept queue is full: a further connect to it hangs.

    listen(0) queues one connection; the filler takes that slot and is never accepted.
    """

    def __init__(self, host: str = "127.0.0.1", family: int = socket.AF_INET):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(0)
        self.addr = self.sock.getsockname()
        self.port = self.addr[1]
        self.filler = socket.socket(family, socket.SOCK_STREAM)
        self.filler.settimeout(5)
        self.filler.connect(self.addr)

    def close(self):
        self.filler.close()
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


async def echo_server(host: str = "127.0.0.1"):
    """An asyncio echo server on loopback; returns (server, port)."""

    async def handle(reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, 0)
    return server, server.sockets[0].getsockname()[1]


# ---- a connection to a Peer ------------------------------------------------------------

CHUNK = 256 * 1024


class Conn:
    """A connection made by the connector under test to a Peer the test drives."""

    def __init__(self, peer, tr, pr, conn):
        self.peer, self.tr, self.pr, self.conn = peer, tr, pr, conn

    async def close(self):
        if not self.pr.is_lost:
            self.tr.abort()
            await self.pr.wait_lost()
        self.peer.close()


async def open_conn(connect, factory=Recorder, rcvbuf=None) -> Conn:
    peer = Peer()
    if rcvbuf:
        peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    tr, pr = await connect(factory, "127.0.0.1", peer.port)
    conn = await peer.accept()
    return Conn(peer, tr, pr, conn)


def fill(tr, more_than=0, limit=128 * 1024 * 1024) -> int:
    """Write until the transport buffers more than `more_than` bytes (the peer is not
    reading); return the number of bytes written."""
    written = 0
    while tr.get_write_buffer_size() <= more_than and written < limit:
        tr.write(b"x" * CHUNK)
        written += CHUNK
    assert tr.get_write_buffer_size() > more_than, "could not make the transport buffer"
    return written


# ---- observing ---------------------------------------------------------------------


async def warm_up(connect):
    """Make one refused connect, so that goconn's per-loop bridge and the Go runtime's
    poller exist before a test takes an fd baseline."""
    try:
        await connect(asyncio.Protocol, "127.0.0.1", REFUSED_PORT)
    except OSError:
        pass


def fd_count() -> int:
    """Open descriptors of this process, after collecting garbage (so sockets and loops
    left over by earlier tests do not close in the middle of a measurement)."""
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


async def settle_fds(baseline: int, timeout: float = 3.0) -> int:
    """Wait (a little) until the fd count comes back to baseline; return the last count."""
    deadline = time.monotonic() + timeout
    n = fd_count()
    while n != baseline and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        n = fd_count()
    return n


def capture_handler(loop: asyncio.AbstractEventLoop) -> list:
    """Send the loop's exception-handler calls to a list and return it."""
    calls: list = []
    loop.set_exception_handler(lambda lp, ctx: calls.append(ctx))
    return calls


async def spin(n: int = 5):
    """Let the loop run a few iterations."""
    for _ in range(n):
        await asyncio.sleep(0)


# ---- subprocesses and namespaces -----------------------------------------------------


def child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = PYTHON_DIR + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("PYTHONASYNCIODEBUG", None)
    return env


def run_python(code: str, timeout: float = 30.0, args=()) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-c", code, *args], env=child_env(), capture_output=True, text=True, timeout=timeout
    )


def namespaces_available() -> str | None:
    """None if private mount namespaces work here, else why not."""
    if os.geteuid() != 0:
        return "needs root for unshare --mount"
    if not shutil.which("unshare") or not shutil.which("mount"):
        return "unshare/mount not installed"
    r = subprocess.run(["unshare", "--mount", "/bin/true"], capture_output=True)
    if r.returncode != 0:
        return f"unshare --mount fails: {r.stderr.decode().strip()}"
    return None


def run_in_namespace(hosts: str, scenario: str, connector: str, proc_timeout: float = 60.0, **params) -> dict:
    """Run ns_child.py's `scenario` for `connector` in a private mount namespace whose
    /etc/hosts is `hosts`; return the JSON it prints."""
    with tempfile.TemporaryDirectory(prefix="goconn-ns-") as tmp:
        hosts_path = os.path.join(tmp, "hosts")
        with open(hosts_path, "w") as f:
            f.write(hosts)
        script = os.path.join(HERE, "ns_child.py")
        cmd = (
            f"mount --bind {hosts_path} /etc/hosts && exec {PYTHON} {script} "
            f"{scenario} {connector} '{json.dumps(params)}'"
        )
        r = subprocess.run(
            ["unshare", "--mount", "/bin/sh", "-c", cmd],
            env=child_env(), capture_output=True, text=True, timeout=proc_timeout,
        )
    if r.returncode != 0:
        raise AssertionError(f"namespace child failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise AssertionError(f"namespace child printed no JSON:\n{r.stdout}\n{r.stderr}")
    return json.loads(lines[-1])


def describe(exc: BaseException | None):
    """A comparable description of an exception: (type name, str, errno)."""
    if exc is None:
        return None
    return [type(exc).__name__, str(exc), getattr(exc, "errno", None)]


PY = sys.version_info
