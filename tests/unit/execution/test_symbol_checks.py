"""Per-symbol market-data checks: evaluation (execution.diagnostics_metrics), the file's fields and the verdict
(execution.diagnostics_document).

The liveness semantics, per symbol: a check without a usable threshold is not run; a symbol never stamped
is missing, hence stale (no_bars, age threshold + 1); a future stamp is age 0; stale iff the age exceeds
the threshold; no_bars takes precedence over price_frozen.
"""
from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from types import SimpleNamespace

import jsonschema
import pytest

from execution import config
from execution import diagnostics_document as dd
from execution.config import LivenessConfig
from execution.diagnostics_metrics import evaluate_liveness
from otel_diag import semconv
from tests.fixtures import diagnostics_state as fx

NOW = 1_767_600_000.0
AT = datetime.fromtimestamp(NOW, timezone.utc)
BAR, CHANGE = semconv.MARKET_DATA_BAR, semconv.MARKET_DATA_PRICE_CHANGE
AGE_LIMIT, FROZEN_LIMIT = 120.0, 300.0  # not the defaults: a config that ignored them would fail below
CFG = LivenessConfig(max_symbol_data_age_seconds=AGE_LIMIT, max_symbol_price_frozen_seconds=FROZEN_LIMIT)


def evaluate(market, symbols=(), cfg=CFG) -> dd.LivenessAlerts:
    """The liveness block at AT, every global key's last event just now."""
    return evaluate_liveness(cfg, AT, {key: NOW for key in dd.LIVENESS_KEYS}, market_data=market, symbols=symbols)


def fresh(age_bar: float = 0.0, age_change: float = 0.0) -> dict:
    return {BAR: NOW - age_bar, CHANGE: NOW - age_change}


# -- one fact, one place ------------------------------------------------------------------------------
def test_symbol_checks_when_compared_with_semconv_config_and_alerts_then_the_same_set():
    assert set(dd.SYMBOL_CHECK_KEYS) == set(semconv.SYMBOL_CHECK_UPDATES)
    assert set(semconv.SYMBOL_CHECK_UPDATES.values()) == set(semconv.MARKET_DATA_UPDATES)
    assert config.SYMBOL_THRESHOLD_FIELDS == {c.key: c.threshold_field for c in dd.SYMBOL_CHECKS}
    assert {c.threshold_field for c in dd.SYMBOL_CHECKS} <= {f.name for f in dataclasses.fields(LivenessConfig)}


# -- evaluation ---------------------------------------------------------------------------------------
def test_evaluate_when_every_symbol_fresh_then_ages_reported_and_nothing_stale():
    alerts = evaluate({"BTCUSDT": fresh(60, 60), "ETHUSDT": fresh(0, 120)}, ("BTCUSDT", "ETHUSDT"))

    assert alerts.stale_symbols == [] and alerts.symbol_checks == {} and alerts.missing_symbols == []
    assert alerts.symbol_details == {"BTCUSDT": {"no_bars": 60.0, "price_frozen": 60.0},
                                     "ETHUSDT": {"no_bars": 0.0, "price_frozen": 120.0}}
    assert alerts.symbol_thresholds == {"no_bars": AGE_LIMIT, "price_frozen": FROZEN_LIMIT}
    assert not alerts.any_idle and all(age == 0.0 for age in alerts.details.values())


def test_evaluate_when_one_symbol_has_no_bar_past_the_threshold_then_only_it_stale_with_no_bars():
    alerts = evaluate({"BTCUSDT": fresh(), "ETHUSDT": fresh(121, 121)}, ("BTCUSDT", "ETHUSDT"))

    assert alerts.stale_symbols == ["ETHUSDT"] and alerts.symbol_checks == {"ETHUSDT": "no_bars"}


def test_evaluate_when_age_exactly_the_threshold_then_not_stale():
    alerts = evaluate({"ETHUSDT": fresh(120, 300)})

    assert alerts.stale_symbols == []


def test_evaluate_when_bars_arrive_but_the_price_is_frozen_then_price_frozen():
    alerts = evaluate({"ETHUSDT": fresh(0, 301)})

    assert alerts.symbol_checks == {"ETHUSDT": "price_frozen"}


def test_evaluate_when_no_bars_and_price_frozen_both_fail_then_no_bars_takes_precedence():
    alerts = evaluate({"ETHUSDT": fresh(4000, 4000)})

    assert alerts.symbol_checks == {"ETHUSDT": "no_bars"}
    assert alerts.symbol_details["ETHUSDT"] == {"no_bars": 4000.0, "price_frozen": 4000.0}


def test_evaluate_when_a_configured_symbol_never_had_a_bar_then_missing_and_stale_at_threshold_plus_one():
    alerts = evaluate({"BTCUSDT": fresh()}, ("BTCUSDT", "XRPUSDT"))

    assert alerts.missing_symbols == ["XRPUSDT"] and alerts.stale_symbols == ["XRPUSDT"]
    assert alerts.symbol_checks == {"XRPUSDT": "no_bars"}
    assert alerts.symbol_details["XRPUSDT"] == {"no_bars": 121.0, "price_frozen": 301.0}


def test_evaluate_when_a_stamped_symbol_is_not_configured_then_still_checked():
    alerts = evaluate({"DOGEUSDT": fresh(500, 500)}, ("BTCUSDT",))

    assert alerts.stale_symbols == ["BTCUSDT", "DOGEUSDT"]
    assert alerts.missing_symbols == ["BTCUSDT"]


def test_evaluate_when_stamp_in_the_future_then_age_zero_not_negative():
    alerts = evaluate({"ETHUSDT": fresh(-300, -300)})

    assert alerts.symbol_details["ETHUSDT"] == {"no_bars": 0.0, "price_frozen": 0.0} and alerts.stale_symbols == []


@pytest.mark.parametrize("threshold", [None, 0, -5, float("nan"), float("inf"), True])
def test_evaluate_when_one_threshold_unusable_then_that_check_not_run(threshold):
    cfg = SimpleNamespace(enabled=True, max_symbol_data_age_seconds=AGE_LIMIT,
                          max_symbol_price_frozen_seconds=threshold)  # a frozen config would refuse these values

    alerts = evaluate({"ETHUSDT": fresh(0, 10_000)}, cfg=cfg)

    assert alerts.stale_symbols == [] and alerts.symbol_thresholds == {"no_bars": AGE_LIMIT}
    assert alerts.symbol_details == {"ETHUSDT": {"no_bars": 0.0}}


def test_evaluate_when_only_price_frozen_checked_and_symbol_never_seen_then_stale_as_price_frozen():
    cfg = LivenessConfig(max_symbol_data_age_seconds=None, max_symbol_price_frozen_seconds=FROZEN_LIMIT)

    alerts = evaluate({}, ("ETHUSDT",), cfg)

    assert alerts.symbol_checks == {"ETHUSDT": "price_frozen"} and alerts.missing_symbols == ["ETHUSDT"]


def test_evaluate_when_both_thresholds_off_or_liveness_disabled_then_no_per_symbol_output():
    off = LivenessConfig(max_symbol_data_age_seconds=None, max_symbol_price_frozen_seconds=0)
    disabled = LivenessConfig(enabled=False)

    for cfg in (off, disabled):
        alerts = evaluate({"ETHUSDT": fresh(9999, 9999)}, ("ETHUSDT", "BTCUSDT"), cfg)
        assert (alerts.stale_symbols, alerts.symbol_checks, alerts.symbol_details, alerts.missing_symbols) == (
            [], {}, {}, [])


# -- the file and the verdict -------------------------------------------------------------------------
def _doc(liveness: dd.LivenessAlerts) -> dict:
    """A diagnostics.json document evaluated at NOW: ``liveness``, every other section empty."""
    return dd.to_json(dd.DiagnosticsDocument(written_at=fx.iso(NOW), evaluated_at=fx.iso(NOW), service=dd.ServiceInfo(),
                                             veto_counters=dd.VetoCounters(), exit_pipeline=dd.ExitPipelineStatus(),
                                             liveness=liveness))


def _block(liveness: dd.LivenessAlerts) -> dict:
    doc = _doc(liveness)
    jsonschema.Draft202012Validator(dd.json_schema()).validate(doc)
    reading = dd.from_json(doc)
    assert reading.problems == []
    return {"status": dd.STATUS_OK, "runtime_diagnostics": reading.runtime_diagnostics, "service": reading.service}


def test_health_when_a_symbol_is_stale_then_alerting_naming_symbol_check_and_age():
    block = _block(evaluate({"BTCUSDT": fresh(), "ETHUSDT": fresh(240, 240)}, ("BTCUSDT", "ETHUSDT")))

    verdict = dd.health(block)

    assert verdict.code == dd.EXIT_ALERTING
    assert verdict.alerts == (f"{dd.MARKET_DATA_STALE}: ETHUSDT (no bars for 4m)",)


def test_health_when_symbols_never_seen_or_frozen_then_each_named_the_way_it_failed():
    block = _block(evaluate({"SOLUSDT": fresh(0, 720)}, ("SOLUSDT", "XRPUSDT")))

    assert dd.health(block).alerts == (
        f"{dd.MARKET_DATA_STALE}: SOLUSDT (price frozen for 12m), XRPUSDT (no bars ever)",)


def test_health_when_every_symbol_fresh_then_healthy():
    assert dd.health(_block(evaluate({"ETHUSDT": fresh(119, 299)}, ("ETHUSDT",)))).code == dd.EXIT_HEALTHY


def test_health_when_many_symbols_stale_then_one_line_with_the_first_and_a_count():
    symbols = tuple(f"S{i:03d}" for i in range(300))

    verdict = dd.health(_block(evaluate({}, symbols)))

    (line,) = verdict.alerts
    assert line.endswith(f" {dd.more_stale_text(300 - dd.MAX_STALE_SYMBOLS_SHOWN)}")
    assert line.count("(no bars ever)") == dd.MAX_STALE_SYMBOLS_SHOWN


def test_health_when_a_stale_symbol_name_is_300_characters_then_the_alert_line_quotes_it_cut():
    name = "X" * 300
    block = _block(evaluate({"BTCUSDT": fresh(), name: fresh(240, 240)}, ("BTCUSDT",)))

    (line,) = dd.health(block).alerts

    assert line == f"{dd.MARKET_DATA_STALE}: {dd.shorten(name)} (no bars for 4m)"
    assert name[:dd.SHORT_CHARS] not in line  # cut, not quoted whole


@pytest.mark.parametrize("liveness, expected", [
    ({"symbol_details": {"ETHUSDT": {"no_bars": 999.0}}, "symbol_thresholds": {"no_bars": 180.0}},
     {"ETHUSDT": "no_bars"}),
    ({"stale_symbols": ["ETHUSDT"]}, {"ETHUSDT": "no_bars"}),
    ({"symbol_checks": {"ETHUSDT": "price_frozen"}}, {"ETHUSDT": "price_frozen"}),
    ({"missing_symbols": ["ETHUSDT"]}, {"ETHUSDT": "no_bars"}),
    ({"symbol_details": {"ETHUSDT": {"price_frozen": 999.0}}, "symbol_thresholds": {"price_frozen": 600.0},
      "stale_symbols": []}, {"ETHUSDT": "price_frozen"}),
])
def test_stale_symbols_when_the_file_disagrees_with_itself_then_read_the_unhealthy_way(liveness, expected):
    assert dd.stale_symbols(liveness) == expected


def test_from_json_when_per_symbol_fields_hostile_then_bad_values_dropped_and_named():
    doc = _doc(dd.LivenessAlerts())
    live = doc["runtime_diagnostics"]["liveness"]
    live.update(stale_symbols="ETHUSDT", symbol_checks={"ETHUSDT": "exploded", "BTCUSDT": "no_bars"},
                symbol_details={"ETHUSDT": {"no_bars": -1}, "SOLUSDT": "old"}, symbol_thresholds={"no_bars": 0},
                missing_symbols=[1, 2])

    reading = dd.from_json(doc)

    kept = reading.runtime_diagnostics["liveness"]
    assert kept["stale_symbols"] == [] and kept["missing_symbols"] == []
    assert kept["symbol_checks"] == {"BTCUSDT": "no_bars"}
    assert kept["symbol_details"] == {"ETHUSDT": {}, "SOLUSDT": {}} and kept["symbol_thresholds"] == {}
    named = " | ".join(reading.problems)
    for where in ("liveness.stale_symbols", "liveness.symbol_checks.ETHUSDT: expected no_bars or price_frozen",
                  "liveness.symbol_details.ETHUSDT.no_bars", "liveness.symbol_details.SOLUSDT",
                  "liveness.symbol_thresholds.no_bars", "liveness.missing_symbols"):
        assert where in named, (where, reading.problems)
    assert dd.stale_symbols(kept) == {"BTCUSDT": "no_bars"}
