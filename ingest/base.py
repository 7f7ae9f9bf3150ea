"""The venue adapter contract: sans-I/O, so every venue quirk is testable with plain bytes.

An adapter knows a venue's protocol (URLs, subscribe messages, keepalive, side conventions, units) and
turns raw frames into normalized events. It never opens a socket, never sleeps and never reads the clock:
the shared connection driver (:mod:`ingest.driver`) and REST poller (:mod:`ingest.poller`) do the I/O and
pass the receive time in. Adapters may keep state that the protocol needs (last mark price to value open
interest, instrument metadata, de-duplication windows, trade-id gap tracking).

Bad input never raises out of :meth:`VenueAdapter.parse`: it becomes a :class:`Reject` with a bounded
``kind`` label, and the caller counts it and dead-letters the raw bytes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import msgspec

from flushwatch.events import MarketEvent

__all__ = ["ControlAction", "ParseResult", "Reject", "RestPoll", "VenueAdapter", "WsConnectionPlan"]


@dataclass(frozen=True, slots=True)
class Reject:
    """Part of a frame that could not be turned into an event. ``kind`` is a short metric label
    (``malformed_json``, ``bad_number``, ``negative``, ``unknown_symbol``, ``unknown_message``...)."""

    kind: str
    detail: str


class ParseResult(msgspec.Struct):
    """What one frame yielded.

    ``control`` marks protocol messages (subscribe acks, pongs) that carry no market data and are not
    errors. ``duplicates`` counts events dropped because they were already seen (reconnect overlap,
    repeated frames). ``gaps`` counts missing sequence ids detected in this frame (e.g. aggTrade ids).
    ``stream`` is the channel label for metrics (bounded: ``liquidation``, ``trade``, ``mark_price``...).

    A mutable :class:`msgspec.Struct` rather than a dataclass: one is made per frame, and a Struct costs
    a fifth of a dataclass with default factories to create (and can be made from C, see
    :mod:`ingest._binance_speedups`).
    """

    events: list[MarketEvent] = msgspec.field(default_factory=list)
    rejects: list[Reject] = msgspec.field(default_factory=list)
    control: bool = False
    duplicates: int = 0
    gaps: int = 0
    stream: str = "unknown"


@dataclass(frozen=True, slots=True)
class WsConnectionPlan:
    """One websocket connection the driver should hold open: where, and what to send after connecting."""

    name: str
    url: str
    subscribe: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ControlAction:
    """What the driver must do on a frame, beyond queueing it: answer the venue (Deribit's
    ``test_request``, Hyperliquid pings) or replace the connection now because the venue announced a
    disconnect (OKX notice 64008)."""

    replies: tuple[str, ...] = ()
    rotate: bool = False


@dataclass(frozen=True, slots=True)
class RestPoll:
    """A REST request the poller repeats: ``path`` includes the query string; ``weight`` is the venue's
    rate-limit cost of one call."""

    path: str
    interval_s: float
    weight: int = 1


class VenueAdapter(ABC):
    """Protocol knowledge for one venue. Subclasses set the class attributes and implement parsing."""

    #: registry name and the ``venue`` field of every event
    venue: str = ""
    #: default websocket base URL and REST base URL (overridable by config, e.g. for replay)
    default_ws_url: str = ""
    default_rest_url: str = ""
    #: application-level ping the client must send (None when the venue pings us, e.g. Binance)
    app_ping_message: str | None = None
    app_ping_interval_s: float = 20.0
    #: the venue closes connections after this many seconds; the driver rotates a little earlier
    max_connection_age_s: float | None = None
    #: no frame for this long means the connection is dead even if TCP is open
    stale_after_s: float = 60.0
    #: whether this venue's liquidation feed is a sample rather than every liquidation
    liquidations_sampled: bool = False
    #: whether ``venues.<name>.top_n_by_oi`` works (needs one REST call listing every instrument's OI)
    supports_top_n_by_oi: bool = False

    def __init__(self, symbols: list[str], ws_url: str | None = None, rest_url: str | None = None) -> None:
        self.symbols = list(symbols)
        self.ws_url = ws_url or self.default_ws_url
        self.rest_url = rest_url or self.default_rest_url

    @classmethod
    def from_config(cls, cfg: Any) -> VenueAdapter:
        """Build from the venue's config section (``venues.<name>``); venues with more settings override."""
        adapter = cls(list(cfg.symbols), cfg.ws_url, cfg.rest_url)
        adapter.stale_after_s = float(cfg.stale_after_s)
        return adapter

    @abstractmethod
    def ws_connections(self) -> list[WsConnectionPlan]:
        """The connections to hold open and the subscribe messages for each."""

    def startup_requests(self) -> list[str]:
        """REST paths (with query) to fetch once before connecting, e.g. instrument metadata."""
        return []

    def rest_polls(self) -> list[RestPoll]:
        """REST requests to repeat while running, e.g. open interest where there is no stream."""
        return []

    @abstractmethod
    def parse(self, raw: bytes | str, recv_ts_ms: int) -> ParseResult:
        """Turn one websocket frame into events. Never raises on bad input."""

    def parse_rest(self, endpoint: str, body: bytes | str, recv_ts_ms: int) -> ParseResult:
        """Turn one REST response (metadata or a poll) into events and/or adapter state."""
        return ParseResult(rejects=[Reject("unknown_endpoint", endpoint[:120])])

    def reset_connection_state(self, connection: str) -> None:
        """Called by the driver when a connection is replaced; drop per-connection protocol state."""

    def control(self, frame: str) -> ControlAction | None:
        """Called by the driver for every frame before it is queued; must be cheap (a substring test
        first). Return None for ordinary frames."""
        return None

    def replay_replies(self, client_message: str) -> list[str]:
        """The replay server's side of the protocol: what the venue would answer to a client message
        (subscribe acks, pongs). Lets ``flushwatch replay`` speak each venue's protocol."""
        return []
