from __future__ import annotations

import gzip

import flushwatch.recording as recording
from flushwatch.recording import (
    BadLine,
    RecordingWriter,
    RecordLine,
    merge_recordings,
    parse_line,
    read_recording,
)


def test_write_read_round_trip_plain_and_gzip(tmp_path):
    lines = [RecordLine(1, "binance", "ws", "wss://x/stream", '{"a":1}'),
             RecordLine(2, "binance", "rest", "/fapi/v1/openInterest?symbol=BTCUSDT", '{"b":"\\u00e9"}')]
    for name in ("r.jsonl", "r.jsonl.gz"):
        with RecordingWriter(tmp_path / name) as writer:
            for line in lines:
                writer.write(line)
        assert list(read_recording(tmp_path / name)) == lines


def test_gzip_detected_by_magic_not_name(tmp_path):
    path = tmp_path / "no_suffix.jsonl"
    path.write_bytes(gzip.compress(RecordLine(5, "v", "ws", "e", "d").to_json() + b"\n"))
    assert list(read_recording(path)) == [RecordLine(5, "v", "ws", "e", "d")]


def test_bad_lines_are_reported_not_fatal(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(
        b'{"recv_ts":1,"venue":"binance","kind":"ws","endpoint":"e","data":"x"}\n'
        b"{broken\n"
        b'{"recv_ts":"1","venue":"binance","kind":"ws","endpoint":"e","data":"x"}\n'
        b'{"recv_ts":2,"venue":"binance","kind":"udp","endpoint":"e","data":"x"}\n'
        b'{"recv_ts":3,"venue":"binance","kind":"ws","endpoint":"e","data":{"not":"a string"}}\n'
        b"\n"
        b'{"recv_ts":4,"venue":"binance","kind":"ws","endpoint":"e","data":"y"}\n'
    )
    items = list(read_recording(path))
    good = [i for i in items if isinstance(i, RecordLine)]
    bad = [i for i in items if isinstance(i, BadLine)]
    assert [g.data for g in good] == ["x", "y"]
    assert [b.lineno for b in bad] == [2, 3, 4, 5]
    assert "malformed JSON" in bad[0].reason
    assert "recv_ts" in bad[1].reason
    assert "kind" in bad[2].reason
    assert "data" in bad[3].reason


def test_merge_orders_by_recv_ts_stably(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_bytes(b"".join(RecordLine(t, "x", "ws", "", f"a{t}").to_json() + b"\n" for t in (1, 3, 5)))
    b.write_bytes(b"".join(RecordLine(t, "y", "ws", "", f"b{t}").to_json() + b"\n" for t in (1, 2, 6)))
    merged = [line.data for line in merge_recordings([a, b]) if isinstance(line, RecordLine)]
    assert merged == ["a1", "b1", "b2", "a3", "a5", "b6"]


def test_lines_split_across_read_blocks_and_odd_line_endings(tmp_path, monkeypatch):
    monkeypatch.setattr(recording, "_READ_BLOCK", 7)  # every line straddles several blocks
    lines = [RecordLine(1000 + i, "binance", "ws", "wss://x", f'{{"n":{i},"s":"{"x" * i}"}}') for i in range(40)]
    body = b"\r\n".join(line.to_json() for line in lines[:20]) + b"\n\n  \n"
    body += b"\n".join(line.to_json() for line in lines[20:])  # no newline at the end
    path = tmp_path / "r.jsonl"
    path.write_bytes(body)
    assert list(read_recording(path)) == lines


def test_fast_reader_and_general_parser_agree_line_by_line(tmp_path):
    good = RecordLine(5, "okx", "rest", "/api/v5/x?y=1", '{"a": "\\u00e9\\n"}').to_json()
    candidates = [
        good,
        b'{"recv_ts":5,"venue":"okx","kind":"ws","data":"{}"}',  # endpoint omitted: optional
        b'{"recv_ts":true,"venue":"okx","kind":"ws","endpoint":"","data":"{}"}',
        b'{"recv_ts":5,"venue":"","kind":"ws","endpoint":"","data":"{}"}',
        b'{"recv_ts":5,"venue":"okx","kind":"fix","endpoint":"","data":"{}"}',
        b'{"recv_ts":5,"venue":"okx","kind":"ws","endpoint":null,"data":"{}"}',
        b'{"recv_ts":5,"venue":"okx","kind":"ws","endpoint":"","data":{"a":1}}',
        b'{"recv_ts":5,"recv_ts":6,"venue":"okx","kind":"ws","endpoint":"","data":"{}"}',
        b'[1,2]', b'{"recv_ts":5', b'{"recv_ts":5,"venue":"ok\xed\xa0\x80","kind":"ws","endpoint":"","data":""}',
    ]
    path = tmp_path / "c.jsonl"
    path.write_bytes(b"\n".join(candidates) + b"\n")
    read = list(read_recording(path))
    expected = [parse_line(raw, str(path), n) for n, raw in enumerate(candidates, start=1)]
    assert read == expected
    assert [type(item).__name__ for item in read].count("RecordLine") == 3
