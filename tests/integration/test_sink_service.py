"""The sink service against the real embedded broker and a real local HTTP server."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections import Counter

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from flushwatch.codec import encode_alert
from flushwatch.events import Alert
from flushwatch.kafka import Producer, create_topics
from flushwatch.metrics import Metrics
from flushwatch.topics import Topics
from sinks.base import AlertSink
from sinks.dedupe import SqliteDeliveredStore
from sinks.http import HttpClient
from sinks.jsonl import JsonlSink
from sinks.policy import AlertFilter, RetryPolicy
from sinks.service import SinkService, SinkTarget
from sinks.stdout import StdoutSink
from sinks.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookSink, verify_signature

from .helpers import kafka_config, produce, read_all
from .test_sink_support import FakeClock, RecordingServer, Reply, assert_valid_alert, fast_groups, make_alert

SECRET = b"s3cret"


class Broken(AlertSink):
    name = "broken"

    async def deliver(self, alert: Alert) -> None:
        raise ConnectionError("destination down")


def alert(i: int, base: str = "BTC") -> Alert:
    return make_alert(i, base=base)


async def committed(bootstrap: str, group: str, topic: str, partitions: int = 3) -> dict[int, int | None]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                client_id=f"check-{uuid.uuid4().hex[:6]}")
    await consumer.start()
    try:
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in range(partitions)}
    finally:
        await consumer.stop()


async def run_service(config, targets, clock=None, timeout_s: float = 40.0) -> tuple[SinkService, Metrics]:
    metrics = Metrics()
    producer = Producer(config.kafka, metrics)
    await producer.start()
    service = SinkService(config, metrics, targets, producer, clock=clock or FakeClock())
    service.request_drain()
    try:
        async with asyncio.timeout(timeout_s):
            await service.run(asyncio.Event())
    finally:
        await producer.stop()
    return service, metrics


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_sink_delivers_each_alert_once_and_dead_letters_bad_input(broker, topic_prefix, tmp_path):
    config = fast_groups(kafka_config(broker.bootstrap, topic_prefix, sink={"group_id": f"{topic_prefix}sink"}))
    topics = Topics(topic_prefix)
    await create_topics(config.kafka, topics.all)
    alerts = [alert(i) for i in range(5)]
    for a in alerts:
        assert_valid_alert(a)
    records = [(a.base.encode(), encode_alert(a)) for a in alerts]
    records += [records[1], records[3], (b"BTC", b'{"alert_id": 5}')]  # redelivered twice, one bad
    await produce(broker.bootstrap, topics.alerts, records)

    text = io.StringIO()
    sinks = [StdoutSink("text", text), JsonlSink(tmp_path / "alerts.jsonl"), Broken()]
    policy = RetryPolicy(max_attempts=3)
    targets = [SinkTarget(s, retry=policy) for s in sinks]
    clock = FakeClock()
    _, metrics = await run_service(config, targets, clock)

    lines = (tmp_path / "alerts.jsonl").read_bytes().splitlines()
    assert sorted(orjson.loads(line)["alert_id"] for line in lines) == [f"id-{i}" for i in range(5)]
    assert lines == [encode_alert(a) for a in alerts]  # one partition key: order kept
    printed = text.getvalue().splitlines()
    assert len(printed) == 5
    assert printed[0].startswith("2025-01-27 16:53:00Z  WARNING   cascade_started    BTC    alert 0")
    assert sample(metrics, "flushwatch_sink_duplicates_total", sink="jsonl") == 2
    assert sample(metrics, "flushwatch_sink_delivered_total", sink="jsonl") == 5
    # the broken destination: 3 attempts per record, then the DLQ; dead-lettered ids are not remembered
    # (re-publishing them after a fix must deliver), so the two redelivered copies are tried again
    assert sample(metrics, "flushwatch_sink_failures_total", sink="broken") == 7
    assert sample(metrics, "flushwatch_sink_retries_total", sink="broken") == 14
    assert sample(metrics, "flushwatch_sink_attempt_errors_total", sink="broken", reason="error") == 21
    assert sample(metrics, "flushwatch_sink_dead_lettered_total", sink="broken", reason="error") == 7
    assert len(clock.sleeps) == 14  # every backoff went through the injected clock
    dead = await read_all(broker.bootstrap, topics.dlq, expect=8)
    kinds = sorted(dict(d.headers)["fw-kind"] for d in dead)
    assert kinds == [b"bad_field"] + [b"sink_failed"] * 7
    # every record was finished by every sink: all offsets committed
    offsets = await committed(broker.bootstrap, config.sink.group_id, topics.alerts)
    assert sum(o or 0 for o in offsets.values()) == len(records)


async def test_webhook_retries_500_and_429_with_retry_after_then_delivers_signed(broker, topic_prefix, tmp_path):
    config = fast_groups(kafka_config(broker.bootstrap, topic_prefix, sink={"group_id": f"{topic_prefix}sink"}))
    topics = Topics(topic_prefix)
    await create_topics(config.kafka, topics.all)
    alerts = [alert(i, base=b) for i, b in enumerate(["BTC", "ETH", "BTC"])]
    await produce(broker.bootstrap, topics.alerts, [(a.base.encode(), encode_alert(a)) for a in alerts])
    clock = FakeClock()
    client = HttpClient()
    async with RecordingServer() as server:
        server.script.extend([Reply(500, b"oops"), Reply(429, b"slow down", {"Retry-After": "7"})])
        sink = WebhookSink("ops", f"{server.url}/hook", SECRET, client, clock=clock)
        target = SinkTarget(sink, retry=RetryPolicy(max_attempts=5, initial_delay_s=0.5, max_delay_s=10),
                            store=SqliteDeliveredStore(tmp_path / "ops.sqlite3"))
        _, metrics = await run_service(config, [target], clock)
    assert len(server.seen) == 5
    assert [s.status for s in server.seen[:3]] == [500, 429, 200]
    assert len({s.body for s in server.seen[:3]}) == 1  # the same alert, retried
    assert sorted(orjson.loads(s.body)["alert_id"] for s in server.accepted) == ["id-0", "id-1", "id-2"]
    for seen in server.seen:
        assert verify_signature(SECRET, seen.body, seen.headers[TIMESTAMP_HEADER.lower()],
                                seen.headers[SIGNATURE_HEADER.lower()], clock.time())
        assert_valid_alert(seen.body)
    # first retry: jittered backoff around 0.5 s; second: at least the 7 s the server asked for
    assert 0.25 <= clock.sleeps[0] <= 0.5
    assert clock.sleeps[1] >= 7.0
    assert sample(metrics, "flushwatch_sink_retries_total", sink="ops") == 2
    assert sample(metrics, "flushwatch_sink_attempt_errors_total", sink="ops", reason="http_5xx") == 1
    assert sample(metrics, "flushwatch_sink_attempt_errors_total", sink="ops", reason="http_429") == 1
    assert sample(metrics, "flushwatch_sink_delivered_total", sink="ops") == 3
    assert sample(metrics, "flushwatch_sink_delivery_latency_seconds_count", sink="ops") == 3
    assert sample(metrics, "flushwatch_sink_queue_depth", sink="ops") == 0


async def test_give_up_goes_to_the_dlq_with_the_reason(broker, topic_prefix):
    config = fast_groups(kafka_config(broker.bootstrap, topic_prefix, sink={"group_id": f"{topic_prefix}sink"}))
    topics = Topics(topic_prefix)
    await create_topics(config.kafka, topics.all)
    alerts = [alert(0), alert(1)]
    await produce(broker.bootstrap, topics.alerts, [(a.base.encode(), encode_alert(a)) for a in alerts])
    clock = FakeClock()
    client = HttpClient()
    async with RecordingServer() as server:
        # alert 0: 500 every time until the budget (3 attempts) is spent; alert 1: 400, permanent
        server.script.extend([Reply(500), Reply(503, b"", {"Retry-After": "2"}), Reply(500),
                              Reply(400, b"invalid_payload")])
        sink = WebhookSink("ops", f"{server.url}/hook", SECRET, client, clock=clock)
        target = SinkTarget(sink, retry=RetryPolicy(max_attempts=3))
        _, metrics = await run_service(config, [target], clock)
    assert len(server.seen) == 4
    assert server.accepted == []
    dead = await read_all(broker.bootstrap, topics.dlq, expect=2)
    by_alert = {dict(d.headers)["fw-alert-id"]: (d.value, dict(d.headers)) for d in dead}
    value, headers = by_alert[b"id-0"]
    assert value == encode_alert(alerts[0])  # the alert's own bytes, ready to re-publish
    assert headers["fw-source"] == b"sink"
    assert headers["fw-kind"] == b"sink_failed"
    assert headers["fw-sink"] == b"ops"
    assert headers["fw-error"] == b"http_5xx"
    assert headers["fw-attempts"] == b"3"
    assert b"retry budget spent" in headers["fw-reason"]
    assert headers["fw-origin"].startswith(topics.alerts.encode() + b"/")
    value, headers = by_alert[b"id-1"]
    assert (headers["fw-error"], headers["fw-attempts"]) == (b"http_4xx", b"1")
    assert b"permanent error" in headers["fw-reason"] and b"invalid_payload" in headers["fw-reason"]
    assert sample(metrics, "flushwatch_sink_dead_lettered_total", sink="ops", reason="http_5xx") == 1
    assert sample(metrics, "flushwatch_sink_dead_lettered_total", sink="ops", reason="http_4xx") == 1
    assert sample(metrics, "flushwatch_sink_failures_total", sink="ops") == 2
    assert sample(metrics, "flushwatch_dead_letters_total", source="sink", kind="sink_failed") == 2
    assert clock.sleeps[1] >= 2.0  # the 503's Retry-After
    offsets = await committed(broker.bootstrap, config.sink.group_id, topics.alerts)
    assert sum(o or 0 for o in offsets.values()) == 2  # dead-lettered counts as finished


class Gate(AlertSink):
    """Delivers only while its gate is open; records the order."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.open = asyncio.Event()
        self.got: list[str] = []

    async def deliver(self, alert: Alert) -> None:
        await self.open.wait()
        self.got.append(alert.alert_id)


async def test_a_full_queue_pauses_the_partitions_and_filters_apply(broker, topic_prefix):
    config = fast_groups(kafka_config(broker.bootstrap, topic_prefix, sink={"group_id": f"{topic_prefix}sink"}))
    topics = Topics(topic_prefix)
    await create_topics(config.kafka, topics.all)
    alerts = [alert(i, base="BTC" if i % 2 else "ETH") for i in range(30)]
    await produce(broker.bootstrap, topics.alerts, [(a.base.encode(), encode_alert(a)) for a in alerts])
    slow, btc_only = Gate("slow"), Gate("btc")
    btc_only.open.set()
    metrics = Metrics()
    producer = Producer(config.kafka, metrics)
    await producer.start()
    targets = [SinkTarget(slow, queue_size=3), SinkTarget(btc_only, filter=AlertFilter.of(bases=["BTC"]))]
    service = SinkService(config, metrics, targets, producer, clock=FakeClock())
    service.request_drain()
    task = asyncio.create_task(service.run(asyncio.Event()))
    try:
        async with asyncio.timeout(30):
            while sample(metrics, "flushwatch_sink_paused") != 1:
                await asyncio.sleep(0.05)
            # paused: nothing more is consumed while the slow queue is full
            consumed = service.records
            depth = sample(metrics, "flushwatch_sink_queue_depth", sink="slow")
            assert depth <= 3
            await asyncio.sleep(0.5)
            assert sample(metrics, "flushwatch_sink_queue_depth", sink="slow") <= 3
            assert service.records <= consumed + 500  # at most the batch already fetched
            assert len(slow.got) == 0
            slow.open.set()
            await task
    finally:
        if not task.done():
            task.cancel()
        await producer.stop()
    assert sample(metrics, "flushwatch_sink_paused") == 0
    for base in ("BTC", "ETH"):  # per-asset order kept
        expected = [a.alert_id for a in alerts if a.base == base]
        assert [i for i in slow.got if i in expected] == expected
    assert Counter(btc_only.got) == Counter(a.alert_id for a in alerts if a.base == "BTC")
    assert sample(metrics, "flushwatch_sink_filtered_total", sink="btc") == 15
    offsets = await committed(broker.bootstrap, config.sink.group_id, topics.alerts)
    assert sum(o or 0 for o in offsets.values()) == 30
