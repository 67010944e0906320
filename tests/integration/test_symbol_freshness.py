"""Per-symbol market data, end to end in replay: ``symbol_freeze`` and ``symbol_stale_price`` are caught by the
per-symbol checks alone, within threshold + one publish interval of the faulted symbol's last good update, the
probe says so, and healthy markets never trip them.

Each faulted run is the real executor on the shipped config, writing diagnostics.json at every publish tick
(``replay_min_write_seconds=0``) so the file of any tick is the one the executor wrote. The faulted symbol's last
good update is read from the engine: the bars each cycle processed (``CycleResult.bars``) at the engine clock of
that cycle. The detection latency of each scenario is printed (``pytest -s``).
"""
from __future__ import annotations

import json
import os
from typing import Callable, Dict, List, NamedTuple

import pytest

from execution.config import load_config
from execution.diagnostics_document import (
    DIAGNOSTICS_FILE,
    EXIT_ALERTING,
    EXIT_HEALTHY,
    JOURNAL_FILE,
    LIVENESS_CHECKS,
    SYMBOL_CHECKS,
    SymbolCheck,
    idle_keys,
    parse_iso,
    stale_symbol_text,
    stale_symbols,
)
from execution.executor_live import EXIT_BAD_INPUT
from execution.scenarios import Scenario
from tests.fixtures.cli import one_line, run_module, run_status
from tests.fixtures.config import SHIPPED_CONFIG
from tests.fixtures.replay import Cycle, Published, published_documents

CFG = load_config(SHIPPED_CONFIG)
SYMBOLS = CFG.strategy.symbols
INTERVAL = CFG.diagnostics.publish_interval_seconds
LIVENESS = CFG.diagnostics.liveness
NO_BARS, PRICE_FROZEN = SYMBOL_CHECKS  # in precedence order
CYCLES = 240
FAULT_AT = 100
HEALTHY_CYCLES = 480
HEALTHY_SEEDS = range(1, 11)


def last_bar(cycles: List[Cycle], symbol: str) -> Cycle:
    """The last cycle that processed a bar of ``symbol``."""
    return [c for c in cycles if symbol in c[0].bars][-1]


def last_price_change(cycles: List[Cycle], symbol: str) -> Cycle:
    """The last cycle whose bar of ``symbol`` closed at another price than the bar before it (a first bar is one)."""
    seen = [c for c in cycles if symbol in c[0].bars]
    return [c for before, c in zip([None, *seen], seen)
            if before is None or c[0].bars[symbol].close != before[0].bars[symbol].close][-1]


class Fault(NamedTuple):
    check: SymbolCheck                                 # what the stale symbol must be reported with
    threshold: float                                   # the check's threshold in the shipped config
    last_good: Callable[[List[Cycle], str], Cycle]     # the cycle of the symbol's last good update


FAULTS: Dict[str, Fault] = {
    "symbol_freeze": Fault(NO_BARS, LIVENESS.max_symbol_data_age_seconds, last_bar),
    "symbol_stale_price": Fault(PRICE_FROZEN, LIVENESS.max_symbol_price_frozen_seconds, last_price_change),
}


class ReplayRun(NamedTuple):
    scenario: str
    symbol: str                # the one a per-symbol fault hits (the default: no --fault-symbol)
    published: Published       # the run's ticks, cycles and (if kept) each tick's diagnostics.json

    @property
    def fault(self) -> Fault:
        return FAULTS[self.scenario]

    def first_stale(self) -> int:
        """The index of the first tick that names a stale symbol."""
        first = next((i for i, doc in enumerate(self.published.ticks) if liveness(doc)["stale_symbols"]), None)
        assert first is not None, f"{self.scenario}: no tick named a stale symbol"
        return first


def liveness(doc: dict) -> dict:
    return doc["runtime_diagnostics"]["liveness"]


def engine_time(doc: dict) -> float:
    return parse_iso(doc["evaluated_at"]).timestamp()


def replay(state_dir, scenario: str, cycles: int, seed: int = 7, write_every_tick: bool = False) -> ReplayRun:
    """The executor on the shipped config (:func:`published_documents`), with the symbol its fault hits."""
    done = published_documents(state_dir, SHIPPED_CONFIG, cycles, write_every_tick=write_every_tick, seed=seed,
                               scenario=scenario, fault_at=FAULT_AT)
    symbol = Scenario(scenario, FAULT_AT).fault_symbol(SYMBOLS)
    return ReplayRun(scenario, symbol, done)


@pytest.fixture(scope="module", params=sorted(FAULTS))
def faulted(request, tmp_path_factory) -> ReplayRun:
    return replay(tmp_path_factory.mktemp(request.param), request.param, CYCLES, write_every_tick=True)


# -- 1. detected within threshold + one publish interval, never early ---------------------------------------
def test_first_stale_tick_when_one_symbol_faults_then_it_names_that_symbol_within_threshold_plus_one_interval(
        faulted):
    # Arrange
    fault, symbol, run = faulted.fault, faulted.symbol, faulted.published
    good, good_time = fault.last_good(run.cycles, symbol)
    assert good.index < FAULT_AT <= run.cycles[-1][0].index, "the symbol's good updates stop at the fault"

    # Act
    first = faulted.first_stale()
    detected, before = run.ticks[first], run.ticks[first - 1]
    latency = engine_time(detected) - good_time

    # Assert
    print(f"\n{faulted.scenario}: {symbol} stale ({fault.check.key}) {latency:.0f} s after its last good update "
          f"(threshold {fault.threshold:.0f} s, bound {fault.threshold + INTERVAL:.0f} s)")
    assert first > 0 and liveness(before)["stale_symbols"] == [] and stale_symbols(liveness(before)) == {}
    lv = liveness(detected)
    assert lv["stale_symbols"] == [symbol]
    assert lv["symbol_checks"] == {symbol: fault.check.key}
    assert lv["symbol_thresholds"][fault.check.key] == fault.threshold
    assert lv["symbol_details"][symbol][fault.check.key] == pytest.approx(latency)
    assert fault.threshold < latency <= fault.threshold + INTERVAL


# -- 2. the per-symbol check catches it, not a global idle flag; it stays caught --------------------------
def test_detection_tick_when_one_symbol_faults_then_no_idle_flag_and_only_that_symbol_stale_to_the_end(faulted):
    first = faulted.first_stale()
    ticks = faulted.published.ticks
    detected, later = ticks[first], ticks[first:]

    lv = liveness(detected)
    assert idle_keys(lv) == [], "the other symbols keep signals, orders, exits, the router and exit scans going"
    assert not any(lv[check.idle_flag] for check in LIVENESS_CHECKS)
    assert len(later) > 100, "the run goes on well past the detection"
    for doc in later:
        assert liveness(doc)["stale_symbols"] == [faulted.symbol], doc["evaluated_at"]
        assert stale_symbols(liveness(doc)) == {faulted.symbol: faulted.fault.check.key}, doc["evaluated_at"]


# -- 3. the probe alerts on the file written at the detection tick, and not on the tick before ------------
def test_status_when_detection_tick_file_then_exit_1_naming_the_symbol_and_exit_0_on_the_tick_before(
        faulted, tmp_path):
    first, run = faulted.first_stale(), faulted.published
    written = {}
    for name, index in (("alerting", first), ("healthy", first - 1)):
        assert json.loads(run.files[index]) == run.ticks[index], "the file is the tick's document"
        (tmp_path / name).mkdir()
        (tmp_path / name / DIAGNOSTICS_FILE).write_bytes(run.files[index])
        written[name] = run_status(tmp_path / name)

    alerting, healthy = written["alerting"], written["healthy"]
    lv = liveness(run.ticks[first])
    assert alerting.returncode == EXIT_ALERTING, alerting.stderr
    assert stale_symbol_text(faulted.symbol, faulted.fault.check.key, lv) in one_line(alerting.stderr)
    assert not [s for s in SYMBOLS if s != faulted.symbol and s in alerting.stderr]
    assert healthy.returncode == EXIT_HEALTHY, healthy.stderr
    assert faulted.symbol not in healthy.stderr


# -- 4. no false alarm on healthy markets --------------------------------------------------------------------
@pytest.mark.parametrize("seed", HEALTHY_SEEDS)
def test_healthy_replay_when_seeded_then_no_stale_or_missing_symbol_after_warm_up_and_every_age_0(tmp_path, seed):
    healthy = replay(tmp_path, "healthy", HEALTHY_CYCLES, seed=seed).published

    after_warm_up = healthy.ticks[1:]
    assert len(healthy.cycles) == HEALTHY_CYCLES and after_warm_up
    for doc in after_warm_up:
        lv = liveness(doc)
        assert lv["stale_symbols"] == [] and lv["missing_symbols"] == [] and lv["symbol_checks"] == {}, \
            doc["evaluated_at"]
        assert stale_symbols(lv) == {}, doc["evaluated_at"]
        assert sorted(lv["symbol_details"]) == sorted(SYMBOLS)
        assert {symbol: dict(ages) for symbol, ages in lv["symbol_details"].items()} == \
            {symbol: {check.key: 0.0 for check in SYMBOL_CHECKS} for symbol in SYMBOLS}, doc["evaluated_at"]


# -- 6. --fault-symbol on the command line -------------------------------------------------------------------
def test_cli_when_fault_symbol_given_then_the_final_document_names_only_that_symbol(tmp_path):
    default = Scenario("symbol_freeze").fault_symbol(SYMBOLS)
    chosen = next(symbol for symbol in SYMBOLS if symbol != default)

    done = run_module("execution", "--scenario", "symbol_freeze", "--fault-symbol", chosen, "--fault-at", "20",
                      "--cycles", "60", "--state-dir", tmp_path)

    assert done.returncode == 0, done.stderr
    final = json.loads((tmp_path / DIAGNOSTICS_FILE).read_text(encoding="utf-8"))
    assert final["service"]["scenario"] == "symbol_freeze" and final["service"]["fault_symbol"] == chosen
    lv = liveness(final)
    assert lv["stale_symbols"] == [chosen]
    assert stale_symbols(lv) == {chosen: NO_BARS.key}


def test_cli_when_fault_symbol_not_configured_then_exit_2_one_line_and_state_dir_untouched(tmp_path):
    previous = b'{"kind": "fill", "note": "the last run\'s journal"}\n'
    (tmp_path / JOURNAL_FILE).write_bytes(previous)
    before = {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)}

    done = run_module("execution", "--scenario", "symbol_freeze", "--fault-symbol", "NOPE", "--state-dir", tmp_path)

    assert done.returncode == EXIT_BAD_INPUT
    assert one_line(done.stderr).endswith(
        "executor: --fault-symbol: expected a symbol of strategy.symbols, got 'NOPE'")
    assert {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)} == before
    fresh = tmp_path / "not-yet"
    assert run_module("execution", "--scenario", "symbol_freeze", "--fault-symbol", "NOPE", "--state-dir",
                      fresh).returncode == EXIT_BAD_INPUT
    assert not fresh.exists(), "bad input is refused before the state dir is made"
