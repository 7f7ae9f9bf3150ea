"""Sink targets from the config file: ``sink.stdout`` / ``sink.jsonl_path`` (the shorthands) and every
enabled ``[[sink.targets]]`` entry, with secrets resolved from the config or the named environment
variables, one shared HTTP client, and a delivered-id store per target."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import SecretStr

from flushwatch.config import (
    Config,
    DiscordTargetConfig,
    JsonlTargetConfig,
    PostgresTargetConfig,
    SinkConfig,
    SlackTargetConfig,
    StdoutTargetConfig,
    TelegramTargetConfig,
    WebhookTargetConfig,
)
from flushwatch.errors import ConfigError
from sinks.base import AlertSink
from sinks.dedupe import (
    DeliveredStore,
    MemoryDeliveredStore,
    NullDeliveredStore,
    SqliteDeliveredStore,
    store_path,
)
from sinks.discord import DiscordSink
from sinks.http import HttpClient
from sinks.jsonl import JsonlSink
from sinks.policy import AlertFilter, Clock, RetryPolicy
from sinks.postgres import PostgresSink
from sinks.service import SinkTarget
from sinks.slack import SlackSink
from sinks.stdout import StdoutSink
from sinks.telegram import TelegramSink
from sinks.webhook import WebhookSink

__all__ = ["build_targets", "default_state_dir"]

AnyTarget = (WebhookTargetConfig | SlackTargetConfig | DiscordTargetConfig | TelegramTargetConfig
             | JsonlTargetConfig | StdoutTargetConfig | PostgresTargetConfig)


def default_state_dir(environ: Mapping[str, str]) -> Path:
    """``$XDG_STATE_HOME/flushwatch/sinks``, else ``~/.local/state/flushwatch/sinks``."""
    base = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "flushwatch" / "sinks"


def _secret(name: str, what: str, value: SecretStr | None, env: str | None, environ: Mapping[str, str]) -> str:
    if value is not None and value.get_secret_value():
        return value.get_secret_value()
    if env:
        found = environ.get(env)
        if found:
            return found
        raise ConfigError(f"sink target {name!r}: environment variable {env} (its {what}) is not set")
    raise ConfigError(f"sink target {name!r}: no {what} configured")


def _sink(cfg: AnyTarget, client: HttpClient, environ: Mapping[str, str], clock: Clock | None) -> AlertSink:
    if isinstance(cfg, WebhookTargetConfig):
        secret = _secret(cfg.name, "HMAC secret", cfg.secret, cfg.secret_env, environ)
        return WebhookSink(cfg.name, cfg.url, secret.encode(), client, cfg.timeout_s, cfg.headers, clock)
    if isinstance(cfg, SlackTargetConfig):
        return SlackSink(cfg.name, _secret(cfg.name, "webhook URL", cfg.url, cfg.url_env, environ), client,
                         cfg.timeout_s)
    if isinstance(cfg, DiscordTargetConfig):
        return DiscordSink(cfg.name, _secret(cfg.name, "webhook URL", cfg.url, cfg.url_env, environ), client,
                           cfg.timeout_s, cfg.username)
    if isinstance(cfg, TelegramTargetConfig):
        token = _secret(cfg.name, "bot token", cfg.bot_token, cfg.bot_token_env, environ)
        return TelegramSink(cfg.name, token, cfg.chat_id, client, cfg.timeout_s, cfg.parse_mode, cfg.api_url,
                            cfg.message_thread_id)
    if isinstance(cfg, JsonlTargetConfig):
        return JsonlSink(cfg.path, cfg.max_bytes, cfg.backups, name=cfg.name)
    if isinstance(cfg, StdoutTargetConfig):
        return StdoutSink(cfg.format, name=cfg.name)
    return PostgresSink(cfg.name, _secret(cfg.name, "DSN", cfg.dsn, cfg.dsn_env, environ), cfg.table,
                        cfg.connect_timeout_s)


def _store(cfg: AnyTarget, sink_cfg: SinkConfig, environ: Mapping[str, str]) -> DeliveredStore:
    if cfg.dedupe == "off":
        return NullDeliveredStore()
    if cfg.dedupe == "memory":
        return MemoryDeliveredStore()
    state_dir = Path(sink_cfg.state_dir).expanduser() if sink_cfg.state_dir else default_state_dir(environ)
    try:
        return SqliteDeliveredStore(store_path(state_dir, cfg.name), sink_cfg.dedupe_retention_days * 86400.0)
    except OSError as exc:
        raise ConfigError(f"sink target {cfg.name!r}: cannot open its delivered-id store in {state_dir}: {exc} "
                          "(set sink.state_dir)") from None


def build_targets(config: Config, environ: Mapping[str, str] | None = None, clock: Clock | None = None,
                  client: HttpClient | None = None) -> list[SinkTarget]:
    """Every enabled sink target of the config, ready for :class:`~sinks.service.SinkService`.

    Raises :class:`~flushwatch.errors.ConfigError` when a secret's environment variable is missing or a
    durable store cannot be opened.
    """
    environ = os.environ if environ is None else environ
    sink_cfg = config.sink
    client = client or HttpClient()
    targets: list[SinkTarget] = []
    if sink_cfg.stdout:
        targets.append(SinkTarget(StdoutSink(sink_cfg.stdout_format)))
    if sink_cfg.jsonl_path:
        targets.append(SinkTarget(JsonlSink(sink_cfg.jsonl_path)))
    for cfg in sink_cfg.targets:
        if not cfg.enabled:
            continue
        retry = cfg.retry
        targets.append(SinkTarget(
            sink=_sink(cfg, client, environ, clock),
            filter=AlertFilter.of(cfg.filter.types, cfg.filter.min_severity, cfg.filter.bases),
            retry=RetryPolicy(retry.max_attempts, retry.initial_delay_s, retry.max_delay_s, retry.multiplier,
                              retry.max_retry_after_s),
            rate_per_second=cfg.rate_limit.per_second,
            rate_burst=cfg.rate_limit.burst,
            queue_size=cfg.queue_size,
            store=_store(cfg, sink_cfg, environ),
        ))
    return targets
