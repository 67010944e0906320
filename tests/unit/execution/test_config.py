"""execution.config: typed, frozen, validated; bad input names the key path and what was expected."""
from __future__ import annotations

import dataclasses
import json
import os

import pytest

from execution.config import (MAX_BAR_SECONDS, MAX_CYCLES, MAX_DURATION_SECONDS, MAX_USDT, AppConfig, ConfigError,
                              config_from_dict, load_config)
from execution.diagnostics_document import MAX_PUBLISH_INTERVAL_SECONDS


def _write(tmp_path, text: str) -> str:
    path = tmp_path / "cfg.json"
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return str(path)


def test_load_when_shipped_config_then_equals_builtin_defaults(repo_root):
    # Arrange
    path = os.path.join(repo_root, "config", "strategy_config.json")

    # Act
    cfg = load_config(path)

    # Assert
    assert cfg == AppConfig()


def test_load_when_shipped_config_then_spec_liveness_thresholds(repo_root):
    cfg = load_config(os.path.join(repo_root, "config", "strategy_config.json"))

    liveness = cfg.diagnostics.liveness
    assert liveness.enabled is True
    assert (liveness.max_idle_signals_seconds, liveness.max_idle_orders_seconds, liveness.max_idle_exits_seconds,
            liveness.max_idle_router_events_seconds) == (600, 1200, 3600, 1800)


def test_load_when_path_is_none_then_builtin_defaults():
    assert load_config(None) == AppConfig()


def test_config_when_partial_sections_then_other_keys_keep_defaults():
    cfg = config_from_dict({"risk": {"max_concurrent_positions": 2}})

    assert cfg.risk.max_concurrent_positions == 2
    assert cfg.risk.per_symbol_cap_usdt == AppConfig().risk.per_symbol_cap_usdt
    assert cfg.router == AppConfig().router


def test_config_when_integer_for_float_key_then_stored_as_float():
    cfg = config_from_dict({"risk": {"cooldown_after_exit_seconds": 300}})

    assert isinstance(cfg.risk.cooldown_after_exit_seconds, float)


def test_config_when_symbols_list_then_tuple():
    cfg = config_from_dict({"strategy": {"symbols": ["BTCUSDT", "ETHUSDT"]}})

    assert cfg.strategy.symbols == ("BTCUSDT", "ETHUSDT")


def test_config_when_assigning_a_field_then_frozen():
    cfg = AppConfig()

    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.risk.max_concurrent_positions = 99  # type: ignore[misc]


@pytest.mark.parametrize("threshold", [None, 0])
def test_config_when_liveness_threshold_null_or_zero_then_accepted_as_disabled(threshold):
    cfg = config_from_dict({"diagnostics": {"liveness": {"max_idle_router_events_seconds": threshold}}})

    assert cfg.diagnostics.liveness.max_idle_router_events_seconds == threshold


@pytest.mark.parametrize("data, key_path", [
    ({"bogus": 1}, "bogus"),
    ({"risk": {"max_positions": 3}}, "risk.max_positions"),
    ({"diagnostics": {"liveness": {"max_idle_signal_seconds": 5}}}, "diagnostics.liveness.max_idle_signal_seconds"),
])
def test_config_when_unknown_key_then_error_names_key_path(data, key_path):
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)

    assert str(err.value).startswith(f"{key_path}: unknown key")
    assert "expected one of" in str(err.value)


@pytest.mark.parametrize("data, key_path, expected", [
    ({"risk": {"max_concurrent_positions": "five"}}, "risk.max_concurrent_positions", "an integer"),
    ({"risk": {"max_concurrent_positions": 2.5}}, "risk.max_concurrent_positions", "an integer"),
    ({"risk": {"min_notional_usdt": True}}, "risk.min_notional_usdt", "a number"),
    ({"strategy": {"allow_short": "yes"}}, "strategy.allow_short", "true or false"),
    ({"strategy": {"symbols": "BTCUSDT"}}, "strategy.symbols", "a list"),
    ({"strategy": {"symbols": ["BTCUSDT", 7]}}, "strategy.symbols[1]", "a string"),
    ({"router": []}, "router", "an object"),
    ({"telemetry": {"service_name": 5}}, "telemetry.service_name", "a string"),
])
def test_config_when_wrong_type_then_error_names_key_path_and_type(data, key_path, expected):
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)

    assert str(err.value).startswith(f"{key_path}: expected {expected}")


@pytest.mark.parametrize("data, key_path", [
    ({"diagnostics": {"liveness": {"max_idle_signals_seconds": -1}}}, "diagnostics.liveness.max_idle_signals_seconds"),
    ({"router": {"twap_slices": 0}}, "router.twap_slices"),
    ({"router": {"max_retries": -1}}, "router.max_retries"),
    ({"exchange": {"fee_rate": 1.5}}, "exchange.fee_rate"),
    ({"exchange": {"fee_rate": -0.001}}, "exchange.fee_rate"),
    ({"exchange": {"transient_reject_probability": 2}}, "exchange.transient_reject_probability"),
    ({"exchange": {"slippage_bps": -1}}, "exchange.slippage_bps"),
    ({"strategy": {"take_profit_pct": 0}}, "strategy.take_profit_pct"),
    ({"strategy": {"stop_loss_pct": 1.2}}, "strategy.stop_loss_pct"),
    ({"strategy": {"symbols": []}}, "strategy.symbols"),
    ({"strategy": {"symbols": ["BTCUSDT", "BTCUSDT"]}}, "strategy.symbols"),
    ({"strategy": {"symbols": [" "]}}, "strategy.symbols"),
    ({"strategy": {"volatility_window_bars": 1}}, "strategy.volatility_window_bars"),
    ({"risk": {"max_concurrent_positions": 0}}, "risk.max_concurrent_positions"),
    ({"risk": {"cooldown_after_exit_seconds": -60}}, "risk.cooldown_after_exit_seconds"),
    ({"market_data": {"bar_seconds": 0}}, "market_data.bar_seconds"),
    ({"market_data": {"start": "yesterday"}}, "market_data.start"),
    ({"telemetry": {"prometheus_port": 70000}}, "telemetry.prometheus_port"),
    ({"diagnostics": {"publish_interval_seconds": 0}}, "diagnostics.publish_interval_seconds"),
    ({"diagnostics": {"publish_interval_seconds": MAX_PUBLISH_INTERVAL_SECONDS + 0.5}}, "diagnostics.publish_interval_seconds"),
    ({"market_data": {"bar_seconds": MAX_BAR_SECONDS + 1}}, "market_data.bar_seconds"),
    ({"market_data": {"start": "1969-12-31T23:59:59Z"}}, "market_data.start"),
    ({"market_data": {"start": "9999-12-31T23:59:59Z"}}, "market_data.start"),
    ({"risk": {"max_order_notional_usdt": MAX_USDT * 10}}, "risk.max_order_notional_usdt"),
    ({"risk": {"cooldown_after_exit_seconds": MAX_DURATION_SECONDS + 1}}, "risk.cooldown_after_exit_seconds"),
    ({"diagnostics": {"liveness": {"max_idle_orders_seconds": MAX_DURATION_SECONDS + 1}}},
     "diagnostics.liveness.max_idle_orders_seconds"),
    ({"strategy": {"slow_ema_bars": 10_001}}, "strategy.slow_ema_bars"),
    ({"strategy": {"stop_loss_pct": 1e-9}}, "strategy.stop_loss_pct"),
    ({"strategy": {"min_volatility": 2}}, "strategy.min_volatility"),
    ({"router": {"twap_slices": 1_001}}, "router.twap_slices"),
    ({"router": {"max_retries": 101}}, "router.max_retries"),
])
def test_config_when_impossible_value_then_error_names_key_path_and_expectation(data, key_path):
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)

    message = str(err.value)
    assert message.startswith(f"{key_path}: expected ")
    assert "got" in message


@pytest.mark.parametrize("data", [
    {"diagnostics": {"publish_interval_seconds": MAX_PUBLISH_INTERVAL_SECONDS}},
    {"market_data": {"bar_seconds": MAX_BAR_SECONDS}},
    {"risk": {"max_gross_exposure_usdt": MAX_USDT, "cooldown_after_exit_seconds": MAX_DURATION_SECONDS}},
    {"diagnostics": {"liveness": {"max_idle_exits_seconds": MAX_DURATION_SECONDS}}},
    {"strategy": {"stop_loss_pct": 1e-6, "fast_ema_bars": 9_999, "slow_ema_bars": 10_000, "min_volatility": 1}},
    {"router": {"twap_slices": 1_000, "max_retries": 100}},
    {"market_data": {"start": "1970-01-01T00:00:00Z"}},
    {"market_data": {"start": "9998-02-05T13:19:59Z"}},  # the latest start for MAX_CYCLES minute bars
])
def test_config_when_value_at_its_bound_then_accepted(data):
    cfg = config_from_dict(data)

    assert _held(cfg, data) == data  # kept as given, never clamped


def _held(section, data: dict) -> dict:
    """What ``section`` holds at each key of ``data`` (nested sections alike)."""
    return {key: _held(getattr(section, key), value) if isinstance(value, dict) else getattr(section, key)
            for key, value in data.items()}


def test_config_when_start_later_than_the_longest_run_allows_then_error_names_the_latest_start():
    with pytest.raises(ConfigError) as err:
        config_from_dict({"market_data": {"start": "9998-02-05T13:20:00Z"}})

    assert str(err.value) == (f"market_data.start: expected a time from 1970-01-01T00:00:00Z to 9998-02-05T13:19:59Z "
                              f"(so that {MAX_CYCLES} bars of 60 s end by 9999-12-31T23:59:59Z), got '9998-02-05T13:20:00Z'")


@pytest.mark.parametrize("text, fragment", [
    ('{"router": {"twap_slices": %s}}' % ("9" * 5000), "invalid JSON: a number of more than 4300 digits"),
    ('{"a": ' * 100_000 + "1" + "}" * 100_000, "invalid JSON: nested too deeply"),
    ('{"risk": {"cooldown_after_exit_seconds": %s}}' % ("9" * 400), "cooldown_after_exit_seconds: expected a finite number"),
    ('{"strategy": {"symbols": ["%s"], "fast_ema_bars": 0}}' % ("X" * 100), "expected an integer >= 1, got 0"),
])
def test_load_when_number_or_nesting_beyond_what_python_reads_then_one_short_error(tmp_path, text, fragment):
    path = _write(tmp_path, text)

    with pytest.raises(ConfigError) as err:
        load_config(path)

    assert fragment in str(err.value) and len(str(err.value)) < 300


def test_config_when_huge_value_then_error_shows_it_cut():
    with pytest.raises(ConfigError) as err:
        config_from_dict({"market_data": {"start": "9" * 1000}})

    assert str(err.value).endswith(", got '999999999999999999999999999999999999...")


def test_load_when_a_fifo_then_error_at_once(tmp_path):
    fifo = tmp_path / "cfg.json"
    os.mkfifo(fifo)

    with pytest.raises(ConfigError, match=r"cannot read config \(a FIFO, not a regular file\)"):
        load_config(str(fifo))


def test_load_when_larger_than_the_cap_then_error(tmp_path):
    path = _write(tmp_path, "{" + " " * (1024 * 1024) + "}")

    with pytest.raises(ConfigError, match="config larger than 1024 KiB"):
        load_config(path)


def test_config_when_fast_ema_not_faster_than_slow_then_error():
    with pytest.raises(ConfigError, match=r"^strategy\.fast_ema_bars: expected fewer bars"):
        config_from_dict({"strategy": {"fast_ema_bars": 8, "slow_ema_bars": 8}})


def test_config_when_top_level_not_an_object_then_error():
    with pytest.raises(ConfigError, match="expected a JSON object at the top level, got a list"):
        config_from_dict([])


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_load_when_non_finite_number_then_error(tmp_path, literal):
    path = _write(tmp_path, '{"risk": {"cooldown_after_exit_seconds": %s}}' % literal)

    with pytest.raises(ConfigError, match=r"risk\.cooldown_after_exit_seconds: expected a finite number"):
        load_config(path)


def test_load_when_invalid_json_then_error_names_file_and_line(tmp_path):
    path = _write(tmp_path, '{\n  "risk": {\n    "min_notional_usdt": ,\n  }\n}\n')

    with pytest.raises(ConfigError) as err:
        load_config(path)

    assert str(err.value).startswith(f"{path}: invalid JSON at line 3 ")


def test_load_when_file_missing_then_error_names_file(tmp_path):
    path = str(tmp_path / "absent.json")

    with pytest.raises(ConfigError, match="config file not found"):
        load_config(path)


def test_load_when_path_is_a_folder_then_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(str(tmp_path))


def test_load_when_not_utf8_then_error(tmp_path):
    path = _write(tmp_path, b"\xff\xfe{}")

    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


def test_load_when_bad_key_in_file_then_error_names_file_and_key_path(tmp_path):
    path = _write(tmp_path, json.dumps({"router": {"twap_slices": 0}}))

    with pytest.raises(ConfigError) as err:
        load_config(path)

    assert str(err.value).startswith(f"{path}: router.twap_slices: expected an integer >= 1, got 0")


def test_config_error_when_raised_then_is_a_value_error():
    assert issubclass(ConfigError, ValueError)
