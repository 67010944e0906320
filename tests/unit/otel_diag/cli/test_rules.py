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


def _write_config(tmp_path, diagnostics: dict) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"diagnostics": diagnostics}), encoding="utf-8")
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
    expected = [name for pair in LIVENESS_ALERTS.values() for name in pair] + EXIT_ALERTS
    assert sorted(alerts) == sorted(expected)
    assert [g["name"] for g in yaml.safe_load(out)["groups"]] == [rules.GROUP_LIVENESS, rules.GROUP_EXIT_PIPELINE]


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
