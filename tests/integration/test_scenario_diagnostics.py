"""End to end per scenario: the engine faults, the diagnostics find it on their own, within the bound.

``python -m execution --scenario X`` runs in a subprocess and the test reads ``D/diagnostics.json``
as the panel and the probe would; detection latency (simulated seconds from the fault to the
first published flag) is measured in-process through the publish hook and printed.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from execution.config import load_config
from execution.executor_live import RunHooks, RunOptions, run

CYCLES = 300
FAULT_AT = 100
CFG = load_config("config/strategy_config.json")
BAR = CFG.market_data.bar_seconds
START = CFG.market_data.start_epoch
INTERVAL = CFG.diagnostics.publish_interval_seconds
LV = CFG.diagnostics.liveness


def _run_cli(tmp_path, scenario: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "execution", "--scenario", scenario, "--cycles", str(CYCLES),
                           "--fault-at", str(FAULT_AT), "--state-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads((tmp_path / "diagnostics.json").read_text())["runtime_diagnostics"]


def test_cli_when_healthy_then_no_flag_no_missing_key_and_several_veto_reasons(tmp_path):
    rd = _run_cli(tmp_path, "healthy")

    lv = rd["liveness"]
    assert not any(v for k, v in lv.items() if k.startswith("idle_"))
    assert not any(lv["missing"].values())
    assert len(rd["veto_counters"]["by_reason"]) >= 4
    if rd["exit_pipeline"]["open_positions_count"]:
        assert rd["exit_pipeline"]["tp_sl_coverage_pct"] == 1.0


def test_run_when_healthy_then_every_publish_after_warm_up_is_clean_and_coverage_full(tmp_path):
    docs = []
    run(RunOptions(cycles=480, state_dir=str(tmp_path)), RunHooks(on_publish=docs.append))

    warm = next(i for i, d in enumerate(docs) if not any(d["runtime_diagnostics"]["liveness"]["missing"].values()))
    assert warm < 30, "every liveness key should have been seen within 30 bars"
    for d in docs[warm:]:
        rd = d["runtime_diagnostics"]
        assert not any(v for k, v in rd["liveness"].items() if k.startswith("idle_")), d["evaluated_at"]
        if rd["exit_pipeline"]["open_positions_count"]:
            assert rd["exit_pipeline"]["tp_sl_coverage_pct"] == 1.0
            assert rd["exit_pipeline"]["ledger_registry_mismatch"] is False


def test_cli_when_router_stall_then_router_and_orders_idle_while_signals_flow(tmp_path):
    lv = _run_cli(tmp_path, "router_stall")["liveness"]

    assert lv["idle_router"] is True and lv["idle_orders"] is True
    assert lv["idle_signals"] is False and lv["missing"]["router"] is False


def test_cli_when_signal_starvation_then_signals_idle(tmp_path):
    lv = _run_cli(tmp_path, "signal_starvation")["liveness"]

    assert lv["idle_signals"] is True and lv["missing"]["signals"] is False


def test_cli_when_tp_sl_gap_then_mismatch_partial_coverage_and_missing_count(tmp_path):
    ep = _run_cli(tmp_path, "tp_sl_gap")["exit_pipeline"]

    assert ep["ledger_registry_mismatch"] is True
    assert ep["tp_sl_coverage_pct"] < 1
    assert ep["tp_sl_missing_count"] >= 1
    assert len(ep["missing_tp_sl_symbols"]) >= 1


def test_cli_when_exit_stall_then_exits_and_exit_scans_idle(tmp_path):
    lv = _run_cli(tmp_path, "exit_stall")["liveness"]

    assert lv["idle_exits"] is True and lv["idle_exit_scans"] is True


def _ts(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


# scenario -> (what must flag, its threshold in seconds)
DETECTION = {
    "router_stall": (lambda rd: rd["liveness"]["idle_router"], LV.max_idle_router_events_seconds),
    "signal_starvation": (lambda rd: rd["liveness"]["idle_signals"], LV.max_idle_signals_seconds),
    "tp_sl_gap": (lambda rd: rd["exit_pipeline"]["ledger_registry_mismatch"], 0.0),
    "exit_stall": (lambda rd: rd["liveness"]["idle_exit_scans"], LV.max_idle_exit_scans_seconds),
}


@pytest.mark.parametrize("scenario", sorted(DETECTION))
def test_detection_latency_when_fault_injected_then_flag_within_threshold_plus_one_publish_interval(tmp_path, scenario):
    flagged, threshold = DETECTION[scenario]
    docs, scans = [], []
    hooks = RunHooks(on_publish=docs.append, on_cycle=lambda r: scans.append(r.exit_scan))
    run(RunOptions(cycles=CYCLES, scenario=scenario, fault_at=FAULT_AT, state_dir=str(tmp_path)), hooks)

    if scenario == "tp_sl_gap":
        # The fault happens when an entry fills and its registration is silently dropped.
        unprotected = [p.opened_at for s in scans if s is not None
                       for p in s.open_positions if p.key not in {e.key for e in s.tp_sl_entries}]
        fault_time = min(unprotected)
    else:
        fault_time = START + (FAULT_AT + 1) * BAR  # the engine clock of the first faulty cycle
    before = [d for d in docs if _ts(d["evaluated_at"]) < fault_time]
    assert before and not flagged(before[-1]["runtime_diagnostics"]), "flag raised before the fault"
    first = next(d for d in docs if _ts(d["evaluated_at"]) >= fault_time and flagged(d["runtime_diagnostics"]))
    latency = _ts(first["evaluated_at"]) - fault_time

    print(f"\n{scenario}: detected {latency:.0f} s after the fault (bound {threshold + INTERVAL:.0f} s)")
    assert 0 <= latency <= threshold + INTERVAL
