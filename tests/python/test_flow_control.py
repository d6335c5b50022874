"""Spec 9.4: write flow control (pause_writing / resume_writing) on plain TCP."""

import asyncio

from _util import CHUNK, Recorder, capture_handler, fill, open_conn, recv_exactly


class Strict(Recorder):
    """Asserts the alternation StreamReaderProtocol's FlowControlMixin asserts."""

    def __init__(self):
        super().__init__()
        self.paused = False
        self.violations = []

    def pause_writing(self):
        if self.paused:
            self.violations.append("pause while paused")
        self.paused = True
        super().pause_writing()

    def resume_writing(self):
        if not self.paused:
            self.violations.append("resume while not paused")
        self.paused = False
        super().resume_writing()


async def test_pause_writing_is_called_inside_write(connect):
    c = await open_conn(connect, Strict)
    try:
        c.tr.set_write_buffer_limits(high=CHUNK // 2)
        while True:
            before = c.tr.get_write_buffer_size()
            c.tr.write(b"x" * CHUNK)
            after = c.tr.get_write_buffer_size()
            if after > CHUNK // 2:
                # synchronously, before write() returned
                assert c.pr.kinds() == ["made", "pause"]
                break
            assert c.pr.kinds() == ["made"], (before, after)
    finally:
        await c.close()


async def test_pause_threshold_is_strictly_above_high(connect):
    c = await open_conn(connect, Strict)
    try:
        c.tr.set_write_buffer_limits(high=1 << 40)
        fill(c.tr)
        size = c.tr.get_write_buffer_size()
        c.tr.set_write_buffer_limits(high=size, low=0)  # size == high: not above it
        assert c.pr.kinds() == ["made"]
        c.tr.set_write_buffer_limits(high=size - 1, low=0)  # now above: paused at once
        assert c.pr.kinds() == ["made", "pause"]
        c.tr.set_write_buffer_limits(high=size - 2, low=0)  # already paused: no repeat
        c.tr.write(b"more")
        assert c.pr.kinds() == ["made", "pause"]
    finally:
        await c.close()


async def test_set_write_buffer_limits_never_resumes(connect):
    # Only the write-ready path resumes; raising the limits while paused does not.
    c = await open_conn(connect, Strict)
    try:
        c.tr.set_write_buffer_limits(high=CHUNK)
        fill(c.tr, more_than=CHUNK)
        assert c.pr.kinds() == ["made", "pause"]
        c.tr.set_write_buffer_limits(high=1 << 40, low=1 << 39)
        await asyncio.sleep(0.1)  # the peer reads nothing, so nothing drains
        assert c.pr.kinds() == ["made", "pause"]
    finally:
        await c.close()


async def test_resume_after_drain(connect):
    c = await open_conn(connect, Strict)
    try:
        c.tr.set_write_buffer_limits(high=CHUNK, low=CHUNK // 4)
        n = fill(c.tr, more_than=CHUNK)
        assert c.pr.kinds() == ["made", "pause"]
        await recv_exactly(c.conn, n, timeout=20)
        await c.pr.until(lambda: "resume" in c.pr.kinds())
        assert c.pr.kinds() == ["made", "pause", "resume"]
        assert c.tr.get_write_buffer_size() <= CHUNK // 4
        assert c.pr.violations == []
    finally:
        await c.close()


async def test_one_pause_one_resume_for_a_large_write_to_a_slow_reader(connect):
    loop = asyncio.get_running_loop()
    c = await open_conn(connect, Strict, rcvbuf=16384)
    try:
        c.tr.set_write_buffer_limits(high=1000, low=100)
        total = 8 * 1024 * 1024
        c.tr.write(b"y" * total)
        assert c.pr.kinds() == ["made", "pause"]
        got = 0
        while got < total:
            chunk = await asyncio.wait_for(loop.sock_recv(c.conn, 65536), 20)
            assert chunk
            got += len(chunk)
            await asyncio.sleep(0)  # a slow reader
        await c.pr.until(lambda: "resume" in c.pr.kinds())
        await asyncio.sleep(0.05)
        assert c.pr.kinds() == ["made", "pause", "resume"]
        assert c.pr.violations == []
    finally:
        await c.close()


async def test_strict_alternation_over_several_rounds(connect):
    c = await open_conn(connect, Strict)
    try:
        c.tr.set_write_buffer_limits(high=CHUNK, low=0)
        for _ in range(3):
            n = fill(c.tr, more_than=CHUNK)
            c.tr.write(b"z" * 100)  # more while paused: no second pause
            await recv_exactly(c.conn, n + 100, timeout=20)
            await c.pr.until(lambda: c.pr.kinds()[-1] == "resume")
        assert c.pr.kinds() == ["made"] + ["pause", "resume"] * 3
        assert c.pr.violations == []
    finally:
        await c.close()


class Raising(Recorder):
    def pause_writing(self):
        super().pause_writing()
        raise ValueError("pause boom")

    def resume_writing(self):
        super().resume_writing()
        raise ValueError("resume boom")


async def test_exceptions_in_pause_and_resume_are_reported(connect):
    loop = asyncio.get_running_loop()
    calls = capture_handler(loop)
    c = await open_conn(connect, Raising)
    try:
        c.tr.set_write_buffer_limits(high=CHUNK, low=0)
        n = fill(c.tr, more_than=CHUNK)  # write() does not raise
        assert [ctx["message"] for ctx in calls] == ["protocol.pause_writing() failed"]
        ctx = calls[0]
        assert isinstance(ctx["exception"], ValueError) and str(ctx["exception"]) == "pause boom"
        assert ctx["transport"] is c.tr
        assert ctx["protocol"] is c.pr
        await recv_exactly(c.conn, n, timeout=20)
        await c.pr.until(lambda: "resume" in c.pr.kinds())
        await asyncio.sleep(0.05)
        assert [ctx["message"] for ctx in calls] == [
            "protocol.pause_writing() failed", "protocol.resume_writing() failed"
        ]
        assert str(calls[1]["exception"]) == "resume boom"
        # the transport keeps going
        assert not c.tr.is_closing()
        c.tr.write(b"still fine")
        assert await recv_exactly(c.conn, 10) == b"still fine"
    finally:
        await c.close()


async def test_pause_from_set_write_buffer_limits_reported_too(connect):
    loop = asyncio.get_running_loop()
    calls = capture_handler(loop)
    c = await open_conn(connect, Raising)
    try:
        fill(c.tr)
        c.tr.set_write_buffer_limits(high=0, low=0)  # does not raise
        assert [ctx["message"] for ctx in calls] == ["protocol.pause_writing() failed"]
    finally:
        await c.close()
