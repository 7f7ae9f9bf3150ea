"""Bybit and OKX adapters driven by the real ConnectionDriver against real local websocket servers.

Two kinds of server: the real :class:`ingest.replay.ReplayServer` (recorded frames, REST on the same port,
protocol replies from the adapter's replay side), and a tiny scripted server per test for reconnects, the
OKX disconnect notice and keepalive. Frames the driver queues are parsed the way the ingest pipeline does
(``parse`` for websocket lines, ``parse_rest`` for REST lines). Tests wait on conditions, never on fixed
sleeps.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from flushwatch.events import Funding, Liquidation, MarketEvent, OpenInterest, Trade
from flushwatch.metrics import Metrics
from flushwatch.recording import RecordLine
from ingest.base import ParseResult, VenueAdapter
from ingest.bybit import BybitLinearAdapter
from ingest.driver import ConnectionDriver
from ingest.okx import INSTRUMENTS_REQUEST, OkxSwapAdapter
from ingest.poller import RestPoller
from ingest.replay import ReplayServer
from tests.component.drivers import fast_driver, running

FIXTURES = Path(__file__).parent.parent / "fixtures"
D = Decimal


def fixture_lines(venue: str, name: str) -> list[str]:
    return (FIXTURES / venue / name).read_text(encoding="utf-8").splitlines()


def okx_instruments() -> str:
    entries = [orjson.loads(line) for line in fixture_lines("okx", "okx_instruments_rest.jsonl")]
    return orjson.dumps({"code": "0", "msg": "", "data": entries}).decode()


# ---------------------------------------------------------------- parsing what the driver queues


@dataclass
class Parsed:
    """Everything parsed so far from the driver's queue."""

    results: list[ParseResult] = field(default_factory=list)
    lines: list[RecordLine] = field(default_factory=list)

    @property
    def events(self) -> list[MarketEvent]:
        return [e for r in self.results for e in r.events]

    def of(self, kind: type[MarketEvent]) -> list[MarketEvent]:
        return [e for e in self.events if isinstance(e, kind)]

    @property
    def duplicates(self) -> int:
        return sum(r.duplicates for r in self.results)

    @property
    def controls(self) -> list[str]:
        return [line.data for line, r in zip(self.lines, self.results, strict=True) if r.control]

    @property
    def rejects(self) -> list[str]:
        return [rej.kind for r in self.results for rej in r.rejects]


def parse_line(adapter: VenueAdapter, line: RecordLine) -> ParseResult:
    """What :class:`ingest.pipeline.FramePipeline` does with a queued line, minus Kafka."""
    if line.kind == "ws":
        return adapter.parse(line.data, line.recv_ts)
    return adapter.parse_rest(line.endpoint, line.data, line.recv_ts)


async def collect(out: asyncio.Queue[RecordLine], adapter: VenueAdapter, parsed: Parsed,
                  until: Callable[[Parsed], bool], timeout: float = 5.0) -> Parsed:
    async with asyncio.timeout(timeout):
        while not until(parsed):
            line = await out.get()
            parsed.lines.append(line)
            parsed.results.append(parse_line(adapter, line))
    return parsed


# ---------------------------------------------------------------- a scripted venue server


@dataclass(frozen=True)
class Seen:
    t: float
    conn: int
    what: str  # open, subscribe, ping, sent, close
    detail: str = ""


Script = Callable[["VenueServer", ServerConnection, int], Awaitable[None]]


class VenueServer:
    """A real websockets server that answers like the venue (through the adapter's replay side, the
    same replies ``flushwatch replay`` gives) and runs a per-connection script."""

    def __init__(self, protocol: VenueAdapter, script: Script) -> None:
        self.protocol = protocol
        self.script = script
        self.timeline: list[Seen] = []
        self.changed = asyncio.Condition()
        self._next = 0
        self._server: Server | None = None
        self.url = ""

    async def __aenter__(self) -> VenueServer:
        self._server = await serve(self._handler, "127.0.0.1", 0)
        self.url = f"ws://127.0.0.1:{self._server.sockets[0].getsockname()[1]}{self.path}"
        return self

    @property
    def path(self) -> str:
        return "/" + self.protocol.default_ws_url.split("/", 3)[3]

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

    async def answer(self, ws: ServerConnection, conn: int, message: str | bytes) -> None:
        text = message if isinstance(message, str) else message.decode()
        await self.record(conn, "ping" if "ping" in text else "subscribe", text)
        for reply in self.protocol.replay_replies(text):
            await ws.send(reply)

    async def handshake(self, ws: ServerConnection, conn: int, messages: int = 1) -> None:
        for _ in range(messages):
            await self.answer(ws, conn, await ws.recv())

    async def send(self, ws: ServerConnection, conn: int, frame: bytes | str) -> None:
        await ws.send(frame if isinstance(frame, str) else frame.decode())
        await self.record(conn, "sent")

    async def serve_messages(self, ws: ServerConnection, conn: int) -> None:
        async for message in ws:
            await self.answer(ws, conn, message)


def make_driver(adapter: VenueAdapter, out: asyncio.Queue[RecordLine], metrics: Metrics) -> ConnectionDriver:
    return fast_driver(adapter, out, metrics, seed=7, rotation_timeout_s=2.0)


def reconnects(metrics: Metrics, venue: str, reason: str) -> float | None:
    return metrics.registry.get_sample_value("flushwatch_reconnects_total", {"venue": venue, "reason": reason})


@pytest.fixture(autouse=True)
async def settle_handlers() -> AsyncIterator[None]:
    """Let closing websocket handlers finish their last step before the leak check in conftest."""
    yield
    for _ in range(3):
        await asyncio.sleep(0)


# ---------------------------------------------------------------- Bybit


def bybit_trades(*ids: str) -> bytes:
    return orjson.dumps({"topic": "publicTrade.BTCUSDT", "type": "snapshot", "ts": 1672304486868, "data": [
        {"T": 1672304486865, "s": "BTCUSDT", "S": "Sell", "v": "0.5", "p": "100000", "L": "MinusTick", "i": i,
         "BT": False, "seq": n} for n, i in enumerate(ids)]})


def bybit_ticker(kind: str, cs: int, **data: str) -> bytes:
    return orjson.dumps({"topic": "tickers.BTCUSDT", "type": kind, "data": {"symbol": "BTCUSDT", **data},
                         "cs": cs, "ts": 1760325052630 + cs})


BYBIT_SNAPSHOT = {"markPrice": "100000", "indexPrice": "100010", "openInterest": "50000",
                  "openInterestValue": "5000000000", "fundingIntervalHour": "8", "fundingRate": "0.0001",
                  "nextFundingTime": "1760342400000"}


async def test_bybit_replay_server_handshake_and_frames() -> None:
    frames = [*fixture_lines("bybit", "bybit_liquidations.jsonl"), *fixture_lines("bybit", "bybit_trades.jsonl"),
              fixture_lines("bybit", "bybit_tickers.jsonl")[0]]
    recording = [RecordLine(1000 + n, "bybit", "ws", BybitLinearAdapter.default_ws_url, frame)
                 for n, frame in enumerate(frames)]
    metrics = Metrics()
    out: asyncio.Queue[RecordLine] = asyncio.Queue(maxsize=100)
    async with ReplayServer(recording, BybitLinearAdapter(symbols=[]), speed=0) as server:
        adapter = BybitLinearAdapter(["BTCUSDT", "ROSEUSDT"], ws_url=server.ws_url + "/v5/public/linear")
        async with running(make_driver(adapter, out, metrics)):
            parsed = await collect(out, adapter, Parsed(), lambda p: len(p.results) == len(frames) + 1)
    assert parsed.rejects == []
    assert [orjson.loads(c) for c in parsed.controls] == [
        {"success": True, "ret_msg": "", "conn_id": "replay", "req_id": "bybit-0-1", "op": "subscribe"}
    ]
    (liquidation,) = parsed.of(Liquidation)
    assert isinstance(liquidation, Liquidation)
    assert (liquidation.symbol, liquidation.side, liquidation.notional_usd, liquidation.sampled) == (
        "ROSEUSDT", "short", D("899.8"), False)
    (trade,) = parsed.of(Trade)
    assert isinstance(trade, Trade) and (trade.side, trade.notional_usd) == ("buy", D("16.5785"))
    (oi,) = parsed.of(OpenInterest)
    assert isinstance(oi, OpenInterest) and (oi.oi_qty, oi.oi_usd) == (D("492373.72"), D("32824881841.75"))
    (funding,) = parsed.of(Funding)
    assert isinstance(funding, Funding) and (funding.rate, funding.interval_h) == (D("-0.005"), 8)
    assert [line.endpoint for line in parsed.lines] == [adapter.ws_url] * len(parsed.lines)


async def test_bybit_reconnect_resubscribes_dedupes_and_pings() -> None:
    async def script(server: VenueServer, ws: ServerConnection, conn: int) -> None:
        await server.handshake(ws, conn)
        if conn == 1:
            await server.send(ws, conn, bybit_trades("a", "b"))
            await server.send(ws, conn, bybit_ticker("snapshot", 1, **BYBIT_SNAPSHOT))
            await ws.close()
            return
        # the new connection: the venue's trade buffer overlaps, and the re-subscribe re-sends the snapshot
        await server.send(ws, conn, bybit_trades("a", "b", "c"))
        await server.send(ws, conn, bybit_ticker("snapshot", 5, **BYBIT_SNAPSHOT))
        await server.send(ws, conn, bybit_ticker("delta", 6, openInterest="49000"))
        await server.serve_messages(ws, conn)  # and pong the keepalive pings

    metrics = Metrics()
    out: asyncio.Queue[RecordLine] = asyncio.Queue(maxsize=1000)
    adapter = BybitLinearAdapter(["BTCUSDT"])
    adapter.app_ping_interval_s = 0.05
    async with VenueServer(BybitLinearAdapter([]), script) as server:
        adapter.ws_url = server.url
        driver = make_driver(adapter, out, metrics)
        (plan,) = adapter.ws_connections()
        pongs = '"ret_msg":"pong"'
        async with running(driver):
            parsed = await collect(out, adapter, Parsed(), lambda p: sum(pongs in c for c in p.controls) >= 2
                                   and len(p.of(OpenInterest)) == 2)
            assert reconnects(metrics, "bybit", "closed") == 1

    # subscribed twice, identically, and acked both times
    assert [s.detail for s in server.events("subscribe", 1)] == list(plan.subscribe)
    assert [s.detail for s in server.events("subscribe", 2)] == list(plan.subscribe)
    assert sum('"op":"subscribe"' in c for c in parsed.controls) == 2
    # trades a and b came twice and were emitted once
    assert [e.trade_id for e in parsed.of(Trade) if isinstance(e, Trade)] == ["a", "b", "c"]
    assert parsed.duplicates == 2
    # the re-sent snapshot repeated known values: only the first snapshot and the delta produced OI
    assert [e.oi_qty for e in parsed.of(OpenInterest) if isinstance(e, OpenInterest)] == [D("50000"), D("49000")]
    assert len(parsed.of(Funding)) == 1
    # app-level keepalive: the driver pinged, the venue ponged, the pongs were control frames
    assert driver.app_pings >= 2
    assert {s.detail for s in server.events("ping", 2)} == {'{"op":"ping"}'}
    assert parsed.rejects == []


# ---------------------------------------------------------------- OKX


def okx_trades(*ids: str) -> bytes:
    return orjson.dumps({"arg": {"channel": "trades", "instId": "BTC-USDT-SWAP"}, "data": [
        {"instId": "BTC-USDT-SWAP", "tradeId": i, "px": "42000.5", "sz": "12", "side": "sell",
         "ts": str(1630048897897 + n), "count": "1"} for n, i in enumerate(ids)]})


OKX_LIQUIDATION = ('{"arg":{"channel":"liquidation-orders","instType":"SWAP"},"data":[{"details":[{"bkLoss":"0",'
                   '"bkPx":"40000","ccy":"","posSide":"long","side":"sell","sz":"250","ts":"1692266434010"}],'
                   '"instFamily":"BTC-USD","instId":"BTC-USD-SWAP","instType":"SWAP","uly":"BTC-USD"}]}')
NOTICE = ('{"event":"notice","code":"64008","msg":"The connection will soon be closed for a service upgrade. '
          'Please reconnect.","connId":"a4d3ae55"}')


def okx_adapter(url: str) -> OkxSwapAdapter:
    adapter = OkxSwapAdapter(["BTC-USDT-SWAP"], ws_url=url)
    assert not adapter.parse_rest(INSTRUMENTS_REQUEST, okx_instruments(), 0).rejects
    return adapter


async def test_okx_replay_server_metadata_handshake_and_frames() -> None:
    frames = [*fixture_lines("okx", "okx_open_interest.jsonl"), *fixture_lines("okx", "okx_funding_rate.jsonl"),
              okx_trades("7").decode(), OKX_LIQUIDATION]
    url = OkxSwapAdapter.default_ws_url
    recording = [RecordLine(500, "okx", "rest", INSTRUMENTS_REQUEST, okx_instruments()),
                 *(RecordLine(1000 + n, "okx", "ws", url, frame) for n, frame in enumerate(frames))]
    metrics = Metrics()
    out: asyncio.Queue[RecordLine] = asyncio.Queue(maxsize=100)
    async with ReplayServer(recording, OkxSwapAdapter(symbols=[]), speed=0) as server:
        adapter = OkxSwapAdapter(["BTC-USDT-SWAP"], ws_url=server.ws_url + "/ws/v5/public",
                                 rest_url=server.http_url)
        # start-up metadata over real HTTP, first on the queue, as in the ingest service
        poller = RestPoller(adapter, out, metrics, weight_budget_per_min=600)
        assert await poller.fetch_startup() == 1
        async with running(make_driver(adapter, out, metrics)):
            acks = 5  # one per subscribed arg
            parsed = await collect(out, adapter, Parsed(), lambda p: len(p.results) == 1 + acks + len(frames))
    assert parsed.lines[0].kind == "rest" and parsed.results[0].stream == "metadata"
    assert set(adapter.instruments) == {"BTC-USDT-SWAP", "BTC-USD-SWAP"}
    assert parsed.rejects == []
    assert sorted(orjson.loads(c)["arg"].get("instId", "*") for c in parsed.controls[1:]) == [
        "*", *["BTC-USDT-SWAP"] * 4]
    (oi,) = parsed.of(OpenInterest)
    assert isinstance(oi, OpenInterest) and oi.oi_usd == D("1939251795.54769270396321")
    (funding,) = parsed.of(Funding)
    assert isinstance(funding, Funding) and (funding.symbol, funding.interval_h) == ("BTC-USD-SWAP", 8)
    (trade,) = parsed.of(Trade)
    # 12 contracts x 0.01 BTC at 42000.5
    assert isinstance(trade, Trade) and (trade.qty, trade.notional_usd) == (D("0.12"), D("5040.06"))
    (liquidation,) = parsed.of(Liquidation)
    # inverse: 250 contracts x 100 USD = 25000 USD = 0.625 BTC at 40000; the position was long
    assert isinstance(liquidation, Liquidation)
    assert (liquidation.side, liquidation.notional_usd, liquidation.qty, liquidation.sampled) == (
        "long", D("25000"), D("0.625"), True)


async def test_okx_reconnect_resubscribes_dedupes_and_text_ping() -> None:
    async def script(server: VenueServer, ws: ServerConnection, conn: int) -> None:
        await server.handshake(ws, conn)
        if conn == 1:
            await server.send(ws, conn, okx_trades("1", "2"))
            await ws.close()
            return
        await server.send(ws, conn, okx_trades("1", "2", "3"))
        await server.serve_messages(ws, conn)

    metrics = Metrics()
    out: asyncio.Queue[RecordLine] = asyncio.Queue(maxsize=1000)
    async with VenueServer(OkxSwapAdapter([]), script) as server:
        adapter = okx_adapter(server.url)
        adapter.app_ping_interval_s = 0.05
        (plan,) = adapter.ws_connections()
        driver = make_driver(adapter, out, metrics)
        async with running(driver):
            parsed = await collect(out, adapter, Parsed(),
                                   lambda p: len(p.of(Trade)) == 3 and p.controls.count("pong") >= 2)
            assert reconnects(metrics, "okx", "closed") == 1
    assert [s.detail for s in server.events("subscribe", 1)] == list(plan.subscribe)
    assert [s.detail for s in server.events("subscribe", 2)] == list(plan.subscribe)
    assert [e.trade_id for e in parsed.of(Trade) if isinstance(e, Trade)] == ["1", "2", "3"]
    assert parsed.duplicates == 2
    assert {s.detail for s in server.events("ping")} == {"ping"}
    assert parsed.rejects == []


async def test_okx_notice_rotates_make_before_break_without_duplicates() -> None:
    async def script(server: VenueServer, ws: ServerConnection, conn: int) -> None:
        await server.handshake(ws, conn)
        if conn == 1:
            await server.send(ws, conn, okx_trades("1", "2"))
            await server.send(ws, conn, NOTICE)
            await server.serve_messages(ws, conn)  # still up: the client must close it
            return
        await server.send(ws, conn, okx_trades("1", "2", "3"))
        await server.serve_messages(ws, conn)

    metrics = Metrics()
    out: asyncio.Queue[RecordLine] = asyncio.Queue(maxsize=1000)
    async with VenueServer(OkxSwapAdapter([]), script) as server:
        adapter = okx_adapter(server.url)
        driver = make_driver(adapter, out, metrics)
        async with running(driver):
            parsed = await collect(out, adapter, Parsed(), lambda p: len(p.of(Trade)) == 3)
            await server.wait_for(lambda: bool(server.events("close", 1)))
            assert reconnects(metrics, "okx", "notice") == 1
            assert driver.reconnects == {"notice": 1}
            assert driver.open_connections == 1
    # make-before-break: the replacement was open and subscribed before the old one was closed, by us
    assert server.first("open", 2).t < server.first("subscribe", 2).t < server.first("close", 1).t
    assert server.first("close", 1).detail == "1000"
    assert len(server.events("open")) == 2
    assert NOTICE in parsed.controls
    assert [e.trade_id for e in parsed.of(Trade) if isinstance(e, Trade)] == ["1", "2", "3"]
    assert parsed.duplicates == 2
    assert parsed.rejects == []
