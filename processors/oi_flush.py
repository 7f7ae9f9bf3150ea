"""OI flush and rebuild detector (DESIGN.md §6, "OI flush and rebuild").

Per base asset, open interest in USD summed over every venue instrument that maps to the base, and a small
state machine per base::

    idle ──(OI ≥ drop_pct below its peak of the last window_s)──▶ flushed ──(OI won back rebuild_pct of the
      ▲                                                             │        flushed amount)──▶ oi_rebuild
      │                                                             ├──(OI held ±hold_band_pct of the trough
      │                                                             │   for hold_s, price range-bound)──▶
      │                                                             │                leverage_reset_holding
      └──────────────── episode closes (floor moves up) ◀───────────┴──(rebuild_within_s after the trough with
                                                                         neither: closes silently)

Exactly one of ``oi_rebuild`` / ``leverage_reset_holding`` follows an ``oi_flush``, or neither when OI
recovers part of the way and stalls (the episode then closes quietly ``rebuild_within_s`` after its
trough, counted in :attr:`OiFlushDetector.expired_episodes`).

Feeds, freshness and "like with like"
    A *feed* is one (venue, instrument) pair, e.g. ``binance:BTC-USDT-PERP``. The detector keeps each
    feed's latest OI (``oi_usd``; when a venue sends only ``oi_qty`` it is valued at the base's latest
    price, else the event is counted in ``unpriced_events`` and skipped) with its event time. A feed is
    *fresh* at time ``t`` while ``ts >= t - stale_after_s``; only fresh feeds are summed. Alerts list
    ``venues_fresh`` / ``venues_stale`` (a venue with one fresh and one stale instrument is in both; the
    exact feeds are in ``feeds_stale``).

    A feed that drops out must not look like a flush, and one that comes back must not look like a
    rebuild. So two moments are only ever compared on the feeds fresh at **both**, and only when those
    common feeds hold at least ``min_coverage_pct`` of the OI *known* at each moment, stale feeds' last
    values included (otherwise the comparison says too little about the market and is skipped: with 80 %
    of the known OI dark, a move of the remaining 20 % is not called a flush). Stale feeds are forgotten
    ``window_s + stale_after_s`` after their last update, and then stop counting as known.

    * *Rolling peak.* Every ``sample_s`` of base time the per-feed values of the fresh feeds are kept (the
      last state seen in each slot). At each OI update the drop from every sample of the last
      ``window_s`` is computed on the feeds that sample shares with now; the sample with the largest drop
      is the pre-flush peak. This is "rebasing on the venue set" done exactly: a venue missing from the
      current sum is also missing from the peak it is compared with, a venue that just rejoined is compared
      only with samples that had it. When every feed is fresh (the usual case) a sample is one float
      compare; the per-feed values are only summed for samples whose feed set differs.
    * *Episode.* A flush freezes the per-feed values at its peak (the episode's feed set). From then on
      every observation compares the episode's feeds fresh now with their own peak values: ``ratio =
      Σ now / Σ peak`` over that subset. The trough is the lowest ratio seen; "flushed amount", "recovered"
      and the holding band are all ratios, so a feed leaving or rejoining changes which feeds are
      compared, never the level being compared. Feeds that appear after the flush are not part of the
      episode. USD figures in alerts are those ratios applied to the peak of the feeds compared now. An
      observation counts only while the episode's fresh feeds hold ``min_coverage_pct`` of its peak OI;
      otherwise it is skipped and the hold is broken (an unobserved stretch is no hold).

Thresholds (per asset: ``[oi_flush]`` and ``[oi_flush.assets.<BASE>]``)
    =====================  ========  ===================================================================
    setting                default   why
    =====================  ========  ===================================================================
    window_s (W)           4 h       CoinGlass aggregate BTC OI, 4 h closes 2025-05-18..11-14: the worst
    drop_pct (X)           8 %       4 h fall was −17.8 % (2025-10-10 20:00 bar), the next worst −4.4 %;
                                     X = 8 % sits between, so only the real flush fires on that history.
    critical_drop_pct      15 %      Deeper than any move except 2025-10-10 (critical); else warning.
    rebuild_pct (R)        50 %      Half of what was flushed back: the market re-levered, not drifted.
    rebuild_within_s (T)   24 h      A day to re-lever. After 10-10 OI won back at most 36 % of the flush
                                     in the following 10 days (69.8 → 75.5 B, 40 h after the trough).
    hold_band_pct          ±3 %      Twice the p90 of the 4 h OI change (median 0.5 %, p90 1.5 %).
    hold_s (T_hold)        12 h      Three 4 h bars / half a day of positions not coming back.
    hold_price_range_pct   4 %       BTC 12 h high-low range: median 1.7 %, p90 3.4 % (May-Nov 2025):
                                     above 4 % price is still trending, not stabilising.
    stale_after_s          120 s     Binance OI is polled every 10 s: 12 missed polls.
    min_coverage_pct       50 %      A comparison must speak for at least half of the known market;
                                     one large venue (Binance) going dark must not blind the detector.
    sample_s               60 s      History resolution: 241 samples for a 4 h window per base.
    =====================  ========  ===================================================================

    The same data shows why per-venue freshness matters: several 4 h bars (2025-07-09 20:00, 07-10 12:00,
    08-20 00:00) have an intrabar OI low 9-13 % under the open and a close within 1 % of it, most likely a
    venue missing from the aggregate for a moment. A detector on a single aggregate would call those
    flushes.

    On those closes (``tests/unit/test_oi_flush.py``, one feed, ``stale_after_s`` = one bar) the detector
    fires exactly twice in six months: ``oi_flush`` at 2025-10-11 00:00 UTC (85.77 B → 70.51 B, −17.8 %,
    critical) and ``leverage_reset_holding`` at 12:00 (trough 69.80 B, price range 2.2 %).

Holding, precisely
    The hold starts at the flush (the flush point is its own trough) and is restarted at an observation
    whenever it breaks: OI left ``reference × (1 ± hold_band_pct)`` (the reference is the trough when the
    hold started; a deeper low restarts the hold at the new trough), price traded outside a
    ``hold_price_range_pct`` range since the hold started (restart at that trade), or the episode's feeds
    lost coverage (stale). ``leverage_reset_holding`` fires at exactly ``hold start + hold_s`` (on a tick
    or before the next event is folded in), not when the next event happens to arrive. Price comes from
    trades, funding mark prices and ``oi_usd / oi_qty`` of OI events; with no price at all the price
    condition is not checked and the alert says so (``price_range_pct`` null).

Time and lateness
    Time is per base, as in :mod:`processors.cascade`: a base's ``now`` is the maximum of its own events'
    ``ts`` (any type) and of every tick. Before an event is folded in, time-driven transitions up to its
    ``ts`` are applied (the hold deadline, coverage loss, episode close), so alerts do not depend on how
    often ticks come. An OI event older than its feed's latest is ignored and counted in ``late_events``;
    an event older than the base's ``now`` but newer than its feed's update is applied at ``now``.
    Observations happen at OI events only: a feed going stale changes which feeds count, it is not
    itself a move of OI.

Numbers
    OI and prices are floats inside (converted once per event); alerts round USD to cents and percentages
    to 4 decimals. Floats round-trip exactly through JSON, so a restored detector continues bit for bit.
    Sums always iterate feeds in first-seen order (dicts, never sets), so results do not depend on hash
    seeds.

Alerts
    ``oi_flush`` (warning; critical from ``critical_drop_pct``), ``oi_rebuild`` (warning: risk of another
    flush), ``leverage_reset_holding`` (info). ``alert_id = sha256("oi_flush|{base}|{flush_ms}|{stage}")
    [:32]`` with stage ``flush``, ``rebuild`` or ``holding``; ``metrics.episode_id`` is
    ``sha256("oi_flush|{base}|{flush_ms}")[:32]``. Windows: flush = peak time .. trigger; rebuild = trough
    time .. trigger; holding = hold start .. hold start + hold_s. See :meth:`OiFlushDetector._metrics`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from flushwatch.config import OiFlushConfig, OiFlushThresholds
from flushwatch.events import Alert, Funding, Liquidation, MarketEvent, OpenInterest, Severity, Trade
from processors.base import Detector
from processors.common import (
    PerAsset,
    digest,
    feed_key,
    format_duration,
    format_price,
    format_signed_pct,
    format_usd,
    ms,
    price_of,
)

__all__ = ["OiFlushDetector"]

_SNAPSHOT_VERSION = 1
_NEVER = -(2**62)
#: thresholds are met at equality: a 50 % rebuild computed as 0.49999999999999994 counts
_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class _Params:
    window_ms: int
    drop: float
    critical: float
    rebuild: float
    rebuild_ms: int
    band: float
    hold_ms: int
    price_range: float
    stale_ms: int
    coverage: float
    sample_ms: int

    @classmethod
    def of(cls, t: OiFlushThresholds) -> _Params:
        if t.critical_drop_pct < t.drop_pct:
            raise ValueError(
                f"oi_flush.critical_drop_pct ({t.critical_drop_pct}) must be >= drop_pct ({t.drop_pct})"
            )
        return cls(
            window_ms=ms(t.window_s),
            drop=t.drop_pct / 100,
            critical=t.critical_drop_pct / 100,
            rebuild=t.rebuild_pct / 100,
            rebuild_ms=ms(t.rebuild_within_s),
            band=t.hold_band_pct / 100,
            hold_ms=ms(t.hold_s),
            price_range=t.hold_price_range_pct / 100,
            stale_ms=ms(t.stale_after_s),
            coverage=t.min_coverage_pct / 100,
            sample_ms=ms(t.sample_s),
        )


@dataclass(slots=True)
class _Sample:
    """The fresh feeds' OI at one moment (the last state of a ``sample_s`` slot) and the price then."""

    slot: int
    ts: int
    values: dict[str, float]
    price: float | None
    #: the latest OI of every feed still remembered then, stale ones included: the "known market"
    known: float
    total: float = 0.0
    keys: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        self.total = sum(self.values.values())
        self.keys = frozenset(self.values)

    def to_json(self) -> list[Any]:
        return [self.slot, self.ts, [[k, v] for k, v in self.values.items()], self.price, self.known]

    @classmethod
    def from_json(cls, obj: list[Any]) -> _Sample:
        return cls(
            slot=int(obj[0]),
            ts=int(obj[1]),
            values={str(k): float(v) for k, v in obj[2]},
            price=None if obj[3] is None else float(obj[3]),
            known=float(obj[4]),
        )


@dataclass(slots=True)
class _Episode:
    """One flush and what followed. OI levels are ratios to the episode's per-feed peak (see module doc)."""

    episode_id: str
    flush_ts: int
    peak_ts: int
    peak: dict[str, float]
    peak_price: float | None
    flush_price: float | None
    flush_ratio: float
    ratio: float
    ref_sum: float
    cmp_keys: list[str]
    trough_ratio: float
    trough_ts: int
    trough_price: float | None
    hold_since: int | None
    hold_ref: float
    hold_lo: float
    hold_hi: float
    price_lo: float | None
    price_hi: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "episode_id": self.episode_id,
            "flush_ts": self.flush_ts,
            "peak_ts": self.peak_ts,
            "peak": [[k, v] for k, v in self.peak.items()],
            "peak_price": self.peak_price,
            "flush_price": self.flush_price,
            "flush_ratio": self.flush_ratio,
            "ratio": self.ratio,
            "ref_sum": self.ref_sum,
            "cmp_keys": list(self.cmp_keys),
            "trough_ratio": self.trough_ratio,
            "trough_ts": self.trough_ts,
            "trough_price": self.trough_price,
            "hold_since": self.hold_since,
            "hold_ref": self.hold_ref,
            "hold_lo": self.hold_lo,
            "hold_hi": self.hold_hi,
            "price_lo": self.price_lo,
            "price_hi": self.price_hi,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> _Episode:
        def opt(value: Any) -> float | None:
            return None if value is None else float(value)

        return cls(
            episode_id=str(obj["episode_id"]),
            flush_ts=int(obj["flush_ts"]),
            peak_ts=int(obj["peak_ts"]),
            peak={str(k): float(v) for k, v in obj["peak"]},
            peak_price=opt(obj["peak_price"]),
            flush_price=opt(obj["flush_price"]),
            flush_ratio=float(obj["flush_ratio"]),
            ratio=float(obj["ratio"]),
            ref_sum=float(obj["ref_sum"]),
            cmp_keys=[str(k) for k in obj["cmp_keys"]],
            trough_ratio=float(obj["trough_ratio"]),
            trough_ts=int(obj["trough_ts"]),
            trough_price=opt(obj["trough_price"]),
            hold_since=None if obj["hold_since"] is None else int(obj["hold_since"]),
            hold_ref=float(obj["hold_ref"]),
            hold_lo=float(obj["hold_lo"]),
            hold_hi=float(obj["hold_hi"]),
            price_lo=opt(obj["price_lo"]),
            price_hi=opt(obj["price_hi"]),
        )


@dataclass(slots=True)
class _Base:
    """Clock, feeds, OI history and episode of one base asset."""

    name: str
    now: int
    feeds: dict[str, tuple[int, float]] = field(default_factory=dict)
    samples: deque[_Sample] = field(default_factory=deque)
    price: float | None = None
    #: samples taken before this never serve as a peak again (the end of the last episode)
    floor_ts: int = _NEVER
    episode: _Episode | None = None
    #: derived, not snapshotted: no time-driven change of the episode can happen before this
    wake: int | None = None


class OiFlushDetector(Detector):
    """OI flush, then rebuild or holding, per base across venues. See the module doc."""

    name = "oi_flush"

    def __init__(self, config: OiFlushConfig | None = None, snapshot: dict[str, Any] | None = None) -> None:
        self.config = config if config is not None else OiFlushConfig.model_validate({})
        self._p = PerAsset(self.config, self.config.assets, OiFlushThresholds, _Params.of)
        self._reset()
        if snapshot is not None:
            self.restore(snapshot)

    def _reset(self) -> None:
        self._now = _NEVER
        self._bases: dict[str, _Base] = {}
        #: OI events older than their feed's latest update (ignored)
        self.late_events = 0
        #: OI events with neither ``oi_usd`` nor a known price to value ``oi_qty`` (ignored)
        self.unpriced_events = 0
        #: episodes that closed with neither a rebuild nor a hold
        self.expired_episodes = 0

    # ------------------------------------------------------------------ the Detector interface

    def on_event(self, event: MarketEvent) -> list[Alert]:
        """OI events feed the sums; trades, funding marks and OI ratios give price; every event moves time."""
        bs = self._bases.get(event.base) or self._base(event.base)
        alerts = self._advance(bs, event.ts)
        # exact-type checks first (cheaper than isinstance) for the two hot types; subclasses fall through
        if type(event) is Trade:
            self._on_price(bs, price_of(event))
        elif type(event) is Liquidation:
            pass  # moves time only
        elif isinstance(event, OpenInterest):
            alerts.extend(self._on_oi(bs, event))
        elif isinstance(event, Trade):
            self._on_price(bs, price_of(event))
        elif isinstance(event, Funding) and event.mark_price is not None:
            self._on_price(bs, float(event.mark_price))
        return alerts

    def on_tick(self, now_ms: int) -> list[Alert]:
        """Advance every base's time; fire holds that reached their deadline, close expired episodes."""
        if now_ms <= self._now:
            return []
        self._now = now_ms
        out: list[Alert] = []
        for bs in self._bases.values():
            out.extend(self._advance(bs, now_ms))
        if len(out) > 1:
            out.sort(key=lambda a: (a.ts, a.base))
        return out

    # ------------------------------------------------------------------ time

    def _base(self, name: str) -> _Base:
        bs = self._bases.get(name)
        if bs is None:
            bs = self._bases[name] = _Base(name=name, now=self._now)
        return bs

    def _advance(self, bs: _Base, t: int) -> list[Alert]:
        if t <= bs.now:
            return []
        out: list[Alert] = []
        ep = bs.episode
        if ep is not None and (bs.wake is None or t >= bs.wake):
            out = self._episode_until(bs, ep, t)
        bs.now = t
        return out

    def _episode_until(self, bs: _Base, ep: _Episode, t: int) -> list[Alert]:
        """Apply what time alone does to an episode up to ``t``: the hold deadline, coverage loss, closing."""
        p = self._p(bs.name)
        expiry = ep.trough_ts + p.rebuild_ms
        loss = self._coverage_loss(bs, ep, p)
        if ep.hold_since is not None:
            deadline = ep.hold_since + p.hold_ms
            if deadline <= t and deadline <= expiry and deadline < loss:
                alert = self._alert(bs, ep, "leverage_reset_holding", ts=deadline, now=t)
                self._close(bs, deadline)
                return [alert]
            if loss <= t:
                ep.hold_since = None  # the episode's feeds went stale: an unobserved stretch is no hold
        if expiry <= t:
            self.expired_episodes += 1
            self._close(bs, expiry)
            return []
        # nothing else can happen before the next of these unless an event changes the state (which resets it)
        bs.wake = expiry if ep.hold_since is None else min(expiry, ep.hold_since + p.hold_ms, loss)
        return []

    def _coverage_loss(self, bs: _Base, ep: _Episode, p: _Params) -> int:
        """The first time at which the episode's fresh feeds hold less than ``min_coverage`` of its peak.

        A feed updated at ``ts`` is fresh through ``ts + stale``; with no OI event in between, the episode's
        coverage only falls, at those moments. Returns a time at or before ``now`` if it is already lost.
        """
        need = p.coverage * sum(ep.peak.values())
        outs = sorted(
            (bs.feeds[k][0] + p.stale_ms + 1, v) for k, v in ep.peak.items() if k in bs.feeds
        )
        candidates = [bs.now] + [so for so, _v in outs]
        for when in candidates:
            covered = sum(v for so, v in outs if so > when)
            if covered < need:
                return when
        return outs[-1][0] if outs else bs.now  # pragma: no cover - the loop always finds the last stale-out

    def _close(self, bs: _Base, at: int) -> None:
        bs.episode = None
        bs.floor_ts = at
        bs.wake = None

    # ------------------------------------------------------------------ OI and price

    def _on_price(self, bs: _Base, price: float) -> None:
        if price <= 0:
            return
        bs.price = price
        ep = bs.episode
        if ep is None or ep.hold_since is None:
            return
        if ep.price_lo is None or ep.price_hi is None:
            ep.price_lo = ep.price_hi = price
            return
        lo = min(ep.price_lo, price)
        hi = max(ep.price_hi, price)
        if (hi - lo) / lo > self._p(bs.name).price_range + _EPS:
            self._restart_hold(bs, ep)  # price is still moving: the hold starts again from here
        else:
            ep.price_lo, ep.price_hi = lo, hi

    def _on_oi(self, bs: _Base, ev: OpenInterest) -> list[Alert]:
        p = self._p(bs.name)
        qty = float(ev.oi_qty)
        if ev.oi_usd is not None:
            value = float(ev.oi_usd)
            if qty > 0 and value > 0:
                self._on_price(bs, value / qty)
        elif bs.price is not None:
            value = qty * bs.price
        else:
            self.unpriced_events += 1
            return []
        if value < 0:
            return []
        key = feed_key(ev.venue, ev.instrument)
        old = bs.feeds.get(key)
        if old is not None and ev.ts < old[0]:
            self.late_events += 1
            return []
        bs.feeds[key] = (ev.ts, value)
        bs.wake = None
        now = bs.now
        limit = now - p.stale_ms
        fresh = {k: v for k, (ts, v) in bs.feeds.items() if ts >= limit}
        ep = bs.episode
        alert = self._detect(bs, fresh, p) if ep is None else self._observe(bs, ep, fresh, p)
        self._sample(bs, fresh, p)
        return [] if alert is None else [alert]

    def _sample(self, bs: _Base, fresh: dict[str, float], p: _Params) -> None:
        now = bs.now
        slot = now // p.sample_ms
        known = sum(v for _ts, v in bs.feeds.values())
        sample = _Sample(slot=slot, ts=now, values=dict(fresh), price=bs.price, known=known)
        samples = bs.samples
        if samples and samples[-1].slot == slot:
            samples[-1] = sample
            return
        samples.append(sample)
        cutoff = now - p.window_ms
        while samples and samples[0].ts < cutoff:
            samples.popleft()
        # once per slot: forget feeds silent for a window past staleness, unless the episode compares them
        old = cutoff - p.stale_ms
        if any(ts < old for ts, _v in bs.feeds.values()):
            keep = set() if bs.episode is None else set(bs.episode.peak)
            bs.feeds = {k: f for k, f in bs.feeds.items() if f[0] >= old or k in keep}

    def _detect(self, bs: _Base, fresh: dict[str, float], p: _Params) -> Alert | None:
        if not fresh:
            return None
        cur_total = sum(fresh.values())
        if cur_total <= 0:
            return None
        need_now = p.coverage * sum(v for _ts, v in bs.feeds.values())
        cur_keys = frozenset(fresh)
        lo = max(bs.now - p.window_ms, bs.floor_ts)
        best: tuple[float, _Sample, float, float] | None = None
        for s in bs.samples:
            if s.ts < lo:
                continue
            if s.keys == cur_keys:
                then_sum, now_sum = s.total, cur_total
            else:
                then_sum = sum(v for k, v in s.values.items() if k in cur_keys)
                now_sum = sum(v for k, v in fresh.items() if k in s.keys)
            if then_sum <= 0 or now_sum < need_now or then_sum < p.coverage * s.known:
                continue
            drop = 1 - now_sum / then_sum
            if best is None or drop > best[0]:
                best = (drop, s, then_sum, now_sum)
        if best is None or best[0] < p.drop - _EPS:
            return None
        _drop, s, then_sum, now_sum = best
        peak = {k: v for k, v in s.values.items() if k in cur_keys}
        ratio = now_sum / then_sum
        now = bs.now
        ep = _Episode(
            episode_id=digest(f"oi_flush|{bs.name}|{now}"),
            flush_ts=now,
            peak_ts=s.ts,
            peak=peak,
            peak_price=s.price,
            flush_price=bs.price,
            flush_ratio=ratio,
            ratio=ratio,
            ref_sum=then_sum,
            cmp_keys=[k for k in fresh if k in peak],
            trough_ratio=ratio,
            trough_ts=now,
            trough_price=bs.price,
            hold_since=now,
            hold_ref=ratio,
            hold_lo=ratio,
            hold_hi=ratio,
            price_lo=bs.price,
            price_hi=bs.price,
        )
        bs.episode = ep
        return self._alert(bs, ep, "oi_flush", ts=now, now=now)

    def _observe(self, bs: _Base, ep: _Episode, fresh: dict[str, float], p: _Params) -> Alert | None:
        cmp_keys = [k for k in ep.peak if k in fresh]
        ref = sum(ep.peak[k] for k in cmp_keys)
        if ref <= 0 or ref < p.coverage * sum(ep.peak.values()):
            ep.hold_since = None
            return None
        now = bs.now
        ratio = sum(fresh[k] for k in cmp_keys) / ref
        ep.ratio, ep.ref_sum, ep.cmp_keys = ratio, ref, cmp_keys
        if ratio < ep.trough_ratio:
            ep.trough_ratio, ep.trough_ts, ep.trough_price = ratio, now, bs.price
        flushed = 1 - ep.trough_ratio
        recovered = (ratio - ep.trough_ratio) / flushed if flushed > 0 else 0.0
        if recovered >= p.rebuild - _EPS and now < ep.trough_ts + p.rebuild_ms:
            alert = self._alert(bs, ep, "oi_rebuild", ts=now, now=now)
            self._close(bs, now)
            return alert
        if ep.hold_since is not None and abs(ratio / ep.hold_ref - 1) <= p.band + _EPS:
            ep.hold_lo = min(ep.hold_lo, ratio)
            ep.hold_hi = max(ep.hold_hi, ratio)
        else:
            self._restart_hold(bs, ep)
        return None

    def _restart_hold(self, bs: _Base, ep: _Episode) -> None:
        """Start a new hold now if OI is within the band of the trough, else none."""
        bs.wake = None
        if ep.ratio <= ep.trough_ratio * (1 + self._p(bs.name).band) + _EPS:
            ep.hold_since = bs.now
            ep.hold_ref = ep.trough_ratio
            ep.hold_lo = ep.hold_hi = ep.ratio
            ep.price_lo = ep.price_hi = bs.price
        else:
            ep.hold_since = None

    # ------------------------------------------------------------------ alerts

    def _freshness(self, bs: _Base, at: int) -> tuple[list[str], list[str], list[str]]:
        limit = at - self._p(bs.name).stale_ms
        fresh = sorted({k.split(":", 1)[0] for k, (ts, _v) in bs.feeds.items() if ts >= limit})
        stale_feeds = sorted(k for k, (ts, _v) in bs.feeds.items() if ts < limit)
        stale = sorted({k.split(":", 1)[0] for k in stale_feeds})
        return fresh, stale, stale_feeds

    def _metrics(self, bs: _Base, ep: _Episode, kind: str, ts: int) -> dict[str, Any]:
        """The numbers behind an alert, on the feeds compared at the last observation (``feeds``).

        Always: ``episode_id``; ``peak_oi_usd`` / ``trough_oi_usd`` / ``oi_usd`` pre-flush peak, lowest point
        so far and current OI (USD); ``flush_pct`` peak→trough in %; ``below_peak_pct`` now vs the peak;
        ``peak_ts`` / ``flush_ts`` / ``trough_ts``; ``price`` / ``price_at_peak`` / ``price_change_pct`` (None
        when unknown); ``feeds``, ``venues_fresh``, ``venues_stale``, ``feeds_stale``.
        ``oi_flush``: ``drop_pct``, ``drop_usd``, ``window_s``, ``threshold_pct``, ``oi_change_ex_price_pct``
        (OI change with the price move taken out: ≈ positions closed).
        ``oi_rebuild``: ``rebuilt_pct`` (% of the flushed amount), ``rebuilt_usd``, ``since_trough_s``,
        ``since_flush_s``, ``threshold_pct``.
        ``leverage_reset_holding``: ``hold_s``, ``band_pct``, ``oi_range_pct`` (high/low of OI during the hold),
        ``price_range_pct`` / ``price_low`` / ``price_high`` (None without price), ``since_flush_s``.
        """
        p = self._p(bs.name)
        ref = ep.ref_sum
        fresh, stale, stale_feeds = self._freshness(bs, ts)
        price = bs.price
        change = None
        if price is not None and ep.peak_price is not None and ep.peak_price > 0:
            change = (price - ep.peak_price) / ep.peak_price * 100
        m: dict[str, Any] = {
            "episode_id": ep.episode_id,
            "peak_oi_usd": round(ref, 2),
            "trough_oi_usd": round(ep.trough_ratio * ref, 2),
            "oi_usd": round(ep.ratio * ref, 2),
            "flush_pct": round((1 - ep.trough_ratio) * 100, 4),
            "below_peak_pct": round((1 - ep.ratio) * 100, 4),
            "peak_ts": ep.peak_ts,
            "flush_ts": ep.flush_ts,
            "trough_ts": ep.trough_ts,
            "price": price,
            "price_at_peak": ep.peak_price,
            "price_change_pct": None if change is None else round(change, 4),
            "feeds": list(ep.cmp_keys),
            "venues_fresh": fresh,
            "venues_stale": stale,
            "feeds_stale": stale_feeds,
        }
        if kind == "oi_flush":
            m["drop_pct"] = round((1 - ep.ratio) * 100, 4)
            m["drop_usd"] = round((1 - ep.ratio) * ref, 2)
            m["window_s"] = p.window_ms / 1000
            m["threshold_pct"] = round(p.drop * 100, 4)
            ex = None
            if change is not None:
                ex = (ep.ratio / (1 + change / 100) - 1) * 100
            m["oi_change_ex_price_pct"] = None if ex is None else round(ex, 4)
        elif kind == "oi_rebuild":
            flushed = 1 - ep.trough_ratio
            m["rebuilt_pct"] = round((ep.ratio - ep.trough_ratio) / flushed * 100, 4)
            m["rebuilt_usd"] = round((ep.ratio - ep.trough_ratio) * ref, 2)
            m["since_trough_s"] = (ts - ep.trough_ts) / 1000
            m["since_flush_s"] = (ts - ep.flush_ts) / 1000
            m["threshold_pct"] = round(p.rebuild * 100, 4)
        else:
            m["hold_s"] = p.hold_ms / 1000
            m["band_pct"] = round(p.band * 100, 4)
            m["oi_range_pct"] = round((ep.hold_hi / ep.hold_lo - 1) * 100, 4) if ep.hold_lo > 0 else None
            rng = None
            if ep.price_lo is not None and ep.price_hi is not None and ep.price_lo > 0:
                rng = round((ep.price_hi - ep.price_lo) / ep.price_lo * 100, 4)
            m["price_range_pct"] = rng
            m["price_low"] = ep.price_lo
            m["price_high"] = ep.price_hi
            m["since_flush_s"] = (ts - ep.flush_ts) / 1000
        return m

    def _alert(self, bs: _Base, ep: _Episode, kind: str, *, ts: int, now: int) -> Alert:
        p = self._p(bs.name)
        stage = {"oi_flush": "flush", "oi_rebuild": "rebuild"}.get(kind, "holding")
        metrics = self._metrics(bs, ep, kind, ts)
        severity: Severity = "info"
        if kind == "oi_flush":
            severity = "critical" if 1 - ep.ratio >= p.critical else "warning"
            window = (ep.peak_ts, ts)
        elif kind == "oi_rebuild":
            severity = "warning"
            window = (ep.trough_ts, ts)
        else:
            window = (ts - p.hold_ms, ts)
        venues = tuple(sorted({k.split(":", 1)[0] for k in ep.cmp_keys}))
        return Alert(
            alert_id=digest(f"oi_flush|{bs.name}|{ep.flush_ts}|{stage}"),
            type=kind,
            severity=severity,
            base=bs.name,
            venues=venues,
            ts=ts,
            emitted_ts=now,
            window_start=window[0],
            window_end=window[1],
            metrics=metrics,
            message=self._message(bs.name, kind, metrics, venues),
        )

    @staticmethod
    def _message(base: str, kind: str, m: dict[str, Any], venues: tuple[str, ...]) -> str:
        peak = format_usd(m["peak_oi_usd"])
        trough = format_usd(m["trough_oi_usd"])
        now = format_usd(m["oi_usd"])
        if kind == "oi_flush":
            text = (
                f"{base} OI flushed {m['drop_pct']:.1f} % in {format_duration((m['flush_ts'] - m['peak_ts']) / 1000)}: "
                f"{peak} → {now} ({format_usd(m['drop_usd'])} of open interest closed) across {', '.join(venues)}"
            )
            if m["price_change_pct"] is not None:
                text += f"; price {format_signed_pct(m['price_change_pct'])}"
                ex = m["oi_change_ex_price_pct"]
                if ex is not None and ex < 0:
                    text += f", so about {-ex:.1f} % of positions were closed"
            return text
        if kind == "oi_rebuild":
            return (
                f"{base} OI rebuilt {m['rebuilt_pct']:.0f} % of the {m['flush_pct']:.0f} % flush within "
                f"{format_duration(m['since_trough_s'])}: {trough} at the trough → {now} now (pre-flush peak "
                f"{peak}); leverage is coming back fast, risk of another flush"
            )
        text = (
            f"{base} leverage reset holding: OI stayed within ±{m['band_pct']:g} % of its {trough} trough for "
            f"{format_duration(m['hold_s'])}, {m['below_peak_pct']:.1f} % below the {peak} pre-flush peak"
        )
        if m["price_range_pct"] is None:
            return text + " (no price seen to confirm stabilisation)"
        return (
            f"{text}, while price held a {m['price_range_pct']:.1f} % range "
            f"({format_price(m['price_low'])}–{format_price(m['price_high'])})"
        )

    # ------------------------------------------------------------------ state

    def snapshot(self) -> dict[str, Any]:
        """The whole state as JSON-compatible data (lists, numbers, strings, None)."""
        return {
            "version": _SNAPSHOT_VERSION,
            "now": self._now,
            "late_events": self.late_events,
            "unpriced_events": self.unpriced_events,
            "expired_episodes": self.expired_episodes,
            "bases": [
                {
                    "name": bs.name,
                    "now": bs.now,
                    "price": bs.price,
                    "floor_ts": bs.floor_ts,
                    "feeds": [[k, ts, v] for k, (ts, v) in bs.feeds.items()],
                    "samples": [s.to_json() for s in bs.samples],
                    "episode": None if bs.episode is None else bs.episode.to_json(),
                }
                for bs in self._bases.values()
            ],
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Replace the state with a snapshot's."""
        if snapshot.get("version") != _SNAPSHOT_VERSION:
            raise ValueError(f"oi_flush snapshot version {snapshot.get('version')!r} is not supported")
        self._reset()
        self._now = int(snapshot["now"])
        self.late_events = int(snapshot["late_events"])
        self.unpriced_events = int(snapshot["unpriced_events"])
        self.expired_episodes = int(snapshot["expired_episodes"])
        for obj in snapshot["bases"]:
            name = str(obj["name"])
            self._bases[name] = _Base(
                name=name,
                now=int(obj["now"]),
                feeds={str(k): (int(ts), float(v)) for k, ts, v in obj["feeds"]},
                samples=deque(_Sample.from_json(s) for s in obj["samples"]),
                price=None if obj["price"] is None else float(obj["price"]),
                floor_ts=int(obj["floor_ts"]),
                episode=None if obj["episode"] is None else _Episode.from_json(obj["episode"]),
            )
