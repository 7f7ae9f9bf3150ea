"""``flushwatch record`` and ``flushwatch replay``: raw traffic to files and back to sockets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from flushwatch.app import wait_first
from flushwatch.config import Config
from flushwatch.errors import ConfigError
from flushwatch.metrics import Metrics
from flushwatch.recording import RecordingWriter, RecordLine
from ingest.registry import ADAPTERS, create_adapter
from ingest.replay import ReplayServer, load_replay_lines
from ingest.service import run_sources

__all__ = ["record", "serve_replay"]

log = logging.getLogger("flushwatch.record")


async def record(config: Config, venue: str, out: Path, duration_s: float | None,
                 max_frames: int | None = None, stop: asyncio.Event | None = None) -> int:
    """Record a venue's start-up REST responses, polls and websocket frames until stopped (signal,
    ``duration_s`` or ``max_frames`` lines written)."""
    if venue not in ADAPTERS:
        raise ConfigError(f"unknown venue {venue!r}; known: {', '.join(sorted(ADAPTERS))}")
    adapter = create_adapter(venue, config)
    metrics = Metrics()
    queue: asyncio.Queue[RecordLine] = asyncio.Queue(maxsize=config.ingest.queue_size)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal  # noqa: PLC0415

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    started = time.monotonic()
    with RecordingWriter(out) as writer:
        log.info("recording %s to %s%s", venue, out, f" for {duration_s:.0f} s" if duration_s else "")

        async def write() -> None:
            while True:
                line = await queue.get()
                writer.write(line)
                if max_frames is not None and writer.lines >= max_frames:
                    stop.set()
                    return
                if writer.lines % 1000 == 0:
                    writer.flush()
                    log.info("%d frames recorded", writer.lines)

        async with asyncio.TaskGroup() as group:
            sources = group.create_task(run_sources({venue: adapter}, queue, config, metrics))
            writer_task = group.create_task(write())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(duration_s):
                    await stop.wait()
            sources.cancel()
            writer_task.cancel()
            while not queue.empty() and (max_frames is None or writer.lines < max_frames):
                writer.write(queue.get_nowait())
        log.info("recorded %d frames in %.0f s to %s", writer.lines, time.monotonic() - started, out)
    return 0


async def serve_replay(files: Sequence[str], speed: float, port: int, exit_when_done: bool) -> int:
    """Serve each venue of the recordings on its own local port until Ctrl-C (or until replayed)."""
    grouped = load_replay_lines(files)
    servers: list[ReplayServer] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal  # noqa: PLC0415

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        for index, (venue, lines) in enumerate(grouped.items()):
            if venue not in ADAPTERS:
                log.error("skipping %d frames of unknown venue %r", len(lines), venue)
                continue
            server = ReplayServer(lines, ADAPTERS[venue](symbols=[]), speed=speed,
                                  port=port + index if port else 0)
            await server.start()
            servers.append(server)
            ws_path = urlsplit(ADAPTERS[venue].default_ws_url).path
            print(f"{venue}: {len(lines)} frames; FLUSHWATCH_VENUES__{venue.upper()}__WS_URL={server.ws_url}{ws_path} "
                  f"FLUSHWATCH_VENUES__{venue.upper()}__REST_URL={server.http_url}", flush=True)
        if not servers:
            raise ConfigError("the recordings hold no frames of a known venue")
        # without --exit-when-done, only a signal ends the replay
        await wait_first(stop, [s.done for s in servers] if exit_when_done else [asyncio.Event()])
    finally:
        for server in servers:
            await server.close()
    return 0
