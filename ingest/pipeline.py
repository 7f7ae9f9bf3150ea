"""From raw frames to Kafka: parse with the venue adapter, produce events, dead-letter bad input.

Drivers and pollers put :class:`~flushwatch.recording.RecordLine` objects (the recording format) on one
bounded queue; this stage is the only consumer. Keeping the raw frame until here means the recorder, the
dead-letter topic and the parser all see the same bytes, and nothing is parsed twice.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from flushwatch.codec import encode_event
from flushwatch.kafka import DeadLetters, Producer
from flushwatch.logs import RateLimitedLog
from flushwatch.metrics import Metrics
from flushwatch.recording import RecordingWriter, RecordLine
from flushwatch.topics import Topics
from ingest.base import ParseResult, VenueAdapter

__all__ = ["FramePipeline"]

log = logging.getLogger("flushwatch.ingest")


class FramePipeline:
    """Parses frames and produces the resulting events, keyed by base asset."""

    def __init__(self, adapters: Mapping[str, VenueAdapter], producer: Producer, topics: Topics,
                 metrics: Metrics, recorder: RecordingWriter | None = None) -> None:
        self._adapters = adapters
        self._producer = producer
        self._topics = topics
        self._metrics = metrics
        self._recorder = recorder
        self._dlq = DeadLetters(producer, topics.dlq, metrics, "ingest")
        self._problems = RateLimitedLog(log)
        self.frames = 0
        self.events = 0
        self.rejects = 0

    async def handle(self, line: RecordLine) -> ParseResult | None:
        """Process one frame; never raises on bad input (it is counted and dead-lettered)."""
        self.frames += 1
        if self._recorder is not None:
            self._recorder.write(line)
        adapter = self._adapters.get(line.venue)
        if adapter is None:
            await self._reject(line, "unknown_venue", f"no adapter for venue {line.venue!r}")
            return None
        if line.kind == "ws":
            result = adapter.parse(line.data, line.recv_ts)
        else:
            result = adapter.parse_rest(line.endpoint, line.data, line.recv_ts)
        stream = result.stream if line.kind == "ws" else f"rest:{result.stream}"
        self._metrics.seen_message(line.venue, stream, len(line.data))
        if result.duplicates:
            self._metrics.duplicates.labels(line.venue).inc(result.duplicates)
        if result.gaps:
            self._metrics.sequence_gaps.labels(line.venue).inc(result.gaps)
        for event in result.events:
            await self._producer.send(
                self._topics.for_event(event), encode_event(event), key=event.base.encode(),
                headers=[("venue", event.venue.encode()), ("type", event.type.encode())],
                timestamp_ms=event.recv_ts,
            )
            self._metrics.events.labels(event.venue, event.type).inc()
        self.events += len(result.events)
        for reject in result.rejects:
            await self._reject(line, reject.kind, reject.detail)
        return result

    async def _reject(self, line: RecordLine, kind: str, detail: str) -> None:
        self.rejects += 1
        self._metrics.parse_errors.labels(line.venue, kind).inc()
        self._problems.warning(f"{line.venue}:{kind}", "bad input from %s (%s): %s; frame starts %r",
                               line.venue, kind, detail, line.data[:120])
        await self._dlq.send(line.data, kind, detail, venue=line.venue, endpoint=line.endpoint,
                             recv_ts=line.recv_ts, origin="ingest")
