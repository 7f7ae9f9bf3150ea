"""Liquidation cascade detector (DESIGN.md §6, "Cascade burst").

Per base asset and per liquidated side (``long`` / ``short``), across every venue and every symbol that
maps to the same base (``BTCUSDT`` and ``BTCUSDC`` on Binance, ``BTC-USDT-SWAP`` on OKX... are all
``BTC``), the detector keeps a rolling event-time window of liquidated notional and count, compares it
with a threshold and runs a small state machine::

    idle ──(start condition, below)──▶ active ──(window < end_fraction × threshold for quiet_s)──▶ idle
      ▲                                  │
      │                                  └── each step up in severity: escalated
      └──────────── cascade_ended ◀──────┘

Start condition (checked when a counted liquidation arrives; ``n`` = liquidations in the window)
    * **threshold start**: window notional ≥ threshold and ``n ≥ min_events``; or
    * **corroborated start**: window notional ≥ ``corroborated_fraction × threshold`` and
      ``n ≥ min_events`` **and** the market corroborates it (next section). Liquidation feeds are sampled
      (Binance and OKX push at most one liquidation per symbol per second), so a real flush can show only
      half of the threshold in liquidations; the trades and the price then say what the sample misses.

    Nothing starts without real liquidations: a volume spike or a price move alone never does, and the
    estimated contributions of venues without a liquidation feed (below) do not count unless
    ``proxy_can_start`` is set. ``corroborated_fraction = 1`` disables corroborated starts. A start is
    checked only when a counted entry arrives; the episode begins at the oldest counted entry of the
    window that triggered it.

Corroboration (why the trades matter)
    Two numbers, measured over the same rolling window, both from **trades** of every venue of the base:

    * ``taker_burst_ratio``: taker notional in the *closing direction of the liquidated side* (taker
      **sells** for a long cascade, taker **buys** for a short squeeze) in the window, divided by its own
      baseline: the median of the last ``baseline_buckets`` closed window-length buckets of that base's
      taker sells (buys), empty buckets counting as zero, used once ``warmup_buckets`` have closed (the
      same rules, and the same robustness to the spikes themselves, as the liquidation baseline). The ratio
      is ``None`` while the baseline is cold or zero (a base without trade feeds, or that rarely trades):
      no corroboration is possible then.
    * ``price_impact_pct``: the move from the window's start to its extreme **in the liquidated
      direction**, in percent: ``(start - low) / start`` for longs, ``(high - start) / start`` for shorts,
      never negative. ``start`` is the last trade price when the window's first liquidation arrived (else
      that liquidation's price), ``low``/``high`` the trade extremes since that second. Liquidation prices
      are left out on purpose: Bybit, OKX and BitMEX report bankruptcy prices, far from the market.

    The market **corroborates** when ``taker_burst_ratio ≥ taker_burst_multiplier`` and
    ``price_impact_pct ≥ min_price_impact_pct`` (config); it corroborates **strongly** when, in addition, the
    ratio is ≥ ``strong_taker_burst_multiplier`` and the impact ≥ ``strong_price_impact_pct``. Strong
    corroboration raises the severity one step (never above the top step). Both are measured when an
    episode starts and again each time its window notional reaches a new severity step (never per trade);
    the metrics keep the strongest values seen. Trades are aggregated per second in a small per-base ring
    (``window_s + 3`` buckets of low, high, taker buys, taker sells), so the trade hot path stays O(1) and
    a measurement is one scan of that ring.

    Defaults and why (judgement, **not fitted**: the project has no recorded trade tape of a flush yet):
    3x the median window's taker flow is a busy minute, not a rare one, and a 0.5 % one-minute move is
    unusual for BTC in ordinary hours but routine for small caps; each alone would fire often, which is why
    a corroborated start needs both **and** half the threshold in real liquidations **and** ``min_events``.
    Strong (10x, 2 % in one window) is a market-wide flush by any measure. Both percentages are the same
    for every base; a per-base table like the floors would be the next step once trade tapes exist.

Venues without a liquidation feed (estimates)
    Hyperliquid publishes no liquidations at all (only user-scoped feeds). For every venue listed in
    ``proxy_venues`` (default ``["hyperliquid"]``) the detector estimates forced closes from that venue's
    **own** open interest and trades, per instrument: between two consecutive ``OpenInterest`` updates of
    the instrument, if the OI size (``oi_qty``) fell and the venue's taker flow in one direction was at least
    ``proxy_dominance`` (2) times the flow in the other over the same interval, it adds

        ``estimate = min(OI drop × price, |taker sells - taker buys|)``

    to the side that direction closes (dominant taker sells ⇒ ``long``, dominant taker buys ⇒ ``short``),
    at the second update's time. The drop is taken in size (base units) and valued at the newer update's price
    (``oi_usd / oi_qty``), so a falling price alone (OI in USD shrinking at constant size) estimates
    nothing. Intervals longer than ``window_s`` (a stalled feed) and the first update of an instrument
    estimate nothing either.

    Estimates are **reported, they do not decide**. They are window entries labelled ``"<venue>~est"``
    (``by_venue["hyperliquid~est"]``) and are included in what the alerts report (``notional_usd``,
    ``by_venue``, ``by_side``, ``peak_notional_per_min``, ``window_notional_usd``), with the estimated part
    as ``estimated_usd`` and ``estimated: true``; messages say "incl. ~$X estimated from hyperliquid trades
    and OI". The decisions read only the **counted** window, real liquidations: the start (threshold,
    ``min_events``, corroborated fraction), the severity steps and the quiet check that ends an episode. So
    an estimate alone never starts an episode, never raises its severity and never keeps it open: it adds
    to episodes that real liquidations (of any venue) started, from the episode's first liquidation on
    (estimates in the window before it are left out, as are those after the episode ended). With
    ``proxy_can_start = true`` estimates count exactly like liquidations (each one event) in all of it.
    Estimates never count as ``events`` and enter the liquidation baseline only with ``proxy_can_start``.

    Why reported only: OI and net flow move all the time, so the rule above also fires on ordinary
    two-way trading and a proxy venue produces a drizzle of small estimates in a quiet market. Letting them
    decide would hold episodes open on noise; reporting them inside a real cascade says how large the
    flush was on a venue that publishes nothing. Limits of the heuristic, to keep in mind when reading the
    figure: OI falls whenever *both* sides of a trade close, voluntary closes and stop-losses included, so
    in a sell-off the estimate also counts panic selling (an over-estimate), and the drizzle adds a little
    to every episode; a liquidation filled against a trader *opening* a position leaves OI unchanged (an
    under-estimate); flows are netted per interval, so a two-way interval counts only its imbalance, and
    the OI update cadence sets the resolution (Hyperliquid's asset context has no timestamp, so receive
    time is used, and its adapter emits OI only when it changed). List only venues without a liquidation
    feed: a venue with one would be counted twice.

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
    Time is kept **per base**: a base's ``now`` is the maximum of its own liquidation/trade ``ts`` (and
    open-interest ``ts`` of ``proxy_venues``) and of every tick seen (a tick moves every base, including bases
    first seen after it). Events of another base never move it. Market events are partitioned by base, so a
    processor working through a backlog reads one partition's hours before the next one's; with a single clock
    the second partition's events would all look late. Ticks are global, but the runtime never ticks past
    unconsumed input (its watermark), so a tick cannot make a pending partition's events late. Everything
    about a (base, side) track (the window, the baseline buckets, the quiet check, an alert's ``emitted_ts``)
    runs on its base's time, so the alerts do not depend on how the partitions of different bases interleave.

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
    (the oldest liquidation of the window that triggered it); ``window.end`` is the trigger event's time for
    started/escalated and the declared end time (``quiet_s`` after the window went quiet) for ended.
    ``duration_s`` in the ended alert is the span of the episode's liquidations (first to last), not the
    quiet tail. An episode that starts right after another ended may share up to ``end_fraction ×
    threshold`` of tail events with it. ``venues`` names the venues that contributed, estimates included
    (``hyperliquid``, while ``by_venue`` says ``hyperliquid~est``).
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from flushwatch.config import CascadeConfig
from flushwatch.events import (
    SEVERITIES,
    Alert,
    LiquidatedSide,
    Liquidation,
    MarketEvent,
    OpenInterest,
    Severity,
    Trade,
)
from processors.base import Detector
from processors.common import digest, format_duration, format_price, format_usd, money

__all__ = [
    "BUILTIN_DEFAULT_FLOOR_USD",
    "BUILTIN_FLOORS_USD",
    "ESTIMATE_SUFFIX",
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
#: ``by_venue`` key of a proxy venue's estimated liquidations: ``"hyperliquid" + ESTIMATE_SUFFIX``
ESTIMATE_SUFFIX = "~est"

_SNAPSHOT_VERSION = 2
_SUPPORTED_SNAPSHOTS = (1, 2)
_NEVER = -(2**62)
_SIDES = ("long", "short")

# A window entry: (ts, notional, venue label, sampled, price, last trade price at arrival or None,
# estimated). The label is the venue, or "<venue>~est" for an estimate.
_Entry = tuple[int, float, str, bool, float, float | None, bool]


def _median(values: deque[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _venue_of(label: str) -> str:
    return label.removesuffix(ESTIMATE_SUFFIX)


def _max_opt(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _pct(value: float) -> str:
    return f"{value:+.1f}%"


@dataclass(slots=True)
class _Episode:
    """An active cascade of one base and side; everything the alerts report.

    ``level`` is the severity in force (notional step plus a possible corroboration step), ``step`` the
    notional step alone (``_level(window / threshold)``) last seen, so corroboration is re-measured only
    when the notional reaches a new step. ``notional`` includes ``estimated``; ``events`` counts real
    liquidations only.
    """

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
    step: int = 0
    trigger: str = "threshold"
    corroborated: bool = False
    burst_ratio: float | None = None
    impact_pct: float = 0.0
    estimated: float = 0.0

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
            "step": self.step,
            "trigger": self.trigger,
            "corroborated": self.corroborated,
            "burst_ratio": self.burst_ratio,
            "impact_pct": self.impact_pct,
            "estimated": self.estimated,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> _Episode:
        # the keys after quiet_since are absent from version-1 snapshots: their defaults are what v1 meant
        ratio = obj.get("burst_ratio")
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
            step=int(obj.get("step", obj["level"])),
            trigger=str(obj.get("trigger", "threshold")),
            corroborated=bool(obj.get("corroborated", False)),
            burst_ratio=None if ratio is None else float(ratio),
            impact_pct=float(obj.get("impact_pct", 0.0)),
            estimated=float(obj.get("estimated", 0.0)),
        )


@dataclass(slots=True)
class _Track:
    """Rolling window, baseline buckets and episode of one (base, side).

    ``total``/``len(window)`` cover every entry, estimates included; ``real_total``/``real_n`` the real
    liquidations only (what the start condition reads unless ``proxy_can_start``).
    """

    base: str
    side: str
    bucket_idx: int
    baseline_len: int
    window: deque[_Entry] = field(default_factory=deque)
    total: float = 0.0
    real_total: float = 0.0
    real_n: int = 0
    bucket_sum: float = 0.0
    history: deque[float] = field(default_factory=deque)
    closed: int = 0
    baseline: float | None = None
    episode: _Episode | None = None
    #: derived, not snapshotted: the first ms of the bucket after ``bucket_idx`` (_NEVER: not known yet), so
    #: the per-liquidation check whether a baseline bucket closed compares instead of dividing
    roll_at: int = _NEVER

    def __post_init__(self) -> None:
        self.history = deque(self.history, maxlen=self.baseline_len)


@dataclass(slots=True)
class _Base:
    """Per-base clock and market context: last trade price, per-second trade buckets for the last window,
    and the taker-flow baseline.

    ``now`` is the base's event time (its own events and the ticks), ``sweep_sec`` the second of that time
    in which its active episodes were last checked. A ring bucket is ``[second, low, high, taker_buy_usd,
    taker_sell_usd]``; the buckets let an episode that starts now look back at the trades since its first
    event without keeping every trade. ``tk_*`` is the taker baseline: the open window-length bucket
    (``tk_idx``, ``tk_buy``, ``tk_sell``), the closed ones and their medians once warmed up.
    """

    name: str
    now: int = _NEVER
    sweep_sec: int = _NEVER
    last_price: float | None = None
    ring: deque[list[float]] = field(default_factory=deque)
    long: _Track | None = None
    short: _Track | None = None
    active: list[_Track] = field(default_factory=list)
    tk_idx: int = _NEVER
    tk_next: int = _NEVER  # first ms of the bucket after tk_idx: the trade path compares, never divides
    tk_buy: float = 0.0
    tk_sell: float = 0.0
    tk_hist_buy: deque[float] = field(default_factory=deque)
    tk_hist_sell: deque[float] = field(default_factory=deque)
    tk_closed: int = 0
    tk_base_buy: float | None = None
    tk_base_sell: float | None = None


@dataclass(slots=True)
class _Proxy:
    """One instrument of a proxy venue: its last OI (contracts, USD per contract) and the taker flow since."""

    base: str
    ts: int
    qty: float
    unit: float | None
    buy: float = 0.0
    sell: float = 0.0

    def to_json(self) -> list[Any]:
        return [self.base, self.ts, self.qty, self.unit, self.buy, self.sell]

    @classmethod
    def from_json(cls, obj: list[Any]) -> _Proxy:
        unit = obj[3]
        return cls(str(obj[0]), int(obj[1]), float(obj[2]), None if unit is None else float(unit),
                   float(obj[4]), float(obj[5]))


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
        self._top = len(steps) - 1
        self._fraction = cfg.corroborated_fraction
        self._burst_k = cfg.taker_burst_multiplier
        self._impact_p = cfg.min_price_impact_pct
        self._strong_k = cfg.strong_taker_burst_multiplier
        self._strong_p = cfg.strong_price_impact_pct
        self._proxy_venues = frozenset(cfg.proxy_venues)
        self._proxy_start = cfg.proxy_can_start
        self._dominance = cfg.proxy_dominance
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
        #: proxy venues' instruments by (venue, symbol)
        self._proxies: dict[tuple[str, str], _Proxy] = {}
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

    # ------------------------------------------------------------------ corroboration

    def corroboration(self, base: str, side: str) -> tuple[float | None, float]:
        """``(taker_burst_ratio, price_impact_pct)`` of ``base``'s ``side`` window now (see the module doc)."""
        bs = self._bases.get(base)
        track = None if bs is None else (bs.long if side == "long" else bs.short)
        if bs is None or track is None:
            return None, 0.0
        return self._measure(bs, track)

    def _measure(self, bs: _Base, track: _Track) -> tuple[float | None, float]:
        """One scan of the per-second trade ring: taker flow closing ``track``'s side over the window vs its
        baseline, and the trade-price move in the liquidated direction since the window's first entry."""
        now = bs.now
        self._roll_taker(bs, now)
        long = track.side == "long"
        after = (now - self._window_ms) // 1000  # seconds after this one are (mostly) inside the window
        first = self._first_counted(track.window)
        start_price = None if first is None else (first[5] if first[5] is not None else first[4])
        start_sec = after + 1 if first is None else first[0] // 1000
        flow = 0.0
        extreme = start_price
        for sec, low, high, buy, sell in reversed(bs.ring):
            if sec <= after and sec < start_sec:
                break
            if sec > after:
                flow += sell if long else buy
            if sec >= start_sec and extreme is not None:
                extreme = min(extreme, low) if long else max(extreme, high)
        impact = 0.0
        if start_price is not None and extreme is not None and start_price > 0:
            impact = (start_price - extreme if long else extreme - start_price) / start_price * 100
        baseline = bs.tk_base_sell if long else bs.tk_base_buy
        ratio = flow / baseline if baseline is not None and baseline > 0 else None
        return ratio, impact

    def _corroborates(self, ratio: float | None, impact: float) -> bool:
        return ratio is not None and ratio >= self._burst_k and impact >= self._impact_p

    def _strong(self, ratio: float | None, impact: float) -> bool:
        return (
            self._corroborates(ratio, impact)
            and ratio is not None
            and ratio >= self._strong_k
            and impact >= self._strong_p
        )

    def _roll_taker(self, bs: _Base, now: int) -> None:
        """Close the taker-flow buckets that ``now`` has left behind; recompute the medians."""
        idx = now // self._window_ms
        bs.tk_next = (idx + 1) * self._window_ms
        if bs.tk_idx == _NEVER:
            bs.tk_idx = idx
            return
        gap = idx - bs.tk_idx
        if gap <= 0:
            return
        bs.tk_hist_buy.append(bs.tk_buy)
        bs.tk_hist_sell.append(bs.tk_sell)
        empties = min(gap - 1, self.config.baseline_buckets)
        if empties:
            bs.tk_hist_buy.extend([0.0] * empties)
            bs.tk_hist_sell.extend([0.0] * empties)
        bs.tk_closed += gap
        bs.tk_idx = idx
        bs.tk_buy = bs.tk_sell = 0.0
        if bs.tk_closed >= self._warmup:
            bs.tk_base_buy = _median(bs.tk_hist_buy)
            bs.tk_base_sell = _median(bs.tk_hist_sell)

    # ------------------------------------------------------------------ the Detector interface

    def on_event(self, event: MarketEvent) -> list[Alert]:
        """Liquidations feed the windows; trades update price and taker volume; open interest of
        ``proxy_venues`` feeds the estimates; others are ignored."""
        # exact-type checks first (cheaper than isinstance) for the two hot types; subclasses fall through
        if type(event) is Trade:
            return self._on_trade(event)
        if type(event) is Liquidation:
            return self._on_liquidation(event)
        if isinstance(event, Trade):
            return self._on_trade(event)
        if isinstance(event, Liquidation):
            return self._on_liquidation(event)
        if isinstance(event, OpenInterest) and event.venue in self._proxy_venues:
            return self._on_open_interest(event)
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

    def _new_base(self, name: str, now: int) -> _Base:
        n = self.config.baseline_buckets
        return _Base(name=name, now=now, tk_hist_buy=deque(maxlen=n), tk_hist_sell=deque(maxlen=n))

    def _base(self, name: str) -> _Base:
        bs = self._bases.get(name)
        if bs is None:
            # a new base starts at the latest tick: time the runtime has already let pass for everyone
            bs = self._bases[name] = self._new_base(name, self._now)
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
        bs = self._bases.get(ev.base) or self._base(ev.base)
        alerts = self._advance(bs, ev.ts)
        price, notional = money(ev)
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
        # the taker baseline's open bucket (late trades too, like late liquidations)
        if bs.now >= bs.tk_next:
            self._roll_taker(bs, bs.now)
        if buy:
            bs.tk_buy += notional
        else:
            bs.tk_sell += notional
        if self._proxies and ev.venue in self._proxy_venues:
            proxy = self._proxies.get((ev.venue, ev.symbol))
            if proxy is not None:
                if buy:
                    proxy.buy += notional
                else:
                    proxy.sell += notional
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
        bs = self._bases.get(ev.base) or self._base(ev.base)
        ts = ev.ts
        if ts > bs.now and ts // 1000 == bs.sweep_sec:
            bs.now = ts  # all that _advance does within the second already swept (most liquidations)
            alerts: list[Alert] = []
        else:
            alerts = self._advance(bs, ts) or []
        price, notional = money(ev)
        return self._add(bs, ev.side, ts, notional, ev.venue, ev.sampled, price, False, alerts)

    def _on_open_interest(self, ev: OpenInterest) -> list[Alert]:
        """A proxy venue's OI update: estimate the forced closes since its previous update (module doc)."""
        bs = self._base(ev.base)
        alerts = self._advance(bs, ev.ts) or []
        qty = float(ev.oi_qty)
        unit = float(ev.oi_usd) / qty if ev.oi_usd is not None and qty > 0 else None
        key = (ev.venue, ev.symbol)
        proxy = self._proxies.get(key)
        if proxy is None:
            self._proxies[key] = _Proxy(ev.base, ev.ts, qty, unit)
            return alerts
        prev_ts, prev_qty, prev_unit = proxy.ts, proxy.qty, proxy.unit
        buy, sell = proxy.buy, proxy.sell
        proxy.ts, proxy.qty, proxy.buy, proxy.sell = max(prev_ts, ev.ts), qty, 0.0, 0.0
        if unit is not None:
            proxy.unit = unit
        price = unit if unit is not None else prev_unit
        drop = prev_qty - qty
        if drop <= 0 or price is None or not 0 <= ev.ts - prev_ts <= self._window_ms:
            return alerts
        side: LiquidatedSide
        if sell > 0 and sell >= self._dominance * buy:
            side = "long"
        elif buy > 0 and buy >= self._dominance * sell:
            side = "short"
        else:
            return alerts
        estimate = min(drop * price, abs(sell - buy))
        return self._add(bs, side, ev.ts, estimate, ev.venue + ESTIMATE_SUFFIX, False, price, True, alerts)

    def _add(
        self,
        bs: _Base,
        side: LiquidatedSide,
        ts: int,
        notional: float,
        label: str,
        sampled: bool,
        price: float,
        estimated: bool,
        alerts: list[Alert],
    ) -> list[Alert]:
        """Fold one liquidation (or estimate) into its (base, side) window; start or escalate episodes."""
        now = bs.now
        if side == "long":
            track, other = bs.long, bs.short
        else:
            track, other = bs.short, bs.long
        if track is None:
            track = _Track(bs.name, side, now // self._window_ms, self.config.baseline_buckets)
            if side == "long":
                bs.long = track
            else:
                bs.short = track
        # the three checks below call out only when there is something to do (they run per liquidation)
        if now >= track.roll_at:
            self._roll(track, now)
        window = track.window
        limit = now - self._window_ms
        if window and window[0][0] <= limit:
            self._expire(track, now)
        if track.episode is not None and track.episode.quiet_since is not None:
            ended = self._check_end(track, now)
            if ended is not None:
                alerts.append(ended)

        if ts <= limit:
            self.late_events += 1
            return alerts
        entry: _Entry = (ts, notional, label, sampled, price, bs.last_price, estimated)
        if not window or ts >= window[-1][0]:
            window.append(entry)
        else:
            self._insert_late(window, entry)
        track.total += notional
        counted = not estimated or self._proxy_start
        if not estimated:
            track.real_total += notional
            track.real_n += 1
        if counted:
            track.bucket_sum += notional

        if other is not None and other.episode is not None:
            other.episode.by_side[side] += notional

        ep = track.episode
        if ep is None:
            if counted:
                self._maybe_start(bs, track, other, ts, alerts)
            return alerts

        ep.notional += notional
        ep.by_venue[label] = ep.by_venue.get(label, 0.0) + notional
        ep.by_side[side] += notional
        if estimated:
            ep.estimated += notional
        else:
            ep.events += 1
            if sampled:
                ep.sampled = True
            # plain comparisons instead of min()/max() here and below (PLR1730): ~40 ns each per liquidation,
            # and "if b < a: a = b" is exactly a = min(a, b) (min keeps the first unless a later one is smaller)
            if side == "long":
                if price < ep.price_extreme:  # noqa: PLR1730
                    ep.price_extreme = price
            elif price > ep.price_extreme:
                ep.price_extreme = price
        if track.total > ep.peak_window:  # noqa: PLR1730
            ep.peak_window = track.total
        if not counted:
            return alerts  # an estimate is reported, it does not decide (module doc)
        if ts > ep.last_ts:  # noqa: PLR1730
            ep.last_ts = ts
        window_counted = track.total if self._proxy_start else track.real_total  # _counted, inlined
        if ep.quiet_since is not None and window_counted >= ep.end_level:
            ep.quiet_since = None
        ratio = window_counted / ep.threshold
        # the severity step can only rise when the ratio reaches the next step (steps strictly increase), so
        # the full _level scan runs only then; a negative step (none is ever stored) always rescans
        if ep.step < 0 or (ep.step < self._top and ratio >= self._steps[ep.step + 1]):
            step = self._level(ratio)
        else:
            step = ep.step
        if step > ep.step:
            ep.step = step
            level = min(step + self._note(ep, *self._measure(bs, track)), self._top)
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
            track.roll_at = (track.bucket_idx + 1) * self._window_ms  # gap <= 0 exactly while now < roll_at
            return
        track.roll_at = (idx + 1) * self._window_ms
        track.history.append(track.bucket_sum)
        empties = min(gap - 1, self.config.baseline_buckets)
        if empties:
            track.history.extend([0.0] * empties)
        track.closed += gap
        track.bucket_idx = idx
        track.bucket_sum = 0.0
        if track.closed >= self._warmup:
            track.baseline = _median(track.history)

    def _expire(self, track: _Track, now: int) -> None:
        """Drop events that left the window at ``now``; note the exact moment an episode's window went quiet."""
        limit = now - self._window_ms
        window = track.window
        if not window or window[0][0] > limit:
            return
        ep = track.episode
        proxy_start = self._proxy_start
        while window and window[0][0] <= limit:
            entry = window.popleft()
            track.total -= entry[1]
            if not entry[6]:
                track.real_total -= entry[1]
                track.real_n -= 1
            if ep is not None and ep.quiet_since is None and (
                (track.total if proxy_start else track.real_total) < ep.end_level  # _counted, inlined
            ):
                ep.quiet_since = entry[0] + self._window_ms
        if not window:
            track.total = 0.0  # no float residue once the window is empty
        if not track.real_n:
            track.real_total = 0.0

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

    def _maybe_start(self, bs: _Base, track: _Track, other: _Track | None, ts: int, alerts: list[Alert]) -> None:
        """The start condition of the module doc, on the counted part of the window."""
        counted = self._counted(track)
        n = len(track.window) if self._proxy_start else track.real_n
        if n < self._min_events:
            return
        threshold = self._threshold(track)
        if counted >= threshold:
            ratio, impact = self._measure(bs, track)
            alerts.append(self._start(bs, track, other, threshold, ts, "threshold", ratio, impact))
        elif counted >= self._fraction * threshold:
            ratio, impact = self._measure(bs, track)
            if self._corroborates(ratio, impact):
                alerts.append(self._start(bs, track, other, threshold, ts, "corroborated", ratio, impact))

    def _first_counted(self, window: deque[_Entry]) -> _Entry | None:
        """The oldest entry of the window that counts (module doc): where an episode would start."""
        for entry in window:
            if self._proxy_start or not entry[6]:
                return entry
        return None

    def _counted(self, track: _Track) -> float:
        """The part of the window that decides: real liquidations, plus estimates with ``proxy_can_start``."""
        return track.total if self._proxy_start else track.real_total

    def _note(self, ep: _Episode, ratio: float | None, impact: float) -> int:
        """Record a corroboration measurement in the episode; 1 when it is strong (one severity step up)."""
        ep.burst_ratio = _max_opt(ep.burst_ratio, ratio)
        ep.impact_pct = max(ep.impact_pct, impact)
        if self._corroborates(ratio, impact):
            ep.corroborated = True
        return 1 if self._strong(ratio, impact) else 0

    def _start(
        self,
        bs: _Base,
        track: _Track,
        other: _Track | None,
        threshold: float,
        ts: int,
        trigger: str,
        ratio: float | None,
        impact: float,
    ) -> Alert:
        window = track.window
        first = self._first_counted(window)
        assert first is not None  # a start needs min_events counted entries
        start_ms = first[0]
        long = track.side == "long"
        price_start = first[5] if first[5] is not None else first[4]
        extreme = price_start
        by_venue: dict[str, float] = {}
        sampled = False
        estimated = total = 0.0
        last_ts = start_ms
        for e_ts, notional, label, e_sampled, price, _ref, e_estimated in window:
            if e_ts < start_ms:
                continue  # estimates older than the episode's first liquidation are not part of it
            total += notional
            by_venue[label] = by_venue.get(label, 0.0) + notional
            if e_estimated:
                estimated += notional
            if e_estimated and not self._proxy_start:
                continue
            last_ts = max(last_ts, e_ts)
            if not e_estimated:
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
        step = self._level(self._counted(track) / threshold)
        ep = _Episode(
            episode_id=digest(f"cascade|{track.base}|{track.side}|{start_ms}"),
            start_ms=start_ms,
            trigger_ms=ts,
            last_ts=last_ts,
            threshold=threshold,
            end_level=self._end_fraction * threshold,
            level=step,
            notional=total,
            events=track.real_n,
            by_venue=by_venue,
            by_side={track.side: total, other_side: other_notional},
            peak_window=total,
            price_start=price_start,
            price_extreme=extreme,
            taker_buy=taker_buy,
            taker_sell=taker_sell,
            sampled=sampled,
            step=step,
            trigger=trigger,
            estimated=estimated,
        )
        ep.level = min(step + self._note(ep, ratio, impact), self._top)
        track.episode = ep
        self._active[(track.base, track.side)] = track
        bs.active.append(track)
        return self._alert(track, ep, "cascade_started", level=ep.level, ts=ts, window_end=ts, now=bs.now)

    # ------------------------------------------------------------------ alerts

    def _metrics(self, track: _Track, ep: _Episode, kind: str) -> dict[str, Any]:
        """The numbers behind an alert.

        ``notional_usd`` episode total of the cascade's side, estimates included; ``events`` its real
        liquidations; ``by_venue`` venue -> USD of that side, a proxy venue's estimate under
        ``"<venue>~est"``; ``by_side`` long/short -> USD of this base liquidated during the episode;
        ``estimated`` whether a proxy venue's estimate is included and ``estimated_usd`` (only then) its part
        of ``notional_usd``;
        ``peak_notional_per_min`` highest rolling-window notional scaled to one minute;
        ``price_start``/``price_extreme``/``price_change_pct`` last trade price before the first event
        (else the first liquidation price), the low (long) or high (short) since, and the move in percent;
        ``taker_sell_usd``/``taker_buy_usd`` trade flow since the start; ``taker_burst_ratio`` (None while
        the taker baseline is cold or zero) and ``price_impact_pct`` the corroboration measurements (the
        strongest seen at the start and at each severity step, module doc), ``corroborated`` whether one
        of them met the corroboration test, ``trigger`` ``"threshold"`` or ``"corroborated"`` (how the
        episode started); ``window_notional_usd``/``window_events`` the rolling window now (notional
        with estimates, events without); ``threshold_usd`` the frozen threshold; ``lower_bound`` true when
        a contributing feed is sampled (sums are then minimums); ``duration_s`` (ended only) the span from
        the first to the last liquidation (or estimate) of the episode.
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
            "estimated": ep.estimated > 0,
            "peak_notional_per_min": round(ep.peak_window * self._per_min, 2),
            "window_notional_usd": round(max(track.total, 0.0), 2),
            "window_events": track.real_n,
            "price_start": ep.price_start,
            "price_extreme": ep.price_extreme,
            "price_change_pct": round(change, 4),
            "taker_sell_usd": round(ep.taker_sell, 2),
            "taker_buy_usd": round(ep.taker_buy, 2),
            "taker_burst_ratio": None if ep.burst_ratio is None else round(ep.burst_ratio, 2),
            "price_impact_pct": round(ep.impact_pct, 4),
            "corroborated": ep.corroborated,
            "trigger": ep.trigger,
            "threshold_usd": round(ep.threshold, 2),
            "window_s": self._window_ms / 1000,
            "lower_bound": ep.sampled,
        }
        if ep.estimated > 0:
            metrics["estimated_usd"] = round(ep.estimated, 2)
        if kind == "cascade_ended":
            metrics["duration_s"] = (ep.last_ts - ep.start_ms) / 1000
        return metrics

    def _alert(
        self, track: _Track, ep: _Episode, kind: str, *, level: int, ts: int, window_end: int, now: int
    ) -> Alert:
        severity: Severity = SEVERITIES[level]
        stage = {"cascade_started": "started", "cascade_ended": "ended"}.get(kind, f"escalated:{severity}")
        metrics = self._metrics(track, ep, kind)
        venues = tuple(sorted({_venue_of(label) for label in ep.by_venue}))
        return Alert(
            alert_id=digest(f"cascade|{track.base}|{track.side}|{ep.start_ms}|{stage}"),
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
        estimate = ""
        if ep.estimated > 0:
            proxies = ", ".join(sorted(_venue_of(v) for v in ep.by_venue if v.endswith(ESTIMATE_SUFFIX)))
            estimate = f", incl. ~{format_usd(ep.estimated)} estimated from {proxies} trades and OI"
        if kind == "cascade_started":
            corroboration = ""
            if ep.trigger == "corroborated" and ep.burst_ratio is not None:
                flow = "sells" if track.side == "long" else "buys"
                move = "drop" if track.side == "long" else "rise"
                corroboration = (
                    f"; below the {format_usd(ep.threshold)} threshold but corroborated by taker {flow} at "
                    f"{ep.burst_ratio:.1f}x baseline and a {ep.impact_pct:.1f}% price {move}"
                )
            return (
                f"{what} started: {at_least}{format_usd(track.total)} liquidated in {window} across "
                f"{', '.join(venues)} ({track.real_n} events){estimate}, {price}{corroboration}"
            )
        if kind == "cascade_escalated":
            counted = self._counted(track)
            return (
                f"{what} escalated to {SEVERITIES[ep.level]}: {at_least}{format_usd(counted)} "
                f"liquidated in the last {window} ({counted / ep.threshold:.1f}x the "
                f"{format_usd(ep.threshold)} threshold), {format_usd(ep.notional)} since the start"
                f"{estimate}, {price}"
            )
        extreme = f"{'low' if track.side == 'long' else 'high'} {format_price(ep.price_extreme)}"
        return (
            f"{what} ended after {format_duration(metrics['duration_s'])}: {at_least}"
            f"{format_usd(ep.notional)} total across {', '.join(venues)} ({ep.events} events){estimate}, "
            f"peak {format_usd(metrics['peak_notional_per_min'])}/min, {price} ({extreme})"
        )

    # ------------------------------------------------------------------ state

    def snapshot(self) -> dict[str, Any]:
        """The whole state as JSON-compatible data (lists, numbers, strings, None)."""
        bases: list[list[Any]] = []
        tracks: list[dict[str, Any]] = []
        for name, bs in self._bases.items():
            taker = {
                "idx": bs.tk_idx,
                "buy": bs.tk_buy,
                "sell": bs.tk_sell,
                "hist_buy": list(bs.tk_hist_buy),
                "hist_sell": list(bs.tk_hist_sell),
                "closed": bs.tk_closed,
                "base_buy": bs.tk_base_buy,
                "base_sell": bs.tk_base_sell,
            }
            bases.append([name, bs.last_price, [list(b) for b in bs.ring], bs.now, bs.sweep_sec, taker])
            for track in (bs.long, bs.short):
                if track is None:
                    continue
                tracks.append(
                    {
                        "base": track.base,
                        "side": track.side,
                        "window": [list(e) for e in track.window],
                        "total": track.total,
                        "real_total": track.real_total,
                        "real_n": track.real_n,
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
            "proxies": [[venue, symbol, proxy.to_json()] for (venue, symbol), proxy in self._proxies.items()],
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Replace the state with a snapshot's; raises ValueError if it was taken with another window.

        Version-1 snapshots (before corroboration and estimates) are accepted: their windows hold only
        real liquidations, and the taker baseline and the proxy venues' OI start cold.
        """
        if snapshot.get("version") not in _SUPPORTED_SNAPSHOTS:
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
            bs = self._new_base(str(name), now)
            bs.sweep_sec = sweep_sec
            bs.last_price = None if last_price is None else float(last_price)
            bs.ring = deque([int(b[0]), float(b[1]), float(b[2]), float(b[3]), float(b[4])] for b in ring)
            if len(entry) > 5:
                taker = entry[5]
                bs.tk_idx = int(taker["idx"])
                if bs.tk_idx != _NEVER:
                    bs.tk_next = (bs.tk_idx + 1) * self._window_ms
                bs.tk_buy = float(taker["buy"])
                bs.tk_sell = float(taker["sell"])
                bs.tk_hist_buy.extend(float(x) for x in taker["hist_buy"])
                bs.tk_hist_sell.extend(float(x) for x in taker["hist_sell"])
                bs.tk_closed = int(taker["closed"])
                bs.tk_base_buy = None if taker["base_buy"] is None else float(taker["base_buy"])
                bs.tk_base_sell = None if taker["base_sell"] is None else float(taker["base_sell"])
            self._bases[bs.name] = bs
        for obj in snapshot["tracks"]:
            window: deque[_Entry] = deque(
                (int(e[0]), float(e[1]), str(e[2]), bool(e[3]), float(e[4]),
                 None if e[5] is None else float(e[5]), bool(e[6]) if len(e) > 6 else False)
                for e in obj["window"]
            )
            total = float(obj["total"])
            track = _Track(
                base=obj["base"],
                side=obj["side"],
                bucket_idx=int(obj["bucket_idx"]),
                baseline_len=self.config.baseline_buckets,
                window=window,
                total=total,
                real_total=float(obj.get("real_total", total)),
                real_n=int(obj.get("real_n", len(window))),
                bucket_sum=float(obj["bucket_sum"]),
                history=deque(float(x) for x in obj["history"]),
                closed=int(obj["closed"]),
                baseline=None if obj["baseline"] is None else float(obj["baseline"]),
                episode=None if obj["episode"] is None else _Episode.from_json(obj["episode"]),
            )
            owner = self._bases.get(track.base)
            if owner is None:
                owner = self._bases[track.base] = self._new_base(track.base, self._now)
            if track.side == "long":
                owner.long = track
            else:
                owner.short = track
        for base, side in snapshot["active"]:
            bs = self._bases[base]
            active = bs.long if side == "long" else bs.short
            if active is None or active.episode is None:
                raise ValueError(f"cascade snapshot lists {base} {side} as active without an episode")
            self._active[(base, side)] = active
            bs.active.append(active)
        for venue, symbol, obj in snapshot.get("proxies", []):
            self._proxies[(str(venue), str(symbol))] = _Proxy.from_json(obj)
