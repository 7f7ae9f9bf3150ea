"""OKX v5 swap adapter: every sample payload by value (contracts → base → USD), metadata, de-duplication,
the disconnect notice, and ugly input."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Context, Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flushwatch.config import OkxConfig
from flushwatch.events import Funding, Liquidation, OpenInterest, Trade
from ingest.base import ControlAction, ParseResult, RestPoll
from ingest.okx import INVERSE_QTY_CONTEXT, MAX_ARGS_CHARS_PER_CONNECTION, MAX_FRAME_BYTES, OkxSwapAdapter
from tests.unit import venue_props
from tests.unit.venue_props import kinds, one

FIXTURES = Path(__file__).parent.parent / "fixtures" / "okx"
RECV = 1_700_000_000_000
D = Decimal
EXACT = Context(prec=200)
INSTRUMENTS_PATH = "/api/v5/public/instruments?instType=SWAP"


def lines(name: str) -> list[str]:
    return (FIXTURES / name).read_text(encoding="utf-8").splitlines()


def instrument_entries() -> list[dict[str, Any]]:
    """The recorded BTC-USDT-SWAP (linear, ctVal 0.01 BTC) and BTC-USD-SWAP (inverse, ctVal 100 USD)."""
    return [orjson.loads(line) for line in lines("okx_instruments_rest.jsonl")]


def entry(inst_id: str, ct_type: str, ct_val: str, ct_val_ccy: str, settle: str, uly: str,
          ct_mult: str = "1") -> dict[str, Any]:
    """A test-built instrument entry (not from a recording; see tests/fixtures/okx/SOURCES.md)."""
    return {"instId": inst_id, "instType": "SWAP", "ctType": ct_type, "ctVal": ct_val, "ctMult": ct_mult,
            "ctValCcy": ct_val_ccy, "settleCcy": settle, "uly": uly, "instFamily": uly, "state": "live"}


#: test assumptions for the two samples whose instruments no recording carries
IOST = entry("IOST-USDT-SWAP", "linear", "1000", "IOST", "USDT", "IOST-USDT")
UNI = entry("UNI-USD-SWAP", "inverse", "10", "USD", "UNI", "UNI-USD")


def instruments_body(*entries: dict[str, Any]) -> bytes:
    return orjson.dumps({"code": "0", "msg": "", "data": list(entries)})


def adapter(symbols: list[str] | None = None, extra: tuple[dict[str, Any], ...] = (IOST, UNI),
            **kwargs: Any) -> OkxSwapAdapter:
    ad = OkxSwapAdapter(symbols if symbols is not None else ["BTC-USDT-SWAP"], **kwargs)
    result = ad.parse_rest(INSTRUMENTS_PATH, instruments_body(*instrument_entries(), *extra), RECV)
    assert (result.rejects, result.control, result.stream) == ([], True, "metadata")
    return ad


def push(channel: str, *data: dict[str, Any], **arg: str) -> bytes:
    return orjson.dumps({"arg": {"channel": channel, **arg}, "data": list(data)})


def detail(side: str = "sell", pos: str = "long", sz: str = "13", px: str = "40000", ts: str = "1692266434010",
           **extra: Any) -> dict[str, Any]:
    return {"bkLoss": "0", "bkPx": px, "ccy": "", "posSide": pos, "side": side, "sz": sz, "ts": ts, **extra}


def liquidations(inst_id: str, *details: dict[str, Any]) -> bytes:
    uly = inst_id.rsplit("-", 1)[0]
    return push("liquidation-orders", {"details": list(details), "instFamily": uly, "instId": inst_id,
                                       "instType": "SWAP", "uly": uly}, instType="SWAP")


def trade(inst_id: str = "BTC-USDT-SWAP", trade_id: str = "1", px: str = "42219.9", sz: str = "12",
          side: str = "buy", ts: str = "1630048897897", **extra: Any) -> bytes:
    return push("trades", {"instId": inst_id, "tradeId": trade_id, "px": px, "sz": sz, "side": side, "ts": ts,
                           **extra}, instId=inst_id)


def mark(inst_id: str = "BTC-USDT-SWAP", px: str = "42000", ts: str = "1700724675000") -> bytes:
    return push("mark-price", {"instType": "SWAP", "instId": inst_id, "markPx": px, "ts": ts}, instId=inst_id)


def open_interest(inst_id: str = "BTC-USDT-SWAP", ts: str = "1743041250440", **fields: str) -> bytes:
    return push("open-interest", {"instId": inst_id, "instType": "SWAP", "ts": ts, **fields}, instId=inst_id)


def funding(inst_id: str = "BTC-USDT-SWAP", rate: str = "0.0001", at: str = "1700726400000",
            following: str = "1700755200000", ts: str = "1700724675402") -> bytes:
    return push("funding-rate", {"fundingRate": rate, "fundingTime": at, "instId": inst_id, "instType": "SWAP",
                                 "nextFundingTime": following, "ts": ts}, instId=inst_id)


# ---------------------------------------------------------------- metadata


def test_instruments_sample_loads_linear_and_inverse() -> None:
    ad = adapter(extra=())
    linear, inverse = ad.instruments["BTC-USDT-SWAP"], ad.instruments["BTC-USD-SWAP"]
    assert (linear.ct_type, linear.ct_val, linear.ct_mult, linear.ct_val_ccy, linear.settle_ccy) == (
        "linear", D("0.01"), D("1"), "BTC", "USDT")
    assert (linear.info.base, linear.info.quote, linear.info.instrument) == ("BTC", "USDT", "BTC-USDT-PERP")
    assert (inverse.ct_type, inverse.ct_val, inverse.ct_val_ccy, inverse.settle_ccy) == (
        "inverse", D("100"), "USD", "BTC")
    assert (inverse.info.base, inverse.info.instrument) == ("BTC", "BTC-USD-PERP")
    assert set(ad.instruments) == {"BTC-USDT-SWAP", "BTC-USD-SWAP"}


def test_instrument_refresh_updates_and_never_forgets() -> None:
    ad = adapter(extra=())
    changed = {**instrument_entries()[0], "ctVal": "0.001"}
    bad = [{"instId": "X-USDT-SWAP", "ctType": "quanto", "ctVal": "1", "uly": "X-USDT"},
           {"instId": "Y-USDT-SWAP", "ctType": "linear", "ctVal": "0", "uly": "Y-USDT"},
           {"instId": "Z-USDT-SWAP", "ctType": "linear", "ctVal": "1", "uly": "Z_USDT"},
           "junk"]
    result = ad.parse_rest("https://www.okx.com" + INSTRUMENTS_PATH, instruments_body(changed, *bad), RECV)
    assert kinds(result) == ["bad_field", "bad_number", "bad_field", "not_an_object"]
    assert ad.instruments["BTC-USDT-SWAP"].ct_val == D("0.001")
    assert "BTC-USD-SWAP" in ad.instruments, "absent from the refresh, still known"
    # an error response changes nothing
    error = ad.parse_rest(INSTRUMENTS_PATH, b'{"code":"50011","msg":"Too Many Requests","data":[]}', RECV)
    assert (kinds(error), len(ad.instruments)) == (["venue_error"], 2)


def test_rest_schedule_and_startup() -> None:
    ad = OkxSwapAdapter.from_config(OkxConfig.model_validate({"instruments_refresh_s": 600, "stale_after_s": 20}))
    assert ad.startup_requests() == [INSTRUMENTS_PATH]
    assert ad.rest_polls() == [RestPoll(path=INSTRUMENTS_PATH, interval_s=600, weight=1)]
    assert ad.stale_after_s == 20
    assert ad.symbols == ["BTC-USDT-SWAP", "ETH-USDT-SWAP", "SOL-USDT-SWAP"]
    assert (ad.venue, ad.default_ws_url, ad.default_rest_url) == (
        "okx", "wss://ws.okx.com:8443/ws/v5/public", "https://www.okx.com")
    assert (ad.app_ping_message, ad.app_ping_interval_s, ad.liquidations_sampled) == ("ping", 25.0, True)
    assert ad.max_connection_age_s is None


# ---------------------------------------------------------------- liquidations: side and size


def test_sample_liquidation() -> None:
    (line,) = lines("okx_liquidations.jsonl")
    result = adapter().parse(line, RECV)
    assert result.stream == "liquidation"
    # 13 contracts x 1000 IOST (test ctVal) = 13000 IOST at the bankruptcy price 0.007831
    assert one(result) == Liquidation(
        venue="okx", symbol="IOST-USDT-SWAP", instrument="IOST-USDT-PERP", base="IOST", ts=1692266434010,
        recv_ts=RECV, side="short", price=D("0.007831"), qty=D("13000"), notional_usd=D("101.803"),
        order_id=None, sampled=True,
    )


def test_liquidation_linear_and_inverse_sizes_from_the_instruments_sample() -> None:
    ad = adapter()
    linear = one(ad.parse(liquidations("BTC-USDT-SWAP", detail(sz="13", px="40000.5")), RECV))
    assert isinstance(linear, Liquidation)
    # 13 contracts x ctVal 0.01 BTC x ctMult 1 = 0.13 BTC; x 40000.5 USDT
    assert (linear.side, linear.qty, linear.price, linear.notional_usd) == (
        "long", D("0.13"), D("40000.5"), D("5200.065"))
    assert linear.notional_usd == D("13") * D("0.01") * D("40000.5")
    inverse = one(ad.parse(liquidations("BTC-USD-SWAP", detail(sz="13", px="40000", pos="short", side="buy")),
                           RECV))
    assert isinstance(inverse, Liquidation)
    # 13 contracts x 100 USD = 1300 USD, which is 1300 / 40000 = 0.0325 BTC
    assert (inverse.side, inverse.notional_usd, inverse.qty, inverse.price) == (
        "short", D("1300"), D("0.0325"), D("40000"))
    assert (inverse.base, inverse.instrument) == ("BTC", "BTC-USD-PERP")


def test_inverse_quantity_is_rounded_and_the_notional_exact() -> None:
    event = one(adapter().parse(liquidations("BTC-USD-SWAP", detail(sz="1", px="30000")), RECV))
    assert isinstance(event, Liquidation)
    assert event.notional_usd == D("100")
    assert event.qty == INVERSE_QTY_CONTEXT.divide(D(100), D(30000)) == D("0.003333333333333333333333333333333333")


@pytest.mark.parametrize(
    ("side", "pos", "expected"),
    [("sell", "long", "long"), ("sell", "net", "long"), ("buy", "short", "short"), ("buy", "net", "short"),
     ("sell", "", "long"), ("buy", None, "short")],
)
def test_order_side_is_the_opposite_of_the_liquidated_position(side: str, pos: str | None, expected: str) -> None:
    payload = detail(side=side, pos="x")
    if pos is None:
        del payload["posSide"]
    else:
        payload["posSide"] = pos
    event = one(adapter().parse(liquidations("BTC-USDT-SWAP", payload), RECV))
    assert isinstance(event, Liquidation) and event.side == expected


def test_contradicting_position_side_is_rejected() -> None:
    result = adapter().parse(liquidations("BTC-USDT-SWAP", detail(side="buy", pos="long"),
                                          detail(side="sell", pos="long", ts="5")), RECV)
    assert kinds(result) == ["bad_field"]
    assert [e.ts for e in result.events] == [5]


def test_market_wide_liquidations_keep_every_known_instrument() -> None:
    ad = adapter(["ETH-USDT-SWAP"])  # BTC is not configured, but its metadata is known
    assert len(ad.parse(liquidations("BTC-USDT-SWAP", detail()), RECV).events) == 1
    unknown = ad.parse(liquidations("DOGE-USDT-SWAP", detail()), RECV)
    assert (unknown.events, kinds(unknown)) == ([], ["unknown_symbol"])


def test_liquidations_dedupe_out_of_order_and_across_reconnect() -> None:
    ad = adapter()
    (plan,) = ad.ws_connections()
    later, earlier = detail(ts="2000"), detail(ts="1000")
    assert len(ad.parse(liquidations("BTC-USDT-SWAP", later), RECV).events) == 1
    # not time-ordered: an earlier one arriving late is new, not a duplicate
    assert len(ad.parse(liquidations("BTC-USDT-SWAP", earlier), RECV).events) == 1
    ad.reset_connection_state(plan.name)
    again = ad.parse(liquidations("BTC-USDT-SWAP", later, {**earlier, "sz": "13.0"}), RECV)
    assert (again.events, again.duplicates) == ([], 2)


# ---------------------------------------------------------------- trades


def test_sample_trades() -> None:
    spot, uni = lines("okx_trades.jsonl")
    ad = adapter()
    # the doc example is a spot trade: no SWAP metadata, dead-lettered
    assert kinds(ad.parse(spot, RECV)) == ["unknown_symbol"]
    # the same payload on the linear swap: 0.12060306 contracts x 0.01 BTC
    as_swap = one(ad.parse(spot.replace("BTC-USDT", "BTC-USDT-SWAP"), RECV))
    assert as_swap == Trade(
        venue="okx", symbol="BTC-USDT-SWAP", instrument="BTC-USDT-PERP", base="BTC", ts=1630048897897,
        recv_ts=RECV, side="buy", price=D("42219.9"), qty=D("0.0012060306"),
        notional_usd=D("0.0012060306") * D("42219.9"), trade_id="130639474",
    )
    assert as_swap.notional_usd == D("50.91849132894")  # 0.0012060306 x 42219.9
    # the recorded inverse swap: 100 contracts x 10 USD (test ctVal) = 1000 USD, sold by the taker
    event = one(ad.parse(uni, RECV))
    assert event == Trade(
        venue="okx", symbol="UNI-USD-SWAP", instrument="UNI-USD-PERP", base="UNI", ts=1652459215150,
        recv_ts=RECV, side="sell", price=D("5.123"), qty=INVERSE_QTY_CONTEXT.divide(D(1000), D("5.123")),
        notional_usd=D("1000"), trade_id="12883020",
    )


def test_trades_dedupe_by_instrument_and_id_across_reconnect() -> None:
    ad = adapter(trade_dedupe_capacity=3)
    (plan,) = ad.ws_connections()
    assert len(ad.parse(trade(trade_id="1"), RECV).events) == 1
    assert len(ad.parse(trade("BTC-USD-SWAP", trade_id="1"), RECV).events) == 1, "ids are per instrument"
    ad.reset_connection_state(plan.name)
    again = ad.parse(trade(trade_id="1"), RECV)
    assert (again.events, again.duplicates) == ([], 1)
    for n in range(2, 5):
        ad.parse(trade(trade_id=str(n)), RECV)
    assert len(ad.parse(trade(trade_id="1"), RECV).events) == 1, "fell out of the bounded window"


# ---------------------------------------------------------------- open interest, funding, mark


def test_sample_open_interest() -> None:
    (line,) = lines("okx_open_interest.jsonl")
    result = adapter().parse(line, RECV)
    assert result.stream == "open_interest"
    assert one(result) == OpenInterest(
        venue="okx", symbol="BTC-USDT-SWAP", instrument="BTC-USDT-PERP", base="BTC", ts=1743041250440,
        recv_ts=RECV, oi_qty=D("22161.1301000000309"), oi_usd=D("1939251795.54769270396321"),
    )


def test_open_interest_derived_from_contracts() -> None:
    ad = adapter()
    no_mark = one(ad.parse(open_interest(oi="5000", ts="1"), RECV))
    assert isinstance(no_mark, OpenInterest)
    assert (no_mark.oi_qty, no_mark.oi_usd) == (D("50"), None)  # 5000 x 0.01 BTC, nothing to value it
    ad.parse(mark(px="40000"), RECV)
    valued = one(ad.parse(open_interest(oi="5000", ts="2"), RECV))
    assert isinstance(valued, OpenInterest) and valued.oi_usd == D("2000000")
    # inverse: the USD amount is the contracts; the coins need the mark
    missing = ad.parse(open_interest("BTC-USD-SWAP", oi="300", ts="3"), RECV)
    assert kinds(missing) == ["missing_field"]
    ad.parse(mark("BTC-USD-SWAP", px="40000"), RECV)
    inverse = one(ad.parse(open_interest("BTC-USD-SWAP", oi="300", ts="4"), RECV))
    assert isinstance(inverse, OpenInterest)
    assert (inverse.oi_usd, inverse.oi_qty) == (D("30000"), D("0.75"))


def test_open_interest_repeats_are_duplicates() -> None:
    ad = adapter()
    (line,) = lines("okx_open_interest.jsonl")
    assert len(ad.parse(line, RECV).events) == 1
    again = ad.parse(line, RECV)
    assert (again.events, again.duplicates) == ([], 1)


def test_sample_funding_with_mark() -> None:
    (line,) = lines("okx_funding_rate.jsonl")
    ad = adapter()
    expected = Funding(
        venue="okx", symbol="BTC-USD-SWAP", instrument="BTC-USD-PERP", base="BTC", ts=1700724675402,
        recv_ts=RECV, rate=D("0.0001875391284828"), interval_h=8, next_funding_ts=1700726400000,
        mark_price=None, index_price=None,
    )
    assert one(ad.parse(line, RECV)) == expected
    fresh = adapter()
    fresh.parse(mark("BTC-USD-SWAP", px="37500.1"), RECV)
    result = fresh.parse(line, RECV)
    assert result.stream == "funding"
    event = one(result)
    assert isinstance(event, Funding) and event.mark_price == D("37500.1")


def test_funding_interval_from_the_two_settlement_times() -> None:
    ad = adapter()
    four = one(ad.parse(funding(at="1700726400000", following="1700740800000", ts="1"), RECV))
    assert isinstance(four, Funding) and four.interval_h == 4
    unknown_next = one(ad.parse(funding(following="", ts="2"), RECV))
    assert isinstance(unknown_next, Funding) and unknown_next.interval_h == 8
    assert kinds(ad.parse(funding(following="1700726400000", ts="3"), RECV)) == ["bad_field"]
    assert kinds(ad.parse(funding(following="1700728200000", ts="4"), RECV)) == ["bad_field"]  # 30 min
    repeat = ad.parse(funding(ts="2"), RECV)
    assert (repeat.events, repeat.duplicates) == ([], 1)


def test_sample_mark_price() -> None:
    (line,) = lines("okx_mark_price.jsonl")
    ad = adapter()
    # the doc example is a dated FUTURES contract: no SWAP metadata
    assert kinds(ad.parse(line, RECV)) == ["unknown_symbol"]
    result = ad.parse(line.replace("LTC-USD-190628", "BTC-USD-SWAP"), RECV)
    assert (result.events, result.rejects, result.stream) == ([], [], "mark_price")
    assert ad.last_mark_price("BTC-USD-SWAP") == D("0.1")
    # an older mark does not overwrite a newer one
    ad.parse(mark("BTC-USD-SWAP", px="5", ts="1597026383084"), RECV)
    assert ad.last_mark_price("BTC-USD-SWAP") == D("0.1")


# ---------------------------------------------------------------- control frames, notice, replay


def test_pong_acks_errors_and_notices_are_control() -> None:
    ad = adapter()
    for frame in ("pong", b"pong",
                  '{"id":"1","event":"subscribe","arg":{"channel":"trades","instId":"BTC-USDT-SWAP"},"connId":"a"}',
                  '{"event":"channel-conn-count","channel":"trades","connCount":"2","connId":"a"}',
                  '{"event":"notice","code":"64008","msg":"The connection will soon be closed","connId":"a"}'):
        result = ad.parse(frame, RECV)
        assert (result.control, result.stream, result.events, result.rejects) == (True, "control", [], [])
    error = ad.parse('{"event":"error","code":"60012","msg":"Invalid request","connId":"a"}', RECV)
    assert error.control and kinds(error) == ["venue_error"]


def test_notice_64008_rotates_the_connection() -> None:
    ad = adapter()
    notice = '{"event":"notice","code":"64008","msg":"The connection will soon be closed for a service upgrade. ' \
             'Please reconnect.","connId":"a4d3ae55"}'
    assert ad.control(notice) == ControlAction(rotate=True)
    for frame in ("pong", '{"event":"notice","code":"64009","msg":"other"}', trade().decode(),
                  '{"arg":{"channel":"trades"},"data":[{"tradeId":"64008","msg":"notice"}]}',
                  "notice 64008 {not json", '["notice","64008"]'):
        assert ad.control(frame) is None, frame


def test_replay_replies() -> None:
    ad = adapter()
    assert ad.replay_replies("ping") == ["pong"]
    (plan,) = ad.ws_connections()
    replies = ad.replay_replies(plan.subscribe[0])
    assert [orjson.loads(r) for r in replies] == [
        {"id": "1", "event": "subscribe", "arg": {"channel": "liquidation-orders", "instType": "SWAP"},
         "connId": "replay"},
        *({"id": "1", "event": "subscribe", "arg": {"channel": channel, "instId": "BTC-USDT-SWAP"},
           "connId": "replay"} for channel in ("trades", "open-interest", "funding-rate", "mark-price")),
    ]
    assert ad.replay_replies('{"op":"subscribe","args":[{"channel":"trades","instId":"X"}]}') == [
        '{"event":"subscribe","arg":{"channel":"trades","instId":"X"},"connId":"replay"}'
    ]
    assert ad.replay_replies('{"op":"unsubscribe","args":[{"channel":"trades"}]}') == [
        '{"event":"unsubscribe","arg":{"channel":"trades"},"connId":"replay"}'
    ]
    for garbage in ["", "PING", "[]", "{}", '{"op":"login","args":[]}', '{"op":"subscribe","args":"x"}',
                    '{"op":"subscribe","args":[1]}']:
        assert ad.replay_replies(garbage) == []
    for reply in [*replies, "pong"]:
        assert ad.parse(reply, RECV).control


# ---------------------------------------------------------------- connection plan and top-N


def test_default_plan() -> None:
    ad = OkxSwapAdapter(["btc-usdt-swap", "BTC-USD-SWAP"])
    (plan,) = ad.ws_connections()
    assert (plan.name, plan.url) == ("okx-0", "wss://ws.okx.com:8443/ws/v5/public")
    (message,) = [orjson.loads(m) for m in plan.subscribe]
    assert message["op"] == "subscribe" and message["id"] == "1"
    assert message["args"][0] == {"channel": "liquidation-orders", "instType": "SWAP"}
    assert [(a["channel"], a["instId"]) for a in message["args"][1:]] == [
        (channel, inst) for inst in ("BTC-USDT-SWAP", "BTC-USD-SWAP")
        for channel in ("trades", "open-interest", "funding-rate", "mark-price")
    ]


def test_connections_are_sharded_and_liquidations_ride_on_the_first() -> None:
    symbols = [f"COIN{i}-USDT-SWAP" for i in range(800)]
    plans = OkxSwapAdapter(symbols).ws_connections()
    assert len(plans) > 1
    ids: list[str] = []
    subscribed: list[str] = []
    for index, plan in enumerate(plans):
        assert plan.name == f"okx-{index}"
        args: list[dict[str, str]] = []
        for message in plan.subscribe:
            decoded = orjson.loads(message)
            assert len(decoded["args"]) <= 100
            ids.append(decoded["id"])
            args += decoded["args"]
        assert len(orjson.dumps(args)) <= MAX_ARGS_CHARS_PER_CONNECTION
        assert (args[0]["channel"] == "liquidation-orders") == (index == 0)
        assert sum(a["channel"] == "liquidation-orders" for a in args) == (index == 0)
        subscribed += [a["instId"] for a in args if a["channel"] == "trades"]
    assert subscribed == symbols
    assert len(set(ids)) == len(ids)


def test_top_n_by_open_interest() -> None:
    ad = adapter(["BTC-USD-SWAP"], top_n_by_oi=2)
    assert ad.startup_requests() == [INSTRUMENTS_PATH, "/api/v5/public/open-interest?instType=SWAP"]
    body = orjson.dumps({"code": "0", "msg": "", "data": [
        {"instType": "SWAP", "instId": "BTC-USDT-SWAP", "oi": "5000", "oiCcy": "50", "oiUsd": "5000000",
         "ts": "1"},
        {"instType": "SWAP", "instId": "IOST-USDT-SWAP", "oi": "1", "oiCcy": "1", "oiUsd": "9000000", "ts": "1"},
        {"instType": "SWAP", "instId": "UNI-USD-SWAP", "oi": "1", "oiCcy": "1", "oiUsd": "10", "ts": "1"},
        {"instType": "SWAP", "instId": "NEW-USDT-SWAP", "oi": "1", "oiCcy": "1", "oiUsd": "1e12", "ts": "1"},
    ]})
    result = ad.parse_rest("/api/v5/public/open-interest?instType=SWAP", body, RECV)
    assert (result.events, result.control, kinds(result)) == ([], True, ["unknown_symbol"])
    assert ad.top_symbols == ["IOST-USDT-SWAP", "BTC-USDT-SWAP"]
    assert ad.subscribed_symbols() == ["BTC-USD-SWAP", "IOST-USDT-SWAP", "BTC-USDT-SWAP"]


@pytest.mark.parametrize(
    ("endpoint", "body", "kind"),
    [
        (INSTRUMENTS_PATH, b"<html>", "malformed_json"),
        (INSTRUMENTS_PATH, b'{"code":"0","data":{}}', "bad_field"),
        (INSTRUMENTS_PATH, b'{"code":0,"data":[]}', "venue_error"),
        ("/api/v5/public/funding-rate?instId=BTC-USDT-SWAP", b"{}", "unknown_endpoint"),
        ("http://[::1", b"{}", "unknown_endpoint"),
    ],
)
def test_bad_rest_responses(endpoint: str, body: bytes, kind: str) -> None:
    result = adapter().parse_rest(endpoint, body, RECV)
    assert (result.events, kinds(result)) == ([], [kind])


# ---------------------------------------------------------------- ugly input


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (b'{"arg":{"channel":"trades"},"data":[', "malformed_json"),
        (b"\xff\xfe", "malformed_json"),
        (b"ping", "malformed_json"),
        (b'{"arg":{"channel":"trades"},"data":[{"px":NaN}]}', "malformed_json"),
        (b'"pong"', "not_an_object"),
        (b"[]", "not_an_object"),
        (b'{"data":[]}', "not_an_object"),
        (b'{"arg":{"channel":"books"},"data":[]}', "unknown_message"),
        (b'{"arg":{"channel":["trades"]},"data":[]}', "unknown_message"),
        (b'{"arg":{"channel":"trades"},"data":{}}', "bad_field"),
        (b'{"arg":{"channel":"trades"},"data":[7]}', "not_an_object"),
        (trade(px="NaN"), "non_finite"),
        (trade(px="Infinity"), "non_finite"),
        (trade(sz="-1"), "negative"),
        (trade(sz="0"), "bad_number"),
        (trade(px="1" * 100), "bad_number"),
        (trade(px="1e999"), "bad_number"),
        (trade(side="BUY"), "bad_field"),
        (trade(trade_id=""), "bad_field"),
        (trade(ts="1630048897897.5"), "bad_field"),
        (trade(ts="-1"), "bad_field"),
        (trade(ts=""), "missing_field"),
        (trade("ETH-USDT-SWAP"), "unknown_symbol"),
        (trade(7), "bad_field"),
        (liquidations("BTC-USDT-SWAP", detail(side="close")), "bad_field"),
        (liquidations("BTC-USDT-SWAP", detail(px="0")), "bad_number"),
        (push("liquidation-orders", {"instId": "BTC-USDT-SWAP", "details": {}}), "bad_field"),
        (open_interest(oi="NaN"), "non_finite"),
        (open_interest(oi="1", oiCcy="-1"), "negative"),
        (open_interest(ts="x"), "bad_field"),
        (funding(rate="abc"), "bad_number"),
        (funding(at=""), "missing_field"),
        (mark(px="0"), "bad_number"),
    ],
)
def test_bad_input_is_rejected_not_raised(raw: bytes, kind: str) -> None:
    result = adapter().parse(raw, RECV)
    assert result.events == []
    assert kinds(result) == [kind], result.rejects


def test_negative_funding_rate_and_numeric_timestamps_are_fine() -> None:
    event = one(adapter().parse(funding(rate="-0.00375"), RECV))
    assert isinstance(event, Funding) and event.rate == D("-0.00375")
    # OKX sends ms as strings; a JSON number with the same value is accepted too
    numeric = push("trades", {"instId": "BTC-USDT-SWAP", "tradeId": "1", "px": "1", "sz": "1", "side": "buy",
                              "ts": 1630048897897})
    assert one(adapter().parse(numeric, RECV)).ts == 1630048897897


def test_unknown_fields_are_ignored_and_bad_elements_cost_only_themselves() -> None:
    ad = adapter()
    event = one(ad.parse(trade(count="3", seqId=1234, newField={"x": [1]}), RECV))
    assert isinstance(event, Trade)
    frame = orjson.loads(liquidations("BTC-USDT-SWAP", detail(ts="1"), detail(sz="NaN", ts="2"),
                                      detail(ts="3", side="buy", pos="short")))
    frame["data"].append({"instId": "NOPE-USDT-SWAP", "details": []})
    frame["extra"] = True
    result = ad.parse(orjson.dumps(frame), RECV)
    assert [e.ts for e in result.events] == [1, 3]
    assert kinds(result) == ["non_finite", "unknown_symbol"]


def test_huge_frame_is_rejected_before_parsing() -> None:
    huge = b'{"arg":{"channel":"trades"},"data":"' + b"a" * MAX_FRAME_BYTES + b'"}'
    assert kinds(adapter().parse(huge, RECV)) == ["frame_too_large"]
    assert kinds(adapter().parse(huge.decode(), RECV)) == ["frame_too_large"]


# ---------------------------------------------------------------- property tests: parse never raises

ALLOWED_REJECTS = {
    "malformed_json", "not_an_object", "unknown_message", "bad_field", "missing_field", "bad_number",
    "non_finite", "negative", "unknown_symbol", "frame_too_large", "venue_error", "unknown_endpoint",
}
STREAM_LABELS = {"liquidation", "trade", "open_interest", "funding", "mark_price", "control", "unknown",
                 "metadata"}


def check(result: ParseResult) -> None:
    venue_props.check_common(result, "okx", ALLOWED_REJECTS, STREAM_LABELS, gaps=False)
    for event in result.events:
        assert event.ts > 0
        if isinstance(event, Liquidation | Trade):
            assert event.price > 0 and event.qty > 0 and event.notional_usd > 0
            if event.symbol.endswith("-USDT-SWAP"):  # linear: exact
                assert EXACT.multiply(event.qty, event.price) == event.notional_usd
        elif isinstance(event, Funding):
            assert 0 < event.interval_h <= 168


json_values = venue_props.json_values([
    "NaN", "-1", "0", "1e9999", "BTC-USDT-SWAP", "BTC-USD-SWAP", "buy", "sell", "",
    "0.0001", "1700726400000", "net", "long",
], key_size=6)

SEEDS: list[Callable[[], Any]] = [
    lambda: orjson.loads(liquidations("BTC-USDT-SWAP", detail(), detail(side="buy", pos="short", ts="7"))),
    lambda: orjson.loads(liquidations("BTC-USD-SWAP", detail())),
    lambda: orjson.loads(trade()),
    lambda: orjson.loads(trade("BTC-USD-SWAP")),
    lambda: orjson.loads(open_interest(oi="5", oiCcy="0.05", oiUsd="2000")),
    lambda: orjson.loads(open_interest("BTC-USD-SWAP", oi="5")),
    lambda: orjson.loads(funding()),
    lambda: orjson.loads(mark()),
    lambda: {"event": "notice", "code": "64008", "msg": "x"},
]


@venue_props.never_raises(300)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    ad = adapter(top_n_by_oi=2)
    check(ad.parse(raw, RECV))
    check(ad.parse_rest(INSTRUMENTS_PATH, raw, RECV))
    assert ad.control(raw.decode("utf-8", errors="replace")) in (None, ControlAction(rotate=True))


@venue_props.never_raises(300)
@given(json_values, st.sampled_from(["liquidation-orders", "trades", "open-interest", "funding-rate",
                                     "mark-price", None]))
def test_arbitrary_json_never_raises(value: Any, channel: str | None) -> None:
    ad = adapter(top_n_by_oi=2)
    check(ad.parse(orjson.dumps(value), RECV))
    check(ad.parse(orjson.dumps({"arg": {"channel": channel}, "data": value}), RECV))
    check(ad.parse(orjson.dumps({"arg": {"channel": channel}, "data": [value]}), RECV))
    for path in (INSTRUMENTS_PATH, "/api/v5/public/open-interest?instType=SWAP"):
        check(ad.parse_rest(path, orjson.dumps({"code": "0", "data": value}), RECV))
        check(ad.parse_rest(path, orjson.dumps({"code": "0", "data": [value]}), RECV))
    assert isinstance(ad.replay_replies(orjson.dumps(value).decode()), list)
    assert ad.control(orjson.dumps(value).decode()) in (None, ControlAction(rotate=True))


@venue_props.never_raises(500)
@given(venue_props.mutated_frames(SEEDS, json_values))
def test_mutated_real_frames_never_raise(raw: bytes) -> None:
    ad = adapter()
    check(ad.parse(raw, RECV))
    check(ad.parse(raw, RECV))  # and again: de-dup state must not trip either
