"""What a person should read about an alert, independent of the chat it goes to.

:func:`describe` turns an alert into an :class:`AlertView`: a title (severity, asset, what happened), the
detector's own sentence, the key numbers as label/value facts, the venues (with notional per venue when the
alert has it) and the time in UTC. Slack, Discord and Telegram render the same view in their own markup,
so the three read alike. Metrics the formatter does not know are still shown (generic labels), so a new
detector's alerts are readable before anyone writes a formatter for them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flushwatch.events import Alert

__all__ = ["SEVERITY_COLORS", "SEVERITY_EMOJI", "AlertView", "describe", "fmt_duration", "fmt_number",
           "fmt_usd", "truncate", "utc_datetime", "utc_text", "utf16_len"]

SEVERITY_EMOJI = {"info": "\N{LARGE BLUE CIRCLE}", "warning": "\N{LARGE ORANGE CIRCLE}",
                  "critical": "\N{LARGE RED CIRCLE}"}
SEVERITY_COLORS = {"info": 0x3498DB, "warning": 0xE67E22, "critical": 0xE74C3C}
MAX_FACTS = 10

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc_datetime(ms: int) -> datetime:
    """Epoch milliseconds as an aware UTC datetime (exact, no float rounding)."""
    return _EPOCH + timedelta(milliseconds=ms)


def utc_text(ms: int) -> str:
    """``2025-01-27 16:54:03 UTC``."""
    return utc_datetime(ms).strftime("%Y-%m-%d %H:%M:%S UTC")


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units: how Telegram (and JavaScript-based limits) count characters."""
    return len(text.encode("utf-16-le")) // 2


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def fmt_usd(value: float) -> str:
    """``$1.23M``, ``$243.5K``, ``$950``."""
    sign = "-" if value < 0 else ""
    v = abs(value)
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if v >= limit:
            text = f"{v / limit:.2f}".rstrip("0").rstrip(".")
            return f"{sign}${text}{suffix}"
    return f"{sign}${v:,.0f}"


def fmt_number(value: float) -> str:
    """Up to 8 significant digits, thousands separated, no exponent for ordinary prices."""
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    if abs(value) >= 1000:
        return f"{value:,.2f}".rstrip("0").rstrip(".")
    text = f"{value:.8g}"
    return text if "e" not in text else f"{value:.10f}".rstrip("0").rstrip(".")


def fmt_duration(seconds: float) -> str:
    """``1h 02m``, ``3m 05s``, ``41s``."""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def fmt_pct(value: float) -> str:
    """``-0.45%`` (the value is already in percent)."""
    return f"{value:+.2f}%"


@dataclass(frozen=True)
class AlertView:
    """An alert as a person reads it."""

    emoji: str
    severity: str
    title: str
    summary: str
    facts: tuple[tuple[str, str], ...]
    venues: str
    when: str
    window: str
    alert_id: str
    type: str
    ts_iso: str


def _humanize(key: str) -> str:
    words = key.replace("_usd", " (USD)").replace("_pct", " (%)").replace("_s", " (s)").replace("_", " ")
    return words[:1].upper() + words[1:]


def _price_fact(metrics: dict[str, Any]) -> str | None:
    start, extreme, change = (_num(metrics.get(k)) for k in ("price_start", "price_extreme", "price_change_pct"))
    if start is None or extreme is None:
        return None
    text = f"{fmt_number(start)} \N{RIGHTWARDS ARROW} {fmt_number(extreme)}"
    return f"{text} ({fmt_pct(change)})" if change is not None else text


def _money(label: str) -> Callable[[dict[str, Any], Any], tuple[str, str] | None]:
    def render(metrics: dict[str, Any], value: Any) -> tuple[str, str] | None:
        number = _num(value)
        if number is None:
            return None
        bound = "\N{GREATER-THAN OR EQUAL TO} " if metrics.get("lower_bound") is True else ""
        return label, f"{bound}{fmt_usd(number)}"
    return render


def _plain(label: str, fmt: Callable[[float], str]) -> Callable[[dict[str, Any], Any], tuple[str, str] | None]:
    def render(_metrics: dict[str, Any], value: Any) -> tuple[str, str] | None:
        number = _num(value)
        return None if number is None else (label, fmt(number))
    return render


def _nonzero_money(label: str) -> Callable[[dict[str, Any], Any], tuple[str, str] | None]:
    def render(_metrics: dict[str, Any], value: Any) -> tuple[str, str] | None:
        number = _num(value)
        return None if not number else (label, fmt_usd(number))
    return render


def _by_side(_metrics: dict[str, Any], value: Any) -> tuple[str, str] | None:
    if not isinstance(value, dict):
        return None
    parts = [f"{side} {fmt_usd(n)}" for side, raw in value.items() if (n := _num(raw))]
    return ("By side", " / ".join(parts)) if len(parts) > 1 else None  # one side: the title says it


# known metrics, in display order; the price line is built from three keys
_KNOWN: list[tuple[str, Callable[[dict[str, Any], Any], tuple[str, str] | None]]] = [
    ("notional_usd", _money("Liquidated")),
    ("by_side", _by_side),
    ("events", _plain("Events", fmt_number)),
    ("peak_notional_per_min", _plain("Peak rate", lambda v: f"{fmt_usd(v)}/min")),
    ("duration_s", _plain("Duration", fmt_duration)),
    ("oi_drop_pct", _plain("OI change", fmt_pct)),
    ("oi_peak_usd", _plain("OI peak", fmt_usd)),
    ("oi_trough_usd", _plain("OI trough", fmt_usd)),
    ("oi_usd", _plain("Open interest", fmt_usd)),
    ("funding_rate", _plain("Funding", lambda v: f"{v * 100:+.4f}%")),
    ("taker_sell_usd", _nonzero_money("Taker sells")),
    ("taker_buy_usd", _nonzero_money("Taker buys")),
    ("threshold_usd", _plain("Threshold", fmt_usd)),
    ("taker_burst_ratio", _plain("Taker burst", lambda v: f"{v:.1f}x baseline")),
    ("price_impact_pct", _plain("Price impact", fmt_pct)),
    ("estimated_usd", _nonzero_money("Estimated (no liquidation feed)")),
]
# bookkeeping numbers a person does not need in a chat message
_HIDDEN = frozenset({"episode_id", "side", "lower_bound", "window_events", "window_notional_usd", "window_s",
                     "by_venue", "price_start", "price_extreme", "price_change_pct", "corroborated", "trigger",
                     "estimated"})


def _facts(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    facts: list[tuple[str, str]] = []
    known = {key for key, _ in _KNOWN}
    for key, render in _KNOWN:
        if key in metrics:
            fact = render(metrics, metrics[key])
            if fact is not None:
                facts.append(fact)
        if key == "by_side":
            price = _price_fact(metrics)
            if price is not None:
                facts.append(("Price", price))
    for key in sorted(metrics):
        if key in known or key in _HIDDEN:
            continue
        value = metrics[key]
        number = _num(value) if not isinstance(value, str) else None
        if number is not None:
            facts.append((_humanize(key), fmt_usd(number) if key.endswith("_usd") else fmt_number(number)))
        elif isinstance(value, str) and 0 < len(value) <= 64:
            facts.append((_humanize(key), value))
    return facts[:MAX_FACTS]


def _venues(alert: Alert) -> str:
    by_venue = alert.metrics.get("by_venue")
    if isinstance(by_venue, dict) and by_venue:
        parts = [f"{venue} {fmt_usd(n)}" for venue, raw in by_venue.items() if (n := _num(raw)) is not None]
        if parts:
            return ", ".join(parts)
    return ", ".join(alert.venues) or "-"


def _title(alert: Alert) -> str:
    what = alert.type.replace("_", " ")
    side = alert.metrics.get("side")
    if alert.type.startswith("cascade") and side in ("long", "short"):
        what = f"{side} liquidation {what}"
    return f"{alert.severity.upper()} \N{MIDDLE DOT} {alert.base} {what}"


def describe(alert: Alert) -> AlertView:
    """The readable view of an alert."""
    when = utc_text(alert.ts)
    start, end = utc_datetime(alert.window_start), utc_datetime(alert.window_end)
    same_day = start.date() == end.date()
    window = (f"{start:%H:%M:%S}\N{EN DASH}{end:%H:%M:%S} UTC" if same_day
              else f"{start:%Y-%m-%d %H:%M:%S} \N{EN DASH} {end:%Y-%m-%d %H:%M:%S} UTC")
    return AlertView(
        emoji=SEVERITY_EMOJI.get(alert.severity, ""),
        severity=alert.severity,
        title=_title(alert),
        summary=alert.message or alert.type.replace("_", " "),
        facts=tuple(_facts(alert.metrics)),
        venues=_venues(alert),
        when=when,
        window=window,
        alert_id=alert.alert_id,
        type=alert.type,
        ts_iso=utc_datetime(alert.ts).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    )


def truncate(text: str, limit: int, measure: Callable[[str], int] = len) -> str:
    """Cut ``text`` to at most ``limit`` (as measured), ending with an ellipsis when cut."""
    if measure(text) <= limit:
        return text
    if limit <= 0:
        return ""
    lo, hi = 0, len(text)
    while lo < hi:  # longest prefix that fits with the ellipsis
        mid = (lo + hi + 1) // 2
        if measure(text[:mid] + "\N{HORIZONTAL ELLIPSIS}") <= limit:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo] + "\N{HORIZONTAL ELLIPSIS}"
