"""ReplayServer with real websocket and HTTP clients on loopback, fed by a recording written in the test."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from flushwatch.recording import BadLine, RecordLine
from ingest.base import ParseResult, RestPoll, VenueAdapter, WsConnectionPlan
from ingest.http import http_get
from ingest.replay import ReplayServer, load_replay_lines, rest_key

VENUE = "binance"
WS_URL = "wss://fstream.binance.com/market/stream"
OI_URL = "https://fapi.binance.com/fapi/v1/openInterest?symbol=BTCUSDT&x=1"


class ReplayAdapter(VenueAdapter):
    """Speaks the replay side of a Binance-style protocol: acks SUBSCRIBE."""

    venue = VENUE

    def ws_connections(self) -> list[WsConnectionPlan]:
        return []

    def parse(self, raw: bytes | str, recv_ts_ms: int) -> ParseResult:
        return ParseResult()

    def replay_replies(self, client_message: str) -> list[str]:
        message = json.loads(client_message)
        if message.get("method") == "SUBSCRIBE":
            return [json.dumps({"result": None, "id": message["id"]})]
        return []


def ws_line(ts: int, data: str) -> RecordLine:
    return RecordLine(ts, VENUE, "ws", WS_URL, data)


# Frames with the quirks a byte-for-byte replay must keep: odd spacing, key order, non-ASCII, escapes.
FRAMES = [
    '{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","p":"67000.10","q":"0.005"}}',
    '{"data": {"z": 1, "a": 2},   "stream" : "x"}',
    '{"note":"Bitcoin ₿ — Prüfung ✓","esc":"\\u00e9\\n"}',
    "not json at all",
    '{"stream":"!forceOrder@arr","data":{"o":{"S":"SELL","q":"1.000"}}}',
]


def recording(span_ms: int = 1000) -> list[RecordLine]:
    """Frames spread evenly over ``span_ms`` from t=1000, plus REST lines around them."""
    step = span_ms // (len(FRAMES) - 1)
    lines = [ws_line(1000 + i * step, frame) for i, frame in enumerate(FRAMES)]
    lines += [
        RecordLine(500, VENUE, "rest", "/fapi/v1/exchangeInfo", '{"symbols":[]}'),
        RecordLine(600, VENUE, "rest", OI_URL, '{"openInterest":"1.0"}'),
        RecordLine(1000 + span_ms // 2, VENUE, "rest", OI_URL, '{"openInterest":"2.0"}'),
    ]
    return sorted(lines, key=lambda line: line.recv_ts)


def write_recording(path: Path, lines: list[RecordLine], bad: bytes | None = None) -> Path:
    with path.open("wb") as handle:
        for i, line in enumerate(lines):
            handle.write(line.to_json() + b"\n")
            if bad is not None and i == 1:
                handle.write(bad + b"\n")
    return path


async def receive(ws: ClientConnection, n: int, timeout: float = 5.0) -> list[str]:
    async with asyncio.timeout(timeout):
        out = []
        for _ in range(n):
            message = await ws.recv()
            out.append(message if isinstance(message, str) else message.decode())
        return out


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    yield
    current = asyncio.current_task()
    for _ in range(3):
        await asyncio.sleep(0)
    leaked = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert not leaked, f"tasks leaked: {leaked}"


async def test_frames_in_order_byte_identical_and_subscribe_answered(tmp_path: Path) -> None:
    path = write_recording(tmp_path / "rec.jsonl", recording(), bad=b'{"recv_ts": "nope"}')
    bad: list[BadLine] = []
    by_venue = load_replay_lines([path], bad_lines=bad)
    assert list(by_venue) == [VENUE] and len(bad) == 1

    async with ReplayServer(by_venue[VENUE], ReplayAdapter([]), speed=0) as server:
        assert not server.done.is_set() and not server.started
        async with connect(server.ws_url + "/market/stream?streams=btcusdt@aggTrade") as ws:
            await ws.send('{"method":"SUBSCRIBE","params":["btcusdt@aggTrade"],"id":7}')
            got = await receive(ws, len(FRAMES) + 1)
            async with asyncio.timeout(5):
                await server.done.wait()
    reply = '{"result": null, "id": 7}'
    assert reply in got
    assert [m for m in got if m != reply] == FRAMES
    assert server.frames_sent == len(FRAMES)
    assert server.clients == 1
    assert server.clients_dropped == 0


async def test_speed_is_honoured() -> None:
    async def play(speed: float) -> float:
        server = ReplayServer(recording(span_ms=1000), ReplayAdapter([]), speed=speed)
        async with server, connect(server.ws_url) as ws:
            started = time.monotonic()
            got = await receive(ws, len(FRAMES))
            elapsed = time.monotonic() - started
        assert got == FRAMES
        return elapsed

    assert await play(0) < 0.5
    assert await play(100) >= 0.009  # a 1 s recording at 100x takes >= 10 ms
    assert 0.09 <= await play(10) < 2.0  # ... and at 10x about 100 ms


async def test_rest_requests_are_answered_from_the_recording() -> None:
    async with ReplayServer(recording(), ReplayAdapter([]), speed=0) as server:
        info = await http_get(server.http_url + "/fapi/v1/exchangeInfo")
        # query parameters in another order match; before the timeline starts, the first OI is served
        before = await http_get(server.http_url + "/fapi/v1/openInterest?x=1&symbol=BTCUSDT")
        async with connect(server.ws_url) as ws:
            await receive(ws, len(FRAMES))
            after = await http_get(server.http_url + "/fapi/v1/openInterest?symbol=BTCUSDT&x=1")
        missing = await http_get(server.http_url + "/fapi/v1/unknown?symbol=BTCUSDT", raise_for_status=False)
    assert (info.status, info.text(), info.headers["content-type"]) == (200, '{"symbols":[]}', "application/json")
    assert before.text() == '{"openInterest":"1.0"}'
    assert after.text() == '{"openInterest":"2.0"}'  # the replay has moved past the second poll
    assert missing.status == 404
    assert json.loads(missing.body)["msg"].startswith("no recorded response for /fapi/v1/unknown")
    assert server.http_requests == 4


async def test_reconnecting_client_resumes_from_the_current_position() -> None:
    frames = [f'{{"n":{n}}}' for n in range(12)]
    lines = [ws_line(1000 + 30 * n, frame) for n, frame in enumerate(frames)]
    async with ReplayServer(lines, ReplayAdapter([]), speed=1.0) as server:
        async with connect(server.ws_url) as first:
            head = await receive(first, 3)
        async with connect(server.ws_url) as second:
            index = frames.index((await receive(second, 1))[0])
            rest = await receive(second, len(frames) - 1 - index)
            async with asyncio.timeout(5):
                await server.done.wait()
    assert head == frames[:3]
    assert index >= 3, "a reconnecting client does not get the past again"
    assert [frames[index], *rest] == frames[index:]
    assert server.clients == 2


async def test_slow_client_is_dropped_and_does_not_block_the_others() -> None:
    big = "x" * 65_536
    # 200 large frames (13 MB, sent uncompressed) 300 ms into the timeline: both clients are connected by then.
    lines = [ws_line(1000, '{"n":-1}')]
    lines += [ws_line(1300 + n, f'{{"n":{n},"pad":"{big}"}}') for n in range(200)]
    server = ReplayServer(lines, ReplayAdapter([]), speed=1.0, send_timeout_s=0.2)
    await server.start()
    # The slow client connects first, then never reads; a small, fixed receive buffer (no autotuning up
    # to tens of MB) makes its socket fill up after a few frames, as a stuck consumer's would.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
    async with (
        server,
        connect(server.ws_url, sock=sock, max_size=None, max_queue=1, compression=None) as slow,
        connect(server.ws_url, max_size=None, max_queue=None) as fast,
    ):
        got: list[int] = []
        async with asyncio.timeout(10):
            while not got or got[-1] != 199:
                got.append(json.loads(await fast.recv())["n"])
            await server.done.wait()
            while server.clients_dropped < 1:
                await asyncio.sleep(0.01)
        with pytest.raises(ConnectionClosed):
            while True:
                await slow.recv()
    assert [n for n in got if n >= 0] == list(range(200))
    assert server.clients_dropped == 1


async def test_no_frames_means_done_at_once_and_mixed_venues_are_refused() -> None:
    rest_only = [RecordLine(1, VENUE, "rest", "/x", "{}")]
    server = ReplayServer(rest_only, ReplayAdapter([]))
    assert server.done.is_set()
    async with server:
        assert (await http_get(server.http_url + "/x")).text() == "{}"
    with pytest.raises(ValueError, match="one venue"):
        ReplayServer([*rest_only, RecordLine(2, "bybit", "ws", "u", "{}")], ReplayAdapter([]))


def test_load_replay_lines_groups_by_venue_in_receive_order(tmp_path: Path) -> None:
    a = write_recording(tmp_path / "a.jsonl", [ws_line(3, "a3"), RecordLine(5, "bybit", "ws", "u", "b5")])
    b = write_recording(tmp_path / "b.jsonl", [ws_line(1, "b1"), ws_line(4, "b4")], bad=b"{oops")
    bad: list[BadLine] = []
    grouped = load_replay_lines([a, b], bad_lines=bad)
    assert {venue: [line.data for line in lines] for venue, lines in grouped.items()} == {
        VENUE: ["b1", "a3", "b4"], "bybit": ["b5"],
    }
    assert [(Path(line.source).name, line.lineno) for line in bad] == [("b.jsonl", 3)]
    assert rest_key("https://h/p?b=2&a=1") == rest_key("/p?a=1&b=2") == ("/p", (("a", "1"), ("b", "2")))


async def test_server_sends_websocket_pings() -> None:
    frames = [ws_line(1000, "a"), ws_line(61_000, "b")]  # a quiet minute: only pings keep it alive
    server = ReplayServer(frames, ReplayAdapter([]), speed=1.0, ping_interval_s=0.05, ping_timeout_s=5.0)
    async with server, connect(server.ws_url, ping_interval=None) as ws:
        assert await receive(ws, 1) == ["a"]
        (client,) = server._connected
        async with asyncio.timeout(5):
            while client.ws.latency == 0:  # set when the pong to a server keepalive ping comes back
                await asyncio.sleep(0.01)


async def test_done_when_the_timeline_ended_while_nobody_was_connected() -> None:
    lines = [ws_line(1000, "first"), ws_line(1100, "last")]
    async with ReplayServer(lines, ReplayAdapter([]), speed=1.0) as server:
        async with connect(server.ws_url) as ws:
            assert await receive(ws, 1) == ["first"]
        async with asyncio.timeout(5):  # the replay clock runs on without clients
            while server.position_ms() <= 1100:
                await asyncio.sleep(0.01)
        assert not server.done.is_set()
        async with connect(server.ws_url):
            async with asyncio.timeout(5):
                await server.done.wait()
    assert server.frames_sent == 1


class PollingAdapter(ReplayAdapter):
    """Asks for one recorded start-up response, one that is not recorded, and polls both kinds."""

    def startup_requests(self) -> list[str]:
        return ["/fapi/v1/exchangeInfo", "/fapi/v1/fundingInfo"]

    def rest_polls(self) -> list[RestPoll]:
        return [RestPoll("/fapi/v1/openInterest?x=1&symbol=BTCUSDT", 0.01),
                RestPoll("/fapi/v1/openInterest?symbol=NOPEUSDT", 0.01)]


async def test_poller_treats_responses_missing_from_a_recording_as_expected(caplog) -> None:
    from flushwatch.metrics import Metrics  # noqa: PLC0415
    from ingest.poller import RestPoller  # noqa: PLC0415

    adapter = PollingAdapter([])
    async with ReplayServer(recording(), adapter, speed=0) as server:
        adapter.rest_url = server.http_url
        out: asyncio.Queue[RecordLine] = asyncio.Queue(maxsize=100)
        metrics = Metrics()
        poller = RestPoller(adapter, out, metrics, weight_budget_per_min=60_000)
        assert await poller.fetch_startup() == 1
        async with asyncio.TaskGroup() as group:
            task = group.create_task(poller.run(startup=False))
            lines = [await asyncio.wait_for(out.get(), 5) for _ in range(4)]
            task.cancel()
    assert [line.endpoint for line in lines] == (["/fapi/v1/exchangeInfo"]
                                                 + ["/fapi/v1/openInterest?x=1&symbol=BTCUSDT"] * 3)
    assert lines[1].data in ('{"openInterest":"1.0"}', '{"openInterest":"2.0"}')
    # the unrecorded paths were asked for once each, then never again, and nothing was logged as an error
    assert metrics.registry.get_sample_value("flushwatch_rest_requests_total",
                                             {"venue": VENUE, "outcome": "not_recorded"}) == 2
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "WARNING")]
