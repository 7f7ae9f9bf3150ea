"""Wiring of the roles into running services: broker, topics, metrics endpoint, signals, drain.

This is the only module that knows all three packages (ingest, processors, sinks); they never import each
other. ``flushwatch run`` runs all roles in one process under one TaskGroup; ``ingest``, ``process`` and
``sink`` run one role each against a configured cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import signal
import socket
from collections.abc import Callable, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from flushwatch.broker import EmbeddedBroker
from flushwatch.config import Config
from flushwatch.errors import ConfigError
from flushwatch.httpserver import OpsServer
from flushwatch.kafka import Producer, create_topics
from flushwatch.metrics import Metrics
from flushwatch.recording import RecordingWriter, RecordLine
from flushwatch.topics import Topics
from ingest.base import VenueAdapter
from ingest.registry import ADAPTERS, create_adapter
from ingest.replay import ReplayServer, load_replay_lines
from ingest.service import IngestService
from processors.registry import build_detectors
from processors.runtime import ProcessorService
from sinks.factory import build_targets
from sinks.service import SinkService

__all__ = ["DEMO_RECORDING", "RunOptions", "demo_recording_path", "online", "run_service", "wait_first"]

log = logging.getLogger("flushwatch")

DEMO_RECORDING = "demo_binance_2025-01-27.jsonl.gz"


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """What to run and how, from the command line."""

    roles: frozenset[str]
    replay: tuple[str, ...] = ()
    speed: float = 1.0
    duration_s: float | None = None
    exit_when_replayed: bool = True


def demo_recording_path() -> Path:
    """The recording shipped inside the package (a real Binance liquidation burst)."""
    return Path(str(resources.files("flushwatch") / "data" / DEMO_RECORDING))


def online(host: str = "fstream.binance.com", port: int = 443, timeout_s: float = 3.0) -> bool:
    """Whether a venue is reachable at all; used to fall back to the bundled replay when offline."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _enabled_venues(config: Config) -> list[str]:
    return [name for name in ADAPTERS if getattr(getattr(config.venues, name, None), "enabled", False)]


def _replay_symbols(lines: Sequence[RecordLine]) -> list[str]:
    """Symbols whose REST polls a recording holds, so the replayed ingest polls exactly those."""
    found = {m.group(1) for line in lines if line.kind == "rest"
             for m in [re.search(r"[?&]symbol=([A-Za-z0-9_]+)", line.endpoint)] if m}
    return sorted(found)


def _for_replay(config: Config, venue: str, ws_url: str, rest_url: str, symbols: list[str],
                speed: float) -> Config:
    """Point a venue at the local replay server. Pollers run ``speed`` times faster too, so a replay at
    10x polls at the recorded cadence and sees the recorded REST responses (open interest) in timeline
    order; at speed 0 (as fast as possible) polls see only the responses current when they happen."""
    section = getattr(config.venues, venue)
    update: dict[str, object] = {"ws_url": ws_url, "rest_url": rest_url, "enabled": True}
    if symbols:  # else keep the configured ones: the replay server sends every recorded frame anyway
        update["symbols"] = symbols
    if speed > 0 and hasattr(section, "oi_poll_interval_s"):
        update["oi_poll_interval_s"] = section.oi_poll_interval_s / speed
        update["rest_weight_budget_per_min"] = max(1, int(section.rest_weight_budget_per_min * speed))
    venues = config.venues.model_copy(update={venue: section.model_copy(update=update)})
    return config.model_copy(update={"venues": venues})


@contextlib.contextmanager
def _signals(stop: asyncio.Event) -> Iterator[None]:
    """First SIGINT/SIGTERM: graceful stop. Second: cancel everything now."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()

    def handle(signame: str) -> None:
        if stop.is_set():
            log.warning("second %s: cancelling without draining", signame)
            if main is not None:
                main.cancel()
            return
        log.info("%s received: draining (stop ingest, flush, commit); send again to force", signame)
        stop.set()

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, handle, sig.name)
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def run_service(config: Config, options: RunOptions, metrics: Metrics | None = None,
                      stop: asyncio.Event | None = None) -> int:
    """Run the requested roles until stopped (signal, ``--duration``, or the end of a replay)."""
    metrics = metrics or Metrics()
    stop = stop or asyncio.Event()
    # signals first: a SIGTERM while the broker starts or topics are created must drain, not kill
    with _signals(stop):
        return await _run_with_signals(config, options, metrics, stop)


async def _run_with_signals(config: Config, options: RunOptions, metrics: Metrics, stop: asyncio.Event) -> int:
    broker: EmbeddedBroker | None = None
    bootstrap: str | None = None
    if not config.kafka.bootstrap_servers:
        if options.roles != {"ingest", "process", "sink"}:
            raise ConfigError("kafka.bootstrap_servers is empty: a single role needs a shared cluster "
                              "(start one with `flushwatch broker`, then set FLUSHWATCH_KAFKA__BOOTSTRAP_SERVERS)")
        broker = EmbeddedBroker(config.broker.host, config.broker.port, config.broker.binary,
                                config.broker.start_timeout_s).start()
        bootstrap = broker.bootstrap
        # one process, one processor: the embedded broker's topics get broker.partitions (see its description)
        config = config.model_copy(update={"kafka": config.kafka.model_copy(
            update={"partitions": config.broker.partitions})})
    ops: OpsServer | None = None
    try:
        topics_created = asyncio.Event()
        ready_checks: list[ReadyCheck] = [_waits_for("topics created", topics_created)]
        if config.metrics.enabled:  # before the topics: /healthz answers while the cluster is slow to answer
            ops = OpsServer(metrics.registry, config.metrics.host, config.metrics.port,
                            lambda: _not_ready(ready_checks)).start()
        if config.kafka.create_topics:
            topics = Topics(config.kafka.topic_prefix)
            await create_topics(config.kafka, topics.all, bootstrap, compacted=topics.compacted)
        topics_created.set()
        if stop.is_set():
            log.info("stopped before the roles started")
            return 0
        return await _run_roles(config, options, metrics, stop, bootstrap, ready_checks)
    finally:
        if ops is not None:
            ops.stop()
        if broker is not None:
            broker.stop()


#: one condition of ``/readyz``: returns what is not ready yet (nothing when it holds). Called on the
#: operations server's thread, so it only reads.
ReadyCheck = Callable[[], list[str]]


def _waits_for(name: str, event: asyncio.Event) -> ReadyCheck:
    return lambda: [] if event.is_set() else [name]


def _not_ready(checks: list[ReadyCheck]) -> list[str]:
    """What ``/readyz`` lists; ``list()`` copies the checks in one step (the event loop may add some)."""
    return [line for check in list(checks) for line in check()]


async def _run_roles(config: Config, options: RunOptions, metrics: Metrics, stop: asyncio.Event,
                     bootstrap: str | None, ready_checks: list[ReadyCheck]) -> int:
    replays: list[ReplayServer] = []
    adapters: dict[str, VenueAdapter] = {}
    if "ingest" in options.roles:
        if options.replay:
            grouped = load_replay_lines(options.replay)
            for venue, lines in grouped.items():
                if venue not in ADAPTERS:
                    log.error("recording has frames of venue %r, which flushwatch does not know; skipped", venue)
                    continue
                server = ReplayServer(lines, ADAPTERS[venue](symbols=[]), speed=options.speed)
                await server.start()
                replays.append(server)
                # the venue's own URL path, on the local server: what a live connection would ask for
                ws_path = urlsplit(ADAPTERS[venue].default_ws_url).path
                config = _for_replay(config, venue, f"{server.ws_url}{ws_path}", server.http_url,
                                     _replay_symbols(lines), options.speed)
                adapters[venue] = create_adapter(venue, config)
                span_s = (lines[-1].recv_ts - lines[0].recv_ts) / 1000 if lines else 0.0
                log.info("replaying %d %s frames (%.0f s of recording) from %s at speed %s%s", len(lines),
                         venue, span_s, ", ".join(options.replay), options.speed or "max",
                         f": about {span_s / options.speed:.0f} s; --speed 0 replays as fast as possible"
                         if options.speed else "")
            if not adapters:
                raise ConfigError("the recordings hold no frames of a known venue")
        else:
            adapters = {venue: create_adapter(venue, config) for venue in _enabled_venues(config)}
            if not adapters:
                raise ConfigError("no venue is enabled (venues.<name>.enabled)")
    recorder = RecordingWriter(config.ingest.record_path) if config.ingest.record_path else None
    producer = Producer(config.kafka, metrics, bootstrap)
    await producer.start()
    try:
        async with asyncio.TaskGroup() as group:
            stages: list[tuple[_Drainable, asyncio.Task[None]]] = []
            if "ingest" in options.roles:
                ingest = IngestService(config, metrics, adapters, producer, recorder)
                ready_checks.append(ingest.connectivity.missing)
                stages.append((ingest, group.create_task(ingest.run(stop), name="ingest")))
            if "process" in options.roles:
                processor = ProcessorService(config, metrics, lambda: build_detectors(config), producer, bootstrap)
                ready_checks.append(_waits_for("processor assigned", processor.ready))
                stages.append((processor, group.create_task(processor.run(stop), name="process")))
            if "sink" in options.roles:
                sink = SinkService(config, metrics, build_targets(config), producer, bootstrap)
                ready_checks.append(_waits_for("sink assigned", sink.ready))
                stages.append((sink, group.create_task(sink.run(stop), name="sink")))
            if options.duration_s is not None:
                group.create_task(_stop_after(stop, options.duration_s), name="duration")
            if replays and options.exit_when_replayed:
                horizon_ms = int((config.cascade.quiet_s + config.cascade.window_s + 1) * 1000)
                group.create_task(_finish_replay(replays, stop, stages, horizon_ms), name="replay-drain")
    finally:
        await producer.stop()
        if recorder is not None:
            recorder.close()
        for server in replays:
            await server.close()
    return 0


class _Drainable(Protocol):
    @property
    def produced(self) -> int: ...

    def request_drain(self, horizon_ms: int = 0, expect_records: int = 0) -> None: ...


async def _stop_after(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()
    stop.set()


async def _all_set(events: Sequence[asyncio.Event]) -> None:
    for event in events:
        await event.wait()


async def wait_first(stop: asyncio.Event, events: Sequence[asyncio.Event]) -> None:
    """Return when ``stop`` is set or when every one of ``events`` is set, whichever comes first."""
    tasks = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(_all_set(events))}
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _finish_replay(replays: list[ReplayServer], stop: asyncio.Event,
                         stages: list[tuple[_Drainable, asyncio.Task[None]]], horizon_ms: int) -> None:
    """End of a replay: drain each stage in pipeline order (ingest, process, sink), then stop.

    The processor advances time by ``horizon_ms`` once its input is consumed ("time passes with no more
    events"), so an episode the recording ends in is closed exactly as ``flushwatch backtest`` closes it.
    """
    await wait_first(stop, [server.done for server in replays])
    if stop.is_set():
        return
    log.info("replay finished; draining the pipeline")
    stopper = asyncio.ensure_future(stop.wait())
    try:
        upstream = 0
        for stage, task in stages:
            # each stage waits for everything the stage before it produced, then for its log end
            stage.request_drain(horizon_ms, upstream)
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set():
                return
            upstream = stage.produced
    finally:
        stopper.cancel()
    stop.set()
