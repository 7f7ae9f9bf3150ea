"""The processing service: consume ``fw.md.*`` as a consumer group, run the detectors, produce alerts.

Commit order (enforced in :meth:`ProcessorService._checkpoint`, never reordered):

1. every alert triggered by the consumed records is handed to the producer (``send``);
2. the producer is flushed: each of those alerts is acknowledged by the broker;
3. only then are the consumed offsets committed.

A crash between 2 and 3 re-consumes some records after restart and may re-emit an alert; its
``alert_id`` is deterministic, so sinks de-duplicate it. A crash before 2 loses nothing, because the
offsets were not committed. (State snapshots to a changelog topic come with the stateful runtime.)

Detectors are pure; this module is the only place here that touches Kafka or reads the clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition

from flushwatch.codec import decode_event, encode_alert
from flushwatch.config import Config
from flushwatch.errors import CodecError
from flushwatch.events import Alert
from flushwatch.kafka import DeadLetters, DrainGate, Producer, make_consumer
from flushwatch.logs import RateLimitedLog
from flushwatch.metrics import Metrics
from flushwatch.topics import Topics
from processors.base import Detector
from processors.clock import EventClock

__all__ = ["ProcessorService"]

log = logging.getLogger("flushwatch.process")

#: an event this much older than the newest one of its partition is counted as late (still processed)
LATE_AFTER_MS = 60_000


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class ProcessorService:
    """Runs detectors over the market topics until ``stop`` is set (or a drain finishes)."""

    def __init__(self, config: Config, metrics: Metrics, detectors: Sequence[Detector], producer: Producer,
                 bootstrap: str | None = None, wall_ms: Callable[[], int] = _wall_ms) -> None:
        self._config = config
        self._metrics = metrics
        self._detectors = list(detectors)
        self._producer = producer
        self._bootstrap = bootstrap
        self._topics = Topics(config.kafka.topic_prefix)
        self._wall_ms = wall_ms
        self._clock = EventClock(wall_ms)
        self._dlq = DeadLetters(producer, self._topics.dlq, metrics, "process")
        self._problems = RateLimitedLog(log)
        self._drain = DrainGate("processor")
        self._drain_horizon_ms = 0
        self._partition_ts: dict[TopicPartition, int] = {}
        self._last_type = ""
        self.ready = asyncio.Event()
        self.alerts_emitted = 0
        self.records = 0

    @property
    def produced(self) -> int:
        """Alerts handed to Kafka so far."""
        return self.alerts_emitted

    def request_drain(self, horizon_ms: int = 0, expect_records: int = 0) -> None:
        """Finish once at least ``expect_records`` were consumed and every assigned partition is consumed
        to its end, then advance the detectors' time by ``horizon_ms`` (so episodes the input left open
        can end) and stop."""
        self._drain_horizon_ms = horizon_ms
        self._drain.request(expect_records)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume, detect, produce and commit until ``stop`` is set or a requested drain completes."""
        consumer = make_consumer(self._config.kafka, self._config.processor.group_id, self._bootstrap,
                                 client_suffix="processor")
        consumer.subscribe(self._topics.market_topics)
        await consumer.start()
        log.info("processor joined group %s on %s with detectors %s", self._config.processor.group_id,
                 ", ".join(self._topics.market_topics), ", ".join(d.name for d in self._detectors))
        tick_ms = int(self._config.processor.tick_interval_s * 1000)
        commit_s = self._config.processor.commit_interval_s
        last_commit = time.monotonic()
        last_tick_wall = 0
        try:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=min(tick_ms, 200), max_records=5000)
                if consumer.assignment():
                    self.ready.set()
                alerts: list[tuple[Alert, int | None]] = []
                for tp, records in batch.items():
                    self._metrics.consumed.labels(tp.topic).inc(len(records))
                    for record in records:
                        ts = await self._handle(record.value, tp.topic, record.offset, alerts)
                        if ts is not None:
                            self._advance_partition(tp, ts)
                    self.records += len(records)
                wall = self._wall_ms()
                if wall - last_tick_wall >= tick_ms:
                    last_tick_wall = wall
                    self._tick(alerts, await self._watermark(consumer))
                await self._emit(alerts)
                if batch and time.monotonic() - last_commit >= commit_s:
                    await self._checkpoint(consumer)
                    last_commit = time.monotonic()
                if await self._drain.finished(consumer, self.records, bool(batch)):
                    await self._finish(consumer)
                    return
            await self._checkpoint(consumer)
        finally:
            with contextlib.suppress(Exception):
                await self._checkpoint(consumer)
            await consumer.stop()
            log.info("processor stopped after %d records, %d alerts", self.records, self.alerts_emitted)

    async def _handle(self, raw: bytes | None, topic: str, offset: int,
                      alerts: list[tuple[Alert, int | None]]) -> int | None:
        try:
            event = decode_event(raw or b"")
        except CodecError as exc:
            self._metrics.parse_errors.labels("kafka", exc.kind).inc()
            self._problems.warning(f"decode:{exc.kind}", "undecodable record on %s at offset %d: %s",
                                   topic, offset, exc)
            await self._dlq.send(raw or b"", exc.kind, exc.detail, origin=f"{topic}@{offset}")
            return None
        self._clock.observe(event.ts)
        self._last_type = event.type
        for detector in self._detectors:
            for alert in detector.on_event(event):
                alerts.append((alert, event.recv_ts))
        return event.ts

    def _advance_partition(self, tp: TopicPartition, ts: int) -> None:
        last = self._partition_ts.get(tp)
        if last is None or ts > last:
            self._partition_ts[tp] = ts
        elif ts < last - LATE_AFTER_MS:
            # out of order within its own partition by more than the allowed lateness: still processed
            self._metrics.late_events.labels(self._last_type).inc()

    async def _watermark(self, consumer: AIOKafkaConsumer) -> int | None:
        """The time detectors may be ticked to without running ahead of unconsumed input.

        While a partition still has records to read (a backlog after a restart, or one partition
        delivered before another), time must not pass its last consumed event, or the episodes of the
        assets in it would end early and their remaining events would look late. Once every partition
        is consumed to its end, time follows the hybrid event clock, so a quiet market still ends
        episodes. A lagging partition with nothing consumed yet holds time back entirely.
        """
        lagging: list[int] = []
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None or await consumer.position(tp) < highwater:
                last = self._partition_ts.get(tp)
                if last is None:
                    return None
                lagging.append(last)
        if lagging:
            return min(lagging)
        return self._clock.now()

    def _tick(self, alerts: list[tuple[Alert, int | None]], now: int | None) -> None:
        if now is None:
            return
        for detector in self._detectors:
            alerts.extend((alert, None) for alert in detector.on_tick(now))

    async def _emit(self, alerts: list[tuple[Alert, int | None]]) -> None:
        for alert, recv_ts in alerts:
            wall = self._wall_ms()
            stamped = dataclasses.replace(alert, emitted_ts=wall)
            await self._producer.send(self._topics.alerts, encode_alert(stamped), key=alert.base.encode(),
                                      headers=[("type", alert.type.encode())])
            self._metrics.alerts.labels(alert.type, alert.severity).inc()
            if recv_ts is not None:
                self._metrics.processing_latency.observe(max(0.0, (wall - recv_ts) / 1000))
            self.alerts_emitted += 1
            log.info("alert %s %s %s: %s", alert.type, alert.severity, alert.base, alert.message)

    async def _checkpoint(self, consumer: AIOKafkaConsumer) -> None:
        """Steps 2 and 3 of the commit order: flush the producer, then commit the consumed offsets."""
        await self._producer.flush()
        if consumer.assignment():
            await consumer.commit()

    async def _finish(self, consumer: AIOKafkaConsumer) -> None:
        now = self._clock.now()
        alerts: list[tuple[Alert, int | None]] = []
        if now is not None:
            final = now + self._drain_horizon_ms
            for detector in self._detectors:
                alerts.extend((alert, None) for alert in detector.on_tick(final))
        await self._emit(alerts)
        await self._checkpoint(consumer)
        log.info("processor drained: input consumed to the end")
