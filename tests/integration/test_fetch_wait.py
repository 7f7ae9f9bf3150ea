"""``FetchWait`` against a real embedded broker that is too slow for the consumer's fetch wait.

The broker is this module's own (not the session's): the thousands of batches that make it slow would slow
every other test's fetches too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from flushwatch.broker import EmbeddedBroker
from flushwatch.fetchwait import FetchWait

TOPIC = "slow"
#: one record per batch: the broker's fetch cost grows with the batches of the partition; 20,000 made a
#: 5 ms wait come back empty here, so a 1 ms wait has a wide margin
BATCHES = 20_000
#: records a test reads to see them flowing
READ = 200


@pytest.fixture(scope="module")
def slow_broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as broker:
        asyncio.run(_fill(broker.bootstrap))
        yield broker


async def _fill(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(TOPIC, 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    try:
        pending = []
        for i in range(BATCHES):
            batch = producer.create_batch()
            batch.append(key=None, value=str(i).encode(), timestamp=None)
            batch.close()
            pending.append(await producer.send_batch(batch, TOPIC, partition=0))
            if len(pending) >= 1_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def _consumer(bootstrap: str, wait_ms: int) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_wait_ms=wait_ms)
    await consumer.start()
    consumer.assign([TopicPartition(TOPIC, 0)])
    return consumer


async def _consume_checking(consumer: AIOKafkaConsumer, fetch_wait: FetchWait, until: int,
                            timeout_s: float) -> int:
    """Poll as the processor does, with a check every 0.2 s; returns the records consumed."""
    consumed = since_check = empty = 0
    last_check = time.monotonic()
    async with asyncio.timeout(timeout_s):
        while consumed < until:
            batch = await consumer.getmany(timeout_ms=max(100, 2 * fetch_wait.wait_ms))  # as the processor
            got = sum(len(records) for records in batch.values())
            consumed += got
            since_check += got
            empty += not batch
            if time.monotonic() - last_check >= 0.2:
                await fetch_wait.check(since_check, empty)
                since_check, empty, last_check = 0, 0, time.monotonic()
    return consumed


async def test_a_starved_consumer_gets_a_longer_wait_and_records_flow_again(slow_broker):
    consumer = await _consumer(slow_broker.bootstrap, wait_ms=1)
    try:
        # the premise: with a 1 ms wait this broker answers every fetch with nothing
        assert await _starved_for(consumer, seconds=1.0)
        fetch_wait = FetchWait(consumer, 1, patience=2)
        # a trickle counts as starved: 1 record per check would take far longer than 600 checks to read
        # the 20,000 waiting
        await fetch_wait.check(1, 2)
        assert fetch_wait.raised == 0  # patience: one such check is not enough
        await fetch_wait.check(1, 2)
        assert fetch_wait.raised == 1 and fetch_wait.wait_ms == 2
        # records flow again (each fetch still lists the whole partition: reading all of it takes a while)
        assert await _consume_checking(consumer, fetch_wait, until=READ, timeout_s=60) >= READ
        assert fetch_wait.raised >= 1 and fetch_wait.wait_ms >= 2
        assert consumer._fetcher._fetch_max_wait_ms == fetch_wait.wait_ms  # what aiokafka now asks for
    finally:
        await consumer.stop()


async def test_a_consumer_that_gets_records_or_is_at_the_end_keeps_its_wait(slow_broker):
    consumer = await _consumer(slow_broker.bootstrap, wait_ms=50)  # above what this broker needs
    try:
        fetch_wait = FetchWait(consumer, 50, patience=1)
        assert await _consume_checking(consumer, fetch_wait, until=READ, timeout_s=60) >= READ
        # a backlog that the records arriving read in time: polls that found nothing do not count
        await fetch_wait.check(1_000, 5)
        consumer.seek(TopicPartition(TOPIC, 0), BATCHES)
        for _ in range(3):  # at the log end: polls find nothing, and nothing waits either
            assert not await consumer.getmany(timeout_ms=300)
            await fetch_wait.check(0, 1)
        assert fetch_wait.raised == 0 and fetch_wait.wait_ms == 50
        assert consumer._fetcher._fetch_max_wait_ms == 50
    finally:
        await consumer.stop()


async def _starved_for(consumer: AIOKafkaConsumer, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await consumer.getmany(timeout_ms=100):
            return False
    return True


async def test_the_wait_is_the_catch_up_one_while_behind_and_the_live_one_at_the_end(slow_broker):
    consumer = await _consumer(slow_broker.bootstrap, wait_ms=10)
    try:
        fetch_wait = FetchWait(consumer, 10, 200)
        await fetch_wait.check(100, 0)  # 20,000 records wait, far more than the 100 of the last tick
        assert fetch_wait.wait_ms == 200 and consumer._fetcher._fetch_max_wait_ms == 200
        consumer.seek(TopicPartition(TOPIC, 0), BATCHES - 500)
        await fetch_wait.check(100, 0)  # 500 wait: fewer than 1,000, keeping up
        assert fetch_wait.wait_ms == 10 and consumer._fetcher._fetch_max_wait_ms == 10
        assert fetch_wait.raised == 0
    finally:
        await consumer.stop()
