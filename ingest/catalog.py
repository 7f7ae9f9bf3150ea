"""What each venue can and cannot provide, for ``flushwatch venues`` and the README."""

from __future__ import annotations

__all__ = ["VENUES", "describe_venues"]

VENUES: dict[str, dict[str, str]] = {
    "binance": {
        "name": "Binance USDⓈ-M futures",
        "streams": "!forceOrder@arr (liquidations), <sym>@aggTrade (trades), !markPrice@arr@1s (funding, mark); "
                   "REST /fapi/v1/openInterest polled within the weight budget",
        "limits": "liquidations are SAMPLED: at most one per symbol per second, so sums are lower bounds; "
                  "no open-interest stream (polled); connections are cut after 24 h (rotated before)",
    },
}


def describe_venues() -> str:
    """A human-readable table of the venues."""
    lines = []
    for key, info in VENUES.items():
        lines.append(f"{key}  ({info['name']})")
        lines.append(f"  streams: {info['streams']}")
        lines.append(f"  limits:  {info['limits']}")
    return "\n".join(lines)
