"""The detectors' hot-path shortcuts change nothing: cached wake-ups and expiry times, the shared per-event
float conversion, the severity-step shortcut.

The oracle for every cache is the same detector restored from its own snapshot before every step: a restore
drops every derived value (wake-ups, expiry times, emptiness), so that detector recomputes them all the time,
as the code did before the caches. Both must give the same alerts, documents and snapshots on long seeded
streams that cross every threshold (short durations, regimes, skews, flushes, late events, quiet gaps).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import asdict
from decimal import Decimal
from functools import partial
from typing import Any

import orjson

from flushwatch.config import CascadeConfig, ClustersConfig, FundingConfig, OiFlushConfig
from flushwatch.events import Funding, Liquidation, MarketEvent, OpenInterest, TakerSide, Trade
from processors.base import Detector
from processors.cascade import CascadeDetector
from processors.clusters import ClustersDetector
from processors.common import money, price_of
from processors.funding import FundingDetector
from processors.oi_flush import OiFlushDetector

T0 = 1_760_000_000_000
SEC = 1000
MIN = 60_000
INSTRUMENT = {"binance": "{b}-USDT-PERP", "okx": "{b}-USDT-SWAP", "hyperliquid": "{b}-USD-PERP"}


def dec(x: float) -> Decimal:
    return Decimal(repr(round(x, 8)))


def stream(seed: int, n: int, *, oi_share: float = 0.1, funding_share: float = 0.08,
           wild: float = 0.02) -> list[MarketEvent | int]:
    """Seeded events of two bases and three venues, with ticks (ints) at least a second apart: trending
    prices, funding regimes that come and go, OI drops and rebuilds, liquidations of both sides (a few far
    from the market: ``wild``), late events and quiet gaps of up to 15 minutes. Trades and liquidations share
    what OI and funding updates (``oi_share``, ``funding_share``) leave."""
    rng = random.Random(seed)
    price = {"BTC": 100_000.0, "ETH": 3_300.0}
    rate = {"BTC": 0.0, "ETH": 0.0}
    trend = {"BTC": 0.0, "ETH": 0.0}
    oi = {(b, v): rng.uniform(1e8, 5e8) for b in price for v in INSTRUMENT}
    t = last_tick = T0
    out: list[MarketEvent | int] = []
    while len(out) < n:
        t += rng.randint(1, 400) if rng.random() > 0.02 else rng.randint(5 * SEC, 15 * MIN)
        if t - last_tick >= SEC:
            out.append(t)
            last_tick = t
        b = rng.choice(("BTC", "ETH"))
        if rng.random() < 0.003:
            trend[b] = rng.choice((-1, 0, 1)) * rng.uniform(0, 5e-5)
        if rng.random() < 0.005:
            rate[b] = rng.choice((0.0, 0.0, 0.0001, 0.0004, -0.0004, 0.00005, -0.0002))
        price[b] *= 1 + trend[b] + rng.gauss(0, 2e-4)
        v = rng.choice(tuple(INSTRUMENT))
        ts = t - rng.randint(1, 90 * SEC) if rng.random() < 0.01 else t
        head: dict[str, Any] = {"venue": v, "symbol": f"{b}USDT", "instrument": INSTRUMENT[v].format(b=b),
                                "base": b, "ts": ts, "recv_ts": t}
        p = price[b]
        kind = rng.random()
        if kind < (1 - oi_share - funding_share) * 0.85:
            qty = rng.uniform(0.01, 3) * 100_000 / p
            side: TakerSide = "sell" if rng.random() < 0.5 - 2000 * trend[b] else "buy"
            out.append(Trade(**head, side=side, price=dec(p), qty=dec(qty), notional_usd=dec(qty * p),
                             trade_id=str(len(out))))
        elif kind < 1 - oi_share - funding_share:
            qty = rng.uniform(0.05, 5) * 100_000 / p
            lp = p * (1 + rng.uniform(-0.01, 0.01) if rng.random() >= wild else rng.uniform(0.3, 3))
            out.append(Liquidation(**head, side="long" if rng.random() < 0.6 else "short", price=dec(lp),
                                   qty=dec(qty), notional_usd=dec(qty * lp), sampled=rng.random() < 0.5))
        elif kind < 1 - funding_share:
            oi[(b, v)] *= rng.choice((rng.uniform(0.7, 0.95), rng.uniform(1.05, 1.4), 1 + rng.gauss(0, 0.003),
                                      1 + rng.gauss(0, 0.003), 1 + rng.gauss(0, 0.003)))
            usd = oi[(b, v)]
            out.append(OpenInterest(**head, oi_qty=dec(usd / p), oi_usd=None if rng.random() < 0.2 else dec(usd)))
        else:
            hours = 1 if v == "hyperliquid" else 8
            out.append(Funding(**head, rate=dec(rate[b] * hours / 8 + rng.gauss(0, 1e-5)), interval_h=hours,
                               mark_price=None if rng.random() < 0.3 else dec(p)))
    return out


def outputs(det: Detector, step: MarketEvent | int, publish: bool) -> list[Any]:
    if isinstance(step, int):
        out: list[Any] = [asdict(a) for a in det.on_tick(step)]
        if publish and step % 5 == 0:
            out.extend(det.publish(step))
        return out
    return [asdict(a) for a in det.on_event(step)]


def compare_with_restoring(make: Callable[[dict[str, Any] | None], Detector], steps: list[MarketEvent | int],
                           publish: bool = False) -> int:
    """Run ``steps`` through a detector and through one restored from its own snapshot before every step;
    assert identical outputs and snapshots; return how many outputs there were."""
    plain = make(None)
    restoring = make(None)
    total = 0
    for i, step in enumerate(steps):
        restoring = make(orjson.loads(orjson.dumps(restoring.snapshot())))
        a, b = outputs(plain, step, publish), outputs(restoring, step, publish)
        assert a == b, f"diverged at step {i}: {step!r}"
        total += len(a)
    assert plain.snapshot() == restoring.snapshot()
    return total


def test_funding_cached_wake_up_is_the_recomputed_one() -> None:
    config = FundingConfig.model_validate({
        "regime_min_s": 120, "normalize_confirm_s": 60, "regime_timeout_s": 900, "skew_price_pct": 0.3,
        "skew_window_s": 900, "skew_min_s": 20, "stale_after_s": 300, "high_pct_8h": 0.02, "low_pct_8h": 0.005,
        "skew_min_pct_8h": 0.01})
    # and with funding and OI updates minutes apart and no skew possible (so no minute marks): the wake-ups then
    # come from the regime's own deadlines, which only the state machine's changes can move
    sparse = config.model_copy(update={"stale_after_s": 3600, "skew_min_pct_8h": 100.0})
    kinds: set[str] = set()
    for seed, cfg, share in ((1, config, 0.08), (2, config, 0.08), (3, sparse, 0.02), (4, sparse, 0.02)):
        steps = stream(seed, 6_000, oi_share=share, funding_share=share)
        assert compare_with_restoring(partial(FundingDetector, cfg), steps) > 0
        det = FundingDetector(cfg)
        for step in steps:
            kinds |= {a.type for a in (det.on_tick(step) if isinstance(step, int) else det.on_event(step))}
    assert kinds == {"funding_normalized", "funding_skew"}  # the streams reach both state machines


def test_funding_trades_between_funding_updates_do_not_move_its_deadlines() -> None:
    """Deadlines come from the cached wake-up: dense trades at a constant price give the same alerts at the same
    times as ticks alone."""
    config = FundingConfig.model_validate({"regime_min_s": 600, "normalize_confirm_s": 300})
    funding = [Funding(venue="binance", symbol="BTCUSDT", instrument="BTC-USDT-PERP", base="BTC", ts=ts,
                       recv_ts=ts, rate=Decimal("0.0005") if ts < T0 + 20 * MIN else Decimal("0.00005"),
                       interval_h=8, mark_price=Decimal(100_000)) for ts in range(T0, T0 + 40 * MIN, MIN)]
    trades = [Trade(venue="binance", symbol="BTCUSDT", instrument="BTC-USDT-PERP", base="BTC", ts=ts, recv_ts=ts,
                    side="buy", price=Decimal(100_000), qty=Decimal(1), notional_usd=Decimal(100_000),
                    trade_id=str(ts)) for ts in range(T0 + 7, T0 + 40 * MIN, 997)]
    ticks = list(range(T0, T0 + 45 * MIN, 10 * SEC))
    sparse: list[MarketEvent | int] = sorted([*funding, *ticks], key=lambda s: s if isinstance(s, int) else s.ts)
    dense: list[MarketEvent | int] = sorted([*sparse, *trades], key=lambda s: s if isinstance(s, int) else s.ts)
    found = []
    for steps in (sparse, dense):
        det = FundingDetector(config)
        alerts = [a for s in steps for a in (det.on_tick(s) if isinstance(s, int) else det.on_event(s))]
        found.append([(a.alert_id, a.type, a.ts, a.window_start, a.window_end) for a in alerts])
    assert found[0] == found[1]
    assert [f[1] for f in found[0]] == ["funding_normalized"]
    assert found[0][0][2] == T0 + 20 * MIN + 300 * SEC  # exactly normalize_since + normalize_confirm_s


def test_clusters_cached_expiry_is_the_recomputed_one() -> None:
    config = ClustersConfig.model_validate({"windows_s": [300, 3600], "publish_interval_s": 10})
    for seed in (4, 5):
        steps = stream(seed, 6_000, wild=0.2)  # prices far apart: a re-derived bucket width would show
        assert compare_with_restoring(lambda snap: ClustersDetector(config, snap), steps, publish=True) > 0


def test_clusters_totals_are_exactly_the_liquidations_still_inside_each_window() -> None:
    """An independent count: per window and side, the events whose slice is at or after the window's first
    slice at the base's time, however the cached expiry times skipped work in between."""
    windows = [300_000, 3_600_000]
    det = ClustersDetector(ClustersConfig.model_validate({"windows_s": [w / 1000 for w in windows]}))
    seen: list[Liquidation] = []
    now = T0
    for step in stream(6, 8_000):
        if isinstance(step, int):
            det.on_tick(step)
            now = max(now, step)
        elif isinstance(step, Liquidation) and step.base == "BTC":
            det.on_event(step)
            now = max(now, step.ts)
            seen.append(step)
        else:
            continue
        bases = det.snapshot()["bases"]
        if not bases:
            continue
        for w_ms, window in zip(windows, bases[0]["windows"], strict=True):
            slice_ms = max(MIN, w_ms // 60)
            first = (now - w_ms) // slice_ms
            for side in ("long", "short"):
                expected = sum(1 for e in seen if e.side == side and e.ts // slice_ms >= first)
                assert sum(int(c) for _b, _n, c in window[f"{side}_totals"]) == expected


def test_cascade_cached_bucket_roll_is_the_recomputed_one() -> None:
    config = CascadeConfig.model_validate({"min_events": 3, "default_floor_usd": 200_000.0,
                                           "floor_usd": {"BTC": 500_000.0}, "warmup_buckets": 3,
                                           "baseline_buckets": 10, "proxy_venues": ["hyperliquid"],
                                           "severity_steps": [1.0, 1.5, 2.5]})
    assert compare_with_restoring(lambda snap: CascadeDetector(config, snap), stream(7, 8_000)) > 0


def test_oi_flush_matches_its_restored_self() -> None:
    config = OiFlushConfig.model_validate({"window_s": 900, "drop_pct": 5, "hold_s": 300, "rebuild_within_s": 1800,
                                           "stale_after_s": 60, "sample_s": 10, "hold_price_range_pct": 1.0})
    assert compare_with_restoring(lambda snap: OiFlushDetector(config, snap), stream(8, 6_000)) > 0


def test_cascade_escalates_over_several_steps_at_once() -> None:
    """The step shortcut only skips the scan when the next step is not reached; a jump over two steps still
    escalates straight to the top one."""
    det = CascadeDetector(CascadeConfig.model_validate({"min_events": 3, "floor_usd": {"BTC": 100_000.0}}))

    def liq(i: int, notional: int) -> Liquidation:
        return Liquidation(venue="binance", symbol="BTCUSDT", instrument="BTC-USDT-PERP", base="BTC",
                           ts=T0 + i * SEC, recv_ts=T0 + i * SEC, side="long", price=Decimal(100_000),
                           qty=Decimal(1), notional_usd=Decimal(notional))

    alerts = [a for i, n in enumerate([40_000, 40_000, 40_000, 900_000]) for a in det.on_event(liq(i, n))]
    assert [(a.type, a.severity) for a in alerts] == [("cascade_started", "info"), ("cascade_escalated", "critical")]


def test_money_converts_each_event_and_never_mixes_two() -> None:
    def trade(price: str, notional: str) -> Trade:
        return Trade(venue="binance", symbol="BTCUSDT", instrument="BTC-USDT-PERP", base="BTC", ts=T0, recv_ts=T0,
                     side="buy", price=Decimal(price), qty=Decimal(1), notional_usd=Decimal(notional), trade_id="1")

    a, b, a_twin = trade("101.5", "203"), trade("99.25", "7"), trade("101.5", "203")
    assert price_of(a) == 101.5  # nothing cached yet
    assert money(a) == (101.5, 203.0)
    assert price_of(a) == 101.5  # from the cache
    assert money(b) == (99.25, 7.0)
    assert price_of(a) == 101.5  # a is no longer cached: converted again, not b's value
    assert money(a_twin) == (101.5, 203.0)
    assert money(b) == (99.25, 7.0)


def test_funding_skew_starts_at_the_minute_mark_even_right_after_the_first_price() -> None:
    """The price ``skew_window_s`` ago changes at minute marks; with a rate that allows a skew, the first price
    turns those marks into wake-ups, so a skew that starts because the reference moved starts exactly at the mark
    (and not at the next tick), even though no event arrives there."""
    config = FundingConfig.model_validate({"skew_window_s": 120, "skew_min_s": 30, "skew_price_pct": 1.0,
                                           "stale_after_s": 3600})
    start = T0 - T0 % MIN  # a minute boundary

    def trade(ts: int, price: int) -> Trade:
        return Trade(venue="binance", symbol="BTCUSDT", instrument="BTC-USDT-PERP", base="BTC", ts=ts, recv_ts=ts,
                     side="sell", price=Decimal(price) / 10, qty=Decimal(1), notional_usd=Decimal(price),
                     trade_id=str(ts))

    steps: list[MarketEvent | int] = [
        Funding(venue="binance", symbol="BTCUSDT", instrument="BTC-USDT-PERP", base="BTC", ts=start, recv_ts=start,
                rate=Decimal("0.001"), interval_h=8),  # 0.1 %/8h: longs crowded, a skew is possible
        trade(start + SEC, 995),  # the first price (minute 0)
        trade(start + MIN + SEC, 1010),  # minute 1
        trade(start + 2 * MIN + SEC, 999),  # minute 2, the last trade: +0.4 % vs minute 0
        *range(start + 2 * MIN + 13 * SEC, start + 6 * MIN, 10 * SEC),  # ticks 10 s apart, off the marks
    ]
    det = FundingDetector(config)
    alerts = [a for s in steps for a in (det.on_tick(s) if isinstance(s, int) else det.on_event(s))]
    # at the minute-3 mark the reference becomes minute 1 (101.0): 99.9 is -1.09 %, a skew from then on
    assert [(a.type, a.metrics["skew_since_ts"], a.ts) for a in alerts] == [
        ("funding_skew", start + 3 * MIN, start + 3 * MIN + 30 * SEC)]


def _btc_trade(ts: int, price: str) -> Trade:
    return Trade(venue="binance", symbol="BTCUSDT", instrument="BTC-USDT-PERP", base="BTC", ts=ts, recv_ts=ts,
                 side="sell", price=Decimal(price), qty=Decimal(1), notional_usd=Decimal(price), trade_id=str(ts))


def _btc_funding(ts: int, rate: str) -> Funding:
    return Funding(venue="binance", symbol="BTCUSDT", instrument="BTC-USDT-PERP", base="BTC", ts=ts, recv_ts=ts,
                   rate=Decimal(rate), interval_h=8)


def _run_sorted(det: Detector, steps: list[MarketEvent | int]) -> list[Any]:
    steps = sorted(steps, key=lambda s: s if isinstance(s, int) else s.ts)
    return [a for s in steps for a in (det.on_tick(s) if isinstance(s, int) else det.on_event(s))]


def test_funding_skew_started_by_a_trade_fires_at_its_exact_deadline() -> None:
    """A trade that starts a skew adds a deadline (``since + skew_min_s``) earlier than the next minute mark: the
    cached wake-up must give way to it, so the alert comes at the deadline, not at the next tick."""
    config = FundingConfig.model_validate({"skew_window_s": 120, "skew_min_s": 20, "skew_price_pct": 1.0,
                                           "stale_after_s": 3600})
    start = T0 - T0 % MIN
    steps: list[MarketEvent | int] = [
        _btc_funding(start, "0.001"), _btc_trade(start + SEC, "100"), _btc_trade(start + MIN + SEC, "100"),
        _btc_trade(start + 2 * MIN + 24 * SEC, "98.5"),  # -1.5 % vs minute 0: the skew starts here
        *range(start + 2 * MIN + 13 * SEC, start + 4 * MIN, 10 * SEC),  # ticks off the deadline
    ]
    alerts = _run_sorted(FundingDetector(config), steps)
    assert [(a.type, a.metrics["skew_since_ts"], a.ts) for a in alerts] == [
        ("funding_skew", start + 2 * MIN + 24 * SEC, start + 2 * MIN + 44 * SEC)]


def test_funding_regime_entered_on_a_trade_is_confirmed_at_its_exact_deadline() -> None:
    """After a long regime normalizes (at a wake-up), the short side, already beyond ``high``, enters on the
    next evaluation, a trade's: its confirmation deadline must replace the cached wake-up (the regime's peak
    time, which the next alert reports, is that confirmation)."""
    config = FundingConfig.model_validate({"regime_min_s": 120, "normalize_confirm_s": 60, "stale_after_s": 3600,
                                           "skew_min_pct_8h": 100.0})
    start = T0 - T0 % MIN
    steps: list[MarketEvent | int] = [
        _btc_funding(start, "0.001"),  # long regime from start, confirmed at +120 s
        _btc_funding(start + 5 * MIN, "-0.001"),  # back under low (and beyond -high): normalized at +6 min
        *(_btc_trade(ts, "100") for ts in range(start + SEC, start + 20 * MIN, 7_001)),
        _btc_funding(start + 15 * MIN, "0"),  # the short regime normalizes at +16 min
        *range(start + 3 * SEC, start + 20 * MIN, 10 * SEC),  # ticks off the deadlines
    ]
    alerts = _run_sorted(FundingDetector(config), steps)
    assert [a.type for a in alerts] == ["funding_normalized", "funding_normalized"]
    first_trade_after = next(ts for ts in range(start + SEC, start + 20 * MIN, 7_001) if ts > start + 6 * MIN)
    assert alerts[0].ts == start + 6 * MIN
    assert alerts[1].metrics["regime_start_ts"] == first_trade_after
    assert alerts[1].metrics["peak_ts"] == first_trade_after + 120 * SEC  # confirmed exactly at its deadline
