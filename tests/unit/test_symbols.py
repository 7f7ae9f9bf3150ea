from __future__ import annotations

from decimal import Decimal

import pytest

from ingest.symbols import (
    SymbolInfo,
    SymbolMeta,
    instrument_name,
    normalize_binance_symbol,
    split_multiplier,
)


@pytest.mark.parametrize(
    ("symbol", "base", "quote", "instrument", "multiplier", "expiry"),
    [
        ("BTCUSDT", "BTC", "USDT", "BTC-USDT-PERP", 1, None),
        ("BTCUSDC", "BTC", "USDC", "BTC-USDC-PERP", 1, None),
        ("ETHBUSD", "ETH", "BUSD", "ETH-BUSD-PERP", 1, None),
        ("BTCFDUSD", "BTC", "FDUSD", "BTC-FDUSD-PERP", 1, None),
        ("BTCUSDT_250328", "BTC", "USDT", "BTC-USDT-20250328", 1, "20250328"),
        ("BTCUSD_PERP", "BTC", "USD", "BTC-USD-PERP", 1, None),
        ("1000PEPEUSDT", "PEPE", "USDT", "PEPE-USDT-PERP", 1000, None),
        ("1000PEPEUSDC", "PEPE", "USDC", "PEPE-USDC-PERP", 1000, None),
        ("1000000MOGUSDT", "MOG", "USDT", "MOG-USDT-PERP", 1_000_000, None),
        ("1MBABYDOGEUSDT", "BABYDOGE", "USDT", "BABYDOGE-USDT-PERP", 1_000_000, None),
        ("1000XUSDT", "X", "USDT", "X-USDT-PERP", 1000, None),
        ("1INCHUSDT", "1INCH", "USDT", "1INCH-USDT-PERP", 1, None),
        ("USDCUSDT", "USDC", "USDT", "USDC-USDT-PERP", 1, None),
        ("币安人生USDT", "币安人生", "USDT", "币安人生-USDT-PERP", 1, None),
    ],
)
def test_heuristic_normalization(
    symbol: str, base: str, quote: str, instrument: str, multiplier: int, expiry: str | None
) -> None:
    assert normalize_binance_symbol(symbol) == SymbolInfo(
        base=base, quote=quote, instrument=instrument, multiplier=Decimal(multiplier), expiry=expiry
    )


@pytest.mark.parametrize(
    "symbol", ["BTC", "", "USDT", "BTCEUR", "BTC USDT", "BTC-USDT", "BTCUSDT_2503", "BTCUSDT_XYZ", "A" * 70]
)
def test_unknown_symbols(symbol: str) -> None:
    assert normalize_binance_symbol(symbol) is None


def test_metadata_wins_over_the_suffix_heuristic() -> None:
    # a quote the heuristic does not know, and a bundled base as exchangeInfo spells it
    meta = SymbolMeta(symbol="BTCEUR", base_asset="BTC", quote_asset="EUR")
    assert normalize_binance_symbol("BTCEUR", meta) == SymbolInfo("BTC", "EUR", "BTC-EUR-PERP")
    meta = SymbolMeta(symbol="1000SHIBUSDT", base_asset="1000SHIB", quote_asset="USDT")
    info = normalize_binance_symbol("1000SHIBUSDT", meta)
    assert info == SymbolInfo("SHIB", "USDT", "SHIB-USDT-PERP", Decimal(1000))


def test_metadata_delivery_date_names_an_expiring_future() -> None:
    # 2025-06-27 08:00 UTC, a Binance quarterly delivery time
    meta = SymbolMeta(
        symbol="ETHUSDT_X",
        base_asset="ETH",
        quote_asset="USDT",
        contract_type="CURRENT_QUARTER",
        delivery_date_ms=1751011200000,
    )
    info = normalize_binance_symbol("ETHUSDT_X", meta)
    assert info is not None
    assert info.instrument == "ETH-USDT-20250627"
    assert info.expiry == "20250627"
    # perpetuals carry a far-future deliveryDate on Binance; it must not turn them into futures
    perp = SymbolMeta("BTCUSDT", "BTC", "USDT", "PERPETUAL", "TRADING", 4133404800000)
    assert normalize_binance_symbol("BTCUSDT", perp) == SymbolInfo("BTC", "USDT", "BTC-USDT-PERP")


@pytest.mark.parametrize(
    ("asset", "expected", "multiplier"),
    [
        ("PEPE", "PEPE", 1),
        ("1000PEPE", "PEPE", 1000),
        ("10000LADYS", "LADYS", 10_000),
        ("1000000MOG", "MOG", 1_000_000),
        ("10000000AIDOGE", "AIDOGE", 10_000_000),
        ("1MBABYDOGE", "BABYDOGE", 1_000_000),
        ("1INCH", "1INCH", 1),
        ("100PEPE", "100PEPE", 1),  # below 1000 is a name, not a bundle
        ("2000X", "2000X", 1),  # not a power of ten
        ("1000", "1000", 1),
        ("1M", "1M", 1),
        ("10001X", "10001X", 1),
    ],
)
def test_split_multiplier(asset: str, expected: str, multiplier: int) -> None:
    assert split_multiplier(asset) == (expected, Decimal(multiplier))


def test_split_multiplier_takes_venue_prefixes() -> None:
    # e.g. a venue that writes kPEPE for a thousand PEPE
    assert split_multiplier("kPEPE", {"k": Decimal(1000)}) == ("PEPE", Decimal(1000))
    assert split_multiplier("kPEPE") == ("kPEPE", Decimal(1))


def test_instrument_name() -> None:
    assert instrument_name("BTC", "USDT") == "BTC-USDT-PERP"
    assert instrument_name("BTC", "USDT", "20250328") == "BTC-USDT-20250328"
