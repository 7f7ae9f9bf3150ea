"""The ingest role: venue connections and pollers -> one bounded queue -> parser -> Kafka.

Shutdown is two-stage: on ``stop`` the connections and pollers are cancelled first (no new input), then
the queue is drained through the parser within a deadline, then the producer is flushed. A drain request
(end of a replay) does the same once the input has gone quiet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping

from flushwatch.config import Config
from flushwatch.kafka import Producer
from flushwatch.metrics import Metrics
from flushwatch.recording import RecordingWriter, RecordLine
from flushwatch.topics import Topics
from ingest.backoff import Backoff
from ingest.base import VenueAdapter
from ingest.driver import ConnectionDriver
from ingest.pipeline import FramePipeline
from ingest.poller import RestPoller

__all__ = ["Connectivity", "IngestService", "run_sources"]

log = logging.getLogger("flushwatch.ingest")


class Connectivity:
    """What the ingest role still lacks to be ready (``/readyz``): each venue's start-up metadata, then
    every websocket connection it planned, open. A connection that drops (or goes stale and is replaced)
    makes the role not ready until it is back, so a dead feed shows on ``/readyz`` as well as in metrics.

    :meth:`missing` runs on the operations server's thread: it copies what the event loop changes and
    reads the open connections from the metrics registry (``flushwatch_ws_connections``)."""

    def __init__(self, metrics: Metrics, venues: Iterable[str]) -> None:
        self._metrics = metrics
        self._venues = list(venues)
        self._planned: dict[str, int] = {}

    def planned(self, venue: str, connections: int) -> None:
        """``venue`` fetched its metadata and will hold ``connections`` websocket connections."""
        self._planned[venue] = connections

    def missing(self) -> list[str]:
        """One line per venue that is not fully connected; empty when ingest is ready."""
        planned = dict(self._planned)
        out = []
        for venue in self._venues:
            want = planned.get(venue)
            if want is None:
                out.append(f"ingest {venue}: start-up metadata not fetched yet")
                continue
            have = self._metrics.registry.get_sample_value("flushwatch_ws_connections", {"venue": venue}) or 0
            if have < want:
                out.append(f"ingest {venue}: {have:.0f} of {want} websocket connection(s) open")
        return out


async def run_sources(adapters: Mapping[str, VenueAdapter], queue: asyncio.Queue[RecordLine],
                      config: Config, metrics: Metrics, connectivity: Connectivity | None = None) -> None:
    """Fetch start-up metadata, then hold every connection and poller open until cancelled."""
    backoff = Backoff.from_config(config.ingest.reconnect)
    async with asyncio.TaskGroup() as group:
        for venue, adapter in adapters.items():
            budget = _weight_budget(config, venue)
            await _startup(adapter, queue, metrics, budget, backoff)
            poller = RestPoller(adapter, queue, metrics, weight_budget_per_min=budget, backoff=backoff)
            plans = adapter.ws_connections()
            if connectivity is not None:
                connectivity.planned(venue, len(plans))
            for plan in plans:
                driver = ConnectionDriver(adapter, plan, queue, metrics, backoff=backoff,
                                          stable_after_s=config.ingest.reconnect.stable_after_s)
                group.create_task(driver.run(), name=f"ws:{venue}:{plan.name}")
            if adapter.rest_polls():
                group.create_task(poller.run(startup=False), name=f"rest:{venue}")


async def _startup(adapter: VenueAdapter, queue: asyncio.Queue[RecordLine], metrics: Metrics, budget: int,
                   backoff: Backoff) -> None:
    """Fetch the start-up metadata and let the adapter read it *before* it plans its connections (which
    instruments exist, contract sizes, the top N by open interest), then pass the responses on so they
    are recorded and reach the pipeline like every other frame (parsing them twice is harmless)."""
    staged: asyncio.Queue[RecordLine] = asyncio.Queue(maxsize=max(1, len(adapter.startup_requests())))
    await RestPoller(adapter, staged, metrics, weight_budget_per_min=budget, backoff=backoff).fetch_startup()
    while not staged.empty():
        line = staged.get_nowait()
        adapter.parse_rest(line.endpoint, line.data, line.recv_ts)
        await queue.put(line)


def _weight_budget(config: Config, venue: str) -> int:
    section = getattr(config.venues, venue, None)
    return int(getattr(section, "rest_weight_budget_per_min", 600))


class IngestService:
    """Runs the sources and the pipeline; see the module docstring for the shutdown order."""

    def __init__(self, config: Config, metrics: Metrics, adapters: Mapping[str, VenueAdapter],
                 producer: Producer, recorder: RecordingWriter | None = None,
                 drain_deadline_s: float = 10.0) -> None:
        self._config = config
        self._metrics = metrics
        self._adapters = adapters
        self._producer = producer
        self._queue: asyncio.Queue[RecordLine] = asyncio.Queue(maxsize=config.ingest.queue_size)
        # read at scrape time rather than set for every frame
        metrics.queue_depth.labels("ingest").set_function(self._queue.qsize)
        self.pipeline = FramePipeline(adapters, producer, Topics(config.kafka.topic_prefix), metrics, recorder)
        self._drain = asyncio.Event()
        self._deadline_s = drain_deadline_s
        self._last_frame = time.monotonic()
        self.connectivity = Connectivity(metrics, adapters)

    @property
    def produced(self) -> int:
        """Events handed to Kafka so far."""
        return self.pipeline.events

    def request_drain(self, horizon_ms: int = 0, expect_records: int = 0) -> None:
        """Finish once no frame arrived for a moment and the queue is empty (end of a replay)."""
        self._drain.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Ingest until ``stop`` is set or a drain completes; always flushes what it took in."""
        sources_done = asyncio.Event()
        try:
            async with asyncio.TaskGroup() as group:
                sources = group.create_task(run_sources(self._adapters, self._queue, self._config,
                                                        self._metrics, self.connectivity),
                                            name="ingest-sources")
                sources.add_done_callback(lambda _t: sources_done.set())
                consumer = group.create_task(self._consume(), name="ingest-pipeline")
                await self._wait_for_end(stop, sources_done)
                sources.cancel()
                await self._drain_queue()
                consumer.cancel()
        finally:
            await self._producer.flush()
            log.info("ingest stopped: %d frames, %d events, %d rejected", self.pipeline.frames,
                     self.pipeline.events, self.pipeline.rejects)

    async def _wait_for_end(self, stop: asyncio.Event, sources_done: asyncio.Event) -> None:
        while not stop.is_set() and not sources_done.is_set():
            if self._drain.is_set() and self._queue.empty() and time.monotonic() - self._last_frame > 0.5:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.1):
                    await stop.wait()

    async def _consume(self) -> None:
        queue = self._queue
        handle = self.pipeline.handle
        while True:
            # get_nowait while frames are waiting (the busy case): no coroutine per frame
            line = queue.get_nowait() if queue.qsize() else await queue.get()
            if line.kind == "ws":  # pollers keep polling a finished replay; only the stream matters
                self._last_frame = time.monotonic()
            try:
                await handle(line)
            finally:
                queue.task_done()

    async def _drain_queue(self) -> None:
        try:
            async with asyncio.timeout(self._deadline_s):
                await self._queue.join()
        except TimeoutError:
            log.error("ingest drain deadline passed with %d frames still queued; they are lost",
                      self._queue.qsize())
