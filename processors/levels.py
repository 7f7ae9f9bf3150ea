"""Key levels detector (DESIGN.md §6, "Key levels").

Operators configure price bands per asset (``[levels.bands] BTC = [[60000, 61000], [100000, 101500]]``,
``[low, high]`` in the quote currency). For every band the detector knows on which side price is
*accepted* (above or below), and reports three transitions:

``level_defended``
    Price touched the band from its accepted side (a trade at or through the near edge) and bounced back
    at least ``bounce_pct`` beyond that edge within ``defend_within_s`` of the touch. From above the band
    is a support that held; from below a resistance that rejected price (``metrics.role``).
``level_break``
    Price was accepted on the other side: every price for ``acceptance_s`` was beyond the band's *far*
    edge (below ``low`` for a support, above ``high`` for a resistance). The alert carries the
    liquidations of the base from the first touch of the band to the acceptance (by side and venue).
``level_reclaimed``
    After a break, price accepted back on the pre-break side the same way (beyond the other edge for
    ``acceptance_s``): a broken support reclaimed (or a breakout above a resistance that failed).

Both approaches are handled symmetrically; the side a band starts on is where the first price is (no
alert; a first price inside the band waits for the first price outside it).

No flapping
    ::

        accepted side S ──touch──▶ testing ──(bounce ≥ bounce_pct in time, armed)──▶ [level_defended], disarmed
              ▲                      │  re-armed once price went rearm_pct beyond the near edge
              │                      └──(every price beyond the far edge for acceptance_s)──▶ side flips:
              │                            [level_break], or [level_reclaimed] if it flips back after a break
              └───────────────────────────────────────────────────────────────────────────────────┘

    A price flapping around an edge produces no alert: a flip needs the whole band crossed *and*
    ``acceptance_s`` without a single price back at or inside the far edge (one such price resets the
    clock), and a defended needs a bounce of ``bounce_pct`` away from the band. After a defended the band
    is disarmed until price has been ``rearm_pct`` beyond the edge, so a price oscillating between the
    band and a bounce target gives one alert, not one per swing. Each alert is one transition of this
    machine; ids are deterministic per band, transition and start time.

Price
    Trades. Liquidation prices (bankruptcy-side order prices, often away from the market) stand in only
    when the base has had no trade for ``trade_stale_s``. Every liquidation of the base counts into the
    notional of an open test or crossing, whatever its price.

Thresholds (per asset: ``[levels]`` and ``[levels.assets.<BASE>]``)
    ==================  ========  ======================================================================
    setting             default   why
    ==================  ========  ======================================================================
    acceptance_s        15 min    The common "a 15-minute close beyond the level" test of acceptance;
                                  a wick through the band (a liquidation sweep) is not a break.
    bounce_pct          0.5 %     A reaction, not tick noise at the edge: 500 USD at 100 K BTC, about half
                                  BTC's median 4 h high-low range (0.9 %, May-Nov 2025).
    defend_within_s     1 h       A defence is a prompt reaction to the touch.
    rearm_pct           1.5 %     Three bounces' worth away before the band can be defended again.
    trade_stale_s       60 s      Trades arrive many times a second on a live feed.
    ==================  ========  ======================================================================

Time
    Per base (its events and ticks). A pending flip happens at exactly ``first price beyond + acceptance_s``
    (on a tick, or before the next event is folded in), so alerts do not depend on tick frequency. A test
    starts when price enters the band (reaches the near edge) from outside it, and is restarted by a later
    entry only once it is older than ``defend_within_s``; it ends with a bounce (an alert only if armed and
    in time), a flip, or silently with a late bounce. Liquidations count from the test's first touch.

Alerts
    ``alert_id = sha256("levels|{base}|{low:g}-{high:g}|{type}|{start_ms}")[:32]`` where ``start_ms`` is
    the touch (defended) or the first price beyond the far edge (break, reclaimed). See
    :meth:`LevelsDetector._alert` for the metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flushwatch.config import LevelsConfig, LevelsThresholds
from flushwatch.events import Alert, Liquidation, MarketEvent, Severity, Trade
from processors.base import Detector
from processors.common import PerAsset, digest, format_duration, format_price, format_usd, money, ms, price_of

__all__ = ["LevelsDetector"]

_SNAPSHOT_VERSION = 1
_NEVER = -(2**62)


@dataclass(frozen=True, slots=True)
class _Params:
    acceptance_ms: int
    bounce: float
    defend_ms: int
    rearm: float
    trade_stale_ms: int

    @classmethod
    def of(cls, t: LevelsThresholds) -> _Params:
        if t.rearm_pct < t.bounce_pct:
            raise ValueError(f"levels.rearm_pct ({t.rearm_pct}) must be >= bounce_pct ({t.bounce_pct})")
        return cls(
            acceptance_ms=ms(t.acceptance_s),
            bounce=t.bounce_pct / 100,
            defend_ms=ms(t.defend_within_s),
            rearm=t.rearm_pct / 100,
            trade_stale_ms=ms(t.trade_stale_s),
        )


@dataclass(slots=True)
class _Band:
    """One band's state machine. ``side`` is where price is accepted: ``above``, ``below`` or None (unknown)."""

    low: float
    high: float
    side: str | None = None
    inside: bool = False  # the last price was at/through the near edge of the accepted side
    test_since: int | None = None
    test_extreme: float = 0.0
    armed: bool = True
    beyond_since: int | None = None
    beyond_extreme: float = 0.0
    attempt_since: int | None = None  # first touch of the current test or crossing: liquidations count from here
    liq_long: float = 0.0
    liq_short: float = 0.0
    liq_events: int = 0
    liq_by_venue: dict[str, float] = field(default_factory=dict)
    broken_from: str | None = None  # the side before the last break, until it is reclaimed
    break_ts: int | None = None

    @property
    def key(self) -> str:
        return f"{self.low:g}-{self.high:g}"

    def to_json(self) -> list[Any]:
        return [
            self.low, self.high, self.side, self.inside, self.test_since, self.test_extreme, self.armed,
            self.beyond_since, self.beyond_extreme, self.attempt_since, self.liq_long, self.liq_short,
            self.liq_events, [[k, v] for k, v in self.liq_by_venue.items()], self.broken_from, self.break_ts,
        ]

    @classmethod
    def from_json(cls, obj: list[Any]) -> _Band:
        def opt_int(value: Any) -> int | None:
            return None if value is None else int(value)

        return cls(
            low=float(obj[0]), high=float(obj[1]), side=None if obj[2] is None else str(obj[2]),
            inside=bool(obj[3]), test_since=opt_int(obj[4]), test_extreme=float(obj[5]), armed=bool(obj[6]),
            beyond_since=opt_int(obj[7]), beyond_extreme=float(obj[8]), attempt_since=opt_int(obj[9]),
            liq_long=float(obj[10]), liq_short=float(obj[11]), liq_events=int(obj[12]),
            liq_by_venue={str(k): float(v) for k, v in obj[13]},
            broken_from=None if obj[14] is None else str(obj[14]), break_ts=opt_int(obj[15]),
        )

    def start_attempt(self, t: int) -> None:
        self.attempt_since = t
        self.liq_long = self.liq_short = 0.0
        self.liq_events = 0
        self.liq_by_venue = {}


@dataclass(slots=True)
class _Base:
    name: str
    now: int
    bands: list[_Band]
    price: float | None = None
    last_trade_ts: int = _NEVER


class LevelsDetector(Detector):
    """Operator bands per asset: defended, break, reclaimed. See the module doc."""

    name = "levels"

    def __init__(self, config: LevelsConfig | None = None, snapshot: dict[str, Any] | None = None) -> None:
        self.config = config if config is not None else LevelsConfig.model_validate({})
        self._p = PerAsset(self.config, self.config.assets, LevelsThresholds, _Params.of)
        self._bands: dict[str, list[tuple[float, float]]] = {}
        for base, bands in self.config.bands.items():
            clean: list[tuple[float, float]] = []
            for low, high in bands:
                if not 0 < low < high:
                    raise ValueError(f"levels.bands.{base}: band [{low}, {high}] needs 0 < low < high")
                if (low, high) not in clean:
                    clean.append((float(low), float(high)))
            self._bands[base] = clean
        self._reset()
        if snapshot is not None:
            self.restore(snapshot)

    def _reset(self) -> None:
        self._now = _NEVER
        self._bases: dict[str, _Base] = {}

    # ------------------------------------------------------------------ the Detector interface

    def on_event(self, event: MarketEvent) -> list[Alert]:
        """Trades (and, without trades, liquidation prices) move the bands; liquidations add notional."""
        if event.base not in self._bands:
            return []
        bs = self._base(event.base)
        alerts = self._advance(bs, event.ts)
        if isinstance(event, Trade):
            bs.last_trade_ts = max(bs.last_trade_ts, event.ts)
            alerts.extend(self._on_price(bs, price_of(event)))
        elif isinstance(event, Liquidation):
            self._on_liquidation(bs, event)
            if bs.now - bs.last_trade_ts > self._p(bs.name).trade_stale_ms:
                alerts.extend(self._on_price(bs, price_of(event)))
        return alerts

    def on_tick(self, now_ms: int) -> list[Alert]:
        """Advance every base's time; flip the bands whose acceptance time has passed."""
        if now_ms <= self._now:
            return []
        self._now = now_ms
        out: list[Alert] = []
        for bs in self._bases.values():
            out.extend(self._advance(bs, now_ms))
        if len(out) > 1:
            out.sort(key=lambda a: (a.ts, a.base, a.alert_id))
        return out

    # ------------------------------------------------------------------ mechanics

    def _base(self, name: str) -> _Base:
        bs = self._bases.get(name)
        if bs is None:
            bands = [_Band(low=lo, high=hi) for lo, hi in self._bands[name]]
            bs = self._bases[name] = _Base(name=name, now=self._now, bands=bands)
        return bs

    def _advance(self, bs: _Base, t: int) -> list[Alert]:
        if t <= bs.now:
            return []
        acceptance = self._p(bs.name).acceptance_ms
        due = [(band.beyond_since + acceptance, i) for i, band in enumerate(bs.bands)
               if band.beyond_since is not None and band.beyond_since + acceptance <= t]
        out: list[Alert] = []
        for at, i in sorted(due):
            out.append(self._flip(bs, bs.bands[i], at, t))
        bs.now = t
        return out

    def _on_liquidation(self, bs: _Base, ev: Liquidation) -> None:
        notional = money(ev)[1]
        for band in bs.bands:
            if band.attempt_since is None:
                continue
            if ev.side == "long":
                band.liq_long += notional
            else:
                band.liq_short += notional
            band.liq_events += 1
            band.liq_by_venue[ev.venue] = band.liq_by_venue.get(ev.venue, 0.0) + notional

    def _on_price(self, bs: _Base, price: float) -> list[Alert]:
        if price <= 0:
            return []
        bs.price = price
        p = self._p(bs.name)
        t = bs.now
        out: list[Alert] = []
        for band in bs.bands:
            if band.side is None:
                if price > band.high:
                    band.side = "above"
                elif price < band.low:
                    band.side = "below"
                continue
            above = band.side == "above"
            near = band.high if above else band.low
            # distance beyond the near edge on the accepted side (positive = away from the band)
            away = (price - near) / near if above else (near - price) / near
            beyond = price < band.low if above else price > band.high
            if beyond:
                if band.beyond_since is None:
                    band.beyond_since = t
                    band.beyond_extreme = price
                    if band.attempt_since is None:
                        band.start_attempt(t)
                else:
                    band.beyond_extreme = min(band.beyond_extreme, price) if above else max(band.beyond_extreme, price)
            else:
                band.beyond_since = None
            if away <= 0:
                if not band.inside and (band.test_since is None or t - band.test_since > p.defend_ms):
                    band.test_since = t
                    band.test_extreme = price
                    band.start_attempt(t)
                elif band.test_since is not None:
                    band.test_extreme = min(band.test_extreme, price) if above else max(band.test_extreme, price)
                band.inside = True
                continue
            band.inside = False
            if band.test_since is not None and away >= p.bounce:
                if band.armed and t - band.test_since <= p.defend_ms:
                    out.append(self._alert(bs, band, "level_defended", start=band.test_since, ts=t, now=t,
                                           extra={"bounce_pct": round(away * 100, 4)}))
                    band.armed = False
                band.test_since = None
                band.attempt_since = None
            if not band.armed and away >= p.rearm:
                band.armed = True
        return out

    def _flip(self, bs: _Base, band: _Band, at: int, now: int) -> Alert:
        assert band.beyond_since is not None and band.side is not None
        old = band.side
        new = "below" if old == "above" else "above"
        start = band.beyond_since
        reclaim = band.broken_from is not None and band.broken_from == new
        extra: dict[str, Any] = {
            "accepted_s": (at - start) / 1000,
            "extreme_price": band.beyond_extreme,
            "direction": "down" if old == "above" else "up",
        }
        if reclaim:
            extra["break_ts"] = band.break_ts
            extra["since_break_s"] = None if band.break_ts is None else (at - band.break_ts) / 1000
            kind = "level_reclaimed"
        else:
            kind = "level_break"
        alert = self._alert(bs, band, kind, start=start, ts=at, now=now, extra=extra)
        if reclaim:
            band.broken_from = None
            band.break_ts = None
        else:
            band.broken_from = old
            band.break_ts = at
        band.side = new
        band.inside = False
        band.test_since = None
        band.beyond_since = None
        band.attempt_since = None
        band.armed = True
        return alert

    # ------------------------------------------------------------------ alerts

    def _alert(self, bs: _Base, band: _Band, kind: str, *, start: int, ts: int, now: int,
               extra: dict[str, Any]) -> Alert:
        """Metrics: ``band_low`` / ``band_high``, ``role`` (support/resistance before the transition),
        ``price`` (last), ``touch_ts`` (first touch of this test or crossing), ``liq_long_usd`` /
        ``liq_short_usd`` / ``liq_events`` / ``liq_by_venue`` since the touch; defended adds
        ``extreme_price`` (deepest price of the test), ``depth_pct`` (how far into or through the band, % of
        the near edge), ``bounce_pct`` and ``to_bounce_s``; break and reclaimed add ``direction`` (down/up),
        ``accepted_s``, ``extreme_price`` (furthest price while accepted beyond) and, for reclaimed,
        ``break_ts`` and ``since_break_s``."""
        above = band.side == "above"
        metrics: dict[str, Any] = {
            "band_low": band.low,
            "band_high": band.high,
            "role": "support" if above else "resistance",
            "price": bs.price,
            "touch_ts": band.attempt_since,
            "liq_long_usd": round(band.liq_long, 2),
            "liq_short_usd": round(band.liq_short, 2),
            "liq_events": band.liq_events,
            "liq_by_venue": {v: round(x, 2) for v, x in sorted(band.liq_by_venue.items())},
        }
        if kind == "level_defended":
            near = band.high if above else band.low
            depth = (near - band.test_extreme) / near if above else (band.test_extreme - near) / near
            metrics.update({"extreme_price": band.test_extreme, "depth_pct": round(depth * 100, 4),
                            "to_bounce_s": (ts - start) / 1000})
        metrics.update(extra)
        severity: Severity = "warning" if kind == "level_break" else "info"
        return Alert(
            alert_id=digest(f"levels|{bs.name}|{band.key}|{kind}|{start}"),
            type=kind,
            severity=severity,
            base=bs.name,
            venues=tuple(sorted(band.liq_by_venue)),
            ts=ts,
            emitted_ts=now,
            window_start=start if band.attempt_since is None else min(start, band.attempt_since),
            window_end=ts,
            metrics=metrics,
            message=self._message(bs.name, band, kind, metrics),
        )

    @staticmethod
    def _message(base: str, band: _Band, kind: str, m: dict[str, Any]) -> str:
        span = f"{format_price(band.low)}–{format_price(band.high)}"
        above = band.side == "above"
        if kind == "level_defended":
            liq = m["liq_long_usd"] if above else m["liq_short_usd"]
            tail = f" ({format_usd(liq)} of {'longs' if above else 'shorts'} liquidated on the test)" if liq else ""
            if above:
                return (
                    f"{base} defended the {span} support: dipped to {format_price(m['extreme_price'])} and "
                    f"bounced {m['bounce_pct']:.1f} % above the band within {format_duration(m['to_bounce_s'])}"
                    f"{tail}"
                )
            return (
                f"{base} rejected at the {span} resistance: rose to {format_price(m['extreme_price'])} and fell "
                f"back {m['bounce_pct']:.1f} % below the band within {format_duration(m['to_bounce_s'])}{tail}"
            )
        accepted = format_duration(m["accepted_s"])
        extreme = format_price(m["extreme_price"])
        if kind == "level_break":
            if above:
                text = (f"{base} broke below the {span} support: accepted under {format_price(band.low)} for "
                        f"{accepted} (low {extreme})")
                liq, who = m["liq_long_usd"], "longs"
            else:
                text = (f"{base} broke above the {span} resistance: accepted over {format_price(band.high)} for "
                        f"{accepted} (high {extreme})")
                liq, who = m["liq_short_usd"], "shorts"
            return f"{text}, {format_usd(liq)} of {who} liquidated since the band was first touched"
        since = m.get("since_break_s")
        after = f", {format_duration(since)} after the break" if since is not None else ""
        if above:
            return (f"{base} lost the breakout above {span}: accepted back under {format_price(band.low)} for "
                    f"{accepted}{after}")
        return (f"{base} reclaimed the {span} band: accepted back above {format_price(band.high)} for "
                f"{accepted}{after}")

    # ------------------------------------------------------------------ state

    def snapshot(self) -> dict[str, Any]:
        """The whole state as JSON-compatible data."""
        return {
            "version": _SNAPSHOT_VERSION,
            "now": self._now,
            "bases": [
                {"name": bs.name, "now": bs.now, "price": bs.price, "last_trade_ts": bs.last_trade_ts,
                 "bands": [band.to_json() for band in bs.bands]}
                for bs in self._bases.values()
            ],
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Replace the state with a snapshot's. Bands no longer configured are dropped, new ones start fresh."""
        if snapshot.get("version") != _SNAPSHOT_VERSION:
            raise ValueError(f"levels snapshot version {snapshot.get('version')!r} is not supported")
        self._reset()
        self._now = int(snapshot["now"])
        for obj in snapshot["bases"]:
            name = str(obj["name"])
            if name not in self._bands:
                continue
            saved = {(b.low, b.high): b for b in (_Band.from_json(x) for x in obj["bands"])}
            bands = [saved.get((lo, hi)) or _Band(low=lo, high=hi) for lo, hi in self._bands[name]]
            self._bases[name] = _Base(
                name=name, now=int(obj["now"]), bands=bands,
                price=None if obj["price"] is None else float(obj["price"]),
                last_trade_ts=int(obj["last_trade_ts"]),
            )
