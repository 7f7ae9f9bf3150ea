"""Alerts to standard output: text lines for people, or JSON lines for pipes."""

from __future__ import annotations

import sys
from typing import Literal, TextIO

from flushwatch.codec import encode_alert
from flushwatch.events import Alert
from sinks.base import AlertSink
from sinks.text import format_alert_line

__all__ = ["StdoutSink"]


class StdoutSink(AlertSink):
    """Prints each alert as it arrives and flushes, so a ``| tee`` or a terminal sees it at once."""

    kind = "stdout"

    def __init__(self, fmt: Literal["text", "json"] = "text", stream: TextIO | None = None,
                 name: str = "stdout") -> None:
        self.name = name
        self._fmt = fmt
        self._stream = stream

    async def deliver(self, alert: Alert) -> None:
        """Write one line."""
        stream = self._stream or sys.stdout
        line = encode_alert(alert).decode() if self._fmt == "json" else format_alert_line(alert)
        stream.write(line + "\n")
        stream.flush()
