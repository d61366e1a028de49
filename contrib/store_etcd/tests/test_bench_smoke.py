"""Smoke test of bench/store.py: a quick etcd-only run prints the results table.

No timing is asserted (figures belong to the benchmark's output, not to tests)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[3] / "bench" / "store.py"


@pytest.mark.slow
def test_bench_quick_etcd_prints_the_table(etcd_server):  # etcd_server: skip without etcd
    if not BENCH.is_file():
        pytest.skip(f"{BENCH} not found (not running from a source checkout)")
    proc = subprocess.run([sys.executable, str(BENCH), "--quick", "--only", "etcd"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for row in ("sequential write p50", "sequential write p99", "throughput, 16 writers",
                "throughput, 64 writers", "watch delivery p50", "watch delivery p99",
                "new leader: first write"):
        assert row in out, f"missing row {row!r} in:\n{out}"
    assert "etcd 3." in out
    assert "not measured" not in out and "no write succeeded" not in out, out
    assert "etcd: sequential writes" in proc.stderr  # progress goes to stderr
