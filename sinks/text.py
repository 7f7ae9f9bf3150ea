"""Human-readable one-line rendering of an alert, for terminals and logs."""

from __future__ import annotations

from datetime import UTC, datetime

from flushwatch.events import Alert

__all__ = ["format_alert_line"]


def format_alert_line(alert: Alert) -> str:
    """``2025-01-27 16:54:03Z  WARNING   cascade_started    BTC   <message>``, time in UTC."""
    when = datetime.fromtimestamp(alert.ts / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return f"{when}  {alert.severity.upper():<8}  {alert.type:<18} {alert.base:<6} {alert.message}"
