"""Benchmark 2: whole replays, instrumented vs ``--no-instrument``, run in lockstep.

Usage::

    rows, notes = run_engine(bars=5_000, chunk=50)

Every variant is a real replay (``execution.executor_live.run``: the shipped strategy, 8 symbols,
seed 7) in a process of its own. The processes take turns, ``chunk`` cycles at a time, in an
order that rotates every round; only one runs at a time. A variant's loop time is the sum of its
turns (from the turn's start to its last cycle's ``on_cycle``; start-up, configure, the final
publish and shutdown excluded). This machine's speed drifts over seconds — whole replays run one
after another differed by up to 2× — and here every variant samples each phase within
milliseconds of the others, so a ratio compares like with like.

Variants:

- ``no-instrument``: the baseline (``RunOptions(instrument=False)``);
- ``patch floor``: patched like ``metrics only``, every wrapper returning at its first line from the
  first cycle on (binding detached): what the patches cost before otel_diag does anything;
- ``metrics only``: ``configure(tracing=False)``, no publisher — the trading loop's cost, budget
  ≤ 1.10× the baseline;
- ``full tracing``: every span recorded into a BatchSpanProcessor whose exporter drops them
  (``tests.fixtures.collectors.DropSpans``), no publisher;
- ``bare SDK spans``: the baseline of the tracing budget — the engine hand-instrumented with nothing
  but the SDK's own spans (``with tracer.start_as_current_span(name)``) at the very calls otel_diag
  traces, patched the same way (``otel_diag.wrappers.patch_function``), into the same kind of
  provider and processor: as many spans, nested alike, with no attribute, count or stamp. The budget:
  what full tracing adds to a cycle ≤ 1.5× what these bare spans add;
- ``metrics + publishing``: the shipped config, whose publisher evaluates every
  ``publish_interval_seconds`` of engine time — every bar in a replay of 60 s bars — and writes the
  state files at most every ``REPLAY_MIN_WRITE_SECONDS`` of wall time; budget ≤ 1.30× the baseline;
- ``metrics + publishing + on_publish hook``: the same with ``RunHooks(on_publish=...)``, so every
  interval's document is built and handed to the hook: information, no budget.

Every process's state files are stamped and paced by its own running time (``RunHooks.wall_clock``:
wall time less the time spent waiting for its turn), so a publishing replay writes as often as it
would alone. Each process checks that trading was untouched (the journal's digest, compared across
variants here) and that the engine's functions are the originals again after the run.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

from tests.benchmarks.harness import Row, percentile, ratio
from tests.fixtures.cli import ROOT
from tests.fixtures.config import SHIPPED_CONFIG, shipped_config
from tests.fixtures.env import clean_env

BASELINE = "no-instrument"
PUBLISHING = "metrics + publishing"
HOOKED = "metrics + publishing + on_publish hook"
TRACING, BARE_SPANS = "full tracing", "bare SDK spans"
VARIANTS = (BASELINE, "patch floor", "metrics only", TRACING, BARE_SPANS, PUBLISHING, HOOKED)
RATIO_BUDGET = 1.10
PUBLISHING_BUDGET = 1.30
TRACING_BUDGET = 1.5  # otel_diag's added cost per cycle / the SDK's own cost of as many bare spans
_PREFIX = "BENCH "  # the lines of the protocol on a child's stdout (anything else there is ignored)


# -- the child: one replay, taking turns ---------------------------------------------------------
class _Turns:
    """The child's side of the lockstep: waits for its turn, times it, reports it."""

    def __init__(self, chunk: int, bars: int, between=None) -> None:
        self.chunk, self.bars, self.between = chunk, bars, between
        self.cycles = 0
        self.paused_ns = 0  # wall time spent waiting for a turn
        self.started = 0
        self.last = 0
        self.cycle_ns: List[int] = []

    def wall_clock(self) -> float:
        """Wall time less the time spent waiting: the process's own running time, on the calendar."""
        return time.time() - self.paused_ns / 1e9

    def _send(self, line: str) -> None:
        sys.stdout.write(_PREFIX + line + "\n")
        sys.stdout.flush()

    def _wait(self) -> None:
        waited = time.perf_counter_ns()
        if sys.stdin.readline().strip() != "go":
            raise SystemExit("bench_engine child: the parent went away")
        now = time.perf_counter_ns()
        self.paused_ns += now - waited
        self.started = self.last = now

    def on_cycle(self, _result: object) -> None:
        now = time.perf_counter_ns()
        self.cycles += 1
        if self.cycles > 1:
            self.cycle_ns.append(now - self.last)
        self.last = now
        if self.cycles == 1:  # start-up done: the first turn starts with the second cycle
            self._send("ready")
            self._wait()
        elif (self.cycles - 1) % self.chunk == 0 or self.cycles == self.bars:
            if self.between is not None:  # before handing over: nothing of this process runs in another's turn
                self.between()
            self._send(f"turn {now - self.started}")
            if self.cycles < self.bars:
                self._wait()


def _bare_span_patches(tracer) -> List[Tuple[object, str, object]]:
    """Patch every target of otel_diag's table with a bare SDK span; (owner, attribute, original) to undo it."""
    import importlib

    from otel_diag.instrumentor import _owner
    from otel_diag.default_targets import TARGETS
    from otel_diag.wrappers import patch_function

    def span_wrapper(name: str):
        def wrapper(wrapped, instance, args, kwargs):
            with tracer.start_as_current_span(name):
                return wrapped(*args, **kwargs)

        return wrapper

    undo = []
    for target in TARGETS:
        owner, attr = _owner(importlib.import_module(target.module), target.name)
        original = owner.__dict__[attr]
        setattr(owner, attr, patch_function(original, span_wrapper(target.spec.span_name)))
        undo.append((owner, attr, original))
    return undo


def child(variant: str, bars: int, chunk: int, folder: str, config: str, cpu: int) -> int:
    """One variant's replay, taking turns with the others; its facts as the last protocol line."""
    from execution.executor_live import RunHooks, RunOptions, run
    from otel_diag.instrumentor import ExecutionInstrumentor, import_engine, target_functions
    from otel_diag.wrappers import ACTIVE
    from tests.benchmarks.fixtures import quiet_otel
    from tests.fixtures.collectors import DropSpans

    if hasattr(os, "sched_setaffinity"):  # every replay on the same CPU: two vCPUs need not run alike
        os.sched_setaffinity(0, {cpu})
    import_engine()
    originals = target_functions()
    exporter = DropSpans()
    processor = None
    if variant in (TRACING, BARE_SPANS):
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        processor = BatchSpanProcessor(exporter)

    def between() -> None:
        # The turn's spans are exported now, between turns: the export thread must not run in another
        # process's turn (every process shares one CPU).
        processor.force_flush()

    turns = _Turns(chunk, bars, between=between if processor is not None else None)
    bound: List[str] = []
    handed = [0]

    def on_cycle(result: object) -> None:
        if not bound:
            bound.append(type(ACTIVE.binding).__name__)
            if variant == "patch floor":
                ACTIVE.binding = None
        turns.on_cycle(result)

    def on_publish(_doc: dict) -> None:
        handed[0] += 1

    hooks = RunHooks(on_cycle=on_cycle, wall_clock=turns.wall_clock, on_publish=on_publish if variant == HOOKED else None)
    opts = RunOptions(config_path=config,
                      state_dir=tempfile.mkdtemp(prefix="state-", dir=folder), cycles=bars, seed=7)
    undo: List[Tuple[object, str, object]] = []
    if variant in (BASELINE, BARE_SPANS):
        opts.instrument = False
    if variant == BARE_SPANS:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.sampling import DEFAULT_ON

        provider = TracerProvider(resource=Resource.create(), sampler=DEFAULT_ON, shutdown_on_exit=False)
        provider.add_span_processor(processor)
        undo = _bare_span_patches(provider.get_tracer("bench.bare_spans"))
    elif variant == TRACING:
        hooks.span_processors = [processor]
        hooks.configure_kwargs = {"env": {}}
    elif variant != BASELINE:
        hooks.configure_kwargs = {"tracing": False, "env": {}}
    try:
        with quiet_otel():
            summary = run(opts, hooks)
    finally:
        for owner, attr, original in undo:
            setattr(owner, attr, original)
    if processor is not None:
        processor.force_flush()
    with open(os.path.join(opts.state_dir, "journal.jsonl"), "rb") as fh:
        journal = hashlib.sha256(fh.read()).hexdigest()
    expected = "NoneType" if variant in (BASELINE, BARE_SPANS) else "Binding"
    cycles = turns.cycle_ns
    facts = {
        "cycles": summary.cycles, "publishes": summary.publishes, "ticks": summary.publish_ticks,
        "handed": handed[0], "spans": exporter.exported, "journal": journal,
        "bound_ok": bound == [expected], "bound": bound,
        "restored": ExecutionInstrumentor.patched() == [] and target_functions() == originals,
        "p50_ms": percentile(cycles, 50) / 1e6, "p99_ms": percentile(cycles, 99) / 1e6,
    }
    turns._send("facts " + json.dumps(facts))
    return 0


# -- the parent: the turns, the rows ---------------------------------------------------------------
class _Child:
    def __init__(self, variant: str, bars: int, chunk: int, folder: str, config: str,
                 cpu: int) -> None:
        env = clean_env(PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
                        PYTHONHASHSEED="0")  # PYTHONHASHSEED: the same dict and set layouts in every process
        self.variant = variant
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.benchmarks.bench_engine", "--child", variant, "--bars", str(bars),
             "--chunk", str(chunk), "--folder", folder, "--config", config,
             "--cpu", str(cpu)],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def read(self) -> Tuple[str, str]:
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"bench_engine: the {self.variant!r} replay ended early "
                                   f"(exit {self.proc.wait()}); run it alone to see why")
            if line.startswith(_PREFIX):
                word, _, rest = line[len(_PREFIX):].strip().partition(" ")
                return word, rest

    def expect(self, word: str) -> str:
        got, rest = self.read()
        if got != word:
            raise RuntimeError(f"bench_engine: the {self.variant!r} replay said {got!r}, expected {word!r}")
        return rest

    def go(self) -> int:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return int(self.expect("turn"))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def _lockstep(bars: int, chunk: int, folder: str) -> Tuple[Dict[str, List[int]], Dict[str, dict]]:
    loop = shipped_config(folder, diagnostics={"enabled": False})  # the publisher off: the loop alone
    cpu = max(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    children = {v: _Child(v, bars, chunk, folder, SHIPPED_CONFIG if v in (PUBLISHING, HOOKED) else loop, cpu)
                for v in VARIANTS}
    try:
        for c in children.values():
            c.expect("ready")
        turns: Dict[str, List[int]] = {v: [] for v in VARIANTS}
        rounds = -(-(bars - 1) // chunk)
        for r in range(rounds):
            for v in VARIANTS[r % len(VARIANTS):] + VARIANTS[:r % len(VARIANTS)]:
                turns[v].append(children[v].go())
        facts = {v: json.loads(c.expect("facts")) for v, c in children.items()}
        for c in children.values():
            if c.proc.wait(timeout=60) != 0:
                raise RuntimeError(f"bench_engine: the {c.variant!r} replay exited {c.proc.returncode}")
        return turns, facts
    finally:
        for c in children.values():
            c.close()


def run_engine(bars: int = 5_000, chunk: int = 50, repeats: int = 3,
               checked: bool = True) -> Tuple[List[Row], List[str]]:
    """``repeats`` lockstep runs, each with fresh processes (a process's memory layout moves its speed by a few
    percent); a variant's figure is the median over repeats of its total time, each run's totals scaled to its
    baseline's so that the ratios are the medians of the runs' ratios."""
    assert bars >= 2 and chunk >= 1 and repeats >= 1, "a turn is at least one cycle after the first"
    runs = []
    for _ in range(repeats):
        folder = tempfile.mkdtemp(prefix="otel-diag-bench-")
        try:
            runs.append(_lockstep(bars, chunk, folder))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    journals = set()
    for _, facts in runs:
        for v, f in facts.items():
            assert f["cycles"] == bars, (v, f["cycles"])
            assert f["bound_ok"], f"{v}: ran with {f['bound']}"
            assert f["restored"], f"{v}: an engine function is not the original object after the run"
            journals.add(f["journal"])
        assert facts[HOOKED]["handed"] > 0, "the on_publish hook was never handed a document"
    identical = len(journals) == 1
    assert identical, "journal.jsonl differs with instrumentation: telemetry changed trading"

    n = bars - 1
    base_total = statistics.median(sum(t[BASELINE]) for t, _ in runs)
    total = {v: statistics.median(base_total * ratio(sum(t[v]), sum(t[BASELINE])) for t, _ in runs)
             for v in VARIANTS}
    turns = {v: [x for t, _ in runs for x in t[v]] for v in VARIANTS}
    facts = {v: runs[-1][1][v] for v in VARIANTS}
    assert all(f[TRACING]["spans"] == f[BARE_SPANS]["spans"] > 0 for _, f in runs), \
        "the bare SDK spans are not as many as full tracing's"
    per_cycle_us = {v: total[v] / n / 1000 for v in VARIANTS}
    base_us = per_cycle_us[BASELINE]
    group = f"2 engine ({bars:,} bars × 8 symbols; {repeats} × {len(turns[BASELINE]) // repeats} turns of {chunk} cycles)"
    spans_per_cycle = facts[TRACING]["spans"] / bars
    sdk_us = per_cycle_us[BARE_SPANS] - base_us
    added_us = per_cycle_us[TRACING] - base_us

    def noise(v: str) -> str:
        rounds = sorted(ratio(a, b) for a, b in zip(turns[v], turns[BASELINE]))
        f, b = facts[v], facts[BASELINE]
        return (f"cycle p50 {f['p50_ms']:.3f} ms ({f['p50_ms'] - b['p50_ms']:+.3f}), p99 {f['p99_ms']:.3f} ms "
                f"({f['p99_ms'] - b['p99_ms']:+.3f}) vs. no-instrument; per turn, the ratio to the same round's "
                f"no-instrument turn: p10 {percentile(rounds, 10):.2f}, p50 {percentile(rounds, 50):.2f}, "
                f"p90 {percentile(rounds, 90):.2f}×")

    def published(v: str) -> str:
        f = facts[v]
        text = f"{f['publishes']:,} file writes for {f['ticks']:,} interval evaluations"
        if v == HOOKED:
            text += f", {f['handed']:,} documents handed to the hook"
        return text

    per_cycle = "mean cycle time / no-instrument's"
    rows = [
        Row(group, "no-instrument (baseline)", "mean cycle time of the loop", base_us, "µs", baseline=base_us,
            figure_unit="µs", note=f"cycle p50 {facts[BASELINE]['p50_ms']:.3f} ms, p99 {facts[BASELINE]['p99_ms']:.3f} ms",
            key="engine/baseline", data={f"per_cycle_us/{v}": per_cycle_us[v] for v in VARIANTS}),
        Row(group, "patch floor: patched, wrappers detached", per_cycle + " (information, no budget)",
            ratio(total["patch floor"], total[BASELINE]), "x", baseline=base_us, figure=per_cycle_us["patch floor"],
            figure_unit="µs", key="engine/patch floor",
            note="the cost of the patches alone (the calls the instrumentor patches with tracing off), before any "
                 "otel_diag work; " + noise("patch floor")),
        Row(group, "metrics only (no publisher)", per_cycle, ratio(total["metrics only"], total[BASELINE]), "x",
            baseline=base_us, figure=per_cycle_us["metrics only"], figure_unit="µs",
            budget=RATIO_BUDGET, budget_text=f"≤ {RATIO_BUDGET:.2f}×", checked=checked, key="engine/metrics only",
            note=f"{per_cycle_us['metrics only'] - base_us:+.1f} µs a cycle, of which "
                 f"{per_cycle_us['patch floor'] - base_us:+.1f} µs the patches'; " + noise("metrics only")),
        Row(group, "full tracing (no publisher)",
            "time added per cycle vs. no-instrument / what bare SDK spans at the same calls add (same turns)",
            ratio(added_us, sdk_us), "x", baseline=sdk_us, figure=added_us, figure_unit="µs",
            budget=TRACING_BUDGET, budget_text=f"≤ {TRACING_BUDGET:.1f}× the SDK's spans", checked=checked,
            key="engine/full tracing", data={"spans_per_cycle": spans_per_cycle},
            note=f"{spans_per_cycle:.1f} spans a cycle, exported to a BatchSpanProcessor over DropSpans; "
                 f"{ratio(total[TRACING], total[BASELINE]):.2f}× the loop; " + noise(TRACING)),
        Row(group, "bare SDK spans at the same calls (hand instrumentation, the tracing budget's baseline)",
            per_cycle + " (information, no budget)", ratio(total[BARE_SPANS], total[BASELINE]), "x",
            baseline=base_us, figure=per_cycle_us[BARE_SPANS], figure_unit="µs", key="engine/bare spans",
            note=f"`with tracer.start_as_current_span(name)` around each traced call, {spans_per_cycle:.1f} spans a "
                 f"cycle, patched like otel_diag's; " + noise(BARE_SPANS)),
        Row(group, "metrics + publishing (shipped config: evaluated every bar of engine time)", per_cycle,
            ratio(total[PUBLISHING], total[BASELINE]), "x", baseline=base_us, figure=per_cycle_us[PUBLISHING],
            figure_unit="µs", budget=PUBLISHING_BUDGET, budget_text=f"≤ {PUBLISHING_BUDGET:.2f}×", checked=checked,
            key="engine/publishing",
            data={"publishes": facts[PUBLISHING]["publishes"], "evaluations": facts[PUBLISHING]["ticks"],
                  "us_over_metrics": per_cycle_us[PUBLISHING] - per_cycle_us["metrics only"]},
            note=published(PUBLISHING) + f"; {per_cycle_us[PUBLISHING] - per_cycle_us['metrics only']:+.1f} µs a "
                 f"cycle over metrics only; " + noise(PUBLISHING)),
        Row(group, "metrics + publishing + on_publish hook (every interval's document built and handed over)",
            per_cycle + " (information, no budget)", ratio(total[HOOKED], total[BASELINE]), "x", baseline=base_us,
            figure=per_cycle_us[HOOKED], figure_unit="µs", key="engine/publishing hook",
            data={"us_over_metrics": per_cycle_us[HOOKED] - per_cycle_us["metrics only"]},
            note=published(HOOKED) + f"; {per_cycle_us[HOOKED] - per_cycle_us['metrics only']:+.1f} µs a cycle over "
                 f"metrics only; " + noise(HOOKED)),
    ]
    notes = [
        f"Engine: journal.jsonl byte-identical across all {len(VARIANTS)} variants: {identical}. Each variant is a "
        f"replay in its own process; the processes take turns of {chunk} cycles in a rotating order, one at a time, "
        f"and a variant's loop time is the sum of its turns (start-up, configure, the final publish and shutdown "
        f"excluded); every process on the same CPU; {repeats} such runs, each with fresh processes (PYTHONHASHSEED=0), and a ratio is the median of "
        f"the runs' ratios. The state files are stamped and paced by each process's own running time, so a publishing "
        f"replay writes as often as it would alone.",
        _publishing_note(),
    ]
    if total["patch floor"] > total["metrics only"]:
        notes.append(f"Engine: noise — the patch floor measured {ratio(total['patch floor'], total[BASELINE]):.3f}×, "
                     f"above metrics only ({ratio(total['metrics only'], total[BASELINE]):.3f}×), which does the same "
                     f"and more; re-run on a quieter machine.")
    return rows, notes


def _publishing_note() -> str:
    from execution.state_publish import REPLAY_MIN_WRITE_SECONDS

    return ("Publishing: the shipped config evaluates the diagnostics every `publish_interval_seconds` of engine "
            "time — once a minute live, every bar in a replay of 60 s bars. In replay pace the files are written at "
            f"most every {REPLAY_MIN_WRITE_SECONDS:g} s of wall time (`execution.state_publish.REPLAY_MIN_WRITE_SECONDS`) "
            "and always at the end; the on_publish variant has every interval's document built and handed to the hook.")


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description="one variant's replay of the engine benchmark (run by run_engine)")
    p.add_argument("--child", required=True, choices=VARIANTS)
    p.add_argument("--bars", type=int, required=True)
    p.add_argument("--chunk", type=int, required=True)
    p.add_argument("--folder", required=True)
    p.add_argument("--config", required=True)
    p.add_argument("--cpu", type=int, required=True)
    args = p.parse_args(argv)
    return child(args.child, args.bars, args.chunk, args.folder, args.config, args.cpu)


if __name__ == "__main__":
    sys.exit(main())
