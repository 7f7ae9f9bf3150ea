"""Deribit perpetuals and futures (JSON-RPC 2.0): trades (liquidations are flagged trades) and tickers.

Protocol facts are from the project's venue reference, exchanges.md §5 (read from docs.deribit.com:
subscriptions ``trades``/``ticker``, ``public/set_heartbeat``, notifications, rate limits; and the Deribit
OpenAPI spec 2.1.1 via GitHub ``api-evangelist/deribit``). The pitfalls handled here are its §11 items 2,
3, 7, 8, 10, 11 and 14.

Channels, on ``wss://www.deribit.com/ws/api/v2`` (``raw`` intervals need authentication now, §5.1/§11.14,
so public collectors use ``100ms``, which still lists every trade, batched)::

    trades.<INST>.100ms  {"jsonrpc":"2.0","method":"subscription","params":{"channel":
                          "trades.BTC-PERPETUAL.100ms","data":[{"trade_seq":933,"trade_id":"9178",
                          "timestamp":1550736299753,"tick_direction":3,"price":3948.69,
                          "instrument_name":"BTC-PERPETUAL","index_price":3930.73,"direction":"sell",
                          "amount":10,"liquidation":"T"}]}}        ("liquidation" only on liquidation trades)
    ticker.<INST>.100ms  {"jsonrpc":"2.0","method":"subscription","params":{"channel":
                          "ticker.BTC-PERPETUAL.100ms","data":{"instrument_name":"BTC-PERPETUAL",
                          "timestamp":1623059681955,"open_interest":502231260,"current_funding":0,
                          "funding_8h":2.203e-05,"mark_price":36288.31,"index_price":36297.02,…}}}
    subscribe            {"jsonrpc":"2.0","id":2,"method":"public/subscribe","params":{"channels":[…]}}
                         → {"jsonrpc":"2.0","id":2,"result":["trades.BTC-PERPETUAL.100ms",…]}
    heartbeat            {"jsonrpc":"2.0","id":1,"method":"public/set_heartbeat","params":{"interval":30}}
                         → {"jsonrpc":"2.0","method":"heartbeat","params":{"type":"heartbeat"}} and
                           {"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}}, which must be
                           answered with {"jsonrpc":"2.0","id":N,"method":"public/test","params":{}} or the
                           server closes the connection

REST (``https://www.deribit.com``), optional: ``GET /api/v2/public/ticker?instrument_name=BTC-PERPETUAL`` →
``{"jsonrpc":"2.0","id":8106,"result":{<the ticker object above>}}`` is parsed like a ticker notification.

Conventions, and why:

* **Liquidations are trades carrying ``liquidation``** (no dedicated channel, §5.2): ``"M"`` the maker side
  was under liquidation, ``"T"`` the taker side, ``"MT"`` both (Deribit ``public_trade`` schema).
  ``direction`` is the taker's. So [inferred, exchanges.md §5.2/§10]: ``T`` & ``sell`` ⇒ the taker sold to
  close a long ⇒ ``long``; ``T`` & ``buy`` ⇒ ``short``; ``M`` & ``buy`` ⇒ the maker sold ⇒ ``long``;
  ``M`` & ``sell`` ⇒ ``short``. ``MT`` means a liquidated long and a liquidated short traded with each
  other: both positions shrank by the *whole* trade amount, so we emit **two** liquidations, one ``long``
  and one ``short``, each of the full size (halves would understate both sides; the taker's side alone
  would drop one). ``order_id`` is ``"<trade_id>:T"`` / ``"<trade_id>:M"`` (Deribit publishes no order id),
  unique per liquidated party. (cryptofeed copies the taker direction for every flag, which is wrong for
  ``M``.) Every flagged trade also yields its :class:`~flushwatch.events.Trade`.
* **Completeness.** Every trade is published on the ``100ms`` channel and the flag is on each liquidation
  trade, so liquidations are ``sampled=False``.
* **Units** (§5.3, §10, §11.3). Inverse instruments (``BTC-PERPETUAL``, ``ETH-PERPETUAL``, inverse futures
  ``BTC-27DEC24``): ``amount`` is USD, so ``notional_usd = amount`` exactly and ``qty = amount / price``
  (28 significant digits). Linear instruments (``SOL_USDC-PERPETUAL``, ``BTC_USDT-…``): ``amount`` is base
  coin, so ``qty = amount`` and ``notional_usd = amount × price`` (USDC/USDT taken as USD, §11.16). The
  kind is read from the name: a ``_QUOTE`` in the first part means linear. Options and combos (other name
  shapes) are refused as ``unknown_symbol``.
* **Ticker.** ``open_interest`` is USD for inverse instruments (``oi_usd = open_interest``,
  ``oi_qty = open_interest / mark_price``) and base coin for linear ones (``oi_qty = open_interest``,
  ``oi_usd = open_interest × mark_price``). Funding: Deribit measures the premium continuously and pays
  funding every millisecond, on the basis of an **8-hourly** rate (support article "Inverse perpetual":
  "The percentage difference between these two price levels is the basis for the 8-hourly funding rate
  ... Funding payments are calculated every millisecond"). We emit ``current_funding`` — the rate in force
  now, per 8 h — as ``rate`` with ``interval_h = 8`` and ``next_funding_ts = None`` (there is no discrete
  funding time), as cryptofeed does. ``funding_8h`` is the funding actually accrued over the *trailing*
  8 h (the history endpoint's ``interest_8h``: "the funding rate over the trailing eight hours"), a
  lagging average, so it is not emitted. [verify: the OpenAPI text only says "Current funding (perpetual
  only)"]. ``mark_price`` and ``index_price`` go to the Funding event. Tickers arrive every 100 ms, so an
  :class:`~flushwatch.events.OpenInterest` is emitted when ``open_interest`` changes or at most every
  :data:`OI_REVALUE_INTERVAL_MS` when only its valuation moved, and a Funding when the rate changes or at
  most every :data:`FUNDING_REFRESH_INTERVAL_MS`; older or repeated ticker timestamps are duplicates.
* **Duplicates and gaps** (§11.7-8): trades by ``(instrument_name, trade_id)`` in a bounded LRU that
  survives reconnects; ``trade_seq`` (per instrument) counts gaps: a jump counts the skipped numbers, a
  late or repeated number does not (so the count is an upper bound when connections overlap).
* **Keepalive** (§5.1, §11.11): ``public/set_heartbeat`` with ``heartbeat_s`` is the first message of
  every connection; :meth:`DeribitAdapter.control` answers each ``test_request`` with ``public/test``
  through the driver's control hook. There is no client-side app ping (the heartbeats keep the
  connection busy). ``stale_after_s`` should exceed ``heartbeat_s`` (a quiet feed still gets a heartbeat).
"""

from __future__ import annotations

import itertools
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal, DecimalException, DivisionByZero, InvalidOperation, Overflow
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import orjson

from flushwatch.config import DeribitConfig
from flushwatch.errors import CodecError
from flushwatch.events import Funding, LiquidatedSide, Liquidation, OpenInterest, TakerSide, Trade
from ingest.base import ControlAction, ParseResult, Reject, VenueAdapter, WsConnectionPlan
from ingest.parsing import (
    EXACT,
    Emitted,
    already_seen,
    each_item,
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
)
from ingest.subscribe import chunks
from ingest.symbols import SymbolInfo, instrument_name, split_multiplier

__all__ = ["DeribitAdapter", "DeribitInstrument", "deribit_instrument"]

_DEFAULTS: Final = DeribitConfig.model_validate({})

#: a 100 ms trades batch in a crash is a few hundred trades (~100 KiB)
MAX_FRAME_BYTES: Final = 4 * 1024 * 1024
MAX_REST_BYTES: Final = 4 * 1024 * 1024
#: channels per public/subscribe call (Deribit documents no limit; small calls cost fewer credits each)
MAX_CHANNELS_PER_SUBSCRIBE: Final = 100
INTERVAL: Final = "100ms"
#: re-emit open interest whose valuation moved with the mark at most this often
OI_REVALUE_INTERVAL_MS: Final = 10_000
#: re-emit an unchanged funding rate (with fresh mark and index) at most this often
FUNDING_REFRESH_INTERVAL_MS: Final = 60_000
#: Deribit quotes its continuously paid funding as an 8-hourly rate
FUNDING_INTERVAL_H: Final = 8
TRADE_DEDUPE_CAPACITY: Final = 50_000
TICKER_PATH: Final = "/api/v2/public/ticker"
#: JSON-RPC ids: 1 is set_heartbeat, 2.. the subscribe calls, test replies count up from here
_TEST_ID_START: Final = 1_000_000
_HEARTBEAT_ID: Final = 1
USD_QUOTES: Final = frozenset({"USD", "USDC", "USDT"})
LIQUIDATION_FLAGS: Final = frozenset({"M", "T", "MT"})

_MAX_ID_CHARS: Final = 64
_MAX_NAME_CHARS: Final = 48
_ASSET = re.compile(r"[A-Z0-9]{1,20}")
_EXPIRY = re.compile(r"(\d{1,2})([A-Z]{3})(\d{2})")
_MONTHS: Final[Mapping[str, int]] = {
    m: i for i, m in enumerate(("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1)
}
_QUOTIENT: Final = Context(prec=28, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow])
_ONE: Final = Decimal(1)
_SYMBOL_CACHE_CAPACITY: Final = 4096

Role = Literal["T", "M"]


@dataclass(frozen=True, slots=True)
class DeribitInstrument:
    """A Deribit instrument name read: identity, and whether ``amount`` is USD (inverse) or base coin."""

    name: str
    info: SymbolInfo
    inverse: bool


def _expiry(text: str) -> str | None:
    """``27DEC24`` → ``20241227``; None when it is not a delivery date."""
    match = _EXPIRY.fullmatch(text)
    if match is None or match.group(2) not in _MONTHS:
        return None
    day, month, year = int(match.group(1)), _MONTHS[match.group(2)], int(match.group(3))
    if not 1 <= day <= 31:
        return None
    return f"20{year:02d}{month:02d}{day:02d}"


def deribit_instrument(name: str) -> DeribitInstrument | None:
    """Read a perpetual or future name; None for options, combos and anything else.

    ``BTC-PERPETUAL`` → BTC-USD-PERP (inverse), ``SOL_USDC-PERPETUAL`` → SOL-USDC-PERP (linear),
    ``BTC-27DEC24`` → BTC-USD-20241227 (inverse).
    """
    if not 0 < len(name) <= _MAX_NAME_CHARS:
        return None
    parts = name.split("-")
    if len(parts) != 2:
        return None
    pair, tenor = parts
    expiry: str | None = None
    if tenor != "PERPETUAL":
        expiry = _expiry(tenor)
        if expiry is None:
            return None
    raw_base, underscore, quote = pair.partition("_")
    inverse = not underscore
    if inverse:
        quote = "USD"
    if not _ASSET.fullmatch(raw_base) or quote not in USD_QUOTES:
        return None
    base, multiplier = split_multiplier(raw_base)
    info = SymbolInfo(base=base, quote=quote, instrument=instrument_name(base, quote, expiry),
                      multiplier=multiplier, expiry=expiry)
    return DeribitInstrument(name=name, info=info, inverse=inverse)


def liquidated_side(role: Role, taker_direction: TakerSide) -> LiquidatedSide:
    """Which position was liquidated: the taker's (``T``) sold ⇒ long; the maker (``M``) trades against the
    taker, so a taker ``buy`` means the maker sold ⇒ long."""
    seller = taker_direction == "sell" if role == "T" else taker_direction == "buy"
    return "long" if seller else "short"


@dataclass(slots=True)
class _Emitted(Emitted):
    """What was last emitted for an instrument (the funding key is the rate alone), and the newest ticker
    timestamp: the two connections of an overlap send the same tickers."""

    ticker_ts: int = 0


class DeribitAdapter(VenueAdapter):
    """Deribit protocol knowledge; see the module docstring for payloads and conventions.

    State kept across frames and reconnects: the trade de-duplication window, the last ``trade_seq`` per
    instrument, and what was last emitted per instrument (ticker time, open interest, funding).
    """

    venue = "deribit"
    default_ws_url = "wss://www.deribit.com/ws/api/v2"
    default_rest_url = "https://www.deribit.com"
    app_ping_message = None
    max_connection_age_s = None
    stale_after_s = _DEFAULTS.stale_after_s
    liquidations_sampled = False

    def __init__(
        self,
        symbols: Iterable[str],
        ws_url: str | None = None,
        rest_url: str | None = None,
        *,
        heartbeat_s: int = _DEFAULTS.heartbeat_s,
        stale_after_s: float = _DEFAULTS.stale_after_s,
        trade_dedupe_capacity: int = TRADE_DEDUPE_CAPACITY,
    ) -> None:
        unique = dict.fromkeys(s.strip().upper() for s in symbols if s.strip())
        super().__init__(list(unique), ws_url, rest_url)
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self._trade_capacity = max(1, trade_dedupe_capacity)
        self._trades_seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._last_seq: dict[str, int] = {}
        self._emitted: dict[str, _Emitted] = {}
        self._instrument_cache: dict[str, DeribitInstrument | None] = {}
        self._test_ids = itertools.count(_TEST_ID_START)

    @classmethod
    def from_config(cls, cfg: DeribitConfig) -> DeribitAdapter:
        """Build from the ``venues.deribit`` config section (what the registry calls)."""
        return cls(cfg.symbols, cfg.ws_url, cfg.rest_url, heartbeat_s=cfg.heartbeat_s,
                   stale_after_s=cfg.stale_after_s)

    # ------------------------------------------------------------------ connection plan

    def channels(self) -> list[str]:
        """Every channel subscribed: trades and ticker per instrument, public ``100ms`` interval."""
        return [f"{kind}.{symbol}.{INTERVAL}" for symbol in self.symbols for kind in ("trades", "ticker")]

    def ws_connections(self) -> list[WsConnectionPlan]:
        """One connection: ``public/set_heartbeat`` first, then the subscribe calls."""
        messages = [orjson.dumps({"jsonrpc": "2.0", "id": _HEARTBEAT_ID, "method": "public/set_heartbeat",
                                  "params": {"interval": self.heartbeat_s}}).decode()]
        channels = self.channels()
        for number, chunk in enumerate(chunks(channels, MAX_CHANNELS_PER_SUBSCRIBE), _HEARTBEAT_ID + 1):
            messages.append(orjson.dumps({"jsonrpc": "2.0", "id": number, "method": "public/subscribe",
                                          "params": {"channels": chunk}}).decode())
        return [WsConnectionPlan(name=f"{self.venue}-0", url=self.ws_url, subscribe=tuple(messages))]

    def reset_connection_state(self, connection: str) -> None:
        """Nothing to drop: de-duplication must span the reconnect overlap."""

    def control(self, frame: str) -> ControlAction | None:
        """Answer ``test_request`` heartbeats with ``public/test`` (else Deribit closes the connection).

        A substring test first: this runs on every frame."""
        if "test_request" not in frame:
            return None
        try:
            message = orjson.loads(frame)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(message, dict) or message.get("method") != "heartbeat":
            return None
        params = message.get("params")
        if not isinstance(params, dict) or params.get("type") != "test_request":
            return None
        return ControlAction(replies=(self.test_message(),))

    def test_message(self) -> str:
        """A ``public/test`` call with a fresh id."""
        return orjson.dumps({"jsonrpc": "2.0", "id": next(self._test_ids), "method": "public/test",
                             "params": {}}).decode()

    # ------------------------------------------------------------------ websocket frames

    def parse(self, raw: bytes | str, recv_ts_ms: int) -> ParseResult:
        """One websocket frame → events. Never raises: bad input becomes a :class:`Reject`, and one bad
        trade of a batch costs only that trade."""
        return parse_frame(self._parse_frame, raw, recv_ts_ms)

    def _parse_frame(self, raw: bytes | str, recv_ts: int, result: ParseResult) -> None:
        obj = json_object(load_json(raw, MAX_FRAME_BYTES), "frame")
        if "id" in obj and ("result" in obj or "error" in obj):
            result.control, result.stream = True, "control"
            if obj.get("error") is not None:
                raise CodecError("venue_error", str(obj["error"])[:200])
            return
        method = obj.get("method")
        if method == "heartbeat":
            result.control, result.stream = True, "control"
            return
        if method != "subscription":
            raise CodecError("unknown_message", f"method={method!r:.40}")
        params = json_object(obj.get("params"), "params")
        channel = params.get("channel")
        kind = channel.partition(".")[0] if isinstance(channel, str) else None
        data = params.get("data")
        if kind == "trades":
            result.stream = "trade"
            each_item(data, "data", recv_ts, result, self._trade)
        elif kind == "ticker":
            result.stream = "ticker"
            self._ticker(json_object(data, "data"), recv_ts, result)
        else:
            raise CodecError("unknown_message", f"channel={channel!r:.60}")

    def instrument(self, name: str) -> DeribitInstrument | None:
        """The instrument read from a name (cached); None for options and anything unknown."""
        try:
            return self._instrument_cache[name]
        except KeyError:
            pass
        if len(self._instrument_cache) >= _SYMBOL_CACHE_CAPACITY:
            self._instrument_cache.clear()  # only garbage names get here
        found = self._instrument_cache[name] = deribit_instrument(name)
        return found

    def _instrument(self, value: object) -> DeribitInstrument:
        if not isinstance(value, str) or not value:
            raise CodecError("bad_field", f"instrument_name: expected a name, got {value!r:.40}")
        found = self.instrument(value)
        if found is None:
            raise CodecError("unknown_symbol", f"{value[:48]}: not a perpetual or future (options unsupported)")
        return found

    @staticmethod
    def _sizes(inst: DeribitInstrument, amount: Decimal, price: Decimal) -> tuple[Decimal, Decimal, Decimal]:
        """(unit price, base quantity, USD notional) of ``amount`` at ``price``."""
        multiplier = inst.info.multiplier
        if inst.inverse:
            return price, _QUOTIENT.divide(amount, price), amount
        unit_price = price if multiplier == _ONE else EXACT.divide(price, multiplier)
        qty = amount if multiplier == _ONE else EXACT.multiply(amount, multiplier)
        return unit_price, qty, EXACT.multiply(amount, price)

    def _trade(self, data: dict[str, Any], recv_ts: int, result: ParseResult) -> None:
        inst = self._instrument(data.get("instrument_name"))
        trade_id = data.get("trade_id")
        if not isinstance(trade_id, str) or not trade_id or len(trade_id) > _MAX_ID_CHARS:
            raise CodecError("bad_field", f"trade_id: expected a string id, got {trade_id!r:.40}")
        price = positive(data.get("price"), "price")
        amount = positive(data.get("amount"), "amount")
        direction = data.get("direction")
        if direction not in ("buy", "sell"):
            raise CodecError("bad_field", f"direction: expected buy or sell, got {direction!r:.40}")
        side: TakerSide = "buy" if direction == "buy" else "sell"
        ts = timestamp_ms(data.get("timestamp"), "timestamp")
        seq = data.get("trade_seq")
        if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < 2**63):
            raise CodecError("bad_field", f"trade_seq: expected a sequence number, got {seq!r:.40}")
        flag = data.get("liquidation")
        if flag is not None and (not isinstance(flag, str) or flag not in LIQUIDATION_FLAGS):
            raise CodecError("bad_field", f"liquidation: expected M, T or MT, got {flag!r:.40}")
        unit_price, qty, usd = self._sizes(inst, amount, price)
        key = (inst.name, trade_id)
        if already_seen(self._trades_seen, key):
            result.duplicates += 1
            return
        remember(self._trades_seen, key, self._trade_capacity)
        if seq is not None:
            last = self._last_seq.get(inst.name)
            if last is None or seq > last:
                if last is not None and seq > last + 1:
                    result.gaps += seq - last - 1
                self._last_seq[inst.name] = seq
        info = inst.info
        result.events.append(Trade(
            venue=self.venue, symbol=inst.name, instrument=info.instrument, base=info.base, ts=ts,
            recv_ts=recv_ts, side=side, price=unit_price, qty=qty, notional_usd=usd, trade_id=trade_id,
        ))
        roles: tuple[Role, ...] = () if flag is None else tuple(r for r in ("T", "M") if r in flag)
        for role in roles:
            result.events.append(Liquidation(
                venue=self.venue, symbol=inst.name, instrument=info.instrument, base=info.base, ts=ts,
                recv_ts=recv_ts, side=liquidated_side(role, side), price=unit_price, qty=qty,
                notional_usd=usd, order_id=f"{trade_id}:{role}", sampled=self.liquidations_sampled,
            ))

    def _ticker(self, data: dict[str, Any], recv_ts: int, result: ParseResult) -> None:
        inst = self._instrument(data.get("instrument_name"))
        ts = timestamp_ms(data.get("timestamp"), "timestamp")
        mark = positive(data.get("mark_price"), "mark_price")
        index = optional_price(data.get("index_price"), "index_price")
        raw_oi, raw_rate = data.get("open_interest"), data.get("current_funding")
        oi = None if raw_oi is None else parse_number(raw_oi, "open_interest")
        rate = None if raw_rate is None else parse_number(raw_rate, "current_funding", allow_negative=True)
        emitted = self._emitted.setdefault(inst.name, _Emitted())
        if ts <= emitted.ticker_ts:
            result.duplicates += 1  # the other connection of an overlap, or a repeat
            return
        emitted.ticker_ts = ts
        info = inst.info
        if oi is not None:
            if inst.inverse:
                oi_qty, oi_usd = _QUOTIENT.divide(oi, mark), oi
            else:
                oi_qty = oi if info.multiplier == _ONE else EXACT.multiply(oi, info.multiplier)
                oi_usd = EXACT.multiply(oi, mark)
            if emitted.open_interest_due(oi, (oi_qty, oi_usd), ts, OI_REVALUE_INTERVAL_MS):
                result.events.append(OpenInterest(
                    venue=self.venue, symbol=inst.name, instrument=info.instrument, base=info.base, ts=ts,
                    recv_ts=recv_ts, oi_qty=oi_qty, oi_usd=oi_usd,
                ))
        if rate is None:
            return  # futures: no funding
        if not emitted.funding_due(rate, ts, FUNDING_REFRESH_INTERVAL_MS):
            return
        unit = info.multiplier
        result.events.append(Funding(
            venue=self.venue, symbol=inst.name, instrument=info.instrument, base=info.base, ts=ts,
            recv_ts=recv_ts, rate=rate, interval_h=FUNDING_INTERVAL_H, next_funding_ts=None,
            mark_price=mark if unit == _ONE else EXACT.divide(mark, unit),
            index_price=None if index is None else index if unit == _ONE else EXACT.divide(index, unit),
        ))

    # ------------------------------------------------------------------ REST

    def parse_rest(self, endpoint: str, body: bytes | str, recv_ts_ms: int) -> ParseResult:
        """``/api/v2/public/ticker`` (a JSON-RPC envelope around a ticker object) → like a ticker frame."""
        result = ParseResult()
        try:
            if not urlsplit(endpoint).path.rstrip("/").endswith(TICKER_PATH):
                result.rejects.append(Reject("unknown_endpoint", endpoint[:120]))
                return result
            result.stream = "ticker"
            obj = json_object(load_json(body, MAX_REST_BYTES), "response")
            if obj.get("error") is not None:
                raise CodecError("venue_error", str(obj["error"])[:200])
            self._ticker(json_object(obj.get("result"), "result"), recv_ts_ms, result)
        except (CodecError, DecimalException) as exc:
            result.rejects.append(reject(exc))
        except ValueError as exc:  # urlsplit on a malformed URL
            result.rejects.append(endpoint_reject(endpoint, exc))
        except Exception as exc:  # noqa: BLE001 - one response must never stop the poller
            result.rejects.append(internal_reject(exc))
        return result

    # ------------------------------------------------------------------ replay server side

    def replay_replies(self, client_message: str) -> list[str]:
        """What Deribit answers: ``public/subscribe``/``unsubscribe`` → the channels,
        ``public/set_heartbeat``/``disable_heartbeat`` → ``"ok"``, ``public/test`` → a version object."""
        try:
            message = orjson.loads(client_message)
        except orjson.JSONDecodeError:
            return []
        if not isinstance(message, dict):
            return []
        method, message_id, params = message.get("method"), message.get("id"), message.get("params", {})
        if not isinstance(message_id, int | str) or isinstance(message_id, bool) or not isinstance(params, dict):
            return []
        result: Any
        if method in ("public/subscribe", "public/unsubscribe"):
            channels = params.get("channels")
            if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
                return []
            result = channels
        elif method in ("public/set_heartbeat", "public/disable_heartbeat"):
            result = "ok"
        elif method == "public/test":
            result = {"version": "replay"}
        else:
            return []
        return [orjson.dumps({"jsonrpc": "2.0", "id": message_id, "result": result}).decode()]
