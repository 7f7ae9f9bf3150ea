"""Sink building blocks: filters, backoff, rate limits, the first-gap commit rule, the delivered-id store,
JSONL rotation, Retry-After parsing, config and factory."""

from __future__ import annotations

import random
import sqlite3
import time

import orjson
import pytest

from flushwatch.config import load_config
from flushwatch.errors import ConfigError
from sinks.dedupe import MemoryDeliveredStore, SqliteDeliveredStore, store_path
from sinks.factory import build_targets
from sinks.http import HttpResponse, parse_retry_after, raise_for_status
from sinks.jsonl import JsonlSink
from sinks.policy import AlertFilter, RateLimiter, RetryPolicy
from sinks.slack import SlackSink
from sinks.stdout import StdoutSink
from sinks.tracker import OffsetTracker
from sinks.webhook import WebhookSink
from tests.integration.test_sink_support import FakeClock, make_alert


def test_filter_on_type_severity_and_base():
    everything = AlertFilter.of()
    picky = AlertFilter.of(types=["cascade_started"], min_severity="warning", bases=["btc", "ETH"])
    assert everything.matches(make_alert(1, severity="info", base="DOGE"))
    assert picky.matches(make_alert(1, severity="warning", base="BTC"))
    assert picky.matches(make_alert(1, severity="critical", base="ETH"))
    assert not picky.matches(make_alert(1, severity="info", base="BTC"))
    assert not picky.matches(make_alert(1, severity="critical", base="SOL"))
    assert not picky.matches(make_alert(1, severity="critical", base="BTC", type="cascade_ended"))
    with pytest.raises(ValueError, match="severity"):
        AlertFilter.of(min_severity="loud")


def test_backoff_grows_with_jitter_honours_retry_after_and_has_a_budget():
    policy = RetryPolicy(max_attempts=5, initial_delay_s=1.0, max_delay_s=4.0, multiplier=2.0,
                         max_retry_after_s=60.0)
    rng = random.Random(7)
    for attempt, base in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 4.0)]:
        for _ in range(50):
            delay = policy.delay(attempt, None, rng)
            assert delay is not None and base / 2 <= delay <= base
    delays = {policy.delay(2, None, rng) for _ in range(20)}
    assert len(delays) > 10  # jittered, not a fixed schedule
    assert policy.delay(1, 30.0, rng) == 30.0  # Retry-After wins when longer than the backoff
    assert policy.delay(3, 0.1, rng) >= 2.0  # and never shortens it
    assert policy.delay(5, None, rng) is None  # budget spent
    assert policy.delay(1, 61.0, rng) is None  # asked to wait longer than we are willing to


async def test_rate_limiter_allows_a_burst_then_spaces_and_obeys_a_block():
    clock = FakeClock()
    limiter = RateLimiter(per_second=2.0, burst=3, clock=clock)
    waits = [await limiter.acquire() for _ in range(5)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3] == pytest.approx(0.5)
    assert waits[4] == pytest.approx(0.5)
    limiter.block_for(10.0)
    started = clock.now
    await limiter.acquire()
    assert clock.now - started >= 10.0
    unlimited = RateLimiter(per_second=None, clock=clock)
    assert [await unlimited.acquire() for _ in range(100)] == [0.0] * 100


def test_first_gap_commit_rule():
    tracker = OffsetTracker()
    p0, p1 = ("t", 0), ("t", 1)
    entries = [tracker.add(p0, offset, pending=2) for offset in range(10, 15)]
    other = tracker.add(p1, 3, pending=1)
    assert tracker.committable() == {p0: 10, p1: 3}
    tracker.committed(tracker.committable())
    # offsets 11 and 12 finish first: nothing can move past the unfinished 10
    for entry in entries[1:3]:
        tracker.finish(entry)
        tracker.finish(entry)
    assert tracker.committable() == {}
    tracker.finish(entries[0])
    assert tracker.commit_point(p0) == 10  # one of two sinks still busy with 10
    tracker.finish(entries[0])
    assert tracker.committable() == {p0: 13}
    tracker.finish(other)
    assert tracker.committable() == {p0: 13, p1: 4}
    assert tracker.unfinished() == 2
    assert tracker.unfinished([p1]) == 0
    # revoking cancels the open entries so queued jobs are skipped
    assert tracker.drop([p0]) == 2
    assert entries[3].cancelled and entries[4].cancelled
    assert tracker.partitions == [p1]
    # a record no sink wants is finished at once
    done = tracker.add(p1, 4, pending=0)
    assert done.finished and tracker.commit_point(p1) == 5


def test_sqlite_store_survives_reopening_and_forgets_old_ids(tmp_path):
    path = store_path(tmp_path / "state", "ops/webhook")
    assert path.name == "delivered-ops_webhook.sqlite3"
    store = SqliteDeliveredStore(path)
    assert not store.contains("a")
    store.add("a")
    store.add("b")
    assert store.contains("a")
    store.close()
    again = SqliteDeliveredStore(path)
    assert again.contains("a") and again.contains("b") and not again.contains("c")
    assert len(again) == 2
    again.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE delivered SET at = ? WHERE alert_id = 'a'", (time.time() - 10 * 86400,))
    db.commit()
    db.close()
    pruned = SqliteDeliveredStore(path, retention_s=86400)
    assert not pruned.contains("a") and pruned.contains("b")
    pruned.close()
    memory = MemoryDeliveredStore(capacity=2)
    for alert_id in "xyz":
        memory.add(alert_id)
    assert not memory.contains("x") and memory.contains("z")


async def test_jsonl_rotates_by_size_and_keeps_whole_lines(tmp_path):
    path = tmp_path / "out" / "alerts.jsonl"
    sink = JsonlSink(path, max_bytes=1024, backups=2)
    alerts = [make_alert(i) for i in range(20)]
    for alert in alerts:
        await sink.deliver(alert)
    await sink.close()
    files = [path.with_name("alerts.jsonl.2"), path.with_name("alerts.jsonl.1"), path]
    assert all(f.exists() for f in files)
    assert not path.with_name("alerts.jsonl.3").exists()
    kept = [orjson.loads(line)["alert_id"] for f in files for line in f.read_bytes().splitlines()]
    assert kept == [a.alert_id for a in alerts][-len(kept):]  # the newest, in order, none split
    assert all(f.stat().st_size <= 1024 for f in files)
    # reopening continues the current file and its size accounting
    sink = JsonlSink(path, max_bytes=1024, backups=2)
    await sink.deliver(make_alert(99))
    await sink.close()
    assert orjson.loads(path.read_bytes().splitlines()[-1])["alert_id"] == "id-99"


def test_retry_after_parsing_and_status_classes():
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after("0.75") == 0.75
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    raise_for_status(HttpResponse(204))
    with pytest.raises(Exception, match="HTTP 418"):
        raise_for_status(HttpResponse(418, {}, b"teapot"))


def test_config_targets_secrets_from_env_and_factory(tmp_path):
    path = tmp_path / "fw.toml"
    path.write_text(f"""
[sink]
stdout = false
state_dir = "{tmp_path / 'state'}"

[[sink.targets]]
kind = "webhook"
name = "ops"
url = "https://example.invalid/hook"
secret_env = "OPS_SECRET"
filter = {{ types = ["cascade_started"], min_severity = "warning", bases = ["BTC"] }}
[sink.targets.retry]
max_attempts = 3

[[sink.targets]]
kind = "slack"
url_env = "SLACK_URL"

[[sink.targets]]
kind = "stdout"
format = "json"

[[sink.targets]]
kind = "jsonl"
path = "{tmp_path / 'a.jsonl'}"
enabled = false
""")
    config = load_config(path, environ={})
    names = [t.name for t in config.sink.targets]
    assert names == ["ops", "slack", "stdout", "jsonl"]
    assert config.sink.targets[1].rate_limit.per_second == 1.0  # Slack's documented pace by default
    with pytest.raises(ConfigError, match="OPS_SECRET"):
        build_targets(config, environ={})
    targets = build_targets(config, environ={"OPS_SECRET": "s", "SLACK_URL": "https://hooks.example.invalid/x"})
    assert [type(t.sink) for t in targets] == [WebhookSink, SlackSink, StdoutSink]
    ops = targets[0]
    assert ops.retry.max_attempts == 3
    assert ops.filter == AlertFilter.of(["cascade_started"], "warning", ["BTC"])
    assert isinstance(ops.store, SqliteDeliveredStore)
    assert ops.store.path == tmp_path / "state" / "delivered-ops.sqlite3"
    assert isinstance(targets[2].store, MemoryDeliveredStore)
    for target in targets:
        target.store.close()
    # secrets given as a whole list in one environment variable work too
    env_config = load_config(environ={"FLUSHWATCH_SINK__TARGETS": orjson.dumps(
        [{"kind": "telegram", "bot_token": "1:x", "chat_id": "42"}]).decode()})
    assert env_config.sink.targets[0].bot_token is not None
    assert "1:x" not in repr(env_config)


@pytest.mark.parametrize(("target", "error"), [
    ({"kind": "webhook", "url": "https://x.invalid"}, "set secret or secret_env"),
    ({"kind": "slack"}, "set url or url_env"),
    ({"kind": "telegram", "bot_token": "1:x"}, "chat_id"),
    ({"kind": "postgres"}, "set dsn or dsn_env"),
    ({"kind": "stdout"}, "names must be unique"),  # sink.stdout already adds one named stdout
    ({"kind": "pager", "name": "p"}, "does not match any of the expected tags"),
    ({"kind": "stdout", "name": "bad name"}, "name"),
])
def test_bad_targets_are_named(target, error):
    with pytest.raises(ConfigError, match=error):
        load_config(environ={"FLUSHWATCH_SINK__TARGETS": orjson.dumps([target]).decode()})
