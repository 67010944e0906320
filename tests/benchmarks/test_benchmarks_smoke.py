"""Every benchmark once, with tiny counts: the measured structure is sane. No timing is asserted here —
the budgets are ``make bench``'s (``python -m tests.benchmarks.run``)."""
from __future__ import annotations

import math
import os

import pytest

from tests.benchmarks import run as bench_run
from tests.benchmarks.harness import Report, Row, paired_overheads, percentile


@pytest.fixture(autouse=True)
def _no_otel_environment(monkeypatch):
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        monkeypatch.delenv(name)


def _sane(rows):
    assert rows, "no rows"
    for r in rows:
        assert math.isfinite(r.value), r
        assert r.budget is None or r.checked is False, f"a smoke run must not judge timings: {r.name}"
        assert r.passed, r


def test_calls_when_run_once_then_every_target_and_variant_has_a_row_with_before_and_after():
    from tests.benchmarks.bench_calls import BUDGETED, run_calls

    rows = bench_run._runner("calls")(checked=False, **bench_run.QUICK["calls"])

    _sane(rows)
    names = [r.name for r in rows]
    for variant in ("metrics only", "sampler off", "recording span"):
        assert sum(variant in n and "before" in n for n in names) == 5
        assert sum(variant in n and r.budget is not None for n, r in zip(names, rows)) == len(BUDGETED[variant])
    # with no span ever made, signal.generate is left unpatched (the signal is counted at risk.check)
    assert [n for n in names if "signal.generate" in n and "not patched" in n] == [
        "signal.generate (span only; 8 calls a cycle) · metrics only · after (not patched)",
        "signal.generate (span only; 8 calls a cycle) · sampler off · after (not patched)"]
    assert any("patch floor" in n for n in names)
    assert run_calls  # the module's public entry point


def test_engine_when_run_once_then_all_variants_ran_with_identical_journals():
    rows, notes = bench_run._runner("engine")(checked=False, **bench_run.QUICK["engine"])

    _sane(rows)
    assert len(rows) == 6
    assert all(r.value > 0 for r in rows if r.unit in ("x", "ms"))
    assert "byte-identical across all 6 variants: True" in notes[0]


def test_snapshot_when_run_on_two_scales_then_series_grow_and_growth_is_reported():
    rows, notes = bench_run._runner("snapshot")(checked=False, **bench_run.QUICK["snapshot"])

    _sane(rows)
    scales = [r for r in rows if "counter series" in r.name]
    series = [int(r.name.split(": ")[1].split()[0].replace(",", "")) for r in scales]
    assert len(scales) == 2 and series[0] < series[1]
    assert all(r.value > 0 for r in scales)
    assert rows[-1].name.startswith("growth") and notes


def test_memory_when_run_in_a_fresh_interpreter_then_counts_every_event():
    rows = bench_run._runner("memory")(checked=False, **bench_run.QUICK["memory"])

    _sane(rows)
    assert len(rows) == 1 and "RSS" in rows[0].note


def test_alternatives_when_run_once_then_each_approach_recorded_the_veto():
    rows = bench_run._runner("alternatives")(checked=False, **bench_run.QUICK["alternatives"])

    _sane(rows)
    assert len(rows) == 5 and "naive" in rows[0].name and "otel_diag" in rows[-1].name


def test_exporters_when_run_once_then_each_broken_collector_has_a_ratio_and_the_journal_is_the_same():
    rows, notes = bench_run._runner("exporters")(checked=False, **bench_run.QUICK["exporters"])

    _sane(rows)
    assert [r.key for r in rows] == ["exporters/local", "exporters/closed", "exporters/silent", "exporters/refusing",
                                     "exporters/hung shutdown", "exporters/threads end closed",
                                     "exporters/threads end refusing"]
    assert all(r.value > 0 for r in rows)
    assert "the same journal in every run: True" in notes[0]


def test_readers_when_run_once_then_loader_and_status_have_a_ratio_for_each_shape():
    rows, notes = bench_run._runner("readers")(checked=False, **bench_run.QUICK["readers"])

    _sane(rows)
    assert [r.key for r in rows] == [f"readers/{shape}/{variant}" for shape in ("many entries", "long texts")
                                     for variant in ("loader", "status", "status --json")]
    assert all(r.value > 0 and r.data["block_kib"] < 64 for r in rows) and "5 min 22 s" in notes[0]


def test_main_when_quick_then_writes_the_report_and_exits_zero(tmp_path):
    out = tmp_path / "benchmarks.md"

    code = bench_run.main(["--quick", "--only", "alternatives", "--output", str(out)])

    text = out.read_text(encoding="utf-8")
    assert code == 0
    assert "## Machine" in text and "opentelemetry-sdk" in text and "| # | benchmark |" in text
    assert "smoke run" in text


def test_main_when_unknown_benchmark_then_exits_two(capsys):
    assert bench_run.main(["--only", "nope"]) == 2
    assert "unknown benchmark" in capsys.readouterr().err


def test_report_when_a_checked_budget_is_exceeded_then_it_is_missed():
    report = Report(info={"CPU": "test"})
    report.add([Row("g", "met", "m", 0.5, "ns", budget=1.0), Row("g", "missed", "m", 2.0, "ns", budget=1.0),
                Row("g", "smoke", "m", 2.0, "ns", budget=1.0, checked=False), Row("g", "info", "m", 9.0, "ns")])

    assert [r.name for r in report.missed] == ["missed"]
    assert "**MISSED**" in report.markdown("now", 1.0, (None, None))


def test_paired_overheads_when_run_then_one_finite_overhead_per_variant_and_a_baseline():
    def bare():
        return None

    def more():
        return sum(range(50))

    overheads, bare_ns = paired_overheads({"bare": bare, "more": more}, "bare", loops=200, rounds=3)

    assert set(overheads) == {"more"} and math.isfinite(overheads["more"]) and bare_ns > 0
    assert percentile([1, 2, 3, 4], 50) == 2.5 and percentile([], 99) == 0.0
