"""What each venue can and cannot provide, for ``flushwatch venues`` and the README."""

from __future__ import annotations

__all__ = ["VENUES", "describe_venues"]

VENUES: dict[str, dict[str, str]] = {
    "binance": {
        "name": "Binance USDⓈ-M futures",
        "streams": "!forceOrder@arr (liquidations, all symbols), <sym>@aggTrade (trades), !markPrice@arr@1s "
                   "(funding, mark); REST /fapi/v1/openInterest polled within the weight budget",
        "limits": "liquidations are SAMPLED: at most one per symbol per second, so sums are lower bounds; "
                  "no open-interest stream (polled); connections are cut after 24 h (rotated before)",
    },
    "bybit": {
        "name": "Bybit v5 linear (USDT/USDC perpetuals and futures)",
        "streams": "allLiquidation.<SYM> (every liquidation, 500 ms batches), publicTrade.<SYM> (trades), "
                   "tickers.<SYM> (open interest, funding, mark/index; snapshot then deltas)",
        "limits": "per-symbol topics only, no all-market liquidation stream, so only subscribed symbols are "
                  "covered; the liquidation price is the bankruptcy price, so notionals are approximate; "
                  "inverse (USD) contracts are not ingested",
    },
    "okx": {
        "name": "OKX v5 swaps (linear and inverse)",
        "streams": "liquidation-orders instType=SWAP (all swaps), trades / open-interest / funding-rate / "
                   "mark-price per instrument; REST /api/v5/public/instruments at start-up and periodically",
        "limits": "liquidations are SAMPLED ('doesn't represent the total') and not time-ordered, so sums are "
                  "lower bounds; trades are aggregated per taker order and price; sizes are contracts "
                  "converted with ctVal; no index price with funding; connections are replaced on the "
                  "64008 upgrade notice",
    },
    "bitmex": {
        "name": "BitMEX perpetuals and futures",
        "streams": "liquidation:<SYM> (open liquidation orders, counted on insert), trade:<SYM>, "
                   "instrument:<SYM> (open interest, funding, mark, index); REST /api/v1/instrument/active at "
                   "start-up (contract multipliers)",
        "limits": "liquidation rows have no timestamp (receive time used) and are sized at the bankruptcy "
                  "price; an order inserted and still open across a reconnect gap is not counted; instruments "
                  "not quoted in USD/USDT/USDC are refused",
    },
    "deribit": {
        "name": "Deribit perpetuals and futures",
        "streams": "trades.<INST>.100ms (trades; liquidations are trades flagged M/T/MT, complete), "
                   "ticker.<INST>.100ms (open interest, funding per 8 h, mark, index); heartbeats answered",
        "limits": "no dedicated liquidation channel; raw intervals need auth so 100 ms batches are used; "
                  "options and combos are not ingested; funding is continuous (no next funding time)",
    },
    "hyperliquid": {
        "name": "Hyperliquid perpetuals",
        "streams": "trades and activeAssetCtx per coin (open interest, hourly funding, mark, oracle)",
        "limits": "NO LIQUIDATIONS: Hyperliquid has no public market-wide liquidation stream (user feeds "
                  "only), so cascades there are seen through trades, price and open interest; asset contexts "
                  "have no timestamp (receive time used); no start-up REST (POST-only API)",
    },
}


def describe_venues() -> str:
    """A human-readable list of the venues."""
    lines = []
    for key, info in VENUES.items():
        lines.append(f"{key}  ({info['name']})")
        lines.append(f"  streams: {info['streams']}")
        lines.append(f"  limits:  {info['limits']}")
    return "\n".join(lines)
