"""A producer whose changelog writes can be made slow, or fail, on demand: for checkpoint tests.

The product's :class:`~flushwatch.kafka.Producer`, unchanged, except that while :attr:`GatedProducer.holding`
is true the future returned for a record on the state topic does not resolve when the broker acknowledges
the record, but only when the test calls :meth:`GatedProducer.release` (then with the broker's answer) or
:meth:`GatedProducer.fail`. The record itself is sent at once, as always. Only futures and callbacks are
used, no tasks and no sleeps, so the tests synchronize on conditions only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from flushwatch.kafka import Producer


def _copy(inner: asyncio.Future[Any], outer: asyncio.Future[Any]) -> None:
    if outer.done():
        return
    if inner.cancelled():
        outer.cancel()
    elif inner.exception() is not None:
        outer.set_exception(inner.exception())  # type: ignore[arg-type]
    else:
        outer.set_result(inner.result())


class GatedProducer(Producer):
    """See the module docstring. ``on_alert`` (if set) sees the future of every record sent to
    ``alerts_topic``."""

    def __init__(self, *args: Any, state_topic: str, alerts_topic: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.state_topic = state_topic
        self.alerts_topic = alerts_topic
        self.holding = False
        #: (broker's future, future handed to the caller, record value) of every held state record
        self.held: list[tuple[asyncio.Future[Any], asyncio.Future[Any], bytes]] = []
        self.state_values: list[bytes] = []
        self.on_alert: Callable[[asyncio.Future[Any]], None] | None = None

    async def send(self, topic: str, value: bytes, key: bytes | None = None,
                   headers: list[tuple[str, bytes]] | None = None, timestamp_ms: int | None = None,
                   partition: int | None = None, *, immediate: bool = False) -> asyncio.Future[Any]:
        future = await super().send(topic, value, key, headers, timestamp_ms, partition, immediate=immediate)
        if topic == self.alerts_topic and self.on_alert is not None:
            self.on_alert(future)
        if topic != self.state_topic:
            return future
        self.state_values.append(value)
        if not self.holding:
            return future
        outer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.held.append((future, outer, value))
        return outer

    def release(self) -> None:
        """Stop holding; every held future resolves with the broker's own answer (now or when it comes)."""
        self.holding = False
        for inner, outer, _value in self.held:
            inner.add_done_callback(lambda f, outer=outer: _copy(f, outer))

    def fail(self, exc: BaseException) -> None:
        """Stop holding; every held future fails with ``exc`` (as if the broker never acknowledged)."""
        self.holding = False
        for _inner, outer, _value in self.held:
            if not outer.done():
                outer.set_exception(exc)
