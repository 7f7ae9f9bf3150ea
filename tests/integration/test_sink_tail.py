"""``tail_alerts`` and the example downstream consumer, against the real embedded broker."""

from __future__ import annotations

import asyncio
import importlib.util
import io
from pathlib import Path
from types import ModuleType

import orjson

from flushwatch.codec import encode_alert
from flushwatch.kafka import create_topics
from flushwatch.topics import Topics
from sinks.tail import tail_alerts

from .helpers import kafka_config, produce
from .test_sink_support import assert_valid_alert, make_alert

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "consume_alerts.py"


async def test_tail_from_beginning_prints_everything_then_stops(broker, topic_prefix):
    config = kafka_config(broker.bootstrap, topic_prefix)
    topics = Topics(topic_prefix)
    await create_topics(config.kafka, topics.all)
    alerts = [make_alert(i, base=b) for i, b in enumerate(["BTC", "ETH", "SOL", "BTC"])]
    records = [(a.base.encode(), encode_alert(a)) for a in alerts] + [(b"BTC", b"not json")]
    await produce(broker.bootstrap, topics.alerts, records)

    text = io.StringIO()
    async with asyncio.timeout(20):
        printed = await tail_alerts(config, None, "text", from_beginning=True, follow=False, out=text)
    lines = text.getvalue().splitlines()
    assert printed == 5
    assert sum(1 for line in lines if line.startswith("# undecodable record at ")) == 1
    shown = [line for line in lines if not line.startswith("#")]
    assert sorted(line.rsplit(" ", 1)[1] for line in shown) == sorted(a.alert_id for a in alerts)
    btc = [line for line in shown if "  BTC  " in line]
    assert [line.rsplit(" ", 1)[1] for line in btc] == ["id-0", "id-3"]  # per-asset order
    assert all("UTC" not in line and "Z  " in line and "[binance]" in line for line in shown)

    as_json = io.StringIO()
    async with asyncio.timeout(20):
        await tail_alerts(config, broker.bootstrap, "json", from_beginning=True, follow=False, out=as_json)
    objects = [orjson.loads(line) for line in as_json.getvalue().splitlines()]
    assert sorted(o["alert_id"] for o in objects) == sorted(a.alert_id for a in alerts)
    for obj in objects:
        assert_valid_alert(obj)


async def test_tail_follow_from_the_end_shows_only_new_alerts(broker, topic_prefix):
    config = kafka_config(broker.bootstrap, topic_prefix)
    topics = Topics(topic_prefix)
    await create_topics(config.kafka, topics.all)
    old = [make_alert(i) for i in range(3)]
    await produce(broker.bootstrap, topics.alerts, [(a.base.encode(), encode_alert(a)) for a in old])
    out = io.StringIO()
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(tail_alerts(config, None, "json", from_beginning=False, follow=True, out=out,
                                           stop=stop, limit=2, ready=ready))
    # produce the new ones only once the tail knows where the log ended when it started
    async with asyncio.timeout(20):
        await ready.wait()
    new = [make_alert(i, base="ETH") for i in range(10, 12)]
    await produce(broker.bootstrap, topics.alerts, [(a.base.encode(), encode_alert(a)) for a in new])
    try:
        async with asyncio.timeout(20):
            printed = await task
    finally:
        stop.set()
        if not task.done():
            await task
    assert printed == 2
    assert [orjson.loads(line)["alert_id"] for line in out.getvalue().splitlines()] == ["id-10", "id-11"]


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("consume_alerts_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_example_consumer_handles_each_alert_once(broker, topic_prefix):
    config = kafka_config(broker.bootstrap, topic_prefix)
    topics = Topics(topic_prefix)
    await create_topics(config.kafka, topics.all)
    alerts = [make_alert(i, base=b) for i, b in enumerate(["BTC", "ETH", "BTC"])]
    records = [(a.base.encode(), encode_alert(a)) for a in alerts]
    future = make_alert(9)
    records += [records[0], (b"BTC", encode_alert(future).replace(b'"schema_version":1', b'"schema_version":2'))]
    await produce(broker.bootstrap, topics.alerts, records)
    example = _example()
    got: list[dict[str, object]] = []
    async with asyncio.timeout(30):
        handled = await example.consume(broker.bootstrap, f"{topic_prefix}example", topics.alerts, got.append,
                                        max_alerts=3)
    assert handled == 3
    assert sorted(str(a["alert_id"]) for a in got) == ["id-0", "id-1", "id-2"]
