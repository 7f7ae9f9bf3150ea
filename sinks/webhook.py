"""Generic webhook: POST the alert JSON (exactly the ``fw.alerts`` record bytes), signed.

Headers of every request:

- ``X-Flushwatch-Timestamp``: Unix time in seconds when the request was signed (each retry re-signs).
- ``X-Flushwatch-Signature``: ``v1=`` + hex HMAC-SHA256, keyed with the shared secret, over
  ``<timestamp> + "." + <raw body bytes>``. Signing the timestamp with the body lets a receiver reject
  replays: verify the HMAC over the raw body (before any JSON parsing), compare in constant time, and
  refuse timestamps more than a few minutes away from its clock (:func:`verify_signature` does all three).
- ``X-Flushwatch-Alert-Id`` and ``Idempotency-Key``: the ``alert_id``, for receivers that de-duplicate.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from flushwatch.codec import encode_alert
from flushwatch.events import Alert
from sinks.base import AlertSink
from sinks.http import HttpClient, raise_for_status
from sinks.policy import Clock, SystemClock

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "WebhookSink", "sign", "verify_signature"]

SIGNATURE_HEADER = "X-Flushwatch-Signature"
TIMESTAMP_HEADER = "X-Flushwatch-Timestamp"
ALERT_ID_HEADER = "X-Flushwatch-Alert-Id"


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"v1={mac}"


def verify_signature(secret: bytes, body: bytes, timestamp: str | None, signature: str | None, now: float,
                     tolerance_s: float = 300.0) -> bool:
    """Receiver side: the signature matches and the timestamp is within ``tolerance_s`` of ``now``."""
    if not timestamp or not signature:
        return False
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs(now - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature.strip())


class WebhookSink(AlertSink):
    """POSTs each alert to one URL."""

    kind = "webhook"

    def __init__(self, name: str, url: str, secret: bytes, client: HttpClient, timeout_s: float = 10.0,
                 headers: Mapping[str, str] | None = None, clock: Clock | None = None) -> None:
        self.name = name
        self._url = url
        self._secret = secret
        self._client = client
        self._timeout_s = timeout_s
        self._headers = dict(headers or {})
        self._clock = clock or SystemClock()

    def request(self, alert: Alert) -> tuple[bytes, dict[str, str]]:
        """Body and headers of the POST for one alert, signed now."""
        body = encode_alert(alert)
        now = int(self._clock.time())
        headers = {
            **self._headers,
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(now),
            SIGNATURE_HEADER: sign(self._secret, now, body),
            ALERT_ID_HEADER: alert.alert_id,
            "Idempotency-Key": alert.alert_id,
        }
        return body, headers

    async def deliver(self, alert: Alert) -> None:
        """One signed POST; raises DeliveryError on anything but 2xx."""
        body, headers = self.request(alert)
        response = await self._client.post(self._url, body, headers, self._timeout_s)
        raise_for_status(response, self._clock.time())

    async def close(self) -> None:
        """Release the shared HTTP client."""
        await self._client.close()
