"""Realized liquidation clusters (DESIGN.md §6, "Liquidation clusters").

A liquidation heatmap from what actually happened: per base asset and liquidated side, the notional
liquidated in each price bucket over trailing windows (default 1 h and 24 h). It emits no alerts; the
runtime calls :meth:`ClustersDetector.publish` and produces what it returns to the compacted topic
``fw.liquidation_clusters`` (key = base), so a dashboard reads the latest snapshot per base.

Published document (``schema_version`` 1)
    ::

        {
          "base": "BTC",
          "ts": 1737997200000,                 # the base's event time the snapshot describes (ms)
          "schema_version": 1,
          "bucket_width": 250.0,               # quote currency per bucket
          "lower_bound": true,                 # a sampled feed (Binance) contributed: sums are minimums
          "windows": {
            "1h":  {"long":  [[price_low, price_high, notional_usd, events], ...],   # ascending price
                    "short": [...]},
            "24h": {"long": [...], "short": [...]}
          }
        }

    Buckets are ``[k × width, (k + 1) × width)`` of the liquidation's price; only non-empty buckets are
    listed; notional is USD rounded to cents. ``long`` are liquidated longs (forced sells). Window keys
    come from ``clusters.windows_s`` (``3600 -> "1h"``). Consumers must ignore keys they do not know.

Publishing
    ``publish(now_ms)`` first advances time like ``on_tick(now_ms)`` (expiring old slices), then returns
    ``(base, document)`` for every base whose windows changed (a liquidation arrived or an old one left a
    window) and whose last document is at least ``publish_interval_s`` old (event time), sorted by base.
    So each base is published at most once per interval and only with news. A base whose windows all
    became empty publishes one document with empty lists (so the compacted topic does not keep a stale
    heatmap) and is then forgotten.

Bucket width
    ``bucket_usd`` when configured for the asset, else ``bucket_pct`` of the first liquidation price
    seen, rounded to a 1-2-2.5-5 × 10^k step (BTC at 104,000 × 0.25 % = 260 -> 250; ETH at 3,300 -> 10;
    SOL at 240 -> 0.5). The width is fixed while the base has any data and re-derived after it emptied, so
    buckets never change meaning under a live heatmap. 0.25 % is a quarter of BTC's median 4 h high-low
    range (0.9 %, May-Nov 2025): on the 2025-01-27 recording the session's 32 BTC long liquidations fall
    into 4 buckets of 250 USD (99,000-100,000), the heaviest 99,500-99,750 with 380 K USD (16 events).

Memory: O(buckets)
    Each window keeps running totals per (side, bucket) plus a queue of slices (aggregates per bucket of a
    slice of time) that are subtracted when they leave the window. The slice is ``max(60 s, window / 60)``:
    one minute for the 1 h window, 24 minutes for 24 h, so each window holds at most 61 slices whatever the
    event rate; a window therefore covers between ``W`` and ``W + slice`` of history (the 24 h window up
    to 24 min more). Trades, OI and funding are ignored entirely (a volume spike without liquidations
    changes nothing). Time is per base, moved by its liquidations and by ticks; a liquidation older than
    its windows is counted in ``late_events`` and ignored, a late one still inside is added to its slice.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from flushwatch.config import ClustersConfig, ClustersThresholds
from flushwatch.events import Alert, Liquidation, MarketEvent
from processors.base import Detector
from processors.common import MINUTE_MS, asset_params, money, ms, nice_width, window_label

__all__ = ["CLUSTERS_SCHEMA_VERSION", "ClustersDetector"]

#: version of the published document (not of the detector's own snapshot)
CLUSTERS_SCHEMA_VERSION = 1

_SNAPSHOT_VERSION = 1
_NEVER = -(2**62)
_SIDES = ("long", "short")

# bucket index -> [notional, events]
_Agg = dict[int, list[float]]


@dataclass(slots=True)
class _Window:
    """One trailing window of one base: per side, slices in time order and running totals per bucket."""

    window_ms: int
    slice_ms: int
    slices: dict[str, deque[tuple[int, _Agg]]] = field(
        default_factory=lambda: {"long": deque(), "short": deque()}
    )
    totals: dict[str, _Agg] = field(default_factory=lambda: {"long": {}, "short": {}})
    # derived, not snapshotted: first_slice(t) for the base's time t as of the last retime(), and the time
    # from which it is larger (see retime)
    first: int = _NEVER
    due: int = _NEVER

    def first_slice(self, now: int) -> int:
        """The oldest slice index still (partly) inside the window at ``now``: its end is after ``now - W``."""
        return (now - self.window_ms) // self.slice_ms if now > _NEVER else _NEVER

    def retime(self, now: int) -> None:
        """Cache ``first = first_slice(now)`` and ``due``, the first time at which it grows:
        ``(t - W) // S`` stays ``first`` for every ``now <= t < (first + 1) * S + W``, so until ``due`` the
        cached value is exact and no slice can leave the window (one only leaves when ``first`` grows)."""
        if now > _NEVER:
            self.first = first = (now - self.window_ms) // self.slice_ms
            self.due = (first + 1) * self.slice_ms + self.window_ms
        else:
            self.first = self.due = _NEVER

    def add(self, side: str, idx: int, bucket: int, notional: float) -> None:
        slices = self.slices[side]
        agg: _Agg | None = None
        newest = slices[-1] if slices else None
        if newest is not None and idx == newest[0]:
            agg = newest[1]  # the usual case: the newest slice
        elif newest is None or idx > newest[0]:
            agg = {}
            slices.append((idx, agg))
        else:
            for pos in range(len(slices) - 1, -1, -1):
                if slices[pos][0] == idx:
                    agg = slices[pos][1]
                    break
                if slices[pos][0] < idx:
                    agg = {}
                    slices.insert(pos + 1, (idx, agg))
                    break
            if agg is None:
                agg = {}
                slices.appendleft((idx, agg))
        cell = agg.get(bucket)
        if cell is None:
            agg[bucket] = [notional, 1.0]
        else:
            cell[0] += notional
            cell[1] += 1
        totals = self.totals[side]
        total = totals.get(bucket)
        if total is None:
            totals[bucket] = [notional, 1.0]
        else:
            total[0] += notional
            total[1] += 1

    def expire(self, now: int) -> bool:
        """Drop the slices that left the window at ``now`` (and retime to ``now``); True if any did."""
        self.retime(now)
        first = self.first
        changed = False
        for side in _SIDES:
            slices = self.slices[side]
            totals = self.totals[side]
            while slices and slices[0][0] < first:
                _idx, agg = slices.popleft()
                changed = True
                for bucket, (notional, events) in agg.items():
                    total = totals[bucket]
                    total[1] -= events
                    if total[1] <= 0:
                        del totals[bucket]  # no float residue for an emptied bucket
                    else:
                        total[0] -= notional
        return changed

    def empty(self) -> bool:
        return not self.slices["long"] and not self.slices["short"]


@dataclass(slots=True)
class _Base:
    name: str
    now: int
    width: float | None
    windows: list[_Window]
    last_publish: int | None = None
    dirty: bool = False
    sampled_ts: int = _NEVER
    #: derived, not snapshotted: the earliest ``due`` of the windows; before it no slice can expire
    due: int = _NEVER
    #: derived, not snapshotted: all_empty(), kept up to date where slices come and go (add and expiry) so
    #: the per-liquidation width check does not scan the windows
    empty: bool = True

    def all_empty(self) -> bool:
        return all(w.empty() for w in self.windows)


class ClustersDetector(Detector):
    """Liquidation notional by price bucket, per base and side, over trailing windows. See the module doc."""

    name = "clusters"

    def __init__(self, config: ClustersConfig | None = None, snapshot: dict[str, Any] | None = None) -> None:
        self.config = config if config is not None else ClustersConfig.model_validate({})
        windows = [ms(w) for w in self.config.windows_s]
        if not windows:
            raise ValueError("clusters.windows_s needs at least one window")
        labels = [window_label(w / 1000) for w in windows]
        if len(set(labels)) != len(labels):
            raise ValueError(f"clusters.windows_s has duplicate windows: {self.config.windows_s}")
        self._windows = windows
        self._labels = labels
        self._slices = [max(MINUTE_MS, w // 60) for w in windows]
        self._longest = max(windows)
        self._interval_ms = ms(self.config.publish_interval_s)
        self._thresholds: dict[str, ClustersThresholds] = {}
        self._reset()
        if snapshot is not None:
            self.restore(snapshot)

    def _reset(self) -> None:
        self._now = _NEVER
        self._bases: dict[str, _Base] = {}
        #: liquidations older than every window when they arrived (ignored)
        self.late_events = 0

    def _t(self, base: str) -> ClustersThresholds:
        t = self._thresholds.get(base)
        if t is None:
            t = self._thresholds[base] = asset_params(self.config, self.config.assets, base, ClustersThresholds)
        return t

    def _new_windows(self, now: int) -> list[_Window]:
        windows = [_Window(window_ms=w, slice_ms=s) for w, s in zip(self._windows, self._slices, strict=True)]
        for w in windows:
            w.retime(now)
        return windows

    # ------------------------------------------------------------------ the Detector interface

    def on_event(self, event: MarketEvent) -> list[Alert]:
        """Fold a liquidation into its price bucket; every other event is ignored. Never alerts."""
        if not isinstance(event, Liquidation):
            return []
        price, notional = money(event)
        if price <= 0 or notional < 0:
            return []
        bs = self._bases.get(event.base)
        if bs is None:
            bs = self._bases[event.base] = _Base(name=event.base, now=self._now, width=None,
                                                 windows=self._new_windows(self._now))
        ts = event.ts
        if ts > bs.now:
            if ts < bs.due:
                bs.now = ts  # all that _advance does before the next expiry time (most liquidations)
            else:
                self._advance(bs, ts)
        if ts == bs.now:
            inside = bs.windows  # ts // S >= (ts - W) // S: an event at the base's time is in every window
        else:  # a late event: in the windows whose first slice (cached for bs.now) it still reaches
            inside = [w for w in bs.windows if ts // w.slice_ms >= w.first]
            if not inside:
                self.late_events += 1
                return []
        if bs.width is None or bs.empty:
            t = self._t(bs.name)
            bs.width = t.bucket_usd if t.bucket_usd is not None else nice_width(price * t.bucket_pct / 100)
        bucket = int(price // bs.width)
        for w in inside:
            w.add(event.side, ts // w.slice_ms, bucket, notional)
        bs.empty = False
        if event.sampled and ts > bs.sampled_ts:  # = max(sampled_ts, ts) without a builtin call
            bs.sampled_ts = ts
        bs.dirty = True
        return []

    def on_tick(self, now_ms: int) -> list[Alert]:
        """Advance every base's time and drop what left the windows. Never alerts."""
        if now_ms > self._now:
            self._now = now_ms
            for bs in self._bases.values():
                self._advance(bs, now_ms)
        return []

    def publish(self, now_ms: int) -> list[tuple[str, dict[str, Any]]]:
        """Advance time to ``now_ms`` (as :meth:`on_tick`), then ``(base, document)`` for each base with changes
        whose last document is at least ``publish_interval_s`` old, sorted by base. Schema in the module doc."""
        self.on_tick(now_ms)
        out: list[tuple[str, dict[str, Any]]] = []
        for name in sorted(self._bases):
            bs = self._bases[name]
            if not bs.dirty or (bs.last_publish is not None and bs.now - bs.last_publish < self._interval_ms):
                continue
            out.append((name, self.document(name)))
            bs.last_publish = bs.now
            bs.dirty = False
            if bs.all_empty():
                del self._bases[name]
        return out

    def document(self, base: str) -> dict[str, Any]:
        """The current snapshot document of ``base`` (empty windows if it has none), without publishing it."""
        bs = self._bases.get(base)
        windows: dict[str, dict[str, list[list[float | int]]]] = {}
        for i, label in enumerate(self._labels):
            sides: dict[str, list[list[float | int]]] = {}
            for side in _SIDES:
                rows: list[list[float | int]] = []
                if bs is not None and bs.width is not None:
                    width = bs.width
                    for bucket in sorted(bs.windows[i].totals[side]):
                        notional, events = bs.windows[i].totals[side][bucket]
                        rows.append([round(bucket * width, 10), round((bucket + 1) * width, 10),
                                     round(notional, 2), int(events)])
                sides[side] = rows
            windows[label] = sides
        return {
            "base": base,
            "ts": self._now if bs is None else bs.now,
            "schema_version": CLUSTERS_SCHEMA_VERSION,
            "bucket_width": None if bs is None else bs.width,
            "lower_bound": bs is not None and bs.sampled_ts > bs.now - self._longest,
            "windows": windows,
        }

    def _advance(self, bs: _Base, t: int) -> None:
        """Move the base's time to ``t``; expire slices only once a window's first slice can have moved
        (``bs.due``), so most liquidations skip the windows entirely."""
        if t <= bs.now:
            return
        bs.now = t
        if t < bs.due:
            return
        due = None
        expired = False
        for w in bs.windows:
            if w.expire(t):
                expired = True
            due = w.due if due is None else min(due, w.due)
        bs.due = _NEVER if due is None else due
        if expired:
            bs.dirty = True
            bs.empty = bs.all_empty()

    # ------------------------------------------------------------------ state

    def snapshot(self) -> dict[str, Any]:
        """The whole state as JSON-compatible data."""
        bases = []
        for bs in self._bases.values():
            windows = []
            for w in bs.windows:
                windows.append({
                    side: [[idx, [[b, c[0], c[1]] for b, c in agg.items()]] for idx, agg in w.slices[side]]
                    for side in _SIDES
                } | {f"{side}_totals": [[b, c[0], c[1]] for b, c in w.totals[side].items()] for side in _SIDES})
            bases.append({"name": bs.name, "now": bs.now, "width": bs.width, "last_publish": bs.last_publish,
                          "dirty": bs.dirty, "sampled_ts": bs.sampled_ts, "windows": windows})
        return {"version": _SNAPSHOT_VERSION, "windows_ms": list(self._windows), "now": self._now,
                "late_events": self.late_events, "bases": bases}

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Replace the state with a snapshot's; raises ValueError if it was taken with other windows."""
        if snapshot.get("version") != _SNAPSHOT_VERSION:
            raise ValueError(f"clusters snapshot version {snapshot.get('version')!r} is not supported")
        if list(snapshot.get("windows_ms", [])) != self._windows:
            raise ValueError(f"clusters snapshot windows {snapshot.get('windows_ms')} ms differ from {self._windows}")
        self._reset()
        self._now = int(snapshot["now"])
        self.late_events = int(snapshot["late_events"])
        for obj in snapshot["bases"]:
            windows = self._new_windows(int(obj["now"]))
            for w, saved in zip(windows, obj["windows"], strict=True):
                for side in _SIDES:
                    w.slices[side] = deque(
                        (int(idx), {int(b): [float(n), float(c)] for b, n, c in agg}) for idx, agg in saved[side]
                    )
                    w.totals[side] = {int(b): [float(n), float(c)] for b, n, c in saved[f"{side}_totals"]}
            name = str(obj["name"])
            bs = self._bases[name] = _Base(
                name=name, now=int(obj["now"]), width=None if obj["width"] is None else float(obj["width"]),
                windows=windows, last_publish=None if obj["last_publish"] is None else int(obj["last_publish"]),
                dirty=bool(obj["dirty"]), sampled_ts=int(obj["sampled_ts"]),
            )
            bs.empty = bs.all_empty()  # derived values start fresh; bs.due = _NEVER: the next advance expires
