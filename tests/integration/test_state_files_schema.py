"""Spec §5.5: diagnostics.json matches docs/runtime_diagnostics.schema.json — fixtures and a real run."""
from __future__ import annotations

import glob
import json
import os
import time

import pytest

from execution.state_v7 import load_runtime_diagnostics_state
from tests.fixtures import diagnostics_state as fx
from tests.fixtures.cli import ROOT, run_module
from tests.fixtures.schema import schema_errors

SPEC_KEYS = {
    "veto_counters": ["by_reason", "total_signals", "total_orders", "total_vetoes",
                      "last_signal_ts", "last_order_ts", "last_veto_ts"],
    "exit_pipeline": ["last_exit_scan_ts", "last_exit_trigger_ts", "last_router_event_ts", "open_positions_count",
                      "tp_sl_registered_count", "tp_sl_missing_count", "underwater_without_tp_sl_count",
                      "tp_sl_coverage_pct", "ledger_registry_mismatch"],
    "liveness": ["idle_signals", "idle_orders", "idle_exits", "idle_router", "details", "missing"],
}


def test_schema_when_read_then_requires_every_spec_key(validator):
    props = validator.schema["properties"]["runtime_diagnostics"]
    assert set(props["required"]) == set(SPEC_KEYS)
    for section, keys in SPEC_KEYS.items():
        assert set(props["properties"][section]["required"]) == set(keys), section


@pytest.mark.parametrize("builder", [fx.healthy, fx.idle_with_missing, fx.mismatch, fx.no_positions, fx.stale,
                                     fx.hostile])
def test_fixture_files_when_validated_then_conform(validator, builder):
    assert schema_errors(validator, builder(time.time())) == []


@pytest.mark.parametrize("section, key", [(s, k) for s, keys in SPEC_KEYS.items() for k in keys])
def test_schema_when_a_spec_key_is_dropped_then_rejects(validator, section, key):
    doc = fx.healthy(time.time())
    del doc["runtime_diagnostics"][section][key]
    assert any(key in e for e in schema_errors(validator, doc))


@pytest.mark.parametrize("mutate", [
    lambda d: d.update(schema_version=2),
    lambda d: d.update(written_at="yesterday"),
    lambda d: d["runtime_diagnostics"]["exit_pipeline"].update(tp_sl_coverage_pct=1.5),
    lambda d: d["runtime_diagnostics"]["liveness"]["details"].update(router=-1.0),
    lambda d: d["runtime_diagnostics"]["liveness"]["last_trace_ids"].update(signals="not-hex"),
    lambda d: d["runtime_diagnostics"]["veto_counters"].update(total_vetoes="29"),
    lambda d: d["service"].update(publish_interval_seconds=0),
])
def test_schema_when_values_break_the_contract_then_rejects(validator, mutate):
    doc = fx.healthy(time.time())
    mutate(doc)
    assert schema_errors(validator, doc)


def test_schema_when_extras_are_added_then_still_valid(validator):
    doc = fx.healthy(time.time())
    doc["runtime_diagnostics"]["liveness"]["new_key"] = {"anything": 1}
    doc["future"] = []
    assert schema_errors(validator, doc) == []


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "docs", "examples", "diagnostics*.json"))))
def test_documented_examples_when_validated_then_conform(validator, path):
    with open(path, encoding="utf-8") as fh:
        assert schema_errors(validator, json.load(fh)) == []


def test_real_executor_run_when_validated_then_conforms_and_loads_ok(validator, tmp_path):
    state_dir = tmp_path / "state"
    run = run_module("execution", "--cycles", "120", "--state-dir", state_dir)
    assert run.returncode == 0, run.stderr[-2000:]
    with open(state_dir / "diagnostics.json", encoding="utf-8") as fh:
        doc = json.load(fh)
    assert schema_errors(validator, doc) == []
    block = load_runtime_diagnostics_state(state_dir)
    assert block["status"] == "ok", (block["reason"], block["problems"])
    assert block["runtime_diagnostics"]["veto_counters"]["total_signals"] > 0
