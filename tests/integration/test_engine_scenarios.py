"""Replays of the paper engine, one per scenario: each fault really happens in the engine.

No telemetry here (``instrument=False``): the facts come from the engine's own results —
``CycleResult`` / ``ExitScanResult`` via ``RunHooks.on_cycle``, ``RunStats``, the journal and
positions.json — so the diagnostics tests elsewhere can be checked against them.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Dict, List

import pytest

from execution.config import AppConfig
from execution.engine import CycleResult
from execution.executor_live import RunHooks, RunOptions, RunSummary, run

CYCLES = 480
FAULT_AT = 100
BAR = 60
START = AppConfig().market_data.start_epoch
THRESHOLDS = AppConfig().diagnostics.liveness


@dataclass
class Replay:
    summary: RunSummary
    cycles: List[CycleResult]
    journal: List[dict]
    positions: dict

    def before(self) -> List[CycleResult]:
        return [c for c in self.cycles if c.index < FAULT_AT]

    def after(self) -> List[CycleResult]:
        return [c for c in self.cycles if c.index >= FAULT_AT]

    def journal_bar(self, record: dict) -> int:
        """The bar a journal record was written in (the replay clock stands at the bar's close)."""
        return int((datetime.fromisoformat(record["ts"]).timestamp() - START) // BAR) - 1


def _replay(state_dir: str, scenario: str, seed: int = 7, fault_at: int = FAULT_AT) -> Replay:
    cycles: List[CycleResult] = []
    summary = run(RunOptions(state_dir=state_dir, cycles=CYCLES, seed=seed, scenario=scenario, fault_at=fault_at,
                             instrument=False), RunHooks(on_cycle=cycles.append))
    with open(os.path.join(state_dir, "journal.jsonl"), encoding="utf-8") as fh:
        journal = [json.loads(line) for line in fh]
    with open(os.path.join(state_dir, "positions.json"), encoding="utf-8") as fh:
        positions = json.load(fh)
    return Replay(summary, cycles, journal, positions)


@pytest.fixture(scope="module")
def replays(tmp_path_factory) -> Dict[str, Replay]:
    names = ("healthy", "router_stall", "signal_starvation", "tp_sl_gap", "exit_stall")
    return {name: _replay(str(tmp_path_factory.mktemp(name)), name) for name in names}


def _max_gap(indices: List[int]) -> int:
    return max(b - a for a, b in zip(indices, indices[1:]))


def _unprotected(scan) -> set:
    return {p.key for p in scan.open_positions} - {e.key for e in scan.tp_sl_entries}


# -- healthy ----------------------------------------------------------------------------------
def test_healthy_when_replayed_then_vetoes_of_at_least_four_reasons(replays):
    vetoes = replays["healthy"].summary.stats.vetoes

    assert len(vetoes) >= 4, vetoes
    assert all(count > 0 for count in vetoes.values())


def test_healthy_when_replayed_then_a_signal_every_few_bars_within_the_idle_threshold(replays):
    # Arrange
    bars_with_signals = [c.index for c in replays["healthy"].cycles if c.signals]

    # Act
    gap = _max_gap(bars_with_signals)

    # Assert
    assert bars_with_signals[0] <= 10  # after the EMA warm-up
    assert gap * BAR < THRESHOLDS.max_idle_signals_seconds
    assert replays["healthy"].summary.stats.signals >= CYCLES  # more than one a bar on average


def test_healthy_when_replayed_then_orders_and_exits_often_enough_not_to_look_idle(replays):
    healthy = replays["healthy"]
    order_bars = [c.index for c in healthy.cycles if c.orders_routed]
    exit_bars = [c.index for c in healthy.cycles if c.exit_scan.triggers]

    assert _max_gap(order_bars) * BAR < THRESHOLDS.max_idle_orders_seconds
    assert _max_gap(order_bars) * BAR < THRESHOLDS.max_idle_router_events_seconds
    assert _max_gap(exit_bars) * BAR < THRESHOLDS.max_idle_exits_seconds


def test_healthy_when_replayed_then_both_take_profit_and_stop_loss_hits(replays):
    by_reason = replays["healthy"].summary.stats.exit_triggers_by_reason

    assert by_reason["take_profit"] > 0 and by_reason["stop_loss"] > 0


def test_healthy_when_replayed_then_twap_slicing_and_transient_rejects_retried(replays):
    # Arrange
    healthy = replays["healthy"]
    stats = healthy.summary.stats

    # Act
    retried = [r for r in healthy.journal if r["type"] == "reject" and r["retried"]]
    later_slices = [r for r in healthy.journal if r["type"] == "fill" and not r["order_id"].endswith("-0")]

    # Assert
    assert stats.twap_orders > 0 and later_slices
    assert stats.retries > 0 and len(retried) == stats.retries
    assert healthy.summary.fills > stats.orders_routed


def test_healthy_when_replayed_then_every_bar_scanned_and_every_position_protected(replays):
    healthy = replays["healthy"]

    assert all(c.exit_scan is not None for c in healthy.cycles)
    assert all(not _unprotected(c.exit_scan) for c in healthy.cycles)
    assert all(c.orders_stuck == 0 for c in healthy.cycles)
    assert healthy.summary.stats.tp_sl_dropped == 0


def test_healthy_when_replayed_then_entries_and_exits_balance_in_the_journal(replays):
    # Arrange
    healthy = replays["healthy"]
    orders = [r for r in healthy.journal if r["type"] == "order"]

    # Act
    entries = sum(r["purpose"] == "entry" for r in orders)
    exits = sum(r["purpose"] == "exit" for r in orders)

    # Assert: every entry either exited or is still open
    assert entries == exits + len(healthy.positions["positions"])
    assert len(healthy.positions["positions"]) == len(healthy.positions["tp_sl"])


# -- router_stall -------------------------------------------------------------------------------
def test_router_stall_when_fault_starts_then_no_order_routed_after_it(replays):
    stalled = replays["router_stall"]

    assert sum(c.orders_routed for c in stalled.before()) > 0
    assert sum(c.orders_routed for c in stalled.after()) == 0
    assert all(stalled.journal_bar(r) < FAULT_AT for r in stalled.journal)


def test_router_stall_when_fault_starts_then_signals_and_risk_checks_continue(replays):
    after = replays["router_stall"].after()

    assert sum(c.signals for c in after) > 100
    assert sum(len(c.vetoes) for c in after) > 0
    assert sum(c.orders_stuck for c in after) > 0  # approved and exit orders that nobody routed
    assert [c.index for c in after if c.signals][-1] >= CYCLES - 10


def test_router_stall_when_exit_fires_after_fault_then_trigger_not_routed(replays):
    triggers = [t for c in replays["router_stall"].after() for t in c.exit_scan.triggers]

    assert triggers and not any(t.routed for t in triggers)


# -- signal_starvation --------------------------------------------------------------------------
def test_signal_starvation_when_feed_freezes_then_no_signal_after_fault(replays):
    starved = replays["signal_starvation"]

    assert sum(c.signals for c in starved.before()) > 0
    assert [c.index for c in starved.after() if c.signals] == []


def test_signal_starvation_when_feed_freezes_then_exit_scanner_still_runs(replays):
    assert all(c.exit_scan is not None for c in replays["signal_starvation"].after())


def test_signal_starvation_when_feed_freezes_then_marks_stop_moving(replays):
    scans = [c.exit_scan for c in replays["signal_starvation"].after()]
    marks = {tuple(p.mark_price for p in s.open_positions) for s in scans[5:]}

    assert len(marks) == 1


# -- tp_sl_gap ----------------------------------------------------------------------------------
def test_tp_sl_gap_when_fault_starts_then_open_positions_without_tp_sl(replays):
    gap = replays["tp_sl_gap"]

    assert all(not _unprotected(c.exit_scan) for c in gap.before())
    assert any(_unprotected(c.exit_scan) for c in gap.after())
    assert gap.summary.stats.tp_sl_dropped > 0


def test_tp_sl_gap_when_run_ends_then_positions_json_shows_the_mismatch(replays):
    state = replays["tp_sl_gap"].positions

    open_keys = {(p["symbol"], p["side"]) for p in state["positions"]}
    protected = {(e["symbol"], e["side"]) for e in state["tp_sl"]}

    assert open_keys - protected
    assert protected <= open_keys


def test_tp_sl_gap_when_unprotected_position_loses_then_reported_underwater(replays):
    assert any(c.exit_scan.underwater_without_tp_sl for c in replays["tp_sl_gap"].after())


# -- exit_stall ---------------------------------------------------------------------------------
def test_exit_stall_when_fault_starts_then_no_exit_scan_after_it(replays):
    stalled = replays["exit_stall"]

    assert all(c.exit_scan is not None for c in stalled.before())
    assert all(c.exit_scan is None for c in stalled.after())
    assert stalled.summary.stats.exit_scans == FAULT_AT


def _beyond_levels(position: dict, entry: dict) -> bool:
    """Whether a position's mark has reached its take-profit or stop-loss."""
    low, high = sorted((entry["take_profit"], entry["stop_loss"]))
    return not low < position["mark_price"] < high


def test_exit_stall_when_prices_run_through_levels_then_positions_stay_open(replays):
    # Arrange
    stalled = replays["exit_stall"]
    levels = {(e["symbol"], e["side"]): e for e in stalled.positions["tp_sl"]}

    # Act: open positions a running scanner would have closed
    overdue = [p for p in stalled.positions["positions"] if _beyond_levels(p, levels[(p["symbol"], p["side"])])]
    late_exits = [r for r in stalled.journal
                  if r["type"] == "order" and r["purpose"] == "exit" and stalled.journal_bar(r) >= FAULT_AT]

    # Assert
    assert overdue
    assert late_exits == []


# -- fault bar and seeds ------------------------------------------------------------------------
def test_fault_at_when_earlier_then_fault_starts_there(tmp_path):
    replay = _replay(str(tmp_path), "signal_starvation", fault_at=40)

    assert [c.index for c in replay.cycles if c.signals][-1] < 40


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_healthy_when_other_seeds_then_still_several_reasons_and_both_exit_kinds(tmp_path, seed):
    stats = _replay(str(tmp_path), "healthy", seed=seed).summary.stats

    assert len(stats.vetoes) >= 4
    assert stats.exit_triggers_by_reason["take_profit"] > 0 and stats.exit_triggers_by_reason["stop_loss"] > 0
    assert stats.retries > 0 and stats.twap_orders > 0
