"""The processing service against the real embedded broker."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import orjson

from flushwatch.codec import decode_alert, encode_event
from flushwatch.events import Alert, Liquidation, MarketEvent
from flushwatch.kafka import Producer, create_topics
from flushwatch.metrics import Metrics
from flushwatch.topics import Topics
from processors.base import Detector
from processors.runtime import ProcessorService

from .helpers import committed_total, kafka_config, produce, read_all


class EveryThird(Detector):
    """Emits one alert for every third liquidation of a base; deterministic ids."""

    name = "every_third"

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.ticks = 0

    def on_event(self, event: MarketEvent) -> list[Alert]:
        if not isinstance(event, Liquidation):
            return []
        if event.ts < 1_000_000_000_000:  # the test's stale straggler: too old to use
            self.late_events += 1
            return []
        n = self.counts[event.base] = self.counts.get(event.base, 0) + 1
        if n % 3:
            return []
        return [Alert(alert_id=f"{event.base}-{n}", type="test_alert", severity="info", base=event.base,
                      venues=(event.venue,), ts=event.ts, emitted_ts=event.ts, window_start=event.ts,
                      window_end=event.ts, metrics={"n": n}, message=f"{event.base} #{n}")]

    def on_tick(self, now_ms: int) -> list[Alert]:
        self.ticks += 1
        return []

    def snapshot(self) -> dict[str, Any]:
        return {"counts": dict(self.counts)}

    def restore(self, snapshot: dict[str, Any]) -> None:
        self.counts = dict(snapshot["counts"])


def liquidation(base: str, i: int) -> Liquidation:
    return Liquidation(venue="binance", symbol=f"{base}USDT", instrument=f"{base}-USDT-PERP", base=base,
                       ts=1_700_000_000_000 + i, recv_ts=1_700_000_000_000 + i, side="long",
                       price=Decimal("100"), qty=Decimal("1"), notional_usd=Decimal("100"))


async def test_processor_consumes_detects_produces_and_commits(broker, topic_prefix):
    config = kafka_config(broker.bootstrap, topic_prefix)
    topics = Topics(topic_prefix)
    await create_topics(config.kafka, topics.all, compacted=topics.compacted)
    events = [liquidation(base, i) for i in range(9) for base in ("BTC", "ETH")]
    straggler = Liquidation(venue="binance", symbol="BTCUSDT", instrument="BTC-USDT-PERP", base="BTC", ts=5,
                            recv_ts=5, side="long", price=Decimal("1"), qty=Decimal("1"), notional_usd=Decimal("1"))
    await produce(broker.bootstrap, topics.market("liquidation"),
                  [(e.base.encode(), encode_event(e)) for e in events]
                  + [(b"BTC", b"{not json"), (b"BTC", encode_event(straggler))])

    metrics = Metrics()
    producer = Producer(config.kafka, metrics)
    await producer.start()
    service = ProcessorService(config, metrics, lambda: [EveryThird()], producer)
    service.request_drain()
    try:
        async with asyncio.timeout(30):
            await service.run(asyncio.Event())
    finally:
        await producer.stop()

    alerts = await read_all(broker.bootstrap, topics.alerts, expect=6)
    decoded = sorted((r.key, decode_alert(r.value).alert_id) for r in alerts)
    assert decoded == sorted((b, f"{b.decode()}-{n}") for b in (b"BTC", b"ETH") for n in (3, 6, 9))
    dead = await read_all(broker.bootstrap, topics.dlq, expect=1)
    assert [d.value for d in dead] == [b"{not json"]
    headers = dict(dead[0].headers)
    assert headers["fw-kind"] == b"malformed_json"
    assert headers["fw-source"] == b"process"
    assert metrics.registry.get_sample_value("flushwatch_alerts_total",
                                             {"type": "test_alert", "severity": "info"}) == 6
    assert metrics.registry.get_sample_value("flushwatch_dead_letters_total",
                                             {"source": "process", "kind": "malformed_json"}) == 1
    assert metrics.registry.get_sample_value("flushwatch_detector_late_events_total",
                                             {"detector": "every_third"}) == 1
    assert metrics.registry.get_sample_value("flushwatch_late_events_total", {"type": "liquidation"}) == 1
    lag = metrics.registry.get_sample_value("flushwatch_consumer_lag", {"group": config.processor.group_id})
    assert lag is not None and 0 <= lag <= len(events) + 2  # set at the first tick, before or while consuming

    # offsets were committed: the group resumes after everything it processed
    assert await committed_total(broker.bootstrap, config, topics.market("liquidation")) == len(events) + 2
    alert = orjson.loads(alerts[0].value)
    assert set(alert) == {"alert_id", "type", "severity", "base", "venues", "ts", "emitted_ts", "window",
                          "metrics", "message", "schema_version"}
