"""The Binance adapter's typed fast path must be indistinguishable from its general path.

``BinanceUsdmAdapter.parse`` decodes the common frames (aggTrade, mark-price arrays) with msgspec structs
(after the C aggTrade path, when built) and hands everything else to the general orjson path. These tests
feed the same frame sequences to adapters that go through ``parse`` and to one that takes the general path
only, and require identical events, rejects, counters and adapter state: on the real samples, on sequences
with duplicates, gaps and late ids, and on frames hypothesis mutates into every shape the fast structs
might mishandle.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from ingest.base import ParseResult
from ingest.binance import BinanceUsdmAdapter
from ingest.parsing import parse_frame
from tests.unit import venue_props
from tests.unit.test_binance_parse import FIXTURES, RECV, agg_trade, frame, mark

DEMO = Path(__file__).parent.parent.parent / "flushwatch" / "data" / "demo_binance_2025-01-27.jsonl.gz"

#: symbols the sequences use; each adapter resolves them once first, which is when the fast path starts
WARM = [frame("btcusdt@aggTrade", agg_trade(1)), frame("ethusdt@aggTrade", agg_trade(1, s="ETHUSDT")),
        frame("1000pepeusdt@aggTrade", agg_trade(1, s="1000PEPEUSDT", p="0.0123"))]


def general(adapter: BinanceUsdmAdapter, raw: bytes | str, recv_ts: int) -> ParseResult:
    return parse_frame(adapter._parse_general, raw, recv_ts)


def state(adapter: BinanceUsdmAdapter) -> tuple[Any, ...]:
    return (adapter._last_agg_id, adapter._late_agg_ids, adapter._last_mark, adapter._last_mark_ts,
            {k: (v.funding, v.funding_ts) for k, v in adapter._emitted.items()})


def assert_same(frames: list[bytes | str]) -> int:
    """Both paths over ``frames`` after :data:`WARM`; returns how many events they produced, warm-up
    included (so a test can require some). ``parse`` runs twice: as shipped, and without the C aggTrade
    path (``test_binance_speedups.py``), so the typed msgspec path is held to the general one also on the
    in-sequence trades the C path would otherwise take."""
    fast, typed_only, slow = BinanceUsdmAdapter([]), BinanceUsdmAdapter([]), BinanceUsdmAdapter([])
    typed_only._c_agg_trade = None
    events = 0
    for raw in [*WARM, *frames]:
        a, b, c = fast.parse(raw, RECV), general(slow, raw, RECV), typed_only.parse(raw, RECV)
        assert a == b == c, (raw, a, b, c)
        events += len(a.events)
    assert state(fast) == state(slow) == state(typed_only)
    return events


def test_real_samples_take_the_same_path_result() -> None:
    frames = [line for name in ("binance_trades.jsonl", "binance_mark_price.jsonl", "binance_liquidations.jsonl")
              for line in (FIXTURES / name).read_text(encoding="utf-8").splitlines()]
    assert assert_same(frames) >= 4


def test_real_demo_recording_gives_the_same_events() -> None:
    with gzip.open(DEMO, "rb") as fh:
        frames = [orjson.loads(line)["data"] for line in fh if b'"kind":"ws"' in line]
    assert assert_same(frames) > 1000


def test_sequences_with_duplicates_gaps_late_ids_and_marks() -> None:
    ids = [10, 11, 11, 15, 13, 12, 16, 16, 14, 200, 12]
    frames = [frame("btcusdt@aggTrade", agg_trade(a)) for a in ids]
    frames += [frame("!markPrice@arr@1s", [mark(), mark("ETHUSDT", r="-0.0002"), mark("1000PEPEUSDT", p="0.0124")]),
               frame("!markPrice@arr@1s", [mark(e=1737996781000), mark("ETHUSDT", e=1737996781000, r="")]),
               frame("!markPrice@arr@1s", [mark()]),  # not newer: duplicate
               frame("!markPrice@arr@1s", [mark(e=1737996782000, t=0, i="")]),
               frame("1000pepeusdt@aggTrade", agg_trade(2, s="1000PEPEUSDT", p="0.0125", q="1000"))]
    assert assert_same(frames) >= 9


NUMBERS = ["NaN", "-NaN", "sNaN", "Infinity", "-1", "0", "0.0", "1e-41", "1e-40", "9.99e40", "1e41",
           "1e9999", "", " 1 ", "1_000", "1" * 65, "0." + "1" * 62, "abc", "-0.0001", "0.0001"]
VALUES = venue_props.json_values([*NUMBERS, "BTCUSDT", "ETHUSDT", "UNKNOWNSYM", "aggTrade", "markPriceUpdate"])
SEEDS = [lambda: agg_trade(5), lambda: agg_trade(2, s="ETHUSDT", m=True),
         lambda: [mark(), mark("ETHUSDT", r="0")], mark]


@venue_props.never_raises(600)
@given(st.lists(venue_props.mutated_frames(SEEDS, VALUES, lambda payload: frame("x@y", payload)),
                min_size=1, max_size=4))
def test_mutated_frames_give_identical_results(frames: list[bytes]) -> None:
    assert_same(frames)


@venue_props.never_raises(300)
@given(st.sampled_from(["p", "q"]), st.sampled_from(NUMBERS))
def test_every_bad_number_is_judged_like_the_general_path(name: str, value: str) -> None:
    assert_same([frame("btcusdt@aggTrade", agg_trade(7, **{name: value}))])


@venue_props.never_raises(300)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_give_identical_results(raw: bytes) -> None:
    assert_same([raw, b'{"stream":"x","data":' + raw + b"}"])


def test_invalid_utf8_is_malformed_json_on_both_paths() -> None:
    raw = frame("btcusdt@aggTrade", agg_trade(9)).replace(b'"BTCUSDT"', b'"BT\xed\xa0\x80"')
    assert assert_same([raw]) == len(WARM)  # only the warm-up frames' events
    assert [r.kind for r in BinanceUsdmAdapter([]).parse(raw, RECV).rejects] == ["malformed_json"]
