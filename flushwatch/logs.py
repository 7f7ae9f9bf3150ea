"""Logging set-up and rate-limited problem reports an operator can read.

Bad input arrives in bursts (a venue changes a field, a recording has a corrupt tail). Logging every
occurrence drowns the log; logging none hides the problem. :class:`RateLimitedLog` logs the first
occurrence of each kind at once, then at most one line per interval per kind with the number suppressed.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

import orjson

__all__ = ["RateLimitedLog", "setup_logging"]


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out).decode()


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Log to stderr (stdout is for alerts), as text or JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiokafka", "websockets"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


class RateLimitedLog:
    """Log a problem once per kind immediately, then at most once per ``interval_s`` with a count."""

    def __init__(self, logger: logging.Logger, interval_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._logger = logger
        self._interval = interval_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, kind: str, message: str, *args: object) -> bool:
        """Log ``message`` for ``kind`` unless one was logged within the interval; True if logged."""
        now = self._clock()
        last = self._last.get(kind)
        if last is not None and now - last < self._interval:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return False
        suppressed = self._suppressed.pop(kind, 0)
        self._last[kind] = now
        suffix = f" ({suppressed} more like this suppressed)" if suppressed else ""
        self._logger.warning(message + suffix, *args)
        return True
