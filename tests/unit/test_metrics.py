"""The metrics bundle's fast paths export exactly what the plain prometheus_client calls would."""

from __future__ import annotations

from prometheus_client import generate_latest

from flushwatch.metrics import Children, Metrics, loop_counter


def samples(metrics: Metrics, prefix: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            if sample.name.startswith(prefix) and not sample.name.endswith("_created"):
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_batched_latency_observations_equal_one_observation_per_record():
    batched, single = Metrics(), Metrics()
    for seconds, count in ((0.0004, 7), (0.003, 250), (0.2, 1), (42.0, 3)):
        batched.observe_produce_latency(seconds, count)
        for _ in range(count):
            single.produce_latency.observe(seconds)
    assert samples(batched, "flushwatch_produce_latency") == samples(single, "flushwatch_produce_latency")
    assert batched.registry.get_sample_value("flushwatch_produce_latency_seconds_count") == 261


def test_loop_counters_export_under_the_metrics_own_name_and_labels():
    metrics = Metrics()
    metrics.events.labels("binance", "trade").inc(2)  # a child that already counted keeps its count
    fast = loop_counter(metrics.events, "binance", "trade")
    fast.inc(1)
    fast.inc(5)
    again = loop_counter(metrics.events, "binance", "trade")  # a second owner of the same child
    again.inc(1)
    metrics.events.labels("binance", "trade").inc()  # and the ordinary path still adds to the same value
    assert metrics.registry.get_sample_value("flushwatch_events_total", {"venue": "binance", "type": "trade"}) == 10
    assert b'flushwatch_events_total{type="trade",venue="binance"} 10.0' in generate_latest(metrics.registry)


def test_cached_children_are_the_metrics_children():
    metrics = Metrics()
    children = Children(metrics.parse_errors)
    assert children("bybit", "bad_field") is children("bybit", "bad_field")
    assert children("bybit", "bad_field") is metrics.parse_errors.labels("bybit", "bad_field")
    children("bybit", "bad_field").inc(3)
    assert metrics.registry.get_sample_value("flushwatch_parse_errors_total",
                                             {"venue": "bybit", "kind": "bad_field"}) == 3


def test_seen_message_counts_frames_bytes_and_stamps_the_last_message():
    metrics = Metrics()
    metrics.seen_message("binance", "trade", 100)
    metrics.seen_message("binance", "trade", 50)
    metrics.seen_message("binance", "liquidation", 7)
    get = metrics.registry.get_sample_value
    assert get("flushwatch_messages_total", {"venue": "binance", "stream": "trade"}) == 2
    assert get("flushwatch_messages_total", {"venue": "binance", "stream": "liquidation"}) == 1
    assert get("flushwatch_message_bytes_total", {"venue": "binance"}) == 157
    stamped = metrics.staleness.last[("binance", "trade")]
    assert get("flushwatch_last_message_timestamp_seconds", {"venue": "binance", "stream": "trade"}) == stamped
    metrics.staleness.touch("binance", "trade", at=stamped + 1.5)  # the gauge follows the latest frame
    assert get("flushwatch_last_message_timestamp_seconds", {"venue": "binance", "stream": "trade"}) == stamped + 1.5
    assert get("flushwatch_seconds_since_last_message", {"venue": "binance", "stream": "liquidation"}) is not None
