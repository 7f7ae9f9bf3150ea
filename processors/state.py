"""Detector state that survives crashes, deploys and rebalances: a changelog topic plus alert read-back.

One :class:`PartitionState` per (consumer group, partition index) holds the detectors' snapshots, the
next offset to read on each market topic of that partition, and where ``fw.alerts`` stood. It is written
to the compacted changelog topic (``fw.processor_state``) into the *same partition index*, keyed by
``<group>/<partition>``, so restoring a partition reads one changelog partition, newest value wins.

Why a read-back as well: between the last snapshot and a crash the processor may already have produced
alerts. After a restore it re-processes those records and would produce them again; instead it reads
``fw.alerts`` of its partition from the offset recorded in the snapshot and suppresses every ``alert_id``
it finds there. Alert ids are deterministic per episode and stage, so "already on the topic" is exact.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from flushwatch.errors import CodecError
from flushwatch.kafka import caught_up

__all__ = ["PartitionState", "StateReader", "state_key"]

log = logging.getLogger("flushwatch.state")

STATE_VERSION = 1


def state_key(group_id: str, partition: int) -> bytes:
    """Changelog key of one partition's state."""
    return f"{group_id}/{partition}".encode()


@dataclass(slots=True)
class PartitionState:
    """What restores one partition: detector snapshots and the offsets they correspond to."""

    partition: int
    offsets: dict[str, int] = field(default_factory=dict)
    alerts_next: int = 0
    detectors: dict[str, dict[str, Any]] = field(default_factory=dict)

    def encode(self) -> bytes:
        """The changelog record value."""
        return orjson.dumps({
            "version": STATE_VERSION, "partition": self.partition, "offsets": self.offsets,
            "alerts_next": self.alerts_next, "detectors": self.detectors,
        })

    @classmethod
    def decode(cls, raw: bytes) -> PartitionState:
        """Parse a changelog record value; raises CodecError when it is not a state of this version."""
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise CodecError("bad_state", str(exc)[:200]) from None
        if not isinstance(obj, dict) or obj.get("version") != STATE_VERSION:
            raise CodecError("bad_state", "not a processor state of version 1")
        return cls(partition=int(obj["partition"]), offsets={str(k): int(v) for k, v in obj["offsets"].items()},
                   alerts_next=int(obj["alerts_next"]), detectors=dict(obj["detectors"]))


class StateReader:
    """Reads a changelog partition or an alert partition to its end with manual assignment (no group),
    so a restore never waits for a group join. The partition is unassigned again after each read: an
    assigned partition keeps the consumer's fetcher polling it (a fetch every ``fetch_max_wait_ms``) for
    as long as the processor runs, for records nobody reads."""

    def __init__(self, consumer: AIOKafkaConsumer, timeout_s: float = 30.0) -> None:
        self._consumer = consumer
        self._timeout_s = timeout_s

    async def _read_to_end(self, tp: TopicPartition, start: int | None) -> list[tuple[bytes | None, bytes]]:
        consumer = self._consumer
        consumer.assign([tp])
        try:
            if start is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, start)
            out: list[tuple[bytes | None, bytes]] = []
            async with asyncio.timeout(self._timeout_s):
                while True:
                    batch = await consumer.getmany(tp, timeout_ms=50, max_records=5000)
                    for record in batch.get(tp, []):
                        out.append((record.key, record.value or b""))
                    if not batch and await caught_up(consumer):
                        return out
        finally:
            consumer.unsubscribe()

    async def load_state(self, topic: str, group_id: str, partition: int) -> PartitionState | None:
        """The newest state of ``partition`` for ``group_id``, or None when there is none."""
        key = state_key(group_id, partition)
        latest: PartitionState | None = None
        for record_key, value in await self._read_to_end(TopicPartition(topic, partition), None):
            if record_key != key:
                continue
            try:
                latest = PartitionState.decode(value)
            except CodecError as exc:
                log.warning("ignoring a bad state record for %s: %s", key.decode(), exc)
        return latest

    async def alert_ids_since(self, topic: str, partition: int, offset: int) -> set[str]:
        """The ids of every alert on ``topic``/``partition`` from ``offset`` on."""
        ids: set[str] = set()
        for _key, value in await self._read_to_end(TopicPartition(topic, partition), offset):
            try:
                obj = orjson.loads(value)
            except orjson.JSONDecodeError:
                continue
            if isinstance(obj, dict) and isinstance(obj.get("alert_id"), str):
                ids.add(obj["alert_id"])
        return ids
