"""Hyperliquid adapter: samples by value, trade replay de-duplication, asset-context thinning, ugly input.

Hyperliquid has no public liquidation stream, so the adapter must never emit a Liquidation: every test
below that parses frames checks that too (``check``).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flushwatch.config import HyperliquidConfig
from flushwatch.events import Funding, Liquidation, OpenInterest, Trade
from ingest.base import ParseResult
from ingest.hyperliquid import (
    FUNDING_REFRESH_INTERVAL_MS,
    MAX_FRAME_BYTES,
    OI_REVALUE_INTERVAL_MS,
    HyperliquidAdapter,
    normalize_hyperliquid_coin,
)
from tests.unit import venue_props
from tests.unit.venue_props import kinds, one, typed

FIXTURES = Path(__file__).parent.parent / "fixtures" / "hyperliquid"
RECV = 1_700_000_000_000
HOUR = 3_600_000
D = Decimal

#: a BTC trade row as printed in the docs.rs source of the df-hyperliquid-core crate
#: (src/markets/tests/trades.rs, "a recorded trades frame row", 2026-10-08); see fixtures/hyperliquid/SOURCES.md
RECORDED_TRADE = {
    "coin": "BTC", "side": "A", "px": "80600.0", "sz": "0.16", "time": 1791480516231,
    "hash": "0x33062daa8fe10fcd347f0446200d470206e300902ae42e9fd6ced8fd4ee4e9b7", "tid": 717978735161105,
    "users": ["0x654086857e1fad6dcf05cf6695cce51ea3984268", "0xa168f51d1ec7f7a4cd38e9b6a461b05f64acfac8"],
}


def lines(name: str) -> list[str]:
    return (FIXTURES / name).read_text(encoding="utf-8").splitlines()


def adapter(symbols: list[str] | None = None) -> HyperliquidAdapter:
    return HyperliquidAdapter(symbols if symbols is not None else ["BTC", "ETH", "kPEPE"])


def trades(*rows: dict[str, Any]) -> bytes:
    return orjson.dumps({"channel": "trades", "data": list(rows)})


def trade(tid: int, *, coin: str = "BTC", side: str = "B", px: Any = "100000.0", sz: Any = "0.01",
          time: Any = 1737996780000, **extra: Any) -> dict[str, Any]:
    return {"coin": coin, "side": side, "px": px, "sz": sz, "time": time, "hash": "0x00", "tid": tid,
            "users": ["0xa", "0xb"], **extra}


def ctx(coin: str = "BTC", *, oi: Any = "36295.80812", mark: Any = "80640.0", oracle: Any = "80684.7",
        funding: Any = "0.0000052974", **extra: Any) -> bytes:
    return orjson.dumps({"channel": "activeAssetCtx", "data": {"coin": coin, "ctx": {
        "funding": funding, "openInterest": oi, "prevDayPx": "77759.0", "dayNtlVlm": "1", "premium": "0",
        "oraclePx": oracle, "markPx": mark, "midPx": mark, "impactPxs": [mark, mark], "dayBaseVlm": "1", **extra}}})


# ---------------------------------------------------------------- samples by value


def test_sample_active_asset_ctx() -> None:
    (line,) = lines("hyperliquid_active_asset_ctx.jsonl")
    result = adapter().parse(line, RECV)
    assert result.stream == "ticker" and not result.rejects
    assert result.events == [
        OpenInterest(venue="hyperliquid", symbol="BTC", instrument="BTC-USDC-PERP", base="BTC", ts=RECV,
                     recv_ts=RECV, oi_qty=D("36295.80812"), oi_usd=D("36295.80812") * D("80640.0")),
        Funding(venue="hyperliquid", symbol="BTC", instrument="BTC-USDC-PERP", base="BTC", ts=RECV, recv_ts=RECV,
                rate=D("0.0000052974"), interval_h=1, next_funding_ts=(RECV // HOUR + 1) * HOUR,
                mark_price=D("80640.0"), index_price=D("80684.7")),
    ]
    assert typed(result.events[:1], OpenInterest)[0].oi_usd == D("2926893966.7968")
    assert typed(result.events[1:], Funding)[0].next_funding_ts == 1_700_002_800_000  # the top of the next hour


def test_sample_subscription_ack_is_control_and_matches_replay_reply() -> None:
    (line,) = lines("hyperliquid_subscription_ack.jsonl")
    result = adapter().parse(line, RECV)
    assert (result.control, result.stream, result.events, result.rejects) == (True, "control", [], [])
    request = '{"method":"subscribe","subscription":{"type":"trades","coin":"SOL"}}'
    assert adapter().replay_replies(request) == [line]  # byte for byte the documented ack


def test_recorded_trade_row() -> None:
    event = one(adapter().parse(trades(RECORDED_TRADE), RECV))
    assert event == Trade(
        venue="hyperliquid", symbol="BTC", instrument="BTC-USDC-PERP", base="BTC", ts=1791480516231, recv_ts=RECV,
        side="sell", price=D("80600.0"), qty=D("0.16"), notional_usd=D("12896.000"), trade_id="717978735161105",
    )


def test_side_b_is_a_taker_buy() -> None:
    result = adapter().parse(trades(trade(1, side="B"), trade(2, side="A")), RECV)
    assert [e.side for e in typed(result.events, Trade)] == ["buy", "sell"]


def test_k_prefixed_coins_are_unbundled() -> None:
    ad = adapter()
    event = one(ad.parse(trades(trade(5, coin="kPEPE", px="0.012", sz="1000")), RECV))
    assert (event.base, event.instrument, event.symbol) == ("PEPE", "PEPE-USDC-PERP", "kPEPE")
    assert (event.qty, event.price, event.notional_usd) == (D(1_000_000), D("0.000012"), D(12))
    oi, funding = ad.parse(ctx("kPEPE", oi="2000", mark="0.01", oracle="0.0101", funding="0.0001"), RECV).events
    assert isinstance(oi, OpenInterest) and isinstance(funding, Funding)
    assert (oi.oi_qty, oi.oi_usd) == (D(2_000_000), D(20))
    assert (funding.mark_price, funding.index_price) == (D("0.00001"), D("0.0000101"))


@pytest.mark.parametrize(("coin", "instrument"), [("BTC", "BTC-USDC-PERP"), ("kBONK", "BONK-USDC-PERP"),
                                                  ("1000PEPE", "PEPE-USDC-PERP"), ("KAS", "KAS-USDC-PERP")])
def test_coin_names(coin: str, instrument: str) -> None:
    info = normalize_hyperliquid_coin(coin)
    assert info is not None and info.instrument == instrument


@pytest.mark.parametrize("coin", ["@107", "PURR/USDC", "xyz:TSLA", "", "A" * 30, "BTC-PERP"])
def test_unsupported_coin_names(coin: str) -> None:
    assert normalize_hyperliquid_coin(coin) is None


# ---------------------------------------------------------------- no liquidations, ever


def test_no_liquidation_events_even_for_liquidation_looking_input() -> None:
    ad = adapter()
    frames = [
        trades(trade(1, liquidation={"liquidatedUser": "0x1", "markPx": "1", "method": "market"})),
        orjson.dumps({"channel": "userFills", "data": {"user": "0x1", "fills": [{"coin": "BTC", "liquidation": {}}]}}),
        orjson.dumps({"channel": "liquidations", "data": []}),
    ]
    results = [ad.parse(f, RECV) for f in frames]
    assert not any(isinstance(e, Liquidation) for r in results for e in r.events)
    assert isinstance(one(results[0]), Trade)
    assert kinds(results[1]) == ["unknown_message"] and kinds(results[2]) == ["unknown_message"]
    assert HyperliquidAdapter.liquidations_sampled is False


# ---------------------------------------------------------------- duplicates: replayed first frame, reconnects


def test_replayed_trades_after_resubscribe_are_deduplicated() -> None:
    ad = adapter()
    first = ad.parse(trades(trade(10), trade(11), trade(12, coin="ETH")), RECV)
    assert (len(first.events), first.duplicates) == (3, 0)
    ad.reset_connection_state("hyperliquid-0")
    # the new connection's first frame replays recent trades, then new ones follow
    replay = ad.parse(trades(trade(10), trade(11), trade(13)), RECV)
    assert ([e.trade_id for e in typed(replay.events, Trade)], replay.duplicates) == (["13"], 2)
    # tid is the key per coin: an equal tid of another coin is another trade
    assert len(ad.parse(trades(trade(10, coin="SOL")), RECV).events) == 1


def test_trade_dedupe_window_is_bounded() -> None:
    ad = HyperliquidAdapter(["BTC"], trade_dedupe_capacity=2)
    for tid in (1, 2, 3):
        ad.parse(trades(trade(tid)), RECV)
    assert len(ad.parse(trades(trade(1)), RECV).events) == 1


# ---------------------------------------------------------------- asset context thinning


def test_asset_ctx_emits_on_change_and_refreshes_slowly() -> None:
    ad = adapter()
    assert [type(e) for e in ad.parse(ctx(), RECV).events] == [OpenInterest, Funding]
    assert ad.parse(ctx(), RECV + 500).events == []  # nothing changed
    oi = one(ad.parse(ctx(oi="36300"), RECV + 1000))
    assert isinstance(oi, OpenInterest) and oi.oi_qty == D(36300)
    assert ad.parse(ctx(oi="36300", mark="80000"), RECV + 2000).events == []  # only the USD value moved
    revalued = one(ad.parse(ctx(oi="36300", mark="80000"), RECV + 1000 + OI_REVALUE_INTERVAL_MS))
    assert revalued.oi_usd == D(36300 * 80000)
    changed = one(ad.parse(ctx(oi="36300", mark="80000", funding="-0.00002"), RECV + 20_000))
    assert isinstance(changed, Funding) and changed.rate == D("-0.00002") and changed.interval_h == 1
    assert ad.parse(ctx(oi="36300", mark="80000", funding="-0.00002"), RECV + 30_000).events == []
    refreshed = one(ad.parse(ctx(oi="36300", mark="80000", funding="-0.00002", oracle="79990"),
                             RECV + 20_000 + FUNDING_REFRESH_INTERVAL_MS))
    assert isinstance(refreshed, Funding) and refreshed.index_price == D(79990)


def test_asset_ctx_without_oracle_has_no_index() -> None:
    _, funding = adapter().parse(ctx(oracle=None), RECV).events
    assert isinstance(funding, Funding) and funding.index_price is None


# ---------------------------------------------------------------- control and bad input


@pytest.mark.parametrize("raw", ['{"channel":"pong"}', b'{"channel":"pong"}',
                                 '{"channel":"subscriptionResponse","data":{"method":"unsubscribe",'
                                 '"subscription":{"type":"activeAssetCtx","coin":"BTC"}}}'])
def test_control_frames(raw: str | bytes) -> None:
    result = adapter().parse(raw, RECV)
    assert (result.control, result.stream, result.events, result.rejects) == (True, "control", [], [])
    assert adapter().control(raw if isinstance(raw, str) else raw.decode()) is None  # nothing to answer


def test_venue_error_is_control_with_a_reject() -> None:
    result = adapter().parse('{"channel":"error","data":"Invalid subscription {\\"type\\":\\"trades\\"}"}', RECV)
    assert result.control and kinds(result) == ["venue_error"]


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (b'{"channel":"trades","data":[', "malformed_json"),
        (b"\xff\xfe", "malformed_json"),
        (b'{"channel":"trades","data":[{"px":NaN}]}', "malformed_json"),
        (b"[]", "not_an_object"),
        (b'{"foo":1}', "unknown_message"),
        (b'{"channel":"l2Book","data":{}}', "unknown_message"),
        (b'{"channel":"trades","data":{}}', "bad_field"),
        (trades(trade(1, px="NaN")), "non_finite"),
        (trades(trade(1, px="Infinity")), "non_finite"),
        (trades(trade(1, sz="-0.1")), "negative"),
        (trades(trade(1, px="0")), "bad_number"),
        (trades(trade(1, px="1" * 100)), "bad_number"),
        (trades(trade(1, px=True)), "bad_number"),
        (trades(trade(1, side="S")), "bad_field"),
        (trades(trade(-1)), "bad_field"),
        (trades(trade("12")), "bad_field"),  # type: ignore[arg-type]
        (trades(trade(2**63)), "bad_field"),
        (trades(trade(1, time="1737996780000")), "bad_field"),
        (trades(trade(1, coin="@107")), "unknown_symbol"),
        (trades(trade(1, coin=None)), "bad_field"),  # type: ignore[arg-type]
        (trades({k: v for k, v in trade(1).items() if k != "sz"}), "missing_field"),
        (ctx(mark="0"), "bad_number"),
        (ctx(oi="-1"), "negative"),
        (ctx(funding="NaN"), "non_finite"),
        (ctx(funding=None), "missing_field"),
        (ctx("xyz:TSLA"), "unknown_symbol"),
        (orjson.dumps({"channel": "activeAssetCtx", "data": {"coin": "BTC", "ctx": "x"}}), "not_an_object"),
        (orjson.dumps({"channel": "activeAssetCtx", "data": []}), "not_an_object"),
    ],
)
def test_bad_input_is_rejected_not_raised(raw: bytes, kind: str) -> None:
    result = adapter().parse(raw, RECV)
    assert result.events == []
    assert kinds(result) == [kind], result.rejects


def test_one_bad_trade_costs_only_that_trade() -> None:
    result = adapter().parse(trades(trade(1), trade(2, px="x"), "junk", trade(3)), RECV)  # type: ignore[arg-type]
    assert [e.trade_id for e in typed(result.events, Trade)] == ["1", "3"]
    assert kinds(result) == ["bad_number", "not_an_object"]


def test_unknown_fields_are_ignored() -> None:
    event = one(adapter().parse(trades(trade(1, twap_id=None, extra={"x": [1]})), RECV))
    assert isinstance(event, Trade)


def test_huge_frame_is_rejected_before_parsing() -> None:
    huge = b'{"channel":"trades","data":"' + b"a" * MAX_FRAME_BYTES + b'"}'
    assert kinds(adapter().parse(huge, RECV)) == ["frame_too_large"]


def test_no_rest_endpoints() -> None:
    ad = adapter()
    assert ad.startup_requests() == [] and ad.rest_polls() == []
    assert kinds(ad.parse_rest("/info", b"{}", RECV)) == ["unknown_endpoint"]


# ---------------------------------------------------------------- connection plan, replay side, config


def test_ws_connection_plan_and_keepalive() -> None:
    ad = HyperliquidAdapter.from_config(HyperliquidConfig.model_validate({}))
    (plan,) = ad.ws_connections()
    assert (plan.name, plan.url) == ("hyperliquid-0", "wss://api.hyperliquid.xyz/ws")
    assert [orjson.loads(m) for m in plan.subscribe] == [
        {"method": "subscribe", "subscription": {"type": kind, "coin": coin}}
        for coin in ("BTC", "ETH", "SOL") for kind in ("trades", "activeAssetCtx")
    ]
    assert (ad.app_ping_message, ad.app_ping_interval_s) == ('{"method":"ping"}', 15.0)
    assert HyperliquidAdapter(["BTC"], stale_after_s=90).app_ping_interval_s == 30.0
    assert HyperliquidAdapter([" kPEPE ", "kPEPE", "BTC"]).symbols == ["kPEPE", "BTC"]  # case kept


def test_class_attributes_and_config() -> None:
    cls = HyperliquidAdapter
    assert (cls.venue, cls.default_ws_url, cls.default_rest_url) == (
        "hyperliquid", "wss://api.hyperliquid.xyz/ws", "https://api.hyperliquid.xyz")
    built = HyperliquidAdapter.from_config(HyperliquidConfig.model_validate({
        "symbols": ["BTC"], "stale_after_s": 40, "ws_url": "ws://localhost:1/ws"}))
    assert (built.symbols, built.stale_after_s, built.app_ping_interval_s, built.ws_url) == (
        ["BTC"], 40, 20, "ws://localhost:1/ws")


def test_replay_replies() -> None:
    ad = adapter()
    assert ad.replay_replies('{"method":"ping"}') == ['{"channel":"pong"}']
    for message in ad.ws_connections()[0].subscribe:
        (reply,) = ad.replay_replies(message)
        assert orjson.loads(reply) == {"channel": "subscriptionResponse", "data": orjson.loads(message)}
        assert ad.parse(reply, RECV).control
    unsubscribe = '{"method":"unsubscribe","subscription":{"type":"trades","coin":"BTC"}}'
    assert orjson.loads(ad.replay_replies(unsubscribe)[0])["data"]["method"] == "unsubscribe"
    for garbage in ["", "ping", "[]", '{"method":"subscribe"}', '{"method":"subscribe","subscription":"x"}',
                    '{"method":"post","id":1}']:
        assert ad.replay_replies(garbage) == []


# ---------------------------------------------------------------- property tests: parse never raises

ALLOWED_REJECTS = {
    "malformed_json", "not_an_object", "unknown_message", "bad_field", "missing_field", "bad_number",
    "non_finite", "negative", "unknown_symbol", "frame_too_large", "venue_error",
}
STREAM_LABELS = {"trade", "ticker", "control", "unknown"}


def check(result: ParseResult) -> None:
    venue_props.check_common(result, "hyperliquid", ALLOWED_REJECTS, STREAM_LABELS, gaps=False)
    for event in result.events:
        assert not isinstance(event, Liquidation)
        if isinstance(event, Trade):
            assert event.price > 0 and event.qty > 0 and event.notional_usd > 0


json_values = venue_props.json_values([
    "NaN", "-1", "0", "1e9999", "BTC", "kPEPE", "B", "A", "", "trades", "activeAssetCtx",
    "pong",
])

SEEDS: list[Callable[[], Any]] = [
    lambda: orjson.loads(trades(dict(RECORDED_TRADE), trade(2, coin="kPEPE"))),
    lambda: orjson.loads(lines("hyperliquid_active_asset_ctx.jsonl")[0]),
    lambda: orjson.loads(lines("hyperliquid_subscription_ack.jsonl")[0]),
]


@venue_props.never_raises(300)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    ad = adapter()
    check(ad.parse(raw, RECV))
    assert isinstance(ad.replay_replies(raw.decode("utf-8", errors="replace")), list)


@venue_props.never_raises(300)
@given(json_values, st.sampled_from(["trades", "activeAssetCtx", None]))
def test_arbitrary_json_never_raises(value: Any, channel: str | None) -> None:
    ad = adapter()
    check(ad.parse(orjson.dumps(value), RECV))
    if channel is not None:
        check(ad.parse(orjson.dumps({"channel": channel, "data": value}), RECV))
    assert isinstance(ad.replay_replies(orjson.dumps(value).decode()), list)


@venue_props.never_raises(400)
@given(venue_props.mutated_frames(SEEDS, json_values))
def test_mutated_real_frames_never_raise(raw: bytes) -> None:
    ad = adapter()
    check(ad.parse(raw, RECV))
    check(ad.parse(raw, RECV))
