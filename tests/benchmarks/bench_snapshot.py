"""Benchmark 3: the snapshot behind one diagnostics.json publish, against an SDK collection, as series grow.

Usage::

    rows, notes = run_snapshot(scales=(10, 100, 1_000), reasons=20, repeats=15)

Each scale configures otel_diag (metrics only), records one signal, one order and one veto
per (reason, symbol) for every symbol, router events, exit scans and triggers, and an exit
book with every symbol open (10 % without TP/SL, 5 % underwater). Then, in each repeat:
``Telemetry.snapshot()`` (the instruments' observations, derived), ``document()`` (+ liveness
and the block), ``DiagnosticsPublisher.publish()`` (the engine's own publish path, fsync
included), and what an OpenTelemetry SDK collection of the same instruments costs
(``DiagnosticsMetricReader.collect()``, then ``derive()`` of its points), with a check that
both give an equal ``DerivedMetrics``. The figure of a scale is snapshot / SDK collection
(medians over repeats); the budget, at 100 symbols × 20 reasons, is ≤ 0.25×. The growth row
compares the publish's cost per series at the largest scale with the budgeted one (≤ 1.5×:
linear). An event is recorded before every publish, so nothing can be skipped as unchanged.
The per-metric series cap (2,000, the SDK's default cardinality limit too) folds what is beyond.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
from typing import Callable, Dict, List, Tuple

import otel_diag
from execution.atomic import atomic_write_text
from execution.config import load_config
from execution.state_publish import DiagnosticsPublisher
from otel_diag import semconv as sc
from otel_diag.state import EventState, ExitGauges
from tests.benchmarks.fixtures import T0, quiet_otel
from tests.benchmarks.harness import Row, ratio
from tests.fixtures.config import SHIPPED_CONFIG

RATIO_BUDGET = 0.25  # snapshot / an SDK collect() of the same instruments
BUDGET_SYMBOLS = 100
LINEAR_SLACK = 1.5  # cost per series at the largest scale ≤ 1.5 × at the budgeted one: linear, not worse

METRICS = (sc.METRIC_SIGNALS, sc.METRIC_ORDERS, sc.METRIC_VETOES, sc.METRIC_ROUTER_EVENTS, sc.METRIC_EXIT_SCANS,
           sc.METRIC_EXIT_TRIGGERS)


def populate(state: EventState, symbols: int, reasons: int) -> int:
    """Record events over ``symbols`` × ``reasons``; returns the number of counter series kept."""
    names = [f"SYM{i:04d}USDT" for i in range(symbols)]
    why = [f"reason_{j:02d}" for j in range(reasons)]
    for s in names:
        state.hit(state.series(sc.METRIC_SIGNALS, {sc.ATTR_SYMBOL: s}), sc.EVENT_SIGNAL)
        state.hit(state.series(sc.METRIC_ORDERS, {sc.ATTR_SYMBOL: s}), sc.EVENT_ORDER)
        for r in why:
            state.hit(state.series(sc.METRIC_VETOES, {sc.ATTR_VETO_REASON: r, sc.ATTR_SYMBOL: s}), sc.EVENT_VETO)
    for event in sc.ROUTER_EVENTS:
        state.hit(state.series(sc.METRIC_ROUTER_EVENTS, {sc.ATTR_ROUTER_EVENT: event}), sc.EVENT_ROUTER)
    state.hit(state.series(sc.METRIC_EXIT_SCANS), sc.EVENT_EXIT_SCAN)
    for reason in ("take_profit", "stop_loss"):
        state.hit(state.series(sc.METRIC_EXIT_TRIGGERS, {sc.ATTR_EXIT_REASON: reason}), sc.EVENT_EXIT_TRIGGER)
    missing = tuple((s, "long") for s in names[::10])
    state.set_exit_gauges(ExitGauges(open_positions=symbols, tp_sl_registered=symbols - len(missing),
                                     coverage=(symbols - len(missing)) / symbols, missing=missing,
                                     underwater_unprotected=missing[::2]))
    return sum(len(state.counter_points(m)) for m in METRICS)


def _write_parts(document: dict, folder: str, repeats: int) -> Dict[str, float]:
    """What the write is made of: JSON (compact, as written, vs indent=2) and the fsync of the atomic write."""
    def med(fn: Callable[[], object]) -> float:
        times = []
        for _ in range(repeats):
            t = time.perf_counter_ns()
            fn()
            times.append((time.perf_counter_ns() - t) / 1e6)
        return statistics.median(times)

    text = json.dumps(document, separators=(",", ":"), allow_nan=False) + "\n"
    path = os.path.join(folder, "parts.json")

    def without_fsync() -> None:
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)

    return {"json_indent": med(lambda: json.dumps(document, indent=2, allow_nan=False)),
            "json_compact": med(lambda: json.dumps(document, separators=(",", ":"), allow_nan=False)),
            "write_fsync": med(lambda: atomic_write_text(path, text)), "write_plain": med(without_fsync)}


def _one_scale(symbols: int, reasons: int, repeats: int, cfg) -> Dict[str, float]:
    clock = lambda: T0 + 30.0  # noqa: E731 - the engine clock, fixed: every publish evaluates the same instant
    folder = tempfile.mkdtemp(prefix=f"snapshot-{symbols}-")
    try:
        telemetry = otel_diag.configure(clock=clock, instrument=False, tracing=False, env={})
        assert telemetry.reader.bound is not None, "configure() left the reader collecting through the SDK"
        series = populate(telemetry.state, symbols, reasons)
        publisher = DiagnosticsPublisher(folder, cfg, clock=clock)
        assert publisher.publish(), "publishing diagnostics.json failed"  # warm-up, and the file exists
        snapshot: List[float] = []
        document: List[float] = []
        publish: List[float] = []
        sdk: List[float] = []
        signal = telemetry.state.series(sc.METRIC_SIGNALS, {sc.ATTR_SYMBOL: "SYM0000USDT"})
        for _ in range(repeats):
            telemetry.state.hit(signal, sc.EVENT_SIGNAL)  # something happened since the last publish
            t0 = time.perf_counter_ns()
            derived = telemetry.snapshot()
            t1 = time.perf_counter_ns()
            publisher.document()
            t2 = time.perf_counter_ns()
            assert publisher.publish()
            t3 = time.perf_counter_ns()
            telemetry.reader.collect()  # the SDK's collection of the same instruments, derive() of its points
            t4 = time.perf_counter_ns()
            assert telemetry.reader.latest == derived, "the observations and the SDK's points disagree"
            snapshot.append((t1 - t0) / 1e6)
            document.append((t2 - t1) / 1e6)
            publish.append((t3 - t2) / 1e6)
            sdk.append((t4 - t3) / 1e6)
        parts = _write_parts(publisher.last_document, folder, repeats)
        doc = publisher.last_document["runtime_diagnostics"]
        assert doc["veto_counters"]["total_signals"] == symbols + repeats, "the published counts are not the recorded ones"
        size = os.path.getsize(publisher.path)
        return {"series": series, "snapshot": statistics.median(snapshot), "document": statistics.median(document),
                "sdk_collect": statistics.median(sdk), **parts,
                "publish": statistics.median(publish), "kib": size / 1024}
    finally:
        otel_diag.shutdown()
        shutil.rmtree(folder, ignore_errors=True)


def run_snapshot(scales: Tuple[int, ...] = (10, 100, 1_000), reasons: int = 20, repeats: int = 15,
                 checked: bool = True) -> Tuple[List[Row], List[str]]:
    cfg = load_config(SHIPPED_CONFIG)
    with quiet_otel():
        results = {n: _one_scale(n, reasons, repeats, cfg) for n in scales}
    rows: List[Row] = []
    for n, r in results.items():
        budgeted = n == BUDGET_SYMBOLS
        rows.append(Row(f"3 snapshot ({reasons} veto reasons)", f"{n:,} symbols: {r['series']:,} counter series",
                        "snapshot (observations → DerivedMetrics) / an SDK collect() of the same instruments "
                        "(reader.collect → derive)" + ("" if budgeted else " (information, no budget)"),
                        ratio(r["snapshot"], r["sdk_collect"]), "x", baseline=r["sdk_collect"], figure=r["snapshot"],
                        figure_unit="ms", budget=RATIO_BUDGET if budgeted else None,
                        budget_text=f"≤ {RATIO_BUDGET:.2f}× the SDK's collect()" if budgeted else "",
                        checked=checked,
                        note=f"DerivedMetrics from observations == from the SDK's points: yes. publish() "
                             f"{r['publish']:.2f} ms: document (snapshot + liveness + block) {r['document']:.2f} ms, "
                             f"write {r['publish'] - r['document']:.2f} ms ({r['kib']:.0f} KiB: compact JSON "
                             f"{r['json_compact']:.2f} ms vs. indent=2 {r['json_indent']:.2f} ms; fsync "
                             f"{r['write_fsync'] - r['write_plain']:+.2f} ms); {r['publish'] * 1000 / r['series']:.2f} µs "
                             f"per series",
                        key=f"snapshot/{n}", data=r))
    notes = []
    if len(results) > 1:
        small, large = min(results), max(results)
        per = {n: results[n]["publish"] / results[n]["series"] for n in (small, large)}
        ref = BUDGET_SYMBOLS if BUDGET_SYMBOLS in results and BUDGET_SYMBOLS < large else small
        growth = (results[large]["publish"] / results[large]["series"]) / (results[ref]["publish"] / results[ref]["series"])
        rows.append(Row(f"3 snapshot ({reasons} veto reasons)", f"growth {ref:,} → {large:,} symbols",
                        "publish()'s cost per series at the largest scale / at the budgeted one", growth, "x",
                        baseline=results[ref]["publish"] * 1000 / results[ref]["series"],
                        figure=results[large]["publish"] * 1000 / results[large]["series"], figure_unit="µs/series",
                        budget=LINEAR_SLACK, budget_text="≤ 1.5× (linear in series)", checked=checked,
                        key="snapshot/growth",
                        note=f"series ×{results[large]['series'] / results[ref]['series']:.1f}, "
                             f"time ×{results[large]['publish'] / results[ref]['publish']:.1f}"))
        notes.append(f"Snapshot: a metric keeps at most 2,000 series (otel_diag's cap, and the SDK's default "
                     f"cardinality limit); beyond, one `otel.metric.overflow` series. Cost per series "
                     f"{per[small] * 1000:.2f} µs at {small:,} symbols (fixed costs weigh more there), "
                     f"{per[large] * 1000:.2f} µs at {large:,}.")
    return rows, notes
