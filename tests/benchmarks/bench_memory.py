"""Benchmark 4: resident memory after 100,000 events over 1,000 symbols, and after 100,000 more.

Usage::

    rows = run_memory(events=100_000, symbols=1_000)          # each variant in a fresh interpreter
    python -m tests.benchmarks.bench_memory --events 100000 --symbols 1000 --variant "metrics only"

Each risk check is two events — a signal (one series per symbol) and a veto over 20 reasons (20,000
(reason, symbol) pairs, folded by the 2,000-series cap); an SDK in-memory reader collects after each phase (as an OTLP or
Prometheus reader would), so the SDK's own per-series storage is counted too. RSS is read from /proc/self/status after a
full garbage collection; then tracemalloc traces two more batches. Bounded means: a further
batch of events adds nothing to the Python heap (RSS also moves by allocator fragmentation,
which is why the heap is what is checked; the RSS figures are stated).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tracemalloc
from typing import Dict, List

from tests.benchmarks.harness import Row

REASONS = 20
HEAP_GROWTH_BUDGET_KIB = 64.0
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def measure(events: int, symbols: int, variant: str) -> Dict[str, float]:
    """Run in this (fresh) interpreter: configure, two phases of ``events`` events, RSS after each."""
    from execution.models import RiskDecision, Side, Signal
    from otel_diag import semconv as sc
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from otel_diag.wrappers import ACTIVE, make_wrapper
    from otel_diag.default_targets import TARGETS
    from tests.benchmarks.fixtures import T0, EchoHost, flush, quiet_otel, telemetry_setup, wrapped_host
    from tests.benchmarks.harness import rss_bytes

    gc.collect()
    start = rss_bytes()
    names = [f"SYM{i:04d}USDT" for i in range(symbols)]
    signals = [Signal(s, Side.BUY, 100.0, T0, 1.0, 0.001) for s in names]
    vetoes = [[RiskDecision(sig, False, 1.0, 100.0, f"reason_{j:02d}") for sig in signals] for j in range(REASONS)]
    specs = {t.spec.span_name: t.spec for t in TARGETS}
    out: Dict[str, float] = {}
    sdk_reader = InMemoryMetricReader()  # as an OTLP or Prometheus reader would: the SDK keeps a point per series
    with quiet_otel(), telemetry_setup(variant, metric_readers=(sdk_reader,)) as telemetry:
        chk = wrapped_host("check", make_wrapper(specs[sc.SPAN_RISK_CHECK], ACTIVE), EchoHost)
        telemetry.snapshot()
        gc.collect()
        out["configured"] = rss_bytes()
        for phase in ("phase1", "phase2", "heap_phase1", "heap_phase2"):
            if phase == "heap_phase1":  # RSS first, untouched by tracemalloc's own bookkeeping; then the heap
                tracemalloc.start()
            for i in range(events // 2):
                k = i % symbols
                chk.check(vetoes[(i // symbols) % REASONS][k])
            flush(telemetry)
            derived = telemetry.snapshot()
            sdk_reader.collect()
            gc.collect()
            out[phase] = tracemalloc.get_traced_memory()[0] if phase.startswith("heap") else rss_bytes()
        tracemalloc.stop()
        out["signals"] = derived.total_signals
        out["series"] = len(derived.signals_by_symbol) + len(derived.vetoes)
        out["overflow"] = float(bool(derived.overflow))
    out["start"] = start
    return out


def run_memory(events: int = 100_000, symbols: int = 1_000, checked: bool = True,
               variants=("metrics only", "recording span")) -> List[Row]:
    from tests.fixtures.env import clean_env  # here, not at the top: the measured interpreter imports this module

    rows: List[Row] = []
    mib = 1024 * 1024
    for variant in variants:
        proc = subprocess.run([sys.executable, "-m", "tests.benchmarks.bench_memory", "--events", str(events),
                               "--symbols", str(symbols), "--variant", variant],
                              cwd=ROOT, capture_output=True, text=True, timeout=600,
                              env=clean_env())
        if proc.returncode != 0:
            raise RuntimeError(f"memory benchmark ({variant}) failed:\n{proc.stderr}")
        m = json.loads(proc.stdout.strip().splitlines()[-1])
        assert m["signals"] == 4 * (events // 2), "the events were not all counted"
        heap_second = (m["heap_phase2"] - m["heap_phase1"]) / mib
        rows.append(Row(f"4 memory ({events:,} events, {symbols:,} symbols)", f"{variant}: {events:,} more events",
                        "Python heap growth over a further batch of events (tracemalloc: traced heap after a batch → "
                        "after the next)", heap_second * 1024, "KiB+",
                        baseline=m["heap_phase1"] / 1024, figure=m["heap_phase2"] / 1024, figure_unit="KiB",
                        budget=HEAP_GROWTH_BUDGET_KIB, budget_text=f"≤ {HEAP_GROWTH_BUDGET_KIB:.0f} KiB (bounded: < 1 byte an event)",
                        checked=checked, key=f"memory/{variant}",
                        note=f"RSS {m['phase1'] / mib:.1f} MiB after the first {events:,} events "
                             f"({(m['phase1'] - m['configured']) / mib:+.1f} MiB over the configured process), "
                             f"{m['phase2'] / mib:.1f} MiB after the second "
                             f"({(m['phase2'] - m['phase1']) / mib:+.2f} MiB); {int(m['series']):,} series kept"
                             + (", the rest folded by the cap" if m["overflow"] else "")))
    return rows


def main(argv: List[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--symbols", type=int, default=1_000)
    p.add_argument("--variant", default="metrics only")
    a = p.parse_args(argv)
    print(json.dumps(measure(a.events, a.symbols, a.variant)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
