"""Liquidation cascade detector (DESIGN.md §6, "Cascade burst").

Per base asset and per liquidated side (``long`` / ``short``), across every venue and every symbol that
maps to the same base (``BTCUSDT`` and ``BTCUSDC`` on Binance, ``BTC-USDT-SWAP`` on OKX... are all
``BTC``), the detector keeps a rolling event-time window of liquidated notional and count, compares it
with a threshold and runs a small state machine::

    idle ──(window ≥ threshold and count ≥ min_events)──▶ active ──(window < end_fraction × threshold
      ▲                                                     │        for quiet_s)──▶ idle
      │                                                     └── each step up in severity: escalated
      └────────────────────────── cascade_ended ◀───────────┘

Threshold
    ``threshold = max(floor(base), baseline_multiplier × baseline)``. The baseline is the **median** of
    the last ``baseline_buckets`` closed window-length buckets (tumbling, aligned on the epoch) of the
    same base and side, empty buckets counting as zero. It is only used once ``warmup_buckets`` buckets
    have closed for that base and side; before that (cold start) the floor alone applies. A median is
    used because it is robust to the spikes themselves: a cascade fills a handful of buckets, which
    cannot move the median of 120, so one flush never hides the next. The median is recomputed only when
    a bucket closes (once per window per base and side), never per event. The threshold in force when an
    episode starts is frozen for that episode, so severity and the end condition cannot drift while the
    baseline moves underneath it.

Floors (USD of *observed* liquidated notional per window; calibrated for the default 60 s window)
    ======  =========  ==========================================================================
    base    floor      why
    ======  =========  ==========================================================================
    BTC     150,000    CoinGlass Binance BTC liquidations, 2025-05-18..11-14 (4 h bars): median
                       ≈ 2.5 K USD per minute per side, p99 bar ≈ 72 K USD/min on average. 150 K in
                       one minute is ~2x the busiest 1 % of 4 h bars. On 2025-01-27 the BTC long
                       windows reached 190 K (16:54, 9 events) and 255 K (17:08, 15 events).
    ETH     100,000    The second-largest liquidation market, set two thirds of BTC's. On 2025-01-27
                       ETH longs reached 167 K (16 events) at 16:54:55; the 17:08 wave only 48 K.
    SOL     40,000     Large caps with far smaller liquidation flow. On 2025-01-27: DOGE 418 K
    XRP                (14 events, 16:54:55), XRP 50 K (19 events, 17:08:48); SOL peaked at 93 K
    DOGE               but with 7 events only. 40 K keeps XRP's 31.6 K drizzle in the first wave
    BNB                (15 events, none above 10 K) below the bar and fires on its 17:08 flush.
    other   30,000     Every quiet 60 s window with >= 10 events in the recording stays below:
                       the highest are PENGU shorts 23.2 K (2025-01-26 17:05), JUP longs 18.3 K
                       (01-26 16:57) and ACH shorts 13.8 K (01-27 17:11). Real flushes of small
                       caps clear it: TRUMP longs 39 K (16 events) at 17:08:58 on 01-27.
    ======  =========  ==========================================================================

    The recording behind these numbers is ``binance_forceorder_allsymbols_2025-01-26_2025-02-06.csv``
    (Binance USDⓈ-M ``!forceOrder@arr``, 1,837 unique events in four sessions). Binance pushes at most one
    liquidation per symbol per second, so every Binance figure is a **lower bound** and the floors are
    too: with more venues feeding the detector the same market move shows more notional, which the
    adaptive baseline absorbs after warm-up. ``CascadeConfig.floor_usd`` overrides a base's floor and
    ``CascadeConfig.default_floor_usd`` the default for bases without their own entry. The floors are
    per window: change them together with ``window_s``.

    With the default ``min_events = 10`` the 2025-01-27 16:53-16:56 UTC long burst starts cascades for
    DOGE and ETH; BTC's best 60 s window in that burst held 9 sampled events (190 K USD), so BTC starts
    on the 17:08 wave instead, together with XRP and TRUMP. The quiet sessions of 01-26 and 02-06 fire
    nothing.

Time and lateness
    Time is kept **per base**: a base's ``now`` is the maximum of its own liquidation/trade ``ts`` and of
    every tick seen (a tick moves every base, including bases first seen after it). Events of another base
    never move it. Market events are partitioned by base, so a processor working through a backlog reads
    one partition's hours before the next one's; with a single clock the second partition's events would
    all look late. Ticks are global, but the runtime never ticks past unconsumed input (its watermark), so
    a tick cannot make a pending partition's events late. Everything about a (base, side) track (the
    window, the baseline buckets, the quiet check, an alert's ``emitted_ts``) runs on its base's time, so
    the alerts do not depend on how the partitions of different bases interleave.

    The window holds the events with ``now - window < ts <= now``. An event with ``ts < now`` is late: if
    it is still inside the window it is folded in at its place (a short scan from the right, rare),
    otherwise it is counted in :attr:`CascadeDetector.late_events` and ignored. Nothing is dropped
    silently and nothing raises. Late events go to the open baseline bucket, whatever bucket their ``ts``
    falls into. The moment a window goes quiet is computed exactly (the expiry time ``ts + window`` of the
    event whose expiry took it below the end level), so the end time does not depend on how often ticks
    come. A base's open episodes are checked once per second of that base's time (and on every tick).

Numbers
    Money stays :class:`~decimal.Decimal` on the wire. Inside the detector notional and prices are floats:
    each event's Decimal is converted once, the rolling sums are floats, and alert metrics are rounded to
    cents. A threshold comparison does not need exact cents, and floats keep the hot path at a few hundred
    nanoseconds per event. The float state is snapshotted exactly (JSON floats round-trip), so a restored
    detector continues bit for bit.

Alerts
    ``cascade_started`` / ``cascade_escalated`` / ``cascade_ended``, ``alert_id`` =
    ``sha256("cascade|{base}|{side}|{episode_start_ms}|{stage}")[:32]`` with stage ``started``,
    ``escalated:<severity>`` or ``ended``, so a replay or a restart reproduces the same ids. See
    :meth:`CascadeDetector._metrics` for the metric keys. An episode's ``window.start`` is its first event
    (the oldest event of the window that triggered it); ``window.end`` is the trigger event's time for
    started/escalated and the declared end time (``quiet_s`` after the window went quiet) for ended.
    ``duration_s`` in the ended alert is the span of the episode's liquidations (first to last), not the
    quiet tail. An episode that starts right after another ended may share up to ``end_fraction ×
    threshold`` of tail events with it.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from flushwatch.config import CascadeConfig
from flushwatch.events import SEVERITIES, Alert, Liquidation, MarketEvent, Severity, Trade
from processors.base import Detector

__all__ = [
    "BUILTIN_DEFAULT_FLOOR_USD",
    "BUILTIN_FLOORS_USD",
    "CascadeDetector",
    "format_duration",
    "format_price",
    "format_usd",
]

#: Built-in per-base floors, USD of observed liquidated notional per (60 s) window. See the module doc.
BUILTIN_FLOORS_USD: dict[str, float] = {
    "BTC": 150_000.0,
    "ETH": 100_000.0,
    "SOL": 40_000.0,
    "XRP": 40_000.0,
    "DOGE": 40_000.0,
    "BNB": 40_000.0,
}
#: Floor for every base without its own entry.
BUILTIN_DEFAULT_FLOOR_USD = 30_000.0

_SNAPSHOT_VERSION = 1
_NEVER = -(2**62)
_SIDES = ("long", "short")

# A window entry: (ts, notional, venue, sampled, liquidation price, last trade price at arrival or None).
_Entry = tuple[int, float, str, bool, float, float | None]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def format_usd(value: float) -> str:
    """Compact USD for messages: ``$950``, ``$8.5K``, ``$850K``, ``$2.4M``, ``$1.2B``."""
    sign = "-" if value < 0 else ""
    x = abs(value)
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if x >= scale * 0.9995:
            scaled = x / scale
            text = f"{scaled:.1f}" if scaled < 99.95 else f"{scaled:.0f}"
            return f"{sign}${text.removesuffix('.0')}{unit}"
    return f"{sign}${x:.0f}"


def format_duration(seconds: float) -> str:
    """``45 s``, ``4 min 10 s``, ``2 h 5 min``: what a person reads in a chat message."""
    total = round(seconds)
    if total < 60:
        return f"{total} s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def format_price(price: float) -> str:
    """Thousands separators for big prices, about five significant digits for small ones."""
    if price >= 1000:
        return f"{price:,.0f}"
    if price <= 0:
        return "0"
    decimals = max(0, 4 - math.floor(math.log10(price)))
    return f"{price:,.{decimals}f}"


def _pct(value: float) -> str:
    return f"{value:+.1f}%"


@dataclass(slots=True)
class _Episode:
    """An active cascade of one base and side; everything the alerts report."""

    episode_id: str
    start_ms: int
    trigger_ms: int
    last_ts: int
    threshold: float
    end_level: float
    level: int
    notional: float
    events: int
    by_venue: dict[str, float]
    by_side: dict[str, float]
    peak_window: float
    price_start: float
    price_extreme: float
    taker_buy: float
    taker_sell: float
    sampled: bool
    quiet_since: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "episode_id": self.episode_id,
            "start_ms": self.start_ms,
            "trigger_ms": self.trigger_ms,
            "last_ts": self.last_ts,
            "threshold": self.threshold,
            "end_level": self.end_level,
            "level": self.level,
            "notional": self.notional,
            "events": self.events,
            "by_venue": dict(self.by_venue),
            "by_side": dict(self.by_side),
            "peak_window": self.peak_window,
            "price_start": self.price_start,
            "price_extreme": self.price_extreme,
            "taker_buy": self.taker_buy,
            "taker_sell": self.taker_sell,
            "sampled": self.sampled,
            "quiet_since": self.quiet_since,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> _Episode:
        return cls(
            episode_id=str(obj["episode_id"]),
            start_ms=int(obj["start_ms"]),
            trigger_ms=int(obj["trigger_ms"]),
            last_ts=int(obj["last_ts"]),
            threshold=float(obj["threshold"]),
            end_level=float(obj["end_level"]),
            level=int(obj["level"]),
            notional=float(obj["notional"]),
            events=int(obj["events"]),
            by_venue={str(k): float(v) for k, v in obj["by_venue"].items()},
            by_side={str(k): float(v) for k, v in obj["by_side"].items()},
            peak_window=float(obj["peak_window"]),
            price_start=float(obj["price_start"]),
            price_extreme=float(obj["price_extreme"]),
            taker_buy=float(obj["taker_buy"]),
            taker_sell=float(obj["taker_sell"]),
            sampled=bool(obj["sampled"]),
            quiet_since=None if obj["quiet_since"] is None else int(obj["quiet_since"]),
        )


@dataclass(slots=True)
class _Track:
    """Rolling window, baseline buckets and episode of one (base, side)."""

    base: str
    side: str
    bucket_idx: int
    baseline_len: int
    window: deque[_Entry] = field(default_factory=deque)
    total: float = 0.0
    bucket_sum: float = 0.0
    history: deque[float] = field(default_factory=deque)
    closed: int = 0
    baseline: float | None = None
    episode: _Episode | None = None

    def __post_init__(self) -> None:
        self.history = deque(self.history, maxlen=self.baseline_len)


@dataclass(slots=True)
class _Base:
    """Per-base clock and market context: last trade price, per-second trade buckets for the last window.

    ``now`` is the base's event time (its own events and the ticks), ``sweep_sec`` the second of that time
    in which its active episodes were last checked. A bucket is ``[second, low, high, taker_buy_usd,
    taker_sell_usd]``; the buckets let an episode that starts now look back at the trades since its first
    event without keeping every trade.
    """

    now: int = _NEVER
    sweep_sec: int = _NEVER
    last_price: float | None = None
    ring: deque[list[float]] = field(default_factory=deque)
    long: _Track | None = None
    short: _Track | None = None
    active: list[_Track] = field(default_factory=list)


class CascadeDetector(Detector):
    """Liquidation cascade per base asset and liquidated side, across venues. See the module doc."""

    name = "cascade"

    def __init__(self, config: CascadeConfig | None = None, snapshot: dict[str, Any] | None = None) -> None:
        cfg = config if config is not None else CascadeConfig.model_validate({})
        steps = [float(s) for s in cfg.severity_steps]
        if not 1 <= len(steps) <= len(SEVERITIES):
            raise ValueError(f"cascade.severity_steps needs 1 to {len(SEVERITIES)} values, got {steps}")
        if steps[0] <= 0 or any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError(f"cascade.severity_steps must be positive and increasing, got {steps}")
        self.config = cfg
        self._window_ms = max(1, round(cfg.window_s * 1000))
        self._quiet_ms = max(1, round(cfg.quiet_s * 1000))
        self._per_min = 60_000 / self._window_ms
        self._ring_secs = self._window_ms // 1000 + 2
        self._min_events = cfg.min_events
        self._multiplier = cfg.baseline_multiplier
        self._warmup = cfg.warmup_buckets
        self._end_fraction = cfg.end_fraction
        self._steps = steps
        self._default_floor = (
            BUILTIN_DEFAULT_FLOOR_USD if cfg.default_floor_usd is None else float(cfg.default_floor_usd)
        )
        self._floors: dict[str, float] = {}
        self._reset()
        if snapshot is not None:
            self.restore(snapshot)

    def _reset(self) -> None:
        #: the latest tick: every base's time is at least this, including bases first seen after it
        self._now = _NEVER
        self._bases: dict[str, _Base] = {}
        self._active: dict[tuple[str, str], _Track] = {}
        #: events too old to be inside the window when they arrived (counted, not folded in)
        self.late_events = 0

    # ------------------------------------------------------------------ thresholds

    def floor(self, base: str) -> float:
        """The floor for ``base``: config override, else built-in table, else the default floor."""
        value = self._floors.get(base)
        if value is None:
            own = self.config.floor_usd.get(base)
            if own is None:
                own = BUILTIN_FLOORS_USD.get(base, self._default_floor)
            value = self._floors[base] = float(own)
        return value

    def threshold(self, base: str, side: str) -> float:
        """The start threshold in force now for ``base`` and ``side`` (USD per window)."""
        bs = self._bases.get(base)
        track = None if bs is None else (bs.long if side == "long" else bs.short)
        return self.floor(base) if track is None else self._threshold(track)

    def _threshold(self, track: _Track) -> float:
        floor = self.floor(track.base)
        if track.baseline is None:
            return floor
        return max(floor, self._multiplier * track.baseline)

    def _level(self, ratio: float) -> int:
        level = 0
        for i, step in enumerate(self._steps):
            if ratio >= step:
                level = i
        return level

    # ------------------------------------------------------------------ the Detector interface

    def on_event(self, event: MarketEvent) -> list[Alert]:
        """Liquidations feed the windows; trades update price and taker volume; others are ignored."""
        if isinstance(event, Trade):
            return self._on_trade(event)
        if isinstance(event, Liquidation):
            return self._on_liquidation(event)
        return []

    def on_tick(self, now_ms: int) -> list[Alert]:
        """Advance every base's time (never backwards); end the episodes whose window stayed quiet."""
        if now_ms > self._now:
            self._now = now_ms
            sec = now_ms // 1000
            for bs in self._bases.values():
                if now_ms > bs.now:
                    bs.now = now_ms
                    bs.sweep_sec = sec
        if not self._active:
            return []
        return self._sweep(list(self._active.values()))

    # ------------------------------------------------------------------ hot paths

    def _base(self, name: str) -> _Base:
        bs = self._bases.get(name)
        if bs is None:
            # a new base starts at the latest tick: time the runtime has already let pass for everyone
            bs = self._bases[name] = _Base(now=self._now)
        return bs

    def _advance(self, bs: _Base, ts: int) -> list[Alert] | None:
        """Move the base's time to ``ts``; once per second of its time, check its active episodes."""
        if ts > bs.now:
            bs.now = ts
            sec = ts // 1000
            if sec != bs.sweep_sec:
                bs.sweep_sec = sec
                if bs.active:
                    return self._sweep(list(bs.active))
        return None

    def _sweep(self, tracks: list[_Track]) -> list[Alert]:
        """Expire and end-check each track at its own base's time."""
        out: list[Alert] = []
        for track in tracks:
            now = self._bases[track.base].now
            self._expire(track, now)
            alert = self._check_end(track, now)
            if alert is not None:
                out.append(alert)
        if len(out) > 1:  # episodes that ended between two sweeps come out in end-time order
            out.sort(key=lambda a: (a.ts, a.base, a.metrics["side"]))
        return out

    def _on_trade(self, ev: Trade) -> list[Alert]:
        bs = self._base(ev.base)
        alerts = self._advance(bs, ev.ts)
        price = float(ev.price)
        notional = float(ev.notional_usd)
        buy = ev.side == "buy"
        bs.last_price = price
        ring = bs.ring
        sec = ev.ts // 1000
        if not ring or sec > ring[-1][0]:
            ring.append([sec, price, price, notional if buy else 0.0, 0.0 if buy else notional])
            cutoff = sec - self._ring_secs
            while ring[0][0] < cutoff:
                ring.popleft()
        else:
            # same second, or a late trade: folded into the newest bucket (second-level precision)
            bucket = ring[-1]
            if price < bucket[1]:
                bucket[1] = price
            elif price > bucket[2]:
                bucket[2] = price
            bucket[3 if buy else 4] += notional
        for track in bs.active:
            ep = track.episode
            if ep is None:  # pragma: no cover - active lists only hold tracks with an episode
                continue
            if buy:
                ep.taker_buy += notional
            else:
                ep.taker_sell += notional
            if track.side == "long":
                ep.price_extreme = min(ep.price_extreme, price)
            elif price > ep.price_extreme:
                ep.price_extreme = price
        return alerts or []

    def _on_liquidation(self, ev: Liquidation) -> list[Alert]:
        bs = self._base(ev.base)
        alerts = self._advance(bs, ev.ts) or []
        now = bs.now
        side = ev.side
        track = bs.long if side == "long" else bs.short
        if track is None:
            track = _Track(ev.base, side, now // self._window_ms, self.config.baseline_buckets)
            if side == "long":
                bs.long = track
            else:
                bs.short = track
        self._roll(track, now)
        self._expire(track, now)
        if track.episode is not None:
            ended = self._check_end(track, now)
            if ended is not None:
                alerts.append(ended)

        ts = ev.ts
        if ts <= now - self._window_ms:
            self.late_events += 1
            return alerts
        notional = float(ev.notional_usd)
        price = float(ev.price)
        entry: _Entry = (ts, notional, ev.venue, ev.sampled, price, bs.last_price)
        window = track.window
        if not window or ts >= window[-1][0]:
            window.append(entry)
        else:
            self._insert_late(window, entry)
        track.total += notional
        track.bucket_sum += notional

        other = bs.short if side == "long" else bs.long
        if other is not None and other.episode is not None:
            other.episode.by_side[side] += notional

        ep = track.episode
        if ep is None:
            if len(window) >= self._min_events:
                threshold = self._threshold(track)
                if track.total >= threshold:
                    alerts.append(self._start(bs, track, other, threshold, ts))
            return alerts

        ep.notional += notional
        ep.events += 1
        ep.by_venue[ev.venue] = ep.by_venue.get(ev.venue, 0.0) + notional
        ep.by_side[side] += notional
        if ev.sampled:
            ep.sampled = True
        ep.last_ts = max(ep.last_ts, ts)
        if side == "long":
            ep.price_extreme = min(ep.price_extreme, price)
        elif price > ep.price_extreme:
            ep.price_extreme = price
        ep.peak_window = max(ep.peak_window, track.total)
        if ep.quiet_since is not None and track.total >= ep.end_level:
            ep.quiet_since = None
        level = self._level(track.total / ep.threshold)
        if level > ep.level:
            ep.level = level
            alerts.append(
                self._alert(track, ep, "cascade_escalated", level=level, ts=ts, window_end=ts, now=now)
            )
        return alerts

    @staticmethod
    def _insert_late(window: deque[_Entry], entry: _Entry) -> None:
        """Put an out-of-order event at its place so expiry from the left stays exact."""
        ts = entry[0]
        index = len(window)
        while index > 0 and window[index - 1][0] > ts:
            index -= 1
        window.insert(index, entry)

    def _roll(self, track: _Track, now: int) -> None:
        """Close the baseline buckets that the base's time ``now`` has left behind; recompute the median."""
        idx = now // self._window_ms
        gap = idx - track.bucket_idx
        if gap <= 0:
            return
        track.history.append(track.bucket_sum)
        empties = min(gap - 1, self.config.baseline_buckets)
        if empties:
            track.history.extend([0.0] * empties)
        track.closed += gap
        track.bucket_idx = idx
        track.bucket_sum = 0.0
        if track.closed >= self._warmup:
            ordered = sorted(track.history)
            n = len(ordered)
            mid = n // 2
            track.baseline = ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2

    def _expire(self, track: _Track, now: int) -> None:
        """Drop events that left the window at ``now``; note the exact moment an episode's window went quiet."""
        limit = now - self._window_ms
        window = track.window
        if not window or window[0][0] > limit:
            return
        ep = track.episode
        while window and window[0][0] <= limit:
            entry = window.popleft()
            track.total -= entry[1]
            if ep is not None and ep.quiet_since is None and track.total < ep.end_level:
                ep.quiet_since = entry[0] + self._window_ms
        if not window:
            track.total = 0.0  # no float residue once the window is empty

    def _check_end(self, track: _Track, now: int) -> Alert | None:
        ep = track.episode
        if ep is None or ep.quiet_since is None:
            return None
        end_ms = ep.quiet_since + self._quiet_ms
        if now < end_ms:
            return None
        alert = self._alert(track, ep, "cascade_ended", level=ep.level, ts=end_ms, window_end=end_ms, now=now)
        track.episode = None
        self._active.pop((track.base, track.side), None)
        bs = self._bases[track.base]
        bs.active = [t for t in bs.active if t is not track]
        return alert

    def _start(self, bs: _Base, track: _Track, other: _Track | None, threshold: float, ts: int) -> Alert:
        window = track.window
        first = window[0]
        start_ms = first[0]
        long = track.side == "long"
        price_start = first[5] if first[5] is not None else first[4]
        extreme = price_start
        by_venue: dict[str, float] = {}
        sampled = False
        for _ts, notional, venue, e_sampled, price, _ref in window:
            by_venue[venue] = by_venue.get(venue, 0.0) + notional
            sampled = sampled or e_sampled
            extreme = min(extreme, price) if long else max(extreme, price)
        taker_buy = taker_sell = 0.0
        start_sec = start_ms // 1000
        for sec, low, high, buy, sell in bs.ring:
            if sec >= start_sec:
                taker_buy += buy
                taker_sell += sell
                extreme = min(extreme, low) if long else max(extreme, high)
        other_side = "short" if long else "long"
        other_notional = 0.0
        if other is not None:
            other_notional = sum(e[1] for e in other.window if start_ms <= e[0] <= bs.now)
        ep = _Episode(
            episode_id=_digest(f"cascade|{track.base}|{track.side}|{start_ms}"),
            start_ms=start_ms,
            trigger_ms=ts,
            last_ts=window[-1][0],
            threshold=threshold,
            end_level=self._end_fraction * threshold,
            level=self._level(track.total / threshold),
            notional=track.total,
            events=len(window),
            by_venue=by_venue,
            by_side={track.side: track.total, other_side: other_notional},
            peak_window=track.total,
            price_start=price_start,
            price_extreme=extreme,
            taker_buy=taker_buy,
            taker_sell=taker_sell,
            sampled=sampled,
        )
        track.episode = ep
        self._active[(track.base, track.side)] = track
        bs.active.append(track)
        return self._alert(track, ep, "cascade_started", level=ep.level, ts=ts, window_end=ts, now=bs.now)

    # ------------------------------------------------------------------ alerts

    def _metrics(self, track: _Track, ep: _Episode, kind: str) -> dict[str, Any]:
        """The numbers behind an alert.

        ``notional_usd`` episode total of the cascade's side; ``events`` its liquidations; ``by_venue``
        venue -> USD of that side; ``by_side`` long/short -> USD of this base liquidated during the episode;
        ``peak_notional_per_min`` highest rolling-window notional scaled to one minute;
        ``price_start``/``price_extreme``/``price_change_pct`` last trade price before the first event
        (else the first liquidation price), the low (long) or high (short) since, and the move in percent;
        ``taker_sell_usd``/``taker_buy_usd`` trade flow since the start (corroboration);
        ``window_notional_usd``/``window_events`` the rolling window now; ``threshold_usd`` the frozen
        threshold; ``lower_bound`` true when a contributing feed is sampled (sums are then minimums);
        ``duration_s`` (ended only) the span from the first to the last liquidation of the episode.
        """
        change = 0.0
        if ep.price_start > 0:
            change = (ep.price_extreme - ep.price_start) / ep.price_start * 100
        metrics: dict[str, Any] = {
            "side": track.side,
            "episode_id": ep.episode_id,
            "notional_usd": round(ep.notional, 2),
            "events": ep.events,
            "by_venue": {v: round(x, 2) for v, x in sorted(ep.by_venue.items())},
            "by_side": {s: round(ep.by_side.get(s, 0.0), 2) for s in _SIDES},
            "peak_notional_per_min": round(ep.peak_window * self._per_min, 2),
            "window_notional_usd": round(max(track.total, 0.0), 2),
            "window_events": len(track.window),
            "price_start": ep.price_start,
            "price_extreme": ep.price_extreme,
            "price_change_pct": round(change, 4),
            "taker_sell_usd": round(ep.taker_sell, 2),
            "taker_buy_usd": round(ep.taker_buy, 2),
            "threshold_usd": round(ep.threshold, 2),
            "window_s": self._window_ms / 1000,
            "lower_bound": ep.sampled,
        }
        if kind == "cascade_ended":
            metrics["duration_s"] = (ep.last_ts - ep.start_ms) / 1000
        return metrics

    def _alert(
        self, track: _Track, ep: _Episode, kind: str, *, level: int, ts: int, window_end: int, now: int
    ) -> Alert:
        severity: Severity = SEVERITIES[level]
        stage = {"cascade_started": "started", "cascade_ended": "ended"}.get(kind, f"escalated:{severity}")
        metrics = self._metrics(track, ep, kind)
        venues = tuple(sorted(ep.by_venue))
        return Alert(
            alert_id=_digest(f"cascade|{track.base}|{track.side}|{ep.start_ms}|{stage}"),
            type=kind,
            severity=severity,
            base=track.base,
            venues=venues,
            ts=ts,
            emitted_ts=now,
            window_start=ep.start_ms,
            window_end=window_end,
            metrics=metrics,
            message=self._message(track, ep, kind, metrics, venues),
        )

    def _message(
        self, track: _Track, ep: _Episode, kind: str, metrics: dict[str, Any], venues: tuple[str, ...]
    ) -> str:
        what = f"{track.base} {track.side} liquidation cascade"
        at_least = "at least " if ep.sampled else ""
        price = f"price {_pct(metrics['price_change_pct'])}"
        window = f"{self._window_ms / 1000:g} s"
        if kind == "cascade_started":
            return (
                f"{what} started: {at_least}{format_usd(track.total)} liquidated in {window} across "
                f"{', '.join(venues)} ({len(track.window)} events), {price}"
            )
        if kind == "cascade_escalated":
            return (
                f"{what} escalated to {SEVERITIES[ep.level]}: {at_least}{format_usd(track.total)} "
                f"liquidated in the last {window} ({track.total / ep.threshold:.1f}x the "
                f"{format_usd(ep.threshold)} threshold), {format_usd(ep.notional)} since the start, {price}"
            )
        extreme = f"{'low' if track.side == 'long' else 'high'} {format_price(ep.price_extreme)}"
        return (
            f"{what} ended after {format_duration(metrics['duration_s'])}: {at_least}"
            f"{format_usd(ep.notional)} total across {', '.join(venues)} ({ep.events} events), "
            f"peak {format_usd(metrics['peak_notional_per_min'])}/min, {price} ({extreme})"
        )

    # ------------------------------------------------------------------ state

    def snapshot(self) -> dict[str, Any]:
        """The whole state as JSON-compatible data (lists, numbers, strings, None)."""
        bases: list[list[Any]] = []
        tracks: list[dict[str, Any]] = []
        for name, bs in self._bases.items():
            bases.append([name, bs.last_price, [list(b) for b in bs.ring], bs.now, bs.sweep_sec])
            for track in (bs.long, bs.short):
                if track is None:
                    continue
                tracks.append(
                    {
                        "base": track.base,
                        "side": track.side,
                        "window": [list(e) for e in track.window],
                        "total": track.total,
                        "bucket_idx": track.bucket_idx,
                        "bucket_sum": track.bucket_sum,
                        "history": list(track.history),
                        "closed": track.closed,
                        "baseline": track.baseline,
                        "episode": None if track.episode is None else track.episode.to_json(),
                    }
                )
        return {
            "version": _SNAPSHOT_VERSION,
            "window_ms": self._window_ms,
            "now": self._now,
            "late_events": self.late_events,
            "bases": bases,
            "tracks": tracks,
            "active": [[base, side] for base, side in self._active],
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Replace the state with a snapshot's; raises ValueError if it was taken with another window."""
        if snapshot.get("version") != _SNAPSHOT_VERSION:
            raise ValueError(f"cascade snapshot version {snapshot.get('version')!r} is not supported")
        if snapshot.get("window_ms") != self._window_ms:
            raise ValueError(
                f"cascade snapshot was taken with window {snapshot.get('window_ms')} ms, "
                f"this detector uses {self._window_ms} ms"
            )
        self._reset()
        self._now = int(snapshot["now"])
        self.late_events = int(snapshot["late_events"])
        # snapshots from before per-base time had one clock ("now", "sweep_sec") and 3-item base entries
        old_sweep = int(snapshot.get("sweep_sec", _NEVER))
        for entry in snapshot["bases"]:
            name, last_price, ring = entry[:3]
            now, sweep_sec = (int(entry[3]), int(entry[4])) if len(entry) > 3 else (self._now, old_sweep)
            self._bases[name] = _Base(
                now=now,
                sweep_sec=sweep_sec,
                last_price=None if last_price is None else float(last_price),
                ring=deque([int(b[0]), float(b[1]), float(b[2]), float(b[3]), float(b[4])] for b in ring),
            )
        for obj in snapshot["tracks"]:
            track = _Track(
                base=obj["base"],
                side=obj["side"],
                bucket_idx=int(obj["bucket_idx"]),
                baseline_len=self.config.baseline_buckets,
                window=deque(
                    (int(e[0]), float(e[1]), str(e[2]), bool(e[3]), float(e[4]),
                     None if e[5] is None else float(e[5]))
                    for e in obj["window"]
                ),
                total=float(obj["total"]),
                bucket_sum=float(obj["bucket_sum"]),
                history=deque(float(x) for x in obj["history"]),
                closed=int(obj["closed"]),
                baseline=None if obj["baseline"] is None else float(obj["baseline"]),
                episode=None if obj["episode"] is None else _Episode.from_json(obj["episode"]),
            )
            bs = self._bases.setdefault(track.base, _Base(now=self._now))
            if track.side == "long":
                bs.long = track
            else:
                bs.short = track
        for base, side in snapshot["active"]:
            bs = self._bases[base]
            active = bs.long if side == "long" else bs.short
            if active is None or active.episode is None:
                raise ValueError(f"cascade snapshot lists {base} {side} as active without an episode")
            self._active[(base, side)] = active
            bs.active.append(active)
