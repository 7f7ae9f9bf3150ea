"""BitMEX, Deribit and Hyperliquid adapters behind the real ConnectionDriver, against real local servers.

Two kinds of server: the real :class:`ingest.replay.ReplayServer` (what ``flushwatch replay`` runs), and a
tiny scripted websockets server that speaks each venue's protocol through a venue-side adapter's
``replay_replies`` and records every client message, so a test can drop a connection, re-send overlapping
frames, go silent or send a Deribit ``test_request`` exactly when it wants. Tests wait on what the server
saw (an ``asyncio.Condition``) or on the driver's queue, never on fixed sleeps.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from flushwatch.events import Funding, Liquidation, MarketEvent, OpenInterest, Trade
from flushwatch.metrics import Metrics
from flushwatch.recording import RecordLine
from ingest.base import ParseResult, VenueAdapter
from ingest.bitmex import BitmexAdapter
from ingest.deribit import DeribitAdapter
from ingest.driver import ConnectionDriver
from ingest.hyperliquid import HyperliquidAdapter
from ingest.poller import RestPoller
from ingest.replay import ReplayServer
from tests.component.drivers import fast_driver, running

FIXTURES = Path(__file__).parent.parent / "fixtures"
TEST_REQUEST = '{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}}'


def fixture_lines(venue: str, name: str) -> list[str]:
    return (FIXTURES / venue / name).read_text(encoding="utf-8").splitlines()


def dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


# ---------------------------------------------------------------- the scripted venue server

Script = Callable[["ScriptedVenue", ServerConnection, int], Awaitable[None]]


class ScriptedVenue:
    """A real websockets server: a per-connection script, the venue's replies from ``replay_replies``."""

    def __init__(self, venue_side: VenueAdapter, script: Script) -> None:
        self.venue_side = venue_side
        self.script = script
        self.received: dict[int, list[str]] = defaultdict(list)
        self.closed: list[int] = []
        self.connections = 0
        self.changed = asyncio.Condition()
        self._server: Server | None = None
        self.url = ""

    async def __aenter__(self) -> ScriptedVenue:
        self._server = await serve(self._handler, "127.0.0.1", 0)
        self.url = f"ws://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/ws"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(predicate)

    async def _handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        conn = self.connections
        await self._notify()
        try:
            await self.script(self, ws, conn)
        except ConnectionClosed:
            pass
        finally:
            self.closed.append(conn)
            await self._notify()

    async def receive(self, ws: ServerConnection, conn: int, *, reply: bool = True) -> str:
        """One client message, recorded, answered the way the venue would (unless ``reply`` is false)."""
        message = await ws.recv()
        text = message if isinstance(message, str) else message.decode()
        self.received[conn].append(text)
        if reply:
            for answer in self.venue_side.replay_replies(text):
                await ws.send(answer)
        await self._notify()
        return text

    async def handshake(self, ws: ServerConnection, conn: int, count: int) -> None:
        for _ in range(count):
            await self.receive(ws, conn)

    async def serve_forever(self, ws: ServerConnection, conn: int, *, reply: bool = True) -> None:
        while True:
            await self.receive(ws, conn, reply=reply)


# ---------------------------------------------------------------- driver plumbing


def make_driver(adapter: VenueAdapter, out: asyncio.Queue[RecordLine], metrics: Metrics) -> ConnectionDriver:
    return fast_driver(adapter, out, metrics, seed=1, rotation_timeout_s=1.0)


@dataclass
class Parsed:
    """Everything the parse stage made of the queued frames, in order."""

    lines: list[RecordLine]
    results: list[ParseResult]

    @property
    def events(self) -> list[MarketEvent]:
        return [e for r in self.results for e in r.events]

    def of(self, kind: type[MarketEvent]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    @property
    def duplicates(self) -> int:
        return sum(r.duplicates for r in self.results)

    @property
    def rejects(self) -> list[Any]:
        return [x for r in self.results for x in r.rejects]

    @property
    def controls(self) -> int:
        return sum(r.control for r in self.results)


async def parse_until(out: asyncio.Queue[RecordLine], adapter: VenueAdapter, parsed: Parsed,
                      done: Callable[[Parsed], bool], timeout: float = 5.0) -> Parsed:
    """Take frames off the driver's queue and parse them (what the ingest pipeline does) until ``done``."""
    async with asyncio.timeout(timeout):
        while not done(parsed):
            line = await out.get()
            assert line.kind == "ws" and line.venue == adapter.venue
            parsed.lines.append(line)
            parsed.results.append(adapter.parse(line.data, line.recv_ts))
    return parsed


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    yield
    current = asyncio.current_task()
    for _ in range(3):
        await asyncio.sleep(0)
    leaked = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert not leaked, f"tasks leaked: {leaked}"


# ---------------------------------------------------------------- venue frames

XBT_ROW = orjson.loads(fixture_lines("bitmex", "bitmex_instrument_rest.jsonl")[0])


def bitmex_table(name: str, action: str, data: list[Any]) -> str:
    return dumps({"table": name, "action": action, "data": data})


def bitmex_liq(order_id: str, side: str = "Sell", qty: int = 1000) -> dict[str, Any]:
    return {"orderID": order_id, "symbol": "XBTUSD", "side": side, "price": 30000.5, "leavesQty": qty}


def bitmex_trade(match_id: str) -> dict[str, Any]:
    return {"timestamp": "2021-07-22T22:36:11.685Z", "symbol": "XBTUSD", "side": "Sell", "size": 100,
            "price": 32180.5, "trdMatchID": match_id, "homeNotional": 0.00310747, "foreignNotional": 100}


def deribit_trades(*rows: dict[str, Any]) -> str:
    return dumps({"jsonrpc": "2.0", "method": "subscription",
                  "params": {"channel": "trades.BTC-PERPETUAL.100ms", "data": list(rows)}})


def deribit_trade(seq: int, **extra: Any) -> dict[str, Any]:
    return {"trade_seq": seq, "trade_id": str(1000 + seq), "timestamp": 1737996780000 + seq, "price": 100000,
            "instrument_name": "BTC-PERPETUAL", "direction": "sell", "amount": 5000, **extra}


def deribit_ticker(ts: int, oi: int) -> str:
    return dumps({"jsonrpc": "2.0", "method": "subscription", "params": {
        "channel": "ticker.BTC-PERPETUAL.100ms",
        "data": {"instrument_name": "BTC-PERPETUAL", "timestamp": ts, "open_interest": oi, "mark_price": 100000,
                 "index_price": 100005, "current_funding": 0.00001, "funding_8h": 0.00008}}})


def hl_trades(*tids: int) -> str:
    return dumps({"channel": "trades", "data": [
        {"coin": "BTC", "side": "A" if tid % 2 else "B", "px": "80600.0", "sz": "0.16", "time": 1791480516000 + tid,
         "hash": "0x0", "tid": tid, "users": ["0xa", "0xb"]} for tid in tids]})


HL_CTX = fixture_lines("hyperliquid", "hyperliquid_active_asset_ctx.jsonl")[0]


# ---------------------------------------------------------------- 1. the real ReplayServer: handshake and flow


async def test_bitmex_through_replay_server_with_startup_rest() -> None:
    venue_frames = [
        '{"info":"Welcome to the BitMEX Realtime API.","version":"2024","limit":{"remaining":719}}',
        bitmex_table("instrument", "partial", [XBT_ROW]),
        bitmex_table("liquidation", "partial", []),
        bitmex_table("liquidation", "insert", [bitmex_liq("L1", "Sell", 50900)]),
        bitmex_table("liquidation", "update", [{"orderID": "L1", "symbol": "XBTUSD", "leavesQty": 700}]),
        bitmex_table("liquidation", "delete", [{"orderID": "L1", "symbol": "XBTUSD"}]),
        fixture_lines("bitmex", "bitmex_trades.jsonl")[1],
    ]
    rest_body = dumps([XBT_ROW])
    lines = [RecordLine(1000, "bitmex", "rest", "/api/v1/instrument/active", rest_body)]
    lines += [RecordLine(2000 + i, "bitmex", "ws", "wss://ws.bitmex.com/realtime", frame)
              for i, frame in enumerate(venue_frames)]
    metrics = Metrics()
    out: asyncio.Queue[RecordLine] = asyncio.Queue(maxsize=100)
    async with ReplayServer(lines, BitmexAdapter([]), speed=0) as server:
        adapter = BitmexAdapter(["XBTUSD"], ws_url=server.ws_url + "/realtime", rest_url=server.http_url)
        # start-up metadata over HTTP first, as the ingest service does
        poller = RestPoller(adapter, out, metrics, weight_budget_per_min=60)
        assert await poller.fetch_startup() == 1
        rest_line = out.get_nowait()
        assert rest_line.kind == "rest"
        meta = adapter.parse_rest(rest_line.endpoint, rest_line.data, rest_line.recv_ts)
        assert meta.control and not meta.rejects and adapter.contract("XBTUSD") is not None
        driver = make_driver(adapter, out, metrics)
        async with running(driver):
            parsed = await parse_until(out, adapter, Parsed([], []),
                                       lambda p: len(p.lines) == len(venue_frames) + 3)
            await asyncio.wait_for(server.done.wait(), 5)
    acks = [orjson.loads(line.data) for line in parsed.lines if '"success"' in line.data]
    assert sorted(a["subscribe"] for a in acks) == ["instrument:XBTUSD", "liquidation:XBTUSD", "trade:XBTUSD"]
    assert not parsed.rejects
    assert parsed.controls == 4  # welcome + three acks
    (liquidation,) = parsed.of(Liquidation)
    assert (liquidation.side, liquidation.notional_usd, liquidation.sampled) == ("long", 50900, False)
    assert [t.notional_usd for t in parsed.of(Trade)] == [100, 900]
    assert len(parsed.of(OpenInterest)) == 1 and len(parsed.of(Funding)) == 1
    assert driver.connects == 1 and not driver.reconnects


async def test_deribit_through_replay_server() -> None:
    frames = [deribit_trades(deribit_trade(1), deribit_trade(2, liquidation="T")), deribit_ticker(1737996781000, 7)]
    lines = [RecordLine(1000 + i, "deribit", "ws", "wss://www.deribit.com/ws/api/v2", f) for i, f in enumerate(frames)]
    metrics = Metrics()
    out: asyncio.Queue[RecordLine] = asyncio.Queue(maxsize=100)
    async with ReplayServer(lines, DeribitAdapter([]), speed=0) as server:
        adapter = DeribitAdapter(["BTC-PERPETUAL"], ws_url=server.ws_url + "/ws/api/v2")
        driver = make_driver(adapter, out, metrics)
        async with running(driver):
            parsed = await parse_until(out, adapter, Parsed([], []), lambda p: len(p.lines) == len(frames) + 2)
    replies = {orjson.loads(line.data)["id"]: orjson.loads(line.data)["result"] for line in parsed.lines
               if '"result"' in line.data}
    assert replies == {1: "ok", 2: ["trades.BTC-PERPETUAL.100ms", "ticker.BTC-PERPETUAL.100ms"]}
    assert not parsed.rejects and parsed.controls == 2
    assert [t.trade_id for t in parsed.of(Trade)] == ["1001", "1002"]
    (liquidation,) = parsed.of(Liquidation)
    assert (liquidation.side, liquidation.notional_usd, liquidation.order_id) == ("long", 5000, "1002:T")
    assert [type(e) for e in parsed.events[-2:]] == [OpenInterest, Funding]


async def test_hyperliquid_through_replay_server() -> None:
    frames = [hl_trades(1, 2), HL_CTX]
    lines = [RecordLine(1000 + i, "hyperliquid", "ws", "wss://api.hyperliquid.xyz/ws", f) for i, f in enumerate(frames)]
    metrics = Metrics()
    out: asyncio.Queue[RecordLine] = asyncio.Queue(maxsize=100)
    async with ReplayServer(lines, HyperliquidAdapter([]), speed=0) as server:
        adapter = HyperliquidAdapter(["BTC"], ws_url=server.ws_url + "/ws")
        driver = make_driver(adapter, out, metrics)
        async with running(driver):
            parsed = await parse_until(out, adapter, Parsed([], []), lambda p: len(p.lines) == len(frames) + 2)
    acks = [orjson.loads(line.data) for line in parsed.lines if "subscriptionResponse" in line.data]
    assert sorted(a["data"]["subscription"]["type"] for a in acks) == ["activeAssetCtx", "trades"]
    assert not parsed.rejects and parsed.controls == 2
    assert [t.side for t in parsed.of(Trade)] == ["sell", "buy"]
    assert not parsed.of(Liquidation)
    assert len(parsed.of(OpenInterest)) == 1 and len(parsed.of(Funding)) == 1


# ---------------------------------------------------------------- 2. drop, reconnect, re-subscribe, no duplicates


@dataclass
class DropCase:
    """A venue, what each connection sends after the handshake, and what must come out."""

    adapter: Callable[[str], VenueAdapter]
    venue_side: VenueAdapter
    handshake: int
    first: list[str]
    second: list[str]
    check: Callable[[Parsed], None]


def check_bitmex(parsed: Parsed) -> None:
    assert [e.order_id for e in parsed.of(Liquidation)] == ["A", "B"]
    assert [e.trade_id for e in parsed.of(Trade)] == ["T1", "T2", "T3"]
    assert len(parsed.of(OpenInterest)) == 1  # the re-sent instrument partial is not news
    assert parsed.duplicates == 2  # the overlap's insert of A and trade T2


def check_deribit(parsed: Parsed) -> None:
    assert [e.trade_id for e in parsed.of(Trade)] == ["1001", "1002", "1003"]
    assert [(e.order_id, e.side) for e in parsed.of(Liquidation)] == [
        ("1002:T", "long"), ("1003:T", "long"), ("1003:M", "short")]
    assert [e.oi_usd for e in parsed.of(OpenInterest)] == [7, 8]
    assert parsed.duplicates == 2  # trade 1002 and the repeated ticker


def check_hyperliquid(parsed: Parsed) -> None:
    assert [e.trade_id for e in parsed.of(Trade)] == ["1", "2", "3"]
    assert not parsed.of(Liquidation)
    assert len(parsed.of(OpenInterest)) == 1
    assert parsed.duplicates == 2  # the replayed first frame


DROP_CASES = {
    "bitmex": DropCase(
        adapter=lambda url: BitmexAdapter(["XBTUSD"], ws_url=url),
        venue_side=BitmexAdapter([]),
        handshake=1,
        first=[bitmex_table("instrument", "partial", [XBT_ROW]), bitmex_table("liquidation", "partial", []),
               bitmex_table("liquidation", "insert", [bitmex_liq("A")]),
               bitmex_table("trade", "insert", [bitmex_trade("T1"), bitmex_trade("T2")])],
        second=[bitmex_table("instrument", "partial", [XBT_ROW]),
                bitmex_table("liquidation", "partial", [bitmex_liq("A")]),  # still open: known, not new
                bitmex_table("liquidation", "insert", [bitmex_liq("A")]),   # an overlap re-sending it
                bitmex_table("liquidation", "insert", [bitmex_liq("B", "Buy")]),
                bitmex_table("trade", "partial", [bitmex_trade("T2")]),
                bitmex_table("trade", "insert", [bitmex_trade("T2"), bitmex_trade("T3")])],
        check=check_bitmex,
    ),
    "deribit": DropCase(
        adapter=lambda url: DeribitAdapter(["BTC-PERPETUAL"], ws_url=url),
        venue_side=DeribitAdapter([]),
        handshake=2,
        first=[deribit_trades(deribit_trade(1), deribit_trade(2, liquidation="T")),
               deribit_ticker(1737996781000, 7)],
        second=[deribit_trades(deribit_trade(2, liquidation="T"), deribit_trade(3, liquidation="MT")),
                deribit_ticker(1737996781000, 7), deribit_ticker(1737996782000, 8)],
        check=check_deribit,
    ),
    "hyperliquid": DropCase(
        adapter=lambda url: HyperliquidAdapter(["BTC"], ws_url=url),
        venue_side=HyperliquidAdapter([]),
        handshake=2,
        first=[hl_trades(1, 2), HL_CTX],
        second=[hl_trades(1, 2, 3), HL_CTX],
        check=check_hyperliquid,
    ),
}


@pytest.mark.parametrize("venue", sorted(DROP_CASES))
async def test_drop_reconnect_resubscribe_without_duplicate_events(venue: str) -> None:
    case = DROP_CASES[venue]

    async def script(server: ScriptedVenue, ws: ServerConnection, conn: int) -> None:
        await server.handshake(ws, conn, case.handshake)
        for frame in case.first if conn == 1 else case.second:
            await ws.send(frame)
        if conn == 1:
            await ws.close()  # the venue drops us
            return
        await server.serve_forever(ws, conn)

    metrics = Metrics()
    out: asyncio.Queue[RecordLine] = asyncio.Queue(maxsize=100)
    async with ScriptedVenue(case.venue_side, script) as server:
        adapter = case.adapter(server.url)
        driver = make_driver(adapter, out, metrics)
        async with running(driver):
            await server.wait_for(lambda: len(server.received[2]) >= case.handshake)
            want = len(case.first) + len(case.second)
            data = Parsed([], [])
            await parse_until(out, adapter, data, lambda p: sum(not r.control for r in p.results) == want)
        # re-subscribed with exactly the same messages
        assert server.received[1] == server.received[2] == list(adapter.ws_connections()[0].subscribe)
        assert driver.reconnects == {"closed": 1} and driver.connects == 2
        assert metrics.registry.get_sample_value("flushwatch_reconnects_total",
                                                 {"venue": venue, "reason": "closed"}) == 1
    assert not data.rejects, data.rejects
    case.check(data)
    # every event is unique by its identity
    keys = [(type(e).__name__, getattr(e, "trade_id", None), getattr(e, "order_id", None), e.ts) for e in data.events
            if isinstance(e, Trade | Liquidation)]
    assert len(keys) == len(set(keys))


# ---------------------------------------------------------------- 3. Deribit heartbeat through the control hook


async def test_deribit_test_request_is_answered_through_the_driver() -> None:
    test_replies: list[dict[str, Any]] = []

    async def script(server: ScriptedVenue, ws: ServerConnection, conn: int) -> None:
        await server.handshake(ws, conn, 2)  # set_heartbeat, subscribe
        await ws.send(TEST_REQUEST)
        reply = await server.receive(ws, conn)  # the client must answer before anything else
        test_replies.append(orjson.loads(reply))
        await ws.send(deribit_trades(deribit_trade(1)))
        await server.serve_forever(ws, conn)

    metrics = Metrics()
    out: asyncio.Queue[RecordLine] = asyncio.Queue(maxsize=100)
    async with ScriptedVenue(DeribitAdapter([]), script) as server:
        adapter = DeribitAdapter(["BTC-PERPETUAL"], ws_url=server.url, heartbeat_s=10)
        driver = make_driver(adapter, out, metrics)
        async with running(driver):
            parsed = await parse_until(out, adapter, Parsed([], []), lambda p: len(p.of(Trade)) == 1)
    set_heartbeat = orjson.loads(server.received[1][0])
    assert (set_heartbeat["method"], set_heartbeat["params"]) == ("public/set_heartbeat", {"interval": 10})
    (reply,) = test_replies
    assert (reply["jsonrpc"], reply["method"], reply["params"]) == ("2.0", "public/test", {})
    assert isinstance(reply["id"], int)
    # what reached the parser: the two acks, the test_request, the test result, the trade (all but the trade
    # are control frames), and the connection was never closed for a missed heartbeat
    assert [r.control for r in parsed.results] == [True, True, True, True, False]
    assert any(line.data == TEST_REQUEST for line in parsed.lines)
    assert any(f'"id":{reply["id"]}' in line.data and '"version"' in line.data for line in parsed.lines)
    assert driver.connects == 1 and not driver.reconnects


# ---------------------------------------------------------------- 4. a silent venue is stale


STALE_CASES: dict[str, tuple[Callable[[str], VenueAdapter], VenueAdapter, int]] = {
    "bitmex": (lambda url: BitmexAdapter(["XBTUSD"], ws_url=url, stale_after_s=0.3), BitmexAdapter([]), 1),
    "deribit": (lambda url: DeribitAdapter(["BTC-PERPETUAL"], ws_url=url, stale_after_s=0.3), DeribitAdapter([]),
                2),
    "hyperliquid": (lambda url: HyperliquidAdapter(["BTC"], ws_url=url, stale_after_s=0.3),
                    HyperliquidAdapter([]), 2),
}


@pytest.mark.parametrize("venue", sorted(STALE_CASES))
async def test_silent_venue_reconnects_with_reason_stale(venue: str) -> None:
    make_adapter, venue_side, handshake = STALE_CASES[venue]

    async def script(server: ScriptedVenue, ws: ServerConnection, conn: int) -> None:
        await server.handshake(ws, conn, handshake)  # acks, then nothing: not even pongs
        await server.serve_forever(ws, conn, reply=False)

    metrics = Metrics()
    out: asyncio.Queue[RecordLine] = asyncio.Queue(maxsize=100)
    async with ScriptedVenue(venue_side, script) as server:
        adapter = make_adapter(server.url)
        driver = make_driver(adapter, out, metrics)
        async with running(driver):
            await server.wait_for(lambda: len(server.received[2]) >= handshake)
            assert driver.reconnects["stale"] >= 1
            stale = metrics.registry.get_sample_value("flushwatch_reconnects_total",
                                                      {"venue": venue, "reason": "stale"})
            assert stale is not None and stale >= 1
    # the client's app pings (BitMEX text ping, Hyperliquid {"method":"ping"}) went unanswered
    if adapter.app_ping_message is not None:
        assert adapter.app_ping_interval_s == pytest.approx(0.15)
        assert adapter.app_ping_message in server.received[1][handshake:]
    assert server.received[2][:handshake] == list(adapter.ws_connections()[0].subscribe)
