"""Spec §5.2 (router activity) and §5.3 (exit coverage and mismatch), through the real exit scanner."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

import otel_diag
from execution.clock import SimClock
from execution.config import LivenessConfig
from execution.diagnostics_metrics import (
    build_runtime_diagnostics_snapshot, compute_liveness_alerts, record_router_event, update_exit_pipeline_status,
)
from execution.exit_scanner import ExitScanner
from execution.models import Bar, Fill, PositionSide, Side, TpSlEntry
from execution.positions import PositionsLedger, TpSlRegistry
from execution.state_publish import write_runtime_diagnostics_state

START = datetime(2026, 1, 5, tzinfo=timezone.utc).timestamp()
CFG = LivenessConfig(max_idle_router_events_seconds=30)


@pytest.fixture
def clock():
    c = SimClock(START)
    otel_diag.configure(clock=c, env={})  # the engine patched, metrics only
    return c


def _open(ledger: PositionsLedger, symbol: str, side: Side, price: float, qty: float = 1.0) -> None:
    ledger.apply_fill(Fill(f"O-{symbol}-{side.value}", f"O-{symbol}", symbol, side, qty, price, 0.0, START, False))


def _bar(symbol: str, close: float, high: float = None, low: float = None) -> Bar:
    return Bar(START, symbol, close, high or close, low or close, close, 1.0)


def _scanner(ledger, registry):
    return ExitScanner(ledger, registry, dispatch=lambda order, price: None, clock=lambda: START)


def test_state_when_router_event_recorded_then_last_router_event_ts_set(clock):
    record_router_event()
    state: dict = {}

    write_runtime_diagnostics_state(state, CFG)

    ts = state["runtime_diagnostics"]["exit_pipeline"]["last_router_event_ts"]
    assert ts is not None and ts.startswith("2026-01-05T00:00:00")
    assert state["runtime_diagnostics"]["veto_counters"]["router_events"] == {"route": 1}


def test_idle_router_when_router_quiet_longer_than_threshold_then_flag_follows_it(clock):
    now = datetime.fromtimestamp(START, timezone.utc)
    assert compute_liveness_alerts(CFG, now=now).idle_router is True          # never seen: missing → idle
    record_router_event()
    assert compute_liveness_alerts(CFG, now=now + timedelta(seconds=29)).idle_router is False
    assert compute_liveness_alerts(CFG, now=now + timedelta(seconds=31)).idle_router is True


def test_scan_when_all_open_positions_have_tp_sl_then_coverage_one_and_no_mismatch(clock):
    ledger, registry = PositionsLedger(), TpSlRegistry()
    for sym in ("BTCUSDT", "ETHUSDT"):
        _open(ledger, sym, Side.BUY, 100.0)
        registry.register(TpSlEntry(sym, PositionSide.LONG, 110.0, 90.0, START))

    _scanner(ledger, registry).scan({s: _bar(s, 100.0) for s in ("BTCUSDT", "ETHUSDT")})

    es = build_runtime_diagnostics_snapshot(CFG).exit_pipeline_status
    assert es.open_positions_count == 2 and es.tp_sl_registered_count == 2
    assert es.tp_sl_coverage_pct == 1.0
    assert es.ledger_registry_mismatch is False and es.tp_sl_missing_count == 0


def test_scan_when_some_positions_lack_tp_sl_then_partial_coverage_mismatch_and_missing_count(clock):
    ledger, registry = PositionsLedger(), TpSlRegistry()
    for sym in ("BTCUSDT", "ETHUSDT", "SOLUSDT"):
        _open(ledger, sym, Side.BUY, 100.0)
    registry.register(TpSlEntry("BTCUSDT", PositionSide.LONG, 110.0, 90.0, START))
    bars = {"BTCUSDT": _bar("BTCUSDT", 100.0), "ETHUSDT": _bar("ETHUSDT", 95.0), "SOLUSDT": _bar("SOLUSDT", 101.0)}
    ledger.mark({s: b.close for s, b in bars.items()})

    _scanner(ledger, registry).scan(bars)

    es = build_runtime_diagnostics_snapshot(CFG).exit_pipeline_status
    assert 0 < es.tp_sl_coverage_pct < 1 and es.tp_sl_coverage_pct == pytest.approx(1 / 3)
    assert es.ledger_registry_mismatch is True
    assert es.tp_sl_missing_count == 2
    assert es.missing_tp_sl_symbols == ["ETHUSDT", "SOLUSDT"]
    assert es.underwater_without_tp_sl_count == 1 and es.underwater_without_tp_sl_symbols == ["ETHUSDT"]


def test_scan_when_hedge_mode_long_and_short_on_one_symbol_then_keyed_by_side(clock):
    ledger, registry = PositionsLedger(), TpSlRegistry()
    _open(ledger, "BTCUSDT", Side.BUY, 100.0)
    _open(ledger, "BTCUSDT", Side.SELL, 100.0)
    registry.register(TpSlEntry("BTCUSDT", PositionSide.LONG, 110.0, 90.0, START))  # the short is unprotected

    _scanner(ledger, registry).scan({"BTCUSDT": _bar("BTCUSDT", 100.0)})

    es = build_runtime_diagnostics_snapshot(CFG).exit_pipeline_status
    assert es.open_positions_count == 2
    assert es.tp_sl_registered_count == 1 and es.tp_sl_missing_count == 1   # symbol sets would say 1/1: wrong
    assert es.ledger_registry_mismatch is True and es.tp_sl_coverage_pct == 0.5


def test_scan_when_registry_has_entry_without_position_then_orphan_counted(clock):
    ledger, registry = PositionsLedger(), TpSlRegistry()
    registry.register(TpSlEntry("XRPUSDT", PositionSide.SHORT, 0.4, 0.6, START))

    _scanner(ledger, registry).scan({})

    es = build_runtime_diagnostics_snapshot(CFG).exit_pipeline_status
    assert es.tp_sl_orphan_count == 1
    assert es.open_positions_count == 0 and es.tp_sl_coverage_pct == 0.0 and es.ledger_registry_mismatch is False


def test_update_when_called_spec_style_with_counts_then_block_reflects_them(clock):
    update_exit_pipeline_status(open_positions_count=4, tp_sl_registered_count=3, tp_sl_missing_count=1,
                                underwater_without_tp_sl_count=1, tp_sl_coverage_pct=0.75, ledger_registry_mismatch=True)

    es = build_runtime_diagnostics_snapshot(CFG).exit_pipeline_status
    assert (es.open_positions_count, es.tp_sl_registered_count, es.tp_sl_missing_count) == (4, 3, 1)
    assert es.underwater_without_tp_sl_count == 1
    assert es.tp_sl_coverage_pct == 0.75 and es.ledger_registry_mismatch is True


def test_update_when_unknown_field_then_type_error(clock):
    with pytest.raises(TypeError, match="open_position"):
        update_exit_pipeline_status(open_position=1)
