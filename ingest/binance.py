"""Binance USDⓈ-M futures: all-market liquidations and marks, per-symbol trades, open interest by REST.

Protocol facts are from the project's venue reference, exchanges.md §1, which was read from the official
pages under developers.binance.com/docs/derivatives/usds-margined-futures/ ("Websocket Market Streams",
"Liquidation Order Streams", "Aggregate Trade Streams", "Mark Price Stream", REST "Open Interest"). The
pitfalls handled here are its §11 items 1, 2, 7, 8, 12 and 14.

Streams, on ``wss://fstream.binance.com/market/stream?streams=...`` (combined mode wraps every payload in
``{"stream": <name>, "data": <payload>}``; path mode ``/market/ws/<name>`` sends the bare payload, and both
are accepted)::

    !forceOrder@arr   {"e":"forceOrder","E":1568014460893,"o":{"s":"BTCUSDT","S":"SELL","o":"LIMIT",
                       "f":"IOC","q":"0.014","p":"9910","ap":"9910","X":"FILLED","l":"0.014","z":"0.014",
                       "T":1568014460893}}
    <sym>@aggTrade    {"e":"aggTrade","E":1626992742291,"a":14888302,"s":"AKROUSDT","p":"0.01731","q":"312",
                       "f":27931348,"l":27931348,"T":1626992742134,"m":true}
    !markPrice@arr@1s [{"e":"markPriceUpdate","E":1562305380000,"s":"BTCUSDT","p":"11794.15000000",
                       "i":"11784.62659091","P":"11784.25641265","r":"0.00038167","T":1562306400000}, ...]
    subscribe ack     {"result":null,"id":1}

REST (``https://fapi.binance.com``)::

    GET /fapi/v1/openInterest?symbol=BTCUSDT
                               {"openInterest":"10659.509","symbol":"BTCUSDT","time":1589437530011}
    GET /fapi/v1/fundingInfo   [{"symbol":"BLZUSDT","adjustedFundingRateCap":"0.02500000",
                                 "adjustedFundingRateFloor":"-0.02500000","fundingIntervalHours":4,...}]
    GET /fapi/v1/exchangeInfo  {"rateLimits":[{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE",
                                 "intervalNum":1,"limit":2400}],"symbols":[{"symbol":"BTCUSDT",
                                 "contractType":"PERPETUAL","status":"TRADING","baseAsset":"BTC",
                                 "quoteAsset":"USDT",...}]}

Conventions, and why:

* **Side.** ``o.S`` is the side of the *liquidation order*, not of the position: ``SELL`` means the engine
  sold to close a long, so ``SELL`` ⇒ ``long`` liquidated and ``BUY`` ⇒ ``short`` (exchanges.md §1.2 and §10,
  confirmed by cryptofeed issue #985; Bybit uses the opposite, position-side convention). aggTrade ``m`` is
  "buyer is maker", so ``m=true`` ⇒ the taker sold.
* **Liquidation size and price.** ``qty = o.z`` (accumulated filled quantity: what actually went through the
  book) at ``price = o.ap`` (average fill price), so ``notional = z × ap`` is what the flush pushed into the
  market; the logger's ``z × p`` is off by the slippage. When ``z`` is missing or zero (an unfilled IOC
  snapshot) the position was still force-closed, so we fall back to the order's ``q`` at its limit ``p``,
  likewise ``p`` when ``ap`` is zero: reporting nothing would hide a liquidation, the order size is the
  best remaining measure of it.
* **Sampling.** Binance pushes at most one liquidation per symbol per 1000 ms, so every
  :class:`~flushwatch.events.Liquidation` is ``sampled=True`` and sums are lower bounds (§11.1).
* **Units.** Quantities are base-asset units and notionals are in the quote stablecoin (USDT or USDC, taken
  as USD, §11.16). Bundled symbols such as ``1000PEPEUSDT`` are unbundled by :mod:`ingest.symbols`.
* **Duplicates** (§11.7: reconnect overlap, two connections carrying the same all-market stream):
  forceOrder has no id, so it is keyed by (symbol, ``T``, qty, price, side) in a bounded LRU; aggTrade by the
  per-symbol increasing id ``a`` with a high-water mark; mark prices by per-symbol event time. All of this
  survives :meth:`BinanceUsdmAdapter.reset_connection_state` on purpose, since make-before-break rotation
  (§11.12) delivers the overlap twice.
* **Gaps.** A jump in ``a`` counts the skipped ids as gaps (§11.8). Ids that arrive late (the other
  connection of an overlap was behind) are still accepted, so the gap count is an upper bound.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from decimal import (
    Decimal,
    DecimalException,
)
from typing import Annotated, Any, Final, Literal
from urllib.parse import parse_qsl, quote, urlsplit

import msgspec
import orjson

from flushwatch.config import BinanceConfig
from flushwatch.errors import CodecError
from flushwatch.events import Funding, LiquidatedSide, Liquidation, OpenInterest, Trade
from ingest.base import ParseResult, Reject, RestPoll, VenueAdapter, WsConnectionPlan

try:  # the optional C fast path for aggTrade frames (setup.py); without it the Python paths do the same work
    from ingest import _binance_speedups
except ImportError:  # pragma: no cover - exercised on machines without a C compiler
    _binance_speedups = None  # type: ignore[assignment]
from ingest.parsing import (
    EXACT,
    Emitted,
    base_units,
    endpoint_reject,
    internal_reject,
    json_object,
    load_json,
    optional_price,
    parse_frame,
    parse_number,
    positive,
    reject,
    remember,
    timestamp_ms,
    unit_price,
)
from ingest.subscribe import chunks
from ingest.symbols import SymbolInfo, SymbolMeta, normalize_binance_symbol

__all__ = ["SPEEDUPS", "BinanceUsdmAdapter"]

log = logging.getLogger("flushwatch.ingest.binance")

# model_validate rather than a call: the type checker sees every Field() default as required
_DEFAULTS: Final = BinanceConfig.model_validate({})

#: frames above this are rejected unread: the largest legitimate frame (``!markPrice@arr`` over ~700
#: symbols) is a few hundred KiB, and orjson would otherwise allocate for whatever arrives
MAX_FRAME_BYTES: Final = 4 * 1024 * 1024
#: exchangeInfo is ~1-2 MiB and grows with listings
MAX_REST_BYTES: Final = 32 * 1024 * 1024
#: Binance allows 1024 streams per connection (200 in older docs and other products); staying at 200 keeps
#: a reconnect cheap and the URL short
MAX_STREAMS_PER_CONNECTION: Final = 200
#: SUBSCRIBE params per message; with 200 streams a connection sends 2 messages, well inside 10 msgs/s
MAX_PARAMS_PER_SUBSCRIBE: Final = 100
#: recent forceOrder keys kept for de-duplication; all-market traffic peaks at a few hundred per second,
#: so this covers far more than any reconnect overlap
LIQUIDATION_DEDUPE_CAPACITY: Final = 10_000
#: Binance's standard funding interval; fundingInfo lists only the symbols that differ
DEFAULT_FUNDING_INTERVAL_H: Final = 8
ALL_MARKET_STREAMS: Final = ("!forceOrder@arr", "!markPrice@arr@1s")
STARTUP_ENDPOINTS: Final = ("/fapi/v1/exchangeInfo", "/fapi/v1/fundingInfo")

_OPEN_INTEREST_PATH: Final = "/fapi/v1/openInterest"
#: late-arrival tracking only for small jumps (an overlap lag), bounded per symbol
_LATE_ID_WINDOW: Final = 64
_LATE_ID_CAPACITY: Final = 1024
_SYMBOL_CACHE_CAPACITY: Final = 8192

_ZERO: Final = Decimal(0)
_ONE: Final = Decimal(1)
_MAX_TS: Final = 10**15

LiquidationKey = tuple[str, int, Decimal, Decimal, str]

# ---------------------------------------------------------------------- typed fast path
#
# ~99 % of Binance frames are aggTrade and a few are mark-price arrays. msgspec decodes those straight into
# typed structs in C (no intermediate dicts, type checks done while parsing), which is what brings the
# frame cost down to about a microsecond. The structs only accept the well-formed common case; whatever
# they refuse (a control frame, a liquidation, a bare path-mode payload, a field of the wrong type, a
# number the bounds below reject) is parsed again by the general path, which produces exactly the
# events, rejects and counters it always did. So the fast path can never be less strict than the general
# one: every number goes through the same Decimal text parse and the same bounds.

#: positive numbers the general path accepts: adjusted exponent within ±40 (see ingest.parsing)
_FAST_MIN: Final = Decimal("1e-40")
_FAST_MAX: Final = Decimal("1e41")
_Number = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
_Millis = Annotated[int, msgspec.Meta(gt=0, lt=10**15)]


# "e" is a required Literal field rather than a msgspec tag: a tag is optional when only one struct can
# match, and a payload without "e" must be refused here as it is by the general path
class _FastAggTrade(msgspec.Struct, gc=False):
    e: Literal["aggTrade"]
    s: str
    a: Annotated[int, msgspec.Meta(ge=0)]
    p: _Number
    q: _Number
    T: _Millis
    m: bool


class _FastMark(msgspec.Struct, gc=False):
    e: Literal["markPriceUpdate"]
    s: str
    E: _Millis
    p: _Number
    r: str
    T: int
    i: str = ""


class _FastEnvelope(msgspec.Struct, gc=False):
    data: _FastAggTrade | list[_FastMark]


#: True when ingest._binance_speedups was built: the common aggTrade frame then never reaches Python
SPEEDUPS: Final = _binance_speedups is not None
if _binance_speedups is not None:
    _binance_speedups.configure(Trade, ParseResult, Decimal)

_FAST_DECODER: Final = msgspec.json.Decoder(_FastEnvelope)
#: msgspec raises DecodeError/ValidationError, or UnicodeDecodeError on invalid UTF-8 (all ValueErrors)
_FAST_REFUSED: Final = (ValueError,)


class BinanceUsdmAdapter(VenueAdapter):
    """Binance USDⓈ-M protocol knowledge; see the module docstring for payloads and conventions.

    State kept across frames (and deliberately across reconnects): instrument metadata and funding
    intervals from the start-up REST calls, the last mark price per symbol (to value open interest), and
    the de-duplication and gap-tracking windows.
    """

    venue = "binance"
    default_ws_url = "wss://fstream.binance.com/market"
    default_rest_url = "https://fapi.binance.com"
    app_ping_message = None
    max_connection_age_s = _DEFAULTS.max_connection_age_s
    stale_after_s = _DEFAULTS.stale_after_s
    liquidations_sampled = True

    def __init__(
        self,
        symbols: Iterable[str],
        ws_url: str | None = None,
        rest_url: str | None = None,
        *,
        oi_poll_interval_s: float = _DEFAULTS.oi_poll_interval_s,
        rest_weight_budget_per_min: int = _DEFAULTS.rest_weight_budget_per_min,
        stale_after_s: float = _DEFAULTS.stale_after_s,
        max_connection_age_s: float = _DEFAULTS.max_connection_age_s,
        dedupe_capacity: int = LIQUIDATION_DEDUPE_CAPACITY,
        funding_min_interval_s: float = _DEFAULTS.funding_min_interval_s,
    ) -> None:
        # upper-case and de-duplicated: config is typed by people, payload symbols are upper case
        unique = dict.fromkeys(s.strip().upper() for s in symbols if s.strip())
        super().__init__(list(unique), ws_url, rest_url)
        self.oi_poll_interval_s = oi_poll_interval_s
        self.rest_weight_budget_per_min = rest_weight_budget_per_min
        self.stale_after_s = stale_after_s
        self.max_connection_age_s = max_connection_age_s
        #: REQUEST_WEIGHT per minute announced by exchangeInfo, once loaded
        self.exchange_weight_limit_per_min: int | None = None
        self._dedupe_capacity = max(1, dedupe_capacity)
        self._meta: dict[str, SymbolMeta] = {}
        self._symbol_cache: dict[str, SymbolInfo | None] = {}
        self._funding_interval_h: dict[str, int] = {}
        self._last_mark: dict[str, Decimal] = {}
        self._last_mark_ts: dict[str, int] = {}
        self._emitted: dict[str, Emitted] = {}
        self._last_oi_ts: dict[str, int] = {}
        self.funding_min_interval_ms = int(funding_min_interval_s * 1000)
        self._liquidations_seen: OrderedDict[LiquidationKey, None] = OrderedDict()
        self._last_agg_id: dict[str, int] = {}
        self._late_agg_ids: dict[str, set[int]] = {}
        #: the C fast path (None without it); a test sets None to hold it to the Python paths
        self._c_agg_trade = _binance_speedups.agg_trade if _binance_speedups is not None else None
        self._replay_subscriptions: dict[str, None] = {}

    @classmethod
    def from_config(cls, cfg: BinanceConfig) -> BinanceUsdmAdapter:
        """Build from the ``venues.binance`` config section (what the registry calls)."""
        if not SPEEDUPS:
            log.warning("binance: the C aggTrade fast path (ingest._binance_speedups) was not built, most "
                        "likely for want of a C compiler at install time; trades decode in pure Python at "
                        "about twice the CPU per frame. Reinstall with gcc and the Python headers present.")
        return cls(
            cfg.symbols,
            cfg.ws_url,
            cfg.rest_url,
            oi_poll_interval_s=cfg.oi_poll_interval_s,
            rest_weight_budget_per_min=cfg.rest_weight_budget_per_min,
            stale_after_s=cfg.stale_after_s,
            max_connection_age_s=cfg.max_connection_age_s,
            funding_min_interval_s=cfg.funding_min_interval_s,
        )

    # ------------------------------------------------------------------ connection plan

    def ws_connections(self) -> list[WsConnectionPlan]:
        """Combined-stream connections; the all-market streams ride on the first one only, since two
        connections carrying them would double every liquidation (de-duplicated, but wasted)."""
        streams = [*ALL_MARKET_STREAMS, *(f"{symbol.lower()}@aggTrade" for symbol in self.symbols)]
        base = self.ws_url.rstrip("/")
        plans: list[WsConnectionPlan] = []
        message_id = 0
        for shard in chunks(streams, MAX_STREAMS_PER_CONNECTION):
            messages: list[str] = []
            for params in chunks(shard, MAX_PARAMS_PER_SUBSCRIBE):
                message_id += 1
                messages.append(
                    orjson.dumps({"method": "SUBSCRIBE", "params": params, "id": message_id}).decode()
                )
            plans.append(
                WsConnectionPlan(
                    name=f"{self.venue}-{len(plans)}",
                    url=f"{base}/stream?streams={quote('/'.join(shard), safe='/@!')}",
                    subscribe=tuple(messages),
                )
            )
        return plans

    def startup_requests(self) -> list[str]:
        """Metadata first: symbols resolve by exchangeInfo and funding intervals need fundingInfo."""
        return list(STARTUP_ENDPOINTS)

    def rest_polls(self) -> list[RestPoll]:
        """Open interest per symbol (weight 1 each), slowed down so the total stays inside the budget.

        The budget is the configured one, or the venue's announced REQUEST_WEIGHT limit if that is lower.
        """
        if not self.symbols:
            return []
        budget = self.rest_weight_budget_per_min
        if self.exchange_weight_limit_per_min:
            budget = min(budget, self.exchange_weight_limit_per_min)
        interval_s = max(self.oi_poll_interval_s, len(self.symbols) * 60 / budget)
        return [
            RestPoll(path=f"{_OPEN_INTEREST_PATH}?symbol={symbol}", interval_s=interval_s, weight=1)
            for symbol in self.symbols
        ]

    def reset_connection_state(self, connection: str) -> None:
        """Nothing to drop: de-duplication and gap tracking must span the overlap of a planned rotation."""

    # ------------------------------------------------------------------ state accessors

    @property
    def metadata(self) -> Mapping[str, SymbolMeta]:
        """exchangeInfo entries by symbol (empty until loaded)."""
        return self._meta

    def symbol_info(self, symbol: str) -> SymbolInfo | None:
        """Normalized identity of a venue symbol, cached; None when it cannot be understood."""
        try:
            return self._symbol_cache[symbol]
        except KeyError:
            pass
        if len(self._symbol_cache) >= _SYMBOL_CACHE_CAPACITY:
            self._symbol_cache.clear()  # only garbage symbols get here; the real set is ~700
        info = normalize_binance_symbol(symbol, self._meta.get(symbol))
        self._symbol_cache[symbol] = info
        return info

    def funding_interval_h(self, symbol: str) -> int:
        """Funding interval of a symbol in hours (fundingInfo lists only the non-standard ones)."""
        return self._funding_interval_h.get(symbol, DEFAULT_FUNDING_INTERVAL_H)

    def last_mark_price(self, symbol: str) -> Decimal | None:
        """The latest mark price of a symbol as the venue quotes it (per contract unit, not unbundled)."""
        return self._last_mark.get(symbol)

    # ------------------------------------------------------------------ websocket frames

    def parse(self, raw: bytes | str, recv_ts_ms: int) -> ParseResult:
        """One websocket frame → events. Never raises: bad input becomes a :class:`Reject`, and one bad
        element of an array frame costs only that element.

        The C fast path (``ingest/_binance_speedups.c``) answers the in-sequence aggTrade of a known symbol
        without changing anything on refusal; the typed fast path (see :class:`_FastEnvelope`) answers the
        other common frames; whatever it refuses, including any error of its own, is parsed from scratch by
        the general path."""
        c_agg_trade = self._c_agg_trade
        if c_agg_trade is not None:
            fast = c_agg_trade(raw, recv_ts_ms, self.venue, self._symbol_cache, self._last_agg_id)
            if fast is not None:
                return fast
        if len(raw) <= MAX_FRAME_BYTES:
            try:
                payload = _FAST_DECODER.decode(raw).data
            except _FAST_REFUSED:
                pass
            else:
                result = ParseResult()
                try:
                    if isinstance(payload, _FastAggTrade):
                        handled = self._fast_agg_trade(payload, recv_ts_ms, result)
                    else:
                        handled = self._fast_marks(payload, recv_ts_ms, result)
                except Exception:  # noqa: BLE001 - bad number text or a NaN in a comparison: not ours to judge
                    handled = False
                if handled:
                    return result
        return parse_frame(self._parse_general, raw, recv_ts_ms)

    def _fast_agg_trade(self, data: _FastAggTrade, recv_ts: int, result: ParseResult) -> bool:
        """The common aggTrade, or False before touching any state so the general path can take over."""
        symbol = data.s
        info = self._symbol_cache.get(symbol)
        if info is None:  # not resolved yet, or unknown: the general path resolves or rejects it
            return False
        text_p, text_q = data.p, data.q
        price, qty = Decimal(text_p), Decimal(text_q)
        if not (_FAST_MIN <= price < _FAST_MAX and _FAST_MIN <= qty < _FAST_MAX):
            return False  # NaN raises in the comparison; zero, infinities and huge exponents land here
        one = info.multiplier == _ONE
        # two numbers of at most 28 digits between them multiply exactly at the default precision (28),
        # and the operator is cheaper than the exact context's method
        notional = price * qty if len(text_p) + len(text_q) <= 28 else EXACT.multiply(price, qty)
        result.stream = "trade"
        agg_id = data.a
        event = Trade(
            venue=self.venue,
            symbol=symbol,
            instrument=info.instrument,
            base=info.base,
            ts=data.T,
            recv_ts=recv_ts,
            side="sell" if data.m else "buy",
            price=price if one else unit_price(price, info),
            qty=qty if one else base_units(qty, info),
            notional_usd=notional,
            trade_id=str(agg_id),
        )
        if self._accept_agg_id(symbol, agg_id, result):
            result.events.append(event)
        return True

    def _fast_marks(self, items: list[_FastMark], recv_ts: int, result: ParseResult) -> bool:
        """A mark-price array whose every item is well formed; validated whole before any state changes,
        so refusing one item hands the untouched frame to the general path."""
        cache = self._symbol_cache
        checked: list[tuple[_FastMark, SymbolInfo, Decimal, Decimal | None, Decimal | None]] = []
        for item in items:
            info = cache.get(item.s)
            if info is None or item.T < 0 or item.T >= _MAX_TS:
                return False
            mark = Decimal(item.p)
            index = Decimal(item.i) if item.i else None
            rate = Decimal(item.r) if item.r else None
            if not _FAST_MIN <= mark < _FAST_MAX:
                return False
            if index is not None and not (_FAST_MIN <= index < _FAST_MAX):
                return False
            if rate is not None and not (rate == 0 or _FAST_MIN <= abs(rate) < _FAST_MAX):
                return False
            checked.append((item, info, mark, index, rate))
        if checked:
            result.stream = "mark_price"
        for item, info, mark, index, rate in checked:
            self._apply_mark(item.s, info, item.E, recv_ts, mark, index, item.T or None, rate, result)
        return True

    def _parse_general(self, raw: bytes | str, recv_ts: int, result: ParseResult) -> None:
        obj = load_json(raw, MAX_FRAME_BYTES)
        payload: Any = obj
        if isinstance(obj, dict):
            if "stream" in obj and "data" in obj:
                payload = obj["data"]
            elif "id" in obj and ("result" in obj or "error" in obj):
                result.control = True
                result.stream = "control"
                if obj.get("error") is not None:
                    raise CodecError("venue_error", str(obj["error"])[:200])
                return
        if isinstance(payload, list):
            for item in payload:
                self._parse_item(item, recv_ts, result)
        elif isinstance(payload, dict):
            self._parse_item(payload, recv_ts, result)
        else:
            raise CodecError("not_an_object", f"expected an object or array, got {type(payload).__name__}")

    def _parse_item(self, item: object, recv_ts: int, result: ParseResult) -> None:
        try:
            data = json_object(item, "payload")
            kind = data.get("e")
            if kind == "forceOrder":
                self._set_stream(result, "liquidation")
                self._liquidation(data, recv_ts, result)
            elif kind == "aggTrade":
                self._set_stream(result, "trade")
                self._agg_trade(data, recv_ts, result)
            elif kind == "markPriceUpdate":
                self._set_stream(result, "mark_price")
                self._mark_price(data, recv_ts, result)
            else:
                raise CodecError("unknown_message", f"e={kind!r:.40}")
        except (CodecError, DecimalException) as exc:
            result.rejects.append(reject(exc))

    @staticmethod
    def _set_stream(result: ParseResult, label: str) -> None:
        if result.stream == "unknown":
            result.stream = label

    def _symbol(self, value: object, name: str = "s") -> tuple[str, SymbolInfo]:
        if not isinstance(value, str) or not value:
            raise CodecError("bad_field", f"{name}: expected a symbol, got {value!r:.40}")
        info = self.symbol_info(value)
        if info is None:
            raise CodecError("unknown_symbol", value[:40])
        return value, info

    def _liquidation(self, data: dict[str, Any], recv_ts: int, result: ParseResult) -> None:
        order = json_object(data.get("o"), "o")
        symbol, info = self._symbol(order.get("s"), "o.s")
        order_side = order.get("S")
        side: LiquidatedSide
        if order_side == "SELL":
            side = "long"
        elif order_side == "BUY":
            side = "short"
        else:
            raise CodecError("bad_field", f"o.S: expected BUY or SELL, got {order_side!r:.40}")
        ts = timestamp_ms(order.get("T"), "o.T")
        filled = order.get("z")
        qty = parse_number(filled, "o.z") if filled is not None else _ZERO
        if not qty:
            qty = positive(order.get("q"), "o.q")
        average = order.get("ap")
        price = parse_number(average, "o.ap") if average is not None else _ZERO
        if not price:
            price = positive(order.get("p"), "o.p")
        key: LiquidationKey = (symbol, ts, qty, price, side)
        seen = self._liquidations_seen
        if key in seen:
            result.duplicates += 1
            return
        event = Liquidation(
            venue=self.venue,
            symbol=symbol,
            instrument=info.instrument,
            base=info.base,
            ts=ts,
            recv_ts=recv_ts,
            side=side,
            price=unit_price(price, info),
            qty=base_units(qty, info),
            notional_usd=EXACT.multiply(qty, price),
            order_id=None,
            sampled=self.liquidations_sampled,
        )
        remember(seen, key, self._dedupe_capacity)  # FIFO: a duplicate does not refresh its key
        result.events.append(event)

    def _agg_trade(self, data: dict[str, Any], recv_ts: int, result: ParseResult) -> None:
        symbol, info = self._symbol(data.get("s"))
        agg_id = data.get("a")
        if not isinstance(agg_id, int) or isinstance(agg_id, bool) or agg_id < 0:
            raise CodecError("bad_field", f"a: expected a trade id, got {agg_id!r:.40}")
        price = positive(data.get("p"), "p")
        qty = positive(data.get("q"), "q")
        maker = data.get("m")
        if not isinstance(maker, bool):
            raise CodecError("bad_field", f"m: expected a boolean, got {maker!r:.40}")
        ts = timestamp_ms(data.get("T"), "T")
        event = Trade(
            venue=self.venue,
            symbol=symbol,
            instrument=info.instrument,
            base=info.base,
            ts=ts,
            recv_ts=recv_ts,
            side="sell" if maker else "buy",
            price=unit_price(price, info),
            qty=base_units(qty, info),
            notional_usd=EXACT.multiply(price, qty),
            trade_id=str(agg_id),
        )
        # sequence state changes only after the whole payload validated
        if self._accept_agg_id(symbol, agg_id, result):
            result.events.append(event)

    def _accept_agg_id(self, symbol: str, agg_id: int, result: ParseResult) -> bool:
        """Advance the symbol's id high-water mark; False (a duplicate, counted) when the id was seen."""
        last = self._last_agg_id.get(symbol)
        if last is not None and agg_id == last + 1:  # the next id in order, nearly always: nothing to count
            self._last_agg_id[symbol] = agg_id
            return True
        if last is not None and agg_id <= last:
            late = self._late_agg_ids.get(symbol)
            if late is None or agg_id not in late:
                result.duplicates += 1
                return False
            late.discard(agg_id)
            return True
        if last is not None and agg_id > last + 1:
            missing = agg_id - last - 1
            result.gaps += missing
            if missing <= _LATE_ID_WINDOW:
                self._remember_late(symbol, range(last + 1, agg_id))
        self._last_agg_id[symbol] = agg_id
        return True

    def _remember_late(self, symbol: str, ids: range) -> None:
        late = self._late_agg_ids.setdefault(symbol, set())
        if len(late) + len(ids) > _LATE_ID_CAPACITY:
            late.clear()
        late.update(ids)

    def _mark_price(self, data: dict[str, Any], recv_ts: int, result: ParseResult) -> None:
        symbol, info = self._symbol(data.get("s"))
        ts = timestamp_ms(data.get("E"), "E")
        mark = positive(data.get("p"), "p")
        index = optional_price(data.get("i"), "i")
        # "T" is the next funding time, 0 on contracts without funding
        raw_next = data.get("T")
        next_funding = None if raw_next is None or raw_next == 0 else timestamp_ms(raw_next, "T")
        raw_rate = data.get("r")
        # delivery contracts carry no funding: "r" is empty, the mark still values their open interest
        rate = None if raw_rate is None or raw_rate == "" else parse_number(raw_rate, "r", allow_negative=True)
        self._apply_mark(symbol, info, ts, recv_ts, mark, index, next_funding, rate, result)

    def _apply_mark(self, symbol: str, info: SymbolInfo, ts: int, recv_ts: int, mark: Decimal,
                    index: Decimal | None, next_funding: int | None, rate: Decimal | None,
                    result: ParseResult) -> None:
        """A validated mark-price update: remember the mark (it values open interest) and emit funding
        when it changed or is due."""
        last_ts = self._last_mark_ts.get(symbol)
        if last_ts is not None and ts <= last_ts:
            result.duplicates += 1
            return
        self._last_mark_ts[symbol] = ts
        self._last_mark[symbol] = mark
        if rate is None:
            return
        # !markPrice@arr@1s repeats ~700 symbols every second; the funding rate itself moves slowly, so
        # emit on a change of rate or once per funding_min_interval, not 700 events/s into Kafka
        emitted = self._emitted.setdefault(symbol, Emitted())
        if not emitted.funding_due(rate, ts, self.funding_min_interval_ms):
            return
        result.events.append(
            Funding(
                venue=self.venue,
                symbol=symbol,
                instrument=info.instrument,
                base=info.base,
                ts=ts,
                recv_ts=recv_ts,
                rate=rate,
                interval_h=self.funding_interval_h(symbol),
                next_funding_ts=next_funding,
                mark_price=unit_price(mark, info),
                index_price=None if index is None else unit_price(index, info),
            )
        )

    # ------------------------------------------------------------------ REST

    def parse_rest(self, endpoint: str, body: bytes | str, recv_ts_ms: int) -> ParseResult:
        """A start-up or poll response → adapter state (metadata) or events (open interest).

        ``endpoint`` may be a bare path with query or a full URL (recordings keep whichever the poller
        used, and a replay REST server may add a path prefix), so only the path's tail is matched.
        """
        result = ParseResult()
        try:
            parts = urlsplit(endpoint)
            path = parts.path.rstrip("/")
            if path.endswith("/fapi/v1/exchangeInfo"):
                result.control, result.stream = True, "metadata"
                self._exchange_info(load_json(body, MAX_REST_BYTES), result)
            elif path.endswith("/fapi/v1/fundingInfo"):
                result.control, result.stream = True, "metadata"
                self._funding_info(load_json(body, MAX_REST_BYTES), result)
            elif path.endswith(_OPEN_INTEREST_PATH):
                result.stream = "open_interest"
                query_symbol = dict(parse_qsl(parts.query)).get("symbol")
                self._open_interest(load_json(body, MAX_REST_BYTES), query_symbol, recv_ts_ms, result)
            else:
                result.rejects.append(Reject("unknown_endpoint", endpoint[:120]))
        except (CodecError, DecimalException) as exc:
            result.rejects.append(reject(exc))
        except ValueError as exc:  # urlsplit on a malformed URL
            result.rejects.append(endpoint_reject(endpoint, exc))
        except Exception as exc:  # noqa: BLE001 - one response must never stop the poller
            result.rejects.append(internal_reject(exc))
        return result

    @staticmethod
    def _venue_error(obj: object) -> None:
        if isinstance(obj, dict) and "code" in obj and "msg" in obj:
            raise CodecError("venue_error", f"code={obj.get('code')!r:.20} msg={obj.get('msg')!r:.120}")

    def _exchange_info(self, obj: object, result: ParseResult) -> None:
        self._venue_error(obj)
        info = json_object(obj, "exchangeInfo")
        entries = info.get("symbols")
        if not isinstance(entries, list) or not entries:
            raise CodecError("bad_field", "symbols: expected a non-empty array")
        meta: dict[str, SymbolMeta] = {}
        for entry in entries:
            if not isinstance(entry, dict):
                result.rejects.append(Reject("not_an_object", "symbols[]"))
                continue
            symbol, base, quote_asset = entry.get("symbol"), entry.get("baseAsset"), entry.get("quoteAsset")
            contract_type, status = entry.get("contractType", ""), entry.get("status", "")
            delivery = entry.get("deliveryDate")
            texts = (symbol, base, quote_asset, contract_type, status)
            if not all(isinstance(v, str) for v in texts) or not (symbol and base and quote_asset):
                result.rejects.append(Reject("bad_field", f"symbols[]: {entry.get('symbol')!r:.40}"))
                continue
            meta[symbol] = SymbolMeta(
                symbol=symbol,
                base_asset=base,
                quote_asset=quote_asset,
                contract_type=contract_type,
                status=status,
                delivery_date_ms=delivery if type(delivery) is int else None,
            )
        self._meta = meta
        self._symbol_cache.clear()
        limits = info.get("rateLimits")
        for limit in limits if isinstance(limits, list) else []:
            if (
                isinstance(limit, dict)
                and limit.get("rateLimitType") == "REQUEST_WEIGHT"
                and limit.get("interval") == "MINUTE"
            ):
                count, per = limit.get("limit"), limit.get("intervalNum", 1)
                if isinstance(count, int) and isinstance(per, int) and count > 0 and per > 0:
                    self.exchange_weight_limit_per_min = max(1, count // per)

    def _funding_info(self, obj: object, result: ParseResult) -> None:
        self._venue_error(obj)
        if not isinstance(obj, list):
            raise CodecError("bad_field", f"fundingInfo: expected an array, got {type(obj).__name__}")
        intervals: dict[str, int] = {}
        for entry in obj:
            symbol = entry.get("symbol") if isinstance(entry, dict) else None
            hours = entry.get("fundingIntervalHours") if isinstance(entry, dict) else None
            if (
                not isinstance(symbol, str)
                or not isinstance(hours, int)
                or isinstance(hours, bool)
                or not 0 < hours <= 24 * 7
            ):
                result.rejects.append(Reject("bad_field", f"fundingInfo[]: {str(entry)[:60]}"))
                continue
            intervals[symbol] = hours
        # a symbol that left the list went back to the standard interval, so the map is replaced
        self._funding_interval_h = intervals

    def _open_interest(
        self, obj: object, query_symbol: str | None, recv_ts: int, result: ParseResult
    ) -> None:
        self._venue_error(obj)
        data = json_object(obj, "openInterest")
        symbol, info = self._symbol(data.get("symbol", query_symbol), "symbol")
        oi = parse_number(data.get("openInterest"), "openInterest")
        ts = timestamp_ms(data.get("time"), "time")
        # a response no newer than the last one (a replay server answering two polls with the same
        # recorded response) carries no new information
        last = self._last_oi_ts.get(symbol)
        if last is not None and ts <= last:
            result.duplicates += 1
            return
        self._last_oi_ts[symbol] = ts
        mark = self._last_mark.get(symbol)
        result.events.append(
            OpenInterest(
                venue=self.venue,
                symbol=symbol,
                instrument=info.instrument,
                base=info.base,
                ts=ts,
                recv_ts=recv_ts,
                oi_qty=base_units(oi, info),
                # venue units × venue price: the bundle factor cancels out
                oi_usd=None if mark is None else EXACT.multiply(oi, mark),
            )
        )

    # ------------------------------------------------------------------ replay server side

    def replay_replies(self, client_message: str) -> list[str]:
        """Answer SUBSCRIBE/UNSUBSCRIBE with ``{"result":null,"id":N}`` and LIST_SUBSCRIPTIONS with what
        was subscribed by message (one list per adapter, so per replay server rather than per connection)."""
        try:
            message = orjson.loads(client_message)
        except orjson.JSONDecodeError:
            return []
        if not isinstance(message, dict):
            return []
        method, message_id, params = message.get("method"), message.get("id"), message.get("params", [])
        if not isinstance(message_id, int | str) or isinstance(message_id, bool):
            return []
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                return []
            for stream in params:
                if method == "SUBSCRIBE":
                    self._replay_subscriptions[stream] = None
                else:
                    self._replay_subscriptions.pop(stream, None)
            return [orjson.dumps({"result": None, "id": message_id}).decode()]
        if method == "LIST_SUBSCRIPTIONS":
            return [orjson.dumps({"result": list(self._replay_subscriptions), "id": message_id}).decode()]
        return []
