"""Prometheus metrics: one typed bundle per process, built on an injected registry.

Tests build a :class:`Metrics` on a fresh ``CollectorRegistry`` and assert through
``registry.get_sample_value``; the CLI builds one on its own registry and serves it. Labels are bounded:
venue, stream (channel), reason or kind — never a symbol.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["Children", "Incrementer", "Metrics", "StalenessCollector", "loop_counter"]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class StalenessCollector(Collector):
    """Computes "seconds since last message" per (venue, stream) at scrape time, so the value keeps
    growing while a feed is silent — exactly the case a push-updated gauge would hide."""

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        #: epoch seconds of the last message per (venue, stream)
        self.last: dict[tuple[str, str], float] = {}
        self._clock = time.time if clock is None else clock

    def touch(self, venue: str, stream: str, at: float | None = None) -> None:
        """Record that a message arrived now (or at ``at``, epoch seconds)."""
        self.last[(venue, stream)] = self._clock() if at is None else at

    def collect(self) -> Iterable[GaugeMetricFamily]:
        """Yield the gauge family for the scrape."""
        family = GaugeMetricFamily(
            "flushwatch_seconds_since_last_message",
            "Seconds since the last message on a venue stream (grows while the feed is silent).",
            labels=["venue", "stream"],
        )
        now = self._clock()
        for (venue, stream), last in sorted(self.last.copy().items()):  # copy: atomic against the loop
            family.add_metric([venue, stream], max(0.0, now - last))
        yield family


_M = TypeVar("_M", Counter, Gauge, Histogram)


class Incrementer(Protocol):
    """What the hot paths need of a counter child: ``inc``."""

    def inc(self, amount: float = 1) -> None:
        """Add ``amount``."""
        ...


class _LoopValue:
    """prometheus_client's per-child value (``MutexValue``) without its lock.

    The lock costs ~0.2 µs per increment, and the ingest path increments three counters per frame. For
    children that only the event loop's thread changes the lock protects nothing: the scrape thread only
    reads the value, and reading a float attribute is atomic. Same interface as ``MutexValue``.
    """

    __slots__ = ("_exemplar", "_value")
    _multiprocess = False

    def __init__(self, value: float) -> None:
        self._value = value
        self._exemplar: Any = None

    def inc(self, amount: float = 1) -> None:
        """Add ``amount`` (callers check it is not negative, as ``Counter.inc`` does)."""
        self._value += amount

    def set(self, value: float, timestamp: float | None = None) -> None:
        """Replace the value."""
        self._value = value

    def set_exemplar(self, exemplar: Any) -> None:
        """Attach an exemplar (unused by flushwatch)."""
        self._exemplar = exemplar

    def get(self) -> float:
        """The value, for the scrape."""
        return self._value

    def get_exemplar(self) -> Any:
        """The exemplar, for the scrape."""
        return self._exemplar


def loop_counter(metric: Counter, *labels: str) -> Incrementer:
    """The child of ``metric`` for ``labels``, made cheap to increment for a caller that owns it on the
    event loop's thread (see :class:`_LoopValue`): the returned object's ``inc`` adds to the value that
    ``/metrics`` exports, with the metric's own name and labels. Falls back to the child itself when
    prometheus_client keeps its values differently (multiprocess mode, another version)."""
    child = metric.labels(*labels)
    value = getattr(child, "_value", None)
    if value is None or type(value).__name__ != "MutexValue":
        return child
    fast = _LoopValue(value.get())
    child._value = fast  # the child now reads and writes the unlocked value
    return fast


class Children(Generic[_M]):
    """A labelled metric's children, each looked up once: ``metric.labels(...)`` costs ~1 µs (``str()`` of
    every value, a lock, a dict lookup), which hot paths paid per frame and per event.

    The names and labels exported are the metric's own; only the lookup is cached. Children removed from
    the metric (``remove``/``clear``, which flushwatch never calls) would not be seen again.
    """

    __slots__ = ("_cache", "_metric")

    def __init__(self, metric: _M) -> None:
        self._metric: _M = metric
        self._cache: dict[tuple[str, ...], _M] = {}

    def __call__(self, *labels: str) -> _M:
        """The child for these label values (positional, in the metric's label order)."""
        child = self._cache.get(labels)
        if child is None:
            child = self._cache[labels] = self._metric.labels(*labels)
        return child


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
        self.fetch_wait = Gauge("flushwatch_fetch_wait_seconds",
                                "The consumer's current fetch wait, by group: above the configured value when "
                                "flushwatch raised it because fetches from a slow broker came back empty.",
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

        # labelled children, looked up once per label set: ``labels()`` costs ~1 µs (str() of every value,
        # a lock, a dict lookup) and ran several times per frame (bench/RESULTS.md, profile finding 2)
        self._frame_children: dict[tuple[str, str], tuple[Incrementer, Incrementer]] = {}
        self._bytes_children: dict[str, Incrementer] = {}

    def seen_message(self, venue: str, stream: str, size: int) -> None:
        """Account one received frame."""
        children = self._frame_children.get((venue, stream))
        if children is None:
            children = self._frame_children[(venue, stream)] = self._new_frame_children(venue, stream)
        messages, message_bytes = children
        messages.inc(1)
        message_bytes.inc(size)
        self.staleness.touch(venue, stream)

    def _new_frame_children(self, venue: str, stream: str) -> tuple[Incrementer, Incrementer]:
        """The per-frame counters of a (venue, stream), and its last-message gauge, which reads the time
        the staleness collector keeps (one clock read and one dict store per frame serve both).
        :meth:`seen_message` runs on the event loop only, so the counters skip the lock."""
        key = (venue, stream)
        last = self.staleness.last
        self.last_message_ts.labels(venue, stream).set_function(lambda: last.get(key, 0.0))
        bytes_child = self._bytes_children.get(venue)
        if bytes_child is None:
            bytes_child = self._bytes_children[venue] = loop_counter(self.message_bytes, venue)
        return loop_counter(self.messages, venue, stream), bytes_child

    def observe_produce_latency(self, seconds: float, count: int = 1) -> None:
        """``count`` records acknowledged ``seconds`` after they were sent (one batch): the same
        observations as ``count`` calls of ``produce_latency.observe(seconds)``, in one step."""
        _observe_many(self.produce_latency, seconds, count)


def _observe_many(histogram: Histogram, amount: float, count: int) -> None:
    """``histogram.observe(amount)`` ``count`` times: one bucket and the sum updated once. Falls back to
    the loop if prometheus_client's internals (bucket bounds and values) are not where expected."""
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or count == 1:
        for _ in range(count):
            histogram.observe(amount)
        return
    total.inc(amount * count)
    for index, bound in enumerate(bounds):
        if amount <= bound:
            buckets[index].inc(count)
            break
