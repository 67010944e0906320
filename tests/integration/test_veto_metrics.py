"""Veto counters: from the risk engine's decisions, through the metric points, into runtime_diagnostics."""
from __future__ import annotations

import json

from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from execution.executor_live import RunHooks, RunOptions, run
from otel_diag import semconv as sc


def test_run_when_healthy_then_veto_counters_equal_engine_counts_by_reason(tmp_path):
    docs = []
    summary = run(RunOptions(cycles=480, state_dir=str(tmp_path)), RunHooks(on_publish=docs.append))

    vc = docs[-1]["runtime_diagnostics"]["veto_counters"]
    assert vc["by_reason"] == dict(summary.stats.vetoes)
    assert len(vc["by_reason"]) >= 4, "a healthy run should veto for several reasons"
    assert vc["total_vetoes"] == sum(summary.stats.vetoes.values())
    assert vc["total_signals"] == summary.stats.signals
    assert vc["total_orders"] == summary.stats.orders_routed
    assert sum(vc["by_symbol"].values()) == vc["total_vetoes"]
    assert {r: sum(s.values()) for r, s in vc["by_reason_symbol"].items()} == vc["by_reason"]
    assert vc["last_veto_ts"] is not None and vc["last_veto_ts"] <= docs[-1]["evaluated_at"]


def test_run_when_exported_then_otel_points_match_the_block(tmp_path):
    reader = InMemoryMetricReader()
    exported = []  # what the exporting reader sees at each publish (it cannot collect after shutdown)
    run(RunOptions(cycles=200, state_dir=str(tmp_path)),
        RunHooks(metric_readers=[reader], on_publish=lambda doc: exported.append(reader.get_metrics_data())))

    points = {}
    for rm in exported[-1].resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name == sc.METRIC_VETOES:
                    for p in m.data.data_points:
                        reason = p.attributes[sc.ATTR_VETO_REASON]
                        points[reason] = points.get(reason, 0) + p.value
    final = json.loads((tmp_path / "diagnostics.json").read_text())
    assert points == final["runtime_diagnostics"]["veto_counters"]["by_reason"]
