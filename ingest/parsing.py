"""Shared helpers for venue parsers: bounded numbers, timestamps, JSON frames, exact arithmetic.

Every venue sends prices and sizes as text or JSON numbers of its own shape; these helpers turn them into
exact :class:`~decimal.Decimal` values or raise :class:`~flushwatch.errors.CodecError` with a bounded
``kind`` (``missing_field``, ``bad_number``, ``non_finite``, ``negative``, ``bad_field``,
``not_an_object``, ``malformed_json``, ``frame_too_large``), which the adapters turn into rejects.
Numbers are bounded in length and exponent so that every product stays exact in :data:`EXACT`.
"""

from __future__ import annotations

from collections import OrderedDict
from decimal import Context, Decimal, DivisionByZero, Inexact, InvalidOperation, Overflow
from typing import Any, Final

import orjson

from flushwatch.codec import parse_decimal
from flushwatch.errors import CodecError
from ingest.symbols import SymbolInfo

__all__ = [
    "EXACT",
    "base_units",
    "json_object",
    "load_json",
    "ms_text",
    "optional_price",
    "parse_number",
    "positive",
    "remember",
    "timestamp_ms",
    "unit_price",
]

#: numbers longer than this are not prices: refusing them keeps every product below exact precision
_MAX_NUMBER_CHARS: Final = 64
#: and so is a number outside 1e±40 (also keeps Decimal arithmetic far from overflow)
_MAX_ADJUSTED_EXPONENT: Final = 40
#: epoch ms beyond year ~33658 is garbage, not a timestamp
_MAX_TS_MS: Final = 10**15

#: products of two bounded numbers need at most 128 digits: anything inexact is a bug, so it traps
EXACT: Final = Context(prec=160, traps=[Inexact, InvalidOperation, DivisionByZero, Overflow])
_ZERO: Final = Decimal(0)
_ONE: Final = Decimal(1)


def parse_number(value: object, name: str, *, allow_negative: bool = False) -> Decimal:
    if value is None:
        raise CodecError("missing_field", name)
    if isinstance(value, str) and len(value) > _MAX_NUMBER_CHARS:
        raise CodecError("bad_number", f"{name}: {len(value)} characters")
    number = parse_decimal(value, name, allow_negative=allow_negative)
    if number and abs(number.adjusted()) > _MAX_ADJUSTED_EXPONENT:
        raise CodecError("bad_number", f"{name}: {value!r:.40} out of range")
    return number


def positive(value: object, name: str) -> Decimal:
    number = parse_number(value, name)
    if not number:
        raise CodecError("bad_number", f"{name}: zero")
    return number


def optional_price(value: object, name: str) -> Decimal | None:
    """Index prices are informative only: absent, empty or zero means unknown rather than bad."""
    if value is None or value == "":
        return None
    number = parse_number(value, name)
    return number or None


def timestamp_ms(value: object, name: str) -> int:
    if value is None:
        raise CodecError("missing_field", name)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < _MAX_TS_MS:
        raise CodecError("bad_field", f"{name}: expected epoch milliseconds, got {value!r:.40}")
    return value


def json_object(value: object, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CodecError("not_an_object", f"{name}: expected an object, got {type(value).__name__}")
    return value


def load_json(raw: bytes | str, limit: int) -> Any:
    if len(raw) > limit:
        raise CodecError("frame_too_large", f"{len(raw)} bytes > {limit}")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CodecError("malformed_json", str(exc)[:200]) from None


def base_units(qty: Decimal, info: SymbolInfo) -> Decimal:
    return qty if info.multiplier == _ONE else EXACT.multiply(qty, info.multiplier)


def unit_price(price: Decimal, info: SymbolInfo) -> Decimal:
    return price if info.multiplier == _ONE else EXACT.divide(price, info.multiplier)



def ms_text(value: object, name: str) -> int | None:
    """Epoch ms sent as a digit string (or an int); ``""`` and ``"0"`` mean "none" (dated futures)."""
    if isinstance(value, bool):
        raise CodecError("bad_field", f"{name}: expected epoch milliseconds, got {value!r}")
    if value is None or value in ("", "0", 0):
        return None
    if isinstance(value, str):
        if not value.isdigit() or len(value) > 16:
            raise CodecError("bad_field", f"{name}: expected epoch milliseconds, got {value!r:.40}")
        value = int(value)
    return timestamp_ms(value, name)


def remember(seen: OrderedDict[Any, None], key: object, capacity: int) -> bool:
    """Add ``key`` to a bounded LRU; False when it was already there (a duplicate)."""
    if key in seen:
        seen.move_to_end(key)
        return False
    seen[key] = None
    if len(seen) > capacity:
        seen.popitem(last=False)
    return True
