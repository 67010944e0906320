"""State files under concurrent reading: a reader never sees a partial or invalid diagnostics.json.

The writer is the real ``DiagnosticsPublisher`` (temp file in the same folder, flush, fsync,
``os.replace``); the readers are the raw bytes a dashboard would read and the real loader,
``load_runtime_diagnostics_state``. The document grows and shrinks as the writer goes (new veto
reasons, positions opening and closing), so a torn read would show as bad JSON.
"""
from __future__ import annotations

import json
import os
import threading
import time
from typing import List

import otel_diag
from execution.clock import SimClock
from execution.config import AppConfig, DiagnosticsConfig
from execution.diagnostics_metrics import record_router_event, update_exit_pipeline_status
from execution.state_publish import DIAGNOSTICS_FILE, POSITIONS_FILE, DiagnosticsPublisher
from execution.diagnostics_document import STATUS_OK
from execution.state_v7 import load_runtime_diagnostics_state
from otel_diag import semconv as sc

START = 1_767_571_200.0  # 2026-01-05T00:00:00Z
PUBLISHES = 5_000


def _positions(i: int) -> dict:
    """A positions.json whose size swings with ``i``."""
    n = (i // 7) % 40
    return {"written_at": "2026-01-05T00:00:00+00:00",
            "positions": [{"symbol": f"SYM{k}", "side": "long", "quantity": 0.5 + k, "entry_price": 100.0 + k}
                          for k in range(n)],
            "tp_sl": [], "realized_pnl": float(i)}


def test_reader_threads_when_writer_publishes_5000_times_then_never_see_partial_or_invalid_json(tmp_path):
    # Arrange
    clock = SimClock(START)
    telemetry = otel_diag.configure(clock=clock, env={}, instrument=False)
    cfg = AppConfig(diagnostics=DiagnosticsConfig(publish_interval_seconds=1.0))
    publisher = DiagnosticsPublisher(str(tmp_path), cfg, clock=clock, service={"scenario": "reliability"})
    path = os.path.join(tmp_path, DIAGNOSTICS_FILE)
    positions_path = os.path.join(tmp_path, POSITIONS_FILE)
    done = threading.Event()
    problems: List[str] = []
    reads = {"raw": 0, "positions": 0, "loader": 0}

    def raw_reader() -> None:
        while not done.is_set():  # bounded by the writer: it sets `done` when finished
            for name, target in (("raw", path), ("positions", positions_path)):
                try:
                    with open(target, "rb") as fh:
                        data = fh.read()
                except FileNotFoundError:
                    continue  # before the first publish
                try:
                    doc = json.loads(data)
                    if not data.endswith(b"}\n") or not isinstance(doc, dict):
                        raise ValueError("incomplete document")
                    if name == "raw" and (doc.get("schema_version") != 1 or "runtime_diagnostics" not in doc):
                        raise ValueError("document without its keys")
                except ValueError as exc:
                    problems.append(f"{name} read {reads[name]}: {exc}: {data[:80]!r}...{data[-40:]!r}")
                reads[name] += 1
            time.sleep(0.002)  # a polling reader, not a GIL hog: the writer must run at its own pace

    def loader_reader() -> None:
        while not done.is_set():
            if not os.path.exists(path):
                time.sleep(0.001)
                continue
            block = load_runtime_diagnostics_state(str(tmp_path))
            if block["status"] != STATUS_OK:
                problems.append(f"loader read {reads['loader']}: {block['status']}: {block['reason']}")
            reads["loader"] += 1
            time.sleep(0.003)

    readers = [threading.Thread(target=raw_reader, name="raw-reader", daemon=True),
               threading.Thread(target=loader_reader, name="loader-reader", daemon=True)]
    for r in readers:
        r.start()

    # Act: 5,000 publishes; the document's size changes all the time
    try:
        for i in range(PUBLISHES):
            clock.set(START + i)
            record_router_event()
            if i % 3 == 0:  # a new veto reason now and then: the by_reason maps grow
                series = telemetry.state.series(sc.METRIC_VETOES, {sc.ATTR_VETO_REASON: f"reason_{i % 30}",
                                                                   sc.ATTR_SYMBOL: f"SYM{i % 8}"})
                telemetry.state.hit(series, sc.EVENT_VETO)
            update_exit_pipeline_status(open_positions_count=i % 11, tp_sl_registered_count=i % 11,
                                        missing_tp_sl_keys=[(f"SYM{k}", "long") for k in range((i // 5) % 30)])
            assert publisher.publish(positions=(lambda i=i: _positions(i)) if i % 10 == 0 else None)
    finally:
        done.set()
        for r in readers:
            r.join(10)

    # Assert
    assert problems == [], problems[:5]
    assert publisher.publishes == PUBLISHES and publisher.failures == 0
    assert reads["raw"] >= 20 and reads["loader"] >= 10 and reads["positions"] >= 20, reads  # readers ran alongside
    assert [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")] == []
    assert json.loads(open(path, encoding="utf-8").read())["evaluated_at"].startswith("2026-01-05T01:23:19")
