"""The ``flushwatch`` command as a user runs it: subprocesses, exit codes, output, and no orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from flushwatch.app import demo_recording_path

FLUSHWATCH = [sys.executable, "-m", "flushwatch.cli"]


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FLUSHWATCH, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, check=False)


def test_help_lists_every_command():
    result = run("--help")
    assert result.returncode == 0
    for command in ("run", "ingest", "process", "sink", "broker", "record", "replay", "backtest", "config",
                    "venues"):
        assert command in result.stdout


def test_config_show_masks_secrets_and_round_trips_as_toml(tmp_path):
    result = run("config", "show", env={"FLUSHWATCH_KAFKA__SASL_PASSWORD": "hunter2",
                                        "FLUSHWATCH_CASCADE__MIN_EVENTS": "12"})
    assert result.returncode == 0, result.stderr
    assert "hunter2" not in result.stdout
    assert 'sasl_password = "**********"' in result.stdout
    assert "min_events = 12" in result.stdout
    saved = tmp_path / "saved.toml"
    saved.write_text(result.stdout.replace('sasl_password = "**********"', ""))
    again = run("config", "show", "--json", "--config", str(saved))
    assert again.returncode == 0, again.stderr
    assert orjson.loads(again.stdout)["cascade"]["min_events"] == 12


def test_config_errors_are_named_with_exit_code_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[cascade]\nwindow = 30\n")
    result = run("config", "show", "--config", str(bad))
    assert result.returncode == 2
    assert "cascade.window: unknown key" in result.stderr
    assert "Traceback" not in result.stderr


def test_backtest_cli_is_deterministic(tmp_path):
    outs = []
    for name in ("a.jsonl", "b.jsonl"):
        result = run("backtest", str(demo_recording_path()), "--out", str(tmp_path / name))
        assert result.returncode == 0, result.stderr
        assert "alerts by type:  cascade_ended=5, cascade_started=5" in result.stderr
        outs.append((tmp_path / name).read_bytes())
    assert outs[0] == outs[1]
    assert len(outs[0].splitlines()) == 10


def test_venues_lists_binance_and_its_limits():
    result = run("venues")
    assert result.returncode == 0
    assert "binance" in result.stdout
    assert "SAMPLED" in result.stdout


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.update(int(c) for c in text)
    return found


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def _start_run(tmp_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    """``flushwatch run`` on the embedded broker with a slow replay, until the broker child is up."""
    with (tmp_path / "err.log").open("wb") as err:
        proc = subprocess.Popen(
            [*FLUSHWATCH, "run", "--replay", str(demo_recording_path()), "--speed", "1", "--metrics-port", "0"],
            stdout=subprocess.DEVNULL, stderr=err,
            env={**os.environ, "FLUSHWATCH_KAFKA__SESSION_TIMEOUT_MS": "6000",
                 "FLUSHWATCH_KAFKA__HEARTBEAT_INTERVAL_MS": "1000"})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if b"IN-MEMORY development broker" in (tmp_path / "err.log").read_bytes():
            kids = [k for k in _children(proc.pid) if "tansu" in Path(f"/proc/{k}/cmdline").read_text()]
            if kids:
                return proc, kids[0]
        assert proc.poll() is None, (tmp_path / "err.log").read_text()
        time.sleep(0.05)
    proc.kill()
    pytest.fail("the embedded broker did not start")


def _wait_dead(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_sigterm_drains_and_stops_the_embedded_broker(tmp_path):
    proc, broker_pid = _start_run(tmp_path)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert _wait_dead(broker_pid), "the embedded broker outlived flushwatch"
    log = (tmp_path / "err.log").read_text()
    assert "SIGTERM received: draining" in log
    assert "stopped the embedded broker" in log
    # the run's own embedded broker gets broker.partitions (1), not kafka.partitions (6)
    assert "with 1 partition(s) each" in log


def test_kill_9_leaves_no_orphan_broker(tmp_path):
    proc, broker_pid = _start_run(tmp_path)
    proc.kill()
    proc.wait(timeout=10)
    assert _wait_dead(broker_pid), "the embedded broker was orphaned by kill -9"


def test_config_show_handles_sink_targets_and_masks_their_secrets(tmp_path):
    config = tmp_path / "targets.toml"
    config.write_text('[[sink.targets]]\nkind = "webhook"\nname = "ops"\nurl = "http://127.0.0.1:9/h"\n'
                      'secret = "topsecret"\nfilter = { types = ["cascade_started"] }\n'
                      '[[sink.targets]]\nkind = "slack"\nurl_env = "SLACK_URL"\n')
    shown = run("config", "show", "--config", str(config))
    assert shown.returncode == 0, shown.stderr
    assert "topsecret" not in shown.stdout
    assert shown.stdout.count("[[sink.targets]]") == 2
    as_json = run("config", "show", "--json", "--config", str(config))
    assert as_json.returncode == 0, as_json.stderr
    targets = orjson.loads(as_json.stdout)["sink"]["targets"]
    assert [t["name"] for t in targets] == ["ops", "slack"]
    assert targets[0]["secret"] == "**********"
    saved = tmp_path / "saved.toml"
    saved.write_text(shown.stdout.replace('secret = "**********"', 'secret = "x"'))
    again = run("config", "show", "--json", "--config", str(saved))
    assert again.returncode == 0, again.stderr
    assert orjson.loads(again.stdout)["sink"]["targets"][0]["filter"]["types"] == ["cascade_started"]


def test_tail_without_a_cluster_explains_what_it_needs():
    result = run("tail", "alerts")
    assert result.returncode == 2
    assert "tail needs a cluster" in result.stderr
