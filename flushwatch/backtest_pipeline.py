"""A backtest in two processes: one reads and parses, the other runs the detectors.

Reading a recording and parsing its frames costs about as much per line as running the five detectors,
so on a machine with two CPUs splitting the two halves nearly doubles the lines per second. The split is
a pipeline, not a partition: the reader process (forked, so it shares the loaded config and code) runs
:func:`flushwatch.backtest.read_and_parse` exactly as a one-process backtest does, including every tick
decision, the dead-letter output and the counters, and ships the resulting sequence of events and ticks
in msgpack batches over a pipe. This process feeds that sequence, in order, to the detectors. Detectors
therefore see the same events and ticks in the same order as in one process, and the alert output is
byte-identical; a test holds the two modes to that.

The pipe is the bound on memory: when the detectors fall behind, the reader blocks on a full pipe. A
failure on either side stops both: an exception in the reader is sent over and raised here, a reader
that dies without a word is reported with its exit code, and an exception here kills the reader.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import pickle
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import BinaryIO, Final

import msgspec

from flushwatch.backtest import BacktestReport, _Run, read_and_parse
from flushwatch.config import Config
from flushwatch.events import Funding, Liquidation, MarketEvent, OpenInterest, Trade

__all__ = ["BacktestReaderError", "run_pipelined"]

#: events and ticks per pipe message: large enough that the per-message cost vanishes, small enough that
#: the detectors start while the reader is still reading
BATCH_ITEMS: Final = 2048

#: dead-letter bytes the reader holds before sending them (a file of nothing but bad lines fills no batch)
DEAD_LETTER_CHUNK: Final = 1 << 20

_BATCH, _DEAD, _END, _FAILED = b"B", b"D", b"E", b"X"


class _Tick(msgspec.Struct, tag="tick", tag_field="type", gc=False):
    """``on_tick(now)`` for every detector, at this point of the sequence."""

    now: int


_ITEMS_DECODER: Final = msgspec.msgpack.Decoder(list[Trade | Liquidation | OpenInterest | Funding | _Tick])


class BacktestReaderError(RuntimeError):
    """The reader process failed in a way that could not be sent over as its own exception."""


def run_pipelined(
    paths: list[str | Path], config: Config, out: BinaryIO | None, dlq: BinaryIO | None, log: logging.Logger
) -> BacktestReport:
    """:func:`flushwatch.backtest.run_backtest` with the reading half in a forked process."""
    started = time.perf_counter()
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    # anything still buffered would be written twice: once here, once by the reader when it exits
    for stream in (out, dlq, sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    reader = context.Process(target=_reader_main, args=(paths, config, dlq is not None, log, send),
                             name="flushwatch-backtest-reader", daemon=True)
    reader.start()
    send.close()  # the reader holds the only write end: EOF here means it is gone
    run = _Run(config, out, None, log)
    try:
        counts = _detect(receive, run, reader, dlq)
        reader.join()
    finally:
        receive.close()
        if reader.is_alive():
            reader.kill()
            reader.join()
    # the reader's report has every count but the two made on this side
    counts.events_by_type = dict(sorted(run.events.items()))
    counts.alerts_by_type = dict(sorted(run.alerts.items()))
    counts.elapsed_s = time.perf_counter() - started
    return counts


def _detect(receive: Connection, run: _Run, reader: multiprocessing.process.BaseProcess,
            dlq: BinaryIO | None) -> BacktestReport:
    """Feed the reader's sequence to the detectors until its final report arrives: the events between two
    ticks go through :meth:`_Run.detect`, as the one-process backtest sends each line's events."""
    decode = _ITEMS_DECODER.decode
    while True:
        try:
            message = receive.recv_bytes()
        except EOFError:
            reader.join()
            raise BacktestReaderError(f"the backtest reader process exited with code {reader.exitcode} "
                                      "before finishing") from None
        kind, body = message[:1], memoryview(message)[1:]
        if kind == _BATCH:
            events: list[MarketEvent] = []
            for item in decode(body):
                if isinstance(item, _Tick):
                    if events:
                        run.detect(events)
                        events = []
                    run.tick(item.now)
                else:
                    events.append(item)
            if events:
                run.detect(events)
        elif kind == _DEAD:
            if dlq is not None:
                dlq.write(body)
        elif kind == _END:
            return msgspec.msgpack.decode(body, type=BacktestReport)
        else:
            raise pickle.loads(body)  # noqa: S301 - our own forked child, over a private pipe


class _DeadLetterPipe:
    """The reader's dead-letter stream: buffered here, sent over the pipe in pieces of bounded size."""

    def __init__(self, send: Connection) -> None:
        self._send = send
        self._buffer = bytearray()

    def write(self, data: bytes) -> int:
        self._buffer += data
        if len(self._buffer) >= DEAD_LETTER_CHUNK:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._buffer:
            self._send.send_bytes(_DEAD + self._buffer)
            self._buffer.clear()


def _reader_main(paths: list[str | Path], config: Config, want_dlq: bool, log: logging.Logger,
                 send: Connection) -> None:
    """The forked reader: run the reading half, ship its output, then its counters (or its exception).

    Dead letters go over the pipe too, for this process to write: the caller's dead-letter stream may be
    an in-memory buffer that a forked child cannot write into."""
    encode = msgspec.msgpack.Encoder().encode
    batch: list[object] = []
    dead = _DeadLetterPipe(send) if want_dlq else None

    def ship() -> None:
        if dead is not None:
            dead.flush()
        send.send_bytes(_BATCH + encode(batch))
        batch.clear()

    def on_tick(now_ms: int) -> None:
        batch.append(_Tick(now_ms))
        if len(batch) >= BATCH_ITEMS:
            ship()

    def on_events(events: list[MarketEvent]) -> None:
        batch.extend(events)
        if len(batch) >= BATCH_ITEMS:
            ship()

    try:
        run = _Run(config, None, dead, log, detectors=False)
        read_and_parse(paths, run, on_tick, on_events)
        ship()
        run.finish_report()
        send.send_bytes(_END + msgspec.msgpack.encode(run.report))
    except BaseException as exc:  # noqa: BLE001 - whatever stops the reader must reach the other side
        try:
            payload = pickle.dumps(exc)
        except Exception:  # noqa: BLE001 - an exception that does not pickle still gets reported
            payload = pickle.dumps(BacktestReaderError(f"{type(exc).__name__}: {exc}"))
        # OSError: the detector side is gone (it failed or was interrupted); nothing left to tell
        with contextlib.suppress(OSError):
            send.send_bytes(_FAILED + payload)
    finally:
        send.close()
