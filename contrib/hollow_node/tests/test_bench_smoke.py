"""Smoke test of bench/scheduler.py: a quick run (500 hollow nodes, 1,000 pods, both cases,
memory store) schedules every pod and prints the table.

No timing is asserted (figures belong to the benchmark's output, not to tests)."""

from __future__ import annotations

import importlib.util
import pathlib
import re
import subprocess
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[3] / "bench" / "scheduler.py"


@pytest.mark.slow
def test_bench_scheduler_quick_prints_the_table():
    if not BENCH.is_file():
        pytest.skip(f"{BENCH} not found (not running from a source checkout)")
    if importlib.util.find_spec("pilothouse.scheduler") is None:
        pytest.skip("the scheduler host (pilothouse.scheduler) is not installed")
    if importlib.util.find_spec("pilothouse_sched_default") is None:
        pytest.skip("the default scheduler plugins (pilothouse-sched-default) are not "
                    "installed")
    proc = subprocess.run([sys.executable, str(BENCH), "--quick", "--store", "memory"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    out = proc.stdout
    basic = re.search(r"^SchedulingBasic\s+500\s+1000\s+(\d+)\s+(\d+)\s+(\d+)", out, re.M)
    anti = re.search(r"^PodAntiAffinity \(25% required\)\s+500\s+1000\s+(\d+)", out, re.M)
    assert basic and anti, out
    assert int(basic.group(1)) > 0
    assert "TIMEOUT" not in out, out
    assert "250 anti-affinity pods, 0 sharing a node" in out, out
    assert "creating 1000 pods" in proc.stderr      # progress goes to stderr
    assert "scheduler ready" in proc.stderr
