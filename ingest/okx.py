"""OKX v5 swaps (linear and inverse): market-wide liquidations, per-instrument trades, OI, funding, mark.

Protocol facts are from the project's venue reference, exchanges.md §3, read from the OKX v5 docs
(https://www.okx.com/docs-v5/en/) via the per-section mirror GitHub ``wcttmf/okx-api-docs`` @ e82f90ec
(Aug 2025: ``06-public-data/39-websocket-liquidation-orders-channel.html``, ``30-…open-interest…``,
``31-…funding-rate…``, ``35-…mark-price…``, instruments, trades, and the overview's connect / subscribe /
notification sections). The pitfalls handled here are its §11 items 1, 2, 3, 5, 7, 10, 11 and 12.

Channels, on ``wss://ws.okx.com:8443/ws/v5/public`` (timestamps and numbers are **strings**)::

    liquidation-orders {"arg":{"channel":"liquidation-orders","instType":"SWAP"},"data":[{"details":[
                        {"bkLoss":"0","bkPx":"0.007831","ccy":"","posSide":"short","side":"buy","sz":"13",
                        "ts":"1692266434010"}],"instFamily":"IOST-USDT","instId":"IOST-USDT-SWAP",
                        "instType":"SWAP","uly":"IOST-USDT"}]}
    trades             {"arg":{"channel":"trades","instId":"UNI-USD-SWAP"},"data":[{"instId":"UNI-USD-SWAP",
                        "tradeId":"12883020","px":"5.123","sz":"100","side":"sell","ts":"1652459215150"}]}
    open-interest      {"arg":{"channel":"open-interest","instId":"BTC-USDT-SWAP"},"data":[{"instId":
                        "BTC-USDT-SWAP","instType":"SWAP","oi":"2216113.01000000309","oiCcy":
                        "22161.1301000000309","oiUsd":"1939251795.54769270396321","ts":"1743041250440"}]}
    funding-rate       {"arg":{"channel":"funding-rate","instId":"BTC-USD-SWAP"},"data":[{"fundingRate":
                        "0.0001875391284828","fundingTime":"1700726400000","instId":"BTC-USD-SWAP",
                        "nextFundingTime":"1700755200000","ts":"1700724675402",...}]}
    mark-price         {"arg":{"channel":"mark-price","instId":"BTC-USDT-SWAP"},"data":[{"instType":"SWAP",
                        "instId":"BTC-USDT-SWAP","markPx":"42310.6","ts":"1597026383085"}]}
    subscribe          {"id":"1","op":"subscribe","args":[{"channel":"trades","instId":"BTC-USDT-SWAP"},...]}
    subscribe ack      {"id":"1","event":"subscribe","arg":{"channel":"trades","instId":"BTC-USDT-SWAP"},
                        "connId":"a4d3ae55"}                        (one per arg)
    error              {"event":"error","code":"60012","msg":"Invalid request: …","connId":"a4d3ae55"}
    notice             {"event":"notice","code":"64008","msg":"The connection will soon be closed for a
                        service upgrade. Please reconnect.","connId":"a4d3ae55"}
    keepalive          text ``ping`` → text ``pong``

REST (``https://www.okx.com``), at start-up and every ``instruments_refresh_s``::

    GET /api/v5/public/instruments?instType=SWAP
        {"code":"0","msg":"","data":[{"instId":"BTC-USDT-SWAP","instType":"SWAP","ctType":"linear",
         "ctVal":"0.01","ctMult":"1","ctValCcy":"BTC","settleCcy":"USDT","uly":"BTC-USDT",...},
         {"instId":"BTC-USD-SWAP","ctType":"inverse","ctVal":"100","ctMult":"1","ctValCcy":"USD",
         "settleCcy":"BTC","uly":"BTC-USD",...}]}
    GET /api/v5/public/open-interest?instType=SWAP      (only with ``top_n_by_oi``)
        {"code":"0","msg":"","data":[{"instType":"SWAP","instId":"BTC-USDT-SWAP","oi":"5000",
         "oiCcy":"555.55","oiUsd":"50000","ts":"1597026383085"}]}

Conventions, and why:

* **Side.** ``details[].side`` is the *order* side of the liquidation order ("Order side ``buy``
  ``sell``"), ``posSide`` the position mode side (``long``/``short`` in hedge mode, ``net`` in net mode).
  A long is closed by selling, so ``sell`` ⇒ ``long`` liquidated and ``buy`` ⇒ ``short`` — the Binance
  convention and the opposite of Bybit (exchanges.md §3.2, §10; the doc example pairs ``"posSide":"short"``
  with ``"side":"buy"``). ``posSide`` is a cross-check only: a hedge-mode ``long`` with ``buy`` (or
  ``short`` with ``sell``) contradicts itself and is rejected as ``bad_field``. Trades' ``side`` is the
  taker side.
* **Sampling and order.** The channel doc: "For futures and swaps, each contract will only show a maximum
  of one order per one-second period. This data doesn't represent the total number of liquidations on
  OKX", and pushes are not time-ordered, so every liquidation is ``sampled=True`` and de-duplication uses
  keys, never a time high-water mark. The channel is market-wide (``instType`` SWAP): every instrument
  whose metadata is known is kept, not only the configured ones.
* **Contracts → base → USD** (§3.2, §10, §11.3), with ``ctVal``, ``ctMult``, ``ctType`` from the
  instruments endpoint. Linear (``ctValCcy`` = the base coin, e.g. BTC-USDT-SWAP ``ctVal`` 0.01 BTC):
  qty = ``sz × ctVal × ctMult`` base units and notional = qty × price (exact, in the settle stablecoin,
  taken as USD). Inverse (``ctValCcy`` USD, e.g. BTC-USD-SWAP ``ctVal`` 100): notional =
  ``sz × ctVal × ctMult`` USD (exact) and qty = notional / price, rounded to 34 significant digits
  (:data:`INVERSE_QTY_CONTEXT`): the division rarely terminates, and the notional is what detectors sum.
  A liquidation's price is ``bkPx``, the bankruptcy price, so its notional is an approximation.
* **Metadata first.** An event of an instrument without metadata is rejected as ``unknown_symbol`` (and
  dead-lettered); the instruments response is fetched before the first connection and refreshed by a
  :class:`~ingest.base.RestPoll`. A refresh updates and adds instruments but never forgets one, so a
  truncated response cannot blank the adapter.
* **Open interest**: ``oiCcy`` (base units) and ``oiUsd`` as sent; without them they are derived from
  ``oi`` contracts with the rules above (the mark price values a linear OI, an inverse OI is USD already).
* **Funding**: ``fundingRate`` is the rate of the current period, settled at ``fundingTime`` — so
  ``fundingTime`` is what :attr:`~flushwatch.events.Funding.next_funding_ts` means (Binance's ``T``,
  Bybit's ``nextFundingTime``), and ``nextFundingTime`` is the settlement after it. The interval is
  ``nextFundingTime − fundingTime`` (8/6/4/2/1 h, §11.10); 8 h when ``nextFundingTime`` is empty. The
  mark price is the latest from ``mark-price``; OKX's funding channel has no index price.
* **Duplicates** (§11.7): trades by ``(instId, tradeId)`` and liquidations by
  ``(instId, ts, side, sz, bkPx)`` in bounded LRUs; open interest, funding and marks by a per-instrument
  ``ts`` high-water mark. All of it survives reconnects and the make-before-break rotation that the
  ``64008`` notice triggers through :meth:`OkxSwapAdapter.control` (§11.12).
* **Keepalive.** OKX closes a connection that pushed nothing for 30 s; the driver sends text ``ping``
  every 25 s (:attr:`app_ping_interval_s`) and ``pong`` is a control frame.
* **Subscriptions.** ``liquidation-orders`` rides on the first connection only (a second copy would only
  be de-duplicated); per connection the ``args`` stay below OKX's 64 KB limit
  (:data:`MAX_ARGS_CHARS_PER_CONNECTION`), at most :data:`MAX_ARGS_PER_SUBSCRIBE` per message.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal, DecimalException
from functools import partial
from typing import Any, Final
from urllib.parse import urlsplit

import orjson

from flushwatch.config import OkxConfig
from flushwatch.errors import CodecError
from flushwatch.events import Funding, LiquidatedSide, Liquidation, OpenInterest, TakerSide, Trade
from ingest.base import ControlAction, ParseResult, RestPoll, VenueAdapter, WsConnectionPlan
from ingest.parsing import (
    EXACT,
    each_item,
    endpoint_reject,
    internal_reject,
    json_object,
    load_json,
    ms_text,
    parse_frame,
    parse_number,
    positive,
    reject,
    remember,
)
from ingest.subscribe import chunks, pack_by_json_chars
from ingest.symbols import SymbolInfo, instrument_name, split_multiplier

__all__ = ["INVERSE_QTY_CONTEXT", "OkxInstrument", "OkxSwapAdapter"]

_DEFAULTS: Final = OkxConfig.model_validate({})

MAX_FRAME_BYTES: Final = 4 * 1024 * 1024
#: the SWAP instrument list is a few hundred KiB
MAX_REST_BYTES: Final = 32 * 1024 * 1024
MAX_ARGS_PER_SUBSCRIBE: Final = 100
#: OKX: "the total length of multiple channels cannot exceed 64 KB"; we stay well below
MAX_ARGS_CHARS_PER_CONNECTION: Final = 60_000
CHANNELS: Final = ("trades", "open-interest", "funding-rate", "mark-price")
LIQUIDATION_ARG: Final = {"channel": "liquidation-orders", "instType": "SWAP"}
INSTRUMENTS_PATH: Final = "/api/v5/public/instruments"
INSTRUMENTS_REQUEST: Final = f"{INSTRUMENTS_PATH}?instType=SWAP"
OPEN_INTEREST_PATH: Final = "/api/v5/public/open-interest"
OPEN_INTEREST_REQUEST: Final = f"{OPEN_INTEREST_PATH}?instType=SWAP"
DEFAULT_FUNDING_INTERVAL_H: Final = 8
NOTICE_RECONNECT_CODE: Final = "64008"
TRADE_DEDUPE_CAPACITY: Final = 50_000
LIQUIDATION_DEDUPE_CAPACITY: Final = 10_000
#: inverse quantities (USD notional / price) are rounded here: 34 significant digits (IEEE decimal128)
INVERSE_QTY_CONTEXT: Final = Context(prec=34, rounding=ROUND_HALF_EVEN)

_HOUR_MS: Final = 3_600_000
_MAX_FUNDING_INTERVAL_H: Final = 24 * 7
_MAX_ID_CHARS: Final = 64
_MAX_INSTRUMENTS: Final = 20_000
_ONE: Final = Decimal(1)

LiquidationKey = tuple[str, int, str, Decimal, Decimal]
_Handler = Callable[[dict[str, Any], int, ParseResult], None]


@dataclass(frozen=True, slots=True)
class OkxInstrument:
    """What the instruments endpoint says about one swap, plus its normalized identity."""

    inst_id: str
    ct_type: str  # "linear" | "inverse"
    ct_val: Decimal
    ct_mult: Decimal
    ct_val_ccy: str
    settle_ccy: str
    info: SymbolInfo

    @property
    def contract_size(self) -> Decimal:
        """Base units (linear) or USD (inverse) per contract: ``ctVal × ctMult``."""
        return EXACT.multiply(self.ct_val, self.ct_mult)

    def base_units(self, qty: Decimal) -> Decimal:
        """Unbundle a quantity counted in the underlying's bundles (1 for every swap seen so far)."""
        multiplier = self.info.multiplier
        return qty if multiplier == _ONE else EXACT.multiply(qty, multiplier)

    def unit_price(self, price: Decimal) -> Decimal:
        """The price of one base unit."""
        multiplier = self.info.multiplier
        return price if multiplier == _ONE else EXACT.divide(price, multiplier)

    def size(self, contracts: Decimal, price: Decimal) -> tuple[Decimal, Decimal, Decimal]:
        """``(qty in base units, price per base unit, notional USD)`` of ``contracts`` at ``price``."""
        amount = EXACT.multiply(contracts, self.contract_size)
        if self.ct_type == "inverse":
            qty, notional = INVERSE_QTY_CONTEXT.divide(amount, price), amount
        else:
            qty, notional = amount, EXACT.multiply(amount, price)
        return self.base_units(qty), self.unit_price(price), notional


def _okx_ts(value: object, name: str) -> int:
    ts = ms_text(value, name)
    if ts is None:
        raise CodecError("missing_field", name)
    return ts


def _text(value: object, name: str, *, optional: bool = False) -> str:
    if optional and (value is None or value == ""):
        return ""
    if not isinstance(value, str) or not 0 < len(value) <= _MAX_ID_CHARS:
        raise CodecError("bad_field", f"{name}: expected text, got {value!r:.40}")
    return value


def _optional_num(value: object, name: str) -> Decimal | None:
    return None if value is None or value == "" else parse_number(value, name)


def _instrument(entry: dict[str, Any]) -> OkxInstrument:
    inst_id = _text(entry.get("instId"), "instId")
    ct_type = entry.get("ctType")
    if ct_type not in ("linear", "inverse"):
        raise CodecError("bad_field", f"{inst_id}: ctType {ct_type!r:.20}")
    family = entry.get("uly") or entry.get("instFamily") or inst_id.rpartition("-")[0]
    parts = family.split("-") if isinstance(family, str) else []
    if len(parts) != 2 or not all(part.isalnum() for part in parts):
        raise CodecError("bad_field", f"{inst_id}: underlying {family!r:.40}")
    ct_mult = entry.get("ctMult")
    base, multiplier = split_multiplier(parts[0])
    return OkxInstrument(
        inst_id=inst_id,
        ct_type=ct_type,
        ct_val=positive(entry.get("ctVal"), f"{inst_id}: ctVal"),
        ct_mult=_ONE if ct_mult in (None, "") else positive(ct_mult, f"{inst_id}: ctMult"),
        ct_val_ccy=_text(entry.get("ctValCcy"), "ctValCcy", optional=True),
        settle_ccy=_text(entry.get("settleCcy"), "settleCcy", optional=True),
        info=SymbolInfo(base=base, quote=parts[1], instrument=instrument_name(base, parts[1]),
                        multiplier=multiplier),
    )


class OkxSwapAdapter(VenueAdapter):
    """OKX v5 swap protocol knowledge; see the module docstring for payloads and conventions.

    State kept across frames and reconnects: instrument metadata, the latest mark price per instrument,
    per-instrument timestamp high-water marks and the de-duplication windows.
    """

    venue = "okx"
    supports_top_n_by_oi = True
    default_ws_url = "wss://ws.okx.com:8443/ws/v5/public"
    default_rest_url = "https://www.okx.com"
    app_ping_message = "ping"
    app_ping_interval_s = 25.0
    max_connection_age_s = None
    stale_after_s = _DEFAULTS.stale_after_s
    liquidations_sampled = True

    def __init__(
        self,
        symbols: Iterable[str],
        ws_url: str | None = None,
        rest_url: str | None = None,
        *,
        instruments_refresh_s: float = _DEFAULTS.instruments_refresh_s,
        top_n_by_oi: int | None = None,
        stale_after_s: float = _DEFAULTS.stale_after_s,
        trade_dedupe_capacity: int = TRADE_DEDUPE_CAPACITY,
        liquidation_dedupe_capacity: int = LIQUIDATION_DEDUPE_CAPACITY,
    ) -> None:
        unique = dict.fromkeys(s.strip().upper() for s in symbols if s.strip())
        super().__init__(list(unique), ws_url, rest_url)
        self.instruments_refresh_s = instruments_refresh_s
        self.top_n_by_oi = top_n_by_oi
        self.stale_after_s = stale_after_s
        #: instruments chosen by open interest from the start-up response (empty until it is parsed)
        self.top_symbols: list[str] = []
        self._trade_capacity = max(1, trade_dedupe_capacity)
        self._liquidation_capacity = max(1, liquidation_dedupe_capacity)
        self._instruments: dict[str, OkxInstrument] = {}
        self._mark: dict[str, tuple[int, Decimal]] = {}
        self._last_ts: dict[tuple[str, str], int] = {}
        self._trades_seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._liquidations_seen: OrderedDict[LiquidationKey, None] = OrderedDict()
        #: channel → (metrics stream label, handler of one ``data`` element)
        self._handlers: dict[str, tuple[str, _Handler]] = {
            "liquidation-orders": ("liquidation", self._liquidation),
            "trades": ("trade", self._trade),
            "open-interest": ("open_interest", self._open_interest),
            "funding-rate": ("funding", self._funding),
            "mark-price": ("mark_price", self._mark_price),
        }

    @classmethod
    def from_config(cls, cfg: OkxConfig) -> OkxSwapAdapter:
        """Build from the ``venues.okx`` config section (what the registry calls)."""
        return cls(cfg.symbols, cfg.ws_url, cfg.rest_url, instruments_refresh_s=cfg.instruments_refresh_s,
                   top_n_by_oi=cfg.top_n_by_oi, stale_after_s=cfg.stale_after_s)

    # ------------------------------------------------------------------ plan and REST schedule

    def subscribed_symbols(self) -> list[str]:
        """Configured instruments, then the top-N by open interest that are not configured already."""
        return list(dict.fromkeys([*self.symbols, *self.top_symbols]))

    def ws_connections(self) -> list[WsConnectionPlan]:
        """Per-instrument channels sharded below OKX's args limit; liquidations on the first connection."""
        groups = [[dict(LIQUIDATION_ARG)]]  # always opens the first shard
        groups.extend([{"channel": channel, "instId": inst_id} for channel in CHANNELS]
                      for inst_id in self.subscribed_symbols())
        packed = pack_by_json_chars(((group, group) for group in groups), MAX_ARGS_CHARS_PER_CONNECTION)
        plans: list[WsConnectionPlan] = []
        message_id = 0
        for index, shard_groups in enumerate(packed):
            shard = [arg for group in shard_groups for arg in group]
            messages: list[str] = []
            for chunk in chunks(shard, MAX_ARGS_PER_SUBSCRIBE):
                message_id += 1
                messages.append(orjson.dumps({"id": str(message_id), "op": "subscribe", "args": chunk}).decode())
            plans.append(WsConnectionPlan(name=f"{self.venue}-{index}", url=self.ws_url,
                                          subscribe=tuple(messages)))
        return plans

    def startup_requests(self) -> list[str]:
        """Instrument metadata (contract sizes) first; open interest of all swaps for ``top_n_by_oi``."""
        return [INSTRUMENTS_REQUEST, *([OPEN_INTEREST_REQUEST] if self.top_n_by_oi else [])]

    def rest_polls(self) -> list[RestPoll]:
        """Refresh the instruments (new listings, changed contract sizes)."""
        return [RestPoll(path=INSTRUMENTS_REQUEST, interval_s=self.instruments_refresh_s, weight=1)]

    def reset_connection_state(self, connection: str) -> None:
        """Nothing to drop: there is no per-connection protocol state, and de-duplication must span the
        overlap of a notice-triggered rotation."""

    @property
    def instruments(self) -> Mapping[str, OkxInstrument]:
        """Instrument metadata by ``instId`` (empty until loaded)."""
        return self._instruments

    def last_mark_price(self, inst_id: str) -> Decimal | None:
        """The latest mark price of an instrument, as OKX quotes it."""
        mark = self._mark.get(inst_id)
        return None if mark is None else mark[1]

    # ------------------------------------------------------------------ driver hook

    def control(self, frame: str) -> ControlAction | None:
        """Rotate now (make-before-break) on the ``64008`` notice OKX sends 60 s before an upgrade."""
        if NOTICE_RECONNECT_CODE not in frame or "notice" not in frame:
            return None
        try:
            message = orjson.loads(frame)
        except orjson.JSONDecodeError:
            return None
        if (isinstance(message, dict) and message.get("event") == "notice"
                and message.get("code") == NOTICE_RECONNECT_CODE):
            return ControlAction(rotate=True)
        return None

    # ------------------------------------------------------------------ websocket frames

    def parse(self, raw: bytes | str, recv_ts_ms: int) -> ParseResult:
        """One websocket frame → events. Never raises: bad input becomes a :class:`Reject`, and one bad
        element of ``data`` (or of a liquidation's ``details``) costs only that element."""
        return parse_frame(self._parse_frame, raw, recv_ts_ms)

    def _parse_frame(self, raw: bytes | str, recv_ts: int, result: ParseResult) -> None:
        if raw in ("pong", b"pong"):
            result.control, result.stream = True, "control"
            return
        obj = json_object(load_json(raw, MAX_FRAME_BYTES), "frame")
        if "event" in obj:
            result.control, result.stream = True, "control"
            if obj["event"] == "error":
                raise CodecError("venue_error", f"code={obj.get('code')!r:.20} msg={obj.get('msg')!r:.160}")
            return
        channel = json_object(obj.get("arg"), "arg").get("channel")
        if not isinstance(channel, str) or channel not in self._handlers:
            raise CodecError("unknown_message", f"channel={channel!r:.40}")
        result.stream, handle = self._handlers[channel]
        each_item(obj.get("data"), "data", recv_ts, result, handle)

    def _instrument(self, value: object) -> OkxInstrument:
        inst_id = _text(value, "instId")
        meta = self._instruments.get(inst_id)
        if meta is None:
            raise CodecError("unknown_symbol", inst_id)
        return meta

    def _newer(self, channel: str, inst_id: str, ts: int, result: ParseResult) -> bool:
        """Per-instrument ``ts`` high-water mark: False (and a duplicate counted) for a repeat."""
        key = (channel, inst_id)
        last = self._last_ts.get(key)
        if last is not None and ts <= last:
            result.duplicates += 1
            return False
        self._last_ts[key] = ts
        return True

    def _liquidation(self, item: dict[str, Any], recv_ts: int, result: ParseResult) -> None:
        meta = self._instrument(item.get("instId"))
        each_item(item.get("details"), "details", recv_ts, result, partial(self._liquidation_detail, meta))

    def _liquidation_detail(self, meta: OkxInstrument, detail: dict[str, Any], recv_ts: int,
                            result: ParseResult) -> None:
        order_side, position = detail.get("side"), detail.get("posSide")
        side: LiquidatedSide
        if order_side == "sell":
            side = "long"  # the engine sold to close a long
        elif order_side == "buy":
            side = "short"
        else:
            raise CodecError("bad_field", f"side: expected buy or sell, got {order_side!r:.20}")
        if position not in (None, "", "net", side):
            raise CodecError("bad_field", f"side {order_side!r} contradicts posSide {position!r:.20}")
        contracts, price = positive(detail.get("sz"), "sz"), positive(detail.get("bkPx"), "bkPx")
        ts = _okx_ts(detail.get("ts"), "ts")
        qty, unit_price, notional = meta.size(contracts, price)
        if not remember(self._liquidations_seen, (meta.inst_id, ts, side, contracts, price),
                         self._liquidation_capacity):
            result.duplicates += 1
            return
        info = meta.info
        result.events.append(Liquidation(
            venue=self.venue, symbol=meta.inst_id, instrument=info.instrument, base=info.base, ts=ts,
            recv_ts=recv_ts, side=side, price=unit_price, qty=qty, notional_usd=notional, order_id=None,
            sampled=self.liquidations_sampled,
        ))

    def _trade(self, item: dict[str, Any], recv_ts: int, result: ParseResult) -> None:
        meta = self._instrument(item.get("instId"))
        trade_id = _text(item.get("tradeId"), "tradeId")
        taker = item.get("side")
        if taker not in ("buy", "sell"):
            raise CodecError("bad_field", f"side: expected buy or sell, got {taker!r:.20}")
        side: TakerSide = "buy" if taker == "buy" else "sell"
        contracts, price = positive(item.get("sz"), "sz"), positive(item.get("px"), "px")
        ts = _okx_ts(item.get("ts"), "ts")
        qty, unit_price, notional = meta.size(contracts, price)
        if not remember(self._trades_seen, (meta.inst_id, trade_id), self._trade_capacity):
            result.duplicates += 1
            return
        info = meta.info
        result.events.append(Trade(
            venue=self.venue, symbol=meta.inst_id, instrument=info.instrument, base=info.base, ts=ts,
            recv_ts=recv_ts, side=side, price=unit_price, qty=qty, notional_usd=notional, trade_id=trade_id,
        ))

    def _open_interest(self, item: dict[str, Any], recv_ts: int, result: ParseResult) -> None:
        meta = self._instrument(item.get("instId"))
        ts = _okx_ts(item.get("ts"), "ts")
        contracts = parse_number(item.get("oi"), "oi")
        coins, usd = _optional_num(item.get("oiCcy"), "oiCcy"), _optional_num(item.get("oiUsd"), "oiUsd")
        amount = EXACT.multiply(contracts, meta.contract_size)
        mark = self.last_mark_price(meta.inst_id)
        if meta.ct_type == "linear":
            coins = amount if coins is None else coins
            if usd is None and mark is not None:
                usd = EXACT.multiply(coins, mark)
        else:
            usd = amount if usd is None else usd
            if coins is None:
                if mark is None:
                    raise CodecError("missing_field", f"{meta.inst_id}: oiCcy, and no mark price to derive it")
                coins = INVERSE_QTY_CONTEXT.divide(amount, mark)
        if not self._newer("open-interest", meta.inst_id, ts, result):
            return
        info = meta.info
        result.events.append(OpenInterest(
            venue=self.venue, symbol=meta.inst_id, instrument=info.instrument, base=info.base, ts=ts,
            recv_ts=recv_ts,
            oi_qty=meta.base_units(coins), oi_usd=usd,
        ))

    def _funding(self, item: dict[str, Any], recv_ts: int, result: ParseResult) -> None:
        meta = self._instrument(item.get("instId"))
        ts = _okx_ts(item.get("ts"), "ts")
        rate = parse_number(item.get("fundingRate"), "fundingRate", allow_negative=True)
        settles = _okx_ts(item.get("fundingTime"), "fundingTime")
        following = ms_text(item.get("nextFundingTime"), "nextFundingTime")
        interval_h = DEFAULT_FUNDING_INTERVAL_H
        if following is not None:
            span = following - settles
            if span <= 0 or span % _HOUR_MS or span // _HOUR_MS > _MAX_FUNDING_INTERVAL_H:
                raise CodecError("bad_field", f"nextFundingTime - fundingTime = {span} ms is not whole hours")
            interval_h = span // _HOUR_MS
        if not self._newer("funding-rate", meta.inst_id, ts, result):
            return
        mark = self.last_mark_price(meta.inst_id)
        info = meta.info
        result.events.append(Funding(
            venue=self.venue, symbol=meta.inst_id, instrument=info.instrument, base=info.base, ts=ts,
            recv_ts=recv_ts, rate=rate, interval_h=interval_h, next_funding_ts=settles,
            mark_price=None if mark is None else meta.unit_price(mark), index_price=None,
        ))

    def _mark_price(self, item: dict[str, Any], recv_ts: int, result: ParseResult) -> None:
        meta = self._instrument(item.get("instId"))
        mark, ts = positive(item.get("markPx"), "markPx"), _okx_ts(item.get("ts"), "ts")
        if self._newer("mark-price", meta.inst_id, ts, result):
            self._mark[meta.inst_id] = (ts, mark)

    # ------------------------------------------------------------------ REST

    def parse_rest(self, endpoint: str, body: bytes | str, recv_ts_ms: int) -> ParseResult:
        """Instruments → metadata; the all-swap open interest → :attr:`top_symbols`. No events."""
        result = ParseResult()
        try:
            path = urlsplit(endpoint).path.rstrip("/")
            if path.endswith(INSTRUMENTS_PATH):
                handle: Callable[[list[Any], ParseResult], None] = self._load_instruments
            elif path.endswith(OPEN_INTEREST_PATH):
                handle = self._top_by_open_interest
            else:
                raise CodecError("unknown_endpoint", endpoint[:120])
            result.control, result.stream = True, "metadata"
            response = json_object(load_json(body, MAX_REST_BYTES), "response")
            if response.get("code") != "0":
                raise CodecError("venue_error", f"code={response.get('code')!r:.20} "
                                                f"msg={response.get('msg')!r:.120}")
            data = response.get("data")
            if not isinstance(data, list):
                raise CodecError("bad_field", "data: expected an array")
            handle(data, result)
        except CodecError as exc:
            result.rejects.append(reject(exc))
        except ValueError as exc:  # urlsplit on a malformed URL
            result.rejects.append(endpoint_reject(endpoint, exc))
        except Exception as exc:  # noqa: BLE001 - one response must never stop the poller
            result.rejects.append(internal_reject(exc))
        return result

    def _load_instruments(self, data: list[Any], result: ParseResult) -> None:
        for entry in data:
            try:
                meta = _instrument(json_object(entry, "data[]"))
            except (CodecError, DecimalException) as exc:
                result.rejects.append(reject(exc))
                continue
            if meta.inst_id in self._instruments or len(self._instruments) < _MAX_INSTRUMENTS:
                self._instruments[meta.inst_id] = meta

    def _top_by_open_interest(self, data: list[Any], result: ParseResult) -> None:
        ranked: list[tuple[Decimal, str]] = []
        for entry in data:
            try:
                row = json_object(entry, "data[]")
                meta = self._instrument(row.get("instId"))
                ranked.append((parse_number(row.get("oiUsd"), "oiUsd"), meta.inst_id))
            except CodecError as exc:
                result.rejects.append(reject(exc))
        ranked.sort(key=lambda pair: (-pair[0], pair[1]))
        if self.top_n_by_oi:
            self.top_symbols = [inst_id for _, inst_id in ranked[: self.top_n_by_oi]]

    # ------------------------------------------------------------------ replay server side

    def replay_replies(self, client_message: str) -> list[str]:
        """``ping`` → ``pong``; a subscribe/unsubscribe → one ack per arg, echoing ``id`` like OKX does."""
        if client_message == "ping":
            return ["pong"]
        try:
            message = orjson.loads(client_message)
        except orjson.JSONDecodeError:
            return []
        if not isinstance(message, dict) or message.get("op") not in ("subscribe", "unsubscribe"):
            return []
        args = message.get("args")
        if not isinstance(args, list) or not all(isinstance(arg, dict) for arg in args):
            return []
        head = {"id": message["id"]} if isinstance(message.get("id"), str) else {}
        return [orjson.dumps({**head, "event": message["op"], "arg": arg, "connId": "replay"}).decode()
                for arg in args]
