"""Discord channel webhook: one message with one embed per alert.

Limits kept (Discord "Embed Limits"): title 256 characters, description 4096, at most 25 fields with names
of at most 256 and values of at most 1024, footer text 2048, author name 256, and at most 6000 characters in
total over title, description, field names and values, footer text and author name of all embeds of a
message; a webhook ``username`` at most 80. Lengths are counted in UTF-16 code units, which is never less
than the number of characters, so the limits hold however Discord counts. ``allowed_mentions`` is empty,
so no text inside an alert can ping ``@everyone``. Discord answers 204 No Content, and 429 with
``Retry-After`` and a JSON ``retry_after`` (seconds, fractional).
"""

from __future__ import annotations

from typing import Any

import orjson

from flushwatch.events import Alert
from sinks.base import AlertSink
from sinks.format import SEVERITY_COLORS, AlertView, describe, truncate, utf16_len
from sinks.http import HttpClient, raise_for_status

__all__ = ["DISCORD_LIMITS", "DiscordSink", "discord_payload", "embed_length"]

DISCORD_LIMITS = {"title": 256, "description": 4096, "fields": 25, "field_name": 256, "field_value": 1024,
                  "footer": 2048, "author": 256, "total": 6000, "username": 80}


def escape_markdown(text: str) -> str:
    """Backslash-escape Discord's inline markdown so a detector's sentence renders literally."""
    return "".join("\\" + ch if ch in "\\*_~`|" else ch for ch in text)


def embed_length(embed: dict[str, Any]) -> int:
    """Characters that count toward Discord's 6000 limit for one embed."""
    total = utf16_len(embed.get("title", "")) + utf16_len(embed.get("description", ""))
    total += utf16_len(embed.get("footer", {}).get("text", "")) + utf16_len(embed.get("author", {}).get("name", ""))
    for field in embed.get("fields", []):
        total += utf16_len(field["name"]) + utf16_len(field["value"])
    return total


def discord_payload(view: AlertView, username: str | None = None) -> dict[str, Any]:
    """The execute-webhook JSON for one alert view, inside every limit."""
    lim = DISCORD_LIMITS
    fields = [{"name": truncate(label, lim["field_name"], utf16_len),
               "value": truncate(value, lim["field_value"], utf16_len), "inline": True}
              for label, value in view.facts[: lim["fields"] - 2]]
    fields.append({"name": "Venues", "value": truncate(view.venues, lim["field_value"], utf16_len),
                   "inline": False})
    fields.append({"name": "Window", "value": truncate(view.window, lim["field_value"], utf16_len),
                   "inline": False})
    embed: dict[str, Any] = {
        "title": truncate(f"{view.emoji} {view.title}", lim["title"], utf16_len),
        "color": SEVERITY_COLORS.get(view.severity, 0x95A5A6),
        "timestamp": view.ts_iso,
        "fields": fields,
        "footer": {"text": truncate(f"{view.type} \N{MIDDLE DOT} {view.alert_id} \N{MIDDLE DOT} {view.when}",
                                    lim["footer"], utf16_len)},
    }
    room = lim["total"] - embed_length(embed)
    description = truncate(escape_markdown(view.summary), max(0, min(lim["description"], room)), utf16_len)
    if description:
        embed["description"] = description
    while embed_length(embed) > lim["total"] and embed["fields"]:  # only with absurdly long facts
        embed["fields"].pop(0)
    payload: dict[str, Any] = {"embeds": [embed], "allowed_mentions": {"parse": []}}
    if username:
        payload["username"] = truncate(username, lim["username"], utf16_len)
    return payload


class DiscordSink(AlertSink):
    """Posts each alert to one Discord webhook."""

    kind = "discord"

    def __init__(self, name: str, url: str, client: HttpClient, timeout_s: float = 10.0,
                 username: str | None = None) -> None:
        self.name = name
        self._url = url
        self._client = client
        self._timeout_s = timeout_s
        self._username = username

    def payload(self, alert: Alert) -> dict[str, Any]:
        """The JSON body for one alert."""
        return discord_payload(describe(alert), self._username)

    async def deliver(self, alert: Alert) -> None:
        """POST the embed; raises DeliveryError unless Discord accepted it."""
        body = orjson.dumps(self.payload(alert))
        response = await self._client.post(self._url, body, {"Content-Type": "application/json"}, self._timeout_s)
        raise_for_status(response)

    async def close(self) -> None:
        """Release the shared HTTP client."""
        await self._client.close()
