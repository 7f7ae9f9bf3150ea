"""Property-test pieces shared by the per-venue parser tests (``tests/unit/test_*_parse.py``).

Every adapter promises the same thing: whatever bytes arrive, :meth:`~ingest.base.VenueAdapter.parse`
returns a :class:`~ingest.base.ParseResult` with bounded reject kinds and events that survive the codec.
The fuzzing that checks it (JSON-ish values, real frames mutated in place, the hypothesis settings) is
the same for every venue; only the seeds, the venue's own words and the event checks differ, so those
are what each test module passes in.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any, TypeVar

import orjson
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from flushwatch.codec import decode_event, encode_event
from flushwatch.events import MarketEvent
from ingest.base import ParseResult

__all__ = ["check_common", "json_values", "kinds", "mutated_frames", "never_raises", "one", "typed"]

E = TypeVar("E", bound=MarketEvent)


def one(result: ParseResult) -> Any:
    """The single event of a frame that must parse cleanly (no rejects)."""
    assert not result.rejects, result.rejects
    assert len(result.events) == 1, result.events
    return result.events[0]


def kinds(result: ParseResult) -> list[str]:
    """The reject kinds of a frame, in order: what a test of bad input asserts on."""
    return [r.kind for r in result.rejects]


def typed(events: list[MarketEvent], kind: type[E]) -> list[E]:
    """The events, all of type ``kind`` (asserted), typed for the checker."""
    assert all(isinstance(e, kind) for e in events), events
    return [e for e in events if isinstance(e, kind)]


def never_raises(max_examples: int) -> settings:
    """Hypothesis settings of a "never raises" property: no deadline (first calls import and warm up)."""
    return settings(max_examples=max_examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def json_values(words: Sequence[str], *, key_size: int = 4) -> st.SearchStrategy[Any]:
    """Any JSON value (nested up to 12 leaves), with ``words`` — the venue's symbols, sides and message
    names, and numbers parsers must refuse — drawn often enough to get past the first checks."""
    scalars = (
        st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
        | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
        | st.sampled_from(list(words))
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=key_size), inner, max_size=4),
        max_leaves=12,
    )


def mutated_frames(
    seeds: Sequence[Callable[[], Any]],
    values: st.SearchStrategy[Any],
    wrap: Callable[[Any], bytes] | None = None,
) -> st.SearchStrategy[bytes]:
    """A real frame (a fresh payload from one of ``seeds``) with one to three members replaced by
    ``values`` or deleted, anywhere in its nesting; with ``wrap``, half of them are wrapped by it (e.g. in
    a combined-stream envelope) instead of sent bare."""

    @st.composite
    def frames(draw: st.DrawFn) -> bytes:
        payload = draw(st.sampled_from(seeds))()
        for _ in range(draw(st.integers(min_value=1, max_value=3))):
            node = payload
            # walk down into a nested object or array, then replace or delete one member
            while draw(st.booleans()):
                children = list(node.values()) if isinstance(node, dict) else node
                containers = [c for c in children if isinstance(c, dict | list)]
                if not containers:
                    break
                node = draw(st.sampled_from(containers))
            if isinstance(node, dict) and node:
                key = draw(st.sampled_from(sorted(node)))
                if draw(st.booleans()):
                    del node[key]
                else:
                    node[key] = draw(values)
            elif isinstance(node, list) and node:
                node[draw(st.integers(min_value=0, max_value=len(node) - 1))] = draw(values)
        if wrap is not None and draw(st.booleans()):
            return wrap(payload)
        return orjson.dumps(payload)

    return frames()


def check_common(
    result: ParseResult,
    venue: str,
    allowed_rejects: Collection[str],
    stream_labels: Collection[str],
    *,
    gaps: bool,
) -> None:
    """What every venue's result must satisfy: a ParseResult with bounded reject kinds and stream label,
    non-negative counters (``gaps`` only where the venue has sequence ids, else none), and events of this
    venue that the codec round-trips unchanged. Venue-specific event checks follow in each module."""
    assert isinstance(result, ParseResult)
    assert {r.kind for r in result.rejects} <= set(allowed_rejects), result.rejects
    assert result.stream in stream_labels
    assert result.duplicates >= 0 and (result.gaps >= 0 if gaps else result.gaps == 0)
    for event in result.events:
        assert event.venue == venue
        assert decode_event(encode_event(event)) == event
