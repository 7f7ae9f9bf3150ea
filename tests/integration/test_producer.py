"""The product's Producer (batch path) against the real embedded broker: placement, order, metadata,
flush, errors and backpressure."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, UnknownTopicOrPartitionError

from flushwatch.broker import EmbeddedBroker
from flushwatch.config import Config
from flushwatch.kafka import MAX_REQUEST_BYTES, DeadLetters, Producer, create_topics
from flushwatch.metrics import Metrics

from .helpers import kafka_config, read_all

KEYS = [b"BTC", b"ETH", b"SOL", b"DOGE", b"XRP", b"PEPE", b"binance", b"ingest"]


async def _topic(broker: EmbeddedBroker, prefix: str, name: str = "data") -> tuple[str, Config]:
    config = kafka_config(broker.bootstrap, prefix)
    topic = f"{prefix}{name}"
    await create_topics(config.kafka, [topic])
    return topic, config


async def _partitions_chosen_by_aiokafka(bootstrap: str, topic: str) -> dict[bytes, int]:
    """Where aiokafka's own per-record ``send()`` (the path the Producer used before) puts each key."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=b"probe", key=key) for key in KEYS]
        return {key: (await future).partition for key, future in zip(KEYS, futures, strict=True)}
    finally:
        await producer.stop()


async def test_keyed_records_keep_partition_and_order_across_many_batches(broker, topic_prefix):
    topic, config = await _topic(broker, topic_prefix)
    reference, _ = await _topic(broker, topic_prefix, "reference")
    expected_partition = await _partitions_chosen_by_aiokafka(broker.bootstrap, reference)
    assert len(set(expected_partition.values())) > 1  # the keys really spread over the partitions

    metrics = Metrics()
    # small batches: every partition goes through many full batches, and linger closes others
    producer = Producer(config.kafka, metrics, max_batch_bytes=1024, max_in_flight=500)
    await producer.start()
    futures = []
    try:
        for seq in range(600):
            if seq == 300:  # a metadata refresh mid-stream: open batches go first, then records are re-routed
                assert await producer._producer.client.force_metadata_update()
            for key in KEYS:
                value = f"{key.decode()}:{seq}".encode()
                futures.append((key, value, await producer.send(topic, value, key=key,
                                                                 timestamp_ms=1_700_000_000_000 + seq)))
        assert await producer.flush() == 0
    finally:
        await producer.stop()

    assert all(future.done() for _k, _v, future in futures)
    records = await read_all(broker.bootstrap, topic, expect=len(futures))
    assert len(records) == len(futures)
    by_value = {record.value: record for record in records}
    for key, value, future in futures:
        meta = future.result()
        record = by_value[value]
        assert (meta.topic, meta.partition, meta.offset) == (topic, record.partition, record.offset)
        assert meta.partition == expected_partition[key]  # exactly where aiokafka's send() put this key
        assert meta.timestamp == record.timestamp == 1_700_000_000_000 + int(value.split(b":")[1])
        assert record.key == key
    # per key: one partition, every record in the order it was sent
    for key in KEYS:
        mine = sorted((r for r in records if r.key == key), key=lambda r: r.offset)
        assert {r.partition for r in mine} == {expected_partition[key]}
        assert [int(r.value.split(b":")[1]) for r in mine] == list(range(600))
    assert metrics.registry.get_sample_value("flushwatch_produced_total", {"topic": topic}) == len(futures)
    assert metrics.registry.get_sample_value("flushwatch_produce_latency_seconds_count") == len(futures)


async def test_explicit_partition_headers_and_unkeyed_records(broker, topic_prefix):
    topic, config = await _topic(broker, topic_prefix)
    producer = Producer(config.kafka, Metrics())
    await producer.start()
    try:
        pinned = [await producer.send(topic, f"p{i}".encode(), key=b"BTC", partition=2,
                                      headers=[("type", b"trade"), ("n", str(i).encode())]) for i in range(50)]
        unkeyed = await producer.send(topic, b"no key")
        await producer.flush()
    finally:
        await producer.stop()
    assert [f.result().partition for f in pinned] == [2] * 50
    offsets = [f.result().offset for f in pinned]
    assert offsets == sorted(offsets) and len(set(offsets)) == 50
    records = await read_all(broker.bootstrap, topic, expect=51)
    by_value = {r.value: r for r in records}
    assert by_value[b"p7"].headers == (("type", b"trade"), ("n", b"7"))
    assert by_value[b"no key"].key is None
    assert by_value[b"no key"].partition == unkeyed.result().partition


async def test_records_are_delivered_after_linger_without_a_flush(broker, topic_prefix):
    topic, config = await _topic(broker, topic_prefix)
    producer = Producer(config.kafka, Metrics())
    await producer.start()
    try:
        future = await producer.send(topic, b"alone", key=b"ETH")
        async with asyncio.timeout(10):
            meta = await future  # nobody flushes: the linger timer has to send the batch
        assert meta.topic == topic and meta.offset >= 0
        assert producer.in_flight == 0
    finally:
        await producer.stop()


async def test_an_immediate_record_goes_without_waiting_for_the_linger(broker, topic_prefix):
    topic, config = await _topic(broker, topic_prefix)
    # a linger far longer than the test: only ``immediate`` can get a record out before stop() flushes
    producer = Producer(config.kafka.model_copy(update={"linger_ms": 600_000}), Metrics())
    await producer.start()
    try:
        # other partitions: an immediate record takes its own partition's open batch with it, no other
        lingering = await producer.send(topic, b"market", key=b"BTC", partition=0)
        alert = await producer.send(topic, b"alert", key=b"ETH", partition=1, immediate=True)
        async with asyncio.timeout(10):
            meta = await alert
        assert meta.topic == topic and meta.offset >= 0
        assert not lingering.done()  # still in its open batch, waiting for the linger
        assert producer.in_flight == 1
        await producer.flush()
        assert lingering.result().offset >= 0
    finally:
        await producer.stop()


async def test_flush_waits_for_records_sent_before_it_and_callbacks_ran(broker, topic_prefix):
    topic, config = await _topic(broker, topic_prefix)
    producer = Producer(config.kafka, Metrics())
    await producer.start()
    seen: list[int] = []
    try:
        assert await producer.flush() == 0  # nothing outstanding: returns at once
        futures = [await producer.send(topic, str(i).encode(), key=b"SOL") for i in range(2_000)]
        for future in futures:
            future.add_done_callback(lambda f: seen.append(f.result().offset))
        await producer.flush()
        # every record sent before flush() is acknowledged, and done-callbacks registered before it ran
        assert all(future.done() and future.exception() is None for future in futures)
        assert len(seen) == 2_000
        assert producer.in_flight == 0
    finally:
        await producer.stop()


async def test_in_flight_records_are_bounded_and_send_waits_for_room(broker, topic_prefix):
    topic, config = await _topic(broker, topic_prefix)
    producer = Producer(config.kafka, Metrics(), max_in_flight=5)
    await producer.start()
    try:
        first = [await producer.send(topic, f"a{i}".encode(), key=b"XRP") for i in range(5)]
        assert producer.in_flight == 5
        assert not any(f.done() for f in first)
        sixth = asyncio.create_task(producer.send(topic, b"a5", key=b"XRP"))
        async with asyncio.timeout(10):
            later = await sixth
        # the sixth record was only taken once an acknowledgement freed room
        assert any(f.done() for f in first)
        assert producer.in_flight <= 5
        peak = 0
        for i in range(200):
            await producer.send(topic, f"b{i}".encode(), key=KEYS[i % len(KEYS)])
            peak = max(peak, producer.in_flight)
        assert peak <= 5
        await producer.flush()
        assert later.done() and producer.in_flight == 0
    finally:
        await producer.stop()
    assert len(await read_all(broker.bootstrap, topic, expect=206)) == 206


async def test_records_that_cannot_be_queued_raise_and_are_counted(broker, topic_prefix):
    topic, config = await _topic(broker, topic_prefix)
    metrics = Metrics()
    producer = Producer(config.kafka, metrics)
    await producer.start()
    try:
        with pytest.raises(UnknownTopicOrPartitionError):
            await producer.send(topic, b"x", key=b"BTC", partition=99)
        with pytest.raises(MessageSizeTooLargeError):
            await producer.send(topic, b"x" * (MAX_REQUEST_BYTES + 1), key=b"BTC")
        ok = await producer.send(topic, b"fine", key=b"BTC")  # the producer is still usable
        assert await producer.flush() == 2
        assert ok.result().topic == topic
    finally:
        await producer.stop()
    assert producer.failures == 2
    assert metrics.registry.get_sample_value("flushwatch_produce_errors_total", {"topic": topic}) == 2
    with pytest.raises(KafkaError):  # ProducerClosed
        await producer.send(topic, b"late", key=b"BTC")


async def test_delivery_failures_reach_every_record_future_and_are_counted(topic_prefix):
    with EmbeddedBroker() as own:
        topic, config = await _topic(own, topic_prefix)
        metrics = Metrics()
        producer = Producer(config.kafka, metrics, request_timeout_ms=1_500)
        await producer.start()
        try:
            delivered = await producer.send(topic, b"before", key=b"BTC")
            await producer.flush()
            assert delivered.result().offset == 0
            own.stop()  # the broker is gone: the next records can only fail
            doomed = [await producer.send(topic, f"after{i}".encode(), key=KEYS[i % 3]) for i in range(30)]
            async with asyncio.timeout(60):
                failures = await producer.flush()
            assert failures == 30
            for future in doomed:
                assert isinstance(future.exception(), KafkaError)
                with pytest.raises(KafkaError):
                    await future  # a caller awaiting its record sees the error
        finally:
            async with asyncio.timeout(60):
                await producer.stop()
        assert producer.failures == 30
        assert metrics.registry.get_sample_value("flushwatch_produce_errors_total", {"topic": topic}) == 30


async def test_dead_letters_keep_the_raw_bytes(broker, topic_prefix):
    topic, config = await _topic(broker, topic_prefix, "fw.dlq")
    metrics = Metrics()
    producer = Producer(config.kafka, metrics)
    await producer.start()
    raw = b"\xff\xfe not utf-8 \x00" + uuid.uuid4().bytes
    try:
        await DeadLetters(producer, topic, metrics, "ingest").send(raw, "malformed_json", "bad", venue="binance",
                                                                    endpoint="ws://x", recv_ts=5, origin="ingest")
        await producer.flush()
    finally:
        await producer.stop()
    [record] = await read_all(broker.bootstrap, topic, expect=1)
    assert record.value == raw
    assert record.key == b"binance"
    assert dict(record.headers)["fw-kind"] == b"malformed_json"
    assert metrics.registry.get_sample_value("flushwatch_dead_letters_total",
                                             {"source": "ingest", "kind": "malformed_json"}) == 1
