"""The two-process backtest must be the one-process backtest, only faster: same alerts byte for byte, same
dead letters, same counts; and a failure on either side must stop both and reach the caller."""

from __future__ import annotations

import io
import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest

import flushwatch.backtest_pipeline as pipeline
from flushwatch.backtest import BacktestReport, auto_processes, run_backtest
from flushwatch.config import Config
from flushwatch.recording import RecordLine
from tests.unit.test_backtest import DEMO, demo_lines, load_script, write_lines

COUNTS = ("lines", "bad_lines", "duplicates", "gaps", "first_recv_ts", "last_recv_ts", "frames_by_venue",
          "events_by_type", "alerts_by_type", "rejects_by_kind")


def both(paths: list[Path], cfg: Config | None = None) -> tuple[BacktestReport, bytes, bytes]:
    """Run in one and in two processes; assert they agree; return the two-process result."""
    results = []
    for processes in (1, 2):
        out, dlq = io.BytesIO(), io.BytesIO()
        report = run_backtest(paths, cfg or Config(), out, dlq, processes=processes)
        results.append(({name: getattr(report, name) for name in COUNTS}, out.getvalue(), dlq.getvalue(), report))
    (one, out1, dlq1, _), (two, out2, dlq2, report) = results
    assert one == two
    assert out1 == out2
    assert dlq1 == dlq2
    assert multiprocessing.active_children() == []
    return report, out2, dlq2


def test_demo_recording_same_alerts() -> None:
    report, out, _ = both([DEMO])
    assert report.alerts_by_type == {"cascade_ended": 5, "cascade_started": 5}
    assert len(out.splitlines()) == 10


def test_bad_input_same_dead_letters_in_the_same_order(tmp_path: Path) -> None:
    good = [ln.to_json() for ln in demo_lines()]
    bad = [b"not json", RecordLine(1737996700001, "nosuchvenue", "ws", "wss://e", "{}").to_json(),
           RecordLine(1737996900160, "binance", "ws", "wss://x", "{not json").to_json()]
    path = write_lines(tmp_path / "mixed.jsonl", good[:100] + bad + good[100:] + bad)
    report, _, dlq = both([path])
    assert report.bad_lines == 2 and len(dlq.splitlines()) == 6


def test_dead_letters_are_sent_in_bounded_pieces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "DEAD_LETTER_CHUNK", 64)  # the forked reader inherits it
    path = write_lines(tmp_path / "garbage.jsonl", [b"garbage %d" % i for i in range(500)])
    report, out, dlq = both([path])
    assert (report.bad_lines, out, len(dlq.splitlines())) == (500, b"", 500)


def test_synthetic_recording_with_every_event_type(tmp_path: Path) -> None:
    path = tmp_path / "synthetic.jsonl"
    assert load_script().main(["synthetic", "120000", str(path)]) == 0
    report, out, _ = both([path])
    assert set(report.events_by_type) == {"trade", "liquidation", "open_interest", "funding"}
    assert out  # some cascades fire, and they are the same in both modes


def test_missing_file_raises_the_same_error_in_both_modes(tmp_path: Path) -> None:
    for processes in (1, 2):
        with pytest.raises(FileNotFoundError):
            run_backtest([tmp_path / "nope.jsonl"], Config(), None, processes=processes)
    assert multiprocessing.active_children() == []


def test_reader_that_dies_is_reported_with_its_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    def die(*_: Any) -> None:
        os._exit(7)

    monkeypatch.setattr(pipeline, "read_and_parse", die)
    with pytest.raises(pipeline.BacktestReaderError, match="exited with code 7"):
        run_backtest([DEMO], Config(), None, processes=2)
    assert multiprocessing.active_children() == []


def test_detector_failure_stops_the_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    class Boom(Exception):
        pass

    def explode(self: Any, alerts: Any) -> None:
        raise Boom("detector side failed")

    monkeypatch.setattr(pipeline._Run, "emit", explode)  # the first alert blows up on the detector side
    with pytest.raises(Boom):
        run_backtest([DEMO], Config(), None, processes=2)
    assert multiprocessing.active_children() == []


def test_auto_uses_two_processes_only_for_large_inputs(tmp_path: Path) -> None:
    small = write_lines(tmp_path / "small.jsonl", [b"x"])
    assert auto_processes([small]) == 1
    assert auto_processes([tmp_path / "missing"]) == 1
    big = tmp_path / "big.jsonl"
    with big.open("wb") as handle:
        handle.truncate(16 * 1024 * 1024)  # sparse: the size is what counts
    assert auto_processes([big]) == (2 if (os.cpu_count() or 1) >= 2 else 1)
