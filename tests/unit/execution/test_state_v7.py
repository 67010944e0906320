"""execution.state_v7: the loader never raises and always returns the same well-formed block."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from execution.diagnostics_document import LIVENESS_KEYS, format_age
from execution.diagnostics_document import parse_iso as parse_timestamp
from execution.state_v7 import list_executor_instances, load_runtime_diagnostics_state, parse_runtime_diagnostics
from tests.fixtures import diagnostics_state as fx

NOW = 1_767_600_000.0  # 2026-01-05T08:00:00Z

SPEC_KEYS = {
    "veto_counters": {"by_reason", "total_signals", "total_orders", "total_vetoes",
                      "last_signal_ts", "last_order_ts", "last_veto_ts"},
    "exit_pipeline": {"last_exit_scan_ts", "last_exit_trigger_ts", "last_router_event_ts", "open_positions_count",
                      "tp_sl_registered_count", "tp_sl_missing_count", "underwater_without_tp_sl_count",
                      "tp_sl_coverage_pct", "ledger_registry_mismatch"},
    "liveness": {"idle_signals", "idle_orders", "idle_exits", "idle_router", "details", "missing"},
}
EXTRA_KEYS = {
    "veto_counters": {"by_symbol", "by_reason_symbol", "router_events", "overflow"},
    "exit_pipeline": {"tp_sl_orphan_count", "underwater_without_tp_sl_symbols", "missing_tp_sl_symbols",
                      "total_exit_scans", "total_exit_triggers"},
    "liveness": {"enabled", "idle_exit_scans", "thresholds", "last_event_ts", "last_trace_ids", "evaluated_at"},
}


def assert_well_formed(block: dict) -> None:
    """Every spec §4.1 key and documented extra, each of its type; durations finite and >= 0."""
    assert isinstance(block["status"], str) and isinstance(block["reason"], str)
    rd = block["runtime_diagnostics"]
    for section, keys in SPEC_KEYS.items():
        assert keys | EXTRA_KEYS[section] <= set(rd[section]), section
    vc, ex, live = rd["veto_counters"], rd["exit_pipeline"], rd["liveness"]
    for key in ("total_signals", "total_orders", "total_vetoes"):
        assert type(vc[key]) is int and vc[key] >= 0
    for key in ("open_positions_count", "tp_sl_registered_count", "tp_sl_missing_count",
                "underwater_without_tp_sl_count", "tp_sl_orphan_count"):
        assert type(ex[key]) is int and ex[key] >= 0
    assert isinstance(ex["tp_sl_coverage_pct"], float) and 0.0 <= ex["tp_sl_coverage_pct"] <= 1.0
    assert type(ex["ledger_registry_mismatch"]) is bool
    for key in LIVENESS_KEYS:
        assert type(live.get(f"idle_{key}", False)) is bool
    assert all(isinstance(v, float) and math.isfinite(v) and v >= 0 for v in live["details"].values())
    assert all(type(v) is bool for v in live["missing"].values())
    assert all(isinstance(v, int) and v >= 0 for v in vc["by_reason"].values())
    age = block["age_seconds"]
    assert age is None or (math.isfinite(age) and age >= 0)
    assert math.isfinite(block["max_age_seconds"]) and block["max_age_seconds"] > 0
    assert block["service"]["publish_interval_seconds"] > 0
    json.dumps(block, allow_nan=False)  # printable by `otel-diag status --json`


# -- statuses -------------------------------------------------------------------------------------
def test_load_when_file_is_fresh_and_complete_then_ok_with_values(tmp_path):
    fx.write_state(tmp_path, fx.healthy(NOW - 5))
    block = load_runtime_diagnostics_state(tmp_path, now=NOW)
    assert block["status"] == "ok" and block["problems"] == []
    assert block["age_seconds"] == pytest.approx(5.0)
    assert block["runtime_diagnostics"]["exit_pipeline"]["open_positions_count"] == 3
    assert block["runtime_diagnostics"]["liveness"]["thresholds"]["exit_scans"] == 120.0
    assert_well_formed(block)


def test_load_when_folder_has_no_file_then_missing_with_defaults(tmp_path):
    block = load_runtime_diagnostics_state(tmp_path / "nowhere", now=NOW)
    assert block["status"] == "missing"
    assert block["written_at"] is None and block["age_seconds"] is None
    assert block["runtime_diagnostics"]["liveness"]["idle_router"] is False
    assert_well_formed(block)


@pytest.mark.parametrize("text, status", [
    ("", "empty"),
    ("  \n", "empty"),
    ('{"schema_version": 1, "written_at": "2026-01-05T08:00:00+00:00", "runtime_diag', "corrupt"),
    ("{'single': 'quotes'}", "corrupt"),
    ('{"x": NaN}', "corrupt"),
    ("[" * 100_000, "corrupt"),
    ("[1, 2, 3]", "invalid"),
    ('"just a string"', "invalid"),
    ('{"schema_version": 2, "written_at": "2026-01-05T08:00:00+00:00"}', "unsupported_schema"),
    ('{"schema_version": true}', "unsupported_schema"),
    ('{"written_at": "2026-01-05T08:00:00+00:00"}', "unsupported_schema"),
])
def test_load_when_file_is_damaged_then_status_says_which(tmp_path, text, status):
    fx.write_raw(tmp_path, text)
    block = load_runtime_diagnostics_state(tmp_path, now=NOW)
    assert block["status"] == status, block["reason"]
    assert_well_formed(block)


def test_load_when_bytes_are_not_utf8_then_corrupt(tmp_path):
    (tmp_path / "diagnostics.json").write_bytes(b"\xff\xfe{\x00")
    assert load_runtime_diagnostics_state(tmp_path, now=NOW)["status"] == "corrupt"


def test_load_when_path_is_a_folder_then_unreadable(tmp_path):
    (tmp_path / "diagnostics.json").mkdir()
    block = load_runtime_diagnostics_state(tmp_path, now=NOW)
    assert block["status"] == "unreadable"
    assert_well_formed(block)


@pytest.mark.parametrize("state_dir", [None, 42, b"\x00bad", "bad\x00path", object()])
def test_load_when_state_dir_is_not_a_path_then_no_exception(state_dir):
    block = load_runtime_diagnostics_state(state_dir, now=NOW)
    assert block["status"] in ("unreadable", "missing")
    assert_well_formed(block)


def test_load_when_values_have_wrong_types_then_defaults_and_invalid(tmp_path):
    doc = fx.healthy(NOW)
    rd = doc["runtime_diagnostics"]
    rd["veto_counters"].update(total_signals="many", by_reason={"min_notional": -3, "cooldown_after_exit": 2})
    rd["exit_pipeline"].update(tp_sl_coverage_pct=1.7, ledger_registry_mismatch="yes", open_positions_count=True)
    rd["liveness"].update(idle_router=1, details={"signals": -5, "orders": "x", "router": 12.5})
    fx.write_state(tmp_path, doc)
    block = load_runtime_diagnostics_state(tmp_path, now=NOW)
    assert block["status"] == "invalid"
    vc, ex, live = (block["runtime_diagnostics"][k] for k in ("veto_counters", "exit_pipeline", "liveness"))
    assert vc["total_signals"] == 0 and vc["by_reason"] == {"cooldown_after_exit": 2}
    assert ex["tp_sl_coverage_pct"] == 0.0 and ex["ledger_registry_mismatch"] is False
    assert ex["open_positions_count"] == 0
    assert live["idle_router"] is False and live["details"] == {"router": 12.5}
    assert any("total_signals: expected an integer >= 0, got 'many'" in p for p in block["problems"])
    assert any("details.signals: expected seconds >= 0" in p for p in block["problems"])
    assert_well_formed(block)


def test_load_when_numbers_are_huge_then_defaults_not_crash(tmp_path):
    doc = fx.healthy(NOW)
    doc["runtime_diagnostics"]["veto_counters"]["total_orders"] = 10**400
    doc["runtime_diagnostics"]["liveness"]["details"]["router"] = 10**400
    fx.write_state(tmp_path, doc)
    block = load_runtime_diagnostics_state(tmp_path, now=NOW)
    assert block["status"] == "invalid"
    assert block["runtime_diagnostics"]["veto_counters"]["total_orders"] == 0
    assert "router" not in block["runtime_diagnostics"]["liveness"]["details"]
    assert_well_formed(block)


def test_load_when_a_spec_key_is_absent_then_invalid_naming_it(tmp_path):
    doc = fx.healthy(NOW)
    del doc["runtime_diagnostics"]["exit_pipeline"]["ledger_registry_mismatch"]
    fx.write_state(tmp_path, doc)
    block = load_runtime_diagnostics_state(tmp_path, now=NOW)
    assert block["status"] == "invalid"
    assert "runtime_diagnostics.exit_pipeline.ledger_registry_mismatch: missing" in block["reason"]


def test_load_when_only_spec_keys_are_present_then_ok_with_extra_defaults(tmp_path):
    doc = fx.healthy(NOW)
    for section, extras in EXTRA_KEYS.items():
        for key in extras:
            doc["runtime_diagnostics"][section].pop(key, None)
    fx.write_state(tmp_path, doc)
    block = load_runtime_diagnostics_state(tmp_path, now=NOW)
    assert block["status"] == "ok", block["reason"]
    assert block["runtime_diagnostics"]["liveness"]["thresholds"] == {}
    assert block["runtime_diagnostics"]["exit_pipeline"]["underwater_without_tp_sl_symbols"] == []
    assert_well_formed(block)


def test_load_when_unknown_keys_are_present_then_ignored(tmp_path):
    doc = fx.healthy(NOW)
    doc["future_section"] = {"x": 1}
    doc["runtime_diagnostics"]["liveness"]["new_flag"] = True
    fx.write_state(tmp_path, doc)
    block = load_runtime_diagnostics_state(tmp_path, now=NOW)
    assert block["status"] == "ok"
    assert "new_flag" not in block["runtime_diagnostics"]["liveness"]


# -- staleness ------------------------------------------------------------------------------------
def test_load_when_older_than_three_publish_intervals_then_stale(tmp_path):
    fx.write_state(tmp_path, fx.healthy(NOW - 181))
    block = load_runtime_diagnostics_state(tmp_path, now=NOW)
    assert block["status"] == "stale" and block["stale"] is True
    assert block["max_age_seconds"] == 180.0
    assert "3m 01s ago" in block["reason"] and "3 × publish interval 1m" in block["reason"]
    assert block["runtime_diagnostics"]["exit_pipeline"]["open_positions_count"] == 3  # last known figures kept


def test_load_when_within_three_publish_intervals_then_not_stale(tmp_path):
    fx.write_state(tmp_path, fx.healthy(NOW - 179))
    assert load_runtime_diagnostics_state(tmp_path, now=NOW)["status"] == "ok"


def test_load_when_publish_interval_is_longer_then_threshold_follows_it(tmp_path):
    doc = fx.healthy(NOW - 600)
    doc["service"]["publish_interval_seconds"] = 300.0
    fx.write_state(tmp_path, doc)
    block = load_runtime_diagnostics_state(tmp_path, now=NOW)
    assert block["status"] == "ok" and block["max_age_seconds"] == 900.0


def test_load_when_max_age_given_then_it_overrides(tmp_path):
    fx.write_state(tmp_path, fx.healthy(NOW - 30))
    assert load_runtime_diagnostics_state(tmp_path, now=NOW, max_age_seconds=10)["status"] == "stale"


def test_load_when_written_slightly_in_the_future_then_ok_and_age_zero_not_negative(tmp_path):
    fx.write_state(tmp_path, fx.healthy(NOW + 20))  # within dd.FUTURE_SKEW_SECONDS: clock skew
    block = load_runtime_diagnostics_state(tmp_path, now=NOW)
    assert block["status"] == "ok" and block["age_seconds"] == 0.0


def test_load_when_written_an_hour_in_the_future_then_stale_saying_so_not_fresh_for_ever(tmp_path):
    fx.write_state(tmp_path, fx.healthy(NOW + 3600))
    block = load_runtime_diagnostics_state(tmp_path, now=NOW)
    assert block["status"] == "stale" and block["stale"] is True and block["age_seconds"] == 0.0
    assert block["reason"].endswith("diagnostics.json: written_at is 1h in the future (more than 30s ahead of "
                                    "this clock), so its age is unknown")


def test_load_when_now_is_a_naive_datetime_then_treated_as_utc(tmp_path):
    fx.write_state(tmp_path, fx.healthy(NOW - 60))
    naive = datetime.fromtimestamp(NOW, timezone.utc).replace(tzinfo=None)
    assert load_runtime_diagnostics_state(tmp_path, now=naive)["age_seconds"] == pytest.approx(60.0)


def test_load_when_written_at_unparseable_then_invalid_and_no_age(tmp_path):
    doc = fx.healthy(NOW)
    doc["written_at"] = "yesterday"
    fx.write_state(tmp_path, doc)
    block = load_runtime_diagnostics_state(tmp_path, now=NOW)
    assert block["status"] == "invalid" and block["age_seconds"] is None


# -- helpers --------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("2026-01-05T08:00:00Z", NOW),
    ("2026-01-05T09:00:00+01:00", NOW),
    ("2026-01-05T08:00:00", NOW),
    ("2026-01-05T08:00:00.000000+00:00", NOW),
])
def test_parse_timestamp_when_iso_variants_then_same_instant(text, expected):
    assert parse_timestamp(text).timestamp() == expected


@pytest.mark.parametrize("text", [None, "", "garbage", "2026-13-45", 1767600000, "9" * 100])
def test_parse_timestamp_when_not_iso_then_none(text):
    assert parse_timestamp(text) is None


@pytest.mark.parametrize("seconds, text", [
    (0, "0s"), (42.7, "42s"), (60, "1m"), (250, "4m 10s"), (720, "12m"), (3600, "1h"),
    (7500, "2h 05m"), (90_000, "1d 01h"), (-5, "0s"), (math.nan, "0s"), (math.inf, "0s"), (None, "0s"),
])
def test_format_age_when_any_input_then_short_text(seconds, text):
    assert format_age(seconds) == text


def test_list_instances_when_folder_holds_subfolders_then_one_per_executor_sorted(tmp_path):
    fx.write_state(tmp_path / "executor-b", fx.healthy(NOW))
    fx.write_state(tmp_path / "executor-a", fx.healthy(NOW))
    (tmp_path / "images").mkdir()
    (tmp_path / ".hidden").mkdir()
    fx.write_state(tmp_path / ".hidden", fx.healthy(NOW))
    names = [i.name for i in list_executor_instances(tmp_path)]
    assert names == ["executor-a", "executor-b"]


def test_list_instances_when_folder_is_one_executor_then_itself(tmp_path):
    fx.write_state(tmp_path / "state", fx.healthy(NOW))
    [instance] = list_executor_instances(tmp_path / "state")
    assert instance.name == "state" and instance.state_dir == os.fspath(tmp_path / "state")


def test_list_instances_when_folder_missing_then_one_instance_reported_missing(tmp_path):
    [instance] = list_executor_instances(tmp_path / "absent")
    assert load_runtime_diagnostics_state(instance.state_dir)["status"] == "missing"


def test_state_v7_imports_no_opentelemetry():
    code = "import sys, execution.state_v7; print(any(m.startswith(('opentelemetry', 'otel_diag')) for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- property: random structures never raise, durations never negative or NaN ---------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.integers(min_value=10**308, max_value=10**330) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)


def _mutations():
    """A healthy document with random values planted at random known paths."""
    paths = [("written_at",), ("schema_version",), ("service",), ("service", "publish_interval_seconds"),
             ("runtime_diagnostics",)]
    for section, keys in SPEC_KEYS.items():
        paths.append(("runtime_diagnostics", section))
        paths.extend(("runtime_diagnostics", section, k) for k in sorted(keys | EXTRA_KEYS[section]))
    return st.lists(st.tuples(st.sampled_from(paths), json_values), max_size=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=json_values)
def test_parse_when_random_json_then_never_raises(data):
    assert_well_formed(parse_runtime_diagnostics(data, now=NOW))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations=_mutations(), now=st.floats(allow_nan=True, allow_infinity=True) | st.none())
def test_parse_when_known_fields_get_random_values_then_well_formed(mutations, now):
    doc = fx.healthy(NOW)
    for path, value in mutations:
        target = doc
        for key in path[:-1]:
            target = target.get(key) if isinstance(target, dict) else None
        if isinstance(target, dict):
            target[path[-1]] = value
    assert_well_formed(parse_runtime_diagnostics(doc, now=now))


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_load_when_random_file_bytes_then_never_raises(tmp_path_factory, text):
    folder = tmp_path_factory.mktemp("random")
    fx.write_raw(folder, text)
    assert_well_formed(load_runtime_diagnostics_state(folder, now=NOW))
