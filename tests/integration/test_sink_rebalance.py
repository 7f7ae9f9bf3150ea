"""A second sink instance joins the group while the first has undelivered alerts queued: the first finishes
and commits them before it lets the partitions go, so across both instances every alert reaches the
destination exactly once, although the two instances share no delivered-id store."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from flushwatch.codec import encode_alert
from flushwatch.events import Alert
from flushwatch.kafka import Producer, create_topics
from flushwatch.metrics import Metrics
from flushwatch.topics import Topics
from sinks.base import AlertSink
from sinks.service import SinkService, SinkTarget

from .helpers import kafka_config, produce
from .test_sink_support import FakeClock, fast_groups, make_alert


class Destination:
    """What both instances deliver to."""

    def __init__(self) -> None:
        self.got: list[str] = []


class GatedSink(AlertSink):
    def __init__(self, destination: Destination, gate: asyncio.Event) -> None:
        self.name = "chat"
        self._destination = destination
        self._gate = gate

    async def deliver(self, alert: Alert) -> None:
        await self._gate.wait()
        self._destination.got.append(alert.alert_id)


class WatchedService(SinkService):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.revoking = asyncio.Event()

    async def on_revoked(self, consumer: Any, revoked: set[Any]) -> None:
        if revoked:
            self.revoking.set()
        await super().on_revoked(consumer, revoked)


async def test_rebalance_hands_over_without_duplicates(broker, topic_prefix):
    config = fast_groups(kafka_config(broker.bootstrap, topic_prefix, sink={
        "revoke_drain_s": 20.0, "commit_interval_s": 3600.0, "group_id": topic_prefix + "sink"}))
    topics = Topics(topic_prefix)
    await create_topics(config.kafka, topics.all)
    bases = ["BTC", "ETH", "SOL", "DOGE", "XRP", "ADA"]
    first = [make_alert(i, base=bases[i % 6]) for i in range(24)]
    await produce(broker.bootstrap, topics.alerts, [(a.base.encode(), encode_alert(a)) for a in first])
    destination = Destination()
    gate_a, gate_b = asyncio.Event(), asyncio.Event()
    gate_b.set()
    metrics = Metrics()
    producer = Producer(config.kafka, metrics)
    await producer.start()
    stop = asyncio.Event()
    a = WatchedService(config, metrics, [SinkTarget(GatedSink(destination, gate_a))], producer, clock=FakeClock())
    b = SinkService(config, Metrics(), [SinkTarget(GatedSink(destination, gate_b))], producer, clock=FakeClock())
    task_a = asyncio.create_task(a.run(stop))
    task_b: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(40):
            while a.records < len(first):  # A holds every alert, none delivered yet
                await asyncio.sleep(0.05)
            assert destination.got == []
            task_b = asyncio.create_task(b.run(stop))
            await a.revoking.wait()  # the rebalance started: A must finish before it lets go
            gate_a.set()
            while not (a.ready.is_set() and b.ready.is_set() and len(destination.got) >= len(first)):
                await asyncio.sleep(0.05)
            second = [make_alert(100 + i, base=bases[i % 6]) for i in range(12)]
            await produce(broker.bootstrap, topics.alerts, [(x.base.encode(), encode_alert(x)) for x in second])
            while len(destination.got) < len(first) + len(second):
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # anything duplicated would arrive now
    finally:
        stop.set()
        await asyncio.gather(task_a, *([task_b] if task_b else []), return_exceptions=True)
        await producer.stop()
    counts = Counter(destination.got)
    assert counts == Counter(x.alert_id for x in [*first, *second]), [k for k, v in counts.items() if v > 1]
    assert b.records >= 1  # the second instance really took part
