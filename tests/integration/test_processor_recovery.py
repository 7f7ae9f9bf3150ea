"""State that survives crashes and rebalances: the alert stream stays exactly as in an uninterrupted run.

Input: the real 2025-01-27 Binance liquidations of the bundled recording (five cascades), produced to the
market topics of a test prefix. Reference: one processor that is never interrupted.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson

from flushwatch.app import demo_recording_path
from flushwatch.codec import encode_event
from flushwatch.events import MarketEvent
from flushwatch.kafka import Producer, create_topics
from flushwatch.metrics import Metrics
from flushwatch.recording import RecordLine, read_recording
from flushwatch.topics import Topics
from ingest.binance import BinanceUsdmAdapter
from processors.registry import build_detectors
from processors.runtime import ProcessorService

from .helpers import kafka_config, produce, read_all

REPO = Path(__file__).resolve().parents[2]


def demo_events() -> list[MarketEvent]:
    adapter = BinanceUsdmAdapter([])
    events: list[MarketEvent] = []
    for line in read_recording(demo_recording_path()):
        if isinstance(line, RecordLine):
            events.extend(adapter.parse(line.data, line.recv_ts).events)
    return events


async def publish(bootstrap: str, prefix: str, events: list[MarketEvent]) -> None:
    topics = Topics(prefix)
    by_topic: dict[str, list[tuple[bytes | None, bytes]]] = {}
    for event in events:
        by_topic.setdefault(topics.for_event(event), []).append((event.base.encode(), encode_event(event)))
    for topic, records in by_topic.items():
        await produce(bootstrap, topic, records)


async def setup(bootstrap: str, prefix: str) -> None:
    config = kafka_config(bootstrap, prefix)
    topics = Topics(prefix)
    await create_topics(config.kafka, topics.all, compacted=topics.compacted)


async def process_to_end(bootstrap: str, prefix: str, expect: int, **overrides) -> ProcessorService:
    config = kafka_config(bootstrap, prefix, **overrides)
    metrics = Metrics()
    producer = Producer(config.kafka, metrics)
    await producer.start()
    service = ProcessorService(config, metrics, lambda: build_detectors(config), producer)
    service.request_drain(horizon_ms=121_000, expect_records=expect)
    try:
        async with asyncio.timeout(60):
            await service.run(asyncio.Event())
    finally:
        await producer.stop()
    return service


async def alert_ids(bootstrap: str, prefix: str, expect: int) -> Counter[str]:
    records = await read_all(bootstrap, Topics(prefix).alerts, expect=expect)
    return Counter(orjson.loads(r.value)["alert_id"] for r in records)


_REFERENCE: dict[str, Counter[str]] = {}


async def reference(bootstrap: str, prefix: str, events: list[MarketEvent]) -> Counter[str]:
    """The alerts of an uninterrupted run (computed once per broker session)."""
    if bootstrap in _REFERENCE:
        return _REFERENCE[bootstrap]
    await setup(bootstrap, prefix)
    await publish(bootstrap, prefix, events)
    service = await process_to_end(bootstrap, prefix, expect=len(events))
    ids = await alert_ids(bootstrap, prefix, service.alerts_emitted)
    assert len(ids) == 10 and set(ids.values()) == {1}
    _REFERENCE[bootstrap] = ids
    return ids


async def test_kill_9_mid_cascade_then_restart_gives_the_same_alerts(broker, tmp_path):
    events = demo_events()
    expected = await reference(broker.bootstrap, "ref-crash.", events)

    prefix = "crash."
    await setup(broker.bootstrap, prefix)
    await publish(broker.bootstrap, prefix, events)
    crashed = subprocess.run(
        [sys.executable, str(REPO / "tests" / "integration" / "crash_processor.py"), broker.bootstrap, prefix,
         "alerts_flushed"],
        capture_output=True, text=True, timeout=90, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False)
    assert crashed.returncode == -9, crashed.stderr[-3000:]
    assert "killing at alerts_flushed" in crashed.stdout
    # the crash left alerts on the topic that no saved state accounts for
    before = await alert_ids(broker.bootstrap, prefix, expect=1)
    assert 0 < sum(before.values()) < 10

    service = await process_to_end(broker.bootstrap, prefix, expect=0)
    assert service.alerts_suppressed >= 1  # the read-back kept it from producing those again
    got = await alert_ids(broker.bootstrap, prefix, expect=10)
    assert got == expected  # identical ids, none missing, none doubled


async def test_rebalance_when_a_second_instance_joins_and_leaves(broker):
    events = demo_events()
    expected = await reference(broker.bootstrap, "ref-rebalance.", events)
    prefix = "rebalance."
    await setup(broker.bootstrap, prefix)
    config = kafka_config(broker.bootstrap, prefix)
    thirds = [events[: len(events) // 3], events[len(events) // 3: 2 * len(events) // 3],
              events[2 * len(events) // 3:]]

    metrics = Metrics()
    producer = Producer(config.kafka, metrics)
    await producer.start()
    first = ProcessorService(config, metrics, lambda: build_detectors(config), producer)
    second = ProcessorService(config, Metrics(), lambda: build_detectors(config), producer)
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(first.run(stop_first))
            await publish(broker.bootstrap, prefix, thirds[0])
            await wait_for(lambda: first.records >= len(thirds[0]))

            group.create_task(second.run(stop_second))  # joins: partitions move, with their state
            await wait_for(lambda: second.ready.is_set() and second.records + first.records > 0)
            await publish(broker.bootstrap, prefix, thirds[1])
            await wait_for(lambda: first.records + second.records >= len(thirds[0]) + len(thirds[1]))
            assert second.records > 0, "the second instance never got partitions"
            stop_second.set()  # leaves: its partitions come back to the first, with their state

            await publish(broker.bootstrap, prefix, thirds[2])
            first.request_drain(horizon_ms=121_000, expect_records=len(events) - second.records)
    finally:
        await producer.stop()
    got = await alert_ids(broker.bootstrap, prefix, expect=10)
    assert got == expected


async def wait_for(predicate, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)
