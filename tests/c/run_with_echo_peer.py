#!/usr/bin/env python3
"""Run a program as `prog 127.0.0.1 PORT` against a loopback echo peer and
check that it exits 0 after the peer saw and echoed its bytes."""
import socket
import subprocess
import sys
import threading

listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen()
port = listener.getsockname()[1]
seen = []


def serve():
    conn, _ = listener.accept()
    with conn:
        while True:
            data = conn.recv(65536)
            if not data:
                break
            seen.append(data)
            conn.sendall(data)


t = threading.Thread(target=serve, daemon=True)
t.start()
proc = subprocess.run([sys.argv[1], "127.0.0.1", str(port)], capture_output=True, text=True, timeout=60)
sys.stdout.write(proc.stdout)
sys.stderr.write(proc.stderr)
t.join(10)
if proc.returncode != 0:
    sys.exit(f"exit status {proc.returncode}")
if not seen:
    sys.exit("the peer received nothing")
print("peer received", b"".join(seen))
