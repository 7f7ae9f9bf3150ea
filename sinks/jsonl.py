"""Alerts appended to a JSON Lines file, one alert per line in the ``fw.alerts`` schema, rotated by size.

Rotation works like logrotate's numbered scheme: before a line would take the file past ``max_bytes``, the
file becomes ``<path>.1``, the previous ``.1`` becomes ``.2`` and so on; ``backups`` files are kept and the
oldest is deleted. A line is never split across two files.
"""

from __future__ import annotations

import os
from pathlib import Path

from flushwatch.codec import encode_alert
from flushwatch.events import Alert
from sinks.base import AlertSink

__all__ = ["JsonlSink"]


class JsonlSink(AlertSink):
    """Appends and flushes each line to the OS, so a crash never leaves a half-written alert behind
    more than the line being written."""

    kind = "jsonl"

    def __init__(self, path: str | Path, max_bytes: int | None = None, backups: int = 5,
                 name: str = "jsonl") -> None:
        self.name = name
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._max_bytes = max_bytes
        self._backups = backups
        self._fd = -1
        self._size = 0
        self._open()

    def _open(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._size = os.fstat(self._fd).st_size

    def _rotate(self) -> None:
        os.close(self._fd)
        self._fd = -1
        if self._backups <= 0:
            self.path.unlink(missing_ok=True)
        else:
            oldest = self.path.with_name(f"{self.path.name}.{self._backups}")
            oldest.unlink(missing_ok=True)
            for n in range(self._backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{n}")
                if older.exists():
                    older.rename(self.path.with_name(f"{self.path.name}.{n + 1}"))
            self.path.rename(self.path.with_name(f"{self.path.name}.1"))
        self._open()

    async def deliver(self, alert: Alert) -> None:
        """Append one line with a single write, so concurrent readers never see a partial line."""
        line = encode_alert(alert) + b"\n"
        if self._fd < 0:
            self._open()
        if self._max_bytes is not None and self._size > 0 and self._size + len(line) > self._max_bytes:
            self._rotate()
        os.write(self._fd, line)
        self._size += len(line)

    async def close(self) -> None:
        """Close the file."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
