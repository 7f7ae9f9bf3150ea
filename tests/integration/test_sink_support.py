"""Shared helpers for the sink tests (this module holds no tests): a fake clock, sample alerts, the demo
backtest's alerts, JSON Schema validation, and a real local HTTP server that records requests and answers
from a script."""

from __future__ import annotations

import asyncio
import functools
import io
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from jsonschema import Draft202012Validator

from flushwatch.app import demo_recording_path
from flushwatch.backtest import run_backtest
from flushwatch.codec import alert_to_dict, decode_alert
from flushwatch.config import Config, load_config
from flushwatch.events import Alert

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "v1"


def fast_groups(config: Config) -> Config:
    """Short consumer-group sessions: joins take about half the session timeout, and a killed member is
    evicted sooner."""
    kafka = config.kafka.model_copy(update={"session_timeout_ms": 2000, "heartbeat_interval_ms": 500})
    return config.model_copy(update={"kafka": kafka})


class FakeClock:
    """Monotonic and wall time that only move when something sleeps; every sleep is recorded."""

    def __init__(self, wall: float = 1_737_996_000.0) -> None:
        self.now = 1000.0
        self._wall0 = wall
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self._wall0 + self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


def make_alert(i: int, base: str = "BTC", **changes: Any) -> Alert:
    fields: dict[str, Any] = dict(
        alert_id=f"id-{i}", type="cascade_started", severity="warning", base=base, venues=("binance",),
        ts=1_737_996_780_000 + i, emitted_ts=1_737_996_781_000 + i, window_start=1_737_996_720_000,
        window_end=1_737_996_780_000 + i, metrics={"notional_usd": 1000.5 + i, "events": 12, "side": "long"},
        message=f"alert {i}")
    fields.update(changes)
    return Alert(**fields)


@functools.cache
def demo_alert_lines() -> tuple[bytes, ...]:
    """The alerts `flushwatch backtest` produces from the bundled demo recording, as wire bytes."""
    out = io.BytesIO()
    run_backtest([str(demo_recording_path())], load_config(environ={}), out)
    return tuple(out.getvalue().splitlines())


def demo_alerts() -> list[Alert]:
    return [decode_alert(line) for line in demo_alert_lines()]


@functools.cache
def validator(name: str) -> Draft202012Validator:
    schema = orjson.loads((SCHEMAS / f"{name}.schema.json").read_bytes())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def assert_valid_alert(obj: dict[str, Any] | Alert | bytes) -> None:
    """Every alert a test produces must match the published contract."""
    if isinstance(obj, Alert):
        obj = alert_to_dict(obj)
    elif isinstance(obj, bytes):
        obj = orjson.loads(obj)
    errors = sorted(validator("alert").iter_errors(obj), key=str)
    assert not errors, [e.message for e in errors]


@dataclass
class Reply:
    status: int = 200
    body: bytes | dict[str, Any] = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    hold: asyncio.Event | None = None  # answer only once this is set


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 0

    def json(self) -> Any:
        return orjson.loads(self.body)


class RecordingServer:
    """A real aiohttp server on 127.0.0.1. Each request takes the next scripted reply (default: 200 ok)
    and is recorded; ``accepted`` lists the bodies answered with 2xx."""

    def __init__(self) -> None:
        self.script: deque[Reply] = deque()
        self.default = Reply()
        self.seen: list[Seen] = []
        self.accepted: list[Seen] = []
        self.arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> RecordingServer:
        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        for reply in [*self.script, self.default]:
            if reply.hold is not None:
                reply.hold.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for(self, count: int, timeout_s: float = 20.0) -> None:
        """Until at least ``count`` requests arrived (not necessarily answered)."""
        async with asyncio.timeout(timeout_s):
            while len(self.seen) < count:
                self.arrived.clear()
                await self.arrived.wait()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        seen = Seen(request.path, {k.lower(): v for k, v in request.headers.items()}, body)
        self.seen.append(seen)
        self.arrived.set()
        reply = self.script.popleft() if self.script else self.default
        if reply.hold is not None:
            await reply.hold.wait()
        seen.status = reply.status
        if 200 <= reply.status < 300:
            self.accepted.append(seen)
        payload = reply.body if isinstance(reply.body, bytes) else orjson.dumps(reply.body)
        if reply.status == 204:
            return web.Response(status=204, headers=reply.headers)
        return web.Response(status=reply.status, body=payload, headers=reply.headers)
