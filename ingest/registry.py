"""Venue name -> adapter class. The config selects venues by these names; no entry-point magic."""

from __future__ import annotations

from flushwatch.config import Config
from flushwatch.errors import ConfigError
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
    adapter, section = ADAPTERS[venue], getattr(config.venues, venue)
    if getattr(section, "top_n_by_oi", None) and not adapter.supports_top_n_by_oi:
        raise ConfigError(f"venues.{venue}.top_n_by_oi: {venue} has no public call listing every instrument's "
                          f"open interest; list venues.{venue}.symbols instead")
    return adapter.from_config(section)
