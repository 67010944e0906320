"""execution.diagnostics_document: the one model of diagnostics.json — writer, reader, schema, verdict."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import jsonschema
import pytest

from execution import config
from execution import diagnostics_document as dd
from otel_diag import semconv
from tests.fixtures import diagnostics_state as fx

NOW = 1_767_600_000.0
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _document() -> dd.DiagnosticsDocument:
    return dd.DiagnosticsDocument(
        written_at=fx.iso(NOW), evaluated_at=fx.iso(NOW - 1),
        service=dd.ServiceInfo(name="executor-a", pid=12, publish_interval_seconds=30.0, state="running"),
        veto_counters=dd.VetoCounters(by_reason={"min_notional": 2, "cooldown_after_exit": 1}, total_signals=5,
                                      total_vetoes=3, by_reason_symbol={"z": {"B": 1, "A": 2}}),
        exit_pipeline=dd.ExitPipelineStatus(open_positions_count=2, tp_sl_registered_count=1, tp_sl_missing_count=1,
                                            tp_sl_coverage_pct=0.5, ledger_registry_mismatch=True,
                                            missing_tp_sl_symbols=["ETHUSDT"]),
        liveness=dd.LivenessAlerts(idle_router=True, details={"router": 4000.0, "exit_scans": 3.0, "signals": 1.0},
                                   missing={"router": False}, thresholds={"router": 1800.0},
                                   evaluated_at=fx.iso(NOW - 1)),
    )


def _block(doc: dict, status: str = dd.STATUS_OK) -> dict:
    reading = dd.from_json(doc)
    return {"status": status, "runtime_diagnostics": reading.runtime_diagnostics, "service": reading.service}


# -- one fact, one place ------------------------------------------------------------------------------
def test_liveness_keys_when_compared_with_semconv_config_and_alerts_then_the_same_set():
    assert set(dd.LIVENESS_KEYS) == set(semconv.LIVENESS_EVENTS)
    assert config.LIVENESS_THRESHOLD_FIELDS == {c.key: c.threshold_field for c in dd.LIVENESS_CHECKS}
    config_fields = {f.name for f in dataclasses.fields(config.LivenessConfig)}
    alert_fields = {f.name for f in dataclasses.fields(dd.LivenessAlerts)}
    for check in dd.LIVENESS_CHECKS:
        assert check.threshold_field in config_fields
        assert check.idle_flag in alert_fields


def test_liveness_file_order_when_written_then_spec_keys_first_then_extras():
    spec = [c.key for c in dd.LIVENESS_CHECKS if c.spec]
    assert list(dd.LIVENESS_FILE_ORDER[:len(spec)]) == spec == ["signals", "orders", "exits", "router"]


def test_schema_file_when_compared_with_the_model_then_no_drift():
    with open(os.path.join(ROOT, "docs", "runtime_diagnostics.schema.json"), encoding="utf-8") as fh:
        assert fh.read() == dd.schema_text(), "docs/runtime_diagnostics.schema.json is stale: run `make schema`"


def test_document_module_when_imported_then_standard_library_only():
    code = ("import sys, execution.diagnostics_document; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('opentelemetry', 'otel_diag', 'wrapt')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


# -- writer and reader -----------------------------------------------------------------------------
def test_to_json_when_written_then_maps_ordered_and_schema_valid():
    data = dd.to_json(_document())

    vc, live = data["runtime_diagnostics"]["veto_counters"], data["runtime_diagnostics"]["liveness"]
    assert list(vc["by_reason"]) == ["cooldown_after_exit", "min_notional"]
    assert list(vc["by_reason_symbol"]["z"]) == ["A", "B"]
    assert list(live["details"]) == ["signals", "router", "exit_scans"]
    assert list(data) == ["schema_version", "written_at", "evaluated_at", "service", "runtime_diagnostics"]
    jsonschema.Draft202012Validator(dd.json_schema()).validate(data)


def test_from_json_when_reading_what_to_json_wrote_then_same_values_and_no_problem():
    data = json.loads(json.dumps(dd.to_json(_document())))

    reading = dd.from_json(data)

    assert reading.problems == [] and reading.error is None
    assert reading.runtime_diagnostics == data["runtime_diagnostics"]
    assert reading.service == data["service"]


def test_from_json_when_a_value_is_bad_then_default_kept_and_problem_named():
    data = dd.to_json(_document())
    data["runtime_diagnostics"]["exit_pipeline"]["tp_sl_coverage_pct"] = 3
    del data["runtime_diagnostics"]["liveness"]["missing"]

    reading = dd.from_json(data)

    assert reading.runtime_diagnostics["exit_pipeline"]["tp_sl_coverage_pct"] == 0.0
    assert reading.problems == [
        "runtime_diagnostics.exit_pipeline.tp_sl_coverage_pct: expected a ratio between 0 and 1, got 3",
        "runtime_diagnostics.liveness.missing: missing, expected an object"]


def test_from_json_when_schema_version_unknown_then_error_and_no_sections():
    reading = dd.from_json({"schema_version": 9, "written_at": fx.iso(NOW)})
    assert reading.error == (dd.STATUS_UNSUPPORTED_SCHEMA, "schema_version 9 is not supported (expected 1)")
    assert reading.runtime_diagnostics["liveness"] == dd.default_section(dd.LivenessAlerts)


# -- the verdict ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("builder, code, alerts", [
    (fx.healthy, dd.EXIT_HEALTHY, ()),
    (fx.no_positions, dd.EXIT_HEALTHY, ()),
    (fx.mismatch, dd.EXIT_ALERTING, ("ledger/registry mismatch (1 open without TP/SL)",)),
    (fx.idle_with_missing, dd.EXIT_ALERTING, ("orders idle", "exits idle (never seen)", "router idle")),
])
def test_health_when_trusted_block_then_verdict_and_alerts(builder, code, alerts):
    verdict = dd.health(_block(builder(NOW)))
    assert (verdict.code, verdict.alerts) == (code, alerts)
    assert verdict.label == {0: "healthy", 1: "alerting"}[code]


@pytest.mark.parametrize("status", [s for s in dd.STATUSES if s != dd.STATUS_OK])
def test_health_when_block_not_trusted_then_unknown_whatever_it_says(status):
    assert dd.health(_block(fx.healthy(NOW), status)).code == dd.EXIT_UNKNOWN


def test_health_when_file_disagrees_with_itself_then_read_the_unhealthy_way():
    over = fx.healthy(NOW)
    over["runtime_diagnostics"]["liveness"]["details"]["router"] = 99_999.0  # flag says fine, age says idle
    unseen = fx.healthy(NOW)
    unseen["runtime_diagnostics"]["liveness"]["missing"]["signals"] = True
    underwater = fx.healthy(NOW)
    underwater["runtime_diagnostics"]["exit_pipeline"]["underwater_without_tp_sl_count"] = 2

    assert dd.health(_block(over)).alerts == ("router idle",)
    assert dd.health(_block(unseen)).alerts == ("signals idle (never seen)",)
    assert dd.health(_block(underwater)).alerts == ("2 underwater without TP/SL",)


@pytest.mark.parametrize("value, expected", [
    ("2026-01-05T08:00:00Z", NOW), (NOW, NOW), ("1767600000", NOW), ("2026-01-05T09:00:00+01:00", NOW),
])
def test_parse_timestamp_when_iso_or_unix_then_same_instant(value, expected):
    assert dd.parse_timestamp(value).timestamp() == expected


@pytest.mark.parametrize("value", [NOW, "1767600000", "x" * 65, None, True])
def test_parse_iso_when_not_an_iso_string_then_none(value):
    assert dd.parse_iso(value) is None


# -- a run that ended: its own verdict, ahead of staleness ------------------------------------------------
def _ended(state, status=dd.STATUS_OK, builder=fx.healthy, **service):
    return _block(fx.ended(NOW, state, builder, **service), status)


@pytest.mark.parametrize("status, state, label", [
    (dd.STATUS_OK, dd.SERVICE_RUNNING, dd.VERDICT_HEALTHY),
    (dd.STATUS_OK, None, dd.VERDICT_HEALTHY),
    (dd.STATUS_OK, dd.SERVICE_STOPPED, dd.VERDICT_STOPPED),
    (dd.STATUS_OK, dd.SERVICE_FAILED, dd.VERDICT_FAILED),
    (dd.STATUS_STALE, dd.SERVICE_RUNNING, dd.VERDICT_UNKNOWN),
    (dd.STATUS_STALE, dd.SERVICE_STOPPED, dd.VERDICT_STOPPED),  # stopped is the more useful truth than stale
    (dd.STATUS_STALE, dd.SERVICE_FAILED, dd.VERDICT_FAILED),
    (dd.STATUS_INVALID, dd.SERVICE_STOPPED, dd.VERDICT_UNKNOWN),  # a file that can't be trusted says nothing
    (dd.STATUS_CORRUPT, dd.SERVICE_FAILED, dd.VERDICT_UNKNOWN),
    (dd.STATUS_MISSING, dd.SERVICE_STOPPED, dd.VERDICT_UNKNOWN),
])
def test_health_when_run_state_and_file_status_combine_then_precedence_decides(status, state, label):
    verdict = dd.health(_ended(state, status))
    assert verdict.label == label
    assert verdict.code == {dd.VERDICT_HEALTHY: dd.EXIT_HEALTHY}.get(label, dd.EXIT_UNKNOWN)


def test_health_when_stopped_then_one_line_with_time_and_last_verdict():
    assert dd.health(_ended(dd.SERVICE_STOPPED)).summary == f"stopped at {fx.iso(NOW)} — last verdict healthy"
    alerting = dd.health(_ended(dd.SERVICE_STOPPED, builder=fx.mismatch))
    assert alerting.summary.endswith("— last verdict alerting: ledger/registry mismatch (1 open without TP/SL)")
    assert alerting.alerts == ("ledger/registry mismatch (1 open without TP/SL)",)
    assert dd.health(_ended(dd.SERVICE_STOPPED, stopped_at=None)).summary.startswith("stopped at an unknown time —")


def test_health_when_failed_then_the_failure_in_brackets():
    verdict = dd.health(_ended(dd.SERVICE_FAILED, failure="disk full"))
    assert verdict.summary == f"failed at {fx.iso(NOW)} (disk full) — last verdict healthy"
    assert dd.health(_ended(dd.SERVICE_FAILED)).summary == f"failed at {fx.iso(NOW)} — last verdict healthy"


# -- the reader's caps ----------------------------------------------------------------------------------------
def test_from_json_when_texts_keys_and_list_entries_are_long_then_cut_with_an_ellipsis_not_refused():
    data = fx.healthy(NOW)
    data["service"].update(name="n" * 10_000, failure="f" * 300)
    data["runtime_diagnostics"]["veto_counters"]["by_reason"] = {"r" * 300: 1}
    data["runtime_diagnostics"]["exit_pipeline"]["missing_tp_sl_symbols"] = ["s" * 257]

    reading = dd.from_json(data)

    cut = lambda c: c * (dd.MAX_TEXT_CHARS - 1) + "…"  # noqa: E731
    assert reading.problems == []
    assert (reading.service["name"], reading.service["failure"]) == (cut("n"), cut("f"))
    assert reading.runtime_diagnostics["veto_counters"]["by_reason"] == {cut("r"): 1}
    assert reading.runtime_diagnostics["exit_pipeline"]["missing_tp_sl_symbols"] == [cut("s")]


def test_from_json_when_lists_and_maps_are_past_their_caps_then_the_first_entries_kept():
    data = fx.healthy(NOW)
    vc, ex, live = (data["runtime_diagnostics"][k] for k in ("veto_counters", "exit_pipeline", "liveness"))
    vc["by_symbol"] = {f"S{i}": i for i in range(dd.MAX_MAP_ENTRIES + 10)}
    vc["by_reason_symbol"] = {f"r{i}": {"A": 1, "B": 2} for i in range(dd.MAX_MAP_ENTRIES)}
    ex["missing_tp_sl_symbols"] = [f"S{i}" for i in range(dd.MAX_LIST_ITEMS + 1)] + [3]  # past the cap: not read
    live["details"].update({f"extra{i}": 1.0 for i in range(100)})

    rd = dd.from_json(data).runtime_diagnostics

    assert list(rd["veto_counters"]["by_symbol"]) == [f"S{i}" for i in range(dd.MAX_MAP_ENTRIES)]
    assert sum(1 + len(v) for v in rd["veto_counters"]["by_reason_symbol"].values()) == dd.MAX_MAP_ENTRIES
    assert rd["exit_pipeline"]["missing_tp_sl_symbols"] == [f"S{i}" for i in range(dd.MAX_LIST_ITEMS)]
    assert len(rd["liveness"]["details"]) == dd.MAX_LIVENESS_MAP_ENTRIES
    assert list(rd["liveness"]["details"])[:5] == list(fx.healthy(NOW)["runtime_diagnostics"]["liveness"]["details"])


def test_from_json_when_publish_interval_beyond_the_maximum_then_problem_and_default():
    data = fx.healthy(NOW)
    data["service"]["publish_interval_seconds"] = dd.MAX_PUBLISH_INTERVAL_SECONDS * 2

    reading = dd.from_json(data)

    assert reading.service["publish_interval_seconds"] == dd.DEFAULT_PUBLISH_INTERVAL_SECONDS
    assert reading.problems == ["service.publish_interval_seconds: expected a number > 0 and at most 3600, got 7200.0"]
