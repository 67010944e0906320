"""Benchmark 2: a whole replay, instrumented vs ``--no-instrument``, in the same process and run.

Usage::

    rows, notes = run_engine(bars=5_000, repeats=5)

Variants, interleaved repeat by repeat (each on a fresh state dir, the engine's own
``execution.executor_live.run``; per-cycle times from ``RunHooks.on_cycle`` with
``perf_counter_ns``):

- ``no-instrument``: the baseline (``RunOptions(instrument=False)``);
- ``metrics only``: ``configure(tracing=False)``, no publisher — the trading loop's cost;
- ``metrics only · before``: the same with the hot path as it was before issue 7 (``_before.py``);
- ``patch floor``: patched like ``metrics only``, but from the second cycle on every wrapper returns
  at its first line (binding detached): what the patches cost before otel_diag does anything;
- ``full tracing``: every span recorded into a BatchSpanProcessor whose exporter drops them, no publisher;
- ``metrics + publishing``: the shipped config, which publishes diagnostics.json (atomic, fsync)
  every 60 s of *engine* time — in a replay of 60 s bars that is every bar.

Publishing is measured apart because its cadence is engine time: live, it is one write a
minute; in a replay it is one write per bar, hundreds of times faster than it will ever run.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import tempfile
import time
from typing import Dict, List, Tuple

from opentelemetry.sdk.trace.export import BatchSpanProcessor

from execution.executor_live import RunHooks, RunOptions, run
from otel_diag.instrumentor import ExecutionInstrumentor, import_engine, target_functions
from otel_diag.wrappers import ACTIVE
from tests.benchmarks import _before
from tests.benchmarks.fixtures import quiet_otel
from tests.fixtures.collectors import DropSpans
from tests.benchmarks.harness import Row, percentile

SHIPPED_CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "config", "strategy_config.json")
VARIANTS = ("no-instrument", "patch floor", "metrics only · before", "metrics only", "full tracing",
            "metrics + publishing")
RATIO_BUDGET = 1.10
ADDED_MS_BUDGET = 1.0


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

    def on_cycle(_result: object) -> None:
        if not bound:
            bound.append(type(ACTIVE.binding).__name__)
            if variant == "patch floor":  # cycle intervals start at the first on_cycle: all detached
                ACTIVE.binding = None
        stamps.append(time.perf_counter_ns())

    hooks = RunHooks(on_cycle=on_cycle)
    opts = RunOptions(config_path=configs["shipped" if variant == "metrics + publishing" else "loop"],
                      state_dir=tempfile.mkdtemp(prefix=variant.split()[0] + "-", dir=folder), cycles=bars, seed=7)
    if variant == "no-instrument":
        opts.instrument = False
    elif variant == "full tracing":
        hooks.span_processors = [BatchSpanProcessor(exporter)]
        hooks.configure_kwargs = {"env": {}}
    else:
        hooks.configure_kwargs = {"tracing": False, "env": {}}
    with (_before.installed_in_engine() if variant.endswith("before") else contextlib.nullcontext()):
        summary = run(opts, hooks)
    with open(os.path.join(opts.state_dir, "journal.jsonl"), "rb") as fh:
        journal = fh.read()
    assert ExecutionInstrumentor.patched() == [], "the engine stayed patched after the run"
    assert _engine_functions() == originals, "an engine function is not the original object after the run"
    expected = {"no-instrument": "NoneType", "metrics only · before": "BeforeBinding"}.get(variant, "Binding")
    assert bound == [expected], f"{variant}: ran with {bound}, expected {expected}"
    shutil.rmtree(opts.state_dir, ignore_errors=True)
    return stamps, {"cycles": summary.cycles, "publishes": summary.publishes, "spans": exporter.exported,
                    "journal": journal}


def run_engine(bars: int = 5_000, repeats: int = 5, checked: bool = True) -> Tuple[List[Row], List[str]]:
    runs: Dict[str, List[List[float]]] = {v: [] for v in VARIANTS}  # per repeat, the cycle intervals (ms)
    facts: Dict[str, dict] = {}
    folder = tempfile.mkdtemp(prefix="otel-diag-bench-")
    originals = _engine_functions()  # the engine's own functions, taken before any variant runs
    assert ExecutionInstrumentor.patched() == [], "the engine is patched before the benchmark starts"
    try:
        configs = _configs(folder)
        with quiet_otel():
            for rep in range(repeats):
                order = VARIANTS[rep % len(VARIANTS):] + VARIANTS[:rep % len(VARIANTS)]
                for variant in order:
                    stamps, fact = _run_once(variant, bars, configs, folder, originals)
                    assert fact["cycles"] == bars and len(stamps) == bars, (variant, fact["cycles"], len(stamps))
                    runs[variant].append([(b - a) / 1e6 for a, b in zip(stamps, stamps[1:])])
                    facts[variant] = fact
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    journals = {v: f.pop("journal") for v, f in facts.items()}
    identical = len(set(journals.values())) == 1
    assert identical, "journal.jsonl differs with instrumentation: telemetry changed trading"

    # The replay is deterministic, so cycle i does the same work in every run: the wall time is the sum
    # over cycles of cycle i's median across repeats, which a burst of noise in one run does not move.
    wall = {v: sum(statistics.median(c) for c in zip(*r)) for v, r in runs.items()}
    cycles = {v: [x for run in r for x in run] for v, r in runs.items()}
    base = wall["no-instrument"]
    per_cycle = {v: wall[v] / max(1, bars - 1) for v in VARIANTS}
    p50 = {v: percentile(c, 50) for v, c in cycles.items()}
    p99 = {v: percentile(c, 99) for v, c in cycles.items()}
    group = f"2 engine ({bars:,} bars × 8 symbols)"
    publishes = facts["metrics + publishing"]["publishes"]

    def pct(v: str) -> str:
        return (f"cycle p50 {p50[v]:.3f} ms ({p50[v] - p50['no-instrument']:+.3f}), "
                f"p99 {p99[v]:.3f} ms ({p99[v] - p99['no-instrument']:+.3f}) vs. no-instrument")

    rows = [
        Row(group, "no-instrument (baseline)", "mean cycle time of the loop", per_cycle["no-instrument"], "ms",
            note=f"cycle p50 {p50['no-instrument']:.3f} ms, p99 {p99['no-instrument']:.3f} ms", key="engine/baseline",
            data={f"per_cycle_ms/{v}": per_cycle[v] for v in VARIANTS}),
        Row(group, "patch floor: patched, wrappers detached", "loop wall time / no-instrument",
            wall["patch floor"] / base, "x", note="the cost of the patches alone (the calls the instrumentor "
                                                  "patches with tracing off), before any otel_diag work; " + pct("patch floor"),
            key="engine/patch floor"),
        Row(group, "metrics only (no publisher) · before", "loop wall time / no-instrument",
            wall["metrics only · before"] / base, "x", key="engine/metrics only/before",
            note="the hot path before issue 7; " + pct("metrics only · before")),
        Row(group, "metrics only (no publisher)" + " · after", "loop wall time / no-instrument", wall["metrics only"] / base, "x",
            budget=RATIO_BUDGET, budget_text="≤ 1.10×", checked=checked, key="engine/metrics only",
            note=f"{(per_cycle['metrics only'] - per_cycle['no-instrument']) * 1000:+.1f} µs a cycle, of which "
                 f"{(per_cycle['patch floor'] - per_cycle['no-instrument']) * 1000:+.1f} µs the patches'; "
                 + pct("metrics only")),
        Row(group, "full tracing (no publisher)", "added time per cycle vs. no-instrument",
            per_cycle["full tracing"] - per_cycle["no-instrument"], "ms+", budget=ADDED_MS_BUDGET,
            budget_text="≤ 1 ms", checked=checked, key="engine/full tracing",
            note=f"{wall['full tracing'] / base:.2f}× wall; {facts['full tracing']['spans'] / bars:.1f} spans a cycle "
                 f"exported; " + pct("full tracing")),
        Row(group, "metrics + publishing every bar (shipped config)", "loop wall time / no-instrument",
            wall["metrics + publishing"] / base, "x", key="engine/publishing",
            data={"ms_per_publish": (wall["metrics + publishing"] - wall["metrics only"]) / max(1, publishes)},
            note=f"{publishes:,} publishes; "
                 f"{(wall['metrics + publishing'] - wall['metrics only']) / max(1, publishes):.3f} ms a publish "
                 f"(vs. metrics only); " + pct("metrics + publishing")),
    ]
    notes = [
        f"Engine: journal.jsonl byte-identical across all {len(VARIANTS)} variants: {identical}. "
        f"{repeats} interleaved repeats of each variant; the loop wall time is the sum over cycles of each cycle's "
        f"median across repeats (cycle = interval between `on_cycle` calls; start-up, configure and shutdown "
        f"excluded); p50/p99 pool every cycle of every repeat, noise included.",
    ]
    return rows, notes
