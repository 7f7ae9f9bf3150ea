"""Topic names (DESIGN.md §2). One place, so a prefix can isolate a tenant or a test run."""

from __future__ import annotations

from dataclasses import dataclass

from flushwatch.events import MarketEvent

__all__ = ["Topics"]

_MARKET_SUFFIX = {
    "liquidation": "liquidations",
    "trade": "trades",
    "open_interest": "open_interest",
    "funding": "funding",
}


@dataclass(frozen=True, slots=True)
class Topics:
    """Every topic flushwatch reads or writes, with the configured prefix applied."""

    prefix: str = ""

    def market(self, event_type: str) -> str:
        """The ``fw.md.*`` topic for an event type (``liquidation`` -> ``fw.md.liquidations``)."""
        return f"{self.prefix}fw.md.{_MARKET_SUFFIX[event_type]}"

    def for_event(self, event: MarketEvent) -> str:
        """The topic an event is produced to."""
        return self.market(event.type)

    @property
    def market_topics(self) -> list[str]:
        """All market-data topics, in a fixed order."""
        return [self.market(t) for t in _MARKET_SUFFIX]

    @property
    def alerts(self) -> str:
        """Alerts, keyed by base asset."""
        return f"{self.prefix}fw.alerts"

    @property
    def dlq(self) -> str:
        """Dead letters: bad input with its raw bytes and the reason in headers."""
        return f"{self.prefix}fw.dlq"

    @property
    def processor_state(self) -> str:
        """Compacted changelog of processor state, keyed ``<group>/<partition>``."""
        return f"{self.prefix}fw.processor_state"

    @property
    def liquidation_clusters(self) -> str:
        """Compacted liquidation-cluster snapshots, keyed by base asset."""
        return f"{self.prefix}fw.liquidation_clusters"

    @property
    def compacted(self) -> list[str]:
        """Topics whose newest value per key is what matters."""
        return [self.processor_state, self.liquidation_clusters]

    @property
    def all(self) -> list[str]:
        """Every topic to create at start-up."""
        return [*self.market_topics, self.alerts, self.dlq, *self.compacted]
