"""Baseline for bench/decode.py: cryptofeed's own Binance USDⓈ-M parsers, driven offline on our frames.

Runs in the baseline virtualenv (cryptofeed pins its own dependency set), as a subprocess of
``bench/decode.py``; it imports nothing from flushwatch. It prints one JSON line with the timings.

How cryptofeed is driven, and what it does per frame
    ``BinanceFutures.message_handler(frame, conn, receipt_ts)`` is cryptofeed's entry point for every
    websocket frame and REST poll body: ``yapic.json.loads(frame, parse_float=Decimal)``, dispatch on the
    stream and event type, build its Cython ``Trade`` / ``Liquidation`` / ``Funding`` / ``OpenInterest``
    object with ``Decimal`` fields and await the registered callbacks (here: a counter). The feed is built
    with its symbol table pre-seeded (``Symbols.set``), since its constructor would otherwise fetch
    exchangeInfo over HTTP; nothing else is patched.

    One adaptation: cryptofeed subscribes ``<symbol>@markPrice`` per symbol and cannot take the
    all-market ``!markPrice@arr@1s`` array frame (its handler calls ``msg.get`` on the list). For those
    frames this driver does what cryptofeed does for per-symbol frames: parse the frame once with the
    same ``yapic.json.loads(..., parse_float=Decimal)`` and call its ``_funding`` handler on each element.

Usage: ``python bench/baseline_cryptofeed.py RECORDING [--repeat N]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import re
import sys
import time
from decimal import Decimal

from cryptofeed.defines import BINANCE_FUTURES, FUNDING, LIQUIDATIONS, OPEN_INTEREST, PERPETUAL, TRADES
from cryptofeed.exchanges import BinanceFutures
from cryptofeed.symbols import Symbol, Symbols
from yapic import json as yjson

QUOTES = ("FDUSD", "BUSD", "USDT", "USDC", "USD")
KINDS = ("aggTrade", "forceOrder", "markPrice", "rest")


def kind_of(line: dict) -> str:
    if line["kind"] == "rest":
        return "rest"
    data = line["data"]
    for kind in ("aggTrade", "forceOrder", "markPrice"):
        if kind in data[:40]:
            return kind
    return "other"


def load(path: str) -> list[tuple[str, str]]:
    opener = open
    if path.endswith(".gz"):
        import gzip  # noqa: PLC0415

        opener = gzip.open  # type: ignore[assignment]
    out = []
    with opener(path, "rt", encoding="utf-8") as handle:
        for raw in handle:
            if raw.strip():
                line = json.loads(raw)
                out.append((kind_of(line), line["data"]))
    return out


def seed_symbols(frames: list[tuple[str, str]]) -> list[str]:
    """Register every symbol the frames mention, as exchangeInfo would have (perpetuals only)."""
    found = set()
    for _kind, data in frames:
        found.update(re.findall(r'"s(?:ymbol)?":"([A-Z0-9]+)"', data))
    mapping = {}
    for symbol in sorted(found):
        for quote in QUOTES:
            if symbol.endswith(quote) and len(symbol) > len(quote):
                mapping[Symbol(symbol[: -len(quote)], quote, type=PERPETUAL).normalized] = symbol
                break
    Symbols.set(BINANCE_FUTURES, mapping, {"tick_size": {}, "instrument_type": dict.fromkeys(mapping, PERPETUAL)})
    return list(mapping)


def make_feed(symbols: list[str], counts: dict[str, int]) -> BinanceFutures:
    def counter(name: str):
        async def cb(obj, receipt_timestamp):
            counts[name] += 1

        return cb

    return BinanceFutures(symbols=symbols, channels=[TRADES, LIQUIDATIONS, FUNDING, OPEN_INTEREST],
                          callbacks={TRADES: counter("trade"), LIQUIDATIONS: counter("liquidation"),
                                     FUNDING: counter("funding"), OPEN_INTEREST: counter("open_interest")})


async def run_once(feed: BinanceFutures, frames: list[tuple[str, str]]) -> float:
    handler = feed.message_handler
    funding = feed._funding
    loads = yjson.loads
    now = time.time()
    started = time.perf_counter()
    for kind, data in frames:
        if kind == "markPrice":
            for item in loads(data, parse_float=Decimal)["data"]:
                await funding(item, now)
        else:
            await handler(data, None, now)
    return time.perf_counter() - started


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recording")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    frames = load(args.recording)
    symbols = seed_symbols(frames)
    by_kind = {kind: [f for f in frames if f[0] == kind] for kind in KINDS}
    gc.collect()
    gc.freeze()  # as on the flushwatch side: the frames held in memory are not the garbage collector's work
    times: list[float] = []
    counts: dict[str, int] = {}
    for _ in range(args.repeat):
        counts = {"trade": 0, "liquidation": 0, "funding": 0, "open_interest": 0}
        feed = make_feed(symbols, counts)
        gc.collect()
        times.append(asyncio.run(run_once(feed, frames)))
    per_kind = {}
    for kind, subset in by_kind.items():
        if subset:
            best = min(asyncio.run(run_once(make_feed(symbols, dict.fromkeys(counts, 0)), subset))
                       for _ in range(args.repeat))
            per_kind[kind] = {"frames": len(subset), "seconds": best}
    import cryptofeed  # noqa: PLC0415

    print(json.dumps({
        "frames": len(frames), "seconds": times, "objects": counts, "per_kind": per_kind,
        "cryptofeed": getattr(cryptofeed, "__version__", "2.4.1"), "python": sys.version.split()[0],
        "symbols": len(symbols),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
