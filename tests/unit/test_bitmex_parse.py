"""BitMEX adapter: every sample payload by value, the liquidation-order lifecycle, instrument state, ugly input."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flushwatch.config import BitmexConfig
from flushwatch.errors import CodecError
from flushwatch.events import Funding, Liquidation, OpenInterest, Trade
from ingest.base import ParseResult
from ingest.bitmex import (
    FUNDING_REFRESH_INTERVAL_MS,
    MAX_FRAME_BYTES,
    OI_REVALUE_INTERVAL_MS,
    BitmexAdapter,
    iso_ms,
    timespan_hours,
)
from tests.unit import venue_props
from tests.unit.venue_props import kinds, one, typed

FIXTURES = Path(__file__).parent.parent / "fixtures" / "bitmex"
RECV = 1_700_000_000_000
D = Decimal
#: the adapter's documented rounding of quotients: 28 significant digits, ties to even
Q = Context(prec=28, rounding=ROUND_HALF_EVEN)
EXACT = Context(prec=200)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: XBTUSDT's size columns as in the ccxt ``bitmex`` fetchMarkets comment (a 2022-10-16 row):
#: 1 contract = 0.000001 XBT
XBTUSDT_META = {"symbol": "XBTUSDT", "rootSymbol": "XBT", "typ": "FFWCSX", "underlying": "XBT",
                "quoteCurrency": "USDT", "expiry": None, "multiplier": 1, "settlCurrency": "USDt",
                "underlyingToPositionMultiplier": 1000000, "underlyingToSettleMultiplier": None,
                "quoteToSettleMultiplier": 1000000, "isQuanto": False, "isInverse": False}
#: UNIUSDT in July 2021 was a quanto settled in XBt; both multipliers are reconstructed from the recorded
#: trade itself: grossValue 899444 = 52 × 17.297 × 1000, homeNotional 16.73101673101673 = 52 × 1000 / 3108
UNIUSDT_META = {"symbol": "UNIUSDT", "underlying": "UNI", "quoteCurrency": "USDT", "typ": "FFWCSX",
                "multiplier": 1000, "quoteToSettleMultiplier": 3108, "isQuanto": True, "isInverse": False}


def lines(name: str) -> list[str]:
    return (FIXTURES / name).read_text(encoding="utf-8").splitlines()


def rows(name: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in lines(name)]


def table(name: str, action: str, data: list[Any], **extra: Any) -> bytes:
    return orjson.dumps({"table": name, "action": action, "data": data, **extra})


def loaded(symbols: list[str] | None = None) -> BitmexAdapter:
    """An adapter after the start-up REST call (XBTUSD inverse, ETHUSD quanto, 2021 rows)."""
    ad = BitmexAdapter(symbols if symbols is not None else ["XBTUSD", "ETHUSD"])
    result = ad.parse_rest("/api/v1/instrument/active", orjson.dumps(rows("bitmex_instrument_rest.jsonl")), RECV)
    assert (result.control, result.events, result.rejects, result.stream) == (True, [], [], "metadata")
    return ad


def ms(text: str) -> int:
    """Epoch ms of a UTC wall time, computed independently of the adapter (and exactly)."""
    return (datetime.fromisoformat(text).replace(tzinfo=UTC) - EPOCH) // timedelta(milliseconds=1)


# ---------------------------------------------------------------- sample payloads, by value


def test_sample_trades() -> None:
    ad = loaded()
    assert ad.parse(table("instrument", "partial", [UNIUSDT_META]), RECV) == ParseResult(stream="instrument")
    uni_line, xbt_line = lines("bitmex_trades.jsonl")
    uni = one(ad.parse(uni_line, RECV))
    assert uni == Trade(
        venue="bitmex", symbol="UNIUSDT", instrument="UNI-USDT-PERP", base="UNI", ts=ms("2021-07-22T22:36:10.014"),
        recv_ts=RECV, side="buy", price=D("17.297"), qty=D("16.73101673101673"),
        notional_usd=D("289.39639639639637"), trade_id="39744121-c20e-44ba-8cc8-a6b8cdf72885",
    )
    result = ad.parse(xbt_line, RECV)
    assert result.stream == "trade"
    assert result.events == [
        Trade(venue="bitmex", symbol="XBTUSD", instrument="BTC-USD-PERP", base="BTC", ts=1626993371685,
              recv_ts=RECV, side="buy", price=D("32180.5"), qty=D("0.00310747"), notional_usd=D("100"),
              trade_id="6e70bebe-235e-08a6-d11b-e1042bf1f2ed"),
        Trade(venue="bitmex", symbol="XBTUSD", instrument="BTC-USD-PERP", base="BTC", ts=1626993371685,
              recv_ts=RECV, side="buy", price=D("32180.5"), qty=D("0.02796723"), notional_usd=D("900"),
              trade_id="132702bb-2daa-0b5a-cb86-01882dd0348b"),
    ]
    # XBTUSD contracts are USD: the notional is the contract count, never size × price
    assert [e.notional_usd for e in typed(result.events, Trade)] == [D(100), D(900)]


def test_sample_trades_without_venue_notionals_use_the_contract_formulas() -> None:
    ad = loaded()
    ad.parse(table("instrument", "partial", [UNIUSDT_META]), RECV)
    for line in lines("bitmex_trades.jsonl"):
        payload = orjson.loads(line)
        for row in payload["data"]:
            home, foreign = D(repr(row.pop("homeNotional"))), D(repr(row.pop("foreignNotional")))
            event = one(ad.parse(table("trade", "insert", [{**row, "trdMatchID": row["trdMatchID"] + "x"}]), RECV))
            assert isinstance(event, Trade)
            if row["symbol"] == "XBTUSD":  # inverse: usd = contracts, base = usd / price
                assert event.notional_usd == D(row["size"]) == foreign
                assert event.qty == Q.divide(D(row["size"]), D(repr(row["price"])))
                # the venue rounds each 100-contract lot to satoshis (grossValue 2796723 = 9 × 310747)
                assert abs(event.qty - home) / home < D("0.000001")
            else:  # quanto: base = contracts × multiplier / quoteToSettleMultiplier
                assert event.qty == Q.divide(D(52 * 1000), D(3108))
                assert abs(event.qty - home) < D("1e-13")
                assert event.notional_usd == Q.divide(EXACT.multiply(D(52 * 1000), D("17.297")), D(3108))
                assert abs(event.notional_usd - foreign) < D("1e-12")


def test_sample_liquidation_of_2019_needs_a_usd_valued_instrument() -> None:
    (line,) = lines("bitmex_liquidations.jsonl")
    ad = loaded()
    assert kinds(ad.parse(line, RECV)) == ["unknown_symbol"]  # TRXZ19: no metadata
    # TRXZ19 was a TRX future quoted in XBT: known now, but not valued in USD
    ad.parse(table("instrument", "partial", [{"symbol": "TRXZ19", "underlying": "TRX", "quoteCurrency": "XBT",
                                              "expiry": "2019-12-27T12:00:00.000Z", "multiplier": 100000000,
                                              "isQuanto": False, "isInverse": False,
                                              "underlyingToPositionMultiplier": 1}]), RECV)
    result = ad.parse(line, RECV)
    assert kinds(result) == ["unknown_symbol"]
    assert "quoted in XBT" in result.rejects[0].detail
    # the same order on a USD instrument: Buy ⇒ a short was liquidated, sized in USD contracts
    row = orjson.loads(line)["data"][0]
    event = one(ad.parse(table("liquidation", "insert", [{**row, "symbol": "XBTUSD", "price": 9000.5}]), RECV))
    assert isinstance(event, Liquidation)
    assert (event.side, event.notional_usd, event.qty) == ("short", D(5000), Q.divide(D(5000), D("9000.5")))


def test_liquidation_lifecycle_counts_each_insert_once() -> None:
    ad = loaded()
    ad.parse(table("instrument", "partial", [XBTUSDT_META]), RECV)
    results = [ad.parse(line, RECV + i) for i, line in enumerate(lines("bitmex_liquidations_lifecycle.jsonl"))]
    assert all(r.stream == "liquidation" and not r.rejects and not r.duplicates for r in results)
    assert [len(r.events) for r in results] == [0, 1, 0, 0, 0, 1, 0, 0, 1, 0]
    events = typed([e for r in results for e in r.events], Liquidation)
    assert events == [
        Liquidation(venue="bitmex", symbol="XBTUSD", instrument="BTC-USD-PERP", base="BTC", ts=RECV + 1,
                    recv_ts=RECV + 1, side="short", price=D("88303.7"), qty=Q.divide(D(50900), D("88303.7")),
                    notional_usd=D(50900), order_id="8c808f22-254c-49d9-b24a-a99329b9f6d4", sampled=False),
        Liquidation(venue="bitmex", symbol="XBTUSD", instrument="BTC-USD-PERP", base="BTC", ts=RECV + 5,
                    recv_ts=RECV + 5, side="long", price=D("90396.3"), qty=Q.divide(D(891800), D("90396.3")),
                    notional_usd=D(891800), order_id="749134b5-8b4e-48d3-ab56-3495e8c58957", sampled=False),
        Liquidation(venue="bitmex", symbol="XBTUSDT", instrument="BTC-USDT-PERP", base="BTC", ts=RECV + 8,
                    recv_ts=RECV + 8, side="short", price=D("87785.3"), qty=D("0.0397"),
                    notional_usd=D("3485.07641"), order_id="9a519e00-4fe7-4f17-9629-e48f6d3ab21d", sampled=False),
    ]
    assert events[0].qty == D("0.5764197876193183298095096808")  # 50900 / 88303.7, 28 digits
    # the same session again (a replayed recording, a second connection): nothing new
    again = [ad.parse(line, RECV) for line in lines("bitmex_liquidations_lifecycle.jsonl")]
    assert sum(len(r.events) for r in again) == 0
    assert sum(r.duplicates for r in again) == 3


def test_liquidation_lifecycle_without_linear_metadata_rejects_only_that_insert() -> None:
    ad = loaded()
    results = [ad.parse(line, RECV) for line in lines("bitmex_liquidations_lifecycle.jsonl")]
    assert sum(len(r.events) for r in results) == 2
    assert [kinds(r) for r in results if r.rejects] == [["unknown_symbol"]]
    # once the metadata arrives, a re-sent insert of that order is counted: it was never counted before
    ad.parse(table("instrument", "partial", [XBTUSDT_META]), RECV)
    event = one(ad.parse(lines("bitmex_liquidations_lifecycle.jsonl")[8], RECV))
    assert isinstance(event, Liquidation) and event.notional_usd == D("3485.07641")


def test_partial_on_resubscribe_is_known_not_new() -> None:
    ad = loaded()
    order = {"orderID": "a-1", "symbol": "XBTUSD", "side": "Sell", "price": 30000, "leavesQty": 1000}
    first = ad.parse(table("liquidation", "insert", [order]), RECV)
    assert [e.side for e in typed(first.events, Liquidation)] == ["long"]
    ad.reset_connection_state("bitmex-0")
    # the reconnect's partial lists the still-open order and one that opened during the gap
    gap_order = {**order, "orderID": "b-2", "leavesQty": 500}
    partial = ad.parse(table("liquidation", "partial", [order, gap_order], keys=["orderID"]), RECV)
    assert (partial.events, partial.rejects, partial.duplicates) == ([], [], 0)
    # an overlap re-sending the inserts: duplicates, not liquidations
    again = ad.parse(table("liquidation", "insert", [order, gap_order]), RECV)
    assert (again.events, again.duplicates) == ([], 2)
    for action in ("update", "delete"):
        assert ad.parse(table("liquidation", action, [{"orderID": "a-1", "symbol": "XBTUSD"}]), RECV).events == []
    # updates and deletes of orders never seen are ignored too
    assert ad.parse(table("liquidation", "update", [{"orderID": "zzz", "leavesQty": 1}]), RECV) == ParseResult(
        stream="liquidation")
    new = ad.parse(table("liquidation", "insert", [{**order, "orderID": "c-3", "side": "Buy"}]), RECV)
    assert [e.side for e in typed(new.events, Liquidation)] == ["short"]


def test_liquidation_dedupe_window_is_bounded() -> None:
    ad = BitmexAdapter(["XBTUSD"], liquidation_dedupe_capacity=2)
    ad.parse_rest("/api/v1/instrument/active", orjson.dumps(rows("bitmex_instrument_rest.jsonl")), RECV)

    def insert(order_id: str) -> ParseResult:
        return ad.parse(table("liquidation", "insert", [{"orderID": order_id, "symbol": "XBTUSD", "side": "Sell",
                                                         "price": 30000, "leavesQty": 100}]), RECV)

    assert len(insert("1").events) == 1
    assert insert("1").duplicates == 1
    insert("2")
    insert("3")
    assert len(insert("1").events) == 1  # fell out of the window


def test_quanto_liquidation_uses_live_quote_to_settle_multiplier() -> None:
    ad = loaded()
    order = {"orderID": "e-1", "symbol": "ETHUSD", "side": "Sell", "price": 2000, "leavesQty": 3108}
    event = one(ad.parse(table("liquidation", "insert", [order]), RECV))
    assert (event.instrument, event.base, event.qty, event.notional_usd) == ("ETH-USD-PERP", "ETH", D(100), D(200000))
    # the XBT price moved: BitMEX pushes the new quoteToSettleMultiplier (satoshis per USD)
    ad.parse(table("instrument", "update", [{"symbol": "ETHUSD", "quoteToSettleMultiplier": 1554}]), RECV)
    event = one(ad.parse(table("liquidation", "insert", [{**order, "orderID": "e-2"}]), RECV))
    assert (event.qty, event.notional_usd) == (D(200), D(400000))


# ---------------------------------------------------------------- instrument table: REST, partial, sparse updates


def test_rest_loads_contracts_without_emitting() -> None:
    ad = loaded()
    xbt, eth = ad.contract("XBTUSD"), ad.contract("ETHUSD")
    assert xbt is not None and eth is not None
    assert (xbt.kind, xbt.base, xbt.quote, xbt.instrument) == ("inverse", "BTC", "USD", "BTC-USD-PERP")
    assert (eth.kind, eth.base, eth.instrument, eth.multiplier, eth.quote_to_settle) == (
        "quanto", "ETH", "ETH-USD-PERP", D(100), D(3108))
    assert ad.instrument_fields("XBTUSD")["fundingInterval"] == 8


def test_instrument_partial_values() -> None:
    ad = loaded()
    xbt_row, eth_row = rows("bitmex_instrument_rest.jsonl")
    result = ad.parse(table("instrument", "partial", [xbt_row, eth_row], keys=["symbol"]), RECV)
    assert result.stream == "instrument" and not result.rejects
    xbt_oi, xbt_funding, eth_oi, eth_funding = result.events
    ts = ms("2021-07-22T22:36:05")
    assert xbt_oi == OpenInterest(venue="bitmex", symbol="XBTUSD", instrument="BTC-USD-PERP", base="BTC", ts=ts,
                                  recv_ts=RECV, oi_qty=Q.divide(D(574264600), D("32184.89")), oi_usd=D(574264600))
    # openValue (satoshis) agrees with openInterest / markPrice to 0.0001 %
    assert abs(xbt_oi.oi_qty - D(1784268825430) / D(10**8)) / xbt_oi.oi_qty < D("0.000001")
    assert xbt_funding == Funding(
        venue="bitmex", symbol="XBTUSD", instrument="BTC-USD-PERP", base="BTC", ts=ts, recv_ts=RECV,
        rate=D("0.0001"), interval_h=8, next_funding_ts=ms("2021-07-23T04:00:00"), mark_price=D("32184.89"),
        index_price=D("32182.72"),
    )
    assert eth_oi == OpenInterest(
        venue="bitmex", symbol="ETHUSD", instrument="ETH-USD-PERP", base="ETH", ts=ts, recv_ts=RECV,
        oi_qty=Q.divide(D(1403475 * 100), D(3108)),
        oi_usd=Q.divide(EXACT.multiply(D(1403475 * 100), D("2003.93")), D(3108)),
    )
    assert D(45_000) < eth_oi.oi_qty < D(45_200)
    assert isinstance(eth_funding, Funding)
    assert (eth_funding.rate, eth_funding.interval_h, eth_funding.index_price) == (D("0.000551"), 8, D("2003.18"))
    # the quanto formula matches the row's own 24 h volume: 3293153 contracts ≈ 105785.67 ETH
    home_24h = Q.divide(D(3293153 * 100), D(3108))
    assert abs(home_24h - D("105785.66518691278")) / home_24h < D("0.005")
    # the same partial again (a reconnect): state unchanged, nothing new to say
    assert ad.parse(table("instrument", "partial", [xbt_row, eth_row]), RECV).events == []


def test_linear_instrument_of_2024_and_a_non_usd_quote() -> None:
    ad = BitmexAdapter(["JTOUSDT", "XBTETH"])
    jto_row, xbteth_row = rows("bitmex_instrument_2024.jsonl")
    result = ad.parse(table("instrument", "partial", [jto_row, xbteth_row]), RECV)
    assert kinds(result) == ["unknown_symbol"]  # XBTETH is quoted in ETH
    assert "quoted in ETH" in result.rejects[0].detail
    oi, funding = result.events
    ts = ms("2024-03-02T02:44:10.789")
    assert oi == OpenInterest(venue="bitmex", symbol="JTOUSDT", instrument="JTO-USDT-PERP", base="JTO", ts=ts,
                              recv_ts=RECV, oi_qty=D(6780), oi_usd=D("16716.8358"))
    assert oi.oi_usd == D(16716835800) / D(10**6)  # openValue in µUSDT
    assert funding == Funding(venue="bitmex", symbol="JTOUSDT", instrument="JTO-USDT-PERP", base="JTO", ts=ts,
                              recv_ts=RECV, rate=D("0.0001"), interval_h=8,
                              next_funding_ts=ms("2024-03-02T04:00:00"), mark_price=D("2.46561"),
                              index_price=D("2.46557"))
    # a linear liquidation: 10 contracts of JTO (underlyingToPositionMultiplier 1) at 2.5
    liq = one(ad.parse(table("liquidation", "insert", [{"orderID": "j", "symbol": "JTOUSDT", "side": "Sell",
                                                        "price": 2.5, "leavesQty": 10}]), RECV))
    assert (liq.side, liq.qty, liq.notional_usd) == ("long", D(10), D(25))
    bad = ad.parse(table("liquidation", "insert", [{"orderID": "x", "symbol": "XBTETH", "side": "Sell",
                                                    "price": 18, "leavesQty": 10}]), RECV)
    assert kinds(bad) == ["unknown_symbol"]


def test_sparse_updates_merge_into_state() -> None:
    ad = loaded()
    xbt_row, _ = rows("bitmex_instrument_rest.jsonl")
    ad.parse(table("instrument", "partial", [xbt_row]), RECV)
    t0 = ms("2021-07-22T22:36:05")

    def update(seconds: float, **columns: Any) -> ParseResult:
        stamp = datetime.fromtimestamp((t0 + int(seconds * 1000)) / 1000, tz=UTC)
        text = stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"
        return ad.parse(table("instrument", "update", [{"symbol": "XBTUSD", "timestamp": text, **columns}]), RECV)

    # open interest alone: valued with the mark kept from the partial
    oi = one(update(1, openInterest=574264700, openValue=1784271932000))
    assert isinstance(oi, OpenInterest)
    assert (oi.ts, oi.oi_usd, oi.oi_qty) == (t0 + 1000, D(574264700), Q.divide(D(574264700), D("32184.89")))
    # the mark moves: within the revalue interval nothing, after it the new valuation
    assert update(2, markPrice=32000).events == []
    revalued = one(update(1 + OI_REVALUE_INTERVAL_MS / 1000, markPrice=32100))
    assert isinstance(revalued, OpenInterest)
    assert revalued.oi_qty == Q.divide(D(574264700), D(32100))
    # the funding rate changes: a Funding with the merged mark, index and interval
    funding = one(update(12, fundingRate=-0.0002))
    assert isinstance(funding, Funding)
    assert (funding.rate, funding.mark_price, funding.index_price, funding.interval_h) == (
        D("-0.0002"), D(32100), D("32182.72"), 8)
    # index-only moves refresh funding once a minute, no sooner
    assert update(13, indicativeSettlePrice=32001).events == []
    refreshed = one(update(12 + FUNDING_REFRESH_INTERVAL_MS / 1000, indicativeSettlePrice=32002))
    assert isinstance(refreshed, Funding) and refreshed.index_price == D(32002)
    # an update without a timestamp is stamped with the receive time; unknown columns are ignored
    late = one(ad.parse(table("instrument", "update", [{"symbol": "XBTUSD", "openInterest": 1, "zz": [1]}]),
                        RECV))
    assert (late.ts, late.oi_usd) == (RECV, D(1))
    # a bad column rejects the row and leaves the state as it was
    bad = update(200, markPrice="NaN", openInterest=5)
    assert kinds(bad) == ["non_finite"]
    assert ad.instrument_fields("XBTUSD")["markPrice"] == D(32100)
    assert ad.instrument_fields("XBTUSD")["openInterest"] == D(1)


def test_inverse_open_interest_waits_for_a_mark() -> None:
    ad = BitmexAdapter(["XBTUSD"])
    meta = {k: v for k, v in rows("bitmex_instrument_rest.jsonl")[0].items()
            if k not in ("markPrice", "fairPrice", "fundingRate")}
    # no mark: the base quantity of USD contracts is unknown, so no OpenInterest yet
    assert ad.parse(table("instrument", "partial", [meta]), RECV).events == []
    event = one(ad.parse(table("instrument", "update", [{"symbol": "XBTUSD", "markPrice": 25000}]), RECV))
    assert isinstance(event, OpenInterest) and event.oi_qty == Q.divide(D(574264600), D(25000))


def test_dated_future_has_an_expiry_instrument_and_no_funding() -> None:
    ad = BitmexAdapter(["XBTZ24"])
    row = {**rows("bitmex_instrument_rest.jsonl")[0], "symbol": "XBTZ24", "typ": "FFCCSX",
           "expiry": "2024-12-27T12:00:00.000Z", "fundingRate": None, "fundingInterval": None,
           "fundingTimestamp": None}
    event = one(ad.parse(table("instrument", "partial", [row]), RECV))
    assert isinstance(event, OpenInterest) and event.instrument == "BTC-USD-20241227"


def test_instrument_delete_forgets_the_symbol() -> None:
    ad = loaded()
    ad.parse(table("instrument", "delete", [{"symbol": "ETHUSD"}]), RECV)
    assert ad.contract("ETHUSD") is None
    trade = {"timestamp": "2021-07-22T22:36:11.685Z", "symbol": "ETHUSD", "side": "Sell", "size": 1,
             "price": 2000, "trdMatchID": "t"}
    assert kinds(ad.parse(table("trade", "insert", [trade]), RECV)) == ["unknown_symbol"]


# ---------------------------------------------------------------- trades: de-duplication


def test_trade_dedupe_across_reconnect_and_partial_seeds_only() -> None:
    ad = loaded()
    _, xbt_line = lines("bitmex_trades.jsonl")
    assert len(ad.parse(xbt_line, RECV).events) == 2
    ad.reset_connection_state("bitmex-0")
    payload = orjson.loads(xbt_line)
    partial = ad.parse(table("trade", "partial", payload["data"][1:]), RECV)
    assert (partial.events, partial.duplicates) == ([], 0)
    again = ad.parse(xbt_line, RECV)
    assert (again.events, again.duplicates) == ([], 2)
    # a partial row never seen before is remembered, not emitted
    fresh = {**payload["data"][0], "trdMatchID": "new-1"}
    assert ad.parse(table("trade", "partial", [fresh]), RECV).events == []
    assert ad.parse(table("trade", "insert", [fresh]), RECV).duplicates == 1


def test_index_trades_are_skipped_and_sell_is_the_taker_side() -> None:
    ad = loaded()
    index = {"timestamp": "2021-07-22T22:36:11.685Z", "symbol": ".BXBT", "side": "Buy", "size": 0,
             "price": 32180, "trdMatchID": "00000000-0000-0000-0000-000000000000"}
    assert ad.parse(table("trade", "insert", [index]), RECV) == ParseResult(stream="trade")
    sell = {"timestamp": "2021-07-22T22:36:11.685Z", "symbol": "XBTUSD", "side": "Sell", "size": 200,
            "price": 32000, "trdMatchID": "s-1", "homeNotional": 0.00625, "foreignNotional": 200}
    event = one(ad.parse(table("trade", "insert", [sell]), RECV))
    assert (event.side, event.qty, event.notional_usd) == ("sell", D("0.00625"), D(200))
    # should a venue version sign the notionals by side, the magnitudes are kept
    signed = {**sell, "trdMatchID": "s-2", "homeNotional": -0.00625, "foreignNotional": -200}
    assert one(ad.parse(table("trade", "insert", [signed]), RECV)).notional_usd == D(200)


def test_one_bad_row_costs_only_that_row() -> None:
    ad = loaded()
    good = {"timestamp": "2021-07-22T22:36:11.685Z", "symbol": "XBTUSD", "side": "Buy", "size": 100,
            "price": 32000, "trdMatchID": "g"}
    result = ad.parse(table("trade", "insert", [good, {**good, "trdMatchID": "b", "price": -1}, "junk",
                                                {**good, "trdMatchID": "g2"}]), RECV)
    assert [e.trade_id for e in typed(result.events, Trade)] == ["g", "g2"]
    assert kinds(result) == ["negative", "not_an_object"]


# ---------------------------------------------------------------- control frames and bad input


@pytest.mark.parametrize("raw", [
    "pong", b"pong", "pong\n",
    '{"info":"Welcome to the BitMEX Realtime API.","version":"2024-11-12T19:02:53.000Z",'
    '"timestamp":"2024-11-13T10:00:00.000Z","docs":"https://www.bitmex.com/app/wsAPI","limit":{"remaining":719}}',
    '{"success":true,"subscribe":"trade:XBTUSD","request":{"op":"subscribe","args":["trade:XBTUSD"]}}',
])
def test_control_frames(raw: str | bytes) -> None:
    result = loaded().parse(raw, RECV)
    assert (result.control, result.stream, result.events, result.rejects) == (True, "control", [], [])


def test_venue_errors_are_control_with_a_reject() -> None:
    result = loaded().parse('{"status":400,"error":"Unknown table: foo","meta":{},"request":{"op":"subscribe",'
                            '"args":["foo"]}}', RECV)
    assert result.control and kinds(result) == ["venue_error"]
    failed = loaded().parse('{"success":false,"subscribe":"x"}', RECV)
    assert failed.control and kinds(failed) == ["venue_error"]


LIQ = {"orderID": "o", "symbol": "XBTUSD", "side": "Sell", "price": 30000, "leavesQty": 100}
TRADE = {"timestamp": "2021-07-22T22:36:11.685Z", "symbol": "XBTUSD", "side": "Buy", "size": 100,
         "price": 32180.5, "trdMatchID": "t"}


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (b'{"table":"trade","action":"insert","data":[', "malformed_json"),
        (b"\xff\xfe", "malformed_json"),
        (b'{"table":"trade","action":"insert","data":[{"price":NaN}]}', "malformed_json"),
        (b"[1,2]", "not_an_object"),
        (b'"ping"', "not_an_object"),
        (b'{"foo":1}', "unknown_message"),
        (table("orderBookL2", "partial", []), "unknown_message"),
        (table("trade", "upsert", [TRADE]), "bad_field"),
        (orjson.dumps({"table": "trade", "action": "insert", "data": TRADE}), "bad_field"),
        (table("trade", "insert", [{**TRADE, "price": "NaN"}]), "non_finite"),
        (table("trade", "insert", [{**TRADE, "price": "Infinity"}]), "non_finite"),
        (table("trade", "insert", [{**TRADE, "size": -100}]), "negative"),
        (table("trade", "insert", [{**TRADE, "price": 0}]), "bad_number"),
        (table("trade", "insert", [{**TRADE, "price": "1e999999"}]), "bad_number"),
        (table("trade", "insert", [{**TRADE, "price": True}]), "bad_number"),
        (table("trade", "insert", [{**TRADE, "homeNotional": 0}]), "bad_number"),
        (table("trade", "insert", [{**TRADE, "side": "Hold"}]), "bad_field"),
        (table("trade", "insert", [{**TRADE, "timestamp": 1626993371685}]), "bad_field"),
        (table("trade", "insert", [{**TRADE, "timestamp": "2021-07-22T22:36:11"}]), "bad_field"),
        (table("trade", "insert", [{**TRADE, "timestamp": "yesterday"}]), "bad_field"),
        (table("trade", "insert", [{k: v for k, v in TRADE.items() if k != "trdMatchID"}]), "bad_field"),
        (table("trade", "insert", [{**TRADE, "symbol": "DOGEUSD"}]), "unknown_symbol"),
        (table("trade", "insert", [{**TRADE, "symbol": 7}]), "bad_field"),
        (table("trade", "insert", [{k: v for k, v in TRADE.items() if k != "size"}]), "missing_field"),
        (table("liquidation", "insert", [{**LIQ, "leavesQty": -5}]), "negative"),
        (table("liquidation", "insert", [{**LIQ, "price": "NaN"}]), "non_finite"),
        (table("liquidation", "insert", [{**LIQ, "side": "sell"}]), "bad_field"),
        (table("liquidation", "insert", [{**LIQ, "orderID": ""}]), "bad_field"),
        (table("liquidation", "insert", [{**LIQ, "orderID": "x" * 100}]), "bad_field"),
        (table("liquidation", "insert", [{**LIQ, "symbol": "XBTJPY"}]), "unknown_symbol"),
        (table("liquidation", "insert", [["orderID", "o"]]), "not_an_object"),
        (table("instrument", "update", [{"symbol": "XBTUSD", "markPrice": -1}]), "negative"),
        (table("instrument", "update", [{"symbol": "XBTUSD", "fundingInterval": "2000-01-01T08:30:00.000Z"}]),
         "bad_field"),
        (table("instrument", "update", [{"symbol": "XBTUSD", "isInverse": "yes"}]), "bad_field"),
        (table("instrument", "update", [{"symbol": "ZZZ", "openInterest": 5}]), "unknown_symbol"),
    ],
)
def test_bad_input_is_rejected_not_raised(raw: bytes, kind: str) -> None:
    result = loaded().parse(raw, RECV)
    assert result.events == []
    assert kinds(result) == [kind], result.rejects


def test_unknown_fields_are_ignored() -> None:
    ad = loaded()
    event = one(ad.parse(orjson.dumps({"table": "trade", "action": "insert", "extra": {"a": 1},
                                       "data": [{**TRADE, "rpi": True, "zz": [1, {"b": None}]}]}), RECV))
    assert isinstance(event, Trade) and event.trade_id == "t"


def test_huge_frame_is_rejected_before_parsing() -> None:
    huge = b'{"table":"trade","data":"' + b"a" * MAX_FRAME_BYTES + b'"}'
    assert kinds(loaded().parse(huge, RECV)) == ["frame_too_large"]
    assert kinds(loaded().parse(huge.decode(), RECV)) == ["frame_too_large"]


@pytest.mark.parametrize(
    ("endpoint", "body", "kind"),
    [
        ("/api/v1/trade", b"[]", "unknown_endpoint"),
        ("http://[::1", b"[]", "unknown_endpoint"),
        ("/api/v1/instrument/active", b'{"error":{"message":"Rate limit exceeded","name":"HTTPError"}}',
         "venue_error"),
        ("/api/v1/instrument/active", b"<html>", "malformed_json"),
        ("/api/v1/instrument/active", b'{"symbol":"XBTUSD"}', "bad_field"),
        ("https://www.bitmex.com/api/v1/instrument/active", b'[{"symbol":"XBTUSD","markPrice":"x"}]',
         "bad_number"),
    ],
)
def test_bad_rest_responses(endpoint: str, body: bytes, kind: str) -> None:
    result = BitmexAdapter(["XBTUSD"]).parse_rest(endpoint, body, RECV)
    assert result.events == []
    assert kinds(result) == [kind]


def test_time_helpers() -> None:
    assert iso_ms("2021-07-22T22:36:11.685Z", "t") == 1626993371685
    assert iso_ms("2021-07-22T22:36:11.685+00:00", "t") == 1626993371685
    assert timespan_hours("2000-01-01T08:00:00.000Z", "i") == 8
    assert timespan_hours("2000-01-01T04:00:00.000Z", "i") == 4
    assert timespan_hours("2000-01-02T00:00:00.000Z", "i") == 24
    for bad in ("2000-01-01T00:00:00.000Z", "1999-12-31T16:00:00.000Z", "2000-01-01T08:00:00.500Z"):
        with pytest.raises(CodecError, match="bad_field"):
            timespan_hours(bad, "i")


# ---------------------------------------------------------------- connection plan, replay side, config


def test_ws_connection_plan_and_keepalive() -> None:
    ad = BitmexAdapter.from_config(BitmexConfig.model_validate({}))
    (plan,) = ad.ws_connections()
    assert (plan.name, plan.url) == ("bitmex-0", "wss://ws.bitmex.com/realtime")
    assert [orjson.loads(m) for m in plan.subscribe] == [{"op": "subscribe", "args": [
        "liquidation:XBTUSD", "trade:XBTUSD", "instrument:XBTUSD", "liquidation:ETHUSD", "trade:ETHUSD",
        "instrument:ETHUSD", "liquidation:SOLUSDT", "trade:SOLUSDT", "instrument:SOLUSDT"]}]
    assert ad.startup_requests() == ["/api/v1/instrument/active"]
    assert ad.rest_polls() == []
    assert (ad.app_ping_message, ad.app_ping_interval_s, ad.stale_after_s) == ("ping", 15.0, 30.0)
    assert BitmexAdapter(["XBTUSD"], stale_after_s=120).app_ping_interval_s == 30.0
    many = BitmexAdapter([f"S{i}USDT" for i in range(8)] + ["s0usdt "])
    (plan,) = many.ws_connections()
    args = [a for m in plan.subscribe for a in orjson.loads(m)["args"]]
    assert len(args) == 24 and len(plan.subscribe) == 3 and args == many.topics()


def test_class_attributes_and_config() -> None:
    cls = BitmexAdapter
    assert (cls.venue, cls.default_ws_url, cls.default_rest_url) == (
        "bitmex", "wss://ws.bitmex.com/realtime", "https://www.bitmex.com")
    assert cls.liquidations_sampled is False
    cfg = BitmexConfig.model_validate({"symbols": ["xbtusd"], "stale_after_s": 12, "ws_url": "ws://localhost:1/x",
                                       "rest_url": "http://localhost:2"})
    built = BitmexAdapter.from_config(cfg)
    assert (built.symbols, built.stale_after_s, built.app_ping_interval_s) == (["XBTUSD"], 12, 6)
    assert (built.ws_url, built.rest_url) == ("ws://localhost:1/x", "http://localhost:2")


def test_replay_replies() -> None:
    ad = BitmexAdapter(["XBTUSD"])
    request = {"op": "subscribe", "args": ["liquidation:XBTUSD", "trade:XBTUSD"]}
    replies = ad.replay_replies(orjson.dumps(request).decode())
    assert [orjson.loads(r) for r in replies] == [
        {"success": True, "subscribe": "liquidation:XBTUSD", "request": request},
        {"success": True, "subscribe": "trade:XBTUSD", "request": request},
    ]
    assert ad.replay_replies("ping") == ["pong"]
    assert orjson.loads(ad.replay_replies('{"op":"unsubscribe","args":"trade:XBTUSD"}')[0])["unsubscribe"] == (
        "trade:XBTUSD")
    for garbage in ["", "not json", "[]", '{"op":"subscribe"}', '{"op":"subscribe","args":[1]}',
                    '{"op":"authKey","args":["k"]}']:
        assert ad.replay_replies(garbage) == []
    # the replies are what the adapter itself takes as control frames
    assert all(ad.parse(r, RECV).control for r in [*replies, "pong"])


# ---------------------------------------------------------------- property tests: parse never raises

ALLOWED_REJECTS = {
    "malformed_json", "not_an_object", "unknown_message", "bad_field", "missing_field", "bad_number",
    "non_finite", "negative", "unknown_symbol", "frame_too_large", "venue_error", "unknown_endpoint",
}
STREAM_LABELS = {"liquidation", "trade", "instrument", "control", "unknown", "metadata"}


def check(result: ParseResult) -> None:
    venue_props.check_common(result, "bitmex", ALLOWED_REJECTS, STREAM_LABELS, gaps=False)
    for event in result.events:
        assert event.ts > 0
        if isinstance(event, Liquidation | Trade):
            assert event.price > 0 and event.qty > 0 and event.notional_usd > 0
        elif isinstance(event, OpenInterest):
            assert event.oi_qty >= 0
        elif isinstance(event, Funding):
            assert event.interval_h > 0


json_values = venue_props.json_values([
    "NaN", "-1", "0", "1e9999", "XBTUSD", "ETHUSD", "Sell", "Buy", "",
    "2021-07-22T22:36:11.685Z", "2000-01-01T08:00:00.000Z", "partial", "insert",
])

SEEDS: list[Callable[[], Any]] = [
    lambda: {"table": "liquidation", "action": "insert", "data": [dict(LIQ)]},
    lambda: {"table": "liquidation", "action": "partial", "data": [dict(LIQ)]},
    lambda: {"table": "trade", "action": "insert", "data": [dict(TRADE)]},
    lambda: {"table": "instrument", "action": "partial", "data": [rows("bitmex_instrument_rest.jsonl")[0]]},
    lambda: {"table": "instrument", "action": "update", "data": [{"symbol": "ETHUSD", "openInterest": 5,
                                                                   "markPrice": 2000, "fundingRate": 0.0001}]},
    lambda: {"success": True, "subscribe": "trade:XBTUSD"},
]


@venue_props.never_raises(300)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    ad = loaded()
    check(ad.parse(raw, RECV))
    check(ad.parse_rest("/api/v1/instrument/active", raw, RECV))
    assert isinstance(ad.replay_replies(raw.decode("utf-8", errors="replace")), list)


@venue_props.never_raises(300)
@given(json_values, st.sampled_from(["liquidation", "trade", "instrument", None]),
       st.sampled_from(["partial", "insert", "update", "delete"]))
def test_arbitrary_json_never_raises(value: Any, name: str | None, action: str) -> None:
    ad = loaded()
    check(ad.parse(orjson.dumps(value), RECV))
    if name is not None:
        check(ad.parse(table(name, action, value if isinstance(value, list) else [value]), RECV))
    check(ad.parse_rest("/api/v1/instrument/active", orjson.dumps(value if isinstance(value, list) else [value]),
                        RECV))
    assert isinstance(ad.replay_replies(orjson.dumps(value).decode()), list)


@venue_props.never_raises(400)
@given(venue_props.mutated_frames(SEEDS, json_values))
def test_mutated_real_frames_never_raise(raw: bytes) -> None:
    ad = loaded()
    check(ad.parse(raw, RECV))
    check(ad.parse(raw, RECV))  # and again: de-dup and instrument state must not trip either
