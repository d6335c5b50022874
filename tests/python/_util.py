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
    """Make one refused connect and one connection, so that goconn's per-loop bridge and
    the Go runtime's poller exist before a test takes an fd baseline. (The poller's two
    descriptors come with the first transport's socket: a loop-mode connect to an IP
    literal does not touch it.)"""
    try:
        await connect(asyncio.Protocol, "127.0.0.1", REFUSED_PORT)
    except OSError:
        pass
    with Peer() as peer:
        tr, pr = await connect(Recorder, "127.0.0.1", peer.port)
        await peer.accept()
        tr.abort()
        await pr.wait_lost()


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


def run_in_namespace(hosts: str, scenario: str, connector: str, proc_timeout: float = 60.0,
                     child: str = "ns_child.py", **params) -> dict:
    """Run `child`'s (ns_child.py's) `scenario` for `connector` in a private mount namespace
    whose /etc/hosts is `hosts`; return the JSON it prints."""
    with tempfile.TemporaryDirectory(prefix="goconn-ns-") as tmp:
        hosts_path = os.path.join(tmp, "hosts")
        with open(hosts_path, "w") as f:
            f.write(hosts)
        script = os.path.join(HERE, child)
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


# ---- TLS: certificates made at test time, and TLS peers --------------------------------
#
# Every key and certificate is made with the openssl command into a temporary folder when
# the session needs it (never committed).  EC P-256 keys keep that fast.

_OPENSSL_SIGN_EXT = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = {eku}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
{san}
"""

_OPENSSL_CA_EXT = """\
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
"""


class PKI:
    """A test PKI in `directory`, made with the openssl command:

    * ``ca``: the trusted test CA (``ca.pem``); ``rogue_ca``: a CA nobody trusts;
    * ``server``: CN=localhost, SAN DNS:localhost and IP:127.0.0.1, from ``ca``;
    * ``server_noip``: SAN DNS:localhost only, from ``ca``;
    * ``server_other``: SAN DNS:other.example, from ``ca``;
    * ``server_rogue``: like ``server`` but from ``rogue_ca`` (verify code 20);
      ``server_rogue_chain`` sends ``rogue_ca`` along (verify code 19);
    * ``server_self``: self-signed, SAN DNS:localhost, IP:127.0.0.1 (verify code 18);
    * ``client``: a client certificate from ``ca``; ``client_enc.key`` is its key encrypted
      (PKCS#8, AES-256) with the password ``CLIENT_KEY_PASSWORD``.

    ``cert(name)``/``key(name)`` give the paths; ``der(name)`` the certificate's DER.
    """

    CLIENT_KEY_PASSWORD = "goconn-secret"

    def __init__(self, directory: str):
        self.dir = str(directory)
        self._ca("ca", "goconn test CA")
        self._ca("rogue_ca", "goconn rogue CA")
        both = "subjectAltName = DNS:localhost, IP:127.0.0.1"
        self._leaf("server", "localhost", both, "ca")
        self._leaf("server_noip", "localhost", "subjectAltName = DNS:localhost", "ca")
        self._leaf("server_other", "other.example", "subjectAltName = DNS:other.example", "ca")
        self._leaf("server_rogue", "localhost", both, "rogue_ca")
        self._leaf("server_self", "localhost", both, None)
        self._leaf("client", "goconn test client", "", "ca", eku="clientAuth")
        # server_rogue sending its (self-signed, untrusted) CA along: verify code 19
        with open(self.cert("server_rogue_chain"), "w") as out:
            for part in ("server_rogue", "rogue_ca"):
                with open(self.cert(part)) as f:
                    out.write(f.read())
        shutil.copy(self.key("server_rogue"), self.key("server_rogue_chain"))
        self._openssl("pkey", "-in", self.key("client"), "-aes256", "-passout",
                      f"pass:{self.CLIENT_KEY_PASSWORD}", "-out", self.path("client_enc.key"))

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def cert(self, name: str) -> str:
        return self.path(name + ".pem")

    def key(self, name: str) -> str:
        return self.path(name + ".key")

    def der(self, name: str) -> bytes:
        import ssl

        with open(self.cert(name)) as f:
            return ssl.PEM_cert_to_DER_cert(f.read())

    def decoded(self, name: str) -> dict:
        """The certificate as getpeercert() shows it (decoded by Python's own _ssl)."""
        import ssl

        return ssl._ssl._test_decode_cert(self.cert(name))

    def _openssl(self, *args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=self.dir)

    def _newkey(self, name):
        self._openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                      "-out", self.key(name))

    def _ca(self, name, cn):
        self._newkey(name)
        ext = self.path(name + ".ext")
        with open(ext, "w") as f:
            f.write("[req]\ndistinguished_name = dn\n[dn]\n[v3]\n" + _OPENSSL_CA_EXT)
        self._openssl("req", "-x509", "-new", "-key", self.key(name), "-out", self.cert(name), "-days", "3",
                      "-subj", f"/O=goconn tests/CN={cn}", "-config", ext, "-extensions", "v3")

    def _leaf(self, name, cn, san, issuer, eku="serverAuth"):
        self._newkey(name)
        ext = self.path(name + ".ext")
        with open(ext, "w") as f:
            f.write("[req]\ndistinguished_name = dn\n[dn]\n[v3]\n"
                    + _OPENSSL_SIGN_EXT.format(eku=eku, san=san).replace(
                        "authorityKeyIdentifier = keyid\n", "" if issuer is None else "authorityKeyIdentifier = keyid\n"))
        subj = f"/O=goconn tests/CN={cn}"
        if issuer is None:
            self._openssl("req", "-x509", "-new", "-key", self.key(name), "-out", self.cert(name), "-days", "3",
                          "-subj", subj, "-config", ext, "-extensions", "v3")
            return
        csr = self.path(name + ".csr")
        self._openssl("req", "-new", "-key", self.key(name), "-out", csr, "-subj", subj, "-config", ext)
        self._openssl("x509", "-req", "-in", csr, "-CA", self.cert(issuer), "-CAkey", self.key(issuer),
                      "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "3",
                      "-out", self.cert(name), "-extfile", ext, "-extensions", "v3")

    # ---- contexts ------------------------------------------------------------------------

    def server_context(self, name: str = "server", *, version=None, alpn=None, client_ca: bool = False):
        """A PROTOCOL_TLS_SERVER context with `name`'s certificate.  version: an
        ssl.TLSVersion to pin; alpn: protocols to offer; client_ca: require a client
        certificate from the test CA."""
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert(name), self.key(name))
        if version is not None:
            ctx.minimum_version = ctx.maximum_version = version
        if alpn:
            ctx.set_alpn_protocols(alpn)
        if client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(self.cert("ca"))
        return ctx

    def client_context(self, cls=None, *, trust: str = "ca"):
        """A client context (ssl.SSLContext, or `cls`) trusting `trust`'s certificate."""
        import ssl

        ctx = (cls or ssl.SSLContext)(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(self.cert(trust))
        return ctx


async def tls_server(server_ctx, handler=None, host: str = "127.0.0.1"):
    """An asyncio TLS server on loopback; returns (server, port).  The default handler
    echoes; a handler gets (reader, writer) and may raise connection errors."""
    import ssl

    async def echo(reader, writer):
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()

    async def handle(reader, writer):
        try:
            await (handler or echo)(reader, writer)
        except (ConnectionError, OSError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, 0, ssl=server_ctx)
    return server, server.sockets[0].getsockname()[1]


class ThreadTLSServer:
    """A blocking TLS server in a thread for peers that misbehave on purpose: accepts one
    connection, wraps it with `server_ctx` and runs `body(sslsock, server)` on it.  The body
    can wait on `server.release` (set by close()) to hold the connection open."""

    def __init__(self, server_ctx, body, rcvbuf: int | None = None):
        import threading

        self.ctx = server_ctx
        self.body = body
        self.sock = socket.socket()
        if rcvbuf:  # inherited by the accepted connection
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.release = threading.Event()
        self.error: BaseException | None = None
        self.result = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            self.sock.settimeout(15)
            conn, _ = self.sock.accept()
            conn.settimeout(15)
            with self.ctx.wrap_socket(conn, server_side=True) as s:
                self.result = self.body(s, self)
        except BaseException as exc:  # reported by join()
            self.error = exc

    def join(self, timeout: float = 10.0):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the TLS server thread did not finish"
        if self.error is not None:
            raise self.error
        return self.result

    def close(self):
        self.release.set()
        if self.thread.is_alive():
            try:  # wake an accept() that is still waiting (closing the socket would not)
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                pass
        self.thread.join(10)
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


async def read_tls_record(loop, conn: socket.socket, timeout: float = 10.0) -> bytes:
    """Read one whole TLS record (e.g. the ClientHello) from a raw socket."""
    head = await recv_exactly(conn, 5, timeout)
    n = int.from_bytes(head[3:5], "big")
    return head + await recv_exactly(conn, n, timeout)


def _listening_port(pid: int) -> int | None:
    """The TCP port process `pid` listens on (from /proc), or None."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    except OSError:
        return None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                        return int(fields[1].rsplit(":", 1)[1], 16)
        except OSError:
            continue
    return None


class OpenSSLServer:
    """`openssl s_server -quiet -rev` on 127.0.0.1 (a line echo that reverses each line),
    with extra arguments.  Its stdin is a pipe kept open; start() waits until it listens."""

    def __init__(self, cert: str, key: str, *args: str):
        self.args = ["openssl", "s_server", "-quiet", "-rev", "-accept", "127.0.0.1:0",
                     "-cert", cert, "-key", key, *args]
        self.proc = None
        self.port = None

    def start(self, timeout: float = 10.0) -> "OpenSSLServer":
        self.proc = subprocess.Popen(self.args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"openssl s_server exited: {self.proc.stderr.read().decode()}")
            port = _listening_port(self.proc.pid)
            if port:
                self.port = port
                return self
            time.sleep(0.02)
        raise AssertionError("openssl s_server did not start listening")

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(10)
            self.proc.stdin.close()
            self.proc.stderr.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()


def ssl_error_location(where: str = "handshake") -> str:
    """The '(_ssl.c:NNNN)' suffix this Python's ssl module puts on an SSLError raised by
    SSLObject.do_handshake() (where='handshake') or SSLObject.read() (where='read'): an
    SSLObject is fed a plain-text answer and the error's text is read."""
    import re
    import ssl

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
    try:
        step()
    except ssl.SSLError as exc:
        return re.search(r"\(_ssl\.c:\d+\)$", str(exc)).group(0)
    raise AssertionError("no SSLError")
