"""The C aggTrade fast path (``ingest/_binance_speedups.c``) must be indistinguishable from the Python paths.

It takes the in-sequence aggTrade of a known symbol and refuses everything else before touching any
state. These tests run the same frames through an adapter with it and one without it (whose own typed
fast path ``test_binance_fast_path.py`` already holds to the general path) and require identical results
and adapter state; they also check that it really takes the common frames (or it would pass every test by
refusing), that it is memory-safe on truncated and corrupted frames, and that it leaks nothing.
"""

from __future__ import annotations

import os
import random
import sys
import tracemalloc
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest import binance
from ingest.base import ParseResult
from ingest.binance import SPEEDUPS, BinanceUsdmAdapter
from tests.unit import venue_props
from tests.unit.test_binance_fast_path import state
from tests.unit.test_binance_parse import FIXTURES, RECV, agg_trade, force_order, frame, mark

requires_speedups = pytest.mark.skipif(not SPEEDUPS, reason="ingest._binance_speedups was not built here")


def test_ci_builds_the_extension() -> None:
    """CI sets FW_TEST_REQUIRE_SPEEDUPS: there a missing C compiler must fail, not quietly slow ingest."""
    if not os.environ.get("FW_TEST_REQUIRE_SPEEDUPS"):
        pytest.skip("FW_TEST_REQUIRE_SPEEDUPS is not set")
    assert SPEEDUPS, "ingest._binance_speedups did not build: is a C compiler with the Python headers there?"


class Pair:
    """An adapter with the C path and one without it, fed the same frames; counts what C took."""

    def __init__(self) -> None:
        self.with_c, self.without_c = BinanceUsdmAdapter([]), BinanceUsdmAdapter([])
        self.without_c._c_agg_trade = None
        self.taken = 0
        c_path = self.with_c._c_agg_trade
        assert c_path is not None

        def counting(raw: bytes | str, recv_ts: int, venue: str, symbols: Any, last_ids: Any) -> ParseResult | None:
            result = c_path(raw, recv_ts, venue, symbols, last_ids)
            self.taken += result is not None
            return result

        self.with_c._c_agg_trade = counting

    def feed(self, raw: bytes | str, recv_ts: int = RECV) -> ParseResult:
        a, b = self.with_c.parse(raw, recv_ts), self.without_c.parse(raw, recv_ts)
        assert a == b, (raw, a, b)
        assert state(self.with_c) == state(self.without_c), raw
        return a


def warmed(symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT", "1000PEPEUSDT")) -> Pair:
    """A pair that has taken id 1 of each symbol (a symbol's first frame always goes to Python)."""
    pair = Pair()
    for symbol in symbols:
        pair.feed(frame(f"{symbol.lower()}@aggTrade", agg_trade(1, s=symbol)))
    assert pair.taken == 0
    return pair


@requires_speedups
def test_real_samples_and_a_long_mixed_stream_same_results_mostly_taken_by_c() -> None:
    """The recorded aggTrade samples, then 6,000 frames over six symbols (the two recorded ones among them)
    with marks, liquidations, duplicates and gaps mixed in, as bytes and as str."""
    pair = Pair()
    for name in ("binance_trades.jsonl", "binance_mark_price.jsonl", "binance_liquidations.jsonl"):
        for line in (FIXTURES / name).read_text(encoding="utf-8").splitlines():
            pair.feed(line)
    assert pair.taken == 1  # the recorded CTKUSDT pair of consecutive ids
    rng = random.Random(7)
    symbols = ["CTKUSDT", "AKROUSDT", "BTCUSDT", "ETHUSDT", "SOLUSDT", "1000PEPEUSDT"]
    next_id = dict.fromkeys(symbols, 16599294)
    price = dict.fromkeys(symbols, 100.0)
    highest: dict[str, int] = {}
    in_sequence = 0  # what the C path must take: the next id of a symbol seen before, without a multiplier
    for n in range(6000):
        roll = rng.random()
        if roll < 0.01:
            pair.feed(frame("!markPrice@arr@1s", [mark(s, e=1737996780000 + n * 1000) for s in symbols[2:5]]))
            continue
        if roll < 0.02:
            pair.feed(frame("!forceOrder@arr", force_order(s=rng.choice(symbols[2:5]), t=1737996780000 + n)))
            continue
        symbol = rng.choice(symbols)
        step = 1 if roll < 0.97 else rng.choice([0, -3, 2, 40])  # mostly in sequence; duplicates, gaps
        next_id[symbol] += step
        price[symbol] = max(0.01, price[symbol] * (1 + rng.gauss(0, 0.001)))
        payload = agg_trade(next_id[symbol], s=symbol, p=f"{price[symbol]:.{rng.choice([1, 2, 5])}f}",
                            q=rng.choice(["0.001", "0.002", "1", "12.5", "0.043"]), m=rng.random() < 0.5,
                            t=1737996780000 + n)
        raw = frame(f"{symbol.lower()}@aggTrade", payload)
        if symbol != "1000PEPEUSDT" and symbol in highest and next_id[symbol] == highest[symbol] + 1:
            in_sequence += 1
        highest[symbol] = max(highest.get(symbol, 0), next_id[symbol])
        pair.feed(raw if n % 2 else raw.decode())
    assert in_sequence > 4000
    assert pair.taken == 1 + in_sequence


@requires_speedups
def test_in_sequence_trade_is_taken_and_exact() -> None:
    pair = warmed()
    result = pair.feed(frame("btcusdt@aggTrade", agg_trade(2, p="102004.7", q="0.043", m=True)))
    assert pair.taken == 1
    trade = venue_props.one(result)
    assert (trade.price, trade.qty, trade.notional_usd) == (Decimal("102004.7"), Decimal("0.043"),
                                                            Decimal("4386.2021"))
    assert (trade.side, trade.trade_id, trade.symbol, trade.instrument, trade.base, trade.ts, trade.recv_ts) == (
        "sell", "2", "BTCUSDT", "BTC-USDT-PERP", "BTC", 1737996780000, RECV)
    assert result.stream == "trade"
    assert pair.with_c._last_agg_id["BTCUSDT"] == 2


@requires_speedups
@pytest.mark.parametrize(("a", "why"), [(1, "duplicate"), (5, "gap"), (0, "older")])
def test_out_of_sequence_ids_are_left_to_python(a: int, why: str) -> None:
    pair = warmed()
    result = pair.feed(frame("btcusdt@aggTrade", agg_trade(a)))
    assert pair.taken == 0, why
    assert (result.duplicates, result.gaps) == {"duplicate": (1, 0), "gap": (0, 3), "older": (1, 0)}[why]


@requires_speedups
def test_refusal_changes_nothing() -> None:
    """Called directly: None, and the adapter's dicts exactly as they were, on every kind of refusal."""
    adapter = BinanceUsdmAdapter([])
    adapter.parse(frame("btcusdt@aggTrade", agg_trade(1)), RECV)
    c_path = adapter._c_agg_trade
    assert c_path is not None
    refused = [
        frame("btcusdt@aggTrade", agg_trade(3)),  # gap
        frame("ethusdt@aggTrade", agg_trade(1, s="ETHUSDT")),  # symbol not seen yet
        frame("btcusdt@aggTrade", agg_trade(2, p="0")),
        frame("btcusdt@aggTrade", agg_trade(2, p="1e3")),
        frame("btcusdt@aggTrade", agg_trade(2, q="1" * 31)),
        frame("btcusdt@aggTrade", agg_trade(2, p="1" * 15, q="2" * 14)),  # 29 digits: not exact at prec 28
        frame("btcusdt@aggTrade", {**agg_trade(2), "e": "aggTrades"}),
        frame("btcusdt@aggTrade", {**agg_trade(2), "m": 1}),
        frame("btcusdt@aggTrade", {**agg_trade(2), "a": -2}),
        frame("btcusdt@aggTrade", {**agg_trade(2), "T": 10**15}),
        frame("btcusdt@aggTrade", {**agg_trade(2), "nested": {"x": 1}}),
        frame("btcusdt@aggTrade", [agg_trade(2)]),
        orjson.dumps(agg_trade(2)),  # path mode: no envelope
        frame("btcusdt@aggTrade", agg_trade(2)) + b"x",
        frame("btcusdt@aggTrade", agg_trade(2)).replace(b'"BTCUSDT"', b'"BTC\\u0055SDT"'),
        frame("btcusdt@aggTrade", agg_trade(2)).replace(b'"0.002"', b'"0.002","q":"0.003"'),  # duplicate key
        frame("btcusdt@aggTrade", agg_trade(2)) + b" " * 5000,  # longer than any aggTrade
        "{\"stream\":\"é\",\"data\":" + orjson.dumps(agg_trade(2)).decode() + "}",  # non-ASCII str
    ]
    for raw in refused:
        before = (dict(adapter._last_agg_id), dict(adapter._symbol_cache), dict(adapter._late_agg_ids))
        assert c_path(raw, RECV, "binance", adapter._symbol_cache, adapter._last_agg_id) is None, raw
        assert (dict(adapter._last_agg_id), dict(adapter._symbol_cache), dict(adapter._late_agg_ids)) == before
    taken = frame("btcusdt@aggTrade", agg_trade(2))
    assert c_path(taken, RECV, "binance", adapter._symbol_cache, adapter._last_agg_id) is not None


@requires_speedups
def test_every_prefix_and_every_byte_corruption_is_safe() -> None:
    """The scanner reads untrusted bytes: no prefix and no single changed byte of a good frame may be
    misread (the Python path must agree on each) or read past its end."""
    good = frame("btcusdt@aggTrade", agg_trade(2, p="102004.7", q="0.043"))
    pair = warmed()
    last_ids = pair.with_c._last_agg_id
    for cut in range(len(good)):
        last_ids["BTCUSDT"] = pair.without_c._last_agg_id["BTCUSDT"] = 1
        pair.feed(good[:cut])
    for index in range(len(good)):
        for replacement in (b" ", b"\\", b"\x00", b"\xff", b"}", b'"', b"9", b"-"):
            last_ids["BTCUSDT"] = pair.without_c._last_agg_id["BTCUSDT"] = 1
            pair.feed(good[:index] + replacement + good[index + 1:])
    assert pair.taken > 0  # the replacements that leave a valid frame (a digit for a digit...) are taken


@requires_speedups
def test_other_layouts_of_a_good_frame_are_taken_too() -> None:
    """Binance's own key order takes the quick layout check; any other valid JSON of the same frame goes
    through the member-by-member scan and must be taken as well, not just refused safely."""
    payload = agg_trade(2, p="102004.7", q="0.043")
    variants: list[bytes] = [
        orjson.dumps({"data": payload, "stream": "btcusdt@aggTrade"}),
        frame("btcusdt@aggTrade", dict(reversed(payload.items()))),
        frame("btcusdt@aggTrade", {**payload, "nq": "0.043", "X": None, "Y": -1.5e-3, "Z": False}),
        orjson.dumps({"stream": "btcusdt@aggTrade", "data": payload}, option=orjson.OPT_INDENT_2),
        b' \r\n' + frame("btcusdt@aggTrade", payload).replace(b",", b" ,\t").replace(b":", b": ") + b"\n",
    ]
    pair = warmed()
    for raw in variants:
        pair.with_c._last_agg_id["BTCUSDT"] = pair.without_c._last_agg_id["BTCUSDT"] = 1
        assert venue_props.one(pair.feed(raw)).notional_usd == Decimal("4386.2021")
    assert pair.taken == len(variants)


def layouts() -> st.SearchStrategy[bytes | str]:
    """An in-sequence BTCUSDT aggTrade (id 2) re-serialized the ways JSON allows: any key order, any
    whitespace, extra members, odd number texts; as bytes or str."""
    numbers = st.sampled_from(["0.001", "102004.7", "1", "00.5", "1.", ".5", "1e3", "0.000", "0." + "0" * 27 + "1",
                               "9" * 28, "1" * 30, "12345678901234.12345678901234", "-1", "+1", "1_0", " 1"])
    whitespace = st.text(alphabet=" \t\n\r", max_size=2)
    scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False)
               | st.text(max_size=3))
    extra = st.dictionaries(st.sampled_from(["nq", "X", "Y", "pp", "e2"]),
                            scalars | st.lists(st.integers(-9, 9), max_size=2), max_size=2)

    @st.composite
    def build(draw: st.DrawFn) -> bytes | str:
        data = {**agg_trade(2, p=draw(numbers), q=draw(numbers), m=draw(st.booleans())), **draw(extra)}
        items = draw(st.permutations(list(data.items())))
        ws = lambda: draw(whitespace)  # noqa: E731
        inner = "{" + ws() + ("," + ws()).join(
            orjson.dumps(k).decode() + ws() + ":" + ws() + orjson.dumps(v).decode() + ws() for k, v in items) + "}"
        outer = [('"stream"', '"btcusdt@aggTrade"'), ('"data"', inner)]
        if draw(st.booleans()):
            outer.reverse()
        text = ws() + "{" + ",".join(k + ws() + ":" + ws() + v for k, v in outer) + "}" + ws()
        return text.encode() if draw(st.booleans()) else text

    return build()


@requires_speedups
@venue_props.never_raises(400)
@given(st.lists(layouts(), min_size=1, max_size=3))
def test_any_json_layout_gives_the_python_result(frames: list[bytes | str]) -> None:
    pair = warmed()
    for raw in frames:
        pair.with_c._last_agg_id["BTCUSDT"] = pair.without_c._last_agg_id["BTCUSDT"] = 1
        pair.feed(raw)


@requires_speedups
def test_many_distinct_numbers_through_the_value_cache_stay_exact() -> None:
    """More distinct price and size texts than the C side caches: colliding slots must never hand back
    another text's value."""
    pair = warmed()
    for a in range(2, 20_002):
        price, qty = f"{a * 7919 % 100_003}.{a % 97}", f"0.{a * 31 % 10_007:05d}1"
        trade = venue_props.one(pair.feed(frame("btcusdt@aggTrade", agg_trade(a, p=price, q=qty))))
        assert (trade.price, trade.qty) == (Decimal(price), Decimal(qty))
    assert pair.taken == 20_000


@requires_speedups
def test_no_reference_or_memory_leak() -> None:
    adapter = BinanceUsdmAdapter([])
    adapter.parse(frame("btcusdt@aggTrade", agg_trade(1)), RECV)
    frames = [frame("btcusdt@aggTrade", agg_trade(a, p=f"{100_000 + a % 5000}.1", q=f"0.{a % 3000 + 1:04d}"))
              for a in range(2, 60_002)]
    venue = adapter.venue

    def run(part: list[bytes]) -> None:
        events = 0
        for raw in part:
            events += len(adapter.parse(raw, RECV).events)
        assert events == len(part)

    run(frames[:20_000])  # fills the bounded caches
    venue_refs, trade_refs = sys.getrefcount(venue), sys.getrefcount(binance.Trade)
    tracemalloc.start()
    try:
        run(frames[20_000:40_000])
        first, _ = tracemalloc.get_traced_memory()
        run(frames[40_000:])
        second, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # counted outside the asserts: pytest's rewriting of an assert holds its operands in temporaries
    refs_after = sys.getrefcount(venue), sys.getrefcount(binance.Trade)
    assert second - first < 16 * 1024, (first, second)
    assert refs_after == (venue_refs, trade_refs)


def test_a_missing_extension_is_logged_for_the_operator(monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    config = binance.BinanceConfig.model_validate({})
    monkeypatch.setattr(binance, "SPEEDUPS", True)
    with caplog.at_level("WARNING", logger="flushwatch.ingest.binance"):
        BinanceUsdmAdapter.from_config(config)
    assert not caplog.records
    monkeypatch.setattr(binance, "SPEEDUPS", False)
    with caplog.at_level("WARNING", logger="flushwatch.ingest.binance"):
        BinanceUsdmAdapter.from_config(config)
    assert ["was not built" in r.getMessage() for r in caplog.records] == [True]
