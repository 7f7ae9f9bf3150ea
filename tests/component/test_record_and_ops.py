"""``flushwatch record`` against a local venue server, the ops HTTP endpoint, and Kafka client settings."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import urllib.error
import urllib.request

import pytest

from flushwatch.app import demo_recording_path
from flushwatch.config import load_config
from flushwatch.errors import ConfigError
from flushwatch.httpserver import OpsServer
from flushwatch.kafka import client_kwargs
from flushwatch.metrics import Metrics
from flushwatch.recorder import record
from flushwatch.recording import RecordLine, read_recording
from ingest.binance import BinanceUsdmAdapter
from ingest.registry import create_adapter
from ingest.replay import ReplayServer
from ingest.service import Connectivity, run_sources


async def test_record_captures_every_frame_exactly(tmp_path):
    lines = [item for item in read_recording(demo_recording_path()) if isinstance(item, RecordLine)][:300]
    async with ReplayServer(lines, BinanceUsdmAdapter([]), speed=0) as server:
        config = load_config(environ={
            "FLUSHWATCH_VENUES__BINANCE__WS_URL": f"{server.ws_url}/market",
            "FLUSHWATCH_VENUES__BINANCE__REST_URL": server.http_url,
            "FLUSHWATCH_VENUES__BINANCE__SYMBOLS": "[]",
        })
        out = tmp_path / "rec.jsonl.gz"
        async with asyncio.timeout(30):
            assert await record(config, "binance", out, None, max_frames=len(lines)) == 0
    recorded = [item for item in read_recording(out) if isinstance(item, RecordLine)]
    assert [r.data for r in recorded] == [line.data for line in lines]
    assert all(r.kind == "ws" and r.venue == "binance" for r in recorded)
    assert recorded[0].endpoint.startswith(f"{server.ws_url}/market/stream?streams=")
    assert all(recorded[i].recv_ts <= recorded[i + 1].recv_ts for i in range(len(recorded) - 1))


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_ops_server_serves_metrics_health_and_readiness():
    metrics = Metrics()
    metrics.seen_message("binance", "liquidation", 120)
    metrics.reconnects.labels("binance", "stale").inc()
    waiting = ["processor assigned"]
    ops = OpsServer(metrics.registry, "127.0.0.1", 0, lambda: list(waiting)).start()
    try:
        base = f"http://127.0.0.1:{ops.port}"
        status, body = _get(f"{base}/metrics")
        assert status == 200
        assert 'flushwatch_messages_total{stream="liquidation",venue="binance"} 1.0' in body
        assert 'flushwatch_reconnects_total{reason="stale",venue="binance"} 1.0' in body
        assert 'flushwatch_seconds_since_last_message{stream="liquidation",venue="binance"}' in body
        assert _get(f"{base}/healthz") == (200, "ok\n")
        assert _get(f"{base}/readyz") == (503, "not ready: processor assigned\n")
        waiting.clear()
        assert _get(f"{base}/readyz") == (200, "ready\n")
        assert _get(f"{base}/nope")[0] == 404
        with pytest.raises(ConfigError, match="cannot serve metrics"):
            OpsServer(metrics.registry, "127.0.0.1", ops.port)
    finally:
        ops.stop()


async def _until(condition, timeout_s: float = 15.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.02)


async def test_ingest_readiness_follows_its_websocket_connections():
    lines = [item for item in read_recording(demo_recording_path()) if isinstance(item, RecordLine)][:300]
    metrics = Metrics()
    connectivity = Connectivity(metrics, ["binance"])
    assert connectivity.missing() == ["ingest binance: start-up metadata not fetched yet"]
    server = ReplayServer(lines, BinanceUsdmAdapter([]), speed=0.01)  # slow: the connection stays open
    await server.start()
    config = load_config(environ={
        "FLUSHWATCH_VENUES__BINANCE__WS_URL": f"{server.ws_url}/market",
        "FLUSHWATCH_VENUES__BINANCE__REST_URL": server.http_url,
        "FLUSHWATCH_VENUES__BINANCE__SYMBOLS": "[]",
    })
    queue: asyncio.Queue[RecordLine] = asyncio.Queue(maxsize=10_000)
    sources = asyncio.create_task(run_sources({"binance": create_adapter("binance", config)}, queue, config,
                                              metrics, connectivity))
    try:
        await _until(lambda: connectivity.missing() == [])  # metadata fetched, its one connection open
        await server.close()  # the venue goes away: the connection drops and reconnects are refused
        await _until(lambda: connectivity.missing() == ["ingest binance: 0 of 1 websocket connection(s) open"])
    finally:
        sources.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sources
        await server.close()


def test_staleness_grows_while_a_feed_is_silent():
    now = [1000.0]
    metrics = Metrics()
    metrics.staleness._clock = lambda: now[0]
    metrics.staleness.touch("binance", "trade", 1000.0)
    now[0] = 1042.5
    assert metrics.registry.get_sample_value("flushwatch_seconds_since_last_message",
                                             {"venue": "binance", "stream": "trade"}) == 42.5


def test_kafka_client_settings_pass_sasl_and_tls_through(tmp_path):
    config = load_config(environ={
        "FLUSHWATCH_KAFKA__BOOTSTRAP_SERVERS": '["k1:9093","k2:9093"]',
        "FLUSHWATCH_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "FLUSHWATCH_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
        "FLUSHWATCH_KAFKA__SASL_USERNAME": "fw",
        "FLUSHWATCH_KAFKA__SASL_PASSWORD": "s3cret",
    })
    kwargs = client_kwargs(config.kafka)
    assert kwargs["bootstrap_servers"] == "k1:9093,k2:9093"
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["sasl_plain_username"] == "fw"
    assert kwargs["sasl_plain_password"] == "s3cret"
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)
    assert "ssl_context" not in client_kwargs(load_config(environ={}).kafka)
