#!/usr/bin/env python3
"""A minimal downstream consumer of flushwatch alerts (``fw.alerts``), with aiokafka and the standard library.

    pip install aiokafka
    python examples/consume_alerts.py --bootstrap 127.0.0.1:9092 --group my-risk-service

What it shows (docs/alerts.md explains each point):

- its own consumer group: every group gets every alert; members of one group share the partitions;
- manual commits after the alert was handled: at-least-once, so after a crash some alerts come again;
- de-duplication by ``alert_id`` (deterministic: a replayed or re-emitted alert has the same id), here with a
  bounded in-memory set; a real service keeps it where its side effects live (a unique key in its database);
- per-asset order: the key is the base asset, so one asset's alerts arrive in order within its partition;
- ``schema_version``: ignore unknown fields, skip (and report) versions this code does not know, skip alert
  types it does not handle.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer

KNOWN_SCHEMA_VERSIONS = {1}
log = logging.getLogger("consume_alerts")


class SeenIds:
    """The most recent ``capacity`` alert ids."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._capacity = capacity

    def first_time(self, alert_id: str) -> bool:
        if alert_id in self._ids:
            self._ids.move_to_end(alert_id)
            return False
        self._ids[alert_id] = None
        if len(self._ids) > self._capacity:
            self._ids.popitem(last=False)
        return True


def print_alert(alert: dict[str, Any]) -> None:
    """The "business logic" of this example: one line per alert."""
    when = datetime.fromtimestamp(alert["ts"] / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    print(f"{when} {alert['severity'].upper():<8} {alert['base']:<6} {alert['type']:<18} {alert['message']}",
          flush=True)


async def consume(bootstrap: str, group: str, topic: str = "fw.alerts",
                  handle: Callable[[dict[str, Any]], None] = print_alert, stop: asyncio.Event | None = None,
                  max_alerts: int | None = None) -> int:
    """Consume until ``stop`` is set or ``max_alerts`` were handled; returns how many were handled."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,      # commit only what was handled
        auto_offset_reset="earliest",  # a new group starts with the retained history
    )
    await consumer.start()
    seen = SeenIds()
    handled = 0
    try:
        while stop is None or not stop.is_set():
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    try:
                        alert = json.loads(record.value)
                    except (TypeError, ValueError):
                        log.warning("skipping a record that is not JSON at %s/%d@%d", record.topic,
                                    record.partition, record.offset)
                        continue
                    if alert.get("schema_version") not in KNOWN_SCHEMA_VERSIONS:
                        log.warning("skipping alert %s with unknown schema_version %r", alert.get("alert_id"),
                                    alert.get("schema_version"))
                        continue
                    if not seen.first_time(alert["alert_id"]):
                        continue  # a redelivery: already handled
                    handle(alert)
                    handled += 1
                    if max_alerts is not None and handled >= max_alerts:
                        await consumer.commit()
                        return handled
            if batch:
                await consumer.commit()
    finally:
        await consumer.stop()
    return handled


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers")
    parser.add_argument("--group", default="example-alert-consumer", help="your service's consumer group")
    parser.add_argument("--topic", default="fw.alerts", help="alert topic (with flushwatch's topic prefix)")
    parser.add_argument("--max", type=int, default=None, help="exit after this many alerts")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        asyncio.run(consume(args.bootstrap, args.group, args.topic, max_alerts=args.max))
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
