"""REST polling for one venue: start-up metadata once, then periodic polls, within the venue's weight budget.

Some data has no stream (Binance open interest is REST-only, exchanges.md §1.5) and every adapter needs
instrument metadata before it can value a frame. :class:`RestPoller` fetches both and emits each response
body unchanged as a ``kind="rest"`` :class:`~flushwatch.recording.RecordLine` on the same bounded queue as
the websocket frames, so the parse stage, the recorder and replay treat REST and websocket traffic alike.

Why it is shaped this way:

* **Start-up first.** :meth:`RestPoller.fetch_startup` (or the module-level :func:`fetch_startup`) puts
  every start-up response on ``out`` before returning, and retries with backoff until each one succeeded:
  the ingest service awaits it before starting the websocket drivers, so metadata is parsed before the
  first frame.
* **A token bucket over request weight.** Venues limit by weight per minute, per IP (Binance 2400; we use
  the configured share). The bucket refills at ``budget / 60`` per second and holds at most ``burst``
  (default: ten seconds' worth), so even a restart storm cannot spend more than budget + burst in any
  minute.
* **One venue-wide pause.** A 429 or 418 (Binance's IP ban) applies to the IP, not to one endpoint, so the
  ``Retry-After`` pause stops *every* poll of the venue; continuing to poll during a 429 is what turns a
  rate limit into a ban. Without ``Retry-After`` a conservative default is used.
* **Bounded concurrency.** At most ``max_in_flight`` requests run at once; a slow venue or a full ``out``
  queue holds up the scheduler instead of piling up requests. Missed slots are skipped, not replayed in a
  burst.

Only the scheduler waits (through the injectable ``sleep`` and ``clock``), so tests can run it on a fake
clock against a real local HTTP server.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import logging
import time
from collections.abc import Awaitable, Callable

from flushwatch.errors import HttpError
from flushwatch.logs import RateLimitedLog
from flushwatch.metrics import Metrics
from flushwatch.recording import RecordLine
from ingest.backoff import Backoff, BackoffPolicy
from ingest.base import RestPoll, VenueAdapter
from ingest.http import HttpProtocolError, HttpResponse, http_get
from ingest.replay import NOT_RECORDED

__all__ = ["OUTCOMES", "HttpGetFn", "RestPoller", "WeightLimiter", "fetch_startup"]

log = logging.getLogger(__name__)

HttpGetFn = Callable[[str], Awaitable[HttpResponse]]
SleepFn = Callable[[float], Awaitable[None]]

#: Every value the ``outcome`` label of ``flushwatch_rest_requests`` can take.
#: the body marker of a replay server's "this recording holds no such response" 404
NOT_RECORDED_MARK = f'"replay":"{NOT_RECORDED}"'.encode()

OUTCOMES = ("ok", "rate_limited", "banned", "server_error", "client_error", "not_recorded", "error")


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _default_http_get(url: str) -> Awaitable[HttpResponse]:
    return http_get(url, timeout_s=10.0)


class WeightLimiter:
    """Token bucket over request weight: refills at ``budget_per_min / 60`` per second up to ``burst``.

    A request heavier than the burst waits for a full bucket and then drives it negative, so the long-run
    rate stays within the budget whatever the weights.
    """

    def __init__(self, budget_per_min: int, *, burst: int | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: SleepFn = asyncio.sleep) -> None:
        if budget_per_min <= 0:
            raise ValueError("the weight budget must be positive")
        self.rate_per_s = budget_per_min / 60.0
        self.capacity = float(burst if burst is not None else max(1, budget_per_min // 6))
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.capacity
        self._updated = clock()
        #: total weight granted, for tests and status pages
        self.granted = 0

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate_per_s)
        self._updated = now

    def available(self) -> float:
        """Tokens in the bucket now (negative after an over-capacity request)."""
        self._refill()
        return self._tokens

    async def acquire(self, weight: int) -> None:
        """Wait until ``weight`` may be spent, then spend it."""
        need = min(float(weight), self.capacity)
        while True:
            self._refill()
            if self._tokens >= need - 1e-9:
                self._tokens -= weight
                self.granted += weight
                return
            await self._sleep((need - self._tokens) / self.rate_per_s)

    def refund(self, weight: int) -> None:
        """Give back weight that was acquired but not spent (the request was not sent)."""
        self._tokens = min(self.capacity, self._tokens + weight)
        self.granted -= weight

    def drain(self) -> None:
        """Empty the bucket: after a 429 the venue's count is evidently higher than ours."""
        self._refill()
        self._tokens = min(self._tokens, 0.0)


class RestPoller:
    """Start-up requests and periodic polls for one adapter, emitted as ``kind="rest"`` RecordLines.

    Args:
        adapter: source of ``startup_requests()``, ``rest_polls()`` and ``rest_url``.
        out: the bounded raw-frame queue shared with the websocket drivers.
        metrics: the process's metrics bundle (``rest_requests{venue,outcome}``, queue depth).
        weight_budget_per_min: request weight per minute this poller may spend.
        burst_weight: bucket size; default ten seconds' worth of budget.
        backoff: delays between retries of a failed start-up request.
        http_get: ``url -> HttpResponse``, raising like :func:`ingest.http.http_get`.
        sleep: every wait of the scheduler, limiter, pause and retries goes through it.
        clock: monotonic seconds for the schedule, the bucket and pauses.
        wall_ms: epoch ms stamped on each response as ``recv_ts``.
        max_in_flight: concurrent requests at most.
        startup_weight: weight charged per start-up request (``startup_requests`` carries no weights).
        rate_limit_pause_s: pause after a 429 without ``Retry-After``.
        ban_pause_s: pause after a 418 (IP ban) without ``Retry-After``.
        queue_name: ``queue`` label of the queue-depth gauge.
    """

    def __init__(
        self,
        adapter: VenueAdapter,
        out: asyncio.Queue[RecordLine],
        metrics: Metrics,
        *,
        weight_budget_per_min: int,
        burst_weight: int | None = None,
        backoff: BackoffPolicy | None = None,
        http_get: HttpGetFn = _default_http_get,
        sleep: SleepFn = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = _wall_ms,
        max_in_flight: int = 4,
        startup_weight: int = 1,
        rate_limit_pause_s: float = 60.0,
        ban_pause_s: float = 300.0,
        queue_name: str = "ingest_raw",
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.adapter = adapter
        self.venue = adapter.venue
        self._out = out
        self._metrics = metrics
        self._backoff: BackoffPolicy = backoff if backoff is not None else Backoff(1.0, 60.0)
        self._http_get = http_get
        self._sleep = sleep
        self._clock = clock
        self._wall_ms = wall_ms
        self._max_in_flight = max_in_flight
        self._startup_weight = startup_weight
        self._rate_limit_pause_s = rate_limit_pause_s
        self._ban_pause_s = ban_pause_s
        self._queue_name = queue_name
        self._base = adapter.rest_url.rstrip("/")
        self._problems = RateLimitedLog(log)
        self.limiter = WeightLimiter(weight_budget_per_min, burst=burst_weight, clock=clock, sleep=sleep)
        #: monotonic time (``clock``) until which no request is sent
        self.paused_until = float("-inf")
        #: requests by outcome (same numbers as the metric)
        self.outcomes: collections.Counter[str] = collections.Counter()
        #: venue-wide pauses started (429/418/Retry-After)
        self.pauses = 0
        self.startup_done = False
        self._not_recorded: set[str] = set()

    # ------------------------------------------------------------------ public

    async def fetch_startup(self) -> int:
        """Fetch every start-up request once; return how many responses were emitted.

        Transient failures (network, timeouts, 429/418 pauses, 5xx) are retried until they succeed: the
        adapter cannot value frames without metadata. A plain 4xx (404, 400) is permanent — a wrong path,
        or a replayed recording that lacks the request — and is logged and skipped. Each response is on
        ``out`` when this returns, so awaiting it before starting the websocket drivers guarantees
        metadata comes before the first frame.
        """
        paths = self.adapter.startup_requests()
        emitted = 0
        for path in paths:
            attempt = 0
            while True:
                await self._wait_out_pause()
                await self.limiter.acquire(self._startup_weight)
                line, outcome = await self._fetch(path)
                if line is not None:
                    await self._emit(line)
                    emitted += 1
                    break
                if outcome == "not_recorded":
                    break
                if outcome == "client_error":
                    # 404/400 will not heal by retrying (a wrong path, or a recording without it): go on
                    # without it rather than block the whole venue's start-up forever.
                    log.error("REST %s: start-up request %s refused by the venue; continuing without it",
                              self.venue, path)
                    break
                if self._clock() < self.paused_until:
                    continue  # the pause is the wait
                delay = self._backoff.delay(attempt)
                attempt += 1
                log.info("REST %s: retrying start-up request %s in %.2f s (attempt %d)",
                         self.venue, path, delay, attempt)
                await self._sleep(delay)
        if paths:
            log.info("REST %s: fetched %d of %d start-up response(s)", self.venue, emitted, len(paths))
        self.startup_done = True
        return emitted

    async def run(self, *, startup: bool = True) -> None:
        """Fetch start-up requests (unless done or ``startup`` is false), then poll until cancelled.

        Returns at once after start-up when the adapter has nothing to poll.
        """
        if startup and not self.startup_done:
            await self.fetch_startup()
        polls = self.adapter.rest_polls()
        if not polls:
            return
        log.info("REST %s: polling %d endpoint(s) within %g weight/min", self.venue, len(polls),
                 self.limiter.rate_per_s * 60.0)
        async with asyncio.TaskGroup() as tg:
            await self._schedule(polls, tg)

    # ------------------------------------------------------------------ scheduling

    async def _schedule(self, polls: list[RestPoll], tg: asyncio.TaskGroup) -> None:
        in_flight = asyncio.Semaphore(self._max_in_flight)
        start = self._clock()
        count = len(polls)
        # Staggered first slots: n polls of one interval are spread over it instead of firing together.
        heap = [(start + poll.interval_s * index / count, index) for index, poll in enumerate(polls)]
        heapq.heapify(heap)
        while True:
            # Take an in-flight slot first: the clock only moves on while no more requests can be sent,
            # which keeps the schedule exact on a fake clock and idle slots cheap on a real one.
            await in_flight.acquire()
            try:
                due, index = heap[0]
                poll = polls[index]
                if poll.path in self._not_recorded:  # a replay without it: drop it from the schedule
                    heapq.heappop(heap)
                    in_flight.release()
                    if not heap:
                        return
                    continue
                while (wait := due - self._clock()) > 0:
                    await self._sleep(wait)
                await self._wait_out_pause()
                await self.limiter.acquire(poll.weight)
                while self._clock() < self.paused_until:  # a 429 landed while we waited for tokens
                    self.limiter.refund(poll.weight)
                    await self._wait_out_pause()
                    await self.limiter.acquire(poll.weight)
            except BaseException:
                in_flight.release()
                raise
            now = self._clock()
            next_due = due + poll.interval_s
            if next_due < now:  # fell behind (pause, slow venue, budget): skip the missed slots
                next_due = now + poll.interval_s
            heapq.heapreplace(heap, (next_due, index))
            tg.create_task(self._poll_once(poll, in_flight))

    async def _poll_once(self, poll: RestPoll, in_flight: asyncio.Semaphore) -> None:
        try:
            line, _outcome = await self._fetch(poll.path)
            if line is not None:
                await self._emit(line)
        finally:
            in_flight.release()

    async def _wait_out_pause(self) -> None:
        while (remaining := self.paused_until - self._clock()) > 0:
            await self._sleep(remaining)

    def _pause(self, seconds: float, why: str) -> None:
        until = self._clock() + seconds
        if until > self.paused_until:
            self.paused_until = until
            self.pauses += 1
            log.warning("REST %s: %s; pausing all requests to this venue for %.1f s",
                        self.venue, why, seconds)
        self.limiter.drain()

    # ------------------------------------------------------------------ one request

    async def _fetch(self, path: str) -> tuple[RecordLine | None, str]:
        """One GET: the response as a RecordLine (or None after handling the failure), and the outcome."""
        url = self._base + path
        try:
            response = await self._http_get(url)
        except HttpError as exc:
            if exc.status == 404 and NOT_RECORDED_MARK in exc.body:
                # a replay of a recording without this request: expected, say it once and stop asking
                self._count("not_recorded")
                if path not in self._not_recorded:
                    self._not_recorded.add(path)
                    log.info("REST %s: the replayed recording holds no response to %s; not asking again",
                             self.venue, path)
                return None, "not_recorded"
            outcome = self._on_http_error(exc)
            self._count(outcome)
            self._problems.warning(f"http:{outcome}", "REST %s: GET %s failed: HTTP %d", self.venue, path,
                                   exc.status)
            return None, outcome
        except (OSError, TimeoutError, HttpProtocolError) as exc:
            self._count("error")
            self._problems.warning("io", "REST %s: GET %s failed: %s", self.venue, path,
                                   f"{type(exc).__name__}: {exc}")
            return None, "error"
        self._count("ok")
        return RecordLine(self._wall_ms(), self.venue, "rest", path, response.text()), "ok"

    def _on_http_error(self, exc: HttpError) -> str:
        status = exc.status
        hint = "" if exc.retry_after_s is None else f" (Retry-After {exc.retry_after_s:g} s)"
        if status == 429:
            self._pause(exc.retry_after_s if exc.retry_after_s is not None else self._rate_limit_pause_s,
                        f"HTTP 429 rate limited{hint}")
            return "rate_limited"
        if status == 418:
            self._pause(exc.retry_after_s if exc.retry_after_s is not None else self._ban_pause_s,
                        f"HTTP 418 IP banned{hint}")
            return "banned"
        if status >= 500:
            if exc.retry_after_s is not None:
                self._pause(exc.retry_after_s, f"HTTP {status}{hint}")
            return "server_error"
        return "client_error"

    def _count(self, outcome: str) -> None:
        self.outcomes[outcome] += 1
        self._metrics.rest_requests.labels(self.venue, outcome).inc()

    async def _emit(self, line: RecordLine) -> None:
        await self._out.put(line)
        self._metrics.queue_depth.labels(self._queue_name).set(self._out.qsize())


async def fetch_startup(
    adapter: VenueAdapter,
    out: asyncio.Queue[RecordLine],
    metrics: Metrics,
    *,
    weight_budget_per_min: int = 1200,
    backoff: BackoffPolicy | None = None,
    http_get: HttpGetFn = _default_http_get,
    sleep: SleepFn = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Fetch ``adapter.startup_requests()`` onto ``out`` (see :meth:`RestPoller.fetch_startup`), no polling.

    For callers that start the pollers later or not at all; :meth:`RestPoller.fetch_startup` on the
    poller that will run afterwards shares its rate-limit state and is preferable when there is one.
    """
    poller = RestPoller(adapter, out, metrics, weight_budget_per_min=weight_budget_per_min, backoff=backoff,
                        http_get=http_get, sleep=sleep, clock=clock)
    return await poller.fetch_startup()
