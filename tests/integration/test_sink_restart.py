"""A sink service killed (SIGKILL, no goodbye) in the middle of a batch, then restarted: no alert reaches
the destination twice, none is lost.

The first service runs in a child process with a webhook target and a durable delivered-id store; it
commits nothing before it dies (a long commit interval), so the restarted service re-reads the whole
batch from the broker and must skip what was already delivered using the store alone.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from pathlib import Path

import orjson

from flushwatch.codec import encode_alert
from flushwatch.kafka import Producer, create_topics
from flushwatch.metrics import Metrics
from flushwatch.topics import Topics
from sinks.dedupe import SqliteDeliveredStore, store_path
from sinks.http import HttpClient
from sinks.service import SinkService, SinkTarget
from sinks.webhook import WebhookSink

from .helpers import kafka_config, produce
from .test_sink_support import FakeClock, RecordingServer, Reply, fast_groups, make_alert

SECRET = b"restart-secret"
ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import asyncio, sys
from flushwatch.kafka import Producer
from flushwatch.metrics import Metrics
from sinks.dedupe import SqliteDeliveredStore, store_path
from sinks.http import HttpClient
from sinks.service import SinkService, SinkTarget
from sinks.webhook import WebhookSink
from tests.integration.helpers import kafka_config
from tests.integration.test_sink_support import fast_groups

bootstrap, prefix, state_dir, url, secret = sys.argv[1:6]

async def main():
    config = fast_groups(kafka_config(bootstrap, prefix, sink={"commit_interval_s": 3600.0,
                                                               "group_id": prefix + "sink"}))
    metrics = Metrics()
    producer = Producer(config.kafka, metrics)
    await producer.start()
    sink = WebhookSink("ops", url, secret.encode(), HttpClient())
    target = SinkTarget(sink, store=SqliteDeliveredStore(store_path(state_dir, "ops")))
    await SinkService(config, metrics, [target], producer).run(asyncio.Event())

asyncio.run(main())
"""


async def test_restart_in_the_middle_of_a_batch_sends_nothing_twice(broker, topic_prefix, tmp_path):
    config = fast_groups(kafka_config(broker.bootstrap, topic_prefix, sink={"commit_interval_s": 3600.0,
                                                                              "group_id": topic_prefix + "sink"}))
    topics = Topics(topic_prefix)
    await create_topics(config.kafka, topics.all)
    alerts = [make_alert(i, base="BTC") for i in range(12)]  # one key: one partition, one ordered batch
    await produce(broker.bootstrap, topics.alerts, [(a.base.encode(), encode_alert(a)) for a in alerts])
    state_dir = tmp_path / "state"
    held = asyncio.Event()
    async with RecordingServer() as server:
        # the 6th request hangs: the child is killed while it waits for the answer
        server.script.extend([Reply()] * 5 + [Reply(503, hold=held)])
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD, broker.bootstrap, topic_prefix, str(state_dir), f"{server.url}/hook",
            SECRET.decode(), cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        try:
            await server.wait_for(6, timeout_s=30)
        finally:
            child.send_signal(signal.SIGKILL)
            _, stderr = await child.communicate()
        assert child.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
        held.set()  # the hung request is answered 503 to nobody: it was never delivered
        first_run = [orjson.loads(s.body)["alert_id"] for s in server.accepted]
        assert first_run == [f"id-{i}" for i in range(5)]

        metrics = Metrics()
        producer = Producer(config.kafka, metrics)
        await producer.start()
        store = SqliteDeliveredStore(store_path(state_dir, "ops"))
        target = SinkTarget(WebhookSink("ops", f"{server.url}/hook", SECRET, HttpClient()), store=store)
        service = SinkService(config, metrics, [target], producer, clock=FakeClock())
        service.request_drain()
        try:
            async with asyncio.timeout(40):
                await service.run(asyncio.Event())
        finally:
            await producer.stop()

    delivered = Counter(orjson.loads(s.body)["alert_id"] for s in server.accepted)
    assert delivered == Counter(a.alert_id for a in alerts)  # each exactly once, across both runs
    assert [orjson.loads(s.body)["alert_id"] for s in server.accepted] == [a.alert_id for a in alerts]
    assert service.records == len(alerts)  # the whole batch was consumed again (nothing was committed)...
    skipped = metrics.registry.get_sample_value("flushwatch_sink_duplicates_total", {"sink": "ops"})
    assert skipped == 5  # ...and the store alone kept the first five from being sent again
