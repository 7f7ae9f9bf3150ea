"""flushwatch backtest over recordings: the committed demo, broken input, and a synthetic volume run."""

from __future__ import annotations

import csv
import gzip
import importlib.util
import io
import logging
import sys
from pathlib import Path
from types import ModuleType

import orjson
import pytest

from flushwatch.backtest import BacktestReport, drain_horizon_ms, run_backtest
from flushwatch.config import Config
from flushwatch.recording import RecordLine, read_recording
from processors.cascade import CascadeDetector
from processors.registry import DETECTORS, build_detectors

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "flushwatch" / "data" / "demo_binance_2025-01-27.jsonl.gz"
# the real CSV, copied into the repo with its provenance (tests/fixtures/binance/SOURCES.md)
SHARED_CSV = REPO / "tests" / "fixtures" / "binance" / "binance_forceorder_allsymbols_2025-01-26_2025-02-06.csv"


def config(**cascade: object) -> Config:
    return Config.model_validate({"cascade": cascade} if cascade else {})


def backtest(paths: list[Path], cfg: Config | None = None) -> tuple[BacktestReport, bytes, bytes]:
    out, dlq = io.BytesIO(), io.BytesIO()
    report = run_backtest(paths, cfg or config(), out, dlq)
    return report, out.getvalue(), dlq.getvalue()


def summary(output: bytes) -> list[tuple[str, str, str, str, int, float, int]]:
    rows = []
    for line in output.splitlines():
        a = orjson.loads(line)
        m = a["metrics"]
        rows.append((a["type"], a["base"], m["side"], a["severity"], a["ts"], m["notional_usd"], m["events"]))
    return rows


def write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def demo_lines() -> list[RecordLine]:
    return [item for item in read_recording(DEMO) if isinstance(item, RecordLine)]


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_recordings", REPO / "bench" / "make_recordings.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_recordings"] = module
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- the real 2025-01-27 session

# 16:53-16:56 UTC long flush: ETH and DOGE pass min_events=10 (BTC's best window has 9 sampled events);
# the 17:08 wave: BTC, XRP, TRUMP. Shorts never come close. Values are Binance z × ap sums.
DEMO_ALERTS = [
    ("cascade_started", "ETH", "long", "info", 1737996852142, 100086.75, 12),  # 16:54:12.142
    ("cascade_started", "DOGE", "long", "critical", 1737996888078, 408662.02, 10),  # 395 K order at 16:54:48
    ("cascade_ended", "DOGE", "long", "critical", 1737997008078, 417572.52, 14),
    ("cascade_ended", "ETH", "long", "info", 1737997014493, 207973.36, 25),
    ("cascade_started", "BTC", "long", "info", 1737997725011, 243538.27, 10),  # 17:08:45.011
    ("cascade_started", "XRP", "long", "info", 1737997727659, 40315.21, 17),
    ("cascade_started", "TRUMP", "long", "info", 1737997738454, 39085.48, 16),
    ("cascade_ended", "BTC", "long", "info", 1737997842967, 255945.6, 16),
    ("cascade_ended", "XRP", "long", "info", 1737997847659, 50256.33, 19),
    ("cascade_ended", "TRUMP", "long", "info", 1737997858454, 39085.48, 16),
]


def test_demo_recording_fires_the_real_flushes_and_is_byte_identical() -> None:
    report, first, dlq = backtest([DEMO])
    assert summary(first) == DEMO_ALERTS
    assert report.lines == 1344 and report.frames_by_venue == {"binance": 1344}
    assert report.events_by_type == {"liquidation": 1344}
    assert report.alerts_by_type == {"cascade_ended": 5, "cascade_started": 5}
    assert report.rejects_by_kind == {} and report.bad_lines == 0 and dlq == b""
    _, second, _ = backtest([DEMO])
    assert first == second
    started = orjson.loads(first.splitlines()[0])
    assert started["alert_id"] == "54265b8748ff2549f57cbc77311834d2"
    assert started["window"] == {"start": 1737996806715, "end": 1737996852142}
    assert started["metrics"]["lower_bound"] is True
    assert started["message"] == (
        "ETH long liquidation cascade started: at least $100K liquidated in 60 s across binance "
        "(12 events), price -0.2%"
    )
    assert "alerts by type:  cascade_ended=5, cascade_started=5" in report.summary()


def test_merging_split_recordings_gives_the_same_output(tmp_path: Path) -> None:
    lines = demo_lines()
    odd = write_lines(tmp_path / "a.jsonl", [ln.to_json() for ln in lines[1::2]])
    even = write_lines(tmp_path / "b.jsonl", [ln.to_json() for ln in lines[0::2]])
    _, merged, _ = backtest([odd, even])
    _, whole, _ = backtest([DEMO])
    assert merged == whole


def test_input_that_stops_mid_flush_is_drained_to_the_end(tmp_path: Path) -> None:
    cut = [ln.to_json() for ln in demo_lines() if ln.recv_ts <= 1737996888078 + 150]  # right after DOGE starts
    report, out, _ = backtest([write_lines(tmp_path / "cut.jsonl", cut)])
    rows = summary(out)
    assert [r[:3] for r in rows] == [
        ("cascade_started", "ETH", "long"), ("cascade_started", "DOGE", "long"),
        ("cascade_ended", "ETH", "long"), ("cascade_ended", "DOGE", "long"),  # one final tick, end-time order
    ]
    assert report.last_recv_ts == 1737996888228
    last = orjson.loads(out.splitlines()[-1])
    assert last["emitted_ts"] == report.last_recv_ts + drain_horizon_ms(config())


FLUSH_DAY_START, FLUSH_DAY_END = 1737936000000, 1738022400000  # 2025-01-27 00:00 and 2025-01-28 00:00 UTC


def test_quiet_sessions_of_the_real_csv_fire_nothing(tmp_path: Path) -> None:
    script = load_script()
    seen: set[tuple[str, ...]] = set()
    lines = []
    with SHARED_CSV.open(newline="") as handle:
        for row in csv.reader(handle):
            key = tuple(row[:11])
            if key in seen or FLUSH_DAY_START <= int(row[10]) < FLUSH_DAY_END:
                continue  # duplicates, and 2025-01-27 (the flush day) which the demo covers
            seen.add(key)
            ts, frame = script.force_order_frame(row)
            lines.append(RecordLine(ts + 150, "binance", "ws", script.LIVE_ENDPOINT, frame))
    lines.sort(key=lambda ln: ln.recv_ts)
    assert len(lines) == 24 + 453 + 16  # the 2025-01-26 and 2025-02-06 sessions
    report, out, _ = backtest([write_lines(tmp_path / "quiet.jsonl", [ln.to_json() for ln in lines])])
    assert report.events_by_type == {"liquidation": 493}
    assert out == b""


# ---------------------------------------------------------------- bad input


def test_bad_lines_unknown_venues_and_bad_frames_are_counted_and_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = [ln.to_json() for ln in demo_lines()]
    nan_frame = (
        '{"stream":"!forceOrder@arr","data":{"e":"forceOrder","E":1737996900000,"o":{"s":"BTCUSDT","S":"SELL",'
        '"o":"LIMIT","f":"IOC","q":"1","p":"NaN","ap":"NaN","X":"FILLED","l":"1","z":"1","T":1737996900000}}}'
    )
    bad = [
        b'{"recv_ts": 1737996700000, "venue": "binance", "kind": "ws", "endpoint": "x", "data": "{"',  # cut
        b"this is not json",
        b'{"recv_ts": "soon", "venue": "binance", "kind": "ws", "endpoint": "", "data": "{}"}',
        RecordLine(1737996700001, "nosuchvenue", "ws", "wss://example", "{}").to_json(),
        RecordLine(1737996700002, "nosuchvenue", "ws", "wss://example", "{}").to_json(),
        RecordLine(1737996900150, "binance", "ws", "wss://x", nan_frame).to_json(),
        RecordLine(1737996900160, "binance", "ws", "wss://x", "{not json").to_json(),
    ]
    # bad lines sprinkled through the real session; receive order is kept by merging on recv_ts
    mixed = good[:100] + bad[:3] + good[100:400] + bad[3:] + good[400:]
    with caplog.at_level(logging.WARNING, logger="flushwatch.backtest"):
        report, out, dlq = backtest([write_lines(tmp_path / "broken.jsonl", mixed)])
    assert report.lines == 1344 + 7
    assert report.bad_lines == 3
    assert report.rejects_by_kind == {
        "bad_line": 1, "malformed_line": 2, "unknown_venue": 2, "non_finite": 1, "malformed_json": 1,
    }
    assert report.frames_by_venue == {"binance": 1346}
    assert report.events_by_type == {"liquidation": 1344}
    assert summary(out) == DEMO_ALERTS  # the run completed with the same findings
    dead = [orjson.loads(x) for x in dlq.splitlines()]
    assert [d["kind"] for d in dead] == [
        "malformed_line", "malformed_line", "bad_line", "unknown_venue", "unknown_venue", "non_finite",
        "malformed_json",
    ]
    assert dead[1]["data"] == "this is not json" and dead[5]["data"] == nan_frame
    assert all(d["reason"] for d in dead)
    # logged once per kind
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 5 and sum(m.startswith("backtest: unknown_venue") for m in logged) == 1


def test_gzip_recording_with_a_corrupt_line_still_completes(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl.gz"
    lines = [ln.to_json() for ln in demo_lines()[:50]]
    with gzip.open(path, "wb") as handle:
        handle.write(b"\n".join([*lines[:10], b"\xff\xfe garbage", *lines[10:]]) + b"\n")
    report, _, dlq = backtest([path])
    assert (report.lines, report.bad_lines, report.frames_by_venue) == (51, 1, {"binance": 50})
    assert orjson.loads(dlq)["kind"] == "malformed_line"


def test_empty_input() -> None:
    report = run_backtest([], config(), None)
    assert (report.lines, report.alerts_by_type) == (0, {})


# ---------------------------------------------------------------- registry and volume


def test_registry_builds_enabled_detectors() -> None:
    assert set(DETECTORS) == {"cascade", "oi_flush", "funding", "levels", "clusters"}
    assert DETECTORS["cascade"] is CascadeDetector
    default = build_detectors(Config.model_validate({}))
    assert [d.name for d in default] == ["cascade", "oi_flush", "funding", "levels", "clusters"]
    detectors = build_detectors(Config.model_validate({"cascade": {"min_events": 3},
                                                       "detectors": {"enabled": ["cascade"]}}))
    assert len(detectors) == 1 and isinstance(detectors[0], CascadeDetector)
    assert detectors[0].config.min_events == 3
    with pytest.raises(ValueError, match=r"unknown detector 'nope'; known detectors: "):
        build_detectors(Config.model_validate({"detectors": {"enabled": ["cascade", "nope"]}}))
    with pytest.raises(ValueError, match="twice"):
        build_detectors(Config.model_validate({"detectors": {"enabled": ["cascade", "cascade"]}}))


def test_synthetic_200k_frame_recording(tmp_path: Path) -> None:
    script = load_script()
    path = tmp_path / "synthetic.jsonl.gz"
    assert script.main(["synthetic", "200000", str(path)]) == 0
    report, out, dlq = backtest([path])
    assert report.lines == 200_000 and report.bad_lines == 0 and report.rejects_by_kind == {}
    assert dlq == b""
    assert set(report.events_by_type) == {"trade", "liquidation", "open_interest", "funding"}
    started = report.alerts_by_type.get("cascade_started", 0)
    assert started >= 1 and report.alerts_by_type.get("cascade_ended") == started
    assert report.frames_per_s > 0 and "lines/s" in report.summary()
    # deterministic generator: the same seed writes the same bytes
    again = tmp_path / "again.jsonl.gz"
    script.main(["synthetic", "200000", str(again)])
    assert again.read_bytes() == path.read_bytes()
    assert backtest([again])[1] == out
