"""One small HTTP client (aiohttp) for every HTTP sink, and the classification of what came back.

Status handling, shared by webhook, Slack, Discord and Telegram:
- 2xx: delivered.
- 429, 408, 425 and 5xx: retryable; ``Retry-After`` (seconds or an HTTP date) is honoured, and so are the
  body hints some APIs use instead (Discord's ``retry_after``, Telegram's ``parameters.retry_after``).
- any other status (400, 401, 403, 404, 410, 3xx redirects, which are not followed for a POST): permanent,
  straight to the DLQ: a retry cannot fix a bad token or a deleted channel.
- timeouts and connection errors: retryable.
"""

from __future__ import annotations

import asyncio
import email.utils
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from sinks.base import DeliveryError

__all__ = ["USER_AGENT", "HttpClient", "HttpResponse", "parse_retry_after", "raise_for_status"]

USER_AGENT = "flushwatch-sink/0.1"
_BODY_LIMIT = 64 * 1024
_RETRYABLE = frozenset({408, 425, 429})


@dataclass(frozen=True)
class HttpResponse:
    """What a POST returned: status, headers (names lower-case) and the first 64 KiB of the body."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON."""
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: a number (fractions allowed, as Discord sends) or an HTTP date."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if now is None:
        return None
    return max(0.0, when.timestamp() - now)


def _body_retry_after(body: Any) -> float | None:
    if not isinstance(body, dict):
        return None
    for holder in (body, body.get("parameters")):
        if isinstance(holder, dict):
            value = holder.get("retry_after")
            if isinstance(value, int | float) and not isinstance(value, bool):
                return max(0.0, float(value))
    return None


def raise_for_status(response: HttpResponse, now: float | None = None) -> None:
    """Raise :class:`DeliveryError` unless the status is 2xx."""
    status = response.status
    if 200 <= status < 300:
        return
    snippet = response.body[:300].decode("utf-8", "replace")
    detail = f"HTTP {status}: {snippet}" if snippet else f"HTTP {status}"
    if status in _RETRYABLE or status >= 500:
        retry_after = parse_retry_after(response.headers.get("retry-after"), now)
        if retry_after is None:
            retry_after = _body_retry_after(response.json())
        reason = f"http_{status}" if status in _RETRYABLE else "http_5xx"
        raise DeliveryError(reason, detail, retryable=True, retry_after=retry_after)
    raise DeliveryError("http_3xx" if status < 400 else "http_4xx", detail, retryable=False)


class HttpClient:
    """A lazily created ``aiohttp.ClientSession`` shared by the HTTP sinks of one service (one connection
    pool); :meth:`close` is idempotent, so each sink may call it from its own ``close``."""

    def __init__(self, user_agent: str = USER_AGENT, connections: int = 20) -> None:
        self._user_agent = user_agent
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    def _ensure(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections),
                headers={"User-Agent": self._user_agent},
            )
        return self._session

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> HttpResponse:
        """POST ``body``; network failures become retryable :class:`DeliveryError`\\ s."""
        session = self._ensure()
        try:
            async with session.post(url, data=body, headers=dict(headers), allow_redirects=False,
                                    timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
                content = await resp.content.read(_BODY_LIMIT)
                return HttpResponse(resp.status, {k.lower(): v for k, v in resp.headers.items()}, content)
        except TimeoutError:
            raise DeliveryError("timeout", f"no answer within {timeout_s:g} s", retryable=True) from None
        except aiohttp.InvalidURL:
            # the URL may carry a token (Slack, Discord, Telegram): never echo it
            raise DeliveryError("bad_url", "invalid URL", retryable=False) from None
        except aiohttp.ClientError as exc:
            raise DeliveryError("connection", f"{type(exc).__name__}: {exc}"[:300], retryable=True) from None

    async def close(self) -> None:
        """Close the pool (safe to call more than once)."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()
            # let the connector's transports finish closing before the loop goes away
            await asyncio.sleep(0)
