"""Golden files for the diagnostics.json document, written before the document model moved into one module.

- the writer: the bytes of diagnostics.json after a seeded replay (tp_sl_gap, so every section carries
  figures), with the four values that differ run to run (``written_at``, ``stopped_at``, ``pid``, ``instance_id``)
  replaced by placeholders;
- the reader: the block ``load_runtime_diagnostics_state`` returns for every fixture and for damaged and
  hostile files — values, defaults, problems (in order) and reasons, compared as values.

``OTEL_DIAG_WRITE_GOLDEN=1 pytest tests/integration/test_document_golden.py`` rewrites them; a diff in
review then shows exactly what a change did to the format.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from execution.executor_live import RunHooks, RunOptions, run
from execution.state_v7 import load_runtime_diagnostics_state
from tests.fixtures import diagnostics_state as fx

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
NOW = 1_767_571_200.0  # 2026-01-05T00:00:00Z
WRITE = os.environ.get("OTEL_DIAG_WRITE_GOLDEN") == "1"
_VARYING = [(re.compile(rb'"written_at":"[^"]*"'), b'"written_at":"<written_at>"'),
            (re.compile(rb'"stopped_at":"[^"]*"'), b'"stopped_at":"<stopped_at>"'),
            (re.compile(rb'"instance_id":"[^"]*"'), b'"instance_id":"<instance_id>"'),
            (re.compile(rb'"pid":\d+'), b'"pid":0')]


def _check(name: str, actual: bytes, *, as_values: bool = False) -> None:
    """``actual`` equals the golden file: byte for byte, or (``as_values``) as decoded JSON values, where
    the order of an object's keys does not count and the order of a list (the problems) does."""
    path = GOLDEN / name
    if WRITE:
        path.write_bytes(actual)
    expected = path.read_bytes()
    same = json.loads(actual) == json.loads(expected) if as_values else actual == expected
    assert same, f"{name} differs from the golden file (OTEL_DIAG_WRITE_GOLDEN=1 rewrites it)"


def test_writer_when_seeded_replay_then_diagnostics_json_bytes_match_the_golden_file(tmp_path, repo_root):
    run(RunOptions(config_path=os.path.join(repo_root, "config", "strategy_config.json"), state_dir=str(tmp_path),
                   cycles=160, scenario="tp_sl_gap", fault_at=40),
        RunHooks(configure_kwargs={"tracing": False, "env": {}}))
    data = (tmp_path / "diagnostics.json").read_bytes()
    for pattern, placeholder in _VARYING:
        data = pattern.sub(placeholder, data)
    _check("diagnostics.json", data)


def _damaged() -> dict:
    wrong = fx.healthy(NOW)
    rd = wrong["runtime_diagnostics"]
    rd["veto_counters"].update(total_signals="many", by_reason={"min_notional": -3, "cooldown_after_exit": 2},
                               by_reason_symbol={"x": {"A": 1.5, "B": 2}, "y": 3})
    rd["exit_pipeline"].update(tp_sl_coverage_pct=1.7, ledger_registry_mismatch="yes", open_positions_count=True,
                               missing_tp_sl_symbols=["A", 3])
    rd["liveness"].update(idle_router=1, details={"signals": -5, "orders": "x", "router": 12.5},
                          thresholds={"signals": 0}, last_trace_ids={"signals": "xyz", "orders": None},
                          last_event_ts={"signals": "yesterday"})
    wrong["service"].update(seed=1.5, pid="x", publish_interval_seconds=-1, name=None)
    huge = fx.healthy(NOW)
    huge["runtime_diagnostics"]["veto_counters"]["total_orders"] = 10 ** 400
    huge["runtime_diagnostics"]["liveness"]["details"]["router"] = 10 ** 400
    absent = fx.healthy(NOW)
    del absent["runtime_diagnostics"]["exit_pipeline"]["ledger_registry_mismatch"]
    del absent["service"]
    no_sections = {"schema_version": 1, "written_at": fx.iso(NOW), "runtime_diagnostics": []}
    return {"wrong_types": wrong, "huge_numbers": huge, "absent_keys": absent, "no_sections": no_sections,
            "not_an_object": [1, 2], "schema_2": {"schema_version": 2, "written_at": fx.iso(NOW)},
            "float_schema": {**fx.healthy(NOW), "schema_version": 1.0}}


def test_loader_when_fixtures_and_damaged_files_then_blocks_match_the_golden_file(tmp_path):
    docs = {name: getattr(fx, name)(NOW) for name in ("healthy", "idle_with_missing", "mismatch", "alerting",
                                                      "no_positions", "stale", "hostile")}
    docs.update(_damaged())
    blocks = {}
    for name, doc in docs.items():
        folder = tmp_path / name
        fx.write_state(folder, doc)
        block = load_runtime_diagnostics_state(folder, now=NOW)
        block["path"] = block["path"].replace(str(tmp_path), "<tmp>")
        block["reason"] = block["reason"].replace(str(tmp_path), "<tmp>")
        blocks[name] = block
    for name, text in (("empty", ""), ("corrupt", '{"schema_version": 1, "runtime_diag')):
        fx.write_raw(tmp_path / name, text)
        block = load_runtime_diagnostics_state(tmp_path / name, now=NOW)
        blocks[name] = {k: (v.replace(str(tmp_path), "<tmp>") if isinstance(v, str) else v) for k, v in block.items()}
    _check("loaded_blocks.json", (json.dumps(blocks, indent=1, allow_nan=False) + "\n").encode("utf-8"), as_values=True)
