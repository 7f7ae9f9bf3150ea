"""Telegram: Bot API ``sendMessage`` to one chat, formatted with a parse mode (HTML by default, or
MarkdownV2).

Limits kept: ``text`` is 1-4096 characters after entity parsing, counted in UTF-16 code units; the whole
marked-up source is kept within 4096 UTF-16 units, which is never less than the parsed length, so the
message is never rejected for its size. Escaping follows the Bot API: in HTML only ``<``, ``>`` and ``&``;
in MarkdownV2 every one of ``_*[]()~`>#+-=|{}.!`` and the backslash. The bot token travels in the URL
path (``/bot<token>/sendMessage``) and is never logged. Telegram answers ``{"ok": true}``; errors carry
``error_code`` and ``description``, and 429 carries ``parameters.retry_after`` (seconds).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import orjson

from flushwatch.events import Alert
from sinks.base import AlertSink, DeliveryError
from sinks.format import AlertView, describe, truncate, utf16_len
from sinks.http import HttpClient, raise_for_status

__all__ = ["TELEGRAM_TEXT_LIMIT", "TelegramSink", "escape_html", "escape_markdown_v2", "telegram_text"]

TELEGRAM_TEXT_LIMIT = 4096
_MD_SPECIAL = frozenset("_*[]()~`>#+-=|{}.!\\")
ParseMode = Literal["HTML", "MarkdownV2"]


def escape_html(text: str) -> str:
    """Escape for parse_mode HTML."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_markdown_v2(text: str) -> str:
    """Escape for parse_mode MarkdownV2 (outside code entities)."""
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in text)


def _escape_md_code(text: str) -> str:
    return text.replace("\\", "\\\\").replace("`", "\\`")


class _Markup:
    def __init__(self, mode: ParseMode) -> None:
        self.mode = mode
        self.escape: Callable[[str], str] = escape_html if mode == "HTML" else escape_markdown_v2

    def bold(self, text: str) -> str:
        return f"<b>{escape_html(text)}</b>" if self.mode == "HTML" else f"*{escape_markdown_v2(text)}*"

    def italic(self, text: str) -> str:
        return f"<i>{escape_html(text)}</i>" if self.mode == "HTML" else f"_{escape_markdown_v2(text)}_"

    def code(self, text: str) -> str:
        return f"<code>{escape_html(text)}</code>" if self.mode == "HTML" else f"`{_escape_md_code(text)}`"


def telegram_text(view: AlertView, parse_mode: ParseMode = "HTML") -> str:
    """The message text for one alert view, in the given parse mode, within 4096 UTF-16 units."""
    m = _Markup(parse_mode)
    head = f"{m.escape(view.emoji)} {m.bold(view.title)}"
    lines = [f"{m.bold(truncate(label, 64) + ':')} {m.escape(truncate(value, 200))}" for label, value in view.facts]
    lines.append(f"{m.bold('Venues:')} {m.escape(truncate(view.venues, 500))}")
    lines.append(f"{m.bold('Time:')} {m.escape(view.when)} {m.italic('(window ' + view.window + ')')}")
    lines.append(m.code(view.alert_id))
    tail = "\n".join(lines)
    budget = TELEGRAM_TEXT_LIMIT - utf16_len(head) - utf16_len(tail) - 3  # three newlines around the summary
    summary = truncate(view.summary, budget, lambda t: utf16_len(m.escape(t)))
    return f"{head}\n{m.escape(summary)}\n\n{tail}"


class TelegramSink(AlertSink):
    """Sends each alert to one Telegram chat through a bot."""

    kind = "telegram"

    def __init__(self, name: str, token: str, chat_id: str, client: HttpClient, timeout_s: float = 10.0,
                 parse_mode: ParseMode = "HTML", api_url: str = "https://api.telegram.org",
                 message_thread_id: int | None = None) -> None:
        self.name = name
        self._url = f"{api_url.rstrip('/')}/bot{token}/sendMessage"
        self._chat_id = chat_id
        self._client = client
        self._timeout_s = timeout_s
        self._parse_mode: ParseMode = parse_mode
        self._thread = message_thread_id

    def payload(self, alert: Alert) -> dict[str, Any]:
        """The sendMessage parameters for one alert."""
        body: dict[str, Any] = {
            "chat_id": int(self._chat_id) if self._chat_id.lstrip("-").isdigit() else self._chat_id,
            "text": telegram_text(describe(alert), self._parse_mode),
            "parse_mode": self._parse_mode,
            "link_preview_options": {"is_disabled": True},
            "disable_notification": alert.severity == "info",
        }
        if self._thread is not None:
            body["message_thread_id"] = self._thread
        return body

    async def deliver(self, alert: Alert) -> None:
        """Call sendMessage; raises DeliveryError unless Telegram answered ok."""
        body = orjson.dumps(self.payload(alert))
        response = await self._client.post(self._url, body, {"Content-Type": "application/json"}, self._timeout_s)
        raise_for_status(response)
        answer = response.json()
        if isinstance(answer, dict) and answer.get("ok") is False:
            raise DeliveryError("api_error", str(answer.get("description", ""))[:300], retryable=False)

    async def close(self) -> None:
        """Release the shared HTTP client."""
        await self._client.close()
