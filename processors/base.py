"""The detector contract: pure, synchronous and snapshot-able.

A detector never does I/O, never reads the clock and never awaits. The runtime (live: the Kafka
processing service; offline: ``flushwatch backtest``) feeds it events in order and calls
:meth:`Detector.on_tick` with the current time so that episodes end when a market goes quiet, without
waiting for the next event. Because time only comes in through events and ticks, the same input always
gives the same alerts, which is what makes backtests and crash recovery comparable.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from flushwatch.events import Alert, MarketEvent

__all__ = ["Detector"]


class Detector(ABC):
    """One kind of finding. ``name`` is the registry key and the prefix of its alert types' ids."""

    name: str = ""
    #: events too old to be folded into the state (counted, never silently dropped); exported per detector
    late_events: int = 0

    @abstractmethod
    def on_event(self, event: MarketEvent) -> list[Alert]:
        """Fold one event into the state; return alerts it triggers (usually none)."""

    @abstractmethod
    def on_tick(self, now_ms: int) -> list[Alert]:
        """Advance time to ``now_ms`` (never backwards); return alerts that time alone triggers."""

    @abstractmethod
    def snapshot(self) -> dict[str, Any]:
        """A JSON-serializable copy of the state, enough to rebuild an equivalent detector."""

    @abstractmethod
    def restore(self, snapshot: dict[str, Any]) -> None:
        """Replace the state with one taken by :meth:`snapshot`."""

    def publish(self, now_ms: int) -> list[tuple[str, dict[str, Any]]]:
        """Periodic ``(key, document)`` snapshots for dashboards (e.g. liquidation clusters), produced by
        the runtime to the detector's compacted topic. Most detectors publish nothing."""
        return []
