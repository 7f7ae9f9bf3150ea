"""Shared helpers for venue parsers: bounded numbers, timestamps, JSON frames, exact arithmetic.

Every venue sends prices and sizes as text or JSON numbers of its own shape; these helpers turn them into
exact :class:`~decimal.Decimal` values or raise :class:`~flushwatch.errors.CodecError` with a bounded
``kind`` (``missing_field``, ``bad_number``, ``non_finite``, ``negative``, ``bad_field``,
``not_an_object``, ``malformed_json``, ``frame_too_large``), which the adapters turn into rejects.
Numbers are bounded in length and exponent so that every product stays exact in :data:`EXACT`.

The rest is protocol-independent machinery every adapter needs in the same form, kept here once so the
venues cannot drift apart: how an exception becomes a :class:`~ingest.base.Reject` (:func:`reject`,
:func:`parse_frame`, :func:`each_item`), the bounded de-duplication windows (:func:`remember`,
:func:`already_seen`), and the thinning of ticker streams into OpenInterest and Funding events
(:class:`Emitted`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Context, Decimal, DecimalException, DivisionByZero, Inexact, InvalidOperation, Overflow
from typing import Any, Final

import orjson

from flushwatch.codec import parse_decimal
from flushwatch.errors import CodecError
from ingest.base import ParseResult, Reject
from ingest.symbols import SymbolInfo

__all__ = [
    "EXACT",
    "Emitted",
    "already_seen",
    "base_units",
    "each_item",
    "endpoint_reject",
    "internal_reject",
    "json_object",
    "load_json",
    "ms_text",
    "optional_price",
    "parse_frame",
    "parse_number",
    "positive",
    "reject",
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


def already_seen(seen: OrderedDict[Any, None], key: object) -> bool:
    """True when ``key`` is in the window (its recency refreshed): the caller counts a duplicate.

    Adapters test this before building an event and :func:`remember` the key only once the event is built,
    so a frame that fails half-way is not mistaken for a duplicate when the venue sends it again."""
    if key in seen:
        seen.move_to_end(key)
        return True
    return False


def reject(exc: CodecError | DecimalException) -> Reject:
    """The reject for bad input: a codec error keeps its kind; inexact or impossible arithmetic on parsed
    numbers (a bug or a hostile value) counts as ``bad_number``."""
    if isinstance(exc, CodecError):
        return Reject(exc.kind, exc.detail)
    return Reject("bad_number", f"arithmetic: {type(exc).__name__}")


def internal_reject(exc: Exception) -> Reject:
    """Any other exception: one frame or response must never stop the ingest loop or the poller."""
    return Reject("internal_error", f"{type(exc).__name__}: {exc}"[:200])


def endpoint_reject(endpoint: str, exc: ValueError) -> Reject:
    """A REST endpoint that ``urlsplit`` cannot read."""
    return Reject("unknown_endpoint", f"{endpoint[:80]}: {exc}"[:200])


def each_item(items: object, name: str, recv_ts: int, result: ParseResult,
              handle: Callable[[dict[str, Any], int, ParseResult], None]) -> None:
    """A batch (``name`` must be a JSON array) handled object by object: one bad element becomes one
    reject and costs only itself, not the trades or liquidations around it."""
    if not isinstance(items, list):
        raise CodecError("bad_field", f"{name}: expected an array, got {type(items).__name__}")
    for item in items:
        try:
            handle(json_object(item, f"{name}[]"), recv_ts, result)
        except (CodecError, DecimalException) as exc:
            result.rejects.append(reject(exc))


def parse_frame(parse: Callable[[bytes | str, int, ParseResult], None], raw: bytes | str, recv_ts_ms: int,
                ) -> ParseResult:
    """Run one adapter's frame parser so that it never raises: whatever it raises becomes one reject,
    after the events and rejects it added before that. The single definition of
    :meth:`~ingest.base.VenueAdapter.parse`'s "never raises" contract for every venue."""
    result = ParseResult()
    try:
        parse(raw, recv_ts_ms, result)
    except (CodecError, DecimalException) as exc:
        result.rejects.append(reject(exc))
    except Exception as exc:  # noqa: BLE001 - one frame must never stop the ingest loop
        result.rejects.append(internal_reject(exc))
    return result


@dataclass(slots=True)
class Emitted:
    """What was last emitted for one instrument, to thin ticker streams; survives reconnects so a re-sent
    snapshot is not news.

    Venues tick every 100 ms to 1 s; detectors need a change, not every tick. ``oi_valuation`` is whatever
    the venue derives from OI and price (USD value, or base quantity and USD value); ``funding`` is the
    venue's funding key (the rate, or rate, interval and next funding time).
    """

    oi: Decimal | None = None
    oi_valuation: object = None
    oi_ts: int = 0
    funding: object = None
    funding_ts: int = 0

    def open_interest_due(self, oi: Decimal, valuation: object, ts: int, revalue_ms: int) -> bool:
        """True (and recorded as emitted) when OI changed, or when only its valuation moved and the last
        emission is at least ``revalue_ms`` old: a mark moving every tick must not re-emit unchanged OI."""
        changed = oi != self.oi
        revalued = valuation != self.oi_valuation and ts - self.oi_ts >= revalue_ms
        if not (changed or revalued):
            return False
        self.oi, self.oi_valuation, self.oi_ts = oi, valuation, ts
        return True

    def funding_due(self, key: object, ts: int, refresh_ms: int) -> bool:
        """True (and recorded as emitted) when the funding key changed, or at most every ``refresh_ms`` to
        refresh the mark and index prices that ride along."""
        if key == self.funding and ts - self.funding_ts < refresh_ms:
            return False
        self.funding, self.funding_ts = key, ts
        return True
