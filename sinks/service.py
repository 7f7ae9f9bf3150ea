"""The sink service: its own consumer group on ``fw.alerts``, so a slow destination never slows
detection.

Flow, per consumed alert:

1. Decode (an undecodable record goes to ``fw.dlq`` once, with its raw bytes).
2. For every target whose filter wants it and whose delivered-id store does not know it yet, put a job on
   the target's bounded queue. When a queue is full the service pauses every assigned partition (records
   already fetched wait in a small overflow buffer, in order) and resumes once there is room again.
3. One worker per target delivers its queue in order: rate limit, attempt, and on failure retry with
   jittered exponential backoff that honours Retry-After, up to the target's retry budget; then the alert
   goes to ``fw.dlq`` with the reason (a permanent error such as HTTP 400 goes at once). A delivered alert
   is written to the target's store before it counts as done.
4. Offsets are committed, every ``commit_interval_s`` and on revoke and stop, only up to the first record
   some target has not finished (delivered, skipped, filtered out or dead-lettered): the first-gap rule.

On a rebalance the service waits (up to ``revoke_drain_s``) for the revoked partitions' work to finish and
commits it before letting the partitions go, so the next owner starts where this one stopped. On stop it
drains the queues for up to ``shutdown_drain_s``, commits and closes the sinks.

The injected :class:`~sinks.policy.Clock` drives retry backoff, rate limits and webhook timestamps (tests
use a fake one); service housekeeping (commit interval, drain deadlines) runs on the event loop's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from flushwatch.codec import decode_alert
from flushwatch.config import Config
from flushwatch.errors import CodecError
from flushwatch.events import Alert
from flushwatch.kafka import DrainGate, Producer, consumer_lag, make_consumer
from flushwatch.logs import RateLimitedLog
from flushwatch.metrics import Metrics
from flushwatch.topics import Topics
from sinks.base import AlertSink, DeliveryError
from sinks.dedupe import DeliveredStore, MemoryDeliveredStore
from sinks.metrics import SinkMetrics
from sinks.policy import AlertFilter, Clock, RateLimiter, RetryPolicy, SystemClock
from sinks.tracker import Entry, OffsetTracker

__all__ = ["SinkService", "SinkTarget"]

log = logging.getLogger("flushwatch.sink")

_MAX_FETCH = 500


@dataclass
class SinkTarget:
    """One configured destination: the sink and how alerts reach it."""

    sink: AlertSink
    filter: AlertFilter = field(default_factory=AlertFilter)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    rate_per_second: float | None = None
    rate_burst: int = 1
    queue_size: int = 1000
    store: DeliveredStore = field(default_factory=MemoryDeliveredStore)

    @property
    def name(self) -> str:
        """The sink's name (unique within a service)."""
        return self.sink.name


@dataclass(eq=False, slots=True)
class _Job:
    entry: Entry
    alert: Alert
    raw: bytes
    origin: str
    received: float


@dataclass(eq=False, slots=True)
class _Pending:
    """A consumed record not yet put on the queues (they were full)."""

    entry: Entry
    raw: bytes
    origin: str
    received: float


class _Worker:
    """Delivers one target's queue, in order."""

    def __init__(self, target: SinkTarget, service: SinkService) -> None:
        self.target = target
        self.name = target.name
        self.queue: asyncio.Queue[_Job] = asyncio.Queue(target.queue_size)
        self._service = service
        self._limiter = RateLimiter(target.rate_per_second, target.rate_burst, service.clock)
        self._m = service.sink_metrics

    @property
    def free(self) -> int:
        return self.target.queue_size - self.queue.qsize()

    def put(self, job: _Job) -> None:
        self.queue.put_nowait(job)
        self._m.queue_depth.labels(self.name).set(self.queue.qsize())

    async def run(self) -> None:
        while True:
            job = await self.queue.get()
            self._m.queue_depth.labels(self.name).set(self.queue.qsize())
            finished = False
            try:
                finished = await self._process(job)
            finally:
                if finished:
                    self._service.finish(job.entry)
                self.queue.task_done()
                self._service.notify()

    async def _process(self, job: _Job) -> bool:
        """Deliver or dead-letter one job; False when it was abandoned (its partition was revoked)."""
        alert = job.alert
        if job.entry.cancelled:
            return False
        if self.target.store.contains(alert.alert_id):
            self._m.duplicates.labels(self.name).inc()
            return True
        outcome = await self._attempt(job)
        if outcome is None:
            return False
        reason, detail, attempts = outcome
        if not reason:
            try:
                self.target.store.add(alert.alert_id)
            except Exception as exc:  # noqa: BLE001 - delivered is delivered; a full disk must not stop delivery
                self._service.problems.warning(
                    f"store:{self.name}", "sink %s delivered %s but could not record it (a restart may send it "
                    "again): %s", self.name, alert.alert_id, exc)
            self._m.delivered.labels(self.name).inc()
            self._m.latency.labels(self.name).observe(max(0.0, time.monotonic() - job.received))
            self._service.delivered_jobs += 1
            return True
        self._m.failures.labels(self.name).inc()
        self._service.problems.warning(
            f"sink:{self.name}:{reason}", "sink %s gave up on alert %s after %d attempt(s): %s", self.name,
            alert.alert_id, attempts, detail)
        await self._service.dead_letter(
            job.raw, "sink_failed", f"sink {self.name}: {detail}"[:500], origin=job.origin, sink=self.name,
            reason=reason, attempts=attempts, alert_id=alert.alert_id)
        self._m.dead_lettered.labels(self.name, reason).inc()
        return True

    async def _attempt(self, job: _Job) -> tuple[str, str, int] | None:
        """Attempts until delivered (reason ``""``) or the budget is spent; None when abandoned."""
        policy = self.target.retry
        clock = self._service.clock
        attempts = 0
        while True:
            if job.entry.cancelled:
                return None
            waited = await self._limiter.acquire()
            if waited:
                self._m.rate_limited.labels(self.name).inc(waited)
            attempts += 1
            try:
                await self.target.sink.deliver(job.alert)
            except DeliveryError as exc:
                reason, detail, retryable, retry_after = exc.reason, str(exc), exc.retryable, exc.retry_after
            except Exception as exc:  # noqa: BLE001 - any failure of a destination is retried, then dead-lettered
                reason, detail, retryable, retry_after = "error", f"{type(exc).__name__}: {exc}", True, None
            else:
                return "", "", attempts
            self._m.attempt_errors.labels(self.name, reason).inc()
            if retry_after is not None:
                self._limiter.block_for(min(retry_after, policy.max_retry_after_s))
            delay = policy.delay(attempts, retry_after, self._service.rng) if retryable else None
            if delay is None:
                why = "permanent error" if not retryable else f"retry budget spent ({attempts} attempts)"
                return reason, f"{detail} ({why})", attempts
            log.debug("sink %s: attempt %d for %s failed (%s); retrying in %.2f s", self.name, attempts,
                      job.alert.alert_id, detail, delay)
            self._m.retries.labels(self.name).inc()
            await clock.sleep(delay)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, service: SinkService, consumer: Any) -> None:
        self._service = service
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._service.on_revoked(self._consumer, set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("sink assigned %s", ", ".join(f"{tp.topic}/{tp.partition}" for tp in sorted(assigned)) or "nothing")


class SinkService:
    """Delivers alerts from the alert topic to every configured target."""

    def __init__(self, config: Config, metrics: Metrics, sinks: Sequence[AlertSink | SinkTarget],
                 producer: Producer, bootstrap: str | None = None, *, clock: Clock | None = None,
                 rng: random.Random | None = None) -> None:
        self._config = config
        self._metrics = metrics
        self.sink_metrics = SinkMetrics.for_metrics(metrics)
        self.targets = [s if isinstance(s, SinkTarget) else SinkTarget(s) for s in sinks]
        names = [t.name for t in self.targets]
        if len(set(names)) != len(names):
            raise ValueError(f"sink names must be unique: {names}")
        self._bootstrap = bootstrap
        self._topics = Topics(config.kafka.topic_prefix)
        self._producer = producer
        self.clock: Clock = clock or SystemClock()
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self.problems = RateLimitedLog(log)
        self._drain = DrainGate("sink")
        self._workers = [_Worker(t, self) for t in self.targets]
        self._tracker = OffsetTracker()
        self._overflow: deque[_Pending] = deque()
        self._paused: set[Any] = set()
        self._changed = asyncio.Event()
        self._commit_lock = asyncio.Lock()
        self.records = 0
        self.ready = asyncio.Event()
        self.delivered = 0
        self.delivered_jobs = 0

    @property
    def produced(self) -> int:
        """Sinks produce nothing downstream (dead letters aside)."""
        return 0

    def request_drain(self, horizon_ms: int = 0, expect_records: int = 0) -> None:
        """Stop once at least ``expect_records`` alerts were consumed, the topic is consumed to its end and
        every target finished them."""
        self._drain.request(expect_records)

    # -- bookkeeping shared with the workers ------------------------------------------------------------

    def notify(self) -> None:
        """Something finished or made room: wake whoever waits."""
        self._changed.set()

    def finish(self, entry: Entry) -> None:
        """One target finished its job for ``entry``."""
        self._tracker.finish(entry)
        if entry.finished:
            self.delivered += 1

    async def _wait_changed(self, seconds: float) -> None:
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, seconds)):
                await self._changed.wait()

    async def dead_letter(self, raw: bytes, kind: str, detail: str, *, origin: str, sink: str = "",
                          reason: str = "", attempts: int = 0, alert_id: str = "") -> None:
        """Write one record to ``fw.dlq`` and wait for the broker's acknowledgement, retrying until it is
        confirmed: an alert counts as finished only once it is safely dead-lettered."""
        headers = [("fw-source", b"sink"), ("fw-kind", kind.encode()), ("fw-reason", detail[:500].encode()),
                   ("fw-origin", origin[:200].encode())]
        if sink:
            headers += [("fw-sink", sink.encode()), ("fw-error", reason.encode()),
                        ("fw-attempts", str(attempts).encode())]
        if alert_id:
            headers.append(("fw-alert-id", alert_id[:200].encode()))
        delay = 0.5
        while True:
            failures = self._producer.failures
            try:
                await self._producer.send(self._topics.dlq, raw, key=b"sink", headers=headers)
                await self._producer.flush()
                if self._producer.failures == failures:
                    break
            except Exception as exc:  # noqa: BLE001 - the broker is unreachable: keep the alert, retry
                self.problems.warning("dlq", "dead-lettering to %s failed: %s", self._topics.dlq, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
        self._metrics.dead_letters.labels("sink", kind).inc()

    # -- the consumer loop ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Consume and deliver until ``stop`` is set or a requested drain completes."""
        sink_cfg = self._config.sink
        consumer = make_consumer(self._config.kafka, sink_cfg.group_id, self._bootstrap, client_suffix="sink",
                                 max_poll_records=_MAX_FETCH)
        consumer.subscribe([self._topics.alerts], listener=_Rebalance(self, consumer))
        await consumer.start()
        log.info("sink joined group %s on %s; targets: %s", sink_cfg.group_id, self._topics.alerts,
                 ", ".join(w.name for w in self._workers) or "none")
        workers = [asyncio.create_task(w.run(), name=f"sink-{w.name}") for w in self._workers]
        last_commit = time.monotonic()
        try:
            while not stop.is_set():
                for task in workers:
                    if task.done():  # a worker only ends by a bug: fail loudly instead of stalling paused
                        raise RuntimeError(f"sink worker {task.get_name()} stopped") from task.exception()
                await self._dispatch_overflow()
                blocked = bool(self._overflow) or any(w.free <= 0 for w in self._workers)
                self._set_paused(consumer, blocked)
                room = min((w.free for w in self._workers), default=_MAX_FETCH)
                if blocked:
                    await self._wait_changed(0.2)
                    batch = await consumer.getmany(timeout_ms=0, max_records=1)
                else:
                    batch = await consumer.getmany(timeout_ms=200, max_records=max(1, min(room, _MAX_FETCH)))
                if consumer.assignment():
                    self.ready.set()
                for tp, records in batch.items():
                    self._metrics.consumed.labels(tp.topic).inc(len(records))
                    self.records += len(records)
                    for record in records:
                        await self._consume(tp, record)
                self.sink_metrics.uncommitted.set(self._tracker.unfinished())
                if time.monotonic() - last_commit >= sink_cfg.commit_interval_s:
                    await self._commit(consumer)
                    last_commit = time.monotonic()
                    self._metrics.consumer_lag.labels(sink_cfg.group_id).set(await consumer_lag(consumer))
                busy = bool(batch) or bool(self._overflow) or self._tracker.unfinished() > 0
                if await self._drain.finished(consumer, self.records, busy):
                    break
            await self._drain_queues(sink_cfg.shutdown_drain_s)
            await self._commit(consumer)
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            for target in self.targets:
                with contextlib.suppress(Exception):
                    await target.sink.close()
                with contextlib.suppress(Exception):
                    target.store.close()
            await consumer.stop()
            self.sink_metrics.paused.set(0)
            log.info("sink stopped: %d alerts finished, %d deliveries", self.delivered, self.delivered_jobs)

    async def _consume(self, tp: Any, record: Any) -> None:
        origin = f"{tp.topic}/{tp.partition}@{record.offset}"
        raw: bytes = record.value or b""
        entry = self._tracker.add(tp, record.offset, pending=1)
        pending = _Pending(entry, raw, origin, time.monotonic())
        if self._overflow or not await self._dispatch(pending):
            self._overflow.append(pending)

    async def _dispatch_overflow(self) -> None:
        while self._overflow:
            if self._overflow[0].entry.cancelled or await self._dispatch(self._overflow[0]):
                self._overflow.popleft()
            else:
                return

    async def _dispatch(self, pending: _Pending) -> bool:
        """Put the record's jobs on the queues; False (nothing done) when a queue it needs is full."""
        entry = pending.entry
        try:
            alert = decode_alert(pending.raw)
        except CodecError as exc:
            self.problems.warning(f"decode:{exc.kind}", "undecodable alert at %s: %s", pending.origin, exc)
            await self.dead_letter(pending.raw, exc.kind, exc.detail, origin=pending.origin)
            entry.pending = 0
            self.delivered += 1
            return True
        matching = [w for w in self._workers if w.target.filter.matches(alert)]
        if any(w.free <= 0 for w in matching):
            return False
        wanted: list[_Worker] = []
        for worker in self._workers:
            if worker not in matching:
                self.sink_metrics.filtered.labels(worker.name).inc()
            elif worker.target.store.contains(alert.alert_id):
                self.sink_metrics.duplicates.labels(worker.name).inc()
            else:
                wanted.append(worker)
        entry.pending = len(wanted)
        if not wanted:
            self.delivered += 1
        for worker in wanted:
            worker.put(_Job(entry, alert, pending.raw, pending.origin, pending.received))
        return True

    def _set_paused(self, consumer: Any, paused: bool) -> None:
        assigned = set(consumer.assignment())
        if paused:
            new = assigned - self._paused
            if new:
                consumer.pause(*new)
                if not self._paused:
                    log.info("sink queues full: pausing %d partition(s)", len(assigned))
                self._paused |= new
        elif self._paused:
            consumer.resume(*(self._paused & assigned))
            log.info("sink queues have room: resuming")
            self._paused.clear()
        self._paused &= assigned
        self.sink_metrics.paused.set(1 if self._paused else 0)

    async def _drain_queues(self, timeout_s: float) -> None:
        """On stop: let the workers finish what was consumed, up to a deadline."""
        deadline = time.monotonic() + timeout_s
        while True:
            await self._dispatch_overflow()
            open_work = self._tracker.unfinished()
            if not open_work:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.warning("sink stop: %d consumed alerts not finished within %.1f s; they will be consumed "
                            "again after the restart (delivered ones are skipped by the id stores)",
                            open_work, timeout_s)
                return
            await self._wait_changed(min(remaining, 0.2))

    async def _commit(self, consumer: Any, partitions: set[Any] | None = None) -> None:
        assigned = set(consumer.assignment())
        scope = assigned if partitions is None else partitions & assigned
        offsets: dict[Any, int] = self._tracker.committable(scope)
        if not offsets:
            return
        async with self._commit_lock:
            try:
                await consumer.commit({tp: offset for tp, offset in offsets.items()})
            except (KafkaError, ValueError) as exc:
                self.problems.warning("commit", "sink offset commit failed (retried at the next one): %s", exc)
                return
            self._tracker.committed(offsets)
            log.debug("sink committed %s", {f"{tp.topic}/{tp.partition}": o for tp, o in offsets.items()})

    async def on_revoked(self, consumer: Any, revoked: set[Any]) -> None:
        """Before partitions go to another member: finish their work (bounded), commit, forget them."""
        if not revoked:
            return
        deadline = time.monotonic() + self._config.sink.revoke_drain_s
        while self._tracker.unfinished(revoked) and time.monotonic() < deadline:
            await self._dispatch_overflow()
            await self._wait_changed(min(0.2, max(0.0, deadline - time.monotonic())))
        await self._commit(consumer, revoked)
        dropped = self._tracker.drop(revoked)
        if dropped:
            log.warning("sink: %d alerts of revoked partitions were not finished within %.1f s; the next "
                        "owner delivers them", dropped, self._config.sink.revoke_drain_s)
        self._overflow = deque(p for p in self._overflow if not p.entry.cancelled)
        self._paused -= revoked
