"""Benchmark 1 — ingest decode: raw Binance frames → normalized events, pure CPU, one process, one core.

Input: the deterministic synthetic recording of ``bench/make_recordings.py synthetic`` (aggTrade-heavy,
liquidation bursts, ``!markPrice@arr@1s`` arrays, open-interest REST bodies), loaded into memory first so
only decoding is timed. Measured: ``BinanceUsdmAdapter.parse`` (websocket frames) and ``parse_rest`` (REST
lines) over every line, with a fresh adapter per repetition; best of ``--repeat``.

Baselines on the same frames in the same run:

* **cryptofeed 2.4.1** — its ``BinanceFutures`` message handler, driven offline by
  ``bench/baseline_cryptofeed.py`` in the baseline virtualenv (``--baseline-python``); skipped with a
  message when that interpreter or cryptofeed is missing.
* **json + Decimal** — :class:`bench.baselines.NaiveBinanceParser`, the straightforward implementation of
  the same normalization; checked to produce events equal to the product's.

Targets (issue 6): ≥ 150,000 frames/s per core, and ≥ 3× cryptofeed.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.baselines import NaiveBinanceParser
from bench.common import (
    BENCH,
    Report,
    baseline_python,
    command_line,
    load_lines,
    parser,
    ratio,
    run_json_subprocess,
    settle_heap,
    synthetic_recording,
)
from ingest.binance import SPEEDUPS, BinanceUsdmAdapter

TARGET_FPS = 150_000
TARGET_RATIO = 3.0
KINDS = ("aggTrade", "forceOrder", "markPrice", "rest")


def kind_of(line: Any) -> str:
    if line.kind == "rest":
        return "rest"
    head = line.data[:40]
    for kind in ("aggTrade", "forceOrder", "markPrice"):
        if kind in head:
            return kind
    return "other"


def run_product(lines: list[Any]) -> tuple[float, int, Counter[str]]:
    """One pass over ``lines`` with a fresh adapter: (seconds, events, rejects by kind)."""
    adapter = BinanceUsdmAdapter([])
    parse, parse_rest = adapter.parse, adapter.parse_rest
    events = 0
    rejects: Counter[str] = Counter()
    gc.collect()
    started = time.perf_counter()
    for line in lines:
        result = parse(line.data, line.recv_ts) if line.kind == "ws" else parse_rest(line.endpoint, line.data,
                                                                                       line.recv_ts)
        events += len(result.events)
        if result.rejects:
            rejects.update(r.kind for r in result.rejects)
    return time.perf_counter() - started, events, rejects


def run_naive(lines: list[Any]) -> tuple[float, int]:
    naive = NaiveBinanceParser()
    parse, parse_rest = naive.parse, naive.parse_rest
    events = 0
    gc.collect()
    started = time.perf_counter()
    for line in lines:
        out = parse(line.data, line.recv_ts) if line.kind == "ws" else parse_rest(line.endpoint, line.data,
                                                                                    line.recv_ts)
        events += len(out)
    return time.perf_counter() - started, events


def check_same_events(lines: list[Any]) -> tuple[bool, int]:
    """Both implementations give equal event objects on these lines."""
    product, naive = BinanceUsdmAdapter([]), NaiveBinanceParser()
    count = 0
    for line in lines:
        if line.kind == "ws":
            a, b = product.parse(line.data, line.recv_ts).events, naive.parse(line.data, line.recv_ts)
        else:
            a, b = product.parse_rest(line.endpoint, line.data, line.recv_ts).events, naive.parse_rest(
                line.endpoint, line.data, line.recv_ts)
        if a != b:
            print(f"   MISMATCH on {line.data[:120]}: {a} != {b}", file=sys.stderr)
            return False, count
        count += len(a)
    return True, count


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__ or "")
    p.add_argument("--lines", type=int, help="recording lines (default 1,000,000; --quick 5,000)")
    p.add_argument("--repeat", type=int, help="repetitions, best is reported (default 3; --quick 1)")
    p.add_argument("--recording", type=Path, help="use this recording instead of the synthetic one")
    p.add_argument("--baseline-python", help="interpreter with cryptofeed installed (default /tmp/benchvenv)")
    args = p.parse_args(argv)
    n = args.lines or (5_000 if args.quick else 1_000_000)
    repeat = args.repeat or (1 if args.quick else 3)
    recording = args.recording or synthetic_recording(n, args.workdir)

    report = Report("decode (ingest parse, pure CPU)", command=command_line())
    report.config = {"recording": str(recording), "repeat (best of)": repeat,
                     "measured": "BinanceUsdmAdapter.parse / parse_rest, fresh adapter per pass, frames in memory",
                     "C aggTrade fast path": "built (ingest._binance_speedups)" if SPEEDUPS
                     else "NOT built: pure-Python paths"}
    report.print_header()
    lines = load_lines(recording)
    kinds = Counter(kind_of(line) for line in lines)
    report.config["frames"] = len(lines)
    settle_heap()
    print(f"   input   : {len(lines):,} frames: " + ", ".join(f"{k}={v:,}" for k, v in sorted(kinds.items())))

    runs = [run_product(lines) for _ in range(repeat)]
    best, events, rejects = min(runs, key=lambda r: r[0])
    fps = len(lines) / best
    report.add("flushwatch frames/s (1 core)", fps, "frames/s", f">= {TARGET_FPS:,}", fps >= TARGET_FPS)
    report.add("flushwatch events/s", events / best, "events/s")
    report.add("flushwatch µs per frame", best / len(lines) * 1e6, "µs")
    if len(runs) > 1:
        report.add("flushwatch frames/s, median of runs", len(lines) / statistics.median(r[0] for r in runs),
                   "frames/s")
    report.add("events produced", events, "events")
    if rejects:
        report.add("rejects", sum(rejects.values()), "", note=str(dict(rejects)))
    per_kind = {}
    for kind in KINDS:
        subset = [line for line in lines if kind_of(line) == kind]
        if subset:
            t = min(run_product(subset)[0] for _ in range(repeat))
            per_kind[kind] = t / len(subset) * 1e6
    report.extra["per_kind_us"] = {"flushwatch": per_kind}

    # baseline 1: the straightforward json + Decimal implementation (always available)
    same, checked = check_same_events(lines[: min(len(lines), 50_000)])
    naive_runs = [run_naive(lines) for _ in range(repeat)]
    naive_best, naive_events = min(naive_runs, key=lambda r: r[0])
    naive_fps = len(lines) / naive_best
    report.baseline("json+Decimal frames/s", naive_fps, "frames/s",
                    note=f"{'equal' if same else 'DIFFERENT'} events on the first {checked:,} events; "
                    f"{naive_events:,} events in total")
    report.add("ratio vs json+Decimal baseline", ratio(fps, naive_fps), "x")

    # baseline 2: cryptofeed, in its own virtualenv
    python = baseline_python(args.baseline_python)
    crypto_fps = float("nan")
    if python is None:
        report.note("cryptofeed baseline skipped: no baseline interpreter (create /tmp/benchvenv, see "
                    "bench/README.md, or pass --baseline-python)")
    else:
        out = run_json_subprocess([python, str(BENCH / "baseline_cryptofeed.py"), str(recording), "--repeat",
                                   str(repeat)], timeout_s=1800)
        if "error" in out:
            report.note(f"cryptofeed baseline failed: {out['error']}")
        else:
            crypto_fps = out["frames"] / min(out["seconds"])
            report.baseline(f"cryptofeed {out['cryptofeed']} frames/s", crypto_fps, "frames/s",
                            note=f"objects {out['objects']}; markPrice arrays split per element (see "
                            "bench/baseline_cryptofeed.py)")
            report.extra["per_kind_us"]["cryptofeed"] = {
                k: v["seconds"] / v["frames"] * 1e6 for k, v in out["per_kind"].items()}
    crypto_ratio = ratio(fps, crypto_fps)
    report.add("ratio vs cryptofeed", crypto_ratio, "x", f">= {TARGET_RATIO:g}x",
               None if crypto_ratio != crypto_ratio else crypto_ratio >= TARGET_RATIO)
    naive_kind = {}
    for kind in KINDS:
        subset = [line for line in lines if kind_of(line) == kind]
        if subset:
            naive_kind[kind] = min(run_naive(subset)[0] for _ in range(repeat)) / len(subset) * 1e6
    report.extra["per_kind_us"]["json+Decimal"] = naive_kind
    for who, table in report.extra["per_kind_us"].items():
        report.note(f"µs per frame by kind, {who}: " + ", ".join(f"{k} {v:.2f}" for k, v in table.items()))
    report.finish(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
