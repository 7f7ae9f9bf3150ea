"""The HTTP client and the REST poller against a real local HTTP server (asyncio streams, raw HTTP/1.1).

The poller runs on a fake clock: its injected ``sleep`` advances the clock instantly, and the server stamps
every request with that clock, so pauses and the weight budget are asserted in exact virtual seconds while
the HTTP traffic is real.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from flushwatch.errors import HttpError
from flushwatch.metrics import Metrics
from flushwatch.recording import RecordLine
from ingest.backoff import Backoff
from ingest.base import ParseResult, RestPoll, VenueAdapter, WsConnectionPlan
from ingest.http import HttpProtocolError, http_get, parse_retry_after
from ingest.poller import RestPoller, fetch_startup

VENUE = "tiny"
INFO = "/fapi/v1/exchangeInfo"
OI_BTC = "/fapi/v1/openInterest?symbol=BTCUSDT"
OI_ETH = "/fapi/v1/openInterest?symbol=ETHUSDT"


def response(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    reason = {200: "OK", 404: "Not Found", 418: "I'm a teapot", 429: "Too Many Requests",
              503: "Service Unavailable"}.get(status, "X")
    lines = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(parts: list[bytes]) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
    body = b"".join(f"{len(p):x};ext=1\r\n".encode() + p + b"\r\n" for p in parts)
    return head + body + b"0\r\nX-Trailer: yes\r\n\r\n"


# A route answers the n-th request (0-based) for its target; None means "never answer".
Route = Callable[[int], bytes | None]


@dataclass
class Seen:
    target: str
    at: float
    head: str


@dataclass
class HttpServer:
    routes: dict[str, Route]
    clock: Callable[[], float] = time.monotonic
    requests: list[Seen] = field(default_factory=list)
    _handlers: set[asyncio.Task[object]] = field(default_factory=set)
    base: str = ""

    async def __aenter__(self) -> HttpServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.base = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=5)

    def targets(self) -> list[str]:
        return [r.target for r in self.requests]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            target = head.split("\r\n", 1)[0].split(" ")[1]
            nth = sum(1 for r in self.requests if r.target == target)
            self.requests.append(Seen(target, self.clock(), head))
            route = self.routes.get(target)
            raw = response(404, b'{"msg":"no route"}') if route is None else route(nth)
            if raw is None:
                await reader.read()  # hang until the client gives up
            else:
                writer.write(raw)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self._handlers.discard(task)


class FakeTime:
    """Injected clock + sleep: sleeping advances the clock at once and is recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.now += max(0.0, delay)
        await asyncio.sleep(0)


class RestAdapter(VenueAdapter):
    venue = VENUE

    def __init__(self, rest_url: str, startup: list[str], polls: list[RestPoll]) -> None:
        super().__init__(["BTCUSDT"], ws_url="ws://unused", rest_url=rest_url)
        self._startup = startup
        self._polls = polls

    def ws_connections(self) -> list[WsConnectionPlan]:
        return []

    def startup_requests(self) -> list[str]:
        return list(self._startup)

    def rest_polls(self) -> list[RestPoll]:
        return list(self._polls)

    def parse(self, raw: bytes | str, recv_ts_ms: int) -> ParseResult:
        return ParseResult()


def ok(body: bytes) -> Route:
    return lambda _n: response(200, body, {"Content-Type": "application/json"})


def outcome(metrics: Metrics, name: str) -> float | None:
    return metrics.registry.get_sample_value("flushwatch_rest_requests_total", {"venue": VENUE, "outcome": name})


@contextlib.asynccontextmanager
async def running(poller: RestPoller) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(poller.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def take(out: asyncio.Queue[RecordLine], n: int, timeout: float = 5.0) -> list[RecordLine]:
    async with asyncio.timeout(timeout):
        return [await out.get() for _ in range(n)]


async def wait_requests(server: HttpServer, n: int, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while len(server.requests) < n:
            await asyncio.sleep(0.002)


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    yield
    current = asyncio.current_task()
    for _ in range(3):
        await asyncio.sleep(0)
    leaked = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert not leaked, f"tasks leaked: {leaked}"


# ---------------------------------------------------------------------------------------------- http_get


async def test_get_reads_content_length_chunked_and_eof_bodies() -> None:
    eof_body = b'{"eof":true}'
    routes: dict[str, Route] = {
        "/fixed?x=1": ok(b'{"fixed":1}'),
        "/chunked": lambda _n: chunked([b'{"a":', b"[1,2,3", b"]}"]),
        "/eof": lambda _n: b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + eof_body,
        "/empty": lambda _n: b"HTTP/1.1 204 No Content\r\n\r\n",
        "/continue": lambda _n: b"HTTP/1.1 100 Continue\r\n\r\n" + response(200, b"after"),
    }
    async with HttpServer(routes) as server:
        fixed = await http_get(server.base + "/fixed?x=1")
        chunks = await http_get(server.base + "/chunked")
        eof = await http_get(server.base + "/eof")
        empty = await http_get(server.base + "/empty")
        cont = await http_get(server.base + "/continue")
    assert (fixed.status, fixed.body, fixed.headers["content-type"]) == (200, b'{"fixed":1}', "application/json")
    assert chunks.body == b'{"a":[1,2,3]}'
    assert eof.body == eof_body
    assert (empty.status, empty.body) == (204, b"")
    assert (cont.status, cont.body) == (200, b"after")
    head = server.requests[0].head
    assert head.startswith("GET /fixed?x=1 HTTP/1.1\r\n")
    assert "\r\nConnection: close\r\n" in head
    assert f"\r\nHost: {server.base.removeprefix('http://')}\r\n" in head


async def test_error_statuses_raise_http_error_with_retry_after() -> None:
    later = email.utils.formatdate(time.time() + 120, usegmt=True)
    routes: dict[str, Route] = {
        "/429": lambda _n: response(429, b'{"code":-1003}', {"Retry-After": "7"}),
        "/418": lambda _n: response(418, b"", {"Retry-After": later}),
        "/503": lambda _n: response(503),
        "/404": lambda _n: response(404),
    }
    async with HttpServer(routes) as server:
        errors: dict[str, HttpError] = {}
        for path in routes:
            with pytest.raises(HttpError) as caught:
                await http_get(server.base + path)
            errors[path] = caught.value
        not_raised = await http_get(server.base + "/503", raise_for_status=False)
    assert (errors["/429"].status, errors["/429"].retry_after_s, errors["/429"].body) == (429, 7.0, b'{"code":-1003}')
    assert errors["/418"].status == 418
    assert errors["/418"].retry_after_s is not None and 100 < errors["/418"].retry_after_s <= 120
    assert (errors["/503"].status, errors["/503"].retry_after_s) == (503, None)
    assert errors["/404"].status == 404
    assert not_raised.status == 503


def test_parse_retry_after() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-3") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0


async def test_size_cap_bad_responses_and_timeout() -> None:
    routes: dict[str, Route] = {
        "/big": ok(b"x" * 5000),
        "/big-chunked": lambda _n: chunked([b"y" * 800, b"y" * 800]),
        "/big-eof": lambda _n: b"HTTP/1.1 200 OK\r\n\r\n" + b"z" * 5000,
        "/truncated": lambda _n: b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort",
        "/garbage": lambda _n: b"SSH-2.0-OpenSSH\r\n\r\n",
        "/gzip": lambda _n: response(200, b"\x1f\x8b", {"Content-Encoding": "gzip"}),
        "/hang": lambda _n: None,
    }
    async with HttpServer(routes) as server:
        for path in ("/big", "/big-chunked", "/big-eof", "/truncated", "/garbage", "/gzip"):
            with pytest.raises(HttpProtocolError):
                await http_get(server.base + path, max_body_bytes=1000)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await http_get(server.base + "/hang", timeout_s=0.2)
        assert time.monotonic() - started < 2.0


# ---------------------------------------------------------------------------------------------- poller


async def test_startup_responses_come_first_and_failures_are_retried_with_backoff() -> None:
    fake = FakeTime()
    info = b'{"symbols":[{"symbol":"BTCUSDT"}]}'
    routes: dict[str, Route] = {
        INFO: lambda n: response(503) if n == 0 else response(200, info),
        "/fapi/v1/time": ok(b'{"serverTime":1}'),
        OI_BTC: ok(b'{"openInterest":"10659.509","symbol":"BTCUSDT","time":1589437530011}'),
    }
    metrics = Metrics()
    out: asyncio.Queue[RecordLine] = asyncio.Queue(maxsize=100)
    async with HttpServer(routes, clock=fake.clock) as server:
        adapter = RestAdapter(server.base, [INFO, "/fapi/v1/time"], [RestPoll(OI_BTC, 10.0)])
        backoff = Backoff(0.5, 4.0, rng=random.Random(5))
        poller = RestPoller(adapter, out, metrics, weight_budget_per_min=1200, backoff=backoff,
                            sleep=fake.sleep, clock=fake.clock, max_in_flight=1, wall_ms=lambda: 123)
        async with running(poller):
            lines = await take(out, 4)
    assert [(line.kind, line.endpoint) for line in lines] == [
        ("rest", INFO), ("rest", "/fapi/v1/time"), ("rest", OI_BTC), ("rest", OI_BTC)
    ]
    assert lines[0].data == info.decode()
    assert lines[0].venue == VENUE and lines[0].recv_ts == 123
    assert server.targets()[:4] == [INFO, INFO, "/fapi/v1/time", OI_BTC]
    assert fake.sleeps[0] == Backoff(0.5, 4.0, rng=random.Random(5)).delay(0)
    assert outcome(metrics, "server_error") == 1
    assert (outcome(metrics, "ok") or 0) >= 4
    # the poll repeats at its interval on the fake clock
    polls = [r.at for r in server.requests if r.target == OI_BTC]
    assert polls[1] - polls[0] == pytest.approx(10.0)


async def test_module_level_fetch_startup_emits_before_returning_and_skips_permanent_4xx() -> None:
    fake = FakeTime()
    routes: dict[str, Route] = {INFO: ok(b'{"info":1}')}  # /fapi/v1/fundingInfo is not there: 404
    metrics = Metrics()
    out: asyncio.Queue[RecordLine] = asyncio.Queue(maxsize=10)
    async with HttpServer(routes) as server:
        adapter = RestAdapter(server.base, ["/fapi/v1/fundingInfo", INFO], [RestPoll(OI_BTC, 10.0)])
        emitted = await fetch_startup(adapter, out, metrics, sleep=fake.sleep, clock=fake.clock)
    assert emitted == 1
    assert out.qsize() == 1
    line = out.get_nowait()
    assert (line.kind, line.endpoint, line.data) == ("rest", INFO, '{"info":1}')
    assert server.targets() == ["/fapi/v1/fundingInfo", INFO]  # a 404 is not retried; no polling
    assert fake.sleeps == []
    assert outcome(metrics, "client_error") == 1


async def test_429_retry_after_pauses_every_poll_of_the_venue() -> None:
    fake = FakeTime()
    body = b'{"openInterest":"1"}'
    routes: dict[str, Route] = {
        OI_BTC: ok(body),
        OI_ETH: lambda n: response(429, b'{"code":-1003}', {"Retry-After": "7"}) if n == 0 else response(200, body),
    }
    metrics = Metrics()
    out: asyncio.Queue[RecordLine] = asyncio.Queue(maxsize=100)
    async with HttpServer(routes, clock=fake.clock) as server:
        adapter = RestAdapter(server.base, [], [RestPoll(OI_BTC, 1.0), RestPoll(OI_ETH, 1.0)])
        poller = RestPoller(adapter, out, metrics, weight_budget_per_min=1200, sleep=fake.sleep,
                            clock=fake.clock, max_in_flight=1)
        async with running(poller):
            await wait_requests(server, 6)
    limited = next(r for r in server.requests if r.target == OI_ETH)
    after = [r for r in server.requests if r.at > limited.at]
    assert after, "polling resumed"
    assert {r.target for r in after} == {OI_BTC, OI_ETH}
    assert min(r.at for r in after) == pytest.approx(limited.at + 7.0)
    assert not [r for r in server.requests if limited.at < r.at < limited.at + 7.0]
    assert poller.pauses == 1
    assert outcome(metrics, "rate_limited") == 1
    emitted = [out.get_nowait().endpoint for _ in range(out.qsize())]
    assert OI_ETH in emitted  # the retry after the pause got through


async def test_weight_budget_is_respected() -> None:
    fake = FakeTime()
    routes: dict[str, Route] = {OI_BTC: ok(b"{}"), OI_ETH: ok(b"{}")}
    metrics = Metrics()
    out: asyncio.Queue[RecordLine] = asyncio.Queue(maxsize=1000)
    async with HttpServer(routes, clock=fake.clock) as server:
        # Wants 2 x 5 weight every 0.5 s = 20/s; the budget is 60/min = 1/s with a burst of 10.
        adapter = RestAdapter(server.base, [], [RestPoll(OI_BTC, 0.5, weight=5), RestPoll(OI_ETH, 0.5, weight=5)])
        poller = RestPoller(adapter, out, metrics, weight_budget_per_min=60, burst_weight=10,
                            sleep=fake.sleep, clock=fake.clock, max_in_flight=1)
        start = fake.now
        async with running(poller):
            await wait_requests(server, 12)
    spent = 0
    for request in server.requests:
        spent += 5
        assert spent <= 10 + 1.0 * (request.at - start) + 1e-6, (spent, request.at - start)
    elapsed = server.requests[-1].at - start
    assert elapsed >= (5 * len(server.requests) - 10) / 1.0 - 1e-6
    # granted = what reached the server, plus at most one request cancelled on its way out
    assert poller.limiter.granted - 5 * len(server.requests) in (0, 5)
