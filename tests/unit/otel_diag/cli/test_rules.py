"""otel-diag rules: generation from the liveness config, and the names the real exporter exposes."""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest
import yaml
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, generate_latest

from execution.config import load_config
from execution.diagnostics_document import SYMBOL_CHECK_KEYS
from otel_diag import semconv
from otel_diag.cli import rules
from otel_diag.instruments import StateCell, register_instruments
from otel_diag.state import EventState, ExitGauges

CONFIG = str(Path(__file__).resolve().parents[4] / "config" / "strategy_config.json")
LIVENESS_ALERTS = {
    "signals": ("TradingIdleSignals", "TradingSignalsMissing"),
    "orders": ("TradingIdleOrders", "TradingOrdersMissing"),
    "exits": ("TradingIdleExits", "TradingExitsMissing"),
    "router": ("TradingIdleRouter", "TradingRouterMissing"),
    "exit_scans": ("TradingIdleExitScans", "TradingExitScansMissing"),
}
EXIT_ALERTS = ["TradingTpSlMismatch", "TradingTpSlCoverageLow", "TradingUnderwaterUnprotected"]
NO_BARS, PRICE_FROZEN = SYMBOL_CHECK_KEYS
SYMBOL_ALERTS = {key: rules.symbol_check_alert(key) for key in SYMBOL_CHECK_KEYS}  # the names: pinned once, below
MISSING = rules.ALERT_SYMBOL_MISSING
MARKET_DATA_ALERTS = [*SYMBOL_ALERTS.values(), MISSING]
GAUGE = "trading_market_data_last_update_time_seconds"


def _write_config(tmp_path, diagnostics: dict, **sections: dict) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"diagnostics": diagnostics, **sections}), encoding="utf-8")
    return str(path)


def _run(argv, capsys):
    parser = argparse.ArgumentParser()
    rules.add_arguments(parser)
    code = rules.run(parser.parse_args(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _alerts(text: str) -> dict:
    doc = yaml.safe_load(text)
    return {rule["alert"]: rule for group in doc["groups"] for rule in group["rules"]}


# -- generation -------------------------------------------------------------------------
def test_rules_when_default_config_then_idle_and_missing_per_key_plus_exit_rules(capsys):
    code, out, err = _run(["--config", CONFIG], capsys)

    assert code == 0 and err == ""
    alerts = _alerts(out)
    expected = [name for pair in LIVENESS_ALERTS.values() for name in pair] + MARKET_DATA_ALERTS + EXIT_ALERTS
    assert sorted(alerts) == sorted(expected)
    assert [g["name"] for g in yaml.safe_load(out)["groups"]] == [
        rules.GROUP_LIVENESS, rules.GROUP_MARKET_DATA, rules.GROUP_EXIT_PIPELINE]
    market = next(g for g in yaml.safe_load(out)["groups"] if g["name"] == rules.GROUP_MARKET_DATA)
    assert [r["alert"] for r in market["rules"]] == MARKET_DATA_ALERTS


def test_idle_rule_when_threshold_set_then_expression_uses_threshold_and_for(capsys):
    _, out, _ = _run(["--config", CONFIG], capsys)

    router = _alerts(out)["TradingIdleRouter"]

    assert router["expr"] == 'time() - trading_last_event_time_seconds{trading_event="router"} > 1800'
    assert router["for"] == "1m"
    assert router["labels"] == {"severity": "warning"}
    assert "1800 s (30m)" in router["annotations"]["description"]
    assert set(router["annotations"]) == {"summary", "description"}


def test_missing_rule_when_threshold_set_then_absent_and_per_instance_with_threshold_as_for(capsys):
    _, out, _ = _run(["--config", CONFIG], capsys)

    missing = _alerts(out)["TradingExitsMissing"]

    assert 'absent(trading_last_event_time_seconds{trading_event="exit_trigger"})' in missing["expr"]
    assert "group by (job, instance) (trading_last_event_time_seconds)" in missing["expr"]
    assert missing["for"] == "1h"


def test_exit_rules_when_generated_then_coverage_guarded_by_open_positions(capsys):
    _, out, _ = _run(["--config", CONFIG], capsys)
    alerts = _alerts(out)

    coverage = alerts["TradingTpSlCoverageLow"]["expr"]

    assert "< 1" in coverage and "trading_positions_open > 0" in coverage
    assert "and on (job, instance)" in coverage
    assert alerts["TradingTpSlMismatch"]["expr"] == "trading_tp_sl_missing > 0"
    assert alerts["TradingTpSlMismatch"]["labels"]["severity"] == "critical"


def test_rules_when_liveness_disabled_then_only_exit_pipeline_rules(tmp_path, capsys):
    config = _write_config(tmp_path, {"liveness": {"enabled": False}})

    code, out, _ = _run(["--config", config], capsys)

    assert code == 0
    assert sorted(_alerts(out)) == sorted(EXIT_ALERTS)


def test_rules_when_threshold_null_or_zero_then_that_key_has_no_rule(tmp_path, capsys):
    config = _write_config(
        tmp_path,
        {"liveness": {"max_idle_router_events_seconds": None, "max_idle_exits_seconds": 0}},
    )

    _, out, _ = _run(["--config", config], capsys)
    alerts = _alerts(out)

    for key in ("router", "exits"):
        assert not set(LIVENESS_ALERTS[key]) & set(alerts)
    for key in ("signals", "orders", "exit_scans"):
        assert set(LIVENESS_ALERTS[key]) <= set(alerts)


def test_rules_when_exit_pipeline_disabled_then_no_exit_rules(tmp_path, capsys):
    config = _write_config(tmp_path, {"exit_pipeline": {"enabled": False}})

    _, out, _ = _run(["--config", config], capsys)

    assert not set(EXIT_ALERTS) & set(_alerts(out))


def test_rules_when_diagnostics_disabled_then_empty_groups(tmp_path, capsys):
    config = _write_config(tmp_path, {"enabled": False})

    code, out, _ = _run(["--config", config], capsys)

    assert code == 0 and yaml.safe_load(out)["groups"] == []


def test_rules_when_for_given_then_idle_and_exit_rules_use_it(tmp_path, capsys):
    config = _write_config(tmp_path, {"liveness": {"max_idle_exit_scans_seconds": 90.5}})

    _, out, _ = _run(["--config", config, "--for", "2m"], capsys)
    alerts = _alerts(out)

    assert alerts["TradingIdleSignals"]["for"] == "2m"
    assert alerts["TradingTpSlMismatch"]["for"] == "2m"
    assert alerts["TradingIdleExitScans"]["expr"].endswith("> 90.5")
    assert alerts["TradingExitScansMissing"]["for"] == "2m"  # max(threshold, --for)


# -- per-symbol market data -------------------------------------------------------------
def test_symbol_rules_when_default_config_then_no_bars_and_price_frozen_per_threshold(capsys):
    _, out, _ = _run(["--config", CONFIG], capsys)
    alerts = _alerts(out)

    no_bars, frozen = alerts[SYMBOL_ALERTS[NO_BARS]], alerts[SYMBOL_ALERTS[PRICE_FROZEN]]

    assert no_bars["expr"] == f'time() - {GAUGE}{{trading_market_data_update="bar"}} > 180'
    assert frozen["expr"] == (
        f'time() - {GAUGE}{{trading_market_data_update="price_change"}} > 600\n'
        "unless on (job, instance, trading_symbol)\n"
        f'time() - {GAUGE}{{trading_market_data_update="bar"}} > 180'
    )
    assert no_bars["for"] == frozen["for"] == "1m"
    assert no_bars["labels"] == frozen["labels"] == {"severity": "warning"}
    assert "{{ $labels.trading_symbol }} (no bars for over 3m)" in no_bars["annotations"]["summary"]
    assert "max_symbol_data_age_seconds = 180 s (3m)" in no_bars["annotations"]["description"]
    assert "{{ $labels.trading_symbol }} (price frozen for over 10m)" in frozen["annotations"]["summary"]
    assert "max_symbol_price_frozen_seconds = 600 s (10m)" in frozen["annotations"]["description"]
    assert "{{ $value | humanizeDuration }}" in frozen["annotations"]["description"]


def test_symbol_missing_rule_when_symbols_configured_then_one_label_replace_each_unless_their_bars(tmp_path, capsys):
    config = _write_config(tmp_path, {}, strategy={"symbols": ["SOLUSDT", "BTCUSDT"]})

    _, out, _ = _run(["--config", config], capsys)
    missing = _alerts(out)[MISSING]

    reporting = f"group by (job, instance) (trading_last_event_time_seconds or {GAUGE})"
    assert missing["expr"] == (
        "(\n"
        f'  label_replace({reporting}, "trading_symbol", "SOLUSDT", "", "")\n'
        f'  or label_replace({reporting}, "trading_symbol", "BTCUSDT", "", "")\n'
        ")\n"
        f'unless on (job, instance, trading_symbol) {GAUGE}{{trading_market_data_update="bar"}}'
    )
    assert missing["for"] == "3m"  # max(max_symbol_data_age_seconds, --for)
    assert "liveness.missing_symbols" in missing["annotations"]["description"]
    assert "(no bars ever)" in missing["annotations"]["summary"]


def test_symbol_missing_rule_when_symbol_has_dollar_then_replacement_keeps_it_literal(tmp_path, capsys):
    config = _write_config(tmp_path, {}, strategy={"symbols": ["BTC$1"]})

    _, out, _ = _run(["--config", config], capsys)

    assert '"trading_symbol", "BTC$$1", "", "")' in _alerts(out)[MISSING]["expr"]  # $$ is one $


def test_symbol_rules_when_threshold_null_or_zero_then_that_check_has_no_rule(tmp_path, capsys):
    config = _write_config(tmp_path, {"liveness": {"max_symbol_data_age_seconds": None,
                                                   "max_symbol_price_frozen_seconds": 0}})

    _, out, _ = _run(["--config", config], capsys)

    assert not set(MARKET_DATA_ALERTS) & set(_alerts(out))
    assert rules.GROUP_MARKET_DATA not in [g["name"] for g in yaml.safe_load(out)["groups"]]
    assert set(LIVENESS_ALERTS["signals"]) <= set(_alerts(out))


def test_symbol_rules_when_no_bars_disabled_then_price_frozen_alone_and_missing_waits_its_threshold(tmp_path, capsys):
    config = _write_config(tmp_path, {"liveness": {"max_symbol_data_age_seconds": 0,
                                                   "max_symbol_price_frozen_seconds": 300}})

    _, out, _ = _run(["--config", config], capsys)
    alerts = _alerts(out)

    assert SYMBOL_ALERTS[NO_BARS] not in alerts
    assert alerts[SYMBOL_ALERTS[PRICE_FROZEN]]["expr"] == (
        f'time() - {GAUGE}{{trading_market_data_update="price_change"}} > 300')  # nothing takes precedence
    missing = alerts[MISSING]
    assert missing["for"] == "5m"
    assert "max_symbol_price_frozen_seconds = 300 s (5m)" in missing["annotations"]["description"]
    assert "reports it as price_frozen" in missing["annotations"]["description"]


def test_symbol_rules_when_price_frozen_disabled_then_no_bars_and_missing_remain(tmp_path, capsys):
    config = _write_config(tmp_path, {"liveness": {"max_symbol_price_frozen_seconds": None}})

    _, out, _ = _run(["--config", config], capsys)
    alerts = _alerts(out)

    assert SYMBOL_ALERTS[PRICE_FROZEN] not in alerts
    assert {SYMBOL_ALERTS[NO_BARS], MISSING} <= set(alerts)


def test_symbol_rules_when_fractional_thresholds_then_exact_numbers_and_durations(tmp_path, capsys):
    config = _write_config(tmp_path, {"liveness": {"max_symbol_data_age_seconds": 2.5,
                                                   "max_symbol_price_frozen_seconds": 3.75}})

    _, out, _ = _run(["--config", config, "--for", "0s"], capsys)
    alerts = _alerts(out)

    assert alerts[SYMBOL_ALERTS[NO_BARS]]["expr"].endswith('"bar"} > 2.5')
    assert alerts[SYMBOL_ALERTS[PRICE_FROZEN]]["expr"].startswith(
        f'time() - {GAUGE}{{trading_market_data_update="price_change"}} > 3.75\n')
    assert "2.5 s (2500ms)" in alerts[SYMBOL_ALERTS[NO_BARS]]["annotations"]["description"]
    assert alerts[MISSING]["for"] == "2500ms"  # max(2.5 s, --for 0s)
    assert alerts[SYMBOL_ALERTS[NO_BARS]]["for"] == "0s"


def test_symbol_rules_when_for_longer_than_threshold_then_missing_waits_for(tmp_path, capsys):
    config = _write_config(tmp_path, {"liveness": {"max_symbol_data_age_seconds": 30}})

    _, out, _ = _run(["--config", config, "--for", "2m"], capsys)

    assert _alerts(out)[MISSING]["for"] == "2m"


def test_symbol_rules_when_liveness_disabled_then_none_even_with_symbol_thresholds(tmp_path, capsys):
    config = _write_config(tmp_path, {"liveness": {"enabled": False, "max_symbol_data_age_seconds": 60}})

    _, out, _ = _run(["--config", config], capsys)

    assert not set(MARKET_DATA_ALERTS) & set(_alerts(out))


def test_market_data_rules_when_built_then_alert_per_check_in_precedence_order():
    liveness = load_config(CONFIG).diagnostics.liveness

    built = rules.market_data_rules(liveness, ["BTCUSDT"])

    assert [r.alert for r in built] == MARKET_DATA_ALERTS


def test_market_data_alert_names_when_generated_then_the_documented_ones():
    # the one place the alert names are spelled out: dashboards, silences and runbooks match on them
    assert MARKET_DATA_ALERTS == ["TradingSymbolNoBars", "TradingSymbolPriceFrozen", "TradingSymbolMissing"]


def test_market_data_rules_when_no_symbols_then_no_missing_rule():
    liveness = load_config(CONFIG).diagnostics.liveness

    built = rules.market_data_rules(liveness, [])

    assert MISSING not in [r.alert for r in built] and len(built) == len(SYMBOL_CHECK_KEYS)


def test_rules_when_output_given_then_file_written_and_nothing_printed(tmp_path, capsys):
    target = tmp_path / "rules.yml"

    code, out, _ = _run(["--config", CONFIG, "-o", str(target)], capsys)

    assert code == 0 and out == ""
    assert target.read_text(encoding="utf-8") == rules.generate(CONFIG)


@pytest.mark.parametrize(
    "content, needle",
    [
        ('{"diagnostics": {"liveness": {"max_idle_signals_seconds": -5}}}', "max_idle_signals_seconds"),
        ('{"diagnostics": {"liveness": {"max_idle_signal_seconds": 5}}}', "unknown key"),
        ("{not json", "invalid JSON"),
    ],
)
def test_rules_when_config_bad_then_one_line_on_stderr_and_exit_2(tmp_path, capsys, content, needle):
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")

    code, out, err = _run(["--config", str(path)], capsys)

    assert code == 2 and out == ""
    assert err.count("\n") == 1 and needle in err and err.startswith("otel-diag rules: error:")


def test_rules_when_config_missing_then_exit_2(tmp_path, capsys):
    code, _, err = _run(["--config", str(tmp_path / "nope.json")], capsys)

    assert code == 2 and "not found" in err


def test_rules_when_for_not_a_duration_then_exit_2(capsys):
    code, _, err = _run(["--config", CONFIG, "--for", "one minute"], capsys)

    assert code == 2 and "--for" in err and err.count("\n") == 1


@pytest.mark.parametrize("seconds, text", [(600, "10m"), (90, "90s"), (3600, "1h"), (1800, "30m"), (0.25, "250ms"), (86400, "1d")])
def test_format_duration_when_seconds_then_largest_exact_unit(seconds, text):
    assert rules.format_duration(seconds) == text
    assert rules.parse_duration(text) == seconds


# -- names against the real exporter ----------------------------------------------------
def test_prometheus_name_when_semconv_metrics_then_expected_spellings():
    assert rules.prometheus_name(semconv.METRIC_LAST_EVENT_TIME) == "trading_last_event_time_seconds"
    assert rules.prometheus_name(semconv.METRIC_SIGNALS) == "trading_signals_total"
    assert rules.prometheus_name(semconv.METRIC_VETOES) == "trading_risk_vetoes_total"
    assert rules.prometheus_name(semconv.METRIC_TP_SL_COVERAGE) == "trading_tp_sl_coverage"
    assert rules.prometheus_name(semconv.METRIC_TP_SL_MISSING) == "trading_tp_sl_missing"
    assert rules.prometheus_names(semconv.METRIC_TP_SL_COVERAGE) == ("trading_tp_sl_coverage", "trading_tp_sl_coverage_ratio")
    assert rules.event_label() == "trading_event"
    assert rules.prometheus_name(semconv.METRIC_MARKET_DATA_LAST_UPDATE) == GAUGE
    assert rules.symbol_label() == "trading_symbol"
    assert rules.market_data_update_label() == "trading_market_data_update"


@pytest.fixture
def exposition():
    """The real ``trading.*`` instruments (``register_instruments``) on a real PrometheusMetricReader, each with
    a point, as /metrics would serve them."""
    registry = CollectorRegistry()
    reader = PrometheusMetricReader(registry=registry)
    provider = MeterProvider(
        metric_readers=[reader],
        resource=Resource.create({"service.name": "executor", "service.instance.id": "test-1"}),
    )
    meter = provider.get_meter(semconv.INSTRUMENTATION_NAME, "0.1.0", schema_url=semconv.SCHEMA_URL)
    state = EventState(lambda: 1_767_571_200.0)
    for metric in rules.COUNTERS:
        state.series(metric, {semconv.ATTR_SYMBOL: "BTCUSDT"}).value = 1
    state.stamp(semconv.EVENT_ROUTER)
    state.stamp_prices({"BTCUSDT": 64_000.0})
    state.set_exit_gauges(ExitGauges(open_positions=2, tp_sl_registered=1, tp_sl_orphaned=1, coverage=0.5,
                                     missing=(("ETHUSDT", "long"),), underwater_unprotected=(("ETHUSDT", "long"),)))
    register_instruments(meter, StateCell(state))
    try:
        yield generate_latest(registry).decode()
    finally:
        provider.shutdown()


def _samples(text: str) -> dict:
    found = {}
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? ", line)
        if match:
            found[match.group(1)] = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"', match.group(3) or ""))
    return found


def test_real_exporter_when_semconv_metrics_registered_then_names_equal_prometheus_name(exposition):
    samples = _samples(exposition)

    expected = {rules.prometheus_name(metric) for metric in semconv.METRIC_UNITS} | {"target_info"}

    assert set(samples) == expected


def test_real_exporter_when_attribute_trading_event_then_label_trading_event_plus_scope_labels(exposition):
    labels = _samples(exposition)[rules.prometheus_name(semconv.METRIC_LAST_EVENT_TIME)]

    assert labels[rules.event_label()] == semconv.EVENT_ROUTER
    assert labels["otel_scope_name"] == semconv.INSTRUMENTATION_NAME
    assert {"otel_scope_version", "otel_scope_schema_url"} <= set(labels)
    assert "job" not in labels and "instance" not in labels  # the scrape adds them


def test_real_exporter_when_resource_set_then_target_info_carries_it(exposition):
    target = _samples(exposition)["target_info"]

    assert target["service_name"] == "executor"
    assert target["service_instance_id"] == "test-1"
    assert "# TYPE trading_last_event_time_seconds gauge" in exposition
    assert "# TYPE trading_signals_total counter" in exposition
    # Counts of current things are UpDownCounters: a gauge to Prometheus, under the same name as before.
    assert "# TYPE trading_positions_open gauge" in exposition and "trading_positions_open{" in exposition
    assert f'otel_scope_schema_url="{semconv.SCHEMA_URL}"' in exposition


def test_real_exporter_when_prices_stamped_then_gauge_labels_are_those_the_symbol_rules_select(exposition):
    gauge = rules.prometheus_name(semconv.METRIC_MARKET_DATA_LAST_UPDATE)
    points = [dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"', line)) for line in exposition.splitlines()
              if line.startswith(gauge + "{")]

    assert sorted((p[rules.symbol_label()], p[rules.market_data_update_label()]) for p in points) == [
        ("BTCUSDT", semconv.MARKET_DATA_BAR), ("BTCUSDT", semconv.MARKET_DATA_PRICE_CHANGE)]
    assert f"# TYPE {gauge} gauge" in exposition
