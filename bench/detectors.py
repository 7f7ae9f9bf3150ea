"""Benchmark 3 — detectors: events/s through every registered detector for one hot asset.

Input: the events of the synthetic recording (``bench/make_recordings.py``), every one re-labelled to the
base asset BTC: one Kafka key, one partition, one detector state — the worst case for partitioning. Two
mixes: ``recording`` (the recording's own mix, ~99 % trades) and ``liquidations`` (every trade turned into a
liquidation of the same size: every event enters a cascade window).

Measured, for each mix:

* **in-process** — ``build_detectors`` with every name in ``processors.registry.DETECTORS``, events fed
  with ``on_event`` and a ``on_tick`` per second of event time, as ``flushwatch backtest`` does.
  Baseline: :class:`bench.baselines.NaiveLiquidationWindow` (a deque-per-(base, side) sliding sum and a
  threshold check), same events, same run.
* **through Kafka with state persistence** — the events produced beforehand to the ``fw.md.*`` topics of
  the embedded broker (wire JSON, key = base); then ``ProcessorService`` consumes them as a consumer group,
  runs the detectors, produces alerts and checkpoints detector state to the changelog topic every
  ``processor.commit_interval_s`` (1 s). Timed from the first record consumed to the last, so the group
  join is excluded. Baseline: the same sliding-window liquidation sum written with Quix Streams
  (``bench/baseline_quix.py``, RocksDB state + changelog topic) on the same broker and the same records,
  if the baseline virtualenv has it.

Targets (issue 6): ≥ 200,000 events/s per core in-process, ≥ 50,000 events/s through Kafka with state
persistence.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.baselines import NaiveLiquidationWindow
from bench.common import (
    BENCH,
    Report,
    baseline_python,
    bench_config,
    command_line,
    cpu_seconds,
    create_bench_topics,
    hot_asset,
    load_lines,
    parse_events,
    parser,
    produce_fast,
    ratio,
    rss_mib,
    run_json_subprocess,
    settle_heap,
    synthetic_recording,
)
from flushwatch.broker import EmbeddedBroker
from flushwatch.codec import encode_event
from flushwatch.kafka import Producer
from flushwatch.metrics import Metrics
from flushwatch.topics import Topics
from processors.registry import DETECTORS, build_detectors
from processors.runtime import ProcessorService

TARGET_INPROC = 200_000
TARGET_KAFKA = 50_000
TICK_MS = 1000


def run_inprocess(config: Any, events: list[Any]) -> tuple[float, int]:
    """Feed ``events`` to fresh detectors; (seconds, alerts)."""
    detectors = build_detectors(config)
    alerts = 0
    last_tick = events[0].recv_ts if events else 0
    gc.collect()
    started = time.perf_counter()
    for event in events:
        now = event.recv_ts
        if now - last_tick >= TICK_MS:
            last_tick = now
            for detector in detectors:
                alerts += len(detector.on_tick(now))
        for detector in detectors:
            found = detector.on_event(event)
            if found:
                alerts += len(found)
    return time.perf_counter() - started, alerts


class TimedProcessor(ProcessorService):
    """The product's processor, noting when its partitions were assigned and restored (the clock starts
    there: the group join is not what this benchmark measures)."""

    assigned_at: float | None = None
    cpu_at_assign: float = 0.0

    async def acquire(self, partitions: set[int]) -> None:
        await super().acquire(partitions)
        if self.assigned_at is None:
            self.assigned_at, self.cpu_at_assign = time.perf_counter(), cpu_seconds()


def run_naive(events: list[Any]) -> tuple[float, int]:
    naive = NaiveLiquidationWindow()
    on_event = naive.on_event
    gc.collect()
    started = time.perf_counter()
    for event in events:
        on_event(event)
    return time.perf_counter() - started, naive.crossings


async def run_kafka(bootstrap: str, events: list[Any], quick: bool, quix_python: str | None,
                    report: Report, label: str, quix_budget_s: float) -> None:
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    timings = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 300} if quick else {}
    config = bench_config(bootstrap, prefix, **timings)
    topics = Topics(prefix)
    quix_topic = f"{prefix}quix.in"
    await create_bench_topics(config, extra=[quix_topic] if quix_python else [])
    encoded = [(topics.for_event(e), e.base.encode(), encode_event(e), e.recv_ts) for e in events]
    setup_s = await produce_fast(bootstrap, encoded, config.kafka.partitions)
    if quix_python:
        await produce_fast(bootstrap, [(quix_topic, k, v, ts) for _t, k, v, ts in encoded], config.kafka.partitions)
    print(f"   [{label}] produced {len(encoded):,} events to {prefix}fw.md.* in {setup_s:.1f} s (set-up)")

    metrics = Metrics()
    producer = Producer(config.kafka, metrics)
    await producer.start()
    service = TimedProcessor(config, metrics, lambda: build_detectors(config), producer)
    service.request_drain(horizon_ms=0, expect_records=len(events))
    marks: dict[str, float] = {}
    rss: list[float] = []

    async def monitor() -> None:
        while "last" not in marks:
            if service.assigned_at is not None and "first" not in marks:
                marks["first"], marks["cpu_first"] = service.assigned_at, service.cpu_at_assign
            if service.records >= len(events):
                marks["last"], marks["cpu_last"] = time.perf_counter(), cpu_seconds()
            rss.append(rss_mib())
            await asyncio.sleep(0.002)

    try:
        async with asyncio.timeout(60 if quick else 1800):
            async with asyncio.TaskGroup() as group:
                group.create_task(monitor())
                await service.run(asyncio.Event())
    finally:
        await producer.stop()
    seconds = marks["last"] - marks["first"]
    eps = len(events) / seconds
    cpu = marks["cpu_last"] - marks["cpu_first"]
    report.add(f"[{label}] Kafka + state: events/s (wall)", eps, "events/s", f">= {TARGET_KAFKA:,}",
               eps >= TARGET_KAFKA)
    report.add(f"[{label}] Kafka + state: events per CPU-second", len(events) / cpu if cpu else float("nan"),
               "events/s", note="processor process only; the broker runs in its own process")
    report.add(f"[{label}] Kafka + state: alerts / checkpointed", service.alerts_emitted, "alerts")
    report.extra[f"{label}_kafka"] = {"seconds": seconds, "cpu": cpu, "records": service.records,
                                      "peak_rss_mib": max(rss) if rss else None}

    if quix_python:
        out = run_json_subprocess([quix_python, str(BENCH / "baseline_quix.py"), bootstrap, quix_topic,
                                   "--expect", str(len(events)), "--timeout", "60" if quick else "900",
                                   "--budget-s", str(quix_budget_s)],
                                  timeout_s=120 if quick else 2400)
        if "error" in out:
            report.note(f"[{label}] Quix Streams baseline failed: {out['error']}")
            return
        q_eps = out["records"] / out["seconds"]
        partial = "" if out["records"] >= len(events) else (
            f"; stopped by the {quix_budget_s:g} s budget after {out['records']:,} of {len(events):,} records")
        report.baseline(f"[{label}] Quix Streams {out['quixstreams']} sliding-window sum, events/s (wall)",
                        q_eps, "events/s",
                        note=f"{out['records'] / out['cpu_seconds']:,.0f} events per CPU-second; "
                        f"{out['window_updates_over_threshold']:,} window updates over the threshold{partial}")
        report.add(f"[{label}] Kafka ratio vs Quix Streams", ratio(eps, q_eps), "x")


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__ or "")
    p.add_argument("--lines", type=int, help="recording lines (default 1,000,000; --quick 5,000)")
    p.add_argument("--kafka-events", type=int, help="events through Kafka per mix (default 500,000; --quick 3,000)")
    p.add_argument("--repeat", type=int, help="in-process repetitions, best is reported (default 3; --quick 1)")
    p.add_argument("--mixes", default="recording,liquidations", help="comma-separated: recording, liquidations")
    p.add_argument("--no-kafka", "--in-process-only", action="store_true", help="in-process only")
    p.add_argument("--no-quix", action="store_true", help="skip the Quix Streams baseline")
    p.add_argument("--with-quix", action="store_true", help="run the Quix Streams baseline in --quick too")
    p.add_argument("--quix-budget-s", type=float, default=120.0,
                   help="stop the Quix run after this many seconds and report its rate so far (default 120)")
    p.add_argument("--baseline-python", help="interpreter with quixstreams installed (default /tmp/benchvenv)")
    args = p.parse_args(argv)
    n = args.lines or (5_000 if args.quick else 1_000_000)
    n_kafka = args.kafka_events or (3_000 if args.quick else 500_000)
    repeat = args.repeat or (1 if args.quick else 3)
    skip_quix = args.no_quix or args.no_kafka or (args.quick and not args.with_quix)
    quix = None if skip_quix else baseline_python(args.baseline_python)
    quix_note = ""
    if args.quick and not args.with_quix and not args.no_kafka:
        quix_note = "Quix Streams baseline skipped in --quick (its start-up takes seconds; --with-quix runs it)"
    elif quix is None and not skip_quix:
        quix_note = "Quix Streams baseline skipped: no baseline interpreter (see bench/README.md)"
    recording = synthetic_recording(n, args.workdir)

    report = Report("detectors (one hot asset)", command=command_line())
    config = bench_config(None, "")
    report.config = {"recording": str(recording), "detectors": ", ".join(DETECTORS),
                     "in-process repeat (best of)": repeat, "events through Kafka per mix": n_kafka,
                     "processor.commit_interval_s (state checkpoint)": config.processor.commit_interval_s}
    report.print_header()
    if quix_note:
        report.note(quix_note)
    base_events = parse_events(load_lines(recording))
    mixes = {"recording": hot_asset(base_events), "liquidations": hot_asset(base_events, liquidations_only=True)}
    del base_events
    settle_heap()
    selected = [m.strip() for m in args.mixes.split(",") if m.strip()]
    for label in selected:
        events = mixes[label]
        liq = sum(1 for e in events if e.type == "liquidation")
        print(f"   [{label}] {len(events):,} events, {liq:,} liquidations ({100 * liq / len(events):.1f} %)")
        runs = [run_inprocess(config, events) for _ in range(repeat)]
        best, alerts = min(runs, key=lambda r: r[0])
        eps = len(events) / best
        report.add(f"[{label}] in-process events/s (1 core)", eps, "events/s", f">= {TARGET_INPROC:,}",
                   eps >= TARGET_INPROC, note=f"{alerts} alerts")
        report.add(f"[{label}] in-process µs per event", best / len(events) * 1e6, "µs")
        for name in DETECTORS:
            solo = config.model_copy(update={"detectors": config.detectors.model_copy(update={"enabled": [name]})})
            t = min(run_inprocess(solo, events)[0] for _ in range(repeat))
            report.extra.setdefault(f"{label}_us_per_event_by_detector", {})[name] = t / len(events) * 1e6
        report.note(f"[{label}] µs per event, each detector alone: " + ", ".join(
            f"{k} {v:.2f}" for k, v in report.extra[f"{label}_us_per_event_by_detector"].items()))
        naive_best, crossings = min((run_naive(events) for _ in range(repeat)), key=lambda r: r[0])
        naive_eps = len(events) / naive_best
        report.baseline(f"[{label}] plain-Python sliding-window sum (a floor), events/s", naive_eps, "events/s",
                        note=f"{crossings} threshold crossings; the minimum work: one deque per (base, side), "
                        "trades skipped")
        report.add(f"[{label}] in-process ratio vs plain-Python baseline", ratio(eps, naive_eps), "x")

    if not args.no_kafka:
        with EmbeddedBroker() as broker:
            # --quick: one mix through Kafka is enough for a smoke test (each run waits for a group join)
            for label in selected[:1] if args.quick else selected:
                events = mixes[label][:n_kafka]
                asyncio.run(run_kafka(broker.bootstrap, events, args.quick, quix, report, label, args.quix_budget_s))
    report.finish(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
