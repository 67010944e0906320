"""Spec §5.4 — the state publishing contract, and the publisher's file behaviour."""
from __future__ import annotations

import json
import os
import stat

import pytest

import otel_diag
from execution.clock import SimClock
from execution.config import AppConfig, DiagnosticsConfig, LivenessConfig
from execution.diagnostics_metrics import record_router_event
from execution.state_publish import DiagnosticsPublisher, write_runtime_diagnostics_state

START = 1767571200.0  # 2026-01-05T00:00:00Z
SPEC_VETO_KEYS = {"by_reason", "total_signals", "total_orders", "total_vetoes", "last_signal_ts", "last_order_ts", "last_veto_ts"}
SPEC_EXIT_KEYS = {"last_exit_scan_ts", "last_exit_trigger_ts", "last_router_event_ts", "open_positions_count",
                  "tp_sl_registered_count", "tp_sl_missing_count", "underwater_without_tp_sl_count",
                  "tp_sl_coverage_pct", "ledger_registry_mismatch"}
SPEC_LIVENESS_KEYS = {"idle_signals", "idle_orders", "idle_exits", "idle_router", "details", "missing"}


@pytest.fixture
def clock():
    c = SimClock(START)
    otel_diag.configure(clock=c, env={})
    return c


def test_write_when_router_event_simulated_then_block_has_every_spec_key(clock):
    record_router_event()
    state: dict = {}

    write_runtime_diagnostics_state(state, LivenessConfig())

    rd = state["runtime_diagnostics"]
    assert SPEC_VETO_KEYS <= set(rd["veto_counters"])
    assert SPEC_EXIT_KEYS <= set(rd["exit_pipeline"])
    assert SPEC_LIVENESS_KEYS <= set(rd["liveness"])
    assert rd["exit_pipeline"]["last_router_event_ts"] is not None
    assert isinstance(rd["exit_pipeline"]["tp_sl_coverage_pct"], float)
    assert isinstance(rd["exit_pipeline"]["ledger_registry_mismatch"], bool)
    assert isinstance(rd["liveness"]["missing"], dict) and rd["liveness"]["missing"]["signals"] is True
    assert all(isinstance(v, float) and v >= 0 for v in rd["liveness"]["details"].values())


def test_write_when_state_has_other_keys_then_only_runtime_diagnostics_replaced(clock):
    state = {"positions": [1, 2], "runtime_diagnostics": {"stale": True}}

    write_runtime_diagnostics_state(state, LivenessConfig())

    assert state["positions"] == [1, 2]
    assert "stale" not in state["runtime_diagnostics"]


def test_write_when_serialized_then_valid_strict_json(clock):
    state: dict = {}
    write_runtime_diagnostics_state(state, LivenessConfig(max_idle_signals_seconds=1e300))

    text = json.dumps(state, allow_nan=False)  # raises on NaN/inf

    assert json.loads(text) == state


def _publisher(tmp_path, clock, interval=60.0):
    cfg = AppConfig(diagnostics=DiagnosticsConfig(publish_interval_seconds=interval))
    return DiagnosticsPublisher(str(tmp_path), cfg, clock=clock, service={"scenario": "healthy"})


def test_publish_when_interval_of_engine_time_passes_then_one_write_per_interval(tmp_path, clock):
    pub = _publisher(tmp_path, clock, interval=60)

    written = []
    for t in range(0, 300, 10):  # 5 minutes of engine time, a cycle every 10 s
        clock.set(START + t)
        written.append(pub.maybe_publish())

    assert sum(written) == 5 and pub.publishes == 5
    doc = json.loads((tmp_path / "diagnostics.json").read_text())
    assert doc["schema_version"] == 1
    assert doc["evaluated_at"].startswith("2026-01-05T00:04:00")
    assert doc["service"]["state"] == "running" and doc["service"]["scenario"] == "healthy"


def test_publish_when_final_then_service_state_stopped_and_file_mode_0644_or_tighter(tmp_path, clock):
    pub = _publisher(tmp_path, clock)

    assert pub.publish(final=True)

    path = tmp_path / "diagnostics.json"
    assert json.loads(path.read_text())["service"]["state"] == "stopped"
    assert stat.S_IMODE(os.stat(path).st_mode) & 0o133 == 0  # no write for group/other, no execute


def test_publish_when_folder_read_only_then_logged_false_no_temp_files_and_retried_later(tmp_path, clock, caplog):
    if os.geteuid() == 0:  # root ignores directory permissions: simulate the failure at the same seam
        import execution.state_publish as sp

        calls = {"n": 0}
        real = sp.atomic_write_json

        def failing(path, data):
            calls["n"] += 1
            if calls["n"] == 1:
                raise OSError(28, "No space left on device")
            return real(path, data)

        sp_patch = pytest.MonkeyPatch()
        sp_patch.setattr(sp, "atomic_write_json", failing)
    else:
        sp_patch = None
        os.chmod(tmp_path, 0o555)
    try:
        pub = _publisher(tmp_path, clock)
        assert pub.maybe_publish() is False
        assert pub.failures == 1
        assert "trading continues" in caplog.text
        if sp_patch is None:
            os.chmod(tmp_path, 0o755)
        clock.set(START + 60)
        assert pub.maybe_publish() is True
    finally:
        if sp_patch is not None:
            sp_patch.undo()
        os.chmod(tmp_path, 0o755)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["diagnostics.json"]
