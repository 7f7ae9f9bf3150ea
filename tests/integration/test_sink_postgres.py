"""The postgres sink against a real PostgreSQL server: a throw-away cluster (initdb + pg_ctl, on a free
loopback port, as the ``postgres`` user when the tests run as root) started once for this module."""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from flushwatch.codec import encode_alert
from flushwatch.events import Alert
from flushwatch.kafka import Producer, create_topics
from flushwatch.metrics import Metrics
from flushwatch.topics import Topics
from sinks.base import DeliveryError
from sinks.postgres import PostgresSink, migrate
from sinks.service import SinkService, SinkTarget

from .helpers import kafka_config, produce
from .test_sink_support import FakeClock, assert_valid_alert, demo_alerts, fast_groups, make_alert


def _pg_bindir() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def pg_dsn() -> Iterator[str]:
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (no initdb on PATH or in /usr/lib/postgresql/*/bin); "
                    ".ci/run installs the Debian package 'postgresql'")
    run_as: dict[str, Any] = {}
    if os.geteuid() == 0:  # initdb refuses to run as root
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run initdb as "
                        "(the Debian package 'postgresql' creates it)")
        run_as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    root = Path(tempfile.mkdtemp(prefix="fw-pg-"))  # in /tmp: the postgres user must reach it
    if run_as:
        os.chown(root, run_as["user"], run_as["group"])
    data = root / "data"
    port = _free_port()
    common: dict[str, Any] = {"cwd": root, "capture_output": True, "timeout": 60, **run_as}
    try:
        subprocess.run([bindir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "--no-sync",
                        "-E", "UTF8", "--locale=C"], check=True, **common)
        options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories='' -c fsync=off"
        subprocess.run([bindir / "pg_ctl", "-D", data, "-o", options, "-l", root / "server.log", "-w", "-t", "30",
                        "start"], check=True, **common)
    except subprocess.CalledProcessError as exc:
        log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"could not start PostgreSQL: {exc.stderr.decode()[-1000:]}\n{log[-2000:]}") from None
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([bindir / "pg_ctl", "-D", data, "-m", "immediate", "stop"], check=False, **common)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def table(pg_dsn: str) -> str:
    """A fresh history table name per test (the sink's migration creates it)."""
    return f"alerts_{os.urandom(4).hex()}"


async def fetch(dsn: str, table: str) -> list[dict[str, Any]]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = conn.cursor(row_factory=psycopg.rows.dict_row)
        await cur.execute(f"SELECT *, xmin::text AS xmin FROM {table} ORDER BY alert_id")
        return list(await cur.fetchall())


def _ms(value: datetime) -> int:
    return (value - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def assert_row_is_alert(row: dict[str, Any], alert: Alert) -> None:
    assert row["alert_id"] == alert.alert_id
    assert (row["type"], row["severity"], row["base"]) == (alert.type, alert.severity, alert.base)
    assert row["venues"] == list(alert.venues)
    assert _ms(row["ts"]) == alert.ts
    assert _ms(row["emitted_at"]) == alert.emitted_ts
    assert (_ms(row["window_start"]), _ms(row["window_end"])) == (alert.window_start, alert.window_end)
    assert row["metrics"] == alert.metrics
    assert row["message"] == alert.message
    assert row["schema_version"] == alert.schema_version


async def test_upsert_is_idempotent_and_updates_only_real_changes(pg_dsn, table):
    sink = PostgresSink("history", pg_dsn, table)
    alerts = demo_alerts()
    for alert in alerts:
        await sink.deliver(alert)
    rows = await fetch(pg_dsn, table)
    assert len(rows) == len(alerts)
    for row, alert in zip(rows, sorted(alerts, key=lambda a: a.alert_id), strict=True):
        assert_row_is_alert(row, alert)
    # the same alerts again: nothing changes, not even the row versions
    for alert in alerts:
        await sink.deliver(alert)
    assert await fetch(pg_dsn, table) == rows
    # a changed alert under the same id replaces the row
    changed = Alert(**{**{f: getattr(alerts[0], f) for f in alerts[0].__dataclass_fields__},
                       "message": "edited", "metrics": {"notional_usd": 1.5}})
    await sink.deliver(changed)
    after = {r["alert_id"]: r for r in await fetch(pg_dsn, table)}
    assert_row_is_alert(after[changed.alert_id], changed)
    assert after[changed.alert_id]["updated_at"] >= after[changed.alert_id]["inserted_at"]
    assert after[changed.alert_id]["xmin"] != {r["alert_id"]: r for r in rows}[changed.alert_id]["xmin"]
    await sink.close()
    # the migration is recorded and runs once
    async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
        assert await migrate(conn, table) == []
        cur = await conn.execute("SELECT version FROM flushwatch_migrations WHERE component = %s",
                                 (f"alert_history:{table}",))
        assert [r[0] for r in await cur.fetchall()] == [1]


async def test_database_down_is_retryable_and_bad_data_is_not(pg_dsn, table):
    nobody_listens = "postgresql://postgres@127.0.0.1:1/postgres"
    sink = PostgresSink("history", nobody_listens, table, connect_timeout_s=2)
    with pytest.raises(DeliveryError) as down:
        await sink.deliver(make_alert(1))
    assert (down.value.reason, down.value.retryable) == ("db_connection", True)
    await sink.close()
    good = PostgresSink("history", pg_dsn, table)
    with pytest.raises(DeliveryError) as bad:
        await good.deliver(make_alert(1, message="nul \x00 byte"))
    assert bad.value.retryable is False
    await good.deliver(make_alert(2))
    await good.close()


async def test_sink_service_writes_history_and_a_replayed_batch_changes_nothing(broker, topic_prefix, pg_dsn,
                                                                               table):
    config = fast_groups(kafka_config(broker.bootstrap, topic_prefix))
    topics = Topics(topic_prefix)
    await create_topics(config.kafka, topics.all)
    alerts = demo_alerts()
    for alert in alerts:
        assert_valid_alert(alert)
    batch = [(a.base.encode(), encode_alert(a)) for a in alerts]
    await produce(broker.bootstrap, topics.alerts, batch)

    async def run(group: str) -> Metrics:
        metrics = Metrics()
        producer = Producer(config.kafka, metrics)
        await producer.start()
        cfg = config.model_copy(update={"sink": config.sink.model_copy(update={"group_id": group})})
        target = SinkTarget(PostgresSink("history", pg_dsn, table))
        service = SinkService(cfg, metrics, [target], producer, clock=FakeClock())
        service.request_drain()
        try:
            async with asyncio.timeout(40):
                await service.run(asyncio.Event())
        finally:
            await producer.stop()
        return metrics

    first = await run(f"{topic_prefix}history-1")
    rows = await fetch(pg_dsn, table)
    assert len(rows) == len(alerts)
    by_id = {a.alert_id: a for a in alerts}
    for row in rows:
        assert_row_is_alert(row, by_id[row["alert_id"]])
    assert first.registry.get_sample_value("flushwatch_sink_delivered_total", {"sink": "history"}) == len(alerts)
    # the batch replayed: produced again and read by a new group (the old one would skip it), nothing changes
    await produce(broker.bootstrap, topics.alerts, batch)
    await run(f"{topic_prefix}history-2")
    assert await fetch(pg_dsn, table) == rows
