"""Benchmark 3: one diagnostics.json publish (collect + derive + liveness + atomic write) as series grow.

Usage::

    rows, notes = run_snapshot(scales=(10, 100, 1_000), reasons=20, repeats=15)

Each scale configures otel_diag (metrics only), records one signal, one order and one veto
per (reason, symbol) for every symbol, router events, exit scans and triggers, and an exit
book with every symbol open (10 % without TP/SL, 5 % underwater), then times
``DiagnosticsPublisher.publish()`` — the engine's own publish path, fsync included — and its
parts: ``Telemetry.snapshot()`` (collect + derive) and ``document()`` (+ liveness and the block).
An event is recorded before every publish, so no collection can be skipped as unchanged.
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
from otel_diag.reader import OTHER, DerivedMetrics, ExitPipelinePoints
from otel_diag.state import EventState, ExitGauges
from tests.benchmarks.bench_engine import SHIPPED_CONFIG
from tests.benchmarks.fixtures import T0, quiet_otel
from tests.benchmarks.harness import Row

BUDGET_MS = 5.0
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


_COUNTS = {sc.METRIC_SIGNALS: (sc.ATTR_SYMBOL,), sc.METRIC_ORDERS: (sc.ATTR_SYMBOL,),
           sc.METRIC_VETOES: (sc.ATTR_VETO_REASON, sc.ATTR_SYMBOL), sc.METRIC_ROUTER_EVENTS: (sc.ATTR_ROUTER_EVENT,)}


def derive_from_state(telemetry: "otel_diag.Telemetry") -> DerivedMetrics:
    """A what-if, not production code: ``derive()``'s result read from the EventState the instruments observe.

    Measured beside the SDK collection to show what the diagnostics block would cost without it;
    the benchmark asserts both give equal ``DerivedMetrics``.
    """
    state = telemetry.state
    maps: Dict[str, Dict] = {m: {} for m in _COUNTS}
    overflow: Dict[str, bool] = {}
    for metric, names in _COUNTS.items():
        out = maps[metric]
        for value, attrs in state.counter_points(metric):
            if attrs.get(sc.ATTR_OVERFLOW):
                overflow[metric] = True
            key = tuple(str(attrs.get(n, OTHER)) for n in names)
            key = key if len(key) > 1 else key[0]
            out[key] = out.get(key, 0) + int(value)
    totals = {}
    for metric in (sc.METRIC_EXIT_SCANS, sc.METRIC_EXIT_TRIGGERS):
        totals[metric] = 0
        for value, attrs in state.counter_points(metric):
            if attrs.get(sc.ATTR_OVERFLOW):
                overflow[metric] = True
            totals[metric] += int(value)
    g = state.exit_gauges
    exit_points = ExitPipelinePoints() if g is None else ExitPipelinePoints(
        True, int(g.open_positions), int(g.tp_sl_registered), int(g.tp_sl_missing), int(g.tp_sl_orphaned),
        int(g.underwater_without_tp_sl), float(g.coverage))
    extras = telemetry.reader.extras() if telemetry.reader.extras is not None else {}
    return DerivedMetrics(True, {e: float(t) for e, t in state.last_event_times().items()},
                          maps[sc.METRIC_SIGNALS], maps[sc.METRIC_ORDERS], maps[sc.METRIC_VETOES],
                          maps[sc.METRIC_ROUTER_EVENTS], totals[sc.METRIC_EXIT_SCANS], totals[sc.METRIC_EXIT_TRIGGERS],
                          exit_points, overflow, dict(extras))


def _write_parts(document: dict, folder: str, repeats: int) -> Dict[str, float]:
    """What the write is made of: JSON (indented, as written, vs compact) and the fsync of the atomic write."""
    def med(fn: Callable[[], object]) -> float:
        times = []
        for _ in range(repeats):
            t = time.perf_counter_ns()
            fn()
            times.append((time.perf_counter_ns() - t) / 1e6)
        return statistics.median(times)

    text = json.dumps(document, indent=2, allow_nan=False) + "\n"
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
        series = populate(telemetry.state, symbols, reasons)
        publisher = DiagnosticsPublisher(folder, cfg, clock=clock)
        assert publisher.publish(), "publishing diagnostics.json failed"  # warm-up, and the file exists
        collect: List[float] = []
        direct: List[float] = []
        document: List[float] = []
        publish: List[float] = []
        signal = telemetry.state.series(sc.METRIC_SIGNALS, {sc.ATTR_SYMBOL: "SYM0000USDT"})
        for _ in range(repeats):
            telemetry.state.hit(signal, sc.EVENT_SIGNAL)  # something happened since the last publish
            t0 = time.perf_counter_ns()
            derived = telemetry.snapshot()
            t1 = time.perf_counter_ns()
            same = derive_from_state(telemetry) == derived
            direct.append((time.perf_counter_ns() - t1) / 1e6)
            assert same, "the state-read what-if disagrees with the collected points"
            t1 = time.perf_counter_ns()
            publisher.document()
            t2 = time.perf_counter_ns()
            assert publisher.publish()
            t3 = time.perf_counter_ns()
            collect.append((t1 - t0) / 1e6)
            document.append((t2 - t1) / 1e6)
            publish.append((t3 - t2) / 1e6)
        parts = _write_parts(publisher.last_document, folder, repeats)
        doc = publisher.last_document["runtime_diagnostics"]
        assert doc["veto_counters"]["total_signals"] == symbols + repeats, "the published counts are not the recorded ones"
        size = os.path.getsize(publisher.path)
        return {"series": series, "collect": statistics.median(collect), "document": statistics.median(document),
                "direct": statistics.median(direct), **parts,
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
                        "publish(): collect + derive + liveness + block + JSON + atomic write (fsync)",
                        r["publish"], "ms", budget=BUDGET_MS if budgeted else None,
                        budget_text="≤ 5 ms" if budgeted else "", checked=checked,
                        note=f"collect + derive {r['collect']:.2f} ms, document (collect + liveness + block) "
                             f"{r['document']:.2f} ms, write {r['publish'] - r['document']:.2f} ms "
                             f"({r['kib']:.0f} KiB: JSON indent=2 {r['json_indent']:.2f} ms vs. compact "
                             f"{r['json_compact']:.2f} ms; fsync {r['write_fsync'] - r['write_plain']:+.2f} ms); "
                             f"{r['publish'] * 1000 / r['series']:.2f} µs per series. "
                             f"What-if: the same DerivedMetrics read from EventState (no SDK collection) "
                             f"{r['direct']:.2f} ms, equal: yes", key=f"snapshot/{n}", data=r))
    notes = []
    if len(results) > 1:
        small, large = min(results), max(results)
        per = {n: results[n]["publish"] / results[n]["series"] for n in (small, large)}
        ref = BUDGET_SYMBOLS if BUDGET_SYMBOLS in results and BUDGET_SYMBOLS < large else small
        growth = (results[large]["publish"] / results[large]["series"]) / (results[ref]["publish"] / results[ref]["series"])
        rows.append(Row(f"3 snapshot ({reasons} veto reasons)", f"growth {ref:,} → {large:,} symbols",
                        "cost per series at the largest scale / at the budgeted one", growth, "x",
                        budget=LINEAR_SLACK, budget_text="≤ 1.5× (linear in series)", checked=checked,
                        key="snapshot/growth",
                        note=f"series ×{results[large]['series'] / results[ref]['series']:.1f}, "
                             f"time ×{results[large]['publish'] / results[ref]['publish']:.1f}"))
        notes.append(f"Snapshot: a metric keeps at most 2,000 series (otel_diag's cap, and the SDK's default "
                     f"cardinality limit); beyond, one `otel.metric.overflow` series. Cost per series "
                     f"{per[small] * 1000:.2f} µs at {small:,} symbols (fixed costs weigh more there), "
                     f"{per[large] * 1000:.2f} µs at {large:,}.")
    return rows, notes
