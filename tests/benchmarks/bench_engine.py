"""Benchmark 2: a whole replay, instrumented vs ``--no-instrument``, in the same process and run.

Usage::

    rows, notes = run_engine(bars=5_000, repeats=5)

Variants, interleaved repeat by repeat (each on a fresh state dir, the engine's own
``execution.executor_live.run``; per-cycle times from ``RunHooks.on_cycle`` with
``perf_counter_ns``):

- ``no-instrument``: the baseline (``RunOptions(instrument=False)``);
- ``patch floor``: patched like ``metrics only``, but from the second cycle on every wrapper returns
  at its first line (binding detached): what the patches cost before otel_diag does anything;
- ``metrics only``: ``configure(tracing=False)``, no publisher — the trading loop's cost, budget
  ≤ 1.10× the baseline;
- ``full tracing``: every span recorded into a BatchSpanProcessor whose exporter drops them
  (``tests.fixtures.collectors.DropSpans``), no publisher. Its budget compares what it adds to a
  cycle with what the OpenTelemetry SDK itself charges for as many spans: after each repeat, bursts
  of bare spans (``with tracer.start_as_current_span(name): pass``) on a TracerProvider with a
  BatchSpanProcessor over ``DropSpans`` — the set-up the variant uses — are timed in this process;
  the added time per cycle / (spans exported per cycle × the median bare-span cost) ≤ 1.5;
- ``metrics + publishing``: the shipped config (``config/strategy_config.json``), whose publisher
  evaluates every ``publish_interval_seconds`` of *engine* time — every bar in a replay of 60 s
  bars — budget ≤ 1.30× the baseline. ``RunSummary.publishes`` counts the file writes and
  ``RunSummary.evaluations`` (where the engine reports it) the interval evaluations;
- ``metrics + publishing + on_publish hook``: the same with ``RunHooks(on_publish=...)``, so every
  interval's document is built and handed to the hook: information, no budget.

The replay is deterministic, so a cycle does the same work in every repeat: a variant's loop time
is the sum over cycles of each cycle's median across repeats, which a burst of noise in one run
does not move. File writes paced by wall time do not fall on the same cycles in every repeat, so
a publishing run adds its own largest excesses over those medians, one per such write.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
from typing import Dict, List, Optional, Tuple

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import DEFAULT_ON

from execution.executor_live import RunHooks, RunOptions, run
from otel_diag.instrumentor import ExecutionInstrumentor, import_engine, target_functions
from otel_diag.wrappers import ACTIVE
from tests.benchmarks.fixtures import quiet_otel
from tests.benchmarks.harness import Row, percentile, ratio
from tests.fixtures.collectors import DropSpans

SHIPPED_CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "config", "strategy_config.json")
PUBLISHING = "metrics + publishing"
HOOKED = "metrics + publishing + on_publish hook"
VARIANTS = ("no-instrument", "patch floor", "metrics only", "full tracing", PUBLISHING, HOOKED)
RATIO_BUDGET = 1.10
PUBLISHING_BUDGET = 1.30
TRACING_BUDGET = 1.5  # otel_diag's added cost per cycle / the SDK's own cost of as many bare spans
SPAN_BURSTS = 3  # bursts of bare spans timed after each repeat
BARE_SPAN = "bench.bare_span"
EVALUATIONS_FIELDS = ("evaluations", "publish_ticks")  # RunSummary's count of publish intervals evaluated, if any
WRITE_CADENCE_NAMES = ("REPLAY_WRITE_MIN_SECONDS", "REPLAY_MIN_WRITE_SECONDS")  # execution.state_publish, if any


def _configs(folder: str) -> Dict[str, str]:
    """The shipped config, and the same with the publisher off (the loop alone)."""
    with open(SHIPPED_CONFIG, encoding="utf-8") as fh:
        data = json.load(fh)
    data.setdefault("diagnostics", {})["enabled"] = False
    loop = os.path.join(folder, "loop_config.json")
    with open(loop, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    return {"loop": loop, "shipped": os.path.abspath(SHIPPED_CONFIG)}


def _engine_functions() -> Dict[str, object]:
    """What each patch-table target's class holds now (the same objects as before any run, if all is well)."""
    import_engine()
    return target_functions()


def _run_once(variant: str, bars: int, configs: Dict[str, str], folder: str,
              originals: Dict[str, object]) -> Tuple[List[int], dict]:
    """One replay; the perf_counter_ns of every cycle's end, and facts about the run."""
    stamps: List[int] = []
    exporter = DropSpans()
    bound: List[str] = []  # the binding in force during the first cycle
    handed = [0]  # documents handed to the on_publish hook

    def on_cycle(_result: object) -> None:
        if not bound:
            bound.append(type(ACTIVE.binding).__name__)
            if variant == "patch floor":  # cycle intervals start at the first on_cycle: all detached
                ACTIVE.binding = None
        stamps.append(time.perf_counter_ns())

    def on_publish(_doc: dict) -> None:
        handed[0] += 1

    hooks = RunHooks(on_cycle=on_cycle)
    publishing = variant in (PUBLISHING, HOOKED)
    opts = RunOptions(config_path=configs["shipped" if publishing else "loop"],
                      state_dir=tempfile.mkdtemp(prefix=variant.split()[0] + "-", dir=folder), cycles=bars, seed=7)
    if variant == "no-instrument":
        opts.instrument = False
    elif variant == "full tracing":
        hooks.span_processors = [BatchSpanProcessor(exporter)]
        hooks.configure_kwargs = {"env": {}}
    else:
        hooks.configure_kwargs = {"tracing": False, "env": {}}
    if variant == HOOKED:
        hooks.on_publish = on_publish
    summary = run(opts, hooks)
    with open(os.path.join(opts.state_dir, "journal.jsonl"), "rb") as fh:
        journal = fh.read()
    assert ExecutionInstrumentor.patched() == [], "the engine stayed patched after the run"
    assert _engine_functions() == originals, "an engine function is not the original object after the run"
    expected = "NoneType" if variant == "no-instrument" else "Binding"
    assert bound == [expected], f"{variant}: ran with {bound}, expected {expected}"
    shutil.rmtree(opts.state_dir, ignore_errors=True)
    return stamps, {"cycles": summary.cycles, "publishes": summary.publishes,
                    "evaluations": _evaluations(summary), "handed": handed[0],
                    "spans": exporter.exported, "journal": journal}


def _evaluations(summary: object) -> Optional[int]:
    """The publish intervals of engine time the run evaluated, where the engine's ``RunSummary`` reports them."""
    for name in EVALUATIONS_FIELDS:
        value = getattr(summary, name, None)
        if value is not None:
            return int(value)
    return None


class _BareSpans:
    """The OpenTelemetry SDK's own cost of a recorded span, with the full-tracing variant's set-up."""

    def __init__(self, burst: int) -> None:
        self.burst = burst
        self.provider = TracerProvider(resource=Resource.create(), sampler=DEFAULT_ON, shutdown_on_exit=False)
        self.exporter = DropSpans()
        self.provider.add_span_processor(BatchSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("bench.engine")
        self.samples: List[float] = []  # ns per span, one per burst
        self.time_burst()  # warm-up, not kept
        self.samples.clear()

    def time_burst(self) -> None:
        tracer, name = self.tracer, BARE_SPAN
        start = time.perf_counter_ns()
        for _ in range(self.burst):
            with tracer.start_as_current_span(name):
                pass
        self.samples.append((time.perf_counter_ns() - start) / self.burst)
        self.provider.force_flush()

    def close(self) -> None:
        self.provider.shutdown()


def _write_excess(runs: List[List[float]], writes: int) -> float:
    """Per run, the sum of its ``writes`` largest excesses over each cycle's median across runs; the median.

    Nothing when the loop writes on most cycles: the per-cycle medians hold the writes already.
    """
    medians = [statistics.median(c) for c in zip(*runs)]
    if writes <= 0 or writes * 2 > len(medians):
        return 0.0
    per_run = []
    for r in runs:
        excess = sorted((max(0.0, x - m) for x, m in zip(r, medians)), reverse=True)
        per_run.append(sum(excess[:writes]))
    return statistics.median(per_run)


def run_engine(bars: int = 5_000, repeats: int = 5, span_burst: int = 2_000,
               checked: bool = True) -> Tuple[List[Row], List[str]]:
    runs: Dict[str, List[List[float]]] = {v: [] for v in VARIANTS}  # per repeat, the cycle intervals (ms)
    facts: Dict[str, dict] = {}
    folder = tempfile.mkdtemp(prefix="otel-diag-bench-")
    originals = _engine_functions()  # the engine's own functions, taken before any variant runs
    assert ExecutionInstrumentor.patched() == [], "the engine is patched before the benchmark starts"
    bare_spans: Optional[_BareSpans] = None
    try:
        configs = _configs(folder)
        with quiet_otel():
            bare_spans = _BareSpans(max(10, min(span_burst, 16 * bars)))
            for rep in range(repeats):
                order = VARIANTS[rep % len(VARIANTS):] + VARIANTS[:rep % len(VARIANTS)]
                for variant in order:
                    stamps, fact = _run_once(variant, bars, configs, folder, originals)
                    assert fact["cycles"] == bars and len(stamps) == bars, (variant, fact["cycles"], len(stamps))
                    runs[variant].append([(b - a) / 1e6 for a, b in zip(stamps, stamps[1:])])
                    facts[variant] = fact
                for _ in range(SPAN_BURSTS):
                    bare_spans.time_burst()
    finally:
        if bare_spans is not None:
            bare_spans.close()
        shutil.rmtree(folder, ignore_errors=True)
    journals = {v: f.pop("journal") for v, f in facts.items()}
    identical = len(set(journals.values())) == 1
    assert identical, "journal.jsonl differs with instrumentation: telemetry changed trading"
    assert facts[HOOKED]["handed"] > 0, "the on_publish hook was never handed a document"

    wall = {v: sum(statistics.median(c) for c in zip(*r)) for v, r in runs.items()}
    excess = {}
    for v in (PUBLISHING, HOOKED):
        # The writes paced by wall time: not the first (at the first tick, so in every repeat's first cycle and in
        # its median) nor the final one (after the loop).
        excess[v] = _write_excess(runs[v], facts[v]["publishes"] - 2)
        wall[v] += excess[v]
    cycles = {v: [x for run in r for x in run] for v, r in runs.items()}
    base = wall["no-instrument"]
    n = max(1, bars - 1)
    per_cycle_us = {v: wall[v] / n * 1000 for v in VARIANTS}
    p50 = {v: percentile(c, 50) for v, c in cycles.items()}
    p99 = {v: percentile(c, 99) for v, c in cycles.items()}
    group = f"2 engine ({bars:,} bars × 8 symbols)"
    base_us = per_cycle_us["no-instrument"]
    span_ns = statistics.median(bare_spans.samples)
    spans_per_cycle = facts["full tracing"]["spans"] / bars
    sdk_us = spans_per_cycle * span_ns / 1000
    added_us = per_cycle_us["full tracing"] - base_us

    totals = {v: [sum(run) for run in r] for v, r in runs.items()}

    def pct(v: str) -> str:
        per_repeat = [ratio(t, b) for t, b in zip(totals[v], totals["no-instrument"])]
        return (f"cycle p50 {p50[v]:.3f} ms ({p50[v] - p50['no-instrument']:+.3f}), "
                f"p99 {p99[v]:.3f} ms ({p99[v] - p99['no-instrument']:+.3f}) vs. no-instrument; the whole-run ratio "
                f"to the same repeat's no-instrument run, a gauge of this machine's noise: "
                f"{min(per_repeat):.2f}–{max(per_repeat):.2f}×")

    def published(v: str) -> str:
        f = facts[v]
        evaluations = f["evaluations"]
        text = f"{f['publishes']:,} file writes, " + (
            f"{evaluations:,} interval evaluations" if evaluations is not None
            else "interval evaluations not reported by this engine's `RunSummary`")
        if v == HOOKED:
            text += f", {f['handed']:,} documents handed to the hook"
        if excess[v] > 0:
            text += (f"; the writes paced by wall time add {excess[v]:.2f} ms a run (their cycles' excess over the "
                     f"per-cycle medians)")
        return text

    per_cycle = "mean cycle time / no-instrument's"
    rows = [
        Row(group, "no-instrument (baseline)", "mean cycle time of the loop", base_us, "µs",
            baseline=base_us, figure_unit="µs",
            note=f"cycle p50 {p50['no-instrument']:.3f} ms, p99 {p99['no-instrument']:.3f} ms", key="engine/baseline",
            data={f"per_cycle_us/{v}": per_cycle_us[v] for v in VARIANTS}),
        Row(group, "patch floor: patched, wrappers detached", per_cycle + " (information, no budget)",
            ratio(wall["patch floor"], base), "x", baseline=base_us, figure=per_cycle_us["patch floor"],
            figure_unit="µs", key="engine/patch floor",
            note="the cost of the patches alone (the calls the instrumentor patches with tracing off), before any "
                 "otel_diag work; " + pct("patch floor")),
        Row(group, "metrics only (no publisher)", per_cycle, ratio(wall["metrics only"], base), "x",
            baseline=base_us, figure=per_cycle_us["metrics only"], figure_unit="µs",
            budget=RATIO_BUDGET, budget_text=f"≤ {RATIO_BUDGET:.2f}×", checked=checked, key="engine/metrics only",
            note=f"{per_cycle_us['metrics only'] - base_us:+.1f} µs a cycle, of which "
                 f"{per_cycle_us['patch floor'] - base_us:+.1f} µs the patches'; " + pct("metrics only")),
        Row(group, "full tracing (no publisher)",
            "time added per cycle vs. no-instrument / the SDK's own cost of as many bare spans (same run)",
            ratio(added_us, sdk_us), "x", baseline=sdk_us, figure=added_us, figure_unit="µs",
            budget=TRACING_BUDGET, budget_text=f"≤ {TRACING_BUDGET:.1f}× the SDK's spans", checked=checked,
            key="engine/full tracing", data={"span_ns": span_ns, "spans_per_cycle": spans_per_cycle},
            note=f"{spans_per_cycle:.1f} spans a cycle exported × {span_ns / 1000:.2f} µs a bare SDK span "
                 f"(`start_as_current_span`, BatchSpanProcessor over DropSpans; median of {len(bare_spans.samples)} "
                 f"bursts of {bare_spans.burst:,}, timed between the repeats); {ratio(wall['full tracing'], base):.2f}× "
                 f"the loop; " + pct("full tracing")),
        Row(group, "metrics + publishing (shipped config: evaluated every bar of engine time)", per_cycle,
            ratio(wall[PUBLISHING], base), "x", baseline=base_us, figure=per_cycle_us[PUBLISHING], figure_unit="µs",
            budget=PUBLISHING_BUDGET, budget_text=f"≤ {PUBLISHING_BUDGET:.2f}×", checked=checked,
            key="engine/publishing",
            data={"publishes": facts[PUBLISHING]["publishes"],
                  "evaluations": facts[PUBLISHING]["evaluations"] if facts[PUBLISHING]["evaluations"] is not None
                  else -1,
                  "us_over_metrics": per_cycle_us[PUBLISHING] - per_cycle_us["metrics only"]},
            note=published(PUBLISHING) + f"; {per_cycle_us[PUBLISHING] - per_cycle_us['metrics only']:+.1f} µs a "
                 f"cycle over metrics only; " + pct(PUBLISHING)),
        Row(group, "metrics + publishing + on_publish hook (every interval's document built and handed over)",
            per_cycle + " (information, no budget)", ratio(wall[HOOKED], base), "x", baseline=base_us,
            figure=per_cycle_us[HOOKED], figure_unit="µs", key="engine/publishing hook",
            data={"us_over_metrics": per_cycle_us[HOOKED] - per_cycle_us["metrics only"]},
            note=published(HOOKED) + f"; {per_cycle_us[HOOKED] - per_cycle_us['metrics only']:+.1f} µs a cycle over "
                 f"metrics only; " + pct(HOOKED)),
    ]
    notes = [
        f"Engine: journal.jsonl byte-identical across all {len(VARIANTS)} variants: {identical}. "
        f"{repeats} interleaved repeats of each variant; the loop time is the sum over cycles of each cycle's "
        f"median across repeats (cycle = interval between `on_cycle` calls; start-up, configure and shutdown "
        f"excluded), plus, for a publishing run, its largest excesses over those medians, one per file write paced "
        f"by wall time (such writes do not fall on the same cycle in every repeat); p50/p99 pool every "
        f"cycle of every repeat, noise included.",
        _publishing_note(),
    ]
    if wall["patch floor"] > wall["metrics only"]:
        notes.append(f"Engine: noise — the patch floor measured {ratio(wall['patch floor'], base):.3f}×, above metrics "
                     f"only ({ratio(wall['metrics only'], base):.3f}×), which does the same and more: the machine's "
                     f"speed changed between runs (the whole-run ratios in the rows' notes show how much); the engine "
                     f"rows of this run carry that much noise: re-run on a quieter machine.")
    return rows, notes


def _publishing_note() -> str:
    from execution import state_publish

    name = next((n for n in WRITE_CADENCE_NAMES if hasattr(state_publish, n)), None)
    text = ("Publishing: the shipped config evaluates the diagnostics every `publish_interval_seconds` of engine "
            "time — once a minute live, every bar in a replay of 60 s bars. ")
    if name is not None:
        text += (f"In replay pace the files are written at most every {getattr(state_publish, name):g} s of wall time "
                 f"(`execution.state_publish.{name}`) and always at the end; the on_publish variant has every "
                 f"interval's document built and handed to the hook.")
    else:
        text += "This engine writes the files at every evaluation (no wall-time write cadence in replay pace)."
    return text
