"""The sink contract: deliver one alert somewhere, idempotently where the destination allows it."""

from __future__ import annotations

from abc import ABC, abstractmethod

from flushwatch.events import Alert

__all__ = ["AlertSink"]


class AlertSink(ABC):
    """One destination. ``name`` labels its metrics; ``deliver`` raises on failure so the service can
    retry or dead-letter, and returns only when the alert is really handed over."""

    name: str = ""

    @abstractmethod
    async def deliver(self, alert: Alert) -> None:
        """Hand one alert to the destination."""

    async def close(self) -> None:
        """Flush and release resources."""
