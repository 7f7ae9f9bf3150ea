"""A minimal async HTTP/1.1 GET client on asyncio streams, for venue REST polls.

Why not httpx or aiohttp: ingest needs exactly one thing — a GET to a public JSON endpoint a few times a
second — and every extra dependency is one more thing to pin, audit and keep compatible with websockets.
What it does: TLS with the system's default trust store for ``https``, ``Connection: close`` (no pooling:
polls are seconds apart, and a fresh connection never carries a half-read response), ``Content-Length``,
chunked and read-to-EOF bodies, a response-size cap (a misbehaving endpoint cannot exhaust memory), one
overall deadline via :func:`asyncio.timeout`, and clean cancellation (the socket is closed on every path).

Errors, split by what the caller should do: a status >= 400 raises :class:`~flushwatch.errors.HttpError`
with ``retry_after_s`` taken from ``Retry-After`` (Binance sends it on 429 and on the 418 IP ban);
a malformed or oversized response raises :class:`HttpProtocolError`; network failures raise
:class:`OSError` and the deadline raises :class:`TimeoutError`. All of them are transient for a poller.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import math
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from flushwatch.errors import HttpError, RetryableError

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "HttpProtocolError",
    "HttpResponse",
    "http_get",
    "parse_retry_after",
]

#: Cap on a response body. Binance's ``exchangeInfo`` (the largest metadata document) is ~1-2 MiB.
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
_MAX_HEADER_BYTES = 64 * 1024
_MAX_HEADERS = 100
_USER_AGENT = "flushwatch/0.1"
_CLOSE_TIMEOUT_S = 1.0


class HttpProtocolError(RetryableError):
    """The server's response is not valid HTTP/1.1 as we accept it, or it is larger than allowed."""


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A complete response. Header names are lower-cased; a repeated header keeps its last value."""

    status: int
    headers: dict[str, str]
    body: bytes
    url: str

    def text(self) -> str:
        """The body as text (UTF-8; undecodable bytes become U+FFFD rather than failing the poll)."""
        return self.body.decode("utf-8", errors="replace")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP date; None if absent/bad."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT
            return None
        current = time.time() if now is None else now
        return max(0.0, when.timestamp() - current)
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        return None
    return seconds


def _ssl_context_for(scheme: str, context: ssl.SSLContext | None) -> ssl.SSLContext | None:
    if scheme == "http":
        return None
    return context if context is not None else ssl.create_default_context()


async def http_get(
    url: str,
    *,
    timeout_s: float = 10.0,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    headers: Mapping[str, str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    raise_for_status: bool = True,
) -> HttpResponse:
    """GET ``url`` and return the whole response.

    Raises:
        HttpError: status >= 400 (unless ``raise_for_status`` is false), with ``retry_after_s``.
        HttpProtocolError: malformed response, unsupported encoding, or body over ``max_body_bytes``.
        OSError: connection or TLS failure.
        TimeoutError: the whole exchange took longer than ``timeout_s``.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    host_header = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        host_header += f":{parts.port}"
    lines = [
        f"GET {target} HTTP/1.1",
        f"Host: {host_header}",
        f"User-Agent: {_USER_AGENT}",
        "Accept: application/json",
        "Accept-Encoding: identity",
        "Connection: close",
    ]
    for name, value in (headers or {}).items():
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
            raise ValueError("header names and values must not contain line breaks")
        lines.append(f"{name}: {value}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    context = _ssl_context_for(parts.scheme, ssl_context)

    deadline = asyncio.get_running_loop().time() + timeout_s
    async with asyncio.timeout_at(deadline):
        reader, writer = await asyncio.open_connection(
            host, port, ssl=context, server_hostname=host if context is not None else None,
            limit=_MAX_HEADER_BYTES,
        )
    try:
        async with asyncio.timeout_at(deadline):
            writer.write(request)
            await writer.drain()
            response = await _read_response(reader, url, max_body_bytes)
    finally:
        writer.close()  # on every path, cancellation included; never awaited there
    # The response is complete: a slow TLS close_notify must not turn it into a failure.
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(_CLOSE_TIMEOUT_S):
            await writer.wait_closed()

    if raise_for_status and response.status >= 400:
        raise HttpError(
            response.status, url, parse_retry_after(response.headers.get("retry-after")), response.body[:2048]
        )
    return response


async def _read_line(reader: asyncio.StreamReader) -> bytes:
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        raise HttpProtocolError("connection closed in the middle of the response head") from exc
    except asyncio.LimitOverrunError as exc:
        raise HttpProtocolError(f"response line longer than {_MAX_HEADER_BYTES} bytes") from exc
    return line.rstrip(b"\r\n")


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    status_line = await _read_line(reader)
    pieces = status_line.split(b" ", 2)
    if len(pieces) < 2 or not pieces[0].startswith(b"HTTP/1.") or not pieces[1].isdigit():
        raise HttpProtocolError(f"bad status line {status_line[:80]!r}")
    status = int(pieces[1])
    headers: dict[str, str] = {}
    for _ in range(_MAX_HEADERS + 1):
        line = await _read_line(reader)
        if not line:
            return status, headers
        name, sep, value = line.partition(b":")
        if not sep or not name.strip():
            raise HttpProtocolError(f"bad header line {line[:80]!r}")
        headers[name.strip().decode("latin-1").lower()] = value.strip().decode("latin-1")
    raise HttpProtocolError(f"more than {_MAX_HEADERS} response headers")


async def _read_response(reader: asyncio.StreamReader, url: str, max_body: int) -> HttpResponse:
    status, headers = await _read_head(reader)
    while 100 <= status < 200:  # interim responses (100 Continue, 103 Early Hints) precede the real one
        status, headers = await _read_head(reader)
    encoding = headers.get("content-encoding", "identity").lower()
    if encoding not in ("identity", ""):
        raise HttpProtocolError(f"unsupported Content-Encoding {encoding!r} (we asked for identity)")
    if status in (204, 304):
        body = b""
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader, max_body)
    elif "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError:
            raise HttpProtocolError(f"bad Content-Length {headers['content-length']!r}") from None
        if length < 0:
            raise HttpProtocolError(f"bad Content-Length {length}")
        if length > max_body:
            raise HttpProtocolError(f"response body of {length} bytes exceeds the {max_body}-byte cap")
        try:
            body = await reader.readexactly(length)
        except asyncio.IncompleteReadError as exc:
            raise HttpProtocolError(f"body truncated at {len(exc.partial)} of {length} bytes") from exc
    else:
        body = await _read_to_eof(reader, max_body)
    return HttpResponse(status, headers, body, url)


async def _read_chunked(reader: asyncio.StreamReader, max_body: int) -> bytes:
    body = bytearray()
    while True:
        size_line = await _read_line(reader)
        size_text = size_line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise HttpProtocolError(f"bad chunk size {size_line[:40]!r}") from None
        if size < 0:
            raise HttpProtocolError(f"bad chunk size {size_line[:40]!r}")
        if size == 0:
            while await _read_line(reader):  # trailers, up to the blank line
                pass
            return bytes(body)
        if len(body) + size > max_body:
            raise HttpProtocolError(f"chunked body exceeds the {max_body}-byte cap")
        try:
            body += await reader.readexactly(size)
        except asyncio.IncompleteReadError as exc:
            raise HttpProtocolError("chunked body truncated") from exc
        if await _read_line(reader):
            raise HttpProtocolError("chunk not followed by CRLF")


async def _read_to_eof(reader: asyncio.StreamReader, max_body: int) -> bytes:
    body = bytearray()
    while chunk := await reader.read(65536):
        body += chunk
        if len(body) > max_body:
            raise HttpProtocolError(f"response body exceeds the {max_body}-byte cap")
    return bytes(body)
