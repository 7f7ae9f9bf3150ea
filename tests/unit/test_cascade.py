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


def trade(ts: int, price: float | str, notional: float | str, side: str = "sell", base: str = "BTC") -> Trade:
    return Trade(
        venue="binance",
        symbol=f"{base}USDT",
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
    assert restored.snapshot()["bases"][0][3:] == [T0 + 9_500, (T0 + 9_500) // 1000]
    assert [encode_alert(a) for a in restored.on_tick(T0 + 1_000_000)] == expected
