"""Running the real ConnectionDriver in component tests: one task per driver, fast backoff, clean cancel."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator

from flushwatch.metrics import Metrics
from flushwatch.recording import RecordLine
from ingest.backoff import Backoff
from ingest.base import VenueAdapter
from ingest.driver import ConnectionDriver, websockets_connector


async def no_wait(_delay: float) -> None:
    """Injected backoff sleep: the delays are tiny anyway; only yield to the loop."""
    await asyncio.sleep(0)


def fast_driver(adapter: VenueAdapter, out: asyncio.Queue[RecordLine], metrics: Metrics, *, seed: int = 7,
                rotation_timeout_s: float = 2.0) -> ConnectionDriver:
    """A driver for the adapter's single connection plan with millisecond backoff and short timeouts."""
    (plan,) = adapter.ws_connections()
    return ConnectionDriver(
        adapter, plan, out, metrics, Backoff(0.01, 0.05, rng=random.Random(seed)), sleep=no_wait,
        connect=websockets_connector(close_timeout_s=1.0), subscribe_interval_s=0.01,
        rotation_timeout_s=rotation_timeout_s, close_timeout_s=1.0,
    )


@contextlib.asynccontextmanager
async def running(driver: ConnectionDriver) -> AsyncIterator[asyncio.Task[None]]:
    """Run the driver in a task; cancel it on exit."""
    task = asyncio.create_task(driver.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
