from __future__ import annotations

import pytest

from flushwatch.config import load_config, masked_dict
from flushwatch.errors import ConfigError


def test_defaults_need_no_file():
    config = load_config(environ={})
    assert config.kafka.bootstrap_servers == []
    assert config.cascade.min_events == 10
    assert config.venues.binance.symbols == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]


def test_toml_file_and_env_override(tmp_path):
    path = tmp_path / "fw.toml"
    path.write_text('[kafka]\nbootstrap_servers = ["a:9092"]\n[cascade]\nmin_events = 7\n'
                    '[cascade.floor_usd]\nBTC = 123.0\n')
    config = load_config(path, environ={"FLUSHWATCH_CASCADE__MIN_EVENTS": "12",
                                        "FLUSHWATCH_CASCADE__FLOOR_USD__ETH": "50",
                                        "FLUSHWATCH_KAFKA__SASL_PASSWORD": "hunter2"})
    assert config.kafka.bootstrap_servers == ["a:9092"]
    assert config.cascade.min_events == 12
    assert config.cascade.floor_usd == {"BTC": 123.0, "ETH": 50.0}
    assert config.kafka.sasl_password is not None
    assert config.kafka.sasl_password.get_secret_value() == "hunter2"


def test_unknown_key_in_file_is_named(tmp_path):
    path = tmp_path / "fw.toml"
    path.write_text("[cascade]\nmin_event = 7\n")
    with pytest.raises(ConfigError, match=r"cascade\.min_event: unknown key \(from config file"):
        load_config(path, environ={})


def test_unknown_env_var_is_named():
    with pytest.raises(ConfigError, match="FLUSHWATCH_KAFKA__BOOTSTRAP_SERVRS"):
        load_config(environ={"FLUSHWATCH_KAFKA__BOOTSTRAP_SERVRS": "x"})


def test_bad_value_names_key_and_source():
    with pytest.raises(ConfigError, match=r"cascade\.min_events: .*FLUSHWATCH_CASCADE__MIN_EVENTS"):
        load_config(environ={"FLUSHWATCH_CASCADE__MIN_EVENTS": "0"})


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[kafka\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad, environ={})


def test_secrets_are_masked():
    config = load_config(environ={"FLUSHWATCH_KAFKA__SASL_PASSWORD": "hunter2"})
    dumped = masked_dict(config)
    assert dumped["kafka"]["sasl_password"] == "**********"
    assert "hunter2" not in repr(dumped)


def test_top_n_by_oi_is_refused_where_the_venue_cannot_do_it():
    from ingest.registry import create_adapter  # noqa: PLC0415 - the registry pulls in every venue

    config = load_config(environ={"FLUSHWATCH_VENUES__BITMEX__TOP_N_BY_OI": "5"})
    with pytest.raises(ConfigError, match=r"venues\.bitmex\.top_n_by_oi: bitmex has no public call"):
        create_adapter("bitmex", config)
    bybit = create_adapter("bybit", load_config(environ={"FLUSHWATCH_VENUES__BYBIT__TOP_N_BY_OI": "5"}))
    assert bybit.startup_requests()  # it asks the venue for every instrument's OI first
