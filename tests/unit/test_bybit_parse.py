"""Bybit v5 linear adapter: every sample payload by value, ticker state, de-duplication, and ugly input."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Context, Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flushwatch.config import BybitConfig
from flushwatch.events import Funding, Liquidation, OpenInterest, Trade
from ingest.base import ParseResult
from ingest.bybit import (
    FUNDING_REFRESH_INTERVAL_MS,
    MAX_ARGS_CHARS_PER_CONNECTION,
    MAX_ARGS_PER_SUBSCRIBE,
    MAX_FRAME_BYTES,
    OI_REVALUE_INTERVAL_MS,
    BybitLinearAdapter,
    normalize_bybit_symbol,
)
from tests.unit import venue_props
from tests.unit.venue_props import kinds, one

FIXTURES = Path(__file__).parent.parent / "fixtures" / "bybit"
RECV = 1_700_000_000_000
D = Decimal
EXACT = Context(prec=200)


def lines(name: str) -> list[str]:
    return (FIXTURES / name).read_text(encoding="utf-8").splitlines()


def adapter(symbols: list[str] | None = None, **kwargs: Any) -> BybitLinearAdapter:
    return BybitLinearAdapter(symbols if symbols is not None else ["BTCUSDT"], **kwargs)


def liq(s: str = "BTCUSDT", side: str = "Buy", v: str = "0.5", p: str = "100000", t: int = 1739502302929,
        **extra: Any) -> dict[str, Any]:
    return {"T": t, "s": s, "S": side, "v": v, "p": p, **extra}


def liq_frame(*items: dict[str, Any], symbol: str = "BTCUSDT") -> bytes:
    return orjson.dumps({"topic": f"allLiquidation.{symbol}", "type": "snapshot", "ts": 1739502303204,
                         "data": list(items)})


def trade(i: str = "t-1", s: str = "BTCUSDT", side: str = "Buy", v: str = "0.001", p: str = "16578.50",
          t: int = 1672304486865, **extra: Any) -> dict[str, Any]:
    return {"T": t, "s": s, "S": side, "v": v, "p": p, "L": "PlusTick", "i": i, "BT": False, "seq": 1, **extra}


def trade_frame(*items: dict[str, Any], symbol: str = "BTCUSDT") -> bytes:
    return orjson.dumps({"topic": f"publicTrade.{symbol}", "type": "snapshot", "ts": 1672304486868,
                         "data": list(items)})


def ticker(kind: str, ts: int, cs: int, symbol: str = "BTCUSDT", **data: Any) -> bytes:
    return orjson.dumps({"topic": f"tickers.{symbol}", "type": kind, "data": {"symbol": symbol, **data},
                         "cs": cs, "ts": ts})


SNAPSHOT = {"markPrice": "100000.5", "indexPrice": "100001.0", "openInterest": "50000",
            "openInterestValue": "5000025000", "fundingIntervalHour": "8",
            "nextFundingTime": "1760342400000", "fundingRate": "0.0001", "lastPrice": "100000.4"}


# ---------------------------------------------------------------- sample payloads, by value


def test_sample_all_liquidation() -> None:
    (line,) = lines("bybit_liquidations.jsonl")
    result = adapter().parse(line, RECV)
    assert result.stream == "liquidation"
    assert one(result) == Liquidation(
        venue="bybit", symbol="ROSEUSDT", instrument="ROSE-USDT-PERP", base="ROSE", ts=1739502302929,
        recv_ts=RECV, side="short", price=D("0.04499"), qty=D("20000"), notional_usd=D("899.80000"),
        order_id=None, sampled=False,
    )


def test_sample_deprecated_topic_is_parsed_and_marked_sampled() -> None:
    (line,) = lines("bybit_liquidations_deprecated_topic.jsonl")
    result = adapter().parse(line, RECV)
    assert result.stream == "liquidation"
    assert one(result) == Liquidation(
        venue="bybit", symbol="BTCUSDT", instrument="BTC-USDT-PERP", base="BTC", ts=1703485237953,
        recv_ts=RECV, side="short", price=D("43511.70"), qty=D("0.003"), notional_usd=D("130.53510"),
        order_id=None, sampled=True,
    )


def test_sample_trade() -> None:
    (line,) = lines("bybit_trades.jsonl")
    result = adapter().parse(line, RECV)
    assert result.stream == "trade"
    assert one(result) == Trade(
        venue="bybit", symbol="BTCUSDT", instrument="BTC-USDT-PERP", base="BTC", ts=1672304486865,
        recv_ts=RECV, side="buy", price=D("16578.50"), qty=D("0.001"), notional_usd=D("16.578500"),
        trade_id="20f43950-d8dd-5b31-9112-a178eb6023af",
    )


def test_sample_tickers_perpetual_and_dated_future() -> None:
    perpetual, future = lines("bybit_tickers.jsonl")
    ad = adapter(["BTCUSDT", "BTC-26DEC25"])
    result = ad.parse(perpetual, RECV)
    assert result.stream == "ticker"
    assert result.events == [
        OpenInterest(venue="bybit", symbol="BTCUSDT", instrument="BTC-USDT-PERP", base="BTC",
                     ts=1760325052630, recv_ts=RECV, oi_qty=D("492373.72"), oi_usd=D("32824881841.75")),
        Funding(venue="bybit", symbol="BTCUSDT", instrument="BTC-USDT-PERP", base="BTC", ts=1760325052630,
                recv_ts=RECV, rate=D("-0.005"), interval_h=8, next_funding_ts=1760342400000,
                mark_price=D("66666.60"), index_price=D("115418.19")),
    ]
    # a dated future: open interest, and no funding (its fundingRate and nextFundingTime are "")
    dated = ad.parse(future, RECV)
    assert (dated.rejects, dated.stream) == ([], "ticker")
    assert dated.events == [
        OpenInterest(venue="bybit", symbol="BTC-26DEC25", instrument="BTC-USDC-20251226", base="BTC",
                     ts=1760409119857, recv_ts=RECV, oi_qty=D("6.622"), oi_usd=D("802219.74")),
    ]


# ---------------------------------------------------------------- side convention and units


def test_position_side_convention_on_both_liquidation_topics() -> None:
    ad = adapter()
    result = ad.parse(liq_frame(liq(side="Buy", t=1), liq(side="Sell", t=2)), RECV)
    assert [e.side for e in result.events if isinstance(e, Liquidation)] == ["long", "short"]
    legacy = orjson.dumps({"topic": "liquidation.BTCUSDT", "type": "snapshot", "ts": 3, "data": {
        "updatedTime": 3, "symbol": "BTCUSDT", "side": "Buy", "size": "1", "price": "50000"}})
    event = one(ad.parse(legacy, RECV))
    assert isinstance(event, Liquidation)
    assert (event.side, event.sampled, event.notional_usd) == ("long", True, D("50000"))


def test_bundled_symbol_is_unbundled() -> None:
    ad = adapter(["1000PEPEUSDT"])
    event = one(ad.parse(liq_frame(liq(s="1000PEPEUSDT", v="312", p="0.01731"), symbol="1000PEPEUSDT"), RECV))
    assert isinstance(event, Liquidation)
    assert (event.base, event.instrument) == ("PEPE", "PEPE-USDT-PERP")
    assert (event.qty, event.price, event.notional_usd) == (D("312000"), D("0.00001731"), D("5.40072"))
    t = one(ad.parse(trade_frame(trade(s="1000PEPEUSDT", v="10", p="0.02", side="Sell"), symbol="1000PEPEUSDT"),
                     RECV))
    assert isinstance(t, Trade)
    assert (t.side, t.qty, t.price, t.notional_usd) == ("sell", D("10000"), D("0.00002"), D("0.20"))
    oi, funding = ad.parse(ticker("snapshot", 1, 1, "1000PEPEUSDT", openInterest="7", markPrice="0.02",
                                  fundingRate="0.0001", indexPrice="0.03"), RECV).events
    assert isinstance(oi, OpenInterest) and isinstance(funding, Funding)
    # no openInterestValue: OI × mark in venue units (the bundle cancels out)
    assert (oi.oi_qty, oi.oi_usd) == (D("7000"), D("0.14"))
    assert (funding.mark_price, funding.index_price, funding.interval_h) == (D("0.00002"), D("0.00003"), 8)


@pytest.mark.parametrize(
    ("symbol", "expected"),
    [
        ("BTCUSDT", ("BTC", "USDT", "BTC-USDT-PERP", D(1))),
        ("ETHUSDC", ("ETH", "USDC", "ETH-USDC-PERP", D(1))),
        ("BTCPERP", ("BTC", "USDC", "BTC-USDC-PERP", D(1))),
        ("1000PEPEUSDT", ("PEPE", "USDT", "PEPE-USDT-PERP", D(1000))),
        ("10000LADYSUSDT", ("LADYS", "USDT", "LADYS-USDT-PERP", D(10000))),
        ("1000000MOGUSDT", ("MOG", "USDT", "MOG-USDT-PERP", D(1000000))),
        ("1INCHUSDT", ("1INCH", "USDT", "1INCH-USDT-PERP", D(1))),
        ("BTC-26DEC25", ("BTC", "USDC", "BTC-USDC-20251226", D(1))),
        ("BTCUSDT-27MAR26", ("BTC", "USDT", "BTC-USDT-20260327", D(1))),
        ("BTCUSD", None),  # inverse: sizes in USD, another endpoint
        ("BTC-26XYZ25", None),
        ("BTC-PERP", None),
        ("btcusdt", None),
        ("USDT", None),
        ("", None),
        ("A" * 41, None),
        ("BTC USDT", None),
    ],
)
def test_symbol_normalization(symbol: str, expected: tuple[str, str, str, Decimal] | None) -> None:
    info = normalize_bybit_symbol(symbol)
    if expected is None:
        assert info is None
    else:
        assert info is not None
        assert (info.base, info.quote, info.instrument, info.multiplier) == expected


# ---------------------------------------------------------------- tickers: snapshot, deltas, state


def test_ticker_snapshot_then_sparse_deltas() -> None:
    ad = adapter()
    t0 = 1_760_000_000_000
    oi, funding = ad.parse(ticker("snapshot", t0, 10, **SNAPSHOT), RECV).events
    assert isinstance(oi, OpenInterest) and isinstance(funding, Funding)
    assert (oi.oi_qty, oi.oi_usd) == (D("50000"), D("5000025000"))
    assert (funding.rate, funding.mark_price, funding.index_price) == (D("0.0001"), D("100000.5"), D("100001.0"))

    # absent keys are unchanged: only OI moved, its value was not re-sent, no funding event
    moved = ad.parse(ticker("delta", t0 + 100, 11, openInterest="50001"), RECV)
    assert moved.events == [OpenInterest(venue="bybit", symbol="BTCUSDT", instrument="BTC-USDT-PERP",
                                         base="BTC", ts=t0 + 100, recv_ts=RECV, oi_qty=D("50001"),
                                         oi_usd=D("5000025000"))]
    # a delta without any tracked key changes nothing and emits nothing
    quiet = ad.parse(ticker("delta", t0 + 200, 12, bid1Price="99999", lastPrice="100000"), RECV)
    assert (quiet.events, quiet.rejects, quiet.stream) == ([], [], "ticker")
    # the rate changes: funding with the mark and index kept from the snapshot
    rate = one(ad.parse(ticker("delta", t0 + 300, 13, fundingRate="-0.0002"), RECV))
    assert isinstance(rate, Funding)
    assert (rate.rate, rate.interval_h, rate.next_funding_ts) == (D("-0.0002"), 8, 1760342400000)
    assert (rate.mark_price, rate.index_price) == (D("100000.5"), D("100001.0"))
    # a new interval is a funding change too
    four = one(ad.parse(ticker("delta", t0 + 400, 14, fundingIntervalHour="4"), RECV))
    assert isinstance(four, Funding) and four.interval_h == 4
    # marks tick every 100 ms: no event for them inside the refresh interval ...
    assert ad.parse(ticker("delta", t0 + 500, 15, markPrice="100100"), RECV).events == []
    # ... only the OI value moved: not re-emitted before OI_REVALUE_INTERVAL_MS ...
    assert ad.parse(ticker("delta", t0 + 600, 16, openInterestValue="5005050050"), RECV).events == []
    # ... and re-emitted after it, with the new value
    later = t0 + 100 + OI_REVALUE_INTERVAL_MS
    revalued = one(ad.parse(ticker("delta", later, 17, openInterestValue="5005050050"), RECV))
    assert isinstance(revalued, OpenInterest)
    assert (revalued.oi_qty, revalued.oi_usd) == (D("50001"), D("5005050050"))
    # an unchanged rate is refreshed (fresh mark) once the refresh interval passed
    refresh = one(ad.parse(ticker("delta", t0 + 400 + FUNDING_REFRESH_INTERVAL_MS, 18, markPrice="100200"),
                           RECV))
    assert isinstance(refresh, Funding)
    assert (refresh.rate, refresh.mark_price) == (D("-0.0002"), D("100200"))


def test_ticker_open_interest_value_falls_back_to_mark() -> None:
    ad = adapter()
    oi = one(ad.parse(ticker("snapshot", 5, 1, openInterest="2", markPrice="100.5"), RECV))
    assert isinstance(oi, OpenInterest)
    assert oi.oi_usd == D("201.0")
    alone = one(adapter().parse(ticker("snapshot", 5, 1, openInterest="2"), RECV))
    assert isinstance(alone, OpenInterest) and alone.oi_usd is None


def test_ticker_deltas_that_are_not_newer_are_duplicates() -> None:
    ad = adapter()
    ad.parse(ticker("snapshot", 10, 100, **SNAPSHOT), RECV)
    assert len(ad.parse(ticker("delta", 20, 101, openInterest="1"), RECV).events) == 1
    stale = ad.parse(ticker("delta", 15, 101, openInterest="2"), RECV)
    assert (stale.events, stale.duplicates) == ([], 1)
    older = ad.parse(ticker("delta", 15, 99, openInterest="3"), RECV)
    assert (older.events, older.duplicates) == ([], 1)
    # a snapshot always applies, whatever its sequence
    again = ad.parse(ticker("snapshot", 30, 50, **{**SNAPSHOT, "openInterest": "4"}), RECV)
    assert [type(e) for e in again.events] == [OpenInterest]


def test_reset_drops_the_ticker_state_of_that_connection_only() -> None:
    ad = adapter(["BTCUSDT", "ETHUSDT"])
    (plan,) = ad.ws_connections()
    ad.parse(ticker("snapshot", 10, 1, **SNAPSHOT), RECV)
    ad.parse(ticker("snapshot", 10, 1, "ETHUSDT", **SNAPSHOT), RECV)
    ad.reset_connection_state("some-other-connection")
    # unknown name: nothing known about it, so everything is reset (the safe side)
    lone = one(ad.parse(ticker("delta", 20, 2, openInterest="3"), RECV))
    assert isinstance(lone, OpenInterest) and lone.oi_usd is None, "the snapshot's value is gone"

    sharded = BybitLinearAdapter([f"C{i}USDT" for i in range(400)])
    first, second = sharded.ws_connections()[:2]
    sharded.parse(ticker("snapshot", 10, 1, "C0USDT", **SNAPSHOT), RECV)
    last = "C399USDT"
    sharded.parse(ticker("snapshot", 10, 1, last, **SNAPSHOT), RECV)
    sharded.reset_connection_state(second.name)
    kept = one(sharded.parse(ticker("delta", 20, 2, "C0USDT", openInterest="1"), RECV))
    assert isinstance(kept, OpenInterest) and kept.oi_usd == D("5000025000"), "other connection kept"
    dropped = one(sharded.parse(ticker("delta", 20, 2, last, openInterest="1"), RECV))
    assert isinstance(dropped, OpenInterest) and dropped.oi_usd is None
    assert first.name == "bybit-0" and plan.name == "bybit-0"


def test_resubscribe_snapshot_after_reconnect_is_not_news() -> None:
    ad = adapter()
    (plan,) = ad.ws_connections()
    assert len(ad.parse(ticker("snapshot", 10, 1, **SNAPSHOT), RECV).events) == 2
    ad.reset_connection_state(plan.name)
    # the venue re-sends the same snapshot on the new connection: nothing changed, nothing emitted
    assert ad.parse(ticker("snapshot", 20, 5, **SNAPSHOT), RECV).events == []
    changed = ad.parse(ticker("snapshot", 30, 6, **{**SNAPSHOT, "fundingRate": "0.0003"}), RECV)
    assert [type(e) for e in changed.events] == [Funding]


# ---------------------------------------------------------------- de-duplication


def test_trades_dedupe_by_id_across_a_reconnect_and_bounded() -> None:
    ad = BybitLinearAdapter(["BTCUSDT"], trade_dedupe_capacity=2)
    (plan,) = ad.ws_connections()
    first = ad.parse(trade_frame(trade("a"), trade("b")), RECV)
    assert (len(first.events), first.duplicates) == (2, 0)
    ad.reset_connection_state(plan.name)
    overlap = ad.parse(trade_frame(trade("a"), trade("b"), trade("c")), RECV)
    assert [e.trade_id for e in overlap.events if isinstance(e, Trade)] == ["c"]
    assert overlap.duplicates == 2
    ad.parse(trade_frame(trade("d")), RECV)
    # capacity 2: "a" fell out of the window
    assert len(ad.parse(trade_frame(trade("a")), RECV).events) == 1


def test_liquidations_dedupe_by_value_across_a_reconnect() -> None:
    ad = adapter()
    (plan,) = ad.ws_connections()
    assert len(ad.parse(liq_frame(liq()), RECV).events) == 1
    ad.reset_connection_state(plan.name)
    again = ad.parse(liq_frame(liq(v="0.50", p="100000.0")), RECV)  # same numbers, other text
    assert (again.events, again.duplicates) == ([], 1)
    other_side = ad.parse(liq_frame(liq(side="Sell")), RECV)
    assert len(other_side.events) == 1


# ---------------------------------------------------------------- control frames and replay side


def test_control_frames() -> None:
    ad = adapter()
    pong = ad.parse('{"success":true,"ret_msg":"pong","conn_id":"abc","req_id":"","op":"ping"}', RECV)
    assert (pong.control, pong.stream, pong.events, pong.rejects) == (True, "control", [], [])
    ack = ad.parse('{"success":true,"ret_msg":"","conn_id":"abc","req_id":"bybit-0-1","op":"subscribe"}', RECV)
    assert ack.control and not ack.rejects
    failed = ad.parse('{"success":false,"ret_msg":"error:handler not found","conn_id":"abc","op":"subscribe"}',
                      RECV)
    assert failed.control and kinds(failed) == ["venue_error"]
    assert ad.control('{"topic":"publicTrade.BTCUSDT"}') is None


def test_replay_replies() -> None:
    ad = adapter()
    sub = '{"op":"subscribe","args":["publicTrade.BTCUSDT"],"req_id":"bybit-0-1"}'
    assert ad.replay_replies(sub) == [
        '{"success":true,"ret_msg":"","conn_id":"replay","req_id":"bybit-0-1","op":"subscribe"}'
    ]
    assert ad.replay_replies('{"op":"subscribe","args":["x"]}') == [
        '{"success":true,"ret_msg":"","conn_id":"replay","req_id":"","op":"subscribe"}'
    ]
    assert ad.replay_replies(ad.app_ping_message or "") == [
        '{"success":true,"ret_msg":"pong","conn_id":"replay","req_id":"","op":"ping"}'
    ]
    for garbage in ["", "ping", "[]", "{}", '{"op":"auth"}', '{"op":"ping","req_id":true}']:
        assert ad.replay_replies(garbage) == []
    # what the replay server answers is what the adapter accepts as control frames
    for message in (sub, ad.app_ping_message or ""):
        assert ad.parse(ad.replay_replies(message)[0], RECV).control


# ---------------------------------------------------------------- connection plan and REST


def test_default_plan_and_class_attributes() -> None:
    ad = BybitLinearAdapter.from_config(BybitConfig.model_validate({"stale_after_s": 12}))
    (plan,) = ad.ws_connections()
    assert (plan.name, plan.url) == ("bybit-0", "wss://stream.bybit.com/v5/public/linear")
    messages = [orjson.loads(m) for m in plan.subscribe]
    assert messages[0] == {"op": "subscribe", "req_id": "bybit-0-1", "args": [
        "allLiquidation.BTCUSDT", "publicTrade.BTCUSDT", "tickers.BTCUSDT",
        "allLiquidation.ETHUSDT", "publicTrade.ETHUSDT", "tickers.ETHUSDT",
        "allLiquidation.SOLUSDT", "publicTrade.SOLUSDT", "tickers.SOLUSDT"]}
    assert len(messages) == 1
    assert ad.stale_after_s == 12
    assert (ad.app_ping_message, ad.app_ping_interval_s) == ('{"op":"ping"}', 20.0)
    assert (ad.venue, ad.default_rest_url, ad.liquidations_sampled) == ("bybit", "https://api.bybit.com", False)
    assert ad.max_connection_age_s is None
    assert ad.startup_requests() == [] and ad.rest_polls() == []
    assert BybitLinearAdapter(["btcusdt", " BTCUSDT ", "ETHUSDT"]).symbols == ["BTCUSDT", "ETHUSDT"]


def test_connections_are_sharded_by_args_length() -> None:
    symbols = [f"COIN{i}USDT" for i in range(1000)]
    plans = BybitLinearAdapter(symbols, ws_url="ws://127.0.0.1:9/v5/public/linear").ws_connections()
    assert len(plans) > 1
    seen: list[str] = []
    req_ids: list[str] = []
    for index, plan in enumerate(plans):
        assert (plan.name, plan.url) == (f"bybit-{index}", "ws://127.0.0.1:9/v5/public/linear")
        args: list[str] = []
        for message in plan.subscribe:
            decoded = orjson.loads(message)
            assert decoded["op"] == "subscribe"
            assert 0 < len(decoded["args"]) <= MAX_ARGS_PER_SUBSCRIBE
            args += decoded["args"]
            req_ids.append(decoded["req_id"])
        assert len(orjson.dumps(args)) <= MAX_ARGS_CHARS_PER_CONNECTION
        plan_symbols = [a.split(".", 1)[1] for a in args]
        # a symbol's three topics are on one connection
        assert all(plan_symbols.count(s) == 3 for s in plan_symbols)
        seen += dict.fromkeys(plan_symbols)
    assert seen == symbols
    assert len(set(req_ids)) == len(req_ids)


TICKERS_REST = orjson.dumps({"retCode": 0, "retMsg": "OK", "result": {"category": "linear", "list": [
    {"symbol": "BTCUSDT", "openInterestValue": "9000000000"},
    {"symbol": "ETHUSDT", "openInterestValue": "5000000000"},
    {"symbol": "SOLUSDT", "openInterestValue": "1000000000"},
    {"symbol": "XRPUSDT", "openInterestValue": "1000000000"},
    {"symbol": "BTC-26DEC25", "openInterestValue": "99000000000"},  # dated: not a candidate
    {"symbol": "DOGEUSDT", "openInterestValue": "NaN"},
    {"symbol": "BTCUSD", "openInterestValue": "1"},
]}, "retExtInfo": {}, "time": 1760325052630})


def test_top_n_by_open_interest_from_the_startup_tickers() -> None:
    ad = BybitLinearAdapter.from_config(BybitConfig.model_validate({"symbols": ["ETHUSDT"], "top_n_by_oi": 3}))
    assert ad.startup_requests() == ["/v5/market/tickers?category=linear"]
    result = ad.parse_rest("https://api.bybit.com/v5/market/tickers?category=linear", TICKERS_REST, RECV)
    assert (result.control, result.stream, result.events) == (True, "metadata", [])
    assert kinds(result) == ["non_finite", "unknown_symbol"]
    assert ad.top_symbols == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]  # ties broken by name
    assert ad.subscribed_symbols() == ["ETHUSDT", "BTCUSDT", "SOLUSDT"]
    args = [a for p in ad.ws_connections() for m in p.subscribe for a in orjson.loads(m)["args"]]
    assert {a.split(".", 1)[1] for a in args} == {"ETHUSDT", "BTCUSDT", "SOLUSDT"}


@pytest.mark.parametrize(
    ("endpoint", "body", "kind"),
    [
        ("/v5/market/tickers?category=linear", b'{"retCode":10001,"retMsg":"params error"}', "venue_error"),
        ("/v5/market/tickers?category=linear", b"<html>", "malformed_json"),
        ("/v5/market/tickers?category=linear", b'{"retCode":0,"result":{"list":5}}', "bad_field"),
        ("/v5/market/open-interest?symbol=BTCUSDT", b"{}", "unknown_endpoint"),
        ("http://[::1", b"{}", "unknown_endpoint"),
    ],
)
def test_bad_rest_responses(endpoint: str, body: bytes, kind: str) -> None:
    ad = adapter(top_n_by_oi=2)
    result = ad.parse_rest(endpoint, body, RECV)
    assert (result.events, kinds(result), ad.top_symbols) == ([], [kind], [])


# ---------------------------------------------------------------- ugly input


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (b'{"topic":"publicTrade.BTCUSDT","data":[', "malformed_json"),
        (b"\xff\xfe", "malformed_json"),
        (b'{"topic":"publicTrade.BTCUSDT","data":[{"p":NaN}]}', "malformed_json"),
        (b'"hello"', "not_an_object"),
        (b"[1,2]", "not_an_object"),
        (b'{"topic":"orderbook.50.BTCUSDT","data":{}}', "unknown_message"),
        (b'{"topic":5}', "unknown_message"),
        (b'{"foo":1}', "unknown_message"),
        (b'{"topic":"publicTrade.BTCUSDT","data":{"i":"x"}}', "bad_field"),
        (b'{"topic":"publicTrade.BTCUSDT","data":["junk"]}', "not_an_object"),
        (trade_frame(trade(p="NaN")), "non_finite"),
        (trade_frame(trade(p="Infinity")), "non_finite"),
        (trade_frame(trade(v="-1")), "negative"),
        (trade_frame(trade(p="0")), "bad_number"),
        (trade_frame(trade(p="1" * 100)), "bad_number"),
        (trade_frame(trade(p="1e999")), "bad_number"),
        (trade_frame(trade(p=True)), "bad_number"),
        (trade_frame(trade(s="BTCUSD")), "unknown_symbol"),
        (trade_frame(trade(s="??")), "unknown_symbol"),
        (trade_frame(trade(s=7)), "bad_field"),
        (trade_frame(trade(side="buy")), "bad_field"),
        (trade_frame(trade(i="")), "bad_field"),
        (trade_frame(trade(i=12)), "bad_field"),
        (trade_frame(trade(t="1672304486865")), "bad_field"),
        (trade_frame(trade(t=-1)), "bad_field"),
        (trade_frame({k: v for k, v in trade().items() if k != "v"}), "missing_field"),
        (liq_frame(liq(side="Long")), "bad_field"),
        (liq_frame(liq(v="0")), "bad_number"),
        (liq_frame(liq(p="-5")), "negative"),
        (liq_frame(liq(t=1.5)), "bad_field"),
        (ticker("snapshot", 1, 1, openInterest="NaN"), "non_finite"),
        (ticker("snapshot", 1, 1, openInterest="-3"), "negative"),
        (ticker("snapshot", 1, 1, fundingIntervalHour="1.5"), "bad_field"),
        (ticker("snapshot", 1, 1, fundingIntervalHour="0"), "bad_field"),
        (ticker("snapshot", 1, 1, nextFundingTime="soon"), "bad_field"),
        (ticker("snapshot", 1, 1, nextFundingTime=True), "bad_field"),
        (ticker("snapshot", 1, -1, openInterest="1"), "bad_field"),
        (ticker("partial", 1, 1, openInterest="1"), "bad_field"),
        (ticker("snapshot", 0, 1, openInterest="1"), "bad_field"),
        (ticker("snapshot", 1, 1, "NOPE", openInterest="1"), "unknown_symbol"),
        (orjson.dumps({"topic": "tickers.BTCUSDT", "type": "delta", "data": [], "ts": 1}), "not_an_object"),
        (orjson.dumps({"topic": "liquidation.BTCUSDT", "data": {"symbol": "BTCUSDT", "side": "Sell",
                                                                "size": "1", "price": "1"}}), "missing_field"),
    ],
)
def test_bad_input_is_rejected_not_raised(raw: bytes, kind: str) -> None:
    result = adapter().parse(raw, RECV)
    assert result.events == []
    assert kinds(result) == [kind], result.rejects


def test_a_bad_element_costs_only_itself() -> None:
    result = adapter().parse(liq_frame(liq(t=1), liq(p="NaN", t=2), "junk", liq(t=3, side="Sell")), RECV)
    assert [e.ts for e in result.events] == [1, 3]
    assert kinds(result) == ["non_finite", "not_an_object"]


def test_a_bad_ticker_delta_leaves_the_state_unchanged() -> None:
    ad = adapter()
    oi = one(ad.parse(ticker("snapshot", 10, 1, openInterest="50000", markPrice="100"), RECV))
    assert isinstance(oi, OpenInterest) and oi.oi_usd == D("5000000")
    bad = ad.parse(ticker("delta", 20, 2, markPrice="200", fundingRate="NaN"), RECV)
    assert (bad.events, kinds(bad)) == ([], ["non_finite"])
    # the rejected delta's mark was not merged: the next OI is valued at the snapshot's mark
    later = one(ad.parse(ticker("delta", 30, 3, openInterest="50001"), RECV))
    assert isinstance(later, OpenInterest) and later.oi_usd == D("5000100")


def test_unknown_fields_are_ignored() -> None:
    ad = adapter()
    event = one(ad.parse(trade_frame(trade(RPI=True, extra={"nested": [1]})), RECV))
    assert isinstance(event, Trade)
    framed = orjson.loads(liq_frame(liq()))
    framed["new_field"] = {"x": 1}
    assert len(ad.parse(orjson.dumps(framed), RECV).events) == 1
    assert len(ad.parse(ticker("snapshot", 1, 1, someNewKey="1", **SNAPSHOT), RECV).events) == 2


def test_huge_frame_is_rejected_before_parsing() -> None:
    huge = b'{"topic":"publicTrade.BTCUSDT","data":"' + b"a" * MAX_FRAME_BYTES + b'"}'
    assert kinds(adapter().parse(huge, RECV)) == ["frame_too_large"]
    assert kinds(adapter().parse(huge.decode(), RECV)) == ["frame_too_large"]


# ---------------------------------------------------------------- property tests: parse never raises

ALLOWED_REJECTS = {
    "malformed_json", "not_an_object", "unknown_message", "bad_field", "missing_field", "bad_number",
    "non_finite", "negative", "unknown_symbol", "frame_too_large", "venue_error", "unknown_endpoint",
}
STREAM_LABELS = {"liquidation", "trade", "ticker", "control", "unknown", "metadata"}


def check(result: ParseResult) -> None:
    venue_props.check_common(result, "bybit", ALLOWED_REJECTS, STREAM_LABELS, gaps=False)
    for event in result.events:
        assert event.ts > 0
        if isinstance(event, Liquidation | Trade):
            assert event.price > 0 and event.qty > 0
            assert EXACT.multiply(event.qty, event.price) == event.notional_usd
        elif isinstance(event, OpenInterest):
            assert event.oi_qty >= 0
        elif isinstance(event, Funding):
            assert event.interval_h > 0
            assert event.mark_price is None or event.mark_price > 0


json_values = venue_props.json_values([
    "NaN", "-1", "0", "1e9999", "BTCUSDT", "Buy", "Sell", "", "0.0001", "snapshot", "delta",
])

SEEDS: list[Callable[[], Any]] = [
    lambda: orjson.loads(liq_frame(liq(), liq(side="Sell", t=5))),
    lambda: orjson.loads(trade_frame(trade("x"), trade("y"))),
    lambda: orjson.loads(ticker("snapshot", 10, 1, **SNAPSHOT)),
    lambda: orjson.loads(ticker("delta", 11, 2, openInterest="3", markPrice="4")),
    lambda: orjson.loads(lines("bybit_liquidations_deprecated_topic.jsonl")[0]),
    lambda: {"success": True, "ret_msg": "pong", "conn_id": "x", "req_id": "", "op": "ping"},
]


@venue_props.never_raises(300)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    ad = adapter(top_n_by_oi=3)
    check(ad.parse(raw, RECV))
    check(ad.parse_rest("/v5/market/tickers?category=linear", raw, RECV))


@venue_props.never_raises(300)
@given(json_values, st.sampled_from(["allLiquidation.BTCUSDT", "publicTrade.BTCUSDT", "tickers.BTCUSDT",
                                     "liquidation.BTCUSDT", None]))
def test_arbitrary_json_never_raises(value: Any, topic: str | None) -> None:
    if topic is not None and isinstance(value, dict):
        value["topic"] = topic
    ad = adapter(top_n_by_oi=3)
    check(ad.parse(orjson.dumps(value), RECV))
    check(ad.parse(orjson.dumps({"topic": topic, "type": "delta", "ts": 5, "data": value}), RECV))
    check(ad.parse_rest("/v5/market/tickers", orjson.dumps({"retCode": 0, "result": {"list": value}}), RECV))
    assert isinstance(ad.replay_replies(orjson.dumps(value).decode()), list)


@venue_props.never_raises(500)
@given(venue_props.mutated_frames(SEEDS, json_values))
def test_mutated_real_frames_never_raise(raw: bytes) -> None:
    ad = adapter()
    ad.parse(ticker("snapshot", 1, 0, **SNAPSHOT), RECV)  # so deltas merge into a real state
    check(ad.parse(raw, RECV))
    check(ad.parse(raw, RECV))  # and again: de-dup and ticker state must not trip either
