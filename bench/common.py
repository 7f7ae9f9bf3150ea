"""Shared pieces of the benchmarks: machine description, inputs, result tables, process probes.

Every benchmark prints the same header (what ran, on which machine, at which commit, how loaded the
machine was) and ends with one table of measured numbers, their targets and the named baseline measured in
the same run on the same input. ``--json FILE`` writes the same data for ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
if str(REPO) not in sys.path:  # the scripts run from a checkout: `python bench/decode.py`
    sys.path.insert(0, str(REPO))

#: where generated recordings are cached between runs (they are deterministic)
DEFAULT_WORKDIR = Path(os.environ.get("FW_BENCH_WORKDIR", "/tmp/fwbench"))
#: a separate virtualenv with the baseline projects (cryptofeed, quixstreams); see bench/README.md
DEFAULT_BASELINE_PYTHON = os.environ.get("FW_BENCH_BASELINE_PYTHON", "/tmp/benchvenv/bin/python")


# ---------------------------------------------------------------------------------------------- machine


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (``platform.processor()`` is often empty on Linux)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def dirty_product_files() -> list[str]:
    """Product files (flushwatch/, ingest/, processors/, sinks/) that differ from HEAD or are untracked:
    what a measurement ran on besides the commit."""
    try:
        status = subprocess.run(["git", "status", "--porcelain", "--", "flushwatch", "ingest", "processors", "sinks"],
                                cwd=REPO, capture_output=True, text=True, check=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line[3:] for line in status.splitlines() if line.strip()]


def git_commit() -> str:
    """HEAD's short hash, with ``+dirty`` when the working tree differs from it. A clean export made for
    benchmarking (``git archive`` + ``bench/``) names its commit in ``.bench_commit``."""
    marker = REPO / ".bench_commit"
    if marker.is_file():
        return marker.read_text().strip() + " (clean export)"
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, check=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                                capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if status else "")


def load_average() -> tuple[float, float, float]:
    """1, 5 and 15 minute load averages."""
    return os.getloadavg()


def machine_info() -> dict[str, Any]:
    """What a reader needs to compare two runs."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    mem_gib = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = int(line.split()[1]) / 1024 / 1024
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "commit": git_commit(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": affinity,
        "memory_gib": round(mem_gib, 1),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(terse=True),
        "load_avg_at_start": [round(x, 2) for x in load_average()],
        "uncommitted_product_files": dirty_product_files(),
    }


# ---------------------------------------------------------------------------------------------- options


def parser(description: str) -> argparse.ArgumentParser:
    """The options every benchmark has."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds: the CI smoke test")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON here")
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                   help=f"cache for generated recordings and scratch files (default {DEFAULT_WORKDIR})")
    return p


def baseline_python(explicit: str | None = None) -> str | None:
    """The interpreter of the baseline virtualenv, if it exists."""
    candidate = explicit or DEFAULT_BASELINE_PYTHON
    return candidate if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK) else None


# ---------------------------------------------------------------------------------------------- inputs


def synthetic_recording(n: int, workdir: Path, *, gz: bool = False, seed: int = 20250127) -> Path:
    """A cached deterministic Binance recording of ``n`` lines from ``bench/make_recordings.py``."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"synthetic_{n}_{seed}.jsonl{'.gz' if gz else ''}"
    if path.exists() and path.stat().st_size > 0:
        return path
    from bench.make_recordings import _monotonic, synthetic_lines, write_recording  # noqa: PLC0415

    tmp = path.with_name(path.name + ".part")
    if gz:
        tmp = tmp.with_name(path.stem + ".part.gz")  # write_recording gzips by suffix
    write_recording(_monotonic(synthetic_lines(n, seed)), tmp)
    tmp.replace(path)
    return path


def load_lines(path: Path) -> list[Any]:
    """Every good line of a recording, in memory (RecordLine objects)."""
    from flushwatch.recording import RecordLine, read_recording  # noqa: PLC0415

    return [line for line in read_recording(path) if isinstance(line, RecordLine)]


# ---------------------------------------------------------------------------------------------- results


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (``pct`` in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(pct / 100 * len(sorted_values) + 0.5)))
    return float(sorted_values[rank - 1])


def ratio(measured: float, baseline: float) -> float:
    """measured / baseline, NaN when the baseline is missing or zero."""
    return measured / baseline if baseline else float("nan")


def fmt(value: Any) -> str:
    """Numbers with thousands separators and sensible precision."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:  # NaN
            return "n/a"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:,.1f}"
        return f"{value:,.2f}"
    return str(value)


@dataclass
class Row:
    """One measured number, with its target (if the issue names one) and a verdict."""

    metric: str
    value: float | int | str | None
    unit: str = ""
    target: str = ""
    ok: bool | None = None
    note: str = ""


@dataclass
class Report:
    """Everything one benchmark run prints and writes."""

    name: str
    command: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=machine_info)
    rows: list[Row] = field(default_factory=list)
    baselines: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, metric: str, value: Any, unit: str = "", target: str = "", ok: bool | None = None,
            note: str = "") -> Row:
        row = Row(metric, value, unit, target, ok, note)
        self.rows.append(row)
        return row

    def baseline(self, metric: str, value: Any, unit: str = "", note: str = "") -> Row:
        row = Row(metric, value, unit, note=note)
        self.baselines.append(row)
        return row

    def note(self, text: str) -> None:
        self.notes.append(text)

    def print_header(self) -> None:
        m = self.machine
        print(f"== flushwatch benchmark: {self.name}")
        print(f"   command : {self.command}")
        print(f"   date    : {m['date']}   commit {m['commit']}")
        print(f"   machine : {m['cpu']}, {m['cores']} cores ({m['cores_usable']} usable), "
              f"{m['memory_gib']} GiB, {m['python']}, {m['platform']}")
        print(f"   load avg: {' '.join(str(x) for x in m['load_avg_at_start'])} (1/5/15 min) at start")
        if m.get("uncommitted_product_files"):
            print(f"   worktree: uncommitted product files: {', '.join(m['uncommitted_product_files'])}")
        for key, value in self.config.items():
            print(f"   config  : {key} = {value}")
        sys.stdout.flush()

    def print_table(self) -> None:
        self.machine["load_avg_at_end"] = [round(x, 2) for x in load_average()]
        rows = [("metric", "value", "unit", "target", "verdict")]
        for r in self.rows:
            verdict = "" if r.ok is None else ("MET" if r.ok else "MISSED")
            rows.append((r.metric, fmt(r.value), r.unit, r.target, verdict))
        for r in self.baselines:
            rows.append(("baseline: " + r.metric, fmt(r.value), r.unit, "", ""))
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        print()
        print(f"== results: {self.name}")
        for index, row in enumerate(rows):
            print("   " + "  ".join(cell.ljust(widths[i]) if i != 1 else cell.rjust(widths[i])
                                  for i, cell in enumerate(row)).rstrip())
            if index == 0:
                print("   " + "  ".join("-" * w for w in widths))
        notes = [f"{r.metric}: {r.note}" for r in [*self.rows, *self.baselines] if r.note] + self.notes
        for text in notes:
            print(f"   note: {text}")
        print(f"   load avg: {' '.join(str(x) for x in self.machine['load_avg_at_end'])} (1/5/15 min) at end")
        sys.stdout.flush()

    def to_json(self) -> dict[str, Any]:
        def rows(items: list[Row]) -> list[dict[str, Any]]:
            return [r.__dict__ for r in items]

        return {"name": self.name, "command": self.command, "config": self.config, "machine": self.machine,
                "results": rows(self.rows), "baselines": rows(self.baselines), "notes": self.notes,
                "extra": self.extra}

    def finish(self, json_path: Path | None) -> None:
        self.print_table()
        if json_path is not None:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_bytes(orjson.dumps(self.to_json(), option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))


def command_line() -> str:
    """How this benchmark was started, as a reader would type it."""
    script = Path(sys.argv[0])
    with contextlib.suppress(ValueError):
        script = script.resolve().relative_to(REPO)
    return " ".join(["python", str(script), *sys.argv[1:]])


# ---------------------------------------------------------------------------------------------- probes


def rss_mib(pid: int | None = None) -> float:
    """Resident set size of a process (default: this one) in MiB, from /proc."""
    path = Path(f"/proc/{pid or 'self'}/status")
    with contextlib.suppress(OSError, ValueError):
        for line in path.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def settle_heap() -> None:
    """Collect, then move every object alive now (the benchmark's inputs: a million frames or events) out of
    the garbage collector's sight (``gc.freeze``). A service does not hold its input in memory; without this
    a full collection would walk the inputs and stall the measured code for up to a second."""
    gc.collect()
    gc.freeze()


def cpu_seconds() -> float:
    """User + system CPU time of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU time of another process (from /proc/PID/stat)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks
    return float("nan")


@contextlib.contextmanager
def timed() -> Iterator[dict[str, float]]:
    """``with timed() as t:`` fills ``t["wall"]`` and ``t["cpu"]`` (seconds) for the block."""
    out: dict[str, float] = {}
    gc.collect()
    wall0, cpu0 = time.perf_counter(), cpu_seconds()
    try:
        yield out
    finally:
        out["wall"] = time.perf_counter() - wall0
        out["cpu"] = cpu_seconds() - cpu0


def py_spy() -> str | None:
    """The py-spy binary if installed (this environment's, the baseline venv's, or on PATH)."""
    for candidate in (Path(sys.executable).parent / "py-spy", Path(DEFAULT_BASELINE_PYTHON).parent / "py-spy"):
        if candidate.is_file():
            return str(candidate)
    return shutil.which("py-spy")


def run_json_subprocess(argv: list[str], timeout_s: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a helper that prints one JSON object as its last stdout line; return it (or an error entry)."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False,
                              env={**os.environ, **(env or {})}, cwd=REPO)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:.0f} s"}
    lines = [line for line in proc.stdout.splitlines() if line.strip().startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": f"exit {proc.returncode}: {(proc.stderr or proc.stdout)[-1500:]}"}
    return dict(orjson.loads(lines[-1]))


# ---------------------------------------------------------------------------------------------- kafka


def bench_config(bootstrap: str | None, prefix: str, *, fast_join: bool = True, **kafka: Any) -> Any:
    """The product's default config, pointed at ``bootstrap`` with a topic prefix, metrics off, every
    registered detector enabled, and (``fast_join``) the short group timings the test suite uses."""
    from flushwatch.config import load_config  # noqa: PLC0415
    from processors.registry import DETECTORS  # noqa: PLC0415

    config = load_config(environ={})
    update: dict[str, Any] = {"bootstrap_servers": [bootstrap] if bootstrap else [], "topic_prefix": prefix}
    if fast_join:
        update.update(session_timeout_ms=6000, heartbeat_interval_ms=1000)
    update.update(kafka)
    return config.model_copy(update={
        "kafka": config.kafka.model_copy(update=update),
        "metrics": config.metrics.model_copy(update={"enabled": False}),
        "detectors": config.detectors.model_copy(update={"enabled": list(DETECTORS)}),
    })


def partition_for(key: bytes, partitions: int) -> int:
    """The partition the Java/aiokafka default partitioner picks for ``key``."""
    from aiokafka.partitioner import murmur2  # noqa: PLC0415

    return (murmur2(key) & 0x7FFFFFFF) % partitions


async def produce_fast(bootstrap: str, records: Sequence[tuple[str, bytes, bytes, int]], partitions: int) -> float:
    """Produce ``(topic, key, value, timestamp_ms)`` records with aiokafka's batch API (set-up, not timed by
    the benchmarks); the partition is the default partitioner's. Returns the seconds it took."""
    from aiokafka import AIOKafkaProducer  # noqa: PLC0415

    started = time.perf_counter()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, max_batch_size=1024 * 1024,
                                max_request_size=16 * 1024 * 1024, linger_ms=0)
    await producer.start()
    try:
        cache: dict[bytes, int] = {}
        batches: dict[tuple[str, int], Any] = {}
        futures = []
        for topic, key, value, ts in records:
            part = cache.get(key)
            if part is None:
                part = cache[key] = partition_for(key, partitions)
            batch = batches.get((topic, part))
            if batch is None:
                batch = batches[(topic, part)] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=ts) is None:
                futures.append(await producer.send_batch(batch, topic, partition=part))
                batch = batches[(topic, part)] = producer.create_batch()
                batch.append(key=key, value=value, timestamp=ts)
        for (topic, part), batch in batches.items():
            futures.append(await producer.send_batch(batch, topic, partition=part))
        for future in futures:
            await future
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def create_bench_topics(config: Any, extra: Sequence[str] = ()) -> None:
    """Create the product's topics for ``config`` (plus ``extra`` ones with an explicit retention, which
    Quix Streams needs) on the broker."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: PLC0415

    from flushwatch.kafka import client_kwargs, create_topics  # noqa: PLC0415
    from flushwatch.topics import Topics  # noqa: PLC0415

    topics = Topics(config.kafka.topic_prefix)
    await create_topics(config.kafka, topics.all, compacted=topics.compacted)
    if extra:
        admin = AIOKafkaAdminClient(**client_kwargs(config.kafka), client_id="fwbench-admin")
        await admin.start()
        try:
            await admin.create_topics([
                NewTopic(name=name, num_partitions=config.kafka.partitions, replication_factor=1,
                         topic_configs={"retention.ms": "604800000", "retention.bytes": "-1"})
                for name in extra])
        finally:
            await admin.close()


# ---------------------------------------------------------------------------------------------- events


def parse_events(lines: Sequence[Any]) -> list[Any]:
    """Every event the product's Binance adapter makes of ``lines``, in order."""
    from ingest.binance import BinanceUsdmAdapter  # noqa: PLC0415

    adapter = BinanceUsdmAdapter([])
    events: list[Any] = []
    for line in lines:
        result = adapter.parse(line.data, line.recv_ts) if line.kind == "ws" else adapter.parse_rest(
            line.endpoint, line.data, line.recv_ts)
        events.extend(result.events)
    return events


def hot_asset(events: Sequence[Any], base: str = "BTC", *, liquidations_only: bool = False) -> list[Any]:
    """The worst case for partitioning: every event re-labelled to one base asset (so one key, one
    partition, one detector state). ``liquidations_only`` turns every trade into a liquidation of the
    same size (taker sell → long liquidated), the worst case for the cascade windows."""
    from msgspec.structs import replace  # noqa: PLC0415

    from flushwatch.events import Liquidation, Trade  # noqa: PLC0415

    out = []
    for ev in events:
        if liquidations_only and type(ev) is Trade:
            out.append(Liquidation(venue=ev.venue, symbol=ev.symbol, instrument=ev.instrument, base=base,
                                   ts=ev.ts, recv_ts=ev.recv_ts, side="long" if ev.side == "sell" else "short",
                                   price=ev.price, qty=ev.qty, notional_usd=ev.notional_usd, sampled=True))
        elif liquidations_only and type(ev) is not Liquidation:
            continue
        else:
            out.append(replace(ev, base=base))
    return out


# ---------------------------------------------------------------------------------------------- replay


@dataclass
class ReplayProcess:
    """``flushwatch replay`` serving a recording from its own process (the venue side of a benchmark)."""

    proc: subprocess.Popen[str]
    ws_url: str
    rest_url: str
    frames: int

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_replay(recording: Path, speed: float, timeout_s: float = 120.0) -> ReplayProcess:
    """Start ``python -m flushwatch.cli replay RECORDING --speed S --exit-when-done`` and wait for its URLs."""
    import re  # noqa: PLC0415

    proc = subprocess.Popen(
        [sys.executable, "-m", "flushwatch.cli", "replay", str(recording), "--speed", str(speed),
         "--exit-when-done"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO)
    deadline = time.monotonic() + timeout_s
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        found = re.search(r"binance: (\d+) frames; \S+WS_URL=(\S+) \S+REST_URL=(\S+)", line)
        if found:
            return ReplayProcess(proc, found.group(2), found.group(3), int(found.group(1)))
    proc.kill()
    raise RuntimeError(f"flushwatch replay did not start (exit code {proc.poll()})")


def replay_config(config: Any, replay: ReplayProcess, symbols: Sequence[str]) -> Any:
    """``config`` with the Binance venue pointed at a local replay server."""
    binance = config.venues.binance.model_copy(update={"ws_url": replay.ws_url, "rest_url": replay.rest_url,
                                                        "symbols": list(symbols), "enabled": True})
    return config.model_copy(update={"venues": config.venues.model_copy(update={"binance": binance})})


SYNTHETIC_SYMBOLS = ("BTCUSDT", "BTCUSDC", "ETHUSDT", "SOLUSDT", "DOGEUSDT", "XRPUSDT")


class PySpy:
    """``py-spy record`` of this process into collapsed stacks, for attributing time to modules."""

    def __init__(self, out: Path, rate: int = 250) -> None:
        self.out = out
        self.rate = rate
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> bool:
        binary = py_spy()
        if binary is None:
            return False
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [binary, "record", "--pid", str(os.getpid()), "--rate", str(self.rate), "--format", "raw",
             "--nonblocking", "--output", str(self.out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # attach before the measured work starts
        return self.proc.poll() is None

    def stop(self) -> dict[str, float]:
        """Stop sampling; share of samples per group of source paths (see :func:`attribute`)."""
        if self.proc is None:
            return {}
        self.proc.send_signal(2)  # SIGINT: py-spy writes its output and exits
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return {}
        return attribute(self.out) if self.out.exists() else {}


#: (label, substring of a frame's source path) — the first group a stack's innermost matching frame
#: belongs to gets the sample
PROFILE_GROUPS: tuple[tuple[str, str], ...] = (
    ("broker client (aiokafka + flushwatch/kafka.py)", "aiokafka/"),
    ("broker client (aiokafka + flushwatch/kafka.py)", "flushwatch/kafka.py"),
    ("websockets client", "websockets/"),
    ("venue parser (ingest/binance.py, ingest/parsing.py)", "ingest/binance.py"),
    ("venue parser (ingest/binance.py, ingest/parsing.py)", "ingest/parsing.py"),
    ("event encoding (flushwatch/codec.py)", "flushwatch/codec.py"),
    ("detectors (processors/*)", "processors/"),
    ("metrics (prometheus_client, flushwatch/metrics.py)", "prometheus_client/"),
    ("metrics (prometheus_client, flushwatch/metrics.py)", "flushwatch/metrics.py"),
    ("ingest plumbing (driver, pipeline, service)", "ingest/"),
    ("asyncio event loop", "asyncio/"),
)


def attribute(collapsed: Path) -> dict[str, float]:
    """Share of samples by :data:`PROFILE_GROUPS`, assigning each stack to its innermost known frame."""
    import re  # noqa: PLC0415

    totals: dict[str, float] = {}
    all_samples = 0
    for raw in collapsed.read_text(errors="replace").splitlines():
        stack, _, count = raw.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        all_samples += n
        label = "other"
        for frame in reversed(stack.split(";")):
            found = re.search(r"\(([^)]*):\d+\)$", frame)
            path = found.group(1) if found else ""
            hit = next((name for name, needle in PROFILE_GROUPS if needle in path), None)
            if hit is not None:
                label = hit
                break
        totals[label] = totals.get(label, 0) + n
    return {k: v / all_samples for k, v in sorted(totals.items(), key=lambda kv: -kv[1])} if all_samples else {}
