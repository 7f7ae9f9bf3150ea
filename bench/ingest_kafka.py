"""Benchmark 2 — ingest to Kafka, end to end: websocket frames from a local replay server → parse → produce.

The venue is ``flushwatch replay RECORDING --speed 0`` in its own process (as fast as the client reads).
The measured process runs the product's ingest role unchanged: ``IngestService`` (websocket driver →
bounded queue → ``FramePipeline``: Binance adapter, ``encode_event``, the product's ``Producer`` with
``acks=all``) into the embedded broker (Tansu, its own process). Timed from the first frame taken in to
the producer flush that confirms the last event; the ingest process's CPU time over the same span gives
events per CPU-second, i.e. per core.

How much of the time is the broker client: the same run again with a producer that accepts and drops
every record (same interface, no Kafka), on the same recording. The difference in ingest CPU per event is
the broker client's share (the product ``Producer``'s batching through aiokafka's batch API, protocol
encoding, the socket writes and the acknowledgements, one future per record). With
``--profile`` (default when py-spy is installed, not in ``--quick``) a third run, sampled by py-spy,
attributes the ingest process's samples to modules as well.

Bounded memory: the ingest process's RSS is sampled through the run; the broker's RSS is reported too
(Tansu's memory storage keeps every record, ~330 bytes each, by design).

Baseline: the no-Kafka run of the same pipeline (the ceiling the broker client leaves). Target (issue 6):
≥ 50,000 events/s sustained on one core with bounded memory.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    SYNTHETIC_SYMBOLS,
    PySpy,
    Report,
    bench_config,
    command_line,
    cpu_seconds,
    create_bench_topics,
    load_lines,
    parse_events,
    parser,
    proc_cpu_seconds,
    py_spy,
    replay_config,
    rss_mib,
    settle_heap,
    start_replay,
    synthetic_recording,
)
from flushwatch.broker import EmbeddedBroker
from flushwatch.kafka import Producer
from flushwatch.metrics import Metrics
from ingest.registry import create_adapter
from ingest.service import IngestService

TARGET_EPS = 50_000


def _counted(topic: str) -> bool:
    """Market events the recording's websocket frames yield (open interest comes from REST polls)."""
    return ".md." in topic and not topic.endswith("open_interest")


class CountingProducer(Producer):
    """The product's producer, counting market events handed to it (to know when the last one went).
    The classification is cached per topic so that the counting itself costs next to nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.market_sent = 0
        self._is_counted: dict[str, bool] = {}

    async def send(self, topic: str, value: bytes, key: bytes | None = None,
                   headers: list[tuple[str, bytes]] | None = None, timestamp_ms: int | None = None,
                   partition: int | None = None, *, immediate: bool = False) -> asyncio.Future[Any]:
        future = await super().send(topic, value, key, headers, timestamp_ms, partition, immediate=immediate)
        counted = self._is_counted.get(topic)
        if counted is None:
            counted = self._is_counted[topic] = _counted(topic)
        if counted:
            self.market_sent += 1
        return future


class NullProducer:
    """Same interface as :class:`flushwatch.kafka.Producer`; accepts every record and drops it."""

    def __init__(self) -> None:
        self.market_sent = 0
        self.failures = 0
        self._done: asyncio.Future[Any] | None = None
        self._is_counted: dict[str, bool] = {}

    async def start(self) -> None:
        self._done = asyncio.get_running_loop().create_future()
        self._done.set_result(None)

    async def send(self, topic: str, value: bytes, key: bytes | None = None,
                   headers: list[tuple[str, bytes]] | None = None, timestamp_ms: int | None = None,
                   partition: int | None = None, *, immediate: bool = False) -> asyncio.Future[Any]:
        counted = self._is_counted.get(topic)
        if counted is None:
            counted = self._is_counted[topic] = _counted(topic)
        if counted:
            self.market_sent += 1
        assert self._done is not None
        return self._done

    async def flush(self) -> int:
        return 0

    async def stop(self) -> None:
        return None


async def run_ingest(recording: Path, bootstrap: str | None, expect: int, with_kafka: bool,
                     spy: PySpy | None, broker_pid: int | None) -> dict[str, Any]:
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    config = bench_config(bootstrap, prefix)
    if with_kafka:
        await create_bench_topics(config)
    replay = start_replay(recording, speed=0)
    try:
        config = replay_config(config, replay, SYNTHETIC_SYMBOLS)
        metrics = Metrics()
        producer: Any = CountingProducer(config.kafka, metrics) if with_kafka else NullProducer()
        await producer.start()
        service = IngestService(config, metrics, {"binance": create_adapter("binance", config)}, producer)
        stop = asyncio.Event()
        marks: dict[str, float] = {}
        rss: list[float] = []
        profile: dict[str, float] = {}

        async def monitor() -> None:
            last_sample = 0.0
            progress = (0, time.perf_counter())
            while True:
                now = time.perf_counter()
                if producer.market_sent != progress[0]:
                    progress = (producer.market_sent, now)
                elif "short" not in marks and replay.proc.poll() is not None and now - progress[1] > 15:
                    # the replay ended and nothing came for 15 s: report what arrived instead of waiting forever
                    marks["short"] = expect - producer.market_sent
                if "first" not in marks and service.pipeline.frames:
                    marks["first"], marks["cpu_first"] = now, cpu_seconds()
                    marks["broker_cpu_first"] = proc_cpu_seconds(broker_pid) if broker_pid else 0.0
                    marks["replay_cpu_first"] = proc_cpu_seconds(replay.proc.pid)
                if now - last_sample >= 0.1:
                    rss.append(rss_mib())
                    last_sample = now
                if producer.market_sent >= expect or "short" in marks:
                    await producer.flush()
                    marks["last"], marks["cpu_last"] = time.perf_counter(), cpu_seconds()
                    marks["broker_cpu_last"] = proc_cpu_seconds(broker_pid) if broker_pid else 0.0
                    marks["replay_cpu_last"] = proc_cpu_seconds(replay.proc.pid)
                    if spy is not None:
                        profile.update(await asyncio.to_thread(spy.stop))
                    stop.set()
                    return
                await asyncio.sleep(0.005)

        if spy is not None and not spy.start():
            spy = None
        async with asyncio.timeout(3600):
            async with asyncio.TaskGroup() as group:
                group.create_task(monitor())
                await service.run(stop)
        await producer.stop()
    finally:
        replay.stop()
    seconds = marks["last"] - marks["first"]
    return {"events": producer.market_sent, "frames": service.pipeline.frames, "seconds": seconds,
            "cpu": marks["cpu_last"] - marks["cpu_first"], "rss": rss, "profile": profile,
            "broker_cpu": marks["broker_cpu_last"] - marks["broker_cpu_first"],
            "replay_cpu": marks["replay_cpu_last"] - marks["replay_cpu_first"],
            "failures": producer.failures, "short": marks.get("short", 0),
            "batches": getattr(producer, "batches", 0), "batched_records": getattr(producer, "batched_records", 0)}


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__ or "")
    p.add_argument("--lines", type=int, help="recording lines (default 1,000,000; --quick 5,000)")
    p.add_argument("--profile", action="store_true", default=None, help="py-spy the Kafka run (default: if installed)")
    p.add_argument("--no-profile", dest="profile", action="store_false")
    args = p.parse_args(argv)
    n = args.lines or (5_000 if args.quick else 1_000_000)
    profile = (py_spy() is not None and not args.quick) if args.profile is None else args.profile
    recording = synthetic_recording(n, args.workdir)

    report = Report("ingest to Kafka (replay server → parse → produce)", command=command_line())
    report.config = {"recording": str(recording), "replay": "flushwatch replay --speed 0 (own process)",
                     "producer": "flushwatch.kafka.Producer (aiokafka batch API, acks=all, linger_ms=5)",
                     "websocket": "the driver's default client (permessage-deflate not offered)",
                     "broker": "embedded Tansu, memory storage (own process)", "py-spy profile": profile}
    report.print_header()
    lines = load_lines(recording)
    ws_lines = [line for line in lines if line.kind == "ws"]
    expect = len(parse_events(ws_lines))
    report.config["websocket frames / market events in them"] = f"{len(ws_lines):,} / {expect:,}"
    print(f"   input   : {len(ws_lines):,} websocket frames → {expect:,} events (plus REST polls of open interest)")
    del lines, ws_lines
    settle_heap()

    with EmbeddedBroker() as broker:
        kafka = asyncio.run(run_ingest(recording, broker.bootstrap, expect, True, None, broker.pid))
        broker_rss = rss_mib(broker.pid)
    null = asyncio.run(run_ingest(recording, None, expect, False, None, None))
    if profile:  # a separate run, so sampling never disturbs the measured one
        with EmbeddedBroker() as broker:
            spy = PySpy(args.workdir / "ingest_kafka.pyspy.txt")
            kafka["profile"] = asyncio.run(run_ingest(recording, broker.bootstrap, expect, True, spy,
                                                      broker.pid))["profile"]

    eps = kafka["events"] / kafka["seconds"]
    per_cpu = kafka["events"] / kafka["cpu"]
    report.add("events/s, wall (ingest + replay + broker on 2 cores)", eps, "events/s", f">= {TARGET_EPS:,}",
               eps >= TARGET_EPS)
    report.add("events per CPU-second of the ingest process (1 core)", per_cpu, "events/s",
               f">= {TARGET_EPS:,}", per_cpu >= TARGET_EPS)
    report.add("ingest process CPU use during the run", kafka["cpu"] / kafka["seconds"] * 100, "% of a core")
    report.add("replay server / broker CPU use during the run",
               f"{kafka['replay_cpu'] / kafka['seconds'] * 100:.0f} / "
               f"{kafka['broker_cpu'] / kafka['seconds'] * 100:.0f}",
               "% of a core")
    cpu_per_event_kafka = kafka["cpu"] / kafka["events"]
    cpu_per_event_null = null["cpu"] / null["events"]
    share = (cpu_per_event_kafka - cpu_per_event_null) / cpu_per_event_kafka
    report.add("broker client share of ingest CPU (A/B)", share * 100, "%",
               note=f"{cpu_per_event_kafka * 1e6:.1f} µs CPU per event with Kafka, "
               f"{cpu_per_event_null * 1e6:.1f} µs without")
    if kafka["profile"]:
        report.extra["profile_shares"] = kafka["profile"]
        top = ", ".join(f"{k} {v * 100:.0f}%" for k, v in list(kafka["profile"].items())[:8])
        report.add("broker client share of samples (py-spy)",
                   100 * kafka["profile"].get("broker client (aiokafka + flushwatch/kafka.py)", 0.0), "%",
                   note=f"py-spy samples of the ingest process by module: {top}")
    rss = kafka["rss"]
    half = rss[len(rss) // 2:] or rss
    report.add("ingest RSS start / peak / end", f"{rss[0]:.0f} / {max(rss):.0f} / {rss[-1]:.0f}", "MiB",
               "bounded", max(rss) - min(half) < 64 if len(rss) > 10 else None,
               note="bounded = the second half of the run grows by < 64 MiB")
    report.add("broker (Tansu) RSS at the end", broker_rss, "MiB",
               note="memory storage keeps every record (~330 B each, ENVIRONMENT.md): grows by design")
    report.add("produce failures", kafka["failures"], "")
    if kafka["batches"]:
        report.add("records per produce batch (Kafka run)", kafka["batched_records"] / kafka["batches"], "records",
                   note=f"{kafka['batches']:,} batches through aiokafka's batch API, linger_ms "
                   f"{bench_config(None, '').kafka.linger_ms}")
    for label, run in (("Kafka", kafka), ("no-Kafka", null)):
        if run["short"]:
            report.note(f"{label} run: {run['short']:,} expected events never arrived (the replay ended first); "
                        "the rates are over the events that did")
    report.baseline("same pipeline, producer drops records (no Kafka), events/s wall", null["events"] / null["seconds"],
                    "events/s", note=f"{null['events'] / null['cpu']:,.0f} events per CPU-second")
    report.add("ratio vs no-Kafka pipeline (wall)", (eps / (null["events"] / null["seconds"])), "x")
    report.extra["kafka_run"] = {k: v for k, v in kafka.items() if k != "rss"}
    report.extra["null_run"] = {k: v for k, v in null.items() if k != "rss"}
    report.finish(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
