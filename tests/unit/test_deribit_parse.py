"""Deribit adapter: every sample payload by value, liquidation flags, ticker thinning, heartbeats, ugly input."""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_HALF_EVEN, Context, Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flushwatch.config import DeribitConfig
from flushwatch.events import Funding, Liquidation, OpenInterest, Trade
from ingest.base import ControlAction, ParseResult
from ingest.deribit import (
    FUNDING_REFRESH_INTERVAL_MS,
    MAX_FRAME_BYTES,
    OI_REVALUE_INTERVAL_MS,
    DeribitAdapter,
    deribit_instrument,
    liquidated_side,
)
from tests.unit import venue_props
from tests.unit.venue_props import kinds, one, typed

FIXTURES = Path(__file__).parent.parent / "fixtures" / "deribit"
RECV = 1_700_000_000_000
D = Decimal
Q = Context(prec=28, rounding=ROUND_HALF_EVEN)
TEST_REQUEST = '{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}}'


def lines(name: str) -> list[str]:
    return (FIXTURES / name).read_text(encoding="utf-8").splitlines()


def adapter(symbols: list[str] | None = None) -> DeribitAdapter:
    return DeribitAdapter(symbols if symbols is not None else ["BTC-PERPETUAL", "ETH-PERPETUAL"])


def notification(channel: str, data: Any) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "method": "subscription", "params": {"channel": channel, "data": data}})


def trade(trade_id: str = "1", *, seq: int | None = 1, inst: str = "BTC-PERPETUAL", price: Any = 60000,
          amount: Any = 1000, direction: str = "sell", ts: int = 1737996780000, **extra: Any) -> dict[str, Any]:
    row = {"trade_id": trade_id, "timestamp": ts, "tick_direction": 0, "price": price, "instrument_name": inst,
           "index_price": price, "mark_price": price, "direction": direction, "amount": amount,
           "contracts": amount, **extra}
    if seq is not None:
        row["trade_seq"] = seq
    return row


def trades(*rows: dict[str, Any], inst: str = "BTC-PERPETUAL") -> bytes:
    return notification(f"trades.{inst}.100ms", list(rows))


def ticker(inst: str = "BTC-PERPETUAL", *, ts: int = 1737996780000, oi: Any = 500_000_000, mark: Any = 100_000,
           index: Any = 100_010, funding: Any = 0.00001, **extra: Any) -> bytes:
    data = {"instrument_name": inst, "timestamp": ts, "open_interest": oi, "mark_price": mark,
            "index_price": index, "current_funding": funding, "funding_8h": 0.0001, "state": "open", **extra}
    return notification(f"ticker.{inst}.100ms", data)


# ---------------------------------------------------------------- sample payloads, by value


def test_sample_trade() -> None:
    (line,) = lines("deribit_trades.jsonl")
    result = adapter().parse(line, RECV)
    assert result.stream == "trade"
    assert one(result) == Trade(
        venue="deribit", symbol="BTC-PERPETUAL", instrument="BTC-USD-PERP", base="BTC", ts=1550736299753,
        recv_ts=RECV, side="sell", price=D("3948.69"), qty=Q.divide(D(10), D("3948.69")), notional_usd=D(10),
        trade_id="9178",
    )
    # BTC-PERPETUAL amounts are USD: the notional is the amount, never amount × price
    assert typed(result.events, Trade)[0].qty == D("0.002532485457202262016010373060")


def test_sample_ticker_rest_and_as_a_notification() -> None:
    (line,) = lines("deribit_ticker_rest.jsonl")
    rest = adapter().parse_rest("/api/v2/public/ticker?instrument_name=BTC-PERPETUAL", line, RECV)
    assert rest.stream == "ticker" and not rest.rejects
    ts = 1623059681955
    assert rest.events == [
        OpenInterest(venue="deribit", symbol="BTC-PERPETUAL", instrument="BTC-USD-PERP", base="BTC", ts=ts,
                     recv_ts=RECV, oi_qty=Q.divide(D(502231260), D("36288.31")), oi_usd=D(502231260)),
        Funding(venue="deribit", symbol="BTC-PERPETUAL", instrument="BTC-USD-PERP", base="BTC", ts=ts,
                recv_ts=RECV, rate=D(0), interval_h=8, next_funding_ts=None, mark_price=D("36288.31"),
                index_price=D("36297.02")),
    ]
    assert D(13_839) < typed(rest.events[:1], OpenInterest)[0].oi_qty < D(13_841)
    # the same object inside a subscription notification gives the same events
    data = orjson.loads(line)["result"]
    ws = adapter().parse(notification("ticker.BTC-PERPETUAL.100ms", data), RECV)
    assert (ws.stream, ws.events) == ("ticker", rest.events)


def test_sample_option_ticker_is_refused() -> None:
    (line,) = lines("deribit_ticker_ws_option.jsonl")
    result = adapter().parse(line, RECV)
    assert (result.stream, result.events, kinds(result)) == ("ticker", [], ["unknown_symbol"])
    assert "ETH-30JUL21-2800-C" in result.rejects[0].detail


# ---------------------------------------------------------------- liquidations


@pytest.mark.parametrize(
    ("flag", "direction", "sides"),
    [
        ("T", "sell", ["long"]),    # the taker was liquidated and sold: a long was closed
        ("T", "buy", ["short"]),
        ("M", "buy", ["long"]),     # the maker was liquidated; the taker bought, so the maker sold: a long
        ("M", "sell", ["short"]),
        ("MT", "sell", ["long", "short"]),  # both: the taker's long and the maker's short
        ("MT", "buy", ["short", "long"]),
    ],
)
def test_liquidation_flags(flag: str, direction: str, sides: list[str]) -> None:
    result = adapter().parse(trades(trade("77", direction=direction, liquidation=flag, amount=20_000,
                                          price=50_000)), RECV)
    assert not result.rejects
    trade_event, *others = result.events
    liquidations = typed(others, Liquidation)
    assert isinstance(trade_event, Trade) and trade_event.side == direction
    assert [e.side for e in liquidations] == sides
    roles = [r for r in ("T", "M") if r in flag]
    for liquidation, role in zip(liquidations, roles, strict=True):
        assert liquidation == Liquidation(
            venue="deribit", symbol="BTC-PERPETUAL", instrument="BTC-USD-PERP", base="BTC", ts=1737996780000,
            recv_ts=RECV, side=liquidation.side, price=D(50_000), qty=D("0.4"), notional_usd=D(20_000),
            order_id=f"77:{role}", sampled=False,
        )


def test_liquidated_side_table() -> None:
    assert [liquidated_side(r, d) for r in ("T", "M") for d in ("buy", "sell")] == ["short", "long", "long", "short"]


def test_linear_usdc_perpetual_amount_is_base_coin() -> None:
    ad = adapter(["SOL_USDC-PERPETUAL"])
    result = ad.parse(trades(trade("SOL-1", inst="SOL_USDC-PERPETUAL", price=150.25, amount=12.5,
                                   direction="buy", liquidation="T"), inst="SOL_USDC-PERPETUAL"), RECV)
    trade_event, liquidation = result.events
    assert trade_event == Trade(
        venue="deribit", symbol="SOL_USDC-PERPETUAL", instrument="SOL-USDC-PERP", base="SOL", ts=1737996780000,
        recv_ts=RECV, side="buy", price=D("150.25"), qty=D("12.5"), notional_usd=D("1878.125"), trade_id="SOL-1",
    )
    assert isinstance(liquidation, Liquidation)
    assert (liquidation.side, liquidation.qty, liquidation.notional_usd) == ("short", D("12.5"), D("1878.125"))
    oi = ad.parse(ticker("SOL_USDC-PERPETUAL", oi=1000, mark=150, funding=None), RECV)
    assert one(oi) == OpenInterest(venue="deribit", symbol="SOL_USDC-PERPETUAL", instrument="SOL-USDC-PERP",
                                   base="SOL", ts=1737996780000, recv_ts=RECV, oi_qty=D(1000), oi_usd=D(150000))


@pytest.mark.parametrize(
    ("name", "instrument", "inverse"),
    [
        ("BTC-PERPETUAL", "BTC-USD-PERP", True),
        ("ETH-PERPETUAL", "ETH-USD-PERP", True),
        ("SOL_USDC-PERPETUAL", "SOL-USDC-PERP", False),
        ("BTC_USDT-PERPETUAL", "BTC-USDT-PERP", False),
        ("BTC-27DEC24", "BTC-USD-20241227", True),
        ("ETH-7MAR25", "ETH-USD-20250307", True),
        ("1000SHIB_USDC-PERPETUAL", "SHIB-USDC-PERP", False),
    ],
)
def test_instrument_names(name: str, instrument: str, inverse: bool) -> None:
    found = deribit_instrument(name)
    assert found is not None and (found.info.instrument, found.inverse) == (instrument, inverse)


@pytest.mark.parametrize("name", ["ETH-30JUL21-2800-C", "BTC-FS-27DEC24_PERP", "BTC_USDC", "BTC-99XYZ24",
                                  "BTC_EUR-PERPETUAL", "btc-perpetual", "", "BTC-32DEC24", "-PERPETUAL"])
def test_unsupported_names(name: str) -> None:
    assert deribit_instrument(name) is None


# ---------------------------------------------------------------- duplicates and gaps


def test_trade_dedupe_across_reconnect_and_gap_count() -> None:
    ad = adapter()
    first = ad.parse(trades(trade("1", seq=10), trade("2", seq=11, liquidation="M", direction="buy")), RECV)
    assert (len(first.events), first.gaps, first.duplicates) == (3, 0, 0)
    ad.reset_connection_state("deribit-0")
    # the new connection's first batch overlaps the old one, then jumps
    overlap = ad.parse(trades(trade("2", seq=11, liquidation="M", direction="buy"), trade("5", seq=14)), RECV)
    assert [e.trade_id for e in overlap.events if isinstance(e, Trade)] == ["5"]
    assert not any(isinstance(e, Liquidation) for e in overlap.events)  # the liquidation is not counted twice
    assert (overlap.duplicates, overlap.gaps) == (1, 2)
    late = ad.parse(trades(trade("3", seq=12)), RECV)  # a late one is still a trade, and no gap
    assert (len(late.events), late.gaps, late.duplicates) == (1, 0, 0)
    # another instrument has its own sequence; the same trade_id there is a different trade
    eth = ad.parse(trades(trade("1", seq=500, inst="ETH-PERPETUAL"), inst="ETH-PERPETUAL"), RECV)
    assert (len(eth.events), eth.gaps) == (1, 0)
    # trades without trade_seq are still de-duplicated
    assert ad.parse(trades(trade("9", seq=None)), RECV).events
    assert ad.parse(trades(trade("9", seq=None)), RECV).duplicates == 1


def test_trade_dedupe_window_is_bounded() -> None:
    ad = DeribitAdapter(["BTC-PERPETUAL"], trade_dedupe_capacity=2)
    for trade_id in ("1", "2", "3"):
        ad.parse(trades(trade(trade_id, seq=None)), RECV)
    assert len(ad.parse(trades(trade("1", seq=None)), RECV).events) == 1


# ---------------------------------------------------------------- ticker thinning


def test_ticker_emits_on_change_and_refreshes_slowly() -> None:
    ad = adapter()
    t0 = 1737996780000
    first = ad.parse(ticker(ts=t0), RECV)
    assert [type(e) for e in first.events] == [OpenInterest, Funding]
    # 100 ms later: nothing changed
    assert ad.parse(ticker(ts=t0 + 100), RECV).events == []
    # open interest changed: emitted at once
    oi = one(ad.parse(ticker(ts=t0 + 200, oi=500_001_000), RECV))
    assert isinstance(oi, OpenInterest) and oi.oi_usd == D(500_001_000)
    # only the mark moved: the base valuation changes, emitted once the revalue interval passed
    assert ad.parse(ticker(ts=t0 + 300, oi=500_001_000, mark=99_000), RECV).events == []
    revalued = one(ad.parse(ticker(ts=t0 + 200 + OI_REVALUE_INTERVAL_MS, oi=500_001_000, mark=99_000), RECV))
    assert revalued.oi_qty == Q.divide(D(500_001_000), D(99_000))
    # the funding rate changes: at once; unchanged: once per refresh interval
    changed = one(ad.parse(ticker(ts=t0 + 20_000, oi=500_001_000, mark=99_000, funding=-0.0002), RECV))
    assert isinstance(changed, Funding) and changed.rate == D("-0.0002")
    assert ad.parse(ticker(ts=t0 + 21_000, oi=500_001_000, mark=99_000, funding=-0.0002), RECV).events == []
    refresh = ad.parse(ticker(ts=t0 + 20_000 + FUNDING_REFRESH_INTERVAL_MS, oi=500_001_000, mark=99_000,
                              funding=-0.0002), RECV)
    assert [type(e) for e in refresh.events] == [Funding]  # open interest and its valuation did not move
    # an older or repeated ticker (overlapping connections) is a duplicate
    stale = ad.parse(ticker(ts=t0 + 5), RECV)
    assert (stale.events, stale.duplicates) == ([], 1)


def test_future_ticker_has_no_funding() -> None:
    result = adapter(["BTC-27DEC24"]).parse(ticker("BTC-27DEC24", funding=None, oi=1_000_000, mark=100_000),
                                            RECV)
    event = one(result)
    assert isinstance(event, OpenInterest)
    assert (event.instrument, event.oi_usd, event.oi_qty) == ("BTC-USD-20241227", D(1_000_000), D(10))


# ---------------------------------------------------------------- heartbeats and control


def test_control_answers_test_request_with_public_test() -> None:
    ad = adapter()
    action = ad.control(TEST_REQUEST)
    assert isinstance(action, ControlAction) and not action.rotate
    (reply,) = action.replies
    message = orjson.loads(reply)
    assert message == {"jsonrpc": "2.0", "id": message["id"], "method": "public/test", "params": {}}
    second = ad.control(TEST_REQUEST)
    assert second is not None and orjson.loads(second.replies[0])["id"] == message["id"] + 1
    # the frame itself is a control frame for the parser
    parsed = ad.parse(TEST_REQUEST, RECV)
    assert (parsed.control, parsed.stream, parsed.events, parsed.rejects) == (True, "control", [], [])


@pytest.mark.parametrize("frame", [
    '{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"heartbeat"}}',
    '{"jsonrpc":"2.0","id":1,"result":"ok"}',
    '{"note":"test_request"}',
    '["test_request"]',
    "test_request {{{",
    '{"jsonrpc":"2.0","method":"heartbeat","params":"test_request"}',
    "",
])
def test_control_ignores_everything_else(frame: str) -> None:
    assert adapter().control(frame) is None


def test_control_on_ordinary_frames_is_cheap_and_none() -> None:
    ad = adapter()
    assert ad.control(trades(trade()).decode()) is None
    assert ad.control(ticker().decode()) is None


@pytest.mark.parametrize("raw", [
    '{"jsonrpc":"2.0","id":2,"result":["trades.BTC-PERPETUAL.100ms","ticker.BTC-PERPETUAL.100ms"],'
    '"usIn":1,"usOut":2,"usDiff":1,"testnet":false}',
    '{"jsonrpc":"2.0","id":1,"result":"ok"}',
    '{"jsonrpc":"2.0","id":1000000,"result":{"version":"1.2.26"}}',
    '{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"heartbeat"}}',
])
def test_control_frames(raw: str) -> None:
    result = adapter().parse(raw, RECV)
    assert (result.control, result.stream, result.events, result.rejects) == (True, "control", [], [])


def test_rpc_errors_are_control_with_a_reject() -> None:
    result = adapter().parse('{"jsonrpc":"2.0","id":2,"error":{"message":"Invalid params","code":-32602}}', RECV)
    assert result.control and kinds(result) == ["venue_error"]


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (b'{"jsonrpc":"2.0","method":"subscription","params":', "malformed_json"),
        (b"\xff\xfe", "malformed_json"),
        (b'{"params":{"channel":"trades.BTC-PERPETUAL.100ms","data":[{"price":NaN}]},"method":"subscription"}',
         "malformed_json"),
        (b"[1]", "not_an_object"),
        (b'{"foo":1}', "unknown_message"),
        (b'{"method":"subscription","params":{"channel":"book.BTC-PERPETUAL.100ms","data":{}}}',
         "unknown_message"),
        (b'{"method":"subscription","params":{"channel":7,"data":{}}}', "unknown_message"),
        (b'{"method":"subscription","params":[]}', "not_an_object"),
        (notification("trades.BTC-PERPETUAL.100ms", {"a": 1}), "bad_field"),
        (notification("ticker.BTC-PERPETUAL.100ms", []), "not_an_object"),
        (trades(trade(price="NaN")), "non_finite"),
        (trades(trade(price=-1)), "negative"),
        (trades(trade(amount=0)), "bad_number"),
        (trades(trade(amount="1e99999")), "bad_number"),
        (trades(trade(amount=True)), "bad_number"),
        (trades(trade(direction="long")), "bad_field"),
        (trades(trade(liquidation="X")), "bad_field"),
        (trades(trade(liquidation=["M"])), "bad_field"),
        (trades(trade(trade_id=9178)), "bad_field"),  # type: ignore[arg-type]
        (trades(trade(seq=-1)), "bad_field"),
        (trades(trade(seq=1.5)), "bad_field"),  # type: ignore[arg-type]
        (trades(trade(ts="1550736299753")), "bad_field"),  # type: ignore[arg-type]
        (trades(trade(inst="BTC-30JUL21-30000-C")), "unknown_symbol"),
        (trades(trade(inst=5)), "bad_field"),  # type: ignore[arg-type]
        (trades({k: v for k, v in trade().items() if k != "amount"}), "missing_field"),
        (ticker(mark=0), "bad_number"),
        (ticker(oi=-5), "negative"),
        (ticker(funding="NaN"), "non_finite"),
        (ticker(ts=-1), "bad_field"),
        (ticker("BTC-27DEC24-100000-P"), "unknown_symbol"),
    ],
)
def test_bad_input_is_rejected_not_raised(raw: bytes, kind: str) -> None:
    result = adapter().parse(raw, RECV)
    assert result.events == []
    assert kinds(result) == [kind], result.rejects


def test_one_bad_trade_costs_only_that_trade() -> None:
    result = adapter().parse(trades(trade("1", seq=1), trade("2", seq=2, price="x"), trade("3", seq=3)), RECV)
    assert [e.trade_id for e in typed(result.events, Trade)] == ["1", "3"]
    assert kinds(result) == ["bad_number"]


def test_unknown_fields_are_ignored() -> None:
    result = adapter().parse(trades(trade("1", block_trade_id="B", combo_id=None, new_field={"x": [1]})), RECV)
    assert isinstance(one(result), Trade)


def test_huge_frame_is_rejected_before_parsing() -> None:
    huge = b'{"method":"subscription","x":"' + b"a" * MAX_FRAME_BYTES + b'"}'
    assert kinds(adapter().parse(huge, RECV)) == ["frame_too_large"]


@pytest.mark.parametrize(
    ("endpoint", "body", "kind"),
    [
        ("/api/v2/public/get_instruments?currency=BTC", b"{}", "unknown_endpoint"),
        ("http://[::1", b"{}", "unknown_endpoint"),
        ("/api/v2/public/ticker?instrument_name=X", b'{"jsonrpc":"2.0","error":{"code":10028,"message":"too_many"}}',
         "venue_error"),
        ("/api/v2/public/ticker", b"<html>", "malformed_json"),
        ("/api/v2/public/ticker", b'{"jsonrpc":"2.0","result":[]}', "not_an_object"),
    ],
)
def test_bad_rest_responses(endpoint: str, body: bytes, kind: str) -> None:
    result = adapter().parse_rest(endpoint, body, RECV)
    assert result.events == []
    assert kinds(result) == [kind]


# ---------------------------------------------------------------- connection plan, replay side, config


def test_ws_connection_plan() -> None:
    ad = DeribitAdapter.from_config(DeribitConfig.model_validate({"heartbeat_s": 15}))
    (plan,) = ad.ws_connections()
    assert (plan.name, plan.url) == ("deribit-0", "wss://www.deribit.com/ws/api/v2")
    assert [orjson.loads(m) for m in plan.subscribe] == [
        {"jsonrpc": "2.0", "id": 1, "method": "public/set_heartbeat", "params": {"interval": 15}},
        {"jsonrpc": "2.0", "id": 2, "method": "public/subscribe", "params": {"channels": [
            "trades.BTC-PERPETUAL.100ms", "ticker.BTC-PERPETUAL.100ms",
            "trades.ETH-PERPETUAL.100ms", "ticker.ETH-PERPETUAL.100ms"]}},
    ]
    assert ad.app_ping_message is None and ad.startup_requests() == [] and ad.rest_polls() == []
    big = DeribitAdapter([f"C{i}_USDC-PERPETUAL" for i in range(60)] + ["c0_usdc-perpetual"])
    (plan,) = big.ws_connections()
    calls = [orjson.loads(m) for m in plan.subscribe[1:]]
    assert [c["id"] for c in calls] == [2, 3]
    assert [ch for c in calls for ch in c["params"]["channels"]] == big.channels()
    assert len(big.channels()) == 120


def test_class_attributes_and_config() -> None:
    cls = DeribitAdapter
    assert (cls.venue, cls.default_ws_url, cls.default_rest_url) == (
        "deribit", "wss://www.deribit.com/ws/api/v2", "https://www.deribit.com")
    assert cls.liquidations_sampled is False
    built = DeribitAdapter.from_config(DeribitConfig.model_validate({
        "symbols": ["btc-perpetual"], "stale_after_s": 45, "heartbeat_s": 20, "ws_url": "ws://localhost:1/ws"}))
    assert (built.symbols, built.stale_after_s, built.heartbeat_s, built.ws_url) == (
        ["BTC-PERPETUAL"], 45, 20, "ws://localhost:1/ws")


def test_replay_replies() -> None:
    ad = adapter()
    subscribe = {"jsonrpc": "2.0", "id": 42, "method": "public/subscribe",
                 "params": {"channels": ["trades.BTC-PERPETUAL.100ms", "ticker.BTC-PERPETUAL.100ms"]}}
    assert [orjson.loads(r) for r in ad.replay_replies(orjson.dumps(subscribe).decode())] == [
        {"jsonrpc": "2.0", "id": 42, "result": ["trades.BTC-PERPETUAL.100ms", "ticker.BTC-PERPETUAL.100ms"]}]
    heartbeat = '{"jsonrpc":"2.0","id":1,"method":"public/set_heartbeat","params":{"interval":30}}'
    assert ad.replay_replies(heartbeat) == ['{"jsonrpc":"2.0","id":1,"result":"ok"}']
    test = ad.test_message()
    assert orjson.loads(ad.replay_replies(test)[0]) == {"jsonrpc": "2.0", "id": orjson.loads(test)["id"],
                                                         "result": {"version": "replay"}}
    for garbage in ["", "not json", "[]", '{"method":"public/subscribe","id":1}',
                    '{"method":"public/subscribe","id":1,"params":{"channels":[1]}}',
                    '{"method":"public/test","id":true}', '{"method":"private/buy","id":1,"params":{}}']:
        assert ad.replay_replies(garbage) == []
    for plan_message in ad.ws_connections()[0].subscribe:  # every reply is a control frame for the parser
        (reply,) = ad.replay_replies(plan_message)
        assert ad.parse(reply, RECV).control


# ---------------------------------------------------------------- property tests: parse never raises

ALLOWED_REJECTS = {
    "malformed_json", "not_an_object", "unknown_message", "bad_field", "missing_field", "bad_number",
    "non_finite", "negative", "unknown_symbol", "frame_too_large", "venue_error", "unknown_endpoint",
}
STREAM_LABELS = {"trade", "ticker", "control", "unknown"}


def check(result: ParseResult) -> None:
    venue_props.check_common(result, "deribit", ALLOWED_REJECTS, STREAM_LABELS, gaps=True)
    for event in result.events:
        if isinstance(event, Liquidation | Trade):
            assert event.price > 0 and event.qty > 0 and event.notional_usd > 0
        if isinstance(event, Liquidation):
            assert event.sampled is False and event.order_id is not None


json_values = venue_props.json_values([
    "NaN", "-1", "0", "1e9999", "BTC-PERPETUAL", "SOL_USDC-PERPETUAL", "buy", "sell", "M",
    "T", "MT", "", "test_request", "heartbeat", "subscription",
])

SEEDS: list[Callable[[], Any]] = [
    lambda: orjson.loads(trades(trade("1", liquidation="MT"))),
    lambda: orjson.loads(ticker()),
    lambda: orjson.loads(TEST_REQUEST),
    lambda: {"jsonrpc": "2.0", "id": 1, "result": "ok"},
]


@venue_props.never_raises(300)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    ad = adapter()
    check(ad.parse(raw, RECV))
    check(ad.parse_rest("/api/v2/public/ticker", raw, RECV))
    text = raw.decode("utf-8", errors="replace")
    assert ad.control(text) is None or isinstance(ad.control(text), ControlAction)
    assert isinstance(ad.replay_replies(text), list)


@venue_props.never_raises(300)
@given(json_values, st.sampled_from(["trades", "ticker", None]))
def test_arbitrary_json_never_raises(value: Any, kind: str | None) -> None:
    ad = adapter()
    check(ad.parse(orjson.dumps(value), RECV))
    if kind is not None:
        check(ad.parse(notification(f"{kind}.BTC-PERPETUAL.100ms", value), RECV))
    check(ad.parse_rest("/api/v2/public/ticker", orjson.dumps({"result": value}), RECV))
    text = orjson.dumps(value).decode()
    assert ad.control(text) is None or isinstance(ad.control(text), ControlAction)
    assert isinstance(ad.replay_replies(text), list)


@venue_props.never_raises(400)
@given(venue_props.mutated_frames(SEEDS, json_values))
def test_mutated_real_frames_never_raise(raw: bytes) -> None:
    ad = adapter()
    check(ad.parse(raw, RECV))
    check(ad.parse(raw, RECV))
    action = ad.control(raw.decode())
    assert action is None or all(orjson.loads(r)["method"] == "public/test" for r in action.replies)
