"""The processing service: consume ``fw.md.*`` as a consumer group, run the detectors, produce alerts.

Partitions, not processes, own state. The market topics are co-partitioned (same partition count, key =
base asset), and the group uses the range assignor, so partition *p* of every market topic goes to the
same member: one :class:`_Unit` per partition index, with its own detectors. On assignment a unit is
restored from the changelog (``fw.processor_state``) and the consumer seeks to the offsets stored with
it; on revocation the unit is checkpointed first, so the next owner continues exactly there.

Commit order (enforced in :meth:`ProcessorService._checkpoint`, never reordered):

1. the alerts triggered by the records consumed so far are handed to the producer;
2. the producer is flushed: every one of them is acknowledged on ``fw.alerts``;
3. each unit's state (detector snapshots, next offsets, the ``fw.alerts`` offset after its last alert)
   is written to the changelog, and the producer flushed again;
4. only then are the consumed offsets committed to the group.

Duplicate-free by construction, without transactions (the embedded broker cannot do them with aiokafka):
a crash after 2 but before 3 makes the next owner re-process records whose alerts are already on
``fw.alerts``; it reads ``fw.alerts`` of the partition from the offset in the restored state and
suppresses those ``alert_id``\\ s (deterministic per episode and stage). A crash before 2 loses nothing:
neither state nor offsets moved. Alerts go to ``fw.alerts`` partition *p* (the partition their key hashes
to, since the topics have the same partition count), which is what makes the read-back exact.

Time: each unit is ticked with its own watermark, the oldest last-event time among its market partitions
that still have records to read, or the hybrid event clock once all are consumed to their end.

Detectors are pure; this module is the only place here that touches Kafka or reads the clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaError

from flushwatch.codec import decode_event, encode_alert
from flushwatch.config import Config
from flushwatch.errors import CodecError, ConfigError
from flushwatch.events import Alert
from flushwatch.kafka import DeadLetters, DrainGate, Producer, client_kwargs, make_consumer
from flushwatch.logs import RateLimitedLog
from flushwatch.metrics import Metrics
from flushwatch.topics import Topics
from processors.base import Detector
from processors.clock import EventClock
from processors.state import PartitionState, StateReader, state_key

__all__ = ["DetectorFactory", "FaultHook", "ProcessorService"]

log = logging.getLogger("flushwatch.process")

#: an event this much older than the newest one of its partition is counted as late (still processed)
LATE_AFTER_MS = 60_000

DetectorFactory = Callable[[], Sequence[Detector]]
#: called at named points of the commit protocol; tests use it to kill the process at the worst moment
FaultHook = Callable[[str], None]


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class _Unit:
    """The detectors and progress of one partition index."""

    partition: int
    detectors: list[Detector]
    offsets: dict[str, int] = field(default_factory=dict)
    alerts_next: int = 0
    suppress: set[str] = field(default_factory=set)
    last_ts: dict[str, int] = field(default_factory=dict)
    pending: list[tuple[Alert, int | None]] = field(default_factory=list)
    dirty: bool = True
    late_seen: dict[str, int] = field(default_factory=dict)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, service: ProcessorService) -> None:
        self._service = service

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._service.release({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        try:
            await self._service.acquire({tp.partition for tp in assigned})
        except Exception as exc:
            # aiokafka would only log a listener error and go on without the units; records of those
            # partitions would then be skipped. Stop the service loudly instead.
            self._service.fail(exc)
            raise


class ProcessorService:
    """Runs detectors over the market topics until ``stop`` is set (or a drain finishes)."""

    def __init__(self, config: Config, metrics: Metrics, detectors: DetectorFactory, producer: Producer,
                 bootstrap: str | None = None, wall_ms: Callable[[], int] = _wall_ms,
                 max_batch: int = 5000, fault_hook: FaultHook | None = None) -> None:
        self._config = config
        self._metrics = metrics
        self._factory = detectors
        self._producer = producer
        self._bootstrap = bootstrap
        self._group = config.processor.group_id
        self._topics = Topics(config.kafka.topic_prefix)
        self._wall_ms = wall_ms
        self._clock = EventClock(wall_ms)
        self._dlq = DeadLetters(producer, self._topics.dlq, metrics, "process")
        self._problems = RateLimitedLog(log)
        self._drain = DrainGate("processor")
        self._drain_horizon_ms = 0
        self._max_batch = max_batch
        self._fault = fault_hook or (lambda _point: None)
        self._units: dict[int, _Unit] = {}
        self._fatal: BaseException | None = None
        self._lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._reader: StateReader | None = None
        self.ready = asyncio.Event()
        self.alerts_emitted = 0
        self.alerts_suppressed = 0
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

    # ------------------------------------------------------------------ lifecycle

    async def run(self, stop: asyncio.Event) -> None:
        """Consume, detect, produce and commit until ``stop`` is set or a requested drain completes."""
        consumer = make_consumer(self._config.kafka, self._group, self._bootstrap, client_suffix="processor",
                                 partition_assignment_strategy=(RangePartitionAssignor,))
        reader_consumer = AIOKafkaConsumer(**client_kwargs(self._config.kafka, self._bootstrap),
                                           client_id=f"{self._config.kafka.client_id}-state", group_id=None,
                                           enable_auto_commit=False, fetch_max_wait_ms=50)
        self._consumer = consumer
        self._reader = StateReader(reader_consumer)
        await reader_consumer.start()
        try:
            await self._check_partitions(reader_consumer)
            consumer.subscribe(self._topics.market_topics, listener=_Rebalance(self))
            await consumer.start()
            log.info("processor joined group %s on %s", self._group, ", ".join(self._topics.market_topics))
            await self._loop(consumer, stop)
        finally:
            with contextlib.suppress(Exception):
                async with self._lock:
                    await self._checkpoint(list(self._units.values()))
            await consumer.stop()
            await reader_consumer.stop()
            log.info("processor stopped after %d records, %d alerts (%d suppressed as already produced)",
                     self.records, self.alerts_emitted, self.alerts_suppressed)

    async def _check_partitions(self, reader: AIOKafkaConsumer) -> None:
        """Co-partitioning is what keeps one asset's events and alerts in one unit: verify it."""
        await reader.topics()  # refreshes metadata for every topic
        counts = {}
        for topic in [*self._topics.market_topics, self._topics.alerts, self._topics.processor_state]:
            found = reader.partitions_for_topic(topic)
            counts[topic] = len(found) if found else 0
        if len(set(counts.values())) != 1 or 0 in counts.values():
            raise ConfigError("the market, alert and state topics must exist with the same partition count "
                              f"(co-partitioned by base asset); found {counts}")

    async def _loop(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
        tick_ms = int(self._config.processor.tick_interval_s * 1000)
        commit_s = self._config.processor.commit_interval_s
        last_commit = time.monotonic()
        last_tick_wall = 0
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=min(tick_ms, 200), max_records=self._max_batch)
            if self._fatal is not None:
                raise RuntimeError(f"restoring assigned partitions failed: {self._fatal}") from self._fatal
            async with self._lock:
                if consumer.assignment():
                    self.ready.set()
                for tp, records in batch.items():
                    unit = self._units.get(tp.partition)
                    if unit is None:  # revoked while the fetch was in flight: the next owner reads it
                        log.info("skipping %d records of %s fetched before it was revoked", len(records), tp)
                        continue
                    self._metrics.consumed.labels(tp.topic).inc(len(records))
                    for record in records:
                        await self._handle(unit, record.value, tp.topic, record.offset)
                        unit.offsets[tp.topic] = record.offset + 1
                    unit.dirty = True
                    self.records += len(records)
                wall = self._wall_ms()
                if wall - last_tick_wall >= tick_ms:
                    last_tick_wall = wall
                    for unit in self._units.values():
                        now = await self._watermark(consumer, unit)
                        self._tick(unit, now)
                        await self._publish(unit, now)
                await self._emit_pending(self._units.values())
                self._count_late()
                if batch and time.monotonic() - last_commit >= commit_s:
                    await self._checkpoint([u for u in self._units.values() if u.dirty])
                    last_commit = time.monotonic()
            if await self._drain.finished(consumer, self.records, bool(batch)):
                async with self._lock:
                    await self._finish()
                return

    def fail(self, exc: BaseException) -> None:
        """Remember a fatal error raised outside the main loop (in a rebalance callback)."""
        self._fatal = exc

    # ------------------------------------------------------------------ partitions come and go

    async def acquire(self, partitions: set[int]) -> None:
        """Restore the units of newly assigned partitions and seek to where their state left off."""
        consumer, reader = self._consumer, self._reader
        assert consumer is not None and reader is not None
        async with self._lock:
            for partition in sorted(partitions - set(self._units)):
                state = await reader.load_state(self._topics.processor_state, self._group, partition)
                detectors = list(self._factory())
                unit = _Unit(partition, detectors)
                if state is not None:
                    for detector in detectors:
                        snap = state.detectors.get(detector.name)
                        if snap is not None:
                            detector.restore(snap)
                            unit.late_seen[detector.name] = detector.late_events  # counted before
                    unit.offsets = dict(state.offsets)
                    unit.alerts_next = state.alerts_next
                    for topic, offset in state.offsets.items():
                        consumer.seek(TopicPartition(topic, partition), offset)
                unit.suppress = await reader.alert_ids_since(self._topics.alerts, partition, unit.alerts_next)
                self._units[partition] = unit
                log.info("partition %d: %s, %d alert(s) already produced since it", partition,
                         "restored state at offsets " + str(state.offsets) if state else "no saved state",
                         len(unit.suppress))

    async def release(self, partitions: set[int]) -> None:
        """Checkpoint the units of revoked partitions (commit order above) and forget them."""
        async with self._lock:
            leaving = [self._units[p] for p in sorted(partitions) if p in self._units]
            if not leaving:
                return
            with contextlib.suppress(Exception):
                await self._checkpoint(leaving, commit=True)
            for unit in leaving:
                del self._units[unit.partition]
            log.info("partitions %s handed over with their state", [u.partition for u in leaving])

    # ------------------------------------------------------------------ the work

    async def _handle(self, unit: _Unit, raw: bytes | None, topic: str, offset: int) -> None:
        try:
            event = decode_event(raw or b"")
        except CodecError as exc:
            self._metrics.parse_errors.labels("kafka", exc.kind).inc()
            self._problems.warning(f"decode:{exc.kind}", "undecodable record on %s at offset %d: %s",
                                   topic, offset, exc)
            await self._dlq.send(raw or b"", exc.kind, exc.detail, origin=f"{topic}@{offset}")
            return
        self._clock.observe(event.ts)
        last = unit.last_ts.get(topic)
        if last is None or event.ts > last:
            unit.last_ts[topic] = event.ts
        elif event.ts < last - LATE_AFTER_MS:
            # out of order within its own partition by more than the allowed lateness: still processed
            self._metrics.late_events.labels(event.type).inc()
        for detector in unit.detectors:
            for alert in detector.on_event(event):
                unit.pending.append((alert, event.recv_ts))

    async def _watermark(self, consumer: AIOKafkaConsumer, unit: _Unit) -> int | None:
        """How far ``unit`` may be ticked without running ahead of its own unconsumed input.

        While one of its market partitions still has records to read (a backlog after a restart, or one
        topic delivered before another), time must not pass that partition's last consumed event, or
        episodes would end early and the remaining events would look late. Once all are consumed to
        their end, time follows the hybrid event clock, so a quiet market still ends episodes. A lagging
        partition with nothing consumed yet holds time back entirely.
        """
        lagging: list[int] = []
        assignment = consumer.assignment()
        for topic in self._topics.market_topics:
            tp = TopicPartition(topic, unit.partition)
            if tp not in assignment:  # being revoked right now
                return None
            highwater = consumer.highwater(tp)
            if highwater is None or await consumer.position(tp) < highwater:
                last = unit.last_ts.get(topic)
                if last is None:
                    return None
                lagging.append(last)
        return min(lagging) if lagging else self._clock.now()

    def _count_late(self) -> None:
        """Export what detectors counted as too late to use (their own counters live in their state)."""
        for unit in self._units.values():
            for detector in unit.detectors:
                seen = unit.late_seen.get(detector.name, 0)
                if detector.late_events > seen:
                    self._metrics.detector_late_events.labels(detector.name).inc(detector.late_events - seen)
                    unit.late_seen[detector.name] = detector.late_events

    def _tick(self, unit: _Unit, now: int | None) -> None:
        if now is None:
            return
        for detector in unit.detectors:
            unit.pending.extend((alert, None) for alert in detector.on_tick(now))

    async def _emit_pending(self, units: Iterable[_Unit]) -> None:
        for unit in units:
            pending, unit.pending = unit.pending, []
            for alert, recv_ts in pending:
                await self._emit(unit, alert, recv_ts)

    async def _emit(self, unit: _Unit, alert: Alert, recv_ts: int | None) -> None:
        unit.dirty = True
        if alert.alert_id in unit.suppress:
            self.alerts_suppressed += 1
            log.info("alert %s %s %s was already produced before a restart; not produced again",
                     alert.type, alert.base, alert.alert_id)
            return
        wall = self._wall_ms()
        stamped = dataclasses.replace(alert, emitted_ts=wall)
        future = await self._producer.send(self._topics.alerts, encode_alert(stamped), key=alert.base.encode(),
                                           headers=[("type", alert.type.encode())], partition=unit.partition)
        future.add_done_callback(lambda f: self._delivered(unit, f))
        self._metrics.alerts.labels(alert.type, alert.severity).inc()
        if recv_ts is not None:
            self._metrics.processing_latency.observe(max(0.0, (wall - recv_ts) / 1000))
        self.alerts_emitted += 1
        log.info("alert %s %s %s: %s", alert.type, alert.severity, alert.base, alert.message)

    @staticmethod
    def _delivered(unit: _Unit, future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is None:
            unit.alerts_next = max(unit.alerts_next, int(future.result().offset) + 1)

    async def _publish(self, unit: _Unit, now: int | None) -> None:
        """Detector snapshots for dashboards (liquidation clusters) to their compacted topic."""
        if now is None:
            return
        for detector in unit.detectors:
            for key, document in detector.publish(now):
                await self._producer.send(self._topics.liquidation_clusters, orjson.dumps(document),
                                          key=key.encode(), partition=unit.partition)

    async def _checkpoint(self, units: Sequence[_Unit], *, commit: bool = True) -> None:
        """Steps 1 to 4 of the commit order, for ``units``."""
        await self._emit_pending(units)                                   # 1
        await self._producer.flush()                                      # 2
        self._fault("alerts_flushed")
        for unit in units:                                                # 3
            state = PartitionState(unit.partition, dict(unit.offsets), unit.alerts_next,
                                   {d.name: d.snapshot() for d in unit.detectors})
            await self._producer.send(self._topics.processor_state, state.encode(),
                                      key=state_key(self._group, unit.partition), partition=unit.partition)
        await self._producer.flush()
        self._fault("state_written")
        consumer = self._consumer
        if commit and consumer is not None and units:                     # 4
            offsets = {TopicPartition(topic, unit.partition): offset
                       for unit in units for topic, offset in unit.offsets.items()}
            if offsets:
                try:
                    async with asyncio.timeout(10):
                        await consumer.commit(offsets)
                except (KafkaError, TimeoutError) as exc:
                    # the state in the changelog already holds these offsets; the group's committed
                    # offsets catch up at the next checkpoint (they only serve lag monitoring and a
                    # restart without state)
                    self._problems.warning("commit", "offset commit failed (%s); state is saved", exc)
        for unit in units:
            unit.dirty = False
        self._fault("committed")

    async def _finish(self) -> None:
        now = self._clock.now()
        if now is not None:
            final = now + self._drain_horizon_ms
            for unit in self._units.values():
                self._tick(unit, final)
        await self._checkpoint(list(self._units.values()))
        log.info("processor drained: input consumed to the end")
