"""The sink service: its own consumer group on ``fw.alerts``, so a slow destination never slows
detection. Alerts are consumed at least once and de-duplicated by ``alert_id`` before delivery; offsets
are committed only after every sink has taken the alerts before them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Sequence

from flushwatch.codec import decode_alert
from flushwatch.config import Config
from flushwatch.errors import CodecError
from flushwatch.kafka import DeadLetters, DrainGate, Producer, make_consumer
from flushwatch.logs import RateLimitedLog
from flushwatch.metrics import Metrics
from flushwatch.topics import Topics
from sinks.base import AlertSink

__all__ = ["SeenIds", "SinkService"]

log = logging.getLogger("flushwatch.sink")


class SeenIds:
    """Bounded memory of delivered alert ids (oldest forgotten first)."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._capacity = capacity

    def add(self, alert_id: str) -> bool:
        """Remember an id; False when it was already there."""
        if alert_id in self._ids:
            self._ids.move_to_end(alert_id)
            return False
        self._ids[alert_id] = None
        if len(self._ids) > self._capacity:
            self._ids.popitem(last=False)
        return True


class SinkService:
    """Delivers alerts from the alert topic to every configured sink."""

    def __init__(self, config: Config, metrics: Metrics, sinks: Sequence[AlertSink], producer: Producer,
                 bootstrap: str | None = None) -> None:
        self._config = config
        self._metrics = metrics
        self._sinks = list(sinks)
        self._bootstrap = bootstrap
        self._topics = Topics(config.kafka.topic_prefix)
        self._dlq = DeadLetters(producer, self._topics.dlq, metrics, "sink")
        self._producer = producer
        self._seen = SeenIds()
        self._problems = RateLimitedLog(log)
        self._drain = DrainGate("sink")
        self.records = 0
        self.ready = asyncio.Event()
        self.delivered = 0

    @property
    def produced(self) -> int:
        """Sinks produce nothing downstream."""
        return 0

    def request_drain(self, horizon_ms: int = 0, expect_records: int = 0) -> None:
        """Stop once at least ``expect_records`` alerts were consumed and the topic is consumed to its end."""
        self._drain.request(expect_records)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume and deliver until ``stop`` is set or a requested drain completes."""
        consumer = make_consumer(self._config.kafka, self._config.sink.group_id, self._bootstrap,
                                 client_suffix="sink")
        consumer.subscribe([self._topics.alerts])
        await consumer.start()
        log.info("sink joined group %s on %s; sinks: %s", self._config.sink.group_id, self._topics.alerts,
                 ", ".join(s.name for s in self._sinks) or "none")
        try:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=200, max_records=1000)
                if consumer.assignment():
                    self.ready.set()
                for tp, records in batch.items():
                    self._metrics.consumed.labels(tp.topic).inc(len(records))
                    for record in records:
                        await self._deliver(record.value, f"{tp.topic}@{record.offset}")
                    self.records += len(records)
                if batch:
                    await self._producer.flush()
                    await consumer.commit()
                if await self._drain.finished(consumer, self.records, bool(batch)):
                    return
        finally:
            for sink in self._sinks:
                with contextlib.suppress(Exception):
                    await sink.close()
            await consumer.stop()
            log.info("sink stopped after delivering %d alerts", self.delivered)

    async def _deliver(self, raw: bytes | None, origin: str) -> None:
        try:
            alert = decode_alert(raw or b"")
        except CodecError as exc:
            self._problems.warning(f"decode:{exc.kind}", "undecodable alert at %s: %s", origin, exc)
            await self._dlq.send(raw or b"", exc.kind, exc.detail, origin=origin)
            return
        if not self._seen.add(alert.alert_id):
            for sink in self._sinks:
                self._metrics.sink_duplicates.labels(sink.name).inc()
            return
        for sink in self._sinks:
            try:
                await sink.deliver(alert)
            except Exception as exc:  # noqa: BLE001 - a broken sink must not stop the others
                self._metrics.sink_failures.labels(sink.name).inc()
                self._problems.warning(f"sink:{sink.name}", "sink %s failed for alert %s: %s", sink.name,
                                       alert.alert_id, exc)
                await self._dlq.send(raw or b"", "sink_failed", f"{sink.name}: {exc}", origin=origin)
            else:
                self._metrics.sink_delivered.labels(sink.name).inc()
        self.delivered += 1
