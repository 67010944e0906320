"""Spec §7.6, proven: instrumentation changes nothing the engine does, and --no-instrument installs nothing."""
from __future__ import annotations

import subprocess
import sys

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_diag
from execution.executor_live import RunHooks, RunOptions, run
from execution.config import load_config
from execution.scenarios import SCENARIOS, Scenario
from otel_diag.instrumentor import ExecutionInstrumentor
from otel_diag.default_targets import TARGETS
from otel_diag.wrappers import is_patch
from tests.fixtures.config import SHIPPED_CONFIG
from tests.fixtures.env import clean_env

CYCLES = 80
FAULT_AT = 40
FAULTED = Scenario("symbol_freeze").fault_symbol(load_config(SHIPPED_CONFIG).strategy.symbols)  # the runs' one

# what each scenario's fault visibly does within CYCLES bars (so no comparison below is vacuous)
def _after_fault(cycles):
    return [c for c in cycles if c.index >= FAULT_AT]


FAULT_SHOWS = {
    "healthy": lambda st, cycles: st.orders_stuck == 0 and st.tp_sl_dropped == 0 and st.exit_scans == CYCLES,
    "router_stall": lambda st, cycles: sum(c.orders_stuck for c in _after_fault(cycles)) > 0
    and sum(c.orders_routed for c in _after_fault(cycles)) == 0,
    "signal_starvation": lambda st, cycles: st.signals > 0 and sum(c.signals for c in _after_fault(cycles)) == 0,
    "tp_sl_gap": lambda st, cycles: st.tp_sl_dropped > 0,
    "exit_stall": lambda st, cycles: all(c.exit_scan is None for c in _after_fault(cycles)) and st.exit_scans == FAULT_AT,
    "symbol_freeze": lambda st, cycles: all((FAULTED in c.bars) == (c.index < FAULT_AT) for c in cycles),
    "symbol_stale_price": lambda st, cycles: {c.bars[FAULTED].close for c in _after_fault(cycles)}
    == {cycles[FAULT_AT - 1].bars[FAULTED].close} != {cycles[FAULT_AT - 2].bars[FAULTED].close},
}


def replay(state_dir, scenario: str, *, instrument: bool, hooks: RunHooks = None):
    opts = RunOptions(config_path=SHIPPED_CONFIG, state_dir=str(state_dir), cycles=CYCLES,
                      seed=11, scenario=scenario, fault_at=FAULT_AT, instrument=instrument)
    summary = run(opts, hooks or RunHooks(configure_kwargs={"env": {}}))
    files = {name: (state_dir / name).read_bytes() for name in ("journal.jsonl", "positions.json")}
    return summary, files


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_replay_when_instrumented_and_traced_then_journal_is_byte_identical_to_no_instrument(
        tmp_path, scenario):
    exporter = InMemorySpanExporter()
    traced_hooks = RunHooks(span_processors=[SimpleSpanProcessor(exporter)], configure_kwargs={"env": {}})

    cycles = []

    traced, traced_files = replay(tmp_path / "traced", scenario, instrument=True, hooks=traced_hooks)
    plain, plain_files = replay(tmp_path / "plain", scenario, instrument=False,
                                hooks=RunHooks(on_cycle=cycles.append))

    assert FAULT_SHOWS[scenario](plain.stats, cycles), f"{scenario}: the fault did not show within {CYCLES} bars"
    assert len(exporter.get_finished_spans()) > CYCLES, "the instrumented run was traced"
    assert (tmp_path / "traced" / "diagnostics.json").exists() and not (tmp_path / "plain" / "diagnostics.json").exists()
    assert traced_files["journal.jsonl"] == plain_files["journal.jsonl"]
    assert traced_files["positions.json"] == plain_files["positions.json"]
    assert traced.stats == plain.stats
    assert (traced.realized_pnl, traced.fills, traced.rejects) == (plain.realized_pnl, plain.fills, plain.rejects)


def test_replay_when_no_instrument_then_no_wrapper_is_installed_during_the_run(tmp_path):
    seen = []

    def on_cycle(result) -> None:
        wrapped = []
        for target in TARGETS:
            owner = sys.modules[target.module]
            for part in target.name.split(".")[:-1]:
                owner = getattr(owner, part)
            wrapped.append(is_patch(owner.__dict__[target.name.split(".")[-1]]))
        seen.append((ExecutionInstrumentor.patched(), otel_diag.current(), any(wrapped)))

    replay(tmp_path, "healthy", instrument=False, hooks=RunHooks(on_cycle=on_cycle))

    assert len(seen) == CYCLES
    assert set(map(repr, seen)) == {repr(([], None, False))}


NO_INSTRUMENT_PROBE = """
import sys
from execution.executor_live import main
code = main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("opentelemetry", "otel_diag", "wrapt"))
print("LOADED", ",".join(loaded))
sys.exit(code)
"""


def test_executor_when_no_instrument_then_no_telemetry_module_is_even_imported(tmp_path, repo_root):
    proc = subprocess.run(
        [sys.executable, "-c", NO_INSTRUMENT_PROBE, "--no-instrument", "--cycles", "5", "--state-dir", str(tmp_path)],
        cwd=repo_root, capture_output=True, text=True, timeout=60,
        env=clean_env())

    assert proc.returncode == 0, proc.stderr
    loaded = [line for line in proc.stdout.splitlines() if line.startswith("LOADED")]
    assert loaded == ["LOADED "], f"--no-instrument imported telemetry: {loaded}"
    assert (tmp_path / "journal.jsonl").exists() and not (tmp_path / "diagnostics.json").exists()
