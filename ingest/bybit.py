"""Bybit v5 linear (USDT/USDC perpetuals and futures): per-symbol liquidations, trades and tickers.

Protocol facts are from the project's venue reference, exchanges.md §2, read from GitHub
``bybit-exchange/docs`` @ 072c197d (``docs/v5/websocket/wss-authentication.mdx`` = "Connect",
``public/all-liquidation.mdx``, ``public/trade.mdx``, ``public/ticker.mdx``, ``rate-limit/rate-limit.mdx``).
The pitfalls handled here are its §11 items 1, 2, 6, 7, 11, 13 and 14.

Topics, on ``wss://stream.bybit.com/v5/public/linear`` (no wildcard: every topic names one symbol)::

    allLiquidation.<SYM> {"topic":"allLiquidation.ROSEUSDT","type":"snapshot","ts":1739502303204,
                          "data":[{"T":1739502302929,"s":"ROSEUSDT","S":"Sell","v":"20000","p":"0.04499"}]}
    publicTrade.<SYM>    {"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1672304486868,
                          "data":[{"T":1672304486865,"s":"BTCUSDT","S":"Buy","v":"0.001","p":"16578.50",
                          "L":"PlusTick","i":"20f43950-d8dd-5b31-9112-a178eb6023af","BT":false,
                          "seq":1783284617}]}
    tickers.<SYM>        {"topic":"tickers.BTCUSDT","type":"snapshot","data":{"symbol":"BTCUSDT",
                          "markPrice":"66666.60","indexPrice":"115418.19","openInterest":"492373.72",
                          "openInterestValue":"32824881841.75","fundingIntervalHour":"8",
                          "nextFundingTime":"1760342400000","fundingRate":"-0.005",...},
                          "cs":9532239429,"ts":1760325052630}   (then "type":"delta" with changed keys only)
    subscribe            {"op":"subscribe","args":["allLiquidation.BTCUSDT",...],"req_id":"bybit-0-1"}
    subscribe ack        {"success":true,"ret_msg":"","conn_id":"…","req_id":"bybit-0-1","op":"subscribe"}
    app ping / pong      {"op":"ping"}  →  {"success":true,"ret_msg":"pong","conn_id":"…","req_id":"",
                          "op":"ping"}

Archived frames of the deprecated topic (``liquidation.<SYM>``, deleted from the docs on 2025-11-19) are
still parsed, so old recordings replay::

    liquidation.<SYM>    {"topic":"liquidation.BTCUSDT","type":"snapshot","ts":1703485237953,
                          "data":{"updatedTime":1703485237953,"symbol":"BTCUSDT","side":"Sell",
                          "size":"0.003","price":"43511.70"}}

REST (``https://api.bybit.com``), only when ``top_n_by_oi`` is set::

    GET /v5/market/tickers?category=linear
        {"retCode":0,"retMsg":"OK","result":{"category":"linear","list":[{"symbol":"BTCUSDT",
         "openInterestValue":"32824881841.75",...}]},"time":1760325052630}

Conventions, and why:

* **Side.** ``allLiquidation`` ``S`` is the *position* side, the opposite of Binance/OKX/BitMEX: the
  all-liquidation page says "Position side. ``Buy``,``Sell``. When you receive a ``Buy`` update, this
  means that a long position has been liquidated" (``all-liquidation.mdx``; exchanges.md §2.2, §10), so
  ``Buy`` ⇒ ``long``, ``Sell`` ⇒ ``short``. The deprecated topic's ``side`` follows the same convention:
  its last published page (mirrored in GitHub ``arakinyemi/exchange-api-docs``
  ``Bybit/WebSocket_Stream/Public/Liquidation.md``, same doc example as our sample) reads "Position side.
  Buy,Sell. When you receive a Buy update, this means that a long position has been liquidated", with
  ``price`` the bankruptcy price. The page's first 2023 version (``bybit-exchange/docs`` @ 081a67d6) had
  called it "Order side" — cryptofeed issue #985 (2023-07) then reported live Bybit liquidations arriving
  as ``Buy`` exactly when Binance and BitMEX showed ``SELL`` (a long flush), i.e. the position side, and
  the page was corrected. Trades' ``S`` is the taker side.
* **Completeness.** ``allLiquidation`` pushes every liquidation (500 ms batches), so its events are
  ``sampled=False``; the deprecated topic pushed at most one per symbol per second, so its archived
  events are ``sampled=True`` (§11.1).
* **Units.** Linear sizes are base-coin units (the open-interest doc: "linear in base coin"), so the
  notional is ``v × p`` in the quote stablecoin, taken as USD (§11.16). ``p`` of a liquidation is the
  *bankruptcy* price, not a fill price, so its notional is an approximation (§2.2). Bundled symbols such
  as ``1000PEPEUSDT`` are unbundled by :func:`ingest.symbols.split_multiplier` (qty × 1000, price / 1000,
  notional unchanged). USD-quoted (inverse, sizes in USD) symbols live on another endpoint and are refused.
* **Open interest.** ``openInterest`` (base coin) and ``openInterestValue`` (USD) from ``tickers``; when
  the value is absent, ``openInterest × markPrice``. [verify] exchanges.md §2.4: the 2026 field table labels
  ``openInterest`` "both sides" next to a new ``singleOpenInterest`` (the REST example shows
  ``openInterest ≈ 2 × singleOpenInterest``), while the 2023-2025 pages and the field name itself say "open
  interest size"; third-party aggregators disagree on which one to use. We follow the long-standing
  ``openInterest`` and leave the single-side fields unused until that is settled with real data.
* **Tickers are a snapshot then sparse deltas** ("If a response param is not found in the message, then
  its value has not changed", ``ticker.mdx``): a per-symbol state is merged, validated before it changes,
  and reset by :meth:`BybitLinearAdapter.reset_connection_state` for the symbols of a replaced connection
  (the re-subscribe sends a fresh snapshot). Deltas whose cross sequence ``cs`` is not newer are
  duplicates. An :class:`~flushwatch.events.OpenInterest` is emitted when ``openInterest`` changes, or at
  most every :data:`OI_REVALUE_INTERVAL_MS` when only its USD value moved; a
  :class:`~flushwatch.events.Funding` when rate, interval or next funding time change, or at most every
  :data:`FUNDING_REFRESH_INTERVAL_MS` to refresh mark and index (100 ms ticks would otherwise become 10
  events/s/symbol). What was last emitted survives a reconnect, so a re-sent snapshot with the same values
  emits nothing.
* **Duplicates** (§11.7): trades by ``i`` (a UUID, not orderable) and liquidations by ``(s, T, S, v, p)``,
  each in a bounded LRU that survives reconnects. Two genuinely distinct liquidations with the same
  symbol, millisecond, side, size and price would be collapsed into one; that is the price of a feed
  without ids.
* **Subscriptions** (§2.1, §11.13): at most :data:`MAX_ARGS_PER_SUBSCRIBE` topics per message and at most
  :data:`MAX_ARGS_CHARS_PER_CONNECTION` characters of ``args`` per connection (Bybit's limit is 21,000);
  a symbol's three topics always share a connection. Keepalive is the app-level ``{"op":"ping"}`` every
  20 s ("Without ping-pong or data the server cuts the connection after ~10 min").
* **Symbols.** ``BTCUSDT`` → BTC-USDT-PERP; ``BTCPERP`` → BTC-USDC-PERP (USDC perpetual);
  ``BTCUSDT-26DEC25`` → BTC-USDT-20251226; ``BTC-26DEC25`` → BTC-USDC-20251226 [inferred: Bybit's dated
  linear futures without a quote in the name are its USDC futures].
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final
from urllib.parse import urlsplit

import orjson

from flushwatch.config import BybitConfig
from flushwatch.errors import CodecError
from flushwatch.events import Funding, LiquidatedSide, Liquidation, OpenInterest, TakerSide, Trade
from ingest.base import ParseResult, VenueAdapter, WsConnectionPlan
from ingest.parsing import (
    EXACT,
    Emitted,
    base_units,
    each_item,
    endpoint_reject,
    internal_reject,
    json_object,
    load_json,
    ms_text,
    optional_price,
    parse_frame,
    parse_number,
    positive,
    reject,
    remember,
    timestamp_ms,
    unit_price,
)
from ingest.subscribe import chunks, pack_by_json_chars
from ingest.symbols import KNOWN_QUOTES, SymbolInfo, instrument_name, split_multiplier

__all__ = ["BybitLinearAdapter", "normalize_bybit_symbol"]

_DEFAULTS: Final = BybitConfig.model_validate({})

#: a publicTrade frame holds up to 1024 trades (~200 KiB); anything near this is not Bybit
MAX_FRAME_BYTES: Final = 4 * 1024 * 1024
#: the all-symbol tickers response is a few hundred KiB
MAX_REST_BYTES: Final = 32 * 1024 * 1024
#: topics per subscribe message: the spot limit, also used for linear (no documented limit) to stay small
MAX_ARGS_PER_SUBSCRIBE: Final = 10
#: Bybit: "the total length of the args array ≤ 21,000 characters" per public connection; we count the
#: JSON text of the array (quotes and commas included), which is stricter than counting the topics alone
MAX_ARGS_CHARS_PER_CONNECTION: Final = 21_000
TOPIC_PREFIXES: Final = ("allLiquidation", "publicTrade", "tickers")
DEFAULT_FUNDING_INTERVAL_H: Final = 8
#: re-emit open interest whose USD value moved (mark price) at most this often
OI_REVALUE_INTERVAL_MS: Final = 10_000
#: re-emit an unchanged funding rate (with fresh mark and index) at most this often
FUNDING_REFRESH_INTERVAL_MS: Final = 60_000
TRADE_DEDUPE_CAPACITY: Final = 50_000
LIQUIDATION_DEDUPE_CAPACITY: Final = 10_000
TICKERS_PATH: Final = "/v5/market/tickers"
TICKERS_REQUEST: Final = f"{TICKERS_PATH}?category=linear"

_MAX_SYMBOL_CHARS: Final = 40
_MAX_TRADE_ID_CHARS: Final = 64
_MAX_FUNDING_INTERVAL_H: Final = 24 * 7
_SYMBOL_CACHE_CAPACITY: Final = 8192
_MONTHS: Final = {m: f"{i:02d}" for i, m in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), start=1)}
_SYMBOL_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")

LiquidationKey = tuple[str, int, str, Decimal, Decimal]


def _expiry(text: str) -> str | None:
    """``26DEC25`` → ``20251226``."""
    if len(text) != 7 or not (text[:2].isdigit() and text[5:].isdigit()) or text[2:5] not in _MONTHS:
        return None
    return f"20{text[5:]}{_MONTHS[text[2:5]]}{text[:2]}"


def normalize_bybit_symbol(symbol: str) -> SymbolInfo | None:
    """Normalize a Bybit linear symbol; None when it is not one (see the module docstring's *Symbols*)."""
    if not 0 < len(symbol) <= _MAX_SYMBOL_CHARS or not _SYMBOL_CHARS.issuperset(symbol):
        return None
    pair, _, suffix = symbol.partition("-")
    expiry = None
    if suffix:
        expiry = _expiry(suffix)
        if expiry is None:
            return None
    raw_base, quote = "", ""
    for known in KNOWN_QUOTES:
        if pair.endswith(known) and len(pair) > len(known):
            raw_base, quote = pair[: -len(known)], known
            break
    else:
        if pair.endswith("PERP") and len(pair) > 4 and expiry is None:
            raw_base, quote = pair[:-4], "USDC"
        elif expiry is not None and pair.isalnum():
            raw_base, quote = pair, "USDC"
    if not raw_base or quote == "USD" or "-" in raw_base:
        return None
    base, multiplier = split_multiplier(raw_base)
    return SymbolInfo(base=base, quote=quote, instrument=instrument_name(base, quote, expiry),
                      multiplier=multiplier, expiry=expiry)


@dataclass(slots=True)
class _Ticker:
    """The merged ``tickers`` state of one symbol (None = not sent, or empty on dated futures)."""

    cs: int | None = None
    oi: Decimal | None = None
    oi_value: Decimal | None = None
    mark: Decimal | None = None
    index: Decimal | None = None
    rate: Decimal | None = None
    interval_h: int | None = None
    next_funding_ts: int | None = None


def _hours(value: object, name: str) -> int:
    hours = parse_number(value, name)
    if hours != hours.to_integral_value() or not 0 < hours <= _MAX_FUNDING_INTERVAL_H:
        raise CodecError("bad_field", f"{name}: expected whole hours, got {value!r:.20}")
    return int(hours)


def _rate(value: object, name: str) -> Decimal:
    return parse_number(value, name, allow_negative=True)


#: ticker key → (:class:`_Ticker` attribute, parser)
_TICKER_FIELDS: Final[dict[str, tuple[str, Callable[[object, str], object]]]] = {
    "openInterest": ("oi", parse_number),
    "openInterestValue": ("oi_value", parse_number),
    "markPrice": ("mark", optional_price),
    "indexPrice": ("index", optional_price),
    "fundingRate": ("rate", _rate),
    "fundingIntervalHour": ("interval_h", _hours),
    "nextFundingTime": ("next_funding_ts", ms_text),
}


class BybitLinearAdapter(VenueAdapter):
    """Bybit v5 linear protocol knowledge; see the module docstring for payloads and conventions.

    State kept across frames: the merged tickers per symbol (reset per replaced connection), what was last
    emitted per symbol, and the de-duplication windows (both survive reconnects on purpose).
    """

    venue = "bybit"
    supports_top_n_by_oi = True
    default_ws_url = "wss://stream.bybit.com/v5/public/linear"
    default_rest_url = "https://api.bybit.com"
    app_ping_message = '{"op":"ping"}'
    app_ping_interval_s = 20.0
    max_connection_age_s = None
    stale_after_s = _DEFAULTS.stale_after_s
    liquidations_sampled = False

    def __init__(
        self,
        symbols: Iterable[str],
        ws_url: str | None = None,
        rest_url: str | None = None,
        *,
        top_n_by_oi: int | None = None,
        stale_after_s: float = _DEFAULTS.stale_after_s,
        trade_dedupe_capacity: int = TRADE_DEDUPE_CAPACITY,
        liquidation_dedupe_capacity: int = LIQUIDATION_DEDUPE_CAPACITY,
    ) -> None:
        unique = dict.fromkeys(s.strip().upper() for s in symbols if s.strip())
        super().__init__(list(unique), ws_url, rest_url)
        self.top_n_by_oi = top_n_by_oi
        self.stale_after_s = stale_after_s
        #: symbols chosen by open interest from the start-up tickers response (empty until it is parsed)
        self.top_symbols: list[str] = []
        self._trade_capacity = max(1, trade_dedupe_capacity)
        self._liquidation_capacity = max(1, liquidation_dedupe_capacity)
        self._symbol_cache: dict[str, SymbolInfo | None] = {}
        self._tickers: dict[str, _Ticker] = {}
        self._emitted: dict[str, Emitted] = {}
        self._trades_seen: OrderedDict[str, None] = OrderedDict()
        self._liquidations_seen: OrderedDict[LiquidationKey, None] = OrderedDict()
        self._connection_symbols: dict[str, list[str]] = {}

    @classmethod
    def from_config(cls, cfg: BybitConfig) -> BybitLinearAdapter:
        """Build from the ``venues.bybit`` config section (what the registry calls)."""
        return cls(cfg.symbols, cfg.ws_url, cfg.rest_url, top_n_by_oi=cfg.top_n_by_oi,
                   stale_after_s=cfg.stale_after_s)

    # ------------------------------------------------------------------ connection plan

    def subscribed_symbols(self) -> list[str]:
        """Configured symbols, then the top-N by open interest that are not configured already."""
        return list(dict.fromkeys([*self.symbols, *self.top_symbols]))

    def ws_connections(self) -> list[WsConnectionPlan]:
        """Shards of at most 21,000 characters of topics; each symbol's topics stay on one connection."""
        shards = pack_by_json_chars(
            ((symbol, [f"{prefix}.{symbol}" for prefix in TOPIC_PREFIXES]) for symbol in self.subscribed_symbols()),
            MAX_ARGS_CHARS_PER_CONNECTION,
        )
        plans: list[WsConnectionPlan] = []
        self._connection_symbols = {}
        for index, shard in enumerate(shards):
            name = f"{self.venue}-{index}"
            args = [f"{prefix}.{symbol}" for symbol in shard for prefix in TOPIC_PREFIXES]
            messages = tuple(
                orjson.dumps({"op": "subscribe", "args": chunk, "req_id": f"{name}-{number}"}).decode()
                for number, chunk in enumerate(chunks(args, MAX_ARGS_PER_SUBSCRIBE), 1)
            )
            plans.append(WsConnectionPlan(name=name, url=self.ws_url, subscribe=messages))
            self._connection_symbols[name] = shard
        return plans

    def startup_requests(self) -> list[str]:
        """The all-symbol tickers, only to pick the top-N by open interest."""
        return [TICKERS_REQUEST] if self.top_n_by_oi else []

    def reset_connection_state(self, connection: str) -> None:
        """Forget the merged tickers of the connection's symbols: its re-subscribe sends new snapshots.

        De-duplication windows and what was last emitted are kept (reconnect overlap, §11.7).
        """
        for symbol in self._connection_symbols.get(connection, self.subscribed_symbols()):
            self._tickers.pop(symbol, None)

    def symbol_info(self, symbol: str) -> SymbolInfo | None:
        """Normalized identity of a venue symbol, cached; None when it cannot be understood."""
        try:
            return self._symbol_cache[symbol]
        except KeyError:
            pass
        if len(self._symbol_cache) >= _SYMBOL_CACHE_CAPACITY:
            self._symbol_cache.clear()  # only garbage symbols get here
        info = normalize_bybit_symbol(symbol)
        self._symbol_cache[symbol] = info
        return info

    # ------------------------------------------------------------------ websocket frames

    def parse(self, raw: bytes | str, recv_ts_ms: int) -> ParseResult:
        """One websocket frame → events. Never raises: bad input becomes a :class:`Reject`, and one bad
        element of a batch costs only that element."""
        return parse_frame(self._parse_frame, raw, recv_ts_ms)

    def _parse_frame(self, raw: bytes | str, recv_ts: int, result: ParseResult) -> None:
        obj = json_object(load_json(raw, MAX_FRAME_BYTES), "frame")
        if "op" in obj or "success" in obj:
            result.control, result.stream = True, "control"
            if obj.get("success") is False:
                raise CodecError("venue_error", f"op={obj.get('op')!r:.20} {obj.get('ret_msg')!r:.160}")
            return
        topic = obj.get("topic")
        prefix = topic.partition(".")[0] if isinstance(topic, str) else None
        data = obj.get("data")
        if prefix == "allLiquidation":
            result.stream = "liquidation"
            self._each(data, recv_ts, result, self._liquidation)
        elif prefix == "publicTrade":
            result.stream = "trade"
            self._each(data, recv_ts, result, self._trade)
        elif prefix == "tickers":
            result.stream = "ticker"
            self._ticker(obj, recv_ts, result)
        elif prefix == "liquidation":  # the deprecated topic
            result.stream = "liquidation"
            self._each(data, recv_ts, result, self._legacy_liquidation)
        else:
            raise CodecError("unknown_message", f"topic={topic!r:.60}")

    @staticmethod
    def _each(data: object, recv_ts: int, result: ParseResult,
              handle: Callable[[dict[str, Any], int, ParseResult], None]) -> None:
        # an array in every example; the field tables say "Object" (and the deprecated topic sent one)
        each_item([data] if isinstance(data, dict) else data, "data", recv_ts, result, handle)

    def _symbol(self, value: object, name: str) -> tuple[str, SymbolInfo]:
        if not isinstance(value, str) or not value:
            raise CodecError("bad_field", f"{name}: expected a symbol, got {value!r:.40}")
        info = self.symbol_info(value)
        if info is None:
            raise CodecError("unknown_symbol", value[:40])
        return value, info

    def _emit_liquidation(self, symbol: str, info: SymbolInfo, ts: int, side: LiquidatedSide,
                          qty: Decimal, price: Decimal, sampled: bool, recv_ts: int,
                          result: ParseResult) -> None:
        if not remember(self._liquidations_seen, (symbol, ts, side, qty, price), self._liquidation_capacity):
            result.duplicates += 1
            return
        result.events.append(Liquidation(
            venue=self.venue, symbol=symbol, instrument=info.instrument, base=info.base, ts=ts,
            recv_ts=recv_ts, side=side, price=unit_price(price, info), qty=base_units(qty, info),
            notional_usd=EXACT.multiply(qty, price), order_id=None, sampled=sampled,
        ))

    @staticmethod
    def _position_side(value: object, name: str) -> LiquidatedSide:
        # position side: Buy = a long position was liquidated (the opposite of Binance's order side)
        if value == "Buy":
            return "long"
        if value == "Sell":
            return "short"
        raise CodecError("bad_field", f"{name}: expected Buy or Sell, got {value!r:.40}")

    def _liquidation(self, item: dict[str, Any], recv_ts: int, result: ParseResult) -> None:
        symbol, info = self._symbol(item.get("s"), "s")
        side = self._position_side(item.get("S"), "S")
        qty, price, ts = positive(item.get("v"), "v"), positive(item.get("p"), "p"), timestamp_ms(item.get("T"), "T")
        self._emit_liquidation(symbol, info, ts, side, qty, price, False, recv_ts, result)

    def _legacy_liquidation(self, item: dict[str, Any], recv_ts: int, result: ParseResult) -> None:
        symbol, info = self._symbol(item.get("symbol"), "symbol")
        side = self._position_side(item.get("side"), "side")
        qty, price = positive(item.get("size"), "size"), positive(item.get("price"), "price")
        ts = timestamp_ms(item.get("updatedTime", item.get("updateTime")), "updatedTime")
        self._emit_liquidation(symbol, info, ts, side, qty, price, True, recv_ts, result)

    def _trade(self, item: dict[str, Any], recv_ts: int, result: ParseResult) -> None:
        symbol, info = self._symbol(item.get("s"), "s")
        taker = item.get("S")
        if taker not in ("Buy", "Sell"):
            raise CodecError("bad_field", f"S: expected Buy or Sell, got {taker!r:.40}")
        side: TakerSide = "buy" if taker == "Buy" else "sell"
        trade_id = item.get("i")
        if not isinstance(trade_id, str) or not 0 < len(trade_id) <= _MAX_TRADE_ID_CHARS:
            raise CodecError("bad_field", f"i: expected a trade id, got {trade_id!r:.40}")
        price, qty, ts = positive(item.get("p"), "p"), positive(item.get("v"), "v"), timestamp_ms(item.get("T"), "T")
        if not remember(self._trades_seen, trade_id, self._trade_capacity):
            result.duplicates += 1
            return
        result.events.append(Trade(
            venue=self.venue, symbol=symbol, instrument=info.instrument, base=info.base, ts=ts,
            recv_ts=recv_ts, side=side, price=unit_price(price, info), qty=base_units(qty, info),
            notional_usd=EXACT.multiply(price, qty), trade_id=trade_id,
        ))

    # ------------------------------------------------------------------ tickers

    def _ticker(self, obj: dict[str, Any], recv_ts: int, result: ParseResult) -> None:
        kind = obj.get("type")
        if kind not in ("snapshot", "delta"):
            raise CodecError("bad_field", f"type: expected snapshot or delta, got {kind!r:.20}")
        data = json_object(obj.get("data"), "data")
        symbol, info = self._symbol(data.get("symbol"), "data.symbol")
        ts = timestamp_ms(obj.get("ts"), "ts")
        cs = obj.get("cs")
        if cs is not None and (not isinstance(cs, int) or isinstance(cs, bool) or cs < 0):
            raise CodecError("bad_field", f"cs: expected a sequence number, got {cs!r:.40}")
        update = self._ticker_update(data)  # everything is validated before the state changes
        state = self._tickers.get(symbol)
        if kind == "snapshot" or state is None:
            state = _Ticker()
        elif cs is not None and state.cs is not None and cs <= state.cs:
            result.duplicates += 1
            return
        for name, value in update.items():
            setattr(state, name, value)
        if cs is not None:
            state.cs = cs
        self._tickers[symbol] = state
        emitted = self._emitted.setdefault(symbol, Emitted())
        self._maybe_open_interest(symbol, info, state, emitted, ts, recv_ts, result)
        self._maybe_funding(symbol, info, state, emitted, ts, recv_ts, result)

    @staticmethod
    def _ticker_update(data: dict[str, Any]) -> dict[str, object]:
        """The present ticker keys parsed, by :class:`_Ticker` attribute; an absent key means unchanged,
        ``""`` means none (dated futures have no funding)."""
        update: dict[str, object] = {}
        for key, (attr, parse) in _TICKER_FIELDS.items():
            if key in data:
                value = data[key]
                update[attr] = None if value is None or value == "" else parse(value, key)
        return update

    def _maybe_open_interest(self, symbol: str, info: SymbolInfo, state: _Ticker, emitted: Emitted,
                             ts: int, recv_ts: int, result: ParseResult) -> None:
        if state.oi is None:
            return
        oi_usd = state.oi_value
        if oi_usd is None and state.mark is not None:
            oi_usd = EXACT.multiply(state.oi, state.mark)  # venue units × venue price: bundles cancel
        if not emitted.open_interest_due(state.oi, oi_usd, ts, OI_REVALUE_INTERVAL_MS):
            return
        result.events.append(OpenInterest(
            venue=self.venue, symbol=symbol, instrument=info.instrument, base=info.base, ts=ts,
            recv_ts=recv_ts, oi_qty=base_units(state.oi, info), oi_usd=oi_usd,
        ))

    def _maybe_funding(self, symbol: str, info: SymbolInfo, state: _Ticker, emitted: Emitted,
                       ts: int, recv_ts: int, result: ParseResult) -> None:
        if state.rate is None:  # dated futures carry no funding
            return
        interval_h = state.interval_h or DEFAULT_FUNDING_INTERVAL_H
        key = (state.rate, interval_h, state.next_funding_ts)
        if not emitted.funding_due(key, ts, FUNDING_REFRESH_INTERVAL_MS):
            return
        result.events.append(Funding(
            venue=self.venue, symbol=symbol, instrument=info.instrument, base=info.base, ts=ts,
            recv_ts=recv_ts, rate=state.rate, interval_h=interval_h, next_funding_ts=state.next_funding_ts,
            mark_price=None if state.mark is None else unit_price(state.mark, info),
            index_price=None if state.index is None else unit_price(state.index, info),
        ))

    # ------------------------------------------------------------------ REST

    def parse_rest(self, endpoint: str, body: bytes | str, recv_ts_ms: int) -> ParseResult:
        """The start-up tickers response → :attr:`top_symbols` (no events)."""
        result = ParseResult()
        try:
            if not urlsplit(endpoint).path.rstrip("/").endswith(TICKERS_PATH):
                raise CodecError("unknown_endpoint", endpoint[:120])
            result.control, result.stream = True, "metadata"
            self._top_by_open_interest(load_json(body, MAX_REST_BYTES), result)
        except CodecError as exc:
            result.rejects.append(reject(exc))
        except ValueError as exc:  # urlsplit on a malformed URL
            result.rejects.append(endpoint_reject(endpoint, exc))
        except Exception as exc:  # noqa: BLE001 - one response must never stop the poller
            result.rejects.append(internal_reject(exc))
        return result

    def _top_by_open_interest(self, obj: object, result: ParseResult) -> None:
        response = json_object(obj, "response")
        if response.get("retCode") != 0:
            raise CodecError("venue_error", f"retCode={response.get('retCode')!r:.20} "
                                            f"retMsg={response.get('retMsg')!r:.120}")
        entries = json_object(response.get("result"), "result").get("list")
        if not isinstance(entries, list):
            raise CodecError("bad_field", "result.list: expected an array")
        ranked: list[tuple[Decimal, str]] = []
        for entry in entries:
            try:
                ticker = json_object(entry, "list[]")
                symbol, info = self._symbol(ticker.get("symbol"), "symbol")
                if info.expiry is None:  # perpetuals: the ones with funding and liquidity
                    ranked.append((parse_number(ticker.get("openInterestValue"), "openInterestValue"), symbol))
            except CodecError as exc:
                result.rejects.append(reject(exc))
        ranked.sort(key=lambda pair: (-pair[0], pair[1]))
        if self.top_n_by_oi:
            self.top_symbols = [symbol for _, symbol in ranked[: self.top_n_by_oi]]

    # ------------------------------------------------------------------ replay server side

    def replay_replies(self, client_message: str) -> list[str]:
        """Answer subscribe/unsubscribe with the linear ack and ``op: ping`` with the linear pong."""
        try:
            message = orjson.loads(client_message)
        except orjson.JSONDecodeError:
            return []
        if not isinstance(message, dict):
            return []
        op, req_id = message.get("op"), message.get("req_id", "")
        if not isinstance(req_id, str | int) or isinstance(req_id, bool):
            return []
        if op in ("subscribe", "unsubscribe"):
            ret_msg = ""
        elif op == "ping":
            ret_msg = "pong"
        else:
            return []
        return [orjson.dumps({"success": True, "ret_msg": ret_msg, "conn_id": "replay", "req_id": req_id,
                              "op": op}).decode()]
