"""The normalized event and alert model shared by ingest, processors and sinks.

These types are the public contract of flushwatch (DESIGN.md §4/§5): every venue adapter produces them,
every detector consumes them, and every downstream service reads their JSON form from Kafka. They are
frozen so they cannot be mutated by a detector behind another detector's back. Market events are
:class:`msgspec.Struct` types rather than dataclasses because they are created once per venue message and
once per Kafka record: a frozen dataclass's generated ``__init__`` costs ~1.8 µs per trade, a frozen Struct
~0.3 µs, and ``gc=False`` keeps millions of them (which hold only str, int, bool and Decimal, so they
cannot form reference cycles) out of the cyclic garbage collector's work. Each carries its ``type`` as a
msgspec tag, so a list of mixed events round-trips through msgspec's binary encoders (the parallel
backtest ships events between processes that way); the JSON wire form stays :mod:`flushwatch.codec`'s.

Money stays exact: prices, sizes and notionals are :class:`~decimal.Decimal` parsed from the venue's own
text, never floats. Detectors may convert to float internally where they document it.

Bump :data:`SCHEMA_VERSION` only for an incompatible change; adding an optional field is compatible and
consumers must ignore fields they do not know.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar, Literal

import msgspec

SCHEMA_VERSION = 1

LiquidatedSide = Literal["long", "short"]
TakerSide = Literal["buy", "sell"]
Severity = Literal["info", "warning", "critical"]

SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")


class MarketEvent(msgspec.Struct, frozen=True, kw_only=True, gc=False, tag_field="type"):
    """Fields every market-data event carries.

    ``ts`` is the exchange's event time and ``recv_ts`` our receive time, both epoch milliseconds; keeping
    both lets detectors run on event time while operators can still see feed latency.
    """

    type: ClassVar[str] = "event"

    venue: str
    symbol: str
    instrument: str
    base: str
    ts: int
    recv_ts: int


class Liquidation(MarketEvent, frozen=True, kw_only=True, gc=False, tag="liquidation"):
    """A forced close. ``side`` is the position that was liquidated, whatever the venue's convention.

    ``sampled`` is true when the venue's feed is known to publish only a sample (Binance pushes at most one
    liquidation per symbol per second), so sums over these events are lower bounds.
    """

    type: ClassVar[str] = "liquidation"

    side: LiquidatedSide
    price: Decimal
    qty: Decimal
    notional_usd: Decimal
    order_id: str | None = None
    sampled: bool = False


class Trade(MarketEvent, frozen=True, kw_only=True, gc=False, tag="trade"):
    """A public trade; ``side`` is the taker's side, which is what moves price in a flush."""

    type: ClassVar[str] = "trade"

    side: TakerSide
    price: Decimal
    qty: Decimal
    notional_usd: Decimal
    trade_id: str


class OpenInterest(MarketEvent, frozen=True, kw_only=True, gc=False, tag="open_interest"):
    """Open interest of one instrument. ``oi_usd`` is None until a price is known to value it."""

    type: ClassVar[str] = "open_interest"

    oi_qty: Decimal
    oi_usd: Decimal | None = None


class Funding(MarketEvent, frozen=True, kw_only=True, gc=False, tag="funding"):
    """Current funding rate as a fraction per ``interval_h`` hours (not percent), with mark and index."""

    type: ClassVar[str] = "funding"

    rate: Decimal
    interval_h: int
    next_funding_ts: int | None = None
    mark_price: Decimal | None = None
    index_price: Decimal | None = None


EVENT_TYPES: dict[str, type[MarketEvent]] = {
    cls.type: cls for cls in (Liquidation, Trade, OpenInterest, Funding)
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """A detector's finding, keyed by base asset on ``fw.alerts``.

    ``alert_id`` is deterministic per episode and stage, so a replay, a restart or a second instance never
    produces a different id for the same finding; sinks de-duplicate on it.
    """

    alert_id: str
    type: str
    severity: Severity
    base: str
    venues: tuple[str, ...]
    ts: int
    emitted_ts: int
    window_start: int
    window_end: int
    metrics: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    schema_version: int = SCHEMA_VERSION
