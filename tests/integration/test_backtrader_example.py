"""The backtrader example end to end: otel_diag, given only a table of targets, diagnoses a foreign engine.

``python -m examples.backtrader`` runs a bracket-order strategy on backtrader, instrumented by
``examples/backtrader/targets.py:TARGETS`` and nothing else. This file proves, with real runs (as
subprocesses, and in-process through the publish hook and an in-memory span exporter), that:

- a healthy run writes a schema-valid diagnostics.json that ``otel-diag status`` reads as a run that
  stopped healthy; while it runs, every published document after warm-up is clean, with full TP/SL
  coverage, several veto reasons, routes and fills, exit triggers, and spans for each patched function;
- the two faults are found on their own: ``naked_entry`` as a ledger/registry mismatch naming the
  symbols, within two bars and one publish interval of the fault bar; ``order_stall`` as idle orders and
  an idle router once their thresholds have passed, while signals and exit scans stay live;
- the probe (``otel-diag status``) and the risk panel read the example's documents unchanged and give
  the verdict each scenario deserves;
- instrumentation changes nothing: trades.jsonl and the in-process records are the same with and
  without it;
- bad input (a bad flag value, a state dir another executor holds) is one stderr line and exit 2.
"""
from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from dashboard import risk_panel as rp
from examples.backtrader.__main__ import parse_args
from examples.backtrader.__main__ import run as run_example
from examples.backtrader.run import DEFAULT_START, DEFAULT_SYMBOLS
from examples.backtrader.strategy import VETOES
from execution.atomic import atomic_write_json
from execution.config import AppConfig
from execution.state_dir import StateDir
from execution.state_v7 import load_runtime_diagnostics_state
from tests.fixtures.cli import one_line, run_module, run_status
from tests.fixtures.schema import schema_errors

CFG = AppConfig()  # the example's thresholds when no --config is given
INTERVAL = CFG.diagnostics.publish_interval_seconds
LV = CFG.diagnostics.liveness
BAR = 60  # the example's bars are one minute
FAULT_AT = 100
FAULT_TIME = DEFAULT_START + FAULT_AT * BAR  # bar time of the first bar the fault applies to
SCENARIOS = ("healthy", "naked_entry", "order_stall")
# The runs through the command line (its exit code, stdout, --no-instrument). The faults' final files are the
# in-process runs': the same arguments through the same ``run`` as ``main`` calls, so not run twice.
CLI_RUNS = (("healthy", True), ("healthy", False))
WARM_UP_DOCS = 30
# written_at is the wall time at which the module fixture built the document; a probe reading the file
# then would have found it fresh. The default limit (3 publish intervals = 3 min of wall time) would make
# the verdict depend on how long the tests before this one took on a shared machine, so the probe is
# given an hour: what is under test is the verdict on the figures, not the staleness rule.
PROBE_MAX_AGE = "3600"


# -- helpers ------------------------------------------------------------------------------------------
def example_argv(scenario: str, state_dir, *extra: str) -> list:
    fault = [] if scenario == "healthy" else ["--fault", scenario, "--fault-at", str(FAULT_AT)]
    return ["--state-dir", os.fspath(state_dir), *fault, *extra]


def run_cli(*argv: str) -> subprocess.CompletedProcess:
    return run_module("examples.backtrader", *argv)


def bar_time(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def rd(doc: dict) -> dict:
    return doc["runtime_diagnostics"]


def idle_flags(doc: dict) -> list:
    return sorted(k for k, v in rd(doc)["liveness"].items() if k.startswith("idle_") and v is True)


def warm_up_index(docs: list) -> int:
    """The first document in which every liveness key has been seen."""
    return next(i for i, d in enumerate(docs) if not any(rd(d)["liveness"]["missing"].values()))


def last_running(docs: list) -> dict:
    return [d for d in docs if d["service"]["state"] == "running"][-1]


# -- the runs, each once ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    """(scenario, instrumented) -> (the finished CLI run, its state dir) for CLI_RUNS; two at a time (the machine
    is shared)."""
    base = tmp_path_factory.mktemp("cli")
    jobs = {}
    for scenario, instrumented in CLI_RUNS:
        state = base / f"{scenario}-{'instrumented' if instrumented else 'plain'}"
        jobs[scenario, instrumented] = (state, example_argv(scenario, state,
                                                            *([] if instrumented else ["--no-instrument"])))
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {key: pool.submit(run_cli, *argv) for key, (_, argv) in jobs.items()}
        return {key: (futures[key].result(), jobs[key][0]) for key in jobs}


@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    """scenario -> the instrumented run (published documents, finished spans, outcome, state dir) and a plain
    run's records and state dir."""
    base = tmp_path_factory.mktemp("inproc")
    runs = {}
    for scenario in SCENARIOS:
        docs, exporter = [], InMemorySpanExporter()
        state, plain_state = base / scenario, base / f"{scenario}-plain"
        outcome = run_example(parse_args(example_argv(scenario, state)), on_publish=docs.append,
                              span_processors=[SimpleSpanProcessor(exporter)])
        plain = run_example(parse_args(example_argv(scenario, plain_state, "--no-instrument")))
        runs[scenario] = {"docs": docs, "spans": exporter.get_finished_spans(), "outcome": outcome, "plain": plain,
                          "state": state, "plain_state": plain_state}
    return runs


def finished_state(cli_runs, in_process, scenario: str, instrumented: bool = True):
    """The state dir of a finished run: the CLI's (which exited 0) where the CLI ran, else the in-process run's."""
    if (scenario, instrumented) in cli_runs:
        proc, state = cli_runs[scenario, instrumented]
        assert proc.returncode == 0, proc.stderr[-2000:]
        return state
    return in_process[scenario]["state" if instrumented else "plain_state"]


# -- 1. a healthy CLI run -----------------------------------------------------------------------------
def test_cli_healthy_when_run_then_exit_0_schema_valid_and_status_says_stopped_healthy(
        cli_runs, validator):
    proc, state = cli_runs["healthy", True]
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "fault: none" in proc.stdout
    assert {"diagnostics.json", "positions.json", "trades.jsonl"} <= set(os.listdir(state))
    doc = json.loads((state / "diagnostics.json").read_text())
    assert schema_errors(validator, doc) == []
    assert doc["service"]["state"] == "stopped" and doc["service"]["name"] == "backtrader-example"

    status = run_status(state)
    assert status.returncode == 2, status.stdout + status.stderr
    line = one_line(status.stderr)
    assert line.startswith("otel-diag status: stopped at ") and line.endswith("last verdict healthy"), line
    as_json = run_status(state, "--json")
    block = json.loads(as_json.stdout)
    assert as_json.returncode == 2
    assert block["service"]["state"] == "stopped"
    assert block["health"]["verdict"] == "stopped" and block["health"]["alerts"] == []


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_run_when_any_scenario_then_final_and_running_documents_conform_to_schema(
        cli_runs, in_process, validator, scenario):
    final = json.loads((finished_state(cli_runs, in_process, scenario) / "diagnostics.json").read_text())
    assert schema_errors(validator, final) == []
    assert schema_errors(validator, last_running(in_process[scenario]["docs"])) == []


# -- 2. a healthy run, document by document -------------------------------------------------------------
def test_in_process_healthy_when_warmed_up_then_every_document_clean_and_coverage_full(in_process):
    docs = in_process["healthy"]["docs"]
    warm = warm_up_index(docs)
    assert warm < WARM_UP_DOCS, "every liveness key should have been seen within 30 publishes"
    open_seen = 0
    for doc in docs[warm:]:
        assert idle_flags(doc) == [], doc["evaluated_at"]
        live = rd(doc)["liveness"]  # every feed's close reaches strategy.next, the table's market_data row
        assert live["stale_symbols"] == [] and set(live["symbol_details"]) == set(DEFAULT_SYMBOLS), doc["evaluated_at"]
        ep = rd(doc)["exit_pipeline"]
        if ep["open_positions_count"]:
            open_seen += 1
            assert ep["tp_sl_coverage_pct"] == 1.0, doc["evaluated_at"]
            assert ep["ledger_registry_mismatch"] is False, doc["evaluated_at"]
    assert open_seen > 0, "the healthy run should hold positions at some publishes"


def test_in_process_healthy_when_finished_then_vetoes_routes_fills_and_exit_triggers_counted(in_process):
    run = in_process["healthy"]
    final = rd(run["docs"][-1])
    vetoes = final["veto_counters"]["by_reason"]
    assert len(vetoes) >= 3 and set(vetoes) <= set(VETOES), vetoes
    assert {"route", "fill"} <= set(final["veto_counters"]["router_events"])
    triggers = final["exit_pipeline"]["total_exit_triggers"]
    assert triggers > 0
    # An exit trigger is a bracket child's execution: one per completed stop or take-profit order.
    children_filled = sum(1 for r in run["outcome"]["records"] if r["kind"] == "order" and r["status"] == "Completed"
                          and r["parent_ref"] is not None)
    assert triggers == children_filled


def test_in_process_healthy_when_traced_then_spans_of_each_patched_function_and_exit_reasons(in_process):
    spans = in_process["healthy"]["spans"]
    names = {s.name for s in spans}
    assert {"strategy.entry_signal", "broker.submit", "order.execute", "broker.next", "broker.execute"} <= names
    # every broker.execute span that says it is an exit is one of the exit triggers counted, and no other is
    reasons = Counter(s.attributes.get("trading.exit.reason") for s in spans if s.name == "broker.execute")
    triggers = in_process["healthy"]["docs"][-1]["runtime_diagnostics"]["exit_pipeline"]["total_exit_triggers"]
    assert set(reasons) == {None, "stop_loss", "take_profit"}, reasons
    assert reasons["stop_loss"] + reasons["take_profit"] == triggers > 0


# -- 3. the probe on what it would have read while the run was going --------------------------------------
STATUS_EXPECTED = {
    "healthy": (0, ()),
    "naked_entry": (1, ("ledger/registry mismatch",)),
    "order_stall": (1, ("orders idle", "router idle")),
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_status_cli_when_last_running_document_then_verdict_of_the_scenario(in_process, tmp_path, scenario):
    doc = last_running(in_process[scenario]["docs"])
    folder = tmp_path / scenario
    folder.mkdir()
    atomic_write_json(os.fspath(folder / "diagnostics.json"), doc)

    proc = run_status(folder, "--max-age", PROBE_MAX_AGE)
    code, words = STATUS_EXPECTED[scenario]
    assert proc.returncode == code, proc.stdout + proc.stderr
    if code == 0:
        assert proc.stderr == "" and "HEALTHY" in proc.stdout
    else:
        line = one_line(proc.stderr)
        assert line.startswith("otel-diag status: alerting: ") and "ALERTING" in proc.stdout
        for word in words:
            assert word in line, line
    if scenario == "naked_entry":
        for symbol in rd(doc)["exit_pipeline"]["missing_tp_sl_symbols"]:
            assert symbol in proc.stdout


# -- 4. naked entries ---------------------------------------------------------------------------------
def test_naked_entry_when_run_then_final_document_shows_mismatch_and_unprotected_symbols(in_process):
    ep = rd(json.loads((in_process["naked_entry"]["state"] / "diagnostics.json").read_text()))["exit_pipeline"]
    assert ep["ledger_registry_mismatch"] is True
    assert ep["tp_sl_coverage_pct"] < 1
    assert ep["missing_tp_sl_symbols"] and ep["tp_sl_missing_count"] == len(ep["missing_tp_sl_symbols"])


def test_naked_entry_when_fault_starts_then_mismatch_flagged_within_two_bars_and_one_interval(in_process):
    docs = in_process["naked_entry"]["docs"]
    mismatched = lambda d: rd(d)["exit_pipeline"]["ledger_registry_mismatch"]  # noqa: E731
    before = [d for d in docs if bar_time(d["evaluated_at"]) < FAULT_TIME]
    assert before and not any(mismatched(d) for d in before), "mismatch flagged before the fault"
    first = next(d for d in docs if mismatched(d))
    latency = bar_time(first["evaluated_at"]) - FAULT_TIME
    print(f"\nnaked_entry: mismatch published {latency:.0f} s of bar time after the fault bar")
    assert 0 <= latency <= 2 * BAR + INTERVAL
    assert rd(first)["exit_pipeline"]["missing_tp_sl_symbols"]


# -- 5. stalled orders ---------------------------------------------------------------------------------
def test_order_stall_when_thresholds_pass_then_orders_and_router_idle_while_signals_and_scans_live(in_process):
    run = in_process["order_stall"]
    docs = run["docs"]
    assert run["outcome"]["stalled"] > 0
    warm = warm_up_index(docs)
    assert warm < WARM_UP_DOCS
    live = docs[warm:]
    for doc in live:
        if bar_time(doc["evaluated_at"]) < FAULT_TIME:
            assert idle_flags(doc) == [], doc["evaluated_at"]
    # Each flag is due once its own threshold and one publish interval have passed since the fault
    # (orders: 1200 s; the router, whose last events are the fills of brackets open at the fault: 1800 s).
    due = {"idle_orders": FAULT_TIME + LV.max_idle_orders_seconds + INTERVAL,
           "idle_router": FAULT_TIME + LV.max_idle_router_events_seconds + INTERVAL}
    for flag, since in due.items():
        late = [d for d in live if bar_time(d["evaluated_at"]) >= since]
        assert late, f"the run ends before {flag} is due"
        assert all(rd(d)["liveness"][flag] is True for d in late), flag
    for doc in live:
        liveness = rd(doc)["liveness"]
        assert liveness["idle_signals"] is False and liveness["idle_exit_scans"] is False, doc["evaluated_at"]


# -- 6. instrumentation changes nothing -------------------------------------------------------------------
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_run_when_instrumented_or_not_then_trades_jsonl_byte_identical(cli_runs, in_process, scenario):
    traced = (finished_state(cli_runs, in_process, scenario, True) / "trades.jsonl").read_bytes()
    plain_dir = finished_state(cli_runs, in_process, scenario, False)
    assert traced and traced == (plain_dir / "trades.jsonl").read_bytes()
    assert not (plain_dir / "diagnostics.json").exists()


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_in_process_when_traced_or_not_then_same_records(in_process, scenario):
    run = in_process[scenario]
    assert run["spans"] and run["outcome"]["publishes"] > 0
    assert run["plain"]["publishes"] == 0
    assert run["outcome"]["records"] == run["plain"]["records"]
    assert run["outcome"]["stalled"] == run["plain"]["stalled"]


# -- 7. the risk panel --------------------------------------------------------------------------------------
def health_rows(block) -> dict:
    return {r.label: r for r in rp.exit_health_rows(block)}


def liveness_rows(block) -> dict:
    return {r.key: r for r in rp.liveness_rows(block)}


@pytest.mark.parametrize("scenario", ["healthy", "naked_entry"])
def test_risk_panel_when_final_document_then_stopped_banner_and_last_known_exit_health(cli_runs, in_process,
                                                                                      scenario):
    state = finished_state(cli_runs, in_process, scenario)
    doc = json.loads((state / "diagnostics.json").read_text())
    block = load_runtime_diagnostics_state(state)
    assert block["problems"] == []
    banner = rp.banner(block)
    verdict = "healthy" if scenario == "healthy" else "alerting"
    assert banner is not None and banner.level == "info" and f"last verdict {verdict}" in banner.text
    rows = health_rows(block)
    assert {r.icon for r in rows.values()} == {rp.ICON_UNKNOWN}  # an ended run's figures are never live
    ep = rd(doc)["exit_pipeline"]
    if scenario == "healthy":
        n = ep["open_positions_count"]
        assert n > 0
        assert rows["TP/SL coverage"].value == f"unknown (last known: 100% ({n} of {n} protected))"
        assert rows["Ledger vs TP/SL registry"].value == "unknown (last known: in agreement)"
    else:
        value = rows["Ledger vs TP/SL registry"].value
        assert value.startswith(f"unknown (last known: mismatch: {ep['tp_sl_missing_count']} open without TP/SL: ")
        for symbol in ep["missing_tp_sl_symbols"]:
            assert symbol in value


def panel_block_of_running(in_process, tmp_path, scenario):
    """The last running document as the panel would have loaded it from disk at the moment it was written."""
    doc = last_running(in_process[scenario]["docs"])
    atomic_write_json(os.fspath(tmp_path / "diagnostics.json"), doc)
    block = load_runtime_diagnostics_state(tmp_path, now=bar_time(doc["written_at"]))
    assert block["status"] == "ok", block["reason"]
    return doc, block


def test_risk_panel_when_healthy_running_document_then_green_and_full_coverage(in_process, tmp_path):
    doc, block = panel_block_of_running(in_process, tmp_path, "healthy")
    assert rp.banner(block) is None
    assert {r.icon for r in rp.liveness_rows(block)} == {rp.ICON_OK}
    rows = health_rows(block)
    n = rd(doc)["exit_pipeline"]["open_positions_count"]
    assert n > 0
    assert (rows["TP/SL coverage"].icon, rows["TP/SL coverage"].value) == (rp.ICON_OK, f"100% ({n} of {n} protected)")
    assert (rows["Ledger vs TP/SL registry"].icon, rows["Ledger vs TP/SL registry"].value) == (rp.ICON_OK,
                                                                                               "in agreement")


def test_risk_panel_when_naked_entry_running_document_then_mismatch_red_naming_symbols(in_process, tmp_path):
    doc, block = panel_block_of_running(in_process, tmp_path, "naked_entry")
    rows = health_rows(block)
    symbols = rd(doc)["exit_pipeline"]["missing_tp_sl_symbols"]
    assert symbols
    ledger = rows["Ledger vs TP/SL registry"]
    assert ledger.icon == rp.ICON_BAD
    named = ", ".join(rp.md_escape(s) for s in symbols)
    assert ledger.value == f"mismatch: {len(symbols)} open without TP/SL: {named}"
    assert rows["TP/SL coverage"].icon == rp.ICON_BAD


def test_risk_panel_when_order_stall_running_document_then_orders_and_router_red(in_process, tmp_path):
    _, block = panel_block_of_running(in_process, tmp_path, "order_stall")
    rows = liveness_rows(block)
    for key in ("orders", "router"):
        assert (rows[key].icon, rows[key].state) == (rp.ICON_BAD, "idle"), key
        assert rows[key].text.startswith("idle for "), rows[key].text
    for key in ("signals", "exit_scans"):
        assert (rows[key].icon, rows[key].state) == (rp.ICON_OK, "ok"), key


# -- 8. bad input -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, word", [
    (["--fault", "nosuch"], "--fault"),
    (["--bars", "0"], "--bars"),
    (["--seed", "-1"], "--seed"),
])
def test_cli_when_bad_value_then_exit_2_one_line_and_nothing_written(tmp_path, argv, word):
    state = tmp_path / "state"
    proc = run_cli("--state-dir", os.fspath(state), *argv)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = one_line(proc.stderr)
    assert line.startswith("error: ") and word in line, line
    assert proc.stdout == ""
    assert not (state / "diagnostics.json").exists() and not (state / "trades.jsonl").exists()


def test_cli_when_state_dir_locked_by_another_executor_then_exit_2_naming_it(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    held = StateDir.acquire(os.fspath(state))
    try:
        proc = run_cli("--state-dir", os.fspath(state), "--bars", "30")
    finally:
        held.release()
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = one_line(proc.stderr)
    assert "another executor is running on this state dir" in line and f"pid {os.getpid()}" in line, line
    assert not (state / "diagnostics.json").exists() and not (state / "trades.jsonl").exists()
    again = run_cli("--state-dir", os.fspath(state), "--bars", "30")  # the lock released, the dir is usable
    assert again.returncode == 0, again.stderr[-2000:]
