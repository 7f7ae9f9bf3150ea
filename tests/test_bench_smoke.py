"""Smoke test of the benchmarks: each one runs end to end with ``--quick`` and prints its table.

No timing is asserted (the numbers depend on the machine and its load; bench/RESULTS.md records them):
only that every benchmark exits 0, names its metric and its baseline, and describes the machine.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

CASES = {
    "decode": ("flushwatch frames/s (1 core)", "baseline: json+Decimal frames/s"),
    "ingest_kafka": ("events per CPU-second of the ingest process", "baseline: same pipeline, producer drops"),
    "detectors": ("in-process events/s (1 core)", "plain-Python sliding-window sum"),
    "latency": ("receive → alert produced p99", "baseline: receive → event in Kafka p99"),
    "backtest_speed": ("frames/s (backtest's own timing)", "baseline: [gzip] naive json+Decimal backtest"),
    "memory": ("RSS after", "baseline: [ingest] RSS at"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_benchmark_runs_quick(name: str, tmp_path: Path) -> None:
    metric, baseline = CASES[name]
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / f"{name}.py"), "--quick", "--workdir", str(tmp_path),
         "--json", str(tmp_path / "result.json")],
        capture_output=True, text=True, timeout=110, cwd=REPO, check=False)
    out = proc.stdout
    assert proc.returncode == 0, f"{name} failed:\n{out[-3000:]}\n{proc.stderr[-3000:]}"
    assert "machine :" in out and "commit" in out and "Python" in out
    assert "== results:" in out
    assert metric in out, out[-3000:]
    assert baseline in out, out[-3000:]
    assert (tmp_path / "result.json").stat().st_size > 0
