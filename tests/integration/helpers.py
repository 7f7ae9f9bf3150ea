"""Helpers for tests against the real embedded broker."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from flushwatch.config import Config, load_config


def kafka_config(bootstrap: str, prefix: str, **sections: dict[str, Any]) -> Config:
    """A config pointing at the test broker, with fast group joins and no metrics port."""
    config = load_config(environ={})
    kafka = config.kafka.model_copy(update={
        "bootstrap_servers": [bootstrap], "topic_prefix": prefix, "partitions": 3,
        "session_timeout_ms": 6000, "heartbeat_interval_ms": 1000, "fetch_max_wait_ms": 20,
    })
    update: dict[str, Any] = {"kafka": kafka, "metrics": config.metrics.model_copy(update={"enabled": False})}
    for name, values in sections.items():
        update[name] = getattr(config, name).model_copy(update=values)
    return config.model_copy(update=update)


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
    """Produce (key, value) records and wait for all acknowledgements."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=value, key=key) for key, value in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def read_all(bootstrap: str, topic: str, expect: int, timeout_s: float = 15.0) -> list[Any]:
    """Read a topic from the beginning with manual assignment until ``expect`` records arrived."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False, fetch_max_wait_ms=20,
                                client_id=f"reader-{uuid.uuid4().hex[:6]}")
    await consumer.start()
    try:
        partitions = None
        async with asyncio.timeout(timeout_s):
            while not partitions:
                partitions = consumer.partitions_for_topic(topic)
                if not partitions:
                    await consumer._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[Any] = []
        async with asyncio.timeout(timeout_s):
            while len(out) < expect:
                batch = await consumer.getmany(timeout_ms=100)
                for records in batch.values():
                    out.extend(records)
        # one more short poll: more than expected is a failure the caller should see
        batch = await consumer.getmany(timeout_ms=200)
        for records in batch.values():
            out.extend(records)
        return out
    finally:
        await consumer.stop()


async def committed_total(bootstrap: str, config: Config, topic: str) -> int:
    """Offsets the processor group has committed on ``topic``, summed over its partitions."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=config.processor.group_id,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        total = 0
        for p in range(config.kafka.partitions):
            total += await consumer.committed(TopicPartition(topic, p)) or 0
        return total
    finally:
        await consumer.stop()
