"""The exception hierarchy, split by what the caller should do about it.

::

    FlushwatchError
    ├── ConfigError                 fatal at start-up: the operator must fix the config
    ├── CodecError                  one record/frame is bad: count it, dead-letter it, go on
    │   └── RecordingError          one recording line is bad
    ├── BrokerError                 the embedded broker could not be started
    └── RetryableError              a transient I/O failure: back off and try again
        └── HttpError               a REST call failed (status and Retry-After kept)
"""

from __future__ import annotations


class FlushwatchError(Exception):
    """Base of every error flushwatch raises on purpose."""


class ConfigError(FlushwatchError):
    """The configuration is invalid; the message names the key and where it came from."""


class CodecError(FlushwatchError):
    """A record or frame cannot be decoded. ``kind`` is a short, bounded label used in metrics."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


class RecordingError(CodecError):
    """A recording line does not follow the recording format."""


class BrokerError(FlushwatchError):
    """The embedded development broker failed to start or answer."""


class RetryableError(FlushwatchError):
    """A transient failure; the operation may succeed later."""


class HttpError(RetryableError):
    """A REST request failed with a status code; ``retry_after_s`` honours the venue's hint."""

    def __init__(self, status: int, url: str, retry_after_s: float | None = None, body: bytes = b"") -> None:
        super().__init__(f"HTTP {status} from {url}")
        self.status = status
        self.url = url
        self.retry_after_s = retry_after_s
        self.body = body
