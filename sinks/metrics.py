"""Per-sink metrics of the sink service, on the process's injected registry (``Metrics.registry``).

The three counters that already exist in :class:`flushwatch.metrics.Metrics` are used as they are
(``flushwatch_sink_delivered_total``, ``flushwatch_sink_duplicates_total``, ``flushwatch_sink_failures_total``,
label ``sink``); this bundle adds the rest. Labels are bounded: sink names come from the config file,
reasons from a fixed vocabulary (``http_429``, ``http_5xx``-style codes, ``timeout``, ``connection``...).

| metric | meaning |
| --- | --- |
| flushwatch_sink_delivered_total{sink} | alerts the destination accepted |
| flushwatch_sink_retries_total{sink} | attempts after a failed one |
| flushwatch_sink_attempt_errors_total{sink,reason} | failed attempts, by reason |
| flushwatch_sink_failures_total{sink} | alerts given up on (retry budget spent or permanent error) |
| flushwatch_sink_dead_lettered_total{sink,reason} | of those, written to fw.dlq |
| flushwatch_sink_duplicates_total{sink} | alerts skipped as already delivered |
| flushwatch_sink_filtered_total{sink} | alerts the target's filter did not want |
| flushwatch_sink_delivery_latency_seconds{sink} | consumed from fw.alerts to accepted (queue, rate limit, retries) |
| flushwatch_sink_rate_limited_seconds_total{sink} | time spent waiting for the rate limiter |
| flushwatch_sink_queue_depth{sink} | alerts waiting in the target's bounded queue |
| flushwatch_sink_paused | 1 while the service has paused its partitions (a queue is full) |
| flushwatch_sink_uncommitted | consumed records not finished by every sink yet |
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from flushwatch.metrics import Metrics

__all__ = ["DELIVERY_BUCKETS", "SinkMetrics"]

DELIVERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

_ATTR = "_flushwatch_sink_metrics"


@dataclass
class SinkMetrics:
    """The sink metrics of one registry. Use :meth:`for_metrics`: one bundle per ``Metrics``, so two sink
    services in one process (tests, a restart in place) share the collectors instead of clashing."""

    base: Metrics

    def __post_init__(self) -> None:
        r: CollectorRegistry = self.base.registry
        self.delivered = self.base.sink_delivered
        self.duplicates = self.base.sink_duplicates
        self.failures = self.base.sink_failures
        self.retries = Counter("flushwatch_sink_retries", "Delivery attempts after a failed one, by sink.",
                               ["sink"], registry=r)
        self.attempt_errors = Counter("flushwatch_sink_attempt_errors", "Failed delivery attempts, by sink "
                                      "and reason.", ["sink", "reason"], registry=r)
        self.dead_lettered = Counter("flushwatch_sink_dead_lettered", "Alerts written to the DLQ after the "
                                     "retry budget, by sink and reason.", ["sink", "reason"], registry=r)
        self.filtered = Counter("flushwatch_sink_filtered", "Alerts a target's filter skipped, by sink.",
                                ["sink"], registry=r)
        self.latency = Histogram("flushwatch_sink_delivery_latency_seconds", "Consumed to accepted by the "
                                 "destination, by sink.", ["sink"], buckets=DELIVERY_BUCKETS, registry=r)
        self.rate_limited = Counter("flushwatch_sink_rate_limited_seconds", "Seconds spent waiting for a "
                                    "target's rate limit, by sink.", ["sink"], registry=r)
        self.queue_depth = Gauge("flushwatch_sink_queue_depth", "Alerts waiting in a target's queue.", ["sink"],
                                 registry=r)
        self.paused = Gauge("flushwatch_sink_paused", "1 while the sink service pauses its partitions.",
                            registry=r)
        self.uncommitted = Gauge("flushwatch_sink_uncommitted", "Consumed alerts not finished by every sink.",
                                 registry=r)

    @classmethod
    def for_metrics(cls, metrics: Metrics) -> SinkMetrics:
        """The bundle of this ``Metrics``, created on first use and kept on it."""
        bundle = getattr(metrics, _ATTR, None)
        if not isinstance(bundle, SinkMetrics):
            bundle = cls(metrics)
            setattr(metrics, _ATTR, bundle)
        return bundle
