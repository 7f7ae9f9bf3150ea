"""Per-sink memory of delivered alert ids, so a redelivered alert (a restart, a rebalance, a processor
that emitted it twice) never reaches a chat twice.

:class:`SqliteDeliveredStore` is durable: one small SQLite file per sink in the state directory, written
after the destination accepted the alert (WAL mode, ``synchronous=NORMAL``: survives a crash of the
process; an OS crash may lose the last transactions). The one window left is between the destination's
"OK" and that write: a hard kill exactly there resends that one alert after the restart. A graceful stop
drains deliveries first, so it never hits the window.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections import OrderedDict
from pathlib import Path
from typing import Protocol

__all__ = ["DeliveredStore", "MemoryDeliveredStore", "NullDeliveredStore", "SqliteDeliveredStore", "store_path"]


class DeliveredStore(Protocol):
    """What the service asks of a store."""

    def contains(self, alert_id: str) -> bool:
        """Whether the alert was delivered by this sink before."""
        ...

    def add(self, alert_id: str) -> None:
        """Remember a delivered alert."""
        ...

    def close(self) -> None:
        """Release the store."""
        ...


class NullDeliveredStore:
    """No de-duplication (``dedupe = "off"``)."""

    def contains(self, alert_id: str) -> bool:
        """Never seen."""
        return False

    def add(self, alert_id: str) -> None:
        """Forget at once."""

    def close(self) -> None:
        """Nothing to release."""


class MemoryDeliveredStore:
    """Bounded in-process memory (least recently used forgotten first)."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._capacity = capacity

    def contains(self, alert_id: str) -> bool:
        """Whether the id is remembered."""
        if alert_id in self._ids:
            self._ids.move_to_end(alert_id)
            return True
        return False

    def add(self, alert_id: str) -> None:
        """Remember the id."""
        self._ids[alert_id] = None
        self._ids.move_to_end(alert_id)
        if len(self._ids) > self._capacity:
            self._ids.popitem(last=False)

    def close(self) -> None:
        """Nothing to release."""


def store_path(state_dir: str | Path, sink_name: str) -> Path:
    """The SQLite file of one sink: ``<state_dir>/delivered-<name>.sqlite3``."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", sink_name)
    return Path(state_dir) / f"delivered-{safe}.sqlite3"


class SqliteDeliveredStore:
    """Durable delivered-id store with a memory cache in front; ids older than ``retention_s`` are pruned
    at open and every ``prune_every`` additions."""

    def __init__(self, path: str | Path, retention_s: float = 30 * 86400.0, prune_every: int = 1000,
                 cache: int = 10_000) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS delivered (alert_id TEXT PRIMARY KEY, at REAL NOT NULL)")
        self._retention_s = retention_s
        self._prune_every = prune_every
        self._since_prune = 0
        self._cache = MemoryDeliveredStore(cache)
        self._prune()

    def _prune(self) -> None:
        self._db.execute("DELETE FROM delivered WHERE at < ?", (time.time() - self._retention_s,))
        self._since_prune = 0

    def contains(self, alert_id: str) -> bool:
        """Cache first, then the file."""
        if self._cache.contains(alert_id):
            return True
        row = self._db.execute("SELECT 1 FROM delivered WHERE alert_id = ?", (alert_id,)).fetchone()
        if row is not None:
            self._cache.add(alert_id)
            return True
        return False

    def add(self, alert_id: str) -> None:
        """Write the id (its own transaction) before the alert counts as delivered."""
        self._db.execute("INSERT OR REPLACE INTO delivered (alert_id, at) VALUES (?, ?)", (alert_id, time.time()))
        self._cache.add(alert_id)
        self._since_prune += 1
        if self._since_prune >= self._prune_every:
            self._prune()

    def __len__(self) -> int:
        row = self._db.execute("SELECT count(*) FROM delivered").fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close the file."""
        self._db.close()
