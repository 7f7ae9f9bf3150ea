"""The sink service against the real embedded broker."""

from __future__ import annotations

import asyncio
import io

import orjson

from flushwatch.codec import encode_alert
from flushwatch.events import Alert
from flushwatch.kafka import Producer, create_topics
from flushwatch.metrics import Metrics
from flushwatch.topics import Topics
from sinks.base import AlertSink
from sinks.jsonl import JsonlSink
from sinks.service import SinkService
from sinks.stdout import StdoutSink

from .helpers import kafka_config, produce, read_all


class Broken(AlertSink):
    name = "broken"

    async def deliver(self, alert: Alert) -> None:
        raise ConnectionError("destination down")


def alert(i: int, base: str = "BTC") -> Alert:
    return Alert(alert_id=f"id-{i}", type="cascade_started", severity="warning", base=base,
                 venues=("binance",), ts=1_737_996_780_000 + i, emitted_ts=1_737_996_781_000 + i,
                 window_start=1_737_996_720_000, window_end=1_737_996_780_000 + i,
                 metrics={"notional_usd": 1000.5 + i}, message=f"alert {i}")


async def test_sink_delivers_each_alert_once_and_dead_letters_bad_input(broker, topic_prefix, tmp_path):
    config = kafka_config(broker.bootstrap, topic_prefix)
    topics = Topics(topic_prefix)
    await create_topics(config.kafka, topics.all)
    alerts = [alert(i) for i in range(5)]
    records = [(a.base.encode(), encode_alert(a)) for a in alerts]
    records += [records[1], records[3], (b"BTC", b'{"alert_id": 5}')]  # redelivered twice, one bad
    await produce(broker.bootstrap, topics.alerts, records)

    metrics = Metrics()
    producer = Producer(config.kafka, metrics)
    await producer.start()
    text = io.StringIO()
    sinks = [StdoutSink("text", text), JsonlSink(tmp_path / "alerts.jsonl"), Broken()]
    service = SinkService(config, metrics, sinks, producer)
    service.request_drain()
    try:
        async with asyncio.timeout(30):
            await service.run(asyncio.Event())
    finally:
        await producer.stop()

    lines = (tmp_path / "alerts.jsonl").read_bytes().splitlines()
    assert sorted(orjson.loads(line)["alert_id"] for line in lines) == [f"id-{i}" for i in range(5)]
    assert lines == [encode_alert(a) for a in alerts]  # one partition key: order kept
    printed = text.getvalue().splitlines()
    assert len(printed) == 5
    assert printed[0].startswith("2025-01-27 16:53:00Z  WARNING   cascade_started    BTC    alert 0")
    assert metrics.registry.get_sample_value("flushwatch_sink_duplicates_total", {"sink": "jsonl"}) == 2
    assert metrics.registry.get_sample_value("flushwatch_sink_failures_total", {"sink": "broken"}) == 5
    dead = await read_all(broker.bootstrap, topics.dlq, expect=6)
    kinds = sorted(dict(d.headers)["fw-kind"] for d in dead)
    assert kinds == [b"bad_field"] + [b"sink_failed"] * 5
