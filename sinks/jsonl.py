"""Alerts appended to a JSON Lines file, one alert per line in the ``fw.alerts`` schema."""

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

    name = "jsonl"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    async def deliver(self, alert: Alert) -> None:
        """Append one line with a single write, so concurrent readers never see a partial line."""
        os.write(self._fd, encode_alert(alert) + b"\n")

    async def close(self) -> None:
        """Close the file."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
