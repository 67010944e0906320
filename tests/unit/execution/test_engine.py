"""execution.engine: one cycle per bar, faults injected at the engine's own seams."""
from __future__ import annotations

import ast
import json
import os
from typing import List, Sequence

import pytest

import execution
from execution.clock import SimClock
from execution.engine import CycleResult, Executor
from execution.journal import Journal
from execution.models import PositionSide
from execution.scenarios import Scenario
from tests.unit.execution.builders import T0, bar, config, journal_lines

DOWNTREND = [100.0, 99.5, 99.0, 98.5, 98.0, 97.5, 97.0]
CROSS_UP = 99.0          # bar 7: fast EMA crosses above slow -> BUY signal
ENGINE_MODULES = ("config", "engine", "market_data", "signal_generator", "risk_limits", "order_router",
                  "paper_exchange", "positions", "exit_scanner", "journal", "scenarios", "models", "clock", "atomic")


class Harness:
    """One-symbol engine on a replay clock, fed closes bar by bar like the executor does."""

    def __init__(self, tmp_path, scenario: Scenario = Scenario(), **sections) -> None:
        sections.setdefault("strategy", {})
        sections["strategy"] = {"symbols": ["BTCUSDT"], **sections["strategy"]}
        sections["exchange"] = {"transient_reject_probability": 0.0, "slippage_bps": 0.0, "fee_rate": 0.0,
                                **sections.get("exchange", {})}
        sections["risk"] = {"min_notional_usdt": 0.0, **sections.get("risk", {})}  # the toy path is volatile
        self.cfg = config(**sections)
        self.clock = SimClock(T0)
        self.path = tmp_path / "journal.jsonl"
        self.journal = Journal(str(self.path))
        self.engine = Executor(self.cfg, clock=self.clock, seed=7, scenario=scenario, journal=self.journal)
        self.index = 0

    def feed(self, closes: Sequence[float]) -> List[CycleResult]:
        results = []
        for close in closes:
            ts = T0 + 60 * self.index
            self.clock.set(ts + 60)
            results.append(self.engine.run_cycle(self.index, ts, {"BTCUSDT": bar("BTCUSDT", close, ts)}))
            self.index += 1
        return results

    def records(self) -> List[dict]:
        self.journal.flush()
        return journal_lines(self.path)


def test_run_cycle_when_signal_approved_then_entry_routed_and_tp_sl_registered(tmp_path):
    # Arrange
    h = Harness(tmp_path)

    # Act
    results = h.feed(DOWNTREND + [CROSS_UP])

    # Assert
    last = results[-1]
    assert (last.index, last.signals, last.orders_routed, last.vetoes) == (7, 1, 1, ())
    position = h.engine.ledger.get("BTCUSDT", PositionSide.LONG)
    assert position is not None and position.entry_price == CROSS_UP
    entry = h.engine.registry.get("BTCUSDT", PositionSide.LONG)
    assert entry.take_profit == pytest.approx(CROSS_UP * 1.006)
    assert entry.stop_loss == pytest.approx(CROSS_UP * 0.996)
    assert [r["type"] for r in h.records()] == ["order", "fill"]
    assert (h.engine.stats.signals, h.engine.stats.approved, h.engine.stats.tp_sl_registered) == (1, 1, 1)


def test_run_cycle_when_every_bar_then_exit_scan_reports_the_book(tmp_path):
    h = Harness(tmp_path)

    results = h.feed(DOWNTREND + [CROSS_UP, 99.1])

    assert all(r.exit_scan is not None for r in results)
    scan = results[-1].exit_scan
    assert [p.key for p in scan.open_positions] == [("BTCUSDT", "long")]
    assert [e.key for e in scan.tp_sl_entries] == [("BTCUSDT", "long")]
    assert h.engine.stats.exit_scans == len(results)


def test_run_cycle_when_take_profit_reached_then_position_closed_and_entry_removed(tmp_path):
    # Arrange
    h = Harness(tmp_path)
    h.feed(DOWNTREND + [CROSS_UP])

    # Act
    (result,) = h.feed([CROSS_UP * 1.01])

    # Assert
    assert [t.reason for t in result.exit_scan.triggers] == ["take_profit"]
    assert result.orders_routed == 1
    assert len(h.engine.ledger) == 0 and len(h.engine.registry) == 0
    assert h.engine.ledger.realized_pnl > 0
    assert h.engine.stats.exit_triggers_by_reason == {"take_profit": 1}
    exit_order = [r for r in h.records() if r["type"] == "order"][-1]
    assert (exit_order["purpose"], exit_order["reduce_only"], exit_order["side"]) == ("exit", True, "sell")


def test_run_cycle_when_stop_loss_reached_then_stop_loss_exit(tmp_path):
    h = Harness(tmp_path)
    h.feed(DOWNTREND + [CROSS_UP])

    (result,) = h.feed([CROSS_UP * 0.99])

    assert [t.reason for t in result.exit_scan.triggers] == ["stop_loss"]
    assert h.engine.ledger.realized_pnl < 0


def test_run_cycle_when_signal_vetoed_then_reason_in_cycle_result_and_nothing_routed(tmp_path):
    h = Harness(tmp_path, risk={"min_notional_usdt": 1000.0})

    results = h.feed(DOWNTREND + [CROSS_UP])

    assert results[-1].vetoes == ("min_notional",)
    assert results[-1].orders_routed == 0
    assert h.engine.stats.vetoes == {"min_notional": 1}
    assert h.records() == []


def test_run_cycle_when_large_order_then_twap_slices_counted(tmp_path):
    h = Harness(tmp_path, router={"twap_threshold_usdt": 100.0, "twap_slices": 3})

    h.feed(DOWNTREND + [CROSS_UP])

    fills = [r for r in h.records() if r["type"] == "fill"]
    assert [f["order_id"] for f in fills] == ["E000001-0", "E000001-1", "E000001-2"]
    assert h.engine.stats.twap_orders == 1


def test_run_cycle_when_venue_keeps_rejecting_then_retries_counted_and_no_position(tmp_path):
    # Arrange: every attempt is a transient reject; 2 retries per slice; the order is one slice
    h = Harness(tmp_path, exchange={"transient_reject_probability": 1.0}, router={"max_retries": 2})

    # Act
    h.feed(DOWNTREND + [CROSS_UP])

    # Assert
    stats = h.engine.stats
    assert (stats.twap_orders, stats.retries, stats.rejected_slices) == (0, 2, 1)
    assert [(r["type"], r.get("retried")) for r in h.records()] == [
        ("order", None), ("reject", True), ("reject", True), ("reject", False)]
    assert len(h.engine.ledger) == 0 and len(h.engine.registry) == 0 and stats.tp_sl_registered == 0


def test_run_cycle_when_router_stalled_then_order_not_routed_but_signal_and_risk_ran(tmp_path):
    # Arrange
    h = Harness(tmp_path, scenario=Scenario("router_stall", fault_at=5))

    # Act
    results = h.feed(DOWNTREND + [CROSS_UP])

    # Assert
    assert (results[-1].signals, results[-1].orders_routed, results[-1].orders_stuck) == (1, 0, 1)
    assert h.engine.stats.approved == 1 and h.engine.stats.orders_stuck == 1
    assert h.records() == [] and len(h.engine.ledger) == 0


def test_run_cycle_when_feed_frozen_then_prices_stop_moving_and_no_signal(tmp_path):
    # Arrange: a long opened at 99 on bar 7; the feed freezes from bar 8
    h = Harness(tmp_path, scenario=Scenario("signal_starvation", fault_at=len(DOWNTREND) + 1))
    h.feed(DOWNTREND + [CROSS_UP])

    # Act: the real market would cross down, hit the take-profit, then the stop
    results = h.feed([101.0, 96.0, 99.5, 95.0])

    # Assert: the engine only sees the frozen price
    assert [r.signals for r in results] == [0, 0, 0, 0]
    assert all(r.exit_scan is not None and r.exit_scan.triggers == () for r in results)
    assert h.engine.ledger.get("BTCUSDT", PositionSide.LONG).mark_price == CROSS_UP


def test_run_cycle_when_exit_scan_stalled_then_no_scan_and_position_left_past_its_stop(tmp_path):
    # Arrange
    h = Harness(tmp_path, scenario=Scenario("exit_stall", fault_at=len(DOWNTREND) + 1))
    h.feed(DOWNTREND + [CROSS_UP])

    # Act
    results = h.feed([CROSS_UP * 0.97, CROSS_UP * 0.95])

    # Assert
    assert [r.exit_scan for r in results] == [None, None]
    assert h.engine.stats.exit_scans == len(DOWNTREND) + 1
    position = h.engine.ledger.get("BTCUSDT", PositionSide.LONG)
    assert position is not None
    assert position.mark_price < h.engine.registry.get("BTCUSDT", PositionSide.LONG).stop_loss


def test_register_when_tp_sl_gap_then_third_registration_silently_dropped(tmp_path):
    # Arrange: three entries on three symbols in one cycle, the gap active from bar 0
    cfg_symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    h = Harness(tmp_path, scenario=Scenario("tp_sl_gap", fault_at=0), strategy={"symbols": cfg_symbols})
    engine = h.engine

    # Act
    for i, close in enumerate(DOWNTREND + [CROSS_UP]):
        ts = T0 + 60 * i
        h.clock.set(ts + 60)
        result = engine.run_cycle(i, ts, {s: bar(s, close * (k + 1), ts) for k, s in enumerate(cfg_symbols)})

    # Assert
    assert result.orders_routed == 3 and len(engine.ledger) == 3
    assert [e.symbol for e in engine.registry.entries()] == ["BTCUSDT", "ETHUSDT"]
    assert engine.stats.tp_sl_dropped == 1 and engine.stats.tp_sl_registered == 2
    scan = engine.exits.scan({})
    assert {p.key for p in scan.open_positions} - {e.key for e in scan.tp_sl_entries} == {("SOLUSDT", "long")}


def test_run_cycle_when_symbol_has_no_bar_then_skipped(tmp_path):
    h = Harness(tmp_path)

    result = h.engine.run_cycle(0, T0, {})

    assert result.signals == 0 and result.exit_scan is not None


def test_positions_state_when_position_open_then_ledger_and_registry_as_json(tmp_path):
    # Arrange
    h = Harness(tmp_path)
    h.feed(DOWNTREND + [CROSS_UP])

    # Act
    state = json.loads(json.dumps(h.engine.positions_state()))

    # Assert
    assert state["written_at"] == "2026-01-05T00:08:00.000000+00:00"
    (p,) = state["positions"]
    assert (p["symbol"], p["side"], p["entry_price"]) == ("BTCUSDT", "long", CROSS_UP)
    assert set(p) == {"symbol", "side", "quantity", "entry_price", "mark_price", "unrealized_pnl", "opened_at"}
    (e,) = state["tp_sl"]
    assert (e["symbol"], e["side"]) == ("BTCUSDT", "long") and e["stop_loss"] < CROSS_UP < e["take_profit"]
    assert state["realized_pnl"] == 0.0


@pytest.mark.parametrize("module", ENGINE_MODULES)
def test_engine_module_when_parsed_then_imports_no_telemetry(module):
    # Arrange
    path = os.path.join(os.path.dirname(execution.__file__), f"{module}.py")
    with open(path, encoding="utf-8") as fh:
        tree = ast.parse(fh.read())

    # Act
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])

    # Assert
    assert not imported & {"opentelemetry", "otel_diag"}
