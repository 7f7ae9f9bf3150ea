"""Kafka plumbing shared by every role: client settings, topic creation, a producer that never drops
silently, and the dead-letter writer.

aiokafka's ``send()`` returns a future per record; fire-and-forget code loses errors (cryptofeed's Kafka
backend logs and drops). :class:`Producer` keeps every in-flight future in a bounded set, counts failures,
and :meth:`Producer.flush` waits for all of them, so the commit order "produce, then flush, then commit
offsets" actually holds. Idempotence and transactions are not used: the embedded broker cannot do them
with aiokafka (ENVIRONMENT.md); duplicates are handled by construction downstream (alert ids).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from flushwatch.config import KafkaConfig
from flushwatch.logs import RateLimitedLog
from flushwatch.metrics import Metrics

__all__ = ["DeadLetters", "Producer", "client_kwargs", "create_topics", "make_consumer"]

log = logging.getLogger("flushwatch.kafka")


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
            log.info("created topics %s with %d partitions", ", ".join(missing), cfg.partitions)
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


class Producer:
    """An aiokafka producer whose every send is accounted for until :meth:`flush` confirms it."""

    def __init__(self, cfg: KafkaConfig, metrics: Metrics, bootstrap: str | None = None,
                 client_suffix: str = "producer", max_in_flight: int = 20_000) -> None:
        self._producer = AIOKafkaProducer(
            **client_kwargs(cfg, bootstrap),
            client_id=f"{cfg.client_id}-{client_suffix}",
            acks="all",
            linger_ms=cfg.linger_ms,
            max_batch_size=256 * 1024,
            max_request_size=16 * 1024 * 1024,
            enable_idempotence=False,
        )
        self._metrics = metrics
        self._in_flight: set[asyncio.Future[Any]] = set()
        self._room = asyncio.Semaphore(max_in_flight)
        self._problems = RateLimitedLog(log)
        self.failures = 0

    async def start(self) -> None:
        """Connect to the cluster."""
        await self._producer.start()

    async def send(self, topic: str, value: bytes, key: bytes | None = None,
                   headers: list[tuple[str, bytes]] | None = None, timestamp_ms: int | None = None,
                   partition: int | None = None) -> asyncio.Future[Any]:
        """Queue one record; returns the future of its RecordMetadata. Waits (backpressure) when too many
        are in flight or the buffer is full."""
        await self._room.acquire()
        started = time.perf_counter()
        try:
            future = await self._producer.send(topic, value=value, key=key, headers=headers,
                                               timestamp_ms=timestamp_ms, partition=partition)
        except Exception:
            self._room.release()
            self._failed(topic, "send")
            raise
        self._in_flight.add(future)
        future.add_done_callback(lambda f: self._done(f, topic, started))
        return future  # type: ignore[no-any-return]

    def _done(self, future: asyncio.Future[Any], topic: str, started: float) -> None:
        self._in_flight.discard(future)
        self._room.release()
        if future.cancelled() or future.exception() is not None:
            self._failed(topic, repr(future.exception()) if not future.cancelled() else "cancelled")
            return
        self._metrics.produced.labels(topic).inc()
        self._metrics.produce_latency.observe(time.perf_counter() - started)

    def _failed(self, topic: str, why: str) -> None:
        self.failures += 1
        self._metrics.produce_errors.labels(topic).inc()
        self._problems.warning(f"produce:{topic}", "producing to %s failed: %s", topic, why)

    async def flush(self) -> int:
        """Wait until every queued record is acknowledged or failed; returns the failures seen so far."""
        await self._producer.flush()
        if self._in_flight:
            await asyncio.gather(*list(self._in_flight), return_exceptions=True)
        return self.failures

    async def stop(self) -> None:
        """Flush, then close the connection."""
        try:
            await self.flush()
        finally:
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
