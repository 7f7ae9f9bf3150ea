"""``decode_event``'s typed msgspec path must be indistinguishable from the general decoder.

Valid records must decode to equal events, and every record the fast structs mishandle must get the
general decoder's CodecError, kind and detail included: real-looking records with members replaced by
awkward JSON values or deleted, and arbitrary bytes.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from flushwatch.codec import _load, decode_event, encode_event, event_from_dict
from flushwatch.errors import CodecError
from flushwatch.events import MarketEvent
from tests.unit import venue_props
from tests.unit.test_codec import events

AWKWARD = venue_props.json_values([
    "NaN", "-NaN", "sNaN", "Infinity", "-Infinity", "-1", "-0", "0", "1e9999", "", " 1 ", "1_000", "abc",
    "trade", "liquidation", "open_interest", "funding", "long", "buy", "\U0001f600",
])


def outcome(decode: Any, raw: bytes) -> tuple[str, Any]:
    try:
        return "event", decode(raw)
    except CodecError as exc:
        return "error", (exc.kind, exc.detail)


def general(raw: bytes) -> MarketEvent:
    return event_from_dict(_load(raw))


@venue_props.never_raises(400)
@given(events)
def test_valid_records_decode_equal_on_both_paths(event: MarketEvent) -> None:
    raw = encode_event(event)
    assert decode_event(raw) == general(raw) == event


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    obj = orjson.loads(encode_event(draw(events)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        key = draw(st.sampled_from(sorted(obj)))
        if draw(st.booleans()):
            del obj[key]
        else:
            obj[key] = draw(AWKWARD)
        if not obj:
            break
    return orjson.dumps(obj)


@venue_props.never_raises(800)
@given(mutated())
def test_mutated_records_get_the_same_event_or_error(raw: bytes) -> None:
    assert outcome(decode_event, raw) == outcome(general, raw)


@venue_props.never_raises(300)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_get_the_same_error(raw: bytes) -> None:
    assert outcome(decode_event, raw) == outcome(general, raw)


def test_invalid_utf8_is_malformed_json() -> None:
    raw = b'{"type":"trade","venue":"bin\xed\xa0\x80ance"}'
    assert outcome(decode_event, raw)[1][0] == "malformed_json"
