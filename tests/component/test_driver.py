"""ConnectionDriver against a real local websocket server speaking a tiny venue protocol.

The protocol: the client sends ``{"method":"SUBSCRIBE","params":[...],"id":N}`` and the server answers
``{"result":null,"id":N}`` (Binance's shape); ``{"op":"ping"}`` is an application ping. Each test gives the
server a script for what happens after that. The server records a timeline of what it saw, and tests wait
on that timeline (an ``asyncio.Condition``), never on fixed sleeps.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from flushwatch.metrics import Metrics
from flushwatch.recording import RecordLine
from ingest.backoff import Backoff
from ingest.base import ControlAction, ParseResult, VenueAdapter, WsConnectionPlan
from ingest.driver import ConnectionDriver, websockets_connector
from tests.component.drivers import running

VENUE = "tiny"
SUBSCRIBES = (
    '{"method":"SUBSCRIBE","params":["btcusdt@aggTrade"],"id":1}',
    '{"method":"SUBSCRIBE","params":["!forceOrder@arr"],"id":2}',
)


class TinyAdapter(VenueAdapter):
    """The smallest adapter the driver can run: one plan, no parsing, records resets."""

    venue = VENUE
    stale_after_s = 10.0

    def __init__(self, ws_url: str, subscribe: tuple[str, ...] = SUBSCRIBES) -> None:
        super().__init__(["BTCUSDT"], ws_url=ws_url)
        self.subscribe = subscribe
        self.resets: list[str] = []

    def ws_connections(self) -> list[WsConnectionPlan]:
        return [WsConnectionPlan("main", self.ws_url, self.subscribe)]

    def parse(self, raw: bytes | str, recv_ts_ms: int) -> ParseResult:
        return ParseResult()

    def reset_connection_state(self, connection: str) -> None:
        self.resets.append(connection)


@dataclass(frozen=True)
class Seen:
    t: float
    conn: int
    what: str  # open, subscribe, ping, sent, close
    detail: str = ""


Script = Callable[["VenueServer", ServerConnection, int], Awaitable[None]]


class VenueServer:
    """A real websockets server running a per-connection script and recording a timeline."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.timeline: list[Seen] = []
        self.changed = asyncio.Condition()
        self._next = 0
        self._server: Server | None = None
        self.url = ""

    async def __aenter__(self) -> VenueServer:
        self._server = await serve(self._handler, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/market"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def record(self, conn: int, what: str, detail: str = "") -> None:
        self.timeline.append(Seen(time.monotonic(), conn, what, detail))
        async with self.changed:
            self.changed.notify_all()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(predicate)

    def events(self, what: str, conn: int | None = None) -> list[Seen]:
        return [s for s in self.timeline if s.what == what and (conn is None or s.conn == conn)]

    def first(self, what: str, conn: int) -> Seen:
        return self.events(what, conn)[0]

    async def _handler(self, ws: ServerConnection) -> None:
        self._next += 1
        conn = self._next
        await self.record(conn, "open")
        try:
            await self.script(self, ws, conn)
        except ConnectionClosed:
            pass
        finally:
            await self.record(conn, "close", str(ws.close_code))

    async def handle_message(self, ws: ServerConnection, conn: int, message: str | bytes) -> None:
        """The venue protocol: ack subscriptions, answer app pings."""
        text = message if isinstance(message, str) else message.decode()
        obj = json.loads(text)
        if obj.get("method") == "SUBSCRIBE":
            await self.record(conn, "subscribe", text)
            await ws.send(json.dumps({"result": None, "id": obj["id"]}))
            await self.record(conn, "sent", "ack")
        elif obj.get("op") == "ping":
            await self.record(conn, "ping", text)
            await ws.send('{"op":"pong"}')

    async def subscribe_phase(self, ws: ServerConnection, conn: int, count: int = len(SUBSCRIBES)) -> None:
        for _ in range(count):
            await self.handle_message(ws, conn, await ws.recv())

    async def serve_messages(self, ws: ServerConnection, conn: int) -> None:
        async for message in ws:
            await self.handle_message(ws, conn, message)


class SleepRecorder:
    """Injected ``sleep``: records each requested backoff delay and only yields to the loop."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.delays: list[float] = []
        self.enough = asyncio.Event()
        self.stop_after = stop_after

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if self.stop_after is not None and len(self.delays) >= self.stop_after:
            self.enough.set()
        await asyncio.sleep(0)


def make_driver(
    adapter: TinyAdapter,
    out: asyncio.Queue[RecordLine],
    metrics: Metrics,
    *,
    sleep: SleepRecorder | None = None,
    backoff: Backoff | None = None,
    max_size: int = 8 * 1024 * 1024,
    rotation_timeout_s: float = 2.0,
) -> ConnectionDriver:
    return ConnectionDriver(
        adapter,
        adapter.ws_connections()[0],
        out,
        metrics,
        backoff if backoff is not None else Backoff(0.01, 0.05, rng=random.Random(1)),
        sleep=sleep if sleep is not None else SleepRecorder(),
        connect=websockets_connector(max_size=max_size, close_timeout_s=1.0),
        subscribe_interval_s=0.05,
        rotation_timeout_s=rotation_timeout_s,
        close_timeout_s=1.0,
    )


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for a driver-side condition that has no event to wait on."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


async def take(out: asyncio.Queue[RecordLine], n: int, timeout: float = 5.0) -> list[RecordLine]:
    async with asyncio.timeout(timeout):
        return [await out.get() for _ in range(n)]


def reconnects(metrics: Metrics, reason: str) -> float | None:
    return metrics.registry.get_sample_value("flushwatch_reconnects_total", {"venue": VENUE, "reason": reason})


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    yield
    current = asyncio.current_task()
    for _ in range(3):  # let closing handlers finish their last step
        await asyncio.sleep(0)
    leaked = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert not leaked, f"tasks leaked: {leaked}"


async def test_reconnects_and_resubscribes_after_server_close() -> None:
    async def script(server: VenueServer, ws: ServerConnection, conn: int) -> None:
        await server.subscribe_phase(ws, conn)
        if conn == 1:
            await ws.send('{"n":1}')
            await ws.send('{"n":2}')
            await ws.close()
            return
        await ws.send('{"n":3}')
        await server.serve_messages(ws, conn)

    metrics = Metrics()
    out: asyncio.Queue[RecordLine] = asyncio.Queue(maxsize=100)
    sleep = SleepRecorder()
    async with VenueServer(script) as server:
        adapter = TinyAdapter(server.url)
        driver = make_driver(adapter, out, metrics, sleep=sleep,
                             backoff=Backoff(0.01, 0.05, rng=random.Random(3)))
        async with running(driver):
            await server.wait_for(lambda: len(server.events("subscribe")) == 4)
            lines = await take(out, 7)
            assert reconnects(metrics, "closed") == 1
            assert metrics.registry.get_sample_value("flushwatch_ws_connections", {"venue": VENUE}) == 1
        # cancellation closed the socket cleanly
        await server.wait_for(lambda: len(server.events("close")) == 2)

    assert [s.detail for s in server.events("subscribe", 1)] == list(SUBSCRIBES)
    assert [s.detail for s in server.events("subscribe", 2)] == list(SUBSCRIBES)
    gap = server.events("subscribe", 1)[1].t - server.events("subscribe", 1)[0].t
    assert gap >= 0.045, "subscribe messages are paced"
    assert [line.data for line in lines] == [
        '{"result": null, "id": 1}', '{"result": null, "id": 2}', '{"n":1}', '{"n":2}',
        '{"result": null, "id": 1}', '{"result": null, "id": 2}', '{"n":3}',
    ]
    assert all(line.kind == "ws" and line.venue == VENUE and line.endpoint == server.url for line in lines)
    assert all(abs(line.recv_ts - time.time() * 1000) < 60_000 for line in lines)
    assert sleep.delays == [Backoff(0.01, 0.05, rng=random.Random(3)).delay(0)]
    assert driver.connects == 2
    assert driver.reconnects == {"closed": 1}
    assert adapter.resets == ["main"]
    assert server.events("close", 2)[0].detail == "1000"
    assert metrics.registry.get_sample_value("flushwatch_ws_connections", {"venue": VENUE}) == 0
    assert metrics.registry.get_sample_value(
        "flushwatch_seconds_since_last_message", {"venue": VENUE, "stream": "ws:main"}) is not None
    assert metrics.registry.get_sample_value("flushwatch_queue_depth", {"queue": "ingest_raw"}) is not None


async def test_silent_server_is_stale_and_reconnected() -> None:
    async def script(server: VenueServer, ws: ServerConnection, conn: int) -> None:
        await server.serve_messages(ws, conn)  # acks, then nothing

    metrics = Metrics()
    out: asyncio.Queue[RecordLine] = asyncio.Queue(maxsize=100)
    async with VenueServer(script) as server:
        adapter = TinyAdapter(server.url, subscribe=SUBSCRIBES[:1])
        adapter.stale_after_s = 0.2
        driver = make_driver(adapter, out, metrics)
        async with running(driver):
            await server.wait_for(lambda: len(server.events("subscribe")) == 2)
            assert reconnects(metrics, "stale") == 1
            assert driver.reconnects == {"stale": 1}

    silent_for = server.first("close", 1).t - server.first("sent", 1).t
    assert silent_for >= 0.19, "the watchdog waits the whole stale_after_s"


async def test_garbage_frames_are_passed_on_and_the_driver_keeps_running() -> None:
    garbage: list[str | bytes] = ["not json {{{", b"\x00\x01binary", b"\xff\xfe\xfd", "", '{"ok":true}']

    async def script(server: VenueServer, ws: ServerConnection, conn: int) -> None:
        await server.subscribe_phase(ws, conn, count=1)
        for frame in garbage:
            await ws.send(frame)
        await server.serve_messages(ws, conn)

    metrics = Metrics()
    out: asyncio.Queue[RecordLine] = asyncio.Queue(maxsize=100)
    async with VenueServer(script) as server:
        driver = make_driver(TinyAdapter(server.url, subscribe=SUBSCRIBES[:1]), out, metrics)
        async with running(driver) as task:
            lines = await take(out, 1 + len(garbage))
            assert not task.done()
    assert [line.data for line in lines[1:]] == [
        "not json {{{", "\x00\x01binary", "\ufffd\ufffd\ufffd", "", '{"ok":true}'
    ]
    assert driver.connects == 1
    assert not driver.reconnects


async def test_oversized_frame_reconnects_with_protocol_reason() -> None:
    async def script(server: VenueServer, ws: ServerConnection, conn: int) -> None:
        await server.subscribe_phase(ws, conn, count=1)
        if conn == 1:
            await ws.send("x" * 5000)
        await server.serve_messages(ws, conn)

    metrics = Metrics()
    out: asyncio.Queue[RecordLine] = asyncio.Queue(maxsize=100)
    async with VenueServer(script) as server:
        driver = make_driver(TinyAdapter(server.url, subscribe=SUBSCRIBES[:1]), out, metrics, max_size=1024)
        async with running(driver):
            await server.wait_for(lambda: len(server.events("subscribe")) == 2)
            assert reconnects(metrics, "protocol") == 1
    assert server.first("close", 1).detail == "1009"  # message too big


async def test_connect_errors_back_off_with_the_injected_delays() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    metrics = Metrics()
    out: asyncio.Queue[RecordLine] = asyncio.Queue(maxsize=10)
    sleep = SleepRecorder(stop_after=8)
    adapter = TinyAdapter(f"ws://127.0.0.1:{port}/market")
    driver = make_driver(adapter, out, metrics, sleep=sleep,
                         backoff=Backoff(0.1, 0.8, 2.0, rng=random.Random(42)))
    async with running(driver):
        async with asyncio.timeout(5):
            await sleep.enough.wait()

    expected = Backoff(0.1, 0.8, 2.0, rng=random.Random(42))
    assert sleep.delays[:8] == [expected.delay(i) for i in range(8)]
    ceilings = [0.1, 0.2, 0.4, 0.8, 0.8, 0.8, 0.8, 0.8]
    for delay, ceiling in zip(sleep.delays, ceilings, strict=False):
        assert ceiling / 2 <= delay <= ceiling  # equal jitter under a growing, capped ceiling
    assert max(sleep.delays) <= 0.8
    assert driver.connects == 0
    assert (reconnects(metrics, "error") or 0) >= 8


async def test_planned_rotation_is_make_before_break() -> None:
    async def script(server: VenueServer, ws: ServerConnection, conn: int) -> None:
        await server.subscribe_phase(ws, conn, count=1)
        n = 0
        while True:  # a steady feed until the client closes (send then raises ConnectionClosed)
            n += 1
            await ws.send(json.dumps({"conn": conn, "n": n}))
            await asyncio.sleep(0.02)

    metrics = Metrics()
    out: asyncio.Queue[RecordLine] = asyncio.Queue(maxsize=10_000)
    async with VenueServer(script) as server:
        adapter = TinyAdapter(server.url, subscribe=SUBSCRIBES[:1])
        adapter.max_connection_age_s = 0.3
        driver = make_driver(adapter, out, metrics)
        async with running(driver):
            await server.wait_for(lambda: bool(server.events("close", 1)))
            await eventually(lambda: driver.reconnects["rotation"] >= 1)
            assert reconnects(metrics, "rotation") == driver.reconnects["rotation"]

    opened_2 = server.first("open", 2).t
    subscribed_2 = server.first("subscribe", 2).t
    first_frame_2 = server.first("sent", 2).t
    closed_1 = server.first("close", 1).t
    assert server.first("open", 1).t < opened_2 < subscribed_2 < first_frame_2 < closed_1
    assert server.first("close", 1).detail == "1000"  # closed by us, cleanly
    assert set(driver.reconnects) == {"rotation"}
    assert adapter.resets and set(adapter.resets) == {"main"}
    lived = closed_1 - server.first("open", 1).t
    assert lived >= 0.29


async def test_app_level_ping_is_sent_at_the_interval() -> None:
    async def script(server: VenueServer, ws: ServerConnection, conn: int) -> None:
        await server.serve_messages(ws, conn)

    metrics = Metrics()
    out: asyncio.Queue[RecordLine] = asyncio.Queue(maxsize=100)
    async with VenueServer(script) as server:
        adapter = TinyAdapter(server.url, subscribe=SUBSCRIBES[:1])
        adapter.app_ping_message = '{"op":"ping"}'
        adapter.app_ping_interval_s = 0.05
        driver = make_driver(adapter, out, metrics)
        async with running(driver):
            await server.wait_for(lambda: len(server.events("ping")) >= 4)
            assert driver.app_pings >= 4

    times = [server.first("subscribe", 1).t] + [s.t for s in server.events("ping", 1)]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap >= 0.04 for gap in gaps), gaps
    assert all(s.detail == '{"op":"ping"}' for s in server.events("ping"))
    assert driver.connects == 1


async def test_full_queue_stops_reading_and_loses_nothing() -> None:
    total = 200

    async def script(server: VenueServer, ws: ServerConnection, conn: int) -> None:
        await server.subscribe_phase(ws, conn, count=1)
        for n in range(total):
            await ws.send(f"frame-{n:04d}")
        await server.record(conn, "all-sent")
        await server.serve_messages(ws, conn)

    metrics = Metrics()
    out: asyncio.Queue[RecordLine] = asyncio.Queue(maxsize=5)
    async with VenueServer(script) as server:
        adapter = TinyAdapter(server.url, subscribe=SUBSCRIBES[:1])
        adapter.stale_after_s = 0.1  # blocked on our own queue is not silence
        driver = make_driver(adapter, out, metrics)
        async with running(driver):
            await server.wait_for(lambda: bool(server.events("all-sent")))
            await eventually(out.full)
            # Hold the consumer back for several stale periods: the driver must wait, not read or reconnect.
            await asyncio.sleep(0.4)
            assert out.qsize() == 5
            assert driver.frames == 5
            assert metrics.registry.get_sample_value("flushwatch_queue_depth", {"queue": "ingest_raw"}) == 5
            lines = await take(out, 1 + total)
            assert driver.connects == 1
            assert not driver.reconnects
    assert lines[0].data == '{"result": null, "id": 1}'
    assert [line.data for line in lines[1:]] == [f"frame-{n:04d}" for n in range(total)]


class NoticeAdapter(TinyAdapter):
    """Answers the venue's heartbeat requests and rotates on its disconnect notice (as OKX and Deribit
    require), through the adapter's ``control`` hook."""

    def control(self, frame: str) -> ControlAction | None:
        if "test_request" in frame:
            return ControlAction(replies=('{"op":"test_reply"}',))
        if "going_away" in frame:
            return ControlAction(rotate=True)
        return None


async def test_venue_notice_rotates_now_and_heartbeat_requests_are_answered() -> None:
    async def script(server: VenueServer, ws: ServerConnection, conn: int) -> None:
        await server.subscribe_phase(ws, conn, count=1)
        await ws.send('{"type":"test_request"}')
        reply = json.loads(await ws.recv())
        await server.record(conn, "reply", reply["op"])
        if conn == 1:
            await ws.send('{"event":"notice","msg":"going_away in 60 s"}')
        n = 0
        while True:
            n += 1
            await ws.send(json.dumps({"conn": conn, "n": n}))
            await asyncio.sleep(0.02)

    metrics = Metrics()
    out: asyncio.Queue[RecordLine] = asyncio.Queue(maxsize=10_000)
    async with VenueServer(script) as server:
        adapter = NoticeAdapter(server.url, subscribe=SUBSCRIBES[:1])
        driver = make_driver(adapter, out, metrics)
        async with running(driver):
            await server.wait_for(lambda: bool(server.events("close", 1)))
            await eventually(lambda: driver.reconnects["notice"] >= 1)
    assert reconnects(metrics, "notice") == 1
    assert [s.detail for s in server.events("reply")][:2] == ["test_reply", "test_reply"]
    # make-before-break: the replacement was subscribed and sending before the old one closed
    assert server.first("open", 2).t < server.first("subscribe", 2).t < server.first("close", 1).t
    assert server.first("close", 1).detail == "1000"
    assert set(driver.reconnects) == {"notice"}
