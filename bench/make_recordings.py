"""Build recordings for the demo, the tests and the benchmarks.

``demo``
    Rebuilds the bundled demo recording ``flushwatch/data/demo_binance_2025-01-27.jsonl.gz`` from the real
    Binance liquidation CSV (the 2025-01-27 16:50-17:20 UTC session, with the 16:53-16:56 long flush). The
    CSV holds the ``o`` object's fields of each ``!forceOrder@arr`` message with "USDT" stripped from the
    whole line and most rows written twice by two logger processes. This command de-duplicates on the 11
    raw columns, restores the symbol (``BTC`` → ``BTCUSDT``; ``BTCUSDC`` stays), keeps the original
    strings of ``q``/``p``/``ap``/``l``/``z``, sets ``E = T`` (the CSV has no event time) and wraps each
    event in the combined-stream frame Binance sends, received ``DEMO_LATENCY_MS`` after ``T``. The gzip
    output is byte-stable (no timestamp or name in the header), so re-running it changes nothing.

``synthetic N OUT``
    A deterministic (seeded) Binance recording of ``N`` lines for speed tests and benchmarks: mostly
    ``aggTrade`` frames on six symbols, ``!markPrice@arr@1s`` arrays every second, an open-interest REST
    response per symbol every 10 s, and all-market liquidations: a sampled background drizzle plus a
    60-90 s long flush (or short squeeze) on one base every ~10 minutes, with taker selling and a price
    drop to match. ``OUT`` ending in ``.gz`` is gzip-compressed.

Run ``python bench/make_recordings.py --help``.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from flushwatch.recording import RecordLine  # noqa: E402 - the script runs from a checkout

DEFAULT_CSV = Path("/work/shared/data/real/binance_forceorder_allsymbols_2025-01-26_2025-02-06.csv")
DEMO_OUT = REPO / "flushwatch" / "data" / "demo_binance_2025-01-27.jsonl.gz"
DEMO_START = datetime(2025, 1, 27, 16, 50, tzinfo=UTC)
DEMO_END = datetime(2025, 1, 27, 17, 21, tzinfo=UTC)  # the session's last event is 17:20:29.520
#: fixed receive latency: the CSV has no receive time, and a constant keeps the replay deterministic
DEMO_LATENCY_MS = 150
LIVE_ENDPOINT = "wss://fstream.binance.com/market/stream?streams=!forceOrder@arr/!markPrice@arr@1s"
FORCE_ORDER_FIELDS = ("s", "S", "o", "f", "q", "p", "ap", "X", "l", "z", "T")


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def restore_symbol(stripped: str) -> str:
    """Undo the logger's ``line.replace("USDT", "")``: USDC-quoted contracts kept their suffix."""
    if stripped.endswith("USDC") and stripped != "USDC":
        return stripped
    return stripped + "USDT"


def force_order_frame(row: list[str]) -> tuple[int, str]:
    """One CSV row → (T, the combined-stream frame text exactly as Binance formats it)."""
    values = dict(zip(FORCE_ORDER_FIELDS, row[:11], strict=True))
    trade_time = int(values["T"])
    order: dict[str, object] = {key: values[key] for key in FORCE_ORDER_FIELDS}
    order["s"] = restore_symbol(values["s"])
    order["T"] = trade_time
    frame = {"stream": "!forceOrder@arr", "data": {"e": "forceOrder", "E": trade_time, "o": order}}
    return trade_time, orjson.dumps(frame).decode()


def build_demo(csv_path: Path) -> list[RecordLine]:
    """The demo session as recording lines, in receive order (ties keep the CSV's order)."""
    seen: set[tuple[str, ...]] = set()
    frames: list[tuple[int, str]] = []
    start, end = _ms(DEMO_START), _ms(DEMO_END)
    with csv_path.open(newline="", encoding="utf-8") as handle:
        for row in csv.reader(handle):
            key = tuple(row[:11])
            if len(row) < 11 or key in seen:
                continue
            seen.add(key)
            if start <= int(row[10]) < end:
                frames.append(force_order_frame(row))
    frames.sort(key=lambda item: item[0])
    return [
        RecordLine(trade_time + DEMO_LATENCY_MS, "binance", "ws", LIVE_ENDPOINT, text)
        for trade_time, text in frames
    ]


def write_recording(lines: Iterator[RecordLine] | list[RecordLine], path: Path) -> int:
    """Write a recording; gzip (byte-stable: mtime 0, no file name) when the path ends in ``.gz``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("wb") as raw:
        sink: io.BufferedIOBase | gzip.GzipFile
        sink = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) if path.suffix == ".gz" else raw
        buffer: list[bytes] = []
        for line in lines:
            buffer.append(line.to_json())
            count += 1
            if len(buffer) >= 10_000:
                sink.write(b"\n".join(buffer) + b"\n")
                buffer.clear()
        if buffer:
            sink.write(b"\n".join(buffer) + b"\n")
        if sink is not raw:
            sink.close()
    return count


# ---------------------------------------------------------------------------------------------- synthetic


@dataclass
class _Symbol:
    symbol: str
    base: str
    price: float
    price_decimals: int
    qty_decimals: int
    trade_usd: float  # typical aggTrade notional
    agg_id: int = 1_000_000
    trade_id: int = 5_000_000


def _symbols() -> list[_Symbol]:
    return [
        _Symbol("BTCUSDT", "BTC", 102_000.0, 1, 3, 8_000),
        _Symbol("BTCUSDC", "BTC", 102_010.0, 1, 3, 3_000),
        _Symbol("ETHUSDT", "ETH", 3_200.0, 2, 3, 5_000),
        _Symbol("SOLUSDT", "SOL", 240.0, 2, 2, 2_500),
        _Symbol("DOGEUSDT", "DOGE", 0.35, 5, 0, 1_500),
        _Symbol("XRPUSDT", "XRP", 3.1, 4, 1, 1_500),
    ]


def _fmt(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}"


def synthetic_lines(n: int, seed: int = 20250127, start_ms: int = 1_737_936_000_000) -> Iterator[RecordLine]:
    """``n`` recording lines of synthetic Binance traffic, in receive order; see the module doc."""
    rng = random.Random(seed)
    symbols = _symbols()
    ws = "wss://fstream.binance.com/market/stream?streams=" + "/".join(
        ["!forceOrder@arr", "!markPrice@arr@1s", *(f"{s.symbol.lower()}@aggTrade" for s in symbols)]
    )
    now = start_ms
    next_mark = start_ms + 1000
    next_oi = start_ms + 500
    burst_base = ""
    burst_side = "SELL"
    burst_until = 0
    next_burst = start_ms + 5 * 60_000
    last_liq: dict[str, int] = {}
    produced = 0
    while produced < n:
        now += rng.randint(1, 9)  # ~200 frames per second on average
        if now >= next_burst:
            burst_base = rng.choice(["BTC", "ETH", "SOL", "DOGE", "XRP"])
            burst_side = "SELL" if rng.random() < 0.7 else "BUY"
            burst_until = now + rng.randint(60_000, 90_000)
            next_burst = now + rng.randint(8 * 60_000, 12 * 60_000)
        in_burst = now < burst_until
        if now >= next_mark:
            items = []
            for s in symbols:
                items.append({
                    "e": "markPriceUpdate", "E": next_mark, "s": s.symbol,
                    "p": _fmt(s.price, s.price_decimals + 1), "P": _fmt(s.price * 1.0001, s.price_decimals + 1),
                    "i": _fmt(s.price * 0.9999, s.price_decimals + 1), "r": "0.00010000",
                    "T": (next_mark // 28_800_000 + 1) * 28_800_000,
                })
            frame = {"stream": "!markPrice@arr@1s", "data": items}
            yield RecordLine(next_mark + 40, "binance", "ws", ws, orjson.dumps(frame).decode())
            next_mark += 1000
            produced += 1
            continue
        if now >= next_oi:
            s = symbols[(next_oi // 10_000) % len(symbols)]
            oi = 1e9 / s.price * (1 + 0.01 * rng.random())
            body = {"openInterest": _fmt(oi, s.qty_decimals), "symbol": s.symbol, "time": next_oi}
            path = f"/fapi/v1/openInterest?symbol={s.symbol}"
            yield RecordLine(next_oi + 80, "binance", "rest", path, orjson.dumps(body).decode())
            next_oi += 10_000 // len(symbols)
            produced += 1
            continue
        s = rng.choice(symbols)
        hot = in_burst and s.base == burst_base
        drift = -1 if burst_side == "SELL" else 1
        s.price *= 1 + rng.gauss(drift * 0.00004 if hot else 0.0, 0.00005)
        liq_gap = 1000 if hot else 20_000
        if rng.random() < (0.5 if hot else 0.01) and now - last_liq.get(s.symbol, 0) >= liq_gap:
            last_liq[s.symbol] = now  # Binance pushes at most one per symbol per second
            usd = rng.uniform(20_000, 60_000) * (10 if s.base == "BTC" else 3) if hot else rng.uniform(200, 5_000)
            side = burst_side if hot else rng.choice(["SELL", "BUY"])
            qty = max(usd / s.price, 10**-s.qty_decimals)
            avg = s.price * (0.999 if side == "SELL" else 1.001)
            limit = avg * (0.99 if side == "SELL" else 1.01)
            order = {
                "s": s.symbol, "S": side, "o": "LIMIT", "f": "IOC", "q": _fmt(qty, s.qty_decimals),
                "p": _fmt(limit, s.price_decimals), "ap": _fmt(avg, s.price_decimals), "X": "FILLED",
                "l": _fmt(qty, s.qty_decimals), "z": _fmt(qty, s.qty_decimals), "T": now,
            }
            frame = {"stream": "!forceOrder@arr", "data": {"e": "forceOrder", "E": now + 2, "o": order}}
        else:
            sell = rng.random() < ((0.8 if burst_side == "SELL" else 0.2) if hot else 0.5)
            qty = max(rng.expovariate(1 / s.trade_usd) / s.price, 10**-s.qty_decimals)
            trades = rng.randint(1, 4)
            s.agg_id += 1
            data = {
                "e": "aggTrade", "E": now + 1, "a": s.agg_id, "s": s.symbol,
                "p": _fmt(s.price, s.price_decimals), "q": _fmt(qty, s.qty_decimals),
                "f": s.trade_id + 1, "l": s.trade_id + trades, "T": now, "m": sell,
            }
            s.trade_id += trades
            frame = {"stream": f"{s.symbol.lower()}@aggTrade", "data": data}
        yield RecordLine(now + rng.randint(20, 60) // 10 * 10, "binance", "ws", ws, orjson.dumps(frame).decode())
        produced += 1


def _monotonic(lines: Iterator[RecordLine]) -> Iterator[RecordLine]:
    """Receive times as a recorder writes them: never decreasing."""
    last = 0
    for line in lines:
        out = line if line.recv_ts >= last else RecordLine(last, line.venue, line.kind, line.endpoint, line.data)
        last = out.recv_ts
        yield out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="rebuild the bundled demo recording from the real liquidation CSV")
    demo.add_argument("--csv", type=Path, default=DEFAULT_CSV, help=f"the Binance CSV (default: {DEFAULT_CSV})")
    demo.add_argument("--out", type=Path, default=DEMO_OUT, help=f"output path (default: {DEMO_OUT})")
    synth = sub.add_parser("synthetic", help="write a deterministic synthetic Binance recording")
    synth.add_argument("n", type=int, help="number of recording lines")
    synth.add_argument("out", type=Path, help="output path (.jsonl or .jsonl.gz)")
    synth.add_argument("--seed", type=int, default=20250127, help="random seed (default: 20250127)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        lines = build_demo(args.csv)
        count = write_recording(lines, args.out)
        print(f"wrote {count} frames to {args.out}", file=sys.stderr)
    else:
        count = write_recording(_monotonic(synthetic_lines(args.n, args.seed)), args.out)
        print(f"wrote {count} lines to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
