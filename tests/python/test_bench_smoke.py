"""The benchmark harness (tests/bench/run.py, ./build.sh bench) still runs.

`run.py --smoke` runs every scenario once at tiny sizes, on every
implementation: a scenario broken by a change in goconn, the peer or the
harness shows here as a failed cell or a missing row. Its figures mean
nothing and are not looked at. Internal to goconn, so it runs once.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from _util import PYTHON, ROOT, child_env

RUN_PY = os.path.join(ROOT, "tests", "bench", "run.py")
BENCH_C = os.path.join(ROOT, "build", "tests", "bench", "goconn-bench-c")
PEER = os.path.join(ROOT, "build", "goconn-peer")


def test_every_scenario_runs_on_every_implementation():
    for path in (PEER, BENCH_C):
        if not os.path.exists(path):
            pytest.skip(f"{path} is not built (./build.sh builds it)")
    try:
        import uvloop  # noqa: F401
    except ImportError:
        pytest.skip("uvloop is not installed (./build.sh installs python3-uvloop)")
    r = subprocess.run([PYTHON, RUN_PY, "--smoke"], env=child_env(), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, f"run.py --smoke exited with {r.returncode}:\n{r.stderr[-4000:]}"
    rows = [line for line in r.stdout.splitlines() if line.startswith("| ")]
    table = "\n".join(rows)
    assert "failed" not in table, table
    expected = [
        "plain bulk receive", "TLS bulk receive", "64-byte ping-pong", "sequential connect+close",
        "300 concurrent connects", "TLS handshakes", "TLS handshakes, peer X25519 only",
        "C bulk receive, loop mode", "C bulk receive, direct mode",
        "C sequential connect+close, loop mode", "C sequential connect+close, direct mode",
        "C memory per idle connection (50), loop mode", "C memory per idle connection (50), direct mode",
    ]
    # As root, with unshare(1), the run has its own namespace and the Happy
    # Eyeballs scenario (run.py's in_namespace).
    if os.geteuid() == 0 and shutil.which("unshare"):
        expected.append("Happy Eyeballs fallback")
    names = {row.split("|")[1].strip() for row in rows[2:]}
    assert set(expected) <= names, sorted(names)
    # Every Python row has a figure for all three implementations and a ratio.
    for row in rows[2:]:
        cells = [c.strip() for c in row.split("|")[1:-1]]
        name, metric, asyncio_, uvloop_, c_floor, goconn_ = cells[:6]
        if name.startswith("C "):
            assert c_floor and goconn_, row
        elif name == "Happy Eyeballs fallback":
            assert asyncio_ and goconn_ and uvloop_ == "n/a", row  # uvloop has no happy_eyeballs_delay
        else:
            assert asyncio_ and uvloop_ and goconn_, row
