"""Hyperliquid perpetuals: trades and per-coin asset contexts (open interest, funding, mark, oracle).

**No liquidations.** Hyperliquid has NO public market-wide liquidation stream: liquidations appear only in
user-scoped feeds (``userFills`` entries with a ``liquidation`` object, ``userEvents``, ``notification``),
at most 10 users per IP, and public ``trades`` do not flag them (exchanges.md §6.2, citing the maintainer's
answer in nktkas/hyperliquid #17 and the GoldRush/Hydromancer docs [3P]). This adapter therefore emits
**no** :class:`~flushwatch.events.Liquidation` events at all. Hyperliquid contributes trades (taker-flow
corroboration of a flush), open interest and funding; complete liquidation data would need a paid indexer
(Hydromancer ``liquidationFills``, GoldRush) or a node, which is out of scope.

Protocol facts are from exchanges.md §6 (read from hyperliquid.gitbook.io: websocket, subscriptions,
timeouts-and-heartbeats, rate limits, notation) and the samples below. The pitfalls handled here are its
§11 items 5, 7, 10, 11 and 13.

Channels, on ``wss://api.hyperliquid.xyz/ws`` (one coin per subscription message, no batching [3P])::

    subscribe       {"method":"subscribe","subscription":{"type":"trades","coin":"BTC"}}
                    {"method":"subscribe","subscription":{"type":"activeAssetCtx","coin":"BTC"}}
    ack             {"channel":"subscriptionResponse","data":{"method":"subscribe","subscription":
                     {"type":"trades","coin":"SOL"}}}
    trades          (row as recorded in the docs.rs source of the df-hyperliquid-core crate, 2026-10-08)
                    {"channel":"trades","data":[{"coin":"BTC","side":"A","px":"80600.0","sz":"0.16",
                     "time":1791480516231,"hash":"0x3306…","tid":717978735161105,"users":["0x65…","0xa1…"]}]}
    activeAssetCtx  {"channel":"activeAssetCtx","data":{"coin":"BTC","ctx":{"funding":"0.0000052974",
                     "openInterest":"36295.80812","prevDayPx":"77759.0","dayNtlVlm":"4490636699.33",
                     "premium":"-0.0005540084","oraclePx":"80684.7","markPx":"80640.0","midPx":"80639.5",
                     "impactPxs":["80637.2","80640.0"],"dayBaseVlm":"56265.69068"}}}
    keepalive       {"method":"ping"} → {"channel":"pong"}
    error           {"channel":"error","data":"Invalid subscription …"}

REST (``POST https://api.hyperliquid.xyz/info``, e.g. ``{"type":"metaAndAssetCtxs"}``) is POST-only, so
nothing is fetched at start-up: coins need no metadata (sizes are in coin units, the quote is USDC).

Conventions, and why:

* **Trade side.** ``side`` is the aggressor: the official Notation page says "B = Bid = Buy, A = Ask =
  Short. Side is aggressing side for trades" (checked on hyperliquid.gitbook.io .../api/notation); so ``B``
  ⇒ taker ``buy``, ``A`` ⇒ taker ``sell``.
* **Units.** ``sz`` is in coin (base) units (Notation: "Sz: Size. In units of coin"), ``px`` in USDC, so
  ``notional_usd = px × sz`` exactly (USDC taken as USD, §11.16). Coins listed in thousands carry a
  ``k`` prefix (``kPEPE`` = 1000 PEPE): they are unbundled like Binance's ``1000PEPE`` (base ``PEPE``,
  qty × 1000, price / 1000, notional unchanged). Instruments are ``<COIN>-USDC-PERP``. Coin names that are
  not plain perpetual names (spot ``@107``, ``PURR/USDC``, builder-deployed ``dex:COIN``) are refused as
  ``unknown_symbol``.
* **Duplicates** (§11.7): the first ``trades`` frame after a (re)subscribe replays recent trades [3P], and
  trades are keyed by ``(coin, tid)`` in a bounded LRU that survives reconnects, so a replayed trade is
  counted once. ``tid`` is not sequential per coin, so no gaps are counted.
* **activeAssetCtx** has no timestamp: ``ts = recv_ts`` (§11.5). ``openInterest`` is in coins:
  ``oi_qty = openInterest``, ``oi_usd = openInterest × markPx``. ``funding`` is the current **hourly** rate
  (funding is paid every hour, §6.4/§11.10), so ``interval_h = 1`` and ``next_funding_ts`` is the next whole
  hour after the receive time [inferred from "paid every hour"]; ``mark_price = markPx``,
  ``index_price = oraclePx``. The context is pushed often, so an OpenInterest is emitted when
  ``openInterest`` changes or at most every :data:`OI_REVALUE_INTERVAL_MS` when only its USD value moved,
  and a Funding when the rate changes or at most every :data:`FUNDING_REFRESH_INTERVAL_MS`.
* **Keepalive** (§6.1, §11.11): the server closes a connection it sent nothing to for 60 s; we send
  ``{"method":"ping"}`` every :data:`APP_PING_INTERVAL_S` (30 s), or every ``stale_after_s / 2`` if that is
  shorter, and ``{"channel":"pong"}`` is a control frame. Limits (§6.1): 1000 subscriptions per IP (two per
  coin here) and 2000 messages per minute.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, Final

import orjson

from flushwatch.config import HyperliquidConfig
from flushwatch.errors import CodecError
from flushwatch.events import Funding, OpenInterest, TakerSide, Trade
from ingest.base import ParseResult, VenueAdapter, WsConnectionPlan
from ingest.parsing import (
    EXACT,
    Emitted,
    already_seen,
    each_item,
    json_object,
    load_json,
    optional_price,
    parse_frame,
    parse_number,
    positive,
    remember,
    timestamp_ms,
)
from ingest.symbols import SymbolInfo, instrument_name, split_multiplier

__all__ = ["HyperliquidAdapter", "normalize_hyperliquid_coin"]

_DEFAULTS: Final = HyperliquidConfig.model_validate({})

MAX_FRAME_BYTES: Final = 4 * 1024 * 1024
APP_PING_INTERVAL_S: Final = 30.0
PING_MESSAGE: Final = '{"method":"ping"}'
SUBSCRIPTION_TYPES: Final = ("trades", "activeAssetCtx")
#: re-emit open interest whose USD value moved with the mark at most this often
OI_REVALUE_INTERVAL_MS: Final = 10_000
#: re-emit an unchanged funding rate (with fresh mark and oracle) at most this often
FUNDING_REFRESH_INTERVAL_MS: Final = 60_000
FUNDING_INTERVAL_H: Final = 1
TRADE_DEDUPE_CAPACITY: Final = 50_000
QUOTE: Final = "USDC"
#: Hyperliquid lists some low-priced coins per thousand: ``kPEPE`` is 1000 PEPE
MULTIPLIER_PREFIXES: Final[Mapping[str, Decimal]] = {"k": Decimal(1000)}

_COIN = re.compile(r"[A-Za-z0-9]{1,24}")
_HOUR_MS: Final = 3_600_000
_MAX_TID: Final = 2**63
_ONE: Final = Decimal(1)


def normalize_hyperliquid_coin(coin: str) -> SymbolInfo | None:
    """``BTC`` → BTC-USDC-PERP; ``kPEPE`` → PEPE-USDC-PERP with multiplier 1000; None for spot and
    builder-deployed names."""
    if not _COIN.fullmatch(coin):
        return None
    base, multiplier = split_multiplier(coin, MULTIPLIER_PREFIXES)
    return SymbolInfo(base=base, quote=QUOTE, instrument=instrument_name(base, QUOTE), multiplier=multiplier)


class HyperliquidAdapter(VenueAdapter):
    """Hyperliquid protocol knowledge; see the module docstring — in particular: no liquidations.

    State kept across frames and reconnects: the trade de-duplication window and what was last emitted
    per coin.
    """

    venue = "hyperliquid"
    default_ws_url = "wss://api.hyperliquid.xyz/ws"
    default_rest_url = "https://api.hyperliquid.xyz"
    app_ping_message = PING_MESSAGE
    app_ping_interval_s = APP_PING_INTERVAL_S
    max_connection_age_s = None
    stale_after_s = _DEFAULTS.stale_after_s
    #: there is no liquidation feed at all (see the module docstring), so nothing is sampled either
    liquidations_sampled = False

    def __init__(
        self,
        symbols: Iterable[str],
        ws_url: str | None = None,
        rest_url: str | None = None,
        *,
        stale_after_s: float = _DEFAULTS.stale_after_s,
        ping_interval_s: float = APP_PING_INTERVAL_S,
        trade_dedupe_capacity: int = TRADE_DEDUPE_CAPACITY,
    ) -> None:
        # coin names are case-sensitive (kPEPE), so only whitespace is normalized
        unique = dict.fromkeys(s.strip() for s in symbols if s.strip())
        super().__init__(list(unique), ws_url, rest_url)
        self.stale_after_s = stale_after_s
        self.app_ping_interval_s = min(ping_interval_s, stale_after_s / 2)
        self._trade_capacity = max(1, trade_dedupe_capacity)
        self._trades_seen: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._emitted: dict[str, Emitted] = {}

    @classmethod
    def from_config(cls, cfg: HyperliquidConfig) -> HyperliquidAdapter:
        """Build from the ``venues.hyperliquid`` config section (what the registry calls)."""
        return cls(cfg.symbols, cfg.ws_url, cfg.rest_url, stale_after_s=cfg.stale_after_s)

    # ------------------------------------------------------------------ connection plan

    def ws_connections(self) -> list[WsConnectionPlan]:
        """One connection; one subscribe message per coin and subscription type."""
        messages = tuple(
            orjson.dumps({"method": "subscribe", "subscription": {"type": kind, "coin": coin}}).decode()
            for coin in self.symbols
            for kind in SUBSCRIPTION_TYPES
        )
        return [WsConnectionPlan(name=f"{self.venue}-0", url=self.ws_url, subscribe=messages)]

    def reset_connection_state(self, connection: str) -> None:
        """Nothing to drop: the replayed first trades frame must meet the de-duplication window."""

    # ------------------------------------------------------------------ websocket frames

    def parse(self, raw: bytes | str, recv_ts_ms: int) -> ParseResult:
        """One websocket frame → events (never liquidations). Never raises: bad input becomes a
        :class:`Reject`, and one bad trade of a batch costs only that trade."""
        return parse_frame(self._parse_frame, raw, recv_ts_ms)

    def _parse_frame(self, raw: bytes | str, recv_ts: int, result: ParseResult) -> None:
        obj = json_object(load_json(raw, MAX_FRAME_BYTES), "frame")
        channel, data = obj.get("channel"), obj.get("data")
        if channel in ("subscriptionResponse", "pong"):
            result.control, result.stream = True, "control"
        elif channel == "error":
            result.control, result.stream = True, "control"
            raise CodecError("venue_error", str(data)[:200])
        elif channel == "trades":
            result.stream = "trade"
            each_item(data, "data", recv_ts, result, self._trade)
        elif channel == "activeAssetCtx":
            result.stream = "ticker"
            self._asset_ctx(json_object(data, "data"), recv_ts, result)
        else:
            raise CodecError("unknown_message", f"channel={channel!r:.40}")

    @staticmethod
    def _coin(value: object) -> tuple[str, SymbolInfo]:
        if not isinstance(value, str) or not value:
            raise CodecError("bad_field", f"coin: expected a coin name, got {value!r:.40}")
        info = normalize_hyperliquid_coin(value)
        if info is None:
            raise CodecError("unknown_symbol", f"{value[:40]}: not a perpetual coin name")
        return value, info

    def _trade(self, data: dict[str, Any], recv_ts: int, result: ParseResult) -> None:
        coin, info = self._coin(data.get("coin"))
        taker = data.get("side")
        side: TakerSide
        if taker == "B":
            side = "buy"
        elif taker == "A":
            side = "sell"
        else:
            raise CodecError("bad_field", f"side: expected B or A, got {taker!r:.40}")
        price = positive(data.get("px"), "px")
        size = positive(data.get("sz"), "sz")
        ts = timestamp_ms(data.get("time"), "time")
        tid = data.get("tid")
        if not isinstance(tid, int) or isinstance(tid, bool) or not 0 <= tid < _MAX_TID:
            raise CodecError("bad_field", f"tid: expected a trade id, got {tid!r:.40}")
        multiplier = info.multiplier
        event = Trade(
            venue=self.venue, symbol=coin, instrument=info.instrument, base=info.base, ts=ts, recv_ts=recv_ts,
            side=side,
            price=price if multiplier == _ONE else EXACT.divide(price, multiplier),
            qty=size if multiplier == _ONE else EXACT.multiply(size, multiplier),
            notional_usd=EXACT.multiply(price, size), trade_id=str(tid),
        )
        key = (coin, tid)
        seen = self._trades_seen
        if already_seen(seen, key):
            result.duplicates += 1
            return
        remember(seen, key, self._trade_capacity)
        result.events.append(event)

    def _asset_ctx(self, data: dict[str, Any], recv_ts: int, result: ParseResult) -> None:
        coin, info = self._coin(data.get("coin"))
        ctx = json_object(data.get("ctx"), "ctx")
        mark = positive(ctx.get("markPx"), "markPx")
        oracle = optional_price(ctx.get("oraclePx"), "oraclePx")
        oi = parse_number(ctx.get("openInterest"), "openInterest")
        rate = parse_number(ctx.get("funding"), "funding", allow_negative=True)
        ts = timestamp_ms(recv_ts, "recv_ts")  # the message carries no time
        multiplier = info.multiplier
        emitted = self._emitted.setdefault(coin, Emitted())
        oi_usd = EXACT.multiply(oi, mark)  # venue units × venue price: a bundle cancels out
        if emitted.open_interest_due(oi, oi_usd, ts, OI_REVALUE_INTERVAL_MS):
            result.events.append(OpenInterest(
                venue=self.venue, symbol=coin, instrument=info.instrument, base=info.base, ts=ts,
                recv_ts=recv_ts, oi_qty=oi if multiplier == _ONE else EXACT.multiply(oi, multiplier),
                oi_usd=oi_usd,
            ))
        if not emitted.funding_due(rate, ts, FUNDING_REFRESH_INTERVAL_MS):
            return
        result.events.append(Funding(
            venue=self.venue, symbol=coin, instrument=info.instrument, base=info.base, ts=ts, recv_ts=recv_ts,
            rate=rate, interval_h=FUNDING_INTERVAL_H, next_funding_ts=(ts // _HOUR_MS + 1) * _HOUR_MS,
            mark_price=mark if multiplier == _ONE else EXACT.divide(mark, multiplier),
            index_price=None if oracle is None else oracle if multiplier == _ONE
            else EXACT.divide(oracle, multiplier),
        ))

    # ------------------------------------------------------------------ replay server side

    def replay_replies(self, client_message: str) -> list[str]:
        """``{"method":"ping"}`` → ``{"channel":"pong"}``; subscribe/unsubscribe → the
        ``subscriptionResponse`` echoing the request, as Hyperliquid does."""
        try:
            message = orjson.loads(client_message)
        except orjson.JSONDecodeError:
            return []
        if not isinstance(message, dict):
            return []
        method = message.get("method")
        if method == "ping":
            return ['{"channel":"pong"}']
        subscription = message.get("subscription")
        if method not in ("subscribe", "unsubscribe") or not isinstance(subscription, dict):
            return []
        return [orjson.dumps({"channel": "subscriptionResponse",
                              "data": {"method": method, "subscription": subscription}}).decode()]
