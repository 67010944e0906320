"""execution.scenarios: which fault is active at which bar."""
from __future__ import annotations

import pytest

from execution.scenarios import SCENARIOS, Scenario

PREDICATES = {
    "router_stall": lambda s, i: s.router_stalled(i),
    "signal_starvation": lambda s, i: s.feed_frozen(i),
    "exit_stall": lambda s, i: s.exit_scan_stalled(i),
    "tp_sl_gap": lambda s, i: s.drops_registration(i, 3),
    "symbol_freeze": lambda s, i: s.symbol_frozen(i),
    "symbol_stale_price": lambda s, i: s.symbol_price_stale(i),
}
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")


def test_scenarios_when_listed_then_healthy_first_the_four_faults_then_the_two_per_symbol_ones():
    assert SCENARIOS == ("healthy", "router_stall", "signal_starvation", "tp_sl_gap", "exit_stall",
                         "symbol_freeze", "symbol_stale_price")


def test_per_symbol_when_asked_then_true_for_the_two_faults_that_hit_one_symbol_only():
    assert [name for name in SCENARIOS if Scenario(name).per_symbol] == ["symbol_freeze", "symbol_stale_price"]


def test_fault_symbol_when_not_given_then_the_second_configured_one_or_the_only_one():
    assert Scenario("symbol_freeze").fault_symbol(SYMBOLS) == "ETHUSDT"
    assert Scenario("symbol_freeze").fault_symbol(("BTCUSDT",)) == "BTCUSDT"


def test_fault_symbol_when_given_then_it_if_configured_else_one_line_value_error():
    assert Scenario("symbol_stale_price", symbol="SOLUSDT").fault_symbol(SYMBOLS) == "SOLUSDT"
    with pytest.raises(ValueError, match="^expected a symbol of strategy.symbols, got 'XRP") as raised:
        Scenario("symbol_freeze", symbol="XRP" * 1000).fault_symbol(SYMBOLS)
    assert len(str(raised.value)) < 100


def test_scenario_when_unknown_name_then_value_error_lists_choices():
    with pytest.raises(ValueError, match="unknown scenario 'chaos'.*healthy, router_stall"):
        Scenario("chaos")


def test_scenario_when_default_then_healthy_fault_at_100():
    assert Scenario() == Scenario("healthy", 100)


@pytest.mark.parametrize("name", sorted(PREDICATES))
def test_fault_when_before_fault_bar_then_inactive_and_from_it_on_active(name):
    scenario = Scenario(name, fault_at=10)
    active = PREDICATES[name]

    assert [active(scenario, i) for i in (0, 9, 10, 11, 500)] == [False, False, True, True, True]


@pytest.mark.parametrize("name", SCENARIOS)
def test_fault_when_other_scenario_then_only_its_own_predicate_fires(name):
    scenario = Scenario(name, fault_at=0)

    fired = {other for other, active in PREDICATES.items() if active(scenario, 50)}

    assert fired == ({name} if name != "healthy" else set())


def test_drops_registration_when_tp_sl_gap_then_every_third_registration_lost():
    scenario = Scenario("tp_sl_gap", fault_at=0)

    dropped = [n for n in range(1, 13) if scenario.drops_registration(5, n)]

    assert dropped == [3, 6, 9, 12]


def test_scenario_when_fault_at_zero_then_active_from_first_bar():
    assert Scenario("exit_stall", fault_at=0).exit_scan_stalled(0)
