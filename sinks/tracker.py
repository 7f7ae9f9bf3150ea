"""Which offsets may be committed: per partition, everything below the first alert some sink has not
finished yet (delivered, skipped or dead-lettered) — the first-gap rule.

Sinks finish out of order (a fast stdout target, a Slack target waiting out a 429), so the committed
offset of a partition is the offset of its oldest unfinished record, or one past the last record seen
when everything is finished. A restart then re-reads at most the unfinished tail, and the per-sink
delivered-id stores make that re-read harmless.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

__all__ = ["Entry", "OffsetTracker"]


@dataclass(eq=False, slots=True)
class Entry:
    """One consumed record and the number of sink jobs still open for it."""

    partition: Hashable
    offset: int
    pending: int = 0
    cancelled: bool = False

    @property
    def finished(self) -> bool:
        """No sink has work left for this record."""
        return self.pending <= 0


@dataclass(slots=True)
class _Partition:
    entries: deque[Entry] = field(default_factory=deque)
    next_offset: int | None = None
    committed: int | None = None


class OffsetTracker:
    """Open work per partition, in offset order."""

    def __init__(self) -> None:
        self._parts: dict[Hashable, _Partition] = {}

    def add(self, partition: Hashable, offset: int, pending: int = 0) -> Entry:
        """Track a consumed record; ``pending`` sink jobs must finish before it counts as done."""
        part = self._parts.setdefault(partition, _Partition())
        entry = Entry(partition, offset, pending)
        part.entries.append(entry)
        part.next_offset = offset + 1
        return entry

    def finish(self, entry: Entry) -> None:
        """One sink job of ``entry`` is done."""
        entry.pending -= 1

    def _advance(self, part: _Partition) -> None:
        while part.entries and part.entries[0].finished:
            part.entries.popleft()

    def commit_point(self, partition: Hashable) -> int | None:
        """The offset to commit for a partition (the next record to read after a restart)."""
        part = self._parts.get(partition)
        if part is None:
            return None
        self._advance(part)
        return part.entries[0].offset if part.entries else part.next_offset

    def committable(self, partitions: Iterable[Hashable] | None = None) -> dict[Hashable, int]:
        """Commit points that moved since the last :meth:`committed`."""
        out: dict[Hashable, int] = {}
        for tp in list(self._parts) if partitions is None else partitions:
            point = self.commit_point(tp)
            part = self._parts.get(tp)
            if point is not None and part is not None and point != part.committed:
                out[tp] = point
        return out

    def committed(self, offsets: dict[Hashable, int]) -> None:
        """Record a successful commit."""
        for tp, offset in offsets.items():
            if tp in self._parts:
                self._parts[tp].committed = offset

    def unfinished(self, partitions: Iterable[Hashable] | None = None) -> int:
        """Records still open (in the given partitions, or all)."""
        parts = self._parts.values() if partitions is None else [self._parts[p] for p in partitions
                                                                   if p in self._parts]
        total = 0
        for part in parts:
            self._advance(part)
            total += sum(1 for e in part.entries if not e.finished)
        return total

    def drop(self, partitions: Iterable[Hashable]) -> int:
        """Forget partitions (revoked): their open entries are cancelled so queued jobs are skipped.
        Returns how many open entries were cancelled."""
        cancelled = 0
        for tp in partitions:
            part = self._parts.pop(tp, None)
            if part is None:
                continue
            for entry in part.entries:
                if not entry.finished:
                    entry.cancelled = True
                    cancelled += 1
        return cancelled

    @property
    def partitions(self) -> list[Hashable]:
        """Partitions being tracked."""
        return list(self._parts)
