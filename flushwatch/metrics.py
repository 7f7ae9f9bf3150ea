"""Prometheus metrics: one typed bundle per process, built on an injected registry.

Tests build a :class:`Metrics` on a fresh ``CollectorRegistry`` and assert through
``registry.get_sample_value``; the CLI builds one on its own registry and serves it. Labels are bounded:
venue, stream (channel), reason or kind — never a symbol.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["Metrics", "StalenessCollector"]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class StalenessCollector(Collector):
    """Computes "seconds since last message" per (venue, stream) at scrape time, so the value keeps
    growing while a feed is silent — exactly the case a push-updated gauge would hide."""

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self._last: dict[tuple[str, str], float] = {}
        self._clock = time.time if clock is None else clock

    def touch(self, venue: str, stream: str, at: float | None = None) -> None:
        """Record that a message arrived now (or at ``at``, epoch seconds)."""
        self._last[(venue, stream)] = self._clock() if at is None else at

    def collect(self) -> Iterable[GaugeMetricFamily]:
        """Yield the gauge family for the scrape."""
        family = GaugeMetricFamily(
            "flushwatch_seconds_since_last_message",
            "Seconds since the last message on a venue stream (grows while the feed is silent).",
            labels=["venue", "stream"],
        )
        now = self._clock()
        for (venue, stream), last in sorted(self._last.items()):
            family.add_metric([venue, stream], max(0.0, now - last))
        yield family


@dataclass
class Metrics:
    """Every metric flushwatch exports. Create one per process (or per test) with its own registry."""

    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=True))

    def __post_init__(self) -> None:
        r = self.registry
        # ingest
        self.messages = Counter("flushwatch_messages", "Frames received, by venue and stream.",
                                ["venue", "stream"], registry=r)
        self.message_bytes = Counter("flushwatch_message_bytes", "Bytes received, by venue.", ["venue"], registry=r)
        self.events = Counter("flushwatch_events", "Normalized events produced, by venue and type.",
                              ["venue", "type"], registry=r)
        self.parse_errors = Counter("flushwatch_parse_errors", "Bad input, by venue and kind.",
                                    ["venue", "kind"], registry=r)
        self.duplicates = Counter("flushwatch_duplicates", "Events dropped as already seen, by venue.",
                                  ["venue"], registry=r)
        self.sequence_gaps = Counter("flushwatch_sequence_gaps", "Missing sequence ids detected, by venue.",
                                     ["venue"], registry=r)
        self.reconnects = Counter("flushwatch_reconnects", "Websocket reconnects, by venue and reason.",
                                  ["venue", "reason"], registry=r)
        self.connections = Gauge("flushwatch_ws_connections", "Open websocket connections, by venue.",
                                 ["venue"], registry=r)
        self.last_message_ts = Gauge("flushwatch_last_message_timestamp_seconds",
                                     "Wall time of the last frame, by venue and stream.",
                                     ["venue", "stream"], registry=r)
        self.staleness = StalenessCollector()
        r.register(self.staleness)
        self.rest_requests = Counter("flushwatch_rest_requests", "REST requests, by venue and outcome.",
                                     ["venue", "outcome"], registry=r)
        self.queue_depth = Gauge("flushwatch_queue_depth", "Items waiting in a bounded queue.", ["queue"],
                                 registry=r)
        self.dead_letters = Counter("flushwatch_dead_letters", "Records sent to the dead-letter topic.",
                                    ["source", "kind"], registry=r)
        # kafka
        self.produced = Counter("flushwatch_produced", "Records produced, by topic.", ["topic"], registry=r)
        self.produce_errors = Counter("flushwatch_produce_errors", "Failed produce requests, by topic.",
                                      ["topic"], registry=r)
        self.produce_latency = Histogram("flushwatch_produce_latency_seconds", "Send to broker ack.",
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.consumed = Counter("flushwatch_consumed", "Records consumed, by topic.", ["topic"], registry=r)
        self.consumer_lag = Gauge("flushwatch_consumer_lag", "Records behind the log end, by group.",
                                  ["group"], registry=r)
        # processing
        self.alerts = Counter("flushwatch_alerts", "Alerts emitted, by type and severity.",
                              ["type", "severity"], registry=r)
        self.processing_latency = Histogram("flushwatch_processing_latency_seconds",
                                            "Event receive to alert produced.", buckets=LATENCY_BUCKETS,
                                            registry=r)
        self.late_events = Counter("flushwatch_late_events",
                                   "Events out of order in their partition by more than the allowed lateness "
                                   "(still processed).", ["type"], registry=r)
        self.detector_late_events = Counter("flushwatch_detector_late_events",
                                            "Events a detector could not fold in: older than its window.",
                                            ["detector"], registry=r)
        # sinks
        self.sink_delivered = Counter("flushwatch_sink_delivered", "Alerts delivered, by sink.", ["sink"],
                                      registry=r)
        self.sink_duplicates = Counter("flushwatch_sink_duplicates", "Alerts skipped as already delivered.",
                                       ["sink"], registry=r)
        self.sink_failures = Counter("flushwatch_sink_failures", "Failed deliveries, by sink.", ["sink"],
                                     registry=r)

    def seen_message(self, venue: str, stream: str, size: int) -> None:
        """Account one received frame."""
        self.messages.labels(venue, stream).inc()
        self.message_bytes.labels(venue).inc(size)
        now = time.time()
        self.last_message_ts.labels(venue, stream).set(now)
        self.staleness.touch(venue, stream, now)
