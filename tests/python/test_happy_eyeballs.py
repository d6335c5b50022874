"""Spec section 4 (happy eyeballs) and 10.3 (cancelled during happy eyeballs), on names
that resolve to both ::1 and 127.0.0.1 inside a private mount namespace.

"hang" addresses have a listener with a full accept queue (a connect to it never completes);
"accept" addresses have an ordinary listener.  Every listener shares one port."""

import pytest

from _util import namespaces_available, run_in_namespace

pytestmark = pytest.mark.skipif(namespaces_available() is not None, reason=str(namespaces_available()))

HOSTS = """\
127.0.0.1 localhost
::1 dual.test
127.0.0.1 dual.test
::1 multi.test
127.0.0.1 multi.test
127.0.0.2 multi.test
::ffff:127.0.0.3 multi.test
"""

DELAY = 0.25


def run(connect, **params):
    return run_in_namespace(HOSTS, "connect", connect.name, **params)


def test_names_resolve_ipv6_first():
    out = run_in_namespace(HOSTS, "resolve", "asyncio", name="dual.test")
    assert out["addrs"] == ["::1", "127.0.0.1"]


def test_fallback_to_ipv4_after_the_delay(connect):
    out = run(connect, name="dual.test", hang=["::1"], accept=["127.0.0.1"],
              kw={"happy_eyeballs_delay": DELAY})
    assert out.get("exc") is None, out
    assert out["ok"] is True
    assert out["peername"] == ["127.0.0.1", out["port"]]
    assert out["accepted"] == 1
    # The second attempt starts when the delay has passed (loose bounds: a loaded machine).
    assert 0.2 <= out["elapsed"] < 3.0, out
    # The hanging ::1 attempt was cancelled and its socket closed.
    assert out["fd_delta"] == 0


def test_negative_delay_acts_as_zero(connect):
    out = run(connect, name="dual.test", hang=["::1"], accept=["127.0.0.1"],
              kw={"happy_eyeballs_delay": -1})
    assert out["ok"] is True, out
    assert out["peername"] == ["127.0.0.1", out["port"]]
    assert out["elapsed"] < 1.5
    assert out["fd_delta"] == 0


@pytest.mark.parametrize("kw", [{}, {"interleave": 1}], ids=["plain", "interleave-only"])
def test_without_happy_eyeballs_the_ipv6_attempt_is_waited_for(connect, kw):
    out = run(connect, name="dual.test", hang=["::1"], accept=["127.0.0.1"], kw=kw, timeout=1.0)
    assert out["ok"] is False
    assert out["exc"]["type"] == "TimeoutError"
    assert out["accepted"] == 0  # 127.0.0.1 was never tried
    assert out["elapsed"] >= 0.9
    assert out["fd_delta"] == 0


def test_a_fast_failure_starts_the_next_attempt_at_once(connect):
    # ::1 refuses (nothing listens there), so 127.0.0.1 is tried without waiting for the delay.
    out = run(connect, name="dual.test", accept=["127.0.0.1"], kw={"happy_eyeballs_delay": 5.0})
    assert out["ok"] is True, out
    assert out["peername"] == ["127.0.0.1", out["port"]]
    assert out["elapsed"] < 2.0


@pytest.mark.parametrize("kw,winner,min_elapsed", [
    # multi.test: ::1, 127.0.0.1, 127.0.0.2, ::ffff:127.0.0.3; the first two hang.
    ({"happy_eyeballs_delay": DELAY}, "::ffff:127.0.0.3", 2 * DELAY),           # ::1, 127.0.0.1, ::ffff:127.0.0.3
    ({"happy_eyeballs_delay": DELAY, "interleave": 0}, "127.0.0.2", 2 * DELAY),  # original order
    ({"happy_eyeballs_delay": DELAY, "interleave": 2}, "::ffff:127.0.0.3", DELAY),  # ::1, ::ffff:127.0.0.3
], ids=["interleave-1", "interleave-0", "interleave-2"])
def test_interleave_decides_which_address_wins(connect, kw, winner, min_elapsed):
    out = run(connect, name="multi.test", hang=["::1", "127.0.0.1"], accept=["127.0.0.2", "127.0.0.3"], kw=kw)
    assert out["ok"] is True, out
    expected = [winner, out["port"], 0, 0] if ":" in winner else [winner, out["port"]]
    assert out["peername"] == expected
    assert min_elapsed - 0.05 <= out["elapsed"] < min_elapsed + 3.0, out
    assert out["accepted"] == 1  # only the winner connected
    assert out["fd_delta"] == 0


def test_cancelled_during_happy_eyeballs(connect):
    # Both addresses hang; wait_for cancels the race after two attempts are in flight.
    out = run(connect, name="dual.test", hang=["::1", "127.0.0.1"], kw={"happy_eyeballs_delay": 0.1}, timeout=0.6)
    assert out["ok"] is False
    assert out["exc"]["type"] == "TimeoutError"
    assert 0.5 <= out["elapsed"] < 3.0
    assert out["fd_delta"] == 0  # every in-flight attempt socket is closed


def test_all_attempts_hang_without_happy_eyeballs(connect):
    out = run(connect, name="dual.test", hang=["::1", "127.0.0.1"], timeout=0.6)
    assert out["exc"]["type"] == "TimeoutError"
    assert out["fd_delta"] == 0
