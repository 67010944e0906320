"""Benchmark 6: what a broken collector costs the trading loop, as ratios against the same pipeline that works.

Usage::

    rows, notes = run_exporters(cycles=2_000, warmup=500, repeats=3)

A replay with tracing on runs through ``execution.executor_live.run`` (tests/fixtures/replay.py)
with short export intervals (spans every 100 ms, metrics every 200 ms), so the exporters export,
and fail, during the timed loop. Arms, interleaved repeat by repeat in a rotating order:

- ``local``: a BatchSpanProcessor and a PeriodicExportingMetricReader whose exporters drop
  everything at once (a collector that is up and fast) — the baseline;
- ``closed``, ``silent``, ``refusing``: OTLP/HTTP to a port nothing listens on, a socket that never
  answers, a server that answers 503 (tests/fixtures/collectors.py).

Each run is summarised by its p99 and its median cycle time after the warm-up; each arm by the
median over its runs. The budget: a broken collector costs at most 20% at the p99. Last, how long
``otel_diag.shutdown(timeout_millis=1_000)`` takes while the span exporter hangs on the silent
collector, against that bound (≤ 1.25×), and when the exporter threads have ended after a shutdown
with a closed or refusing collector, against the same kind of bound (≤ 2×: they stop retrying with the
shutdown, not after the exporters' 10 s timeout), and how many requests the refusing collector still gets
after shutdown returned (≤ 1, one in flight). ``make test`` only checks that shutdown returns and that no
exporter thread is left after it.
"""
from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Tuple

from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from tests.benchmarks.fixtures import quiet_otel
from tests.benchmarks.harness import Row, percentile
from tests.fixtures.collectors import BROKEN, FAST_EXPORT_ENV, BrokenCollectors, DropMetrics, DropSpans, end_spans
from tests.fixtures.replay import bounded_shutdown, quiet_config_file, traced_replay

SHUTDOWN_MILLIS = 300
HUNG_SHUTDOWN_MILLIS = 1_000
P99_RATIO_BUDGET = 1.20
SHUTDOWN_RATIO_BUDGET = 1.25
THREADS_END_RATIO_BUDGET = 2.0
AFTER_SHUTDOWN_REQUESTS_BUDGET = 1  # a request in flight when shutdown() returned may still arrive


@contextlib.contextmanager
def _fast_exports() -> Iterator[None]:
    """The SDK's batch span processor and periodic metric reader read their intervals from os.environ."""
    saved = {k: os.environ.get(k) for k in FAST_EXPORT_ENV}
    os.environ.update(FAST_EXPORT_ENV)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _bounded(reps) -> Iterator[int]:
    """``reps``, each inside ``bounded_shutdown(SHUTDOWN_MILLIS)``: only run()'s shutdown is capped, not the
    measured shutdowns after the replays (a cap of 0.3 s would make the 1 s bound's figure a 0.3 s one)."""
    for rep in reps:
        with bounded_shutdown(SHUTDOWN_MILLIS):
            yield rep


def _hung_shutdown_ratio(endpoint: str, silent) -> Tuple[float, bool]:
    """Seconds ``otel_diag.shutdown(timeout_millis=1_000)`` takes while the span exporter hangs on ``endpoint``
    (a collector that accepts and never answers), over its bound; and whether it flushed (it must give up)."""
    import otel_diag

    accepted = silent.accepted
    otel_diag.configure(clock=time.time, env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
    end_spans(1_000)  # more than one batch: the worker exports at once and hangs
    silent.connections.wait_beyond(accepted)  # the worker is in the request that never ends
    started = time.perf_counter()
    flushed = otel_diag.shutdown(timeout_millis=HUNG_SHUTDOWN_MILLIS)
    return (time.perf_counter() - started) / (HUNG_SHUTDOWN_MILLIS / 1000), flushed


def _threads_end_ratio(endpoint: str, requests: Callable[[], int]) -> Tuple[float, int, int]:
    """Seconds from ``otel_diag.shutdown(timeout_millis=300)`` until the exporter threads it started have ended,
    with the collector at ``endpoint`` down, over that bound; and how many requests ``requests()`` (the
    collector's count) grew by up to shutdown's return and after it (the retries stop with it: one may be in
    flight)."""
    import threading

    import otel_diag

    before = set(threading.enumerate())
    requests_before = requests()
    otel_diag.configure(clock=time.time, env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
    exporter_threads = [t for t in threading.enumerate() if t not in before and t.name.startswith("Otel")]
    end_spans(1_000)
    time.sleep(0.2)  # let the first export fail and back off
    started = time.perf_counter()
    otel_diag.shutdown(timeout_millis=SHUTDOWN_MILLIS)
    sent_by_shutdown = requests()
    for thread in exporter_threads:
        thread.join()
    ratio = (time.perf_counter() - started) / (SHUTDOWN_MILLIS / 1000)
    return ratio, sent_by_shutdown - requests_before, requests() - sent_by_shutdown


def run_exporters(*, cycles: int = 2_000, warmup: int = 500, repeats: int = 3,
                  checked: bool = True) -> Tuple[List[Row], List[str]]:
    """Rows: p99 and median per cycle of each broken collector / the local-drop pipeline."""
    p99s: Dict[str, List[float]] = {arm: [] for arm in ("local", *BROKEN)}
    medians: Dict[str, List[float]] = {arm: [] for arm in p99s}
    journals = set()
    with tempfile.TemporaryDirectory() as tmp, BrokenCollectors() as down, _fast_exports(), quiet_otel():
        config = quiet_config_file(tmp)
        names = list(p99s)
        for rep in _bounded(range(repeats)):  # run()'s own shutdown gets the short bound; the two below their own
            shift = rep % len(names)
            for arm in names[shift:] + names[:shift]:
                if arm == "local":
                    env, hooks = {}, {"span_processors": [BatchSpanProcessor(DropSpans())],
                                      "metric_readers": [PeriodicExportingMetricReader(DropMetrics())]}
                else:
                    env, hooks = {"OTEL_EXPORTER_OTLP_ENDPOINT": down.endpoints[arm]}, {}
                ticks: List[float] = []
                done = traced_replay(Path(tmp) / f"{arm}-{rep}", config, env, cycles,
                                     on_cycle=lambda _result: ticks.append(time.perf_counter()), **hooks)
                intervals = [b - a for a, b in zip(ticks, ticks[1:])]
                intervals = intervals[min(warmup, len(intervals) // 2):]
                p99s[arm].append(percentile(intervals, 99))
                medians[arm].append(statistics.median(intervals))
                journals.add(done.journal)
        hung, hung_flushed = _hung_shutdown_ratio(down.endpoints["silent"], down.silent)
        counts = {"closed": lambda: 0, "refusing": lambda: down.refusing.requests}  # a closed port counts none
        threads_end = {arm: _threads_end_ratio(down.endpoints[arm], count) for arm, count in counts.items()}
    base_p99, base_median = statistics.median(p99s["local"]), statistics.median(medians["local"])
    group = "exporters down"
    rows = [Row(group, "collector up, exporters drop locally (baseline)", "p99 cycle time after warm-up",
                base_p99 * 1e3, "ms", baseline=base_p99 * 1e3, figure_unit="ms", key="exporters/local",
                note=f"median cycle {base_median * 1e3:.3f} ms")]
    for arm in BROKEN:
        p99 = statistics.median(p99s[arm])
        rows.append(Row(group, f"collector {arm}", "p99 cycle time / baseline p99", p99 / base_p99, "x",
                        baseline=base_p99 * 1e3, figure=p99 * 1e3, figure_unit="ms", budget=P99_RATIO_BUDGET,
                        budget_text=f"≤ {P99_RATIO_BUDGET:.2f}×", checked=checked,
                        key=f"exporters/{arm}",
                        note=f"median cycle {statistics.median(medians[arm]) / base_median:.3f}× the baseline's"))
    rows.append(Row(group, "shutdown while the exporter hangs on a silent collector", "seconds taken / the 1 s bound",
                    hung, "x", baseline=HUNG_SHUTDOWN_MILLIS / 1000, figure=hung * HUNG_SHUTDOWN_MILLIS / 1000,
                    figure_unit="s", budget=SHUTDOWN_RATIO_BUDGET, budget_text=f"≤ {SHUTDOWN_RATIO_BUDGET:.2f}×",
                    checked=checked, key="exporters/hung shutdown", data={"flushed": hung_flushed},
                    note="gave up at its bound, unflushed" if not hung_flushed
                    else "FLUSHED: the silent collector answered, so this is no hung shutdown"))
    for arm, (ratio, _, _) in threads_end.items():
        rows.append(Row(group, f"exporter threads end after shutdown, collector {arm}",
                        "seconds until they ended / the 0.3 s bound", ratio, "x", baseline=SHUTDOWN_MILLIS / 1000,
                        figure=ratio * SHUTDOWN_MILLIS / 1000, figure_unit="s", budget=THREADS_END_RATIO_BUDGET,
                        budget_text=f"≤ {THREADS_END_RATIO_BUDGET:.2f}×", checked=checked,
                        key=f"exporters/threads end {arm}"))
    _, until, after = threads_end["refusing"]
    rows.append(Row(group, "requests to the refusing collector after shutdown() returned",
                    "requests after / requests up to its return (the retries stop with shutdown; one may be in "
                    "flight)", after, "requests", baseline=until, figure=after, figure_unit="requests",
                    budget=AFTER_SHUTDOWN_REQUESTS_BUDGET, budget_text=f"≤ {AFTER_SHUTDOWN_REQUESTS_BUDGET}",
                    checked=checked, key="exporters/requests after shutdown"))
    notes = [f"Exporters down: {repeats} runs of {cycles} bars per arm (the first {warmup} not timed), the same "
             f"journal in every run: {len(journals) == 1}."]
    return rows, notes
