"""examples.backtrader: deterministic bracket trading on synthetic bars, its faults, clock and position views."""
from __future__ import annotations

import functools
import json
from collections import Counter
from datetime import datetime
from typing import Callable, List, Optional, Tuple

import backtrader as bt
import pytest

from examples.backtrader.market import synthetic_bars
from examples.backtrader.run import (
    DEFAULT_BARS,
    DEFAULT_START,
    DEFAULT_SYMBOLS,
    BarClock,
    build_cerebro,
    open_positions,
    protected_positions,
    run,
    underwater_positions,
)
from examples.backtrader.strategy import VETOES, BracketStrategy

WARM_UP = 30
FAULT_AT = 100


class CountingStrategy(BracketStrategy):
    """The strategy, counting the bars on which its two decision methods run."""

    def __init__(self) -> None:
        super().__init__()
        self.signal_calls: Counter = Counter()  # bar index -> entry_signal calls
        self.risk_calls: Counter = Counter()    # bar index -> risk_check calls
        self.vetoes: Counter = Counter()        # veto (None: approved) -> count
        self.approvals: Counter = Counter()     # bar index -> approved entries

    def entry_signal(self, data: bt.feed.DataBase) -> Optional[str]:
        self.signal_calls[self.bar_index] += 1
        return super().entry_signal(data)

    def risk_check(self, data: bt.feed.DataBase, side: str) -> Optional[str]:
        self.risk_calls[self.bar_index] += 1
        veto = super().risk_check(data, side)
        self.vetoes[veto] += 1
        self.approvals[self.bar_index] += veto is None
        return veto


def _bar(record: dict) -> int:
    return int((datetime.fromisoformat(record["dt"].replace("Z", "+00:00")).timestamp() - DEFAULT_START) // 60)


def _max_gap(bars: List[int], first: int = WARM_UP) -> int:
    """The longest stretch without an event from bar ``first`` to the last bar."""
    edges = [first] + sorted({b for b in bars if b >= first}) + [DEFAULT_BARS - 1]
    return max(b - a for a, b in zip(edges, edges[1:]))


def _submitted_bars(records: List[dict]) -> List[int]:
    return [_bar(r) for r in records if r["kind"] == "order" and r["status"] == "Submitted"]


def _run_observed(fault: Optional[str], observe: Callable[[bt.brokers.BackBroker, BarClock], object],
                  seed: int = 7) -> Tuple[CountingStrategy, list]:
    """A run of CountingStrategy; ``observe(broker, clock)`` after each bar's work, its results in a list."""
    clock = BarClock(DEFAULT_START)
    seen: list = []
    cerebro = build_cerebro(seed=seed, bars=DEFAULT_BARS, symbols=DEFAULT_SYMBOLS, fault=fault, fault_at=FAULT_AT,
                            start=DEFAULT_START, bar_seconds=60, clock=clock,
                            on_bar=lambda: seen.append(observe(cerebro.broker, clock)), strategy=CountingStrategy)
    return cerebro.run()[0], seen


def _positions(broker: bt.brokers.BackBroker, clock: BarClock) -> tuple:
    return open_positions(broker), protected_positions(broker), underwater_positions(broker)


@functools.lru_cache(maxsize=None)
def _records(seed: int) -> List[dict]:
    """The records of a healthy ``run(seed=seed)``, run once (the tests only read them)."""
    return run(seed=seed)[0]


def _healthy_bar(broker: bt.brokers.BackBroker, clock: BarClock) -> dict:
    """What the healthy-run tests look at after each bar; it only reads, so the run is the same as unobserved."""
    return {"open": open_positions(broker), "protected": protected_positions(broker),
            "unactivated_stop": any(o.exectype == bt.Order.Stop and not o.active() for o in broker.pending),
            "underwater": underwater_positions(broker),  # and, worked out here, the positions losing at the close:
            "losing": sorted((d._name, "long" if p.size > 0 else "short")
                             for d, p in broker.positions.items() if p.size and p.size * (d.close[0] - p.price) < 0),
            "clock": clock()}


@pytest.fixture(scope="module")
def healthy():
    """One healthy seed-7 run of CountingStrategy: the strategy, and what :func:`_healthy_bar` saw after each bar."""
    return _run_observed(None, _healthy_bar)


def test_synthetic_bars_when_same_seed_and_symbol_then_same_bars_and_consistent_ohlc():
    bars = synthetic_bars("ETHUSD", seed=3, bars=50, start=DEFAULT_START, bar_seconds=60)

    assert bars == synthetic_bars("ETHUSD", seed=3, bars=50, start=DEFAULT_START, bar_seconds=60)
    assert bars != synthetic_bars("ETHUSD", seed=4, bars=50, start=DEFAULT_START, bar_seconds=60)
    assert [b[0] for b in bars] == [DEFAULT_START + 60 * i for i in range(50)]
    assert all(low <= min(o, c) <= max(o, c) <= high for _, o, high, low, c, _ in bars)
    assert all(prev[4] == bar[1] for prev, bar in zip(bars, bars[1:]))


def test_synthetic_bars_when_other_symbols_then_different_start_prices():
    firsts = {s: synthetic_bars(s, seed=7, bars=1, start=DEFAULT_START)[0][1] for s in DEFAULT_SYMBOLS}

    assert len(set(firsts.values())) == len(DEFAULT_SYMBOLS)


def test_run_when_same_seed_then_identical_records_and_other_seed_differs():
    records = _records(3)

    assert records == run(seed=3)[0]  # a fresh run of the same seed
    assert json.loads(json.dumps(records)) == records
    assert records != _records(4)
    assert Counter(r["kind"] for r in records).keys() == {"order", "trade"}


@pytest.mark.parametrize("seed", range(5))
def test_run_when_healthy_then_orders_and_bracket_exits_keep_coming(seed):
    records = _records(seed)
    child_fills = [_bar(r) for r in records
                   if r["kind"] == "order" and r["status"] == "Completed" and r["parent_ref"] is not None]

    assert _max_gap(_submitted_bars(records)) <= 15
    assert _max_gap(child_fills) <= 45


def test_run_when_healthy_then_signals_often_and_every_veto_is_known(healthy):
    strategy, _ = healthy
    signal_bars = [b for b in range(WARM_UP, DEFAULT_BARS) if strategy.risk_calls[b]]

    assert _max_gap(signal_bars) <= 5
    assert set(strategy.vetoes) <= {None, *VETOES}
    assert all(strategy.vetoes[v] for v in (None, *VETOES))


def test_run_when_healthy_then_every_open_position_is_protected_after_each_bar(healthy):
    seen = [(bar["open"], bar["protected"], bar["unactivated_stop"]) for bar in healthy[1]]

    assert all(opened == protected for opened, protected, _ in seen)
    assert sum(bool(opened) for opened, _, _ in seen) > DEFAULT_BARS // 2
    # Bars right after a parent's fill: its stop waits in pending, not yet active, and already protects.
    assert any(opened and unactivated for opened, _, unactivated in seen)


def test_run_when_naked_entry_then_unprotected_positions_from_fault_at():
    strategy, seen = _run_observed("naked_entry", _positions)
    unprotected = [i for i, (opened, protected, _) in enumerate(seen) if set(opened) - set(protected)]
    orders_after = [r for r in strategy.records if r["kind"] == "order" and _bar(r) > FAULT_AT]

    assert unprotected and min(unprotected) > FAULT_AT
    assert seen[-1][0] and not seen[-1][1]  # open to the end, without protection
    assert orders_after and all(r["exectype"] == "Market" and r["parent_ref"] is None for r in orders_after)


def test_run_when_order_stall_then_no_submission_after_fault_at_while_decisions_go_on():
    strategy, _ = _run_observed("order_stall", lambda broker, clock: None)
    after = range(FAULT_AT + 1, DEFAULT_BARS)

    # An entry placed on bar fault_at - 1 is notified as Submitted on bar fault_at.
    assert _submitted_bars(strategy.records) and max(_submitted_bars(strategy.records)) <= FAULT_AT
    assert all(strategy.signal_calls[b] == len(DEFAULT_SYMBOLS) for b in after)
    assert _max_gap([b for b in after if strategy.risk_calls[b]], first=after[0]) <= 5
    assert len(strategy.stalled) == sum(strategy.approvals[b] for b in range(FAULT_AT, DEFAULT_BARS)) > 0


def test_underwater_positions_when_open_then_exactly_those_losing_at_the_close(healthy):
    seen = [(bar["open"], bar["underwater"], bar["losing"]) for bar in healthy[1]]

    assert all(underwater == losing and set(underwater) <= set(opened) for opened, underwater, losing in seen)
    assert any(underwater for _, underwater, _ in seen)
    assert any(set(opened) - set(underwater) for opened, underwater, _ in seen)


def test_bar_clock_when_run_then_reads_each_bar_and_start_before_it(healthy):
    clock = BarClock(DEFAULT_START)
    assert clock() == DEFAULT_START  # no feed bound

    strategy, bars = healthy
    seen = [bar["clock"] for bar in bars]

    assert seen == [DEFAULT_START + 60 * i for i in range(DEFAULT_BARS)]  # on_bar: once per bar
    assert len(strategy) == DEFAULT_BARS


def test_bar_clock_when_bound_before_run_then_start_and_bar_seconds_respected():
    clock = BarClock(DEFAULT_START)
    cerebro = build_cerebro(seed=1, bars=5, symbols=("SOLUSD",), fault=None, fault_at=FAULT_AT,
                            start=DEFAULT_START, bar_seconds=300, clock=clock)
    assert clock() == DEFAULT_START  # bound, no bar yet

    cerebro.run()

    assert clock() == DEFAULT_START + 4 * 300


def test_strategy_when_unknown_fault_then_value_error():
    with pytest.raises(ValueError, match="fault"):
        run(bars=5, fault="flaky")
