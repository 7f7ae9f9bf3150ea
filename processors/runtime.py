"""The processing service: consume ``fw.md.*`` as a consumer group, run the detectors, produce alerts.

Partitions, not processes, own state. The market topics are co-partitioned (same partition count, key =
base asset), and the group uses the range assignor, so partition *p* of every market topic goes to the
same member: one :class:`_Unit` per partition index, with its own detectors. On assignment a unit is
restored from the changelog (``fw.processor_state``) and the consumer seeks to the offsets stored with
it; on revocation the unit is checkpointed first, so the next owner continues exactly there.

Commit order (enforced by :meth:`ProcessorService._snapshot_unit` and :meth:`ProcessorService._complete`,
never reordered), per unit:

1. the alerts triggered by the records the unit consumed so far are handed to the producer, and its
   *snapshot* is taken at that point, with no await in between: its detector state (serialized), its
   consumed offsets, and the producer futures of every alert (and cluster document) it produced since
   its last snapshot;
2. exactly those futures are awaited: every alert the snapshot's records triggered is acknowledged on
   ``fw.alerts`` (records whose futures the runtime does not hold, dead letters, are covered by flushing
   the producer when the unit sent any);
3. the unit's state (the snapshot, its offsets, and ``alerts_next``: the ``fw.alerts`` offset after the
   last alert acknowledged *before* the snapshot) is written to the changelog and its acknowledgement
   awaited;
4. only then are the snapshot's offsets committed to the group.

Steps 2 to 4 take tens of milliseconds (acknowledgements from a loaded broker), and the snapshots of a
large state take milliseconds per unit. So while the processor is caught up, a checkpoint does not stop
consumption: the main loop takes the units' snapshots a few at a time between batches, then runs steps 2
to 4 in a background task it owns and keeps consuming; records processed meanwhile belong to the next
checkpoint. When it is behind (a full batch), records are waiting anyway and the checkpoint runs inline,
so the saved state stays within a batch of the live one. At most one checkpoint is assembled or in
flight at a time, so changelog records and commits stay in order. A revocation, a drain and a shutdown
finish the one in flight and then checkpoint inline. A checkpoint that fails (an alert or state record
not acknowledged) makes the service fail, and no later checkpoint is written: one written after it could
claim records whose alerts were lost.

Duplicate-free by construction, without transactions (the embedded broker cannot do them with aiokafka):
a crash after 2 but before 3 makes the next owner re-process records whose alerts are already on
``fw.alerts``; it reads ``fw.alerts`` of the partition from the offset in the restored state and
suppresses those ``alert_id``\\ s (deterministic per episode and stage). ``alerts_next`` is taken at the
snapshot, not after step 2, because the loop goes on producing alerts of later records (and ticks) while
the checkpoint is in flight. Every alert the restored state can produce again was sent after the
snapshot, so it was written after every alert acknowledged before the snapshot: at or after
``alerts_next``, whatever order the producer delivers in. The read-back finds all of them (and perhaps a
few the restored state will not produce again, which costs nothing). A crash before 2 loses nothing:
neither state nor offsets moved. Alerts go to ``fw.alerts`` partition *p* (the partition their key hashes
to, since the topics have the same partition count), which is what makes the read-back exact.

Time: each unit is ticked with its own watermark, the oldest last-event time among its market partitions
that still have records to read, or the hybrid event clock once all are consumed to their end.

Detectors are pure; this module is the only place here that touches Kafka or reads the clock.
"""

from __future__ import annotations

import asyncio
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
from flushwatch.fetchwait import FetchWait
from flushwatch.kafka import DeadLetters, DrainGate, Producer, client_kwargs, make_consumer
from flushwatch.logs import RateLimitedLog
from flushwatch.metrics import Metrics
from flushwatch.topics import Topics
from processors.base import Detector
from processors.clock import EventClock
from processors.state import PartitionState, StateReader, state_key

__all__ = ["CheckpointError", "DetectorFactory", "FaultHook", "ProcessorService"]

log = logging.getLogger("flushwatch.process")

#: an event this much older than the newest one of its partition is counted as late (still processed)
LATE_AFTER_MS = 60_000
#: how long one pass of the main loop may spend taking unit snapshots (at least one unit per pass)
SNAPSHOT_BUDGET_S = 0.002
#: a unit's list of producer futures is pruned of acknowledged ones when it reaches this length
UNACKED_PRUNE_AT = 1024

DetectorFactory = Callable[[], Sequence[Detector]]
#: called at named points of the commit protocol ("snapshot_taken", "alerts_flushed", "state_written",
#: "committed"); tests use it to kill the process at the worst moment
FaultHook = Callable[[str], None]


class CheckpointError(RuntimeError):
    """A record a checkpoint depends on (an alert, a state record) was not acknowledged by the broker."""


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
    #: producer futures of the alerts and cluster documents sent since the last snapshot: the checkpoint
    #: that snapshot starts waits for exactly these (not for everything the shared producer holds)
    unacked: list[asyncio.Future[Any]] = field(default_factory=list)
    #: a dead letter was sent since the last snapshot; its future stays inside DeadLetters, so that
    #: checkpoint flushes the producer instead
    dead_letters: bool = False


@dataclass(frozen=True, slots=True)
class _UnitSnapshot:
    """One unit at a consistent point: its encoded state, and what must be acknowledged before it is
    written. Encoded at once because the detectors go on changing while the checkpoint is in flight."""

    partition: int
    offsets: dict[str, int]
    state: bytes
    unacked: list[asyncio.Future[Any]]
    dead_letters: bool


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
        self._lag = metrics.consumer_lag.labels(self._group)  # updated once per tick
        self._fetch_wait_gauge = metrics.fetch_wait.labels(self._group)
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
        #: the checkpoint being assembled: units still to snapshot, and the snapshots taken so far
        self._to_snapshot: list[_Unit] = []
        self._assembled: list[_UnitSnapshot] = []
        #: steps 2-4 of the checkpoint whose snapshot was taken last, while the loop goes on consuming
        self._inflight: asyncio.Task[None] | None = None
        #: the first checkpoint that failed: the loop raises it, and no later checkpoint is written
        self._checkpoint_error: BaseException | None = None
        self._lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._reader: StateReader | None = None
        self.ready = asyncio.Event()
        self.alerts_emitted = 0
        self.alerts_suppressed = 0
        self.records = 0
        self.checkpoints = 0

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
                                 partition_assignment_strategy=(RangePartitionAssignor,),
                                 fetch_max_wait_ms=self._config.processor.fetch_max_wait_ms)
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
        except BaseException:
            await self._final_checkpoint(failing=True)
            raise
        else:
            await self._final_checkpoint(failing=False)
        finally:
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
        fetch_wait = FetchWait(consumer, self._config.processor.fetch_max_wait_ms,
                               self._config.processor.catchup_fetch_max_wait_ms)
        self._fetch_wait_gauge.set(fetch_wait.wait_ms / 1000)
        records_at_tick = self.records
        empty_polls = 0
        while not stop.is_set():
            self._raise_if_failed()
            # at least two fetch waits: a poll that comes back empty then saw at least one whole fetch
            # answered with nothing, which is what FetchWait looks for
            poll_ms = max(min(tick_ms, 200), 2 * fetch_wait.wait_ms)
            batch = await consumer.getmany(timeout_ms=poll_ms, max_records=self._max_batch)
            self._raise_if_failed()
            if not batch:
                empty_polls += 1
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
                    await fetch_wait.check(self.records - records_at_tick, empty_polls)
                    self._lag.set(fetch_wait.waiting)
                    records_at_tick, empty_polls = self.records, 0
                    self._fetch_wait_gauge.set(fetch_wait.wait_ms / 1000)
                    for unit in self._units.values():
                        now = await self._watermark(consumer, unit)
                        self._tick(unit, now)
                        await self._publish(unit, now)
                await self._emit_pending(self._units.values())
                self._count_late()
                self._raise_if_failed()  # also notices a finished checkpoint, so the next one may start
                idle = self._inflight is None and not self._to_snapshot
                dirty = [u for u in self._units.values() if u.dirty]
                if dirty and idle and time.monotonic() - last_commit >= commit_s:
                    last_commit = time.monotonic()
                    if sum(len(records) for records in batch.values()) >= self._max_batch:
                        # behind (a full batch: a backlog after a restart or a rebalance): records are
                        # already waiting, so a checkpoint's wait does not make alerts later, and inline
                        # it keeps the saved state within one batch of the live one (what a crash
                        # re-processes) instead of letting the catching-up loop run ahead of it
                        await self._checkpoint_now(dirty)
                    else:
                        # caught up: alerts of the records arriving now must not wait for the checkpoint
                        self._to_snapshot = dirty
                if self._to_snapshot:
                    self._snapshot_some()
            if self._inflight is not None:
                # getmany() on buffered records and send() with room to spare return without suspending;
                # yield once per batch so the checkpoint (and the producer's acknowledgements it waits
                # for) make progress. Right after a snapshot this also lets the checkpoint take its first
                # step, past the acknowledgements it already has, before the loop produces anything newer.
                await asyncio.sleep(0)
            if await self._drain.finished(consumer, self.records, bool(batch)):
                async with self._lock:
                    await self._finish()
                return

    def fail(self, exc: BaseException) -> None:
        """Remember a fatal error raised outside the main loop (in a rebalance callback)."""
        self._fatal = exc

    def _raise_if_failed(self) -> None:
        """Raise, in the main loop, what failed outside it: a restore in a rebalance callback, or the
        checkpoint in flight (a failed checkpoint stops the service, as it did when it ran inline)."""
        if self._fatal is not None:
            raise RuntimeError(f"restoring assigned partitions failed: {self._fatal}") from self._fatal
        self._reap_checkpoint()
        if self._checkpoint_error is not None:
            raise self._checkpoint_error

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
            # the checkpoint in flight may hold state of these units: its record and commit come first
            await self._settle_checkpoint()
            if self._checkpoint_error is not None:
                log.error("partitions %s handed over without a final checkpoint, because an earlier one "
                          "failed (%r): the next owner restores their last saved state",
                          [u.partition for u in leaving], self._checkpoint_error)
            else:
                try:
                    await self._checkpoint_now(leaving)
                except Exception:
                    # raising here would not stop the hand-over (aiokafka only logs listener errors): the
                    # failure is kept, and the main loop raises it. The next owner restores the last saved
                    # state and re-processes from there, suppressing the alerts already produced.
                    log.exception("checkpoint of revoked partitions %s failed; their next owner restores "
                                  "the last saved state", [u.partition for u in leaving])
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
            unit.dead_letters = True
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
                                           headers=[("type", alert.type.encode())], partition=unit.partition,
                                           immediate=True)
        self._track(unit, future)
        future.add_done_callback(lambda f: self._delivered(unit, f))
        self._metrics.alerts.labels(alert.type, alert.severity).inc()
        if recv_ts is not None:
            self._metrics.processing_latency.observe(max(0.0, (wall - recv_ts) / 1000))
        self.alerts_emitted += 1
        log.info("alert %s %s %s: %s", alert.type, alert.severity, alert.base, alert.message)

    @staticmethod
    def _track(unit: _Unit, future: asyncio.Future[Any]) -> None:
        """Hand ``future`` to the unit's next snapshot. A unit nobody checkpoints (no input, only ticks)
        would collect futures forever, so successfully acknowledged ones are dropped once there are many:
        a checkpoint only needs the ones still open or failed."""
        unit.unacked.append(future)
        if len(unit.unacked) >= UNACKED_PRUNE_AT:
            unit.unacked = [f for f in unit.unacked if not f.done() or f.cancelled() or f.exception() is not None]

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
                self._track(unit, await self._producer.send(
                    self._topics.liquidation_clusters, orjson.dumps(document), key=key.encode(),
                    partition=unit.partition))

    # ------------------------------------------------------------------ checkpoints (commit order above)

    @staticmethod
    def _snapshot_unit(unit: _Unit) -> _UnitSnapshot:
        """Step 1 for one unit: its state as of the last record it processed, taken without an await.

        Callers emit the unit's pending alerts first, so every alert the snapshot's records triggered is in
        the futures it takes over. ``alerts_next`` is the offset after the last alert acknowledged so far:
        whatever is still unacknowledged, or produced after this point, lands at or after it. Each unit's
        snapshot is consistent on its own (its own offsets, alerts and changelog key), so the units of one
        checkpoint may be snapshotted at different points of the stream.
        """
        assert not unit.pending, "pending alerts must be produced before a snapshot"
        state = PartitionState(unit.partition, dict(unit.offsets), unit.alerts_next,
                               {d.name: d.snapshot() for d in unit.detectors})
        snapshot = _UnitSnapshot(unit.partition, state.offsets, state.encode(), unit.unacked, unit.dead_letters)
        unit.unacked, unit.dead_letters, unit.dirty = [], False, False
        return snapshot

    def _snapshot(self, units: Sequence[_Unit]) -> list[_UnitSnapshot]:
        """Step 1 for ``units`` at once (inline checkpoints)."""
        snapshots = [self._snapshot_unit(unit) for unit in units]
        self._fault("snapshot_taken")
        return snapshots

    def _snapshot_some(self) -> None:
        """Snapshot units of the checkpoint being assembled for at most :data:`SNAPSHOT_BUDGET_S` (at least
        one), then, once every unit is taken, start steps 2 to 4 in the background.

        Detector snapshots grow with the state (tens of milliseconds for hundreds of assets): taken all at
        once they would hold up every record that arrives meanwhile, spread over passes of the loop they
        hold up each record by at most about one unit's snapshot.
        """
        started = time.perf_counter()
        while self._to_snapshot:
            self._assembled.append(self._snapshot_unit(self._to_snapshot.pop(0)))
            if time.perf_counter() - started >= SNAPSHOT_BUDGET_S:
                break
        if not self._to_snapshot:
            snapshots, self._assembled = self._assembled, []
            self._fault("snapshot_taken")
            self._inflight = asyncio.create_task(self._complete(snapshots), name="processor-checkpoint")

    async def _complete(self, snapshots: Sequence[_UnitSnapshot]) -> None:
        """Steps 2 to 4 for a snapshot: its alerts acknowledged, then its state, then its offsets."""
        await self._acknowledged([f for snap in snapshots for f in snap.unacked], "alert")   # 2
        if any(snap.dead_letters for snap in snapshots):
            await self._producer.flush()  # dead letters: failures are counted and logged by the producer
        self._fault("alerts_flushed")
        written = [await self._producer.send(self._topics.processor_state, snap.state,                # 3
                                             key=state_key(self._group, snap.partition),
                                             partition=snap.partition)
                   for snap in snapshots]
        await self._acknowledged(written, "state")
        self._fault("state_written")
        consumer = self._consumer
        offsets = {TopicPartition(topic, snap.partition): offset
                   for snap in snapshots for topic, offset in snap.offsets.items()}
        if consumer is not None and offsets:                                                       # 4
            try:
                async with asyncio.timeout(10):
                    await consumer.commit(offsets)
            except (KafkaError, TimeoutError) as exc:
                # the state in the changelog already holds these offsets; the group's committed
                # offsets catch up at the next checkpoint (they only serve lag monitoring and a
                # restart without state)
                self._problems.warning("commit", "offset commit failed (%s); state is saved", exc)
        self.checkpoints += 1
        self._fault("committed")

    @staticmethod
    async def _acknowledged(futures: Sequence[asyncio.Future[Any]], what: str) -> None:
        """Wait for ``futures`` (the producer's, not cancelled when this waiter is); raise
        :class:`CheckpointError` if one of them failed, so no state claims a record that is not there."""
        waiting = [f for f in futures if not f.done()]
        if waiting:
            await asyncio.wait(waiting)
        for future in futures:
            if future.cancelled():
                raise CheckpointError(f"a checkpoint's {what} record was cancelled before it was acknowledged")
            exc = future.exception()
            if exc is not None:
                raise CheckpointError(f"a checkpoint's {what} record was not acknowledged: {exc!r}") from exc

    async def _checkpoint_now(self, units: Sequence[_Unit]) -> None:
        """A whole checkpoint of ``units``, inline (revocation, drain, shutdown). The caller holds the lock
        and has waited for the checkpoint in flight. A failure is kept like a background one's: the
        snapshot took over the units' unacknowledged futures, so a later checkpoint could not wait for
        them."""
        assert self._inflight is None, "one checkpoint at a time"
        if not units:
            return
        if self._checkpoint_error is not None:
            raise CheckpointError("no checkpoint after a failed one") from self._checkpoint_error
        await self._emit_pending(units)
        try:
            await self._complete(self._snapshot(units))
        except BaseException as exc:
            self._checkpoint_error = exc
            raise

    def _reap_checkpoint(self) -> None:
        """Forget the checkpoint in flight once it finished, keeping its failure."""
        task = self._inflight
        if task is None or not task.done():
            return
        self._inflight = None
        if task.cancelled():
            failure: BaseException | None = CheckpointError("the checkpoint in flight was cancelled")
        else:
            failure = task.exception()
        if failure is not None and self._checkpoint_error is None:
            self._checkpoint_error = failure

    async def _settle_checkpoint(self) -> None:
        """Finish the checkpoint being assembled or in flight (its failure is kept for the loop to raise).

        Called with the lock held, between passes of the loop, so no unit has pending alerts: the units
        not snapshotted yet are taken now."""
        if self._to_snapshot:
            await self._emit_pending(self._to_snapshot)
            while self._to_snapshot:
                self._snapshot_some()
        task = self._inflight
        if task is None:
            return
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError:
            # the service is being torn down: do not leave the task behind (a cancelled checkpoint is
            # harmless: each of its steps waits for the previous one, so it stops between two of them)
            task.cancel()
            await asyncio.wait([task])
            raise
        finally:
            self._reap_checkpoint()

    async def _final_checkpoint(self, *, failing: bool) -> None:
        """On shutdown: wait for the checkpoint in flight, then checkpoint every unit inline.

        When the service is already failing (``failing``), a failure here is logged and the original
        error propagates; otherwise it is raised: a stop must not hide a checkpoint that did not happen.
        """
        try:
            async with self._lock:  # a rebalance callback may still run
                await self._settle_checkpoint()
                if self._checkpoint_error is not None:
                    if failing:
                        log.error("no final checkpoint: an earlier one failed (%r); the next owner restores "
                                  "the last saved state", self._checkpoint_error)
                        return
                    raise self._checkpoint_error
                await self._checkpoint_now(list(self._units.values()))
        except Exception:
            if not failing:
                raise
            log.exception("the final checkpoint failed; the next owner restores the last saved state")

    async def _finish(self) -> None:
        """End of a drain (caller holds the lock): let time pass by the horizon, then checkpoint everything."""
        now = self._clock.now()
        if now is not None:
            final = now + self._drain_horizon_ms
            for unit in self._units.values():
                self._tick(unit, final)
        await self._settle_checkpoint()
        self._raise_if_failed()
        await self._checkpoint_now(list(self._units.values()))
        log.info("processor drained: input consumed to the end")
