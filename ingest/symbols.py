"""Venue symbol → normalized ``base`` / ``instrument``, plus the contract multiplier hidden in the name.

Detectors aggregate one asset across venues (DESIGN.md §4: Kafka key = ``base``), so every adapter must map
its native symbols onto the same names: ``BTCUSDT`` (Binance), ``BTC-USDT-SWAP`` (OKX) and ``BTCUSDT``
(Bybit) all become base ``BTC``, instrument ``BTC-USDT-PERP``.

Low-priced coins are listed in bundles: Binance ``1000PEPEUSDT`` quotes the price of 1000 PEPE and counts
quantity in lots of 1000 PEPE; ``1MBABYDOGEUSDT`` bundles a million. Such a symbol is normalized to the real
asset (base ``PEPE``, instrument ``PEPE-USDT-PERP``) with ``multiplier`` 1000, and the adapter converts
sizes to base units (``qty × multiplier``) and prices to per-unit prices (``price / multiplier``); the
notional is unchanged. The instrument deliberately names the unbundled asset so that the same coin lines up
across venues whatever lot each venue chose. :func:`split_multiplier` is venue-neutral for that reason
(Bybit uses ``10000…`` and ``1000000…`` prefixes too; a venue with its own prefixes passes them in).

Expiring futures get the delivery date instead of ``PERP``: ``BTCUSDT_250328`` → ``BTC-USDT-20250328``.

Normalization is pure and cheap but still string work, so adapters cache the result per symbol.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

__all__ = [
    "DEFAULT_MULTIPLIER_PREFIXES",
    "KNOWN_QUOTES",
    "SymbolInfo",
    "SymbolMeta",
    "instrument_name",
    "normalize_binance_symbol",
    "split_multiplier",
]

#: quote assets recognised from the end of a symbol when no venue metadata is loaded; longest first so
#: ``ETHFDUSD`` is not read as ``ETHFD`` quoted in ``USD``
KNOWN_QUOTES: tuple[str, ...] = ("FDUSD", "BUSD", "USDT", "USDC", "USD")

#: non-numeric bundle prefixes (numeric ones such as ``1000`` are recognised as powers of ten)
DEFAULT_MULTIPLIER_PREFIXES: Mapping[str, Decimal] = {"1M": Decimal(1_000_000)}

_ONE = Decimal(1)
_DIGITS = frozenset("0123456789")
#: ``1000`` is the smallest bundle any venue uses; ``1INCH`` or ``10SET`` must stay untouched
_MIN_BUNDLE_POWER = 3


@dataclass(frozen=True, slots=True)
class SymbolInfo:
    """The normalized identity of a venue symbol.

    ``multiplier`` is how many base units one venue quantity unit holds (1 for ordinary symbols);
    ``expiry`` is ``YYYYMMDD`` for expiring futures and None for perpetuals.
    """

    base: str
    quote: str
    instrument: str
    multiplier: Decimal = _ONE
    expiry: str | None = None


@dataclass(frozen=True, slots=True)
class SymbolMeta:
    """What a venue's instrument list says about one symbol (Binance ``/fapi/v1/exchangeInfo``).

    Kept separate from :class:`SymbolInfo` because metadata is what the venue told us and may be missing;
    normalization works without it and prefers it when present.
    """

    symbol: str
    base_asset: str
    quote_asset: str
    contract_type: str = "PERPETUAL"
    status: str = "TRADING"
    delivery_date_ms: int | None = None


def split_multiplier(
    asset: str, prefixes: Mapping[str, Decimal] = DEFAULT_MULTIPLIER_PREFIXES
) -> tuple[str, Decimal]:
    """Split a bundle prefix off an asset name: ``1000PEPE`` → (``PEPE``, 1000), ``BTC`` → (``BTC``, 1).

    A numeric prefix counts only when it is a power of ten of at least 1000 followed by a letter, which
    keeps real names that start with digits (``1INCH``) intact.
    """
    for prefix, multiplier in prefixes.items():
        rest = asset[len(prefix) :]
        if asset.startswith(prefix) and rest and rest[0].isalpha():
            return rest, multiplier
    end = 0
    while end < len(asset) and asset[end] in _DIGITS:
        end += 1
    digits, rest = asset[:end], asset[end:]
    if (
        len(digits) - 1 >= _MIN_BUNDLE_POWER
        and digits[0] == "1"
        and digits.count("0") == len(digits) - 1
        and rest
        and rest[0].isalpha()
    ):
        return rest, Decimal(10) ** (len(digits) - 1)
    return asset, _ONE


def instrument_name(base: str, quote: str, expiry: str | None = None) -> str:
    """The normalized instrument: ``BTC-USDT-PERP`` for perpetuals, ``BTC-USDT-20250328`` for futures."""
    return f"{base}-{quote}-{expiry or 'PERP'}"


def _split_quote(pair: str) -> tuple[str, str] | None:
    for quote in KNOWN_QUOTES:
        if pair.endswith(quote) and len(pair) > len(quote):
            return pair[: -len(quote)], quote
    return None


def _expiry_from_suffix(suffix: str) -> str | None:
    """``250328`` → ``20250328``; anything that is not six digits is not a delivery date."""
    if len(suffix) == 6 and all(c in _DIGITS for c in suffix):
        return "20" + suffix
    return None


def _valid_symbol(symbol: str) -> bool:
    # printable and free of separators; non-ASCII is allowed (Binance lists e.g. a Chinese-named coin)
    return 0 < len(symbol) <= 64 and symbol.isprintable() and " " not in symbol and "-" not in symbol


def normalize_binance_symbol(symbol: str, meta: SymbolMeta | None = None) -> SymbolInfo | None:
    """Normalize a Binance USDⓈ-M symbol; None when it cannot be understood.

    With ``meta`` (from exchangeInfo) its base and quote assets win over the suffix heuristic, since a new
    quote asset or an odd name is exactly what the heuristic would get wrong. Without it the symbol must end
    in one of :data:`KNOWN_QUOTES`, optionally followed by ``_YYMMDD`` (expiring future) or ``_PERP``.
    """
    if not _valid_symbol(symbol):
        return None
    pair, _, suffix = symbol.partition("_")
    expiry: str | None = None
    if suffix and suffix != "PERP":
        expiry = _expiry_from_suffix(suffix)
        if expiry is None and meta is None:
            return None
    if meta is not None and meta.base_asset and meta.quote_asset:
        raw_base, quote = meta.base_asset, meta.quote_asset
        if expiry is None and "PERPETUAL" not in meta.contract_type and meta.delivery_date_ms:
            expiry = _date_of(meta.delivery_date_ms)
    else:
        split = _split_quote(pair)
        if split is None:
            return None
        raw_base, quote = split
    base, multiplier = split_multiplier(raw_base)
    return SymbolInfo(
        base=base,
        quote=quote,
        instrument=instrument_name(base, quote, expiry),
        multiplier=multiplier,
        expiry=expiry,
    )


def _date_of(epoch_ms: int) -> str | None:
    try:
        return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).strftime("%Y%m%d")
    except (OverflowError, OSError, ValueError):
        return None
