"""``consumer_lag`` (behind ``flushwatch_consumer_lag``) against the real embedded broker."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition

from flushwatch.kafka import consumer_lag, create_topics

from .helpers import kafka_config, produce


async def test_lag_counts_records_behind_the_log_end_and_reaches_zero(broker, topic_prefix):
    config = kafka_config(broker.bootstrap, topic_prefix)
    topic = f"{topic_prefix}lagged"
    await create_topics(config.kafka.model_copy(update={"partitions": 1}), [topic])
    await produce(broker.bootstrap, topic, [(b"BTC", str(i).encode()) for i in range(50)])

    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_wait_ms=20)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        assert await consumer_lag(consumer) == 0  # no fetch yet: the log end is unknown, nothing is claimed
        # asking the broker: the embedded one answers the last batch's base offset + 1 (at most 50)
        assert 0 < await consumer_lag(consumer, ask_broker=True) <= 50
        consumed = 0
        async with asyncio.timeout(15):
            while consumed == 0:
                consumed += sum(len(r) for r in (await consumer.getmany(tp, timeout_ms=100, max_records=10)).values())
        assert consumed == 10
        assert await consumer_lag(consumer) == 40
        async with asyncio.timeout(15):
            while consumed < 50:
                consumed += sum(len(r) for r in (await consumer.getmany(tp, timeout_ms=100)).values())
        assert await consumer_lag(consumer) == 0
    finally:
        await consumer.stop()
