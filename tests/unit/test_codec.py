from __future__ import annotations

from decimal import Decimal

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flushwatch.codec import (
    decimal_text,
    decode_alert,
    decode_event,
    encode_alert,
    encode_event,
    parse_decimal,
)
from flushwatch.errors import CodecError
from flushwatch.events import Alert, Funding, Liquidation, OpenInterest, Trade

decimals = st.decimals(min_value=0, max_value=Decimal("1e12"), allow_nan=False, allow_infinity=False,
                       places=8)
signed = st.decimals(min_value=Decimal("-1"), max_value=Decimal("1"), allow_nan=False,
                     allow_infinity=False, places=8)
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=20)
ms = st.integers(min_value=0, max_value=2**53)

common = {"venue": text, "symbol": text, "instrument": text, "base": text, "ts": ms, "recv_ts": ms}

events = st.one_of(
    st.builds(Liquidation, side=st.sampled_from(["long", "short"]), price=decimals, qty=decimals,
              notional_usd=decimals, order_id=st.none() | text, sampled=st.booleans(), **common),
    st.builds(Trade, side=st.sampled_from(["buy", "sell"]), price=decimals, qty=decimals,
              notional_usd=decimals, trade_id=text, **common),
    st.builds(OpenInterest, oi_qty=decimals, oi_usd=st.none() | decimals, **common),
    st.builds(Funding, rate=signed, interval_h=st.integers(1, 24), next_funding_ts=st.none() | ms,
              mark_price=st.none() | decimals, index_price=st.none() | decimals, **common),
)


@given(events)
def test_event_round_trip_is_exact(event):
    assert decode_event(encode_event(event)) == event


@given(st.builds(
    Alert, alert_id=text, type=text, severity=st.sampled_from(["info", "warning", "critical"]), base=text,
    venues=st.lists(text, max_size=3).map(tuple), ts=ms, emitted_ts=ms, window_start=ms, window_end=ms,
    metrics=st.dictionaries(
        text, st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False) | text, max_size=5),
    message=st.text(max_size=50)))
def test_alert_round_trip(alert):
    assert decode_alert(encode_alert(alert)) == alert


def test_decimals_go_on_the_wire_as_plain_strings():
    event = Liquidation(venue="binance", symbol="BTCUSDT", instrument="BTC-USDT-PERP", base="BTC", ts=1,
                        recv_ts=2, side="long", price=Decimal("9910"), qty=Decimal("0.00000001"),
                        notional_usd=Decimal("1E+3"))
    obj = orjson.loads(encode_event(event))
    assert obj["qty"] == "0.00000001"
    assert obj["notional_usd"] == "1000"
    assert obj["schema_version"] == 1
    assert obj["type"] == "liquidation"


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (b"{not json", "malformed_json"),
        (b"[1,2]", "not_an_object"),
        (b'{"type":"mystery"}', "unknown_type"),
        (b'{"type":"trade","venue":"x","symbol":"s","instrument":"i","base":"b","ts":1,"recv_ts":1,'
         b'"side":"buy","price":"NaN","qty":"1","notional_usd":"1","trade_id":"1"}', "non_finite"),
        (b'{"type":"trade","venue":"x","symbol":"s","instrument":"i","base":"b","ts":1,"recv_ts":1,'
         b'"side":"buy","price":"1","qty":"-1","notional_usd":"1","trade_id":"1"}', "negative"),
        (b'{"type":"trade","venue":"x","symbol":"s","instrument":"i","base":"b","ts":"1","recv_ts":1,'
         b'"side":"buy","price":"1","qty":"1","notional_usd":"1","trade_id":"1"}', "bad_field"),
        (b'{"type":"liquidation","venue":"x","symbol":"s","instrument":"i","base":"b","ts":1,"recv_ts":1,'
         b'"side":"up","price":"1","qty":"1","notional_usd":"1"}', "bad_field"),
    ],
)
def test_bad_input_raises_codec_error_with_kind(payload, kind):
    with pytest.raises(CodecError) as info:
        decode_event(payload)
    assert info.value.kind == kind


def test_unknown_fields_are_ignored_for_forward_compatibility():
    raw = (b'{"type":"open_interest","venue":"x","symbol":"s","instrument":"i","base":"b","ts":1,'
           b'"recv_ts":2,"oi_qty":"5.5","oi_usd":null,"new_field":{"a":1}}')
    event = decode_event(raw)
    assert isinstance(event, OpenInterest)
    assert event.oi_qty == Decimal("5.5")
    assert event.oi_usd is None


def test_parse_decimal_floats_use_shortest_repr():
    assert parse_decimal(0.1, "x") == Decimal("0.1")
    assert decimal_text(Decimal("-0")) == "0"
    assert decimal_text(Decimal("12.3400")) == "12.34"
    with pytest.raises(CodecError):
        parse_decimal(True, "x")
    assert parse_decimal("-0.5", "rate", allow_negative=True) == Decimal("-0.5")


@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_decimal_text_is_plain_format_without_trailing_zeros(value: Decimal) -> None:
    text = decimal_text(value)
    reference = format(value, "f")
    if "." in reference:
        reference = reference.rstrip("0").rstrip(".")
    assert text == ("0" if reference in ("-0", "") else reference)
    assert "E" not in text and Decimal(text) == value
