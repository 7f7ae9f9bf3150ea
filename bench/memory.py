"""Benchmark 6 — memory: RSS of each role over 10 M events, and detector state size per asset.

Each role runs in its own process, so its RSS is its own, against one embedded broker:

1. **ingest** — the product's ``FramePipeline`` (Binance adapter, ``encode_event``, the product's
   ``Producer``) fed ``--events`` events' worth of frames from the synthetic generator of
   ``bench/make_recordings.py`` (≈ 14 h of recording time at 200 frames/s), straight into the pipeline:
   the websocket driver in front of it only adds bounded buffers (a 16-frame websockets queue and the
   bounded ingest queue), and it would need a replay server holding 10 M frames in memory.
2. **process** — ``ProcessorService`` with every registered detector, consuming those events from Kafka
   as a consumer group, checkpointing state to the changelog topic every second.

Sampled ten times per role: RSS, and for the processor the size of its latest state checkpoint per
partition (the detectors' snapshots, what a restore reads), split by detector and divided by the number of
base assets. The broker's RSS is sampled too; Tansu's memory storage keeps every record (~330 B each,
ENVIRONMENT.md), so it grows by design and is not a flushwatch role.

Flat means: from the sample at 30 % of the events (windows and the cascade baseline — 2 h of event time —
are full by then) to the end, RSS grows by less than 10 % and 32 MiB, and state by less than 10 %.
Baseline: each role's own RSS at that 30 % sample. Target (issue 6): flat.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    REPO,
    Report,
    bench_config,
    command_line,
    create_bench_topics,
    parser,
    rss_mib,
)
from flushwatch.kafka import Producer

SAMPLES = 10
FLAT_FROM = 0.3


class SizedProducer(Producer):
    """The product's producer, remembering the size of the latest state checkpoint per partition and
    counting market events."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.market_sent = 0
        self.state_bytes: dict[int, bytes] = {}

    async def send(self, topic: str, value: bytes, key: bytes | None = None,
                   headers: list[tuple[str, bytes]] | None = None, timestamp_ms: int | None = None,
                   partition: int | None = None, *, immediate: bool = False) -> asyncio.Future[Any]:
        future = await super().send(topic, value, key, headers, timestamp_ms, partition, immediate=immediate)
        if ".md." in topic:
            self.market_sent += 1
        elif topic.endswith("fw.processor_state") and partition is not None:
            self.state_bytes[partition] = value
        return future


def emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


async def role_ingest(bootstrap: str, prefix: str, events: int) -> None:
    from bench.make_recordings import synthetic_lines  # noqa: PLC0415
    from flushwatch.metrics import Metrics  # noqa: PLC0415
    from flushwatch.topics import Topics  # noqa: PLC0415
    from ingest.binance import BinanceUsdmAdapter  # noqa: PLC0415
    from ingest.pipeline import FramePipeline  # noqa: PLC0415

    config = bench_config(bootstrap, prefix)
    metrics = Metrics()
    producer = SizedProducer(config.kafka, metrics)
    await producer.start()
    pipeline = FramePipeline({"binance": BinanceUsdmAdapter([])}, producer, Topics(prefix), metrics)
    step = max(1, events // SAMPLES)
    next_sample = step
    started = time.perf_counter()
    emit({"events": 0, "rss_mib": rss_mib(), "t": 0.0})
    for line in synthetic_lines(10**12):
        await pipeline.handle(line)
        if producer.market_sent >= next_sample:
            emit({"events": producer.market_sent, "rss_mib": rss_mib(), "t": time.perf_counter() - started,
                  "frames": pipeline.frames})
            next_sample += step
            if producer.market_sent >= events:
                break
    await producer.stop()
    emit({"done": True, "events": producer.market_sent, "frames": pipeline.frames, "failures": producer.failures,
          "seconds": time.perf_counter() - started})


async def role_process(bootstrap: str, prefix: str, events: int, quick: bool) -> None:
    from flushwatch.metrics import Metrics  # noqa: PLC0415
    from processors.registry import DETECTORS, build_detectors  # noqa: PLC0415
    from processors.runtime import ProcessorService  # noqa: PLC0415

    timings = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 300} if quick else {}
    config = bench_config(bootstrap, prefix, **timings)
    metrics = Metrics()
    producer = SizedProducer(config.kafka, metrics)
    await producer.start()
    service = ProcessorService(config, metrics, lambda: build_detectors(config), producer)
    service.request_drain(horizon_ms=0, expect_records=events)
    step = max(1, events // SAMPLES)
    started = time.perf_counter()

    def state_sizes() -> dict[str, Any]:
        by_detector: dict[str, int] = {}
        bases: set[str] = set()
        total = 0
        for raw in producer.state_bytes.values():
            total += len(raw)
            state = orjson.loads(raw)
            for name, snap in state["detectors"].items():
                by_detector[name] = by_detector.get(name, 0) + len(orjson.dumps(snap))
                if name == "cascade":
                    bases.update(entry[0] for entry in snap.get("bases", []))
        return {"state_bytes": total, "state_by_detector": by_detector, "bases": sorted(bases)}

    async def monitor() -> None:
        next_sample = step
        emit({"records": 0, "rss_mib": rss_mib(), "t": 0.0, "detectors": list(DETECTORS)})
        while next_sample <= events:
            if service.records >= next_sample:
                emit({"records": service.records, "rss_mib": rss_mib(), "t": time.perf_counter() - started,
                      **state_sizes()})
                next_sample = (service.records // step + 1) * step
            await asyncio.sleep(0.01)

    async with asyncio.TaskGroup() as group:
        group.create_task(monitor())
        await service.run(asyncio.Event())
    await producer.stop()
    emit({"done": True, "records": service.records, "alerts": service.alerts_emitted, "rss_mib": rss_mib(),
          "seconds": time.perf_counter() - started, **state_sizes()})


def run_role(role: str, bootstrap: str, prefix: str, events: int, broker_pid: int,
             quick: bool) -> list[dict[str, Any]]:
    """Run one role as a subprocess; every sample it prints, with the broker's RSS at that moment."""
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--role", role, "--bootstrap", bootstrap, "--prefix", prefix,
         "--events", str(events), *(["--quick"] if quick else [])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    samples: list[dict[str, Any]] = []
    errors: list[str] = []
    drain = threading.Thread(target=lambda: errors.extend(proc.stderr.readlines() if proc.stderr else []),
                             daemon=True)
    drain.start()
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("{"):
            sample = json.loads(line)
            sample["broker_rss_mib"] = rss_mib(broker_pid)
            samples.append(sample)
            if "done" not in sample:
                key = "events" if role == "ingest" else "records"
                print(f"   [{role}] {sample[key]:>12,}  RSS {sample['rss_mib']:7.1f} MiB  broker "
                      f"{sample['broker_rss_mib']:7.1f} MiB  {sample['t']:7.1f} s", flush=True)
    proc.wait()
    drain.join(5)
    if proc.returncode != 0 or not samples or "done" not in samples[-1]:
        raise RuntimeError(f"role {role} failed ({proc.returncode}): {''.join(errors)[-3000:]}")
    return samples


def flat_from(samples: list[dict[str, Any]], key: str, count_key: str, total: int) -> tuple[dict[str, Any], float]:
    """The first sample at or after FLAT_FROM of the run, and the growth of ``key`` from it to the end."""
    body = [s for s in samples if "done" not in s and s.get(count_key, 0) > 0]
    ref = next((s for s in body if s[count_key] >= FLAT_FROM * total), body[0])
    return ref, body[-1][key] - ref[key]


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__ or "")
    p.add_argument("--events", type=int, help="events through each role (default 10,000,000; --quick 20,000)")
    p.add_argument("--role", choices=["ingest", "process"], help=argparse_suppress())
    p.add_argument("--bootstrap", help=argparse_suppress())
    p.add_argument("--prefix", help=argparse_suppress())
    args = p.parse_args(argv)
    events = args.events or (20_000 if args.quick else 10_000_000)
    if args.role == "ingest":
        asyncio.run(role_ingest(args.bootstrap, args.prefix, events))
        return 0
    if args.role == "process":
        asyncio.run(role_process(args.bootstrap, args.prefix, events, args.quick))
        return 0

    from flushwatch.broker import EmbeddedBroker  # noqa: PLC0415

    report = Report("memory (RSS per role, state per asset)", command=command_line())
    report.config = {"events": f"{events:,} through each role", "samples per role": SAMPLES,
                     "flat": f"growth from the {FLAT_FROM:.0%} sample to the end < 10 % (RSS also < 32 MiB)"}
    report.print_header()
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    with EmbeddedBroker() as broker:
        asyncio.run(create_bench_topics(bench_config(broker.bootstrap, prefix)))
        ingest = run_role("ingest", broker.bootstrap, prefix, events, broker.pid, args.quick)
        produced = ingest[-1]["events"]
        process = run_role("process", broker.bootstrap, prefix, produced, broker.pid, args.quick)
    report.extra["ingest_samples"] = ingest
    report.extra["process_samples"] = process

    for role, samples, count_key, total in (("ingest", ingest, "events", events),
                                            ("process", process, "records", produced)):
        body = [s for s in samples if "done" not in s]
        ref, growth = flat_from(samples, "rss_mib", count_key, total)
        end = body[-1]["rss_mib"]
        ok = growth < max(0.0, 0.1 * ref["rss_mib"]) and growth < 32
        report.add(f"[{role}] RSS after {body[-1][count_key]:,} events", end, "MiB", "flat", ok,
                   note=f"{body[0]['rss_mib']:.0f} MiB at start; {ref['rss_mib']:.1f} MiB at {ref[count_key]:,} "
                   f"events; growth since {growth:+.1f} MiB")
        report.baseline(f"[{role}] RSS at {ref[count_key]:,} events ({FLAT_FROM:.0%} of the run)", ref["rss_mib"],
                        "MiB")
    done = process[-1]
    bases = max(1, len(done["bases"]))
    ref, growth = flat_from(process, "state_bytes", "records", produced)
    report.add("[process] state size per asset (latest checkpoint)", done["state_bytes"] / bases, "bytes", "flat",
               growth <= 0.1 * max(1, ref["state_bytes"]),
               note=f"{done['state_bytes']:,} bytes for {bases} base assets ({', '.join(done['bases'])}); by "
               f"detector {done['state_by_detector']}; growth since {ref['records']:,} events "
               f"{growth:+,} bytes")
    report.add("[process] alerts", done["alerts"], "alerts")
    report.add("broker (Tansu) RSS at the end", process[-1]["broker_rss_mib"], "MiB",
               note="memory storage keeps every record: grows by design, not a flushwatch role")
    report.add("[ingest] events/s while measuring (with sampling)", ingest[-1]["events"] / ingest[-1]["seconds"],
               "events/s")
    report.add("[process] records/s while measuring (with sampling)", done["records"] / done["seconds"],
               "records/s", note="includes the group join")
    report.finish(args.json)
    return 0


def argparse_suppress() -> str:
    import argparse  # noqa: PLC0415

    return argparse.SUPPRESS


if __name__ == "__main__":
    raise SystemExit(main())
