"""Baseline for bench/detectors.py: the sliding-window liquidation sum written with Quix Streams.

Runs in the baseline virtualenv (Quix Streams pins confluent-kafka < 2.13 and pydantic < 2.14), as a
subprocess of ``bench/detectors.py``, against the same broker and the same events (flushwatch's wire JSON,
already produced to ``TOPIC``, every record keyed by the one hot base asset). It imports nothing from
flushwatch and prints one JSON line with its timings.

The application: count every record; keep liquidations; their ``notional_usd`` as a float; a 60 s sliding
window (event time = the record's ``ts``) summed per Kafka key with ``.current()`` (every update, which is
what a threshold check needs); keep window sums at or above the threshold. State lives in RocksDB with
the changelog topic on (Quix's defaults: that is its state persistence), commits every second.

Timing is from the first record seen to the ``--expect``-th, measured inside the app, so start-up, topic
checks and the group join are excluded, as on the flushwatch side. ``--budget-s`` stops earlier and
reports the rate over the records processed so far (Quix's sliding windows get slow when every record is
a liquidation; the rate is steady once the first window is full).

Usage: ``python bench/baseline_quix.py BOOTSTRAP TOPIC --expect N [--state-dir DIR]``
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import tempfile
import time
import uuid


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bootstrap")
    p.add_argument("topic")
    p.add_argument("--expect", type=int, required=True)
    p.add_argument("--window-ms", type=int, default=60_000)
    p.add_argument("--threshold", type=float, default=150_000.0)
    p.add_argument("--state-dir")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--budget-s", type=float, default=0.0,
                   help="stop after this many seconds of processing and report the rate so far (0: no limit)")
    args = p.parse_args()

    from quixstreams import Application  # noqa: PLC0415
    from quixstreams import __version__ as quix_version  # noqa: PLC0415

    state_dir = args.state_dir or tempfile.mkdtemp(prefix="fwbench-quix-")
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=f"fwbench-quix-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        commit_interval=1.0,
        state_dir=state_dir,
        use_changelog_topics=True,
        loglevel=logging.WARNING,
        consumer_extra_config={"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000},
    )
    topic = app.topic(args.topic, value_deserializer="json", key_deserializer="str",
                      timestamp_extractor=lambda value, headers, ts, ts_type: value["ts"])
    marks: dict[str, float] = {}
    seen = [0]
    crossings = [0]

    def count(_value: dict) -> None:
        seen[0] += 1
        if seen[0] == 1:
            marks["first"] = time.perf_counter()
            marks["cpu_first"] = cpu_seconds()
        if seen[0] == args.expect or (args.budget_s and seen[0] % 100 == 0
                                       and time.perf_counter() - marks["first"] > args.budget_s):
            marks["last"] = time.perf_counter()
            marks["cpu_last"] = cpu_seconds()
            app.stop()

    def crossed(_value: dict) -> None:
        crossings[0] += 1

    sdf = app.dataframe(topic)
    sdf = sdf.update(count)
    sdf = sdf[sdf["type"] == "liquidation"]
    sdf = sdf.apply(lambda value: float(value["notional_usd"]))
    sdf = sdf.sliding_window(duration_ms=args.window_ms).sum().current()
    sdf = sdf.filter(lambda window: window["value"] >= args.threshold)
    sdf = sdf.update(crossed)
    started = time.perf_counter()
    app.run(sdf, timeout=args.timeout)
    if "last" not in marks:
        print(json.dumps({"error": f"saw {seen[0]} of {args.expect} records"}))
        return 1
    seconds = marks["last"] - marks["first"]
    print(json.dumps({
        "records": seen[0], "expected": args.expect, "seconds": seconds,
        "cpu_seconds": marks["cpu_last"] - marks["cpu_first"],
        "startup_s": marks["first"] - started, "window_updates_over_threshold": crossings[0],
        "quixstreams": quix_version, "python": sys.version.split()[0],
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
