"""Jittered exponential backoff as a small injectable policy.

Why a policy object rather than a generator (as in ``websockets.client.backoff``): the connection driver
needs to *reset* the sequence after a connection proved stable, and tests need to ask "what would attempt
7 wait?" without consuming a generator. ``delay(attempt)`` is a pure function of the attempt number and
the random source, so a seeded :class:`random.Random` makes every delay reproducible.

Jitter is not optional: after a venue-wide outage every client reconnects at once, and venues punish that
(Binance bans IPs that are repeatedly disconnected, Bybit caps connections per 5 minutes; exchanges.md
§11 item 13). Spreading the retries is what keeps a fleet of ingesters from stampeding.

The policy never gives up: a market-data feed that stops retrying is a silent outage. The cap bounds the
wait instead.
"""

from __future__ import annotations

import random
from typing import Literal, Protocol

from flushwatch.config import ReconnectConfig

__all__ = ["Backoff", "BackoffPolicy", "Jitter"]

Jitter = Literal["full", "equal", "none"]


class BackoffPolicy(Protocol):
    """Anything that maps a 0-based failed-attempt number to a delay in seconds."""

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0 = the first retry)."""
        ...


class Backoff:
    """Exponential backoff with jitter, capped at ``max_delay_s``.

    ``ceiling(n) = min(max_delay_s, initial_delay_s * multiplier ** n)``; the delay is drawn from

    * ``"equal"`` (default): ``[ceiling / 2, ceiling]`` — spread out, yet never shorter than half the
      ceiling, so a flapping venue is not hammered with near-zero retries;
    * ``"full"``: ``[0, ceiling]`` — the widest spread (AWS "full jitter"), for clients where a burst of
      quick retries is harmless;
    * ``"none"``: exactly the ceiling (deterministic, for tests and tools).
    """

    def __init__(
        self,
        initial_delay_s: float = 0.5,
        max_delay_s: float = 30.0,
        multiplier: float = 2.0,
        *,
        jitter: Jitter = "equal",
        rng: random.Random | None = None,
    ) -> None:
        if initial_delay_s <= 0 or max_delay_s <= 0:
            raise ValueError("backoff delays must be positive")
        if multiplier < 1.0:
            raise ValueError("backoff multiplier must be >= 1 (the delay must not shrink)")
        if jitter not in ("full", "equal", "none"):
            raise ValueError(f"unknown jitter {jitter!r}")
        self.initial_delay_s = initial_delay_s
        self.max_delay_s = max_delay_s
        self.multiplier = multiplier
        self.jitter: Jitter = jitter
        # Jitter only spreads reconnects; it is not a security mechanism, so the default PRNG is right.
        self._rng = rng if rng is not None else random.Random()  # noqa: S311

    @classmethod
    def from_config(
        cls, config: ReconnectConfig, *, jitter: Jitter = "equal", rng: random.Random | None = None
    ) -> Backoff:
        """Build the policy from the ``ingest.reconnect`` config section."""
        return cls(config.initial_delay_s, config.max_delay_s, config.multiplier, jitter=jitter, rng=rng)

    def ceiling(self, attempt: int) -> float:
        """The un-jittered delay for ``attempt``: exponential growth, capped (and overflow-safe)."""
        attempt = max(0, attempt)
        try:
            raw = self.initial_delay_s * self.multiplier**attempt
        except OverflowError:  # float ** huge int overflows long before the cap matters
            return self.max_delay_s
        return min(self.max_delay_s, raw)

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry ``attempt`` (0-based); never more than ``max_delay_s``."""
        ceiling = self.ceiling(attempt)
        if self.jitter == "none":
            return ceiling
        if self.jitter == "full":
            return self._rng.uniform(0.0, ceiling)
        half = ceiling / 2.0
        return half + self._rng.uniform(0.0, half)
