"""Slack incoming webhook: one message per alert, Block Kit blocks plus a plain ``text`` fallback (what
notifications and old clients show).

Limits kept (Slack Block Kit reference): at most 50 blocks; a ``header`` block's plain text at most 150
characters; a ``section`` text at most 3000; at most 10 ``fields`` per section, each at most 2000; at most 10
``context`` elements. In ``mrkdwn`` only ``&``, ``<`` and ``>`` need escaping. The webhook URL is the
credential (config ``url``/``url_env``); Slack answers 200 ``ok``, 4xx with a short error word
(``invalid_payload``, ``no_service``...) and 429 with ``Retry-After``.
"""

from __future__ import annotations

from typing import Any

import orjson

from flushwatch.events import Alert
from sinks.base import AlertSink
from sinks.format import AlertView, describe, truncate
from sinks.http import HttpClient, raise_for_status

__all__ = ["SLACK_LIMITS", "SlackSink", "slack_payload"]

SLACK_LIMITS = {"blocks": 50, "header": 150, "section_text": 3000, "fields": 10, "field_text": 2000,
                "context_elements": 10, "fallback_text": 3000}


def escape_mrkdwn(text: str) -> str:
    """Escape the three control characters of Slack mrkdwn."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _mrkdwn(text: str, limit: int) -> dict[str, str]:
    # escape first, then cut: the cut may only shorten an entity at the very end, never add characters
    escaped = escape_mrkdwn(text)
    if len(escaped) > limit:
        escaped = truncate(escaped, limit)
        cut = escaped.rfind("&", max(0, len(escaped) - 6))
        if cut != -1 and ";" not in escaped[cut:]:
            escaped = escaped[:cut] + "\N{HORIZONTAL ELLIPSIS}"
    return {"type": "mrkdwn", "text": escaped}


def slack_payload(view: AlertView) -> dict[str, Any]:
    """The incoming-webhook JSON for one alert view."""
    blocks: list[dict[str, Any]] = [
        {"type": "header",
         "text": {"type": "plain_text", "text": truncate(f"{view.emoji} {view.title}", SLACK_LIMITS["header"]),
                  "emoji": True}},
        {"type": "section", "text": _mrkdwn(view.summary, SLACK_LIMITS["section_text"])},
    ]
    facts = view.facts[: SLACK_LIMITS["fields"]]
    if facts:
        blocks.append({"type": "section", "fields": [
            _mrkdwn(f"*{label}*\n{value}", SLACK_LIMITS["field_text"]) for label, value in facts]})
    blocks.append({"type": "context", "elements": [
        _mrkdwn(f"*Venues:* {view.venues}", SLACK_LIMITS["section_text"]),
        _mrkdwn(f"*Time:* {view.when} (window {view.window})", SLACK_LIMITS["section_text"]),
        _mrkdwn(f"{view.type} \N{MIDDLE DOT} {view.alert_id}", SLACK_LIMITS["section_text"]),
    ]})
    fallback = truncate(f"{view.emoji} {view.title}: {view.summary} ({view.when})", SLACK_LIMITS["fallback_text"])
    return {"text": escape_mrkdwn(fallback), "blocks": blocks[: SLACK_LIMITS["blocks"]]}


class SlackSink(AlertSink):
    """Posts each alert to one Slack incoming webhook."""

    kind = "slack"

    def __init__(self, name: str, url: str, client: HttpClient, timeout_s: float = 10.0) -> None:
        self.name = name
        self._url = url
        self._client = client
        self._timeout_s = timeout_s

    def payload(self, alert: Alert) -> dict[str, Any]:
        """The JSON body for one alert."""
        return slack_payload(describe(alert))

    async def deliver(self, alert: Alert) -> None:
        """POST the message; raises DeliveryError unless Slack accepted it."""
        body = orjson.dumps(self.payload(alert))
        response = await self._client.post(self._url, body, {"Content-Type": "application/json"}, self._timeout_s)
        raise_for_status(response)

    async def close(self) -> None:
        """Release the shared HTTP client."""
        await self._client.close()
