"""JSON codec for events and alerts: the one place where the wire format is defined.

Decimals go on the wire as JSON strings in plain notation ("0.00000001", never "1E-8"), so no consumer in
any language has to round money through a binary float. Decoding validates every field and raises
:class:`~flushwatch.errors.CodecError` with a short ``kind`` for metrics and a detail for the log; fields
the decoder does not know are ignored, so newer producers can add optional fields.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, DecimalException, InvalidOperation
from typing import Annotated, Any, Final, Literal

import msgspec
import orjson

from flushwatch.errors import CodecError
from flushwatch.events import (
    EVENT_TYPES,
    SCHEMA_VERSION,
    SEVERITIES,
    Alert,
    Funding,
    Liquidation,
    MarketEvent,
    OpenInterest,
    Trade,
)

__all__ = [
    "alert_from_dict",
    "alert_to_dict",
    "decimal_text",
    "decode_alert",
    "decode_event",
    "encode_alert",
    "encode_event",
    "event_from_dict",
    "event_to_dict",
    "parse_decimal",
]


def decimal_text(value: Decimal) -> str:
    """Render a Decimal exactly, in plain notation, with no exponent.

    ``str`` is three times cheaper than ``format(value, "f")`` and gives the same text whenever it
    chooses plain notation, which it does for every ordinary price and size; the rest (tiny or
    positive-exponent values) takes ``format``.
    """
    text = str(value)
    if "E" in text:
        text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def parse_decimal(value: object, field_name: str, *, allow_negative: bool = False) -> Decimal:
    """Parse a venue or wire value into a finite Decimal, rejecting NaN, infinities and bad text.

    Floats are accepted (some venues send JSON numbers) and go through ``repr`` so that ``0.1`` becomes
    ``Decimal("0.1")``, not the binary expansion.
    """
    if isinstance(value, bool):
        raise CodecError("bad_number", f"{field_name}: boolean where a number was expected")
    if isinstance(value, str):
        text = value
    elif isinstance(value, int):
        return Decimal(value) if allow_negative or value >= 0 else _negative(field_name, value)
    elif isinstance(value, float):
        text = repr(value)
    else:
        raise CodecError("bad_number", f"{field_name}: expected a number, got {type(value).__name__}")
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise CodecError("bad_number", f"{field_name}: {text[:40]!r} is not a number") from None
    if not number.is_finite():
        raise CodecError("non_finite", f"{field_name}: {text[:40]!r}")
    if number < 0 and not allow_negative:
        return _negative(field_name, number)
    return number


def _negative(field_name: str, value: object) -> Decimal:
    raise CodecError("negative", f"{field_name}: {value} is negative")


def _dec_or_none(value: Decimal | None) -> str | None:
    return None if value is None else decimal_text(value)


def event_to_dict(event: MarketEvent) -> dict[str, Any]:
    """The JSON object of an event, field order fixed for byte-stable output."""
    out: dict[str, Any] = {
        "type": event.type,
        "venue": event.venue,
        "symbol": event.symbol,
        "instrument": event.instrument,
        "base": event.base,
        "ts": event.ts,
        "recv_ts": event.recv_ts,
        "schema_version": SCHEMA_VERSION,
    }
    if isinstance(event, Trade):  # first: nearly every event is a trade
        out["side"] = event.side
        out["price"] = decimal_text(event.price)
        out["qty"] = decimal_text(event.qty)
        out["notional_usd"] = decimal_text(event.notional_usd)
        out["trade_id"] = event.trade_id
    elif isinstance(event, Liquidation):
        out["side"] = event.side
        out["price"] = decimal_text(event.price)
        out["qty"] = decimal_text(event.qty)
        out["notional_usd"] = decimal_text(event.notional_usd)
        out["order_id"] = event.order_id
        out["sampled"] = event.sampled
    elif isinstance(event, OpenInterest):
        out["oi_qty"] = decimal_text(event.oi_qty)
        out["oi_usd"] = _dec_or_none(event.oi_usd)
    elif isinstance(event, Funding):
        out["rate"] = decimal_text(event.rate)
        out["interval_h"] = event.interval_h
        out["next_funding_ts"] = event.next_funding_ts
        out["mark_price"] = _dec_or_none(event.mark_price)
        out["index_price"] = _dec_or_none(event.index_price)
    else:  # pragma: no cover - a new event type must be added here
        raise TypeError(f"no codec for {type(event).__name__}")
    return out


def encode_event(event: MarketEvent) -> bytes:
    """Serialize an event to its wire form (UTF-8 JSON)."""
    return orjson.dumps(event_to_dict(event))


def _load(raw: bytes | str) -> dict[str, Any]:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CodecError("malformed_json", str(exc)[:200]) from None
    if not isinstance(obj, dict):
        raise CodecError("not_an_object", f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _str(obj: dict[str, Any], name: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value:
        raise CodecError("bad_field", f"{name}: expected a non-empty string, got {value!r:.60}")
    return value


def _int(obj: dict[str, Any], name: str) -> int:
    value = obj.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise CodecError("bad_field", f"{name}: expected an integer, got {value!r:.60}")
    return value


def _opt_int(obj: dict[str, Any], name: str) -> int | None:
    return None if obj.get(name) is None else _int(obj, name)


def _dec(obj: dict[str, Any], name: str, *, allow_negative: bool = False) -> Decimal:
    if name not in obj:
        raise CodecError("missing_field", name)
    return parse_decimal(obj[name], name, allow_negative=allow_negative)


def _opt_dec(obj: dict[str, Any], name: str) -> Decimal | None:
    return None if obj.get(name) is None else _dec(obj, name)


def _choice(obj: dict[str, Any], name: str, allowed: tuple[str, ...]) -> Any:
    value = obj.get(name)
    if value not in allowed:
        raise CodecError("bad_field", f"{name}: {value!r:.40} not one of {allowed}")
    return value


def event_from_dict(obj: dict[str, Any]) -> MarketEvent:
    """Build and validate an event from its JSON object."""
    kind = obj.get("type")
    if not isinstance(kind, str) or kind not in EVENT_TYPES:  # a list or object here is not hashable
        raise CodecError("unknown_type", f"type={kind!r:.40}")
    common: dict[str, Any] = {
        "venue": _str(obj, "venue"),
        "symbol": _str(obj, "symbol"),
        "instrument": _str(obj, "instrument"),
        "base": _str(obj, "base"),
        "ts": _int(obj, "ts"),
        "recv_ts": _int(obj, "recv_ts"),
    }
    if kind == "liquidation":
        order_id = obj.get("order_id")
        if order_id is not None and not isinstance(order_id, str):
            raise CodecError("bad_field", "order_id: expected a string")
        return Liquidation(
            **common,
            side=_choice(obj, "side", ("long", "short")),
            price=_dec(obj, "price"),
            qty=_dec(obj, "qty"),
            notional_usd=_dec(obj, "notional_usd"),
            order_id=order_id,
            sampled=bool(obj.get("sampled", False)),
        )
    if kind == "trade":
        return Trade(
            **common,
            side=_choice(obj, "side", ("buy", "sell")),
            price=_dec(obj, "price"),
            qty=_dec(obj, "qty"),
            notional_usd=_dec(obj, "notional_usd"),
            trade_id=_str(obj, "trade_id"),
        )
    if kind == "open_interest":
        return OpenInterest(**common, oi_qty=_dec(obj, "oi_qty"), oi_usd=_opt_dec(obj, "oi_usd"))
    interval = _int(obj, "interval_h")
    if interval <= 0:
        raise CodecError("bad_field", f"interval_h: {interval} must be positive")
    return Funding(
        **common,
        rate=_dec(obj, "rate", allow_negative=True),
        interval_h=interval,
        next_funding_ts=_opt_int(obj, "next_funding_ts"),
        mark_price=_opt_dec(obj, "mark_price"),
        index_price=_opt_dec(obj, "index_price"),
    )


# ---------------------------------------------------------------------- typed fast decode
#
# Every processor decodes every record, so decoding is a large share of its time. msgspec parses the
# well-formed wire form straight into typed structs in C; the Decimal fields stay text there and go
# through the same Decimal parse and the same finite / non-negative rules as :func:`parse_decimal`.
# Anything the structs or those rules refuse is decoded again by :func:`event_from_dict`, so a bad record
# gets exactly the CodecError it always got, and the fast path can never accept more than the general one.

_Text = Annotated[str, msgspec.Meta(min_length=1)]
_INFINITY: Final = Decimal("Infinity")
_ZERO: Final = Decimal(0)


class _Refused(Exception):
    """A value the general decoder must judge (it raises the precise error)."""


class _WireEvent(msgspec.Struct, tag_field="type", gc=False):
    venue: _Text
    symbol: _Text
    instrument: _Text
    base: _Text
    ts: int
    recv_ts: int


class _WireLiquidation(_WireEvent, tag="liquidation", gc=False):
    side: Literal["long", "short"]
    price: str
    qty: str
    notional_usd: str
    order_id: str | None = None
    sampled: bool = False


class _WireTrade(_WireEvent, tag="trade", gc=False):
    side: Literal["buy", "sell"]
    price: str
    qty: str
    notional_usd: str
    trade_id: _Text


class _WireOpenInterest(_WireEvent, tag="open_interest", gc=False):
    oi_qty: str
    oi_usd: str | None = None


class _WireFunding(_WireEvent, tag="funding", gc=False):
    rate: str
    interval_h: Annotated[int, msgspec.Meta(gt=0)]
    next_funding_ts: int | None = None
    mark_price: str | None = None
    index_price: str | None = None


_WIRE_DECODER: Final = msgspec.json.Decoder(_WireLiquidation | _WireTrade | _WireOpenInterest | _WireFunding)


def _amount(text: str) -> Decimal:
    """A finite, non-negative amount; NaN raises InvalidOperation in the comparison."""
    number = Decimal(text)
    if not _ZERO <= number < _INFINITY:
        raise _Refused
    return number


def _opt_amount(text: str | None) -> Decimal | None:
    return None if text is None else _amount(text)


def _finite(text: str) -> Decimal:
    number = Decimal(text)
    if not -_INFINITY < number < _INFINITY:
        raise _Refused
    return number


def _from_wire_liquidation(w: _WireLiquidation) -> MarketEvent:
    return Liquidation(venue=w.venue, symbol=w.symbol, instrument=w.instrument, base=w.base, ts=w.ts,
                       recv_ts=w.recv_ts, side=w.side, price=_amount(w.price), qty=_amount(w.qty),
                       notional_usd=_amount(w.notional_usd), order_id=w.order_id, sampled=w.sampled)


def _from_wire_trade(w: _WireTrade) -> MarketEvent:
    return Trade(venue=w.venue, symbol=w.symbol, instrument=w.instrument, base=w.base, ts=w.ts,
                 recv_ts=w.recv_ts, side=w.side, price=_amount(w.price), qty=_amount(w.qty),
                 notional_usd=_amount(w.notional_usd), trade_id=w.trade_id)


def _from_wire_open_interest(w: _WireOpenInterest) -> MarketEvent:
    return OpenInterest(venue=w.venue, symbol=w.symbol, instrument=w.instrument, base=w.base, ts=w.ts,
                        recv_ts=w.recv_ts, oi_qty=_amount(w.oi_qty), oi_usd=_opt_amount(w.oi_usd))


def _from_wire_funding(w: _WireFunding) -> MarketEvent:
    return Funding(venue=w.venue, symbol=w.symbol, instrument=w.instrument, base=w.base, ts=w.ts,
                   recv_ts=w.recv_ts, rate=_finite(w.rate), interval_h=w.interval_h,
                   next_funding_ts=w.next_funding_ts, mark_price=_opt_amount(w.mark_price),
                   index_price=_opt_amount(w.index_price))


_FROM_WIRE: Final[dict[type[_WireEvent], Callable[[Any], MarketEvent]]] = {
    _WireLiquidation: _from_wire_liquidation,
    _WireTrade: _from_wire_trade,
    _WireOpenInterest: _from_wire_open_interest,
    _WireFunding: _from_wire_funding,
}
#: msgspec raises DecodeError/ValidationError, or UnicodeDecodeError on invalid UTF-8 (all ValueErrors)
_FAST_REFUSED: Final = (ValueError, DecimalException, _Refused)


def decode_event(raw: bytes | str) -> MarketEvent:
    """Parse an event from its wire form; raises CodecError with a bounded ``kind`` on bad input."""
    try:
        wire = _WIRE_DECODER.decode(raw)
        return _FROM_WIRE[type(wire)](wire)
    except _FAST_REFUSED:
        return event_from_dict(_load(raw))


def alert_to_dict(alert: Alert) -> dict[str, Any]:
    """The JSON object of an alert (DESIGN.md §5), field order fixed for byte-stable output."""
    return {
        "alert_id": alert.alert_id,
        "type": alert.type,
        "severity": alert.severity,
        "base": alert.base,
        "venues": list(alert.venues),
        "ts": alert.ts,
        "emitted_ts": alert.emitted_ts,
        "window": {"start": alert.window_start, "end": alert.window_end},
        "metrics": alert.metrics,
        "message": alert.message,
        "schema_version": alert.schema_version,
    }


def encode_alert(alert: Alert) -> bytes:
    """Serialize an alert; metric keys are sorted so the same alert always gives the same bytes."""
    return orjson.dumps(alert_to_dict(alert), option=orjson.OPT_SORT_KEYS)


def alert_from_dict(obj: dict[str, Any]) -> Alert:
    """Build and validate an alert from its JSON object."""
    window = obj.get("window")
    if not isinstance(window, dict):
        raise CodecError("bad_field", "window: expected an object with start and end")
    venues = obj.get("venues")
    if not isinstance(venues, list) or not all(isinstance(v, str) for v in venues):
        raise CodecError("bad_field", "venues: expected a list of strings")
    metrics = obj.get("metrics", {})
    if not isinstance(metrics, dict):
        raise CodecError("bad_field", "metrics: expected an object")
    message = obj.get("message", "")
    if not isinstance(message, str):
        raise CodecError("bad_field", "message: expected a string")
    return Alert(
        alert_id=_str(obj, "alert_id"),
        type=_str(obj, "type"),
        severity=_choice(obj, "severity", SEVERITIES),
        base=_str(obj, "base"),
        venues=tuple(venues),
        ts=_int(obj, "ts"),
        emitted_ts=_int(obj, "emitted_ts"),
        window_start=_int(window, "start"),
        window_end=_int(window, "end"),
        metrics=metrics,
        message=message,
        schema_version=_int(obj, "schema_version"),
    )


def decode_alert(raw: bytes | str) -> Alert:
    """Parse an alert from its wire form."""
    return alert_from_dict(_load(raw))
