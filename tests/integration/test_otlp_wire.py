"""Real wire, OTLP/HTTP: the executor, configured only through ``OTEL_*`` variables, exports to a
receiver on 127.0.0.1, and what arrives is exactly what the in-memory exporter and reader see.

The executor runs as a subprocess (``python -m execution``) with a clean environment; the
same seed, config and cycle count run in-process with an ``InMemorySpanExporter`` and an
``InMemoryMetricReader``. Replay pace makes both runs deterministic, event times included.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Set, Tuple

import pytest

from otel_diag import semconv as sc
from tests.fixtures.env import clean_env
from tests.fixtures.replay import InMemoryRun, frozen, in_memory_run, point_values, span_keys
from tests.integration.wire_helpers import OtlpHttpReceiver, WirePoint, WireSpan

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config" / "strategy_config.json"
CYCLES = 30
SEED = 7
SERVICE_NAME = "executor-wire"
ENVIRONMENT = "wire-test"
EXPORT_INTERVAL_MS = 600_000  # far longer than any run (RUN_TIMEOUT_S): the only metrics export is the one at shutdown
RUN_TIMEOUT_S = 120

SPAN_NAMES = {sc.SPAN_EXECUTOR_CYCLE, sc.SPAN_SIGNAL_GENERATE, sc.SPAN_RISK_CHECK, sc.SPAN_ORDER_ROUTE,
              sc.SPAN_ORDER_TWAP_SLICE, sc.SPAN_EXCHANGE_PLACE_ORDER, sc.SPAN_EXIT_SCAN, sc.SPAN_EXIT_TRIGGER}
COUNTERS = (sc.METRIC_SIGNALS, sc.METRIC_ORDERS, sc.METRIC_VETOES, sc.METRIC_ROUTER_EVENTS,
            sc.METRIC_EXIT_SCANS, sc.METRIC_EXIT_TRIGGERS)
EXIT_GAUGES = (sc.METRIC_POSITIONS_OPEN, sc.METRIC_TP_SL_REGISTERED, sc.METRIC_TP_SL_MISSING,
               sc.METRIC_TP_SL_ORPHANED, sc.METRIC_UNDERWATER_UNPROTECTED, sc.METRIC_TP_SL_COVERAGE)
CURRENT_COUNTS = tuple(name for name in EXIT_GAUGES if name != sc.METRIC_TP_SL_COVERAGE)  # UpDownCounters

PointKey = Tuple[str, Tuple[Tuple[str, Any], ...]]


@dataclass
class WireRun:
    returncode: int
    stdout: str
    stderr: str
    pid: int
    started: float  # wall clock
    ended: float
    rx: OtlpHttpReceiver
    diagnostics: Dict[str, Any]


def _executor(tmp: Path, rx: OtlpHttpReceiver, *args: str, **env: str) -> WireRun:
    state_dir = tmp / "state"
    full_env = clean_env(
        OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_SERVICE_NAME=SERVICE_NAME,
        OTEL_RESOURCE_ATTRIBUTES=f"deployment.environment.name={ENVIRONMENT}",
        **env,
    )
    cmd = [sys.executable, "-m", "execution", "--config", str(CONFIG), "--state-dir", str(state_dir), *args]
    started = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    ended = time.time()
    diag_path = state_dir / "diagnostics.json"
    diagnostics = json.loads(diag_path.read_text()) if diag_path.exists() else {}
    return WireRun(proc.returncode, out, err, proc.pid, started, ended, rx, diagnostics)


@pytest.fixture(scope="module")
def wire(tmp_path_factory) -> WireRun:
    """The executor in replay pace, exporting over OTLP/HTTP to a receiver on 127.0.0.1."""
    with OtlpHttpReceiver() as rx:
        result = _executor(tmp_path_factory.mktemp("otlp-wire"), rx, "--cycles", str(CYCLES), "--seed", str(SEED),
                           OTEL_METRIC_EXPORT_INTERVAL=str(EXPORT_INTERVAL_MS))
    assert result.returncode == 0, f"executor failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    assert not rx.errors, f"undecodable OTLP bodies: {rx.errors}"
    return result


@pytest.fixture(scope="module")
def memory(tmp_path_factory) -> InMemoryRun:
    """The same run in-process, into an InMemorySpanExporter and an InMemoryMetricReader."""
    return in_memory_run(tmp_path_factory.mktemp("otlp-memory"), str(CONFIG), CYCLES, SEED)


# -- reductions ---------------------------------------------------------------------------
def _wire_span_keys(spans: List[WireSpan]) -> Counter:
    by_id = {s.span_id: s for s in spans}
    return Counter((s.name, by_id[s.parent_span_id].name if s.parent_span_id else None, frozen(s.attributes))
                   for s in spans)


def _wire_points(points: List[WirePoint]) -> Dict[PointKey, Any]:
    out: Dict[PointKey, Any] = {}
    for p in points:
        key = (p.name, frozen(p.attributes))
        assert key not in out, f"the same series twice in one export: {key}"
        out[key] = p.value
    return out


def _series(points: Dict[PointKey, Any], name: str) -> Dict[Tuple[Tuple[str, Any], ...], Any]:
    return {attrs: v for (n, attrs), v in points.items() if n == name}


def _by(points: Dict[PointKey, Any], name: str, attr: str) -> Dict[Any, Any]:
    """The points of ``name`` summed by the value of ``attr``."""
    out: Dict[Any, Any] = {}
    for attrs, v in _series(points, name).items():
        key = dict(attrs)[attr]
        out[key] = out.get(key, 0) + v
    return out


# -- transport and resource ----------------------------------------------------------------
def test_otlp_when_configured_only_by_env_then_protobuf_arrives_over_http(wire):
    traces, metrics = wire.rx.trace_requests(), wire.rx.metric_requests()

    assert traces and metrics, f"nothing arrived: {len(traces)} trace and {len(metrics)} metrics requests"
    for r in traces + metrics:
        assert r.headers.get("content-type") == "application/x-protobuf"
        assert r.headers.get("user-agent", "").startswith("OTel-OTLP-Exporter-Python/")
        assert r.body_bytes > 0
    assert {r.path for r in wire.rx.requests} <= {"/v1/traces", "/v1/metrics"}


def test_otlp_when_env_names_service_then_resource_carries_it(wire, memory):
    resources = {frozen(s.resource) for s in wire.rx.spans()} | {frozen(p.resource) for p in wire.rx.metric_points()}

    assert len(resources) == 1, "every span and point comes from one resource"
    resource = dict(next(iter(resources)))
    assert resource["service.name"] == SERVICE_NAME  # OTEL_SERVICE_NAME
    assert resource["deployment.environment.name"] == ENVIRONMENT  # OTEL_RESOURCE_ATTRIBUTES wins over the config
    assert uuid.UUID(resource["service.instance.id"]).version == 4  # the SDK's detector: one per process
    assert resource["telemetry.sdk.name"] == "opentelemetry"
    in_memory = dict(memory.spans[0].resource.attributes)
    assert in_memory["service.name"] == sc.DEFAULT_SERVICE_NAME and in_memory["deployment.environment.name"] == "paper"
    assert set(in_memory) == set(resource), "the same resource keys, whichever the path"


# -- spans ---------------------------------------------------------------------------------
def test_otlp_spans_when_same_seed_then_name_counts_match_in_memory(wire, memory):
    on_wire = Counter(s.name for s in wire.rx.spans())
    in_memory = Counter(s.name for s in memory.spans)

    assert set(on_wire) == SPAN_NAMES, f"missing span kinds: {SPAN_NAMES - set(on_wire)}"
    assert on_wire == in_memory
    assert on_wire[sc.SPAN_EXECUTOR_CYCLE] == CYCLES
    assert on_wire[sc.SPAN_RISK_CHECK] == memory.summary.stats.signals
    assert on_wire[sc.SPAN_EXIT_TRIGGER] == memory.summary.stats.exit_triggers


def test_otlp_spans_when_exported_then_each_trace_is_one_cycle_with_linked_parents(wire, memory):
    spans = wire.rx.spans()
    by_id = {s.span_id: s for s in spans}
    traces: Dict[str, List[WireSpan]] = {}
    for s in spans:
        traces.setdefault(s.trace_id, []).append(s)

    assert len(by_id) == len(spans), "span ids are unique"
    assert len(traces) == CYCLES
    for trace_id, members in traces.items():
        roots = [s for s in members if not s.parent_span_id]
        assert [r.name for r in roots] == [sc.SPAN_EXECUTOR_CYCLE], f"trace {trace_id}: roots {roots}"
        for s in members:
            if s.parent_span_id:
                parent = by_id.get(s.parent_span_id)
                assert parent is not None, f"{s.name}: parent {s.parent_span_id} never arrived"
                assert parent.trace_id == trace_id, f"{s.name}: parent in another trace"
                assert parent.start_time_unix_nano <= s.start_time_unix_nano <= s.end_time_unix_nano <= parent.end_time_unix_nano
    edges = Counter((by_id[s.parent_span_id].name if s.parent_span_id else None, s.name) for s in spans)
    memory_by_id = {s.context.span_id: s for s in memory.spans}
    memory_edges = Counter((memory_by_id[s.parent.span_id].name if s.parent is not None else None, s.name)
                           for s in memory.spans)
    assert edges == memory_edges
    parents = {child: {p for (p, c) in edges if c == child} for child in SPAN_NAMES}
    assert parents[sc.SPAN_SIGNAL_GENERATE] == {sc.SPAN_EXECUTOR_CYCLE}
    assert parents[sc.SPAN_RISK_CHECK] == {sc.SPAN_EXECUTOR_CYCLE}
    assert parents[sc.SPAN_EXIT_SCAN] == {sc.SPAN_EXECUTOR_CYCLE}
    assert parents[sc.SPAN_EXIT_TRIGGER] == {sc.SPAN_EXIT_SCAN}
    assert parents[sc.SPAN_ORDER_TWAP_SLICE] == {sc.SPAN_ORDER_ROUTE}
    assert parents[sc.SPAN_ORDER_ROUTE] <= {sc.SPAN_EXECUTOR_CYCLE, sc.SPAN_EXIT_TRIGGER}
    assert sc.SPAN_EXIT_TRIGGER in parents[sc.SPAN_ORDER_ROUTE], "TP/SL exits route their closing orders"


def test_otlp_spans_when_same_seed_then_attributes_match_in_memory(wire, memory):
    spans = wire.rx.spans()

    assert _wire_span_keys(spans) == span_keys(memory.spans)
    symbols = {s.attributes.get(sc.ATTR_SYMBOL) for s in spans if s.name != sc.SPAN_EXECUTOR_CYCLE
               and s.name != sc.SPAN_EXIT_SCAN}
    assert None not in symbols and len(symbols) >= 4
    vetoes = Counter(s.attributes[sc.ATTR_VETO_REASON] for s in spans
                     if s.name == sc.SPAN_RISK_CHECK and sc.ATTR_VETO_REASON in s.attributes)
    assert dict(vetoes) == dict(memory.summary.stats.vetoes)
    assert dict(vetoes) == wire.diagnostics["runtime_diagnostics"]["veto_counters"]["by_reason"]
    cycles = sorted(s.attributes[sc.ATTR_CYCLE_INDEX] for s in spans if s.name == sc.SPAN_EXECUTOR_CYCLE)
    assert cycles == list(range(CYCLES))
    assert {s.attributes[sc.ATTR_EXIT_REASON] for s in spans if s.name == sc.SPAN_EXIT_TRIGGER} <= {"take_profit", "stop_loss"}


LIVENESS_SPANS = {  # liveness key -> spans that can stamp it
    "signals": {sc.SPAN_SIGNAL_GENERATE},
    "orders": {sc.SPAN_ORDER_ROUTE},
    "exits": {sc.SPAN_EXIT_TRIGGER},
    "router": {sc.SPAN_ORDER_ROUTE, sc.SPAN_ORDER_TWAP_SLICE},
    "exit_scans": {sc.SPAN_EXIT_SCAN},
}


def test_otlp_when_block_names_last_trace_ids_then_those_traces_arrived(wire):
    traces: Dict[str, Set[str]] = {}
    for s in wire.rx.spans():
        traces.setdefault(s.trace_id, set()).add(s.name)
    last_trace_ids = wire.diagnostics["runtime_diagnostics"]["liveness"]["last_trace_ids"]

    assert set(last_trace_ids) == set(LIVENESS_SPANS)
    for key, trace_id in last_trace_ids.items():
        assert trace_id in traces, f"liveness.last_trace_ids.{key} = {trace_id} never reached the backend"
        assert traces[trace_id] & LIVENESS_SPANS[key], f"{key}: trace {trace_id} holds only {sorted(traces[trace_id])}"


# -- metrics -------------------------------------------------------------------------------
def test_otlp_metrics_when_export_interval_outlasts_the_run_then_shutdown_flushes_once(wire):
    # No periodic export falls due within a run: the interval outlasts the longest run the fixture waits for.
    assert RUN_TIMEOUT_S * 1000 < EXPORT_INTERVAL_MS

    requests = wire.rx.metric_requests()

    assert len(requests) == 1, "the only metrics export is the final one, made by MeterProvider.shutdown"
    # otel_diag.shutdown() flushes the spans first, then the metrics: both at the very end of the run.
    assert requests[0].at >= max(r.at for r in wire.rx.trace_requests())
    names = {p.name for p in wire.rx.metric_points(requests[0])}
    assert set(COUNTERS) | {sc.METRIC_LAST_EVENT_TIME} | set(EXIT_GAUGES) <= names


def test_otlp_metrics_when_same_seed_then_final_points_equal_in_memory(wire, memory):
    on_wire = _wire_points(wire.rx.metric_points(wire.rx.metric_requests()[-1]))
    in_memory = point_values(memory.metrics)

    assert on_wire == in_memory
    stats = memory.summary.stats
    assert sum(_series(on_wire, sc.METRIC_SIGNALS).values()) == stats.signals
    assert sum(_series(on_wire, sc.METRIC_ORDERS).values()) == stats.orders_routed
    assert _by(on_wire, sc.METRIC_VETOES, sc.ATTR_VETO_REASON) == dict(stats.vetoes)
    assert sum(_series(on_wire, sc.METRIC_EXIT_SCANS).values()) == stats.exit_scans == CYCLES
    assert sum(_series(on_wire, sc.METRIC_EXIT_TRIGGERS).values()) == stats.exit_triggers


def test_otlp_metrics_when_exported_then_kinds_units_and_temporality_are_right(wire):
    points = wire.rx.metric_points(wire.rx.metric_requests()[-1])

    for p in points:
        assert p.unit == sc.METRIC_UNITS[p.name], p.name
        if p.name in COUNTERS:
            assert (p.kind, p.monotonic, p.temporality) == ("sum", True, 2), f"{p.name}: a cumulative monotonic sum"
        elif p.name in CURRENT_COUNTS:
            assert (p.kind, p.monotonic, p.temporality) == ("sum", False, 2), f"{p.name}: a cumulative up-down sum"
        else:
            assert p.kind == "gauge", p.name


BLOCK_TIMESTAMPS = {  # runtime_diagnostics field -> trading.event
    ("veto_counters", "last_signal_ts"): sc.EVENT_SIGNAL,
    ("veto_counters", "last_order_ts"): sc.EVENT_ORDER,
    ("veto_counters", "last_veto_ts"): sc.EVENT_VETO,
    ("exit_pipeline", "last_exit_scan_ts"): sc.EVENT_EXIT_SCAN,
    ("exit_pipeline", "last_exit_trigger_ts"): sc.EVENT_EXIT_TRIGGER,
    ("exit_pipeline", "last_router_event_ts"): sc.EVENT_ROUTER,
}
BLOCK_GAUGES = {  # exit_pipeline field -> gauge
    "open_positions_count": sc.METRIC_POSITIONS_OPEN,
    "tp_sl_registered_count": sc.METRIC_TP_SL_REGISTERED,
    "tp_sl_missing_count": sc.METRIC_TP_SL_MISSING,
    "tp_sl_orphan_count": sc.METRIC_TP_SL_ORPHANED,
    "underwater_without_tp_sl_count": sc.METRIC_UNDERWATER_UNPROTECTED,
    "tp_sl_coverage_pct": sc.METRIC_TP_SL_COVERAGE,
}


def _unix(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_otlp_metrics_when_exported_then_last_event_times_and_exit_gauges_match_the_block(wire):
    points = _wire_points(wire.rx.metric_points(wire.rx.metric_requests()[-1]))
    last = _by(points, sc.METRIC_LAST_EVENT_TIME, sc.ATTR_EVENT)
    rd = wire.diagnostics["runtime_diagnostics"]

    assert set(last) == set(sc.EVENTS), "every event kind happened in 30 healthy bars"
    for (section, field), event in BLOCK_TIMESTAMPS.items():
        assert last[event] == pytest.approx(_unix(rd[section][field]), abs=1e-3), f"{section}.{field}"
    # Replay pace: event times are bar times of the simulated clock, not the wall clock.
    assert max(last.values()) < wire.started - 86_400
    for field, gauge in BLOCK_GAUGES.items():
        assert sum(_series(points, gauge).values()) == pytest.approx(rd["exit_pipeline"][field]), field
    assert _by(points, sc.METRIC_ROUTER_EVENTS, sc.ATTR_ROUTER_EVENT) == rd["veto_counters"]["router_events"]


def test_otlp_when_realtime_pace_then_periodic_exports_are_cumulative_and_stamped_with_wall_time(tmp_path):
    with OtlpHttpReceiver() as rx:
        result = _executor(tmp_path, rx, "--cycles", "30", "--pace", "realtime", "--bar-interval", "0.05",
                           OTEL_METRIC_EXPORT_INTERVAL="200", OTEL_BSP_SCHEDULE_DELAY="100")
    assert result.returncode == 0, f"executor failed:\n{result.stdout}\n{result.stderr}"
    assert not rx.errors

    requests = rx.metric_requests()
    assert len(requests) >= 3, f"expected periodic exports every 0.2 s over 30 bars of 0.05 s, got {len(requests)}"
    scans = [sum(p.value for p in rx.metric_points(r) if p.name == sc.METRIC_EXIT_SCANS) for r in requests]
    assert scans == sorted(scans), f"a cumulative counter never goes down: {scans}"
    assert scans[-1] == 30
    assert len(rx.trace_requests()) >= 2, "the batch processor exported during the run, not only at shutdown"
    assert Counter(s.name for s in rx.spans())[sc.SPAN_EXECUTOR_CYCLE] == 30
    final = _wire_points(rx.metric_points(requests[-1]))
    last = _by(final, sc.METRIC_LAST_EVENT_TIME, sc.ATTR_EVENT)
    # Realtime pace: the engine clock is the wall clock, so event times are "now"-ish Unix seconds.
    assert result.started - 1 <= last[sc.EVENT_EXIT_SCAN] <= result.ended + 1
    block = result.diagnostics["runtime_diagnostics"]["veto_counters"]
    assert _by(final, sc.METRIC_VETOES, sc.ATTR_VETO_REASON) == block["by_reason"]
    assert sum(_series(final, sc.METRIC_SIGNALS).values()) == block["total_signals"]
