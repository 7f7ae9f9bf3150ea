"""Binance USDⓈ-M adapter: every sample payload by value, the real all-market recording, and ugly input."""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Context, Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flushwatch.config import BinanceConfig, Config
from flushwatch.events import Funding, Liquidation, OpenInterest, Trade
from ingest.base import ParseResult
from ingest.binance import MAX_FRAME_BYTES, BinanceUsdmAdapter
from ingest.registry import create_adapter
from tests.unit import venue_props
from tests.unit.venue_props import kinds, one

FIXTURES = Path(__file__).parent.parent / "fixtures" / "binance"
CSV_PATH = FIXTURES / "binance_forceorder_allsymbols_2025-01-26_2025-02-06.csv"
RECV = 1_700_000_000_000
D = Decimal
EXACT = Context(prec=200)


def lines(name: str) -> list[str]:
    return (FIXTURES / name).read_text(encoding="utf-8").splitlines()


def adapter(symbols: list[str] | None = None) -> BinanceUsdmAdapter:
    return BinanceUsdmAdapter(symbols=symbols if symbols is not None else ["BTCUSDT"])


def frame(stream: str, data: Any) -> bytes:
    return orjson.dumps({"stream": stream, "data": data})


def force_order(
    s: str = "BTCUSDT",
    side: str = "SELL",
    q: str = "0.5",
    p: str = "100000",
    ap: str = "100010",
    z: str | None = None,
    t: int = 1737996780000,
    **extra: Any,
) -> dict[str, Any]:
    order = {"s": s, "S": side, "o": "LIMIT", "f": "IOC", "q": q, "p": p, "ap": ap, "X": "FILLED",
             "l": q, "z": q if z is None else z, "T": t, **extra}
    return {"e": "forceOrder", "E": t + 3, "o": order}


def agg_trade(a: int, s: str = "BTCUSDT", p: str = "100000.1", q: str = "0.002", m: bool = False,
              t: int = 1737996780000, **extra: Any) -> dict[str, Any]:
    return {"e": "aggTrade", "E": t + 5, "a": a, "s": s, "p": p, "q": q, "f": a * 2, "l": a * 2,
            "T": t, "m": m, **extra}


def mark(s: str = "BTCUSDT", e: int = 1737996780000, p: str = "100000.5", r: str = "0.0001",
         t: int = 1738022400000, i: str = "100001.2") -> dict[str, Any]:
    return {"e": "markPriceUpdate", "E": e, "s": s, "p": p, "i": i, "P": p, "r": r, "T": t}


# ---------------------------------------------------------------- sample payloads, by value


def test_sample_liquidations() -> None:
    ad = adapter()
    first, second = (one(ad.parse(line, RECV)) for line in lines("binance_liquidations.jsonl"))
    assert first == Liquidation(
        venue="binance", symbol="BTCUSDT", instrument="BTC-USDT-PERP", base="BTC", ts=1568014460893,
        recv_ts=RECV, side="long", price=D("9910"), qty=D("0.014"), notional_usd=D("138.740"),
        order_id=None, sampled=True,
    )
    assert isinstance(second, Liquidation)
    assert (second.side, second.qty, second.price, second.notional_usd, second.ts) == (
        "long", D("0.009"), D("18990.00"), D("170.91"), 1665523974217
    )
    # notional uses the average fill price, not the logger-style order price (0.009 x 18917.15)
    assert second.notional_usd != D("0.009") * D("18917.15")


def test_sample_trades() -> None:
    ad = adapter(["CTKUSDT", "AKROUSDT"])
    results = [ad.parse(line, RECV) for line in lines("binance_trades.jsonl")]
    events = [one(r) for r in results]
    assert all(r.stream == "trade" for r in results)
    assert events == [
        Trade(venue="binance", symbol="CTKUSDT", instrument="CTK-USDT-PERP", base="CTK", ts=1626992741421,
              recv_ts=RECV, side="buy", price=D("1.01100"), qty=D("10"), notional_usd=D("10.11"),
              trade_id="16599292"),
        Trade(venue="binance", symbol="AKROUSDT", instrument="AKRO-USDT-PERP", base="AKRO",
              ts=1626992742134, recv_ts=RECV, side="sell", price=D("0.01731"), qty=D("312"),
              notional_usd=D("5.40072"), trade_id="14888302"),
        Trade(venue="binance", symbol="CTKUSDT", instrument="CTK-USDT-PERP", base="CTK", ts=1626992742715,
              recv_ts=RECV, side="buy", price=D("1.01100"), qty=D("10"), notional_usd=D("10.11"),
              trade_id="16599293"),
    ]
    # consecutive ids of the same symbol: no gap, no duplicate
    assert sum(r.gaps for r in results) == 0
    assert sum(r.duplicates for r in results) == 0


def test_sample_mark_price_and_open_interest() -> None:
    ad = adapter()
    (oi_line,) = lines("binance_open_interest_rest.jsonl")
    before = one(ad.parse_rest("/fapi/v1/openInterest?symbol=BTCUSDT", oi_line, RECV))
    assert before == OpenInterest(
        venue="binance", symbol="BTCUSDT", instrument="BTC-USDT-PERP", base="BTC", ts=1589437530011,
        recv_ts=RECV, oi_qty=D("10659.509"), oi_usd=None,
    )
    (mark_line,) = lines("binance_mark_price.jsonl")
    result = ad.parse(mark_line, RECV)
    assert result.stream == "mark_price"
    assert one(result) == Funding(
        venue="binance", symbol="BTCUSDT", instrument="BTC-USDT-PERP", base="BTC", ts=1562305380000,
        recv_ts=RECV, rate=D("0.00038167"), interval_h=8, next_funding_ts=1562306400000,
        mark_price=D("11794.15000000"), index_price=D("11784.62659091"),
    )
    # the same response again (a replay answering two polls with one recorded body) is a duplicate
    again = ad.parse_rest("/fapi/v1/openInterest?symbol=BTCUSDT", oi_line, RECV)
    assert (again.events, again.duplicates) == ([], 1)
    newer = oi_line.replace("1589437530011", "1589437540011")
    after = one(ad.parse_rest("https://fapi.binance.com/fapi/v1/openInterest?symbol=BTCUSDT", newer, RECV))
    assert isinstance(after, OpenInterest)
    assert after.oi_qty == D("10659.509")
    assert after.oi_usd == D("10659.509") * D("11794.15")
    assert after.oi_usd == D("125719848.07235")


# ---------------------------------------------------------------- the real all-market recording


def csv_rows() -> list[list[str]]:
    with CSV_PATH.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def venue_symbol(stripped: str) -> str:
    """The logger removed "USDT" from every line; USDC-quoted symbols kept their suffix."""
    return stripped if stripped.endswith("USDC") else stripped + "USDT"


def csv_frame(row: list[str]) -> bytes:
    s, side, otype, tif, q, p, ap, status, last, z, t = row[:11]
    order = {"s": venue_symbol(s), "S": side, "o": otype, "f": tif, "q": q, "p": p, "ap": ap, "X": status,
             "l": last, "z": z, "T": int(t)}
    return frame("!forceOrder@arr", {"e": "forceOrder", "E": int(t) + 7, "o": order})


def utc_ms(hour: int, minute: int) -> int:
    return int(datetime(2025, 1, 27, hour, minute, tzinfo=UTC).timestamp() * 1000)


def test_real_recording_dedupes_to_unique_events() -> None:
    rows = csv_rows()
    assert len(rows) == 3510
    unique = {tuple(row[:11]): row for row in rows}
    ad = BinanceUsdmAdapter(symbols=[])
    events: list[Liquidation] = []
    duplicates = 0
    for row in rows:
        result = ad.parse(csv_frame(row), RECV)
        assert not result.rejects, (row, result.rejects)
        assert result.stream == "liquidation"
        duplicates += result.duplicates
        events.extend(e for e in result.events if isinstance(e, Liquidation))
    assert len(events) == 1837 == len(unique)
    assert duplicates == 1673

    by_key = {(e.symbol, e.ts, e.side): e for e in events}
    assert len(by_key) == 1837
    for row in unique.values():
        event = by_key[(venue_symbol(row[0]), int(row[10]), "long" if row[1] == "SELL" else "short")]
        assert event.notional_usd == D(row[9]) * D(row[6])
        assert event.sampled
        assert event.order_id is None
    assert {e.side for e in events} == {"long", "short"}

    expected_total = sum((D(row[9]) * D(row[6]) for row in unique.values()), D(0))
    assert sum((e.notional_usd for e in events), D(0)) == expected_total

    # the DeepSeek-day long burst, computed independently from the CSV
    start, end = utc_ms(16, 53), utc_ms(16, 56)
    expected_burst = sum(
        (D(r[9]) * D(r[6]) for r in unique.values() if r[1] == "SELL" and start <= int(r[10]) < end), D(0)
    )
    burst = sum((e.notional_usd for e in events if e.side == "long" and start <= e.ts < end), D(0))
    assert burst == expected_burst
    assert D("1.5e6") < burst < D("1.7e6")


def test_real_recording_unbundles_multiplier_symbols() -> None:
    ad = BinanceUsdmAdapter(symbols=[])
    rows = [r for r in csv_rows() if r[0] in ("1000PEPE", "1MBABYDOGE", "1000PEPEUSDC")]
    assert {r[0] for r in rows} == {"1000PEPE", "1MBABYDOGE", "1000PEPEUSDC"}
    for row in rows:
        result = ad.parse(csv_frame(row), RECV)
        if result.duplicates:
            continue
        event = one(result)
        assert isinstance(event, Liquidation)
        multiplier = D(1_000_000) if row[0] == "1MBABYDOGE" else D(1000)
        base = {"1000PEPE": "PEPE", "1000PEPEUSDC": "PEPE", "1MBABYDOGE": "BABYDOGE"}[row[0]]
        quote = "USDC" if row[0].endswith("USDC") else "USDT"
        assert (event.base, event.instrument) == (base, f"{base}-{quote}-PERP")
        assert event.qty == D(row[9]) * multiplier
        assert event.price == D(row[6]) / multiplier
        assert event.notional_usd == D(row[9]) * D(row[6])


# ---------------------------------------------------------------- liquidation details


def test_liquidation_side_convention_and_array_form() -> None:
    ad = adapter()
    both = [force_order(side="SELL"), force_order(side="BUY", t=2)]
    result = ad.parse(frame("!forceOrder@arr", both), RECV)
    assert result.stream == "liquidation"
    assert [e.side for e in result.events if isinstance(e, Liquidation)] == ["long", "short"]


def test_liquidation_falls_back_to_order_qty_and_price_when_unfilled() -> None:
    ad = adapter()
    event = one(ad.parse(orjson.dumps(force_order(q="2", p="50", ap="0", z="0")), RECV))
    assert isinstance(event, Liquidation)
    assert (event.qty, event.price, event.notional_usd) == (D("2"), D("50"), D("100"))
    # ap missing entirely also falls back to p; z missing falls back to q
    data = force_order(q="3", p="10", t=5)
    del data["o"]["ap"], data["o"]["z"]
    event = one(ad.parse(orjson.dumps(data), RECV))
    assert isinstance(event, Liquidation)
    assert (event.qty, event.price) == (D("3"), D("10"))


def test_liquidation_dedupe_survives_reconnect_and_is_bounded() -> None:
    ad = BinanceUsdmAdapter(symbols=["BTCUSDT"], dedupe_capacity=2)
    payload = orjson.dumps(force_order(t=1))
    assert len(ad.parse(payload, RECV).events) == 1
    ad.reset_connection_state("binance-0")
    again = ad.parse(payload, RECV)
    assert (again.events, again.duplicates) == ([], 1)
    # different text for the same number is the same event
    assert ad.parse(orjson.dumps(force_order(t=1, q="0.50", ap="100010.0")), RECV).duplicates == 1
    ad.parse(orjson.dumps(force_order(t=2)), RECV)
    ad.parse(orjson.dumps(force_order(t=3)), RECV)
    # t=1 fell out of the bounded window
    assert len(ad.parse(payload, RECV).events) == 1


# ---------------------------------------------------------------- trades: gaps and duplicates


def test_agg_trade_gaps_duplicates_and_late_arrivals() -> None:
    ad = adapter()

    def run(a: int) -> ParseResult:
        return ad.parse(frame("btcusdt@aggTrade", agg_trade(a)), RECV)

    first = run(10)
    assert (len(first.events), first.gaps, first.duplicates) == (1, 0, 0)  # first sighting: no gap
    assert run(11).gaps == 0
    dup = run(11)
    assert (dup.events, dup.duplicates) == ([], 1)
    jump = run(15)
    assert (len(jump.events), jump.gaps) == (1, 3)
    late = run(13)  # the other connection of an overlap was behind: a real trade, not a repeat
    assert (len(late.events), late.duplicates) == (1, 0)
    assert run(13).duplicates == 1
    assert run(9).duplicates == 1
    ad.reset_connection_state("binance-0")
    assert run(15).duplicates == 1
    # another symbol has its own sequence
    other = ad.parse(frame("ethusdt@aggTrade", agg_trade(3, s="ETHUSDT")), RECV)
    assert (len(other.events), other.gaps, other.duplicates) == (1, 0, 0)


def test_agg_trade_taker_side_and_bundled_symbol() -> None:
    ad = adapter()
    event = one(ad.parse(orjson.dumps(agg_trade(1, s="1000PEPEUSDT", p="0.01731", q="312", m=True)), RECV))
    assert isinstance(event, Trade)
    assert (event.side, event.base, event.instrument) == ("sell", "PEPE", "PEPE-USDT-PERP")
    assert (event.qty, event.price, event.notional_usd) == (D("312000"), D("0.00001731"), D("5.40072"))


def test_unknown_fields_are_ignored() -> None:
    ad = adapter()
    payload = agg_trade(7, zz={"nested": [1, 2]}, rpi=True)
    event = one(ad.parse(frame("btcusdt@aggTrade", payload) + b"", RECV))
    assert isinstance(event, Trade)
    assert event.trade_id == "7"
    wrapped = orjson.dumps({"stream": "btcusdt@aggTrade", "data": agg_trade(8), "extra": 1})
    assert len(ad.parse(wrapped, RECV).events) == 1


# ---------------------------------------------------------------- mark price / funding


def test_mark_price_array_with_a_bad_element_keeps_the_good_ones() -> None:
    ad = adapter()
    payload = [mark("BTCUSDT"), mark("ETHUSDT", p="NaN"), mark("SOLUSDT", r="-0.0002"), "junk"]
    result = ad.parse(frame("!markPrice@arr@1s", payload), RECV)
    assert result.stream == "mark_price"
    assert [e.symbol for e in result.events] == ["BTCUSDT", "SOLUSDT"]
    assert kinds(result) == ["non_finite", "not_an_object"]
    sol = result.events[1]
    assert isinstance(sol, Funding)
    assert sol.rate == D("-0.0002")
    # the same array again (overlap of two connections) is all duplicates
    again = ad.parse(frame("!markPrice@arr@1s", payload[:1]), RECV)
    assert (again.events, again.duplicates) == ([], 1)


def test_mark_price_of_delivery_contract_values_oi_without_funding() -> None:
    ad = adapter()
    result = ad.parse(orjson.dumps([mark("BTCUSDT_250328", r="", t=0, p="101000")]), RECV)
    assert (result.events, result.rejects, result.stream) == ([], [], "mark_price")
    oi = one(ad.parse_rest("/fapi/v1/openInterest?symbol=BTCUSDT_250328",
                           b'{"openInterest":"2","symbol":"BTCUSDT_250328","time":1737996780001}', RECV))
    assert isinstance(oi, OpenInterest)
    assert (oi.instrument, oi.oi_usd) == ("BTC-USDT-20250328", D("202000"))


def test_funding_interval_from_funding_info_and_next_funding_zero() -> None:
    ad = adapter()
    body = (b'[{"symbol":"BLZUSDT","adjustedFundingRateCap":"0.02500000",'
            b'"adjustedFundingRateFloor":"-0.02500000","fundingIntervalHours":4,"disclaimer":false}]')
    info = ad.parse_rest("/fapi/v1/fundingInfo", body, RECV)
    assert (info.control, info.events, info.rejects) == (True, [], [])
    blz, btc = ad.parse(orjson.dumps([mark("BLZUSDT", t=0), mark("BTCUSDT")]), RECV).events
    assert isinstance(blz, Funding) and isinstance(btc, Funding)
    assert (blz.interval_h, blz.next_funding_ts) == (4, None)
    assert (btc.interval_h, btc.next_funding_ts) == (8, 1738022400000)


def test_mark_price_of_bundled_symbol_is_per_unit_and_values_oi() -> None:
    ad = adapter()
    funding = one(ad.parse(orjson.dumps(mark("1000PEPEUSDT", p="0.01", i="0.0101")), RECV))
    assert isinstance(funding, Funding)
    assert (funding.mark_price, funding.index_price) == (D("0.00001"), D("0.0000101"))
    assert ad.last_mark_price("1000PEPEUSDT") == D("0.01")
    oi = one(ad.parse_rest("/fapi/v1/openInterest?symbol=1000PEPEUSDT",
                           b'{"openInterest":"1000","symbol":"1000PEPEUSDT","time":1737996780001}', RECV))
    assert isinstance(oi, OpenInterest)
    assert (oi.oi_qty, oi.oi_usd) == (D("1000000"), D("10"))


# ---------------------------------------------------------------- control and bad input


def test_subscribe_ack_is_control() -> None:
    result = adapter().parse('{"result":null,"id":1}', RECV)
    assert (result.control, result.stream, result.events, result.rejects) == (True, "control", [], [])
    listing = adapter().parse('{"result":["btcusdt@aggTrade"],"id":3}', RECV)
    assert listing.control and not listing.rejects
    error = adapter().parse('{"error":{"code":2,"msg":"Invalid request"},"id":4}', RECV)
    assert error.control and kinds(error) == ["venue_error"]


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (b'{"stream":"btcusdt@aggTrade","data":', "malformed_json"),
        (b"\xff\xfe", "malformed_json"),
        (b'{"e":"aggTrade","p":NaN}', "malformed_json"),
        (b'"hello"', "not_an_object"),
        (b"42", "not_an_object"),
        (b'{"stream":"x","data":"text"}', "not_an_object"),
        (b'{"e":"depthUpdate","s":"BTCUSDT"}', "unknown_message"),
        (b'{"foo":1}', "unknown_message"),
        (orjson.dumps(agg_trade(1, p="NaN")), "non_finite"),
        (orjson.dumps(agg_trade(1, p="Infinity")), "non_finite"),
        (orjson.dumps(agg_trade(1, p="-Infinity")), "non_finite"),
        (orjson.dumps(agg_trade(1, q="-1")), "negative"),
        (orjson.dumps(agg_trade(1, p="0")), "bad_number"),
        (orjson.dumps(agg_trade(1, p="abc")), "bad_number"),
        (orjson.dumps(agg_trade(1, p="1e999999")), "bad_number"),
        (orjson.dumps(agg_trade(1, p="1" * 100)), "bad_number"),
        (orjson.dumps(agg_trade(1, p=True)), "bad_number"),  # type: ignore[arg-type]
        (orjson.dumps(agg_trade(1, s="BTCEUR")), "unknown_symbol"),
        (orjson.dumps(agg_trade(1, s=7)), "bad_field"),  # type: ignore[arg-type]
        (orjson.dumps(agg_trade(1, m="yes")), "bad_field"),  # type: ignore[arg-type]
        (orjson.dumps(agg_trade(-1)), "bad_field"),
        (orjson.dumps(agg_trade(1, t=1.5)), "bad_field"),  # type: ignore[arg-type]
        (orjson.dumps(agg_trade(1)).replace(b'"a":1,', b'"a":1180591620717411303424,'), "bad_field"),
        (orjson.dumps({k: v for k, v in agg_trade(1).items() if k != "q"}), "missing_field"),
        (orjson.dumps(force_order(q="-0.1", z="-0.1")), "negative"),
        (orjson.dumps(force_order(side="HOLD")), "bad_field"),
        (orjson.dumps(force_order(p="0", ap="0")), "bad_number"),
        (orjson.dumps(force_order(s="BTC")), "unknown_symbol"),
        (orjson.dumps({"e": "forceOrder", "o": "x"}), "not_an_object"),
        (orjson.dumps(mark(p="0")), "bad_number"),
        (orjson.dumps(mark(r="NaN")), "non_finite"),
        (orjson.dumps(mark(t=-5)), "bad_field"),
    ],
)
def test_bad_input_is_rejected_not_raised(raw: bytes, kind: str) -> None:
    result = adapter().parse(raw, RECV)
    assert result.events == []
    assert kinds(result) == [kind], result.rejects


def test_huge_frame_is_rejected_before_parsing() -> None:
    huge = b'{"stream":"x","data":"' + b"a" * MAX_FRAME_BYTES + b'"}'
    assert kinds(adapter().parse(huge, RECV)) == ["frame_too_large"]
    assert kinds(adapter().parse(huge.decode(), RECV)) == ["frame_too_large"]


def test_str_frames_are_accepted() -> None:
    (line,) = lines("binance_mark_price.jsonl")
    assert isinstance(one(adapter().parse(line, RECV)), Funding)


# ---------------------------------------------------------------- REST


EXCHANGE_INFO = orjson.dumps({
    "timezone": "UTC",
    "serverTime": 1737996780000,
    "rateLimits": [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 600},
        {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
    ],
    "assets": [{"asset": "USDT", "marginAvailable": True}],
    "symbols": [
        {"symbol": "BTCUSDT", "pair": "BTCUSDT", "contractType": "PERPETUAL", "deliveryDate": 4133404800000,
         "onboardDate": 1569398400000, "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT",
         "marginAsset": "USDT", "pricePrecision": 2, "quantityPrecision": 3, "filters": []},
        {"symbol": "1000PEPEUSDT", "pair": "1000PEPEUSDT", "contractType": "PERPETUAL",
         "deliveryDate": 4133404800000, "status": "TRADING", "baseAsset": "1000PEPE", "quoteAsset": "USDT",
         "marginAsset": "USDT"},
        {"symbol": "BTCUSDT_250328", "pair": "BTCUSDT", "contractType": "CURRENT_QUARTER",
         "deliveryDate": 1743148800000, "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT"},
        {"symbol": "XBTEUR", "pair": "XBTEUR", "contractType": "PERPETUAL", "status": "SETTLING",
         "baseAsset": "XBT", "quoteAsset": "EUR"},
        {"symbol": 5, "baseAsset": "X"},
    ],
})


def test_exchange_info_loads_metadata_and_weight_limit() -> None:
    ad = BinanceUsdmAdapter(symbols=[f"S{i}USDT" for i in range(300)])
    assert ad.symbol_info("XBTEUR") is None
    result = ad.parse_rest("https://fapi.binance.com/fapi/v1/exchangeInfo", EXCHANGE_INFO, RECV)
    assert (result.control, result.events, result.stream) == (True, [], "metadata")
    assert kinds(result) == ["bad_field"]  # the one malformed entry; the others still load
    assert set(ad.metadata) == {"BTCUSDT", "1000PEPEUSDT", "BTCUSDT_250328", "XBTEUR"}
    assert ad.metadata["XBTEUR"].status == "SETTLING"
    assert ad.exchange_weight_limit_per_min == 600
    info = ad.symbol_info("XBTEUR")
    assert info is not None and info.instrument == "XBT-EUR-PERP"
    pepe = ad.symbol_info("1000PEPEUSDT")
    assert pepe is not None and (pepe.base, pepe.multiplier) == ("PEPE", D(1000))
    quarter = ad.symbol_info("BTCUSDT_250328")
    assert quarter is not None and quarter.instrument == "BTC-USDT-20250328"
    # a symbol missing from exchangeInfo is still normalized by its suffix
    assert one(ad.parse(orjson.dumps(agg_trade(1, s="NEWUSDT")), RECV)).base == "NEW"
    # 300 symbols at weight 1 under the venue's 600/min (lower than the configured 1200)
    polls = ad.rest_polls()
    assert len(polls) == 300
    assert {p.interval_s for p in polls} == {30.0}


def test_rest_polls_stay_inside_the_budget() -> None:
    small = BinanceUsdmAdapter(symbols=["btcusdt", "ETHUSDT", "BTCUSDT"])
    assert small.symbols == ["BTCUSDT", "ETHUSDT"]
    polls = small.rest_polls()
    assert [(p.path, p.interval_s, p.weight) for p in polls] == [
        ("/fapi/v1/openInterest?symbol=BTCUSDT", 10.0, 1),
        ("/fapi/v1/openInterest?symbol=ETHUSDT", 10.0, 1),
    ]
    big = BinanceUsdmAdapter(symbols=[f"S{i}USDT" for i in range(300)], rest_weight_budget_per_min=1200)
    interval = big.rest_polls()[0].interval_s
    assert interval == 15.0
    assert 300 * 60 / interval <= 1200
    assert BinanceUsdmAdapter(symbols=[]).rest_polls() == []


def test_startup_requests() -> None:
    assert adapter().startup_requests() == ["/fapi/v1/exchangeInfo", "/fapi/v1/fundingInfo"]


@pytest.mark.parametrize(
    ("endpoint", "body", "kind"),
    [
        ("/fapi/v1/depth?symbol=BTCUSDT", b"{}", "unknown_endpoint"),
        ("http://[::1", b"{}", "unknown_endpoint"),
        ("/fapi/v1/openInterest?symbol=BTCUSDT", b'{"code":-1121,"msg":"Invalid symbol."}', "venue_error"),
        ("/fapi/v1/openInterest?symbol=BTCUSDT", b"<html>", "malformed_json"),
        ("/fapi/v1/openInterest?symbol=BTCUSDT", b'{"openInterest":"-1","symbol":"BTCUSDT","time":1}',
         "negative"),
        ("/fapi/v1/openInterest?symbol=BTCUSDT", b'{"openInterest":"1","symbol":"BTCUSDT"}', "missing_field"),
        ("/fapi/v1/openInterest?symbol=BTC", b'{"openInterest":"1","time":1}', "unknown_symbol"),
        ("/fapi/v1/exchangeInfo", b'{"symbols":[]}', "bad_field"),
        ("/fapi/v1/fundingInfo", b'{"symbol":"X"}', "bad_field"),
    ],
)
def test_bad_rest_responses(endpoint: str, body: bytes, kind: str) -> None:
    result = adapter().parse_rest(endpoint, body, RECV)
    assert result.events == []
    assert kinds(result) == [kind]


def test_open_interest_symbol_from_query_when_body_lacks_it() -> None:
    event = one(adapter().parse_rest("/fapi/v1/openInterest?symbol=ETHUSDT",
                                     b'{"openInterest":"0","time":1737996780001}', RECV))
    assert isinstance(event, OpenInterest)
    assert (event.symbol, event.oi_qty, event.oi_usd) == ("ETHUSDT", D(0), None)


def test_bad_exchange_info_keeps_previous_metadata() -> None:
    ad = adapter()
    ad.parse_rest("/fapi/v1/exchangeInfo", EXCHANGE_INFO, RECV)
    ad.parse_rest("/fapi/v1/exchangeInfo", b'{"symbols":"nope"}', RECV)
    assert "XBTEUR" in ad.metadata


# ---------------------------------------------------------------- connection plan and replay side


def test_ws_connection_plan_for_default_symbols() -> None:
    ad = BinanceUsdmAdapter.from_config(BinanceConfig.model_validate({}))
    (plan,) = ad.ws_connections()
    assert plan.name == "binance-0"
    assert plan.url == ("wss://fstream.binance.com/market/stream?streams=!forceOrder@arr/!markPrice@arr@1s/"
                        "btcusdt@aggTrade/ethusdt@aggTrade/solusdt@aggTrade")
    assert [orjson.loads(m) for m in plan.subscribe] == [{
        "method": "SUBSCRIBE",
        "params": ["!forceOrder@arr", "!markPrice@arr@1s", "btcusdt@aggTrade", "ethusdt@aggTrade",
                   "solusdt@aggTrade"],
        "id": 1,
    }]


def test_ws_connections_are_sharded() -> None:
    symbols = [f"COIN{i}USDT" for i in range(450)]
    ad = BinanceUsdmAdapter(symbols=symbols, ws_url="ws://127.0.0.1:9000/market/")
    plans = ad.ws_connections()
    assert [p.name for p in plans] == ["binance-0", "binance-1", "binance-2"]
    all_params: list[str] = []
    ids: list[int] = []
    for index, plan in enumerate(plans):
        assert plan.url.startswith("ws://127.0.0.1:9000/market/stream?streams=")
        url_streams = plan.url.split("streams=", 1)[1].split("/")
        assert len(url_streams) <= 200
        params: list[str] = []
        for message in plan.subscribe:
            decoded = orjson.loads(message)
            assert decoded["method"] == "SUBSCRIBE"
            assert len(decoded["params"]) <= 100
            params.extend(decoded["params"])
            ids.append(decoded["id"])
        assert params == url_streams
        assert ("!forceOrder@arr" in params) == (index == 0)
        all_params.extend(params)
    assert all_params == ["!forceOrder@arr", "!markPrice@arr@1s", *(f"{s.lower()}@aggTrade" for s in symbols)]
    assert len(set(ids)) == len(ids)


def test_replay_replies() -> None:
    ad = adapter()
    sub = '{"method":"SUBSCRIBE","params":["btcusdt@aggTrade","!forceOrder@arr"],"id":7}'
    assert ad.replay_replies(sub) == ['{"result":null,"id":7}']
    assert ad.replay_replies('{"method":"UNSUBSCRIBE","params":["btcusdt@aggTrade"],"id":8}') == [
        '{"result":null,"id":8}'
    ]
    assert ad.replay_replies('{"method":"LIST_SUBSCRIPTIONS","id":9}') == [
        '{"result":["!forceOrder@arr"],"id":9}'
    ]
    for garbage in ["", "not json", "[]", '{"method":"SUBSCRIBE"}', '{"method":"PING","id":1}',
                    '{"method":"SUBSCRIBE","params":[1],"id":2}', '{"method":"SUBSCRIBE","id":true}']:
        assert ad.replay_replies(garbage) == []
    # the replies are what the adapter itself accepts as control frames
    assert adapter().parse(ad.replay_replies(sub)[0], RECV).control


def test_class_attributes_and_registry() -> None:
    cls = BinanceUsdmAdapter
    assert (cls.venue, cls.default_ws_url, cls.default_rest_url) == (
        "binance", "wss://fstream.binance.com/market", "https://fapi.binance.com"
    )
    assert cls.app_ping_message is None
    assert cls.liquidations_sampled is True
    config = Config.model_validate({"venues": {"binance": {
        "symbols": ["DOGEUSDT"], "stale_after_s": 12, "max_connection_age_s": 3600,
        "ws_url": "ws://localhost:1/market", "rest_url": "http://localhost:2"}}})
    built = create_adapter("binance", config)
    assert isinstance(built, BinanceUsdmAdapter)
    assert built.symbols == ["DOGEUSDT"]
    assert (built.stale_after_s, built.max_connection_age_s) == (12, 3600)
    assert (built.ws_url, built.rest_url) == ("ws://localhost:1/market", "http://localhost:2")
    bare = BinanceUsdmAdapter(symbols=["BTCUSDT"])
    assert bare.stale_after_s == 30.0
    assert bare.max_connection_age_s == 23.5 * 3600


# ---------------------------------------------------------------- property tests: parse never raises

ALLOWED_REJECTS = {
    "malformed_json", "not_an_object", "unknown_message", "bad_field", "missing_field", "bad_number",
    "non_finite", "negative", "unknown_symbol", "frame_too_large", "venue_error",
}


#: websocket labels plus the two REST ones
STREAM_LABELS = {"liquidation", "trade", "mark_price", "control", "unknown", "open_interest", "metadata"}


def check(result: ParseResult) -> None:
    venue_props.check_common(result, "binance", ALLOWED_REJECTS, STREAM_LABELS, gaps=True)
    for event in result.events:
        assert event.ts > 0
        if isinstance(event, Liquidation | Trade):
            assert event.price > 0 and event.qty > 0
            assert EXACT.multiply(event.qty, event.price) == event.notional_usd
        elif isinstance(event, Funding):
            assert event.mark_price is None or event.mark_price > 0


json_values = venue_props.json_values([
    "NaN", "Infinity", "-1", "0", "1e9999", "BTCUSDT", "SELL", "BUY", "", "0.0001",
])

SEEDS: list[Callable[[], Any]] = [
    force_order,
    lambda: agg_trade(5),
    mark,
    lambda: [mark(), mark("ETHUSDT")],
    lambda: {"result": None, "id": 1},
]


@venue_props.never_raises(300)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    check(adapter().parse(raw, RECV))
    check(adapter().parse_rest("/fapi/v1/openInterest?symbol=BTCUSDT", raw, RECV))


@venue_props.never_raises(300)
@given(json_values, st.sampled_from(["forceOrder", "aggTrade", "markPriceUpdate", None]))
def test_arbitrary_json_never_raises(value: Any, kind: str | None) -> None:
    if kind is not None and isinstance(value, dict):
        value["e"] = kind
    ad = adapter()
    check(ad.parse(orjson.dumps(value), RECV))
    check(ad.parse(frame("s", value), RECV))
    for endpoint in ("/fapi/v1/exchangeInfo", "/fapi/v1/fundingInfo", "/fapi/v1/openInterest"):
        check(ad.parse_rest(endpoint, orjson.dumps(value), RECV))
    assert isinstance(ad.replay_replies(orjson.dumps(value).decode()), list)


@venue_props.never_raises(500)
@given(venue_props.mutated_frames(SEEDS, json_values, lambda payload: frame("x@y", payload)))
def test_mutated_real_frames_never_raise(raw: bytes) -> None:
    ad = adapter()
    check(ad.parse(raw, RECV))
    check(ad.parse(raw, RECV))  # and again: de-dup state must not trip either


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(csv_rows()), json_values, st.integers(min_value=0, max_value=10))
def test_mutated_csv_rows_never_raise(row: list[str], value: Any, column: int) -> None:
    payload = orjson.loads(csv_frame(row))
    order = payload["data"]["o"]
    order[sorted(order)[column]] = value
    check(adapter().parse(orjson.dumps(payload), RECV))


def test_funding_events_are_thinned_to_rate_changes_and_an_interval() -> None:
    adapter = BinanceUsdmAdapter([], funding_min_interval_s=60)

    def frame(ts: int, rate: str) -> bytes:
        return orjson.dumps({"stream": "!markPrice@arr@1s", "data": [
            {"e": "markPriceUpdate", "E": ts, "s": "BTCUSDT", "p": "100", "i": "100", "P": "100", "r": rate,
             "T": 1_700_000_000_000}]})

    emitted = []
    for second, rate in enumerate(["0.0001"] * 70 + ["0.0002"] * 3):
        emitted += [e.rate for e in adapter.parse(frame(1_000_000 + second * 1000, rate), 0).events]
    # first one, the one 60 s later, and the change of rate: 3 of 73 frames
    assert emitted == [Decimal("0.0001"), Decimal("0.0001"), Decimal("0.0002")]
    assert adapter.last_mark_price("BTCUSDT") == Decimal("100")
