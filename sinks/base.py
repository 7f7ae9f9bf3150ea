"""The sink contract: deliver one alert somewhere, idempotently where the destination allows it."""

from __future__ import annotations

from abc import ABC, abstractmethod

from flushwatch.events import Alert

__all__ = ["AlertSink", "DeliveryError"]


class DeliveryError(Exception):
    """A delivery that did not go through, classified for the retry loop.

    ``reason`` is a short, bounded label for metrics and the DLQ (``http_500``, ``http_429``, ``timeout``,
    ``connection``, ``db_error``...); ``detail`` is for people. ``retryable`` is False for errors a retry
    cannot fix (HTTP 400/401/403/404, a rejected payload): those go to the DLQ at once. ``retry_after`` is
    the destination's own "try again in" (seconds), honoured as the minimum wait before the next attempt.
    """

    def __init__(self, reason: str, detail: str = "", *, retryable: bool = True,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.retryable = retryable
        self.retry_after = retry_after


class AlertSink(ABC):
    """One destination. ``name`` labels its metrics; ``deliver`` raises on failure so the service can
    retry or dead-letter (preferably :class:`DeliveryError`; any other exception counts as retryable),
    and returns only when the alert is really handed over."""

    name: str = ""
    kind: str = ""

    @abstractmethod
    async def deliver(self, alert: Alert) -> None:
        """Hand one alert to the destination."""

    async def close(self) -> None:
        """Flush and release resources."""
