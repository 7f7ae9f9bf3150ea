"""``flushwatch backtest``: run the detectors directly over recordings, without Kafka, to tune thresholds.

The core package is where ingest parsers and processors meet (they never import each other): this module
reads recordings, hands each raw frame to the venue's adapter exactly as the live ingest would, and feeds
the resulting events to every enabled detector, writing their alerts as JSON lines.

Time
    A backtest has no wall clock: time is the recording's ``recv_ts``. Before each line, every detector
    gets ``on_tick(recv_ts)`` when time advanced by at least :data:`TICK_INTERVAL_MS` since the last tick,
    which is what the live processor's 1 s timer does; ticks never go backwards (a file out of order only
    delays them). At the end of the input the backtest assumes **time passes with no more events**: one
    last tick at ``last recv_ts + horizon`` lets every open episode reach its natural end instead of being
    cut off mid-flight (see :func:`drain_horizon_ms`). This is a choice: a recording that stops during a
    flush reports the flush as ended, as a live system would if the market then went silent.

Bad input
    A bad recording line (:class:`~flushwatch.recording.BadLine`), a line from a venue without an adapter
    (``unknown_venue``) and every :class:`~ingest.base.Reject` from parsing are counted by kind, logged
    once per kind, written to ``dlq`` as a JSON line with the reason and the raw data, and skipped. Nothing
    stops the run: one corrupt tail must not hide an hour of good data.

Determinism
    The same recordings and config give byte-identical alert output: the merge order is fixed, detectors
    are pure and time comes only from the data. Only the report's timing fields vary.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast

import orjson

from flushwatch.codec import encode_alert
from flushwatch.config import Config
from flushwatch.events import Alert, MarketEvent
from flushwatch.logs import RateLimitedLog
from flushwatch.recording import BadLine, RecordLine, merge_recordings
from ingest.base import ParseResult, VenueAdapter
from ingest.registry import ADAPTERS
from processors.base import Detector
from processors.registry import build_detectors

__all__ = ["PIPELINE_MIN_BYTES", "TICK_INTERVAL_MS", "BacktestReport", "drain_horizon_ms", "run_backtest"]

_LOG = logging.getLogger("flushwatch.backtest")

#: detectors get a tick whenever recording time advanced this much (the live processor's timer period)
TICK_INTERVAL_MS = 1000
#: inputs at least this large (bytes on disk) run in two processes by default: below it, starting the
#: second process costs more than it saves
PIPELINE_MIN_BYTES = 16 * 1024 * 1024


@dataclass
class BacktestReport:
    """What a backtest saw and produced; :meth:`summary` is the human version for stderr."""

    lines: int = 0
    frames_by_venue: dict[str, int] = field(default_factory=dict)
    events_by_type: dict[str, int] = field(default_factory=dict)
    alerts_by_type: dict[str, int] = field(default_factory=dict)
    rejects_by_kind: dict[str, int] = field(default_factory=dict)
    bad_lines: int = 0
    duplicates: int = 0
    gaps: int = 0
    first_recv_ts: int | None = None
    last_recv_ts: int | None = None
    elapsed_s: float = 0.0

    @property
    def frames(self) -> int:
        """Frames handed to an adapter (all venues)."""
        return sum(self.frames_by_venue.values())

    @property
    def frames_per_s(self) -> float:
        """Throughput over the whole run (reading, parsing and detecting)."""
        return self.lines / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self) -> str:
        """A few lines an operator reads after a run."""

        def fmt(counts: dict[str, int]) -> str:
            return ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "none"

        span = ""
        if self.first_recv_ts is not None and self.last_recv_ts is not None:
            span = f" covering {(self.last_recv_ts - self.first_recv_ts) / 1000:.0f} s of recording time"
        return "\n".join(
            [
                f"backtest: {self.lines} lines{span} in {self.elapsed_s:.2f} s "
                f"({self.frames_per_s:,.0f} lines/s)",
                f"  frames by venue: {fmt(self.frames_by_venue)}",
                f"  events by type:  {fmt(self.events_by_type)}",
                f"  alerts by type:  {fmt(self.alerts_by_type)}",
                f"  rejects by kind: {fmt(self.rejects_by_kind)}",
                f"  bad lines: {self.bad_lines}, duplicates dropped: {self.duplicates}, sequence gaps: {self.gaps}",
            ]
        )


def drain_horizon_ms(config: Config) -> int:
    """How long after the last line the final tick lands: enough for any open episode to end.

    A cascade ends ``quiet_s`` after its window went quiet, and the window is quiet at the latest
    ``window_s`` after the last liquidation, so ``window_s + quiet_s`` plus one tick interval suffices.
    """
    cascade = config.cascade
    return round((cascade.window_s + cascade.quiet_s) * 1000) + TICK_INTERVAL_MS


class Writer(Protocol):
    """Where dead letters go: a binary file, or the parallel backtest's pipe to the writing process."""

    def write(self, data: bytes, /) -> int: ...


class _Run:
    """The state of one backtest; a class so the hot loop reads locals, not closures."""

    def __init__(self, config: Config, out: BinaryIO | None, dlq: Writer | None, log: logging.Logger,
                 *, detectors: bool = True) -> None:
        self.config = config
        self.detectors: list[Detector] = build_detectors(config) if detectors else []
        self.handlers = [detector.on_event for detector in self.detectors]
        self.out = out
        self.dlq = dlq
        self.problems = RateLimitedLog(log, interval_s=float("inf"))
        self.report = BacktestReport()
        self.adapters: dict[str, VenueAdapter | None] = {}
        self.frames: Counter[str] = Counter()
        self.events: Counter[str] = Counter()
        self.alerts: Counter[str] = Counter()
        self.rejects: Counter[str] = Counter()

    def finish_report(self) -> None:
        """Copy the counters into the report, sorted for a stable summary."""
        report = self.report
        report.frames_by_venue = dict(sorted(self.frames.items()))
        report.events_by_type = dict(sorted(self.events.items()))
        report.alerts_by_type = dict(sorted(self.alerts.items()))
        report.rejects_by_kind = dict(sorted(self.rejects.items()))

    def adapter(self, venue: str) -> VenueAdapter | None:
        if venue in self.adapters:
            return self.adapters[venue]
        cls = ADAPTERS.get(venue)
        adapter = None if cls is None else cls(symbols=[])
        self.adapters[venue] = adapter
        return adapter

    def emit(self, alerts: list[Alert]) -> None:
        out = self.out
        for alert in alerts:
            self.alerts[alert.type] += 1
            if out is not None:
                out.write(encode_alert(alert) + b"\n")

    def tick(self, now_ms: int) -> None:
        for detector in self.detectors:
            alerts = detector.on_tick(now_ms)
            if alerts:
                self.emit(alerts)

    def detect(self, events: Iterable[MarketEvent]) -> None:
        """Every event through every detector, in order: the order alerts come out in."""
        handlers = self.handlers
        emit = self.emit
        counts = self.events
        for event in events:
            counts[event.type] += 1
            for on_event in handlers:
                alerts = on_event(event)
                if alerts:
                    emit(alerts)

    def problem(self, kind: str, detail: str, dead: dict[str, Any]) -> None:
        self.rejects[kind] += 1
        self.problems.warning(kind, "backtest: %s (%s); further ones are counted, not logged", kind, detail)
        if self.dlq is not None:
            self.dlq.write(orjson.dumps({"kind": kind, "reason": detail, **dead}) + b"\n")

    def bad_line(self, item: BadLine) -> None:
        self.report.bad_lines += 1
        kind = "malformed_line" if item.reason.startswith("malformed JSON") else "bad_line"
        where = {"source": item.source, "lineno": item.lineno}
        self.problem(kind, f"{item.source}:{item.lineno}: {item.reason}",
                     {**where, "data": item.raw.decode("utf-8", "backslashreplace")})

    def rejected(self, line: RecordLine, result: ParseResult) -> None:
        for reject in result.rejects:
            self.problem(reject.kind, f"{line.venue} {line.kind}: {reject.detail}", self._dead(line))

    @staticmethod
    def _dead(line: RecordLine) -> dict[str, Any]:
        return {"recv_ts": line.recv_ts, "venue": line.venue, "kind_of_line": line.kind,
                "endpoint": line.endpoint, "data": line.data}


def run_backtest(
    paths: Iterable[str | Path],
    config: Config,
    out: BinaryIO | None,
    dlq: BinaryIO | None = None,
    log: logging.Logger = _LOG,
    *,
    processes: int | None = None,
) -> BacktestReport:
    """Replay ``paths`` (merged by ``recv_ts``) through the adapters and the enabled detectors.

    Alerts are written to ``out`` as one JSON line each, in emission order; bad input goes to ``dlq`` when
    given. Returns the counts; see the module doc for the time and bad-input rules.

    ``processes=2`` reads and parses in a second process while this one runs the detectors (see
    :mod:`flushwatch.backtest_pipeline`); the output is the same byte for byte. ``None`` chooses 2 for
    large inputs on a machine with two or more CPUs.
    """
    paths = list(paths)
    if processes is None:
        processes = auto_processes(paths)
    if processes >= 2:
        from flushwatch.backtest_pipeline import run_pipelined  # noqa: PLC0415 - needs this module

        return run_pipelined(paths, config, out, dlq, log)
    started = time.perf_counter()
    run = _Run(config, out, dlq, log)
    read_and_parse(paths, run, run.tick, run.detect)
    run.finish_report()
    run.report.elapsed_s = time.perf_counter() - started
    return run.report


def auto_processes(paths: list[str | Path]) -> int:
    """Two processes when there is enough input to repay starting one and a second CPU to run it."""
    if (os.cpu_count() or 1) < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    try:
        size = sum(Path(path).stat().st_size for path in paths)
    except OSError:
        return 1  # the reader reports the missing file; no need to fork for that
    return 2 if size >= PIPELINE_MIN_BYTES else 1


def read_and_parse(
    paths: Iterable[str | Path],
    run: _Run,
    on_tick: Callable[[int], None],
    on_events: Callable[[list[MarketEvent]], None],
) -> None:
    """The reading half of a backtest: lines → adapters → ``on_events``, with ``on_tick`` whenever
    recording time advanced a tick, and the final drain tick. Counts go to ``run``'s counters, except
    events by type, which ``on_events``'s side counts (see :meth:`_Run.detect`)."""
    report = run.report
    frames = run.frames
    last_tick: int | None = None
    last_ts: int | None = None
    lines = 0
    duplicates = gaps = 0

    for item in merge_recordings(paths):
        lines += 1
        if type(item) is not RecordLine:
            run.bad_line(cast(BadLine, item))
            continue
        recv_ts = item.recv_ts
        if last_tick is None:
            last_tick = recv_ts
            report.first_recv_ts = recv_ts
        elif recv_ts - last_tick >= TICK_INTERVAL_MS:
            last_tick = recv_ts
            on_tick(recv_ts)
        if last_ts is None or recv_ts > last_ts:
            last_ts = recv_ts
        venue = item.venue
        adapter = run.adapters[venue] if venue in run.adapters else run.adapter(venue)
        if adapter is None:
            run.problem("unknown_venue", f"no adapter for venue {venue!r}; known: {', '.join(sorted(ADAPTERS))}",
                        run._dead(item))
            continue
        frames[venue] += 1
        if item.kind == "ws":
            result = adapter.parse(item.data, recv_ts)
        else:
            result = adapter.parse_rest(item.endpoint, item.data, recv_ts)
        if result.rejects:
            run.rejected(item, result)
        if result.duplicates:
            duplicates += result.duplicates
        if result.gaps:
            gaps += result.gaps
        if result.events:
            on_events(result.events)

    if last_ts is not None:
        on_tick(last_ts + drain_horizon_ms(run.config))
    report.lines = lines
    report.last_recv_ts = last_ts
    report.duplicates = duplicates
    report.gaps = gaps
