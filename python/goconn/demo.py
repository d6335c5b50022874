"""python3 -m goconn.demo: Happy Eyeballs at work, on loopback only.

A name, dual.goconn.test, resolves to ::1 and then 127.0.0.1 (through a hosts
file bind-mounted over /etc/hosts in a private mount namespace, so the
machine's own file is untouched). Connections to [::1] hang, as on a network
whose IPv6 path is broken: the listener there never accepts and its queue is
full. 127.0.0.1 answers. The netcat client (python3 -m goconn) connects with
happy_eyeballs_delay=0.25: it tries ::1 first and, 250 ms later, falls back
to 127.0.0.1 while the first attempt is still hanging; the first to connect
wins and the other is cancelled. --trace prints that timeline.

Needs root (for unshare and mount), as ./build.sh demo runs it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading

NAME = "dual.goconn.test"
DELAY = 0.25


def _reexec_in_namespace() -> int:
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        print("goconn.demo needs root and unshare(1) (util-linux) for a private /etc/hosts", file=sys.stderr)
        return 1
    hosts = tempfile.NamedTemporaryFile("w", prefix="goconn-hosts-", delete=False)
    hosts.write(f"127.0.0.1 localhost\n::1 {NAME}\n127.0.0.1 {NAME}\n")
    hosts.close()
    env = dict(os.environ, GOCONN_DEMO_IN_NAMESPACE="1")
    script = f'mount --bind "{hosts.name}" /etc/hosts && exec "{sys.executable}" -m goconn.demo'
    try:
        return subprocess.call([unshare, "--mount", "/bin/sh", "-c", script], env=env)
    finally:
        os.unlink(hosts.name)


def _serve_ipv4(listener: socket.socket) -> None:
    conn, _ = listener.accept()
    with conn:
        while data := conn.recv(65536):
            conn.sendall(b"echo from 127.0.0.1: " + data)


def main() -> int:
    if os.environ.get("GOCONN_DEMO_IN_NAMESPACE") != "1":
        return _reexec_in_namespace()

    print(f"/etc/hosts in this namespace: {NAME} -> ::1, 127.0.0.1")
    print(f"getaddrinfo order: {[ai[4][0] for ai in socket.getaddrinfo(NAME, 1, type=socket.SOCK_STREAM)]}")
    v4 = socket.socket(socket.AF_INET)
    v4.bind(("127.0.0.1", 0))
    v4.listen()
    port = v4.getsockname()[1]
    # [::1]:port hangs: a listener that never accepts, its one-slot queue full.
    v6 = socket.socket(socket.AF_INET6)
    v6.bind(("::1", port))
    v6.listen(0)
    filler = socket.create_connection(("::1", port))
    threading.Thread(target=_serve_ipv4, args=(v4,), daemon=True).start()
    print(f"[::1]:{port} hangs (full accept queue); 127.0.0.1:{port} echoes\n")
    cmd = [sys.executable, "-m", "goconn", NAME, str(port), "--happy-eyeballs-delay", str(DELAY), "--trace"]
    print("$ echo hello | " + " ".join(["python3"] + cmd[1:]), flush=True)
    rc = subprocess.run(cmd, input=b"hello\n", timeout=30).returncode
    filler.close()
    v6.close()
    v4.close()
    print(f"\nThe ::1 attempt was still hanging when, {int(DELAY * 1000)} ms after it started, the "
          "127.0.0.1 attempt began; that one connected and the ::1 attempt was cancelled.")
    return rc


if __name__ == "__main__":
    sys.exit(main())
