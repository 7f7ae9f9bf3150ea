"""Plain-Python baselines: what a straightforward implementation of the same work costs.

These are written the obvious way on purpose (``json`` module, ``Decimal``, a deque per window), with no
validation beyond what the normalization itself needs, so the benchmarks can say how the product compares
with the simple version of itself when no third-party baseline is available (and next to one when it is).

:class:`NaiveBinanceParser`
    Binance USDⓈ-M frames and open-interest REST bodies → the same :mod:`flushwatch.events` objects as
    :class:`ingest.binance.BinanceUsdmAdapter` (same side conventions, ``z × ap`` notionals, bundle
    multipliers, funding emitted on a rate change or once a minute, OI valued at the last mark), with the
    ``json`` module and ``Decimal``. ``bench/decode.py`` checks that both produce equal events.
:class:`NaiveLiquidationWindow`
    The core of a cascade detector and nothing else: per (base, liquidated side) a deque of
    (ts, notional) over a sliding event-time window, its running sum, and a fixed threshold crossing.
"""

from __future__ import annotations

import json
from collections import deque
from decimal import Decimal
from typing import Any

from flushwatch.events import Funding, Liquidation, MarketEvent, OpenInterest, Trade

_QUOTES = ("FDUSD", "BUSD", "USDT", "USDC", "USD")


def _split_symbol(symbol: str) -> tuple[str, str, Decimal]:
    """``1000PEPEUSDT`` → (``PEPE``, ``USDT``, 1000); ``BTCUSDT`` → (``BTC``, ``USDT``, 1)."""
    for quote in _QUOTES:
        if symbol.endswith(quote):
            base = symbol[: -len(quote)]
            break
    else:
        raise ValueError(symbol)
    digits = len(base) - len(base.lstrip("0123456789"))
    if digits >= 4 and base[0] == "1" and set(base[1:digits]) == {"0"}:
        return base[digits:], quote, Decimal(10) ** (digits - 1)
    return base, quote, Decimal(1)


class NaiveBinanceParser:
    """The same normalization as the product's adapter, written the straightforward way."""

    venue = "binance"

    def __init__(self) -> None:
        self.symbols: dict[str, tuple[str, str, Decimal]] = {}
        self.last_mark: dict[str, Decimal] = {}
        self.last_funding: dict[str, tuple[int, Decimal]] = {}

    def _info(self, symbol: str) -> tuple[str, str, Decimal]:
        info = self.symbols.get(symbol)
        if info is None:
            info = self.symbols[symbol] = _split_symbol(symbol)
        return info

    def parse(self, frame: str, recv_ts: int) -> list[MarketEvent]:
        msg = json.loads(frame)
        data = msg["data"] if "stream" in msg else msg
        items = data if isinstance(data, list) else [data]
        out: list[MarketEvent] = []
        for item in items:
            kind = item.get("e")
            if kind == "aggTrade":
                out.append(self._trade(item, recv_ts))
            elif kind == "forceOrder":
                out.append(self._liquidation(item["o"], recv_ts))
            elif kind == "markPriceUpdate":
                event = self._mark(item, recv_ts)
                if event is not None:
                    out.append(event)
        return out

    def _trade(self, d: dict[str, Any], recv_ts: int) -> Trade:
        base, quote, mult = self._info(d["s"])
        price, qty = Decimal(d["p"]), Decimal(d["q"])
        return Trade(venue="binance", symbol=d["s"], instrument=f"{base}-{quote}-PERP", base=base, ts=d["T"],
                     recv_ts=recv_ts, side="sell" if d["m"] else "buy", price=price / mult, qty=qty * mult,
                     notional_usd=price * qty, trade_id=str(d["a"]))

    def _liquidation(self, o: dict[str, Any], recv_ts: int) -> Liquidation:
        base, quote, mult = self._info(o["s"])
        qty = Decimal(o["z"]) or Decimal(o["q"])
        price = Decimal(o["ap"]) or Decimal(o["p"])
        return Liquidation(venue="binance", symbol=o["s"], instrument=f"{base}-{quote}-PERP", base=base,
                           ts=o["T"], recv_ts=recv_ts, side="long" if o["S"] == "SELL" else "short",
                           price=price / mult, qty=qty * mult, notional_usd=qty * price, order_id=None,
                           sampled=True)

    def _mark(self, d: dict[str, Any], recv_ts: int) -> Funding | None:
        symbol = d["s"]
        base, quote, mult = self._info(symbol)
        mark = Decimal(d["p"])
        self.last_mark[symbol] = mark
        if not d.get("r"):
            return None
        rate, ts = Decimal(d["r"]), d["E"]
        previous = self.last_funding.get(symbol)
        if previous is not None and previous[1] == rate and ts - previous[0] < 60_000:
            return None
        self.last_funding[symbol] = (ts, rate)
        index = Decimal(d["i"]) if d.get("i") else None
        return Funding(venue="binance", symbol=symbol, instrument=f"{base}-{quote}-PERP", base=base, ts=ts,
                       recv_ts=recv_ts, rate=rate, interval_h=8, next_funding_ts=d["T"] or None,
                       mark_price=mark / mult, index_price=None if index is None else index / mult)

    def parse_rest(self, endpoint: str, body: str, recv_ts: int) -> list[MarketEvent]:
        if "/openInterest" not in endpoint:
            return []
        d = json.loads(body)
        symbol = d["symbol"]
        base, quote, mult = self._info(symbol)
        oi = Decimal(d["openInterest"])
        mark = self.last_mark.get(symbol)
        return [OpenInterest(venue="binance", symbol=symbol, instrument=f"{base}-{quote}-PERP", base=base,
                             ts=d["time"], recv_ts=recv_ts, oi_qty=oi * mult,
                             oi_usd=None if mark is None else oi * mark)]


class NaiveLiquidationWindow:
    """Sliding event-time window sum of liquidated notional per (base, side), with a threshold crossing.

    ``on_event`` returns the number of threshold crossings it caused (0 or 1), so callers can check the
    baseline does work and not just skip events.
    """

    def __init__(self, window_ms: int = 60_000, threshold_usd: float = 150_000.0, min_events: int = 10) -> None:
        self.window_ms = window_ms
        self.threshold = threshold_usd
        self.min_events = min_events
        self.windows: dict[tuple[str, str], deque[tuple[int, float]]] = {}
        self.sums: dict[tuple[str, str], float] = {}
        self.active: set[tuple[str, str]] = set()
        self.crossings = 0

    def on_event(self, event: MarketEvent) -> int:
        if type(event) is not Liquidation:
            return 0
        key = (event.base, event.side)
        window = self.windows.get(key)
        if window is None:
            window = self.windows[key] = deque()
            self.sums[key] = 0.0
        notional = float(event.notional_usd)
        window.append((event.ts, notional))
        total = self.sums[key] + notional
        limit = event.ts - self.window_ms
        while window and window[0][0] <= limit:
            total -= window.popleft()[1]
        self.sums[key] = total
        if key not in self.active and len(window) >= self.min_events and total >= self.threshold:
            self.active.add(key)
            self.crossings += 1
            return 1
        if key in self.active and total < self.threshold / 4:
            self.active.discard(key)
        return 0
