"""The shared websocket connection driver: all the I/O that venue adapters deliberately leave out.

One :class:`ConnectionDriver` holds one :class:`~ingest.base.WsConnectionPlan` open forever: connect,
subscribe (paced), read frames into a bounded queue as :class:`~flushwatch.recording.RecordLine`, keep the
connection alive, notice when it has gone quiet, reconnect with jittered exponential backoff, and rotate
it (make-before-break) before the venue's forced disconnect. Parsing is *not* its job: every frame, even
garbage, is handed on unchanged, so the parse stage can count and dead-letter bad input, and a recorder
downstream sees exactly what the venue sent.

Why these choices (exchanges.md §1.1, §11 items 11-14):

* **Backpressure, not buffering.** Frames go through ``await out.put(...)``: when the consumer is slow the
  driver stops calling ``recv``, websockets' bounded ``max_queue`` fills, the socket stops being read and
  TCP pushes back on the venue. Nothing is dropped and memory stays bounded. Time spent blocked on a full
  queue does not count as silence for the staleness watchdog (the venue is not the one who stalled).
* **Staleness watchdog.** A TCP connection can stay open and deliver nothing (Binance's retired URLs
  connect and go silent); websocket pings do not catch that. No frame for ``adapter.stale_after_s`` means
  close and reconnect with reason ``stale``.
* **Make-before-break rotation.** Binance drops every connection at 24 h. Waiting for the drop loses the
  frames of the reconnect gap; instead the replacement is opened and subscribed, and the old socket is
  closed only once the replacement delivered its first frame (or a timeout passed). Frames from both may
  overlap briefly; the adapter de-duplicates.
* **Backoff that resets only on stability.** A server that accepts and immediately drops us must not be
  hammered, so the backoff is reset only after a connection lived ``stable_after_s``.
* **Structured concurrency.** Every task belongs to an :class:`asyncio.TaskGroup`; cancelling
  :meth:`ConnectionDriver.run` closes every socket it opened.

Reconnect reasons are a closed set (a metric label): ``closed`` (the server ended the connection),
``error`` (connect or I/O error), ``stale`` (no frames, or websocket keepalive timed out), ``rotation``
(planned) and ``protocol`` (a frame too large, invalid UTF-8, a protocol violation).

Only the backoff waits go through the injectable ``sleep``; the short protocol timers (watchdog, app ping,
subscribe pacing, rotation) use the event loop's real time, so tests drive them with tiny intervals and
can record exactly which backoff delays were requested.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.frames import CloseCode

from flushwatch.logs import RateLimitedLog
from flushwatch.metrics import Metrics
from flushwatch.recording import RecordLine
from ingest.backoff import BackoffPolicy
from ingest.base import VenueAdapter, WsConnectionPlan

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "REASONS",
    "ConnectFn",
    "ConnectionDriver",
    "SleepFn",
    "WsConnection",
    "websockets_connector",
]

log = logging.getLogger(__name__)

#: Largest frame accepted; larger frames close the connection with reason ``protocol``. Binance's biggest
#: regular frames (``!markPrice@arr`` with every symbol) are well under 1 MiB.
DEFAULT_MAX_FRAME_BYTES = 8 * 1024 * 1024
#: Every value the ``reason`` label of ``flushwatch_reconnects`` can take.
REASONS = ("closed", "error", "stale", "rotation", "notice", "protocol")

_PROTOCOL_CLOSE_CODES = frozenset(
    {
        CloseCode.PROTOCOL_ERROR,
        CloseCode.UNSUPPORTED_DATA,
        CloseCode.INVALID_DATA,
        CloseCode.MESSAGE_TOO_BIG,
    }
)
#: What a failed connect or a broken socket raises; anything else is a bug and propagates.
_IO_ERRORS = (OSError, TimeoutError, WebSocketException)


class WsConnection(Protocol):
    """The part of a websocket client connection the driver uses (websockets' ``ClientConnection``)."""

    async def send(self, message: str) -> None:
        """Send one text message."""
        ...

    async def recv(self) -> str | bytes:
        """Receive the next message; raises ``ConnectionClosed`` once the connection is gone."""
        ...

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Run the closing handshake."""
        ...


ConnectFn = Callable[[str], Awaitable[WsConnection]]
SleepFn = Callable[[float], Awaitable[None]]


def websockets_connector(
    *,
    max_size: int = DEFAULT_MAX_FRAME_BYTES,
    ping_interval_s: float | None = 20.0,
    ping_timeout_s: float | None = 20.0,
    open_timeout_s: float = 10.0,
    close_timeout_s: float = 2.0,
    max_queue: int = 16,
    compression: Literal["deflate"] | None = None,
) -> ConnectFn:
    """The default connect factory: websockets' asyncio client with bounded frames and queue.

    websockets answers the venue's ping frames by itself and sends its own pings every
    ``ping_interval_s``; a missing pong closes the connection (reported as ``stale``). ``max_queue`` keeps
    the library's receive buffer bounded so backpressure reaches TCP (STYLE.md guideline 9).

    ``compression`` is off by default: with permessage-deflate (which Binance accepts) inflating each
    frame cost ~2.6 µs of CPU, more than parsing it, ~15 % of the ingest path per event
    (bench/ingest_kafka.py). Venue frames are small, so compression saves bandwidth (~3-5x) but no
    latency; cryptofeed turns it off for Binance derivatives too. ``"deflate"`` turns it back on.
    """

    async def connect(url: str) -> WsConnection:
        return await ws_connect(
            url,
            max_size=max_size,
            max_queue=max_queue,
            ping_interval=ping_interval_s,
            ping_timeout=ping_timeout_s,
            open_timeout=open_timeout_s,
            close_timeout=close_timeout_s,
            compression=compression,
        )

    return connect


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(eq=False)
class _Conn:
    """One open connection and what the watchdog needs to know about it."""

    ws: WsConnection
    number: int
    opened_at: float
    last_activity: float
    in_put: bool = False
    frames: int = 0
    closed: bool = False
    #: set when the venue announced a disconnect: replace the connection now (make-before-break)
    rotate_now: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True, slots=True)
class _End:
    """Why holding a connection stopped, and the connection that takes over after a rotation."""

    reason: str
    detail: str
    replacement: _Conn | None = None


def _closed_reason(exc: ConnectionClosed) -> str:
    codes = {frame.code for frame in (exc.sent, exc.rcvd) if frame is not None}
    if codes & _PROTOCOL_CLOSE_CODES:
        return "protocol"
    if exc.sent is not None and exc.sent.code == CloseCode.INTERNAL_ERROR and "keepalive" in exc.sent.reason:
        return "stale"
    return "closed"


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class ConnectionDriver:
    """Holds one websocket connection plan open until cancelled and emits every frame as a RecordLine.

    Args:
        adapter: the venue adapter (ping message and interval, ``stale_after_s``,
            ``max_connection_age_s``, ``reset_connection_state``).
        plan: the connection to hold: URL and subscribe messages.
        out: bounded queue of raw frames; ``await out.put`` makes a slow consumer stall the socket read.
        metrics: the process's metrics bundle.
        backoff: delay policy between failed attempts (see :class:`ingest.backoff.Backoff`).
        stable_after_s: a connection that lived this long resets the backoff to its first delay.
        sleep: awaited for every backoff delay (inject a recorder in tests).
        connect: connect factory, ``url -> connection``; default :func:`websockets_connector`.
        clock: monotonic seconds, for connection age and silence.
        wall_ms: wall time in epoch ms, stamped on every frame as ``recv_ts``.
        subscribe_interval_s: pause between subscribe messages (Binance accepts 10 messages/s; 0.2 s keeps
            us at 5/s, leaving room for pings).
        rotation_timeout_s: how long a replacement may take to deliver its first frame before the old
            connection is closed anyway.
        open_timeout_s: bound on one connect attempt (on top of the factory's own timeout).
        close_timeout_s: bound on a closing handshake, so cancellation never hangs on a dead peer.
        queue_name: ``queue`` label of the queue-depth gauge.
    """

    def __init__(
        self,
        adapter: VenueAdapter,
        plan: WsConnectionPlan,
        out: asyncio.Queue[RecordLine],
        metrics: Metrics,
        backoff: BackoffPolicy,
        *,
        stable_after_s: float = 60.0,
        sleep: SleepFn = asyncio.sleep,
        connect: ConnectFn | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = _wall_ms,
        subscribe_interval_s: float = 0.2,
        rotation_timeout_s: float = 10.0,
        open_timeout_s: float = 15.0,
        close_timeout_s: float = 3.0,
        queue_name: str = "ingest_raw",
    ) -> None:
        self.adapter = adapter
        self.plan = plan
        self.venue = adapter.venue
        self._out = out
        self._metrics = metrics
        self._backoff = backoff
        self._stable_after_s = stable_after_s
        self._sleep = sleep
        self._connect = connect if connect is not None else websockets_connector()
        self._clock = clock
        self._wall_ms = wall_ms
        self._subscribe_interval_s = subscribe_interval_s
        self._rotation_timeout_s = rotation_timeout_s
        self._open_timeout_s = open_timeout_s
        self._close_timeout_s = close_timeout_s
        self._queue_name = queue_name
        # read at scrape time rather than set per frame (a labels() lookup and a set for every frame)
        metrics.queue_depth.labels(queue_name).set_function(out.qsize)
        self._stream_label = f"ws:{plan.name}"
        self._label = f"{self.venue}/{plan.name}"
        self._problems = RateLimitedLog(log)
        #: successful connections (including rotation replacements)
        self.connects = 0
        #: reconnects by reason (same numbers as the metric, for tests and status pages)
        self.reconnects: collections.Counter[str] = collections.Counter()
        #: frames put on ``out``
        self.frames = 0
        #: application-level pings sent
        self.app_pings = 0
        #: connections currently open (2 during a rotation's overlap)
        self.open_connections = 0

    # ------------------------------------------------------------------ main loop

    async def run(self) -> None:
        """Hold the connection open until cancelled. Never returns; never gives up."""
        failures = 0  # consecutive attempts that failed or did not live long enough; drives the backoff
        reason: str | None = None
        conn: _Conn | None = None  # set when a rotation handed over an already-subscribed connection
        while True:
            if conn is None:
                if reason is not None:
                    delay = self._backoff.delay(failures)
                    failures += 1
                    log.info("ws %s: reconnecting in %.2f s after %s (attempt %d)",
                             self._label, delay, reason, failures)
                    await self._sleep(delay)
                try:
                    conn = await self._open()
                except _IO_ERRORS as exc:
                    reason = "error"
                    self._count_reconnect(reason)
                    self._problems.warning("connect", "ws %s: could not connect to %s: %s",
                                           self._label, self.plan.url, _describe(exc))
                    continue
            end = await self._hold(conn)
            lived = self._clock() - conn.opened_at
            if lived >= self._stable_after_s:
                failures = 0
            reason = end.reason
            self._count_reconnect(reason)
            level = logging.INFO if reason == "rotation" else logging.WARNING
            log.log(level, "ws %s: connection #%d ended after %.1f s and %d frames: %s (%s)",
                    self._label, conn.number, lived, conn.frames, reason, end.detail)
            conn = end.replacement

    def _count_reconnect(self, reason: str) -> None:
        self.reconnects[reason] += 1
        self._metrics.reconnects.labels(self.venue, reason).inc()

    # ------------------------------------------------------------------ one connection

    async def _open(self) -> _Conn:
        """Connect and subscribe; the returned connection is counted as open."""
        async with asyncio.timeout(self._open_timeout_s):
            ws = await self._connect(self.plan.url)
        try:
            for index, message in enumerate(self.plan.subscribe):
                if index:
                    await asyncio.sleep(self._subscribe_interval_s)
                await ws.send(message)
        except BaseException:
            await self._close_ws(ws)
            raise
        now = self._clock()
        self.connects += 1
        conn = _Conn(ws=ws, number=self.connects, opened_at=now, last_activity=now)
        self.open_connections += 1
        self._metrics.connections.labels(self.venue).inc()
        if conn.number > 1:
            # Before any frame of the new connection is queued: snapshots re-sent on (re)subscribe must
            # not be mistaken for deltas of the old connection.
            self.adapter.reset_connection_state(self.plan.name)
        log.info("ws %s: connected to %s (connection #%d), %d subscribe message(s) sent",
                 self._label, self.plan.url, conn.number, len(self.plan.subscribe))
        return conn

    async def _hold(self, conn: _Conn) -> _End:
        """Read, keep alive, watch and rotate ``conn`` until one of them ends it; always closes it."""
        tasks: list[asyncio.Task[_End]] = []
        handed_over: _Conn | None = None
        try:
            async with asyncio.TaskGroup() as tg:
                tasks.append(tg.create_task(self._guard(self._read(conn))))
                tasks.append(tg.create_task(self._guard(self._watchdog(conn))))
                ping, max_age = self.adapter.app_ping_message, self.adapter.max_connection_age_s
                if ping is not None:
                    tasks.append(tg.create_task(self._guard(self._keepalive(conn, ping))))
                tasks.append(tg.create_task(self._guard(self._rotate(conn, max_age))))
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in tasks:
                    task.cancel()
            ends = [task.result() for task in tasks if task.done() and not task.cancelled()]
            end = next((e for e in ends if e.replacement is not None), ends[0])
            handed_over = end.replacement
            return end
        finally:
            # A rotation that finished while we were being cancelled must not leak its new socket.
            for task in tasks:
                if task.done() and not task.cancelled() and task.exception() is None:
                    spare = task.result().replacement
                    if spare is not None and spare is not handed_over:
                        await self._close(spare)
            await self._close(conn)

    async def _guard(self, work: Awaitable[_End]) -> _End:
        """Turn the ways a connection dies into an :class:`_End` with a bounded reason."""
        try:
            return await work
        except ConnectionClosed as exc:
            return _End(_closed_reason(exc), _describe(exc))
        except _IO_ERRORS as exc:
            return _End("error", _describe(exc))

    async def _read(self, conn: _Conn) -> _End:
        recv = conn.ws.recv
        control = self.adapter.control
        while True:
            frame = await recv()
            recv_ts = self._wall_ms()
            text = frame if isinstance(frame, str) else self._as_text(frame)
            action = control(text)
            if action is not None:
                for reply in action.replies:
                    await conn.ws.send(reply)
                if action.rotate and not conn.rotate_now.is_set():
                    log.warning("ws %s: the venue announced a disconnect; replacing connection #%d now",
                                self._label, conn.number)
                    conn.rotate_now.set()
            waiting = self._offer(conn, text, recv_ts)
            if waiting is not None:
                await self._put(conn, waiting)

    async def _deliver(self, conn: _Conn, frame: str | bytes, recv_ts: int | None = None) -> None:
        """Queue one frame as received; waiting for queue space is backpressure, not silence."""
        waiting = self._offer(conn, self._as_text(frame), self._wall_ms() if recv_ts is None else recv_ts)
        if waiting is not None:
            await self._put(conn, waiting)

    def _offer(self, conn: _Conn, text: str, recv_ts: int) -> RecordLine | None:
        """Queue the frame if the queue has room (the common case: no suspension, no coroutine per frame,
        which is measurable at tens of thousands of frames per second); else return it for :meth:`_put`."""
        conn.last_activity = self._clock()
        self._metrics.staleness.touch(self.venue, self._stream_label)
        line = RecordLine(recv_ts, self.venue, "ws", self.plan.url, text)
        out = self._out
        if out.full():
            return line
        out.put_nowait(line)
        conn.frames += 1
        self.frames += 1
        return None

    async def _put(self, conn: _Conn, line: RecordLine) -> None:
        """Wait for room in the queue: backpressure on the venue, which the watchdog must not take for
        silence."""
        conn.in_put = True
        try:
            await self._out.put(line)
        finally:
            conn.in_put = False
            conn.last_activity = self._clock()
        conn.frames += 1
        self.frames += 1

    def _as_text(self, frame: str | bytes) -> str:
        """The recording format holds text; binary frames that are UTF-8 (most venues) stay exact."""
        if isinstance(frame, str):
            return frame
        try:
            return frame.decode("utf-8")
        except UnicodeDecodeError:
            self._problems.warning("binary", "ws %s: binary frame is not UTF-8; recorded with replacement "
                                   "characters (%d bytes)", self._label, len(frame))
            return frame.decode("utf-8", errors="replace")

    async def _watchdog(self, conn: _Conn) -> _End:
        stale_after = self.adapter.stale_after_s
        while True:
            if conn.in_put:  # our consumer is slow, the venue is not silent
                await asyncio.sleep(stale_after)
                continue
            idle = self._clock() - conn.last_activity
            if idle >= stale_after:
                return _End("stale", f"no frame for {idle:.1f} s (limit {stale_after:g} s)")
            await asyncio.sleep(stale_after - idle)

    async def _keepalive(self, conn: _Conn, message: str) -> _End:
        interval = self.adapter.app_ping_interval_s
        while True:
            await asyncio.sleep(interval)
            await conn.ws.send(message)
            self.app_pings += 1

    async def _rotate(self, conn: _Conn, max_age_s: float | None) -> _End:
        """At ``max_age_s`` (or when the venue announces a disconnect), open and subscribe a replacement
        and wait for its first frame."""
        attempt = 0
        while True:
            remaining = None if max_age_s is None else conn.opened_at + max_age_s - self._clock()
            if remaining is None or remaining > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await conn.rotate_now.wait()
            reason = "notice" if conn.rotate_now.is_set() else "rotation"
            log.info("ws %s: rotating connection #%d at age %.1f s (planned, before the venue's forced "
                     "disconnect)", self._label, conn.number, self._clock() - conn.opened_at)
            try:
                new = await self._open()
            except _IO_ERRORS as exc:
                delay = self._backoff.delay(attempt)
                attempt += 1
                log.warning("ws %s: replacement connection failed (%s); connection #%d stays, retrying the "
                            "rotation in %.2f s", self._label, _describe(exc), conn.number, delay)
                await self._sleep(delay)
                continue
            try:
                try:
                    async with asyncio.timeout(self._rotation_timeout_s):
                        frame = await new.ws.recv()
                except TimeoutError:
                    log.warning("ws %s: replacement #%d sent nothing within %.1f s; switching anyway",
                                self._label, new.number, self._rotation_timeout_s)
                else:
                    await self._deliver(new, frame)
            except ConnectionClosed as exc:
                await self._close(new)
                delay = self._backoff.delay(attempt)
                attempt += 1
                log.warning("ws %s: replacement #%d closed before taking over (%s); retrying the rotation in "
                            "%.2f s", self._label, new.number, _describe(exc), delay)
                await self._sleep(delay)
                continue
            except BaseException:
                await self._close(new)
                raise
            return _End(reason, f"replaced by connection #{new.number}", replacement=new)

    async def _close(self, conn: _Conn) -> None:
        if conn.closed:
            return
        conn.closed = True
        self.open_connections -= 1
        self._metrics.connections.labels(self.venue).dec()
        await self._close_ws(conn.ws)

    async def _close_ws(self, ws: WsConnection) -> None:
        """Closing handshake, bounded: a dead peer must not hold up a reconnect or a shutdown."""
        with contextlib.suppress(*_IO_ERRORS):
            async with asyncio.timeout(self._close_timeout_s):
                await ws.close()
