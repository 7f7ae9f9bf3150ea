"""FundingDetector on plain event lists: OI weights (known and unknown), regimes, skews, hysteresis."""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from decimal import Decimal
from typing import Any

import orjson
import pytest

from flushwatch.config import Config, FundingConfig
from flushwatch.events import Alert, Funding, Liquidation, MarketEvent, OpenInterest, Trade
from processors.funding import FundingDetector
from processors.registry import DETECTORS, build_detectors

T0 = 1_760_000_000_000
MIN = 60_000
HOUR = 3_600_000
INSTRUMENT = {"binance": "BTC-USDT-PERP", "okx": "BTC-USDT-SWAP", "hyperliquid": "BTC-USD-PERP"}

Step = MarketEvent | int  # an int is a tick


def cfg(**kw: Any) -> FundingConfig:
    return FundingConfig.model_validate(kw)


def fund(ts: int, rate: float, venue: str = "binance", interval_h: int = 8, base: str = "BTC",
         mark: float | None = None) -> Funding:
    return Funding(venue=venue, symbol=f"{base}USDT", instrument=INSTRUMENT.get(venue, f"{base}-PERP"), base=base,
                   ts=ts, recv_ts=ts + 5, rate=Decimal(repr(rate)), interval_h=interval_h,
                   mark_price=None if mark is None else Decimal(repr(mark)))


def oi(ts: int, usd: float, venue: str = "binance", qty: float = 0, base: str = "BTC") -> OpenInterest:
    return OpenInterest(venue=venue, symbol=f"{base}USDT", instrument=INSTRUMENT.get(venue, f"{base}-PERP"),
                        base=base, ts=ts, recv_ts=ts + 5, oi_qty=Decimal(repr(qty)), oi_usd=Decimal(repr(usd)))


def trade(ts: int, price: float, base: str = "BTC") -> Trade:
    return Trade(venue="binance", symbol=f"{base}USDT", instrument=f"{base}-USDT-PERP", base=base, ts=ts,
                 recv_ts=ts + 5, side="sell", price=Decimal(repr(price)), qty=Decimal(1),
                 notional_usd=Decimal(repr(price)), trade_id=str(ts))


def run(det: FundingDetector, steps: list[Step]) -> list[Alert]:
    out: list[Alert] = []
    for step in steps:
        out.extend(det.on_tick(step) if isinstance(step, int) else det.on_event(step))
    return out


def every(start: int, end: int, step: int) -> range:
    return range(start, end, step)


# ---------------------------------------------------------------- the weighted average


def test_weights_follow_oi_and_unknown_weights_get_the_mean() -> None:
    det = FundingDetector(cfg())
    run(det, [oi(T0, 6e9, "binance"), oi(T0, 2e9, "okx"),
              fund(T0 + 1, 0.0003, "binance"), fund(T0 + 1, 0.0001, "okx"),
              fund(T0 + 1, 0.0000125, "hyperliquid", interval_h=1)])  # hourly venue, no OI known
    cur = det.current("BTC")
    assert cur is not None
    # hyperliquid weighs the mean of the known weights (4 B): (6*0.03 + 2*0.01 + 4*0.01) / 12 %/8h
    assert cur["weights_known"] == 2 and cur["feeds"] == 3
    assert cur["weights"] == {"binance:BTC-USDT-PERP": 0.5, "hyperliquid:BTC-USD-PERP": pytest.approx(1 / 3, abs=1e-6),
                              "okx:BTC-USDT-SWAP": pytest.approx(1 / 6, abs=1e-6)}
    assert cur["by_feed_pct_8h"] == {"binance:BTC-USDT-PERP": 0.03, "hyperliquid:BTC-USD-PERP": 0.01,
                                     "okx:BTC-USDT-SWAP": 0.01}
    assert cur["funding_pct_8h"] == pytest.approx(0.02, abs=1e-9)
    assert cur["funding_hourly"] == pytest.approx(0.0002 / 8)
    assert cur["funding_apr_pct"] == pytest.approx(0.0002 / 8 * 24 * 365 * 100, abs=1e-4)


def test_all_weights_unknown_is_an_equal_weighted_average() -> None:
    det = FundingDetector(cfg())
    run(det, [fund(T0, 0.0004, "binance"), fund(T0, 0.00000625, "hyperliquid", interval_h=1)])
    cur = det.current("BTC")
    assert cur is not None
    assert cur["weights_known"] == 0
    assert cur["funding_pct_8h"] == pytest.approx((0.04 + 0.005) / 2)
    assert set(cur["weights"].values()) == {0.5}


def test_qty_only_oi_is_weighted_at_the_base_price() -> None:
    det = FundingDetector(cfg())
    steps: list[Step] = [trade(T0, 100_000)]
    steps += [OpenInterest(venue="okx", symbol="BTC-USDT-SWAP", instrument="BTC-USDT-SWAP", base="BTC", ts=T0,
                           recv_ts=T0, oi_qty=Decimal(30_000))]  # 3 B USD at 100 K
    steps += [oi(T0, 1e9, "binance"), fund(T0, 0.0001, "binance"), fund(T0, 0.0005, "okx")]
    run(det, steps)
    cur = det.current("BTC")
    assert cur is not None and cur["weights_known"] == 2
    assert cur["funding_pct_8h"] == pytest.approx((1 * 0.01 + 3 * 0.05) / 4)


def test_stale_funding_leaves_the_average() -> None:
    det = FundingDetector(cfg())
    run(det, [fund(T0, 0.0005, "binance"), fund(T0 + 5 * MIN, 0.0001, "okx"), fund(T0 + 11 * MIN, 0.0001, "okx")])
    cur = det.current("BTC")
    assert cur is not None and cur["feeds"] == 1 and cur["funding_pct_8h"] == pytest.approx(0.01)
    det.on_tick(T0 + 30 * MIN)
    assert det.current("BTC") is None


# ---------------------------------------------------------------- funding_normalized


def regime_then_flush(normal_at: int = T0 + 3 * HOUR) -> list[Step]:
    """Longs pay 0.05 / 0.04 %/8h (weighted 0.0475) from T0; a flush at ``normal_at`` takes OI -10 %, price
    -8 % and funding to 0.01 / 0.005 %/8h (weighted 0.00875)."""
    steps: list[Step] = [oi(T0, 6e9, "binance", qty=60_000), oi(T0, 2e9, "okx")]
    for ts in every(T0, normal_at, 5 * MIN):
        steps += [fund(ts, 0.0005, "binance"), fund(ts, 0.0004, "okx")]
    steps += [trade(normal_at - 1, 92_000), oi(normal_at, 5.4e9, "binance"), oi(normal_at, 1.8e9, "okx")]
    for ts in every(normal_at, normal_at + 2 * HOUR, 5 * MIN):
        steps += [fund(ts, 0.0001, "binance"), fund(ts, 0.00005, "okx")]
    return steps


def test_normalized_after_a_long_regime_with_exact_metrics() -> None:
    det = FundingDetector(cfg())
    alerts = run(det, regime_then_flush())
    assert [a.type for a in alerts] == ["funding_normalized"]
    a = alerts[0]
    assert a.severity == "info" and a.venues == ("binance", "okx")
    assert (a.ts, a.window_start, a.window_end) == (T0 + 3 * HOUR + 30 * MIN, T0, T0 + 3 * HOUR + 30 * MIN)
    m = a.metrics
    assert m["side"] == "long" and m["regime_start_ts"] == T0 and m["regime_s"] == 3.5 * 3600
    assert m["peak_funding_pct_8h"] == 0.0475 and m["funding_pct_8h"] == 0.00875
    assert m["oi_change_pct"] == pytest.approx(-10.0) and m["price_change_pct"] == pytest.approx(-8.0)
    assert (m["price_start"], m["price"]) == (100_000.0, 92_000.0)
    assert (m["high_pct_8h"], m["low_pct_8h"]) == (0.03, 0.01)
    assert a.alert_id == hashlib.sha256(f"funding|BTC|normalized|long|{T0}".encode()).hexdigest()[:32]
    assert a.message == (
        "BTC funding normalized: OI-weighted funding back to +0.0088 %/8h after 3 h 30 min of long-biased "
        "funding (peak +0.0475 %/8h); since the regime began OI −10.0 % and price −8.0 %"
    )


def test_normalized_fires_on_a_tick_at_the_exact_deadline() -> None:
    steps = [s for s in regime_then_flush() if isinstance(s, int) or s.ts <= T0 + 3 * HOUR + 5 * MIN]
    det = FundingDetector(cfg(stale_after_s=3600))
    assert run(det, steps) == []
    late = det.on_tick(T0 + 3 * HOUR + 50 * MIN)
    assert [(a.type, a.ts, a.emitted_ts) for a in late] == [
        ("funding_normalized", T0 + 3 * HOUR + 30 * MIN, T0 + 3 * HOUR + 50 * MIN)]


def test_a_short_spike_is_no_regime() -> None:
    det = FundingDetector(cfg())
    steps: list[Step] = []
    for ts in every(T0, T0 + 2 * HOUR - 5 * MIN, 5 * MIN):  # 1 h 55 min above: not a regime
        steps.append(fund(ts, 0.0005))
    for ts in every(T0 + 2 * HOUR - 5 * MIN, T0 + 5 * HOUR, 5 * MIN):
        steps.append(fund(ts, 0.00005))
    assert run(det, steps) == []


def test_flapping_around_the_low_threshold_gives_one_alert() -> None:
    det = FundingDetector(cfg())
    steps: list[Step] = []
    for ts in every(T0, T0 + 3 * HOUR, 5 * MIN):
        steps.append(fund(ts, 0.0005))
    # 0.011 / 0.009 %/8h alternating every 10 min: never 30 min in a row within the low threshold
    for i, ts in enumerate(every(T0 + 3 * HOUR, T0 + 6 * HOUR, 10 * MIN)):
        steps += [fund(ts, 0.00011 if i % 2 else 0.00009), fund(ts + 5 * MIN, 0.00011 if i % 2 else 0.00009)]
    assert run(det, steps) == []
    steps = [fund(ts, 0.00009) for ts in every(T0 + 6 * HOUR, T0 + 7 * HOUR, 5 * MIN)]
    alerts = run(det, steps)
    # the last flap (i = 17, at 5 h 50 and 5 h 55) was above the threshold: calm from 6 h, confirmed at 6 h 30
    assert [(a.type, a.ts) for a in alerts] == [("funding_normalized", T0 + 6 * HOUR + 30 * MIN)]
    # the regime is over: more flapping fires nothing until a new regime builds
    for i, ts in enumerate(every(T0 + 7 * HOUR, T0 + 10 * HOUR, 5 * MIN)):
        assert det.on_event(fund(ts, 0.00011 if i % 2 else 0.00009)) == []


def test_a_regime_that_lingers_times_out_silently() -> None:
    det = FundingDetector(cfg())
    steps: list[Step] = [fund(ts, 0.0005) for ts in every(T0, T0 + 3 * HOUR, 5 * MIN)]
    steps += [fund(ts, 0.0002) for ts in every(T0 + 3 * HOUR, T0 + 28 * HOUR, 5 * MIN)]  # 0.02: in between
    steps += [fund(ts, 0.00005) for ts in every(T0 + 28 * HOUR, T0 + 30 * HOUR, 5 * MIN)]
    assert run(det, steps) == []


def test_short_regime_normalizes_symmetrically() -> None:
    det = FundingDetector(cfg())
    steps: list[Step] = [fund(ts, -0.0004) for ts in every(T0, T0 + 3 * HOUR, 5 * MIN)]
    steps += [fund(ts, -0.00005) for ts in every(T0 + 3 * HOUR, T0 + 4 * HOUR, 5 * MIN)]
    alerts = run(det, steps)
    assert [(a.type, a.metrics["side"]) for a in alerts] == [("funding_normalized", "short")]
    assert alerts[0].metrics["peak_funding_pct_8h"] == -0.04
    assert "short-biased" in alerts[0].message and alerts[0].metrics["oi_change_pct"] is None


# ---------------------------------------------------------------- funding_skew


def falling_market(funding: float = 0.00025, start: int = T0, minutes: int = 7 * 60) -> list[Step]:
    """Price flat at 100 K for 4 h, then -110 per minute to 95.6 K (from start + 4 h 28 min it is more than
    3 % below its level 4 h earlier), with funding at ``funding`` (per 8 h) every 5 min throughout."""
    steps: list[Step] = []
    for k in range(0, minutes):
        ts = start + k * MIN
        price = 100_000 - 110 * min(max(k - 240, 0), 40)
        steps.append(trade(ts, price))
        if k % 5 == 0:
            steps.append(fund(ts + 1, funding))
        if k % 7 == 0:
            steps.append(ts + 30_000)
    return steps


def test_long_skew_fires_once_with_exact_metrics() -> None:
    det = FundingDetector(cfg())
    alerts = run(det, falling_market())
    assert [a.type for a in alerts] == ["funding_skew"]
    a = alerts[0]
    since = T0 + 4 * HOUR + 28 * MIN  # 96,920 vs 100,000: -3.08 %
    assert (a.ts, a.window_start, a.severity) == (since + HOUR, since, "warning")
    m = a.metrics
    assert m["side"] == "long" and m["skew_since_ts"] == since and m["duration_s"] == 3600.0
    assert m["price_ref"] == 100_000.0 and m["price"] == 95_600.0 and m["price_change_pct"] == -4.4
    assert m["funding_pct_8h"] == 0.025 and m["threshold_pct_8h"] == 0.02 and m["window_s"] == 14_400.0
    assert a.alert_id == hashlib.sha256(f"funding|BTC|skew|long|{since}".encode()).hexdigest()[:32]
    assert a.message == (
        "BTC funding skewed against the move: price −4.4 % over 4 h while OI-weighted funding has stayed at "
        "+0.0250 %/8h for 1 h: longs are crowded and still paying, long-squeeze risk"
    )


def test_skew_hysteresis_flapping_funding_does_not_refire_and_release_rearms() -> None:
    det = FundingDetector(cfg())
    alerts = run(det, falling_market(minutes=330))  # fired at 5 h 28 min
    assert len(alerts) == 1
    end = T0 + 330 * MIN
    flap: list[Step] = []
    for i, ts in enumerate(every(end, end + 30 * MIN, MIN)):  # 0.021 / 0.019 around the 0.02 threshold
        flap += [trade(ts, 95_600), fund(ts + 1, 0.00021 if i % 2 else 0.00019)]
    assert run(det, flap) == []
    # released by funding below half the threshold (0.005 < 0.01), then skewed again while price is still
    # 4.4 % under its level 4 h earlier: a new episode with a new id, one hour after it began
    again: list[Step] = [trade(end + 30 * MIN, 95_600), fund(end + 30 * MIN + 1, 0.00005)]
    for ts in every(end + 35 * MIN, end + 3 * HOUR, 5 * MIN):
        again += [trade(ts, 95_600), fund(ts + 1, 0.00025)]
    second = run(det, again)
    assert [(a.type, a.ts) for a in second] == [("funding_skew", end + 35 * MIN + 1 + HOUR)]
    assert second[0].alert_id != alerts[0].alert_id
    assert second[0].metrics["skew_since_ts"] == end + 35 * MIN + 1


def test_no_skew_when_funding_follows_the_price() -> None:
    det = FundingDetector(cfg())
    assert run(det, falling_market(funding=0.0001)) == []  # baseline funding into a fall: nobody crowded
    det = FundingDetector(cfg())
    assert run(det, falling_market(funding=-0.0002)) == []  # shorts paying into a fall: no long skew


def test_short_skew_is_symmetric() -> None:
    det = FundingDetector(cfg())
    steps: list[Step] = []
    for k in range(0, 7 * 60):
        ts = T0 + k * MIN
        steps.append(trade(ts, 100_000 + 110 * min(max(k - 240, 0), 40)))
        if k % 5 == 0:
            steps.append(fund(ts + 1, -0.0003))
    alerts = run(det, steps)
    assert [(a.type, a.metrics["side"]) for a in alerts] == [("funding_skew", "short")]
    assert alerts[0].metrics["price_change_pct"] == 4.4
    assert alerts[0].message.endswith("shorts are crowded and still paying, short-squeeze risk")


# ---------------------------------------------------------------- config, determinism, snapshots


def test_per_asset_thresholds_and_validation() -> None:
    det = FundingDetector(cfg(assets={"DOGE": {"high_pct_8h": 0.06}}))
    steps: list[Step] = []
    for base in ("BTC", "DOGE"):
        steps += [fund(ts, 0.0005, base=base) for ts in every(T0, T0 + 3 * HOUR, 5 * MIN)]
        steps += [fund(ts, 0.00005, base=base) for ts in every(T0 + 3 * HOUR, T0 + 4 * HOUR, 5 * MIN)]
    alerts = run(det, sorted(steps, key=lambda s: s if isinstance(s, int) else s.ts))
    assert [a.base for a in alerts] == ["BTC"]
    with pytest.raises(ValueError, match="low_pct_8h"):
        FundingDetector(cfg(low_pct_8h=0.05))


def test_liquidations_only_move_time() -> None:
    det = FundingDetector(cfg())
    liq = Liquidation(venue="binance", symbol="BTCUSDT", instrument="BTC-USDT-PERP", base="BTC", ts=T0,
                      recv_ts=T0, side="long", price=Decimal(90_000), qty=Decimal(1), notional_usd=Decimal(90_000))
    assert det.on_event(liq) == [] and det.current("BTC") is None


def mixed_stream() -> list[Step]:
    steps: list[Step] = list(regime_then_flush())
    steps += falling_market(start=T0 + 6 * HOUR)
    steps += [fund(ts, -0.0004, base="ETH") for ts in every(T0 + 10, T0 + 3 * HOUR, 5 * MIN)]
    steps += [fund(ts, -0.00005, base="ETH") for ts in every(T0 + 3 * HOUR, T0 + 4 * HOUR, 5 * MIN)]
    steps.sort(key=lambda s: s if isinstance(s, int) else s.ts)
    steps.append(T0 + 20 * HOUR)
    return steps


def test_mixed_stream_fires_the_expected_sequence() -> None:
    alerts = run(FundingDetector(cfg()), mixed_stream())
    assert [(a.base, a.type) for a in alerts] == [
        ("BTC", "funding_normalized"), ("ETH", "funding_normalized"), ("BTC", "funding_skew")]


def test_snapshot_restore_is_equivalent_at_every_cut() -> None:
    steps = mixed_stream()
    reference = [asdict(a) for a in run(FundingDetector(cfg()), steps)]
    for cut in range(0, len(steps), 29):
        first = FundingDetector(cfg())
        head = run(first, steps[:cut])
        second = FundingDetector(cfg(), snapshot=orjson.loads(orjson.dumps(first.snapshot())))
        assert second.snapshot() == first.snapshot()
        tail = run(second, steps[cut:])
        assert [asdict(a) for a in head + tail] == reference, f"diverged after a restore at step {cut}"


def test_ids_are_deterministic_and_tick_frequency_does_not_matter() -> None:
    steps = mixed_stream()
    a = run(FundingDetector(cfg()), steps)
    b = run(FundingDetector(cfg()), steps)
    assert [asdict(x) for x in a] == [asdict(x) for x in b]
    no_ticks = [s for s in steps if not isinstance(s, int)] + [T0 + 20 * HOUR]
    c = run(FundingDetector(cfg()), no_ticks)
    per_second = [*range(T0, T0 + 11 * HOUR, 1000)]
    d_steps = sorted(steps + per_second, key=lambda s: s if isinstance(s, int) else s.ts)
    d = run(FundingDetector(cfg()), d_steps)
    key = [(x.alert_id, x.type, x.ts, x.metrics) for x in a]
    assert [(x.alert_id, x.type, x.ts, x.metrics) for x in c] == key
    assert [(x.alert_id, x.type, x.ts, x.metrics) for x in d] == key


def test_restore_rejects_other_versions() -> None:
    with pytest.raises(ValueError, match="version"):
        FundingDetector(cfg(), snapshot={"version": 0})


def test_registry_builds_it_from_its_config_section() -> None:
    assert DETECTORS["funding"] is FundingDetector
    config = Config.model_validate({"detectors": {"enabled": ["cascade", "funding"]},
                                     "funding": {"high_pct_8h": 0.04}})
    built = build_detectors(config)
    assert [d.name for d in built] == ["cascade", "funding"]
    detector = built[1]
    assert isinstance(detector, FundingDetector) and detector.config.high_pct_8h == 0.04
