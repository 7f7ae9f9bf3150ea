"""Shared fixtures: the real embedded Kafka-protocol broker, started once per test session."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from flushwatch.broker import EmbeddedBroker

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """A Tansu broker with memory storage on a free loopback port, for every Kafka test."""
    with EmbeddedBroker() as running:
        yield running


@pytest.fixture
def topic_prefix() -> str:
    """A unique prefix so tests sharing the session broker never see each other's records."""
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture(autouse=True)
async def _no_leaked_tasks() -> None:  # type: ignore[misc]
    """Fail a test that leaves asyncio tasks running behind it."""
    yield
    current = asyncio.current_task()
    leaked = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    # give cancelled tasks one loop turn to finish
    if leaked:
        await asyncio.sleep(0)
        leaked = [t for t in leaked if not t.done()]
    assert not leaked, f"tasks leaked: {leaked}"
