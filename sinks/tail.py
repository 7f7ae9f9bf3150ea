"""``flushwatch tail alerts``: read ``fw.alerts`` as a downstream consumer would, without joining any
consumer group (no offsets are committed, no group is disturbed).

Every partition is assigned directly. ``from_beginning`` starts at the oldest retained alert, otherwise at
the end of the log; ``follow`` keeps waiting for new alerts, otherwise the function returns once it has
read up to the end of every partition as it was when the tail started. Alerts are printed one per line,
human-readable (``text``, time in UTC) or as the exact JSON of the record (``json``); a record that does not
decode is reported on the same stream as a ``#`` comment line (``text``) or skipped with a warning log
(``json``, so the output stays valid JSON Lines).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Literal, TextIO

from aiokafka import AIOKafkaConsumer, TopicPartition

from flushwatch.codec import decode_alert
from flushwatch.config import Config
from flushwatch.errors import CodecError, FlushwatchError
from flushwatch.kafka import client_kwargs
from flushwatch.topics import Topics
from sinks.text import format_alert_line

__all__ = ["tail_alerts"]

log = logging.getLogger("flushwatch.tail")


async def _partitions(consumer: Any, topic: str, timeout_s: float) -> list[Any]:
    async with asyncio.timeout(timeout_s):
        while True:
            found = consumer.partitions_for_topic(topic)
            if found:
                return [TopicPartition(topic, p) for p in sorted(found)]
            await consumer.topics()  # refreshes the cluster metadata
            await asyncio.sleep(0.1)


def _render(raw: bytes, fmt: str, origin: str) -> str | None:
    try:
        alert = decode_alert(raw)
    except CodecError as exc:
        if fmt == "json":
            log.warning("undecodable record at %s skipped: %s", origin, exc)
            return None
        return f"# undecodable record at {origin}: {exc}"
    if fmt == "json":
        return raw.decode("utf-8", "replace")
    venues = ",".join(alert.venues)
    return f"{format_alert_line(alert)}  [{venues}] {alert.alert_id}"


async def tail_alerts(config: Config, bootstrap: str | None, fmt: Literal["text", "json"], from_beginning: bool,
                      follow: bool, out: TextIO, *, stop: asyncio.Event | None = None,
                      limit: int | None = None, ready: asyncio.Event | None = None,
                      metadata_timeout_s: float = 15.0) -> int:
    """Print alerts from the alert topic to ``out``; returns how many alerts were printed.

    Stops when ``stop`` is set, after ``limit`` alerts, or (without ``follow``) at the end of the log.
    ``ready`` is set once the log end of every partition is known: from then on every new alert is shown.
    """
    topic = Topics(config.kafka.topic_prefix).alerts
    consumer = AIOKafkaConsumer(
        **client_kwargs(config.kafka, bootstrap), client_id=f"{config.kafka.client_id}-tail", group_id=None,
        enable_auto_commit=False, auto_offset_reset="earliest", fetch_max_wait_ms=config.kafka.fetch_max_wait_ms)
    await consumer.start()
    printed = 0
    try:
        try:
            tps = await _partitions(consumer, topic, metadata_timeout_s)
        except TimeoutError:
            raise FlushwatchError(f"topic {topic} not found on the cluster") from None
        consumer.assign(tps)
        if from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            await consumer.seek_to_end(*tps)
        # the log end per partition as of now, learnt from the first fetch of each partition; records
        # below it that a seek_to_end still returns (some brokers answer the last batch's start) are old
        start_end: dict[Any, int] = {}
        while True:
            if stop is not None and stop.is_set():
                break
            batch = await consumer.getmany(timeout_ms=200)
            for tp in tps:
                if tp not in start_end and consumer.highwater(tp) is not None:
                    start_end[tp] = consumer.highwater(tp)
            if ready is not None and len(start_end) == len(tps):
                ready.set()
            for tp, records in sorted(batch.items(), key=lambda item: item[0].partition):
                for record in records:
                    if not from_beginning and record.offset < start_end.get(tp, 0):
                        continue
                    line = _render(record.value or b"", fmt, f"{tp.topic}/{tp.partition}@{record.offset}")
                    if line is None:
                        continue
                    out.write(line + "\n")
                    printed += 1
                    if limit is not None and printed >= limit:
                        out.flush()
                        return printed
            out.flush()
            if not follow and len(start_end) == len(tps) and not batch:
                positions = [await consumer.position(tp) for tp in tps]
                if all(pos >= start_end[tp] for pos, tp in zip(positions, tps, strict=True)):
                    break
    finally:
        await consumer.stop()
    return printed
