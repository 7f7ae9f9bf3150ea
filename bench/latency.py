"""Benchmark 4 — latency under an offered load: ingest → Kafka → processor → alert topic.

The load is "a busy cascade minute", generated here as a Binance recording: ``--rate`` frames per second
(default 5,000, one event each) for ``--duration`` seconds (default 60): aggTrade frames on six majors, and
``--liq-rate`` liquidations per second (default 100) on a rolling set of alt-coin symbols, each one a
14-liquidation flush over 14 s that starts a cascade (info), escalates it to warning and then to critical.
That gives a few hundred cascades and over a thousand event-triggered alerts per minute, so the alert
percentiles have samples.

It is served in real time (``flushwatch replay --speed 1``, own process) to the product's roles wired as
``flushwatch run`` wires them: ``IngestService`` and ``ProcessorService`` (every registered detector) in
one process sharing one ``Producer``, the embedded broker in its own, its topics created with
``broker.partitions`` partitions each, as ``flushwatch run`` creates them on the embedded broker it starts.
The producer is the product's, instrumented to note when each record is acknowledged:

* **receive → event in Kafka**: the event's ``recv_ts`` (stamped by the websocket driver when the frame
  arrived) to the broker's acknowledgement of the event record (``acks=all``);
* **receive → alert produced**: the ``recv_ts`` of the liquidation that triggered an alert (matched on base
  and the alert's ``window.end``) to the acknowledgement of the alert record on ``fw.alerts``.

``recv_ts`` has millisecond resolution (it is floored), so every latency carries up to +1 ms of rounding.
Both clocks are this process's wall clock. Configurations (``--configs``): ``default``, the product's
settings (``processor.fetch_max_wait_ms``, ``kafka.linger_ms``, ``processor.commit_interval_s``,
``broker.partitions`` as shipped); ``fetch<N>``, the same with the processor's consumer waiting at most N ms
per fetch (``fetch100`` is the sink's ``kafka.fetch_max_wait_ms`` and the processor's default before it was
20 ms); ``linger<N>``, the same
with the shared producer lingering N ms (``kafka.linger_ms``) for every record; ``partitions<N>``, every
topic with N partitions (``partitions6`` is ``kafka.partitions``, what the roles create on any other
cluster); several of these joined with ``+``; ``separate``, the
product's settings with one change of wiring: the processor gets its own ``Producer`` instead of sharing the
ingest role's, so its checkpoints wait for its own records only.

Target (issue 6): p99 receive → alert < 50 ms on the embedded broker. Baseline: the ``default`` config is
the reference the others are compared with; the no-processing floor is the receive → event in Kafka
latency of the same run.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    SYNTHETIC_SYMBOLS,
    Report,
    bench_config,
    command_line,
    cpu_seconds,
    create_bench_topics,
    load_lines,
    parse_events,
    parser,
    percentile,
    proc_cpu_seconds,
    replay_config,
    settle_heap,
    start_replay,
)
from bench.make_recordings import write_recording
from flushwatch.broker import EmbeddedBroker
from flushwatch.kafka import Producer
from flushwatch.metrics import Metrics
from flushwatch.recording import RecordLine
from ingest.registry import create_adapter
from ingest.service import IngestService
from processors.registry import DETECTORS, build_detectors
from processors.runtime import ProcessorService

TARGET_P99_MS = 50.0
#: notional (USD) of the 14 liquidations of one flush: 10 × 3.6 K starts it (36 K ≥ the 30 K default floor,
#: 10 events), +20 K +40 K escalates to warning (96 K ≥ 3 × 30 K), +100 K +120 K to critical (316 K ≥ 300 K)
FLUSH = (3_600,) * 10 + (20_000, 40_000, 100_000, 120_000)
CONFIGS: dict[str, dict[str, Any]] = {
    "default": {},
    # the product's defaults, but ingest and processor each with their own producer (see the module doc)
    "separate": {"_separate_producers": True},
}


def config_named(name: str) -> dict[str, Any]:
    """A configuration of ``CONFIGS``, ``fetch<N>`` (the processor's consumer waiting at most N ms per
    fetch), ``linger<N>`` (the shared producer lingering N ms), ``partitions<N>`` (every topic created with
    N partitions), or several of those joined with ``+`` (``fetch5+partitions1``).

    Keys without a leading underscore are ``kafka`` settings, ``_processor`` holds ``processor`` ones."""
    if "+" in name:
        merged: dict[str, Any] = {}
        for part in name.split("+"):
            for key, value in config_named(part).items():
                merged[key] = {**merged.get(key, {}), **value} if key == "_processor" else value
        return merged
    for prefix, make in (("fetch", lambda n: {"_processor": {"fetch_max_wait_ms": n}}),
                         ("linger", lambda n: {"linger_ms": n}),
                         ("partitions", lambda n: {"partitions": n})):
        if name.startswith(prefix) and name[len(prefix):].isdigit():
            return make(int(name[len(prefix):]))
    if name not in CONFIGS:
        raise SystemExit(f"unknown config {name!r}: use default, separate, fetch<N>, linger<N>, partitions<N> "
                         "or several joined with +")
    return CONFIGS[name]


def cascade_minute(rate: int, duration_s: float, liq_rate: int, spacing_ms: int = 1000,
                   start_ms: int = 1_737_990_000_000) -> list[RecordLine]:
    """The offered load as recording lines, ``rate`` per second, in receive order."""
    ws = "wss://fstream.binance.com/market/stream?streams=!forceOrder@arr/!markPrice@arr@1s"
    total = int(rate * duration_s)
    lines: list[RecordLine] = []
    agg = dict.fromkeys(SYNTHETIC_SYMBOLS, 1_000_000)
    prices = {"BTCUSDT": 102_000.0, "BTCUSDC": 102_010.0, "ETHUSDT": 3_200.0, "SOLUSDT": 240.0,
              "DOGEUSDT": 0.35, "XRPUSDT": 3.1}
    # flushes: every 1 / (liq_rate / len(FLUSH)) seconds a new symbol starts one liquidation per
    # ``spacing_ms`` (Binance pushes at most one per symbol per second)
    starts_per_s = liq_rate / len(FLUSH)
    liqs: list[tuple[int, str, int]] = []  # (due ms offset, symbol, step)
    n_flushes = int(starts_per_s * duration_s) + 1
    for i in range(n_flushes):
        begin = int(i * 1000 / starts_per_s)
        symbol = f"Q{i:04d}USDT"
        liqs.extend((begin + step * spacing_ms, symbol, step) for step in range(len(FLUSH)))
    liqs.sort()
    li = 0
    for k in range(total):
        offset = k * 1000 / rate
        recv = start_ms + int(offset)
        if li < len(liqs) and liqs[li][0] <= offset:
            due, symbol, step = liqs[li]
            li += 1
            ts = start_ms + due
            qty = f"{FLUSH[step]:.0f}"
            order = {"s": symbol, "S": "SELL", "o": "LIMIT", "f": "IOC", "q": qty, "p": "0.9900", "ap": "1.0000",
                     "X": "FILLED", "l": qty, "z": qty, "T": ts}
            frame = {"stream": "!forceOrder@arr", "data": {"e": "forceOrder", "E": ts + 1, "o": order}}
        else:
            symbol = SYNTHETIC_SYMBOLS[k % len(SYNTHETIC_SYMBOLS)]
            agg[symbol] += 1
            price = prices[symbol] * (1 - 0.00001 * (k % 7))
            data = {"e": "aggTrade", "E": recv - 2, "a": agg[symbol], "s": symbol, "p": f"{price:.4f}",
                    "q": "0.500", "f": agg[symbol] * 3, "l": agg[symbol] * 3 + 1, "T": recv - 3, "m": k % 3 == 0}
            frame = {"stream": f"{symbol.lower()}@aggTrade", "data": data}
        lines.append(RecordLine(recv, "binance", "ws", ws, orjson.dumps(frame).decode()))
    return lines


class TimedProducer(Producer):
    """The product's producer, noting the acknowledgement time of every market event and alert."""

    def __init__(self, *args: Any, shared: TimedProducer | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.event_latency_ms: list[float] = []
        self.alert_latency_ms: list[float] = []
        # a second instance (the processor's own producer) records into the first one's tables
        self.liq_recv: dict[tuple[str, int], int] = {} if shared is None else shared.liq_recv
        self.alerts_by_type: dict[str, int] = {} if shared is None else shared.alerts_by_type
        if shared is not None:
            self.alert_latency_ms = shared.alert_latency_ms
        self.unmatched_alerts = 0
        self.market_acked = 0

    async def send(self, topic: str, value: bytes, key: bytes | None = None,
                   headers: list[tuple[str, bytes]] | None = None, timestamp_ms: int | None = None,
                   partition: int | None = None, *, immediate: bool = False) -> asyncio.Future[Any]:
        future = await super().send(topic, value, key, headers, timestamp_ms, partition, immediate=immediate)
        if ".md." in topic and timestamp_ms is not None:
            recv = timestamp_ms
            if topic.endswith("liquidations"):
                event = orjson.loads(value)
                self.liq_recv[(event["base"], event["ts"])] = recv
            future.add_done_callback(lambda _f: self._event_acked(recv))
        elif topic.endswith("fw.alerts"):
            alert = orjson.loads(value)
            self.alerts_by_type[alert["type"]] = self.alerts_by_type.get(alert["type"], 0) + 1
            trigger = self.liq_recv.get((alert["base"], alert["window"]["end"]))
            if trigger is None:
                self.unmatched_alerts += 1
            else:
                future.add_done_callback(lambda _f: self.alert_latency_ms.append(time.time() * 1000 - trigger))
        return future

    def _event_acked(self, recv: int) -> None:
        self.market_acked += 1
        self.event_latency_ms.append(time.time() * 1000 - recv)


async def run_once(recording: Path, bootstrap: str, expect: int, kafka: dict[str, Any], broker_pid: int,
                   quick: bool, separate: bool = False, processor: dict[str, Any] | None = None) -> dict[str, Any]:
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    timings = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 300} if quick else {}
    config = bench_config(bootstrap, prefix, **timings, **kafka)
    if processor:
        config = config.model_copy(update={"processor": config.processor.model_copy(update=processor)})
    await create_bench_topics(config)
    replay = start_replay(recording, speed=1)
    try:
        config = replay_config(config, replay, SYNTHETIC_SYMBOLS)
        metrics = Metrics()
        producer = TimedProducer(config.kafka, metrics)
        await producer.start()
        own = producer
        if separate:  # the processor gets its own producer: its checkpoint flushes wait only for its records
            own = TimedProducer(config.kafka, metrics, shared=producer, client_suffix="processor-producer")
            await own.start()
        stop = asyncio.Event()
        processor = ProcessorService(config, metrics, lambda: build_detectors(config), own)
        ingest = IngestService(config, metrics, {"binance": create_adapter("binance", config)}, producer)
        marks: dict[str, float] = {}
        lag_ms: list[float] = []

        async def loop_lag() -> None:
            """How late a 5 ms sleep wakes up: the event loop's stalls, which every latency here shares."""
            loop = asyncio.get_running_loop()
            while not stop.is_set():
                due = loop.time() + 0.005
                await asyncio.sleep(0.005)
                lag_ms.append((loop.time() - due) * 1000)

        async with asyncio.timeout(600):
            async with asyncio.TaskGroup() as group:
                group.create_task(processor.run(stop))
                await processor.ready.wait()
                marks["start"] = time.perf_counter()
                own0 = cpu_seconds()
                group.create_task(loop_lag())
                cpu0 = (proc_cpu_seconds(replay.proc.pid), proc_cpu_seconds(broker_pid))
                group.create_task(ingest.run(stop))
                while producer.market_acked < expect:
                    await asyncio.sleep(0.05)
                    if replay.proc.poll() is not None and time.perf_counter() - marks.setdefault(
                            "replay_done", time.perf_counter()) > 10:
                        break  # the replay ended and events stopped coming: report what arrived
                marks["end"] = time.perf_counter()
                own1 = cpu_seconds()
                cpu1 = (proc_cpu_seconds(replay.proc.pid), proc_cpu_seconds(broker_pid))
                await asyncio.sleep(1.0)  # alerts of the last events
                stop.set()
        await producer.stop()
        if own is not producer:
            await own.stop()
    finally:
        replay.stop()
    span = marks["end"] - marks["start"]
    return {"producer": producer, "span": span, "events": producer.market_acked, "lag_ms": sorted(lag_ms),
            "own_cpu": (own1 - own0) / span, "replay_cpu": (cpu1[0] - cpu0[0]) / span,
            "broker_cpu": (cpu1[1] - cpu0[1]) / span}


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__ or "")
    p.add_argument("--rate", type=int, help="offered frames (= events) per second (default 5,000; --quick 1,000)")
    p.add_argument("--duration", type=float, help="seconds of load (default 60; --quick 3)")
    p.add_argument("--liq-rate", type=int, help="liquidations per second within the load (default 100; --quick 50)")
    p.add_argument("--liq-spacing-ms", type=int,
                   help="time between the liquidations of one flush (default 1000; --quick 100)")
    p.add_argument("--configs", default=None,
                   help="comma-separated: default, separate, fetch<N>, linger<N>, partitions<N>, or several "
                        "of those joined with + (default: "
                        "default,fetch100,partitions6; --quick default)")
    args = p.parse_args(argv)
    rate = args.rate or (1_000 if args.quick else 5_000)
    duration = args.duration or (2.0 if args.quick else 60.0)
    spacing = args.liq_spacing_ms or (100 if args.quick else 1000)
    liq_rate = args.liq_rate or (50 if args.quick else 100)
    selected = [c.strip() for c in (args.configs or ("default" if args.quick else "default,fetch100,partitions6"))
                .split(",")]
    configs = {name: config_named(name) for name in selected}

    args.workdir.mkdir(parents=True, exist_ok=True)
    recording = args.workdir / f"cascade_minute_{rate}_{duration:g}_{liq_rate}_{spacing}.jsonl"
    if not recording.exists():
        write_recording(cascade_minute(rate, duration, liq_rate, spacing), recording)
    lines = load_lines(recording)
    expect = len(parse_events(lines))
    del lines
    settle_heap()

    defaults = bench_config(None, "")
    report = Report("latency (ingest → Kafka → processor → alerts)", command=command_line())
    report.config = {"offered load": f"{rate:,} events/s for {duration:g} s ({expect:,} events), "
                     f"{liq_rate} liquidations/s in flushes of {len(FLUSH)} spaced {spacing} ms",
                     "recording": str(recording),
                     "topology": "replay server | ingest + processor in one process (as `flushwatch run`) | broker",
                     "detectors": ", ".join(DETECTORS),
                     "configs": "; ".join(f"{c}: {configs[c] or 'product defaults'}" for c in selected),
                     "product defaults": (f"processor.fetch_max_wait_ms={defaults.processor.fetch_max_wait_ms}, "
                                          f"processor.commit_interval_s={defaults.processor.commit_interval_s:g}, "
                                          f"kafka.linger_ms={defaults.kafka.linger_ms}, "
                                          f"broker.partitions={defaults.broker.partitions}")}
    report.print_header()
    results = {}
    for name in selected:
        print(f"   running config {name!r}: {duration:g} s of load ...", flush=True)
        # topics as `flushwatch run` creates them on the embedded broker it starts: broker.partitions each
        kafka = {"partitions": defaults.broker.partitions,
                 **{k: v for k, v in configs[name].items() if not k.startswith("_")}}
        # a fresh broker per config: the embedded broker keeps every record in memory and its fetches slow
        # down as the topics grow, so a config run after another would start at a disadvantage
        with EmbeddedBroker() as broker:
            results[name] = asyncio.run(run_once(recording, broker.bootstrap, expect, kafka, broker.pid,
                                                 args.quick, bool(configs[name].get("_separate_producers")),
                                                 configs[name].get("_processor")))
    for name, res in results.items():
        prod: TimedProducer = res["producer"]
        ev = sorted(prod.event_latency_ms)
        al = sorted(prod.alert_latency_ms)
        achieved = res["events"] / res["span"]
        report.add(f"[{name}] events received and in Kafka", res["events"], "events",
                   note=f"{achieved:,.0f} events/s over {res['span']:.1f} s (offered {rate:,}/s); CPU: ingest + "
                   f"processor process {res['own_cpu'] * 100:.0f}%, replay server {res['replay_cpu'] * 100:.0f}%, "
                   f"broker {res['broker_cpu'] * 100:.0f}% of a core")
        lag = res["lag_ms"]
        report.add(f"[{name}] event-loop stall (5 ms timer lateness) p99 / max",
                   f"{percentile(lag, 99):.1f} / {lag[-1]:.1f}" if lag else "n/a", "ms",
                   note="the ingest + processor process's event loop: every latency above waits through these")
        for pct in (50, 99, 99.9):
            report.add(f"[{name}] receive → event in Kafka p{pct:g}", percentile(ev, pct), "ms")
        p99 = percentile(al, 99)
        for pct in (50, 99, 99.9):
            row = report.add(f"[{name}] receive → alert produced p{pct:g}", percentile(al, pct), "ms")
            if pct == 99:
                row.target, row.ok = f"< {TARGET_P99_MS:g} ms", (p99 < TARGET_P99_MS) if al else None
        report.add(f"[{name}] receive → alert produced max", al[-1] if al else float("nan"), "ms")
        report.add(f"[{name}] alert samples", len(al), "alerts",
                   note=f"by type {dict(sorted(prod.alerts_by_type.items()))}; {prod.unmatched_alerts} without a "
                   "triggering event (tick-driven) not counted")
        report.extra[name] = {"event_ms": {str(q): percentile(ev, q) for q in (50, 90, 99, 99.9, 100)},
                              "alert_ms": {str(q): percentile(al, q) for q in (50, 90, 99, 99.9, 100)},
                              "events": res["events"], "alerts": len(al), "span_s": res["span"]}
    if "default" in results and len(results) > 1:
        d = percentile(sorted(results["default"]["producer"].alert_latency_ms), 99)
        report.baseline("[default] receive → alert produced p99 (the reference)", d, "ms")
        for name in results:
            if name != "default":
                t = percentile(sorted(results[name]["producer"].alert_latency_ms), 99)
                report.add(f"{name} / default p99 alert latency", t / d if d else float("nan"), "x")
    else:
        only = next(iter(results.values()))["producer"]
        report.baseline("receive → event in Kafka p99 (the floor under alert latency)",
                        percentile(sorted(only.event_latency_ms), 99), "ms")
    report.finish(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
