"""LevelsDetector on plain event lists: defended / break / reclaimed, flapping traps, symmetry, snapshots."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict
from decimal import Decimal
from typing import Any

import orjson
import pytest

from flushwatch.config import Config, LevelsConfig
from flushwatch.events import Alert, Liquidation, MarketEvent, OpenInterest, Trade
from processors.levels import LevelsDetector
from processors.registry import DETECTORS, build_detectors

T0 = 1_760_000_000_000
SEC = 1000
MIN = 60_000
BAND = [60_000.0, 61_000.0]

Step = MarketEvent | int


def cfg(**kw: Any) -> LevelsConfig:
    kw.setdefault("bands", {"BTC": [BAND]})
    return LevelsConfig.model_validate(kw)


def trade(ts: int, price: float, base: str = "BTC", venue: str = "binance") -> Trade:
    return Trade(venue=venue, symbol=f"{base}USDT", instrument=f"{base}-USDT-PERP", base=base, ts=ts,
                 recv_ts=ts + 5, side="sell", price=Decimal(repr(price)), qty=Decimal(1),
                 notional_usd=Decimal(repr(price)), trade_id=str(ts))


def liq(ts: int, price: float, notional: float, side: str = "long", venue: str = "binance",
        base: str = "BTC") -> Liquidation:
    return Liquidation(venue=venue, symbol=f"{base}USDT", instrument=f"{base}-USDT-PERP", base=base, ts=ts,
                       recv_ts=ts + 5, side=side,  # type: ignore[arg-type]
                       price=Decimal(repr(price)), qty=Decimal(1), notional_usd=Decimal(repr(notional)))


def run(det: LevelsDetector, steps: list[Step]) -> list[Alert]:
    out: list[Alert] = []
    for step in steps:
        out.extend(det.on_tick(step) if isinstance(step, int) else det.on_event(step))
    return out


def path(start: int, prices: Sequence[float], every: int = 10 * SEC) -> list[Step]:
    return [trade(start + i * every, p) for i, p in enumerate(prices)]


# ---------------------------------------------------------------- defended


def test_first_price_sets_the_side_without_alerts() -> None:
    det = LevelsDetector(cfg())
    assert run(det, path(T0, [60_500, 60_400, 59_000, 58_000])) == []  # inside first: side set on leaving
    assert det.snapshot()["bases"][0]["bands"][0][2] == "below"


def test_support_defended_with_exact_metrics() -> None:
    det = LevelsDetector(cfg())
    steps: list[Step] = path(T0, [62_000, 61_500])
    steps += [trade(T0 + MIN, 60_800)]  # the touch
    steps += [liq(T0 + MIN + 5 * SEC, 60_700, 1_200_000), liq(T0 + MIN + 6 * SEC, 60_650, 300_000, venue="okx"),
              liq(T0 + MIN + 7 * SEC, 60_900, 50_000, side="short")]
    steps += [trade(T0 + 2 * MIN, 60_500), trade(T0 + 5 * MIN, 61_200), trade(T0 + 14 * MIN, 61_400)]
    alerts = run(det, steps)
    assert [a.type for a in alerts] == ["level_defended"]
    a = alerts[0]
    assert a.severity == "info" and a.venues == ("binance", "okx")
    assert (a.ts, a.window_start, a.window_end) == (T0 + 14 * MIN, T0 + MIN, T0 + 14 * MIN)
    m = a.metrics
    assert (m["band_low"], m["band_high"], m["role"]) == (60_000.0, 61_000.0, "support")
    assert m["extreme_price"] == 60_500.0 and m["depth_pct"] == pytest.approx(500 / 61_000 * 100, abs=1e-4)
    assert m["bounce_pct"] == pytest.approx(400 / 61_000 * 100, abs=1e-4) and m["to_bounce_s"] == 780.0
    assert (m["liq_long_usd"], m["liq_short_usd"], m["liq_events"]) == (1_500_000.0, 50_000.0, 3)
    assert m["liq_by_venue"] == {"binance": 1_250_000.0, "okx": 300_000.0}
    assert m["touch_ts"] == T0 + MIN and m["price"] == 61_400.0
    key = f"levels|BTC|60000-61000|level_defended|{T0 + MIN}"
    assert a.alert_id == hashlib.sha256(key.encode()).hexdigest()[:32]
    assert a.message == ("BTC defended the 60,000–61,000 support: dipped to 60,500 and bounced 0.7 % above "
                         "the band within 13 min ($1.5M of longs liquidated on the test)")


def test_a_bounce_too_late_is_not_a_defence() -> None:
    det = LevelsDetector(cfg())
    steps = [*path(T0, [62_000, 60_800]), trade(T0 + 2 * 3_600_000, 61_400)]
    assert run(det, steps) == []


def test_flapping_at_the_near_edge_gives_one_defended_per_rearm() -> None:
    det = LevelsDetector(cfg())
    steps: list[Step] = [trade(T0, 62_000)]
    # 30 min of 60,990 / 61,010 every 5 s: touches galore, no bounce of 0.5 %
    steps += path(T0 + SEC, [60_990 if i % 2 else 61_010 for i in range(360)], every=5 * SEC)
    assert run(det, steps) == []
    alerts = run(det, [trade(T0 + 31 * MIN, 61_400)])
    assert [a.type for a in alerts] == ["level_defended"]
    assert alerts[0].metrics["touch_ts"] == T0 + 6 * SEC  # the first touch of the flapping
    # two hours swinging between the band and the bounce target: disarmed, silent
    swings = [60_900 if i % 2 else 61_400 for i in range(720)]
    assert run(det, path(T0 + 32 * MIN, swings)) == []
    # price goes 1.5 % above the band (re-arm), then a new touch and bounce: one more
    again = path(T0 + 3 * 3_600_000, [62_000, 60_950, 61_400])
    assert [a.type for a in run(det, again)] == ["level_defended"]


# ---------------------------------------------------------------- break and reclaim


def test_flapping_at_the_far_edge_never_breaks_then_acceptance_breaks_once() -> None:
    det = LevelsDetector(cfg())
    steps: list[Step] = path(T0, [62_000, 61_000, 60_400])
    # an hour of 59,990 / 60,010 every 10 s: below the low, but never for 15 min
    steps += path(T0 + MIN, [59_990 if i % 2 == 0 else 60_010 for i in range(360)])
    steps += [liq(T0 + 30 * MIN, 59_990, 2_000_000)]
    assert run(det, steps) == []
    start = T0 + 62 * MIN
    fall: list[Step] = [trade(start, 59_800), liq(start + 1, 59_700, 3_000_000), trade(start + 5 * MIN, 59_400),
                        liq(start + 5 * MIN + 1, 59_300, 500_000, venue="bybit"), trade(start + 10 * MIN, 59_500)]
    assert run(det, fall) == []
    late = det.on_tick(start + 20 * MIN)  # the acceptance ended at start + 15 min; the tick is late
    assert [a.type for a in late] == ["level_break"]
    a = late[0]
    assert (a.ts, a.emitted_ts, a.severity) == (start + 15 * MIN, start + 20 * MIN, "warning")
    m = a.metrics
    assert m["direction"] == "down" and m["role"] == "support" and m["accepted_s"] == 900.0
    assert m["extreme_price"] == 59_400.0 and m["touch_ts"] == T0 + 10 * SEC  # 61,000 touches the high
    # everything liquidated since the first touch, through the flapping and the break
    assert m["liq_long_usd"] == 5_500_000.0 and m["liq_by_venue"] == {"binance": 5_000_000.0, "bybit": 500_000.0}
    assert a.window_start == T0 + 10 * SEC and a.window_end == start + 15 * MIN
    assert a.alert_id == hashlib.sha256(f"levels|BTC|60000-61000|level_break|{start}".encode()).hexdigest()[:32]
    assert a.message == ("BTC broke below the 60,000–61,000 support: accepted under 60,000 for 15 min (low 59,400), "
                         "$5.5M of longs liquidated since the band was first touched")
    # flapping around the low again (now the near edge of a resistance): nothing
    assert run(det, path(start + 21 * MIN, [59_990 if i % 2 else 60_010 for i in range(360)])) == []
    # accepted back above the high: reclaimed, once
    back = path(start + 90 * MIN, [61_200] * 100, every=10 * SEC)
    alerts = run(det, back)
    assert [a.type for a in alerts] == ["level_reclaimed"]
    r = alerts[0]
    assert r.ts == start + 90 * MIN + 15 * MIN and r.metrics["direction"] == "up"
    assert r.metrics["since_break_s"] == (90 * MIN + 15 * MIN - 15 * MIN) / 1000
    assert r.message == ("BTC reclaimed the 60,000–61,000 band: accepted back above 61,000 for 15 min, "
                         "1 h 30 min after the break")
    assert run(det, path(start + 120 * MIN, [61_200, 60_990, 61_010] * 50)) == []


def test_a_wick_through_the_band_is_no_break_but_a_defence() -> None:
    det = LevelsDetector(cfg())
    steps = path(T0, [62_000, 61_000, 59_000, 58_500, 59_500, 61_500], every=30 * SEC)
    alerts = run(det, steps)
    assert [a.type for a in alerts] == ["level_defended"]
    assert alerts[0].metrics["extreme_price"] == 58_500.0


def test_break_up_and_failed_breakout_through_a_resistance() -> None:
    det = LevelsDetector(cfg())
    steps = path(T0, [59_000, 60_100, 59_600])  # rejected at the resistance: 0.67 % back below the low
    alerts = run(det, steps)
    assert [(a.type, a.metrics["role"]) for a in alerts] == [("level_defended", "resistance")]
    assert alerts[0].message == ("BTC rejected at the 60,000–61,000 resistance: rose to 60,100 and fell back 0.7 % "
                                 "below the band within 10 s")
    up: list[Step] = [trade(T0 + MIN, 61_100), liq(T0 + MIN + 1, 61_150, 800_000, side="short")]
    up += path(T0 + 2 * MIN, [61_300] * 100, every=10 * SEC)
    alerts = run(det, up)
    assert [(a.type, a.metrics["direction"]) for a in alerts] == [("level_break", "up")]
    assert alerts[0].metrics["liq_short_usd"] == 800_000.0
    assert alerts[0].message.startswith("BTC broke above the 60,000–61,000 resistance: accepted over 61,000 for 15 min")
    down = path(T0 + 60 * MIN, [59_800] * 100, every=10 * SEC)
    alerts = run(det, down)
    assert [(a.type, a.metrics["direction"]) for a in alerts] == [("level_reclaimed", "down")]
    assert alerts[0].message.startswith("BTC lost the breakout above 60,000–61,000: accepted back under 60,000")


# ---------------------------------------------------------------- price sources, config


def test_liquidation_prices_stand_in_only_without_trades() -> None:
    det = LevelsDetector(cfg())
    # trades at 61,500; a bankruptcy-price liquidation at 55,000 does not move the band
    steps: list[Step] = [trade(T0, 61_500), liq(T0 + SEC, 55_000, 10_000), trade(T0 + 2 * SEC, 61_500)]
    steps += [liq(T0 + 20 * MIN + i * MIN, 59_000, 10_000) for i in range(20)]  # no trades: liquidations rule
    alerts = run(det, steps)
    assert [a.type for a in alerts] == ["level_break"]
    assert alerts[0].ts == T0 + 20 * MIN + 15 * MIN


def test_bases_without_bands_and_other_events_are_ignored() -> None:
    det = LevelsDetector(cfg())
    eth = Trade(venue="binance", symbol="ETHUSDT", instrument="ETH-USDT-PERP", base="ETH", ts=T0, recv_ts=T0,
                side="buy", price=Decimal(3000), qty=Decimal(1), notional_usd=Decimal(3000), trade_id="1")
    o = OpenInterest(venue="binance", symbol="BTCUSDT", instrument="BTC-USDT-PERP", base="BTC", ts=T0, recv_ts=T0,
                     oi_qty=Decimal(1), oi_usd=Decimal(60_000))
    assert det.on_event(eth) == [] and det.on_event(o) == []
    assert [b["name"] for b in det.snapshot()["bases"]] == ["BTC"]


def test_band_validation_and_per_asset_thresholds() -> None:
    with pytest.raises(ValueError, match=r"levels\.bands\.BTC"):
        LevelsDetector(cfg(bands={"BTC": [[61_000, 60_000]]}))
    with pytest.raises(ValueError, match="rearm_pct"):
        LevelsDetector(cfg(assets={"BTC": {"rearm_pct": 0.1}}))
    det = LevelsDetector(cfg(bands={"BTC": [BAND], "SOL": [[200, 210]]}, assets={"SOL": {"acceptance_s": 60}}))
    steps: list[Step] = [trade(T0, 220, base="SOL"), trade(T0 + SEC, 195, base="SOL"),
                         trade(T0 + 61 * SEC, 195, base="SOL")]
    alerts = run(det, steps)
    assert [(a.base, a.type, a.ts) for a in alerts] == [("SOL", "level_break", T0 + SEC + 60 * SEC)]


def test_two_bands_flip_in_time_order_on_one_tick() -> None:
    det = LevelsDetector(cfg(bands={"BTC": [[60_000, 61_000], [58_000, 58_500]]}))
    steps = [*path(T0, [62_000, 59_000]), trade(T0 + MIN, 57_000)]
    run(det, steps)
    alerts = det.on_tick(T0 + HOUR_MS)
    assert [(a.metrics["band_low"], a.ts) for a in alerts] == [(60_000.0, T0 + 10 * SEC + 15 * MIN),
                                                               (58_000.0, T0 + MIN + 15 * MIN)]


HOUR_MS = 3_600_000


# ---------------------------------------------------------------- determinism and snapshots


def mixed_stream() -> list[Step]:
    steps: list[Step] = path(T0, [62_000, 61_000, 60_400])
    steps += path(T0 + MIN, [59_990 if i % 2 == 0 else 60_010 for i in range(200)])
    steps += [liq(T0 + 30 * MIN + i * SEC, 59_900, 100_000 + i) for i in range(20)]
    steps += path(T0 + 40 * MIN, [59_700] * 120)
    steps.append(T0 + 62 * MIN)
    steps += path(T0 + 70 * MIN, [61_300] * 120)
    steps += path(T0 + 100 * MIN, [62_500, 60_900, 61_500, 63_000])
    steps += [T0 + 200 * MIN]
    return sorted(steps, key=lambda s: s if isinstance(s, int) else s.ts)


def test_mixed_stream_fires_the_expected_sequence() -> None:
    alerts = run(LevelsDetector(cfg()), mixed_stream())
    assert [a.type for a in alerts] == ["level_break", "level_reclaimed", "level_defended"]


def test_snapshot_restore_is_equivalent_at_every_cut() -> None:
    steps = mixed_stream()
    reference = [asdict(a) for a in run(LevelsDetector(cfg()), steps)]
    for cut in range(0, len(steps), 13):
        first = LevelsDetector(cfg())
        head = run(first, steps[:cut])
        second = LevelsDetector(cfg(), snapshot=orjson.loads(orjson.dumps(first.snapshot())))
        assert second.snapshot() == first.snapshot()
        assert [asdict(a) for a in head + run(second, steps[cut:])] == reference, f"diverged at step {cut}"


def test_ids_are_deterministic_and_tick_frequency_does_not_matter() -> None:
    steps = mixed_stream()
    a = run(LevelsDetector(cfg()), steps)
    b = run(LevelsDetector(cfg()), steps)
    assert [asdict(x) for x in a] == [asdict(x) for x in b]
    no_ticks = [s for s in steps if not isinstance(s, int)] + [T0 + 200 * MIN]
    per_second = sorted(steps + list(range(T0, T0 + 200 * MIN, SEC)), key=lambda s: s if isinstance(s, int) else s.ts)
    key = [(x.alert_id, x.type, x.ts, x.metrics) for x in a]
    for variant in (no_ticks, per_second):
        assert [(x.alert_id, x.type, x.ts, x.metrics) for x in run(LevelsDetector(cfg()), variant)] == key


def test_restore_keeps_configured_bands_and_starts_new_ones_fresh() -> None:
    first = LevelsDetector(cfg(bands={"BTC": [BAND, [50_000, 51_000]]}))
    run(first, path(T0, [62_000, 60_500]))
    snap = orjson.loads(orjson.dumps(first.snapshot()))
    second = LevelsDetector(cfg(bands={"BTC": [BAND, [70_000, 71_000]]}), snapshot=snap)
    bands = second.snapshot()["bases"][0]["bands"]
    assert [(b[0], b[1], b[2]) for b in bands] == [(60_000.0, 61_000.0, "above"), (70_000.0, 71_000.0, None)]
    with pytest.raises(ValueError, match="version"):
        LevelsDetector(cfg(), snapshot={"version": 7})


def test_registry_builds_it_from_its_config_section() -> None:
    assert DETECTORS["levels"] is LevelsDetector
    config = Config.model_validate({"detectors": {"enabled": ["cascade", "levels"]},
                                     "levels": {"bands": {"BTC": [[1, 2]]}}})
    built = build_detectors(config)
    assert [d.name for d in built] == ["cascade", "levels"]
    detector = built[1]
    assert isinstance(detector, LevelsDetector) and detector.config.bands == {"BTC": [(1.0, 2.0)]}
