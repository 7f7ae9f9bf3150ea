"""CascadeDetector on plain event lists: no Kafka, no clock, exact expected values."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import orjson
import pytest

from flushwatch.codec import encode_alert
from flushwatch.config import CascadeConfig
from flushwatch.events import Alert, Funding, Liquidation, MarketEvent, OpenInterest, Trade
from processors.cascade import CascadeDetector, format_duration, format_price, format_usd

T0 = 1_737_996_780_000  # 2025-01-27 16:53:00 UTC


def cfg(**kw: Any) -> CascadeConfig:
    return CascadeConfig.model_validate(kw)


def liq(
    ts: int,
    notional: float | str,
    *,
    base: str = "BTC",
    side: str = "long",
    venue: str = "binance",
    price: float | str = 100_000,
    sampled: bool = False,
) -> Liquidation:
    return Liquidation(
        venue=venue,
        symbol=f"{base}USDT",
        instrument=f"{base}-USDT-PERP",
        base=base,
        ts=ts,
        recv_ts=ts + 100,
        side=side,  # type: ignore[arg-type]
        price=Decimal(str(price)),
        qty=Decimal("1"),
        notional_usd=Decimal(str(notional)),
        sampled=sampled,
    )


def trade(
    ts: int, price: float | str, notional: float | str, side: str = "sell", base: str = "BTC", venue: str = "binance"
) -> Trade:
    return Trade(
        venue=venue,
        symbol=base if venue == "hyperliquid" else f"{base}USDT",
        instrument=f"{base}-USDT-PERP",
        base=base,
        ts=ts,
        recv_ts=ts + 50,
        side=side,  # type: ignore[arg-type]
        price=Decimal(str(price)),
        qty=Decimal("1"),
        notional_usd=Decimal(str(notional)),
        trade_id=str(ts),
    )


def feed(det: CascadeDetector, events: list[MarketEvent]) -> list[Alert]:
    out: list[Alert] = []
    for ev in events:
        out.extend(det.on_event(ev))
    return out


def burst(start: int, n: int, notional: float, **kw: Any) -> list[MarketEvent]:
    return [liq(start + i * 1000, notional, **kw) for i in range(n)]


# ---------------------------------------------------------------- start condition


def test_single_whale_is_never_a_cascade() -> None:
    det = CascadeDetector(cfg())
    assert det.on_event(liq(T0, 50_000_000)) == []
    assert det.on_tick(T0 + 600_000) == []


def test_other_event_types_are_ignored() -> None:
    det = CascadeDetector(cfg())
    oi = OpenInterest(venue="binance", symbol="BTCUSDT", instrument="BTC-USDT-PERP", base="BTC", ts=T0,
                      recv_ts=T0, oi_qty=Decimal(1))
    fu = Funding(venue="binance", symbol="BTCUSDT", instrument="BTC-USDT-PERP", base="BTC", ts=T0,
                 recv_ts=T0, rate=Decimal("0.0001"), interval_h=8)
    assert det.on_event(oi) == [] and det.on_event(fu) == []


def test_twelve_liquidations_at_the_floor_start_a_cascade_with_exact_metrics() -> None:
    det = CascadeDetector(cfg())  # BTC floor 150,000, min_events 10
    events: list[MarketEvent] = [trade(T0 - 500, 100_000, 5_000, side="buy")]
    for i in range(12):
        events.append(liq(T0 + i * 1000, 12_500, price=99_950 - 50 * i, sampled=True))
        if i == 3:
            events.append(liq(T0 + 3500, 1_000, side="short", price=100_100))
        if i == 5:
            events.append(trade(T0 + 5500, 99_300, 50_000, side="sell"))
            events.append(trade(T0 + 5600, 99_800, 7_000, side="buy"))
    alerts = feed(det, events)
    assert [a.type for a in alerts] == ["cascade_started"]
    a = alerts[0]
    assert a.base == "BTC" and a.severity == "info" and a.venues == ("binance",)
    assert (a.ts, a.window_start, a.window_end, a.emitted_ts) == (T0 + 11_000, T0, T0 + 11_000, T0 + 11_000)
    m = a.metrics
    assert m["side"] == "long"
    assert m["notional_usd"] == 150_000.0
    assert m["events"] == 12
    assert m["by_venue"] == {"binance": 150_000.0}
    assert m["by_side"] == {"long": 150_000.0, "short": 1_000.0}
    assert m["peak_notional_per_min"] == 150_000.0
    assert m["price_start"] == 100_000.0  # last trade before the first liquidation
    assert m["price_extreme"] == 99_300.0  # the trade low beats the lowest liquidation price (99,400)
    assert m["price_change_pct"] == -0.7
    assert m["taker_sell_usd"] == 50_000.0 and m["taker_buy_usd"] == 7_000.0
    assert m["threshold_usd"] == 150_000.0 and m["window_s"] == 60.0
    assert m["lower_bound"] is True
    assert "duration_s" not in m
    assert a.message == (
        "BTC long liquidation cascade started: at least $150K liquidated in 60 s across binance "
        "(12 events), price -0.7%"
    )
    # the metrics survive the wire codec unchanged
    assert orjson.loads(encode_alert(a))["metrics"]["by_side"] == {"long": 150_000.0, "short": 1_000.0}


def test_price_start_falls_back_to_first_liquidation_price() -> None:
    det = CascadeDetector(cfg(floor_usd={"BTC": 100_000}))
    alerts = feed(det, [liq(T0 + i * 1000, 10_000, price=50_000 - 100 * i) for i in range(10)])
    m = alerts[0].metrics
    assert (m["price_start"], m["price_extreme"], m["price_change_pct"]) == (50_000.0, 49_100.0, -1.8)


def test_below_min_events_or_below_floor_does_not_start() -> None:
    det = CascadeDetector(cfg())
    assert feed(det, burst(T0, 9, 100_000)) == []  # 900 K but only 9 events
    det = CascadeDetector(cfg())
    assert feed(det, burst(T0, 20, 7_000)) == []  # 20 events but 140 K < 150 K
    det = CascadeDetector(cfg())
    # events spread wider than the window never sum up: one per 7 s, the window holds at most 9
    assert feed(det, [liq(T0 + i * 7000, 100_000) for i in range(30)]) == []


def test_cross_venue_sums_are_exact() -> None:
    det = CascadeDetector(cfg(floor_usd={"ETH": 60_000}))
    events: list[MarketEvent] = []
    venues = ["binance", "bybit", "okx"]
    amounts = {"binance": Decimal("7000.25"), "bybit": Decimal("5000.5"), "okx": Decimal("3000.75")}
    for i in range(12):
        v = venues[i % 3]
        events.append(liq(T0 + i * 500, amounts[v], base="ETH", venue=v, price=3000, sampled=v == "binance"))
    alerts = feed(det, events)
    assert [a.type for a in alerts] == ["cascade_started"]
    m = alerts[0].metrics
    assert alerts[0].venues == ("binance", "bybit", "okx")
    assert m["by_venue"] == {"binance": 28_001.0, "bybit": 20_002.0, "okx": 12_003.0}
    assert m["notional_usd"] == 60_006.0 and m["events"] == 12
    assert m["lower_bound"] is True
    assert "across binance, bybit, okx (12 events)" in alerts[0].message


def test_bases_and_sides_are_independent() -> None:
    det = CascadeDetector(cfg(floor_usd={"BTC": 100_000, "ETH": 100_000}))
    events: list[MarketEvent] = []
    for i in range(10):
        events.append(liq(T0 + i * 1000, 6_000, base="BTC"))
        events.append(liq(T0 + i * 1000, 6_000, base="ETH"))
        events.append(liq(T0 + i * 1000, 6_000, base="BTC", side="short"))
    assert feed(det, events) == []  # 60 K each, never 100 K in one (base, side)


# ---------------------------------------------------------------- escalation and end


def test_escalation_steps_once_each() -> None:
    det = CascadeDetector(cfg(floor_usd={"BTC": 100_000}))  # steps 1x / 3x / 10x
    alerts = feed(det, burst(T0, 10, 10_000))
    assert [(a.type, a.severity) for a in alerts] == [("cascade_started", "info")]
    alerts = feed(det, [liq(T0 + 10_000, 200_000)])  # window 300 K = 3x
    assert [(a.type, a.severity) for a in alerts] == [("cascade_escalated", "warning")]
    assert alerts[0].message.startswith("BTC long liquidation cascade escalated to warning: $300K liquidated")
    assert feed(det, [liq(T0 + 11_000, 10_000), liq(T0 + 12_000, 10_000)]) == []
    alerts = feed(det, [liq(T0 + 13_000, 680_000)])  # 1.01 M = 10.1x
    assert [(a.type, a.severity) for a in alerts] == [("cascade_escalated", "critical")]
    assert feed(det, [liq(T0 + 14_000, 5_000_000)]) == []  # already critical: no repeat
    ended = det.on_tick(T0 + 10_000_000)
    assert [(a.type, a.severity) for a in ended] == [("cascade_ended", "critical")]
    assert ended[0].metrics["notional_usd"] == 100_000 + 200_000 + 20_000 + 680_000 + 5_000_000


def test_jump_straight_to_critical_starts_critical_with_no_escalation() -> None:
    det = CascadeDetector(cfg(floor_usd={"BTC": 100_000}))
    alerts = feed(det, [*burst(T0, 9, 1_000), liq(T0 + 9000, 1_200_000)])
    assert [(a.type, a.severity) for a in alerts] == [("cascade_started", "critical")]


def test_quiet_market_ends_the_episode_on_tick_alone_and_not_before() -> None:
    det = CascadeDetector(cfg(floor_usd={"BTC": 100_000}))  # end level 25 K, quiet 60 s
    started = feed(det, burst(T0, 10, 10_000))
    assert len(started) == 1
    # the 8th event (ts T0+7000) leaves the window at T0+67000 taking it to 20 K < 25 K: quiet from then
    for now in range(T0 + 10_000, T0 + 127_000, 1000):
        assert det.on_tick(now) == []
    assert det.on_tick(T0 + 126_999) == []
    ended = det.on_tick(T0 + 127_000)
    assert [a.type for a in ended] == ["cascade_ended"]
    e = ended[0]
    assert (e.ts, e.window_start, e.window_end, e.emitted_ts) == (T0 + 127_000, T0, T0 + 127_000, T0 + 127_000)
    assert e.metrics["duration_s"] == 9.0
    assert e.metrics["notional_usd"] == 100_000.0
    assert e.message == (
        "BTC long liquidation cascade ended after 9 s: $100K total across binance (10 events), "
        "peak $100K/min, price +0.0% (low 100,000)"
    )
    assert det.on_tick(T0 + 200_000) == []  # ended once


def test_end_time_does_not_depend_on_tick_cadence() -> None:
    det = CascadeDetector(cfg(floor_usd={"BTC": 100_000}))
    feed(det, burst(T0, 10, 10_000))
    ended = det.on_tick(T0 + 500_000)  # one late tick: same end time, later emission
    assert (ended[0].ts, ended[0].window_end, ended[0].emitted_ts) == (T0 + 127_000, T0 + 127_000, T0 + 500_000)


def test_renewed_activity_keeps_the_episode_open() -> None:
    det = CascadeDetector(cfg(floor_usd={"BTC": 100_000}))
    feed(det, burst(T0, 10, 10_000))
    # before the quiet period completes, a fresh 30 K (>= 25 K end level) arrives at T0+100 s
    assert det.on_tick(T0 + 100_000) == []
    assert feed(det, [liq(T0 + 100_000, 30_000)]) == []
    assert det.on_tick(T0 + 127_000) == []
    ended = det.on_tick(T0 + 220_000)  # 30 K leaves at T0+160 s, quiet until T0+220 s
    assert [(a.type, a.ts) for a in ended] == [("cascade_ended", T0 + 220_000)]
    assert ended[0].metrics["events"] == 11 and ended[0].metrics["duration_s"] == 100.0


def test_events_after_the_end_time_end_the_episode_first() -> None:
    det = CascadeDetector(cfg(floor_usd={"BTC": 100_000}))
    feed(det, burst(T0, 10, 10_000))
    # no tick at all: a later liquidation of the same base ends the old episode before counting
    alerts = feed(det, [liq(T0 + 300_000, 1_000)])
    assert [(a.type, a.ts, a.metrics["events"]) for a in alerts] == [("cascade_ended", T0 + 127_000, 10)]


def test_short_squeeze_side() -> None:
    det = CascadeDetector(cfg(floor_usd={"SOL": 50_000}))
    events: list[MarketEvent] = [trade(T0 - 1000, 200, 1_000, side="buy", base="SOL")]
    events += [liq(T0 + i * 1000, 5_000, base="SOL", side="short", price=201 + i) for i in range(10)]
    events.append(trade(T0 + 9500, 212, 40_000, side="buy", base="SOL"))
    alerts = feed(det, events)
    assert [(a.type, a.metrics["side"]) for a in alerts] == [("cascade_started", "short")]
    assert alerts[0].metrics["price_extreme"] == 210.0 and alerts[0].metrics["price_change_pct"] == 5.0
    ended = det.on_tick(T0 + 1_000_000)
    m = ended[0].metrics
    assert (m["price_start"], m["price_extreme"], m["price_change_pct"]) == (200.0, 212.0, 6.0)
    assert m["taker_buy_usd"] == 40_000.0 and m["by_side"] == {"long": 0.0, "short": 50_000.0}
    assert ended[0].message.startswith("SOL short liquidation cascade ended after 9 s: $50K total")
    assert ended[0].message.endswith("price +6.0% (high 212.00)")


# ---------------------------------------------------------------- ids


def test_alert_ids_are_deterministic_per_episode_and_stage() -> None:
    def run(start: int) -> list[Alert]:
        det = CascadeDetector(cfg(floor_usd={"BTC": 100_000}))
        return [*feed(det, [*burst(start, 10, 10_000), liq(start + 10_000, 300_000)]),
                *det.on_tick(start + 1_000_000)]

    first, second, other = run(T0), run(T0), run(T0 + 3_600_000)
    assert [a.type for a in first] == ["cascade_started", "cascade_escalated", "cascade_ended"]
    assert [a.alert_id for a in first] == [a.alert_id for a in second]
    assert len({a.alert_id for a in first}) == 3
    assert all(len(a.alert_id) == 32 for a in first)
    assert {a.metrics["episode_id"] for a in first} == {first[0].metrics["episode_id"]}
    assert not {a.alert_id for a in first} & {a.alert_id for a in other}
    assert [encode_alert(a) for a in first] == [encode_alert(a) for a in second]


# ---------------------------------------------------------------- baseline


def steady(det: CascadeDetector, minutes: int, per_minute: int, notional: float, start: int) -> list[Alert]:
    out: list[Alert] = []
    for minute in range(minutes):
        for k in range(per_minute):
            out += det.on_event(liq(start + minute * 60_000 + k * (60_000 // per_minute), notional))
        out += det.on_tick(start + (minute + 1) * 60_000)
    return out


def test_baseline_after_warmup_raises_the_threshold() -> None:
    config = cfg(floor_usd={"BTC": 100_000}, warmup_buckets=5, baseline_buckets=10)
    start = (T0 // 60_000) * 60_000
    cold = CascadeDetector(config)
    assert [a.type for a in feed(cold, burst(start + 600_000, 12, 10_000))] == ["cascade_started"]

    warm = CascadeDetector(config)
    # 25 K per minute in 5 events: never a cascade itself, but the baseline becomes 25 K -> 200 K
    assert steady(warm, 10, 5, 5_000, start) == []
    assert warm.threshold("BTC", "long") == 200_000.0
    assert feed(warm, burst(start + 600_000, 12, 10_000)) == []
    assert warm.threshold("BTC", "short") == 100_000.0  # the other side has its own baseline


def test_a_previous_cascade_does_not_hide_the_next_one() -> None:
    config = cfg(floor_usd={"BTC": 100_000}, warmup_buckets=5, baseline_buckets=20)
    start = (T0 // 60_000) * 60_000
    det = CascadeDetector(config)
    assert steady(det, 20, 1, 1_000, start) == []
    # a three-minute 1 M/min flush: a mean of the last 20 buckets would be ~150 K -> 1.2 M threshold
    t = start + 20 * 60_000
    first = feed(det, [liq(t + i * 3000, 50_000) for i in range(60)])
    assert [a.type for a in first][:1] == ["cascade_started"]
    ended = det.on_tick(t + 400_000)
    assert [a.type for a in ended] == ["cascade_ended"]
    assert steady(det, 5, 1, 1_000, t + 420_000) == []
    assert det.threshold("BTC", "long") == 100_000.0  # the median still sits at the quiet level
    second = feed(det, burst(t + 720_000, 12, 10_000))
    assert [a.type for a in second] == ["cascade_started"]
    assert second[0].metrics["episode_id"] != first[0].metrics["episode_id"]


def test_threshold_is_frozen_during_an_episode() -> None:
    config = cfg(floor_usd={"BTC": 100_000}, warmup_buckets=1, baseline_buckets=5, baseline_multiplier=1)
    det = CascadeDetector(config)
    start = (T0 // 60_000) * 60_000
    alerts = feed(det, [liq(start + i * 500, 20_000) for i in range(400)])  # 2.4 M/min for 200 s
    assert [a.type for a in alerts] == ["cascade_started", "cascade_escalated", "cascade_escalated"]
    assert {a.metrics["threshold_usd"] for a in alerts} == {100_000.0}


# ---------------------------------------------------------------- time and state


def test_late_events_are_folded_in_or_counted() -> None:
    det = CascadeDetector(cfg(floor_usd={"BTC": 100_000}))
    det.on_tick(T0 + 60_000)
    assert feed(det, [liq(T0 + 30_000, 10_000)]) == []  # 30 s late: still inside the window
    assert det.late_events == 0
    assert feed(det, [liq(T0 - 1, 10_000), liq(T0, 10_000)]) == []  # 60 s or more late: counted
    assert det.late_events == 2
    # out of order but inside the window: folded in at its place, and it counts toward a start
    alerts = feed(det, [liq(T0 + 40_000 + i * 1000, 10_000) for i in range(8, -1, -1)])
    assert [a.type for a in alerts] == ["cascade_started"]
    assert alerts[0].window_start == T0 + 30_000 and alerts[0].metrics["events"] == 10
    det.on_tick(T0 - 5_000_000)  # a tick backwards is ignored, never crashes
    assert det.snapshot()["now"] == T0 + 60_000


def random_stream(seed: int, n: int) -> list[tuple[str, Any]]:
    """Bases, sides, venues, trades, bursts and ticks, interleaved and slightly out of order."""
    rng = random.Random(seed)
    items: list[tuple[str, Any]] = []
    t = T0
    for i in range(n):
        t += rng.randint(0, 900)
        if i % 400 == 0:
            items.append(("tick", t + rng.randint(0, 500)))
        base = rng.choice(["BTC", "ETH", "DOGE", "PEPE"])
        r = rng.random()
        if r < 0.6:
            items.append(("ev", trade(t, 100 + rng.random(), rng.randint(10, 50_000), rng.choice(["buy", "sell"]),
                                      base=base)))
        else:
            hot = (i // 1000) % 3 == 1
            amount = rng.randint(1_000, 90_000 if hot else 8_000)
            lag = 70_000 if rng.random() < 0.01 else rng.randint(0, 3000)
            items.append(("ev", liq(t - lag, f"{amount}.{rng.randint(0, 99):02d}", base=base,
                                    side="long" if hot or rng.random() < 0.5 else "short",
                                    venue=rng.choice(["binance", "bybit", "okx"]), price=100 + rng.random(),
                                    sampled=rng.random() < 0.5)))
    items.append(("tick", t + 3_600_000))
    return items


def run_items(det: CascadeDetector, items: list[tuple[str, Any]]) -> list[bytes]:
    out: list[Alert] = []
    for kind, value in items:
        out += det.on_tick(value) if kind == "tick" else det.on_event(value)
    return [encode_alert(a) for a in out]


def test_snapshot_restore_mid_stream_gives_exactly_the_same_alerts() -> None:
    config = cfg(warmup_buckets=3, baseline_buckets=5, floor_usd={"PEPE": 60_000})
    items = random_stream(7, 12_000)
    full = run_items(CascadeDetector(config), items)
    types = {orjson.loads(a)["type"] for a in full}
    assert types == {"cascade_started", "cascade_escalated", "cascade_ended"}
    reference = CascadeDetector(config)
    run_items(reference, items)
    assert reference.late_events > 0
    for cut in (1, 2_500, 4_321, 6_000, 9_999):
        det = CascadeDetector(config)
        head = run_items(det, items[:cut])
        state = orjson.loads(orjson.dumps(det.snapshot()))  # must survive JSON
        restored = CascadeDetector(config, snapshot=state)
        assert restored.snapshot() == state
        assert head + run_items(restored, items[cut:]) == full, f"diverged after a restore at {cut}"


def test_restore_rejects_a_snapshot_from_another_window() -> None:
    det = CascadeDetector(cfg())
    det.on_event(liq(T0, 1_000))
    with pytest.raises(ValueError, match="window"):
        CascadeDetector(cfg(window_s=10), snapshot=det.snapshot())


def test_bad_severity_steps_are_rejected() -> None:
    with pytest.raises(ValueError, match="increasing"):
        CascadeDetector(cfg(severity_steps=[1, 3, 2]))
    with pytest.raises(ValueError, match="1 to 3"):
        CascadeDetector(cfg(severity_steps=[1, 2, 3, 4]))


def test_floors_builtin_and_overrides() -> None:
    det = CascadeDetector(cfg())
    assert (det.floor("BTC"), det.floor("ETH"), det.floor("DOGE"), det.floor("WIF")) == (
        150_000.0, 100_000.0, 40_000.0, 30_000.0)
    det = CascadeDetector(cfg(floor_usd={"BTC": 1_000}, default_floor_usd=5_000))
    assert (det.floor("BTC"), det.floor("ETH"), det.floor("WIF")) == (1_000.0, 100_000.0, 5_000.0)


def test_formatting() -> None:
    assert [format_usd(x) for x in (950, 8_460, 850_000, 999_990, 2_400_000, 1.2e9)] == [
        "$950", "$8.5K", "$850K", "$1M", "$2.4M", "$1.2B"]
    assert [format_duration(s) for s in (45, 60, 250, 3900)] == ["45 s", "1 min", "4 min 10 s", "1 h 5 min"]
    assert [format_price(p) for p in (101_230.4, 212, 0.16815, 0.0000123456)] == [
        "101,230", "212.00", "0.16815", "0.000012346"]


# ---------------------------------------------------------------- per-base time


def two_partition_scenario() -> tuple[list[MarketEvent], list[MarketEvent]]:
    """ETH longs flush at T0..T0+40 s, XRP longs at T0+600 s; each base with its own trades."""
    eth: list[MarketEvent] = [trade(T0 - 2000 + k * 5000, 3300 - k, 20_000, base="ETH") for k in range(80)]
    eth += [liq(T0 + i * 2500, 9_000, base="ETH", price=3290 - 2 * i) for i in range(15)]
    eth += [liq(T0 + 40_000, 250_000, base="ETH", price=3250), liq(T0 + 20_500, 2_000, base="ETH", side="short")]
    xrp: list[MarketEvent] = [trade(T0 + 595_000 + k * 5000, 3.1, 5_000, base="XRP") for k in range(60)]
    xrp += [liq(T0 + 600_000 + i * 1000, 4_000, base="XRP", price=3.09 - 0.001 * i) for i in range(14)]
    return sorted(eth, key=lambda e: e.ts), sorted(xrp, key=lambda e: e.ts)


def test_alerts_do_not_depend_on_how_partitions_of_different_bases_interleave() -> None:
    eth, xrp = two_partition_scenario()
    last = max(e.ts for e in eth + xrp)
    orders = {
        "merged": sorted(eth + xrp, key=lambda e: e.ts),
        "xrp partition first": xrp + eth,  # a backlog: one partition read to its end before the other
        "eth partition first": eth + xrp,
    }
    results: dict[str, list[bytes]] = {}
    for name, events in orders.items():
        det = CascadeDetector(cfg())
        alerts = feed(det, events) + det.on_tick(last + 200_000)
        assert det.late_events == 0, name
        results[name] = sorted(encode_alert(a) for a in alerts)
        kinds = sorted((a.base, a.type, a.severity) for a in alerts)
        assert kinds == [
            ("ETH", "cascade_ended", "warning"), ("ETH", "cascade_escalated", "warning"),
            ("ETH", "cascade_started", "info"),
            ("XRP", "cascade_ended", "info"), ("XRP", "cascade_started", "info"),
        ], name
    assert results["xrp partition first"] == results["merged"]
    assert results["eth partition first"] == results["merged"]


def test_any_interleaving_of_per_base_streams_gives_the_same_alerts() -> None:
    config = cfg(warmup_buckets=3, baseline_buckets=5, floor_usd={"PEPE": 60_000})
    events: list[MarketEvent] = [v for kind, v in random_stream(11, 12_000) if kind == "ev"]
    final = max(e.ts for e in events) + 3_600_000

    def run(stream: list[MarketEvent]) -> tuple[list[bytes], int]:
        det = CascadeDetector(config)
        out = feed(det, stream) + det.on_tick(final)
        return sorted(encode_alert(a) for a in out), det.late_events

    reference, late = run(events)
    assert {orjson.loads(a)["type"] for a in reference} == {"cascade_started", "cascade_escalated",
                                                            "cascade_ended"}
    by_base: dict[str, list[MarketEvent]] = {}
    for ev in events:
        by_base.setdefault(ev.base, []).append(ev)
    # each base's own order is kept; bases come one after the other, or shuffled together at random
    grouped = [ev for base in sorted(by_base, reverse=True) for ev in by_base[base]]
    rng = random.Random(3)
    queues = {base: list(reversed(evs)) for base, evs in by_base.items()}
    shuffled: list[MarketEvent] = []
    while queues:
        base = rng.choice(sorted(queues))
        shuffled.append(queues[base].pop())
        if not queues[base]:
            del queues[base]
    assert run(grouped) == (reference, late)
    assert run(shuffled) == (reference, late)


def test_a_tick_moves_every_base_forward_and_late_events_stay_late() -> None:
    det = CascadeDetector(cfg())
    det.on_event(liq(T0, 1_000, base="ETH"))  # ETH is known before the tick, SOL is not
    assert det.on_tick(T0 + 300_000) == []
    # the tick moved every base, including one first seen after it: T0+240 s is a full window behind
    assert feed(det, [liq(T0 + 240_000, 1_000, base="ETH"), liq(T0 + 240_000, 1_000, base="SOL")]) == []
    assert det.late_events == 2
    assert feed(det, [liq(T0 + 240_001, 1_000, base="ETH"), liq(T0 + 240_001, 1_000, base="SOL")]) == []
    assert det.late_events == 2
    assert det.on_tick(T0 + 100_000) == []  # backwards: ignored
    assert feed(det, [liq(T0 + 200_000, 1_000, base="ETH")]) == []
    assert det.late_events == 3
    assert det.snapshot()["now"] == T0 + 300_000


def test_events_of_one_base_never_move_another_base() -> None:
    det = CascadeDetector(cfg(floor_usd={"BTC": 100_000}))
    assert [a.type for a in feed(det, burst(T0, 10, 10_000))] == ["cascade_started"]
    # an hour of ETH later, BTC's episode is still open and BTC's own next event is not late
    far = T0 + 3_600_000
    assert feed(det, [liq(far, 1_000, base="ETH"), trade(far + 1000, 3000, 1_000, base="ETH")]) == []
    assert feed(det, [liq(T0 + 11_000, 10_000)]) == []
    assert det.late_events == 0
    # the 9th event (T0+8 s) leaves at T0+68 s taking the window to 20 K < 25 K: the end is T0+128 s
    ended = det.on_tick(far)
    assert [(a.type, a.ts, a.emitted_ts, a.metrics["events"]) for a in ended] == [
        ("cascade_ended", T0 + 128_000, far, 11)]


def test_restore_accepts_a_snapshot_from_the_single_clock_layout() -> None:
    det = CascadeDetector(cfg(floor_usd={"BTC": 100_000}))
    feed(det, [*burst(T0, 10, 10_000), trade(T0 + 9_500, 99_000, 1_000)])
    expected = [encode_alert(a) for a in det.on_tick(T0 + 1_000_000)]
    det = CascadeDetector(cfg(floor_usd={"BTC": 100_000}))
    feed(det, [*burst(T0, 10, 10_000), trade(T0 + 9_500, 99_000, 1_000)])
    state = det.snapshot()
    old = {**state, "now": T0 + 9_500, "sweep_sec": (T0 + 9_500) // 1000,
           "bases": [entry[:3] for entry in state["bases"]]}
    restored = CascadeDetector(cfg(floor_usd={"BTC": 100_000}), snapshot=old)
    assert restored.snapshot()["bases"][0][3:5] == [T0 + 9_500, (T0 + 9_500) // 1000]
    assert [encode_alert(a) for a in restored.on_tick(T0 + 1_000_000)] == expected


# ---------------------------------------------------------------- corroboration (trades and price)

M0 = (T0 // 60_000) * 60_000  # minute-aligned, so the taker baseline buckets are whole minutes
B = M0 + 300_000  # the burst starts after five warm-up minutes
CORR: dict[str, Any] = {"warmup_buckets": 3, "baseline_buckets": 5}


def warm_trades(start: int = M0, minutes: int = 5, base: str = "BTC", price: float = 100_000) -> list[MarketEvent]:
    """A taker sell and a taker buy of 10 K every 5 s: the taker baselines become 120 K per minute."""
    out: list[MarketEvent] = []
    for k in range(minutes * 12):
        ts = start + k * 5000
        out += [trade(ts, price, 10_000, "sell", base), trade(ts + 1, price, 10_000, "buy", base)]
    return out


def sampled_burst(n: int = 12, notional: float = 8_000, trades: float | None = 50_000,
                  step: float = 100) -> list[MarketEvent]:
    """n sampled long liquidations, one per second from B; with ``trades``, a taker sell of that size half a
    second after each, the price falling ``step`` per second from 100,000."""
    out: list[MarketEvent] = []
    for i in range(n):
        out.append(liq(B + i * 1000, notional, price=99_900 - 100 * i, sampled=True))
        if trades is not None:
            out.append(trade(B + i * 1000 + 500, 100_000 - step * (i + 1), trades, "sell"))
    return out


def test_sampled_burst_below_threshold_corroborated_by_taker_sells_and_price_starts() -> None:
    det = CascadeDetector(cfg(**CORR))  # BTC floor 150 K, corroborated_fraction 0.5 -> 75 K
    assert feed(det, warm_trades()) == []
    alerts = feed(det, sampled_burst())
    assert [(a.type, a.severity) for a in alerts] == [("cascade_started", "info")]
    a = alerts[0]
    assert a.ts == B + 9000  # the 10th liquidation: 80 K >= 75 K and min_events
    m = a.metrics
    assert (m["notional_usd"], m["events"], m["threshold_usd"]) == (80_000.0, 10, 150_000.0)
    assert m["trigger"] == "corroborated" and m["corroborated"] is True
    # window taker sells: 10 warm-up sells (100 K) + 9 burst sells (450 K), baseline 120 K per minute
    assert m["taker_burst_ratio"] == round(550_000 / 120_000, 2) == 4.58
    assert m["price_impact_pct"] == 0.9  # 100,000 -> trade low 99,100
    assert m["taker_sell_usd"] == 450_000.0 and m["price_change_pct"] == -1.0  # liquidation price 99,000
    assert m["estimated"] is False and "estimated_usd" not in m
    assert a.message == (
        "BTC long liquidation cascade started: at least $80K liquidated in 60 s across binance (10 events), "
        "price -1.0%; below the $150K threshold but corroborated by taker sells at 4.6x baseline and a 0.9% "
        "price drop"
    )
    ended = det.on_tick(B + 1_000_000)
    assert [a.type for a in ended] == ["cascade_ended"]
    assert ended[0].metrics["notional_usd"] == 96_000.0 and ended[0].metrics["trigger"] == "corroborated"


def test_the_same_burst_without_trades_starts_nothing() -> None:
    det = CascadeDetector(cfg(**CORR))
    assert feed(det, sampled_burst(trades=None)) == []  # no trades at all: no baseline, no corroboration
    assert det.corroboration("BTC", "long") == (None, 0.0)
    assert det.on_tick(B + 1_000_000) == []
    det = CascadeDetector(cfg(**CORR))
    # a market that trades as usual: 90 K of sells in the window is 0.75x the baseline, price flat
    assert feed(det, [*warm_trades(), *sampled_burst(trades=None)]) == []
    assert det.corroboration("BTC", "long") == (0.75, 0.0)


@pytest.mark.parametrize(
    ("trades", "step", "why"),
    [(2_000, 100, "price fell 1.2 % but taker sells stayed at the baseline"),
     (50_000, 0, "taker sells burst but the price did not move")],
)
def test_corroboration_needs_both_the_taker_burst_and_the_price_impact(trades: float, step: float, why: str) -> None:
    det = CascadeDetector(cfg(**CORR))
    assert feed(det, [*warm_trades(), *sampled_burst(trades=trades, step=step)]) == [], why


def test_a_volume_spike_and_price_drop_without_liquidations_is_no_cascade() -> None:
    det = CascadeDetector(cfg(**CORR))
    spike = [trade(B + i * 1000, 100_000 - 300 * i, 500_000, "sell") for i in range(30)]  # 15 M, -8.7 %
    assert feed(det, [*warm_trades(), *spike]) == []
    assert feed(det, [liq(B + 30_000 + i * 1000, 8_000, sampled=True) for i in range(9)]) == []  # < min_events
    assert det.on_tick(B + 1_000_000) == []


def test_strong_corroboration_raises_the_severity_one_step() -> None:
    det = CascadeDetector(cfg(**CORR))
    alerts = feed(det, [*warm_trades(), *sampled_burst(trades=150_000, step=300)])
    assert [(a.type, a.severity) for a in alerts] == [("cascade_started", "warning")]
    m = alerts[0].metrics
    # 100 K + 9 x 150 K of sells = 12.1x the baseline, 100,000 -> 97,300 = 2.7 %
    assert (m["taker_burst_ratio"], m["price_impact_pct"], m["trigger"]) == (12.08, 2.7, "corroborated")
    # corroboration off: the same burst is below the threshold and nothing starts
    det = CascadeDetector(cfg(**CORR, corroborated_fraction=1.0))
    assert feed(det, [*warm_trades(), *sampled_burst(trades=150_000, step=300)]) == []


def test_corroboration_is_measured_again_at_each_severity_step() -> None:
    det = CascadeDetector(cfg(**CORR))
    feed(det, warm_trades())
    started = feed(det, [liq(B + i * 1000, 15_000) for i in range(10)])  # 150 K: a threshold start
    assert [(a.type, a.severity) for a in started] == [("cascade_started", "info")]
    m = started[0].metrics
    assert (m["trigger"], m["corroborated"], m["taker_burst_ratio"], m["price_impact_pct"]) == (
        "threshold", False, 0.83, 0.0)
    # then taker sells of 1.4 M take the price 2.5 % down, and a 300 K liquidation takes the window to 3x
    feed(det, [trade(B + 9500 + k, 100_000 - 500 * (k + 1), 200_000, "sell") for k in range(5)])
    feed(det, [trade(B + 9600 + k, 97_500, 200_000, "sell") for k in range(2)])
    alerts = feed(det, [liq(B + 10_000, 300_000)])
    assert [(a.type, a.severity) for a in alerts] == [("cascade_escalated", "critical")]  # warning + 1
    m = alerts[0].metrics
    assert m["corroborated"] is True and m["trigger"] == "threshold"
    assert (m["taker_burst_ratio"], m["price_impact_pct"]) == (round(1_490_000 / 120_000, 2), 2.5)


def test_short_squeeze_corroboration_uses_taker_buys_and_the_high() -> None:
    det = CascadeDetector(cfg(**CORR, floor_usd={"SOL": 40_000}))
    feed(det, warm_trades(base="SOL", price=200))
    events: list[MarketEvent] = []
    for i in range(10):
        events.append(liq(B + i * 1000, 2_500, base="SOL", side="short", price=200 + i, sampled=True))
        events.append(trade(B + i * 1000 + 500, 200 + 0.5 * (i + 1), 60_000, "buy", base="SOL"))
    alerts = feed(det, events)
    assert [(a.type, a.metrics["side"], a.metrics["trigger"]) for a in alerts] == [
        ("cascade_started", "short", "corroborated")]
    m = alerts[0].metrics
    # window buys: 10 warm-up (100 K) + 9 x 60 K; the high 204.5 is 2.25 % above 200
    assert (m["taker_burst_ratio"], m["price_impact_pct"]) == (round(640_000 / 120_000, 2), 2.25)
    assert alerts[0].severity == "info" and "taker buys at 5.3x baseline and a 2.2% price rise" in alerts[0].message


# ---------------------------------------------------------------- venues without a liquidation feed


def oi(ts: int, qty: float | str, price: float | str, venue: str = "hyperliquid", base: str = "BTC") -> OpenInterest:
    q = Decimal(str(qty))
    return OpenInterest(venue=venue, symbol=base, instrument=f"{base}-USDC-PERP", base=base, ts=ts, recv_ts=ts,
                        oi_qty=q, oi_usd=q * Decimal(str(price)))


def hl(ts: int, notional: float, side: str, price: float = 100_000) -> Trade:
    return trade(ts, price, notional, side, venue="hyperliquid")


def test_hyperliquid_oi_drop_with_taker_sells_adds_an_estimate_to_the_episode() -> None:
    det = CascadeDetector(cfg())
    events: list[MarketEvent] = [
        oi(T0 - 2000, 1000, 100_000),
        hl(T0 - 1000, 300_000, "sell"),
        hl(T0 + 500, 50_000, "buy"),
        # 2 BTC less OI at 100,000 = 200 K, net taker sells 250 K: estimate 200 K of longs
        oi(T0 + 1000, 998, 100_000),
        *[liq(T0 + i * 1000, 12_500) for i in range(1, 13)],  # 150 K of real liquidations (binance)
    ]
    alerts = feed(det, sorted(events, key=lambda e: e.ts))
    assert [a.type for a in alerts] == ["cascade_started"]
    a = alerts[0]
    assert a.ts == T0 + 12_000  # the estimate did not start it early: the 12th real liquidation did
    assert a.venues == ("binance", "hyperliquid")
    m = a.metrics
    assert m["by_venue"] == {"binance": 150_000.0, "hyperliquid~est": 200_000.0}
    assert (m["notional_usd"], m["events"], m["estimated_usd"], m["estimated"]) == (350_000.0, 12, 200_000.0, True)
    assert a.window_start == T0 + 1000  # the estimate is the oldest entry of the window
    assert "(12 events), incl. ~$200K estimated from hyperliquid trades and OI" in a.message
    # during the episode: 100 K net sells, OI -0.5 BTC at 98,000 = 49 K
    feed(det, [hl(T0 + 13_000, 100_000, "sell", 98_000), oi(T0 + 14_000, 997.5, 98_000)])
    ended = det.on_tick(T0 + 1_000_000)
    m = ended[0].metrics
    assert m["by_venue"] == {"binance": 150_000.0, "hyperliquid~est": 249_000.0}
    assert (m["notional_usd"], m["estimated_usd"], m["events"]) == (399_000.0, 249_000.0, 12)
    assert ended[0].message.startswith(
        "BTC long liquidation cascade ended after 11 s: $399K total across binance, hyperliquid (12 events), "
        "incl. ~$249K estimated from hyperliquid trades and OI")


def window_labels(det: CascadeDetector) -> dict[tuple[str, str], list[tuple[str, float]]]:
    return {(t["base"], t["side"]): [(e[2], e[1]) for e in t["window"]] for t in det.snapshot()["tracks"]}


def test_estimates_follow_the_net_taker_direction_and_only_real_oi_drops() -> None:
    det = CascadeDetector(cfg())
    feed(det, [
        oi(T0, 1000, 100_000),
        hl(T0 + 100, 10_000, "sell"), hl(T0 + 200, 40_000, "buy"),
        oi(T0 + 1000, 999, 100_000),  # -1 BTC, net buys 30 K: 30 K of shorts
        hl(T0 + 1100, 500_000, "sell"),
        oi(T0 + 2000, 999, 90_000),  # price fell, OI in contracts did not: nothing
        hl(T0 + 2100, 500_000, "sell"),
        oi(T0 + 3000, 1005, 90_000),  # OI rose: nothing
        hl(T0 + 3100, 50_000, "sell"), hl(T0 + 3200, 50_000, "buy"),
        oi(T0 + 4000, 1000, 90_000),  # balanced flow: nothing
        hl(T0 + 4100, 80_000, "sell"),
        oi(T0 + 70_000, 990, 90_000),  # a 66 s gap is longer than the window: nothing
        hl(T0 + 70_100, 80_000, "sell"),
        oi(T0 + 71_000, 989, 90_000, venue="binance"),  # not a proxy venue: ignored
        oi(T0 + 72_000, 990.5, 90_000),  # OI rose again
    ])
    assert window_labels(det) == {("BTC", "short"): [("hyperliquid~est", 30_000.0)]}
    assert det.late_events == 0


def test_an_estimate_alone_never_starts_an_episode_unless_configured() -> None:
    events: list[MarketEvent] = [oi(T0, 1000, 100_000)]
    for i in range(1, 31):  # every second: 200 K of taker sells and 1 BTC less OI -> a 100 K estimate
        events += [hl(T0 + i * 1000 - 500, 200_000, "sell"), oi(T0 + i * 1000, 1000 - i, 100_000)]
    det = CascadeDetector(cfg())
    assert feed(det, events) == [] and det.on_tick(T0 + 1_000_000) == []
    assert sum(x for _, x in window_labels(det)[("BTC", "long")]) == 3_000_000.0  # seen, 3 M, never started

    det = CascadeDetector(cfg(proxy_can_start=True))
    alerts = feed(det, events)
    assert [(a.type, a.ts) for a in alerts][:1] == [("cascade_started", T0 + 10_000)]  # 10 estimates, 1 M
    m = alerts[0].metrics
    assert (m["events"], m["estimated"], m["by_venue"]) == (0, True, {"hyperliquid~est": 1_000_000.0})
    assert alerts[0].venues == ("hyperliquid",)

    det = CascadeDetector(cfg(proxy_venues=[]))  # no proxy venues: open interest is ignored altogether
    assert feed(det, events) == [] and window_labels(det) == {}


def test_estimates_add_to_a_cascade_started_by_liquidations_elsewhere_but_not_to_its_start() -> None:
    # an estimate before the first liquidation (100 K) and one after it (500 K): 140 K of real liquidations is
    # below the 150 K floor and the estimates in the window do not help
    events: list[MarketEvent] = [oi(T0, 1000, 100_000), hl(T0 + 100, 600_000, "sell"), oi(T0 + 200, 999, 100_000)]
    events += [liq(T0 + 1000 + i * 1000, 10_000) for i in range(14)]
    events += [hl(T0 + 5100, 600_000, "sell"), oi(T0 + 5200, 994, 100_000)]
    det = CascadeDetector(cfg())
    assert feed(det, sorted(events, key=lambda e: e.ts)) == []
    alerts = feed(det, [liq(T0 + 15_000, 10_000)])  # 150 K real: now it starts, the later estimate included
    assert [a.type for a in alerts] == ["cascade_started"]
    assert alerts[0].metrics["by_venue"] == {"binance": 150_000.0, "hyperliquid~est": 500_000.0}
    assert alerts[0].window_start == T0 + 1000  # the episode starts with its first liquidation
    assert alerts[0].severity == "info"  # severity does not count the estimate (650 K would be 4.3x)


# ---------------------------------------------------------------- state with corroboration and estimates

RICH = {"warmup_buckets": 3, "baseline_buckets": 5, "floor_usd": {"BTC": 100_000, "ETH": 60_000}}


def rich_stream(seed: int) -> list[tuple[str, Any]]:
    """40 minutes of BTC and ETH: binance and hyperliquid trades with a random-walk price, hyperliquid OI,
    a drizzle of small liquidations, some late, and every 4 minutes a burst of one of four kinds (sampled and
    corroborated, plain above the floor, sampled without trades, short squeeze), with OI falling under it."""
    rng = random.Random(seed)
    items: list[tuple[str, Any]] = []
    for base, price0, floor in (("BTC", 100_000.0, 100_000), ("ETH", 3_000.0, 60_000)):
        price, oi_qty = price0, 50_000_000 / price0
        kinds = ["corroborated", "plain", "weak", "short"]
        rng.shuffle(kinds)
        for sec in range(40 * 60):
            ts = M0 + sec * 1000 + rng.randint(0, 300)
            minute, offset = divmod(sec, 60)
            burst = kinds[(minute // 4) % 4] if minute >= 5 and minute % 4 == 1 and offset < 14 else None
            drift = {"corroborated": -0.001, "plain": -0.0005, "short": 0.001}.get(burst or "", 0.0)
            price *= 1 + drift + rng.gauss(0, 0.0003)
            side = rng.choice(["buy", "sell"])
            size = rng.randint(2_000, 18_000)
            if burst in ("corroborated", "plain", "short"):
                side, size = ("buy" if burst == "short" else "sell"), rng.randint(60_000, 160_000)
            items.append(("ev", trade(ts, round(price, 2), size, side, base)))
            if sec % 2 == 0:
                items.append(("ev", trade(ts + 400, round(price, 2), size // 2, side, base, venue="hyperliquid")))
            if sec % 3 == 0:
                oi_qty *= 1 - rng.uniform(0.0005, 0.002) if burst else 1 + rng.uniform(-0.0005, 0.0006)
                items.append(("ev", oi(ts + 700, round(oi_qty, 4), round(price, 2), base=base)))
            if burst is not None:
                share = {"corroborated": 0.06, "plain": 0.25, "weak": 0.06, "short": 0.07}[burst]
                items.append(("ev", liq(ts + 800, round(floor * share * rng.uniform(0.9, 1.1), 2), base=base,
                                        side="short" if burst == "short" else "long", price=round(price, 2),
                                        venue=rng.choice(["binance", "okx", "bybit"]), sampled=True)))
            elif rng.random() < 0.05:
                lag = 70_000 if rng.random() < 0.05 else rng.randint(0, 2000)
                items.append(("ev", liq(ts - lag, rng.randint(500, 3000), base=base, side=rng.choice(["long", "short"]),
                                        price=round(price, 2), venue=rng.choice(["binance", "bybit"]))))
    items.sort(key=lambda item: item[1].ts)
    final = items[-1][1].ts
    ticked: list[tuple[str, Any]] = []
    for k, item in enumerate(items):
        if k % 500 == 0:
            ticked.append(("tick", item[1].ts))
        ticked.append(item)
    ticked.append(("tick", final + 3_600_000))
    return ticked


def test_rich_stream_exercises_corroboration_and_estimates() -> None:
    alerts = [orjson.loads(a) for a in run_items(CascadeDetector(cfg(**RICH)), rich_stream(5))]
    started = [a for a in alerts if a["type"] == "cascade_started"]
    assert {a["metrics"]["trigger"] for a in started} == {"threshold", "corroborated"}
    assert {a["metrics"]["side"] for a in started} == {"long", "short"}
    assert any(a["metrics"]["estimated"] for a in alerts)
    assert any(a["type"] == "cascade_escalated" for a in alerts)
    assert len(started) == sum(a["type"] == "cascade_ended" for a in alerts)


def test_snapshot_restore_with_corroboration_and_estimates_gives_exactly_the_same_alerts() -> None:
    config = cfg(**RICH)
    items = rich_stream(5)
    full = run_items(CascadeDetector(config), items)
    for cut in (1, 3_000, 7_777, 12_345, 20_000, len(items) - 1):
        det = CascadeDetector(config)
        head = run_items(det, items[:cut])
        state = orjson.loads(orjson.dumps(det.snapshot()))
        restored = CascadeDetector(config, snapshot=state)
        assert restored.snapshot() == state
        assert head + run_items(restored, items[cut:]) == full, f"diverged after a restore at {cut}"


def test_rich_stream_alerts_do_not_depend_on_how_bases_interleave() -> None:
    config = cfg(**RICH)
    events: list[MarketEvent] = [v for kind, v in rich_stream(9) if kind == "ev"]
    final = max(e.ts for e in events) + 3_600_000

    def run(stream: list[MarketEvent]) -> list[bytes]:
        det = CascadeDetector(config)
        return sorted(encode_alert(a) for a in feed(det, stream) + det.on_tick(final))

    reference = run(events)
    assert any(b'"trigger":"corroborated"' in a for a in reference)
    grouped = [e for base in ("ETH", "BTC") for e in events if e.base == base]
    assert run(grouped) == reference


def test_restore_accepts_a_version_1_snapshot() -> None:
    det = CascadeDetector(cfg(floor_usd={"BTC": 100_000}))
    feed(det, [trade(T0 - 500, 100_000, 1_000), *burst(T0, 10, 10_000)])
    expected = [encode_alert(a) for a in det.on_tick(T0 + 1_000_000)]
    det = CascadeDetector(cfg(floor_usd={"BTC": 100_000}))
    feed(det, [trade(T0 - 500, 100_000, 1_000), *burst(T0, 10, 10_000)])
    state = det.snapshot()
    v1 = {**state, "version": 1, "bases": [entry[:5] for entry in state["bases"]]}
    del v1["proxies"]
    v1["tracks"] = [{k: v for k, v in t.items() if k not in ("real_total", "real_n")} for t in state["tracks"]]
    for t in v1["tracks"]:
        t["window"] = [e[:6] for e in t["window"]]
        if t["episode"] is not None:
            t["episode"] = {k: v for k, v in t["episode"].items()
                            if k not in ("step", "trigger", "corroborated", "burst_ratio", "impact_pct", "estimated")}
    restored = CascadeDetector(cfg(floor_usd={"BTC": 100_000}), snapshot=v1)
    assert [encode_alert(a) for a in restored.on_tick(T0 + 1_000_000)] == expected
    with pytest.raises(ValueError, match="version"):
        CascadeDetector(cfg(), snapshot={**state, "version": 99})
