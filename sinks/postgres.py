"""Alert history in PostgreSQL (psycopg 3, async): one row per ``alert_id``, upserted.

The table is created by a numbered migration the sink runs on its first connection, under a transaction-
scoped advisory lock so concurrent sink instances never race; applied migrations are recorded in
``flushwatch_migrations``. The upsert only writes when something differs (``IS DISTINCT FROM``), so a
replayed batch changes nothing at all: no new row versions, ``updated_at`` untouched.

Columns: ``alert_id`` (primary key), ``type``, ``severity``, ``base``, ``venues`` (text[]), ``ts``,
``emitted_at``, ``window_start``, ``window_end`` (timestamptz, exact to the millisecond), ``metrics`` (jsonb),
``message``, ``schema_version``, ``inserted_at``, ``updated_at``.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from flushwatch.events import Alert
from sinks.base import AlertSink, DeliveryError
from sinks.format import utc_datetime

__all__ = ["MIGRATIONS", "PostgresSink", "migrate"]

log = logging.getLogger("flushwatch.sink.postgres")

# pg_advisory_xact_lock key: "fwsink" as a number, shared by every flushwatch sink instance
_LOCK_KEY = 0x66_77_73_69_6E_6B

# (version, description, statements); {table} and {idx_*} are identifiers filled in per configured table
MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (1, "alert history table", [
        """
        CREATE TABLE IF NOT EXISTS {table} (
            alert_id        text PRIMARY KEY,
            type            text NOT NULL,
            severity        text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
            base            text NOT NULL,
            venues          text[] NOT NULL,
            ts              timestamptz NOT NULL,
            emitted_at      timestamptz NOT NULL,
            window_start    timestamptz NOT NULL,
            window_end      timestamptz NOT NULL,
            metrics         jsonb NOT NULL,
            message         text NOT NULL,
            schema_version  integer NOT NULL,
            inserted_at     timestamptz NOT NULL DEFAULT now(),
            updated_at      timestamptz NOT NULL DEFAULT now()
        )
        """,
        "CREATE INDEX IF NOT EXISTS {idx_base_ts} ON {table} (base, ts DESC)",
        "CREATE INDEX IF NOT EXISTS {idx_type_ts} ON {table} (type, ts DESC)",
    ]),
]

_UPSERT = """
INSERT INTO {table} AS t (alert_id, type, severity, base, venues, ts, emitted_at, window_start, window_end,
                          metrics, message, schema_version)
VALUES (%(alert_id)s, %(type)s, %(severity)s, %(base)s, %(venues)s, %(ts)s, %(emitted_at)s, %(window_start)s,
        %(window_end)s, %(metrics)s, %(message)s, %(schema_version)s)
ON CONFLICT (alert_id) DO UPDATE SET
    type = EXCLUDED.type, severity = EXCLUDED.severity, base = EXCLUDED.base, venues = EXCLUDED.venues,
    ts = EXCLUDED.ts, emitted_at = EXCLUDED.emitted_at, window_start = EXCLUDED.window_start,
    window_end = EXCLUDED.window_end, metrics = EXCLUDED.metrics, message = EXCLUDED.message,
    schema_version = EXCLUDED.schema_version, updated_at = now()
WHERE (t.type, t.severity, t.base, t.venues, t.ts, t.emitted_at, t.window_start, t.window_end, t.metrics,
       t.message, t.schema_version)
      IS DISTINCT FROM
      (EXCLUDED.type, EXCLUDED.severity, EXCLUDED.base, EXCLUDED.venues, EXCLUDED.ts, EXCLUDED.emitted_at,
       EXCLUDED.window_start, EXCLUDED.window_end, EXCLUDED.metrics, EXCLUDED.message, EXCLUDED.schema_version)
"""

# SQLSTATE classes worth a retry: connection, transaction rollback (serialization, deadlock), resources,
# operator intervention (shutdown, crash recovery)
_RETRYABLE_CLASSES = ("08", "40", "53", "57", "58")


def _identifiers(table: str) -> dict[str, sql.Identifier]:
    return {"table": sql.Identifier(table), "idx_base_ts": sql.Identifier(f"{table}_base_ts_idx"),
            "idx_type_ts": sql.Identifier(f"{table}_type_ts_idx")}


async def migrate(conn: psycopg.AsyncConnection[Any], table: str) -> list[int]:
    """Apply the migrations this table lacks; returns the versions applied now."""
    component = f"alert_history:{table}"
    applied_now: list[int] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS flushwatch_migrations (component text NOT NULL, version integer NOT NULL, "
            "description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(), "
            "PRIMARY KEY (component, version))")
        cur = await conn.execute("SELECT version FROM flushwatch_migrations WHERE component = %s", (component,))
        done = {row[0] for row in await cur.fetchall()}
        for version, description, statements in MIGRATIONS:
            if version in done:
                continue
            for statement in statements:
                await conn.execute(sql.SQL(statement).format(**_identifiers(table)))
            await conn.execute("INSERT INTO flushwatch_migrations (component, version, description) "
                               "VALUES (%s, %s, %s)", (component, version, description))
            applied_now.append(version)
    if applied_now:
        log.info("postgres sink: applied migrations %s to table %s", applied_now, table)
    return applied_now


def _row(alert: Alert) -> dict[str, Any]:
    return {
        "alert_id": alert.alert_id, "type": alert.type, "severity": alert.severity, "base": alert.base,
        "venues": list(alert.venues), "ts": utc_datetime(alert.ts), "emitted_at": utc_datetime(alert.emitted_ts),
        "window_start": utc_datetime(alert.window_start), "window_end": utc_datetime(alert.window_end),
        "metrics": Jsonb(alert.metrics), "message": alert.message, "schema_version": alert.schema_version,
    }


class PostgresSink(AlertSink):
    """Upserts each alert into the history table; connects (and migrates) lazily, reconnects after a
    connection error, so a database restart costs retries, not alerts."""

    kind = "postgres"

    def __init__(self, name: str, dsn: str, table: str = "fw_alert_history", connect_timeout_s: float = 10.0) -> None:
        self.name = name
        self._dsn = dsn
        self.table = table
        self._connect_timeout_s = connect_timeout_s
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._upsert = sql.SQL(_UPSERT).format(table=sql.Identifier(table))

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            conn = await psycopg.AsyncConnection.connect(
                self._dsn, autocommit=True, connect_timeout=max(1, round(self._connect_timeout_s)),
                application_name=f"flushwatch-sink-{self.name}"[:63])
            try:
                await migrate(conn, self.table)
            except BaseException:
                await conn.close()
                raise
            self._conn = conn
        return self._conn

    async def deliver(self, alert: Alert) -> None:
        """Upsert one row; database errors become DeliveryError (retryable for connection trouble)."""
        try:
            conn = await self._connection()
            await conn.execute(self._upsert, _row(alert))
        except psycopg.Error as exc:
            state = exc.sqlstate or ""
            broken = isinstance(exc, psycopg.OperationalError) or state.startswith("08")
            if broken and self._conn is not None:
                await self._conn.close()
                self._conn = None
            retryable = broken or state.startswith(_RETRYABLE_CLASSES)
            reason = "db_connection" if broken else "db_error"
            raise DeliveryError(reason, f"{type(exc).__name__} [{state or '-'}]: {exc}"[:300],
                                retryable=retryable) from None

    async def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
