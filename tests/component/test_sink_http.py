"""HTTP sinks against a real local HTTP server: what goes on the wire and how answers are classified."""

from __future__ import annotations

import asyncio

import pytest

from flushwatch.codec import encode_alert
from sinks.base import DeliveryError
from sinks.discord import DiscordSink
from sinks.http import HttpClient
from sinks.slack import SlackSink
from sinks.telegram import TelegramSink
from sinks.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookSink, verify_signature
from tests.integration.test_sink_support import FakeClock, RecordingServer, Reply, make_alert

SECRET = b"webhook-secret"


async def test_webhook_posts_the_alert_bytes_signed_and_the_receiver_verifies_them():
    clock = FakeClock()
    client = HttpClient()
    async with RecordingServer() as server:
        sink = WebhookSink("ops", f"{server.url}/hook", SECRET, client, timeout_s=5, headers={"X-Team": "risk"},
                           clock=clock)
        alert = make_alert(1)
        await sink.deliver(alert)
        await sink.close()
    (seen,) = server.seen
    assert seen.path == "/hook"
    assert seen.body == encode_alert(alert)
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["x-team"] == "risk"
    assert seen.headers["idempotency-key"] == seen.headers["x-flushwatch-alert-id"] == "id-1"
    assert seen.headers[TIMESTAMP_HEADER.lower()] == str(int(clock.time()))
    signature = seen.headers[SIGNATURE_HEADER.lower()]
    assert signature.startswith("v1=")
    assert verify_signature(SECRET, seen.body, seen.headers[TIMESTAMP_HEADER.lower()], signature, clock.time())
    # a wrong secret, a tampered body or a stale timestamp all fail
    assert not verify_signature(b"other", seen.body, seen.headers[TIMESTAMP_HEADER.lower()], signature, clock.time())
    assert not verify_signature(SECRET, seen.body + b" ", seen.headers[TIMESTAMP_HEADER.lower()], signature,
                                clock.time())
    assert not verify_signature(SECRET, seen.body, seen.headers[TIMESTAMP_HEADER.lower()], signature,
                                clock.time() + 301)


@pytest.mark.parametrize(("reply", "reason", "retryable", "retry_after"), [
    (Reply(500, b"boom"), "http_5xx", True, None),
    (Reply(503, b"", {"Retry-After": "3"}), "http_5xx", True, 3.0),
    (Reply(429, b"slow down", {"Retry-After": "7"}), "http_429", True, 7.0),
    (Reply(429, {"message": "You are being rate limited.", "retry_after": 1.25, "global": False}),
     "http_429", True, 1.25),
    (Reply(408, b""), "http_408", True, None),
    (Reply(400, b"invalid_payload"), "http_4xx", False, None),
    (Reply(404, b"no_service"), "http_4xx", False, None),
    (Reply(302, b"", {"Location": "http://127.0.0.1:1/elsewhere"}), "http_3xx", False, None),
])
async def test_answers_are_classified(reply, reason, retryable, retry_after):
    client = HttpClient()
    async with RecordingServer() as server:
        server.script.append(reply)
        sink = WebhookSink("ops", f"{server.url}/hook", SECRET, client)
        with pytest.raises(DeliveryError) as caught:
            await sink.deliver(make_alert(1))
        await client.close()
    assert (caught.value.reason, caught.value.retryable, caught.value.retry_after) == (reason, retryable, retry_after)
    assert len(server.seen) == 1  # redirects are not followed


async def test_timeout_and_refused_connection_are_retryable():
    client = HttpClient()
    hold = asyncio.Event()
    async with RecordingServer() as server:
        server.script.append(Reply(200, hold=hold))
        sink = WebhookSink("ops", f"{server.url}/hook", SECRET, client, timeout_s=0.2)
        with pytest.raises(DeliveryError) as caught:
            await sink.deliver(make_alert(1))
        hold.set()
        assert (caught.value.reason, caught.value.retryable) == ("timeout", True)
        port = int(server.url.rsplit(":", 1)[1])
    refused = WebhookSink("ops", f"http://127.0.0.1:{port}/hook", SECRET, client, timeout_s=2)
    with pytest.raises(DeliveryError) as caught:
        await refused.deliver(make_alert(1))
    await client.close()
    assert (caught.value.reason, caught.value.retryable) == ("connection", True)


async def test_chat_sinks_post_their_payloads_and_understand_their_apis():
    client = HttpClient()
    alert = make_alert(2, severity="critical")
    async with RecordingServer() as server:
        slack = SlackSink("slack", f"{server.url}/services/T0/B0/xyz", client)
        discord = DiscordSink("discord", f"{server.url}/api/webhooks/1/abc", client, username="flushwatch")
        telegram = TelegramSink("tg", "123:ABC", "-1001234567890", client, api_url=server.url, message_thread_id=7)
        server.script.extend([Reply(200, b"ok"), Reply(204, b""),
                              Reply(200, {"ok": True, "result": {"message_id": 1}})])
        await slack.deliver(alert)
        await discord.deliver(alert)
        await telegram.deliver(alert)
        # Telegram's flood control and its "ok": false answers
        server.script.extend([
            Reply(429, {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 5",
                        "parameters": {"retry_after": 5}}),
            Reply(400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}),
            Reply(200, {"ok": False, "error_code": 400, "description": "Bad Request: odd"}),
        ])
        with pytest.raises(DeliveryError) as flood:
            await telegram.deliver(alert)
        with pytest.raises(DeliveryError) as missing:
            await telegram.deliver(alert)
        with pytest.raises(DeliveryError) as odd:
            await telegram.deliver(alert)
        await client.close()
    slack_seen, discord_seen, tg_seen = server.seen[:3]
    assert slack_seen.path == "/services/T0/B0/xyz"
    assert set(slack_seen.json()) == {"text", "blocks"}
    assert discord_seen.json()["username"] == "flushwatch"
    assert discord_seen.json()["embeds"][0]["color"] == 0xE74C3C
    assert tg_seen.path == "/bot123:ABC/sendMessage"
    body = tg_seen.json()
    assert body["chat_id"] == -1001234567890
    assert body["parse_mode"] == "HTML"
    assert body["message_thread_id"] == 7
    assert body["disable_notification"] is False
    assert (flood.value.reason, flood.value.retryable, flood.value.retry_after) == ("http_429", True, 5.0)
    assert (missing.value.reason, missing.value.retryable) == ("http_4xx", False)
    assert "chat not found" in str(missing.value)
    assert (odd.value.reason, odd.value.retryable) == ("api_error", False)
    assert "123:ABC" not in str(flood.value) + str(missing.value) + str(odd.value)
