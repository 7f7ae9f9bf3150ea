"""Venue name -> adapter class. The config selects venues by these names; no entry-point magic."""

from __future__ import annotations

from flushwatch.config import Config
from ingest.base import VenueAdapter
from ingest.binance import BinanceUsdmAdapter
from ingest.bitmex import BitmexAdapter
from ingest.bybit import BybitLinearAdapter
from ingest.deribit import DeribitAdapter
from ingest.hyperliquid import HyperliquidAdapter
from ingest.okx import OkxSwapAdapter

__all__ = ["ADAPTERS", "create_adapter"]

ADAPTERS: dict[str, type[VenueAdapter]] = {
    adapter.venue: adapter
    for adapter in (BinanceUsdmAdapter, BybitLinearAdapter, OkxSwapAdapter, BitmexAdapter, DeribitAdapter,
                    HyperliquidAdapter)
}


def create_adapter(venue: str, config: Config) -> VenueAdapter:
    """Build the adapter for ``venue`` from its config section; raises KeyError for an unknown venue."""
    if venue not in ADAPTERS:
        raise KeyError(f"unknown venue {venue!r}; known: {', '.join(sorted(ADAPTERS))}")
    return ADAPTERS[venue].from_config(getattr(config.venues, venue))
