"""Replay a recording as a local venue: websocket frames on a timeline, REST answers from the same port.

``flushwatch replay`` runs the whole pipeline, ingest included, with no internet: one
:class:`ReplayServer` per venue speaks just enough of the venue's protocol for the real connection driver
and REST poller to work unchanged against it (point the adapter's ``ws_url``/``rest_url`` at
:attr:`ReplayServer.ws_url`/:attr:`ReplayServer.http_url`).

How it behaves, and why:

* **A live feed, not a file download.** The timeline starts when the first websocket client connects;
  frame *i* is due ``(recv_ts_i - recv_ts_0) / speed`` seconds later and goes to every connected client,
  in recorded order, byte for byte. A client that connects later (e.g. the driver reconnecting) starts at
  the current position and does not get the past again — exactly what a venue does, which is what the
  reconnect and de-duplication logic needs to be exercised on. ``speed=0`` sends as fast as clients take
  frames; the position is then the furthest any client got.
* **No shared broadcaster.** Each client's writer walks the shared timeline on its own, so one slow client
  can never delay the others. A client that falls more than ``max_backlog`` frames behind the timeline, or
  whose socket does not accept a frame within ``send_timeout_s``, is disconnected and counted
  (``clients_dropped``): it would otherwise make the replay's memory or duration unbounded.
* **Protocol replies.** Client text messages (SUBSCRIBE, app pings) are answered with
  ``adapter.replay_replies(message)``; websocket pings are sent like Binance does (``ping_interval_s``).
* **REST on the same port.** Plain HTTP GETs (no ``Upgrade: websocket``) are answered from the recorded
  ``kind="rest"`` lines through websockets' ``process_request`` hook: same path and (order-insensitive)
  query, the latest response recorded at or before the replay's current time position (the first one if
  none is that old yet), else 404 with a JSON error.

Every task here is a websockets connection handler or belongs to the handler's :class:`asyncio.TaskGroup`,
so closing the server ends them all.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qsl, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from flushwatch.recording import BadLine, RecordLine, merge_recordings
from ingest.base import VenueAdapter

__all__ = ["ReplayServer", "load_replay_lines", "rest_key"]

log = logging.getLogger(__name__)

RestKey = tuple[str, tuple[tuple[str, str], ...]]


#: marks a replay server's 404 for a request the recording holds no response to, so pollers can tell
#: "not in this recording" (expected, quiet) from a venue refusing a request (an error)
NOT_RECORDED = "not_recorded"


def rest_key(endpoint: str) -> RestKey:
    """Path and sorted query of a REST endpoint (a bare ``/path?query`` or a full URL), for matching."""
    parts = urlsplit(endpoint)
    return parts.path or "/", tuple(sorted(parse_qsl(parts.query, keep_blank_values=True)))


def load_replay_lines(
    paths: Iterable[str | Path], *, bad_lines: list[BadLine] | None = None
) -> dict[str, list[RecordLine]]:
    """Read and merge recordings (ordered by ``recv_ts``) and group their lines by venue.

    A bad line never stops the load: it is logged (the first few in full, then a count) and appended to
    ``bad_lines`` when a list is given, so the caller can report or dead-letter it.
    """
    by_venue: dict[str, list[RecordLine]] = defaultdict(list)
    bad = 0
    for item in merge_recordings(paths):
        if isinstance(item, BadLine):
            bad += 1
            if bad <= 5:
                log.warning("recording %s line %d skipped: %s", item.source, item.lineno, item.reason)
            if bad_lines is not None:
                bad_lines.append(item)
            continue
        by_venue[item.venue].append(item)
    if bad:
        log.warning("recordings: %d bad line(s) skipped in total", bad)
    return dict(by_venue)


@dataclass(eq=False)
class _Client:
    ws: ServerConnection
    number: int
    next_index: int
    sent: int = 0
    dropped: bool = False


class ReplayServer:
    """Serve one venue's recording over websocket and HTTP on one loopback port.

    Args:
        lines: the venue's recorded lines (``ws`` frames and ``rest`` responses), any order.
        adapter: an adapter of the same venue; its ``replay_replies`` answers client messages.
        speed: 1.0 real time, 10 ten times faster, 0 as fast as the clients read.
        host: interface to listen on (loopback by default: this is a test and demo tool).
        port: 0 picks a free port (see :attr:`port` after :meth:`start`).
        ping_interval_s: websocket ping frames every this many seconds (Binance: 180); None disables.
        ping_timeout_s: close a client that does not answer a ping within this time.
        max_backlog: frames a client may lag behind the timeline before it is disconnected.
        send_timeout_s: a frame the client's socket does not accept within this time disconnects it.
    """

    def __init__(
        self,
        lines: Sequence[RecordLine],
        adapter: VenueAdapter,
        *,
        speed: float = 1.0,
        host: str = "127.0.0.1",
        port: int = 0,
        ping_interval_s: float | None = 180.0,
        ping_timeout_s: float | None = 600.0,
        max_backlog: int = 10_000,
        send_timeout_s: float = 5.0,
    ) -> None:
        if speed < 0 or math.isnan(speed) or math.isinf(speed):
            raise ValueError("speed must be a finite number >= 0 (0 = as fast as possible)")
        venues = {line.venue for line in lines}
        if len(venues) > 1:
            raise ValueError(f"one ReplayServer serves one venue; got {sorted(venues)}")
        if venues and adapter.venue and venues != {adapter.venue}:
            raise ValueError(f"recording is for {venues.pop()!r} but the adapter is for {adapter.venue!r}")
        ordered = sorted(lines, key=lambda line: line.recv_ts)  # stable: ties keep recorded order
        ws_lines = [line for line in ordered if line.kind == "ws"]
        self.adapter = adapter
        self.venue = adapter.venue or (next(iter(venues)) if venues else "")
        self.speed = speed
        self._host = host
        self._port = port
        self._ping_interval_s = ping_interval_s
        self._ping_timeout_s = ping_timeout_s
        self._max_backlog = max_backlog
        self._send_timeout_s = send_timeout_s
        self._frames = [line.data for line in ws_lines]
        self._frame_ts = [line.recv_ts for line in ws_lines]
        self._t0 = self._frame_ts[0] if ws_lines else 0
        # seconds after the start at which each frame is due (all 0 at speed 0)
        self._offsets = [(ts - self._t0) / 1000.0 / speed if speed else 0.0 for ts in self._frame_ts]
        rest: dict[RestKey, list[RecordLine]] = defaultdict(list)
        for line in ordered:
            if line.kind == "rest":
                rest[rest_key(line.endpoint)].append(line)
        self._rest = {key: ([line.recv_ts for line in group], [line.data for line in group])
                      for key, group in rest.items()}
        self._server: Server | None = None
        self._start: float | None = None
        self._leader = 0  # frames sent to at least one client (the position at speed 0)
        #: set once the last websocket frame went to a client (at once if the recording has none; or when
        #: a client connects after the timeline ended with nobody connected)
        self.done = asyncio.Event()
        if not self._frames:
            self.done.set()
        #: frames sent, summed over clients
        self.frames_sent = 0
        #: websocket clients accepted, in total
        self.clients = 0
        #: clients disconnected for falling behind
        self.clients_dropped = 0
        #: plain HTTP requests answered (any status)
        self.http_requests = 0
        self._connected: set[_Client] = set()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start listening; :attr:`port`, :attr:`ws_url` and :attr:`http_url` are valid afterwards."""
        if self._server is not None:
            return
        self._server = await serve(
            self._handle,
            self._host,
            self._port,
            process_request=self._process_request,
            ping_interval=self._ping_interval_s,
            ping_timeout=self._ping_timeout_s,
            close_timeout=2.0,
        )
        self._port = self._server.sockets[0].getsockname()[1]
        log.info("replay %s: serving %d websocket frame(s) and %d REST endpoint(s) on %s at speed %g",
                 self.venue, len(self._frames), len(self._rest), self.ws_url, self.speed)

    async def close(self) -> None:
        """Close every client connection and stop listening; safe to call twice."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def __aenter__(self) -> ReplayServer:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    @property
    def port(self) -> int:
        """The listening port (after :meth:`start`)."""
        return self._port

    @property
    def ws_url(self) -> str:
        """Websocket base URL, e.g. ``ws://127.0.0.1:54321``; any path is accepted."""
        return f"ws://{self._host}:{self._port}"

    @property
    def http_url(self) -> str:
        """HTTP base URL for the recorded REST responses."""
        return f"http://{self._host}:{self._port}"

    @property
    def started(self) -> bool:
        """Whether the timeline has started (a websocket client connected)."""
        return self._start is not None

    @property
    def clients_connected(self) -> int:
        """Websocket clients connected now."""
        return len(self._connected)

    # ------------------------------------------------------------------ timeline

    def _elapsed(self) -> float:
        assert self._start is not None
        return asyncio.get_running_loop().time() - self._start

    def _current_index(self) -> int:
        """Index of the first frame a client connecting now receives."""
        if self._start is None:
            return 0
        if self.speed == 0:
            return self._leader
        return bisect.bisect_left(self._offsets, self._elapsed())

    def position_ms(self) -> float:
        """The replay's current time position on the recording's clock (epoch ms)."""
        if not self._frames:
            return math.inf  # REST-only recording: serve the latest responses
        if self._start is None:
            return float(self._t0)
        if self.speed == 0:
            return float(self._frame_ts[max(0, self._leader - 1)])
        return self._t0 + self._elapsed() * 1000.0 * self.speed

    # ------------------------------------------------------------------ websocket side

    async def _handle(self, ws: ServerConnection) -> None:
        first_index = self._current_index()
        if self._start is None:
            self._start = asyncio.get_running_loop().time()
            span = (self._frame_ts[-1] - self._t0) / 1000.0 if self._frames else 0.0
            log.info("replay %s: timeline started (%d frame(s) spanning %.1f s)", self.venue,
                     len(self._frames), span)
        self.clients += 1
        client = _Client(ws, self.clients, first_index)
        if first_index >= len(self._frames) and not self.done.is_set():
            # Nobody was connected when the last frame was due (e.g. a reconnect at the very end); the
            # timeline is over all the same, and a caller waiting for ``done`` must not wait forever.
            log.warning("replay %s: timeline ended while no client was connected; replay done", self.venue)
            self.done.set()
        self._connected.add(client)
        try:
            async with asyncio.TaskGroup() as tg:
                writer = tg.create_task(self._write(client))
                await self._read(client)  # until the connection closes
                writer.cancel()
        finally:
            self._connected.discard(client)

    async def _read(self, client: _Client) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in client.ws:
                text = message if isinstance(message, str) else message.decode("utf-8", errors="replace")
                try:
                    replies = self.adapter.replay_replies(text)
                except Exception:  # an adapter bug must not take the replay down with it
                    log.exception("replay %s: replay_replies failed on %r", self.venue, text[:200])
                    continue
                for reply in replies:
                    await client.ws.send(reply)

    async def _write(self, client: _Client) -> None:
        try:
            await self._write_frames(client)
        except ConnectionClosed:
            return
        except TimeoutError:
            await self._drop(client, f"its socket took no frame for {self._send_timeout_s:g} s")

    async def _write_frames(self, client: _Client) -> None:
        loop = asyncio.get_running_loop()
        assert self._start is not None
        count = len(self._frames)
        index = client.next_index
        while index < count:
            if self.speed > 0:
                delay = self._start + self._offsets[index] - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                backlog = bisect.bisect_right(self._offsets, self._elapsed()) - index
            else:
                backlog = self._leader - index
                if client.sent % 256 == 255:  # sends rarely block on loopback: let the others run
                    await asyncio.sleep(0)
            if backlog > self._max_backlog:
                await self._drop(client, f"{backlog} frames behind the timeline")
                return
            async with asyncio.timeout(self._send_timeout_s):
                await client.ws.send(self._frames[index])
            index += 1
            client.sent += 1
            self.frames_sent += 1
            self._leader = max(self._leader, index)
            if index == count and not self.done.is_set():
                log.info("replay %s: last frame sent (%d frames to %d client(s) so far)", self.venue,
                         self.frames_sent, self.clients)
                self.done.set()

    async def _drop(self, client: _Client, why: str) -> None:
        client.dropped = True
        self.clients_dropped += 1
        log.warning("replay %s: disconnecting client #%d: %s", self.venue, client.number, why)
        # A client that stopped reading cannot take a close frame either: don't wait for it.
        client.ws.transport.abort()

    # ------------------------------------------------------------------ HTTP side

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if "websocket" in request.headers.get("Upgrade", "").lower():
            return None  # a websocket handshake: accept on any path
        self.http_requests += 1
        entry = self._rest.get(rest_key(request.path))
        if entry is None:
            body = orjson.dumps({"code": -1, "msg": f"no recorded response for {request.path}",
                                 "replay": NOT_RECORDED}).decode()
            return self._json_response(connection, 404, body)
        stamps, bodies = entry
        index = max(0, bisect.bisect_right(stamps, self.position_ms()) - 1)
        return self._json_response(connection, 200, bodies[index])

    @staticmethod
    def _json_response(connection: ServerConnection, status: int, body: str) -> Response:
        response = connection.respond(status, body)
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = "application/json"
        return response
