"""Benchmark 5 — backtest speed: frames/s of ``flushwatch backtest`` on a large recording.

Input: the synthetic recording of ``bench/make_recordings.py`` (default 2,000,000 lines), gzip-compressed as
recordings usually are, and the same lines uncompressed. The measured command is the real CLI, run as a
subprocess exactly as a user types it::

    flushwatch backtest RECORDING --out /dev/null

On a two-CPU machine that command reads and parses in a second process (``--processes`` defaults to 2
for inputs of 16 MiB or more); the same config with ``--processes 1`` is measured too, and every run
reports its frames per CPU-second over all its processes, so the gain from the second CPU is visible.
Its own report (``lines/s``, timed inside ``run_backtest``: read, merge, parse, detect, write) is the
number; the wall time of the whole command (interpreter start-up included) is reported beside it. Detector
sets: the default config's ``detectors.enabled``, and ``cascade`` alone (``FLUSHWATCH_DETECTORS__ENABLED``)
when the default is more than that.

Baselines on the same file in the same run, both in this process:

* **naive** — the straightforward implementation of the same loop: ``gzip``/``json`` line reading,
  :class:`bench.baselines.NaiveBinanceParser` and :class:`bench.baselines.NaiveLiquidationWindow`;
* **read-only floor** — ``flushwatch.recording.merge_recordings`` alone (decompress + line parse), the part
  no detector work can remove.

Target (issue 6): ≥ 200,000 frames/s.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.baselines import NaiveBinanceParser, NaiveLiquidationWindow
from bench.common import REPO, Report, command_line, parser, ratio, synthetic_recording
from flushwatch.config import load_config
from flushwatch.recording import merge_recordings

TARGET_FPS = 200_000


def run_cli(recording: Path, detectors: list[str] | None, extra: list[str]) -> dict[str, float]:
    env = dict(os.environ)
    if detectors is not None:
        env["FLUSHWATCH_DETECTORS__ENABLED"] = json.dumps(detectors)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "flushwatch.cli", "backtest", str(recording), "--out", os.devnull,
                           *extra], capture_output=True, text=True, env=env, cwd=REPO, check=False, timeout=3600)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # includes the command's own reader process
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    found = re.search(r"backtest: (\d+) lines.* in ([\d.]+) s \(([\d,]+) lines/s\)", proc.stderr)
    if proc.returncode != 0 or not found:
        raise RuntimeError(f"flushwatch backtest failed ({proc.returncode}): {proc.stderr[-2000:]}")
    alerts = re.search(r"alerts by type:\s+(.*)", proc.stderr)
    lines_per_s = float(found.group(3).replace(",", ""))
    return {"lines": int(found.group(1)), "seconds": int(found.group(1)) / lines_per_s,
            "lines_per_s": lines_per_s, "wall": wall, "cpu_s": cpu,
            "alerts": alerts.group(1).strip() if alerts else "?"}


def run_naive(recording: Path) -> tuple[float, int, int]:
    """(seconds, lines, threshold crossings) of the straightforward backtest loop."""
    parser_, window = NaiveBinanceParser(), NaiveLiquidationWindow()
    opener = gzip.open if recording.suffix == ".gz" else open
    started = time.perf_counter()
    lines = 0
    with opener(recording, "rt", encoding="utf-8") as handle:
        for raw in handle:
            line = json.loads(raw)
            lines += 1
            if line["kind"] == "ws":
                events = parser_.parse(line["data"], line["recv_ts"])
            else:
                events = parser_.parse_rest(line["endpoint"], line["data"], line["recv_ts"])
            for event in events:
                window.on_event(event)
    return time.perf_counter() - started, lines, window.crossings


def run_floor(recording: Path) -> tuple[float, int]:
    started = time.perf_counter()
    count = sum(1 for _ in merge_recordings([recording]))
    return time.perf_counter() - started, count


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__ or "")
    p.add_argument("--lines", type=int, help="recording lines (default 2,000,000; --quick 5,000)")
    p.add_argument("--repeat", type=int, help="repetitions of each command, best is reported (default 2; --quick 1)")
    args = p.parse_args(argv)
    n = args.lines or (5_000 if args.quick else 2_000_000)
    repeat = args.repeat or (1 if args.quick else 2)
    files = {"gzip": synthetic_recording(n, args.workdir, gz=True)}
    if not args.quick:
        files["plain"] = synthetic_recording(n, args.workdir)

    default = list(load_config(environ={}).detectors.enabled)
    # the default command chooses two processes for a recording this size on a two-CPU machine; the
    # one-process run of the same config shows what each process contributes
    sets: list[tuple[str, list[str] | None, list[str]]] = [
        ("default config", None, []),
        ("default config, --processes 1", None, ["--processes", "1"]),
    ]
    if default != ["cascade"]:
        sets.append(("cascade only", ["cascade"], []))
    report = Report("backtest speed (flushwatch backtest)", command=command_line())
    report.config = {"recordings": ", ".join(f"{k}: {v}" for k, v in files.items()),
                     "command": "python -m flushwatch.cli backtest RECORDING --out /dev/null",
                     "detector sets": f"default config ({', '.join(default)})"
                     + ("; cascade only" if len(sets) > 1 else ""),
                     "repeat (best of)": repeat}
    report.print_header()
    for kind, recording in files.items():
        for label, detectors, extra in sets:
            runs = [run_cli(recording, detectors, extra) for _ in range(repeat)]
            best = max(runs, key=lambda r: r["lines_per_s"])
            fps = best["lines_per_s"]
            report.add(f"[{kind}, {label}] frames/s (backtest's own timing)", fps, "frames/s",
                       f">= {TARGET_FPS:,}", fps >= TARGET_FPS,
                       note=f"{best['lines']:,} lines in {best['seconds']:.2f} s; alerts {best['alerts']}")
            report.add(f"[{kind}, {label}] frames/s incl. interpreter start-up", best["lines"] / best["wall"],
                       "frames/s")
            cpu_note = f"{best['cpu_s']:.1f} CPU-s over {best['wall']:.1f} s wall, interpreter start-up included"
            report.add(f"[{kind}, {label}] frames per CPU-second (all its processes)", best["lines"] / best["cpu_s"],
                       "frames/s", note=cpu_note)
            report.extra[f"{kind}/{label}"] = best
        naive_s, naive_lines, crossings = min((run_naive(recording) for _ in range(repeat)), key=lambda r: r[0])
        naive_fps = naive_lines / naive_s
        report.baseline(f"[{kind}] naive json+Decimal backtest, frames/s", naive_fps, "frames/s",
                        note=f"{crossings} threshold crossings")
        for label, _detectors, _extra in sets:
            fps = report.extra[f"{kind}/{label}"]["lines_per_s"]
            report.add(f"[{kind}] {label} ratio vs naive baseline", ratio(fps, naive_fps), "x")
        floor_s, floor_lines = min((run_floor(recording) for _ in range(repeat)), key=lambda r: r[0])
        report.baseline(f"[{kind}] read-only floor (merge_recordings), frames/s", floor_lines / floor_s, "frames/s")
    report.finish(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
