"""Chat payloads against the platforms' documented shapes and limits.

Each platform's request body is checked with a JSON Schema transcribed from its documentation (field
names, types, required fields, lengths and counts), plus the limits a JSON Schema cannot express: Discord's
6000-character total over an embed, Telegram's 4096 characters counted in UTF-16 after entity parsing.
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from flushwatch.events import Alert
from sinks.discord import DISCORD_LIMITS, discord_payload, embed_length
from sinks.format import describe, fmt_duration, fmt_number, fmt_usd, utf16_len
from sinks.slack import slack_payload
from sinks.telegram import TELEGRAM_TEXT_LIMIT, TelegramSink, escape_markdown_v2, telegram_text
from tests.integration.test_sink_support import demo_alerts, make_alert

_TEXT = {"type": "object", "required": ["type", "text"],
         "properties": {"type": {"enum": ["plain_text", "mrkdwn"]}, "text": {"type": "string", "minLength": 1},
                        "emoji": {"type": "boolean"}, "verbatim": {"type": "boolean"}},
         "additionalProperties": False}
# Slack incoming webhook with Block Kit (header / section / context blocks)
SLACK_SCHEMA = {
    "type": "object", "required": ["text", "blocks"], "additionalProperties": False,
    "properties": {
        "text": {"type": "string", "minLength": 1, "maxLength": 40000},
        "blocks": {"type": "array", "maxItems": 50, "items": {"oneOf": [
            {"type": "object", "required": ["type", "text"], "additionalProperties": False, "properties": {
                "type": {"const": "header"},
                "text": {**_TEXT, "properties": {**_TEXT["properties"], "type": {"const": "plain_text"},
                                                 "text": {"type": "string", "minLength": 1, "maxLength": 150}}}}},
            {"type": "object", "required": ["type"], "additionalProperties": False, "anyOf": [
                {"required": ["text"]}, {"required": ["fields"]}], "properties": {
                "type": {"const": "section"},
                "text": {**_TEXT, "properties": {**_TEXT["properties"],
                                                 "text": {"type": "string", "minLength": 1, "maxLength": 3000}}},
                "fields": {"type": "array", "minItems": 1, "maxItems": 10, "items": {
                    **_TEXT, "properties": {**_TEXT["properties"],
                                            "text": {"type": "string", "minLength": 1, "maxLength": 2000}}}}}},
            {"type": "object", "required": ["type", "elements"], "additionalProperties": False, "properties": {
                "type": {"const": "context"},
                "elements": {"type": "array", "minItems": 1, "maxItems": 10, "items": {
                    **_TEXT, "properties": {**_TEXT["properties"],
                                            "text": {"type": "string", "minLength": 1, "maxLength": 3000}}}}}},
        ]}},
    },
}
# Discord execute-webhook body with rich embeds
DISCORD_SCHEMA = {
    "type": "object", "required": ["embeds"], "additionalProperties": False,
    "properties": {
        "content": {"type": "string", "maxLength": 2000},
        "username": {"type": "string", "minLength": 1, "maxLength": 80},
        "avatar_url": {"type": "string"},
        "allowed_mentions": {"type": "object", "properties": {"parse": {"type": "array", "maxItems": 0}}},
        "embeds": {"type": "array", "minItems": 1, "maxItems": 10, "items": {
            "type": "object", "additionalProperties": False,
            "properties": {
                "title": {"type": "string", "maxLength": 256},
                "description": {"type": "string", "maxLength": 4096},
                "url": {"type": "string"},
                "timestamp": {"type": "string",
                              "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$"},
                "color": {"type": "integer", "minimum": 0, "maximum": 0xFFFFFF},
                "footer": {"type": "object", "required": ["text"], "additionalProperties": False,
                           "properties": {"text": {"type": "string", "maxLength": 2048},
                                          "icon_url": {"type": "string"}}},
                "author": {"type": "object", "required": ["name"],
                           "properties": {"name": {"type": "string", "maxLength": 256}}},
                "fields": {"type": "array", "maxItems": 25, "items": {
                    "type": "object", "required": ["name", "value"], "additionalProperties": False, "properties": {
                        "name": {"type": "string", "minLength": 1, "maxLength": 256},
                        "value": {"type": "string", "minLength": 1, "maxLength": 1024},
                        "inline": {"type": "boolean"}}}},
            },
        }},
    },
}
# Telegram Bot API sendMessage parameters
TELEGRAM_SCHEMA = {
    "type": "object", "required": ["chat_id", "text"], "additionalProperties": False,
    "properties": {
        "chat_id": {"type": ["integer", "string"]},
        "message_thread_id": {"type": "integer"},
        "text": {"type": "string", "minLength": 1, "maxLength": 4096},
        "parse_mode": {"enum": ["HTML", "MarkdownV2", "Markdown"]},
        "link_preview_options": {"type": "object", "properties": {"is_disabled": {"type": "boolean"}}},
        "disable_notification": {"type": "boolean"},
        "protect_content": {"type": "boolean"},
    },
}


def _check(schema: dict[str, Any], payload: dict[str, Any]) -> None:
    errors = sorted(Draft202012Validator(schema).iter_errors(payload), key=str)
    assert not errors, [f"{list(e.path)}: {e.message[:200]}" for e in errors]


def _huge(alert: Alert) -> Alert:
    """An alert built to break every limit: a 50k-character message full of markup characters and emoji,
    long metric names and values, many venues."""
    message = ("<b>flush</b> & *bold* _it_ `code` [x](y) " + "\N{FIRE}" * 3 + " ") * 1200
    metrics = {f"metric_{'x' * 300}_{i}": "v" * 3000 for i in range(40)}
    metrics.update(alert.metrics)
    return Alert(alert_id=alert.alert_id * 20, type=alert.type + "_" + "y" * 300, severity=alert.severity,
                 base=alert.base * 40, venues=tuple(f"venue{i}" * 20 for i in range(60)), ts=alert.ts,
                 emitted_ts=alert.emitted_ts, window_start=alert.window_start, window_end=alert.window_end,
                 metrics=metrics, message=message)


def _cases() -> list[Alert]:
    alerts = demo_alerts()
    return [*alerts, _huge(alerts[0]), make_alert(1, message="", metrics={"note": "", "flag": None})]


@pytest.mark.parametrize("alert", _cases(), ids=lambda a: f"{a.type[:20]}-{a.base[:6]}-{len(a.message)}")
def test_slack_payload(alert):
    payload = slack_payload(describe(alert))
    _check(SLACK_SCHEMA, payload)
    header = payload["blocks"][0]["text"]["text"]
    assert alert.severity.upper() in header and alert.base[:6] in header
    if len(alert.message) < 1000:
        section = payload["blocks"][1]["text"]["text"]
        assert "<" not in section and ">" not in section.replace("&gt;", "")


@pytest.mark.parametrize("alert", _cases(), ids=lambda a: f"{a.type[:20]}-{a.base[:6]}-{len(a.message)}")
def test_discord_payload(alert):
    payload = discord_payload(describe(alert), username="flushwatch alerts")
    _check(DISCORD_SCHEMA, payload)
    embed = payload["embeds"][0]
    assert embed_length(embed) <= DISCORD_LIMITS["total"]
    for key, limit in (("title", 256), ("description", 4096)):
        assert utf16_len(embed.get(key, "")) <= limit
    assert all(utf16_len(f["value"]) <= 1024 and utf16_len(f["name"]) <= 256 for f in embed["fields"])
    assert payload["allowed_mentions"] == {"parse": []}
    assert embed["timestamp"].endswith("Z")


class _TagChecker(HTMLParser):
    """Telegram's HTML: only its supported tags, properly nested."""

    allowed = frozenset({"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "code", "pre", "a",
                         "span", "tg-spoiler", "blockquote"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        assert tag in self.allowed, tag
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack.pop() == tag, tag

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.mark.parametrize("alert", _cases(), ids=lambda a: f"{a.type[:20]}-{a.base[:6]}-{len(a.message)}")
def test_telegram_html(alert):
    sink = TelegramSink("tg", "1:x", "@flushwatch_alerts", client=None)  # type: ignore[arg-type]
    payload = sink.payload(alert)
    _check(TELEGRAM_SCHEMA, payload)
    text = payload["text"]
    assert utf16_len(text) <= TELEGRAM_TEXT_LIMIT
    checker = _TagChecker()
    checker.feed(text)
    checker.close()
    assert checker.stack == []
    visible = "".join(checker.text)
    assert 0 < utf16_len(visible) <= TELEGRAM_TEXT_LIMIT  # the limit applies after entity parsing
    assert payload["chat_id"] == "@flushwatch_alerts"


@pytest.mark.parametrize("alert", _cases(), ids=lambda a: f"{a.type[:20]}-{a.base[:6]}-{len(a.message)}")
def test_telegram_markdown_v2(alert):
    text = telegram_text(describe(alert), "MarkdownV2")
    assert utf16_len(text) <= TELEGRAM_TEXT_LIMIT
    # outside entities every special character is escaped; entities open and close in pairs
    unescaped: set[str] = set()
    open_markers: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "`":  # a code entity: only ` and \ are escaped inside
            j = i + 1
            while text[j] != "`":
                j += 2 if text[j] == "\\" else 1
            i = j + 1
            continue
        if ch in "*_":
            if open_markers and open_markers[-1] == ch:
                open_markers.pop()
            else:
                open_markers.append(ch)
        elif ch in "[]()~>#+-=|{}.!":
            unescaped.add(ch)
        i += 1
    assert not unescaped, sorted(unescaped)
    assert open_markers == []


def test_the_view_says_what_happened_with_numbers_venues_and_utc_time():
    started = next(a for a in demo_alerts() if a.type == "cascade_started" and a.base == "BTC")
    view = describe(started)
    assert view.title == "INFO \N{MIDDLE DOT} BTC long liquidation cascade started"
    facts = dict(view.facts)
    assert "By side" not in facts  # only longs were liquidated: the title says so
    both = dict(describe(make_alert(4, metrics={"by_side": {"long": 2e6, "short": 5e5}})).facts)
    assert both["By side"] == "long $2M / short $500K"
    assert facts["Liquidated"].startswith("\N{GREATER-THAN OR EQUAL TO} $")
    assert facts["Events"] == str(started.metrics["events"])
    assert "\N{RIGHTWARDS ARROW}" in facts["Price"] and "%" in facts["Price"]
    assert view.venues.startswith("binance $")
    assert view.when.endswith(" UTC") and view.when.startswith("2025-01-27 ")
    assert view.summary == started.message
    ended = next(a for a in demo_alerts() if a.type == "cascade_ended")
    assert "Duration" in dict(describe(ended).facts)
    # a detector the formatter has never heard of still shows its numbers
    novel = make_alert(3, type="oi_flush", metrics={"oi_drop_pct": -12.5, "oi_peak_usd": 2.5e9, "zeta_ratio": 0.5})
    novel_facts = dict(describe(novel).facts)
    assert novel_facts["OI change"] == "-12.50%"
    assert novel_facts["OI peak"] == "$2.5B"
    assert novel_facts["Zeta ratio"] == "0.5"


def test_number_formats():
    assert fmt_usd(243538.27) == "$243.54K"
    assert fmt_usd(1_250_000) == "$1.25M"
    assert fmt_usd(950) == "$950"
    assert fmt_usd(-2e9) == "-$2B"
    assert fmt_number(99755.5) == "99,755.5"
    assert fmt_number(0.320591) == "0.320591"
    assert fmt_number(12) == "12"
    assert fmt_duration(82.1) == "1m 22s"
    assert fmt_duration(3725) == "1h 02m"
    assert fmt_duration(41.3) == "41s"
    assert escape_markdown_v2("a.b-c!") == "a\\.b\\-c\\!"
