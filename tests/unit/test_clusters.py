"""ClustersDetector: buckets, windows, publish cadence, memory bound, snapshots, the real forceOrder recording."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from flushwatch.config import ClustersConfig, Config
from flushwatch.events import Funding, Liquidation, MarketEvent, OpenInterest, Trade
from ingest.binance import BinanceUsdmAdapter
from processors.clusters import CLUSTERS_SCHEMA_VERSION, ClustersDetector
from processors.common import nice_width
from processors.registry import DETECTORS, build_detectors

T0 = 1_760_000_040_000  # a minute boundary
SEC = 1000
MIN = 60_000
HOUR = 3_600_000
CSV_PATH = (Path(__file__).parents[1] / "fixtures" / "binance"
            / "binance_forceorder_allsymbols_2025-01-26_2025-02-06.csv")


def cfg(**kw: Any) -> ClustersConfig:
    return ClustersConfig.model_validate(kw)


def liq(ts: int, price: float, notional: float, side: str = "long", base: str = "BTC",
        sampled: bool = False) -> Liquidation:
    return Liquidation(venue="binance", symbol=f"{base}USDT", instrument=f"{base}-USDT-PERP", base=base, ts=ts,
                       recv_ts=ts + 5, side=side,  # type: ignore[arg-type]
                       price=Decimal(repr(price)), qty=Decimal(1), notional_usd=Decimal(repr(notional)),
                       sampled=sampled)


def trade(ts: int, price: float) -> Trade:
    return Trade(venue="binance", symbol="BTCUSDT", instrument="BTC-USDT-PERP", base="BTC", ts=ts, recv_ts=ts,
                 side="sell", price=Decimal(repr(price)), qty=Decimal(1), notional_usd=Decimal(10_000_000),
                 trade_id=str(ts))


@dataclass(frozen=True)
class Publish:
    now: int


Step = MarketEvent | int | Publish


def run(det: ClustersDetector, steps: list[Step]) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for step in steps:
        if isinstance(step, Publish):
            out.extend(det.publish(step.now))
        elif isinstance(step, int):
            assert det.on_tick(step) == []
        else:
            assert det.on_event(step) == []
    return out


# ---------------------------------------------------------------- buckets and the document


def test_nice_widths() -> None:
    assert [nice_width(x) for x in (260.25, 8.25, 0.6, 0.000_52, 1.4, 3.2, 7.6)] == [
        250.0, 10.0, 0.5, 0.0005, 1.0, 2.5, 10.0]
    with pytest.raises(ValueError):
        nice_width(0)


def test_document_has_exact_buckets_per_window_and_side() -> None:
    det = ClustersDetector(cfg())
    steps: list[Step] = [
        liq(T0, 104_100, 1_000_000, sampled=True),  # width: 0.25 % of 104,100 = 260 -> 250
        liq(T0 + SEC, 104_240, 500_000.5),
        liq(T0 + 2 * SEC, 104_260, 250_000),
        liq(T0 + 3 * SEC, 105_010, 75_000, side="short"),
        liq(T0 + 4 * SEC, 3_300, 20_000, base="ETH"),
    ]
    docs = run(det, [*steps, Publish(T0 + 5 * SEC)])
    assert [key for key, _doc in docs] == ["BTC", "ETH"]
    btc = docs[0][1]
    assert btc["base"] == "BTC" and btc["ts"] == T0 + 5 * SEC and btc["schema_version"] == CLUSTERS_SCHEMA_VERSION
    assert btc["bucket_width"] == 250.0 and btc["lower_bound"] is True
    expected = {"long": [[104_000.0, 104_250.0, 1_500_000.5, 2], [104_250.0, 104_500.0, 250_000.0, 1]],
                "short": [[105_000.0, 105_250.0, 75_000.0, 1]]}
    assert btc["windows"] == {"1h": expected, "24h": expected}
    eth = docs[1][1]
    assert eth["bucket_width"] == 10.0 and eth["lower_bound"] is False
    assert eth["windows"]["1h"] == {"long": [[3_300.0, 3_310.0, 20_000.0, 1]], "short": []}
    assert orjson.loads(orjson.dumps(btc)) == btc  # JSON-serializable as is


def test_configured_width_per_asset_and_small_prices() -> None:
    det = ClustersDetector(cfg(assets={"BTC": {"bucket_usd": 100}}))
    run(det, [liq(T0, 104_150, 1_000), liq(T0, 0.2061, 500, base="DOGE")])
    assert det.document("BTC")["windows"]["1h"]["long"] == [[104_100.0, 104_200.0, 1_000.0, 1]]
    doge = det.document("DOGE")
    assert doge["bucket_width"] == 0.0005
    assert doge["windows"]["1h"]["long"] == [[0.206, 0.2065, 500.0, 1]]  # no 0.20600000000000002


# ---------------------------------------------------------------- publish cadence


def test_publish_at_most_once_per_interval_and_only_with_changes() -> None:
    det = ClustersDetector(cfg())
    assert det.publish(T0) == []
    run(det, [liq(T0, 100_000, 1_000)])
    assert [k for k, _ in det.publish(T0 + SEC)] == ["BTC"]
    assert det.publish(T0 + 2 * SEC) == []  # nothing new
    run(det, [liq(T0 + 10 * SEC, 100_000, 2_000)])
    assert det.publish(T0 + 30 * SEC) == []  # news, but the last document is only 29 s old
    docs = det.publish(T0 + 61 * SEC)
    assert [(k, d["windows"]["1h"]["long"][0][2]) for k, d in docs] == [("BTC", 3_000.0)]
    assert det.publish(T0 + 200 * SEC) == []


def test_windows_expire_and_an_emptied_base_publishes_once_then_is_forgotten() -> None:
    det = ClustersDetector(cfg())
    run(det, [liq(T0 + 5 * SEC, 100_000, 1_000)])
    assert det.publish(T0 + 10 * SEC) != []
    # the 1 h window keeps whole minute slices: gone once the slice's end is an hour old
    assert det.publish(T0 + HOUR) == []
    docs = det.publish(T0 + HOUR + MIN)
    assert docs[0][1]["windows"]["1h"]["long"] == [] and docs[0][1]["windows"]["24h"]["long"] != []
    # 24 h window in 24-minute slices: empty at the latest 24 h + 24 min after the event
    docs = det.publish(T0 + 24 * HOUR + 24 * MIN + 5 * SEC)
    assert docs[0][1]["windows"] == {"1h": {"long": [], "short": []}, "24h": {"long": [], "short": []}}
    assert det.snapshot()["bases"] == []
    assert det.publish(T0 + 30 * HOUR) == []


def test_a_volume_spike_without_liquidations_changes_nothing() -> None:
    det = ClustersDetector(cfg())
    run(det, [liq(T0, 100_000, 1_000)])
    det.publish(T0 + SEC)
    before = det.snapshot()
    others: list[Step] = [trade(T0 + 2 * SEC + i, 90_000 + i) for i in range(5_000)]
    others += [OpenInterest(venue="binance", symbol="BTCUSDT", instrument="BTC-USDT-PERP", base="BTC",
                            ts=T0 + 3 * SEC, recv_ts=T0, oi_qty=Decimal(1), oi_usd=Decimal(1)),
               Funding(venue="binance", symbol="BTCUSDT", instrument="BTC-USDT-PERP", base="BTC", ts=T0 + 3 * SEC,
                       recv_ts=T0, rate=Decimal("0.001"), interval_h=8)]
    run(det, others)
    assert det.snapshot() == before
    assert det.publish(T0 + 2 * MIN) == []


def test_late_liquidations_go_to_their_slice_or_are_counted() -> None:
    det = ClustersDetector(cfg())
    run(det, [liq(T0 + 2 * HOUR, 100_000, 1_000), liq(T0 + 30 * MIN, 100_000, 500), liq(T0 - 25 * HOUR, 100_000, 7)])
    doc = det.document("BTC")
    assert doc["windows"]["1h"]["long"] == [[100_000.0, 100_250.0, 1_000.0, 1]]  # 1 h 30 min late: 24 h only
    assert doc["windows"]["24h"]["long"] == [[100_000.0, 100_250.0, 1_500.0, 2]]
    assert det.late_events == 1


def test_memory_is_bounded_by_slices_and_buckets() -> None:
    det = ClustersDetector(cfg())
    for i in range(50_000):  # 50 K liquidations over 5 h in 40 buckets
        det.on_event(liq(T0 + i * 360, 100_000 + (i % 40) * 250, 10.0, side="long" if i % 3 else "short"))
    snap = det.snapshot()
    for window in snap["bases"][0]["windows"]:
        for side in ("long", "short"):
            assert len(window[side]) <= 61
            assert len(window[f"{side}_totals"]) <= 40
    assert len(orjson.dumps(snap)) < 400_000


# ---------------------------------------------------------------- config, snapshots


def test_window_config_validation_and_labels() -> None:
    det = ClustersDetector(cfg(windows_s=[900, 4 * 3600]))
    run(det, [liq(T0, 100_000, 1)])
    assert set(det.document("BTC")["windows"]) == {"15m", "4h"}
    with pytest.raises(ValueError, match="duplicate"):
        ClustersDetector(cfg(windows_s=[3600, 3600.0]))
    with pytest.raises(ValueError, match="at least one"):
        ClustersDetector(cfg(windows_s=[]))


def mixed_stream() -> list[Step]:
    steps: list[Step] = []
    for i in range(400):
        ts = T0 + i * 37 * SEC
        steps.append(liq(ts, 100_000 + (i % 13) * 97, 1_000 + i, side="long" if i % 4 else "short",
                         base="BTC" if i % 5 else "ETH", sampled=i % 7 == 0))
        if i % 9 == 0:
            steps.append(ts + 10 * SEC)
        if i % 4 == 0:
            steps.append(Publish(ts + 20 * SEC))
    steps += [Publish(T0 + 30 * HOUR), Publish(T0 + 31 * HOUR)]
    return steps


def test_snapshot_restore_is_equivalent_at_every_cut() -> None:
    steps = mixed_stream()
    reference = run(ClustersDetector(cfg()), steps)
    assert len(reference) > 50
    for cut in range(0, len(steps), 41):
        first = ClustersDetector(cfg())
        head = run(first, steps[:cut])
        second = ClustersDetector(cfg(), snapshot=orjson.loads(orjson.dumps(first.snapshot())))
        assert second.snapshot() == first.snapshot()
        assert head + run(second, steps[cut:]) == reference, f"diverged after a restore at step {cut}"
    with pytest.raises(ValueError, match="windows"):
        ClustersDetector(cfg(windows_s=[60]), snapshot=ClustersDetector(cfg()).snapshot())


# ---------------------------------------------------------------- the real Binance forceOrder recording


def frame(row: list[str]) -> bytes:
    s, side, otype, tif, q, p, ap, status, last, z, t = row[:11]
    symbol = s if s.endswith("USDC") else s + "USDT"
    order = {"s": symbol, "S": side, "o": otype, "f": tif, "q": q, "p": p, "ap": ap, "X": status, "l": last, "z": z,
             "T": int(t)}
    return orjson.dumps({"stream": "!forceOrder@arr", "data": {"e": "forceOrder", "E": int(t) + 7, "o": order}})


def test_real_2025_01_27_btc_liquidation_heatmap() -> None:
    """The DeepSeek-day session through the real adapter; expected buckets computed directly from the CSV."""
    day_start = int(datetime(2025, 1, 27, tzinfo=UTC).timestamp() * 1000)
    with CSV_PATH.open(newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.reader(handle) if int(r[10]) >= day_start]
    adapter = BinanceUsdmAdapter(symbols=[])
    det = ClustersDetector(cfg())
    for row in rows:
        for event in adapter.parse(frame(row), int(row[10]) + 50).events:
            det.on_event(event)
    end = int(datetime(2025, 1, 27, 17, 21, tzinfo=UTC).timestamp() * 1000)
    docs = dict(det.publish(end))
    btc = docs["BTC"]

    unique = {tuple(r[:11]): r for r in rows if r[0] in ("BTC", "BTCUSDC")}
    first = min(unique.values(), key=lambda r: int(r[10]))
    width = nice_width(float(first[6]) * 0.0025)
    assert btc["bucket_width"] == width == 250.0
    expected: dict[str, dict[int, list[Any]]] = {"long": defaultdict(lambda: [Decimal(0), 0]),
                                                 "short": defaultdict(lambda: [Decimal(0), 0])}
    for r in unique.values():
        side = "long" if r[1] == "SELL" else "short"
        cell = expected[side][math.floor(float(r[6]) / width)]
        cell[0] += Decimal(r[9]) * Decimal(r[6])
        cell[1] += 1
    for side in ("long", "short"):
        want = [[k * width, (k + 1) * width, float(round(v[0], 2)), v[1]] for k, v in sorted(expected[side].items())]
        assert btc["windows"]["1h"][side] == want
        assert btc["windows"]["24h"][side] == want
    longs = btc["windows"]["1h"]["long"]
    top = max(longs, key=lambda row: row[2])
    # the session's heaviest BTC long-liquidation bucket, and the total (a lower bound: Binance samples)
    assert top == [99_500.0, 99_750.0, 379_802.9, 16]
    assert [row[:2] for row in longs] == [[99_000.0, 99_250.0], [99_250.0, 99_500.0], [99_500.0, 99_750.0],
                                          [99_750.0, 100_000.0]]
    assert sum(row[3] for row in longs) == sum(1 for r in unique.values() if r[1] == "SELL")
    assert btc["lower_bound"] is True
    assert len(docs) > 100  # every base with liquidations that day has its own document


def test_registry_builds_it_from_its_config_section() -> None:
    assert DETECTORS["clusters"] is ClustersDetector
    config = Config.model_validate({"detectors": {"enabled": ["cascade", "clusters"]},
                                     "clusters": {"publish_interval_s": 30}})
    built = build_detectors(config)
    assert [d.name for d in built] == ["cascade", "clusters"]
    detector = built[1]
    assert isinstance(detector, ClustersDetector) and detector.config.publish_interval_s == 30
