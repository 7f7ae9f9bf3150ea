"""Funding regime detector (DESIGN.md §6, "Funding regime").

Per base asset, the OI-weighted funding across venues, normalised per hour, and two findings:

``funding_normalized``
    A long-biased regime (weighted funding ≥ ``high_pct_8h`` for at least ``regime_min_s``) that returns
    toward flat (≤ ``low_pct_8h`` for ``normalize_confirm_s``): the crowd stopped paying to be long, which
    after a flush is the sign that the leverage has been washed out. Symmetric for short-biased regimes
    (≤ −high, then ≥ −low). The alert carries the OI and price change since the regime began, which is
    how a reader sees whether a flush did the normalising. A regime whose funding lingers between the two
    thresholds for ``regime_timeout_s`` ends without an alert.

``funding_skew``
    Funding stays skewed against the price move: price down more than ``skew_price_pct`` over
    ``skew_window_s`` while weighted funding stays ≥ ``skew_min_pct_8h`` for ``skew_min_s`` (longs are
    crowded and still paying into a falling market: long-squeeze risk), or price up that much while funding
    stays ≤ −``skew_min_pct_8h`` (crowded shorts: short-squeeze risk).

Hysteresis: one alert per transition
    ::

        funding regime:  flat ──(beyond high for regime_min_s)──▶ regime ──(within low for confirm_s)──▶ flat
                                                                   │        [funding_normalized]
                                                                   └──(neither for regime_timeout_s)──▶ flat
        skew (per side): armed ──(condition held skew_min_s)──▶ fired [funding_skew] ──(released)──▶ armed

    A regime fires at most one ``funding_normalized``; a new regime needs funding beyond ``high`` for
    ``regime_min_s`` again. A fired skew is released only by positive evidence that it ended: funding below
    half of ``skew_min_pct_8h`` (in the crowded direction) or the price move back under half of
    ``skew_price_pct``. Funding hovering around the threshold or feeds going stale never re-fire it.

Weighting
    The hourly rate of each venue instrument is ``rate / interval_h`` (Binance 8 h, Hyperliquid 1 h...). Its
    weight is the latest ``oi_usd`` of the same venue instrument (``oi_qty`` × the base's price when a
    venue sends only contracts). Instruments without a known OI get the mean weight of those with one; when
    no OI is known at all the average is equal-weighted. ``weights_known`` in the metrics tells which case
    applied. A funding value older than ``stale_after_s`` (event time) leaves the average; with none fresh
    the funding is unknown: nothing can start or confirm (a regime can still time out, a fired skew stays
    fired).

Thresholds (per asset: ``[funding]`` and ``[funding.assets.<BASE>]``), funding in % per 8 h
    =====================  =========  =================================================================
    setting                default    why
    =====================  =========  =================================================================
    high_pct_8h            0.03       3x the 0.01 %/8h interest baseline that Binance, Bybit, OKX and
                                      Hyperliquid settle at when the premium is small: longs pay a real
                                      premium (≈ 33 % a year).
    low_pct_8h             0.01       Back at (or under) the baseline: the premium is gone.
    regime_min_s           2 h        Funding moves with the premium index over hours; two hours beyond
                                      the threshold is a regime, not a print.
    normalize_confirm_s    30 min     Half an hour of calm funding, not a single dip.
    regime_timeout_s       24 h       A regime that neither heats up nor normalises in a day is over.
    skew_price_pct         3 %        Beyond BTC's p99 4 h close-to-close move (2.6 %; p90 of the 4 h
                                      high-low range 2.0 %, Binance BTCUSDT May-Nov 2025): a real move.
    skew_window_s          4 h        The move must be recent.
    skew_min_pct_8h        0.02       Twice the baseline: still paying a premium, not just the
                                      interest component, into the move.
    skew_min_s (D)         1 h        It persisted past the first reactions.
    stale_after_s          600 s      Ingest emits Binance funding on change or once a minute.
    =====================  =========  =================================================================

Time
    Per base, as in :mod:`processors.cascade` (events of the base and ticks). Conditions are evaluated at
    every event that changes an input, at the exact moments a funding value goes stale, at the exact
    deadlines (``since + duration``) and, while a skew is possible, at minute boundaries (the price
    ``skew_window_s`` ago is read at minute resolution from a per-minute tape). So the alerts, their
    ``ts`` and their metrics do not depend on how often ticks come. Price comes from trades, funding mark
    prices and ``oi_usd / oi_qty``.

Numbers
    Rates, weights and prices are floats inside; metrics show funding in % per 8 h (rounded to 6
    decimals), the hourly fraction and the APR. Alert ids: ``sha256("funding|{base}|normalized|{side}|
    {regime_start_ms}")[:32]`` and ``sha256("funding|{base}|skew|{side}|{condition_start_ms}")[:32]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flushwatch.config import FundingConfig, FundingThresholds
from flushwatch.events import Alert, Funding, Liquidation, MarketEvent, OpenInterest, Trade
from processors.base import Detector
from processors.common import (
    MINUTE_MS,
    MinuteTape,
    PerAsset,
    digest,
    feed_key,
    format_duration,
    format_signed_pct,
    ms,
    price_of,
)

__all__ = ["FundingDetector"]

_SNAPSHOT_VERSION = 1
_NEVER = -(2**62)
#: "no time-driven change pending": later than any event time, so a cached wake-up never fires
_FAR = 2**62
_SIDES = (("long", 1), ("short", -1))


def _pct8h(hourly: float) -> float:
    """Hourly fraction -> percent per 8 hours."""
    return hourly * 8 * 100


def _fmt8h(pct8h: float) -> str:
    return f"{pct8h:+.4f} %/8h".replace("-", "\u2212")


@dataclass(frozen=True, slots=True)
class _Params:
    stale_ms: int
    high: float  # hourly fractions
    low: float
    regime_ms: int
    confirm_ms: int
    timeout_ms: int
    skew_price: float  # fraction
    skew_window_ms: int
    skew_min: float  # hourly fraction
    skew_ms: int

    @classmethod
    def of(cls, t: FundingThresholds) -> _Params:
        if t.low_pct_8h >= t.high_pct_8h:
            raise ValueError(f"funding.low_pct_8h ({t.low_pct_8h}) must be below high_pct_8h ({t.high_pct_8h})")
        per_hour = 1 / 800  # % per 8 h -> fraction per hour
        return cls(
            stale_ms=ms(t.stale_after_s),
            high=t.high_pct_8h * per_hour,
            low=t.low_pct_8h * per_hour,
            regime_ms=ms(t.regime_min_s),
            confirm_ms=ms(t.normalize_confirm_s),
            timeout_ms=ms(t.regime_timeout_s),
            skew_price=t.skew_price_pct / 100,
            skew_window_ms=ms(t.skew_window_s),
            skew_min=t.skew_min_pct_8h * per_hour,
            skew_ms=ms(t.skew_min_s),
        )


@dataclass(slots=True)
class _Regime:
    """A confirmed long- or short-biased funding regime."""

    side: str
    start: int
    confirmed: int
    peak: float
    peak_ts: int
    price_start: float | None
    oi_start: dict[str, float]
    left_beyond_at: int | None = None
    normalize_since: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "side": self.side, "start": self.start, "confirmed": self.confirmed, "peak": self.peak,
            "peak_ts": self.peak_ts, "price_start": self.price_start,
            "oi_start": [[k, v] for k, v in self.oi_start.items()],
            "left_beyond_at": self.left_beyond_at, "normalize_since": self.normalize_since,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> _Regime:
        return cls(
            side=str(obj["side"]), start=int(obj["start"]), confirmed=int(obj["confirmed"]),
            peak=float(obj["peak"]), peak_ts=int(obj["peak_ts"]),
            price_start=None if obj["price_start"] is None else float(obj["price_start"]),
            oi_start={str(k): float(v) for k, v in obj["oi_start"]},
            left_beyond_at=None if obj["left_beyond_at"] is None else int(obj["left_beyond_at"]),
            normalize_since=None if obj["normalize_since"] is None else int(obj["normalize_since"]),
        )


@dataclass(slots=True)
class _Skew:
    since: int | None = None
    active: bool = False


@dataclass(slots=True)
class _Base:
    """Clock, per-instrument funding and OI, price tape and the state machines of one base asset."""

    name: str
    now: int
    tape: MinuteTape
    p: _Params  # the base's thresholds (derived from config, not snapshotted)
    funding: dict[str, tuple[int, float]] = field(default_factory=dict)  # key -> (ts, hourly rate)
    oi: dict[str, float] = field(default_factory=dict)  # key -> latest OI in USD
    price: float | None = None
    regime: _Regime | None = None
    enter_since: dict[str, int | None] = field(default_factory=lambda: {"long": None, "short": None})
    enter_ctx: dict[str, tuple[float | None, dict[str, float]]] = field(default_factory=dict)
    skew: dict[str, _Skew] = field(default_factory=lambda: {"long": _Skew(), "short": _Skew()})
    # derived, not snapshotted: the weighted hourly funding for the current fresh set, and the next moment
    # at which something can change without an event (None: not known, compute it; _FAR: never). See _wake.
    rate: float | None = None
    wake: int | None = None


class FundingDetector(Detector):
    """OI-weighted funding regimes and skews per base across venues. See the module doc."""

    name = "funding"

    def __init__(self, config: FundingConfig | None = None, snapshot: dict[str, Any] | None = None) -> None:
        self.config = config if config is not None else FundingConfig.model_validate({})
        self._p = PerAsset(self.config, self.config.assets, FundingThresholds, _Params.of)
        self._reset()
        if snapshot is not None:
            self.restore(snapshot)

    def _reset(self) -> None:
        self._now = _NEVER
        self._bases: dict[str, _Base] = {}

    # ------------------------------------------------------------------ the Detector interface

    def on_event(self, event: MarketEvent) -> list[Alert]:
        """Funding and OI events feed the average and its weights; trades, marks and OI ratios give price."""
        bs = self._bases.get(event.base) or self._base(event.base)
        alerts = self._advance(bs, event.ts)
        if type(event) is Trade:  # the hot path (~99 % of events): a price, no input of the average
            last = price_of(event)
            if last > 0:
                self._on_price(bs, last)
                alerts.extend(self._evaluate(bs, bs.now))
            return alerts
        if isinstance(event, Liquidation):
            return alerts
        key = feed_key(event.venue, event.instrument)
        inputs = False
        price: float | None = None
        if isinstance(event, Funding):
            old = bs.funding.get(key)
            if event.interval_h > 0 and (old is None or event.ts >= old[0]):
                bs.funding[key] = (event.ts, float(event.rate) / event.interval_h)
                inputs = True
            if event.mark_price is not None:
                price = float(event.mark_price)
        elif isinstance(event, OpenInterest):
            qty = float(event.oi_qty)
            if event.oi_usd is not None:
                usd = float(event.oi_usd)
                if qty > 0 and usd > 0:
                    price = usd / qty
                bs.oi[key] = usd
                inputs = True
            elif bs.price is not None:
                bs.oi[key] = qty * bs.price
                inputs = True
        elif isinstance(event, Trade):  # pragma: no cover - a subclass of Trade; Trade itself is handled above
            price = float(event.price)
        if price is not None and price > 0:
            self._on_price(bs, price)
        elif not inputs:
            return alerts
        if inputs:
            bs.rate = self._weighted(bs)[0]
            bs.wake = None  # the funding map (its stale-outs) and the rate are inputs of _next_change
        alerts.extend(self._evaluate(bs, bs.now))
        return alerts

    @staticmethod
    def _on_price(bs: _Base, price: float) -> None:
        if not bs.tape.entries:
            bs.wake = None  # a non-empty tape is an input of _next_change (the minute marks)
        bs.price = price
        bs.tape.add(bs.now, price)

    def on_tick(self, now_ms: int) -> list[Alert]:
        """Advance every base's time through its stale-outs, deadlines and minute marks."""
        if now_ms <= self._now:
            return []
        self._now = now_ms
        out: list[Alert] = []
        for bs in self._bases.values():
            out.extend(self._advance(bs, now_ms))
        if len(out) > 1:
            out.sort(key=lambda a: (a.ts, a.base, a.type))
        return out

    def current(self, base: str) -> dict[str, Any] | None:
        """The OI-weighted funding of ``base`` as of its latest time (the funding keys of the alerts' metrics:
        ``funding_pct_8h``, ``funding_hourly``, ``funding_apr_pct``, ``by_feed_pct_8h``, ``weights``,
        ``weights_known``, ``feeds``), or None while no fresh funding is known."""
        bs = self._bases.get(base)
        if bs is None or bs.rate is None:
            return None
        return self._common(bs)[0]

    # ------------------------------------------------------------------ time

    def _base(self, name: str) -> _Base:
        bs = self._bases.get(name)
        if bs is None:
            p = self._p(name)
            bs = self._bases[name] = _Base(name=name, now=self._now, tape=MinuteTape(p.skew_window_ms), p=p)
        return bs

    def _advance(self, bs: _Base, t: int) -> list[Alert]:
        if t <= bs.now:
            return []
        wake = bs.wake
        if wake is not None and wake > t:  # the cached wake-up is valid (> now) and still ahead: see _wake
            bs.now = t
            return []
        out: list[Alert] = []
        while True:
            wake = self._wake(bs)
            if wake > t:
                break
            bs.now = wake
            bs.rate = self._weighted(bs)[0]
            out.extend(self._evaluate(bs, t))
        bs.now = t
        return out

    def _wake(self, bs: _Base) -> int:
        """:meth:`_next_change`, cached in ``bs.wake`` until one of its inputs changes.

        Why a cached value stays correct: its inputs are the funding map (each value's stale-out), the
        regime's and the skews' start times (``enter_since``, ``normalize_since``, ``left_beyond_at``,
        ``since``, ``active``), whether a regime exists, the rate and whether the tape has a price; every
        place that changes one of them sets ``bs.wake = None`` (the rate also changes at a processed wake-up,
        after which the wake-up is recomputed anyway). With those fixed, the only remaining input is
        ``now``, and moving ``now`` from ``n0`` to any ``n < W`` (``W`` computed at ``n0``) leaves ``W``
        unchanged: each fixed candidate after ``n0`` is ``>= W > n``, each one at or before ``n0`` is also
        at or before ``n``, and the minute mark after ``n0``, when it is a candidate, is ``>= W > n``, so
        ``n`` is in the same minute as ``n0`` and has the same next mark. A wake-up at or before ``now`` has
        been processed (:meth:`_advance`), so it is recomputed. Trades, ~99 % of events, change none of the
        inputs once the tape has a price and the state machines stay put, so they no longer recompute it.
        """
        wake = bs.wake
        if wake is None or wake <= bs.now:
            wake = bs.wake = self._next_change(bs)
        return wake

    def _next_change(self, bs: _Base) -> int:
        """The next moment after ``now`` at which state can change with no event: a funding value going
        stale, a deadline, or (while a skew is possible) the next minute mark of the price tape; ``_FAR``
        when there is none."""
        p = bs.p
        now = bs.now
        cands = [ts + p.stale_ms + 1 for ts, _r in bs.funding.values()]
        reg = bs.regime
        if reg is None:
            cands.extend(s + p.regime_ms for s in bs.enter_since.values() if s is not None)
        else:
            if reg.normalize_since is not None:
                cands.append(reg.normalize_since + p.confirm_ms)
            if reg.left_beyond_at is not None:
                cands.append(reg.left_beyond_at + p.timeout_ms)
        skews = bs.skew.values()
        cands.extend(s.since + p.skew_ms for s in skews if s.since is not None and not s.active)
        rate = bs.rate
        if bs.tape.entries and rate is not None and (abs(rate) >= p.skew_min / 2 or any(s.active for s in skews)):
            cands.append((now // MINUTE_MS + 1) * MINUTE_MS)
        later = [c for c in cands if c > now]
        return min(later) if later else _FAR

    # ------------------------------------------------------------------ the average

    def _weighted(self, bs: _Base) -> tuple[float | None, list[tuple[str, float, float]], int]:
        """(weighted hourly funding, [(feed, hourly rate, weight share)], feeds with a known OI weight)."""
        limit = bs.now - bs.p.stale_ms
        fresh = [(k, r) for k, (ts, r) in bs.funding.items() if ts >= limit]
        if not fresh:
            return None, [], 0
        known = [bs.oi.get(k) for k, _r in fresh]
        positive = [w for w in known if w is not None and w > 0]
        fill = sum(positive) / len(positive) if positive else 1.0
        weights = [w if w is not None and w > 0 else fill for w in known]
        total = sum(weights)
        rate = sum(w * r for w, (_k, r) in zip(weights, fresh, strict=True)) / total
        parts = [(k, r, w / total) for (k, r), w in zip(fresh, weights, strict=True)]
        return rate, parts, len(positive)

    def _price_move(self, bs: _Base, p: _Params) -> tuple[float | None, float | None]:
        """(price ``skew_window_s`` ago at minute resolution, move since as a fraction)."""
        if bs.price is None:
            return None, None
        ref = bs.tape.price_at(bs.now - p.skew_window_ms)
        if ref is None or ref <= 0:
            return None, None
        return ref, (bs.price - ref) / ref

    # ------------------------------------------------------------------ state machines

    def _evaluate(self, bs: _Base, emitted: int) -> list[Alert]:
        """Apply the state machines at ``bs.now``; ``emitted`` is when the caller learns of it (the tick).

        A change of an input of :meth:`_next_change` (a start time, the regime, a skew) drops the cached
        wake-up; an evaluation that changes none of them, the usual case on a trade, keeps it (see _wake).
        """
        p = bs.p
        now = bs.now
        rate = bs.rate
        out: list[Alert] = []
        changed = False
        reg = bs.regime
        if reg is None:
            enter_since = bs.enter_since
            for side, sign in _SIDES:
                if rate is not None and sign * rate >= p.high:
                    since = enter_since[side]
                    if since is None:
                        since = enter_since[side] = now
                        bs.enter_ctx[side] = (bs.price, dict(bs.oi))
                        changed = True
                    if now - since >= p.regime_ms:
                        price_start, oi_start = bs.enter_ctx.pop(side, (None, {}))
                        bs.regime = _Regime(side=side, start=since, confirmed=now, peak=rate, peak_ts=now,
                                            price_start=price_start, oi_start=oi_start)
                        bs.enter_since = {"long": None, "short": None}
                        bs.enter_ctx.clear()
                        changed = True
                        break
                else:
                    if enter_since[side] is not None:
                        enter_since[side] = None
                        changed = True
                    if bs.enter_ctx:
                        bs.enter_ctx.pop(side, None)
        else:
            sign = 1 if reg.side == "long" else -1
            if rate is not None and sign * rate >= p.high:
                if reg.left_beyond_at is not None:
                    reg.left_beyond_at = None
                    changed = True
                if sign * rate > sign * reg.peak:
                    reg.peak, reg.peak_ts = rate, now
            elif reg.left_beyond_at is None:
                reg.left_beyond_at = now
                changed = True
            if rate is not None and sign * rate <= p.low:
                if reg.normalize_since is None:
                    reg.normalize_since = now
                    changed = True
            elif reg.normalize_since is not None:
                reg.normalize_since = None
                changed = True
            if reg.normalize_since is not None and now - reg.normalize_since >= p.confirm_ms:
                out.append(self._normalized(bs, reg, p, emitted))
                bs.regime = None
                changed = True
            elif reg.left_beyond_at is not None and now - reg.left_beyond_at >= p.timeout_ms:
                bs.regime = None
                changed = True
        # the price move only matters with a known rate (the skews below need both)
        ref, move = (None, None) if rate is None else self._price_move(bs, p)
        for side, sign in _SIDES:
            sk = bs.skew[side]
            if rate is None or move is None:
                if not sk.active and sk.since is not None:
                    sk.since = None
                    changed = True
                continue
            if sk.active:
                if sign * rate < p.skew_min / 2 or sign * move > -p.skew_price / 2:
                    sk.active = False
                    sk.since = None
                    changed = True
                continue
            if sign * rate >= p.skew_min and sign * move <= -p.skew_price:
                if sk.since is None:
                    sk.since = now
                    changed = True
                if now - sk.since >= p.skew_ms:
                    sk.active = True
                    changed = True
                    out.append(self._skew_alert(bs, side, sk.since, ref, move, p, emitted))
            elif sk.since is not None:
                sk.since = None
                changed = True
        if changed:
            bs.wake = None
        return out

    # ------------------------------------------------------------------ alerts

    def _common(self, bs: _Base) -> tuple[dict[str, Any], tuple[str, ...]]:
        rate, parts, known = self._weighted(bs)
        hourly = 0.0 if rate is None else rate
        metrics: dict[str, Any] = {
            "funding_pct_8h": round(_pct8h(hourly), 6),
            "funding_hourly": hourly,
            "funding_apr_pct": round(hourly * 24 * 365 * 100, 4),
            "by_feed_pct_8h": {k: round(_pct8h(r), 6) for k, r, _w in sorted(parts)},
            "weights": {k: round(w, 6) for k, _r, w in sorted(parts)},
            "weights_known": known,
            "feeds": len(parts),
        }
        venues = tuple(sorted({k.split(":", 1)[0] for k, _r, _w in parts}))
        return metrics, venues

    def _normalized(self, bs: _Base, reg: _Regime, p: _Params, emitted: int) -> Alert:
        """``funding_normalized`` metrics: the common ones (``funding_pct_8h`` now, ``funding_hourly``,
        ``funding_apr_pct``, ``by_feed_pct_8h``, ``weights`` (shares), ``weights_known``, ``feeds``) plus
        ``side``, ``regime_start_ts``, ``regime_s``, ``peak_funding_pct_8h``, ``peak_ts``, ``oi_change_pct``
        (instruments with an OI at both ends), ``price_start`` / ``price`` / ``price_change_pct`` and the two
        thresholds."""
        now = bs.now
        metrics, venues = self._common(bs)
        common = [k for k in reg.oi_start if k in bs.oi]
        before = sum(reg.oi_start[k] for k in common)
        oi_change = None if before <= 0 else (sum(bs.oi[k] for k in common) / before - 1) * 100
        price_change = None
        if reg.price_start is not None and reg.price_start > 0 and bs.price is not None:
            price_change = (bs.price / reg.price_start - 1) * 100
        metrics.update({
            "side": reg.side,
            "regime_start_ts": reg.start,
            "regime_s": (now - reg.start) / 1000,
            "peak_funding_pct_8h": round(_pct8h(reg.peak), 6),
            "peak_ts": reg.peak_ts,
            "oi_change_pct": None if oi_change is None else round(oi_change, 4),
            "price_start": reg.price_start,
            "price": bs.price,
            "price_change_pct": None if price_change is None else round(price_change, 4),
            "high_pct_8h": round(_pct8h(p.high), 6),
            "low_pct_8h": round(_pct8h(p.low), 6),
        })
        bias = "long" if reg.side == "long" else "short"
        text = (
            f"{bs.name} funding normalized: OI-weighted funding back to {_fmt8h(metrics['funding_pct_8h'])} "
            f"after {format_duration(metrics['regime_s'])} of {bias}-biased funding (peak "
            f"{_fmt8h(metrics['peak_funding_pct_8h'])})"
        )
        moves = []
        if oi_change is not None:
            moves.append(f"OI {format_signed_pct(oi_change)}")
        if price_change is not None:
            moves.append(f"price {format_signed_pct(price_change)}")
        if moves:
            text += f"; since the regime began {' and '.join(moves)}"
        return Alert(
            alert_id=digest(f"funding|{bs.name}|normalized|{reg.side}|{reg.start}"),
            type="funding_normalized",
            severity="info",
            base=bs.name,
            venues=venues,
            ts=now,
            emitted_ts=emitted,
            window_start=reg.start,
            window_end=now,
            metrics=metrics,
            message=text,
        )

    def _skew_alert(
        self, bs: _Base, side: str, since: int, ref: float | None, move: float, p: _Params, emitted: int
    ) -> Alert:
        """``funding_skew`` metrics: the common ones plus ``side`` (the crowded side), ``price_change_pct``
        over ``window_s``, ``price_ref`` / ``price``, ``skew_since_ts``, ``duration_s`` and the thresholds."""
        now = bs.now
        metrics, venues = self._common(bs)
        metrics.update({
            "side": side,
            "price_change_pct": round(move * 100, 4),
            "price_ref": ref,
            "price": bs.price,
            "window_s": p.skew_window_ms / 1000,
            "skew_since_ts": since,
            "duration_s": (now - since) / 1000,
            "threshold_price_pct": round(p.skew_price * 100, 4),
            "threshold_pct_8h": round(_pct8h(p.skew_min), 6),
        })
        crowded = "longs are crowded and still paying" if side == "long" else "shorts are crowded and still paying"
        risk = "long-squeeze" if side == "long" else "short-squeeze"
        text = (
            f"{bs.name} funding skewed against the move: price {format_signed_pct(move * 100)} over "
            f"{format_duration(p.skew_window_ms / 1000)} while OI-weighted funding has stayed at "
            f"{_fmt8h(metrics['funding_pct_8h'])} for {format_duration(metrics['duration_s'])}: {crowded}, "
            f"{risk} risk"
        )
        return Alert(
            alert_id=digest(f"funding|{bs.name}|skew|{side}|{since}"),
            type="funding_skew",
            severity="warning",
            base=bs.name,
            venues=venues,
            ts=now,
            emitted_ts=emitted,
            window_start=since,
            window_end=now,
            metrics=metrics,
            message=text,
        )

    # ------------------------------------------------------------------ state

    def snapshot(self) -> dict[str, Any]:
        """The whole state as JSON-compatible data."""
        bases = []
        for bs in self._bases.values():
            bases.append({
                "name": bs.name,
                "now": bs.now,
                "tape": bs.tape.to_json(),
                "funding": [[k, ts, r] for k, (ts, r) in bs.funding.items()],
                "oi": [[k, v] for k, v in bs.oi.items()],
                "price": bs.price,
                "regime": None if bs.regime is None else bs.regime.to_json(),
                "enter_since": [bs.enter_since["long"], bs.enter_since["short"]],
                "enter_ctx": [[side, price, [[k, v] for k, v in oi.items()]]
                              for side, (price, oi) in bs.enter_ctx.items()],
                "skew": [[bs.skew[s].since, bs.skew[s].active] for s in ("long", "short")],
            })
        return {"version": _SNAPSHOT_VERSION, "now": self._now, "bases": bases}

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Replace the state with a snapshot's."""
        if snapshot.get("version") != _SNAPSHOT_VERSION:
            raise ValueError(f"funding snapshot version {snapshot.get('version')!r} is not supported")
        self._reset()
        self._now = int(snapshot["now"])

        def opt_int(value: Any) -> int | None:
            return None if value is None else int(value)

        for obj in snapshot["bases"]:
            name = str(obj["name"])
            p = self._p(name)
            bs = _Base(
                name=name,
                now=int(obj["now"]),
                tape=MinuteTape(p.skew_window_ms, obj["tape"]),
                p=p,
                funding={str(k): (int(ts), float(r)) for k, ts, r in obj["funding"]},
                oi={str(k): float(v) for k, v in obj["oi"]},
                price=None if obj["price"] is None else float(obj["price"]),
                regime=None if obj["regime"] is None else _Regime.from_json(obj["regime"]),
                enter_since={"long": opt_int(obj["enter_since"][0]), "short": opt_int(obj["enter_since"][1])},
                enter_ctx={
                    str(side): (None if price is None else float(price), {str(k): float(v) for k, v in oi})
                    for side, price, oi in obj["enter_ctx"]
                },
                skew={s: _Skew(since=opt_int(obj["skew"][i][0]), active=bool(obj["skew"][i][1]))
                      for i, s in enumerate(("long", "short"))},
            )
            bs.rate = self._weighted(bs)[0]
            self._bases[name] = bs
