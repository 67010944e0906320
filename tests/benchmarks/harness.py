"""The measuring kit of the benchmarks: paired timings, percentiles, the machine, the result table.

Usage::

    from tests.benchmarks.harness import Row, paired_overheads

    overheads, bare = paired_overheads({"bare": call_bare, "theirs": call_theirs, "ours": call_ours}, "bare",
                                       loops=2_000, rounds=21)
    rows.append(Row("per call", "ours", "our overhead / theirs", overheads["ours"] / overheads["theirs"], "x",
                    baseline=overheads["theirs"], figure=overheads["ours"], figure_unit="ns",
                    budget=1.0, budget_text="≤ 1.0×"))

These machines are noisy, so no budget is an absolute time: every time budget is a ratio of our
figure to a baseline measured in the same run (a row shows the baseline, the figure and the
ratio), and variants are interleaved round by round so a burst of noise hits all of them
alike. The figure of a variant is the median over rounds of its difference to the baseline
call of the same round.
"""
from __future__ import annotations

import gc
import math
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from importlib import metadata
from typing import Callable, Dict, List, Optional, Sequence, Tuple

LIBRARIES = ("opentelemetry-api", "opentelemetry-sdk", "wrapt", "prometheus_client")


@dataclass
class Row:
    """One line of the result table; ``budget`` is checked when set (``value <= budget``).

    ``baseline`` and ``figure`` are what ``value`` compares (both in ``figure_unit``): for a
    ratio, value = figure / baseline. A row with a budget fills both.
    """

    group: str
    name: str
    measure: str
    value: float
    unit: str  # "ns", "ms", "x", "MiB", "µs/series", ...
    baseline: Optional[float] = None
    figure: Optional[float] = None
    figure_unit: str = ""  # the unit of baseline and figure
    budget: Optional[float] = None
    budget_text: str = ""
    note: str = ""
    checked: bool = True  # False in smoke runs: the structure is tested, not the timing
    key: str = ""  # a stable name for cross-references (e.g. "calls/metrics only/risk.check")
    data: Dict[str, float] = field(default_factory=dict)  # auxiliary figures, for the findings

    @property
    def verdict(self) -> str:
        if self.budget is None:
            return ""
        if not self.checked:
            return "not checked (smoke run)"
        return "met" if self.passed else "**MISSED**"

    @property
    def passed(self) -> bool:
        return self.budget is None or not self.checked or self.value <= self.budget


def timed_loop(call: Callable[[], object], loops: int) -> float:
    """Nanoseconds per call of ``call`` over ``loops`` calls (garbage collection paused, as timeit does)."""
    rng = range(loops)
    enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for _ in rng:
            call()
        return (time.perf_counter_ns() - start) / loops
    finally:
        if enabled:
            gc.enable()


def paired_overheads(calls: Dict[str, Callable[[], object]], baseline: str, *, loops: int, rounds: int,
                     between: Optional[Callable[[], None]] = None) -> Tuple[Dict[str, float], float]:
    """Per variant, the median over rounds of (ns per call − the baseline's ns per call in that round).

    Each round times every variant once, in a rotating order; ``between`` runs after each
    timed block, outside the timing (e.g. flushing a span queue). Returns the overheads and
    the baseline's median ns per call.
    """
    names = list(calls)
    diffs: Dict[str, List[float]] = {n: [] for n in names if n != baseline}
    base: List[float] = []
    for call in calls.values():  # warm-up: caches, series binding, specialisation of the bytecode
        timed_loop(call, max(1, loops // 10))
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        per_call: Dict[str, float] = {}
        for name in order:
            per_call[name] = timed_loop(calls[name], loops)
            if between is not None:
                between()
        base.append(per_call[baseline])
        for name in diffs:
            diffs[name].append(per_call[name] - per_call[baseline])
    return {n: statistics.median(d) for n, d in diffs.items()}, statistics.median(base)


def ratio(figure: float, baseline: float) -> float:
    """``figure / baseline``; infinity when the baseline is not positive (nothing to compare with: a miss)."""
    return figure / baseline if baseline > 0 else math.inf


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by linear interpolation; 0.0 for no values."""
    if not values:
        return 0.0
    data = sorted(values)
    k = (len(data) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def rss_bytes() -> int:
    """This process's resident set size, from /proc (0 where there is no /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def load_average() -> Optional[Tuple[float, float, float]]:
    try:
        return os.getloadavg()
    except OSError:
        return None


def machine() -> Dict[str, str]:
    """CPU, cores, OS, Python and library versions: the header of the report."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "CPU": cpu,
        "cores": str(os.cpu_count()),
        "OS": f"{platform.system()} {platform.release()}",
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
    }
    for lib in LIBRARIES:
        try:
            info[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            info[lib] = "not installed"
    try:
        import wrapt.__wrapt__ as ww

        info["wrapt"] += " (C extension)" if ww._using_c_extension else " (pure Python)"
    except Exception:
        pass
    return info


@dataclass
class Report:
    """Everything the run measured, rendered as docs/benchmarks.md."""

    rows: List[Row] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    findings: List[str] = field(default_factory=list)
    info: Dict[str, str] = field(default_factory=machine)
    quick: bool = False

    def add(self, rows: Sequence[Row]) -> None:
        self.rows.extend(rows)

    @property
    def missed(self) -> List[Row]:
        return [r for r in self.rows if not r.passed]

    def find(self, key: str) -> Optional[Row]:
        return next((r for r in self.rows if r.key == key), None)

    def number(self, key: str) -> Optional[int]:
        """The row's number in the table (1-based), for "see row n"."""
        return next((i for i, r in enumerate(self.rows, 1) if r.key == key), None)

    def markdown(self, started: str, seconds: float, load: Tuple[object, object]) -> str:
        lines = [
            "# Benchmarks: what the instrumentation costs",
            "",
            "Written by `make bench` (`python -m tests.benchmarks.run --output docs/benchmarks.md`); "
            "do not edit by hand. Every time budget is a ratio of a figure to a baseline measured **in the same run** "
            "(variants interleaved round by round, or replays taking turns of a few cycles; medians): each row shows the baseline, the "
            "figure and their ratio (or, where there is no budget, the value it reports), so ratios from different "
            "machines or runs compare, absolute times do not. `make bench` exits non-zero when a budget is missed.",
            "",
            "## Machine",
            "",
        ]
        lines += [f"- {k}: {v}" for k, v in self.info.items()]
        lines += [f"- run: {started}, {seconds:.0f} s; load average before / after: {_load(load[0])} / {_load(load[1])}"]
        if self.quick:
            lines += ["- **smoke run** (tiny iteration counts): figures are not meaningful, budgets not checked"]
        lines += ["", "## Results", "",
                  "| # | benchmark | variant | measure | baseline | figure | ratio (or value) | budget | result |",
                  "|---|---|---|---|---:|---:|---:|---|---|"]
        for i, r in enumerate(self.rows, 1):
            note = f" — {r.note}" if r.note else ""
            lines.append(f"| {i} | {r.group} | {r.name} | {r.measure}{note} | {_cell(r.baseline, r.figure_unit)} | "
                         f"{_cell(r.figure, r.figure_unit)} | {format_value(r.value, r.unit)} | "
                         f"{r.budget_text} | {r.verdict} |")
        missed = self.missed
        lines += ["", f"**Budgets: {'all met' if not missed else f'{len(missed)} missed'}**"
                  + ("" if not self.quick else " (smoke run: not checked)"), ""]
        if self.findings:
            lines += ["## Where we stand", ""] + [f"- {n}" for n in self.findings] + [""]
        if self.notes:
            lines += ["## Notes", ""] + [f"- {n}" for n in self.notes] + [""]
        return "\n".join(lines)


def format_value(value: float, unit: str) -> str:
    if unit == "ns/call":  # a time per call, unsigned
        return f"{value / 1000:.2f} µs" if abs(value) >= 1000 else f"{round(value) + 0:d} ns"
    if unit == "µs":
        return f"{value:.2f} µs"
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "KiB":
        return f"{value:.1f} KiB"
    if unit == "ns":
        return f"{value / 1000:+.2f} µs" if abs(value) >= 100 else f"{round(value) + 0:+d} ns"  # no "-0 ns"
    if unit == "x":
        return f"{value:.3f}×"
    if unit == "ms":
        return f"{value:.3f} ms" if value < 10 else f"{value:.1f} ms"
    if unit == "KiB+":
        return f"{round(value, 1) + 0.0:+.1f} KiB"  # + 0.0: no "-0.0"
    return f"{value:.3g} {unit}"


def _cell(value: Optional[float], unit: str) -> str:
    return "" if value is None else format_value(value, unit)


def _load(value: object) -> str:
    return "n/a" if value is None else " ".join(f"{x:.2f}" for x in value)  # type: ignore[union-attr]

