"""The published JSON Schemas (schemas/v1) match what flushwatch really writes: every alert of the demo
backtest, the alerts the sink tests use, and every event the Binance adapter makes of the demo recording."""

from __future__ import annotations

import collections

import orjson
import pytest
from jsonschema import Draft202012Validator

from flushwatch.app import demo_recording_path
from flushwatch.codec import alert_to_dict, encode_alert, event_to_dict
from flushwatch.config import load_config
from flushwatch.recording import RecordLine, merge_recordings
from ingest.binance import BinanceUsdmAdapter
from ingest.registry import create_adapter
from tests.conftest import FIXTURES
from tests.integration.test_sink_support import SCHEMAS, assert_valid_alert, demo_alert_lines, make_alert, validator

EVENT_TYPES = ("liquidation", "trade", "open_interest", "funding")
RECV = 1_737_996_780_000


def test_every_schema_is_a_valid_draft_2020_12_schema_with_versioned_id():
    names = sorted(p.name for p in SCHEMAS.glob("*.schema.json"))
    assert names == sorted(f"{n}.schema.json" for n in (*EVENT_TYPES, "alert"))
    for path in SCHEMAS.glob("*.schema.json"):
        schema = orjson.loads(path.read_bytes())
        Draft202012Validator.check_schema(schema)
        assert schema["$id"].startswith("urn:flushwatch:schema:v1:")
        assert schema["properties"]["schema_version"] == {"const": 1}


def test_demo_backtest_alerts_match_the_alert_schema():
    lines = demo_alert_lines()
    assert len(lines) >= 5
    for line in lines:
        assert_valid_alert(line)


def test_alerts_used_by_the_sink_tests_match_the_alert_schema():
    for i in range(5):
        assert_valid_alert(encode_alert(make_alert(i)))
    assert_valid_alert(make_alert(1, venues=(), message="", metrics={}))


@pytest.mark.parametrize(("change", "path"), [
    ({"alert_id": ""}, "alert_id"),
    ({"severity": "loud"}, "severity"),
    ({"ts": 1.5}, "ts"),
    ({"window": {"start": 1}}, "window"),
    ({"schema_version": 2}, "schema_version"),
    ({"venues": "binance"}, "venues"),
])
def test_alert_schema_rejects_broken_alerts(change, path):
    obj = {**alert_to_dict(make_alert(1)), **change}
    errors = list(validator("alert").iter_errors(obj))
    assert errors and any(path in (list(e.absolute_path) or [e.message]) or path in e.message for e in errors)


def test_events_of_the_demo_recording_match_their_schemas():
    config = load_config(environ={})
    adapter = create_adapter("binance", config)
    seen: collections.Counter[str] = collections.Counter()
    for item in merge_recordings([str(demo_recording_path())]):
        if not isinstance(item, RecordLine) or item.venue != "binance":
            continue
        if item.kind == "ws":
            result = adapter.parse(item.data, item.recv_ts)
        else:
            result = adapter.parse_rest(item.endpoint, item.data, item.recv_ts)
        for event in result.events:
            obj = orjson.loads(orjson.dumps(event_to_dict(event)))
            errors = list(validator(event.type).iter_errors(obj))
            assert not errors, (event.type, [e.message for e in errors])
            if seen[event.type] < 3:  # a wrong type never passes another type's schema
                for other in EVENT_TYPES:
                    if other != event.type:
                        assert list(validator(other).iter_errors(obj))
            seen[event.type] += 1
    # the demo holds liquidations only: the adapter's sample frames (tests/fixtures/binance) give the rest
    fixtures = FIXTURES / "binance"
    sample = BinanceUsdmAdapter(symbols=["BTCUSDT", "CTKUSDT", "AKROUSDT"])
    results = [sample.parse_rest("/fapi/v1/openInterest?symbol=BTCUSDT",
                                 (fixtures / "binance_open_interest_rest.jsonl").read_text().strip(), RECV)]
    for name in ("binance_trades.jsonl", "binance_mark_price.jsonl", "binance_liquidations.jsonl"):
        results += [sample.parse(line, RECV) for line in (fixtures / name).read_text().splitlines() if line]
    newer = (fixtures / "binance_open_interest_rest.jsonl").read_text().strip().replace("1589437530011",
                                                                                        "1589437540011")
    results.append(sample.parse_rest("/fapi/v1/openInterest?symbol=BTCUSDT", newer, RECV))  # valued: mark known
    oi_usd = []
    for result in results:
        for event in result.events:
            obj = orjson.loads(orjson.dumps(event_to_dict(event)))
            errors = list(validator(event.type).iter_errors(obj))
            assert not errors, (event.type, [e.message for e in errors])
            seen[event.type] += 1
            if event.type == "open_interest":
                oi_usd.append(obj["oi_usd"])
    assert all(seen[t] for t in EVENT_TYPES), seen
    assert None in oi_usd and any(isinstance(v, str) for v in oi_usd), oi_usd


def test_money_must_be_a_decimal_string():
    liquidation = {"type": "liquidation", "venue": "binance", "symbol": "BTCUSDT", "instrument": "BTC-USDT-PERP",
                   "base": "BTC", "ts": 1, "recv_ts": 2, "schema_version": 1, "side": "long", "price": "100.5",
                   "qty": "0.001", "notional_usd": "0.1005", "order_id": None, "sampled": True}
    assert not list(validator("liquidation").iter_errors(liquidation))
    for bad in (100.5, "1E-8", "-1", "abc"):
        assert list(validator("liquidation").iter_errors({**liquidation, "price": bad})), bad
    funding = {**{k: liquidation[k] for k in ("venue", "symbol", "instrument", "base", "ts", "recv_ts",
                                              "schema_version")},
               "type": "funding", "rate": "-0.0001", "interval_h": 8, "next_funding_ts": None,
               "mark_price": "100", "index_price": None}
    assert not list(validator("funding").iter_errors(funding))
