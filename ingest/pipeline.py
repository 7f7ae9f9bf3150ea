"""From raw frames to Kafka: parse with the venue adapter, produce events, dead-letter bad input.

Drivers and pollers put :class:`~flushwatch.recording.RecordLine` objects (the recording format) on one
bounded queue; this stage is the only consumer. Keeping the raw frame until here means the recorder, the
dead-letter topic and the parser all see the same bytes, and nothing is parsed twice.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import NamedTuple

from flushwatch.codec import encode_event
from flushwatch.events import MarketEvent
from flushwatch.kafka import DeadLetters, Producer
from flushwatch.logs import RateLimitedLog
from flushwatch.metrics import Children, Incrementer, Metrics, loop_counter
from flushwatch.recording import RecordingWriter, RecordLine
from flushwatch.topics import Topics
from ingest.base import ParseResult, VenueAdapter

__all__ = ["FramePipeline"]

log = logging.getLogger("flushwatch.ingest")


class _Route(NamedTuple):
    """Where the events of one (venue, type) go and what they are counted in."""

    topic: str
    #: shared by every record of the route: the producer only reads headers
    headers: list[tuple[str, bytes]]
    #: ``flushwatch_events{venue,type}``; this pipeline runs on the event loop only: no lock
    counter: Incrementer


class FramePipeline:
    """Parses frames and produces the resulting events, keyed by base asset.

    This runs once per frame and once per event at tens of thousands per second, so what does not change
    between events is looked up once: the topic, the (shared, read-only) ``venue``/``type`` headers and
    the ``flushwatch_events`` child per (venue, type), the counters' children per venue.
    """

    def __init__(self, adapters: Mapping[str, VenueAdapter], producer: Producer, topics: Topics,
                 metrics: Metrics, recorder: RecordingWriter | None = None) -> None:
        self._adapters = adapters
        self._producer = producer
        self._topics = topics
        self._metrics = metrics
        self._recorder = recorder
        self._dlq = DeadLetters(producer, topics.dlq, metrics, "ingest")
        self._problems = RateLimitedLog(log)
        self._routes: dict[tuple[str, str], _Route] = {}
        self._duplicates = Children(metrics.duplicates)
        self._gaps = Children(metrics.sequence_gaps)
        self._parse_errors = Children(metrics.parse_errors)
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
            stream = result.stream
        else:
            result = adapter.parse_rest(line.endpoint, line.data, line.recv_ts)
            stream = f"rest:{result.stream}"
        self._metrics.seen_message(line.venue, stream, len(line.data))
        if result.duplicates:
            self._duplicates(line.venue).inc(result.duplicates)
        if result.gaps:
            self._gaps(line.venue).inc(result.gaps)
        events = result.events
        if events:
            send = self._producer.send
            routes = self._routes
            for event in events:
                route = routes.get((event.venue, event.type))
                if route is None:
                    route = self._route(event)
                await send(route.topic, encode_event(event), key=event.base.encode(), headers=route.headers,
                           timestamp_ms=event.recv_ts)
                route.counter.inc(1)
            self.events += len(events)
        for reject in result.rejects:
            await self._reject(line, reject.kind, reject.detail)
        return result

    def _route(self, event: MarketEvent) -> _Route:
        route = self._routes[(event.venue, event.type)] = _Route(
            self._topics.for_event(event),
            [("venue", event.venue.encode()), ("type", event.type.encode())],
            loop_counter(self._metrics.events, event.venue, event.type),
        )
        return route

    async def _reject(self, line: RecordLine, kind: str, detail: str) -> None:
        self.rejects += 1
        self._parse_errors(line.venue, kind).inc()
        self._problems.warning(f"{line.venue}:{kind}", "bad input from %s (%s): %s; frame starts %r",
                               line.venue, kind, detail, line.data[:120])
        await self._dlq.send(line.data, kind, detail, venue=line.venue, endpoint=line.endpoint,
                             recv_ts=line.recv_ts, origin="ingest")
