"""Every benchmark once, with tiny counts: the measured structure is sane. No timing is asserted here —
the budgets are ``make bench``'s (``python -m tests.benchmarks.run``)."""
from __future__ import annotations

import math
import os

import pytest

from execution import diagnostics_document as dd
from tests.benchmarks import run as bench_run
from tests.benchmarks.harness import Report, Row, paired_overheads, percentile, ratio


@pytest.fixture(autouse=True)
def _no_otel_environment(monkeypatch):
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        monkeypatch.delenv(name)


def _sane(rows):
    assert rows, "no rows"
    for r in rows:
        assert not math.isnan(r.value), r  # a ratio over a non-positive baseline is infinite (a miss), never nan
        assert r.budget is None or r.checked is False, f"a smoke run must not judge timings: {r.name}"
        assert r.passed, r
        if r.budget is not None:  # a budget row shows what it compares
            assert r.baseline is not None and r.figure is not None and r.figure_unit, f"{r.name}: no baseline/figure"
            assert math.isfinite(r.baseline) and math.isfinite(r.figure), r
        assert "before" not in r.name and "/before" not in r.key, r


def test_calls_when_run_once_then_metrics_only_has_a_ratio_to_prometheus_and_the_rest_no_budget():
    from tests.benchmarks.bench_calls import BUDGETED, RATIO_BUDGET, run_calls
    from tests.benchmarks.fixtures import CALLS

    rows = bench_run._runner("calls")(checked=False, **bench_run.QUICK["calls"])

    _sane(rows)
    budgeted = [r for r in rows if r.budget is not None]
    assert [r.key for r in budgeted] == [f"calls/metrics only/{name}" for name in BUDGETED]
    assert all(r.unit == "x" and r.budget == RATIO_BUDGET and "prometheus_client" in r.measure for r in budgeted)
    assert all(r.data["wrapt_ratio"] > 0 and "wrapt.FunctionWrapper" in r.note for r in budgeted)
    for variant in ("sampler off", "recording span"):
        informational = [r for r in rows if r.key.startswith(f"calls/{variant}/")]
        assert len(informational) == len(CALLS) and all(r.budget is None and r.unit == "ns" for r in informational)
        assert all(r.baseline is not None and r.figure is not None for r in informational)
    assert all("a bare SDK span" in r.note for r in rows if r.key.startswith("calls/recording span/"))
    # with no span ever made, signal.generate is left unpatched (the signal is counted at risk.check)
    assert [r.name for r in rows if "signal.generate" in r.name and "not patched" in r.name] == [
        "signal.generate (span only; 8 calls a cycle) · metrics only (not patched)",
        "signal.generate (span only; 8 calls a cycle) · sampler off (not patched)"]
    assert {r.key for r in rows} >= {"calls/patch floor", "calls/patch floor/plain"}
    assert run_calls  # the module's public entry point


def test_engine_when_run_once_then_all_variants_ran_with_identical_journals():
    rows, notes = bench_run._runner("engine")(checked=False, **bench_run.QUICK["engine"])

    _sane(rows)
    assert [r.key for r in rows] == ["engine/baseline", "engine/patch floor", "engine/metrics only",
                                     "engine/full tracing", "engine/bare spans", "engine/publishing",
                                     "engine/publishing hook"]
    assert [r.budget for r in rows] == [None, None, 1.10, 1.5, None, 1.30, None]
    # every figure a number (full tracing's baseline, what bare spans add, may be noise: its ratio may be infinite)
    assert all(math.isfinite(r.value) for r in rows if r.key != "engine/full tracing")
    full = rows[3]
    assert full.baseline is not None and full.figure is not None and full.data["spans_per_cycle"] > 0
    assert "file writes" in rows[5].note and "handed to the hook" in rows[6].note
    assert "byte-identical across all 7 variants: True" in notes[0] and notes[1].startswith("Publishing")


def test_snapshot_when_run_on_two_scales_then_the_budgeted_scale_is_a_ratio_to_the_sdk_and_growth_is_reported():
    from tests.benchmarks.bench_snapshot import BUDGET_SYMBOLS, RATIO_BUDGET

    rows, notes = bench_run._runner("snapshot")(checked=False, **bench_run.QUICK["snapshot"])

    _sane(rows)
    scales = [r for r in rows if "counter series" in r.name]
    series = [int(r.name.split(": ")[1].split()[0].replace(",", "")) for r in scales]
    assert len(scales) == 2 and series[0] < series[1]
    assert all(r.value > 0 and r.unit == "x" and r.baseline > 0 and r.figure > 0 for r in scales)
    assert [r.key for r in rows if r.budget == RATIO_BUDGET] == [f"snapshot/{BUDGET_SYMBOLS}"]
    assert rows[-1].name.startswith("growth") and rows[-1].baseline is not None and notes


def test_memory_when_run_in_a_fresh_interpreter_then_counts_every_event():
    rows = bench_run._runner("memory")(checked=False, **bench_run.QUICK["memory"])

    _sane(rows)
    assert len(rows) == 1 and "RSS" in rows[0].note


def test_alternatives_when_run_once_then_each_approach_recorded_the_veto_as_a_ratio_to_prometheus_bound():
    rows = bench_run._runner("alternatives")(checked=False, **bench_run.QUICK["alternatives"])

    _sane(rows)
    assert [r.key for r in rows] == ["alternatives/naive", "alternatives/prom per call", "alternatives/prom bound",
                                     "alternatives/sdk sync", "alternatives/otel_diag"]
    reference = rows[2].figure
    assert all(r.unit == "x" and r.baseline == reference and r.figure is not None for r in rows)
    assert "patch_function" in rows[4].name


def test_exporters_when_run_once_then_each_broken_collector_has_a_ratio_and_the_journal_is_the_same():
    rows, notes = bench_run._runner("exporters")(checked=False, **bench_run.QUICK["exporters"])

    _sane(rows)
    assert [r.key for r in rows] == ["exporters/local", "exporters/closed", "exporters/silent", "exporters/refusing",
                                     "exporters/hung shutdown", "exporters/threads end closed",
                                     "exporters/threads end refusing", "exporters/requests after shutdown"]
    timed, (after,) = rows[:-1], rows[-1:]
    assert all(r.value > 0 for r in timed)
    assert after.unit == "requests" and after.value >= 0 and after.budget is not None
    assert "the same journal in every run: True" in notes[0]


def test_readers_when_run_once_then_loader_and_status_have_a_ratio_for_each_shape():
    rows, notes = bench_run._runner("readers")(checked=False, **bench_run.QUICK["readers"])

    _sane(rows)
    assert [r.key for r in rows] == [f"readers/{shape}/{variant}" for shape in ("many entries", "long texts")
                                     for variant in ("loader", "status", "status --json")]
    assert all(math.isfinite(r.value) and r.data["block_kib"] < 64 for r in rows)
    # the note states the reader's caps, as the document model defines them
    assert len(notes) == 1 and notes[0].startswith("Readers: ")
    assert all(cap in notes[0] for cap in (f"{dd.MAX_TEXT_CHARS} characters", f"{dd.MAX_LIST_ITEMS} items",
                                           f"{dd.MAX_MAP_ENTRIES:,} entries"))


def test_main_when_quick_then_writes_the_report_with_baseline_figure_and_ratio_and_exits_zero(tmp_path):
    out = tmp_path / "benchmarks.md"

    code = bench_run.main(["--quick", "--only", "alternatives", "--output", str(out)])

    text = out.read_text(encoding="utf-8")
    assert code == 0
    assert "## Machine" in text and "opentelemetry-sdk" in text
    assert "| # | benchmark | variant | measure | baseline | figure | ratio (or value) | budget | result |" in text
    assert "smoke run" in text


def test_main_when_a_ratio_budget_is_missed_then_exits_one_and_names_the_row(tmp_path, monkeypatch, capsys):
    def run(only, quick=False, log=None):
        report = Report(info={"CPU": "test"})
        report.add([Row("g", "within", "ours / theirs", 0.9, "x", baseline=1000.0, figure=900.0, figure_unit="ns",
                        budget=1.0, budget_text="≤ 1.0×"),
                     Row("g", "over budget", "ours / theirs", 1.2, "x", baseline=1000.0, figure=1200.0,
                         figure_unit="ns", budget=1.0, budget_text="≤ 1.0×")])
        return report

    monkeypatch.setattr(bench_run, "run", run)
    out = tmp_path / "benchmarks.md"

    code = bench_run.main(["--only", "calls", "--output", str(out)])

    err = capsys.readouterr().err
    assert code == 1
    assert "1 budget(s) missed" in err and "g | over budget: 1.200×" in err and "within" not in err
    assert "| over budget | ours / theirs | +1.00 µs | +1.20 µs | 1.200× | ≤ 1.0× | **MISSED** |" in \
        out.read_text(encoding="utf-8")


def test_main_when_unknown_benchmark_then_exits_two(capsys):
    assert bench_run.main(["--only", "nope"]) == 2
    assert "unknown benchmark" in capsys.readouterr().err


def test_report_when_a_checked_budget_is_exceeded_then_it_is_missed():
    report = Report(info={"CPU": "test"})
    report.add([Row("g", "met", "m", 0.5, "ns", budget=1.0), Row("g", "missed", "m", 2.0, "ns", budget=1.0),
                Row("g", "smoke", "m", 2.0, "ns", budget=1.0, checked=False), Row("g", "info", "m", 9.0, "ns")])

    assert [r.name for r in report.missed] == ["missed"]
    assert "**MISSED**" in report.markdown("now", 1.0, (None, None))


def test_ratio_when_the_baseline_is_not_positive_then_infinite_so_a_checked_budget_is_missed():
    assert ratio(3.0, 2.0) == 1.5 and ratio(1.0, 0.0) == math.inf and ratio(1.0, -5.0) == math.inf
    assert not Row("g", "r", "m", ratio(1.0, 0.0), "x", baseline=0.0, figure=1.0, figure_unit="ns", budget=1.0).passed


def test_paired_overheads_when_run_then_one_finite_overhead_per_variant_and_a_baseline():
    def bare():
        return None

    def more():
        return sum(range(50))

    overheads, bare_ns = paired_overheads({"bare": bare, "more": more}, "bare", loops=200, rounds=3)

    assert set(overheads) == {"more"} and math.isfinite(overheads["more"]) and bare_ns > 0
    assert percentile([1, 2, 3, 4], 50) == 2.5 and percentile([], 99) == 0.0
