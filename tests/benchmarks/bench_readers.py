"""Benchmark 7: the loader and `otel-diag status` on the largest diagnostics.json they accept.

Usage::

    rows, notes = run_readers(size_bytes=16 * 1024 * 1024, rounds=5)

Two files of exactly ``size_bytes`` (by default the loader's cap, ``MAX_FILE_BYTES``): **many entries**
(a million short veto reasons, far past the reader's map cap) and **long texts** (a service name that
fills the file: before the reader's caps `otel-diag status` took 5 min 22 s on it, rich wrapping a
16 MiB name). In each round, interleaved: the baseline — read the file and ``json.loads`` it, what any
reader pays — then ``load_runtime_diagnostics_state``, ``otel-diag status`` and ``otel-diag status
--json`` in-process, their output to a buffer. A figure is the median over rounds of a variant's time
over the same round's baseline; the absolute times are in the note.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import statistics
import tempfile
import time
from typing import Callable, Dict, List, Tuple

from execution import diagnostics_document as dd
from execution.state_v7 import MAX_FILE_BYTES, load_runtime_diagnostics_state
from otel_diag.cli import status
from tests.benchmarks.harness import Row

BUDGET_RATIO = 2.0  # × reading and parsing the file: the reader's own work stays below the parse it cannot avoid
WRITTEN_AT = "2026-01-05T08:00:00.000000+00:00"


def _document() -> dict:
    """A small, well-formed running executor's document."""
    doc = dd.to_json(dd.DiagnosticsDocument(written_at=WRITTEN_AT, evaluated_at=WRITTEN_AT,
                                            service=dd.ServiceInfo(state=dd.SERVICE_RUNNING),
                                            veto_counters=dd.VetoCounters(), exit_pipeline=dd.ExitPipelineStatus(),
                                            liveness=dd.LivenessAlerts()))
    return doc


def _fill(doc: dict, size_bytes: int, shape: str) -> str:
    """``doc`` as compact JSON of exactly ``size_bytes``, grown by ``shape``."""
    if shape == "many entries":
        entry = len('"r0000000":1,')
        doc["runtime_diagnostics"]["veto_counters"]["by_reason"] = {
            f"r{i:07d}": 1 for i in range((size_bytes - 4096) // entry)}
    doc["service"]["name"] = ""
    doc["service"]["name"] = "N" * (size_bytes - len(json.dumps(doc, separators=(",", ":"))))
    text = json.dumps(doc, separators=(",", ":"))
    assert len(text) == size_bytes
    return text


def _timed(call: Callable[[], object]) -> float:
    start = time.perf_counter_ns()
    call()
    return (time.perf_counter_ns() - start) / 1e6


def _one_shape(folder: str, rounds: int) -> Dict[str, float]:
    path = os.path.join(folder, dd.DIAGNOSTICS_FILE)

    def parse() -> None:
        with open(path, "rb") as fh:
            json.loads(fh.read().decode("utf-8"))

    def run_status(as_json: bool) -> Callable[[], object]:
        def call() -> None:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                status.run(argparse.Namespace(state_dir=folder, json=as_json, max_age=None))
        return call

    variants = {"baseline": parse, "loader": lambda: load_runtime_diagnostics_state(folder),
                "status": run_status(False), "status --json": run_status(True)}
    for call in variants.values():  # warm-up: imports (rich), caches
        call()
    times: Dict[str, List[float]] = {name: [] for name in variants}
    names = list(variants)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(_timed(variants[name]))
    out = {f"ms/{name}": statistics.median(t) for name, t in times.items()}
    for name in names[1:]:
        out[name] = statistics.median(v / b for v, b in zip(times[name], times["baseline"]))
    block = load_runtime_diagnostics_state(folder)
    out["block_kib"] = len(json.dumps(block, allow_nan=False)) / 1024
    return out


def run_readers(size_bytes: int = MAX_FILE_BYTES, rounds: int = 5, checked: bool = True) -> Tuple[List[Row], List[str]]:
    rows: List[Row] = []
    folder = tempfile.mkdtemp(prefix="readers-")
    try:
        for shape in ("many entries", "long texts"):
            with open(os.path.join(folder, dd.DIAGNOSTICS_FILE), "w", encoding="ascii") as fh:
                fh.write(_fill(_document(), size_bytes, shape))
            r = _one_shape(folder, rounds)
            group = f"7 readers ({size_bytes / 1024 / 1024:.0f} MiB diagnostics.json)"
            for variant in ("loader", "status", "status --json"):
                budgeted = variant != "loader"
                rows.append(Row(group, f"{shape}: {variant}",
                                "time / (read + json.loads of the same file), median of the rounds' ratios",
                                r[variant], "x", baseline=r["ms/baseline"], figure=r[f"ms/{variant}"], figure_unit="ms",
                                budget=BUDGET_RATIO if budgeted else None,
                                budget_text=f"≤ {BUDGET_RATIO:g}×" if budgeted else "", checked=checked,
                                key=f"readers/{shape}/{variant}", data=r,
                                note=f"{r[f'ms/{variant}']:.0f} ms; read + json.loads {r['ms/baseline']:.0f} ms; "
                                     f"block {r['block_kib']:.0f} KiB"))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    notes = [f"Readers: the loader keeps at most {dd.MAX_TEXT_CHARS} characters of a text, {dd.MAX_LIST_ITEMS} "
             f"items of a list and {dd.MAX_MAP_ENTRIES:,} entries of a map and stops reading there, so what it "
             "adds to the parse does not grow with the file; before these caps `otel-diag status` on the "
             "long-texts file took 5 min 22 s (rich wrapping a 16 MiB service name) and the block was as large "
             "as the file."]
    return rows, notes
