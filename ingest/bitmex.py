"""BitMEX perpetuals and futures: liquidation orders, trades and the instrument table (OI, funding, mark).

Protocol facts are from the project's venue reference, exchanges.md §4 (read from bitmex.com/app/wsAPI,
GitHub ``BitMEX/api-connectors`` swagger.json v1.2.0 and official-ws README, api-connectors issue #241) and
the recorded payloads below. The pitfalls handled here are its §11 items 1, 2, 3, 5, 6, 7 and 11.

Tables, on ``wss://ws.bitmex.com/realtime``; every message is ``{"table","action","data":[rows]}`` with
``action`` ``partial`` (the full image on (re)subscribe, with ``keys``/``types``), ``insert``, ``update``
(only the changed columns, matched on the table's keys) or ``delete``::

    liquidation:<SYM>  {"table":"liquidation","action":"insert","data":[{"orderID":"8c808f22-254c-49d9-b24a-
                        a99329b9f6d4","symbol":"XBTUSD","side":"Buy","price":88303.7,"leavesQty":50900}]}
                       {"table":"liquidation","action":"update","data":[{"orderID":"8c808f22-…",
                        "symbol":"XBTUSD","leavesQty":50700}]}    … then "action":"delete"
    trade:<SYM>        {"table":"trade","action":"insert","data":[{"timestamp":"2021-07-22T22:36:11.685Z",
                        "symbol":"XBTUSD","side":"Buy","size":100,"price":32180.5,"tickDirection":"PlusTick",
                        "trdMatchID":"6e70bebe-235e-08a6-d11b-e1042bf1f2ed","grossValue":310747,
                        "homeNotional":0.00310747,"foreignNotional":100}]}
    instrument:<SYM>   partial: the full instrument row (as REST below); then, e.g. (illustrative values):
                       {"table":"instrument","action":"update","data":[{"symbol":"XBTUSD",
                        "openInterest":574264700,"openValue":1784271932000,"timestamp":"2021-07-22T22:36:10Z"}]}
    subscribe          {"op":"subscribe","args":["liquidation:XBTUSD","trade:XBTUSD","instrument:XBTUSD"]}
    ack / welcome      {"success":true,"subscribe":"trade:XBTUSD","request":{"op":"subscribe","args":[…]}}
                       {"info":"Welcome to the BitMEX Realtime API.",…}
    error              {"status":400,"error":"Unknown table: foo","request":{…}}
    keepalive          client text ``ping`` → server text ``pong``

REST (``https://www.bitmex.com``), once at start-up::

    GET /api/v1/instrument/active  [{"symbol":"XBTUSD","underlying":"XBT","quoteCurrency":"USD",
                                     "typ":"FFWCSX","expiry":null,"multiplier":-100000000,
                                     "underlyingToSettleMultiplier":-100000000,"quoteToSettleMultiplier":null,
                                     "underlyingToPositionMultiplier":null,"isQuanto":false,"isInverse":true,
                                     "fundingInterval":"2000-01-01T08:00:00.000Z","fundingRate":0.0001,
                                     "fundingTimestamp":"2021-07-23T04:00:00.000Z","openInterest":574264600,
                                     "openValue":1784268825430,"fairPrice":32184.89,"markPrice":32184.89,
                                     "indicativeSettlePrice":32182.72,"timestamp":"2021-07-22T22:36:05.000Z",…},…]

Conventions, and why:

* **Liquidations are open liquidation ORDERS.** BitMEX support (quoted in api-connectors #241, checked):
  "The liquidation order is for the full order quantity at the bankruptcy price, then it is aggressed using
  the insurance fund. If you listen to liquidation channel via WebSocket, you will see all of the
  liquidation orders - even if they are immediately filled." So one ``insert`` = one liquidation, sized by
  its ``leavesQty`` at insert and priced at the order's (bankruptcy) price; ``update`` (``leavesQty``
  shrinking as it fills) and ``delete`` (gone) are not new liquidations. Rows carry no timestamp, so
  ``ts = recv_ts`` (§11.5).
* **Partial = already known.** The ``partial`` sent on every (re)subscribe lists the orders open right now.
  Its rows are remembered (so a re-sent insert of the same ``orderID`` is a duplicate) but never emitted:
  having no timestamp, they could only be stamped "now", and on a cold start they may be minutes old. The
  price of this choice: a liquidation inserted *and* still open across a reconnect gap is not counted.
* **Completeness.** Since every liquidation order is inserted on the feed, events are ``sampled=False``
  (unlike Binance). Sums are still only as complete as the connection (a reconnect gap loses inserts).
* **Side.** ``side`` is the liquidation *order's* side: ``Sell`` closes a long ⇒ ``long`` liquidated,
  ``Buy`` ⇒ ``short`` (exchanges.md §4.2, §10; cryptofeed issue #985). Trade ``side`` is the taker side.
* **Units: sizes are contracts, converted with the instrument's own multipliers** (§11.3). Metadata comes
  from the start-up REST ``/api/v1/instrument/active`` and from the ``instrument`` table (partial + sparse
  updates, merged per symbol). A row of a symbol without metadata is ``Reject("unknown_symbol")``. With
  ``q`` contracts at price ``p`` (quote per base unit):

  ===================  ============================================  ===============================================
  contract (flags)     base quantity                                 USD notional
  ===================  ============================================  ===============================================
  inverse (isInverse)  usd / p                                       q × |multiplier| / |underlyingToSettleMultiplier|
                                                                     (XBTUSD: -1e8 / -1e8, so exactly q)
  quanto (isQuanto)    q × multiplier / quoteToSettleMultiplier      q × multiplier × p / quoteToSettleMultiplier
  linear (neither)     q / underlyingToPositionMultiplier            q × p / underlyingToPositionMultiplier
                       (without it: as quanto)                       (without it: as quanto)
  ===================  ============================================  ===============================================

  Open interest uses the same formulas with ``q = openInterest`` and ``p = markPrice``.

  Checked on recorded rows: XBTUSD trade of 100 contracts at 32180.5 has ``foreignNotional`` 100 and
  ``homeNotional`` 0.00310747 (= 100 / 32180.5 in satoshis); a 2021 UNIUSDT quanto trade of 52 contracts has
  ``grossValue`` 899444 = 52 × 17.297 × 1000 (multiplier 1000) and ``homeNotional`` 16.73101673101673 =
  52 × 1000 / 3108 exactly (``quoteToSettleMultiplier`` 3108 ≈ satoshis per USD, which moves with the XBT
  price and arrives in ``instrument`` updates); the ETHUSD row's 24 h volume (3293153 contracts →
  105785.67 ETH) matches 100 / 3108 ETH per contract to 0.2 %; a 2024 JTOUSDT linear row has
  ``openInterest`` 6780, ``underlyingToPositionMultiplier`` 1, ``markPrice`` 2.46561 and ``openValue``
  16716835800 µUSDT = 6780 × 2.46561 USDT; ccxt's XBTUSDT row has ``underlyingToPositionMultiplier``
  1000000 (1 contract = 0.000001 XBT). Quotients are rounded to 28 significant digits (the inverse base
  quantity 100 / 32180.5 has no finite decimal form); products are exact. The notional stays in the quote
  currency (USD, USDT or USDC, taken as USD, §11.16); instruments quoted in anything else (``XBTETH``,
  the old ``TRXZ19`` quoted in XBT, ``XBTEUR``) are refused as ``unknown_symbol``.
* **Trades.** When the row carries ``homeNotional`` (base units) and ``foreignNotional`` (quote units) those
  venue numbers are used as they are, else the formulas above. Index symbols (``.BXBT``) print zero-size
  trades and are skipped. Trades are counted on ``insert``; a ``partial`` only seeds the de-duplication.
* **Instrument table.** ``openInterest`` (contracts) → :class:`~flushwatch.events.OpenInterest` by the
  formulas above at ``markPrice``; ``openValue`` (settlement minor units, satoshis for XBt) is not used (it
  moves with the mark, not with positions). Funding: ``fundingRate`` is the rate of the current period,
  paid at ``fundingTimestamp``; ``fundingInterval`` is a timespan written as an offset from 2000-01-01, so
  ``"2000-01-01T08:00:00.000Z"`` is 8 h. ``mark_price`` is ``markPrice``; ``index_price`` is
  ``indicativeSettlePrice``, which for a perpetual is the underlying index (32182.72 vs mark 32184.89 in the
  XBTUSD row), whereas ``fairPrice`` is index × (1 + fair basis) and equals the mark under
  ``markMethod: FairPrice`` (32184.89 = 32184.89), so it is not an index. An OpenInterest is emitted when
  ``openInterest`` arrives (updates carry only changed columns, so that means it changed), or at most every
  :data:`OI_REVALUE_INTERVAL_MS` when only its valuation moved with the mark; a Funding when rate, interval
  or next funding time arrive, on a partial, or at most every :data:`FUNDING_REFRESH_INTERVAL_MS` to refresh
  mark and index. Dated futures (no ``fundingRate``) emit open interest only.
* **Symbols.** ``underlying`` ``XBT`` is normalized to ``BTC`` so BitMEX lines up with the other venues:
  XBTUSD → BTC-USD-PERP, ETHUSD → ETH-USD-PERP, SOLUSDT → SOL-USDT-PERP, a future with ``expiry``
  2024-12-27 → BTC-USD-20241227.
* **Duplicates** (§11.7): liquidations by ``orderID``, trades by ``trdMatchID``, in bounded LRUs that
  survive :meth:`BitmexAdapter.reset_connection_state` (the re-subscribe's partial must meet them).
* **Keepalive** (§11.11): the text ``ping`` every :data:`APP_PING_INTERVAL_S` (30 s, as the official-ws
  README's example), or every ``stale_after_s / 2`` if that is shorter, so a quiet connection always gets a
  ``pong`` before the staleness watchdog fires. Topics are sent at most :data:`MAX_ARGS_PER_SUBSCRIBE` per
  message (cryptofeed's chunk size; BitMEX documents no limit). [verify] §4.1: connection opening was
  limited to ~20 per hour (2017 blog post); the shared driver's backoff is what protects us.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal, DecimalException, DivisionByZero, InvalidOperation, Overflow
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import orjson

from flushwatch.config import BitmexConfig
from flushwatch.errors import CodecError
from flushwatch.events import Funding, LiquidatedSide, Liquidation, OpenInterest, TakerSide, Trade
from ingest.base import ParseResult, Reject, VenueAdapter, WsConnectionPlan
from ingest.parsing import (
    EXACT,
    Emitted,
    already_seen,
    endpoint_reject,
    internal_reject,
    json_object,
    load_json,
    parse_frame,
    parse_number,
    positive,
    reject,
    remember,
)
from ingest.subscribe import chunks

__all__ = ["BitmexAdapter", "BitmexContract", "bitmex_contract"]

_DEFAULTS: Final = BitmexConfig.model_validate({})

#: an ``instrument`` partial of every instrument is ~1 MiB; anything far above is not BitMEX
MAX_FRAME_BYTES: Final = 4 * 1024 * 1024
#: ``/api/v1/instrument/active`` is ~1 MiB with all columns
MAX_REST_BYTES: Final = 32 * 1024 * 1024
#: topics per subscribe message (cryptofeed's chunk size)
MAX_ARGS_PER_SUBSCRIBE: Final = 10
APP_PING_INTERVAL_S: Final = 30.0
#: re-emit open interest whose valuation moved with the mark at most this often
OI_REVALUE_INTERVAL_MS: Final = 10_000
#: re-emit an unchanged funding rate (with fresh mark and index) at most this often
FUNDING_REFRESH_INTERVAL_MS: Final = 60_000
LIQUIDATION_DEDUPE_CAPACITY: Final = 10_000
TRADE_DEDUPE_CAPACITY: Final = 50_000
#: instruments kept; BitMEX lists a few hundred (REST) and only subscribed ones arrive on the socket
MAX_INSTRUMENTS: Final = 10_000
INSTRUMENTS_PATH: Final = "/api/v1/instrument/active"
TABLES: Final = ("liquidation", "trade", "instrument")
#: quote currencies whose notional is taken as USD (§11.16)
USD_QUOTES: Final = frozenset({"USD", "USDT", "USDC"})
#: BitMEX's asset codes that other venues spell differently
ASSET_ALIASES: Final[Mapping[str, str]] = {"XBT": "BTC"}

_ACTIONS: Final = frozenset({"partial", "insert", "update", "delete"})
_MAX_ID_CHARS: Final = 64
_MAX_SYMBOL_CHARS: Final = 40
#: the first instant of year 10000: ``datetime`` cannot go further, and neither can BitMEX
_MAX_TS_MS: Final = 253_402_300_800_000
_MAX_FUNDING_INTERVAL_H: Final = 24 * 7
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
#: BitMEX writes timespans as an offset from this instant
_TIMESPAN_ORIGIN: Final = datetime(2000, 1, 1, tzinfo=UTC)
#: quotients have no exact form in general (100 / 32180.5); 28 significant digits, ties to even
_QUOTIENT: Final = Context(prec=28, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow])

ContractKind = Literal["inverse", "quanto", "linear"]

_META_FIELDS: Final = frozenset({
    "underlying", "rootSymbol", "quoteCurrency", "typ", "expiry", "isInverse", "isQuanto", "multiplier",
    "underlyingToPositionMultiplier", "underlyingToSettleMultiplier", "quoteToSettleMultiplier",
})
_FUNDING_FIELDS: Final = frozenset({"fundingRate", "fundingInterval", "fundingTimestamp"})
_PRICE_FIELDS: Final = frozenset({"markPrice", "indicativeSettlePrice"})
_OI_FIELDS: Final = frozenset({"openInterest", "markPrice"})


def _div(a: Decimal, b: Decimal) -> Decimal:
    return _QUOTIENT.divide(a, b)


def _text(value: object, name: str, limit: int = _MAX_ID_CHARS) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise CodecError("bad_field", f"{name}: expected a short non-empty string, got {value!r:.40}")
    return value


def _when(value: object, name: str) -> datetime:
    """An ISO-8601 string with a zone (BitMEX writes ``2021-07-22T22:36:11.685Z``)."""
    if not isinstance(value, str) or not 0 < len(value) <= 40:
        raise CodecError("bad_field", f"{name}: expected an ISO-8601 time, got {value!r:.40}")
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise CodecError("bad_field", f"{name}: {value!r:.40} is not an ISO-8601 time") from None
    if when.tzinfo is None:
        raise CodecError("bad_field", f"{name}: {value!r:.40} has no time zone")
    return when


def iso_ms(value: object, name: str) -> int:
    """Epoch milliseconds of a BitMEX timestamp, exactly (no float on the way)."""
    ms = (_when(value, name) - _EPOCH) // timedelta(milliseconds=1)
    if not 0 < ms < _MAX_TS_MS:
        raise CodecError("bad_field", f"{name}: {value!r:.40} is out of range")
    return ms


def timespan_hours(value: object, name: str) -> int:
    """BitMEX timespans are offsets from 2000-01-01: ``"2000-01-01T08:00:00.000Z"`` → 8."""
    hours, rest = divmod(_when(value, name) - _TIMESPAN_ORIGIN, timedelta(hours=1))
    if rest or not 0 < hours <= _MAX_FUNDING_INTERVAL_H:
        raise CodecError("bad_field", f"{name}: {value!r:.40} is not a whole number of hours")
    return hours


@dataclass(frozen=True, slots=True)
class BitmexContract:
    """How to read one BitMEX instrument's sizes; see the module docstring's formula table."""

    symbol: str
    base: str
    quote: str
    instrument: str
    kind: ContractKind
    multiplier: Decimal | None = None
    underlying_to_position: Decimal | None = None
    underlying_to_settle: Decimal | None = None
    quote_to_settle: Decimal | None = None

    def usd(self, contracts: Decimal, price: Decimal | None) -> Decimal | None:
        """Notional in the quote currency; None when it needs a price and none is known."""
        if self.kind == "inverse":
            assert self.multiplier is not None and self.underlying_to_settle is not None
            ratio = abs(self.multiplier)
            if ratio == abs(self.underlying_to_settle):  # XBTUSD: one contract is one USD, exactly
                return contracts
            return _div(EXACT.multiply(contracts, ratio), abs(self.underlying_to_settle))
        if price is None:
            return None
        if self.kind == "linear" and self.underlying_to_position is not None:
            return _div(EXACT.multiply(contracts, price), self.underlying_to_position)
        assert self.multiplier is not None and self.quote_to_settle is not None
        return _div(EXACT.multiply(EXACT.multiply(contracts, self.multiplier), price), self.quote_to_settle)

    def base_qty(self, contracts: Decimal, price: Decimal | None) -> Decimal | None:
        """Quantity in base units; None when it needs a price (inverse) and none is known."""
        if self.kind == "inverse":
            usd = self.usd(contracts, price)
            return None if usd is None or price is None else _div(usd, price)
        if self.kind == "linear" and self.underlying_to_position is not None:
            return _div(contracts, self.underlying_to_position)
        assert self.multiplier is not None and self.quote_to_settle is not None
        return _div(EXACT.multiply(contracts, self.multiplier), self.quote_to_settle)


def _expiry_text(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, tz=UTC).strftime("%Y%m%d")


def bitmex_contract(symbol: str, fields: Mapping[str, Any]) -> BitmexContract:
    """Build the contract of ``symbol`` from its merged instrument columns (validated values); raises
    ``CodecError("unknown_symbol")`` when the metadata is missing or the instrument cannot be valued in USD."""
    underlying = fields.get("underlying") or fields.get("rootSymbol")
    quote = fields.get("quoteCurrency")
    if not underlying or not quote:
        raise CodecError("unknown_symbol", f"{symbol}: no instrument metadata (underlying, quoteCurrency)")
    if quote not in USD_QUOTES:
        raise CodecError("unknown_symbol", f"{symbol}: quoted in {quote}, not valued in USD")
    base = ASSET_ALIASES.get(underlying, underlying)
    expiry = fields.get("expiry")
    instrument = f"{base}-{quote}-{'PERP' if expiry is None else _expiry_text(expiry)}"
    multiplier, u2p = fields.get("multiplier"), fields.get("underlyingToPositionMultiplier")
    u2s, q2s = fields.get("underlyingToSettleMultiplier"), fields.get("quoteToSettleMultiplier")
    kind: ContractKind
    if fields.get("isInverse") is True:
        kind = "inverse"
        if not multiplier or not u2s:
            raise CodecError("unknown_symbol", f"{symbol}: inverse without multiplier/underlyingToSettleMultiplier")
    elif fields.get("isQuanto") is True:
        kind = "quanto"
        if not multiplier or not q2s:
            raise CodecError("unknown_symbol", f"{symbol}: quanto without multiplier/quoteToSettleMultiplier")
    else:
        kind = "linear"
        if not u2p and not (multiplier and q2s):
            raise CodecError("unknown_symbol", f"{symbol}: linear without underlyingToPositionMultiplier")
    return BitmexContract(symbol=symbol, base=base, quote=quote, instrument=instrument, kind=kind,
                          multiplier=multiplier or None, underlying_to_position=u2p or None,
                          underlying_to_settle=u2s or None, quote_to_settle=q2s or None)


def _optional_text(value: object, name: str) -> str | None:
    return None if value is None or value == "" else _text(value, name, _MAX_SYMBOL_CHARS)


def _optional_bool(value: object, name: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise CodecError("bad_field", f"{name}: expected a boolean, got {value!r:.40}")


def _optional_signed(value: object, name: str) -> Decimal | None:
    return None if value is None else parse_number(value, name, allow_negative=True)


def _optional_positive(value: object, name: str) -> Decimal | None:
    """Multipliers and prices: absent, null or zero means unknown, not bad."""
    if value is None:
        return None
    return parse_number(value, name) or None


def _optional_count(value: object, name: str) -> Decimal | None:
    return None if value is None else parse_number(value, name)


def _optional_ms(value: object, name: str) -> int | None:
    return None if value is None else iso_ms(value, name)


def _optional_hours(value: object, name: str) -> int | None:
    return None if value is None else timespan_hours(value, name)


_FIELD_PARSERS: Final[Mapping[str, Callable[[object, str], Any]]] = {
    "underlying": _optional_text,
    "rootSymbol": _optional_text,
    "quoteCurrency": _optional_text,
    "typ": _optional_text,
    "expiry": _optional_ms,
    "isInverse": _optional_bool,
    "isQuanto": _optional_bool,
    "multiplier": _optional_signed,
    "underlyingToSettleMultiplier": _optional_signed,
    "underlyingToPositionMultiplier": _optional_positive,
    "quoteToSettleMultiplier": _optional_positive,
    "markPrice": _optional_positive,
    "indicativeSettlePrice": _optional_positive,
    "fundingRate": _optional_signed,
    "fundingInterval": _optional_hours,
    "fundingTimestamp": _optional_ms,
    "openInterest": _optional_count,
    "timestamp": _optional_ms,
}


class BitmexAdapter(VenueAdapter):
    """BitMEX protocol knowledge; see the module docstring for payloads, formulas and conventions.

    State kept across frames and reconnects: the merged instrument columns per symbol (metadata, mark,
    funding, open interest), the contract built from them, the liquidation-order and trade de-duplication
    windows, and what was last emitted per symbol.
    """

    venue = "bitmex"
    default_ws_url = "wss://ws.bitmex.com/realtime"
    default_rest_url = "https://www.bitmex.com"
    app_ping_message = "ping"
    app_ping_interval_s = APP_PING_INTERVAL_S
    max_connection_age_s = None
    stale_after_s = _DEFAULTS.stale_after_s
    liquidations_sampled = False

    def __init__(
        self,
        symbols: Iterable[str],
        ws_url: str | None = None,
        rest_url: str | None = None,
        *,
        stale_after_s: float = _DEFAULTS.stale_after_s,
        ping_interval_s: float = APP_PING_INTERVAL_S,
        liquidation_dedupe_capacity: int = LIQUIDATION_DEDUPE_CAPACITY,
        trade_dedupe_capacity: int = TRADE_DEDUPE_CAPACITY,
    ) -> None:
        unique = dict.fromkeys(s.strip().upper() for s in symbols if s.strip())
        super().__init__(list(unique), ws_url, rest_url)
        self.stale_after_s = stale_after_s
        self.app_ping_interval_s = min(ping_interval_s, stale_after_s / 2)
        self._liquidation_capacity = max(1, liquidation_dedupe_capacity)
        self._trade_capacity = max(1, trade_dedupe_capacity)
        self._fields: dict[str, dict[str, Any]] = {}
        self._contracts: dict[str, BitmexContract | CodecError] = {}
        self._emitted: dict[str, Emitted] = {}
        self._orders_seen: OrderedDict[str, None] = OrderedDict()
        self._trades_seen: OrderedDict[str, None] = OrderedDict()

    @classmethod
    def from_config(cls, cfg: BitmexConfig) -> BitmexAdapter:
        """Build from the ``venues.bitmex`` config section (what the registry calls)."""
        return cls(cfg.symbols, cfg.ws_url, cfg.rest_url, stale_after_s=cfg.stale_after_s)

    # ------------------------------------------------------------------ connection plan

    def topics(self) -> list[str]:
        """Every topic subscribed, a symbol's three together."""
        return [f"{table}:{symbol}" for symbol in self.symbols for table in TABLES]

    def ws_connections(self) -> list[WsConnectionPlan]:
        """One connection; topics in messages of at most :data:`MAX_ARGS_PER_SUBSCRIBE`."""
        topics = self.topics()
        messages = tuple(
            orjson.dumps({"op": "subscribe", "args": chunk}).decode()
            for chunk in chunks(topics, MAX_ARGS_PER_SUBSCRIBE)
        )
        return [WsConnectionPlan(name=f"{self.venue}-0", url=self.ws_url, subscribe=messages)]

    def startup_requests(self) -> list[str]:
        """Instrument metadata (multipliers) for every active instrument, before the first frame."""
        return [INSTRUMENTS_PATH]

    def reset_connection_state(self, connection: str) -> None:
        """Nothing to drop: the re-subscribe's partial must meet the de-duplication windows, and instrument
        state is refreshed by that partial anyway."""

    # ------------------------------------------------------------------ state accessors

    def contract(self, symbol: str) -> BitmexContract | None:
        """The contract of a symbol once its metadata is known and valid, else None."""
        entry = self._contracts.get(symbol)
        return entry if isinstance(entry, BitmexContract) else None

    def instrument_fields(self, symbol: str) -> Mapping[str, Any]:
        """The merged, validated instrument columns of a symbol (empty when unknown)."""
        return self._fields.get(symbol, {})

    # ------------------------------------------------------------------ websocket frames

    def parse(self, raw: bytes | str, recv_ts_ms: int) -> ParseResult:
        """One websocket frame → events. Never raises: bad input becomes a :class:`Reject`, and one bad
        row of a table message costs only that row."""
        return parse_frame(self._parse_frame, raw, recv_ts_ms)

    def _parse_frame(self, raw: bytes | str, recv_ts: int, result: ParseResult) -> None:
        if len(raw) <= 8 and raw.strip() in ("pong", b"pong"):
            result.control, result.stream = True, "control"
            return
        obj = json_object(load_json(raw, MAX_FRAME_BYTES), "frame")
        table = obj.get("table")
        if table is None:
            if "success" in obj or "info" in obj or "error" in obj:
                result.control, result.stream = True, "control"
                if "error" in obj or obj.get("success") is False:
                    raise CodecError("venue_error", f"status={obj.get('status')!r:.10} {obj.get('error')!r:.160}")
                return
            raise CodecError("unknown_message", f"keys={sorted(obj)[:6]!r:.80}")
        action, data = obj.get("action"), obj.get("data")
        if not isinstance(action, str) or action not in _ACTIONS:
            raise CodecError("bad_field", f"action: {action!r:.40}")
        if not isinstance(data, list):
            raise CodecError("bad_field", f"data: expected an array, got {type(data).__name__}")
        handler: Callable[[str, dict[str, Any], int, ParseResult], None]
        if table == "liquidation":
            result.stream, handler = "liquidation", self._liquidation
        elif table == "trade":
            result.stream, handler = "trade", self._trade
        elif table == "instrument":
            result.stream, handler = "instrument", self._instrument_row
        else:
            raise CodecError("unknown_message", f"table={table!r:.40}")
        for row in data:
            try:
                handler(action, json_object(row, "data[]"), recv_ts, result)
            except (CodecError, DecimalException) as exc:
                result.rejects.append(reject(exc))

    def _contract(self, value: object) -> tuple[str, BitmexContract]:
        symbol = _text(value, "symbol", _MAX_SYMBOL_CHARS)
        entry = self._contracts.get(symbol)
        if entry is None:
            raise CodecError("unknown_symbol", f"{symbol}: no instrument metadata yet")
        if isinstance(entry, CodecError):
            raise entry
        return symbol, entry

    def _liquidation(self, action: str, row: dict[str, Any], recv_ts: int, result: ParseResult) -> None:
        order_id = _text(row.get("orderID"), "orderID")
        seen = self._orders_seen
        if action == "partial":
            remember(seen, order_id, self._liquidation_capacity)  # open before we looked: known, not new
            return
        if action != "insert":
            return  # update (leavesQty shrinking as it fills) or delete: the same liquidation
        if already_seen(seen, order_id):
            result.duplicates += 1
            return
        symbol, contract = self._contract(row.get("symbol"))
        order_side = row.get("side")
        side: LiquidatedSide
        if order_side == "Sell":
            side = "long"
        elif order_side == "Buy":
            side = "short"
        else:
            raise CodecError("bad_field", f"side: expected Buy or Sell, got {order_side!r:.40}")
        price = positive(row.get("price"), "price")
        contracts = positive(row.get("leavesQty"), "leavesQty")
        qty, usd = contract.base_qty(contracts, price), contract.usd(contracts, price)
        assert qty is not None and usd is not None  # a price is given
        event = Liquidation(
            venue=self.venue, symbol=symbol, instrument=contract.instrument, base=contract.base,
            ts=recv_ts, recv_ts=recv_ts, side=side, price=price, qty=qty, notional_usd=usd,
            order_id=order_id, sampled=self.liquidations_sampled,
        )
        remember(seen, order_id, self._liquidation_capacity)
        result.events.append(event)

    def _trade(self, action: str, row: dict[str, Any], recv_ts: int, result: ParseResult) -> None:
        raw_symbol = row.get("symbol")
        if isinstance(raw_symbol, str) and raw_symbol.startswith("."):
            return  # an index prints zero-size "trades" (swagger /trade)
        match_id = _text(row.get("trdMatchID"), "trdMatchID")
        seen = self._trades_seen
        if action == "partial":
            remember(seen, match_id, self._trade_capacity)
            return
        if action != "insert":
            return  # trades are never updated; nothing to do for update/delete
        if already_seen(seen, match_id):
            result.duplicates += 1
            return
        symbol, contract = self._contract(raw_symbol)
        taker = row.get("side")
        side: TakerSide
        if taker == "Buy":
            side = "buy"
        elif taker == "Sell":
            side = "sell"
        else:
            raise CodecError("bad_field", f"side: expected Buy or Sell, got {taker!r:.40}")
        price = positive(row.get("price"), "price")
        contracts = positive(row.get("size"), "size")
        ts = iso_ms(row.get("timestamp"), "timestamp")
        home, foreign = row.get("homeNotional"), row.get("foreignNotional")
        # venue-computed values when present; abs() in case a venue version signs them by side
        qty = abs(_nonzero(home, "homeNotional")) if home is not None else contract.base_qty(contracts, price)
        usd = abs(_nonzero(foreign, "foreignNotional")) if foreign is not None else contract.usd(contracts, price)
        assert qty is not None and usd is not None  # a price is given
        event = Trade(
            venue=self.venue, symbol=symbol, instrument=contract.instrument, base=contract.base, ts=ts,
            recv_ts=recv_ts, side=side, price=price, qty=qty, notional_usd=usd, trade_id=match_id,
        )
        remember(seen, match_id, self._trade_capacity)
        result.events.append(event)

    # ------------------------------------------------------------------ instrument table

    def _instrument_row(self, action: str, row: dict[str, Any], recv_ts: int, result: ParseResult,
                        *, emit: bool = True) -> None:
        symbol = _text(row.get("symbol"), "symbol", _MAX_SYMBOL_CHARS)
        if action == "delete":
            self._fields.pop(symbol, None)
            self._contracts.pop(symbol, None)
            return
        parsed = {key: parse(row[key], key) for key, parse in _FIELD_PARSERS.items() if key in row}
        fields = self._fields.get(symbol)
        if fields is None:
            if len(self._fields) >= MAX_INSTRUMENTS:
                raise CodecError("bad_field", f"{symbol}: more than {MAX_INSTRUMENTS} instruments")
            fields = self._fields[symbol] = {}
        fields.update(parsed)  # only after every column validated
        if parsed.keys() & _META_FIELDS or symbol not in self._contracts:
            try:
                self._contracts[symbol] = bitmex_contract(symbol, fields)
            except CodecError as exc:
                self._contracts[symbol] = exc
        oi_news, funding_news = parsed.keys() & _OI_FIELDS, parsed.keys() & (_FUNDING_FIELDS | _PRICE_FIELDS)
        if not emit or not (oi_news or funding_news):
            return
        symbol, contract = self._contract(symbol)
        ts = parsed.get("timestamp") or recv_ts
        emitted = self._emitted.setdefault(symbol, Emitted())
        if oi_news:
            self._maybe_open_interest(contract, fields, emitted, ts, recv_ts, result)
        if funding_news:
            self._maybe_funding(contract, fields, emitted, ts, recv_ts, result)

    def _maybe_open_interest(self, contract: BitmexContract, fields: dict[str, Any], emitted: Emitted,
                             ts: int, recv_ts: int, result: ParseResult) -> None:
        oi: Decimal | None = fields.get("openInterest")
        if oi is None:
            return
        mark: Decimal | None = fields.get("markPrice")
        qty, usd = contract.base_qty(oi, mark), contract.usd(oi, mark)
        if qty is None:
            return  # inverse without a mark yet: the base quantity is unknown
        if not emitted.open_interest_due(oi, (qty, usd), ts, OI_REVALUE_INTERVAL_MS):
            return
        result.events.append(OpenInterest(
            venue=self.venue, symbol=contract.symbol, instrument=contract.instrument, base=contract.base,
            ts=ts, recv_ts=recv_ts, oi_qty=qty, oi_usd=usd,
        ))

    def _maybe_funding(self, contract: BitmexContract, fields: dict[str, Any], emitted: Emitted,
                       ts: int, recv_ts: int, result: ParseResult) -> None:
        rate: Decimal | None = fields.get("fundingRate")
        interval_h: int | None = fields.get("fundingInterval")
        if rate is None or interval_h is None:
            return  # dated futures carry no funding
        next_ts: int | None = fields.get("fundingTimestamp")
        if not emitted.funding_due((rate, interval_h, next_ts), ts, FUNDING_REFRESH_INTERVAL_MS):
            return
        result.events.append(Funding(
            venue=self.venue, symbol=contract.symbol, instrument=contract.instrument, base=contract.base,
            ts=ts, recv_ts=recv_ts, rate=rate, interval_h=interval_h, next_funding_ts=next_ts,
            mark_price=fields.get("markPrice"), index_price=fields.get("indicativeSettlePrice"),
        ))

    # ------------------------------------------------------------------ REST

    def parse_rest(self, endpoint: str, body: bytes | str, recv_ts_ms: int) -> ParseResult:
        """``/api/v1/instrument/active`` → instrument metadata and state (no events: the ``instrument``
        partial on subscribe emits them). One bad row costs only that row."""
        result = ParseResult()
        try:
            path = urlsplit(endpoint).path.rstrip("/")
            if not path.endswith(INSTRUMENTS_PATH):
                result.rejects.append(Reject("unknown_endpoint", endpoint[:120]))
                return result
            result.control, result.stream = True, "metadata"
            rows = load_json(body, MAX_REST_BYTES)
            if isinstance(rows, dict) and "error" in rows:
                raise CodecError("venue_error", str(rows["error"])[:200])
            if not isinstance(rows, list):
                raise CodecError("bad_field", f"instruments: expected an array, got {type(rows).__name__}")
            for row in rows:
                try:
                    self._instrument_row("partial", json_object(row, "instruments[]"), recv_ts_ms, result, emit=False)
                except CodecError as exc:
                    result.rejects.append(reject(exc))
        except (CodecError, DecimalException) as exc:
            result.rejects.append(reject(exc))
        except ValueError as exc:  # urlsplit on a malformed URL
            result.rejects.append(endpoint_reject(endpoint, exc))
        except Exception as exc:  # noqa: BLE001 - one response must never stop the poller
            result.rejects.append(internal_reject(exc))
        return result

    # ------------------------------------------------------------------ replay server side

    def replay_replies(self, client_message: str) -> list[str]:
        """``ping`` → ``pong``; a subscribe/unsubscribe → one ``{"success":true,"subscribe":<topic>,
        "request":<the request>}`` per topic, as BitMEX acks them."""
        if client_message.strip() == "ping":
            return ["pong"]
        try:
            message = orjson.loads(client_message)
        except orjson.JSONDecodeError:
            return []
        if not isinstance(message, dict):
            return []
        op, args = message.get("op"), message.get("args")
        if isinstance(args, str):
            args = [args]
        if op not in ("subscribe", "unsubscribe") or not isinstance(args, list):
            return []
        if not all(isinstance(arg, str) for arg in args):
            return []
        return [orjson.dumps({"success": True, op: arg, "request": message}).decode() for arg in args]


def _nonzero(value: object, name: str) -> Decimal:
    number = parse_number(value, name, allow_negative=True)
    if not number:
        raise CodecError("bad_number", f"{name}: zero")
    return number
