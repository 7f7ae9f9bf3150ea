"""The whole pipeline, end to end: replay server -> websocket driver -> Kafka -> processor -> sink.

Compared with ``flushwatch backtest`` over the same recording: the live path (real sockets, real broker,
consumer groups) must find exactly the same alerts as the offline path.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import sys
from pathlib import Path

import orjson

from flushwatch.app import RunOptions, demo_recording_path, run_service
from flushwatch.backtest import run_backtest
from flushwatch.metrics import Metrics
from flushwatch.recording import RecordLine, read_recording
from flushwatch.topics import Topics

from .helpers import kafka_config, read_all


def _with_bad_frames(tmp_path: Path) -> Path:
    """The demo recording with malformed frames mixed in, as a recording by another tool might hold."""
    lines = [item for item in read_recording(demo_recording_path()) if isinstance(item, RecordLine)]
    endpoint = lines[0].endpoint
    bad = [
        RecordLine(lines[10].recv_ts, "binance", "ws", endpoint, '{"stream":"!forceOrder@arr","data":{'),
        RecordLine(lines[20].recv_ts, "binance", "ws", endpoint,
                   '{"stream":"!forceOrder@arr","data":{"e":"forceOrder","E":1,"o":{"s":"BTCUSDT","S":"SELL",'
                   '"q":"NaN","p":"1","ap":"1","z":"NaN","T":1}}}'),
    ]
    merged = sorted(lines + bad, key=lambda line: line.recv_ts)
    path = tmp_path / "demo_with_bad.jsonl.gz"
    path.write_bytes(gzip.compress(b"".join(line.to_json() + b"\n" for line in merged)))
    return path


async def test_replayed_pipeline_emits_the_backtest_alerts(broker, topic_prefix, tmp_path):
    recording = _with_bad_frames(tmp_path)
    alerts_file = tmp_path / "alerts.jsonl"
    config = kafka_config(broker.bootstrap, topic_prefix,
                          sink={"stdout": False, "jsonl_path": str(alerts_file)})
    metrics = Metrics()
    options = RunOptions(roles=frozenset({"ingest", "process", "sink"}), replay=(str(recording),), speed=0)
    async with asyncio.timeout(90):
        assert await run_service(config, options, metrics) == 0

    expected = io.BytesIO()
    report = run_backtest([recording], config, expected)
    assert report.rejects_by_kind == {"malformed_json": 1, "non_finite": 1}
    expected_alerts = [orjson.loads(line) for line in expected.getvalue().splitlines()]
    got = [orjson.loads(line) for line in alerts_file.read_bytes().splitlines()]
    assert len(expected_alerts) == 10
    key = lambda a: (a["alert_id"], a["type"], a["base"], a["severity"], a["metrics"]["events"])  # noqa: E731
    assert sorted(map(key, got)) == sorted(map(key, expected_alerts))
    by_id = {a["alert_id"]: a for a in got}
    for alert in expected_alerts:  # same numbers behind each alert; emitted_ts is wall time live
        assert by_id[alert["alert_id"]]["metrics"] == alert["metrics"]
        assert by_id[alert["alert_id"]]["window"] == alert["window"]

    sample = metrics.registry.get_sample_value
    assert sample("flushwatch_events_total", {"venue": "binance", "type": "liquidation"}) == 1344
    assert sample("flushwatch_parse_errors_total", {"venue": "binance", "kind": "malformed_json"}) == 1
    assert sample("flushwatch_parse_errors_total", {"venue": "binance", "kind": "non_finite"}) == 1
    assert sample("flushwatch_alerts_total", {"type": "cascade_started", "severity": "info"}) >= 1
    assert sample("flushwatch_sink_delivered_total", {"sink": "jsonl"}) == 10
    dead = await read_all(broker.bootstrap, Topics(topic_prefix).dlq, expect=2)
    assert sorted(dict(d.headers)["fw-kind"] for d in dead) == [b"malformed_json", b"non_finite"]
    assert all(dict(d.headers)["fw-venue"] == b"binance" for d in dead)
    assert dead[0].value.startswith(b'{"stream":"!forceOrder@arr"')


def _synthetic(tmp_path: Path, lines: int) -> Path:
    import importlib.util  # noqa: PLC0415

    script = Path(__file__).resolve().parents[2] / "bench" / "make_recordings.py"
    spec = importlib.util.spec_from_file_location("make_recordings", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_recordings"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    out = tmp_path / "synthetic.jsonl"
    module.main(["synthetic", str(lines), str(out)])
    return out


async def test_replay_polls_recorded_open_interest_through_the_rest_path(broker, topic_prefix, tmp_path):
    recording = _synthetic(tmp_path, 4000)
    recorded = [line for line in read_recording(recording) if isinstance(line, RecordLine)]
    rest = [orjson.loads(line.data) for line in recorded if line.kind == "rest"]
    assert rest, "the synthetic recording holds open-interest polls"
    config = kafka_config(broker.bootstrap, topic_prefix, sink={"stdout": False})
    options = RunOptions(roles=frozenset({"ingest", "process", "sink"}), replay=(str(recording),), speed=20)
    metrics = Metrics()
    async with asyncio.timeout(90):
        assert await run_service(config, options, metrics) == 0
    produced = metrics.registry.get_sample_value("flushwatch_events_total",
                                                 {"venue": "binance", "type": "open_interest"})
    assert produced is not None and produced >= len({r["symbol"] for r in rest})
    records = await read_all(broker.bootstrap, Topics(topic_prefix).market("open_interest"), expect=int(produced))
    events = [orjson.loads(r.value) for r in records]
    recorded_values = {(r["symbol"], r["openInterest"].rstrip("0").rstrip("."), r["time"]) for r in rest}
    assert {(e["symbol"], e["oi_qty"], e["ts"]) for e in events} <= recorded_values
    assert {e["symbol"] for e in events} == {r["symbol"] for r in rest}
    assert all(e["oi_usd"] is not None for e in events[len(rest) // 2:])  # valued once marks arrived
