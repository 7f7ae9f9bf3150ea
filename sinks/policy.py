"""Delivery policy pieces: which alerts a target wants, how long to wait between attempts, how fast to send.

Everything that waits takes a :class:`Clock`, so tests run the retry and rate-limit logic with a fake
clock whose ``sleep`` returns at once and records what it was asked to wait; no test sleeps for real.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from flushwatch.events import SEVERITIES, Alert

__all__ = ["AlertFilter", "Clock", "RateLimiter", "RetryPolicy", "SystemClock"]


class Clock(Protocol):
    """Time as the sink service sees it."""

    def monotonic(self) -> float:
        """Seconds on a monotonic clock (intervals, deadlines)."""
        ...

    def time(self) -> float:
        """Wall-clock epoch seconds (signature timestamps)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``."""
        ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()

    def time(self) -> float:
        """``time.time()``."""
        return time.time()

    async def sleep(self, seconds: float) -> None:
        """``asyncio.sleep``."""
        await asyncio.sleep(max(0.0, seconds))


_RANK: dict[str, int] = {name: i for i, name in enumerate(SEVERITIES)}


@dataclass(frozen=True)
class AlertFilter:
    """Types, minimum severity and base assets a target receives; empty sets mean "all"."""

    types: frozenset[str] = frozenset()
    min_severity: str = "info"
    bases: frozenset[str] = frozenset()

    @classmethod
    def of(cls, types: Iterable[str] = (), min_severity: str = "info", bases: Iterable[str] = ()) -> AlertFilter:
        """Build from config lists; bases are compared upper-case."""
        if min_severity not in _RANK:
            raise ValueError(f"unknown severity {min_severity!r}")
        return cls(frozenset(types), min_severity, frozenset(b.upper() for b in bases))

    def matches(self, alert: Alert) -> bool:
        """Whether the alert passes every condition."""
        if self.types and alert.type not in self.types:
            return False
        if _RANK.get(alert.severity, 0) < _RANK[self.min_severity]:
            return False
        return not self.bases or alert.base.upper() in self.bases


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with "equal jitter" (half fixed, half random), never shorter than the
    destination's Retry-After; ``max_attempts`` counts the first attempt."""

    max_attempts: int = 6
    initial_delay_s: float = 0.5
    max_delay_s: float = 60.0
    multiplier: float = 2.0
    max_retry_after_s: float = 300.0

    def delay(self, failed_attempts: int, retry_after: float | None, rng: random.Random) -> float | None:
        """Seconds to wait after ``failed_attempts`` failures, or None when the budget is spent (no more
        attempts, or the destination asks to wait longer than ``max_retry_after_s``)."""
        if failed_attempts >= self.max_attempts:
            return None
        if retry_after is not None and retry_after > self.max_retry_after_s:
            return None
        base = min(self.max_delay_s, self.initial_delay_s * self.multiplier ** (failed_attempts - 1))
        jittered = base / 2 + rng.uniform(0, base / 2)
        return max(jittered, retry_after or 0.0)


@dataclass
class RateLimiter:
    """Token bucket: ``burst`` sends back to back, then ``per_second``. A destination's 429 also blocks
    the bucket until its Retry-After has passed, so the next alert does not hit the limit again."""

    per_second: float | None
    burst: int = 1
    clock: Clock = field(default_factory=SystemClock)
    _tokens: float = field(init=False)
    _last: float | None = field(init=False, default=None)
    _blocked_until: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self._tokens = float(self.burst)

    def block_for(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (a destination said so)."""
        self._blocked_until = max(self._blocked_until, self.clock.monotonic() + seconds)

    async def acquire(self) -> float:
        """Wait for a token; returns the seconds waited."""
        waited = 0.0
        while True:
            now = self.clock.monotonic()
            if now < self._blocked_until:
                pause = self._blocked_until - now
            elif self.per_second is None:
                return waited
            else:
                if self._last is not None:
                    self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.per_second)
                self._last = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return waited
                pause = (1.0 - self._tokens) / self.per_second
            await self.clock.sleep(pause)
            waited += pause
