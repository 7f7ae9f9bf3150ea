"""Kafka plumbing shared by every role: client settings, topic creation, a producer that never drops
silently, and the dead-letter writer.

aiokafka's ``send()`` returns a future per record; fire-and-forget code loses errors (cryptofeed's Kafka
backend logs and drops). :class:`Producer` accounts for every record until the broker acknowledged it,
bounds how many are outstanding, counts failures, and :meth:`Producer.flush` waits for all of them, so the
commit order "produce, then flush, then commit offsets" actually holds. It batches through aiokafka's
batch API because the per-record ``send()`` alone cost more CPU than the rest of the ingest path
(bench/RESULTS.md, section 2). Idempotence and transactions are not used: the embedded broker cannot do them
with aiokafka (ENVIRONMENT.md); duplicates are handled by construction downstream (alert ids).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import functools
import itertools
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    MessageSizeTooLargeError,
    ProducerClosed,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.structs import RecordMetadata

from flushwatch.config import KafkaConfig
from flushwatch.logs import RateLimitedLog
from flushwatch.metrics import Children, Metrics

__all__ = ["DeadLetters", "Producer", "client_kwargs", "create_topics", "make_consumer"]

log = logging.getLogger("flushwatch.kafka")

#: Largest produce request (and so record) the producer sends.
MAX_REQUEST_BYTES = 16 * 1024 * 1024
#: Records with a value above this size are measured against :data:`MAX_REQUEST_BYTES` before they are
#: queued (smaller ones cannot exceed it; measuring every record would cost more than appending it).
_CHECK_SIZE_ABOVE = 64 * 1024
#: Keys whose partition is remembered per topic (base assets, venue names: a few hundred at most).
_MAX_CACHED_KEYS = 10_000
_NO_HEADERS: list[tuple[str, bytes]] = []
_PARTITIONER = DefaultPartitioner()
#: ``RecordMetadata(*fields)`` without the NamedTuple's generated ``__new__`` (half the cost, per record)
_metadata: Callable[[tuple[Any, ...]], RecordMetadata] = functools.partial(tuple.__new__, RecordMetadata)


def client_kwargs(cfg: KafkaConfig, bootstrap: str | None = None) -> dict[str, Any]:
    """Connection settings common to producers, consumers and the admin client."""
    servers = bootstrap or ",".join(cfg.bootstrap_servers)
    kwargs: dict[str, Any] = {"bootstrap_servers": servers, "security_protocol": cfg.security_protocol}
    if cfg.security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=cfg.ssl_cafile)
        if cfg.ssl_certfile:
            context.load_cert_chain(cfg.ssl_certfile, cfg.ssl_keyfile)
        kwargs["ssl_context"] = context
    if cfg.security_protocol.startswith("SASL"):
        kwargs["sasl_mechanism"] = cfg.sasl_mechanism or "PLAIN"
        kwargs["sasl_plain_username"] = cfg.sasl_username
        kwargs["sasl_plain_password"] = cfg.sasl_password.get_secret_value() if cfg.sasl_password else None
    return kwargs


async def create_topics(cfg: KafkaConfig, topics: Sequence[str], bootstrap: str | None = None,
                        compacted: Sequence[str] = ()) -> list[str]:
    """Create the topics that do not exist yet (``compacted`` ones with ``cleanup.policy=compact``);
    returns the ones created."""
    admin = AIOKafkaAdminClient(**client_kwargs(cfg, bootstrap), client_id=f"{cfg.client_id}-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another instance won the race: fine
                await admin.create_topics([
                    NewTopic(name=t, num_partitions=cfg.partitions, replication_factor=cfg.replication_factor,
                             topic_configs={"cleanup.policy": "compact"} if t in compacted else None)
                    for t in missing
                ])
            log.info("created topics %s with %d partition(s) each", ", ".join(missing), cfg.partitions)
        return missing
    finally:
        await admin.close()


def make_consumer(cfg: KafkaConfig, group_id: str | None, bootstrap: str | None = None,
                  client_suffix: str = "consumer", **overrides: Any) -> AIOKafkaConsumer:
    """A consumer with manual commits: offsets move only after the work for them is done."""
    kwargs: dict[str, Any] = dict(
        client_kwargs(cfg, bootstrap),
        client_id=f"{cfg.client_id}-{client_suffix}",
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset=cfg.auto_offset_reset,
        session_timeout_ms=cfg.session_timeout_ms,
        heartbeat_interval_ms=cfg.heartbeat_interval_ms,
        fetch_max_wait_ms=cfg.fetch_max_wait_ms,
        max_poll_records=2000,
    )
    kwargs.update(overrides)
    return AIOKafkaConsumer(**kwargs)


class _Batch:
    """Records for one (topic, partition) on their way to the broker, in the order they were sent.

    ``futures[i]`` and ``timestamps[i]`` belong to the record at offset ``base + i`` of the batch, so one
    acknowledgement resolves every record with its own offset.
    """

    __slots__ = ("builder", "created", "futures", "partition", "route", "timestamps", "topic", "waiter")

    def __init__(self, topic: str, partition: int, route: _Route, builder: BatchBuilder,
                 created: float) -> None:
        self.topic = topic
        self.partition = partition
        self.route = route
        self.builder = builder
        self.created = created
        self.futures: list[asyncio.Future[RecordMetadata]] = []
        self.timestamps: list[int] = []
        #: set by :meth:`Producer.flush` when it has to wait for this batch
        self.waiter: asyncio.Future[None] | None = None


class _Route:
    """Where a topic's records go: its partitions as the default partitioner sees them, the partition
    chosen for each key so far (murmur2 in pure Python costs ~1.5 µs per record; keys are base assets)
    and the open batch of each partition."""

    __slots__ = ("by_key", "open", "partitions")

    def __init__(self, partitions: list[int]) -> None:
        self.partitions = partitions
        self.by_key: dict[bytes | None, int] = {}
        #: the batch taking records, per partition
        self.open: dict[int, _Batch] = {}


class Producer:
    """An aiokafka producer whose every send is accounted for until :meth:`flush` confirms it.

    Records are appended to one open batch per (topic, partition) — aiokafka's batch API
    (``create_batch``/``send_batch``): its per-record ``send()`` alone cost ~9 µs of CPU per record here,
    the whole produce path is now ~3-4 µs (bench/ingest_kafka.py) — and a batch goes to the client when it
    is full, or when the linger timer (``linger_ms`` after the oldest open batch was opened) closes every
    open batch, or when :meth:`flush` or backpressure needs it to go.
    The partition is chosen exactly as aiokafka's default partitioner does (murmur2 of the key over the
    topic's partitions; random among the available ones without a key), so keyed records land where the
    per-record path put them and per-key order holds: batches of a partition are handed to the client one
    at a time, in order, and the client keeps one request per partition in flight.

    Every :meth:`send` still returns its own future, resolved with the record's own metadata (offset,
    timestamp) when the broker acknowledged it (``acks=all``) or failed with the batch's error. At most
    ``max_in_flight`` records are accepted and not yet acknowledged; :meth:`send` waits (backpressure)
    when that many are outstanding.
    """

    def __init__(self, cfg: KafkaConfig, metrics: Metrics, bootstrap: str | None = None,
                 client_suffix: str = "producer", max_in_flight: int = 20_000,
                 max_batch_bytes: int = 256 * 1024, request_timeout_ms: int = 40_000) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self._producer = AIOKafkaProducer(
            **client_kwargs(cfg, bootstrap),
            client_id=f"{cfg.client_id}-{client_suffix}",
            acks="all",
            linger_ms=cfg.linger_ms,
            max_batch_size=max_batch_bytes,
            max_request_size=MAX_REQUEST_BYTES,
            request_timeout_ms=request_timeout_ms,
            enable_idempotence=False,
        )
        self._metrics = metrics
        self._linger_s = cfg.linger_ms / 1000
        self._max_in_flight = max_in_flight
        self._routes: dict[str, _Route] = {}
        self._open: dict[_Batch, None] = {}  # every open batch (at most one per partition), in order
        self._ready: collections.deque[_Batch] = collections.deque()
        self._unfinished: set[_Batch] = set()
        self._outstanding = 0  # records accepted by send() and not yet acknowledged or failed
        self._room: collections.deque[asyncio.Future[None]] = collections.deque()
        self._linger_handle: asyncio.TimerHandle | None = None
        self._wake: asyncio.Future[None] | None = None
        self._submitter: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._produced = Children(metrics.produced)
        self._produce_errors = Children(metrics.produce_errors)
        self._problems = RateLimitedLog(log)
        self.failures = 0
        #: batches handed to the client so far, and the records in them (how well records are batched)
        self.batches = 0
        self.batched_records = 0

    async def start(self) -> None:
        """Connect to the cluster and start handing batches to the client."""
        await self._producer.start()
        self._loop = asyncio.get_running_loop()
        self._create_future = self._loop.create_future
        # A metadata refresh may change a topic's partitions: route again from the new metadata.
        self._producer.client.cluster.add_listener(self._metadata_changed)
        self._submitter = self._loop.create_task(self._submit_loop(), name="flushwatch-producer-batches")

    @property
    def in_flight(self) -> int:
        """Records accepted by :meth:`send` and not yet acknowledged or failed (at most ``max_in_flight``)."""
        return self._outstanding

    # ------------------------------------------------------------------ sending

    async def send(self, topic: str, value: bytes, key: bytes | None = None,
                   headers: list[tuple[str, bytes]] | None = None, timestamp_ms: int | None = None,
                   partition: int | None = None, *, immediate: bool = False) -> asyncio.Future[RecordMetadata]:
        """Queue one record; returns the future of its RecordMetadata. Waits (backpressure) while
        ``max_in_flight`` records are outstanding. Raises (and counts) when the record cannot be queued:
        unknown topic or partition, a record larger than the maximum request, a closed producer.

        ``immediate``: the record's batch goes to the client now instead of lingering, for the rare
        records whose latency is the point (alerts): lingering is worth it for the market-data stream,
        not for one alert waiting up to ``linger_ms`` behind it."""
        # The common case runs once per market event: a few dict lookups, one append, one future.
        if self._outstanding >= self._max_in_flight:
            await self._wait_for_room()
        try:
            route = self._routes.get(topic)  # none while closed or not started: _route says why
            if route is None:
                route = await self._route(topic)
            if partition is None:
                partition = route.by_key.get(key)  # never holds None: unkeyed records pick each time
                if partition is None:
                    partition = self._partition_for_key(topic, route, key)
            elif partition not in route.partitions:
                raise UnknownTopicOrPartitionError(f"{topic} has no partition {partition}")
            if len(value) > _CHECK_SIZE_ABOVE:
                self._check_size(key, value, headers)
            if timestamp_ms is None:
                timestamp_ms = time.time_ns() // 1_000_000
            batch = route.open.get(partition)
            if batch is None:
                batch = self._open_batch(route, topic, partition)
            if batch.builder.append(timestamp=timestamp_ms, key=key, value=value,
                                    headers=headers or _NO_HEADERS) is None:
                # full: it goes now; the record opens the partition's next batch (a first record always fits)
                self._close(batch)
                batch = self._open_batch(route, topic, partition)
                batch.builder.append(timestamp=timestamp_ms, key=key, value=value,
                                     headers=headers or _NO_HEADERS)
            if immediate:
                self._close(batch)
        except Exception as exc:  # unknown topic or partition, too large, closed, a value that is not bytes
            self._failed(topic, 1, repr(exc))
            raise
        future: asyncio.Future[RecordMetadata] = self._create_future()
        batch.futures.append(future)
        batch.timestamps.append(timestamp_ms)
        self._outstanding += 1
        return future

    async def _route(self, topic: str) -> _Route:
        """The topic's partitions, from metadata (fetched if this client has not seen the topic yet)."""
        if self._closed or self._loop is None:
            raise ProducerClosed()
        await self._producer.partitions_for(topic)  # raises when the topic does not exist
        partitions = self._producer.client.cluster.partitions_for_topic(topic)
        if not partitions:
            raise UnknownTopicOrPartitionError(topic)
        if self._closed:  # stopped while waiting for metadata
            raise ProducerClosed()
        route = self._routes.get(topic)  # another send may have routed it meanwhile
        if route is None:
            route = self._routes[topic] = _Route(list(partitions))  # the order aiokafka's send() uses
        return route

    def _partition_for_key(self, topic: str, route: _Route, key: bytes | None) -> int:
        """aiokafka's default partitioner, on the same inputs its per-record ``send()`` passes it."""
        available = list(self._producer.client.cluster.available_partitions_for_topic(topic) or ())
        partition = int(_PARTITIONER(key, route.partitions, available))
        if key is not None:
            if len(route.by_key) >= _MAX_CACHED_KEYS:
                route.by_key.clear()
            route.by_key[key] = partition
        return partition

    def _metadata_changed(self, _cluster: object) -> None:
        # Batches opened under the old routes go first (in order), then records are routed afresh.
        self._close_all()
        self._routes.clear()

    def _check_size(self, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]] | None) -> None:
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers or _NO_HEADERS)
        if size > MAX_REQUEST_BYTES:
            raise MessageSizeTooLargeError(
                f"the record is {size} bytes when serialized, more than the maximum request size "
                f"({MAX_REQUEST_BYTES} bytes)")

    def _open_batch(self, route: _Route, topic: str, partition: int) -> _Batch:
        assert self._loop is not None
        batch = _Batch(topic, partition, route, self._producer.create_batch(), time.perf_counter())
        route.open[partition] = batch
        self._open[batch] = None
        self._unfinished.add(batch)
        if self._linger_handle is None:
            self._linger_handle = self._loop.call_later(self._linger_s, self._linger_expired)
        return batch

    def _close(self, batch: _Batch) -> None:
        """No more records for this batch: queue it for the client (in order, per partition)."""
        del batch.route.open[batch.partition]
        del self._open[batch]
        batch.builder.close()  # closed builders are sent at once: the lingering was done here
        self._ready.append(batch)
        self.batches += 1
        self.batched_records += len(batch.futures)
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def _close_all(self) -> None:
        for batch in list(self._open):
            self._close(batch)
        if self._linger_handle is not None:
            self._linger_handle.cancel()
            self._linger_handle = None

    def _linger_expired(self) -> None:
        self._linger_handle = None
        self._close_all()

    async def _wait_for_room(self) -> None:
        """Backpressure: wait until fewer than ``max_in_flight`` records are outstanding."""
        assert self._loop is not None
        self._close_all()  # what is waiting in open batches must go now, or nothing will free room
        while self._outstanding >= self._max_in_flight:
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._room.append(waiter)
            try:
                await waiter
            finally:
                if not waiter.done():
                    waiter.cancel()

    async def _submit_loop(self) -> None:
        """Hand closed batches to the client one at a time, in the order they were closed: ``send_batch``
        waits while the partition's previous batch is still queued in the client, so this is also where
        a slow broker pushes back."""
        assert self._loop is not None
        while True:
            if not self._ready:
                self._wake = self._loop.create_future()
                await self._wake
                continue
            batch = self._ready.popleft()
            try:
                sent = await self._producer.send_batch(batch.builder, batch.topic, partition=batch.partition)
            except asyncio.CancelledError:
                self._finish(batch, None, ProducerClosed())
                raise
            except Exception as exc:  # noqa: BLE001 - every error fails the batch's records, counted
                self._finish(batch, None, exc)
                continue
            sent.add_done_callback(functools.partial(self._acknowledged, batch))

    def _acknowledged(self, batch: _Batch, sent: asyncio.Future[RecordMetadata]) -> None:
        if sent.cancelled():
            self._finish(batch, None, ProducerClosed())
        elif (exc := sent.exception()) is not None:
            self._finish(batch, None, exc)
        else:
            self._finish(batch, sent.result(), None)

    def _finish(self, batch: _Batch, meta: RecordMetadata | None, exc: BaseException | None) -> None:
        """Resolve every record of ``batch`` (before any flush waiting for it wakes up), free its room.
        ``meta`` and ``exc`` both None: the client sent nothing (a batch left empty by a failed append)."""
        if batch not in self._unfinished:
            return
        futures = batch.futures
        count = len(futures)
        if meta is not None:
            topic, partition, tp, base = meta.topic, meta.partition, meta.topic_partition, meta.offset
            broker_ts, ts_type, log_start = meta.timestamp, meta.timestamp_type, meta.log_start_offset
            # broker timestamp -1: CreateTime, each record keeps its own; else the broker's (LogAppendTime)
            timestamps = batch.timestamps if broker_ts == -1 else itertools.repeat(broker_ts)
            for offset, future, ts in zip(itertools.count(base), futures, timestamps):
                if not future.done():  # a caller may have cancelled its future
                    future.set_result(_metadata((topic, partition, tp, offset, ts, ts_type, log_start)))
            self._produced(batch.topic).inc(count)
            self._metrics.observe_produce_latency(time.perf_counter() - batch.created, count)
        elif exc is not None:
            for future in futures:
                if not future.done():
                    future.set_exception(copy.copy(exc))  # one traceback per record, as aiokafka does
                    future.exception()  # counted and logged here; a caller that awaits still gets it
            self._failed(batch.topic, count, repr(exc))
        self._unfinished.discard(batch)
        self._outstanding -= count
        batch.futures, batch.timestamps = [], []
        if batch.waiter is not None and not batch.waiter.done():
            batch.waiter.set_result(None)
        while self._room and self._outstanding < self._max_in_flight:
            waiter = self._room.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _failed(self, topic: str, count: int, why: str) -> None:
        self.failures += count
        self._produce_errors(topic).inc(count)
        self._problems.warning(f"produce:{topic}", "producing %d record(s) to %s failed: %s", count, topic, why)

    # ------------------------------------------------------------------ flushing

    async def flush(self) -> int:
        """Wait until every record sent before this call is acknowledged or failed (records sent while it
        waits are not waited for); returns the failures seen so far."""
        if self._unfinished:
            assert self._loop is not None
            self._close_all()
            waiters = []
            for batch in self._unfinished:
                if batch.waiter is None:
                    batch.waiter = self._loop.create_future()
                waiters.append(batch.waiter)
            await asyncio.wait(waiters)
        return self.failures

    async def stop(self) -> None:
        """Flush, then close the connection."""
        try:
            if self._loop is not None:
                await self.flush()
        finally:
            self._closed = True
            if self._submitter is not None:
                self._submitter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._submitter
                self._submitter = None
            if self._loop is not None:
                with contextlib.suppress(ValueError, KeyError):
                    self._producer.client.cluster.remove_listener(self._metadata_changed)
            self._close_all()
            self._routes.clear()  # from now on send() takes the slow path, which raises ProducerClosed
            for batch in list(self._ready):
                self._finish(batch, None, ProducerClosed())
            self._ready.clear()
            await self._producer.stop()


class DeadLetters:
    """Writes bad input to ``fw.dlq`` with its raw bytes; the reason and origin travel in headers."""

    def __init__(self, producer: Producer, topic: str, metrics: Metrics, source: str) -> None:
        self._producer = producer
        self._topic = topic
        self._metrics = metrics
        self._source = source

    async def send(self, raw: bytes | str, kind: str, detail: str, *, venue: str = "",
                   endpoint: str = "", recv_ts: int | None = None, origin: str = "") -> None:
        """Dead-letter one raw record."""
        value = raw.encode() if isinstance(raw, str) else raw
        headers = [
            ("fw-source", self._source.encode()),
            ("fw-kind", kind.encode()),
            ("fw-reason", detail[:500].encode()),
        ]
        if venue:
            headers.append(("fw-venue", venue.encode()))
        if endpoint:
            headers.append(("fw-endpoint", endpoint[:500].encode()))
        if recv_ts is not None:
            headers.append(("fw-recv-ts", str(recv_ts).encode()))
        if origin:
            headers.append(("fw-origin", origin[:200].encode()))
        self._metrics.dead_letters.labels(self._source, kind).inc()
        await self._producer.send(self._topic, value, key=(venue or self._source).encode(), headers=headers)


async def caught_up(consumer: AIOKafkaConsumer) -> bool:
    """True when the consumer's position is at the log end of every assigned partition.

    Uses ``highwater`` from the last fetch, not ``end_offsets`` (which the embedded broker answers with
    the last batch's base offset + 1, see ENVIRONMENT.md). A partition whose high-water mark is not known
    yet counts as not caught up.
    """
    assignment = consumer.assignment()
    if not assignment:
        return False
    for tp in assignment:
        highwater = consumer.highwater(tp)
        if highwater is None or await consumer.position(tp) < highwater:
            return False
    return True


async def consumer_lag(consumer: AIOKafkaConsumer, *, ask_broker: bool = False) -> int:
    """Records between the position and the log end, summed over the assigned partitions.

    The log end is the high-water mark the consumer's last fetch reported (see :func:`caught_up` for why
    not ``end_offsets``); a partition no fetch has answered for yet counts 0. ``ask_broker`` also asks the
    broker for ``end_offsets`` and takes the larger: the embedded broker answers them with the last batch's
    base offset + 1, short of the end but past the position whenever a whole batch is unread, which is
    what tells a consumer whose fetches all come back empty that it is behind (flushwatch.fetchwait)."""
    assignment = list(consumer.assignment())
    if not assignment:
        return 0
    ends = await consumer.end_offsets(assignment) if ask_broker else {}
    lag = 0
    for tp in assignment:
        end = max(ends.get(tp) or 0, consumer.highwater(tp) or 0)
        if end:
            lag += max(0, end - await consumer.position(tp))
    return lag


class DrainGate:
    """When a consumer stage may finish a drain (the end of a replay): the drain was requested, the
    stage consumed at least what the stage before it produced, it is at the log end of every partition,
    and that held for ``settle_s``. If the expected count never arrives (a produce failed upstream), it
    gives up after ``give_up_s`` at the log end, with a warning, rather than hang."""

    def __init__(self, name: str, settle_s: float = 0.3, give_up_s: float = 15.0) -> None:
        self.name = name
        self.requested = asyncio.Event()
        self.expect = 0
        self._settle_s = settle_s
        self._give_up_s = give_up_s
        self._since: float | None = None

    def request(self, expect: int = 0) -> None:
        """Ask the stage to finish once it has consumed ``expect`` records and reached the log end."""
        self.expect = expect
        self.requested.set()

    async def finished(self, consumer: AIOKafkaConsumer, consumed: int, got_records: bool) -> bool:
        """Call once per poll; True when the stage should finish now."""
        if not self.requested.is_set() or got_records or not await caught_up(consumer):
            self._since = None
            return False
        now = time.monotonic()
        if self._since is None:
            self._since = now
        waited = now - self._since
        if consumed >= self.expect:
            return waited >= self._settle_s
        if waited >= self._give_up_s:
            log.warning("%s drain: consumed %d of %d expected records; finishing anyway", self.name,
                        consumed, self.expect)
            return True
        return False
