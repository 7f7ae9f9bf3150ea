"""The processor's notion of "now": event time that keeps moving with the wall clock between events.

Detectors run on event time so that a replay or a backtest gives the same alerts as live. But a quiet
market produces no events, and an episode must still end. This clock is the latest event time seen plus
the wall time elapsed since that event arrived: live, it tracks the wall clock; in a replay of old data,
it tracks the recording's time and still advances while the replay is silent. It never goes backwards.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["EventClock"]


class EventClock:
    """Monotonic hybrid clock in epoch milliseconds."""

    def __init__(self, wall_ms: Callable[[], int] | None = None) -> None:
        self._wall_ms = wall_ms or (lambda: time.time_ns() // 1_000_000)
        self._event_ms: int | None = None
        self._wall_at_event = 0
        self._last = 0

    def observe(self, event_ts_ms: int) -> None:
        """Account an event's time; only a newer time moves the anchor."""
        if self._event_ms is None or event_ts_ms > self._event_ms:
            self._event_ms = event_ts_ms
            self._wall_at_event = self._wall_ms()

    def now(self) -> int | None:
        """Current time, or None before any event (there is nothing to time yet)."""
        if self._event_ms is None:
            return None
        current = self._event_ms + max(0, self._wall_ms() - self._wall_at_event)
        self._last = max(self._last, current)
        return self._last
