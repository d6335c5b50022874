"""Whole-process behaviour, in child interpreters: fork() after the library is loaded, and
interpreter exit with connections still open."""

import subprocess
import textwrap
import time

import pytest

from _util import run_python

FORK_CHILD = textwrap.dedent(
    """
    import asyncio, os, sys, time
    import goconn

    async def use_once():
        # load the library and make this loop's bridge before forking
        try:
            await goconn.create_connection(asyncio.Protocol, "127.0.0.1", 1)
        except OSError:
            pass

    if sys.argv[1] == "used":
        asyncio.run(use_once())
    else:
        goconn.library_version()  # loaded only

    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            async def child():
                await asyncio.wait_for(goconn.create_connection(asyncio.Protocol, "127.0.0.1", 1), 5)
            asyncio.run(child())
            print("CHILD: no error")
        except RuntimeError as e:
            print("CHILD RuntimeError:", e)
            code = 0
        except BaseException as e:
            print("CHILD other:", type(e).__name__, e)
        sys.stdout.flush()
        os._exit(code)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            print("CHILD EXIT", os.waitstatus_to_exitcode(status))
            break
        time.sleep(0.05)
    else:
        os.kill(pid, 9)
        print("CHILD HUNG")
    # the parent still works
    try:
        asyncio.run(use_once())
        print("PARENT OK")
    except BaseException as e:
        print("PARENT", type(e).__name__, e)
    """
)


@pytest.mark.parametrize("state", ["used", "loaded"])
def test_fork_child_gets_a_clear_error(state):
    # goconn-specific (fork after load is documented as unsupported): the child must get a
    # RuntimeError at once, never hang, and the parent must keep working.
    r = run_python(FORK_CHILD, timeout=60, args=[state])
    out = r.stdout
    assert r.returncode == 0, (out, r.stderr)
    assert "CHILD HUNG" not in out, out
    assert "CHILD EXIT 0" in out, (out, r.stderr)
    line = next(ln for ln in out.splitlines() if ln.startswith("CHILD RuntimeError:"))
    assert "fork" in line
    assert "PARENT OK" in out, (out, r.stderr)


EXIT_CHILD = textwrap.dedent(
    """
    import asyncio, socket, sys
    import goconn

    mode, connector = sys.argv[1], sys.argv[2]
    keep = []

    async def connect(*args, **kw):
        if connector == "goconn":
            return await goconn.create_connection(*args, **kw)
        return await asyncio.get_running_loop().create_connection(*args, **kw)

    async def main():
        loop = asyncio.get_running_loop()
        server = await asyncio.start_server(lambda r, w: keep.append(w), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        for _ in range(5):
            tr, pr = await connect(asyncio.Protocol, "127.0.0.1", port)
            tr.write(b"x" * (4 << 20))  # leave data buffered
            keep.append(tr)
        # a connection attempt still in flight (full accept queue)
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(0)
        filler = socket.create_connection(lsock.getsockname())
        keep.extend([lsock, filler, server])
        keep.append(asyncio.ensure_future(connect(asyncio.Protocol, "127.0.0.1", lsock.getsockname()[1])))
        await asyncio.sleep(0.1)
        print("READY", flush=True)
        if mode == "sys.exit":
            sys.exit(0)

    if mode == "no-close":
        loop = asyncio.new_event_loop()
        loop.run_until_complete(main())
        # exit with the loop still open and everything alive
    else:
        try:
            asyncio.run(main())
        except SystemExit:
            raise
    """
)


@pytest.mark.parametrize("mode", ["asyncio.run", "no-close", "sys.exit"])
def test_interpreter_exit_with_open_connections(connect, mode):
    t0 = time.monotonic()
    try:
        r = run_python(EXIT_CHILD, timeout=30, args=[mode, connect.name])
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the interpreter did not exit: {e}")
    elapsed = time.monotonic() - t0
    assert "READY" in r.stdout, (r.stdout, r.stderr)
    assert r.returncode == 0, (r.returncode, r.stderr)
    assert "Fatal Python error" not in r.stderr
    assert "panic" not in r.stderr
    assert "Segmentation fault" not in r.stderr
    assert elapsed < 15
