"""Shared arithmetic of subscribe plans: splitting topics into subscribe messages and connections.

Venues cap both the arguments of one subscribe message and what one connection may carry; every adapter
that subscribes per symbol cuts its topic list the same two ways, so the cuts live here once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

import orjson

__all__ = ["chunks", "pack_by_json_chars"]

T = TypeVar("T")
K = TypeVar("K")


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most ``size`` items, in order (one subscribe message each)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def pack_by_json_chars(groups: Iterable[tuple[K, Sequence[Any]]], limit: int) -> list[list[K]]:
    """Shards of group keys such that each shard's subscribe arguments, as one JSON array, stay within
    ``limit`` characters (the venue's per-connection cap), and no group is split across connections (a
    symbol's channels stay together). A group larger than ``limit`` still gets a shard of its own."""
    shards: list[list[K]] = []
    chars = 0
    for key, args in groups:
        cost = len(orjson.dumps(args)) - 1  # its share of the array: text, quotes, commas
        if not shards or chars + cost > limit:
            shards.append([])
            chars = 1  # the brackets
        shards[-1].append(key)
        chars += cost
    return shards
