"""Small helpers shared by the detectors: ids, per-asset settings, formatting, a minute price tape.

This module imports no detector, so every detector (cascade included) can build on it.

Nothing here does I/O or reads a clock; everything is a pure function of its arguments or of the state it
is given, so detectors built on it stay deterministic and snapshot-able.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from flushwatch.events import Liquidation, Trade

__all__ = [
    "MINUTE_MS",
    "MinuteTape",
    "PerAsset",
    "asset_params",
    "digest",
    "feed_key",
    "format_duration",
    "format_pct",
    "format_price",
    "format_signed_pct",
    "format_usd",
    "money",
    "ms",
    "nice_width",
    "price_of",
    "window_label",
]

MINUTE_MS = 60_000

P = TypeVar("P", bound=BaseModel)
R = TypeVar("R")


def digest(text: str) -> str:
    """``sha256(text)`` truncated to 32 hex digits: the alert-id recipe every detector shares."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]


#: the last event :func:`money` converted and its floats, in one slot so a read sees a consistent pair
_MONEY: list[tuple[object, tuple[float, float]]] = [(None, (0.0, 0.0))]


def money(event: Trade | Liquidation) -> tuple[float, float]:
    """``(float(price), float(notional_usd))`` of a trade or liquidation, converted once per event.

    The runtime hands the same event object to every detector in turn, and most of them need these floats;
    ``float(Decimal)`` goes through the decimal's text (80-130 ns each), so the first detector converts and
    the others reuse it (~40 ns). The cache holds only the last event, by identity: it keeps a reference, so no
    other object can take that identity while it is cached, and events are frozen, so a hit is always the
    same values. Pure from the caller's side: the result never depends on what was converted before.
    """
    cached = _MONEY[0]
    if cached[0] is event:
        return cached[1]
    value = (float(event.price), float(event.notional_usd))
    _MONEY[0] = (event, value)
    return value


def price_of(event: Trade | Liquidation) -> float:
    """``float(event.price)``, from :func:`money`'s cache when an earlier detector filled it for this event;
    for detectors that need only the price (a miss converts the price alone and caches nothing)."""
    cached = _MONEY[0]
    if cached[0] is event:
        return cached[1][0]
    return float(event.price)


def ms(seconds: float) -> int:
    """Seconds from config to whole milliseconds, at least 1."""
    return max(1, round(seconds * 1000))


def feed_key(venue: str, instrument: str) -> str:
    """One instrument of one venue, e.g. ``binance:BTC-USDT-PERP``: the unit of freshness and weighting."""
    return f"{venue}:{instrument}"


def asset_params(section: BaseModel, overrides: Mapping[str, P], base: str, cls: type[P]) -> P:
    """The thresholds in force for ``base``: ``section``'s values for every field of ``cls``, replaced by the
    keys that ``overrides[base]`` sets explicitly (``[<section>.assets.<BASE>]`` in TOML). Fields an
    asset table leaves out keep the section's value, not the built-in default."""
    values: dict[str, Any] = {name: getattr(section, name) for name in cls.model_fields}
    own = overrides.get(base)
    if own is not None:
        values.update({name: getattr(own, name) for name in own.model_fields_set})
    return cls.model_validate(values)


class PerAsset(Generic[P, R]):
    """A detector's derived parameters per base, built once from :func:`asset_params` and cached.

    ``build`` turns thresholds (the section itself for the default) into what the detector's hot path
    reads. Bases without an ``assets`` table share the section's default. Every asset table is built at
    construction, so an invalid per-asset combination fails when the detector is built, not on the first
    event of that base.
    """

    __slots__ = ("_build", "_cache", "_cls", "_default", "_overrides", "_section")

    def __init__(self, section: BaseModel, overrides: Mapping[str, P], cls: type[P], build: Callable[[Any], R]) -> None:
        self._section, self._overrides, self._cls, self._build = section, overrides, cls, build
        self._cache: dict[str, R] = {}
        self._default = build(section)
        for base in overrides:
            self(base)

    def __call__(self, base: str) -> R:
        params = self._cache.get(base)
        if params is None:
            if base in self._overrides:
                params = self._build(asset_params(self._section, self._overrides, base, self._cls))
            else:
                params = self._default
            self._cache[base] = params
        return params


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


def format_pct(value: float, decimals: int = 1) -> str:
    """``17.8 %`` (no sign)."""
    return f"{value:.{decimals}f} %"


def format_signed_pct(value: float, decimals: int = 1) -> str:
    """``+1.2 %`` / ``−3.4 %`` with a real minus sign, as in an analyst's note."""
    text = f"{abs(value):.{decimals}f} %"
    if round(value, decimals) == 0:
        return text
    return ("+" if value > 0 else "\u2212") + text


def window_label(seconds: float) -> str:
    """``3600`` -> ``1h``, ``86400`` -> ``24h``, ``900`` -> ``15m``, ``90`` -> ``90s``: snapshot keys."""
    total = round(seconds)
    if total % 3600 == 0:
        return f"{total // 3600}h"
    if total % 60 == 0:
        return f"{total // 60}m"
    return f"{total}s"


def nice_width(raw: float) -> float:
    """The 1-2-2.5-5 x 10^k step closest (in ratio) to ``raw``: ``260 -> 250``, ``8.25 -> 10``, ``0.6 -> 0.5``."""
    if raw <= 0 or not math.isfinite(raw):
        raise ValueError(f"bucket width must be positive, got {raw}")
    exp = math.floor(math.log10(raw))
    best = 1.0
    best_err = math.inf
    for mant in (1.0, 2.0, 2.5, 5.0, 10.0):
        cand = mant * 10.0**exp
        err = abs(math.log(cand / raw))
        if err < best_err:
            best, best_err = cand, err
    # strip binary noise such as 2.5000000000000004e-05
    return float(f"{best:.6g}")


class MinuteTape:
    """The last price of each minute over a trailing horizon, and the price at a past time.

    ``entries`` holds ``[minute, last_price]`` in minute order. :meth:`price_at` answers "what was the last
    price at or before minute ``m``" exactly at minute resolution, which is all a multi-hour price move
    needs; pruning keeps one entry at or before the horizon so that answer stays available.
    """

    __slots__ = ("entries", "horizon_min")

    def __init__(self, horizon_ms: int, entries: list[list[float]] | None = None) -> None:
        self.horizon_min = horizon_ms // MINUTE_MS + 2
        self.entries: deque[list[float]] = deque([int(e[0]), float(e[1])] for e in entries or [])

    def add(self, ts: int, price: float) -> None:
        minute = ts // MINUTE_MS
        entries = self.entries
        if entries and minute <= entries[-1][0]:
            entries[-1][1] = price  # same minute (or a late print): the newest price of the newest minute
            return
        entries.append([minute, price])
        cutoff = minute - self.horizon_min
        while len(entries) >= 2 and entries[1][0] <= cutoff:
            entries.popleft()

    def price_at(self, ts: int) -> float | None:
        """The last price of the latest minute at or before ``ts``'s minute, or None if none is that old."""
        minute = ts // MINUTE_MS
        found: float | None = None
        for entry in self.entries:
            if entry[0] > minute:
                break
            found = entry[1]
        return found

    def to_json(self) -> list[list[float]]:
        return [list(e) for e in self.entries]
